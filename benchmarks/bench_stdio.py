"""knock-mcp over stdio against a floor server, in one run: start-up, round trip, memory, output size.

    python -m benchmarks.bench_stdio [--quick]      (from the repository's root)

A figure for knock-mcp alone says little: most of a stdio round trip is the SDK, the pipes and
Python itself. So the same run measures `floor_server.py`, the least a server can do for the same
tool, and reports knock-mcp against it. The two are measured alternately (spawn one, spawn the
other; call one, call the other) so that noise on a busy machine lands on both alike. Timings are
what an `mcp.Client` sees, including its check of each result against the tool's output schema,
which real clients of this SDK pay too.

Every call asks for an operation id of its own, so every call is a request to Knock for both servers
(knock-mcp would otherwise rightly answer a repeat question about a finished operation from its
cache, and share reads of a running one), and the fake Knock's count of requests is checked against
the calls made. knock-mcp's memory figures therefore include what its cache of finished operations
holds after that many distinct ones. Then knock-mcp is asked again about a 12,000-item operation
it has cached (checked: no request reaches Knock), against the floor's uncached call; and this
process measures, with tracemalloc, what one such operation holds once read, against its JSON.

Knock is the fake from tests/support/fake_knock.py on 127.0.0.1; nothing leaves the machine. The report is
printed whether or not a target is met (exit status 0); an error of any kind exits non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.types import CallToolResult, TextContent

from knock_mcp.models import BulkOperation
from tests.support.fake_knock import FakeKnock
from tests.support.payloads import load_fixture

API_KEY = "sk_bench_0000000000000000"
BIG_ID = "b1600000-0000-4000-8000-000000012000"
BIG_FAILED_ITEMS = 12_000
# Failed items spread over object collections and users (null collection), as Knock reports them.
FAILED_ITEM_KINDS: tuple[tuple[str, str | None], ...] = (
    ("project", "projects"),
    ("workspace", "workspaces"),
    ("team", "teams"),
    ("user", None),
)

COLD_START_MAX_RATIO = 1.10
ROUND_TRIP_MAX_RATIO = 1.20
BIG_CALL_MAX_RATIO = 1.20
CACHE_HIT_MAX_RATIO = 1.0
ENTRY_MAX_PER_JSON_BYTE = 2.0
RSS_MAX_EXTRA_KB = 10 * 1024
OUTPUT_MIN_SHRINK = 25.0

T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """How many of each measurement to take."""

    cold_starts: int
    warmup_calls: int
    timed_calls: int
    big_calls: int
    cache_hits: int


FULL = Plan(cold_starts=15, warmup_calls=20, timed_calls=500, big_calls=10, cache_hits=20)
QUICK = Plan(cold_starts=5, warmup_calls=20, timed_calls=100, big_calls=2, cache_hits=5)


@dataclass(frozen=True)
class Server:
    """A server under test: how to start it. Both get the same environment."""

    name: str
    argv: tuple[str, ...]

    def parameters(self, base_url: str) -> StdioServerParameters:
        # Only PATH, HOME and a few more are inherited; the Knock settings must be passed. A server's
        # stderr is ours (the client's default errlog), so any warning it logs shows up in the run.
        env = {"KNOCK_API_KEY": API_KEY, "KNOCK_BASE_URL": base_url}
        return StdioServerParameters(command=self.argv[0], args=list(self.argv[1:]), env=env)


KNOCK_MCP = Server("knock-mcp", (sys.executable, "-m", "knock_mcp"))
FLOOR = Server("floor", (sys.executable, str(Path(__file__).resolve().parent / "floor_server.py")))
SERVERS = (KNOCK_MCP, FLOOR)


@dataclass
class Figures:
    """Everything measured for one server. Memory is in kB, as /proc reports it."""

    protocol: str = ""
    cold_start_ms: list[float] = field(default_factory=list)
    call_ms: list[float] = field(default_factory=list)
    big_call_ms: list[float] = field(default_factory=list)
    cache_hit_ms: list[float] = field(default_factory=list)
    big_call_cpu_ms: float = 0.0
    rss_after_calls_kb: int = 0
    rss_after_big_kb: int = 0
    peak_rss_kb: int = 0
    big_output_chars: int = 0


@dataclass(frozen=True)
class Results:
    """What the report is made from: per-server figures and the two sizes with no floor to compare."""

    figures: dict[Server, Figures]
    raw_body_bytes: int
    summary_chars: int
    entry_bytes: int


@dataclass(frozen=True)
class Session:
    """A running server with a connected client."""

    server: Server
    client: Client
    pid: int


@dataclass(frozen=True)
class Row:
    """One line of the report, already formatted; target and verdict stay empty for context-only rows."""

    metric: str
    knock: str
    floor: str
    comparison: str
    target: str = ""
    verdict: str = ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer runs: a smoke test, not figures to quote")
    plan = QUICK if parser.parse_args().quick else FULL
    small = load_fixture("completed")
    big = big_operation(small)
    with FakeKnock() as knock:
        knock.operations[BIG_ID] = big
        raw_body = httpx2.get(f"{knock.base_url}/v1/bulk_operations/{BIG_ID}").content
        calls = len(SERVERS) * (plan.warmup_calls + plan.timed_calls)
        small_ids = register_copies(knock, small, group=1, count=calls)
        big_ids = register_copies(knock, big, group=2, count=len(SERVERS) * plan.big_calls)
        results = anyio.run(measure, plan, knock, small_ids, big_ids, raw_body)
    print(render(plan, results))


def big_operation(template: dict[str, Any]) -> dict[str, Any]:
    """A finished job with 12,000 failed items, shaped like the fixture it is copied from."""
    items = []
    for number in range(1, BIG_FAILED_ITEMS + 1):
        prefix, collection = FAILED_ITEM_KINDS[number % len(FAILED_ITEM_KINDS)]
        items.append({"id": f"{prefix}_{number:05d}", "collection": collection})
    return {
        **template,
        "id": BIG_ID,
        "name": "objects.set",
        "progress_path": f"/v1/bulk_operations/{BIG_ID}",
        "estimated_total_rows": 50_000,
        "processed_rows": 50_000,
        "success_count": 50_000 - BIG_FAILED_ITEMS,
        "error_count": BIG_FAILED_ITEMS,
        "error_items": items,
    }


def register_copies(knock: FakeKnock, template: dict[str, Any], *, group: int, count: int) -> list[str]:
    """Serve `count` copies of `template`, each under an id of its own (ids of one group share their
    second part); returns the ids. An id is the same length as a real one, so the bodies are too."""
    ids = [f"{number:08x}-{group:04x}-4000-8000-000000000000" for number in range(count)]
    for operation_id in ids:
        path = f"/v1/bulk_operations/{operation_id}"
        knock.operations[operation_id] = template | {"id": operation_id, "progress_path": path}
    return ids


async def measure(
    plan: Plan, knock: FakeKnock, small_ids: list[str], big_ids: list[str], raw_body: bytes
) -> Results:
    figures = {server: Figures() for server in SERVERS}
    progress("warming up: one untimed start of each server (bytecode and page caches)")
    for server in SERVERS:
        await cold_start_ms(server, knock.base_url)
    progress(f"cold starts: {plan.cold_starts} of each")
    for run in range(plan.cold_starts):
        for server in alternate(SERVERS, run):
            figures[server].cold_start_ms.append(await cold_start_ms(server, knock.base_url))
    async with open_sessions(SERVERS, knock.base_url) as sessions:
        for session in sessions:
            figures[session.server].protocol = session.client.protocol_version
        await measure_round_trips(plan, sessions, knock, iter(small_ids), figures)
        summary_chars = await measure_big_operation(plan, sessions, knock, iter(big_ids), figures)
    return Results(figures, len(raw_body), summary_chars, entry_bytes(raw_body))


async def measure_round_trips(
    plan: Plan, sessions: list[Session], knock: FakeKnock, ids: Iterator[str], figures: dict[Server, Figures]
) -> None:
    progress(f"round trips: {plan.timed_calls} of each after {plan.warmup_calls} warm-up")
    requests_before = len(knock.requests)
    for run in range(plan.warmup_calls + plan.timed_calls):
        for session in alternate(sessions, run):
            elapsed, _ = await call(session, "get_bulk_operation", {"id": next(ids)})
            if run >= plan.warmup_calls:
                figures[session.server].call_ms.append(elapsed)
    expect_requests(
        knock, requests_before, len(sessions) * (plan.warmup_calls + plan.timed_calls), "round trips"
    )
    for session in sessions:
        figures[session.server].rss_after_calls_kb = proc_status_kb(session.pid, "VmRSS")


async def measure_big_operation(
    plan: Plan, sessions: list[Session], knock: FakeKnock, ids: Iterator[str], figures: dict[Server, Figures]
) -> int:
    """Time, size and memory of the 12,000-item operation; returns the size of knock-mcp's summary."""
    progress(f"{BIG_FAILED_ITEMS:,}-item operation: {plan.big_calls} calls of each")
    requests_before = len(knock.requests)
    cpu_before = {session.server: cpu_seconds(session.pid) for session in sessions}
    asked: dict[Server, str] = {}
    for run in range(plan.big_calls):
        for session in alternate(sessions, run):
            asked[session.server] = next(ids)
            elapsed, result = await call(session, "get_bulk_operation", {"id": asked[session.server]})
            figures[session.server].big_call_ms.append(elapsed)
            figures[session.server].big_output_chars = output_chars(result)
    expect_requests(
        knock, requests_before, len(sessions) * plan.big_calls, f"{BIG_FAILED_ITEMS:,}-item calls"
    )
    for session in sessions:
        cpu_ms = (cpu_seconds(session.pid) - cpu_before[session.server]) * 1000
        figures[session.server].big_call_cpu_ms = cpu_ms / plan.big_calls
        figures[session.server].rss_after_big_kb = proc_status_kb(session.pid, "VmRSS")
        figures[session.server].peak_rss_kb = proc_status_kb(session.pid, "VmHWM")
    knock_mcp = next(session for session in sessions if session.server is KNOCK_MCP)
    progress(
        f"cache hits: {plan.cache_hits} calls of knock-mcp on a {BIG_FAILED_ITEMS:,}-item operation it read"
    )
    requests_before = len(knock.requests)
    for _ in range(plan.cache_hits):
        elapsed, _ = await call(knock_mcp, "get_bulk_operation", {"id": asked[KNOCK_MCP]})
        figures[KNOCK_MCP].cache_hit_ms.append(elapsed)
    expect_requests(knock, requests_before, 0, "cache hits")
    _, summary = await call(knock_mcp, "summarize_bulk_operation", {"id": BIG_ID})
    return output_chars(summary)


