"""The per-block message column: how a word search skips blocks and documents.

Every block stores its messages as a column of their own (`store.block`): joined by
``\\n`` (one line per row, in block order; a newline inside a message is stored as a
space), UTF-8, original case, compressed as a zstd frame of its own. A search for a word
or phrase of the message decompresses only this column, lower-cases it (`lowered`) and
looks for the query's *needles* with `bytes.find` / ``in`` at C speed: a block where a
needle of a required term does not occur is skipped without reading the rest of it, and
in the others only the lines that contain every needle are matched (`lines_with`).

Cost is what shapes it (PERFORMANCE.md: per-line Python work is the budget): the writer
builds the column with ``str.join`` and ``str.encode`` over whole blocks, with no Python
work per document or per word; reading it is a decompression, a ``bytes.lower`` and a
few substring searches per block.

The column is a prefilter only: `store.matcher` decides every match. It must never rule
out a document the matcher accepts, and these are the reasons it does not:

- **Case folding.** The matcher compares ``str.lower()`` of the message with the
  ``str.lower()`` of the query value; `lowered` is ``str.lower()`` of the column (or
  ``bytes.lower`` when it is ASCII, which folds ASCII exactly like ``str.lower``).
  Lower-casing a concatenation equals concatenating the lower-cased parts when the
  separator is neither cased nor case-ignorable (only the final-sigma rule looks at
  neighbours, and it stops at such a character); ``\\n`` and the space are neither.
  So a lowered line is its lower-cased message, except for the next point.
- **Lines.** A newline inside a message is a space in the column, so that line ``i`` is
  row ``i``. Needles never contain a newline (a value that would need one gets no
  needle), so this hides no occurrence, and an occurrence never spans two lines.
- **Needles** (`needles`) are substrings the lower-cased message must contain for the
  matcher to accept it: the ``\\w+`` words of a word or phrase (the matcher's regex
  requires each of them literally), the literal parts of a wildcard value (``conn*ref``),
  or the whole lower-cased value when it has no word character (a substring match).
- **Encoding.** Both sides are encoded with ``surrogatepass``, character by character, so
  a substring of the text is a substring of its bytes, even with lone surrogates.
"""

from __future__ import annotations

from collections.abc import Sequence

from kubelogs.store.matcher import WORD_RE

_ERRORS = "surrogatepass"


def lowered(column: bytes) -> bytes:
    """The column lower-cased as the matcher lower-cases messages (one line per row
    still: no character lower-cases to or from a newline)."""
    if column.isascii():  # then `bytes.lower` folds exactly as `str.lower`, and faster
        return column.lower()
    return column.decode("utf-8", _ERRORS).lower().encode("utf-8", _ERRORS)


def needles(value: str, phrase: bool) -> tuple[bytes, ...]:
    """Substrings of the lower-cased message without which the matcher rejects the
    message for the query value (``text_matcher(value, phrase)``); () when none is known."""
    lowered = value.lower()
    if not phrase and "*" in lowered:
        parts = lowered.split("*")
    else:
        parts = WORD_RE.findall(lowered) or [lowered]
    return tuple(dict.fromkeys(p.encode("utf-8", _ERRORS) for p in parts if p and "\n" not in p))


def lines_with(column: bytes, required: Sequence[bytes]) -> list[int]:
    """The numbers (0-based, ascending) of the lines of `column` holding every needle.

    `bytes.find` jumps from one occurrence of the longest needle to the next, and
    `bytes.count` of the newlines in between gives the line number: Python work is per
    occurrence, not per line.
    """
    if not required:
        raise ValueError("lines_with needs at least one needle")
    for needle in required:
        if needle not in column:
            return []
    key = max(required, key=len)
    others = [n for n in required if n != key]
    find, rfind, count = column.find, column.rfind, column.count
    rows: list[int] = []
    line = counted = 0
    pos = find(key)
    while pos != -1:
        line += count(b"\n", counted, pos)
        counted = pos
        end = find(b"\n", pos)
        if end == -1:
            end = len(column)
        if not others:
            rows.append(line)
        else:
            start = rfind(b"\n", 0, pos) + 1
            if all(find(n, start, end) != -1 for n in others):
                rows.append(line)
        pos = find(key, end + 1)
    return rows


