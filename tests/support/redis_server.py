"""A real `redis-server` on 127.0.0.1, on a port of its own, in a temporary directory, with nothing
persisted: for the fleet tests and the fleet benchmark. Not a Python stand-in: the fleet depends on
Redis's own semantics (scripts, TIME, expiry, pub/sub), so tests run against the real thing.

    with RedisServer(tmp_path) as redis_server:
        env = {"KNOCK_MCP_REDIS_URL": redis_server.url, ...}
        redis_server.stop(); redis_server.start()   # an outage, then Redis back on the same port
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import IO

import redis

from tests.support.http_server import free_port

INSTALL_HINT = (
    "redis-server is not installed, and the fleet tests need a real one: install it with "
    "`apt-get install -y redis-server` (Debian/Ubuntu; .ci/run does this) or `brew install redis`."
)
STARTUP_TIMEOUT = 15.0
# What every process of a test fleet is given as KNOCK_MCP_FLEET_SECRET.
FLEET_SECRET = "fleet-secret-for-tests-0123456789abcdef"


class RedisServer:
    """Starts on `__enter__` (once PING answers); `stop()` and `start()` make an outage and an end to it."""

    def __init__(self, directory: Path) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise RuntimeError(INSTALL_HINT)
        self._executable = executable
        self._directory = directory / "redis"
        self._directory.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        with (self._directory / "redis.log").open("ab") as log:
            self.process = self._spawn(log)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with self.client() as probe:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}")
                try:
                    if probe.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {STARTUP_TIMEOUT:g} s")

    def _spawn(self, log: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                self._executable,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self._directory),
                "--save", "",
                "--appendonly", "no",
                "--loglevel", "warning",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )  # fmt: skip

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
