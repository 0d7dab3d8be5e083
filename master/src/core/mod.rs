//! `MasterCore`: the master's logic, driven by calls from the gRPC services and by the timer.
//!
//! It owns the registry (changed only through one `commit` funnel, which also queues each
//! change for Raft when the master is replicated), the allocator, the offer and task books, and
//! one outbound queue per connected scheduler and agent. Every entry point is synchronous and takes the current time, so the whole lifecycle
//! (registration, offers, launches, status updates with acknowledgements, timeouts, failover,
//! reconciliation) runs under one lock without awaiting, and nothing a client sends can leave
//! the books half-updated: input is parsed and validated first, then applied.
//!
//! Outbound queues are bounded; when one is full the event is dropped (updates are resent
//! until acknowledged, offers time out), so a client that stops reading cannot exhaust memory.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, info_span, warn};
use wasmos_api::convert::{self, ConvertError};
use wasmos_api::proto as pb;
use wasmos_api::{
    AgentId, FrameworkId, OfferId, Resources, TaskId, TaskInfo, TaskKind, TaskState, TaskStatus,
};

use crate::allocator::{Allocator, DrfAllocator, Millis, Quota};
use crate::blobs::{BlobError, BlobStore, Digest};
use crate::config::MasterConfig;
use crate::offers::{OfferBook, OfferRecord};
use crate::registry::{
    AgentRecord, AgentState, Command, FrameworkOutcome, FrameworkRecord, FrameworkState, Registry,
    RegistryError, validate_role,
};
use crate::tasks::{TaskBook, TaskRecord};

/// Outbound queue of one scheduler connection.
pub type SchedulerTx = mpsc::Sender<Result<pb::SchedulerEvent, tonic::Status>>;
/// Outbound queue of one agent connection.
pub type AgentTx = mpsc::Sender<Result<pb::MasterMessage, tonic::Status>>;
/// Identifies one stream, so that a stale stream cannot act for a newer one. Unique within
/// the process (across the cores a master builds as it gains and loses the leadership).
pub type ConnId = u64;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Registry commands the core applied and that still have to be replicated, in order.
struct Outbox {
    /// The sequence number of the last command pushed (0: none yet).
    last_seq: u64,
    entries: VecDeque<(u64, Command)>,
    /// Woken when an entry is pushed.
    notify: Arc<Notify>,
}

use pb::master_message::Message as ToAgent;
use pb::scheduler_call::Call;
use pb::scheduler_event::Event;

struct SchedulerConn {
    conn: ConnId,
    tx: SchedulerTx,
}

struct AgentConn {
    conn: ConnId,
    tx: AgentTx,
    last_heartbeat_ms: Millis,
}

/// Why the master sent an update; carried in `TaskStatus.reason`.
mod reason {
    pub const AGENT: &str = "agent";
    pub const RECONCILIATION: &str = "reconciliation";
    pub const AGENT_UNREACHABLE: &str = "agent_unreachable";
    pub const AGENT_REMOVED: &str = "agent_removed";
    pub const AGENT_REREGISTERED: &str = "agent_reregistered";
    pub const INVALID_LAUNCH: &str = "invalid_launch";
    pub const UNKNOWN_TASK: &str = "unknown_task";
}

fn rec_pending_none(tasks: &TaskBook, fw: &FrameworkId, task: &TaskId) -> bool {
    tasks.get(fw, task).is_some_and(|r| r.pending_ack.is_none())
}

/// Number and resources of the non-terminal tasks, by agent or framework.
type LiveTotals<'a, K> = HashMap<&'a K, (u32, Resources)>;

/// Why an operator's kill or teardown was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// No such framework or task.
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit the current state: the task already ended, or its id is
    /// ambiguous.
    #[error("{0}")]
    Conflict(String),
    /// The task's agent is unreachable.
    #[error("{0}")]
    Unavailable(String),
}

/// A kill an operator asked for, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorKill {
    /// The task's framework.
    pub framework: FrameworkId,
    /// The agent the kill was sent to.
    pub agent: AgentId,
    /// The task's state when the kill was sent.
    pub state: TaskState,
}

/// What an operator's teardown removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorTeardown {
    /// Live tasks being killed.
    pub tasks_killed: u32,
    /// Agents told to shut the framework down.
    pub agents: u32,
}

/// Longest framework name or principal accepted.
const MAX_NAME_LEN: usize = 256;
/// Longest failover timeout honoured (one year).
const MAX_FAILOVER_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// The master's state and logic. See the module docs.
pub struct MasterCore {
    config: MasterConfig,
    /// Distinguishes ids minted by this master process.
    epoch: String,
    registry: Registry,
    allocator: Box<dyn Allocator>,
    offers: OfferBook,
    tasks: TaskBook,
    schedulers: HashMap<FrameworkId, SchedulerConn>,
    agents: HashMap<AgentId, AgentConn>,
    /// When each unacknowledged update was last sent.
    unacked: HashMap<(FrameworkId, TaskId), Millis>,
    next_id: u64,
    last_scheduler_heartbeat_ms: Millis,
    /// When `tick` last looked for updates to resend.
    last_resend_scan_ms: Millis,
    wake: Arc<Notify>,
    /// Framework components by digest (an index of the registry's components).
    blobs: BlobStore,
    /// Set when the registry is replicated: every command applied goes here too.
    outbox: Option<Outbox>,
    /// Admitted agents that have not re-registered with this master yet, and when the wait
    /// for them ends (a master that took over from another leader).
    awaiting_agents: HashMap<AgentId, Millis>,
}

impl MasterCore {
    /// A master with an empty registry. `epoch` (unique per master start, e.g. the start time)
    /// prefixes the ids it mints; `wake` is notified when an allocation cycle should run soon.
    pub fn new(config: MasterConfig, epoch: &str, wake: Arc<Notify>) -> Self {
        let allocator = Box::new(DrfAllocator::new(config.allocator));
        let blobs = BlobStore::new(config.max_component_bytes, config.max_blob_store_bytes);
        MasterCore {
            config,
            epoch: epoch.to_string(),
            registry: Registry::default(),
            allocator,
            offers: OfferBook::new(epoch),
            tasks: TaskBook::default(),
            schedulers: HashMap::new(),
            agents: HashMap::new(),
            unacked: HashMap::new(),
            next_id: 0,
            last_scheduler_heartbeat_ms: 0,
            last_resend_scan_ms: 0,
            blobs,
            wake,
            outbox: None,
            awaiting_agents: HashMap::new(),
        }
    }

    /// A master that takes over `registry` (the replicated one, as a new leader sees it).
    /// Components are indexed from it; frameworks are known to the allocator but inactive
    /// until their schedulers subscribe again, and those that were connected start their
    /// failover timeout now; admitted agents that do not re-register within
    /// `agent_reregister_wait` of `now` are marked unreachable (their tasks with them).
    pub fn from_registry(
        config: MasterConfig,
        epoch: &str,
        wake: Arc<Notify>,
        registry: Registry,
        now: Millis,
        agent_reregister_wait: std::time::Duration,
    ) -> Self {
        let mut core = Self::new(config, epoch, wake);
        for (sha256, bytes) in &registry.components {
            match Digest::parse(sha256) {
                Ok(d) => core.blobs.insert_shared(d, bytes.0.clone()),
                Err(e) => {
                    warn!(component = %sha256, error = %e, "a component in the registry has a bad digest")
                }
            }
        }
        let deadline = now.saturating_add(Self::ms(agent_reregister_wait));
        for (id, a) in &registry.agents {
            if a.state == AgentState::Active {
                core.awaiting_agents.insert(id.clone(), deadline);
            }
        }
        for (id, f) in &registry.frameworks {
            if let Err(e) = core.allocator.add_framework(id.clone(), &f.role, false) {
                warn!(framework_id = %id, error = %e, "allocator refused a registered framework");
            }
        }
        core.registry = registry;
        core
    }

    /// Replicates the registry from now on: every command applied is also queued, in order,
    /// for [`MasterCore::take_outbox`], and `notify` is woken.
    pub fn replicate_through(&mut self, notify: Arc<Notify>) {
        self.outbox = Some(Outbox {
            last_seq: 0,
            entries: VecDeque::new(),
            notify,
        });
    }

    /// Marks the frameworks that were connected to a previous leader as disconnected from
    /// `now` (their failover timeout starts), except those whose scheduler the master hosts
    /// (it starts them again itself). Call once on a core built with
    /// [`MasterCore::from_registry`], after [`MasterCore::replicate_through`].
    pub fn start_failover_timeouts(&mut self, now: Millis) {
        let connected: Vec<FrameworkId> = self
            .registry
            .frameworks
            .values()
            .filter(|f| {
                f.state == FrameworkState::Connected && !self.registry.hosted.contains_key(&f.id)
            })
            .map(|f| f.id.clone())
            .collect();
        for id in connected {
            let _ = self.commit(Command::SetFrameworkState {
                id,
                state: FrameworkState::Disconnected { since_ms: now },
            });
        }
    }

