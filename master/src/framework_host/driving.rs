//! The task that drives one hosted scheduler: it turns the core's events into the component's
//! callbacks, and after each callback applies what the guest queued in [`Pending`] to the core
//! (calls, then `state-put`s, then `finish`), under one short lock.
//!
//! It holds back the next callback while `state-put`s may be uncommitted (waiting on
//! [`HostContext::committed`]), passes acknowledgements on in bursts, and runs the scheduler's
//! timers. It ends when the framework finishes, fails or is torn down, or the core closes its
//! stream; it then tells the core that the scheduler disconnected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};
use wasmos_api::FrameworkId;
use wasmos_api::proto as pb;
use wasmos_wasm_executor::bindings::types as wit;
use wasmos_wasm_executor::{SchedulerError, SchedulerInstance};

use super::HostContext;
use super::convert::{offer_of, state_of};
use super::driver::Pending;
use crate::core::ConnId;
use crate::registry::FrameworkOutcome;
use crate::sync::lock;

use pb::scheduler_event::Event;

/// Longest timer delay honoured (one day); longer delays are cut to it.
const MAX_TIMER_DELAY: Duration = Duration::from_secs(24 * 3600);
/// Most events handled back to back before the acknowledgements they produced are passed on
/// (in one message per agent): enough to batch a burst, few enough to add little latency.
const MAX_EVENT_BATCH: usize = 128;

/// The state of one hosted framework's driving task.
pub(super) struct Driving<C> {
    /// What the host needs of the master: its core, clock and commit wait.
    pub(super) ctx: C,
    pub(super) framework_id: FrameworkId,
    pub(super) conn: ConnId,
    pub(super) instance: SchedulerInstance,
    pub(super) pending: Arc<Mutex<Pending>>,
    /// Pending timers by id, so that setting one again replaces it.
    pub(super) timers: HashMap<u64, AbortHandle>,
    pub(super) timer_tx: Option<mpsc::UnboundedSender<u64>>,
    /// Acknowledgements of updates the scheduler has taken, not yet passed to the core.
    pub(super) acks: Vec<pb::scheduler_call::Acknowledge>,
    /// True once the framework was finished or failed.
    pub(super) done: bool,
    /// True while `state-put`s applied after the last callback may not be committed through
    /// Raft yet: the scheduler gets no further callback until they are, so a scheduler never
    /// acts on state that a leader change could still lose.
    pub(super) puts_uncommitted: bool,
}

impl<C: HostContext> Driving<C> {
    /// Calls `init(args)`, then drives the scheduler from `events` until the framework ends.
    pub(super) async fn run(
        mut self,
        args: Vec<String>,
        mut events: mpsc::Receiver<Result<pb::SchedulerEvent, tonic::Status>>,
    ) {
        let (timer_tx, mut timer_rx) = mpsc::unbounded_channel();
        self.timer_tx = Some(timer_tx);
        let r = self.instance.init(args).await;
        self.after_callback(r);
        while !self.done {
            if std::mem::take(&mut self.puts_uncommitted)
                && let Err(e) = self.ctx.committed().await
            {
                // Leadership lost (this driver is about to be stopped; the new leader restarts
                // the scheduler from what committed) or no majority in time: carry on.
                warn!(error = %e, "state-put not known to be committed");
            }
            tokio::select! {
                event = events.recv() => match event {
                    Some(Ok(e)) => {
                        self.on_event(e).await;
                        // Whatever else is waiting goes first, so that its acknowledgements
                        // travel together.
                        let mut closed = false;
                        for _ in 1..MAX_EVENT_BATCH {
                            if self.done {
                                break;
                            }
                            match events.try_recv() {
                                Ok(Ok(e)) => self.on_event(e).await,
                                Ok(Err(status)) => {
                                    info!(%status, "the master closed the hosted scheduler's stream");
                                    closed = true;
                                    break;
                                }
                                Err(mpsc::error::TryRecvError::Disconnected) => {
                                    closed = true;
                                    break;
                                }
                                Err(mpsc::error::TryRecvError::Empty) => break,
                            }
                        }
                        self.flush_acks();
                        if closed {
                            break;
                        }
                    }
                    Some(Err(status)) => {
                        info!(%status, "the master closed the hosted scheduler's stream");
                        break;
                    }
                    None => break,
                },
                Some(id) = timer_rx.recv() => {
                    if self.timers.remove(&id).is_some() {
                        lock(&self.pending).timer_ids.remove(&id);
                        let r = self.instance.timer(id).await;
                        self.after_callback(r);
                    }
                }
            }
        }
        for (_, t) in self.timers.drain() {
            t.abort();
        }
        let (framework_id, dropped) = {
            let mut p = lock(&self.pending);
            (
                p.framework_id.clone(),
                p.log.flush(std::time::Instant::now()),
            )
        };
        if let Some(dropped) = dropped {
            warn!(target: "wasmos::scheduler", "{}", dropped.message(&framework_id));
        }
        let now = self.ctx.now();
        self.ctx
            .core()
            .scheduler_disconnected(&self.framework_id, self.conn, now);
        debug!("hosted scheduler stopped");
    }

