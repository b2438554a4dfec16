"""`list_failed_items`: an operation's failed items, page by page, as ids ready to resubmit.

Pure functions over the model, reading the packed items without building them. A page holds at
most 1,000 ids (the most one bulk request takes) within a size budget, grouped by collection in
Knock's order, so each group can go straight into the bulk endpoint that started the job. The
cursor is opaque to the caller: base64 of a small JSON holding the position, the collection filter
and a check of the operation id, so that a cursor is never silently applied to another operation
or another filter.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from itertools import groupby
from operator import itemgetter

from pydantic import BaseModel, Field

from knock_mcp.endpoints import endpoint_for
from knock_mcp.errors import InvalidCursor
from knock_mcp.models import (
    ERROR_ITEMS_CHAR_BUDGET,
    BulkOperation,
    BulkOperationStatus,
    ErrorItems,
    parse_operation_id,
)
from knock_mcp.output_schema import SelfContainedSchemaModel

# Collections counted one by one; past this many, the rest are summed up as omitted.
MAX_COLLECTION_COUNTS = 50
_CURSOR_VERSION = 1


class CollectionCount(BaseModel):
    collection: str | None = Field(description="Object collection; null for users and tenants.")
    count: int = Field(description="Failed items Knock lists in this collection.")


class FailedIdGroup(BaseModel):
    """Consecutive failed items of one collection on this page."""

    collection: str | None = Field(description="Object collection; null for users and tenants.")
    resubmit_to: str | None = Field(
        description="The Knock bulk endpoint that takes these ids again, if the job's name tells knock-mcp."
    )
    ids: list[str] = Field(description="Ids of the failed entities, in Knock's order.")


class FailedItemsPage(SelfContainedSchemaModel):
    """One page of an operation's failed items."""

    id: str = Field(description="The bulk operation's id.")
    name: str = Field(description="Knock's name for the job, e.g. users.identify.")
    status: BulkOperationStatus
    collection: str | None = Field(description="The collection this page is limited to; null for all.")
    total: int = Field(description="Failed items Knock lists for the operation, in all collections.")
    matching: int = Field(description="Failed items in the chosen collection (equals total without one).")
    error_count: int | None = Field(
        description="Knock's count of failed rows; may exceed the items it lists."
    )
    counts_by_collection: list[CollectionCount] = Field(
        description=f"Failed items per collection, largest first, at most {MAX_COLLECTION_COUNTS}."
    )
    collections_omitted: int = Field(description="Collections left out of counts_by_collection.")
    offset: int = Field(description="Position of this page's first item among the matching items (from 0).")
    shown: int = Field(description="Ids on this page.")
    groups: list[FailedIdGroup] = Field(description="This page's ids, grouped by collection.")
    next_cursor: str | None = Field(description="Pass as cursor for the next page; null on the last page.")
    note: str = Field(description="What this page holds and what to do next.")


def failed_items_page(
    operation: BulkOperation, collection: str | None, cursor: str | None, limit: int
) -> FailedItemsPage:
    """The page of failed items that `cursor` points at (the first page without one)."""
    operation_id = str(operation.id)
    offset = 0
    if cursor is not None:
        offset, collection = _read_cursor(cursor, operation_id, collection)
    items = operation.error_items if operation.error_items is not None else ErrorItems()
    # Positions in Knock's list: the page reads ids from the packed items, building no item.
    matching = range(len(items)) if collection is None else items.positions_in(collection)
    page = _fit(
        [(items.collection(position), items.id(position)) for position in matching[offset : offset + limit]]
    )
    end = offset + len(page)
    counts = items.collection_counts().most_common()
    next_cursor = _write_cursor(operation_id, collection, end) if end < len(matching) else None
    return FailedItemsPage(
        id=operation_id,
        name=operation.name,
        status=operation.status,
        collection=collection,
        total=len(items),
        matching=len(matching),
        error_count=operation.error_count,
        counts_by_collection=[
            CollectionCount(collection=name, count=count) for name, count in counts[:MAX_COLLECTION_COUNTS]
        ],
        collections_omitted=max(0, len(counts) - MAX_COLLECTION_COUNTS),
        offset=offset,
        shown=len(page),
        groups=[
            FailedIdGroup(
                collection=name,
                resubmit_to=_resubmit_to(operation.name, name),
                ids=[item_id for _, item_id in group],
            )
            for name, group in groupby(page, key=itemgetter(0))
        ],
        next_cursor=next_cursor,
        note=_note(operation, collection, offset, len(page), len(matching)),
    )


