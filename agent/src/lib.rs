//! The wasmos agent: runs what the master sends it, keeps the promises about limits, and never
//! loses a task's final state.
//!
//! - [`Agent`] is the core: launch, kill, framework teardown, recovery after a restart.
//! - [`containerizer`] is the trait over the two ways a task runs: [`wasm`] (the framework's
//!   executor instance under wasmtime) and [`native`] (a command in a cgroup, via [`cgroups`]
//!   and [`launcher`]), whose sandboxes [`disk_quota`] holds to their disk quota.
//! - [`status_queue`] holds every status update durably until the master acknowledges it;
//!   [`store`] is the redb file behind it and behind the task [`checkpoint`]; [`marker`]
//!   tells a lost store from a new one.
//! - [`sandbox`] owns the per-task directories and their garbage collection; [`fetch`] gets a
//!   framework's component by digest and verifies it; [`master_fetch`] downloads it from the
//!   master; [`task_logs`] reads a task's stdout or stderr for the master (`wasmos logs`).
//! - [`http`] serves `/health`, `/ready` and `/metrics` (`wasmos agent --http`), from the
//!   counters in [`metrics`].
//! - [`session`] is the gRPC client loop to the master ([`run`]); [`session_log`] keeps a
//!   master that stays down to one WARN per failure and 30 s.

#![warn(missing_docs)]

pub mod agent;
pub mod cgroups;
pub mod checkpoint;
pub mod config;
pub mod containerizer;
pub mod disk_quota;
pub mod fetch;
pub mod http;
pub mod isolation;
pub mod launcher;
pub mod marker;
pub mod master_fetch;
pub mod metrics;
pub mod native;
pub mod sandbox;
pub mod session;
pub mod session_log;
pub mod status_queue;
pub mod store;
pub mod task_logs;
pub mod wasm;

pub use agent::{Agent, AgentError, FrameworkContext, RecoveryReport, RunningTask};
pub use config::{AgentConfig, WasmCpu};
pub use containerizer::{ContainerCheckpoint, ContainerError, Containerizer, TaskExit};
pub use fetch::{ComponentFetcher, FetchError, MemoryFetcher};
pub use master_fetch::MasterFetcher;
pub use session::{RunConfig, RunError, SessionConfig, run, run_until, run_until_stopped};
pub use status_queue::{QueuedUpdate, RetryPolicy, StatusQueue, TransportError, UpdateTransport};
