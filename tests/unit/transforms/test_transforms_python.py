"""`python`: user functions per batch and per event, imported from a configured path;
user errors flag events and never lose or stall them."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

import kubelogs.components  # noqa: F401
from kubelogs.config.base import BuildContext
from kubelogs.config.errors import ConfigError, ConfigInvalid
from kubelogs.config.loader import config_from_data
from kubelogs.pipeline.acks import AckLedger
from kubelogs.pipeline.event import Batch, FileContext
from kubelogs.telemetry.metrics import Metrics
from kubelogs.transforms.python import PythonConfig, PythonTransform

CTX = FileContext(source_id="s", path="/var/log/app.log", file_key="k", id_prefix="x")

USER_CODE = """
from kubelogs.pipeline.event import Batch

def drop_debug(batch):
    rows = [i for i, m in enumerate(batch.messages) if not m.startswith("DEBUG")]
    return batch.select(rows) if rows else None

def upper(event):
    event["message"] = event["message"].upper()
    event["fields"]["len"] = len(event["message"])
    return event

def split_words(event):
    return [dict(event, message=w) for w in event["message"].split()]

def fragile(event):
    if "boom" in event["message"]:
        raise RuntimeError("user bug")
    return None if event["message"] == "drop" else event

def wrong_type(batch):
    return 42
"""


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    d = tmp_path / "user"
    d.mkdir()
    (d / "my_transforms.py").write_text(textwrap.dedent(USER_CODE))
    return d


def build(user_dir: Path, function: str, mode: str = "batch") -> PythonTransform:
    cfg = PythonConfig.model_validate(
        {
            "type": "python",
            "inputs": ["x"],
            "function": f"my_transforms:{function}",
            "path": str(user_dir),
            "mode": mode,
        }
    )
    return cfg.build(BuildContext("py", user_dir, "n", Metrics()))


def batch(messages: list[str], ledger: AckLedger | None = None) -> Batch:
    n = len(messages)
    return Batch(
        ctx=CTX,
        times=[1_000 + i for i in range(n)],
        messages=messages,
        streams=["stdout"] * n,
        offsets=[100 * i for i in range(n)],
        ack=ledger.track(100 * n) if ledger is not None else None,
        tstrs=[b"T%d" % i for i in range(n)],
    )


def test_batch_mode_filters(user_dir: Path) -> None:
    t = build(user_dir, "drop_debug")
    out = t.process(batch(["DEBUG x", "INFO y"]))
    assert out is not None
    assert out.messages == ["INFO y"]


def test_batch_mode_dropping_everything_acknowledges(user_dir: Path) -> None:
    ledger = AckLedger(0)
    assert build(user_dir, "drop_debug").process(batch(["DEBUG x"], ledger)) is None
    assert ledger.committed == 100


def test_event_mode_changes_fields_and_message(user_dir: Path) -> None:
    out = build(user_dir, "upper", "event").process(batch(["abc", "de"]))
    assert out is not None
    assert out.messages == ["ABC", "DE"]
    assert out.fields == {0: {"len": 3}, 1: {"len": 2}}
    assert out.tstrs == [b"T0", b"T1"]  # times unchanged: the runtime's strings are kept


def test_event_mode_split_gives_unique_ids_inside_the_event(user_dir: Path) -> None:
    out = build(user_dir, "split_words", "event").process(batch(["a b c", "d"]))
    assert out is not None
    assert out.messages == ["a", "b", "c", "d"]
    assert out.offsets == [0, 1, 2, 100]
    assert len({out.event_id(i) for i in range(len(out))}) == 4


def test_an_exception_flags_the_event_and_passes_it(user_dir: Path) -> None:
    ledger = AckLedger(0)
    t = build(user_dir, "fragile", "event")
    out = t.process(batch(["ok", "boom here", "drop"], ledger))
    assert out is not None
    assert out.messages == ["ok", "boom here"]
    assert out.flags == {1: ("transform_error",)}
    assert t.errors == 1
    assert out.ack is not None
    out.ack.resolve()
    assert ledger.committed == 300


def test_a_wrong_return_type_flags_the_whole_batch(user_dir: Path) -> None:
    out = build(user_dir, "wrong_type").process(batch(["a", "b"]))
    assert out is not None
    assert out.messages == ["a", "b"]
    assert out.flags == {0: ("transform_error",), 1: ("transform_error",)}


def test_errors_are_counted(user_dir: Path) -> None:
    metrics = Metrics()
    cfg = PythonConfig.model_validate(
        {
            "type": "python",
            "inputs": ["x"],
            "function": "my_transforms:wrong_type",
            "path": str(user_dir),
        }
    )
    cfg.build(BuildContext("py", user_dir, "n", metrics)).process(batch(["a"]))
    value = metrics.registry.get_sample_value(
        "kubelogs_component_errors_total",
        {
            "component_id": "py",
            "component_kind": "transform",
            "component_type": "python",
            "error_type": "transform_error",
            "stage": "processing",
        },
    )
    assert value == 1


def test_config_errors(user_dir: Path) -> None:
    data = {
        "sources": {"node": {"type": "file", "paths": ["/var/log/x.log"]}},
        "transforms": {
            "a": {"type": "python", "inputs": ["node"], "function": "no colon"},
            "b": {
                "type": "python",
                "inputs": ["a"],
                "function": "missing:f",
                "path": str(user_dir),
            },
        },
        "sinks": {"out": {"type": "blackhole", "inputs": ["b"]}},
    }
    with pytest.raises(ConfigInvalid) as info:
        config_from_data(data, "t.yaml", {})
    assert info.value.problems == [
        "transforms.a.function: 'no colon' is not module:function (e.g. my_transforms:process)",
        f"transforms.b: path: no module 'missing' in {str(user_dir)!r} "
        "(looked for missing.py and its package)",
    ]


def test_missing_function_is_a_config_error_at_build(user_dir: Path) -> None:
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        build(user_dir, "nope")
