//! The gRPC edge: `SchedulerService`, `AgentService` and `OperatorService` over one
//! [`MasterCore`], plus the timer task that runs allocation cycles and timeouts. Components go
//! in through `OperatorService.UploadComponent` and out to agents through
//! `AgentService.FetchComponent`, streamed in chunks. `OperatorService.SubmitFramework` starts a
//! hosted framework in the [`FrameworkHost`]; `KillTask` and `TeardownFramework` go through the
//! same core paths as a scheduler's own kill and teardown calls.
//!
//! Each stream gets a reader task that feeds calls into the core under a short, never-awaited
//! lock, and a bounded outbound queue that the core fills. `Master::serve` binds nothing
//! itself: it takes a `TcpListener`, so tests can use port 0.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};
use wasmos_api::convert;
use wasmos_api::proto as pb;
use wasmos_api::proto::agent_service_server::{AgentService, AgentServiceServer};
use wasmos_api::proto::operator_service_server::{OperatorService, OperatorServiceServer};
use wasmos_api::proto::scheduler_service_server::{SchedulerService, SchedulerServiceServer};
use wasmos_api::{FrameworkId, TaskId};

use crate::allocator::{Millis, Quota};
use crate::blobs::{BlobError, Digest};
use crate::config::MasterConfig;
use crate::core::{MasterCore, OperatorError};
use crate::framework_host::{FrameworkHost, HostError};
use crate::raft::{ProposeError, RaftNode};
use crate::registry::FrameworkOutcome;

/// Errors starting or running the master.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The replication side of a master whose registry is a Raft state machine.
///
/// Only the leader serves: its core applies each registry change at once and queues it in an
/// outbox; the replicator proposes the outbox in order and advances `durable`; a handler that
/// changed the registry answers only once `durable` covers its change. A follower answers
/// every call with the not-leader status ([`wasmos_api::leader`]).
struct Replication {
    node: RaftNode,
    /// (leadership generation, last outbox sequence number committed in it).
    durable: watch::Sender<(u64, u64)>,
    /// Bumped whenever this master starts or stops serving as the leader.
    generation: AtomicU64,
    /// Whether this master leads and has built its core from the registry.
    serving: AtomicBool,
    /// Woken when the core queues a command.
    outbox: Arc<Notify>,
    /// How long a new leader waits for admitted agents to re-register.
    agent_reregister_wait: Duration,
}

