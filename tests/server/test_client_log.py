"""Log messages for the person at the client: one per retry or give-up, never a key, only to clients
of that key, at the level they asked for; in-process, over stdio and over HTTP, in both eras."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import LoggingMessageNotificationParams, PromptReference
from pydantic import SecretStr

from knock_mcp.server import create_server
from knock_mcp.settings import Settings
from tests.support.eras import ERAS
from tests.support.fake_knock import FakeKnock, Reply
from tests.support.http_server import SharedHttpServers, free_port
from tests.support.installed import KNOCK_MCP
from tests.support.keys import SECRET
from tests.support.payloads import load_fixture

pytestmark = pytest.mark.anyio

PROCESSING_ID = load_fixture("processing")["id"]
QUEUED_ID = load_fixture("queued")["id"]
OTHER_KEY = "sk_test_other_environment"


class Heard:
    def __init__(self) -> None:
        self.messages: list[LoggingMessageNotificationParams] = []

    async def __call__(self, params: LoggingMessageNotificationParams) -> None:
        self.messages.append(params)

    def levels_and_texts(self) -> list[tuple[str, str]]:
        return [(message.level, str(message.data)) for message in self.messages]


def rate_limited_then_unavailable() -> tuple[Reply, Reply]:
    return (
        Reply(429, f'{{"message": "slow down {SECRET}"}}'.encode(), {"Retry-After": "0"}),
        Reply(503, b"<html>Service Unavailable</html>"),
    )


async def test_a_2025_client_hears_each_retry_once_at_its_level(
    settings: Settings, fake_knock: FakeKnock
) -> None:
    heard = Heard()
    async with Client(create_server(settings), mode="legacy", logging_callback=heard) as client:
        assert client.server_capabilities.logging is not None
        await client.set_logging_level("warning")
        fake_knock.fail_next(*rate_limited_then_unavailable())
        result = await client.call_tool("summarize_bulk_operation", {"id": PROCESSING_ID})
        assert not result.is_error
        assert [level for level, _ in heard.levels_and_texts()] == ["warning", "warning"]
        (_, first), (_, second) = heard.levels_and_texts()
        assert "HTTP 429 Too Many Requests" in first
        assert "as Knock's Retry-After asks" in first
        assert PROCESSING_ID in first
        assert "HTTP 503" in second
        assert "Retry-After" not in second
        assert all(message.logger == "knock-mcp" for message in heard.messages)

        await client.set_logging_level("error")
        fake_knock.fail_next(Reply(503))
        await client.call_tool("summarize_bulk_operation", {"id": QUEUED_ID})
        assert len(heard.messages) == 2, "a retry is a warning, below the level asked for"
    assert all(SECRET not in text for _, text in heard.levels_and_texts())


async def test_knock_unreachable_is_one_error_after_the_retries(settings: Settings) -> None:
    unreachable = dataclasses.replace(settings, base_url=f"http://127.0.0.1:{free_port()}")
    heard = Heard()
    async with Client(create_server(unreachable), mode="legacy", logging_callback=heard) as client:
        await client.set_logging_level("debug")
        result = await client.call_tool("summarize_bulk_operation", {"id": PROCESSING_ID})
        assert result.is_error
    levels = [level for level, _ in heard.levels_and_texts()]
    assert levels == ["warning"] * settings.max_retries + ["error"]
    _, gave_up = heard.levels_and_texts()[-1]
    assert "could not reach" in gave_up
    assert SECRET not in gave_up


async def test_only_clients_of_the_same_key_hear_its_retries(
    settings: Settings, fake_knock: FakeKnock
) -> None:
    keys = {"a": SecretStr(SECRET), "b": SecretStr(OTHER_KEY)}
    serving = ["b"]
    server = create_server(settings, api_key=lambda: keys[serving[0]])
    heard_by_a, heard_by_b = Heard(), Heard()
    async with (
        Client(server, mode="legacy", logging_callback=heard_by_b) as as_b,
        Client(server, mode="legacy", logging_callback=heard_by_a) as as_a,
    ):
        await as_b.set_logging_level("debug")
        serving[0] = "a"
        await as_a.set_logging_level("debug")
        fake_knock.fail_next(Reply(500))
        assert not (await as_a.call_tool("get_bulk_operation", {"id": PROCESSING_ID})).is_error
    assert len(heard_by_a.messages) == 1
    assert heard_by_b.messages == []


@pytest.mark.parametrize("opted_in", ["warning", None])
async def test_a_2026_request_hears_its_own_retries_only_when_it_opted_in(
    settings: Settings, fake_knock: FakeKnock, opted_in: Literal["warning"] | None
) -> None:
    heard = Heard()
    async with Client(create_server(settings), log_level=opted_in, logging_callback=heard) as client:
        fake_knock.fail_next(Reply(502))
        assert not (await client.call_tool("summarize_bulk_operation", {"id": PROCESSING_ID})).is_error
    expected = 1 if opted_in else 0
    assert len(heard.messages) == expected
    assert all("HTTP 502" in text for _, text in heard.levels_and_texts())


@pytest.mark.shared_server("plain")
async def test_over_stateless_http_a_call_hears_its_own_retries_on_its_stream(
    shared_knock: FakeKnock, http_servers: SharedHttpServers
) -> None:
    """A 2025-11-25 call hears them unasked (its setLevel cannot outlive its request); a 2026-07-28
    call hears them because it opted in. (PROCESSING is not final, so each era's call asks Knock.)"""
    env = {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": shared_knock.base_url}
    server = http_servers.started(env)
    for mode in ERAS:
        heard = Heard()
        async with Client(
            streamable_http_client(server.mcp_url), mode=mode, log_level="warning", logging_callback=heard
        ) as client:
            await client.list_tools()  # so the call below is one request
            shared_knock.fail_next(Reply(429, headers={"Retry-After": "0"}))
            assert not (await client.call_tool("summarize_bulk_operation", {"id": PROCESSING_ID})).is_error
        assert [level for level, _ in heard.levels_and_texts()] == ["warning"], mode
        assert "HTTP 429" in heard.levels_and_texts()[0][1], mode
    logged = server.stderr()
    assert SECRET not in logged


async def test_over_stdio_a_2025_client_sets_a_level_and_hears_retries_without_the_key(
    fake_knock: FakeKnock, tmp_path: Path
) -> None:
    env = {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": fake_knock.base_url}
    parameters = StdioServerParameters(command=KNOCK_MCP, env=env)
    heard = Heard()
    with (tmp_path / "stderr.log").open("w") as errlog:
        connection = stdio_client(parameters, errlog=errlog)
        async with Client(connection, mode="legacy", logging_callback=heard) as client:
            await client.set_logging_level("warning")
            fake_knock.fail_next(*rate_limited_then_unavailable())
            assert not (await client.call_tool("get_bulk_operation", {"id": PROCESSING_ID})).is_error
            offered = await client.complete(
                PromptReference(name="retry_failed_items"), {"name": "id", "value": PROCESSING_ID[:4]}
            )
    assert [level for level, _ in heard.levels_and_texts()] == ["warning", "warning"]
    assert all(SECRET not in text for _, text in heard.levels_and_texts())
    assert offered.completion.values == [PROCESSING_ID]
    assert SECRET not in (tmp_path / "stderr.log").read_text()
