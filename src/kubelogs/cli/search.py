"""`kubelogs search [QUERY...]`: the local store from the command line, like grep/tail -f.

Thin on purpose: parse arguments, call `kubelogs.store`, map errors to exit codes
(0 ok; 1 usage, query or missing store; 2 runtime failure such as a damaged index). A
query syntax error prints the query with a caret under the column at fault. Several
arguments are one query (``search error timeout`` is ``error and timeout``). Text
output is ``time namespace/pod/container stream message`` (UTC unless ``--local``),
coloured only on a terminal (rich is imported only then); ``--output json`` prints each
stored document byte for byte, ``--output raw`` the message alone (as ``kubectl logs``).

No silent zeros: a field that no document in the range has is named on stderr with the
closest known field (from the store's field lists, without reading any row); when
``--limit`` cut the output and stderr is a terminal, ``N of M shown`` ends it; a
``--since`` without a unit, ``--since`` after ``--until`` and ``--follow --until`` are
usage errors.

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
from collections.abc import Callable, Iterable, Iterator, Mapping
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
    p.add_argument(
        "query",
        nargs="*",
        metavar="QUERY",
        help="default: everything; several words are joined with 'and'",
    )
    add_time_arguments(p)
    p.add_argument(
        "-n",
        "--limit",
        "--tail",
        dest="limit",
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
        "--histogram",
        action="store_true",
        help="print how many matches fall in each of ~60-120 time buckets (no documents)",
    )
    p.add_argument(
        "--top",
        action="append",
        metavar="FIELD",
        help="print the most frequent values of FIELD among the matches (repeatable)",
    )
    p.add_argument(
        "--top-n",
        type=int,
        default=10,
        metavar="N",
        help="values shown for each top field (default 10)",
    )
    p.add_argument(
        "-o",
        "--output",
        choices=("text", "json", "raw"),
        default="text",
        help="json: each document exactly as stored, one per line; raw: the message alone",
    )
    add_zone_arguments(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--store", metavar="DIR", help="default: $KUBELOGS_STORE, else the config's store"
    )
    add_config_argument(where)
    where.add_argument("--es", metavar="URL", help="search Elasticsearch/OpenSearch instead")
    p.add_argument(
        "--index", metavar="PATTERN", help="with --es (default: logstash-*,logs-kubernetes-*)"
    )
    p.set_defaults(func=run)


def add_time_arguments(p: argparse.ArgumentParser) -> None:
    """``--since`` and ``--until``, shared with `kubelogs logs`."""
    p.add_argument(
        "--since",
        metavar="DUR",
        help="only events newer than DUR ago (15m, 2h, 7d) or an RFC 3339 time",
    )
    p.add_argument("--until", metavar="T", help="only events up to T (RFC 3339, or DUR ago)")


def add_config_argument(
    p: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup, *, short: bool = True
) -> None:
    """``-c FILE``: the store of that config's `local` sink, so that ``kubelogs run -c
    kubelogs.yaml`` is followed by ``kubelogs search -c kubelogs.yaml`` (shared with
    `kubelogs logs`, where ``-c`` is the container, as in kubectl: ``--config`` only)."""
    p.add_argument(
        *(("-c", "--config") if short else ("--config",)),
        metavar="FILE",
        help="search the store of this config's local sink (instead of --store)",
    )


def add_zone_arguments(p: argparse.ArgumentParser) -> None:
    """``--utc`` (the default) and ``--local`` for the times of text output."""
    zone = p.add_mutually_exclusive_group()
    zone.add_argument(
        "--utc",
        dest="local",
        action="store_false",
        default=False,
        help="print times in UTC (the default)",
    )
    zone.add_argument(
        "--local", dest="local", action="store_true", help="print times in the local time zone"
    )


def join_query(parts: list[str]) -> str:
    """One query from several arguments: each is a term of an implied ``and``. An
    argument with spaces is put in parentheses, so ``'a or b' c`` keeps its meaning;
    lone keywords (``error or timeout`` typed unquoted) join as they are."""
    out = []
    for part in parts:
        text = part.strip()
        if len(parts) > 1 and any(c.isspace() for c in text) and not _quoted(text):
            text = f"({text})"
        out.append(text)
    return " ".join(t for t in out if t)


def _quoted(text: str) -> bool:
    return len(text) >= 2 and text[0] == text[-1] == '"' and '"' not in text[1:-1]


def time_bounds(
    command: str, since: str | None, until: str | None, *, follow: bool
) -> tuple[int | None, int | None] | str:
    """``(since_ns, until_ns)`` from the flags, or the one-line usage error. A number
    without a unit is refused (``--since 15``: minutes? seconds?), as are a ``--since``
    after ``--until`` (nothing could match) and ``--follow --until`` (following never
    reaches new events that are all after the end)."""
    from kubelogs.config.unit_parsers import parse_duration
    from kubelogs.store.matcher import parse_time_ns

    now_ns = time.time_ns()
    bounds: list[int | None] = []
    for flag, text in (("--since", since), ("--until", until)):
        if text is None:
            bounds.append(None)
            continue
        if text.strip().replace(".", "", 1).isdigit():
            return (
                f"kubelogs {command}: {flag} {text}: add a unit ({text}s, {text}m, {text}h "
                f"or {text}d) or give an RFC 3339 time"
            )
        when = parse_time_ns(text)
        if when is None:
            try:
                when = now_ns - int(parse_duration(text) * 1e9)
            except ValueError:
                return (
                    f"kubelogs {command}: {flag} {text!r}: not a duration like 15m or an "
                    "RFC 3339 time like 2025-01-15T10:00:00Z"
                )
        bounds.append(when)
    lo, hi = bounds
    if lo is not None and hi is not None and lo > hi:
        return f"kubelogs {command}: --since {since} is after --until {until}: nothing can match"
    if follow and hi is not None:
        return f"kubelogs {command}: --follow and --until cannot be combined (follow never ends)"
    return lo, hi


def run(args: argparse.Namespace) -> int:
    from kubelogs.store import (
        QueryError,
        QuerySyntaxError,
        StoreCorruptError,
        parse_query,
    )

    err = sys.stderr
    if args.index and not args.es:
        print("kubelogs search: --index needs --es URL", file=err)
        return 1
    if args.limit < 0:
        print(f"kubelogs search: --limit {args.limit}: must be 0 (all) or more", file=err)
        return 1
    if args.count and args.follow:
        print("kubelogs search: --count and --follow cannot be combined", file=err)
        return 1
    aggregating = bool(args.histogram or args.top)
    if aggregating and (args.follow or args.count):
        other = "--follow" if args.follow else "--count"
        print(f"kubelogs search: --histogram/--top and {other} cannot be combined", file=err)
        return 1
    if args.top_n < 1:
        print(f"kubelogs search: --top-n {args.top_n}: must be 1 or more", file=err)
        return 1
    query = join_query(args.query)
    try:
        node = parse_query(query)
    except QuerySyntaxError as exc:
        print(f"kubelogs search: invalid query: {exc}", file=err)
        print(_indent(exc.caret_lines()), file=err)
        return 1
    bounds = time_bounds("search", args.since, args.until, follow=args.follow)
    if isinstance(bounds, str):
        print(bounds, file=err)
        return 1
    if args.es:
        from kubelogs.cli.search_es import run_es

        return run_es(args, node, bounds, lambda k, f: _printer(k, f, local=args.local))
    reader = open_reader("search", args.store, args.config)
    if isinstance(reader, int):
        return reader
    try:
        with reader:
            prepared = reader.prepare(node, since_ns=bounds[0], until_ns=bounds[1])
            position = reader.last_block()
            prepared.until_block = position
            warn_unknown_fields("search", reader, prepared)
            workers = _workers(reader)
            if aggregating:
                from kubelogs.cli.search_agg import run_local

                return run_local(args, reader, prepared, workers)
            if args.count:
                if workers > 1:
                    counts = _sharded(reader, prepared, workers, lambda r, q: r.count(q))
                    print(sum(n for n, _ in counts))
                    return _warn_corrupt(sum(bad for _, bad in counts))
                print(reader.count(prepared))
                return _warn_corrupt(reader.corrupt_blocks)
            out = _printer(args.output, reader.layout.message_field, local=args.local)
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
            shown = 0
            for hit in hits:
                out(hit.time_ns, hit.doc)
                shown += 1
            sys.stdout.flush()
            if args.limit and shown == args.limit and _stderr_is_terminal():
                # After the matches are out: counting may read every block (a word
                # search), and the person at the terminal reads meanwhile.
                try:
                    total = (
                        sum(n for n, _ in _sharded(reader, prepared, workers, _count))
                        if workers > 1
                        else reader.count(prepared)
                    )
                except KeyboardInterrupt:
                    return 0  # the matches were printed; only the footer was skipped
                if total > shown:
                    print(f"{shown} of {total} shown (use --limit 0 for all)", file=err)
            if args.follow:
                return follow(reader, prepared, position, out)
            return _warn_corrupt(reader.corrupt_blocks + corrupt)
    except QueryError as exc:
        print(f"kubelogs search: invalid query: {exc}", file=err)
        return 1
    except (StoreCorruptError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"kubelogs search: {exc}", file=err)
        return 2


def open_reader(command: str, explicit: str | None, config: str | None = None) -> Any:
    """A `StoreReader` on the store the user means, or the exit code after a one-line
    error (1: no store, another format, or a config without a local sink; 2: a damaged
    index)."""
    from kubelogs.store import StoreError, StoreNotFound, StoreReader, StoreVersionError

    err = sys.stderr
    if config is not None:
        found = config_store_path(config)
        if isinstance(found, str):
            print(f"kubelogs {command}: {found}", file=err)
            return 1
        store = found
    else:
        store = _store_path(explicit)
    try:
        return StoreReader(store)
    except StoreNotFound:
        print(
            f"kubelogs {command}: no store at {store} (nothing stored there yet?); "
            "use --store DIR, -c CONFIG or set KUBELOGS_STORE",
            file=err,
        )
        return 1
    except StoreVersionError as exc:
        print(f"kubelogs {command}: {exc}", file=err)
        return 1
    except StoreError as exc:
        print(f"kubelogs {command}: {exc}", file=err)
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


def config_store_path(config: str) -> Path | str:
    """The store of `config`'s `local` sink (its `path`, else ``<data_dir>/store``), or
    why there is none. A config that does not load raises its `ConfigError` (one line
    naming the file and the problem, via `cli.errors`)."""
    from kubelogs.config.errors import ConfigError
    from kubelogs.config.loader import load_config

    try:
        cfg = load_config(Path(config))
    except ConfigError as exc:
        # The agent's config names `${NODE_NAME}`, tokens and hosts that the shell one
        # searches from lacks; they do not change where the store is. Unset variables
        # read as empty here; a config still invalid then raises its own problems.
        try:
            cfg = load_config(Path(config), env=_EnvOrEmpty())
        except ConfigError:
            raise exc from None
    stores = [
        (cid, getattr(comp, "path", None) or cfg.root.data_dir / "store")
        for cid, comp in cfg.components.items()
        if comp.type == "local"
    ]
    if not stores:
        return f"{config} has no sink of type local (search its sink's own store instead)"
    return Path(stores[0][1])


class _EnvOrEmpty(Mapping[str, str]):
    """`os.environ` in which every unset variable reads as empty."""

    def __getitem__(self, key: str) -> str:
        return os.environ.get(key, "")

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


def _store_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("KUBELOGS_STORE")
    if env:
        return Path(env)
    from kubelogs.config.loader import default_store_path

    return default_store_path()


def _count(reader: Any, prepared: Any) -> Any:
    return reader.count(prepared)


def warn_unknown_fields(command: str, reader: Any, prepared: Any) -> None:
    """Name on stderr each field of the query that no document in range has, with the
    closest known one: a typo otherwise answers 0 without a word. A time range outside
    everything stored is said instead (`--since 15m` on a store of last week)."""
    hint = range_hint(reader, prepared.lo, prepared.hi)
    if hint:
        print(f"kubelogs {command}: {hint}", file=sys.stderr)
        return
    for name, close in reader.unknown_fields(prepared):
        hint = f"; did you mean {close}?" if close else ""
        print(f"kubelogs {command}: no document has field {name}{hint}", file=sys.stderr)


def range_hint(reader: Any, lo: int | None, hi: int | None) -> str:
    """Why a time range finds nothing when the store holds events only outside it
    (with their span, so the user knows what `--since`/`--until` to give), else ''."""
    stats = reader.stats()
    if not stats.docs or stats.min_time is None or stats.max_time is None:
        return ""
    below = lo is not None and stats.max_time < lo
    above = hi is not None and stats.min_time > hi
    if not (below or above):
        return ""
    first = format_time(stats.min_time)
    last = format_time(stats.max_time)
    flag = "--since" if below else "--until"
    return (
        f"no events in the time range: the store holds events from {first} to {last} "
        f"(widen or drop {flag})"
    )


def _stderr_is_terminal() -> bool:
    """Whether hints for a person (``N of M shown``) go to stderr; a script reading
    stdout or stderr from a pipe never gets them."""
    return sys.stderr.isatty()


def _warn_corrupt(count: int) -> int:
    if count:
        print(f"kubelogs search: warning: skipped {count} damaged block(s)", file=sys.stderr)
    return 0


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def follow(reader: Any, prepared: Any, position: int, out: Callable[[int, bytes], None]) -> int:
    """Print the matches stored after `position` as they come, until Ctrl-C (exit 0):
    `--follow` of `search` and `-f` of `logs`."""
    try:
        while True:
            time.sleep(FOLLOW_INTERVAL)
            new, position = reader.poll(prepared, position)
            for hit in new:
                out(hit.time_ns, hit.doc)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0


def _printer(kind: str, message_field: str, *, local: bool = False) -> Callable[[int, bytes], None]:
    """The writer of one hit for ``--output`` `kind`: json (the document as stored),
    raw (the message alone) or text (time, source, stream, message)."""
    if kind == "json":
        raw = sys.stdout.buffer

        def write_json(time_ns: int, doc: bytes) -> None:
            raw.write(doc + b"\n")

        return write_json
    import msgspec

    from kubelogs.store.matcher import get_field, is_missing

    decode = msgspec.json.Decoder().decode

    def message_of(obj: Any) -> str:
        message = get_field(obj, message_field)
        return "" if is_missing(message) else str(message)

    def parse(doc: bytes) -> Any:
        try:
            return decode(doc)
        except msgspec.DecodeError:
            return {}

    if kind == "raw":

        def write_raw(time_ns: int, doc: bytes) -> None:
            sys.stdout.write(message_of(parse(doc)) + "\n")

        return write_raw
    colour = _console(sys.stdout)

    def write_text(time_ns: int, doc: bytes) -> None:
        obj = parse(doc)
        message = message_of(obj)
        parts = [
            _first(obj, "kubernetes.namespace", "kubernetes.namespace_name"),
            _first(obj, "kubernetes.pod.name", "kubernetes.pod_name"),
            _first(obj, "kubernetes.container.name", "kubernetes.container_name"),
        ]
        source = "/".join(p for p in parts if p) or _first(obj, "log.file.path", "host.name")
        stamp = format_time(time_ns, local=local)
        stream = _first(obj, "stream") or "-"
        if colour is None:
            sys.stdout.write(f"{stamp} {source or '-'} {stream} {message}\n")
        else:
            colour(stamp, source or "-", stream, message)

    def _first(obj: Any, *paths: str) -> str:
        for path in paths:
            value = get_field(obj, path)
            if isinstance(value, str) and value:
                return value
        return ""

    return write_text


def _console(stream: IO[str]) -> Callable[[str, str, str, str], None] | None:
    """A coloured line writer when `stream` is a terminal (and NO_COLOR is unset)."""
    if not stream.isatty() or os.environ.get("NO_COLOR"):
        return None
    from rich.console import Console
    from rich.text import Text

    console = Console(file=stream, highlight=False, soft_wrap=True)

    def write(stamp: str, source: str, stream_name: str, message: str) -> None:
        is_stderr = stream_name == "stderr"
        line = Text()
        line.append(stamp, style="dim")
        line.append(" ")
        line.append(source, style="cyan")
        line.append(" ")
        line.append(stream_name, style="red" if is_stderr else "dim")
        line.append(" ")
        line.append(message, style="red" if is_stderr else "")
        console.print(line)

    return write


def format_time(ns: int, *, local: bool = False) -> str:
    """Milliseconds are enough to read; `--output json` keeps the stored nanoseconds.
    UTC ends with ``Z``; local time with its offset (``+01:00``), so a pasted line
    still says when it happened."""
    if not local:
        from kubelogs.codecs.document import format_timestamp

        return format_timestamp(ns)[:23] + "Z"
    from datetime import datetime

    when = datetime.fromtimestamp(ns / 1e9).astimezone()
    return when.isoformat(timespec="milliseconds")
