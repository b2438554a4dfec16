"""Facts about the repository that must not drift: the README's commands and CI."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jsonschema

import knock_mcp

ROOT = Path(__file__).parent.parent


def readme_commands() -> list[str]:
    return re.findall(r"```sh\n(.+?)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_the_readme_test_command() -> None:
    test_command = readme_commands()[1]
    assert "pytest" in test_command
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_the_readme_first_command_runs_the_demo() -> None:
    assert "knock-mcp --demo call" in readme_commands()[0]


def test_one_version_everywhere() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    server = json.loads((ROOT / "server.json").read_text())
    versions = {project["version"], server["version"], knock_mcp.__version__}
    versions |= {package["version"] for package in server["packages"]}
    assert versions == {knock_mcp.__version__}


def test_the_readme_names_the_registry_entry() -> None:
    server = json.loads((ROOT / "server.json").read_text())
    assert f"<!-- mcp-name: {server['name']} -->" in (ROOT / "README.md").read_text()


def test_server_json_matches_the_registry_schema() -> None:
    """Against a committed copy of the registry's published schema, so the test never goes online."""
    schema = json.loads((ROOT / "tests" / "fixtures" / "registry" / "server.schema.json").read_text())
    assert schema["$id"] == "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
    jsonschema.Draft7Validator(schema).validate(json.loads((ROOT / "server.json").read_text()))


def test_server_json_lists_every_variable_the_server_reads() -> None:
    server = json.loads((ROOT / "server.json").read_text())
    listed = {variable["name"] for variable in server["packages"][0]["environmentVariables"]}
    read = set(re.findall(r'"(KNOCK_[A-Z_]+)"', (ROOT / "src" / "knock_mcp" / "settings.py").read_text()))
    assert listed == read
