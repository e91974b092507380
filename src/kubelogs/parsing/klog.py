"""``klog``: the header of Kubernetes components' logs (kubelet, kube-proxy, the API
server, controllers), as klog/glog write it::

    I0115 10:00:00.123456    1234 kubelet.go:2229] "SyncLoop ADD" source="api"

-> ``log.level`` (``I``/``W``/``E``/``F`` -> info/warn/error/fatal),
``log.origin.file.name`` and ``.line`` (ECS), ``process.thread.id``, and
``klog.time`` (``0115 10:00:00.123456``: no year; ``time_key: klog.time`` makes it the
event's time, the year taken from the runtime's) and ``klog.message`` (the text after
``]``). The pattern has no nested or overlapping quantifiers: one pass per line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["parse_klog"]

_KLOG = re.compile(
    r"([IWEF])(\d{4} \d{2}:\d{2}:\d{2}\.\d{6}) +(\d+) ([^ :\]]+):(\d+)\] ?(.*)", re.DOTALL
)
_LEVELS = {"I": "info", "W": "warn", "E": "error", "F": "fatal"}


def parse_klog(messages: Sequence[str]) -> tuple[list[int], list[dict[str, Any]]]:
    match = _KLOG.match
    levels = _LEVELS
    out: dict[int, dict[str, Any]] = {}
    for row, message in enumerate(messages):
        m = match(message)
        if m is None:
            continue
        level, when, thread, file, line, text = m.groups()
        out[row] = {
            "log": {
                "level": levels[level],
                "origin": {"file": {"name": file, "line": int(line)}},
            },
            "process": {"thread": {"id": int(thread)}},
            "klog": {"time": when, "message": text},
        }
    return list(out), list(out.values())
