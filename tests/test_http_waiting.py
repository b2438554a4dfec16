"""A long wait over HTTP: its progress notifications reach the client in both eras, and a client that
cancels or disconnects stops the server's polling of Knock."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from conftest import eventually
from fake_knock import Advancing, FakeKnock
from http_server import HttpServer
from test_http import client_for, knock_env
from test_waiting import LIVE_ID, outcome, stages

pytestmark = pytest.mark.anyio

# The server's default poll loop asks Knock once a second at first.
POLL_INTERVAL = 1.0


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_progress_of_a_wait_arrives_over_http(fake_knock: FakeKnock, tmp_path: Path, mode: str) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(), seconds_per_stage=1.0)
    notes: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append((progress, total, message))

    with HttpServer(knock_env(fake_knock, KNOCK_MCP_CALL_DEADLINE="30"), tmp_path) as server:
        async with client_for(server, mode) as client:
            result = await client.call_tool(
                "wait_for_bulk_operation",
                {"id": LIVE_ID, "timeout_seconds": 25},
                progress_callback=on_progress,
            )
    final = outcome(result)
    assert (final.status, final.processed_rows) == ("completed", 1000)
    progress = [note[0] for note in notes]
    assert len(progress) >= 3, notes
    assert progress == sorted(progress)
    assert progress[-1] == 1000
    assert notes[-1][2] == "completed: 1,000 of 1,000 rows, 5 failed"


@pytest.mark.parametrize(
    ("mode", "stop"), [("auto", "cancel"), ("auto", "disconnect"), ("legacy", "disconnect")]
)
async def test_a_wait_abandoned_over_http_stops_polling_knock(
    fake_knock: FakeKnock, tmp_path: Path, mode: str, stop: str
) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(), seconds_per_stage=600)  # stays queued
    with HttpServer(knock_env(fake_knock, KNOCK_MCP_CALL_DEADLINE="30"), tmp_path) as server:
        connection = anyio.CancelScope()
        with connection:
            async with client_for(server, mode) as client, anyio.create_task_group() as tasks:
                await client.list_tools()
                tasks.start_soon(client.call_tool, "wait_for_bulk_operation", {"id": LIVE_ID})
                await eventually(lambda: len(fake_knock.requests_for(LIVE_ID)) >= 3, within=30)
                if stop == "cancel":
                    tasks.cancel_scope.cancel()  # the client stays connected
                else:
                    connection.cancel()
        await anyio.sleep(POLL_INTERVAL * 1.5)  # a poll already under way may still land
        settled = len(fake_knock.requests_for(LIVE_ID))
        await anyio.sleep(POLL_INTERVAL * 4)
        assert len(fake_knock.requests_for(LIVE_ID)) == settled
    assert "Traceback" not in server.stderr()
