"""`filter` and `route`: what they keep, where it goes, and that every event's ack
share is resolved exactly once (the source's checkpoint advances past dropped events)."""

from __future__ import annotations

from typing import Any

import pytest

import kubelogs.components  # noqa: F401
from kubelogs.config.errors import ConfigInvalid
from kubelogs.config.loader import config_from_data
from kubelogs.pipeline.acks import AckLedger
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.telemetry.metrics import ComponentMetrics, Metrics
from kubelogs.transforms.condition import Condition
from kubelogs.transforms.filter import FilterTransform
from kubelogs.transforms.route import RouteTransform

CTX = FileContext(source_id="s", path="/var/log/app.log", file_key="1:2:f", id_prefix="p")


def batch(messages: list[str], ledger: AckLedger | None = None, end: int = 100) -> Batch:
    n = len(messages)
    return Batch(
        ctx=CTX,
        times=[0] * n,
        messages=messages,
        streams=["stdout"] * n,
        offsets=list(range(0, 10 * n, 10)),
        ack=ledger.track(end) if ledger is not None else None,
        end_offset=end,
    )


def discarded(metrics: Metrics, cid: str) -> float:
    value = metrics.registry.get_sample_value(
        "kubelogs_component_discarded_events_total",
        {
            "component_id": cid,
            "component_kind": "transform",
            "component_type": "filter",
            "intentional": "true",
        },
    )
    return value or 0.0


class TestFilter:
    def test_keeps_matching_events_with_the_same_token(self) -> None:
        ledger = AckLedger(0)
        metrics = Metrics()
        f = FilterTransform(
            Condition("not healthz"), ComponentMetrics(metrics, "f", "transform", "filter")
        )
        b = batch(["GET /healthz", "boom error", "GET /healthz 200"], ledger)

        out = f.process(b)

        assert out is not None
        assert out.messages == ["boom error"]
        assert out.ack is b.ack
        assert discarded(metrics, "f") == 2
        assert ledger.committed == 0  # the kept event is not durable yet
        assert out.ack is not None
        out.ack.resolve()
        assert ledger.committed == 100

    def test_a_batch_dropped_entirely_is_acknowledged_at_once(self) -> None:
        ledger = AckLedger(0)
        f = FilterTransform(Condition("error"))
        first = batch(["ok", "fine"], ledger, end=50)
        second = batch(["error"], ledger, end=80)

        assert f.process(first) is None
        assert ledger.committed == 50  # the checkpoint moves past dropped events
        out = f.process(second)
        assert out is not None
        assert out.ack is not None
        out.ack.resolve()
        assert ledger.committed == 80
        assert f.discarded == 2

    def test_everything_kept_returns_the_batch_itself(self) -> None:
        b = batch(["error a", "error b"])
        assert FilterTransform(Condition("error")).process(b) is b


class TestRoute:
    def routes(self) -> RouteTransform:
        return RouteTransform({"errors": Condition("error"), "pay": Condition("payments")})

    def test_an_event_goes_to_every_route_it_matches_and_the_rest_to_unmatched(self) -> None:
        r = self.routes()
        out = dict(
            (name, b.messages)
            for name, b in r.route(batch(["payments error", "error", "ok", "payments ok"]))
        )
        assert out == {
            "errors": ["payments error", "error"],
            "pay": ["payments error", "payments ok"],
            "_unmatched": ["ok"],
        }
        assert r.output_names == ("errors", "pay", "_unmatched")

    def test_each_output_holds_one_share_of_the_token(self) -> None:
        ledger = AckLedger(0)
        outs = self.routes().route(batch(["payments error", "ok"], ledger))
        assert [n for n, _ in outs] == ["errors", "pay", "_unmatched"]
        for i, (_, b) in enumerate(outs):
            assert ledger.committed == 0, f"committed before share {i} resolved"
            assert b.ack is not None
            b.ack.resolve()
        assert ledger.committed == 100

    def test_outputs_without_events_are_not_sent(self) -> None:
        ledger = AckLedger(0)
        outs = self.routes().route(batch(["error"], ledger))
        assert [n for n, _ in outs] == ["errors"]
        assert outs[0][1].ack is not None
        outs[0][1].ack.resolve()
        assert ledger.committed == 100


