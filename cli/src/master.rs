//! `wasmos master`: runs a master (`wasmos_master::Master`) on a TCP address until Ctrl-C or
//! SIGTERM. Every knob not given on the command line keeps its `MasterConfig` default.
//!
//! It listens on `--listen` (default 127.0.0.1:5050, where `wasmos submit` looks by default).
//! Once it listens it prints `wasmos master listening on ADDR` on stdout, so scripts and tests
//! that pass port 0 learn the port.
//!
//! `--weight ROLE=WEIGHT` (repeatable) sets role weights for the allocator before the master
//! serves, as `OperatorService.SetWeights` does later: a role's fair share of the cluster is
//! proportional to its weight (default 1).
//!
//! Replication: with `--data-dir DIR` the registry is a Raft state machine stored in DIR and
//! survives restarts; `--id N --peers ID=ADDR,...` (this master included, ADDR being each
//! master's `--listen` address) forms a group of masters, of which only the leader serves and
//! the others point callers at it. Without `--data-dir` the registry lives in memory.
//!
//! TLS: `--tls-cert`, `--tls-key` and `--tls-ca` (a master certificate from `wasmos certs`)
//! make every link mutual TLS, Raft to the peers included. Without them the master serves
//! plain text on loopback only, unless `--insecure` (which warns at every start).
//!
//! ACLs: every master enforces them (`--acl` is a hidden no-op); until `wasmos acl
//! bootstrap` creates the first management token it serves only that call.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use wasmos_master::raft::{RaftConfig, RaftNode, StoreFaults};
use wasmos_master::{FrameworkHost, Master, MasterConfig};
use wasmos_wasm_executor::RuntimeConfig;

use crate::duration_secs;

