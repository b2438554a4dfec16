"""A fake Knock: a real HTTP server on 127.0.0.1, in a background thread, for tests and benchmarks.

It serves `GET /v1/bulk_operations/{id}` from `operations`, records every request, and plays
scripted faults first when a test queues them with `fail_next`. An operation is a payload, its JSON
already encoded (served many times, it is not encoded again for each request), or a callable that
returns the payload of the moment (see `Advancing`), for operations that move on.
With `faults` set it also turns a seeded random share of requests into one of the `Fault` kinds
(see `FaultInjector`), and counts what it injected, so a soak run can be replayed and explained.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Closing with SO_LINGER on and a zero timeout sends RST instead of FIN: the peer sees a reset.
_LINGER_ZERO = b"\x01\x00\x00\x00\x00\x00\x00\x00"


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status, a body, headers, and optionally a stall or a dropped connection.

    `stall_seconds` and `reset` act before the headers; `stall_mid_body_seconds` and `reset_mid_body`
    after the headers and the first half of the body. `stream`, when set, replaces `body`: its chunks
    are sent with chunked transfer encoding and no Content-Length, produced only as they are sent.
    """

    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    stall_seconds: float = 0.0
    reset: bool = False
    stall_mid_body_seconds: float = 0.0
    reset_mid_body: bool = False
    stream: Callable[[], Iterator[bytes]] | None = None


class Fault(StrEnum):
    """Every way the fault injector can spoil one answer."""

    RATE_LIMITED = "429, no Retry-After"
    RATE_LIMITED_RETRY_SOON = "429, Retry-After: 1"
    RATE_LIMITED_RETRY_LATER = "429, Retry-After: 120"
    RATE_LIMITED_RETRY_GARBLED = "429, Retry-After: soon"
    INTERNAL_SERVER_ERROR = "500"
    BAD_GATEWAY = "502"
    SERVICE_UNAVAILABLE = "503"
    GATEWAY_TIMEOUT = "504"
    RESET_BEFORE_HEADERS = "reset before headers"
    RESET_MID_BODY = "reset mid-body"
    STALL_BEFORE_HEADERS = "stall before headers"
    STALL_MID_BODY = "stall between body chunks"
    TRUNCATED_JSON = "truncated JSON"
    WRONG_SHAPE = "JSON of the wrong shape"
    HTML_200 = "HTML page with 200"
    WRONG_CONTENT_TYPE = "wrong Content-Type"
    OVERSIZED_BODY = "200 MB body, streamed"


OVERSIZED_BODY_BYTES = 200 * 1000 * 1000
_STATUS_FAULTS = {
    Fault.RATE_LIMITED: (429, None),
    Fault.RATE_LIMITED_RETRY_SOON: (429, "1"),
    Fault.RATE_LIMITED_RETRY_LATER: (429, "120"),
    Fault.RATE_LIMITED_RETRY_GARBLED: (429, "soon"),
    Fault.INTERNAL_SERVER_ERROR: (500, None),
    Fault.BAD_GATEWAY: (502, None),
    Fault.SERVICE_UNAVAILABLE: (503, None),
    Fault.GATEWAY_TIMEOUT: (504, None),
}
_HTML_ERROR_PAGE = (
    b"<!DOCTYPE html><html><head><title>Service temporarily unavailable</title></head>"
    b"<body><h1>Our servers are taking a break</h1><p>Please try again later.</p></body></html>"
)


