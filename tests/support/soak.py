"""The soak harness: many tool calls against a fault-injecting fake Knock, every result classified.

Shared by the soak tests (stdio, HTTP). Workers call tools concurrently; each worker owns its own
operation ids, so the fake Knock's requests for those ids during one call are that call's attempts,
and every fault can be traced to the call it hit and what that call gave.

A result is one of:
- correct: the same data the fake Knock holds, computed here with the project's own pure functions;
- clear error: `isError` with an actionable text (no traceback, no key), explained by a fault the
  call met or by an id that cannot be answered;
- wrong: an answer that differs from the data, or an error nothing explains (must be 0);
- lost: the call raised or did not end in time (must be 0).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp.types import CallToolResult, Tool

from knock_mcp.failed_items import failed_items_page
from knock_mcp.models import MAX_ITEMS_PER_PAGE, BulkOperation
from knock_mcp.server import UNEXPECTED_FAILURE
from knock_mcp.summary import summarize
from knock_mcp.views import DEFAULT_MAX_ERROR_ITEMS, bound_operation
from tests.support.fake_knock import FakeKnock, Fault
from tests.support.results import text

INVALID_ID = "not-a-bulk-operation-id"
MISSING_ID_PREFIX = "0155e000-0000-4000-8000-"
# Each of these only appears in an error that also tells the reader what to do next.
NEXT_STEPS = (
    "try again",
    "Try again",
    "report this to the knock-mcp maintainers",
    "Check the id",
    "Ids are UUIDs",
)
# Summary fields that depend on the moment the summary is made while an operation still moves.
_CLOCK_FIELDS = ("queue_wait_seconds", "run_seconds", "rows_per_second", "seconds_left")
_NAMES = (
    "users.identify",
    "users.delete",
    "users.set_preferences",
    "objects.set",
    "tenants.set",
    "messages.unread",
    "ünïcødé.jöb ✓ 导入",
    "x" * 2000,
)
_ERROR_ITEM_COUNTS = (None, 0, 2, 60, 1200)


@dataclass
class Operation:
    payload: dict[str, Any]
    model: BulkOperation
    # What each tool must answer, by tool and arguments: the soak asks each operation the same few
    # questions over and over, so each answer is computed once.
    expected: dict[tuple[object, ...], dict[str, Any]] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.model.id)


class HeldOperation:
    """An operation the fake Knock answers only once every worker's held operation is being asked
    for, or after `gathering.timeout` seconds: held together, they make the server open one connection
    each (see `fill_pool`). It stays `processing`, so no cache keeps it."""

    def __init__(self, payload: dict[str, Any], gathering: threading.Barrier) -> None:
        self.payload = payload
        self.gathering = gathering

    def __call__(self) -> dict[str, Any]:
        # A request that waited out the timeout answers all the same: the descriptor check then
        # tells what the pool holds.
        with contextlib.suppress(threading.BrokenBarrierError):
            self.gathering.wait()
        return self.payload


@dataclass
class Worker:
    """One sequential caller and the ids only it asks about: `operations` for the run, `held` for
    filling the pool, and one still-moving operation per fault kind for the warm-up (the server
    answers a repeat question about a moving operation from memory for about a second, so a fault
    queued for a repeat would wait for some later request). The warm-up gives the fake Knock only
    those it asks about."""

    client: Client
    operations: list[Operation]
    missing_id: str
    held: HeldOperation
    warm_up_payloads: list[dict[str, Any]]


@dataclass
class CallRecord:
    tool: str
    operation_id: str
    outcome: str
    faults: list[Fault]
    detail: str = ""
    requests: int = 0


@dataclass
class SoakReport:
    calls: list[CallRecord] = field(default_factory=list)
    faults_injected: Counter[Fault] = field(default_factory=Counter)
    requests: int = 0
    seconds: float = 0.0
    unchecked_tools: list[str] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(call.outcome == outcome for call in self.calls)


def make_operation(rng: random.Random, operation_id: str, status: str | None = None) -> dict[str, Any]:
    """A schema-valid operation with a mix of statuses, names, counts and failed-item lists. Most are
    still moving: a final operation is cached by the server and asks Knock (and so meets faults) once."""
    status = status or rng.choice(["queued", "processing", "processing", "processing", "completed", "failed"])
    items_count = rng.choice(_ERROR_ITEM_COUNTS)
    estimated = rng.choice([0, 1, 1000, 2**40])
    processed = 0 if status == "queued" else rng.choice([0, 1, 999, 1000, 1500])
    payload: dict[str, Any] = {
        "__typename": "BulkOperation",
        "id": operation_id,
        "name": rng.choice(_NAMES),
        "status": status,
        "estimated_total_rows": estimated,
        "processed_rows": processed,
        "success_count": max(0, processed - (items_count or 0)),
        "error_count": rng.choice([None, items_count or 0]),
        "progress_path": f"/v1/bulk_operations/{operation_id}",
        "inserted_at": "2026-11-28T10:00:00Z",
        "updated_at": "2026-11-28T10:01:05Z",
        "started_at": None if status == "queued" else "2026-11-28T10:00:05Z",
        "completed_at": "2026-11-28T10:01:05Z" if status == "completed" else None,
        "failed_at": "2026-11-28T10:01:05Z" if status == "failed" else None,
    }
    if items_count is not None:
        payload["error_items"] = _error_items(items_count)
    return payload


@functools.cache
def _error_items(count: int) -> list[dict[str, str | None]]:
    """`count` failed items. Payloads share the list for each count: nothing changes a payload once
    made, and the soak makes over a thousand of them."""
    collections = ["projects", "teams", None, "ワークスペース"]
    return [{"id": f"entity_{n:05d}", "collection": collections[n % len(collections)]} for n in range(count)]


def build_workers(
    fake: FakeKnock, clients: Sequence[Client], workers: int, operations_per_worker: int, seed: int
) -> list[Worker]:
    """Put a distinct set of operations in the fake Knock for each worker, as JSON encoded once."""
    rng = random.Random(seed)
    # Well inside the server's 1 s attempt timeout, should some held request never come.
    gathering = threading.Barrier(workers, timeout=0.6)
    built = []
    for index in range(workers):
        owned = []
        for slot in range(operations_per_worker):
            payload = make_operation(rng, f"50a50000-0000-4000-8000-{index:06d}{slot:06d}")
            fake.operations[payload["id"]] = json.dumps(payload).encode()
            owned.append(Operation(payload, BulkOperation.model_validate(payload)))
        held_payload = make_operation(rng, f"90010000-0000-4000-8000-{index:012d}", "processing")
        held = HeldOperation(held_payload, gathering)
        fake.operations[held.payload["id"]] = held
        warm_up_payloads = [
            make_operation(rng, f"3a3a0000-0000-4000-8000-{index:06d}{number:06d}", "processing")
            for number, _ in enumerate(Fault)
        ]
        client = clients[index % len(clients)]
        built.append(Worker(client, owned, f"{MISSING_ID_PREFIX}{index:012d}", held, warm_up_payloads))
    return built


def is_clear_error(text: str, secret: str) -> bool:
    return (
        bool(text.strip())
        and "Traceback" not in text
        and secret not in text
        and UNEXPECTED_FAILURE not in text
        and any(step in text for step in NEXT_STEPS)
    )


def _comparable_summary(summary: dict[str, Any], is_final: bool) -> dict[str, Any]:
    dropped = {"as_of", "timed_out", "waited_seconds", *(() if is_final else _CLOCK_FIELDS)}
    if not is_final:
        # A wait that runs out says how to keep waiting instead of the summary's next step.
        dropped.add("next_step")
    return {name: value for name, value in summary.items() if name not in dropped}


def _summary_of(operation: Operation) -> dict[str, Any]:
    summary = summarize(operation.model, operation.model.updated_at).model_dump(mode="json")
    return _comparable_summary(summary, operation.model.status.is_final)


def expected_answer(tool: str, operation: Operation, arguments: dict[str, Any]) -> dict[str, Any]:
    """What `tool` must answer (for a summary tool, the part `_comparable_summary` keeps), computed
    with the project's own pure functions from the payload the fake Knock holds."""
    key = (tool, *sorted(arguments.items()))
    if key in operation.expected:
        return operation.expected[key]
    if tool in ("summarize_bulk_operation", "wait_for_bulk_operation"):
        expected = _summary_of(operation)
    elif tool == "get_bulk_operation":
        view = bound_operation(
            operation.model,
            arguments.get("max_error_items", DEFAULT_MAX_ERROR_ITEMS),
            arguments.get("error_items_offset", 0),
        )
        expected = view.model_dump(mode="json", by_alias=True)
    else:
        page = failed_items_page(operation.model, None, None, arguments.get("limit", MAX_ITEMS_PER_PAGE))
        expected = page.model_dump(mode="json")
    operation.expected[key] = expected
    return expected


