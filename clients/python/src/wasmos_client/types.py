"""The scheduler API's records as typed, immutable Python values, and their conversion to and
from the generated protobuf messages (`_proto/`).

They mirror `api/proto/wasmos/v1/common.proto` field for field, with Python names and types:
`TaskState` is an `IntEnum` of the wire values, resources are exact integers (millicpus, MiB),
optional fields are `None` when unset. What is not here (an operator call, a field added to the
proto later) is still reachable through the generated messages in `wasmos_client.pb`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ._proto import common_pb2 as pb

__all__ = [
    "TaskState",
    "Resources",
    "Offer",
    "TaskStatus",
    "CommandTask",
    "WasmTask",
    "TaskInfo",
    "FrameworkInfo",
    "TERMINAL_STATES",
]


class TaskState(enum.IntEnum):
    """A task's state, as in Mesos (`TASK_STATE_RUNNING` is `TASK_RUNNING`)."""

    UNSPECIFIED = pb.TASK_STATE_UNSPECIFIED
    STAGING = pb.TASK_STATE_STAGING
    STARTING = pb.TASK_STATE_STARTING
    RUNNING = pb.TASK_STATE_RUNNING
    FINISHED = pb.TASK_STATE_FINISHED
    FAILED = pb.TASK_STATE_FAILED
    KILLED = pb.TASK_STATE_KILLED
    LOST = pb.TASK_STATE_LOST
    ERROR = pb.TASK_STATE_ERROR
    UNREACHABLE = pb.TASK_STATE_UNREACHABLE

    @property
    def terminal(self) -> bool:
        """Whether the task has ended (no further update but a reconciliation answer)."""
        return self in TERMINAL_STATES

    @classmethod
    def of(cls, value: int) -> TaskState:
        """The state of a wire value; one this client does not know (a newer master's) reads
        as `UNSPECIFIED`."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNSPECIFIED


TERMINAL_STATES = frozenset(
    {TaskState.FINISHED, TaskState.FAILED, TaskState.KILLED, TaskState.LOST, TaskState.ERROR}
)


@dataclass(frozen=True)
class Resources:
    """An amount of resources: CPU in thousandths of a core, memory and disk in MiB."""

    millicpus: int = 0
    mem_mb: int = 0
    disk_mb: int = 0

    @classmethod
    def of(cls, cpus: float = 0.0, mem_mb: int = 0, disk_mb: int = 0) -> Resources:
        """Resources of `cpus` cores (rounded to a thousandth), `mem_mb` and `disk_mb` MiB."""
        return cls(round(cpus * 1000), mem_mb, disk_mb)

    def fits_in(self, other: Resources) -> bool:
        """Whether every amount is at most `other`'s."""
        return (
            self.millicpus <= other.millicpus
            and self.mem_mb <= other.mem_mb
            and self.disk_mb <= other.disk_mb
        )

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.millicpus + other.millicpus,
            self.mem_mb + other.mem_mb,
            self.disk_mb + other.disk_mb,
        )

    def __sub__(self, other: Resources) -> Resources:
        """What is left of `self` after `other`; never below zero."""
        return Resources(
            max(0, self.millicpus - other.millicpus),
            max(0, self.mem_mb - other.mem_mb),
            max(0, self.disk_mb - other.disk_mb),
        )

    def to_proto(self) -> pb.Resources:
        return pb.Resources(millicpus=self.millicpus, mem_mb=self.mem_mb, disk_mb=self.disk_mb)

    @classmethod
    def from_proto(cls, m: pb.Resources) -> Resources:
        return cls(m.millicpus, m.mem_mb, m.disk_mb)


@dataclass(frozen=True)
class Offer:
    """One agent's resources offered to this framework; answer it with `Scheduler.accept` or
    `Scheduler.decline`."""

    id: str
    agent_id: str
    hostname: str
    resources: Resources
    attributes: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_proto(cls, m: pb.Offer) -> Offer:
        return cls(
            id=m.id,
            agent_id=m.agent_id,
            hostname=m.hostname,
            resources=Resources.from_proto(m.resources),
            attributes={a.key: a.value for a in m.attributes},
        )


