"""The documented entry points of the `knock_mcp.http` package, as uvicorn and `cli` load them."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from knock_mcp.http.serving import REQUEST_ARRIVAL_TIMEOUT
from tests.support.fake_knock import FakeKnock
from tests.support.http_server import HttpServer, client_for, uvicorn_factory
from tests.support.keys import SECRET

pytestmark = pytest.mark.anyio


# The factory under uvicorn's own command, with the protocol the docs tell operators to pass.
UVICORN_WITH_ARRIVAL_DEADLINE = uvicorn_factory("--http", "knock_mcp.http:RequestArrivalDeadline")


async def test_uvicorn_loads_the_arrival_deadline_by_its_documented_name(
    fake_knock: FakeKnock, tmp_path: Path
) -> None:
    env = {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": fake_knock.base_url}
    with HttpServer(env, tmp_path, command=UVICORN_WITH_ARRIVAL_DEADLINE) as server:
        # uvicorn's own HTTP/1.1 protocol never answers a request that stops halfway: only
        # RequestArrivalDeadline sends this 408.
        with socket.create_connection(("127.0.0.1", server.port)) as stalled:
            stalled.sendall(f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n".encode())
            sent = time.monotonic()
            stalled.settimeout(REQUEST_ARRIVAL_TIMEOUT * 3)
            received = b""
            while chunk := stalled.recv(4096):
                received += chunk
        assert received.startswith(b"HTTP/1.1 408 "), received[:100]
        assert time.monotonic() - sent < REQUEST_ARRIVAL_TIMEOUT * 3
        async with client_for(server, "auto") as client:
            assert len((await client.list_tools()).tools) == 4
        logged = server.stderr()
    assert "Traceback" not in logged
    assert SECRET not in logged


def test_the_http_options_load_without_uvicorn_or_starlette() -> None:
    """`cli` reads option names, defaults and auth modes from `http.config` for every command; the
    package's lazy `__init__` keeps that from loading the HTTP server's libraries."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, knock_mcp.http.config; "
            "print(sorted(m for m in ('uvicorn', 'starlette', 'sse_starlette', 'mcp') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"


def test_the_package_resolves_its_entry_points_lazily_and_nothing_else() -> None:
    import knock_mcp.http
    from knock_mcp.http import serving

    assert knock_mcp.http.create_app is serving.create_app
    assert knock_mcp.http.RequestArrivalDeadline is serving.RequestArrivalDeadline
    with pytest.raises(AttributeError, match="no attribute 'serve'"):
        _ = knock_mcp.http.serve
