"""Knock's payloads as the tests serve them: the recorded fixtures, and an operation that advances
from queued to completed (served by the fake Knock's `Advancing`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.fake_knock import Payload

FIXTURES = Path(__file__).parents[1] / "fixtures"
LIVE_ID = "5eed0000-0000-4000-8000-00000000000a"


def load_fixture(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return payload


def stages(total: int = 1000, steps: int = 5, operation_id: str = LIVE_ID) -> list[Payload]:
    """queued, then processing in `steps` equal steps with a failure each, then completed."""
    base = load_fixture("processing") | {"id": operation_id, "estimated_total_rows": total}
    queued = base | {
        "status": "queued",
        "processed_rows": 0,
        "success_count": 0,
        "error_count": 0,
        "error_items": [],
        "started_at": None,
    }
    running = []
    for step in range(1, steps + 1):
        processed = total * step // steps
        failures = [{"id": f"user_{n}", "collection": None} for n in range(step)]
        running.append(
            base
            | {
                "processed_rows": processed,
                "success_count": processed - step,
                "error_count": step,
                "error_items": failures,
            }
        )
    done = running[-1] | {"status": "completed", "completed_at": "2026-11-28T12:30:00Z"}
    return [queued, *running[:-1], done]
