"""The three runtime shapes a component can take, kept tiny on purpose.

- a **source** is ``async run(out, stopping)``: read until `stopping` is set, then send
  what it has and return (the runner closes `out`, so shutdown ripples downstream);
- a **transform** is a plain callable ``process(batch) -> batch | None`` with optional
  async `start`/`stop` for background work (a watch, a cache); dropping a batch means
  resolving its ack, which is explicit and counted;
- a **sink** is ``async run(inp)``: consume until the input ends, resolving each batch's
  ack once the data is durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from kubelogs.pipeline.event import Batch


class Output(Protocol):
    async def send(self, batch: Batch) -> None:
        """Hand a batch downstream; waits while downstream queues are full (backpressure)."""


class Input(Protocol):
    def __aiter__(self) -> AsyncIterator[Batch]: ...

    def receive_nowait(self) -> Batch | None:
        """The next batch if one is waiting (lets a sink group several into one write)."""


@runtime_checkable
class Source(Protocol):
    async def run(self, out: Output, stopping: asyncio.Event) -> None: ...


@runtime_checkable
class Transform(Protocol):
    async def start(self) -> None: ...

    def process(self, batch: Batch) -> Batch | None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class Sink(Protocol):
    async def run(self, inp: Input) -> None: ...