def fault_reply(fault: Fault, normal: Reply, stall_seconds: float) -> Reply:
    """The answer `fault` makes of `normal`, the answer the request would otherwise have had."""
    body = normal.body or b""
    if fault in _STATUS_FAULTS:
        status, retry_after = _STATUS_FAULTS[fault]
        headers = {} if retry_after is None else {"Retry-After": retry_after}
        message = {"code": "fault", "message": f"Injected fault: {fault.value}", "status": status}
        return Reply(status, json.dumps(message).encode(), headers)
    match fault:
        case Fault.RESET_BEFORE_HEADERS:
            return Reply(reset=True)
        case Fault.RESET_MID_BODY:
            return replace(normal, reset_mid_body=True)
        case Fault.STALL_BEFORE_HEADERS:
            return replace(normal, stall_seconds=stall_seconds)
        case Fault.STALL_MID_BODY:
            return replace(normal, stall_mid_body_seconds=stall_seconds)
        case Fault.TRUNCATED_JSON:
            return Reply(200, body[: len(body) // 2])
        case Fault.WRONG_SHAPE:
            return Reply(200, b'{"data": ' + body + b', "type": "list"}')
        case Fault.HTML_200:
            return Reply(200, _HTML_ERROR_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        case Fault.WRONG_CONTENT_TYPE:
            return replace(normal, headers={**normal.headers, "Content-Type": "text/plain"})
        case _:
            return Reply(200, stream=lambda: oversized_operation_chunks(OVERSIZED_BODY_BYTES))


def oversized_operation_chunks(total_bytes: int, chunk_bytes: int = 64 * 1024) -> Iterator[bytes]:
    """A schema-valid operation about `total_bytes` long, almost all of it `error_items`, made as sent."""
    head = (
        b'{"__typename": "BulkOperation", "id": "0f0f0f0f-0000-4000-8000-000000000000", '
        b'"name": "users.identify", "status": "completed", "estimated_total_rows": 1, '
        b'"processed_rows": 1, "success_count": 0, "inserted_at": "2026-01-01T00:00:00Z", '
        b'"updated_at": "2026-01-01T00:00:00Z", "error_items": ['
    )
    item = b'{"id": "user-000000000000", "collection": null},'
    per_chunk = max(1, chunk_bytes // len(item))
    yield head
    sent = len(head)
    while sent < total_bytes:
        chunk = item * per_chunk
        sent += len(chunk)
        yield chunk
    yield b'{"id": "last", "collection": null}]}'


class FaultInjector:
    """Turns a share `rate` of requests into faults drawn evenly from `kinds`, from a seeded RNG.

    The sequence of draws depends only on `seed`, so a run can be repeated; which request gets
    which draw depends on arrival order.
    """

    def __init__(self, rate: float, seed: int, kinds: Sequence[Fault] = tuple(Fault)) -> None:
        self.rate = rate
        self.kinds = tuple(kinds)
        self._random = random.Random(seed)

    def draw(self) -> Fault | None:
        """Called under the fake's lock, once per request."""
        if self._random.random() >= self.rate:
            return None
        return self._random.choice(self.kinds)


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    at: float
    fault: Fault | None = None


Payload = dict[str, Any]
# What `FakeKnock.operations` holds for an id (see the module docstring).
ServedOperation = Payload | bytes | Callable[[], Payload]


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

    def __init__(self, faults: FaultInjector | None = None, stall_seconds: float = 3.0) -> None:
        self.operations: dict[str, ServedOperation] = {}
        self.requests: list[SeenRequest] = []
        # Operation id -> the one key that may read it, as a Knock environment owns its operations;
        # any other key gets 404. Operations not listed here answer every key.
        self.owners: dict[str, str] = {}
        self.faults = faults
        # How long a stall fault holds its answer: longer than the client's attempt timeout.
        self.stall_seconds = stall_seconds
        # Connections open right now, and body bytes written: leak and streaming checks read them.
        self.open_connections = 0
        self.faults_injected: Counter[Fault] = Counter()
        self.body_bytes_sent = 0
        self._script: deque[Reply] = deque()
        self._fault_script: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._closing = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Send each answer at once, as a production server does: with Nagle's algorithm the body
            # would wait ~40 ms for the client's delayed ACK of the headers.
            disable_nagle_algorithm = True

            def setup(self) -> None:
                super().setup()
                with fake._lock:
                    fake.open_connections += 1

            def finish(self) -> None:
                try:
                    super().finish()
                finally:
                    with fake._lock:
                        fake.open_connections -= 1

            def handle(self) -> None:
                # A client that hangs up mid-request (a timeout, a shutdown) is normal here.
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    super().handle()

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
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def forget(self) -> None:
        """Back to no operations, owners, requests or scripted replies: for a fake that outlives one
        test (behind a server that tests share), so that each test sees only its own."""
        with self._lock:
            self.operations.clear()
            self.requests.clear()
            self.owners.clear()
            self._script.clear()
            self._fault_script.clear()

    def fail_next(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, before serving normally."""
        with self._lock:
            self._script.extend(replies)

    def inject_next(self, *faults: Fault) -> None:
        """Spoil the next requests' normal answers with these faults, in order."""
        with self._lock:
            self._fault_script.extend(faults)

    @property
    def faults_pending(self) -> int:
        """Faults queued by `inject_next` that no request has met yet."""
        with self._lock:
            return len(self._fault_script)

    def requests_for(self, operation_id: str) -> list[SeenRequest]:
        return [seen for seen in self.requests if seen.path.endswith(operation_id)]

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
            fault = None
            if scripted is None and self._fault_script:
                fault = self._fault_script.popleft()
            elif scripted is None and self.faults:
                fault = self.faults.draw()
            if fault is not None:
                self.faults_injected[fault] += 1
            self.requests.append(
                SeenRequest("GET", handler.path, dict(handler.headers.items()), time.monotonic(), fault)
            )
        reply = scripted or self._normal_reply(handler.path, handler.headers.get("Authorization"))
        if fault is not None:
            reply = fault_reply(fault, reply, self.stall_seconds)
        try:
            self._send(handler, reply)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up on this answer (a cap, a timeout): nothing more to send.
            handler.close_connection = True

    def _send(self, handler: BaseHTTPRequestHandler, reply: Reply) -> None:
        if reply.stall_seconds:
            self._closing.wait(reply.stall_seconds)
        if reply.reset:
            self._reset(handler)
            return
        body = reply.body or b""
        handler.send_response(reply.status)
        headers = {"Content-Type": "application/json", **reply.headers}
        for name, value in headers.items():
            handler.send_header(name, value)
        if reply.stream is not None:
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for chunk in reply.stream():
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self._count_sent(len(chunk))
            handler.wfile.write(b"0\r\n\r\n")
            return
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if reply.reset_mid_body or reply.stall_mid_body_seconds:
            half = len(body) // 2
            handler.wfile.write(body[:half])
            self._count_sent(half)
            body = body[half:]
            if reply.reset_mid_body:
                self._reset(handler)
                return
            self._closing.wait(reply.stall_mid_body_seconds)
        handler.wfile.write(body)
        self._count_sent(len(body))

    def _count_sent(self, size: int) -> None:
        with self._lock:
            self.body_bytes_sent += size

    @staticmethod
    def _reset(handler: BaseHTTPRequestHandler) -> None:
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        handler.connection.close()
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
        return Reply(200, operation if isinstance(operation, bytes) else json.dumps(operation).encode())
