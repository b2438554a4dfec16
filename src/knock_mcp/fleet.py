"""What one process shares with the rest of its fleet, as the tracker sees it.

The tracker reads, polls and listens through a `Fleet`. `LocalFleet` is a process on its own,
with no Redis anywhere. `knock_mcp.redis_fleet.RedisFleet` shares, through
Redis, what Knock last said, final operations, one poll loop per operation in the whole fleet and
the request budget per key; `knock_mcp.server.build_fleet` imports it only when
`KNOCK_MCP_REDIS_URL` is set, so a process without Redis never loads the client library.

Everything a fleet shares is addressed as the tracker addresses it: (fingerprint of the Knock key,
operation id). Times cross the seam as seconds relative to now, never as clock readings, because
a monotonic clock means nothing to another machine.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

from pydantic import SecretStr

from knock_mcp.knock_client import AttemptGate
from knock_mcp.models import BulkOperation

Address = tuple[bytes, str]
"""(fingerprint of the key, canonical operation id)."""


@dataclass(frozen=True)
class SharedAnswer:
    """An answer of Knock's, from this process's request or from another process of the fleet."""

    operation: BulkOperation
    # Seconds since Knock gave this answer.
    age: float = 0.0
    # For a final operation from the fleet's cache: seconds since it was first cached, so that a
    # local copy expires when the shared one does.
    cached_for: float = 0.0


class Fleet(Protocol):
    """The seam between one process's tracker and the processes it shares Knock's traffic with."""

    @property
    def gate(self) -> AttemptGate | None:
        """Paces every request to Knock fleet-wide; None when only the tracker's own loops pace."""

    @property
    def lease_check_interval(self) -> float:
        """How often a process that does not poll an operation checks whether its poller is gone."""

    async def __aenter__(self) -> Fleet: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    def fingerprint(self, key: SecretStr | None) -> bytes:
        """An HMAC of the key: the same in every process of the fleet, and no use to anyone without
        the secret."""

    async def read(
        self, address: Address, fetch: Callable[[], Awaitable[BulkOperation]], fresh_for: float
    ) -> SharedAnswer:
        """A final operation, or an answer at most `fresh_for` seconds old, from the fleet; else
        `fetch()` it, unless another process is fetching it right now, and share the answer."""

    def follow(
        self, address: Address, on_news: Callable[[SharedAnswer], None], on_reschedule: Callable[[], None]
    ) -> None:
        """While this process polls or waits on `address`: hand it each answer another process
        shares, and call `on_reschedule` when the poll schedule may have to change (a waiter's
        deadline elsewhere)."""

    def unfollow(self, address: Address) -> None: ...

    async def join_loop(self, address: Address) -> float:
        """Seconds since the fleet's poll loop for `address` started (0 for a new one), so that its
        schedule of intervals survives a takeover."""

    async def lead(self, address: Address) -> bool:
        """Whether this process is the one to poll `address` now (it takes the lease if it is free)."""

    def release(self, address: Address) -> None:
        """This process has no more interest in `address`: another interested one takes over."""

    def add_deadline(self, address: Address, seconds: float) -> object:
        """A waiter here ends in `seconds`: the poller, wherever it runs, asks once more before then."""

    def remove_deadline(self, address: Address, token: object) -> None: ...

    def deadlines(self, address: Address) -> list[float]:
        """Seconds until each waiter's deadline in the whole fleet, as last read."""

    def health(self) -> dict[str, Any]:
        """What /healthz says about sharing: nothing secret, the same for every caller."""


class LocalFleet:
    """A process on its own: it fetches what it needs, and its poll loops pace themselves.

    The fingerprint's key is random per process, so the tracker's tables never hold a Knock key
    and their fingerprints mean nothing outside the process."""

    gate: AttemptGate | None = None
    lease_check_interval = 1.0

    def __init__(self) -> None:
        self._salt = os.urandom(32)

    async def __aenter__(self) -> LocalFleet:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def fingerprint(self, key: SecretStr | None) -> bytes:
        return key_fingerprint(self._salt, key)

    async def read(
        self, address: Address, fetch: Callable[[], Awaitable[BulkOperation]], fresh_for: float
    ) -> SharedAnswer:
        return SharedAnswer(await fetch())

    def follow(
        self, address: Address, on_news: Callable[[SharedAnswer], None], on_reschedule: Callable[[], None]
    ) -> None:
        """Nobody else polls: there is no news but this process's own."""

    def unfollow(self, address: Address) -> None:
        """Nothing was followed."""

    async def join_loop(self, address: Address) -> float:
        return 0.0

    async def lead(self, address: Address) -> bool:
        return True

    def release(self, address: Address) -> None:
        """No lease to give back."""

    def add_deadline(self, address: Address, seconds: float) -> object:
        return None

    def remove_deadline(self, address: Address, token: object) -> None:
        """The tracker keeps its own waiters' deadlines."""

    def deadlines(self, address: Address) -> list[float]:
        return []

    def health(self) -> dict[str, Any]:
        return {"sharing": False, "redis": "not configured"}


def key_fingerprint(secret: bytes, key: SecretStr | None) -> bytes:
    raw = b"" if key is None else key.get_secret_value().encode()
    return hmac.new(secret, raw, hashlib.sha256).digest()
