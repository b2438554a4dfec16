"""Waiting through the MCP server, against the loopback fake Knock whose operations advance."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, cast

import anyio
import pytest
from mcp import Client
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.types import RequestParamsMeta, TextContent
from pydantic import SecretStr

from knock_mcp.server import create_server
from knock_mcp.settings import Settings
from knock_mcp.state import ServerState
from knock_mcp.summary import WaitResult
from tests.support.fake_knock import Advancing, FakeKnock
from tests.support.keys import SECRET
from tests.support.payloads import LIVE_ID, load_fixture, stages
from tests.support.polling import QUICK, STEADY, eventually
from tests.support.results import outcome

pytestmark = pytest.mark.anyio

COMPLETED_ID = load_fixture("completed")["id"]


@pytest.fixture
def roomy(settings: Settings) -> Settings:
    """Settings whose call deadline leaves room to wait."""
    return replace(settings, call_deadline=30.0)


@pytest.fixture
async def client(roomy: Settings, mode: str) -> AsyncIterator[Client]:
    async with Client(create_server(roomy, poll_policy=QUICK), mode=mode) as connected:
        yield connected


async def test_progress_arrives_in_order_and_ends_at_the_final_state(
    client: Client, fake_knock: FakeKnock
) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages())
    notes: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append((progress, total, message))

    result = await client.call_tool(
        "wait_for_bulk_operation", {"id": LIVE_ID, "timeout_seconds": 20}, progress_callback=on_progress
    )
    final = outcome(result)
    assert (final.status, final.timed_out, final.processed_rows) == ("completed", False, 1000)
    progress = [note[0] for note in notes]
    assert progress == [0, 200, 400, 600, 800, 1000]
    assert all(total == 1000 for _, total, _ in notes)
    assert notes[0][2] == "queued: 0 of 1,000 rows"
    assert str(notes[2][2]).startswith("400 of 1,000 rows, 2 failed")
    assert notes[-1][2] == "completed: 1,000 of 1,000 rows, 5 failed"
    assert isinstance(result.content[0], TextContent)
    assert "has completed" in result.content[0].text


@pytest.mark.serial
async def test_a_timeout_returns_the_running_state_not_an_error(
    client: Client, fake_knock: FakeKnock
) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(), seconds_per_stage=60)
    result = await client.call_tool("wait_for_bulk_operation", {"id": LIVE_ID, "timeout_seconds": 0.5})
    running = outcome(result)
    assert running.timed_out
    assert running.status == "queued"
    assert 0.4 <= running.waited_seconds < 5
    assert "call wait_for_bulk_operation again" in running.next_step


async def test_timeout_zero_answers_at_once_with_the_current_state(
    client: Client, fake_knock: FakeKnock
) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(), seconds_per_stage=60)
    running = outcome(
        await client.call_tool("wait_for_bulk_operation", {"id": LIVE_ID, "timeout_seconds": 0})
    )
    assert running.timed_out
    assert len(fake_knock.requests) == 1


@pytest.mark.serial
async def test_a_cancelled_wait_stops_upstream_requests_within_one_interval(
    roomy: Settings, fake_knock: FakeKnock
) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(), seconds_per_stage=60)
    async with Client(create_server(roomy, poll_policy=STEADY)) as client:
        await client.list_tools()
        with anyio.move_on_after(10) as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(client.call_tool, "wait_for_bulk_operation", {"id": LIVE_ID})
                await eventually(lambda: len(fake_knock.requests) >= 3)
                group.cancel_scope.cancel()
        assert not scope.cancelled_caught
        await anyio.sleep(STEADY.first_interval)
        after_one_interval = len(fake_knock.requests)
        await anyio.sleep(3 * STEADY.first_interval)
        assert len(fake_knock.requests) == after_one_interval
        # The server is still serving.
        assert not (await client.call_tool("get_bulk_operation", {"id": COMPLETED_ID})).is_error


async def waiters_cost(settings: Settings, fake_knock: FakeKnock, waiters: int) -> int:
    fake_knock.operations[LIVE_ID] = Advancing(stages())
    fake_knock.requests.clear()
    async with Client(create_server(settings, poll_policy=QUICK)) as client:
        await client.list_tools()
        results: list[WaitResult] = []

        async def wait() -> None:
            results.append(outcome(await client.call_tool("wait_for_bulk_operation", {"id": LIVE_ID})))

        async with anyio.create_task_group() as group:
            for _ in range(waiters):
                group.start_soon(wait)
    assert [result.status for result in results] == ["completed"] * waiters
    return len(fake_knock.requests_for(LIVE_ID))


async def test_fifty_concurrent_waiters_cost_no_more_than_one(roomy: Settings, fake_knock: FakeKnock) -> None:
    one = await waiters_cost(roomy, fake_knock, 1)
    fifty = await waiters_cost(roomy, fake_knock, 50)
    assert one == len(stages())
    assert fifty <= one


async def test_a_final_operation_asked_again_is_fetched_once(client: Client, fake_knock: FakeKnock) -> None:
    for tool in ("get_bulk_operation", "summarize_bulk_operation", "wait_for_bulk_operation"):
        assert not (await client.call_tool(tool, {"id": COMPLETED_ID})).is_error
    assert (await client.read_resource(f"knock://bulk_operations/{COMPLETED_ID}")).contents
    assert len(fake_knock.requests) == 1


async def test_a_timeout_past_the_bound_is_refused(client: Client, fake_knock: FakeKnock) -> None:
    for timeout in (46, -1, True):
        result = await client.call_tool(
            "wait_for_bulk_operation", {"id": LIVE_ID, "timeout_seconds": timeout}
        )
        assert result.is_error
        assert isinstance(result.content[0], TextContent)
        assert "timeout_seconds" in result.content[0].text
    assert fake_knock.requests == []


@pytest.mark.serial
async def test_a_wait_never_outlasts_the_call_deadline(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(), seconds_per_stage=60)
    short = replace(settings, call_deadline=1.0)
    async with Client(create_server(short, poll_policy=QUICK)) as client:
        running = outcome(await client.call_tool("wait_for_bulk_operation", {"id": LIVE_ID}))
    assert running.timed_out
    assert running.waited_seconds < 3


async def test_a_wait_reports_knock_errors_as_tool_errors(client: Client) -> None:
    result = await client.call_tool("wait_for_bulk_operation", {"id": "99999999-9999-4999-8999-999999999999"})
    assert result.is_error
    assert isinstance(result.content[0], TextContent)
    assert "Knock has no bulk operation" in result.content[0].text


CALLER = contextvars.ContextVar[str]("caller")


async def caller_from_meta(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Stands in for HTTP auth: each request names its caller, whose key it is served with."""
    token = CALLER.set(str((ctx.meta or {}).get("caller", "a")))
    try:
        return await call_next(ctx)
    finally:
        CALLER.reset(token)


