"""The live progress line that `knock-mcp call` draws on stderr when stderr is a terminal.

MCP progress notifications become one line, redrawn in place: percent, rows, failures and time
left. When stderr is not a terminal (a pipe, a file, CI) nothing extra is written.
"""

from __future__ import annotations

import math
import shutil
from typing import TextIO

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
