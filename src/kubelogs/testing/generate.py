"""Synthetic node log trees, as kubelet and the container runtime lay them out.

Tests, benchmarks and ``kubelogs demo`` need realistic input they can count exactly:
``var/log/pods/<ns>_<pod>_<uid>/<container>/0.log`` written in CRI
(``<time> <stream> <P|F> <message>``) or Docker json-file format, the
``var/log/containers/<pod>_<ns>_<container>-<id>.log`` symlinks the agent follows, Pod
objects (API shape) in ``kube-meta/<ns>_<pod>.json``, and ``manifest.json`` with the
expected counts per file: ``lines`` (physical lines), ``records`` (events after the
runtime's partial lines are joined: CRI ``P`` chunks up to the ``F`` chunk, Docker chunks
without a trailing newline; each line of a Java stack trace a record of its own, as an
agent without multiline joining stores them) and ``events`` (what an agent with
``multiline: java`` stores: a stack trace, with the log line before it, is one event).

Content mixes short text lines, JSON application logs, Java stack traces (stderr) and
messages longer than 16 KiB that the runtime splits. Everything is a function of the
seed: the same arguments give byte-identical trees. `run_live` appends at a rate and
rotates files the way kubelet does (rename ``0.log`` to ``0.log.<YYYYmmdd-HHMMSS>``,
create a new ``0.log``, keep the newest `max_rotated`), for rotation tests and the demo.

A tree's root gets a `MARKER` file; ``var/``, ``kube-meta/`` and ``manifest.json`` are
replaced only under a root that has it (`check_root`), so pointing the generator at a
directory of other data (or at ``/``) is refused instead of deleting that data. The
content reads like a cluster's: JSON levels agree with their message and HTTP status,
stack frames come in call order, and each app runs in the namespace its name suggests
(`APP_NAMESPACES`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import string
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Format = Literal["cri", "docker"]

PARTIAL_CHUNK = 16 * 1024
"""containerd and Docker split a line into pieces of this many bytes."""
START_NS = 1_736_935_200 * 1_000_000_000  # 2025-01-15T10:00:00Z

APPS = (
    "api-gateway",
    "orders",
    "payment-svc",
    "cart",
    "catalog",
    "search-indexer",
    "auth",
    "notification",
    "billing-worker",
    "inventory",
    "frontend",
    "coredns",
)
APP_NAMESPACES = {
    "api-gateway": "ingress-nginx",
    "orders": "checkout",
    "payment-svc": "payments",
    "cart": "checkout",
    "catalog": "search",
    "search-indexer": "search",
    "auth": "default",
    "notification": "default",
    "billing-worker": "payments",
    "inventory": "checkout",
    "frontend": "default",
    "coredns": "kube-system",
}
"""The namespace each app runs in: the one its name suggests, as in a real cluster, so
that ``kubernetes.namespace:payments`` finds the payment services (the demo's example
searches rely on it)."""
NAMESPACES = tuple(dict.fromkeys(APP_NAMESPACES.values()))
CONTAINER_NAMES = ("app", "server", "worker", "sidecar", "proxy")
_ALNUM = string.ascii_lowercase + string.digits
_TEXT = (
    "GET /api/v1/orders/{n} {status} {ms}ms - {ip} req={rid}",
    "INFO  [main] OrderService - processed order {n} in {ms} ms",
    '{ip} - - "POST /cart/items HTTP/1.1" {status} {size} "-" "okhttp/4.9.3"',
    "WARN  cache miss for key user:{n}:profile, refreshing from db ({ms}ms)",
    'level=info msg="reconciled object" namespace=default name=obj-{n} took={ms}ms',
    "I0115 10:00:00.123456       1 controller.go:{ms}] Syncing item key={n}",
)
_JSON_OK = (
    ("info", "request completed"),
    ("info", "payment authorized"),
    ("info", "user session created"),
    ("info", "message consumed"),
    ("debug", "cache refreshed"),
    ("warn", "retrying upstream call"),
)
"""(level, message) of a request that succeeded: the level says what the message says."""
_JSON_CLIENT_ERROR = ("request rejected", "validation failed")
_JSON_SERVER_ERROR = ("request failed", "upstream call failed")
_STACK = (
    "com.zaxxer.hikari.pool.HikariPool.getConnection(HikariPool.java:181)",
    "com.zaxxer.hikari.HikariDataSource.getConnection(HikariDataSource.java:100)",
    "org.springframework.jdbc.datasource.DataSourceUtils.fetchConnection(DataSourceUtils.java:160)",
    "com.example.orders.repository.OrderRepository.findById(OrderRepository.java:88)",
    "com.example.orders.service.OrderService.process(OrderService.java:142)",
    "com.example.orders.api.OrderController.create(OrderController.java:57)",
    "java.base/java.lang.reflect.Method.invoke(Method.java:580)",
    "org.springframework.web.method.support.InvocableHandlerMethod.doInvoke("
    "InvocableHandlerMethod.java:255)",
    "org.springframework.web.servlet.DispatcherServlet.doDispatch(DispatcherServlet.java:1067)",
    "org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885)",
    "jakarta.servlet.http.HttpServlet.service(HttpServlet.java:658)",
    "org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:166)",
    "org.apache.catalina.core.StandardWrapperValve.invoke(StandardWrapperValve.java:197)",
    "org.apache.catalina.connector.CoyoteAdapter.service(CoyoteAdapter.java:341)",
    "org.apache.coyote.http11.Http11Processor.service(Http11Processor.java:391)",
    "org.apache.tomcat.util.net.NioEndpoint$SocketProcessor.doRun(NioEndpoint.java:1744)",
    "java.base/java.lang.Thread.run(Thread.java:1583)",
)
"""One call stack, innermost frame first, as a JVM prints it: a trace is the frames from
where its exception was thrown down to ``Thread.run``, in this order."""
_EXCEPTIONS = (
    ("java.lang.IllegalStateException", "Order {n} is in an invalid state: PENDING", 4),
    ("java.sql.SQLTransientConnectionException", "HikariPool-1 - Connection is not available", 0),
    ("java.lang.NullPointerException", 'Cannot invoke "Customer.getId()" because it is null', 4),
)
"""(class, message, index in `_STACK` of the frame that throws it)."""
_CAUSE = (
    "Caused by: java.net.SocketTimeoutException: Read timed out",
    "\tat java.base/sun.nio.ch.NioSocketImpl.timedRead(NioSocketImpl.java:288)",
    "\tat java.base/java.net.Socket$SocketInputStream.read(Socket.java:1099)",
    "\tat org.postgresql.core.VisibleBufferedInputStream.readMore("
    "VisibleBufferedInputStream.java:161)",
)
_RESOURCES = ("orders", "users", "items")
KINDS = ("text", "json", "java", "long")
WEIGHTS = (0.56, 0.40, 0.035, 0.005)


@dataclass
class Container:
    namespace: str
    pod: str
    pod_uid: str
    app: str
    name: str
    container_id: str

    @property
    def pod_dir(self) -> str:
        return f"var/log/pods/{self.namespace}_{self.pod}_{self.pod_uid}"

    @property
    def log_path(self) -> str:
        """Relative path of the file being written (``.../<container>/0.log``)."""
        return f"{self.pod_dir}/{self.name}/0.log"

    @property
    def link_path(self) -> str:
        return f"var/log/containers/{self.pod}_{self.namespace}_{self.name}-{self.container_id}.log"


@dataclass
class FileCounts:
    path: str
    link: str
    namespace: str
    pod: str
    pod_uid: str
    container: str
    container_id: str
    lines: int = 0
    records: int = 0
    bytes: int = 0
    events: int = 0
    """Records with each Java stack trace counted once (``multiline: java``)."""
    rotated: list[str] = field(default_factory=list)
    """Rotated files still on disk (relative paths), oldest first. `lines`, `records` and
    `bytes` count everything written to the container, rotated files included."""
    deleted_lines: int = 0
    """Of `lines`, those in rotated files deleted because `max_rotated` were kept."""
    deleted_records: int = 0
    deleted_events: int = 0


@dataclass
class Manifest:
    format: str
    seed: int
    node: str
    lines: int
    records: int
    bytes: int
    files: list[FileCounts]
    events: int = 0
    """`records` with each Java stack trace counted once: what an agent with
    ``multiline: java`` stores (0 in manifests written before it was counted)."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text())
        files = [FileCounts(**f) for f in data.pop("files")]
        return cls(files=files, **data)