async def test_two_keys_never_share_an_answer(settings: Settings, fake_knock: FakeKnock) -> None:
    keys = {"a": SecretStr(SECRET), "b": SecretStr("sk_test_other_environment")}
    server: MCPServer[ServerState] = create_server(
        replace(settings, call_deadline=30.0), api_key=lambda: keys[CALLER.get()], poll_policy=QUICK
    )
    server.middleware.append(caller_from_meta)
    fake_knock.operations[LIVE_ID] = Advancing(stages(), seconds_per_stage=60)
    async with Client(server) as client:
        await client.list_tools()

        async def call_as(caller: str, tool: str, arguments: dict[str, Any]) -> None:
            result = await client.call_tool(tool, arguments, meta=cast(RequestParamsMeta, {"caller": caller}))
            assert not result.is_error

        async with anyio.create_task_group() as group:
            for caller in ("a", "b"):
                for tool in ("get_bulk_operation", "summarize_bulk_operation"):
                    group.start_soon(call_as, caller, tool, {"id": COMPLETED_ID})
                group.start_soon(
                    call_as, caller, "wait_for_bulk_operation", {"id": LIVE_ID, "timeout_seconds": 0.5}
                )
    authorizations = {seen.headers["Authorization"] for seen in fake_knock.requests_for(COMPLETED_ID)}
    assert authorizations == {f"Bearer {SECRET}", "Bearer sk_test_other_environment"}
    assert len(fake_knock.requests_for(COMPLETED_ID)) == 2, "one request per key, then each key's cache"
    live = {seen.headers["Authorization"] for seen in fake_knock.requests_for(LIVE_ID)}
    assert live == authorizations


async def test_progress_is_sent_only_when_rows_grow(client: Client, fake_knock: FakeKnock) -> None:
    running = stages()
    same_rows_later = running[1] | {"updated_at": "2026-11-28T12:05:00Z", "error_count": 9}
    finished_at_same_rows = running[2] | {"status": "completed", "completed_at": "2026-11-28T12:30:00Z"}
    fake_knock.operations[LIVE_ID] = Advancing(
        [running[1], same_rows_later, running[2], finished_at_same_rows]
    )
    notes: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append(progress)

    result = await client.call_tool("wait_for_bulk_operation", {"id": LIVE_ID}, progress_callback=on_progress)
    assert outcome(result).status == "completed"
    # The spec wants progress to increase with every notification: the same row count is not resent,
    # even for the final state.
    assert notes == [200, 400]
