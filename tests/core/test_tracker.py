"""The tracker alone, with an in-process fetch: sharing, caching, polling, cancelling, keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest
from pydantic import SecretStr

from knock_mcp.cache import FinalOperationCache, estimated_memory
from knock_mcp.errors import KnockUnavailable, OperationNotFound, RateLimited, SchemaMismatch
from knock_mcp.models import BulkOperation
from knock_mcp.poll_policy import PollPolicy
from knock_mcp.tracker import OperationTracker
from tests.support.payloads import load_fixture
from tests.support.polling import eventually

pytestmark = pytest.mark.anyio

PROCESSING = load_fixture("processing")
COMPLETED = load_fixture("completed")
OPERATION_ID = PROCESSING["id"]
KEY_A = SecretStr("sk_test_key_a")
KEY_B = SecretStr("sk_test_key_b")
QUICK = PollPolicy(first_interval=0.05, max_interval=0.05, fresh_for=0.05)


def stage(processed: int, status: str = "processing") -> BulkOperation:
    payload = PROCESSING | {"processed_rows": processed, "status": status}
    if status == "completed":
        payload |= {"completed_at": "2026-11-28T12:10:00Z"}
    return BulkOperation.model_validate(payload)


class Knock:
    """A fetch that answers from a script and counts calls per key; `gate` holds answers back."""

    def __init__(self, answers: Callable[[int, str], BulkOperation | Exception]) -> None:
        self.answers = answers
        self.calls: list[str] = []
        self.gate: anyio.Event | None = None
        self.started = anyio.Event()

    async def __call__(self, operation_id: str, key: SecretStr | None) -> BulkOperation:
        assert key is not None
        secret = key.get_secret_value()
        self.calls.append(secret)
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers(len(self.calls), secret)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
async def make_tracker() -> AsyncIterator[Callable[..., Any]]:
    async with AsyncExitStack() as stack:

        async def make(knock: Knock, **options: Any) -> OperationTracker:
            tracker = OperationTracker(knock, policy=options.pop("policy", QUICK), **options)
            return await stack.enter_async_context(tracker)

        yield make


async def nothing(operation: BulkOperation) -> None:
    return None


async def test_concurrent_reads_share_one_request(make_tracker: Callable[..., Any]) -> None:
    knock = Knock(lambda n, key: stage(100))
    knock.gate = anyio.Event()
    tracker: OperationTracker = await make_tracker(knock)
    results: list[BulkOperation] = []

    async def ask() -> None:
        results.append(await tracker.read(OPERATION_ID, KEY_A))

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(ask)
        await knock.started.wait()
        await anyio.sleep(0.01)
        knock.gate.set()
    assert len(results) == 50
    assert knock.calls == ["sk_test_key_a"]


async def test_a_final_operation_is_fetched_once(make_tracker: Callable[..., Any]) -> None:
    knock = Knock(lambda n, key: stage(1000, "completed"))
    tracker: OperationTracker = await make_tracker(knock)
    for _ in range(3):
        assert (await tracker.read(OPERATION_ID.upper(), KEY_A)).status == "completed"
    assert len(knock.calls) == 1
    assert len(tracker.cache) == 1


async def test_a_running_operation_is_never_served_older_than_the_window(
    make_tracker: Callable[..., Any],
) -> None:
    knock = Knock(lambda n, key: stage(n * 10))
    tracker: OperationTracker = await make_tracker(knock, policy=PollPolicy(fresh_for=0.2))
    first = await tracker.read(OPERATION_ID, KEY_A)
    assert first.processed_rows == 10
    await anyio.sleep(0.3)
    assert (await tracker.read(OPERATION_ID, KEY_A)).processed_rows == 20
    assert len(knock.calls) == 2


async def test_two_keys_never_share_a_request_or_an_answer(make_tracker: Callable[..., Any]) -> None:
    knock = Knock(lambda n, key: stage(1 if key.endswith("a") else 2, "completed"))
    knock.gate = anyio.Event()
    tracker: OperationTracker = await make_tracker(knock)
    seen: dict[str, int] = {}

    async def ask(key: SecretStr) -> None:
        seen[key.get_secret_value()] = (await tracker.read(OPERATION_ID, key)).processed_rows

    async with anyio.create_task_group() as group:
        group.start_soon(ask, KEY_A)
        group.start_soon(ask, KEY_B)
        await anyio.sleep(0.05)
        knock.gate.set()
    assert seen == {"sk_test_key_a": 1, "sk_test_key_b": 2}
    assert sorted(knock.calls) == ["sk_test_key_a", "sk_test_key_b"]
    # Each key's final answer is cached for that key only.
    assert (await tracker.read(OPERATION_ID, KEY_B)).processed_rows == 2
    assert len(knock.calls) == 2
    assert tracker.address(OPERATION_ID, KEY_A) != tracker.address(OPERATION_ID, KEY_B)


async def test_no_key_is_kept_in_an_address(make_tracker: Callable[..., Any]) -> None:
    tracker: OperationTracker = await make_tracker(Knock(lambda n, key: stage(1)))
    fingerprint, operation_id = tracker.address(OPERATION_ID, KEY_A)
    assert KEY_A.get_secret_value().encode() not in fingerprint
    assert operation_id == OPERATION_ID


async def test_errors_are_not_cached(make_tracker: Callable[..., Any]) -> None:
    knock = Knock(lambda n, key: KnockUnavailable("HTTP 503", 3) if n == 1 else stage(5, "completed"))
    tracker: OperationTracker = await make_tracker(knock)
    with pytest.raises(KnockUnavailable):
        await tracker.read(OPERATION_ID, KEY_A)
    assert (await tracker.read(OPERATION_ID, KEY_A)).processed_rows == 5


def test_the_cache_is_bounded_by_count_and_by_size() -> None:
    cache = FinalOperationCache(max_entries=2)
    operations = [stage(n, "completed") for n in range(3)]
    for n, operation in enumerate(operations):
        cache.put((b"k", str(n)), operation)
    assert len(cache) == 2
    assert cache.get((b"k", "0")) is None
    assert cache.get((b"k", "2")) is operations[2]

    size = estimated_memory(operations[0])
    by_size = FinalOperationCache(max_bytes=size * 2 + 1)
    for n, operation in enumerate(operations):
        by_size.put((b"k", str(n)), operation)
    assert len(by_size) == 2
    assert by_size.estimated_bytes <= by_size.max_bytes
    too_big = FinalOperationCache(max_bytes=size - 1)
    too_big.put((b"k", "0"), operations[0])
    assert len(too_big) == 0


def test_cached_operations_expire_so_a_revoked_key_is_asked_again() -> None:
    now = [0.0]
    cache = FinalOperationCache(max_age=600.0, clock=lambda: now[0])
    operation = stage(5, "completed")
    cache.put((b"k", "0"), operation)
    now[0] = 600.0
    assert cache.get((b"k", "0")) is operation
    now[0] = 600.5
    assert cache.get((b"k", "0")) is None
    assert (len(cache), cache.estimated_bytes) == (0, 0)


def test_the_interval_starts_quick_and_slows_down() -> None:
    policy = PollPolicy()
    assert [policy.interval(age) for age in (0, 5, 10, 30, 50, 100, 1000)] == [1, 1, 1, 3, 5, 10, 10]


async def test_a_wait_follows_to_the_final_state(make_tracker: Callable[..., Any]) -> None:
    stages = [stage(0, "queued"), stage(10), stage(20), stage(30, "completed")]
    knock = Knock(lambda n, key: stages[min(n, len(stages)) - 1])
    tracker: OperationTracker = await make_tracker(knock)
    seen: list[int] = []

    async def record(operation: BulkOperation) -> None:
        seen.append(operation.processed_rows)

    outcome = await tracker.wait(OPERATION_ID, KEY_A, 10, record)
    assert not outcome.timed_out
    assert outcome.operation.status == "completed"
    assert seen == [0, 10, 20, 30]
    assert len(knock.calls) == 4
    await anyio.sleep(0.2)
    assert len(knock.calls) == 4, "the loop stops at the final state"
    assert tracker.active_loops == 0


async def test_a_wait_that_runs_out_returns_the_running_state(make_tracker: Callable[..., Any]) -> None:
    knock = Knock(lambda n, key: stage(n))
    tracker: OperationTracker = await make_tracker(knock)
    outcome = await tracker.wait(OPERATION_ID, KEY_A, 0.3, nothing)
    assert outcome.timed_out
    assert outcome.operation.status == "processing"
    assert tracker.active_loops == 0


async def test_a_cancelled_wait_stops_polling_at_once(make_tracker: Callable[..., Any]) -> None:
    knock = Knock(lambda n, key: stage(n))
    tracker: OperationTracker = await make_tracker(knock)
    with anyio.move_on_after(0.3):
        await tracker.wait(OPERATION_ID, KEY_A, 30, nothing)
    calls_at_cancel = len(knock.calls)
    assert calls_at_cancel >= 2
    await anyio.sleep(0.3)
    assert len(knock.calls) == calls_at_cancel
    assert tracker.active_loops == 0


async def test_many_waiters_share_one_loop(make_tracker: Callable[..., Any]) -> None:
    stages = [stage(n * 10) for n in range(5)] + [stage(50, "completed")]
    one = Knock(lambda n, key: stages[min(n, len(stages)) - 1])
    tracker: OperationTracker = await make_tracker(one)
    await tracker.wait(OPERATION_ID, KEY_A, 10, nothing)

    many = Knock(lambda n, key: stages[min(n, len(stages)) - 1])
    tracker = await make_tracker(many)
    finals: list[str] = []

    async def wait() -> None:
        finals.append((await tracker.wait(OPERATION_ID, KEY_A, 10, nothing)).operation.status)

    async with anyio.create_task_group() as group:
        for _ in range(50):
            group.start_soon(wait)
    assert finals == ["completed"] * 50
    assert len(many.calls) <= len(one.calls) == len(stages)


async def test_retry_after_holds_the_loop_off(make_tracker: Callable[..., Any]) -> None:
    knock = Knock(lambda n, key: RateLimited(1, retry_after=0.5) if n == 2 else stage(n))
    tracker: OperationTracker = await make_tracker(knock)
    clock = anyio.current_time
    times: list[float] = []

    async def record(operation: BulkOperation) -> None:
        times.append(clock())

    outcome = await tracker.wait(OPERATION_ID, KEY_A, 1.2, record)
    assert outcome.timed_out
    # Answers 1 and 3 are at least the 0.5 s Knock asked for apart.
    assert times[1] - times[0] >= 0.5


async def test_a_permanent_failure_ends_the_wait(make_tracker: Callable[..., Any]) -> None:
    knock = Knock(lambda n, key: stage(1) if n == 1 else OperationNotFound(OPERATION_ID, None))
    tracker: OperationTracker = await make_tracker(knock)
    with pytest.raises(OperationNotFound):
        await tracker.wait(OPERATION_ID, KEY_A, 10, nothing)
    assert tracker.active_loops == 0


async def test_a_transient_failure_at_the_end_of_a_wait_is_reported(make_tracker: Callable[..., Any]) -> None:
    knock = Knock(lambda n, key: stage(1) if n == 1 else KnockUnavailable("HTTP 503", 3))
    tracker: OperationTracker = await make_tracker(knock)
    with pytest.raises(KnockUnavailable):
        await tracker.wait(OPERATION_ID, KEY_A, 0.5, nothing)


async def test_listeners_hear_each_change_until_final_and_stop_the_loop(
    make_tracker: Callable[..., Any],
) -> None:
    stages = [stage(10), stage(10), stage(20), stage(30, "completed")]
    knock = Knock(lambda n, key: stages[min(n, len(stages)) - 1])
    tracker: OperationTracker = await make_tracker(knock)
    heard: list[int] = []
    with tracker.listening(OPERATION_ID, KEY_A, lambda operation: heard.append(operation.processed_rows)):
        await eventually(lambda: tracker.active_loops == 0)
    assert heard == [20, 30]

    running = Knock(lambda n, key: stage(n))
    tracker = await make_tracker(running)
    with tracker.listening(OPERATION_ID, KEY_A, lambda operation: None):
        await anyio.sleep(0.3)
        assert tracker.active_loops == 1
    calls = len(running.calls)
    await anyio.sleep(0.2)
    assert len(running.calls) == calls
    assert tracker.active_loops == 0


async def test_cancelling_the_last_waiter_cancels_the_request_in_flight(
    make_tracker: Callable[..., Any],
) -> None:
    cancelled = anyio.Event()

    class StalledKnock(Knock):
        async def __call__(self, operation_id: str, key: SecretStr | None) -> BulkOperation:
            try:
                return await super().__call__(operation_id, key)
            except anyio.get_cancelled_exc_class():
                cancelled.set()
                raise

    knock = StalledKnock(lambda n, key: stage(n))
    knock.gate = anyio.Event()  # never opened: Knock never answers
    tracker: OperationTracker = await make_tracker(knock)
    async with anyio.create_task_group() as group:
        group.start_soon(tracker.wait, OPERATION_ID, KEY_A, 30, nothing)
        await knock.started.wait()
        group.cancel_scope.cancel()
    with anyio.fail_after(5):
        await cancelled.wait()
    assert tracker.active_loops == 0
    assert knock.calls == ["sk_test_key_a"]


async def test_listeners_keep_hearing_after_an_error_no_retry_fixes(make_tracker: Callable[..., Any]) -> None:
    """A proxy's error page (or a 404 before Knock shows the operation) ends a wait, but a listener
    would never hear of it: its loop keeps asking, at the slowest pace, until an answer comes."""
    answers: list[BulkOperation | Exception] = [stage(10), SchemaMismatch(["status: bad"]), stage(20)]
    knock = Knock(lambda n, key: answers[min(n, len(answers)) - 1])
    tracker: OperationTracker = await make_tracker(knock)
    heard: list[int] = []
    with tracker.listening(OPERATION_ID, KEY_A, lambda operation: heard.append(operation.processed_rows)):
        await eventually(lambda: heard == [20])
        assert tracker.active_loops == 1


async def test_a_listener_that_fails_does_not_stop_the_others(make_tracker: Callable[..., Any]) -> None:
    stages = [stage(10), stage(20), stage(30, "completed")]
    knock = Knock(lambda n, key: stages[min(n, len(stages)) - 1])
    tracker: OperationTracker = await make_tracker(knock)
    heard: list[int] = []

    def broken(operation: BulkOperation) -> None:
        raise RuntimeError("a listener that fails")

    with (
        tracker.listening(OPERATION_ID, KEY_A, broken),
        tracker.listening(OPERATION_ID, KEY_A, lambda operation: heard.append(operation.processed_rows)),
    ):
        await eventually(lambda: tracker.active_loops == 0)
    assert heard == [20, 30]
