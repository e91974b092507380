"""`kubelogs validate -c FILE` as a subprocess: exit codes and `path.to.key: message` lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

VALID = """\
sources:
  containers:
    type: kubernetes_logs
    exclude_namespaces: [kube-system]
  node:
    type: file
    paths: [/var/log/kubelet.log]
sinks:
  out:
    type: file
    path: ${OUT_DIR:-/tmp}/kubelogs.ndjson
    inputs: [containers, node]
"""

INVALID = """\
bogus_root: 1
sources:
  containers:
    type: kubernetes_logs
    nope: 1
sinks:
  out:
    type: blackhole
    inputs: [containers, missing]
"""


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBELOGS_")}
    return subprocess.run(
        [sys.executable, "-m", "kubelogs", "validate", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def write(tmp_path: Path, text: str, name: str = "kubelogs.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


class TestValidateCommand:
    def test_valid_config_exits_zero(self, tmp_path: Path) -> None:
        """A valid config exits 0 and says it is valid on stdout."""
        path = write(tmp_path, VALID)

        result = validate("-c", path)

        expected = (0, "")
        assert expected == (result.returncode, result.stderr)
        assert f"{path}: valid" in result.stdout

    def test_invalid_config_exits_one_with_every_problem_on_its_own_line(
        self, tmp_path: Path
    ) -> None:
        """Every problem is one `path.to.key: message` line on stderr."""
        path = write(
            tmp_path,
            "sources:\n"
            "  containers:\n"
            "    type: kubernetes_logs\n"
            "    nope: 1\n"
            "    max_line_size: huge\n"
            "sinks:\n"
            "  out:\n"
            "    type: blackhole\n"
            "    inputs: [containers, missing]\n",
        )
        expected = [
            "sources.containers.nope: unknown key",
            "sources.containers.max_line_size: 'huge' is not a size like 512MiB, 64KiB or 1GB",
            "sinks.out.inputs[1]: 'missing' matches no source or transform",
        ]

        result = validate("-c", path)

        lines = result.stderr.splitlines()
        expected_returncode = 1
        assert expected_returncode == result.returncode
        assert path in lines[0]
        assert sorted(expected) == sorted(lines[1:])
        expected_stdout = ""
        assert expected_stdout == result.stdout

    def test_root_and_component_problems_are_all_printed(self, tmp_path: Path) -> None:
        """An unknown top-level key does not hide the component problems."""
        path = write(tmp_path, INVALID)

        result = validate("-c", path)

        lines = result.stderr.splitlines()
        expected_returncode = 1
        assert expected_returncode == result.returncode
        assert {
            "bogus_root: unknown key",
            "sources.containers.nope: unknown key",
            "sinks.out.inputs[1]: 'missing' matches no source or transform",
        } <= set(lines)

    def test_missing_environment_variable_names_the_key(self, tmp_path: Path) -> None:
        """An unset `${VAR}` is reported at the key that uses it."""
        path = write(tmp_path, VALID.replace("${OUT_DIR:-/tmp}", "${KUBELOGS_TEST_UNSET_VAR}"))

        result = validate("-c", path)

        expected_returncode = 1
        assert expected_returncode == result.returncode
        assert (
            "sinks.out.path: environment variable KUBELOGS_TEST_UNSET_VAR is not set"
            in result.stderr.splitlines()
        )

    @pytest.mark.parametrize(
        ("content", "needle"),
        [
            ("sources:\n  c: [unclosed\n", "not valid YAML at line"),
            ("a: 1\nb: [1, 2\nc: 3\n", "line 3, column 2"),
            ("sources:\n\tc: 1\n", "line 2, column 1"),
            ("sources: 5\nsinks: [1]\n", "sources: must be a mapping"),
            ("- just\n- a list\n", "<root>: the config must be a mapping of keys"),
            ("sources:\n  c: just-a-string\n", "sources.c: must be a mapping with a `type`"),
            ("sources:\n  c: {type: [1, 2]}\n", "sources.c.type: unknown source type"),
            ("sources:\n  1: {type: file}\n", "sources"),
            ("sinks:\n  o: {type: blackhole, inputs: c}\n", "sinks.o.inputs"),
            ("? [a, b]\n: 1\n", "not valid YAML"),
            ("data_dir: !!python/object:os.system ls\n", "not valid YAML"),
            ("max: 1\n", "max: unknown key"),
        ],
    )
    def test_config_mistakes_never_print_a_traceback(
        self, tmp_path: Path, content: str, needle: str
    ) -> None:
        """Bad YAML or wrong types exit 1 with a readable message, no traceback."""
        path = write(tmp_path, content)

        result = validate("-c", path)

        expected_returncode = 1
        assert expected_returncode == result.returncode
        assert "Traceback" not in result.stderr
        assert needle in result.stderr

    def test_missing_file_exits_one_naming_the_file(self, tmp_path: Path) -> None:
        """A config path that does not exist is one sentence naming it."""
        path = str(tmp_path / "absent.yaml")

        result = validate("-c", path)

        expected_returncode = 1
        assert expected_returncode == result.returncode
        assert "Traceback" not in result.stderr
        assert f"{path}: no such config file" in result.stderr

    def test_directory_or_binary_file_exits_one_without_traceback(self, tmp_path: Path) -> None:
        """Unreadable configs are reported, not crashed on."""
        binary = tmp_path / "bin.yaml"
        binary.write_bytes(b"\xff\xfe\x00")

        results = [validate("-c", str(tmp_path)), validate("-c", str(binary))]

        expected = [1, 1]
        assert expected == [r.returncode for r in results]
        assert all("Traceback" not in r.stderr for r in results)
        assert all("cannot read config file" in r.stderr for r in results)
