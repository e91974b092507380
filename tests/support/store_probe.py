"""Read a local store that an agent is writing or has written: the progress probes and
final checks of the end-to-end tests.

The probes (`stored_count`, `stored_messages`) read in-process and answer "nothing yet"
while the store does not exist or is being created (the agent opens it lazily), so they
can be polled with `wait_for`. `search` and `stored_docs` go through ``kubelogs search``,
as a user reads the store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any


def stored_count(store: Path) -> int:
    """Documents in the store so far (0 before it exists)."""
    from kubelogs.store.errors import StoreError
    from kubelogs.store.reader import StoreReader

    if not (store / "index.sqlite").exists():
        return 0
    try:
        with StoreReader(store) as reader:
            return reader.count("")
    except StoreError:
        return 0


def stored_messages(store: Path) -> list[str]:
    """The ``message`` of every document in the store so far ([] before it exists)."""
    from kubelogs.store.errors import StoreError
    from kubelogs.store.reader import StoreReader

    if not (store / "index.sqlite").exists():
        return []
    try:
        with StoreReader(store) as reader:
            return [str(json.loads(h.doc)["message"]) for h in reader.search("", limit=0)]
    except StoreError:
        return []


def search(store: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``kubelogs search --store STORE ARGS...``."""
    return subprocess.run(
        [sys.executable, "-m", "kubelogs", "search", "--store", str(store), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def stored_docs(store: Path) -> list[dict[str, Any]]:
    """Every document, as ``kubelogs search --limit 0 --output json`` prints it."""
    r = search(store, "--limit", "0", "--output", "json")
    assert 0 == r.returncode, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]
