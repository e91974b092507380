"""`close_writer` leaves no socket open when a TLS peer never answers the close, even
after the connection was closed once already (as `ClientConnection._fail` does) and
when the closing task is cancelled (as `ForwardHandler.close` does at thread exit)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import threading
from collections.abc import Iterator

import pytest
import trustme

from kubelogs.forward.client import close_writer
from support.waiting import wait_for


@contextlib.contextmanager
def silent_tls_peer(ca: trustme.CA) -> Iterator[int]:
    """A TLS server that completes the handshake and then never reads again: it never
    answers the client's close_notify, like a peer that vanished."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    listener = socket.create_server(("127.0.0.1", 0))
    release = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with ctx.wrap_socket(conn, server_side=True):
            release.wait(30)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        release.set()
        t.join(10)
        listener.close()


@pytest.mark.parametrize("how", ["timeout", "cancelled"])
async def test_tls_close_without_answer_is_aborted_after_an_earlier_close(how: str) -> None:
    ca = trustme.CA()
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with silent_tls_peer(ca) as port:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        raw = writer.get_extra_info("socket")
        assert raw.fileno() >= 0
        writer.close()  # a first close, as ClientConnection._fail does
        if how == "timeout":
            await close_writer(writer, timeout=0.2)
        else:
            task = asyncio.create_task(close_writer(writer, timeout=30))
            await asyncio.sleep(0)  # the task is now waiting for the close to finish
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        # before the fix, the second close made abort() a no-op: the fd stayed open
        # (the transport closes its socket on a later turn of the loop)
        await asyncio.to_thread(wait_for, lambda: raw.fileno() == -1, timeout=5, what="closed")
