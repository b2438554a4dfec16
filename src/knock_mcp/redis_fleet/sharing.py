"""A fleet of knock-mcp processes sharing Knock's traffic through Redis (or Valkey, 7 or later).

Per (key fingerprint, operation id) Redis holds: the latest snapshot and when Knock gave it
(`snapshot`), a final operation for 10 minutes from when it was first stored (`final`), a short
single-flight lock (`fetching`), the poll loop's lease, start time and waiters' deadlines (`lease`,
`loop`, `deadlines`); each new snapshot is published on a channel (`news`). Per key fingerprint:
the next turn of the fleet's request budget and Knock's `Retry-After` hold-off. Per fleet: the
processes alive (the fallback budget divides by their number) and the secrets in use, as
fingerprints, to notice a process configured with another one.

Redis never holds a Knock key: keys appear only as HMACs under the fleet secret. Every value that
may be served to a caller (snapshots, final operations, published news) is Knock's JSON,
zlib-compressed, signed with the fleet secret over its address, capped in size and validated on
read; anything else is refused and fetched from Knock instead.

Redis is help, not a dependency: every call has a deadline, the first failure opens a circuit
breaker (one warning), and until a background probe finds Redis again every process works alone
with a share of the budget. No caller waits on or sees a Redis failure.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import math
import os
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
import redis.asyncio
from anyio.abc import TaskGroup
from pydantic import SecretStr, ValidationError
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from knock_mcp.fleet import Address, SharedAnswer, key_fingerprint
from knock_mcp.knock_client import MAX_RESPONSE_BYTES, VALIDATE_IN_THREAD_BYTES
from knock_mcp.models import BulkOperation
from knock_mcp.settings import FleetSettings

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
# Leases, process registrations and the shared deadlines are refreshed this often.
HEARTBEAT_INTERVAL = 0.5
# A poll loop's lease outlives three missed heartbeats: a holder that died or hangs is replaced
# within this plus `LEASE_CHECK_INTERVAL`, about two poll intervals at the first (1 s) pace.
LEASE_SECONDS = 1.5
LEASE_CHECK_INTERVAL = 0.25
# A loop's start time is kept while a holder renews it, and for this long after: a loop resumed
# later starts its schedule anew.
LOOP_SECONDS = 30.0
# How long other processes wait on one process's request before making their own.
FETCHING_SECONDS = 5.0
FETCHING_CHECK_INTERVAL = 0.05
# A snapshot is served only while fresh (about a second); it is kept a little longer for
# processes whose schedules it helps.
SNAPSHOT_SECONDS = 30.0
# A final operation is shared for as long as a process caches it: a revoked key stops being answered.
FINAL_SECONDS = 600.0
# A process that has not beaten its heart for this long no longer counts in the fleet.
PROCESS_SECONDS = 5.0
# A 100,000-item operation (6 MB of JSON) compresses to about 400 KB; nothing larger is shared.
MAX_SHARED_BYTES = 4 * 1024 * 1024
LISTEN_TIMEOUT = 0.05

_MAGIC = b"KMF1"
_SIGNATURE_BYTES = 32
_HEADER = struct.Struct("!d16s")  # when Knock answered (wall clock), which process shared it

# The fleet's request budget per key: each attempt takes the next turn, spaced 1/budget apart, and
# none comes before Knock's Retry-After hold-off ends. Times are Redis's own (TIME), in microseconds,
# so hosts with unsynchronised clocks still agree.
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
# Store a fresh answer, keep the first copy of a final one (its TTL counts from then), let the
# processes waiting on this one's request go, and tell the followers: all at once.
_SHARE = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '0' then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3], 'NX') end
if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
redis.call('PUBLISH', ARGV[5], ARGV[1])
return 0
"""
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
_DELETE_IF_MINE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


class _Unshared(Exception):
    """Redis cannot help with this call: do what a process alone would."""


class _Refused(Exception):
    """A value read from Redis that is not to be served; the message says why."""


@dataclass
class _Following:
    on_news: Callable[[SharedAnswer], None]
    on_reschedule: Callable[[], None]
    # Wall-clock deadlines of the fleet's waiters, as last read.
    deadlines: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class _Keys:
    snapshot: str
    final: str
    fetching: str
    lease: str
    loop: str
    deadlines: str
    news: bytes
    label: bytes


