"""What `get_bulk_operation` and the resource return: the operation with its error list bounded.

An operation can list tens of thousands of failed items; a chat client must not receive megabytes.
The list is cut to a cap the caller can raise, and the result says exactly how much was left out.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from knock_mcp.models import BulkOperation
from knock_mcp.output_schema import FlatSchemaModel

DEFAULT_MAX_ERROR_ITEMS = 50
# Bulk endpoints take at most 1,000 entities per call: one page of failures is one resubmission.
MAX_ERROR_ITEMS_LIMIT = 1000


class BoundedOperation(FlatSchemaModel):
    """A validated bulk operation whose `error_items` may be cut to the requested cap."""

    operation: BulkOperation = Field(description="The operation as Knock returned it, error_items capped.")
    error_items_total: int | None = Field(
        description="How many error_items Knock returned; null when Knock sent no list."
    )
    error_items_shown: int = Field(description="How many error_items are included here.")
    error_items_omitted: int = Field(description="How many error_items were left out to keep this short.")
    note: str | None = Field(default=None, description="How to see what was left out, when anything was.")


def bound_operation(operation: BulkOperation, max_error_items: int) -> BoundedOperation:
    """Cut `error_items` to `max_error_items`, recording what was left out."""
    items = operation.error_items
    if items is None:
        return BoundedOperation(
            operation=operation, error_items_total=None, error_items_shown=0, error_items_omitted=0
        )
    shown = items[:max_error_items]
    omitted = len(items) - len(shown)
    note = None
    if omitted:
        note = f"Showing the first {len(shown):,} of {len(items):,} failed items. " + (
            f"Call get_bulk_operation again with max_error_items={MAX_ERROR_ITEMS_LIMIT} to see "
            f"up to {MAX_ERROR_ITEMS_LIMIT:,}."
            if max_error_items < MAX_ERROR_ITEMS_LIMIT
            else f"{MAX_ERROR_ITEMS_LIMIT:,} is the most one call returns."
        )
    return BoundedOperation(
        operation=operation.model_copy(update={"error_items": shown}),
        error_items_total=len(items),
        error_items_shown=len(shown),
        error_items_omitted=omitted,
        note=note,
    )


def compact_json(view: BaseModel) -> str:
    """The model as one line of JSON with Knock's field names: the same facts in the fewest characters."""
    return view.model_dump_json(by_alias=True, exclude_none=False)
