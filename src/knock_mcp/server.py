"""What the model sees: the MCP server, its tools, prompt and resource, and the one place errors
become MCP errors.

Tools read through the shared `OperationTracker` (cache, shared requests and poll loops over the
`KnockClient`), then hand the operation to the pure functions in `views`, `summary`,
`failed_items` and `retry`. Besides this module, `live_updates` (listen streams), `http` (the
transport) and `cli` (its client, for `call`) touch `mcp`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import httpx2
from mcp import MCPError
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS, CallToolResult, TextContent, ToolAnnotations
from pydantic import BeforeValidator, Field, SecretStr

from knock_mcp import __version__
from knock_mcp.errors import ConfigurationError, InvalidOperationId, KnockMcpError, OperationNotFound
from knock_mcp.failed_items import FailedItemsPage, check_cursor, failed_items_page
from knock_mcp.knock_client import KnockClient, build_http_client
from knock_mcp.live_updates import ListenStreamBus, follow_listened_operations
from knock_mcp.models import MAX_ITEMS_PER_PAGE, MAX_TEXT_CHARS, BulkOperation
from knock_mcp.retry import retry_prompt
from knock_mcp.settings import DEFAULT_CALL_DEADLINE, Settings
from knock_mcp.summary import (
    BulkOperationSummary,
    WaitResult,
    progress_update,
    render_summary,
    summarize,
    wait_result,
)
from knock_mcp.tracker import Fetch, FinalOperationCache, OperationTracker, PollPolicy
from knock_mcp.views import (
    DEFAULT_MAX_ERROR_ITEMS,
    BoundedOperation,
    bound_operation,
    compact_json,
)

logger = logging.getLogger(__name__)

UNEXPECTED_FAILURE = (
    "knock-mcp failed unexpectedly; this is a bug in knock-mcp, not a problem with your id or key. "
    "Try again; if it repeats, report it to the knock-mcp maintainers with the server's log (stderr)."
)

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

INSTRUCTIONS = """\
knock-mcp reads Knock bulk operations: the asynchronous jobs that Knock's bulk endpoints (bulk \
identify, delete or set preferences of users, bulk set objects, tenants, schedules, channel \
message status) start and return a handle for. Knock has no endpoint that lists operations: ask the \
user for the operation id (a UUID in the bulk endpoint's response) if you do not have it. \
Use summarize_bulk_operation to answer people; use get_bulk_operation for exact fields; use \
wait_for_bulk_operation to follow a running job to its end instead of asking again and again; use \
list_failed_items for the ids of failed items, grouped by collection, to resubmit them (the prompt \
retry_failed_items plans such a retry). The resource knock://bulk_operations/{id} holds the same \
JSON as get_bulk_operation."""

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
# Chat clients commonly abandon a tool call after 60 s (the MCP TypeScript SDK's default request
# timeout). A wait of at most 45 s leaves time for the last read and the answer to travel back; a
# caller who needs longer calls again, and the shared poll loop makes that free.
MAX_WAIT_SECONDS = 45
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

OperationId = Annotated[
    str,
    Field(
        description=(
            "The bulk operation's id, a UUID such as 123e4567-e89b-12d3-a456-426614174000: the `id` "
            "in the response of the Knock bulk endpoint that started the job (e.g. POST "
            "/v1/users/bulk/identify), or the last part of its progress_path."
        ),
        json_schema_extra={"format": "uuid"},
    ),
]


def _whole_number(value: object) -> object:
    """JSON true/false would pass as 1/0; a number sent as a string ("50") is fine."""
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true or false")
    return value


# The validator comes after Field so that it wraps the constrained integer: in the other order
# pydantic publishes the range as "ge"/"le", which JSON Schema (and so the model) does not know.
MaxErrorItems = Annotated[
    int,
    Field(
        ge=0,
        le=MAX_ITEMS_PER_PAGE,
        description=(
            f"How many failed items to include, from 0 to {MAX_ITEMS_PER_PAGE:,} (default "
            f"{DEFAULT_MAX_ERROR_ITEMS}). Raise it when you need the failed ids, e.g. to resubmit them."
        ),
    ),
    BeforeValidator(_whole_number),
]
ErrorItemsOffset = Annotated[
    int,
    Field(
        ge=0,
        description=(
            "Position in Knock's list of failed items to start from (default 0, the first). To page "
            "through a long list, pass the offset that the previous result's `note` gives."
        ),
    ),
    BeforeValidator(_whole_number),
]


def _whole_or_fractional_seconds(value: object) -> object:
    """JSON true/false would pass as 1/0 seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a number of seconds, not true or false")
    return value


