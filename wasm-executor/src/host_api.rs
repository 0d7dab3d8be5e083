//! Where a guest's import calls go: [`DriverHost`], which the master implements for a hosted
//! scheduler's `driver` import, and [`ExecutorEvent`], what an executor's `executor-driver`
//! calls send to the agent.
//!
//! A leaf: it imports only the generated WIT types, so that `host` (which implements the
//! imports), `executor` and `scheduler` (which create the stores) all depend on it and not on
//! each other. Running instances, limits and errors live in those modules, not here.

use crate::bindings::types::{Filters, FrameworkProgress, LogLevel, TaskInfo};

/// Something an executor reported while running a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutorEvent {
    /// `executor-driver.progress`: becomes a RUNNING status update with this message.
    Progress {
        /// The task that was running when the guest reported it.
        task_id: String,
        /// The guest's message, cut to [`wasmos_api::limits::MAX_STATUS_MESSAGE_BYTES`]
        /// ([`wasmos_api::limits::cut_status_message`]).
        message: String,
    },
    /// `executor-driver.send-framework-message`: bytes for the framework's scheduler.
    FrameworkMessage {
        /// The task that was running when the guest sent it.
        task_id: String,
        /// The bytes, as the guest gave them.
        data: Vec<u8>,
    },
}

/// What a hosted scheduler's `driver` calls do; the master implements it. Calls are made from
/// inside a guest callback, so they must not block: queue the work and return.
///
/// Each method is the WIT import of the same name (`wit/framework.wit`, interface `driver`);
/// the arguments are the guest's, unchecked.
pub trait DriverHost: Send + 'static {
    /// `driver.launch`: launches `tasks` on the offers `offer_ids` (all of one agent); an `Err`
    /// says why nothing was launched.
    fn launch(&mut self, offer_ids: Vec<String>, tasks: Vec<TaskInfo>) -> Result<(), String>;
    /// `driver.decline`: declines offers, not to be offered again for `filters.refuse-seconds`.
    fn decline(&mut self, offer_ids: Vec<String>, filters: Filters);
    /// `driver.kill`: asks the agent to kill a task.
    fn kill(&mut self, task_id: String);
    /// `driver.revive`: clears the framework's filters and resumes offers.
    fn revive(&mut self);
    /// `driver.suppress`: stops offers until `revive`.
    fn suppress(&mut self);
    /// `driver.reconcile`: asks for the latest state of these tasks (all of them when empty).
    fn reconcile(&mut self, task_ids: Vec<String>);
    /// `driver.state-get`: a value the framework stored with `state_put`.
    fn state_get(&mut self, key: String) -> Option<Vec<u8>>;
    /// `driver.state-put`: stores a value durably; an `Err` names the size cap that was hit.
    fn state_put(&mut self, key: String, value: Vec<u8>) -> Result<(), String>;
    /// `driver.finish`: ends the framework with its result (`Ok`) or why it failed (`Err`).
    fn finish(&mut self, outcome: Result<String, String>);
    /// `driver.log`: a line for the framework's log on the master, uncut: the host cuts it and
    /// budgets the framework's lines (`wasmos_api::limits::GUEST_LOG_*`, see
    /// [`crate::log_budget::LogBudget`]).
    fn log(&mut self, level: LogLevel, message: String);
    /// `driver.set-timer`: calls `scheduler.timer(timer_id)` after `delay_ms` milliseconds,
    /// replacing a pending timer of the same id; an `Err` (for the guest) when
    /// [`wasmos_api::limits::MAX_PENDING_TIMERS`] other timers are pending.
    fn set_timer(&mut self, timer_id: u64, delay_ms: u64) -> Result<(), String>;
    /// `driver.report-progress`: what the framework will run in all and the resources of a
    /// task it waits for, for the people watching it; the latest call wins. By default
    /// ignored.
    fn report_progress(&mut self, progress: FrameworkProgress) {
        let _ = progress;
    }
    /// `Some(why)` once the scheduler has asked for more in this callback than the host holds
    /// for it; the host then traps the guest's next `driver` call with `why`, failing the
    /// callback. By default never.
    fn exhausted(&self) -> Option<String> {
        None
    }
}
