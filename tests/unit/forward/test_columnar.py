"""The kubelogs -> kubelogs columnar entry: a round trip keeps the batch exactly, and a
malformed one is a ProtocolError, never a crash."""

from __future__ import annotations

from array import array
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubelogs.codecs.document import encode_documents
from kubelogs.codecs.records import file_key_for_prefix
from kubelogs.forward.columnar import KEY, decode_batch, encode_batch
from kubelogs.forward.protocol import ProtocolError, new_unpacker
from support.store_docs import make_batches


def unpack(entry: bytes) -> dict[str, Any]:
    u = new_unpacker(1 << 24)
    u.feed(entry)
    _, record = next(u)
    assert isinstance(record, dict)
    return record


def test_round_trip_gives_the_same_documents_and_ids() -> None:
    for b in make_batches(lines=300, per_batch=100):
        b = b.derive(flags={0: ("truncated",)}, streams=["stdout", *["stderr"] * (len(b) - 1)])
        got = decode_batch(unpack(encode_batch(b)), "agg")

        assert encode_documents(b) == encode_documents(got)
        assert [b.event_id(i) for i in range(len(b))] == [got.event_id(i) for i in range(len(b))]
        assert file_key_for_prefix(b.ctx.id_prefix) == got.ctx.file_key
        assert "agg" == got.ctx.source_id


def good() -> dict[str, Any]:
    return unpack(encode_batch(make_batches(lines=5, per_batch=5, containers=1)[0]))


@pytest.mark.parametrize(
    ("change", "what"),
    [
        (lambda c: c.update(v=2), "version"),
        (lambda c: c.update(ctx=[1]), "file context"),
        (lambda c: c.update(messages=[1, 2, 3, 4, 5]), "messages"),
        (lambda c: c.update(times=b"\x00" * 3), "times"),
        (lambda c: c.update(offsets=array("q", [5, 4, 3, 2, 1]).tobytes()), "ascending"),
        (lambda c: c.update(streams=["a"]), "streams"),
        (lambda c: c.update(flags={99: ["x"]}), "flags"),
        (lambda c: c.update(fields={0: "x"}), "fields"),
        (lambda c: c.update(tstrs=[1]), "timestamps"),
    ],
)
def test_malformed_batches_are_protocol_errors(change: Any, what: str) -> None:
    rec = good()
    change(rec[KEY])

    with pytest.raises(ProtocolError, match=what):
        decode_batch(rec, "agg")


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            ["v", "ctx", "messages", "times", "offsets", "streams", "flags", "fields", "tstrs"]
        ),
        st.recursive(
            st.none() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
            lambda s: st.lists(s, max_size=12) | st.dictionaries(st.integers(0, 5) | st.text(), s),
            max_leaves=20,
        ),
    )
)
def test_random_columnar_records_never_crash(cols: dict[str, Any]) -> None:
    rec = msgpack.unpackb(msgpack.packb({KEY: cols}), strict_map_key=False)
    try:
        decode_batch(rec, "agg")
    except ProtocolError:
        pass
