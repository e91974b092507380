"""The listening side of the Forward protocol: connections, handshake, framing, acks.

One asyncio task per connection reads up to `READ_SIZE` bytes, feeds them to a bounded
stream unpacker, decodes every complete message and hands the messages of that read to
`on_messages` in one call (so fluent-logger's one-event messages still travel downstream
in batches) - and reads nothing more until that call returns: a full pipeline stops the
reads and TCP flow control stops the sender (backpressure, bounded memory).

Acks: `Connection.send_acks` writes ``{"ack": chunk}`` for each chunk id; the source
calls it only when the events are durable. A connection that closed before that simply
loses the ack: the sender resends the chunk on another connection.

Error handling: a protocol error (garbage, a wrong type, a truncated gzip member, a
declared size over the limit, a failed handshake) closes that connection, counted in
``kubelogs_component_errors_total`` (``error_type``: ``protocol`` or ``auth``) and logged
once per rate-limit interval; other connections are untouched. A peer that disappears
mid-message is an ordinary close: whatever it had not been acked for, it resends.

UDP heartbeat: Fluentd's out_forward (``heartbeat_type udp``) sends a datagram to the
server's port and takes any answer as "alive"; the server answers each with one NUL byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from kubelogs.forward.client import close_writer
from kubelogs.forward.handshake import HandshakeError, ServerAuth, helo, new_nonce
from kubelogs.forward.protocol import (
    ForwardMessage,
    Limits,
    ProtocolError,
    ack_response,
    decode_message,
    ends_inside_object,
    iter_messages,
    new_unpacker,
    packb,
)

log = logging.getLogger("kubelogs.sources.forward")

READ_SIZE = 256 << 10
"""Bytes per read: big enough to batch many small messages, small against the limits."""


class Connection:
    """One client connection, as the source's `on_messages` sees it."""

    __slots__ = ("_writer", "owed", "peer")

    def __init__(self, writer: asyncio.StreamWriter, peer: str) -> None:
        self._writer = writer
        self.peer = peer
        self.owed = 0
        """Chunks received and not yet acked: while any is owed, a silent peer is not
        idle (it waits for us) and `idle_timeout` does not close it."""

    def owe(self, chunks: int) -> None:
        self.owed += chunks

    def send_acks(self, chunks: list[str]) -> None:
        """Answer each chunk id; a no-op once the connection is closed (the sender will
        resend those chunks elsewhere: receivers deduplicate by event id)."""
        self.owed = max(0, self.owed - len(chunks))
        w = self._writer
        if w.is_closing():
            return
        w.write(b"".join(ack_response(c) for c in chunks))

    @property
    def open(self) -> bool:
        return not self._writer.is_closing()


OnMessages = Callable[[list[ForwardMessage], Connection], Awaitable[None]]
OnError = Callable[[str, str, str], None]
"""(error_type, peer, message) -> None: count and log."""


@dataclass
class ServerSettings:
    host: str
    port: int
    limits: Limits
    auth: ServerAuth | None = None
    ssl: ssl.SSLContext | None = None
    max_connections: int = 1024
    handshake_timeout: float = 10.0
    heartbeat: bool = True
    idle_timeout: float | None = None
    """Seconds without a byte from a peer that is owed no ack; then the connection is
    closed and `count_idle` called. None: never."""
    count_idle: Callable[[], None] | None = None
    count_bytes: Callable[[int], None] | None = None
    """Called with the size of every read (``kubelogs_component_received_bytes_total``)."""


class _Heartbeat(asyncio.DatagramProtocol):
    transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self.transport is not None:
            self.transport.sendto(b"\x00", addr)


