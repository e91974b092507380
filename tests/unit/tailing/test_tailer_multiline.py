"""Multiline joining inside the tailing engine: the checkpoint an open group holds, the
timeout flush with no new data, rotation, and settings that change while a file is open."""

from __future__ import annotations

import os
from pathlib import Path

from kubelogs.codecs.multiline import MultilineSpec
from kubelogs.codecs.multiline_rules import preset_rule
from kubelogs.codecs.timestamps import format_timestamp
from kubelogs.pipeline.event import FileContext
from kubelogs.tailing.stages import NO_STAGES, FileStages
from support.tailsim import Node

T0 = 1_736_935_200_000_000_000


class Clock:
    def __init__(self) -> None:
        self.ns = T0

    def __call__(self) -> tuple[int, float]:
        return self.ns, self.ns / 1e9


class Resolver:
    """Java for every file once `on` is set; `version` moves when it is."""

    def __init__(self, clock: Clock, *, on: bool = True) -> None:
        self.on = on
        self.spec = MultilineSpec(rule=preset_rule("java"), timeout=1.0, clock=clock)
        self.resolved: list[str] = []

    def version(self) -> int:
        return int(self.on)

    def resolve(self, ctx: FileContext) -> FileStages:
        self.resolved.append(ctx.path)
        return FileStages(multiline=self.spec, key="java") if self.on else NO_STAGES

    def stages_for(self, key: object) -> FileStages | None:
        if key == "java":
            return FileStages(multiline=self.spec, key="java")
        return NO_STAGES if key is None else None


def cri(clock: Clock, stream: str, msg: str) -> bytes:
    return f"{format_timestamp(clock.ns)} {stream} F {msg}\n".encode()


TRACE = ["ERROR failed", "java.lang.IllegalStateException: x", "\tat A.a(A.java:1)"]


def setup(tmp_path: Path, *, on: bool = True) -> tuple[Node, Clock, Resolver, Path]:
    logs = tmp_path / "logs"
    logs.mkdir()
    clock = Clock()
    resolver = Resolver(clock, on=on)
    node = Node(tmp_path, [str(logs / "*.log")], fmt="auto", stages=resolver)
    return node, clock, resolver, logs / "app.log"


def write(path: Path, clock: Clock, lines: list[str], stream: str = "stdout") -> None:
    with open(path, "ab") as f:
        f.write(b"".join(cri(clock, stream, m) for m in lines))


