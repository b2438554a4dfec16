"""Shared fixtures: fixture payloads, a loopback fake Knock, and servers wired to it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr

from fake_knock import FakeKnock
from knock_mcp.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
SECRET = "sk_test_Zq9-never-print-this-4f1c"


def load_fixture(name: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return payload


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake_knock() -> Iterator[FakeKnock]:
    with FakeKnock() as knock:
        for name in ("queued", "processing", "completed", "failed", "minimal", "extended"):
            payload = load_fixture(name)
            knock.operations[payload["id"]] = payload
        yield knock


@pytest.fixture
def settings(fake_knock: FakeKnock) -> Settings:
    """Settings pointing at the fake, with short timings so failure paths run fast."""
    return Settings(
        api_key=SecretStr(SECRET),
        base_url=fake_knock.base_url,
        branch=None,
        attempt_timeout=2.0,
        max_retries=2,
        call_deadline=5.0,
    )


async def eventually(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Wait until `condition()` holds (for state seen across threads, where no event can be awaited)."""
    with anyio.fail_after(within):
        while True:
            if condition():
                return
            await anyio.sleep(0.01)


# Property tests: the same examples on every run in CI (derandomized, no example database), and
# few enough to keep the suite fast; `pytest --hypothesis-profile=deep` searches further.
hypothesis_settings.register_profile(
    "ci",
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
hypothesis_settings.register_profile("deep", max_examples=2000, deadline=None)
hypothesis_settings.load_profile("ci")
