"""How the client dials a master: the bearer token, TLS, and the gRPC channel options.

Every master enforces ACLs, so calls carry `authorization: Bearer TOKEN`; the token is given
or read from `WASMOS_TOKEN`, as the `wasmos` CLI does. A master that serves TLS requires a
client certificate signed by the cluster CA (`wasmos certs issue client NAME`), and the client
checks that the master's certificate names `master.wasmos` whatever address it dialled
(`api/src/tls.rs`); the files come from `TlsOptions` or `WASMOS_TLS_CA`, `WASMOS_TLS_CERT` and
`WASMOS_TLS_KEY`. A CA alone (no client certificate) serves a TLS endpoint that asks for none.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import grpc

from .errors import ConfigError

__all__ = [
    "MASTER_SERVER_NAME",
    "MAX_MESSAGE_BYTES",
    "MAX_TOKEN_BYTES",
    "TlsOptions",
    "token_metadata",
    "open_channel",
]

# The name clients verify on a master's certificate.
MASTER_SERVER_NAME = "master.wasmos"
# The largest message sent or accepted, as the master's default (`limits::MAX_MESSAGE_BYTES`):
# an update carries a task's result of up to 4 MiB; grpc's default of 4 MiB is too small.
MAX_MESSAGE_BYTES = 16 << 20
# A token longer than this is refused before it is sent (the master's are about 50 bytes).
MAX_TOKEN_BYTES = 4096
# A TLS file larger than this is refused (a PEM certificate chain is a few KiB).
MAX_PEM_BYTES = 1 << 20


@dataclass(frozen=True)
class TlsOptions:
    """The TLS files: the cluster CA's certificate (PEM), and this client's certificate and
    key (both or neither). `server_name` is the name the master's certificate must carry."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    server_name: str = MASTER_SERVER_NAME

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TlsOptions | None:
        """From `WASMOS_TLS_CA`, `WASMOS_TLS_CERT` and `WASMOS_TLS_KEY`; `None` when none is
        set. The certificate and key come together; a CA is needed with them."""
        env = os.environ if env is None else env
        ca, cert, key = (env.get(f"WASMOS_TLS_{k}") or None for k in ("CA", "CERT", "KEY"))
        if ca is None and cert is None and key is None:
            return None
        if ca is None:
            raise ConfigError(
                "WASMOS_TLS_CERT or WASMOS_TLS_KEY is set without WASMOS_TLS_CA: set the "
                "cluster CA's certificate too (certs/ca.pem from `wasmos certs init`)"
            )
        return cls(Path(ca), Path(cert) if cert else None, Path(key) if key else None)

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise ConfigError(
                "a TLS client certificate and its key come together: give both (or neither)"
            )
        ca = _read_pem("CA", self.ca)
        cert = _read_pem("certificate", self.cert) if self.cert else None
        key = _read_pem("key", self.key) if self.key else None
        return grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert
        )


def _read_pem(what: str, path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PEM_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read the TLS {what} file {path}: {e.strerror}") from e
    if len(data) > MAX_PEM_BYTES:
        raise ConfigError(
            f"the TLS {what} file {path} is larger than {MAX_PEM_BYTES} bytes: "
            "it is not a PEM file from `wasmos certs`"
        )
    if b"-----BEGIN " not in data:
        raise ConfigError(f"the TLS {what} file {path} holds no PEM block")
    return data


def token_metadata(token: str | None) -> tuple[tuple[str, str | bytes], ...]:
    """The call metadata carrying `token` (or `WASMOS_TOKEN` when `token` is `None`); empty
    when neither is set. Refused when it is not printable ASCII or longer than
    `MAX_TOKEN_BYTES`."""
    if token is None:
        token = os.environ.get("WASMOS_TOKEN")
    token = (token or "").strip()
    if not token:
        return ()
    if len(token) > MAX_TOKEN_BYTES:
        raise ConfigError(
            f"the token is {len(token)} bytes long; tokens are at most {MAX_TOKEN_BYTES} "
            "(use the one `wasmos tokens create` printed)"
        )
    if not (token.isascii() and token.isprintable()):
        raise ConfigError("the token (WASMOS_TOKEN or token=) is not printable ASCII")
    return (("authorization", f"Bearer {token}"),)


def open_channel(target: str, tls: TlsOptions | None) -> grpc.Channel:
    """A channel to `target` (`host:port`), over TLS when `tls` is given."""
    options: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        # The client retries by itself, to the leader it finds; grpc's own retries and its
        # reconnect backoff would only delay that.
        ("grpc.enable_retries", 0),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    ]
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.secure_channel(target, tls.credentials(), options=options)
