"""Client settings shared by the `kafka` sink and source, and their librdkafka form.

The config models are the user contract (field docstrings are the documentation);
`client_settings` turns them into the librdkafka properties both clients take, so the
two components connect the same way. Secrets stay `SecretStr` until this last step and
are never logged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from kubelogs.config.base import StrictModel

ExtraValue = str | int | float | bool


class SaslConfig(StrictModel):
    """SASL authentication. Write the values as ``${VAR}`` so that the secret comes from
    the environment (a Kubernetes Secret), not from the config file."""

    mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    """``PLAIN`` sends the password as is: use it only with `tls`."""
    username: str
    password: SecretStr


class KafkaTlsConfig(StrictModel):
    """TLS to the brokers. Server certificates are verified by default (against the
    system's CAs, or `ca_file`)."""

    enabled: bool = True
    """Set to use TLS with the defaults (``tls: {}``)."""
    ca_file: Path | None = None
    """PEM bundle of the CAs that signed the brokers' certificates."""
    cert_file: Path | None = None
    """Client certificate (PEM) for brokers that require mutual TLS; with `key_file`."""
    key_file: Path | None = None
    """Private key of `cert_file` (PEM, unencrypted)."""
    insecure_skip_verify: bool = False
    """Accept any broker certificate. Only for a throw-away test cluster."""

    @model_validator(mode="after")
    def _cert_and_key(self) -> KafkaTlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("`cert_file` and `key_file` go together")
        return self


class KafkaClientConfig(StrictModel):
    """Connection settings of both Kafka components."""

    bootstrap_servers: list[str] = Field(min_length=1)
    """``host:port`` of one or more brokers; the client discovers the rest."""
    sasl: SaslConfig | None = None
    """SASL authentication (PLAIN or SCRAM); none by default."""
    tls: KafkaTlsConfig | None = None
    """TLS to the brokers; plaintext by default."""
    librdkafka_options: dict[str, ExtraValue] = Field(default_factory=dict)
    """Extra librdkafka properties (``socket.keepalive.enable: true``), applied last:
    they can override what kubelogs sets, including the delivery guarantees."""

    @model_validator(mode="after")
    def _servers(self) -> KafkaClientConfig:
        for s in self.bootstrap_servers:
            host, sep, port = s.rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"bootstrap_servers: {s!r} is not host:port")
        return self


def security_protocol(sasl: SaslConfig | None, tls: KafkaTlsConfig | None) -> str:
    use_tls = tls is not None and tls.enabled
    if sasl is not None:
        return "SASL_SSL" if use_tls else "SASL_PLAINTEXT"
    return "SSL" if use_tls else "PLAINTEXT"


def client_settings(config: KafkaClientConfig, *, client_id: str) -> dict[str, ExtraValue]:
    """librdkafka properties for `config` (without the component's own settings)."""
    conf: dict[str, ExtraValue] = {
        "bootstrap.servers": ",".join(config.bootstrap_servers),
        "client.id": client_id,
        "security.protocol": security_protocol(config.sasl, config.tls),
        # librdkafka logs to stderr by itself; its messages go through our logger instead
        # (`logger=`), and transient broker-down lines are not errors of ours.
        "log.connection.close": False,
    }
    if config.sasl is not None:
        conf["sasl.mechanism"] = config.sasl.mechanism
        conf["sasl.username"] = config.sasl.username
        conf["sasl.password"] = config.sasl.password.get_secret_value()
    tls = config.tls
    if tls is not None and tls.enabled:
        if tls.ca_file is not None:
            conf["ssl.ca.location"] = str(tls.ca_file)
        if tls.cert_file is not None and tls.key_file is not None:
            conf["ssl.certificate.location"] = str(tls.cert_file)
            conf["ssl.key.location"] = str(tls.key_file)
        if tls.insecure_skip_verify:
            conf["enable.ssl.certificate.verification"] = False
            conf["ssl.endpoint.identification.algorithm"] = "none"
    return conf
