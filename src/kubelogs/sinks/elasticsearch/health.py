"""Start-up conversation with the cluster: which server it is, is it usable, templates.

- `detect_flavour`: ``GET /`` says the distribution and version; some nodes and proxies
  refuse it (an Elasticsearch node without the root handler answers 405), so the
  ``X-elastic-product`` header of that (or any) response is the fallback, as Vector
  does. Nothing conclusive -> Elasticsearch 8, whose bulk API OpenSearch shares.
- `health_check`: one request to ``_cluster/health``, and one line that says what is
  wrong — unreachable, TLS, authentication, permissions, cluster red — the troubles
  users of other collectors meet as a stack trace or a silent stall.
- `index_template`: the composable template (``_index_template``) that makes
  ``@timestamp`` a ``date_nanos`` (the runtime's nanoseconds survive), ``message`` text,
  Kubernetes fields keywords, and labels/annotations ``flattened`` (Elasticsearch) or
  ``flat_object`` (OpenSearch >= 2.7), so that label keys never grow the mapping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from kubelogs.sinks.elasticsearch.retry import ERROR_BODY_MAX
from kubelogs.sinks.elasticsearch.service import Transport, TransportError

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode

Flavour = Literal["elasticsearch", "opensearch"]


@dataclass(frozen=True)
class ServerInfo:
    flavour: Flavour
    major: int
    minor: int = 0
    detected_by: str = "config"

    @property
    def label_type(self) -> dict[str, Any]:
        """Mapping of a free-form key/value object (labels, annotations)."""
        if self.flavour == "opensearch":
            if (self.major, self.minor) >= (2, 7):
                return {"type": "flat_object"}
            return {"type": "object", "enabled": False}
        if (self.major, self.minor) >= (7, 3):
            return {"type": "flattened"}
        return {"type": "object", "enabled": False}

    def describe(self) -> str:
        return f"{self.flavour} {self.major}.{self.minor} ({self.detected_by})"


def info_from_config(api_version: str) -> ServerInfo | None:
    return {
        "v7": ServerInfo("elasticsearch", 7, 17),
        "v8": ServerInfo("elasticsearch", 8, 0),
        "opensearch": ServerInfo("opensearch", 2, 7),
    }.get(api_version)


async def detect_flavour(transport: Transport) -> ServerInfo:
    """Ask ``GET /``; fall back to the ``X-elastic-product`` header. Raises
    `TransportError` when the cluster cannot be reached at all."""
    r = await transport.request("GET", "/", request_timeout=30)
    if r.status == 200:
        try:
            body = _decode(r.body)
            version = body["version"]
            number = str(version["number"])
            major, minor = (int(x) for x in number.split(".")[:2])
            distribution = version.get("distribution", "elasticsearch")
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            pass
        else:
            flavour: Flavour = "opensearch" if distribution == "opensearch" else "elasticsearch"
            return ServerInfo(flavour, major, minor, "GET /")
    product = {k.lower(): v for k, v in r.headers.items()}.get("x-elastic-product")
    if product == "Elasticsearch":
        return ServerInfo("elasticsearch", 8, 0, "X-elastic-product header")
    return ServerInfo("elasticsearch", 8, 0, "assumed: GET / gave no version")


async def health_check(transport: Transport) -> str | None:
    """None when the cluster can take writes, else one sentence saying what is wrong."""
    try:
        r = await transport.request("GET", "/_cluster/health", request_timeout=30)
    except TransportError as exc:
        if exc.kind == "tls":
            return f"{exc} (is `tls.ca_file` the CA that signed the cluster's certificate?)"
        return str(exc)
    if r.status == 401:
        return f"{r.host}: authentication failed (401); check `auth` and its ${{VAR}} values"
    if r.status == 403:
        # A user allowed to write but not to read cluster health is fine.
        return None
    if r.status != 200:
        detail = r.body[:ERROR_BODY_MAX].decode("utf-8", "replace").replace("\n", " ")
        return f"{r.host}: _cluster/health answered {r.status}: {detail}"
    try:
        status = _decode(r.body).get("status")
    except (msgspec.DecodeError, AttributeError):
        return f"{r.host}: _cluster/health answered something that is not JSON"
    if status == "red":
        return f"{r.host}: cluster health is red (some primary shards are unassigned)"
    return None


def _keyword() -> dict[str, Any]:
    return {"type": "keyword", "ignore_above": 1024}


def _obj(**props: dict[str, Any]) -> dict[str, Any]:
    return {"properties": props}


def mappings(schema: str, info: ServerInfo) -> dict[str, Any]:
    """Field mappings of kubelogs' documents (DESIGN.md section 5) for `schema`."""
    kw = _keyword
    labels = info.label_type
    if schema == "fluentd":
        return {
            "properties": {
                "@timestamp": {"type": "date_nanos"},
                "time": {"type": "date_nanos"},
                "log": {"type": "text"},
                "stream": kw(),
                "flags": kw(),
                "log_level": kw(),  # the parsers' normalised level (`log` is the message)
                "docker": _obj(container_id=kw()),
                "kubernetes": _obj(
                    namespace_name=kw(),
                    pod_name=kw(),
                    pod_id=kw(),
                    pod_ip=kw(),
                    container_name=kw(),
                    container_image=kw(),
                    container_image_id=kw(),
                    host=kw(),
                    labels=labels,
                    annotations=labels,
                    namespace_labels=labels,
                ),
            }
        }
    return {
        "properties": {
            "@timestamp": {"type": "date_nanos"},
            "message": {"type": "text"},
            "stream": kw(),
            # `log.level`: the parsers' normalised level, a keyword to filter and count by.
            "log": _obj(file=_obj(path=kw()), offset={"type": "long"}, flags=kw(), level=kw()),
            "host": _obj(name=kw()),
            "kubernetes": _obj(
                namespace=kw(),
                pod=_obj(name=kw(), uid=kw(), ip=kw()),
                container=_obj(name=kw(), id=kw(), image=kw()),
                node=_obj(name=kw()),
                deployment=_obj(name=kw()),
                statefulset=_obj(name=kw()),
                daemonset=_obj(name=kw()),
                replicaset=_obj(name=kw()),
                job=_obj(name=kw()),
                cronjob=_obj(name=kw()),
                labels=labels,
                annotations=labels,
                namespace_labels=labels,
            ),
        }
    }


