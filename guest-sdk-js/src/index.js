// wasmos: write a wasmos framework in JavaScript.
//
// A wasmos framework is one WebAssembly component holding both halves of a Mesos-style
// framework: the scheduler (hosted by the leading master, told about offers and task status,
// answering through `driver`) and the executor (run by agents, one task at a time per executor
// id, keeping its state between tasks). This module is the JavaScript shape of the Rust SDK
// (`guest-sdk/`): subclass `Scheduler` and `Executor`, export both with `framework()`, and
// build the file with `wasmos-js-build` (componentize-js: the StarlingMonkey engine plus your
// code, as one component of the `wasmos:framework` world in `wit/framework.wit`).
//
// What lives here: the two base classes, the export glue (`framework`) and its handling of
// exceptions and of calls at the wrong time, the `driver` and `executorDriver` wrappers over
// the host imports with the same safe defaults as the Rust SDK (a 120 s refusal when declining,
// `suppress` when idle), and small helpers (`Resources`, `wasmTask`, `commandTask`,
// `isTerminal`). The component model's 64-bit integers arrive as BigInt; this module turns
// them into plain numbers on the way in and back on the way out, refusing numbers that are not
// safe non-negative integers where they enter.

import * as imports from 'wasmos:framework/driver@0.1.0';
import * as executorImports from 'wasmos:framework/executor-driver@0.1.0';

/**
 * How long `driver.decline` keeps an agent's resources away from this framework: 120 s.
 * Mesos defaults to 5 s, and with many frameworks the ones that decline keep being re-offered
 * the same resources while others starve. `driver.revive()` clears every filter, so a long
 * default costs a framework that has work again nothing.
 */
export const DEFAULT_REFUSE_SECONDS = 120;

/** Task states after which a task never changes again (`unreachable` is not one). */
const TERMINAL = new Set(['finished', 'failed', 'killed', 'lost', 'error']);

/** Whether a task in `state` will not change state again. */
export function isTerminal(state) {
  return TERMINAL.has(state);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** `value` as bytes: a string is UTF-8 encoded, a Uint8Array passes, anything else throws. */
export function toBytes(value, what = 'value') {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return encoder.encode(value);
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  throw new TypeError(`${what} must be a string or a Uint8Array, not ${describe(value)}`);
}

/** `bytes` decoded as UTF-8 (invalid sequences become U+FFFD). */
export function text(bytes) {
  return bytes === undefined ? '' : decoder.decode(bytes);
}

function describe(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? `an object (${v.constructor?.name ?? 'Object'})` : typeof v;
}

/** A u64 the host gave us, as a number (values past 2^53 lose precision; none we use do). */
function fromU64(v) {
  return typeof v === 'bigint' ? Number(v) : v;
}

/** A number or BigInt for a u64 parameter, checked: a safe non-negative integer. */
function toU64(v, what) {
  if (typeof v === 'bigint') {
    if (v < 0n || v > 0xffff_ffff_ffff_ffffn) throw new RangeError(`${what} ${v} is out of the u64 range`);
    return v;
  }
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new RangeError(`${what} must be a whole number from 0 to 2^53-1, not ${String(v)}`);
  }
  return BigInt(v);
}

/** An amount of resources: thousandths of a core, MiB of memory, MiB of disk. */
export class Resources {
  constructor(millicpus = 0, memMb = 0, diskMb = 0) {
    this.millicpus = millicpus;
    this.memMb = memMb;
    this.diskMb = diskMb;
  }

  /** CPU and memory, no disk: what most Wasm tasks ask for. */
  static cpuMem(millicpus, memMb) {
    return new Resources(millicpus, memMb, 0);
  }

  /** The resources of a WIT record (`offer.resources`), as plain numbers. */
  static from(r) {
    return new Resources(fromU64(r.millicpus), fromU64(r.memMb), fromU64(r.diskMb));
  }

  /** Whether every amount is zero. */
  isZero() {
    return this.millicpus === 0 && this.memMb === 0 && this.diskMb === 0;
  }

  /** Whether `this` fits in `available`: no amount is larger. */
  fits(available) {
    return (
      this.millicpus <= available.millicpus &&
      this.memMb <= available.memMb &&
      this.diskMb <= available.diskMb
    );
  }

  /** Takes `need` out of `this` if it fits and says whether it did (packing tasks in an offer). */
  tryTake(need) {
    if (!need.fits(this)) return false;
    this.millicpus -= need.millicpus;
    this.memMb -= need.memMb;
    this.diskMb -= need.diskMb;
    return true;
  }

  /** How many copies of `this` fit in `available` (Infinity if `this` is zero). */
  countIn(available) {
    let n = Infinity;
    for (const k of ['millicpus', 'memMb', 'diskMb']) {
      if (this[k] > 0) n = Math.min(n, Math.floor(available[k] / this[k]));
    }
    return n;
  }

