"""wasmos-client: a typed Python client of the wasmos master's `SchedulerService`, for
framework schedulers that run outside the master (the master hosts Wasm ones itself).

    from wasmos_client import Scheduler, FrameworkInfo, Offers, Update

    with Scheduler("10.0.0.1:5050,10.0.0.2:5050", FrameworkInfo("mine", failover_timeout_seconds=300)) as s:
        for event in s.events():
            ...

`Scheduler` follows the leader across failovers (see `scheduler.py`). The generated protobuf
messages are `wasmos_client.pb` (common and operator types) and `wasmos_client.spb` (the
scheduler API's calls and events).
"""

from ._proto import common_pb2 as pb
from ._proto import scheduler_pb2 as spb
from .connection import MASTER_SERVER_NAME, TlsOptions
from .errors import (
    CallQueueFull,
    ConfigError,
    FrameworkEnded,
    NoLeader,
    SchedulerError,
    SubscriptionRefused,
)
from .events import (
    Disconnected,
    Error,
    Event,
    Failure,
    FrameworkMessage,
    Offers,
    Rescind,
    Subscribed,
    Update,
)
from .scheduler import (
    DEFAULT_REFUSE_SECONDS,
    MAX_HINTS,
    MAX_PENDING_CALLS,
    MAX_REMEMBERED_ACKS,
    Scheduler,
)
from .types import (
    TERMINAL_STATES,
    CommandTask,
    FrameworkInfo,
    Offer,
    Resources,
    TaskInfo,
    TaskState,
    TaskStatus,
    WasmTask,
)

__all__ = [
    "pb",
    "spb",
    "MASTER_SERVER_NAME",
    "TlsOptions",
    "CallQueueFull",
    "ConfigError",
    "FrameworkEnded",
    "NoLeader",
    "SchedulerError",
    "SubscriptionRefused",
    "Disconnected",
    "Error",
    "Event",
    "Failure",
    "FrameworkMessage",
    "Offers",
    "Rescind",
    "Subscribed",
    "Update",
    "DEFAULT_REFUSE_SECONDS",
    "MAX_HINTS",
    "MAX_PENDING_CALLS",
    "MAX_REMEMBERED_ACKS",
    "Scheduler",
    "TERMINAL_STATES",
    "CommandTask",
    "FrameworkInfo",
    "Offer",
    "Resources",
    "TaskInfo",
    "TaskState",
    "TaskStatus",
    "WasmTask",
]
