"""A real `knock-mcp --transport http` (or uvicorn) process on 127.0.0.1, for tests and benchmarks,
and MCP clients of it.

    with HttpServer(knock_env(fake_knock), tmp_path, ["--auth", "token"]) as server:
        async with client_for(server, mode, {"Authorization": f"Bearer {TOKEN}"}) as client: ...
    assert SECRET not in server.stderr()

The process's stderr goes to a file so that a test can check what it logged (the key never).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from knock_mcp.tls import default_tls_context
from tests.support.fake_knock import FakeKnock
from tests.support.installed import KNOCK_MCP
from tests.support.keys import SECRET
from tests.support.oauth_issuer import LoopbackIssuer

STARTUP_TIMEOUT = 60.0


def free_port() -> int:
    """A port nothing listens on right now (the OS picks it; the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def loopback_client(base_url: str) -> httpx2.Client:
    """A client for plain requests to a server under test, made once per server, so that a probe
    every 50 ms while the server starts (or a health check polled by `eventually`) builds nothing.
    It keeps no idle connection, so the server's open descriptors and its drain see only what the
    test made. It shares the process's TLS context, as `client_for` does: loading the CA bundle into
    a new one costs ~37 ms of CPU."""
    return httpx2.Client(
        base_url=base_url,
        timeout=10.0,
        limits=httpx2.Limits(max_keepalive_connections=0),
        verify=default_tls_context(),
    )


def wait_until_answering(
    process: subprocess.Popen[Any], client: httpx2.Client, url: str, timeout: float, log: Callable[[], str]
) -> None:
    """Return once GET `url` through `client` answers 200; raise, with what `process` logged, if it
    exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}:\n{log()}")
        try:
            if client.get(url, timeout=1.0).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{process.args!r} did not answer {url} within {timeout:g} s:\n{log()}")


class HttpServer:
    """Starts on `__enter__` and returns once /healthz answers; SIGTERM and a wait on `__exit__`."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        args: Sequence[str] = (),
        command: Callable[[int], Sequence[str]] | None = None,
        port: int | None = None,
    ) -> None:
        """`command(port)` replaces `knock-mcp --transport http --port PORT --log-level debug ARGS`;
        `port` is for a test that must name the server's URL before it starts (as an OAuth resource)."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.mcp_url = f"{self.url}/mcp"
        self._argv = (
            [*command(self.port)]
            if command is not None
            else [KNOCK_MCP, "--transport", "http", "--port", str(self.port), "--log-level", "debug", *args]
        )
        # Only what the server needs, as an MCP client passes it: no key leaks in from the test's own.
        self._env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), **env}
        self._stderr_path = log_dir / f"server-{self.port}.stderr"
        self._stderr: IO[str] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.http: httpx2.Client

    def __enter__(self) -> HttpServer:
        self.launch()
        self.wait_until_answering()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def launch(self) -> None:
        """Start the process and return at once; `wait_until_answering` waits for it to serve."""
        self.http = loopback_client(self.url)
        self._stderr = self._stderr_path.open("w")
        self.process = subprocess.Popen(
            self._argv, env=self._env, stdin=subprocess.DEVNULL, stdout=self._stderr, stderr=self._stderr
        )

    def wait_until_answering(self) -> None:
        """Return once /healthz answers; stop the process and raise if it exits or never answers."""
        assert self.process is not None
        try:
            wait_until_answering(self.process, self.http, "/healthz", STARTUP_TIMEOUT, self.stderr)
        except RuntimeError:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def terminate(self) -> None:
        """SIGTERM, as an orchestrator sends it; returns at once."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.running:
            self.terminate()
        self.reap()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def reap(self) -> None:
        """Wait for a process told to stop (killing it after 30 s), and close its log and client."""
        if self.process is not None:
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
            self.http.close()

    def stderr(self) -> str:
        return self._stderr_path.read_text()


