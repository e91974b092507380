"""`CriParser`: containerd / CRI-O log lines -> columns, with partial lines joined."""

from __future__ import annotations

import pytest

from kubelogs.codecs.columns import Columns
from kubelogs.codecs.cri import CriParser
from support.codec_columns import T1_NS, T2_NS, T3_NS, check_kept_whole_and_malformed, ns, rows

T1 = b"2021-02-15T10:00:00.123456789Z"
T2 = b"2021-02-15T10:00:01.5Z"
T3 = b"2021-02-15T10:00:02Z"


def parse(lines: list[bytes], max_size: int = 1024, offset: int = 0) -> tuple[Columns, int]:
    cols = Columns()
    end = CriParser(max_size).feed(lines, offset, cols)
    return cols, end


class TestFullLines:
    def test_full_line_becomes_one_event_with_runtime_time_stream_and_offset(self) -> None:
        """An `F` line is one event: its own time, stream, message and offset."""
        expected = [(T1_NS, "GET /healthz 200", "stdout", 0)]

        cols, _ = parse([T1 + b" stdout F GET /healthz 200"])

        assert expected == rows(cols)
        expected_flags = {}
        assert expected_flags == cols.flags

    def test_stderr_stream_is_kept(self) -> None:
        """Lines written to stderr say so."""
        expected = ["stderr", "stdout"]

        cols, _ = parse([T1 + b" stderr F oops", T2 + b" stdout F fine"])

        assert expected == cols.streams

    def test_each_line_gets_the_offset_of_its_first_byte(self) -> None:
        """Offsets advance by the line length plus its newline, from the given start."""
        lines = [T1 + b" stdout F a", T2 + b" stdout F bb", T3 + b" stderr F ccc"]
        start = 1000
        expected_offsets = [
            1000,
            1000 + len(lines[0]) + 1,
            1000 + len(lines[0]) + len(lines[1]) + 2,
        ]

        cols, _ = parse(lines, offset=start)

        assert expected_offsets == cols.offsets
        expected_times = [T1_NS, T2_NS, T3_NS]
        assert expected_times == cols.times

    def test_feed_returns_the_offset_after_the_last_newline(self) -> None:
        """The returned offset is where the next read continues."""
        lines = [T1 + b" stdout F a", b"garbage", T2 + b" stdout P part"]
        expected = 500 + sum(len(line) + 1 for line in lines)

        _, actual = parse(lines, offset=500)

        assert expected == actual

    def test_spaces_inside_the_message_are_kept(self) -> None:
        """Only the first three spaces separate fields; the message keeps the rest."""
        expected = ["  two leading, double  inside, trailing "]

        cols, _ = parse([T1 + b" stdout F   two leading, double  inside, trailing "])

        assert expected == cols.messages

    @pytest.mark.parametrize("line", [T1 + b" stdout F ", T1 + b" stdout F"])
    def test_empty_message_is_an_empty_event(self, line: bytes) -> None:
        """`ts stdout F ` and `ts stdout F` are valid lines with an empty message."""
        expected = [(T1_NS, "", "stdout", 0)]

        cols, _ = parse([line])

        assert expected == rows(cols)
        expected_flags = {}
        assert expected_flags == cols.flags

    def test_tags_after_the_f_are_accepted(self) -> None:
        """`F:tag` is still a full line (tags follow a colon)."""
        expected = [(T1_NS, "msg", "stdout", 0)]

        cols, _ = parse([T1 + b" stdout F:x msg"])

        assert expected == rows(cols)

    def test_numeric_offset_time_is_converted_to_utc(self) -> None:
        """CRI-O's `+02:00` offsets are honoured."""
        expected = [ns("2021-02-15T08:00:00.5")]

        cols, _ = parse([b"2021-02-15T10:00:00.5+02:00 stdout F hi"])

        assert expected == cols.times

    def test_invalid_utf8_becomes_replacement_characters(self) -> None:
        """Bytes that are not UTF-8 become U+FFFD, as errors="replace" does."""
        expected = ["a\ufffd\ufffdb"]

        cols, _ = parse([T1 + b" stdout F a\xff\xfeb"])

        assert expected == cols.messages


