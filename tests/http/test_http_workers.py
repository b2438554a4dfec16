"""Several uvicorn workers behind one port, each running `knock_mcp.http:create_app`: both serve calls."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import anyio
import pytest

from knock_mcp.http.serving import set_nodelay_on_inherited_sockets
from tests.support.fake_knock import FakeKnock
from tests.support.http_server import HttpServer, client_for, knock_env, uvicorn_factory
from tests.support.payloads import load_fixture
from tests.support.results import text

pytestmark = pytest.mark.anyio

WORKERS = 2


UVICORN_WORKERS = uvicorn_factory("--workers", str(WORKERS), "--timeout-graceful-shutdown", "10")


def children(parent: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name in parentheses may hold spaces: the fields after it are fixed.
            if int(stat.read_text().rpartition(")")[2].split()[1]) == parent:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while we looked
    return found


def talks_to(pid: int, port: int) -> bool:
    """Whether process `pid` holds an open TCP connection to 127.0.0.1:`port`.

    A worker connects to Knock only to serve a tool call, so one that holds a (pooled) connection to
    the fake Knock has served one. Read from /proc: which socket inodes the process has open, and
    which of the machine's TCP connections go to that port.
    """
    remote = f"0100007F:{port:04X}"
    to_port = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == remote:
            to_port.add(fields[9])
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return False
    return any(link.startswith("socket:[") and link[8:-1] in to_port for link in links)


async def test_two_workers_on_one_port_both_serve_calls(fake_knock: FakeKnock, tmp_path: Path) -> None:
    ids = [f"7{number:07d}-0000-4000-8000-000000000000" for number in range(400)]
    for operation_id in ids:
        fake_knock.operations[operation_id] = load_fixture("completed") | {"id": operation_id}
    knock_port = int(fake_knock.base_url.rpartition(":")[2])
    env = knock_env(fake_knock, KNOCK_MCP_LOG_LEVEL="info")

    async def call(operation_id: str) -> None:
        # A client of its own, so a connection of its own: the kernel hands each to one worker.
        async with client_for(server, "auto") as client:
            result = await client.call_tool("get_bulk_operation", {"id": operation_id})
        assert not result.is_error, text(result)

    with HttpServer(env, tmp_path, command=UVICORN_WORKERS) as server:
        workers = children(server.pid)
        serving: set[int] = set()
        for batch in range(0, len(ids), 40):
            async with anyio.create_task_group() as tasks:
                for operation_id in ids[batch : batch + 40]:
                    tasks.start_soon(call, operation_id)
            serving = {pid for pid in workers if talks_to(pid, knock_port)}
            if len(serving) == WORKERS:
                break
    assert len(serving) == WORKERS, f"only {serving} of workers {workers} reached Knock"
    logged = server.stderr()
    assert logged.count("Started server process") == WORKERS
    assert "Traceback" not in logged


def test_inherited_sockets_get_nodelay_and_stay_open() -> None:
    """What a worker's factory does to the socket uvicorn's supervisor bound (protocol number 0, so
    asyncio leaves Nagle's algorithm on for every connection it accepts)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as inherited:
        inherited.bind(("127.0.0.1", 0))
        assert inherited.proto == 0
        assert inherited.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
        set_nodelay_on_inherited_sockets()
        assert inherited.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        inherited.listen()  # still open and usable: the function only borrowed the descriptor
