"""A model-based test (hypothesis `RuleBasedStateMachine`) of configuration reloads over
the in-process pipeline: pods write and rotate, reloads of every kind arrive (a sink, a
transform or a source changed, added or removed, a whole-pipeline restart, an invalid
config, a config whose new component cannot be built, one whose new component
crashes), sometimes several at once, sometimes with a stop in the middle of the swap,
and the agent restarts from its checkpoints. After a final drain, every line written is
in the sink exactly once.

The model knows the two cases where the guarantee is at-least-once and allows a repeat
only of the lines written before them: a crash (a component raised), and a drain cut
short by `shutdown_grace_period` (here: only when a rule made the old sink hang; a
grace period that runs out otherwise fails the test). Nothing may ever be lost.

Small by default (a few seconds); `KUBELOGS_RELOAD_MODEL_EXAMPLES` and
`KUBELOGS_RELOAD_MODEL_STEPS` make it bigger.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar
from unittest import mock

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

import kubelogs.pipeline.reload as reload_module
import kubelogs.pipeline.swap as swap_module
from kubelogs.config.loader import Config, config_from_data
from kubelogs.pipeline.reload import Supervisor
from kubelogs.pipeline.runner import Pipeline
from kubelogs.sinks.file import FileSink, FileSinkConfig
from kubelogs.telemetry.metrics import Metrics
from support.agent import read_docs
from support.podlogs import PodLog

T = TypeVar("T")

GRACE = "1s"
"""Short, so that the rule making a sink hang costs one second; a normal in-process
drain takes milliseconds."""

# Kinds of reload, weighted by repetition (the slow ones once).
APPLIED = ["sink", "transform", "transform-added/removed", "source", "side-added/removed"]
APPLIED += ["copy-added/removed", "whole"]
KINDS = APPLIED * 2 + ["invalid", "unbuildable", "crash"]

OUTCOMES = (
    "cannot build",
    "reload failed",
    "has not changed",
    "reload dropped",
)
"""Log messages that end a reload without applying it (besides `refused`)."""


def make_config(tmp: Path, state: dict[str, Any]) -> Config:
    """`logs` (kubernetes_logs) [-> `keep` (filter)] -> `out` (file); `side` (file
    source) -> `out`; [`logs` -> `copy` (file)]."""
    tail = {"glob_interval": "30ms", "poll_interval": state["poll"], "rotate_wait": "200ms"}
    tail["read_chunk"] = "4KiB"  # small batches: a few hundred lines fill a queue
    out_inputs = ["keep" if state["keep"] else "logs"]
    if state["side"]:
        out_inputs.append("side")
    data: dict[str, Any] = {
        "data_dir": str(tmp / "data"),
        "node_name": "node-test",
        "api": {"enabled": False},
        "shutdown_grace_period": GRACE,
        "log": {"summary_interval": state["summary"]},
        "sources": {
            "logs": {
                "type": "kubernetes_logs",
                "include": [str(tmp / "node/var/log/containers/*.log")],
                **tail,
            }
        },
        "sinks": {
            "out": {
                "type": "file",
                "inputs": out_inputs,
                "path": str(tmp / "out.ndjson"),
                "fsync": state["fsync"],
            }
        },
    }
    if state["side"]:
        data["sources"]["side"] = {"type": "file", "paths": [str(tmp / "side.log")], **tail}
    if state["keep"]:
        data["transforms"] = {
            "keep": {"type": "filter", "inputs": ["logs"], "condition": state["keep"]}
        }
    if state["copy"]:
        data["sinks"]["copy"] = {
            "type": "file",
            "inputs": ["logs"],
            "path": str(tmp / f"{state['copy']}.ndjson"),
        }
    if state.get("invalid"):
        data["sinks"]["out"]["inputs"] = ["nope"]
    return config_from_data(data, "model.yaml")


class ReloadModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="kubelogs-reload-model-"))
        self.loop = asyncio.new_event_loop()
        self.pods = [PodLog(self.tmp / "node", pod=f"p{i}-abcde") for i in range(2)]
        self.side = self.tmp / "side.log"
        self.side.touch()
        self.written: list[str] = []
        self.by_pod: dict[int, list[str]] = {0: [], 1: []}
        self.repeat_ok: set[str] = set()
        """Lines written before a crash or a drain cut short: they may arrive twice."""
        self.history: list[str] = []
        self.state: dict[str, Any] = {
            "fsync": False,
            "keep": None,
            "poll": "10ms",
            "copy": None,
            "side": True,
            "summary": "1h",
        }
        self.next_state = dict(self.state)
        self.configs: dict[int, dict[str, Any]] = {}
        self.stuck: set[int] = set()
        self.swaps = 0
        self.drains = 0
        self.messages: list[str] = []
        self._handler = _Collect(self.messages)
        logging.getLogger("kubelogs").addHandler(self._handler)
        self._patches = self._patch()
        self.sup, self.task = self._start(make_config(self.tmp, self.state))

    # -- plumbing --------------------------------------------------------------------

    def _patch(self) -> list[Any]:
        """A sink that raises as it starts (`crash.ndjson`), one that cannot be built
        (`unbuildable.ndjson`), a sink that hangs (`stuck`), and counters of the swaps
        begun and of the old regions drained (to stop in the middle of a swap)."""
        model = self
        real_run, real_build = FileSink.run, FileSinkConfig.build
        real_swap, real_drain = reload_module.swap, swap_module._drain

        async def run(sink: FileSink, inp: Any) -> None:
            if sink.config.path.name == "crash.ndjson":
                raise RuntimeError("the new sink crashed")
            await real_run(sink, _Hangable(model.stuck, sink, inp))

        def build(cfg: FileSinkConfig, cx: Any) -> FileSink:
            if cfg.path.name == "unbuildable.ndjson":
                raise OSError("cannot open the sink")
            return real_build(cfg, cx)

        async def swap(*args: Any) -> Any:
            model.swaps += 1
            return await real_swap(*args)

        async def drain(*args: Any) -> None:
            await real_drain(*args)
            model.drains += 1

        patches = [
            mock.patch.object(FileSink, "run", run),
            mock.patch.object(FileSinkConfig, "build", build),
            mock.patch.object(reload_module, "swap", swap),
            mock.patch.object(swap_module, "_drain", drain),
        ]
        for p in patches:
            p.start()
        return patches

    def _load(self) -> Config:
        state = dict(self.next_state)
        cfg = make_config(self.tmp, state)
        self.configs[id(cfg)] = state
        return cfg

    def _start(self, cfg: Config) -> tuple[Supervisor, asyncio.Task[Pipeline]]:
        self.configs[id(cfg)] = dict(self.state)
        sup = Supervisor(cfg, self._load, metrics=Metrics())
        task = self.loop.create_task(sup.run())
        self.run(lambda: sup.ready or task.done(), "the pipeline to start")
        assert not task.done(), (task, self.history)
        return sup, task

    def run(self, cond: Callable[[], object], what: str, seconds: float = 30.0) -> None:
        """Run the loop (the pipeline runs only then) until `cond`, with a deadline."""

        async def wait() -> None:
            deadline = self.loop.time() + seconds
            while not cond():
                if self.loop.time() > deadline:
                    raise AssertionError(f"timed out waiting for {what}; {self.history}")
                await asyncio.sleep(0.005)

        self.loop.run_until_complete(wait())

    def finish(self, aw: Awaitable[T], seconds: float = 30.0) -> T:
        return self.loop.run_until_complete(asyncio.wait_for(aw, seconds))

    def outcomes(self) -> int:
        ended = sum(any(o in m for o in OUTCOMES) for m in self.messages)
        return self.sup.reloads + self.sup.refused + ended

    def change(self, kind: str) -> dict[str, Any]:
        """The state after a change of `kind` (an `invalid` one is never applied)."""
        s = dict(self.state)
        n = len(self.history)
        if kind == "sink":
            s["fsync"] = not s["fsync"]
        elif kind == "transform":
            s["keep"] = f"not r{n}x"
        elif kind == "transform-added/removed":
            s["keep"] = None if s["keep"] else "not zzz"
        elif kind == "source":
            s["poll"] = "10ms" if s["poll"] != "10ms" else "15ms"
        elif kind == "side-added/removed":
            s["side"] = not s["side"]
        elif kind == "copy-added/removed":
            s["copy"] = None if s["copy"] else "copy"
        elif kind == "whole":
            s["summary"] = "1h" if s["summary"] != "1h" else "2h"
        elif kind == "invalid":
            s["invalid"] = True
        elif kind == "unbuildable":
            s["copy"] = "unbuildable"
        elif kind == "crash":
            s["copy"] = "crash"
        return s

    def request(self, kind: str) -> int:
        """Ask for a reload of `kind`; the outcome count to wait for."""
        self.history.append(kind)
        self.next_state = self.change(kind)
        before = self.outcomes()
        self.sup.request_reload()
        return before

    def settle(self, before: int, kind: str) -> None:
        """Wait for the reload's outcome; a crash restarts the agent."""
        self.run(
            lambda: self.task.done() or (self.outcomes() > before and self.sup.ready),
            f"the outcome of reload {kind}",
        )
        if kind == "crash":  # the new sink is started, then it crashes: the run ends
            self.run(self.task.done, "the crash to end the run")
        if self.task.done():
            self.after_exit(crash_expected=kind == "crash")
        self.state = dict(self.configs[id(self.sup.config)])

    def after_exit(self, *, crash_expected: bool) -> None:
        """The supervisor ended (a stop or a crash): check how, restart from the
        checkpoints with the configuration it was running."""
        error = self.task.exception()
        pipeline = None if error is not None else self.task.result()
        if error is not None:
            assert crash_expected, f"unexpected error {error!r}; {self.history}"
            self.repeat_ok.update(self.written)  # a crash: at-least-once
            self.history.append("(crashed)")
        elif pipeline is not None and pipeline.grace_expired:
            assert self.stuck, f"the grace period ran out with no sink stuck; {self.history}"
            self.repeat_ok.update(self.written)
        self.stuck.clear()
        self.state = dict(self.configs[id(self.sup.config)])
        cfg = self.sup.config
        if self.state["copy"] == "crash":
            # the crashing sink was applied before it crashed: its config would crash
            # again at every start; the operator fixes it
            self.state["copy"] = None
            cfg = make_config(self.tmp, self.state)
        self.next_state = dict(self.state)
        self.sup, self.task = self._start(cfg)

    # -- rules -----------------------------------------------------------------------

    @rule(pod=st.integers(0, 1), n=st.integers(1, 60))
    def write(self, pod: int, n: int) -> None:
        lines = [f"p{pod}-{len(self.written) + i}" for i in range(n)]
        self.pods[pod].write(*lines)
        self.written.extend(lines)
        self.by_pod[pod].extend(lines)

    @rule(n=st.integers(1, 30))
    def write_side(self, n: int) -> None:
        lines = [f"side-{len(self.written) + i}" for i in range(n)]
        with open(self.side, "a") as f:
            f.writelines(line + "\n" for line in lines)
        self.written.extend(lines)

    @rule(pod=st.integers(0, 1))
    def rotate(self, pod: int) -> None:
        """kubelet's rotation, once the pod's lines were read (two rotations of a file
        never opened are beyond what the tailer promises while it is not scheduled)."""
        want = set(self.by_pod[pod])
        self.run(lambda: want <= self.delivered(), f"pod {pod}'s lines before a rotation")
        self.pods[pod].rotate()

    @rule(kind=st.sampled_from(KINDS))
    def reload(self, kind: str) -> None:
        self.settle(self.request(kind), kind)

    @rule(first=st.sampled_from(APPLIED), second=st.sampled_from(APPLIED))
    def reload_storm(self, first: str, second: str) -> None:
        """A SIGHUP, then two more (another config) while the first swap runs."""
        swaps, before = self.swaps, self.request(first)
        self.run(
            lambda: self.swaps > swaps or self.outcomes() > before, "the first reload to begin"
        )
        self.state = self.next_state  # the second change builds on the first
        self.request(second)
        self.sup.request_reload()
        self.run(
            lambda: (
                self.sup.ready
                and self.configs.get(id(self.sup.config)) == self.next_state
                and not self.sup._reload.is_set()
            ),
            "the last config of the storm to run",
        )
        self.state = dict(self.next_state)

    @rule(
        kind=st.sampled_from(KINDS),
        moment=st.sampled_from(["at once", "swap begun", "old region drained"]),
    )
    def stop_during_reload(self, kind: str, moment: str) -> None:
        """SIGHUP, then SIGTERM at a moment of the swap; then a restart."""
        swaps, drains, before = self.swaps, self.drains, self.request(kind)
        if moment != "at once":
            self.run(
                lambda: (
                    (self.swaps > swaps if moment == "swap begun" else self.drains > drains)
                    or self.outcomes() > before
                    or self.task.done()
                ),
                f"{moment} ({kind})",
            )
        self.history.append(f"(stop: {moment})")
        self.sup.request_stop()
        self.finish(asyncio.wait([self.task]))
        self.after_exit(crash_expected=kind == "crash")

    @rule()
    def stop_and_restart(self) -> None:
        self.history.append("(restart)")
        self.sup.request_stop()
        self.finish(asyncio.wait([self.task]))
        self.after_exit(crash_expected=False)

    @precondition(lambda self: self.written)
    @rule(full=st.booleans())
    def reload_with_a_hung_sink(self, full: bool) -> None:
        """The old sink hangs on its next batch (with `full`, its queue fills and the
        source blocks in a send to it): the swap cannot finish within the grace period
        and the whole pipeline restarts from its checkpoints (at-least-once)."""
        node = self.sup.pipeline.nodes["out"] if self.sup.pipeline else None
        if node is None:
            return
        self.stuck.add(id(node.runtime))
        n = 1500 if full else 1
        lines = [f"p0-{len(self.written) + i}" for i in range(n)]
        self.pods[0].write(*lines)
        self.written.extend(lines)
        self.by_pod[0].extend(lines)
        self.repeat_ok.update(self.written)
        if full:
            channel = node.channel
            assert channel is not None
            self.run(lambda: len(channel) >= 8, "the hung sink's queue to fill")
        self.settle(self.request("sink"), "sink (hung)")
        self.stuck.clear()

    # -- the end: drain and check ----------------------------------------------------

    def delivered(self) -> set[str]:
        return {d["message"] for d in read_docs(self.tmp / "out.ndjson")}

    def teardown(self) -> None:
        try:
            if not self.task.done():
                if not self.state["side"] or self.state["copy"] in ("crash", "unbuildable"):
                    self.history.append("(final: side on)")
                    self.next_state = {**self.state, "side": True, "copy": None}
                    before = self.outcomes()
                    self.sup.request_reload()
                    self.settle(before, "final")
                want = set(self.written)
                self.run(lambda: want <= self.delivered(), "every line in the sink")
                self.sup.request_stop()
                pipeline = self.finish(self.task)
                assert not pipeline.grace_expired or self.stuck, self.history
            got = Counter(d["message"] for d in read_docs(self.tmp / "out.ndjson"))
            lost = [m for m in self.written if m not in got]
            assert lost == [], (len(lost), lost[:5], self.history)
            repeated = {m: n for m, n in got.items() if n > 1 and m not in self.repeat_ok}
            assert repeated == {}, (repeated, self.history)
            assert set(got) == set(self.written), self.history
            copied = Counter(d["message"] for d in read_docs(self.tmp / "copy.ndjson"))
            repeated = {m: n for m, n in copied.items() if n > 1 and m not in self.repeat_ok}
            assert repeated == {}, (repeated, self.history)
        finally:
            if not self.task.done():
                self.sup.request_stop()
                self.loop.run_until_complete(asyncio.wait([self.task], timeout=30))
            self.loop.close()
            for p in self._patches:
                p.stop()
            logging.getLogger("kubelogs").removeHandler(self._handler)
            shutil.rmtree(self.tmp, ignore_errors=True)


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.INFO)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


class _Hangable:
    """A sink's input that never yields another batch once the sink is marked stuck."""

    def __init__(self, stuck: set[int], sink: FileSink, inp: Any) -> None:
        self.stuck, self.sink, self.inp = stuck, sink, inp

    def __aiter__(self) -> Any:
        return self._iterate()

    async def _iterate(self) -> Any:
        async for batch in self.inp:
            if id(self.sink) in self.stuck:
                await asyncio.Event().wait()
            yield batch

    def receive_nowait(self) -> Any:
        return None if id(self.sink) in self.stuck else self.inp.receive_nowait()


ReloadModel.TestCase.settings = settings(
    max_examples=int(os.environ.get("KUBELOGS_RELOAD_MODEL_EXAMPLES", "4")),
    stateful_step_count=int(os.environ.get("KUBELOGS_RELOAD_MODEL_STEPS", "12")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
TestReloadModel = ReloadModel.TestCase