def expect_requests(knock: FakeKnock, before: int, expected: int, what: str) -> None:
    """A server that answered from a cache would win for the wrong reason: every call must reach Knock
    (and a cache hit must not)."""
    if (seen := len(knock.requests) - before) != expected:
        raise RuntimeError(f"fake Knock saw {seen} requests during the {what}, expected {expected}")


def entry_bytes(raw_body: bytes) -> int:
    """Memory one operation holds once read and validated as knock-mcp's cache keeps it, by tracemalloc.
    Read once before measuring, so that what stays from the first read (pydantic's caches) is not
    counted against the entry."""
    BulkOperation.model_validate_json(raw_body)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        operation = BulkOperation.model_validate_json(raw_body)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del operation
    return held


async def cold_start_ms(server: Server, base_url: str) -> float:
    """Spawn to first `tools/list` answer, as a chat client experiences a server starting."""
    start = time.perf_counter()
    async with Client(server.parameters(base_url), mode="auto") as client:
        await client.list_tools()
        return (time.perf_counter() - start) * 1000


@asynccontextmanager
async def open_sessions(servers: Sequence[Server], base_url: str) -> AsyncIterator[list[Session]]:
    async with AsyncExitStack() as stack:
        sessions = []
        for server in servers:
            client = await stack.enter_async_context(Client(server.parameters(base_url), mode="auto"))
            # Listing first caches the output schemas, so no call below is preceded by a re-list.
            await client.list_tools()
            sessions.append(Session(server, client, child_pid(server.argv)))
        yield sessions


