"""Partial reloads (pipeline/swap.py): only the changed components restart, the others
keep running (same objects, same open files), and every line arrives exactly once
across many reloads of every kind while pods write and rotate."""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kubelogs.config.loader import Config, config_from_data
from kubelogs.pipeline.reload import Supervisor
from kubelogs.pipeline.runner import Pipeline
from kubelogs.pipeline.swap import Plan, plan_swap
from kubelogs.tailing.checkpoints import CheckpointStore
from kubelogs.telemetry.metrics import Metrics
from support.agent import count_lines, read_docs
from support.chaos import RotatingWriter
from support.podlogs import PodLog

TAIL = {"glob_interval": "50ms", "poll_interval": "10ms", "rotate_wait": "200ms"}


def config(
    tmp: Path,
    *,
    fsync: bool = False,
    keep: str | None = None,
    poll: str = "10ms",
    copy: bool = False,
    side: bool = False,
    data_dir: str = "data",
    grace: str = "20s",
    chunk: str = "256KiB",
    pre: str | None = None,
) -> Config:
    """`logs` (kubernetes_logs) -> [`keep` (filter)] -> `out` (file), [`copy` (file)];
    [`side` (file source of side.log) -> `out`]."""
    node = tmp / "node"
    data: dict[str, Any] = {
        "data_dir": str(tmp / data_dir),
        "node_name": "node-test",
        "api": {"enabled": False},
        "shutdown_grace_period": grace,
        "sources": {
            "logs": {
                "type": "kubernetes_logs",
                "include": [str(node / "var/log/containers/*.log")],
                **TAIL,
                "poll_interval": poll,
                "read_chunk": chunk,
            }
        },
        "sinks": {
            "out": {
                "type": "file",
                "inputs": ["keep" if keep else "logs"],
                "path": str(tmp / "out.ndjson"),
                "fsync": fsync,
            }
        },
    }
    if keep:
        data["transforms"] = {"keep": {"type": "filter", "inputs": ["logs"], "condition": keep}}
    if keep and pre:
        data["transforms"]["pre"] = {"type": "filter", "inputs": ["logs"], "condition": pre}
        data["transforms"]["keep"]["inputs"] = ["pre"]
    if side:
        data["sources"]["side"] = {"type": "file", "paths": [str(tmp / "side.log")], **TAIL}
        data["sinks"]["out"]["inputs"].append("side")
    if copy:
        data["sinks"]["copy"] = {
            "type": "file",
            "inputs": ["logs"],
            "path": str(tmp / "copy.ndjson"),
        }
    return config_from_data(data, "test.yaml")