  /** `cpus 1.5, mem 512 MiB, disk 0 MiB`. */
  toString() {
    return `cpus ${this.millicpus / 1000}, mem ${this.memMb} MiB, disk ${this.diskMb} MiB`;
  }

  /** The WIT record, with the amounts checked and as BigInt. */
  toWit() {
    return {
      millicpus: toU64(this.millicpus, 'millicpus'),
      memMb: toU64(this.memMb, 'memMb'),
      diskMb: toU64(this.diskMb, 'diskMb'),
    };
  }
}

/**
 * A task for this framework's own executor: runs `payload` (a string or bytes) in executor
 * `executorId` on `agentId`. `name` defaults to the task id; `timeoutSeconds` and `fuel`
 * default to the framework's (else the agent's) limits.
 */
export function wasmTask({ taskId, agentId, resources, executorId, payload = '', name, timeoutSeconds, fuel }) {
  return {
    taskId,
    name: name ?? taskId,
    agentId,
    resources,
    kind: { tag: 'wasm', executorId, payload, timeoutSeconds, fuel },
  };
}

/**
 * A native command task (`argv[0]` looked up on the agent's PATH; nothing of the agent's
 * environment is inherited but `env`, a list of `[name, value]` pairs). Only roles the
 * cluster's ACLs allow may run these.
 */
export function commandTask({ taskId, agentId, resources, argv, env = [], name }) {
  return { taskId, name: name ?? taskId, agentId, resources, kind: { tag: 'command', argv, env } };
}

function taskToWit(t) {
  if (t === null || typeof t !== 'object') {
    throw new TypeError(`a task must be an object (wasmTask(...) or commandTask(...)), not ${describe(t)}`);
  }
  const resources = t.resources instanceof Resources ? t.resources : Resources.from(t.resources ?? {});
  const k = t.kind ?? {};
  let kind;
  if (k.tag === 'wasm') {
    kind = {
      tag: 'wasm',
      val: {
        executorId: String(k.executorId),
        payload: toBytes(k.payload, `task ${t.taskId}'s payload`),
        timeoutSeconds: k.timeoutSeconds ?? undefined,
        fuel: k.fuel === undefined || k.fuel === null ? undefined : toU64(k.fuel, `task ${t.taskId}'s fuel`),
      },
    };
  } else if (k.tag === 'command') {
    kind = { tag: 'command', val: { argv: k.argv.map(String), env: k.env.map(([a, b]) => [String(a), String(b)]) } };
  } else {
    throw new TypeError(`task ${t.taskId} has no kind: build it with wasmTask(...) or commandTask(...)`);
  }
  return {
    taskId: String(t.taskId),
    name: String(t.name ?? t.taskId),
    agentId: String(t.agentId),
    resources: resources.toWit(),
    kind,
  };
}

/** The error a host import returned (`result<_, string>`), as a JavaScript Error. */
function hostError(call, e) {
  const reason = e && Object.prototype.hasOwnProperty.call(e, 'payload') ? String(e.payload) : String(e?.message ?? e);
  return new Error(`${call}: ${reason}`);
}

/** Declining needs at least 0 s (NaN and negatives count as 0; the master raises it to 1 s). */
function refuse(seconds) {
  return Number.isNaN(seconds) || seconds < 0 ? 0 : Number(seconds);
}

/**
 * What a scheduler can ask of the master. Only the scheduler half may call these; from an
 * executor the host refuses them.
 */
