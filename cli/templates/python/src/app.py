"""{{name}}: a wasmos framework in Python. Both halves live in this one component (world
wasmos:framework/framework@0.1.0), built by ./build.sh with componentize-py from this module,
the wasmos SDK in wasmos/ and wit/framework.wit.

* Scheduler (hosted by the master): ``wasmos dev --run {{crate}}.wasm -- [N]`` launches N tasks
  (default 4, at most 1,000), the numbers 1..=N, one per task, on offered resources; it
  relaunches a task that fails (up to 3 launches) and finishes with
  ``{{name}}: sum of squares of 1..=N = SUM``.
* Executor (run by agents): a task's payload is a number; it returns its square.
  ``wasmos task run {{crate}}.wasm --payload 7`` prints ``49``.
"""

import wasmos
from wasmos import Resources, TaskState, driver, executor_driver

# What one task asks for: a tenth of a core and 32 MiB.
PER_TASK = Resources.cpu_mem(100, 32)
# Tasks when __init__ gets no argument.
DEFAULT_TASKS = 4
# The most tasks an argument may ask for.
MAX_TASKS = 1000
# Launches of one number before the framework gives up.
MAX_LAUNCHES = 3
# The executor id of every task: tasks on one agent share one executor instance.
EXECUTOR_ID = "{{name}}"


def number_of(task_id):
    """Task ids are ``square-N``: the id says which number a status is about."""
    rest = task_id.removeprefix("square-")
    return int(rest) if rest != task_id and rest.isdigit() else None


class SquaresScheduler(wasmos.Scheduler):
    """The numbers still to launch, launches per number, and the squares so far."""

    def __init__(self, args):
        if len(args) > 1:
            raise ValueError("{{name}}: usage: {{name}} [N]")
        n = DEFAULT_TASKS
        if args:
            a = args[0]
            if not (a.isascii() and a.isdigit() and 1 <= int(a) <= MAX_TASKS):
                raise ValueError(f"{{name}}: N must be a number from 1 to {MAX_TASKS}, not {a!r}")
            n = int(a)
        self.n = n
        self.to_launch = list(range(n, 0, -1))
        self.launches = {}
        self.squared = {}
        self.finished = False
        driver.report_progress(n)

    def finish(self, result=None, *, error=None):
        self.finished = True
        driver.finish(result, error=error)

    def resource_offers(self, offers):
        for offer in offers:
            left = offer.resources
            tasks = []
            while not self.finished and self.to_launch and left.try_take(PER_TASK):
                n = self.to_launch.pop()
                self.launches[n] = self.launches.get(n, 0) + 1
                tasks.append(wasmos.wasm_task(f"square-{n}", offer.agent_id, PER_TASK, EXECUTOR_ID, str(n)))
            if not tasks:
                # Nothing to run here: refuse this agent for the SDK's default 120 s.
                driver.decline([offer.id])
                continue
            try:
                driver.launch([offer.id], tasks)
            except driver.DriverError as e:
                driver.warn(f"{{name}}: launch failed, retrying on a later offer: {e}")
                for t in tasks:
                    n = number_of(t.task_id)
                    self.launches[n] -= 1
                    self.to_launch.append(n)
        if not self.to_launch:
            # Nothing left to launch: stop receiving offers.
            driver.suppress()

    def status_update(self, status):
        n = number_of(status.task_id)
        # Updates are delivered at least once: count each number once.
        if n is None or self.finished or n in self.squared:
            return
        if status.state == TaskState.FINISHED:
            data = (status.data or b"").decode(errors="replace")
            if not data.isdigit():
                self.finish(error=f"{{name}}: task {n} returned {data!r}, not a number")
                return
            self.squared[n] = int(data)
            if len(self.squared) == self.n:
                self.finish(f"{{name}}: sum of squares of 1..={self.n} = {sum(self.squared.values())}")
        elif wasmos.is_terminal(status.state):
            # Failed, lost, ...: launch it again on a later offer, a few times.
            if self.launches.get(n, 0) >= MAX_LAUNCHES:
                self.finish(error=f"{{name}}: task {n} failed {MAX_LAUNCHES} times: {status.message}")
                return
            self.to_launch.append(n)
            driver.revive()


class SquaresExecutor(wasmos.Executor):
    """One instance per executor id on an agent: what it keeps on ``self`` (here a count) is
    still there for the next task. An exception fails the task with its message."""

    def __init__(self):
        self.tasks_run = 0

    def launch(self, task):
        self.tasks_run += 1
        text = task.payload.decode(errors="replace")
        if not (text.strip().isascii() and text.strip().isdigit()):
            raise ValueError(f"payload {text!r} is not a whole number")
        n = int(text)
        # On the agent, in the task's log (`wasmos logs TASK`).
        executor_driver.info(f"{n} squared is {n * n}; task {self.tasks_run} of this instance")
        return str(n * n).encode()


Scheduler, Executor = wasmos.export(scheduler=SquaresScheduler, executor=SquaresExecutor)
