"""The fleet's settings, and what one process does on its own: without a Redis URL it never loads
the Redis client, a final operation taken from the fleet expires with the shared copy, and with Redis
away a process spends only its share of the budget."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import pytest
from pydantic import SecretStr

from knock_mcp.cache import FinalOperationCache
from knock_mcp.errors import ConfigurationError
from knock_mcp.models import BulkOperation
from knock_mcp.redis_fleet import RedisFleet
from knock_mcp.settings import FleetSettings, load_settings
from tests.support.keys import SECRET
from tests.support.payloads import load_fixture
from tests.support.polling import eventually
from tests.support.redis_server import FLEET_SECRET, RedisServer

COMPLETED: dict[str, Any] = load_fixture("completed")


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"KNOCK_MCP_REDIS_URL": "redis://:hunter2@cache:6379/0"}, "KNOCK_MCP_FLEET_SECRET must be set"),
        (
            {"KNOCK_MCP_REDIS_URL": "redis://cache:6379/0", "KNOCK_MCP_FLEET_SECRET": "short"},
            "at least 32 characters",
        ),
        (
            {"KNOCK_MCP_REDIS_URL": "http://:hunter2@cache:6379", "KNOCK_MCP_FLEET_SECRET": FLEET_SECRET},
            "KNOCK_MCP_REDIS_URL must start with redis://",
        ),
        (
            {
                "KNOCK_MCP_REDIS_URL": "rediss://cache:6379/0",
                "KNOCK_MCP_FLEET_SECRET": FLEET_SECRET,
                "KNOCK_MCP_REQUESTS_PER_SECOND": "0",
            },
            "KNOCK_MCP_REQUESTS_PER_SECOND must be a number of requests per second from 1",
        ),
    ],
)
def test_a_fleet_setting_that_cannot_work_is_named_without_its_secrets(
    environ: dict[str, str], problem: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings(environ, fleet=True)
    assert problem in str(raised.value)
    assert "hunter2" not in str(raised.value)
    assert "short" not in str(raised.value).replace("shorter", "")


def test_without_a_redis_url_each_process_is_alone_and_over_stdio_always() -> None:
    configured = {"KNOCK_MCP_REDIS_URL": "redis://cache:6379/0", "KNOCK_MCP_FLEET_SECRET": FLEET_SECRET}
    assert load_settings({"KNOCK_MCP_FLEET_SECRET": FLEET_SECRET}, fleet=True).fleet is None
    assert load_settings(configured).fleet is None
    fleet = load_settings(configured, fleet=True).fleet
    assert fleet is not None
    assert fleet.requests_per_second == 100


def test_a_final_operation_from_the_fleet_expires_here_when_it_does_in_redis() -> None:
    now = [1000.0]
    cache = FinalOperationCache(max_age=600, clock=lambda: now[0])
    address = (b"fingerprint", COMPLETED["id"])
    cache.put(address, BulkOperation.model_validate(COMPLETED), age=590)
    now[0] += 9
    assert cache.get(address) is not None
    now[0] += 2
    assert cache.get(address) is None


@pytest.mark.anyio
async def test_while_redis_is_away_a_process_keeps_to_its_share_of_the_fleet_budget(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = FleetSettings(SecretStr(redis_server.url), SecretStr(FLEET_SECRET), requests_per_second=30)
    namespace = hmac.new(FLEET_SECRET.encode(), b"knock-mcp fleet", hashlib.sha256).hexdigest()[:16]
    async with RedisFleet(settings) as fleet:
        with redis_server.client() as redis_client:  # two more processes of the fleet beat their hearts
            redis_client.zadd(
                f"knock-mcp:{namespace}:processes", {"other-1": time.time(), "other-2": time.time()}
            )
        await eventually(lambda: fleet.health()["processes"] == 3)
        redis_server.stop()
        waits = [await fleet.gate.before_attempt(SECRET) for _ in range(4)]
        assert fleet.health()["sharing"] is False
    # 30 requests/s for the fleet, a third of it here: one every 0.1 s.
    assert waits == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=0.03)
    outages = [record for record in caplog.records if "is not answering" in record.getMessage()]
    assert len(outages) == 1
