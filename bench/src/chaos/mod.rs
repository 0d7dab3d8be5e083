//! `chaos`: a seeded soak of a whole cluster under faults.
//!
//! Three `wasmos master` processes, each in its own network namespace on one bridge (so that a
//! master's link can be cut), and `--agents` `wasmos agent` processes in the bench's own
//! namespace, reaching the masters over the bridge, each with its work dir on its own 64 MiB
//! tmpfs (so that one agent's disk can be filled). Needs root. Every master enforces ACLs.
//!
//! While it runs, a mix of pi, logreg, benchguest and service frameworks is submitted
//! continuously (`--concurrency` batch jobs in flight, at most one service) and a fault is
//! injected every few seconds, kind, target and timing drawn from `--seed` ([`faults`]):
//! SIGKILL of the leader, of a follower or of an agent (each restarted after the fault's hold),
//! the leader's link cut, an agent's disk full, a master SIGSTOPped. Faults never overlap:
//! each is healed, and the cluster settles (a leader, every master caught up with it, every
//! agent registered and healthy) before the next gap starts.
//!
//! Recovery: after each injection and each healing, a probe commits a registry change through
//! whichever master leads and submits a one-task pi; the recovery time is from the injection
//! (or healing) until that pi has a task launched (or ended). `longest_recovery_ms` is the
//! longest of the run; a probe that does not get there within 60 s is a violation.
//!
//! At the end submissions stop, the frameworks in flight are waited for, and [`checker`]
//! compares the masters' registries (`GET /registry/digest` of each). The report (one JSON
//! object on stdout) has `faults`, `faults_by_kind`, `completed` (frameworks that reached their
//! correct result, probes included), `completed_by_kind`, `violations` (must be 0),
//! `violation_details`, `longest_recovery_ms` and more; the seed and the fault log go to
//! stderr, so that a failing run can be replayed with the same `--seed`.

mod checker;
mod cluster;
mod faults;
mod net;
mod workload;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use wasmos_api::proto as pb;

use crate::e2e::{default_components, find_wasmos, upload};
use crate::secure::Operator;
use checker::Checker;
use cluster::{CALL, Cluster, join_all, leader};
use faults::{Fault, FaultKind, Plan, Timing};
use workload::{Kind, MIX};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (the only format; accepted for symmetry with the other scenarios).
    #[arg(long)]
    json: bool,
    /// How long faults are injected and frameworks submitted, in minutes (decimals allowed);
    /// at most 1440.
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// The seed of the fault plan (kinds, targets, gaps, holds).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Agent processes (1 to 8).
    #[arg(long, default_value_t = 4)]
    agents: usize,
    /// Batch frameworks in flight at once (1 to 16), besides probes and one service.
    #[arg(long, default_value_t = 3)]
    concurrency: usize,
    /// Most time one framework may take from submission to its result, in seconds.
    #[arg(long, default_value_t = 240)]
    framework_timeout: u64,
    /// Largest RSS any master or agent may reach, in MiB.
    #[arg(long, default_value_t = 1024)]
    rss_bound_mib: u64,
    /// The `wasmos` binary (default: $WASMOS_BIN, else the one next to this executable).
    #[arg(long)]
    wasmos: Option<PathBuf>,
    /// Directory with pi.wasm, logreg.wasm, benchguest.wasm and service.wasm (default:
    /// examples-wasm's release output, built by scripts/build-examples.sh).
    #[arg(long)]
    components: Option<PathBuf>,
    /// Keep the temporary directory (data dirs and process logs) and print its path.
    #[arg(long)]
    keep_dir: bool,
}

