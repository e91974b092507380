"""The multiline stage: per-stream groups, offset order, the checkpoint it holds, limits,
the time rule and custom patterns."""

from __future__ import annotations

import re

from kubelogs.codecs.columns import Columns
from kubelogs.codecs.cri import CriParser
from kubelogs.codecs.multiline import HOLD_MAX, MultilineParser, MultilineSpec
from kubelogs.codecs.multiline_rules import PatternRule, preset_rule

T0 = 1_736_935_200_000_000_000  # 2025-01-15T10:00:00Z in ns


def cri(stream: str, msg: str, *, tag: str = "F", sec: int = 0) -> bytes:
    return f"2025-01-15T10:00:{sec:02d}.000000001Z {stream} {tag} {msg}".encode()


def stage(rule: object = None, **kw: object) -> MultilineParser:
    spec = MultilineSpec(rule=rule or preset_rule("java"), **kw)  # type: ignore[arg-type]
    return MultilineParser(CriParser(1 << 20), spec)


def feed(p: MultilineParser, lines: list[bytes], offset: int = 0) -> tuple[Columns, int]:
    cols = Columns()
    end = p.feed(lines, offset, cols)
    return cols, end


def offsets_of(lines: list[bytes]) -> list[int]:
    out, off = [], 0
    for line in lines:
        out.append(off)
        off += len(line) + 1
    return out


class TestMultilineStage:
    def test_streams_are_never_mixed(self) -> None:
        """A stderr line between the frames of a stdout trace is an event of its own."""
        lines = [
            cri("stdout", "java.lang.RuntimeException: boom"),
            cri("stdout", "\tat A.a(A.java:1)"),
            cri("stderr", "\tat looks like a frame but is stderr"),
            cri("stdout", "\tat B.b(B.java:2)"),
            cri("stdout", "INFO next"),
        ]
        p = stage()
        cols, _ = feed(p, lines)
        p.flush(cols)

        offs = offsets_of(lines)
        assert [
            "java.lang.RuntimeException: boom\n\tat A.a(A.java:1)\n\tat B.b(B.java:2)",
            "\tat looks like a frame but is stderr",
            "INFO next",
        ] == cols.messages
        assert [offs[0], offs[2], offs[4]] == cols.offsets
        assert ["stdout", "stderr", "stdout"] == cols.streams
        assert {0: ("multiline",)} == cols.flags

    def test_open_group_holds_the_checkpoint_and_what_follows(self) -> None:
        """Rows after an open group's first line wait (offset order), and
        `pending_offset` keeps the checkpoint at the group's first line."""
        lines = [
            cri("stdout", "INFO a"),
            cri("stdout", "ERROR order failed"),
            cri("stderr", "other stream"),
            cri("stdout", "java.lang.RuntimeException: boom"),
        ]
        offs = offsets_of(lines)
        p = stage()
        cols, _ = feed(p, lines)

        assert ["INFO a"] == cols.messages
        assert offs[1] == p.pending_offset

        more = [cri("stdout", "INFO b")]
        cols, _ = feed(p, more, offs[3] + len(lines[3]) + 1)

        # The trace is complete, but its last line lies after the first line of the
        # stderr group still open: emitting it would put the checkpoint where a restart
        # re-reads the trace's tail. It waits.
        assert [] == cols.messages
        assert offs[1] == p.pending_offset

        cols, _ = feed(p, [cri("stderr", "err b")], offs[3] + len(lines[3]) + len(more[0]) + 2)

        assert ["ERROR order failed\njava.lang.RuntimeException: boom", "other stream"] == (
            cols.messages
        )
        assert offs[3] + len(lines[3]) + 1 == p.pending_offset  # "INFO b" may grow

        p.flush(cols)

        assert ["INFO b", "err b"] == cols.messages[2:]
        assert p.pending_offset is None

    def test_emitted_rows_all_lie_before_the_checkpoint(self) -> None:
        """Whatever is emitted ends before `pending_offset`, and nothing after it is:
        a restart that re-reads from there repeats and loses nothing."""
        lines = [
            cri("stdout", "ERROR a"),
            cri("stderr", "e1"),
            cri("stdout", "java.lang.RuntimeException: boom"),
            cri("stdout", "\tat A"),
            cri("stderr", "e2"),
            cri("stdout", "INFO c"),
        ]
        offs = offsets_of(lines)
        for n in range(1, len(lines) + 1):
            p = stage()
            cols, _ = feed(p, lines[:n])
            pending = p.pending_offset
            emitted_lines = sum(m.count("\n") + 1 for m in cols.messages)
            before = sum(1 for o in offs[:n] if pending is None or o < pending)

            assert before == emitted_lines, n

    def test_joined_event_keeps_first_line_time_and_flags(self) -> None:
        lines = [
            cri("stdout", "java.lang.RuntimeException: boom", sec=1),
            cri("stdout", "\tat A.a(A.java:1)", sec=1),
        ]
        p = stage(timeout=5.0)
        cols, _ = feed(p, lines)
        p.flush(cols)

        assert [T0 + 1_000_000_001] == cols.times
        assert [b"2025-01-15T10:00:01.000000001Z"] == cols.tstrs

    def test_partial_lines_are_joined_before_multiline(self) -> None:
        """A CRI `P` line is one message with its `F` line, then a line of the trace."""
        lines = [
            cri("stdout", "java.lang.RuntimeException: ", tag="P"),
            cri("stdout", "boom"),
            cri("stdout", "\tat A.a(A.java:1)"),
        ]
        p = stage()
        cols, _ = feed(p, lines)
        p.flush(cols)

        assert ["java.lang.RuntimeException: boom\n\tat A.a(A.java:1)"] == cols.messages
        assert [0] == cols.offsets

    def test_max_lines_starts_a_new_event(self) -> None:
        lines = [cri("stdout", "java.lang.RuntimeException: boom")]
        lines += [cri("stdout", f"\tat A.a{i}(A.java:1)") for i in range(5)]
        p = stage(max_lines=3)
        cols, _ = feed(p, lines)
        p.flush(cols)

        assert [3, 3] == [m.count("\n") + 1 for m in cols.messages]

    def test_max_bytes_starts_a_new_event(self) -> None:
        lines = [cri("stdout", "java.lang.RuntimeException: boom")]
        lines += [cri("stdout", "\tat " + "x" * 40) for _ in range(4)]
        p = stage(max_bytes=100)
        cols, _ = feed(p, lines)
        p.flush(cols)

        assert all(len(m) + 1 <= 100 for m in cols.messages)
        assert 5 == sum(m.count("\n") + 1 for m in cols.messages)

    def test_a_line_written_after_the_timeout_starts_a_new_event(self) -> None:
        """The runtime's times decide, so a re-read splits at the same place."""
        lines = [
            cri("stdout", "java.lang.RuntimeException: boom", sec=0),
            cri("stdout", "\tat A.a(A.java:1)", sec=0),
            cri("stdout", "\tat B.b(B.java:2)", sec=5),
        ]
        p = stage(timeout=2.0)
        cols, _ = feed(p, lines)
        p.flush(cols)

        assert ["java.lang.RuntimeException: boom\n\tat A.a(A.java:1)", "\tat B.b(B.java:2)"] == (
            cols.messages
        )

    def test_expire_emits_a_group_that_stopped_growing(self) -> None:
        import time

        p = stage(timeout=1.0)
        lines = [cri("stdout", "java.lang.RuntimeException: boom"), cri("stdout", "\tat A")]
        cols, _ = feed(p, lines)
        later = time.monotonic() + 1.5
        assert [] == cols.messages

        assert not p.expire(cols, now_ns=T0 + 1_200_000_000, mono=later)  # within timeout+delay
        assert p.expire(cols, now_ns=T0 + 2_000_000_000, mono=later)
        assert ["java.lang.RuntimeException: boom\n\tat A"] == cols.messages
        assert p.pending_offset is None

    def test_expire_waits_while_the_group_grows(self) -> None:
        import time

        p = stage(timeout=1.0)
        cols, _ = feed(p, [cri("stdout", "java.lang.RuntimeException: boom")])

        assert not p.expire(cols, now_ns=T0 + 10**10, mono=time.monotonic())

    def test_many_rows_behind_an_open_group_end_it(self) -> None:
        """Memory is bounded: after `HOLD_MAX` rows of other streams the group is sent."""
        lines = [cri("stdout", "java.lang.RuntimeException: boom")]
        lines += [cri("stderr", f"line {i}") for i in range(HOLD_MAX + 10)]
        lines += [cri("stdout", "\tat A")]
        p = stage()
        cols, _ = feed(p, lines)
        p.flush(cols)

        assert "java.lang.RuntimeException: boom" == cols.messages[0]
        assert "\tat A" == cols.messages[-1]
        assert len(lines) == len(cols.messages)
        assert sorted(cols.offsets) == cols.offsets

    def test_same_groups_whatever_the_read_sizes(self) -> None:
        """Fed one line at a time or all at once: the same events (restarts rely on it)."""
        text = [
            cri("stdout", "INFO a"),
            cri("stdout", "java.lang.RuntimeException: boom"),
            cri("stderr", "err"),
            cri("stdout", "\tat A"),
            cri("stdout", "Caused by: java.io.IOException: x"),
            cri("stdout", "\t... 3 more"),
            cri("stdout", "INFO b"),
        ]
        whole = stage()
        a, _ = feed(whole, text)
        whole.flush(a)
        one = stage()
        b = Columns()
        off = 0
        for line in text:
            part, off = feed(one, [line], off)
            b.messages += part.messages
            b.offsets += part.offsets
        one.flush(b)

        assert (a.messages, a.offsets) == (b.messages, b.offsets)


