"""The explorer's guards: the access token, the browser's security headers, the Host.

Log lines are hostile input and the page shows them; these headers make the browser
refuse anything a line could smuggle in even if the page had a bug:

- ``Content-Security-Policy``: scripts from this server's files only (``script-src
  'self'``: no inline script, no event-handler attributes, no ``eval``), no plugins, no
  framing, no ``<base>``, connections to this server only;
- ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` (a ``?token=``
  in the address never leaves in a Referer), ``X-Frame-Options: DENY``.

Access: bound to a loopback address the explorer needs no token (only this machine's
users reach it); elsewhere `kubelogs ui` refuses to start without one. With a token,
every request (pages, API, the live stream) must carry it: ``Authorization: Bearer T``,
or the ``kubelogs_ui`` cookie, which the first page load with ``?token=T`` sets
(HttpOnly: scripts cannot read it; SameSite=Strict: other sites cannot use it) before
redirecting to the same address without the token. Anything else gets 401. Tokens are
compared in constant time.

Host check: on loopback without a token, a request whose ``Host`` is not a loopback
name is refused (403), so a web page on another site cannot reach the explorer
through DNS rebinding.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

COOKIE = "kubelogs_ui"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'; object-src 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _same(given: str, token: str) -> bool:
    return hmac.compare_digest(given.encode(), token.encode())


def _host_name(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def guard(token: str | None) -> Middleware:
    """The middleware: headers on every answer, then the token (or Host) check."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await _checked(request, handler, token)
        except web.HTTPException as exc:
            exc.headers.update(HEADERS)
            raise
        response.headers.update(HEADERS)
        return response

    return middleware


async def _checked(request: web.Request, handler: Handler, token: str | None) -> web.StreamResponse:
    if token is None:
        if not is_loopback(_host_name(request.host)):
            raise web.HTTPForbidden(text="kubelogs ui: this address is not served here\n")
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer ") and _same(header[7:].strip(), token):
        return await handler(request)
    if _same(request.cookies.get(COOKIE, ""), token):
        return await handler(request)
    given = request.query.get("token")
    if given is not None and request.path == "/" and _same(given, token):
        query = {k: v for k, v in request.query.items() if k != "token"}
        target = request.rel_url.with_query(query)
        response = web.HTTPSeeOther(location=str(target))
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
        raise response
    raise web.HTTPUnauthorized(
        text="kubelogs ui: a token is required (Authorization: Bearer T, or open /?token=T)\n",
        headers={"WWW-Authenticate": 'Bearer realm="kubelogs ui"'},
    )
