"""glibc malloc tuning for `kubelogs run`, applied by the process itself.

The tailer reads 256 KiB chunks and builds batches of similar size; with glibc's default
thresholds each such buffer above 128 KiB is an `mmap`/`munmap` pair (page faults on
every chunk) and freed heap memory is trimmed back to the kernel and faulted in again.
Raising the mmap threshold and the trim threshold keeps those buffers in the heap. The
README's best figures were measured with ``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``
in the environment, which only the benchmark set; calling ``mallopt`` at start-up gives
every user the same figures (bench/agent_bench.py, see changelog.d/cli-ux.md).

Explicit environment settings win: if either variable (or ``GLIBC_TUNABLES``) is set, the
user has chosen, and nothing is changed. ``KUBELOGS_MALLOC_TUNING=off`` disables it (to
measure the difference, or if it ever misbehaves). On other C libraries it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from collections.abc import Mapping

log = logging.getLogger("kubelogs")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
"""mallopt parameter numbers from glibc's <malloc.h>."""

MMAP_THRESHOLD = 256 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024
"""The values the benchmark's environment used (MALLOC_MMAP_THRESHOLD_=268435456,
MALLOC_TRIM_THRESHOLD_=1073741824): buffers below 256 MiB come from the heap, and up to
1 GiB of free heap top is kept rather than returned to the kernel. The agent's peak heap
is tens of MiB, so the trim threshold only removes trim/fault churn."""

_ENV_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune(environ: Mapping[str, str] | None = None) -> bool:
    """Apply the thresholds; True if glibc accepted both."""
    env: Mapping[str, str] = os.environ if environ is None else environ
    if env.get("KUBELOGS_MALLOC_TUNING", "").strip().lower() in ("off", "0", "false", "no"):
        return False
    if any(env.get(name) for name in _ENV_VARS):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not ok:
        log.debug("glibc refused the malloc thresholds; running with its defaults")
    return ok
