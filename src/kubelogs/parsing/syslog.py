"""``syslog``: RFC 5424 and RFC 3164 (BSD) lines, with or without the ``<PRI>``::

    <165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [ex@32473 iut="3"] Hi
    <34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick on /dev/pts/8
    Jan 15 10:00:00 node-1 kubelet[1234]: I0115 10:00:00.123456 ...

-> the ECS ``log.syslog`` fields (``priority``, ``facility.code``, ``severity.code``
and ``.name``, ``hostname``, ``appname``, ``procid``, ``msgid``, ``version``,
``structured_data`` as text), ``log.level`` from the severity, and ``syslog.timestamp``
and ``syslog.message`` (``time_key: syslog.timestamp`` makes the line's time the
event's: RFC 3339 for 5424, ``Mmm dd hh:mm:ss`` with the year of the runtime's time
for 3164). Structured data is matched by a pattern of disjoint alternatives (quoted
values with escapes): no backtracking.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["parse_syslog"]

_SD = r'(?:-|(?:\[[^\]"\s]+(?: [^=\s\]]+="(?:[^"\\]|\\.)*")*\])+)'
_RFC5424 = re.compile(
    r"(?:<(\d{1,3})>)?(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) (" + _SD + r")(?: (.*))?",
    re.DOTALL,
)
_RFC3164 = re.compile(
    r"(?:<(\d{1,3})>)?([A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}) (\S+) "
    r"(?:([^\s\[\]:]+)(?:\[([^\]\s]+)\])?: ?)?(.*)",
    re.DOTALL,
)
_SEVERITIES = ("emergency", "alert", "critical", "error", "warning", "notice", "info", "debug")
_LEVELS = ("fatal", "critical", "critical", "error", "warn", "info", "info", "debug")


def _priority(syslog: dict[str, Any], log: dict[str, Any], pri: str | None) -> bool:
    if pri is None:
        return True
    value = int(pri)
    if value > 191:
        return False
    severity = value & 7
    syslog["priority"] = value
    syslog["facility"] = {"code": value >> 3}
    syslog["severity"] = {"code": severity, "name": _SEVERITIES[severity]}
    log["level"] = _LEVELS[severity]
    return True


def _nil(value: str) -> str | None:
    return None if value == "-" else value


def parse_syslog(messages: Sequence[str]) -> tuple[list[int], list[dict[str, Any]]]:
    m5424 = _RFC5424.match
    m3164 = _RFC3164.match
    out: dict[int, dict[str, Any]] = {}
    for row, message in enumerate(messages):
        syslog: dict[str, Any] = {}
        log: dict[str, Any] = {"syslog": syslog}
        m = m5424(message)
        if m is not None:
            pri, version, when, host, app, procid, msgid, sd, text = m.groups()
            if not _priority(syslog, log, pri):
                continue
            syslog["version"] = version
            for key, value in (
                ("hostname", host),
                ("appname", app),
                ("procid", procid),
                ("msgid", msgid),
                ("structured_data", sd),
            ):
                if value != "-":
                    syslog[key] = value
            if text is not None and text.startswith("\ufeff"):  # the BOM of a UTF-8 MSG
                text = text[1:]
            out[row] = {
                "log": log,
                "syslog": _strip_none({"timestamp": _nil(when), "message": text}),
            }
            continue
        m = m3164(message)
        if m is None:
            continue
        pri, when, host, tag, pid, text = m.groups()
        if not _priority(syslog, log, pri):
            continue
        syslog["hostname"] = host
        if tag:
            syslog["appname"] = tag
        if pid:
            syslog["procid"] = pid
        out[row] = {"log": log, "syslog": {"timestamp": when, "message": text}}
    return list(out), list(out.values())


def _strip_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}