/// How often a leader confirms that a majority still follows it.
const LEADERSHIP_CHECK: Duration = Duration::from_millis(250);
/// How long one confirmation by a majority may take.
const QUORUM_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a leader goes unconfirmed by a majority before it stops serving (a single slow
/// round on a busy machine is not a partition).
const QUORUM_LOST_AFTER: Duration = Duration::from_millis(1500);

/// Whether a majority of masters confirms, within [`QUORUM_TIMEOUT`], that this one leads.
async fn quorum_confirms(node: &RaftNode) -> bool {
    matches!(
        tokio::time::timeout(QUORUM_TIMEOUT, node.raft().ensure_linearizable()).await,
        Ok(Ok(_))
    )
}

/// The longest a handler waits for its registry change to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The master: shared core, clock, and the handle to wake the allocation loop.
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
    /// Runs hosted schedulers; created on the first `SubmitFramework` unless given.
    host: Arc<Mutex<Option<FrameworkHost>>>,
    /// Frameworks whose hosted scheduler is running (started by `SubmitFramework`, not yet
    /// stopped), for `GetState`.
    hosted: Arc<Mutex<HashSet<FrameworkId>>>,
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
        let core = MasterCore::new(config, &epoch, wake.clone());
        Master {
            core: Arc::new(Mutex::new(core)),
            start: Instant::now(),
            start_ms,
            epoch,
            raft: None,
            wake,
            host: Arc::new(Mutex::new(None)),
            hosted: Arc::new(Mutex::new(HashSet::new())),
        }
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
        let (durable, _) = watch::channel((0, 0));
        master.raft = Some(Arc::new(Replication {
            node,
            durable,
            generation: AtomicU64::new(0),
            serving: AtomicBool::new(false),
            outbox: Arc::new(Notify::new()),
            agent_reregister_wait,
        }));
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

    /// The status a master that does not serve answers with: not-leader with the leader's
    /// address when another master leads, without one while none serves yet (an election, or
    /// this master taking over).
    fn not_leader(&self) -> Status {
        let Some(r) = &self.raft else {
            return Status::unavailable("the master is not serving");
        };
        match r.node.leader() {
            // Elected but still taking over: no master serves yet.
            Some((id, _)) if id == r.node.id() => wasmos_api::leader::not_leader_status(None),
            Some((_, addr)) => wasmos_api::leader::not_leader_status(Some(&addr)),
            None => wasmos_api::leader::not_leader_status(None),
        }
    }

    /// `Ok` when this master serves calls; otherwise the status to answer with.
    fn leading(&self) -> Result<(), Status> {
        if self.is_serving() {
            Ok(())
        } else {
            Err(self.not_leader())
        }
    }

    /// Waits until every registry change made so far is committed through Raft (at once for
    /// a master kept in memory). Fails when the leadership is lost first, or after
    /// [`COMMIT_TIMEOUT`].
    pub async fn committed(&self) -> Result<(), Status> {
        let Some(r) = &self.raft else { return Ok(()) };
        let (generation, seq) = {
            let core = self.core();
            (r.generation.load(Ordering::Acquire), core.outbox_seq())
        };
        let mut rx = r.durable.subscribe();
        let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
        loop {
            {
                let (g, s) = *rx.borrow_and_update();
                if g == generation && s >= seq {
                    return Ok(());
                }
                if g != generation || r.generation.load(Ordering::Acquire) != generation {
                    return Err(self.not_leader());
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Status::unavailable("replication stopped")),
                Err(_) => {
                    return Err(Status::unavailable(
                        "the change was not committed in time (no majority of masters?)",
                    ));
                }
            }
        }
    }

    fn replication(&self) -> Result<&RaftNode, Status> {
        self.raft_node().ok_or_else(|| {
            Status::failed_precondition(
                "this master's registry is not replicated (start it with --data-dir)",
            )
        })
    }

    fn members(&self) -> Result<pb::ListMembersResponse, Status> {
        let node = self.replication()?;
        let voters = node.voters();
        Ok(pb::ListMembersResponse {
            members: node
                .members()
                .into_iter()
                .map(|(id, address)| pb::Member {
                    id,
                    address,
                    voter: voters.contains(&id),
                })
                .collect(),
            leader_id: node.id(),
        })
    }

    /// Follows the Raft metrics: takes over when this master becomes the leader and has
    /// applied the whole log, steps down when it is no longer the leader.
    async fn watch_leadership(self) {
        let Some(r) = self.raft.clone() else { return };
        let id = r.node.id();
        let mut metrics = r.node.metrics();
        // Since when a majority has not confirmed this master's leadership (while it serves).
        let mut unconfirmed_since: Option<Instant> = None;
        // Set when it stopped serving for that reason, until it is no longer leader.
        let mut quorum_lost = false;
        loop {
            let (leads, ready) = {
                let m = metrics.borrow_and_update();
                let leads = m.current_leader == Some(id) && m.state.is_leader();
                // The leader's first entry of its term (a blank one) is applied: the state
                // machine holds every change of earlier leaders.
                let ready = leads
                    && m.last_applied.is_some_and(|l| {
                        l.leader_id.term == m.current_term && Some(l.index) == m.last_log_index
                    });
                (leads, ready)
            };
            let serving = r.serving.load(Ordering::Acquire);
            if !leads {
                quorum_lost = false;
            }
            if ready && !serving {
                // A majority has this term's first entry: no need to ask it again, unless
                // this master stopped serving for want of a majority while openraft kept it
                // leader.
                if !quorum_lost || quorum_confirms(&r.node).await {
                    quorum_lost = false;
                    self.take_over(&r);
                }
            } else if !leads && serving {
                self.step_down(&r);
            } else if serving {
                if quorum_confirms(&r.node).await {
                    unconfirmed_since = None;
                } else if unconfirmed_since.get_or_insert_with(Instant::now).elapsed()
                    >= QUORUM_LOST_AFTER
                {
                    // Cut off from a majority: openraft keeps the title until it hears of a
                    // newer term, but nothing here can commit any more.
                    warn!("a majority of masters does not answer; this master stops serving");
                    unconfirmed_since = None;
                    quorum_lost = true;
                    self.step_down(&r);
                }
            }
            tokio::select! {
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(LEADERSHIP_CHECK) => {}
            }
        }
    }

    fn take_over(&self, r: &Replication) {
        let now = self.now();
        let registry = r.node.registry();
        let mut core = self.core();
        let config = core.config().clone();
        let mut fresh = MasterCore::from_registry(
            config,
            &self.epoch,
            self.wake.clone(),
            registry,
            now,
            r.agent_reregister_wait,
        );
        fresh.replicate_through(r.outbox.clone());
        fresh.start_failover_timeouts(now);
        let generation = r.generation.fetch_add(1, Ordering::AcqRel) + 1;
        *core = fresh;
        r.durable.send_replace((generation, 0));
        r.serving.store(true, Ordering::Release);
        drop(core);
        info!(generation, "this master leads; registry taken over");
        self.wake.notify_one();
        tokio::spawn(self.clone().restart_hosted(generation));
    }

    /// Starts again every scheduler the registry says this master hosts, from its component,
    /// arguments, limits and stored state (a master that just became the leader).
    async fn restart_hosted(self, generation: u64) {
        let Some(r) = self.raft.clone() else { return };
        let hosted: Vec<(pb::FrameworkInfo, crate::registry::HostedSpec)> = {
            let core = self.core();
            let reg = core.registry();
            reg.hosted
                .iter()
                .filter_map(|(id, spec)| {
                    let f = reg.frameworks.get(id)?;
                    Some((
                        pb::FrameworkInfo {
                            id: id.to_string(),
                            name: f.name.clone(),
                            role: f.role.clone(),
                            principal: f.principal.clone(),
                            failover_timeout_seconds: f.failover_timeout_ms as f64 / 1000.0,
                            component_sha256: f.component_sha256.clone().unwrap_or_default(),
                        },
                        spec.clone(),
                    ))
                })
                .collect()
        };
        if hosted.is_empty() {
            return;
        }
        let host = match self.framework_host() {
            Ok(h) => h,
            Err(e) => {
                warn!(error = %e, "cannot restart hosted schedulers");
                return;
            }
        };
        for (info, spec) in hosted {
            if r.generation.load(Ordering::Acquire) != generation {
                return; // Lost the leadership meanwhile.
            }
            let id = info.id.clone();
            let limits = FrameworkHost::limits_of(&spec);
            match host.start(&self, info, spec.args, limits).await {
                Ok(h) => {
                    info!(framework_id = %id, "hosted scheduler restarted");
                    self.track_hosted(h);
                }
                Err(e) => {
                    warn!(framework_id = %id, error = %e, "cannot restart a hosted scheduler");
                    if let Ok(fw) = FrameworkId::new(id) {
                        let now = self.now();
                        self.core().fail_framework(
                            &fw,
                            format!("its scheduler could not be restarted on the new leader: {e}"),
                            now,
                        );
                    }
                }
            }
        }
    }

    /// Lists a started hosted scheduler (for `GetState`) until it stops.
    fn track_hosted(&self, hosted: crate::framework_host::HostedFramework) {
        let framework_id = hosted.framework_id.clone();
        self.hosted().insert(framework_id.clone());
        let master = self.clone();
        let task = hosted.task;
        tokio::spawn(async move {
            // Ends when the framework finishes, fails or is torn down.
            let _ = task.await;
            master.hosted().remove(&framework_id);
        });
    }

    fn step_down(&self, r: &Replication) {
        let status = self.not_leader();
        let mut core = self.core();
        let config = core.config().clone();
        r.serving.store(false, Ordering::Release);
        let generation = r.generation.fetch_add(1, Ordering::AcqRel) + 1;
        core.close_all(status);
        *core = MasterCore::new(config, &self.epoch, self.wake.clone());
        r.durable.send_replace((generation, 0));
        drop(core);
        self.hosted().clear();
        info!(generation, "this master no longer leads; streams closed");
    }

    /// Proposes the core's queued registry commands through Raft, in order, many in flight
    /// at once, and advances `durable` past those committed.
    async fn replicate(self) {
        use futures_util::stream::{FuturesOrdered, StreamExt};
        let Some(r) = self.raft.clone() else { return };
        let proposer = r.node.proposer();
        loop {
            r.outbox.notified().await;
            loop {
                let (generation, batch) = {
                    let mut core = self.core();
                    (r.generation.load(Ordering::Acquire), core.take_outbox())
                };
                let Some(&(last, _)) = batch.last() else {
                    break;
                };
                // openraft queues a write when its future is first polled: polling in order
                // keeps the log in the core's order.
                let mut inflight: FuturesOrdered<_> = batch
                    .into_iter()
                    .map(|(_, command)| proposer.propose(command))
                    .collect();
                let mut all = true;
                while let Some(result) = inflight.next().await {
                    match result {
                        Ok(applied) => {
                            if let Err(e) = applied.result {
                                warn!(error = %e, "the replicated registry refused a change the leader had applied");
                            }
                        }
                        Err(e) => {
                            all = false;
                            warn!(error = %e, "a registry change was not replicated");
                            if matches!(e, ProposeError::NotLeader { .. })
                                && r.generation.load(Ordering::Acquire) == generation
                            {
                                self.step_down(&r);
                            }
                        }
                    }
                }
                if all {
                    r.durable.send_if_modified(|d| {
                        let advance = d.0 == generation && d.1 < last;
                        if advance {
                            d.1 = last;
                        }
                        advance
                    });
                }
            }
        }
    }

    /// Uses `host` (and its Wasm runtime) for hosted frameworks instead of creating one.
    pub fn with_framework_host(self, host: FrameworkHost) -> Self {
        *self.host.lock().unwrap_or_else(|p| p.into_inner()) = Some(host);
        self
    }

    /// The framework host, created with on-demand allocation on first use (scheduler
    /// instances are long-lived, so the pooling allocator's fast instantiation buys little).
    pub fn framework_host(&self) -> Result<FrameworkHost, HostError> {
        let mut host = self.host.lock().unwrap_or_else(|p| p.into_inner());
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

    fn hosted(&self) -> MutexGuard<'_, HashSet<FrameworkId>> {
        self.hosted.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The time in milliseconds: wall-clock at start, then advanced monotonically, so that
    /// times recorded in the registry mean the same on every master.
    pub fn now(&self) -> Millis {
        self.start_ms + self.start.elapsed().as_millis() as Millis
    }

    /// Locks the core. A panic while holding the lock would poison it; the core is still
    /// consistent between calls, so the poison is cleared rather than taking the master down.
    pub fn core(&self) -> MutexGuard<'_, MasterCore> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs the allocation/timeout loop until the process ends: a cycle every
    /// `allocation_interval`, and right after any change that asks for one.
    pub async fn run_timers(self) {
        let interval = self.core().config().allocation_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.wake.notified() => {}
            }
            if !self.is_serving() {
                continue;
            }
            let now = self.now();
            let mut core = self.core();
            core.tick(now);
            core.allocate(now);
        }
    }

    /// Serves the three gRPC services on `listener` and runs the timers, until the server
    /// fails or `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let max = self.core().config().max_message_bytes;
        let timers = tokio::spawn(self.clone().run_timers());
        let raft_service = self.raft.as_ref().map(|r| r.node.service());
        let raft_tasks = self.raft.as_ref().map(|_| {
            (
                tokio::spawn(self.clone().watch_leadership()),
                tokio::spawn(self.clone().replicate()),
            )
        });
        let result = tonic::transport::Server::builder()
            .add_optional_service(raft_service)
            .add_service(
                SchedulerServiceServer::new(self.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                AgentServiceServer::new(self.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .add_service(
                OperatorServiceServer::new(self.clone())
                    .max_decoding_message_size(max)
                    .max_encoding_message_size(max),
            )
            .serve_with_incoming_shutdown(
                // Small answers (acks, offers) must not wait for Nagle's algorithm: without
                // TCP_NODELAY each one waited ~40 ms for a delayed ACK on loopback.
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            )
            .await;
        timers.abort();
        if let Some((leadership, replicator)) = raft_tasks {
            leadership.abort();
            replicator.abort();
        }
        result.map_err(ServeError::from)
    }
}

/// Size of the chunks a component is streamed to agents in.
const COMPONENT_CHUNK_BYTES: usize = 1 << 20;

fn blob_status(e: BlobError) -> Status {
    match e {
        BlobError::Unknown(_) => Status::not_found(e.to_string()),
        BlobError::TooLarge { .. } | BlobError::StoreFull { .. } => {
            Status::resource_exhausted(e.to_string())
        }
        BlobError::BadDigest { .. }
        | BlobError::NotAComponent
        | BlobError::NotAFramework(_)
        | BlobError::DigestMismatch { .. } => Status::invalid_argument(e.to_string()),
    }
}

fn member_status(e: crate::raft::MemberError) -> Status {
    use crate::raft::MemberError;
    match e {
        MemberError::NotLeader { leader_addr, .. } => {
            wasmos_api::leader::not_leader_status(leader_addr.as_deref())
        }
        MemberError::Refused(m) => Status::failed_precondition(m),
        MemberError::Unavailable(m) => Status::unavailable(m),
    }
}

fn operator_status(e: OperatorError) -> Status {
    match e {
        OperatorError::NotFound(m) => Status::not_found(m),
        OperatorError::Conflict(m) => Status::failed_precondition(m),
        OperatorError::Unavailable(m) => Status::unavailable(m),
    }
}

/// How long a new stream may take to send its first message (subscribe or register).
const FIRST_MESSAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl SchedulerService for Master {
    type SubscribeStream = EventStream<pb::SchedulerEvent>;

    async fn subscribe(
        &self,
        request: Request<Streaming<pb::SchedulerCall>>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        self.leading()?;
        let mut calls = request.into_inner();
        let first = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, calls.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no subscribe call within 30 s"))??
            .ok_or_else(|| Status::invalid_argument("the stream ended before subscribe"))?;
        let Some(pb::scheduler_call::Call::Subscribe(sub)) = first.call else {
            return Err(Status::failed_precondition(
                "the first call must be subscribe",
            ));
        };
        let queue = self.core().config().connection_queue;
        let (tx, rx) = mpsc::channel(queue);
        let (framework, conn) = {
            let now = self.now();
            let mut core = self.core();
            let conn = core.new_conn();
            match core.subscribe(conn, tx, sub.framework_info, now) {
                Ok(fw) => (fw, conn),
                Err(message) => {
                    info!(%message, "subscription refused");
                    return Err(Status::failed_precondition(message));
                }
            }
        };
        self.committed().await?;
        let master = self.clone();
        tokio::spawn(async move {
            loop {
                match calls.message().await {
                    Ok(Some(call)) => {
                        let now = master.now();
                        if !master
                            .core()
                            .scheduler_call(&framework, conn, call.call, now)
                        {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        debug!(framework_id = %framework, %status, "scheduler stream error");
                        break;
                    }
                }
            }
            let now = master.now();
            master.core().scheduler_disconnected(&framework, conn, now);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[tonic::async_trait]
impl AgentService for Master {
    type SessionStream = EventStream<pb::MasterMessage>;
    type FetchComponentStream = EventStream<pb::ComponentChunk>;

    async fn fetch_component(
        &self,
        request: Request<pb::FetchComponentRequest>,
    ) -> Result<Response<Self::FetchComponentStream>, Status> {
        self.leading()?;
        let digest =
            Digest::parse(&request.into_inner().sha256).map_err(|e| blob_status(e.into()))?;
        let blob = self.core().blobs().get(&digest).map_err(|e| {
            debug!(component = %digest, "fetch of an unknown component");
            blob_status(e)
        })?;
        let chunks = (0..blob.len().div_ceil(COMPONENT_CHUNK_BYTES)).map(move |i| {
            let end = ((i + 1) * COMPONENT_CHUNK_BYTES).min(blob.len());
            Ok(pb::ComponentChunk {
                data: blob[i * COMPONENT_CHUNK_BYTES..end].to_vec(),
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        self.leading()?;
        let mut messages = request.into_inner();
        let first = tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, messages.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no register message within 30 s"))??
            .ok_or_else(|| Status::invalid_argument("the stream ended before register"))?;
        let Some(pb::agent_message::Message::Register(reg)) = first.message else {
            return Err(Status::failed_precondition(
                "the first message must be register",
            ));
        };
        let queue = self.core().config().connection_queue;
        let (tx, rx) = mpsc::channel(queue);
        let (agent, conn) = {
            let now = self.now();
            let mut core = self.core();
            let conn = core.new_conn();
            match core.agent_register(conn, tx, reg, now) {
                Ok(a) => (a, conn),
                Err(message) => {
                    warn!(%message, "agent registration refused");
                    return Err(Status::failed_precondition(message));
                }
            }
        };
        self.committed().await?;
        let master = self.clone();
        tokio::spawn(async move {
            loop {
                match messages.message().await {
                    Ok(Some(m)) => {
                        let now = master.now();
                        if !master.core().agent_message(&agent, conn, m.message, now) {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        debug!(agent_id = %agent, %status, "agent stream error");
                        break;
                    }
                }
            }
            let now = master.now();
            master.core().agent_disconnected(&agent, conn, now);
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[tonic::async_trait]
impl OperatorService for Master {
    async fn get_state(
        &self,
        _request: Request<pb::GetStateRequest>,
    ) -> Result<Response<pb::ClusterState>, Status> {
        self.leading()?;
        let mut state = self.core().cluster_state();
        let hosted = self.hosted();
        for f in &mut state.frameworks {
            f.hosted = f
                .info
                .as_ref()
                .and_then(|i| FrameworkId::new(i.id.clone()).ok())
                .is_some_and(|id| hosted.contains(&id));
        }
        state.hosted_schedulers = hosted.len() as u32;
        Ok(Response::new(state))
    }

    async fn kill_task(
        &self,
        request: Request<pb::KillTaskRequest>,
    ) -> Result<Response<pb::KillTaskResponse>, Status> {
        self.leading()?;
        let r = request.into_inner();
        let task: TaskId = convert::id("task_id", &r.task_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let framework: Option<FrameworkId> = convert::opt_id("framework_id", &r.framework_id)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let now = self.now();
        let kill = self
            .core()
            .operator_kill_task(framework.as_ref(), &task, now)
            .map_err(operator_status)?;
        Ok(Response::new(pb::KillTaskResponse {
            framework_id: kill.framework.to_string(),
            agent_id: kill.agent.to_string(),
            state: pb::TaskState::from(kill.state) as i32,
        }))
    }

    async fn teardown_framework(
        &self,
        request: Request<pb::TeardownFrameworkRequest>,
    ) -> Result<Response<pb::TeardownFrameworkResponse>, Status> {
        self.leading()?;
        let raw = request.into_inner().framework_id;
        let fw: FrameworkId = convert::id("framework_id", &raw)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Read first: a hosted scheduler leaves the set as soon as it has stopped.
        let hosted = self.hosted().contains(&fw);
        let now = self.now();
        // The core closes the scheduler's stream with a fatal error; a hosted scheduler's
        // driving task sees it and stops (then leaves `hosted`).
        let done = self
            .core()
            .operator_teardown(&fw, now)
            .map_err(operator_status)?;
        self.committed().await?;
        info!(framework_id = %fw, tasks = done.tasks_killed, hosted, "framework torn down by an operator");
        Ok(Response::new(pb::TeardownFrameworkResponse {
            tasks_killed: done.tasks_killed,
            agents: done.agents,
            hosted,
        }))
    }

    async fn set_weights(
        &self,
        request: Request<pb::SetWeightsRequest>,
    ) -> Result<Response<pb::SetWeightsResponse>, Status> {
        self.leading()?;
        let weights = request
            .into_inner()
            .weights
            .into_iter()
            .map(|w| (w.role, w.weight))
            .collect();
        self.core()
            .set_weights(weights)
            .map_err(Status::invalid_argument)?;
        self.committed().await?;
        Ok(Response::new(pb::SetWeightsResponse {}))
    }

    async fn upload_component(
        &self,
        request: Request<Streaming<pb::UploadComponentChunk>>,
    ) -> Result<Response<pb::UploadComponentResponse>, Status> {
        self.leading()?;
        let mut chunks = request.into_inner();
        let limit = self.core().blobs().max_blob_bytes();
        let mut bytes = Vec::new();
        let mut expected = None;
        let mut first = true;
        while let Some(chunk) = chunks.message().await? {
            if first && !chunk.expected_sha256.is_empty() {
                expected =
                    Some(Digest::parse(&chunk.expected_sha256).map_err(|e| blob_status(e.into()))?);
            }
            first = false;
            let size = bytes.len() as u64 + chunk.data.len() as u64;
            if size > limit {
                return Err(blob_status(BlobError::TooLarge { size, limit }));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        self.core().blobs().check(&bytes).map_err(blob_status)?;
        let digest = Digest::of(&bytes);
        if let Some(expected) = expected
            && expected != digest
        {
            return Err(blob_status(BlobError::DigestMismatch {
                expected,
                actual: digest,
            }));
        }
        let size_bytes = bytes.len() as u64;
        self.core()
            .put_component(digest, bytes)
            .map_err(blob_status)?;
        self.committed().await?;
        Ok(Response::new(pb::UploadComponentResponse {
            sha256: digest.to_string(),
            size_bytes,
        }))
    }

    async fn submit_framework(
        &self,
        request: Request<pb::SubmitFrameworkRequest>,
    ) -> Result<Response<pb::SubmitFrameworkResponse>, Status> {
        self.leading()?;
        let r = request.into_inner();
        let info = r
            .info
            .ok_or_else(|| Status::invalid_argument("submit: info is missing"))?;
        if !info.id.is_empty() {
            return Err(Status::invalid_argument(
                "submit: info.id must be empty; the master assigns one",
            ));
        }
        let limits = FrameworkHost::limits_from(r.limits);
        let host = self
            .framework_host()
            .map_err(|e| Status::internal(e.to_string()))?;
        let hosted = host
            .start(self, info, r.args, limits)
            .await
            .map_err(|e| match e {
                HostError::NoComponent => Status::invalid_argument(e.to_string()),
                HostError::Blob(b) => blob_status(b),
                HostError::Engine(_) => Status::internal(e.to_string()),
                HostError::Load(_) | HostError::Instantiate(_) | HostError::Subscribe(_) => {
                    Status::failed_precondition(e.to_string())
                }
            })?;
        let framework_id = hosted.framework_id.clone();
        self.track_hosted(hosted);
        self.committed().await?;
        Ok(Response::new(pb::SubmitFrameworkResponse {
            framework_id: framework_id.to_string(),
        }))
    }

    async fn get_framework_result(
        &self,
        request: Request<pb::GetFrameworkResultRequest>,
    ) -> Result<Response<pb::GetFrameworkResultResponse>, Status> {
        self.leading()?;
        let raw = request.into_inner().framework_id;
        let fw: wasmos_api::FrameworkId = convert::id("framework_id", &raw)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // An outcome is reported only once it is committed: a new leader knows it too.
        self.committed().await?;
        let core = self.core();
        let registered = core.registry().frameworks.contains_key(&fw);
        let (ended, succeeded, result) = match core.framework_outcome(&fw) {
            Some(FrameworkOutcome::Succeeded(r)) => (true, true, r.clone()),
            Some(FrameworkOutcome::Failed(e)) => (true, false, e.clone()),
            None if registered || core.registry().removed_frameworks.contains(&fw) => {
                (false, false, String::new())
            }
            None => return Err(Status::not_found(format!("framework {fw} is not known"))),
        };
        Ok(Response::new(pb::GetFrameworkResultResponse {
            ended,
            succeeded,
            result,
            registered,
        }))
    }

    async fn list_members(
        &self,
        _request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.leading()?;
        Ok(Response::new(self.members()?))
    }

    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.leading()?;
        let r = request.into_inner();
        if r.id == 0 {
            return Err(Status::invalid_argument("master ids start at 1"));
        }
        if !wasmos_api::leader::is_valid_address(&r.address) {
            return Err(Status::invalid_argument(format!(
                "{:?} is not a host:port address",
                r.address
            )));
        }
        let node = self.replication()?;
        if node.members().contains_key(&r.id) {
            return Err(Status::already_exists(format!(
                "master {} is already a member",
                r.id
            )));
        }
        info!(id = r.id, address = %r.address, "adding a master");
        node.add_member(r.id, r.address)
            .await
            .map_err(member_status)?;
        Ok(Response::new(self.members()?))
    }

    async fn remove_member(
        &self,
        request: Request<pb::RemoveMemberRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        self.leading()?;
        let id = request.into_inner().id;
        let node = self.replication()?;
        if !node.members().contains_key(&id) {
            return Err(Status::not_found(format!("master {id} is not a member")));
        }
        if node.voters().len() == 1 && node.voters().contains(&id) {
            return Err(Status::failed_precondition(
                "cannot remove the last voting master",
            ));
        }
        info!(id, "removing a master");
        node.remove_member(id).await.map_err(member_status)?;
        Ok(Response::new(self.members()?))
    }

    async fn set_quota(
        &self,
        request: Request<pb::SetQuotaRequest>,
    ) -> Result<Response<pb::SetQuotaResponse>, Status> {
        self.leading()?;
        let r = request.into_inner();
        let quota = (!r.remove).then(|| Quota {
            guarantee: convert::resources(r.guarantee),
            limit: r.limit.map(Into::into),
        });
        self.core()
            .set_quota(r.role, quota)
            .map_err(Status::invalid_argument)?;
        self.committed().await?;
        Ok(Response::new(pb::SetQuotaResponse {}))
    }
}
