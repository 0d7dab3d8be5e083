//! The agent's session with the master over `AgentService.Session`: register (reporting every
//! task it runs), heartbeat, send status updates from the durable queue and take
//! acknowledgements back, and carry out the master's commands (run, kill, framework
//! teardown). When a session ends it tries the given master addresses in turn, at once (after
//! a failover one of them leads), and backs off only after a whole round of them failed.
//!
//! A master that is not the leader refuses the session with a leader hint
//! ([`wasmos_api::leader`]); the agent then connects to the hinted address at once, even one it
//! was not given, up to [`MAX_LEADER_HINT_HOPS`] hints in a row (two confused masters pointing
//! at each other must not make it spin), and otherwise falls back to rotating with backoff.
//!
//! [`run`] is what `wasmos agent` calls.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use wasmos_api::convert::{self, status_to_pb};
use wasmos_api::leader::leader_hint;
use wasmos_api::limits::{AGENT_SESSION_MAX_MESSAGE_BYTES, STATUS_BATCH_BUDGET_BYTES};
use wasmos_api::proto as pb;
use wasmos_api::proto::agent_service_client::AgentServiceClient;
use wasmos_api::tls::TlsMaterial;
use wasmos_api::{AgentId, FrameworkId, Resources, TaskId, TaskInfo, WasmBudget};

use crate::agent::{Agent, AgentError, FrameworkContext};
use crate::config::AgentConfig;
use crate::fetch::ComponentFetcher;
use crate::master_fetch::{MasterFetcher, master_endpoint};
use crate::session_log::{Report, SessionLog};
use crate::status_queue::{QueuedUpdate, TransportError, UpdateTransport};
use crate::wasm::FrameworkMessage;
use wasmos_wasm_executor::ComponentDigest;

/// How many leader hints the agent follows in a row, without backing off, before it falls back
/// to rotating through its configured masters with backoff.
pub const MAX_LEADER_HINT_HOPS: u32 = 3;

/// The pause before asking the masters again while they elect a leader.
const ELECTION_RETRY: Duration = Duration::from_millis(100);

/// How often the session's connection sends an HTTP/2 PING to the master, and how long the
/// master may take to answer one before the session counts as lost. The master sends nothing
/// on a quiet session, so without them a master cut off by the network (no FIN, no RST: a
/// partitioned leader, which has stepped down by then) would hold the agent's session open,
/// and the agent away from the new leader, until the kernel gave up on the connection
/// (minutes). With them the agent moves on within about 6 s.
pub const SESSION_PING_INTERVAL: Duration = Duration::from_secs(3);
/// See [`SESSION_PING_INTERVAL`].
pub const SESSION_PING_TIMEOUT: Duration = Duration::from_secs(3);

/// How the agent finds and talks to the master.
#[derive(Clone)]
pub struct SessionConfig {
    /// Master addresses (`host:port` or `http://host:port`); tried in turn.
    pub masters: Vec<String>,
    /// This machine's name, as shown by the master.
    pub hostname: String,
    /// Where the agent can be reached. Empty by default: the master then shows the address
    /// the session comes from.
    pub address: String,
    /// Resources offered to the cluster; `None` measures them (CPUs, memory, disk of the work
    /// directory).
    pub resources: Option<Resources>,
    /// Free-form attributes (`rack=r1`).
    pub attributes: BTreeMap<String, String>,
    /// First wait before reconnecting; doubles up to `reconnect_max`.
    pub reconnect_initial: Duration,
    /// Longest wait between reconnection attempts.
    pub reconnect_max: Duration,
    /// The agent's TLS files (an agent certificate, its key, the cluster CA), to talk to the
    /// masters over mutual TLS, checking that each is a master; `None` (the default): plain
    /// text.
    pub tls: Option<TlsMaterial>,
    /// The token every call to a master carries (`wasmos agent --token`/WASMOS_TOKEN): one
    /// whose policy grants `register_agents`, needed by a master that enforces ACLs unless
    /// the agent has an agent certificate. Default `None`. Never logged.
    pub token: Option<String>,
}

