"""Wait on a condition with a deadline: the only way tests synchronise with processes
(`wait_for`) and with tasks on the test's event loop (`until`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T], *, timeout: float = 30.0, interval: float = 0.05, what: str = ""
) -> T:
    deadline = time.monotonic() + timeout
    last: T = condition()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(interval)
        last = condition()
    return last


async def until(condition: Callable[[], object], what: str = "", *, seconds: float = 30.0) -> None:
    """Wait on `condition` with a deadline of `seconds`, letting the loop's other tasks
    (the component under test) run meanwhile: the asyncio twin of `wait_for`, which
    polls a condition, never a fixed delay."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                if condition():
                    return
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(
            f"timed out after {seconds}s waiting for {what or condition}"
        ) from None
