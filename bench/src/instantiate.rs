//! `wasmos-bench instantiate`: what it costs to start and use executor instances.
//!
//! Measures, in one run:
//! - instantiating a cached component in a fresh store, with the pooling allocator and on demand;
//! - a trivial task's round trip through `ExecutorPool::run_task` on a warm instance (the common
//!   case: an executor serves many tasks);
//! - fork/exec of `/bin/true`, the floor of a native task, as a ratio to that round trip;
//! - the slowdown of CPU-bound guests under fuel and epoch metering against none (geometric mean
//!   over sum-of-primes below 200,000, a sieve to 20,000,000 and recursive fib(30)).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use wasmos_api::{ExecutorId, FrameworkId, TaskId};
use wasmos_wasm_executor::{
    ExecutorPool, LimitMode, LoadedComponent, RuntimeConfig, TaskLimits, TaskRequest, WasmRuntime,
};

use crate::stats::{geomean, percentile, us};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (the only format; accepted for symmetry with the other scenarios).
    #[arg(long)]
    json: bool,
    /// The benchmark guest (default: the one `scripts/build-examples.sh` builds).
    #[arg(long)]
    component: Option<PathBuf>,
    /// Samples for the instantiate and round-trip measurements.
    #[arg(long, default_value_t = 5000)]
    iterations: usize,
    /// Repetitions of each CPU-bound workload per limit mode (the median is used).
    #[arg(long, default_value_t = 5)]
    reps: usize,
}

fn default_component() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples-wasm/target/wasm32-wasip2/release/benchguest.wasm")
}

pub fn run(args: Args) -> anyhow::Result<Value> {
    let _ = args.json;
    let path = args.component.clone().unwrap_or_else(default_component);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read {} (build it with scripts/build-examples.sh)",
            path.display()
        )
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let n = args.iterations.max(10);

    let (pool_p50, pool_p99) = rt.block_on(instantiate(&bytes, true, n))?;
    let (od_p50, od_p99) = rt.block_on(instantiate(&bytes, false, n))?;
    let (rt_p50, rt_p99) = rt.block_on(roundtrip(&bytes, n))?;
    let spawn_p50 = native_spawn(200.min(n))?;

    let mut times = serde_json::Map::new();
    let mut per_mode = Vec::new();
    for mode in [LimitMode::Unmetered, LimitMode::Fuel, LimitMode::Epoch] {
        let t = rt.block_on(workloads(&bytes, mode, args.reps.max(1)))?;
        times.insert(
            mode.name().to_string(),
            json!(
                t.iter()
                    .map(|(w, d, _)| (w.to_string(), json!(d.as_secs_f64() * 1e3)))
                    .collect::<serde_json::Map<_, _>>()
            ),
        );
        per_mode.push((mode, t));
    }
    let base = &per_mode[0].1;
    for (mode, t) in &per_mode[1..] {
        for ((w, _, out), (_, _, base_out)) in t.iter().zip(base) {
            if out != base_out {
                bail!(
                    "workload {w} gave {out:?} under {} but {base_out:?} unmetered",
                    mode.name()
                );
            }
        }
    }
    let slowdown = |i: usize| {
        let ratios: Vec<f64> = per_mode[i]
            .1
            .iter()
            .zip(base)
            .map(|((_, d, _), (_, b, _))| d.as_secs_f64() / b.as_secs_f64())
            .collect();
        (geomean(&ratios) * 1000.0).round() / 1000.0
    };
    let fuel_slowdown = slowdown(1);
    let epoch_slowdown = slowdown(2);

    Ok(json!({
        "scenario": "instantiate",
        "component": path.display().to_string(),
        "iterations": n,
        "instantiate_us_p50": us(pool_p50),
        "instantiate_us_p99": us(pool_p99),
        "ondemand_instantiate_us_p50": us(od_p50),
        "ondemand_instantiate_us_p99": us(od_p99),
        "task_roundtrip_us_p50": us(rt_p50),
        "task_roundtrip_us_p99": us(rt_p99),
        "native_spawn_us_p50": us(spawn_p50),
        "spawn_ratio": ((spawn_p50.as_secs_f64() / rt_p50.as_secs_f64()) * 10.0).round() / 10.0,
        "fuel_slowdown": fuel_slowdown,
        "epoch_slowdown": epoch_slowdown,
        "workload_ms": Value::Object(times),
        "chosen_limit": LimitMode::default().name(),
    }))
}

