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

pub mod bindings;
mod cache;
mod config;
mod error;
mod executor;
mod host;
mod output;
mod runtime;
mod scheduler;

pub use cache::ComponentDigest;
pub use config::{LimitMode, PoolingConfig, RuntimeConfig, TaskLimits};
pub use error::{ComponentError, TaskError};
pub use executor::{ExecutorEvent, ExecutorPool, TaskOutcome, TaskRequest};
pub use runtime::{LoadedComponent, WasmRuntime};
pub use scheduler::{DriverHost, SchedulerError, SchedulerInstance};
