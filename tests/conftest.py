"""Suite-wide settings: the `support` helpers on the path, and ``async def`` tests.

``async def`` tests run with `asyncio.run` under a deadline: plain asyncio instead of a
plugin, one event loop per test, nothing shared, and a hung test fails after
`ASYNC_TEST_TIMEOUT` seconds with the stack of where it waited.
Under CI=true a real server that cannot start fails the run; it is never skipped.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile("kubelogs", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("kubelogs")
"""Property tests check results, not speed: Hypothesis' default 200 ms deadline per
example (and its too-slow health check on data generation) measure the machine, and
on 2 cores shared with JVMs and Chromium an example stalled by the scheduler fails as
`DeadlineExceeded`/"Unreliable test timings". Most property tests already said
``deadline=None``; this makes it the rule for all of them."""

pytest_plugins = ["support.es_fixtures"]  # real search nodes, one per flavour per session

ASYNC_TEST_TIMEOUT = 120.0
"""A hang detector, not a budget: it must exceed the deadlines the tests wait with
inside (`ForwardHandler.flush(60)`, `read_topic(..., 30.0)` once per topic, 20 s
`wait_events` then a 60 s flush), or on a busy CI machine it fires first - killing a
test that was slow but right, with a bare cancellation instead of the inner wait's
message. At 30 s, below those deadlines, it could do both."""


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    kwargs: dict[str, Any] = {n: pyfuncitem.funcargs[n] for n in names}

    async def run() -> None:
        await asyncio.wait_for(func(**kwargs), ASYNC_TEST_TIMEOUT)

    asyncio.run(run())
    return True
