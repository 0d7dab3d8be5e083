"""What the client raises. Every error says what failed, where, and what to do.

- `ConfigError`: the client's own inputs are unusable (a token, a TLS file, an address).
- `SubscriptionRefused`: a master refused the subscription for a reason retrying will not fix
  (a bad or revoked token, a role the token may not use, a framework id unknown or torn down);
  `code` is the gRPC status code.
- `NoLeader`: no master among those given (and hinted) accepted the subscription within the
  client's `reconnect_timeout`.
- `FrameworkEnded`: the master ended the framework's session for good (a fatal error event,
  or the framework was torn down).
- `CallQueueFull`: more calls wait for a master than `MAX_PENDING_CALLS`.
"""

from __future__ import annotations

import grpc

__all__ = [
    "SchedulerError",
    "ConfigError",
    "SubscriptionRefused",
    "NoLeader",
    "FrameworkEnded",
    "CallQueueFull",
]


class SchedulerError(Exception):
    """The base of every error of this package."""


class ConfigError(SchedulerError, ValueError):
    """The client's own inputs are unusable."""


class SubscriptionRefused(SchedulerError):
    """A master refused the subscription; retrying will not help."""

    def __init__(self, message: str, code: grpc.StatusCode | None) -> None:
        super().__init__(message)
        self.code = code


class NoLeader(SchedulerError):
    """No master accepted the subscription in time."""


class FrameworkEnded(SchedulerError):
    """The master ended the framework's session for good."""


class CallQueueFull(SchedulerError):
    """Too many calls wait for a master."""
