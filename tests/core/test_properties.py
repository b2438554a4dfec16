"""Property tests: any operation the schema allows gives a summary and a bounded view that hold up.

Hypothesis draws operations with nulls where the schema allows them, counts from int64's minimum
to its maximum, estimates below and above the processed rows, timestamps in any order, unicode and
control characters in names up to the model's length limit, and 0 to 100,000 failed items (the
count is drawn and the items are built from it: hypothesis does not draw lists that long).

CI runs the derandomized `ci` profile (see conftest.py); `--hypothesis-profile=deep` searches more.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import cycle, islice, repeat
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import to_json

from knock_mcp.models import (
    ERROR_ITEMS_CHAR_BUDGET,
    MAX_ITEMS_PER_PAGE,
    MAX_TEXT_CHARS,
    BulkOperation,
    BulkOperationStatus,
)
from knock_mcp.summary import MAX_SUMMARY_CHARS, render_summary, summarize
from knock_mcp.views import (
    MAX_EXTRA_FIELD_CHARS,
    bound_operation,
    compact_json,
)

# A failing example with 100,000 items prints megabytes; hypothesis warns, and warnings are errors here.
# The examples reach 100,000 items: about 70 s per property on an idle 2-core machine, more beside
# the rest of the suite. The timeout is there to catch a hang, not to time them.
pytestmark = [pytest.mark.filterwarnings("ignore:Generating overly large repr"), pytest.mark.timeout(360)]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_ERROR_ITEMS = 100_000
# Failed items with long ids are drawn only in small numbers, or one example would weigh gigabytes.
LONG_IDS_UP_TO = 50

counts = st.one_of(
    st.integers(0, 1000),
    st.sampled_from([0, 1, INT64_MAX, INT64_MIN, -1, 2**53 + 1]),
    st.integers(INT64_MIN, INT64_MAX),
)
moments = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
) | st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC))
names = st.text(max_size=MAX_TEXT_CHARS) | st.sampled_from(["users.identify", "users.delete", "objects.set"])
item_counts = st.one_of(st.integers(0, 20), st.integers(0, MAX_ERROR_ITEMS), st.just(MAX_ERROR_ITEMS))


@dataclass(frozen=True)
class FailedItems:
    """`count` failed items as drawn: the nth has the id `prefix` followed by n, takes the next of
    `collections` in turn, and, every seventh from the first, the added field `reason` if drawn."""

    count: int
    prefix: str
    collections: list[str | None]
    reason: str | None

    def as_json(self) -> bytes:
        """The items as Knock's JSON, written as `to_json` writes the list of their dicts. Written
        directly: building 100,000 dicts and then their JSON took twice as long. Each item is its
        start, its number and one of a few endings, which repeat every 7 x len(collections) items."""
        start = b'{"id":' + to_json(self.prefix).removesuffix(b'"')
        reason = b"" if self.reason is None else b',"reason":' + to_json(self.reason)
        endings = [
            b'","collection":' + to_json(collection) + (reason if number % 7 == 0 else b"") + b"}"
            for number, collection in zip(range(7 * len(self.collections)), cycle(self.collections))
        ]
        items = map(b"%s%d%s".__mod__, zip(repeat(start), range(self.count), cycle(endings)))
        return b"[" + b",".join(items) + b"]"

    def collection_counts(self) -> Counter[str | None]:
        return Counter(islice(cycle(self.collections), self.count))


@st.composite
def error_items(draw: st.DrawFn) -> FailedItems | None:
    count = draw(st.none() | item_counts)
    if count is None:
        return None
    longest = MAX_TEXT_CHARS - 6 if count <= LONG_IDS_UP_TO else 12
    prefix = draw(st.text(max_size=longest))
    collections = draw(st.lists(st.none() | st.text(max_size=longest), min_size=1, max_size=8))
    reason = draw(st.none() | st.text(max_size=MAX_EXTRA_FIELD_CHARS + 100))
    return FailedItems(count, prefix, collections, reason)


@dataclass(frozen=True)
class Drawn:
    """An operation as knock-mcp reads it, and what it was read from: the checks count the failed
    items as drawn, not by walking the packed items the code under test reads."""

    operation: BulkOperation
    item_collections: Counter[str | None]


@st.composite
def operations(draw: st.DrawFn) -> Drawn:
    status = draw(st.sampled_from(BulkOperationStatus))
    payload: dict[str, Any] = {
        "__typename": draw(st.just("BulkOperation") | st.text(max_size=40)),
        "id": str(draw(st.uuids())),
        "name": draw(names),
        "status": status.value,
        "estimated_total_rows": draw(counts),
        "processed_rows": draw(counts),
        "success_count": draw(counts),
        "error_count": draw(st.none() | counts),
        "error_items": draw(error_items()),
        "progress_path": draw(st.none() | st.text(max_size=MAX_TEXT_CHARS)),
        "inserted_at": draw(moments),
        "updated_at": draw(moments),
        "started_at": draw(st.none() | moments),
        "completed_at": draw(st.none() | moments),
        "failed_at": draw(st.none() | moments),
    }
    if draw(st.booleans()):
        payload["future_field"] = draw(st.text(max_size=MAX_EXTRA_FIELD_CHARS * 2))
    items: FailedItems | None = payload.pop("error_items")
    items_json = b"null" if items is None else items.as_json()
    # From JSON, as knock-mcp reads Knock's answers.
    body = to_json(payload).removesuffix(b"}") + b',"error_items":' + items_json + b"}"
    operation = BulkOperation.model_validate_json(body)
    return Drawn(operation, Counter() if items is None else items.collection_counts())


def stated(count: int) -> re.Pattern[str]:
    """`count` as the summary writes it, not as part of a longer number."""
    return re.compile(rf"(?<![\d,]){re.escape(f'{count:,}')}(?![\d,])")


@given(drawn=operations(), now=moments)
def test_a_summary_never_raises_stays_bounded_and_states_the_counts(drawn: Drawn, now: datetime) -> None:
    operation = drawn.operation
    summary = summarize(operation, now)
    text = render_summary(summary)

    assert len(text) <= MAX_SUMMARY_CHARS
    percent = summary.percent_complete
    assert percent is None or 0 <= percent <= 100
    if percent == 100:
        assert operation.status is BulkOperationStatus.COMPLETED

    items = operation.error_items
    assert summary.processed_rows == operation.processed_rows
    assert summary.estimated_total_rows == operation.estimated_total_rows
    assert summary.success_count == operation.success_count
    expected_failures = operation.error_count if operation.error_count is not None else None
    if expected_failures is None and items is not None:
        expected_failures = len(items)
    assert summary.failure_count == expected_failures
    assert summary.failed_items_listed == (None if items is None else len(items))
    listed = drawn.item_collections
    for group in summary.failed_item_groups:
        assert group.count == listed[group.collection]
    assert summary.failed_item_groups_omitted == len(listed) - len(summary.failed_item_groups)

    counts_line = text.splitlines()[1]
    assert stated(operation.processed_rows).search(counts_line)
    if operation.estimated_total_rows > 0:
        assert stated(operation.estimated_total_rows).search(counts_line)
    else:
        assert "no estimate of the total" in counts_line
    assert stated(operation.success_count).search(counts_line)
    if expected_failures is None:
        assert "failures not reported" in counts_line
    else:
        assert stated(expected_failures).search(counts_line)
    for seconds in (summary.queue_wait_seconds, summary.run_seconds, summary.seconds_left):
        assert seconds is None or seconds >= 0


@given(
    drawn=operations(),
    max_error_items=st.integers(0, MAX_ITEMS_PER_PAGE),
    offset=st.one_of(st.integers(0, 50), st.integers(0, MAX_ERROR_ITEMS + 10), st.integers(0, 2**63)),
)
def test_a_bounded_view_never_raises_pages_exactly_and_stays_small(
    drawn: Drawn, max_error_items: int, offset: int
) -> None:
    operation = drawn.operation
    view = bound_operation(operation, max_error_items, offset)

    items = operation.error_items
    shown = view.operation.error_items
    if items is None:
        assert view.error_items_total is None
        assert view.error_items_shown == 0
        assert shown is None
    else:
        assert shown is not None
        assert view.error_items_total == len(items)
        assert view.error_items_shown == len(shown) <= max_error_items
        assert view.error_items_shown + view.error_items_omitted == len(items)
        assert [item.id for item in shown] == [item.id for item in items[offset : offset + len(shown)]]
        if len(shown) < len(items):
            assert view.note, "whatever is left out is said, with how to get it"
    # Every part that grows with the operation is capped; what is left is a few fields of at most
    # MAX_TEXT_CHARS characters each (six when JSON escapes a control character).
    fixed_fields = 6 * 3 * MAX_TEXT_CHARS + 3 * MAX_EXTRA_FIELD_CHARS + 2000
    assert len(compact_json(view)) <= ERROR_ITEMS_CHAR_BUDGET + fixed_fields