    /// The commands applied since the last call, with their sequence numbers, in order.
    pub fn take_outbox(&mut self) -> Vec<(u64, Command)> {
        self.outbox
            .as_mut()
            .map(|o| o.entries.drain(..).collect())
            .unwrap_or_default()
    }

    /// The sequence number of the last command applied (0 when none, or not replicated):
    /// a change is durable once the replicator has committed up to it.
    pub fn outbox_seq(&self) -> u64 {
        self.outbox.as_ref().map_or(0, |o| o.last_seq)
    }

    /// Closes every scheduler and agent stream with `status` (a master that lost the
    /// leadership) and forgets the connections.
    pub fn close_all(&mut self, status: tonic::Status) {
        for (_, c) in self.schedulers.drain() {
            let _ = c.tx.try_send(Err(status.clone()));
        }
        for (_, c) in self.agents.drain() {
            let _ = c.tx.try_send(Err(status.clone()));
        }
    }

    /// The configuration.
    pub fn config(&self) -> &MasterConfig {
        &self.config
    }

    /// The component blob store, read-only.
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Stores a component whose digest the caller computed (outside the lock) with
    /// [`Digest::of`].
    pub fn put_component(&mut self, digest: Digest, bytes: Vec<u8>) -> Result<(), BlobError> {
        self.blobs.insert(digest, bytes)?;
        let shared = self.blobs.get(&digest)?;
        let _ = self.commit(Command::PutComponent {
            sha256: digest.to_string(),
            bytes: crate::registry::BlobBytes(shared),
        });
        info!(component = %digest, store_bytes = self.blobs.used_bytes(), "component stored");
        Ok(())
    }

    /// The registry, read-only.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A fresh connection id.
    pub fn new_conn(&mut self) -> ConnId {
        NEXT_CONN.fetch_add(1, Ordering::Relaxed)
    }

    fn mint(&mut self, kind: &str) -> String {
        self.next_id += 1;
        format!("{kind}-{}-{}", self.epoch, self.next_id)
    }

    /// The one place the registry changes. Applied here at once; when the registry is
    /// replicated the command also joins the outbox, and callers acknowledge the change only
    /// once the replicator has committed it (see `crate::server`).
    fn commit(&mut self, command: Command) -> Result<(), RegistryError> {
        let copy = self.outbox.is_some().then(|| command.clone());
        let result = self.registry.apply(command);
        match &result {
            Err(e) => warn!(error = %e, "registry refused a command"),
            Ok(()) => {
                if let (Some(o), Some(c)) = (self.outbox.as_mut(), copy) {
                    o.last_seq += 1;
                    o.entries.push_back((o.last_seq, c));
                    o.notify.notify_one();
                }
            }
        }
        result
    }

    fn want_allocation(&self) {
        self.wake.notify_one();
    }

    fn ms(d: std::time::Duration) -> Millis {
        d.as_millis().min(u64::MAX as u128) as Millis
    }

    // ----- outbound -----

    fn send_scheduler(&self, fw: &FrameworkId, event: Event) -> bool {
        let Some(conn) = self.schedulers.get(fw) else {
            return false;
        };
        match conn
            .tx
            .try_send(Ok(pb::SchedulerEvent { event: Some(event) }))
        {
            Ok(()) => true,
            Err(e) => {
                debug!(framework_id = %fw, error = %e, "scheduler queue full or closed; event dropped");
                false
            }
        }
    }

    fn send_agent(&self, agent: &AgentId, message: ToAgent) -> bool {
        let Some(conn) = self.agents.get(agent) else {
            return false;
        };
        match conn.tx.try_send(Ok(pb::MasterMessage {
            message: Some(message),
        })) {
            Ok(()) => true,
            Err(e) => {
                debug!(agent_id = %agent, error = %e, "agent queue full or closed; message dropped");
                false
            }
        }
    }

    fn scheduler_error(&self, fw: &FrameworkId, message: String, fatal: bool) {
        self.send_scheduler(
            fw,
            Event::Error(pb::scheduler_event::Error { message, fatal }),
        );
    }

    fn send_update(&mut self, fw: &FrameworkId, status: &TaskStatus, why: &str, now: Millis) {
        let sent = self.send_scheduler(
            fw,
            Event::Update(pb::scheduler_event::Update {
                status: Some(convert::status_to_pb(status, why)),
            }),
        );
        if status.uuid.is_some() {
            // Resent by `tick` until acknowledged, sent or not.
            self.unacked
                .insert((fw.clone(), status.task_id.clone()), now);
        }
        debug!(framework_id = %fw, task_id = %status.task_id, state = %status.state, why, sent, "update");
    }

    fn status_of(rec: &TaskRecord, uuid: Option<String>) -> TaskStatus {
        TaskStatus {
            task_id: rec.id.clone(),
            agent_id: Some(rec.agent.clone()),
            state: rec.state,
            message: rec.message.clone(),
            data: rec.data.clone(),
            uuid,
        }
    }

    fn ack_to_agent(&self, agent: &AgentId, fw: &FrameworkId, task: &TaskId, uuid: &str) {
        self.send_agent(
            agent,
            ToAgent::Acknowledgements(pb::master_message::Acknowledgements {
                acks: vec![pb::master_message::Ack {
                    framework_id: fw.to_string(),
                    task_id: task.to_string(),
                    uuid: uuid.to_string(),
                }],
            }),
        );
    }

    fn kill_on_agent(&self, agent: &AgentId, tasks: Vec<(FrameworkId, TaskId)>) {
        if tasks.is_empty() {
            return;
        }
        let tasks = tasks
            .into_iter()
            .map(|(f, t)| pb::master_message::TaskRef {
                framework_id: f.to_string(),
                task_id: t.to_string(),
            })
            .collect();
        self.send_agent(
            agent,
            ToAgent::KillTasks(pb::master_message::KillTasks { tasks }),
        );
    }

    // ----- schedulers -----

