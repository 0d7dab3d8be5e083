//! The per-store host state: the WASI context, the resource limiter, and the implementations of
//! the framework world's imports (`driver` for schedulers, `executor-driver` for executors).
//!
//! One type serves both halves so that one `Linker` and one compiled component serve the agent
//! and the master. Which half a store belongs to decides which imports work: an executor calling
//! `driver` (or a scheduler calling `executor-driver`) traps with a message naming the mistake.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmos_api::limits::{MAX_FRAMEWORK_MESSAGE_BYTES, cut_status_message};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::types::{Filters, FrameworkProgress, LogLevel, TaskInfo};
use crate::bindings::wasmos::framework::{driver, executor_driver, types};
use crate::events::EventSender;
use crate::host_api::DriverHost;
use crate::log_budget::LogBudget;
use crate::output::CappedOutput;

/// Enforces a store's memory, table and instance caps, and remembers why it refused.
pub(crate) struct Limiter {
    pub memory_bytes: usize,
    pub max_table_elements: usize,
    pub max_tables: usize,
    pub max_memories: usize,
    pub max_instances: usize,
    /// Set when a memory growth was refused: the size that was asked for.
    pub denied_memory: Option<usize>,
}

/// Marker error returned from the limiter so the trap can be recognised.
#[derive(Debug, thiserror::Error)]
#[error("linear memory limit exceeded")]
pub(crate) struct MemoryLimitExceeded;

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.denied_memory = Some(desired);
            // An error (rather than `Ok(false)`) traps at once, so the task fails with a clear
            // reason instead of the guest's allocator aborting somewhere later.
            return Err(wasmtime::Error::new(MemoryLimitExceeded));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.max_table_elements)
    }

    fn instances(&self) -> usize {
        self.max_instances
    }
    fn tables(&self) -> usize {
        self.max_tables
    }
    fn memories(&self) -> usize {
        self.max_memories
    }
}

/// Which half of the framework a store runs, with what that half's imports need.
pub(crate) enum Role {
    /// An executor instance on an agent. Events of the task currently running go to `events`;
    /// its `log` lines are budgeted by `log`, shared by the framework's executors on this host.
    Executor {
        events: Option<EventSender>,
        task_id: String,
        framework_id: String,
        log: Arc<Mutex<LogBudget>>,
        /// The instance's stderr: admitted `log` lines are also written there (to the running
        /// task's stderr while one runs). `None`: only to the host's log.
        stderr: Option<CappedOutput>,
    },
    /// A scheduler instance on the master.
    Scheduler { driver: Box<dyn DriverHost> },
}

/// Data of one store.
pub(crate) struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Limiter,
    pub role: Role,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    fn driver(&mut self, call: &str) -> wasmtime::Result<&mut dyn DriverHost> {
        match &mut self.role {
            Role::Scheduler { driver } => match driver.exhausted() {
                // A trap, not an error the guest could ignore and call again.
                Some(why) => Err(wasmtime::format_err!("driver.{call} refused: {why}")),
                None => Ok(driver.as_mut()),
            },
            Role::Executor { .. } => Err(wasmtime::format_err!(
                "executor called driver.{call}, which only a framework's scheduler may use; \
                 executors report through executor-driver"
            )),
        }
    }

    fn executor_events(&mut self, call: &str) -> wasmtime::Result<(&Option<EventSender>, &str)> {
        match &self.role {
            Role::Executor {
                events, task_id, ..
            } => Ok((events, task_id.as_str())),
            Role::Scheduler { .. } => Err(wasmtime::format_err!(
                "scheduler called executor-driver.{call}, which only a framework's executor \
                 may use; schedulers report through driver"
            )),
        }
    }
}

/// A log level as written in a task's stderr.
pub(crate) fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Trace => "TRACE",
        LogLevel::Debug => "DEBUG",
        LogLevel::Info => "INFO",
        LogLevel::Warn => "WARN",
        LogLevel::Error => "ERROR",
    }
}

/// Writes a guest's line that its framework's [`LogBudget`] admitted (already cut).
pub(crate) fn log_line(level: LogLevel, framework_id: &str, who: &str, message: &str) {
    match level {
        LogLevel::Trace => {
            tracing::trace!(target: "wasmos::guest", %framework_id, %who, "{message}")
        }
        LogLevel::Debug => {
            tracing::debug!(target: "wasmos::guest", %framework_id, %who, "{message}")
        }
        LogLevel::Info => tracing::info!(target: "wasmos::guest", %framework_id, %who, "{message}"),
        LogLevel::Warn => tracing::warn!(target: "wasmos::guest", %framework_id, %who, "{message}"),
        LogLevel::Error => {
            tracing::error!(target: "wasmos::guest", %framework_id, %who, "{message}")
        }
    }
}

