"""Where the API server is and how to authenticate: in-cluster, kubeconfig or explicit.

Three ways, in this order of precedence (DESIGN.md section 4, `kubernetes_metadata` keys):

1. ``kubeconfig``: the current context's cluster (``server``, ``certificate-authority``
   or ``-data``, ``insecure-skip-tls-verify``) and user (``token``, ``tokenFile``,
   ``client-certificate``/``client-key`` or their ``-data``). Credential plugins (``exec``,
   ``auth-provider``) are not run: an agent must not shell out to cloud CLIs.
2. ``api_server`` with optional ``token_file`` and ``ca_file``.
3. In-cluster: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`` with the
   service account's token and CA under ``/var/run/secrets/kubernetes.io/serviceaccount``.

Why the token is a file that is re-read: projected service-account tokens are bound and
rotated by the kubelet (hourly by default), so a token read once at start stops working.
`TokenSource` re-reads the file when its identity (inode, size, mtime) changes, at most
every `recheck_interval` seconds otherwise, and at once after a 401.

TLS is verified unless ``insecure_skip_tls_verify`` is set explicitly (then a warning is
logged once). Secrets (tokens, keys, CA data) are never part of a message or a ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from kubelogs.kubernetes.errors import KubernetesConfigError

log = logging.getLogger("kubelogs.kubernetes")

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def display_url(url: str) -> str:
    """The URL without user info, query or fragment: safe to put in a log line."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


