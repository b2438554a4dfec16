"""The words of `knock-mcp call`: its help (every tool and its arguments, from the tools' own
schemas), reading `name=value` arguments, and what to say about an option in the wrong place."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import anyio

from knock_mcp.argument_check import expected_value
from knock_mcp.server import create_server
from knock_mcp.settings import Settings


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


def unrecognized_arguments(extras: Sequence[str], command: str | None) -> str:
    message = f"unrecognized arguments: {' '.join(extras)}"
    if command == "call":
        return (
            f"{message}. After `call` come the tool, its name=value arguments and --json, --demo or "
            "--log-level; other options of knock-mcp go before `call`"
        )
    return f"{message} (see knock-mcp --help)"


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


class CallHelp(argparse.Action):
    """`call --help`: the usual help, then the tools and their arguments."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str | None = None) -> None:
        super().__init__(
            option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, nargs=0, help=help
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        parser.print_help()
        print(f"\n{tools_help()}")
        parser.exit()
