"""`kubelogs version`: the version and the versions of the libraries that matter."""

from __future__ import annotations

import argparse
import platform

from kubelogs import __version__


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "version",
        help="print version and dependency versions",
        description="Print kubelogs' version, Python's, and the installed version of "
        "every library kubelogs requires (what a bug report needs).",
    )
    p.set_defaults(func=run)


def dependencies() -> list[str]:
    """The distributions kubelogs requires, read from its own metadata so that the list
    never falls behind pyproject.toml (optional extras such as `test` are left out)."""
    import re
    from importlib import metadata

    try:
        requires = metadata.requires("kubelogs") or []
    except metadata.PackageNotFoundError:
        return []
    names: list[str] = []
    for req in requires:
        if "extra ==" in req.replace('"', " ").replace("'", " ") or "extra==" in req:
            continue
        m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", req)
        if m and m.group(0) not in names:
            names.append(m.group(0))
    return names


def run(_args: argparse.Namespace) -> int:
    from importlib import metadata

    print(f"kubelogs {__version__} (Python {platform.python_version()}, {platform.platform()})")
    for dist in dependencies():
        try:
            print(f"  {dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            print(f"  {dist} not installed")
    return 0
