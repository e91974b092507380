"""`kubelogs sidecar --path GLOB [--forward HOST:PORT | --stdout]`: the sidecar role.

An application that writes its logs to files (not stdout) gets a kubelogs container
beside it sharing the files' volume (an ``emptyDir``): the Kubernetes "streaming
sidecar". This command builds the small config that role needs - a `file` source over
the globs, and a `forward` sink to the aggregator (with a disk buffer, so that an
aggregator outage never stalls or loses anything) or a `stdout` sink (the node agent
then collects the sidecar's stdout as container logs) - and runs it as `kubelogs run`
would. ``--print-config`` prints that config instead, as a starting point for a real
config file.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

SHARED_KEY_ENV = "KUBELOGS_FORWARD_SHARED_KEY"
"""With --forward: the aggregator's shared key, when this variable is set (a Secret)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "sidecar",
        help="tail application log files and forward them (the sidecar role)",
        description="Tail application log files in a volume shared with the application "
        "and send them to an aggregator (--forward) or print them as NDJSON on stdout for "
        "the node agent (--stdout): the Kubernetes streaming sidecar, in one command.",
        epilog="examples:\n"
        "  kubelogs sidecar --path '/var/log/app/*.log' --forward kubelogs-aggregator:24224\n"
        "  kubelogs sidecar --path '/var/log/app/*.log' --stdout\n"
        "  kubelogs sidecar --path '/var/log/app/*.log' --forward agg:24224 --print-config",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--path",
        action="append",
        required=True,
        metavar="GLOB",
        help="files to follow (repeatable), e.g. '/var/log/app/*.log'",
    )
    to = p.add_mutually_exclusive_group(required=True)
    to.add_argument(
        "--forward",
        action="append",
        metavar="HOST:PORT",
        help="aggregator's forward source (repeatable: failover/round-robin); its "
        f"shared key, if any, from ${SHARED_KEY_ENV}",
    )
    to.add_argument("--stdout", action="store_true", help="print NDJSON documents on stdout")
    p.add_argument(
        "--data-dir",
        default="/var/lib/kubelogs",
        help="checkpoints and the disk buffer; put it on the shared volume so that a "
        "restarted sidecar resumes where it stopped",
    )
    p.add_argument(
        "--buffer-size",
        default="256MiB",
        help="disk buffer in front of --forward (0: none, events wait in the files)",
    )
    p.add_argument(
        "--read-from",
        choices=["beginning", "end"],
        default="beginning",
        help="where files start on the very first run",
    )
    p.add_argument("--api-listen", default="127.0.0.1:24231", help="/metrics, /healthz, /readyz")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["console", "json"])
    p.add_argument("--print-config", action="store_true", help="print the config (YAML) and exit")
    p.set_defaults(func=sidecar)


def sidecar_config(args: argparse.Namespace) -> dict[str, Any]:
    """The config the sidecar runs: file source -> forward (disk-buffered) or stdout."""
    sink: dict[str, Any]
    if args.stdout:
        sink = {"type": "stdout", "inputs": ["files"]}
    else:
        sink = {"type": "forward", "inputs": ["files"], "servers": list(args.forward)}
        if os.environ.get(SHARED_KEY_ENV):
            sink["shared_key"] = "${" + SHARED_KEY_ENV + "}"  # never in argv or logs
        if str(args.buffer_size).strip() not in ("0", ""):
            sink["buffer"] = {"type": "disk", "max_size": args.buffer_size, "when_full": "block"}
    return {
        "data_dir": args.data_dir,
        "api": {"listen": args.api_listen},
        "sources": {
            "files": {"type": "file", "paths": list(args.path), "read_from": args.read_from}
        },
        "sinks": {"out": sink},
    }


_FLAGS = (
    ("sinks.out.servers", "--forward"),
    ("sinks.out.buffer", "--buffer-size"),
    ("sources.files.paths", "--path"),
    ("sources.files.read_from", "--read-from"),
    ("api.listen", "--api-listen"),
    ("data_dir", "--data-dir"),
)
"""Where each flag lands in the built config: a problem is named by the flag the user
typed, not by a config key they never wrote (``sinks.out.servers``)."""


def _flag_problems(data: dict[str, Any]) -> list[str]:
    """The built config's problems, each starting with the flag at fault."""
    from kubelogs.config.errors import ConfigInvalid
    from kubelogs.config.loader import config_from_data

    try:
        config_from_data(data, "<kubelogs sidecar>")
    except ConfigInvalid as exc:
        out = []
        for problem in exc.problems:
            for key, flag in _FLAGS:
                if problem.startswith(key) and ": " in problem:
                    problem = flag + problem[problem.index(": ") :]
                    break
            out.append(problem)
        return out
    return []


def sidecar(args: argparse.Namespace) -> int:
    data = sidecar_config(args)
    problems = _flag_problems(data)
    if problems:
        for problem in problems:
            print(f"kubelogs sidecar: {problem}", file=sys.stderr)
        return 1
    if args.print_config:
        import yaml

        sys.stdout.write(yaml.safe_dump(data, sort_keys=False))
        return 0
    from kubelogs.cli.run import run

    args.config = None
    args.config_data = data
    return run(args)
