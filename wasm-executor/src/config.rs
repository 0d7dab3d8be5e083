//! Knobs for the Wasm runtime, with defaults that are safe for untrusted guests.
//!
//! [`RuntimeConfig`] configures the process-wide engine (limit mode, pooling allocator, cache
//! directory); [`TaskLimits`] bounds one task (fuel, memory, wall-clock time, output size).

use std::path::PathBuf;
use std::time::Duration;

use crate::compile::Compiler;

/// How CPU use by a guest is metered and interrupted.
///
/// Measured on this project's reference machine with `wasmos-bench instantiate` (three CPU-bound
/// workloads, geometric mean of slowdown against no metering): fuel costs less than epoch
/// interruption on tight loops, and it makes CPU budgets deterministic, so it is the default.
/// Both yield to the async runtime periodically, which is what lets a wall-clock deadline or a
/// kill interrupt a guest that never returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LimitMode {
    /// Count fuel (roughly one unit per Wasm instruction); a task's `fuel` budget is enforced
    /// exactly. Yields to the runtime every [`RuntimeConfig::yield_interval_fuel`] units.
    #[default]
    Fuel,
    /// Interrupt on a timer (engine epoch ticks every [`RuntimeConfig::epoch_tick`]); no
    /// per-task CPU budget, only the wall-clock deadline.
    Epoch,
    /// No metering at all. Guests cannot be interrupted: deadlines and kills only take effect
    /// when the guest returns. For benchmarks and trusted code only.
    Unmetered,
}

impl LimitMode {
    /// Lower-case name, as used on the command line and in benchmark output.
    pub fn name(self) -> &'static str {
        match self {
            LimitMode::Fuel => "fuel",
            LimitMode::Epoch => "epoch",
            LimitMode::Unmetered => "none",
        }
    }
}

impl std::str::FromStr for LimitMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fuel" => Ok(LimitMode::Fuel),
            "epoch" => Ok(LimitMode::Epoch),
            "none" => Ok(LimitMode::Unmetered),
            other => Err(format!(
                "unknown limit mode {other:?}; use fuel, epoch or none"
            )),
        }
    }
}

/// The pooling instance allocator's sizing. Slots are reserved (virtual memory only) when the
/// engine is created; a store returns its slot when dropped.
#[derive(Clone, Debug)]
pub struct PoolingConfig {
    /// Component instances alive at once (executor instances plus scheduler instances). By
    /// default 1000.
    pub total_component_instances: u32,
    /// Linear memories alive at once. By default 2000.
    pub total_memories: u32,
    /// Tables alive at once. By default 2000.
    pub total_tables: u32,
    /// Largest linear memory any guest may have, in bytes; per-task limits are lower. By
    /// default 4 GiB.
    pub max_memory_bytes: usize,
}

impl Default for PoolingConfig {
    fn default() -> Self {
        PoolingConfig {
            total_component_instances: 1000,
            total_memories: 2000,
            total_tables: 2000,
            max_memory_bytes: 4 << 30,
        }
    }
}

/// Process-wide settings of the Wasm runtime.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// How guests are metered and interrupted. By default [`LimitMode::Fuel`].
    pub limit_mode: LimitMode,
    /// `Some` to use the pooling allocator (fast instantiation), `None` for on-demand allocation.
    /// By default the pooling allocator with [`PoolingConfig::default`].
    pub pooling: Option<PoolingConfig>,
    /// Where compiled components are cached (`<sha256>-<engine hash>.cwasm`); `None` (the
    /// default) keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// With fuel metering, how much fuel a guest burns between yields to the async runtime. By
    /// default 1,000,000 units.
    pub yield_interval_fuel: u64,
    /// With epoch metering, how often the engine's epoch ticks. By default every 1 ms.
    pub epoch_tick: Duration,
    /// Largest component accepted, in bytes. By default 64 MiB.
    pub max_component_bytes: usize,
    /// Maximum Wasm stack, in bytes; deeper recursion traps with a stack overflow. By default
    /// 1 MiB.
    pub max_wasm_stack: usize,
    /// Most compiled components kept in memory. Loading one more drops the least recently
    /// used one that no executor or scheduler holds (its machine code is freed once the last
    /// holder lets go; the disk cache, if any, keeps it). Components in use are never dropped,
    /// so the table may hold more while they are. By default 32.
    pub max_loaded_components: usize,
    /// Where components are compiled: in this process, or in a child process under a memory
    /// and a time budget whose memory goes back to the system when it exits. By default
    /// [`Compiler::InProcess`] (a library may have no compiler program to run); the `wasmos`
    /// command sets [`Compiler::Subprocess`].
    pub compiler: Compiler,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            limit_mode: LimitMode::default(),
            pooling: Some(PoolingConfig::default()),
            cache_dir: None,
            yield_interval_fuel: 1_000_000,
            epoch_tick: Duration::from_millis(1),
            max_component_bytes: 64 << 20,
            max_wasm_stack: 1 << 20,
            max_loaded_components: 32,
            compiler: Compiler::default(),
        }
    }
}

/// Limits for one task (and, for memory, for the executor instance it runs in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskLimits {
    /// Fuel budget of one task (with [`LimitMode::Fuel`]); `None` (the default) for no budget
    /// beyond the deadline.
    pub fuel: Option<u64>,
    /// Cap on the instance's linear memory, in bytes. By default 256 MiB.
    pub memory_bytes: usize,
    /// Wall-clock deadline of one task. By default 60 s.
    pub timeout: Duration,
    /// Cap on each of stdout and stderr of an executor instance, in bytes; output past it is
    /// dropped and a marker line written. By default 1 MiB.
    pub max_output_bytes: u64,
    /// Most tables one store may create. By default 20.
    pub max_tables: usize,
    /// Most linear memories one store may create. By default 20.
    pub max_memories: usize,
    /// Most instances (component and core) one store may create. By default 50.
    pub max_instances: usize,
    /// Most elements in one table. By default 100,000.
    pub max_table_elements: usize,
}

impl Default for TaskLimits {
    fn default() -> Self {
        TaskLimits {
            fuel: None,
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(60),
            max_output_bytes: 1 << 20,
            max_tables: 20,
            max_memories: 20,
            max_instances: 50,
            max_table_elements: 100_000,
        }
    }
}
