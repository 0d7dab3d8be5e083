//! What an executor can ask of its agent while a task runs: thin wrappers over the imported
//! `wasmos:framework/executor-driver` interface.
//!
//! Only the executor half may call these; from the scheduler the host refuses them.

use crate::__bindings::wasmos::framework::executor_driver as imports;
use crate::LogLevel;

/// Writes a line to the current task's log on the agent. Lines are cut to 4,096 bytes and
/// budgeted per framework (100 lines and 64 KiB a second, bursts of 1,000 lines and 256 KiB);
/// lines past the budget are dropped and counted by the agent.
pub fn log(level: LogLevel, message: &str) {
    imports::log(level, message);
}

/// [`log`] at `info`.
pub fn info(message: &str) {
    log(LogLevel::Info, message);
}

/// [`log`] at `warn`.
pub fn warn(message: &str) {
    log(LogLevel::Warn, message);
}

/// Reports progress on the current task; the scheduler sees a `running` status with this
/// message.
pub fn progress(message: &str) {
    imports::progress(message);
}

/// Sends bytes to this framework's scheduler, which receives them in
/// [`crate::Scheduler::framework_message`].
pub fn send_framework_message(data: &[u8]) {
    imports::send_framework_message(data);
}