    async fn on_event(&mut self, event: pb::SchedulerEvent) {
        let Some(event) = event.event else { return };
        match event {
            Event::Subscribed(_) | Event::Heartbeat(_) => {}
            Event::Offers(o) => {
                let offers: Vec<wit::Offer> = o.offers.into_iter().map(offer_of).collect();
                {
                    let mut p = lock(&self.pending);
                    for o in &offers {
                        p.offers
                            .insert(o.id.clone(), (o.agent_id.clone(), o.resources));
                    }
                }
                let r = self.instance.resource_offers(offers).await;
                self.after_callback(r);
            }
            Event::Rescind(r) => {
                lock(&self.pending).offers.remove(&r.offer_id);
                let r = self.instance.offer_rescinded(r.offer_id).await;
                self.after_callback(r);
            }
            Event::Update(u) => {
                let Some(s) = u.status else { return };
                let Some(state) = state_of(s.state) else {
                    warn!(task_id = %s.task_id, state = s.state, "update with an unknown state dropped");
                    return;
                };
                let ack = (!s.uuid.is_empty()).then(|| pb::scheduler_call::Acknowledge {
                    agent_id: s.agent_id.clone(),
                    task_id: s.task_id.clone(),
                    uuid: s.uuid.clone(),
                });
                let status = wit::TaskStatus {
                    task_id: s.task_id,
                    agent_id: (!s.agent_id.is_empty()).then_some(s.agent_id),
                    state,
                    message: s.message,
                    data: s.data,
                };
                let r = self.instance.status_update(status).await;
                if r.is_ok()
                    && let Some(ack) = ack
                {
                    // After the scheduler has it, as for a gRPC scheduler; passed on with the
                    // others of this burst (`flush_acks`).
                    self.acks.push(ack);
                }
                self.after_callback(r);
            }
            Event::Message(m) => {
                let r = self
                    .instance
                    .framework_message(m.agent_id, m.executor_id, m.data)
                    .await;
                self.after_callback(r);
            }
            Event::Failure(f) => {
                info!(agent_id = %f.agent_id, message = %f.message, "failure reported to hosted scheduler");
            }
            Event::Error(e) => {
                warn!(message = %e.message, fatal = e.fatal, "master error for hosted scheduler");
                if e.fatal {
                    self.done = true;
                }
            }
        }
    }

    /// Passes the acknowledgements collected so far to the core.
    fn flush_acks(&mut self) {
        if self.done || self.acks.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut self.acks);
        if !self
            .ctx
            .core()
            .acknowledge_many(&self.framework_id, self.conn, acks)
        {
            self.done = true;
        }
    }

    /// Applies what the callback queued, or fails the framework if the callback failed.
    fn after_callback(&mut self, result: Result<(), SchedulerError>) {
        if self.done {
            return;
        }
        if result.is_err() || lock(&self.pending).finish.is_some() {
            // The updates the scheduler took before it ended are acknowledged first.
            self.flush_acks();
            if self.done {
                return;
            }
        }
        let (calls, puts, timers, finish, progress) = {
            let mut p = lock(&self.pending);
            let (calls, puts, timers) = p.take_queued();
            (calls, puts, timers, p.finish.clone(), p.progress.take())
        };
        // Native launches are authorized before the core is locked (the master's answer
        // reads the registry through the same lock).
        let calls: Vec<(pb::scheduler_call::Call, Option<String>)> = calls
            .into_iter()
            .map(|call| {
                let refused = launches_native(&call)
                    .then(|| self.ctx.authorize_native_launch(&self.framework_id).err())
                    .flatten();
                (call, refused)
            })
            .collect();
        let now = self.ctx.now();
        let mut core = self.ctx.core();
        let (took, fuel) = self.instance.last_callback();
        core.counters().scheduler_called(took, fuel);
        if let Err(e) = result {
            // What the failed callback queued is dropped: the framework is failed instead.
            let reason = e.to_string();
            warn!(%reason, "hosted scheduler failed; failing its framework");
            core.finish_framework(
                &self.framework_id,
                self.conn,
                FrameworkOutcome::Failed(reason),
                now,
            );
            self.done = true;
            return;
        }
        if let Some((total, waiting_for)) = progress {
            core.report_progress(&self.framework_id, total, waiting_for, now);
        }
        for (call, refused) in calls {
            let live = match (call, refused) {
                (pb::scheduler_call::Call::Accept(accept), Some(why)) => {
                    core.refuse_accept(&self.framework_id, self.conn, accept, why, now)
                }
                (call, _) => core.scheduler_call(&self.framework_id, self.conn, Some(call), now),
            };
            if !live {
                self.done = true;
                return;
            }
        }
        self.puts_uncommitted |= !puts.is_empty();
        for (key, value) in puts {
            if let Err(e) = core.put_framework_state(&self.framework_id, key, value) {
                warn!(error = %e, "state-put refused by the registry");
            }
        }
        if let Some(outcome) = finish {
            info!(?outcome, "hosted framework finished");
            core.finish_framework(&self.framework_id, self.conn, outcome, now);
            self.done = true;
            return;
        }
        drop(core);
        for (id, delay_ms) in timers {
            if let Some(old) = self.timers.remove(&id) {
                old.abort();
            }
            // `driver.set-timer` refused ids past `MAX_PENDING_TIMERS` already.
            let Some(tx) = self.timer_tx.clone() else {
                continue;
            };
            let delay = Duration::from_millis(delay_ms).min(MAX_TIMER_DELAY);
            let handle = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(id);
            });
            self.timers.insert(id, handle.abort_handle());
        }
    }
}

/// Whether `call` is an accept that launches a native command task.
fn launches_native(call: &pb::scheduler_call::Call) -> bool {
    matches!(call, pb::scheduler_call::Call::Accept(a)
        if a.launches.iter().any(|t| matches!(t.kind, Some(pb::task_info::Kind::Command(_)))))
}
