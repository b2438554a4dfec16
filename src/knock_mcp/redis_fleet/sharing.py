"""`RedisFleet`: one process's part in a fleet sharing Knock's traffic through Redis.

It reads through the fleet (the latest snapshot, a final operation, or one process's request that
the others await) and publishes each answer it has from Knock; it takes part in the fleet's poll
loops (`loops`) and request budget (`budget`); a heartbeat keeps its registration, its leases and
the waiters' deadlines current.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Awaitable, Callable
from functools import partial
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup
from pydantic import SecretStr

from knock_mcp.cache import FINAL_OPERATION_LIFETIME
from knock_mcp.fleet import Address, SharedAnswer
from knock_mcp.models import BulkOperation
from knock_mcp.redis_fleet.budget import RequestBudget
from knock_mcp.redis_fleet.connection import PROBE_INTERVAL, REDIS_CALL_DEADLINE, Connection, Unshared, ms
from knock_mcp.redis_fleet.loops import LEASE_CHECK_INTERVAL, PollLoops
from knock_mcp.redis_fleet.values import Keys, SharedValues, fresh_enough
from knock_mcp.settings import FleetSettings

logger = logging.getLogger(__name__)

# Process registrations and the shared deadlines are refreshed, and leases renewed, this often.
HEARTBEAT_INTERVAL = 0.5
# How long other processes wait on one process's request before making their own.
FETCHING_SECONDS = 5.0
FETCHING_CHECK_INTERVAL = 0.05
# A snapshot is served only while fresh (about a second); it is kept a little longer for
# processes whose schedules it helps.
SNAPSHOT_SECONDS = 30.0
# A process that has not beaten its heart for this long no longer counts in the fleet.
PROCESS_SECONDS = 5.0

# Store a fresh answer, keep the first copy of a final one (its TTL counts from then), let the
# processes waiting on this one's request go, and tell the followers: all at once.
_SHARE = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '0' then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3], 'NX') end
if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 0
"""


