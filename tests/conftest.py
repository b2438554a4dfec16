"""Fixtures for every test: the loopback fake Knock, settings pointing at it, the protocol era.
Helpers they share are in tests/support/."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr

from knock_mcp.settings import Settings
from tests.support.eras import ERAS
from tests.support.fake_knock import FakeKnock
from tests.support.http_server import SharedHttpServers
from tests.support.keys import SECRET
from tests.support.oauth_issuer import LoopbackIssuer
from tests.support.payloads import load_fixture
from tests.support.redis_server import INSTALL_HINT, RedisServer


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """xdist groups, each run by one worker one test after another: the soak (`slow`), and the tests
    that bound elapsed time (`serial`, or `serial("name")` for a chain of its own), so that no two
    tests of a chain load the machine or measure time at once. The fleet tests are a chain of their
    own: one chain of every time-bound test would outlast the rest of the suite. And the tests that
    share a server (`shared_server("name")`), so that one worker starts it. Runs before xdist reads
    the groups."""
    for item in items:
        if item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.xdist_group("soak"))
        elif serial := item.get_closest_marker("serial"):
            item.add_marker(pytest.mark.xdist_group(serial.args[0] if serial.args else "serial"))
        elif group := sharing(item):
            item.add_marker(pytest.mark.xdist_group(group))
    # The tests that share a server run one after another without xdist too, from where the first
    # of them was, so that their server is started once and stopped as soon as they are done.
    first_of: dict[str, int] = {}
    for index, item in enumerate(items):
        if group := sharing(item):
            first_of.setdefault(group, index)
    place = {
        item.nodeid: first_of[group] if (group := sharing(item)) else index
        for index, item in enumerate(items)
    }
    items.sort(key=lambda item: (start_rank(item), place[item.nodeid]))


# xdist hands the tests out in this order, each to the next worker free. The suite ends sooner when
# it ends on short tests that compute rather than on tests that wait: the chains, the shared servers'
# groups and the long property tests start first, then the tests that run real processes and wait on
# them, then the in-process server tests (which wait on poll intervals and stalls too), and the core
# tests, short and nearly all computation, fill what is left.
LAUNCH_ORDER = ("tests/http/", "tests/e2e/", "tests/server/", "tests/repository/", "tests/core/")


def start_rank(item: pytest.Item) -> int:
    if item.get_closest_marker("xdist_group") or item.path.name == "test_properties.py":
        return 0
    folder_rank = (rank for rank, folder in enumerate(LAUNCH_ORDER) if item.nodeid.startswith(folder))
    return 1 + next(folder_rank, len(LAUNCH_ORDER))


def sharing(item: pytest.Item | None) -> str | None:
    """The group of tests that share a server with `item` (`shared_server("name")`), if any."""
    marker = item.get_closest_marker("shared_server") if item is not None else None
    return f"shared server: {marker.args[0]}" if marker is not None else None


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the shared servers after the last test of their group, rather than leave them idle for
    the rest of the run. A later group starts its own anew."""
    group = sharing(item)
    if group is not None and sharing(nextitem) != group:
        servers = item.funcargs.get("http_servers") if isinstance(item, pytest.Function) else None
        if isinstance(servers, SharedHttpServers):
            servers.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def stock(knock: FakeKnock) -> FakeKnock:
    """`knock`, serving the fixture operations under their own ids."""
    for name in ("queued", "processing", "completed", "failed", "minimal", "extended"):
        payload = load_fixture(name)
        knock.operations[payload["id"]] = payload
    return knock


@pytest.fixture
def fake_knock() -> Iterator[FakeKnock]:
    with FakeKnock() as knock:
        yield stock(knock)


@pytest.fixture(scope="session")
def http_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedHttpServers]:
    """`knock-mcp --transport http` servers that the tests of a `shared_server` group share, and
    the fake Knock and OAuth issuer that they trust."""
    servers = SharedHttpServers(tmp_path_factory.mktemp("shared-servers"))
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture
def shared_knock(http_servers: SharedHttpServers) -> FakeKnock:
    """The fake Knock of `http_servers`, as `fake_knock` is at the start of a test: nothing of the
    tests before."""
    knock = http_servers.knock()
    knock.forget()
    return stock(knock)


@pytest.fixture
def shared_issuer(http_servers: SharedHttpServers) -> LoopbackIssuer:
    """`issuer`, for the tests of a `shared_server` group whose server trusts it."""
    return http_servers.issuer()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of the test's own; the test fails, naming the install command, without one."""
    try:
        server = RedisServer(tmp_path)
    except RuntimeError:
        pytest.fail(INSTALL_HINT)
    with server:
        yield server


@pytest.fixture
def issuer() -> Iterator[LoopbackIssuer]:
    """An OAuth authorization server's metadata and signing keys on loopback, for --auth oauth."""
    with LoopbackIssuer() as running:
        yield running


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


@pytest.fixture(params=ERAS)
def mode(request: pytest.FixtureRequest) -> str:
    """The protocol era a client speaks: 2026-07-28 ("auto") or 2025-11-25 ("legacy")."""
    mode: str = request.param
    return mode


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
