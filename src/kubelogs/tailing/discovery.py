"""Which files to follow: include globs minus excludes, and the rotated names of a file.

Rotated names are the ones kubelet and logrotate give a file next to it:
``0.log.20250115-102030`` (kubelet), ``app.log.1`` (logrotate), ``app.log-20250115``
(logrotate ``dateext``), and ``app-20250115.log`` / ``app.1.log`` (logrotate with
``extension``). Compressed ones are skipped: their bytes are no longer the bytes that
were written. A glob that also matches rotated names (``/var/log/app/*``) does not make
them files of their own: they are read, when they must be, as rotations of the live file
(otherwise a copytruncate copy would be read again from its start under another identity).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterable
from fnmatch import fnmatchcase
from typing import NamedTuple

from kubelogs.pipeline.event import FileContext

SKIP_SUFFIXES = (".gz", ".tmp", ".zst", ".bz2", ".xz", ".zip", ".lz4")

ContextFactory = Callable[[str, str, str, str], FileContext]
"""(link path, real path, file key, id prefix) -> the file's context."""


class Match(NamedTuple):
    """A path to follow, with its context factory and line format."""

    path: str
    factory: ContextFactory
    format: str
    """``auto`` (CRI or Docker json-file, detected per file) or ``plain``."""


_EXTENSION_MIDDLE = re.compile(r"-[0-9]{8}[0-9T:._-]*|\.[0-9]+")
"""``app-20250115.log`` (dateext) or ``app.1.log``; not ``app-2.log``, a file of its own."""


def is_rotated_name(name: str, base: str) -> bool:
    """Whether `name` is a rotated name of the file named `base` (same directory)."""
    if name == base or name.endswith(SKIP_SUFFIXES):
        return False
    if name.startswith((base + ".", base + "-")):
        return True
    stem, ext = os.path.splitext(base)
    if ext and name.startswith(stem) and name.endswith(ext):
        middle = name[len(stem) : len(name) - len(ext)]
        return _EXTENSION_MIDDLE.fullmatch(middle) is not None
    return False


def rotated_names(real: str) -> list[str]:
    """The rotated files of `real` that exist now, sorted by name."""
    d, base = os.path.split(real)
    try:
        names = os.listdir(d)
    except OSError:
        return []
    return [os.path.join(d, n) for n in sorted(names) if is_rotated_name(n, base)]


def find_matches(
    include: list[str],
    exclude: list[str],
    accept: Callable[[str], bool],
    factory: ContextFactory,
    fmt: str,
    extra: Iterable[Match] = (),
) -> list[Match]:
    """The files to follow now: globbed, filtered, without duplicates and without the
    rotated names of other matches."""
    seen: set[str] = set()
    out: list[Match] = []
    for pattern in include:
        for p in sorted(glob.glob(pattern)):
            if p in seen or p.endswith(SKIP_SUFFIXES):
                continue
            if any(fnmatchcase(p, ex) for ex in exclude) or not accept(p):
                continue
            seen.add(p)
            out.append(Match(p, factory, fmt))
    for m in extra:
        if m.path not in seen and not any(fnmatchcase(m.path, ex) for ex in exclude):
            seen.add(m.path)
            out.append(m)
    by_dir: dict[str, set[str]] = {}
    for m in out:
        d, base = os.path.split(m.path)
        by_dir.setdefault(d, set()).add(base)
    kept = []
    for m in out:
        d, base = os.path.split(m.path)
        if any(is_rotated_name(base, other) for other in by_dir[d] if other != base):
            continue
        kept.append(m)
    return kept


def unmatched_patterns(include: list[str]) -> list[str]:
    """Include globs that match nothing now, for a warning at start."""
    return [p for p in include if not glob.glob(p)]
