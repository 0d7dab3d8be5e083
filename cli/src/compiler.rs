//! The compile-budget flags of `wasmos master`, `agent` and `dev`, and the compiler child they
//! set up: this program re-executed as `wasmos __compile` (see
//! `wasmos_wasm_executor::compile`), so a component's compilation runs under a memory and a
//! time budget and its memory goes back to the system when the child exits.

use std::time::Duration;

use anyhow::Context;
use wasmos_wasm_executor::{Compiler, SubprocessCompiler};

/// Budgets of compiling one component.
#[derive(clap::Args, Clone, Debug)]
pub struct CompileArgs {
    /// Memory budget of compiling one component, in MiB: the address-space limit of the
    /// compiler process (which counts about 100 MiB of the program itself). A component over
    /// it is refused, saying so.
    #[arg(long, value_name = "MIB", default_value_t = SubprocessCompiler::DEFAULT_MEMORY_LIMIT >> 20)]
    pub compile_memory_mb: u64,
    /// Time budget of compiling one component, in seconds; the compiler process is killed past
    /// it and the component refused, saying so.
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = crate::duration_secs,
        default_value = "60s"
    )]
    pub compile_timeout: Duration,
}

impl CompileArgs {
    /// A compiler child running this program under these budgets.
    pub fn compiler(&self) -> anyhow::Result<Compiler> {
        anyhow::ensure!(
            self.compile_memory_mb > 0,
            "--compile-memory-mb must be at least 1"
        );
        anyhow::ensure!(
            !self.compile_timeout.is_zero(),
            "--compile-timeout must be above 0 seconds"
        );
        let mut child = SubprocessCompiler::current_exe()
            .context("cannot find this program to run it as the component compiler")?;
        child.memory_limit = self
            .compile_memory_mb
            .checked_mul(1 << 20)
            .context("--compile-memory-mb is too large")?;
        child.timeout = self.compile_timeout;
        Ok(Compiler::Subprocess(child))
    }
}
