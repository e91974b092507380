"""Real OpenSearch 2.19 and Elasticsearch 8.19 nodes for tests, from Maven Central jars.

Why this way: no distribution download site is reachable from the test machines, but
Maven Central is (`jvm_server`, shared with the Kafka broker). The jars are resolved by
the small poms in ``tests/integration/elasticsearch/servers`` into ``~/.m2``; a launcher
(one short Java file per server, beside the poms) is compiled once and cached under
``~/.cache/kubelogs-test`` with the classpath Maven printed, outside the repository.

- OpenSearch runs through codelibs' ``OpenSearchRunner`` (`OsLauncher.java` picks the
  ports, since the runner's own main only accepts HTTP ports up to 9299).
- Elasticsearch 8 has no runner on Maven Central: `EsLauncher.java` starts a ``Node`` with
  the server jars on the module path and transport-netty4 loaded as a module from
  ``HOME/modules`` (its descriptor without ``modulename=``, so the plugin's own class
  loader holds the plugin class). This node has no ``GET /`` (405), no ingest
  processors, no analysis-common: what the sink must not depend on.

Start-up speed: each JVM gets ``-Xmx512m -XX:TieredStopAtLevel=1`` and a dynamic
class-data archive: the first run writes it at exit (``-XX:ArchiveClassesAtExit``), later
runs map it (``-XX:SharedArchiveFile``), which roughly halves OpenSearch's start.

Resource handling: a `SearchServer` owns its JVM (`jvm_server.JvmServer`: started
directly, so its pid is the JVM's; `stop` sends SIGTERM to that pid and waits, then
SIGKILL). Logs go to a file in the directory the caller gives (the test session's tmp dir).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from support.jvm_server import (
    CACHE_DIR,
    JvmServer,
    ServerStartError,
    class_data_flags,
    digest,
    free_port,
    java,
)
from support.jvm_server import resolve_classpath as _resolve_pom

__all__ = ["CACHE_DIR", "Flavour", "SearchServer", "ServerStartError", "free_port"]

Flavour = Literal["opensearch", "elasticsearch"]

SERVERS_DIR = Path(__file__).resolve().parents[1] / "integration" / "elasticsearch" / "servers"
START_TIMEOUT = 180.0
"""Seconds a node may take to answer health: ~6-25 s is usual on 2 busy cores."""
JVM_FLAGS = ["-Xms512m", "-Xmx512m", "-XX:TieredStopAtLevel=1", "-Xlog:cds=off", "-Xlog:all=off"]
_POMS: dict[Flavour, str] = {
    "opensearch": "opensearch-pom.xml",
    "elasticsearch": "elasticsearch-pom.xml",
}
_LAUNCHERS: dict[Flavour, str] = {"opensearch": "OsLauncher", "elasticsearch": "EsLauncher"}


def resolve_classpath(flavour: Flavour) -> list[str]:
    """The jars of `flavour`, resolved by Maven into ~/.m2 (cached by the pom's hash)."""
    return _resolve_pom(SERVERS_DIR / _POMS[flavour], flavour)


def _compile_launcher(flavour: Flavour, jars: list[str]) -> Path:
    """The launcher as a jar (class-data archives refuse class directories)."""
    src = SERVERS_DIR / f"{_LAUNCHERS[flavour]}.java"
    jar = CACHE_DIR / f"{flavour}-launcher-{digest(src, SERVERS_DIR / _POMS[flavour])}.jar"
    if jar.exists():
        return jar
    javac, jar_tool = shutil.which("javac"), shutil.which("jar")
    if javac is None or jar_tool is None:
        raise ServerStartError("javac (a JDK 17) is not installed; it compiles the launcher")
    classes = jar.with_suffix(f".classes{os.getpid()}")
    shutil.rmtree(classes, ignore_errors=True)
    path_flag = ["-cp", os.pathsep.join(jars)]
    if flavour == "elasticsearch":
        path_flag = ["--module-path", os.pathsep.join(jars), "--add-modules", "ALL-MODULE-PATH"]
    r = subprocess.run(
        [javac, "-d", str(classes), *path_flag, str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0:
        raise ServerStartError(f"javac {src.name} failed: {r.stderr[-800:]}")
    tmp = jar.with_suffix(f".tmp{os.getpid()}")
    subprocess.run([jar_tool, "cf", str(tmp), "-C", str(classes), "."], check=True, timeout=120)
    shutil.rmtree(classes, ignore_errors=True)
    tmp.replace(jar)
    return jar


def _is_netty(jar: str) -> bool:
    return "/transport-netty4/" in jar or "/io/netty/" in jar


@dataclass
class SearchServer(JvmServer):
    """One running node; `url` is its HTTP address on the loopback interface."""

    flavour: Flavour
    home: Path
    log_path: Path
    http_port: int = field(default_factory=free_port)
    transport_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    startup_seconds: float = 0.0
    _cmd: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def label(self) -> str:
        return self.flavour

    # -- life cycle ----------------------------------------------------------------------

    def prepare(self) -> SearchServer:
        jars = resolve_classpath(self.flavour)
        launcher = _compile_launcher(self.flavour, jars)
        cds = class_data_flags(launcher.with_suffix(".jsa"))
        java_path = java()
        self.home.mkdir(parents=True, exist_ok=True)
        if self.flavour == "opensearch":
            self._cmd = [
                java_path,
                *JVM_FLAGS,
                *cds,
                "-cp",
                os.pathsep.join([*jars, str(launcher)]),
                "OsLauncher",
                str(self.home),
                str(self.http_port),
                str(self.transport_port),
            ]
        else:
            module = self.home / "modules" / "transport-netty4"
            module.mkdir(parents=True, exist_ok=True)
            netty = [j for j in jars if _is_netty(j)]
            for jar in netty:
                link = module / Path(jar).name
                if not link.exists():
                    link.symlink_to(jar)
            (module / "plugin-descriptor.properties").write_text(_netty_descriptor(netty))
            self._cmd = [
                java_path,
                *JVM_FLAGS,
                *cds,
                "--module-path",
                os.pathsep.join(j for j in jars if not _is_netty(j)),
                "--add-modules",
                "ALL-MODULE-PATH",
                "-cp",
                str(launcher),
                "EsLauncher",
                str(self.home),
                str(self.http_port),
                str(self.transport_port),
            ]
        return self

    def start(self, timeout: float = START_TIMEOUT) -> SearchServer:
        """Start the JVM and wait until the cluster health is green or yellow."""
        assert self._cmd, "prepare() first"
        self._launch(self._cmd, timeout)
        return self

    def ready(self) -> bool:
        return self.health() in ("green", "yellow")

    def not_ready_detail(self) -> str:
        return f" (health {self.health()!r})"

    # -- small HTTP helpers for tests ------------------------------------------------------

    def health(self) -> str | None:
        try:
            body = self.request("GET", "/_cluster/health", timeout=5)
        except (OSError, urllib.error.URLError, ValueError):
            return None
        return str(body.get("status")) if isinstance(body, dict) else None

    def request(self, method: str, path: str, body: Any = None, *, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            if exc.code != 404:
                raise ValueError(f"{method} {path}: {exc.code} {raw[:500]!r}") from None
        return json.loads(raw) if raw else None

    def refresh(self, pattern: str = "*") -> None:
        with contextlib.suppress(ValueError):
            self.request("POST", f"/{pattern}/_refresh")

    def ids(self, pattern: str) -> list[str]:
        """Every `_id` in indices matching `pattern` (duplicates kept), after a refresh."""
        self.refresh(pattern)
        return [h["_id"] for h in self.search(pattern, {"match_all": {}})]

    def search(self, pattern: str, query: dict[str, Any], size: int = 10_000) -> list[Any]:
        """Every hit, `size` per page, through a scroll: one snapshot of the indices.

        (Paging with `search_after` on `_doc` is not stable: a background segment merge
        between two pages renumbers the documents, and CI once saw a page of 10,000
        returned twice and another skipped.)"""
        body: dict[str, Any] = {"query": query, "size": size, "sort": ["_doc"]}
        res = self.request("POST", f"/{pattern}/_search?ignore_unavailable=true&scroll=2m", body)
        hits: list[Any] = []
        scroll_id = (res or {}).get("_scroll_id")
        try:
            while True:
                page = (res or {}).get("hits", {}).get("hits", [])
                hits.extend(page)
                if not page or scroll_id is None:
                    return hits
                res = self.request(
                    "POST", "/_search/scroll", {"scroll": "2m", "scroll_id": scroll_id}
                )
                scroll_id = (res or {}).get("_scroll_id", scroll_id)
        finally:
            if scroll_id is not None:
                with contextlib.suppress(ValueError):
                    self.request("DELETE", "/_search/scroll", {"scroll_id": [scroll_id]})

    def delete_indices(self, pattern: str) -> None:
        with contextlib.suppress(ValueError):
            self.request("DELETE", f"/_data_stream/{pattern}")
        with contextlib.suppress(ValueError):
            self.request("DELETE", f"/{pattern}?expand_wildcards=all")


def _netty_descriptor(netty_jars: list[str]) -> str:
    """The plugin descriptor from the transport-netty4 jar, without `modulename=`."""
    plugin = next(j for j in netty_jars if "/transport-netty4/" in j)
    with zipfile.ZipFile(plugin) as z:
        text = z.read("META-INF/es-plugins/transport-netty4/plugin-descriptor.properties")
    lines = text.decode().splitlines()
    return "\n".join(line for line in lines if not line.startswith("modulename=")) + "\n"
