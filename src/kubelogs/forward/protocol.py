"""Fluentd Forward Protocol v1, as bytes <-> messages: pure, no I/O.

The spec (fluent/fluentd docs, "Forward Protocol Specification v1") defines one message
as a msgpack array whose second element chooses the mode:

- **Message**: ``[tag, time, record, option?]``, one event (fluent-logger's mode);
- **Forward**: ``[tag, [[time, record], ...], option?]``;
- **PackedForward**: ``[tag, bin, option?]``, `bin` a msgpack stream of ``[time, record]``
  entries (Fluentd's and Fluent Bit's out_forward);
- **CompressedPackedForward**: PackedForward with ``option.compressed == "gzip"``, the
  stream gzip-compressed (possibly several gzip members back to back).

`time` is an integer of seconds, a float, or an **EventTime** (msgpack ext type 0: 4
bytes of seconds, 4 bytes of nanoseconds, big endian). Fluent Bit 2's "v2 event format"
sends ``[[time, metadata], record]`` entries: the metadata is ignored, the time kept.
``option.chunk`` asks the receiver to answer ``{"ack": chunk}`` once it has the events.

Why hostile input cannot hurt: the stream unpacker is created with a buffer limit
(`max_message_size`), so a declared size larger than that (a 4 GiB ``bin``) fails once
that many bytes were buffered instead of growing without bound; compressed entries are
inflated with an output limit (`max_decompressed_size`), so a gzip bomb stops at the
limit; every shape check raises `ProtocolError` with a sentence, and the connection that
sent it is closed by its caller.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

EVENT_TIME_EXT = 0
"""msgpack ext type code of EventTime."""

_EVENT_TIME = struct.Struct(">II")
_NS = 1_000_000_000


class ProtocolError(ValueError):
    """A frame that is not valid Forward protocol; ``str()`` says what is wrong."""


class EventTime(int):
    """Nanoseconds since the epoch that came as an EventTime ext (not integer seconds)."""

    __slots__ = ()


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EVENT_TIME_EXT and len(data) == 8:
        sec, nsec = _EVENT_TIME.unpack(data)
        return EventTime(sec * _NS + nsec)
    if code == -1:  # msgpack's own Timestamp (some clients send it)
        ts = msgpack.Timestamp.from_bytes(data)
        return EventTime(ts.to_unix_nano())
    raise ProtocolError(f"unknown msgpack ext type {code} ({len(data)} bytes)")


def event_time_ext(time_ns: int) -> msgpack.ExtType:
    """An EventTime ext value for `time_ns` (what senders put in entries)."""
    sec, nsec = divmod(time_ns, _NS)
    return msgpack.ExtType(EVENT_TIME_EXT, _EVENT_TIME.pack(sec & 0xFFFFFFFF, nsec))


def time_to_ns(value: Any) -> int:
    """An entry's time as integer nanoseconds; ProtocolError when it is not a time."""
    if type(value) is EventTime:
        return int(value)
    if isinstance(value, bool):
        raise ProtocolError("an event time is a boolean")
    if isinstance(value, int):
        return value * _NS
    if isinstance(value, float):
        return int(value * _NS)
    if isinstance(value, list) and len(value) == 2 and not isinstance(value[0], list):
        return time_to_ns(value[0])  # Fluent Bit v2: [[time, metadata], record]
    raise ProtocolError(f"an event time is a {type(value).__name__}, not an integer or EventTime")


def new_unpacker(max_buffer_size: int) -> msgpack.Unpacker:
    """A stream unpacker that never buffers more than `max_buffer_size` bytes: a larger
    declared size fails with `msgpack.BufferFull` instead of growing memory."""
    return msgpack.Unpacker(
        raw=False,
        unicode_errors="replace",
        strict_map_key=False,
        ext_hook=_ext_hook,
        max_buffer_size=max_buffer_size,
        use_list=True,
    )


_packer = msgpack.Packer(use_bin_type=True, unicode_errors="replace")


def packb(obj: Any) -> bytes:
    return _packer.pack(obj)  # type: ignore[no-any-return]


@dataclass(slots=True)
class Limits:
    max_message_size: int = 32 << 20
    """Bytes of one undecoded message (and of a connection's buffer) at most."""
    max_decompressed_size: int = 128 << 20
    """Bytes a CompressedPackedForward message may inflate to at most."""
    max_entries: int = 1_000_000
    """Events in one message at most."""


@dataclass(slots=True)
class ForwardMessage:
    """One decoded message: a tag and its events as (nanoseconds, record) pairs."""

    tag: str
    entries: list[tuple[int, dict[str, Any]]]
    chunk: str | None = None
    option: dict[str, Any] = field(default_factory=dict)


def _check_record(record: Any) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ProtocolError(f"an event record is a {type(record).__name__}, not a map")
    return record


def _entries(items: Sequence[Any], limits: Limits) -> list[tuple[int, dict[str, Any]]]:
    if len(items) > limits.max_entries:
        raise ProtocolError(f"a message holds {len(items)} events, more than the limit")
    out = []
    for item in items:
        if not isinstance(item, list) or len(item) < 2:
            raise ProtocolError("an entry is not a [time, record] array")
        out.append((time_to_ns(item[0]), _check_record(item[1])))
    return out


def inflate(data: bytes, limit: int) -> bytes:
    """gzip (one or several members back to back) -> bytes, at most `limit` of them."""
    parts: list[bytes] = []
    total = 0
    rest = data
    while rest:
        d = zlib.decompressobj(wbits=47)  # gzip or zlib header, auto-detected
        try:
            out = d.decompress(rest, limit - total + 1)
        except zlib.error as exc:
            raise ProtocolError(f"the compressed entries are not valid gzip ({exc})") from None
        total += len(out)
        if total > limit or d.unconsumed_tail:
            raise ProtocolError(f"the compressed entries inflate to more than {limit} bytes")
        if not d.eof:
            raise ProtocolError("the compressed entries end in the middle of a gzip stream")
        parts.append(out)
        rest = d.unused_data
    return b"".join(parts)


