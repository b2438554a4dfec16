"""Knock requests per answered question for one replica and three, with and without Redis, in one run.

    python -m benchmarks.bench_fleet      (from the repository's root)

Each setting runs real `knock-mcp --transport http` processes (and, with Redis, a real
`redis-server` on loopback, as the fleet tests do) against the fake Knock from tests/support/fake_knock.py,
and asks two questions, spread evenly over the replicas:

- "Tell me when it is done": 30 concurrent `wait_for_bulk_operation` calls on one operation that
  completes about 5 s after its first request;
- "Is it done?": 60 concurrent `summarize_bulk_operation` calls on an operation already final.

The floor is one replica without Redis. The target (issue 14): three replicas with Redis within
1.25x of the floor's Knock requests; without Redis, three replicas cost about three times as much.
The report is printed whether or not the target is met (exit status 0); an error exits non-zero.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.support.fake_knock import Advancing, FakeKnock, Payload
from tests.support.http_server import HttpServer
from tests.support.redis_server import RedisServer

API_KEY = "sk_bench_fleet_000000000000000"
FLEET_SECRET = "bench-fleet-secret-0123456789abcdef"
WAITERS = 30
QUESTIONS = 60
TARGET_RATIO = 1.25
STAMP = "2026-11-28T12:00:00Z"


@dataclass(frozen=True)
class Setting:
    replicas: int
    redis: bool

    @property
    def label(self) -> str:
        return (
            f"{self.replicas} replica{'s' if self.replicas > 1 else ''}, {'Redis' if self.redis else 'alone'}"
        )


@dataclass(frozen=True)
class Result:
    setting: Setting
    wait_requests: int
    final_requests: int

    @property
    def total(self) -> int:
        return self.wait_requests + self.final_requests


def operation(operation_id: str, status: str, processed: int) -> Payload:
    return {
        "__typename": "BulkOperation",
        "id": operation_id,
        "name": "users.identify",
        "status": status,
        "estimated_total_rows": 1000,
        "processed_rows": processed,
        "success_count": processed,
        "error_count": 0,
        "error_items": [],
        "inserted_at": STAMP,
        "updated_at": f"2026-11-28T12:00:{processed // 100:02d}Z",
        "started_at": STAMP,
        "completed_at": STAMP if status == "completed" else None,
    }


@contextmanager
def fleet(setting: Setting, knock: FakeKnock, logs: Path) -> Iterator[list[HttpServer]]:
    with ExitStack() as stack:
        env = {"KNOCK_API_KEY": API_KEY, "KNOCK_BASE_URL": knock.base_url, "KNOCK_MCP_CALL_DEADLINE": "30"}
        if setting.redis:
            redis_server = stack.enter_context(RedisServer(logs))
            env |= {"KNOCK_MCP_REDIS_URL": redis_server.url, "KNOCK_MCP_FLEET_SECRET": FLEET_SECRET}
        yield [
            stack.enter_context(HttpServer(env, logs, ["--log-level", "warning"]))
            for _ in range(setting.replicas)
        ]


async def ask(servers: Sequence[HttpServer], tool: str, arguments: dict[str, object], count: int) -> None:
    async def through(server: HttpServer, calls: int) -> None:
        async with (
            httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=60)) as http,
            Client(streamable_http_client(server.mcp_url, http_client=http)) as client,
            anyio.create_task_group() as tasks,
        ):

            async def one() -> None:
                result = await client.call_tool(tool, arguments)
                if result.is_error:
                    raise RuntimeError(f"{tool} failed: {result.content}")

            for _ in range(calls):
                tasks.start_soon(one)

    async with anyio.create_task_group() as tasks:
        for index, server in enumerate(servers):
            tasks.start_soon(through, server, count // len(servers) + (index < count % len(servers)))


async def measure(setting: Setting, number: int, logs: Path) -> Result:
    running, final = f"be0c0000-0000-4000-8000-{number:012d}", f"be0c0000-0000-4000-9000-{number:012d}"
    with FakeKnock() as knock:
        stages = [operation(running, "processing", processed) for processed in range(0, 1000, 200)]
        knock.operations[running] = Advancing(
            [*stages, operation(running, "completed", 1000)], seconds_per_stage=1.0
        )
        knock.operations[final] = operation(final, "completed", 1000)
        with fleet(setting, knock, logs) as servers:
            await ask(servers, "wait_for_bulk_operation", {"id": running, "timeout_seconds": 25}, WAITERS)
            await ask(servers, "summarize_bulk_operation", {"id": final}, QUESTIONS)
        return Result(setting, len(knock.requests_for(running)), len(knock.requests_for(final)))


async def main() -> None:
    settings = [Setting(1, False), Setting(3, False), Setting(1, True), Setting(3, True)]
    results = []
    with tempfile.TemporaryDirectory() as logs:
        for number, setting in enumerate(settings):
            results.append(await measure(setting, number, Path(logs)))
    floor = results[0]
    print(f"Knock requests per answered question ({WAITERS} waiters on a running operation,")
    print(f"{QUESTIONS} questions about a final one, spread over the replicas); floor: one replica alone.\n")
    print(f"{'setting':<22}{'waiters':>10}{'per wait':>10}{'final':>8}{'per q.':>8}{'x floor':>9}")
    for result in results:
        print(
            f"{result.setting.label:<22}{result.wait_requests:>10}{result.wait_requests / WAITERS:>10.3f}"
            f"{result.final_requests:>8}{result.final_requests / QUESTIONS:>8.3f}"
            f"{result.total / floor.total:>9.2f}"
        )
    shared = results[-1].total / floor.total
    verdict = "met" if shared <= TARGET_RATIO else "NOT met"
    print(
        f"\n3 replicas with Redis: {shared:.2f}x the floor's requests (target <= {TARGET_RATIO}x): {verdict}"
    )
    print(f"3 replicas alone: {results[1].total / floor.total:.2f}x the floor's requests (expected about 3x)")


if __name__ == "__main__":
    anyio.run(main)
