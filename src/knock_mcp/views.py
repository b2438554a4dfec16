"""What `get_bulk_operation` and the resource return: the operation with its error list bounded.

An operation can list tens of thousands of failed items, and items and the operation may carry
fields Knock adds later, of any size; a chat client must not receive megabytes. So a result holds
one page of items (an offset and a count, up to a limit), within a size budget, and leaves out
oversized fields it does not know; the result says exactly what it left out and how to get the rest.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, TypeAdapter

from knock_mcp.models import ERROR_ITEMS_CHAR_BUDGET, MAX_ITEMS_PER_PAGE, BulkOperation, ErrorItem, ErrorItems
from knock_mcp.output_schema import SelfContainedSchemaModel

DEFAULT_MAX_ERROR_ITEMS = 50
# A field Knock adds later, on the operation or on an item, is shown only up to this size.
MAX_EXTRA_FIELD_CHARS = 5000

_ANY = TypeAdapter[object](object)


class BoundedOperation(SelfContainedSchemaModel):
    """A validated bulk operation whose `error_items` hold one page of Knock's list."""

    operation: BulkOperation = Field(description="The operation as Knock returned it, error_items paged.")
    error_items_total: int | None = Field(
        description="How many error_items Knock returned; null when Knock sent no list."
    )
    error_items_offset: int = Field(description="Position in Knock's list of the first item shown (from 0).")
    error_items_shown: int = Field(description="How many error_items are included here.")
    error_items_omitted: int = Field(description="How many of Knock's error_items are not included here.")
    note: str | None = Field(default=None, description="What was left out and how to get it, if anything.")


def bound_operation(operation: BulkOperation, max_error_items: int, offset: int = 0) -> BoundedOperation:
    """Keep `max_error_items` items from `offset` on (fewer if the size budget runs out)."""
    operation, dropped = _without_oversized_extras(operation)
    items = operation.error_items
    if items is None:
        return BoundedOperation(
            operation=operation,
            error_items_total=None,
            error_items_offset=offset,
            error_items_shown=0,
            error_items_omitted=0,
            note=_dropped_note(dropped),
        )
    page, slimmed = _page(items, range(len(items))[offset : offset + max_error_items])
    budget_cut = len(page) < min(max_error_items, max(0, len(items) - offset))
    notes = [_page_note(len(items), offset, len(page), max_error_items, budget_cut), _dropped_note(dropped)]
    if slimmed:
        notes.append(
            f"{slimmed:,} item{'' if slimmed == 1 else 's'} carried extra fields over "
            f"{MAX_EXTRA_FIELD_CHARS:,} characters and show only id and collection."
        )
    return BoundedOperation(
        operation=operation.model_copy(update={"error_items": page}),
        error_items_total=len(items),
        error_items_offset=offset,
        error_items_shown=len(page),
        error_items_omitted=len(items) - len(page),
        note=" ".join(note for note in notes if note) or None,
    )


def _page(items: ErrorItems, candidates: range) -> tuple[ErrorItems, int]:
    """The candidates that fit the budget, and how many of them were slimmed to id and collection.
    Sized from the packed items: an item is built only if it has to be slimmed."""
    slim: dict[int, ErrorItem] = {}
    used, end = 0, candidates.start
    for position in candidates:
        size = items.dumped_chars(position)
        if size > MAX_EXTRA_FIELD_CHARS:
            slim[position] = ErrorItem(id=items.id(position), collection=items.collection(position))
            size = len(slim[position].model_dump_json())
        used += size
        if used > ERROR_ITEMS_CHAR_BUDGET:
            slim.pop(position, None)
            break
        end = position + 1
    if not slim:
        return items.part(candidates.start, end), 0
    kept = range(candidates.start, end)
    return ErrorItems(slim[position] if position in slim else items[position] for position in kept), len(slim)


def _without_oversized_extras(operation: BulkOperation) -> tuple[BulkOperation, list[str]]:
    extras = operation.model_extra or {}
    dropped = [name for name, value in extras.items() if len(_ANY.dump_json(value)) > MAX_EXTRA_FIELD_CHARS]
    if not dropped:
        return operation, []
    slim = operation.model_copy()
    slim.__pydantic_extra__ = {name: value for name, value in extras.items() if name not in dropped}
    return slim, dropped


def _page_note(total: int, offset: int, shown: int, limit: int, budget_cut: bool) -> str | None:
    if shown == total:
        return None
    if offset >= total:
        return f"error_items_offset={offset:,} is past the last of the {total:,} failed items; start from 0."
    if shown == 0:
        return (
            f"No failed items included (max_error_items={limit}); pass max_error_items from 1 to "
            f"{MAX_ITEMS_PER_PAGE:,} to see some of the {total:,}."
        )
    first, last = offset + 1, offset + shown
    note = f"Showing failed items {first:,}-{last:,} of {total:,}"
    if budget_cut:
        note += f" (cut short to keep this result near {2 * ERROR_ITEMS_CHAR_BUDGET // 1000} KB)"
    if last < total:
        raise_limit = "" if budget_cut else f" (max_error_items takes up to {MAX_ITEMS_PER_PAGE:,})"
        return (
            f"{note}. Call get_bulk_operation again with error_items_offset={last} for the next "
            f"ones{raise_limit}; to resubmit failed items, list_failed_items gives just their ids, by "
            "collection."
        )
    return f"{note}, the last ones. error_items_offset=0 starts again from the first."


def _dropped_note(dropped: list[str]) -> str | None:
    if not dropped:
        return None
    names = ", ".join(repr(name[:40]) for name in dropped[:5])
    more = f" and {len(dropped) - 5:,} more" if len(dropped) > 5 else ""
    plural = "s" if len(dropped) > 1 else ""
    return f"Left out field{plural} {names}{more}: each over {MAX_EXTRA_FIELD_CHARS:,} characters."


def compact_json(view: BaseModel) -> str:
    """The model as one line of JSON with Knock's field names: the same facts in the fewest characters."""
    return view.model_dump_json(by_alias=True)