class ForwardServer:
    """TCP (or TLS) listener; `start` binds, `close` stops and ends every connection."""

    def __init__(
        self, settings: ServerSettings, on_messages: OnMessages, on_error: OnError
    ) -> None:
        self.settings = settings
        self._on_messages = on_messages
        self._on_error = on_error
        self._server: asyncio.Server | None = None
        self._udp: asyncio.BaseTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = settings.port
        self.received_bytes = 0
        self.accepted = 0
        """Connections accepted since the start (including those refused at once)."""

    @property
    def connections(self) -> int:
        """Connections served now (each holds one of `max_connections`)."""
        return len(self._tasks)

    async def start(self) -> None:
        s = self.settings
        self._server = await asyncio.start_server(
            self._accept, s.host, s.port, ssl=s.ssl, limit=READ_SIZE, reuse_address=True
        )
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        if s.heartbeat:
            await self.answer_heartbeats(True)

    async def answer_heartbeats(self, on: bool) -> None:
        """Start or stop answering UDP heartbeats. Stopped, senders with heartbeats
        take this server out of rotation while its connections keep working - e.g. to
        let them move away before a planned stop."""
        s = self.settings
        if not on:
            if self._udp is not None:
                self._udp.close()
                self._udp = None
            return
        if self._udp is not None:
            return
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                _Heartbeat, local_addr=(s.host, self.port)
            )
            self._udp = transport
        except OSError as exc:
            log.warning(
                "forward: UDP heartbeat not available on %s:%d (%s)", s.host, self.port, exc
            )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._udp is not None:
            self._udp.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.accepted += 1
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        if len(self._tasks) >= self.settings.max_connections:
            self._on_error("too_many_connections", peer, "max_connections reached")
            writer.close()
            return
        self._tasks.add(task)
        try:
            await self._serve(reader, writer, peer)
        except ProtocolError as exc:
            self._on_error("protocol", peer, str(exc))
        except HandshakeError as exc:
            self._on_error("auth", peer, str(exc))
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, TimeoutError):
            pass  # the peer went away; it resends what was not acknowledged
        except asyncio.CancelledError:
            # only `close` cancels: end quietly (asyncio's stream server would log a
            # cancelled handler task as an error on Python 3.11)
            pass
        finally:
            self._tasks.discard(task)
            # aborts a TLS close the peer does not answer: no socket left to the GC
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await close_writer(writer)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        s = self.settings
        limits = s.limits
        unpacker = new_unpacker(limits.max_message_size)
        conn = Connection(writer, peer)
        if s.auth is not None:
            await asyncio.wait_for(
                self._handshake(reader, writer, unpacker, s.auth), s.handshake_timeout
            )
        while True:
            msgs = [decode_message(obj, limits) for obj in iter_messages(unpacker, limits)]
            if msgs:
                await self._on_messages(msgs, conn)
            data = await self._read(reader, conn)
            if data is None:
                if s.count_idle is not None:
                    s.count_idle()
                log.debug("forward: closed %s: idle for %gs", peer, s.idle_timeout)
                return
            if not data:
                if ends_inside_object(unpacker):
                    raise ProtocolError("the connection closed in the middle of a message")
                return
            self.received_bytes += len(data)
            if s.count_bytes is not None:
                s.count_bytes(len(data))
            _feed(unpacker, data, limits)

    async def _read(self, reader: asyncio.StreamReader, conn: Connection) -> bytes | None:
        """The next bytes (b"" at EOF), or None when the peer stayed silent for
        `idle_timeout` while owed no ack. Only the wait for the peer counts: time spent
        handing messages downstream (a full pipeline) is not idleness."""
        idle = self.settings.idle_timeout
        if idle is None:
            return await reader.read(READ_SIZE)
        while True:
            try:
                async with asyncio.timeout(idle):
                    return await reader.read(READ_SIZE)
            except TimeoutError:
                if not conn.owed:
                    return None
                # it waits for our acks (a slow sink): not idle, keep waiting

    async def _handshake(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        unpacker: msgpack.Unpacker,
        auth: ServerAuth,
    ) -> int:
        """-> bytes fed to the unpacker (the PING, perhaps with messages behind it)."""
        nonce = new_nonce()
        auth_salt = new_nonce() if auth.users is not None else b""
        writer.write(packb(helo(nonce, auth_salt)))
        await writer.drain()
        ping: Any = None
        fed = 0
        while ping is None:
            data = await reader.read(4096)
            if not data:
                raise HandshakeError("the client closed the connection before PING")
            fed += len(data)
            _feed(unpacker, data, self.settings.limits)
            for obj in iter_messages(unpacker, self.settings.limits):
                ping = obj
                break
        try:
            salt, _ = auth.check_ping(ping, nonce, auth_salt)
        except HandshakeError as exc:
            writer.write(packb(auth.pong(False, str(exc), b"", nonce)))
            await writer.drain()
            raise
        writer.write(packb(auth.pong(True, "", salt, nonce)))
        await writer.drain()
        return fed


def _feed(unpacker: msgpack.Unpacker, data: bytes, limits: Limits) -> None:
    try:
        unpacker.feed(data)
    except msgpack.BufferFull:
        raise ProtocolError(
            f"a message is larger than max_message_size ({limits.max_message_size} bytes)"
        ) from None
