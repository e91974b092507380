"""`DockerJsonParser`: Docker json-file lines -> columns, with 16 KiB chunks joined."""

from __future__ import annotations

import json
import time

import pytest

from kubelogs.codecs.columns import Columns
from kubelogs.codecs.docker_json import DockerJsonParser
from support.codec_columns import T1_NS, T2_NS, T3_NS, check_kept_whole_and_malformed, rows

T1 = "2021-02-15T10:00:00.123456789Z"
T2 = "2021-02-15T10:00:01.5Z"
T3 = "2021-02-15T10:00:02Z"


def line(log: str, stream: str = "stdout", t: str = T1) -> bytes:
    """One json-file line as dockerd writes it."""
    return json.dumps(
        {"log": log, "stream": stream, "time": t}, separators=(",", ":"), ensure_ascii=False
    ).encode()


def parse(lines: list[bytes], max_size: int = 1024, offset: int = 0) -> tuple[Columns, int]:
    cols = Columns()
    end = DockerJsonParser(max_size).feed(lines, offset, cols)
    return cols, end


class TestCompleteLines:
    def test_line_becomes_one_event_without_its_trailing_newline(self) -> None:
        """`log` minus its final newline is the message, with the line's time and stream."""
        expected = [(T1_NS, "GET /healthz 200", "stdout", 0)]

        cols, _ = parse([line("GET /healthz 200\n")])

        assert expected == rows(cols)
        expected_flags = {}
        assert expected_flags == cols.flags

    def test_stderr_stream_is_kept(self) -> None:
        """Lines written to stderr say so."""
        expected = ["stderr", "stdout"]

        cols, _ = parse([line("e\n", "stderr"), line("o\n", "stdout", T2)])

        assert expected == cols.streams

    def test_each_line_gets_the_offset_of_its_first_byte(self) -> None:
        """Offsets advance by the line length plus its newline."""
        lines = [line("a\n"), line("bb\n", t=T2), line("ccc\n", t=T3)]
        expected = [10, 10 + len(lines[0]) + 1, 10 + len(lines[0]) + len(lines[1]) + 2]

        cols, end = parse(lines, offset=10)

        assert expected == cols.offsets
        expected_times = [T1_NS, T2_NS, T3_NS]
        assert expected_times == cols.times
        assert 10 + sum(len(x) + 1 for x in lines) == end

    def test_json_escapes_are_decoded(self) -> None:
        """Quotes, tabs, backslashes and \\u escapes come out as the characters."""
        expected = ['say "hi"\tto \\ café \x00']

        cols, _ = parse([line('say "hi"\tto \\ café \x00\n')])

        assert expected == cols.messages

    def test_newline_only_log_is_an_empty_message(self) -> None:
        """An empty line printed by the app is an empty event."""
        expected = [(T1_NS, "", "stdout", 0)]

        cols, _ = parse([line("\n")])

        assert expected == rows(cols)

    def test_invalid_utf8_inside_the_json_string_becomes_replacement_characters(self) -> None:
        """Invalid UTF-8 in `log` is replaced by U+FFFD; the line is not malformed."""
        raw = b'{"log":"a\xff\xfeb\\n","stream":"stdout","time":"' + T1.encode() + b'"}'
        expected = [(T1_NS, "a\ufffd\ufffdb", "stdout", 0)]

        cols, _ = parse([raw])

        assert expected == rows(cols)
        expected_flags = {}
        assert expected_flags == cols.flags


class TestChunkedLines:
    def test_chunks_without_trailing_newline_are_joined(self) -> None:
        """Docker's 16 KiB pieces become one event with the first piece's time and offset."""
        lines = [line("first-"), line("second-", t=T2), line("third\n", t=T3)]
        expected = [(T1_NS, "first-second-third", "stdout", 70)]

        cols, _ = parse(lines, offset=70)

        assert expected == rows(cols)
        expected_flags = {}
        assert expected_flags == cols.flags

    def test_pending_offset_holds_the_first_chunk_until_the_last(self) -> None:
        """While a message is incomplete the checkpoint stays at its first chunk."""
        parser = DockerJsonParser(1024)
        cols = Columns()
        done = line("done\n")
        start = len(done) + 1

        end1 = parser.feed([done, line("one")], 0, cols)
        after_first = parser.pending_offset
        end2 = parser.feed([line("two", t=T2)], end1, cols)
        after_second = parser.pending_offset
        parser.feed([line("three\n", t=T3)], end2, cols)

        assert (start, start) == (after_first, after_second)
        assert parser.pending_offset is None
        assert [(T1_NS, "done", "stdout", 0), (T1_NS, "onetwothree", "stdout", start)] == rows(cols)

    def test_pending_offset_is_none_without_a_chunk(self) -> None:
        """Complete lines do not hold the checkpoint back."""
        parser = DockerJsonParser(1024)
        parser.feed([line("x\n")], 0, Columns())

        assert parser.pending_offset is None

    def test_flush_emits_the_unfinished_chunks(self) -> None:
        """When the file ended for good, the chunks so far become an event."""
        parser = DockerJsonParser(1024)
        cols = Columns()
        parser.feed([line("a", "stderr"), line("b", "stderr", T2)], 5, cols)

        parser.flush(cols)

        expected_rows = [(T1_NS, "ab", "stderr", 5)]
        assert expected_rows == rows(cols)
        assert parser.pending_offset is None


