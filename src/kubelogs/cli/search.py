"""`kubelogs search [QUERY]`: the local store from the command line, like grep/tail -f.

Thin on purpose: parse arguments, call `kubelogs.store`, map errors to exit codes
(0 ok; 1 usage, query or missing store; 2 runtime failure such as a damaged index). A
query syntax error prints the query with a caret under the column at fault. Text output
is ``time namespace/pod/container message``, coloured only on a terminal (rich is
imported only then); ``--output json`` prints each stored document byte for byte.

``--count`` and ``--limit N`` on a store of many blocks fork one process per CPU (at most
four; ``KUBELOGS_SEARCH_WORKERS`` overrides, ``1`` keeps one process), each searching a
share of the blocks (`store.parallel`): a word search is CPU-bound on decompressing and
lower-casing message columns. ``--limit 0`` and ``--follow`` stream in one process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

FOLLOW_INTERVAL = 0.5
"""Seconds between index polls with ``--follow``: the sink commits about once a second."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "search",
        help="search the local store",
        description=(
            'Search stored logs with a KQL subset: field:value, "a phrase", words, '
            "and/or/not, parentheses, * wildcards, field >= value. Prints the newest "
            "matches oldest first."
        ),
    )
    p.add_argument("query", nargs="?", default="", metavar="QUERY", help="default: everything")
    p.add_argument(
        "--since",
        metavar="DUR",
        help="only events newer than DUR ago (15m, 2h, 7d) or an RFC 3339 time",
    )
    p.add_argument("--until", metavar="T", help="only events up to T (RFC 3339, or DUR ago)")
    p.add_argument(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help="print the newest N matches (default 100; 0 = all)",
    )
    p.add_argument("--count", action="store_true", help="print only the number of matches")
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new matches until Ctrl-C"
    )
    p.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="json: each document exactly as stored, one per line",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--store", metavar="DIR", help="default: $KUBELOGS_STORE, else the config's store"
    )
    where.add_argument("--es", metavar="URL", help="Elasticsearch/OpenSearch (not supported yet)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kubelogs.config.unit_parsers import parse_duration
    from kubelogs.store import (
        QueryError,
        QuerySyntaxError,
        StoreCorruptError,
        StoreError,
        StoreNotFound,
        StoreReader,
        StoreVersionError,
        parse_query,
    )
    from kubelogs.store.matcher import parse_time_ns

    err = sys.stderr
    if args.es:
        print("kubelogs search: --es is not supported yet; use --store DIR", file=err)
        return 1
    if args.limit < 0:
        print(f"kubelogs search: --limit {args.limit}: must be 0 (all) or more", file=err)
        return 1
    if args.count and args.follow:
        print("kubelogs search: --count and --follow cannot be combined", file=err)
        return 1
    try:
        node = parse_query(args.query)
    except QuerySyntaxError as exc:
        print(f"kubelogs search: invalid query: {exc}", file=err)
        print(_indent(exc.caret_lines()), file=err)
        return 1
    now_ns = time.time_ns()
    bounds: list[int | None] = []
    for flag, text in (("--since", args.since), ("--until", args.until)):
        if text is None:
            bounds.append(None)
            continue
        when = parse_time_ns(text)
        if when is None:
            try:
                when = now_ns - int(parse_duration(text) * 1e9)
            except ValueError:
                print(
                    f"kubelogs search: {flag} {text!r}: not a duration like 15m or an "
                    "RFC 3339 time like 2025-01-15T10:00:00Z",
                    file=err,
                )
                return 1
        bounds.append(when)
    store = _store_path(args.store)
    try:
        reader = StoreReader(store)
    except StoreNotFound:
        print(
            f"kubelogs search: no store at {store} (nothing stored there yet?); "
            "use --store DIR or set KUBELOGS_STORE",
            file=err,
        )
        return 1
    except StoreVersionError as exc:
        print(f"kubelogs search: {exc}", file=err)
        return 1
    except StoreError as exc:
        print(f"kubelogs search: {exc}", file=err)
        return 2
    try:
        with reader:
            prepared = reader.prepare(node, since_ns=bounds[0], until_ns=bounds[1])
            position = reader.last_block()
            prepared.until_block = position
            workers = _workers(reader)
            if args.count:
                if workers > 1:
                    counts = _sharded(reader, prepared, workers, lambda r, q: r.count(q))
                    print(sum(n for n, _ in counts))
                    return _warn_corrupt(sum(bad for _, bad in counts))
                print(reader.count(prepared))
                return _warn_corrupt(reader.corrupt_blocks)
            out = _printer(args.output, reader.layout.message_field)
            hits: Iterable[Any]
            corrupt = 0
            if args.limit == 0:
                hits = reader.iter_matches(prepared)
            elif workers > 1:
                limit = args.limit
                shards = _sharded(reader, prepared, workers, lambda r, q: r.search(q, limit=limit))
                hits = sorted(h for found, _ in shards for h in found)[-limit:]
                corrupt = sum(bad for _, bad in shards)
            else:
                hits = reader.search(prepared, limit=args.limit)
            for hit in hits:
                out(hit.time_ns, hit.doc)
            sys.stdout.flush()
            if args.follow:
                try:
                    while True:
                        time.sleep(FOLLOW_INTERVAL)
                        new, position = reader.poll(prepared, position)
                        for hit in new:
                            out(hit.time_ns, hit.doc)
                        sys.stdout.flush()
                except KeyboardInterrupt:
                    return 0
            return _warn_corrupt(reader.corrupt_blocks + corrupt)
    except QueryError as exc:
        print(f"kubelogs search: invalid query: {exc}", file=err)
        return 1
    except (StoreCorruptError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"kubelogs search: {exc}", file=err)
        return 2


_PARALLEL_BLOCKS = 16
"""Fewer blocks than this are searched in one process: forking would cost more."""


def _workers(reader: Any) -> int:
    """Processes for a search of the whole store: one per CPU for a store of many blocks
    (`store.parallel`); `KUBELOGS_SEARCH_WORKERS` overrides (1: no fork)."""
    from kubelogs.store.parallel import MAX_WORKERS, cpu_workers

    override = os.environ.get("KUBELOGS_SEARCH_WORKERS", "")
    if override.isdigit():
        return max(1, min(int(override), MAX_WORKERS))
    if reader.stats().blocks < _PARALLEL_BLOCKS:
        return 1
    return cpu_workers()


def _sharded(reader: Any, prepared: Any, workers: int, work: Callable[[Any, Any], Any]) -> Any:
    """`work(reader, query)` in `workers` processes, each on a share of the blocks of
    the same snapshot (`store.parallel`)."""
    from dataclasses import replace

    from kubelogs.store.parallel import run_sharded, shard_ranges

    def shard_work(shard_reader: Any, block_range: tuple[int, int]) -> Any:
        q = shard_reader.prepare(prepared.node, since_ns=prepared.lo, until_ns=prepared.hi)
        return work(
            shard_reader, replace(q, until_block=prepared.until_block, block_range=block_range)
        )

    shards = shard_ranges(reader.block_sizes(prepared.until_block), workers)
    return run_sharded(reader.path, shard_work, shards)


def _store_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("KUBELOGS_STORE")
    if env:
        return Path(env)
    from kubelogs.config.loader import default_store_path

    return default_store_path()


def _warn_corrupt(count: int) -> int:
    if count:
        print(f"kubelogs search: warning: skipped {count} damaged block(s)", file=sys.stderr)
    return 0


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def _printer(kind: str, message_field: str) -> Callable[[int, bytes], None]:
    if kind == "json":
        raw = sys.stdout.buffer

        def write_json(time_ns: int, doc: bytes) -> None:
            raw.write(doc + b"\n")

        return write_json
    import msgspec

    from kubelogs.store.matcher import get_field, is_missing

    decode = msgspec.json.Decoder().decode
    colour = _console(sys.stdout)

    def write_text(time_ns: int, doc: bytes) -> None:
        try:
            obj = decode(doc)
        except msgspec.DecodeError:
            obj = {}
        message = get_field(obj, message_field)
        message = "" if is_missing(message) else str(message)
        parts = [
            _first(obj, "kubernetes.namespace", "kubernetes.namespace_name"),
            _first(obj, "kubernetes.pod.name", "kubernetes.pod_name"),
            _first(obj, "kubernetes.container.name", "kubernetes.container_name"),
        ]
        source = "/".join(p for p in parts if p) or _first(obj, "log.file.path", "host.name")
        stamp = _format_time(time_ns)
        stream = _first(obj, "stream")
        if colour is None:
            sys.stdout.write(f"{stamp} {source or '-'} {message}\n")
        else:
            colour(stamp, source or "-", message, stream == "stderr")

    def _first(obj: Any, *paths: str) -> str:
        for path in paths:
            value = get_field(obj, path)
            if isinstance(value, str) and value:
                return value
        return ""

    return write_text


def _console(stream: IO[str]) -> Callable[[str, str, str, bool], None] | None:
    """A coloured line writer when `stream` is a terminal (and NO_COLOR is unset)."""
    if not stream.isatty() or os.environ.get("NO_COLOR"):
        return None
    from rich.console import Console
    from rich.text import Text

    console = Console(file=stream, highlight=False, soft_wrap=True)

    def write(stamp: str, source: str, message: str, is_stderr: bool) -> None:
        line = Text()
        line.append(stamp, style="dim")
        line.append(" ")
        line.append(source, style="cyan")
        line.append(" ")
        line.append(message, style="red" if is_stderr else "")
        console.print(line)

    return write


def _format_time(ns: int) -> str:
    """Milliseconds are enough to read; `--output json` keeps the stored nanoseconds."""
    from kubelogs.codecs.document import format_timestamp

    return format_timestamp(ns)[:23] + "Z"