class TestTailerMultiline:
    def test_open_group_holds_the_checkpoint_at_its_first_line(self, tmp_path: Path) -> None:
        node, clock, _, path = setup(tmp_path)
        write(path, clock, ["INFO before", *TRACE])
        node.start()
        node.pump()
        t = node.tailer
        assert t is not None

        assert ["INFO before"] == node.messages()
        assert len(cri(clock, "stdout", "INFO before")) == t.files[0].ledger.committed

    def test_quiet_group_is_sent_after_the_timeout_without_new_data(self, tmp_path: Path) -> None:
        node, clock, _, path = setup(tmp_path)
        write(path, clock, TRACE)
        node.start()
        node.pump()
        assert [] == node.messages()

        clock.ns += 1_600_000_000  # timeout (1 s) + write delay (0.5 s) passed
        node.pump()

        assert ["\n".join(TRACE)] == node.messages()
        assert [("multiline",)] == [s[4] for s in node.stored]
        t = node.tailer
        assert t is not None
        assert path.stat().st_size == t.files[0].ledger.committed

    def test_restart_rejoins_an_open_group(self, tmp_path: Path) -> None:
        node, clock, _, path = setup(tmp_path)
        write(path, clock, TRACE[:2])
        node.start()
        node.pump()
        node.kill()
        write(path, clock, [*TRACE[2:], "INFO after"])
        node.start()
        node.pump()
        clock.ns += 5 * 10**9
        node.pump()

        assert ["\n".join(TRACE), "INFO after"] == node.messages()

    def test_rotation_sends_the_open_group_of_the_old_file(self, tmp_path: Path) -> None:
        """Groups never span two files: the old file's group is sent when it is released,
        the rest of the trace in the new file is an event of its own."""
        node, clock, _, path = setup(tmp_path)
        write(path, clock, TRACE[:2])
        node.start()
        node.pump()
        os.rename(path, path.with_name("app.log.20250115-100000"))
        write(path, clock, TRACE[2:])
        os.unlink(path.with_name("app.log.20250115-100000"))
        node.pump()

        assert ["\n".join(TRACE[:2])] == node.messages()

    def test_settings_that_arrive_later_apply_without_loss(self, tmp_path: Path) -> None:
        """The pod's metadata arrives after its file was opened: lines read before are
        events as they are, lines after are joined; nothing is lost or repeated."""
        node, clock, resolver, path = setup(tmp_path, on=False)
        write(path, clock, TRACE)
        node.start()
        node.pump()

        assert TRACE == node.messages()

        resolver.on = True
        write(path, clock, TRACE)
        node.pump()
        clock.ns += 5 * 10**9
        node.pump()

        assert [*TRACE, "\n".join(TRACE)] == node.messages()

    def test_settings_that_go_away_send_the_open_group_first(self, tmp_path: Path) -> None:
        node, clock, resolver, path = setup(tmp_path)
        write(path, clock, TRACE)
        node.start()
        node.pump()
        resolver.on = False
        node.pump()
        write(path, clock, TRACE[1:])
        node.pump()

        assert ["\n".join(TRACE), *TRACE[1:]] == node.messages()

    def test_kill_while_a_joined_trace_reaches_past_an_open_group(self, tmp_path: Path) -> None:
        """A stdout trace with a stderr line inside it is complete, the stderr line's
        group still open: the trace may not leave before it (the checkpoint would sit
        inside the trace), so a kill and restart neither tear nor repeat it."""
        node, clock, _, path = setup(tmp_path)
        write(path, clock, TRACE[:2])
        write(path, clock, ["WARN other stream"], stream="stderr")
        write(path, clock, [*TRACE[2:], "INFO after"])
        node.start()
        node.pump()
        node.kill()
        node.start()
        node.pump()
        clock.ns += 5 * 10**9
        node.pump()

        assert ["\n".join(TRACE), "WARN other stream", "INFO after"] == node.messages()

    def test_plain_files_join_tracebacks_too(self, tmp_path: Path) -> None:
        """The `file` source: lines timed when read, blank lines dropped by the plain
        format; a chained traceback is still one event."""
        import time

        logs = tmp_path / "logs"
        logs.mkdir()
        clock = Clock()
        clock.ns = time.time_ns()
        spec = MultilineSpec(rule=preset_rule("python"), timeout=1.0, clock=clock)

        class Python:
            def version(self) -> int:
                return 0

            def resolve(self, ctx: FileContext) -> FileStages:
                return FileStages(multiline=spec, key="python")

        node = Node(tmp_path, [str(logs / "*.log")], fmt="plain", stages=Python())
        tb = [
            "ERROR job failed",
            "Traceback (most recent call last):",
            '  File "job.py", line 3, in <module>',
            "KeyError: 'x'",
            "During handling of the above exception, another exception occurred:",
            "Traceback (most recent call last):",
            '  File "job.py", line 5, in <module>',
            "RuntimeError: failed",
        ]
        (logs / "app.log").write_text("\n".join([*tb[:4], "", *tb[4:], "INFO next"]) + "\n")
        node.start()
        node.pump()
        clock.ns = time.time_ns() + 5 * 10**9
        node.pump()

        assert ["\n".join(tb), "INFO next"] == node.messages()