@dataclass(frozen=True)
class Line:
    """One physical line as the runtime writes it."""

    time_ns: int
    stream: str
    message: str
    final: bool
    """False for a partial chunk (CRI ``P``, Docker without trailing newline)."""
    last: bool = True
    """False for a line of an event that goes on (a Java stack trace but its last line,
    a partial chunk): the lines up to one with `last` make one ``multiline: java``
    event."""


def plan_containers(rng: random.Random, containers: int, pods: int) -> list[Container]:
    pods = pods or (containers + 1) // 2
    out: list[Container] = []
    pod_names = []
    for i in range(pods):
        app = APPS[i % len(APPS)]
        suffix = "".join(rng.choice(_ALNUM) for _ in range(5))
        pod_names.append(
            (
                APP_NAMESPACES[app],
                f"{app}-{rng.getrandbits(40):010x}-{suffix}",
                app,
                str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            )
        )
    per_pod: dict[int, int] = {}
    for j in range(containers):
        p = j % pods
        ns, pod, app, uid = pod_names[p]
        k = per_pod.get(p, 0)
        per_pod[p] = k + 1
        name = CONTAINER_NAMES[k % len(CONTAINER_NAMES)] + ("" if k < 5 else str(k))
        out.append(Container(ns, pod, uid, app, name, f"{rng.getrandbits(256):064x}"))
    return out


