"""The JVM server helper the Kafka and search-server fixtures share (support/jvm_server):
the fixtures' start-or-skip policy, the cached Maven classpath, and the process life
cycle. A small Python child stands in for the JVM: `_launch` and `stop` do not care what
the command is, and the real servers are started by the integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import jvm_server
from support.jvm_server import JvmServer, ServerStartError, start_or_skip
from support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]


@dataclass
class ChildServer(JvmServer):
    """A 'server' that is ready once its child has written `ready_file`."""

    home: Path
    log_path: Path
    script: str = ""
    proc: subprocess.Popen[bytes] | None = None
    startup_seconds: float = 0.0
    prepared: bool = False
    fail_prepare: bool = False

    @property
    def label(self) -> str:
        return "child"

    @property
    def ready_file(self) -> Path:
        return self.home / "ready"

    def prepare(self) -> ChildServer:
        if self.fail_prepare:
            raise ServerStartError("mvn is not installed; it resolves the child jars")
        self.prepared = True
        return self

    def start(self, timeout: float = 60.0) -> ChildServer:
        self._launch([sys.executable, "-c", self.script, str(self.ready_file)], timeout)
        return self

    def ready(self) -> bool:
        return self.ready_file.exists()


SERVE = "import pathlib, sys, time\npathlib.Path(sys.argv[1]).touch()\ntime.sleep(600)\n"
STUBBORN = (
    "import pathlib, signal, sys, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "pathlib.Path(sys.argv[1]).touch()\ntime.sleep(600)\n"
)
CRASH = "import sys\nprint('bad config: no such listener', flush=True)\nsys.exit(3)\n"


def _server(tmp_path: Path, script: str = SERVE, **kw: bool) -> ChildServer:
    return ChildServer(home=tmp_path, log_path=tmp_path / "child.log", script=script, **kw)


def test_a_server_that_cannot_start_fails_the_run_under_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="child could not start: mvn is not"):
        start_or_skip(_server(tmp_path, fail_prepare=True))


def test_a_server_that_cannot_start_skips_outside_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="child could not start: mvn is not"):
        start_or_skip(_server(tmp_path, fail_prepare=True))


def test_a_jvm_that_exits_while_starting_fails_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="exited with 3") as err:
        start_or_skip(_server(tmp_path, CRASH))
    assert "bad config: no such listener" in str(err.value)


def test_start_waits_until_ready_and_stop_ends_the_process(tmp_path: Path) -> None:
    server = start_or_skip(_server(tmp_path))
    try:
        assert server.prepared
        assert server.running
        assert server.startup_seconds > 0
    finally:
        server.stop()
    assert not server.running


def test_stop_kills_a_jvm_that_ignores_sigterm(tmp_path: Path) -> None:
    server = _server(tmp_path, STUBBORN).start()
    server.stop(timeout=1.0)
    assert not server.running
    assert server.proc is not None
    assert -9 == server.proc.returncode


def test_a_start_that_times_out_stops_the_jvm(tmp_path: Path) -> None:
    server = _server(tmp_path, "import time\ntime.sleep(600)\n")
    with pytest.raises(ServerStartError, match="child not ready after 1s"):
        server.start(timeout=1.0)
    wait_for(lambda: not server.running, timeout=30)


def test_the_classpath_cache_lives_outside_the_repository() -> None:
    if "KUBELOGS_TEST_CACHE" not in os.environ:
        assert not jvm_server.CACHE_DIR.resolve().is_relative_to(REPO)


def test_a_cached_classpath_is_used_while_its_jars_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jvm_server, "CACHE_DIR", tmp_path / "cache")
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no mvn
    pom = tmp_path / "server-pom.xml"
    pom.write_text("<project/>")
    jar = tmp_path / "server.jar"
    jar.write_bytes(b"PK")
    cached = tmp_path / "cache" / f"srv-{jvm_server.digest(pom)}.classpath"
    cached.parent.mkdir()
    cached.write_text(str(jar))

    assert [str(jar)] == jvm_server.resolve_classpath(pom, "srv")
    pom.write_text("<project><!-- changed --></project>")  # a changed pom: a new key
    with pytest.raises(ServerStartError, match="mvn is not installed; it resolves the srv"):
        jvm_server.resolve_classpath(pom, "srv")
    pom.write_text("<project/>")
    jar.unlink()  # a fresh ~/.m2 under an old cache: Maven must fetch again
    with pytest.raises(ServerStartError, match="mvn is not installed"):
        jvm_server.resolve_classpath(pom, "srv")
