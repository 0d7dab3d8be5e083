//! The calls a subscribed scheduler makes on its stream: the dispatch in
//! [`MasterCore::scheduler_call`] and each call but `Accept` (in `launch`): decline, kill,
//! revive and suppress, reconcile, acknowledge, framework messages, teardown. Subscription
//! and removal are a framework's life and live in `frameworks`.

use std::collections::HashMap;

use tracing::{debug, info_span, warn};
use wasmos_api::convert;
use wasmos_api::limits::MAX_FRAMEWORK_MESSAGE_BYTES;
use wasmos_api::proto as pb;
use wasmos_api::{AgentId, FrameworkId, OfferId, TaskId, TaskState, TaskStatus};

use super::outbound::reason;
use super::{Call, ConnId, MasterCore, ToAgent};
use crate::allocator::Millis;

impl MasterCore {
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
        if matches!(
            call,
            Some(Call::Accept(_) | Call::Decline(_) | Call::Revive(_) | Call::Suppress(_))
        ) {
            // It answers again: an idle framework is no longer set aside (a suppress keeps
            // it suppressed, now by its own call).
            self.end_idle(fw, !matches!(call, Some(Call::Suppress(_))));
        }
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

    /// Forgets that `fw` let an offer expire or had offers rescinded early; `resume` resumes
    /// its offers.
    pub(super) fn end_idle(&mut self, fw: &FrameworkId, resume: bool) {
        self.early_rescinds.remove(fw);
        if self.idle.remove(fw).is_some() && resume {
            if let Err(e) = self.allocator.resume(fw) {
                warn!(framework_id = %fw, error = %e, "resuming offers");
            }
            self.want_allocation();
        }
    }

    /// Declines offers: their resources return to the pool, refused to this framework for the
    /// call's filter, at least `MIN_DECLINE_REFUSE_SECONDS`. Offers that are unknown or not this
    /// framework's are skipped.
    fn decline(&mut self, fw: &FrameworkId, d: pb::scheduler_call::Decline, now: Millis) {
        let refuse_ms = convert::filters(d.filters).decline_ms();
        crate::counters::Counters::add(&self.counters.offers_declined, d.offer_ids.len() as u64);
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

    /// Asks a live task's agent to kill it; an unknown task is answered `LOST` at once.
    pub(super) fn kill(&mut self, fw: &FrameworkId, k: pb::scheduler_call::Kill, now: Millis) {
        let task: TaskId = match convert::id("kill.task_id", &k.task_id) {
            Ok(t) => t,
            Err(e) => return self.scheduler_error(fw, e.to_string(), false),
        };
        match self.tasks.get(fw, &task) {
            Some(rec) if rec.state.is_terminal() => {}
            Some(rec) => {
                let agent = rec.agent.clone();
                if !self.agents.contains_key(&agent) {
                    debug!(framework_id = %fw, task_id = %task, agent_id = %agent,
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
                self.send_answer(fw, status, reason::UNKNOWN_TASK, now);
            }
        }
    }

    /// Answers with the master's view of the named tasks (all of the framework's when none are
    /// named); unknown tasks are `LOST`. Every answer awaits an acknowledgement and is resent
    /// until it comes (unlike Mesos, whose answers are sent once): a task whose update is
    /// already pending is answered with that update, a known task with its state under a fresh
    /// uuid, an unknown one through `answers`.
    fn reconcile(&mut self, fw: &FrameworkId, r: pb::scheduler_call::Reconcile, now: Millis) {
        let mut known: Vec<TaskId> = Vec::new();
        let mut unknown: Vec<TaskStatus> = Vec::new();
        if r.tasks.is_empty() {
            known = self
                .tasks
                .of_framework(fw)
                .iter()
                .map(|r| r.id.clone())
                .collect();
        } else {
            for t in r.tasks {
                let task: TaskId = match convert::id("reconcile.tasks.task_id", &t.task_id) {
                    Ok(id) => id,
                    Err(e) => {
                        self.scheduler_error(fw, e.to_string(), false);
                        continue;
                    }
                };
                if self.tasks.contains(fw, &task) {
                    known.push(task);
                } else {
                    unknown.push(TaskStatus {
                        agent_id: convert::opt_id("reconcile.tasks.agent_id", &t.agent_id)
                            .ok()
                            .flatten(),
                        task_id: task,
                        state: TaskState::Lost,
                        message: "the master does not know this task".into(),
                        data: None,
                        uuid: None,
                    });
                }
            }
        }
        for task in known {
            match self.tasks.get(fw, &task).and_then(Self::pending_of) {
                Some((status, why)) => {
                    self.send_update(fw, &status, why, now);
                }
                None => self.send_master_update(fw, &task, reason::RECONCILIATION, now),
            }
        }
        for status in unknown {
            self.send_answer(fw, status, reason::UNKNOWN_TASK, now);
        }
    }

    /// One acknowledgement, passed on to the task's agent.
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
        let Some(rec) = self
            .tasks
            .get_mut(fw, &task)
            .filter(|r| !a.uuid.is_empty() && r.pending_ack.as_deref() == Some(a.uuid.as_str()))
        else {
            // Not the book's pending update: perhaps an answer about a task it does not hold.
            if !a.uuid.is_empty()
                && self
                    .answers
                    .get(&(fw.clone(), task.clone()))
                    .is_some_and(|x| x.status.uuid.as_deref() == Some(a.uuid.as_str()))
            {
                self.forget_answer(fw, &task);
                self.unacked.remove(&(fw.clone(), task));
            } else {
                debug!(framework_id = %fw, task_id = %task, "stale or unknown acknowledgement ignored");
            }
            return None;
        };
        rec.pending_ack = None;
        let from_master = rec.pending_from_master.take().is_some();
        let (agent, terminal) = (rec.agent.clone(), rec.state.is_terminal());
        self.unacked.remove(&(fw.clone(), task.clone()));
        if terminal {
            self.tasks.remove(fw, &task);
        }
        // A master-made update was never the agent's to acknowledge.
        (!from_master).then(|| {
            (
                agent,
                pb::master_message::Ack {
                    framework_id: fw.to_string(),
                    task_id: a.task_id,
                    uuid: a.uuid,
                },
            )
        })
    }

    /// Passes a framework message on to an agent's executor.
    fn framework_message(&mut self, fw: &FrameworkId, m: pb::scheduler_call::FrameworkMessage) {
        let agent: AgentId = match convert::id("message.agent_id", &m.agent_id) {
            Ok(a) => a,
            Err(e) => return self.scheduler_error(fw, e.to_string(), false),
        };
        if let Err(e) = convert::id::<wasmos_api::ExecutorId>("message.executor_id", &m.executor_id)
        {
            return self.scheduler_error(fw, e.to_string(), false);
        }
        if m.data.len() > MAX_FRAMEWORK_MESSAGE_BYTES {
            return self.scheduler_error(
                fw,
                format!(
                    "message to executor {} on agent {agent} refused: its data is {} bytes; the \
                     limit is {MAX_FRAMEWORK_MESSAGE_BYTES} (send large data as a task's payload \
                     or in several messages)",
                    m.executor_id,
                    m.data.len()
                ),
                false,
            );
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
}
