"""Run the `tests:` of a config (see `kubelogs.config.unit_tests`) against its transforms.

A test may also insert raw lines at a source: they go through the parser the source
would choose for them (its `parser`, or an `overrides` entry matching the event's
namespace, pod, container or path) and on to the transforms that read it. Multiline
joining is not run (its groups close on timers); test it with the source's own tests.

Why in-process and synchronous: a unit test checks what a transform *does to events*,
so it calls the transforms' `process` (or `route`, for named outputs) directly, with no
sources, sinks, queues or timers, and gives the same answer on a laptop and in CI.
`start`/`stop` are not called: they start background work against the outside world
(the API server watch of `kubernetes_metadata`), which a unit test must not depend on;
without it a transform passes events with what they already carry.

Events cross the test as the documents sinks write: inputs are decoded into batches
with `kubelogs.codecs.records.RecordDecoder` (the shape network sources use) and outputs
rendered with `batch_to_records`, so a test states fields as they appear in
Elasticsearch or `kubelogs search --output json`.

Acks are checked too: every input batch's token must end resolved, by the harness at
the end of the tested graph or by a transform that dropped events. A transform that
drops events without resolving them would stall a file's checkpoint in production; here
the test fails and says so.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubelogs.codecs.records import RecordDecoder, batch_to_records
from kubelogs.codecs.timestamps import parse_rfc3339_ns
from kubelogs.config.base import BuildContext
from kubelogs.config.loader import Config
from kubelogs.config.unit_tests import UnitTest
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.event import Batch
from kubelogs.telemetry.metrics import Metrics

_ABSENT = object()


@dataclass
class Mismatch:
    """One difference between what a test expected and what came out."""

    output: str
    text: list[str]
    """Lines of the report: ``-`` what was expected, ``+`` what came out."""


@dataclass
class TestResult:
    name: str
    problems: list[Mismatch] = field(default_factory=list)
    error: str = ""
    """The test could not run (a bad reference, a transform that raised)."""

    @property
    def passed(self) -> bool:
        return not self.problems and not self.error


class TestSetupError(Exception):
    """A test refers to something the config does not have."""


def run_tests(config: Config) -> list[TestResult]:
    return [run_test(config, i, test) for i, test in enumerate(config.root.tests)]


def run_test(config: Config, index: int, test: UnitTest) -> TestResult:
    result = TestResult(test.name)
    try:
        outputs, unresolved = _execute(config, index, test)
    except TestSetupError as exc:
        result.error = str(exc)
        return result
    for expected in test.outputs:
        got = outputs.get(expected.extract_from, [])
        result.problems.extend(_compare(expected.extract_from, expected.events, got))
    for name in test.no_output_from:
        got = outputs.get(name, [])
        if got:
            text = [f"expected no events, got {len(got)}:"]
            text += [f"+ {_shown(doc)}" for doc in got]
            result.problems.append(Mismatch(name, text))
    if unresolved:
        result.problems.append(
            Mismatch(
                test.insert_at,
                [
                    f"{unresolved} input batch(es) were neither sent on nor acknowledged: "
                    "a transform that drops events must resolve their ack"
                ],
            )
        )
    return result


def _execute(config: Config, index: int, test: UnitTest) -> tuple[dict[str, list[Any]], int]:
    where = f"tests[{index}]"
    kinds = {cid: c.kind for cid, c in config.components.items()}
    if kinds.get(test.insert_at) not in ("transform", "source"):
        what = kinds.get(test.insert_at, "not a component")
        usable = ", ".join(c for c, k in kinds.items() if k != "sink") or "none"
        raise TestSetupError(
            f"{where}.insert_at: {test.insert_at!r} is {_article(what)}; tests insert "
            f"events at a source or a transform (here: {usable})"
        )
    consumers: dict[str, list[str]] = {}
    for cid, ups in config.inputs.items():
        if kinds.get(cid) == "transform":
            for up in ups:
                consumers.setdefault(up, []).append(cid)
    reachable = _reachable(test.insert_at, consumers)
    with tempfile.TemporaryDirectory(prefix="kubelogs-test-") as tmp:
        runtimes = _build(config, reachable, Path(tmp))
        outputs_of = {
            cid: [f"{cid}.{n}" for n in getattr(rt, "output_names", ())] or [cid]
            for cid, rt in runtimes.items()
        }
        known = [o for outs in outputs_of.values() for o in outs]
        for i, name in [(i, o.extract_from) for i, o in enumerate(test.outputs)]:
            if name not in known:
                raise TestSetupError(
                    f"{where}.outputs[{i}].extract_from: {name!r} is not an output downstream "
                    f"of {test.insert_at} (outputs: {', '.join(known)})"
                )
        for i, name in enumerate(test.no_output_from):
            if name not in known:
                raise TestSetupError(
                    f"{where}.no_output_from[{i}]: {name!r} is not an output downstream "
                    f"of {test.insert_at} (outputs: {', '.join(known)})"
                )
        captured: dict[str, list[Any]] = {}
        pending = [0]

        def feed(output: str, batch: Batch) -> None:
            captured.setdefault(output, []).extend(batch_to_records(batch))
            nxt = consumers.get(output, [])
            if not nxt:
                if batch.ack is not None:
                    batch.ack.resolve()
                return
            if batch.ack is not None and len(nxt) > 1:
                batch.ack.fork(len(nxt) - 1)
            for cid in nxt:
                run(cid, batch)

        def run(cid: str, batch: Batch) -> None:
            rt = runtimes[cid]
            try:
                if getattr(rt, "output_names", None):
                    for name, out in rt.route(batch):
                        feed(f"{cid}.{name}", out)
                    return
                out = rt.process(batch)
            except Exception as exc:
                raise TestSetupError(
                    f"{where}: transform {cid} raised {type(exc).__name__}: {exc}"
                ) from None
            if out is not None:
                feed(cid, out)

        def done() -> None:
            pending[0] -= 1

        for batch in _input_batches(test, config.node_name):
            pending[0] += 1
            run(test.insert_at, batch.derive(ack=AckToken(done)))
    return captured, pending[0]


def _article(kind: str) -> str:
    return kind if kind == "not a component" else f"a {kind}"


def _reachable(start: str, consumers: dict[str, list[str]]) -> list[str]:
    """`start` and every transform downstream of it (through named outputs too)."""
    seen: list[str] = []
    todo = [start]
    while todo:
        cid = todo.pop()
        if cid in seen:
            continue
        seen.append(cid)
        for out, nxt in consumers.items():
            if out == cid or out.startswith(cid + "."):
                todo.extend(nxt)
    return seen


class _SourceParsing:
    """A source as a test sees it: each batch gets the parser the source would choose
    for its file (the source's `parser`, or the first `overrides` entry whose `match`
    fits the event's namespace, pod, container and path). Pod annotations, which win in
    a running agent, have no pod here; multiline joining is not run."""

    def __init__(self, choose: Callable[[Batch], Any]) -> None:
        self._choose = choose

    def process(self, batch: Batch) -> Batch:
        parse = self._choose(batch)
        return batch if parse is None else parse(batch)


def _source_parsing(component: Any, cx: BuildContext) -> _SourceParsing:
    parser = getattr(component, "parser", None)
    overrides = list(getattr(component, "overrides", None) or ())
    if overrides:
        from kubelogs.sources.line_settings import stage_chooser

        chooser = stage_chooser(
            multiline=None, parser=parser, overrides=overrides, cx=cx, annotations=False
        )
        if chooser is not None:
            return _SourceParsing(lambda batch: chooser.resolve(batch.ctx).parse)
    if parser is None:
        return _SourceParsing(lambda batch: None)
    from kubelogs.parsing import build_parser

    parse = build_parser(parser)
    return _SourceParsing(lambda batch: parse)


def _build(config: Config, ids: list[str], data_dir: Path) -> dict[str, Any]:
    metrics = Metrics()
    shared: dict[str, Any] = {}
    out: dict[str, Any] = {}
    for cid in ids:
        cx = BuildContext(
            component_id=cid,
            data_dir=data_dir,
            node_name=config.node_name,
            metrics=metrics,
            shared=shared,
        )
        if config.components[cid].kind == "source":
            out[cid] = _source_parsing(config.components[cid], cx)
            continue
        try:
            out[cid] = config.components[cid].build(cx)  # type: ignore[attr-defined]
        except Exception as exc:
            raise TestSetupError(f"transforms.{cid}: cannot be built: {exc}") from None
    return out


def _input_batches(test: UnitTest, node: str) -> list[Batch]:
    """The inputs as batches: consecutive events of one origin (same pod, container and
    file) share a batch, as lines of one file do; order is kept."""
    decoder = RecordDecoder("test", node)
    now = time.time_ns()
    records: list[dict[str, Any]] = [
        {"message": item} if isinstance(item, str) else dict(item) for item in test.inputs
    ]
    batches: list[Batch] = []
    run: list[tuple[int | None, Mapping[str, Any]]] = []
    run_key = None
    for rec in records:
        key = _origin_key(rec)
        if run and key != run_key:
            batches.extend(decoder.decode(run, test.name))
            run = []
        run_key = key
        run.append((now, rec))
    if run:
        batches.extend(decoder.decode(run, test.name))
    return batches


def _origin_key(rec: Mapping[str, Any]) -> str:
    log = rec.get("log")
    path = log.get("file") if isinstance(log, dict) else None
    return json.dumps([rec.get("kubernetes"), rec.get("host"), path], sort_keys=True, default=str)


def _compare(output: str, expected: list[dict[str, Any]], got: list[Any]) -> list[Mismatch]:
    problems: list[Mismatch] = []
    for i, want in enumerate(expected):
        head = f"event {i + 1} of {len(expected)}"
        if i >= len(got):
            text = [f"{head}: missing (only {len(got)} came out)"]
            text += [f"- {k}: {_compact(v)}" for k, v in _flatten(want)]
            problems.append(Mismatch(output, text))
            continue
        diff = []
        for path, value in _flatten(want):
            actual = lookup(got[i], path)
            if value is None and actual in (None, _ABSENT):
                continue
            if actual is _ABSENT or not _equal(actual, value):
                diff.append(f"- {path}: {_compact(value)}")
                diff.append(f"+ {path}: " + ("(absent)" if actual is _ABSENT else _compact(actual)))
        if diff:
            problems.append(Mismatch(output, [f"{head}:", *diff, f"  got: {_shown(got[i])}"]))
    if len(got) > len(expected):
        text = [f"{len(got) - len(expected)} more event(s) than expected:"]
        text += [f"+ {_shown(doc)}" for doc in got[len(expected) :]]
        problems.append(Mismatch(output, text))
    return problems


def _equal(actual: Any, expected: Any) -> bool:
    """Equal as JSON values (``true`` is not ``1``, ``1`` is ``1.0``); two timestamps
    are equal when they name the same instant (``10:00:00Z`` is ``10:00:00.000000000Z``)."""
    if isinstance(actual, bool) != isinstance(expected, bool):
        return False
    if actual == expected:
        return True
    if isinstance(actual, str) and isinstance(expected, str):
        a = parse_rfc3339_ns(actual.encode("utf-8", "replace"))
        return a is not None and a == parse_rfc3339_ns(expected.encode("utf-8", "replace"))
    return False


def _flatten(want: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Expected fields as ``(dotted path, value)``; nested mappings are paths too."""
    out: list[tuple[str, Any]] = []
    for key, value in want.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.extend(_flatten(value, path))
        else:
            out.append((path, value))
    return out


def lookup(doc: Any, path: str) -> Any:
    """The value at a dotted `path` in `doc`, also when a key itself holds dots."""
    if not path:
        return doc
    if not isinstance(doc, dict):
        return _ABSENT
    if path in doc:
        return doc[path]
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:cut])
        if head in doc:
            found = lookup(doc[head], ".".join(parts[cut:]))
            if found is not _ABSENT:
                return found
    return _ABSENT


def _shown(doc: Any) -> str:
    """A document as the report shows it: without the id and offset the harness made up
    (a test cannot know them), so the fields a test may check stand out."""
    if isinstance(doc, dict):
        doc = dict(doc)
        event = doc.get("event")
        if isinstance(event, dict):
            event = {k: v for k, v in event.items() if k != "id"}
            if event:
                doc["event"] = event
            else:
                del doc["event"]
        log = doc.get("log")
        if isinstance(log, dict):
            log = {k: v for k, v in log.items() if k != "offset"}
            if log.get("file") == {"path": ""}:
                del log["file"]
            if log:
                doc["log"] = log
            else:
                del doc["log"]
    return _compact(doc)


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)
