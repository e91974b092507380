"""Errors of the Kubernetes layer, caught by meaning rather than by HTTP library.

The client translates aiohttp exceptions and HTTP statuses into these classes at the
boundary (`kubelogs.kubernetes.client`), so the reflector decides what to do - relist,
re-watch, back off - from the type alone, and every message is one sentence that names the
server or file at fault. Messages never contain a token, key or certificate: only URLs
(without user info) and file paths.

::

    KubernetesError
    ├── KubernetesConfigError        settings cannot be resolved (no cluster, bad kubeconfig)
    └── KubernetesAPIError           a request failed
        ├── ApiConnectionError       refused, unresolvable, reset, timed out (retry)
        │   ├── ApiTLSError          the server's certificate is not trusted / TLS failed
        │   └── WatchInterruptedError  an open watch stream broke (re-watch)
        ├── ApiUnauthorizedError     401: token missing, wrong or expired
        ├── ApiForbiddenError        403: RBAC does not allow list/watch
        ├── ApiNotFoundError         404: the URL is not a Kubernetes API server
        ├── ApiGoneError             410: resourceVersion too old, relist
        ├── ApiServerError           429 and 5xx: the server is busy or broken (retry)
        └── ApiProtocolError         the answer is not what the API returns
"""

from __future__ import annotations


class KubernetesError(Exception):
    """Base of every error of `kubelogs.kubernetes`."""


class KubernetesConfigError(KubernetesError):
    """The connection settings cannot be resolved (not in a pod, bad kubeconfig, ...)."""


class KubernetesAPIError(KubernetesError):
    """A request to the API server failed; `status` is the HTTP status, 0 if none."""

    retryable: bool = True

    def __init__(self, message: str, *, status: int = 0, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


class ApiConnectionError(KubernetesAPIError):
    """No HTTP answer: connection refused, name not resolved, reset, timed out."""


class ApiTLSError(ApiConnectionError):
    """The TLS handshake failed, usually because the CA does not trust the server."""


class WatchInterruptedError(ApiConnectionError):
    """A watch stream that had been opened broke: normal churn, watch again."""


class ApiUnauthorizedError(KubernetesAPIError):
    """401: the bearer token (or client certificate) was not accepted."""


class ApiForbiddenError(KubernetesAPIError):
    """403: authenticated, but RBAC does not allow the request."""


class ApiNotFoundError(KubernetesAPIError):
    """404: the path does not exist - usually a wrong `api_server` URL."""


class ApiGoneError(KubernetesAPIError):
    """410: the requested resourceVersion was compacted away; list again."""


class ApiServerError(KubernetesAPIError):
    """429 or 5xx: the server is overloaded or failing; retry with backoff."""


class ApiProtocolError(KubernetesAPIError):
    """The answer is not a Kubernetes API answer (not JSON, wrong shape)."""
