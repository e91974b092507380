"""The block format: about 20,000 events kept as columns, and their documents rebuilt.

A block is two parts, each a zstd frame of its own (`store.segments` places them):

- the **message column** (the *text* part): every message of the block in row order,
  joined by ``\\n``, UTF-8, original case; a newline inside a message is stored as a
  space (and its position in `BlockData.newlines`), so line ``i`` is row ``i``. Word and
  phrase searches read only this part (`store.column`), and it is where almost all of a
  block's bytes are: the message is the one thing in a log line that does not repeat.
- the **data** part, `BlockData` as msgpack: the runs of rows that share their label set
  (namespace, pod, container, stream, node), file context and stream; each distinct
  file context once (path and pre-encoded Kubernetes metadata); the time and offset
  columns delta-encoded and byte-shuffled (`store.numbers`); sparse flags and parsed
  fields; and the documents of *documents* groups (`store.group`), kept as given.

Documents are not stored: they are rendered from these columns with the schema's encoder
(`codecs.document.render_ndjson`) when a query returns them, so metadata that every line
of a file repeats costs nothing per line. Measured on 2M generated container lines: 14.8%
of the raw log bytes on disk, against 35% when each block kept its documents compressed
beside a lower-cased message column.

Cost: building a block is C-level work per column (``str.join``, ``array``, ``map``),
Python work per run, per file context and per event with flags or parsed fields only.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate, compress, repeat
from operator import add, contains, methodcaller, sub
from typing import Any

import msgspec

from kubelogs.codecs.document import Schema, render_file_fields, render_ndjson
from kubelogs.store.group import WriteGroup
from kubelogs.store.numbers import deltas, shuffle, undelta, unshuffle
from kubelogs.store.segments import BlockCorrupt

_NEWLINE = re.compile("\n")
_ERRORS = "surrogatepass"
RAW = -1
"""`Run.context` of rows whose documents are kept as given."""


class BlockData(msgspec.Struct, array_like=True):
    """The data part of a block (msgpack)."""

    rows: int
    run_label_sets: list[int]
    """Runs (consecutive rows sharing label set, context and stream), as columns."""
    run_contexts: list[int]
    """Index into `contexts`, or `RAW`."""
    run_streams: list[str]
    run_rows: list[int]
    contexts: list[tuple[str, bytes]]
    """(log file path, pre-encoded metadata members) of the events groups."""
    times: bytes
    times_delta: bool
    """Whether `times` holds deltas (False: plain values, when a delta overflowed)."""
    offsets: bytes
    offsets_delta: bool
    """Whether `offsets` holds residuals: the offset minus the previous row's offset
    plus its message length (near zero for consecutive lines of a file)."""
    newlines: list[tuple[int, list[int]]]
    """(row, positions) of messages holding newlines, stored as spaces in the column."""
    extra_rows: list[int]
    extras: bytes
    """One JSON line ``[flags, fields]`` per entry of `extra_rows` (null: none), each
    ending with a newline."""
    raw_docs: list[bytes]
    """The documents of `RAW` runs, in row order."""


_encode_data = msgspec.msgpack.Encoder().encode
_decode_data = msgspec.msgpack.Decoder(BlockData).decode
_json_lines = msgspec.json.Encoder().encode_lines
_decode_json = msgspec.json.Decoder().decode


# -- building --------------------------------------------------------------------------


@dataclass(slots=True)
class Runs:
    """Runs of consecutive rows sharing label set and stream, as parallel columns (a
    block of mixed stdout and stderr has hundreds: no Python object per run)."""

    label_sets: list[int]
    streams: list[str]
    rows: list[int]

    def split(self, k: int) -> tuple[Runs, Runs]:
        """The runs of the first `k` rows and of the rest (0 < k < total)."""
        ends = list(accumulate(self.rows))
        i = bisect_right(ends, k)  # runs [0, i) end at or before k
        head_rows = self.rows[:i]
        tail_rows = self.rows[i:]
        cut = k - (ends[i - 1] if i else 0)
        if cut:  # run i is cut in two
            head_rows = [*head_rows, cut]
            tail_rows[0] -= cut
            return (
                Runs(self.label_sets[: i + 1], self.streams[: i + 1], head_rows),
                Runs(self.label_sets[i:], self.streams[i:], tail_rows),
            )
        return (
            Runs(self.label_sets[:i], self.streams[:i], head_rows),
            Runs(self.label_sets[i:], self.streams[i:], tail_rows),
        )

    def per_label(self) -> dict[int, int]:
        """Rows per label set."""
        ids, rows = self.label_sets, self.rows
        if len(rows) == 1:
            return {ids[0]: rows[0]}
        evens, odds = ids[0::2], ids[1::2]
        if evens.count(evens[0]) == len(evens) and odds.count(odds[0]) == len(odds):
            # Two alternating label sets (stdout and stderr): sums by C-level slicing.
            out = {evens[0]: sum(rows[0::2])}
            out[odds[0]] = out.get(odds[0], 0) + sum(rows[1::2])
            return out
        totals: dict[int, int] = {}
        for label_set, n in zip(ids, rows, strict=True):
            totals[label_set] = totals.get(label_set, 0) + n
        return totals


@dataclass(slots=True)
class Piece:
    """Rows ``start:end`` of a group (already checked), with their runs: what blocks
    are cut from."""

    group: WriteGroup
    messages: Sequence[str]
    """The group's messages (given, or decoded from its documents)."""
    start: int
    end: int
    runs: Runs
    size: int = -1
    """Bytes of kept documents, or characters of messages: what `block_bytes` bounds."""

    def __post_init__(self) -> None:
        if self.size < 0:
            column = self.group.docs if self.group.docs is not None else self.messages
            if self.start or self.end != len(column):
                column = column[self.start : self.end]
            self.size = sum(map(len, column))

    def __len__(self) -> int:
        return self.end - self.start

    def sizes(self) -> list[int]:
        """Per row: the document's bytes when it is kept, else the message's length."""
        if self.group.docs is not None:
            return list(map(len, self.group.docs[self.start : self.end]))
        return list(map(len, self.messages[self.start : self.end]))

    def split(self, k: int) -> tuple[Piece, Piece]:
        """The first `k` rows (0 < k < len) and the rest."""
        head, tail = self.runs.split(k)
        cut = self.start + k
        return (
            Piece(self.group, self.messages, self.start, cut, head),
            Piece(self.group, self.messages, cut, self.end, tail),
        )


