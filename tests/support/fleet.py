"""A fleet of real knock-mcp HTTP processes sharing one real Redis, as the fleet tests start and
question it: its environment, its replicas started together, one fleet several tests share, operation
ids of its own, and what a replica answers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.fake_knock import FakeKnock, Payload
from tests.support.http_server import HttpServer, knock_env, started_together
from tests.support.payloads import load_fixture
from tests.support.redis_server import FLEET_SECRET, RedisServer

COMPLETED = load_fixture("completed")


def fleet_env(fake_knock: FakeKnock, redis_server: RedisServer, **extra: str) -> dict[str, str]:
    return knock_env(
        fake_knock,
        KNOCK_MCP_REDIS_URL=redis_server.url,
        KNOCK_MCP_FLEET_SECRET=FLEET_SECRET,
        KNOCK_MCP_CALL_DEADLINE="30",
        **extra,
    )


def replicas(
    count: int, env: dict[str, str], tmp_path: Path, args: Sequence[str] = ()
) -> AbstractContextManager[list[HttpServer]]:
    return started_together([HttpServer(env, tmp_path, args) for _ in range(count)])


@dataclass(frozen=True)
class SharedFleet:
    """Replicas, their fake Knock and their Redis, started once for the tests of a module that neither
    stop nor reconfigure any of them: a replica costs one to two seconds of CPU just to start. Those tests
    stay apart by asking about operation ids of their own, and count Knock's requests per id."""

    knock: FakeKnock
    redis: RedisServer
    replicas: list[HttpServer]


@contextmanager
def shared_fleet(count: int, directory: Path) -> Iterator[SharedFleet]:
    with (
        FakeKnock() as knock,
        RedisServer(directory) as redis_server,
        replicas(count, fleet_env(knock, redis_server), directory) as servers,
    ):
        yield SharedFleet(knock, redis_server, servers)


def completed_as(operation_id: str) -> Payload:
    return COMPLETED | {"id": operation_id}


def operation_id(number: int) -> str:
    return f"f1ee7000-0000-4000-8000-{number:012d}"


def health(server: HttpServer) -> dict[str, Any]:
    report: dict[str, Any] = server.http.get("/healthz").json()["fleet"]
    return report
