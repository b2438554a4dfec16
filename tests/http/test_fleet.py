"""A fleet of real knock-mcp HTTP processes sharing one real Redis, against the fake Knock: news heard
by every replica, a takeover when the poller dies, a fleet-wide budget, Redis as help and not a
dependency, and, last, over a fleet those tests share, one poll loop per operation and one request
per question however many replicas are asked. What a process does with values in Redis it did not
write: tests/http/test_fleet_integrity.py."""

from __future__ import annotations

import contextlib
import itertools
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.support.fake_knock import Advancing, FakeKnock, Payload, Reply
from tests.support.fleet import (
    SharedFleet,
    completed_as,
    fleet_env,
    health,
    operation_id,
    replicas,
    shared_fleet,
)
from tests.support.http_server import HttpServer, client_for, knock_env
from tests.support.keys import SECRET, TENANT_A, TENANT_B
from tests.support.payloads import stages
from tests.support.polling import eventually
from tests.support.redis_server import FLEET_SECRET, RedisServer
from tests.support.results import outcome, structured

# Each test runs two or three servers and a Redis (or asks the fleet some of them share), counts
# Knock's requests and some bound how long things take: one at a time, in a chain of their own (see
# tests/conftest.py).
pytestmark = [pytest.mark.anyio, pytest.mark.serial("fleet")]


@pytest.fixture(scope="module")
def fleet_of_three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedFleet]:
    """Three replicas for the tests that only ask them questions: each of the others kills a replica,
    stops Redis or starts its replicas with settings of its own, and so starts a fleet of its own.
    The tests that share it come last in this file, so that it idles through none of the others
    (it stops when the module's last test is done)."""
    with shared_fleet(3, tmp_path_factory.mktemp("fleet")) as fleet:
        yield fleet


def stages_of(operation_id: str) -> list[Payload]:
    return [stage | {"id": operation_id} for stage in stages()]


async def wait_on_each(
    servers: Sequence[HttpServer], operation: str, waiters: int, seconds: float = 25
) -> list[str]:
    """`waiters` waits on `operation`, spread over `servers`; the status each ended with."""
    statuses: list[str] = []

    async def wait_through(server: HttpServer, count: int) -> None:
        async with client_for(server, "auto") as client, anyio.create_task_group() as tasks:

            async def one() -> None:
                result = await client.call_tool(
                    "wait_for_bulk_operation", {"id": operation, "timeout_seconds": seconds}
                )
                statuses.append(outcome(result).status)

            for _ in range(count):
                tasks.start_soon(one)

    async with anyio.create_task_group() as tasks:
        for index, server in enumerate(servers):
            tasks.start_soon(wait_through, server, waiters // len(servers) + (index < waiters % len(servers)))
    return statuses


async def test_a_listener_hears_what_another_replica_polls_and_only_for_its_own_key(
    fake_knock: FakeKnock, redis_server: RedisServer, tmp_path: Path
) -> None:
    live = operation_id(4)
    fake_knock.operations[live] = Advancing(stages_of(live), seconds_per_stage=1.0)
    fake_knock.owners[live] = TENANT_A
    uri = f"knock://bulk_operations/{live}"
    heard: dict[str, list[str]] = {TENANT_A: [], TENANT_B: []}
    env = fleet_env(fake_knock, redis_server)
    with replicas(2, env, tmp_path, ["--auth", "knock-key"]) as (listening, polling):

        async def listen(key: str) -> None:
            async with (
                client_for(listening, "auto", {"Authorization": f"Bearer {key}"}) as client,
                client.listen(resource_subscriptions=[uri]) as events,
            ):
                async for event in events:
                    heard[key].append(str(getattr(event, "uri", event)))

        async def wait() -> None:
            async with client_for(polling, "auto", {"Authorization": f"Bearer {TENANT_A}"}) as client:
                result = await client.call_tool(
                    "wait_for_bulk_operation", {"id": live, "timeout_seconds": 25}
                )
                assert outcome(result).status == "completed"

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait)
            # The waiting replica's loop takes the lease first; the listener's replica only hears.
            await eventually(lambda: len(fake_knock.requests_for(live)) >= 1, within=30)
            await anyio.sleep(0.5)
            tasks.start_soon(listen, TENANT_A)
            tasks.start_soon(listen, TENANT_B)
            await eventually(lambda: len(heard[TENANT_A]) >= 2, within=30)
            await anyio.sleep(2)  # time for B's stream to hear anything it would
            tasks.cancel_scope.cancel()
    assert set(heard[TENANT_A]) == {uri}
    assert heard[TENANT_B] == []
    # One loop polled for tenant A: requests no closer than a poll interval apart, but for the
    # first reads of the two replicas' callers.
    asked_by_a = [
        seen.at
        for seen in fake_knock.requests_for(live)
        if seen.headers["Authorization"] == f"Bearer {TENANT_A}"
    ]
    close_pairs = sum(later - earlier < 0.5 for earlier, later in itertools.pairwise(asked_by_a))
    assert close_pairs <= 1, asked_by_a


