//! `wasmos dev`: a whole cluster in one process on 127.0.0.1, for laptops and tests. A master
//! (`wasmos_master::Master`) on an ephemeral port and N agents (`wasmos_agent::run_until_stopped`)
//! pointed at it, each offered an equal share of this machine's CPUs, memory and disk.
//!
//! With `--run FRAMEWORK.wasm -- ARGS` it submits that framework over loopback gRPC (the same
//! code as `wasmos submit`) and exits with its result and `wasmos submit`'s exit statuses (130
//! when interrupted);
//! without, it prints where to connect and serves until Ctrl-C or SIGTERM.
//!
//! Plain, it runs open (no TLS, no ACLs) on loopback and says so. With `--secure` it makes a CA
//! and certificates in `DATA_DIR/tls` (master, one per agent, a client), serves mutual TLS with
//! ACLs on, bootstraps them, and prints the management token and the client's TLS files as
//! `export` lines (serving) or uses them itself (`--run`).
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
use wasmos_api::identity::Role;
use wasmos_api::tls::{TlsFiles, TlsMaterial};
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
    /// Where the master listens (`HOST:PORT`, loopback only unless --secure; port 0 picks
    /// one). 127.0.0.1:5050 is where every command looks without --master or WASMOS_MASTER
    /// [default: 127.0.0.1:5050; with --run, a free port, so that runs never collide].
    #[arg(long, value_name = "ADDR", value_parser = crate::parse_listen)]
    listen: Option<std::net::SocketAddr>,
    /// Where the agents keep their work directories (`agent-0`, ...) [default: a temporary
    /// directory removed on exit].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Run this framework component, print its result and exit (as `wasmos submit` does).
    #[arg(long, value_name = "FRAMEWORK.wasm")]
    run: Option<PathBuf>,
    /// The framework's name with --run [default: the file name without `.wasm`].
    #[arg(long, requires = "run")]
    name: Option<String>,
    /// The framework's role with --run.
    #[arg(long, default_value = "default")]
    role: String,
    /// A role's weight in the allocator's fair sharing; repeat for more roles [default: 1 for
    /// every role].
    #[arg(long = "weight", value_name = "ROLE=WEIGHT", value_parser = crate::master::parse_weight)]
    weights: Vec<(String, f64)>,
    #[command(flatten)]
    command_tasks: crate::master::CommandTaskArgs,
    #[command(flatten)]
    history: crate::master::HistoryArgs,
    #[command(flatten)]
    http: crate::master::HttpArgs,
    #[command(flatten)]
    limits: submit::LimitArgs,
    #[command(flatten)]
    compile: crate::compiler::CompileArgs,
    /// Run the cluster secured: mutual TLS on every link (a CA and certificates are made in
    /// the data directory's `tls/`) and ACLs on; prints a management token and the
    /// environment a client needs (`export WASMOS_TOKEN=...`, `WASMOS_TLS_*`). Plain (the
    /// default) runs open on 127.0.0.1.
    #[arg(long)]
    secure: bool,
    /// Open the web UI in a browser once the cluster is up (with `xdg-open`, `open` or
    /// `start`); when none is found it says so and prints the UI's address.
    #[arg(long)]
    open: bool,
    /// Arguments passed to the framework's `init` with --run, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

