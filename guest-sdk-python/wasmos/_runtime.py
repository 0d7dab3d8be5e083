"""The base classes a framework subclasses and :func:`export`, which turns them into the classes
componentize-py calls: where each half's object lives between calls, what happens to calls that
arrive at the wrong time, and which exceptions become error results.

A component instance holds one scheduler *or* one executor (the host makes a fresh instance per
framework scheduler and per executor id on an agent), so each half's object is one attribute of
a slot kept by the exported class, created on the first call that needs it.
"""

import abc
import sys
import traceback
from typing import Any, List, Optional, Type

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.executor import Task
from wit_world.imports.types import LogLevel, Offer, TaskStatus

from . import driver
from .helpers import describe_exception, offer_ids


class Scheduler(abc.ABC):
    """The scheduler half of a framework.

    One object of the subclass lives in the framework's scheduler instance on the master. It is
    made by ``__init__(args)`` with the arguments given to ``wasmos submit`` (an exception there
    fails the framework with ``"TypeName: message"``); every other method is called on it, one
    call at a time, and answers through :mod:`wasmos.driver`. An exception from them is not
    caught: the instance traps and the master fails the framework, quoting the end of the
    traceback.
    """

    def __init__(self, args: List[str]) -> None:
        pass

    @abc.abstractmethod
    def resource_offers(self, offers: List[Offer]) -> None:
        """New offers. Answer each with :func:`wasmos.driver.launch` or
        :func:`wasmos.driver.decline`: an unanswered offer counts as used by this framework
        until the master rescinds it."""

    @abc.abstractmethod
    def status_update(self, status: TaskStatus) -> None:
        """A task changed state. Delivery is at least once: the same terminal status can arrive
        twice (after a master failover), so make handling idempotent."""

    def offer_rescinded(self, offer_id: str) -> None:
        """An offer is no longer valid (its agent went away or it timed out)."""

    def timer(self, timer_id: int) -> None:
        """A timer set with :func:`wasmos.driver.set_timer` fired."""

    def framework_message(self, agent_id: str, executor_id: str, data: bytes) -> None:
        """An executor sent bytes with :func:`wasmos.executor_driver.send_framework_message`."""


class Executor(abc.ABC):
    """The executor half of a framework.

    One object of the subclass lives in each executor instance. The host creates the instance
    when the first task with a given executor id arrives on an agent; the SDK then calls
    ``__init__()`` once and :meth:`launch` for that task and every later one with the same
    executor id on that agent, one at a time. That is how data is cached across tasks: keep it
    on ``self``.
    """

    def __init__(self) -> None:
        pass

    @abc.abstractmethod
    def launch(self, task: Task) -> bytes:
        """Runs one task to completion. The returned bytes (a ``str`` is sent as UTF-8, ``None``
        as nothing) become the task's result; an exception fails the task with
        ``"TypeName: message"`` and keeps this object for the next task. Long tasks can report
        progress with :func:`wasmos.executor_driver.progress`."""


class DeclineAll(Scheduler):
    """A scheduler that runs nothing: it declines every offer (with the long default refusal)
    and suppresses further ones. For components whose executor is driven by other means, such
    as ``wasmos task run`` or a benchmark."""

    def resource_offers(self, offers: List[Offer]) -> None:
        driver.decline(offer_ids(offers))
        driver.suppress()

    def status_update(self, status: TaskStatus) -> None:
        pass


# Exceptions that mean the instance itself is in trouble: never turned into an error result,
# so the instance traps and the host reports the limit it hit.
_FATAL = (MemoryError, RecursionError, SystemExit, KeyboardInterrupt)


def _as_error(e: BaseException) -> Err:
    if isinstance(e, _FATAL) or not isinstance(e, Exception):
        raise e
    # The traceback goes to the instance's stderr: the task's stderr file on an agent.
    traceback.print_exception(e, file=sys.stderr)
    return Err(describe_exception(e))


def _as_bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"Executor.launch must return bytes or str, not {type(value).__name__}")


class _Slot:
    def __init__(self) -> None:
        self.scheduler: Optional[Scheduler] = None
        self.executor: Optional[Executor] = None


def export(*, scheduler: Type[Scheduler], executor: Type[Executor]):
    """Returns the two classes componentize-py calls, ``(Scheduler, Executor)``; bind them to
    those names in the module given to ``componentize-py componentize``::

        Scheduler, Executor = wasmos.export(scheduler=MyScheduler, executor=MyExecutor)

    ``scheduler`` must subclass :class:`Scheduler` and ``executor`` :class:`Executor`
    (checked here, so a mistake fails the build's import, not a running framework).
    """
    if not (isinstance(scheduler, type) and issubclass(scheduler, Scheduler)):
        raise TypeError(f"scheduler must be a subclass of wasmos.Scheduler, not {scheduler!r}")
    if not (isinstance(executor, type) and issubclass(executor, Executor)):
        raise TypeError(f"executor must be a subclass of wasmos.Executor, not {executor!r}")
    slot = _Slot()

    def running(call: str) -> Optional[Scheduler]:
        if slot.scheduler is None:
            driver.log(LogLevel.ERROR, f"scheduler.{call} called before a successful init; ignored")
        return slot.scheduler

    class SchedulerExport(exports.Scheduler):
        def init(self, args: List[str]) -> None:
            if slot.scheduler is not None:
                # The host starts a fresh instance after a failover, so a second init on a live
                # one is a host bug; keeping the existing state is safer than replacing it.
                raise Err("scheduler.init called twice on the same instance")
            try:
                slot.scheduler = scheduler(list(args))
            except BaseException as e:
                raise _as_error(e) from None

        def resource_offers(self, offers: List[Offer]) -> None:
            s = running("resource-offers")
            if s is None:
                # Not hoarded until they time out.
                driver.decline(offer_ids(offers))
                return
            s.resource_offers(offers)

        def status_update(self, status: TaskStatus) -> None:
            s = running("status-update")
            if s is not None:
                s.status_update(status)

        def offer_rescinded(self, offer_id: str) -> None:
            s = running("offer-rescinded")
            if s is not None:
                s.offer_rescinded(offer_id)

        def timer(self, timer_id: int) -> None:
            s = running("timer")
            if s is not None:
                s.timer(timer_id)

        def framework_message(self, agent_id: str, executor_id: str, data: bytes) -> None:
            s = running("framework-message")
            if s is not None:
                s.framework_message(agent_id, executor_id, data)

    class ExecutorExport(exports.Executor):
        def launch(self, task: Task) -> bytes:
            try:
                if slot.executor is None:
                    slot.executor = executor()
                return _as_bytes(slot.executor.launch(task))
            except BaseException as e:
                raise _as_error(e) from None

    SchedulerExport.__name__ = SchedulerExport.__qualname__ = "Scheduler"
    ExecutorExport.__name__ = ExecutorExport.__qualname__ = "Executor"
    return SchedulerExport, ExecutorExport
