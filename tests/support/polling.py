"""Time in tests: poll policies for a server under test, and waiting for state that another thread
changes (the fake Knock serves from a thread of its own, so there is no event to await)."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from knock_mcp.poll_policy import PollPolicy
from tests.support.fake_knock import FakeKnock

INTERVAL = 0.1
# Polls every 0.1 s; answers stay fresh for the production second, so a waiter arriving while the
# loop runs is served its latest answer rather than starting a request of its own.
QUICK = PollPolicy(first_interval=INTERVAL, max_interval=INTERVAL)
# For "stops within one poll interval": a cancel travels client -> server -> loop, which on a loaded
# 2-core machine can take more than 0.1 s.
STEADY = PollPolicy(first_interval=0.5, max_interval=0.5)


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until `condition()` holds."""
    with anyio.fail_after(within):
        while True:
            if condition():
                return
            await anyio.sleep(0.01)


async def wait_for_requests(fake_knock: FakeKnock, count: int) -> None:
    """Wait until the fake Knock has been asked `count` times in all."""
    await eventually(lambda: len(fake_knock.requests) >= count, within=30)
