"""`kubelogs search --es URL [--index PATTERN]`: the same query language, options and
output over Elasticsearch or OpenSearch.

The query is compiled to query DSL by `kubelogs.store.compile_es` (bool / term /
match_phrase / wildcard / range, as Kibana does for KQL); `--since`/`--until` become a
range on ``@timestamp`` with nanoseconds (the sink's template maps it ``date_nanos``).
Hits are printed by the same printer as the local store's, from ``_source`` re-encoded
with the encoder that wrote it, so ``--output json`` gives the documents as shipped.

- ``--limit N``: one request, newest N (sorted by ``@timestamp`` descending), printed
  oldest first;
- ``--limit 0``: every match, oldest first, through the scroll API (stable over a
  changing index, on Elasticsearch 7/8 and OpenSearch alike);
- ``--count``: ``_count``;
- ``--follow``: polls for documents at or after the newest printed time, skipping the
  ``_id``s already printed at that time.

Plain ``urllib``: this path must start fast and import neither asyncio nor aiohttp (the
local store's search does not either). Credentials in the URL (``https://user:pw@host``)
become a basic ``Authorization`` header and are removed from every message;
``KUBELOGS_ES_CA_FILE`` names a CA bundle for ``https``.
"""

from __future__ import annotations

import argparse
import base64
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

DEFAULT_INDEX = "logstash-*,logs-kubernetes-*"
"""What the `elasticsearch` sink writes by default (dated indices, data streams)."""
_PAGE = 5000
_encode = msgspec.json.Encoder().encode


class EsSearchError(Exception):
    """One sentence naming the cluster (without credentials) and what went wrong."""


class _Client:
    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EsSearchError(f"--es {url!r}: not an http(s)://host:port URL")
        self.auth: str | None = None
        if parts.username is not None:
            raw = f"{urllib.parse.unquote(parts.username)}:"
            raw += urllib.parse.unquote(parts.password or "")
            self.auth = "Basic " + base64.b64encode(raw.encode()).decode()
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        ca = os.environ.get("KUBELOGS_ES_CA_FILE")
        self.ssl = ssl.create_default_context(cafile=ca) if parts.scheme == "https" else None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else _encode(body)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if self.auth:
            req.add_header("Authorization", self.auth)
        try:
            with urllib.request.urlopen(req, timeout=60, context=self.ssl) as r:
                return msgspec.json.decode(r.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace").replace("\n", " ")
            raise EsSearchError(
                f"{self.base}: {method} {path.split('?')[0]}: {exc.code} {detail}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EsSearchError(f"{self.base}: unreachable: {reason}") from None
        except msgspec.DecodeError:
            raise EsSearchError(f"{self.base}: the answer to {path} is not JSON") from None


def _query(
    node: Any, since_ns: int | None, until_ns: int | None, message_field: str = "message"
) -> dict[str, Any]:
    from kubelogs.codecs.timestamps import format_timestamp
    from kubelogs.store.compile_es import compile_es

    query = compile_es(node, message_field=message_field, store_words=True)
    bounds: dict[str, str] = {}
    if since_ns is not None:
        bounds["gte"] = format_timestamp(since_ns)
    if until_ns is not None:
        bounds["lte"] = format_timestamp(until_ns)
    if bounds:
        query = {"bool": {"filter": [query, {"range": {"@timestamp": bounds}}]}}
    return query


def _hit_time(hit: Any) -> int:
    from kubelogs.codecs.timestamps import parse_rfc3339_ns

    ts = (hit.get("_source") or {}).get("@timestamp")
    return (parse_rfc3339_ns(ts.encode()) if isinstance(ts, str) else None) or 0


_OPTS = "ignore_unavailable=true&allow_no_indices=true"
_SORT_ASC = [{"@timestamp": {"order": "asc"}}]


def _all(client: _Client, index: str, query: dict[str, Any]) -> Iterator[Any]:
    res = client.call(
        "POST",
        f"/{index}/_search?scroll=2m&{_OPTS}",
        {"query": query, "size": _PAGE, "sort": _SORT_ASC},
    )
    scroll_id = res.get("_scroll_id")
    try:
        while True:
            hits = res.get("hits", {}).get("hits", [])
            yield from hits
            if len(hits) < _PAGE or not scroll_id:
                return
            res = client.call("POST", "/_search/scroll", {"scroll": "2m", "scroll_id": scroll_id})
            scroll_id = res.get("_scroll_id", scroll_id)
    finally:
        if scroll_id:
            try:
                client.call("DELETE", "/_search/scroll", {"scroll_id": [scroll_id]})
            except EsSearchError:
                pass  # expires by itself in two minutes


def _newest(client: _Client, index: str, query: dict[str, Any], limit: int) -> list[Any]:
    body = {"query": query, "size": limit, "sort": [{"@timestamp": {"order": "desc"}}]}
    hits = client.call("POST", f"/{index}/_search?{_OPTS}", body).get("hits", {}).get("hits", [])
    return list(reversed(hits))


def run_es(
    args: argparse.Namespace,
    node: Any,
    bounds: tuple[int | None, int | None],
    printer: Callable[[str, str], Callable[[int, bytes], None]],
) -> int:
    """Run one search against `args.es`; exit code as for the local store."""
    err = sys.stderr
    index = args.index or DEFAULT_INDEX
    try:
        client = _Client(args.es)
        query = _query(node, *bounds)
        if args.histogram or args.top:
            from kubelogs.cli.search_es_agg import run_es_aggregate

            return run_es_aggregate(args, client, index, query, bounds)
        if args.count:
            res = client.call("POST", f"/{index}/_count?{_OPTS}", {"query": query})
            print(int(res.get("count", 0)))
            return 0
        out = printer(args.output, "message")
        hits = (
            _all(client, index, query)
            if args.limit == 0
            else _newest(client, index, query, args.limit)
        )
        last_ns = 0
        seen_at_last: set[str] = set()
        for hit in hits:
            t = _hit_time(hit)
            out(t, _encode(hit.get("_source", {})))
            if t != last_ns:
                last_ns, seen_at_last = t, set()
            seen_at_last.add(hit.get("_id", ""))
        sys.stdout.flush()
        if args.follow:
            return _follow(client, index, node, bounds, out, last_ns, seen_at_last)
        return 0
    except EsSearchError as exc:
        print(f"kubelogs search: {exc}", file=err)
        return 2


def _follow(
    client: _Client,
    index: str,
    node: Any,
    bounds: tuple[int | None, int | None],
    out: Callable[[int, bytes], None],
    last_ns: int,
    seen: set[str],
) -> int:
    from kubelogs.cli.search import FOLLOW_INTERVAL

    try:
        while True:
            time.sleep(FOLLOW_INTERVAL)
            since = max(last_ns, bounds[0] or 0) or None
            for hit in _all(client, index, _query(node, since, None)):
                t, hid = _hit_time(hit), hit.get("_id", "")
                if t == last_ns and hid in seen:
                    continue
                out(t, _encode(hit.get("_source", {})))
                if t != last_ns:
                    last_ns, seen = t, set()
                seen.add(hid)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0
