"""The `forward` source against real clients: fluent-logger (PyPI), raw protocol frames
for the modes fluent-logger does not send, shared_key, TLS and UDP heartbeats."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trustme
from fluent import asyncsender, handler, sender

from kubelogs.forward.handshake import ClientAuth
from kubelogs.forward.protocol import encode_packed_forward, event_time_ext, pack_entry, packb
from support.forward import error_count, running_source

T = 1_700_000_000_123_456_789


async def open_raw(port: int, **kw: Any) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port, **kw)


_UNPACKERS: dict[int, msgpack.Unpacker] = {}


async def read_obj(reader: asyncio.StreamReader, timeout: float = 10.0) -> Any:  # noqa: ASYNC109
    """The next msgpack object the server sent on this connection."""
    u = _UNPACKERS.setdefault(id(reader), msgpack.Unpacker(raw=False))
    async with asyncio.timeout(timeout):
        while True:
            for obj in u:
                return obj
            data = await reader.read(4096)
            if not data:
                raise ConnectionError("closed")
            u.feed(data)


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes the connection (EOF, or a reset when data was unread)."""
    try:
        async with asyncio.timeout(10):
            while await reader.read(65536):
                pass
    except ConnectionResetError:
        pass
    return True


class TestFluentLogger:
    async def test_sync_sender_with_nanosecond_event_time(self) -> None:
        async with running_source() as (src, out, _):

            def send() -> None:
                s = sender.FluentSender("app", port=src.port, nanosecond_precision=True)
                for i in range(50):
                    assert s.emit_with_time(
                        "web",
                        sender.EventTime.from_unix_nano(T + i),
                        {"message": f"hello {i}", "n": i},
                    )
                s.close()

            await asyncio.to_thread(send)
            await out.wait_events(50)

        recs = out.records()
        assert [f"hello {i}" for i in range(50)] == [m for _, m, _ in recs]
        assert T + 49 == recs[-1][0]
        assert {"n": 49, "fluent": {"tag": "app.web"}} == recs[-1][2]

    async def test_sync_sender_with_integer_seconds(self) -> None:
        async with running_source() as (src, out, _):

            def send() -> None:
                s = sender.FluentSender("app", port=src.port)
                assert s.emit_with_time(None, 1_700_000_000, {"log": "from log key"})
                s.close()

            await asyncio.to_thread(send)
            await out.wait_events(1)

        assert [(1_700_000_000 * 10**9, "from log key", {"fluent": {"tag": "app"}})] == (
            out.records()
        )

    async def test_async_sender(self) -> None:
        async with running_source() as (src, out, _):

            def send() -> None:
                s = asyncsender.FluentSender("a", port=src.port, nanosecond_precision=True)
                for i in range(200):
                    s.emit("b", {"msg": f"m{i}"})
                s.close()

            await asyncio.to_thread(send)
            await out.wait_events(200)

        assert [f"m{i}" for i in range(200)] == out.messages

    async def test_logging_handler_keeps_structured_fields(self) -> None:
        async with running_source() as (src, out, _):

            def send() -> None:
                h = handler.FluentHandler("py.app", port=src.port, nanosecond_precision=True)
                h.setFormatter(
                    handler.FluentRecordFormatter(
                        {"level": "%(levelname)s", "message": "%(message)s"}
                    )
                )
                lg = logging.getLogger("fwd-test")
                lg.propagate = False
                lg.addHandler(h)
                lg.warning("disk %s full", "/data")
                lg.removeHandler(h)
                h.close()

            await asyncio.to_thread(send)
            await out.wait_events(1)

        ((_, message, fields),) = out.records()
        assert "disk /data full" == message
        assert "WARNING" == fields["level"]


