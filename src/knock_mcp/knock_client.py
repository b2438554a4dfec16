"""The one place that talks to Knock: `GET /v1/bulk_operations/{id}` with retries inside a deadline.

Every outcome becomes either a validated `BulkOperation` or one of the typed errors in
`knock_mcp.errors`. Only relative paths are requested from the configured base URL and redirects
are never followed, so the secret key cannot travel anywhere else; `progress_path` is never fetched.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import NoReturn, Protocol

import anyio
import httpx2
from pydantic import SecretStr, ValidationError

from knock_mcp import __version__
from knock_mcp.errors import (
    AuthenticationFailed,
    InvalidResponse,
    KnockMcpError,
    KnockUnavailable,
    MissingApiKey,
    OperationNotFound,
    PermissionDenied,
    RateLimited,
    SchemaMismatch,
    UnexpectedStatus,
)
from knock_mcp.models import BulkOperation, parse_operation_id
from knock_mcp.settings import Settings
from knock_mcp.tls import default_tls_context

logger = logging.getLogger(__name__)

USER_AGENT = f"knock-mcp/{__version__}"
# An operation with 100,000 failed items is about 6 MB of JSON. 16 MiB leaves a wide margin, while a
# broken or hostile upstream cannot fill memory: validating 16 MiB (330,000 items) costs ~250 MB for a moment.
MIB = 1024 * 1024
MAX_RESPONSE_BYTES = 16 * MIB
# Bodies larger than this are validated in a worker thread so other calls keep being served.
VALIDATE_IN_THREAD_BYTES = 1 * MIB
# A Retry-After beyond a day is not a wait anyone will honour: treat it as garbled.
MAX_RETRY_AFTER_SECONDS = 86_400.0
# Error bodies are only read for a short explanation.
MAX_ERROR_BODY_BYTES = 64 * 1024
CONNECT_TIMEOUT = 5.0
_RETRYABLE_STATUSES = {408, 409, 429}


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one call tries: attempts, their timeout, backoff, and the deadline over all of it."""

    max_retries: int
    attempt_timeout: float
    call_deadline: float
    base_delay: float = 0.5
    max_delay: float = 8.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(
            max_retries=settings.max_retries,
            attempt_timeout=settings.attempt_timeout,
            call_deadline=settings.call_deadline,
        )

    def backoff(self, retry_number: int, jitter: float) -> float:
        """Exponential backoff as Knock's SDKs do it; `jitter` in [0, 1) scales it to 75-100 %."""
        delay: float = min(self.base_delay * 2 ** (retry_number - 1), self.max_delay)
        return delay * (0.75 + 0.25 * jitter)


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a `Retry-After` header (delay-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds) or seconds > MAX_RETRY_AFTER_SECONDS:
        return None
    return max(0.0, seconds)


def build_http_client(
    settings: Settings, transport: httpx2.AsyncBaseTransport | None = None
) -> httpx2.AsyncClient:
    """The process's one HTTP client for Knock, carrying the branch and User-Agent.

    It carries no key: each request sends the key it is made for, so one client (and its
    connection pool) serves every caller, whether the key is the server's or the caller's own.
    """
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if settings.branch:
        headers["X-Knock-Branch"] = settings.branch
    return httpx2.AsyncClient(
        base_url=settings.base_url,
        headers=headers,
        timeout=httpx2.Timeout(
            settings.attempt_timeout, connect=min(CONNECT_TIMEOUT, settings.attempt_timeout)
        ),
        follow_redirects=False,
        # With a transport of its own (the demo, in-memory tests) the client never opens a TLS
        # connection: no CA bundle to load, and a bad SSL_CERT_FILE cannot stop the demo.
        verify=default_tls_context() if transport is None else True,
        transport=transport,
    )


class AttemptGate(Protocol):
    """Paces every attempt to Knock against a budget shared beyond this client (a fleet's, through
    Redis), and shares the holds-off Knock asks for with `Retry-After`. Attempts are what Knock
    counts, so retries pass through the gate as first attempts do."""

    async def before_attempt(self, secret: str) -> float:
        """Reserve a turn for one request with this key; seconds until that turn comes."""

    async def held_off(self, secret: str, seconds: float) -> None:
        """Knock asked this key to hold off for `seconds`: no request with it before then."""


@dataclass(frozen=True)
class KnockNotice:
    """What a person at the client would want to know while a read is slow: that it is retried
    (after a 429 or 5xx, an unanswered or refused connection), or that knock-mcp gave up. `text`
    names the operation, the cause and the wait, never the key; `key` says whose read it was."""

    operation_id: str
    key: SecretStr = field(repr=False)
    text: str
    gave_up: bool


Report = Callable[[KnockNotice], Awaitable[None]]


@dataclass(frozen=True)
class _Request:
    """One read: which operation, with which key."""

    operation_id: str
    secret: str = field(repr=False)