def _cfg(transforms: dict[str, Any], sink_inputs: list[str]) -> dict[str, Any]:
    return {
        "sources": {"node": {"type": "file", "paths": ["/var/log/x.log"]}},
        "transforms": transforms,
        "sinks": {"out": {"type": "blackhole", "inputs": sink_inputs}},
    }


def problems_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigInvalid) as info:
        config_from_data(data, "t.yaml", {})
    return info.value.problems


class TestConfig:
    def test_route_outputs_are_inputs(self) -> None:
        cfg = config_from_data(
            _cfg(
                {"split": {"type": "route", "inputs": ["node"], "routes": {"errors": "error"}}},
                ["split.errors", "split._unmatched"],
            ),
            "t.yaml",
            {},
        )
        assert cfg.inputs["out"] == ["split.errors", "split._unmatched"]

    def test_glob_over_route_outputs(self) -> None:
        cfg = config_from_data(
            _cfg(
                {"split": {"type": "route", "inputs": ["node"], "routes": {"a": "x", "b": "y"}}},
                ["split.*"],
            ),
            "t.yaml",
            {},
        )
        assert cfg.inputs["out"] == ["split.a", "split.b", "split._unmatched"]

    def test_unknown_route_name_is_reported(self) -> None:
        problems = problems_of(
            _cfg(
                {"split": {"type": "route", "inputs": ["node"], "routes": {"errors": "error"}}},
                ["split.eror"],
            )
        )
        assert problems[0] == (
            "sinks.out.inputs[0]: 'split.eror' is not an output of split: it has no route "
            "'eror' (outputs: errors, _unmatched)"
        )

    def test_reading_a_route_by_its_id_is_reported(self) -> None:
        problems = problems_of(
            _cfg(
                {"split": {"type": "route", "inputs": ["node"], "routes": {"errors": "error"}}},
                ["split"],
            )
        )
        assert problems[0] == (
            "sinks.out.inputs[0]: 'split' has named outputs; read one of them as "
            "split.<name> (errors, _unmatched)"
        )

    def test_cycle_through_a_route_is_reported(self) -> None:
        problems = problems_of(
            _cfg(
                {
                    "split": {"type": "route", "inputs": ["node", "f"], "routes": {"e": "e"}},
                    "f": {"type": "filter", "inputs": ["split.e"], "condition": "x"},
                },
                ["split._unmatched", "f"],
            )
        )
        assert any("cycle" in p for p in problems), problems

    def test_condition_syntax_error_has_key_path_and_caret(self) -> None:
        problems = problems_of(
            _cfg({"f": {"type": "filter", "inputs": ["node"], "condition": "a and (b"}}, ["f"])
        )
        assert problems == [
            "transforms.f.condition: the query ends too early at column 9\n"
            "    a and (b\n"
            "            ^"
        ]

    def test_route_condition_error_names_the_route(self) -> None:
        problems = problems_of(
            _cfg(
                {"r": {"type": "route", "inputs": ["node"], "routes": {"bad": 'x "y'}}},
                ["r.bad"],
            )
        )
        assert len(problems) == 1
        assert problems[0].startswith("transforms.r.routes: routes.bad: an unterminated quote")
        assert problems[0].endswith('    x "y\n      ^')

    def test_route_names_are_checked(self) -> None:
        problems = problems_of(
            _cfg({"r": {"type": "route", "inputs": ["node"], "routes": {"_x": "y"}}}, ["r._x"])
        )
        assert problems[0].startswith("transforms.r.routes: route name '_x'")


def test_an_id_equal_to_a_route_output_is_refused() -> None:
    problems = problems_of(
        _cfg(
            {
                "r": {"type": "route", "inputs": ["node"], "routes": {"e": "x"}},
                "r.e": {"type": "filter", "inputs": ["r._unmatched"], "condition": "y"},
            },
            ["r.e"],
        )
    )
    assert "transforms.r.e: id is also the name of an output of r; rename one of them" in problems
