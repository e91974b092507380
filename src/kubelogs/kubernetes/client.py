"""A minimal Kubernetes API client: paginated LIST and streaming WATCH, nothing else.

Why aiohttp directly and no Kubernetes client library: the agent needs two verbs (list
and watch) on two resources (pods of its node, namespaces). The official client imports
hundreds of generated model classes (tens of MiB of RSS, against an idle budget of
40 MiB - PERFORMANCE.md) and decodes every field of every pod into objects; here a pod is
decoded with msgspec into the few fields we use (`kubelogs.kubernetes.resources`).

This is the boundary where aiohttp exceptions and HTTP statuses become
`kubelogs.kubernetes.errors` classes, each message naming the server; the bearer token is
re-read from its file when it changes (`TokenSource`) and after every 401.

Watch streams are newline-delimited JSON (``{"type": "ADDED", "object": {...}}``). Lines
are split by hand from raw chunks: aiohttp's ``readline`` refuses lines over 64 KiB, and
a pod with large annotations is bigger than that.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic

import aiohttp
import msgspec

from kubelogs.kubernetes.connection import ConnectionSettings, TokenSource
from kubelogs.kubernetes.errors import (
    ApiConnectionError,
    ApiForbiddenError,
    ApiGoneError,
    ApiNotFoundError,
    ApiProtocolError,
    ApiServerError,
    ApiTLSError,
    ApiUnauthorizedError,
    KubernetesAPIError,
    WatchInterruptedError,
)
from kubelogs.kubernetes.resources import (
    ObjectList,
    RawWatchEvent,
    Status,
    T,
    WatchEvent,
)

ERROR_BODY_MAX = 256
"""Characters of an error body kept in a message: enough for the API's Status message
(``pods is forbidden: User "system:serviceaccount:..." cannot list ...``), short enough
that a proxy's HTML error page does not flood the log."""

_status_decoder = msgspec.json.Decoder(Status)
_event_decoder = msgspec.json.Decoder(RawWatchEvent)
_list_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def _list_decoder(item_type: type[T]) -> msgspec.json.Decoder[ObjectList[T]]:
    decoder = _list_decoders.get(item_type)
    if decoder is None:
        decoder = _list_decoders[item_type] = msgspec.json.Decoder(ObjectList[item_type])  # type: ignore[valid-type]
    return decoder


@dataclass(frozen=True)
class ListResult(Generic[T]):
    items: list[T]
    resource_version: str
    pages: int


