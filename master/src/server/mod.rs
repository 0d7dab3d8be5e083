//! The gRPC edge: the [`Master`] facade over one [`MasterCore`], and [`Master::serve`], which
//! puts `SchedulerService`, `AgentService` and `OperatorService` (and, when replicated, the Raft
//! RPCs) on one listener and runs the background tasks.
//!
//! Where things live:
//! - `leader.rs`: leadership and replication (take over, step down, the replicator, the
//!   commit wait handlers answer behind);
//! - `timers.rs`: the allocation and timeout loop;
//! - `scheduler_service.rs`, `agent_service.rs`, `operator_service.rs`: one file per gRPC
//!   service;
//! - `logs.rs`: task and scheduler logs, and the proxy that reads task output from agents;
//! - `status.rs`: every gRPC status the master answers with, in one table;
//! - `conn_limits.rs`: the listener's caps and deadlines on TCP connections, and its TLS
//!   handshakes;
//! - `peer_roles.rs`: which certificate role may call which service (TLS masters).
//!
//! Hosted schedulers run in the [`FrameworkHost`] (`framework_host/`), which sees the master
//! only through [`HostContext`]; this module implements that for `Master` and never lends the
//! host anything else.
//!
//! Each stream gets a reader task that feeds calls into the core under a short, never-awaited
//! lock, and a bounded outbound queue that the core fills. `Master::serve` binds nothing
//! itself: it takes a `TcpListener`, so tests can use port 0.

mod agent_service;
mod authz;
mod conn_limits;
mod history;
mod leader;
mod logs;
mod operator_service;
mod peer_roles;
mod scheduler_service;
pub(crate) mod status;
mod timers;

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_stream::Stream;
use tonic::Status;
use tracing::{info, warn};
use wasmos_api::FrameworkId;
use wasmos_api::limits::AGENT_SESSION_MAX_MESSAGE_BYTES;
use wasmos_api::proto as pb;
use wasmos_api::proto::agent_service_server::AgentServiceServer;
use wasmos_api::proto::operator_service_server::OperatorServiceServer;
use wasmos_api::proto::scheduler_service_server::SchedulerServiceServer;

use crate::allocator::Millis;
use crate::config::MasterConfig;
use crate::core::MasterCore;
use crate::framework_host::{FrameworkHost, HostContext, HostError};
use crate::raft::RaftNode;
use crate::sync::lock;
pub(crate) use conn_limits::nofile_soft_limit;
pub use conn_limits::raise_nofile_soft_limit;
use leader::Replication;

/// Errors starting or running the master.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server could not serve on its listener, or failed while serving.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS files given with [`Master::with_tls`] do not make a server configuration.
    #[error("cannot serve TLS: {0}")]
    Tls(wasmos_api::tls::TlsError),
    /// The Raft member of a replicated master stopped by itself, most often because its store
    /// could not write (a full or failing disk): openraft does not recover from that, so the
    /// master stopped serving rather than answer from memory what it cannot make durable.
    /// Restarting the master (after freeing space or fixing the data dir) reopens the store,
    /// and the master rejoins its group.
    #[error(
        "the Raft store of master {id} failed: {cause}; the master stopped serving. Free disk \
         space or fix the data dir, then restart it: it reopens its store and rejoins its group"
    )]
    RaftFailed {
        /// The master's id in its Raft group.
        id: crate::raft::NodeId,
        /// What openraft reported (the storage error, or that it panicked).
        cause: String,
    },
}

/// How long a master whose Raft store failed lets open calls finish (they are answered
/// UNAVAILABLE by then) before [`Master::serve`] returns anyway.
const FAILED_DRAIN: Duration = Duration::from_secs(5);
/// How long open calls get to end after a shutdown was asked for (Ctrl-C, SIGTERM) and the
/// master closed its streams.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);

/// How long a new stream may take to send its first message (subscribe or register).
const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The outbound half of a server stream.
type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The master: shared core, clock, replication, the framework host, and the handle to wake the
/// allocation loop. Cheap to clone: every clone is the same master.
#[derive(Clone)]
pub struct Master {
    core: Arc<Mutex<MasterCore>>,
    start: Instant,
    /// Wall-clock milliseconds at `start`, so that times in the registry mean the same on
    /// every master.
    start_ms: Millis,
    epoch: String,
    raft: Option<Arc<Replication>>,
    wake: Arc<Notify>,
    /// Runs hosted schedulers, and knows which run; created on first use unless given.
    host: Arc<Mutex<Option<FrameworkHost>>>,
    /// The authorization layer every service calls (`authz.rs`).
    acl: Arc<crate::acl::Acl>,
    /// The master's TLS files when it serves TLS ([`Master::with_tls`]); `None`: plain text.
    tls: Option<Arc<wasmos_api::tls::TlsMaterial>>,
    /// Log reads waiting for agents' answers (`logs.rs`).
    log_proxy: Arc<logs::LogProxy>,
}

