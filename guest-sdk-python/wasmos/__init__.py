"""wasmos: write a wasmos framework in Python.

A wasmos framework is **one** WebAssembly component that holds both halves of a Mesos-style
framework:

* the **scheduler**, hosted by the leading master: it is told about resource offers and task
  status changes and answers through :mod:`wasmos.driver` (launch, decline, suppress, finish);
* the **executor**, run by agents: it receives each task's payload and returns the task's result
  bytes. Tasks that name the same executor id on one agent run one after another in the *same*
  instance, so whatever the executor keeps on ``self`` (a parsed data partition, a model) is
  still there for the next task.

You subclass :class:`Scheduler` and :class:`Executor` and hand both classes to :func:`export`,
in the module you give to ``componentize-py componentize``::

    import wasmos

    class Upper(wasmos.Executor):
        def launch(self, task):
            return task.payload.upper()

    # No scheduler of our own yet: decline everything (test the executor with `wasmos task run`).
    Scheduler, Executor = wasmos.export(scheduler=wasmos.DeclineAll, executor=Upper)

This is the Rust SDK (``guest-sdk/``, crate ``wasmos-guest``) in Python: the same two halves,
the same driver calls, the same defaults that differ from Mesos (a decline refuses the agent for
120 s, :data:`DEFAULT_REFUSE_SECONDS`; suppress while there is nothing to launch). The types
(``Offer``, ``TaskInfo``, ``TaskStatus``, ...) are the dataclasses componentize-py generates from
``wit/framework.wit``; this package adds methods to ``Resources`` and helpers around them, and
no hand-written ABI.

What an exception does:

* raised by ``Scheduler.__init__`` (the WIT ``init``): the framework fails with
  ``"TypeName: message"``;
* raised by ``Executor.launch``: the task fails with ``"TypeName: message"`` and the instance is
  kept for the next task (as a Rust executor's ``Err``);
* raised by any other scheduler callback, or a ``MemoryError`` anywhere: it is not caught, the
  instance traps, and the host fails the framework (or the task) quoting the end of the
  traceback the instance wrote to stderr.

What lives here: the base classes and :func:`export` (``_runtime.py``), the driver wrappers
(``driver.py``, ``executor_driver.py``) and the pure helpers (``helpers.py``). What does not:
anything host-side.
"""

from wit_world.exports.executor import Task
from wit_world.imports.types import (
    CommandTask,
    Filters,
    FrameworkProgress,
    LogLevel,
    Offer,
    Resources,
    TaskInfo,
    TaskKind_Command,
    TaskKind_Wasm,
    TaskState,
    TaskStatus,
    WasmTask,
)

from . import driver, executor_driver
from ._runtime import DeclineAll, Executor, Scheduler, export
from .driver import DEFAULT_REFUSE_SECONDS, DriverError
from .helpers import (
    command_task,
    describe_exception,
    is_terminal,
    offer_ids,
    refuse,
    wasm_task,
)

__all__ = [
    "CommandTask",
    "DEFAULT_REFUSE_SECONDS",
    "DeclineAll",
    "DriverError",
    "Executor",
    "Filters",
    "FrameworkProgress",
    "LogLevel",
    "Offer",
    "Resources",
    "Scheduler",
    "Task",
    "TaskInfo",
    "TaskKind_Command",
    "TaskKind_Wasm",
    "TaskState",
    "TaskStatus",
    "WasmTask",
    "command_task",
    "describe_exception",
    "driver",
    "executor_driver",
    "export",
    "is_terminal",
    "offer_ids",
    "refuse",
    "wasm_task",
]
