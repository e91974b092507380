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

sys.path.insert(0, str(Path(__file__).parent))

pytest_plugins = ["support.es_fixtures"]  # real search nodes, one per flavour per session

ASYNC_TEST_TIMEOUT = 30.0


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
