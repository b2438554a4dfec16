"""The fleet's request budget per Knock key, and Knock's `Retry-After` hold-off.

Each attempt, from any process, takes the next turn, spaced 1/budget apart, and none comes before
the hold-off ends. While Redis is out, each process keeps to its share of the budget instead: the
budget divided by the processes last counted alive.
"""

from __future__ import annotations

import time

from knock_mcp.redis_fleet.connection import Connection, Unshared
from knock_mcp.redis_fleet.values import SharedValues

# Times are Redis's own (TIME), in microseconds, so hosts with unsynchronised clocks still agree.
_TAKE_TURN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local next_turn = tonumber(redis.call('GET', KEYS[1]) or '0')
local turn = math.max(now, next_turn, tonumber(redis.call('GET', KEYS[2]) or '0'))
local after = turn + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000) + 1000)
return turn - now
"""
_HOLD_OFF = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local hold = now + tonumber(ARGV[1])
if hold > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], string.format('%.0f', hold), 'PX', math.ceil(tonumber(ARGV[1]) / 1000) + 1000)
end
return 0
"""


class RequestBudget:
    """`requests_per_second` per Knock key for the whole fleet (an `AttemptGate`)."""

    def __init__(self, redis: Connection, values: SharedValues, requests_per_second: float) -> None:
        self._redis = redis
        self._values = values
        self._budget = requests_per_second
        self._take_turn = redis.client.register_script(_TAKE_TURN)
        self._hold_off = redis.client.register_script(_HOLD_OFF)
        # The processes of the fleet, as last counted by the heartbeat.
        self.processes = 1
        # The fallback budget, per key fingerprint, while Redis is out.
        self._local_turns: dict[bytes, float] = {}
        self._local_holds: dict[bytes, float] = {}

    async def before_attempt(self, secret: str) -> float:
        fingerprint, keys = self._values.budget_keys(secret)
        try:
            spacing = round(1_000_000 / self._budget)
            wait = await self._redis.call(lambda: self._take_turn(keys=keys, args=[spacing]))
            return max(0.0, int(wait) / 1_000_000)
        except Unshared:
            return self._local_turn(fingerprint)

    async def held_off(self, secret: str, seconds: float) -> None:
        fingerprint, keys = self._values.budget_keys(secret)
        self._local_holds[fingerprint] = max(
            self._local_holds.get(fingerprint, 0.0), time.monotonic() + seconds
        )
        await self._redis.quietly(lambda: self._hold_off(keys=keys[1:], args=[round(seconds * 1_000_000)]))

    def fallback_rate(self) -> float:
        return self._budget / max(1, self.processes)

    def _local_turn(self, fingerprint: bytes) -> float:
        """The fallback budget: this process's share of the fleet's, as last counted."""
        now = time.monotonic()
        turn = max(now, self._local_turns.get(fingerprint, now), self._local_holds.get(fingerprint, now))
        self._local_turns[fingerprint] = turn + 1 / self.fallback_rate()
        if len(self._local_turns) > 1024:
            for table in (self._local_turns, self._local_holds):
                for stale in [known for known, until in table.items() if until < now]:
                    del table[stale]
        return turn - now