#[derive(clap::Args)]
pub struct Args {
    /// Address to serve the scheduler, agent and operator gRPC APIs on (port 0 picks one).
    /// A non-loopback address needs --tls-cert, --tls-key and --tls-ca (or --insecure).
    #[arg(long, value_name = "ADDR", default_value = crate::client::DEFAULT_MASTER, value_parser = crate::parse_listen)]
    listen: SocketAddr,
    #[command(flatten)]
    tls: crate::tls_args::TlsArgs,
    /// Serve plain text on a non-loopback address: anyone who reaches the port can register
    /// as an agent, operate the cluster or join the Raft group, and every link can be read.
    /// Warns at every start. Not needed on loopback.
    #[arg(long)]
    insecure: bool,
    /// How often the allocator runs when nothing changes, in seconds [default: 250ms].
    #[arg(long, value_name = "DURATION", value_parser = duration_secs)]
    allocation_interval: Option<Duration>,
    /// How long an offer may go unanswered before it is rescinded, in seconds; 0 never
    /// rescinds [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = duration_secs)]
    offer_timeout: Option<Duration>,
    /// How often agents heartbeat, in seconds [default: 15s].
    #[arg(long, value_name = "DURATION", value_parser = duration_secs)]
    agent_heartbeat_interval: Option<Duration>,
    /// How long without a heartbeat before an agent is unreachable, in seconds [default: 75s].
    #[arg(long, value_name = "DURATION", value_parser = duration_secs)]
    agent_unreachable_timeout: Option<Duration>,
    /// How long an unreachable agent may take to come back before it is removed, in seconds
    /// [default: 10m].
    #[arg(long, value_name = "DURATION", value_parser = duration_secs)]
    agent_removal_timeout: Option<Duration>,
    /// How long a task sent to an agent may stay STAGING before it is reported LOST (reason
    /// launch_timeout) and killed should it still start, in seconds; 0 waits forever
    /// [default: 300].
    #[arg(long, value_name = "DURATION", value_parser = duration_secs)]
    launch_timeout: Option<Duration>,
    /// How often schedulers receive a heartbeat event, in seconds [default: 15s].
    #[arg(long, value_name = "DURATION", value_parser = duration_secs)]
    scheduler_heartbeat_interval: Option<Duration>,
    /// Largest framework component accepted, in MiB [default: 64].
    #[arg(long, value_name = "MIB")]
    max_component_mb: Option<u64>,
    #[command(flatten)]
    compile: crate::compiler::CompileArgs,
    /// How long a new connection may take to complete its TLS handshake (with --tls-cert) and
    /// send the HTTP/2 preface and first frame before it is closed, in seconds [default: 10].
    #[arg(long, value_name = "DURATION", value_parser = duration_secs)]
    handshake_timeout: Option<Duration>,
    /// How long a connection with no call open is kept before it is closed, in seconds; 0
    /// keeps idle connections. Open streams (agent sessions, scheduler subscriptions) count as
    /// use however quiet they are [default: 300].
    #[arg(long, value_name = "DURATION", value_parser = duration_secs)]
    idle_connection_timeout: Option<Duration>,
    /// How often an HTTP/2 PING goes to a quiet connection, in seconds; a peer that does not
    /// answer within 20 s is closed. 0 sends no pings [default: 30].
    #[arg(long, value_name = "DURATION", value_parser = duration_secs)]
    http2_keepalive_interval: Option<Duration>,
    /// Most connections open at once; more are accepted and closed at once. The value in use
    /// is logged at start [default: three quarters of the file-descriptor limit (RLIMIT_NOFILE,
    /// whose soft value the master raises to the hard one at start), at most the limit less
    /// 128].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Most connections open at once from one IP address; more are accepted and closed at
    /// once [default: 1024].
    #[arg(long, value_name = "N")]
    max_connections_per_ip: Option<usize>,
    /// A role's weight in the allocator's fair sharing; repeat for more roles [default: 1 for
    /// every role].
    #[arg(long = "weight", value_name = "ROLE=WEIGHT", value_parser = parse_weight)]
    weights: Vec<(String, f64)>,
    #[command(flatten)]
    command_tasks: CommandTaskArgs,
    #[command(flatten)]
    history: HistoryArgs,
    #[command(flatten)]
    http: HttpArgs,
    /// Accepted for compatibility and ignored: every master enforces ACLs (see the command's
    /// help).
    #[arg(long, hide = true)]
    acl: bool,
    /// This master's id in its Raft group (with --peers) [default: 1].
    #[arg(long, value_name = "N")]
    id: Option<u64>,
    /// The masters of a new group, this one included: ID=ADDR,... where ADDR is each
    /// master's --listen address. Needs --data-dir. A master not listed starts empty and waits
    /// to be added (`wasmos operator members add`).
    #[arg(long, value_name = "ID=ADDR,...", value_delimiter = ',', value_parser = parse_peer)]
    peers: Vec<(u64, String)>,
    /// Where the replicated registry (Raft log, vote, snapshots) is stored, in DIR/raft.redb;
    /// the master keeps its registry across restarts. Once the store holds state, DIR/raft.marker
    /// records it: the master then refuses to start if raft.redb is corrupt, missing or empty
    /// (restore it, or remove DIR to start afresh), or if DIR belongs to another --id. A new,
    /// empty DIR starts a new member.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Where compiled scheduler components are cached (`SHA256-ENGINE.cwasm`, as agents keep
    /// theirs in WORK_DIR/compiled), so a component is compiled once, not at every framework
    /// that runs it nor at every leader change: a Python component carries CPython and takes
    /// seconds to compile, and is unloaded from memory when its last framework ends. Several
    /// masters of one build may share it [default: DATA_DIR/compiled; without --data-dir, none:
    /// memory only].
    #[arg(long, value_name = "DIR")]
    compiled_cache_dir: Option<PathBuf>,
    /// How long a new leader waits for agents to re-register before treating those still
    /// missing as unreachable, in seconds.
    #[arg(long, value_name = "DURATION", value_parser = duration_secs, default_value = "2s")]
    agent_reregister_wait: Duration,
    /// For tests: the Raft store fails every write (as on a full disk) while this file
    /// exists; the master then stops and exits non-zero.
    #[arg(long, value_name = "FILE", hide = true)]
    store_faults_while_exists: Option<PathBuf>,
}

