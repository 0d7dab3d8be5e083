//! `e2e`: a real cluster of separate processes on loopback, timed from the framework's side.
//!
//! The bench starts one `wasmos master` and `--agents` `wasmos agent` processes (each with its
//! own work directory under a temporary directory), waits until every agent has registered,
//! then submits frameworks through the operator API, as `wasmos submit` does:
//!
//! 1. `benchguest` with `--warmup` tasks, so that every agent has fetched and compiled the
//!    component (its timings are reported but not the headline);
//! 2. `benchguest` with `--tasks` tasks: its hosted scheduler launches `noop` tasks as fast as
//!    offers allow and times each one from `driver::launch` to its FINISHED update, and reports
//!    tasks/s (init to the last FINISHED) and latency percentiles in its result;
//! 3. `logreg` (default arguments unless `--logreg-args`), after a one-iteration warm-up over
//!    tiny partitions on every agent so that its first iteration measures parsing, not fetching
//!    and compiling the component; its result lists every iteration's time.
//!
//! The master keeps every timed task in its history (`--max-completed-tasks-per-framework` is
//! raised to `--tasks`), and the report's `master_rss_mib_per_100k_completed_tasks` is the
//! growth of the master's VmRSS across the timed run, scaled to 100,000 completed tasks: an
//! upper bound on what the history costs (it includes whatever else the run left allocated).
//!
//! Every master enforces ACLs, as every real one does: the bench bootstraps the first token
//! (`wasmos acl bootstrap`) and passes it to every child and every call of its own (`--open`
//! runs without, to compare). With `--tls` the same run is then made a second time over mutual
//! TLS (certificates from `wasmos certs` in the temporary directory), in the same invocation,
//! and the report adds the TLS run (`tls`) and `tls_slowdown`, plain tasks/s over TLS tasks/s.
//!
//! The `wasmos` binary is `--wasmos`, else `$WASMOS_BIN`, else the `wasmos` next to this
//! executable (`target/release/wasmos` beside `target/release/wasmos-bench`; build both with
//! `cargo build --release -p wasmos-bench -p wasmos`). Processes are killed when the run ends,
//! whether it succeeded or not; with `--keep-dir` their work directories and logs stay.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use wasmos_api::proto as pb;

use crate::secure::{Operator, Security};

/// CPU one benchguest task asks for, in thousandths of a core.
pub(crate) const TASK_MILLICPUS: u64 = 10;
/// Memory one benchguest task asks for (its executor instance's cap), in MiB.
pub(crate) const TASK_MEM_MB: u64 = 32;
/// CPU and memory one logreg task asks for besides its points (see examples-wasm/logreg).
const LOGREG_TASK_MILLICPUS: u64 = 500;
/// Memory every agent offers beyond its benchguest slots, for logreg's tasks.
const AGENT_EXTRA_MEM_MB: u64 = 2048;
/// Size of the chunks a component is uploaded in (the API allows up to 1 MiB).
const CHUNK_BYTES: usize = 1 << 20;
/// How often a framework's result is polled.
const POLL: Duration = Duration::from_millis(10);

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (the only format; accepted for symmetry with the other scenarios).
    #[arg(long)]
    json: bool,
    /// Tasks in the timed run.
    #[arg(long, default_value_t = 20_000)]
    tasks: u32,
    /// Agent processes.
    #[arg(long, default_value_t = 4)]
    agents: u32,
    /// Benchguest tasks one agent can hold at once (its CPU and memory are sized for this many,
    /// plus room for logreg). More slots trade latency for throughput.
    #[arg(long, default_value_t = 250)]
    slots: u32,
    /// Executor instances per agent the tasks are spread over.
    #[arg(long, default_value_t = 4)]
    executors: u32,
    /// Tasks in the warm-up run before the timed one (default: 50 per agent).
    #[arg(long)]
    warmup: Option<u32>,
    /// Arguments for logreg: PARTITIONS POINTS ITERATIONS WAIT_MS (default: logreg's own).
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    logreg_args: Option<String>,
    /// Skip the logreg run (its keys are then null).
    #[arg(long)]
    no_logreg: bool,
    /// The `wasmos` binary (default: $WASMOS_BIN, else the one next to this executable).
    #[arg(long)]
    wasmos: Option<PathBuf>,
    /// Directory with `benchguest.wasm` and `logreg.wasm` (default: examples-wasm's release
    /// output, built by scripts/build-examples.sh).
    #[arg(long)]
    components: Option<PathBuf>,
    /// Most time any one framework may take, in seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Keep the temporary directory (work directories and process logs) and print its path
    /// on stderr.
    #[arg(long)]
    keep_dir: bool,
    /// After the plain run, make the same run over mutual TLS and report both (`tls`,
    /// `tls_tasks_per_s`, `tls_slowdown`).
    #[arg(long)]
    tls: bool,
    /// Run the masters without ACLs (no --acl, no token), to compare what enforcement costs.
    /// By default they enforce ACLs, as every master outside `wasmos dev` does.
    #[arg(long, conflicts_with = "tls")]
    open: bool,
    /// More flags for the master (set by other scenarios, e.g. `http`'s `--http`).
    #[arg(skip)]
    pub(crate) extra_master_flags: Vec<String>,
}

