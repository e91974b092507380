"""The columnar block: every column comes back exactly, and damage is detected."""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubelogs.store.block import BlockBuilder, DecodedBlock, Piece, Runs
from kubelogs.store.group import WriteGroup
from kubelogs.store.numbers import deltas, shuffle, unshuffle
from kubelogs.store.segments import BlockCorrupt
from kubelogs.store.writer import _stretches

INT64 = st.integers(-(2**63), 2**63 - 1)
MESSAGES = st.text(
    st.sampled_from([*'ab Z\n\r\t"\\é', "\ud800", "\U0001f600", "Σ", "\x00"]) | st.characters(),
    max_size=20,
)


def build(groups: list[WriteGroup]) -> DecodedBlock:
    builder = BlockBuilder()
    for g in groups:
        messages = g.messages or []
        builder.add(Piece(g, messages, 0, len(g.offsets), Runs([1], ["stdout"], [len(g.offsets)])))
    encoded = builder.finish()
    return DecodedBlock(encoded.text, encoded.data, "ecs")


@given(st.lists(INT64, max_size=50))
def test_integer_columns_round_trip(values: list[int]) -> None:
    column = array("q", values)
    assert values == unshuffle(shuffle(column)).tolist()


def test_deltas_that_overflow_raise() -> None:
    with pytest.raises(OverflowError):
        deltas([-(2**63), 2**63 - 1])


@given(
    st.lists(st.tuples(MESSAGES, INT64, INT64), min_size=1, max_size=40),
)
def test_events_come_back_exactly(rows: list[tuple[str, int, int]]) -> None:
    """Messages with newlines, surrogates and NULs; any times and offsets, including
    ones whose differences overflow 64 bits (stored plain then)."""
    messages = [m for m, _, _ in rows]
    times = [t for _, t, _ in rows]
    offsets = [o for _, _, o in rows]
    block = build([WriteGroup("k", offsets, times, messages=messages, path="/p", meta=b"")])

    assert messages == block.messages()
    assert times == block.times
    assert offsets == block.offsets()
    assert block.rows == len(rows)


def test_documents_are_rendered_for_few_rows_or_all_alike() -> None:
    n = 100
    group = WriteGroup(
        "k",
        list(range(0, 10 * n, 10)),
        list(range(n)),
        messages=[f"line {i}\nmore" for i in range(n)],
        path="/var/log/x.log",
        meta=b'"host":{"name":"n1"}',
        flags={3: ("truncated",)},
        fields={3: {"level": "warn"}, 50: {"user": {"id": 7}}},
    )
    one = build([group]).docs([3, 50])
    every = build([group]).all_docs()

    assert [every[3], every[50]] == one
    assert b'"flags":["truncated"]' in one[0]
    assert b'"level":"warn"' in one[0]
    assert b'"message":"line 3\\nmore"' in one[0]
    assert b'"offset":30,' in one[0]
    assert b'"user":{"id":7}' in one[1]


def test_documents_groups_keep_their_documents() -> None:
    docs = [b'{"message":"a"}', b"not json", b'{"x":\n1}']
    block = build(
        [
            WriteGroup("k", [1, 2, 3], [1, 2, 3], docs, messages=["a", "", ""]),
            WriteGroup("j", [0], [5], messages=["e"], path="/e", meta=b""),
        ]
    )

    assert docs == block.all_docs()[:3]
    assert [docs[1]] == block.docs([1])
    assert block.all_docs()[3].startswith(b'{"@timestamp":')


def test_damage_is_detected() -> None:
    builder = BlockBuilder()
    group = WriteGroup("k", [0, 1], [0, 1], messages=["a", "b"], path="/p", meta=b"")
    builder.add(Piece(group, ["a", "b"], 0, 2, Runs([1], [""], [2])))
    encoded = builder.finish()

    with pytest.raises(BlockCorrupt, match="one line per row"):
        DecodedBlock(b"a\nb\nc", encoded.data, "ecs")
    with pytest.raises(BlockCorrupt, match="does not decode"):
        DecodedBlock(encoded.text, encoded.data[:-3], "ecs")


@given(st.lists(st.sampled_from(["stdout", "stderr", ""]), min_size=1, max_size=60), st.data())
def test_runs_of_streams_split_anywhere(streams: list[str], data: st.DataObject) -> None:
    """Runs found by `_stretches` describe the streams exactly, their label totals add
    up, and a split at any row gives the runs of both halves."""
    ids = {s: i + 1 for i, s in enumerate(dict.fromkeys(streams))}
    runs = _stretches(streams, ids)

    expanded = [s for s, n in zip(runs.streams, runs.rows, strict=True) for _ in range(n)]
    assert streams == expanded
    assert [ids[s] for s in runs.streams] == runs.label_sets
    assert {ids[s]: streams.count(s) for s in ids} == runs.per_label()
    if len(streams) > 1:
        k = data.draw(st.integers(1, len(streams) - 1))
        head, tail = runs.split(k)
        assert streams[:k] == [
            s for s, n in zip(head.streams, head.rows, strict=True) for _ in range(n)
        ]
        assert streams[k:] == [
            s for s, n in zip(tail.streams, tail.rows, strict=True) for _ in range(n)
        ]
        assert all(n > 0 for n in head.rows + tail.rows)
