"""knock-mcp over HTTP against a floor server: requests/s and latency at 1, 10 and 50 concurrent clients,
with one uvicorn worker and with two.

    python -m benchmarks.bench_http [--quick]      (from the repository's root)

Both servers run under the same command, `uvicorn --factory ... --no-access-log`, stateless with
SSE responses: knock-mcp as `knock_mcp.http:create_app`, the floor as
`benchmarks.floor_server:create_http_app` (a bare MCPServer doing the same GET and returning
Knock's body). They are measured alternately, in several rounds, so that noise on a busy machine
lands on both.

The load generator sends what an `mcp.Client` in 2026-07-28 mode sends for `tools/call` (headers
and body as captured from one), over one keep-alive connection per concurrent client, and parses
each JSON-RPC answer; it skips the SDK client's own result validation, which would cost more CPU than
the servers and hide the difference between them on two cores. Every call asks for an operation id
of its own, so every call is a request to Knock for both servers (knock-mcp would otherwise rightly
share reads), and the fake Knock's count of requests is checked against the calls made.

The fake Knock (tests/support/fake_knock.py) runs in a process of its own on 127.0.0.1. CPU time of the
servers, the load generator and the fake Knock is read from /proc for each timed run, to show what
the two cores are spent on. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2

from tests.support.fake_knock import FakeKnock, Payload, ServedOperation
from tests.support.http_server import HttpServer
from tests.support.payloads import load_fixture

API_KEY = "sk_bench_0000000000000000"
# What one run compares: servers (knock-mcp against the floor), or auth modes of one server.
Candidate = TypeVar("Candidate")
CONCURRENCY = (1, 10, 50)
WORKER_COUNTS = (1, 2)
MIN_THROUGHPUT_RATIO = 0.85
# What mcp.Client (2026-07-28) sends for tools/call; the id goes where {id} is.
HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": "2026-07-28",
    "mcp-method": "tools/call",
    "mcp-name": "get_bulk_operation",
}
BODY = (
    '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"get_bulk_operation",'
    '"arguments":{"id":"{id}"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28",'
    '"io.modelcontextprotocol/clientInfo":{"name":"mcp","version":"0.1.0"},'
    '"io.modelcontextprotocol/clientCapabilities":{}}}}'
)


@dataclass(frozen=True)
class Plan:
    """Per server and setting: a warm-up, then `slices` timed slices taken in turn with the other server's."""

    slices: int
    slice_seconds: float
    warmup_seconds: float


FULL = Plan(slices=12, slice_seconds=1.0, warmup_seconds=1.0)
QUICK = Plan(slices=2, slice_seconds=0.5, warmup_seconds=0.2)


@dataclass(frozen=True)
class Server:
    name: str
    factory: str

    def command(self, workers: int) -> Any:
        def argv(port: int) -> list[str]:
            return [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                self.factory,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--no-access-log",
                "--log-level",
                "warning",
                "--timeout-graceful-shutdown",
                "10",
            ]

        return argv


# uvicorn imports the factory from the directory it runs in (its default --app-dir is "."): the
# repository's root, as `python -m benchmarks.bench_http` runs there.
KNOCK_MCP = Server("knock-mcp", "knock_mcp.http:create_app")
FLOOR = Server("floor", "benchmarks.floor_server:create_http_app")
SERVERS = (KNOCK_MCP, FLOOR)


@dataclass
class Figures:
    """One server at one (workers, clients) setting, over all rounds."""

    calls: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    server_cpu: float = 0.0
    loadgen_cpu: float = 0.0
    knock_cpu: float = 0.0

    @property
    def per_second(self) -> float:
        return self.calls / self.seconds

    @property
    def server_cpu_ms_per_call(self) -> float:
        return self.server_cpu / self.calls * 1000


class AnyOperation(dict[str, ServedOperation]):
    """Answers every id with the fixture, renamed: each call can ask for an operation of its own."""

    def __init__(self, template: Payload) -> None:
        super().__init__()
        self._template = template

    def get(self, key: str, default: object = None) -> Payload:
        return self._template | {"id": key, "progress_path": f"/v1/bulk_operations/{key}"}


def run_fake_knock(pipe: Connection) -> None:
    """In a child process: serve until told to stop, answering 'count' with the requests seen."""
    template = load_fixture("processing")
    with FakeKnock() as knock:
        knock.operations = AnyOperation(template)
        pipe.send((knock.base_url, os.getpid()))
        while (message := pipe.recv()) != "stop":
            assert message == "count"
            pipe.send(len(knock.requests))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one short round: a smoke test, not figures")
    plan = QUICK if parser.parse_args().quick else FULL
    load_before = os.getloadavg()
    pipe, child_end = multiprocessing.Pipe()
    knock = multiprocessing.get_context("fork").Process(target=run_fake_knock, args=(child_end,), daemon=True)
    knock.start()
    base_url, knock_pid = pipe.recv()
    figures: dict[tuple[int, int, str], Figures] = {}
    try:
        for workers in WORKER_COUNTS:
            figures |= anyio.run(measure_workers, plan, workers, base_url, knock_pid, pipe)
    finally:
        pipe.send("stop")
        knock.join(10)
    print(render(plan, figures, load_before, os.getloadavg()))


