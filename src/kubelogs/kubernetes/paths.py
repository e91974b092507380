"""Log file path -> (namespace, pod, pod uid, container, container id).

The kubelet names container log files after what they belong to, so a line is attributable
even when the API server cannot be reached (DESIGN.md section 5):

- ``/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`` (and kubelet's
  rotated ``<restart>.log.<timestamp>``, possibly ``.gz``): the real files;
- ``/var/log/containers/<pod>_<namespace>_<container>-<64 hex id>.log``: symlinks to the
  former, the only place the container id appears.

Namespace and pod names are DNS labels/subdomains and cannot contain ``_``, which is what
makes these names unambiguous. The directory prefix is not checked (tests and `kubelogs
generate` use other roots), only the ``pods``/``containers`` directory and the shapes.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_POD_DIR_RE = re.compile(r"^([a-z0-9][-a-z0-9]*)_([^_/]+)_([0-9a-fA-F-]+)$")
_POD_FILE_RE = re.compile(r"^(\d+)\.log(?:\.[^/]+)?$")
_CONTAINERS_RE = re.compile(
    r"^([^_/]+)_([a-z0-9][-a-z0-9]*)_([^/]+)-([0-9a-f]{64})\.log$",
)


class LogPathInfo(NamedTuple):
    namespace: str
    pod: str
    pod_uid: str
    """Empty for ``/var/log/containers`` names (they do not carry it)."""
    container: str
    container_id: str
    """64 hex digits without the runtime prefix; empty for ``/var/log/pods`` paths."""
    restart: int = -1
    """The ``<restart>`` of ``<restart>.log``; -1 when unknown."""


def parse_log_path(path: str) -> LogPathInfo | None:
    """Parse a kubelet container log path; None when `path` is not one."""
    parts = path.rstrip("/").split("/")
    name = parts[-1]
    if len(parts) >= 4 and parts[-4] == "pods":
        m = _POD_FILE_RE.match(name)
        d = _POD_DIR_RE.match(parts[-3])
        container = parts[-2]
        if m and d and container:
            return LogPathInfo(d.group(1), d.group(2), d.group(3), container, "", int(m.group(1)))
        return None
    if len(parts) >= 2 and parts[-2] == "containers":
        c = _CONTAINERS_RE.match(name)
        if c:
            return LogPathInfo(c.group(2), c.group(1), "", c.group(3), c.group(4))
    return None
