"""`knock-mcp call`: one tool run in this process through the SDK's in-memory client, the reading of
its `name=value` arguments, and `call --help`'s list of every tool and its arguments, worded from
the tools' own schemas.

This is where the command line meets the SDK and the server: `cli` imports this module only to run a
call or to show `call --help`, so that --help, --version and a usage error do without them.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import anyio
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.types import TextContent

from knock_mcp.argument_check import expected_value
from knock_mcp.server import create_server
from knock_mcp.settings import Settings
from knock_mcp.state import ServerState
from knock_mcp.terminal import progress_line_for

EXIT_TOOL_ERROR = 1


class UsageError(Exception):
    """A command-line mistake: reported on stderr with exit status 2."""


def run_call(server: MCPServer[ServerState], tool: str, assignments: list[str], as_json: bool) -> int:
    """Run one tool and print its result; a reader that stops early (`| head`) is a normal end, not
    a crash."""
    try:
        status: int = anyio.run(_call, server, tool, assignments, as_json)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would report the broken pipe again when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status


async def _call(server: MCPServer[ServerState], tool: str, assignments: list[str], as_json: bool) -> int:
    progress = progress_line_for(sys.stderr)
    on_progress = progress.update if progress is not None else None
    try:
        async with Client(server) as client:
            tools = {listed.name: listed for listed in (await client.list_tools()).tools}
            listed = tools.get(tool)
            # Usage errors are raised outside the client: inside, its task group would wrap them.
            arguments = parse_arguments(assignments, listed.input_schema) if listed else None
            result = (
                await client.call_tool(tool, arguments, progress_callback=on_progress)
                if isinstance(arguments, dict)
                else None
            )
    finally:
        if progress is not None:
            progress.finish()
    if result is None:
        if listed is None:
            raise UsageError(f"no tool named {tool!r}; the tools are: {', '.join(sorted(tools))}")
        raise UsageError(str(arguments))
    text = "\n".join(block.text for block in result.content if isinstance(block, TextContent))
    if result.is_error:
        print(text, file=sys.stderr)
        return EXIT_TOOL_ERROR
    print(json.dumps(result.structured_content, indent=2, ensure_ascii=False) if as_json else text)
    return 0


def parse_arguments(assignments: list[str], input_schema: dict[str, Any]) -> dict[str, Any] | str:
    """`name=value` pairs as tool arguments, or what is wrong with them. A value is JSON (a number,
    true, ...) unless the tool takes text there."""
    properties: dict[str, Any] = input_schema.get("properties", {})
    arguments: dict[str, Any] = {}
    given: dict[str, str] = {}
    for assignment in assignments:
        name, separator, value = assignment.partition("=")
        if not separator or not name:
            return f"arguments are name=value pairs (e.g. id=<uuid>), not {assignment!r}"
        if name in given:
            # The last one would silently win: the caller meant one of them, and only they know which.
            return f"{name} is given twice ({given[name]!r} and {value!r}): give each argument once"
        given[name] = value
        if _takes_text(properties.get(name, {})):
            arguments[name] = value
            continue
        try:
            arguments[name] = json.loads(value)
        except ValueError:
            arguments[name] = value
    return arguments


def _takes_text(schema: dict[str, Any]) -> bool:
    """A string parameter, or one that is a string or null (pydantic writes `str | None` as anyOf)."""
    options = schema.get("anyOf", [schema])
    return any(option.get("type") == "string" for option in options)


def tools_help() -> str:
    """Every tool and its arguments, worded from the schemas the tools publish."""
    tools = anyio.run(create_server(Settings(api_key=None)).list_tools)
    lines = ["tools and their arguments (name=value):"]
    for tool in tools:
        lines.append(f"  {tool.name}")
        properties: dict[str, dict[str, Any]] = tool.input_schema.get("properties", {})
        required = set(tool.input_schema.get("required", []))
        for name, schema in properties.items():
            shown = f"{name} (required)" if name in required else name
            default = f" (default {json.dumps(schema['default'])})" if "default" in schema else ""
            lines.append(f"    {shown}: {expected_value(name, schema)}{default}")
    return "\n".join(lines)
