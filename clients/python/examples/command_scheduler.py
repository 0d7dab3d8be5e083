#!/usr/bin/env python3
"""An external framework scheduler in Python: runs N native command tasks to completion.

    command_scheduler.py --master HOST:PORT[,HOST:PORT...] --tasks 10 -- sh -c 'echo hi; sleep 1'

Each task runs the command after `--` (by default `sh -c 'echo task $WASMOS_TASK_INDEX'`) with
`WASMOS_TASK_INDEX` set, on 0.1 CPU and 32 MiB unless told. Offers are packed with waiting
tasks; an offer that fits none is declined with the long default filter, and the framework
suppresses offers while nothing waits. A task that fails, or is lost, killed or refused, runs
again under a new id, at most `--attempts` times in all. After a master failover it reconciles
the tasks it has not seen end (the new leader answers `LOST` for a launch it never saw, which
then runs again; also, today, for a task whose agent has not re-registered with it yet, so such
a task may run twice: the end of its first run is then ignored).

It prints one line on stdout when done, and exits 0 when every task finished:
    10 of 10 tasks finished (framework ID, 1 subscriptions, 0 relaunched)
and 1 when a task used up its attempts (the line says which). Progress goes to stderr.

Masters enforce ACLs: the token comes from WASMOS_TOKEN (a policy allowing `subscribe` for the
role and `native_task_roles`), TLS files from WASMOS_TLS_CA/CERT/KEY. The master must allow
native tasks for the role (`wasmos master --command-task-roles ROLE`).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

from wasmos_client import (
    CommandTask,
    Disconnected,
    Error,
    FrameworkInfo,
    Offers,
    Rescind,
    Resources,
    Scheduler,
    Subscribed,
    TaskInfo,
    TaskState,
    Update,
)

# Bounds on the command line's numbers (the master has its own per accept: 1,024 tasks).
MAX_TASKS = 10_000
MAX_ATTEMPTS = 10


@dataclass
class Work:
    """What the framework knows of its tasks: one entry per logical task, whose current
    attempt runs as `task-INDEX.ATTEMPT`."""

    count: int
    attempts: int
    waiting: list[int] = field(default_factory=list)
    # Task id -> (index, attempt) of each attempt launched and not seen ending.
    live: dict[str, tuple[int, int]] = field(default_factory=dict)
    tries: dict[int, int] = field(default_factory=dict)
    finished: set[int] = field(default_factory=set)
    given_up: dict[int, str] = field(default_factory=dict)
    relaunched: int = 0

    def __post_init__(self) -> None:
        self.waiting = list(range(self.count))

    def done(self) -> bool:
        return len(self.finished) + len(self.given_up) == self.count

    def next_id(self, index: int) -> str:
        attempt = self.tries.get(index, 0) + 1
        self.tries[index] = attempt
        task_id = f"task-{index}.{attempt}"
        self.live[task_id] = (index, attempt)
        return task_id

    def ended(self, task_id: str, state: TaskState, message: str) -> str | None:
        """Records the end of `task_id`; returns what to say about it, `None` when it is not
        a live attempt (an answer about an old one)."""
        entry = self.live.pop(task_id, None)
        if entry is None:
            return None
        index, attempt = entry
        if state == TaskState.FINISHED:
            self.finished.add(index)
            return f"{task_id} finished ({len(self.finished)}/{self.count})"
        if attempt >= self.attempts:
            self.given_up[index] = f"{task_id} {state.name}: {message}"
            return f"{task_id} {state.name} ({message}); no attempts left"
        self.waiting.append(index)
        self.relaunched += 1
        return f"{task_id} {state.name} ({message}); running it again"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--master", required=True, help="HOST:PORT[,HOST:PORT...] of the masters")
    p.add_argument("--tasks", type=int, default=10, help=f"tasks to run, 1..{MAX_TASKS} [10]")
    p.add_argument("--cpus", type=float, default=0.1, help="CPUs per task [0.1]")
    p.add_argument("--mem", type=int, default=32, help="MiB of memory per task [32]")
    p.add_argument("--role", default="default", help="the framework's role [default]")
    p.add_argument("--name", default="python-commands", help="its name [python-commands]")
    p.add_argument(
        "--attempts", type=int, default=3, help=f"runs of a task at most, 1..{MAX_ATTEMPTS} [3]"
    )
    p.add_argument(
        "--failover-timeout",
        type=float,
        default=300.0,
        help="seconds the master keeps the framework while it reconnects [300]",
    )
    p.add_argument("command", nargs="*", help="the command each task runs (after --)")
    a = p.parse_args()
    if not 1 <= a.tasks <= MAX_TASKS:
        p.error(f"--tasks {a.tasks}: give 1 to {MAX_TASKS}")
    if not 1 <= a.attempts <= MAX_ATTEMPTS:
        p.error(f"--attempts {a.attempts}: give 1 to {MAX_ATTEMPTS}")
    if not a.command:
        a.command = ["sh", "-c", "echo task $WASMOS_TASK_INDEX"]
    return a


def log(line: str) -> None:
    print(f"command_scheduler: {line}", file=sys.stderr, flush=True)


def main() -> int:
    a = parse()
    work = Work(a.tasks, a.attempts)
    need = Resources.of(cpus=a.cpus, mem_mb=a.mem)
    info = FrameworkInfo(a.name, role=a.role, failover_timeout_seconds=a.failover_timeout)
    started = time.monotonic()
    with Scheduler(a.master, info) as s:
        suppressed = False
        tearing_down = False
        for event in s.events():
            if tearing_down:
                continue
            if isinstance(event, Subscribed):
                if event.resubscribed:
                    log(f"re-subscribed as framework {event.framework_id} at {event.master}")
                    # Updates the old leader made may be lost with it: ask for what is live.
                    if work.live:
                        s.reconcile(list(work.live))
                else:
                    log(f"subscribed as framework {event.framework_id} at {event.master}")
            elif isinstance(event, Disconnected):
                log(f"lost the master at {event.master} ({event.reason}); reconnecting")
            elif isinstance(event, Offers):
                for offer in event.offers:
                    left = offer.resources
                    tasks = []
                    while work.waiting and need.fits_in(left):
                        index = work.waiting.pop(0)
                        tasks.append(
                            TaskInfo(
                                task_id=work.next_id(index),
                                agent_id=offer.agent_id,
                                resources=need,
                                kind=CommandTask(
                                    a.command, env={"WASMOS_TASK_INDEX": str(index)}
                                ),
                                name=f"{a.name} {index}",
                            )
                        )
                        left = left - need
                    if tasks:
                        s.accept([offer], tasks)
                    else:
                        s.decline([offer])
                if not work.waiting and not suppressed:
                    s.suppress()
                    suppressed = True
            elif isinstance(event, Update):
                st = event.status
                s.acknowledge(st)
                if st.state.terminal:
                    said = work.ended(st.task_id, st.state, st.message)
                    if said:
                        log(said)
                    if work.waiting and suppressed:
                        s.revive()
                        suppressed = False
                    if work.done() and not tearing_down:
                        # events() ends once the master has removed the framework.
                        s.teardown()
                        tearing_down = True
            elif isinstance(event, Rescind):
                pass
            elif isinstance(event, Error):
                log(f"the master refused a call: {event.message}")
        framework = s.framework_id
        subscriptions = s.subscriptions
    line = (
        f"{len(work.finished)} of {work.count} tasks finished (framework {framework}, "
        f"{subscriptions} subscriptions, {work.relaunched} relaunched) "
        f"in {time.monotonic() - started:.1f} s"
    )
    if work.given_up:
        first = sorted(work.given_up.items())[0][1]
        print(f"{line}; {len(work.given_up)} gave up, first: {first}", flush=True)
        return 1
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