class TestPatternRule:
    def rule(
        self, start: str | None = None, cont: str | None = None, end: str | None = None
    ) -> PatternRule:
        c = re.compile
        return PatternRule(
            c(start) if start else None, c(cont) if cont else None, c(end) if end else None
        )

    def run(self, rule: PatternRule, text: list[str]) -> list[str]:
        p = stage(rule)
        cols, _ = feed(p, [cri("stdout", t) for t in text])
        p.flush(cols)
        return cols.messages

    def test_start_pattern_lines_not_matching_continue(self) -> None:
        rule = self.rule(start=r"^\d{4}-")
        text = ["2025-01-15 a", "  more", "and more", "2025-01-15 b"]

        assert ["2025-01-15 a\n  more\nand more", "2025-01-15 b"] == self.run(rule, text)

    def test_continue_pattern_only_matching_lines_continue(self) -> None:
        rule = self.rule(cont=r"^\s")
        text = ["a", " b", "c", " d", " e"]

        assert ["a\n b", "c\n d\n e"] == self.run(rule, text)

    def test_negate_inverts_continue_pattern(self) -> None:
        rule = PatternRule(None, re.compile(r"^\["), None, negate=True)
        text = ["[1] a", "x", "y", "[2] b"]

        assert ["[1] a\nx\ny", "[2] b"] == self.run(rule, text)

    def test_end_pattern_ends_the_event(self) -> None:
        rule = self.rule(end=r";$")
        text = ["SELECT *", "FROM t;", "one;", "UPDATE", "x;"]

        assert ["SELECT *\nFROM t;", "one;", "UPDATE\nx;"] == self.run(rule, text)
