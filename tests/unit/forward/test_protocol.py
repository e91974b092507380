"""The Forward protocol codec: every mode, EventTime, gzip, and what it refuses."""

from __future__ import annotations

import gzip
import zlib

import msgpack
import pytest

from kubelogs.forward.protocol import (
    EventTime,
    Limits,
    ProtocolError,
    decode_message,
    encode_packed_forward,
    event_time_ext,
    forward_message,
    gzip_parts,
    inflate,
    iter_messages,
    new_unpacker,
    pack_entry,
    packb,
)

T = 1_700_000_000_123_456_789


def roundtrip(obj: object, limits: Limits | None = None) -> object:
    u = new_unpacker(1 << 20)
    u.feed(packb(obj))
    (got,) = list(iter_messages(u, limits or Limits()))
    return decode_message(got, limits or Limits())


def test_message_mode_with_integer_seconds() -> None:
    m = roundtrip(["app", 1_700_000_000, {"message": "hi"}])

    assert ("app", [(1_700_000_000 * 10**9, {"message": "hi"})], None) == (
        m.tag,  # type: ignore[attr-defined]
        m.entries,  # type: ignore[attr-defined]
        m.chunk,  # type: ignore[attr-defined]
    )


def test_message_mode_with_event_time_keeps_nanoseconds() -> None:
    m = roundtrip(["app", event_time_ext(T), {"a": 1}, {"chunk": "abc"}])

    assert [(T, {"a": 1})] == m.entries  # type: ignore[attr-defined]
    assert "abc" == m.chunk  # type: ignore[attr-defined]


def test_forward_mode() -> None:
    m = roundtrip(["t", [[event_time_ext(T), {"a": 1}], [5, {"b": 2}]], {"chunk": "c1"}])

    assert [(T, {"a": 1}), (5 * 10**9, {"b": 2})] == m.entries  # type: ignore[attr-defined]


def test_packed_forward_and_compressed() -> None:
    entries = [pack_entry(T + i, {"message": f"m{i}"}) for i in range(100)]
    for compress in (False, True):
        u = new_unpacker(1 << 20)
        u.feed(encode_packed_forward("tag", entries, chunk="xyz", compress=compress))
        (obj,) = list(iter_messages(u, Limits()))
        m = decode_message(obj, Limits())

        assert 100 == len(m.entries)
        assert (T + 99, {"message": "m99"}) == m.entries[-1]
        assert "xyz" == m.chunk


def test_compressed_entries_in_several_gzip_members() -> None:
    """Fluentd appends one gzip member per write to a compressed chunk."""
    a = gzip.compress(b"".join(pack_entry(T, {"n": i}) for i in range(3)))
    b = gzip.compress(b"".join(pack_entry(T, {"n": i}) for i in range(3, 5)))
    m = decode_message(["t", a + b, {"compressed": "gzip"}], Limits())

    assert [0, 1, 2, 3, 4] == [r["n"] for _, r in m.entries]


def test_fluent_bit_v2_entries_with_metadata() -> None:
    stream = packb([[event_time_ext(T), {"otel": 1}], {"log": "x"}])
    m = decode_message(["t", stream], Limits())

    assert [(T, {"log": "x"})] == m.entries


def test_float_time() -> None:
    m = decode_message(["t", 1.5, {}], Limits())

    assert 1_500_000_000 == m.entries[0][0]


def test_event_time_ext_decodes_to_event_time() -> None:
    u = new_unpacker(100)
    u.feed(packb(event_time_ext(T)))

    assert EventTime(T) == next(u)
    assert isinstance(EventTime(T), int)


@pytest.mark.parametrize(
    ("obj", "what"),
    [
        ("just a string", "not a 2-4 element array"),
        ([1, 2, 3], "tag"),
        (["t", b"\x92\x01"], "middle of an entry"),
        (["t", b"\x05"], "entry is not"),
        (["t", [[1, "not a map"]]], "not a map"),
        (["t", [["x", {}]]], "event time"),
        (["t", 1, {}, "opt"], "option is not a map"),
        (["t", 1, {}, {"chunk": 5}], "chunk option"),
        (["t", b"\x00\x01", {"compressed": "gzip"}], "not valid gzip"),
        (["t", b"", {"compressed": "zstd"}], "unknown compression"),
        (["t", [[True, {}]]], "boolean"),
        (["t", 1], "no record"),
    ],
)
def test_wrong_shapes_are_protocol_errors(obj: object, what: str) -> None:
    with pytest.raises(ProtocolError, match=what):
        decode_message(obj, Limits())


def test_gzip_bomb_stops_at_the_limit() -> None:
    bomb = gzip.compress(b"\x00" * (64 << 20))  # 64 MiB of zeros in ~64 KiB

    with pytest.raises(ProtocolError, match="inflate to more than"):
        inflate(bomb, 1 << 20)


def test_truncated_gzip_is_refused() -> None:
    data = gzip.compress(b"x" * 1000)[:-10]

    with pytest.raises(ProtocolError, match="middle of a gzip stream"):
        inflate(data, 1 << 20)


def test_huge_declared_size_does_not_buffer_beyond_the_limit() -> None:
    """A bin header declaring 4 GiB: the unpacker refuses once its buffer is full."""
    u = new_unpacker(1 << 16)
    header = b"\x93\xa1t\xc6\xff\xff\xff\xff"  # [ "t", bin32 of 4 GiB ...
    u.feed(header)

    assert [] == list(iter_messages(u, Limits(1 << 16)))

    def flood() -> None:
        for _ in range(100):
            u.feed(b"\x00" * 4096)

    with pytest.raises(msgpack.BufferFull):
        flood()


def test_too_many_entries() -> None:
    with pytest.raises(ProtocolError, match="more than the limit"):
        decode_message(["t", [[1, {}]] * 11], Limits(max_entries=10))


@pytest.mark.parametrize("size", [0, 10, 300, 70_000])
def test_forward_message_equals_packing_the_joined_stream(size: int) -> None:
    parts = [bytes([i % 251]) * (size // 3) for i in range(3)] + [b"x" * (size % 3)]
    option = {"size": 3, "chunk": "abc"}
    assert packb(["tag.a", b"".join(parts), option]) == forward_message("tag.a", parts, option)
    inflated = zlib.decompress(b"".join(gzip_parts(parts)), 31)
    assert b"".join(parts) == inflated
