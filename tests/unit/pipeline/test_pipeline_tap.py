"""Taps copy a component's output to readers without ever holding the pipeline."""

from __future__ import annotations

import json
import threading

from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.pipeline.tap import TAP_QUEUE_DOCUMENTS, TapHub
from kubelogs.telemetry.metrics import Metrics


def batch(n: int, start: int = 0) -> Batch:
    ctx = FileContext(source_id="logs", path="/var/log/app.log", file_key="k", id_prefix="p")
    return Batch(
        ctx=ctx,
        times=[1_600_000_000_000_000_000] * n,
        messages=[f"m{i}" for i in range(start, start + n)],
        streams=[""] * n,
        offsets=[i * 10 for i in range(start, start + n)],
        ack=AckToken(lambda: None),
    )


def test_nobody_listening_costs_no_encoding() -> None:
    hub = TapHub()
    point = hub.point("logs")
    assert point.subscribers == ()
    broken = batch(1).derive(messages=None)  # would fail to encode if it were encoded
    point.publish(broken)


def test_a_slow_reader_loses_tap_copies_counted_never_blocks_and_never_touches_acks() -> None:
    metrics = Metrics()
    hub = TapHub(metrics)
    sub = hub.subscribe("logs")
    point = hub.point("logs")
    b = batch(TAP_QUEUE_DOCUMENTS + 250)
    point.publish(b)  # returns at once although nobody reads
    assert b.ack is not None
    assert b.ack.pending == 1
    assert sub.dropped == 250
    value = metrics.registry.get_sample_value(
        "kubelogs_tap_dropped_events_total", {"component_id": "logs"}
    )
    assert value == 250
    first = next(iter(sub.chunks())).splitlines()
    assert len(first) == TAP_QUEUE_DOCUMENTS
    assert json.loads(first[0])["message"] == "m0"


def test_limit_and_unsubscribe_end_the_stream_for_one_reader_only() -> None:
    hub = TapHub()
    a = hub.subscribe("logs", limit=2)
    b = hub.subscribe("logs")
    hub.point("logs").publish(batch(3))
    assert [json.loads(d)["message"] for c in a.chunks() for d in c.splitlines()] == ["m0", "m1"]
    hub.unsubscribe(a)
    assert hub.point("logs").subscribers == (b,)
    got: list[bytes] = []
    reader = threading.Thread(
        target=lambda: got.extend(d for c in b.chunks(poll=0.05) for d in c.splitlines())
    )
    reader.start()
    hub.close()  # the agent stops: every stream ends
    reader.join(10)
    assert not reader.is_alive()
    assert [json.loads(d)["message"] for d in got] == ["m0", "m1", "m2"]
