"""What the model sees: the MCP server with its tools, prompt and resource, and the one place
errors become MCP errors.

The tools are plain functions in `tools`; this module registers them, and its prompt and resource
read operations the same way (`ServerState.fetch`). Every surface turns a `KnockMcpError` into its
own kind of MCP error through `_translating_errors`, the one translation.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

import httpx2
from mcp import MCPError
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.tools import Tool
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import SecretStr

from knock_mcp import __version__
from knock_mcp.argument_check import ArgumentCheck
from knock_mcp.cache import FinalOperationCache
from knock_mcp.client_log import ClientLog
from knock_mcp.completions import serve_completions
from knock_mcp.errors import ConfigurationError, InvalidOperationId, KnockMcpError, OperationNotFound
from knock_mcp.fleet import Fleet, LocalFleet
from knock_mcp.knock_client import KnockClient, Report, build_http_client
from knock_mcp.live_updates import ListenStreamBus, follow_listened_operations
from knock_mcp.logs import LogLevel
from knock_mcp.models import BulkOperation, ErrorItems
from knock_mcp.poll_policy import PollPolicy
from knock_mcp.resubmission import resubmission_prompt
from knock_mcp.settings import FleetSettings, Settings
from knock_mcp.state import KeySource, ServerState, configured_key
from knock_mcp.subscriptions import serve_resource_subscriptions
from knock_mcp.summary import summarize
from knock_mcp.tool_arguments import OperationId
from knock_mcp.tools import READ_ONLY, TOOLS
from knock_mcp.tracker import Fetch, OperationTracker
from knock_mcp.views import DEFAULT_MAX_ERROR_ITEMS, bound_operation, compact_json

logger = logging.getLogger(__name__)

UNEXPECTED_FAILURE = (
    "knock-mcp failed unexpectedly; this is a bug in knock-mcp, not a problem with your id or key. "
    "Try again; if it repeats, report it to the knock-mcp maintainers with the server's log (stderr)."
)

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

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class _ErrorForm:
    """How one MCP surface reports a failure: one error for an id that names no operation (the
    caller's to fix), one for everything else."""

    not_found: Callable[[str], Exception]
    failed: Callable[[str], Exception]


# A tool's error is a result the model reads; the SDK prefixes it with the tool's name.
_TOOL_ERRORS = _ErrorForm(not_found=ToolError, failed=ToolError)
# A prompt has no error result: a JSON-RPC error, whose code says whose mistake it was.
_PROMPT_ERRORS = _ErrorForm(
    not_found=lambda text: MCPError(INVALID_PARAMS, text), failed=lambda text: MCPError(INTERNAL_ERROR, text)
)
_RESOURCE_ERRORS = _ErrorForm(not_found=ResourceNotFoundError, failed=ResourceError)


def _translating_errors(
    form: _ErrorForm,
) -> Callable[[Callable[_P, Awaitable[_R]]], Callable[_P, Awaitable[_R]]]:
    """Wraps a handler that takes a `Context`: a `KnockMcpError` becomes `form`'s error with the
    error's text (this request's key redacted), anything else is logged and reported as a bug."""

    def wrap(handler: Callable[_P, Awaitable[_R]]) -> Callable[_P, Awaitable[_R]]:
        # functools.wraps keeps the signature and annotations the SDK reads the schema from.
        @functools.wraps(handler)
        async def translated(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            ctx = next(value for value in kwargs.values() if isinstance(value, Context))
            state: ServerState = ctx.request_context.lifespan_context
            try:
                return await handler(*args, **kwargs)
            except (InvalidOperationId, OperationNotFound) as error:
                raise form.not_found(state.public_text(error)) from None
            except KnockMcpError as error:
                raise form.failed(state.public_text(error)) from None
            except Exception:
                logger.exception("knock-mcp failed unexpectedly")
                raise form.failed(UNEXPECTED_FAILURE) from None

        return translated

    return wrap


async def retry_failed_items(id: OperationId, ctx: Context[ServerState]) -> str:
    state = ctx.request_context.lifespan_context
    operation = await state.fetch(id)
    collections = (operation.error_items or ErrorItems()).collection_counts().most_common()
    return resubmission_prompt(summarize(operation, state.now()), collections)


async def bulk_operation_resource(id: str, ctx: Context[ServerState]) -> str:
    state = ctx.request_context.lifespan_context
    return compact_json(bound_operation(await state.fetch(id), DEFAULT_MAX_ERROR_ITEMS))


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
    error_text: Callable[[KnockMcpError], str] = str,
    fleet: Fleet | None = None,
) -> MCPServer[ServerState]:
    """Build the server. `transport` replaces the network (the demo and tests use it); `api_key`
    says where each request's Knock key comes from (default: the configured KNOCK_API_KEY);
    `poll_policy` sets how waits poll (tests make it quick). `cache_final_operations=False` is for
    the demo, whose live operation starts over every few minutes, as no real operation does;
    `error_text` words an error for the caller (the demo speaks of its own ids, not of keys).
    `fleet` is what this process shares with others (default: as KNOCK_MCP_REDIS_URL says)."""
    sharing = fleet if fleet is not None else _configured_fleet(config)

    def tracker(fetch: Fetch) -> OperationTracker:
        cache = FinalOperationCache() if cache_final_operations else FinalOperationCache(max_entries=0)
        return OperationTracker(fetch, policy=poll_policy, cache=cache, fleet=sharing)

    client_log = ClientLog()
    server: MCPServer[ServerState] = MCPServer(
        "knock-mcp",
        title="Knock bulk operations",
        version=__version__,
        instructions=INSTRUCTIONS
        if extra_instructions is None
        else f"{INSTRUCTIONS}\n\n{extra_instructions}",
        lifespan=_lifespan(
            config,
            transport,
            tracker,
            api_key or configured_key(config),
            now,
            report=client_log.publish,
            error_text=error_text,
            fleet=sharing,
        ),
        log_level=log_level,
        subscriptions=ListenStreamBus(),
        middleware=[follow_listened_operations],
        tools=list(_offered_tools()),
    )
    _register_prompt_and_resource(server)
    # Every call's arguments are checked against the tools' declared types before a tool runs.
    server.middleware.append(ArgumentCheck(server, [tool.function for tool in TOOLS]))
    serve_resource_subscriptions(server)
    serve_completions(server)
    client_log.serve(server)
    return server


@functools.cache
def _offered_tools() -> tuple[Tool, ...]:
    """The tools, built once per process and offered by every server it builds: building them (their
    argument models and JSON schemas) is ~25 ms CPU, and a `Tool` holds nothing of one server.
    Each is wrapped so that a `KnockMcpError` reaches the caller as a tool error."""
    return tuple(
        Tool.from_function(
            _translating_errors(_TOOL_ERRORS)(tool.function),
            title=tool.title,
            description=tool.description,
            annotations=READ_ONLY,
        )
        for tool in TOOLS
    )


def _register_prompt_and_resource(server: MCPServer[ServerState]) -> None:
    """The prompt and the resource, each wrapped so that a `KnockMcpError` reaches the caller in the
    form its kind of handler answers with."""
    server.prompt(
        title="Retry failed items",
        description=(
            "Plan a retry of a bulk operation's failed items: the operation's facts, the Knock bulk "
            "endpoint that matches its name, which ids to resubmit, in batches of at most 1,000, one "
            "request per second."
        ),
    )(_translating_errors(_PROMPT_ERRORS)(retry_failed_items))
    server.resource(
        "knock://bulk_operations/{id}",
        name="bulk_operation",
        title="Knock bulk operation",
        description=(
            "One Knock bulk operation as validated JSON, the same as get_bulk_operation returns with "
            f"its default cap of {DEFAULT_MAX_ERROR_ITEMS} failed items. {{id}} is the operation's UUID."
        ),
        mime_type="application/json",
    )(_translating_errors(_RESOURCE_ERRORS)(bulk_operation_resource))


def build_fleet(settings: FleetSettings | None) -> Fleet:
    """The fleet `settings` describe: Redis-backed sharing, or this process alone."""
    if settings is None:
        return LocalFleet()
    # Imported here so that a process without KNOCK_MCP_REDIS_URL never loads the Redis client.
    from knock_mcp.redis_fleet import RedisFleet  # noqa: PLC0415

    return RedisFleet(settings)


def _configured_fleet(config: Settings | ConfigurationError) -> Fleet:
    return build_fleet(config.fleet) if isinstance(config, Settings) else LocalFleet()


def _lifespan(
    config: Settings | ConfigurationError,
    transport: httpx2.AsyncBaseTransport | None,
    tracker: Callable[[Fetch], OperationTracker],
    key_source: KeySource,
    now: Callable[[], datetime],
    *,
    report: Report,
    error_text: Callable[[KnockMcpError], str],
    fleet: Fleet,
) -> Callable[[MCPServer[ServerState]], AbstractAsyncContextManager[ServerState]]:
    """One HTTP client, one tracker and one place in the fleet for the server's life; with a
    configuration error, a tracker whose every read reports it, so each call explains what to fix.
    `report` hears of the Knock client's retries and give-ups (for the clients' log messages)."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[ServerState]) -> AsyncIterator[ServerState]:
        if isinstance(config, ConfigurationError):

            async def refuse(operation_id: str, key: SecretStr | None) -> BulkOperation:
                raise config

            async with tracker(refuse) as refusing:
                yield ServerState(tracker=refusing, api_key=key_source, now=now)
            return
        async with (
            fleet,
            build_http_client(config, transport) as http,
            tracker(KnockClient(http, config, report=report, gate=fleet.gate).get_bulk_operation) as reading,
        ):
            deadline = config.call_deadline
            yield ServerState(
                tracker=reading, api_key=key_source, now=now, call_deadline=deadline, error_text=error_text
            )

    return lifespan
