"""How often a poll loop asks Knock, how fast one key's loops may go, and how old an answer may be
when served."""

from __future__ import annotations

from dataclasses import dataclass

# Knock's GET /v1/bulk_operations/{id} is rate-limit tier 4: 200 requests/second per environment.
# Poll loops of one key together stay at half of that, leaving the rest to the application that
# owns the key.
KNOCK_TIER4_REQUESTS_PER_SECOND = 200.0


@dataclass(frozen=True)
class PollPolicy:
    """How often a loop asks Knock, and how old an answer may be when served.

    The interval is `first_interval` for the first `ramp_seconds`, then grows in proportion to
    the loop's age up to `max_interval`: quick while a caller is likely watching closely, slower as
    a long job goes on (1 s for 10 s, 5 s after 50 s, 10 s from 100 s with the defaults).
    """

    first_interval: float = 1.0
    max_interval: float = 10.0
    ramp_seconds: float = 10.0
    fresh_for: float = 1.0
    requests_per_second_per_key: float = KNOCK_TIER4_REQUESTS_PER_SECOND / 2

    def interval(self, age: float) -> float:
        return min(self.max_interval, max(self.first_interval, self.first_interval * age / self.ramp_seconds))

    @property
    def deadline_lead(self) -> float:
        """How long before a waiter's deadline a loop asks once more, so the waiter's last answer is
        fresh: half the freshness window."""
        return self.fresh_for / 2