/// `--command-task-roles`, shared by `wasmos master` and `wasmos dev`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct CommandTaskArgs {
    /// Roles whose frameworks may launch native command tasks (processes on the agents,
    /// outside the Wasm sandbox), comma-separated; `*` allows every role. A role not listed
    /// may not: such a launch is refused with TASK_ERROR naming this flag [default: none].
    #[arg(long, value_name = "ROLE,...|*", value_delimiter = ',')]
    pub command_task_roles: Vec<String>,
}

impl CommandTaskArgs {
    /// The master's setting: `None` (every role) for `*`, else the roles named (none by
    /// default), each a valid role name.
    pub fn roles(&self) -> anyhow::Result<Option<BTreeSet<String>>> {
        if self.command_task_roles.iter().any(|r| r.trim() == "*") {
            return Ok(None);
        }
        let mut roles = BTreeSet::new();
        for r in &self.command_task_roles {
            let r = r.trim();
            wasmos_master::registry::validate_role(r)
                .map_err(|e| anyhow::anyhow!("bad --command-task-roles entry {r:?}: {e}"))?;
            roles.insert(r.to_string());
        }
        Ok(Some(roles))
    }
}

/// `--max-completed-tasks-per-framework` and `--max-completed-frameworks`, shared by `wasmos
/// master` and `wasmos dev`: how much history the leader keeps in memory.
#[derive(clap::Args, Clone, Debug)]
pub struct HistoryArgs {
    /// Most completed tasks the leader keeps per framework (shown by `wasmos tasks --all`);
    /// the oldest is forgotten past it. In memory only: a new leader starts empty.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_completed_tasks_per_framework: usize,
    /// Most completed frameworks the leader keeps, each with its completed tasks (shown by
    /// `wasmos frameworks --all`); the oldest is forgotten past it.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_completed_frameworks: usize,
}

impl HistoryArgs {
    /// The master's setting.
    pub fn bounds(&self) -> wasmos_master::history::HistoryBounds {
        wasmos_master::history::HistoryBounds {
            max_completed_tasks_per_framework: self.max_completed_tasks_per_framework,
            max_completed_frameworks: self.max_completed_frameworks,
        }
    }
}

/// `--http` and `--metrics-open`, shared by `wasmos master` and `wasmos dev`: the HTTP/JSON
/// API, `/health`, `/ready` and `/metrics`.
#[derive(clap::Args, Clone, Debug)]
pub struct HttpArgs {
    /// Where to serve the HTTP/JSON API (`/api/v1/`), `/health`, `/ready` and `/metrics`
    /// (`HOST:PORT`, port 0 picks one), or `off`. Over TLS with the master's certificate
    /// when it serves TLS (no client certificate asked for; tokens decide) [default: the
    /// --listen host, port 5051 (port 0 when --listen's is 0); when that default is taken the
    /// master warns and serves no HTTP].
    #[arg(long, value_name = "ADDR|off")]
    pub http: Option<String>,
    /// Serve `/metrics` without a token (else it needs a token with the `read_metrics` right).
    #[arg(long)]
    pub metrics_open: bool,
}

/// The HTTP port used when `--http` is not given.
pub const DEFAULT_HTTP_PORT: u16 = 5051;

impl HttpArgs {
    /// Binds the HTTP listener beside a master on `listen`: `None` when `off`, or when the
    /// default address is taken (after a warning). An address given and taken is an error.
    pub async fn bind(
        &self,
        listen: SocketAddr,
        who: &str,
    ) -> anyhow::Result<Option<tokio::net::TcpListener>> {
        let (addr, given) = match self.http.as_deref() {
            Some("off") => return Ok(None),
            Some(a) => (
                crate::parse_listen(a).map_err(|e| anyhow::anyhow!("--http {a}: {e}"))?,
                true,
            ),
            None => {
                let port = if listen.port() == 0 {
                    0
                } else {
                    DEFAULT_HTTP_PORT
                };
                (SocketAddr::new(listen.ip(), port), false)
            }
        };
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Ok(Some(l)),
            Err(e) if !given => {
                eprintln!(
                    "{who}: WARNING: not serving HTTP: cannot listen on {addr} ({e}); pass                      --http HOST:PORT (or --http off)"
                );
                Ok(None)
            }
            Err(e) => Err(anyhow::anyhow!(
                "cannot listen on --http {addr}: {e}; is another master running there? pick                  another --http, or --http off"
            )),
        }
    }

    /// How the master serves it.
    pub fn options(&self) -> wasmos_master::http::HttpOptions {
        wasmos_master::http::HttpOptions {
            metrics_open: self.metrics_open,
        }
    }
}

