"""Log messages for the person at the client: the `logging` capability, `logging/setLevel` and
`notifications/message`.

A person waiting on a slow answer wants to know why: Knock rate-limited a read and knock-mcp retries
after the wait Knock asked for, Knock answered with a server error, Knock could not be reached and
knock-mcp gave up. Each such event (a `KnockNotice` from the Knock client) becomes at most one
message per client, at level `warning` for a retry and `error` for giving up. The texts carry the
operation id, the cause and the wait, never a key or token.

Where a message goes, and to whom:
- A 2025-11-25 connection with a channel of its own (stdio) that set a level with
  `logging/setLevel`: on that channel, for every event of its own key at or above the level,
  including those of the poll loops behind its subscriptions.
- Otherwise (no level set, a 2026-07-28 client, or stateless HTTP, where a connection lasts one
  request): on the stream of the request that is reading the operation, for events about that
  operation with the request's key. Protocol 2026-07-28 sends log messages only to a request that
  opted in with the `_meta` logLevel, at that level or above. Over stateless HTTP a 2025-11-25
  client's `logging/setLevel` is answered but cannot outlive its own request.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, get_args

import anyio
from mcp.server.connection import allowed_log_levels
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.types import (
    EmptyResult,
    LoggingLevel,
    LoggingMessageNotification,
    LoggingMessageNotificationParams,
    SetLevelRequestParams,
)
from pydantic import SecretStr

from knock_mcp.errors import InvalidOperationId
from knock_mcp.fleet import key_fingerprint
from knock_mcp.knock_client import KnockNotice
from knock_mcp.live_updates import operation_id_in
from knock_mcp.models import parse_operation_id
from knock_mcp.subscriptions import connection_of

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from knock_mcp.state import ServerState

logger = logging.getLogger(__name__)

LOGGER_NAME = "knock-mcp"
# Severity-ascending, as the protocol orders them.
_LEVELS: Final[tuple[LoggingLevel, ...]] = get_args(LoggingLevel)
# A client that does not read its messages must not hold up the read of the operation.
SEND_TIMEOUT = 1.0
_STATE_KEY = "knock_mcp.log_level"


@dataclass(eq=False)
class _Listener:
    """Where messages of one key go: a connection's channel, or one request's stream."""

    fingerprint: bytes
    operation_id: str | None  # None: every operation read with the key
    levels: frozenset[LoggingLevel]
    send: Callable[[LoggingLevel, str], Awaitable[None]]


class ClientLog:
    """Turns the Knock client's notices into `notifications/message` for the clients they concern.

    Keys are held as HMAC fingerprints under a per-process salt, as the tracker holds them."""

    def __init__(self) -> None:
        self._salt = os.urandom(32)
        self._listeners: set[_Listener] = set()

    def serve(self, server: MCPServer[ServerState]) -> None:
        """Declare the logging capability and serve `logging/setLevel` on `server` (through its
        low-level server: MCPServer has no public way to), and attach each reading request."""
        server._lowlevel_server.add_request_handler(
            "logging/setLevel", SetLevelRequestParams, self._set_level
        )
        server.middleware.append(self._attach_reading_requests)

    async def publish(self, notice: KnockNotice) -> None:
        """Send the notice to every listener of its key (and operation) whose level admits it, all
        at once and for at most `SEND_TIMEOUT`: the retry it announces waits for this."""
        level: LoggingLevel = "error" if notice.gave_up else "warning"
        text = notice.text.replace(notice.key.get_secret_value(), "[redacted]")
        fingerprint = self._fingerprint(notice.key)
        concerned = [
            listener
            for listener in self._listeners
            if listener.fingerprint == fingerprint
            and level in listener.levels
            and listener.operation_id in (None, notice.operation_id)
        ]
        if not concerned:
            return
        with anyio.move_on_after(SEND_TIMEOUT):
            async with anyio.create_task_group() as sending:
                for listener in concerned:
                    sending.start_soon(_send, listener, level, text)

    def _fingerprint(self, key: SecretStr | None) -> bytes:
        return key_fingerprint(self._salt, key)

    async def _set_level(
        self, ctx: ServerRequestContext[ServerState, Any], params: SetLevelRequestParams
    ) -> EmptyResult:
        connection = connection_of(ctx)
        if not connection.has_standalone_channel:
            return EmptyResult()  # stateless HTTP: nothing outlives this request (see the module doc)
        levels = frozenset(_LEVELS[_LEVELS.index(params.level) :])
        current = connection.state.get(_STATE_KEY)
        if isinstance(current, _Listener):
            current.levels = levels
            return EmptyResult()

        async def send(level: LoggingLevel, text: str) -> None:
            params = {"level": level, "logger": LOGGER_NAME, "data": text}
            await connection.notify("notifications/message", params)

        listener = _Listener(self._fingerprint(ctx.lifespan_context.api_key()), None, levels, send)
        connection.state[_STATE_KEY] = listener
        self._listeners.add(listener)
        connection.exit_stack.callback(self._listeners.discard, listener)
        return EmptyResult()

    async def _attach_reading_requests(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        """Middleware: while a request reads an operation, it hears that operation's notices,
        unless its connection already hears every notice of its key (it set a level)."""
        operation_id = _operation_read_by(ctx.method, ctx.params)
        if operation_id is None or isinstance(connection_of(ctx).state.get(_STATE_KEY), _Listener):
            return await call_next(ctx)
        levels = allowed_log_levels(ctx.protocol_version, ctx.meta)
        if not levels:
            return await call_next(ctx)
        state: ServerState = ctx.lifespan_context
        session, request_id = ctx.session, ctx.request_id

        async def send(level: LoggingLevel, text: str) -> None:
            message = LoggingMessageNotificationParams(level=level, logger=LOGGER_NAME, data=text)
            await session.send_notification(
                LoggingMessageNotification(params=message), related_request_id=request_id
            )

        listener = _Listener(self._fingerprint(state.api_key()), operation_id, levels, send)
        self._listeners.add(listener)
        try:
            return await call_next(ctx)
        finally:
            self._listeners.discard(listener)


async def _send(listener: _Listener, level: LoggingLevel, text: str) -> None:
    try:
        await listener.send(level, text)
    except Exception:
        logger.exception("Could not send a log message to a client")


def _operation_read_by(method: str, params: Mapping[str, Any] | None) -> str | None:
    """The canonical id of the operation a tool call, resource read or prompt reads, if any."""
    if params is None:
        return None
    raw: object = None
    if method in ("tools/call", "prompts/get"):
        arguments = params.get("arguments")
        raw = arguments.get("id") if isinstance(arguments, Mapping) else None
    elif method == "resources/read":
        uri = params.get("uri")
        raw = operation_id_in(uri) if isinstance(uri, str) else None
    if not isinstance(raw, str):
        return None
    try:
        return parse_operation_id(raw)
    except InvalidOperationId:
        return None
