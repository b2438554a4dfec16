"""Serving the app with uvicorn: one worker from `knock-mcp --transport http`, or any number from
`uvicorn --factory knock_mcp.http:create_app`; a deadline for each request to arrive whole; and the
socket option that keeps several workers fast.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from functools import partial

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from knock_mcp.bootstrap import start
from knock_mcp.errors import ConfigurationError
from knock_mcp.http.app import KnockMcpApp, build_app
from knock_mcp.http.config import HttpConfig, load_http_config

# uvicorn's default (16 KiB for the request line and headers) would refuse a 16 KB OAuth access
# token (real Entra tokens with group claims reach ~10 KB) before the app could say what is wrong
# with it; twice that leaves room for the other headers. Beyond it uvicorn answers 400. Under
# `uvicorn --factory`, pass `--h11-max-incomplete-event-size 32768` for the same.
MAX_REQUEST_HEAD_BYTES = 32 * 1024
# A request (headers and its body of at most 64 KiB) must arrive whole within this many seconds of
# the connection opening or of the previous answer. uvicorn has no such limit: without it a client
# that sends half a request and stops (slowloris) holds a connection and a descriptor for ever.
REQUEST_ARRIVAL_TIMEOUT = 10.0


def create_app() -> KnockMcpApp:
    """ASGI application factory for `uvicorn --factory knock_mcp.http:create_app` (or gunicorn).

    The factory cannot see uvicorn's own `--host`, so it reads everything from `KNOCK_MCP_*` and
    `KNOCK_*` variables; a bad one stops the worker with a message naming it, not a traceback.
    """
    try:
        config = load_http_config(os.environ)
        app = start(config.log_level, partial(build_app, config, os.environ))
    except ConfigurationError as error:
        print(f"knock-mcp: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    set_nodelay_on_inherited_sockets()
    return app


def set_nodelay_on_inherited_sockets() -> None:
    """Turn Nagle's algorithm off on the listening socket a uvicorn worker inherited.

    `uvicorn --workers N` binds its socket as `socket.socket(family)`, whose protocol number is 0,
    and asyncio sets TCP_NODELAY only on sockets that say IPPROTO_TCP. So every connection a worker
    accepts keeps Nagle's algorithm on, and each response (headers, then body: two writes) waits
    ~40 ms for the client's delayed ACK: measured p50 48 ms per call with two workers against 1.9 ms
    with one. Linux copies TCP_NODELAY from a listening socket to the connections it accepts, so
    setting it once here fixes all of them. Elsewhere (no /proc, or no such socket) it does nothing.
    """
    try:
        descriptors = os.listdir("/proc/self/fd")
    except OSError:
        return
    for descriptor in descriptors:
        try:
            candidate = socket.socket(fileno=int(descriptor))
        except (OSError, ValueError):
            continue  # not a socket, or the directory listing's own descriptor, closed since
        try:
            if candidate.family in (socket.AF_INET, socket.AF_INET6) and candidate.type == socket.SOCK_STREAM:
                candidate.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        finally:
            candidate.detach()  # the descriptor stays uvicorn's


def serve(app: KnockMcpApp, config: HttpConfig) -> None:
    """Run one uvicorn worker: no access log (a log line per request costs throughput and could
    record what a caller sent), and a shutdown bound just past the app's own drain."""
    uvicorn_config = uvicorn.Config(
        app,
        host=config.host.strip("[]"),
        port=config.port,
        log_level=config.log_level.lower(),
        access_log=False,
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=int(config.shutdown_timeout) + 5,
        http=RequestArrivalDeadline,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
    )
    uvicorn.Server(uvicorn_config).run()


class RequestArrivalDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, plus a deadline for each request to arrive whole.

    A connection still waiting for (part of) a request `REQUEST_ARRIVAL_TIMEOUT` seconds after it
    opened, or after its previous answer, gets 408 and is closed; a request that is still being
    answered (a long tool call, a listen stream) is not affected. Under `uvicorn --factory`, pass
    `--http knock_mcp.http:RequestArrivalDeadline` for the same protection.
    """

    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._disarm()
        if not self.transport.is_closing():
            self._deadline = self.loop.call_later(REQUEST_ARRIVAL_TIMEOUT, self._on_deadline)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _on_deadline(self) -> None:
        self._deadline = None
        waiting_for_request = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
        if self.transport.is_closing() or not waiting_for_request:
            return
        if self.conn.our_state is h11.IDLE:
            # h11 cannot frame an answer to a request it has not parsed; the connection closes next.
            self.transport.write(
                b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\nconnection: close\r\n"
                b"content-length: 37\r\n\r\nThe request did not arrive in time.\r\n"
            )
        self.transport.close()
