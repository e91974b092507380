"""`kubelogs dlq list | show | replay [--sink NAME]`: events a sink's destination rejected.

The dead-letter queue (`kubelogs.buffer.dead_letter`) keeps each rejected document with
the reason; this command shows them and sends them again once the cause is fixed (a
mapping changed, a template updated). Sink directories come from the config (``-c``,
default as for `kubelogs run`): ``<data_dir>/dead_letter/<sink id>`` or the sink's
``dead_letter.path``.

`replay` sends each entry as a ``create`` under its original ``_id`` to its original
index, so replaying twice, or replaying a document that meanwhile arrived, makes no
duplicate. Delivered entries (and ``409``s) leave the queue; entries rejected again stay
with the new reason and one more attempt counted; if the cluster cannot be reached the
queue is left as it was. Exit 0 when nothing is left, 2 when entries remain.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kubelogs.buffer.dead_letter import Entry
    from kubelogs.config.loader import Config
    from kubelogs.sinks.elasticsearch.config import ElasticsearchConfig

_REPLAY_ATTEMPTS = 5
"""Tries for documents answered 429/5xx during a replay before they stay queued."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dlq",
        help="list, show or replay events a sink rejected (dead-letter queue)",
        epilog="examples:\n"
        "  kubelogs dlq list -c /etc/kubelogs/kubelogs.yaml\n"
        "  kubelogs dlq show --sink es --output json | jq .reason\n"
        "  kubelogs dlq replay --sink es      # after fixing the mapping",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["list", "show", "replay"], help="what to do")
    p.add_argument(
        "-c",
        "--config",
        help="config file (default: $KUBELOGS_CONFIG, then /etc/kubelogs/kubelogs.yaml, "
        "then the built-in default)",
    )
    p.add_argument("--sink", help="only this sink (its id in the config)")
    p.add_argument(
        "--output", choices=["text", "json"], default="text", help="show: format (default text)"
    )
    p.add_argument("--limit", type=int, default=0, help="show: at most N entries (0 = all)")
    p.set_defaults(func=run)


def _dirs(cfg: Config, only: str | None) -> dict[str, Path]:
    """Sink id -> dead-letter directory, for the sinks that have one."""
    from kubelogs.config.errors import ConfigError
    from kubelogs.sinks.elasticsearch.config import ElasticsearchConfig

    root = cfg.root.data_dir / "dead_letter"
    dirs: dict[str, Path] = {}
    for cid, comp in cfg.components.items():
        if isinstance(comp, ElasticsearchConfig):
            dirs[cid] = comp.dead_letter.path or root / cid
    if only is not None:
        if only not in dirs:
            known = ", ".join(sorted(dirs)) or "none"
            raise ConfigError(
                f"--sink {only}: no sink with a dead-letter queue has that id (known: {known})"
            )
        return {only: dirs[only]}
    return dirs


def run(args: argparse.Namespace) -> int:
    from kubelogs.config.loader import load_effective_config

    cfg = load_effective_config(args.config)
    dirs = _dirs(cfg, args.sink)
    if args.action == "list":
        return _list(dirs)
    if args.action == "show":
        return _show(dirs, args.output, args.limit)
    return _replay(cfg, dirs)


def _list(dirs: dict[str, Path]) -> int:
    from kubelogs.buffer import dead_letter

    total = 0
    for cid, d in dirs.items():
        entries = [e for _, e in dead_letter.iter_entries(d)]
        total += len(entries)
        if not entries:
            continue
        reasons = Counter(f"{e.status} {e.error_type}" for e in entries)
        times = sorted(e.time for e in entries)
        print(f"{cid}: {len(entries)} entries ({times[0]} .. {times[-1]}) in {d}")
        for reason, n in reasons.most_common(5):
            print(f"  {n} x {reason}")
    if total == 0:
        print("no dead letters")
    return 0


