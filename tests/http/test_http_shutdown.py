"""SIGTERM on a real `knock-mcp --transport http` process with calls in flight in both protocol eras
and a listen stream open: the calls finish, new requests are refused, the listener is closed
gracefully, and the process exits."""

from __future__ import annotations

import signal
import time
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import MCPError

from knock_mcp.http.drain import LISTEN_GRACE_SECONDS
from knock_mcp.tls import default_tls_context
from tests.support.fake_knock import FakeKnock
from tests.support.http_server import HttpServer, client_for, knock_env
from tests.support.payloads import load_fixture
from tests.support.polling import wait_for_requests
from tests.support.results import text

pytestmark = [pytest.mark.anyio, pytest.mark.serial]

STALL_SECONDS = 3.0
CALLS_PER_ERA = 2


async def test_sigterm_drains_calls_in_flight_and_closes_listen_streams(
    fake_knock: FakeKnock, tmp_path: Path
) -> None:
    # Knock answers every call in flight slowly, so SIGTERM lands while they wait. Each call asks for
    # an operation of its own, so none shares another's read.
    ids = [f"5{number:07d}-0000-4000-8000-000000000000" for number in range(2 * CALLS_PER_ERA)]
    for operation_id in ids:
        fake_knock.operations[operation_id] = partial(
            slowly, load_fixture("completed") | {"id": operation_id}
        )
    answers: list[tuple[str, bool, str]] = []
    listener_acknowledged = anyio.Event()
    listener_end: list[str] = []
    terminated_at: list[float] = []

    async def call(mode: str, operation_id: str) -> None:
        async with client_for(server, mode) as client:
            await client.list_tools()  # so the call itself is the only request in flight
            result = await client.call_tool("summarize_bulk_operation", {"id": operation_id})
            answers.append((mode, result.is_error, text(result)))

    async def listen() -> None:
        async with client_for(server, "auto") as client, client.listen(resources_list_changed=True) as events:
            listener_acknowledged.set()
            async for _ in events:
                pass
        listener_end.append(f"graceful after {time.monotonic() - terminated_at[0]:.1f} s")

    with HttpServer(knock_env(fake_knock, KNOCK_TIMEOUT="10"), tmp_path) as server:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(listen)
            await listener_acknowledged.wait()
            for mode, operation_id in zip(("auto", "legacy") * CALLS_PER_ERA, ids, strict=True):
                tasks.start_soon(call, mode, operation_id)
            await wait_for_requests(fake_knock, 2 * CALLS_PER_ERA)
            server.terminate()
            terminated_at.append(time.monotonic())
            refusal = await refused_while_draining(server)
            assert answers == [], "the calls in flight should still be waiting on Knock"
        exit_code = await anyio.to_thread.run_sync(server.wait)
        drain_seconds = time.monotonic() - terminated_at[0]
    assert sorted(mode for mode, _, _ in answers) == sorted(["auto", "legacy"] * CALLS_PER_ERA)
    for mode, is_error, answer in answers:
        assert not is_error, (mode, answer)
        assert "has completed" in answer
    assert refusal in ("503", "connection refused")
    assert len(listener_end) == 1
    assert drain_seconds < LISTEN_GRACE_SECONDS + 10
    assert exit_code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it drained for
    logged = server.stderr()
    assert "Shutting down: refusing new requests" in logged
    assert "Traceback" not in logged
    assert "Cancelling" not in logged


def slowly(payload: dict[str, Any], seconds: float = STALL_SECONDS) -> dict[str, Any]:
    """Runs in the fake Knock's thread for this one request."""
    time.sleep(seconds)
    return payload


async def refused_while_draining(server: HttpServer) -> str:
    """A new request once the drain has begun: 503 from the app, or no connection at all once uvicorn
    has closed its socket. Either way it is not served."""
    async with httpx2.AsyncClient(verify=default_tls_context()) as http:
        with anyio.fail_after(10):
            while True:
                try:
                    health = await http.get(f"{server.url}/healthz")
                except httpx2.ConnectError:
                    return "connection refused"
                if health.status_code == 503:
                    assert health.json()["status"] == "draining"
                    return "503"
                await anyio.sleep(0.01)


async def test_a_call_still_running_at_the_shutdown_timeout_is_cancelled(
    fake_knock: FakeKnock, tmp_path: Path
) -> None:
    operation_id = "5eeeeeee-0000-4000-8000-000000000000"
    fake_knock.operations[operation_id] = partial(slowly, load_fixture("completed"), seconds=30)
    env = knock_env(fake_knock, KNOCK_TIMEOUT="60", KNOCK_MCP_CALL_DEADLINE="120")
    with HttpServer(env, tmp_path, ["--shutdown-timeout", "1"]) as server:
        async with anyio.create_task_group() as tasks:

            async def call() -> None:
                async with client_for(server, "legacy") as client:
                    await client.list_tools()
                    # Cut off after the timeout, the stream ends without an answer.
                    with pytest.raises(MCPError, match="ended without a response"):
                        await client.call_tool("get_bulk_operation", {"id": operation_id})

            tasks.start_soon(call)
            await wait_for_requests(fake_knock, 1)
            server.terminate()
            terminated = time.monotonic()
            exit_code = await anyio.to_thread.run_sync(server.wait)
            assert time.monotonic() - terminated < 15, "the shutdown timeout should bound the drain"
    assert exit_code in (0, -signal.SIGTERM)
    logged = server.stderr()
    assert "Cancelling 1 request(s) still running after 1 s" in logged
    assert "Traceback" not in logged