class RedisFleet:
    """One process's part in a fleet sharing through Redis; one connection pool per process (and
    one more connection for its subscriptions). Use as `async with RedisFleet(settings):`."""

    lease_check_interval = LEASE_CHECK_INTERVAL

    def __init__(self, settings: FleetSettings) -> None:
        url = settings.redis_url.get_secret_value()
        self._secret = settings.secret.get_secret_value().encode()
        self._namespace = hmac.new(self._secret, b"knock-mcp fleet", hashlib.sha256).hexdigest()[:16]
        self._prefix = f"knock-mcp:{self._namespace}:"
        self._token = os.urandom(16)
        self._budget = settings.requests_per_second
        parts = urlsplit(url)
        self._where = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
        self._password = parts.password
        self._client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
            url,
            socket_connect_timeout=REDIS_CALL_DEADLINE,
            socket_timeout=REDIS_CALL_DEADLINE,
            retry=Retry(NoBackoff(), 0),
            client_name="knock-mcp",
        )
        self._take_turn = self._client.register_script(_TAKE_TURN)
        self._hold_off = self._client.register_script(_HOLD_OFF)
        self._share = self._client.register_script(_SHARE)
        self._renew_lease = self._client.register_script(_RENEW_LEASE)
        self._delete_if_mine = self._client.register_script(_DELETE_IF_MINE)
        self._outage: str | None = None
        self._timeouts = 0
        self._other_secret_seen = False
        self._processes = 1
        self._refused = 0
        self._following: dict[Address, _Following] = {}
        self._channels: dict[bytes, Address] = {}
        self._leases: set[Address] = set()
        # The fallback budget, per key fingerprint, while Redis is out.
        self._local_turns: dict[bytes, float] = {}
        self._local_holds: dict[bytes, float] = {}
        self._tasks: TaskGroup | None = None

    @property
    def gate(self) -> RedisFleet:
        return self

    async def __aenter__(self) -> RedisFleet:
        self._tasks = anyio.create_task_group()
        await self._tasks.__aenter__()
        self._tasks.start_soon(self._heartbeat)
        self._tasks.start_soon(self._listen)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tasks is not None
        self._tasks.cancel_scope.cancel()
        await self._tasks.__aexit__(exc_type, exc, tb)
        with anyio.CancelScope(shield=True), anyio.move_on_after(REDIS_CALL_DEADLINE * 2):
            # Hand the loops over now rather than when the leases run out.
            for address in list(self._leases):
                await self._quietly(partial(self._release_work, address))
            await self._client.aclose()

    # -- identities ----------------------------------------------------------------------------

    def fingerprint(self, key: SecretStr | None) -> bytes:
        return key_fingerprint(self._secret, key)

    def _keys(self, address: Address) -> _Keys:
        fingerprint, operation_id = address
        base = f"{self._prefix}{fingerprint.hex()[:32]}:{operation_id}:"
        return _Keys(
            snapshot=base + "snapshot",
            final=base + "final",
            fetching=base + "fetching",
            lease=base + "lease",
            loop=base + "loop",
            deadlines=base + "deadlines",
            news=(base + "news").encode(),
            label=f"{fingerprint.hex()}:{operation_id}".encode(),
        )

    def _budget_keys(self, secret: str) -> tuple[bytes, list[str]]:
        fingerprint = self.fingerprint(SecretStr(secret))
        base = f"{self._prefix}{fingerprint.hex()[:32]}:"
        return fingerprint, [base + "next-turn", base + "hold-until"]

    # -- calls to Redis, bounded ---------------------------------------------------------------

    async def _call(self, work: Callable[[], Awaitable[_T]]) -> _T:
        """`work()` within the deadline; `_Unshared` at once while Redis is out, or if it fails now."""
        if self._outage is not None:
            raise _Unshared
        try:
            with anyio.fail_after(REDIS_CALL_DEADLINE):
                answer = await work()
        except (RedisError, OSError, TimeoutError) as error:
            timed_out = isinstance(error, TimeoutError | RedisTimeoutError)
            self._timeouts = self._timeouts + 1 if timed_out else 0
            if not timed_out or self._timeouts >= TIMEOUTS_TO_OPEN:
                self._begin_outage(error)
            raise _Unshared from None
        self._timeouts = 0
        return answer

    async def _quietly(self, work: Callable[[], Awaitable[object]]) -> None:
        with contextlib.suppress(_Unshared):
            await self._call(work)

    def _spawn(self, work: Callable[[], Awaitable[object]]) -> None:
        """Share something nobody waits for; a failure only opens the breaker."""
        if self._tasks is None or self._outage is not None:
            return
        self._tasks.start_soon(self._quietly, work)

    def _begin_outage(self, error: BaseException) -> None:
        if self._outage is not None:
            return
        cause = (
            type(error).__name__ if isinstance(error, TimeoutError) else f"{type(error).__name__}: {error}"
        )
        if self._password:
            cause = cause.replace(self._password, "[redacted]")
        self._outage = cause
        logger.warning(
            "Redis at %s is not answering or refuses writes (%s): until it is back, this process works "
            "alone (its own cache and poll loops, %.3g requests/s per Knock key). Calls are answered "
            "as usual.",
            self._where,
            cause,
            self._fallback_rate(),
        )

    def _end_outage(self) -> None:
        self._outage = None
        logger.warning("Redis at %s answers again: this process shares with its fleet again.", self._where)

    # -- reads ---------------------------------------------------------------------------------

    async def read(
        self, address: Address, fetch: Callable[[], Awaitable[BulkOperation]], fresh_for: float
    ) -> SharedAnswer:
        keys = self._keys(address)
        try:
            found, _ = await self._load(keys)
            if (usable := _fresh_enough(found, fresh_for)) is not None:
                return usable
            mine = bool(
                await self._call(
                    lambda: self._client.set(keys.fetching, self._token, nx=True, px=_ms(FETCHING_SECONDS))
                )
            )
            if mine:
                # Another process may have shared its answer and let go of the lock between the
                # first look and taking it.
                found, _ = await self._load(keys)
                if (usable := _fresh_enough(found, fresh_for)) is not None:
                    self._spawn(lambda: self._delete_if_mine(keys=[keys.fetching], args=[self._token]))
                    return usable
            else:
                answer = await self._await_other(keys, fresh_for)
                if answer is not None:
                    return answer
        except _Unshared:
            return SharedAnswer(await fetch())
        try:
            operation = await fetch()
        except BaseException:
            # Those waiting on this request fetch for themselves at once, not when the lock expires.
            self._spawn(lambda: self._delete_if_mine(keys=[keys.fetching], args=[self._token]))
            raise
        await self._publish(keys, operation)
        return SharedAnswer(operation)

    async def _await_other(self, keys: _Keys, fresh_for: float) -> SharedAnswer | None:
        """Another process is asking Knock: its answer, or None if it gave up without one."""
        with anyio.move_on_after(FETCHING_SECONDS):
            while True:
                await anyio.sleep(FETCHING_CHECK_INTERVAL)
                found, fetching = await self._load(keys)
                if (usable := _fresh_enough(found, fresh_for)) is not None:
                    return usable
                if not fetching:
                    return None
        return None

    async def _load(self, keys: _Keys) -> tuple[SharedAnswer | None, bool]:
        """The shared final operation, else the latest snapshot; and whether a request is under way."""
        pipe = self._client.pipeline(transaction=False)
        pipe.get(keys.final)
        pipe.pttl(keys.final)
        pipe.get(keys.snapshot)
        pipe.exists(keys.fetching)
        final, final_ttl_ms, snapshot, fetching = await self._call(pipe.execute)
        if final is not None and final_ttl_ms > 0:
            answer = await self._decode(keys, final)
            if answer is not None and answer.operation.status.is_final:
                cached_for = max(0.0, FINAL_SECONDS - final_ttl_ms / 1000)
                return SharedAnswer(answer.operation, answer.age, cached_for), False
        answer = await self._decode(keys, snapshot) if snapshot is not None else None
        return answer, bool(fetching)

    async def _publish(self, keys: _Keys, operation: BulkOperation) -> None:
        envelope = self._encode(keys, operation, time.time())
        if envelope is None:
            return
        final_ms = _ms(FINAL_SECONDS) if operation.status.is_final else 0
        args: list[bytes | int] = [envelope, _ms(SNAPSHOT_SECONDS), final_ms, self._token, keys.news]
        await self._quietly(lambda: self._share(keys=[keys.snapshot, keys.final, keys.fetching], args=args))

    # -- the envelope: Knock's JSON, compressed, signed over its address -----------------------

    def _encode(self, keys: _Keys, operation: BulkOperation, fetched_at: float) -> bytes | None:
        body = zlib.compress(operation.model_dump_json(by_alias=True).encode(), 1)
        header = _HEADER.pack(fetched_at, self._token)
        signature = hmac.new(self._secret, keys.label + b"\n" + header + body, hashlib.sha256).digest()
        envelope = _MAGIC + signature + header + body
        if len(envelope) > MAX_SHARED_BYTES:
            logger.info(
                "Operation %s is too large to share through Redis; each process reads it itself", operation.id
            )
            return None
        return envelope

    async def _decode(self, keys: _Keys, envelope: bytes, *, skip_own: bool = False) -> SharedAnswer | None:
        """The answer in `envelope` if it is intact, signed with this fleet's secret for this address,
        and a valid operation; None (and a warning) otherwise. With `skip_own`, None for this
        process's own news."""
        try:
            return await self._open(keys, envelope, skip_own)
        except _Refused as refusal:
            self._refused += 1
            # Only someone with write access to Redis can cause this: say so, but not once per call.
            if math.log2(self._refused).is_integer():
                logger.warning(
                    "Refused a value read from Redis (%s; %d so far) and asked Knock instead: someone "
                    "altered it, or wrote it with another KNOCK_MCP_FLEET_SECRET.",
                    refusal,
                    self._refused,
                )
            return None

    async def _open(self, keys: _Keys, envelope: bytes, skip_own: bool) -> SharedAnswer | None:
        start = len(_MAGIC) + _SIGNATURE_BYTES
        if len(envelope) > MAX_SHARED_BYTES or not envelope.startswith(_MAGIC):
            raise _Refused("it is not in knock-mcp's format, or too large")
        signature, signed = envelope[len(_MAGIC) : start], envelope[start:]
        expected = hmac.new(self._secret, keys.label + b"\n" + signed, hashlib.sha256).digest()
        if len(signed) < _HEADER.size or not hmac.compare_digest(signature, expected):
            raise _Refused("its signature does not match this fleet's secret")
        fetched_at, sender = _HEADER.unpack_from(signed)
        if skip_own and sender == self._token:
            return None
        inflate = zlib.decompressobj()
        try:
            text = inflate.decompress(signed[_HEADER.size :], MAX_RESPONSE_BYTES)
        except zlib.error:
            raise _Refused("it does not decompress") from None
        if inflate.unconsumed_tail or not inflate.eof:
            raise _Refused("it is truncated, or expands beyond what knock-mcp reads from Knock")
        try:
            if len(text) < VALIDATE_IN_THREAD_BYTES:
                operation = BulkOperation.model_validate_json(text)
            else:
                operation = await anyio.to_thread.run_sync(BulkOperation.model_validate_json, text)
        except ValidationError:
            raise _Refused("it is not a valid bulk operation") from None
        if not keys.label.endswith(f":{operation.id}".encode()):
            raise _Refused("it is about another operation")
        return SharedAnswer(operation, age=max(0.0, time.time() - fetched_at))

    # -- the poll loop's lease, schedule and news ----------------------------------------------

    async def join_loop(self, address: Address) -> float:
        keys = self._keys(address)
        pipe = self._client.pipeline(transaction=False)
        pipe.set(keys.loop, repr(time.time()), nx=True, px=_ms(LOOP_SECONDS))
        pipe.get(keys.loop)
        try:
            _, started = await self._call(pipe.execute)
            return max(0.0, time.time() - float(started))
        except (_Unshared, TypeError, ValueError):
            return 0.0

    async def lead(self, address: Address) -> bool:
        if self._outage is not None or address in self._leases:
            return True
        try:
            taken = await self._call(
                lambda: self._client.set(
                    self._keys(address).lease, self._token, nx=True, px=_ms(LEASE_SECONDS)
                )
            )
        except _Unshared:
            return True
        if taken:
            self._leases.add(address)
        return bool(taken)

    def release(self, address: Address) -> None:
        if address in self._leases:
            self._leases.discard(address)
            self._spawn(lambda: self._release_work(address))

    def _release_work(self, address: Address) -> Awaitable[object]:
        return self._delete_if_mine(keys=[self._keys(address).lease], args=[self._token])

    def follow(
        self, address: Address, on_news: Callable[[SharedAnswer], None], on_reschedule: Callable[[], None]
    ) -> None:
        self._following[address] = _Following(on_news, on_reschedule)
        self._channels[self._keys(address).news] = address

    def unfollow(self, address: Address) -> None:
        self._following.pop(address, None)
        self._channels.pop(self._keys(address).news, None)

    def add_deadline(self, address: Address, seconds: float) -> object:
        member = os.urandom(8).hex()
        deadline = time.time() + seconds
        key = self._keys(address).deadlines

        async def add() -> None:
            pipe = self._client.pipeline(transaction=False)
            expiry = math.ceil(seconds) + 60
            pipe.zadd(key, {member: deadline})
            pipe.expire(key, expiry, nx=True)
            pipe.expire(key, expiry, gt=True)
            await pipe.execute()

        self._spawn(add)
        return member

    def remove_deadline(self, address: Address, token: object) -> None:
        key = self._keys(address).deadlines
        self._spawn(lambda: self._client.zrem(key, str(token)))

    def deadlines(self, address: Address) -> list[float]:
        following = self._following.get(address)
        if following is None or self._outage is not None:
            return []
        now = time.time()
        return [deadline - now for deadline in following.deadlines]

    # -- the request budget --------------------------------------------------------------------

    async def before_attempt(self, secret: str) -> float:
        fingerprint, keys = self._budget_keys(secret)
        try:
            spacing = round(1_000_000 / self._budget)
            wait = await self._call(lambda: self._take_turn(keys=keys, args=[spacing]))
            return max(0.0, int(wait) / 1_000_000)
        except _Unshared:
            return self._local_turn(fingerprint)

    async def held_off(self, secret: str, seconds: float) -> None:
        fingerprint, keys = self._budget_keys(secret)
        self._local_holds[fingerprint] = max(
            self._local_holds.get(fingerprint, 0.0), time.monotonic() + seconds
        )
        await self._quietly(lambda: self._hold_off(keys=keys[1:], args=[round(seconds * 1_000_000)]))

    def _fallback_rate(self) -> float:
        return self._budget / max(1, self._processes)

    def _local_turn(self, fingerprint: bytes) -> float:
        """The fallback budget: this process's share of the fleet's, as last counted."""
        now = time.monotonic()
        turn = max(now, self._local_turns.get(fingerprint, now), self._local_holds.get(fingerprint, now))
        self._local_turns[fingerprint] = turn + 1 / self._fallback_rate()
        if len(self._local_turns) > 1024:
            for table in (self._local_turns, self._local_holds):
                for stale in [known for known, until in table.items() if until < now]:
                    del table[stale]
        return turn - now

    # -- background: heartbeat, probe, subscriptions -------------------------------------------

    async def _heartbeat(self) -> None:
        while True:
            if self._outage is not None:
                await self._probe()
                await anyio.sleep(PROBE_INTERVAL)
                continue
            await self._quietly(self._beat)
            await anyio.sleep(HEARTBEAT_INTERVAL)

    async def _probe(self) -> None:
        """Sharing resumes when Redis takes a write again: a Redis that answers but refuses writes
        (full under `noeviction`, a read-only replica) is still out."""
        try:
            with anyio.fail_after(REDIS_CALL_DEADLINE):
                await self._client.set(self._prefix + "probe", self._token, px=_ms(PROCESS_SECONDS))
            # Connections pooled before the outage may lead to a Redis that is gone (a restart):
            # start afresh rather than meet each of them failing once.
            await self._client.connection_pool.disconnect()
        except (RedisError, OSError, TimeoutError):
            return
        self._end_outage()

    async def _beat(self) -> None:
        """Count the fleet, notice another secret, renew this process's leases and read the
        deadlines of the operations it follows: one round trip."""
        now = time.time()
        processes = self._prefix + "processes"
        secrets = "knock-mcp:fleet-secrets"
        followed = list(self._following)
        held = list(self._leases)
        pipe = self._client.pipeline(transaction=False)
        pipe.zadd(processes, {self._token.hex(): now})
        pipe.zremrangebyscore(processes, "-inf", now - PROCESS_SECONDS)
        pipe.zcard(processes)
        pipe.expire(processes, math.ceil(PROCESS_SECONDS * 4))
        pipe.zadd(secrets, {self._namespace: now})
        pipe.zremrangebyscore(secrets, "-inf", now - PROCESS_SECONDS)
        pipe.zrange(secrets, 0, -1)
        pipe.expire(secrets, math.ceil(PROCESS_SECONDS * 4))
        for address in followed:
            key = self._keys(address).deadlines
            pipe.zremrangebyscore(key, "-inf", now - 1)
            pipe.zrange(key, 0, -1, withscores=True)
        for address in held:
            keys = self._keys(address)
            await self._renew_lease(
                keys=[keys.lease, keys.loop],
                args=[self._token, _ms(LEASE_SECONDS), _ms(LOOP_SECONDS)],
                client=pipe,
            )
        results = await pipe.execute()
        self._processes = max(1, int(results[2]))
        self._notice_secrets([bytes(name).decode() for name in results[6]])
        for index, address in enumerate(followed):
            deadlines = sorted(score for _, score in results[8 + 2 * index + 1])
            following = self._following.get(address)
            if following is not None and deadlines != following.deadlines:
                following.deadlines = deadlines
                following.on_reschedule()
        for address, renewed in zip(held, results[8 + 2 * len(followed) :], strict=True):
            if not renewed:
                self._leases.discard(address)

    def _notice_secrets(self, namespaces: list[str]) -> None:
        other = any(namespace != self._namespace for namespace in namespaces)
        if other and not self._other_secret_seen:
            logger.error(
                "Another knock-mcp process uses this Redis with a different KNOCK_MCP_FLEET_SECRET: it "
                "shares nothing with this one (cache, poll loops, request budget). Give every process of "
                "the fleet the same secret."
            )
        self._other_secret_seen = other

    async def _listen(self) -> None:
        """Hand each followed operation's news to its follower; resubscribe after an outage."""
        while True:
            if self._outage is not None or not self._channels:
                await anyio.sleep(LISTEN_TIMEOUT)
                continue
            subscriptions = self._client.pubsub()
            try:
                await self._relay(subscriptions)
            except (RedisError, OSError, TimeoutError) as error:
                self._begin_outage(error)
            finally:
                with anyio.CancelScope(shield=True), anyio.move_on_after(REDIS_CALL_DEADLINE):
                    await subscriptions.aclose()  # type: ignore[no-untyped-call]

    async def _relay(self, subscriptions: redis.asyncio.client.PubSub) -> None:
        subscribed: set[bytes] = set()
        while self._outage is None:
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
            answer = await self._decode(self._keys(address), message["data"], skip_own=True)
            if answer is not None:
                following.on_news(answer)

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "sharing": self._outage is None,
            "redis": "unreachable" if self._outage is not None else "connected",
            "processes": self._processes,
            "refused_values": self._refused,
        }
        if self._outage is not None:
            report["problem"] = (
                f"Redis at {self._where} is not answering ({self._outage}): each process works alone "
                "until it is back"
            )
        elif self._other_secret_seen:
            report["problem"] = (
                "another knock-mcp process uses this Redis with a different KNOCK_MCP_FLEET_SECRET and "
                "shares nothing with this one: give every process the same secret"
            )
        return report


def _fresh_enough(found: SharedAnswer | None, fresh_for: float) -> SharedAnswer | None:
    """`found` if it may be served: final, or no older than `fresh_for`."""
    if found is not None and (found.operation.status.is_final or found.age <= fresh_for):
        return found
    return None


def _ms(seconds: float) -> int:
    return math.ceil(seconds * 1000)
