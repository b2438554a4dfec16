"""knock-mcp over HTTP, end to end: a real `knock-mcp --transport http` process on 127.0.0.1, real
sockets, the SDK's HTTP client in both protocol eras, and the loopback fake Knock behind it."""

from __future__ import annotations

import itertools
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client

from knock_mcp.demo import COMPLETED_ID as DEMO_COMPLETED_ID
from knock_mcp.demo import DEMO_OPERATIONS
from tests.support.eras import ERAS
from tests.support.fake_knock import FakeKnock
from tests.support.http_server import (
    MODERN_HEADERS,
    TOOLS_LIST,
    HttpServer,
    SharedHttpServers,
    client_for,
    knock_env,
)
from tests.support.keys import SECRET, TENANT_A, TENANT_B
from tests.support.payloads import load_fixture
from tests.support.polling import eventually
from tests.support.results import text

pytestmark = pytest.mark.anyio

AUTH_TOKEN = "t0ken-for-tests-only-0123456789-abcdefghijklmnop"


def copy_of(fake_knock: FakeKnock, fixture: str, *, name: str) -> str:
    """Add a copy of fixture `fixture` to `fake_knock` under an id of its own (derived from `name`)
    and return the id. Each era reads its own copies: the server caches final operations, so an era
    that read the other's would be answered without asking Knock, and what it sends would go unseen."""
    operation_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{fixture}/{name}"))
    fake_knock.operations[operation_id] = load_fixture(fixture) | {"id": operation_id}
    return operation_id


# What a modern (2026-07-28) client sends: enough for the transport to route and answer a tools/list.
def post_tools_list(server: HttpServer, **headers: str) -> httpx2.Response:
    return server.http.post("/mcp", json=TOOLS_LIST, headers=MODERN_HEADERS | headers)


@pytest.mark.shared_server("defaults")
async def test_both_eras_serve_the_tools_and_the_resource(
    shared_knock: FakeKnock, http_servers: SharedHttpServers
) -> None:
    server = http_servers.started(knock_env(shared_knock))
    for mode in ERAS:
        operation_id = copy_of(shared_knock, "completed", name=mode)
        async with client_for(server, mode) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"get_bulk_operation", "summarize_bulk_operation"} <= tools, mode
            summary = await client.call_tool("summarize_bulk_operation", {"id": operation_id})
            assert not summary.is_error, (mode, text(summary))
            assert "has completed" in text(summary), mode
            got = await client.call_tool("get_bulk_operation", {"id": operation_id})
            assert got.structured_content is not None, mode
            assert got.structured_content["operation"]["id"] == operation_id, mode
            resource = await client.read_resource(f"knock://bulk_operations/{operation_id}")
            assert resource.contents, mode
            missing = await client.call_tool("get_bulk_operation", {"id": "not-an-id"})
            assert missing.is_error, mode
            assert "is not a bulk operation id" in text(missing), mode
        asked = {seen.headers["Authorization"] for seen in shared_knock.requests_for(operation_id)}
        assert asked == {f"Bearer {SECRET}"}, mode
    logged = server.stderr()
    assert "bulk_operations" in logged, "debug logging should have reached stderr"
    assert SECRET not in logged
    assert "Traceback" not in logged


DEMO_MISSING_ID = "de300000-0000-4000-8000-000000000099"


async def test_demo_over_http(tmp_path: Path) -> None:
    with HttpServer({}, tmp_path, ["--demo"]) as server:
        async with client_for(server, "auto") as client:
            result = await client.call_tool("summarize_bulk_operation", {"id": DEMO_COMPLETED_ID})
            missing = await client.call_tool("summarize_bulk_operation", {"id": DEMO_MISSING_ID})
        health = server.http.get("/healthz").json()
    assert not result.is_error, text(result)
    assert "has completed" in text(result)
    # The demo holds no key: its errors and its health speak of the demo and its ids.
    assert f"The demo has no bulk operation {DEMO_MISSING_ID}" in text(missing)
    assert "KNOCK_API_KEY is the secret key" not in text(missing)
    assert health == {
        "status": "ok",
        "version": "0.1.0",
        "demo": True,
        "demo_operation_ids": [operation.id for operation in DEMO_OPERATIONS],
        "fleet": {"redis": "not configured", "sharing": False},
    }


