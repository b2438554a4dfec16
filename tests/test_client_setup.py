"""The README's client setup snippets must work when pasted.

Every JSON snippet in "Use it from an MCP client" must parse, start the real command (`uvx knock-mcp`
or `knock-mcp`) with options the real command line accepts, and set only variables the server reads;
each client must have a snippet with a key and one for `--demo`. The `claude mcp add` and Inspector
commands are checked the same way.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from knock_mcp.cli import _parser
from test_distribution import variables_the_server_reads

ROOT = Path(__file__).parent.parent
SECTION_TITLE = "## Use it from an MCP client"
CLIENT_FORMATS = {"Claude Desktop": "mcpServers", "Cursor": "mcpServers", "VS Code": "servers"}
INPUT_REFERENCE = re.compile(r"\$\{input:([^}]+)\}")


def setup_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index(SECTION_TITLE)
    end = readme.find("\n## ", start + len(SECTION_TITLE))
    return readme[start : end if end != -1 else None]


def subsections() -> dict[str, str]:
    """The section's `### ` subsections by title."""
    parts = re.split(r"^### (.+)$", setup_section(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def inspector_version() -> str:
    """The Inspector version CI runs; the README must show the same one."""
    match = re.search(
        r'^INSPECTOR = "(@modelcontextprotocol/inspector@[^"]+)"$',
        (ROOT / ".ci" / "package_check.py").read_text(),
        flags=re.MULTILINE,
    )
    assert match
    return match.group(1)


def parse_command_line(options: list[str]) -> argparse.Namespace:
    """What `knock-mcp OPTIONS` would do; argparse exits on an option the command does not have."""
    try:
        return _parser().parse_args(options)
    except SystemExit:
        pytest.fail(f"knock-mcp does not accept {options}")


def check_stdio_server(command: str, args: list[str], env: dict[str, str]) -> bool:
    """Check one server entry; return whether it is the demo."""
    if command == "uvx":
        assert args[:1] == ["knock-mcp"], f"uvx must run the knock-mcp package, not {args[:1]}"
        options = args[1:]
    else:
        assert command == "knock-mcp", f"unknown command {command!r}"
        options = args
    parsed = parse_command_line(options)
    assert parsed.command is None, "a client must start the server, not `knock-mcp call`"
    assert getattr(parsed, "transport", None) in (None, "stdio")
    unknown = set(env) - variables_the_server_reads()
    assert not unknown, f"knock-mcp reads no {sorted(unknown)}"
    demo: bool = parsed.demo
    if demo:
        assert not env, "--demo never reads the environment: a key there would mislead"
    else:
        assert "KNOCK_API_KEY" in env, "without --demo the snippet must set the key"
    return demo


def check_json_config(config: dict[str, Any], servers_key: str) -> set[bool]:
    """Check a client config file; return the modes (demo or not) its servers cover."""
    assert set(config) <= {servers_key, "inputs"}, f"unexpected top-level keys {sorted(config)}"
    inputs = {entry["id"]: entry for entry in config.get("inputs", [])}
    modes = set()
    for server in config[servers_key].values():
        if servers_key == "servers":
            assert server["type"] == "stdio"
        env: dict[str, str] = server.get("env", {})
        for name, value in env.items():
            for reference in INPUT_REFERENCE.findall(value):
                assert reference in inputs, f"{name} refers to an undeclared input {reference!r}"
                if name == "KNOCK_API_KEY":
                    assert inputs[reference].get("password") is True, "the key's input must be a password"
        modes.add(check_stdio_server(server["command"], server.get("args", []), env))
    return modes


def claude_mcp_add(line: str) -> bool:
    """Check a `claude mcp add [options] NAME -- COMMAND ARGS`; return whether it is the demo."""
    words = shlex.split(line)
    assert words[:3] == ["claude", "mcp", "add"]
    assert "--" in words, "a stdio server's command follows `--`"
    separator = words.index("--")
    options = argparse.ArgumentParser(exit_on_error=False)
    options.add_argument("--transport", choices=("stdio",), default="stdio")
    options.add_argument("--env", "-e", action="append", default=[])
    options.add_argument("--scope", "-s", choices=("local", "user", "project"))
    options.add_argument("name")
    parsed = options.parse_args(words[3:separator])
    env = dict(assignment.split("=", 1) for assignment in parsed.env)
    command, *args = words[separator + 1 :]
    return check_stdio_server(command, args, env)


def test_the_section_has_every_client() -> None:
    assert set(subsections()) >= {*CLIENT_FORMATS, "Claude Code"}


@pytest.mark.parametrize("client", sorted(CLIENT_FORMATS))
def test_each_client_has_a_key_and_a_demo_snippet_that_parse(client: str) -> None:
    blocks = fenced(subsections()[client], "json")
    assert blocks, f"no JSON snippet for {client}"
    modes: set[bool] = set()
    for block in blocks:
        modes |= check_json_config(json.loads(block), CLIENT_FORMATS[client])
    assert modes == {True, False}, f"{client} needs a snippet with a key and one with --demo"


def test_every_json_snippet_in_the_section_is_checked() -> None:
    """No JSON snippet outside a client's subsection escapes the checks above."""
    checked = sum(len(fenced(subsections()[client], "json")) for client in CLIENT_FORMATS)
    assert len(fenced(setup_section(), "json")) == checked


def test_claude_code_commands_add_the_real_server() -> None:
    lines = [line for block in fenced(subsections()["Claude Code"], "sh") for line in block.splitlines()]
    assert lines
    assert {claude_mcp_add(line) for line in lines} == {True, False}


def test_inspector_commands_are_pinned_and_run_the_real_server() -> None:
    readme = (ROOT / "README.md").read_text()
    pinned = inspector_version()
    mentions = re.findall(r"@modelcontextprotocol/inspector\S*", readme)
    assert mentions
    assert set(mentions) == {pinned}, "the README must show the Inspector version CI runs"
    lines = [line for block in fenced(setup_section(), "sh") for line in block.splitlines() if pinned in line]
    assert lines
    for line in lines:
        words = shlex.split(line)
        assert words[:3] == ["npx", "-y", pinned], "npx -y never stops to ask"
        assert words[3] == "--cli"
        server = words[4 : words.index("--method")]
        check_stdio_server(server[0], server[1:], {} if "--demo" in server else {"KNOCK_API_KEY": "sk_..."})


def test_the_checks_catch_a_wrong_snippet() -> None:
    """The checks above have teeth: each of these mistakes fails them."""
    wrong: list[tuple[str, list[str], dict[str, str]]] = [
        ("uvx", ["knock_mcp"], {"KNOCK_API_KEY": "sk_..."}),
        ("uvx", ["knock-mcp", "--demo-mode"], {}),
        ("knock-mcp", [], {"KNOCK_KEY": "sk_..."}),
        ("knock-mcp", [], {}),
        ("knock-mcp", ["--demo"], {"KNOCK_API_KEY": "sk_..."}),
        ("knock-mcp", ["call", "summarize_bulk_operation"], {}),
        ("npx", ["knock-mcp"], {}),
    ]
    for command, args, env in wrong:
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            check_stdio_server(command, args, env)
    vs_code_plain_key = {
        "inputs": [{"type": "promptString", "id": "key"}],
        "servers": {
            "knock": {
                "type": "stdio",
                "command": "uvx",
                "args": ["knock-mcp"],
                "env": {"KNOCK_API_KEY": "${input:key}"},
            }
        },
    }
    with pytest.raises(AssertionError, match="password"):
        check_json_config(vs_code_plain_key, "servers")
