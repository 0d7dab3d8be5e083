//! Leadership and replication of a replicated master (in the spirit of Nomad's `leader.go`):
//! following openraft's view of who leads ([`Master::watch_leadership`]), taking over the
//! registry when this master may serve and stepping down when it may not, restarting hosted
//! schedulers on a new leader, proposing the core's outbox through Raft in order
//! ([`Master::replicate`]), and the commit wait handlers answer behind
//! ([`Master::committed`]).
//!
//! What it does not own: the core's state (`core/`), the Raft log and transport (`raft/`), or
//! how the framework host runs a scheduler (`framework_host/`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::error::Fatal;
use tokio::sync::{Notify, watch};
use tonic::Status;
use tracing::{error, info, warn};
use wasmos_api::FrameworkId;
use wasmos_api::proto as pb;

use super::Master;
use super::status::ServiceError;
use crate::core::MasterCore;
use crate::framework_host::FrameworkHost;
use crate::raft::{ProposeError, RaftNode};
use crate::registry::{Command, HostedSpec};

/// How often a leader confirms that a majority still follows it.
const LEADERSHIP_CHECK: Duration = Duration::from_millis(250);
/// How long one confirmation by a majority may take.
const QUORUM_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long a leader goes unconfirmed by a majority before it stops serving (a single slow
/// round on a busy machine is not a partition).
const QUORUM_LOST_AFTER: Duration = Duration::from_millis(1500);
/// The longest a handler waits for its registry change to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The replication side of a master whose registry is a Raft state machine.
///
/// Only the leader serves: its core applies each registry change at once and queues it in an
/// outbox; the replicator proposes the outbox in order and advances `durable`; a handler that
/// changed the registry answers only once `durable` covers its change. A follower answers
/// every call with the not-leader status ([`wasmos_api::leader`]).
pub(super) struct Replication {
    pub(super) node: RaftNode,
    /// (leadership generation, last outbox sequence number committed in it).
    durable: watch::Sender<(u64, u64)>,
    /// Bumped whenever this master starts or stops serving as the leader.
    generation: AtomicU64,
    /// Whether this master leads and has built its core from the registry.
    pub(super) serving: AtomicBool,
    /// Set when Raft stopped by itself (its store failed): this master never serves again.
    failed: AtomicBool,
    /// Woken when the core queues a command.
    outbox: Arc<Notify>,
    /// How long a new leader waits for admitted agents to re-register.
    agent_reregister_wait: Duration,
}

impl Replication {
    /// Replication through `node`, not yet serving.
    pub(super) fn new(node: RaftNode, agent_reregister_wait: Duration) -> Self {
        let (durable, _) = watch::channel((0, 0));
        Replication {
            node,
            durable,
            generation: AtomicU64::new(0),
            serving: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            outbox: Arc::new(Notify::new()),
            agent_reregister_wait,
        }
    }
}

/// Most agent changes in one [`Command::AgentBatch`].
const MAX_AGENT_BATCH: usize = 1024;
/// Most bytes (as [`Command::agent_change_bytes`] counts them) in one batch: well inside a
/// Raft message, which carries many entries.
const MAX_AGENT_BATCH_BYTES: usize = 1 << 20;

/// The outbox's commands in order, with each run of consecutive agent changes packed into
/// [`Command::AgentBatch`]es (of at most [`MAX_AGENT_BATCH`] changes and
/// [`MAX_AGENT_BATCH_BYTES`]); a run of one stays as it is. A registration storm of 10,000
/// agents then costs about ten log entries, appends, fsyncs and applies instead of 10,000.
pub(crate) fn pack_agent_changes(batch: Vec<(u64, Command)>) -> Vec<Command> {
    let mut out = Vec::new();
    let mut run: Vec<Command> = Vec::new();
    let mut run_bytes = 0;
    let flush = |run: &mut Vec<Command>, out: &mut Vec<Command>| match run.len() {
        0 => {}
        1 => out.extend(run.drain(..)),
        _ => out.push(Command::AgentBatch(std::mem::take(run))),
    };
    for (_, command) in batch {
        match command.agent_change_bytes() {
            Some(bytes) => {
                if run.len() == MAX_AGENT_BATCH
                    || (!run.is_empty() && run_bytes + bytes > MAX_AGENT_BATCH_BYTES)
                {
                    flush(&mut run, &mut out);
                    run_bytes = 0;
                }
                run_bytes += bytes;
                run.push(command);
            }
            None => {
                flush(&mut run, &mut out);
                run_bytes = 0;
                out.push(command);
            }
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Whether a majority of masters confirms, within [`QUORUM_TIMEOUT`], that this one leads:
/// one heartbeat round answered by a majority (`get_read_log_id`). Not `ensure_linearizable`,
/// which also waits for the state machine to apply up to the commit index: behind a burst of
/// registry changes (10,000 agents registering at once) that wait passed the timeout, and a
/// leader whose majority answered stepped down, over and over.
async fn quorum_confirms(node: &RaftNode) -> bool {
    matches!(
        tokio::time::timeout(QUORUM_TIMEOUT, node.raft().get_read_log_id()).await,
        Ok(Ok(_))
    )
}

impl Master {
    /// The error a master that does not serve answers with: not-leader with the leader's
    /// address when another master leads, without one while none serves yet (an election, or
    /// this master taking over); UNAVAILABLE once its Raft store failed.
    pub(super) fn not_leader(&self) -> ServiceError {
        let Some(r) = &self.raft else {
            return ServiceError::NotServing;
        };
        if r.failed.load(Ordering::Acquire) {
            return ServiceError::StoreFailed;
        }
        let leader = match r.node.leader() {
            // Elected but still taking over: no master serves yet.
            Some((id, _)) if id == r.node.id() => None,
            Some((_, addr)) => Some(addr),
            None => None,
        };
        ServiceError::NotLeader { leader }
    }

    /// `Ok` when this master serves calls; otherwise the status to answer with.
    pub(super) fn leading(&self) -> Result<(), Status> {
        if self.is_serving() {
            Ok(())
        } else {
            Err(self.not_leader().into())
        }
    }

    /// Waits until every registry change made so far is committed through Raft (at once for
    /// a master kept in memory). Fails when the leadership is lost first, or after
    /// `COMMIT_TIMEOUT` (10 s).
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
                    return Err(self.not_leader().into());
                }
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(ServiceError::ReplicationStopped.into()),
                Err(_) => return Err(ServiceError::CommitTimeout.into()),
            }
        }
    }

    /// Follows the Raft metrics: takes over when this master becomes the leader and has
    /// applied the whole log, steps down when it is no longer the leader.
    ///
    /// Returns when Raft stops: `Some(cause)` when it stopped by itself (its store failed to
    /// write or read, or it panicked), after stepping down and logging the cause; `None` when
    /// it was asked to stop. openraft does not restart after a failure, so a master left
    /// running would never serve again: [`Master::serve`] stops and returns the failure.
    pub(super) async fn watch_leadership(self) -> Option<String> {
        let Some(r) = self.raft.clone() else {
            return None;
        };
        let id = r.node.id();
        let mut metrics = r.node.metrics();
        // Since when a majority has not confirmed this master's leadership (while it serves).
        let mut unconfirmed_since: Option<Instant> = None;
        // Set when it stopped serving for that reason, until it is no longer leader.
        let mut quorum_lost = false;
        loop {
            let (leads, ready, stopped) = {
                let m = metrics.borrow_and_update();
                let stopped = match &m.running_state {
                    Ok(()) => None,
                    Err(Fatal::Stopped) => Some(None),
                    Err(fatal) => Some(Some(fatal.to_string())),
                };
                let leads = m.current_leader == Some(id) && m.state.is_leader();
                // The leader's first entry of its term (a blank one) is applied: the state
                // machine holds every change of earlier leaders.
                let ready = leads
                    && m.last_applied.is_some_and(|l| {
                        l.leader_id.term == m.current_term && Some(l.index) == m.last_log_index
                    });
                (leads, ready, stopped)
            };
            let serving = r.serving.load(Ordering::Acquire);
            if let Some(cause) = stopped {
                if cause.is_some() {
                    r.failed.store(true, Ordering::Release);
                }
                if serving {
                    self.step_down(&r);
                }
                if let Some(cause) = &cause {
                    error!(
                        master_id = id,
                        %cause,
                        "the Raft store of this master failed and Raft stopped; this master \
                         stops serving. Free disk space or fix the data dir (permissions, a \
                         failing disk), then restart the master: it reopens its store and \
                         rejoins its group"
                    );
                }
                return cause;
            }
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
                        return None;
                    }
                }
                _ = tokio::time::sleep(LEADERSHIP_CHECK) => {}
            }
        }
    }

    /// Starts serving: builds a fresh core from the replicated registry, opens a new
    /// leadership generation, and restarts the hosted schedulers the registry lists.
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
        fresh.share_counters(&core);
        fresh.continue_ids_from(&core);
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
        let hosted: Vec<(pb::FrameworkInfo, HostedSpec)> = {
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
                            ..Default::default()
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
                // Listed as hosted by the host until its driving task ends.
                Ok(_) => info!(framework_id = %id, "hosted scheduler restarted"),
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

    /// Stops serving: closes every stream with the not-leader status, drops the soft state
    /// with the core, and forgets the hosted schedulers (their streams are closed, so they stop).
    fn step_down(&self, r: &Replication) {
        let status: Status = self.not_leader().into();
        let mut core = self.core();
        let config = core.config().clone();
        r.serving.store(false, Ordering::Release);
        let generation = r.generation.fetch_add(1, Ordering::AcqRel) + 1;
        core.close_all(status);
        let mut fresh = MasterCore::new(config, &self.epoch, self.wake.clone());
        fresh.share_counters(&core);
        fresh.continue_ids_from(&core);
        *core = fresh;
        r.durable.send_replace((generation, 0));
        drop(core);
        if let Some(host) = self.started_framework_host() {
            host.forget_running();
        }
        info!(generation, "this master no longer leads; streams closed");
    }

    /// Proposes the core's queued registry commands through Raft, in order, many in flight
    /// at once, and advances `durable` past those committed.
    pub(super) async fn replicate(self) {
        use futures_util::stream::{FuturesOrdered, StreamExt};
        let Some(r) = self.raft.clone() else { return };
        let proposer = r.node.proposer();
        // Shared by every core this master builds (`share_counters`).
        let counters = self.core().counters().clone();
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
                let mut inflight: FuturesOrdered<_> = pack_agent_changes(batch)
                    .into_iter()
                    .map(|command| {
                        let (proposer, counters) = (&proposer, &counters);
                        async move {
                            let started = std::time::Instant::now();
                            let r = proposer.propose(command).await;
                            if r.is_ok() {
                                counters.raft_commit.observe(started.elapsed());
                            }
                            r
                        }
                    })
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
}

#[cfg(test)]
mod tests {
    use wasmos_api::{AgentId, Resources};

    use super::*;
    use crate::registry::{AgentRecord, AgentState};

    fn admit(i: usize, attribute_bytes: usize) -> Command {
        Command::AdmitAgent(AgentRecord {
            id: AgentId::new(format!("a{i}")).unwrap(),
            hostname: format!("h{i}"),
            address: String::new(),
            resources: Resources::new(1.0, 1, 0),
            attributes: [("k".to_string(), "v".repeat(attribute_bytes))].into(),
            state: AgentState::Active,
        })
    }

    /// Runs of agent changes become batches, bounded by count and bytes; other commands keep
    /// their place between them, and nothing is lost or reordered.
    #[test]
    fn agent_changes_are_packed_in_order_within_their_bounds() {
        let weight = Command::SetWeight {
            role: "r".into(),
            weight: 2.0,
        };
        let mut outbox: Vec<Command> = (0..MAX_AGENT_BATCH + 1).map(|i| admit(i, 0)).collect();
        outbox.push(weight.clone());
        outbox.push(admit(9000, 0));
        outbox.push(weight.clone());
        let packed = pack_agent_changes(
            outbox
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, c)| (i as u64, c))
                .collect(),
        );
        assert_eq!(
            packed.len(),
            5,
            "{:#?}",
            packed
                .iter()
                .map(std::mem::discriminant)
                .collect::<Vec<_>>()
        );
        let Command::AgentBatch(first) = &packed[0] else {
            panic!("{:?}", packed[0])
        };
        assert_eq!(first.len(), MAX_AGENT_BATCH);
        // The one past the count bound is alone, so it is not wrapped; so is the lone one.
        assert!(matches!(packed[1], Command::AdmitAgent(_)));
        assert_eq!(packed[2], weight);
        assert!(matches!(packed[3], Command::AdmitAgent(_)));
        assert_eq!(packed[4], weight);
        let flat: Vec<Command> = packed
            .into_iter()
            .flat_map(|c| match c {
                Command::AgentBatch(v) => v,
                c => vec![c],
            })
            .collect();
        assert_eq!(flat, outbox);

        // Big records: the byte bound cuts the run (each record ~300 KiB: three per MiB).
        let big: Vec<(u64, Command)> = (0..7).map(|i| (i, admit(i as usize, 300 << 10))).collect();
        let packed = pack_agent_changes(big);
        let sizes: Vec<usize> = packed
            .iter()
            .map(|c| match c {
                Command::AgentBatch(v) => v.len(),
                _ => 1,
            })
            .collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        assert!(packed.iter().all(|c| {
            match c {
                Command::AgentBatch(v) => {
                    v.iter()
                        .filter_map(Command::agent_change_bytes)
                        .sum::<usize>()
                        <= MAX_AGENT_BATCH_BYTES
                }
                _ => true,
            }
        }));
    }
}