def index_template(
    patterns: list[str],
    *,
    schema: str,
    info: ServerInfo,
    data_stream: bool,
    priority: int,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    template: dict[str, Any] = {"mappings": mappings(schema, info)}
    if settings:
        template["settings"] = settings
    body: dict[str, Any] = {
        "index_patterns": patterns,
        "priority": priority,
        "template": template,
        "_meta": {"managed_by": "kubelogs", "schema": schema},
    }
    if data_stream:
        body["data_stream"] = {}
    return body


async def put_template(transport: Transport, name: str, body: dict[str, Any]) -> None:
    """Install the template; raises `TransportError`, or `ValueError` with the cluster's
    answer when it refuses the template (a message for the log, never a secret)."""
    r = await transport.request(
        "PUT",
        f"/_index_template/{name}",
        _encode(body),
        {"Content-Type": "application/json"},
        request_timeout=60,
    )
    if r.status != 200:
        detail = r.body[:ERROR_BODY_MAX].decode("utf-8", "replace").replace("\n", " ")
        raise ValueError(f"{r.host}: index template {name!r} refused ({r.status}): {detail}")


def _age(seconds: float) -> str:
    """An ILM/ISM age: whole hours (``36h``) or days."""
    hours = max(1, round(seconds / 3600))
    return f"{hours // 24}d" if hours % 24 == 0 else f"{hours}h"


async def put_retention_policy(
    transport: Transport,
    name: str,
    *,
    info: ServerInfo,
    retention: float,
    patterns: list[str],
    data_stream: bool,
) -> dict[str, Any]:
    """Install the deletion policy; returns the template settings that attach it (empty
    for OpenSearch, whose ISM policy names its index patterns itself). Raises
    `ValueError` with the cluster's answer when the API is missing or refuses."""
    age = _age(retention)
    if info.flavour == "opensearch":
        states: list[dict[str, Any]] = []
        if data_stream:
            states.append(
                {
                    "name": "hot",
                    "actions": [{"rollover": {"min_index_age": "1d"}}],
                    "transitions": [{"state_name": "delete", "conditions": {"min_index_age": age}}],
                }
            )
        else:
            states.append(
                {
                    "name": "hot",
                    "actions": [],
                    "transitions": [{"state_name": "delete", "conditions": {"min_index_age": age}}],
                }
            )
        states.append({"name": "delete", "actions": [{"delete": {}}], "transitions": []})
        body: dict[str, Any] = {
            "policy": {
                "description": "kubelogs: delete indices after their retention",
                "default_state": "hot",
                "states": states,
                "ism_template": [{"index_patterns": patterns, "priority": 100}],
            }
        }
        path = f"/_plugins/_ism/policies/{name}"
        settings: dict[str, Any] = {}
    else:
        hot: dict[str, Any] = {"actions": {}}
        if data_stream:
            hot["actions"]["rollover"] = {"max_age": "1d", "max_primary_shard_size": "50gb"}
        body = {
            "policy": {
                "phases": {"hot": hot, "delete": {"min_age": age, "actions": {"delete": {}}}},
                "_meta": {"managed_by": "kubelogs"},
            }
        }
        path = f"/_ilm/policy/{name}"
        settings = {"index.lifecycle.name": name}
    r = await transport.request(
        "PUT", path, _encode(body), {"Content-Type": "application/json"}, request_timeout=60
    )
    if r.status not in (200, 201):
        detail = r.body[:ERROR_BODY_MAX].decode("utf-8", "replace").replace("\n", " ")
        raise ValueError(
            f"{r.host}: retention policy {name!r} not installed ({r.status}): {detail}"
        )
    return settings
