"""What a scheduler can ask of the master: thin wrappers over the imported
``wasmos:framework/driver`` interface, with the SDK's defaults.

Only the scheduler half may call these; from an executor the host refuses them. Calls queue
their effect; the master applies them when the callback returns, in order.
"""

from typing import Iterable, List, Optional

from componentize_py_types import Err, Ok
from wit_world.imports import driver as _imports
from wit_world.imports.types import Filters, FrameworkProgress, LogLevel, Resources, TaskInfo

from .helpers import refuse

DEFAULT_REFUSE_SECONDS = 120.0
"""How long :func:`decline` refuses the declined agents: 120 s, not Mesos's 5 s. With many
frameworks a short refusal makes them take turns declining the same agents and starve each
other; decline for longer, :func:`suppress` while idle and :func:`revive` when there is work."""


class DriverError(Exception):
    """A driver call the master refused; ``str(e)`` is the master's reason (which cap was hit,
    which offer was unknown, ...)."""


def _call(f, *args):
    try:
        return f(*args)
    except Err as e:
        raise DriverError(str(e.value)) from None


def launch(offer_ids: Iterable[str], tasks: Iterable[TaskInfo]) -> None:
    """Launches ``tasks`` on the offers ``offer_ids`` (all of one agent). What the tasks do not
    use returns to the pool. Raises :class:`DriverError`, launching nothing, if an offer is
    unknown or stale, the tasks do not fit, a task id is reused, the role forbids a kind, or
    there are more than 1,024 tasks or 256 offer ids."""
    _call(_imports.launch, list(offer_ids), list(tasks))


def decline(offer_ids: Iterable[str], refuse_seconds: float = DEFAULT_REFUSE_SECONDS) -> None:
    """Declines offers; their agents are not offered to this framework again for
    ``refuse_seconds`` (by default :data:`DEFAULT_REFUSE_SECONDS`, 120 s; the master raises
    anything under 1 s to 1 s and caps it at a year)."""
    _imports.decline(list(offer_ids), refuse(refuse_seconds))


def decline_with(offer_ids: Iterable[str], filters: Filters) -> None:
    """Declines offers with explicit filters."""
    _imports.decline(list(offer_ids), filters)


def kill(task_id: str) -> None:
    """Asks the agent to kill a task; a ``killed`` status follows."""
    _imports.kill(task_id)


def revive() -> None:
    """Clears this framework's filters and resumes offers after :func:`suppress`."""
    _imports.revive()


def suppress() -> None:
    """Stops offers to this framework until :func:`revive`. Call it whenever there is nothing
    to launch: an idle framework that keeps receiving offers delays everyone else's."""
    _imports.suppress()


def reconcile(task_ids: Iterable[str]) -> None:
    """Asks for the latest state of the given tasks; answers arrive as ``status_update``."""
    _imports.reconcile(list(task_ids))


def reconcile_all() -> None:
    """Asks for the latest state of every task the master knows for this framework (implicit
    reconciliation). Worth doing in ``__init__``, which also runs after a master failover."""
    _imports.reconcile([])


def state_get(key: str) -> Optional[bytes]:
    """Reads a value stored with :func:`state_put`, or ``None``."""
    return _imports.state_get(key)


def state_put(key: str, value: bytes) -> None:
    """Stores a value durably (replicated with the master's registry). Keys and values are
    size-capped; :class:`DriverError` says which cap was hit."""
    _call(_imports.state_put, key, bytes(value))


def finish(result: Optional[str] = None, *, error: Optional[str] = None) -> None:
    """Ends the framework: ``finish("result")`` succeeds with that result, ``finish(error=
    "why")`` fails it. Running tasks are killed and executors shut down."""
    if error is not None:
        _imports.finish(Err(str(error)))
    else:
        _imports.finish(Ok("" if result is None else str(result)))


def log(level: LogLevel, message: str) -> None:
    """Writes a line to the framework's log on the master. Lines are cut to 4,096 bytes and
    budgeted (100 lines and 64 KiB a second, bursts of 1,000 lines and 256 KiB); lines past the
    budget are dropped and counted by the master."""
    _imports.log(level, str(message))


def debug(message: str) -> None:
    """:func:`log` at ``debug``."""
    log(LogLevel.DEBUG, message)


def info(message: str) -> None:
    """:func:`log` at ``info``."""
    log(LogLevel.INFO, message)


def warn(message: str) -> None:
    """:func:`log` at ``warn``."""
    log(LogLevel.WARN, message)


def error(message: str) -> None:
    """:func:`log` at ``error``."""
    log(LogLevel.ERROR, message)


def set_timer(timer_id: int, delay_ms: int) -> None:
    """Calls the scheduler's ``timer(timer_id)`` after ``delay_ms`` milliseconds (at most a
    day); setting a pending timer id again replaces it. Raises :class:`DriverError`, setting
    nothing, when 1,024 other timers are pending or the framework has finished."""
    _call(_imports.set_timer, int(timer_id), max(0, int(delay_ms)))


def report_progress(total: Optional[int], waiting_for: Optional[Resources] = None) -> None:
    """Tells the people watching the framework how many tasks it will run in all (``total``,
    shown as ``37/100 finished``) and the resources of a task it has no fitting offer for
    (``waiting_for``; ``None`` once nothing waits). The latest call wins."""
    _imports.report_progress(FrameworkProgress(tasks_total=total, waiting_for=waiting_for))


__all__: List[str] = [
    "DEFAULT_REFUSE_SECONDS",
    "DriverError",
    "debug",
    "decline",
    "decline_with",
    "error",
    "finish",
    "info",
    "kill",
    "launch",
    "log",
    "reconcile",
    "reconcile_all",
    "report_progress",
    "revive",
    "set_timer",
    "state_get",
    "state_put",
    "suppress",
    "warn",
]
