"""Component types by kind and YAML ``type`` name.

Registration sits on the config class (``@register("sink", "file", "...")``), so
`kubelogs validate` and the generated reference read one table. Built-in components are
imported by `kubelogs.components`, the one greppable list.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from kubelogs.config.base import ComponentConfig

C = TypeVar("C", bound=type[ComponentConfig])


@dataclass(frozen=True)
class Registration:
    kind: str
    name: str
    description: str
    config: type[ComponentConfig]


_REGISTRY: dict[tuple[str, str], Registration] = {}


def register(kind: str, name: str, description: str) -> Callable[[C], C]:
    def deco(cls: C) -> C:
        key = (kind, name)
        if key in _REGISTRY and _REGISTRY[key].config is not cls:
            raise RuntimeError(f"{kind} type {name!r} registered twice")
        _REGISTRY[key] = Registration(kind, name, description, cls)
        return cls

    return deco


def lookup(kind: str, name: str) -> Registration | None:
    return _REGISTRY.get((kind, name))


def names(kind: str) -> list[str]:
    return sorted(n for k, n in _REGISTRY if k == kind)