def answer_matches(
    tool: str, operation: Operation, arguments: dict[str, Any], result: CallToolResult
) -> bool:
    """Whether `result` is exactly what the tool must answer for this operation (see `expected_answer`)."""
    structured = result.structured_content
    if structured is None:
        return False
    is_final = operation.model.status.is_final
    expected = expected_answer(tool, operation, arguments)
    if tool in ("summarize_bulk_operation", "wait_for_bulk_operation"):
        if tool == "wait_for_bulk_operation" and structured.get("timed_out") is is_final:
            return False
        return _comparable_summary(structured, is_final) == expected and operation.id in text(result)
    parsed_text: object = json.loads(text(result))
    return structured == expected and parsed_text == expected


# Tools this harness checks exactly. Others are called only with ids of final operations (any
# tool must answer those at once) and their answers are counted, not compared.
CHECKED_TOOLS = (
    "get_bulk_operation",
    "summarize_bulk_operation",
    "list_failed_items",
    "wait_for_bulk_operation",
)


def plan_arguments(rng: random.Random, tool: str, operation_id: str) -> dict[str, Any]:
    arguments: dict[str, Any] = {"id": operation_id}
    if tool == "get_bulk_operation":
        if rng.random() < 0.5:
            arguments["max_error_items"] = rng.choice([0, 1, 50, 1000])
        if rng.random() < 0.3:
            arguments["error_items_offset"] = rng.choice([0, 10, 1190, 5000])
    elif tool == "list_failed_items" and rng.random() < 0.5:
        arguments["limit"] = rng.choice([1, 10, 1000])
    elif tool == "wait_for_bulk_operation":
        # No waiting: the answer is the state of the moment, which the fake holds still.
        arguments["timeout_seconds"] = 0
    return arguments


