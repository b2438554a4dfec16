"""What the MCP Registry and PyPI publish about knock-mcp must be true of the code.

`server.json` is checked offline against a committed copy of the registry's schema (draft-07), plus
the registry's rules that the schema does not express; its variables against what `load_settings`
really reads; and the version, name, licence and changelog against each other.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

import knock_mcp
from knock_mcp.errors import ConfigurationError
from knock_mcp.settings import load_settings
from tests.support.environment import variables_the_server_reads

ROOT = Path(__file__).parents[2]
REGISTRY_SCHEMA = ROOT / "tests" / "fixtures" / "registry" / "server.schema.json"
SCHEMA_ID = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
COMPARE_SCRIPT = ROOT / ".ci" / "compare_registry_schema.py"


def server_json() -> dict[str, Any]:
    server: dict[str, Any] = json.loads((ROOT / "server.json").read_text())
    return server


def pyproject() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project


def environment_variables() -> dict[str, dict[str, Any]]:
    (package,) = server_json()["packages"]
    return {variable["name"]: variable for variable in package["environmentVariables"]}


def uri_format_checker() -> jsonschema.FormatChecker:
    """jsonschema skips `format: uri` unless an optional package is installed; check it here instead."""
    checker = jsonschema.FormatChecker()

    @checker.checks("uri")
    def is_absolute_uri(value: object) -> bool:
        if not isinstance(value, str):
            return True
        parts = urlsplit(value)
        return bool(parts.scheme and parts.netloc) and not any(character.isspace() for character in value)

    return checker


def test_server_json_matches_the_registry_schema() -> None:
    """Against a committed copy of the registry's published schema, so the test never goes online."""
    schema = json.loads(REGISTRY_SCHEMA.read_text())
    assert schema["$id"] == SCHEMA_ID
    assert server_json()["$schema"] == SCHEMA_ID
    validator = jsonschema.Draft7Validator(schema, format_checker=uri_format_checker())
    validator.validate(server_json())


def test_the_format_check_rejects_what_the_registry_rejects() -> None:
    """The schema check has teeth: a bad URL, an over-long description and `latest` all fail it."""
    validator = jsonschema.Draft7Validator(
        json.loads(REGISTRY_SCHEMA.read_text()), format_checker=uri_format_checker()
    )
    for change in (
        {"repository": {"url": "github.com/knock-mcp/knock-mcp", "source": "github"}},
        {"description": "x" * 101},
        {"name": "knock-mcp"},
        {"packages": [server_json()["packages"][0] | {"version": "latest"}]},
    ):
        assert not validator.is_valid(server_json() | change), change


def compare_with(shared: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(COMPARE_SCRIPT), str(shared)], capture_output=True, text=True, check=False
    )


def test_the_maintainers_schema_comparison_tells_same_different_and_missing(tmp_path: Path) -> None:
    """Comparing with the shared copy outside the repository is a maintainer's script: no test
    depends on a folder that a user's clone does not have."""
    same = tmp_path / "same.json"
    same.write_bytes(REGISTRY_SCHEMA.read_bytes())
    changed = tmp_path / "changed.json"
    changed.write_text(REGISTRY_SCHEMA.read_text().replace('"$schema"', '"$schema_changed"', 1))
    assert compare_with(same).returncode == 0
    different = compare_with(changed)
    assert different.returncode == 1
    assert '+  "$schema_changed"' in different.stdout
    missing = compare_with(tmp_path / "absent.json")
    assert missing.returncode == 2
    assert "No shared registry schema at" in missing.stderr


def test_one_version_everywhere() -> None:
    server = server_json()
    versions = {pyproject()["version"], server["version"], knock_mcp.__version__}
    versions |= {package["version"] for package in server["packages"]}
    assert versions == {knock_mcp.__version__}


def test_the_registry_entry_is_the_pypi_package_run_with_uvx_over_stdio() -> None:
    (package,) = server_json()["packages"]
    assert package["registryType"] == "pypi"
    assert package["registryBaseUrl"] == "https://pypi.org"
    assert package["identifier"] == pyproject()["name"]
    assert package["runtimeHint"] == "uvx"
    assert package["transport"] == {"type": "stdio"}
    assert pyproject()["scripts"] == {"knock-mcp": "knock_mcp.cli:main"}


def test_the_readme_names_the_registry_entry() -> None:
    """The registry proves PyPI ownership by finding this marker in the package's README."""
    assert f"<!-- mcp-name: {server_json()['name']} -->" in (ROOT / "README.md").read_text()
    assert pyproject()["readme"] == "README.md"


def test_the_name_namespace_is_the_repository_owner() -> None:
    """An `io.github.<owner>/...` name can only be published by that GitHub owner."""
    server = server_json()
    namespace, _, name = server["name"].partition("/")
    repository = server["repository"]
    owner, repo = urlsplit(repository["url"]).path.strip("/").split("/")
    assert repository["source"] == "github"
    assert namespace == f"io.github.{owner}"
    assert name == repo == pyproject()["name"]
    assert pyproject()["urls"]["Repository"] == repository["url"]


def test_server_json_lists_every_variable_the_server_reads() -> None:
    assert set(environment_variables()) == variables_the_server_reads()


def test_every_variable_is_described_with_a_known_format() -> None:
    for name, variable in environment_variables().items():
        assert len(variable["description"]) >= 20, name
        assert variable["format"] in {"string", "number"}, name


def test_only_the_key_is_secret_and_required() -> None:
    """The key is the one credential. It is required because the entry runs `knock-mcp` without
    `--demo`, which cannot answer anything without one (it starts, and every call says so)."""
    variables = environment_variables()
    assert {name for name, variable in variables.items() if variable["isSecret"]} == {"KNOCK_API_KEY"}
    assert {name for name, variable in variables.items() if variable["isRequired"]} == {"KNOCK_API_KEY"}
    assert "default" not in variables["KNOCK_API_KEY"]
    # Everything else is optional: an environment without it is a valid configuration.
    assert load_settings({}).api_key is None


def test_declared_defaults_are_the_real_defaults() -> None:
    """Setting a variable to its declared default must change nothing."""
    unset = load_settings({})
    variables = environment_variables()
    with_defaults = {name: variables[name]["default"] for name in variables if "default" in variables[name]}
    assert set(with_defaults) == variables.keys() - {"KNOCK_API_KEY", "KNOCK_BRANCH"}
    for name, default in with_defaults.items():
        assert load_settings({name: default}) == unset, name


def test_number_variables_refuse_words() -> None:
    for name, variable in environment_variables().items():
        if variable["format"] == "number":
            with pytest.raises(ConfigurationError, match=name):
                load_settings({name: "soon"})


def test_the_licence_is_declared_and_shipped() -> None:
    project = pyproject()
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in licence


def test_the_changelog_leads_with_unreleased_then_the_current_version() -> None:
    """Keep a Changelog: an Unreleased section to add to, then the released versions, newest first."""
    changelog = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\](.*)$", changelog, flags=re.MULTILINE)
    assert [version for version, _ in headings[:2]] == ["Unreleased", knock_mcp.__version__]
    assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", headings[1][1])
    for version, _ in headings:
        assert re.search(rf"^\[{re.escape(version)}\]: https://", changelog, flags=re.MULTILINE), version
