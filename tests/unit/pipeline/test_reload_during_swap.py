"""Partial reloads (pipeline/swap.py) attacked at their worst moments: a stop requested
while a swap is in progress, a component crashing during a swap, a reload arriving
while one is in progress. "During a swap" is hit deterministically with a sink whose
old instance blocks once its queue is drained, until the test releases it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from kubelogs.config.loader import Config, config_from_data
from kubelogs.pipeline.reload import Supervisor
from kubelogs.sinks.file import FileSink
from kubelogs.telemetry.metrics import Metrics
from support.agent import count_lines, read_docs

TAIL = {"poll_interval": "10ms", "glob_interval": "50ms"}


def config(
    tmp: Path, *, fsync: bool = False, poll: str = "10ms", grace: str = "3s", chunk: str = "256KiB"
) -> Config:
    """`logs` (file source of app.log) -> `out` (file sink)."""
    data: dict[str, Any] = {
        "data_dir": str(tmp / "data"),
        "node_name": "node-test",
        "api": {"enabled": False},
        "shutdown_grace_period": grace,
        "sources": {
            "logs": {
                "type": "file",
                "paths": [str(tmp / "app.log")],
                **TAIL,
                "poll_interval": poll,
                "read_chunk": chunk,
            }
        },
        "sinks": {
            "out": {
                "type": "file",
                "inputs": ["logs"],
                "path": str(tmp / "out.ndjson"),
                "fsync": fsync,
            }
        },
    }
    return config_from_data(data, "test.yaml")


async def until(cond: Any, what: str, seconds: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Gate:
    """The old `out` (fsync off) blocks after its queue ended (mid-swap) until opened."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reached = asyncio.Event()
        self.open = asyncio.Event()
        real = FileSink.run
        gate = self

        async def run(self: FileSink, inp: Any) -> None:
            await real(self, inp)
            if not self.config.fsync:
                gate.reached.set()
                await gate.open.wait()

        monkeypatch.setattr(FileSink, "run", run)


def write(path: Path, *lines: str) -> None:
    with open(path, "a") as f:
        f.writelines(line + "\n" for line in lines)


async def test_a_stop_requested_while_a_sink_is_swapped_ends_cleanly_and_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while the old sink drains: the kept source, idle, ends (its output
    closes) before the swap re-points it to the new sink. The new sink must still see
    its input end, so the pipeline stops at once, without the grace period running out
    (or, worse, hanging: a task started by the swap after the stop had no deadline)."""
    gate = Gate(monkeypatch)
    log, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    write(log, "a1", "a2")
    sup = Supervisor(config(tmp_path), lambda: config(tmp_path, fsync=True), metrics=Metrics())
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready and count_lines(out) == 2, "the first lines")
    pipeline = sup.pipeline
    assert pipeline is not None
    source = pipeline.nodes["logs"]
    sup.request_reload()
    await asyncio.wait_for(gate.reached.wait(), 20)
    sup.request_stop()
    await until(lambda: source.task is not None and source.task.done(), "the source to end")
    gate.open.set()
    done = await asyncio.wait_for(task, 10)  # grace is 3s: well before a hang
    assert not done.grace_expired
    assert [d["message"] for d in read_docs(out)] == ["a1", "a2"]


async def test_a_component_started_by_a_swap_after_the_stop_still_gets_the_grace_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM during a swap, then the new sink never finishes: the grace period must
    cut it short like any other component (it was started after the deadline began)."""
    real = FileSink.run
    reached, release = asyncio.Event(), asyncio.Event()

    async def run(self: FileSink, inp: Any) -> None:
        await real(self, inp)
        if not self.config.fsync:
            reached.set()
            await release.wait()
        else:
            await asyncio.Event().wait()  # the new sink hangs at shutdown

    monkeypatch.setattr(FileSink, "run", run)
    log = tmp_path / "app.log"
    write(log, "a1")
    new = config(tmp_path, fsync=True, grace="1s")
    sup = Supervisor(config(tmp_path, grace="1s"), lambda: new, metrics=Metrics())
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready and count_lines(tmp_path / "out.ndjson") == 1, "a line")
    sup.request_reload()
    await asyncio.wait_for(reached.wait(), 20)
    sup.request_stop()
    release.set()
    done = await asyncio.wait_for(task, 15)
    assert done.grace_expired


