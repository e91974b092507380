"""Per-block token filters: a Bloom filter over the lower-cased words of `message`.

Why: a search for a rare word (a trace id, ``OutOfMemoryError``) should read a few
kilobytes per block, not decompress every block. Each block stores a Bloom filter of its
messages' distinct words; a word whose bits are not all set is certainly absent and the
block is skipped. False positives only cost a scan, never a wrong answer.

Cost is what shapes the code (PERFORMANCE.md: per-line Python work is the budget): the
messages of a whole block are joined, lower-cased and split into words with C-level
calls (`str.lower`, `bytes.translate`, `bytes.split`, `set`); only the distinct words go
through the Python loop that sets bits.

Words here are runs of ASCII letters, digits and ``_`` of the UTF-8 bytes. For a query
word (a Unicode ``\\w+`` run, as the exact matcher uses) the same byte split of the query
word yields words that the matching message's byte split also contains, so the filter
never rejects a block the matcher would accept.

Layout: ``b"B1"``, one byte ``log2(bits)``, then the bit array (little-endian bit order
in each byte). Two probes per word from one CRC-32: ``h`` and a multiplicative remix.
The bits are set from C (`map` over `bytearray.__setitem__`), not in a Python loop.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import repeat
from operator import rshift

_MAGIC = b"B1"
_BITS_PER_WORD = 10
"""About 2.5% false positives with two probes; the filter is ~1.3 bytes per distinct word."""
_MIX = 0x9E3779B1
"""Multiplier deriving the second probe from the CRC (Fibonacci hashing)."""
_MIN_LOG2 = 10
_MAX_LOG2 = 24
"""At most 2 MiB per block: beyond ~1.6 M distinct words the rate degrades gracefully."""

_NON_WORD = bytes(
    c if (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c == 95) else 32 for c in range(256)
)
"""`bytes.translate` table: word bytes stay, everything else becomes a space."""


def words_of_text(lowered_utf8: bytes) -> set[bytes]:
    """The distinct filter words of lower-cased UTF-8 text."""
    return set(lowered_utf8.translate(_NON_WORD).split())


def filter_words(value: str) -> list[bytes]:
    """The filter words a message must contain to match query `value` (a word/phrase)."""
    return value.lower().encode().translate(_NON_WORD).split()


def build(messages: Sequence[str]) -> bytes:
    """The filter of a block's messages (repeated messages are tokenised once)."""
    words = words_of_text("\n".join(dict.fromkeys(messages)).lower().encode())
    return build_from_words(words)


def build_from_words(words: Iterable[bytes]) -> bytes:
    unique = words if isinstance(words, set | frozenset) else set(words)
    log2 = _MIN_LOG2
    while (1 << log2) < len(unique) * _BITS_PER_WORD and log2 < _MAX_LOG2:
        log2 += 1
    size = 1 << log2
    mask = size - 1
    # One byte per bit first, set without a Python-level loop: `map` and a zero-length
    # deque drive `bytearray.__setitem__` from C. Then pack eight byte planes into bits.
    slots = bytearray(size)
    hashes = list(map(zlib.crc32, unique))
    deque(map(slots.__setitem__, map(mask.__and__, hashes), repeat(1)), maxlen=0)
    second = map(rshift, map(_MIX.__mul__, hashes), repeat(12))
    deque(map(slots.__setitem__, map(mask.__and__, second), repeat(1)), maxlen=0)
    packed = 0
    for bit in range(8):
        packed |= int.from_bytes(slots[bit::8], "little") << bit
    return _MAGIC + bytes((log2,)) + packed.to_bytes(size >> 3, "little")


def may_contain(blob: bytes, words: Iterable[bytes]) -> bool:
    """False only if some word is certainly absent. An unknown layout answers True."""
    if len(blob) < 3 or blob[:2] != _MAGIC:
        return True
    log2 = blob[2]
    mask = (1 << log2) - 1
    if len(blob) != 3 + (1 << max(log2 - 3, 0)):
        return True
    for h in map(zlib.crc32, words):
        i = h & mask
        if not blob[3 + (i >> 3)] >> (i & 7) & 1:
            return False
        i = (h * _MIX >> 12) & mask
        if not blob[3 + (i >> 3)] >> (i & 7) & 1:
            return False
    return True
