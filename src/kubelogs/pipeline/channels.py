"""Bounded channels between stages: backpressure, fan-in and fan-out.

A `Channel` is one consumer's bounded queue with any number of producers; it ends (the
consumer's ``async for`` stops) when every producer has closed its end, so shutdown
ripples downstream. `FanOut` is a producer's output to several channels: one batch goes
to every consumer, with the ack token shared (`fork`) so the source's checkpoint waits for
all of them. A full channel blocks `send`, which stops the reading source: nothing is
dropped and memory stays bounded.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from kubelogs.pipeline.event import Batch


class Channel:
    def __init__(self, name: str, capacity: int, max_events: int | None = None) -> None:
        self.name = name
        self._capacity = capacity
        self._max_events = max_events
        """Also bound the queue by events (`buffer: {type: memory, max_events}`); one
        batch is always let in, so a batch larger than the bound cannot wedge it."""
        self._items: deque[Batch] = deque()
        self._producers = 0
        self._closed_producers = 0
        self._not_empty = asyncio.Event()
        self._not_full = asyncio.Event()
        self._not_full.set()
        self.events = 0
        """Events waiting in the channel, for `kubelogs_buffer_events`."""

    def add_producer(self) -> None:
        self._producers += 1

    def close_producer(self) -> None:
        self._closed_producers += 1
        if self._closed_producers >= self._producers:
            self._not_empty.set()

    @property
    def closed(self) -> bool:
        return self._closed_producers >= self._producers

    def _full(self) -> bool:
        if len(self._items) >= self._capacity:
            return True
        limit = self._max_events
        return limit is not None and bool(self._items) and self.events >= limit

    async def put(self, batch: Batch) -> None:
        while self._full():
            self._not_full.clear()
            await self._not_full.wait()
        self._items.append(batch)
        self.events += len(batch)
        self._not_empty.set()

    def receive_nowait(self) -> Batch | None:
        if not self._items:
            return None
        batch = self._items.popleft()
        self.events -= len(batch)
        self._not_full.set()
        return batch

    async def receive(self) -> Batch | None:
        """The next batch, or None once every producer closed and the queue is empty."""
        while True:
            batch = self.receive_nowait()
            if batch is not None:
                return batch
            if self.closed:
                return None
            self._not_empty.clear()
            await self._not_empty.wait()

    def __aiter__(self) -> AsyncIterator[Batch]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Batch]:
        while True:
            batch = await self.receive()
            if batch is None:
                return
            yield batch

    def __len__(self) -> int:
        return len(self._items)


class FanOut:
    """A component's output: every batch goes to every downstream channel."""

    def __init__(self, channels: list[Channel]) -> None:
        self._channels = channels
        for ch in channels:
            ch.add_producer()

    @property
    def consumers(self) -> int:
        """Downstream channels (0: what is sent is acknowledged and goes nowhere)."""
        return len(self._channels)

    async def send(self, batch: Batch) -> None:
        channels = self._channels
        if not channels:
            if batch.ack is not None:
                batch.ack.resolve()
            return
        if len(channels) > 1 and batch.ack is not None:
            batch.ack.fork(len(channels) - 1)
        for ch in channels:
            await ch.put(batch)

    def close(self) -> None:
        for ch in self._channels:
            ch.close_producer()
