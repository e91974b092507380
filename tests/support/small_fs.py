"""A small filesystem to fill up: a tmpfs mounted in the test's directory, and a
filler file that takes every byte left on it.

The end-to-end tests of a full disk need a real ENOSPC from the kernel, which a tmpfs
of a chosen size gives without touching the machine's disks. Mounting needs root: as
another user the test is skipped (the unit tests that inject ENOSPC cover the path);
as root a mount that fails is a failure under ``CI=true`` and a skip elsewhere.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_tmpfs(tmp_path: Path, size: str, covered_by: str) -> Iterator[Path]:
    """A tmpfs of `size` (``mount -o size=``, e.g. ``"2m"``) at ``tmp_path/small``,
    unmounted afterwards; `covered_by` names the tests that cover the path where the
    mount is impossible (said in the skip)."""
    if os.geteuid() != 0:
        pytest.skip(f"mounting a tmpfs needs root; {covered_by}")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        message = f"cannot mount a tmpfs as root: {r.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=True)


def fill(path: Path) -> None:
    """Write `path` until its filesystem is full."""
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
