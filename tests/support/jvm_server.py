"""What every JVM test server shares: jars from Maven Central, a class-data archive, and
one JVM process owned by its pid (the search nodes of `es_servers`, the Kafka broker of
`kafka_broker`).

Why this way: no distribution download site is reachable from the test machines, but
Maven Central is, and the machine has a JDK 17 and Maven. A small pom per server resolves
its jars into ``~/.m2``; the classpath Maven prints is cached under
``~/.cache/kubelogs-test`` (``KUBELOGS_TEST_CACHE``), outside the repository, keyed by
the pom's hash, so a fresh machine fetches once and a changed pom fetches again.

Start-up speed: a dynamic class-data archive; the first run writes it at exit
(``-XX:ArchiveClassesAtExit``), later runs map it (``-XX:SharedArchiveFile``).

Resource handling: a `JvmServer` starts its JVM directly (not through a shell, so its pid
is the JVM's), waits until the server's own readiness check passes, and `stop` sends
SIGTERM to that pid and waits, then SIGKILL. Logs go to a file the caller names.
`start_or_skip` is the fixtures' policy: a server that cannot start skips its tests, and
fails them under ``CI=true`` (a fresh machine must be able to start every server).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Self, TypeVar

import pytest

CACHE_DIR = Path(os.environ.get("KUBELOGS_TEST_CACHE", Path.home() / ".cache" / "kubelogs-test"))


class ServerStartError(RuntimeError):
    """A server could not be prepared or did not become ready; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def digest(*paths: Path) -> str:
    """A short hash of the files' contents: cache keys that change when they do."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def java() -> str:
    """The `java` executable; a `ServerStartError` where there is no JDK."""
    path = shutil.which("java")
    if path is None:
        raise ServerStartError("java (JDK 17) is not installed")
    return path


def resolve_classpath(pom: Path, name: str, *mvn_args: str) -> list[str]:
    """The jars `pom` names, resolved by Maven into ~/.m2; the classpath is cached as
    ``CACHE_DIR/<name>-<pom hash>.classpath`` and reused while every jar exists."""
    out = CACHE_DIR / f"{name}-{digest(pom)}.classpath"
    if out.exists():
        jars = out.read_text().strip().split(os.pathsep)
        if jars and all(os.path.exists(j) for j in jars):
            return jars
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServerStartError(f"mvn is not installed; it resolves the {name} jars")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    r = subprocess.run(
        [
            *(mvn, "-q", "-B", "-f", str(pom), "dependency:build-classpath", *mvn_args),
            f"-Dmdep.outputFile={tmp}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if r.returncode != 0 or not tmp.exists():
        raise ServerStartError(f"mvn could not resolve {pom.name}: {(r.stdout + r.stderr)[-800:]}")
    tmp.replace(out)
    return out.read_text().strip().split(os.pathsep)


def class_data_flags(archive: Path) -> list[str]:
    """Map the class-data archive if an earlier run wrote it, else write it at exit."""
    if archive.exists():
        return [f"-XX:SharedArchiveFile={archive}"]
    return [f"-XX:ArchiveClassesAtExit={archive}"]


class JvmServer(ABC):
    """The life cycle of one JVM server. Subclasses (dataclasses) hold `home`,
    `log_path`, `proc` and `startup_seconds`, and say when the server is `ready`."""

    home: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None
    startup_seconds: float

    @property
    @abstractmethod
    def label(self) -> str:
        """The server's name in messages."""

    @abstractmethod
    def prepare(self) -> Self:
        """Fetch and write what the JVM needs (jars, launcher, config, data directory)."""

    @abstractmethod
    def start(self) -> Self:
        """Start the JVM and wait until the server is `ready` (see `_launch`)."""

    @abstractmethod
    def ready(self) -> bool:
        """The server answers as its clients need it to."""

    def not_ready_detail(self) -> str:
        """More words for a start that timed out (e.g. the last health seen)."""
        return ""

    def _launch(self, cmd: list[str], timeout: float) -> None:
        """Start `cmd` in `home` (output to `log_path`) and wait until `ready`; a
        `ServerStartError` with the log's tail if the JVM exits or the time runs out."""
        began = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.home,
            )
        deadline = began + timeout
        while not self.ready():
            if self.proc.poll() is not None:
                raise ServerStartError(
                    f"{self.label} exited with {self.proc.returncode} while starting; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"{self.label} not ready after {timeout:.0f}s{self.not_ready_detail()}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(0.25)
        self.startup_seconds = time.monotonic() - began

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM our own JVM (by its pid) and wait; SIGKILL if it does not exit."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)

    def log_tail(self, n: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


Server = TypeVar("Server", bound=JvmServer)


def start_or_skip(server: Server) -> Server:
    """Prepare and start `server` for a session fixture. One that cannot start skips the
    tests that need it, with the reason (no JDK, no Maven, no network to Maven Central),
    and fails them under ``CI=true``."""
    try:
        server.prepare().start()
    except (ServerStartError, OSError) as exc:
        server.stop()
        message = f"{server.label} could not start: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return server
