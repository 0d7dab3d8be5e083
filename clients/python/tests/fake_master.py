"""An in-process stand-in for a master's `SchedulerService` (the generated servicer), scripted
by the tests: a follower that answers not-leader (with or without a hint), a leader that
accepts the subscription and then sends what the test queues, ends or aborts the stream, or
falls silent; it records every call it receives."""

from __future__ import annotations

import queue
import threading
import time
from concurrent import futures
from typing import Any, Iterator

import grpc

from wasmos_client import spb
from wasmos_client._proto import scheduler_pb2_grpc


class FakeMaster(scheduler_pb2_grpc.SchedulerServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        scheduler_pb2_grpc.add_SchedulerServiceServicer_to_server(self, self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.addr = f"127.0.0.1:{port}"
        # Set to answer as a follower: the hint (None: the leader is unknown).
        self.follower = False
        self.hint: str | None = None
        # Set to refuse every subscription with this code.
        self.refuse: grpc.StatusCode | None = None
        self.framework_id = "fw-1"
        self.heartbeat = 5.0
        self.attempts: list[float] = []
        self.subscribes: list[spb.SchedulerCall.Subscribe] = []
        self.received: queue.Queue[spb.SchedulerCall] = queue.Queue()
        self.outgoing: queue.Queue[Any] = queue.Queue()
        self.metadata: list[tuple[str, str]] = []
        self.server.start()

    def stop(self) -> None:
        self.server.stop(grace=None)

    # What a test queues for the current (or next) subscription.
    def send(self, event: spb.SchedulerEvent) -> None:
        self.outgoing.put(event)

    def abort(self, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        self.outgoing.put(code)

    def end(self) -> None:
        self.outgoing.put("end")

    def go_silent(self) -> None:
        self.outgoing.put("silent")

    def next_call(self, timeout: float = 5.0) -> spb.SchedulerCall:
        return self.received.get(timeout=timeout)

    def Subscribe(
        self, request_iterator: Iterator[spb.SchedulerCall], context: grpc.ServicerContext
    ) -> Iterator[spb.SchedulerEvent]:
        self.attempts.append(time.monotonic())
        self.metadata = [(k, str(v)) for k, v in context.invocation_metadata()]
        if self.follower:
            md: list[tuple[str, str]] = [("wasmos-not-leader", "1")]
            if self.hint is not None:
                md.append(("wasmos-leader", self.hint))
            context.set_trailing_metadata(md)
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "this master is not the leader")
        if self.refuse is not None:
            context.abort(self.refuse, "refused by the test")
        first = next(request_iterator)
        self.subscribes.append(first.subscribe)
        fid = first.subscribe.framework_info.id or self.framework_id

        def pump() -> None:
            try:
                for call in request_iterator:
                    self.received.put(call)
            except grpc.RpcError:
                pass

        threading.Thread(target=pump, daemon=True).start()
        yield spb.SchedulerEvent(
            subscribed=spb.SchedulerEvent.Subscribed(
                framework_id=fid, heartbeat_interval_seconds=self.heartbeat
            )
        )
        silent = False
        while context.is_active():
            try:
                item = self.outgoing.get(timeout=0.05)
            except queue.Empty:
                continue
            if silent:
                continue
            if isinstance(item, spb.SchedulerEvent):
                yield item
            elif item == "end":
                return
            elif item == "silent":
                silent = True
            else:
                context.abort(item, "the test ended this stream")


def update(task_id: str, uuid: str, state: int = 3) -> spb.SchedulerEvent:
    from wasmos_client import pb

    return spb.SchedulerEvent(
        update=spb.SchedulerEvent.Update(
            status=pb.TaskStatus(task_id=task_id, agent_id="agent-1", state=state, uuid=uuid)
        )
    )
