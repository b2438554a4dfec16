"""A simulated Knock for `--demo`: sample bulk operations served in-process, with no key and no network.

It plugs in as the HTTP client's transport, so the demo runs the very same client path as a real
deployment (request, status handling, JSON validation), only the bytes come from here. httpx2 is
imported where a transport answers, not at the top: `cli` shows a demo id in every --help, which
should not pay for loading it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from knock_mcp.errors import KnockMcpError, OperationNotFound

if TYPE_CHECKING:
    import httpx2

DEMO_BASE_URL = "https://demo.knock-mcp.invalid"

QUEUED_ID = "de300000-0000-4000-8000-000000000001"
PROCESSING_ID = "de300000-0000-4000-8000-000000000002"
COMPLETED_ID = "de300000-0000-4000-8000-000000000003"
FAILED_ID = "de300000-0000-4000-8000-000000000004"
MANY_FAILURES_ID = "de300000-0000-4000-8000-000000000005"
LIVE_ID = "de300000-0000-4000-8000-000000000006"

# The live operation repeats every cycle of the wall clock, so every process (and every
# `knock-mcp --demo call`) sees the same state at the same moment.
LIVE_CYCLE_SECONDS = 300
LIVE_QUEUED_SECONDS = 10
LIVE_PROCESSING_SECONDS = 240
LIVE_TOTAL_ROWS = 10_000
LIVE_ROWS_PER_FAILURE = 700


@dataclass(frozen=True)
class DemoOperation:
    """One sample operation and what it shows."""

    id: str
    shows: str
    build: Callable[[datetime], dict[str, Any]]


def _operation(
    operation_id: str,
    name: str,
    status: str,
    inserted: datetime,
    *,
    estimated: int,
    processed: int,
    failures: list[dict[str, Any]] | None = None,
    started: datetime | None = None,
    completed: datetime | None = None,
    failed: datetime | None = None,
    updated: datetime | None = None,
) -> dict[str, Any]:
    error_items = failures or []
    return {
        "__typename": "BulkOperation",
        "id": operation_id,
        "name": name,
        "status": status,
        "estimated_total_rows": estimated,
        "processed_rows": processed,
        "success_count": processed - len(error_items),
        "error_count": len(error_items),
        "error_items": error_items,
        "progress_path": f"/v1/bulk_operations/{operation_id}",
        "inserted_at": _stamp(inserted),
        "updated_at": _stamp(updated or completed or failed or started or inserted),
        "started_at": _stamp(started),
        "completed_at": _stamp(completed),
        "failed_at": _stamp(failed),
    }


def _stamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def _user_failures(count: int, every: int = 1) -> list[dict[str, Any]]:
    return [{"id": f"user_{index * every:05d}", "collection": None} for index in range(1, count + 1)]


def _many_failures() -> list[dict[str, Any]]:
    """12,000 failed items across three object collections."""
    spread = [("projects", 6000), ("workspaces", 4000), ("teams", 2000)]
    items: list[dict[str, Any]] = []
    for collection, count in spread:
        items.extend(
            {"id": f"{collection[:-1]}_{index:05d}", "collection": collection}
            for index in range(1, count + 1)
        )
    return items


def _queued(now: datetime) -> dict[str, Any]:
    return _operation(
        QUEUED_ID, "users.identify", "queued", now - timedelta(seconds=20), estimated=5000, processed=0
    )


def _processing(now: datetime) -> dict[str, Any]:
    started = now - timedelta(minutes=2, seconds=20)
    return _operation(
        PROCESSING_ID,
        "users.set_preferences",
        "processing",
        started - timedelta(seconds=8),
        estimated=10_000,
        processed=4200,
        failures=_user_failures(3, every=97),
        started=started,
        updated=now - timedelta(seconds=1),
    )


def _completed(now: datetime) -> dict[str, Any]:
    completed = now - timedelta(hours=2)
    return _operation(
        COMPLETED_ID,
        "users.delete",
        "completed",
        completed - timedelta(minutes=1, seconds=5),
        estimated=1200,
        processed=1200,
        started=completed - timedelta(minutes=1),
        completed=completed,
    )


def _failed(now: datetime) -> dict[str, Any]:
    failed = now - timedelta(hours=9, minutes=12)
    return _operation(
        FAILED_ID,
        "users.delete",
        "failed",
        failed - timedelta(minutes=4),
        estimated=8000,
        processed=3100,
        failures=_user_failures(12, every=211),
        started=failed - timedelta(minutes=3, seconds=50),
        failed=failed,
    )


def _many_failed(now: datetime) -> dict[str, Any]:
    completed = now - timedelta(minutes=35)
    return _operation(
        MANY_FAILURES_ID,
        "objects.set",
        "completed",
        completed - timedelta(minutes=7),
        estimated=50_000,
        processed=50_000,
        failures=_many_failures(),
        started=completed - timedelta(minutes=6, seconds=30),
        completed=completed,
    )


def _live(now: datetime) -> dict[str, Any]:
    epoch = now.timestamp()
    inserted = datetime.fromtimestamp(epoch - epoch % LIVE_CYCLE_SECONDS, UTC)
    elapsed = (now - inserted).total_seconds()
    started = inserted + timedelta(seconds=LIVE_QUEUED_SECONDS)
    if elapsed < LIVE_QUEUED_SECONDS:
        return _operation(
            LIVE_ID, "users.identify", "queued", inserted, estimated=LIVE_TOTAL_ROWS, processed=0
        )
    running = min(elapsed - LIVE_QUEUED_SECONDS, LIVE_PROCESSING_SECONDS)
    processed = int(LIVE_TOTAL_ROWS * running / LIVE_PROCESSING_SECONDS)
    failures = _user_failures(processed // LIVE_ROWS_PER_FAILURE, every=LIVE_ROWS_PER_FAILURE)
    if running < LIVE_PROCESSING_SECONDS:
        return _operation(
            LIVE_ID,
            "users.identify",
            "processing",
            inserted,
            estimated=LIVE_TOTAL_ROWS,
            processed=processed,
            failures=failures,
            started=started,
            updated=now,
        )
    return _operation(
        LIVE_ID,
        "users.identify",
        "completed",
        inserted,
        estimated=LIVE_TOTAL_ROWS,
        processed=processed,
        failures=failures,
        started=started,
        completed=started + timedelta(seconds=LIVE_PROCESSING_SECONDS),
    )


DEMO_OPERATIONS = (
    DemoOperation(QUEUED_ID, "queued: a user import waiting to start", _queued),
    DemoOperation(PROCESSING_ID, "processing: 42 % through a preferences update, 3 failures", _processing),
    DemoOperation(COMPLETED_ID, "completed: a clean bulk delete of 1,200 users", _completed),
    DemoOperation(FAILED_ID, "failed: a bulk delete that stopped after 3,100 of 8,000 rows", _failed),
    DemoOperation(
        MANY_FAILURES_ID, "completed with 12,000 failed items across three object collections", _many_failed
    ),
    DemoOperation(LIVE_ID, "live: a 10,000-row import that advances in real time (5-minute cycle)", _live),
)

_PATH = re.compile(r"/v1/bulk_operations/([^/]+)")


class DemoKnock:
    """Answers `GET /v1/bulk_operations/{id}` for the sample operations, 404 for anything else."""

    def __init__(self, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._now = now
        self._operations = {operation.id: operation for operation in DEMO_OPERATIONS}

    def transport(self) -> httpx2.MockTransport:
        import httpx2  # noqa: PLC0415

        return httpx2.MockTransport(self.handle)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        match = _PATH.fullmatch(request.url.path)
        operation = self._operations.get(match.group(1)) if match and request.method == "GET" else None
        if operation is None:
            return _json_response(
                404,
                {
                    "code": "resource_missing",
                    "message": "The resource you requested does not exist",
                    "status": 404,
                    "type": "invalid_request_error",
                },
            )
        return _json_response(200, operation.build(self._now()))


def _json_response(status: int, payload: dict[str, Any]) -> httpx2.Response:
    import httpx2  # noqa: PLC0415

    return httpx2.Response(
        status,
        content=json.dumps(payload).encode(),
        headers={"content-type": "application/json; charset=utf-8"},
    )


def demo_instructions() -> str:
    """Tell the model which ids exist, since Knock has no endpoint to list operations."""
    listed = "\n".join(f"- {operation.id}: {operation.shows}" for operation in DEMO_OPERATIONS)
    return (
        "DEMO MODE: this server answers from a built-in simulated Knock, not a real account. "
        f"Its sample bulk operations are:\n{listed}"
    )


def demo_error_text(error: KnockMcpError) -> str:
    """An error as the demo tells it: a missing operation is one the demo does not have, not a
    question of keys and environments (the demo reads no key)."""
    if isinstance(error, OperationNotFound):
        listed = "\n".join(f"- {operation.id}: {operation.shows}" for operation in DEMO_OPERATIONS)
        return (
            f"The demo has no bulk operation {error.operation_id}. It answers from a built-in simulated "
            f"Knock that holds only these sample operations:\n{listed}\nCall again with one of these ids; "
            "to read your own operations, start knock-mcp without --demo and with KNOCK_API_KEY set."
        )
    return str(error)


def demo_health() -> dict[str, Any]:
    """What /healthz says in the demo, which holds no key: that it is the demo, and its ids."""
    return {"demo": True, "demo_operation_ids": [operation.id for operation in DEMO_OPERATIONS]}
