"""Reading operations economically: a cache of final ones, one request for concurrent askers, and one
poll loop per operation however many callers wait on it or listen to it.

Everything is keyed by an *address*: a fingerprint of the Knock key and the operation id. Callers
with different keys never share a request, a loop or an answer, because Knock answers each key from
its own environment. The fingerprint is an HMAC of the key (see `knock_mcp.fleet`), so the dicts
here never hold a key. A loop keeps the key itself only while someone still waits or listens, to
make its requests.

A `Fleet` extends all of this beyond the process (see `knock_mcp.fleet`): by default the process is
on its own; with Redis, reads consult what the fleet last heard, one process polls each operation
for everyone and the others hear its answers.

- A final operation (completed or failed) never changes, so it is cached (`knock_mcp.cache`); a
  repeat question costs no Knock call.
- A non-final operation is served from the last answer only while that answer is younger than
  `PollPolicy.fresh_for` (about a second); otherwise the caller joins the request in flight, or
  starts one.
- A poll loop runs only while a waiter or a listener is interested, and is cancelled, with any
  request it has in flight, the moment the last one leaves.
- The ids each key has read successfully are remembered, most recent first (`recent_ids`, kept in
  `knock_mcp.recent_ids`), so a client can be offered them when someone types an id.

Nothing here imports `mcp`: progress and live updates leave through plain callables.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from types import TracebackType

import anyio
from anyio.abc import TaskGroup
from pydantic import SecretStr

from knock_mcp.cache import FinalOperationCache
from knock_mcp.errors import KnockUnavailable, RateLimited
from knock_mcp.fleet import Address, Fleet, LocalFleet, SharedAnswer
from knock_mcp.models import BulkOperation, parse_operation_id
from knock_mcp.poll_policy import PollPolicy
from knock_mcp.recent_ids import RecentIds

logger = logging.getLogger(__name__)

Fetch = Callable[[str, SecretStr | None], Awaitable[BulkOperation]]
"""Reads one operation from Knock with a key: `KnockClient.get_bulk_operation` or a stand-in."""


@dataclass(frozen=True)
class WaitOutcome:
    operation: BulkOperation
    timed_out: bool


@dataclass(eq=False)
class _SharedFetch:
    """One request to Knock that any number of callers await."""

    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    done: anyio.Event = field(default_factory=anyio.Event)
    awaiting: int = 0
    result: BulkOperation | None = None
    error: Exception | None = None


@dataclass(frozen=True)
class _Snapshot:
    operation: BulkOperation
    fetched_at: float


@dataclass(eq=False)
class _Entry:
    """What is shared about one address while anyone is interested in it."""

    address: Address
    operation_id: str
    key: SecretStr | None = field(repr=False)
    latest: _Snapshot | None = None
    # The last failure, kept only while it is newer than `latest`.
    failure: Exception | None = None
    failure_is_final: bool = False
    updated: anyio.Event = field(default_factory=anyio.Event)
    in_flight: _SharedFetch | None = None
    waiters: int = 0
    deadlines: list[float] = field(default_factory=list)
    listeners: dict[object, Callable[[BulkOperation], None]] = field(default_factory=dict)
    loop: anyio.CancelScope | None = None
    # No poll before this: after an error no retry fixes, while only listeners remain.
    hold_until: float = -math.inf
    reschedule: anyio.Event = field(default_factory=anyio.Event)

    @property
    def interested(self) -> bool:
        return self.waiters > 0 or bool(self.listeners)

    def wake(self) -> None:
        self.updated.set()
        self.updated = anyio.Event()

    def reschedule_soon(self) -> None:
        """Wake the poll loop to work out its schedule again (a new deadline)."""
        self.reschedule.set()


@dataclass(eq=False)
class _Follower:
    """A follower that outlives the request that started it (see `OperationTracker.follow`)."""

    operation_id: str
    on_change: Callable[[BulkOperation], Awaitable[None]]
    following: ExitStack = field(default_factory=ExitStack)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    latest: BulkOperation | None = None
    changed: anyio.Event = field(default_factory=anyio.Event)

    def note(self, operation: BulkOperation) -> None:
        self.latest = operation
        self.changed.set()

    async def deliver(self) -> None:
        with self.following, self.scope:
            while True:
                await self.changed.wait()
                self.changed = anyio.Event()
                operation = self.latest
                assert operation is not None
                try:
                    await self.on_change(operation)
                except Exception:
                    logger.exception("Could not deliver a live update for %s", self.operation_id)
                if operation.status.is_final:
                    return


class OperationTracker:
    """Reads, waits and listens on bulk operations, sharing all Knock traffic per address.

    Use as `async with OperationTracker(fetch) as tracker:`; its shared requests and poll loops run
    in a task group of its own, so that one caller leaving does not end what others still await.
    """

    def __init__(
        self,
        fetch: Fetch,
        *,
        policy: PollPolicy | None = None,
        cache: FinalOperationCache | None = None,
        clock: Callable[[], float] = time.monotonic,
        fleet: Fleet | None = None,
    ) -> None:
        self._fetch = fetch
        self.policy = policy if policy is not None else PollPolicy()
        self.cache = cache if cache is not None else FinalOperationCache()
        self._clock = clock
        self._fleet: Fleet = fleet if fleet is not None else LocalFleet()
        self._recent = RecentIds()
        self._entries: dict[Address, _Entry] = {}
        self._next_slot: dict[bytes, float] = {}
        self._blocked_until: dict[bytes, float] = {}
        self._task_group: TaskGroup | None = None

    async def __aenter__(self) -> OperationTracker:
        self._task_group = anyio.create_task_group()
        await self._task_group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        assert self._task_group is not None
        self._task_group.cancel_scope.cancel()
        return await self._task_group.__aexit__(exc_type, exc, traceback)

    @property
    def active_loops(self) -> int:
        """How many poll loops run now (tests and benchmarks read it)."""
        return sum(entry.loop is not None for entry in self._entries.values())

    def address(self, raw_id: str, key: SecretStr | None) -> Address:
        """The address of an operation for this key; raises `InvalidOperationId` for a bad id."""
        return self.fingerprint(key), parse_operation_id(raw_id)

    async def read(self, raw_id: str, key: SecretStr | None) -> BulkOperation:
        """The operation, from the cache if final, else no older than `fresh_for`."""
        address = self.address(raw_id, key)
        cached = self.cache.get(address)
        if cached is not None:
            self._recent.note(address)
            return cached
        entry = self._entry(address, key)
        try:
            return (await self._fresh(entry)).operation
        finally:
            self._forget_if_idle(entry)

    async def wait(
        self,
        raw_id: str,
        key: SecretStr | None,
        seconds: float,
        on_snapshot: Callable[[BulkOperation], Awaitable[None]],
    ) -> WaitOutcome:
        """Follow the operation until it is final or `seconds` pass, calling `on_snapshot`
        with each new answer (the first one included). Always answers with a current state: the
        first read completes even if it takes longer than `seconds`."""
        address = self.address(raw_id, key)
        cached = self.cache.get(address)
        if cached is not None:
            self._recent.note(address)
            await on_snapshot(cached)
            return WaitOutcome(cached, timed_out=False)
        deadline = self._clock() + seconds
        entry = self._entry(address, key)
        entry.waiters += 1
        entry.deadlines.append(deadline)
        shared_deadline = self._fleet.add_deadline(address, seconds)
        entry.reschedule.set()
        self._ensure_loop(entry)
        try:
            snapshot = await self._fresh(entry)
            while True:
                await on_snapshot(snapshot.operation)
                if snapshot.operation.status.is_final:
                    return WaitOutcome(snapshot.operation, timed_out=False)
                with anyio.move_on_after(max(0.0, deadline - self._clock())):
                    snapshot = await self._next(entry, snapshot)
                    continue
                if entry.failure is not None:
                    raise entry.failure
                # The loop's last answer may have landed as the deadline passed: it may be final.
                latest = entry.latest or snapshot
                if latest is not snapshot:
                    await on_snapshot(latest.operation)
                return WaitOutcome(latest.operation, timed_out=not latest.operation.status.is_final)
        finally:
            entry.waiters -= 1
            entry.deadlines.remove(deadline)
            self._fleet.remove_deadline(address, shared_deadline)
            self._stop_loop_if_unwanted(entry)
            self._forget_if_idle(entry)

    @contextmanager
    def listening(
        self, raw_id: str, key: SecretStr | None, on_change: Callable[[BulkOperation], None]
    ) -> Iterator[None]:
        """Call `on_change` each time the operation changes, until it is final, while inside.

        Raises `InvalidOperationId` for a bad id. A final operation never changes: listening to
        one that is cached starts no loop."""
        address = self.address(raw_id, key)
        if self.cache.get(address) is not None:
            yield
            return
        entry = self._entry(address, key)
        token = object()
        entry.listeners[token] = on_change
        self._ensure_loop(entry)
        try:
            yield
        finally:
            entry.listeners.pop(token, None)
            self._stop_loop_if_unwanted(entry)
            self._forget_if_idle(entry)

    def follow(
        self, raw_id: str, key: SecretStr | None, on_change: Callable[[BulkOperation], Awaitable[None]]
    ) -> Callable[[], None]:
        """Await `on_change` each time the operation changes, until it is final or the returned
        function is called: `listening` for a follower that outlives the request that started it (a
        2025-11-25 `resources/subscribe`), delivered by a task of the tracker's own. Changes that
        land while `on_change` still runs are folded into one call with the latest state.

        The follower is registered before this returns, so a read made right after it is the
        baseline every later change is announced against. Raises `InvalidOperationId` for a bad id."""
        if self.cache.get(self.address(raw_id, key)) is not None:
            return lambda: None  # final: it will never change
        follower = _Follower(raw_id, on_change)
        follower.following.enter_context(self.listening(raw_id, key, follower.note))
        assert self._task_group is not None, "use OperationTracker as an async context manager"
        self._task_group.start_soon(follower.deliver)
        return follower.scope.cancel

    def recent_ids(self, key: SecretStr | None) -> list[str]:
        """The operation ids read with this key, most recent first (none read with another key)."""
        return self._recent.for_fingerprint(self.fingerprint(key))

    def fingerprint(self, key: SecretStr | None) -> bytes:
        """The key's HMAC (see `knock_mcp.fleet`): what the tables here hold instead of the key."""
        return self._fleet.fingerprint(key)

    def _entry(self, address: Address, key: SecretStr | None) -> _Entry:
        entry = self._entries.get(address)
        if entry is None:
            entry = self._entries[address] = _Entry(address, address[1], key)
        return entry

    def _forget_if_idle(self, entry: _Entry) -> None:
        idle = not entry.interested and entry.in_flight is None and entry.loop is None
        if idle and self._entries.get(entry.address) is entry:
            del self._entries[entry.address]

    async def _fresh(self, entry: _Entry) -> _Snapshot:
        latest = entry.latest
        if latest is not None and self._clock() - latest.fetched_at <= self.policy.fresh_for:
            return latest
        return await self._refresh(entry)

    async def _next(self, entry: _Entry, seen: _Snapshot) -> _Snapshot:
        """The first answer after `seen`; raises a failure that ends the following."""
        while True:
            if entry.latest is not None and entry.latest is not seen:
                return entry.latest
            if entry.failure is not None and entry.failure_is_final:
                raise entry.failure
            await entry.updated.wait()

    async def _refresh(self, entry: _Entry) -> _Snapshot:
        """Join the request in flight for this address, or start one; its answer, or its error."""
        shared = entry.in_flight
        if shared is None:
            shared = entry.in_flight = _SharedFetch()
            assert self._task_group is not None, "use OperationTracker as an async context manager"
            self._task_group.start_soon(self._run_fetch, entry, shared)
        shared.awaiting += 1
        try:
            await shared.done.wait()
        finally:
            shared.awaiting -= 1
            if shared.awaiting == 0 and not shared.done.is_set():
                # Nobody wants the answer any more: stop the request now.
                shared.scope.cancel()
                if entry.in_flight is shared:
                    entry.in_flight = None
        if shared.error is not None:
            raise shared.error
        if shared.result is None or entry.latest is None:
            raise KnockUnavailable("the request was cancelled as knock-mcp shut down", attempts=1)
        return entry.latest

    async def _run_fetch(self, entry: _Entry, shared: _SharedFetch) -> None:
        try:
            with shared.scope:
                try:
                    answer = await self._fleet.read(
                        entry.address,
                        lambda: self._fetch(entry.operation_id, entry.key),
                        self.policy.fresh_for,
                    )
                except Exception as error:
                    shared.error = error
                else:
                    shared.result = answer.operation
                    self._record(entry, answer)
        finally:
            if entry.in_flight is shared:
                entry.in_flight = None
            shared.done.set()
            self._forget_if_idle(entry)

    def _record(self, entry: _Entry, answer: SharedAnswer) -> None:
        operation = answer.operation
        previous = entry.latest
        entry.latest = _Snapshot(operation, self._clock() - answer.age)
        entry.failure = None
        entry.hold_until = -math.inf
        self._recent.note(entry.address)
        if operation.status.is_final:
            self.cache.put(entry.address, operation, age=answer.cached_for)
        if previous is not None and previous.operation != operation:
            for on_change in list(entry.listeners.values()):
                try:
                    on_change(operation)
                except Exception:
                    # One listener's failure must not end the loop the others (and waiters) share.
                    logger.exception("Could not deliver a live update for %s", entry.operation_id)
        entry.wake()

    def _hear(self, entry: _Entry, answer: SharedAnswer) -> None:
        """An answer another process of the fleet had from Knock; one older than ours is dropped."""
        latest = entry.latest
        if latest is not None and answer.operation.updated_at < latest.operation.updated_at:
            return
        self._record(entry, answer)

    def _ensure_loop(self, entry: _Entry) -> None:
        if entry.loop is None:
            scope = entry.loop = anyio.CancelScope()
            assert self._task_group is not None, "use OperationTracker as an async context manager"
            self._task_group.start_soon(self._poll, entry, scope)

    def _stop_loop_if_unwanted(self, entry: _Entry) -> None:
        if not entry.interested and entry.loop is not None:
            entry.loop.cancel()
            entry.loop = None

    async def _poll(self, entry: _Entry, scope: anyio.CancelScope) -> None:
        """Ask Knock on the policy's schedule until the operation is final or nobody is interested.

        In a fleet, only the process holding the operation's lease asks; the others hear its answers
        and take over if it stops."""
        fingerprint = entry.address[0]
        self._fleet.follow(entry.address, lambda answer: self._hear(entry, answer), entry.reschedule_soon)
        try:
            with scope:
                # The fleet's loop may have run for a while: its schedule goes on from there.
                started = self._clock() - await self._fleet.join_loop(entry.address)
                while entry.interested:
                    wait = self._due(entry, started) - self._clock()
                    if wait > 0:
                        entry.reschedule = anyio.Event()
                        # Woken early when a new waiter brings an earlier deadline.
                        with anyio.move_on_after(wait):
                            await entry.reschedule.wait()
                        continue
                    if not await self._fleet.lead(entry.address):
                        # Another process polls and shares its answers: check now and then that it still does.
                        with anyio.move_on_after(self._fleet.lease_check_interval):
                            await entry.updated.wait()
                        if entry.latest is not None and entry.latest.operation.status.is_final:
                            return
                        continue
                    await self._pace(fingerprint)
                    try:
                        snapshot = await self._refresh(entry)
                    except (RateLimited, KnockUnavailable) as error:
                        hold_off = error.retry_after or self.policy.interval(self._clock() - started)
                        self._blocked_until[fingerprint] = self._clock() + hold_off
                        entry.failure, entry.failure_is_final = error, False
                        entry.wake()
                        continue
                    except Exception as error:
                        entry.failure, entry.failure_is_final = error, True
                        entry.wake()
                        if not entry.listeners:
                            return
                        # Waiters have their answer (the error), but a listener hears nothing of it and
                        # would never hear another update: keep following, at the slowest pace. An
                        # operation not yet visible or a proxy's error page may yet give way.
                        entry.hold_until = self._clock() + self.policy.max_interval
                        continue
                    if snapshot.operation.status.is_final:
                        return
        finally:
            self._fleet.unfollow(entry.address)
            self._fleet.release(entry.address)
            if entry.loop is scope:
                entry.loop = None
            self._forget_if_idle(entry)

    def _due(self, entry: _Entry, started: float) -> float:
        """When the loop should ask next: its interval after the last answer, earlier if a waiter's
        deadline would otherwise find that answer stale, never while Knock asked us to hold off."""
        now = self._clock()
        last = entry.latest.fetched_at if entry.latest is not None else -math.inf
        due = last + self.policy.interval(now - started)
        fleet_deadlines = [now + remaining for remaining in self._fleet.deadlines(entry.address)]
        for deadline in [*entry.deadlines, *fleet_deadlines]:
            if last < deadline - self.policy.fresh_for:
                due = min(due, deadline - self.policy.deadline_lead)
        return max(due, entry.hold_until, self._blocked_until.get(entry.address[0], -math.inf))

    async def _pace(self, fingerprint: bytes) -> None:
        """Space this key's loop requests to the per-key rate."""
        now = self._clock()
        slot = max(now, self._next_slot.get(fingerprint, now))
        self._next_slot[fingerprint] = slot + 1 / self.policy.requests_per_second_per_key
        if len(self._next_slot) > 1024:
            self._prune(now)
        if slot > now:
            await anyio.sleep(slot - now)

    def _prune(self, now: float) -> None:
        for table in (self._next_slot, self._blocked_until):
            for fingerprint in [fingerprint for fingerprint, until in table.items() if until < now]:
                del table[fingerprint]
