"""What `get_bulk_operation` and the resource return: the operation with its error list bounded.

An operation can list tens of thousands of failed items; a chat client must not receive megabytes.
The list is cut to a page the caller chooses (an offset and a count, up to a limit) and to a size
budget, and the result says exactly which items it holds and how to get the next ones.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from knock_mcp.models import BulkOperation, ErrorItem
from knock_mcp.output_schema import SelfContainedSchemaModel

DEFAULT_MAX_ERROR_ITEMS = 50
# Bulk endpoints take at most 1,000 entities per call: one page of failures is one resubmission.
MAX_ERROR_ITEMS_LIMIT = 1000
# Items can carry extra keys of any size; past this many characters of items a page stops early,
# so one result stays around 100 KB (the items appear twice: structured content and text).
ERROR_ITEMS_CHAR_BUDGET = 50_000


class BoundedOperation(SelfContainedSchemaModel):
    """A validated bulk operation whose `error_items` hold one page of Knock's list."""

    operation: BulkOperation = Field(description="The operation as Knock returned it, error_items paged.")
    error_items_total: int | None = Field(
        description="How many error_items Knock returned; null when Knock sent no list."
    )
    error_items_offset: int = Field(description="Position in Knock's list of the first item shown (from 0).")
    error_items_shown: int = Field(description="How many error_items are included here.")
    error_items_omitted: int = Field(description="How many of Knock's error_items are not included here.")
    note: str | None = Field(default=None, description="How to see the items not shown, when there are any.")


def bound_operation(operation: BulkOperation, max_error_items: int, offset: int = 0) -> BoundedOperation:
    """Keep `max_error_items` items from `offset` on (fewer if the size budget runs out)."""
    items = operation.error_items
    if items is None:
        return BoundedOperation(
            operation=operation,
            error_items_total=None,
            error_items_offset=offset,
            error_items_shown=0,
            error_items_omitted=0,
        )
    page = _within_budget(items[offset : offset + max_error_items])
    budget_cut = len(page) < min(max_error_items, max(0, len(items) - offset))
    return BoundedOperation(
        operation=operation.model_copy(update={"error_items": page}),
        error_items_total=len(items),
        error_items_offset=offset,
        error_items_shown=len(page),
        error_items_omitted=len(items) - len(page),
        note=_page_note(len(items), offset, len(page), budget_cut),
    )


def _within_budget(page: list[ErrorItem]) -> list[ErrorItem]:
    kept: list[ErrorItem] = []
    used = 0
    for item in page:
        used += len(item.model_dump_json())
        if used > ERROR_ITEMS_CHAR_BUDGET and kept:
            break
        kept.append(item)
    return kept


def _page_note(total: int, offset: int, shown: int, budget_cut: bool) -> str | None:
    if shown == total:
        return None
    if offset >= total:
        return f"error_items_offset={offset:,} is past the last of the {total:,} failed items; start from 0."
    first, last = offset + 1, offset + shown
    note = f"Showing failed items {first:,}-{last:,} of {total:,}"
    if budget_cut:
        note += f" (cut short to keep this result near {2 * ERROR_ITEMS_CHAR_BUDGET // 1000} KB)"
    if last < total:
        return (
            f"{note}. Call get_bulk_operation again with error_items_offset={last} for the next ones "
            f"(max_error_items takes up to {MAX_ERROR_ITEMS_LIMIT:,})."
        )
    return f"{note}, the last ones. error_items_offset=0 starts again from the first."


def compact_json(view: BaseModel) -> str:
    """The model as one line of JSON with Knock's field names: the same facts in the fewest characters."""
    return view.model_dump_json(by_alias=True)