@pytest.mark.shared_server("defaults")
async def test_healthz_tells_version_and_key_presence_but_no_secret(
    shared_knock: FakeKnock, http_servers: SharedHttpServers, tmp_path: Path
) -> None:
    server = http_servers.started(knock_env(shared_knock))
    answer = server.http.get("/healthz")
    head = server.http.head("/healthz")
    posted = server.http.post("/healthz")
    elsewhere = server.http.get("/admin")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "version": "0.1.0",
        "knock_key_configured": True,
        "knock_key_source": "server",
        "fleet": {"sharing": False, "redis": "not configured"},
    }
    assert SECRET not in answer.text
    assert head.status_code == 200
    assert head.content == b""
    assert posted.status_code == 405
    assert elsewhere.status_code == 404
    with HttpServer({"KNOCK_BASE_URL": shared_knock.base_url}, tmp_path) as keyless:
        assert keyless.http.get("/healthz").json()["knock_key_configured"] is False
    assert "KNOCK_API_KEY is not set" in keyless.stderr()


async def test_token_mode_accepts_the_token_and_refuses_anything_else(
    fake_knock: FakeKnock, tmp_path: Path
) -> None:
    env = knock_env(fake_knock, KNOCK_MCP_AUTH_TOKEN=AUTH_TOKEN)
    read_by = {mode: copy_of(fake_knock, "completed", name=mode) for mode in ERAS}
    with HttpServer(env, tmp_path, ["--auth", "token"]) as server:
        for mode, operation_id in read_by.items():
            async with client_for(server, mode, {"Authorization": f"Bearer {AUTH_TOKEN}"}) as client:
                result = await client.call_tool("summarize_bulk_operation", {"id": operation_id})
            assert not result.is_error, (mode, text(result))
        refusals = {
            "missing": post_tools_list(server),
            "wrong": post_tools_list(server, authorization=f"Bearer {AUTH_TOKEN[:-1]}x"),
            "prefix": post_tools_list(server, authorization=f"Bearer {AUTH_TOKEN[:10]}"),
            "basic": post_tools_list(server, authorization=f"Basic {AUTH_TOKEN}"),
        }
    # The server's own key, never the caller's token, goes to Knock, whichever era the caller speaks.
    asked = {(seen.headers["Authorization"], seen.path.rpartition("/")[2]) for seen in fake_knock.requests}
    assert asked == {(f"Bearer {SECRET}", operation_id) for operation_id in read_by.values()}
    for name, refused in refusals.items():
        assert refused.status_code == 401, name
        assert refused.headers["www-authenticate"].startswith('Bearer realm="knock-mcp"'), name
        assert "KNOCK_MCP_AUTH_TOKEN" in refused.json()["error_description"], name
        assert AUTH_TOKEN[:10] not in refused.text, name
    assert "error=" not in refusals["missing"].headers["www-authenticate"]
    assert 'error="invalid_token"' in refusals["wrong"].headers["www-authenticate"]
    logged = server.stderr()
    assert AUTH_TOKEN not in logged
    assert SECRET not in logged


@pytest.mark.shared_server("knock-key")
async def test_knock_key_mode_uses_each_callers_key_and_refuses_others(
    shared_knock: FakeKnock, http_servers: SharedHttpServers
) -> None:
    read_by = {mode: copy_of(shared_knock, "completed", name=mode) for mode in ERAS}
    # The server's own key is ignored in this mode (and said to be): only callers' keys reach Knock.
    server = http_servers.started(knock_env(shared_knock), ["--auth", "knock-key"])
    assert server.http.get("/healthz").json()["knock_key_source"] == "caller"
    for mode, operation_id in read_by.items():
        async with client_for(server, mode, {"Authorization": f"Bearer {TENANT_A}"}) as client:
            result = await client.call_tool("summarize_bulk_operation", {"id": operation_id})
        assert not result.is_error, (mode, text(result))
    refusals = {
        "missing": post_tools_list(server),
        "public": post_tools_list(server, authorization="Bearer pk_test_abcdefghijklmnop"),
        "not a key": post_tools_list(server, authorization="Bearer hello-world-1234567890"),
        "too short": post_tools_list(server, authorization="Bearer sk_1"),
        "quoted": post_tools_list(server, authorization=f'Bearer "{TENANT_A}"'),
    }
    asked = {(seen.headers["Authorization"], seen.path.rpartition("/")[2]) for seen in shared_knock.requests}
    assert asked == {(f"Bearer {TENANT_A}", operation_id) for operation_id in read_by.values()}
    for name, refused in refusals.items():
        assert refused.status_code == 401, name
        assert refused.headers["www-authenticate"].startswith('Bearer realm="knock-mcp"'), name
        assert "pk_test_abcdefghijklmnop" not in refused.text
    assert "public key" in refusals["public"].json()["error_description"]
    assert "sk_..." in refusals["missing"].json()["error_description"]
    logged = server.stderr()
    assert "KNOCK_API_KEY is set but ignored" in logged
    for secret in (SECRET, TENANT_A, "pk_test_abcdefghijklmnop"):
        assert secret not in logged


