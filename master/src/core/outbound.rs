//! Everything the core sends: events to schedulers, messages to agents, and status updates
//! (remembered until acknowledged, so `timers` can resend them). Sends never block: a full or
//! closed queue drops the event and says so in the log. What to send, and when, is decided by
//! the callers in the other files.

use tracing::debug;
use wasmos_api::convert;
use wasmos_api::proto as pb;
use wasmos_api::{AgentId, FrameworkId, TaskId, TaskStatus};

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

impl MasterCore {
    /// Queues `event` for `fw`'s scheduler; false when it is not connected or its queue is
    /// full or closed (the event is then dropped).
    pub(super) fn send_scheduler(&self, fw: &FrameworkId, event: Event) -> bool {
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
    /// by `tick` meanwhile, whether this send got through or not.
    pub(super) fn send_update(
        &mut self,
        fw: &FrameworkId,
        status: &TaskStatus,
        why: &str,
        now: Millis,
    ) {
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