pub(crate) fn default_components() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples-wasm/target/wasm32-wasip2/release")
}

/// The `wasmos` binary to run: `--wasmos`, `$WASMOS_BIN`, or the sibling of this executable
/// (for a test binary in `target/*/deps`, the one in `target/*`).
pub fn find_wasmos(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        if !p.is_file() {
            bail!("--wasmos {} is not a file", p.display());
        }
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("WASMOS_BIN") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!("$WASMOS_BIN {} is not a file", p.display());
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("cannot tell where this executable is")?;
    let mut dir = exe.parent().map(Path::to_path_buf);
    while let Some(d) = dir {
        let candidate = d.join(format!("wasmos{}", std::env::consts::EXE_SUFFIX));
        if candidate.is_file() {
            return Ok(candidate);
        }
        if d.file_name().is_some_and(|n| n == "deps") {
            dir = d.parent().map(Path::to_path_buf);
        } else {
            break;
        }
    }
    bail!(
        "no `wasmos` binary next to {}: build it (`cargo build --release -p wasmos`) or pass \
         --wasmos PATH",
        exe.display()
    )
}

/// The master and agent processes; killed on drop.
pub(crate) struct Cluster {
    master: Child,
    agents: Vec<Child>,
    pub(crate) addr: String,
}

impl Cluster {
    pub(crate) async fn start(
        wasmos: &Path,
        dir: &Path,
        args: &Args,
        security: &mut Security,
    ) -> anyhow::Result<Cluster> {
        let log = |name: &str| -> anyhow::Result<Stdio> {
            let path = dir.join(format!("{name}.log"));
            let f = std::fs::File::create(&path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Ok(Stdio::from(f))
        };
        let mut master = Command::new(wasmos)
            .args(["master", "--listen", "127.0.0.1:0"])
            .args(security.master_flags(1))
            .args([
                "--max-completed-tasks-per-framework".to_string(),
                args.tasks.max(1000).to_string(),
            ])
            .args(&args.extra_master_flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log("master")?)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {} master", wasmos.display()))?;
        let stdout = master.stdout.take().context("the master's stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("the master did not say where it listens within 60 s")?
            .context("cannot read the master's stdout")?
            .with_context(|| {
                format!(
                    "the master exited before listening; see {}",
                    dir.join("master.log").display()
                )
            })?;
        let addr = line
            .strip_prefix("wasmos master listening on ")
            .with_context(|| format!("unexpected first line from the master: {line:?}"))?
            .to_string();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut cluster = Cluster {
            master,
            agents: Vec::new(),
            addr,
        };
        security.bootstrap(wasmos, &cluster.addr).await?;

        let millicpus = u64::from(args.slots) * TASK_MILLICPUS;
        let mem_mb = u64::from(args.slots) * TASK_MEM_MB + AGENT_EXTRA_MEM_MB;
        let resources = format!(
            "cpus:{}.{:03};mem:{mem_mb};disk:10000",
            millicpus / 1000,
            millicpus % 1000
        );
        for i in 0..args.agents {
            let name = format!("agent-{i}");
            let mut agent = Command::new(wasmos);
            agent
                .args(["agent", "--master", &cluster.addr, "--work-dir"])
                .arg(dir.join(&name))
                .args(["--resources", &resources, "--hostname", &name])
                .args(security.agent_flags());
            security.child_env(&mut agent, false);
            let agent = agent
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log(&name)?)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {} agent", wasmos.display()))?;
            cluster.agents.push(agent);
        }
        Ok(cluster)
    }

    /// Fails if any process has exited.
    pub(crate) fn check_alive(&mut self, dir: &Path) -> anyhow::Result<()> {
        if let Ok(Some(status)) = self.master.try_wait() {
            bail!(
                "the master exited ({status}); see {}",
                dir.join("master.log").display()
            );
        }
        for (i, a) in self.agents.iter_mut().enumerate() {
            if let Ok(Some(status)) = a.try_wait() {
                bail!(
                    "agent {i} exited ({status}); see {}",
                    dir.join(format!("agent-{i}.log")).display()
                );
            }
        }
        Ok(())
    }

    /// CPU time (user + system) the master and the agents have used so far, if this OS tells.
    fn cpu_times(&self) -> (Option<Duration>, Option<Duration>) {
        let master = self.master.id().and_then(cpu_time);
        let agents = self
            .agents
            .iter()
            .map(|a| a.id().and_then(cpu_time))
            .sum::<Option<Duration>>();
        (master, agents)
    }

    /// The master's resident set size, in KiB, if this OS tells.
    pub(crate) fn master_rss_kib(&self) -> Option<u64> {
        crate::stats::rss_kib(self.master.id()?)
    }

    pub(crate) async fn stop(mut self) {
        for a in &mut self.agents {
            let _ = a.kill().await;
        }
        let _ = self.master.kill().await;
    }
}

/// User + system CPU time of a process, from `/proc/PID/stat` (Linux).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// Waits until `count` agents are registered and reachable.
pub(crate) async fn wait_for_agents(
    op: &mut Operator,
    cluster: &mut Cluster,
    dir: &Path,
    count: usize,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = op.get_state(pb::GetStateRequest {}).await?.into_inner();
        let up = state.agents.iter().filter(|a| a.reachable).count();
        if up >= count {
            return Ok(());
        }
        cluster.check_alive(dir)?;
        if Instant::now() > deadline {
            bail!("only {up} of {count} agents registered within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Uploads a component; returns its digest.
pub(crate) async fn upload(op: &mut Operator, path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read {} (build it with scripts/build-examples.sh)",
            path.display()
        )
    })?;
    let chunks: Vec<pb::UploadComponentChunk> = bytes
        .chunks(CHUNK_BYTES)
        .map(|c| pb::UploadComponentChunk {
            expected_sha256: String::new(),
            data: c.to_vec(),
        })
        .collect();
    let stored = op
        .upload_component(tokio_stream::iter(chunks))
        .await
        .with_context(|| format!("the master refused {}", path.display()))?
        .into_inner();
    Ok(stored.sha256)
}

/// A framework's result and how long it took from submission until the bench saw it.
pub(crate) struct Outcome {
    result: String,
    wall: Duration,
}

/// Submits a hosted framework and polls its result until it ends.
pub(crate) async fn run_framework(
    op: &mut Operator,
    cluster: &mut Cluster,
    dir: &Path,
    name: &str,
    digest: &str,
    args: Vec<String>,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let info = pb::FrameworkInfo {
        id: String::new(),
        name: name.to_string(),
        role: "bench".into(),
        principal: "wasmos-bench".into(),
        failover_timeout_seconds: 0.0,
        component_sha256: digest.to_string(),
        ..Default::default()
    };
    let start = Instant::now();
    let framework_id = op
        .submit_framework(pb::SubmitFrameworkRequest {
            info: Some(info),
            args,
            limits: None,
        })
        .await
        .with_context(|| format!("the master refused to start {name}"))?
        .into_inner()
        .framework_id;
    loop {
        let r = op
            .get_framework_result(pb::GetFrameworkResultRequest {
                framework_id: framework_id.clone(),
            })
            .await
            .with_context(|| format!("cannot follow {name} ({framework_id})"))?
            .into_inner();
        if r.ended {
            if !r.succeeded {
                bail!(
                    "{name} ({framework_id}) failed: {}; logs in {}",
                    r.result,
                    dir.display()
                );
            }
            return Ok(Outcome {
                result: r.result,
                wall: start.elapsed(),
            });
        }
        if !r.registered && start.elapsed() > Duration::from_secs(5) {
            bail!("{name} ({framework_id}) was removed without a result");
        }
        cluster.check_alive(dir)?;
        if start.elapsed() > timeout {
            bail!(
                "{name} ({framework_id}) did not finish within {timeout:?}; logs in {}",
                dir.display()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How many completed tasks the master keeps of the completed framework named `name` (the
/// newest such).
async fn completed_tasks_of(op: &mut Operator, name: &str) -> Option<u64> {
    let page = op
        .list_completed_frameworks(pb::ListCompletedFrameworksRequest {
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .ok()?
        .into_inner();
    page.frameworks
        .iter()
        .find(|f| f.name == name)
        .map(|f| u64::from(f.completed_tasks))
}

/// The iteration times in logreg's result (`...; iteration ms: 371.8, 7.7, 6.9; ...`); of a
/// long job, the ones it lists.
pub fn logreg_iterations(result: &str) -> anyhow::Result<Vec<f64>> {
    let list = result
        .split_once("iteration ms: ")
        .map(|(_, rest)| rest.split(';').next().unwrap_or(rest))
        .with_context(|| format!("no iteration times in logreg's result {result:?}"))?;
    // A long job lists its first times and then `... (N more)`.
    let times = list
        .split(',')
        .map(str::trim)
        .take_while(|t| !t.starts_with("..."))
        .map(str::parse::<f64>)
        .collect::<Result<Vec<f64>, _>>()
        .with_context(|| format!("malformed iteration times in logreg's result {result:?}"))?;
    if times.is_empty() {
        bail!("no iteration times in logreg's result {result:?}");
    }
    Ok(times)
}

/// The median of `values` (the mean of the middle two for an even count); `None` if empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

pub(crate) fn parse_report(name: &str, outcome: &Outcome) -> anyhow::Result<Value> {
    serde_json::from_str(&outcome.result)
        .with_context(|| format!("{name}'s result is not JSON: {:?}", outcome.result))
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

pub fn run(args: Args) -> anyhow::Result<Value> {
    let _ = args.json;
    if args.tasks == 0 || args.agents == 0 || args.slots == 0 || args.executors == 0 {
        bail!("--tasks, --agents, --slots and --executors must each be at least 1");
    }
    if u64::from(args.slots) * TASK_MILLICPUS < LOGREG_TASK_MILLICPUS && !args.no_logreg {
        bail!(
            "--slots {} leaves an agent too little CPU for a logreg task ({} millicpus); use at \
             least {} or --no-logreg",
            args.slots,
            LOGREG_TASK_MILLICPUS,
            LOGREG_TASK_MILLICPUS / TASK_MILLICPUS
        );
    }
    let wasmos = find_wasmos(args.wasmos.as_deref())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::Builder::new()
        .prefix("wasmos-bench-e2e")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let result = rt.block_on(async {
        let plain = run_one(&wasmos, &dir.path().join("plain"), &args, false).await?;
        if !args.tls {
            let mut report = plain;
            report["tls"] = Value::Null;
            return Ok(report);
        }
        let tls = run_one(&wasmos, &dir.path().join("tls"), &args, true).await?;
        Ok(with_tls(plain, tls))
    });
    if args.keep_dir {
        let kept = dir.keep();
        eprintln!(
            "wasmos-bench e2e: work directories and logs kept in {}",
            kept.display()
        );
    }
    result
}

/// One run on a fresh cluster in `dir`, over TLS with `tls`.
async fn run_one(wasmos: &Path, dir: &Path, args: &Args, tls: bool) -> anyhow::Result<Value> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut security = if args.open {
        Security::open()
    } else {
        Security::make(wasmos, dir, tls, 1).await?
    };
    let mut cluster = Cluster::start(wasmos, dir, args, &mut security).await?;
    let r = measure(args, &mut cluster, dir, &security).await;
    cluster.stop().await;
    r
}

/// The plain run's report with the TLS run's beside it: `tls` (its whole report),
/// `tls_tasks_per_s`, `tls_latency_ms_p50`/`_p99` and `tls_slowdown` (plain tasks/s over TLS
/// tasks/s; above 1 when TLS is slower).
pub fn with_tls(plain: Value, tls: Value) -> Value {
    let slowdown = match (plain["tasks_per_s"].as_f64(), tls["tasks_per_s"].as_f64()) {
        (Some(p), Some(t)) if t > 0.0 => json!((p / t * 1000.0).round() / 1000.0),
        _ => Value::Null,
    };
    let mut report = plain;
    report["tls_tasks_per_s"] = tls["tasks_per_s"].clone();
    report["tls_latency_ms_p50"] = tls["latency_ms_p50"].clone();
    report["tls_latency_ms_p99"] = tls["latency_ms_p99"].clone();
    report["tls_slowdown"] = slowdown;
    report["tls"] = tls;
    report
}

async fn measure(
    args: &Args,
    cluster: &mut Cluster,
    dir: &Path,
    security: &Security,
) -> anyhow::Result<Value> {
    let timeout = Duration::from_secs(args.timeout);
    let enforced = security.probe(&cluster.addr).await;
    let mut op = security.operator(&cluster.addr).await?;
    wait_for_agents(&mut op, cluster, dir, args.agents as usize).await?;
    let components = args.components.clone().unwrap_or_else(default_components);
    let bench = upload(&mut op, &components.join("benchguest.wasm")).await?;
    let bench_args = |n: u32| {
        vec![
            n.to_string(),
            TASK_MILLICPUS.to_string(),
            TASK_MEM_MB.to_string(),
            args.executors.to_string(),
        ]
    };

    // Warm-up: every agent fetches and compiles the component.
    let warmup_tasks = args.warmup.unwrap_or(50 * args.agents).max(1);
    let warm = run_framework(
        &mut op,
        cluster,
        dir,
        "bench-warmup",
        &bench,
        bench_args(warmup_tasks),
        timeout,
    )
    .await?;
    let warm = parse_report("the warm-up", &warm)?;

    let (master_cpu0, agents_cpu0) = cluster.cpu_times();
    let rss0 = cluster.master_rss_kib();
    let timed = run_framework(
        &mut op,
        cluster,
        dir,
        "bench",
        &bench,
        bench_args(args.tasks),
        timeout,
    )
    .await?;
    let (master_cpu1, agents_cpu1) = cluster.cpu_times();
    let rss1 = cluster.master_rss_kib();
    let report = parse_report("the timed run", &timed)?;
    let kept = completed_tasks_of(&mut op, "bench").await;
    let rss_per_100k = match (rss0, rss1, kept) {
        (Some(a), Some(b), Some(n)) if n > 0 => {
            let mib = b.saturating_sub(a) as f64 / 1024.0 * 100_000.0 / n as f64;
            json!((mib * 10.0).round() / 10.0)
        }
        _ => Value::Null,
    };
    if report["tasks"].as_u64() != Some(u64::from(args.tasks)) {
        bail!(
            "the timed run reports {} tasks, not {}",
            report["tasks"],
            args.tasks
        );
    }
    let cpu_ms = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => json!(ms(b.saturating_sub(a))),
        _ => Value::Null,
    };

    let (logreg_times, logreg_result) = if args.no_logreg {
        (None, None)
    } else {
        let logreg = upload(&mut op, &components.join("logreg.wasm")).await?;
        // One iteration over one-point partitions, enough of them to reach every agent (logreg
        // packs each offer full), so that each agent has the component compiled.
        let per_agent = u64::from(args.slots) * TASK_MILLICPUS / LOGREG_TASK_MILLICPUS;
        let partitions = (per_agent * u64::from(args.agents)).clamp(1, 10_000);
        run_framework(
            &mut op,
            cluster,
            dir,
            "logreg-warmup",
            &logreg,
            vec![partitions.to_string(), "1".into(), "1".into(), "0".into()],
            timeout,
        )
        .await?;
        let logreg_args: Vec<String> = args
            .logreg_args
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(String::from)
            .collect();
        let out = run_framework(
            &mut op,
            cluster,
            dir,
            "logreg",
            &logreg,
            logreg_args,
            timeout,
        )
        .await?;
        (Some(logreg_iterations(&out.result)?), Some(out.result))
    };
    let first = logreg_times.as_ref().and_then(|t| t.first().copied());
    let later = logreg_times.as_ref().and_then(|t| median(&t[1..]));

    Ok(json!({
        "tasks": args.tasks,
        "agents": args.agents,
        "slots_per_agent": args.slots,
        "executors_per_agent": args.executors,
        "tasks_per_s": report["tasks_per_s"],
        "latency_ms_p50": report["latency_ms_p50"],
        "latency_ms_p99": report["latency_ms_p99"],
        "latency_ms_max": report["latency_ms_max"],
        "elapsed_ms": report["elapsed_ms"],
        "first_launch_ms": report["first_launch_ms"],
        "launch_calls": report["launch_calls"],
        "offers": report["offers"],
        "wall_ms": ms(timed.wall),
        "master_cpu_ms": cpu_ms(master_cpu0, master_cpu1),
        "agents_cpu_ms": cpu_ms(agents_cpu0, agents_cpu1),
        "master_rss_kib_before": rss0,
        "master_rss_kib_after": rss1,
        "completed_tasks_kept": kept,
        "master_rss_mib_per_100k_completed_tasks": rss_per_100k,
        "warmup_tasks": warmup_tasks,
        "warmup_tasks_per_s": warm["tasks_per_s"],
        "logreg_first_iter_ms": first,
        "logreg_later_iter_ms": later,
        "logreg_iter_ms": logreg_times,
        "logreg_result": logreg_result,
        "acl_enforced": enforced.acl,
        "tls_enforced": enforced.tls,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_logreg_iteration_times() {
        let r = "logreg: accuracy 0.9590 on 2000 held-out points after 3 iterations over 4 \
                 partitions x 25000 points; iteration ms: 371.8, 7.7, 9.1; first/median-later = \
                 45.0x";
        assert_eq!(logreg_iterations(r).unwrap(), vec![371.8, 7.7, 9.1]);
        let one = "logreg: ... after 1 iterations ...; iteration ms: 12.5; partitions parsed: 4";
        assert_eq!(logreg_iterations(one).unwrap(), vec![12.5]);
        let long = "logreg: ...; iteration ms: 300.1, 5.0, ... (980 more); first/median-later";
        assert_eq!(logreg_iterations(long).unwrap(), vec![300.1, 5.0]);
        assert!(logreg_iterations("logreg: no times").is_err());
        assert!(logreg_iterations("iteration ms: 1.0, x").is_err());
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