impl Master {
    /// A master with an empty registry, kept in memory only.
    pub fn new(config: MasterConfig) -> Self {
        let wake = Arc::new(Notify::new());
        let start_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let epoch = format!("{start_ms:x}");
        let acl = Arc::new(crate::acl::Acl::new(
            config.enforce_acl,
            config.audit_dir.as_deref(),
        ));
        let core = MasterCore::new(config, &epoch, wake.clone());
        Master {
            core: Arc::new(Mutex::new(core)),
            start: Instant::now(),
            start_ms,
            epoch,
            raft: None,
            wake,
            host: Arc::new(Mutex::new(None)),
            acl,
            tls: None,
            log_proxy: Arc::default(),
        }
    }

    /// Serves mutual TLS with `tls` (a master certificate, its key and the cluster CA): every
    /// client must present a certificate signed by that CA, and may call only the services
    /// its role allows (see `server/peer_roles.rs`). Without this the master serves plain text.
    pub fn with_tls(mut self, tls: wasmos_api::tls::TlsMaterial) -> Self {
        self.tls = Some(Arc::new(tls));
        self
    }

    /// A master whose registry is replicated through `node`'s Raft group. It serves only while
    /// it leads: on gaining the leadership it builds its core from the replicated registry
    /// (waiting up to `agent_reregister_wait` for admitted agents to come back); on losing it,
    /// it closes every stream with the not-leader status. [`Master::serve`] also serves the
    /// Raft RPCs.
    pub fn replicated(
        config: MasterConfig,
        node: RaftNode,
        agent_reregister_wait: Duration,
    ) -> Self {
        let mut master = Self::new(config);
        master.raft = Some(Arc::new(Replication::new(node, agent_reregister_wait)));
        master
    }

    /// Stops the Raft member of a replicated master (after [`Master::serve`] returned), so
    /// that it leaves its store closed and consistent.
    pub async fn shutdown_replication(&self) {
        if let Some(r) = &self.raft
            && let Err(e) = r.node.raft().shutdown().await
        {
            warn!(error = %e, "Raft did not stop cleanly");
        }
    }

    /// The Raft member of a replicated master.
    pub fn raft_node(&self) -> Option<&RaftNode> {
        self.raft.as_ref().map(|r| &r.node)
    }

    /// Whether this master serves calls: always for a master kept in memory; for a
    /// replicated one, while it leads.
    pub fn is_serving(&self) -> bool {
        self.raft
            .as_ref()
            .is_none_or(|r| r.serving.load(Ordering::Acquire))
    }

    /// Uses `host` (and its Wasm runtime) for hosted frameworks instead of creating one.
    pub fn with_framework_host(self, host: FrameworkHost) -> Self {
        *lock(&self.host) = Some(host);
        self
    }

    /// The framework host, when one was made (no hosted framework ever started: none).
    fn framework_host_if_any(&self) -> Option<FrameworkHost> {
        lock(&self.host).clone()
    }

    /// Log reads waiting for agents' answers.
    fn log_proxy(&self) -> &logs::LogProxy {
        &self.log_proxy
    }

    /// The framework host, created with on-demand allocation on first use (scheduler
    /// instances are long-lived, so the pooling allocator's fast instantiation buys little).
    pub fn framework_host(&self) -> Result<FrameworkHost, HostError> {
        let mut host = lock(&self.host);
        if let Some(h) = host.as_ref() {
            return Ok(h.clone());
        }
        let h = FrameworkHost::new(wasmos_wasm_executor::RuntimeConfig {
            pooling: None,
            ..Default::default()
        })?;
        *host = Some(h.clone());
        Ok(h)
    }

    /// The framework host if one exists yet (none has run a scheduler otherwise).
    fn started_framework_host(&self) -> Option<FrameworkHost> {
        lock(&self.host).clone()
    }

    /// The frameworks whose scheduler this master hosts now (empty before the first is
    /// started).
    fn hosted_frameworks(&self) -> HashSet<FrameworkId> {
        self.started_framework_host()
            .map(|h| h.running())
            .unwrap_or_default()
    }

    /// The cluster as this master sees it, including which frameworks it hosts (what
    /// `OperatorService.GetState` answers).
    pub fn cluster_state(&self) -> pb::ClusterState {
        let hosted = self.hosted_frameworks();
        let now = self.now();
        self.core().cluster_state_at(&hosted, now)
    }

    /// How long this master process has run.
    pub fn uptime(&self) -> Duration {
        self.start.elapsed()
    }

    /// The master's TLS files when it serves TLS (its HTTP API then uses the same
    /// certificate).
    pub fn tls_material(&self) -> Option<&wasmos_api::tls::TlsMaterial> {
        self.tls.as_deref()
    }

    /// The time in milliseconds: wall-clock at start, then advanced monotonically, so that
    /// times recorded in the registry mean the same on every master.
    pub fn now(&self) -> Millis {
        self.start_ms + self.start.elapsed().as_millis() as Millis
    }

