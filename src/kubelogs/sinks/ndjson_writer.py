"""Shared run loop of the sinks that append NDJSON to a byte stream (`stdout`, `file`).

encode -> group what is waiting -> one write -> flush (and fsync if asked) -> resolve acks.
Acks are resolved only after the write returned: a crash before that resends the batch.
"""

from __future__ import annotations

import asyncio
import os
from typing import BinaryIO

from kubelogs.codecs.document import Schema, encode_ndjson
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.runtime import Input
from kubelogs.telemetry.metrics import ComponentMetrics

MAX_GROUP = 64
"""Batches joined into one write: bounds the bytes held at once (64 x one read chunk)."""


async def run_ndjson(
    inp: Input,
    stream: BinaryIO,
    *,
    schema: Schema,
    fsync: bool,
    metrics: ComponentMetrics,
) -> None:
    async for first in inp:
        group: list[Batch] = [first]
        while len(group) < MAX_GROUP:
            nxt = inp.receive_nowait()
            if nxt is None:
                break
            group.append(nxt)
        payload = b"".join(encode_ndjson(b, schema) for b in group)
        await asyncio.to_thread(_write, stream, payload, fsync)
        n = 0
        for b in group:
            n += len(b)
            if b.ack is not None:
                b.ack.resolve()
        metrics.received_events.inc(n)
        metrics.sent_events.inc(n)
        metrics.sent_bytes.inc(len(payload))


def _write(stream: BinaryIO, payload: bytes, fsync: bool) -> None:
    stream.write(payload)
    stream.flush()
    if fsync:
        os.fsync(stream.fileno())