_LETTERS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_MIN_ANCHOR = 4
"""Shortest caseless part of a needle worth searching for instead of lower-casing."""
_MAX_ANCHOR_HITS = 256
"""Occurrences of an anchor in one column past which lower-casing the column is cheaper."""


def _anchor(needle: bytes) -> tuple[bytes, int] | None:
    """The longest run of `needle` that no case folding changes (ASCII digits and
    punctuation), with its offset, if it is long enough to search for."""
    if not needle.isascii():
        return None
    best, best_at = b"", 0
    start = 0
    for i in range(len(needle) + 1):
        if i == len(needle) or needle[i] in _LETTERS:
            if i - start > len(best):
                best, best_at = needle[start:i], start
            start = i + 1
    return (best, best_at) if len(best) >= _MIN_ANCHOR else None


class SearchColumn:
    """A block's message column as a word search needs it: lower-cased, but only if it
    has to be.

    Lower-casing a column costs as much as decompressing it. For a needle with a long
    part that case folding does not change - trace ids, request ids, numbers, addresses:
    the usual rare search - the original text is searched for that part (an *anchor*)
    and each hit is compared case-insensitively around it, which is exact for an ASCII
    column (`bytes.lower` keeps every byte where it is). Other needles, non-ASCII
    columns and anchors with too many hits use the lower-cased column (`lowered`).
    """

    __slots__ = ("_ascii", "_lowered", "text")

    def __init__(self, text: bytes) -> None:
        self.text = text
        self._lowered: bytes | None = None
        self._ascii: bool | None = None

    @property
    def lowered(self) -> bytes:
        if self._lowered is None:
            self._lowered = lowered(self.text)
        return self._lowered

    def contains(self, needle: bytes) -> bool:
        """Whether the lower-cased column contains `needle` (a lower-case needle)."""
        found = self._occurrences(needle, first_only=True)
        return bool(found) if found is not None else needle in self.lowered

    def lines_with(self, required: Sequence[bytes]) -> list[int]:
        """`lines_with` of the lower-cased column, without lower-casing it when the
        longest needle has an anchor."""
        if not required:
            raise ValueError("lines_with needs at least one needle")
        key = max(required, key=len)
        found = self._occurrences(key, first_only=False)
        if found is None:
            return lines_with(self.lowered, required)
        others = [n for n in required if n != key]
        text = self.text
        rows: list[int] = []
        line = counted = 0
        line_end = -1
        for pos in found:
            if pos <= line_end:
                continue  # another occurrence on a line already taken
            line += text.count(b"\n", counted, pos)
            counted = pos
            line_end = text.find(b"\n", pos)
            if line_end == -1:
                line_end = len(text)
            if others:
                start = text.rfind(b"\n", 0, pos) + 1
                current = text[start:line_end].lower()
                if not all(n in current for n in others):
                    continue
            rows.append(line)
        return rows

    def _occurrences(self, needle: bytes, *, first_only: bool) -> list[int] | None:
        """Where `needle` occurs in the lower-cased column (ascending), found from an
        anchor in the original text; None when that is not possible or not cheaper."""
        if self._lowered is not None:
            return None  # already paid for: `bytes.find` on it is simpler
        anchor = _anchor(needle)
        if anchor is None:
            return None
        if self._ascii is None:
            self._ascii = self.text.isascii()
        if not self._ascii:
            return None
        part, offset = anchor
        text, size = self.text, len(needle)
        found: list[int] = []
        hits = 0
        q = text.find(part)
        while q != -1:
            hits += 1
            if hits > _MAX_ANCHOR_HITS:
                return None
            p = q - offset
            if p >= 0 and text[p : p + size].lower() == needle:
                found.append(p)
                if first_only:
                    break
            q = text.find(part, q + 1)
        return found
