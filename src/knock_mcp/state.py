"""What every request of a running server shares, and where each request's Knock key comes from.

Below `server` (which builds it) and beside `live_updates` and `tools` (which read it), so that
nothing imports the server module from below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import SecretStr

from knock_mcp.errors import ConfigurationError, KnockMcpError
from knock_mcp.models import BulkOperation
from knock_mcp.settings import DEFAULT_CALL_DEADLINE, Settings
from knock_mcp.tracker import OperationTracker

KeySource = Callable[[], SecretStr | None]
"""Gives the Knock key of the request being served: the server's own, or (over HTTP with
`--auth knock-key`) the caller's. It is read afresh in each request, never stored across them."""


def configured_key(config: Settings | ConfigurationError) -> KeySource:
    """The server's own key, from KNOCK_API_KEY, for every request."""
    key = config.api_key if isinstance(config, Settings) else None
    return lambda: key


@dataclass(frozen=True)
class ServerState:
    """What every request shares: the tracker that reads operations from Knock (cached, shared
    per key and id), where keys come from, the clock, and how long one call may last."""

    tracker: OperationTracker
    api_key: KeySource
    now: Callable[[], datetime]
    call_deadline: float = DEFAULT_CALL_DEADLINE
    error_text: Callable[[KnockMcpError], str] = str

    async def fetch(self, operation_id: str) -> BulkOperation:
        return await self.tracker.read(operation_id, self.api_key())

    def public_text(self, error: KnockMcpError) -> str:
        """The error's message, with this request's key removed should any path ever have put it there."""
        text = self.error_text(error)
        key = self.api_key()
        return text.replace(key.get_secret_value(), "[redacted]") if key else text
