"""The MCP Bundle's manifest says what the server does: its version, tools, prompt and settings
agree with the package, and every setting reaches knock-mcp as a variable it reads.

CI builds, validates, unpacks and starts the bundle itself (.ci/bundle_check.py); these checks
need no Node and catch a manifest that drifted from the code at once.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import anyio
import pytest

from knock_mcp.server import create_server
from knock_mcp.settings import Settings

ROOT = Path(__file__).parents[2]
MANIFEST: dict[str, Any] = json.loads((ROOT / "bundle" / "manifest.json").read_text())


def test_the_manifest_has_the_packages_version() -> None:
    assert MANIFEST["version"] == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_the_manifest_declares_the_servers_tools_and_prompt() -> None:
    server = create_server(Settings(api_key=None))
    tools = anyio.run(server.list_tools)
    prompts = anyio.run(server.list_prompts)
    assert [tool["name"] for tool in MANIFEST["tools"]] == [tool.name for tool in tools]
    assert [(prompt["name"], prompt["arguments"]) for prompt in MANIFEST["prompts"]] == [
        (prompt.name, [argument.name for argument in prompt.arguments or []]) for prompt in prompts
    ]
    # A manifest prompt is static text (the CLI's schema requires it); it may use its arguments.
    for prompt in MANIFEST["prompts"]:
        used = set(re.findall(r"\$\{arguments\.(\w+)\}", prompt["text"]))
        assert used == set(prompt["arguments"])


def test_the_uv_server_starts_knock_mcp_from_the_bundled_entry_point() -> None:
    server = MANIFEST["server"]
    assert MANIFEST["manifest_version"] == "0.4"
    assert server["type"] == "uv"
    assert server["mcp_config"]["command"] == "uv"
    assert server["mcp_config"]["args"] == ["run", "--directory", "${__dirname}", server["entry_point"]]
    assert (ROOT / "bundle" / "main.py").read_text().endswith("from knock_mcp.cli import main\n\nmain()\n")


def test_the_key_is_a_sensitive_setting() -> None:
    key = MANIFEST["user_config"]["knock_api_key"]
    assert key["sensitive"] is True
    assert "sk_" in key["description"]


@pytest.mark.parametrize("name", sorted(MANIFEST["user_config"]))
def test_every_setting_is_optional_with_a_default_knock_mcp_reads_as_unset(name: str) -> None:
    """A setting left unset stays the literal `${user_config.NAME}` unless it has a default, and a
    required one left empty makes the host skip the server, which would leave no way to the demo."""
    setting = MANIFEST["user_config"][name]
    assert setting["required"] is False
    assert setting["default"] == ("" if setting["type"] == "string" else False)


def test_every_setting_reaches_a_variable_knock_mcp_reads() -> None:
    env = MANIFEST["server"]["mcp_config"]["env"]
    assert env == {
        "KNOCK_API_KEY": "${user_config.knock_api_key}",
        "KNOCK_BASE_URL": "${user_config.knock_base_url}",
        "KNOCK_BRANCH": "${user_config.knock_branch}",
        "KNOCK_MCP_DEMO": "${user_config.demo}",
    }
    assert {f"${{user_config.{name}}}" for name in MANIFEST["user_config"]} == set(env.values())
