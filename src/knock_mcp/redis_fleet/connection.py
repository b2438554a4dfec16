"""Every call to Redis, bounded: Redis is help, not a dependency.

Each call has a deadline; the first failure opens a circuit breaker (one warning), and until a
background probe finds Redis again every call answers `Unshared` at once, so the process works
alone. No caller waits on or sees a Redis failure.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from typing import TypeVar
from urllib.parse import urlsplit

import anyio
import redis.asyncio
from anyio.abc import TaskGroup
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# redis-py's defaults (5 s timeouts, retries) would hold a caller for seconds on a dead Redis; Redis
# on the same network answers in a millisecond, so half a second means it is not answering (or this
# process's event loop is very busy: hence `TIMEOUTS_TO_OPEN`).
REDIS_CALL_DEADLINE = 0.5
# A refused connection or a refused write opens the breaker at once; timeouts only when this many
# come in a row, since a busy process can miss one deadline with Redis in good health.
TIMEOUTS_TO_OPEN = 3
# While Redis is out, a background probe looks for it this often; calls do not wait for it.
PROBE_INTERVAL = 1.0

# Let go of a lock or a lease only if this process still holds it.
_DELETE_IF_MINE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


class Unshared(Exception):
    """Redis cannot help with this call: do what a process alone would."""


class Connection:
    """One process's connection pool to Redis behind a circuit breaker.

    `fallback_rate` is the request rate per Knock key this process keeps to while Redis is out, for
    the warning to say. Set `tasks` to a running task group before `spawn` is used."""

    def __init__(self, url: str, fallback_rate: Callable[[], float]) -> None:
        parts = urlsplit(url)
        self.where = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
        self._password = parts.password
        self._fallback_rate = fallback_rate
        self.client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_CALL_DEADLINE,
            socket_timeout=REDIS_CALL_DEADLINE,
            retry=Retry(NoBackoff(), 0),
            client_name="knock-mcp",
        )
        self.delete_if_mine = self.client.register_script(_DELETE_IF_MINE)
        # Why Redis is out, worded for a log line and /healthz; None while it answers.
        self.outage: str | None = None
        self._timeouts = 0
        self.tasks: TaskGroup | None = None

    async def call(self, work: Callable[[], Awaitable[_T]]) -> _T:
        """`work()` within the deadline; `Unshared` at once while Redis is out, or if it fails now."""
        if self.outage is not None:
            raise Unshared
        try:
            with anyio.fail_after(REDIS_CALL_DEADLINE):
                answer = await work()
        except (RedisError, OSError, TimeoutError) as error:
            timed_out = isinstance(error, TimeoutError | RedisTimeoutError)
            self._timeouts = self._timeouts + 1 if timed_out else 0
            if not timed_out or self._timeouts >= TIMEOUTS_TO_OPEN:
                self.begin_outage(error)
            raise Unshared from None
        except Exception as error:
            # A value this process cannot read (or a bug in reading it): sharing is help, never a
            # reason for a call or a background loop to fail, so it counts as an outage too.
            self.begin_outage(error)
            raise Unshared from None
        self._timeouts = 0
        return answer

    async def quietly(self, work: Callable[[], Awaitable[object]]) -> None:
        with contextlib.suppress(Unshared):
            await self.call(work)

    def spawn(self, work: Callable[[], Awaitable[object]]) -> None:
        """Share something nobody waits for; a failure only opens the breaker."""
        if self.tasks is None or self.outage is not None:
            return
        self.tasks.start_soon(self.quietly, work)

    def begin_outage(self, error: BaseException) -> None:
        if self.outage is not None:
            return
        cause = (
            type(error).__name__ if isinstance(error, TimeoutError) else f"{type(error).__name__}: {error}"
        )
        if self._password:
            cause = cause.replace(self._password, "[redacted]")
        self.outage = cause
        logger.warning(
            "Redis at %s is not answering or refuses writes (%s): until it is back, this process works "
            "alone (its own cache and poll loops, %.3g requests/s per Knock key). Calls are answered "
            "as usual.",
            self.where,
            cause,
            self._fallback_rate(),
        )

    async def probe(self, key: str, value: bytes, expiry_ms: int) -> None:
        """Sharing resumes when Redis takes a write again: a Redis that answers but refuses writes
        (full under `noeviction`, a read-only replica) is still out."""
        try:
            with anyio.fail_after(REDIS_CALL_DEADLINE):
                await self.client.set(key, value, px=expiry_ms)
            # Connections pooled before the outage may lead to a Redis that is gone (a restart):
            # start afresh rather than meet each of them failing once.
            await self.client.connection_pool.disconnect()
        except (RedisError, OSError, TimeoutError):
            return
        self.outage = None
        logger.warning("Redis at %s answers again: this process shares with its fleet again.", self.where)


def ms(seconds: float) -> int:
    """Seconds as the whole milliseconds Redis's PX and PEXPIRE take, rounded up."""
    return math.ceil(seconds * 1000)
