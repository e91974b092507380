"""The Dockerfile, checked without a container runtime (none runs here or in CI).

Parsed with dockerfile-parse: the image runs `kubelogs` as a non-root user, stops on
SIGTERM, checks /healthz on the API port, sets the benchmarks' malloc thresholds, copies
only paths that exist (and that .dockerignore lets through), and installs with the same
uv, from the same lock file, as CI does. The build stage's install commands are then run
for real, in a clean virtual environment, and the result must start without writing a
byte-code file (the image's root filesystem is read-only).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

from kubelogs.cli import allocator
from kubelogs.config.loader import ApiConfig, RootConfig

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[dict[str, Any]]:
    parser = DockerfileParser(str(DOCKERFILE))
    return [i for i in parser.structure if i["instruction"] != "COMMENT"]


def _stages() -> list[list[dict[str, Any]]]:
    stages: list[list[dict[str, Any]]] = []
    for ins in _instructions():
        if ins["instruction"] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _args() -> dict[str, str]:
    out: dict[str, str] = {}
    for ins in _instructions():
        if ins["instruction"] == "ARG" and "=" in ins["value"]:
            k, v = ins["value"].split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _env(stage: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for ins in stage:
        if ins["instruction"] == "ENV":
            for word in shlex.split(ins["value"]):
                k, v = word.split("=", 1)
                out[k] = v
    return out


def _last(stage: list[dict[str, Any]], instruction: str) -> str:
    values = [i["value"] for i in stage if i["instruction"] == instruction]
    assert values, f"the final stage has no {instruction}"
    return str(values[-1])


def _ci_uv_version() -> str:
    text = (ROOT / ".ci" / "run").read_text()
    m = re.search(r"pip install [^\n]*\buv==([0-9][0-9.]*)", text)
    assert m, ".ci/run does not install a pinned uv (uv==X.Y.Z)"
    return m.group(1)


def _dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (last match wins)."""
    excluded = False
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
            excluded = not negate
    return excluded


def test_two_stages_from_a_slim_python_312() -> None:
    stages = _stages()
    base = _args()["PYTHON_IMAGE"]

    assert 2 == len(stages)
    assert re.fullmatch(r"python:3\.12-slim(-\w+)?", base), base
    assert ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"] == [s[0]["value"] for s in stages]
    assert ["--from=build /opt/kubelogs /opt/kubelogs"] == [
        i["value"] for i in stages[1] if i["instruction"] == "COPY"
    ]


def test_runs_kubelogs_as_a_non_root_user_and_stops_on_sigterm() -> None:
    final = _stages()[-1]
    user = _last(final, "USER").split(":")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]

    assert user[0].isdigit(), user  # numeric, so that runAsNonRoot can check it
    assert user[0] != "0"
    assert user[-1] != "0"
    assert ["kubelogs"] == json.loads(_last(final, "ENTRYPOINT"))
    assert "kubelogs" in scripts
    assert ["run"] == json.loads(_last(final, "CMD"))
    assert "SIGTERM" == _last(final, "STOPSIGNAL")


def test_data_dir_is_the_volume_and_the_api_port_is_exposed() -> None:
    final = _stages()[-1]
    port = ApiConfig().listen.rsplit(":", 1)[1]

    assert [str(RootConfig().data_dir)] == json.loads(_last(final, "VOLUME"))
    assert port == _last(final, "EXPOSE")
    health = _last(final, "HEALTHCHECK")
    assert f"http://127.0.0.1:{port}/healthz" in health
    assert "PYTHONDONTWRITEBYTECODE" in _env(final)


def test_malloc_settings_are_the_benchmarks() -> None:
    env = _env(_stages()[-1])

    assert str(allocator.MMAP_THRESHOLD) == env["MALLOC_MMAP_THRESHOLD_"]
    assert str(allocator.TRIM_THRESHOLD) == env["MALLOC_TRIM_THRESHOLD_"]


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    copies = [i["value"] for i in _instructions() if i["instruction"] == "COPY"]
    sources = [
        src
        for value in copies
        if not value.startswith("--from=")
        for src in shlex.split(value)[:-1]
        if not src.startswith("--")
    ]

    assert {"pyproject.toml", "uv.lock", "README.md", "src"} == set(sources)
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such path in the repository"
        assert not _dockerignored(src), f"COPY {src}: excluded by .dockerignore"
    assert _dockerignored("tests")
    assert _dockerignored(".venv")


def test_dockerignore_check_catches_an_excluded_source() -> None:
    """The check above is not vacuous: `*` alone would exclude what the image copies."""
    assert not _dockerignored("uv.lock")
    assert _dockerignored("bench")


def test_installs_with_ci_uv_and_the_frozen_lock_file() -> None:
    build = _stages()[0]
    runs = [i["value"] for i in build if i["instruction"] == "RUN"]
    syncs = [r for r in runs if r.startswith("uv ")]

    assert 'python3 -m pip install --no-cache-dir "uv==${UV_VERSION}"' == runs[0]
    assert _ci_uv_version() == _args()["UV_VERSION"]
    assert syncs
    assert all(shlex.split(s)[:3] == ["uv", "sync", "--frozen"] for s in syncs)
    assert any("compileall" in r and "/opt/kubelogs" in r for r in runs)


@pytest.mark.timeout(600)
def test_build_stage_commands_install_a_working_kubelogs(tmp_path: Path) -> None:
    """The build stage's RUN lines, in a copy of what it COPYs, produce a `kubelogs` that
    validates a config and writes no byte-code file while doing so."""
    uv = shutil.which("uv")
    if uv is None:  # CI installs uv before the suite (.ci/run), so this never skips there
        if os.environ.get("CI") == "true":
            pytest.fail("uv is not on PATH")
        pytest.skip("uv is not on PATH")
    build = _stages()[0]
    workdir = tmp_path / "src"
    workdir.mkdir()
    for ins in build:
        if ins["instruction"] == "COPY":
            *sources, _dest = shlex.split(ins["value"])
            for src in sources:
                if (ROOT / src).is_dir():
                    shutil.copytree(
                        ROOT / src, workdir / src, ignore=shutil.ignore_patterns("__pycache__")
                    )
                else:
                    shutil.copy2(ROOT / src, workdir / src)
    venv = tmp_path / "opt-kubelogs"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env.update(_env(build))
    env["UV_PROJECT_ENVIRONMENT"] = str(venv)
    env.pop("UV_NO_CACHE")  # the image keeps no cache; here CI's uv cache saves downloads
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    for ins in build:
        if ins["instruction"] != "RUN" or "pip install" in ins["value"]:
            continue  # uv itself is the one CI installed (same pinned version)
        command = ins["value"].replace("/opt/kubelogs", str(venv))
        r = subprocess.run(
            command, shell=True, cwd=workdir, env=env, capture_output=True, text=True
        )
        assert 0 == r.returncode, f"RUN {ins['value']}\n{r.stdout}{r.stderr}"

    before = {p for p in venv.rglob("*") if p.is_file()}
    config = tmp_path / "kubelogs.yaml"
    config.write_text(
        "sources: {c: {type: kubernetes_logs}}\nsinks: {s: {type: blackhole, inputs: [c]}}\n"
    )
    r = subprocess.run(
        [str(venv / "bin" / "kubelogs"), "validate", "-c", str(config)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    written = {p for p in venv.rglob("*") if p.is_file()} - before

    assert 0 == r.returncode, r.stdout + r.stderr
    assert set() == written