async def call(session: Session, tool: str, arguments: dict[str, Any]) -> tuple[float, CallToolResult]:
    """One timed `tools/call`; a tool error stops the benchmark, since its timing would mean nothing."""
    start = time.perf_counter()
    result = await session.client.call_tool(tool, arguments)
    elapsed = (time.perf_counter() - start) * 1000
    if result.is_error:
        text = " ".join(block.text for block in result.content if isinstance(block, TextContent))
        raise RuntimeError(f"{session.server.name} {tool} failed: {text}")
    return elapsed, result


def alternate(items: Sequence[T], run: int) -> Sequence[T]:
    """The items in turn, reversed on odd runs, so neither server always goes first."""
    return items if run % 2 == 0 else items[::-1]


def output_chars(result: CallToolResult) -> int:
    """What a client passes on to a model: the text blocks plus the structured content as compact JSON."""
    text = sum(len(block.text) for block in result.content if isinstance(block, TextContent))
    if result.structured_content is None:
        return text
    return text + len(json.dumps(result.structured_content, separators=(",", ":")))


def child_pid(argv: Sequence[str]) -> int:
    """The pid of our child process running `argv` (the client does not expose it)."""
    matches = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name in parentheses may hold spaces: the fields after it are fixed.
            parent = int(stat.read_text().rpartition(")")[2].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes().decode().split("\0")[:-1]
        except (OSError, IndexError, ValueError):
            continue  # a process that ended while we looked
        if parent == os.getpid() and cmdline == list(argv):
            matches.append(int(stat.parent.name))
    if len(matches) != 1:
        raise RuntimeError(f"expected one child process running {shlex.join(argv)}, found {matches}")
    return matches[0]


def proc_status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    raise RuntimeError(f"/proc/{pid}/status has no {key}")


def cpu_seconds(pid: int) -> float:
    """CPU time the process has used, user and system: unlike elapsed time, other load barely moves
    it, so it tells a busy machine's figures apart from the server's own cost."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    # utime and stime are the 14th and 15th fields of the line, counted from the pid.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], percent: int) -> float:
    """Interpolated between samples (the 50th is the median)."""
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def progress(message: str) -> None:
    print(f"bench_stdio: {message}", file=sys.stderr, flush=True)


def render(plan: Plan, results: Results) -> str:
    knock, floor = results.figures[KNOCK_MCP], results.figures[FLOOR]
    header = [
        f"command:    {shlex.join(sys.orig_argv)}",
        f"python:     {platform.python_implementation()} {platform.python_version()}, {platform.platform()}",
        f"cpus:       {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})",
        f"mcp:        {version('mcp')}, Client mode='auto' negotiated {knock.protocol} (knock-mcp), "
        f"{floor.protocol} (floor)",
        f"knock-mcp:  {shlex.join(KNOCK_MCP.argv)}",
        f"floor:      {shlex.join(FLOOR.argv)}",
        f"runs:       {plan.cold_starts} cold starts, {plan.timed_calls} round trips after "
        f"{plan.warmup_calls} warm-up, {plan.big_calls} calls on the {BIG_FAILED_ITEMS:,}-item "
        "operation; each server in turn",
        "",
    ]
    return "\n".join(
        header + table(timing_rows(knock, floor) + memory_rows(knock, floor) + size_rows(results))
    )


def timing_rows(knock: Figures, floor: Figures) -> list[Row]:
    cold = (knock.cold_start_ms, floor.cold_start_ms)
    calls = (knock.call_ms, floor.call_ms)
    big = (knock.big_call_ms, floor.big_call_ms)
    return [
        ratio_row("cold start median (ms)", cold, 50, ".0f", COLD_START_MAX_RATIO),
        ratio_row("cold start p90 (ms)", cold, 90, ".0f"),
        ratio_row("round trip p50 (ms)", calls, 50, ".2f", ROUND_TRIP_MAX_RATIO),
        ratio_row("round trip p99 (ms)", calls, 99, ".2f"),
        ratio_row(f"{BIG_FAILED_ITEMS:,}-item call median (ms)", big, 50, ".1f", BIG_CALL_MAX_RATIO),
        Row(
            f"{BIG_FAILED_ITEMS:,}-item call CPU, server (ms)",
            f"{knock.big_call_cpu_ms:.1f}",
            f"{floor.big_call_cpu_ms:.1f}",
            f"{knock.big_call_cpu_ms / floor.big_call_cpu_ms:.2f}x (mean, from /proc)",
        ),
        ratio_row(
            f"{BIG_FAILED_ITEMS:,}-item cache hit median (ms)",
            (knock.cache_hit_ms, floor.big_call_ms),
            50,
            ".1f",
            CACHE_HIT_MAX_RATIO,
            context="floor: its uncached call",
        ),
    ]


def memory_rows(knock: Figures, floor: Figures) -> list[Row]:
    after_big = f"RSS after {BIG_FAILED_ITEMS:,}-item calls (MB)"
    return [
        memory_row(
            "RSS after round trips (MB)", knock.rss_after_calls_kb, floor.rss_after_calls_kb, RSS_MAX_EXTRA_KB
        ),
        memory_row(after_big, knock.rss_after_big_kb, floor.rss_after_big_kb, RSS_MAX_EXTRA_KB),
        memory_row("peak RSS, VmHWM (MB)", knock.peak_rss_kb, floor.peak_rss_kb),
    ]


def size_rows(results: Results) -> list[Row]:
    raw = results.raw_body_bytes
    knock, floor = results.figures[KNOCK_MCP], results.figures[FLOOR]
    shrink = raw / knock.big_output_chars
    per_json_byte = results.entry_bytes / raw
    return [
        Row(f"Knock raw body, {BIG_FAILED_ITEMS:,} items (bytes)", f"{raw:,}", f"{raw:,}", "same input"),
        Row(
            f"one {BIG_FAILED_ITEMS:,}-item operation held (bytes)",
            f"{results.entry_bytes:,}",
            "-",
            f"{per_json_byte:.2f}x its JSON (tracemalloc)",
            f"<= {ENTRY_MAX_PER_JSON_BYTE:g}x its JSON",
            verdict(per_json_byte <= ENTRY_MAX_PER_JSON_BYTE),
        ),
        Row(
            "get_bulk_operation output (chars)",
            f"{knock.big_output_chars:,}",
            f"{floor.big_output_chars:,}",
            f"raw/knock-mcp {shrink:.1f}x; floor/raw {floor.big_output_chars / raw:.2f}x",
            f">= {OUTPUT_MIN_SHRINK:g}x smaller than raw",
            verdict(shrink >= OUTPUT_MIN_SHRINK),
        ),
        Row(
            "summarize_bulk_operation output (chars)",
            f"{results.summary_chars:,}",
            "-",
            f"raw/knock-mcp {raw / results.summary_chars:.1f}x",
        ),
    ]


def ratio_row(
    metric: str,
    samples: tuple[list[float], list[float]],
    percent: int,
    spec: str,
    max_ratio: float | None = None,
    *,
    context: str = "",
) -> Row:
    knock, floor = percentile(samples[0], percent), percentile(samples[1], percent)
    ratio = knock / floor
    row = Row(metric, format(knock, spec), format(floor, spec), f"{ratio:.2f}x{context and f' ({context})'}")
    if max_ratio is None:
        return row
    return replace(row, target=f"<= {max_ratio:.2f}x", verdict=verdict(ratio <= max_ratio))


def memory_row(metric: str, knock_kb: int, floor_kb: int, max_extra_kb: int | None = None) -> Row:
    extra = knock_kb - floor_kb
    row = Row(metric, f"{knock_kb / 1024:.1f}", f"{floor_kb / 1024:.1f}", f"{extra / 1024:+.1f} MB")
    if max_extra_kb is None:
        return row
    return replace(row, target=f"<= +{max_extra_kb / 1024:g} MB", verdict=verdict(extra <= max_extra_kb))


def verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def table(rows: list[Row]) -> list[str]:
    cells = [("metric", "knock-mcp", "floor", "knock-mcp vs floor", "target", "result")]
    cells += [(r.metric, r.knock, r.floor, r.comparison, r.target, r.verdict) for r in rows]
    widths = [max(len(line[column]) for line in cells) for column in range(6)]
    lines = []
    for line in cells:
        padded = [
            cell.rjust(width) if column in (1, 2) else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("  ".join(padded).rstrip())
    lines.insert(1, "  ".join("-" * width for width in widths))
    return lines


if __name__ == "__main__":
    main()