fn runtime(mode: LimitMode, pooling: bool) -> anyhow::Result<WasmRuntime> {
    let mut config = RuntimeConfig {
        limit_mode: mode,
        ..RuntimeConfig::default()
    };
    if !pooling {
        config.pooling = None;
    }
    Ok(WasmRuntime::new(config)?)
}

async fn instantiate(
    bytes: &[u8],
    pooling: bool,
    n: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let rt = runtime(LimitMode::default(), pooling)?;
    let component = rt.load(bytes)?;
    let limits = TaskLimits::default();
    for _ in 0..n / 10 {
        rt.instantiate_probe(&component, &limits).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        rt.instantiate_probe(&component, &limits).await?;
        samples.push(t.elapsed());
    }
    Ok((
        percentile(&mut samples, 50.0),
        percentile(&mut samples, 99.0),
    ))
}

fn request(i: usize, payload: &str) -> anyhow::Result<TaskRequest> {
    Ok(TaskRequest::new(
        FrameworkId::new("bench")?,
        ExecutorId::new("bench")?,
        TaskId::new(format!("t{i}"))?,
        payload.as_bytes().to_vec(),
    ))
}

async fn roundtrip(bytes: &[u8], n: usize) -> anyhow::Result<(Duration, Duration)> {
    let rt = runtime(LimitMode::default(), true)?;
    let component = rt.load(bytes)?;
    let dir = tempfile::tempdir()?;
    let pool = ExecutorPool::new(rt, dir.path());
    for i in 0..n / 10 {
        pool.run_task(&component, request(i, "noop")?).await?;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let req = request(i, "noop")?;
        let t = Instant::now();
        let outcome = pool.run_task(&component, req).await?;
        samples.push(t.elapsed());
        if !outcome.reused_instance {
            bail!("round trip {i} did not reuse the warm instance");
        }
    }
    Ok((
        percentile(&mut samples, 50.0),
        percentile(&mut samples, 99.0),
    ))
}

fn native_spawn(n: usize) -> anyhow::Result<Duration> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        let status = std::process::Command::new("/bin/true").status()?;
        samples.push(t.elapsed());
        if !status.success() {
            bail!("/bin/true failed: {status}");
        }
    }
    Ok(percentile(&mut samples, 50.0))
}

async fn workloads(
    bytes: &[u8],
    mode: LimitMode,
    reps: usize,
) -> anyhow::Result<Vec<(&'static str, Duration, Vec<u8>)>> {
    let rt = runtime(mode, true)?;
    let component: std::sync::Arc<LoadedComponent> = rt.load(bytes)?;
    let dir = tempfile::tempdir()?;
    let pool = ExecutorPool::new(rt, dir.path());
    let mut out = Vec::new();
    for (i, w) in ["primes", "sieve", "fib"].into_iter().enumerate() {
        // One unmeasured run warms the instance (its memory is grown once).
        let first = pool.run_task(&component, request(i, w)?).await?.output;
        let mut samples = Vec::with_capacity(reps);
        for r in 0..reps {
            let t = Instant::now();
            let outcome = pool.run_task(&component, request(r, w)?).await?;
            samples.push(t.elapsed());
            if outcome.output != first {
                bail!("workload {w} is not deterministic");
            }
        }
        out.push((w, percentile(&mut samples, 50.0), first));
    }
    Ok(out)
}