async def measure_workers(
    plan: Plan, workers: int, base_url: str, knock_pid: int, pipe: Connection
) -> dict[tuple[int, int, str], Figures]:
    env = {"KNOCK_API_KEY": API_KEY, "KNOCK_BASE_URL": base_url, "KNOCK_MCP_LOG_LEVEL": "warning"}
    figures: dict[tuple[int, int, str], Figures] = {}
    ids = (f"{n:08x}-{workers:04x}-4000-8000-000000000000" for n in itertools.count())
    with ExitStack() as stack:
        running = {
            server: stack.enter_context(
                HttpServer(env, Path(os.environ.get("TMPDIR", "/tmp")), command=server.command(workers))
            )
            for server in SERVERS
        }
        for clients in CONCURRENCY:
            limits = httpx2.Limits(max_connections=clients, max_keepalive_connections=clients)
            async with AsyncExitStack() as connections:
                # One connection pool per server, kept for all its slices: the kernel's split of the
                # connections between workers is then the same for every slice.
                pools = {
                    server: await connections.enter_async_context(
                        httpx2.AsyncClient(limits=limits, timeout=30)
                    )
                    for server in SERVERS
                }
                progress(f"{workers} worker(s), {clients} client(s): {plan.slices} slices of each")
                await warm_up_then_alternate(
                    plan,
                    SERVERS,
                    running,
                    pools,
                    clients=clients,
                    ids=ids,
                    knock_pid=knock_pid,
                    pipe=pipe,
                    figures={
                        server: figures.setdefault((workers, clients, server.name), Figures())
                        for server in SERVERS
                    },
                )
    return figures


async def warm_up_then_alternate(
    plan: Plan,
    candidates: Sequence[Candidate],
    running: Mapping[Candidate, HttpServer],
    pools: Mapping[Candidate, httpx2.AsyncClient],
    *,
    clients: int,
    ids: Iterator[str],
    knock_pid: int,
    pipe: Connection,
    figures: Mapping[Candidate, Figures],
) -> None:
    """Warm every candidate up, then measure them in slices, alternating which goes first, so that
    a change in the machine's load falls on all of them alike."""
    for candidate in candidates:
        until = time.perf_counter() + plan.warmup_seconds
        url = running[candidate].mcp_url
        await run_clients(pools[candidate], url, clients=clients, ids=ids, until=until, latencies=[])
    for number in range(plan.slices):
        for candidate in candidates if number % 2 == 0 else candidates[::-1]:
            await measure_slice(
                plan,
                running[candidate],
                pools[candidate],
                clients=clients,
                ids=ids,
                knock_pid=knock_pid,
                pipe=pipe,
                figures=figures[candidate],
            )


async def measure_slice(
    plan: Plan,
    server: HttpServer,
    http: httpx2.AsyncClient,
    *,
    clients: int,
    ids: Iterator[str],
    knock_pid: int,
    pipe: Connection,
    figures: Figures,
) -> None:
    pipe.send("count")
    knock_before = pipe.recv()
    server_pids = process_tree(server.pid)
    cpu_before = (cpu_seconds(server_pids), time.process_time(), cpu_seconds([knock_pid]))
    started = time.perf_counter()
    latencies: list[float] = []
    calls = await run_clients(
        http,
        server.mcp_url,
        clients=clients,
        ids=ids,
        until=started + plan.slice_seconds,
        latencies=latencies,
    )
    elapsed = time.perf_counter() - started
    cpu_after = (cpu_seconds(server_pids), time.process_time(), cpu_seconds([knock_pid]))
    pipe.send("count")
    knock_requests = pipe.recv() - knock_before
    if knock_requests != calls:
        raise RuntimeError(f"fake Knock saw {knock_requests} requests for {calls} calls")
    figures.calls += calls
    figures.seconds += elapsed
    figures.latencies_ms += latencies
    figures.server_cpu += cpu_after[0] - cpu_before[0]
    figures.loadgen_cpu += cpu_after[1] - cpu_before[1]
    figures.knock_cpu += cpu_after[2] - cpu_before[2]


