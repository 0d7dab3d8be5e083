// The SDK's JavaScript, run under Node against a fake host (register.mjs): the export glue,
// the driver's conversions and defaults, and what happens to exceptions. The real host is
// exercised end to end by cli/tests/javascript.rs.
import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';

import { calls, refuse } from './fake-host.mjs';
import {
  DEFAULT_REFUSE_SECONDS,
  Executor,
  Resources,
  Scheduler,
  driver,
  framework,
  isTerminal,
  wasmTask,
} from '../src/index.js';

beforeEach(() => {
  calls.length = 0;
  for (const k of Object.keys(refuse)) delete refuse[k];
});

const offer = (id, cpus = 1000n, mem = 1024n) => ({
  id,
  agentId: 'a1',
  hostname: 'h1',
  resources: { millicpus: cpus, memMb: mem, diskMb: 0n },
  attributes: [],
});

test('the base scheduler declines with the long default and suppresses', () => {
  const { scheduler } = framework();
  assert.deepEqual(scheduler.init([]), { tag: 'ok', val: undefined });
  scheduler.resourceOffers([offer('o1'), offer('o2')]);
  assert.deepEqual(calls, [['decline', ['o1', 'o2'], { refuseSeconds: 120 }], ['suppress']]);
  assert.equal(DEFAULT_REFUSE_SECONDS, 120);
});

test('decline clamps NaN and negative refusals to 0 and skips an empty list', () => {
  driver.decline([]);
  driver.decline(['o'], NaN);
  driver.decline(['o'], -5);
  driver.decline(['o'], 7);
  assert.deepEqual(calls, [
    ['decline', ['o'], { refuseSeconds: 0 }],
    ['decline', ['o'], { refuseSeconds: 0 }],
    ['decline', ['o'], { refuseSeconds: 7 }],
  ]);
});

test('offers arrive as Resources of numbers and launches leave as BigInt records', () => {
  class One extends Scheduler {
    resourceOffers(offers) {
      const left = offers[0].resources;
      assert.ok(left instanceof Resources);
      assert.equal(left.millicpus, 1000);
      const need = Resources.cpuMem(400, 100);
      assert.equal(need.countIn(left), 2);
      assert.ok(left.tryTake(need) && left.tryTake(need) && !left.tryTake(need));
      assert.equal(left.toString(), 'cpus 0.2, mem 824 MiB, disk 0 MiB');
      driver.launch([offers[0].id], [
        wasmTask({ taskId: 't1', agentId: 'a1', resources: need, executorId: 'e', payload: 'hi', fuel: 5 }),
      ]);
    }
  }
  const { scheduler } = framework(One);
  scheduler.init([]);
  scheduler.resourceOffers([offer('o1')]);
  const [name, ids, tasks] = calls[0];
  assert.equal(name, 'launch');
  assert.deepEqual(ids, ['o1']);
  assert.deepEqual(tasks[0].resources, { millicpus: 400n, memMb: 100n, diskMb: 0n });
  assert.equal(tasks[0].name, 't1');
  assert.equal(tasks[0].kind.tag, 'wasm');
  assert.deepEqual([...tasks[0].kind.val.payload], [...new TextEncoder().encode('hi')]);
  assert.equal(tasks[0].kind.val.fuel, 5n);
});

test('u64 inputs are checked where they enter: at the bound, one past, far past', () => {
  driver.setTimer(Number.MAX_SAFE_INTEGER, 10);
  assert.equal(calls[0][1], BigInt(Number.MAX_SAFE_INTEGER));
  assert.throws(() => driver.setTimer(Number.MAX_SAFE_INTEGER + 1, 10), RangeError);
  assert.throws(() => driver.setTimer(1e300, 10), RangeError);
  assert.throws(() => driver.setTimer(-1, 10), RangeError);
  assert.throws(() => driver.setTimer(1.5, 10), RangeError);
  driver.setTimer(0xffff_ffff_ffff_ffffn, 0);
  assert.throws(() => driver.setTimer(0x1_0000_0000_0000_0000n, 0), RangeError);
  assert.throws(() => new Resources(-1, 0, 0).toWit(), RangeError);
  assert.equal(calls.length, 2, 'refused inputs reach no host call');
});

