"""Write container logs the way kubelet and the runtimes lay them out on a node.

``<root>/var/log/pods/<ns>_<pod>_<uid>/<container>/0.log`` with a symlink
``<root>/var/log/containers/<pod>_<ns>_<container>-<id>.log``; CRI or Docker json-file
lines; rotation by rename (kubelet) or by copytruncate.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path


class PodLog:
    def __init__(
        self,
        root: Path,
        namespace: str = "default",
        pod: str = "web-7d4b9-abcde",
        container: str = "app",
        fmt: str = "cri",
        uid: str | None = None,
    ) -> None:
        self.namespace, self.pod, self.container, self.fmt = namespace, pod, container, fmt
        self.uid = uid or str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{namespace}/{pod}"))
        self.container_id = hashlib.sha256(f"{pod}/{container}".encode()).hexdigest()
        self.dir = root / "var/log/pods" / f"{namespace}_{pod}_{self.uid}" / container
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "0.log"
        self.path.touch()
        links = root / "var/log/containers"
        links.mkdir(parents=True, exist_ok=True)
        self.link = links / f"{pod}_{namespace}_{container}-{self.container_id}.log"
        if not self.link.is_symlink():
            os.symlink(self.path, self.link)
        self.ns = 1_736_935_200_000_000_000
        self.rotations = 0

    def _ts(self) -> str:
        self.ns += 1_000_123
        sec, frac = divmod(self.ns, 1_000_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"

    def line(self, msg: str, stream: str = "stdout", final: bool = True) -> bytes:
        if self.fmt == "cri":
            return f"{self._ts()} {stream} {'F' if final else 'P'} {msg}\n".encode()
        log = msg + "\n" if final else msg
        return (
            json.dumps({"log": log, "stream": stream, "time": self._ts()}, ensure_ascii=False)
            + "\n"
        ).encode()

    def write(self, *msgs: str, stream: str = "stdout") -> None:
        self.write_raw(b"".join(self.line(m, stream) for m in msgs))

    def write_partial(self, parts: list[str], stream: str = "stdout") -> None:
        data = b"".join(
            self.line(p, stream, final=(i == len(parts) - 1)) for i, p in enumerate(parts)
        )
        self.write_raw(data)

    def write_raw(self, data: bytes) -> None:
        with open(self.path, "ab") as f:
            f.write(data)

    def rotate(self) -> Path:
        """kubelet: rename 0.log to 0.log.<timestamp> and start a new 0.log."""
        self.rotations += 1
        rotated = self.dir / f"0.log.20250115-1000{self.rotations:02d}"
        os.rename(self.path, rotated)
        self.path.touch()
        return rotated

    def copytruncate(self, dateext: bool = False) -> Path:
        """logrotate's copytruncate: copy the file, then truncate it in place (the copy
        named ``0.log.<n>``, or ``0.log-<date>`` with `dateext`)."""
        self.rotations += 1
        name = f"0.log-2025011{self.rotations:04d}" if dateext else f"0.log.{self.rotations}"
        copy = self.dir / name
        shutil.copyfile(self.path, copy)
        os.truncate(self.path, 0)
        return copy


class LivePodLog(PodLog):
    """A pod whose runtime stamps lines with the wall clock (multiline's time rule and
    timeout compare these stamps with the clock)."""

    def _ts(self) -> str:
        ns = time.time_ns()
        sec, frac = divmod(ns, 1_000_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"
