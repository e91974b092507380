"""Model test of the disk buffer: random writes, out-of-order sink acks, crashes, torn
tails and flipped bytes, over several process lifetimes.

After a final clean run with a healthy sink, every event that was acknowledged upstream
(durable in the buffer) has been delivered at least once, unless the test damaged the
very record that held it; and every delivered event is exactly one that was written
(nothing invented, no context or offset changed). ``KUBELOGS_MODEL_RUNS`` raises the
number of random scenarios (default 12).
"""

from __future__ import annotations

import asyncio
import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kubelogs.buffer import records
from kubelogs.pipeline.channels import Channel
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.runtime import Input
from support.buffers import batch, buffered

RUNS = int(os.environ.get("KUBELOGS_MODEL_RUNS", "12"))

Key = tuple[str, int]
"""(id_prefix, offset): an event's id."""


class ChaoticSink:
    """Acknowledges some batches at once and others later, in random order."""

    def __init__(self, rng: random.Random, delivered: dict[Key, str]) -> None:
        self.rng = rng
        self.delivered = delivered
        self.held: list[Batch] = []
        self.healthy = False

    def release(self, fraction: float) -> None:
        self.rng.shuffle(self.held)
        keep = int(len(self.held) * (1 - fraction))
        go, self.held = self.held[keep:], self.held[:keep]
        for b in go:
            self.deliver(b)

    def deliver(self, b: Batch) -> None:
        """Durably delivered (a held batch is not: a crash loses what the sink holds)."""
        for i, off in enumerate(b.offsets):
            self.delivered[(b.ctx.id_prefix, off)] = b.messages[i]
        assert b.ack is not None
        b.ack.resolve()

    async def run(self, inp: Input) -> None:
        async for b in inp:
            if self.healthy or self.rng.random() < 0.4:
                self.deliver(b)
            else:
                self.held.append(b)


def damage(directory: Path, rng: random.Random) -> set[Key]:
    """Flip one byte inside a random record of a random segment; the events of that
    record may be lost (and only those)."""
    segs = [p for p in sorted(directory.glob("*.seg")) if p.stat().st_size > 0]
    if not segs:
        return set()
    seg = rng.choice(segs)
    data = bytearray(seg.read_bytes())
    bounds: list[tuple[int, int, bytes]] = []
    at = 0
    while at + records.HEADER.size <= len(data):
        try:
            length, _, _ = records.parse_header(bytes(data[at : at + records.HEADER.size]))
        except records.CorruptRecord:
            break
        end = at + records.HEADER.size + length
        if end > len(data):
            break
        bounds.append((at, end, bytes(data[at + records.HEADER.size : end])))
        at = end
    if not bounds:
        return set()
    start, end, payload = rng.choice(bounds)
    data[rng.randrange(start, end)] ^= 1 << rng.randrange(8)
    seg.write_bytes(bytes(data))
    try:
        b, _ = records.decode(payload)
    except records.CorruptRecord:
        return set()
    return {(b.ctx.id_prefix, o) for o in b.offsets}


async def scenario(tmp: Path, seed: int) -> None:
    rng = random.Random(seed)
    # The buffer does its file work with `asyncio.to_thread`. One worker, so that after a
    # simulated kill -9 a no-op through it waits for the killed buffer's last file
    # operation (a cancelled task's thread runs on; a real kill -9 stops it at once): a
    # segment unlinked under `damage` made CI fail with FileNotFoundError.
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
    written: dict[Key, str] = {}
    acked: set[Key] = set()
    delivered: dict[Key, str] = {}
    may_lose: set[Key] = set()
    segment_size = rng.choice([8 * 1024, 32 * 1024, 1024 * 1024])
    next_event = 0
    lifetimes = rng.randint(2, 5)
    for life in range(lifetimes + 1):
        final = life == lifetimes
        sink = ChaoticSink(rng, delivered)
        sink.healthy = final
        buf = buffered(tmp, sink, segment_size=segment_size, fsync_interval=rng.choice([0, 0.005]))  # type: ignore[arg-type]
        buf.commit_interval = rng.choice([0, 0.002])
        inp = Channel("in", 4)
        inp.add_producer()
        task = asyncio.create_task(buf.run(inp))
        for _ in range(0 if final else rng.randint(1, 25)):
            n = rng.randint(1, 60)
            b = batch(next_event, n, file=rng.randint(0, 2))
            keys = [(b.ctx.id_prefix, o) for o in b.offsets]
            for k, m in zip(keys, b.messages, strict=True):
                written[k] = m

            def on_ack(keys: list[Key] = keys) -> None:
                acked.update(keys)

            b.ack.__init__(on_ack)  # type: ignore[union-attr, misc]
            next_event += n
            await inp.put(b)
            if rng.random() < 0.3:
                sink.release(rng.random())
            if rng.random() < 0.3:
                await asyncio.sleep(rng.choice([0, 0.001, 0.01]))
        if final:
            inp.close_producer()
            await asyncio.wait_for(task, 30)
            await buf.close()
            break
        await asyncio.sleep(rng.choice([0, 0.005, 0.03]))
        # kill -9: no final position save, nothing else flushed
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await loop.run_in_executor(None, lambda: None)  # its file work is over
        buf.buffer.close()
        directory = tmp / "buffers" / "out"
        if rng.random() < 0.4:
            may_lose |= damage(directory, rng)
        if rng.random() < 0.4:
            segs = sorted(directory.glob("*.seg"))
            if segs:  # a record torn by the crash: garbage after the last whole record
                with open(segs[-1], "ab") as f:
                    f.write(
                        records.MAGIC + bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
                    )
    invented = {k for k, m in delivered.items() if written.get(k) != m}
    assert set() == invented, f"seed {seed}: delivered events that were never written"
    missing = acked - may_lose - delivered.keys()
    assert set() == missing, f"seed {seed}: {len(missing)} acknowledged events never delivered"


@pytest.mark.parametrize("seed", range(RUNS))
async def test_acked_events_delivered_none_invented(tmp_path: Path, seed: int) -> None:
    await scenario(tmp_path, seed)
