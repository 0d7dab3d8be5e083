// A fake of the host's `driver` and `executor-driver` imports: records every call in `calls`
// (`[name, ...args]`) and answers `launch`, `state-put` and `set-timer` with `ok`, or with the
// error in `refuse[name]` thrown as componentize-js's bindings do (an object with `payload`).
export const calls = [];
export const refuse = {};

function call(name, ...args) {
  calls.push([name, ...args]);
  if (refuse[name] !== undefined) {
    const e = new Error(refuse[name]);
    Object.defineProperty(e, 'payload', { value: refuse[name] });
    throw e;
  }
}

export const launch = (ids, tasks) => call('launch', ids, tasks);
export const decline = (ids, filters) => call('decline', ids, filters);
export const kill = (id) => call('kill', id);
export const revive = () => call('revive');
export const suppress = () => call('suppress');
export const reconcile = (ids) => call('reconcile', ids);
export const stateGet = (key) => (call('stateGet', key), undefined);
export const statePut = (key, value) => call('statePut', key, value);
export const finish = (outcome) => call('finish', outcome);
export const log = (level, message) => call('log', level, message);
export const setTimer = (id, delay) => call('setTimer', id, delay);
export const reportProgress = (p) => call('reportProgress', p);
export const progress = (message) => call('progress', message);
export const sendFrameworkMessage = (data) => call('sendFrameworkMessage', data);
