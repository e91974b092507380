"""`forward`: events sent to Fluentd Forward Protocol servers (a kubelogs aggregator,
Fluentd, Fluent Bit), acknowledged upstream only once the server acked them.

encode -> group what is waiting into one chunk (PackedForward, optionally gzip) -> send
on a server's connection -> wait for ``{"ack": chunk}`` -> resolve the batches' acks.
Several chunks wait for their acks at once (`max_in_flight`), so a server that acks
only after its store's flush still gets a steady stream.

Each record is the document the other sinks write (DESIGN.md section 5) plus its
``event.id``, so an aggregator keeps the agent's event ids: a chunk sent twice (after a
crash, a timeout or a failover) is dropped by the local store and not duplicated in
Elasticsearch.

Servers: ``balance: round_robin`` spreads chunks over every healthy server,
``failover`` sends to the first healthy one in the list and moves on only when it
fails. A server that fails (connect error, handshake refused, connection lost, no ack
within `ack_timeout`) is marked down for a jittered, growing delay (sinks/retry.py); the
chunk is sent again at once on another server, or after the delay when every server is
down. Events stay unacknowledged meanwhile: the sources stop reading, nothing is lost.

Heartbeats (``heartbeat: {type: udp}``, off by default): a `HeartbeatMonitor`
(forward/heartbeat.py) takes a server whose UDP answers stop out of rotation, as
Fluentd's out_forward does, and brings it back after `recover_samples` answers. A lane
on a server taken out moves at once - its unacked chunks are resent, in order, on the
next server, exactly as after a failure; a lane away from its home server goes home
once the home is back, at a clean point (after its in-flight chunks were acked), so
files stay in order. ``kubelogs_forward_server_up`` shows each server's state.

Error handling: every failure is counted in ``kubelogs_component_errors_total``
(``error_type``: ``connect``, ``auth``, ``ack_timeout``, ``connection``) and logged
(rate-limited) with the server's address; it never ends the sink.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from kubelogs.codecs.records import batch_to_records
from kubelogs.config.addresses import parse_listen
from kubelogs.config.base import BuildContext, SinkConfig
from kubelogs.config.registry import register
from kubelogs.config.units import Duration, Size
from kubelogs.forward.client import ClientConnection, new_chunk_id, wait_event
from kubelogs.forward.columnar import encode_batch
from kubelogs.forward.handshake import ClientAuth, HandshakeError
from kubelogs.forward.heartbeat import HeartbeatConfig, HeartbeatMonitor, Peer
from kubelogs.forward.protocol import (
    ProtocolError,
    event_time_ext,
    forward_message,
    gzip_parts,
    packb,
)
from kubelogs.forward.tls import ClientTlsConfig
from kubelogs.pipeline.acks import AckToken
from kubelogs.pipeline.event import Batch
from kubelogs.pipeline.runtime import Input
from kubelogs.sinks.retry import Backoff
from kubelogs.telemetry.metrics import ComponentMetrics
from kubelogs.telemetry.network import NetworkMetrics, network_metrics

log = logging.getLogger("kubelogs.sinks.forward")


@register("sink", "forward", "Fluentd Forward Protocol v1 client; waits for chunk acks.")
class ForwardSinkConfig(SinkConfig):
    type: Literal["forward"]
    servers: list[str] = Field(min_length=1)
    """``host:port`` of each server (an aggregator Service, Fluentd, Fluent Bit)."""
    balance: Literal["round_robin", "failover"] = "round_robin"
    """``round_robin``: chunks rotate over the healthy servers; ``failover``: all go
    to the first healthy server in the list."""
    format: Literal["records", "kubelogs"] = "records"
    """``records``: one Forward event per log line, the document the other sinks write
    plus ``event.id`` - what Fluentd and Fluent Bit understand. ``kubelogs``: one entry
    per batch holding its columns - for kubelogs aggregators only, ~20x cheaper on
    both ends (a Fluentd would see one event per batch)."""
    tag: str = "kubelogs"
    """The Fluentd tag of every chunk."""
    shared_key: SecretStr | None = None
    """Authenticate with the servers' shared key (HELO/PING/PONG). Write it as ``${VAR}``."""
    self_hostname: str | None = None
    """The name given in PING; default: the node name, else the host name."""
    username: str = ""
    """With `shared_key`: the user, for servers with user authentication."""
    password: SecretStr = SecretStr("")
    """With `username`."""
    tls: ClientTlsConfig | None = None
    """Connect with TLS (certificates verified unless told otherwise)."""
    compress: Literal["none", "gzip"] = "none"
    """``gzip`` sends CompressedPackedForward: about 5-10x fewer bytes on the wire for
    log text, for some CPU on both ends."""
    require_ack: bool = True
    """Wait for the server's ack before acknowledging upstream. Off, events count as
    delivered once written to the socket: a server crash can then lose them."""
    ack_timeout: Duration = 60.0
    """Seconds to wait for a chunk's ack; then the connection is dropped and the chunk
    is sent again on another connection (the receiver deduplicates by event id). Keep
    it above the aggregator's slowest sink flush."""
    connect_timeout: Duration = 10.0
    """Seconds to connect and pass the handshake."""
    keepalive: bool = True
    """Keep connections open between chunks; off, every chunk gets its own connection."""
    max_in_flight: int = Field(4, ge=1, le=1024)
    """Chunks sent and not yet acked at once (over all servers). Their encoded payloads
    stay in memory until acked (for a resend; the batches are freed once encoded): this
    plus two waiting per lane, times `max_chunk_bytes`, bounds the sink's memory."""
    max_chunk_events: int = Field(10_000, ge=1)
    """Events per chunk at most."""
    max_chunk_bytes: Size = Field(4 << 20, ge=1 << 10, le=256 << 20)
    """Bytes per chunk (before compression) at most, a bit above when one batch is
    larger; keep it below the receivers' message limit (kubelogs: 16 MiB, Fluentd:
    32 MiB)."""
    max_backoff: Duration = 30.0
    """Seconds a failed server is left alone at most before it is tried again."""
    heartbeat: HeartbeatConfig = Field(default_factory=HeartbeatConfig)
    """UDP heartbeats and a failure detector that take a silent server out of rotation
    and bring it back (Fluentd's ``heartbeat_type udp``, ``phi_failure_detector``);
    off by default: see `HeartbeatConfig.type`."""

    @field_validator("servers")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        for s in value:
            parse_listen(s)
        return value

    def build(self, cx: BuildContext) -> ForwardSink:
        return ForwardSink(
            self,
            ComponentMetrics(cx.metrics, cx.component_id, "sink", "forward"),
            component_id=cx.component_id,
            hostname=self.self_hostname or cx.node_name or socket.gethostname(),
            network=network_metrics(cx.metrics),
        )


