"""Split lines are joined per stream and leave in offset order (CRI and Docker)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from kubelogs.codecs import partials
from kubelogs.codecs.columns import Columns
from kubelogs.codecs.cri import CriParser
from kubelogs.codecs.docker_json import DockerJsonParser

T = "2021-02-15T10:00:00.123456789Z"


def cri(stream: str, tag: str, msg: str) -> bytes:
    return f"{T} {stream} {tag} {msg}".encode()


def docker(stream: str, tag: str, msg: str) -> bytes:
    return json.dumps(
        {"log": msg + ("\n" if tag == "F" else ""), "stream": stream, "time": T}
    ).encode()


def feed_all(parser: CriParser | DockerJsonParser, lines: list[bytes]) -> Columns:
    cols = Columns()
    parser.feed(lines, 0, cols)
    return cols


class TestInterleavedStreams:
    def test_cri_parts_are_joined_per_stream(self) -> None:
        """P(stdout), a complete stderr line, F(stdout): two events, each whole."""
        lines = [
            cri("stdout", "P", "part1-"),
            cri("stderr", "F", "an error line"),
            cri("stdout", "F", "part2"),
        ]

        cols = feed_all(CriParser(1024), lines)

        assert [("stdout", "part1-part2"), ("stderr", "an error line")] == list(
            zip(cols.streams, cols.messages, strict=True)
        )
        assert [0, len(lines[0]) + 1] == cols.offsets
        assert {} == cols.flags

    def test_docker_parts_are_joined_per_stream(self) -> None:
        lines = [
            docker("stdout", "P", "part1-"),
            docker("stderr", "F", "oops"),
            docker("stdout", "F", "part2"),
        ]

        cols = feed_all(DockerJsonParser(1024), lines)

        assert [("stdout", "part1-part2"), ("stderr", "oops")] == list(
            zip(cols.streams, cols.messages, strict=True)
        )
        assert [0, len(lines[0]) + 1] == cols.offsets

    def test_a_line_after_an_open_message_waits_for_it(self) -> None:
        """Across two reads: the stderr line is held (offset order) and the checkpoint
        stays at the open message's first part until it is complete."""
        parser = CriParser(1024)
        first = [cri("stdout", "P", "a"), cri("stderr", "F", "b")]
        cols = Columns()
        end = parser.feed(first, 0, cols)

        assert [] == cols.messages
        assert 0 == parser.pending_offset

        parser.feed([cri("stdout", "F", "c")], end, cols)

        assert ["ac", "b"] == cols.messages
        assert parser.pending_offset is None

    def test_held_lines_are_bounded(self, monkeypatch: object) -> None:
        """A message whose final part never comes does not hold the other stream for
        ever: past the bound it is emitted as it is, and its late end is its own event,
        both flagged partial."""
        import pytest

        mp = pytest.MonkeyPatch()
        mp.setattr(partials, "HOLD_MAX", 3)
        try:
            lines = [cri("stdout", "P", "head")] + [cri("stderr", "F", f"e{i}") for i in range(3)]
            lines.append(cri("stdout", "F", "tail"))
            cols = feed_all(CriParser(1024), lines)
        finally:
            mp.undo()

        assert ["head", "e0", "e1", "e2", "tail"] == cols.messages
        assert {0: ("partial",), 4: ("partial",)} == cols.flags

    def test_continued_stream_flags_the_first_event_of_that_stream(self) -> None:
        """After a rotation split a line, the new file's first event on that stream is
        flagged partial; the other stream's lines are not."""
        parser = CriParser(1024)
        parser.continue_streams({"stdout"})

        cols = feed_all(
            parser, [cri("stderr", "F", "x"), cri("stdout", "F", "rest"), cri("stdout", "F", "y")]
        )

        assert ["x", "rest", "y"] == cols.messages
        assert {1: ("partial",)} == cols.flags

    def test_flush_emits_open_messages_flagged_partial(self) -> None:
        parser = CriParser(1024)
        cols = feed_all(parser, [cri("stdout", "P", "never ended")])
        parser.flush(cols)

        assert ["never ended"] == cols.messages
        assert {0: ("partial",)} == cols.flags
        assert set() == parser.open_streams


_message = st.tuples(
    st.sampled_from(["stdout", "stderr"]),
    st.lists(st.text("abcxyz", min_size=1, max_size=5), min_size=1, max_size=4),
)


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(_message, min_size=1, max_size=12),
    order_seed=st.randoms(use_true_random=False),
    cuts=st.lists(st.integers(1, 6), min_size=1, max_size=10),
    fmt=st.sampled_from(["cri", "docker"]),
)
def test_any_interleaving_joins_each_message_once_in_offset_order(
    messages: list[tuple[str, list[str]]], order_seed: object, cuts: list[int], fmt: str
) -> None:
    """Messages of two streams split into parts, the parts of different streams
    interleaved at random (each stream's parts stay in order, as a runtime writes them),
    fed in random chunks: every message comes out once, whole, and offsets ascend; the
    pending offset never passes a byte that was not emitted."""
    import random

    rng: random.Random = order_seed  # type: ignore[assignment]
    queues: dict[str, list[list[bytes]]] = {"stdout": [], "stderr": []}
    make = cri if fmt == "cri" else docker
    for stream, parts in messages:
        queues[stream].append(
            [make(stream, "F" if i == len(parts) - 1 else "P", p) for i, p in enumerate(parts)]
        )
    flat = {s: [ln for m in q for ln in m] for s, q in queues.items()}
    lines: list[bytes] = []
    while flat["stdout"] or flat["stderr"]:
        s = rng.choice([k for k, v in flat.items() if v])
        lines.append(flat[s].pop(0))
    parser = CriParser(1 << 20) if fmt == "cri" else DockerJsonParser(1 << 20)
    cols = Columns()
    offset, i = 0, 0
    for n in [*cuts, len(lines)]:
        chunk = lines[i : i + n]
        i += n
        if not chunk:
            continue
        offset = parser.feed(chunk, offset, cols)
        pending = parser.pending_offset
        emitted_end = max(cols.offsets, default=-1)
        if pending is not None:
            assert pending > emitted_end or pending not in cols.offsets

    for stream in ("stdout", "stderr"):
        want = ["".join(parts) for s, parts in messages if s == stream]
        got = [m for m, s in zip(cols.messages, cols.streams, strict=True) if s == stream]
        assert want == got
    assert sorted(cols.offsets) == cols.offsets
    assert len(set(cols.offsets)) == len(cols.offsets)
    assert parser.pending_offset is None
