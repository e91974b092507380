"""`sample` and `throttle`: what passes, stability of the sample, and ack accounting."""

from __future__ import annotations

import pytest

import kubelogs.components  # noqa: F401
from kubelogs.config.errors import ConfigInvalid
from kubelogs.config.loader import config_from_data
from kubelogs.kubernetes.document_meta import encode_meta
from kubelogs.pipeline.acks import AckLedger
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.transforms.sample import SampleTransform
from kubelogs.transforms.throttle import ThrottleTransform


def ctx(pod: str = "web-1", path: str = "/var/log/pods/x/c/0.log") -> FileContext:
    ecs, fluentd = encode_meta(
        namespace="default", pod=pod, pod_uid="u", container="c", container_id="", node="n"
    )
    return FileContext(
        source_id="s",
        path=path,
        file_key=f"k-{pod}",
        id_prefix=f"p-{pod}",
        namespace="default",
        pod=pod,
        container="c",
        meta_ecs=ecs,
        meta_fluentd=fluentd,
    )


def batch(
    n: int,
    *,
    context: FileContext | None = None,
    ledger: AckLedger | None = None,
    fields: dict[int, dict[str, object]] | None = None,
    first: int = 0,
) -> Batch:
    return Batch(
        ctx=context or ctx(),
        times=[0] * n,
        messages=[f"m{first + i}" for i in range(n)],
        streams=["stdout"] * n,
        offsets=[100 * (first + i) for i in range(n)],
        fields=fields,
        ack=ledger.track(1000 * (first + n)) if ledger is not None else None,
    )


class TestSample:
    def test_keeps_about_one_in_n_and_the_same_ones_every_time(self) -> None:
        s = SampleTransform(10)
        out = s.process(batch(5000))
        assert out is not None
        assert 350 < len(out) < 650
        again = SampleTransform(10).process(batch(5000))
        assert again is not None
        assert again.offsets == out.offsets

    def test_a_trace_is_kept_or_dropped_as_a_whole(self) -> None:
        traces = {i: {"trace": {"id": f"t{i % 50}"}} for i in range(1000)}
        out = SampleTransform(5, key="trace.id").process(batch(1000, fields=traces))
        assert out is not None
        assert out.fields is not None
        kept = {f["trace"]["id"] for f in out.fields.values()}
        assert 0 < len(kept) < 50
        for tid in kept:
            assert sum(1 for f in out.fields.values() if f["trace"]["id"] == tid) == 20

    def test_a_file_field_key_decides_the_whole_batch(self) -> None:
        decided = [
            SampleTransform(2, key="kubernetes.pod.name").process(batch(10, context=ctx(f"p{i}")))
            for i in range(20)
        ]
        assert {len(b) if b is not None else 0 for b in decided} == {0, 10}

    def test_dropped_batches_are_acknowledged(self) -> None:
        ledger = AckLedger(0)
        s = SampleTransform(1000)
        results = [s.process(batch(1, ledger=ledger, first=i)) for i in range(50)]
        for b in results:
            if b is not None and b.ack is not None:
                b.ack.resolve()
        assert ledger.committed == 50_000
        assert ledger.in_flight == 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TestThrottle:
    def test_at_most_threshold_per_window_per_container(self) -> None:
        clock = Clock()
        t = ThrottleTransform(3, 1.0, clock=clock)
        a = t.process(batch(2, context=ctx("a")))
        b = t.process(batch(5, context=ctx("a"), first=2))
        other = t.process(batch(5, context=ctx("b")))
        assert a is not None
        assert b is not None
        assert other is not None
        assert (a.messages, b.messages) == (["m0", "m1"], ["m2"])
        assert len(other) == 3
        assert t.process(batch(1, context=ctx("a"), first=9)) is None
        clock.now = 1.0
        again = t.process(batch(5, context=ctx("a"), first=10))
        assert again is not None
        assert again.messages == ["m10", "m11", "m12"]

    def test_summary_rides_on_the_first_event_after_the_window(self) -> None:
        clock = Clock()
        t = ThrottleTransform(1, 10.0, summary=True, clock=clock)
        t.process(batch(4))
        clock.now = 11
        out = t.process(batch(2, first=4))
        assert out is not None
        assert out.fields == {
            0: {"throttled": {"dropped": 3, "window_s": 10.0, "key": "default/web-1/c"}}
        }
        assert out.flags == {0: ("throttled",)}

    def test_key_template_over_parsed_fields(self) -> None:
        t = ThrottleTransform(1, 60.0, key="{level}", clock=Clock())
        levels = {i: {"level": lv} for i, lv in enumerate(["error", "info", "error", "info", "x"])}
        out = t.process(batch(5, fields=levels))
        assert out is not None
        assert out.messages == ["m0", "m1", "m4"]

    def test_throttled_events_are_acknowledged(self) -> None:
        ledger = AckLedger(0)
        t = ThrottleTransform(1, 60.0, clock=Clock())
        first = t.process(batch(3, ledger=ledger))
        assert t.process(batch(3, ledger=ledger, first=3)) is None
        assert ledger.committed == 0
        assert first is not None
        assert first.ack is not None
        first.ack.resolve()
        assert ledger.committed == 6000


def test_config_errors() -> None:
    data = {
        "sources": {"node": {"type": "file", "paths": ["/var/log/x.log"]}},
        "transforms": {
            "t": {"type": "throttle", "inputs": ["node"], "threshold": 0, "key": "{oops"},
            "s": {"type": "sample", "inputs": ["t"], "rate": 0},
        },
        "sinks": {"out": {"type": "blackhole", "inputs": ["s"]}},
    }
    with pytest.raises(ConfigInvalid) as info:
        config_from_data(data, "t.yaml", {})
    problems = info.value.problems
    assert "transforms.t.threshold: 0 is out of range: must be at least 1" in problems
    assert any(p.startswith("transforms.t.key: '{oops': unbalanced brace") for p in problems)
    assert "transforms.s.rate: 0 is out of range: must be at least 1" in problems