class TestTruncation:
    def test_line_longer_than_max_size_is_cut_and_flagged(self) -> None:
        """A long message keeps its first `max_size` bytes and is flagged."""
        expected = (["0123456789"], {0: ("truncated",)})

        cols, _ = parse([line("0123456789abcdef\n")], max_size=10)

        assert expected == (cols.messages, cols.flags)

    def test_line_of_exactly_max_size_is_not_flagged(self) -> None:
        """A message that fits exactly is whole and unflagged."""
        expected = (["0123456789"], {})

        cols, _ = parse([line("0123456789\n")], max_size=10)

        assert expected == (cols.messages, cols.flags)

    def test_max_size_counts_bytes_not_characters(self) -> None:
        """`max_line_size` is a byte count: ten 2-byte characters exceed a 10-byte cap."""
        expected = (["ééééé"], {0: ("truncated",)})

        cols, _ = parse([line("éééééééééé\n")], max_size=10)

        assert expected == (cols.messages, cols.flags)

    def test_joined_chunks_are_capped_and_the_rest_dropped(self) -> None:
        """The joined message stops at `max_size`; later chunks of it are consumed."""
        lines = [line("012345"), line("6789ab"), line("cdef\n"), line("next\n", t=T3)]
        next_offset = sum(len(x) + 1 for x in lines[:3])
        expected = [(T1_NS, "0123456789", "stdout", 0), (T3_NS, "next", "stdout", next_offset)]

        cols, _ = parse(lines, max_size=10)

        assert expected == rows(cols)
        expected_flags = {0: ("truncated",)}
        assert expected_flags == cols.flags

    def test_truncated_argument_keeps_the_cut_line_as_malformed_and_truncated(self) -> None:
        """A line cut by the tailer is no longer JSON: kept raw, flagged both ways."""
        cut = line("a very long message")[:20]
        before = time.time_ns()

        cols = Columns()
        DockerJsonParser(1024).feed([cut], 3, cols, truncated=True)

        after = time.time_ns()
        assert [(cut.decode(), "", 3)] == list(
            zip(cols.messages, cols.streams, cols.offsets, strict=True)
        )
        assert {0: {"malformed", "truncated"}} == {r: set(f) for r, f in cols.flags.items()}
        assert before <= cols.times[0] <= after


class TestMalformedLines:
    @pytest.mark.parametrize(
        "raw",
        [
            b"not json at all",
            b'{"log":"unterminated',
            b"[1, 2, 3]",
            b'{"stream":"stdout","time":"2021-02-15T10:00:00Z"}',
            b'{"log":"no time\\n","stream":"stdout"}',
            b'{"log":"bad time\\n","stream":"stdout","time":"yesterday"}',
            b'{"log":5,"stream":"stdout","time":"2021-02-15T10:00:00Z"}',
            b"2021-02-15T10:00:00Z stdout F a cri line",
        ],
    )
    def test_line_that_is_not_docker_json_is_kept_whole_and_flagged(self, raw: bytes) -> None:
        """Bad JSON, a missing `log` or `time`, or a bad time: raw line, `malformed`."""
        check_kept_whole_and_malformed(parse, raw, offset=9)

    def test_malformed_line_ends_pending_chunks(self) -> None:
        """A broken line emits the chunks before it (flagged partial), then itself."""
        parser = DockerJsonParser(1024)
        cols = Columns()
        c1, c2 = line("one-"), line("two", t=T2)
        bad_offset = len(c1) + len(c2) + 2

        parser.feed([c1, c2, b"garbage", line("after\n", t=T3)], 0, cols)

        expected_messages = ["one-two", "garbage", "after"]
        assert expected_messages == cols.messages
        assert [0, bad_offset, bad_offset + len(b"garbage") + 1] == cols.offsets
        expected_flags = {0: ("partial",), 1: ("malformed",)}
        assert expected_flags == cols.flags
        assert parser.pending_offset is None

    def test_long_malformed_line_is_cut_and_flagged_both(self) -> None:
        """A broken line over the cap keeps `max_size` bytes with both flags."""
        expected = ["0123456789"]

        cols, _ = parse([b"0123456789abcdefghij"], max_size=10)

        assert expected == cols.messages
        assert {0: {"malformed", "truncated"}} == {r: set(f) for r, f in cols.flags.items()}

    def test_binary_garbage_is_kept_with_replacement_characters(self) -> None:
        """Non-UTF-8 bytes outside JSON are kept with U+FFFD, never an exception."""
        expected = (["\ufffd\ufffdzz"], {0: ("malformed",)})

        cols, _ = parse([b"\xff\xfezz"])

        assert expected == (cols.messages, cols.flags)