def callable_with_an_id(tool: Tool) -> bool:
    schema = tool.input_schema
    return schema.get("required") == ["id"] and "id" in schema.get("properties", {})


@dataclass(frozen=True)
class SoakPlan:
    """What a run does: how many calls each worker makes and how long one may take before it is lost."""

    fake: FakeKnock
    tools: Sequence[Tool]
    calls_per_worker: int
    seed: int
    secret: str
    call_limit: float


async def run_worker(plan: SoakPlan, worker: Worker, rng: random.Random, report: SoakReport) -> None:
    by_id = {operation.id: operation for operation in worker.operations}
    final_ids = [operation.id for operation in worker.operations if operation.model.status.is_final]
    usable = [tool for tool in plan.tools if tool.name in CHECKED_TOOLS or callable_with_an_id(tool)]
    for _ in range(plan.calls_per_worker):
        tool = rng.choice(usable)
        checked = tool.name in CHECKED_TOOLS
        roll = rng.random()
        if not checked:
            operation_id = rng.choice(final_ids or [worker.missing_id])
        elif roll < 0.03:
            operation_id = INVALID_ID
        elif roll < 0.06:
            operation_id = worker.missing_id
        else:
            operation_id = rng.choice(worker.operations).id
        arguments = plan_arguments(rng, tool.name, operation_id)
        seen_before = len(plan.fake.requests)
        result: CallToolResult | None = None
        failure = ""
        try:
            with anyio.fail_after(plan.call_limit):
                result = await worker.client.call_tool(tool.name, arguments)
        except TimeoutError:
            failure = f"no result within {plan.call_limit:g} s"
        except Exception as error:
            failure = f"{type(error).__name__}: {error}"
        attempts = [seen for seen in plan.fake.requests[seen_before:] if seen.path.endswith(operation_id)]
        faults = [seen.fault for seen in attempts if seen.fault is not None]
        record = CallRecord(tool.name, operation_id, "", faults, failure, requests=len(attempts))
        record.outcome = _classify(
            record, result, by_id.get(operation_id), arguments, secret=plan.secret, checked=checked
        )
        report.calls.append(record)


