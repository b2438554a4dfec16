"""The server through the SDK's in-memory client, in both protocol eras."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver import MCPServer
from mcp.types import INVALID_PARAMS, CallToolResult, TextResourceContents
from pydantic import SecretStr

from knock_mcp.errors import ConfigurationError
from knock_mcp.models import BulkOperation
from knock_mcp.server import create_server
from knock_mcp.settings import Settings
from knock_mcp.state import ServerState, configured_key
from knock_mcp.summary import BulkOperationSummary
from knock_mcp.tool_arguments import TOOL_ARGUMENTS, input_schema
from knock_mcp.tracker import OperationTracker
from knock_mcp.views import BoundedOperation
from tests.support.fake_knock import FakeKnock, Reply
from tests.support.keys import SECRET
from tests.support.payloads import load_fixture
from tests.support.results import text

pytestmark = pytest.mark.anyio

SNAPSHOT = Path(__file__).parents[1] / "snapshots" / "tools.json"
COMPLETED = load_fixture("completed")
COMPLETED_ID = COMPLETED["id"]
MANY_ID = "77777777-7777-4777-8777-777777777777"


@pytest.fixture
async def client(settings: Settings, mode: str) -> AsyncIterator[Client]:
    async with Client(create_server(settings), mode=mode) as connected:
        yield connected


@pytest.fixture
def many_failures(fake_knock: FakeKnock) -> dict[str, Any]:
    items = [
        {"id": f"project_{n:05d}", "collection": ["projects", "teams", None][n % 3]} for n in range(12_000)
    ]
    payload = COMPLETED | {
        "id": MANY_ID,
        "error_count": 12_000,
        "error_items": items,
        "processed_rows": 50_000,
        "estimated_total_rows": 50_000,
        "success_count": 38_000,
    }
    fake_knock.operations[MANY_ID] = payload
    return payload


def output_size(result: CallToolResult) -> int:
    """Characters of the whole result: text plus structured content."""
    structured = json.dumps(result.structured_content, separators=(",", ":"), ensure_ascii=False)
    return len(text(result)) + len(structured)


async def test_tools_match_the_committed_snapshot(client: Client) -> None:
    """Any change to what the model sees shows in review. UPDATE_SNAPSHOTS=1 rewrites the file."""
    listed = (await client.list_tools()).tools
    current = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in listed]
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(json.dumps(current, indent=2) + "\n")
    assert current == json.loads(SNAPSHOT.read_text())


def test_the_command_line_knows_the_tools_and_their_arguments_as_the_server_publishes_them(
    settings: Settings,
) -> None:
    """`call --help` and the command line's usage errors answer from `tool_arguments`, without the
    SDK: the same tools in the same order, each with the input schema the server publishes."""
    listed = anyio.run(create_server(settings).list_tools)
    assert [tool.name for tool in listed] == list(TOOL_ARGUMENTS)
    for tool in listed:
        assert input_schema(tool.name) == tool.input_schema, tool.name


async def test_every_tool_is_titled_read_only_and_structured(client: Client) -> None:
    for tool in (await client.list_tools()).tools:
        assert tool.title
        assert tool.annotations is not None
        assert tool.annotations.read_only_hint is True
        assert tool.annotations.idempotent_hint is True
        assert tool.annotations.open_world_hint is True
        assert tool.annotations.destructive_hint is False
        assert tool.output_schema is not None
        assert tool.input_schema["required"] == ["id"]
        assert len(json.dumps(tool.model_dump(mode="json", by_alias=True))) < 8000


async def test_get_returns_the_validated_operation(client: Client) -> None:
    result = await client.call_tool("get_bulk_operation", {"id": COMPLETED_ID})
    assert not result.is_error
    view = BoundedOperation.model_validate(result.structured_content)
    assert view.operation.model_dump(mode="json", by_alias=True, exclude_unset=True) == COMPLETED
    assert (view.error_items_total, view.error_items_shown, view.error_items_omitted, view.note) == (
        3,
        3,
        0,
        None,
    )
    assert json.loads(text(result)) == result.structured_content


async def test_get_caps_error_items_everywhere_and_says_how_many_were_left_out(
    client: Client, many_failures: dict[str, Any]
) -> None:
    result = await client.call_tool("get_bulk_operation", {"id": MANY_ID})
    view = BoundedOperation.model_validate(result.structured_content)
    assert view.operation.error_items is not None
    assert [item.id for item in view.operation.error_items] == [f"project_{n:05d}" for n in range(50)]
    assert (view.error_items_total, view.error_items_shown, view.error_items_omitted) == (12_000, 50, 11_950)
    assert view.note == (
        "Showing failed items 1-50 of 12,000. Call get_bulk_operation again with error_items_offset=50 "
        "for the next ones (max_error_items takes up to 1,000); to resubmit failed items, list_failed_items "
        "gives just their ids, by collection."
    )
    assert json.loads(text(result)) == result.structured_content
    raw_size = len(json.dumps(many_failures))
    assert output_size(result) * 25 <= raw_size


@pytest.mark.parametrize(("cap", "shown"), [(0, 0), (1, 1), (1000, 1000)])
async def test_the_caller_can_raise_or_lower_the_cap(
    client: Client, many_failures: dict[str, Any], cap: int, shown: int
) -> None:
    result = await client.call_tool("get_bulk_operation", {"id": MANY_ID, "max_error_items": cap})
    view = BoundedOperation.model_validate(result.structured_content)
    assert view.error_items_shown == shown
    assert view.error_items_omitted == 12_000 - shown


@pytest.mark.parametrize("cap", [-1, 1001, "lots"])
async def test_a_cap_out_of_range_is_refused(client: Client, fake_knock: FakeKnock, cap: object) -> None:
    result = await client.call_tool("get_bulk_operation", {"id": COMPLETED_ID, "max_error_items": cap})
    assert result.is_error
    assert "max_error_items" in text(result)
    assert fake_knock.requests == []


async def test_summarize_returns_text_and_the_same_facts(client: Client) -> None:
    result = await client.call_tool("summarize_bulk_operation", {"id": COMPLETED_ID})
    assert not result.is_error
    summary = BulkOperationSummary.model_validate(result.structured_content)
    assert summary.failure_count == 3
    assert summary.percent_complete == 100
    body = text(result)
    assert body.startswith("Bulk delete users (`users.delete`) has completed: 100 % done.")
    assert "997 succeeded, 3 failed." in body


async def test_summarize_stays_short_for_12000_failures(
    client: Client, many_failures: dict[str, Any]
) -> None:
    result = await client.call_tool("summarize_bulk_operation", {"id": MANY_ID})
    assert len(text(result)) < 1500
    assert "12,000 failed" in text(result)


async def test_resource_reads_the_bounded_operation(client: Client, many_failures: dict[str, Any]) -> None:
    result = await client.read_resource(f"knock://bulk_operations/{MANY_ID}")
    (contents,) = result.contents
    assert isinstance(contents, TextResourceContents)
    assert contents.mime_type == "application/json"
    view = BoundedOperation.model_validate_json(contents.text)
    assert view.error_items_omitted == 11_950


async def test_resource_template_is_listed(client: Client) -> None:
    (template,) = (await client.list_resource_templates()).resource_templates
    assert template.uri_template == "knock://bulk_operations/{id}"
    assert template.mime_type == "application/json"


@pytest.mark.parametrize("uri_id", ["not-a-uuid", "99999999-9999-4999-8999-999999999999"])
async def test_resource_not_found_is_invalid_params(client: Client, uri_id: str) -> None:
    with pytest.raises(MCPError) as raised:
        await client.read_resource(f"knock://bulk_operations/{uri_id}")
    assert raised.value.error.code == INVALID_PARAMS
    assert "bulk operation" in raised.value.error.message


async def test_resource_upstream_failures_carry_the_explanation(
    client: Client, fake_knock: FakeKnock
) -> None:
    fake_knock.fail_next(Reply(401, b'{"message": "bad key"}'))
    with pytest.raises(MCPError) as raised:
        await client.read_resource(f"knock://bulk_operations/{COMPLETED_ID}")
    assert "Knock rejected the API key" in raised.value.error.message


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(401, b"{}"), "Knock rejected the API key (401 Unauthorized). Check that KNOCK_API_KEY"),
        (Reply(403, b"{}"), "Knock refused access (403 Forbidden)"),
        (Reply(404, b"{}"), f"Knock has no bulk operation {COMPLETED_ID}"),
        (Reply(200, b"<html>oops</html>"), "not JSON"),
        (Reply(200, json.dumps(COMPLETED | {"success_count": "n/a"}).encode()), "success_count"),
        (Reply(429, b"{}", {"Retry-After": "3600"}), "Knock asked to wait 3,600 s"),
    ],
)
async def test_every_failure_is_a_clear_tool_error_without_the_key(
    client: Client, fake_knock: FakeKnock, caplog: pytest.LogCaptureFixture, reply: Reply, expected: str
) -> None:
    caplog.set_level(logging.DEBUG)
    for tool in ("get_bulk_operation", "summarize_bulk_operation"):
        fake_knock.fail_next(reply)
        result = await client.call_tool(tool, {"id": COMPLETED_ID})
        assert result.is_error
        assert result.structured_content is None
        assert expected in text(result)
        assert SECRET not in text(result)
    assert "Traceback" not in caplog.text
    assert SECRET not in caplog.text


async def test_an_invalid_id_is_refused_before_any_request(client: Client, fake_knock: FakeKnock) -> None:
    result = await client.call_tool("summarize_bulk_operation", {"id": "../../v1/users"})
    assert result.is_error
    assert "'../../v1/users' is not a bulk operation id" in text(result)
    assert fake_knock.requests == []


async def test_without_a_key_the_server_runs_and_explains(settings: Settings, fake_knock: FakeKnock) -> None:
    async with Client(create_server(replace(settings, api_key=None))) as client:
        assert len((await client.list_tools()).tools) == 4
        result = await client.call_tool("summarize_bulk_operation", {"id": COMPLETED_ID})
    assert result.is_error
    assert "KNOCK_API_KEY is not set" in text(result)
    assert fake_knock.requests == []


async def test_a_configuration_error_is_reported_by_every_call(mode: str) -> None:
    problem = ConfigurationError(["KNOCK_TIMEOUT must be a number of seconds from 0.1 to 300, not 'x'"])
    server: MCPServer[ServerState] = create_server(problem)
    async with Client(server, mode=mode) as client:
        result = await client.call_tool("get_bulk_operation", {"id": COMPLETED_ID})
        assert result.is_error
        assert "- KNOCK_TIMEOUT must be a number of seconds" in text(result)
        with pytest.raises(MCPError, match="KNOCK_TIMEOUT"):
            await client.read_resource(f"knock://bulk_operations/{COMPLETED_ID}")


async def test_instructions_guide_the_model(settings: Settings) -> None:
    async with Client(create_server(settings), mode="legacy") as client:
        assert client.instructions is not None
        assert "ask the user for the operation id" in client.instructions


async def test_paging_reaches_items_past_the_first_thousand(
    client: Client, many_failures: dict[str, Any]
) -> None:
    arguments = {"id": MANY_ID, "max_error_items": 1000, "error_items_offset": 11_500}
    view = BoundedOperation.model_validate(
        (await client.call_tool("get_bulk_operation", arguments)).structured_content
    )
    assert view.operation.error_items is not None
    assert view.operation.error_items[0].id == "project_11500"
    assert view.error_items_shown == 500


@pytest.mark.parametrize(
    "arguments", [{"max_error_items": True}, {"max_error_items": 2.5}, {"error_items_offset": -1}, {"id": 42}]
)
async def test_wrongly_typed_arguments_are_refused(
    client: Client, fake_knock: FakeKnock, arguments: dict[str, Any]
) -> None:
    result = await client.call_tool("get_bulk_operation", {"id": COMPLETED_ID} | arguments)
    assert result.is_error
    assert fake_knock.requests == []


async def test_an_unexpected_failure_is_still_a_clear_error(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: httpx2.Request) -> httpx2.Response:
        raise RuntimeError("a bug somewhere below")

    async with Client(create_server(settings, transport=httpx2.MockTransport(broken))) as client:
        result = await client.call_tool("summarize_bulk_operation", {"id": COMPLETED_ID})
        assert result.is_error
        assert "knock-mcp failed unexpectedly; this is a bug in knock-mcp" in text(result)
        with pytest.raises(MCPError, match="failed unexpectedly"):
            await client.read_resource(f"knock://bulk_operations/{COMPLETED_ID}")
    assert "a bug somewhere below" in caplog.text


def test_the_server_state_never_shows_the_key(settings: Settings) -> None:
    async def never(operation_id: str, key: SecretStr | None) -> BulkOperation:
        raise AssertionError("not called")

    state = ServerState(
        tracker=OperationTracker(never), api_key=configured_key(settings), now=lambda: datetime.now(UTC)
    )
    assert SECRET not in repr(state)


async def test_numbers_sent_as_strings_are_accepted(client: Client, many_failures: dict[str, Any]) -> None:
    arguments = {"id": MANY_ID, "max_error_items": "3", "error_items_offset": 10.0}
    view = BoundedOperation.model_validate(
        (await client.call_tool("get_bulk_operation", arguments)).structured_content
    )
    assert (view.error_items_offset, view.error_items_shown) == (10, 3)


async def test_the_last_redaction_catches_a_key_in_any_error(settings: Settings) -> None:
    def echoing(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError(f"proxy refused {request.headers['Authorization']}")

    async with Client(create_server(settings, transport=httpx2.MockTransport(echoing))) as client:
        result = await client.call_tool("summarize_bulk_operation", {"id": COMPLETED_ID})
    assert result.is_error
    assert "could not reach" in text(result)
    assert "Bearer [redacted]" in text(result)
    assert SECRET not in text(result)
