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
