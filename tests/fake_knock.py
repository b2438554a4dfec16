"""A fake Knock: a real HTTP server on 127.0.0.1, in a background thread, for tests and benchmarks.

It serves `GET /v1/bulk_operations/{id}` from `operations`, records every request, and plays
scripted faults first when a test queues them with `fail_next`. An operation is a payload, or a
callable that returns the payload of the moment (see `Advancing`), for operations that move on.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status, a body, headers, and optionally a stall or a dropped connection."""

    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stall_seconds: float = 0.0
    reset: bool = False


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    at: float


Payload = dict[str, Any]


class Advancing:
    """An operation that moves through `stages`: one stage per request served, or, given
    `seconds_per_stage`, one per that many seconds from its first request. It stays at the last stage."""

    def __init__(self, stages: Sequence[Payload], *, seconds_per_stage: float | None = None) -> None:
        self.stages = list(stages)
        self.seconds_per_stage = seconds_per_stage
        self.served = 0
        self.first_request: float | None = None
        self._lock = threading.Lock()

    def __call__(self) -> Payload:
        with self._lock:
            now = time.monotonic()
            if self.first_request is None:
                self.first_request = now
            if self.seconds_per_stage is None:
                stage = self.served
            else:
                stage = int((now - self.first_request) / self.seconds_per_stage)
            self.served += 1
            return self.stages[min(stage, len(self.stages) - 1)]


class _ListeningServer(ThreadingHTTPServer):
    # The default listen backlog of 5 drops connections when a client opens many at once (a server
    # under 50 concurrent calls does), and each dropped SYN costs a 1 s retransmit.
    request_queue_size = 128


class FakeKnock:
    """Start with `with FakeKnock() as knock:`; `knock.base_url` is its address."""

    def __init__(self) -> None:
        self.operations: dict[str, Payload | Callable[[], Payload]] = {}
        self.requests: list[SeenRequest] = []
        # Operation id -> the one key that may read it, as a Knock environment owns its operations;
        # any other key gets 404. Operations not listed here answer every key.
        self.owners: dict[str, str] = {}
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Send each answer at once, as a production server does: with Nagle's algorithm the body
            # would wait ~40 ms for the client's delayed ACK of the headers.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                fake._serve(self)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: tests read `requests` instead."""

        self._server = _ListeningServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeKnock:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, before serving normally."""
        with self._lock:
            self._script.extend(replies)

    def requests_for(self, operation_id: str) -> list[SeenRequest]:
        return [seen for seen in self.requests if seen.path.endswith(operation_id)]

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.requests.append(
                SeenRequest("GET", handler.path, dict(handler.headers.items()), time.monotonic())
            )
            scripted = self._script.popleft() if self._script else None
        reply = scripted or self._normal_reply(handler.path, handler.headers.get("Authorization"))
        if reply.stall_seconds:
            time.sleep(reply.stall_seconds)
        if reply.reset:
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            handler.connection.close()
            handler.close_connection = True
            return
        body = reply.body or b""
        handler.send_response(reply.status)
        headers = {"Content-Type": "application/json", **reply.headers}
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        try:
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _normal_reply(self, path: str, authorization: str | None) -> Reply:
        prefix = "/v1/bulk_operations/"
        operation_id = path[len(prefix) :] if path.startswith(prefix) else ""
        operation = self.operations.get(operation_id)
        if callable(operation):
            operation = operation()
        owner = self.owners.get(operation_id)
        if operation is None or (owner is not None and authorization != f"Bearer {owner}"):
            return Reply(
                404,
                json.dumps(
                    {
                        "code": "resource_missing",
                        "message": "The resource you requested does not exist",
                        "status": 404,
                        "type": "invalid_request_error",
                    }
                ).encode(),
            )
        return Reply(200, json.dumps(operation).encode())
