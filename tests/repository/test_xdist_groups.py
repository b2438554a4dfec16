"""The xdist chains of tests/conftest.py hold: a time-bound test runs on its chain's worker.

xdist's `loadgroup` carries a test's group in its node id. When a pytest release stops reading the
field xdist writes (9.2: pytest-dev/pytest-xdist#1386), every group silently dissolves, and tests
that bound elapsed time run beside each other. This test is in a chain, so it fails then.
"""

from __future__ import annotations

import pytest


@pytest.mark.serial
def test_a_serial_test_runs_in_its_chain(request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("loadgroup", default=False):
        pytest.skip("not distributed by group (-n 0 or -p no:xdist): no chain to hold")
    assert request.node.nodeid.endswith("@serial"), request.node.nodeid
