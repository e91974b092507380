"""``nginx`` and ``apache``: access logs in the common and combined formats::

    93.180.71.3 - - [17/May/2015:08:05:32 +0000] "GET /a HTTP/1.1" 304 0 "-" "curl/8.5.0"

-> ECS fields: ``source.address``, ``user.name``, ``http.request.method``,
``url.original``, ``http.version``, ``http.response.status_code`` (int),
``http.response.body.bytes`` (int), ``http.request.referrer``,
``user_agent.original``, and ``<nginx|apache>.access.time`` (the request's time;
``time_key: nginx.access.time`` makes it the event's time). A ``-`` means "none" and
leaves its field out. Quoted parts may hold escaped quotes (Apache's ``\\"``, nginx's
``\\x22``). The pattern's quantified parts are single character classes separated by
delimiters they cannot match: one pass per line, however hostile.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["access_parser"]

_Q = r'"((?:[^"\\]|\\.)*)"'
_ACCESS = re.compile(
    r"(\S+) (\S+) (\S+) \[([^\]]*)\] " + _Q + r" (\d{3}) (\d+|-)(?: " + _Q + " " + _Q + ")?",
    re.DOTALL,
)
_REQUEST = re.compile(r"([A-Za-z]+) (\S+)(?: HTTP/(\S+))?")


def access_parser(name: str) -> Callable[[Sequence[str]], tuple[list[int], list[dict[str, Any]]]]:
    """The parser of `name`'s (``nginx``/``apache``) access lines."""

    def parse(messages: Sequence[str]) -> tuple[list[int], list[dict[str, Any]]]:
        match = _ACCESS.match
        request_match = _REQUEST.fullmatch
        out: dict[int, dict[str, Any]] = {}
        for row, message in enumerate(messages):
            m = match(message)
            if m is None:
                continue
            addr, _ident, user, when, request, status, size, referrer, agent = m.groups()
            http_request: dict[str, Any] = {}
            fields: dict[str, Any] = {
                "source": {"address": addr},
                "http": {"request": http_request, "response": {"status_code": int(status)}},
                name: {"access": {"time": when}},
            }
            r = request_match(request)
            if r is not None:
                method, url, version = r.groups()
                http_request["method"] = method
                fields["url"] = {"original": url}
                if version:
                    fields["http"]["version"] = version
            elif request and request != "-":
                fields["url"] = {"original": request}
            if size != "-":
                fields["http"]["response"]["body"] = {"bytes": int(size)}
            if user != "-":
                fields["user"] = {"name": user}
            if referrer and referrer != "-":
                http_request["referrer"] = referrer
            if agent and agent != "-":
                fields["user_agent"] = {"original": agent}
            if not http_request:
                del fields["http"]["request"]
            out[row] = fields
        return list(out), list(out.values())

    return parse