async def test_waiters_get_the_final_state_when_the_polling_replica_is_killed(
    fake_knock: FakeKnock, redis_server: RedisServer, tmp_path: Path
) -> None:
    live = operation_id(5)
    # Completed 6 s after the first poll: the kill, 2.5 s in, comes while the operation still runs.
    fake_knock.operations[live] = Advancing(stages_of(live), seconds_per_stage=1.0)
    statuses: list[str] = []
    with replicas(3, fleet_env(fake_knock, redis_server), tmp_path) as (doomed, *survivors):

        async def wait_through(server: HttpServer) -> None:
            statuses.extend(await wait_on_each([server], live, 2))

        async def wait_until_killed() -> None:
            with contextlib.suppress(Exception):  # its server dies under it
                await wait_on_each([doomed], live, 1)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait_until_killed)
            await eventually(lambda: len(fake_knock.requests_for(live)) >= 1, within=30)
            await anyio.sleep(0.5)  # the first replica's loop holds the lease
            for server in survivors:
                tasks.start_soon(wait_through, server)
            await anyio.sleep(2)
            assert doomed.process is not None
            doomed.process.kill()
            killed_at = time.monotonic()
            await eventually(lambda: len(statuses) == 4, within=40)
            tasks.cancel_scope.cancel()
    assert statuses == ["completed"] * 4
    after = [seen.at for seen in fake_knock.requests_for(live) if seen.at > killed_at]
    assert after, "nobody took over polling"
    print(f"\nfirst poll {after[0] - killed_at:.2f} s after the poller was killed")
    assert after[0] - killed_at < 4.0


async def test_a_replica_shutting_down_hands_its_poll_loop_over_at_once(
    fake_knock: FakeKnock, redis_server: RedisServer, tmp_path: Path
) -> None:
    live = operation_id(6)
    fake_knock.operations[live] = Advancing(stages_of(live), seconds_per_stage=60)
    redis = redis_server.client()
    # A shutdown timeout of 1 s cancels the wait still in flight, and so the loop it kept polling.
    env = fleet_env(fake_knock, redis_server, KNOCK_MCP_SHUTDOWN_TIMEOUT="1")
    with HttpServer(env, tmp_path) as server:

        async def wait_until_cut() -> None:
            with contextlib.suppress(Exception):  # the shutdown ends it with an error
                await wait_on_each([server], live, 1, seconds=20)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait_until_cut)
            await eventually(lambda: bool(redis.keys("knock-mcp:*lease")), within=10)
            server.terminate()
            await anyio.to_thread.run_sync(server.wait)
            # Left behind, a lease lives on for its 1.5 s and keeps the other replicas from taking over.
            left = redis.keys("knock-mcp:*lease")
            tasks.cancel_scope.cancel()
    assert not left, f"the replica left its lease in Redis: {left}"


