"""Live updates for clients of protocol 2025-11-25: `resources/subscribe` and `resources/unsubscribe`.

Most clients in use today (those built on the MCP TypeScript SDK: Claude Desktop, Cursor, VS Code,
the MCP Inspector) speak 2025-11-25, which has no `subscriptions/listen`. Such a client subscribes
to a URI once, and the server sends `notifications/resources/updated` on the connection whenever the
resource changes. That needs a connection on which the server may speak first. stdio is one. On
knock-mcp's stateless HTTP every request is a connection of its own, gone once answered, so nothing
could carry an update: there a subscription is refused with the way to follow a job instead
(`wait_for_bulk_operation`, or `subscriptions/listen` in protocol 2026-07-28), and the `initialize`
result does not offer subscriptions.

A subscription is served exactly as a listen stream is: the tracker's shared poll loop for the
operation, under the caller's key, so callers with different keys never hear of each other's
operations. It ends when the operation is final, on `resources/unsubscribe`, or when the connection
closes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from mcp import MCPError
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    EmptyResult,
    SubscribeRequestParams,
    UnsubscribeRequestParams,
)

from knock_mcp.errors import InvalidOperationId, KnockMcpError, OperationNotFound
from knock_mcp.live_updates import MAX_FOLLOWED_PER_STREAM, operation_id_in
from knock_mcp.models import BulkOperation

if TYPE_CHECKING:
    from collections.abc import Callable

    from mcp.server.mcpserver import MCPServer

    from knock_mcp.state import ServerState

logger = logging.getLogger(__name__)

NO_CHANNEL = (
    "This knock-mcp serves HTTP statelessly: each request is answered on its own, and between "
    "requests there is no channel on which it could send a 2025-11-25 client an update. To follow "
    "a running job, call the tool wait_for_bulk_operation (it reports progress while it waits), or "
    "use a client that speaks protocol 2026-07-28, whose subscriptions/listen works over HTTP; "
    "over stdio, resources/subscribe works."
)
_STATE_KEY = "knock_mcp.subscriptions"


def serve_resource_subscriptions(server: MCPServer[ServerState]) -> None:
    """Serve `resources/subscribe` and `resources/unsubscribe` on `server` (2025-11-25 era).

    MCPServer has no public way to serve these methods; its low-level server's `add_request_handler`
    is public, and declaring the `resources.subscribe` capability follows from it."""
    lowlevel = server._lowlevel_server
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, _subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, _unsubscribe)
    server.middleware.append(_offer_subscriptions_only_with_a_channel)


def connection_of(ctx: ServerRequestContext[Any, Any]) -> Connection:
    """The connection a request arrived on: its per-connection state, its teardown, and its
    channel for messages the server sends first.

    mcp 2.3 hands a low-level handler (and middleware) a per-request session that holds the
    connection without a public accessor, so this reads the session's private attribute. The tests
    of unsubscribe-on-disconnect and of the stateless-HTTP refusal fail if it ever moves."""
    connection: Connection = ctx.session._connection
    return connection


@dataclass
class _Subscriptions:
    """One connection's followed URIs, each with the function that stops its follower."""

    stops: dict[str, Callable[[], None]] = field(default_factory=dict)

    def drop(self, uri: str, stop: Callable[[], None]) -> None:
        """Stop this follower and forget it, unless another has taken its URI's place."""
        stop()
        if self.stops.get(uri) is stop:
            del self.stops[uri]

    def stop_all(self) -> None:
        for stop in self.stops.values():
            stop()
        self.stops.clear()


def _subscriptions_of(connection: Connection) -> _Subscriptions:
    subscriptions = connection.state.get(_STATE_KEY)
    if not isinstance(subscriptions, _Subscriptions):
        subscriptions = connection.state[_STATE_KEY] = _Subscriptions()
        # The connection closing (the client quit, stdin closed) stops every follower it started.
        connection.exit_stack.callback(subscriptions.stop_all)
    return subscriptions


async def _subscribe(
    ctx: ServerRequestContext[ServerState, Any], params: SubscribeRequestParams
) -> EmptyResult:
    connection = connection_of(ctx)
    if not connection.has_standalone_channel:
        raise MCPError(INVALID_REQUEST, NO_CHANNEL)
    uri = params.uri
    operation_id = operation_id_in(uri)
    if operation_id is None:
        raise MCPError(
            INVALID_PARAMS,
            f"knock-mcp has no resource {uri[:200]!r} to subscribe to; its resources are "
            "knock://bulk_operations/{id}, with the id of a Knock bulk operation.",
        )
    subscriptions = _subscriptions_of(connection)
    if uri in subscriptions.stops:
        return EmptyResult()
    if len(subscriptions.stops) >= MAX_FOLLOWED_PER_STREAM:
        raise MCPError(
            INVALID_REQUEST,
            f"This connection already follows {MAX_FOLLOWED_PER_STREAM} bulk operations, the most one "
            "connection may; unsubscribe from one that no longer matters, then subscribe again.",
        )
    state = ctx.lifespan_context
    key = state.api_key()
    announce = partial(_announce, connection, subscriptions, uri)
    try:
        stop = state.tracker.follow(operation_id, key, announce)
    except InvalidOperationId as error:
        raise MCPError(INVALID_PARAMS, state.public_text(error)) from None
    # Held before the read below awaits, so that a second subscribe to the same URI meanwhile finds
    # it (and starts no follower that nothing could stop), and an unsubscribe meanwhile stops it.
    subscriptions.stops[uri] = stop
    try:
        # Read now, so an unknown id or a refused key is an error now, not silence later; and so the
        # updates that follow are changes from the state this read saw.
        operation = await state.tracker.read(operation_id, key)
    except BaseException as error:
        subscriptions.drop(uri, stop)
        if isinstance(error, OperationNotFound):
            raise MCPError(INVALID_PARAMS, state.public_text(error)) from None
        if isinstance(error, KnockMcpError):
            raise MCPError(INVALID_REQUEST, state.public_text(error)) from None
        raise
    if operation.status.is_final:
        subscriptions.drop(uri, stop)  # a final operation never changes: there is nothing to follow
    return EmptyResult()


async def _announce(
    connection: Connection, subscriptions: _Subscriptions, uri: str, operation: BulkOperation
) -> None:
    await connection.send_resource_updated(uri)
    if operation.status.is_final:
        subscriptions.stops.pop(uri, None)


async def _unsubscribe(
    ctx: ServerRequestContext[ServerState, Any], params: UnsubscribeRequestParams
) -> EmptyResult:
    """Stops the follower; unsubscribing from what is not followed (any more) is no error."""
    stop = _subscriptions_of(connection_of(ctx)).stops.pop(params.uri, None)
    if stop is not None:
        stop()
    return EmptyResult()


async def _offer_subscriptions_only_with_a_channel(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """Middleware: a connection that cannot carry updates (stateless HTTP) is not offered
    `resources.subscribe` in the `initialize` result."""
    result = await call_next(ctx)
    if ctx.method != "initialize" or connection_of(ctx).has_standalone_channel:
        return result
    resources = result.get("capabilities", {}).get("resources") if isinstance(result, dict) else None
    if isinstance(resources, dict):
        resources["subscribe"] = False
    return result