class KubeClient:
    """List and watch against one API server.

    Resource handling: owns one aiohttp session (created on first use, closed by
    `close()`); a watch holds one connection until its stream ends or the consumer stops
    iterating (use ``contextlib.aclosing``).
    Error handling: every failure is raised as a `KubernetesAPIError` subclass; nothing is
    retried here - retry policy belongs to the reflector.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        request_timeout: float = 30.0,
        token_recheck_interval: float = 10.0,
    ) -> None:
        self.settings = settings
        self._tokens = TokenSource(
            token_file=settings.token_file,
            token=settings.token,
            recheck_interval=token_recheck_interval,
        )
        self._request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None
        self._ssl: ssl.SSLContext | None = None

    @property
    def server(self) -> str:
        return self.settings.display_server

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # May raise KubernetesConfigError (bad CA file): the caller reports it.
            self._ssl = self.settings.ssl_context()
            connector = aiohttp.TCPConnector(limit=8, ssl=self._ssl if self._ssl else True)
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers={"Accept": "application/json", "User-Agent": "kubelogs"},
                auto_decompress=True,
            )
        return self._session

    def _headers(self) -> dict[str, str]:
        token = self._tokens.get()
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def _open(
        self, path: str, params: Mapping[str, str], client_timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        session = self._get_session()
        url = self.settings.server + path
        try:
            resp = await session.get(
                url,
                params=dict(params),
                headers=self._headers(),
                timeout=client_timeout,
                allow_redirects=False,
                server_hostname=self.settings.tls_server_name,
            )
        except aiohttp.ClientConnectorCertificateError as exc:
            raise ApiTLSError(
                f"the TLS certificate of the Kubernetes API server {self.server} is not "
                f"trusted{self._ca_hint()}: {_cert_reason(exc)}"
            ) from None
        except (aiohttp.ClientConnectorSSLError, aiohttp.ClientSSLError) as exc:
            raise ApiTLSError(
                f"TLS with the Kubernetes API server {self.server} failed: {_short(exc)}"
            ) from None
        except aiohttp.ClientConnectorDNSError:
            raise ApiConnectionError(
                f"cannot resolve the host of the Kubernetes API server {self.server}"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            errno = exc.os_error.errno
            reason = os.strerror(errno) if errno else (exc.os_error.strerror or _short(exc))
            raise ApiConnectionError(
                f"cannot connect to the Kubernetes API server {self.server}: {reason.lower()}"
            ) from None
        except (TimeoutError, aiohttp.ServerTimeoutError):
            raise ApiConnectionError(
                f"the Kubernetes API server {self.server} did not answer in time"
            ) from None
        except aiohttp.ClientError as exc:
            raise ApiConnectionError(
                f"the connection to the Kubernetes API server {self.server} failed: {_short(exc)}"
            ) from None
        if resp.status >= 300:
            try:
                body = await resp.read()
            except (aiohttp.ClientError, TimeoutError):
                body = b""
            finally:
                resp.release()
            raise self._status_error(resp.status, resp.reason or "", path, body)
        return resp

    def _ca_hint(self) -> str:
        s = self.settings
        if s.ca_file:
            return f" by the CA in {s.ca_file}"
        if s.ca_data:
            return f" by the certificate-authority-data of {s.origin}"
        return " by the system's CA store (set ca_file)"

    def _status_error(self, status: int, reason: str, path: str, body: bytes) -> KubernetesAPIError:
        detail = ""
        try:
            st = _status_decoder.decode(body)
            detail = st.message
            reason = st.reason or reason
        except msgspec.DecodeError:
            pass
        detail = detail[:ERROR_BODY_MAX]
        where = f"the Kubernetes API server {self.server}"
        if status == 401:
            self._tokens.invalidate()
            tf = self._tokens.token_file
            hint = f"check the token file {tf}" if tf else "no bearer token is configured"
            return ApiUnauthorizedError(
                f"{where} rejected the credentials (401 Unauthorized); {hint}",
                status=status,
                reason=reason,
            )
        if status == 403:
            return ApiForbiddenError(
                f"{where} refused GET {path} (403 Forbidden): "
                f"{detail or 'RBAC must allow list and watch on pods and namespaces'}",
                status=status,
                reason=reason,
            )
        if status == 404:
            return ApiNotFoundError(
                f"{where} answered 404 Not Found for the core API (/api/v1); is it the "
                "address of a Kubernetes API server?",
                status=status,
                reason=reason,
            )
        if status == 410:
            return ApiGoneError(
                f"{where}: resourceVersion too old (410 Gone){': ' + detail if detail else ''}",
                status=status,
                reason=reason,
            )
        if status == 429 or status >= 500:
            return ApiServerError(
                f"{where} answered {status} {reason}{': ' + detail if detail else ''}",
                status=status,
                reason=reason,
            )
        return KubernetesAPIError(
            f"{where} answered {status} {reason} for GET {path}{': ' + detail if detail else ''}",
            status=status,
            reason=reason,
        )

    async def list_page(
        self, path: str, item_type: type[T], params: Mapping[str, str]
    ) -> ObjectList[T]:
        timeout = aiohttp.ClientTimeout(total=self._request_timeout)
        resp = await self._open(path, params, timeout)
        try:
            body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiConnectionError(
                f"the connection to the Kubernetes API server {self.server} broke while "
                f"listing {path}: {_short(exc)}"
            ) from None
        finally:
            resp.release()
        try:
            return _list_decoder(item_type).decode(body)
        except msgspec.DecodeError:
            raise ApiProtocolError(
                f"the answer of {self.server} is not a Kubernetes list; is it the address "
                "of a Kubernetes API server?"
            ) from None

    async def list_all(
        self,
        path: str,
        item_type: type[T],
        *,
        field_selector: str = "",
        limit: int = 500,
        resource_version: str | None = None,
    ) -> ListResult[T]:
        """All items of a collection, following ``continue`` tokens page by page.

        ``resource_version="0"`` asks for any version (served from the API server's watch
        cache, cheap for the control plane; such a read is not paginated by the server);
        None asks for a consistent, paginated read. A continue token that expired raises
        `ApiGoneError`; the caller lists again from the start.
        """
        params: dict[str, str] = {"limit": str(limit)}
        if field_selector:
            params["fieldSelector"] = field_selector
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        items: list[T] = []
        pages = 0
        rv = ""
        while True:
            page = await self.list_page(path, item_type, params)
            pages += 1
            items.extend(page.items or ())
            if not rv:
                rv = page.metadata.resourceVersion
            token = page.metadata.continue_
            if not token:
                break
            params = {"limit": str(limit), "continue": token}
            if field_selector:
                params["fieldSelector"] = field_selector
        return ListResult(items=items, resource_version=rv, pages=pages)

    def watch(
        self,
        path: str,
        item_type: type[T],
        *,
        resource_version: str,
        field_selector: str = "",
        timeout_seconds: int = 300,
        bookmarks: bool = True,
    ) -> WatchStream[T]:
        """Events of a collection after `resource_version`, until the server ends the stream.

        Use as ``async with client.watch(...) as stream: async for event in stream``:
        entering opens the request (and raises what `list_page` raises), iterating yields
        events; ERROR events are yielded with their `status` (the reflector turns code 410
        into a relist). A connection that breaks after it was opened raises
        `WatchInterruptedError`.
        """
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
        }
        if bookmarks:
            params["allowWatchBookmarks"] = "true"
        if field_selector:
            params["fieldSelector"] = field_selector
        return WatchStream(self, path, item_type, params, timeout_seconds)


class WatchStream(Generic[T]):
    """One open watch request; see `KubeClient.watch`.

    Resource handling: the HTTP response is released when the ``async with`` block ends,
    also when the consumer is cancelled mid-stream.
    """

    def __init__(
        self,
        client: KubeClient,
        path: str,
        item_type: type[T],
        params: dict[str, str],
        timeout_seconds: int,
    ) -> None:
        self._client = client
        self._path = path
        self._params = params
        self._decode_obj: Callable[[bytes], T] = msgspec.json.Decoder(item_type).decode
        # No total timeout: the stream lives for timeout_seconds; but a connection silent
        # (no event, no bookmark) for longer than that plus a margin is dead.
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=client._request_timeout, sock_read=timeout_seconds + 30
        )
        self._resp: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> WatchStream[T]:
        self._resp = await self._client._open(self._path, self._params, self._timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._resp is not None:
            self._resp.release()
            self._resp = None

    async def __aiter__(self) -> AsyncIterator[WatchEvent[T]]:
        resp = self._resp
        if resp is None:
            raise RuntimeError("iterate a WatchStream inside `async with`")
        server = self._client.server
        decode_obj = self._decode_obj
        try:
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                if b"\n" not in chunk:
                    continue
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield _decode_event(line, decode_obj, server)
            if buf.strip():
                yield _decode_event(buf, decode_obj, server)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise WatchInterruptedError(
                f"the watch of {self._path} on the Kubernetes API server {server} was "
                f"interrupted: {_short(exc)}"
            ) from None


def _decode_event(line: bytes, decode_obj: Any, server: str) -> WatchEvent[Any]:
    try:
        raw = _event_decoder.decode(line)
        if raw.type == "ERROR":
            st = _status_decoder.decode(raw.object)
            return WatchEvent(type="ERROR", resource_version="", status=st)
        obj = decode_obj(raw.object)
    except msgspec.DecodeError:
        raise ApiProtocolError(
            f"the Kubernetes API server {server} sent a watch event that is not valid JSON"
        ) from None
    return WatchEvent(type=raw.type, resource_version=obj.metadata.resourceVersion, obj=obj)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:ERROR_BODY_MAX]


def _cert_reason(exc: aiohttp.ClientConnectorCertificateError) -> str:
    cert_error = exc.certificate_error
    reason = getattr(cert_error, "verify_message", "") or getattr(cert_error, "reason", "")
    return str(reason or cert_error)[:ERROR_BODY_MAX]
