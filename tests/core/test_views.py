"""Paging and bounding of error_items, as pure functions."""

from __future__ import annotations

import json

from knock_mcp.models import ERROR_ITEMS_CHAR_BUDGET, MAX_ITEMS_PER_PAGE, BulkOperation
from knock_mcp.views import (
    MAX_EXTRA_FIELD_CHARS,
    bound_operation,
    compact_json,
)
from tests.support.payloads import load_fixture


def with_items(count: int, **extra: object) -> BulkOperation:
    items = [{"id": f"item_{n:05d}", "collection": "projects", **extra} for n in range(count)]
    return BulkOperation.model_validate(
        load_fixture("completed") | {"error_items": items, "error_count": count}
    )


def shown_ids(operation: BulkOperation, limit: int, offset: int) -> list[str]:
    view = bound_operation(operation, limit, offset)
    return [item.id for item in view.operation.error_items or []]


def test_paging_with_the_offset_returns_every_item_exactly_once() -> None:
    operation = with_items(12_000)
    seen: list[str] = []
    offset = 0
    while True:
        view = bound_operation(operation, MAX_ITEMS_PER_PAGE, offset)
        seen.extend(item.id for item in view.operation.error_items or [])
        offset += view.error_items_shown
        if offset >= 12_000:
            break
        assert view.note is not None
        assert f"error_items_offset={offset}" in view.note
    assert seen == [f"item_{n:05d}" for n in range(12_000)]


def test_the_last_page_says_so() -> None:
    view = bound_operation(with_items(120), 50, 100)
    assert (view.error_items_offset, view.error_items_shown, view.error_items_omitted) == (100, 20, 100)
    assert (
        view.note == "Showing failed items 101-120 of 120, the last ones. "
        "error_items_offset=0 starts again from the first."
    )


def test_an_offset_past_the_end_shows_nothing_and_says_why() -> None:
    view = bound_operation(with_items(10), 50, 10)
    assert view.error_items_shown == 0
    assert view.note == "error_items_offset=10 is past the last of the 10 failed items; start from 0."


def test_a_short_list_has_no_note() -> None:
    view = bound_operation(with_items(3), 50, 0)
    assert (view.error_items_total, view.error_items_shown, view.error_items_omitted, view.note) == (
        3,
        3,
        0,
        None,
    )


def test_no_list_from_knock_is_not_an_empty_list() -> None:
    operation = BulkOperation.model_validate(load_fixture("minimal"))
    view = bound_operation(operation, 50, 0)
    assert view.error_items_total is None
    assert view.operation.error_items is None


def test_large_items_are_cut_to_the_size_budget() -> None:
    operation = with_items(1_000, detail="x" * 2_000)
    view = bound_operation(operation, MAX_ITEMS_PER_PAGE, 0)
    assert 1 <= view.error_items_shown < 1_000
    assert view.error_items_omitted == 1_000 - view.error_items_shown
    assert view.note is not None
    assert "cut short" in view.note
    assert "max_error_items takes up to" not in view.note
    assert len(compact_json(view)) < 2 * ERROR_ITEMS_CHAR_BUDGET


def test_an_item_with_huge_extras_shows_only_its_id_and_collection() -> None:
    view = bound_operation(with_items(3, detail="x" * 2_000_000), 50, 0)
    assert [item.model_dump() for item in view.operation.error_items or []] == [
        {"id": f"item_{n:05d}", "collection": "projects"} for n in range(3)
    ]
    assert view.note == "3 items carried extra fields over 5,000 characters and show only id and collection."
    assert len(compact_json(view)) < 2_000


def test_huge_unknown_fields_on_the_operation_are_left_out_and_named() -> None:
    payload = load_fixture("completed") | {"audit_log": ["x" * 1000] * 1000, "region": "eu"}
    view = bound_operation(BulkOperation.model_validate(payload), 50, 0)
    dumped = json.loads(compact_json(view))["operation"]
    assert "audit_log" not in dumped
    assert dumped["region"] == "eu"
    assert view.note == f"Left out field 'audit_log': each over {MAX_EXTRA_FIELD_CHARS:,} characters."


def test_zero_items_asked_for_says_how_to_see_some() -> None:
    view = bound_operation(with_items(12), 0, 0)
    assert view.error_items_shown == 0
    assert (
        view.note
        == "No failed items included (max_error_items=0); pass max_error_items from 1 to 1,000 to see "
        "some of the 12."
    )


def test_the_operation_itself_is_unchanged() -> None:
    operation = with_items(100)
    view = bound_operation(operation, 10, 0)
    assert operation.error_items is not None
    assert len(operation.error_items) == 100
    assert json.loads(compact_json(view))["operation"]["name"] == "users.delete"
