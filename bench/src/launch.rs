//! `launch`: task launch latency and throughput through one agent, without a network.
//!
//! An [`Agent`] in a temporary work directory launches N tasks of one kind; a recording
//! transport stands in for the master and acknowledges every status update at once. Measured
//! per task: launch-to-RUNNING (`Agent::launch` returned, so the RUNNING update is on disk) and
//! launch-to-terminal (the terminal update reached the transport); over the run, tasks per
//! second. Wasm tasks are the `hostile` example's `echo:` payload spread over 16 executor
//! instances, with the component loaded and the instances warm before timing starts (the
//! cached-component case the targets are about). Native tasks run `true` in a cgroup of their
//! own, so they need root and cgroups.
//!
//! By default all tasks are launched at once (throughput, latency including queueing);
//! `--serial` launches one at a time and waits for its end (latency without queueing).
//!
//! Native tasks are measured twice in one run: with the agent's full isolation (its default:
//! own uid, mount and PID namespaces, no capabilities, no-new-privs, seccomp; the usual keys
//! and `isolated_running_ms_*`) and without any (`plain_running_ms_*`), so `isolation` (the
//! list of pieces that were on) has a price beside it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wasmos_agent::isolation::IsolationConfig;
use wasmos_agent::{
    Agent, AgentConfig, FrameworkContext, MemoryFetcher, QueuedUpdate, StatusQueue, TransportError,
    UpdateTransport,
};
use wasmos_api::{
    AgentId, ExecutorId, FrameworkId, Resources, TaskId, TaskInfo, TaskKind, TaskState,
};

use crate::stats::percentile;

/// Executor instances the Wasm tasks are spread over.
const EXECUTORS: usize = 16;

/// What kind of task to launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// A task in the framework's Wasm executor.
    Wasm,
    /// A native command (`true`) in a cgroup; needs root and cgroups.
    Native,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Wasm => "wasm",
            Kind::Native => "native",
        }
    }
}

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (the only format; accepted for symmetry with the other scenarios).
    #[arg(long)]
    json: bool,
    /// Which kind of task to launch.
    #[arg(long, value_enum, default_value = "wasm")]
    kind: Kind,
    /// How many tasks to time.
    #[arg(long, default_value_t = 2000)]
    tasks: usize,
    /// Launch one task at a time, each after the previous one ended.
    #[arg(long)]
    serial: bool,
    /// The component for Wasm tasks (default: `hostile`, built by scripts/build-examples.sh).
    #[arg(long)]
    component: Option<PathBuf>,
}

fn default_component() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples-wasm/target/wasm32-wasip2/release/hostile.wasm")
}

/// Stands in for the master: notes when each task's terminal update arrives and acknowledges
/// every update.
struct Recorder {
    queue: Arc<StatusQueue>,
    ended: Mutex<HashMap<TaskId, (Instant, TaskState)>>,
}

