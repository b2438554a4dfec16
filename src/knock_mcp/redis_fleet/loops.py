"""One poll loop per operation in the whole fleet: its lease, its schedule and its news.

The process holding an operation's lease polls Knock for everyone; it renews the lease with each
heartbeat, and another process takes over when a holder that died or hangs lets it run out. The
loop's start time and the waiters' deadlines are shared, so a loop taken over keeps its pace and
asks in time for every waiter. Each answer is published on the operation's channel (`news`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import redis.asyncio

from knock_mcp.fleet import Address, SharedAnswer
from knock_mcp.redis_fleet.connection import REDIS_CALL_DEADLINE, Connection, Unshared, ms
from knock_mcp.redis_fleet.values import SharedValues

# A poll loop's lease outlives three missed heartbeats: a holder that died or hangs is replaced
# within this plus `LEASE_CHECK_INTERVAL`, about two poll intervals at the first (1 s) pace.
LEASE_SECONDS = 1.5
LEASE_CHECK_INTERVAL = 0.25
# A loop's start time is kept while a holder renews it, and for this long after: a loop resumed
# later starts its schedule anew.
LOOP_SECONDS = 30.0
LISTEN_TIMEOUT = 0.05

# Renew this process's lease, or take it again if Redis lost it (a restart); 0 if another holds it.
_RENEW_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] or not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0
"""


@dataclass
class _Following:
    on_news: Callable[[SharedAnswer], None]
    on_reschedule: Callable[[], None]
    # Wall-clock deadlines of the fleet's waiters, as last read.
    deadlines: list[float] = field(default_factory=list)