impl std::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Every field but the token's secret, which never reaches a log.
        f.debug_struct("SessionConfig")
            .field("masters", &self.masters)
            .field("hostname", &self.hostname)
            .field("address", &self.address)
            .field("resources", &self.resources)
            .field("attributes", &self.attributes)
            .field("reconnect_initial", &self.reconnect_initial)
            .field("reconnect_max", &self.reconnect_max)
            .field("tls", &self.tls)
            .field("token", &self.token.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

impl SessionConfig {
    /// Defaults for the given masters.
    pub fn new(masters: Vec<String>) -> Self {
        SessionConfig {
            masters,
            hostname: hostname(),
            address: String::new(),
            resources: None,
            attributes: BTreeMap::new(),
            reconnect_initial: Duration::from_millis(500),
            reconnect_max: Duration::from_secs(30),
            tls: None,
            token: None,
        }
    }
}

/// Everything `wasmos agent` configures.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The agent itself: work dir, runtimes, limits, retries, garbage collection.
    pub agent: AgentConfig,
    /// How it finds and talks to the master.
    pub session: SessionConfig,
    /// Its `/health`, `/ready` and `/metrics` (`--http`); by default not served.
    pub http: crate::http::HttpConfig,
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The agent could not start.
    #[error(transparent)]
    Agent(#[from] AgentError),
    /// The `--http` address cannot be bound.
    #[error(transparent)]
    Http(#[from] crate::http::BindError),
    /// [`SessionConfig::masters`] is empty.
    #[error("no master address given; pass --master HOST:PORT[,HOST:PORT...]")]
    NoMasters,
}

/// Runs an agent until the process is stopped: opens the work directory (recovering what
/// runs), then keeps a session with the master, fetching components from the masters' blob
/// store.
pub async fn run(config: RunConfig) -> Result<(), RunError> {
    run_until_stopped(config, CancellationToken::new()).await
}

/// [`run`] until `stop` is cancelled.
pub async fn run_until_stopped(config: RunConfig, stop: CancellationToken) -> Result<(), RunError> {
    let fetcher = Arc::new(
        MasterFetcher::new(config.session.masters.clone())
            .with_tls(config.session.tls.clone())
            .with_token(config.session.token.clone()),
    );
    run_until(config, fetcher, stop).await
}

/// [`run`] with a component source and a stop signal.
pub async fn run_until(
    config: RunConfig,
    fetcher: Arc<dyn ComponentFetcher>,
    stop: CancellationToken,
) -> Result<(), RunError> {
    if config.session.masters.is_empty() {
        return Err(RunError::NoMasters);
    }
    let resources = config
        .session
        .resources
        .unwrap_or_else(|| measure_resources(&config.agent.work_dir));
    // Before opening the work dir: an address in use is an error at once.
    let http = match config.http.listen {
        Some(addr) => Some(crate::http::bind(addr).await?),
        None => None,
    };
    let mut agent_config = config.agent.clone();
    // Wasm tasks share the CPUs this agent offers unless the operator named another capacity.
    agent_config
        .wasm_cpu
        .capacity_millicpus
        .get_or_insert(resources.millicpus);
    let (agent, report) = Agent::open(agent_config, fetcher).await?;
    tracing::info!(
        adopted = report.adopted.len(),
        ended = report.ended.len(),
        pending_updates = report.pending_updates,
        "agent recovered"
    );
    if let Some(listener) = http {
        if let Ok(a) = listener.local_addr() {
            tracing::info!("agent HTTP (health, ready, metrics) on http://{a}");
        }
        let serve = crate::http::serve(
            agent.clone(),
            listener,
            config.http.metrics_open,
            config.session.token.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "the agent's HTTP server stopped");
            }
        });
    }
    let transport = Arc::new(SessionTransport::default());
    tokio::spawn(
        agent
            .status_queue()
            .clone()
            .run(transport.clone(), stop.clone()),
    );
    let mut messages = agent.take_framework_messages();
    let mut backoff = config.session.reconnect_initial;
    let mut i = 0usize;
    // The leader hint to follow next, and how many hints were followed in a row.
    let mut hinted: Option<String> = None;
    let mut hops = 0u32;
    // Masters that failed in a row since the last pause: the others are tried at once (one
    // of them may have taken over), and only a full round of failures backs off.
    let mut failed_in_row = 0usize;
    // Whether a master in this round said an election is under way.
    let mut electing = false;
    // Keeps a master that stays down to one line per failure and window.
    let mut failures = SessionLog::default();
    while !stop.is_cancelled() {
        let followed_hint = hinted.is_some();
        let master = match hinted.take() {
            Some(h) => h,
            None => {
                let m = config.session.masters[i % config.session.masters.len()].clone();
                i += 1;
                m
            }
        };
        let mut registered = false;
        let result = tokio::select! {
            r = session(&agent, &transport, &master, &config.session, resources, &mut messages, &mut registered) => r,
            () = stop.cancelled() => Ok(true),
        };
        transport.set(None);
        agent.metrics().unregistered(match &result {
            Ok(_) => format!("the session with the master at {master} ended; reconnecting"),
            Err(e) => format!("not registered: the master at {master}: {e}"),
        });
        if registered {
            // A session that registered ends a run of hints and of failures, however it
            // ended: the next master is tried at once, with a fresh backoff.
            failures.registered(&master);
            hops = 0;
            failed_in_row = 0;
            backoff = config.session.reconnect_initial;
        }
        match result {
            Ok(true) => backoff = config.session.reconnect_initial,
            Ok(false) => {}
            Err(SessionError::NotLeader { leader, message }) => {
                if same_address(&leader, &master) {
                    tracing::warn!(
                        "the master at {master} names itself leader but refuses the session: {message}"
                    );
                } else if hops < MAX_LEADER_HINT_HOPS {
                    hops += 1;
                    tracing::info!(
                        "the master at {master} is not the leader; following its hint to {leader} (hop {hops})"
                    );
                    hinted = Some(leader);
                    continue;
                } else {
                    tracing::warn!(
                        "{hops} leader hints in a row, the last from {master} to {leader}; backing off before trying again"
                    );
                }
            }
            Err(SessionError::Electing(message)) => {
                tracing::info!("the master at {master} knows no leader yet: {message}");
                electing = true;
            }
            Err(SessionError::ShuttingDown) => {
                // A normal stop: reconnect (to another master, or to this one once it is back).
                failures.shut_down(&master, Instant::now());
                tracing::info!("the master at {master} is shutting down; reconnecting");
            }
            Err(e) => {
                let what = if registered {
                    "the session with"
                } else {
                    "cannot reach"
                };
                let failure = e.to_string();
                match failures.failed(&master, &failure, Instant::now()) {
                    Report::Quiet => {}
                    Report::Info => tracing::info!(
                        "{what} the master at {master} (it shut down; not back yet): {failure}"
                    ),
                    Report::Warn { left_out: 0 } => {
                        tracing::warn!("{what} the master at {master}: {failure}")
                    }
                    Report::Warn { left_out } => tracing::warn!(
                        "{what} the master at {master}: {failure} ({left_out} more like this in the last {}s)",
                        crate::session_log::REPEAT_WINDOW.as_secs()
                    ),
                }
                // A leader that others still name but that does not answer has most likely
                // just died: they are about to elect another.
                electing |= followed_hint && !registered;
            }
        }
        if registered {
            continue;
        }
        failed_in_row += 1;
        if failed_in_row < config.session.masters.len() {
            continue;
        }
        failed_in_row = 0;
        // A pause ends a run of hints: the next one may be followed again.
        hops = 0;
        // During an election the masters are up: ask again soon, without backing off.
        let pause = if std::mem::take(&mut electing) {
            ELECTION_RETRY.min(backoff)
        } else {
            backoff
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => break,
        }
        if pause == backoff {
            backoff = (backoff * 2).min(config.session.reconnect_max);
        }
    }
    agent.stop();
    Ok(())
}

