//! [`AgentConfig`]: every knob of the agent, with defaults that are safe on a shared machine.

use std::path::PathBuf;
use std::time::Duration;

use wasmos_wasm_executor::{RuntimeConfig, TaskLimits};

use crate::native::NativeConfig;
use crate::sandbox::GcPolicy;
use crate::status_queue::RetryPolicy;

/// The wall-clock deadline of a Wasm task unless the operator sets another: 1 hour.
///
/// A deadline guards against a wedged guest (one blocked forever in a host call, or spinning
/// with unlimited fuel), not a busy one; an hour outlasts every batch task of the examples by
/// orders of magnitude (pi's default task takes 15 ms, a 100,000-point logreg partition 1.7 s
/// in a debug build) and still frees a wedged task's resources within the hour. Mesos has no
/// Wasm deadline to copy; its closest knob, `--executor_registration_timeout`, bounds startup
/// only. Long-running services belong in command tasks, which have no deadline.
pub const DEFAULT_WASM_TASK_TIMEOUT: Duration = Duration::from_secs(3600);

/// The fuel budget of a Wasm task unless the operator sets another: 10^11 units (about one
/// per Wasm instruction; roughly 30 s to a few minutes of CPU on one core).
///
/// Measured with `wasmos task run` on the examples: pi's default task (10^6 samples) burns
/// 7.5 * 10^7, primes over [0, 10^7) 4.0 * 10^8, a 100,000-point logreg partition's first
/// iteration 2.1 * 10^9; the budget leaves each a margin of 50x or more, while a guest that
/// spins is stopped after minutes of CPU instead of holding a core for the whole deadline.
pub const DEFAULT_WASM_TASK_FUEL: u64 = 100_000_000_000;

/// The longest deadline a task or its framework may ask for on this agent unless the operator
/// sets another (`wasmos agent --max-wasm-task-timeout`): 24 hours, a day of batch work.
/// A task asking for more is refused with `TASK_ERROR`; the API's own ceiling is
/// [`wasmos_api::limits::MAX_WASM_TASK_TIMEOUT_SECONDS`] (7 days).
pub const DEFAULT_MAX_WASM_TASK_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The largest fuel budget a task or its framework may ask for on this agent unless the
/// operator sets another (`wasmos agent --max-wasm-task-fuel`): 10^12 units, ten times the
/// default budget (minutes to an hour of CPU). A task asking for more is refused with
/// `TASK_ERROR`; the API's own ceiling is [`wasmos_api::limits::MAX_WASM_TASK_FUEL`] (10^13).
pub const DEFAULT_MAX_WASM_TASK_FUEL: u64 = 1_000_000_000_000;

/// How the agent shares CPU among its Wasm tasks (`wasmos_wasm_executor::cpu_share`).
///
/// Tasks that want CPU always get it in proportion to their declared `millicpus`, and
/// together use at most `capacity_millicpus`. The hard cap is off by default, as Mesos's CFS
/// quota is (`--cgroups_enable_cfs`): an idle agent's CPU is better spent finishing batch work
/// early than left idle, and the proportion rule already gives every task its declared share
/// when the agent is busy. An operator who sells CPU by the share, or wants run times that do
/// not depend on the neighbours, turns it on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WasmCpu {
    /// The CPU Wasm tasks share, in millicpus. By default `None`: the `cpus` this agent offers
    /// (its `--resources`, else every CPU of the machine).
    pub capacity_millicpus: Option<u64>,
    /// Holds each Wasm task to its declared share even when CPU is idle. By default off.
    pub hard_cap: bool,
}

/// Settings of one agent.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// Where the agent keeps its database, sandboxes, components and compiled components.
    pub work_dir: PathBuf,
    /// Native (command) tasks: allowed roles, cgroup name, kill grace, output caps.
    pub native: NativeConfig,
    /// The Wasm runtime. `cache_dir` defaults to `<work_dir>/compiled`.
    pub runtime: RuntimeConfig,
    /// Limits of each Wasm task; the memory cap is replaced by the task's memory when it asks
    /// for some. By default [`TaskLimits::default`] with a deadline of
    /// [`DEFAULT_WASM_TASK_TIMEOUT`] (1 h) and a fuel budget of [`DEFAULT_WASM_TASK_FUEL`]
    /// (10^11).
    /// The deadline and fuel in `wasm_limits` are the defaults: a task's own
    /// (`WasmTask.timeout_seconds`/`fuel`) or else its framework's
    /// (`FrameworkInfo.wasm_task_*`) replace them, up to the maxima below.
    pub wasm_limits: TaskLimits,
    /// The longest deadline a task or its framework may ask for; a task asking for more is
    /// refused with `TASK_ERROR` naming this maximum. The default deadline is cut to it. By
    /// default [`DEFAULT_MAX_WASM_TASK_TIMEOUT`] (24 h).
    pub max_wasm_task_timeout: Duration,
    /// The largest fuel budget a task or its framework may ask for, like
    /// `max_wasm_task_timeout`. By default [`DEFAULT_MAX_WASM_TASK_FUEL`] (10^12).
    pub max_wasm_task_fuel: u64,
    /// How Wasm tasks share CPU. By default [`WasmCpu::default`]: in proportion to their
    /// `millicpus` within the offered CPUs, no hard cap.
    pub wasm_cpu: WasmCpu,
    /// Resending of unacknowledged status updates.
    pub retry: RetryPolicy,
    /// Removal of finished tasks' sandboxes.
    pub gc: GcPolicy,
    /// How often sandboxes are garbage-collected.
    pub gc_interval: Duration,
    /// A switch that makes the store's file fail its writes, as a full disk does (for tests of
    /// what the agent does then). By default `None`: the file as it is.
    pub store_faults: Option<crate::store::StoreFaults>,
}

impl AgentConfig {
    /// Defaults for an agent working in `work_dir`.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        AgentConfig {
            work_dir: work_dir.into(),
            native: NativeConfig::default(),
            runtime: RuntimeConfig::default(),
            wasm_limits: TaskLimits {
                timeout: DEFAULT_WASM_TASK_TIMEOUT,
                fuel: Some(DEFAULT_WASM_TASK_FUEL),
                ..TaskLimits::default()
            },
            max_wasm_task_timeout: DEFAULT_MAX_WASM_TASK_TIMEOUT,
            max_wasm_task_fuel: DEFAULT_MAX_WASM_TASK_FUEL,
            wasm_cpu: WasmCpu::default(),
            retry: RetryPolicy::default(),
            gc: GcPolicy::default(),
            gc_interval: Duration::from_secs(60),
            store_faults: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasm_tasks_get_a_deadline_and_a_fuel_budget_by_default() {
        let c = AgentConfig::new("/tmp/unused");
        assert_eq!(c.wasm_limits.timeout, Duration::from_secs(3600));
        assert_eq!(c.wasm_limits.fuel, Some(100_000_000_000));
    }
}
