// squares: a wasmos framework in JavaScript. It sums the squares of 1..N exactly (BigInt) in
// TASKS tasks, each summing one range, and finishes with
//
//   sum of squares 1..N = S (TASKS tasks)
//
// Arguments: N (1 to 10,000,000, default 1000) and TASKS (1 to min(N, 1000), default 10).
// An argument `raise-in-status-update` makes the scheduler throw a TypeError on its first
// status update (the tests use it to check that an exception fails the framework with its
// message).
//
// It shows the SDK's shape: a Scheduler subclass that packs tasks into offers, declines the
// rest (120 s by default), suppresses offers once everything is launched, revives when a task
// must run again, and reports progress; an Executor subclass that keeps state across the tasks
// of its executor id.

import { Executor, Resources, Scheduler, driver, framework, isTerminal, wasmTask } from 'wasmos';

/** What one task needs: a tenth of a core and 64 MiB. */
const PER_TASK = Resources.cpuMem(100, 64);
const MAX_N = 10_000_000;
const MAX_TASKS = 1000;

function wholeNumber(arg, what, lo, hi) {
  if (!/^[0-9]+$/.test(arg)) throw new Error(`squares: bad ${what} ${JSON.stringify(arg)}: not a whole number`);
  const n = Number(arg);
  if (n < lo || n > hi) throw new Error(`squares: ${what} ${n} is out of range (${lo} to ${hi})`);
  return n;
}

class Squares extends Scheduler {
  constructor(args) {
    super(args);
    const raise = args.indexOf('raise-in-status-update');
    this.raise = raise >= 0;
    if (this.raise) args = args.filter((_, i) => i !== raise);
    if (args.length > 2) throw new Error(`squares: too many arguments (${args.length})`);
    this.n = args.length > 0 ? wholeNumber(args[0], 'N', 1, MAX_N) : 1000;
    this.tasks = args.length > 1 ? wholeNumber(args[1], 'TASKS', 1, Math.min(this.n, MAX_TASKS)) : Math.min(10, this.n);
    // Task i sums [lo, hi): the ranges split 1..n as evenly as whole numbers allow.
    this.ranges = new Map();
    for (let i = 0; i < this.tasks; i++) {
      const lo = 1 + Math.floor((i * this.n) / this.tasks);
      const hi = 1 + Math.floor(((i + 1) * this.n) / this.tasks);
      this.ranges.set(`range-${i}`, [lo, hi]);
    }
    this.toLaunch = [...this.ranges.keys()].reverse();
    this.sums = new Map();
    driver.reportProgress({ total: this.tasks });
  }

  resourceOffers(offers) {
    for (const offer of offers) {
      const left = offer.resources;
      const tasks = [];
      while (this.toLaunch.length > 0 && left.tryTake(PER_TASK)) {
        const taskId = this.toLaunch.pop();
        const [lo, hi] = this.ranges.get(taskId);
        // Four executors per agent share the work; tasks of one executor id run one after
        // another in the same instance.
        const executorId = `squares-${tasks.length % 4}`;
        tasks.push(wasmTask({ taskId, agentId: offer.agentId, resources: PER_TASK, executorId, payload: `${lo} ${hi}` }));
      }
      if (tasks.length === 0) {
        driver.decline([offer.id]);
        continue;
      }
      try {
        driver.launch([offer.id], tasks);
      } catch (e) {
        driver.warn(`launch failed, will retry on a later offer: ${e.message}`);
        this.toLaunch.push(...tasks.map((t) => t.taskId));
      }
    }
    if (this.toLaunch.length === 0) {
      driver.reportProgress({ total: this.tasks });
      driver.suppress();
    } else {
      driver.reportProgress({ total: this.tasks, waitingFor: PER_TASK });
    }
  }

  statusUpdate(status) {
    if (this.raise) throw new TypeError(`asked to raise on the status of ${status.taskId}`);
    if (!this.ranges.has(status.taskId) || this.sums.has(status.taskId)) return;
    if (status.state === 'finished') {
      const [sum, lo, hi] = status.text().split(' ');
      const [wantLo, wantHi] = this.ranges.get(status.taskId);
      if (!/^[0-9]+$/.test(sum) || Number(lo) !== wantLo || Number(hi) !== wantHi) {
        driver.fail(`task ${status.taskId} returned ${JSON.stringify(status.text())}, not "SUM ${wantLo} ${wantHi}"`);
        return;
      }
      this.sums.set(status.taskId, BigInt(sum));
      if (this.sums.size === this.tasks) {
        let total = 0n;
        for (const s of this.sums.values()) total += s;
        driver.succeed(`sum of squares 1..${this.n} = ${total} (${this.tasks} tasks)`);
      }
    } else if (isTerminal(status.state)) {
      driver.info(`task ${status.taskId} ${status.state} (${status.message}); running it again`);
      this.toLaunch.push(status.taskId);
      driver.revive();
    }
  }
}

/** Sums the squares of a range; one instance per executor id and agent, across its tasks. */
class SquareExecutor extends Executor {
  constructor() {
    super();
    this.tasksRun = 0;
  }

  launch(task) {
    this.tasksRun += 1;
    const m = /^([0-9]+) ([0-9]+)$/.exec(task.text());
    if (!m) throw new Error(`payload ${JSON.stringify(task.text())} is not "LO HI"`);
    const lo = BigInt(m[1]);
    const hi = BigInt(m[2]);
    if (hi < lo) throw new Error(`[${lo}, ${hi}) is inverted`);
    let sum = 0n;
    for (let i = lo; i < hi; i++) sum += i * i;
    return `${sum} ${lo} ${hi}`;
  }
}

export const { scheduler, executor } = framework(Squares, SquareExecutor);