export const driver = {
  /**
   * Launches `tasks` (from `wasmTask`/`commandTask`) on the offers `offerIds` (all of one
   * agent). Throws, launching nothing, when an offer is unknown or stale, the tasks do not fit,
   * a task id is reused, or the framework's role forbids a kind.
   */
  launch(offerIds, tasks) {
    const wit = tasks.map(taskToWit);
    try {
      imports.launch(offerIds.map(String), wit);
    } catch (e) {
      throw hostError('launch', e);
    }
  },

  /** Declines offers, refusing their agents for `refuseSeconds` (default 120 s). */
  decline(offerIds, refuseSeconds = DEFAULT_REFUSE_SECONDS) {
    if (offerIds.length === 0) return;
    imports.decline(offerIds.map(String), { refuseSeconds: refuse(refuseSeconds) });
  },

  /** Asks the agent to kill a task; a `killed` status update follows. */
  kill(taskId) {
    imports.kill(String(taskId));
  },

  /** Clears this framework's filters and resumes offers after `suppress`. */
  revive() {
    imports.revive();
  },

  /**
   * Stops offers to this framework until `revive`. Call it whenever there is nothing to
   * launch: an idle framework that keeps receiving offers delays everyone else's.
   */
  suppress() {
    imports.suppress();
  },

  /** Asks for the latest state of `taskIds` (all tasks when empty); answers come as `statusUpdate`. */
  reconcile(taskIds = []) {
    imports.reconcile(taskIds.map(String));
  },

  /** A value stored with `statePut`, as bytes, or undefined. */
  stateGet(key) {
    return imports.stateGet(String(key)) ?? undefined;
  },

  /** Stores a value (string or bytes) durably; throws naming the cap a too-large key or value hit. */
  statePut(key, value) {
    try {
      imports.statePut(String(key), toBytes(value, `state value of ${key}`));
    } catch (e) {
      throw hostError('statePut', e);
    }
  },

  /** Ends the framework successfully with `result`. Running tasks are killed. */
  succeed(result) {
    imports.finish({ tag: 'ok', val: String(result) });
  },

  /** Ends the framework as failed, with `reason`. Running tasks are killed. */
  fail(reason) {
    imports.finish({ tag: 'err', val: String(reason) });
  },

  /**
   * Writes a line to the framework's log on the master (`trace`, `debug`, `info`, `warn`,
   * `error`). Lines are cut to 4,096 bytes and budgeted by the master.
   */
  log(level, message) {
    imports.log(level, String(message));
  },
  debug(message) {
    imports.log('debug', String(message));
  },
  info(message) {
    imports.log('info', String(message));
  },
  warn(message) {
    imports.log('warn', String(message));
  },
  error(message) {
    imports.log('error', String(message));
  },

  /**
   * Calls the scheduler's `timer(timerId)` after `delayMs` milliseconds (at most a day);
   * throws, setting nothing, when 1,024 other timers are pending or the framework finished.
   */
  setTimer(timerId, delayMs) {
    const id = toU64(timerId, 'timer id');
    const delay = toU64(Math.max(0, Math.ceil(Number(delayMs))), 'timer delay');
    try {
      imports.setTimer(id, delay);
    } catch (e) {
      throw hostError('setTimer', e);
    }
  },

  /**
   * Tells the people watching the framework how many tasks it runs in all (`total`) and the
   * resources of a task it has no fitting offer for (`waitingFor`, a `Resources`; undefined
   * once nothing waits). The latest call wins.
   */
  reportProgress({ total, waitingFor } = {}) {
    imports.reportProgress({
      tasksTotal: total === undefined || total === null ? undefined : toU64(total, 'tasks total'),
      waitingFor: waitingFor ? Resources.from(waitingFor).toWit() : undefined,
    });
  },
};

/** What an executor can ask of its agent while it runs a task. */
export const executorDriver = {
  /** Writes a line to the task's log on the agent (budgeted per framework and agent). */
  log(level, message) {
    executorImports.log(level, String(message));
  },
  /** Reports progress: a `running` status with this message (cut to 4,096 bytes). */
  progress(message) {
    executorImports.progress(String(message));
  },
  /** Sends bytes (or a string) to the scheduler's `frameworkMessage`, at most 4 MiB. */
  sendFrameworkMessage(data) {
    executorImports.sendFrameworkMessage(toBytes(data, 'framework message'));
  },
};

/**
 * The scheduler half. Subclass it: the constructor receives the arguments given to `wasmos
 * submit` (throwing fails the framework with the error's message), and each method is called
 * one at a time. The base class runs nothing: it declines every offer (120 s) and suppresses.
 */
export class Scheduler {
  constructor(_args) {}

  /** New offers (with `resources` as a `Resources`). Launch on or decline each. */
  resourceOffers(offers) {
    driver.decline(offers.map((o) => o.id));
    driver.suppress();
  }

  /**
   * A task changed state: `{taskId, agentId, state, message, data}` (`data`: the bytes a
   * finished Wasm task returned; `status.text()` decodes them). Delivery is at least once.
   */
  statusUpdate(_status) {}

  /** An offer is no longer valid. */
  offerRescinded(_offerId) {}

  /** A timer set with `driver.setTimer` fired. */
  timer(_timerId) {}

  /** An executor sent bytes with `executorDriver.sendFrameworkMessage`. */
  frameworkMessage(_agentId, _executorId, _data) {}
}

/**
 * The executor half. Subclass it: one instance lives in each executor instance, created before
 * its first task; `launch(task)` runs each task of that executor id on that agent, one at a
 * time, so whatever it keeps in `this` is there for the next task. `task` is
 * `{taskId, executorId, payload}` (`payload` bytes; `task.text()` decodes them). Return a
 * string or bytes as the task's result; throw to fail the task with the error's message (the
 * executor is then created afresh for the next task).
 */
