"""`kubelogs tap COMPONENT`: print the events leaving a component of a running agent.

The agent streams them from `/tap/<component>` on its API port (loopback clients only;
see `kubelogs.telemetry.api`), one NDJSON document per line, as the sinks would receive
them. The tap never slows the agent: if this reader is too slow, the agent drops the
tap's copies (counted in `kubelogs_tap_dropped_events_total`), never the pipeline's.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "tap",
        help="print live events leaving a component of a running agent",
        description="Print the events leaving COMPONENT (a source or transform) of the "
        "agent running on this host, one JSON document per line, until --limit events "
        "or Ctrl-C. The agent serves taps to loopback clients only: on Kubernetes run it "
        "in the agent's pod (kubectl exec) or through kubectl port-forward.",
        epilog="examples:\n"
        "  kubelogs tap k8s --limit 10\n"
        "  kubelogs tap containers --api 127.0.0.1:24231 | jq .message\n"
        "  kubectl -n logging exec ds/kubelogs -- kubelogs tap k8s --limit 5",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "component",
        metavar="COMPONENT",
        help="id of a source or transform, or a named output (`route.errors`)",
    )
    p.add_argument(
        "--limit",
        type=int,
        default=0,
        help="stop after N events (default: 0, until interrupted)",
    )
    p.add_argument(
        "--api",
        metavar="ADDR",
        help="the agent's API address host:port (default: `api.listen` of the config "
        "given with -c or that `kubelogs run` would use, else 127.0.0.1:24231)",
    )
    p.add_argument("-c", "--config", help="read the API address from this config")
    p.set_defaults(func=run)


def _api_address(args: argparse.Namespace) -> str:
    if args.api:
        return str(args.api)
    from kubelogs.config.loader import load_effective_config

    try:
        listen = str(load_effective_config(args.config).root.api.listen)
    except Exception:
        if args.config:
            raise
        return "127.0.0.1:24231"
    host, _, port = listen.rpartition(":")
    if host in ("0.0.0.0", "", "[::]"):
        host = "127.0.0.1" if host != "[::]" else "[::1]"
    return f"{host}:{port}"


def run(args: argparse.Namespace) -> int:
    import http.client
    import urllib.parse

    from kubelogs.config.addresses import parse_listen

    if args.limit < 0:
        print("error: --limit must be 0 or more", file=sys.stderr)
        return 1
    address = _api_address(args)
    try:
        host, port = parse_listen(address)
    except ValueError as exc:
        print(f"error: --api: {exc}", file=sys.stderr)
        return 1
    path = f"/tap/{urllib.parse.quote(args.component, safe='')}"
    if args.limit:
        path += f"?limit={args.limit}"
    conn = http.client.HTTPConnection(host, port, timeout=None)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        print(f"error: cannot reach the agent's API at {address}: {reason}", file=sys.stderr)
        return 2
    if resp.status != 200:
        text = resp.read().decode(errors="replace").strip()
        print(f"error: tap {args.component}: {text}", file=sys.stderr)
        return 1
    out = sys.stdout.buffer
    count = 0
    if sys.stderr.isatty():  # a person waiting at a terminal: say it is connected
        print(f"tapping {args.component} (Ctrl-C to stop)...", file=sys.stderr)
    try:
        while args.limit == 0 or count < args.limit:
            line = resp.readline()
            if not line:
                break
            out.write(line)
            out.flush()
            count += 1
    except KeyboardInterrupt:
        return 0
    finally:
        conn.close()
    return 0
