"""The Forward protocol's authentication handshake (HELO / PING / PONG), pure.

With a `shared_key`, the server opens every connection with
``["HELO", {"nonce": bin, "auth": salt_or_empty, "keepalive": true}]``; the client proves
it knows the key with
``["PING", client_hostname, shared_key_salt, sha512_hex(salt + client_hostname + nonce +
key), username, sha512_hex(auth_salt + username + password)]``; the server answers
``["PONG", ok, reason, server_hostname, sha512_hex(salt + server_hostname + nonce + key)]``
so that the client knows the server has the key too. Only then do messages flow. The
nonce is fresh per connection, so a recorded PING cannot be replayed. Digests are
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class HandshakeError(ValueError):
    """The peer failed authentication or broke the handshake; ``str()`` says how."""


def _hex(*parts: bytes) -> str:
    h = hashlib.sha512()
    for p in parts:
        h.update(p)
    return h.hexdigest()


def _b(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise HandshakeError(f"a handshake field is a {type(value).__name__}, not a string")


def helo(nonce: bytes, auth_salt: bytes) -> list[Any]:
    return ["HELO", {"nonce": nonce, "auth": auth_salt, "keepalive": True}]


def new_nonce() -> bytes:
    return os.urandom(16)


@dataclass(frozen=True)
class ServerAuth:
    """What the server checks: the shared key and, optionally, users."""

    shared_key: str
    hostname: str
    users: Mapping[str, str] | None = None
    """username -> password; None: no user authentication."""

    def check_ping(self, ping: Any, nonce: bytes, auth_salt: bytes) -> tuple[bytes, str]:
        """-> (the client's shared_key_salt, client hostname); HandshakeError when it fails."""
        if not isinstance(ping, list) or len(ping) < 4 or ping[0] != "PING":
            raise HandshakeError("the first message is not a PING")
        hostname, salt, digest = _b(ping[1]), _b(ping[2]), _b(ping[3])
        expected = _hex(salt, hostname, nonce, self.shared_key.encode())
        if not hmac.compare_digest(expected.encode(), digest):
            raise HandshakeError("shared_key mismatch")
        if self.users is not None:
            if len(ping) < 6:
                raise HandshakeError("username/password required")
            user = _b(ping[4]).decode(errors="replace")
            password = self.users.get(user)
            if password is None:
                raise HandshakeError("username/password mismatch")
            want = _hex(auth_salt, user.encode(), password.encode())
            if not hmac.compare_digest(want.encode(), _b(ping[5])):
                raise HandshakeError("username/password mismatch")
        return salt, hostname.decode(errors="replace")

    def pong(self, ok: bool, reason: str, salt: bytes, nonce: bytes) -> list[Any]:
        digest = _hex(salt, self.hostname.encode(), nonce, self.shared_key.encode()) if ok else ""
        return ["PONG", ok, reason, self.hostname, digest]


@dataclass(frozen=True)
class ClientAuth:
    shared_key: str
    hostname: str
    username: str = ""
    password: str = ""

    def ping(self, helo_msg: Any) -> tuple[list[Any], bytes, bytes]:
        """HELO -> (PING, salt, nonce); HandshakeError when the HELO is malformed."""
        if not isinstance(helo_msg, list) or len(helo_msg) < 2 or helo_msg[0] != "HELO":
            raise HandshakeError("the server did not start with HELO")
        opts = helo_msg[1]
        if not isinstance(opts, dict) or "nonce" not in opts:
            raise HandshakeError("the server's HELO has no nonce")
        nonce = _b(opts["nonce"])
        auth_salt = _b(opts.get("auth") or b"")
        salt = os.urandom(16)
        digest = _hex(salt, self.hostname.encode(), nonce, self.shared_key.encode())
        user_digest = (
            _hex(auth_salt, self.username.encode(), self.password.encode()) if auth_salt else ""
        )
        ping = ["PING", self.hostname, salt, digest, self.username, user_digest]
        return ping, salt, nonce

    def check_pong(self, pong: Any, salt: bytes, nonce: bytes) -> None:
        if not isinstance(pong, list) or len(pong) < 5 or pong[0] != "PONG":
            raise HandshakeError("the server did not answer PING with PONG")
        if pong[1] is not True:
            raise HandshakeError(f"the server refused authentication: {pong[2]!s:.200}")
        expected = _hex(salt, _b(pong[3]), nonce, self.shared_key.encode())
        if not hmac.compare_digest(expected.encode(), _b(pong[4])):
            raise HandshakeError("the server's shared_key digest does not match ours")