@dataclass(slots=True)
class EncodedBlock:
    text: bytes
    """The message column, uncompressed."""
    data: bytes
    """`BlockData`, msgpack, uncompressed."""
    rows: int
    min_time: int
    max_time: int
    per_label: dict[int, int]
    """Rows per label set."""
    fields: str = "[]"
    """The field list of the block's documents for the index (`field_paths`): a JSON
    list of the dotted paths of the leaves of the Kubernetes metadata, parsed fields and
    kept documents, sorted. The fields every events document has (`index.row_fields`)
    are not listed."""


def field_paths(obj: dict[str, Any], out: set[str], prefix: str = "") -> None:
    """Add to `out` the dotted path of every leaf of `obj` (a value that is not a
    non-empty object: lists are leaves, as `matcher.get_field` does not look into
    them). A query field can match only if it is one of these paths or a prefix of one
    followed by a dot."""
    for key, value in obj.items():
        path = prefix + key
        if isinstance(value, dict) and value:
            field_paths(value, out, path + ".")
        else:
            out.add(path)


def column_paths(objs: list[dict[str, Any]], out: set[str], prefix: str = "") -> None:
    """`field_paths` of many objects at once. The parsed fields of a block's rows
    mostly share a few shapes, so each row is reduced in C to its shape (its keys and
    the types of its values) and only the distinct shapes are looked at in Python;
    objects nested under a key are then walked the same way, each shared object once
    (parsers share ``log`` objects). A Python walk of every row cost more than the rest
    of the store's write."""
    if len(objs) > 1:
        objs = list(dict(zip(map(id, objs), objs, strict=True)).values())  # each once
    kinds = map(tuple, map(map, repeat(type), map(dict.values, objs)))
    nested: set[str] = set()
    for keys, types in set(zip(map(tuple, objs), kinds, strict=True)):
        for key, kind in zip(keys, types, strict=True):
            if issubclass(kind, dict):
                nested.add(key)
            else:
                out.add(prefix + key)
    for key in nested:
        inner = [v for v in map(methodcaller("get", key), objs) if isinstance(v, dict)]
        if not all(inner):  # an empty object is a leaf
            out.add(prefix + key)
        nonempty = list(filter(None, inner))
        if nonempty:
            column_paths(nonempty, out, prefix + key + ".")


def _renamed_paths(paths: set[str]) -> set[str]:
    """The names `codecs.document` may give parsed paths: ``<key>_parsed`` for a key
    that collides with a field kubelogs writes, and for parsed ``log.*`` members
    ``log_<name>`` (fluentd) and ``log.<name>_parsed`` (ECS, kubelogs' own names)."""
    out: set[str] = set()
    for path in paths:
        head, dot, rest = path.partition(".")
        out.add(f"{head}_parsed{dot}{rest}")
        if head == "log" and dot:
            name, dot2, rest2 = rest.partition(".")
            out.add(f"log_{rest}")
            out.add(f"log.{name}_parsed{dot2}{rest2}")
    return out


def _meta_paths(meta: bytes, out: set[str]) -> None:
    if meta:
        try:
            decoded = _decode_json(b"{" + meta + b"}")
        except msgspec.DecodeError:
            return
        if isinstance(decoded, dict):
            field_paths(decoded, out)


@dataclass(slots=True)
class BlockBuilder:
    """A block being filled with pieces; `finish` encodes it."""

    messages: list[str] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    run_label_sets: list[int] = field(default_factory=list)
    run_contexts: list[int] = field(default_factory=list)
    run_streams: list[str] = field(default_factory=list)
    run_rows: list[int] = field(default_factory=list)
    contexts: dict[tuple[str, bytes], int] = field(default_factory=dict)
    extra_rows: list[int] = field(default_factory=list)
    extra_flags: list[Any] = field(default_factory=list)
    """Per entry of `extra_rows`: its flags (a tuple) or None."""
    extra_fields: list[Any] = field(default_factory=list)
    """Per entry of `extra_rows`: its parsed fields or None. Two columns, not a list
    per row: a container per row made the cyclic GC's collections cost more than
    building the block."""
    raw_docs: list[bytes] = field(default_factory=list)
    per_label: dict[int, int] = field(default_factory=dict)
    rows: int = 0
    size: int = 0

    def add(self, piece: Piece) -> None:
        g, start, end = piece.group, piece.start, piece.end
        whole = start == 0 and end == len(g.offsets)
        self.messages += piece.messages if whole else piece.messages[start:end]
        self.times += g.times if whole else g.times[start:end]
        self.offsets += g.offsets if whole else g.offsets[start:end]
        if g.docs is not None:
            context = RAW
            self.raw_docs += g.docs if whole else g.docs[start:end]
        else:
            key = (g.path, g.meta)
            context = self.contexts.setdefault(key, len(self.contexts))
            if g.flags or g.fields:
                self._add_extras(g, start, end)
        runs = piece.runs
        i = 0
        if (
            self.run_rows
            and self.run_label_sets[-1] == runs.label_sets[0]
            and self.run_contexts[-1] == context
            and self.run_streams[-1] == runs.streams[0]
        ):
            self.run_rows[-1] += runs.rows[0]  # the same run goes on
            i = 1
        self.run_label_sets += runs.label_sets[i:]
        self.run_streams += runs.streams[i:]
        self.run_rows += runs.rows[i:]
        self.run_contexts += [context] * (len(runs.rows) - i)
        for label_set, n in runs.per_label().items():
            self.per_label[label_set] = self.per_label.get(label_set, 0) + n
        self.rows += end - start
        self.size += piece.size

    def _add_extras(self, g: WriteGroup, start: int, end: int) -> None:
        flags = g.flags or {}
        fields = g.fields or {}
        rows = sorted({*flags, *fields})
        rows = rows[bisect_left(rows, start) : bisect_left(rows, end)]
        self.extra_rows += map(add, rows, repeat(self.rows - start))
        # No flags or no fields (None, or empty) read back as none.
        self.extra_flags += map(flags.get, rows)
        self.extra_fields += map(fields.get, rows)

    def field_list(self) -> str:
        """`EncodedBlock.fields`: one decode per file context and per kept document,
        and a walk of the (sparse) parsed fields. A parsed key that a document renames
        (``message`` -> ``message_parsed``, `codecs.document`) is listed under both
        names, and parsed ``log.*`` members under every name a schema gives them: a
        list may hold more than the documents, never less."""
        paths: set[str] = set()
        for _, meta in self.contexts:
            _meta_paths(meta, paths)
        parsed = list(filter(None, self.extra_fields))
        if parsed:
            found: set[str] = set()
            column_paths(parsed, found)
            paths |= found
            paths |= _renamed_paths(found)
        for doc in self.raw_docs:
            try:
                decoded = _decode_json(doc)
            except msgspec.DecodeError:
                continue
            if isinstance(decoded, dict):
                field_paths(decoded, paths)
        return msgspec.json.encode(sorted(paths)).decode()

    def finish(self) -> EncodedBlock:
        messages = self.messages
        text = "\n".join(messages)
        newlines: list[tuple[int, list[int]]] = []
        if "\n" in "".join(messages):  # a copy and `memchr`: faster than counting lines
            lines = list(messages)
            for row in compress(range(len(messages)), map(contains, messages, repeat("\n"))):
                m = messages[row]
                newlines.append((row, [found.start() for found in _NEWLINE.finditer(m)]))
                lines[row] = m.replace("\n", " ")
            text = "\n".join(lines)
        encoded = text.encode("ascii") if text.isascii() else text.encode("utf-8", _ERRORS)
        times, times_delta = _integers(self.times, None)
        offsets, offsets_delta = _integers(self.offsets, messages)
        data = BlockData(
            rows=self.rows,
            run_label_sets=self.run_label_sets,
            run_contexts=self.run_contexts,
            run_streams=self.run_streams,
            run_rows=self.run_rows,
            contexts=list(self.contexts),
            times=times,
            times_delta=times_delta,
            offsets=offsets,
            offsets_delta=offsets_delta,
            newlines=newlines,
            extra_rows=self.extra_rows,
            # `[flags, fields]` per row (a tuple of flags encodes as a JSON array).
            extras=_json_lines(list(zip(self.extra_flags, self.extra_fields, strict=True)))
            if self.extra_rows
            else b"",
            raw_docs=self.raw_docs,
        )
        return EncodedBlock(
            encoded,
            _encode_data(data),
            self.rows,
            min(self.times),
            max(self.times),
            self.per_label,
            self.field_list(),
        )