    /// Handles the first call of a scheduler stream. On success the framework is connected
    /// through `tx`; on error the caller sends the message as a fatal error and closes.
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        tx: SchedulerTx,
        info: Option<pb::FrameworkInfo>,
        now: Millis,
    ) -> Result<FrameworkId, String> {
        let info = info.ok_or("subscribe.framework_info is missing")?;
        if info.name.is_empty() || info.name.len() > MAX_NAME_LEN {
            return Err(format!("framework name must be 1..{MAX_NAME_LEN} bytes"));
        }
        if info.principal.len() > MAX_NAME_LEN {
            return Err(format!("principal must be at most {MAX_NAME_LEN} bytes"));
        }
        validate_role(&info.role).map_err(|e| e.to_string())?;
        if let Some(allowed) = &self.config.allowed_roles
            && !allowed.contains(&info.role)
        {
            return Err(format!(
                "role {:?} is not allowed on this cluster",
                info.role
            ));
        }
        let failover = info.failover_timeout_seconds;
        if !failover.is_finite() || failover < 0.0 {
            return Err(format!(
                "failover_timeout_seconds {failover} must be a finite number >= 0"
            ));
        }
        let failover_timeout_ms = (failover.min(MAX_FAILOVER_SECONDS) * 1000.0) as Millis;
        let component_sha256 = if info.component_sha256.is_empty() {
            None
        } else {
            let digest = Digest::parse(&info.component_sha256).map_err(|e| e.to_string())?;
            if !self.blobs.contains(&digest) {
                return Err(BlobError::Unknown(digest).to_string());
            }
            Some(digest.to_string())
        };

        let id = if info.id.is_empty() {
            let id = FrameworkId::new(self.mint("fw")).map_err(|e| e.to_string())?;
            self.commit(Command::AddFramework(FrameworkRecord {
                id: id.clone(),
                name: info.name,
                role: info.role.clone(),
                principal: info.principal,
                failover_timeout_ms,
                state: FrameworkState::Connected,
                component_sha256,
            }))
            .map_err(|e| e.to_string())?;
            if let Err(e) = self.allocator.add_framework(id.clone(), &info.role, true) {
                warn!(framework_id = %id, error = %e, "allocator refused a new framework");
            }
            info!(framework_id = %id, role = %info.role, "framework subscribed");
            id
        } else {
            let id: FrameworkId =
                convert::id("framework_info.id", &info.id).map_err(|e| e.to_string())?;
            let Some(rec) = self.registry.frameworks.get(&id) else {
                return Err(if self.registry.removed_frameworks.contains(&id) {
                    RegistryError::FrameworkTornDown(id).to_string()
                } else {
                    format!("framework {id} is not registered; subscribe without an id")
                });
            };
            if rec.role != info.role {
                return Err(format!(
                    "framework {id} has role {:?}; a re-subscription cannot change it to {:?}",
                    rec.role, info.role
                ));
            }
            if component_sha256.is_some() && component_sha256 != rec.component_sha256 {
                return Err(format!(
                    "framework {id} has component {:?}; a re-subscription cannot change it to \
                     {:?} (subscribe without an id to run a new component)",
                    rec.component_sha256.as_deref().unwrap_or(""),
                    info.component_sha256
                ));
            }
            self.commit(Command::UpdateFramework {
                id: id.clone(),
                name: info.name,
                failover_timeout_ms,
            })
            .map_err(|e| e.to_string())?;
            self.commit(Command::SetFrameworkState {
                id: id.clone(),
                state: FrameworkState::Connected,
            })
            .map_err(|e| e.to_string())?;
            if self.schedulers.contains_key(&id) {
                self.scheduler_error(
                    &id,
                    "another connection subscribed as this framework; this one is closed".into(),
                    true,
                );
                // Its offers were made to the old connection; take them back.
                self.rescind_framework_offers(&id, now, false);
                self.schedulers.remove(&id);
            }
            if self.allocator.set_framework_active(&id, true).is_err() {
                // Registered but not in the allocator (a master that restored its registry).
                if let Err(e) = self.allocator.add_framework(id.clone(), &info.role, true) {
                    warn!(framework_id = %id, error = %e, "allocator refused a framework");
                }
            }
            info!(framework_id = %id, "framework re-subscribed (failover)");
            id
        };
        self.schedulers
            .insert(id.clone(), SchedulerConn { conn, tx });
        self.send_scheduler(
            &id,
            Event::Subscribed(pb::scheduler_event::Subscribed {
                framework_id: id.to_string(),
                heartbeat_interval_seconds: self.config.scheduler_heartbeat_interval.as_secs_f64(),
            }),
        );
        // Everything it has not acknowledged, again.
        let pending: Vec<TaskStatus> = self
            .tasks
            .of_framework(&id)
            .into_iter()
            .filter_map(|r| r.pending_ack.clone().map(|u| Self::status_of(r, Some(u))))
            .collect();
        for status in pending {
            self.send_update(&id, &status, reason::AGENT, now);
        }
        self.want_allocation();
        Ok(id)
    }

    /// Handles one call after `subscribe`. Returns false when the stream should close.
    pub fn scheduler_call(
        &mut self,
        fw: &FrameworkId,
        conn: ConnId,
        call: Option<Call>,
        now: Millis,
    ) -> bool {
        if self.schedulers.get(fw).map(|c| c.conn) != Some(conn) {
            return false;
        }
        let _span = info_span!("scheduler_call", framework_id = %fw).entered();
        match call {
            None => self.scheduler_error(fw, "empty call: set exactly one field".into(), false),
            Some(Call::Subscribe(_)) => self.scheduler_error(
                fw,
                "already subscribed on this stream; open a new stream to re-subscribe".into(),
                false,
            ),
            Some(Call::Accept(accept)) => self.accept(fw, accept, now),
            Some(Call::Decline(d)) => self.decline(fw, d, now),
            Some(Call::Kill(k)) => self.kill(fw, k, now),
            Some(Call::Revive(_)) => {
                if let Err(e) = self.allocator.revive(fw) {
                    warn!(error = %e, "revive");
                }
                self.want_allocation();
            }
            Some(Call::Suppress(_)) => {
                if let Err(e) = self.allocator.suppress(fw) {
                    warn!(error = %e, "suppress");
                }
            }
            Some(Call::Reconcile(r)) => self.reconcile(fw, r, now),
            Some(Call::Acknowledge(a)) => self.acknowledge(fw, a),
            Some(Call::Message(m)) => self.framework_message(fw, m),
            Some(Call::Teardown(_)) => {
                self.remove_framework(fw, now, "the framework tore itself down");
                return false;
            }
        }
        true
    }

    /// Stores a framework's key-value state (`driver.state-put` of a hosted scheduler),
    /// through the registry; refused when a size cap is hit.
    pub fn put_framework_state(
        &mut self,
        fw: &FrameworkId,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), String> {
        self.commit(Command::PutFrameworkState {
            id: fw.clone(),
            key,
            value,
        })
        .map_err(|e| e.to_string())
    }

    /// Ends a framework with `outcome` (its `driver.finish`, or a failure its host saw): the
    /// outcome is recorded in the registry, then the framework is torn down like a
    /// `Teardown` call (tasks killed, executors shut down, resources back in the pool).
    /// Ignored when `conn` is not the framework's current connection.
    pub fn finish_framework(
        &mut self,
        fw: &FrameworkId,
        conn: ConnId,
        outcome: FrameworkOutcome,
        now: Millis,
    ) {
        if self.schedulers.get(fw).map(|c| c.conn) != Some(conn) {
            return;
        }
        let why = match &outcome {
            FrameworkOutcome::Succeeded(_) => "the framework finished".to_string(),
            FrameworkOutcome::Failed(e) => format!("the framework failed: {e}"),
        };
        let _ = self.commit(Command::RecordOutcome {
            id: fw.clone(),
            outcome,
        });
        self.remove_framework(fw, now, &why);
    }

    /// Fails a framework whose scheduler could not be started again (a new leader): records
    /// `why` as its outcome and tears it down.
    pub fn fail_framework(&mut self, fw: &FrameworkId, why: String, now: Millis) {
        if !self.registry.frameworks.contains_key(fw) {
            return;
        }
        let _ = self.commit(Command::RecordOutcome {
            id: fw.clone(),
            outcome: FrameworkOutcome::Failed(why.clone()),
        });
        self.remove_framework(fw, now, &why);
    }

    /// Records how the master hosts `fw`'s scheduler, so that a new leader can start it again.
    pub fn set_hosted(
        &mut self,
        fw: &FrameworkId,
        spec: crate::registry::HostedSpec,
    ) -> Result<(), String> {
        self.commit(Command::SetHosted {
            id: fw.clone(),
            spec,
        })
        .map_err(|e| e.to_string())
    }

    /// How a framework ended, once it has (see [`MasterCore::finish_framework`]).
    pub fn framework_outcome(&self, fw: &FrameworkId) -> Option<&FrameworkOutcome> {
        self.registry.outcomes.get(fw)
    }

    /// The scheduler's stream ended. Its offers are rescinded and the failover timeout starts.
    pub fn scheduler_disconnected(&mut self, fw: &FrameworkId, conn: ConnId, now: Millis) {
        if self.schedulers.get(fw).map(|c| c.conn) != Some(conn) {
            return;
        }
        self.schedulers.remove(fw);
        info!(framework_id = %fw, "framework disconnected");
        let _ = self.commit(Command::SetFrameworkState {
            id: fw.clone(),
            state: FrameworkState::Disconnected { since_ms: now },
        });
        if let Err(e) = self.allocator.set_framework_active(fw, false) {
            warn!(framework_id = %fw, error = %e, "deactivating");
        }
        self.rescind_framework_offers(fw, now, false);
        let timeout = self
            .registry
            .frameworks
            .get(fw)
            .map(|r| r.failover_timeout_ms);
        if timeout == Some(0) {
            self.remove_framework(fw, now, "disconnected with a zero failover timeout");
        }
    }

    fn rescind_framework_offers(&mut self, fw: &FrameworkId, now: Millis, notify: bool) {
        for o in self.offers.remove_for_framework(fw) {
            if let Err(e) = self.allocator.recover(fw, &o.agent, o.resources, 0, now) {
                warn!(framework_id = %fw, agent_id = %o.agent, error = %e, "recovering an offer");
            }
            if notify {
                self.send_scheduler(
                    fw,
                    Event::Rescind(pb::scheduler_event::Rescind {
                        offer_id: o.id.to_string(),
                    }),
                );
            }
        }
        self.want_allocation();
    }

    fn accept(&mut self, fw: &FrameworkId, accept: pb::scheduler_call::Accept, now: Millis) {
        let filters = convert::filters(accept.filters);
        let mut problems: Vec<String> = Vec::new();
        let mut offers: Vec<OfferRecord> = Vec::new();
        let mut seen = HashSet::new();
        if accept.offer_ids.is_empty() {
            problems.push("accept lists no offer ids".into());
        }
        for raw in &accept.offer_ids {
            let id: OfferId = match convert::id("accept.offer_ids", raw) {
                Ok(id) => id,
                Err(e) => {
                    problems.push(e.to_string());
                    continue;
                }
            };
            if !seen.insert(id.clone()) {
                problems.push(format!("offer {id} is listed twice"));
                continue;
            }
            match self.offers.get(&id) {
                Some(o) if &o.framework == fw => offers.extend(self.offers.remove(&id)),
                Some(_) => problems.push(format!("offer {id} was not made to this framework")),
                None => problems.push(format!(
                    "offer {id} is unknown or no longer valid (used, declined or rescinded)"
                )),
            }
        }
        let agent = offers.first().map(|o| o.agent.clone());
        if offers.iter().any(|o| Some(&o.agent) != agent.as_ref()) {
            problems
                .push("the offers are of more than one agent; accept one agent's at a time".into());
        }
        let offered = offers
            .iter()
            .try_fold(Resources::ZERO, |acc, o| acc.checked_add(&o.resources))
            .unwrap_or(Resources::ZERO);

        // Parse and check the tasks.
        let role = self
            .registry
            .frameworks
            .get(fw)
            .map(|r| r.role.clone())
            .unwrap_or_default();
        let mut tasks: Vec<TaskInfo> = Vec::new();
        let mut unparsed_ids: Vec<TaskId> = Vec::new();
        let mut ids = HashSet::new();
        for t in accept.launches {
            let raw_id = t.task_id.clone();
            match TaskInfo::try_from(t) {
                Ok(task) => {
                    if !ids.insert(task.task_id.clone()) {
                        problems.push(format!(
                            "task id {} is used twice in this launch",
                            task.task_id
                        ));
                    } else if let Some(old) = self.tasks.get(fw, &task.task_id) {
                        problems.push(format!(
                            "task id {} is already used by a task that is {}",
                            task.task_id, old.state
                        ));
                    }
                    if let Some(a) = &agent
                        && &task.agent_id != a
                    {
                        problems.push(format!(
                            "task {} names agent {} but the offers are of agent {a}",
                            task.task_id, task.agent_id
                        ));
                    }
                    if matches!(task.kind, TaskKind::Command { .. })
                        && let Some(allowed) = &self.config.command_task_roles
                        && !allowed.contains(&role)
                    {
                        problems.push(format!(
                            "task {}: role {role:?} may not run native command tasks",
                            task.task_id
                        ));
                    }
                    tasks.push(task);
                }
                Err(e) => {
                    problems.push(match &e {
                        ConvertError::Spec(_) => e.to_string(),
                        _ => format!("task {raw_id:?}: {e}"),
                    });
                    unparsed_ids.extend(TaskId::new(raw_id).ok());
                }
            }
        }
        let needed = tasks
            .iter()
            .try_fold(Resources::ZERO, |acc, t| acc.checked_add(&t.resources));
        let remainder = match &needed {
            Ok(n) => offered
                .checked_sub(n)
                .map_err(|e| format!("the tasks need {n} but the offers hold {offered} ({e})")),
            Err(e) => Err(format!(
                "the tasks' resources add up beyond what can be counted: {e}"
            )),
        };
        let remainder = match remainder {
            Ok(r) => r,
            Err(p) => {
                if problems.is_empty() || !offers.is_empty() {
                    problems.push(p);
                }
                Resources::ZERO
            }
        };

        if !problems.is_empty() {
            let why = format!("launch refused: {}", problems.join("; "));
            info!(framework_id = %fw, %why, "invalid launch");
            for o in &offers {
                if let Err(e) = self.allocator.recover(fw, &o.agent, o.resources, 0, now) {
                    warn!(framework_id = %fw, agent_id = %o.agent, error = %e, "recovering an offer");
                }
            }
            let ids: BTreeSet<TaskId> = tasks
                .iter()
                .map(|t| t.task_id.clone())
                .chain(unparsed_ids)
                .collect();
            for task_id in &ids {
                let status = TaskStatus {
                    task_id: task_id.clone(),
                    agent_id: agent.clone(),
                    state: TaskState::Error,
                    message: why.clone(),
                    data: None,
                    uuid: None,
                };
                self.send_update(fw, &status, reason::INVALID_LAUNCH, now);
            }
            if ids.is_empty() {
                self.scheduler_error(fw, why, false);
            }
            self.want_allocation();
            return;
        }
        let Some(agent) = agent else { return };
        if !remainder.is_zero()
            && let Err(e) = self
                .allocator
                .recover(fw, &agent, remainder, filters.refuse_ms(), now)
        {
            warn!(framework_id = %fw, agent_id = %agent, error = %e, "recovering the unused remainder");
        }
        if tasks.is_empty() {
            return; // An accept without launches is a decline.
        }
        if !self.agents.contains_key(&agent) {
            // The agent went away between offer and accept (its offers would have been
            // rescinded, so this is a race); the tasks are lost.
            for t in tasks {
                let _ = self.allocator.recover(fw, &agent, t.resources, 0, now);
                let status = TaskStatus {
                    task_id: t.task_id,
                    agent_id: Some(agent.clone()),
                    state: TaskState::Lost,
                    message: format!("agent {agent} disconnected before the launch reached it"),
                    data: None,
                    uuid: None,
                };
                self.send_update(fw, &status, reason::AGENT_UNREACHABLE, now);
            }
            return;
        }
        let (role, component_sha256) = self
            .registry
            .frameworks
            .get(fw)
            .map(|f| {
                (
                    f.role.clone(),
                    f.component_sha256.clone().unwrap_or_default(),
                )
            })
            .unwrap_or_default();
        for t in &tasks {
            let _span =
                info_span!("launch", framework_id = %fw, agent_id = %agent, task_id = %t.task_id)
                    .entered();
            let inserted = self.tasks.insert(TaskRecord {
                framework: fw.clone(),
                id: t.task_id.clone(),
                name: t.name.clone(),
                agent: agent.clone(),
                resources: t.resources,
                state: TaskState::Staging,
                message: String::new(),
                data: None,
                updated_ms: now,
                pending_ack: None,
            });
            if let Err(e) = inserted {
                warn!(error = %e, "task book refused a validated task");
            } else {
                info!("task staged");
            }
        }
        self.send_agent(
            &agent,
            ToAgent::RunTasks(pb::master_message::RunTasks {
                framework_id: fw.to_string(),
                tasks: tasks.iter().map(pb::TaskInfo::from).collect(),
                role,
                component_sha256,
            }),
        );
    }

    fn decline(&mut self, fw: &FrameworkId, d: pb::scheduler_call::Decline, now: Millis) {
        let refuse_ms = convert::filters(d.filters).refuse_ms();
        for raw in d.offer_ids {
            let Ok(id) = convert::id::<OfferId>("decline.offer_ids", &raw) else {
                continue;
            };
            if self.offers.get(&id).map(|o| &o.framework) != Some(fw) {
                continue; // Unknown (rescinded, used) or someone else's: nothing to do.
            }
            if let Some(o) = self.offers.remove(&id)
                && let Err(e) = self
                    .allocator
                    .recover(fw, &o.agent, o.resources, refuse_ms, now)
            {
                warn!(framework_id = %fw, agent_id = %o.agent, error = %e, "recovering a declined offer");
            }
        }
        self.want_allocation();
    }

    fn kill(&mut self, fw: &FrameworkId, k: pb::scheduler_call::Kill, now: Millis) {
        let task: TaskId = match convert::id("kill.task_id", &k.task_id) {
            Ok(t) => t,
            Err(e) => return self.scheduler_error(fw, e.to_string(), false),
        };
        match self.tasks.get(fw, &task) {
            Some(rec) if rec.state.is_terminal() => {}
            Some(rec) => {
                let agent = rec.agent.clone();
                if !self.agents.contains_key(&agent) {
                    info!(framework_id = %fw, task_id = %task, agent_id = %agent,
                        "kill not delivered: the agent is unreachable; reconcile once it returns");
                }
                self.kill_on_agent(&agent, vec![(fw.clone(), task)]);
            }
            None => {
                let status = TaskStatus {
                    task_id: task.clone(),
                    agent_id: convert::opt_id("kill.agent_id", &k.agent_id).ok().flatten(),
                    state: TaskState::Lost,
                    message: format!("task {task} is not known to the master"),
                    data: None,
                    uuid: None,
                };
                self.send_update(fw, &status, reason::UNKNOWN_TASK, now);
            }
        }
    }

    fn reconcile(&mut self, fw: &FrameworkId, r: pb::scheduler_call::Reconcile, now: Millis) {
        let mut answers: Vec<(TaskStatus, &'static str)> = Vec::new();
        if r.tasks.is_empty() {
            for rec in self.tasks.of_framework(fw) {
                answers.push((Self::status_of(rec, None), reason::RECONCILIATION));
            }
        } else {
            for t in r.tasks {
                let task: TaskId = match convert::id("reconcile.tasks.task_id", &t.task_id) {
                    Ok(id) => id,
                    Err(e) => {
                        self.scheduler_error(fw, e.to_string(), false);
                        continue;
                    }
                };
                match self.tasks.get(fw, &task) {
                    Some(rec) => answers.push((Self::status_of(rec, None), reason::RECONCILIATION)),
                    None => answers.push((
                        TaskStatus {
                            agent_id: convert::opt_id("reconcile.tasks.agent_id", &t.agent_id)
                                .ok()
                                .flatten(),
                            task_id: task,
                            state: TaskState::Lost,
                            message: "the master does not know this task".into(),
                            data: None,
                            uuid: None,
                        },
                        reason::UNKNOWN_TASK,
                    )),
                }
            }
        }
        for (status, why) in answers {
            self.send_update(fw, &status, why, now);
        }
    }

    fn acknowledge(&mut self, fw: &FrameworkId, a: pb::scheduler_call::Acknowledge) {
        if let Some((agent, ack)) = self.take_ack(fw, a) {
            self.send_agent(
                &agent,
                ToAgent::Acknowledgements(pb::master_message::Acknowledgements { acks: vec![ack] }),
            );
        }
    }

    /// Acknowledgements from a scheduler, each handled as an `Acknowledge` call, but passed on
    /// in one message per agent (a hosted scheduler acknowledges a burst of updates at once).
    /// Returns false when `conn` is not the framework's current connection.
    pub fn acknowledge_many(
        &mut self,
        fw: &FrameworkId,
        conn: ConnId,
        acks: Vec<pb::scheduler_call::Acknowledge>,
    ) -> bool {
        if self.schedulers.get(fw).map(|c| c.conn) != Some(conn) {
            return false;
        }
        let mut per_agent: HashMap<AgentId, Vec<pb::master_message::Ack>> = HashMap::new();
        for a in acks {
            if let Some((agent, ack)) = self.take_ack(fw, a) {
                per_agent.entry(agent).or_default().push(ack);
            }
        }
        for (agent, acks) in per_agent {
            self.send_agent(
                &agent,
                ToAgent::Acknowledgements(pb::master_message::Acknowledgements { acks }),
            );
        }
        true
    }

    /// Applies one acknowledgement to the books; returns the agent to tell and what to tell
    /// it, or `None` for a stale or unknown one.
    fn take_ack(
        &mut self,
        fw: &FrameworkId,
        a: pb::scheduler_call::Acknowledge,
    ) -> Option<(AgentId, pb::master_message::Ack)> {
        let Ok(task) = convert::id::<TaskId>("acknowledge.task_id", &a.task_id) else {
            self.scheduler_error(
                fw,
                format!("acknowledge: bad task id {:?}", a.task_id),
                false,
            );
            return None;
        };
        let rec = self.tasks.get_mut(fw, &task)?;
        if a.uuid.is_empty() || rec.pending_ack.as_deref() != Some(a.uuid.as_str()) {
            debug!(framework_id = %fw, task_id = %task, "stale or unknown acknowledgement ignored");
            return None;
        }
        rec.pending_ack = None;
        let (agent, terminal) = (rec.agent.clone(), rec.state.is_terminal());
        self.unacked.remove(&(fw.clone(), task.clone()));
        if terminal {
            self.tasks.remove(fw, &task);
        }
        Some((
            agent,
            pb::master_message::Ack {
                framework_id: fw.to_string(),
                task_id: a.task_id,
                uuid: a.uuid,
            },
        ))
    }

    fn framework_message(&mut self, fw: &FrameworkId, m: pb::scheduler_call::FrameworkMessage) {
        let agent: AgentId = match convert::id("message.agent_id", &m.agent_id) {
            Ok(a) => a,
            Err(e) => return self.scheduler_error(fw, e.to_string(), false),
        };
        if m.data.len() > wasmos_api::launch::MAX_PAYLOAD_BYTES {
            return self.scheduler_error(fw, "message: data is larger than 4 MiB".into(), false);
        }
        let sent = self.send_agent(
            &agent,
            ToAgent::FrameworkMessage(pb::master_message::FrameworkMessage {
                framework_id: fw.to_string(),
                executor_id: m.executor_id,
                data: m.data,
            }),
        );
        if !sent {
            self.scheduler_error(
                fw,
                format!("message: agent {agent} is not connected"),
                false,
            );
        }
    }

    /// Removes a framework for good: kills its tasks, drops its offers, forgets it.
    fn remove_framework(&mut self, fw: &FrameworkId, now: Millis, why: &str) {
        info!(framework_id = %fw, why, "removing framework");
        self.offers.remove_for_framework(fw);
        let tasks: Vec<(TaskId, AgentId)> = self
            .tasks
            .of_framework(fw)
            .iter()
            .map(|r| (r.id.clone(), r.agent.clone()))
            .collect();
        let agents: BTreeSet<AgentId> = tasks.iter().map(|(_, a)| a.clone()).collect();
        for agent in agents {
            self.send_agent(
                &agent,
                ToAgent::ShutdownFramework(pb::master_message::ShutdownFramework {
                    framework_id: fw.to_string(),
                }),
            );
        }
        for (task, _) in tasks {
            self.tasks.remove(fw, &task);
            self.unacked.remove(&(fw.clone(), task));
        }
        if let Err(e) = self.allocator.remove_framework(fw) {
            warn!(framework_id = %fw, error = %e, "allocator");
        }
        let _ = self.commit(Command::RemoveFramework { id: fw.clone() });
        if self.schedulers.contains_key(fw) {
            self.scheduler_error(fw, format!("framework removed: {why}"), true);
            self.schedulers.remove(fw);
        }
        let _ = now;
        self.want_allocation();
    }

    // ----- agents -----

    /// Handles the first message of an agent stream (register or re-register).
    pub fn agent_register(
        &mut self,
        conn: ConnId,
        tx: AgentTx,
        reg: pb::agent_message::Register,
        now: Millis,
    ) -> Result<AgentId, String> {
        let info = reg.info.ok_or("register.info is missing")?;
        if info.hostname.len() > MAX_NAME_LEN || info.address.len() > MAX_NAME_LEN {
            return Err(format!(
                "hostname and address must be at most {MAX_NAME_LEN} bytes"
            ));
        }
        let id: AgentId = if info.id.is_empty() {
            AgentId::new(self.mint("agent")).map_err(|e| e.to_string())?
        } else {
            convert::id("register.info.id", &info.id).map_err(|e| e.to_string())?
        };
        let total = convert::resources(info.resources);
        let max = wasmos_api::launch::MAX_RESOURCE;
        if total.millicpus > max || total.mem_mb > max || total.disk_mb > max {
            return Err(format!(
                "agent resources {total} exceed the per-resource limit {max}"
            ));
        }
        // Parse the reported tasks before changing anything.
        let mut reported: Vec<(FrameworkId, TaskInfo, TaskState)> = Vec::new();
        for t in reg.tasks {
            let parsed = (|| -> Result<_, ConvertError> {
                let fw: FrameworkId = convert::id("register.tasks.framework_id", &t.framework_id)?;
                let task = TaskInfo::try_from(t.task.ok_or(ConvertError::Missing {
                    field: "register.tasks.task",
                })?)?;
                let state = convert::task_state("register.tasks.state", t.state)?;
                Ok((fw, task, state))
            })();
            match parsed {
                Ok(p) => reported.push(p),
                Err(e) => return Err(format!("a reported task is malformed: {e}")),
            }
        }
        let _span = info_span!("agent_register", agent_id = %id).entered();

        // A previous session of this agent: detach it completely, then attach afresh.
        if let Some(old) = self.agents.remove(&id) {
            let _ = old.tx.try_send(Err(tonic::Status::aborted(
                "the agent re-registered on another connection",
            )));
        }
        self.detach_agent_resources(&id, now);
        self.awaiting_agents.remove(&id);
        self.commit(Command::AdmitAgent(AgentRecord {
            id: id.clone(),
            hostname: info.hostname,
            address: info.address,
            resources: total,
            attributes: convert::attributes(info.attributes),
            state: AgentState::Active,
        }))
        .map_err(|e| e.to_string())?;
        if let Err(e) = self.allocator.add_agent(id.clone(), total) {
            warn!(error = %e, "allocator refused an agent");
            return Err(e.to_string());
        }
        self.agents.insert(
            id.clone(),
            AgentConn {
                conn,
                tx,
                last_heartbeat_ms: now,
            },
        );

        // Reconcile what the agent runs with what the master believes. The agent is
        // authoritative for what runs; the master for which frameworks exist.
        let mut reported_keys = HashSet::new();
        let mut to_kill: Vec<(FrameworkId, TaskId)> = Vec::new();
        for (fw, task, state) in reported {
            if !reported_keys.insert((fw.clone(), task.task_id.clone())) {
                continue; // Reported twice; count it once.
            }
            if !self.registry.frameworks.contains_key(&fw) {
                to_kill.push((fw, task.task_id));
                continue;
            }
            let changed = match self.tasks.get(&fw, &task.task_id) {
                Some(rec) if rec.agent != id => {
                    warn!(framework_id = %fw, task_id = %task.task_id, "task reported by a second agent; killing this copy");
                    to_kill.push((fw, task.task_id));
                    continue;
                }
                Some(rec) if rec.state.is_terminal() => {
                    // The master already reported it over; make it so.
                    if !state.is_terminal() {
                        to_kill.push((fw, task.task_id));
                    }
                    continue;
                }
                Some(rec) => {
                    let old = rec.state;
                    old != state
                        && self
                            .tasks
                            .update(&fw, &task.task_id, state, String::new(), None, now)
                            .is_ok()
                }
                None if state.is_terminal() => continue, // Its own status update will say so.
                None => {
                    let _ = self.tasks.insert(TaskRecord {
                        framework: fw.clone(),
                        id: task.task_id.clone(),
                        name: task.name.clone(),
                        agent: id.clone(),
                        resources: task.resources,
                        state,
                        message: "reported by its agent on re-registration".into(),
                        data: None,
                        updated_ms: now,
                        pending_ack: None,
                    });
                    true
                }
            };
            let Some(rec) = self.tasks.get(&fw, &task.task_id) else {
                continue;
            };
            let (status, resources) = (Self::status_of(rec, None), rec.resources);
            if !status.state.is_terminal()
                && let Err(e) = self.allocator.add_used(&fw, &id, resources)
            {
                warn!(framework_id = %fw, task_id = %task.task_id, error = %e, "counting a reported task");
            }
            if changed {
                self.send_update(&fw, &status, reason::AGENT_REREGISTERED, now);
            }
            if status.state.is_terminal() && rec_pending_none(&self.tasks, &fw, &task.task_id) {
                // Reported over on re-registration; no acknowledgement will come for it.
                self.tasks.remove(&fw, &task.task_id);
            }
        }
        // Tasks the master placed here that the agent no longer has are lost.
        let missing: Vec<(FrameworkId, TaskId)> = self
            .tasks
            .on_agent(&id)
            .into_iter()
            .filter(|r| !r.state.is_terminal())
            .map(|r| (r.framework.clone(), r.id.clone()))
            .filter(|k| !reported_keys.contains(k))
            .collect();
        for (fw, task) in missing {
            // Not counted: the allocator's view of this agent was rebuilt from its report.
            let why = "its agent re-registered without it";
            self.lose_task(&fw, &task, why, reason::AGENT_REREGISTERED, false, now);
        }
        self.send_agent(
            &id,
            ToAgent::Registered(pb::master_message::Registered {
                agent_id: id.to_string(),
                heartbeat_interval_seconds: self.config.agent_heartbeat_interval.as_secs_f64(),
            }),
        );
        self.kill_on_agent(&id, to_kill);
        info!(resources = %total, "agent registered");
        self.want_allocation();
        Ok(id)
    }

    /// Marks a task LOST, tells its framework, and forgets it (master-generated: no ack).
    /// `counted` says whether the allocator still counts the task's resources on its agent.
    fn lose_task(
        &mut self,
        fw: &FrameworkId,
        task: &TaskId,
        why: &str,
        reason: &str,
        counted: bool,
        now: Millis,
    ) {
        let Some(rec) = self.tasks.remove(fw, task) else {
            return;
        };
        self.unacked.remove(&(fw.clone(), task.clone()));
        let status = TaskStatus {
            task_id: task.clone(),
            agent_id: Some(rec.agent.clone()),
            state: TaskState::Lost,
            message: why.to_string(),
            data: None,
            uuid: None,
        };
        if counted && !rec.state.is_terminal() {
            let _ = self
                .allocator
                .recover(fw, &rec.agent, rec.resources, 0, now);
        }
        self.send_update(fw, &status, reason, now);
    }

    /// Rescinds an agent's offers and takes it out of the allocator (if it is in it).
    fn detach_agent_resources(&mut self, agent: &AgentId, now: Millis) {
        for o in self.offers.remove_for_agent(agent) {
            let _ = self
                .allocator
                .recover(&o.framework, agent, o.resources, 0, now);
            self.send_scheduler(
                &o.framework,
                Event::Rescind(pb::scheduler_event::Rescind {
                    offer_id: o.id.to_string(),
                }),
            );
        }
        if self.allocator.agent_available(agent).is_some()
            && let Err(e) = self.allocator.remove_agent(agent)
        {
            warn!(agent_id = %agent, error = %e, "allocator");
        }
    }

    /// Handles a message after registration. Returns false when the stream should close.
    pub fn agent_message(
        &mut self,
        agent: &AgentId,
        conn: ConnId,
        message: Option<pb::agent_message::Message>,
        now: Millis,
    ) -> bool {
        use pb::agent_message::Message as FromAgent;
        let Some(c) = self.agents.get_mut(agent) else {
            return false;
        };
        if c.conn != conn {
            return false;
        }
        c.last_heartbeat_ms = now;
        match message {
            None | Some(FromAgent::Heartbeat(_)) => {}
            Some(FromAgent::Register(_)) => {
                self.send_agent(
                    agent,
                    ToAgent::Error(pb::master_message::Error {
                        message: "already registered on this stream; open a new one to re-register"
                            .into(),
                        fatal: false,
                    }),
                );
            }
            Some(FromAgent::StatusUpdates(batch)) => {
                for u in batch.updates {
                    self.agent_status(agent, u, now);
                }
            }
            Some(FromAgent::ExecutorMessage(m)) => {
                if let Ok(fw) =
                    convert::id::<FrameworkId>("executor_message.framework_id", &m.framework_id)
                    && m.data.len() <= wasmos_api::launch::MAX_PAYLOAD_BYTES
                {
                    self.send_scheduler(
                        &fw,
                        Event::Message(pb::scheduler_event::FrameworkMessage {
                            agent_id: agent.to_string(),
                            executor_id: m.executor_id,
                            data: m.data,
                        }),
                    );
                }
            }
        }
        true
    }

    fn agent_status(&mut self, agent: &AgentId, u: pb::AgentStatusUpdate, now: Millis) {
        let parsed = (|| -> Result<(FrameworkId, TaskStatus), ConvertError> {
            let fw = convert::id("update.framework_id", &u.framework_id)?;
            let status = TaskStatus::try_from(u.status.ok_or(ConvertError::Missing {
                field: "update.status",
            })?)?;
            Ok((fw, status))
        })();
        let (fw, mut status) = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.send_agent(
                    agent,
                    ToAgent::Error(pb::master_message::Error {
                        message: format!("status update refused: {e}"),
                        fatal: false,
                    }),
                );
                return;
            }
        };
        let _span = info_span!("status_update", framework_id = %fw, agent_id = %agent, task_id = %status.task_id).entered();
        let Some(uuid) = status.uuid.clone() else {
            self.send_agent(
                agent,
                ToAgent::Error(pb::master_message::Error {
                    message: format!(
                        "status update for task {} has no uuid; agents must set one",
                        status.task_id
                    ),
                    fatal: false,
                }),
            );
            return;
        };
        status.agent_id = Some(agent.clone());
        let task = status.task_id.clone();
        if !self.registry.frameworks.contains_key(&fw) {
            // Its framework is gone: acknowledge so the agent stops resending, and make sure
            // the task dies.
            self.ack_to_agent(agent, &fw, &task, &uuid);
            if !status.state.is_terminal() {
                self.kill_on_agent(agent, vec![(fw, task)]);
            }
            return;
        }
        match self.tasks.get(&fw, &task) {
            None => {
                warn!("update for a task the master does not know; acknowledged and dropped");
                self.ack_to_agent(agent, &fw, &task, &uuid);
                if !status.state.is_terminal() {
                    self.kill_on_agent(agent, vec![(fw, task)]);
                }
                return;
            }
            Some(rec) if &rec.agent != agent => {
                warn!(owner = %rec.agent, "update from an agent that does not run the task; ignored");
                return;
            }
            Some(rec) if rec.pending_ack.as_deref() == Some(uuid.as_str()) => {
                // A resend of what the framework has not acknowledged yet: forward again.
                let status = Self::status_of(rec, Some(uuid));
                self.send_update(&fw, &status, reason::AGENT, now);
                return;
            }
            Some(_) => {}
        }
        let updated = self.tasks.update(
            &fw,
            &task,
            status.state,
            status.message.clone(),
            status.data.clone(),
            now,
        );
        let (old, resources) = match updated {
            Ok((old, rec)) => {
                rec.pending_ack = Some(uuid.clone());
                (old, rec.resources)
            }
            Err(e) => {
                // The agent reports something impossible; drop it so it stops resending.
                warn!(error = %e, "refused status update");
                self.ack_to_agent(agent, &fw, &task, &uuid);
                return;
            }
        };
        if !old.is_terminal() && status.state.is_terminal() {
            if let Err(e) = self.allocator.recover(&fw, agent, resources, 0, now) {
                warn!(error = %e, "recovering a finished task's resources");
            }
            self.want_allocation();
        }
        self.send_update(&fw, &status, reason::AGENT, now);
    }

    /// The agent's stream ended: it is unreachable until it re-registers.
    pub fn agent_disconnected(&mut self, agent: &AgentId, conn: ConnId, now: Millis) {
        if self.agents.get(agent).map(|c| c.conn) != Some(conn) {
            return;
        }
        self.mark_unreachable(agent, now, "its connection closed");
    }

    fn mark_unreachable(&mut self, agent: &AgentId, now: Millis, why: &str) {
        info!(agent_id = %agent, why, "agent unreachable");
        self.agents.remove(agent);
        let _ = self.commit(Command::MarkAgentUnreachable {
            id: agent.clone(),
            since_ms: now,
        });
        self.detach_agent_resources(agent, now);
        let tasks: Vec<(FrameworkId, TaskId)> = self
            .tasks
            .on_agent(agent)
            .into_iter()
            .filter(|r| !r.state.is_terminal())
            .map(|r| (r.framework.clone(), r.id.clone()))
            .collect();
        let mut frameworks = BTreeSet::new();
        for (fw, task) in tasks {
            let message = format!("agent {agent} is unreachable: {why}");
            let Ok((_, rec)) =
                self.tasks
                    .update(&fw, &task, TaskState::Unreachable, message, None, now)
            else {
                continue;
            };
            let status = Self::status_of(rec, None);
            self.send_update(&fw, &status, reason::AGENT_UNREACHABLE, now);
            frameworks.insert(fw);
        }
        for fw in frameworks {
            self.send_scheduler(
                &fw,
                Event::Failure(pb::scheduler_event::Failure {
                    agent_id: agent.to_string(),
                    executor_id: String::new(),
                    message: format!("agent {agent} is unreachable: {why}"),
                }),
            );
        }
    }

    fn remove_agent(&mut self, agent: &AgentId, now: Millis) {
        info!(agent_id = %agent, "agent removed after its re-registration timeout");
        let tasks: Vec<(FrameworkId, TaskId)> = self
            .tasks
            .on_agent(agent)
            .into_iter()
            .map(|r| (r.framework.clone(), r.id.clone()))
            .collect();
        for (fw, task) in tasks {
            let why = format!("agent {agent} did not come back in time and was removed");
            // Not counted: the agent left the allocator when it became unreachable.
            self.lose_task(&fw, &task, &why, reason::AGENT_REMOVED, false, now);
        }
        let _ = self.commit(Command::RemoveAgent { id: agent.clone() });
    }

    // ----- time -----

    /// Runs timeouts: offers, agent heartbeats and removal, framework failover, update resends,
    /// scheduler heartbeats. Call it often (every allocation interval is fine).
    pub fn tick(&mut self, now: Millis) {
        for o in self.offers.remove_expired(now) {
            let _ = self
                .allocator
                .recover(&o.framework, &o.agent, o.resources, 0, now);
            self.send_scheduler(
                &o.framework,
                Event::Rescind(pb::scheduler_event::Rescind {
                    offer_id: o.id.to_string(),
                }),
            );
            self.want_allocation();
        }

        let unreachable_after = Self::ms(self.config.agent_unreachable_timeout);
        let silent: Vec<AgentId> = self
            .agents
            .iter()
            .filter(|(_, c)| now.saturating_sub(c.last_heartbeat_ms) > unreachable_after)
            .map(|(id, _)| id.clone())
            .collect();
        for agent in silent {
            self.mark_unreachable(&agent, now, "it missed its heartbeats");
        }

        if !self.awaiting_agents.is_empty() {
            let late: Vec<AgentId> = self
                .awaiting_agents
                .iter()
                .filter(|(_, deadline)| now >= **deadline)
                .map(|(id, _)| id.clone())
                .collect();
            for agent in late {
                self.awaiting_agents.remove(&agent);
                info!(agent_id = %agent, "agent did not re-register with the new leader in time");
                let _ = self.commit(Command::MarkAgentUnreachable {
                    id: agent,
                    since_ms: now,
                });
            }
        }

        let removal_after = Self::ms(self.config.agent_removal_timeout);
        let gone: Vec<AgentId> = self
            .registry
            .agents
            .values()
            .filter_map(|a| match a.state {
                AgentState::Unreachable { since_ms }
                    if now.saturating_sub(since_ms) > removal_after =>
                {
                    Some(a.id.clone())
                }
                _ => None,
            })
            .collect();
        for agent in gone {
            self.remove_agent(&agent, now);
        }

        let expired: Vec<FrameworkId> = self
            .registry
            .frameworks
            .values()
            .filter_map(|f| match f.state {
                FrameworkState::Disconnected { since_ms }
                    if now.saturating_sub(since_ms) >= f.failover_timeout_ms =>
                {
                    Some(f.id.clone())
                }
                _ => None,
            })
            .collect();
        for fw in expired {
            self.remove_framework(&fw, now, "its failover timeout passed");
        }

        let resend_after = Self::ms(self.config.update_resend_interval);
        // The scan costs one step per update in flight and `tick` runs after every allocation
        // wake-up (thousands a second under load): look at most every tenth of the interval.
        let due: Vec<(FrameworkId, TaskId)> = if now.saturating_sub(self.last_resend_scan_ms)
            >= resend_after / 10
        {
            self.last_resend_scan_ms = now;
            self.unacked
                .iter()
                .filter(|(k, at)| {
                    now.saturating_sub(**at) >= resend_after && self.schedulers.contains_key(&k.0)
                })
                .map(|(k, _)| k.clone())
                .collect()
        } else {
            Vec::new()
        };
        for (fw, task) in due {
            match self.tasks.get(&fw, &task) {
                Some(rec) if rec.pending_ack.is_some() => {
                    let status = Self::status_of(rec, rec.pending_ack.clone());
                    self.send_update(&fw, &status, reason::AGENT, now);
                }
                _ => {
                    self.unacked.remove(&(fw, task));
                }
            }
        }

        let hb = Self::ms(self.config.scheduler_heartbeat_interval);
        if now.saturating_sub(self.last_scheduler_heartbeat_ms) >= hb {
            self.last_scheduler_heartbeat_ms = now;
            let fws: Vec<FrameworkId> = self.schedulers.keys().cloned().collect();
            for fw in fws {
                self.send_scheduler(&fw, Event::Heartbeat(pb::scheduler_event::Heartbeat {}));
            }
        }
    }

    /// Runs one allocation cycle and sends the resulting offers, one event per framework.
    pub fn allocate(&mut self, now: Millis) {
        let timeout = self.config.offer_timeout.map(Self::ms);
        let mut batches: BTreeMap<FrameworkId, Vec<pb::Offer>> = BTreeMap::new();
        for a in self.allocator.allocate(now) {
            if !self.schedulers.contains_key(&a.framework) {
                let _ = self
                    .allocator
                    .recover(&a.framework, &a.agent, a.resources, 0, now);
                continue;
            }
            let rec = self.offers.create(
                a.framework.clone(),
                a.agent.clone(),
                a.resources,
                now,
                timeout,
            );
            let (hostname, attributes) = self
                .registry
                .agents
                .get(&a.agent)
                .map(|r| (r.hostname.clone(), convert::attributes_pb(&r.attributes)))
                .unwrap_or_default();
            batches.entry(a.framework).or_default().push(pb::Offer {
                id: rec.id.to_string(),
                framework_id: rec.framework.to_string(),
                agent_id: rec.agent.to_string(),
                hostname,
                resources: Some(rec.resources.into()),
                attributes,
            });
        }
        for (fw, offers) in batches {
            debug!(framework_id = %fw, count = offers.len(), "offers");
            self.send_scheduler(&fw, Event::Offers(pb::scheduler_event::Offers { offers }));
        }
    }

    // ----- operator -----

    /// Kills a live task for an operator, through the same path as its framework's own `Kill`
    /// call: the agent is asked to kill it and its update (`TASK_KILLED`) goes to the framework.
    /// `framework` may be `None` when the task id is used by one framework only.
    pub fn operator_kill_task(
        &mut self,
        framework: Option<&FrameworkId>,
        task: &TaskId,
        now: Millis,
    ) -> Result<OperatorKill, OperatorError> {
        if let Some(fw) = framework
            && !self.registry.frameworks.contains_key(fw)
        {
            return Err(OperatorError::NotFound(format!(
                "framework {fw} is not registered"
            )));
        }
        let candidates: Vec<&TaskRecord> = match framework {
            Some(fw) => self.tasks.get(fw, task).into_iter().collect(),
            None => self.tasks.all().filter(|r| &r.id == task).collect(),
        };
        let live: Vec<&TaskRecord> = candidates
            .iter()
            .copied()
            .filter(|r| !r.state.is_terminal())
            .collect();
        let rec = match live.as_slice() {
            [rec] => *rec,
            [] => {
                return Err(match candidates.first() {
                    Some(r) => OperatorError::Conflict(format!(
                        "task {task} of framework {} has already ended ({})",
                        r.framework, r.state
                    )),
                    None => OperatorError::NotFound(match framework {
                        Some(fw) => format!("framework {fw} has no task {task}"),
                        None => format!("no framework has a task {task}"),
                    }),
                });
            }
            many => {
                let mut frameworks: Vec<String> =
                    many.iter().map(|r| r.framework.to_string()).collect();
                frameworks.sort();
                return Err(OperatorError::Conflict(format!(
                    "task id {task} is used by frameworks {}; name the framework",
                    frameworks.join(", ")
                )));
            }
        };
        let kill = OperatorKill {
            framework: rec.framework.clone(),
            agent: rec.agent.clone(),
            state: rec.state,
        };
        if !self.agents.contains_key(&kill.agent) {
            return Err(OperatorError::Unavailable(format!(
                "agent {} of task {task} is unreachable; the kill cannot be delivered now",
                kill.agent
            )));
        }
        info!(framework_id = %kill.framework, task_id = %task, agent_id = %kill.agent,
            "an operator kills a task");
        self.kill(
            &kill.framework,
            pb::scheduler_call::Kill {
                task_id: task.to_string(),
                agent_id: kill.agent.to_string(),
            },
            now,
        );
        Ok(kill)
    }

    /// Tears a framework down for an operator, as its own `Teardown` call would: offers
    /// rescinded, tasks killed, executors shut down, resources returned, the framework
    /// forgotten, and its scheduler's stream closed with a fatal error (which stops a hosted
    /// scheduler).
    pub fn operator_teardown(
        &mut self,
        fw: &FrameworkId,
        now: Millis,
    ) -> Result<OperatorTeardown, OperatorError> {
        if !self.registry.frameworks.contains_key(fw) {
            return Err(OperatorError::NotFound(
                if self.registry.removed_frameworks.contains(fw) {
                    format!("framework {fw} was already removed")
                } else {
                    format!("framework {fw} is not known")
                },
            ));
        }
        let tasks = self.tasks.of_framework(fw);
        let tasks_killed = tasks.iter().filter(|r| !r.state.is_terminal()).count() as u32;
        let agents = tasks
            .iter()
            .map(|r| &r.agent)
            .collect::<BTreeSet<_>>()
            .len() as u32;
        self.remove_framework(fw, now, "torn down by an operator");
        Ok(OperatorTeardown {
            tasks_killed,
            agents,
        })
    }

    /// Count and resources of the non-terminal tasks, per agent and per framework.
    fn live_task_totals(&self) -> (LiveTotals<'_, AgentId>, LiveTotals<'_, FrameworkId>) {
        let mut by_agent: HashMap<&AgentId, (u32, Resources)> = HashMap::new();
        let mut by_framework: HashMap<&FrameworkId, (u32, Resources)> = HashMap::new();
        for r in self.tasks.all().filter(|r| !r.state.is_terminal()) {
            for entry in [
                by_agent.entry(&r.agent).or_default(),
                by_framework.entry(&r.framework).or_default(),
            ] {
                entry.0 += 1;
                entry.1 = entry.1.checked_add(&r.resources).unwrap_or(entry.1);
            }
        }
        (by_agent, by_framework)
    }

    /// The cluster as this master sees it; `hosted` names the frameworks whose scheduler the
    /// master hosts (the framework host's running set, which the core does not track).
    pub fn cluster_state(&self, hosted: &HashSet<FrameworkId>) -> pb::ClusterState {
        let (live_by_agent, live_by_framework) = self.live_task_totals();
        let frameworks = self
            .registry
            .frameworks
            .values()
            .map(|f| pb::FrameworkSummary {
                info: Some(pb::FrameworkInfo {
                    id: f.id.to_string(),
                    name: f.name.clone(),
                    role: f.role.clone(),
                    principal: f.principal.clone(),
                    failover_timeout_seconds: f.failover_timeout_ms as f64 / 1000.0,
                    component_sha256: f.component_sha256.clone().unwrap_or_default(),
                }),
                connected: self.schedulers.contains_key(&f.id),
                allocated: self.allocator.framework_allocation(&f.id).map(Into::into),
                offers: self.offers.of_framework(&f.id).len() as u32,
                active_tasks: live_by_framework.get(&f.id).map_or(0, |l| l.0),
                used: Some(
                    live_by_framework
                        .get(&f.id)
                        .map_or(Resources::ZERO, |l| l.1)
                        .into(),
                ),
                hosted: hosted.contains(&f.id),
            })
            .collect();
        let agents = self
            .registry
            .agents
            .values()
            .map(|a| pb::AgentSummary {
                info: Some(pb::AgentInfo {
                    id: a.id.to_string(),
                    hostname: a.hostname.clone(),
                    address: a.address.clone(),
                    resources: Some(a.resources.into()),
                    attributes: convert::attributes_pb(&a.attributes),
                }),
                reachable: matches!(a.state, AgentState::Active),
                available: Some(
                    self.allocator
                        .agent_available(&a.id)
                        .unwrap_or_default()
                        .into(),
                ),
                active_tasks: live_by_agent.get(&a.id).map_or(0, |l| l.0),
                used: Some(
                    live_by_agent
                        .get(&a.id)
                        .map_or(Resources::ZERO, |l| l.1)
                        .into(),
                ),
            })
            .collect();
        let mut tasks: Vec<pb::TaskSummary> = self
            .tasks
            .all()
            .map(|r| pb::TaskSummary {
                framework_id: r.framework.to_string(),
                status: Some(convert::status_to_pb(&Self::status_of(r, None), "")),
                resources: Some(r.resources.into()),
                name: r.name.clone(),
            })
            .collect();
        tasks.sort_by(|a, b| {
            (&a.framework_id, a.status.as_ref().map(|s| &s.task_id))
                .cmp(&(&b.framework_id, b.status.as_ref().map(|s| &s.task_id)))
        });
        let mut role_names: BTreeSet<String> = self
            .registry
            .frameworks
            .values()
            .map(|f| f.role.clone())
            .collect();
        role_names.extend(self.registry.weights.keys().cloned());
        role_names.extend(self.registry.quotas.keys().cloned());
        let roles = role_names
            .into_iter()
            .map(|role| {
                let quota = self.registry.quotas.get(&role).copied().unwrap_or_default();
                pb::RoleSummary {
                    weight: self.registry.weight(&role),
                    guarantee: Some(quota.guarantee.into()),
                    limit: quota.limit.map(Into::into),
                    allocated: Some(
                        self.allocator
                            .role_allocation(&role)
                            .unwrap_or_default()
                            .into(),
                    ),
                    role,
                }
            })
            .collect();
        pb::ClusterState {
            frameworks,
            agents,
            tasks,
            roles,
            total: Some(self.allocator.cluster_total().into()),
            outstanding_offers: self.offers.len() as u64,
            hosted_schedulers: hosted.len() as u32,
        }
    }

    /// Sets role weights: all are checked before any is applied.
    pub fn set_weights(&mut self, weights: Vec<(String, f64)>) -> Result<(), String> {
        for (role, weight) in &weights {
            validate_role(role).map_err(|e| e.to_string())?;
            if !weight.is_finite() || *weight <= 0.0 {
                return Err(RegistryError::InvalidWeight {
                    role: role.clone(),
                    weight: *weight,
                }
                .to_string());
            }
        }
        for (role, weight) in weights {
            self.commit(Command::SetWeight {
                role: role.clone(),
                weight,
            })
            .map_err(|e| e.to_string())?;
            self.allocator
                .set_weight(&role, weight)
                .map_err(|e| e.to_string())?;
        }
        self.want_allocation();
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) a role's quota.
    pub fn set_quota(&mut self, role: String, quota: Option<Quota>) -> Result<(), String> {
        self.commit(Command::SetQuota {
            role: role.clone(),
            quota,
        })
        .map_err(|e| e.to_string())?;
        self.allocator
            .set_quota(&role, quota.unwrap_or_default())
            .map_err(|e| e.to_string())?;
        self.want_allocation();
        Ok(())
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
impl MasterCore {
    /// The books agree with each other: what the allocator counts for each framework is its
    /// outstanding offers plus its live tasks on agents the allocator knows; offers point at
    /// connected frameworks and agents; connection maps match the registry.
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        for fw in self.registry.frameworks.keys() {
            let mut expect = Resources::ZERO;
            for o in self.offers.of_framework(fw) {
                expect = expect
                    .checked_add(&o.resources)
                    .map_err(|e| e.to_string())?;
                if !self.agents.contains_key(&o.agent) {
                    return Err(format!(
                        "offer {} is of disconnected agent {}",
                        o.id, o.agent
                    ));
                }
                if !self.schedulers.contains_key(fw) {
                    return Err(format!(
                        "offer {} is held by disconnected framework {fw}",
                        o.id
                    ));
                }
            }
            for t in self.tasks.of_framework(fw) {
                if !t.state.is_terminal() && self.allocator.agent_available(&t.agent).is_some() {
                    expect = expect
                        .checked_add(&t.resources)
                        .map_err(|e| e.to_string())?;
                }
            }
            let got = self.allocator.framework_allocation(fw);
            if got != Some(expect) {
                return Err(format!(
                    "framework {fw}: allocator counts {got:?}, books say {expect}"
                ));
            }
            let connected = matches!(
                self.registry.frameworks[fw].state,
                FrameworkState::Connected
            );
            if connected != self.schedulers.contains_key(fw) {
                return Err(format!("framework {fw}: registry and connections disagree"));
            }
        }
        for fw in self.schedulers.keys() {
            if !self.registry.frameworks.contains_key(fw) {
                return Err(format!("connected framework {fw} is not registered"));
            }
        }
        for t in self.tasks.all() {
            if !self.registry.frameworks.contains_key(&t.framework) {
                return Err(format!(
                    "task {} of removed framework {}",
                    t.id, t.framework
                ));
            }
        }
        for agent in self.agents.keys() {
            if self.allocator.agent_available(agent).is_none() {
                return Err(format!("connected agent {agent} is not in the allocator"));
            }
        }
        Ok(())
    }
}