/// Serves the HTTP API of `master` on `listener` (when bound) until `stop` resolves, and says
/// where on stderr.
pub fn spawn_http(
    master: &Master,
    listener: Option<tokio::net::TcpListener>,
    options: wasmos_master::http::HttpOptions,
    who: &str,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Option<String> {
    let listener = listener?;
    let addr = listener.local_addr().ok()?;
    let scheme = if master.tls_material().is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{addr}");
    eprintln!(
        "{who}: web UI on {url}/; HTTP API, health and metrics on {url}/api/v1/, {url}/health, \
         {url}/metrics"
    );
    let master = master.clone();
    let who = who.to_string();
    tokio::spawn(async move {
        if let Err(e) = wasmos_master::http::serve(master, listener, options, stop).await {
            eprintln!("{who}: the HTTP server on {addr} failed: {e}");
        }
    });
    Some(url)
}

/// Parses `ID=ADDR` (`2=10.0.0.2:5050`): an id above zero and a `host:port` address.
pub fn parse_peer(s: &str) -> Result<(u64, String), String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ID=ADDR (for example 2=10.0.0.2:5050)"))?;
    let id: u64 = id
        .trim()
        .parse()
        .map_err(|_| format!("the id in {s:?} is not a number; write ID=ADDR"))?;
    if id == 0 {
        return Err(format!("master ids start at 1 ({s:?})"));
    }
    let addr = addr.trim();
    if !wasmos_api::leader::is_valid_address(addr) {
        return Err(format!("{addr:?} in {s:?} is not a host:port address"));
    }
    Ok((id, addr.to_string()))
}

/// Parses `ROLE=WEIGHT` (`analytics=3`, `web=0.5`): a non-empty role and a finite weight above
/// zero. The master checks the role's syntax when the weight is applied.
pub fn parse_weight(s: &str) -> Result<(String, f64), String> {
    let (role, weight) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ROLE=WEIGHT (for example analytics=3)"))?;
    let role = role.trim();
    if role.is_empty() {
        return Err(format!("{s:?} names no role; write ROLE=WEIGHT"));
    }
    let weight: f64 = weight
        .trim()
        .parse()
        .map_err(|_| format!("the weight in {s:?} is not a number; write ROLE=WEIGHT"))?;
    if !weight.is_finite() || weight <= 0.0 {
        return Err(format!(
            "the weight in {s:?} must be a finite number above zero"
        ));
    }
    Ok((role.to_string(), weight))
}

/// Applies `--weight` flags to a master that does not serve yet.
pub fn apply_weights(master: &Master, weights: &[(String, f64)]) -> anyhow::Result<()> {
    if weights.is_empty() {
        return Ok(());
    }
    master
        .core()
        .set_weights(weights.to_vec())
        .map_err(|e| anyhow::anyhow!("bad --weight: {e}"))
}

