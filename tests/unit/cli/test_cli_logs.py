"""`kubelogs logs [NAMESPACE/]POD`: one pod's stored logs, as kubectl logs prints them."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from kubelogs.cli import logs
from kubelogs.store import ECS_LAYOUT, StoreReader, StoreWriter
from support.store_docs import Dataset, make_dataset


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return make_dataset(seed=17, containers=4, lines=400, per_batch=100)


@pytest.fixture(scope="module")
def store(dataset: Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("logs") / "store"
    with StoreWriter(path, layout=ECS_LAYOUT, block_docs=150) as writer:
        writer.write(dataset.groups)
    return path


@pytest.fixture(scope="module")
def pod(dataset: Dataset) -> tuple[str, str, list[str]]:
    """(namespace, pod, its containers) of a pod with two containers."""
    first = dataset.groups[0].labels
    ns, name = first["kubernetes.namespace"], first["kubernetes.pod.name"]
    containers = sorted(
        {
            g.labels["kubernetes.container.name"]
            for g in dataset.groups
            if g.labels["kubernetes.pod.name"] == name
        }
    )
    assert len(containers) == 2
    return ns, name, containers


def run_logs(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="kubelogs")
    logs.register(parser.add_subparsers())
    args = parser.parse_args(["logs", *argv])
    return int(args.func(args))


def messages(store: Path, query: str, limit: int) -> list[tuple[str, str]]:
    with StoreReader(store) as reader:
        docs = [msgspec.json.decode(h.doc) for h in reader.search(query, limit=limit)]
    return [(d["kubernetes"]["container"]["name"], d["message"]) for d in docs]


def test_one_container_prints_its_messages_like_kubectl(
    store: Path, pod: tuple[str, str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    ns, name, containers = pod
    query = (
        f"kubernetes.namespace:{ns} and kubernetes.pod.name:{name} "
        f"and kubernetes.container.name:{containers[0]}"
    )

    rc = run_logs(["--store", str(store), f"{ns}/{name}", "-c", containers[0], "--tail", "5"])

    assert 0 == rc
    assert [m for _, m in messages(store, query, 5)] == capsys.readouterr().out.splitlines()


def test_several_containers_are_prefixed_in_time_order(
    store: Path, pod: tuple[str, str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    ns, name, _ = pod
    query = f"kubernetes.namespace:{ns} and kubernetes.pod.name:{name}"

    rc = run_logs(["--store", str(store), name, "-n", ns])

    expected = [f"[{c}] {m}" for c, m in messages(store, query, 0)]
    assert 0 == rc
    assert expected == capsys.readouterr().out.splitlines()


def test_timestamps_begin_each_line(
    store: Path, pod: tuple[str, str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    ns, name, containers = pod

    run_logs(
        ["--store", str(store), f"{ns}/{name}", "-c", containers[1], "--tail", "2", "--timestamps"]
    )

    lines = capsys.readouterr().out.splitlines()
    assert 2 == len(lines)
    assert all(line[:4].isdigit() and line[23] == "Z" for line in lines)


def test_an_unknown_pod_is_a_one_line_error_with_the_closest_name(
    store: Path, pod: tuple[str, str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    ns, name, _ = pod

    rc = run_logs(["--store", str(store), f"{ns}/{name[:-1]}x"])

    err = capsys.readouterr().err
    assert 1 == rc
    assert 1 == len(err.splitlines())
    assert f"did you mean {ns}/{name}?" in err


def test_a_since_after_the_newest_event_says_what_the_store_holds(
    store: Path, pod: tuple[str, str, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    # The pod's logs are from 2025: `--since 1h` printed nothing without a word.
    ns, name, _ = pod

    rc = run_logs(["--store", str(store), f"{ns}/{name}", "--since", "1h"])

    captured = capsys.readouterr()
    assert 0 == rc
    assert "" == captured.out
    assert captured.err.startswith("kubelogs logs: no events in the time range: the store holds")
    assert captured.err.endswith("(widen or drop --since)\n")


def test_the_store_of_a_config_with_config(
    store: Path,
    pod: tuple[str, str, list[str]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # `--config`, not `-c`: `-c` is the container, as in kubectl.
    ns, name, containers = pod
    config = tmp_path / "kubelogs.yaml"
    config.write_text(
        "sources: {c: {type: kubernetes_logs}}\n"
        f"sinks: {{s: {{type: local, path: {store}, inputs: [c]}}}}\n"
    )

    rc = run_logs(["--config", str(config), f"{ns}/{name}", "-c", containers[0], "--tail", "3"])
    via_config = capsys.readouterr().out
    run_logs(["--store", str(store), f"{ns}/{name}", "-c", containers[0], "--tail", "3"])

    assert 0 == rc
    assert 3 == len(via_config.splitlines())
    assert capsys.readouterr().out == via_config


def test_logs_is_a_command_of_kubelogs(store: Path, pod: tuple[str, str, list[str]]) -> None:
    ns, name, containers = pod

    argv = ["logs", "--store", str(store), f"{ns}/{name}", "-c", containers[0], "--tail", "1"]
    r = subprocess.run(
        [sys.executable, "-m", "kubelogs", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert 0 == r.returncode, r.stderr
    assert 1 == len(r.stdout.splitlines())
