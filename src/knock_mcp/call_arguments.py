"""`knock-mcp call TOOL name=value ...` read without the SDK: the tool named, its `name=value`
arguments as the tool takes them, and `call --help`'s list of every tool and its arguments.

Everything here answers from `tool_arguments`, so that `call --help` and a mistake in a call are
answered before `mcp` is imported (most of a second of CPU).
"""

from __future__ import annotations

import json
from typing import Any

from knock_mcp.tool_arguments import TOOL_ARGUMENTS, expected_value, input_schema


class UsageError(Exception):
    """A command-line mistake: reported on stderr with exit status 2."""


def read_arguments(tool: str, assignments: list[str]) -> dict[str, Any]:
    """`tool`'s `name=value` pairs as tool arguments. A value is JSON (a number, true, ...) unless the
    tool takes text there. Raises `UsageError` for an unknown tool or a pair that is not one."""
    if tool not in TOOL_ARGUMENTS:
        raise UsageError(f"no tool named {tool!r}; the tools are: {', '.join(sorted(TOOL_ARGUMENTS))}")
    properties: dict[str, Any] = input_schema(tool).get("properties", {})
    arguments: dict[str, Any] = {}
    given: dict[str, str] = {}
    for assignment in assignments:
        name, separator, value = assignment.partition("=")
        if not separator or not name:
            raise UsageError(f"arguments are name=value pairs (e.g. id=<uuid>), not {assignment!r}")
        if name in given:
            # The last one would silently win: the caller meant one of them, and only they know which.
            raise UsageError(
                f"{name} is given twice ({given[name]!r} and {value!r}): give each argument once"
            )
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
    """Every tool and its arguments, worded from their input schemas."""
    lines = ["tools and their arguments (name=value):"]
    for tool in TOOL_ARGUMENTS:
        lines.append(f"  {tool}")
        schema = input_schema(tool)
        properties: dict[str, dict[str, Any]] = schema.get("properties", {})
        required = set(schema.get("required", []))
        for name, argument in properties.items():
            shown = f"{name} (required)" if name in required else name
            default = f" (default {json.dumps(argument['default'])})" if "default" in argument else ""
            lines.append(f"    {shown}: {expected_value(name, argument)}{default}")
    return "\n".join(lines)
