"""The installed `knock-mcp` command (beside the interpreter running the tests), run as a person or
an MCP client runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KNOCK_MCP = str(Path(sys.executable).parent / "knock-mcp")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`knock-mcp ARGS` with `env` and none of the test run's own KNOCK_ variables."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("KNOCK_")}
    return subprocess.run(
        [KNOCK_MCP, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=base | (env or {}),
        check=False,
    )