export class Executor {
  launch(_task) {
    throw new Error(`${this.constructor.name} does not implement launch(task)`);
  }
}

/** `Name: message` of something thrown. */
export function describeError(e) {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return `uncaught ${describe(e)}: ${String(e)}`;
}

/** Writes what was thrown, with its stack, to stderr (the host keeps the tail of stderr). */
function report(where, e) {
  const stack = e instanceof Error && e.stack ? `\n${e.stack}` : '';
  console.error(`${where} raised ${describeError(e)}${stack}`);
}

function offerFromWit(o) {
  return {
    id: o.id,
    agentId: o.agentId,
    hostname: o.hostname,
    resources: Resources.from(o.resources),
    attributes: o.attributes,
  };
}

function statusFromWit(s) {
  return {
    taskId: s.taskId,
    agentId: s.agentId ?? undefined,
    state: s.state,
    message: s.message,
    data: s.data ?? undefined,
    text() {
      return text(this.data);
    },
  };
}

/**
 * The exports of a component whose scheduler is `SchedulerClass` and executor
 * `ExecutorClass` (either may be omitted: the base classes decline everything / fail every
 * task). Use it as
 *
 *     export const { scheduler, executor } = framework(MyScheduler, MyExecutor);
 *
 * An exception out of a scheduler method other than the constructor is written to stderr with
 * its stack and ends the framework as failed with `scheduler.<callback> raised Name: message`
 * (the callback then returns normally, so the master applies that failure rather than a trap).
 * Calls before a successful constructor, or re-entrant calls, are logged and dropped (offers
 * are declined so they are not hoarded).
 */
export function framework(SchedulerClass = Scheduler, ExecutorClass = Executor) {
  let state; // the Scheduler, once constructed
  let busy = false;
  let failed = false; // an exception ended the framework; later calls are dropped
  let exec; // the Executor, created on the first task
  let execBusy = false;

  function withScheduler(call, f) {
    if (failed) return false;
    if (state === undefined || busy) {
      const why = busy ? 'while another scheduler call was running' : 'before a successful init';
      imports.log('error', `scheduler.${call} called ${why}; ignored`);
      return false;
    }
    busy = true;
    try {
      f(state);
    } catch (e) {
      report(`scheduler.${call}`, e);
      failed = true;
      imports.finish({ tag: 'err', val: `scheduler.${call} raised ${describeError(e)}` });
    } finally {
      busy = false;
    }
    return true;
  }

  const scheduler = {
    init(args) {
      if (state !== undefined || busy) {
        return { tag: 'err', val: 'scheduler.init called twice on the same instance' };
      }
      busy = true;
      try {
        state = new SchedulerClass(args);
        return { tag: 'ok', val: undefined };
      } catch (e) {
        report('scheduler.init', e);
        // A plain `throw new Error("bad count")` is the framework's own message; a TypeError
        // and the like keep their name, which says it was a bug.
        const plain = e instanceof Error && e.constructor === Error;
        return { tag: 'err', val: plain ? e.message : describeError(e) };
      } finally {
        busy = false;
      }
    },
    resourceOffers(offers) {
      const handled = withScheduler('resource-offers', (s) => s.resourceOffers(offers.map(offerFromWit)));
      if (!handled) {
        const ids = offers.map((o) => o.id);
        if (ids.length > 0) imports.decline(ids, { refuseSeconds: DEFAULT_REFUSE_SECONDS });
      }
    },
    statusUpdate(status) {
      withScheduler('status-update', (s) => s.statusUpdate(statusFromWit(status)));
    },
    offerRescinded(offerId) {
      withScheduler('offer-rescinded', (s) => s.offerRescinded(offerId));
    },
    timer(timerId) {
      withScheduler('timer', (s) => s.timer(fromU64(timerId)));
    },
    frameworkMessage(agentId, executorId, data) {
      withScheduler('framework-message', (s) => s.frameworkMessage(agentId, executorId, data));
    },
  };

  const executor = {
    launch(task) {
      if (execBusy) {
        return {
          tag: 'err',
          val: `task ${task.taskId}: executor.launch called while executor ${task.executorId} was running another task`,
        };
      }
      execBusy = true;
      try {
        exec ??= new ExecutorClass();
        const t = {
          taskId: task.taskId,
          executorId: task.executorId,
          payload: task.payload,
          text() {
            return text(this.payload);
          },
        };
        return { tag: 'ok', val: toBytes(exec.launch(t), `the result of task ${task.taskId}`) };
      } catch (e) {
        report(`task ${task.taskId}`, e);
        // Its state may be half-updated: the next task starts from a new executor.
        exec = undefined;
        return { tag: 'err', val: describeError(e) };
      } finally {
        execBusy = false;
      }
    },
  };

  return { scheduler, executor };
}