class TestSettingsChangeAndCrash:
    """A setting changes on an open file, the store keeps batches whose checkpoint is
    not written yet, and the agent is killed: the restart re-reads those lines with the
    setting they were first read with, so none is lost or stored twice. (A resolver
    without `stages_for` gets the behaviour from before settings were recorded: these
    tests fail with it.)"""

    @staticmethod
    def read(node: Node, *, ack: bool = True) -> None:
        """One pass of the engine, as the run loop makes between two checkpoint writes:
        its batches reach the store; with `ack`, their acknowledgements reach the
        source too (else they are still on their way when the agent dies)."""
        t = node.tailer
        assert t is not None
        for batch in list(t.poll(scan=True)):
            node.deliver(batch if ack else batch.derive(ack=None))

    @staticmethod
    def lines(node: Node) -> list[str]:
        return [line for m in node.messages() for line in m.split("\n")]

    def finish(self, node: Node, clock: Clock) -> None:
        node.start()
        node.pump()
        clock.ns += 5 * 10**9
        node.pump()
        node.stop()

    def test_joining_turned_off_a_stored_trace_is_not_stored_again(self, tmp_path: Path) -> None:
        """The trace is stored (its ack not back yet), joining is turned off, and the
        agent dies before anything else is stored: without the record, the restart (no
        joining) stores the trace's lines 2 and 3 again - the store kept the trace under
        the offset of its first line only."""
        node, clock, resolver, path = setup(tmp_path)
        write(path, clock, [*TRACE, "INFO x"])
        t = node.start()
        self.read(node, ack=False)
        assert ["\n".join(TRACE)] == node.messages()  # "INFO x" opened a group
        resolver.on = False
        write(path, clock, ["INFO y"])
        lost_in_flight = list(t.poll(scan=True))
        assert lost_in_flight
        node.kill()

        self.finish(node, clock)

        assert ["\n".join(TRACE), "INFO x", "INFO y"] == node.messages()

    def test_joining_turned_on_no_line_read_before_is_lost(self, tmp_path: Path) -> None:
        """Lines 1-2 stored one by one (their acks not back yet), then joining is turned
        on and line 3 opens a group: without the record, the restart joins lines 1-3
        into one event under the offset of line 1, which the store already has - line
        3 would be lost."""
        node, clock, resolver, path = setup(tmp_path, on=False)
        write(path, clock, TRACE[:2])
        node.start()
        self.read(node, ack=False)
        resolver.on = True
        write(path, clock, TRACE[2:])
        self.read(node, ack=False)
        assert TRACE[:2] == node.messages()
        node.kill()

        self.finish(node, clock)

        assert TRACE == node.messages()

    def test_switches_back_and_forth_before_a_crash(self, tmp_path: Path) -> None:
        """Each trace's first line is read before joining is turned on and its other
        lines after; then joining goes off again. The restart replays every switch."""
        node, clock, resolver, path = setup(tmp_path, on=False)
        node.start()
        for _ in range(3):
            write(path, clock, TRACE[:1])
            self.read(node, ack=False)
            resolver.on = True
            write(path, clock, [*TRACE[1:], "INFO sep"])
            self.read(node, ack=False)
            resolver.on = False
            self.read(node, ack=False)
        write(path, clock, TRACE[:1])
        self.read(node, ack=False)
        resolver.on = True
        write(path, clock, TRACE[1:])
        self.read(node, ack=False)
        node.kill()

        self.finish(node, clock)

        trace = ["ERROR failed", "\n".join(TRACE[1:])]  # the switch split each one
        assert [*trace, "INFO sep"] * 3 + trace == node.messages()
        assert sorted(TRACE * 4 + ["INFO sep"] * 3) == sorted(self.lines(node))

    def test_the_record_keeps_what_the_checkpoint_has_not_passed(self, tmp_path: Path) -> None:
        from kubelogs.tailing.checkpoints import CheckpointStore

        node, clock, resolver, path = setup(tmp_path, on=False)
        write(path, clock, ["INFO a"])
        t = node.start()
        held = list(t.poll(scan=True))  # on their way to the store
        resolver.on = True
        self.read(node)

        (row,) = CheckpointStore(tmp_path / "checkpoints.db").load("t").values()
        assert row.offset == 0
        assert row.stages == f'[[0,null],[{path.stat().st_size},"java"]]'

        for batch in held:
            node.deliver(batch)
        node.pump()  # acknowledged up to the end, checkpoint written
        write(path, clock, ["INFO b"])
        node.pump()
        (row,) = CheckpointStore(tmp_path / "checkpoints.db").load("t").values()
        assert row.offset == path.stat().st_size - len(cri(clock, "stdout", "INFO b"))
        assert row.stages == f'[[{row.offset},"java"]]'  # the group "INFO b" opened

        node.stop()  # nothing in flight: a restart may read on with any settings
        (row,) = CheckpointStore(tmp_path / "checkpoints.db").load("t").values()
        assert row.stages == ""