class _TransientFailure(Exception):
    """An attempt failed in a way that another attempt may fix."""

    def __init__(self, cause: str, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.status = status
        self.retry_after = retry_after

    def as_error(self, attempts: int, now: datetime) -> KnockMcpError:
        if self.status == HTTPStatus.TOO_MANY_REQUESTS:
            return RateLimited(attempts, self.retry_after, now)
        return KnockUnavailable(self.cause, attempts, self.retry_after, now)


class KnockClient:
    """Reads bulk operations from Knock. Built once per process around the shared HTTP client.

    The key is an argument of each read, never state of the client, so that reads made with
    different keys cannot be confused.
    """

    def __init__(
        self,
        http: httpx2.AsyncClient,
        settings: Settings,
        *,
        policy: RetryPolicy | None = None,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        report: Report | None = None,
        gate: AttemptGate | None = None,
    ) -> None:
        """`report` hears of each retry and each call that gives up on Knock (the server tells the
        person at the client)."""
        self._http = http
        self._report = report
        self._gate = gate
        self._settings = settings
        self._policy = policy or RetryPolicy.from_settings(settings)
        self._jitter = jitter
        self._clock = clock
        self._wall_clock = wall_clock

    async def get_bulk_operation(self, raw_id: str, api_key: SecretStr | None) -> BulkOperation:
        """Fetch and validate one operation with `api_key`, retrying transient failures within the
        call deadline."""
        operation_id = parse_operation_id(raw_id)
        if api_key is None:
            raise MissingApiKey
        request = _Request(operation_id, api_key.get_secret_value())
        policy = self._policy
        deadline = self._clock() + policy.call_deadline
        attempt = 0
        while True:
            attempt += 1
            try:
                await self._wait_for_turn(request, attempt, deadline)
                return await self._attempt(request, deadline)
            except _TransientFailure as failure:
                if self._gate is not None and failure.retry_after is not None:
                    await self._gate.held_off(request.secret, failure.retry_after)
                remaining = deadline - self._clock()
                wait = failure.retry_after
                if wait is None:
                    wait = policy.backoff(attempt, self._jitter())
                if attempt > policy.max_retries or wait >= remaining:
                    error = failure.as_error(attempt, self._wall_clock())
                    await self._tell(api_key, operation_id, str(error), gave_up=True)
                    raise error from None
                asked = " as Knock's Retry-After asks" if failure.retry_after is not None else ""
                await self._tell(
                    api_key,
                    operation_id,
                    f"Reading bulk operation {operation_id} from Knock failed ({failure.cause}); retrying "
                    f"in {wait:.1f} s{asked} (attempt {attempt + 1} of at most {policy.max_retries + 1}).",
                    gave_up=False,
                )
                logger.info(
                    "Attempt %d for %s failed (%s); retrying in %.2f s",
                    attempt,
                    operation_id,
                    failure.cause,
                    wait,
                )
                await anyio.sleep(wait)

    async def _tell(self, key: SecretStr, operation_id: str, text: str, *, gave_up: bool) -> None:
        if self._report is not None:
            await self._report(KnockNotice(operation_id, key, text, gave_up))

    async def _wait_for_turn(self, request: _Request, attempt: int, deadline: float) -> None:
        """Wait for the gate's turn; a turn after the deadline ends the call as Knock's 429 would."""
        if self._gate is None:
            return
        wait = await self._gate.before_attempt(request.secret)
        if wait <= 0:
            return
        if wait >= deadline - self._clock():
            # The wait is a Retry-After that Knock gave this key (here or in another process of the
            # fleet), or a budget spent for longer than the call may last: either way, a 429.
            error = RateLimited(max(1, attempt - 1), wait, self._wall_clock())
            await self._tell(SecretStr(request.secret), request.operation_id, str(error), gave_up=True)
            raise error
        await anyio.sleep(wait)

    async def _attempt(self, request: _Request, deadline: float) -> BulkOperation:
        operation_id, secret = request.operation_id, request.secret
        remaining = deadline - self._clock()
        limit = min(self._policy.attempt_timeout, remaining)
        if limit == remaining:
            timed_out = (
                f"no answer within the {self._policy.call_deadline:g} s that one tool call may "
                "take (KNOCK_MCP_CALL_DEADLINE)"
            )
        else:
            timed_out = f"no answer within {limit:g} s (KNOCK_TIMEOUT)"
        if remaining <= 0:
            raise _TransientFailure(timed_out)
        timeout = httpx2.Timeout(limit, connect=min(CONNECT_TIMEOUT, limit))
        path = f"/v1/bulk_operations/{operation_id}"
        try:
            # httpx2's timeouts bound each read, not the whole body: this bounds the attempt.
            with anyio.fail_after(limit):
                async with self._http.stream(
                    "GET", path, timeout=timeout, headers={"Authorization": f"Bearer {secret}"}
                ) as response:
                    if response.status_code != HTTPStatus.OK:
                        error_body = await _read_capped(response, MAX_ERROR_BODY_BYTES, truncate=True) or b""
                        self._raise_for_status(request, response, error_body)
                    body = await _read_capped(response, MAX_RESPONSE_BYTES)
                    content_type = response.headers.get("content-type", "")
                if body is None:
                    raise InvalidResponse(
                        f"the answer is larger than {MAX_RESPONSE_BYTES // MIB} MiB, "
                        "the most knock-mcp will read"
                    )
                if len(body) < VALIDATE_IN_THREAD_BYTES:
                    return _parse_operation(request, body, content_type)
                return await anyio.to_thread.run_sync(
                    _parse_operation, request, body, content_type, abandon_on_cancel=True
                )
        except (TimeoutError, httpx2.TimeoutException):
            raise _TransientFailure(timed_out) from None
        except httpx2.DecodingError:
            raise InvalidResponse(
                "its body could not be decoded as its Content-Encoding header says"
            ) from None
        except httpx2.TransportError as error:
            cause = f"could not reach {self._settings.base_url} ({_describe_transport_error(error)})"
            if isinstance(error, httpx2.ConnectError):
                cause += "; if this persists, check KNOCK_BASE_URL"
            raise _TransientFailure(cause) from None

    def _raise_for_status(self, request: _Request, response: httpx2.Response, body: bytes) -> NoReturn:
        status = response.status_code
        detail = _explain_error_body(body, request.secret)
        if status == HTTPStatus.UNAUTHORIZED:
            raise AuthenticationFailed(detail)
        if status == HTTPStatus.FORBIDDEN:
            raise PermissionDenied(detail)
        if status == HTTPStatus.NOT_FOUND:
            raise OperationNotFound(request.operation_id, self._settings.branch)
        if status in _RETRYABLE_STATUSES or status >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"), self._wall_clock())
            raise _TransientFailure(
                f"HTTP {status} {_reason(status)}", status=status, retry_after=retry_after
            )
        raise UnexpectedStatus(status, detail)


def _parse_operation(request: _Request, body: bytes, content_type: str) -> BulkOperation:
    operation_id, secret = request.operation_id, request.secret
    try:
        operation = BulkOperation.model_validate_json(body)
    except ValidationError as error:
        problems = error.errors()
        if any("recursion limit" in problem["msg"] for problem in problems):
            raise InvalidResponse(
                "its JSON nests deeper than knock-mcp can read (the parser's recursion limit)"
            ) from None
        if any(problem["type"] == "json_invalid" for problem in problems):
            shown = content_type.split(";", maxsplit=1)[0].strip() or "no content type"
            raise InvalidResponse(
                f"Knock answered 200 OK with a body that is not JSON ({shown}: {_excerpt(body, secret)!r})"
            ) from None
        raise SchemaMismatch(_describe_validation_errors(error)) from None
    if str(operation.id) != operation_id:
        raise InvalidResponse(f"asked for operation {operation_id}, Knock answered about {operation.id}")
    return operation


async def _read_capped(response: httpx2.Response, limit: int, *, truncate: bool = False) -> bytes | None:
    """Read at most `limit` bytes, never holding more; None (or the first bytes) when the body is larger."""
    declared = response.headers.get("content-length", "")
    if not truncate and declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            if truncate:
                chunks.append(chunk[: limit - (size - len(chunk))])
                break
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _describe_validation_errors(error: ValidationError) -> list[str]:
    problems = []
    for problem in error.errors(include_url=False, include_input=False):
        location = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in problem["loc"])
        problems.append(f"{location.lstrip('.') or 'the answer'}: {problem['msg']}")
    return problems


def _explain_error_body(body: bytes, secret: str | None) -> str:
    """Knock's `message` when the body has one (several shapes exist), else a short excerpt."""
    try:
        payload = json.loads(body)
    except ValueError:
        return _excerpt(body, secret)
    if not payload:
        return ""
    message: object = None
    if isinstance(payload, dict):
        message = payload.get("message")
        errors = payload.get("errors")
        if message is None and isinstance(errors, list) and errors:
            first = errors[0]
            message = first.get("message") if isinstance(first, dict) else first
        if message is None:
            message = payload.get("error")
    if isinstance(message, str) and message.strip():
        return _excerpt(message.encode(), secret)
    return _excerpt(body, secret)


_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def _excerpt(body: bytes, secret: str | None, limit: int = 200) -> str:
    """One line of at most `limit` characters, HTML tags dropped, the key removed before cutting."""
    text = body.decode("utf-8", errors="replace")
    if secret:
        text = text.replace(secret, "[redacted]")
    text = _SPACE.sub(" ", _TAGS.sub(" ", text)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _describe_transport_error(error: httpx2.TransportError) -> str:
    text = str(error).strip()
    name = type(error).__name__
    return f"{name}: {text}" if text else name
