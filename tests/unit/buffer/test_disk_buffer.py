"""The disk buffer in front of a sink: durable acks, restart where delivery stopped,
damaged records skipped and counted, a full buffer blocking or dropping, flat memory."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from kubelogs.buffer import records
from kubelogs.buffer.disk import DiskBuffer, Record
from kubelogs.buffer.sink import DiskBufferedSink
from kubelogs.pipeline.channels import Channel
from kubelogs.telemetry.metrics import Metrics
from support.buffers import RecordingSink, batch, buffered
from support.waiting import until


def test_record_round_trip_keeps_context_and_offsets() -> None:
    """What comes back is the batch that went in: context (ids), offsets, flags, fields."""
    b = batch(10, 5, file=3)
    b.tstrs = [b"2023-11-14T22:13:20.000000010Z"] * 5
    rec = records.encode(b, written_ns=123)
    header, payload = rec[: records.HEADER.size], rec[records.HEADER.size :]
    length, events, _ = records.parse_header(header)
    records.check(header, payload)
    back, written = records.decode(payload)

    assert (len(payload), 5, 123) == (length, events, written)
    assert b.ctx == back.ctx
    assert (b.times, b.messages, b.streams, b.offsets) == (
        back.times,
        back.messages,
        back.streams,
        back.offsets,
    )
    assert (b.flags, b.fields, b.end_offset, b.tstrs) == (
        back.flags,
        back.fields,
        back.end_offset,
        back.tstrs,
    )
    assert [b.event_id(i) for i in range(5)] == [back.event_id(i) for i in range(5)]


def test_a_flipped_bit_fails_the_checksum() -> None:
    rec = bytearray(records.encode(batch(0, 3), written_ns=1))
    rec[len(rec) // 2] ^= 0x10
    header, payload = bytes(rec[:16]), bytes(rec[16:])
    with pytest.raises(records.CorruptRecord):
        records.check(header, payload)


async def feed(sink: DiskBufferedSink, batches: list[object]) -> tuple[Channel, asyncio.Task[None]]:
    inp = Channel("in", 8)
    inp.add_producer()
    task = asyncio.create_task(sink.run(inp))
    for b in batches:
        await inp.put(b)  # type: ignore[arg-type]
    return inp, task


async def test_upstream_ack_only_after_fsync_then_delivered(tmp_path: Path) -> None:
    """The source's ack waits for the fsync that covers the record; the sink then gets
    the batch from the buffer with the same ids."""
    acked: list[int] = []
    sink = RecordingSink()
    buf = buffered(tmp_path, sink, fsync_interval=0.01)
    gate = asyncio.Event()
    real_sync = buf.buffer.sync
    synced = 0

    def sync() -> None:
        nonlocal synced
        if not gate.is_set():
            raise OSError(5, "held by the test")  # retried by the syncer
        real_sync()
        synced += 1

    buf.buffer.sync = sync  # type: ignore[method-assign]
    inp, task = await feed(buf, [batch(0, 10, on_ack=lambda: acked.append(1))])
    await until(lambda: sink.batches, "delivery from the buffer")
    assert [] == acked, "acknowledged upstream before any fsync"
    gate.set()
    await until(lambda: acked, "the ack after fsync", seconds=30)
    assert synced >= 1
    inp.close_producer()
    await task
    await buf.close()
    assert [100 * i for i in range(10)] == sink.offsets()
    assert batch(0, 10).ctx == sink.batches[0].ctx
    assert sink.closed


async def test_restart_resumes_where_delivery_stopped(tmp_path: Path) -> None:
    """Events the sink acknowledged are not sent again; the rest are, after a restart."""
    sink = RecordingSink(healthy=True)
    buf = buffered(tmp_path, sink)
    inp, task = await feed(buf, [batch(0, 10)])
    await until(lambda: len(sink.batches) == 1, "first delivery")
    sink.healthy = False
    for i in range(1, 6):
        await inp.put(batch(10 * i, 10))
    await until(lambda: len(sink.batches) >= 3, "more deliveries (held)")
    await until(lambda: buf.buffer.committed > 0, "the read position to be saved")
    task.cancel()  # as the runner does when the grace period runs out
    with pytest.raises(asyncio.CancelledError):
        await task
    await buf.close()

    again = RecordingSink()
    buf2 = buffered(tmp_path, again)
    assert 50 == buf2.buffer.pending_events
    inp2, task2 = await feed(buf2, [])
    await until(lambda: len(again.offsets()) == 50, "the undelivered events")
    inp2.close_producer()
    await task2
    await buf2.close()
    assert [100 * i for i in range(10, 60)] == again.offsets()
    assert [] == sorted(
        p.name for p in (tmp_path / "buffers" / "out").glob("*.seg") if p.stat().st_size
    )


async def test_damaged_and_torn_records_are_skipped_and_counted(tmp_path: Path) -> None:
    """A flipped byte in one record and a torn last record: the others arrive, the
    damage is counted, nothing crashes (and a restart does not loop on it)."""
    buf = DiskBuffer(tmp_path / "b", max_size=1 << 30, segment_size=1 << 30)
    for i in range(5):
        buf.append(records.encode(batch(10 * i, 10), written_ns=1))
    buf.sync()
    buf.close()
    seg = next((tmp_path / "b").glob("*.seg"))
    data = bytearray(seg.read_bytes())
    one = len(data) // 5
    data[one + one // 2] ^= 0xFF  # inside record 2
    data = data[: len(data) - 7]  # record 5 torn
    seg.write_bytes(bytes(data))

    metrics = Metrics()
    sink = RecordingSink()
    b2 = buffered(tmp_path / "x", sink, metrics=metrics)
    b2.buffer.close()
    b2.buffer = DiskBuffer(tmp_path / "b", max_size=1 << 30, segment_size=1 << 30)
    inp, task = await feed(b2, [batch(100, 2)])
    await until(lambda: len(sink.offsets()) == 32, "the good records")
    inp.close_producer()
    await task
    await b2.close()
    got = sink.offsets()
    assert [100 * i for i in range(0, 10)] + [100 * i for i in range(20, 40)] + [
        10000,
        10100,
    ] == got
    assert 2 == b2.buffer.corrupt_records
    assert b"kubelogs_buffer_corrupt_records_total" in metrics.render()


async def test_block_when_full_holds_the_source_until_space_returns(tmp_path: Path) -> None:
    """With the sink down, a full buffer stops taking events (upstream acks stop, which
    stops the sources); once the sink is back everything arrives, in order."""
    acked: list[int] = []
    sink = RecordingSink(healthy=False)
    one = len(records.encode(batch(0, 100), 1))
    buf = buffered(tmp_path, sink, max_size=64 * 1024, segment_size=16 * 1024)
    assert one * 3 < 64 * 1024
    inp = Channel("in", 2)
    inp.add_producer()
    task = asyncio.create_task(buf.run(inp))

    async def produce() -> None:
        for i in range(40):
            await inp.put(batch(100 * i, 100, on_ack=lambda i=i: acked.append(i)))
        inp.close_producer()

    producer = asyncio.create_task(produce())
    await until(lambda: len(acked) > 3, "the buffer to take some batches")
    await asyncio.sleep(0.3)
    assert not producer.done(), "a full buffer kept taking events"
    assert buf.buffer.total_bytes <= 64 * 1024 + one
    stuck = len(acked)
    assert stuck < 40
    sink.heal()
    await producer
    await task
    await buf.close()
    assert list(range(40)) == sorted(acked)
    assert [100 * i for i in range(4000)] == sink.offsets()


async def test_drop_newest_counts_what_it_drops(tmp_path: Path) -> None:
    metrics = Metrics()
    acked: list[int] = []
    sink = RecordingSink(healthy=False)
    buf = buffered(
        tmp_path,
        sink,
        max_size=64 * 1024,
        when_full="drop_newest",
        segment_size=16 * 1024,
        metrics=metrics,
    )
    batches = [batch(100 * i, 100, on_ack=lambda i=i: acked.append(i)) for i in range(40)]
    inp, task = await feed(buf, batches)
    await until(lambda: len(acked) == 40, "every batch acknowledged (kept or dropped)")
    assert buf.discarded_events > 0
    kept = 4000 - buf.discarded_events
    sink.heal()
    sink.healthy = True
    inp.close_producer()
    await until(lambda: len(sink.offsets()) >= kept, "the kept events")
    await task
    await buf.close()
    assert kept == len(sink.offsets())
    text = metrics.render().decode()
    dropped = float(buf.discarded_events)
    assert f'kubelogs_buffer_discarded_events_total{{component_id="out"}} {dropped}' in text


async def test_metrics_bytes_events_and_oldest_age(tmp_path: Path) -> None:
    metrics = Metrics()
    sink = RecordingSink(healthy=False)
    buf = buffered(tmp_path, sink, metrics=metrics)
    inp, task = await feed(buf, [batch(0, 10), batch(10, 10)])
    await until(lambda: len(sink.batches) == 2, "delivery attempts")
    await asyncio.sleep(0.05)
    text = metrics.render().decode()
    assert 'kubelogs_buffer_events{component_id="out"} 20.0' in text
    size = sum(p.stat().st_size for p in (tmp_path / "buffers" / "out").glob("*.seg"))
    assert f'kubelogs_buffer_bytes{{component_id="out"}} {float(size)}' in text
    age = [ln for ln in text.splitlines() if ln.startswith("kubelogs_buffer_oldest_age_seconds{")]
    assert 0 < float(age[0].split()[-1]) < 60
    sink.heal()
    inp.close_producer()
    await task
    await buf.close()
    assert 'kubelogs_buffer_events{component_id="out"} 0.0' in metrics.render().decode()


def test_two_processes_cannot_share_a_buffer(tmp_path: Path) -> None:
    a = DiskBuffer(tmp_path, max_size=1 << 20, segment_size=1 << 16)
    with pytest.raises(OSError, match="in use by another kubelogs process"):
        DiskBuffer(tmp_path, max_size=1 << 20, segment_size=1 << 16)
    a.close()
    DiskBuffer(tmp_path, max_size=1 << 20, segment_size=1 << 16).close()


def test_unreadable_position_file_resends_instead_of_losing(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path, max_size=1 << 20, segment_size=1 << 16)
    buf.append(records.encode(batch(0, 3), 1))
    buf.sync()
    buf.close()
    (tmp_path / "position").write_text("{garbage")
    again = DiskBuffer(tmp_path, max_size=1 << 20, segment_size=1 << 16)
    item = again.read_next()
    again.close()
    assert isinstance(item, Record)
    assert 3 == item.events
    assert os.path.exists(tmp_path / "lock")


async def test_full_disk_under_the_buffer_is_retried_without_torn_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the disk is full each write lands partly, then fails with ENOSPC: the
    buffer cuts the partial record off, holds the upstream acks, retries; once space
    returns every event arrives and no damaged record was ever written."""
    import errno

    from kubelogs.buffer import disk as disk_module
    from kubelogs.buffer import sink as sink_module

    state = {"full": True, "failures": 0}
    real = disk_module._os_write

    def write(fd: int, data: memoryview) -> int:
        if state["full"]:
            state["failures"] += 1
            real(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(disk_module, "_os_write", write)
    monkeypatch.setattr(sink_module.Backoff, "next_delay", lambda self: 0.01)
    metrics = Metrics()
    acked: list[int] = []
    sink = RecordingSink()
    buf = buffered(tmp_path, sink, metrics=metrics)
    inp, task = await feed(
        buf, [batch(10 * i, 10, on_ack=lambda: acked.append(1)) for i in range(3)]
    )
    await until(lambda: state["failures"] >= 3, "failed writes")
    assert [] == acked
    assert [] == sink.batches
    state["full"] = False
    await until(lambda: len(acked) == 3, "the acks once space is back")
    inp.close_producer()
    await task
    await buf.close()
    assert [100 * i for i in range(30)] == sink.offsets()
    assert 0 == buf.buffer.corrupt_records
    text = metrics.render().decode()
    assert 'error_type="ENOSPC",stage="buffering"' in text


def test_two_disk_buffers_share_one_exposition(tmp_path: Path) -> None:
    """Each metric family appears once, with one sample per buffered sink (a family
    printed twice is an invalid exposition for Prometheus)."""
    metrics = Metrics()
    shared: dict[str, object] = {}
    a = buffered(tmp_path, RecordingSink(), metrics=metrics, component_id="a", shared=shared)
    b = buffered(tmp_path, RecordingSink(), metrics=metrics, component_id="b", shared=shared)
    text = metrics.render().decode()
    a.buffer.close()
    b.buffer.close()
    assert 1 == text.count("# HELP kubelogs_buffer_bytes ")
    assert 'kubelogs_buffer_bytes{component_id="a"} 0.0' in text
    assert 'kubelogs_buffer_bytes{component_id="b"} 0.0' in text
