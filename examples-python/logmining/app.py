"""logmining: the log-mining example of the Spark paper, as a wasmos framework in Python.

``lines = spark.textFile(...); errors = lines.filter(startsWith "ERROR"); errors.cache()``, then
one count per query term. Each partition's executor instance parses its partition once, on the
first query, and keeps the error lines; later queries on that agent find them in memory and
only filter, so they are far faster. See README.md.
"""

import time

import wasmos
from wasmos import DriverError, Resources, TaskState, driver
import logdata

# What one task asks for: half a core and 128 MiB (CPython starts at about 13 MiB).
PER_TASK = Resources.cpu_mem(500, 128)
# Bounds of the arguments, checked in __init__.
MAX_PARTITIONS = 64
MAX_LINES = 1_000_000
MAX_TERMS = 32
MAX_TERM_CHARS = 64
MAX_WAIT_MS = 60_000
# A partition that fails this often in one query fails the job.
MAX_FAILURES = 5
USAGE = "logmining [PARTITIONS] [LINES] [TERM,TERM,...] [WAIT_MS]"


def _whole(args, i, name, default, low, high):
    if len(args) <= i:
        return default
    text = args[i]
    if not text.isdigit():
        raise ValueError(f"logmining: bad {name} {text!r}: not a whole number; usage: {USAGE}")
    v = int(text)
    if not low <= v <= high:
        raise ValueError(f"logmining: {name} {v} is out of range {low}..{high}")
    return v


def _terms(args):
    if len(args) <= 2:
        return ["hdfs", "timeout", "disk", "mysql"]
    terms = args[2].split(",")
    if not 1 <= len(terms) <= MAX_TERMS:
        raise ValueError(f"logmining: {len(terms)} terms; give 1 to {MAX_TERMS}")
    for t in terms:
        if not t or len(t) > MAX_TERM_CHARS or " " in t:
            raise ValueError(
                f"logmining: bad term {t[:MAX_TERM_CHARS]!r}: 1 to {MAX_TERM_CHARS} characters, no spaces"
            )
    return terms


