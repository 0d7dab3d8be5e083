//! [`AgentConfig`]: every knob of the agent, with defaults that are safe on a shared machine.

use std::path::PathBuf;
use std::time::Duration;

use wasmos_wasm_executor::{RuntimeConfig, TaskLimits};

use crate::native::NativeConfig;
use crate::sandbox::GcPolicy;
use crate::status_queue::RetryPolicy;

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
    /// for some.
    pub wasm_limits: TaskLimits,
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
                // A long-running service is a task too; the per-task deadline guards against
                // a wedged guest, not a busy one.
                timeout: Duration::from_secs(24 * 3600),
                ..TaskLimits::default()
            },
            retry: RetryPolicy::default(),
            gc: GcPolicy::default(),
            gc_interval: Duration::from_secs(60),
            store_faults: None,
        }
    }
}
