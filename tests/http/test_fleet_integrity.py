"""What a fleet process does with what it finds in Redis and did not write itself: a value altered,
or a genuine one moved under another operation's name, is refused and Knock asked instead; another
fleet's secret is reported; garbage among the secrets stops nothing. And a server without Redis never
loads the Redis client.

Unlike tests/http/test_fleet.py these bound no time and count only Knock's requests for calls made one
after another, so they need no chain of their own; those sharing a fleet run together on any one
worker."""

from __future__ import annotations

import json
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tests.support.fleet import (
    COMPLETED,
    SharedFleet,
    completed_as,
    fleet_env,
    health,
    operation_id,
    shared_fleet,
)
from tests.support.http_server import HttpServer, client_for
from tests.support.polling import eventually
from tests.support.results import structured

pytestmark = pytest.mark.anyio
# The tests that share `fleet_of_two` run on one worker, so that it starts once.
sharing_the_fleet = pytest.mark.xdist_group("fleet_integrity")


@pytest.fixture(scope="module")
def fleet_of_two(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedFleet]:
    """Two replicas that the tests asking them questions share (a replica costs one to two seconds of
    CPU just to start); a test that needs a replica set up otherwise starts it itself."""
    with shared_fleet(2, tmp_path_factory.mktemp("fleet")) as fleet:
        yield fleet


@sharing_the_fleet
async def test_a_value_altered_in_redis_is_refused_and_knock_asked_instead(fleet_of_two: SharedFleet) -> None:
    fake_knock, redis_server, (first, second) = fleet_of_two.knock, fleet_of_two.redis, fleet_of_two.replicas
    final = operation_id(500)
    fake_knock.operations[final] = completed_as(final)
    async with client_for(first, "auto") as client:
        original = structured(await client.call_tool("get_bulk_operation", {"id": final}))
    with redis_server.client() as inspect:
        stored = [
            name for name in inspect.scan_iter(match=f"*{final}*") if name.endswith((b":final", b":snapshot"))
        ]
        assert len(stored) == 2
        genuine = inspect.get(stored[0])
        assert isinstance(genuine, bytes)
        for name in stored:
            value = inspect.get(name)
            assert isinstance(value, bytes)
            head, body = value[:60], value[60:]
            altered = json.loads(zlib.decompress(body)) | {"success_count": 999_999}
            inspect.set(name, head + zlib.compress(json.dumps(altered).encode()), keepttl=True)
        # A genuine, signed value copied under another operation's name is refused too.
        elsewhere = operation_id(501)
        fake_knock.operations[elsewhere] = completed_as(elsewhere)
        inspect.set(stored[0].replace(final.encode(), elsewhere.encode()), genuine, px=60_000)
    refused_before = health(second)["refused_values"]
    async with client_for(second, "auto") as client:
        answer = structured(await client.call_tool("get_bulk_operation", {"id": final}))
        moved = structured(await client.call_tool("get_bulk_operation", {"id": elsewhere}))
    refused = health(second)["refused_values"] - refused_before
    log = second.stderr()
    assert answer == original
    assert answer["operation"]["success_count"] == COMPLETED["success_count"]
    assert moved["operation"]["id"] == elsewhere
    assert len(fake_knock.requests_for(final)) == 2
    assert len(fake_knock.requests_for(elsewhere)) == 1
    assert refused >= 2
    assert "Refused a value read from Redis (its signature does not match" in log


@sharing_the_fleet
async def test_another_fleet_secret_is_reported_and_garbage_among_the_secrets_stops_no_process(
    fleet_of_two: SharedFleet, tmp_path: Path
) -> None:
    """The set where each process notices another fleet's secret is the one key outside the fleet's
    signed namespace: anyone who can write to Redis can add to it, and the heartbeat that reads it
    must keep going through what it finds there."""
    fake_knock, redis_server, first = fleet_of_two.knock, fleet_of_two.redis, fleet_of_two.replicas[0]
    with redis_server.client() as garbler:
        garbler.zadd("knock-mcp:fleet-secrets", {b"\xff\xfe not text": time.time() + 3600})
    fake_knock.operations[COMPLETED["id"]] = COMPLETED
    other = fleet_env(fake_knock, redis_server) | {"KNOCK_MCP_FLEET_SECRET": "another-secret-" + "x" * 32}
    with HttpServer(other, tmp_path) as second:
        await eventually(lambda: all("problem" in health(server) for server in (first, second)), within=10)
        problem = health(second)["problem"]
        log = second.stderr()
        # The heartbeat read the garbage, and the process still serves calls and still shares.
        async with client_for(first, "auto") as client:
            summary = await client.call_tool("summarize_bulk_operation", {"id": COMPLETED["id"]})
        assert not summary.is_error, summary.content
        assert health(first)["sharing"] is True
    assert "different KNOCK_MCP_FLEET_SECRET" in problem
    assert "different KNOCK_MCP_FLEET_SECRET" in log
    assert "another-secret" not in log


@pytest.mark.anyio
async def test_without_redis_the_server_never_loads_the_redis_client() -> None:
    script = """
import sys
from knock_mcp.http.app import build_app
from knock_mcp.http.config import load_http_config
build_app(load_http_config({}), {"KNOCK_API_KEY": "sk_test_x"})
loaded = [name for name in sys.modules if name == "redis" or name.startswith("redis.")]
assert not loaded, loaded
"""
    completed = await anyio.run_process([sys.executable, "-c", script], check=False)
    assert completed.returncode == 0, completed.stderr.decode()
