//! `wasmos-bench scale`: many simulated agents and frameworks against real `wasmos master`
//! processes (a Raft group of `--masters`, default 3), over real gRPC, to measure what one
//! master holds. The agents and frameworks live in this process ([`agents`],
//! [`frameworks`]); the masters are separate processes, so the master's figures are its own.
//!
//! Phases, each feeding report keys (see `bench/README.md`):
//! 1. registration: `--agents` agents register at once (`register_all_s`); the leader's RSS
//!    before and after gives `master_rss_bytes_per_agent`;
//! 2. load: `--frameworks` frameworks in `--roles` roles each keep `--tasks-per-framework`
//!    tasks of `--task-ms` running for `--load-seconds`, while every agent heartbeats:
//!    `launch_overhead_ms_p50`/`_p99` (accept sent to `RUNNING` received), `heartbeats_per_s`,
//!    `offer_cycle_ms_p50` (the leader's allocation-cycle histogram over the phase);
//! 3. starvation: `--starvation-frameworks` small frameworks (role `small`, one 0.1-CPU task
//!    each, declining the rest for 1 s, the least the master allows) run, then one large
//!    framework (role `large`) arrives wanting half the cluster's CPU:
//!    `starvation_first_offer_s`, `starvation_fair_share_s` (until it holds 90 % of that) and
//!    `starvation_shares` (its share of the cluster's CPU every half second);
//! 4. failover (with 2 or more masters): the leader is killed; `reregister_after_failover_s`
//!    until the new leader has every agent back and has made an offer again.

mod agents;
mod frameworks;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmos_api::proto as pb;

use crate::e2e::find_wasmos;
use crate::failover::{Group, free_addrs};
use crate::secure::Security;
use crate::stats::{percentile, rss_kib};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (the only format; accepted for symmetry with the other scenarios).
    #[arg(long)]
    json: bool,
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Simulated frameworks of the load phase.
    #[arg(long, default_value_t = 10)]
    frameworks: usize,
    /// Roles the load phase's frameworks are spread over (`sim0`, `sim1`, ...).
    #[arg(long, default_value_t = 10)]
    roles: usize,
    /// Masters in the Raft group (1 skips the failover phase).
    #[arg(long, default_value_t = 3)]
    masters: usize,
    /// Agent sessions per HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    agents_per_connection: usize,
    /// CPUs of each agent.
    #[arg(long, default_value_t = 4)]
    agent_cpus: u64,
    /// Memory of each agent, MiB.
    #[arg(long, default_value_t = 8192)]
    agent_mem_mb: u64,
    /// Tasks each load-phase framework keeps running.
    #[arg(long, default_value_t = 5)]
    tasks_per_framework: usize,
    /// Simulated duration of a load-phase task, ms.
    #[arg(long, default_value_t = 5000)]
    task_ms: u64,
    /// How long a load-phase framework refuses an agent it declines, s.
    #[arg(long, default_value_t = 5.0)]
    refuse_seconds: f64,
    /// Length of the load phase, s.
    #[arg(long, default_value_t = 30)]
    load_seconds: u64,
    /// Small frameworks of the starvation phase (0 skips it).
    #[arg(long, default_value_t = 500)]
    starvation_frameworks: usize,
    /// The masters' `--agent-heartbeat-interval`, s (the master's default, 15 s, unless set).
    #[arg(long)]
    heartbeat_interval: Option<f64>,
    /// The masters' `--allocation-interval`, s (the master's default unless set).
    #[arg(long)]
    allocation_interval: Option<f64>,
    /// The `wasmos` binary (default: $WASMOS_BIN, else the one next to this executable).
    #[arg(long)]
    wasmos: Option<PathBuf>,
    /// Keep the temporary directory (data dirs and logs) and print its path.
    #[arg(long)]
    keep_dir: bool,
}

/// Bound on waits that do not grow with the cluster.
const WAIT: Duration = Duration::from_secs(60);
/// How long a small framework refuses what it declines (the master's minimum).
const SMALL_REFUSE_S: f64 = 1.0;

