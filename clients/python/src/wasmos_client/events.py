"""What `Scheduler.events()` yields: the master's events as typed values, plus the client's
own `Disconnected` (its master was lost; it is reconnecting).

Heartbeats are not yielded: the client watches them itself (a master silent for a few
heartbeat intervals is taken as lost). An event of a kind this client does not know (from a
newer master) is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

from ._proto import scheduler_pb2 as spb
from .types import Offer, TaskStatus

__all__ = [
    "Subscribed",
    "Offers",
    "Rescind",
    "Update",
    "Failure",
    "Error",
    "FrameworkMessage",
    "Disconnected",
    "Event",
    "from_proto",
]


@dataclass(frozen=True)
class Subscribed:
    """The master accepted the subscription. `resubscribed` is true for every subscription
    after the first (a failover): the framework must then reconcile its tasks
    (`Scheduler.reconcile`), since updates the old leader made may be lost with it."""

    framework_id: str
    heartbeat_interval_seconds: float
    master: str
    resubscribed: bool


@dataclass(frozen=True)
class Offers:
    """New offers; answer each with `accept` or `decline`."""

    offers: Sequence[Offer]


@dataclass(frozen=True)
class Rescind:
    """An offer is no longer valid; its resources went back to the pool."""

    offer_id: str


@dataclass(frozen=True)
class Update:
    """A task changed state (or a reconciliation answer); acknowledge it if `status.uuid` is
    set."""

    status: TaskStatus


@dataclass(frozen=True)
class Failure:
    """An agent (or one executor, when `executor_id` is set) was lost."""

    agent_id: str
    executor_id: str
    message: str


@dataclass(frozen=True)
class Error:
    """The master refused a call. A fatal one ends the subscription: `events()` raises
    `FrameworkEnded` after yielding it."""

    message: str
    fatal: bool


@dataclass(frozen=True)
class FrameworkMessage:
    """Bytes one of the framework's executors sent."""

    agent_id: str
    executor_id: str
    data: bytes


@dataclass(frozen=True)
class Disconnected:
    """The subscription to `master` ended (`reason` says how); the client is looking for the
    leader to re-subscribe. Offers of the old subscription are void."""

    master: str
    reason: str


Event = Union[Subscribed, Offers, Rescind, Update, Failure, Error, FrameworkMessage, Disconnected]


def from_proto(m: spb.SchedulerEvent, master: str, resubscribed: bool) -> Event | None:
    """The typed event of `m` (received from `master`); `None` for a heartbeat or a kind this
    client does not know."""
    kind = m.WhichOneof("event")
    if kind == "subscribed":
        return Subscribed(
            m.subscribed.framework_id,
            m.subscribed.heartbeat_interval_seconds,
            master,
            resubscribed,
        )
    if kind == "offers":
        return Offers([Offer.from_proto(o) for o in m.offers.offers])
    if kind == "rescind":
        return Rescind(m.rescind.offer_id)
    if kind == "update":
        return Update(TaskStatus.from_proto(m.update.status))
    if kind == "failure":
        f = m.failure
        return Failure(f.agent_id, f.executor_id, f.message)
    if kind == "error":
        return Error(m.error.message, m.error.fatal)
    if kind == "message":
        fm = m.message
        return FrameworkMessage(fm.agent_id, fm.executor_id, fm.data)
    return None