/// `e` and its sources, `: `-separated: tonic's "transport error" alone does not say that
/// the connection was refused or the name did not resolve.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Sends status updates on the current session's stream, if there is one.
#[derive(Default)]
struct SessionTransport {
    tx: Mutex<Option<mpsc::Sender<pb::AgentMessage>>>,
}

impl SessionTransport {
    fn set(&self, tx: Option<mpsc::Sender<pb::AgentMessage>>) {
        *self.tx.lock().unwrap_or_else(|p| p.into_inner()) = tx;
    }
}

#[async_trait::async_trait]
impl UpdateTransport for SessionTransport {
    async fn send(&self, updates: Vec<QueuedUpdate>) -> Result<(), TransportError> {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| TransportError("not connected to a master".into()))?;
        let updates = updates
            .iter()
            .map(|u| pb::AgentStatusUpdate {
                framework_id: u.framework_id.to_string(),
                status: Some(status_to_pb(&u.status, "agent")),
            })
            .collect();
        for updates in status_batches(updates) {
            tx.send(message(pb::agent_message::Message::StatusUpdates(
                pb::agent_message::StatusUpdates { updates },
            )))
            .await
            .map_err(|_| TransportError("the master session closed".into()))?;
        }
        Ok(())
    }
}

/// `updates` cut, in order, into batches of at most [`STATUS_BATCH_BUDGET_BYTES`] encoded
/// bytes each, so that every `StatusUpdates` fits the master's limit for an agent's session
/// (one update is always sent, alone if it must be).
fn status_batches(updates: Vec<pb::AgentStatusUpdate>) -> Vec<Vec<pb::AgentStatusUpdate>> {
    use prost::Message as _;
    let mut batches: Vec<Vec<pb::AgentStatusUpdate>> = Vec::new();
    let mut bytes = 0;
    for u in updates {
        let len = u.encoded_len();
        let len = len + prost::length_delimiter_len(len) + 1;
        match batches.last_mut() {
            Some(b) if bytes + len <= STATUS_BATCH_BUDGET_BYTES => {
                bytes += len;
                b.push(u);
            }
            _ => {
                bytes = len;
                batches.push(vec![u]);
            }
        }
    }
    batches
}

