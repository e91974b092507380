"""`forward`: receives Fluentd Forward Protocol v1 (fluent-logger, Fluentd, Fluent Bit,
and kubelogs' own `forward` sink), for the aggregator role.

Connections, handshake, framing and limits live in `kubelogs.forward.server`; this module
turns decoded messages into batches and answers acks. Each record becomes an event: its
`message` (or `log`, or `msg`) is the message, the rest are fields; the tag goes into
`tag_field` (``fluent.tag``) and `tag_pattern`'s named groups into fields of their own.
Records that a kubelogs agent forwarded carry their `event.id`: they keep it, so the
local store drops what a crashed agent sends twice and Elasticsearch keeps the agent's
`_id`s (exactly once across the hop). Foreign records are kept at least once, as Fluentd
does.

Acks: every read of a connection (one or more messages) gets one `AckToken`; when every
sink has made those events durable, the token's callback writes ``{"ack": chunk}`` for
each chunk id of that read. A sender therefore moves its own checkpoints only once the
aggregator's store or disk buffer has the events.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from kubelogs.codecs.records import RecordDecoder
from kubelogs.config.addresses import ListenAddress, parse_listen
from kubelogs.config.base import BuildContext, SourceConfig, StrictModel
from kubelogs.config.registry import register
from kubelogs.config.units import Duration, Size
from kubelogs.forward.columnar import decode_batch, is_columnar
from kubelogs.forward.handshake import ServerAuth
from kubelogs.forward.protocol import ForwardMessage, Limits
from kubelogs.forward.server import Connection, ForwardServer, ServerSettings
from kubelogs.forward.tls import ServerTlsConfig
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.runtime import Output
from kubelogs.telemetry.metrics import ComponentMetrics
from kubelogs.telemetry.network import network_metrics

log = logging.getLogger("kubelogs.sources.forward")


class UserConfig(StrictModel):
    username: str
    password: SecretStr


@register("source", "forward", "Fluentd Forward Protocol v1 server (TCP/TLS), acked once durable.")
class ForwardSourceConfig(SourceConfig):
    type: Literal["forward"]
    address: ListenAddress = "0.0.0.0:24224"
    """Where to listen (TCP, and UDP for heartbeats on the same port)."""
    shared_key: SecretStr | None = None
    """When set, clients must pass the HELO/PING/PONG handshake with this key (Fluentd's
    ``<security> shared_key``). Write it as ``${VAR}``."""
    self_hostname: str | None = None
    """The name this server gives in PONG; default: the node name, else the host name."""
    users: list[UserConfig] = Field(default_factory=list)
    """With `shared_key`: clients must also give one of these username/password pairs
    (Fluentd's ``user_auth``)."""
    tls: ServerTlsConfig | None = None
    """Serve TLS instead of plain TCP."""
    heartbeat: bool = True
    """Answer UDP heartbeats on the same port, as Fluentd's in_forward does."""
    tag_field: str | None = "fluent.tag"
    """Field (dotted path) that receives each event's tag; null: the tag is not kept.
    Events forwarded by a kubelogs agent keep their documents unchanged."""
    tag_pattern: str | None = None
    """Regular expression matched against the tag; its named groups become fields, e.g.
    ``^app\\.(?P<app>[^.]+)\\.(?P<env>[^.]+)$`` turns ``app.web.prod`` into
    ``app: web, env: prod``. A tag that does not match adds nothing."""
    max_message_size: Size = Field(16 << 20, ge=1 << 10, le=1 << 30)
    """Bytes of one message (one chunk) at most; a larger one closes the connection
    (counted). Bounds the memory of each connection."""
    max_decompressed_size: Size = Field(64 << 20, ge=1 << 10, le=4 << 30)
    """Bytes a gzip-compressed chunk may inflate to; beyond, the connection is closed
    (a gzip bomb costs at most this much memory)."""
    max_connections: int = Field(1024, ge=1)
    """Connections served at once; more are closed at accept (counted)."""
    handshake_timeout: Duration = 10.0
    """Seconds a client has to answer HELO with PING."""
    idle_timeout: Duration | None = Field(300.0, gt=0)
    """Seconds a connection may stay silent (no byte received, no ack owed to it)
    before it is closed, counted in ``kubelogs_idle_connections_closed_total``: a peer
    that connects and sends nothing does not hold one of `max_connections` forever.
    Senders reconnect when they next have data (kubelogs' `forward` sink and
    `ForwardHandler` quietly; Fluentd and Fluent Bit on their next flush). Null: never
    (Fluentd's in_forward behaviour)."""

    @field_validator("tag_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                if not re.compile(value).groupindex:
                    raise ValueError("the pattern has no named group (?P<name>...)")
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    def build(self, cx: BuildContext) -> ForwardSource:
        return ForwardSource(
            self, cx, ComponentMetrics(cx.metrics, cx.component_id, "source", "forward")
        )


def _set_path(fields: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        nxt = fields.get(key)
        if not isinstance(nxt, dict):
            nxt = fields[key] = {}
        fields = nxt
    fields[path[-1]] = value


class TagFields:
    """The fields a tag adds to each of its records, computed once per tag."""

    def __init__(self, tag_field: str | None, pattern: str | None) -> None:
        self._path = tag_field.split(".") if tag_field else None
        self._regex = re.compile(pattern) if pattern else None
        self._cache: dict[str, dict[str, Any]] = {}

    def __call__(self, tag: str) -> dict[str, Any]:
        got = self._cache.get(tag)
        if got is None:
            got = {}
            if self._path:
                _set_path(got, self._path, tag)
            if self._regex is not None:
                m = self._regex.search(tag)
                if m:
                    got.update({k: v for k, v in m.groupdict().items() if v is not None})
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[tag] = got
        return got


def _is_kubelogs(record: Mapping[str, Any]) -> bool:
    ev = record.get("event")
    return isinstance(ev, dict) and "id" in ev


def _with_tag(record: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    if not extra or _is_kubelogs(record):
        return record
    out = dict(record)
    for k, v in extra.items():
        cur = out.get(k)
        if isinstance(v, dict) and isinstance(cur, dict):
            out[k] = {**cur, **v}
        else:
            out[k] = v
    return out


class ForwardSource:
    def __init__(
        self, config: ForwardSourceConfig, cx: BuildContext, metrics: ComponentMetrics
    ) -> None:
        self.config = config
        self.component_id = cx.component_id
        self.metrics = metrics
        host, port = parse_listen(config.address)
        auth = None
        if config.shared_key is not None:
            users = (
                {u.username: u.password.get_secret_value() for u in config.users}
                if config.users
                else None
            )
            auth = ServerAuth(
                config.shared_key.get_secret_value(),
                config.self_hostname or cx.node_name or socket.gethostname(),
                users,
            )
        self.server = ForwardServer(
            ServerSettings(
                host=host,
                port=port,
                limits=Limits(config.max_message_size, config.max_decompressed_size),
                auth=auth,
                ssl=config.tls.context() if config.tls else None,
                max_connections=config.max_connections,
                handshake_timeout=config.handshake_timeout,
                heartbeat=config.heartbeat,
                idle_timeout=config.idle_timeout,
                count_idle=network_metrics(cx.metrics).idle_closed.labels(cx.component_id).inc,
                count_bytes=metrics.received_bytes.inc,
            ),
            self._on_messages,
            self._on_error,
        )
        self.decoder = RecordDecoder(cx.component_id, cx.node_name)
        self.tag_fields = TagFields(config.tag_field, config.tag_pattern)
        self._out: Output | None = None
        self._started = False

    @property
    def port(self) -> int:
        return self.server.port

    async def prepare(self) -> None:
        """Bind before the pipeline runs, so that a taken port fails the start."""
        if not self._started:
            try:
                await self.server.start()
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"sources.{self.component_id}.address: cannot listen on "
                    f"{self.config.address}: {exc.strerror or exc}",
                ) from None
            self._started = True
            log.info(
                "forward source %s listening on %s:%d%s",
                self.component_id,
                self.server.settings.host,
                self.server.port,
                " (TLS)" if self.config.tls else "",
            )

    async def run(self, out: Output, stopping: asyncio.Event) -> None:
        self._out = out
        await self.prepare()
        try:
            await stopping.wait()
        finally:
            await self.server.close()
            self._out = None

    def _on_error(self, error_type: str, peer: str, message: str) -> None:
        self.metrics.error(error_type, "receiving")
        log.warning(
            "forward source %s: closed the connection from %s: %s",
            self.component_id,
            peer,
            message,
        )

    async def _on_messages(self, msgs: list[ForwardMessage], conn: Connection) -> None:
        out = self._out
        if out is None:
            return
        by_tag: dict[str, list[tuple[int | None, Mapping[str, Any]]]] = {}
        chunks: list[str] = []
        batches: list[Batch] = []
        for m in msgs:
            if m.chunk is not None:
                chunks.append(m.chunk)
            entries = m.entries
            if entries and is_columnar(entries[0][1]):
                # a kubelogs agent's batches (`format: kubelogs`): columns, no records
                for _, r in entries:
                    batches.append(decode_batch(r, self.component_id))
                continue
            extra = self.tag_fields(m.tag)
            recs = by_tag.setdefault(m.tag, [])
            recs.extend((t, _with_tag(r, extra)) for t, r in entries)
        for tag, records in by_tag.items():
            if records:
                batches.extend(self.decoder.decode(records, f"forward:{tag}"))
        self.metrics.received_events.inc(sum(len(b) for b in batches))
        if not batches:
            if chunks:
                conn.send_acks(chunks)
            return
        token: AckToken | None = None
        if chunks:
            conn.owe(len(chunks))
            token = AckToken(lambda: conn.send_acks(chunks))
            if len(batches) > 1:
                token.fork(len(batches) - 1)
        for b in batches:
            b.ack = token
            await out.send(b)