async def until(cond: Any, what: str, seconds: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Running:
    """A supervisor running in the test's loop, fed configs by `reload(config)`."""

    def __init__(self, first: Config) -> None:
        self.next = first
        self.sup = Supervisor(first, lambda: self.next, metrics=Metrics())
        self.task: asyncio.Task[Pipeline] | None = None

    async def __aenter__(self) -> Running:
        self.task = asyncio.create_task(self.sup.run())
        await until(lambda: self.sup.ready, "the first pipeline")
        return self

    async def reload(self, new: Config) -> None:
        done = self.sup.reloads + 1
        self.next = new
        self.sup.request_reload()
        await until(lambda: self.sup.reloads >= done and self.sup.ready, "the reload")

    @property
    def pipeline(self) -> Pipeline:
        assert self.sup.pipeline is not None
        return self.sup.pipeline

    async def __aexit__(self, *exc: object) -> None:
        self.sup.request_stop()
        assert self.task is not None
        await self.task


def test_plan_restarts_only_what_changed(tmp_path: Path) -> None:
    base = config(tmp_path)
    plan = plan_swap(base, config(tmp_path, fsync=True))
    assert isinstance(plan, Plan)
    assert (plan.changed, plan.old_region, plan.new_region, plan.kept) == (
        ["out"],
        ["out"],
        ["out"],
        ["logs"],
    )
    # a transform added in between: the sink's inputs changed, the source keeps running
    plan = plan_swap(base, config(tmp_path, keep="not x"))
    assert isinstance(plan, Plan)
    assert (plan.changed, plan.kept, plan.new_region) == (
        ["keep", "out"],
        ["logs"],
        ["keep", "out"],
    )
    # a changed sink behind an unchanged transform: the transform keeps running
    plan = plan_swap(config(tmp_path, keep="not x"), config(tmp_path, keep="not x", fsync=True))
    assert isinstance(plan, Plan)
    assert (plan.changed, plan.restarted, plan.kept) == (["out"], ["out"], ["keep", "logs"])
    # a changed transform: the sink after it keeps running
    plan = plan_swap(config(tmp_path, keep="not x"), config(tmp_path, keep="not y"))
    assert isinstance(plan, Plan)
    assert (plan.restarted, plan.kept) == (["keep"], ["logs", "out"])
    plan = plan_swap(base, config(tmp_path, poll="30ms"))
    assert isinstance(plan, Plan)
    assert (plan.restarted, plan.kept) == (["logs"], ["out"])
    plan = plan_swap(config(tmp_path, copy=True), base)
    assert isinstance(plan, Plan)
    assert (plan.old_region, plan.new_region, plan.kept) == (["copy"], [], ["logs", "out"])
    assert plan_swap(base, config(tmp_path, data_dir="other")) == "data_dir changed"
    both = config(tmp_path, fsync=True, poll="30ms")
    assert plan_swap(base, both) == "no component would keep running"


def _files(pipeline: Pipeline) -> list[tuple[int, int]]:
    tailer = pipeline.nodes["logs"].runtime.tailer
    return sorted((id(f), f.fd) for f in tailer.files)


def _loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = CheckpointStore.load

    def load(self: CheckpointStore, source_id: str) -> Any:
        calls.append(source_id)
        return real(self, source_id)

    monkeypatch.setattr(CheckpointStore, "load", load)
    return calls


@pytest.mark.parametrize(
    ("base", "change", "restarted"),
    [
        ({}, {"fsync": True}, {"out"}),
        ({"keep": "not x"}, {"fsync": True}, {"out"}),
        ({"keep": "not x"}, {"keep": "not y"}, {"keep"}),
        ({"keep": "not x"}, {"copy": True}, {"copy"}),
        ({"copy": True}, {"copy": False}, {"copy"}),
    ],
    ids=["sink", "sink-behind-transform", "transform", "added-sink", "removed-sink"],
)
async def test_a_reload_that_leaves_the_source_alone_does_not_restart_it(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    base: dict[str, Any],
    change: dict[str, Any],
    restarted: set[str],
) -> None:
    caplog.set_level("INFO")
    loads = _loads(monkeypatch)
    pod = PodLog(tmp_path / "node")
    pod.write("a1", "a2")
    out = tmp_path / "out.ndjson"
    async with Running(config(tmp_path, **base)) as run:
        await until(lambda: count_lines(out) == 2, "the first lines")
        pipeline = run.pipeline
        before = dict(pipeline.nodes)
        runtimes = {cid: n.runtime for cid, n in before.items()}
        files = _files(pipeline)
        assert files
        assert loads == ["logs"]
        pod.write("b1")  # a partial line is pending in the parser over the reload
        pod.write_partial(["c1-", "c1-end"])
        await run.reload(config(tmp_path, **{**base, **change}))
        assert run.pipeline is pipeline  # not a whole-pipeline restart
        nodes = pipeline.nodes
        for cid, node in before.items():
            if cid in restarted:
                assert cid not in nodes or nodes[cid].runtime is not runtimes[cid], cid
            else:
                assert nodes[cid] is node, cid
                assert node.runtime is runtimes[cid], cid
                assert node.task is not None, cid
                assert not node.task.done(), cid
        assert _files(pipeline) == files  # the same open files, never re-opened
        assert loads == ["logs"]  # the source did not resume from a checkpoint
        pod.write("d1")
        await until(lambda: count_lines(out) == 5, "the lines after the reload")
    assert "draining the running pipeline" not in caplog.text
    assert f"stopped: {', '.join(sorted(restarted))};" in caplog.text
    assert [d["message"] for d in read_docs(out)] == ["a1", "a2", "b1", "c1-c1-end", "d1"]


async def test_a_changed_source_resumes_from_its_checkpoint_and_the_sink_keeps_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = _loads(monkeypatch)
    pod = PodLog(tmp_path / "node")
    pod.write("a1", "a2")
    out = tmp_path / "out.ndjson"
    async with Running(config(tmp_path)) as run:
        await until(lambda: count_lines(out) == 2, "the first lines")
        sink = run.pipeline.nodes["out"]
        source = run.pipeline.nodes["logs"].runtime
        pod.write("b1")
        await run.reload(config(tmp_path, poll="30ms"))
        assert run.pipeline.nodes["out"] is sink
        assert run.pipeline.nodes["logs"].runtime is not source
        assert loads == ["logs", "logs"]
        pod.write("c1")
        await until(lambda: count_lines(out) == 4, "the lines after the reload")
    assert [d["message"] for d in read_docs(out)] == ["a1", "a2", "b1", "c1"]


async def test_a_component_that_cannot_be_built_is_restored_and_the_rest_keeps_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from kubelogs.sinks.file import FileSinkConfig

    real = FileSinkConfig.build

    def build(self: FileSinkConfig, cx: Any) -> Any:
        if self.fsync:
            raise OSError("cannot open the sink")
        return real(self, cx)

    monkeypatch.setattr(FileSinkConfig, "build", build)
    pod = PodLog(tmp_path / "node")
    pod.write("a1")
    out = tmp_path / "out.ndjson"
    first = config(tmp_path)
    async with Running(first) as run:
        await until(lambda: count_lines(out) == 1, "the first line")
        source = run.pipeline.nodes["logs"]
        run.next = config(tmp_path, fsync=True)
        run.sup.request_reload()
        await until(lambda: "reload: cannot build" in caplog.text, "the build error")
        await until(lambda: run.sup.ready, "the restored sink")
        assert run.sup.config is first
        assert run.sup.reloads == 0
        assert run.pipeline.config is first
        assert run.pipeline.nodes["logs"] is source
        pod.write("b1")
        await until(lambda: count_lines(out) == 2, "a line after the failed reload")
    assert [d["message"] for d in read_docs(out)] == ["a1", "b1"]


async def test_a_kept_transform_between_changed_components_does_not_deadlock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`logs` -> `pre` -> `keep` -> `out` with every queue full (the sink held), then a
    reload that changes `pre` and `out`: `keep` keeps running but is paused (it feeds the
    changed sink) while the old `pre` must push its whole queue into `keep`'s. The
    paused transform's queue is unbounded for the swap; bounded, this waits forever."""
    from kubelogs.pipeline.channels import FanOut
    from kubelogs.sinks.file import FileSink

    caplog.set_level("INFO")
    gate = asyncio.Event()
    real_run, real_pause = FileSink.run, FanOut.pause

    async def gated_run(self: FileSink, inp: Any) -> None:
        class Gated:
            def __aiter__(self) -> Any:
                return self._iterate()

            async def _iterate(self) -> Any:
                async for batch in inp:
                    await gate.wait()
                    yield batch

            def receive_nowait(self) -> Any:
                return inp.receive_nowait() if gate.is_set() else None

        await real_run(self, Gated())

    async def pause(self: FanOut) -> None:
        gate.set()  # the sink drains from the moment the swap begins
        await real_pause(self)

    monkeypatch.setattr(FileSink, "run", gated_run)
    monkeypatch.setattr(FanOut, "pause", pause)
    pod = PodLog(tmp_path / "node")
    lines = [f"line-{i:05d}-" + "x" * 40 for i in range(3000)]
    pod.write(*lines)
    out = tmp_path / "out.ndjson"
    settings: dict[str, Any] = {"keep": "not zzz", "pre": "not a", "grace": "3s", "chunk": "2KiB"}
    async with Running(config(tmp_path, **settings)) as run:
        nodes = run.pipeline.nodes
        keep = nodes["keep"]
        queues = [nodes["pre"].channel, keep.channel]
        await until(lambda: all(len(q or ()) >= 8 for q in queues), "every queue to fill")
        await run.reload(config(tmp_path, **{**settings, "pre": "not b", "fsync": True}))
        assert run.pipeline.nodes["keep"] is keep
        await until(lambda: count_lines(out) >= len(lines), "every line")
    assert "draining the running pipeline" not in caplog.text
    assert [d["message"] for d in read_docs(out)] == lines


def _random_change(rng: random.Random, state: dict[str, Any]) -> str:
    kinds = ["sink", "transform", "source", "sink-added/removed", "transform-added/removed"]
    kinds += ["source-added/removed"]
    if state["keep"]:
        kinds.append("source+sink")  # only the transform between them keeps running
    kind = rng.choice(kinds)
    if kind in ("sink", "source+sink"):
        state["fsync"] = not state["fsync"]
    if kind in ("source", "source+sink"):
        state["poll"] = "10ms" if state["poll"] != "10ms" else "15ms"
    if kind == "transform":
        state["keep"] = f"not r{rng.randrange(10**6)}x"
    elif kind == "sink-added/removed":
        state["copy"] = not state["copy"]
    elif kind == "transform-added/removed":
        state["keep"] = None if state["keep"] else "not zzz"
    elif kind == "source-added/removed":
        state["side"] = not state["side"]
    return kind


@pytest.mark.parametrize("seed", range(int(os.environ.get("KUBELOGS_SWAP_SEEDS", "3"))))
async def test_random_reloads_while_pods_write_and_rotate_keep_every_line_exactly_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, seed: int
) -> None:
    """Reloads of random kinds while three pods write and rotate and a plain file grows:
    no reload restarts the whole pipeline, and `out` has every line exactly once."""
    caplog.set_level("INFO")
    rng = random.Random(seed)
    pods = [PodLog(tmp_path / "node", pod=f"busy-{i}-abcde") for i in range(3)]
    out, copy, side = tmp_path / "out.ndjson", tmp_path / "copy.ndjson", tmp_path / "side.log"
    side.touch()
    side_lines: list[str] = []
    state: dict[str, Any] = {
        "fsync": False,
        "keep": None,
        "poll": "10ms",
        "copy": False,
        "side": True,
    }
    rounds = int(os.environ.get("KUBELOGS_SWAP_ROUNDS", "10"))
    kinds: list[str] = []
    async with Running(config(tmp_path, **state)) as run:
        with RotatingWriter(pods, seed=seed) as writer:
            for _ in range(rounds):
                kinds.append(_random_change(rng, state))
                with open(side, "a") as f:
                    for _ in range(rng.randint(0, 30)):
                        side_lines.append(f"side-{len(side_lines)}")
                        f.write(side_lines[-1] + "\n")
                target = count_lines(out) + rng.randint(1, 200)
                await until(lambda t=target: count_lines(out) >= t, "progress")
                await run.reload(config(tmp_path, **state))
            if not state["side"]:
                state["side"] = True
                await run.reload(config(tmp_path, **state))
        written = writer.written + side_lines
        await until(lambda: count_lines(out) >= len(written), "every line", seconds=25)
    assert "draining the running pipeline" not in caplog.text, kinds
    got = Counter(d["message"] for d in read_docs(out))
    assert [m for m in written if got[m] == 0] == [], kinds
    assert {m: n for m, n in got.items() if n > 1} == {}, kinds
    assert len(got) == len(written)
    copied = Counter(d["message"] for d in read_docs(copy))
    assert {m: n for m, n in copied.items() if n > 1} == {}, kinds