def _text(rng: random.Random) -> str:
    return rng.choice(_TEXT).format(
        n=rng.randint(10_000, 99_999_999),
        status=rng.choice((200, 200, 200, 201, 404, 500)),
        ms=rng.randint(1, 2500),
        ip=f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        rid=f"{rng.getrandbits(32):08x}",
        size=rng.randint(100, 90_000),
    )


def _json(rng: random.Random, app: str) -> str:
    status = rng.choice((200, 200, 200, 201, 204, 404, 500))
    if status >= 500:
        level, msg = "error", rng.choice(_JSON_SERVER_ERROR)
    elif status >= 400:
        level, msg = "warn", rng.choice(_JSON_CLIENT_ERROR)
    else:
        level, msg = rng.choice(_JSON_OK)
    return json.dumps(
        {
            "level": level,
            "logger": f"com.example.{app.replace('-', '')}.Handler",
            "msg": msg,
            "trace_id": f"{rng.getrandbits(128):032x}",
            "span_id": f"{rng.getrandbits(64):016x}",
            "http": {
                "method": rng.choice(("GET", "POST", "PUT")),
                "path": f"/api/v1/{rng.choice(_RESOURCES)}/{rng.randint(1, 10**7)}",
                "status": status,
                "duration_ms": round(rng.uniform(0.2, 900.0), 3),
            },
            "user_id": rng.randint(1, 10**6),
        },
        separators=(",", ":"),
    )


def _java(rng: random.Random) -> list[str]:
    """A Spring Boot error line and its stack trace, frames in call order (innermost
    first, ``Thread.run`` last) and a ``Caused by`` after them, as a JVM prints it."""
    exc, text, thrown_at = rng.choice(_EXCEPTIONS)
    lines = [
        f"2025-01-15 10:00:00.{rng.randint(0, 999):03d} ERROR 1 --- [nio-8080-exec-"
        f"{rng.randint(1, 200)}] OrderController : Request failed",
        f"{exc}: {text.format(n=rng.randint(1, 10**6))}",
    ]
    lines += [f"\tat {frame}" for frame in _STACK[thrown_at:]]
    if exc.startswith("java.sql."):
        lines += [*_CAUSE, f"\t... {len(_STACK)} more"]
    return lines