def _hold(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> tuple[Any, Any]:
    """Make `target.name` (an async function) wait for `open` once it is reached."""
    reached, release = asyncio.Event(), asyncio.Event()
    real = getattr(target, name)

    async def held(*args: Any, **kwargs: Any) -> Any:
        reached.set()
        await release.wait()
        return await real(*args, **kwargs)

    monkeypatch.setattr(target, name, held)
    return reached, release


@pytest.mark.parametrize("phase", ["drain", "build", "acks"])
@pytest.mark.parametrize("change", ["sink", "source"])
async def test_a_stop_at_any_step_of_a_swap_keeps_every_line_exactly_once_after_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, phase: str, change: str
) -> None:
    """SIGTERM while the swap drains the old component, builds the new one, or waits
    for a replaced source's batches to be acknowledged; then a restart from the
    checkpoints: the sink has every line exactly once, and the exit was clean."""
    import kubelogs.pipeline.swap as swap_module
    from kubelogs.pipeline.inflight import InFlight

    if phase == "drain":
        reached, release = _hold(monkeypatch, swap_module, "_drain")
    elif phase == "build":
        reached, release = _hold(monkeypatch, swap_module, "_build")
    else:
        reached, release = _hold(monkeypatch, InFlight, "wait_idle")
    log, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    write(log, "a1", "a2")
    new = config(tmp_path, fsync=True) if change == "sink" else config(tmp_path, poll="20ms")
    sup = Supervisor(config(tmp_path), lambda: new, metrics=Metrics())
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready and count_lines(out) == 2, "the first lines")
    write(log, "b1")
    sup.request_reload()
    if phase == "acks" and change == "sink":
        # no source is replaced: the swap never waits for acks; stop after it instead
        await until(lambda: sup.reloads == 1, "the reload")
    else:
        await asyncio.wait_for(reached.wait(), 20)
    write(log, "c1")
    sup.request_stop()
    release.set()
    done = await asyncio.wait_for(task, 15)
    assert not done.grace_expired
    # restart from the checkpoints with the config now running
    write(log, "d1")
    again = Supervisor(sup.config, lambda: sup.config, metrics=Metrics())
    task = asyncio.create_task(again.run())
    await until(lambda: count_lines(out) >= 5, "the lines after the restart")
    again.request_stop()
    await asyncio.wait_for(task, 15)
    assert sorted(d["message"] for d in read_docs(out)) == ["a1", "a2", "b1", "c1", "d1"]


async def test_a_reload_requested_during_a_swap_is_applied_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two SIGHUPs in quick succession (or a `watch_config` change during a SIGHUP): the
    second arrives while the first swap drains; it is applied right after, once."""
    gate = Gate(monkeypatch)
    log, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    write(log, "a1")
    configs = [config(tmp_path, fsync=True), config(tmp_path, fsync=True, poll="20ms")]
    sup = Supervisor(config(tmp_path), lambda: configs[0], metrics=Metrics())
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready and count_lines(out) == 1, "the first line")
    sup.request_reload()
    await asyncio.wait_for(gate.reached.wait(), 20)
    configs.pop(0)
    write(log, "b1")
    sup.request_reload()
    sup.request_reload()  # a storm: one more reload, same config
    gate.open.set()
    await until(lambda: sup.reloads == 2 and sup.ready, "both reloads")
    assert sup.config is configs[0]
    assert sup.pipeline is not None
    assert sup.pipeline.config is configs[0]
    write(log, "c1")
    await until(lambda: count_lines(out) == 3, "a line after the reloads")
    sup.request_stop()
    done = await asyncio.wait_for(task, 15)
    assert not done.grace_expired
    assert sup.reloads == 2
    assert [d["message"] for d in read_docs(out)] == ["a1", "b1", "c1"]


async def test_a_stop_while_a_new_config_is_being_read_does_not_apply_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGHUP, then SIGTERM while the file is read and validated (in a thread): the
    agent stops with the running config; it does not start a swap on a pipeline that
    is draining for the exit (held here by the sink, blocked once its queue ended)."""
    import threading

    import kubelogs.pipeline.reload as reload_module

    caplog.set_level("INFO")
    gate = Gate(monkeypatch)
    swaps: list[object] = []
    real_swap = reload_module.swap

    async def swap(*args: Any) -> Any:
        swaps.append(args)
        return await real_swap(*args)

    monkeypatch.setattr(reload_module, "swap", swap)
    log, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    write(log, "a1")
    loading, release = threading.Event(), threading.Event()

    def load() -> Config:
        loading.set()
        release.wait(20)
        return config(tmp_path, fsync=True)

    first = config(tmp_path)
    sup = Supervisor(first, load, metrics=Metrics())
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready and count_lines(out) == 1, "the first line")
    sup.request_reload()
    await until(loading.is_set, "the load to begin")
    sup.request_stop()
    await asyncio.wait_for(gate.reached.wait(), 20)  # draining for the exit
    release.set()
    await until(lambda: swaps or "the agent is stopping" in caplog.text, "the loaded config")
    gate.open.set()
    done = await asyncio.wait_for(task, 15)
    assert not done.grace_expired
    assert sup.reloads == 0
    assert sup.config is first
    assert swaps == []
    assert [d["message"] for d in read_docs(out)] == ["a1"]


