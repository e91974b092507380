"""Shared run loop of the sinks that append NDJSON to a byte stream (`stdout`, `file`).

encode -> group what is waiting -> one write -> flush (and fsync if asked) -> resolve acks.
Acks are resolved only after the write returned: a crash before that resends the batch.

Error handling: with `retry`, a write that fails with an `OSError` (a full disk, a quota,
an I/O error) is counted in ``kubelogs_component_errors_total``, logged (rate-limited,
naming the target and the errno) and tried again with jittered exponential backoff; the
group stays unacknowledged meanwhile, so the sources stop reading (backpressure) and
nothing is lost. The `write` function must then leave nothing of a failed payload behind
(the `file` sink truncates back), so a retry never follows a torn document. Without
`retry` (stdout: nobody can make room in a pipe), the error ends the sink.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from collections.abc import Callable
from typing import BinaryIO

from kubelogs.codecs.document import Schema, encode_ndjson
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.runtime import Input
from kubelogs.sinks.retry import Backoff
from kubelogs.telemetry.metrics import ComponentMetrics

log = logging.getLogger("kubelogs.sinks")

MAX_GROUP = 64
"""Batches joined into one write: bounds the bytes held at once (64 x one read chunk)."""
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
"""Seconds between retries at most: how long writing may lag behind space returning."""

Write = Callable[[bytes], None]
"""Writes a whole payload durably enough to acknowledge it, or raises."""


async def run_ndjson(
    inp: Input,
    write: Write,
    *,
    schema: Schema,
    metrics: ComponentMetrics,
    retry: bool = False,
    target: str = "",
) -> None:
    backoff = Backoff(FIRST_BACKOFF, MAX_BACKOFF)
    async for first in inp:
        group: list[Batch] = [first]
        while len(group) < MAX_GROUP:
            nxt = inp.receive_nowait()
            if nxt is None:
                break
            group.append(nxt)
        payload = b"".join(encode_ndjson(b, schema) for b in group)
        while True:
            try:
                await asyncio.to_thread(write, payload)
                break
            except OSError as exc:
                if not retry:
                    raise
                code = errno.errorcode.get(exc.errno or 0, "EIO")
                metrics.error(code, "sending")
                delay = backoff.next_delay()
                log.warning(
                    "%s: write failed (%s: %s); the events are kept and the write is retried "
                    "in %.1fs",
                    target,
                    code,
                    exc.strerror or exc,
                    delay,
                )
                await asyncio.sleep(delay)
        if backoff.failures:
            log.warning("%s: writing again after %d failed attempts", target, backoff.failures)
            backoff.reset()
        n = 0
        for b in group:
            n += len(b)
            if b.ack is not None:
                b.ack.resolve()
        metrics.received_events.inc(n)
        metrics.sent_events.inc(n)
        metrics.sent_bytes.inc(len(payload))


def write_stream(stream: BinaryIO, payload: bytes, fsync: bool = False) -> None:
    """Write to a buffered stream and flush it (stdout)."""
    stream.write(payload)
    stream.flush()
    if fsync:
        os.fsync(stream.fileno())