def _classify(
    record: CallRecord,
    result: CallToolResult | None,
    operation: Operation | None,
    arguments: dict[str, Any],
    *,
    secret: str,
    checked: bool,
) -> str:
    if result is None:
        return "lost"
    said = text(result)
    if secret in said or secret in json.dumps(result.structured_content):
        record.detail = "the key is in the result"
        return "wrong"
    if result.is_error:
        if record.operation_id == INVALID_ID and record.requests:
            record.detail = "an invalid id reached Knock"
            return "wrong"
        explained = bool(record.faults) or operation is None
        if is_clear_error(said, secret) and explained:
            record.detail = said[:300]
            return "clear error"
        record.detail = said[:300]
        return "wrong"
    if operation is None:
        record.detail = "answered for an id Knock does not have"
        return "wrong"
    if not checked:
        return "answered, not compared"
    if answer_matches(record.tool, operation, arguments, result):
        return "correct"
    record.detail = said[:300]
    return "wrong"


async def run_soak(plan: SoakPlan, workers: Sequence[Worker]) -> SoakReport:
    report = SoakReport()
    report.unchecked_tools = sorted(tool.name for tool in plan.tools if tool.name not in CHECKED_TOOLS)
    injected_before = Counter(plan.fake.faults_injected)
    requests_before = len(plan.fake.requests)
    started = time.monotonic()
    async with anyio.create_task_group() as group:
        for index, worker in enumerate(workers):
            group.start_soon(run_worker, plan, worker, random.Random(plan.seed * 1_000_003 + index), report)
    report.seconds = time.monotonic() - started
    report.faults_injected = plan.fake.faults_injected - injected_before
    report.requests = len(plan.fake.requests) - requests_before
    return report


async def fill_pool(workers: Sequence[Worker]) -> None:
    """Make every worker's call hold a Knock connection at the same moment, so the server's pool holds
    one connection per worker: the same state before and after a run, for comparing descriptors."""
    workers[0].held.gathering.reset()
    async with anyio.create_task_group() as group:
        for worker in workers:
            group.start_soon(worker.client.call_tool, "get_bulk_operation", {"id": worker.held.payload["id"]})