@dataclass(frozen=True)
class ConnectionSettings:
    """Resolved settings; build the TLS context with `ssl_context()`."""

    server: str
    """Base URL, ``http://`` or ``https://``, no trailing slash."""
    origin: str = "api_server"
    """Where the settings came from, for messages: ``in-cluster``, ``kubeconfig <path>``."""
    token_file: str | None = None
    token: str | None = field(default=None, repr=False)
    """A static token (kubeconfig ``token``); `token_file` wins when both are set."""
    ca_file: str | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    client_cert_file: str | None = None
    client_key_file: str | None = None
    client_cert_data: bytes | None = field(default=None, repr=False)
    client_key_data: bytes | None = field(default=None, repr=False)
    tls_server_name: str | None = None
    insecure_skip_tls_verify: bool = False

    @property
    def display_server(self) -> str:
        return display_url(self.server)

    @property
    def is_https(self) -> bool:
        return self.server.startswith("https://")

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context for an https server, None for http.

        Error handling: an unreadable or invalid CA file or client key raises
        `KubernetesConfigError` naming the file (never its content).
        """
        if not self.is_https:
            return None
        if self.insecure_skip_tls_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ctx = ssl.create_default_context()
            if self.ca_file:
                try:
                    ctx.load_verify_locations(cafile=self.ca_file)
                except (OSError, ssl.SSLError) as exc:
                    raise KubernetesConfigError(
                        f"cannot load the CA bundle {self.ca_file} for the Kubernetes API "
                        f"server {self.display_server}: {_reason(exc)}"
                    ) from None
            elif self.ca_data:
                try:
                    ctx.load_verify_locations(cadata=self.ca_data.decode("ascii", "replace"))
                except (ssl.SSLError, ValueError) as exc:
                    raise KubernetesConfigError(
                        f"the certificate-authority-data of {self.origin} is not a valid PEM "
                        f"CA bundle: {_reason(exc)}"
                    ) from None
        self._load_client_cert(ctx)
        return ctx

    def _load_client_cert(self, ctx: ssl.SSLContext) -> None:
        if self.client_cert_file or self.client_key_file:
            try:
                ctx.load_cert_chain(self.client_cert_file or "", self.client_key_file)
            except (OSError, ssl.SSLError) as exc:
                raise KubernetesConfigError(
                    f"cannot load the client certificate {self.client_cert_file} / key "
                    f"{self.client_key_file} of {self.origin}: {_reason(exc)}"
                ) from None
        elif self.client_cert_data and self.client_key_data:
            # ssl only loads certificate chains from files: write both to a private (0600)
            # temporary file, load it and remove it at once.
            fd, tmp = tempfile.mkstemp(prefix="kubelogs-client-", suffix=".pem")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(self.client_cert_data.rstrip(b"\n") + b"\n" + self.client_key_data)
                ctx.load_cert_chain(tmp)
            except (OSError, ssl.SSLError) as exc:
                raise KubernetesConfigError(
                    f"the client-certificate-data / client-key-data of {self.origin} cannot "
                    f"be loaded: {_reason(exc)}"
                ) from None
            finally:
                os.unlink(tmp)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


class TokenSource:
    """The bearer token, re-read from its file when the file changes.

    Resource handling: reads the file synchronously (a few hundred bytes on a local or
    projected volume); holds no file open.
    Error handling: an unreadable file logs one warning per distinct problem and returns
    the last good token (or None), so requests go out and the server's 401 says the rest.
    """

    def __init__(
        self,
        *,
        token_file: str | None = None,
        token: str | None = None,
        recheck_interval: float = 10.0,
    ) -> None:
        self._file = token_file
        self._static = token
        self._recheck = recheck_interval
        self._token: str | None = token
        self._identity: tuple[int, int, int] | None = None
        self._checked_at = float("-inf")
        self._last_problem = ""

    @property
    def token_file(self) -> str | None:
        return self._file

    def invalidate(self) -> None:
        """Force a re-read on the next `get()` (after a 401)."""
        self._identity = None
        self._checked_at = float("-inf")

    def get(self) -> str | None:
        if self._file is None:
            return self._static
        now = time.monotonic()
        try:
            st = os.stat(self._file)
            identity = (st.st_ino, st.st_size, st.st_mtime_ns)
            if identity != self._identity or now - self._checked_at >= self._recheck:
                with open(self._file, encoding="utf-8", errors="replace") as f:
                    token = f.read().strip()
                self._identity = identity
                self._checked_at = now
                if token:
                    self._token = token
                    self._last_problem = ""
                else:
                    self._problem(f"the token file {self._file} is empty")
        except OSError as exc:
            self._problem(f"cannot read the token file {self._file}: {_reason(exc)}")
        return self._token if self._token is not None else self._static

    def _problem(self, message: str) -> None:
        if message != self._last_problem:
            self._last_problem = message
            log.warning("%s; requests to the Kubernetes API server will not be authorized", message)


def resolve_connection(
    *,
    api_server: str | None = None,
    token_file: str | os.PathLike[str] | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    kubeconfig: str | os.PathLike[str] | None = None,
    insecure_skip_tls_verify: bool = False,
    environ: Mapping[str, str] | None = None,
    service_account_dir: Path = SERVICE_ACCOUNT_DIR,
) -> ConnectionSettings:
    """Resolve the settings (see the module docstring for the precedence).

    Error handling: raises `KubernetesConfigError` with a sentence naming the key or file
    at fault; logs a warning when TLS verification is switched off.
    """
    env = os.environ if environ is None else environ
    token_path = os.fspath(token_file) if token_file is not None else None
    ca_path = os.fspath(ca_file) if ca_file is not None else None
    if kubeconfig is not None:
        settings = _from_kubeconfig(Path(os.path.expanduser(os.fspath(kubeconfig))))
        if token_path:
            settings = replace(settings, token_file=token_path, token=None)
        if ca_path:
            settings = replace(settings, ca_file=ca_path, ca_data=None)
        if insecure_skip_tls_verify:
            settings = replace(settings, insecure_skip_tls_verify=True)
    else:
        sa_token = service_account_dir / "token"
        sa_ca = service_account_dir / "ca.crt"
        if api_server:
            server, origin = api_server, "api_server"
        else:
            host = env.get("KUBERNETES_SERVICE_HOST", "")
            port = env.get("KUBERNETES_SERVICE_PORT", "443") or "443"
            if not host:
                raise KubernetesConfigError(
                    "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST is not set) and "
                    "neither api_server nor kubeconfig is configured"
                )
            if ":" in host and not host.startswith("["):
                host = f"[{host}]"
            server, origin = f"https://{host}:{port}", "in-cluster"
        if token_path is None and sa_token.exists():
            token_path = str(sa_token)
        if ca_path is None and sa_ca.exists():
            ca_path = str(sa_ca)
        settings = ConnectionSettings(
            server=_check_server(server, "api_server"),
            origin=origin,
            token_file=token_path,
            ca_file=ca_path,
            insecure_skip_tls_verify=insecure_skip_tls_verify,
        )
    if settings.token_file and not os.path.exists(settings.token_file):
        log.warning(
            "the token file %s does not exist (yet); requests to %s will not be authorized "
            "until it does",
            settings.token_file,
            settings.display_server,
        )
    if settings.insecure_skip_tls_verify and settings.is_https:
        log.warning(
            "TLS verification of the Kubernetes API server %s is switched off "
            "(insecure_skip_tls_verify); anyone on the network path can read the token",
            settings.display_server,
        )
    return settings


def _check_server(server: str, where: str) -> str:
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise KubernetesConfigError(
            f"{where}: {display_url(server) or server[:64]!r} is not an http(s) URL"
        )
    return server.rstrip("/")


def _from_kubeconfig(path: Path) -> ConnectionSettings:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise KubernetesConfigError(f"cannot read kubeconfig {path}: {_reason(exc)}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise KubernetesConfigError(f"kubeconfig {path} is not valid YAML{where}") from None
    if not isinstance(doc, dict):
        raise KubernetesConfigError(f"kubeconfig {path} is not a kubeconfig mapping")
    context_name = doc.get("current-context") or ""
    if not context_name:
        raise KubernetesConfigError(f"kubeconfig {path} has no current-context")
    context = _named(doc, "contexts", context_name, "context", path)
    cluster = _named(doc, "clusters", str(context.get("cluster", "")), "cluster", path)
    user_name = str(context.get("user", ""))
    user = _named(doc, "users", user_name, "user", path) if user_name else {}
    origin = f"kubeconfig {path} (context {context_name})"
    base = path.parent

    def rel(value: Any) -> str | None:
        if not value:
            return None
        p = Path(os.path.expanduser(str(value)))
        return str(p if p.is_absolute() else base / p)

    def data(key: str, section: dict[str, Any]) -> bytes | None:
        value = section.get(key)
        if not value:
            return None
        try:
            return base64.b64decode(str(value), validate=False)
        except (binascii.Error, ValueError):
            raise KubernetesConfigError(f"{origin}: {key} is not base64") from None

    for unsupported in ("exec", "auth-provider"):
        if user.get(unsupported):
            raise KubernetesConfigError(
                f"{origin}: user {user_name!r} uses an {unsupported} credential plugin, which "
                "kubelogs does not run; use a token, tokenFile or a client certificate"
            )
    if user.get("username") or user.get("password"):
        raise KubernetesConfigError(
            f"{origin}: user {user_name!r} uses basic authentication, which Kubernetes no "
            "longer supports; use a token or a client certificate"
        )
    server = cluster.get("server")
    if not server:
        raise KubernetesConfigError(f"{origin}: cluster has no server")
    return ConnectionSettings(
        server=_check_server(str(server), f"{origin}: server"),
        origin=origin,
        token_file=rel(user.get("tokenFile")),
        token=str(user["token"]) if user.get("token") else None,
        ca_file=rel(cluster.get("certificate-authority")),
        ca_data=data("certificate-authority-data", cluster),
        client_cert_file=rel(user.get("client-certificate")),
        client_key_file=rel(user.get("client-key")),
        client_cert_data=data("client-certificate-data", user),
        client_key_data=data("client-key-data", user),
        tls_server_name=str(cluster["tls-server-name"]) if cluster.get("tls-server-name") else None,
        insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify", False)),
    )


def _named(doc: dict[str, Any], section: str, name: str, key: str, path: Path) -> dict[str, Any]:
    for entry in doc.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(key) or {}
            if not isinstance(value, dict):
                break
            return value
    raise KubernetesConfigError(f"kubeconfig {path}: {section} has no entry named {name!r}")