def check_cursor(cursor: str, raw_id: str, collection: str | None) -> None:
    """Refuse a cursor that is not ours for this operation and collection, before anything is
    fetched: a bad cursor costs no request to Knock. (An invalid id is reported as such.)"""
    _read_cursor(cursor, parse_operation_id(raw_id), collection)


def _fit(candidates: list[tuple[str | None, str]]) -> list[tuple[str | None, str]]:
    """The (collection, id) pairs whose ids fit the size budget (ids may be up to 2,000 characters each)."""
    used = 0
    for count, (_, item_id) in enumerate(candidates):
        used += len(item_id) + 4
        if used > ERROR_ITEMS_CHAR_BUDGET:
            return candidates[:count]
    return candidates


def _resubmit_to(name: str, collection: str | None) -> str | None:
    endpoint = endpoint_for(name)
    return None if endpoint is None or not endpoint.takes_ids else endpoint.route(collection)


def _note(operation: BulkOperation, collection: str | None, offset: int, shown: int, matching: int) -> str:
    where = "" if collection is None else f" in collection {collection!r}"
    if operation.error_items is None:
        return (
            "Knock's answer does not list failed items for this operation, so there are none to page through."
        )
    if matching == 0:
        if collection is not None:
            return f"No failed items{where}; counts_by_collection lists the collections that have some."
        return "Knock lists no failed items for this operation."
    if offset >= matching:
        return f"The cursor is past the last of the {matching:,} failed items{where}; omit it to restart."
    text = f"Failed items {offset + 1:,}-{offset + shown:,} of {matching:,}{where}"
    if not operation.status.is_final:
        text += " (the job is still running: more may fail)"
    if offset + shown < matching:
        return f"{text}. Call list_failed_items again with cursor=next_cursor for the next ones."
    return f"{text}, the last ones."


def _check(operation_id: str) -> str:
    return hashlib.sha256(operation_id.encode()).hexdigest()[:16]


def _write_cursor(operation_id: str, collection: str | None, offset: int) -> str:
    payload = {"v": _CURSOR_VERSION, "op": _check(operation_id), "c": collection, "o": offset}
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def _read_cursor(cursor: str, operation_id: str, collection: str | None) -> tuple[int, str | None]:
    """The cursor's offset and collection; `InvalidCursor` if it is not one of ours for this
    operation and this collection."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        version, check, paged, offset = payload["v"], payload["op"], payload["c"], payload["o"]
    except (ValueError, TypeError, KeyError, binascii.Error, UnicodeError):
        raise InvalidCursor("it is not a cursor that list_failed_items gave") from None
    valid = (
        version == _CURSOR_VERSION
        and isinstance(offset, int)
        and not isinstance(offset, bool)
        and offset >= 0
        and (paged is None or isinstance(paged, str))
    )
    if not valid:
        raise InvalidCursor("it is not a cursor that list_failed_items gave")
    if check != _check(operation_id):
        raise InvalidCursor(f"it pages the failed items of another operation, not of {operation_id}")
    if collection is not None and collection != paged:
        shown = "all collections" if paged is None else f"collection {paged!r}"
        raise InvalidCursor(f"it pages {shown}; pass the same collection as before, or leave collection out")
    return offset, paged
