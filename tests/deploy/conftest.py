"""Real Kubernetes tools for the deployment tests, built once from the Go module proxy.

`helm` (and later etcd, kube-apiserver) come from tests/deploy/tools/build-k8s-tools.sh,
which builds into a cache outside the repository and returns at once when the binary is
there (.ci/run starts the builds before the suite). Without the Go toolchain a developer's
run skips these tests; under CI=true anything that cannot be built fails the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .kube_cluster import ControlPlane

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "tests" / "deploy" / "tools" / "build-k8s-tools.sh"
IN_CI = os.environ.get("CI") == "true"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need a built tool run last (helm, then the API server): on a cold
    machine .ci/run's background builds go on while the rest of the suite runs."""

    def rank(item: pytest.Item) -> int:
        fixtures = getattr(item, "fixturenames", ())
        if "control_plane" in fixtures or item.get_closest_marker("kube_apiserver"):
            return 2
        return 1 if "helm" in fixtures else 0

    items.sort(key=rank)  # stable: the order within each group is kept


def build_tool(name: str) -> Path:
    """The path of `name` (helm, etcd, kube-apiserver), built if it is not cached yet."""
    if shutil.which("go") is None:
        reason = f"the Go toolchain is not installed, so {name} cannot be built ({BUILD.name})"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    r = subprocess.run(["bash", str(BUILD), name], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.fail(f"building {name} failed ({BUILD} {name}):\n{r.stderr[-4000:]}")
    path = Path(r.stdout.strip().splitlines()[-1])
    assert path.is_file(), f"{BUILD} {name} printed {path}, which does not exist"
    return path


@pytest.fixture(scope="session")
def helm() -> Path:
    return build_tool("helm")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd and kube-apiserver on loopback, for the whole session."""
    etcd = build_tool("etcd")
    apiserver = build_tool("kube-apiserver")
    plane = ControlPlane(etcd, apiserver, tmp_path_factory.mktemp("control-plane"))
    try:
        yield plane.start()
    finally:
        plane.stop()
