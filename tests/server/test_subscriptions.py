"""Live updates for 2025-11-25 clients: resources/subscribe over a connection the server may speak on
(stdio, in-process), served from the same shared poll loop as listen streams, per key."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.session import IncomingMessage
from mcp.client.stdio import stdio_client
from mcp.server.mcpserver import MCPServer
from mcp.types import ResourceUpdatedNotification
from pydantic import SecretStr

from knock_mcp.server import create_server
from knock_mcp.settings import Settings
from knock_mcp.state import ServerState
from tests.support.fake_knock import Advancing, FakeKnock
from tests.support.http_server import SharedHttpServers, client_for
from tests.support.installed import KNOCK_MCP
from tests.support.keys import SECRET
from tests.support.payloads import LIVE_ID, load_fixture, stages
from tests.support.polling import QUICK, STEADY, eventually

pytestmark = pytest.mark.anyio

URI = f"knock://bulk_operations/{LIVE_ID}"
COMPLETED_URI = f"knock://bulk_operations/{load_fixture('completed')['id']}"


class Updates:
    """The `notifications/resources/updated` a client receives, in order."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._arrived = anyio.Event()

    async def __call__(self, message: IncomingMessage) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            self.uris.append(message.params.uri)
            self._arrived.set()

    async def next(self, seen: int) -> str:
        """The update after the first `seen`, once it arrives."""
        while len(self.uris) <= seen:
            self._arrived = anyio.Event()
            await self._arrived.wait()
        return self.uris[seen]


async def updates_until_completed(client: Client, updates: Updates, uri: str = URI) -> list[str]:
    """Subscribe to `uri` and collect its updates until a read shows it completed."""
    await client.subscribe_resource(uri)
    heard: list[str] = []
    with anyio.fail_after(30):
        while True:
            updated = await updates.next(len(heard))
            heard.append(updated)
            read = await client.read_resource(updated)
            if '"status":"completed"' in str(read.contents[0]):
                return heard


@asynccontextmanager
async def legacy_client(server: MCPServer[ServerState], updates: Updates) -> AsyncIterator[Client]:
    async with Client(server, mode="legacy", message_handler=updates) as client:
        yield client


async def test_a_subscriber_hears_each_change_until_the_final_state(
    settings: Settings, fake_knock: FakeKnock
) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages())
    updates = Updates()
    async with legacy_client(create_server(settings, poll_policy=QUICK), updates) as client:
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe is True
        heard = await updates_until_completed(client, updates)
        # The subscribe's own read saw `queued`; then four steps of processing and completed.
        assert heard == [URI] * 5
        polled = len(fake_knock.requests_for(LIVE_ID))
        await anyio.sleep(5 * QUICK.first_interval)
        assert len(fake_knock.requests_for(LIVE_ID)) == polled, "polling stops at the final state"


@pytest.mark.serial
async def test_unsubscribe_and_disconnect_stop_the_polling(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(), seconds_per_stage=60)
    server = create_server(settings, poll_policy=STEADY)
    async with legacy_client(server, Updates()) as client:
        await client.subscribe_resource(URI)
        await eventually(lambda: len(fake_knock.requests_for(LIVE_ID)) >= 2)
        await client.unsubscribe_resource(URI)
        await anyio.sleep(STEADY.first_interval)
        after_unsubscribe = len(fake_knock.requests_for(LIVE_ID))
        await anyio.sleep(3 * STEADY.first_interval)
        assert len(fake_knock.requests_for(LIVE_ID)) == after_unsubscribe
        # Unsubscribing again, or from what was never followed, is no error.
        await client.unsubscribe_resource(URI)

        await client.subscribe_resource(URI)
        await eventually(lambda: len(fake_knock.requests_for(LIVE_ID)) >= after_unsubscribe + 2)
    # The client went away while subscribed: its connection's teardown stops the loop.
    await anyio.sleep(STEADY.first_interval)
    after_disconnect = len(fake_knock.requests_for(LIVE_ID))
    await anyio.sleep(3 * STEADY.first_interval)
    assert len(fake_knock.requests_for(LIVE_ID)) == after_disconnect