WaitTimeout = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description=(
            f"How long to wait for the job to finish, in seconds, from 0 to {MAX_WAIT_SECONDS} (default "
            f"{MAX_WAIT_SECONDS}). 0 answers at once with the current state."
        ),
    ),
    BeforeValidator(_whole_or_fractional_seconds),
]


# No collection Knock reports is longer than the model allows; a longer filter could match nothing,
# and would be echoed back (in `collection` and the note) at whatever size it came.
Collection = Annotated[
    str | None,
    Field(
        max_length=MAX_TEXT_CHARS,
        description=(
            "Only this object collection, e.g. 'projects' (from counts_by_collection); leave it out for all. "
            "Users and tenants have no collection."
        ),
    ),
]
Cursor = Annotated[
    str | None,
    Field(
        # A cursor holds an offset and a collection name (at most 2,000 characters) in base64.
        max_length=4 * MAX_TEXT_CHARS,
        description="The next_cursor of the previous result, unchanged; leave it out for the first page.",
    ),
]
PageLimit = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_ITEMS_PER_PAGE,
        description=(
            f"How many ids per page, from 1 to {MAX_ITEMS_PER_PAGE:,} (default {MAX_ITEMS_PER_PAGE:,}, the "
            "most one bulk request takes)."
        ),
    ),
    BeforeValidator(_whole_number),
]


KeySource = Callable[[], SecretStr | None]
"""Gives the Knock key of the request being served: the server's own, or (over HTTP with
`--auth knock-key`) the caller's. It is read afresh in each request, never stored across them."""


def configured_key(config: Settings | ConfigurationError) -> KeySource:
    """The server's own key, from KNOCK_API_KEY, for every request."""
    key = config.api_key if isinstance(config, Settings) else None
    return lambda: key


@dataclass(frozen=True)
class ServerState:
    """What every request shares: the tracker that reads operations from Knock (cached, shared
    per key and id), where keys come from, the clock, and how long one call may last."""

    tracker: OperationTracker
    api_key: KeySource
    now: Callable[[], datetime]
    call_deadline: float = DEFAULT_CALL_DEADLINE

    async def fetch(self, operation_id: str) -> BulkOperation:
        return await self.tracker.read(operation_id, self.api_key())

    def public_text(self, error: KnockMcpError) -> str:
        """The error's message, with this request's key removed should any path ever have put it there."""
        text = str(error)
        key = self.api_key()
        return text.replace(key.get_secret_value(), "[redacted]") if key else text


async def answer(
    ctx: Context[ServerState],
    operation_id: str,
    respond: Callable[[BulkOperation, ServerState], CallToolResult],
) -> CallToolResult:
    """Fetch the operation and build the result; every failure becomes a clear tool error."""

    async def produce(state: ServerState) -> CallToolResult:
        return respond(await state.fetch(operation_id), state)

    return await answer_with(ctx, produce)


async def answer_with(
    ctx: Context[ServerState], produce: Callable[[ServerState], Awaitable[CallToolResult]]
) -> CallToolResult:
    """Run a tool's work; every failure becomes a clear tool error."""
    state = ctx.request_context.lifespan_context
    try:
        return await produce(state)
    except KnockMcpError as error:
        raise ToolError(state.public_text(error)) from None
    except Exception:
        logger.exception("knock-mcp failed unexpectedly")
        raise ToolError(UNEXPECTED_FAILURE) from None


async def wait_for(
    state: ServerState, ctx: Context[ServerState], operation_id: str, timeout_seconds: float
) -> CallToolResult:
    """Follow the operation through the shared poll loop, reporting progress as rows grow."""
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
    outcome = await state.tracker.wait(operation_id, state.api_key(), wait_seconds, report)
    result = wait_result(
        summarize(outcome.operation, state.now()), outcome.timed_out, time.monotonic() - started
    )
    return CallToolResult(
        content=[TextContent(type="text", text=render_summary(result))],
        structured_content=result.model_dump(mode="json"),
    )