def _integers(values: list[int], messages: list[str] | None) -> tuple[bytes, bool]:
    """A column of `values`, delta-encoded when the deltas fit in 64 bits. With
    `messages` (offsets), each delta is less the previous row's message length."""
    try:
        column = deltas(values)
        if messages is not None and len(column) > 1:
            lengths = map(len, messages)
            column[1:] = array("q", map(sub, column[1:], lengths))
        return shuffle(column), True
    except OverflowError:
        return shuffle(array("q", values)), False


def _from_integers(data: bytes, is_delta: bool, lengths: Sequence[int] | None) -> list[int]:
    column = unshuffle(data)
    if not is_delta:
        return column.tolist()
    if lengths is not None and len(column) > 1:
        return list(accumulate(map(add, column, (0, *lengths))))
    return undelta(column)


def _checked_integers(
    name: str, data: bytes, is_delta: bool, lengths: Sequence[int] | None, rows: int
) -> list[int]:
    """`_from_integers`, or BlockCorrupt if the column is not one value per row."""
    try:
        values = _from_integers(data, is_delta, lengths)
    except ValueError as exc:
        raise BlockCorrupt(f"{name} column: {exc}") from exc
    if len(values) != rows:
        raise BlockCorrupt(f"{name} column length differs from the rows")
    return values


# -- reading ---------------------------------------------------------------------------


