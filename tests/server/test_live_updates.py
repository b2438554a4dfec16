"""Live updates: a listening client hears each change until the final state, from the shared loop."""

from __future__ import annotations

from collections.abc import AsyncIterable
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.subscriptions import ResourceUpdated
from mcp.server.mcpserver import MCPServer
from pydantic import SecretStr

from knock_mcp.live_updates import MAX_FOLLOWED_PER_STREAM
from knock_mcp.server import create_server
from knock_mcp.settings import Settings
from knock_mcp.state import ServerState
from tests.support.fake_knock import Advancing, FakeKnock
from tests.support.http_server import HttpServer, client_for
from tests.support.installed import KNOCK_MCP
from tests.support.keys import SECRET, TENANT_A, TENANT_B
from tests.support.payloads import LIVE_ID, stages
from tests.support.polling import QUICK, STEADY, eventually

pytestmark = pytest.mark.anyio

URI = f"knock://bulk_operations/{LIVE_ID}"


async def updates_until_final(client: Client, uri: str = URI) -> list[str]:
    heard: list[str] = []
    async with client.listen(resource_subscriptions=[uri]) as subscription:
        with anyio.fail_after(30):
            async for event in subscription:
                assert isinstance(event, ResourceUpdated)
                heard.append(event.uri)
                read = await client.read_resource(uri)
                if '"status":"completed"' in str(read.contents[0]):
                    break
    return heard


async def heard_while_another_follows(
    bystander: AsyncIterable[object], follower: Client, linger: float = 0.0
) -> tuple[list[object], list[str]]:
    """What an open listen stream (`bystander`) hears while `follower` listens to URI until it is
    final, and `linger` seconds after; and what `follower` heard."""
    heard_by_bystander: list[object] = []

    async def collect() -> None:
        async for event in bystander:
            heard_by_bystander.append(event)

    async with anyio.create_task_group() as group:
        group.start_soon(collect)
        heard_by_follower = await updates_until_final(follower)
        await anyio.sleep(linger)
        group.cancel_scope.cancel()
    return heard_by_bystander, heard_by_follower


async def test_a_listener_hears_each_change_until_the_final_state(
    settings: Settings, fake_knock: FakeKnock
) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages())
    async with Client(create_server(settings, poll_policy=QUICK)) as client:
        heard = await updates_until_final(client)
        # queued, then four steps of processing and completed: five changes after the first answer.
        assert heard == [URI] * 5
        polled = len(fake_knock.requests_for(LIVE_ID))
        await anyio.sleep(5 * QUICK.first_interval)
        assert len(fake_knock.requests_for(LIVE_ID)) == polled, "polling stops at the final state"


@pytest.mark.serial
async def test_polling_stops_when_the_listener_stops(settings: Settings, fake_knock: FakeKnock) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(), seconds_per_stage=60)
    async with Client(create_server(settings, poll_policy=STEADY)) as client:
        async with client.listen(
            resource_subscriptions=[URI, "knock://bulk_operations/nonsense", "other://x"]
        ):
            await eventually(lambda: len(fake_knock.requests_for(LIVE_ID)) >= 2)
        await anyio.sleep(STEADY.first_interval)
        after_one_interval = len(fake_knock.requests_for(LIVE_ID))
        await anyio.sleep(3 * STEADY.first_interval)
        assert len(fake_knock.requests_for(LIVE_ID)) == after_one_interval
        assert len(fake_knock.requests) == len(fake_knock.requests_for(LIVE_ID))


async def test_nothing_polls_without_a_listener_or_a_waiter(
    settings: Settings, fake_knock: FakeKnock
) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(), seconds_per_stage=60)
    async with Client(create_server(settings, poll_policy=QUICK)) as client:
        await client.read_resource(URI)
        await anyio.sleep(5 * QUICK.first_interval)
    assert len(fake_knock.requests) == 1


