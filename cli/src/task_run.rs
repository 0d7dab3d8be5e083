//! `wasmos task run`: one task in a local executor, so framework authors can test their
//! executor on any OS without a cluster.
//!
//! Exit status: 0 when the task finished (its result on stdout), 1 when the task failed (the
//! reason on stderr), 2 when the component could not be loaded or the arguments are wrong.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use wasmos_api::{ExecutorId, FrameworkId, TaskId};
use wasmos_wasm_executor::{
    ExecutorPool, LimitMode, RuntimeConfig, TaskLimits, TaskRequest, WasmRuntime,
};

#[derive(clap::Args)]
pub struct Args {
    /// The framework component (a `.wasm` file of the wasmos:framework world).
    component: PathBuf,
    /// The executor instance to run the task in.
    #[arg(long, default_value = "default")]
    executor_id: ExecutorId,
    /// The task's payload, passed to the executor's `launch` as UTF-8 bytes.
    #[arg(long, default_value = "")]
    payload: String,
    /// The task's id.
    #[arg(long, default_value = "task-1")]
    task_id: TaskId,
    /// Fuel budget (about one unit per Wasm instruction) [default: unlimited].
    #[arg(long)]
    fuel: Option<u64>,
    /// Linear memory cap in MiB.
    #[arg(long, default_value_t = 256)]
    memory_mb: u64,
    /// Wall-clock deadline in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
    /// How CPU use is metered: fuel, epoch or none.
    #[arg(long, default_value = "fuel")]
    limit: LimitMode,
    /// Directory for the executor's sandbox and its stdout/stderr files [default: a fresh
    /// temporary directory, removed afterwards].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Directory of compiled components, so the next run does not compile again.
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

pub async fn run(args: Args) -> ExitCode {
    if args.limit != LimitMode::Fuel && args.fuel.is_some() {
        eprintln!("wasmos: --fuel needs --limit fuel");
        return ExitCode::from(2);
    }
    let config = RuntimeConfig {
        limit_mode: args.limit,
        // One task: on-demand allocation reserves no pool.
        pooling: None,
        cache_dir: args.cache_dir.clone(),
        ..RuntimeConfig::default()
    };
    let runtime = match WasmRuntime::new(config) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wasmos: {e}");
            return ExitCode::from(2);
        }
    };
    let component = match std::fs::read(&args.component) {
        Ok(bytes) => match runtime.load_async(bytes).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("wasmos: cannot load {}: {e}", args.component.display());
                return ExitCode::from(2);
            }
        },
        Err(e) => {
            eprintln!("wasmos: cannot read {}: {e}", args.component.display());
            return ExitCode::from(2);
        }
    };
    let (_tmp, work_dir) = match &args.work_dir {
        Some(dir) => (None, dir.clone()),
        None => match tempfile::Builder::new().prefix("wasmos-task-").tempdir() {
            Ok(t) => {
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
            Err(e) => {
                eprintln!("wasmos: cannot create a temporary work directory: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let pool = ExecutorPool::new(runtime, &work_dir);
    let framework_id = FrameworkId::new("local").expect("a valid literal id");
    let mut req = TaskRequest::new(
        framework_id.clone(),
        args.executor_id.clone(),
        args.task_id.clone(),
        args.payload.into_bytes(),
    );
    req.limits = TaskLimits {
        fuel: args.fuel,
        memory_bytes: (args.memory_mb.saturating_mul(1 << 20)).min(4 << 30) as usize,
        timeout: Duration::from_millis(args.timeout_ms),
        ..TaskLimits::default()
    };
    let kill = req.kill.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            kill.cancel();
        }
    });
    let result = pool.run_task(&component, req).await;
    let dir = pool.executor_dir(&framework_id, &args.executor_id);
    match result {
        Ok(outcome) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&outcome.output);
            if !outcome.output.ends_with(b"\n") {
                let _ = out.write_all(b"\n");
            }
            let fuel = outcome
                .fuel_consumed
                .map(|f| format!(", fuel {f}"))
                .unwrap_or_default();
            eprintln!(
                "wasmos: task {} finished in {}{fuel}; output in {}",
                args.task_id,
                crate::display::duration(outcome.elapsed),
                if args.work_dir.is_some() {
                    dir.display().to_string()
                } else {
                    "(removed)".into()
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("wasmos: task {} failed: {e}", args.task_id);
            ExitCode::from(1)
        }
    }
}