class PollLoops:
    """This process's side of the fleet's poll loops: the leases it holds, the operations it
    follows. `token` identifies the process as a lease holder."""

    def __init__(self, redis: Connection, values: SharedValues, token: bytes) -> None:
        self._redis = redis
        self._values = values
        self._token = token
        self._renew_lease = redis.client.register_script(_RENEW_LEASE)
        self._following: dict[Address, _Following] = {}
        self._channels: dict[bytes, Address] = {}
        self.leases: set[Address] = set()
        # Leases let go of whose deletion in Redis has not been done yet: a shutdown finishes them.
        self.releasing: set[Address] = set()

    async def join_loop(self, address: Address) -> float:
        keys = self._values.keys(address)
        pipe = self._redis.client.pipeline(transaction=False)
        pipe.set(keys.loop, repr(time.time()), nx=True, px=ms(LOOP_SECONDS))
        pipe.get(keys.loop)
        try:
            _, started = await self._redis.call(pipe.execute)
            return max(0.0, time.time() - float(started))
        except (Unshared, TypeError, ValueError):
            return 0.0

    async def lead(self, address: Address) -> bool:
        if self._redis.outage is not None or address in self.leases:
            return True
        try:
            taken = await self._redis.call(
                lambda: self._redis.client.set(
                    self._values.keys(address).lease, self._token, nx=True, px=ms(LEASE_SECONDS)
                )
            )
        except Unshared:
            return True
        if taken:
            self.leases.add(address)
            self.releasing.discard(address)
        return bool(taken)

    def release(self, address: Address) -> None:
        if address in self.leases:
            self.leases.discard(address)
            self.releasing.add(address)
            self._redis.spawn(lambda: self._release_now(address))

    async def _release_now(self, address: Address) -> None:
        await self.release_work(address)
        self.releasing.discard(address)

    def release_work(self, address: Address) -> Awaitable[object]:
        return self._redis.delete_if_mine(keys=[self._values.keys(address).lease], args=[self._token])

    def follow(
        self, address: Address, on_news: Callable[[SharedAnswer], None], on_reschedule: Callable[[], None]
    ) -> None:
        self._following[address] = _Following(on_news, on_reschedule)
        self._channels[self._values.keys(address).news] = address

    def unfollow(self, address: Address) -> None:
        self._following.pop(address, None)
        self._channels.pop(self._values.keys(address).news, None)

    def add_deadline(self, address: Address, seconds: float) -> object:
        member = os.urandom(8).hex()
        deadline = time.time() + seconds
        key = self._values.keys(address).deadlines

        async def add() -> None:
            pipe = self._redis.client.pipeline(transaction=False)
            expiry = math.ceil(seconds) + 60
            pipe.zadd(key, {member: deadline})
            pipe.expire(key, expiry, nx=True)
            pipe.expire(key, expiry, gt=True)
            await pipe.execute()

        self._redis.spawn(add)
        return member

    def remove_deadline(self, address: Address, token: object) -> None:
        key = self._values.keys(address).deadlines
        self._redis.spawn(lambda: self._redis.client.zrem(key, str(token)))

    def deadlines(self, address: Address) -> list[float]:
        following = self._following.get(address)
        if following is None or self._redis.outage is not None:
            return []
        now = time.time()
        return [deadline - now for deadline in following.deadlines]

    async def queue_heartbeat(
        self, pipe: redis.asyncio.client.Pipeline, now: float
    ) -> Callable[[list[Any]], None]:
        """Queue on the heartbeat's `pipe` the reads of the followed operations' deadlines and the
        renewal of the leases held; the function returned takes the pipe's results from there on."""
        followed = list(self._following)
        held = list(self.leases)
        for address in followed:
            key = self._values.keys(address).deadlines
            pipe.zremrangebyscore(key, "-inf", now - 1)
            pipe.zrange(key, 0, -1, withscores=True)
        for address in held:
            keys = self._values.keys(address)
            await self._renew_lease(
                keys=[keys.lease, keys.loop],
                args=[self._token, ms(LEASE_SECONDS), ms(LOOP_SECONDS)],
                client=pipe,
            )

        def heard(results: list[Any]) -> None:
            for index, address in enumerate(followed):
                deadlines = sorted(score for _, score in results[2 * index + 1])
                following = self._following.get(address)
                if following is not None and deadlines != following.deadlines:
                    following.deadlines = deadlines
                    following.on_reschedule()
            for address, renewed in zip(held, results[2 * len(followed) :], strict=True):
                if not renewed:
                    self.leases.discard(address)

        return heard

    async def listen(self) -> None:
        """Hand each followed operation's news to its follower; resubscribe after an outage."""
        while True:
            if self._redis.outage is not None or not self._channels:
                await anyio.sleep(LISTEN_TIMEOUT)
                continue
            subscriptions = self._redis.client.pubsub()
            try:
                await self._relay(subscriptions)
            except Exception as error:
                # Redis gone, or a message this process cannot read: either way the fleet works
                # alone until the probe finds Redis again, rather than lose its news for good.
                self._redis.begin_outage(error)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(REDIS_CALL_DEADLINE):
                    await subscriptions.aclose()  # type: ignore[no-untyped-call]

    async def _relay(self, subscriptions: redis.asyncio.client.PubSub) -> None:
        subscribed: set[bytes] = set()
        while self._redis.outage is None:
            wanted = set(self._channels)
            if wanted - subscribed:
                with anyio.fail_after(REDIS_CALL_DEADLINE):
                    await subscriptions.subscribe(*(wanted - subscribed))
            if subscribed - wanted:
                with anyio.fail_after(REDIS_CALL_DEADLINE):
                    await subscriptions.unsubscribe(*(subscribed - wanted))
            subscribed = wanted
            if not subscribed:
                await anyio.sleep(LISTEN_TIMEOUT)
                continue
            message = await subscriptions.get_message(ignore_subscribe_messages=True, timeout=LISTEN_TIMEOUT)
            if message is None or message["type"] != "message":
                continue
            address = self._channels.get(message["channel"])
            following = self._following.get(address) if address is not None else None
            if address is None or following is None:
                continue
            answer = await self._values.decode(self._values.keys(address), message["data"], skip_own=True)
            if answer is not None:
                following.on_news(answer)
