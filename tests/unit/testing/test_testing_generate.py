"""Generated node log trees are deterministic and their manifest counts are exact."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kubelogs.testing.generate import (
    PARTIAL_CHUNK,
    Format,
    Manifest,
    count_file,
    generate_tree,
    run_live,
)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def parse_records(path: Path, fmt: Format) -> list[tuple[str, str]]:
    """Join partial lines as a runtime-aware reader does: [(stream, message)]."""
    records: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_bytes().splitlines(keepends=True):
        if fmt == "cri":
            _ts, stream, tag, msg = raw.decode().rstrip("\n").split(" ", 3)
            pending += msg
            final = tag == "F"
        else:
            obj = json.loads(raw)
            stream, log = obj["stream"], obj["log"]
            final = log.endswith("\n")
            pending += log[:-1] if final else log
        if final:
            records.append((stream, pending))
            pending = ""
    assert "" == pending
    return records


@pytest.mark.parametrize("fmt", ["cri", "docker"])
def test_manifest_counts_match_the_files(tmp_path: Path, fmt: Format) -> None:
    manifest = generate_tree(tmp_path, lines=6000, containers=5, fmt=fmt, seed=3)

    assert 5 == len(manifest.files)
    assert 6000 == manifest.lines
    for f in manifest.files:
        path = tmp_path / f.path
        records = parse_records(path, fmt)
        assert f.lines == len(path.read_bytes().splitlines())
        assert f.records == len(records)
        assert f.bytes == path.stat().st_size
        assert (f.lines, f.records) == count_file(path, fmt)
    assert sum(f.records for f in manifest.files) == manifest.records
    assert Manifest.load(tmp_path / "manifest.json") == manifest


def test_content_has_partials_stack_traces_and_json(tmp_path: Path) -> None:
    manifest = generate_tree(tmp_path, lines=20000, containers=4, seed=8)
    records = [r for f in manifest.files for r in parse_records(tmp_path / f.path, "cri")]
    lines = b"".join((tmp_path / f.path).read_bytes() for f in manifest.files)

    assert manifest.records < manifest.lines  # some lines were partial chunks
    assert b" stdout P " in lines
    assert any(len(msg) > PARTIAL_CHUNK for _, msg in records)
    assert all(len(chunk) <= PARTIAL_CHUNK for chunk in _cri_messages(lines))
    assert any(msg.startswith("\tat ") and stream == "stderr" for stream, msg in records)
    assert any(msg.startswith('{"level"') for _, msg in records)


def _cri_messages(data: bytes) -> list[bytes]:
    return [line.split(b" ", 3)[3] for line in data.splitlines()]


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    generate_tree(tmp_path / "a", lines=3000, containers=3, seed=7)
    generate_tree(tmp_path / "b", lines=3000, containers=3, seed=7)
    generate_tree(tmp_path / "c", lines=3000, containers=3, seed=8)

    a, b, c = (tree_bytes(tmp_path / x) for x in "abc")
    assert a.keys() == b.keys()
    assert {k: v for k, v in a.items() if k != "manifest.json"} == {
        k: v for k, v in b.items() if k != "manifest.json"
    }
    assert a != c


def test_layout_symlinks_and_pod_objects(tmp_path: Path) -> None:
    manifest = generate_tree(tmp_path, lines=100, containers=3, pods=2, node="node-7")

    for f in manifest.files:
        link = tmp_path / f.link
        assert link.is_symlink()
        assert (tmp_path / f.path).resolve() == link.resolve()
        assert link.name == f"{f.pod}_{f.namespace}_{f.container}-{f.container_id}.log"
        assert 64 == len(f.container_id)
        assert f.path == f"var/log/pods/{f.namespace}_{f.pod}_{f.pod_uid}/{f.container}/0.log"
        pod = json.loads((tmp_path / "kube-meta" / f"{f.namespace}_{f.pod}.json").read_text())
        assert "Pod" == pod["kind"]
        assert f.pod_uid == pod["metadata"]["uid"]
        assert "node-7" == pod["spec"]["nodeName"]
        statuses = {s["name"]: s["containerID"] for s in pod["status"]["containerStatuses"]}
        assert f"containerd://{f.container_id}" == statuses[f.container]
    assert 2 == len(os.listdir(tmp_path / "kube-meta"))


class FakeTime:
    """Virtual clock: `sleep` advances it, so the live writer runs instantly."""

    def __init__(self) -> None:
        self.now = 1_767_000_000.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.001)


def test_live_mode_appends_at_the_rate_and_rotates(tmp_path: Path) -> None:
    t = FakeTime()
    manifest = run_live(
        tmp_path,
        rate=1000,
        duration=30,
        containers=2,
        rotate_size=200_000,
        max_rotated=2,
        clock=t.clock,
        sleep=t.sleep,
    )

    assert 30_000 <= manifest.lines < 30_000 + 200  # at most one event over
    for f in manifest.files:
        live = tmp_path / f.path
        assert live.exists()
        assert (tmp_path / f.link).resolve() == live.resolve()
        assert len(f.rotated) == 2
        on_disk = [count_file(tmp_path / r, "cri") for r in f.rotated] + [count_file(live, "cri")]
        assert f.lines == sum(n for n, _ in on_disk) + f.deleted_lines
        assert f.records == sum(n for _, n in on_disk) + f.deleted_records
        assert all(r.startswith(f.path + ".") and len(r) == len(f.path) + 16 for r in f.rotated)
        for r in f.rotated:  # rotation happens between events: no dangling partial line
            assert (tmp_path / r).read_bytes().splitlines()[-1].split(b" ")[2] == b"F"
    assert manifest == Manifest.load(tmp_path / "manifest.json")


class TestRealisticContent:
    """The demo's content should read like a real cluster's (issue 10)."""

    def test_json_levels_match_status_and_message(self, tmp_path: Path) -> None:
        manifest = generate_tree(tmp_path, lines=6000, containers=4, seed=5)
        docs = [
            json.loads(msg)
            for f in manifest.files
            for _, msg in parse_records(tmp_path / f.path, "cri")
            if msg.startswith('{"level"') and "payload" not in msg
        ]

        assert docs
        for doc in docs:
            status = doc["http"]["status"]
            expected = "error" if status >= 500 else "warn" if status >= 400 else None
            if expected is not None:
                assert expected == doc["level"], doc
            else:
                assert doc["level"] in ("info", "debug", "warn"), doc
                assert "fail" not in doc["msg"], doc

    def test_stack_frames_are_in_call_order(self, tmp_path: Path) -> None:
        manifest = generate_tree(tmp_path, lines=20000, containers=4, seed=8)
        traces: list[list[str]] = []
        for f in manifest.files:
            for _, msg in parse_records(tmp_path / f.path, "cri"):
                if msg.startswith(("java.", "Caused by: ")):
                    traces.append([])
                elif msg.startswith("\tat ") and traces:
                    traces[-1].append(msg[4:])

        assert traces
        for frames in traces:
            if frames[-1].startswith("java.base/java.lang.Thread.run"):
                assert 1 == sum("Thread.run" in fr for fr in frames), frames
            top = [i for i, fr in enumerate(frames) if "OrderController.create" in fr]
            servlet = [i for i, fr in enumerate(frames) if "DispatcherServlet" in fr]
            if top and servlet:
                assert top[0] < servlet[0], frames

    def test_pods_run_in_the_namespace_their_app_suggests(self, tmp_path: Path) -> None:
        manifest = generate_tree(tmp_path, lines=240, containers=24, seed=1)
        where = {(f.pod.rsplit("-", 2)[0], f.namespace) for f in manifest.files}

        assert ("payment-svc", "payments") in where
        assert ("billing-worker", "payments") in where
        assert ("search-indexer", "search") in where
        assert ("coredns", "kube-system") in where
        assert all(ns != "payments" or "pay" in app or "billing" in app for app, ns in where)


def _java_events(path: Path, fmt: Format) -> int:
    """Events the agent's own ``multiline: java`` stage makes of a file: the runtime's
    parser, then the java preset (per stream), everything flushed at the end."""
    from kubelogs.codecs.columns import Columns
    from kubelogs.codecs.multiline import MultilineParser, MultilineSpec
    from kubelogs.codecs.multiline_rules import preset_rule
    from kubelogs.tailing.files import make_parser

    data = path.read_bytes()
    inner = make_parser(fmt if fmt == "cri" else "auto", data[:1], 1 << 20)
    # Lines are stamped microseconds apart: the timeout never splits a trace here.
    stage = MultilineParser(inner, MultilineSpec(rule=preset_rule("java"), timeout=3600.0))
    cols = Columns()
    stage.feed(data.rstrip(b"\n").split(b"\n"), 0, cols)
    stage.flush(cols)
    return len(cols.messages)


@pytest.mark.parametrize("fmt", ["cri", "docker"])
def test_events_count_each_stack_trace_once_as_the_java_preset_joins_it(
    tmp_path: Path, fmt: Format
) -> None:
    from kubelogs.testing.generate import count_events

    manifest = generate_tree(tmp_path, lines=8000, containers=3, fmt=fmt, seed=5)

    assert 0 < manifest.events < manifest.records  # traces were joined
    for f in manifest.files:
        path = tmp_path / f.path
        assert f.events == _java_events(path, fmt)
        assert f.events == count_events(path, fmt)
    assert sum(f.events for f in manifest.files) == manifest.events


def test_live_mode_counts_events_in_rotated_and_deleted_files(tmp_path: Path) -> None:
    from kubelogs.testing.generate import count_events

    t = FakeTime()
    manifest = run_live(
        tmp_path,
        rate=1000,
        duration=20,
        containers=2,
        rotate_size=150_000,
        max_rotated=1,
        clock=t.clock,
        sleep=t.sleep,
    )

    for f in manifest.files:
        files = [tmp_path / r for r in f.rotated] + [tmp_path / f.path]
        assert f.deleted_events > 0
        assert f.events == sum(_java_events(p, "cri") for p in files) + f.deleted_events
        assert f.events == sum(count_events(p, "cri") for p in files) + f.deleted_events
    assert 0 < manifest.events < manifest.records