class LogMining(wasmos.Scheduler):
    """One query at a time: a task per partition, placed on the agent that holds the partition
    (delay scheduling: up to WAIT_MS per query, then anywhere)."""

    def __init__(self, args):
        if len(args) > 4:
            raise ValueError(f"logmining: too many arguments ({len(args)}); usage: {USAGE}")
        self.partitions = _whole(args, 0, "PARTITIONS", 4, 1, MAX_PARTITIONS)
        self.lines = _whole(args, 1, "LINES", 20_000, 1, MAX_LINES)
        self.terms = _terms(args)
        self.wait_ms = _whole(args, 3, "WAIT_MS", 2000, 0, MAX_WAIT_MS)
        self.query = 0
        self.launches = 0
        self.holder = {}  # partition -> the agent whose executor parsed it
        self.counts = []  # per finished query
        self.query_ms = []  # wall time per query, as the scheduler saw it
        self.task_ms = []  # executor time per query, summed over its partitions
        self.parsed = []  # partitions parsed, per finished query
        driver.report_progress(self.partitions * len(self.terms))
        self._start_query()

    def _start_query(self):
        self.to_launch = list(range(self.partitions))
        self.running = {}  # task id -> partition
        self.done = {}  # partition -> count
        self.task_ms_now = 0.0
        self.failures = {}
        self.parsed_now = 0
        self.anywhere = self.wait_ms == 0
        self.started = time.monotonic()
        if not self.anywhere:
            try:
                driver.set_timer(self.query, self.wait_ms)
            except DriverError as e:
                driver.warn(f"no locality wait for query {self.query + 1}: {e}")
                self.anywhere = True
        driver.revive()

    def resource_offers(self, offers):
        term = self.terms[self.query] if self.query < len(self.terms) else None
        for offer in offers:
            left = Resources(offer.resources.millicpus, offer.resources.mem_mb, offer.resources.disk_mb)
            tasks = []
            for p in list(self.to_launch):
                held = self.holder.get(p)
                if held is not None and held != offer.agent_id and not self.anywhere:
                    continue
                if not left.try_take(PER_TASK):
                    break
                self.to_launch.remove(p)
                task_id = f"logmining-{self.query}-{p}-{self.launches}"
                self.launches += 1
                self.running[task_id] = p
                payload = f"{p} {self.lines} {term}"
                tasks.append(wasmos.wasm_task(task_id, offer.agent_id, PER_TASK, f"logmining-p{p}", payload))
            if not tasks:
                # Partitions waiting for their own agent: see this one again soon (the wait may
                # end); nothing to run at all: the long default refusal.
                if self.to_launch:
                    driver.decline([offer.id], refuse_seconds=1.0)
                else:
                    driver.decline([offer.id])
                continue
            try:
                driver.launch([offer.id], tasks)
            except DriverError as e:
                driver.warn(f"launch refused, will retry on a later offer: {e}")
                for t in tasks:
                    self.to_launch.append(self.running.pop(t.task_id))
        if not self.to_launch:
            driver.suppress()

    def timer(self, timer_id):
        if timer_id == self.query and self.to_launch:
            driver.info(f"query {self.query + 1}: locality wait over, {len(self.to_launch)} partitions may run anywhere")
            self.anywhere = True
            driver.revive()

    def status_update(self, status):
        p = self.running.get(status.task_id)
        if p is None:
            return  # an earlier launch, a duplicate, or a late answer from a lost agent
        if status.state == TaskState.FINISHED:
            del self.running[status.task_id]
            fields = (status.data or b"").decode(errors="replace").split(" ")
            try:
                if len(fields) != 3 or fields[0] not in ("loaded", "cached"):
                    raise ValueError
                count, took = int(fields[1]), float(fields[2])
            except ValueError:
                self._retry(p, f"task {status.task_id} returned {fields!r}")
                return
            self.task_ms_now += took
            if fields[0] == "loaded":
                self.parsed_now += 1
                self.holder[p] = status.agent_id
            self.done[p] = count
            if len(self.done) == self.partitions:
                self._end_query()
        elif wasmos.is_terminal(status.state) or status.state == TaskState.UNREACHABLE:
            del self.running[status.task_id]
            if status.state in (TaskState.LOST, TaskState.UNREACHABLE):
                # Everything that agent held is gone (or may be): rebuild it elsewhere.
                self.holder = {q: a for q, a in self.holder.items() if a != status.agent_id}
            else:
                # A failed task discards its instance, and the partition with it.
                self.holder.pop(p, None)
            self._retry(p, f"task {status.task_id} ended {status.state.name.lower()}: {status.message}")

    def _retry(self, p, why):
        n = self.failures.get(p, 0) + 1
        self.failures[p] = n
        if n >= MAX_FAILURES:
            driver.finish(error=f"logmining: partition {p} failed {n} times in query {self.query + 1}; last: {why}")
            return
        driver.warn(f"{why}; relaunching partition {p}")
        self.to_launch.append(p)
        driver.revive()

    def _end_query(self):
        ms = (time.monotonic() - self.started) * 1000
        term = self.terms[self.query]
        self.counts.append(sum(self.done.values()))
        self.query_ms.append(ms)
        self.task_ms.append(self.task_ms_now)
        self.parsed.append(self.parsed_now)
        driver.info(f"query {self.query + 1} ({term}): {self.counts[-1]} error lines in {ms:.1f} ms, {self.parsed_now} partitions parsed")
        self.query += 1
        if self.query < len(self.terms):
            self._start_query()
            return
        later = sorted(self.task_ms[1:])
        ratio = f"; first/median-later = {self.task_ms[0] / max(later[len(later) // 2], 0.001):.1f}x" if later else ""
        found = " ".join(f"{t}={c}" for t, c in zip(self.terms, self.counts))
        driver.finish(
            f"logmining: {found} over {self.partitions} partitions x {self.lines} lines; "
            f"partitions parsed: {self.parsed[0]} in the first query, {sum(self.parsed[1:])} later; "
            f"executor ms per query: {', '.join(f'{m:.1f}' for m in self.task_ms)}{ratio}; "
            f"wall ms per query: {', '.join(f'{m:.1f}' for m in self.query_ms)}"
        )


class Partition(wasmos.Executor):
    """Holds one partition's error lines (its executor id is the partition's)."""

    def __init__(self):
        self.key = None
        self.errors = []

    def launch(self, task):
        fields = task.payload.decode().split(" ")
        if len(fields) != 3 or not fields[0].isdigit() or not fields[1].isdigit():
            raise ValueError(f"payload {task.payload[:80]!r} is not 'PARTITION LINES TERM'")
        partition, lines, term = int(fields[0]), int(fields[1]), fields[2]
        if lines > MAX_LINES:
            raise ValueError(f"{lines} lines is more than {MAX_LINES}")
        t0 = time.monotonic()
        loaded = self.key != (partition, lines)
        if loaded:
            errors = []
            for line in logdata.partition_text(partition, lines).splitlines():
                level, service, *words = line.split(" ")
                if level == "ERROR":
                    errors.append((service, frozenset(words)))
            self.key, self.errors = (partition, lines), errors
            wasmos.executor_driver.info(f"partition {partition}: parsed {lines} lines, kept {len(errors)} errors")
        count = sum(1 for service, words in self.errors if service == term or term in words)
        ms = (time.monotonic() - t0) * 1000
        return f"{'loaded' if loaded else 'cached'} {count} {ms:.1f}"


Scheduler, Executor = wasmos.export(scheduler=LogMining, executor=Partition)
