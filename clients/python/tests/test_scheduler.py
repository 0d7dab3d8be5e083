"""The client against scripted masters (`fake_master.py`): leader hints followed (at most
`MAX_HINTS` in a row), re-subscription with the framework id, acknowledgements and calls kept
across a failover, suppress kept, refusals raised, a silent master dropped, and the bounds of
its inputs at the bound, one past and far past. The real masters are tested by
`cli/tests/python_client.rs`."""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Iterator

import grpc
import pytest

import wasmos_client.scheduler as scheduler_module
from fake_master import FakeMaster, update
from wasmos_client import (
    CallQueueFull,
    ConfigError,
    Disconnected,
    Event,
    FrameworkInfo,
    NoLeader,
    Scheduler,
    Subscribed,
    SubscriptionRefused,
    Update,
)
from wasmos_client import TlsOptions
from wasmos_client.connection import MAX_PEM_BYTES, MAX_TOKEN_BYTES, _read_pem, token_metadata
from wasmos_client.leader import MAX_ADDRESS_LEN, is_valid_address, leader_hint

INFO = FrameworkInfo("test", failover_timeout_seconds=60)


@pytest.fixture
def masters() -> Iterator[list[FakeMaster]]:
    made: list[FakeMaster] = []
    yield made
    for m in made:
        m.stop()


def new(masters: list[FakeMaster]) -> FakeMaster:
    m = FakeMaster()
    masters.append(m)
    return m


class Loop:
    """Iterates `s.events()` on a thread; the test reads what it yielded."""

    def __init__(self, s: Scheduler) -> None:
        self.s = s
        self.events: queue.Queue[Event | BaseException] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for e in self.s.events():
                self.events.put(e)
        except BaseException as e:  # handed to the test
            self.events.put(e)

    def next(self, timeout: float = 5.0) -> Event:
        e = self.events.get(timeout=timeout)
        if isinstance(e, BaseException):
            raise e
        return e

    def next_of(self, kind: type, timeout: float = 5.0) -> Event:
        deadline = time.monotonic() + timeout
        while True:
            e = self.next(max(0.01, deadline - time.monotonic()))
            if isinstance(e, kind):
                return e


def test_follows_the_hint_and_resubscribes_with_the_framework_id(masters: list[FakeMaster]) -> None:
    follower, a, b = new(masters), new(masters), new(masters)
    follower.follower, follower.hint = True, a.addr
    with Scheduler(follower.addr, INFO, token="secret") as s:
        loop = Loop(s)
        first = loop.next_of(Subscribed)
        assert isinstance(first, Subscribed)
        assert (first.framework_id, first.master, first.resubscribed) == ("fw-1", a.addr, False)
        assert a.subscribes[0].framework_info.id == ""
        assert ("authorization", "Bearer secret") in a.metadata
        # A dies; the follower now points at b.
        follower.hint = "http://" + b.addr
        a.abort()
        lost = loop.next_of(Disconnected)
        assert isinstance(lost, Disconnected) and lost.master == a.addr
        again = loop.next_of(Subscribed)
        assert isinstance(again, Subscribed)
        assert (again.framework_id, again.master, again.resubscribed) == ("fw-1", b.addr, True)
        assert b.subscribes[0].framework_info.id == "fw-1"
        assert b.subscribes[0].framework_info.name == "test"
        assert s.subscriptions == 2


def test_an_acknowledgement_lost_with_a_master_is_sent_again(masters: list[FakeMaster]) -> None:
    a, b = new(masters), new(masters)
    with Scheduler([a.addr, b.addr], INFO) as s:
        loop = Loop(s)
        loop.next_of(Subscribed)
        a.send(update("t1", "u1"))
        u = loop.next_of(Update)
        assert isinstance(u, Update)
        # Acknowledged while a dies: whether a got it or not, b must.
        a.abort()
        s.acknowledge(u.status)
        loop.next_of(Disconnected)
        loop.next_of(Subscribed)
        ack = b.next_call()
        assert ack.acknowledge.uuid == "u1" and ack.acknowledge.task_id == "t1"
        # b resends the update (its agent never heard of the ack): acknowledged again, and
        # not yielded twice; the next one is.
        b.send(update("t1", "u1"))
        b.send(update("t1", "u2", state=4))
        assert b.next_call().acknowledge.uuid == "u1"
        u2 = loop.next_of(Update)
        assert isinstance(u2, Update) and u2.status.uuid == "u2" and u2.status.state.terminal


