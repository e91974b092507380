"""`kubelogs ui [--store DIR | --es URL] [--listen 127.0.0.1:8080] [--auth-token T]`:
the log explorer in the browser (`kubelogs.ui`).

Binds 127.0.0.1:8080 by default. Any other address needs a token (``--auth-token`` or
``$KUBELOGS_UI_TOKEN``), because the explorer shows every stored line to whoever
reaches it; without one it refuses to start (exit 1) rather than serve the logs to the
network. Prints the address to open (with ``?token=`` when a token is set: the first
load sets a cookie and drops it from the address) and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "ui",
        help="explore stored logs in the browser",
        description=(
            "Serve a log explorer (search, histogram, live tail) over the local store or "
            "Elasticsearch. Read-only; binds 127.0.0.1 unless told otherwise."
        ),
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--store", metavar="DIR", help="default: $KUBELOGS_STORE, else the config's store"
    )
    where.add_argument("--es", metavar="URL", help="explore Elasticsearch/OpenSearch instead")
    from kubelogs.cli.search import add_config_argument

    add_config_argument(where)
    p.add_argument(
        "--index", metavar="PATTERN", help="with --es (default: logstash-*,logs-kubernetes-*)"
    )
    p.add_argument(
        "--listen",
        default="127.0.0.1:8080",
        metavar="HOST:PORT",
        help="address to serve on (default 127.0.0.1:8080; port 0 picks a free one)",
    )
    p.add_argument(
        "--auth-token",
        metavar="T",
        help="require this token (default: $KUBELOGS_UI_TOKEN); needed off loopback",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kubelogs.config.addresses import parse_listen
    from kubelogs.ui.security import is_loopback

    err = sys.stderr
    try:
        host, port = parse_listen(args.listen)
    except ValueError as exc:
        print(f"kubelogs ui: --listen {exc}", file=err)
        return 1
    token = args.auth_token or os.environ.get("KUBELOGS_UI_TOKEN") or None
    if token is not None and (len(token) < 8 or any(c.isspace() for c in token)):
        print("kubelogs ui: --auth-token: use at least 8 characters without spaces", file=err)
        return 1
    if token is None and not is_loopback(host):
        print(
            f"kubelogs ui: --listen {args.listen} is reachable from other machines: "
            "set --auth-token T (or $KUBELOGS_UI_TOKEN), or listen on 127.0.0.1",
            file=err,
        )
        return 1
    if args.index and not args.es:
        print("kubelogs ui: --index needs --es URL", file=err)
        return 1
    backend = _backend(args)
    if isinstance(backend, int):
        return backend
    from kubelogs.ui.server import serve

    def ready(url: str) -> None:
        suffix = f"?token={token}" if token else ""
        print(f"kubelogs ui: serving {backend.describe()['where']} on {url}{suffix}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)

    try:
        asyncio.run(serve(backend, host, port, token, ready))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"kubelogs ui: cannot listen on {args.listen}: {exc.strerror or exc}", file=err)
        return 1
    return 0


def _backend(args: argparse.Namespace) -> Any:
    """The store or cluster to explore, or an exit code after a one-line error."""
    err = sys.stderr
    if args.es:
        from kubelogs.ui.es_backend import EsBackend

        try:
            return EsBackend(args.es, args.index)
        except ValueError as exc:
            print(f"kubelogs ui: {exc}", file=err)
            return 1
    from kubelogs.cli.search import _store_path
    from kubelogs.store import StoreError, StoreNotFound
    from kubelogs.ui.backend import StoreBackend

    if args.config is not None:
        from kubelogs.cli.search import config_store_path

        found = config_store_path(args.config)
        if isinstance(found, str):
            print(f"kubelogs ui: {found}", file=err)
            return 1
        path = found
    else:
        path = _store_path(args.store)
    try:
        return StoreBackend(path)
    except StoreNotFound:
        print(
            f"kubelogs ui: no store at {path} (nothing stored there yet?); "
            "use --store DIR, -c CONFIG or set KUBELOGS_STORE",
            file=err,
        )
        return 1
    except StoreError as exc:
        print(f"kubelogs ui: {exc}", file=err)
        return 1
