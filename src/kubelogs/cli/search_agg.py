"""``kubelogs search --histogram`` and ``--top FIELD``: counts instead of documents.

The local store computes them with `store.aggregate` (one process per CPU for a store of
many blocks, as ``--count``); ``--es`` asks Elasticsearch for the same buckets
(`date_histogram` with the same fixed interval, aligned on the epoch like ours) and
``terms`` (`search_es.run_es_aggregate`). Both print through `print_result`, so the two
outputs compare line for line:

- text: ``N matches``, a one-line sparkline of the histogram with its first bucket,
  last bucket and width, then one line per bucket (start, count, bar) and, for each
  ``--top`` field, its values with their counts;
- ``-o json``: one object ``{"total", "step_ns", "buckets": [{"time", "count"}],
  "top": {field: [{"value", "count"}]}}`` for scripts and tests.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

SPARKS = " ▁▂▃▄▅▆▇█"
BAR_WIDTH = 40


def human_step(step_ns: int) -> str:
    """``30s``, ``5m``, ``2h``, ``1d``: the bucket width as a person writes it."""
    seconds = step_ns // 1_000_000_000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    if seconds and step_ns % 1_000_000_000 == 0:
        return f"{seconds}s"
    return f"{step_ns // 1_000_000}ms" if step_ns % 1_000_000 == 0 else f"{step_ns}ns"


def sparkline(counts: list[int]) -> str:
    """One character per bucket; an empty bucket is a space, any other at least ``▁``."""
    peak = max(counts, default=0)
    if not peak:
        return " " * len(counts)
    top = len(SPARKS) - 1
    return "".join(SPARKS[0] if c == 0 else SPARKS[max(1, -(-c * top // peak))] for c in counts)


def print_result(
    args: argparse.Namespace,
    total: int,
    start_ns: int,
    step_ns: int,
    counts: list[int],
    top: dict[str, list[tuple[Any, int]]],
) -> None:
    """Print an aggregation as text or (``-o json``) one JSON object."""
    from kubelogs.cli.search import format_time

    out = sys.stdout
    if args.output == "json":
        body: dict[str, Any] = {"total": total}
        if args.histogram:
            body["step_ns"] = step_ns
            body["buckets"] = [
                {"time": format_time(start_ns + k * step_ns), "count": c}
                for k, c in enumerate(counts)
            ]
        body["top"] = {
            f: [{"value": v, "count": n} for v, n in values] for f, values in top.items()
        }
        out.write(msgspec.json.encode(body).decode() + "\n")
        return
    out.write(f"{total} matches\n")
    if args.histogram and counts:
        first = format_time(start_ns, local=args.local)
        last = format_time(start_ns + (len(counts) - 1) * step_ns, local=args.local)
        out.write(f"{first} |{sparkline(counts)}| {last}  ({human_step(step_ns)} per bar)\n")
        peak = max(counts) or 1
        for k, c in enumerate(counts):
            bar = "#" * (-(-c * BAR_WIDTH // peak))
            out.write(f"{format_time(start_ns + k * step_ns, local=args.local)} {c:>9} {bar}\n")
    for f, values in top.items():
        out.write(f"\ntop {f}:\n" if args.histogram or len(top) > 1 else f"top {f}:\n")
        width = max((len(str(n)) for _, n in values), default=1)
        for value, n in values:
            out.write(f"  {n:>{width}}  {value}\n")
        if not values:
            out.write("  (no document has this field)\n")
    out.flush()


def histogram_span(
    lo: int | None, hi: int | None, data_lo: int | None, data_hi: int | None, now_ns: int
) -> tuple[int, int] | None:
    """The histogram's span: the query's bounds where given; an open end after a given
    start is now (``--since 1h``: the last hour, empty bars included), else the data's
    first or last event. None when there is nothing to span (no bounds, no data)."""
    from kubelogs.store.planner import MAX_TIME, MIN_TIME

    lo = None if lo is None or lo <= MIN_TIME else lo
    hi = None if hi is None or hi >= MAX_TIME else hi
    start = lo if lo is not None else data_lo
    if hi is not None:
        end: int | None = hi
    elif lo is not None:
        end = max(now_ns, data_hi) if data_hi is not None else now_ns
    else:
        end = data_hi
    if start is None and end is None:
        return None
    start = end if start is None else start
    end = start if end is None else end
    assert start is not None
    assert end is not None
    return start, max(start, end)


def run_local(args: argparse.Namespace, reader: Any, prepared: Any, workers: int) -> int:
    """Aggregate over the local store and print; returns the exit code."""
    import time

    from kubelogs.store.aggregate import Buckets, aggregate_parallel

    stats = reader.stats()
    buckets = None
    if args.histogram:
        span = histogram_span(
            prepared.lo, prepared.hi, stats.min_time, stats.max_time, time.time_ns()
        )
        buckets = Buckets.for_range(*span) if span is not None else None
    fields = list(dict.fromkeys(args.top or []))
    result, bad = aggregate_parallel(reader, prepared, workers, buckets=buckets, fields=fields)
    top = {f: result.top_values(f, args.top_n) for f in fields}
    start, step = (buckets.start, buckets.step) if buckets else (0, 0)
    print_result(args, result.total, start, step, result.counts, top)
    if bad:
        print(f"kubelogs search: warning: skipped {bad} damaged block(s)", file=sys.stderr)
    return 0