def create_server(
    config: Settings | ConfigurationError,
    *,
    transport: httpx2.AsyncBaseTransport | None = None,
    api_key: KeySource | None = None,
    extra_instructions: str | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    log_level: LogLevel = "WARNING",
    poll_policy: PollPolicy | None = None,
    cache_final_operations: bool = True,
) -> MCPServer[ServerState]:
    """Build the server. `transport` replaces the network (the demo and tests use it); `api_key`
    says where each request's Knock key comes from (default: the configured KNOCK_API_KEY);
    `poll_policy` sets how waits poll (tests make it quick). `cache_final_operations=False` is for
    the demo, whose live operation starts over every few minutes, as no real operation does."""
    key_source = api_key or configured_key(config)

    def tracker(fetch: Fetch) -> OperationTracker:
        cache = FinalOperationCache() if cache_final_operations else FinalOperationCache(max_entries=0)
        return OperationTracker(fetch, policy=poll_policy, cache=cache)

    @asynccontextmanager
    async def lifespan(_: MCPServer[ServerState]) -> AsyncIterator[ServerState]:
        if isinstance(config, ConfigurationError):

            async def refuse(operation_id: str, key: SecretStr | None) -> BulkOperation:
                raise config

            async with tracker(refuse) as refusing:
                yield ServerState(tracker=refusing, api_key=key_source, now=now)
            return
        async with (
            build_http_client(config, transport) as http,
            tracker(KnockClient(http, config).get_bulk_operation) as reading,
        ):
            deadline = config.call_deadline
            yield ServerState(tracker=reading, api_key=key_source, now=now, call_deadline=deadline)

    instructions = INSTRUCTIONS if extra_instructions is None else f"{INSTRUCTIONS}\n\n{extra_instructions}"
    server: MCPServer[ServerState] = MCPServer(
        "knock-mcp",
        title="Knock bulk operations",
        version=__version__,
        instructions=instructions,
        lifespan=lifespan,
        log_level=log_level,
        subscriptions=ListenStreamBus(),
        middleware=[follow_listened_operations],
    )

    @server.tool(title="Get bulk operation", description=GET_DESCRIPTION, annotations=READ_ONLY)
    async def get_bulk_operation(
        id: OperationId,
        ctx: Context[ServerState],
        max_error_items: MaxErrorItems = DEFAULT_MAX_ERROR_ITEMS,
        error_items_offset: ErrorItemsOffset = 0,
    ) -> Annotated[CallToolResult, BoundedOperation]:

        def respond(operation: BulkOperation, _: ServerState) -> CallToolResult:
            view = bound_operation(operation, max_error_items, error_items_offset)
            return CallToolResult(
                content=[TextContent(type="text", text=compact_json(view))],
                structured_content=view.model_dump(mode="json", by_alias=True),
            )

        return await answer(ctx, id, respond)

    @server.tool(title="Summarize bulk operation", description=SUMMARIZE_DESCRIPTION, annotations=READ_ONLY)
    async def summarize_bulk_operation(
        id: OperationId, ctx: Context[ServerState]
    ) -> Annotated[CallToolResult, BulkOperationSummary]:

        def respond(operation: BulkOperation, state: ServerState) -> CallToolResult:
            summary = summarize(operation, state.now())
            return CallToolResult(
                content=[TextContent(type="text", text=render_summary(summary))],
                structured_content=summary.model_dump(mode="json"),
            )

        return await answer(ctx, id, respond)

    @server.tool(title="Wait for bulk operation", description=WAIT_DESCRIPTION, annotations=READ_ONLY)
    async def wait_for_bulk_operation(
        id: OperationId, ctx: Context[ServerState], timeout_seconds: WaitTimeout = MAX_WAIT_SECONDS
    ) -> Annotated[CallToolResult, WaitResult]:
        return await answer_with(ctx, lambda state: wait_for(state, ctx, id, timeout_seconds))

    @server.tool(title="List failed items", description=LIST_FAILED_DESCRIPTION, annotations=READ_ONLY)
    async def list_failed_items(
        id: OperationId,
        ctx: Context[ServerState],
        collection: Collection = None,
        cursor: Cursor = None,
        limit: PageLimit = MAX_ITEMS_PER_PAGE,
    ) -> Annotated[CallToolResult, FailedItemsPage]:

        def respond(operation: BulkOperation, _: ServerState) -> CallToolResult:
            page = failed_items_page(operation, collection, cursor, limit)
            return CallToolResult(
                content=[TextContent(type="text", text=compact_json(page))],
                structured_content=page.model_dump(mode="json"),
            )

        _refuse_a_bad_cursor(ctx.request_context.lifespan_context, cursor, id, collection)
        return await answer(ctx, id, respond)

    @server.prompt(
        title="Retry failed items",
        description=(
            "Plan a retry of a bulk operation's failed items: the operation's facts, the Knock bulk "
            "endpoint that matches its name, which ids to resubmit, in batches of at most 1,000, one "
            "request per second."
        ),
    )
    async def retry_failed_items(id: OperationId, ctx: Context[ServerState]) -> str:
        state = ctx.request_context.lifespan_context
        try:
            operation = await state.fetch(id)
        except (InvalidOperationId, OperationNotFound) as error:
            raise MCPError(INVALID_PARAMS, state.public_text(error)) from None
        except KnockMcpError as error:
            raise MCPError(INTERNAL_ERROR, state.public_text(error)) from None
        except Exception:
            logger.exception("knock-mcp failed unexpectedly")
            raise MCPError(INTERNAL_ERROR, UNEXPECTED_FAILURE) from None
        collections = Counter(item.collection for item in operation.error_items or []).most_common()
        return retry_prompt(summarize(operation, state.now()), collections)

    @server.resource(
        "knock://bulk_operations/{id}",
        name="bulk_operation",
        title="Knock bulk operation",
        description=(
            "One Knock bulk operation as validated JSON, the same as get_bulk_operation returns with "
            f"its default cap of {DEFAULT_MAX_ERROR_ITEMS} failed items. {{id}} is the operation's UUID."
        ),
        mime_type="application/json",
    )
    async def bulk_operation_resource(id: str, ctx: Context[ServerState]) -> str:
        state = ctx.request_context.lifespan_context
        try:
            return compact_json(bound_operation(await state.fetch(id), DEFAULT_MAX_ERROR_ITEMS))
        except (InvalidOperationId, OperationNotFound) as error:
            raise ResourceNotFoundError(state.public_text(error)) from None
        except KnockMcpError as error:
            raise ResourceError(state.public_text(error)) from None
        except Exception:
            logger.exception("knock-mcp failed unexpectedly")
            raise ResourceError(UNEXPECTED_FAILURE) from None

    return _refusing_unknown_arguments(server)