async def warm_up(
    fake: FakeKnock, workers: Sequence[Worker], tools: Sequence[Tool], at_once: int = 4
) -> None:
    """Take every path before measuring, each fault kind met by `at_once` calls together, about the
    warm-up operations of the first `at_once` workers: first-use costs (imports, thread pools) and the
    allocator's high-water mark (several 16 MiB bodies read at the same moment) are then not counted
    as growth, while a leak still grows with the calls.

    Fault kinds go in rounds, as many side by side as the workers can make calls, one each (more calls
    in flight than the run makes would leave the server's pool holding more connections at the start
    than at the end), the oversized body last and alone."""
    owners = workers[:at_once]
    kinds_per_round = max(1, len(workers) // len(owners))
    numbered = list(enumerate(Fault))
    others: list[tuple[int, Fault]] = [pair for pair in numbered if pair[1] is not Fault.OVERSIZED_BODY]
    rounds = [others[first : first + kinds_per_round] for first in range(0, len(others), kinds_per_round)]
    # The oversized bodies take a round of their own, so that they are surely read at the same moment:
    # among other calls, the requests that meet them can reach the fake one after another.
    rounds.append([pair for pair in numbered if pair[1] is Fault.OVERSIZED_BODY])
    for round_kinds in rounds:
        calls = []
        for number, fault in round_kinds:
            fake.inject_next(*[fault] * len(owners))
            for owner in owners:
                payload = owner.warm_up_payloads[number]
                fake.operations[payload["id"]] = json.dumps(payload).encode()
                calls.append(payload["id"])
        async with anyio.create_task_group() as group:
            for worker, operation_id in zip(workers, calls, strict=False):
                group.start_soon(worker.client.call_tool, "get_bulk_operation", {"id": operation_id})
    assert fake.faults_pending == 0, "every fault queued for the warm-up was met there"
    # Then every checked tool on every operation, all workers at once: the busiest the run gets.
    usable = [tool.name for tool in tools if tool.name in CHECKED_TOOLS]
    for tool in usable:
        for slot in range(len(workers[0].operations)):
            async with anyio.create_task_group() as group:
                for worker in workers:
                    arguments = plan_arguments(random.Random(slot), tool, worker.operations[slot].id)
                    group.start_soon(worker.client.call_tool, tool, arguments)


@dataclass(frozen=True)
class ProcessFigures:
    rss_kb: int
    fds: int
    # What each descriptor is (socket:[inode], pipe:[...], a path), to say what a difference is made of.
    fd_kinds: Counter[str] = field(default_factory=Counter, compare=False)


def process_figures(pid: int) -> ProcessFigures:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    kinds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            kinds[os.readlink(f"/proc/{pid}/fd/{fd}").split(":")[0]] += 1
        except OSError:
            kinds["closed while read"] += 1
    return ProcessFigures(int(rss.split()[1]), sum(kinds.values()), kinds)


def child_pid(command_marker: str) -> int:
    """The pid of this process's child whose command line contains `command_marker`."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == me and command_marker in cmdline:
            return int(entry.name)
    raise LookupError(f"no child process running {command_marker}")


OUTCOMES = ("correct", "clear error", "answered, not compared", "wrong", "lost")


def render_report(
    title: str,
    report: SoakReport,
    settings_note: str,
    *,
    before_warm_up: ProcessFigures,
    start: ProcessFigures,
    end: ProcessFigures,
) -> str:
    """The table printed by the soak and copied into docs/reliability.md."""
    calls = len(report.calls)
    lines = [
        f"### {title}",
        "",
        f"{calls:,} tool calls in {report.seconds:.1f} s, {report.requests:,} requests to the fake Knock, "
        f"{sum(report.faults_injected.values()):,} of them faulty. {settings_note}",
        "",
        "| Result | Calls |",
        "| --- | ---: |",
    ]
    lines += [f"| {outcome} | {report.count(outcome):,} |" for outcome in OUTCOMES]
    by_tool = Counter(call.tool for call in report.calls)
    lines += ["", "| Tool | Calls |", "| --- | ---: |"]
    lines += [f"| {tool} | {count:,} |" for tool, count in sorted(by_tool.items())]
    invalid = [call for call in report.calls if call.operation_id == INVALID_ID]
    missing = [call for call in report.calls if call.operation_id.startswith(MISSING_ID_PREFIX)]
    lines += [
        "",
        f"Bad ids among them: {len(invalid):,} calls with an id that is not a UUID "
        f"({sum(call.requests for call in invalid)} requests reached Knock), {len(missing):,} with an id "
        "Knock does not have (404).",
    ]
    lines += [
        "",
        "| Fault injected | Times | Calls that met it | ...answered correctly | ...clear error | "
        "...of which for an id Knock does not have |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for fault in Fault:
        met = [call for call in report.calls if fault in call.faults]
        errors = [call for call in met if call.outcome == "clear error"]
        lines.append(
            f"| {fault.value} | {report.faults_injected[fault]:,} | {len(met):,} | "
            f"{sum(call.outcome == 'correct' for call in met):,} | {len(errors):,} | "
            f"{sum(call.operation_id.startswith(MISSING_ID_PREFIX) for call in errors):,} |"
        )
    growth = end.rss_kb - start.rss_kb
    lines += [
        "",
        "| Server process | Before warm-up | After warm-up (start) | At the end | Change over the run |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| Resident memory | {before_warm_up.rss_kb / 1024:.1f} MB | {start.rss_kb / 1024:.1f} MB | "
        f"{end.rss_kb / 1024:.1f} MB | {growth / 1024:+.1f} MB |",
        f"| Open file descriptors | {before_warm_up.fds} | {start.fds} | {end.fds} | "
        f"{end.fds - start.fds:+d} |",
    ]
    if end.fd_kinds != start.fd_kinds:
        lines += [
            "",
            f"Descriptors by kind: after warm-up {dict(start.fd_kinds)}, at the end {dict(end.fd_kinds)}.",
        ]
    if report.unchecked_tools:
        lines += ["", f"Answers of {', '.join(report.unchecked_tools)} were counted, not compared."]
    problems = [call for call in report.calls if call.outcome in ("wrong", "lost")]
    for call in problems[:10]:
        lines.append(f"- {call.outcome}: {call.tool} {call.operation_id} {call.faults}: {call.detail}")
    return "\n".join(lines)
