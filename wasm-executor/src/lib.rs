//! Everything wasmtime: the engine and its limits, the compiled-component cache, the sandboxed
//! WASI context, and the executor instances that run a framework's tasks.
//!
//! The agent runs tasks through [`ExecutorPool`]; the master's framework host drives a
//! framework's scheduler half through [`SchedulerInstance`]. Both share one [`WasmRuntime`] per
//! process: one `Engine` with the pooling allocator, one `Linker`, and the component cache.
//!
//! What lives elsewhere: which tasks to run and when (master and agent), task state and status
//! updates (`wasmos-api` and the agent). This crate only turns a component and a payload into a
//! result or a clear error, without letting a guest hurt the host.

#![warn(missing_docs)]

pub mod bindings;
mod cache;
pub mod compile;
mod config;
pub mod cpu_share;
mod error;
pub mod events;
mod executor;
mod host;
mod host_api;
pub mod log_budget;
mod output;
mod runtime;
mod scheduler;
pub mod stderr_tail;

pub use compile::{Compiler, SubprocessCompiler};
pub use config::{LimitMode, PoolingConfig, RuntimeConfig, TaskLimits};
pub use cpu_share::{CpuGovernor, CpuMeter};
pub use error::{CompileBudget, ComponentError, TaskError};
pub use events::{EventPermit, EventReceiver, EventSender, QueueBounds, QueueFull, event_queue};
pub use executor::{ExecutorPool, TaskOutcome, TaskRequest};
pub use host_api::{DriverHost, ExecutorEvent};
pub use runtime::{ComponentLease, EngineError, LoadedComponent, WasmRuntime};
pub use scheduler::{SchedulerError, SchedulerInstance};
/// The digest type lives in `wasmos-api` (the master's blob store names components by it too);
/// re-exported because [`LoadedComponent::digest`] and [`WasmRuntime::get`] speak of it.
pub use wasmos_api::ComponentDigest;
