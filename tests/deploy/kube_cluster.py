"""A real Kubernetes control plane on loopback: etcd and kube-apiserver, nothing else.

Both are built from the Go module proxy (tests/deploy/tools/build-k8s-tools.sh). There is
no controller-manager, scheduler or kubelet: objects are stored and admitted exactly as a
cluster would, pods stay Pending, and service accounts' tokens come from the TokenRequest
API. TLS uses a CA made by trustme; an admin token (group system:masters) stands in for
the cluster admin's credentials; authorization is RBAC.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from support.waiting import wait_for

ADMIN_TOKEN = "kubelogs-ci-admin-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class ApiError(AssertionError):
    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        super().__init__(f"{method} {path}: {status} {json.dumps(body)[:2000]}")
        self.status = status
        self.body = body


@dataclass
class KubeApi:
    """A minimal client: JSON over HTTPS with a bearer token."""

    url: str
    ca_file: Path
    token: str = ADMIN_TOKEN
    _resources: dict[tuple[str, str], tuple[str, bool]] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (200, 201),
    ) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", content_type)
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
                status, raw = r.status, r.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        parsed: Any
        try:
            parsed = json.loads(raw)
        except ValueError:  # /readyz, /healthz answer plain text
            parsed = raw.decode(errors="replace")
        if status not in ok:
            raise ApiError(method, path, status, parsed)
        return parsed

    def resource_path(self, doc: dict[str, Any], namespace: str) -> str:
        """The object's URL, from API discovery (as kubectl finds it)."""
        api_version: str = doc["apiVersion"]
        kind: str = doc["kind"]
        key = (api_version, kind)
        if key not in self._resources:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            for res in self.request("GET", base)["resources"]:
                if "/" not in res["name"]:
                    self._resources[(api_version, res["kind"])] = (
                        f"{base}/{{ns}}{res['name']}",
                        bool(res["namespaced"]),
                    )
        template, namespaced = self._resources[key]
        ns = f"namespaces/{doc['metadata'].get('namespace', namespace)}/" if namespaced else ""
        return template.format(ns=ns) + "/" + str(doc["metadata"]["name"])

    def apply(
        self, doc: dict[str, Any], namespace: str, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Server-side apply, strict field validation (unknown fields are errors)."""
        query = "fieldManager=kubelogs-tests&force=true&fieldValidation=Strict"
        if dry_run:
            query += "&dryRun=All"
        result: dict[str, Any] = self.request(
            "PATCH",
            f"{self.resource_path(doc, namespace)}?{query}",
            doc,
            content_type="application/apply-patch+yaml",
        )
        return result

    def delete(self, doc: dict[str, Any], namespace: str) -> None:
        self.request("DELETE", self.resource_path(doc, namespace), ok=(200, 202, 404))

    def service_account_token(self, namespace: str, name: str) -> str:
        review = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
        token: str = review["status"]["token"]
        return token

    def can_list(self, user: str, groups: list[str], resource: str) -> bool:
        """Whether RBAC lets `user` list `resource` cluster-wide (a SubjectAccessReview:
        the authorizer's view, which follows role changes a moment after they are made)."""
        review = self.request(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": user,
                    "groups": groups,
                    "resourceAttributes": {"verb": "list", "resource": resource},
                },
            },
        )
        return bool(review["status"].get("allowed"))

    def ensure_namespace(self, name: str, labels: dict[str, str] | None = None) -> None:
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": name, "labels": labels or {}},
            },
            name,
        )
        # No controller-manager creates the namespace's default ServiceAccount.
        self.apply(
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}},
            name,
        )


class ControlPlane:
    """etcd + kube-apiserver started in `workdir`; `stop()` ends both."""

    def __init__(self, etcd: Path, kube_apiserver: Path, workdir: Path) -> None:
        self.etcd_bin, self.apiserver_bin, self.dir = etcd, kube_apiserver, workdir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.ca_file = workdir / "ca.crt"
        self.port = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def api(self, token: str = ADMIN_TOKEN) -> KubeApi:
        return KubeApi(self.url, self.ca_file, token)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{name}.log", "ab")  # noqa: SIM115 (the process owns it)
        proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        return (self.dir / f"{name}.log").read_text(errors="replace")[-6000:]

    def _alive(self, proc: subprocess.Popen[bytes], name: str) -> None:
        if proc.poll() is not None:
            raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)}")

    def start(self) -> ControlPlane:
        client_port, peer_port = free_port(), free_port()
        etcd = self._spawn(
            "etcd",
            [
                str(self.etcd_bin),
                "--name=kubelogs-ci",
                f"--data-dir={self.dir / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{client_port}",
                f"--advertise-client-urls=http://127.0.0.1:{client_port}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=kubelogs-ci=http://127.0.0.1:{peer_port}",
                "--log-level=warn",
            ],
        )

        def etcd_healthy() -> bool:
            self._alive(etcd, "etcd")
            try:
                url = f"http://127.0.0.1:{client_port}/health"
                with urllib.request.urlopen(url, timeout=5) as r:
                    return bool(json.loads(r.read()).get("health") == "true")
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_for(etcd_healthy, timeout=60, what="etcd /health")

        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_file))
        server = ca.issue_cert("127.0.0.1", "localhost")
        server.private_key_pem.write_to_path(str(self.dir / "apiserver.key"))
        server.cert_chain_pems[0].write_to_path(str(self.dir / "apiserver.crt"))
        for pem in server.cert_chain_pems[1:]:
            pem.write_to_path(str(self.dir / "apiserver.crt"), append=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.dir / "sa.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        (self.dir / "sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        (self.dir / "tokens.csv").write_text(f'{ADMIN_TOKEN},admin,admin-uid,"system:masters"\n')
        self.port = free_port()
        apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.apiserver_bin),
                f"--etcd-servers=http://127.0.0.1:{client_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--secure-port={self.port}",
                f"--cert-dir={self.dir / 'certs'}",
                f"--tls-cert-file={self.dir / 'apiserver.crt'}",
                f"--tls-private-key-file={self.dir / 'apiserver.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.dir / 'sa.pub'}",
                f"--service-account-signing-key-file={self.dir / 'sa.key'}",
                f"--token-auth-file={self.dir / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/24",
                "--allow-privileged=true",
                "--profiling=false",
                "--v=0",
            ],
        )
        admin = self.api()

        def ready() -> bool:
            self._alive(apiserver, "kube-apiserver")
            try:
                return bool("ok" == admin.request("GET", "/readyz"))
            except (ApiError, urllib.error.URLError, ConnectionError, ssl.SSLError):
                return False

        wait_for(ready, timeout=120, interval=0.2, what="kube-apiserver /readyz")
        return self

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(30)
        self.procs.clear()