def _packed_entries(
    data: bytes, compressed: bool, limits: Limits
) -> list[tuple[int, dict[str, Any]]]:
    if compressed:
        data = inflate(data, limits.max_decompressed_size)
    unpacker = new_unpacker(len(data) + 1)
    unpacker.feed(data)
    items: list[Any] = []
    try:
        for item in unpacker:
            items.append(item)
            if len(items) > limits.max_entries:
                raise ProtocolError("a message holds more events than the limit")
    except (msgpack.UnpackException, ValueError) as exc:
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(f"the packed entries are not valid msgpack ({exc})") from None
    if ends_inside_object(unpacker):
        raise ProtocolError("the packed entries end in the middle of an entry")
    return _entries(items, limits)


def ends_inside_object(unpacker: msgpack.Unpacker) -> bool:
    """Whether the unpacker (iterated until it had nothing complete) holds part of an
    object. `tell()` cannot say: it counts the bytes of a partial object too. A nil fed
    now comes back alone only when nothing was pending (it would complete, or extend, a
    partial object instead). The unpacker is spent afterwards."""
    try:
        unpacker.feed(b"\xc0")
        return next(unpacker, _NOTHING) is not None
    except (msgpack.BufferFull, msgpack.UnpackException, ValueError):
        return True


_NOTHING = object()


def decode_message(obj: Any, limits: Limits) -> ForwardMessage:
    """One unpacked msgpack object -> a ForwardMessage, in whichever mode it came."""
    if not isinstance(obj, list) or not 2 <= len(obj) <= 4:
        raise ProtocolError(f"a message is a {type(obj).__name__}, not a 2-4 element array")
    tag = obj[0]
    if not isinstance(tag, str):
        raise ProtocolError(f"the tag is a {type(tag).__name__}, not a string")
    second = obj[1]
    option: Any
    if isinstance(second, list):  # Forward mode
        option = obj[2] if len(obj) > 2 else None
        entries = _entries(second, limits)
    elif isinstance(second, bytes | str) and len(obj) <= 3:  # PackedForward
        option = obj[2] if len(obj) > 2 else None
        if option is not None and not isinstance(option, dict):
            raise ProtocolError("the option is not a map")
        how = option.get("compressed") if option else None
        compressed = how not in (None, "text")
        if compressed and how != "gzip":
            raise ProtocolError(f"unknown compression {how!r}")
        raw = second.encode("utf-8", "surrogateescape") if isinstance(second, str) else second
        entries = _packed_entries(raw, compressed, limits)
    else:  # Message mode
        if len(obj) < 3:
            raise ProtocolError("a Message-mode message has no record")
        option = obj[3] if len(obj) > 3 else None
        entries = [(time_to_ns(second), _check_record(obj[2]))]
    if option is None:
        option = {}
    elif not isinstance(option, dict):
        raise ProtocolError("the option is not a map")
    chunk = option.get("chunk")
    if chunk is not None and not isinstance(chunk, str):
        raise ProtocolError("the chunk option is not a string")
    return ForwardMessage(tag, entries, chunk, option)


def iter_messages(unpacker: msgpack.Unpacker, limits: Limits) -> Iterator[Any]:
    """Objects the unpacker holds complete; msgpack errors become ProtocolError."""
    try:
        yield from unpacker
    except msgpack.BufferFull:
        raise ProtocolError(
            f"a message is larger than max_message_size ({limits.max_message_size} bytes)"
        ) from None
    except ProtocolError:
        raise
    except (msgpack.UnpackException, ValueError) as exc:
        raise ProtocolError(f"the stream is not valid msgpack ({exc})") from None


def encode_packed_forward(
    tag: str,
    entries: Sequence[bytes],
    *,
    chunk: str | None = None,
    compress: bool = False,
    level: int = 1,
) -> bytes:
    """A PackedForward (or CompressedPackedForward) message from pre-packed entries."""
    stream = b"".join(entries)
    option: dict[str, Any] = {"size": len(entries)}
    if compress:
        stream = gzip_compress(stream, level)
        option["compressed"] = "gzip"
    if chunk is not None:
        option["chunk"] = chunk
    return packb([tag, stream, option])


def gzip_compress(data: bytes, level: int = 1) -> bytes:
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def gzip_parts(parts: Sequence[bytes], level: int = 1) -> list[bytes]:
    """One gzip member of the concatenated `parts`, without concatenating them."""
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    out = [c.compress(p) for p in parts]
    out.append(c.flush())
    return [o for o in out if o]


def forward_message(tag: str, stream_parts: Sequence[bytes], option: Mapping[str, Any]) -> bytes:
    """``packb([tag, b"".join(stream_parts), option])`` with one copy of the stream
    instead of three (join, then pack): a sink's chunk is megabytes."""
    n = sum(map(len, stream_parts))
    if n < 1 << 8:
        head = b"\xc4" + n.to_bytes(1, "big")
    elif n < 1 << 16:
        head = b"\xc5" + n.to_bytes(2, "big")
    else:
        head = b"\xc6" + n.to_bytes(4, "big")
    return b"".join([b"\x93", packb(tag), head, *stream_parts, packb(dict(option))])


def pack_entry(time_ns: int, record: Mapping[str, Any]) -> bytes:
    return packb([event_time_ext(time_ns), record])


def ack_response(chunk: str) -> bytes:
    return packb({"ack": chunk})