@contextmanager
def started_together(servers: Sequence[HttpServer]) -> Iterator[list[HttpServer]]:
    """`servers`, started at once and stopped at once. A start is about a second of CPU importing
    `mcp`, and on a loaded machine mostly a wait for a core: started one after another, a test with
    three servers waits three times over. Each server gets SIGTERM once (a second one would make
    uvicorn skip its graceful shutdown)."""
    launched: list[HttpServer] = []
    try:
        for server in servers:
            server.launch()
            launched.append(server)
        for server in servers:
            server.wait_until_answering()
        yield list(servers)
    finally:
        for server in launched:
            if server.running:
                server.terminate()
        for server in launched:
            server.reap()


class SharedHttpServers:
    """Servers that tests share, one per environment and arguments: `started(env, args)` starts one
    the first time it is asked for and returns the same one after. A start is ~1.2 s of CPU importing
    `mcp`, which a test that neither stops nor signals its server need not pay on its own. Tests that
    share one are marked `shared_server("name")`: one worker runs them one after another and stops
    the server after the last (tests/conftest.py), with the fake Knock and OAuth issuer it trusts,
    which are shared the same way. Each test reads operation ids of its own (the server caches final
    operations) and starts from a fake Knock with nothing of the others' (`forget`); what a test
    reads from the server's log, everything since it started, must hold whichever tests ran on it
    before."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._running = ExitStack()
        self._servers: dict[tuple[frozenset[tuple[str, str]], tuple[str, ...]], HttpServer] = {}
        self._knock: FakeKnock | None = None
        self._issuer: LoopbackIssuer | None = None

    def started(self, env: Mapping[str, str], args: Sequence[str] = ()) -> HttpServer:
        key = (frozenset(env.items()), tuple(args))
        server = self._servers.get(key)
        if server is None:
            server = self._servers[key] = self._running.enter_context(HttpServer(env, self._log_dir, args))
        assert server.running, f"a shared server exited with {server.wait()}:\n{server.stderr()}"
        return server

    def knock(self) -> FakeKnock:
        if self._knock is None:
            self._knock = self._running.enter_context(FakeKnock())
        return self._knock

    def issuer(self) -> LoopbackIssuer:
        if self._issuer is None:
            self._issuer = self._running.enter_context(LoopbackIssuer())
        return self._issuer

    def stop(self) -> None:
        """Stop everything started (idle, each still costs a few milliseconds of CPU a second); a
        later `started`, `knock` or `issuer` starts anew."""
        self._running.close()
        self._servers.clear()
        self._knock = None
        self._issuer = None


# A tools/list request as an MCP client in 2026-07-28 mode sends it, for tests that post by hand.
MODERN_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2026-07-28",
    "mcp-method": "tools/list",
}
TOOLS_LIST: dict[str, object] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/list",
    "params": {
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    },
}


def uvicorn_factory(*options: str) -> Callable[[int], list[str]]:
    """An `HttpServer` command: knock-mcp's ASGI factory under uvicorn's own command line, as
    operators run it for several workers, with uvicorn `options` of the test's."""

    def command(port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "knock_mcp.http:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            *options,
        ]

    return command


def knock_env(fake_knock: FakeKnock, **extra: str) -> dict[str, str]:
    """The environment of a server that asks `fake_knock` with the test key."""
    return {
        "KNOCK_API_KEY": SECRET,
        "KNOCK_BASE_URL": fake_knock.base_url,
        "KNOCK_TIMEOUT": "2",
        "KNOCK_MCP_CALL_DEADLINE": "10",
        **extra,
    }


@asynccontextmanager
async def client_for(
    server: HttpServer, mode: str, headers: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    """An MCP client of `server`; `headers` (e.g. Authorization) go with every request it makes."""
    async with (
        httpx2.AsyncClient(
            headers=headers, timeout=httpx2.Timeout(30, read=60), verify=default_tls_context()
        ) as http,
        Client(streamable_http_client(server.mcp_url, http_client=http), mode=mode) as client,
    ):
        yield client