def _refusing_unknown_arguments(server: MCPServer[ServerState]) -> MCPServer[ServerState]:
    server.middleware.append(_ArgumentNamesCheck(server))
    return server


def _refuse_a_bad_cursor(
    state: ServerState, cursor: str | None, operation_id: str, collection: str | None
) -> None:
    """A cursor that is not ours for this operation and collection is refused before Knock is asked."""
    if cursor is None:
        return
    try:
        check_cursor(cursor, operation_id, collection)
    except KnockMcpError as error:
        raise ToolError(state.public_text(error)) from None


class _ArgumentNamesCheck:
    """Refuses a tool call whose argument names the tool does not take, or that leaves out one it needs.

    The SDK drops unknown arguments silently, so a misspelt `max_error_item=500` would quietly
    give the default 50 items. Refusing it, with the tool's real parameter names, lets the caller
    correct itself; the call ends before any request to Knock. Types and ranges are left to the
    SDK's validation, whose message names the field and what it should be.
    """

    def __init__(self, server: MCPServer[ServerState]) -> None:
        self._server = server
        self._parameters: dict[str, tuple[list[str], set[str]]] | None = None

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params
        if ctx.method != "tools/call" or params is None:
            return await call_next(ctx)
        name, arguments = params.get("name"), params.get("arguments")
        if arguments is None:
            arguments = {}
        parameters = (await self._tool_parameters()).get(name) if isinstance(name, str) else None
        if parameters is None or not isinstance(arguments, Mapping):
            return await call_next(ctx)
        accepted, required = parameters
        unknown = [argument for argument in arguments if argument not in accepted]
        missing = [
            parameter for parameter in accepted if parameter in required and parameter not in arguments
        ]
        if not unknown and not missing:
            return await call_next(ctx)
        listed = ", ".join(
            f"{parameter} (required)" if parameter in required else parameter for parameter in accepted
        )
        problems = []
        if unknown:
            problems.append(f"it takes no argument {_names(unknown)}: check the spelling")
        if missing:
            problems.append(f"it needs {_names(missing)}")
        message = f"Error executing tool {name}: {'; '.join(problems)}. Its arguments are: {listed}."
        return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)

    async def _tool_parameters(self) -> dict[str, tuple[list[str], set[str]]]:
        """Each tool's parameter names and required ones, from the input schemas it publishes."""
        if self._parameters is None:
            self._parameters = {
                tool.name: (
                    list(tool.input_schema.get("properties", {})),
                    set(tool.input_schema.get("required", [])),
                )
                for tool in await self._server.list_tools()
            }
        return self._parameters


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(name if len(name) <= 40 else name[:37] + "...") for name in names[:5])
    return shown + (f" and {len(names) - 5:,} more" if len(names) > 5 else "")