impl types::Host for HostState {}

impl executor_driver::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.executor_events("log")?;
        let Role::Executor {
            task_id,
            framework_id,
            log,
            stderr,
            ..
        } = &self.role
        else {
            return Ok(());
        };
        // Guests choose how much they write: the framework's budget decides what reaches the
        // host's log, and the drops are counted in one line per interval.
        let admission = log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .admit(Instant::now(), &message);
        if let Some(line) = admission.line {
            if let Some(out) = stderr {
                out.write_line(&format!("{} {line}", level_name(level)));
            }
            log_line(level, framework_id, task_id, &line);
        }
        if let Some(dropped) = admission.report {
            tracing::warn!(target: "wasmos::guest", %framework_id, "{}", dropped.message(framework_id));
        }
        Ok(())
    }

    fn progress(&mut self, message: String) -> wasmtime::Result<()> {
        let (events, task_id) = self.executor_events("progress")?;
        if let Some(tx) = events {
            // It becomes a status message: cut to that bound, with its marker.
            // Past the task's queue bound it is coalesced: only the latest status matters.
            tx.send_progress(task_id, cut_status_message(message));
        }
        Ok(())
    }

    fn send_framework_message(&mut self, data: Vec<u8>) -> wasmtime::Result<()> {
        let (events, task_id) = self.executor_events("send-framework-message")?;
        if data.len() > MAX_FRAMEWORK_MESSAGE_BYTES {
            // A trap: the WIT call returns nothing, and a silent drop would lose data the
            // guest believes sent.
            return Err(wasmtime::format_err!(
                "send-framework-message refused: {} bytes; the limit of a framework message is \
                 {MAX_FRAMEWORK_MESSAGE_BYTES} bytes (large data belongs in a task's result)",
                data.len()
            ));
        }
        if let Some(tx) = events {
            // Past the task's queue bound (`wasmos_api::limits::MAX_QUEUED_EXECUTOR_*`) the
            // call traps, so one guest cannot fill the agent's memory.
            tx.send_message(task_id, data)
                .map_err(|e| wasmtime::format_err!("{e}"))?;
        }
        Ok(())
    }
}

impl driver::Host for HostState {
    fn launch(
        &mut self,
        offer_ids: Vec<String>,
        tasks: Vec<TaskInfo>,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self.driver("launch")?.launch(offer_ids, tasks))
    }

    fn decline(&mut self, offer_ids: Vec<String>, filters: Filters) -> wasmtime::Result<()> {
        self.driver("decline")?.decline(offer_ids, filters);
        Ok(())
    }

    fn kill(&mut self, task_id: String) -> wasmtime::Result<()> {
        self.driver("kill")?.kill(task_id);
        Ok(())
    }

    fn revive(&mut self) -> wasmtime::Result<()> {
        self.driver("revive")?.revive();
        Ok(())
    }

    fn suppress(&mut self) -> wasmtime::Result<()> {
        self.driver("suppress")?.suppress();
        Ok(())
    }

    fn reconcile(&mut self, task_ids: Vec<String>) -> wasmtime::Result<()> {
        self.driver("reconcile")?.reconcile(task_ids);
        Ok(())
    }

    fn state_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.driver("state-get")?.state_get(key))
    }

    fn state_put(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        Ok(self.driver("state-put")?.state_put(key, value))
    }

    fn finish(&mut self, outcome: Result<String, String>) -> wasmtime::Result<()> {
        self.driver("finish")?.finish(outcome);
        Ok(())
    }

    fn log(&mut self, level: LogLevel, message: String) -> wasmtime::Result<()> {
        self.driver("log")?.log(level, message);
        Ok(())
    }

    fn set_timer(&mut self, timer_id: u64, delay_ms: u64) -> wasmtime::Result<Result<(), String>> {
        Ok(self.driver("set-timer")?.set_timer(timer_id, delay_ms))
    }

    fn report_progress(&mut self, progress: FrameworkProgress) -> wasmtime::Result<()> {
        // An executor calling it traps like any `driver` call: progress is the scheduler's.
        self.driver("report-progress")?.report_progress(progress);
        Ok(())
    }
}
