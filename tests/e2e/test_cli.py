"""The installed `knock-mcp` command: --help, --version, and one-shot calls through the MCP client."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from knock_mcp import __version__
from knock_mcp.demo import DEMO_OPERATIONS, FAILED_ID, MANY_FAILURES_ID, PROCESSING_ID
from tests.support.fake_knock import FakeKnock
from tests.support.installed import KNOCK_MCP, run
from tests.support.keys import SECRET
from tests.support.payloads import load_fixture

COMPLETED = load_fixture("completed")


def test_version_and_help() -> None:
    assert run("--version").stdout.strip() == f"knock-mcp {__version__}"
    help_text = run("--help").stdout
    for variable in ("KNOCK_API_KEY", "KNOCK_BASE_URL", "KNOCK_BRANCH", "KNOCK_TIMEOUT", "KNOCK_MAX_RETRIES"):
        assert variable in help_text
    assert "--demo" in help_text


# Each command line, its exit status, and what it must answer without: `mcp` (most of a second of
# CPU to import), and for all but the HTTP option and `call` (`call --help` and a mistake in a call,
# which read the tools' arguments with pydantic), the pydantic and httpx2 of the options' parsers.
_ANSWERED_BEFORE_SERVING = """
import contextlib, io, os, sys
from knock_mcp.cli import main

def exit_status(*args):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main(list(args))
        except SystemExit as exited:
            return exited.code

def assert_not_loaded(*packages):
    loaded = sorted(name for name in sys.modules if name.partition(".")[0] in packages)
    assert not loaded, loaded

assert exit_status("--version") == 0
assert exit_status("--help") == 0
assert exit_status("--demo", "--log-level", "loud") == 2
assert exit_status("--demo", "call", "get_bulk_operation", "--transport", "http") == 2
os.environ["KNOCK_MCP_DEMO"] = "maybe"
assert exit_status("call", "get_bulk_operation") == 2
del os.environ["KNOCK_MCP_DEMO"]
assert_not_loaded("mcp", "mcp_types", "pydantic", "httpx2")
assert exit_status("--transport", "http", "--port", "0") == 2
assert_not_loaded("mcp", "mcp_types", "uvicorn", "starlette")
assert exit_status("call", "--help") == 0
assert exit_status("--demo", "call", "no_such_tool") == 2
assert exit_status("--demo", "call", "get_bulk_operation", "not-a-pair") == 2
assert exit_status("--demo", "call", "summarize_bulk_operation", "id=1", "id=2") == 2
assert_not_loaded("mcp", "mcp_types", "uvicorn", "starlette")
"""


def test_help_version_and_usage_errors_never_load_the_sdk() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _ANSWERED_BEFORE_SERVING],
        capture_output=True,
        text=True,
        timeout=60,
        env={key: value for key, value in os.environ.items() if not key.startswith("KNOCK_")},
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_python_dash_m_runs_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "knock_mcp", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.strip() == f"knock-mcp {__version__}"


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
    # The demo reads no key: its 404 names its own ids instead of KNOCK_API_KEY.
    assert "The demo has no bulk operation 99999999-9999-4999-8999-999999999999." in result.stderr
    assert all(operation.id in result.stderr for operation in DEMO_OPERATIONS)
    assert "Call again with one of these ids" in result.stderr
    assert "KNOCK_API_KEY is the secret key" not in result.stderr
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


def test_an_out_of_range_argument_gets_a_sentence_not_pydantics_text() -> None:
    result = run("--demo", "call", "wait_for_bulk_operation", f"id={PROCESSING_ID}", "timeout_seconds=100")
    assert result.returncode == 1
    assert result.stderr == (
        "Error executing tool wait_for_bulk_operation: timeout_seconds must be a number of seconds from 0 "
        "to 45 (got 100). Nothing was sent to Knock: correct it and call again.\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["call", "summarize_bulk_operation", f"id={PROCESSING_ID}", "--demo"],
        ["call", "summarize_bulk_operation", "--demo", f"id={PROCESSING_ID}"],
        ["call", "--demo", "--log-level", "error", "summarize_bulk_operation", f"id={PROCESSING_ID}"],
    ],
)
def test_demo_and_log_level_are_accepted_after_call(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 0, result.stderr
    assert f"Operation {PROCESSING_ID}." in result.stdout


def test_another_option_after_call_says_where_it_goes() -> None:
    result = run("--demo", "call", "summarize_bulk_operation", f"id={PROCESSING_ID}", "--transport", "http")
    assert result.returncode == 2
    assert "unrecognized arguments: --transport http. After `call` come the tool" in result.stderr
    assert "other options of knock-mcp go before `call`" in result.stderr


def test_an_argument_given_twice_is_refused() -> None:
    result = run("--demo", "call", "summarize_bulk_operation", f"id={PROCESSING_ID}", f"id={FAILED_ID}")
    assert result.returncode == 2
    assert (
        f"id is given twice ('{PROCESSING_ID}' and '{FAILED_ID}'): give each argument once" in result.stderr
    )


def test_call_help_lists_every_tool_and_its_arguments() -> None:
    result = run("call", "--help")
    assert result.returncode == 0, result.stderr
    assert "  wait_for_bulk_operation\n    id (required): a UUID" in result.stdout
    assert "    timeout_seconds: a number of seconds from 0 to 45 (default 45)" in result.stdout
    assert "    limit: a whole number from 1 to 1,000 (default 1000)" in result.stdout
    for tool in ("get_bulk_operation", "summarize_bulk_operation", "list_failed_items"):
        assert f"\n  {tool}\n" in result.stdout


@pytest.mark.parametrize("columns", ["40", "80", "200"])
@pytest.mark.parametrize("args", [["--help"], ["call", "--help"]])
def test_help_keeps_the_example_command_on_one_line(args: list[str], columns: str) -> None:
    result = run(*args, env={"COLUMNS": columns})
    assert f"\n  knock-mcp --demo call summarize_bulk_operation id={PROCESSING_ID}\n" in result.stdout


def test_a_reader_that_stops_early_is_a_normal_end() -> None:
    call = f"--demo call get_bulk_operation id={MANY_FAILURES_ID} max_error_items=1000"
    command = f"'{KNOCK_MCP}' {call} | head -c 10"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout == '{"operatio'
    assert result.stderr == ""
    assert result.returncode == 0


@pytest.mark.parametrize(("value", "demo"), [("true", True), ("1", True), ("false", False), ("", False)])
def test_knock_mcp_demo_turns_on_the_demo_over_stdio_too(value: str, demo: bool) -> None:
    """An MCP Bundle's boolean setting arrives as "true"/"false"; its unset text settings as ""."""
    env = {"KNOCK_MCP_DEMO": value, "KNOCK_API_KEY": "", "KNOCK_BASE_URL": "", "KNOCK_BRANCH": ""}
    result = run("call", "summarize_bulk_operation", f"id={PROCESSING_ID}", env=env)
    if demo:
        assert result.returncode == 0, result.stderr
        assert f"Operation {PROCESSING_ID}." in result.stdout
    else:
        assert result.returncode == 1
        assert "KNOCK_API_KEY is not set" in result.stderr
        assert "not configured correctly" not in result.stderr


def test_a_bad_knock_mcp_demo_is_a_usage_error() -> None:
    result = run("call", "summarize_bulk_operation", f"id={PROCESSING_ID}", env={"KNOCK_MCP_DEMO": "maybe"})
    assert result.returncode == 2
    assert "KNOCK_MCP_DEMO must be 1, true, yes or on" in result.stderr
