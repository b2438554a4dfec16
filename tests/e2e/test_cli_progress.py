"""`knock-mcp call wait_for_bulk_operation`: the live progress line on a terminal, nothing extra
elsewhere, and a clean Ctrl-C. The terminal is a real pseudo-terminal."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from knock_mcp.demo import LIVE_ID as DEMO_LIVE_ID
from knock_mcp.terminal import progress_line_for, render_progress
from tests.support.fake_knock import Advancing, FakeKnock
from tests.support.installed import KNOCK_MCP, run
from tests.support.keys import SECRET
from tests.support.payloads import LIVE_ID, stages


@pytest.mark.parametrize(
    ("progress", "total", "message", "line"),
    [
        (4200, 10_000, "4,200 of 10,000 rows, 3 failed", "knock-mcp: 42 % | 4,200 of 10,000 rows, 3 failed"),
        (0, None, "queued: 0 rows", "knock-mcp: queued: 0 rows"),
        (12, None, None, "knock-mcp: 12 rows"),
        (150, 100, "over", "knock-mcp: 100 % | over"),
        (5, 10, "tab\there\x1b[31m", "knock-mcp: 50 % | tab here [31m"),
    ],
)
def test_the_line_shows_percent_and_the_message(
    progress: float, total: float | None, message: str | None, line: str
) -> None:
    assert render_progress(progress, total, message) == line


def test_no_line_when_stderr_is_not_a_terminal() -> None:
    assert progress_line_for(io.StringIO()) is None


def run_in_terminal(
    args: list[str], env: dict[str, str], interrupt_when: bytes | None = None
) -> tuple[int, bytes, str]:
    """Run knock-mcp with stderr on a pseudo-terminal; optionally Ctrl-C it once `interrupt_when`
    has been drawn. Returns the exit status, what the terminal showed, and stdout."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [KNOCK_MCP, *args], stdout=subprocess.PIPE, stderr=terminal, stdin=subprocess.DEVNULL, env=env
    )
    os.close(terminal)
    shown = b""
    interrupted = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the process closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        if interrupt_when is not None and not interrupted and interrupt_when in shown:
            process.send_signal(signal.SIGINT)
            interrupted = True
        if process.poll() is not None and not ready:
            break
    stdout, _ = process.communicate(timeout=30)
    os.close(controller)
    return process.returncode, shown, stdout.decode()


def environment(fake_knock: FakeKnock) -> dict[str, str]:
    base = {key: value for key, value in os.environ.items() if not key.startswith("KNOCK_")}
    return base | {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": fake_knock.base_url}


def test_a_terminal_shows_one_live_progress_line(fake_knock: FakeKnock) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(steps=3))
    status, shown, stdout = run_in_terminal(
        ["call", "wait_for_bulk_operation", f"id={LIVE_ID}", "timeout_seconds=30"], environment(fake_knock)
    )
    assert status == 0, shown
    assert "has completed" in stdout
    frames = [frame for frame in shown.decode().split("\r\x1b[2K") if frame]
    assert all(", about" in frame for frame in frames[1:3]), "time left is shown while processing"
    assert [frame.split(", about")[0] for frame in frames] == [
        "knock-mcp: 0 % | queued: 0 of 1,000 rows",
        "knock-mcp: 33 % | 333 of 1,000 rows, 1 failed",
        "knock-mcp: 66 % | 666 of 1,000 rows, 2 failed",
        "knock-mcp: 100 % | completed: 1,000 of 1,000 rows, 3 failed\r\n",
    ]
    assert SECRET.encode() not in shown


@pytest.mark.serial
def test_ctrl_c_cancels_cleanly(fake_knock: FakeKnock) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(), seconds_per_stage=600)
    status, shown, stdout = run_in_terminal(
        ["call", "wait_for_bulk_operation", f"id={LIVE_ID}"], environment(fake_knock), interrupt_when=b"rows"
    )
    assert status == 130
    assert stdout == ""
    assert b"Traceback" not in shown
    assert shown.endswith(b"\r\n"), "the progress line is ended, not left for the shell prompt to overwrite"
    asked = len(fake_knock.requests)
    time.sleep(1.5)
    assert len(fake_knock.requests) == asked


def test_without_a_terminal_nothing_extra_is_printed(fake_knock: FakeKnock, tmp_path: Path) -> None:
    fake_knock.operations[LIVE_ID] = Advancing(stages(steps=2))
    env = {"KNOCK_API_KEY": SECRET, "KNOCK_BASE_URL": fake_knock.base_url}
    result = run("call", "wait_for_bulk_operation", f"id={LIVE_ID}", "timeout_seconds=30", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "has completed" in result.stdout


def test_waiting_on_the_demos_live_operation() -> None:
    result = run(
        "--demo", "call", "wait_for_bulk_operation", f"id={DEMO_LIVE_ID}", "timeout_seconds=1", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    payload = json.loads(result.stdout)
    assert payload["id"] == DEMO_LIVE_ID
    assert payload["timed_out"] is not payload["is_final"]
