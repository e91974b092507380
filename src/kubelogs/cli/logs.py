"""`kubelogs logs [NAMESPACE/]POD`: one pod's stored logs, as ``kubectl logs`` prints them.

``kubectl logs`` asks the kubelet, so it shows nothing once a pod is gone (evicted,
scaled down, crash-looped away); this command reads the local store, where the logs stay
until retention removes them. Same habits as kubectl: the message alone (``--timestamps``
adds the time), ``-c`` for a container, ``-f`` to follow, ``--since`` and ``--tail``;
``-n`` is the namespace as in kubectl, and ``NAMESPACE/POD`` works too. A pod with
several containers and no ``-c`` gets each line prefixed with ``[container]`` (kubectl
would ask which one; the store can show them all in time order).

Thin: the pod and container become a query on the store's indexed label fields, answered
from the block index, and the rest is `kubelogs search`'s machinery (`cli.search`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kubelogs.cli.search import (
    add_config_argument,
    add_time_arguments,
    add_zone_arguments,
    follow,
    format_time,
    open_reader,
    range_hint,
    time_bounds,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "logs",
        help="print one pod's stored logs, like kubectl logs (also after the pod is gone)",
        description=(
            "Print the logs of a pod from the local store, oldest first, like kubectl "
            "logs; they stay available after the pod is deleted."
        ),
    )
    p.add_argument("pod", metavar="[NAMESPACE/]POD", help="the pod (namespace: -n, or default)")
    p.add_argument("-n", "--namespace", help="the pod's namespace (default: default)")
    p.add_argument("-c", "--container", help="only this container's logs")
    p.add_argument(
        "-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C"
    )
    add_time_arguments(p)
    p.add_argument(
        "--tail",
        type=int,
        default=-1,
        metavar="N",
        help="only the last N lines (default -1: all)",
    )
    p.add_argument("--timestamps", action="store_true", help="begin each line with its time")
    add_zone_arguments(p)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--store", metavar="DIR", help="default: $KUBELOGS_STORE, else the config's")
    add_config_argument(where, short=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kubelogs.store import QueryError, StoreCorruptError
    from kubelogs.store.query import And, Match

    err = sys.stderr
    namespace, slash, pod = args.pod.rpartition("/")
    if slash and args.namespace and namespace != args.namespace:
        print(f"kubelogs logs: {args.pod} is not in namespace {args.namespace}", file=err)
        return 1
    namespace = namespace or args.namespace or "default"
    if not pod or "/" in namespace:
        print(f"kubelogs logs: {args.pod!r}: expected POD or NAMESPACE/POD", file=err)
        return 1
    bounds = time_bounds("logs", args.since, args.until, follow=args.follow)
    if isinstance(bounds, str):
        print(bounds, file=err)
        return 1
    reader = open_reader("logs", args.store, args.config)
    if isinstance(reader, int):
        return reader
    try:
        with reader:
            ns_field, pod_field, container_field = reader.layout.label_fields[:3]
            terms = [Match(ns_field, namespace, phrase=True), Match(pod_field, pod, phrase=True)]
            if args.container:
                terms.append(Match(container_field, args.container, phrase=True))
            prepared = reader.prepare(And(tuple(terms)), since_ns=bounds[0], until_ns=bounds[1])
            containers = reader.label_values(prepared, container_field)
            if not containers:
                hint = range_hint(reader, prepared.lo, prepared.hi)
                missing = _not_found(reader, namespace, pod, args.container, ns_field, pod_field)
                print(f"kubelogs logs: {hint}" if hint else missing, file=err)
                return 1
            position = reader.last_block()
            prepared.until_block = position
            prefix = len(containers) > 1
            out = _printer(
                reader.layout.message_field,
                container_field,
                timestamps=args.timestamps,
                prefix=prefix,
                local=args.local,
            )
            hits: Any = (
                reader.iter_matches(prepared)
                if args.tail < 0
                else reader.search(prepared, limit=args.tail)
                if args.tail > 0
                else []
            )
            shown = 0
            for hit in hits:
                out(hit.time_ns, hit.doc)
                shown += 1
            sys.stdout.flush()
            hint = range_hint(reader, prepared.lo, prepared.hi) if not shown else ""
            if hint:
                print(f"kubelogs logs: {hint}", file=err)
            if args.follow:
                return follow(reader, prepared, position, out)
            return 0
    except QueryError as exc:  # a pod name the query language cannot hold
        print(f"kubelogs logs: {exc}", file=err)
        return 1
    except (StoreCorruptError, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"kubelogs logs: {exc}", file=err)
        return 2


def _not_found(
    reader: Any, namespace: str, pod: str, container: str | None, ns_field: str, pod_field: str
) -> str:
    """The one-line error for a pod (or container) the store has no logs of, naming the
    closest pod of the namespace when there is one."""
    import difflib

    from kubelogs.store.query import Match

    where = f"{namespace}/{pod}" + (f" container {container}" if container else "")
    pods = reader.label_values(Match(ns_field, namespace, phrase=True), pod_field)
    close = difflib.get_close_matches(pod, pods, n=1, cutoff=0.5)
    hint = f"; did you mean {namespace}/{close[0]}?" if close and close[0] != pod else ""
    if container and pod in pods:
        hint = ""
    return f"kubelogs logs: no logs of {where} in {reader.path}{hint}"


def _printer(
    message_field: str, container_field: str, *, timestamps: bool, prefix: bool, local: bool
) -> Any:
    """Writes one hit as kubectl does: ``[container] `` when asked, the time with
    ``--timestamps``, then the message."""
    import msgspec

    from kubelogs.store.matcher import get_field, is_missing

    decode = msgspec.json.Decoder().decode

    def write(time_ns: int, doc: bytes) -> None:
        try:
            obj = decode(doc)
        except msgspec.DecodeError:
            obj = {}
        message = get_field(obj, message_field)
        line = "" if is_missing(message) else str(message)
        if timestamps:
            line = f"{format_time(time_ns, local=local)} {line}"
        if prefix:
            line = f"[{get_field(obj, container_field)}] {line}"
        sys.stdout.write(line + "\n")

    return write
