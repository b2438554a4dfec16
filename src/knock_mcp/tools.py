"""The four tools a model sees, as plain functions: their descriptions and work (their argument
types are in `tool_arguments`, which the command line reads without the SDK).

Each tool reads the operation through the request's `ServerState` and hands it to the pure
functions in `views`, `summary` and `failed_items`. `server` registers them (`TOOLS`) and turns
any `KnockMcpError` they raise into a tool error, so none of them catches one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent, ToolAnnotations

from knock_mcp.failed_items import FailedItemsPage, check_cursor, failed_items_page
from knock_mcp.models import MAX_ITEMS_PER_PAGE, BulkOperation
from knock_mcp.state import ServerState
from knock_mcp.summary import (
    BulkOperationSummary,
    WaitResult,
    progress_update,
    render_summary,
    summarize,
    wait_result,
)
from knock_mcp.tool_arguments import (
    MAX_WAIT_SECONDS,
    Collection,
    Cursor,
    ErrorItemsOffset,
    MaxErrorItems,
    OperationId,
    PageLimit,
    WaitTimeout,
)
from knock_mcp.views import DEFAULT_MAX_ERROR_ITEMS, BoundedOperation, bound_operation, compact_json

# Tool descriptions are product copy the model reads: what comes back, and when to use which tool.
GET_DESCRIPTION = (
    "Get the full, validated record of one Knock bulk operation: status, row counts, timestamps, "
    f"progress_path and the failed items (the first {DEFAULT_MAX_ERROR_ITEMS} unless max_error_items says "
    "otherwise; error_items_offset pages through long lists). Use it when you need exact fields or the "
    "failed items' full records; to resubmit failed items, list_failed_items gives just their ids; "
    'to answer a person ("how far along is my import?", "why did it fail?") use summarize_bulk_operation '
    "instead. Returns `operation` with Knock's fields unchanged, plus error_items_total, "
    "error_items_offset, error_items_shown, error_items_omitted and a `note` saying how to get the "
    "items left out."
)
SUMMARIZE_DESCRIPTION = (
    "Explain one Knock bulk operation in a few plain sentences: what the job is, its status, percent "
    "done, rows processed of the estimate, successes and failures, when it was queued, started and "
    "finished, how long it ran and how fast, time left while processing, a preview of failed items by "
    'collection, and the next step to take. Use it to answer people ("is my bulk delete done?", '
    '"why did last night\'s import fail?"); use get_bulk_operation when you need every field, '
    "list_failed_items for the ids of failed items, and wait_for_bulk_operation to follow a running job "
    "to its end. The same facts come back as structured content."
)
WAIT_DESCRIPTION = (
    "Wait for one Knock bulk operation to finish (completed or failed), polling Knock for you, then "
    "return the same facts as summarize_bulk_operation plus timed_out and waited_seconds. Use it when "
    'someone asks "tell me when the import is done" or before acting on a job\'s outcome, instead of '
    f"calling summarize_bulk_operation again and again. It waits at most timeout_seconds (up to "
    f"{MAX_WAIT_SECONDS}); if the job is still running then, the result is not an error: timed_out is "
    "true and next_step says to call again. Sends progress notifications (rows processed of the "
    "estimate) when the client asks for them. Repeated or concurrent waits on one operation share one "
    "poll of Knock, and a finished operation is answered without asking Knock again."
)

LIST_FAILED_DESCRIPTION = (
    "List the failed items of one Knock bulk operation as ids grouped by collection, ready to resubmit to "
    f"the bulk endpoint that started the job (resubmit_to names it when knock-mcp knows it): up to "
    f"{MAX_ITEMS_PER_PAGE:,} per page, which is also the most one bulk request takes. Returns the total, "
    "the count per collection, and next_cursor: pass it back as cursor for the next page until it is "
    "null. Use it to retry failures; use get_bulk_operation to see the failed items' full records."
)

READ_ONLY = ToolAnnotations(
    read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=True
)


async def get_bulk_operation(
    id: OperationId,
    ctx: Context[ServerState],
    max_error_items: MaxErrorItems = DEFAULT_MAX_ERROR_ITEMS,
    error_items_offset: ErrorItemsOffset = 0,
) -> Annotated[CallToolResult, BoundedOperation]:
    operation = await _state(ctx).fetch(id)
    view = bound_operation(operation, max_error_items, error_items_offset)
    return _result(compact_json(view), view.model_dump(mode="json", by_alias=True))


async def summarize_bulk_operation(
    id: OperationId, ctx: Context[ServerState]
) -> Annotated[CallToolResult, BulkOperationSummary]:
    state = _state(ctx)
    summary = summarize(await state.fetch(id), state.now())
    return _result(render_summary(summary), summary.model_dump(mode="json"))


async def wait_for_bulk_operation(
    id: OperationId, ctx: Context[ServerState], timeout_seconds: WaitTimeout = MAX_WAIT_SECONDS
) -> Annotated[CallToolResult, WaitResult]:
    """Follow the operation through the shared poll loop, reporting progress as rows grow."""
    state = _state(ctx)
    started = time.monotonic()
    last_progress: int | None = None

    async def report(operation: BulkOperation) -> None:
        # The spec wants progress to grow with every notification: send one only when rows have
        # grown (the first one always goes, even at 0 rows).
        nonlocal last_progress
        progress, total, message = progress_update(summarize(operation, state.now()))
        if last_progress is None or progress > last_progress:
            last_progress = progress
            await ctx.report_progress(progress, total, message)

    # A call never outlasts KNOCK_MCP_CALL_DEADLINE, however long the caller asked to wait.
    wait_seconds = min(timeout_seconds, state.call_deadline)
    outcome = await state.tracker.wait(id, state.api_key(), wait_seconds, report)
    result = wait_result(
        summarize(outcome.operation, state.now()), outcome.timed_out, time.monotonic() - started
    )
    return _result(render_summary(result), result.model_dump(mode="json"))


async def list_failed_items(
    id: OperationId,
    ctx: Context[ServerState],
    collection: Collection = None,
    cursor: Cursor = None,
    limit: PageLimit = MAX_ITEMS_PER_PAGE,
) -> Annotated[CallToolResult, FailedItemsPage]:
    if cursor is not None:
        # A cursor that is not ours for this operation and collection is refused before Knock is asked.
        check_cursor(cursor, id, collection)
    page = failed_items_page(await _state(ctx).fetch(id), collection, cursor, limit)
    return _result(compact_json(page), page.model_dump(mode="json"))


def _state(ctx: Context[ServerState]) -> ServerState:
    return ctx.request_context.lifespan_context


def _result(text: str, structured: dict[str, Any]) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], structured_content=structured)


@dataclass(frozen=True)
class ToolDefinition:
    """A tool as the server registers it: every tool is read-only (`READ_ONLY`)."""

    function: Callable[..., Any]
    title: str
    description: str


# In the order clients list them.
TOOLS = (
    ToolDefinition(get_bulk_operation, "Get bulk operation", GET_DESCRIPTION),
    ToolDefinition(summarize_bulk_operation, "Summarize bulk operation", SUMMARIZE_DESCRIPTION),
    ToolDefinition(wait_for_bulk_operation, "Wait for bulk operation", WAIT_DESCRIPTION),
    ToolDefinition(list_failed_items, "List failed items", LIST_FAILED_DESCRIPTION),
)