def test_calls_made_between_masters_go_to_the_next_one_in_order(masters: list[FakeMaster]) -> None:
    a, b = new(masters), new(masters)
    with Scheduler([a.addr, b.addr], INFO) as s:
        loop = Loop(s)
        loop.next_of(Subscribed)
        s.suppress()
        assert a.next_call().HasField("suppress")
        a.abort()
        loop.next_of(Disconnected)
        s.kill("t9", "agent-1")
        s.reconcile(["t9", ("t8", "agent-2")])
        loop.next_of(Subscribed)
        # The suppress holds on the new master, then the calls in the order made.
        assert b.next_call().HasField("suppress")
        assert b.next_call().kill.task_id == "t9"
        rec = b.next_call().reconcile
        assert [(t.task_id, t.agent_id) for t in rec.tasks] == [("t9", ""), ("t8", "agent-2")]
        s.revive()
        assert b.next_call().HasField("revive")


def test_a_refusal_is_raised_and_not_retried(masters: list[FakeMaster]) -> None:
    a = new(masters)
    a.refuse = grpc.StatusCode.PERMISSION_DENIED
    with Scheduler(a.addr, INFO) as s:
        with pytest.raises(SubscriptionRefused) as e:
            Loop(s).next()
        assert e.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert a.addr in str(e.value) and "PERMISSION_DENIED" in str(e.value)
    assert len(a.attempts) == 1


def test_no_leader_within_the_reconnect_timeout_is_raised(masters: list[FakeMaster]) -> None:
    a = new(masters)
    a.follower = True  # an election that never ends
    started = time.monotonic()
    with Scheduler(a.addr, INFO, reconnect_timeout=0.5) as s:
        with pytest.raises(NoLeader) as e:
            Loop(s).next(timeout=10)
    assert "not the leader" in str(e.value) and a.addr in str(e.value)
    assert time.monotonic() - started < 5
    # Backing off: a handful of tries, not a spin.
    assert 2 <= len(a.attempts) <= 10, a.attempts


def test_at_most_max_hints_in_a_row_then_a_pause(masters: list[FakeMaster]) -> None:
    """Two followers pointing at each other: the client follows MAX_HINTS hints, then backs
    off before the next round (a scratch change following hints without bound fails this)."""
    f1, f2 = new(masters), new(masters)
    f1.follower, f1.hint = True, f2.addr
    f2.follower, f2.hint = True, f1.addr
    with Scheduler(f1.addr, INFO, reconnect_timeout=2.0) as s:
        with pytest.raises(NoLeader):
            Loop(s).next(timeout=10)
    tries = sorted(f1.attempts + f2.attempts)
    assert scheduler_module.MAX_HINTS == 3
    # The given master, then three hints, quickly; then the pause of the first backoff.
    assert len(tries) > 1 + scheduler_module.MAX_HINTS
    burst = tries[: 1 + scheduler_module.MAX_HINTS]
    assert burst[-1] - burst[0] < 1.5
    assert tries[1 + scheduler_module.MAX_HINTS] - burst[-1] >= 0.09


def test_a_master_silent_past_its_heartbeats_is_left(masters: list[FakeMaster]) -> None:
    a, b = new(masters), new(masters)
    a.heartbeat = 0.1
    with Scheduler([a.addr, b.addr], INFO, heartbeat_misses=3) as s:
        loop = Loop(s)
        loop.next_of(Subscribed)
        a.go_silent()
        lost = loop.next_of(Disconnected, timeout=5)
        assert isinstance(lost, Disconnected) and "no heartbeat" in lost.reason
        again = loop.next_of(Subscribed)
        assert isinstance(again, Subscribed) and again.master == b.addr


