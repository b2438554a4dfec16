"""Every fault the fake Knock can inject, one at a time, through the server's tools.

Each fault ends in the right answer (when a retry can fix it) or a clear error (when none can), and
leaves nothing behind: no connection, task or file descriptor outlives the call, and the next call
works.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import replace

import pytest
from mcp import Client

from knock_mcp.errors import InvalidResponse
from knock_mcp.knock_client import MAX_RESPONSE_BYTES, KnockClient, build_http_client
from knock_mcp.models import BulkOperation
from knock_mcp.server import create_server
from knock_mcp.settings import Settings
from knock_mcp.views import DEFAULT_MAX_ERROR_ITEMS, bound_operation
from tests.support.fake_knock import OVERSIZED_BODY_BYTES, FakeKnock, Fault
from tests.support.keys import SECRET
from tests.support.payloads import load_fixture
from tests.support.results import text

pytestmark = pytest.mark.anyio

FAILED = load_fixture("failed")
FAILED_ID = FAILED["id"]

# What each fault must give: None for the right answer (a retry or a lenient read fixes it), else a
# phrase of the clear error.
EXPECTED_ERROR: dict[Fault, str | None] = {
    Fault.RATE_LIMITED: None,
    Fault.RATE_LIMITED_RETRY_SOON: None,
    Fault.RATE_LIMITED_RETRY_LATER: "Knock asked to wait 120 s: try again after",
    Fault.RATE_LIMITED_RETRY_GARBLED: None,
    Fault.INTERNAL_SERVER_ERROR: None,
    Fault.BAD_GATEWAY: None,
    Fault.SERVICE_UNAVAILABLE: None,
    Fault.GATEWAY_TIMEOUT: None,
    Fault.RESET_BEFORE_HEADERS: None,
    Fault.RESET_MID_BODY: None,
    Fault.STALL_BEFORE_HEADERS: None,
    Fault.STALL_MID_BODY: None,
    Fault.TRUNCATED_JSON: "Knock answered 200 OK with a body that is not JSON (application/json",
    Fault.WRONG_SHAPE: "does not match the bulk operation schema",
    Fault.HTML_200: "not JSON (text/html: 'Service temporarily unavailable Our servers",
    Fault.WRONG_CONTENT_TYPE: None,
    Fault.OVERSIZED_BODY: "the answer is larger than 16 MiB",
}


def test_every_fault_has_an_expected_outcome() -> None:
    assert set(EXPECTED_ERROR) == set(Fault)


def sockets_to(port: int) -> int:
    """This process's TCP sockets whose peer port is `port`: the Knock client's connections to the
    fake Knock. Counting every descriptor of the process instead would also count what other tests'
    threads in this worker open or close meanwhile."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target.removeprefix("socket:[").removesuffix("]"))
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            next(rows)  # the column names
            for row in rows:
                fields = row.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                    count += 1
    return count


def settles(condition: Callable[[], bool], within: float = 20.0) -> bool:
    """Whether `condition` holds within `within` seconds. The fake Knock's threads close their
    sockets a moment after the client hangs up, so this polls; it runs once the client is closed."""
    give_up = time.monotonic() + within
    while not condition():
        if time.monotonic() > give_up:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.parametrize("fault", list(Fault), ids=lambda fault: fault.name.lower())
async def test_a_fault_gives_the_answer_or_a_clear_error_and_leaves_nothing_behind(
    settings: Settings, fake_knock: FakeKnock, fault: Fault
) -> None:
    expected_view = bound_operation(BulkOperation.model_validate(FAILED), DEFAULT_MAX_ERROR_ITEMS)
    knock_port = int(fake_knock.base_url.rsplit(":", 1)[1].split("/")[0])
    tasks_before = len(asyncio.all_tasks())
    async with Client(create_server(settings)) as client:
        fake_knock.inject_next(fault)
        started = time.monotonic()
        result = await client.call_tool("get_bulk_operation", {"id": FAILED_ID})
        elapsed = time.monotonic() - started
        expected_error = EXPECTED_ERROR[fault]
        if expected_error is None:
            assert not result.is_error, text(result)
            assert result.structured_content == expected_view.model_dump(mode="json", by_alias=True)
            # JSON under another Content-Type is read as JSON; every other fault costs one retry.
            attempts = 1 if fault is Fault.WRONG_CONTENT_TYPE else 2
            assert len(fake_knock.requests) == attempts
        else:
            assert result.is_error
            assert expected_error in text(result)
            assert "Traceback" not in text(result)
            assert SECRET not in text(result)
            assert len(fake_knock.requests) == 1, "a fault a retry cannot fix is not retried"
            if fault is Fault.RATE_LIMITED_RETRY_LATER:
                # Returned at once rather than after the 120 s Knock asked for (generous for a busy machine).
                assert elapsed < 60
        after = await client.call_tool("get_bulk_operation", {"id": FAILED_ID})
        assert not after.is_error, text(after)
    assert fake_knock.faults_injected == {fault: 1}
    assert settles(lambda: fake_knock.open_connections == 0), "a connection was left open"
    assert settles(lambda: sockets_to(knock_port) == 0), "the client left a connection to Knock open"
    assert len(asyncio.all_tasks()) == tasks_before, "a task outlived the call"


async def test_a_200_mb_streamed_body_is_cut_at_the_cap_without_holding_it(
    settings: Settings, fake_knock: FakeKnock
) -> None:
    """Chunked with no Content-Length, so only reading with a cap can stop it, not a header check."""
    fake_knock.inject_next(Fault.OVERSIZED_BODY)
    tracemalloc.start()
    try:
        async with build_http_client(settings) as http:
            client = KnockClient(http, replace(settings, max_retries=0))
            with pytest.raises(InvalidResponse, match="larger than 16 MiB"):
                await client.get_bulk_operation(FAILED_ID, settings.api_key)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert settles(lambda: fake_knock.open_connections == 0)
    # The cap's worth is held once (the chunks read so far), never the 200 MB, nor a joined copy.
    sent = fake_knock.body_bytes_sent
    assert peak < MAX_RESPONSE_BYTES + 8 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB, sent {sent / 1e6:.1f} MB"
    # The client hung up soon after the cap: the fake wrote the cap plus what socket buffers took.
    assert fake_knock.body_bytes_sent < OVERSIZED_BODY_BYTES // 4
    print(
        f"\n200 MB chunked body: refused at the 16 MiB cap; peak traced memory {peak / 1e6:.1f} MB, "
        f"{sent / 1e6:.1f} MB sent by the fake before the client hung up\n"
    )