/// How long a probe may take to see the cluster work again.
const RECOVERY_BOUND: Duration = Duration::from_secs(60);
/// How long the cluster may take to settle after a fault is healed.
const SETTLE_BOUND: Duration = Duration::from_secs(90);
/// How long before the first fault, for the first frameworks to start.
const WARMUP: Duration = Duration::from_secs(5);
/// How often the workload polls its frameworks.
const POLL: Duration = Duration::from_millis(300);
/// How often the task histories are read.
const HISTORY_EVERY: Duration = Duration::from_secs(3);
/// How long a framework may be unregistered without an outcome before it counts as removed.
const UNREGISTERED_BOUND: Duration = Duration::from_secs(20);
/// Bound on a call that commits (submit, upload).
const SLOW_CALL: Duration = Duration::from_secs(15);

/// A framework the soak submitted and waits for.
struct Tracked {
    name: String,
    id: String,
    kind: Kind,
    submitted: Instant,
    unregistered_since: Option<Instant>,
}

/// What the workload, the faults and the sampler share.
struct Shared {
    checker: Mutex<Checker>,
    inflight: Mutex<Vec<Tracked>>,
    ops: Vec<Operator>,
    slow_ops: Vec<Operator>,
    components: BTreeMap<&'static str, String>,
    stop_submitting: AtomicBool,
    done: AtomicBool,
    submitted: AtomicU64,
    names: AtomicU64,
}

impl Shared {
    fn checker(&self) -> std::sync::MutexGuard<'_, Checker> {
        self.checker.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn inflight(&self) -> std::sync::MutexGuard<'_, Vec<Tracked>> {
        self.inflight.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn violation(&self, what: String) {
        self.checker().violation(what);
    }

    /// Submits a framework of `kind` through master `l`; tracks it.
    async fn submit(&self, l: usize, kind: Kind) -> anyhow::Result<String> {
        let n = self.names.fetch_add(1, Ordering::Relaxed);
        let name = format!("chaos-{}-{n}", kind.name());
        let digest = self
            .components
            .get(kind.component())
            .context("component not uploaded")?
            .clone();
        let mut op = self.slow_ops[l].clone();
        let id = op
            .submit_framework(pb::SubmitFrameworkRequest {
                info: Some(pb::FrameworkInfo {
                    name: name.clone(),
                    role: kind.role().into(),
                    component_sha256: digest,
                    ..Default::default()
                }),
                args: kind.args(),
                limits: None,
            })
            .await
            .with_context(|| format!("submitting {name}"))?
            .into_inner()
            .framework_id;
        self.submitted.fetch_add(1, Ordering::Relaxed);
        self.inflight().push(Tracked {
            name,
            id: id.clone(),
            kind,
            submitted: Instant::now(),
            unregistered_since: None,
        });
        Ok(id)
    }
}

