"""The `elasticsearch` sink's config model: the user contract (DESIGN.md section 4).

Field docstrings are the reference documentation. `validate` is pure (it runs in
``kubelogs validate`` with no cluster); `build` creates the runtime sink, which opens
connections only when it runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from kubelogs.config.base import BuildContext, SinkConfig, StrictModel
from kubelogs.config.registry import register
from kubelogs.config.units import Duration, Size

if TYPE_CHECKING:
    from kubelogs.sinks.elasticsearch.sink import ElasticsearchSink

ApiVersion = Literal["auto", "v7", "v8", "opensearch"]


class AuthConfig(StrictModel):
    """Exactly one of: ``user`` + ``password``, ``api_key``, ``bearer_token``. Write the
    values as ``${VAR}`` so that the secret comes from the environment (a Kubernetes
    Secret), not from the config file. Secrets are never logged nor shown in errors."""

    user: str | None = None
    """Basic authentication user."""
    password: SecretStr | None = None
    """Basic authentication password (with `user`)."""
    api_key: SecretStr | None = None
    """Elasticsearch API key, the base64 ``encoded`` value Elasticsearch returns
    (sent as ``Authorization: ApiKey <value>``)."""
    bearer_token: SecretStr | None = None
    """A bearer token (``Authorization: Bearer <value>``), e.g. from an OIDC proxy."""

    @model_validator(mode="after")
    def _one_method(self) -> AuthConfig:
        basic = self.user is not None or self.password is not None
        if basic and (self.user is None or self.password is None):
            raise ValueError("basic auth needs both `user` and `password`")
        methods = sum((basic, self.api_key is not None, self.bearer_token is not None))
        if methods != 1:
            raise ValueError("give exactly one of user+password, api_key or bearer_token")
        return self


class TlsConfig(StrictModel):
    """TLS for ``https://`` hosts. Server certificates are verified by default (against
    the system's CAs, or `ca_file`)."""

    ca_file: Path | None = None
    """PEM bundle of the CAs that signed the cluster's certificate (e.g. the ECK or
    OpenSearch demo CA); without it the system's CAs are used."""
    cert_file: Path | None = None
    """Client certificate (PEM) for clusters that require mutual TLS; with `key_file`."""
    key_file: Path | None = None
    """Private key of `cert_file` (PEM, unencrypted)."""
    insecure_skip_verify: bool = False
    """Accept any server certificate. Only for a throw-away test cluster: anyone on the
    path can read and change the logs (and the credentials)."""

    @model_validator(mode="after")
    def _cert_and_key(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("`cert_file` and `key_file` go together")
        return self


class BulkConfig(StrictModel):
    """How documents are grouped into ``_bulk`` requests."""

    max_bytes: Size = Field(5 << 20, ge=1024, le=100 << 20)
    """A request is sent once its NDJSON body reaches this size (before compression).
    5 MiB is the size Elasticsearch's docs recommend; above ``http.max_content_length``
    (100 MB by default) the cluster refuses the request."""
    max_events: int = Field(10_000, ge=1, le=1_000_000)
    """A request is sent once it holds this many documents."""
    flush_interval: Duration = Field(1.0, gt=0)
    """How long documents wait for a request to fill before it is sent anyway: the delay
    between a line being read and it being searchable (plus the index refresh)."""
    max_in_flight: int = Field(4, ge=1, le=64)
    """Requests sent at once. More overlaps the cluster's indexing with encoding; when
    all are busy the sink stops reading (backpressure), so memory stays bounded by about
    ``(max_in_flight + 1) * max_bytes``."""
    compression: Literal["none", "gzip"] = "none"
    """``gzip`` halves the bytes on the wire for ~20% CPU with python-isal installed
    (``isal``), ~2x CPU with zlib (PERFORMANCE.md); worth it on a slow or metered link."""
    timeout: Duration = Field(60.0, gt=0)
    """Seconds one request may take before it is abandoned and retried (its documents
    are sent again under the same ids, so a slow success is not a duplicate)."""


class RetryConfig(StrictModel):
    """Backoff between attempts (jittered exponential: ``initial * 2**n``, capped)."""

    initial_backoff: Duration = Field(0.2, gt=0)
    """First delay after a failure, seconds."""
    max_backoff: Duration = Field(30.0, gt=0)
    """Longest delay, seconds: how long delivery may lag behind the cluster recovering."""


class DeadLetterConfig(StrictModel):
    """Where documents the cluster rejects for good (mapping and parse errors, ``400``)
    are kept, with the reason: ``kubelogs dlq list|show|replay``."""

    path: Path | None = None
    """Directory of this sink's dead-letter files; default
    ``<data_dir>/dead_letter/<sink id>``."""


class TemplateConfig(StrictModel):
    """The composable index template (``_index_template``) installed at start."""

    enabled: bool = True
    """Install (or update) the template before the first document is sent. Without it
    ``@timestamp`` gets the ``date`` type (milliseconds) and labels expand the mapping."""
    name: str = "kubelogs"
    """Template name; several agents writing the same indices share one template."""
    patterns: list[str] | None = None
    """Index patterns the template applies to; default: the literal start of `index`
    (or of `data_stream_name`) followed by ``*``, e.g. ``logstash-*``."""
    priority: int = 200
    """Template priority: above the built-in ``logs-*-*`` template (100) of
    Elasticsearch, so `data_stream` indices get kubelogs' mappings."""
    refresh_interval: Duration | None = Field(None, gt=0)
    """``index.refresh_interval`` of the indices, e.g. ``500ms``: how often new
    documents become searchable. Unset keeps the cluster's default (1 s), which is
    about half of the write -> searchable time; shorter costs the cluster indexing
    throughput, longer (``30s``) saves it for bulk loads nobody watches live."""


HealthCheck = Literal["warn", "fail", "off"]


@register("sink", "elasticsearch", "Events indexed into Elasticsearch or OpenSearch (_bulk).")
class ElasticsearchConfig(SinkConfig):
    """Index events into Elasticsearch 7/8 or OpenSearch 1/2 with the bulk API.

    Every document is indexed with ``op_type: create`` under the event's deterministic id
    (node, file identity, offset), so a resend after a crash or a retry is answered
    ``409`` and never makes a second document."""

    type: Literal["elasticsearch"]
    hosts: list[str] = Field(min_length=1)
    """Nodes to write to, ``http(s)://host:port`` (a path prefix is kept, for a cluster
    behind a proxy). Requests rotate across them; a node that cannot be reached is
    skipped for a while and tried again later."""
    index: str = "logstash-%Y.%m.%d"
    """Index name: strftime codes apply to the event's own time in UTC (not the wall
    clock), so a late line lands in the index of the day it was written; ``{field.path}``
    inserts a field of the document (``k8s-{kubernetes.namespace}-%Y.%m.%d``), and
    ``{field.path:-fallback}`` gives the value used when the field is missing (else
    ``unknown``). The pod annotation ``kubelogs.io/index`` replaces this pattern for that
    pod's logs. Names are lower-cased and characters Elasticsearch forbids become ``_``."""
    data_stream: bool = False
    """Write to data streams named by `data_stream_name` instead of dated indices (the
    cluster rolls them over; ``op_type: create`` is used either way)."""
    data_stream_name: str = "logs-kubernetes-{kubernetes.namespace:-default}"
    """Data stream name with `data_stream`, with the same ``{field}`` references as
    `index` (no strftime: the cluster rolls data streams over itself)."""
    auth: AuthConfig | None = None
    """Credentials; none by default."""
    tls: TlsConfig = TlsConfig()
    """TLS settings for ``https://`` hosts."""
    api_version: ApiVersion = "auto"
    """Server flavour: ``auto`` asks ``GET /`` at start and falls back to the
    ``X-elastic-product`` header of any response (some clusters and proxies refuse
    ``GET /``); ``v7``, ``v8`` or ``opensearch`` skip the question. It picks the mapping
    of labels (``flattened`` on Elasticsearch, ``flat_object`` on OpenSearch >= 2.7)."""
    schema_: Literal["ecs", "fluentd"] = Field("ecs", alias="schema")
    """Field names: ``ecs`` (Filebeat-style) or ``fluentd``
    (fluent-plugin-kubernetes_metadata_filter, for existing Kibana dashboards)."""
    bulk: BulkConfig = BulkConfig()
    """Request sizing, concurrency, compression and timeout."""
    retry: RetryConfig = RetryConfig()
    """Backoff of retried requests and documents. Whole-request failures (refused,
    timeouts, ``429``, ``5xx``) are retried without end while the sources are held back
    (checkpoints do not move, nothing is lost); documents answered ``429``/``5xx`` or
    ``es_rejected_execution_exception`` inside a bulk response are retried alone."""
    dead_letter: DeadLetterConfig = DeadLetterConfig()
    """Where rejected documents go (mapping and parse errors)."""
    template: TemplateConfig = TemplateConfig()
    """The index template installed at start."""
    retention: Duration | None = None
    """Delete kubelogs' indices this long after they were created (``30d``): an ILM
    policy on Elasticsearch, an ISM policy on OpenSearch, both named after the template
    and installed at start; data streams also roll over daily. Unset: indices are kept
    until someone deletes them. A cluster without ILM/ISM gets a warning and keeps its
    indices (delivery is not affected)."""
    health_check: HealthCheck = "warn"
    """At start, ask the cluster's health once and say in one line what is wrong
    (unreachable, TLS, authentication, cluster red). ``warn`` logs it and keeps trying
    to deliver (the usual DaemonSet choice: the cluster may come up later); ``fail``
    makes ``kubelogs run`` exit with that line; ``off`` skips it."""

    @field_validator("hosts")
    @classmethod
    def _http_urls(cls, hosts: list[str]) -> list[str]:
        for h in hosts:
            if not (h.startswith("http://") or h.startswith("https://")) or len(h) < 10:
                raise ValueError(f"{h!r} is not an http(s)://host:port URL")
        return [h.rstrip("/") for h in hosts]

    @field_validator("index", "data_stream_name")
    @classmethod
    def _valid_pattern(cls, value: str) -> str:
        from kubelogs.sinks.elasticsearch.encoder import IndexPattern

        IndexPattern(value)  # raises ValueError naming the problem
        return value

    def build(self, cx: BuildContext) -> ElasticsearchSink:
        from kubelogs.sinks.elasticsearch.sink import ElasticsearchSink

        return ElasticsearchSink.from_config(self, cx)