def test_teardown_ends_the_events_when_the_master_closes(masters: list[FakeMaster]) -> None:
    a = new(masters)
    with Scheduler(a.addr, INFO) as s:
        loop = Loop(s)
        loop.next_of(Subscribed)
        s.teardown()
        assert a.next_call().HasField("teardown")
        a.end()
        loop.thread.join(timeout=5)
        assert not loop.thread.is_alive()
        assert len(a.attempts) == 1


# --- bounds ------------------------------------------------------------------------------


def test_a_hint_is_followed_only_when_it_is_an_address() -> None:
    ok = grpc.StatusCode.FAILED_PRECONDITION
    name = ".".join(["b" * 63] * 3) + "." + "c" * 61  # 253 bytes
    assert is_valid_address(f"https://{name}:65535")
    assert not is_valid_address(f"https://{name}c:65535")
    scheme = "https://" + "[" + "0:" * 7 + "1" + "]:1"
    assert is_valid_address(scheme)
    for bad in [
        "x" * (MAX_ADDRESS_LEN + 1),
        "x" * 10_000 + ":1",
        "host:0",
        "host:65536",
        "host:99999999",
        "host",
        "a b:1",
        "-a:1",
        "ftp://a:1",
        "a:1/path",
        "user@a:1",
        "é:1",
        "[zz]:1",
    ]:
        assert not is_valid_address(bad), bad
        assert leader_hint(ok, [("wasmos-leader", bad)]) is None
    assert leader_hint(ok, [("wasmos-leader", "m2:5050")]) == "m2:5050"
    assert leader_hint(grpc.StatusCode.UNAVAILABLE, [("wasmos-leader", "m2:5050")]) is None


def test_the_address_length_bound_at_one_past_and_far_past() -> None:
    def address(n: int) -> str:
        # "https://" + labels + ":1" of exactly n bytes, the host within 253 bytes while
        # n <= 263.
        host_len = n - len("https://") - len(":1")
        labels, left = [], host_len
        while left > 0:
            take = min(63, left)
            labels.append("a" * take)
            left -= take + 1
        host = ".".join(labels)[:host_len]
        return f"https://{host}:1"

    assert is_valid_address(address(200))
    assert len(address(263)) == 263 and is_valid_address(address(263))
    assert not is_valid_address(address(264))  # its host is 254 bytes
    assert not is_valid_address("https://a:" + "1" * (MAX_ADDRESS_LEN - 10))


def test_the_token_is_bounded_and_printable() -> None:
    assert token_metadata("t" * MAX_TOKEN_BYTES) == (("authorization", "Bearer " + "t" * MAX_TOKEN_BYTES),)
    for bad in ["t" * (MAX_TOKEN_BYTES + 1), "t" * 1_000_000, "tok\nen", "tokén"]:
        with pytest.raises(ConfigError):
            token_metadata(bad)
    assert token_metadata("") == ()


def test_the_masters_given_are_bounded() -> None:
    many = [f"m{i}:5050" for i in range(scheduler_module.MAX_MASTERS)]
    Scheduler(many, INFO)
    with pytest.raises(ConfigError):
        Scheduler(many + ["m:5050"], INFO)
    with pytest.raises(ConfigError):
        Scheduler(",".join(many * 100), INFO)
    with pytest.raises(ConfigError):
        Scheduler("", INFO)
    with pytest.raises(ConfigError):
        Scheduler("not an address", INFO)


def test_calls_waiting_for_a_master_are_bounded() -> None:
    s = Scheduler("127.0.0.1:1", INFO)
    for _ in range(scheduler_module.MAX_PENDING_CALLS):
        s.revive()
    assert s.pending_calls() == scheduler_module.MAX_PENDING_CALLS
    with pytest.raises(CallQueueFull):
        s.kill("t")
    for _ in range(100):
        with pytest.raises(CallQueueFull):
            s.suppress()
    assert s.pending_calls() == scheduler_module.MAX_PENDING_CALLS