class TestPartialLines:
    def test_partials_are_joined_with_the_time_and_offset_of_the_first_part(self) -> None:
        """P, P, F is one event: concatenated message, first part's time and offset."""
        lines = [T1 + b" stdout P first-", T2 + b" stdout P second-", T3 + b" stdout F third"]
        expected = [(T1_NS, "first-second-third", "stdout", 100)]

        cols, _ = parse(lines, offset=100)

        assert expected == rows(cols)
        expected_flags = {}
        assert expected_flags == cols.flags

    def test_lines_after_a_joined_message_are_independent(self) -> None:
        """After the F of a partial sequence, the next F line is its own event."""
        lines = [T1 + b" stdout P a", T2 + b" stdout F b", T3 + b" stderr F c"]
        second_offset = len(lines[0]) + len(lines[1]) + 2
        expected = [(T1_NS, "ab", "stdout", 0), (T3_NS, "c", "stderr", second_offset)]

        cols, _ = parse(lines)

        assert expected == rows(cols)

    def test_pending_offset_is_none_without_a_partial(self) -> None:
        """A parser that saw only full lines does not hold the checkpoint back."""
        parser = CriParser(1024)
        parser.feed([T1 + b" stdout F a"], 0, Columns())

        assert parser.pending_offset is None

    def test_pending_offset_is_the_first_part_until_the_final_part_arrives(self) -> None:
        """While a partial is incomplete the checkpoint must stay at its first byte."""
        parser = CriParser(1024)
        cols = Columns()
        first = T1 + b" stdout F done"
        p1 = T2 + b" stdout P one"
        start = 40 + len(first) + 1

        end1 = parser.feed([first, p1], 40, cols)
        after_first_part = parser.pending_offset
        end2 = parser.feed([T2 + b" stdout P two"], end1, cols)
        after_second_part = parser.pending_offset
        parser.feed([T3 + b" stdout F three"], end2, cols)

        assert start == after_first_part
        assert start == after_second_part
        assert parser.pending_offset is None
        assert [(T1_NS, "done", "stdout", 40), (T2_NS, "onetwothree", "stdout", start)] == rows(
            cols
        )

    def test_partial_sequence_spanning_feed_calls_emits_nothing_until_final(self) -> None:
        """Incomplete partials produce no event yet."""
        parser = CriParser(1024)
        cols = Columns()

        parser.feed([T1 + b" stdout P a"], 0, cols)

        expected_count = 0
        assert expected_count == len(cols)

    def test_a_character_split_across_parts_is_decoded_whole(self) -> None:
        """Parts are joined as bytes before decoding, so a split UTF-8 character survives."""
        euro = "€".encode()
        lines = [T1 + b" stdout P x" + euro[:1], T2 + b" stdout F " + euro[1:] + b"y"]
        expected = ["x€y"]

        cols, _ = parse(lines)

        assert expected == cols.messages

    def test_partial_tag_with_suffix_is_a_partial(self) -> None:
        """`P:tag` is a partial part like `P`."""
        expected = [(T1_NS, "ab", "stdout", 0)]

        cols, _ = parse([T1 + b" stdout P:x a", T2 + b" stdout F b"])

        assert expected == rows(cols)

    def test_flush_emits_an_unfinished_partial(self) -> None:
        """When the file ended for good, the parts seen so far become an event."""
        parser = CriParser(1024)
        cols = Columns()
        parser.feed([T1 + b" stderr P a", T2 + b" stderr P b"], 7, cols)

        parser.flush(cols)

        expected_rows = [(T1_NS, "ab", "stderr", 7)]
        assert expected_rows == rows(cols)
        assert parser.pending_offset is None

    def test_flush_without_a_partial_emits_nothing(self) -> None:
        """Flushing an idle parser adds no event."""
        parser = CriParser(1024)
        cols = Columns()
        parser.feed([T1 + b" stdout F a"], 0, cols)

        parser.flush(cols)

        expected_count = 1
        assert expected_count == len(cols)

    def test_reset_forgets_a_pending_partial(self) -> None:
        """After `reset` (file read again from 0) the old parts are gone."""
        parser = CriParser(1024)
        cols = Columns()
        parser.feed([T1 + b" stdout P stale"], 0, cols)

        parser.reset()
        parser.feed([T2 + b" stdout F fresh"], 0, cols)

        expected_rows = [(T2_NS, "fresh", "stdout", 0)]
        assert expected_rows == rows(cols)
        assert parser.pending_offset is None


