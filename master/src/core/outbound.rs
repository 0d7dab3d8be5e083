//! Everything the core sends: events to schedulers, messages to agents, and status updates
//! (remembered until acknowledged, so `timers` can resend them). Updates the master makes
//! itself carry a uuid it mints, like an agent's: about a task in the book they become the
//! task's pending update ([`MasterCore::send_master_update`]); about one it does not hold
//! (unknown or refused tasks) they are kept in `answers`, a bounded map
//! ([`MasterCore::send_answer`]). Sends never block: a full or
//! closed queue drops the event and says so in the log. What to send, and when, is decided by
//! the callers in the other files.

use tracing::debug;
use wasmos_api::convert;
use wasmos_api::proto as pb;
use wasmos_api::{AgentId, FrameworkId, TaskId, TaskStatus};

use wasmos_api::limits::MAX_RESENT_ANSWERS_PER_FRAMEWORK;

use super::{Event, MasterCore, ToAgent};
use crate::allocator::Millis;
use crate::tasks::TaskRecord;

/// Why the master sent an update; carried in `TaskStatus.reason`.
pub(super) mod reason {
    pub const AGENT: &str = "agent";
    pub const RECONCILIATION: &str = "reconciliation";
    pub const AGENT_UNREACHABLE: &str = "agent_unreachable";
    pub const AGENT_REMOVED: &str = "agent_removed";
    pub const AGENT_REREGISTERED: &str = "agent_reregistered";
    pub const INVALID_LAUNCH: &str = "invalid_launch";
    pub const UNKNOWN_TASK: &str = "unknown_task";
    pub const LAUNCH_TIMEOUT: &str = "launch_timeout";
}

/// A master-made update about a task the task book does not hold, awaiting acknowledgement.
pub(super) struct Answer {
    /// The update, with its uuid.
    pub status: TaskStatus,
    /// Its reason.
    pub why: &'static str,
}