def test_remembered_acknowledgements_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from wasmos_client import TaskState, TaskStatus

    monkeypatch.setattr(scheduler_module, "MAX_REMEMBERED_ACKS", 4)
    s = Scheduler("127.0.0.1:1", INFO)
    for i in range(4):
        s.acknowledge(TaskStatus(f"t{i}", "a", TaskState.RUNNING, uuid=f"u{i}"))
    assert list(s._acked) == ["u0", "u1", "u2", "u3"]
    s.acknowledge(TaskStatus("t4", "a", TaskState.RUNNING, uuid="u4"))
    assert list(s._acked) == ["u1", "u2", "u3", "u4"]
    for i in range(5, 1000):
        s.acknowledge(TaskStatus(f"t{i}", "a", TaskState.RUNNING, uuid=f"u{i}"))
    assert len(s._acked) == 4
    # An update without a uuid needs no acknowledgement and is not sent.
    before = s.pending_calls()
    s.acknowledge(TaskStatus("t", "a", TaskState.RUNNING))
    assert s.pending_calls() == before


def test_tls_files_come_from_the_environment_all_or_with_a_ca(tmp_path: Path) -> None:
    assert TlsOptions.from_env({}) is None
    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n")
    only_ca = TlsOptions.from_env({"WASMOS_TLS_CA": str(ca)})
    assert only_ca is not None and only_ca.cert is None
    with pytest.raises(ConfigError, match="WASMOS_TLS_CA"):
        TlsOptions.from_env({"WASMOS_TLS_CERT": str(ca), "WASMOS_TLS_KEY": str(ca)})
    with pytest.raises(ConfigError, match="come together"):
        TlsOptions(ca, cert=ca).credentials()
    with pytest.raises(ConfigError, match="cannot read"):
        TlsOptions(tmp_path / "missing.pem").credentials()
    not_pem = tmp_path / "not.pem"
    not_pem.write_bytes(b"hello")
    with pytest.raises(ConfigError, match="no PEM"):
        TlsOptions(not_pem).credentials()


def test_a_tls_file_is_read_up_to_its_bound(tmp_path: Path) -> None:
    block = b"-----BEGIN CERTIFICATE-----\n"
    for size, ok in [
        (MAX_PEM_BYTES, True),
        (MAX_PEM_BYTES + 1, False),
        (50 * MAX_PEM_BYTES, False),
    ]:
        f = tmp_path / f"ca-{size}.pem"
        f.write_bytes(block + b"A" * (size - len(block)))
        if ok:
            assert _read_pem("CA", f).startswith(block)
        else:
            with pytest.raises(ConfigError, match="larger than"):
                _read_pem("CA", f)


def test_a_fatal_error_is_yielded_then_raised(masters: list[FakeMaster]) -> None:
    from wasmos_client import Error, FrameworkEnded, spb

    a = new(masters)
    with Scheduler(a.addr, INFO) as s:
        loop = Loop(s)
        loop.next_of(Subscribed)
        a.send(spb.SchedulerEvent(error=spb.SchedulerEvent.Error(message="gone", fatal=True)))
        e = loop.next_of(Error)
        assert isinstance(e, Error) and e.fatal and e.message == "gone"
        with pytest.raises(FrameworkEnded, match="gone"):
            loop.next()
    assert len(a.attempts) == 1


def test_close_from_another_thread_ends_the_loop_and_one_loop_at_a_time(
    masters: list[FakeMaster],
) -> None:
    a = new(masters)
    s = Scheduler(a.addr, INFO)
    loop = Loop(s)
    loop.next_of(Subscribed)
    with pytest.raises(RuntimeError, match="already"):
        next(iter(s.events()))
    s.close()
    loop.thread.join(timeout=5)
    assert not loop.thread.is_alive()
    assert len(a.attempts) == 1
