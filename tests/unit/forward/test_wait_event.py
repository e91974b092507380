"""`wait_event` keeps a cancellation that arrives as its event is set (Python 3.11's
`wait_for` loses it: a sink lane or handler thread cancelled at shutdown waited on)."""

from __future__ import annotations

import asyncio

import pytest

from kubelogs.forward.client import wait_event


async def test_a_cancellation_racing_the_event_is_kept() -> None:
    event = asyncio.Event()

    async def lane() -> None:
        await wait_event(event, 30)
        await asyncio.sleep(30)  # what a lane does next: wait again

    task = asyncio.create_task(lane())
    for _ in range(3):
        await asyncio.sleep(0)  # the task waits for the event now
    event.set()
    await asyncio.sleep(0)  # the event's waiter is woken ...
    task.cancel()  # ... and the cancellation arrives before it runs
    # it may return (the event was set) but must end at its next wait, cancelled;
    # with wait_for it went on waiting
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)


async def test_times_out_quietly_and_returns_when_set() -> None:
    event = asyncio.Event()
    await wait_event(event, 0.01)  # no error on timeout
    event.set()
    await wait_event(event, None)
