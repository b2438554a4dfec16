"""Reading options from flags and the environment, with every problem reported at once.

`settings` (the Knock variables) and `http.config` (the HTTP server's flags and variables) both read
through `OptionReader`, so each bad value is named the way the user gave it (`--port` or
`KNOCK_MCP_PORT`) and all of them come back in one `ConfigurationError`, not one per restart.
The parsers shared by both live here too; each raises `ValueError` with the end of a sentence that
starts with the option's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from knock_mcp.errors import ConfigurationError

_T = TypeVar("_T")


class OptionReader:
    """Reads options one by one, collects what is wrong with them, and raises once at the end."""

    def __init__(self, environ: Mapping[str, str], flags: Mapping[str, str] | None = None) -> None:
        """`flags` maps a flag (`--port`) to what the command line gave it; a flag wins over its variable."""
        self._environ = environ
        self._flags = flags or {}
        self._labels: dict[str, str] = {}
        self.problems: list[str] = []

    def read(self, variable: str, parse: Callable[[str], _T], default: _T, *, flag: str | None = None) -> _T:
        """The option's parsed value, or `default` if it is unset or unusable (which is recorded)."""
        given = self._flags.get(flag) if flag is not None else None
        if flag is not None and given is not None:
            label, raw = flag, given
        else:
            label, raw = variable, self._environ.get(variable, "").strip()
            if not raw:
                self._labels[variable] = variable if flag is None else f"{flag} (or {variable})"
                return default
        self._labels[variable] = label
        try:
            return parse(raw)
        except ValueError as error:
            self.problems.append(f"{label} {error}")
            return default

    def label(self, variable: str) -> str:
        """How the user gave an option already read: its flag, its variable, or both when unset."""
        return self._labels.get(variable, variable)

    def check(self) -> None:
        """Raise `ConfigurationError` naming every problem found so far, if there is one."""
        if self.problems:
            raise ConfigurationError(self.problems)


def is_header_safe(raw: str) -> bool:
    """Sent in an HTTP header: printable ASCII without spaces, or the HTTP client cannot send it."""
    return raw.isascii() and raw.isprintable() and not any(character.isspace() for character in raw)


def seconds_between(low: float, high: float) -> Callable[[str], float]:
    """A parser of a number of seconds from `low` to `high`."""

    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            value = float("nan")
        if not low <= value <= high:
            raise ValueError(f"must be a number of seconds from {low:g} to {high:g}, not {raw!r}")
        return value

    return parse


def whole_number_between(low: int, high: int, *, kind: str = "a whole number") -> Callable[[str], int]:
    """A parser of a whole number from `low` to `high`; `kind` names what the number is, as in
    "a TCP port"."""

    def parse(raw: str) -> int:
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise ValueError(f"must be {kind} from {low} to {high}, not {raw!r}")
        return int(raw)

    return parse


def parse_switch(raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"must be 1, true, yes or on (or 0, false, no, off), not {raw!r}")
