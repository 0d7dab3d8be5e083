//! What a scheduler can ask of the master: thin wrappers over the imported
//! `wasmos:framework/driver` interface, plus the defaults a framework author should not have to
//! think about (a long refusal when declining).
//!
//! Only the scheduler half may call these; from an executor the host refuses them.

use std::time::Duration;

use crate::__bindings::wasmos::framework::driver as imports;
use crate::__bindings::wasmos::framework::types::FrameworkProgress;
use crate::{Filters, LogLevel, Resources, TaskInfo};

/// How long [`decline`] keeps an agent's resources away from this framework: 120 s.
///
/// Mesos defaults to 5 s, and with many frameworks the ones that decline keep being re-offered
/// the same resources while larger frameworks starve (Marathon, Spark and Jenkins all raised it
/// by hand). A framework that has work again calls [`revive`], which clears every filter, so a
/// long default costs nothing.
pub const DEFAULT_REFUSE_SECONDS: f64 = 120.0;

/// Launches `tasks` on the offers `offer_ids` (all of one agent). Offered resources the tasks do
/// not use return to the pool. On `Err` nothing was launched: an offer was unknown or stale, the
/// tasks did not fit, a task id was reused, or the framework's role forbids a task kind.
pub fn launch(offer_ids: &[String], tasks: &[TaskInfo]) -> Result<(), String> {
    imports::launch(offer_ids, tasks)
}

/// Declines offers, refusing their agents for [`DEFAULT_REFUSE_SECONDS`].
pub fn decline(offer_ids: &[String]) {
    decline_with(offer_ids, Filters::default());
}

/// Declines offers, refusing their agents for `refuse_seconds` (negative or NaN counts as 0).
pub fn decline_for(offer_ids: &[String], refuse_seconds: f64) {
    decline_with(offer_ids, Filters::refuse(refuse_seconds));
}

/// Declines offers with explicit filters.
pub fn decline_with(offer_ids: &[String], filters: Filters) {
    if offer_ids.is_empty() {
        return;
    }
    imports::decline(offer_ids, filters);
}

/// Asks the agent to kill a task; a `killed` status update follows.
pub fn kill(task_id: &str) {
    imports::kill(task_id);
}

/// Clears this framework's filters and resumes offers after [`suppress`].
pub fn revive() {
    imports::revive();
}

/// Stops offers to this framework until [`revive`]. Call it whenever there is nothing to launch:
/// an idle framework that keeps receiving offers delays everyone else's.
pub fn suppress() {
    imports::suppress();
}

/// Asks for the latest state of the given tasks; answers arrive as `status_update` calls.
pub fn reconcile(task_ids: &[String]) {
    imports::reconcile(task_ids);
}

/// Asks for the latest state of every task the master knows for this framework (implicit
/// reconciliation). Worth doing in `init`, which also runs after a master failover.
pub fn reconcile_all() {
    imports::reconcile(&[]);
}

/// Reads a value stored with [`state_put`].
pub fn state_get(key: &str) -> Option<Vec<u8>> {
    imports::state_get(key)
}

/// Stores a value durably (replicated with the master's registry). Keys and values are
/// size-capped; `Err` says which cap was hit.
pub fn state_put(key: &str, value: &[u8]) -> Result<(), String> {
    imports::state_put(key, value)
}

/// Ends the framework: `Ok` with its result, or `Err` with why it failed. Running tasks are
/// killed and executors shut down.
pub fn finish(outcome: Result<String, String>) {
    imports::finish(outcome.as_deref().map_err(String::as_str));
}

/// Writes a line to the framework's log on the master. Lines are cut to 4,096 bytes and
/// budgeted (100 lines and 64 KiB a second, bursts of 1,000 lines and 256 KiB); lines past the
/// budget are dropped and counted by the master.
pub fn log(level: LogLevel, message: &str) {
    imports::log(level, message);
}

/// [`log`] at `debug`.
pub fn debug(message: &str) {
    log(LogLevel::Debug, message);
}

/// [`log`] at `info`.
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// [`log`] at `warn`.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// [`log`] at `error`.
pub fn error(message: &str) {
    log(LogLevel::Error, message);
}

/// Calls the scheduler's `timer(timer_id)` after `delay_ms` milliseconds (at most a day);
/// setting a pending timer id again replaces it. Fails, setting nothing, when
/// 1,024 other timers are pending (the master's cap) or the framework has finished.
pub fn set_timer(timer_id: u64, delay_ms: u64) -> Result<(), String> {
    imports::set_timer(timer_id, delay_ms)
}

/// [`set_timer`] with a [`Duration`] (saturating at `u64::MAX` milliseconds).
pub fn set_timer_after(timer_id: u64, delay: Duration) -> Result<(), String> {
    set_timer(
        timer_id,
        u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
    )
}

/// Tells the people watching the framework (`wasmos status`, `wasmos submit`'s progress line)
/// how many tasks it will run in all (`total`, shown as `37/100 finished`) and the resources of
/// a task it wants to launch and has no fitting offer for (`waiting_for`; `None` once nothing
/// waits). The latest call wins; call it when either changes, e.g. in `init` with the total and
/// when an offer is too small for the next task.
///
/// When a task has waited for more than about 3 s, the master compares `waiting_for` with its
/// agents and says why it waits: "waiting: tasks need 8 CPUs, the largest agent has 2", or "...,
/// no agent has them free (most free: 1.5)". Kept in the master's memory, not replicated: after
/// a master failover `init` runs again, so report there. Ignored after [`finish`].
pub fn report_progress(total: Option<u64>, waiting_for: Option<&Resources>) {
    imports::report_progress(FrameworkProgress {
        tasks_total: total,
        waiting_for: waiting_for.copied(),
    });
}
