"""Soak: over a thousand tool calls through a real `knock-mcp` process while Knock misbehaves.

Marked `slow` but part of CI. Prints the table that docs/reliability.md reproduces:

    .venv/bin/python -m pytest -n 0 -m slow -s tests/e2e/test_soak.py

The server runs with tight timings (KNOCK_TIMEOUT=1, KNOCK_MAX_RETRIES=2,
KNOCK_MCP_CALL_DEADLINE=5) so that a run takes about a minute, and the fake Knock stalls for 2 s,
longer than an attempt may take.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.support.fake_knock import FakeKnock, FaultInjector
from tests.support.http_server import HttpServer, client_for
from tests.support.installed import KNOCK_MCP
from tests.support.keys import SECRET
from tests.support.soak import (
    ProcessFigures,
    SoakPlan,
    SoakReport,
    build_workers,
    child_pid,
    fill_pool,
    process_figures,
    render_report,
    run_soak,
    warm_up,
)

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

FAULT_RATE = 0.10
SEED = 7
STDIO_WORKERS = 4
STDIO_CALLS_PER_WORKER = 275
HTTP_CLIENTS = 50
HTTP_CALLS_PER_CLIENT = 22
SOAK_ENV = {"KNOCK_TIMEOUT": "1", "KNOCK_MAX_RETRIES": "2", "KNOCK_MCP_CALL_DEADLINE": "5"}
SETTINGS_NOTE = (
    f"Faults at {FAULT_RATE:.0%} of requests (seed {SEED}); server run with "
    + ", ".join(f"{name}={value}" for name, value in SOAK_ENV.items())
    + "; stalls last 2 s."
)
# Leak limits, not speed targets.
MAX_RSS_GROWTH_KB = 10 * 1024
# A call may take the 5 s deadline plus the 2 s a stalled body holds it; far past that, it is lost.
CALL_LIMIT = 30.0


def print_and_check(
    title: str,
    report: SoakReport,
    figures: tuple[ProcessFigures, ProcessFigures, ProcessFigures],
    logged: str,
) -> None:
    """Print the run's table, then hold it to what every soak must show.

    `figures` are the server's before the warm-up, at the start of the run and at its end."""
    before_warm_up, start, end = figures
    table = render_report(title, report, SETTINGS_NOTE, before_warm_up=before_warm_up, start=start, end=end)
    print(f"\n{table}\n")
    assert len(report.calls) >= 1000
    assert report.count("wrong") == 0, table
    assert report.count("lost") == 0, table
    assert report.count("correct") > 0.8 * len(report.calls), table
    assert end.rss_kb - start.rss_kb < MAX_RSS_GROWTH_KB, table
    assert end.fds == start.fds, table
    assert SECRET not in logged
    assert "Traceback" not in logged, logged[-3000:]


async def test_soak_over_stdio(tmp_path: Path) -> None:
    stderr_path = tmp_path / "stderr.log"
    with FakeKnock(stall_seconds=2.0) as fake, stderr_path.open("w") as errlog:
        env = {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": fake.base_url, **SOAK_ENV}
        parameters = StdioServerParameters(command=KNOCK_MCP, args=[], env=env)
        async with Client(stdio_client(parameters, errlog=errlog)) as client:
            tools = (await client.list_tools()).tools
            workers = build_workers(fake, [client], STDIO_WORKERS, 6, SEED)
            pid = child_pid("knock-mcp")
            before_warm_up = process_figures(pid)
            await warm_up(fake, workers, tools)
            await fill_pool(workers)
            start = process_figures(pid)
            fake.faults = FaultInjector(FAULT_RATE, SEED)
            plan = SoakPlan(fake, tools, STDIO_CALLS_PER_WORKER, SEED, SECRET, CALL_LIMIT)
            report = await run_soak(plan, workers)
            fake.faults = None
            await fill_pool(workers)
            end = process_figures(pid)
    print_and_check(
        "stdio: one client, 4 concurrent callers",
        report,
        (before_warm_up, start, end),
        stderr_path.read_text(),
    )
    assert set(report.faults_injected) == set(fake.faults_injected), "every fault kind was met"


async def test_soak_over_http_with_50_concurrent_clients(tmp_path: Path) -> None:
    with FakeKnock(stall_seconds=2.0) as fake:
        env = {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": fake.base_url, **SOAK_ENV}
        with HttpServer(env, tmp_path, ["--log-level", "warning"]) as server:
            async with AsyncExitStack() as stack:
                clients = [
                    await stack.enter_async_context(client_for(server, "auto")) for _ in range(HTTP_CLIENTS)
                ]
                tools = (await clients[0].list_tools()).tools
                workers = build_workers(fake, clients, HTTP_CLIENTS, 3, SEED)
                before_warm_up = process_figures(server.pid)
                await warm_up(fake, workers, tools)
                await fill_pool(workers)
                start = process_figures(server.pid)
                fake.faults = FaultInjector(FAULT_RATE, SEED)
                plan = SoakPlan(fake, tools, HTTP_CALLS_PER_CLIENT, SEED, SECRET, CALL_LIMIT)
                report = await run_soak(plan, workers)
                fake.faults = None
                await fill_pool(workers)
                end = process_figures(server.pid)
            logged = server.stderr()
    print_and_check(f"HTTP: {HTTP_CLIENTS} concurrent clients", report, (before_warm_up, start, end), logged)
