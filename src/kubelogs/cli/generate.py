"""`kubelogs generate DIR`: a synthetic node log tree for tests, demos and benchmarks.

Thin: argument parsing and a summary; the tree itself is written by
`kubelogs.testing.generate` (see its docstring for the layout and the manifest). Without
``--rate`` the whole tree is written at once; with ``--rate`` lines are appended live
for ``--duration`` (or until Ctrl-C) and files are rotated kubelet-style at
``--rotate-size``; the manifest is written at the end either way.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from pathlib import Path
from types import FrameType


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "generate",
        help="write a synthetic node log tree (var/log/pods, var/log/containers)",
        description=(
            "Write kubelet-style container logs with a manifest of expected counts. DIR "
            "must be new, hold no var/, kube-meta/ or manifest.json, or have been written "
            "by kubelogs before (it then holds a .kubelogs-generated file, and only those "
            "three are replaced); anything else is refused."
        ),
    )
    p.add_argument(
        "dir",
        metavar="DIR",
        help="root of the tree: new, or one kubelogs generated (var/, kube-meta/ replaced)",
    )
    p.add_argument(
        "--format",
        choices=("cri", "docker"),
        default="cri",
        help="CRI (containerd, CRI-O) or Docker json-file lines",
    )
    p.add_argument("--lines", type=int, default=10_000, help="physical lines in total")
    p.add_argument("--containers", type=int, default=4)
    p.add_argument("--pods", type=int, default=0, help="default: containers / 2, rounded up")
    p.add_argument("--seed", type=int, default=42, help="same seed, same content")
    p.add_argument("--node", default="node-1", help="node name in the Pod objects")
    live = p.add_argument_group("live mode")
    live.add_argument("--rate", type=float, metavar="LINES/s", help="append at this rate")
    live.add_argument(
        "--duration", metavar="DUR", help="how long to append (default: until Ctrl-C)"
    )
    live.add_argument(
        "--rotate-size",
        default="10MiB",
        metavar="SIZE",
        help="rotate a container's 0.log at this size (default 10MiB)",
    )
    live.add_argument(
        "--max-rotated",
        type=int,
        default=5,
        metavar="N",
        help="rotated files kept per container (default 5)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from kubelogs.config.unit_parsers import parse_duration, parse_size
    from kubelogs.testing.generate import TreeRootError, check_root, generate_tree, run_live

    err = sys.stderr
    if args.containers < 1 or args.lines < 0 or args.pods < 0 or args.max_rotated < 0:
        print(
            "kubelogs generate: --containers must be >= 1; --lines, --pods and --max-rotated >= 0",
            file=err,
        )
        return 1
    root = Path(args.dir)
    try:
        check_root(root)  # before anything runs: a refused DIR is never touched
    except TreeRootError as exc:
        print(f"kubelogs generate: {exc}", file=err)
        return 1
    if args.rate is None:
        if args.duration is not None:
            print("kubelogs generate: --duration needs --rate", file=err)
            return 1
        manifest = generate_tree(
            root,
            lines=args.lines,
            containers=args.containers,
            pods=args.pods,
            fmt=args.format,
            seed=args.seed,
            node=args.node,
        )
    else:
        try:
            duration = math.inf if args.duration is None else parse_duration(args.duration)
            rotate_size = parse_size(args.rotate_size)
        except ValueError as exc:
            print(f"kubelogs generate: {exc}", file=err)
            return 1
        if args.rate <= 0 or rotate_size <= 0:
            print("kubelogs generate: --rate and --rotate-size must be > 0", file=err)
            return 1
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        previous = signal.signal(signal.SIGINT, on_signal)
        previous_term = signal.signal(signal.SIGTERM, on_signal)
        try:
            manifest = run_live(
                root,
                rate=args.rate,
                duration=duration,
                containers=args.containers,
                pods=args.pods,
                fmt=args.format,
                seed=args.seed,
                node=args.node,
                rotate_size=rotate_size,
                max_rotated=args.max_rotated,
                should_stop=stop.is_set,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)
    print(
        f"{root}: {manifest.lines} lines ({manifest.records} records) in "
        f"{len(manifest.files)} container logs; counts in {root / 'manifest.json'}"
    )
    return 0
