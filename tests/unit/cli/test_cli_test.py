"""`kubelogs test -c FILE`: the unit tests a config declares, passing and failing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import yaml

from kubelogs.cli.main import main
from kubelogs.config.base import BuildContext
from kubelogs.config.loader import Config, RootConfig
from kubelogs.config.unit_tests import UnitTest
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.unit_test_runner import lookup, run_test

K8S = {"type": "kubernetes_metadata", "inputs": ["containers"], "api_server": "http://127.0.0.1:1"}


def write(
    tmp_path: Path, tests: list[dict[str, Any]], sink_reads: str = "k8s", **transforms: Any
) -> Path:
    data = {
        "data_dir": str(tmp_path / "data"),
        "sources": {"containers": {"type": "kubernetes_logs"}},
        "transforms": {"k8s": K8S, **transforms},
        "sinks": {"out": {"type": "stdout", "inputs": [sink_reads]}},
        "tests": tests,
    }
    path = tmp_path / "kubelogs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def kubelogs_test(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(["test", "-c", str(path)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_passing_tests_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(
        tmp_path,
        [
            {
                "name": "lines keep their pod",
                "insert_at": "k8s",
                "inputs": [
                    "a raw line",
                    {
                        "message": "GET / 200",
                        "stream": "stderr",
                        "@timestamp": "2021-02-15T10:00:00.123456789Z",
                        "kubernetes": {"namespace": "web", "pod": {"name": "web-1"}},
                        "http": {"response": {"status_code": 200}},
                    },
                ],
                "outputs": [
                    {
                        "extract_from": "k8s",
                        "events": [
                            {"message": "a raw line", "stream": None},
                            {
                                "message": "GET / 200",
                                "stream": "stderr",
                                "@timestamp": "2021-02-15T10:00:00.123456789Z",
                                "kubernetes.namespace": "web",
                                "kubernetes": {"pod": {"name": "web-1"}},
                                "http.response.status_code": 200,
                            },
                        ],
                    }
                ],
            }
        ],
    )
    rc, out, err = kubelogs_test(path, capsys)
    assert (rc, err) == (0, "")
    assert out == f"PASS  lines keep their pod\n1 passed, 0 failed ({path})\n"


def test_a_failing_test_exits_1_with_a_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        [
            {
                "name": "wrong expectations",
                "insert_at": "k8s",
                "inputs": [
                    {"message": "a", "@timestamp": "2021-02-15T10:00:00Z", "level": "info"},
                    {"message": "b", "@timestamp": "2021-02-15T10:00:00Z"},
                ],
                "outputs": [
                    {
                        "extract_from": "k8s",
                        "events": [{"message": "a", "level": "error", "code": 1}],
                    }
                ],
                "no_output_from": ["k8s"],
            },
            {
                "name": "fine",
                "insert_at": "k8s",
                "inputs": ["x"],
                "outputs": [{"extract_from": "k8s", "events": [{"message": "x"}]}],
            },
        ],
    )
    rc, out, _ = kubelogs_test(path, capsys)
    assert rc == 1
    a = '{"@timestamp": "2021-02-15T10:00:00.000000000Z", "message": "a", "level": "info"}'
    b = '{"@timestamp": "2021-02-15T10:00:00.000000000Z", "message": "b"}'
    assert out.splitlines() == [
        "FAIL  wrong expectations",
        "      k8s: event 1 of 1:",
        '        - level: "error"',
        '        + level: "info"',
        "        - code: 1",
        "        + code: (absent)",
        f"          got: {a}",
        "      k8s: 1 more event(s) than expected:",
        f"        + {b}",
        "      k8s: expected no events, got 2:",
        f"        + {a}",
        f"        + {b}",
        "PASS  fine",
        f"1 passed, 1 failed ({path})",
    ]


def test_bad_tests_are_config_errors_reported_as_validate_does(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        [
            {"name": "no insert_at", "inputs": ["x"], "no_output_from": ["k8s"]},
            {"name": "expects nothing", "insert_at": "k8s", "inputs": ["x"]},
            {"name": "typo", "insert_at": "k8s", "input": ["x"], "no_output_from": ["k8s"]},
        ],
    )
    rc, out, err = kubelogs_test(path, capsys)
    assert (rc, out) == (1, "")
    assert err.splitlines() == [
        f"{path}: 4 problem(s):",
        "tests[0].insert_at: required key is missing",
        "tests[1]: a test needs `outputs` or `no_output_from` (what it expects)",
        "tests[2].inputs: required key is missing",
        "tests[2].input: unknown key",
    ]
    # the same file is refused by `kubelogs validate` (and so by `kubelogs run`)
    assert main(["validate", "-c", str(path)]) == 1


def test_references_to_missing_components_are_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        [
            {"name": "at a sink", "insert_at": "out", "inputs": ["x"], "no_output_from": ["k8s"]},
            {"name": "unknown output", "insert_at": "k8s", "inputs": ["x"]}
            | {"outputs": [{"extract_from": "k9s", "events": [{"message": "x"}]}]},
        ],
    )
    rc, out, err = kubelogs_test(path, capsys)
    assert (rc, out) == (1, "")
    assert err.splitlines() == [
        f"{path}: 2 problem(s):",
        "tests[0].insert_at: 'out' is a sink; insert at a source or transform (containers, k8s)",
        "tests[1].outputs[0].extract_from: 'k9s' is not an output (containers, k8s)",
    ]
    assert main(["validate", "-c", str(path)]) == 1


def test_an_output_that_is_not_downstream_fails_the_test_by_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        [
            {
                "name": "upstream",
                "insert_at": "k8s",
                "inputs": ["x"],
                "no_output_from": ["containers"],
            }
        ],
    )
    rc, out, _ = kubelogs_test(path, capsys)
    assert rc == 1
    assert out.splitlines()[:2] == [
        "FAIL  upstream",
        "      tests[0].no_output_from[0]: 'containers' is not an output downstream of k8s "
        "(outputs: k8s)",
    ]


def test_a_config_without_tests_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = kubelogs_test(write(tmp_path, []), capsys)
    assert rc == 1
    assert "no tests (add them under `tests:`)" in err


# Named outputs and acks, with transforms written here: the harness's contract with the
# runtime (`process`, or `output_names` + `route`) is all it relies on.


class _Comp:
    kind: ClassVar[Literal["transform"]] = "transform"

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def build(self, cx: BuildContext) -> Any:
        return self.runtime


class _Split:
    """Like `route`: `errors` gets messages with "error", `_unmatched` the rest."""

    output_names = ("errors", "_unmatched")

    def route(self, batch: Batch) -> list[tuple[str, Batch]]:
        hit = [i for i, m in enumerate(batch.messages) if "error" in m]
        rest = [i for i in range(len(batch)) if i not in hit]
        out = [(n, batch.select(r)) for n, r in (("errors", hit), ("_unmatched", rest)) if r]
        assert batch.ack is not None
        if len(out) > 1:
            batch.ack.fork(len(out) - 1)
        elif not out:
            batch.ack.resolve()
        return out


class _Upper:
    def process(self, batch: Batch) -> Batch:
        return batch.derive(messages=[m.upper() for m in batch.messages])


class _DropAll:
    def __init__(self, ack: bool) -> None:
        self.ack = ack

    def process(self, batch: Batch) -> None:
        if self.ack and batch.ack is not None:
            batch.ack.resolve()


def events(*messages: str) -> list[dict[str, str]]:
    return [{"message": m} for m in messages]


def _config(components: dict[str, Any], inputs: dict[str, list[str]]) -> Config:
    return Config(RootConfig(node_name="n"), components, inputs, "test.yaml")


def test_named_outputs_are_outputs_and_feed_the_transforms_after_them() -> None:
    cfg = _config(
        {"split": _Comp(_Split()), "shout": _Comp(_Upper())},
        {"split": ["src"], "shout": ["split.errors"]},
    )
    test = UnitTest.model_validate(
        {
            "name": "t",
            "insert_at": "split",
            "inputs": ["an error", "fine", "another error"],
            "outputs": [
                {
                    "extract_from": "split.errors",
                    "events": [{"message": "an error"}, {"message": "another error"}],
                },
                {"extract_from": "split._unmatched", "events": [{"message": "fine"}]},
                {
                    "extract_from": "shout",
                    "events": [{"message": "AN ERROR"}, {"message": "ANOTHER ERROR"}],
                },
            ],
        }
    )
    result = run_test(cfg, 0, test)
    assert result.passed, result


def test_a_transform_that_drops_without_acknowledging_fails_its_test() -> None:
    test = UnitTest.model_validate(
        {"name": "t", "insert_at": "drop", "inputs": ["a", "b"], "no_output_from": ["drop"]}
    )
    ok = run_test(_config({"drop": _Comp(_DropAll(ack=True))}, {"drop": ["src"]}), 0, test)
    assert ok.passed
    bad = run_test(_config({"drop": _Comp(_DropAll(ack=False))}, {"drop": ["src"]}), 0, test)
    assert [p.text for p in bad.problems] == [
        [
            "1 input batch(es) were neither sent on nor acknowledged: a transform that "
            "drops events must resolve their ack"
        ]
    ]


def test_lookup_follows_dotted_paths_and_keys_with_dots() -> None:
    doc = {"a": {"b": {"c": 1}}, "x.y": 2, "k": {"l.m": 3}}
    assert lookup(doc, "a.b.c") == 1
    assert lookup(doc, "x.y") == 2
    assert lookup(doc, "k.l.m") == 3
    assert lookup(doc, "a.b.z") is not None  # absent: a sentinel, never None


def test_raw_lines_at_a_source_go_through_the_transforms_after_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        [
            {
                "name": "json lines are parsed",
                "insert_at": "containers",
                "inputs": ['{"level": "ERROR", "msg": "boom", "user": {"id": 7}}', "not json"],
                "outputs": [
                    {
                        "extract_from": "containers",
                        "events": events(
                            '{"level": "ERROR", "msg": "boom", "user": {"id": 7}}', "not json"
                        ),
                    },
                    {
                        "extract_from": "json",
                        "events": [
                            {"log.level": "error", "user.id": 7, "log.flags": None},
                            {"message": "not json", "log.flags": ["parse_error"]},
                        ],
                    },
                ],
            }
        ],
        sink_reads="json",
        json={"type": "parse", "inputs": ["k8s"], "parser": "json"},
    )
    rc, out, err = kubelogs_test(path, capsys)
    assert rc == 0, out + err


class _SourceWithParser:
    kind: ClassVar[Literal["source"]] = "source"
    parser = "logfmt"


def test_a_source_parser_applies_to_lines_inserted_at_the_source() -> None:
    cfg = _config({"src": _SourceWithParser(), "shout": _Comp(_Upper())}, {"shout": ["src"]})
    test = UnitTest.model_validate(
        {
            "name": "t",
            "insert_at": "src",
            "inputs": ["level=warn msg=hi"],
            "outputs": [
                {"extract_from": "src", "events": [{"log.level": "warn", "msg": "hi"}]},
                {"extract_from": "shout", "events": [{"message": "LEVEL=WARN MSG=HI"}]},
            ],
        }
    )
    result = run_test(cfg, 0, test)
    assert result.passed, result


def test_times_match_as_instants_also_when_yaml_reads_them_as_dates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kubelogs.yaml"
    path.write_text(
        f"""
