"""The Knock client against a real loopback server (and a mock transport where a socket cannot fake it)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import anyio
import httpx2
import pytest
from pydantic import SecretStr

from knock_mcp import __version__
from knock_mcp.errors import (
    AuthenticationFailed,
    InvalidOperationId,
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
from knock_mcp.knock_client import KnockClient, RetryPolicy, build_http_client, parse_retry_after
from knock_mcp.settings import Settings
from tests.support.fake_knock import FakeKnock, Reply
from tests.support.keys import SECRET
from tests.support.payloads import load_fixture

pytestmark = pytest.mark.anyio

PROCESSING = load_fixture("processing")
PROCESSING_ID = PROCESSING["id"]


@asynccontextmanager
async def knock_client(
    settings: Settings, transport: httpx2.AsyncBaseTransport | None = None
) -> AsyncIterator[KnockClient]:
    policy = replace(RetryPolicy.from_settings(settings), base_delay=0.01, max_delay=0.05)
    async with build_http_client(settings, transport) as http:
        yield KnockClient(http, settings, policy=policy)


async def fetch_error(settings: Settings, operation_id: str = PROCESSING_ID) -> KnockMcpError:
    async with knock_client(settings) as client:
        with pytest.raises(KnockMcpError) as raised:
            await client.get_bulk_operation(operation_id, settings.api_key)
    return raised.value


def error_body(status: int, message: str) -> bytes:
    return json.dumps({"code": "x", "message": message, "status": status, "type": "x"}).encode()


async def test_reads_an_operation_with_the_right_request(settings: Settings, fake_knock: FakeKnock) -> None:
    settings = replace(settings, branch="feature-x")
    async with knock_client(settings) as client:
        operation = await client.get_bulk_operation(PROCESSING_ID.upper(), settings.api_key)
    assert operation.processed_rows == 400
    (seen,) = fake_knock.requests
    assert seen.path == f"/v1/bulk_operations/{PROCESSING_ID}"
    assert seen.headers["Authorization"] == f"Bearer {SECRET}"
    assert seen.headers["User-Agent"] == f"knock-mcp/{__version__}"
    assert seen.headers["X-Knock-Branch"] == "feature-x"


async def test_each_read_sends_the_key_it_was_given(settings: Settings, fake_knock: FakeKnock) -> None:
    async with knock_client(settings) as client:
        await client.get_bulk_operation(PROCESSING_ID, SecretStr("sk_tenant_one"))
        await client.get_bulk_operation(PROCESSING_ID, SecretStr("sk_tenant_two"))
    assert [seen.headers["Authorization"] for seen in fake_knock.requests] == [
        "Bearer sk_tenant_one",
        "Bearer sk_tenant_two",
    ]


async def test_a_base_url_with_a_path_prefix_is_kept(settings: Settings) -> None:
    seen: list[str] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(str(request.url))
        return httpx2.Response(200, json=PROCESSING)

    settings = replace(settings, base_url="https://proxy.example.com/knock")
    async with knock_client(settings, httpx2.MockTransport(handler)) as client:
        await client.get_bulk_operation(PROCESSING_ID, settings.api_key)
    assert seen == [f"https://proxy.example.com/knock/v1/bulk_operations/{PROCESSING_ID}"]


@pytest.mark.parametrize(
    "bad_id", ["../../v1/users", "", "123", f"{PROCESSING_ID}/../x", f"{PROCESSING_ID}?a=1"]
)
async def test_a_bad_id_makes_no_request(settings: Settings, fake_knock: FakeKnock, bad_id: str) -> None:
    assert isinstance(await fetch_error(settings, bad_id), InvalidOperationId)
    assert fake_knock.requests == []


async def test_a_missing_key_makes_no_request(settings: Settings, fake_knock: FakeKnock) -> None:
    error = await fetch_error(replace(settings, api_key=None))
    assert isinstance(error, MissingApiKey)
    assert "KNOCK_API_KEY" in str(error)
    assert fake_knock.requests == []


@pytest.mark.parametrize(
    ("status", "error_type", "advice"),
    [
        (401, AuthenticationFailed, "KNOCK_API_KEY"),
        (403, PermissionDenied, "environment"),
        (400, UnexpectedStatus, "KNOCK_BASE_URL"),
        (422, UnexpectedStatus, "HTTP 422"),
    ],
)
async def test_client_errors_are_typed_and_not_retried(
    settings: Settings, fake_knock: FakeKnock, status: int, error_type: type[KnockMcpError], advice: str
) -> None:
    fake_knock.fail_next(Reply(status, error_body(status, "Knock says no")))
    error = await fetch_error(settings)
    assert isinstance(error, error_type)
    assert advice in str(error)
    assert "Knock says no" in str(error)
    assert len(fake_knock.requests) == 1


async def test_not_found_explains_environments(settings: Settings, fake_knock: FakeKnock) -> None:
    missing = "99999999-9999-4999-8999-999999999999"
    error = await fetch_error(replace(settings, branch="feature-x"), missing)
    assert isinstance(error, OperationNotFound)
    assert missing in str(error)
    assert "development key cannot see production" in str(error)
    assert "'feature-x'" in str(error)
    assert len(fake_knock.requests) == 1


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retried(settings: Settings, fake_knock: FakeKnock, status: int) -> None:
    fake_knock.fail_next(Reply(status, b"{}"), Reply(status, b"{}"))
    async with knock_client(settings) as client:
        operation = await client.get_bulk_operation(PROCESSING_ID, settings.api_key)
    assert str(operation.id) == PROCESSING_ID
    assert len(fake_knock.requests) == 3


async def test_server_errors_give_up_after_the_retries(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.fail_next(*[Reply(503, b"<html>down</html>", {"Content-Type": "text/html"})] * 3)
    error = await fetch_error(settings)
    assert isinstance(error, KnockUnavailable)
    assert "HTTP 503 Service Unavailable" in str(error)
    assert "3 attempts" in str(error)
    assert len(fake_knock.requests) == 3


async def test_max_retries_zero_means_one_attempt(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.fail_next(Reply(500, b"{}"))
    error = await fetch_error(replace(settings, max_retries=0))
    assert "1 attempt" in str(error)
    assert len(fake_knock.requests) == 1


async def test_rate_limit_honours_retry_after(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.fail_next(Reply(429, b"{}", {"Retry-After": "1"}))
    async with knock_client(settings) as client:
        await client.get_bulk_operation(PROCESSING_ID, settings.api_key)
    first, second = fake_knock.requests
    assert second.at - first.at >= 0.95


async def test_rate_limit_exhausted_says_when_to_retry(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.fail_next(*[Reply(429, b"{}", {"Retry-After": "0"})] * 3)
    error = await fetch_error(settings)
    assert isinstance(error, RateLimited)
    assert "429" in str(error)
    assert "3 attempts" in str(error)
    assert "try again" in str(error)


@pytest.mark.serial
# Named ids: the date is two hours from now, and xdist needs the same test names in every worker.
@pytest.mark.parametrize(
    "retry_after",
    ["120", format_datetime(datetime.now(UTC) + timedelta(hours=2), usegmt=True)],
    ids=["seconds", "http-date"],
)
async def test_a_retry_after_beyond_the_deadline_returns_at_once(
    settings: Settings, fake_knock: FakeKnock, retry_after: str
) -> None:
    fake_knock.fail_next(Reply(429, b"{}", {"Retry-After": retry_after}))
    started = time.monotonic()
    error = await fetch_error(settings)
    assert time.monotonic() - started < 1
    assert isinstance(error, RateLimited)
    assert "Knock asked to wait" in str(error)
    assert re.search(r"try again after \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\.", str(error))
    assert len(fake_knock.requests) == 1


@pytest.mark.parametrize("retry_after", ["1000000000000", "1e300", "Wed, 21 Oct 2099 07:28:00 GMT"])
async def test_a_retry_after_beyond_a_day_is_ignored(
    settings: Settings, fake_knock: FakeKnock, retry_after: str
) -> None:
    fake_knock.fail_next(Reply(503, b"{}", {"Retry-After": retry_after}))
    async with knock_client(settings) as client:
        await client.get_bulk_operation(PROCESSING_ID, settings.api_key)
    assert len(fake_knock.requests) == 2


async def test_a_zero_retry_after_says_to_retry_now(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.fail_next(*[Reply(503, b"{}", {"Retry-After": "0"})] * 3)
    assert "try again now" in str(await fetch_error(settings))


async def test_a_garbled_retry_after_falls_back_to_backoff(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.fail_next(Reply(429, b"{}", {"Retry-After": "soon-ish"}))
    async with knock_client(settings) as client:
        await client.get_bulk_operation(PROCESSING_ID, settings.api_key)
    assert len(fake_knock.requests) == 2


async def test_connection_refused_is_retried_then_explained(settings: Settings) -> None:
    with FakeKnock() as closed:
        address = closed.base_url
    error = await fetch_error(replace(settings, base_url=address))
    assert isinstance(error, KnockUnavailable)
    assert f"could not reach {address}" in str(error)
    assert "3 attempts" in str(error)


async def test_a_reset_connection_is_retried(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.fail_next(Reply(reset=True))
    async with knock_client(settings) as client:
        operation = await client.get_bulk_operation(PROCESSING_ID, settings.api_key)
    assert str(operation.id) == PROCESSING_ID
    assert len(fake_knock.requests) == 2


async def test_a_stalled_attempt_times_out_and_is_retried(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.fail_next(Reply(stall_seconds=1.5))
    async with knock_client(replace(settings, attempt_timeout=0.5)) as client:
        operation = await client.get_bulk_operation(PROCESSING_ID, settings.api_key)
    assert str(operation.id) == PROCESSING_ID
    assert len(fake_knock.requests) == 2


@pytest.mark.serial
async def test_the_call_deadline_bounds_every_attempt(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.fail_next(*[Reply(stall_seconds=3)] * 3)
    settings = replace(settings, attempt_timeout=10, call_deadline=1.0)
    started = time.monotonic()
    error = await fetch_error(settings)
    elapsed = time.monotonic() - started
    assert isinstance(error, KnockUnavailable)
    assert "no answer within the 1 s that one tool call may take" in str(error)
    assert elapsed < 2.5


async def test_an_html_page_with_200_is_not_json(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.fail_next(
        Reply(200, b"<html><body><h1>Gateway</h1> maintenance</body></html>", {"Content-Type": "text/html"})
    )
    error = await fetch_error(settings)
    assert isinstance(error, InvalidResponse)
    assert "not JSON (text/html: 'Gateway maintenance')" in str(error)
    assert len(fake_knock.requests) == 1


async def test_truncated_json_is_not_json(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.fail_next(Reply(200, json.dumps(PROCESSING).encode()[:40]))
    assert isinstance(await fetch_error(settings), InvalidResponse)


async def test_json_with_a_wrong_content_type_is_accepted(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.fail_next(Reply(200, json.dumps(PROCESSING).encode(), {"Content-Type": "text/plain"}))
    async with knock_client(settings) as client:
        assert (await client.get_bulk_operation(PROCESSING_ID, settings.api_key)).processed_rows == 400


async def test_a_schema_mismatch_names_the_fields(settings: Settings, fake_knock: FakeKnock) -> None:
    broken = PROCESSING | {"status": "paused", "error_items": [{"collection": None}]}
    fake_knock.fail_next(Reply(200, json.dumps(broken).encode()))
    error = await fetch_error(settings)
    assert isinstance(error, SchemaMismatch)
    assert "status: Input should be 'queued', 'processing', 'completed' or 'failed'" in str(error)
    assert "error_items[0].id: Field required" in str(error)


async def test_json_of_the_wrong_shape_is_a_schema_mismatch(
    settings: Settings, fake_knock: FakeKnock
) -> None:
    fake_knock.fail_next(Reply(200, b"[1, 2, 3]"))
    error = await fetch_error(settings)
    assert isinstance(error, SchemaMismatch)
    assert "the answer: Input should be an object" in str(error)


async def test_an_answer_about_another_operation_is_refused(
    settings: Settings, fake_knock: FakeKnock
) -> None:
    fake_knock.fail_next(Reply(200, json.dumps(load_fixture("queued")).encode()))
    error = await fetch_error(settings)
    assert isinstance(error, InvalidResponse)
    assert "Knock answered about" in str(error)


async def test_an_oversized_body_is_refused_without_reading_it_all(settings: Settings) -> None:
    sent_chunks = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent_chunks
        while True:
            sent_chunks += 1
            yield b" " * 1024 * 1024

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=endless())

    async with knock_client(settings, httpx2.MockTransport(handler)) as client:
        with pytest.raises(InvalidResponse, match="larger than 16 MiB"):
            await client.get_bulk_operation(PROCESSING_ID, settings.api_key)
    assert sent_chunks == 17


async def test_redirects_are_not_followed(settings: Settings, fake_knock: FakeKnock) -> None:
    with FakeKnock() as elsewhere:
        fake_knock.fail_next(Reply(302, b"", {"Location": f"{elsewhere.base_url}/steal"}))
        error = await fetch_error(settings)
        assert elsewhere.requests == []
    assert isinstance(error, UnexpectedStatus)
    assert "HTTP 302" in str(error)


async def test_the_key_is_redacted_from_echoed_error_bodies(
    settings: Settings, fake_knock: FakeKnock
) -> None:
    echo = f"<html>bad gateway; you sent Authorization: Bearer {SECRET}</html>".encode()
    fake_knock.fail_next(Reply(401, echo, {"Content-Type": "text/html"}))
    error = await fetch_error(settings)
    assert SECRET not in str(error)
    assert "[redacted]" in str(error)


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (error_body(401, "The API key is invalid"), "The API key is invalid"),
        (b'{"errors": [{"message": "bad key"}]}', "bad key"),
        (b'{"error": "nope"}', "nope"),
        (b"plain words", "plain words"),
        (b"", "401 Unauthorized)"),
    ],
)
async def test_error_bodies_of_every_shape_explain_themselves(
    settings: Settings, fake_knock: FakeKnock, body: bytes, detail: str
) -> None:
    fake_knock.fail_next(Reply(401, body))
    assert detail in str(await fetch_error(settings))


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling() -> None:
    policy = RetryPolicy(max_retries=5, attempt_timeout=1, call_deadline=10)
    assert [policy.backoff(n, jitter=1.0) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1, 2, 4, 8, 8]
    assert policy.backoff(1, jitter=0.0) == 0.375


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        (None, None),
        ("3", 3.0),
        (" 2.5 ", 2.5),
        ("-4", 0.0),
        ("soon", None),
        ("nan", None),
        ("inf", None),
        ("Sat, 28 Nov 2026 12:00:30 GMT", 30.0),
        ("Sat, 28 Nov 2026 11:00:00 GMT", 0.0),
    ],
)
def test_retry_after_parsing(header: str | None, seconds: float | None) -> None:
    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(header, now) == seconds


async def test_the_key_goes_only_to_the_base_url(settings: Settings, fake_knock: FakeKnock) -> None:
    """progress_path is data: even an absolute one pointing elsewhere is never requested."""
    with FakeKnock() as elsewhere:
        payload = PROCESSING | {"progress_path": f"{elsewhere.base_url}/v1/bulk_operations/{PROCESSING_ID}"}
        fake_knock.operations[PROCESSING_ID] = payload
        async with knock_client(settings) as client:
            operation = await client.get_bulk_operation(PROCESSING_ID, settings.api_key)
        assert operation.progress_path == payload["progress_path"]
        assert elsewhere.requests == []
    assert all(seen.path.startswith("/v1/bulk_operations/") for seen in fake_knock.requests)


async def test_a_body_that_cannot_be_decoded_is_explained(settings: Settings) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=b"not gzip at all", headers={"Content-Encoding": "gzip"})

    async with knock_client(settings, httpx2.MockTransport(handler)) as client:
        with pytest.raises(InvalidResponse, match="could not be decoded"):
            await client.get_bulk_operation(PROCESSING_ID, settings.api_key)


async def test_a_declared_oversized_body_is_refused_before_reading(settings: Settings) -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=b"{}", headers={"Content-Length": str(200 * 1024 * 1024)})

    async with knock_client(settings, httpx2.MockTransport(handler)) as client:
        with pytest.raises(InvalidResponse, match="larger than 16 MiB"):
            await client.get_bulk_operation(PROCESSING_ID, settings.api_key)


@pytest.mark.serial
async def test_a_large_valid_body_is_read(settings: Settings, fake_knock: FakeKnock) -> None:
    """Over 1 MiB the body is validated in a worker thread; the answer is the same."""
    items = [{"id": f"user_{n:06d}", "collection": None} for n in range(40_000)]
    fake_knock.operations[PROCESSING_ID] = PROCESSING | {"error_items": items, "error_count": 40_000}
    async with knock_client(settings) as client:
        operation = await client.get_bulk_operation(PROCESSING_ID, settings.api_key)
    assert operation.error_items is not None
    assert operation.error_items[-1].id == "user_039999"


@pytest.mark.serial
async def test_a_trickling_body_is_cut_off_by_the_attempt_timeout(settings: Settings) -> None:
    """Each byte arrives well within the read timeout, but the whole body never does in time."""
    attempts = 0

    async def trickle() -> AsyncIterator[bytes]:
        for byte in json.dumps(PROCESSING).encode():
            await anyio.sleep(0.05)
            yield bytes([byte])

    def handler(request: httpx2.Request) -> httpx2.Response:
        nonlocal attempts
        attempts += 1
        return httpx2.Response(200, content=trickle())

    settings = replace(settings, attempt_timeout=0.3, max_retries=1)
    started = time.monotonic()
    async with knock_client(settings, httpx2.MockTransport(handler)) as client:
        with pytest.raises(KnockUnavailable, match=r"no answer within 0.3 s \(KNOCK_TIMEOUT\)"):
            await client.get_bulk_operation(PROCESSING_ID, settings.api_key)
    assert attempts == 2
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"inserted_at": "0001-01-01T00:00:00+01:00"}, "inserted_at"),
        ({"updated_at": "9999-12-31T23:59:59-01:00"}, "updated_at"),
        ({"processed_rows": 10**400}, "processed_rows"),
    ],
)
async def test_values_out_of_range_are_schema_mismatches(
    settings: Settings, fake_knock: FakeKnock, change: dict[str, object], field: str
) -> None:
    fake_knock.fail_next(Reply(200, json.dumps(PROCESSING | change).encode()))
    error = await fetch_error(settings)
    assert isinstance(error, SchemaMismatch)
    assert field in str(error)


async def test_a_connection_failure_points_at_the_base_url(settings: Settings) -> None:
    with FakeKnock() as closed:
        address = closed.base_url
    assert "check KNOCK_BASE_URL" in str(
        await fetch_error(replace(settings, base_url=address, max_retries=0))
    )


async def test_json_nested_too_deep_is_not_called_invalid(settings: Settings, fake_knock: FakeKnock) -> None:
    deep: object = 1
    for _ in range(300):
        deep = [deep]
    fake_knock.fail_next(Reply(200, json.dumps(PROCESSING | {"future_field": deep}).encode()))
    error = await fetch_error(settings)
    assert isinstance(error, InvalidResponse)
    assert "nests deeper than knock-mcp can read" in str(error)


async def test_overlong_names_are_schema_mismatches(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.fail_next(Reply(200, json.dumps(PROCESSING | {"name": "x" * 5000}).encode()))
    error = await fetch_error(settings)
    assert isinstance(error, SchemaMismatch)
    assert "name: String should have at most 2000 characters" in str(error)