@pytest.mark.parametrize("which", ["new", "old"])
async def test_a_component_crashing_during_a_swap_ends_the_run_and_a_restart_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    """The new sink crashes as it starts, or the old one as it finishes its drain: the
    run ends with that error (as a crash without reloads), promptly; a restart from the
    checkpoints delivers every line (at least once: a crash is not a clean stop)."""
    real = FileSink.run

    async def run(self: FileSink, inp: Any) -> None:
        if which == "new" and self.config.fsync:
            raise RuntimeError("boom")
        await real(self, inp)
        if which == "old" and not self.config.fsync and not stopping[0]:
            raise RuntimeError("boom")

    stopping = [False]
    monkeypatch.setattr(FileSink, "run", run)
    log, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    write(log, "a1", "a2")
    first = config(tmp_path)
    sup = Supervisor(first, lambda: config(tmp_path, fsync=True), metrics=Metrics())
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready and count_lines(out) == 2, "the first lines")
    write(log, "b1")
    sup.request_reload()
    with pytest.raises(BaseException, match=r"boom|unhandled errors") as raised:
        await asyncio.wait_for(task, 15)
    assert not isinstance(raised.value, TimeoutError)
    stopping[0] = True
    write(log, "c1")
    again = Supervisor(first, lambda: first, metrics=Metrics())
    task = asyncio.create_task(again.run())
    await until(lambda: {"a1", "a2", "b1", "c1"} <= docs(out), "every line after the restart")
    again.request_stop()
    await asyncio.wait_for(task, 15)


def docs(path: Path) -> set[str]:
    return {d["message"] for d in read_docs(path)} if path.exists() else set()


async def test_a_reload_that_replaces_a_sink_stuck_with_a_full_queue_falls_back_in_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The common case of a reload that fixes a broken sink: the old sink cannot deliver,
    its queue is full and the source is blocked in a send to it. Pausing the source
    waits for that send, which never ends: the swap must still give up within
    `shutdown_grace_period` and restart the whole pipeline (not hang), and every line
    reaches the new sink."""
    caplog.set_level("INFO")
    real = FileSink.run
    stuck = asyncio.Event()  # never set: the old sink hangs on its first batch

    async def run(self: FileSink, inp: Any) -> None:
        if self.config.fsync:
            await real(self, inp)
            return
        async for _ in inp:
            await stuck.wait()

    monkeypatch.setattr(FileSink, "run", run)
    log, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    lines = [f"line-{i:05d}-" + "x" * 40 for i in range(3000)]
    write(log, *lines)
    first = config(tmp_path, grace="1s", chunk="2KiB")
    new = config(tmp_path, grace="1s", chunk="2KiB", fsync=True)
    sup = Supervisor(first, lambda: new, metrics=Metrics())
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready, "the start")
    pipeline = sup.pipeline
    assert pipeline is not None
    channel = pipeline.nodes["out"].channel
    assert channel is not None
    await until(lambda: len(channel) >= 8, "the sink's queue to fill")
    sup.request_reload()
    await until(lambda: sup.reloads == 1 and sup.ready, "the reload", seconds=15)
    assert sup.pipeline is not pipeline  # the whole pipeline restarted
    await until(lambda: count_lines(out) >= len(lines), "every line")
    sup.request_stop()
    await asyncio.wait_for(task, 15)
    assert "within shutdown_grace_period" in caplog.text
    assert sorted(d["message"] for d in read_docs(out)) == lines


async def test_a_replaced_source_whose_batches_never_resolve_is_closed_when_the_swap_gives_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source changes while the kept sink cannot deliver: its batches are never
    acknowledged, the swap gives up after the grace period and the whole pipeline
    restarts. The replaced source, already out of the pipeline, must still be closed
    (its files, and for a network source its port, would leak otherwise; its final
    checkpoint holds what was acknowledged) - and nothing is lost."""
    real = FileSink.run
    stuck = [True]
    hang = asyncio.Event()

    async def run(self: FileSink, inp: Any) -> None:
        if not stuck[0]:
            await real(self, inp)
            return
        async for _ in inp:
            await hang.wait()

    monkeypatch.setattr(FileSink, "run", run)
    log, out = tmp_path / "app.log", tmp_path / "out.ndjson"
    write(log, "a1", "a2")
    new = config(tmp_path, grace="1s", poll="20ms")
    sup = Supervisor(config(tmp_path, grace="1s"), lambda: new, metrics=Metrics())
    task = asyncio.create_task(sup.run())
    await until(lambda: sup.ready, "the start")
    pipeline = sup.pipeline
    assert pipeline is not None
    old_source = pipeline.nodes["logs"].runtime
    await until(lambda: old_source.tailer.files, "the source to open its file")
    stuck[0] = False  # the sinks built from now on work
    sup.request_reload()
    await until(lambda: sup.reloads == 1 and sup.ready, "the reload", seconds=15)
    assert sup.pipeline is not pipeline
    assert old_source.tailer.files == []  # closed
    await until(lambda: count_lines(out) >= 2, "every line")
    sup.request_stop()
    await asyncio.wait_for(task, 15)
    assert [d["message"] for d in read_docs(out)] == ["a1", "a2"]