def block_times(data: bytes) -> tuple[list[int], list[tuple[int, int, int]]]:
    """The time column and the runs ``(label_set, first_row, end_row)`` of a block's
    data part alone (`store.aggregate`: a histogram of rows chosen by their label set
    needs nothing else, not even the message column)."""
    try:
        d = _decode_data(data)
    except msgspec.DecodeError as exc:
        raise BlockCorrupt(f"block data does not decode: {exc}") from exc
    if len(d.run_label_sets) != len(d.run_rows) or (d.run_rows and min(d.run_rows) <= 0):
        raise BlockCorrupt("block run columns are malformed")
    ends = list(accumulate(d.run_rows))
    if (ends[-1] if ends else 0) != d.rows:
        raise BlockCorrupt("block runs do not add up to its rows")
    runs = list(zip(d.run_label_sets, [0, *ends[:-1]], ends, strict=True))
    return _checked_integers("time", d.times, d.times_delta, None, d.rows), runs


class DecodedBlock:
    """A block read back: its columns, and its documents rendered on demand."""

    def __init__(self, text: bytes, data: bytes, schema: Schema) -> None:
        try:
            self._data = d = _decode_data(data)
        except msgspec.DecodeError as exc:
            raise BlockCorrupt(f"block data does not decode: {exc}") from exc
        self.schema = schema
        self.rows = d.rows
        self._text = text
        if text.count(b"\n") != max(d.rows - 1, 0) or (d.rows == 0 and text):
            raise BlockCorrupt("message column does not have one line per row")
        n_runs = len(d.run_rows)
        if not (len(d.run_label_sets) == len(d.run_contexts) == len(d.run_streams) == n_runs):
            raise BlockCorrupt("block run columns differ in length")
        if n_runs and (
            min(d.run_rows) <= 0
            or min(d.run_contexts) < RAW
            or max(d.run_contexts) >= len(d.contexts)
        ):
            raise BlockCorrupt("block run is malformed")
        ends = list(accumulate(d.run_rows))
        self.runs: list[tuple[int, int, int]] = list(
            zip(d.run_label_sets, [0, *ends[:-1]], ends, strict=True)
        )
        """(label_set, first_row, end_row) per run."""
        raw_rows = [n if c == RAW else 0 for c, n in zip(d.run_contexts, d.run_rows, strict=True)]
        self._raw_base = list(accumulate(raw_rows, initial=0))
        if (ends[-1] if ends else 0) != d.rows or self._raw_base[-1] != len(d.raw_docs):
            raise BlockCorrupt("block runs do not add up to its rows")
        if len(d.extra_rows) != d.extras.count(b"\n"):
            raise BlockCorrupt("block extras do not match their rows")
        self.times = _checked_integers("time", d.times, d.times_delta, None, d.rows)
        self._lines: list[str] | None = None
        self._messages: list[str] | None = None
        self._offsets: list[int] | None = None
        self._extras: dict[int, tuple[Sequence[str] | None, dict[str, Any] | None]] | None = None
        self._docs: list[bytes] | None = None
        self._rendered: tuple[bytes, list[int]] | None = None

    @property
    def text(self) -> bytes:
        """The message column (original case, one line per row)."""
        return self._text

    def has_raw_runs(self) -> bool:
        """Whether any rows of the block are documents kept as given."""
        return RAW in self._data.run_contexts

    def is_raw(self, run: int) -> bool:
        return self._data.run_contexts[run] == RAW

    def run_of(self, row: int) -> int:
        return bisect_right([end for _, _, end in self.runs], row)

    def lines(self) -> list[str]:
        """The message column's lines (a newline inside a message is a space here)."""
        if self._lines is None:
            self._lines = self._text.decode("utf-8", _ERRORS).split("\n") if self.rows else []
        return self._lines

    def messages(self) -> list[str]:
        """Each row's message, exactly as written."""
        if self._messages is None:
            lines = self.lines()
            if self._data.newlines:
                lines = list(lines)
                for row, positions in self._data.newlines:
                    if not 0 <= row < self.rows:
                        raise BlockCorrupt("block newline row is out of range")
                    chars = list(lines[row])
                    for p in positions:
                        if 0 <= p < len(chars):
                            chars[p] = "\n"
                    lines[row] = "".join(chars)
            self._messages = lines
        return self._messages

    def offsets(self) -> list[int]:
        if self._offsets is None:
            d = self._data
            lengths = list(map(len, self.lines())) if d.offsets_delta else None
            self._offsets = _checked_integers(
                "offset", d.offsets, d.offsets_delta, lengths, self.rows
            )
        return self._offsets

    def docs(self, rows: Sequence[int]) -> list[bytes]:
        """The documents of `rows` (ascending): rendered for those rows alone when they
        are few, else from the whole block (cached)."""
        if self._docs is not None or len(rows) * 8 >= self.rows:
            every = self.all_docs()
            return [every[i] for i in rows]
        out: list[bytes] = []
        i = 0
        while i < len(rows):
            run = self.run_of(rows[i])
            end = self.runs[run][2]
            j = bisect_right(rows, end - 1, i)
            out += self._render(run, rows[i:j])
            i = j
        return out

    def doc(self, row: int) -> bytes:
        return self.docs([row])[0]

    def rows_with_extras(self, first: int, end: int) -> list[int]:
        """The rows in ``[first, end)`` that have flags or parsed fields, ascending."""
        rows = self._data.extra_rows  # ascending: added in row order
        return rows[bisect_left(rows, first) : bisect_left(rows, end)]

    def file_fields_doc(self, run: int) -> bytes:
        """The fields shared by every row of an events run (`render_file_fields`)."""
        path, meta = self._data.contexts[self._data.run_contexts[run]]
        return render_file_fields(self.schema, path=path, meta=meta)

    def all_docs(self) -> list[bytes]:
        if self._docs is None:
            docs: list[bytes] = []
            for run, (_, first, end) in enumerate(self.runs):
                docs += self._render(run, range(first, end))
            self._docs = docs
        return self._docs

    def rendered(self) -> tuple[bytes, list[int]]:
        """Every document concatenated, and where each starts (plus the end); built
        once per block (every run of a block searches it)."""
        if self._rendered is None:
            docs = self.all_docs()
            self._rendered = b"".join(docs), list(accumulate(map(len, docs), initial=0))
        return self._rendered

    def _render(self, run: int, rows: Sequence[int]) -> list[bytes]:
        context = self._data.run_contexts[run]
        first = self.runs[run][1]
        if context == RAW:
            base = self._raw_base[run] - first
            raw_docs = self._data.raw_docs
            return [raw_docs[base + i] for i in rows]
        contiguous = isinstance(rows, range)
        messages, times, offsets = self.messages(), self.times, self.offsets()
        if contiguous:
            lo, hi = rows[0], rows[-1] + 1
            msgs, ts, offs = messages[lo:hi], times[lo:hi], offsets[lo:hi]
        else:
            msgs = [messages[i] for i in rows]
            ts = [times[i] for i in rows]
            offs = [offsets[i] for i in rows]
        flags: dict[int, Sequence[str]] = {}
        fields: dict[int, dict[str, Any]] = {}
        extras = self._extra_map()
        if extras:
            for k, i in enumerate(rows):
                extra = extras.get(i)
                if extra is not None:
                    if extra[0]:
                        flags[k] = extra[0]
                    if extra[1]:
                        fields[k] = extra[1]
        path, meta = self._data.contexts[context]
        rendered = render_ndjson(
            self.schema,
            path=path,
            meta=meta,
            times=ts,
            tstrs=None,
            messages=msgs,
            streams=[self._data.run_streams[run]] * len(msgs),
            offsets=offs,
            flags=flags,
            fields=fields,
        )
        return rendered[:-1].split(b"\n")

    def _extra_map(self) -> dict[int, tuple[Sequence[str] | None, dict[str, Any] | None]]:
        if self._extras is None:
            d = self._data
            self._extras = {}
            if d.extra_rows:
                lines = d.extras.split(b"\n")[:-1]  # every line ends with one
                for row, line in zip(d.extra_rows, lines, strict=True):
                    try:
                        flags, fields = _decode_json(line)
                    except (msgspec.DecodeError, ValueError, TypeError) as exc:
                        raise BlockCorrupt(f"block extras do not decode: {exc}") from exc
                    self._extras[row] = (flags, fields)
        return self._extras