impl Args {
    /// Whether it runs one framework (`--run`) rather than serving.
    pub fn runs_a_framework(&self) -> bool {
        self.run.is_some()
    }
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
    if args.open {
        match &cluster.ui_url {
            Some(url) => open_in_browser(&format!("{url}/")),
            None => eprintln!("wasmos dev: --open: no web UI to open (HTTP is off)"),
        }
    }
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
            if let Some(secure) = &cluster.secure {
                // Lines a shell can `eval`; the token is shown only here.
                println!("export WASMOS_TOKEN={}", secure.token);
                for (name, path) in crate::client::TLS_ENV.iter().zip(&secure.client_files) {
                    println!("export {name}={}", path.display());
                }
                eprintln!(
                    "wasmos dev: the export lines are a management token (shown once) and the \
                     client's TLS files; set them to use this cluster"
                );
            }
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

/// The programs that open a URL in the user's browser, in the order tried.
const OPENERS: &[(&str, &[&str])] = &[
    ("xdg-open", &[]),
    ("open", &[]),
    ("cmd", &["/C", "start", ""]),
];

/// Opens `url` with the first opener that starts; else says none could and prints `url`.
/// Never fails the cluster: a browser is a convenience.
fn open_in_browser(url: &str) {
    for (program, args) in OPENERS {
        let started = std::process::Command::new(program)
            .args(*args)
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Ok(mut child) = started {
            eprintln!("wasmos dev: opening the web UI at {url} ({program})");
            // Reaped in the background: an opener may stay until the browser exits.
            std::thread::spawn(move || child.wait());
            return;
        }
    }
    eprintln!(
        "wasmos dev: --open: could not open a browser (no xdg-open, open or start found); \
         the web UI is at {url}"
    );
}

/// The running master and agents.
struct Cluster {
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    /// The master's server task, then each agent's task (by index).
    tasks: tokio::sync::Mutex<JoinSet<(String, Result<(), String>)>>,
    /// With `--secure`: the management token and the client's TLS files.
    secure: Option<Secured>,
    /// Where the web UI is served (`http://127.0.0.1:5051`), unless HTTP is off.
    ui_url: Option<String>,
    /// The temporary data directory, removed on drop.
    _temp: Option<tempfile::TempDir>,
}

/// What a client of a `--secure` cluster needs.
struct Secured {
    /// The management token bootstrapped at start.
    token: String,
    /// The client certificate, its key and the CA, in the order of `client::TLS_ENV`.
    client_files: [PathBuf; 3],
}

/// The TLS material of a `--secure` cluster, made in `dir` (or reused from an earlier run on
/// the same `--data-dir`): the master's, one per agent, and the client's.
struct DevCerts {
    master: TlsMaterial,
    agents: Vec<TlsMaterial>,
    client: TlsMaterial,
}

impl DevCerts {
    fn make(dir: &std::path::Path, agents: u32) -> anyhow::Result<DevCerts> {
        if !dir.join(crate::certs::CA_CERT).exists() {
            crate::certs::init(dir)?;
        }
        let load = |role: Role, name: &str, hosts: &[String]| -> anyhow::Result<TlsMaterial> {
            let cert = dir.join(format!("{role}-{name}.pem"));
            if !cert.exists() {
                crate::certs::issue(dir, role, name, hosts, 365)?;
            }
            Ok(TlsFiles {
                cert,
                key: dir.join(format!("{role}-{name}-key.pem")),
                ca: dir.join(crate::certs::CA_CERT),
            }
            .load(Some(role))?)
        };
        let loopback = ["127.0.0.1".to_string(), "localhost".to_string()];
        Ok(DevCerts {
            master: load(Role::Master, "dev", &loopback)?,
            agents: (0..agents)
                .map(|i| load(Role::Agent, &format!("dev-{i}"), &[]))
                .collect::<anyhow::Result<_>>()?,
            client: load(Role::Client, "dev", &[])?,
        })
    }
}

/// Creates the first management token of the `--secure` master at `addr` and makes this
/// process's clients (`--run`) use it and the client certificate.
async fn bootstrap(addr: std::net::SocketAddr, client: TlsMaterial) -> anyhow::Result<Secured> {
    let files = client.files();
    let client_files = [files.cert.clone(), files.key.clone(), files.ca.clone()];
    crate::client::set_client_tls(client).map_err(anyhow::Error::msg)?;
    let mut op = crate::client::connect(&addr.to_string())
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the secured master: {}", e.message()))?;
    let token = op
        .bootstrap_acl(wasmos_api::proto::BootstrapAclRequest::default())
        .await
        .map_err(|s| {
            anyhow::anyhow!(
                "cannot bootstrap the ACLs: {}",
                crate::client::status_text(&s)
            )
        })?
        .into_inner()
        .secret;
    crate::client::set_token(Some(&token)).map_err(anyhow::Error::msg)?;
    Ok(Secured {
        token,
        client_files,
    })
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

        let listen = match (args.listen, &args.run) {
            (Some(a), _) => a,
            (None, None) => crate::client::DEFAULT_MASTER
                .parse()
                .context("the default address")?,
            (None, Some(_)) => std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        anyhow::ensure!(
            listen.ip().is_loopback() || args.secure,
            "wasmos dev serves plain text and no ACLs, so it listens on loopback only; \
             --listen {listen} needs --secure (or run wasmos master)"
        );
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {listen}; is another wasmos dev or master running there? \
                 pick another --listen (port 0 picks a free one)"
                )
            })?;
        let addr = listener
            .local_addr()
            .context("cannot read the master's address")?;
        let certs = if args.secure {
            let dir = data_dir.join("tls");
            Some(DevCerts::make(&dir, n).with_context(|| {
                format!(
                    "cannot make the certificates of --secure in {}",
                    dir.display()
                )
            })?)
        } else {
            None
        };
        let config = MasterConfig {
            allocation_interval: Duration::from_millis(50),
            command_task_roles: args.command_tasks.roles()?,
            // A plain `wasmos dev` is a laptop's cluster on loopback: open, and says so.
            enforce_acl: args.secure,
            history: args.history.bounds(),
            ..MasterConfig::default()
        };
        // Compiled schedulers are cached beside the agents' work directories, so running the
        // same framework again in this cluster does not compile it again.
        let host = crate::master::framework_host(&args.compile, Some(data_dir.join("compiled")))?;
        let mut master = Master::new(config).with_framework_host(host);
        if let Some(certs) = &certs {
            master = master.with_tls(certs.master.clone());
        }
        crate::master::apply_weights(&master, &args.weights)?;
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let shutdown = stop.clone().cancelled_owned();
        let http_listener = args.http.bind(listen, "wasmos dev").await?;
        let ui_url = crate::master::spawn_http(
            &master,
            http_listener,
            args.http.options(),
            "wasmos dev",
            stop.clone().cancelled_owned(),
        );
        let serving = master.clone();
        tasks.spawn(async move {
            let r = serving.serve(listener, shutdown).await;
            ("the master".to_string(), r.map_err(|e| e.to_string()))
        });
        let secure = match &certs {
            Some(certs) => {
                eprintln!(
                    "wasmos dev: secured: mutual TLS on every link (certificates in {}) and \
                     ACLs on",
                    data_dir.join("tls").display()
                );
                Some(bootstrap(addr, certs.client.clone()).await?)
            }
            None => {
                eprintln!(
                    "wasmos dev: running open: plain text on 127.0.0.1 and no ACLs (anyone on \
                     this machine may use it); --secure turns on TLS and ACLs"
                );
                None
            }
        };
        for i in 0..n {
            let work_dir = data_dir.join(format!("agent-{i}"));
            std::fs::create_dir_all(&work_dir).with_context(|| {
                format!("cannot create the agent directory {}", work_dir.display())
            })?;
            let mut config = agent_config(work_dir, addr, share, i, n);
            config.session.tls = certs.as_ref().map(|c| c.agents[i as usize].clone());
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
            secure,
            ui_url,
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
            "only {reachable} of {n} agents registered within {}; run with WASMOS_LOG=info to see why",
            crate::display::duration(READY_WAIT)
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
    RunConfig {
        agent,
        session,
        http: Default::default(),
    }
}