def _long(rng: random.Random) -> str:
    n = rng.randint(PARTIAL_CHUNK + 600, 2 * PARTIAL_CHUNK + 5000)
    body = "".join(rng.choice(_ALNUM) for _ in range(64))
    head = '{"level":"info","msg":"large payload dump","payload":"'
    return (head + body * (n // 64 + 1))[: n - 2] + '"}'


def events(rng: random.Random, app: str) -> Iterator[list[tuple[str, str, bool]]]:
    """Endless events of one container: each a list of ``(stream, chunk, final)``."""
    while True:
        kind = rng.choices(KINDS, WEIGHTS)[0]
        if kind == "text":
            yield [("stdout", _text(rng), True)]
        elif kind == "json":
            yield [("stdout", _json(rng, app), True)]
        elif kind == "java":
            yield [("stderr", line, True) for line in _java(rng)]
        else:
            msg = _long(rng)
            chunks = [msg[i : i + PARTIAL_CHUNK] for i in range(0, len(msg), PARTIAL_CHUNK)]
            yield [("stdout", c, i == len(chunks) - 1) for i, c in enumerate(chunks)]


def container_lines(
    seed: int, c: Container, count: int, *, start_ns: int = START_NS
) -> Iterator[Line]:
    """Exactly `count` physical lines of container `c` (an event that would not fit is
    replaced by a one-line text event)."""
    rng = random.Random(f"{seed}/{c.namespace}/{c.pod}/{c.name}")
    t = start_ns + rng.randint(0, 5_000_000_000)
    left = count
    for ev in events(rng, c.app):
        if left <= 0:
            return
        if len(ev) > left:
            ev = [("stdout", _text(rng), True)]
        for i, (stream, msg, final) in enumerate(ev):
            t += rng.randint(20_000, 900_000)
            yield Line(t, stream, msg, final, i == len(ev) - 1)
        left -= len(ev)


def format_time(ns: int) -> str:
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def render(line: Line, fmt: Format) -> bytes:
    ts = format_time(line.time_ns)
    if fmt == "cri":
        tag = "F" if line.final else "P"
        return f"{ts} {line.stream} {tag} {line.message}\n".encode()
    log = line.message + ("\n" if line.final else "")
    body = json.dumps(
        {"log": log, "stream": line.stream, "time": ts}, ensure_ascii=False, separators=(",", ":")
    )
    return (body + "\n").encode()


def pod_object(pod: list[Container], node: str) -> dict[str, Any]:
    """A Pod as the API server returns it (the fields metadata enrichment reads)."""
    first = pod[0]
    image = f"registry.example.com/{first.app}:1.4.2"
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": first.pod,
            "namespace": first.namespace,
            "uid": first.pod_uid,
            "labels": {"app": first.app, "app.kubernetes.io/name": first.app},
            "annotations": {"prometheus.io/scrape": "true"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": first.pod.rsplit("-", 1)[0],
                    "controller": True,
                }
            ],
            "creationTimestamp": "2025-01-15T09:00:00Z",
        },
        "spec": {"nodeName": node, "containers": [{"name": c.name, "image": image} for c in pod]},
        "status": {
            "phase": "Running",
            "podIP": f"10.244.1.{int(first.pod_uid[:2], 16) % 250 + 2}",
            "containerStatuses": [
                {
                    "name": c.name,
                    "image": image,
                    "ready": True,
                    "restartCount": 0,
                    "containerID": f"containerd://{c.container_id}",
                }
                for c in pod
            ],
        },
    }


def _counts(c: Container) -> FileCounts:
    return FileCounts(
        c.log_path, c.link_path, c.namespace, c.pod, c.pod_uid, c.name, c.container_id
    )


MARKER = ".kubelogs-generated"
"""The file a generated tree's root holds: what makes replacing its ``var/``,
``kube-meta/`` and ``manifest.json`` safe. A directory without it is never emptied (as
root, ``generate /`` would otherwise remove ``/var``)."""
_OWNED = ("var", "kube-meta", "manifest.json")


class TreeRootError(Exception):
    """A tree cannot be written at this root; the message is one sentence naming it."""