    /// Locks the core. A panic while holding the lock would poison it; the core is still
    /// consistent between calls, so the poison is cleared rather than taking the master down
    /// (the policy of [`crate::sync`]).
    pub fn core(&self) -> MutexGuard<'_, MasterCore> {
        lock(&self.core)
    }

    /// Serves the three gRPC services on `listener` and runs the timers, until the server
    /// fails, `shutdown` resolves, or (replicated) Raft stops by itself, which returns
    /// [`ServeError::RaftFailed`] once open calls are answered (at most 5 s later). Connections are admitted and closed under
    /// [`MasterConfig::connections`](crate::ConnectionConfig); the caps chosen are logged once.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let (max, conns) = {
            let core = self.core();
            (
                core.config().max_message_bytes,
                core.config().connections.clone(),
            )
        };
        let (max_connections, nofile) = conns.effective_max_connections();
        info!(
            max_connections,
            chosen_from_fd_limit = conns.max_connections.is_none(),
            nofile_soft_limit = nofile,
            max_connections_per_ip = conns.max_connections_per_ip,
            handshake_timeout = ?conns.handshake_timeout,
            idle_timeout = ?conns.idle_timeout,
            keepalive_interval = ?conns.keepalive_interval,
            "connection limits"
        );
        let admission =
            conn_limits::Admission::new(max_connections, conns.max_connections_per_ip.max(1));
        let acceptor = match &self.tls {
            Some(tls) => Some(tokio_rustls::TlsAcceptor::from(
                tls.server_config().map_err(ServeError::Tls)?,
            )),
            None => None,
        };
        let incoming = conn_limits::accept(listener, admission, &conns, acceptor);
        let timers = tokio::spawn(self.clone().run_timers());
        let raft_service = self.raft.as_ref().map(|r| r.node.service());
        // Set, and `failed_rx` told, when Raft stops by itself: the server then shuts down.
        let failure: Arc<Mutex<Option<String>>> = Arc::default();
        let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<()>();
        let raft_tasks = self.raft.as_ref().map(|_| {
            let watcher = self.clone().watch_leadership();
            let failure = failure.clone();
            (
                tokio::spawn(async move {
                    if let Some(cause) = watcher.await {
                        *lock(&failure) = Some(cause);
                        let _ = failed_tx.send(());
                    }
                }),
                tokio::spawn(self.clone().replicate()),
            )
        });
        // How long open calls may take to end once the server stops accepting.
        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<Duration>();
        let stopping = self.clone();
        let stop = async move {
            tokio::select! {
                () = shutdown => {
                    // Agents' sessions and schedulers' subscriptions never end by themselves:
                    // end them (their peers reconnect, to another master if there is one),
                    // and give the rest of the open calls a bounded time.
                    info!("shutting down: closing agent sessions and scheduler streams");
                    stopping
                        .core()
                        .close_all(wasmos_api::leader::shutting_down_status());
                    let _ = drain_tx.send(SHUTDOWN_DRAIN);
                }
                Ok(()) = failed_rx => {
                    let _ = drain_tx.send(FAILED_DRAIN);
                }
            }
        };
        let result = tonic::transport::Server::builder()
            // Dead peers: a connection that answers no PING within the timeout is closed,
            // even with streams open. Healthy peers answer, whatever their streams do.
            .http2_keepalive_interval(conns.keepalive_interval)
            .http2_keepalive_timeout(Some(conns.keepalive_timeout))
            .layer(conn_limits::TrackCallsLayer)
            .layer(peer_roles::PeerRolesLayer {
                tls: self.tls.is_some(),
            })
            .add_optional_service(raft_service)
            .add_service(
                SchedulerServiceServer::new(self.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                // Both ends of an agent's session use the same fixed limit, which everything
                // the master sends an agent is cut to fit (`wasmos_api::limits`).
                AgentServiceServer::new(self.clone())
                    .max_decoding_message_size(AGENT_SESSION_MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(AGENT_SESSION_MAX_MESSAGE_BYTES),
            )
            .add_service(
                OperatorServiceServer::new(self.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .serve_with_incoming_shutdown(incoming, stop);
        let drained = async {
            match drain_rx.await {
                Ok(wait) => tokio::time::sleep(wait).await,
                Err(_) => std::future::pending::<()>().await,
            }
        };
        let result = tokio::select! {
            result = result => result,
            () = drained => Ok(()),
        };
        timers.abort();
        if let Some((leadership, replicator)) = raft_tasks {
            leadership.abort();
            replicator.abort();
        }
        result?;
        match (lock(&failure).take(), &self.raft) {
            (Some(cause), Some(r)) => Err(ServeError::RaftFailed {
                id: r.node.id(),
                cause,
            }),
            _ => Ok(()),
        }
    }
}

/// The framework host reaches the master only through this: the core, the clock, and the
/// commit wait (the inherent methods of the same names).
impl HostContext for Master {
    fn core(&self) -> MutexGuard<'_, MasterCore> {
        Master::core(self)
    }

    fn now(&self) -> Millis {
        Master::now(self)
    }

    fn committed(&self) -> impl Future<Output = Result<(), Status>> + Send {
        Master::committed(self)
    }

    fn authorize_native_launch(&self, framework: &FrameworkId) -> Result<(), String> {
        self.authorize_hosted_native(framework)
    }
}
