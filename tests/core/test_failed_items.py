"""Pages of failed items as pure functions, and through the server."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from mcp import Client

from knock_mcp.errors import InvalidCursor
from knock_mcp.failed_items import MAX_COLLECTION_COUNTS, FailedItemsPage, failed_items_page
from knock_mcp.models import BulkOperation
from knock_mcp.server import create_server
from knock_mcp.settings import Settings
from tests.support.fake_knock import FakeKnock
from tests.support.payloads import load_fixture

MANY_ID = "77777777-7777-4777-8777-777777777777"
COLLECTIONS = ["projects", "teams", "workspaces"]


def many(count: int = 12_000, name: str = "objects.set", **changes: Any) -> BulkOperation:
    items = [{"id": f"item_{n:05d}", "collection": COLLECTIONS[n % 3]} for n in range(count)]
    payload = load_fixture("completed") | {
        "id": MANY_ID,
        "name": name,
        "error_count": count,
        "error_items": items,
    }
    return BulkOperation.model_validate(payload | changes)


def every_page(
    operation: BulkOperation, collection: str | None = None, limit: int = 1000
) -> list[FailedItemsPage]:
    pages = [failed_items_page(operation, collection, None, limit)]
    while pages[-1].next_cursor is not None:
        pages.append(failed_items_page(operation, None, pages[-1].next_cursor, limit))
    return pages


def ids_of(pages: list[FailedItemsPage]) -> list[str]:
    return [item_id for page in pages for group in page.groups for item_id in group.ids]


def test_paging_12000_items_returns_each_exactly_once() -> None:
    operation = many()
    pages = every_page(operation)
    assert len(pages) == 12
    assert ids_of(pages) == [f"item_{n:05d}" for n in range(12_000)]
    assert all(page.shown == 1000 for page in pages)
    assert pages[-1].note == "Failed items 11,001-12,000 of 12,000, the last ones."
    assert pages[0].note == (
        "Failed items 1-1,000 of 12,000. Call list_failed_items again with cursor=next_cursor for the next "
        "ones."
    )


def test_one_collection_at_a_time_with_counts_for_all() -> None:
    operation = many()
    pages = every_page(operation, "teams", limit=700)
    assert ids_of(pages) == [f"item_{n:05d}" for n in range(1, 12_000, 3)]
    first = pages[0]
    assert (first.total, first.matching, first.collection) == (12_000, 4000, "teams")
    assert [(count.collection, count.count) for count in first.counts_by_collection] == [
        ("projects", 4000),
        ("teams", 4000),
        ("workspaces", 4000),
    ]
    (group,) = first.groups
    assert group.resubmit_to == "POST /v1/objects/teams/bulk/set"


def test_a_page_groups_ids_by_collection_in_knocks_order() -> None:
    page = failed_items_page(BulkOperation.model_validate(load_fixture("completed")), None, None, 1000)
    assert [(group.collection, group.ids, group.resubmit_to) for group in page.groups] == [
        (None, ["user_7"], "POST /v1/users/bulk/delete"),
        ("projects", ["proj_1", "proj_2"], "POST /v1/users/bulk/delete"),
    ]
    assert page.next_cursor is None


def test_long_ids_cut_the_page_short_and_the_cursor_continues() -> None:
    items = [{"id": f"{n:04d}" + "x" * 1990, "collection": None} for n in range(100)]
    operation = BulkOperation.model_validate(load_fixture("completed") | {"error_items": items})
    pages = every_page(operation)
    assert len(pages) > 1
    assert all(len(json.dumps(page.model_dump())) < 60_000 for page in pages)
    assert ids_of(pages) == [item["id"] for item in items]


def test_collections_beyond_the_cap_are_counted() -> None:
    items = [{"id": f"o{n}", "collection": f"c{n}"} for n in range(MAX_COLLECTION_COUNTS + 7)]
    operation = BulkOperation.model_validate(load_fixture("completed") | {"error_items": items})
    page = failed_items_page(operation, None, None, 10)
    assert len(page.counts_by_collection) == MAX_COLLECTION_COUNTS
    assert page.collections_omitted == 7


@pytest.mark.parametrize(
    ("cursor", "problem"),
    [
        ("not a cursor", "it is not a cursor that list_failed_items gave"),
        (base64.urlsafe_b64encode(b'{"v": 1}').decode(), "it is not a cursor"),
        (base64.urlsafe_b64encode(b"[1, 2]").decode(), "it is not a cursor"),
    ],
)
def test_a_garbled_cursor_is_refused(cursor: str, problem: str) -> None:
    with pytest.raises(InvalidCursor, match=problem):
        failed_items_page(many(10), None, cursor, 5)


def test_a_cursor_from_another_operation_is_refused() -> None:
    other = many(10).model_copy(update={"id": "88888888-8888-4888-8888-888888888888"})
    cursor = failed_items_page(other, None, None, 5).next_cursor
    with pytest.raises(InvalidCursor, match="another operation, not of 77777777-7777-4777-8777-777777777777"):
        failed_items_page(many(10), None, cursor, 5)


def test_a_cursor_for_another_collection_is_refused() -> None:
    cursor = failed_items_page(many(30), "teams", None, 5).next_cursor
    assert failed_items_page(many(30), "teams", cursor, 5).offset == 5
    with pytest.raises(InvalidCursor, match="it pages collection 'teams'; pass the same collection"):
        failed_items_page(many(30), "projects", cursor, 5)


@pytest.mark.parametrize(
    ("changes", "collection", "note"),
    [
        ({"error_items": None}, None, "Knock's answer does not list failed items"),
        ({"error_items": []}, None, "Knock lists no failed items for this operation."),
        ({}, "nowhere", "No failed items in collection 'nowhere'; counts_by_collection lists"),
        ({"status": "processing"}, None, "(the job is still running: more may fail)"),
    ],
)
def test_notes_say_what_a_page_holds(changes: dict[str, Any], collection: str | None, note: str) -> None:
    assert note in failed_items_page(many(10, **changes), collection, None, 5).note


@pytest.mark.parametrize(
    ("name", "resubmit_to"),
    [
        ("users.identify", "POST /v1/users/bulk/identify"),
        ("objects.delete", "POST /v1/objects/projects/bulk/delete"),
        ("messages.unread", None),
        ("mystery.job", None),
    ],
)
def test_groups_name_the_endpoint_only_when_it_takes_ids(name: str, resubmit_to: str | None) -> None:
    assert failed_items_page(many(3, name=name), "projects", None, 5).groups[0].resubmit_to == resubmit_to


@pytest.fixture
async def client(settings: Settings, fake_knock: FakeKnock) -> AsyncIterator[Client]:
    fake_knock.operations[MANY_ID] = many().model_dump(mode="json", by_alias=True)
    async with Client(create_server(settings)) as connected:
        yield connected


@pytest.mark.anyio
async def test_the_tool_pages_12000_items_once_each_with_one_knock_call(
    client: Client, fake_knock: FakeKnock
) -> None:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        arguments: dict[str, Any] = {"id": MANY_ID} | ({"cursor": cursor} if cursor else {})
        result = await client.call_tool("list_failed_items", arguments)
        assert not result.is_error
        page = FailedItemsPage.model_validate(result.structured_content)
        seen += [item_id for group in page.groups for item_id in group.ids]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == [f"item_{n:05d}" for n in range(12_000)]
    assert len(fake_knock.requests) == 1, "a final operation is read once, then from the cache"


@pytest.mark.anyio
async def test_the_tool_refuses_a_bad_cursor_or_limit_clearly(client: Client, fake_knock: FakeKnock) -> None:
    result = await client.call_tool("list_failed_items", {"id": MANY_ID, "cursor": "abc"})
    assert result.is_error
    assert "This cursor cannot be used" in str(result.content)
    for limit in (0, 1001, True):
        result = await client.call_tool("list_failed_items", {"id": MANY_ID, "limit": limit})
        assert result.is_error
        assert "limit" in str(result.content)
    for name, huge in (("collection", "c" * 2001), ("cursor", "x" * 8001)):
        result = await client.call_tool("list_failed_items", {"id": MANY_ID, name: huge})
        assert result.is_error
        assert name in str(result.content)
        assert len(str(result.content)) < 2000
