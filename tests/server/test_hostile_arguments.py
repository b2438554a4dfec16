"""Hostile and odd tool arguments, for every tool the server lists: each gets a clear error and not
one request reaches Knock.

Values come from the tools' own input schemas, so a tool added later is covered without a change
here: random strings, unicode, control characters, a 10 MB string, every wrong JSON type, numbers
out of range, a missing required argument, and an argument the tool does not take.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, Tool

from knock_mcp.server import UNEXPECTED_FAILURE, create_server
from knock_mcp.settings import Settings
from tests.support.fake_knock import FakeKnock
from tests.support.installed import KNOCK_MCP
from tests.support.keys import SECRET
from tests.support.payloads import load_fixture
from tests.support.results import text

pytestmark = pytest.mark.anyio

COMPLETED_ID = load_fixture("completed")["id"]
TEN_MB = 10 * 1024 * 1024
# Short results only: an error must not echo a hostile value back at length.
MAX_ERROR_CHARS = 2000
ODD_STRINGS = [
    "",
    " ",
    "\t\n\r",
    "\x00",
    "\x1b[31mred\x1b[0m",
    "\u202eevil",
    "\u200b" * 36,
    "🦄" * 36,
    "ünïcødé-ïd",
    "导入任务",
    "../../../etc/passwd",
    f"{COMPLETED_ID}/../../v1/users",
    f"{COMPLETED_ID}?secret=1",
    f"{COMPLETED_ID}#x",
    f"%2e%2e/{COMPLETED_ID}",
    f"{COMPLETED_ID}\x00",
    f"{COMPLETED_ID}\n{COMPLETED_ID}",
    "https://api.knock.app/v1/bulk_operations/",
    "null",
    "0",
    "-1",
    "{}",
    "[]",
    "'; DROP TABLE bulk_operations; --",
    "{{7*7}}",
    "x" * TEN_MB,
    "\x00" * TEN_MB,
]
# Seeded, so a failure can be reproduced: mixes of ASCII, control characters, RTL and combining marks,
# astral characters and lone surrogates that JSON can carry.
_ALPHABET = [chr(code) for code in [*range(0, 128), 0x300, 0x5D0, 0x200D, 0xFEFF, 0x1F600, 0x10FFFF, 0xD800]]


def random_strings(count: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(_ALPHABET, k=rng.randint(1, 200))) for _ in range(count)]


WRONG_TYPES: dict[str, list[Any]] = {
    "string": [5, 1.5, True, None, [], ["x"], {}, {"id": COMPLETED_ID}],
    "integer": ["abc", "", 1.5, True, False, None, [], {}, 1e300, "1e400", "x" * TEN_MB],
    "number": ["abc", True, None, [], {}, "x" * TEN_MB],
    "boolean": ["maybe", 2, None, [], {}],
}


def assert_clear_error(result: CallToolResult, tool: str) -> str:
    assert result.is_error
    message = text(result)
    assert message.startswith(f"Error executing tool {tool}: ")
    assert len(message) <= MAX_ERROR_CHARS, message[:300]
    assert "Traceback" not in message
    assert UNEXPECTED_FAILURE not in message
    assert SECRET not in message
    # The SDK's own wording names pydantic's model class and links to pydantic's site.
    for raw in ("validation error", "Arguments\n", "[type=", "Input should", "errors.pydantic.dev"):
        assert raw not in message, message[:300]
    return message


def valid_arguments(tool: Tool) -> dict[str, Any]:
    """The required arguments, filled in with usable values."""
    required = tool.input_schema.get("required", [])
    assert set(required) <= {"id"}, f"teach this test a usable value for {tool.name}'s {required}"
    return {"id": COMPLETED_ID} if "id" in required else {}


# Arguments where any string is a meaningful value (a filter that may match nothing): an odd string
# there is answered, not refused. Every other string argument must refuse odd values before Knock.
FREE_TEXT = {("list_failed_items", "collection")}


def json_types(schema: dict[str, Any]) -> set[str]:
    """The JSON types a property accepts (`anyOf` unrolled, as pydantic writes `str | None`)."""
    if "type" in schema:
        return {schema["type"]}
    return {option["type"] for option in schema.get("anyOf", []) if "type" in option}


def hostile_cases(tool: Tool) -> list[tuple[str, dict[str, Any], bool]]:
    """(what, arguments, must be refused) for every property of the tool: every wrong JSON type,
    values out of its range, and odd strings where it takes a string."""
    properties: dict[str, dict[str, Any]] = tool.input_schema.get("properties", {})
    base = valid_arguments(tool)
    cases: list[tuple[str, dict[str, Any], bool]] = []
    for name, schema in properties.items():
        accepted = json_types(schema)
        values = [
            value
            for kind in accepted
            for value in WRONG_TYPES.get(kind, [])
            if not (value is None and "null" in accepted)
            and not (kind == "number" and isinstance(value, int))
        ]
        if "minimum" in schema:
            values += [schema["minimum"] - 1, -(2**70)]
        if "maximum" in schema:
            values += [schema["maximum"] + 1, 2**70]
        for value in values:
            cases.append((f"{name}={str(value)[:20]!r} ({type(value).__name__})", base | {name: value}, True))
        if "string" in accepted:
            free_text = (tool.name, name) in FREE_TEXT
            for index, value in enumerate([*ODD_STRINGS, *random_strings(100)]):
                # The SDK reads the string "null" as null where null is allowed (as some clients
                # send it): that is the argument left out, not a hostile value.
                refused = not free_text and not (value == "null" and "null" in accepted)
                cases.append((f"{name} odd string #{index}", base | {name: value}, refused))
    return cases


def test_ranges_are_published_in_json_schema_terms(settings: Settings) -> None:
    """pydantic writes "ge"/"le" when a validator wraps a constrained field the wrong way round; a
    model reading the schema knows only minimum/maximum."""
    for tool in anyio.run(create_server(settings).list_tools):
        for name, schema in tool.input_schema.get("properties", {}).items():
            assert not {"ge", "le", "gt", "lt"} & set(schema), f"{tool.name}.{name}: {schema}"


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[Client]:
    async with Client(create_server(settings)) as connected:
        yield connected


async def test_every_hostile_value_of_every_argument_is_refused_before_knock(
    client: Client, fake_knock: FakeKnock
) -> None:
    tools = (await client.list_tools()).tools
    rows = ["| Tool | Hostile values tried | Refused before Knock | Answered (free-text filter) |"]
    rows.append("| --- | ---: | ---: | ---: |")
    for tool in tools:
        tried = refused = answered = 0
        for what, arguments, must_be_refused in hostile_cases(tool):
            before = len(fake_knock.requests)
            result = await client.call_tool(tool.name, arguments)
            tried += 1
            if not must_be_refused and not result.is_error:
                assert len(text(result)) <= 200_000, f"{tool.name} {what}: an unbounded answer"
                answered += 1
                continue
            message = assert_clear_error(result, tool.name)
            assert len(fake_knock.requests) == before, f"{tool.name} {what} reached Knock: {message[:200]}"
            refused += 1
        assert tried > 100
        rows.append(f"| {tool.name} | {tried:,} | {refused:,} | {answered:,} |")
    print("\n### Hostile tool arguments (in-process)\n\n" + "\n".join(rows) + "\n")


@pytest.mark.parametrize(
    ("tool", "arguments", "sentence"),
    [
        (
            "wait_for_bulk_operation",
            {"timeout_seconds": 100},
            "timeout_seconds must be a number of seconds from 0 to 45 (got 100). Nothing was sent to Knock: "
            "correct it and call again.",
        ),
        ("wait_for_bulk_operation", {"timeout_seconds": "soon"}, 'from 0 to 45 (got "soon")'),
        (
            "get_bulk_operation",
            {"max_error_items": True},
            "max_error_items must be a whole number from 0 to 1,000",
        ),
        (
            "get_bulk_operation",
            {"error_items_offset": -1},
            "error_items_offset must be a whole number of at least 0",
        ),
        (
            "get_bulk_operation",
            {"id": 5},
            "id must be a UUID such as 123e4567-e89b-12d3-a456-426614174000 (got 5)",
        ),
        ("list_failed_items", {"limit": 0}, "limit must be a whole number from 1 to 1,000 (got 0)"),
        (
            "list_failed_items",
            {"cursor": "x" * TEN_MB},
            "cursor must be text of at most 8,000 characters, or null to leave it out (got text of 10,485",
        ),
    ],
)
async def test_a_bad_value_is_answered_in_a_sentence_from_the_tools_constraints(
    client: Client, fake_knock: FakeKnock, tool: str, arguments: dict[str, Any], sentence: str
) -> None:
    result = await client.call_tool(tool, {"id": COMPLETED_ID} | arguments)
    assert sentence in assert_clear_error(result, tool)
    assert fake_knock.requests == []


async def test_every_bad_value_of_a_call_is_named_at_once(client: Client) -> None:
    result = await client.call_tool(
        "list_failed_items", {"id": COMPLETED_ID, "limit": 5000, "collection": []}
    )
    message = assert_clear_error(result, "list_failed_items")
    assert "limit must be a whole number from 1 to 1,000 (got 5000); collection must be text" in message
    assert "correct them and call again." in message


async def test_a_missing_argument_names_what_the_tool_needs(client: Client, fake_knock: FakeKnock) -> None:
    for tool in (await client.list_tools()).tools:
        for required in tool.input_schema.get("required", []):
            arguments = valid_arguments(tool)
            del arguments[required]
            message = assert_clear_error(await client.call_tool(tool.name, arguments), tool.name)
            assert f"it needs {required!r}" in message
            assert "Its arguments are: " in message
    assert fake_knock.requests == []


async def test_an_argument_the_tool_does_not_take_is_refused_with_the_right_names(
    client: Client, fake_knock: FakeKnock
) -> None:
    """The SDK would drop it silently: a misspelt max_error_item=500 would quietly give 50 items."""
    for tool in (await client.list_tools()).tools:
        for extra in ({"bogus": 1}, {"max_error_item": 500}, {"ID": COMPLETED_ID}, {"x" * TEN_MB: 1}):
            arguments = valid_arguments(tool) | extra
            message = assert_clear_error(await client.call_tool(tool.name, arguments), tool.name)
            assert "it takes no argument" in message
            for parameter in tool.input_schema.get("properties", {}):
                assert parameter in message
    assert fake_knock.requests == []


async def test_valid_arguments_still_reach_knock(client: Client, fake_knock: FakeKnock) -> None:
    """The checks above refuse only what is wrong: the same tools with usable arguments answer."""
    result = await client.call_tool("get_bulk_operation", {"id": COMPLETED_ID, "max_error_items": "5"})
    assert not result.is_error, text(result)
    assert len(fake_knock.requests) == 1


async def test_a_10_mb_argument_over_stdio_is_refused_and_the_server_keeps_answering(
    fake_knock: FakeKnock, tmp_path: Path
) -> None:
    env = {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": fake_knock.base_url}
    with (tmp_path / "stderr.log").open("w") as errlog:
        async with Client(
            stdio_client(StdioServerParameters(command=KNOCK_MCP, env=env), errlog=errlog)
        ) as client:
            for value in ("\x00" * TEN_MB, "é" * TEN_MB):
                refused = await client.call_tool("summarize_bulk_operation", {"id": value})
                assert "is not a bulk operation id" in assert_clear_error(refused, "summarize_bulk_operation")
            assert fake_knock.requests == []
            answered = await client.call_tool("summarize_bulk_operation", {"id": COMPLETED_ID})
            assert not answered.is_error, text(answered)
    assert "Traceback" not in (tmp_path / "stderr.log").read_text()
