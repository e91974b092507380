"""`PlainParser`: plain line-oriented files (kubelet, kube-proxy) -> columns."""

from __future__ import annotations

import time

from kubelogs.codecs.columns import Columns
from kubelogs.codecs.plain import PlainParser


def parse(
    lines: list[bytes], max_size: int = 1024, offset: int = 0, truncated: bool = False
) -> tuple[Columns, int]:
    cols = Columns()
    end = PlainParser(max_size).feed(lines, offset, cols, truncated=truncated)
    return cols, end


class TestPlainParser:
    def test_each_line_is_one_event_with_its_offset_and_no_stream(self) -> None:
        """Every line is a message; stream is empty; offsets are each line's first byte."""
        expected = (["I0215 kubelet started", "W0215 probe failed"], ["", ""], [50, 72])

        cols, end = parse([b"I0215 kubelet started", b"W0215 probe failed"], offset=50)

        assert expected == (cols.messages, cols.streams, cols.offsets)
        expected_end = 50 + 22 + 19
        assert expected_end == end
        expected_flags = {}
        assert expected_flags == cols.flags

    def test_time_is_the_time_the_lines_were_read(self) -> None:
        """Plain lines carry no runtime time: every line of one read gets the read time."""
        before = time.time_ns()

        cols, _ = parse([b"a", b"b"])

        after = time.time_ns()
        assert cols.times[0] == cols.times[1]
        assert before <= cols.times[0] <= after

    def test_crlf_line_ending_loses_its_carriage_return(self) -> None:
        """A Windows line ending leaves no `\\r` in the message."""
        expected = ["one", "two\rinside"]

        cols, _ = parse([b"one\r", b"two\rinside"])

        assert expected == cols.messages

    def test_blank_lines_are_skipped_and_later_offsets_stay_right(self) -> None:
        """Empty and CR-only lines make no event but still count their bytes."""
        lines = [b"a", b"", b"\r", b"b", b"", b"c\r"]
        expected = (["a", "b", "c"], [100, 100 + 2 + 1 + 2, 100 + 2 + 1 + 2 + 2 + 1])

        cols, end = parse(lines, offset=100)

        assert expected == (cols.messages, cols.offsets)
        assert 100 + sum(len(x) + 1 for x in lines) == end

    def test_line_longer_than_max_size_is_cut_and_flagged(self) -> None:
        """A long line keeps `max_size` bytes and is flagged `truncated`."""
        expected = (["0123456789", "short"], {0: ("truncated",)})

        cols, _ = parse([b"0123456789abcdef", b"short"], max_size=10)

        assert expected == (cols.messages, cols.flags)

    def test_line_of_exactly_max_size_is_not_flagged(self) -> None:
        """A line that fits exactly is whole and unflagged."""
        expected = (["0123456789"], {})

        cols, _ = parse([b"0123456789"], max_size=10)

        assert expected == (cols.messages, cols.flags)

    def test_carriage_return_does_not_count_towards_the_cap(self) -> None:
        """The cap applies to the message after the `\\r` is removed."""
        expected = (["0123456789"], {})

        cols, _ = parse([b"0123456789\r"], max_size=10)

        assert expected == (cols.messages, cols.flags)

    def test_truncated_argument_flags_a_line_the_tailer_cut(self) -> None:
        """A line cut by the tailer is flagged even when it fits."""
        expected = (["cut"], {0: ("truncated",)})

        cols, _ = parse([b"cut"], truncated=True)

        assert expected == (cols.messages, cols.flags)

    def test_invalid_utf8_becomes_replacement_characters(self) -> None:
        """Bytes that are not UTF-8 become U+FFFD."""
        expected = ["x\ufffdy"]

        cols, _ = parse([b"x\xffy"])

        assert expected == cols.messages

    def test_parser_has_no_partial_state(self) -> None:
        """Plain files never hold a checkpoint back, and flush adds nothing."""
        parser = PlainParser(10)
        cols = Columns()
        parser.feed([b"a"], 0, cols)

        parser.flush(cols)

        assert parser.pending_offset is None
        expected_messages = ["a"]
        assert expected_messages == cols.messages