async def test_a_kept_route_is_re_pointed_to_a_changed_sink_of_one_of_its_outputs(
    tmp_path: Path,
) -> None:
    """A named output (`split.odd`) of a route that keeps running feeds a sink that is
    replaced, and a sink added on the other output starts receiving."""
    pod = PodLog(tmp_path / "node")
    odd, even = tmp_path / "odd.ndjson", tmp_path / "even.ndjson"

    def routed(*, fsync: bool, with_even: bool) -> Config:
        data: dict[str, Any] = {
            "data_dir": str(tmp_path / "data"),
            "api": {"enabled": False},
            "sources": {
                "logs": {
                    "type": "kubernetes_logs",
                    "include": [str(tmp_path / "node/var/log/containers/*.log")],
                    **TAIL,
                }
            },
            "transforms": {
                "split": {
                    "type": "route",
                    "inputs": ["logs"],
                    "routes": {"odd": "message:odd*", "even": "message:even*"},
                }
            },
            "sinks": {
                "o": {"type": "file", "inputs": ["split.odd"], "path": str(odd), "fsync": fsync}
            },
        }
        if with_even:
            data["sinks"]["e"] = {"type": "file", "inputs": ["split.even"], "path": str(even)}
        return config_from_data(data, "test.yaml")

    pod.write("odd-1", "even-1")
    async with Running(routed(fsync=False, with_even=False)) as run:
        await until(lambda: count_lines(odd) == 1, "the first line")
        split = run.pipeline.nodes["split"]
        await run.reload(routed(fsync=True, with_even=True))
        assert run.pipeline.nodes["split"] is split
        pod.write("odd-2", "even-2")
        await until(lambda: count_lines(odd) == 2 and count_lines(even) == 1, "routed lines")
    assert [d["message"] for d in read_docs(odd)] == ["odd-1", "odd-2"]
    assert [d["message"] for d in read_docs(even)] == ["even-2"]


