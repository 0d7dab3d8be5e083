//! `MasterCore`: the master's logic, driven by calls from the gRPC services and by the timer.
//!
//! It owns the registry (changed only through one `commit` funnel, which also queues each
//! change for Raft when the master is replicated), the allocator, the offer and task books, and
//! one outbound queue per connected scheduler and agent. Every entry point is synchronous and
//! takes the current time, so the whole lifecycle (registration, offers, launches, status
//! updates with acknowledgements, timeouts, failover, reconciliation) runs under one lock
//! without awaiting, and nothing a client sends can leave the books half-updated: input is
//! parsed and validated first, then applied.
//!
//! Outbound queues are bounded; when one is full the event is dropped (every status update,
//! the agent's and the master's own, is kept until acknowledged and resent; offers time out),
//! so a client that stops reading cannot exhaust memory and loses no update.
//!
//! This file holds the state, its constructors and the commit and outbox funnel. The entry
//! points live beside it, one idea per file, each an `impl MasterCore` block:
//!
//! | file | what it owns |
//! |---|---|
//! | `outbound` | sending to schedulers and agents; status updates and why they were sent |
//! | `frameworks` | a framework's life: subscribe, state, hosting, finish, disconnect, removal |
//! | `schedulers` | calls on a subscribed stream: decline, kill, reconcile, acknowledge, ... |
//! | `launch` | `Accept`: checked whole into a plan, then applied |
//! | `agents` | agent registration (reconciling reported tasks), unreachable agents, removal |
//! | `agent_messages` | what a registered agent sends: heartbeats, status updates, messages |
//! | `timers` | `tick` (one function per timeout) and the allocation cycle |
//! | `operator` | an operator's kill and teardown, role weights and quotas |
//! | `view` | the read-only `cluster_state` |
//! | `error` | [`CoreError`] and [`to_status`], its one table to gRPC codes |
//! | `invariants` | (tests only) the agreement between the books that `proptests` checks |

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, mpsc};
use tracing::warn;
use wasmos_api::proto as pb;
use wasmos_api::{AgentId, FrameworkId, TaskId};

use crate::allocator::{Allocator, DrfAllocator, Millis};
use crate::blobs::{BlobStore, Digest};
use crate::config::MasterConfig;
use crate::offers::OfferBook;
use crate::registry::{AgentState, Command, FrameworkState, Registry, RegistryError};
use crate::tasks::TaskBook;

mod acl;
mod agent_messages;
mod agents;
mod components;
mod early_rescind;
mod error;
mod frameworks;
mod launch;
mod operator;
mod outbound;
pub mod placement;
mod schedulers;
mod timers;
mod tombstones;
mod view;

pub use error::{CoreError, to_status};
pub use operator::{OperatorKill, OperatorTeardown};

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
    /// Why the agent said it cannot take tasks; `None` while it can.
    unhealthy: Option<String>,
    /// The pieces of native-task isolation it reported on, and its warning (at most 16
    /// names of 64 bytes, and 1,024 bytes of warning, kept).
    isolation: (Vec<String>, String),
}

/// Longest framework name, principal, agent hostname or address accepted.
const MAX_NAME_LEN: usize = 256;

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
    /// When each unacknowledged update was last sent (0: it did not reach the scheduler's
    /// queue, so it is due at the next resend scan). Keyed by task: the update is the task
    /// book's pending one, or else the task's entry in `answers`.
    unacked: HashMap<(FrameworkId, TaskId), Millis>,
    /// Unacknowledged master-made updates about tasks the task book does not hold (answers
    /// for unknown tasks, `ERROR` of refused launches), at most
    /// `MAX_RESENT_ANSWERS_PER_FRAMEWORK` per framework (counted in `answers_per_framework`).
    answers: HashMap<(FrameworkId, TaskId), outbound::Answer>,
    answers_per_framework: HashMap<FrameworkId, usize>,
    next_id: u64,
    last_scheduler_heartbeat_ms: Millis,
    /// When `tick` last looked for updates to resend.
    last_resend_scan_ms: Millis,
    /// When `tick` last looked for launches that timed out.
    last_launch_scan_ms: Millis,
    /// Tasks this master declared LOST, killed rather than adopted when reported later.
    tombstones: tombstones::Tombstones,
    wake: Arc<Notify>,
    /// Framework components by digest (an index of the registry's components).
    blobs: BlobStore,
    /// Set when the registry is replicated: every command applied goes here too.
    outbox: Option<Outbox>,
    /// Frameworks set aside for not answering (an offer expired, or two rescinded early), with
    /// when: suppressed in the allocator until they accept, decline, revive or subscribe again,
    /// or `early_rescind::SET_ASIDE_MS` passes.
    idle: HashMap<FrameworkId, Millis>,
    /// Offers rescinded early from each framework since its last accept, decline, revive,
    /// suppress or subscribe (see `early_rescind`).
    early_rescinds: HashMap<FrameworkId, u32>,
    /// Admitted agents that have not re-registered with this master yet, and when the wait
    /// for them ends (a master that took over from another leader).
    awaiting_agents: HashMap<AgentId, Millis>,
    /// What hosted schedulers reported of their progress (`driver.report-progress`): soft
    /// state of this leader, dropped with the framework (see `placement`).
    progress: HashMap<FrameworkId, placement::FrameworkProgress>,
    /// What the metrics count (offers, terminal tasks, allocation cycles); shared with the
    /// task book and with the core that replaces this one on a leadership change.
    counters: Arc<crate::counters::Counters>,
}