fn message(m: pb::agent_message::Message) -> pb::AgentMessage {
    pb::AgentMessage { message: Some(m) }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("{0}")]
    Address(String),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("stream: {0}")]
    Stream(String),
    #[error("the master refused the agent: {0}")]
    Refused(String),
    /// The master is not the leader and named the one that is.
    #[error("not the leader (the leader is {leader}): {message}")]
    NotLeader { leader: String, message: String },
    /// The master is not the leader and knows none, or is taking over: an election is under
    /// way.
    #[error("no leader yet: {0}")]
    Electing(String),
    /// The master shut down cleanly ([`wasmos_api::leader::is_shutting_down`]).
    #[error("the master is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Agent(#[from] AgentError),
}

impl From<tonic::Status> for SessionError {
    /// A not-leader answer (`FAILED_PRECONDITION` with a valid `wasmos-leader` hint) becomes
    /// [`SessionError::NotLeader`]; a refused credential (`UNAUTHENTICATED`,
    /// `PERMISSION_DENIED`: no agent token or certificate, a revoked token)
    /// [`SessionError::Refused`]; anything else is a stream error.
    fn from(status: tonic::Status) -> Self {
        if matches!(
            status.code(),
            tonic::Code::Unauthenticated | tonic::Code::PermissionDenied
        ) {
            return SessionError::Refused(status.message().to_string());
        }
        if wasmos_api::leader::is_shutting_down(&status) {
            return SessionError::ShuttingDown;
        }
        match leader_hint(&status) {
            Some(leader) => SessionError::NotLeader {
                leader,
                message: status.message().to_string(),
            },
            None if wasmos_api::leader::is_not_leader(&status) => {
                SessionError::Electing(status.message().to_string())
            }
            None => SessionError::Stream(status.to_string()),
        }
    }
}

/// Whether two master addresses name the same endpoint (`http://` is the default scheme).
fn same_address(a: &str, b: &str) -> bool {
    let bare = |s: &str| s.strip_prefix("http://").unwrap_or(s).to_ascii_lowercase();
    bare(a) == bare(b)
}

