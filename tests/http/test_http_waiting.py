"""A long wait over HTTP: its progress notifications reach the client in both eras, and a client that
cancels or disconnects stops the server's polling of Knock."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from mcp.types import CallToolResult

from tests.support.eras import ERAS
from tests.support.fake_knock import Advancing, FakeKnock
from tests.support.http_server import HttpServer, client_for, knock_env
from tests.support.keys import TENANT_A, TENANT_B
from tests.support.payloads import LIVE_ID, stages
from tests.support.polling import eventually
from tests.support.results import outcome

pytestmark = pytest.mark.anyio

# The server's default poll loop asks Knock once a second at first.
POLL_INTERVAL = 1.0


# Each era waits for an operation of its own: the other era's is final by then, and cached.
LIVE_ID_OF = {
    "auto": "5eed0000-0000-4000-8000-0000000000a1",
    "legacy": "5eed0000-0000-4000-8000-0000000000a2",
}
# What a progress callback hears: progress, total, message.
Notes = list[tuple[float, float | None, str | None]]


async def test_progress_of_a_wait_arrives_over_http(fake_knock: FakeKnock, tmp_path: Path) -> None:
    async def wait_in(mode: str, operation_id: str) -> tuple[CallToolResult, Notes]:
        notes: Notes = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            notes.append((progress, total, message))

        async with client_for(server, mode) as client:
            result = await client.call_tool(
                "wait_for_bulk_operation",
                {"id": operation_id, "timeout_seconds": 25},
                progress_callback=on_progress,
            )
        return result, notes

    with HttpServer(knock_env(fake_knock, KNOCK_MCP_CALL_DEADLINE="30"), tmp_path) as server:
        for mode in ERAS:
            operation_id = LIVE_ID_OF[mode]
            fake_knock.operations[operation_id] = Advancing(
                stages(operation_id=operation_id), seconds_per_stage=1.0
            )
            result, notes = await wait_in(mode, operation_id)
            final = outcome(result)
            assert (final.status, final.processed_rows) == ("completed", 1000), mode
            progress = [note[0] for note in notes]
            assert len(progress) >= 3, (mode, notes)
            assert progress == sorted(progress), mode
            assert progress[-1] == 1000, mode
            assert notes[-1][2] == "completed: 1,000 of 1,000 rows, 5 failed", mode


# Each way a client abandons a wait: cancelled in 2026-07-28 (the client stays connected), or walked
# away from in either era (in 2025-11-25 a disconnect is the cancel).
ABANDONS = [("auto", "cancel"), ("auto", "disconnect"), ("legacy", "disconnect")]


@pytest.mark.serial
async def test_a_wait_abandoned_over_http_stops_polling_knock(fake_knock: FakeKnock, tmp_path: Path) -> None:
    """Every way at once, against one server, each on an operation of its own: the quiet that shows a
    loop stopped lasts several poll intervals, and the ways need not wait it out one after another."""
    operations = {way: f"5eed0000-0000-4000-8000-00000000010{number}" for number, way in enumerate(ABANDONS)}
    for operation in operations.values():
        # Stays queued.
        fake_knock.operations[operation] = Advancing(
            [stage | {"id": operation} for stage in stages()], seconds_per_stage=600
        )
    asked: dict[tuple[str, str], tuple[int, int]] = {}

    async def abandon(mode: str, stop: str, operation: str) -> None:
        connection = anyio.CancelScope()
        with connection:
            async with client_for(server, mode) as client, anyio.create_task_group() as tasks:
                await client.list_tools()
                tasks.start_soon(client.call_tool, "wait_for_bulk_operation", {"id": operation})
                await eventually(lambda: len(fake_knock.requests_for(operation)) >= 3, within=30)
                if stop == "cancel":
                    tasks.cancel_scope.cancel()  # the client stays connected
                else:
                    connection.cancel()
        await anyio.sleep(POLL_INTERVAL * 1.5)  # a poll already under way may still land
        settled = len(fake_knock.requests_for(operation))
        await anyio.sleep(POLL_INTERVAL * 4)
        asked[mode, stop] = (settled, len(fake_knock.requests_for(operation)))

    with HttpServer(knock_env(fake_knock, KNOCK_MCP_CALL_DEADLINE="30"), tmp_path) as server:
        async with anyio.create_task_group() as tasks:
            for (mode, stop), operation in operations.items():
                tasks.start_soon(abandon, mode, stop, operation)
    for way in ABANDONS:
        settled, later = asked[way]
        assert later == settled, f"{way}: Knock was still polled after the wait was abandoned"
    assert "Traceback" not in server.stderr()


async def test_listeners_with_different_keys_hear_only_their_own_operations(
    fake_knock: FakeKnock, tmp_path: Path
) -> None:
    """Both tenants listen to the same operation URI; only A's key can read the operation, so only A
    may hear that it changes (B's own requests get 404 from Knock)."""
    fake_knock.operations[LIVE_ID] = Advancing(stages(), seconds_per_stage=0.5)
    fake_knock.owners[LIVE_ID] = TENANT_A
    uri = f"knock://bulk_operations/{LIVE_ID}"
    heard: dict[str, list[str]] = {TENANT_A: [], TENANT_B: []}

    async def listen(key: str) -> None:
        async with (
            client_for(server, "auto", {"Authorization": f"Bearer {key}"}) as client,
            client.listen(resource_subscriptions=[uri]) as events,
        ):
            async for event in events:
                heard[key].append(str(getattr(event, "uri", event)))

    with HttpServer(knock_env(fake_knock), tmp_path, ["--auth", "knock-key"]) as server:
        with anyio.move_on_after(8):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(listen, TENANT_A)
                tasks.start_soon(listen, TENANT_B)
                await eventually(lambda: len(heard[TENANT_A]) >= 2, within=30)
                await anyio.sleep(2 * POLL_INTERVAL)  # time for B's stream to hear anything it would
                tasks.cancel_scope.cancel()
    assert heard[TENANT_A]
    assert set(heard[TENANT_A]) == {uri}
    assert heard[TENANT_B] == []
    asked = {seen.headers["Authorization"] for seen in fake_knock.requests_for(LIVE_ID)}
    assert asked == {f"Bearer {TENANT_A}", f"Bearer {TENANT_B}"}
    logged = server.stderr()
    assert TENANT_A not in logged
    assert TENANT_B not in logged