async def test_calls_are_answered_while_redis_is_away_and_sharing_resumes_when_it_is_back(
    fake_knock: FakeKnock, redis_server: RedisServer, tmp_path: Path
) -> None:
    numbers = iter(range(100, 200))

    async def ask_each(fleet: Sequence[HttpServer]) -> tuple[str, list[float]]:
        """One new final operation asked of every replica in turn; the operation and each call's time."""
        final = operation_id(next(numbers))
        fake_knock.operations[final] = completed_as(final)
        durations = []
        for server in fleet:
            async with client_for(server, "auto") as client:
                started = time.monotonic()
                answer = structured(await client.call_tool("summarize_bulk_operation", {"id": final}))
                durations.append(time.monotonic() - started)
            assert answer["status"] == "completed"
        return final, durations

    with replicas(3, fleet_env(fake_knock, redis_server), tmp_path) as fleet:
        await eventually(lambda: all(health(server)["sharing"] for server in fleet), within=10)
        # Calls, with Redis and without, while waits are under way on every replica (one of them
        # polling for all until Redis stops), so that their times are compared alike.
        live = operation_id(199)
        fake_knock.operations[live] = Advancing(stages_of(live), seconds_per_stage=1.0)
        away = []
        async with anyio.create_task_group() as tasks:
            statuses: list[str] = []

            async def wait_across() -> None:
                statuses.extend(await wait_on_each(fleet, live, 6))

            tasks.start_soon(wait_across)
            await eventually(lambda: len(fake_knock.requests_for(live)) >= 1, within=30)
            shared, usual = await ask_each(fleet)
            assert len(fake_knock.requests_for(shared)) == 1
            redis_server.stop()
            for _ in range(3):
                final, durations = await ask_each(fleet)
                away.extend(durations)
                assert len(fake_knock.requests_for(final)) == 3  # each replica alone
        assert statuses == ["completed"] * 6
        print(f"\ncalls while Redis is away: at most {max(away):.3f} s, usually {max(usual):.3f} s")
        assert max(away) < max(usual) + 0.5
        assert not any(health(server)["sharing"] for server in fleet)

        redis_server.start()
        await eventually(lambda: all(health(server)["sharing"] for server in fleet), within=10)
        resumed, _ = await ask_each(fleet)
        assert len(fake_knock.requests_for(resumed)) == 1
        logs = [server.stderr() for server in fleet]
    for log in logs:
        assert log.count("is not answering or refuses writes") == 1, log
        assert "answers again" in log
        assert "Traceback" not in log


async def test_the_fleet_keeps_to_one_budget_per_key_and_honours_one_retry_after(
    fake_knock: FakeKnock, redis_server: RedisServer, tmp_path: Path
) -> None:
    budget = 20
    loaded = [operation_id(number) for number in range(300, 390)]
    for final in loaded:
        fake_knock.operations[final] = completed_as(final)
    env = fleet_env(fake_knock, redis_server, KNOCK_MCP_REQUESTS_PER_SECOND=str(budget))
    with replicas(3, env, tmp_path) as fleet:

        async def read(server: HttpServer, operations: Sequence[str], every: float = 0.0) -> None:
            async with client_for(server, "auto") as client, anyio.create_task_group() as tasks:
                for final in operations:
                    tasks.start_soon(client.call_tool, "summarize_bulk_operation", {"id": final})
                    await anyio.sleep(every)

        async with anyio.create_task_group() as tasks:
            for index, server in enumerate(fleet):
                # Twice the budget, steadily, from each replica's own clients.
                tasks.start_soon(read, server, loaded[index::3], 3 / (2 * budget))
        times = sorted(seen.at for seen in fake_knock.requests if seen.path.endswith(tuple(loaded)))
        assert len(times) == len(loaded)
        busiest = {
            seconds: max(sum(start <= at < start + seconds for at in times) for start in times)
            for seconds in (1, 3)
        }
        print(f"\nbusiest 1 s: {busiest[1]}, busiest 3 s: {busiest[3]}, with a budget of {budget}/s")
        # Turns are spaced exactly 1/budget apart, but a request reaches the fake (whose clock shares
        # this busy test process) some time after its turn: on a loaded machine a process or the
        # fake stalls for a few hundred milliseconds, then several turns land together. A longer
        # window shows the rate without that jitter. Without the fleet's budget the fake would see
        # the offered 40 requests/s.
        assert busiest[1] <= budget * 1.5
        assert busiest[3] <= budget * 3 + 3

        limited, others = operation_id(400), [operation_id(401), operation_id(402)]
        for final in (limited, *others):
            fake_knock.operations[final] = completed_as(final)
        # Two seconds, not the shortest one Knock can ask for: the other replicas' reads begin 0.2 s
        # after it plus their MCP clients' set-up, which on a loaded machine can take most of a second,
        # so a hold-off of one second could pass unshared.
        retry_after = 2
        fake_knock.fail_next(Reply(429, b'{"message": "slow down"}', {"Retry-After": str(retry_after)}))
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read, fleet[0], [limited])
            await eventually(lambda: len(fake_knock.requests_for(limited)) == 1, within=10)
            told_at = fake_knock.requests_for(limited)[0].at
            await anyio.sleep(0.2)  # the hold-off reaches Redis
            tasks.start_soon(read, fleet[1], others[:1])
            tasks.start_soon(read, fleet[2], others[1:])
    afterwards = [seen.at for seen in fake_knock.requests if seen.at > told_at]
    assert len(afterwards) == 3  # the limited call's retry and the other replicas' reads
    assert min(afterwards) - told_at >= retry_after - 0.1


