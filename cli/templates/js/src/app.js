// {{name}}: a wasmos framework in JavaScript. Both halves live in this one component (world
// wasmos:framework/framework@0.1.0), built by ./build.sh with the wasmos SDK in wasmos-js/
// (Rolldown bundles this module with it, componentize-js turns the bundle into a component).
//
// * Scheduler (hosted by the master): `wasmos dev --run {{crate}}.wasm -- [N]` launches N tasks
//   (default 4, at most 1,000), the numbers 1..=N, one per task, on offered resources; it
//   relaunches a task that fails (up to 3 launches) and finishes with
//   `{{name}}: sum of squares of 1..=N = SUM`.
// * Executor (run by agents): a task's payload is a number; it returns its square.
//   `wasmos task run {{crate}}.wasm --payload 7` prints `49`.

import { Executor, Resources, Scheduler, driver, executorDriver, framework, isTerminal, wasmTask } from 'wasmos';

/** What one task asks for: a tenth of a core and 32 MiB. */
const PER_TASK = Resources.cpuMem(100, 32);
/** Tasks when the constructor gets no argument. */
const DEFAULT_TASKS = 4;
/** The most tasks an argument may ask for. */
const MAX_TASKS = 1000;
/** Launches of one number before the framework gives up. */
const MAX_LAUNCHES = 3;
/** The executor id of every task: tasks on one agent share one executor instance. */
const EXECUTOR_ID = '{{name}}';

/** Task ids are `square-N`: the id says which number a status is about. */
function numberOf(taskId) {
  const m = /^square-([0-9]+)$/.exec(taskId);
  return m ? Number(m[1]) : undefined;
}

/** The numbers still to launch, launches per number, and the squares so far. */
class SquaresScheduler extends Scheduler {
  constructor(args) {
    super(args);
    if (args.length > 1) throw new Error('{{name}}: usage: {{name}} [N]');
    let n = DEFAULT_TASKS;
    if (args.length === 1) {
      const a = args[0];
      if (!/^[0-9]{1,4}$/.test(a) || Number(a) < 1 || Number(a) > MAX_TASKS) {
        throw new Error(`{{name}}: N must be a number from 1 to ${MAX_TASKS}, not ${JSON.stringify(a)}`);
      }
      n = Number(a);
    }
    this.n = n;
    this.toLaunch = [];
    for (let i = n; i >= 1; i--) this.toLaunch.push(i);
    this.launches = new Map();
    this.squared = new Map();
    this.finished = false;
    driver.reportProgress({ total: n });
  }

  finish(outcome) {
    this.finished = true;
    if ('ok' in outcome) driver.succeed(outcome.ok);
    else driver.fail(outcome.err);
  }

  resourceOffers(offers) {
    for (const offer of offers) {
      const left = offer.resources;
      const tasks = [];
      while (!this.finished && this.toLaunch.length > 0 && left.tryTake(PER_TASK)) {
        const n = this.toLaunch.pop();
        this.launches.set(n, (this.launches.get(n) ?? 0) + 1);
        tasks.push(wasmTask({ taskId: `square-${n}`, agentId: offer.agentId, resources: PER_TASK, executorId: EXECUTOR_ID, payload: String(n) }));
      }
      if (tasks.length === 0) {
        // Nothing to run here: refuse this agent for the SDK's default 120 s.
        driver.decline([offer.id]);
        continue;
      }
      try {
        driver.launch([offer.id], tasks);
      } catch (e) {
        driver.warn(`{{name}}: launch failed, retrying on a later offer: ${e.message}`);
        for (const t of tasks) {
          const n = numberOf(t.taskId);
          this.launches.set(n, this.launches.get(n) - 1);
          this.toLaunch.push(n);
        }
      }
    }
    // Nothing left to launch: stop receiving offers.
    if (this.toLaunch.length === 0) driver.suppress();
  }

  statusUpdate(status) {
    const n = numberOf(status.taskId);
    // Updates are delivered at least once: count each number once.
    if (n === undefined || this.finished || this.squared.has(n)) return;
    if (status.state === 'finished') {
      const data = status.text();
      if (!/^[0-9]+$/.test(data)) {
        this.finish({ err: `{{name}}: task ${n} returned ${JSON.stringify(data)}, not a number` });
        return;
      }
      this.squared.set(n, BigInt(data));
      if (this.squared.size === this.n) {
        let sum = 0n;
        for (const s of this.squared.values()) sum += s;
        this.finish({ ok: `{{name}}: sum of squares of 1..=${this.n} = ${sum}` });
      }
    } else if (isTerminal(status.state)) {
      // Failed, lost, ...: launch it again on a later offer, a few times.
      if ((this.launches.get(n) ?? 0) >= MAX_LAUNCHES) {
        this.finish({ err: `{{name}}: task ${n} failed ${MAX_LAUNCHES} times: ${status.message}` });
        return;
      }
      this.toLaunch.push(n);
      driver.revive();
    }
  }
}

/** One instance per executor id on an agent: what it keeps on `this` (here a count) is still
 * there for the next task. An exception fails the task with its message. */
class SquaresExecutor extends Executor {
  constructor() {
    super();
    this.tasksRun = 0;
  }

  launch(task) {
    this.tasksRun += 1;
    const text = task.text().trim();
    if (!/^[0-9]{1,20}$/.test(text)) throw new Error(`payload ${JSON.stringify(task.text())} is not a whole number`);
    const n = BigInt(text);
    const square = n * n;
    // On the agent, in the task's log (`wasmos logs TASK`).
    executorDriver.log('info', `${n} squared is ${square}; task ${this.tasksRun} of this instance`);
    return String(square);
  }
}

export const { scheduler, executor } = framework(SquaresScheduler, SquaresExecutor);
