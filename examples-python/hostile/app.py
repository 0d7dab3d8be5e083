"""hostile: a Python framework that misbehaves on purpose, for the tests that check the host
contains it (``cli/tests/python.rs``). Its one argument names what it does:

* ``raise-init``: ``__init__`` raises ``ValueError("bad input 42")``;
* ``raise-offers``: ``resource_offers`` raises ``ValueError("bad input 42")`` (not caught by the
  SDK: the instance traps and the master quotes the traceback's end);
* ``stderr-flood``: ``resource_offers`` writes 64 MiB to stderr, then raises
  ``ValueError("after the flood")``;
* ``offers-loop``: ``resource_offers`` never returns;
* ``offers-membomb``: ``resource_offers`` allocates 1 MiB after 1 MiB without end;
* ``task-loop``, ``task-membomb``, ``task-raise``: launches one task whose executor does that
  (``task-raise`` raises ``ValueError("bad task input 7")``), then finishes with the task's
  outcome: ``finish(error="task ended STATE: MESSAGE")`` unless it finished.
"""

import sys

import wasmos
from wasmos import Resources, TaskState, driver

MODES = ("raise-init", "raise-offers", "stderr-flood", "offers-loop", "offers-membomb",
         "task-loop", "task-membomb", "task-raise")
PER_TASK = Resources.cpu_mem(100, 64)


def spin():
    n = 0
    while True:
        n += 1


def membomb():
    held = []
    while True:
        held.append(bytearray(1 << 20))


class Hostile(wasmos.Scheduler):
    def __init__(self, args):
        self.mode = args[0] if args else ""
        if self.mode not in MODES:
            raise ValueError(f"hostile: unknown mode {self.mode!r}; one of {', '.join(MODES)}")
        if self.mode == "raise-init":
            raise ValueError("bad input 42")
        self.launched = False

    def resource_offers(self, offers):
        if self.mode == "raise-offers":
            raise ValueError("bad input 42")
        if self.mode == "stderr-flood":
            line = "x" * 1023 + "\n"
            for _ in range(64 * 1024):
                sys.stderr.write(line)
            raise ValueError("after the flood")
        if self.mode == "offers-loop":
            spin()
        if self.mode == "offers-membomb":
            membomb()
        for offer in offers:
            if not self.launched and PER_TASK.fits(offer.resources):
                payload = self.mode.removeprefix("task-")
                driver.launch([offer.id], [wasmos.wasm_task("hostile-task", offer.agent_id, PER_TASK, "hostile", payload)])
                self.launched = True
            else:
                driver.decline([offer.id])
        if self.launched:
            driver.suppress()

    def status_update(self, status):
        if status.state == TaskState.FINISHED:
            driver.finish(f"task finished: {(status.data or b'').decode(errors='replace')}")
        elif wasmos.is_terminal(status.state):
            driver.finish(error=f"task ended {status.state.name.lower()}: {status.message}")


class Misbehaves(wasmos.Executor):
    def launch(self, task):
        what = task.payload.decode()
        if what == "loop":
            spin()
        if what == "membomb":
            membomb()
        if what == "raise":
            raise ValueError("bad task input 7")
        return task.payload


Scheduler, Executor = wasmos.export(scheduler=Hostile, executor=Misbehaves)
