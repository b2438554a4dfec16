"""`knock-mcp` started by hand at a terminal: it says what it is, and one Ctrl-C ends it at once.

The server runs under a pseudo-terminal that is its controlling terminal, so Ctrl-C is the byte a
person's keyboard sends (0x03), turned into SIGINT by the terminal, not a signal sent by the test.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from knock_mcp.demo import PROCESSING_ID
from tests.support.installed import KNOCK_MCP

CTRL_C = b"\x03"
# Start-up imports the SDK, which takes seconds on a busy machine; the exit must then be at once.
START_SECONDS = 60
EXIT_SECONDS = 3

# A session leader that opens a terminal makes it its controlling terminal, in the foreground.
_TAKE_THE_TERMINAL = (
    "import os, sys; os.close(os.open(os.ttyname(0), os.O_RDWR)); os.execv(sys.argv[1], sys.argv[1:])"
)


class Terminal:
    def __init__(self, master: int, process: subprocess.Popen[bytes]) -> None:
        self.master = master
        self.process = process
        self.screen = b""

    def read_until(self, wanted: bytes, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while wanted not in self.screen and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.screen += os.read(self.master, 4096)
                except OSError:  # the other end closed: the process is gone
                    break
        return wanted in self.screen


@pytest.fixture
def terminal(request: pytest.FixtureRequest) -> Iterator[Terminal]:
    master, slave = os.openpty()
    env = {key: value for key, value in os.environ.items() if not key.startswith("KNOCK_")}
    process = subprocess.Popen(
        [sys.executable, "-c", _TAKE_THE_TERMINAL, KNOCK_MCP, *request.param],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        env=env,
    )
    os.close(slave)
    try:
        yield Terminal(master, process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        os.close(master)


@pytest.mark.parametrize("terminal", [["--demo"], []], indirect=True, ids=["demo", "keyless"])
def test_one_ctrl_c_at_a_terminal_exits_130_at_once_without_a_traceback(terminal: Terminal) -> None:
    assert terminal.read_until(b"Ctrl-C quits.", START_SECONDS), terminal.screen.decode(errors="replace")
    said = terminal.screen.decode()
    assert "an MCP server waiting for an MCP client's JSON-RPC on stdin" in said
    assert f"To try it here: knock-mcp --demo call summarize_bulk_operation id={PROCESSING_ID}." in said
    os.write(terminal.master, CTRL_C)
    started = time.monotonic()
    status = terminal.process.wait(timeout=EXIT_SECONDS)
    waited = time.monotonic() - started
    terminal.read_until(b"never", 0.2)
    assert status == 130
    assert waited < EXIT_SECONDS
    assert b"Traceback" not in terminal.screen
    assert b"KeyboardInterrupt" not in terminal.screen
