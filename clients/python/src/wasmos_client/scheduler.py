"""`Scheduler`: one external framework's session with the leading master, kept across master
failovers.

The session is the `SchedulerService.Subscribe` stream: calls go up it, events come down it.
`Scheduler.events()` opens it and yields the events; the call methods (`accept`, `decline`,
`kill`, ...) may be used from the loop over the events or from any other thread, and queue
their call for the stream.

Failover. When the stream ends (the master died, stepped down, shut down, or sent no
heartbeat for `heartbeat_misses` intervals) or a master answers that it is not the leader, the
client dials the leader it hinted (`leader.py`; at most `MAX_HINTS` hints in a row, so two
confused masters cannot make it spin), else the next master it was given, pausing with a
growing backoff only after a whole round failed, and re-subscribes with the framework id the
first subscription got. It yields `Disconnected` when a subscription is lost and `Subscribed`
(with `resubscribed=True`) when it is back; it gives up with `NoLeader` after
`reconnect_timeout` seconds without one. The framework must set a `failover_timeout_seconds`
long enough for that, or the master tears it down at the disconnect.

What survives a failover:
- Calls made while no master is subscribed wait in the queue (at most `MAX_PENDING_CALLS`) and
  go to the next subscription, after its `Subscribed`.
- Acknowledgements are not lost: the last `RESENT_ACKS` handed to a stream that broke are
  sent again on the next (the master ignores one it already has), and the client remembers
  the uuids it acknowledged (the last `MAX_REMEMBERED_ACKS`): an update the master sends again
  with a remembered uuid (agents resend until acknowledged) is acknowledged again by the
  client and not yielded twice.
- A `suppress` holds: the client suppresses again on each re-subscription until `revive`.
- Offers do not: the master rescinds them at a disconnect, so an `accept` queued with an old
  offer launches nothing (its tasks get `ERROR` updates). After `Subscribed(resubscribed=True)`
  reconcile the tasks not known to have ended (`reconcile`): the new leader answers with their
  state, `LOST` for those it never saw.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Iterator, Sequence

import grpc

from . import events as ev
from ._proto import common_pb2 as pb
from ._proto import scheduler_pb2 as spb
from .connection import TlsOptions, open_channel, token_metadata
from .errors import (
    CallQueueFull,
    ConfigError,
    FrameworkEnded,
    NoLeader,
    SubscriptionRefused,
)
from .leader import dial_target, is_not_leader, is_shutting_down, is_valid_address, leader_hint
from .types import FrameworkInfo, Offer, TaskInfo, TaskStatus

__all__ = [
    "Scheduler",
    "DEFAULT_REFUSE_SECONDS",
    "MAX_HINTS",
    "MAX_MASTERS",
    "MAX_PENDING_CALLS",
    "MAX_REMEMBERED_ACKS",
]

# How long `decline` keeps an agent's resources away from this framework, as the Rust SDK's
# `driver::decline` (120 s): with many frameworks, those that decline with Mesos's 5 s keep
# being re-offered what they do not want, and the others wait.
DEFAULT_REFUSE_SECONDS = 120.0
# Leader hints followed in a row before trying the next master given.
MAX_HINTS = 3
# Masters one client may be given (a Raft group has a handful).
MAX_MASTERS = 64
# Calls that may wait for a master; one more raises `CallQueueFull`.
MAX_PENDING_CALLS = 10_000
# Acknowledged uuids remembered to re-acknowledge an update resent after a failover.
MAX_REMEMBERED_ACKS = 65_536
# The last acknowledgements of a lost stream sent again on the next one (the master ignores
# one it already has).
RESENT_ACKS = 1024
# Pauses between rounds over the masters when none accepts the subscription.
_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 2.0
# How often the watchdog looks at a connection.
_WATCH_PERIOD = 0.1

_METHOD = "/{}/{}".format(
    spb.DESCRIPTOR.services_by_name["SchedulerService"].full_name,
    spb.DESCRIPTOR.services_by_name["SchedulerService"].methods_by_name["Subscribe"].name,
)

# Codes after which another master (or the same one later) may accept the subscription.
_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)


class _Connection:
    """One `Subscribe` RPC to one master."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.subscribed = threading.Event()
        self.closed = threading.Event()
        self.last_seen = time.monotonic()
        self.heartbeat_seconds = 0.0
        self.timed_out = ""
        self.call: grpc.RpcContext | None = None
        # The last acknowledgements handed to this stream: whether the master read them
        # before the stream broke is unknown, so the next subscription sends them again.
        self.sent_acks: collections.deque[spb.SchedulerCall] = collections.deque(
            maxlen=RESENT_ACKS
        )

    def close(self) -> None:
        self.closed.set()
        call = self.call
        if call is not None:
            call.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs


