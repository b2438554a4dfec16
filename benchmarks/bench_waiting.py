"""Knock requests per answered question: knock-mcp against a naive client, in one run.

    python -m benchmarks.bench_waiting [--quick]      (from the repository's root)

Two questions people and agents ask, each measured for knock-mcp (spawned over stdio, default
poll policy) and for a naive client that asks Knock directly, once a second per waiter:

- "Tell me when it is done", from 50 waiters at once on one operation that runs for a while.
  knock-mcp: 50 concurrent `wait_for_bulk_operation` calls, each called again on a timeout until
  the operation is final. Naive: 50 loops of `GET /v1/bulk_operations/{id}` once a second.
- "Is it done?", asked again and again about an operation that is already final. knock-mcp:
  sequential `summarize_bulk_operation` calls. Naive: one GET per question.

The operations run on the fake Knock from tests/support/fake_knock.py on 127.0.0.1 and advance with the
clock from their first request, the same timeline for both sides. Besides requests, the table shows
how long after the operation completed each waiter learned it (the price of polling less often).
The report is printed whether or not the target is met (exit status 0); an error exits non-zero.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import TextIO

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.support.fake_knock import Advancing, FakeKnock, Payload
from tests.support.installed import KNOCK_MCP

API_KEY = "sk_bench_0000000000000000"
WAITERS = 50
NAIVE_POLL_SECONDS = 1.0
MIN_SAVING_FOR_WAITERS = 20.0
TOTAL_ROWS = 10_000


@dataclass(frozen=True)
class Outcome:
    """One side of one scenario."""

    questions: int
    knock_requests: int
    seconds_to_learn: list[float]

    @property
    def per_question(self) -> float:
        return self.knock_requests / self.questions


def timeline(operation_id: str, stages: int) -> list[Payload]:
    """queued, processing in equal steps, then completed."""
    stamp = "2026-11-28T12:00:00Z"
    base: Payload = {
        "__typename": "BulkOperation",
        "id": operation_id,
        "name": "users.identify",
        "estimated_total_rows": TOTAL_ROWS,
        "success_count": 0,
        "error_count": 0,
        "error_items": [],
        "progress_path": f"/v1/bulk_operations/{operation_id}",
        "inserted_at": stamp,
        "updated_at": stamp,
        "started_at": stamp,
    }
    steps = [base | {"status": "queued", "processed_rows": 0, "started_at": None}]
    for step in range(1, stages - 1):
        processed = TOTAL_ROWS * step // (stages - 1)
        steps.append(base | {"status": "processing", "processed_rows": processed, "success_count": processed})
    steps.append(
        base
        | {
            "status": "completed",
            "processed_rows": TOTAL_ROWS,
            "success_count": TOTAL_ROWS,
            "completed_at": stamp,
        }
    )
    return steps


def completion_time(operation: Advancing) -> float:
    """When (time.monotonic) the operation turned completed: its first request plus its stages."""
    assert operation.first_request is not None
    assert operation.seconds_per_stage is not None
    return operation.first_request + (len(operation.stages) - 1) * operation.seconds_per_stage


async def knock_mcp_waiters(knock: FakeKnock, operation_id: str, errlog: TextIO) -> Outcome:
    env = {"KNOCK_API_KEY": API_KEY, "KNOCK_BASE_URL": knock.base_url, "PATH": os.environ.get("PATH", "")}
    learned: list[float] = []
    async with Client(
        stdio_client(StdioServerParameters(command=KNOCK_MCP, env=env), errlog=errlog)
    ) as client:
        await client.list_tools()

        async def wait() -> None:
            while True:
                result = await client.call_tool("wait_for_bulk_operation", {"id": operation_id})
                assert not result.is_error, result.content
                assert result.structured_content is not None
                if result.structured_content["is_final"]:
                    learned.append(time.monotonic())
                    return

        async with anyio.create_task_group() as group:
            for _ in range(WAITERS):
                group.start_soon(wait)
    return _outcome(knock, operation_id, WAITERS, learned)


async def naive_waiters(knock: FakeKnock, operation_id: str) -> Outcome:
    learned: list[float] = []
    async with httpx2.AsyncClient(
        base_url=knock.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    ) as http:

        async def wait() -> None:
            while True:
                response = await http.get(f"/v1/bulk_operations/{operation_id}")
                response.raise_for_status()
                if response.json()["status"] in ("completed", "failed"):
                    learned.append(time.monotonic())
                    return
                await anyio.sleep(NAIVE_POLL_SECONDS)

        async with anyio.create_task_group() as group:
            for _ in range(WAITERS):
                group.start_soon(wait)
    return _outcome(knock, operation_id, WAITERS, learned)


def _outcome(knock: FakeKnock, operation_id: str, questions: int, learned: list[float]) -> Outcome:
    operation = knock.operations[operation_id]
    assert isinstance(operation, Advancing)
    done = completion_time(operation)
    return Outcome(questions, len(knock.requests_for(operation_id)), [moment - done for moment in learned])


async def knock_mcp_repeats(knock: FakeKnock, operation_id: str, questions: int, errlog: TextIO) -> Outcome:
    env = {"KNOCK_API_KEY": API_KEY, "KNOCK_BASE_URL": knock.base_url, "PATH": os.environ.get("PATH", "")}
    async with Client(
        stdio_client(StdioServerParameters(command=KNOCK_MCP, env=env), errlog=errlog)
    ) as client:
        for _ in range(questions):
            result = await client.call_tool("summarize_bulk_operation", {"id": operation_id})
            assert not result.is_error, result.content
    return Outcome(questions, len(knock.requests_for(operation_id)), [])


async def naive_repeats(knock: FakeKnock, operation_id: str, questions: int) -> Outcome:
    async with httpx2.AsyncClient(
        base_url=knock.base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    ) as http:
        for _ in range(questions):
            (await http.get(f"/v1/bulk_operations/{operation_id}")).raise_for_status()
    return Outcome(questions, len(knock.requests_for(operation_id)), [])


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def report(rows: list[tuple[str, Outcome, Outcome, float | None]]) -> None:
    header = (
        "scenario",
        "questions",
        "Knock requests: knock-mcp",
        "naive",
        "per question: knock-mcp",
        "naive",
        "naive/knock-mcp",
        "s to learn it was done (median): knock-mcp",
        "naive",
        "target",
        "result",
    )
    table = [header]
    for name, ours, naive, target in rows:
        ratio = naive.knock_requests / ours.knock_requests
        table.append(
            (
                name,
                f"{ours.questions:,}",
                f"{ours.knock_requests:,}",
                f"{naive.knock_requests:,}",
                f"{ours.per_question:.3f}",
                f"{naive.per_question:.3f}",
                f"{ratio:.1f}x",
                _median(ours.seconds_to_learn),
                _median(naive.seconds_to_learn),
                f">= {target:g}x" if target else "",
                ("PASS" if ratio >= target else "FAIL") if target else "",
            )
        )
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    for number, row in enumerate(table):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if number == 0:
            print("  ".join("-" * width for width in widths))


async def main(quick: bool) -> None:
    stages, seconds_per_stage, repeats = (4, 1.0, 20) if quick else (11, 2.0, 100)
    waited_id = "be000000-0000-4000-8000-000000000001"
    polled_id = "be000000-0000-4000-8000-000000000002"
    final_id = "be000000-0000-4000-8000-000000000003"
    errlog = sys.stderr  # knock-mcp logs warnings and errors only: a clean run prints nothing there
    with FakeKnock() as knock:
        for operation_id in (waited_id, polled_id):
            knock.operations[operation_id] = Advancing(
                timeline(operation_id, stages), seconds_per_stage=seconds_per_stage
            )
        knock.operations[final_id] = timeline(final_id, 2)[-1]
        # Both sides of the first scenario run at once, so machine load lands on both alike.
        results: dict[str, Outcome] = {}

        async def ours() -> None:
            results["ours"] = await knock_mcp_waiters(knock, waited_id, errlog)

        async def theirs() -> None:
            results["naive"] = await naive_waiters(knock, polled_id)

        async with anyio.create_task_group() as group:
            group.start_soon(ours)
            group.start_soon(theirs)
        repeated = await knock_mcp_repeats(knock, final_id, repeats, errlog)
        knock.requests.clear()
        naive_repeated = await naive_repeats(knock, final_id, repeats)
    duration = (stages - 1) * seconds_per_stage
    print(
        f"Knock requests per answered question; an operation running {duration:g} s "
        f"({stages} states); naive = one GET per second per waiter."
    )
    report(
        [
            (
                f"{WAITERS} concurrent waiters on one operation",
                results["ours"],
                results["naive"],
                MIN_SAVING_FOR_WAITERS,
            ),
            (f"{repeats} repeated questions about a final operation", repeated, naive_repeated, None),
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a short run to check that the benchmark works")
    anyio.run(main, parser.parse_args().quick)
