"""HTTP to the cluster: hosts in rotation, credentials, TLS, errors translated.

`Transport` is the one-method seam (``request(method, path, body, headers)``): the sink
and the health check use nothing else, and unit tests give them a fake.
`HttpTransport` is the real one, on aiohttp used directly: the sink needs a handful of
requests (``_bulk``, ``GET /``, ``_cluster/health``, ``_index_template``), and the
official clients add import time and RSS on every node for nothing the sink uses.

Hosts: requests rotate over the healthy hosts (round robin); a host that refuses, resets
or times out is marked dead and skipped for a delay that doubles with each failure (up
to `_DEAD_MAX`), then tried again; when every host is dead the one that comes back
soonest is tried anyway, so a request is never refused locally.

Error handling: aiohttp and ssl exceptions become `TransportError` (chained), whose
message is one sentence naming the host and the cause, never a credential: the
``Authorization`` header is built here and appears in no message or log.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from kubelogs.sinks.elasticsearch.config import AuthConfig, TlsConfig

_DEAD_MIN = 1.0
_DEAD_MAX = 60.0
"""Seconds a dead host is skipped at most before it is tried again."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes
    host: str


class TransportError(Exception):
    """No HTTP response: refused, reset, timeout, TLS or DNS failure."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.kind = kind
        """``unreachable``, ``timeout``, ``tls`` or ``connection`` (a metric label)."""


class Transport(Protocol):
    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        request_timeout: float | None = None,
    ) -> Response: ...

    async def close(self) -> None: ...


def auth_header(auth: AuthConfig | None) -> str | None:
    """The ``Authorization`` value, or None. The only place secrets are read."""
    if auth is None:
        return None
    if auth.api_key is not None:
        return "ApiKey " + auth.api_key.get_secret_value()
    if auth.bearer_token is not None:
        return "Bearer " + auth.bearer_token.get_secret_value()
    assert auth.user is not None and auth.password is not None
    raw = f"{auth.user}:{auth.password.get_secret_value()}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def ssl_context(tls: TlsConfig) -> ssl.SSLContext:
    """Verification on unless `insecure_skip_verify`; `ca_file` replaces the system CAs."""
    ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
    if tls.cert_file is not None and tls.key_file is not None:
        ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class _Host:
    __slots__ = ("dead_until", "failures", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.dead_until = 0.0
        self.failures = 0


class HostPool:
    """Round robin over hosts, skipping the dead ones until their time is up."""

    def __init__(self, urls: list[str]) -> None:
        self.hosts = [_Host(u) for u in urls]
        self._next = 0

    def pick(self, now: float) -> _Host:
        n = len(self.hosts)
        for k in range(n):
            h = self.hosts[(self._next + k) % n]
            if h.dead_until <= now:
                self._next = (self._next + k + 1) % n
                return h
        return min(self.hosts, key=lambda h: h.dead_until)

    @staticmethod
    def mark_dead(host: _Host, now: float) -> None:
        host.failures += 1
        host.dead_until = now + min(_DEAD_MAX, _DEAD_MIN * 2 ** min(host.failures - 1, 10))

    @staticmethod
    def mark_alive(host: _Host) -> None:
        host.failures = 0
        host.dead_until = 0.0


class HttpTransport:
    """aiohttp session over a `HostPool`.

    Resource handling: the session (and its connection pool) is created on first use in
    the running loop and closed by `close`.
    """

    def __init__(
        self,
        hosts: list[str],
        *,
        auth: AuthConfig | None = None,
        tls: TlsConfig | None = None,
        timeout: float = 60.0,
        max_connections: int = 8,
    ) -> None:
        self.pool = HostPool(hosts)
        self._auth = auth_header(auth)
        self._ssl: ssl.SSLContext | None = None
        if any(h.startswith("https://") for h in hosts):
            self._ssl = ssl_context(tls or TlsConfig())
        self._timeout = timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                ssl=self._ssl if self._ssl is not None else True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        request_timeout: float | None = None,
    ) -> Response:
        session = self._get_session()
        loop = asyncio.get_running_loop()
        host = self.pool.pick(loop.time())
        hdrs = {"User-Agent": "kubelogs", **(headers or {})}
        if self._auth is not None:
            hdrs["Authorization"] = self._auth
        client_timeout = aiohttp.ClientTimeout(total=request_timeout or self._timeout)
        try:
            async with session.request(
                method, host.url + path, data=body, headers=hdrs, timeout=client_timeout
            ) as r:
                data = await r.read()
                resp = Response(r.status, dict(r.headers), data, host.url)
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            self.pool.mark_dead(host, loop.time())
            raise TransportError(f"{host.url}: TLS failed: {_short(exc)}", kind="tls") from exc
        except TimeoutError as exc:
            self.pool.mark_dead(host, loop.time())
            raise TransportError(
                f"{host.url}: no response within {client_timeout.total:.0f}s", kind="timeout"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            self.pool.mark_dead(host, loop.time())
            raise TransportError(
                f"{host.url}: unreachable: {_short(exc.os_error)}", kind="unreachable"
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            self.pool.mark_dead(host, loop.time())
            raise TransportError(
                f"{host.url}: connection failed: {_short(exc)}", kind="connection"
            ) from exc
        self.pool.mark_alive(host)
        return resp

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]
