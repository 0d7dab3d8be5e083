//! Errors of loading a component and of running a task, each saying what failed and what the
//! user can do about it.

use std::path::PathBuf;
use std::time::Duration;

/// A component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// No bytes at all.
    #[error("component is empty (0 bytes)")]
    Empty,
    /// Larger than [`crate::RuntimeConfig::max_component_bytes`].
    #[error("component is {size} bytes; the limit is {limit} bytes")]
    TooLarge {
        /// The component's size, in bytes.
        size: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// No `\0asm` magic (or fewer than eight bytes).
    #[error("not a WebAssembly binary: it does not start with the bytes \\0asm")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "this is a core WebAssembly module, not a component; build the framework for \
         wasm32-wasip2 (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule,
    /// Over one of the content bounds ([`wasmos_api::limits::COMPONENT_BOUNDS`]), refused
    /// before it is compiled; the text names the bound, the value and the limit.
    #[error("component refused before compiling: {0}")]
    OverBound(wasmos_api::component_contents::ContentsError),
    /// The compiler refused it; the compiler's message.
    #[error("invalid component (truncated or corrupt?): {0}")]
    Invalid(String),
    /// It does not import and export what the `wasmos:framework` world says; the linker's
    /// message.
    #[error("component does not implement the wasmos:framework@0.1.0 world: {0}")]
    WrongWorld(String),
    /// Its file could not be read.
    #[error("cannot read component {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The compiled-component cache failed.
    #[error("component cache: {0}")]
    Cache(String),
    /// Compiling it went over the compile budget of [`crate::Compiler::Subprocess`]; the
    /// component was refused and the compiler's memory given back.
    #[error(
        "compiling the component went over its {0}; the component is too large or complex to \
         compile here: remove unused code and modules (e.g. `wasm-tools strip`, a release \
         build with LTO), or ask the operator to raise the compile budget \
         (--compile-memory-mb, --compile-timeout of the master and agents)"
    )]
    CompileBudget(CompileBudget),
    /// The compiler process could not be run or failed for a reason other than the
    /// component or its budget (a host problem, not the component's).
    #[error("the component compiler failed: {message}")]
    Compiler {
        /// What failed.
        message: String,
    },
    /// The compiler process's artifact does not load into this engine (a compiler program of
    /// another version or configuration).
    #[error(
        "the compiled artifact does not load: {0}; the compiler program must be the same build \
         as this one"
    )]
    Artifact(String),
}

/// Which compile budget a component went over, and its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompileBudget {
    /// The compiler process's address-space limit.
    Memory {
        /// The limit, in bytes.
        bytes: u64,
    },
    /// The compiler process's wall-clock limit.
    Time {
        /// The limit.
        limit: Duration,
    },
}

impl std::fmt::Display for CompileBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CompileBudget::Memory { bytes } => {
                write!(f, "memory budget of {} MiB", bytes.div_ceil(1 << 20))
            }
            CompileBudget::Time { limit } => write!(f, "time budget of {limit:?}"),
        }
    }
}

/// A task did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The executor returned an error.
    #[error("executor returned an error: {0}")]
    Guest(String),
    /// The fuel budget ran out.
    #[error("ran out of fuel (budget {budget} units); raise --fuel or do less work per call")]
    OutOfFuel {
        /// The budget, in fuel units.
        budget: u64,
    },
    /// The wall-clock deadline passed.
    #[error("task exceeded its deadline of {0:?}")]
    Deadline(Duration),
    /// The guest tried to grow its linear memory past its cap.
    #[error(
        "exceeded its memory limit of {limit_mb} MiB (tried to grow linear memory to \
         {wanted_mb} MiB)"
    )]
    MemoryLimit {
        /// The cap, in MiB.
        limit_mb: u64,
        /// The size asked for, in MiB (rounded up).
        wanted_mb: u64,
    },
    /// The Wasm stack overflowed.
    #[error("task overflowed its stack (unbounded recursion?)")]
    StackOverflow,
    /// Any other trap.
    #[error("task trapped: {message}{}", stderr_suffix(.stderr_tail))]
    Trap {
        /// The trap's message.
        message: String,
        /// The end of what the guest wrote to stderr; empty when there is none.
        stderr_tail: String,
    },
    /// Killed on request.
    #[error("task was killed")]
    Killed,
    /// The instance could not be created (no pooling slot, a failed link).
    #[error("cannot start the executor instance: {0}")]
    Instantiate(String),
    /// The instance's directory could not be created.
    #[error("cannot prepare the task sandbox {path}: {source}")]
    Sandbox {
        /// The directory.
        path: PathBuf,
        /// Why it could not be created.
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
