"""TLS settings of the forward source (server side) and sink (client side)."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import model_validator

from kubelogs.config.base import StrictModel


class ServerTlsConfig(StrictModel):
    """TLS for the listening socket: every connection must speak TLS."""

    cert_file: Path
    """Server certificate chain (PEM)."""
    key_file: Path
    """Private key of `cert_file` (PEM, unencrypted)."""
    ca_file: Path | None = None
    """When set, clients must present a certificate signed by one of these CAs
    (mutual TLS)."""

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        if self.ca_file is not None:
            ctx.load_verify_locations(cafile=str(self.ca_file))
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


class ClientTlsConfig(StrictModel):
    """TLS to the servers. Server certificates are verified by default (against the
    system's CAs, or `ca_file`)."""

    ca_file: Path | None = None
    """PEM bundle of the CAs that signed the aggregator's certificate."""
    cert_file: Path | None = None
    """Client certificate (PEM) for servers that require mutual TLS; with `key_file`."""
    key_file: Path | None = None
    """Private key of `cert_file` (PEM, unencrypted)."""
    server_name: str | None = None
    """Name to verify the certificate against, when it differs from the host in
    `servers` (e.g. connecting by IP address)."""
    insecure_skip_verify: bool = False
    """Accept any server certificate. Only for tests: anyone on the path can read and
    change the logs."""

    @model_validator(mode="after")
    def _cert_and_key(self) -> ClientTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("`cert_file` and `key_file` go together")
        return self

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.cert_file is not None and self.key_file is not None:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx
