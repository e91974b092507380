"""Listen addresses (`host:port`) as the config file and the flags write them.

One parser for `kubelogs validate` and for the servers that bind, so that an address
`validate` accepts is one `run` can use: ``host:port`` with a host name, an IPv4 address
or an IPv6 address in brackets (``[::1]:24231``), and a port from 1 to 65535, or 0 for
"any free port" (tests and benchmarks bind ``127.0.0.1:0`` and read the port back).
An empty host (``:24231``) means every interface.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

_HOSTNAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` -> (host, port); ValueError with a sentence for the user.

    The host comes back without brackets, ``0.0.0.0`` when empty.
    """
    text = listen.strip()
    example = "like 127.0.0.1:24231, 0.0.0.0:24231 or [::1]:24231"
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{listen!r} has no closing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if not rest.startswith(":"):
            raise ValueError(f"{listen!r} has no port; write host:port, {example}")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{listen!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{listen!r} has no port; write host:port, {example}")
        if ":" in host:
            raise ValueError(
                f"{listen!r}: put an IPv6 address in brackets, like [{host}]:{port_text}"
            )
        if host and not _valid_host(host):
            raise ValueError(f"{listen!r}: {host!r} is not a host name or IP address")
    if not port_text.isdigit():
        raise ValueError(f"{listen!r}: the port {port_text!r} is not a number from 1 to 65535")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"{listen!r}: the port {port} is out of range (1 to 65535)")
    return host or "0.0.0.0", port


def _valid_host(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
        return True
    except ValueError:
        pass
    if re.fullmatch(r"[0-9.]+", host):
        return False  # looks like an IPv4 address but is not one (300.1.1.1)
    return bool(_HOSTNAME.fullmatch(host))


def _require_string(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a host:port string (quote it in YAML)")
    return value


def _check(value: str) -> str:
    parse_listen(value)
    return value


ListenAddress = Annotated[str, BeforeValidator(_require_string), AfterValidator(_check)]
"""A ``host:port`` string checked by `parse_listen`."""