async def test_a_sink_that_cannot_drain_in_the_grace_period_falls_back_to_a_whole_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The old sink never finishes its batch: after `shutdown_grace_period` the swap
    gives up, the pipeline restarts from its checkpoints and nothing is lost."""
    from kubelogs.sinks.file import FileSink

    caplog.set_level("INFO")
    real_run = FileSink.run
    stuck = asyncio.Event()  # never set: the old sink hangs in its first write

    async def run_sink(self: FileSink, inp: Any) -> None:
        if self.config.fsync:
            await real_run(self, inp)
            return
        async for _ in inp:
            await stuck.wait()

    monkeypatch.setattr(FileSink, "run", run_sink)
    pod = PodLog(tmp_path / "node")
    pod.write("a1", "a2")
    out = tmp_path / "out.ndjson"
    async with Running(config(tmp_path, grace="500ms")) as run:
        sink = run.pipeline.nodes["out"]
        await until(lambda: sink.channel is not None and sink.channel.closed is False, "start")
        first = run.pipeline
        await run.reload(config(tmp_path, grace="500ms", fsync=True))
        assert run.pipeline is not first
        pod.write("b1")
        await until(lambda: count_lines(out) >= 3, "every line")
    assert "did not drain within shutdown_grace_period" in caplog.text
    assert "draining the running pipeline" in caplog.text
    assert [d["message"] for d in read_docs(out)] == ["a1", "a2", "b1"]


async def test_a_disk_buffered_sink_is_replaced_alone_and_metrics_stay_one_series_each(
    tmp_path: Path,
) -> None:
    """Two disk-buffered sinks; reloads change only `a`: its buffer is closed (lock
    released) before the successor opens the same directory, `b` keeps running with
    its buffer, every line reaches both, /metrics has one series per buffer."""
    log = tmp_path / "app.log"
    log.touch()

    def make(fsync: bool) -> Config:
        def sink(name: str, sync: bool) -> dict[str, Any]:
            return {
                "type": "file",
                "inputs": ["logs"],
                "path": str(tmp_path / f"{name}.ndjson"),
                "fsync": sync,
                "buffer": {"type": "disk", "max_size": "1MiB"},
            }

        data: dict[str, Any] = {
            "data_dir": str(tmp_path / "data"),
            "api": {"enabled": False},
            "sources": {"logs": {"type": "file", "paths": [str(log)], "poll_interval": "10ms"}},
            "sinks": {"a": sink("a", fsync), "b": sink("b", False)},
        }
        return config_from_data(data, "test.yaml")

    expected: list[str] = []
    async with Running(make(False)) as run:
        b = run.pipeline.nodes["b"]
        for i in range(1, 5):
            with open(log, "a") as f:
                f.write(f"before reload {i}\n")
            expected.append(f"before reload {i}")
            await until(lambda: count_lines(tmp_path / "a.ndjson") >= len(expected), f"line {i}")
            await run.reload(make(i % 2 == 1))
            assert run.pipeline.nodes["b"] is b
        with open(log, "a") as f:
            f.write("after\n")
        expected.append("after")
        for name in ("a", "b"):
            path = tmp_path / f"{name}.ndjson"
            await until(lambda p=path: count_lines(p) >= len(expected), f"{name}'s lines")
        text = run.sup.metrics.render().decode()
    for name in ("a", "b"):
        assert [d["message"] for d in read_docs(tmp_path / f"{name}.ndjson")] == expected
        assert 1 == text.count(f'kubelogs_buffer_bytes{{component_id="{name}"}}')
        assert 1 == text.count(f'kubelogs_buffer_events{{component_id="{name}"}}')