@pytest.mark.serial
async def test_two_subscribes_at_once_leave_one_follower_that_unsubscribe_stops(
    settings: Settings, fake_knock: FakeKnock
) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(), seconds_per_stage=60)
    async with legacy_client(create_server(settings, poll_policy=STEADY), Updates()) as client:
        # Both requests are in flight together: each reads the operation before it answers.
        async with anyio.create_task_group() as both:
            both.start_soon(client.subscribe_resource, URI)
            both.start_soon(client.subscribe_resource, URI)
        await client.unsubscribe_resource(URI)
        await anyio.sleep(STEADY.first_interval)
        after_unsubscribe = len(fake_knock.requests_for(LIVE_ID))
        await anyio.sleep(3 * STEADY.first_interval)
        assert len(fake_knock.requests_for(LIVE_ID)) == after_unsubscribe, "a follower outlived unsubscribe"


async def test_subscribing_to_what_cannot_change_or_does_not_exist(
    settings: Settings, fake_knock: FakeKnock
) -> None:
    async with legacy_client(create_server(settings, poll_policy=QUICK), Updates()) as client:
        await client.subscribe_resource(COMPLETED_URI)  # final: accepted, nothing to follow
        await anyio.sleep(3 * QUICK.first_interval)
        assert len(fake_knock.requests) == 1
        unknown = "knock://bulk_operations/00000000-0000-4000-8000-000000000404"
        for uri, says in (
            (unknown, "has no bulk operation"),
            ("knock://bulk_operations/not-a-uuid", "not a"),
            ("test://watched-resource", "knock-mcp has no resource 'test://watched-resource'"),
        ):
            with pytest.raises(MCPError, match=says) as refused:
                await client.subscribe_resource(uri)
            assert refused.value.error.code == -32602


async def test_a_subscriber_never_hears_about_another_keys_operation(
    settings: Settings, fake_knock: FakeKnock
) -> None:
    """Key a's environment owns the operation. Key b's client subscribes to the same URI and must
    hear nothing, while a's subscription hears every change."""
    keys = {"a": SecretStr(SECRET), "b": SecretStr("sk_test_other_environment")}
    serving = ["b"]
    server = create_server(settings, api_key=lambda: keys[serving[0]], poll_policy=QUICK)
    fake_knock.operations[LIVE_ID] = Advancing(stages())
    fake_knock.owners[LIVE_ID] = SECRET
    heard_by_b = Updates()
    heard_by_a = Updates()
    async with legacy_client(server, heard_by_b) as as_b, legacy_client(server, heard_by_a) as as_a:
        with pytest.raises(MCPError, match="has no bulk operation"):
            await as_b.subscribe_resource(URI)  # b's environment has no such operation
        serving[0] = "a"
        # b's refused read consumed a stage of the fake operation: a hears the changes after it.
        assert await updates_until_completed(as_a, heard_by_a) == [URI] * 4
        await anyio.sleep(3 * QUICK.first_interval)
    assert heard_by_b.uris == []


async def test_a_2025_client_over_stdio_follows_an_operation_to_its_end(
    fake_knock: FakeKnock, tmp_path: Path
) -> None:
    """The real `knock-mcp` process, the way Claude Desktop runs it: subscribe, hear each change."""
    fake_knock.operations[LIVE_ID] = Advancing(stages(steps=2))
    env = {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": fake_knock.base_url}
    parameters = StdioServerParameters(command=KNOCK_MCP, env=env)
    updates = Updates()
    with (tmp_path / "stderr.log").open("w") as errlog:
        async with Client(
            stdio_client(parameters, errlog=errlog), mode="legacy", message_handler=updates
        ) as client:
            assert client.protocol_version == "2025-11-25"
            heard = await updates_until_completed(client, updates)
    # The subscribe's read saw the first stage; each later one is an update, as for a listen stream.
    assert heard == [URI] * 2
    assert SECRET not in (tmp_path / "stderr.log").read_text()


@pytest.mark.shared_server("plain")
async def test_stateless_http_refuses_a_subscription_and_says_how_to_follow_a_job(
    shared_knock: FakeKnock, http_servers: SharedHttpServers
) -> None:
    env = {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": shared_knock.base_url}
    server = http_servers.started(env)
    async with client_for(server, "legacy") as client:
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe is False
        with pytest.raises(MCPError, match="wait_for_bulk_operation") as refused:
            await client.subscribe_resource(URI)
        assert "subscriptions/listen" in refused.value.error.message
    assert shared_knock.requests == [], "a refused subscription never reaches Knock"