/// One session. Returns Ok(true) when it got as far as registering, and sets `registered` once
/// it has (also when it later ends with an error).
async fn session(
    agent: &Agent,
    transport: &SessionTransport,
    master: &str,
    cfg: &SessionConfig,
    resources: Resources,
    messages: &mut Option<mpsc::UnboundedReceiver<FrameworkMessage>>,
    registered: &mut bool,
) -> Result<bool, SessionError> {
    let endpoint = master_endpoint(master, cfg.tls.as_ref())
        .map_err(SessionError::Address)?
        .http2_keep_alive_interval(SESSION_PING_INTERVAL)
        .keep_alive_timeout(SESSION_PING_TIMEOUT)
        .keep_alive_while_idle(true);
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| SessionError::Connect(error_chain(&e)))?;
    // Explicit, and the same as the master's end: tonic's default of 4 MiB is smaller than a
    // launch the master may send (a 4 MiB payload and its framing).
    let mut client = AgentServiceClient::new(channel)
        .max_decoding_message_size(AGENT_SESSION_MAX_MESSAGE_BYTES)
        .max_encoding_message_size(AGENT_SESSION_MAX_MESSAGE_BYTES);
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(1024);
    let register = pb::agent_message::Register {
        info: Some(pb::AgentInfo {
            id: agent.agent_id().map(|a| a.to_string()).unwrap_or_default(),
            hostname: cfg.hostname.clone(),
            address: cfg.address.clone(),
            resources: Some(resources.into()),
            attributes: convert::attributes_pb(&cfg.attributes),
        }),
        tasks: agent
            .running_tasks()
            .iter()
            .map(|t| pb::RunningTask {
                framework_id: t.framework_id.to_string(),
                task: Some(pb::TaskInfo::from(&t.task)),
                state: pb::TaskState::from(t.state) as i32,
            })
            .collect(),
        unhealthy_reason: agent.unhealthy_reason().unwrap_or_default(),
        isolation: agent.native_isolation().enabled(),
        isolation_warning: agent.native_isolation().warning().unwrap_or_default(),
    };
    tx.send(message(pb::agent_message::Message::Register(register)))
        .await
        .map_err(|_| SessionError::Stream("closed before registering".into()))?;
    let request = crate::master_fetch::with_token(
        tonic::Request::new(ReceiverStream::new(rx)),
        cfg.token.as_deref(),
    )
    .map_err(SessionError::Address)?;
    let mut inbound = client.session(request).await?.into_inner();
    let first = inbound.message().await?.and_then(|m| m.message);
    let heartbeat = match first {
        Some(pb::master_message::Message::Registered(r)) => {
            let id = AgentId::new(r.agent_id.as_str())
                .map_err(|e| SessionError::Stream(format!("registered with a bad id: {e}")))?;
            if agent.agent_id().as_ref() != Some(&id) {
                agent.set_agent_id(id.clone()).await?;
            }
            tracing::info!("registered with the master at {master} as agent {id}");
            Duration::from_secs_f64(r.heartbeat_interval_seconds.clamp(0.1, 3600.0))
        }
        Some(pb::master_message::Message::Error(e)) => {
            return Err(SessionError::Refused(e.message));
        }
        other => {
            return Err(SessionError::Stream(format!(
                "expected `registered`, got {other:?}"
            )));
        }
    };
    *registered = true;
    agent.metrics().registered(master);
    transport.set(Some(tx.clone()));
    agent.status_queue().resend_now();
    let mut health = agent.health();
    let mut ticker = tokio::time::interval(heartbeat);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let next_message = async {
            match messages.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            m = inbound.message() => {
                match m? {
                    None => return Ok(true),
                    Some(m) => {
                        if let Some(m) = m.message {
                            handle(agent, m, &tx)?;
                        }
                    }
                }
            }
            fm = next_message => match fm {
                Some(fm) => {
                    let m = message(pb::agent_message::Message::ExecutorMessage(
                        pb::agent_message::ExecutorMessage {
                            framework_id: fm.framework_id.to_string(),
                            executor_id: fm.executor_id.to_string(),
                            data: fm.data,
                        },
                    ));
                    let sent = tx.send(m).await;
                    // Frees the message's place in its task's bounded queue: it has left.
                    drop(fm.permit);
                    if sent.is_err() {
                        return Ok(true);
                    }
                }
                None => *messages = None,
            },
            changed = health.changed() => {
                if changed.is_err() {
                    return Ok(true);
                }
                health.borrow_and_update();
                let why = agent.unhealthy_reason();
                match &why {
                    Some(why) => tracing::warn!(reason = %why, "agent unhealthy; telling the master"),
                    None => tracing::info!("agent healthy again; telling the master"),
                }
                let hb = message(pb::agent_message::Message::Heartbeat(pb::agent_message::Heartbeat {
                    unhealthy_reason: why.unwrap_or_default(),
                }));
                if tx.send(hb).await.is_err() {
                    return Ok(true);
                }
            }
            _ = ticker.tick() => {
                let hb = message(pb::agent_message::Message::Heartbeat(pb::agent_message::Heartbeat {
                    unhealthy_reason: agent.unhealthy_reason().unwrap_or_default(),
                }));
                if tx.send(hb).await.is_err() {
                    return Ok(true);
                }
            }
        }
    }
}