impl MasterCore {
    /// A master with an empty registry. `epoch` (unique per master start, e.g. the start time)
    /// prefixes the ids it mints; `wake` is notified when an allocation cycle should run soon.
    pub fn new(config: MasterConfig, epoch: &str, wake: Arc<Notify>) -> Self {
        let allocator = Box::new(DrfAllocator::new(config.allocator));
        let blobs = BlobStore::new(config.max_component_bytes, config.max_blob_store_bytes);
        let counters = Arc::new(crate::counters::Counters::default());
        let mut tasks = TaskBook::new(config.history);
        tasks.count_into(counters.clone());
        MasterCore {
            config,
            epoch: epoch.to_string(),
            registry: Registry::default(),
            allocator,
            offers: OfferBook::new(epoch),
            tasks,
            schedulers: HashMap::new(),
            agents: HashMap::new(),
            unacked: HashMap::new(),
            answers: HashMap::new(),
            answers_per_framework: HashMap::new(),
            next_id: 0,
            last_scheduler_heartbeat_ms: 0,
            last_resend_scan_ms: 0,
            last_launch_scan_ms: 0,
            tombstones: Default::default(),
            blobs,
            wake,
            outbox: None,
            awaiting_agents: HashMap::new(),
            idle: HashMap::new(),
            early_rescinds: HashMap::new(),
            progress: HashMap::new(),
            counters,
        }
    }

    /// The counters the metrics read.
    pub fn counters(&self) -> &Arc<crate::counters::Counters> {
        &self.counters
    }

    /// Counts into `from`'s counters from now on (a core replacing `from` on a leadership
    /// change), so they grow over the life of the process.
    pub fn share_counters(&mut self, from: &MasterCore) {
        self.counters = from.counters.clone();
        self.tasks.count_into(self.counters.clone());
    }

    /// Mints ids from where `from` left off (a core replacing `from` on a leadership change):
    /// the ids of framework, agent and offer carry only the process's epoch, so a master
    /// that leads a second time would otherwise mint again the ids of its first term, and
    /// the registry refuses a framework id that was used (removed frameworks may not come
    /// back): every submission to it failed until its counter passed the old ones.
    pub fn continue_ids_from(&mut self, from: &MasterCore) {
        self.next_id = self.next_id.max(from.next_id);
        self.offers.continue_ids_from(&from.offers);
    }

    /// The outstanding offers.
    pub fn offer_records(&self) -> impl Iterator<Item = &crate::offers::OfferRecord> {
        self.offers.oldest(Millis::MAX)
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

    /// The task book, with the history of completed tasks and frameworks.
    pub fn tasks(&self) -> &TaskBook {
        &self.tasks
    }

    /// The registry, read-only.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The outbound queue of a connected agent, for the server's calls to it (`ReadLog`);
    /// `None` when the agent is not connected.
    pub fn agent_tx(&self, agent: &AgentId) -> Option<AgentTx> {
        self.agents.get(agent).map(|c| c.tx.clone())
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
}

#[cfg(test)]
mod fairness_tests;
#[cfg(test)]
mod health_tests;
mod invariants;
#[cfg(test)]
mod leader_change_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod update_tests;
