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

    def widen(self) -> tuple[int, int | None]:
        """Lift the bounds (for the length of a reload, see pipeline/swap.py); return
        them for `narrow`. Nothing then waits on this queue, whatever its reader does."""
        bounds = (self._capacity, self._max_events)
        self._capacity, self._max_events = 1 << 62, None
        self._not_full.set()
        return bounds

    def narrow(self, bounds: tuple[int, int | None]) -> None:
        self._capacity, self._max_events = bounds

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
    """A component's output: every batch goes to every downstream channel.

    A configuration reload re-points a running producer's output (`pause`, then
    `detach`/`attach`, then `resume`): while paused, `send` waits before choosing its
    channels, and `pause` returns only once no send is half-way through its channels,
    so every batch goes either wholly to the old consumers or wholly to the new ones.
    """

    def __init__(self, channels: list[Channel]) -> None:
        self._channels = channels
        for ch in channels:
            ch.add_producer()
        self._paused: asyncio.Event | None = None
        self._busy = False
        self._idle: asyncio.Event | None = None

    @property
    def consumers(self) -> int:
        """Downstream channels (0: what is sent is acknowledged and goes nowhere)."""
        return len(self._channels)

    @property
    def channels(self) -> list[Channel]:
        return list(self._channels)

    async def send(self, batch: Batch) -> None:
        while self._paused is not None:
            await self._paused.wait()
        channels = self._channels
        if not channels:
            if batch.ack is not None:
                batch.ack.resolve()
            return
        if len(channels) > 1 and batch.ack is not None:
            batch.ack.fork(len(channels) - 1)
        self._busy = True
        try:
            for ch in channels:
                await ch.put(batch)
        finally:
            self._busy = False
            if self._idle is not None:
                self._idle.set()

    async def pause(self) -> None:
        """Hold every later `send`; return once the send in progress (if any) is done."""
        if self._paused is None:
            self._paused = asyncio.Event()
        while self._busy:
            self._idle = asyncio.Event()
            await self._idle.wait()
        self._idle = None

    def resume(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.set()

    def detach(self, channel: Channel) -> None:
        """Stop feeding `channel` (only while paused): it ends once its queue is read."""
        if channel in self._channels:
            self._channels = [ch for ch in self._channels if ch is not channel]
            channel.close_producer()

    def attach(self, channel: Channel) -> None:
        """Feed `channel` too (only while paused, or before the producer runs)."""
        if channel not in self._channels:
            self._channels = [*self._channels, channel]
            channel.add_producer()

    def close(self) -> None:
        for ch in self._channels:
            ch.close_producer()