class TestTruncation:
    def test_full_line_longer_than_max_size_is_cut_and_flagged(self) -> None:
        """A message over the cap keeps its first `max_size` bytes and is flagged."""
        expected = (["0123456789"], {0: ("truncated",)})

        cols, _ = parse([T1 + b" stdout F 0123456789abcdef"], max_size=10)

        assert expected == (cols.messages, cols.flags)

    def test_full_line_of_exactly_max_size_is_not_flagged(self) -> None:
        """A message that fits exactly is whole and unflagged."""
        expected = (["0123456789"], {})

        cols, _ = parse([T1 + b" stdout F 0123456789"], max_size=10)

        assert expected == (cols.messages, cols.flags)

    def test_joined_message_is_capped_and_the_rest_of_its_parts_dropped(self) -> None:
        """The joined message stops at `max_size`, remaining parts are consumed."""
        lines = [
            T1 + b" stdout P 012345",
            T2 + b" stdout P 6789ab",
            T2 + b" stdout P cdef",
            T3 + b" stdout F ghij",
            T3 + b" stdout F next",
        ]
        next_offset = sum(len(line) + 1 for line in lines[:4])
        expected_rows = [(T1_NS, "0123456789", "stdout", 0), (T3_NS, "next", "stdout", next_offset)]

        cols, _ = parse(lines, max_size=10)

        assert expected_rows == rows(cols)
        expected_flags = {0: ("truncated",)}
        assert expected_flags == cols.flags

    def test_joined_message_of_exactly_max_size_is_not_flagged(self) -> None:
        """Parts that add up to exactly the cap are not truncated."""
        expected = (["0123456789"], {})

        cols, _ = parse([T1 + b" stdout P 01234", T2 + b" stdout F 56789"], max_size=10)

        assert expected == (cols.messages, cols.flags)

    def test_truncated_argument_flags_a_full_line(self) -> None:
        """A line the tailer cut at its line cap is flagged even when it fits."""
        parser = CriParser(1024)
        cols = Columns()

        parser.feed([T1 + b" stdout F cut here"], 0, cols, truncated=True)

        expected_rows = [(T1_NS, "cut here", "stdout", 0)]
        assert expected_rows == rows(cols)
        expected_flags = {0: ("truncated",)}
        assert expected_flags == cols.flags

    def test_truncated_argument_flags_the_joined_message_of_its_part(self) -> None:
        """A cut partial part marks the whole joined message truncated."""
        parser = CriParser(1024)
        cols = Columns()
        first = T1 + b" stdout P head"

        end = parser.feed([first], 0, cols, truncated=True)
        parser.feed([T2 + b" stdout F tail"], end, cols)

        expected_rows = [(T1_NS, "headtail", "stdout", 0)]
        assert expected_rows == rows(cols)
        expected_flags = {0: ("truncated",)}
        assert expected_flags == cols.flags

    def test_truncation_state_does_not_leak_into_the_next_joined_message(self) -> None:
        """After a truncated joined message, the next one starts clean."""
        lines = [
            T1 + b" stdout P 0123456789",
            T1 + b" stdout F abc",
            T2 + b" stdout P x",
            T2 + b" stdout F y",
        ]

        cols, _ = parse(lines, max_size=10)

        expected_messages = ["0123456789", "xy"]
        assert expected_messages == cols.messages
        expected_flags = {0: ("truncated",)}
        assert expected_flags == cols.flags


class TestMalformedLines:
    @pytest.mark.parametrize(
        "line",
        [
            b"plain text without structure",
            T1 + b" stdout",
            T1 + b" stdin F wrong stream",
            T1 + b" stdout X unknown tag",
            b"2021-02-15T25:00:00Z stdout F bad hour",
            b"not-a-time stdout F message",
            b'{"log":"docker json\\n","stream":"stdout","time":"2021-02-15T10:00:00Z"}',
        ],
    )
    def test_non_cri_line_is_kept_whole_and_flagged_malformed(self, line: bytes) -> None:
        """A line that is not CRI is the message, stream empty, read time, `malformed`."""
        check_kept_whole_and_malformed(parse, line, offset=33)

    def test_malformed_line_ends_a_pending_partial(self) -> None:
        """A broken line emits the parts before it (flagged partial: their F never came),
        then itself; nothing stays pending."""
        parser = CriParser(1024)
        cols = Columns()
        p1 = T1 + b" stdout P one-"
        p2 = T2 + b" stdout P two"
        bad_offset = len(p1) + len(p2) + 2

        parser.feed([p1, p2, b"garbage here", T3 + b" stdout F after"], 0, cols)

        expected_messages = ["one-two", "garbage here", "after"]
        assert expected_messages == cols.messages
        assert [0, bad_offset, bad_offset + len(b"garbage here") + 1] == cols.offsets
        expected = [T1_NS, T3_NS]
        assert expected == [cols.times[0], cols.times[2]]
        expected_flags = {0: ("partial",), 1: ("malformed",)}
        assert expected_flags == cols.flags
        assert parser.pending_offset is None

    def test_malformed_line_longer_than_max_size_is_cut_and_flagged_both(self) -> None:
        """A long broken line keeps `max_size` bytes and carries both flags."""
        expected = (["0123456789"], {0: {"truncated", "malformed"}})

        cols, _ = parse([b"0123456789abcdefghij"], max_size=10)

        assert expected == (cols.messages, {row: set(f) for row, f in cols.flags.items()})

    def test_malformed_line_with_invalid_utf8_uses_replacement_characters(self) -> None:
        """Binary garbage is kept with U+FFFD, never an exception."""
        expected = ["\ufffd\x00\ufffdok"]

        cols, _ = parse([b"\xff\x00\xfeok"])

        assert expected == cols.messages
