"""The server's log: levels, format, and where it goes (stderr, since stdout carries MCP over stdio)."""

from __future__ import annotations

import logging
import sys
from typing import Literal, get_args

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
LOG_FORMAT = "knock-mcp %(levelname)s %(name)s: %(message)s"


def configure_logging(level: LogLevel) -> None:
    logging.basicConfig(level=level, stream=sys.stderr, format=LOG_FORMAT)
