"""Connection settings: in-cluster, kubeconfig, explicit; token re-reading; no secrets shown."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from kubelogs.kubernetes.connection import TokenSource, display_url, resolve_connection
from kubelogs.kubernetes.errors import KubernetesConfigError

SECRET = "s3cr3t-token-value"


def write_kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any]) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "ctx",
        "contexts": [
            {"name": "other", "context": {"cluster": "nope", "user": "nope"}},
            {"name": "ctx", "context": {"cluster": "c", "user": "u"}},
        ],
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": "u", "user": user}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_in_cluster_uses_service_env_and_service_account_files(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(SECRET)
    (tmp_path / "ca.crt").write_text("ca")
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}

    s = resolve_connection(environ=env, service_account_dir=tmp_path)

    assert s.server == "https://10.96.0.1:443"
    assert s.origin == "in-cluster"
    assert str(tmp_path / "token") == s.token_file
    assert str(tmp_path / "ca.crt") == s.ca_file


def test_in_cluster_ipv6_host_is_bracketed(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443"}

    s = resolve_connection(environ=env, service_account_dir=tmp_path)

    assert s.server == "https://[fd00::1]:6443"


def test_not_in_a_pod_and_nothing_configured_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KubernetesConfigError, match="KUBERNETES_SERVICE_HOST is not set"):
        resolve_connection(environ={}, service_account_dir=tmp_path)


def test_explicit_api_server_with_files(tmp_path: Path) -> None:
    s = resolve_connection(
        api_server="http://127.0.0.1:8001/",
        token_file=tmp_path / "t",
        environ={},
        service_account_dir=tmp_path / "none",
    )

    assert s.server == "http://127.0.0.1:8001"
    assert str(tmp_path / "t") == s.token_file
    assert s.ssl_context() is None


def test_validate_rejects_a_non_http_api_server(tmp_path: Path) -> None:
    with pytest.raises(KubernetesConfigError, match="is not an http"):
        resolve_connection(api_server="ftp://x", environ={}, service_account_dir=tmp_path)


def test_kubeconfig_current_context_with_inline_ca_and_token(tmp_path: Path) -> None:
    ca = trustme.CA()
    path = write_kubeconfig(
        tmp_path / "config",
        {
            "server": "https://k8s.example:6443",
            "certificate-authority-data": base64.b64encode(ca.cert_pem.bytes()).decode(),
        },
        {"token": SECRET},
    )

    s = resolve_connection(kubeconfig=path)

    assert s.server == "https://k8s.example:6443"
    assert s.token == SECRET
    assert s.ssl_context() is not None
    assert SECRET not in repr(s)
    assert "BEGIN CERTIFICATE" not in repr(s)
    assert f"kubeconfig {path} (context ctx)" == s.origin


def test_kubeconfig_relative_files_and_client_cert(tmp_path: Path) -> None:
    ca = trustme.CA()
    client = ca.issue_cert("client@example")
    (tmp_path / "certs").mkdir()
    ca.cert_pem.write_to_path(str(tmp_path / "certs" / "ca.pem"))
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "certs" / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "certs" / "client.key"))
    path = write_kubeconfig(
        tmp_path / "config",
        {"server": "https://k8s:6443", "certificate-authority": "certs/ca.pem"},
        {"client-certificate": "certs/client.pem", "client-key": "certs/client.key"},
    )

    s = resolve_connection(kubeconfig=path)

    assert str(tmp_path / "certs" / "ca.pem") == s.ca_file
    assert s.ssl_context() is not None


def test_kubeconfig_client_cert_data_loads_without_leaving_files(tmp_path: Path) -> None:
    ca = trustme.CA()
    client = ca.issue_cert("client@example")
    path = write_kubeconfig(
        tmp_path / "config",
        {"server": "https://k8s:6443", "insecure-skip-tls-verify": True},
        {
            "client-certificate-data": base64.b64encode(client.cert_chain_pems[0].bytes()).decode(),
            "client-key-data": base64.b64encode(client.private_key_pem.bytes()).decode(),
        },
    )
    before = set(os.listdir(os.environ.get("TMPDIR", "/tmp")))

    s = resolve_connection(kubeconfig=path)
    s.ssl_context()

    after = set(os.listdir(os.environ.get("TMPDIR", "/tmp")))
    assert not [n for n in after - before if n.startswith("kubelogs-client-")]


def test_kubeconfig_exec_plugin_is_refused_clearly(tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config",
        {"server": "https://k8s:6443"},
        {"exec": {"command": "gcloud", "apiVersion": "client.authentication.k8s.io/v1"}},
    )

    with pytest.raises(KubernetesConfigError, match="exec credential plugin"):
        resolve_connection(kubeconfig=path)


def test_missing_kubeconfig_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(KubernetesConfigError, match=f"cannot read kubeconfig {tmp_path}/nope"):
        resolve_connection(kubeconfig=tmp_path / "nope")


def test_insecure_skip_tls_verify_is_logged_as_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "kubelogs.kubernetes")

    s = resolve_connection(
        api_server="https://k8s:6443",
        insecure_skip_tls_verify=True,
        environ={},
        service_account_dir=tmp_path,
    )

    assert s.insecure_skip_tls_verify
    assert "TLS verification of the Kubernetes API server https://k8s:6443 is switched off" in (
        caplog.text
    )


def test_a_bad_ca_file_names_the_file_not_its_content(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n")
    s = resolve_connection(
        api_server="https://k8s:6443", ca_file=ca, environ={}, service_account_dir=tmp_path
    )

    with pytest.raises(KubernetesConfigError) as err:
        s.ssl_context()

    assert str(ca) in str(err.value)
    assert "not really" not in str(err.value)


def test_token_source_rereads_the_file_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    tokens = TokenSource(token_file=str(path), recheck_interval=3600)
    first = tokens.get()

    # Projected tokens are replaced by a symlink swap: a new inode with new content.
    new = tmp_path / "token.new"
    new.write_text("second-longer")
    new.replace(path)
    second = tokens.get()

    assert (first, second) == ("first", "second-longer")


def test_token_source_keeps_the_last_token_when_the_file_vanishes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "token"
    path.write_text(SECRET)
    tokens = TokenSource(token_file=str(path))
    tokens.get()

    path.unlink()
    tokens.invalidate()
    again = tokens.get()

    assert again == SECRET
    assert f"cannot read the token file {path}" in caplog.text
    assert SECRET not in caplog.text


def test_display_url_drops_user_info_and_query() -> None:
    assert display_url("https://admin:pw@k8s:6443/base/?token=x") == "https://k8s:6443/base"