def check_root(root: Path | str) -> None:
    """Raise `TreeRootError` unless a tree may be written at `root`: a new directory
    (whose parent exists), a directory holding none of the tree's top-level entries, or
    one written by this module before (it holds `MARKER`)."""
    root = Path(root).absolute()
    if root.exists() and not root.is_dir():
        raise TreeRootError(f"{root} is not a directory")
    if not root.exists():
        if not root.parent.is_dir():
            raise TreeRootError(f"{root.parent} does not exist (create it first)")
        return
    if (root / MARKER).is_file():
        return
    for name in _OWNED:
        if os.path.lexists(root / name):
            raise TreeRootError(
                f"{root / name} exists and {root} has no {MARKER} file, so it was not "
                "written by kubelogs; choose a new or empty directory"
            )


def _prepare(root: Path, containers: list[Container], node: str) -> None:
    check_root(root)
    root.mkdir(exist_ok=True)
    (root / MARKER).write_text(
        "Written by kubelogs generate/demo: they replace var/, kube-meta/ and\n"
        "manifest.json in this directory, and nothing else.\n"
    )
    for sub in _OWNED[:2]:
        shutil.rmtree(root / sub, ignore_errors=True)
    (root / "var/log/containers").mkdir(parents=True, exist_ok=True)
    (root / "kube-meta").mkdir(parents=True, exist_ok=True)
    pods: dict[tuple[str, str], list[Container]] = {}
    for c in containers:
        (root / c.log_path).parent.mkdir(parents=True, exist_ok=True)
        (root / c.log_path).touch()
        os.symlink(root / c.log_path, root / c.link_path)
        pods.setdefault((c.namespace, c.pod), []).append(c)
    for (ns, pod), members in pods.items():
        (root / "kube-meta" / f"{ns}_{pod}.json").write_text(
            json.dumps(pod_object(members, node), indent=1)
        )


def _write_manifest(
    root: Path, fmt: Format, seed: int, node: str, files: list[FileCounts]
) -> Manifest:
    manifest = Manifest(
        format=fmt,
        seed=seed,
        node=node,
        lines=sum(f.lines for f in files),
        records=sum(f.records for f in files),
        bytes=sum(f.bytes for f in files),
        files=files,
        events=sum(f.events for f in files),
    )
    (root / "manifest.json").write_text(manifest.to_json())
    return manifest


def generate_tree(
    root: Path | str,
    *,
    lines: int = 10_000,
    containers: int = 4,
    pods: int = 0,
    fmt: Format = "cri",
    seed: int = 42,
    node: str = "node-1",
) -> Manifest:
    """Write a complete tree under `root`, replacing ``var/`` and ``kube-meta/`` only if
    this module wrote them (`check_root`; `TreeRootError` otherwise)."""
    root = Path(root).absolute()
    rng = random.Random(seed)
    plan = plan_containers(rng, containers, pods)
    _prepare(root, plan, node)
    files = []
    for k, c in enumerate(plan):
        budget = lines // containers + (1 if k < lines % containers else 0)
        counts = _counts(c)
        with open(root / c.log_path, "wb") as f:
            for line in container_lines(seed, c, budget):
                data = render(line, fmt)
                f.write(data)
                counts.lines += 1
                counts.records += line.final
                counts.events += line.last
                counts.bytes += len(data)
        files.append(counts)
    return _write_manifest(root, fmt, seed, node, files)


def rotated_name(path: Path, now: float) -> Path:
    """``0.log.<YYYYmmdd-HHMMSS>`` as kubelet names it; a later second if taken."""
    stamp = int(now)
    while True:
        candidate = path.with_name(
            f"{path.name}.{time.strftime('%Y%m%d-%H%M%S', time.gmtime(stamp))}"
        )
        if not candidate.exists():
            return candidate
        stamp += 1