async def run_clients(
    http: httpx2.AsyncClient,
    url: str,
    *,
    clients: int,
    ids: Iterator[str],
    until: float,
    latencies: list[float],
) -> int:
    """`clients` loops, each sending one call after another until `until`; returns the calls made."""
    made = 0

    async def client() -> None:
        nonlocal made
        while time.perf_counter() < until:
            operation_id = next(ids)
            start = time.perf_counter()
            response = await http.post(url, headers=HEADERS, content=BODY.replace("{id}", operation_id))
            latencies.append((time.perf_counter() - start) * 1000)
            check(response, operation_id)
            made += 1

    async with anyio.create_task_group() as tasks:
        for _ in range(clients):
            tasks.start_soon(client)
    return made


def check(response: httpx2.Response, operation_id: str) -> None:
    """A failed call would make its timing meaningless: stop the benchmark instead."""
    answer = response.json() if response.status_code == 200 else None
    result = answer.get("result") if isinstance(answer, dict) else None
    if not isinstance(result, dict) or result.get("isError") or operation_id not in response.text:
        raise RuntimeError(f"call failed: HTTP {response.status_code} {response.text[:300]}")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants: uvicorn's supervisor and its workers."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rpartition(")")[2].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    tree = [pid]
    for child, parent in parents.items():
        if parent in tree and child not in tree:
            tree.append(child)
    return tree


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU of these processes (all their threads), from /proc."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def percentile(values: Sequence[float], percent: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[percent - 1]


def rate(figures: dict[tuple[int, int, str], Figures], workers: int, clients: int, server: Server) -> float:
    return figures[(workers, clients, server.name)].per_second


def progress(message: str) -> None:
    print(f"bench_http: {message}", file=sys.stderr, flush=True)


def render(
    plan: Plan,
    figures: dict[tuple[int, int, str], Figures],
    load_before: tuple[float, float, float],
    load_after: tuple[float, float, float],
) -> str:
    lines = [
        f"command:    {shlex.join(sys.orig_argv)}",
        f"python:     {platform.python_implementation()} {platform.python_version()}, {platform.platform()}",
        f"cpus:       {os.cpu_count()} (usable: {len(os.sched_getaffinity(0))})",
        f"versions:   mcp {version('mcp')}, uvicorn {version('uvicorn')}, httpx2 {version('httpx2')}",
        f"load avg:   {' '.join(f'{value:.2f}' for value in load_before)} before, "
        f"{' '.join(f'{value:.2f}' for value in load_after)} after (1, 5, 15 min)",
        f"runs:       {plan.slices} slices of {plan.slice_seconds:g} s per server and setting, the two "
        f"servers in turn, after {plan.warmup_seconds:g} s warm-up each",
        "cpu:        cores busy during the timed runs: server processes / load generator / fake Knock;",
        "            srv ms/call: CPU the server processes spent per call (less sensitive to other load)",
        "",
    ]
    cells = [
        (
            "workers",
            "clients",
            "server",
            "req/s",
            "p50 ms",
            "p99 ms",
            "cpu srv/gen/knock",
            "srv ms/call",
            "vs floor: req/s",
            "srv ms/call",
            "result",
        )
    ]
    for workers in WORKER_COUNTS:
        for clients in CONCURRENCY:
            floor = figures[(workers, clients, FLOOR.name)]
            for server in SERVERS:
                mine = figures[(workers, clients, server.name)]
                ratio = mine.per_second / floor.per_second
                is_ours = server is KNOCK_MCP
                cells.append(
                    (
                        str(workers),
                        str(clients),
                        server.name,
                        f"{mine.per_second:,.0f}",
                        f"{percentile(mine.latencies_ms, 50):.2f}",
                        f"{percentile(mine.latencies_ms, 99):.2f}",
                        "/".join(
                            f"{cpu / mine.seconds:.2f}"
                            for cpu in (mine.server_cpu, mine.loadgen_cpu, mine.knock_cpu)
                        ),
                        f"{mine.server_cpu_ms_per_call:.2f}",
                        f"{ratio:.2f}x" if is_ours else "",
                        f"{mine.server_cpu_ms_per_call / floor.server_cpu_ms_per_call:.2f}x"
                        if is_ours
                        else "",
                        ("PASS" if ratio >= MIN_THROUGHPUT_RATIO else "FAIL") if is_ours else "",
                    )
                )
    widths = [max(len(row[column]) for row in cells) for column in range(len(cells[0]))]
    for row in cells:
        lines.append("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    lines.insert(len(lines) - len(cells) + 1, "  ".join("-" * width for width in widths))
    lines += ["", f"target: knock-mcp's req/s >= {MIN_THROUGHPUT_RATIO:.2f}x the floor's at every setting"]
    for server in SERVERS:
        scaling = [
            f"{clients} clients {rate(figures, 2, clients, server) / rate(figures, 1, clients, server):.2f}x"
            for clients in CONCURRENCY
        ]
        lines.append(f"two workers vs one, {server.name} req/s: {', '.join(scaling)}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