test('a refused launch throws an Error naming the call and the host reason', () => {
  refuse.launch = 'offer o9 is unknown or stale';
  assert.throws(
    () => driver.launch(['o9'], [wasmTask({ taskId: 't', agentId: 'a', resources: new Resources(1, 1), executorId: 'e' })]),
    { message: 'launch: offer o9 is unknown or stale' },
  );
  assert.throws(() => driver.launch(['o9'], [{ taskId: 't' }]), /has no kind/);
});

test('an exception in init fails it with the message; a TypeError keeps its name', () => {
  class Bad extends Scheduler {
    constructor(args) {
      super(args);
      if (args[0] === 'plain') throw new Error('squares: bad N "x"');
      null.boom;
    }
  }
  assert.deepEqual(framework(Bad).scheduler.init(['plain']), { tag: 'err', val: 'squares: bad N "x"' });
  const r = framework(Bad).scheduler.init(['other']);
  assert.equal(r.tag, 'err');
  assert.match(r.val, /^TypeError: /);
});

test('an exception in a callback fails the framework with Name: message, once', () => {
  class Raises extends Scheduler {
    statusUpdate(s) {
      throw new RangeError(`no such task ${s.taskId}`);
    }
  }
  const { scheduler } = framework(Raises);
  scheduler.init([]);
  const status = { taskId: 't1', agentId: 'a1', state: 'running', message: '', data: undefined };
  scheduler.statusUpdate(status);
  assert.deepEqual(calls, [['finish', { tag: 'err', val: 'scheduler.status-update raised RangeError: no such task t1' }]]);
  // Later calls after the failure are dropped, offers included (the framework is ending).
  scheduler.statusUpdate(status);
  scheduler.timer(3n);
  assert.equal(calls.length, 1);
});

test('calls before init are logged and offers declined, not hoarded', () => {
  const { scheduler } = framework(Scheduler);
  scheduler.resourceOffers([offer('o1')]);
  scheduler.timer(1n);
  assert.deepEqual(calls, [
    ['log', 'error', 'scheduler.resource-offers called before a successful init; ignored'],
    ['decline', ['o1'], { refuseSeconds: 120 }],
    ['log', 'error', 'scheduler.timer called before a successful init; ignored'],
  ]);
  const { scheduler: twice } = framework(Scheduler);
  twice.init([]);
  assert.equal(twice.init([]).tag, 'err');
});

test('the executor keeps its state across tasks and starts afresh after an exception', () => {
  class Count extends Executor {
    constructor() {
      super();
      this.n = 0;
    }
    launch(task) {
      if (task.text() === 'fail') throw new Error('asked to fail');
      this.n += 1;
      return String(this.n);
    }
  }
  const { executor } = framework(Scheduler, Count);
  const task = (p) => ({ taskId: 't', executorId: 'e', payload: new TextEncoder().encode(p) });
  const out = (r) => (r.tag === 'ok' ? new TextDecoder().decode(r.val) : r);
  assert.equal(out(executor.launch(task('a'))), '1');
  assert.equal(out(executor.launch(task('a'))), '2');
  assert.deepEqual(executor.launch(task('fail')), { tag: 'err', val: 'Error: asked to fail' });
  assert.equal(out(executor.launch(task('a'))), '1');

  class Wrong extends Executor {
    launch() {
      return 42;
    }
  }
  const r = framework(Scheduler, Wrong).executor.launch(task('x'));
  assert.equal(r.tag, 'err');
  assert.match(r.val, /must be a string or a Uint8Array, not number/);
  assert.match(framework().executor.launch(task('x')).val, /does not implement launch/);
});

test('terminal states', () => {
  assert.ok(isTerminal('lost') && isTerminal('finished'));
  assert.ok(!isTerminal('unreachable') && !isTerminal('running'));
});