class TestModesAndAcks:
    async def test_forward_mode_ack_only_after_events_are_durable(self) -> None:
        async with running_source(durable=False) as (src, out, _):
            reader, writer = await open_raw(src.port)
            entries = [[event_time_ext(T + i), {"message": f"e{i}"}] for i in range(3)]
            writer.write(packb(["t", entries, {"chunk": "c-1", "size": 3}]))
            await out.wait_events(3)
            # not durable yet: no ack
            with pytest.raises(TimeoutError):
                await read_obj(reader, timeout=0.3)
            out.resolve_all()

            assert {"ack": "c-1"} == await read_obj(reader)
            writer.close()

    async def test_packed_and_compressed_packed_forward_are_acked(self) -> None:
        async with running_source() as (src, out, _):
            reader, writer = await open_raw(src.port)
            entries = [pack_entry(T + i, {"message": f"p{i}"}) for i in range(1000)]
            writer.write(encode_packed_forward("t", entries, chunk="plain"))
            writer.write(encode_packed_forward("t", entries, chunk="gz", compress=True))

            acks = {(await read_obj(reader))["ack"], (await read_obj(reader))["ack"]}
            writer.close()

        assert {"plain", "gz"} == acks
        assert 2000 == len(out.messages)
        assert "p999" == out.messages[-1]

    async def test_acks_of_one_read_wait_for_every_batch(self) -> None:
        """Two tags in one read become two batches sharing one token."""
        async with running_source(durable=False) as (src, out, _):
            reader, writer = await open_raw(src.port)
            writer.write(
                packb(["a", T // 10**9, {"message": "1"}, {"chunk": "x"}])
                + packb(["b", T // 10**9, {"message": "2"}, {"chunk": "y"}])
            )
            await out.wait_events(2)
            for b in out.batches[:-1]:
                if b.ack is not None:
                    b.ack.resolve()
            with pytest.raises(TimeoutError):
                await read_obj(reader, timeout=0.3)
            out.resolve_all()
            got = {(await read_obj(reader))["ack"]}
            got.add((await read_obj(reader))["ack"])
            writer.close()

        assert {"x", "y"} == got

    async def test_tag_pattern_fields(self) -> None:
        async with running_source(
            tag_pattern=r"^kube\.(?P<namespace>[^.]+)\.(?P<app>[^.]+)$", tag_field="tag"
        ) as (src, out, _):
            _, writer = await open_raw(src.port)
            writer.write(packb(["kube.shop.cart", 1, {"message": "m"}]))
            writer.write(packb(["other", 1, {"message": "n"}]))
            await out.wait_events(2)
            writer.close()

        fields = [f for _, _, f in out.records()]
        assert [
            {"tag": "kube.shop.cart", "namespace": "shop", "app": "cart"},
            {"tag": "other"},
        ] == (fields)


class TestSharedKey:
    async def handshake(self, port: int, auth: ClientAuth) -> Any:
        reader, writer = await open_raw(port)
        helo = await read_obj(reader)
        ping, salt, nonce = auth.ping(helo)
        writer.write(packb(ping))
        pong = await read_obj(reader)
        return reader, writer, pong, salt, nonce

    async def test_good_key_then_events_flow(self) -> None:
        async with running_source(shared_key="s3cret") as (src, out, _):
            auth = ClientAuth("s3cret", "client-host")
            reader, writer, pong, salt, nonce = await self.handshake(src.port, auth)
            auth.check_pong(pong, salt, nonce)
            writer.write(packb(["t", 1, {"message": "authed"}, {"chunk": "k"}]))

            assert {"ack": "k"} == await read_obj(reader)
            writer.close()

        assert ["authed"] == out.messages

    async def test_bad_key_is_refused_and_counted(self) -> None:
        async with running_source(shared_key="s3cret") as (src, out, metrics):
            reader, writer, pong, _, _ = await self.handshake(src.port, ClientAuth("wrong", "c"))
            writer.write(packb(["t", 1, {"message": "sneaky"}]))

            assert [False, "shared_key mismatch"] == pong[1:3]
            assert await closed_by_server(reader)
            writer.close()
            assert 1 == error_count(metrics, "auth")
        assert [] == out.messages

    async def test_user_password(self) -> None:
        users = [{"username": "agent", "password": "pw"}]
        async with running_source(shared_key="k", users=users) as (src, _, _):
            good = ClientAuth("k", "c", "agent", "pw")
            _, w1, pong, salt, nonce = await self.handshake(src.port, good)
            good.check_pong(pong, salt, nonce)
            _, w2, pong2, _, _ = await self.handshake(src.port, ClientAuth("k", "c", "agent", "no"))
            w1.close()
            w2.close()

        assert [False, "username/password mismatch"] == pong2[1:3]

    async def test_messages_before_the_handshake_are_refused(self) -> None:
        async with running_source(shared_key="k") as (src, out, metrics):
            reader, writer = await open_raw(src.port)
            await read_obj(reader)  # HELO
            writer.write(packb(["t", 1, {"message": "no ping"}]))
            pong = await read_obj(reader)
            writer.close()

            assert False is pong[1]
            assert 1 == error_count(metrics, "auth")
        assert [] == out.messages


def test_udp_heartbeat_is_answered(tmp_path: Path) -> None:
    async def main() -> None:
        async with running_source() as (src, _, _):

            def ping() -> bytes:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.settimeout(5)
                    s.sendto(b"\x00", ("127.0.0.1", src.port))
                    return s.recv(16)

            assert b"\x00" == await asyncio.to_thread(ping)

    asyncio.run(main())


async def test_tls(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    tls = {"cert_file": str(tmp_path / "server.pem"), "key_file": str(tmp_path / "server.pem")}
    async with running_source(tls=tls) as (src, out, _):
        ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        reader, writer = await open_raw(src.port, ssl=ctx, server_hostname="localhost")
        writer.write(packb(["t", 1, {"message": "over tls"}, {"chunk": "tls"}]))

        assert {"ack": "tls"} == await read_obj(reader)
        writer.close()
        # a plain-text client gets nothing through
        r2, w2 = await open_raw(src.port)
        w2.write(packb(["t", 1, {"message": "plain"}]))
        assert await closed_by_server(r2)
        w2.close()
    assert ["over tls"] == out.messages


class TestHostileInput:
    async def send_then_expect_close(self, port: int, data: bytes) -> None:
        reader, writer = await open_raw(port)
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        assert await closed_by_server(reader)
        writer.close()

    @pytest.mark.parametrize(
        ("data", "error"),
        [
            (b"\xc1\xc1\xc1", "protocol"),  # never-used msgpack byte
            (packb("a string"), "protocol"),
            (packb([1, 2, 3]), "protocol"),
            (packb(["t", [[1, "x"]]]), "protocol"),
            (packb(["t", 1, {"message": "cut"}])[:-3], "protocol"),  # truncated frame
            (packb(["t", b"not gzip", {"compressed": "gzip"}]), "protocol"),
        ],
    )
    async def test_bad_frames_close_the_connection_and_are_counted(
        self, data: bytes, error: str
    ) -> None:
        async with running_source() as (src, out, metrics):
            await self.send_then_expect_close(src.port, data)
            assert 1 == error_count(metrics, error)
            # the server still serves others
            r, w = await open_raw(src.port)
            w.write(packb(["t", 1, {"message": "fine"}, {"chunk": "ok"}]))
            assert {"ack": "ok"} == await read_obj(r)
            w.close()
        assert ["fine"] == out.messages

    async def test_declared_size_over_the_limit(self) -> None:
        async with running_source(max_message_size="64KiB") as (src, _, metrics):
            reader, writer = await open_raw(src.port)
            writer.write(b"\x93\xa1t\xc6\x7f\xff\xff\xff")  # ["t", bin of 2 GiB ...
            try:
                for _ in range(64):  # 256 KiB, 4x the limit
                    writer.write(b"\x00" * 4096)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass  # closed while we were still writing
            assert await closed_by_server(reader)
            writer.close()
            assert 1 == error_count(metrics, "protocol")

    async def test_gzip_bomb(self) -> None:
        import gzip

        bomb = gzip.compress(b"\x00" * (32 << 20))
        async with running_source(max_decompressed_size="1MiB") as (src, out, metrics):
            await self.send_then_expect_close(
                src.port, packb(["t", bomb, {"compressed": "gzip", "chunk": "b"}])
            )
            assert 1 == error_count(metrics, "protocol")
        assert [] == out.messages


def test_slow_client_does_not_block_others() -> None:
    """A client that sends half a message and stalls does not hold up another."""

    async def main() -> None:
        async with running_source() as (src, out, _):
            _, stalled = await open_raw(src.port)
            stalled.write(packb(["t", 1, {"message": "half"}])[:5])
            await stalled.drain()
            r, w = await open_raw(src.port)
            w.write(packb(["t", 1, {"message": "whole"}, {"chunk": "w"}]))
            assert {"ack": "w"} == await read_obj(r)
            w.close()
            stalled.close()
        assert ["whole"] == out.messages

    t0 = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - t0 < 20


async def test_a_taken_port_names_the_setting_and_the_address() -> None:
    """A user running an aggregator next to Fluentd gets one line naming what to change,
    not asyncio's bare bind error."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        expected = f"sources.fwd.address: cannot listen on 127.0.0.1:{port}"
        with pytest.raises(OSError, match=expected):
            async with running_source(address=f"127.0.0.1:{port}"):
                pass
