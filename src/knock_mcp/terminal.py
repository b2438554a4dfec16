"""What knock-mcp does for a person at a terminal: the live progress line that `knock-mcp call`
draws on stderr, and a word and a quick Ctrl-C when the stdio server is started by hand.

MCP progress notifications become one line, redrawn in place: percent, rows, failures and time
left. When stderr is not a terminal (a pipe, a file, CI) nothing extra is written.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
from types import FrameType
from typing import TextIO

from knock_mcp import __version__

# The shell's exit status for a process ended by Ctrl-C (128 + SIGINT).
EXIT_INTERRUPTED = 130

# Return to the start of the line and clear it: the line is redrawn in place.
_REDRAW = "\r\x1b[2K"


def render_progress(progress: float, total: float | None, message: str | None) -> str:
    """One line such as `knock-mcp: 42 % | 4,200 of 10,000 rows, 3 failed, about 40 s left`."""
    described = "".join(character if character.isprintable() else " " for character in message or "")
    described = described or f"{progress:,.0f} rows"
    if total:
        percent = math.floor(min(max(progress / total, 0.0), 1.0) * 100)
        return f"knock-mcp: {percent} % | {described}"
    return f"knock-mcp: {described}"


class ProgressLine:
    """Draws each progress notification over the last one; `finish` ends the line."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._drawn = False

    async def update(self, progress: float, total: float | None, message: str | None) -> None:
        width = shutil.get_terminal_size().columns
        line = render_progress(progress, total, message)
        if len(line) >= width:
            line = line[: max(width - 2, 1)] + "…"
        self._stream.write(_REDRAW + line)
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        """Leave the last state on screen and move below it."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False


def progress_line_for(stream: TextIO) -> ProgressLine | None:
    """A progress line on `stream` if it is a terminal; None (nothing extra written) otherwise."""
    return ProgressLine(stream) if stream.isatty() else None


def serve_stdio_at_a_terminal(stderr: TextIO, *, demo: bool, example: str) -> None:
    """Say on stderr, in one line, what a stdio server started by hand is, and let one Ctrl-C end it.

    Over stdio the server waits in silence for an MCP client's JSON-RPC, so it looks hung. And the
    SDK reads stdin in worker threads that cannot be cancelled: Ctrl-C would stop the event loop
    but leave the interpreter waiting for them (two more Ctrl-C, then a traceback from
    `threading._shutdown`). At a terminal no client has anything in flight to lose, so the process
    ends at once with the shell's status for Ctrl-C.
    """
    mode = "demo, " if demo else ""
    stderr.write(
        f"knock-mcp {__version__} ({mode}stdio): an MCP server waiting for an MCP client's JSON-RPC on "
        f"stdin; a client such as Claude Desktop starts it. To try it here: {example}. Ctrl-C quits.\n"
    )
    stderr.flush()

    def exit_at_once(signum: int, frame: FrameType | None) -> None:
        stderr.write("\n")
        stderr.flush()
        os._exit(EXIT_INTERRUPTED)

    signal.signal(signal.SIGINT, exit_at_once)
