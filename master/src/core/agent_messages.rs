//! What a registered agent sends on its stream: heartbeats, status updates (checked against
//! the task book, recorded, forwarded to the framework, acknowledged once the framework has
//! them) and executor messages for schedulers. Registration and losing an agent live in
//! `agents`.

use tracing::{debug, info_span, warn};
use wasmos_api::convert::{self, ConvertError};
use wasmos_api::proto as pb;
use wasmos_api::{AgentId, FrameworkId, TaskStatus};

use super::outbound::reason;
use super::{ConnId, Event, MasterCore, ToAgent};
use crate::allocator::Millis;

impl MasterCore {
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
            None => {}
            Some(FromAgent::Heartbeat(hb)) => {
                self.set_agent_health(agent, hb.unhealthy_reason, now);
            }
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
            // Answered before the core, by the server's log proxy (`server/logs.rs`).
            Some(FromAgent::LogChunk(_)) => {}
            Some(FromAgent::ExecutorMessage(m)) => {
                if let Ok(fw) =
                    convert::id::<FrameworkId>("executor_message.framework_id", &m.framework_id)
                    && m.data.len() <= wasmos_api::limits::MAX_FRAMEWORK_MESSAGE_BYTES
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

    /// One status update from an agent: checked against the task book, then recorded and
    /// forwarded to the framework, which acknowledges it through the master.
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
        // Agents cut it already; an older or misbehaving one is not trusted to.
        status.message = wasmos_api::limits::cut_status_message(status.message);
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
                // One per task at most (a task the master forgot after a failover or a
                // teardown race): debug, not a line per task at info or above.
                debug!("update for a task the master does not know; acknowledged and dropped");
                self.ack_to_agent(agent, &fw, &task, &uuid);
                if !status.state.is_terminal() {
                    self.kill_on_agent(agent, vec![(fw, task)]);
                }
                return;
            }
            Some(rec) if &rec.agent != agent => {
                debug!(owner = %rec.agent, "update from an agent that does not run the task; ignored");
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
                rec.pending_from_master = None;
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
}