async def test_thirty_waiters_over_three_replicas_cost_knock_what_one_replica_does(
    fleet_of_three: SharedFleet, tmp_path: Path
) -> None:
    fake_knock, fleet = fleet_of_three.knock, fleet_of_three.replicas
    alone, shared = operation_id(1), operation_id(2)
    for operation in (alone, shared):
        fake_knock.operations[operation] = Advancing(stages_of(operation), seconds_per_stage=1.0)
    # The lone replica and the fleet at once, each on an operation of its own, as Knock counts per id.
    statuses: dict[str, list[str]] = {}

    async def wait_through(servers: Sequence[HttpServer], operation: str) -> None:
        statuses[operation] = await wait_on_each(servers, operation, 30)

    with HttpServer(knock_env(fake_knock, KNOCK_MCP_CALL_DEADLINE="30"), tmp_path) as single:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(wait_through, [single], alone)
            tasks.start_soon(wait_through, fleet, shared)
    assert statuses == {alone: ["completed"] * 30, shared: ["completed"] * 30}
    one_replica, three_replicas = len(fake_knock.requests_for(alone)), len(fake_knock.requests_for(shared))
    print(
        f"\n30 waiters: {one_replica} Knock requests with one replica, {three_replicas} with three and Redis"
    )
    assert three_replicas <= 1.25 * one_replica


async def test_a_hundred_questions_about_a_final_operation_over_three_replicas_cost_one_request(
    fleet_of_three: SharedFleet,
) -> None:
    fake_knock, redis_server, fleet = fleet_of_three.knock, fleet_of_three.redis, fleet_of_three.replicas
    final = operation_id(3)
    fake_knock.operations[final] = completed_as(final)
    tools = ["summarize_bulk_operation", "get_bulk_operation", "list_failed_items"]
    answers: list[dict[str, Any]] = []

    async def ask(server: HttpServer, questions: int, offset: int) -> None:
        async with client_for(server, "auto") as client, anyio.create_task_group() as tasks:

            async def one(number: int) -> None:
                answers.append(structured(await client.call_tool(tools[number % 3], {"id": final})))

            for number in range(questions):
                tasks.start_soon(one, offset + number)

    async with anyio.create_task_group() as tasks:
        for index, server in enumerate(fleet):
            tasks.start_soon(ask, server, 34 if index == 0 else 33, index * 34)
    assert all(health(server)["sharing"] for server in fleet)
    # What the replicas have logged so far, since they started: this test's calls among them.
    logs = [server.stderr() for server in fleet]
    assert len(answers) == 100
    assert len(fake_knock.requests_for(final)) == 1
    # Redis holds no Knock key, in its key names or (compressed or not) in its values.
    with redis_server.client() as inspect:
        names = list(inspect.scan_iter())
        assert any(name.endswith(b":final") for name in names)
        for name in names:
            assert SECRET.encode() not in name
            assert inspect.pttl(name) > 0, f"{name!r} has no TTL"
            if inspect.type(name) != b"string":
                continue
            value = inspect.get(name)
            assert isinstance(value, bytes)
            readable = zlib.decompress(value[60:]) if value.startswith(b"KMF1") else value
            assert SECRET.encode() not in value
            assert SECRET.encode() not in readable
    assert all(SECRET not in log and FLEET_SECRET not in log for log in logs)