data_dir: {tmp_path / "data"}
sources: {{containers: {{type: kubernetes_logs}}}}
transforms: {{k8s: {{type: kubernetes_metadata, inputs: [containers]}}}}
sinks: {{out: {{type: stdout, inputs: [k8s]}}}}
tests:
  - name: times
    insert_at: k8s
    inputs:
      - {{message: a, "@timestamp": 2021-02-15T12:00:00.5+02:00}}
      - {{message: b, "@timestamp": "2021-02-15T10:00:00Z"}}
    outputs:
      - extract_from: k8s
        events:
          - {{"@timestamp": 2021-02-15T10:00:00.500Z}}
          - {{"@timestamp": "2021-02-15T10:00:00.000000000Z"}}
"""
    )
    rc, out, err = kubelogs_test(path, capsys)
    assert rc == 0, out + err


def test_lines_at_a_source_get_the_parser_the_source_would_choose_for_their_pod(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    web = {"namespace": "web", "pod": {"name": "web-1"}, "container": {"name": "app"}}
    other = {"namespace": "jobs", "pod": {"name": "cron-1"}, "container": {"name": "job"}}
    data = {
        "data_dir": str(tmp_path / "data"),
        "sources": {
            "containers": {
                "type": "kubernetes_logs",
                "parser": "logfmt",
                "overrides": [{"match": {"namespace": "web"}, "parser": "json"}],
            }
        },
        "sinks": {"out": {"type": "stdout", "inputs": ["containers"]}},
        "tests": [
            {
                "name": "json in web, logfmt elsewhere",
                "insert_at": "containers",
                "inputs": [
                    {"message": '{"status": 200}', "kubernetes": web},
                    {"message": "status=201", "kubernetes": other},
                    {"message": "status=202", "kubernetes": web},
                ],
                "outputs": [
                    {
                        "extract_from": "containers",
                        "events": [
                            {"status": 200, "kubernetes.namespace": "web"},
                            {"status": "201", "kubernetes.namespace": "jobs"},
                            {"status": None, "log.flags": ["parse_error"]},
                        ],
                    }
                ],
            }
        ],
    }
    path = tmp_path / "kubelogs.yaml"
    path.write_text(yaml.safe_dump(data))
    rc, out, err = kubelogs_test(path, capsys)
    assert rc == 0, out + err