impl MasterCore {
    /// Queues `event` for `fw`'s scheduler; false when it is not connected or its queue is
    /// full or closed (the event is then dropped).
    pub(super) fn send_scheduler(&self, fw: &FrameworkId, event: Event) -> bool {
        let Some(conn) = self.schedulers.get(fw) else {
            return false;
        };
        use crate::counters::Counters;
        match &event {
            Event::Offers(o) => Counters::add(&self.counters.offers_sent, o.offers.len() as u64),
            Event::Rescind(_) => Counters::add(&self.counters.offers_rescinded, 1),
            _ => {}
        }
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

    /// Queues `message` for `agent`; false when it is not connected or its queue is full or
    /// closed (the message is then dropped).
    pub(super) fn send_agent(&self, agent: &AgentId, message: ToAgent) -> bool {
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

    /// Sends an `Error` event; `fatal` tells the scheduler its stream is being closed.
    pub(super) fn scheduler_error(&self, fw: &FrameworkId, message: String, fatal: bool) {
        self.send_scheduler(
            fw,
            Event::Error(pb::scheduler_event::Error { message, fatal }),
        );
    }

    /// Sends a status update; one with a uuid is remembered until acknowledged, and resent
    /// by `tick` meanwhile, whether this send got through or not (one that did not reach the
    /// queue is due at the next resend scan). Returns whether it reached the queue.
    pub(super) fn send_update(
        &mut self,
        fw: &FrameworkId,
        status: &TaskStatus,
        why: &str,
        now: Millis,
    ) -> bool {
        let sent = self.send_scheduler(
            fw,
            Event::Update(pb::scheduler_event::Update {
                status: Some(convert::status_to_pb(status, why)),
            }),
        );
        if status.uuid.is_some() {
            self.unacked.insert(
                (fw.clone(), status.task_id.clone()),
                if sent { now } else { 0 },
            );
        }
        debug!(framework_id = %fw, task_id = %status.task_id, state = %status.state, why, sent, "update");
        sent
    }

    /// A fresh uuid for an update the master makes.
    fn master_uuid(&mut self) -> String {
        self.mint("update")
    }

    /// Sends the task's current state as an update the master makes (`why` says why),
    /// pending until the framework acknowledges it, like an agent's: it replaces whatever
    /// update of the task was pending. Nothing happens for a task not in the book.
    pub(super) fn send_master_update(
        &mut self,
        fw: &FrameworkId,
        task: &TaskId,
        why: &'static str,
        now: Millis,
    ) {
        let uuid = self.master_uuid();
        let Some(rec) = self.tasks.get_mut(fw, task) else {
            return;
        };
        rec.pending_ack = Some(uuid.clone());
        rec.pending_from_master = Some(why);
        let status = Self::status_of(rec, Some(uuid));
        self.send_update(fw, &status, why, now);
    }

    /// The update a task in the book awaits an acknowledgement for, and its reason.
    pub(super) fn pending_of(rec: &TaskRecord) -> Option<(TaskStatus, &'static str)> {
        let uuid = rec.pending_ack.clone()?;
        let why = rec.pending_from_master.unwrap_or(reason::AGENT);
        Some((Self::status_of(rec, Some(uuid)), why))
    }

    /// Sends a master-made update about a task the book does not hold (`status.uuid` is
    /// replaced): kept in `answers` and resent until acknowledged, replacing an earlier one of
    /// the same task; once the framework has `MAX_RESENT_ANSWERS_PER_FRAMEWORK` of them, sent
    /// once without a uuid instead.
    pub(super) fn send_answer(
        &mut self,
        fw: &FrameworkId,
        mut status: TaskStatus,
        why: &'static str,
        now: Millis,
    ) {
        let key = (fw.clone(), status.task_id.clone());
        let count = self.answers_per_framework.get(fw).copied().unwrap_or(0);
        if !self.answers.contains_key(&key) && count >= MAX_RESENT_ANSWERS_PER_FRAMEWORK {
            debug!(framework_id = %fw, task_id = %status.task_id,
                "too many unacknowledged answers; this one is sent once");
            status.uuid = None;
            self.send_update(fw, &status, why, now);
            return;
        }
        status.uuid = Some(self.master_uuid());
        if self
            .answers
            .insert(
                key,
                Answer {
                    status: status.clone(),
                    why,
                },
            )
            .is_none()
        {
            *self.answers_per_framework.entry(fw.clone()).or_default() += 1;
        }
        self.send_update(fw, &status, why, now);
    }

    /// Forgets the task's entry in `answers`, if any; returns it.
    pub(super) fn forget_answer(&mut self, fw: &FrameworkId, task: &TaskId) -> Option<Answer> {
        let a = self.answers.remove(&(fw.clone(), task.clone()))?;
        if let Some(n) = self.answers_per_framework.get_mut(fw) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.answers_per_framework.remove(fw);
            }
        }
        Some(a)
    }

    /// Forgets every entry of `fw` in `answers` (a removed framework).
    pub(super) fn forget_answers_of(&mut self, fw: &FrameworkId) {
        if self.answers_per_framework.remove(fw).is_some() {
            let unacked = &mut self.unacked;
            self.answers.retain(|k, _| {
                let keep = &k.0 != fw;
                if !keep {
                    unacked.remove(k);
                }
                keep
            });
        }
    }

    /// The status a task record stands for, with `uuid` when it awaits an acknowledgement.
    pub(super) fn status_of(rec: &TaskRecord, uuid: Option<String>) -> TaskStatus {
        TaskStatus {
            task_id: rec.id.clone(),
            agent_id: Some(rec.agent.clone()),
            state: rec.state,
            message: rec.message.clone(),
            data: rec.data.clone(),
            uuid,
        }
    }

    /// Acknowledges one update to the agent that sent it.
    pub(super) fn ack_to_agent(
        &self,
        agent: &AgentId,
        fw: &FrameworkId,
        task: &TaskId,
        uuid: &str,
    ) {
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

    /// Asks `agent` to kill `tasks` (nothing is sent for none).
    pub(super) fn kill_on_agent(&self, agent: &AgentId, tasks: Vec<(FrameworkId, TaskId)>) {
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
}
