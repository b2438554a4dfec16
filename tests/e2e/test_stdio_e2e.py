"""End to end: spawn the installed `knock-mcp` over stdio, as a chat client does."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent

from knock_mcp.demo import DEMO_OPERATIONS, DemoOperation
from tests.support.fake_knock import FakeKnock, Reply
from tests.support.installed import KNOCK_MCP
from tests.support.keys import SECRET
from tests.support.payloads import load_fixture
from tests.support.results import text

pytestmark = pytest.mark.anyio

COMPLETED_ID = load_fixture("completed")["id"]
PROCESSING_ID = load_fixture("processing")["id"]


def server(env: dict[str, str], errlog: TextIO, *args: str, mode: str = "auto") -> Client:
    parameters = StdioServerParameters(command=KNOCK_MCP, args=["--log-level", "debug", *args], env=env)
    return Client(stdio_client(parameters, errlog=errlog), mode=mode)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_stdio_server_answers_and_never_leaks_the_key(
    fake_knock: FakeKnock, tmp_path: Path, mode: str
) -> None:
    stderr_path = tmp_path / "stderr.log"
    env = {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": fake_knock.base_url}
    with stderr_path.open("w") as errlog:
        async with server(env, errlog, mode=mode) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert tools == {
                "get_bulk_operation",
                "summarize_bulk_operation",
                "wait_for_bulk_operation",
                "list_failed_items",
            }
            summary = await client.call_tool("summarize_bulk_operation", {"id": COMPLETED_ID})
            assert not summary.is_error
            assert isinstance(summary.content[0], TextContent)
            assert "has completed" in summary.content[0].text
            fake_knock.fail_next(Reply(401, f'{{"message": "bad key {SECRET}"}}'.encode()))
            # Another operation: the completed one is now answered from the cache, without Knock.
            failed = await client.call_tool("get_bulk_operation", {"id": PROCESSING_ID})
            assert failed.is_error
            assert isinstance(failed.content[0], TextContent)
            assert SECRET not in failed.content[0].text
            resource = await client.read_resource(f"knock://bulk_operations/{COMPLETED_ID}")
            assert resource.contents
    logged = stderr_path.read_text()
    assert "bulk_operations" in logged, "debug logging should have reached stderr"
    assert SECRET not in logged
    assert "Traceback" not in logged


async def test_without_a_key_the_server_starts_and_warns(tmp_path: Path) -> None:
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("w") as errlog:
        async with server({}, errlog) as client:
            result = await client.call_tool("summarize_bulk_operation", {"id": COMPLETED_ID})
    assert result.is_error
    assert "KNOCK_API_KEY is not set" in stderr_path.read_text()


@dataclass(frozen=True)
class DemoSession:
    """What one `knock-mcp --demo` over stdio (legacy era, default log level) answered: its
    instructions, a summary of every demo operation, and all it wrote on stderr."""

    instructions: str | None
    summaries: dict[str, CallToolResult]
    stderr: str


@pytest.fixture(scope="module")
def demo_session(tmp_path_factory: pytest.TempPathFactory) -> DemoSession:
    """One process for every question to the demo: each spawn costs a second of CPU importing the SDK."""
    stderr_path = tmp_path_factory.mktemp("demo") / "stderr.log"

    async def ask() -> tuple[str | None, dict[str, CallToolResult]]:
        parameters = StdioServerParameters(command=KNOCK_MCP, args=["--demo"], env={})
        with stderr_path.open("w") as errlog:
            async with Client(stdio_client(parameters, errlog=errlog), mode="legacy") as client:
                summaries = {
                    operation.id: await client.call_tool("summarize_bulk_operation", {"id": operation.id})
                    for operation in DEMO_OPERATIONS
                }
                return client.instructions, summaries

    instructions, summaries = anyio.run(ask)
    return DemoSession(instructions, summaries, stderr_path.read_text())


def test_demo_over_stdio_lists_its_ids_in_the_instructions(demo_session: DemoSession) -> None:
    assert demo_session.instructions is not None
    assert "de300000-0000-4000-8000-000000000006" in demo_session.instructions


@pytest.mark.parametrize("operation", DEMO_OPERATIONS, ids=lambda operation: operation.id[-1])
def test_every_demo_operation_summarizes(demo_session: DemoSession, operation: DemoOperation) -> None:
    summary = demo_session.summaries[operation.id]
    assert not summary.is_error, text(summary)
    assert f"Operation {operation.id}." in text(summary)
    assert demo_session.stderr == ""
