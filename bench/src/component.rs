//! `wasmos-bench component`: what one framework component costs from upload to a warm task, for
//! comparing components built from different languages (a Rust guest of 100 KB, a JavaScript
//! one of 12 MB that carries its engine).
//!
//! Measures, for `--component PATH` and a trivial `--payload`:
//! - `upload_ms`: `UploadComponent` to a fresh `wasmos master` process (ACLs enforced, as every
//!   real master; checks and stores the bytes), the median of `--uploads` uploads (the first
//!   stores, later ones find the digest stored and still stream and check every byte);
//! - `contents_check_ms`: the walk of `check_contents` that upload and compile both run;
//! - `first_compile_ms`: compiling it in this process with an empty cache (what an agent or the
//!   framework host pays once per component);
//! - `cached_load_ms`: loading it in a new runtime whose disk cache holds the compiled artifact
//!   (what a restarted agent pays);
//! - `instantiate_us_p50/p99`: a new store and instance of the loaded component, pooling
//!   allocator (what a new executor instance costs);
//! - `first_task_ms`: the first task on a new executor instance (instantiation, the guest's own
//!   start-up, the call);
//! - `task_roundtrip_us_p50/p99`: the same trivial task on the warm instance.
//!
//! Compilation runs in this process (`Compiler::InProcess`); the `wasmos` command runs it in a
//! child under `--compile-memory-mb` and `--compile-timeout`, which adds the child's start.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use wasmos_api::component_contents::check_contents;
use wasmos_api::limits::COMPONENT_BOUNDS;
use wasmos_api::{ExecutorId, FrameworkId, TaskId};
use wasmos_wasm_executor::{ExecutorPool, RuntimeConfig, TaskLimits, TaskRequest, WasmRuntime};

use crate::e2e::{find_wasmos, upload};
use crate::secure::Security;
use crate::stats::{percentile, us};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (the only format; accepted for symmetry with the other scenarios).
    #[arg(long)]
    json: bool,
    /// The component to measure.
    #[arg(long)]
    component: PathBuf,
    /// Payload of the trivial task; it must succeed (e.g. `noop` for benchguest, `1 2` for the
    /// JavaScript `squares`).
    #[arg(long, default_value = "noop")]
    payload: String,
    /// Executor id of the tasks.
    #[arg(long, default_value = "bench")]
    executor_id: String,
    /// Samples of instantiation and of the warm round trip.
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// Uploads to the master (the median is reported); 0 skips the master.
    #[arg(long, default_value_t = 3)]
    uploads: usize,
    /// The `wasmos` binary for the upload (default: $WASMOS_BIN, else the one next to this
    /// executable).
    #[arg(long)]
    wasmos: Option<PathBuf>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

pub fn run(args: Args) -> anyhow::Result<Value> {
    let _ = args.json;
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let n = args.iterations.max(10);

    let upload_ms = if args.uploads == 0 {
        None
    } else {
        let wasmos = find_wasmos(args.wasmos.as_deref())?;
        Some(rt.block_on(uploads(&wasmos, &args.component, args.uploads))?)
    };

    let t = Instant::now();
    let contents = check_contents(&bytes, &COMPONENT_BOUNDS)
        .with_context(|| format!("{} is refused", args.component.display()))?;
    let contents_check = t.elapsed();

    let cache = tempfile::tempdir()?;
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let t = Instant::now();
    let first = WasmRuntime::new(config.clone())?;
    first.load(&bytes)?;
    let first_compile = t.elapsed();
    drop(first);

    let t = Instant::now();
    let runtime = WasmRuntime::new(config)?;
    let component = runtime.load(&bytes)?;
    let cached_load = t.elapsed();

    let limits = TaskLimits::default();
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        rt.block_on(runtime.instantiate_probe(&component, &limits))?;
        samples.push(t.elapsed());
    }
    let (inst_p50, inst_p99) = (
        percentile(&mut samples, 50.0),
        percentile(&mut samples, 99.0),
    );

    let work = tempfile::tempdir()?;
    let pool = ExecutorPool::new(runtime, work.path());
    let request = |i: usize| -> anyhow::Result<TaskRequest> {
        Ok(TaskRequest::new(
            FrameworkId::new("bench")?,
            ExecutorId::new(args.executor_id.clone())?,
            TaskId::new(format!("t{i}"))?,
            args.payload.as_bytes().to_vec(),
        ))
    };
    let t = Instant::now();
    let outcome = rt
        .block_on(pool.run_task(&component, request(0)?))
        .context("the first task failed: pass a --payload this component's executor accepts")?;
    let first_task = t.elapsed();
    let output = String::from_utf8_lossy(&outcome.output).into_owned();
    let mut samples = Vec::with_capacity(n);
    for i in 1..=n {
        let t = Instant::now();
        let outcome = rt.block_on(pool.run_task(&component, request(i)?))?;
        samples.push(t.elapsed());
        if !outcome.reused_instance {
            bail!("round trip {i} did not reuse the warm instance");
        }
    }

    Ok(json!({
        "scenario": "component",
        "component": args.component.display().to_string(),
        "bytes": bytes.len(),
        "functions": contents.functions,
        "code_bytes": contents.code_bytes,
        "iterations": n,
        "upload_ms": upload_ms,
        "contents_check_ms": ms(contents_check),
        "first_compile_ms": ms(first_compile),
        "cached_load_ms": ms(cached_load),
        "instantiate_us_p50": us(inst_p50),
        "instantiate_us_p99": us(inst_p99),
        "first_task_ms": ms(first_task),
        "first_task_output": output,
        "task_roundtrip_us_p50": us(percentile(&mut samples, 50.0)),
        "task_roundtrip_us_p99": us(percentile(&mut samples, 99.0)),
    }))
}

/// Starts a master, uploads `path` `n` times and returns the median upload time in ms.
async fn uploads(wasmos: &Path, path: &Path, n: usize) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let mut security = Security::make(wasmos, dir.path(), false, 1).await?;
    let mut master = Command::new(wasmos)
        .args(["master", "--listen", "127.0.0.1:0"])
        .args(security.master_flags(1))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {} master", wasmos.display()))?;
    let stdout = master.stdout.take().context("the master's stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("the master did not say where it listens within 60 s")??
        .context("the master exited before listening")?;
    let addr = line
        .strip_prefix("wasmos master listening on ")
        .with_context(|| format!("unexpected first line from the master: {line:?}"))?
        .to_string();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    security.bootstrap(wasmos, &addr).await?;
    let mut op = security.operator(&addr).await?;
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        upload(&mut op, path).await?;
        samples.push(t.elapsed());
    }
    master.kill().await.ok();
    Ok(ms(percentile(&mut samples, 50.0)))
}
