"""`Batch.select`: the kept rows keep their columns, flags and fields, renumbered."""

from __future__ import annotations

from kubelogs.pipeline.event import Batch, FileContext


def _batch() -> Batch:
    ctx = FileContext(source_id="s", path="/p", file_key="k", id_prefix="x")
    return Batch(
        ctx=ctx,
        times=[10, 20, 30, 40],
        messages=["a", "b", "c", "d"],
        streams=["stdout", "stderr", "stdout", "stderr"],
        offsets=[0, 2, 4, 6],
        flags={1: ("partial",), 3: ("truncated",)},
        fields={0: {"k": 0}, 3: {"k": 3}},
        tstrs=[b"t10", b"t20", b"t30", b"t40"],
        end_offset=8,
    )


def test_select_renumbers_sparse_rows_and_keeps_the_rest() -> None:
    b = _batch().select([1, 3])

    assert (b.times, b.messages, b.streams, b.offsets) == (
        [20, 40],
        ["b", "d"],
        ["stderr", "stderr"],
        [2, 6],
    )
    assert b.flags == {0: ("partial",), 1: ("truncated",)}
    assert b.fields == {1: {"k": 3}}
    assert b.tstrs == [b"t20", b"t40"]
    assert b.end_offset == 8
    assert b.event_id(1) == "x-6"


def test_select_without_sparse_rows_gives_none() -> None:
    b = _batch().select([2])

    assert b.flags is None
    assert b.fields is None
    assert b.messages == ["c"]


def test_select_of_every_row_is_the_same_batch() -> None:
    b = _batch()

    assert b.select([0, 1, 2, 3]) is b
