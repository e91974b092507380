"""No traceback reaches the user: every command's failures are one line and exit 1 or 2.

DESIGN.md section 3. The commands run as subprocesses, as a user runs them; the cases
are the ones QA hit as a new user (issue 10).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubelogs.cli import errors
from kubelogs.config.errors import ConfigInvalid
from support.waiting import wait_for


def env_without_kubelogs(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBELOGS_")}
    env.update(extra)
    return env


def kubelogs(*args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubelogs", *args],
        capture_output=True,
        text=True,
        env=kw.pop("env", env_without_kubelogs()),
        timeout=timeout,
        check=False,
        **kw,
    )


def config(tmp_path: Path, **root: Any) -> Path:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    data: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "api": {"listen": "127.0.0.1:0"},
        "shutdown_grace_period": "2s",
        "sources": {
            "logs": {
                "type": "file",
                "paths": [str(logs / "*.log")],
                "glob_interval": "100ms",
                "poll_interval": "20ms",
            }
        },
        "sinks": {"out": {"type": "blackhole", "inputs": ["logs"]}},
    }
    data.update(root)
    path = tmp_path / "kubelogs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def api_port(running_line: str) -> int:
    m = re.search(r"API on 127\.0\.0\.1:(\d+)", running_line)
    assert m, running_line
    return int(m.group(1))


def metric(port: int, name: str, component: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(rf'^{name}{{component_id="{component}"[^}}]*}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


_LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING) ")


def error_lines(stderr: str) -> list[str]:
    """stderr without kubelogs' own log records (the agent's info and warning lines
    about what it does), leaving what the command says about its failure."""
    return [ln for ln in stderr.splitlines() if not _LOG_RECORD.match(ln)]


HOSTILE = [
    ("run", ["run", "-c", "{tmp}/absent.yaml"]),
    ("run", ["run", "-c", "{tmp}"]),
    ("run", ["run", "--log-format", "xml"]),
    ("validate", ["validate", "-c", "{tmp}/absent.yaml"]),
    ("validate", ["validate", "-c", "/dev/null/x"]),
    ("validate", ["validate", "--nope"]),
    ("search", ["search", "--store", "{tmp}/no-store", "error"]),
    ("search", ["search", "--store", "{tmp}", "((("]),
    ("search", ["search", "--store", "{tmp}/f.txt", "x"]),
    ("search", ["search", "--limit", "many"]),
    ("search", ["search", "--store", "{tmp}", "--since", "yesterday-ish"]),
    ("generate", ["generate", "/dev/null/tree", "--lines", "10"]),
    ("generate", ["generate", "{tmp}/g", "--lines", "-5"]),
    ("generate", ["generate", "{tmp}/g", "--format", "xml"]),
    ("generate", ["generate", "{tmp}/f.txt", "--lines", "10"]),
    ("demo", ["demo", "--dir", "/dev/null/demo", "--duration", "1s"]),
    ("demo", ["demo", "--dir", "{tmp}/d", "--duration", "soon"]),
    ("version", ["version", "--bogus"]),
    ("<none>", ["frobnicate"]),
    ("<none>", []),
]


class TestEveryCommandFailsInOneLine:
    @pytest.mark.parametrize(
        ("command", "argv"), HOSTILE, ids=[" ".join(a) or "no-args" for _, a in HOSTILE]
    )
    def test_hostile_arguments_exit_1_or_2_without_traceback(
        self, tmp_path: Path, command: str, argv: list[str]
    ) -> None:
        """Whatever is wrong, stderr has no traceback and the exit code is 1 or 2."""
        (tmp_path / "f.txt").write_text("not a directory\n")
        args = [a.replace("{tmp}", str(tmp_path)) for a in argv]

        result = kubelogs(*args, timeout=120)

        assert result.returncode in (1, 2), (command, result.returncode, result.stderr)
        assert "Traceback" not in result.stderr
        assert "ExceptionGroup" not in result.stderr
        assert result.stderr.strip(), "a failure says why"

    def test_debug_flag_prints_the_traceback(self, tmp_path: Path) -> None:
        """`--debug` (or KUBELOGS_DEBUG=1) is how a developer gets the traceback."""
        path = config(
            tmp_path, sinks={"out": {"type": "file", "inputs": ["logs"], "path": str(tmp_path)}}
        )
        argv = ["run", "-c", str(path)]  # the file sink's path is a directory

        plain = kubelogs(*argv)
        debug = kubelogs(*argv, "--debug")
        by_env = kubelogs(*argv, env=env_without_kubelogs(KUBELOGS_DEBUG="1"))

        assert 2 == plain.returncode
        assert "--debug" in plain.stderr
        assert "Traceback" in debug.stderr
        assert "Traceback" in by_env.stderr


class TestRunFailures:
    @pytest.mark.parametrize("listen", ["localhost", "127.0.0.1:99999", "::1:8080"])
    def test_bad_listen_address_is_a_config_error_in_validate_and_run(
        self, tmp_path: Path, listen: str
    ) -> None:
        """What `run` cannot bind, `validate` rejects first; both say `api.listen`."""
        path = config(tmp_path, api={"listen": listen})

        checked = kubelogs("validate", "-c", str(path))
        ran = kubelogs("run", "-c", str(path))

        expected = (1, 1)
        assert expected == (checked.returncode, ran.returncode)
        assert "api.listen:" in checked.stderr
        assert 1 == len(error_lines(ran.stderr)), ran.stderr
        assert "api.listen:" in ran.stderr
        assert "Traceback" not in checked.stderr + ran.stderr

    def test_second_run_on_a_store_in_use_is_one_line(self, tmp_path: Path) -> None:
        """The store's lock error is the message, not line 40 of 53."""
        path = config(
            tmp_path,
            sinks={"out": {"type": "local", "inputs": ["logs"], "path": str(tmp_path / "st")}},
        )
        with subprocess.Popen(
            [sys.executable, "-m", "kubelogs", "run", "-c", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env_without_kubelogs(),
        ) as first:
            assert first.stderr is not None
            try:
                running: list[bytes] = []

                def started() -> bool:
                    line = first.stderr.readline()
                    running.append(line)
                    return b"kubelogs running" in line

                wait_for(started, what="running")
                # Which config it runs: `run` without -c may not read the file you think.
                assert f"components from {path}, data in".encode() in running[-1]

                second = kubelogs("run", "-c", str(path))
            finally:
                first.send_signal(signal.SIGTERM)
                first.wait(60)

        lines = error_lines(second.stderr)
        assert 2 == second.returncode
        assert 1 == len(lines), second.stderr
        assert "another process is writing to this store" in lines[0]
        assert str(tmp_path / "st") in lines[0]

    def test_unwritable_data_dir_names_the_path_and_errno(self, tmp_path: Path) -> None:
        """Not SQLite's "unable to open database file": the key, the path, the errno."""
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        path = config(tmp_path, data_dir=str(blocker / "data"))

        checked = kubelogs("validate", "-c", str(path))
        ran = kubelogs("run", "-c", str(path))

        assert 1 == checked.returncode
        assert 1 == ran.returncode
        for result in (checked, ran):
            assert "data_dir:" in result.stderr
            assert str(blocker) in result.stderr
            assert "ENOTDIR" in result.stderr
            assert "Traceback" not in result.stderr

    def test_stdout_sink_into_a_closed_pipe_exits_quietly_with_0(self, tmp_path: Path) -> None:
        """`kubelogs run … | head -1`: the reader is gone, nothing is wrong."""
        path = config(tmp_path, sinks={"out": {"type": "stdout", "inputs": ["logs"]}})
        log = tmp_path / "logs" / "a.log"
        log.write_text("first line\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubelogs", "run", "-c", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env_without_kubelogs(),
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            assert b"first line" in proc.stdout.readline()
            proc.stdout.close()  # as `head -1` does after its line
            # More output than a pipe buffer holds, so that a write hits the closed pipe.
            with log.open("a") as f:
                f.writelines(f"line {i} " + "x" * 200 + "\n" for i in range(2000))
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        stderr = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()

        assert 0 == rc, stderr
        assert [] == error_lines(stderr)

    def test_stdout_reader_gone_ends_an_idle_agent_too(self, tmp_path: Path) -> None:
        """`| head -1` with no more lines to write: the agent notices and exits 0
        instead of running until its next write."""
        path = config(tmp_path, sinks={"out": {"type": "stdout", "inputs": ["logs"]}})
        (tmp_path / "logs" / "a.log").write_text("only line\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubelogs", "run", "-c", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env_without_kubelogs(),
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            assert b"only line" in proc.stdout.readline()
            proc.stdout.close()
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        stderr = proc.stderr.read().decode()
        proc.stderr.close()

        assert 0 == rc, stderr
        assert [] == error_lines(stderr)

    def test_grace_period_running_out_prints_no_asyncio_noise(self, tmp_path: Path) -> None:
        """A sink stuck in a write past the grace period: a warning, no asyncio leftovers
        ("Task was destroyed", "exception was never retrieved")."""
        path = config(
            tmp_path,
            shutdown_grace_period="500ms",
            sinks={"out": {"type": "stdout", "inputs": ["logs"]}},
        )
        log = tmp_path / "logs" / "a.log"
        log.write_text("first line\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "kubelogs", "run", "-c", str(path)],
            stdout=subprocess.PIPE,  # never read after the first line: the sink blocks
            stderr=subprocess.PIPE,
            env=env_without_kubelogs(),
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            assert b"first line" in proc.stdout.readline()
            port = api_port(proc.stderr.readline().decode())
            with log.open("a") as f:
                f.writelines(f"line {i} " + "x" * 200 + "\n" for i in range(5000))
            # Every line read: the sink is blocked on the full pipe, the queues are full.
            wait_for(
                lambda: metric(port, "kubelogs_component_received_events_total", "logs") > 5000,
                what="the source to read every line",
            )
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)
        stderr = proc.stderr.read().decode()
        proc.stdout.close()
        proc.stderr.close()

        assert 0 == rc, stderr
        assert "Task was destroyed" not in stderr
        assert "never retrieved" not in stderr
        assert "Traceback" not in stderr


class TestReport:
    def test_exception_group_is_unwrapped_to_its_cause(self) -> None:
        """A TaskGroup's ExceptionGroup is reported as its real cause, one line, exit 2."""
        import asyncio
        import io

        group = BaseExceptionGroup(
            "unhandled errors in a TaskGroup",
            [asyncio.CancelledError(), ExceptionGroup("inner", [PermissionError(13, "no")])],
        )
        out = io.StringIO()

        code = errors.report(group, command="run", debug=False, stream=out)

        assert 2 == code
        assert 1 == len(out.getvalue().splitlines())
        assert "no (EACCES)" in out.getvalue()

    def test_config_error_inside_a_group_exits_1(self) -> None:
        """A config error wins over the runtime errors it caused."""
        import io

        group = ExceptionGroup("g", [RuntimeError("x"), ConfigInvalid("f.yaml", ["a: b"])])
        out = io.StringIO()

        code = errors.report(group, command="run", debug=False, stream=out)

        assert 1 == code
        assert "f.yaml: a: b" in out.getvalue()
        assert "(and 1 other error)" in out.getvalue()

    def test_broken_pipe_only_groups_are_not_errors(self) -> None:
        """Only BrokenPipeErrors (and the cancellations they caused): quiet success."""
        import asyncio

        group = BaseExceptionGroup("g", [BrokenPipeError(32, "x"), asyncio.CancelledError()])

        assert errors.is_broken_pipe(group)
        assert not errors.is_broken_pipe(ExceptionGroup("g", [OSError(5, "io")]))

    def test_os_error_names_the_path_and_the_errno(self) -> None:
        """`path: reason (ERRNO)`, not Python's `[Errno 13] Permission denied: '/x'`."""
        exc = PermissionError(13, "Permission denied", "/var/lib/kubelogs/x.db")

        assert "/var/lib/kubelogs/x.db: Permission denied (EACCES)" == errors.describe(exc)

    def test_unresolvable_kubernetes_settings_are_config_errors(self) -> None:
        """A bad kubeconfig named in the config exits 1, like any config mistake."""
        import io

        from kubelogs.kubernetes.errors import KubernetesConfigError

        exc = ExceptionGroup("g", [KubernetesConfigError("kubeconfig /k has no current-context")])
        out = io.StringIO()

        code = errors.report(exc, command="run", debug=False, stream=out)

        assert 1 == code
        expected = "kubelogs run: error: kubeconfig /k has no current-context\n"
        assert expected == out.getvalue()


class TestLoggedExceptions:
    @pytest.mark.parametrize("fmt", ["console", "json"])
    def test_a_logged_exception_is_one_line_unless_debugging(self, fmt: str) -> None:
        """`log.exception(...)` in a component does not put a traceback in the agent's
        log; with --debug it does."""
        import logging

        from kubelogs.telemetry.logging import ConsoleFormatter, JsonFormatter

        try:
            raise OSError(5, "Input/output error")
        except OSError:
            record = logging.LogRecord(
                "kubelogs.x", logging.ERROR, __file__, 1, "close failed", (), sys.exc_info()
            )
        quiet = (JsonFormatter() if fmt == "json" else ConsoleFormatter()).format(record)
        loud = (JsonFormatter(True) if fmt == "json" else ConsoleFormatter(True)).format(record)

        assert 1 == len(quiet.splitlines())
        assert "Input/output error" in quiet
        assert "Traceback" not in quiet
        assert "Traceback" in loud