@pytest.mark.shared_server("knock-key")
async def test_two_tenants_never_see_each_others_operations(
    shared_knock: FakeKnock, http_servers: SharedHttpServers
) -> None:
    """In each era, tenant A's key can read a completed operation, B's a failed one; each asks for
    both, many times and at once, so that anything one learned (a cached operation, a pooled
    connection's key) would show."""
    owned_in = {
        mode: {
            TENANT_A: copy_of(shared_knock, "completed", name=f"{mode} for a tenant"),
            TENANT_B: copy_of(shared_knock, "failed", name=f"{mode} for a tenant"),
        }
        for mode in ERAS
    }
    shared_knock.owners = {
        operation_id: key for own in owned_in.values() for key, operation_id in own.items()
    }
    outcomes: dict[tuple[str, str, str], list[bool]] = {}

    async def tenant(mode: str, key: str) -> None:
        async with client_for(server, mode, {"Authorization": f"Bearer {key}"}) as client:
            for _ in range(5):
                for operation_id in owned_in[mode].values():
                    result = await client.call_tool("get_bulk_operation", {"id": operation_id})
                    outcomes.setdefault((mode, key, operation_id), []).append(not result.is_error)
                    if result.is_error:
                        assert "Knock has no bulk operation" in text(result)
                    else:
                        assert result.structured_content is not None
                        assert result.structured_content["operation"]["id"] == operation_id

    server = http_servers.started(knock_env(shared_knock), ["--auth", "knock-key"])
    for mode, own in owned_in.items():
        asked_before = len(shared_knock.requests)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(tenant, mode, TENANT_A)
            tasks.start_soon(tenant, mode, TENANT_B)
        # Every key asked Knock itself: an operation read (and cached) with one key was never
        # the answer for the other.
        asked = {
            (seen.headers["Authorization"], seen.path.rpartition("/")[2])
            for seen in shared_knock.requests[asked_before:]
        }
        every_key_for_every_id = {
            (f"Bearer {key}", operation_id) for key in own for operation_id in own.values()
        }
        assert asked == every_key_for_every_id, mode
    assert len(outcomes) == len(ERAS) * 4
    for (mode, key, operation_id), answered in outcomes.items():
        assert answered == [operation_id == owned_in[mode][key]] * 5, (mode, key, operation_id)
    logged = server.stderr()
    assert TENANT_A not in logged
    assert TENANT_B not in logged


async def test_forged_host_and_origin_are_refused(fake_knock: FakeKnock, tmp_path: Path) -> None:
    # A name other machines use needs authentication (--auth none would be refused at start-up).
    args = ["--allowed-origin", "https://app.example.test", "--allowed-host", "mcp.example.test"]
    args += ["--auth", "token"]
    env = knock_env(fake_knock, KNOCK_MCP_AUTH_TOKEN=AUTH_TOKEN)
    bearer = {"authorization": f"Bearer {AUTH_TOKEN}"}
    with HttpServer(env, tmp_path, args) as server:
        forged_host = post_tools_list(server, host="evil.example.test", **bearer)
        forged_origin = post_tools_list(server, origin="http://evil.example.test", **bearer)
        loopback_origin = post_tools_list(server, origin=f"http://127.0.0.1:{server.port}", **bearer)
        allowed_origin = post_tools_list(server, origin="https://app.example.test", **bearer)
        allowed_host = post_tools_list(server, host="mcp.example.test", **bearer)
        plain = post_tools_list(server, **bearer)
        stream = server.http.get("/mcp", headers={"accept": "text/event-stream", **bearer})
    assert forged_host.status_code == 421
    assert "--allowed-host" in forged_host.json()["error"]["message"]
    assert forged_origin.status_code == 403
    assert "--allowed-origin" in forged_origin.json()["error"]["message"]
    for allowed in (loopback_origin, allowed_origin, allowed_host, plain):
        assert allowed.status_code == 200, allowed.text
        assert "get_bulk_operation" in allowed.text
    assert stream.status_code == 405
    assert stream.headers["allow"] == "POST"


@pytest.mark.shared_server("defaults")
async def test_a_request_body_over_the_limit_is_refused(
    shared_knock: FakeKnock, http_servers: SharedHttpServers
) -> None:
    server = http_servers.started(knock_env(shared_knock))
    padded = {**TOOLS_LIST, "padding": "x" * 70_000}
    answer = server.http.post("/mcp", content=json.dumps(padded), headers=MODERN_HEADERS)
    assert answer.status_code == 413


