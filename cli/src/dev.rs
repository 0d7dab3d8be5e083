//! `wasmos dev`: a whole cluster in one process on 127.0.0.1, for laptops and tests. A master
//! (`wasmos_master::Master`) on an ephemeral port and N agents (`wasmos_agent::run_until_stopped`)
//! pointed at it, each offered an equal share of this machine's CPUs, memory and disk.
//!
//! With `--run FRAMEWORK.wasm -- ARGS` it submits that framework over loopback gRPC (the same
//! code as `wasmos submit`) and exits with its result and `wasmos submit`'s exit statuses (130
//! when interrupted);
//! without, it prints where to connect and serves until Ctrl-C or SIGTERM.
//!
//! Needs neither root nor cgroups: Wasm tasks run anywhere, and native tasks are refused by the
//! agents, saying why, where cgroups are unavailable.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wasmos_agent::{AgentConfig, RunConfig, RunError, SessionConfig};
use wasmos_api::Resources;
use wasmos_master::{Master, MasterConfig};
use wasmos_wasm_executor::{PoolingConfig, RuntimeConfig};

use crate::client::Failure;
use crate::submit::{self, Submission};

/// How long the agents may take to register before `wasmos dev` gives up.
const READY_WAIT: Duration = Duration::from_secs(30);
/// How long agents get to stop when the cluster shuts down.
const STOP_WAIT: Duration = Duration::from_secs(10);

#[derive(clap::Args)]
pub struct Args {
    /// Number of agents; each is offered an equal share of this machine.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    agents: u32,
    /// Where the agents keep their work directories (`agent-0`, ...); default: a temporary
    /// directory removed on exit.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Run this framework component, print its result and exit (as `wasmos submit` does).
    #[arg(long, value_name = "FRAMEWORK.wasm")]
    run: Option<PathBuf>,
    /// The framework's name with --run (default: the file name without `.wasm`).
    #[arg(long, requires = "run")]
    name: Option<String>,
    /// The framework's role with --run.
    #[arg(long, default_value = "default")]
    role: String,
    /// A role's weight in the allocator's fair sharing (default 1); repeat for more roles.
    #[arg(long = "weight", value_name = "ROLE=WEIGHT", value_parser = crate::master::parse_weight)]
    weights: Vec<(String, f64)>,
    #[command(flatten)]
    command_tasks: crate::master::CommandTaskArgs,
    #[command(flatten)]
    limits: submit::LimitArgs,
    #[command(flatten)]
    compile: crate::compiler::CompileArgs,
    /// Arguments passed to the framework's `init` with --run, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

pub async fn run(args: Args) -> ExitCode {
    if args.run.is_none() && !args.args.is_empty() {
        eprintln!(
            "wasmos dev: arguments after -- are for a framework; name it with --run FRAMEWORK.wasm"
        );
        return ExitCode::from(2);
    }
    // Install the Ctrl-C and SIGTERM handlers now (they are installed on first poll), so that
    // a signal sent once the address is printed stops the cluster cleanly.
    let signal = crate::shutdown_signal();
    tokio::pin!(signal);
    tokio::select! {
        biased;
        () = &mut signal => return ExitCode::from(130),
        () = std::future::ready(()) => {}
    }
    let cluster = match Cluster::start(&args).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wasmos dev: {e:#}");
            return ExitCode::from(2);
        }
    };
    let code = match &args.run {
        Some(component) => {
            let submission = Submission {
                component: component.clone(),
                name: args.name.clone(),
                role: args.role.clone(),
                limits: args.limits.clone(),
                args: args.args.clone(),
            };
            let addr = cluster.addr.to_string();
            tokio::select! {
                r = submit::submit_and_follow(&addr, &submission) => submit::finish(r, "wasmos dev"),
                why = cluster.failed() => Failure::Refused(why).report("wasmos dev"),
                () = &mut signal => {
                    eprintln!("wasmos dev: interrupted; stopping the cluster");
                    ExitCode::from(130)
                }
            }
        }
        None => {
            let addr = cluster.addr;
            println!(
                "wasmos dev: master at {addr}; try: wasmos submit FRAMEWORK.wasm --master {addr}"
            );
            eprintln!("wasmos dev: serving until Ctrl-C");
            tokio::select! {
                why = cluster.failed() => {
                    eprintln!("wasmos dev: {why}");
                    ExitCode::FAILURE
                }
                () = &mut signal => ExitCode::SUCCESS,
            }
        }
    };
    cluster.stop().await;
    code
}

/// The running master and agents.
struct Cluster {
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    /// The master's server task, then each agent's task (by index).
    tasks: tokio::sync::Mutex<JoinSet<(String, Result<(), String>)>>,
    /// The temporary data directory, removed on drop.
    _temp: Option<tempfile::TempDir>,
}