impl Recorder {
    fn ended(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, (Instant, TaskState)>> {
        self.ended.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait::async_trait]
impl UpdateTransport for Recorder {
    async fn send(&self, updates: Vec<QueuedUpdate>) -> Result<(), TransportError> {
        let now = Instant::now();
        for u in updates {
            if u.status.state.is_terminal() {
                self.ended()
                    .entry(u.status.task_id.clone())
                    .or_insert((now, u.status.state));
            }
            if let Some(uuid) = &u.status.uuid {
                self.queue
                    .acknowledge(&u.framework_id, &u.status.task_id, uuid);
            }
        }
        Ok(())
    }
}

fn task(name: &str, i: usize, kind: Kind) -> anyhow::Result<TaskInfo> {
    let task_kind = match kind {
        Kind::Wasm => TaskKind::Wasm {
            executor_id: ExecutorId::new(format!("e{}", i % EXECUTORS))?,
            payload: b"echo:x".to_vec(),
            budget: Default::default(),
        },
        Kind::Native => TaskKind::Command {
            argv: vec!["true".into()],
            env: vec![],
        },
    };
    Ok(TaskInfo {
        task_id: TaskId::new(format!("{name}{i}"))?,
        name: String::new(),
        agent_id: AgentId::new("bench")?,
        resources: Resources::new(0.01, 32, 0),
        kind: task_kind,
    })
}

/// Fails the run when a task did not start: its latency would measure a refusal.
fn started(id: &TaskId, state: TaskState) -> anyhow::Result<()> {
    if state != TaskState::Running {
        bail!("task {id} did not start (first state {state:?}); see the agent's log (WASMOS_LOG)");
    }
    Ok(())
}

/// Waits until `count` tasks have ended, failing after `limit`.
async fn wait_ended(recorder: &Recorder, count: usize, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while recorder.ended().len() < count {
        if Instant::now() > deadline {
            bail!(
                "only {} of {count} tasks ended within {limit:?}; the agent is stuck or the \
                 machine is overloaded",
                recorder.ended().len()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<Value> {
    let _ = args.json;
    if args.tasks == 0 {
        bail!("--tasks must be at least 1");
    }
    if args.kind == Kind::Native
        && let Err(e) = wasmos_agent::cgroups::CgroupHierarchy::detect("wasmos-bench")
    {
        bail!("native tasks need root and cgroups (cpu, memory, pids) on this machine: {e}");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let isolated = measure(&args, IsolationConfig::default()).await?;
        if args.kind != Kind::Native {
            return Ok(isolated.json);
        }
        let plain = measure(&args, IsolationConfig::none()).await?;
        let mut out = isolated.json;
        if let Value::Object(m) = &mut out {
            m.insert("isolation".into(), json!(isolated.isolation));
            m.insert(
                "isolated_running_ms_p50".into(),
                isolated.running_p50.into(),
            );
            m.insert(
                "isolated_running_ms_p99".into(),
                isolated.running_p99.into(),
            );
            m.insert("plain_running_ms_p50".into(), plain.running_p50.into());
            m.insert("plain_running_ms_p99".into(), plain.running_p99.into());
        }
        Ok(out)
    })
}

/// One measured run: its JSON and, for the native comparison, its launch-to-RUNNING figures.
struct Measured {
    json: Value,
    running_p50: f64,
    running_p99: f64,
    isolation: Vec<String>,
}

async fn measure(args: &Args, isolation: IsolationConfig) -> anyhow::Result<Measured> {
    let (kind, n) = (args.kind, args.tasks);
    let dir = tempfile::tempdir().context("cannot create a temporary work directory")?;
    let fetcher = Arc::new(MemoryFetcher::new());
    let path = args.component.clone().unwrap_or_else(default_component);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read {} (build it with scripts/build-examples.sh)",
            path.display()
        )
    })?;
    let digest = fetcher.add(bytes);
    let mut config = AgentConfig::new(dir.path());
    config.native.isolation = isolation;
    let (agent, _) = Agent::open(config, fetcher)
        .await
        .context("cannot open the benchmark agent")?;
    let pieces = agent.native_isolation().enabled();
    if let Some(why) = agent.native_isolation().refusal()
        && kind == Kind::Native
    {
        bail!("{why}");
    }
    let recorder = Arc::new(Recorder {
        queue: agent.status_queue().clone(),
        ended: Mutex::new(HashMap::new()),
    });
    let stop = CancellationToken::new();
    tokio::spawn(
        agent
            .status_queue()
            .clone()
            .run(recorder.clone(), stop.clone()),
    );
    let ctx = FrameworkContext {
        framework_id: FrameworkId::new("bench")?,
        role: "*".into(),
        component: Some(digest),
        wasm_budget: Default::default(),
    };
    let limit = Duration::from_secs(300);

    // Warm up: load the component and create the instances (for native, the cgroup parent).
    for i in 0..EXECUTORS {
        agent.launch(&ctx, task("warm", i, kind)?).await?;
    }
    wait_ended(&recorder, EXECUTORS, limit).await?;

    let start = Instant::now();
    let mut launched: Vec<(TaskId, Instant, Duration)> = Vec::with_capacity(n);
    if args.serial {
        for i in 0..n {
            let t = task("t", i, kind)?;
            let id = t.task_id.clone();
            let t0 = Instant::now();
            let state = agent.launch(&ctx, t).await?;
            let running = t0.elapsed();
            started(&id, state)?;
            launched.push((id, t0, running));
            wait_ended(&recorder, EXECUTORS + i + 1, limit).await?;
        }
    } else {
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let agent = agent.clone();
            let ctx = ctx.clone();
            let t = task("t", i, kind)?;
            handles.push(tokio::spawn(async move {
                let id = t.task_id.clone();
                let t0 = Instant::now();
                agent
                    .launch(&ctx, t)
                    .await
                    .map(|state| (id, t0, t0.elapsed(), state))
            }));
        }
        for h in handles {
            let (id, t0, running, state) = h.await??;
            started(&id, state)?;
            launched.push((id, t0, running));
        }
        wait_ended(&recorder, EXECUTORS + n, limit).await?;
    }
    let elapsed = start.elapsed();
    stop.cancel();
    agent.stop();

    let ended = recorder.ended().clone();
    let mut running: Vec<Duration> = launched.iter().map(|(_, _, d)| *d).collect();
    let mut terminal = Vec::with_capacity(n);
    for (id, t0, _) in &launched {
        let (end, state) = ended
            .get(id)
            .with_context(|| format!("task {id} has no terminal update"))?;
        if *state != TaskState::Finished {
            bail!("task {id} ended {state:?}, not FINISHED; the measurement is void");
        }
        terminal.push(end.saturating_duration_since(*t0));
    }
    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    let running_p50 = ms(percentile(&mut running, 50.0));
    let running_p99 = ms(percentile(&mut running, 99.0));
    let json = json!({
        "kind": kind.name(),
        "tasks": n,
        "serial": args.serial,
        "tasks_per_s": (n as f64 / elapsed.as_secs_f64()).round(),
        "running_ms_p50": running_p50,
        "running_ms_p99": running_p99,
        "terminal_ms_p50": ms(percentile(&mut terminal, 50.0)),
        "terminal_ms_p99": ms(percentile(&mut terminal, 99.0)),
    });
    Ok(Measured {
        json,
        running_p50,
        running_p99,
        isolation: pieces,
    })
}