async def test_a_hundred_concurrent_calls_are_all_answered(fake_knock: FakeKnock, tmp_path: Path) -> None:
    # One operation per call, so that each is a request of its own to Knock (the server would
    # rightly share one read between calls for the same operation), and each era's own.
    ids = {
        mode: [copy_of(fake_knock, "completed", name=f"{mode} {number}") for number in range(100)]
        for mode in ERAS
    }
    answers: dict[str, dict[int, str]] = {mode: {} for mode in ERAS}
    asked: dict[str, int] = {}

    async def call(mode: str, number: int, client: Client) -> None:
        operation_id = ids[mode][number]
        result = await client.call_tool("get_bulk_operation", {"id": operation_id})
        assert not result.is_error, text(result)
        assert result.structured_content is not None
        answers[mode][number] = result.structured_content["operation"]["id"]

    # A generous timeout per attempt: on a busy machine a 2 s one retries, and this test counts
    # requests to show that concurrent calls share nothing they should not, not how timeouts retry.
    with HttpServer(
        knock_env(fake_knock, KNOCK_TIMEOUT="30", KNOCK_MCP_CALL_DEADLINE="50"), tmp_path
    ) as server:
        for mode in ERAS:
            asked_before = len(fake_knock.requests)
            async with client_for(server, mode) as client:
                await client.list_tools()  # caches the output schemas, so every call below is one request
                async with anyio.create_task_group() as tasks:
                    for number in range(100):
                        tasks.start_soon(call, mode, number, client)
            asked[mode] = len(fake_knock.requests) - asked_before
    for mode in ERAS:
        assert answers[mode] == dict(enumerate(ids[mode])), mode
    assert asked == dict.fromkeys(ERAS, 100)


# Each way a call ends while Knock stalls: cancelled in 2026-07-28 (the client stays connected), walked
# away from in either era (in 2025-11-25 a disconnect is the cancel), or left running (None).
CALL_ENDINGS: list[tuple[str, str | None]] = [
    ("auto", "cancel"),
    ("auto", "disconnect"),
    ("legacy", "disconnect"),
    ("auto", None),
    ("legacy", None),
]


def stalled_once(payload: dict[str, Any], seconds: float) -> Callable[[], dict[str, Any]]:
    """An operation whose first answer Knock holds for `seconds` (in the fake's thread for that
    request); later ones come at once."""
    answers = itertools.count()

    def answer() -> dict[str, Any]:
        if next(answers) == 0:
            time.sleep(seconds)
        return payload

    return answer


@pytest.mark.serial
async def test_a_cancelled_or_abandoned_call_stops_its_work_upstream(
    fake_knock: FakeKnock, tmp_path: Path
) -> None:
    """Knock stalls past the 1 s attempt timeout: a call left running retries (a second request
    after ~1.5 s); one that the client cancelled (2026-07-28) or walked away from (either era: in
    2025-11-25 a disconnect is the cancel) makes no second request. Every way at once, against one
    server, each on an operation of its own, so the 3 s that show no retry came pass once."""
    env = knock_env(fake_knock, KNOCK_TIMEOUT="1", KNOCK_MAX_RETRIES="2")
    operations = {
        way: f"5ca11ed0-0000-4000-8000-00000000000{number}" for number, way in enumerate(CALL_ENDINGS)
    }
    for operation in operations.values():
        fake_knock.operations[operation] = stalled_once(load_fixture("completed") | {"id": operation}, 4)
    asked: dict[tuple[str, str | None], int] = {}

    async def end_call(mode: str, stop: str | None, operation: str) -> None:
        async with anyio.create_task_group() as tasks:
            connection = anyio.CancelScope()

            async def call() -> None:
                with connection:
                    async with client_for(server, mode) as client:
                        await client.list_tools()
                        with anyio.CancelScope() as call_scope:
                            tasks.start_soon(cancel_when_knock_is_asked, call_scope)
                            await client.call_tool("get_bulk_operation", {"id": operation})
                        if stop == "cancel":
                            await anyio.sleep(3)  # connected throughout: only the call was cancelled

            async def cancel_when_knock_is_asked(call_scope: anyio.CancelScope) -> None:
                await eventually(lambda: len(fake_knock.requests_for(operation)) >= 1, within=30)
                if stop == "cancel":
                    call_scope.cancel()
                elif stop == "disconnect":
                    connection.cancel()

            tasks.start_soon(call)
        if stop == "disconnect":
            await anyio.sleep(3)  # well past the attempt timeout and the backoff before a retry
        asked[mode, stop] = len(fake_knock.requests_for(operation))

    with HttpServer(env, tmp_path) as server:
        async with anyio.create_task_group() as ways:
            for (mode, stop), operation in operations.items():
                ways.start_soon(end_call, mode, stop, operation)
    assert asked == {(mode, stop): 1 if stop else 2 for mode, stop in CALL_ENDINGS}
    assert "Traceback" not in server.stderr()