def _show(dirs: dict[str, Path], output: str, limit: int) -> int:
    from kubelogs.buffer import dead_letter

    shown = 0
    for _, d in dirs.items():
        for _, e in dead_letter.iter_entries(d):
            if limit and shown >= limit:
                return 0
            shown += 1
            if output == "json":
                print(json.dumps(dead_letter.entry_as_dict(e), ensure_ascii=False))
            else:
                print(f"{e.time} {e.sink} {e.target} {e.id} {e.status} {e.error_type}: {e.reason}")
    return 0


def _replay(cfg: Config, dirs: dict[str, Path]) -> int:
    import asyncio

    from kubelogs.sinks.elasticsearch.config import ElasticsearchConfig

    left = 0
    for cid, d in dirs.items():
        comp = cfg.components[cid]
        assert isinstance(comp, ElasticsearchConfig)
        delivered, remaining = asyncio.run(_replay_sink(cid, comp, d))
        left += remaining
        print(f"{cid}: {delivered} delivered, {remaining} left in the queue")
    return 0 if left == 0 else 2


async def _replay_sink(cid: str, comp: ElasticsearchConfig, directory: Path) -> tuple[int, int]:
    """Replay every complete file of one sink; returns (delivered, left)."""
    from kubelogs.buffer import dead_letter
    from kubelogs.sinks.elasticsearch.service import HttpTransport

    transport = HttpTransport(comp.hosts, auth=comp.auth, tls=comp.tls, timeout=comp.bulk.timeout)
    delivered = left = 0
    try:
        for path in dead_letter.files(directory):
            entries = dead_letter.read_file(path)
            remaining: list[Entry] = []
            step = comp.bulk.max_events
            for start in range(0, len(entries), step):
                chunk = entries[start : start + step]
                ok, again = await _send(transport, chunk)
                delivered += ok
                remaining.extend(again)
            dead_letter.replace_file(path, remaining)
            left += len(remaining)
    finally:
        await transport.close()
    return delivered, left


async def _send(transport: object, entries: list[Entry]) -> tuple[int, list[Entry]]:
    """Send `entries`; (delivered, entries that stay). Raises when the cluster cannot be
    reached or refuses the request as a whole (the file is then left untouched)."""
    import asyncio

    import msgspec

    from kubelogs.sinks.elasticsearch.encoder import action_line
    from kubelogs.sinks.elasticsearch.retry import (
        DeadLetter,
        Indexed,
        RetryableError,
        classify_item,
        classify_response,
    )
    from kubelogs.sinks.elasticsearch.service import HttpTransport, TransportError

    assert isinstance(transport, HttpTransport)
    pending = list(entries)
    stays: list[Entry] = []
    delivered = 0
    for attempt in range(_REPLAY_ATTEMPTS):
        if not pending:
            break
        body = b"".join(
            action_line(e.target, e.id) + b"\n" + bytes(e.document) + b"\n" for e in pending
        )
        try:
            r = await transport.request(
                "POST", "/_bulk", body, {"Content-Type": "application/x-ndjson"}
            )
            classify_response(r.status, r.body)
        except (TransportError, RetryableError) as exc:
            raise RuntimeError(f"replay stopped, the queue is unchanged: {exc}") from exc
        items = msgspec.json.decode(r.body).get("items", [])
        retry: list[Entry] = []
        for e, item in zip(pending, items, strict=True):
            outcome = classify_item(item)
            if isinstance(outcome, Indexed):
                delivered += 1
            elif isinstance(outcome, DeadLetter):
                stays.append(
                    msgspec.structs.replace(
                        e,
                        status=outcome.status,
                        error_type=outcome.error_type,
                        reason=outcome.reason,
                        attempts=e.attempts + 1,
                    )
                )
            else:
                retry.append(e)
        pending = retry
        if pending:
            await asyncio.sleep(0.5 * 2**attempt)
    if pending:
        print(
            f"{len(pending)} entries refused for now (429/5xx); they stay queued", file=sys.stderr
        )
    return delivered, stays + pending