async def test_a_listener_never_hears_about_another_keys_operation(
    settings: Settings, fake_knock: FakeKnock
) -> None:
    """Key a's environment owns the operation; key b listens to the same URI and must hear nothing,
    though a's loop announces every change."""
    keys = {"a": SecretStr(SECRET), "b": SecretStr("sk_test_other_environment")}
    serving = ["b"]
    server: MCPServer[ServerState] = create_server(
        settings, api_key=lambda: keys[serving[0]], poll_policy=QUICK
    )
    fake_knock.operations[LIVE_ID] = Advancing(stages())
    fake_knock.owners[LIVE_ID] = SECRET
    async with Client(server) as client, client.listen(resource_subscriptions=[URI]) as as_b:
        serving[0] = "a"
        heard_by_b, heard_by_a = await heard_while_another_follows(
            as_b, client, linger=3 * QUICK.first_interval
        )
    assert heard_by_a
    assert set(heard_by_a) == {URI}
    assert heard_by_b == []
    by_b = [
        seen
        for seen in fake_knock.requests_for(LIVE_ID)
        if "other_environment" in seen.headers["Authorization"]
    ]
    # b's own loop asked with b's key and met Knock's 404; it keeps asking at the slowest pace
    # (an operation may not be visible yet), and never hears what a's loop learns.
    assert 1 <= len(by_b) < len(fake_knock.requests_for(LIVE_ID))


async def test_listening_over_stdio(fake_knock: FakeKnock, tmp_path: Path) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(steps=2))
    env = {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": fake_knock.base_url}
    parameters = StdioServerParameters(command=KNOCK_MCP, env=env)
    with (tmp_path / "stderr.log").open("w") as errlog:
        async with Client(stdio_client(parameters, errlog=errlog)) as client:
            heard = await updates_until_final(client)
    assert heard == [URI] * 2
    assert SECRET not in (tmp_path / "stderr.log").read_text()


async def test_listening_over_http_per_caller_key(fake_knock: FakeKnock, tmp_path: Path) -> None:
    """Over HTTP with each caller's own key: tenant A hears its operation advance; tenant B, listening
    to the same URI with a key of another environment, hears nothing."""
    fake_knock.operations[LIVE_ID] = Advancing(stages(steps=2))
    fake_knock.owners[LIVE_ID] = TENANT_A
    env = {"KNOCK_BASE_URL": fake_knock.base_url, "KNOCK_TIMEOUT": "2"}
    with HttpServer(env, tmp_path, ["--auth", "knock-key"]) as server:
        async with (
            client_for(server, "auto", {"Authorization": f"Bearer {TENANT_B}"}) as tenant_b,
            tenant_b.listen(resource_subscriptions=[URI]) as as_b,
            client_for(server, "auto", {"Authorization": f"Bearer {TENANT_A}"}) as tenant_a,
        ):
            heard_by_b, heard_by_a = await heard_while_another_follows(as_b, tenant_a)
        logged = server.stderr()
    assert heard_by_a
    assert set(heard_by_a) == {URI}
    assert heard_by_b == []
    for secret in (TENANT_A, TENANT_B):
        assert secret not in logged


async def test_one_stream_follows_at_most_a_hundred_operations(
    settings: Settings, fake_knock: FakeKnock, caplog: pytest.LogCaptureFixture
) -> None:
    uris = [
        f"knock://bulk_operations/{n:08d}-0000-4000-8000-000000000000"
        for n in range(MAX_FOLLOWED_PER_STREAM + 5)
    ]
    async with (
        Client(create_server(settings, poll_policy=QUICK)) as client,
        client.listen(resource_subscriptions=uris),
    ):
        await eventually(lambda: len({seen.path for seen in fake_knock.requests}) >= MAX_FOLLOWED_PER_STREAM)
        await anyio.sleep(3 * QUICK.first_interval)
    assert len({seen.path for seen in fake_knock.requests}) == MAX_FOLLOWED_PER_STREAM
    assert "more than 100 bulk operations" in caplog.text
