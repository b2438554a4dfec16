"""The simulated Knock behind --demo: every sample validates, the live one advances with the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from mcp import Client
from pydantic import SecretStr

from knock_mcp.demo import DEMO_BASE_URL, DEMO_OPERATIONS, LIVE_ID, DemoKnock
from knock_mcp.models import BulkOperation, BulkOperationStatus
from knock_mcp.server import create_server
from knock_mcp.settings import Settings

CYCLE_START = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def fetch(operation_id: str, now: datetime) -> httpx2.Response:
    return DemoKnock(now=lambda: now).handle(
        httpx2.Request("GET", f"https://demo/v1/bulk_operations/{operation_id}")
    )


def test_one_sample_per_status_and_one_with_many_failures() -> None:
    operations = [
        BulkOperation.model_validate_json(fetch(o.id, CYCLE_START).content) for o in DEMO_OPERATIONS
    ]
    assert {operation.status for operation in operations} == set(BulkOperationStatus)
    most_failures = max(len(operation.error_items or []) for operation in operations)
    assert most_failures == 12_000
    for operation in operations:
        assert operation.success_count + (operation.error_count or 0) == operation.processed_rows


@pytest.mark.parametrize(
    ("seconds_into_cycle", "status", "processed"),
    [
        (0, "queued", 0),
        (9, "queued", 0),
        (10, "processing", 0),
        (130, "processing", 5000),
        (250, "completed", 10_000),
        (299, "completed", 10_000),
        (300, "queued", 0),
    ],
)
def test_the_live_operation_follows_the_wall_clock(
    seconds_into_cycle: int, status: str, processed: int
) -> None:
    response = fetch(LIVE_ID, CYCLE_START + timedelta(seconds=seconds_into_cycle))
    operation = BulkOperation.model_validate_json(response.content)
    assert operation.status == status
    assert operation.processed_rows == processed


@pytest.mark.parametrize(
    "path", ["/v1/bulk_operations/99999999-9999-4999-8999-999999999999", "/v1/users", "/v1/bulk_operations/"]
)
def test_anything_else_is_a_knock_style_404(path: str) -> None:
    response = DemoKnock().handle(httpx2.Request("GET", f"https://demo{path}"))
    assert response.status_code == 404
    assert response.json()["code"] == "resource_missing"


@pytest.mark.anyio
async def test_the_demo_server_follows_the_live_operation_into_its_next_cycle() -> None:
    """A real final operation never changes, so it is cached; the demo's live one starts over every
    cycle, so the demo server does not cache final operations."""
    moment = [CYCLE_START + timedelta(seconds=260)]
    server = create_server(
        Settings(api_key=SecretStr("sk_demo"), base_url=DEMO_BASE_URL),
        transport=DemoKnock(now=lambda: moment[0]).transport(),
        cache_final_operations=False,
    )
    async with Client(server) as client:
        first = await client.call_tool("summarize_bulk_operation", {"id": LIVE_ID})
        moment[0] += timedelta(seconds=45)
        second = await client.call_tool("summarize_bulk_operation", {"id": LIVE_ID})
    assert first.structured_content is not None
    assert second.structured_content is not None
    assert (first.structured_content["status"], second.structured_content["status"]) == (
        "completed",
        "queued",
    )