/// Carries out one command from the master. Launches and teardowns run in the background so
/// the stream keeps flowing (acknowledgements must not wait behind a slow launch).
fn handle(
    agent: &Agent,
    m: pb::master_message::Message,
    tx: &mpsc::Sender<pb::AgentMessage>,
) -> Result<(), SessionError> {
    use pb::master_message::Message as M;
    match m {
        M::ReadLog(r) => {
            // Off the stream's task: a read of up to 1 MiB must not hold up acknowledgements.
            let dir = agent.sandboxes_dir();
            let tx = tx.clone();
            tokio::spawn(async move {
                let chunk =
                    tokio::task::spawn_blocking(move || crate::task_logs::answer(&dir, &r)).await;
                if let Ok(chunk) = chunk {
                    let _ = tx
                        .send(message(pb::agent_message::Message::LogChunk(chunk)))
                        .await;
                }
            });
        }
        M::RunTasks(run) => {
            let Ok(framework_id) =
                convert::id::<FrameworkId>("run_tasks.framework_id", &run.framework_id)
            else {
                tracing::warn!(framework_id = %run.framework_id, "run_tasks with a bad framework id; ignored");
                return Ok(());
            };
            let component = if run.component_sha256.is_empty() {
                None
            } else {
                let digest = ComponentDigest::parse(&run.component_sha256).ok();
                if digest.is_none() {
                    // Its Wasm tasks then fail with "no framework component", which is true.
                    tracing::warn!(framework_id = %framework_id, digest = %run.component_sha256,
                        "run_tasks with a malformed component digest; ignored");
                }
                digest
            };
            // Validated by the master; a value out of the API's bounds (a master of another
            // version) is dropped, so the agent's default applies to it.
            let wasm_budget = WasmBudget::from_wire(
                "run_tasks.wasm_task_timeout_seconds",
                run.wasm_task_timeout_seconds,
                "run_tasks.wasm_task_fuel",
                run.wasm_task_fuel,
            )
            .unwrap_or_else(|e| {
                tracing::warn!(framework_id = %framework_id, error = %e,
                    "run_tasks with an invalid framework budget; the agent's defaults apply");
                WasmBudget::default()
            });
            let ctx = FrameworkContext {
                framework_id,
                role: run.role,
                component,
                wasm_budget,
            };
            let tasks: Vec<TaskInfo> = run
                .tasks
                .into_iter()
                .filter_map(|t| match TaskInfo::try_from(t) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        tracing::warn!(error = %e, "the master sent a malformed task; ignored");
                        None
                    }
                })
                .collect();
            // Concurrently, so that the tasks' RUNNING updates share commits.
            for task in tasks {
                let agent = agent.clone();
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    if let Err(e) = agent.launch(&ctx, task).await {
                        tracing::error!(error = %e, "cannot record a launch");
                    }
                });
            }
        }
        M::KillTasks(k) => {
            for t in k.tasks {
                let ids = convert::id::<FrameworkId>("kill.framework_id", &t.framework_id)
                    .and_then(|f| {
                        convert::id::<TaskId>("kill.task_id", &t.task_id).map(|t| (f, t))
                    });
                match ids {
                    Ok((f, t)) => {
                        if !agent.kill(&f, &t) {
                            tracing::debug!(framework_id = %f, task_id = %t, "kill of a task not running here");
                            let agent = agent.clone();
                            tokio::spawn(async move {
                                if let Err(e) = agent.report_not_running(&f, &t).await {
                                    tracing::error!(error = %e, "cannot record a status update");
                                }
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "bad kill"),
                }
            }
        }
        M::Acknowledgements(acks) => {
            for a in acks.acks {
                if let (Ok(f), Ok(t)) = (
                    convert::id::<FrameworkId>("ack.framework_id", &a.framework_id),
                    convert::id::<TaskId>("ack.task_id", &a.task_id),
                ) {
                    agent.status_queue().acknowledge(&f, &t, &a.uuid);
                }
            }
        }
        M::ShutdownFramework(s) => {
            if let Ok(f) = convert::id::<FrameworkId>("shutdown.framework_id", &s.framework_id) {
                let agent = agent.clone();
                tokio::spawn(async move { agent.shutdown_framework(&f).await });
            }
        }
        M::FrameworkMessage(m) => {
            tracing::debug!(framework_id = %m.framework_id, executor_id = %m.executor_id,
                "framework message dropped: executors cannot receive messages yet");
        }
        M::Error(e) if e.fatal => return Err(SessionError::Refused(e.message)),
        M::Error(e) => tracing::warn!(message = %e.message, "the master refused a message"),
        M::Registered(_) => {}
    }
    Ok(())
}

/// This machine's resources: every CPU, total memory, the work directory's disk.
pub fn measure_resources(work_dir: &std::path::Path) -> Resources {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mem_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024);
    let disk_mb = crate::sandbox::total_bytes(work_dir).map_or(0, |b| b >> 20);
    Resources::new(cpus, mem_mb, disk_mb)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_status_batches_are_split_to_fit_the_session() {
        use prost::Message as _;
        use wasmos_api::limits::MAX_PAYLOAD_BYTES;
        let update = |i: usize| pb::AgentStatusUpdate {
            framework_id: "f".repeat(128),
            status: Some(pb::TaskStatus {
                task_id: format!("t{i}"),
                agent_id: "a".repeat(128),
                state: pb::TaskState::Finished as i32,
                message: String::new(),
                data: Some(vec![1; MAX_PAYLOAD_BYTES]),
                uuid: "u".repeat(64),
                reason: "agent".into(),
            }),
        };
        let batches = status_batches((0..9).map(update).collect());
        assert!(batches.len() >= 3, "{} batches", batches.len());
        let order: Vec<String> = batches
            .iter()
            .flatten()
            .map(|u| u.status.as_ref().unwrap().task_id.clone())
            .collect();
        assert_eq!(order, (0..9).map(|i| format!("t{i}")).collect::<Vec<_>>());
        for updates in batches {
            let m = message(pb::agent_message::Message::StatusUpdates(
                pb::agent_message::StatusUpdates { updates },
            ));
            assert!(m.encoded_len() <= AGENT_SESSION_MAX_MESSAGE_BYTES);
        }
        assert_eq!(status_batches(vec![update(0), update(1)]).len(), 1);
    }

    #[test]
    fn a_not_leader_status_becomes_a_hint() {
        let e = SessionError::from(wasmos_api::leader::not_leader_status(Some("10.0.0.2:5050")));
        assert!(
            matches!(e, SessionError::NotLeader { ref leader, .. } if leader == "10.0.0.2:5050")
        );
        let e = SessionError::from(wasmos_api::leader::not_leader_status(None));
        assert!(matches!(e, SessionError::Electing(_)));
        let e = SessionError::from(tonic::Status::failed_precondition("bad resources"));
        assert!(matches!(e, SessionError::Stream(_)));
        let e = SessionError::from(tonic::Status::unavailable("down"));
        assert!(matches!(e, SessionError::Stream(_)));
    }

    #[test]
    fn compares_addresses_without_the_default_scheme() {
        assert!(same_address("http://m1:5050", "m1:5050"));
        assert!(same_address("M1:5050", "m1:5050"));
        assert!(!same_address("m1:5050", "m2:5050"));
        assert!(!same_address("https://m1:5050", "m1:5050"));
    }

    #[test]
    fn measures_something() {
        let r = measure_resources(std::path::Path::new("/"));
        assert!(r.millicpus >= 1000);
        assert!(r.mem_mb > 0);
    }
}
