//! `wasmos-bench component --component X`: what one framework component costs from upload to a
//! warm task, for comparing guests of different languages (a Rust component is ~100 KB, a Python
//! one carries CPython and is ~18 MB).
//!
//! Measures, in one run:
//! - `upload_ms`: `UploadComponent` of the file to a real `wasmos master` process on loopback (1
//!   MiB chunks, as `wasmos submit` sends it), which checks its header and walks its contents
//!   against the bounds before storing it; `reupload_ms` the same bytes again (already stored);
//! - `first_compile_ms`: `WasmRuntime::load` with an empty disk cache: the content check,
//!   Cranelift, and writing the artifact to the cache (what the first agent pays once);
//! - `cached_load_ms`: `load` in a fresh runtime over that cache (an agent or master restarted,
//!   or a second one on the host): deserializing the artifact, no compile;
//! - `instantiate_us_p50`/`_p99`: a new store and an instance of the loaded component (pooling
//!   allocator) and its drop;
//! - `first_task_ms`: the first task of an executor id: a fresh instance and one call;
//! - `task_roundtrip_us_p50`/`_p99`: a trivial task on the warm instance.
//!
//! The payload is `--payload` (default `noop`, which `benchguest` answers at once; the Python
//! `hostile` example echoes any other payload). Without `--wasmos` (and no `wasmos` next to this
//! executable or in `$WASMOS_BIN`) the upload keys are null.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};
use wasmos_api::{ExecutorId, FrameworkId, TaskId};
use wasmos_wasm_executor::{ExecutorPool, RuntimeConfig, TaskLimits, TaskRequest, WasmRuntime};

use crate::e2e::{Cluster, find_wasmos, upload};
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
    /// The payload of the trivial task.
    #[arg(long, default_value = "noop")]
    payload: String,
    /// Samples for the instantiate and round-trip measurements.
    #[arg(long, default_value_t = 200)]
    iterations: usize,
    /// The `wasmos` binary for the upload (default: $WASMOS_BIN, else the one next to this
    /// executable); none found: the upload is not measured.
    #[arg(long)]
    wasmos: Option<PathBuf>,
}

/// `e2e`'s arguments for a master without agents, reusing its process handling.
#[derive(Parser)]
struct MasterOnly {
    #[command(flatten)]
    e2e: crate::e2e::Args,
}

pub fn run(args: Args) -> anyhow::Result<Value> {
    let _ = args.json;
    let bytes = std::fs::read(&args.component)
        .with_context(|| format!("cannot read {}", args.component.display()))?;
    let n = args.iterations.max(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (upload_ms, reupload_ms) = match find_wasmos(args.wasmos.as_deref()) {
        Ok(wasmos) => {
            let (a, b) = rt.block_on(upload_times(&wasmos, &args.component))?;
            (json!(ms(a)), json!(ms(b)))
        }
        Err(e) => {
            eprintln!("wasmos-bench component: upload not measured: {e:#}");
            (Value::Null, Value::Null)
        }
    };

    let cache = tempfile::tempdir()?;
    let config = || RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let first = WasmRuntime::new(config())?;
    let t = Instant::now();
    first.load(&bytes)?;
    let first_compile = t.elapsed();
    drop(first);

    let runtime = WasmRuntime::new(config())?;
    let t = Instant::now();
    let component = runtime.load(&bytes)?;
    let cached_load = t.elapsed();

    let limits = TaskLimits::default();
    let (inst_p50, inst_p99) = rt.block_on(async {
        for _ in 0..n / 10 {
            runtime.instantiate_probe(&component, &limits).await?;
        }
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            runtime.instantiate_probe(&component, &limits).await?;
            samples.push(t.elapsed());
        }
        anyhow::Ok((
            percentile(&mut samples, 50.0),
            percentile(&mut samples, 99.0),
        ))
    })?;

    let dir = tempfile::tempdir()?;
    let pool = ExecutorPool::new(runtime, dir.path());
    let (first_task, rt_p50, rt_p99) = rt.block_on(async {
        let t = Instant::now();
        let outcome = pool
            .run_task(&component, request(0, &args.payload)?)
            .await
            .context("the first task failed")?;
        let first_task = t.elapsed();
        if outcome.reused_instance {
            bail!("the first task found a warm instance");
        }
        let mut samples = Vec::with_capacity(n);
        for i in 1..=n {
            let t = Instant::now();
            let outcome = pool
                .run_task(&component, request(i, &args.payload)?)
                .await?;
            samples.push(t.elapsed());
            if !outcome.reused_instance {
                bail!("round trip {i} did not reuse the warm instance");
            }
        }
        Ok((
            first_task,
            percentile(&mut samples, 50.0),
            percentile(&mut samples, 99.0),
        ))
    })?;

    Ok(json!({
        "scenario": "component",
        "component": args.component.display().to_string(),
        "bytes": bytes.len(),
        "iterations": n,
        "upload_ms": upload_ms,
        "reupload_ms": reupload_ms,
        "first_compile_ms": ms(first_compile),
        "cached_load_ms": ms(cached_load),
        "instantiate_us_p50": us(inst_p50),
        "instantiate_us_p99": us(inst_p99),
        "first_task_ms": ms(first_task),
        "task_roundtrip_us_p50": us(rt_p50),
        "task_roundtrip_us_p99": us(rt_p99),
    }))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

fn request(i: usize, payload: &str) -> anyhow::Result<TaskRequest> {
    Ok(TaskRequest::new(
        FrameworkId::new("bench")?,
        ExecutorId::new("bench")?,
        TaskId::new(format!("t{i}"))?,
        payload.as_bytes().to_vec(),
    ))
}

/// Times two uploads of `component` to a fresh master without agents.
async fn upload_times(
    wasmos: &std::path::Path,
    component: &std::path::Path,
) -> anyhow::Result<(Duration, Duration)> {
    let dir = tempfile::Builder::new()
        .prefix("wasmos-bench-component")
        .tempdir()?;
    let master_only = MasterOnly::try_parse_from(["component", "--agents", "0"])?;
    // The master enforces ACLs, as every real one does: bootstrapped like `e2e`'s.
    let mut security = Security::make(wasmos, dir.path(), false, 1).await?;
    let cluster = Cluster::start(wasmos, dir.path(), &master_only.e2e, &mut security).await?;
    let r = async {
        let mut op = security.operator(&cluster.addr).await?;
        let t = Instant::now();
        upload(&mut op, component).await?;
        let first = t.elapsed();
        let t = Instant::now();
        upload(&mut op, component).await?;
        anyhow::Ok((first, t.elapsed()))
    }
    .await;
    cluster.stop().await;
    r
}