/// Runs the scenario; see the module docs.
pub fn run(args: Args) -> anyhow::Result<Value> {
    let _ = args.json;
    if !(args.minutes > 0.0 && args.minutes <= 1440.0) {
        bail!(
            "--minutes {} is out of range: give more than 0 and at most 1440",
            args.minutes
        );
    }
    if !(1..=8).contains(&args.agents) {
        bail!("--agents {} is out of range: give 1 to 8", args.agents);
    }
    if !(1..=16).contains(&args.concurrency) {
        bail!(
            "--concurrency {} is out of range: give 1 to 16",
            args.concurrency
        );
    }
    if args.framework_timeout == 0 || args.rss_bound_mib == 0 {
        bail!("--framework-timeout and --rss-bound-mib must each be at least 1");
    }
    let wasmos = find_wasmos(args.wasmos.as_deref())?;
    let tmp = tempfile::Builder::new()
        .prefix("wasmos-bench-chaos")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let dir = tmp.path().to_path_buf();
    eprintln!(
        "wasmos-bench chaos: seed {} for {} min (replay with --seed {}); logs in {}",
        args.seed,
        args.minutes,
        args.seed,
        dir.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = rt.block_on(soak(&args, &wasmos, &dir));
    drop(rt);
    if args.keep_dir {
        let _ = tmp.keep();
    }
    result
}

async fn soak(args: &Args, wasmos: &Path, dir: &Path) -> anyhow::Result<Value> {
    let started = Instant::now();
    let mut cluster = Cluster::start(wasmos, dir, 3).await?;
    let r = soak_on(args, &mut cluster, started).await;
    cluster.stop().await;
    r
}

async fn soak_on(args: &Args, cluster: &mut Cluster, started: Instant) -> anyhow::Result<Value> {
    cluster.start_agents(args.agents).await?;
    let slow_ops = cluster
        .grpc_addrs()
        .iter()
        .map(|a| cluster.security.operator_lazy(a, SLOW_CALL))
        .collect::<anyhow::Result<Vec<_>>>()?;
    wait_agents(&cluster.ops, args.agents).await?;
    let dir = args.components.clone().unwrap_or_else(default_components);
    let mut components = BTreeMap::new();
    for file in ["pi.wasm", "logreg.wasm", "benchguest.wasm", "service.wasm"] {
        components.insert(file, upload_any(&slow_ops, &dir.join(file)).await?);
    }
    let shared = Arc::new(Shared {
        checker: Mutex::new(Checker::new(args.rss_bound_mib)),
        inflight: Mutex::new(Vec::new()),
        ops: cluster.ops.clone(),
        slow_ops,
        components,
        stop_submitting: AtomicBool::new(false),
        done: AtomicBool::new(false),
        submitted: AtomicU64::new(0),
        names: AtomicU64::new(0),
    });
    let sampler = tokio::spawn(sample_rss(shared.clone(), cluster.pids.clone()));
    let work = tokio::spawn(workload_loop(
        shared.clone(),
        args.concurrency,
        Duration::from_secs(args.framework_timeout),
    ));

    // Faults until the end of the run.
    let setup_ms = started.elapsed().as_millis();
    let soak_start = Instant::now();
    let end = soak_start + Duration::from_secs_f64(args.minutes * 60.0);
    let mut plan = Plan::new(args.seed, Timing::default());
    let mut by_kind: BTreeMap<FaultKind, u64> = BTreeMap::new();
    let mut recoveries: Vec<(u32, &'static str, u128)> = Vec::new();
    tokio::time::sleep(WARMUP).await;
    loop {
        let fault = plan.next_fault();
        if Instant::now() + fault.gap + fault.hold >= end {
            break;
        }
        tokio::time::sleep(fault.gap).await;
        restart_exited(cluster, &shared).await;
        let at = soak_start.elapsed().as_secs_f64();
        match inject(cluster, &shared, &fault, at, &mut recoveries).await {
            Ok(()) => *by_kind.entry(fault.kind).or_default() += 1,
            Err(e) => shared.violation(format!(
                "fault {} ({}) could not be injected or healed: {e:#}",
                fault.n,
                fault.kind.name()
            )),
        }
        settle(cluster, &shared, fault.n).await;
    }
    let soak_s = soak_start.elapsed().as_secs_f64();

    // Drain: no more submissions; wait for what is in flight.
    shared.stop_submitting.store(true, Ordering::Relaxed);
    let drain_bound = Duration::from_secs(args.framework_timeout + 30);
    if tokio::time::timeout(drain_bound, work).await.is_err() {
        shared.violation(format!(
            "the frameworks in flight did not end within {drain_bound:?} of the end"
        ));
    }
    restart_exited(cluster, &shared).await;
    compare_registries(cluster, &shared).await;
    shared.done.store(true, Ordering::Relaxed);
    let _ = sampler.await;

    let checker = shared.checker();
    let completed: u64 = checker.completed().values().sum();
    let completed_by_kind: BTreeMap<&str, u64> = Kind::ALL
        .iter()
        .map(|k| (k.name(), checker.completed().get(k).copied().unwrap_or(0)))
        .collect();
    let faults_by_kind: BTreeMap<&str, u64> = FaultKind::ALL
        .iter()
        .map(|k| (k.name(), by_kind.get(k).copied().unwrap_or(0)))
        .collect();
    let mut rec: Vec<u128> = recoveries.iter().map(|r| r.2).collect();
    rec.sort_unstable();
    let longest = recoveries.iter().max_by_key(|r| r.2);
    Ok(json!({
        "scenario": "chaos",
        "seed": args.seed,
        "minutes": args.minutes,
        "soak_s": (soak_s * 10.0).round() / 10.0,
        "setup_ms": setup_ms as u64,
        "masters": cluster.masters(),
        "agents": cluster.agents(),
        "agents_in_netns": false,
        "faults": by_kind.values().sum::<u64>(),
        "faults_by_kind": faults_by_kind,
        "submitted": shared.submitted.load(Ordering::Relaxed),
        "completed": completed,
        "completed_by_kind": completed_by_kind,
        "failed_by_fault": checker.failed_by_fault().iter().map(|(k, n)| (k.name(), *n)).collect::<BTreeMap<_, _>>(),
        "tasks_seen": checker.tasks_seen(),
        "violations": checker.violations().len(),
        "violation_details": checker.violations().iter().take(50).collect::<Vec<_>>(),
        "longest_recovery_ms": longest.map(|r| r.2 as u64),
        "longest_recovery": longest.map(|r| format!("fault {} {}", r.0, r.1)),
        "recovery_ms_p50": rec.get(rec.len() / 2).map(|&v| v as u64),
        "recoveries": rec.len(),
        "master_rss_mib_max": checker.rss_max_mib("master"),
        "agent_rss_mib_max": checker.rss_max_mib("agent"),
        "rss_bound_mib": args.rss_bound_mib,
    }))
}

/// Waits until `n` agents are registered, reachable and healthy with the leader.
async fn wait_agents(ops: &[Operator], n: usize) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if agents_ready(ops).await == Some(n) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the {n} agents did not all register within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many agents the leader has reachable and healthy, if a master leads.
async fn agents_ready(ops: &[Operator]) -> Option<usize> {
    let l = leader(ops).await?;
    let mut op = ops[l].clone();
    let state = op
        .get_state(pb::GetStateRequest {})
        .await
        .ok()?
        .into_inner();
    Some(
        state
            .agents
            .iter()
            .filter(|a| a.reachable && a.unhealthy_reason.is_empty())
            .count(),
    )
}

/// Uploads a component through whichever master leads, retrying across leader changes.
async fn upload_any(ops: &[Operator], path: &Path) -> anyhow::Result<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(l) = leader(ops).await {
            let mut op = ops[l].clone();
            match upload(&mut op, path).await {
                Ok(d) => return Ok(d),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("wasmos-bench chaos: upload retried: {e:#}");
                }
                Err(e) => return Err(e),
            }
        } else if Instant::now() > deadline {
            bail!("no master led within 60 s to upload {}", path.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Restarts processes that exited without being killed (a violation: nothing the soak does
/// may make a process exit).
async fn restart_exited(cluster: &mut Cluster, shared: &Shared) {
    for (name, master, i, status) in cluster.exited() {
        shared.violation(format!("{name} exited by itself ({status}); restarted"));
        let r = if master {
            cluster.start_master(i).await
        } else {
            cluster.start_agent(i)
        };
        if let Err(e) = r {
            shared.violation(format!("{name} could not be restarted: {e:#}"));
        }
    }
}

/// Injects `fault`, times the recovery, heals it after its hold and times the recovery again.
async fn inject(
    cluster: &mut Cluster,
    shared: &Shared,
    fault: &Fault,
    at: f64,
    recoveries: &mut Vec<(u32, &'static str, u128)>,
) -> anyhow::Result<()> {
    let l = leader(&cluster.ops)
        .await
        .context("no master leads before the fault")?;
    let masters = cluster.masters();
    let agents = cluster.agents() as u64;
    let followers: Vec<usize> = (0..masters).filter(|&i| i != l).collect();
    let master_target = (fault.target % masters as u64) as usize;
    let agent_target = (fault.target % agents) as usize;
    let follower = followers[(fault.target % followers.len() as u64) as usize];
    let target = match fault.kind {
        FaultKind::KillLeader | FaultKind::PartitionLeader => format!("master{}", l + 1),
        FaultKind::KillFollower => format!("master{}", follower + 1),
        FaultKind::KillAgent | FaultKind::FullDisk => format!("agent{agent_target}"),
        FaultKind::PauseMaster => format!(
            "master{}{}",
            master_target + 1,
            if master_target == l { " (leader)" } else { "" }
        ),
    };
    let injected = Instant::now();
    match fault.kind {
        FaultKind::KillLeader => cluster.kill_master(l).await?,
        FaultKind::KillFollower => cluster.kill_master(follower).await?,
        FaultKind::KillAgent => cluster.kill_agent(agent_target).await?,
        FaultKind::PartitionLeader => cluster.net.set_link(l, false)?,
        FaultKind::FullDisk => {
            cluster.fill_disk(agent_target, true)?;
        }
        FaultKind::PauseMaster => cluster.signal_master(master_target, true)?,
    }
    let first = recover(shared, injected, fault.n, "injected").await;
    if let Some(ms) = first {
        recoveries.push((fault.n, fault.kind.name(), ms));
    }
    let rest = fault.hold.saturating_sub(injected.elapsed());
    tokio::time::sleep(rest).await;
    let healed = Instant::now();
    match fault.kind {
        FaultKind::KillLeader => cluster.start_master(l).await?,
        FaultKind::KillFollower => cluster.start_master(follower).await?,
        FaultKind::KillAgent => cluster.start_agent(agent_target)?,
        FaultKind::PartitionLeader => cluster.net.set_link(l, true)?,
        FaultKind::FullDisk => {
            cluster.fill_disk(agent_target, false)?;
        }
        FaultKind::PauseMaster => cluster.signal_master(master_target, false)?,
    }
    let second = recover(shared, healed, fault.n, "healed").await;
    if let Some(ms) = second {
        recoveries.push((fault.n, fault.kind.name(), ms));
    }
    let show = |r: Option<u128>| r.map_or("none".to_string(), |ms| format!("{ms} ms"));
    eprintln!(
        "wasmos-bench chaos: fault {} at {at:.1} s: {} of {target} for {} ms; recovered {} \
         after injection, {} after healing",
        fault.n,
        fault.kind.name(),
        fault.hold.as_millis(),
        show(first),
        show(second),
    );
    Ok(())
}

/// Times how long after `since` the cluster works again: a master leads, commits a registry
/// change, and launches the task of a framework submitted to it. `None` (and a violation)
/// after [`RECOVERY_BOUND`].
async fn recover(shared: &Shared, since: Instant, n: u32, phase: &str) -> Option<u128> {
    let deadline = since + RECOVERY_BOUND;
    let mut committed = false;
    let mut probe: Option<String> = None;
    while Instant::now() < deadline {
        let Some(l) = leader(&shared.ops).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let mut op = shared.ops[l].clone();
        if !committed {
            let weight = 1.0 + f64::from(n % 100);
            committed = op
                .set_weights(pb::SetWeightsRequest {
                    weights: vec![pb::RoleWeight {
                        role: "chaos-probe".into(),
                        weight,
                    }],
                })
                .await
                .is_ok();
            if !committed {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        }
        let id = match &probe {
            Some(id) => id.clone(),
            None => match shared.submit(l, Kind::Probe).await {
                Ok(id) => {
                    probe = Some(id.clone());
                    id
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let launched = match op
            .get_framework_result(pb::GetFrameworkResultRequest {
                framework_id: id.clone(),
            })
            .await
        {
            Ok(r) if r.get_ref().ended => true,
            _ => op
                .get_state(pb::GetStateRequest {})
                .await
                .is_ok_and(|s| s.get_ref().tasks.iter().any(|t| t.framework_id == id)),
        };
        if launched {
            return Some(since.elapsed().as_millis());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shared.violation(format!(
        "fault {n}: the cluster did not work again within {RECOVERY_BOUND:?} after it was \
         {phase} (committed: {committed}, probe submitted: {})",
        probe.is_some()
    ));
    None
}

/// Waits until the cluster is steady again: a leader, every master as far as the leader
/// was, every agent registered and healthy. A violation after [`SETTLE_BOUND`].
async fn settle(cluster: &mut Cluster, shared: &Shared, n: u32) {
    let deadline = Instant::now() + SETTLE_BOUND;
    let mut target: Option<u64> = None;
    loop {
        restart_exited(cluster, shared).await;
        let mut why = String::new();
        if let Some(l) = leader(&cluster.ops).await {
            let digests = join_all(
                (0..cluster.masters())
                    .map(|i| {
                        let http = cluster.net.http(i);
                        async move { cluster::digest(&http).await }
                    })
                    .collect(),
            )
            .await;
            match &digests[l] {
                Ok(d) => {
                    let t = *target.get_or_insert(d.applied_index);
                    let behind: Vec<String> = digests
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| d.as_ref().map_or(true, |d| d.applied_index < t))
                        .map(|(i, _)| format!("master{}", i + 1))
                        .collect();
                    if !behind.is_empty() {
                        why = format!("{} behind index {t}", behind.join(", "));
                    }
                }
                Err(e) => why = format!("leader digest: {e:#}"),
            }
            if why.is_empty() {
                match agents_ready(&cluster.ops).await {
                    Some(a) if a == cluster.agents() => return,
                    a => why = format!("{a:?} of {} agents ready", cluster.agents()),
                }
            }
        } else {
            why = "no leader".into();
        }
        if Instant::now() > deadline {
            shared.violation(format!(
                "fault {n}: the cluster did not settle within {SETTLE_BOUND:?}: {why}"
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// At the end: every master's registry digest, until all are at one index; a violation when
/// they differ there, or never meet within a minute.
async fn compare_registries(cluster: &Cluster, shared: &Shared) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = String::new();
    while Instant::now() < deadline {
        let digests: Vec<_> = join_all(
            (0..cluster.masters())
                .map(|i| {
                    let http = cluster.net.http(i);
                    async move { cluster::digest(&http).await }
                })
                .collect(),
        )
        .await;
        match digests.into_iter().collect::<anyhow::Result<Vec<_>>>() {
            Ok(d) => match checker::compare_digests(&d) {
                Ok(true) => {
                    eprintln!(
                        "wasmos-bench chaos: the {} registries are identical at index {} ({})",
                        d.len(),
                        d[0].applied_index,
                        d[0].sha256
                    );
                    return;
                }
                Ok(false) => {
                    last = format!(
                        "applied indexes {:?}",
                        d.iter().map(|d| d.applied_index).collect::<Vec<_>>()
                    )
                }
                Err(e) => {
                    // The same index and different registries: check once more, in case the
                    // index moved between the reads.
                    if last == e {
                        shared.violation(e);
                        return;
                    }
                    last = e;
                }
            },
            Err(e) => last = format!("{e:#}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    shared.violation(format!(
        "the masters' registries did not meet at one index within 60 s: {last}"
    ));
}

/// Samples every process's RSS each second until the run is done.
async fn sample_rss(shared: Arc<Shared>, pids: cluster::Pids) {
    while !shared.done.load(Ordering::Relaxed) {
        let now: Vec<(String, Option<u32>)> = pids.lock().map(|p| p.clone()).unwrap_or_default();
        for (name, pid) in now {
            if let Some(kib) = pid.and_then(crate::stats::rss_kib) {
                shared.checker().rss(&name, kib);
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Keeps `concurrency` batch frameworks (and one service) in flight until told to stop, and
/// follows every tracked framework (probes too) to its end; returns once none is in flight
/// after the stop.
async fn workload_loop(shared: Arc<Shared>, concurrency: usize, timeout: Duration) {
    let mut next = 0usize;
    let mut history_at = Instant::now();
    loop {
        let stopping = shared.stop_submitting.load(Ordering::Relaxed);
        if stopping && shared.inflight().is_empty() {
            return;
        }
        let Some(l) = leader(&shared.ops).await else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        let op = shared.ops[l].clone();
        follow(&shared, &op, timeout).await;
        if history_at.elapsed() >= HISTORY_EVERY {
            history_at = Instant::now();
            let ids: Vec<String> = shared.inflight().iter().map(|t| t.id.clone()).collect();
            for id in ids {
                read_history(&shared, &op, &id).await;
            }
        }
        if !stopping {
            let (batch, service) = {
                let f = shared.inflight();
                (
                    f.iter()
                        .filter(|t| t.kind.batch() && t.kind != Kind::Probe)
                        .count(),
                    f.iter().any(|t| t.kind == Kind::Service),
                )
            };
            let kind = MIX[next % MIX.len()];
            let wanted = if kind == Kind::Service {
                !service
            } else {
                batch < concurrency
            };
            if kind == Kind::Service && service {
                next += 1;
            } else if wanted && shared.submit(l, kind).await.is_ok() {
                next += 1;
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the result of every tracked framework through `op`; checks those that ended.
async fn follow(shared: &Shared, op: &Operator, timeout: Duration) {
    let ids: Vec<String> = shared.inflight().iter().map(|t| t.id.clone()).collect();
    for id in ids {
        let mut op = op.clone();
        let Ok(r) = op
            .get_framework_result(pb::GetFrameworkResultRequest {
                framework_id: id.clone(),
            })
            .await
            .map(|r| r.into_inner())
        else {
            continue;
        };
        let ended = {
            let mut f = shared.inflight();
            let Some(pos) = f.iter().position(|t| t.id == id) else {
                continue;
            };
            let t = &mut f[pos];
            if r.ended {
                Some((f.remove(pos), None))
            } else if t.submitted.elapsed() > timeout {
                let why = format!("did not end within {timeout:?}");
                Some((f.remove(pos), Some(why)))
            } else if !r.registered {
                let since = *t.unregistered_since.get_or_insert_with(Instant::now);
                if since.elapsed() > UNREGISTERED_BOUND {
                    let why = format!(
                        "was removed without an outcome (unregistered for {UNREGISTERED_BOUND:?})"
                    );
                    Some((f.remove(pos), Some(why)))
                } else {
                    None
                }
            } else {
                t.unregistered_since = None;
                None
            }
        };
        match ended {
            Some((t, None)) => {
                read_history(shared, &op, &t.id).await;
                shared
                    .checker()
                    .outcome(t.kind, &t.name, &t.id, r.succeeded, &r.result);
            }
            Some((t, Some(why))) => {
                shared.violation(format!("{} ({}, {}) {why}", t.name, t.id, t.kind.name()))
            }
            None => {}
        }
    }
}

/// Reads the leader's history of framework `id`'s ended tasks into the checker.
async fn read_history(shared: &Shared, op: &Operator, id: &str) {
    let mut op = op.clone();
    let mut token = String::new();
    // At most 20 pages of 1,000: more than a soak framework has.
    for _ in 0..20 {
        let Ok(page) = tokio::time::timeout(
            CALL,
            op.list_completed_tasks(pb::ListCompletedTasksRequest {
                framework_id: id.to_string(),
                page_size: 1000,
                page_token: token.clone(),
                ..Default::default()
            }),
        )
        .await
        .map(|r| r.map(|r| r.into_inner())) else {
            return;
        };
        let Ok(page) = page else { return };
        {
            let mut c = shared.checker();
            for t in &page.tasks {
                c.task_ended(&t.framework_id, &t.task_id, t.state);
            }
        }
        if page.next_page_token.is_empty() {
            return;
        }
        token = page.next_page_token;
    }
}
