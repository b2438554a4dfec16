"""Live updates for clients that listen (`subscriptions/listen`, protocol 2026-07-28).

A client listening to `knock://bulk_operations/{id}` gets `notifications/resources/updated` each
time the operation changes, until it is final. The updates come from the tracker's shared poll
loop, which runs only while someone listens or waits.

The SDK tells nobody which URIs a client listens to, and its bus fans every event out to every
listen stream. So a middleware sees each listen start and end, and registers the stream with the
tracker under the caller's key while it lasts; `ListenStreamBus` hands the middleware the stream's
own delivery function, so each update reaches only the stream whose loop produced it. Callers with
different keys never hear about each other's operations.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import ExitStack
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated, ServerEvent
from mcp.types import SubscriptionsListenRequestParams
from pydantic import ValidationError

from knock_mcp.errors import InvalidOperationId
from knock_mcp.models import BulkOperation
from knock_mcp.state import ServerState

logger = logging.getLogger(__name__)

LISTEN_METHOD = "subscriptions/listen"
# Each followed operation is a poll loop asking Knock with the caller's (or the server's) key; one
# stream may not start more than this many. Further URIs are honoured by the SDK but not followed.
MAX_FOLLOWED_PER_STREAM = 100
_OPERATION_URI = re.compile(r"knock://bulk_operations/([^/?#]+)")


def operation_id_in(uri: str) -> str | None:
    """The id in a `knock://bulk_operations/{id}` URI (not yet validated), or None for another URI."""
    match = _OPERATION_URI.fullmatch(uri)
    return None if match is None else match.group(1)


@dataclass
class _ListenStream:
    """One open listen stream: where its events go, once the SDK's handler has subscribed."""

    deliver: Callable[[ServerEvent], None] | None = None

    def announce(self, uri: str, _: BulkOperation) -> None:
        if self.deliver is not None:
            self.deliver(ResourceUpdated(uri))


_OPENING: ContextVar[_ListenStream | None] = ContextVar("knock_mcp_listen_stream", default=None)


class ListenStreamBus(InMemorySubscriptionBus):
    """The SDK's in-process bus, which also gives each listen stream's delivery function to the
    stream being opened in this task, so updates can be sent to that stream alone."""

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        stream = _OPENING.get()
        if stream is not None:
            stream.deliver = listener
        return super().subscribe(listener)


async def follow_listened_operations(
    ctx: ServerRequestContext[Any, Any], call_next: CallNext
) -> HandlerResult:
    """Middleware: while a `subscriptions/listen` stream is open, have the tracker follow every
    bulk operation it listens to, with the caller's key, and announce changes on that stream."""
    if ctx.method != LISTEN_METHOD:
        return await call_next(ctx)
    try:
        params = SubscriptionsListenRequestParams.model_validate(ctx.params or {})
    except ValidationError:
        return await call_next(ctx)  # the SDK answers with the precise error
    state: ServerState = ctx.lifespan_context
    stream = _ListenStream()
    with ExitStack() as following:
        key = state.api_key()
        followed = 0
        for uri in params.notifications.resource_subscriptions or ():
            operation_id = operation_id_in(uri)
            if operation_id is None:
                continue
            if followed == MAX_FOLLOWED_PER_STREAM:
                logger.warning(
                    "A listen stream asked to follow more than %d bulk operations; the rest get no updates",
                    MAX_FOLLOWED_PER_STREAM,
                )
                break
            try:
                following.enter_context(
                    state.tracker.listening(operation_id, key, partial(stream.announce, uri))
                )
                followed += 1
            except InvalidOperationId:
                logger.info("Not following %r: not a bulk operation id", uri[:200])
        token = _OPENING.set(stream)
        try:
            return await call_next(ctx)
        finally:
            _OPENING.reset(token)
