"""Can kubelogs create and write the paths a config names? Checked without creating them.

`kubelogs validate` must reject what `kubelogs run` would fail on (DESIGN.md section 3),
and an unwritable `data_dir` otherwise surfaces deep inside SQLite as "unable to open
database file" with no path. Both commands call `writable_path_problems`, which only
looks (stat and access), so validating a config never leaves directories behind.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any


def _reason(code: int) -> str:
    return f"{os.strerror(code)} ({errno.errorcode.get(code, str(code))})"


def path_problem(path: Path) -> str | None:
    """Why `path` (a directory or file to create or append to) cannot be written, or None.

    The path itself, if it exists, must be writable; otherwise its nearest existing
    ancestor must be a directory we can create entries in.
    """
    path = Path(os.path.abspath(path))
    if path.exists():
        if not os.access(path, os.W_OK | (os.X_OK if path.is_dir() else 0)):
            return f"cannot write to {str(path)!r}: {_reason(errno.EACCES)}"
        return None
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"cannot create {str(path)!r}: {str(ancestor)!r} is not a directory (ENOTDIR)"
    if not os.access(ancestor, os.W_OK | os.X_OK):
        try:
            read_only = bool(os.statvfs(ancestor).f_flag & os.ST_RDONLY)
        except OSError:
            read_only = False
        code = errno.EROFS if read_only else errno.EACCES
        return f"cannot create {str(path)!r}: {str(ancestor)!r}: {_reason(code)}"
    return None


def writable_path_problems(data_dir: Path, components: dict[str, Any]) -> list[str]:
    """`path.to.key: message` for `data_dir` and every sink's `path` that cannot be
    written. Only sinks write where the config says; sources' paths are read."""
    problems: list[str] = []
    problem = path_problem(data_dir)
    if problem:
        problems.append(f"data_dir: {problem}")
    for cid, comp in components.items():
        if getattr(comp, "kind", "") != "sink":
            continue
        value = getattr(comp, "path", None)
        if not value:
            continue
        problem = path_problem(Path(str(value)))
        if problem:
            problems.append(f"sinks.{cid}.path: {problem}")
    return problems
