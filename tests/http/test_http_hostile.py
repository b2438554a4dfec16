"""Hostile HTTP input against a real `knock-mcp --transport http`: each bad request is refused or
timed out cleanly, nothing is left open, and the server keeps answering everyone else meanwhile."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import httpx2
import pytest

from knock_mcp.http.app import MAX_REQUEST_BODY_BYTES
from knock_mcp.http.serving import REQUEST_ARRIVAL_TIMEOUT
from knock_mcp.tls import default_tls_context
from tests.support.fake_knock import FakeKnock
from tests.support.http_server import HttpServer, SharedHttpServers, client_for
from tests.support.keys import SECRET
from tests.support.payloads import load_fixture

pytestmark = pytest.mark.anyio

COMPLETED_ID = load_fixture("completed")["id"]
HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2026-07-28",
    "mcp-method": "tools/list",
}
META = {
    "_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
}
TOOLS_LIST = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": META}).encode()
CALL_HEADERS = HEADERS | {"mcp-method": "tools/call", "mcp-name": "get_bulk_operation"}


def rpc(**fields: object) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": 1, **fields}).encode()


# (what, body, headers, the status it must get)
MALFORMED: list[tuple[str, bytes, dict[str, str], int]] = [
    ("not JSON", b"{not json", HEADERS, 400),
    ("empty body", b"", HEADERS, 400),
    ("invalid UTF-8", b'{"jsonrpc":"2.0","id":1,"method":"\xff\xfe"}', HEADERS, 400),
    ("a JSON array", b"[]", HEADERS, 400),
    ("a batch", json.dumps([json.loads(TOOLS_LIST)]).encode(), HEADERS, 400),
    ("no method", rpc(), HEADERS, 400),
    ("jsonrpc 1.0", json.dumps({"jsonrpc": "1.0", "id": 1, "method": "tools/list"}).encode(), HEADERS, 400),
    (
        "an object as id",
        json.dumps({"jsonrpc": "2.0", "id": {}, "method": "tools/list"}).encode(),
        HEADERS,
        400,
    ),
    ("params a string", rpc(method="tools/call", params="x"), CALL_HEADERS, 400),
    (
        "arguments a list",
        rpc(method="tools/call", params={**META, "name": "get_bulk_operation", "arguments": ["x"]}),
        CALL_HEADERS,
        400,
    ),
    ("an unknown method", rpc(method="nope", params=META), HEADERS | {"mcp-method": "nope"}, 404),
    (
        "nesting 30,000 deep",
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":' + b"[" * 30_000 + b"]" * 30_000 + b"}",
        HEADERS,
        400,
    ),
    ("a body over the limit", b'{"x":"' + b"a" * (MAX_REQUEST_BODY_BYTES + 1) + b'"}', HEADERS, 413),
    ("a 5 MB body", b'{"x":"' + b"a" * 5_000_000 + b'"}', HEADERS, 413),
    ("Content-Type text/plain", TOOLS_LIST, HEADERS | {"content-type": "text/plain"}, 400),
    ("Content-Type form", b"a=1", HEADERS | {"content-type": "application/x-www-form-urlencoded"}, 400),
    ("Content-Type XML", b"<a/>", HEADERS | {"content-type": "application/xml"}, 400),
]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fds_settle(pid: int, baseline: int, within: float = 30.0) -> bool:
    """Whether the process's descriptors come back to `baseline` within `within` seconds (closing a
    timed-out connection takes the server a moment). Polls: another process's state has no event."""
    give_up = time.monotonic() + within
    while open_fds(pid) > baseline:
        if time.monotonic() > give_up:
            return False
        time.sleep(0.05)
    return open_fds(pid) == baseline


def knock_env(fake_knock: FakeKnock) -> dict[str, str]:
    return {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": fake_knock.base_url}


@pytest.mark.shared_server("plain")
async def test_malformed_requests_are_refused_and_the_server_keeps_answering(
    shared_knock: FakeKnock, http_servers: SharedHttpServers
) -> None:
    server = http_servers.started(knock_env(shared_knock))
    rows = ["| Request | Answer | Next request answered |", "| --- | --- | --- |"]
    async with httpx2.AsyncClient(timeout=30, verify=default_tls_context()) as http:
        for what, body, headers, status in MALFORMED:
            response = await http.post(server.mcp_url, content=body, headers=headers)
            assert response.status_code == status, f"{what}: {response.status_code} {response.text[:200]}"
            assert "Traceback" not in response.text
            alive = await http.post(server.mcp_url, content=TOOLS_LIST, headers=HEADERS)
            assert alive.status_code == 200, f"after {what}"
            rows.append(f"| {what} | {response.status_code} {response.text[:70]!r} | yes |")
    print("\n### Hostile HTTP requests\n\n" + "\n".join(rows) + "\n")
    async with client_for(server, "auto") as client:
        answered = await client.call_tool("get_bulk_operation", {"id": COMPLETED_ID})
        assert not answered.is_error
    logged = server.stderr()
    assert "Traceback" not in logged
    assert SECRET not in logged


def half_requests(port: int) -> dict[str, bytes]:
    """Requests that start and never finish: nothing sent, half the headers, half the body."""
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\ncontent-type: application/json\r\n"
        "accept: application/json, text/event-stream\r\nmcp-protocol-version: 2026-07-28\r\n"
        "mcp-method: tools/list\r\n"
    )
    return {
        "nothing": b"",
        "half the headers": head.encode(),
        "half the body": f"{head}content-length: {len(TOOLS_LIST)}\r\n\r\n".encode() + TOOLS_LIST[:20],
    }


@pytest.mark.serial
async def test_a_request_that_never_finishes_is_timed_out_while_others_are_answered(
    fake_knock: FakeKnock, tmp_path: Path
) -> None:
    with HttpServer(knock_env(fake_knock), tmp_path) as server:
        async with client_for(server, "auto") as client:
            await client.list_tools()
            baseline = open_fds(server.pid)
            slow = {}
            for what, sent in half_requests(server.port).items():
                connection = socket.create_connection(("127.0.0.1", server.port))
                connection.sendall(sent)
                slow[what] = connection
            opened = time.monotonic()
            # While they hang, everyone else is served as usual.
            answered = 0
            while time.monotonic() - opened < REQUEST_ARRIVAL_TIMEOUT / 2:
                result = await client.call_tool("get_bulk_operation", {"id": COMPLETED_ID})
                assert not result.is_error
                answered += 1
            assert answered > 0
            rows = ["| Never finished | Outcome |", "| --- | --- |"]
            for what, connection in slow.items():
                connection.settimeout(REQUEST_ARRIVAL_TIMEOUT * 3)
                received = b""
                while chunk := connection.recv(4096):
                    received += chunk
                waited = time.monotonic() - opened
                connection.close()
                assert waited < REQUEST_ARRIVAL_TIMEOUT * 3, what
                if what != "half the body":
                    assert received.startswith(b"HTTP/1.1 408 "), f"{what}: {received[:100]!r}"
                answer = received.split(b"\r\n", 1)[0].decode() or "connection closed"
                rows.append(f"| a request that stops after {what} | {answer} after {waited:.1f} s |")
            assert fds_settle(server.pid, baseline), "a connection was left open"
            result = await client.call_tool("get_bulk_operation", {"id": COMPLETED_ID})
            assert not result.is_error
        logged = server.stderr()
    assert "Traceback" not in logged
    rows.append(f"| meanwhile | {answered} other calls answered; descriptors back to {baseline} |")
    print("\n### Requests that never finish (slowloris)\n\n" + "\n".join(rows) + "\n")
