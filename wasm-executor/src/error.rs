//! Errors of loading a component and of running a task, each saying what failed and what the
//! user can do about it.

use std::path::PathBuf;
use std::time::Duration;

/// A component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("component is empty (0 bytes)")]
    Empty,
    #[error("component is {size} bytes; the limit is {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("not a WebAssembly binary: it does not start with the bytes \\0asm")]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component; build the framework for \
         wasm32-wasip2 (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule,
    #[error("invalid component (truncated or corrupt?): {0}")]
    Invalid(String),
    #[error("component does not implement the wasmos:framework@0.1.0 world: {0}")]
    WrongWorld(String),
    #[error("cannot read component {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("component cache: {0}")]
    Cache(String),
}

/// A task did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The executor returned an error.
    #[error("executor returned an error: {0}")]
    Guest(String),
    #[error("ran out of fuel (budget {budget} units); raise --fuel or do less work per call")]
    OutOfFuel { budget: u64 },
    #[error("task exceeded its deadline of {0:?}")]
    Deadline(Duration),
    #[error(
        "exceeded its memory limit of {limit_mb} MiB (tried to grow linear memory to \
         {wanted_mb} MiB)"
    )]
    MemoryLimit { limit_mb: u64, wanted_mb: u64 },
    #[error("task overflowed its stack (unbounded recursion?)")]
    StackOverflow,
    #[error("task trapped: {message}{}", stderr_suffix(.stderr_tail))]
    Trap {
        message: String,
        stderr_tail: String,
    },
    #[error("task was killed")]
    Killed,
    #[error("cannot start the executor instance: {0}")]
    Instantiate(String),
    #[error("cannot prepare the task sandbox {path}: {source}")]
    Sandbox {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn stderr_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; guest stderr: {tail}")
    }
}

impl TaskError {
    /// True when the executor instance may not be used again (every case but a clean error
    /// returned by the guest).
    pub fn poisons_instance(&self) -> bool {
        !matches!(self, TaskError::Guest(_))
    }
}