Encoder = Callable[[Batch], bytes]


def encode_entries(batch: Batch) -> bytes:
    """The batch's events as a PackedForward entry stream (``[EventTime, record]`` each),
    packed in one C call: a list of entries minus its array header is the stream."""
    records = batch_to_records(batch)
    packed = packb([[event_time_ext(t), r] for t, r in zip(batch.times, records, strict=True)])
    return _strip_array_header(packed, len(records))


def _strip_array_header(packed: bytes, n: int) -> bytes:
    if n < 16:
        return packed[1:]
    if n < 1 << 16:
        return packed[3:]
    return packed[5:]


@dataclass
class _Server:
    host: str
    port: int
    backoff: Backoff
    down_until: float = 0.0
    """Failed: not tried again before this loop time."""
    alive: bool = True
    """Its heartbeats are answered (always True without heartbeats)."""
    failed: bool = False
    """The last attempt failed and no connection succeeded since."""

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class _Chunk:
    acks: list[AckToken]
    """The ack tokens of its batches - not the batches: once encoded, the payload is
    all a resend needs, and a batch's Python objects take ~1.5x its encoded size."""
    payload: bytes
    chunk_id: str
    events: int
    sent_at: float = 0.0
    ack: asyncio.Future[None] | None = None


class _ServerDown(Exception):
    """The lane's server was taken out of rotation by its heartbeats: move the lane."""


class _Stale(Exception):
    """A connection that had been idle failed on its first write since: the server
    closed it (its idle_timeout) just before we wrote. Reconnect, no failure."""


class _SendFailed(Exception):
    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass
class _Lane:
    """One ordered stream of chunks over one connection at a time.

    Why lanes: the receiving store drops events at or below each file's high-water mark
    (that is how it ignores resends). A chunk resent *after* a later chunk of the same
    file was stored would be dropped as well - lost. So every file's events travel in
    one lane (by their event-id prefix), a lane sends its chunks in order on one
    connection, and after a failure it resends every unacked chunk, in order, before
    anything new, on its next connection (its home server, or the next one up).
    """

    home: int
    window: int
    waiting: deque[_Chunk] = field(default_factory=deque)
    inflight: deque[_Chunk] = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    space: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def __post_init__(self) -> None:
        self.space.set()

    @property
    def full(self) -> bool:
        """Two encoded chunks ready behind the window keep it busy; more would only
        hold memory (each chunk keeps its payload until acked)."""
        return len(self.waiting) >= 2