impl Cluster {
    async fn start(args: &Args) -> anyhow::Result<Self> {
        let (data_dir, temp) = match &args.data_dir {
            Some(d) => {
                std::fs::create_dir_all(d).with_context(|| {
                    format!(
                        "cannot create the data directory {}; pick a writable --data-dir",
                        d.display()
                    )
                })?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("wasmos-dev-")
                    .tempdir()
                    .context("cannot create a temporary data directory; pass --data-dir DIR")?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let n = args.agents;
        let share = share_of_machine(&data_dir, n);
        eprintln!(
            "wasmos dev: {n} agent(s), each offered {:.2} CPUs, {} MiB memory, {} MiB disk; data in {}",
            share.millicpus as f64 / 1000.0,
            share.mem_mb,
            share.disk_mb,
            data_dir.display()
        );

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen on 127.0.0.1")?;
        let addr = listener
            .local_addr()
            .context("cannot read the master's address")?;
        let config = MasterConfig {
            allocation_interval: Duration::from_millis(50),
            command_task_roles: args.command_tasks.roles()?,
            // A plain `wasmos dev` is a laptop's cluster on loopback: open, and says so.
            enforce_acl: false,
            ..MasterConfig::default()
        };
        eprintln!(
            "wasmos dev: running open on 127.0.0.1 (no TLS, no ACLs: every local call is \
             allowed); `wasmos dev --secure` turns TLS and ACLs on"
        );
        let master =
            Master::new(config).with_framework_host(crate::master::framework_host(&args.compile)?);
        crate::master::apply_weights(&master, &args.weights)?;
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let shutdown = stop.clone().cancelled_owned();
        let serving = master.clone();
        tasks.spawn(async move {
            let r = serving.serve(listener, shutdown).await;
            ("the master".to_string(), r.map_err(|e| e.to_string()))
        });
        for i in 0..n {
            let work_dir = data_dir.join(format!("agent-{i}"));
            std::fs::create_dir_all(&work_dir).with_context(|| {
                format!("cannot create the agent directory {}", work_dir.display())
            })?;
            let mut config = agent_config(work_dir, addr, share, i, n);
            config.agent.runtime.compiler = args.compile.compiler()?;
            let stop = stop.clone();
            tasks.spawn(async move {
                let r = wasmos_agent::run_until_stopped(config, stop).await;
                (format!("agent {i}"), r.map_err(|e: RunError| e.to_string()))
            });
        }
        let cluster = Cluster {
            addr,
            stop,
            tasks: tokio::sync::Mutex::new(tasks),
            _temp: temp,
        };
        tokio::select! {
            r = wait_for_agents(&master, n as usize) => r?,
            why = cluster.failed() => {
                cluster.stop().await;
                anyhow::bail!("{why}");
            }
        }
        Ok(cluster)
    }

    /// Resolves when the master or an agent stops on its own, saying which and why.
    async fn failed(&self) -> String {
        let mut tasks = self.tasks.lock().await;
        match tasks.join_next().await {
            Some(Ok((who, Ok(())))) => format!("{who} stopped unexpectedly"),
            Some(Ok((who, Err(e)))) => format!("{who} failed: {e}"),
            Some(Err(e)) => format!("a cluster task panicked: {e}"),
            None => std::future::pending().await,
        }
    }

    /// Stops the agents and the master, waiting a bounded time for them.
    async fn stop(&self) {
        self.stop.cancel();
        let mut tasks = self.tasks.lock().await;
        let _ = tokio::time::timeout(STOP_WAIT, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
    }
}

/// Waits until `n` agents are registered and reachable.
async fn wait_for_agents(master: &Master, n: usize) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + READY_WAIT;
    loop {
        let reachable = master
            .cluster_state()
            .agents
            .iter()
            .filter(|a| a.reachable)
            .count();
        if reachable >= n {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "only {reachable} of {n} agents registered within {}s; run with WASMOS_LOG=info to see why",
            READY_WAIT.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// This machine's CPUs, memory and disk divided by `n`.
fn share_of_machine(data_dir: &std::path::Path, n: u32) -> Resources {
    let all = wasmos_agent::session::measure_resources(data_dir);
    let n = u64::from(n.max(1));
    Resources {
        millicpus: (all.millicpus / n).max(100),
        mem_mb: (all.mem_mb / n).max(64),
        disk_mb: all.disk_mb / n,
    }
}

fn agent_config(
    work_dir: PathBuf,
    master: std::net::SocketAddr,
    share: Resources,
    i: u32,
    n: u32,
) -> RunConfig {
    let mut agent = AgentConfig::new(work_dir);
    // The agents share one address space: split one default-sized instance pool between them.
    let d = PoolingConfig::default();
    let per = |total: u32| (total / n).max(32);
    agent.runtime = RuntimeConfig {
        pooling: Some(PoolingConfig {
            total_component_instances: per(d.total_component_instances),
            total_memories: per(d.total_memories),
            total_tables: per(d.total_tables),
            ..d
        }),
        ..RuntimeConfig::default()
    };
    // Agents in one process must not manage each other's task cgroups.
    agent.native.cgroup_name = format!("wasmos-dev-{i}");
    let mut session = SessionConfig::new(vec![master.to_string()]);
    session.hostname = format!("{}-dev-{i}", session.hostname);
    session.resources = Some(share);
    session.reconnect_initial = Duration::from_millis(50);
    session.reconnect_max = Duration::from_secs(2);
    RunConfig { agent, session }
}
