"""Graceful shutdown of the HTTP server: finish the calls in flight, close listen streams, then stop.

On SIGTERM a replica stops taking work without cutting what it is doing: uvicorn closes the
listening socket (a single process refuses new connections at once, which a balancer reads as
"stop sending"), requests that still reach the app, `/healthz` included, get 503, and the requests in
flight get up to the shutdown timeout to end. docs/deployment.md says how to take a replica out of
a balancer before the signal.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import FrameType

import anyio
import anyio.abc
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import ListenHandler

from knock_mcp.state import ServerState

logger = logging.getLogger(__name__)

# Listen streams carry no work in progress: after this grace (time for events already queued to be
# delivered) they are closed gracefully, so their clients re-listen on a replica that is staying up.
LISTEN_GRACE_SECONDS = 5.0


@dataclass
class Drain:
    """Graceful shutdown. On SIGTERM (or SIGINT): new MCP requests get 503 and /healthz says
    draining; open listen streams are closed after `LISTEN_GRACE_SECONDS`; calls in flight run to
    completion, and whatever still runs after `timeout` seconds is cancelled. Uvicorn meanwhile
    stops accepting connections and waits for these requests to end."""

    timeout: float
    close_listeners: Callable[[], None]
    started: bool = False
    _in_flight: set[anyio.CancelScope] = field(default_factory=set)
    _requested: anyio.Event = field(default_factory=anyio.Event)
    _idle: anyio.Event = field(default_factory=anyio.Event)

    @contextmanager
    def track(self) -> Iterator[None]:
        """Around one request, so that the drain knows when none is left and can end stragglers."""
        scope = anyio.CancelScope()
        self._in_flight.add(scope)
        try:
            with scope:
                yield
        finally:
            self._in_flight.discard(scope)
            if self.started and not self._in_flight:
                self._idle.set()

    def start(self, tasks: anyio.abc.TaskGroup) -> None:
        """Chain onto the server's signal handlers and wait, in `tasks`, for one to fire."""
        if threading.current_thread() is threading.main_thread():
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                _chain_signal(signum, partial(loop.call_soon_threadsafe, self._requested.set))
        tasks.start_soon(self._run)

    async def _run(self) -> None:
        await self._requested.wait()
        self.started = True
        # A short shutdown timeout still leaves half of it for listeners to be closed gracefully.
        listen_grace = min(LISTEN_GRACE_SECONDS, self.timeout / 2)
        logger.warning(
            "Shutting down: refusing new requests; %d in flight may run for up to %g s; listen streams "
            "close in %g s.",
            len(self._in_flight),
            self.timeout,
            listen_grace,
        )
        if not self._in_flight:
            self._idle.set()
        with anyio.move_on_after(listen_grace):
            await self._idle.wait()
        self.close_listeners()
        with anyio.move_on_after(self.timeout - listen_grace):
            await self._idle.wait()
        if self._in_flight:
            logger.warning(
                "Cancelling %d request(s) still running after %g s.", len(self._in_flight), self.timeout
            )
            for scope in list(self._in_flight):
                scope.cancel()


def _chain_signal(signum: int, notify: Callable[[], object]) -> None:
    """Run `notify` and then whatever handled `signum` before (uvicorn's own, which starts its shutdown)."""
    previous = signal.getsignal(signum)

    def handle(received: int, frame: FrameType | None) -> None:
        notify()
        if callable(previous):
            previous(received, frame)

    signal.signal(signum, handle)


def listen_closer(server: MCPServer[ServerState]) -> Callable[[], None]:
    """Closes every open `subscriptions/listen` stream gracefully (each gets its final result)."""
    entry = server.session_manager.app.get_request_handler("subscriptions/listen")
    handler = entry.handler if entry is not None else None
    if isinstance(handler, ListenHandler):
        return handler.close
    return lambda: None
