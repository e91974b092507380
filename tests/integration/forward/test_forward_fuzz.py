"""Random and mangled frames against a running `forward` source: every connection ends
(closed on an error, or served), the server keeps serving valid clients, and memory does
not grow with what hostile clients declare."""

from __future__ import annotations

import asyncio
import resource
import socket
import threading
import zlib
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubelogs.forward.columnar import encode_batch
from kubelogs.forward.protocol import encode_packed_forward, event_time_ext, pack_entry, packb
from support.forward import Collect, running_source
from support.store_docs import make_batches


class ServerThread:
    """A forward source on its own event loop in a thread, for blocking test clients."""

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.port = 0
        self.out: Collect | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with running_source(**self.config) as (src, out, _):
            self.port, self.out = src.port, out
            self._ready.set()
            await self._stop.wait()

    def __enter__(self) -> ServerThread:
        self._thread.start()
        assert self._ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread(max_message_size="256KiB", max_decompressed_size="1MiB") as s:
        yield s


def exchange(port: int, data: bytes) -> bytes:
    """Send `data`, half-close, read until the server closes or 10 s pass."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := s.recv(65536):
                got += chunk
            return got
        except OSError:  # reset, broken pipe, not connected: closed by the server
            return b""


def still_serves(port: int) -> bool:
    ack = exchange(port, packb(["t", 1, {"message": "canary"}, {"chunk": "canary"}]))
    return {"ack": "canary"} == msgpack.unpackb(ack)


msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "value", "mangled", "packed", "columnar"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "value":
        return packb(draw(msgpack_values))
    if kind == "packed":
        entries = [pack_entry(1, {"message": "x"})] * draw(st.integers(0, 5))
        data = encode_packed_forward("t", entries, chunk="c", compress=draw(st.booleans()))
    elif kind == "columnar":
        data = packb(["t", encode_batch(make_batches(lines=3, per_batch=3, containers=1)[0])])
    else:
        data = packb(["t", [[event_time_ext(1), draw(msgpack_values)]], {"chunk": "m"}])
    # cut, flip or extend the valid frame
    how = draw(st.sampled_from(["cut", "flip", "extend", "keep"]))
    if how == "cut" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    if how == "extend":
        return data + draw(st.binary(max_size=50))
    return data


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=frames())
def test_random_frames_never_stop_the_server(server: ServerThread, data: bytes) -> None:
    exchange(server.port, data)

    assert still_serves(server.port)


def test_hostile_declarations_do_not_grow_memory(server: ServerThread) -> None:
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = b"\x00" * (1 << 20)
    bomb = b"".join(z.compress(zeros) for _ in range(256)) + z.flush()  # 256 MiB inflated
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(5):
        exchange(server.port, b"\x93\xa1t\xc6\xff\xff\xff\xff" + b"\x00" * (512 << 10))  # 4 GiB
        exchange(server.port, b"\xdd\xff\xff\xff\xff" * 1000)  # arrays of 4 G elements
        exchange(server.port, packb(["t", bomb, {"compressed": "gzip"}]))
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024

    assert grown_mib < 64
    assert still_serves(server.port)