class Scheduler:
    """An external framework scheduler's session with the leading master of `masters`.

    `masters` is `"host:port[,host:port...]"` or a list of addresses (every master of the
    Raft group, or some: hints lead to the others). `token` is the bearer token (default
    `WASMOS_TOKEN`); `tls` the TLS files (default `TlsOptions.from_env()`, plain text when the
    `WASMOS_TLS_*` variables are unset). `reconnect_timeout` (seconds, default 60) bounds the
    search for a leader after a subscription is lost, or before the first; `heartbeat_misses`
    (default 3) heartbeat intervals without any event count as a lost master;
    `subscribe_timeout` (seconds, default 10) bounds one master's answer to a subscription.

    Use it as a context manager (or call `close`) so the stream is closed when done; a
    framework that is finished should `teardown` first, or the master keeps it for its
    failover timeout.
    """

    def __init__(
        self,
        masters: str | Sequence[str],
        framework: FrameworkInfo,
        *,
        token: str | None = None,
        tls: TlsOptions | None = None,
        reconnect_timeout: float = 60.0,
        heartbeat_misses: int = 3,
        subscribe_timeout: float = 10.0,
    ) -> None:
        self._masters = _master_list(masters)
        self._framework = framework
        self._framework_id = framework.id
        self._metadata = token_metadata(token)
        self._tls = tls if tls is not None else TlsOptions.from_env()
        if not reconnect_timeout > 0 or not subscribe_timeout > 0:
            raise ConfigError("reconnect_timeout and subscribe_timeout must be more than 0 s")
        if heartbeat_misses < 1:
            raise ConfigError("heartbeat_misses must be at least 1")
        self._reconnect_timeout = reconnect_timeout
        self._heartbeat_misses = heartbeat_misses
        self._subscribe_timeout = subscribe_timeout
        self._cond = threading.Condition()
        self._outbox: collections.deque[spb.SchedulerCall] = collections.deque()
        self._acked: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._suppressed = False
        self._resend: list[spb.SchedulerCall] = []
        self._subscriptions = 0
        self._conn: _Connection | None = None
        self._closed = False
        self._tearing_down = False
        self._iterating = False

    # --- what the session knows -------------------------------------------------------

    @property
    def framework_id(self) -> str:
        """The framework's id: empty until the first `Subscribed`, then fixed."""
        return self._framework_id

    @property
    def master(self) -> str | None:
        """The master currently subscribed to, or `None` between subscriptions."""
        conn = self._conn
        return conn.target if conn is not None and conn.subscribed.is_set() else None

    @property
    def subscriptions(self) -> int:
        """How many times the framework has subscribed (1 + the re-subscriptions)."""
        return self._subscriptions

    def pending_calls(self) -> int:
        """Calls waiting for a master."""
        with self._cond:
            return len(self._outbox)

    # --- the event stream -------------------------------------------------------------

    def events(self) -> Iterator[ev.Event]:
        """Subscribes and yields the framework's events until `close`, a `teardown` answered
        by the master, or an error that retrying cannot fix (`SubscriptionRefused`,
        `FrameworkEnded`, `NoLeader`). One loop at a time."""
        with self._cond:
            if self._iterating:
                raise RuntimeError("events() is already being iterated for this framework")
            self._iterating = True
        try:
            yield from self._sessions()
        finally:
            with self._cond:
                self._iterating = False

    def _sessions(self) -> Iterator[ev.Event]:
        index = 0
        target = self._masters[0]
        hints = 0
        failures_in_round = 0
        backoff = _BACKOFF_FIRST
        searching_since = time.monotonic()
        last_reason = "no master tried yet"
        while not self._closed:
            conn = _Connection(target)
            next_hint: str | None = None
            try:
                yield from self._session(conn)
                reason = "the master ended the stream"
            except grpc.RpcError as e:
                reason, next_hint = self._judge(conn, e)
            finally:
                conn.close()
                with self._cond:
                    self._conn = None
                    self._cond.notify_all()
            if self._closed or (self._tearing_down and conn.subscribed.is_set()):
                return
            last_reason = f"{target}: {reason}"
            if conn.subscribed.is_set():
                self._resend = list(conn.sent_acks)
                yield ev.Disconnected(target, reason)
                searching_since = time.monotonic()
                hints, failures_in_round, backoff = 0, 0, _BACKOFF_FIRST
            if time.monotonic() - searching_since > self._reconnect_timeout:
                raise NoLeader(
                    f"no master among {','.join(self._masters)} accepted the subscription of "
                    f"framework {self._describe()} within {self._reconnect_timeout:g} s; "
                    f"last: {last_reason}. Check that a majority of the masters runs."
                )
            if next_hint is not None and hints < MAX_HINTS:
                hints += 1
                target = dial_target(next_hint)
                continue
            hints = 0
            if not conn.subscribed.is_set():
                failures_in_round += 1
            if failures_in_round >= len(self._masters):
                failures_in_round = 0
                time.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            if target in self._masters:
                index = self._masters.index(target)
            index = (index + 1) % len(self._masters)
            target = self._masters[index]

    def _judge(self, conn: _Connection, e: grpc.RpcError) -> tuple[str, str | None]:
        """Why `conn` failed with `e`, and the leader it hinted; raises when retrying cannot
        help."""
        code: grpc.StatusCode | None = None
        details = ""
        metadata: list[tuple[str, str | bytes]] = []
        if isinstance(e, grpc.Call):
            code = e.code()
            details = e.details() or ""
            metadata = list(e.trailing_metadata() or ()) + list(e.initial_metadata() or ())
        if conn.timed_out:
            return conn.timed_out, None
        hint = leader_hint(code, metadata)
        if hint is not None:
            return f"not the leader; the leader is {hint}", hint
        if is_not_leader(code, metadata):
            return "not the leader, and the leader is unknown (an election)", None
        if is_shutting_down(code, metadata):
            return "the master is shutting down", None
        name = code.name if code is not None else "?"
        ended = self._tearing_down and conn.subscribed.is_set()
        if code in _RETRYABLE or code is None or self._closed or ended:
            return f"{name}: {details}", None
        raise SubscriptionRefused(
            f"the master at {conn.target} refused framework {self._describe()}: "
            f"{name}: {details}",
            code,
        ) from e

    def _session(self, conn: _Connection) -> Iterator[ev.Event]:
        channel = open_channel(conn.target, self._tls)
        try:
            subscribe = channel.stream_stream(
                _METHOD,
                request_serializer=spb.SchedulerCall.SerializeToString,
                response_deserializer=spb.SchedulerEvent.FromString,
            )
            with self._cond:
                if self._closed:
                    return
                self._conn = conn
            responses = subscribe(self._requests(conn), metadata=self._metadata)
            conn.call = responses
            watchdog = threading.Thread(
                target=self._watch, args=(conn,), name="wasmos-heartbeat-watch", daemon=True
            )
            watchdog.start()
            for message in responses:
                conn.last_seen = time.monotonic()
                event = self._receive(conn, message)
                if isinstance(event, ev.Error) and event.fatal and self._tearing_down:
                    # The master's answer to `teardown`: the framework is removed.
                    return
                if event is not None:
                    yield event
                    # Time spent in the caller's loop is not the master's silence.
                    conn.last_seen = time.monotonic()
                    if isinstance(event, ev.Error) and event.fatal:
                        raise FrameworkEnded(
                            f"the master at {conn.target} ended framework "
                            f"{self._describe()}: {event.message}"
                        )
        finally:
            conn.close()
            channel.close()

    def _receive(self, conn: _Connection, message: spb.SchedulerEvent) -> ev.Event | None:
        kind = message.WhichOneof("event")
        if kind == "subscribed":
            self._framework_id = message.subscribed.framework_id
            conn.heartbeat_seconds = message.subscribed.heartbeat_interval_seconds
            resubscribed = self._subscriptions > 0
            self._subscriptions += 1
            with self._cond:
                # First what the framework had said on the lost stream: its last
                # acknowledgements and its suppression.
                self._outbox.extendleft(reversed(self._resend))
                self._resend = []
                if self._suppressed:
                    self._outbox.appendleft(_call(suppress=spb.SchedulerCall.Suppress()))
                conn.subscribed.set()
                self._cond.notify_all()
            return ev.from_proto(message, conn.target, resubscribed)
        if kind == "update" and message.update.status.uuid in self._acked:
            # Acknowledged before, the acknowledgement lost with a master: again, silently.
            self._push(_ack_call(message.update.status.agent_id, message.update.status.task_id,
                                 message.update.status.uuid), internal=True)
            return None
        return ev.from_proto(message, conn.target, False)

    def _requests(self, conn: _Connection) -> Iterator[spb.SchedulerCall]:
        """The calls of one subscription: `subscribe`, then (once subscribed) the queue."""
        info = self._framework.to_proto()
        info.id = self._framework_id
        yield _call(subscribe=spb.SchedulerCall.Subscribe(framework_info=info))
        while not conn.subscribed.wait(_WATCH_PERIOD):
            if conn.closed.is_set():
                return
        while True:
            with self._cond:
                while not self._outbox and not conn.closed.is_set():
                    self._cond.wait(0.5)
                if conn.closed.is_set():
                    return
                call = self._outbox.popleft()
                if call.HasField("acknowledge"):
                    conn.sent_acks.append(call)
            yield call

    def _watch(self, conn: _Connection) -> None:
        """Cancels `conn` when its master is silent too long: no `Subscribed` within
        `subscribe_timeout`, or no event for `heartbeat_misses` heartbeat intervals."""
        while not conn.closed.wait(_WATCH_PERIOD):
            silent = time.monotonic() - conn.last_seen
            if not conn.subscribed.is_set():
                if silent > self._subscribe_timeout:
                    conn.timed_out = (
                        f"no answer to the subscription within {self._subscribe_timeout:g} s"
                    )
                    break
            elif conn.heartbeat_seconds > 0:
                limit = self._heartbeat_misses * conn.heartbeat_seconds
                if silent > limit:
                    conn.timed_out = f"no heartbeat for {silent:.1f} s (limit {limit:g} s)"
                    break
        if conn.timed_out:
            conn.close()

    # --- calls ------------------------------------------------------------------------

    def accept(
        self,
        offers: Sequence[Offer | str],
        tasks: Sequence[TaskInfo],
        refuse_seconds: float | None = None,
    ) -> None:
        """Launches `tasks` on `offers` (all of one agent). What the tasks do not use returns
        to the pool, refused to this framework for `refuse_seconds` (`None`: the master's
        default, 5 s; 0: no filter)."""
        filters = pb.Filters()
        if refuse_seconds is not None:
            filters.refuse_seconds = refuse_seconds
        self._push(
            _call(
                accept=spb.SchedulerCall.Accept(
                    offer_ids=_offer_ids(offers),
                    launches=[t.to_proto() for t in tasks],
                    filters=filters if refuse_seconds is not None else None,
                )
            )
        )

    def decline(
        self, offers: Sequence[Offer | str], refuse_seconds: float = DEFAULT_REFUSE_SECONDS
    ) -> None:
        """Declines `offers`; their agents are not offered to this framework again for
        `refuse_seconds` (default `DEFAULT_REFUSE_SECONDS`, 120 s; the master raises less
        than 1 s to 1 s). `revive` lifts the filters."""
        self._push(
            _call(
                decline=spb.SchedulerCall.Decline(
                    offer_ids=_offer_ids(offers),
                    filters=pb.Filters(refuse_seconds=refuse_seconds),
                )
            )
        )

    def kill(self, task_id: str, agent_id: str = "") -> None:
        """Asks for `task_id` to be killed; a `KILLED` update follows (`LOST` for a task the
        master does not know)."""
        self._push(_call(kill=spb.SchedulerCall.Kill(task_id=task_id, agent_id=agent_id)))

    def revive(self) -> None:
        """Clears this framework's filters and resumes offers after `suppress`."""
        with self._cond:
            self._suppressed = False
        self._push(_call(revive=spb.SchedulerCall.Revive()))

    def suppress(self) -> None:
        """Stops offers to this framework until `revive` (kept across re-subscriptions)."""
        with self._cond:
            self._suppressed = True
        self._push(_call(suppress=spb.SchedulerCall.Suppress()))

    def reconcile(self, tasks: Sequence[str | tuple[str, str]] = ()) -> None:
        """Asks for the latest state of `tasks` (ids, or `(task_id, agent_id)` pairs); with
        none, of every task the master knows of this framework. Each answer is an `Update`."""
        listed = [
            spb.SchedulerCall.Reconcile.Task(task_id=t, agent_id="")
            if isinstance(t, str)
            else spb.SchedulerCall.Reconcile.Task(task_id=t[0], agent_id=t[1])
            for t in tasks
        ]
        self._push(_call(reconcile=spb.SchedulerCall.Reconcile(tasks=listed)))

    def acknowledge(self, status: TaskStatus) -> None:
        """Acknowledges `status` (nothing to do when it has no uuid): the master stops
        resending it and the agent sends the task's next update."""
        if not status.uuid:
            return
        with self._cond:
            self._acked[status.uuid] = None
            self._acked.move_to_end(status.uuid)
            while len(self._acked) > MAX_REMEMBERED_ACKS:
                self._acked.popitem(last=False)
        self._push(_ack_call(status.agent_id, status.task_id, status.uuid))

    def message(self, agent_id: str, executor_id: str, data: bytes) -> None:
        """Sends `data` (at most 4 MiB) to one of the framework's executors."""
        self._push(
            _call(
                message=spb.SchedulerCall.FrameworkMessage(
                    agent_id=agent_id, executor_id=executor_id, data=data
                )
            )
        )

    def teardown(self) -> None:
        """Ends the framework: its tasks are killed and it is removed. `events()` ends when
        the master closes the stream."""
        self._tearing_down = True
        self._push(_call(teardown=spb.SchedulerCall.Teardown()))

    def close(self) -> None:
        """Closes the stream (the framework stays for its failover timeout unless torn
        down); `events()` ends."""
        with self._cond:
            self._closed = True
            conn = self._conn
            self._cond.notify_all()
        if conn is not None:
            conn.close()

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers ----------------------------------------------------------------------

    def _push(self, call: spb.SchedulerCall, internal: bool = False) -> None:
        with self._cond:
            if not internal and len(self._outbox) >= MAX_PENDING_CALLS:
                raise CallQueueFull(
                    f"{len(self._outbox)} calls of framework {self._describe()} already wait "
                    f"for a master (at most {MAX_PENDING_CALLS}); is events() being iterated?"
                )
            self._outbox.append(call)
            self._cond.notify_all()

    def _describe(self) -> str:
        return self._framework_id or repr(self._framework.name)


def _call(**kw: object) -> spb.SchedulerCall:
    return spb.SchedulerCall(**kw)  # type: ignore[arg-type]


def _ack_call(agent_id: str, task_id: str, uuid: str) -> spb.SchedulerCall:
    return _call(
        acknowledge=spb.SchedulerCall.Acknowledge(agent_id=agent_id, task_id=task_id, uuid=uuid)
    )


def _offer_ids(offers: Sequence[Offer | str]) -> list[str]:
    return [o if isinstance(o, str) else o.id for o in offers]


def _master_list(masters: str | Sequence[str]) -> list[str]:
    items = masters.split(",") if isinstance(masters, str) else list(masters)
    listed = [m.strip() for m in items if m.strip()]
    if not listed:
        raise ConfigError("no master address given (host:port[,host:port...])")
    if len(listed) > MAX_MASTERS:
        raise ConfigError(f"{len(listed)} master addresses given; at most {MAX_MASTERS}")
    for m in listed:
        if not is_valid_address(m):
            raise ConfigError(f"{m[:80]!r} is not a master address (host:port)")
    return [dial_target(m) for m in listed]