pub fn run(args: Args) -> anyhow::Result<Value> {
    let _ = args.json;
    if args.agents == 0 || args.masters == 0 || args.roles == 0 {
        bail!("--agents, --masters and --roles must each be at least 1");
    }
    if args.agent_cpus == 0 || args.agent_mem_mb < 64 {
        bail!("--agent-cpus must be at least 1 and --agent-mem-mb at least 64");
    }
    let wasmos = find_wasmos(args.wasmos.as_deref())?;
    let tmp = tempfile::Builder::new()
        .prefix("wasmos-bench-scale")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let dir = tmp.path().to_path_buf();
    if args.keep_dir {
        eprintln!(
            "wasmos-bench scale: data dirs and logs in {}",
            dir.display()
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(run_cluster(&args, wasmos, dir));
    rt.shutdown_timeout(Duration::from_secs(5));
    if args.keep_dir {
        let _ = tmp.keep();
    }
    result
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; the time it took.
async fn until(limit: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if cond() {
            return Some(start.elapsed());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

async fn run_cluster(args: &Args, wasmos: PathBuf, dir: PathBuf) -> anyhow::Result<Value> {
    let security = Security::make(&wasmos, &dir, false, args.masters).await?;
    let http = free_addrs(args.masters)?;
    let mut extra = Vec::new();
    if let Some(h) = args.heartbeat_interval {
        extra.extend(["--agent-heartbeat-interval".to_string(), h.to_string()]);
    }
    if let Some(a) = args.allocation_interval {
        extra.extend(["--allocation-interval".to_string(), a.to_string()]);
    }
    let mut group = Group::new(
        wasmos.clone(),
        dir.clone(),
        free_addrs(args.masters)?,
        security,
        extra,
        Some(http.clone()),
    );
    for i in 0..args.masters {
        group.start_master(i).await?;
    }
    let leader = group.bootstrap().await?;
    let security = group.security.clone();
    let token = security.token().map(str::to_string);
    let leader_pid = group.pid(leader).context("the leader's pid")?;
    let rss_before = rss_kib(leader_pid).unwrap_or(0);

    // 1. Registration.
    let masters = Arc::new(agents::Masters::new(
        &security,
        group.addrs.clone(),
        args.agents,
        args.agents_per_connection,
    )?);
    let counters = Arc::new(agents::Counters::new(args.masters));
    let stop_agents = CancellationToken::new();
    let specs: Vec<agents::Spec> = (0..args.agents)
        .map(|i| agents::Spec {
            index: i,
            resources: pb::Resources {
                millicpus: args.agent_cpus * 1000,
                mem_mb: args.agent_mem_mb,
                disk_mb: 0,
            },
            rack: format!("rack-{}", i / 40),
        })
        .collect();
    let started = Instant::now();
    let handles = agents::spawn(specs, &masters, &counters, leader, &stop_agents);
    let register_limit = WAIT + Duration::from_millis(args.agents as u64 * 2);
    let registered = until(register_limit, || {
        counters.registered_with[leader].load(Relaxed) == args.agents
    })
    .await;
    let Some(_) = registered else {
        bail!(
            "only {} of {} agents registered within {register_limit:?}; first errors: {:?}",
            counters.registered(),
            args.agents,
            counters.errors.lock().unwrap()
        );
    };
    let register_all = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(leader_pid).unwrap_or(0);
    let rss_per_agent = rss_after.saturating_sub(rss_before) as f64 * 1024.0 / args.agents as f64;

    // 2. Load.
    let totals = Arc::new(frameworks::Totals::default());
    let stop_load = CancellationToken::new();
    let leader_addr = group.addrs[leader].clone();
    let load: Vec<frameworks::Handle> = (0..args.frameworks)
        .map(|i| {
            frameworks::spawn(
                frameworks::Spec {
                    name: format!("sim-{i}"),
                    role: format!("sim{}", i % args.roles),
                    want: args.tasks_per_framework,
                    task: pb::Resources {
                        millicpus: 500,
                        mem_mb: 256,
                        disk_mb: 0,
                    },
                    task_ms: args.task_ms,
                    refuse_seconds: args.refuse_seconds,
                },
                security.clone(),
                leader_addr.clone(),
                totals.clone(),
                stop_load.clone(),
            )
        })
        .collect();
    let cycles_before = allocation_histogram(&http[leader], token.as_deref()).await?;
    let heartbeats_before = counters.heartbeats.load(Relaxed);
    let lost_before = counters.sessions_lost.load(Relaxed);
    let load_start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.load_seconds)).await;
    let load_took = load_start.elapsed();
    let heartbeats = counters.heartbeats.load(Relaxed) - heartbeats_before;
    let sessions_lost_under_load = counters.sessions_lost.load(Relaxed) - lost_before;
    let cycles_after = allocation_histogram(&http[leader], token.as_deref()).await?;
    let cycles = cycles_after.minus(&cycles_before);
    stop_load.cancel();
    let mut overhead = Vec::new();
    let (mut finished, mut failed) = (0, 0);
    let mut errors = Vec::new();
    for h in load {
        let _ = tokio::time::timeout(Duration::from_secs(5), h.task).await;
        let r = h.record.lock().unwrap();
        overhead.extend_from_slice(&r.launch_overhead);
        finished += r.finished;
        failed += r.failed;
        errors.extend(r.errors.iter().take(2).cloned());
    }
    let launches = overhead.len();
    let (p50, p99) = if overhead.is_empty() {
        (Value::Null, Value::Null)
    } else {
        (
            json!(ms(percentile(&mut overhead, 50.0))),
            json!(ms(percentile(&mut overhead, 99.0))),
        )
    };

    // 3. Starvation.
    let starvation = if args.starvation_frameworks > 0 {
        starvation(args, &security, &leader_addr).await?
    } else {
        json!({})
    };

    // 4. Failover.
    let reregister = if args.masters > 1 {
        let killed = Instant::now();
        group.kill(leader).await?;
        let new = group.leader(Some(leader)).await?;
        let back = until(register_limit, || {
            counters.registered_with[new].load(Relaxed) == args.agents
        })
        .await;
        let offer = probe_offer(&security, &group.addrs[new]).await;
        match (back, offer) {
            (Some(_), Ok(_)) => json!({
                "reregister_after_failover_s": secs(killed.elapsed()),
                "new_leader": new + 1,
            }),
            (None, _) => json!({
                "reregister_after_failover_s": Value::Null,
                "failover_error": format!(
                    "only {} of {} agents re-registered with master {} within {register_limit:?}",
                    counters.registered_with[new].load(Relaxed), args.agents, new + 1),
            }),
            (Some(_), Err(e)) => json!({
                "reregister_after_failover_s": Value::Null,
                "failover_error": format!("{e:#}"),
            }),
        }
    } else {
        json!({ "reregister_after_failover_s": Value::Null })
    };

    stop_agents.cancel();
    for h in handles {
        let _ = tokio::time::timeout(Duration::from_secs(5), h).await;
    }
    group.stop().await;
    errors.extend(counters.errors.lock().unwrap().iter().take(5).cloned());

    let mut report = json!({
        "scenario": "scale",
        "agents": args.agents,
        "frameworks": args.frameworks,
        "masters": args.masters,
        "agents_per_connection": args.agents_per_connection,
        "connections": masters.connections(),
        "register_all_s": secs(register_all),
        "master_rss_bytes_per_agent": rss_per_agent.round(),
        "heartbeat_interval_s": args.heartbeat_interval.unwrap_or(15.0),
        "heartbeats_per_s": (heartbeats as f64 / load_took.as_secs_f64()).round(),
        "sessions_lost_under_load": sessions_lost_under_load,
        "launches": launches,
        "launch_overhead_ms_p50": p50,
        "launch_overhead_ms_p99": p99,
        "tasks_finished": finished,
        "tasks_failed": failed,
        "offers": totals.offers.load(Relaxed),
        "offer_cycles": cycles.count(),
        "offer_cycle_ms_p50": cycles.quantile(0.5).map(|s| (s * 1e5).round() / 100.0),
        "bench_rss_mib": rss_kib(std::process::id()).map(|k| k / 1024),
        "errors": errors,
    });
    for part in [starvation, reregister] {
        if let Value::Object(m) = part {
            for (k, v) in m {
                report[k] = v;
            }
        }
    }
    Ok(report)
}

/// Phase 3; see the module docs.
async fn starvation(args: &Args, security: &Security, addr: &str) -> anyhow::Result<Value> {
    let totals = Arc::new(frameworks::Totals::default());
    let stop = CancellationToken::new();
    let small: Vec<frameworks::Handle> = (0..args.starvation_frameworks)
        .map(|i| {
            frameworks::spawn(
                frameworks::Spec {
                    name: format!("small-{i}"),
                    role: "small".into(),
                    want: 1,
                    task: pb::Resources {
                        millicpus: 100,
                        mem_mb: 64,
                        disk_mb: 0,
                    },
                    task_ms: 1000,
                    refuse_seconds: SMALL_REFUSE_S,
                },
                security.clone(),
                addr.to_string(),
                totals.clone(),
                stop.clone(),
            )
        })
        .collect();
    // The small ones subscribe and churn before the large one arrives.
    let all_offered = until(WAIT, || {
        small
            .iter()
            .all(|h| h.record.lock().unwrap().first_offer.is_some())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cluster_millicpus = args.agents as u64 * args.agent_cpus * 1000;
    // Half an agent per task, one task per agent: half the cluster's CPU, the large role's
    // fair share beside a small role that wants almost nothing.
    let task = pb::Resources {
        millicpus: args.agent_cpus * 500,
        mem_mb: args.agent_mem_mb / 4,
        disk_mb: 0,
    };
    let want = args.agents;
    let target = (want as u64 * task.millicpus) * 9 / 10;
    let arrived = Instant::now();
    let large = frameworks::spawn(
        frameworks::Spec {
            name: "large".into(),
            role: "large".into(),
            want,
            task,
            task_ms: 3_600_000,
            refuse_seconds: 5.0,
        },
        security.clone(),
        addr.to_string(),
        totals.clone(),
        stop.clone(),
    );
    let limit = WAIT + Duration::from_millis(args.agents as u64);
    let mut shares = Vec::new();
    let mut fair = None;
    let mut next_sample = Duration::ZERO;
    while arrived.elapsed() < limit {
        let held = large.record.lock().unwrap().running_millicpus;
        let t = arrived.elapsed();
        if t >= next_sample {
            shares.push(json!([
                secs(t),
                (held as f64 / cluster_millicpus as f64 * 1000.0).round() / 1000.0
            ]));
            next_sample += Duration::from_millis(500);
        }
        if held >= target {
            fair = Some(t);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first_offer = {
        let r = large.record.lock().unwrap();
        r.first_offer.map(|f| f.duration_since(arrived))
    };
    let small_tasks: u64 = small
        .iter()
        .map(|h| h.record.lock().unwrap().finished)
        .sum();
    stop.cancel();
    let mut errors: Vec<String> = large.record.lock().unwrap().errors.clone();
    let _ = tokio::time::timeout(Duration::from_secs(10), large.task).await;
    for h in small {
        let _ = tokio::time::timeout(Duration::from_secs(5), h.task).await;
        errors.extend(h.record.lock().unwrap().errors.iter().take(1).cloned());
    }
    errors.truncate(5);
    Ok(json!({
        "starvation_frameworks": args.starvation_frameworks,
        "starvation_small_all_offered": all_offered.is_some(),
        "starvation_small_tasks_finished": small_tasks,
        "starvation_first_offer_s": first_offer.map(secs),
        "starvation_fair_share_s": fair.map(secs),
        "starvation_fair_share": (want as u64 * task.millicpus) as f64 / cluster_millicpus as f64,
        "starvation_shares": shares,
        "starvation_errors": errors,
    }))
}

/// Subscribes a framework to the master at `addr` and waits for its first offer.
async fn probe_offer(security: &Security, addr: &str) -> anyhow::Result<Duration> {
    let totals = Arc::new(frameworks::Totals::default());
    let stop = CancellationToken::new();
    let start = Instant::now();
    let probe = frameworks::spawn(
        frameworks::Spec {
            name: "failover-probe".into(),
            role: "probe".into(),
            want: 0,
            task: pb::Resources {
                millicpus: 100,
                mem_mb: 64,
                disk_mb: 0,
            },
            task_ms: 0,
            refuse_seconds: 1.0,
        },
        security.clone(),
        addr.to_string(),
        totals,
        stop.clone(),
    );
    let got = until(WAIT, || probe.record.lock().unwrap().first_offer.is_some()).await;
    stop.cancel();
    let errors = probe.record.lock().unwrap().errors.clone();
    let _ = tokio::time::timeout(Duration::from_secs(5), probe.task).await;
    match got {
        Some(_) => Ok(start.elapsed()),
        None => bail!("no offer from the new leader within {WAIT:?}: {errors:?}"),
    }
}

/// The leader's allocation-cycle histogram: cumulative counts per upper bound (seconds).
#[derive(Debug, Default)]
struct Cumulative(Vec<(f64, u64)>);

impl Cumulative {
    fn minus(&self, before: &Cumulative) -> Cumulative {
        Cumulative(
            self.0
                .iter()
                .map(|(le, n)| {
                    let b = before
                        .0
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0, |(_, n)| *n);
                    (*le, n.saturating_sub(b))
                })
                .collect(),
        )
    }

    fn count(&self) -> u64 {
        self.0.last().map_or(0, |(_, n)| *n)
    }

    /// The `q` quantile, interpolated within its bucket (as Prometheus's `histogram_quantile`).
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let mut prev = (0.0, 0u64);
        for &(le, n) in &self.0 {
            if n as f64 >= rank {
                if le.is_infinite() {
                    return Some(prev.0);
                }
                let within = (n - prev.1) as f64;
                let frac = if within == 0.0 {
                    1.0
                } else {
                    (rank - prev.1 as f64) / within
                };
                return Some(prev.0 + (le - prev.0) * frac);
            }
            prev = (le, n);
        }
        Some(prev.0)
    }
}

async fn allocation_histogram(http: &str, token: Option<&str>) -> anyhow::Result<Cumulative> {
    let (status, body) = crate::http::get_text(http, "/metrics", token).await?;
    if status != 200 {
        bail!("GET /metrics on {http} answered {status}");
    }
    let mut buckets = Vec::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("wasmos_allocation_run_duration_seconds_bucket{le=\"")
        else {
            continue;
        };
        let Some((le, n)) = rest.split_once("\"} ") else {
            continue;
        };
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().context("a bucket bound")?
        };
        buckets.push((le, n.trim().parse().context("a bucket count")?));
    }
    if buckets.is_empty() {
        bail!("GET /metrics on {http}: no wasmos_allocation_run_duration_seconds buckets");
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(Cumulative(buckets))
}

#[cfg(test)]
mod tests {
    use super::Cumulative;

    #[test]
    fn quantiles_interpolate_within_the_bucket() {
        let h = Cumulative(vec![(0.001, 0), (0.01, 10), (0.1, 20), (f64::INFINITY, 20)]);
        assert_eq!(h.count(), 20);
        assert!((h.quantile(0.5).unwrap() - 0.01).abs() < 1e-12);
        assert!((h.quantile(0.25).unwrap() - 0.0055).abs() < 1e-12);
        assert!((h.quantile(1.0).unwrap() - 0.1).abs() < 1e-12);
        let none = h.minus(&h);
        assert_eq!(none.count(), 0);
        assert_eq!(none.quantile(0.5), None);
    }
}