class ForwardSink:
    def __init__(
        self,
        config: ForwardSinkConfig,
        metrics: ComponentMetrics,
        *,
        component_id: str = "forward",
        hostname: str = "kubelogs",
        network: NetworkMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.component_id = component_id
        self._servers = []
        for s in config.servers:
            host, port = parse_listen(s)
            self._servers.append(_Server(host, port, Backoff(0.5, config.max_backoff)))
        self._network = network
        for server in self._servers:
            self._publish(server)
        self._heartbeats = config.heartbeat.type != "none"
        self._lanes: list[_Lane] = []
        self._changed = asyncio.Event()
        """Set when a server leaves or rejoins the rotation."""
        self._auth = (
            ClientAuth(
                config.shared_key.get_secret_value(),
                hostname,
                config.username,
                config.password.get_secret_value(),
            )
            if config.shared_key is not None
            else None
        )
        self._ssl = config.tls.context() if config.tls else None
        self._server_name = config.tls.server_name if config.tls else None
        self._encode: Encoder = encode_entries if config.format == "records" else encode_batch

    async def run(self, inp: Input) -> None:
        cfg = self.config
        n = len(self._servers) if cfg.balance == "round_robin" else 1
        window = max(1, cfg.max_in_flight // n)
        lanes = self._lanes = [_Lane(home=i, window=window) for i in range(n)]
        monitor: asyncio.Task[None] | None = None
        if self._heartbeats:
            peers = [(s.name, s.host, s.port) for s in self._servers]
            hb = HeartbeatMonitor(cfg.heartbeat, peers, self._heartbeat_changed)
            monitor = asyncio.create_task(hb.run(), name=f"forward-heartbeat:{self.component_id}")
        try:
            await self._run_lanes(inp, lanes, n)
        finally:
            if monitor is not None:
                monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await monitor

    async def _run_lanes(self, inp: Input, lanes: list[_Lane], n: int) -> None:
        async with asyncio.TaskGroup() as tg:
            for lane in lanes:
                # lane: sends its chunks in order, resends after failures
                tg.create_task(self._run_lane(lane), name=f"forward-lane:{lane.home}")
            try:
                async for first in inp:
                    by_lane = self._by_lane(self._gather(inp, first), n)
                    del first  # no batch outlives its encoding here (memory)
                    while by_lane:
                        lane_no, batches = by_lane.popitem()
                        lane = lanes[lane_no]
                        # encode only once the lane has room: an encoded chunk waiting
                        # for room would hold its batches and its payload at once
                        while lane.full:
                            lane.space.clear()
                            await lane.space.wait()
                        for chunk in self._chunks(batches):
                            lane.waiting.append(chunk)
                        del batches
                        lane.wakeup.set()
            finally:
                for lane in lanes:
                    lane.closed = True
                    lane.wakeup.set()

    def _gather(self, inp: Input, first: Batch) -> list[Batch]:
        """`first` and the batches waiting behind it, up to `max_chunk_events`."""
        group = [first]
        events = len(first)
        while events < self.config.max_chunk_events:
            nxt = inp.receive_nowait()
            if nxt is None:
                break
            group.append(nxt)
            events += len(nxt)
        return group

    @staticmethod
    def _by_lane(group: list[Batch], n: int) -> dict[int, list[Batch]]:
        if n == 1:
            return {0: group}
        out: dict[int, list[Batch]] = {}
        for b in group:
            out.setdefault(zlib.crc32(b.ctx.id_prefix.encode()) % n, []).append(b)
        return out

    def _chunks(self, group: list[Batch]) -> list[_Chunk]:
        """Encode batches and cut them into chunks of about `max_chunk_bytes`."""
        cfg = self.config
        out: list[_Chunk] = []
        parts: list[bytes] = []
        batches: list[Batch] = []
        size = events = 0
        for b in group:
            data = self._encode(b) if len(b) else b""
            parts.append(data)
            batches.append(b)
            size += len(data)
            events += len(b)
            if size >= cfg.max_chunk_bytes:
                out.append(self._chunk(batches, parts, events))
                parts, batches, size, events = [], [], 0, 0
        if batches:
            out.append(self._chunk(batches, parts, events))
        return out

    def _chunk(self, batches: list[Batch], parts: list[bytes], events: int) -> _Chunk:
        option: dict[str, Any] = {"size": events}
        if self.config.compress == "gzip":
            parts = gzip_parts(parts)
            option["compressed"] = "gzip"
        chunk_id = new_chunk_id()
        if self.config.require_ack:
            option["chunk"] = chunk_id
        acks = [b.ack for b in batches if b.ack is not None]
        payload = forward_message(self.config.tag, parts, option)
        return _Chunk(acks, payload, chunk_id, events)

    def _pick(self, lane: _Lane, avoid: _Server | None) -> _Server | None:
        """The lane's home server if it is up, else the next one up (not `avoid`, the
        server that just failed, when another is up)."""
        now = asyncio.get_running_loop().time()
        servers = self._servers
        n = len(servers)
        fallback = None
        for i in range(n):
            s = servers[(lane.home + i) % n]
            if s.down_until > now or not s.alive:
                continue
            if s is avoid and n > 1:
                fallback = s
                continue
            return s
        return fallback

    async def _connect(
        self, lane: _Lane, avoid: _Server | None
    ) -> tuple[_Server, ClientConnection]:
        """Connect the lane to a server, retrying (with backoff) until one accepts."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        while True:
            server = self._pick(lane, avoid)
            if server is None:
                # every server failed or is out of rotation: wait for the first backoff
                # to end, or for a server to come back (heartbeats)
                now = loop.time()
                pending = [s.down_until for s in self._servers if s.alive and s.down_until > now]
                timeout = max(0.05, min(pending) - now) if pending else None
                self._changed.clear()
                await wait_event(self._changed, timeout)
                continue
            try:
                conn = await ClientConnection.open(
                    server.host,
                    server.port,
                    ssl_context=self._ssl,
                    server_hostname=self._server_name,
                    auth=self._auth,
                    timeout=cfg.connect_timeout,
                )
            except HandshakeError as exc:
                self._failed(server, "auth", f"refused the handshake: {exc}", lane)
            except (OSError, TimeoutError, ProtocolError) as exc:
                detail = str(exc) or type(exc).__name__
                self._failed(server, "connect", f"cannot be reached: {detail}", lane)
            else:
                if server.failed:
                    server.failed = False
                    self._publish(server)
                return server, conn
            avoid = server

    async def _run_lane(self, lane: _Lane) -> None:
        avoid: _Server | None = None
        while lane.inflight or lane.waiting or not lane.closed:
            if not (lane.inflight or lane.waiting):
                lane.wakeup.clear()
                await lane.wakeup.wait()
                continue
            server, conn = await self._connect(lane, avoid)
            try:
                await self._stream(lane, conn, server)
                server.backoff.reset()
                avoid = None
            except _ServerDown:
                avoid = server  # it is out of rotation: _pick skips it anyway
            except _Stale:
                avoid = None  # the same server again, at once (a fresh connection)
            except _SendFailed as exc:
                self._failed(server, exc.error_type, str(exc), lane)
                avoid = server
            finally:
                await conn.close()

    async def _stream(self, lane: _Lane, conn: ClientConnection, server: _Server) -> None:
        """Resend the lane's unacked chunks, then keep sending new ones and resolving the
        acked ones in order, until the lane is empty and closed, or the connection
        fails (`_SendFailed`), or the server is taken out of rotation (`_ServerDown`).
        Without keepalive, returns after each chunk; away from its home server, returns
        once the home is back and nothing is in flight (the lane then goes home)."""
        cfg = self.config
        home = self._servers[lane.home]
        loop = asyncio.get_running_loop()
        require_ack = cfg.require_ack
        inflight, waiting = lane.inflight, lane.waiting
        conn.add_close_callback(lane.wakeup.set)
        used = False
        # writing again after an idle spell, no ack since: a failure now is most likely
        # the server's idle close crossing our write (HTTP clients retry a request on a
        # reused keep-alive connection for the same reason)
        waking = False
        try:
            for c in inflight:
                self._send(conn, c, lane, loop.time())
                await conn.drain()
            while True:
                lane.wakeup.clear()
                if not server.alive:
                    raise _ServerDown(server.name)
                going_home = self._heartbeats and server is not home and self._usable(home)
                if going_home and not inflight:
                    return
                if not inflight and conn.closed:
                    if used:
                        # the server closed an idle connection (its idle_timeout): not
                        # a failure; what is waiting goes on a new connection at once
                        return
                    # closed before carrying anything (e.g. the server is at its
                    # max_connections): a failure, retried with backoff
                    raise ConnectionError(f"{conn.name} closed the connection at once")
                sent = False
                while waiting and len(inflight) < lane.window and not going_home:
                    if used and not inflight:
                        waking = True
                    c = waiting.popleft()
                    inflight.append(c)
                    self._send(conn, c, lane, loop.time())
                    sent = True
                    lane.space.set()  # the next chunk can be encoded meanwhile
                    # one chunk at a time into the transport: on Python 3.11 it copies
                    # what the socket does not take at once into its own buffer
                    await conn.drain()
                lane.space.set()
                if sent or not require_ack:
                    await conn.drain()
                while inflight and (not require_ack or _acked(inflight[0])):
                    c = inflight[0]
                    if c.ack is not None:
                        c.ack.result()  # raises ConnectionError when the connection failed
                    inflight.popleft()
                    self._delivered(c)
                    used = True
                    waking = False
                if not inflight and ((lane.closed and not waiting) or not cfg.keepalive):
                    return
                if any(_acked(c) and c.ack and c.ack.exception() for c in inflight):
                    raise ConnectionError(f"{conn.name} closed the connection")
                if waiting and len(inflight) < lane.window and not going_home:
                    continue  # acks made room: send more before waiting (nothing else wakes us)
                timeout = None
                if inflight:
                    timeout = inflight[0].sent_at + cfg.ack_timeout - loop.time()
                    if timeout <= 0:
                        raise _SendFailed("ack_timeout", f"sent no ack within {cfg.ack_timeout:g}s")
                await wait_event(lane.wakeup, timeout)
        except (ConnectionError, OSError) as exc:
            if waking:
                raise _Stale from None
            raise _SendFailed("connection", f"lost the connection ({exc})") from None

    def _send(self, conn: ClientConnection, chunk: _Chunk, lane: _Lane, now: float) -> None:
        chunk.sent_at = now
        chunk.ack = conn.send(chunk.payload, chunk.chunk_id if self.config.require_ack else None)
        if chunk.ack is not None:
            chunk.ack.add_done_callback(lambda _f: lane.wakeup.set())

    def _delivered(self, chunk: _Chunk) -> None:
        for ack in chunk.acks:
            ack.resolve()
        self.metrics.received_events.inc(chunk.events)
        self.metrics.sent_events.inc(chunk.events)
        self.metrics.sent_bytes.inc(len(chunk.payload))

    def _usable(self, server: _Server) -> bool:
        return server.alive and server.down_until <= asyncio.get_running_loop().time()

    def _publish(self, server: _Server) -> None:
        if self._network is not None:
            up = 1 if server.alive and not server.failed else 0
            self._network.server_up.labels(self.component_id, server.name).set(up)

    def _heartbeat_changed(self, peer: Peer, alive: bool, why: str) -> None:
        same = [s for s in self._servers if s.name == peer.name]  # listed twice: one server
        for s in same:
            s.alive = alive
        server = same[0]
        self._publish(server)
        if alive:
            log.warning(
                "forward sink %s: server %s is back in rotation (%s)",
                self.component_id,
                server.name,
                why,
            )
        else:
            if self._network is not None:
                self._network.server_down.labels(self.component_id, server.name, "heartbeat").inc()
            log.warning(
                "forward sink %s: server %s taken out of rotation: %s; its lanes move to "
                "the other servers",
                self.component_id,
                server.name,
                why,
            )
        self._changed.set()
        for lane in self._lanes:
            lane.wakeup.set()

    def _failed(self, server: _Server, error_type: str, message: str, lane: _Lane) -> None:
        self.metrics.error(error_type, "sending")
        server.failed = True
        self._publish(server)
        if self._network is not None:
            self._network.server_down.labels(self.component_id, server.name, "failure").inc()
        delay = server.backoff.next_delay()
        server.down_until = asyncio.get_running_loop().time() + delay
        log.warning(
            "forward sink %s: server %s %s; %d unacknowledged chunks are sent again "
            "(this server is tried again in %.1fs)",
            self.component_id,
            server.name,
            message,
            len(lane.inflight) + len(lane.waiting),
            delay,
        )


def _acked(chunk: _Chunk) -> bool:
    """The chunk's ack arrived (or its connection failed: the future holds the error)."""
    return chunk.ack is not None and chunk.ack.done()