/// The host of this master's Wasm schedulers, compiling components in a child process under
/// the compile budgets (on-demand allocation, as `Master::framework_host` makes by default),
/// caching what it compiled in `cache_dir` if given.
pub fn framework_host(
    compile: &crate::compiler::CompileArgs,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<FrameworkHost> {
    FrameworkHost::new(RuntimeConfig {
        pooling: None,
        compiler: compile.compiler()?,
        cache_dir,
        ..RuntimeConfig::default()
    })
    .context("cannot start the framework host")
}

impl Args {
    fn config(&self) -> anyhow::Result<MasterConfig> {
        let mut c = MasterConfig {
            command_task_roles: self.command_tasks.roles()?,
            // Always: `--acl` is a no-op kept for old command lines.
            enforce_acl: true,
            audit_dir: self.data_dir.clone(),
            history: self.history.bounds(),
            ..MasterConfig::default()
        };
        if let Some(d) = self.allocation_interval {
            anyhow::ensure!(
                !d.is_zero(),
                "--allocation-interval must be above 0 seconds"
            );
            c.allocation_interval = d;
        }
        if let Some(d) = self.offer_timeout {
            c.offer_timeout = (!d.is_zero()).then_some(d);
        }
        if let Some(d) = self.launch_timeout {
            c.launch_timeout = (!d.is_zero()).then_some(d);
        }
        if let Some(d) = self.agent_heartbeat_interval {
            anyhow::ensure!(
                !d.is_zero(),
                "--agent-heartbeat-interval must be above 0 seconds"
            );
            c.agent_heartbeat_interval = d;
        }
        if let Some(d) = self.agent_unreachable_timeout {
            c.agent_unreachable_timeout = d;
        }
        anyhow::ensure!(
            c.agent_unreachable_timeout > c.agent_heartbeat_interval,
            "the agent unreachable timeout ({}) must be longer than the agent heartbeat \
             interval ({}); raise --agent-unreachable-timeout",
            crate::display::duration(c.agent_unreachable_timeout),
            crate::display::duration(c.agent_heartbeat_interval)
        );
        if let Some(d) = self.agent_removal_timeout {
            c.agent_removal_timeout = d;
        }
        if let Some(d) = self.scheduler_heartbeat_interval {
            anyhow::ensure!(
                !d.is_zero(),
                "--scheduler-heartbeat-interval must be above 0 seconds"
            );
            c.scheduler_heartbeat_interval = d;
        }
        if let Some(mb) = self.max_component_mb {
            c.max_component_bytes = mb
                .checked_mul(1 << 20)
                .context("--max-component-mb is too large")?;
            c.max_blob_store_bytes = c.max_blob_store_bytes.max(c.max_component_bytes);
            c.max_unreferenced_component_bytes = c
                .max_unreferenced_component_bytes
                .max(c.max_component_bytes);
        }
        let conns = &mut c.connections;
        if let Some(d) = self.handshake_timeout {
            anyhow::ensure!(!d.is_zero(), "--handshake-timeout must be above 0 seconds");
            conns.handshake_timeout = d;
        }
        if let Some(d) = self.idle_connection_timeout {
            conns.idle_timeout = (!d.is_zero()).then_some(d);
        }
        if let Some(d) = self.http2_keepalive_interval {
            conns.keepalive_interval = (!d.is_zero()).then_some(d);
        }
        if let Some(n) = self.max_connections {
            anyhow::ensure!(n > 0, "--max-connections must be at least 1");
            conns.max_connections = Some(n);
        }
        if let Some(n) = self.max_connections_per_ip {
            anyhow::ensure!(n > 0, "--max-connections-per-ip must be at least 1");
            conns.max_connections_per_ip = n;
        }
        Ok(c)
    }
}

pub async fn run(args: Args) -> ExitCode {
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasmos master: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The master's TLS files, or why it may not serve without them: a master bound to a
/// non-loopback address refuses to serve plain text unless `--insecure`, and then warns.
fn master_tls(args: &Args) -> anyhow::Result<Option<wasmos_api::tls::TlsMaterial>> {
    let tls = args.tls.load(wasmos_api::identity::Role::Master)?;
    if tls.is_none() && !args.listen.ip().is_loopback() {
        anyhow::ensure!(
            args.insecure,
            "refusing to serve plain text on the non-loopback address {}: anyone who reaches it \
             could register as an agent, operate the cluster or join the Raft group. Give \
             --tls-cert, --tls-key and --tls-ca (`wasmos certs init`, then `wasmos certs issue \
             master NAME --host ADDR`), listen on 127.0.0.1, or pass --insecure",
            args.listen
        );
        eprintln!(
            "wasmos master: WARNING: serving plain text on {} (--insecure): no encryption and \
             no certificate checks; anyone who reaches this port can register as an agent, \
             operate the cluster and join the Raft group",
            args.listen
        );
    }
    Ok(tls)
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let tls = master_tls(&args)?;
    let config = args.config()?;
    let cache_dir = args
        .compiled_cache_dir
        .clone()
        .or_else(|| args.data_dir.as_ref().map(|d| d.join("compiled")));
    let host = framework_host(&args.compile, cache_dir)?;
    if let Some((from, to)) = wasmos_master::server::raise_nofile_soft_limit() {
        tracing::info!(
            from,
            to,
            "raised the soft file-descriptor limit to the hard one"
        );
    }
    let (max_connections, nofile) = config.connections.effective_max_connections();
    let per_ip = config.connections.max_connections_per_ip;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}; is another master running there? pick another --listen",
                args.listen
            )
        })?;
    let bound = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let master = match &args.data_dir {
        None => {
            anyhow::ensure!(
                args.peers.is_empty() && args.id.is_none(),
                "--id and --peers need --data-dir (a replicated master keeps its registry on disk)"
            );
            let master = Master::new(config).with_framework_host(host);
            apply_weights(&master, &args.weights)?;
            master
        }
        Some(dir) => {
            let id = args.id.unwrap_or(1);
            anyhow::ensure!(id > 0, "--id must be at least 1");
            let mut peers: BTreeMap<u64, String> = BTreeMap::new();
            for (pid, addr) in &args.peers {
                anyhow::ensure!(
                    peers.insert(*pid, addr.clone()).is_none(),
                    "--peers names master {pid} twice"
                );
            }
            if peers.is_empty() {
                // A group of one.
                peers.insert(id, bound.to_string());
            }
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
            restrict_data_dir(dir)?;
            let faults = args
                .store_faults_while_exists
                .clone()
                .map(StoreFaults::while_file_exists);
            let raft_config = RaftConfig {
                tls: tls.clone(),
                ..RaftConfig::default()
            };
            let node = RaftNode::open_with_faults(id, peers, dir.clone(), raft_config, faults)
                .await
                .with_context(|| {
                    format!("cannot start master {id} on the data dir {}", dir.display())
                })?;
            let master = Master::replicated(config, node, args.agent_reregister_wait)
                .with_framework_host(host);
            if !args.weights.is_empty() {
                let m = master.clone();
                let weights = args.weights.clone();
                tokio::spawn(async move {
                    // Applied once this master leads (weights are part of the registry).
                    while !m.is_serving() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    if let Err(e) = apply_weights(&m, &weights) {
                        eprintln!("wasmos master: {e:#}");
                    }
                });
            }
            master
        }
    };
    eprintln!(
        "wasmos master: accepting up to {max_connections} connections, {} per IP address \
         (file-descriptor limit {}); see --max-connections",
        per_ip,
        nofile.map_or("unlimited".to_string(), |n| n.to_string()),
    );
    let master = match tls {
        Some(tls) => {
            eprintln!(
                "wasmos master: serving mutual TLS as {} (clients need a certificate from the CA \
                 {})",
                tls.identity(),
                tls.files().ca.display()
            );
            master.with_tls(tls)
        }
        None => master,
    };
    // After the lines above, which scripts read first; `--listen`'s port (not the bound one)
    // decides whether the default HTTP port is 0.
    let http_listener = args.http.bind(args.listen, "wasmos master").await?;
    println!("wasmos master listening on {bound}");
    // The HTTP server stops with the gRPC one (the signal, or the gRPC server ending).
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    spawn_http(
        &master,
        http_listener,
        args.http.options(),
        "wasmos master",
        async move {
            let _ = http_stopped.await;
        },
    );
    let shutdown = async move {
        crate::shutdown_signal().await;
        let _ = stop_http.send(());
    };
    let served = master
        .clone()
        .serve(listener, shutdown)
        .await
        .with_context(|| format!("the master on {bound} failed"));
    master.shutdown_replication().await;
    served
}

/// Makes the master's data directory readable by its owner only (mode 0700): it holds the
/// registry and Raft log (components, frameworks' state, token hashes) and the audit log.
fn restrict_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir)
        .with_context(|| format!("cannot read the data dir {}", dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).with_context(
            || {
                format!(
                    "the data dir {} is open to other users (mode {:o}) and cannot be made \
                     0700; fix its owner or mode",
                    dir.display(),
                    mode & 0o777
                )
            },
        )?;
    }
    Ok(())
}