class RedisFleet:
    """One process's part in a fleet sharing through Redis; one connection pool per process (and
    one more connection for its subscriptions). Use as `async with RedisFleet(settings):`."""

    lease_check_interval = LEASE_CHECK_INTERVAL

    def __init__(self, settings: FleetSettings) -> None:
        self._token = os.urandom(16)
        self._values = SharedValues(settings.secret.get_secret_value().encode(), self._token)
        # The budget needs the connection, and the connection's warning the budget's rate: looked up
        # when an outage begins, by then the budget exists.
        self._redis = Connection(
            settings.redis_url.get_secret_value(),
            fallback_rate=lambda: self._budget.fallback_rate(),  # noqa: PLW0108
        )
        self._budget = RequestBudget(self._redis, self._values, settings.requests_per_second)
        self._loops = PollLoops(self._redis, self._values, self._token)
        self._share = self._redis.client.register_script(_SHARE)
        self._other_secret_seen = False
        self._tasks: TaskGroup | None = None

    @property
    def gate(self) -> RequestBudget:
        return self._budget

    async def __aenter__(self) -> RedisFleet:
        self._tasks = self._redis.tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self._heartbeat)
        self._tasks.start_soon(self._loops.listen)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()
        await self._tasks.__aexit__(exc_type, exc, tb)
        with anyio.CancelScope(shield=True), anyio.move_on_after(REDIS_CALL_DEADLINE * 2):
            # Hand the loops over now rather than when the leases run out: those still held, and
            # those let go of whose deletion the task group's cancellation cut short.
            for address in list(self._loops.leases | self._loops.releasing):
                await self._redis.quietly(partial(self._loops.release_work, address))
            await self._redis.client.aclose()

    def fingerprint(self, key: SecretStr | None) -> bytes:
        return self._values.fingerprint(key)

    # -- reads ---------------------------------------------------------------------------------

    async def read(
        self, address: Address, fetch: Callable[[], Awaitable[BulkOperation]], fresh_for: float
    ) -> SharedAnswer:
        keys = self._values.keys(address)
        try:
            found, _ = await self._load(keys)
            if (usable := fresh_enough(found, fresh_for)) is not None:
                return usable
            mine = bool(
                await self._redis.call(
                    lambda: self._redis.client.set(
                        keys.fetching, self._token, nx=True, px=ms(FETCHING_SECONDS)
                    )
                )
            )
            if mine:
                # Another process may have shared its answer and let go of the lock between the
                # first look and taking it.
                found, _ = await self._load(keys)
                if (usable := fresh_enough(found, fresh_for)) is not None:
                    self._let_go_of_fetching(keys)
                    return usable
            else:
                answer = await self._await_other(keys, fresh_for)
                if answer is not None:
                    return answer
        except Unshared:
            return SharedAnswer(await fetch())
        try:
            operation = await fetch()
        except BaseException:
            # Those waiting on this request fetch for themselves at once, not when the lock expires.
            self._let_go_of_fetching(keys)
            raise
        await self._publish(keys, operation)
        return SharedAnswer(operation)

    def _let_go_of_fetching(self, keys: Keys) -> None:
        self._redis.spawn(lambda: self._redis.delete_if_mine(keys=[keys.fetching], args=[self._token]))

    async def _await_other(self, keys: Keys, fresh_for: float) -> SharedAnswer | None:
        """Another process is asking Knock: its answer, or None if it gave up without one."""
        with anyio.move_on_after(FETCHING_SECONDS):
            while True:
                await anyio.sleep(FETCHING_CHECK_INTERVAL)
                found, fetching = await self._load(keys)
                if (usable := fresh_enough(found, fresh_for)) is not None:
                    return usable
                if not fetching:
                    return None
        return None

    async def _load(self, keys: Keys) -> tuple[SharedAnswer | None, bool]:
        """The shared final operation, else the latest snapshot; and whether a request is under way."""
        pipe = self._redis.client.pipeline(transaction=False)
        pipe.get(keys.final)
        pipe.pttl(keys.final)
        pipe.get(keys.snapshot)
        pipe.exists(keys.fetching)
        final, final_ttl_ms, snapshot, fetching = await self._redis.call(pipe.execute)
        if final is not None and final_ttl_ms > 0:
            answer = await self._values.decode(keys, final)
            if answer is not None and answer.operation.status.is_final:
                cached_for = max(0.0, FINAL_OPERATION_LIFETIME - final_ttl_ms / 1000)
                return SharedAnswer(answer.operation, answer.age, cached_for), False
        answer = await self._values.decode(keys, snapshot) if snapshot is not None else None
        return answer, bool(fetching)

    async def _publish(self, keys: Keys, operation: BulkOperation) -> None:
        envelope = self._values.encode(keys, operation, time.time())
        if envelope is None:
            return
        final_ms = ms(FINAL_OPERATION_LIFETIME) if operation.status.is_final else 0
        args: list[bytes | int] = [envelope, ms(SNAPSHOT_SECONDS), final_ms, self._token, keys.news]
        await self._redis.quietly(
            lambda: self._share(keys=[keys.snapshot, keys.final, keys.fetching], args=args)
        )

    # -- the poll loops (see `loops`) ----------------------------------------------------------

    async def join_loop(self, address: Address) -> float:
        return await self._loops.join_loop(address)

    async def lead(self, address: Address) -> bool:
        return await self._loops.lead(address)

    def release(self, address: Address) -> None:
        self._loops.release(address)

    def follow(
        self, address: Address, on_news: Callable[[SharedAnswer], None], on_reschedule: Callable[[], None]
    ) -> None:
        self._loops.follow(address, on_news, on_reschedule)

    def unfollow(self, address: Address) -> None:
        self._loops.unfollow(address)

    def add_deadline(self, address: Address, seconds: float) -> object:
        return self._loops.add_deadline(address, seconds)

    def remove_deadline(self, address: Address, token: object) -> None:
        self._loops.remove_deadline(address, token)

    def deadlines(self, address: Address) -> list[float]:
        return self._loops.deadlines(address)

    # -- background: heartbeat and probe -------------------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            if self._redis.outage is not None:
                await self._redis.probe(self._values.prefix + "probe", self._token, ms(PROCESS_SECONDS))
                await anyio.sleep(PROBE_INTERVAL)
                continue
            await self._redis.quietly(self._beat)
            await anyio.sleep(HEARTBEAT_INTERVAL)

    async def _beat(self) -> None:
        """Count the fleet, notice another secret, renew this process's leases and read the
        deadlines of the operations it follows: one round trip."""
        now = time.time()
        processes = self._values.prefix + "processes"
        secrets = "knock-mcp:fleet-secrets"
        pipe = self._redis.client.pipeline(transaction=False)
        pipe.zadd(processes, {self._token.hex(): now})
        pipe.zremrangebyscore(processes, "-inf", now - PROCESS_SECONDS)
        pipe.zcard(processes)
        pipe.expire(processes, math.ceil(PROCESS_SECONDS * 4))
        pipe.zadd(secrets, {self._values.namespace: now})
        pipe.zremrangebyscore(secrets, "-inf", now - PROCESS_SECONDS)
        pipe.zrange(secrets, 0, -1)
        pipe.expire(secrets, math.ceil(PROCESS_SECONDS * 4))
        loops_heard = await self._loops.queue_heartbeat(pipe, now)
        results = await pipe.execute()
        self._budget.processes = max(1, int(results[2]))
        # Anyone who can write to Redis can add to this set: a member that is not text is simply
        # another fleet's, never a reason for the heartbeat to stop.
        self._notice_secrets([bytes(name).decode(errors="replace") for name in results[6]])
        loops_heard(results[8:])

    def _notice_secrets(self, namespaces: list[str]) -> None:
        other = any(namespace != self._values.namespace for namespace in namespaces)
        if other and not self._other_secret_seen:
            logger.error(
                "Another knock-mcp process uses this Redis with a different KNOCK_MCP_FLEET_SECRET: it "
                "shares nothing with this one (cache, poll loops, request budget). Give every process of "
                "the fleet the same secret."
            )
        self._other_secret_seen = other

    def health(self) -> dict[str, Any]:
        outage = self._redis.outage
        report: dict[str, Any] = {
            "sharing": outage is None,
            "redis": "unreachable" if outage is not None else "connected",
            "processes": self._budget.processes,
            "refused_values": self._values.refused,
        }
        if outage is not None:
            report["problem"] = (
                f"Redis at {self._redis.where} is not answering ({outage}): each process works alone "
                "until it is back"
            )
        elif self._other_secret_seen:
            report["problem"] = (
                "another knock-mcp process uses this Redis with a different KNOCK_MCP_FLEET_SECRET and "
                "shares nothing with this one: give every process the same secret"
            )
        return report
