"""The leader-hint protocol, read as `wasmos_api::leader` (api/src/leader.rs) defines it.

A master that is not the leader answers every call with status `FAILED_PRECONDITION`, the
metadata key `wasmos-not-leader: 1`, and, when it knows the leader, `wasmos-leader` set to the
leader's address (`host:port` or `http(s)://host:port`). The hint comes off the network, so it
is followed only when it is a well-formed address of at most `MAX_ADDRESS_LEN` bytes: host a
DNS name, dotted IPv4 or bracketed IPv6, port 1..65535, nothing else.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Tuple, Union

import grpc

__all__ = [
    "LEADER_METADATA_KEY",
    "NOT_LEADER_METADATA_KEY",
    "MAX_ADDRESS_LEN",
    "is_valid_address",
    "leader_hint",
    "is_not_leader",
    "dial_target",
]

LEADER_METADATA_KEY = "wasmos-leader"
NOT_LEADER_METADATA_KEY = "wasmos-not-leader"
SHUTTING_DOWN_METADATA_KEY = "wasmos-shutting-down"
# A DNS name is at most 253 bytes, plus scheme and port.
MAX_ADDRESS_LEN = 300

Metadata = Iterable[Tuple[str, Union[str, bytes]]]


def is_valid_address(address: str) -> bool:
    """Whether `address` is `host:port` or `http(s)://host:port` (see the module doc)."""
    if not address or len(address.encode("utf-8", "replace")) > MAX_ADDRESS_LEN:
        return False
    rest = address
    for scheme in ("http://", "https://"):
        if rest.startswith(scheme):
            rest = rest[len(scheme) :]
            break
    host, sep, port = rest.rpartition(":")
    if not sep:
        return False
    if not (1 <= len(port) <= 5 and port.isascii() and port.isdigit()):
        return False
    if not 1 <= int(port) <= 65535:
        return False
    return _is_valid_host(host)


def _is_valid_host(host: str) -> bool:
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return False
        return True
    if not host or len(host) > 253 or not host.isascii():
        return False
    for label in host.split("."):
        if not label or len(label) > 63 or label[0] == "-" or label[-1] == "-":
            return False
        if not all(c.isalnum() or c == "-" for c in label):
            return False
    return True


def _value(metadata: Metadata | None, key: str) -> str | None:
    for k, v in metadata or ():
        if k.lower() == key:
            return v.decode("ascii", "replace") if isinstance(v, bytes) else v
    return None


def leader_hint(code: grpc.StatusCode | None, metadata: Metadata | None) -> str | None:
    """The leader's address if a call failed with `code` and `metadata` as a not-leader
    answer that names a well-formed one; `None` otherwise."""
    if code != grpc.StatusCode.FAILED_PRECONDITION:
        return None
    value = _value(metadata, LEADER_METADATA_KEY)
    if value is None or not is_valid_address(value):
        return None
    return value


def is_not_leader(code: grpc.StatusCode | None, metadata: Metadata | None) -> bool:
    """Whether a call failed as a not-leader answer, with or without a hint (an election:
    retry soon), rather than as a refusal."""
    return (
        code == grpc.StatusCode.FAILED_PRECONDITION
        and _value(metadata, NOT_LEADER_METADATA_KEY) is not None
    )


def is_shutting_down(code: grpc.StatusCode | None, metadata: Metadata | None) -> bool:
    """Whether a stream ended because its master shut down cleanly (reconnect elsewhere)."""
    return (
        code == grpc.StatusCode.UNAVAILABLE
        and _value(metadata, SHUTTING_DOWN_METADATA_KEY) is not None
    )


def dial_target(address: str) -> str:
    """`address` as gRPC dials it: without an `http://` or `https://` scheme (whether TLS is
    used is the client's choice, not the hint's)."""
    for scheme in ("http://", "https://"):
        if address.startswith(scheme):
            return address[len(scheme) :]
    return address