def run_live(
    root: Path | str,
    *,
    rate: float,
    duration: float,
    containers: int = 4,
    pods: int = 0,
    fmt: Format = "cri",
    seed: int = 42,
    node: str = "node-1",
    rotate_size: int = 10 << 20,
    max_rotated: int = 5,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    should_stop: Callable[[], bool] = lambda: False,
    progress: Callable[[int, int], None] | None = None,
) -> Manifest:
    """Append about `rate` lines per second for `duration` seconds, rotating each
    container's file at `rotate_size` bytes; write the manifest at the end. `progress`,
    if given, is called with the lines and events (`Manifest.events`) written so far
    after each round of writes (the demo's status shows them while it runs).

    Lines get the wall-clock time they are written at. Rotation happens between events,
    so a partial message is never split across two files.
    """
    root = Path(root).absolute()
    rng = random.Random(seed)
    plan = plan_containers(rng, containers, pods)
    _prepare(root, plan, node)
    files = [_counts(c) for c in plan]
    gens = [events(random.Random(f"{seed}/{c.namespace}/{c.pod}/{c.name}"), c.app) for c in plan]
    handles = [open(root / c.log_path, "ab") for c in plan]  # noqa: SIM115 (closed below)
    sizes = [0] * len(plan)
    start = clock()
    written = 0
    turn = 0
    try:
        while not should_stop():
            now = clock()
            elapsed = now - start
            due = int(min(elapsed, duration) * rate) - written
            while due > 0:
                k = turn % len(plan)
                turn += 1
                ev = next(gens[k])
                t = int(clock() * 1e9)
                for stream, msg, final in ev:
                    data = render(Line(t, stream, msg, final), fmt)
                    handles[k].write(data)
                    sizes[k] += len(data)
                    files[k].lines += 1
                    files[k].records += final
                    files[k].bytes += len(data)
                    t += 1000
                handles[k].flush()
                files[k].events += 1
                written += len(ev)
                due -= len(ev)
                if sizes[k] >= rotate_size:
                    handles[k].close()
                    handles[k] = _rotate(root, plan[k], files[k], max_rotated, clock(), fmt)
                    sizes[k] = 0
            if progress is not None:
                progress(sum(f.lines for f in files), sum(f.events for f in files))
            if elapsed >= duration:
                break
            sleep(min(0.05, max(0.0, duration - elapsed)))
    finally:
        for h in handles:
            h.close()
    return _write_manifest(root, fmt, seed, node, files)


def _rotate(
    root: Path, c: Container, counts: FileCounts, max_rotated: int, now: float, fmt: Format
) -> Any:
    live = root / c.log_path
    target = rotated_name(live, now)
    os.rename(live, target)
    counts.rotated.append(str(target.relative_to(root)))
    handle = open(live, "ab")  # noqa: SIM115 (the caller closes it)
    while len(counts.rotated) > max_rotated:
        oldest = root / counts.rotated.pop(0)
        lines, records = count_file(oldest, fmt)
        counts.deleted_lines += lines
        counts.deleted_records += records
        counts.deleted_events += count_events(oldest, fmt)
        oldest.unlink()
    return handle


def count_file(path: Path, fmt: Format) -> tuple[int, int]:
    """``(lines, records)`` of one log file, by parsing it the way a reader would."""
    lines = records = 0
    with open(path, "rb") as f:
        for raw in f:
            lines += 1
            if fmt == "cri":
                parts = raw.split(b" ", 3)
                records += len(parts) > 2 and parts[2] == b"F"
            else:
                records += json.loads(raw)["log"].endswith("\n")
    return lines, records


def count_events(path: Path, fmt: Format) -> int:
    """``multiline: java`` events of one log file written by this module: records,
    less the lines that continue a Java stack trace (its exception header, ``\tat``
    frames, ``Caused by:`` and ``... N more``), each of which joins the line before it."""
    events = 0
    with open(path, "rb") as f:
        for raw in f:
            if fmt == "cri":
                parts = raw.rstrip(b"\n").split(b" ", 3)
                if len(parts) < 4 or parts[2] != b"F":
                    continue
                msg = parts[3].decode("utf-8", "replace")
            else:
                log = json.loads(raw)["log"]
                if not log.endswith("\n"):
                    continue
                msg = log[:-1]
            events += not _continues_trace(msg)
    return events


def _continues_trace(msg: str) -> bool:
    return msg.startswith(("\tat ", "\t... ", "Caused by: ")) or any(
        msg.startswith(f"{exc}: ") for exc, _, _ in _EXCEPTIONS
    )
