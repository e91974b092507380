"""`kubelogs version`: the version and the versions of the libraries that matter."""

from __future__ import annotations

import argparse
import platform

from kubelogs import __version__

_DEPENDENCIES = ["pydantic", "msgspec", "aiohttp", "prometheus-client", "zstandard", "PyYAML"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("version", help="print version and dependency versions")
    p.set_defaults(func=run)


def run(_args: argparse.Namespace) -> int:
    from importlib import metadata

    print(f"kubelogs {__version__} (Python {platform.python_version()})")
    for dist in _DEPENDENCIES:
        try:
            print(f"  {dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            print(f"  {dist} not installed")
    return 0
