"""The installed `knock-mcp` command: --help, --version, and one-shot calls through the MCP client."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from knock_mcp import __version__
from knock_mcp.demo import DEMO_OPERATIONS, FAILED_ID, MANY_FAILURES_ID, PROCESSING_ID, DemoOperation
from tests.support.fake_knock import FakeKnock
from tests.support.installed import run
from tests.support.keys import SECRET
from tests.support.payloads import load_fixture

COMPLETED = load_fixture("completed")


def test_version_and_help() -> None:
    assert run("--version").stdout.strip() == f"knock-mcp {__version__}"
    help_text = run("--help").stdout
    for variable in ("KNOCK_API_KEY", "KNOCK_BASE_URL", "KNOCK_BRANCH", "KNOCK_TIMEOUT", "KNOCK_MAX_RETRIES"):
        assert variable in help_text
    assert "--demo" in help_text


def test_python_dash_m_runs_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "knock_mcp", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == f"knock-mcp {__version__}"


@pytest.mark.parametrize("operation", DEMO_OPERATIONS, ids=lambda operation: operation.id[-1])
def test_every_demo_operation_summarizes(operation: DemoOperation) -> None:
    operation_id = operation.id
    result = run("--demo", "call", "summarize_bulk_operation", f"id={operation_id}")
    assert result.returncode == 0, result.stderr
    assert f"Operation {operation_id}." in result.stdout
    assert result.stderr == ""


def test_demo_call_prints_structured_content_with_json() -> None:
    result = run(
        "--demo", "call", "get_bulk_operation", f"id={MANY_FAILURES_ID}", "max_error_items=3", "--json"
    )
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["error_items_total"] == 12_000
    assert payload["error_items_shown"] == 3


def test_demo_ignores_a_real_key_in_the_environment() -> None:
    result = run(
        "--demo", "call", "summarize_bulk_operation", f"id={FAILED_ID}", env={"KNOCK_API_KEY": SECRET}
    )
    assert result.returncode == 0
    assert SECRET not in result.stdout + result.stderr


def test_a_tool_error_exits_1_with_the_message_on_stderr() -> None:
    result = run("--demo", "call", "summarize_bulk_operation", "id=99999999-9999-4999-8999-999999999999")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Knock has no bulk operation" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["call", "no_such_tool"], "no tool named 'no_such_tool'"),
        (["call", "get_bulk_operation", PROCESSING_ID], "arguments are name=value pairs"),
        (["--log-level", "loud"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = run("--demo", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_real_call_uses_the_environment(fake_knock: FakeKnock) -> None:
    env = {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": fake_knock.base_url, "KNOCK_BRANCH": "main-2"}
    result = run("call", "summarize_bulk_operation", f"id={COMPLETED['id']}", env=env)
    assert result.returncode == 0, result.stderr
    assert "has completed" in result.stdout
    assert SECRET not in result.stdout + result.stderr
    (seen,) = fake_knock.requests
    assert seen.headers["X-Knock-Branch"] == "main-2"


def test_a_missing_key_is_explained() -> None:
    result = run("call", "summarize_bulk_operation", f"id={COMPLETED['id']}")
    assert result.returncode == 1
    assert "KNOCK_API_KEY is not set" in result.stderr


def test_bad_settings_are_named() -> None:
    env = {"KNOCK_API_KEY": "pk_test_public", "KNOCK_MAX_RETRIES": "lots"}
    result = run("call", "summarize_bulk_operation", f"id={COMPLETED['id']}", env=env)
    assert result.returncode == 1
    assert "KNOCK_API_KEY holds a public key" in result.stderr
    assert "KNOCK_MAX_RETRIES must be a whole number" in result.stderr
    assert "pk_test_public" not in result.stderr