@dataclass(frozen=True)
class TaskStatus:
    """A change in a task's state. Acknowledge it (`Scheduler.acknowledge`) when `uuid` is
    set: the master resends it until then."""

    task_id: str
    agent_id: str
    state: TaskState
    message: str = ""
    data: bytes | None = None
    uuid: str = ""
    reason: str = ""

    @classmethod
    def from_proto(cls, m: pb.TaskStatus) -> TaskStatus:
        return cls(
            task_id=m.task_id,
            agent_id=m.agent_id,
            state=TaskState.of(m.state),
            message=m.message,
            data=m.data if m.HasField("data") else None,
            uuid=m.uuid,
            reason=m.reason,
        )


@dataclass(frozen=True)
class CommandTask:
    """A native command run in a cgroup on the agent (only for roles the master allows:
    `wasmos master --command-task-roles`). `argv[0]` is looked up on the agent's PATH; the
    environment is `env` alone."""

    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)

    def to_proto(self) -> pb.CommandTask:
        return pb.CommandTask(
            argv=list(self.argv),
            env=[pb.Attribute(key=k, value=v) for k, v in self.env.items()],
        )


@dataclass(frozen=True)
class WasmTask:
    """A task for the framework's own Wasm executor (its component's `executor` export)."""

    executor_id: str
    payload: bytes = b""
    timeout_seconds: float | None = None
    fuel: int | None = None

    def to_proto(self) -> pb.WasmTask:
        m = pb.WasmTask(executor_id=self.executor_id, payload=self.payload)
        if self.timeout_seconds is not None:
            m.timeout_seconds = self.timeout_seconds
        if self.fuel is not None:
            m.fuel = self.fuel
        return m


@dataclass(frozen=True)
class TaskInfo:
    """A task to launch on an offer's agent: exactly one of a command or a Wasm task."""

    task_id: str
    agent_id: str
    resources: Resources
    kind: CommandTask | WasmTask
    name: str = ""

    def to_proto(self) -> pb.TaskInfo:
        m = pb.TaskInfo(
            task_id=self.task_id,
            name=self.name,
            agent_id=self.agent_id,
            resources=self.resources.to_proto(),
        )
        if isinstance(self.kind, CommandTask):
            m.command.CopyFrom(self.kind.to_proto())
        else:
            m.wasm.CopyFrom(self.kind.to_proto())
        return m


@dataclass(frozen=True)
class FrameworkInfo:
    """What a framework says about itself when it subscribes.

    `failover_timeout_seconds` is how long the master keeps the framework and its tasks while
    its scheduler is away: the client re-subscribes within it after losing its master. The
    default, 0 (as in Mesos), tears the framework down at the first disconnect, so a framework
    that should survive a master failover must set it. `id` is empty for a new framework and
    set to re-subscribe one (the client fills it in after its first subscription)."""

    name: str
    role: str = "default"
    failover_timeout_seconds: float = 0.0
    id: str = ""
    principal: str = ""
    component_sha256: str = ""
    wasm_task_timeout_seconds: float | None = None
    wasm_task_fuel: int | None = None

    def to_proto(self) -> pb.FrameworkInfo:
        m = pb.FrameworkInfo(
            id=self.id,
            name=self.name,
            role=self.role,
            principal=self.principal,
            failover_timeout_seconds=self.failover_timeout_seconds,
            component_sha256=self.component_sha256,
        )
        if self.wasm_task_timeout_seconds is not None:
            m.wasm_task_timeout_seconds = self.wasm_task_timeout_seconds
        if self.wasm_task_fuel is not None:
            m.wasm_task_fuel = self.wasm_task_fuel
        return m
