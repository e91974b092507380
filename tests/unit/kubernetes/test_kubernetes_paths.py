"""Kubelet log file names -> namespace, pod, uid, container, container id."""

from __future__ import annotations

import pytest

from kubelogs.kubernetes.paths import LogPathInfo, parse_log_path

UID = "8c1e2f3a-1b2c-4d5e-8f90-123456789abc"
CID = "3f2a" + "0" * 60


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            f"/var/log/pods/default_web-7d4b9-x2x_{UID}/nginx/0.log",
            LogPathInfo("default", "web-7d4b9-x2x", UID, "nginx", "", 0),
        ),
        (
            f"/var/log/pods/kube-system_coredns-5d78c_{UID}/coredns/3.log.20240101-120000",
            LogPathInfo("kube-system", "coredns-5d78c", UID, "coredns", "", 3),
        ),
        (
            f"/tmp/root/var/log/pods/ns_pod.with.dots_{UID}/my-container/1.log.20240101-120000.gz",
            LogPathInfo("ns", "pod.with.dots", UID, "my-container", "", 1),
        ),
        (
            f"/var/log/containers/web-7d4b9-x2x_default_nginx-{CID}.log",
            LogPathInfo("default", "web-7d4b9-x2x", "", "nginx", CID),
        ),
        (
            f"/var/log/containers/web_prod_side-car-2-{CID}.log",
            LogPathInfo("prod", "web", "", "side-car-2", CID),
        ),
    ],
)
def test_parse_log_path_reads_kubelet_names(path: str, expected: LogPathInfo) -> None:
    assert expected == parse_log_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "/var/log/kubelet.log",
        "/var/log/pods/not-a-pod-dir/app/0.log",
        f"/var/log/pods/default_web_{UID}/app/current.log",
        "/var/log/containers/web_default_nginx-notahexid.log",
        f"/var/log/containers/web_default_nginx-{CID[:-1]}.log",
        "",
    ],
)
def test_parse_log_path_rejects_other_files(path: str) -> None:
    assert parse_log_path(path) is None
