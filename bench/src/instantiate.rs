//! `wasmos-bench instantiate`: what it costs to start and use executor instances.
//!
//! Measures, in one run:
//! - instantiating a cached component in a fresh store, with the pooling allocator and on demand;
//! - a trivial task's round trip through `ExecutorPool::run_task` on a warm instance (the common
//!   case: an executor serves many tasks);
//! - fork/exec of `/bin/true`, the floor of a native task, as a ratio to that round trip;
//! - the slowdown of CPU-bound guests under fuel and epoch metering against none (geometric mean
//!   over sum-of-primes below 200,000, a sieve to 20,000,000 and recursive fib(30)), measured in
//!   thread CPU time so that a busy machine does not skew the ratio.

use std::path::PathBuf;
use std::sync::Arc;
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

    let modes = [LimitMode::Unmetered, LimitMode::Fuel, LimitMode::Epoch];
    let per_mode = rt.block_on(workloads(&bytes, &modes, args.reps.max(1)))?;
    let mut times = serde_json::Map::new();
    for (mode, t) in modes.iter().zip(&per_mode) {
        let ms = t
            .iter()
            .map(|(w, d, _)| (w.to_string(), json!(d.as_secs_f64() * 1e3)));
        times.insert(mode.name().to_string(), Value::Object(ms.collect()));
    }
    let base = &per_mode[0];
    let slowdown = |i: usize| {
        let ratios: Vec<f64> = per_mode[i]
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
        "workload_cpu_ms": Value::Object(times),
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

const WORKLOADS: [&str; 3] = ["primes", "sieve", "fib"];

/// CPU time consumed by the calling thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is always supported
    // on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs every workload under every mode, interleaving modes within each repetition so that a
/// change in machine load during the run affects all modes alike. Returns, per mode, each
/// workload's median time and its output (which must agree across modes).
async fn workloads(
    bytes: &[u8],
    modes: &[LimitMode],
    reps: usize,
) -> anyhow::Result<Vec<Vec<(&'static str, Duration, Vec<u8>)>>> {
    let dir = tempfile::tempdir()?;
    let mut pools = Vec::new();
    for mode in modes {
        let rt = runtime(*mode, true)?;
        let component: Arc<LoadedComponent> = rt.load(bytes)?;
        pools.push((
            ExecutorPool::new(rt, dir.path().join(mode.name())),
            component,
        ));
    }
    let mut outputs = vec![Vec::new(); modes.len()];
    let mut samples = vec![vec![Vec::with_capacity(reps); WORKLOADS.len()]; modes.len()];
    for rep in 0..=reps {
        for (m, (pool, component)) in pools.iter().enumerate() {
            for (w, name) in WORKLOADS.iter().enumerate() {
                // CPU time of this thread (the guest runs on it: the call is awaited here, not
                // spawned), so that other processes on a busy machine do not count.
                let t = thread_cpu_time();
                let out = pool.run_task(component, request(rep, name)?).await?.output;
                let elapsed = thread_cpu_time().saturating_sub(t);
                if rep == 0 {
                    // Unmeasured: warms the instance (its memory grows once).
                    outputs[m].push(out);
                    continue;
                }
                if out != outputs[m][w] {
                    bail!(
                        "workload {name} is not deterministic under {}",
                        modes[m].name()
                    );
                }
                if out != outputs[0][w] {
                    bail!(
                        "workload {name} gives a different result under {}",
                        modes[m].name()
                    );
                }
                samples[m][w].push(elapsed);
            }
        }
    }
    Ok(samples
        .into_iter()
        .zip(outputs)
        .map(|(per_workload, outs)| {
            per_workload
                .into_iter()
                .zip(outs)
                .zip(WORKLOADS)
                .map(|((mut s, out), name)| (name, percentile(&mut s, 50.0), out))
                .collect()
        })
        .collect())
}
