//! Agents in the core: registration (with reconciliation of the tasks an agent reports
//! against what the master believes), and what happens when an agent disconnects, goes
//! silent, or stays away long enough to be removed. The messages and status updates on a
//! registered agent's stream live in `agent_messages`; the timers that decide "silent" and
//! "long enough" live in `timers`.

use std::collections::{BTreeSet, HashSet};

use tracing::{info, info_span, warn};
use wasmos_api::convert::{self, ConvertError};
use wasmos_api::proto as pb;
use wasmos_api::{AgentId, FrameworkId, TaskId, TaskInfo, TaskState};

use super::outbound::reason;
use super::{AgentConn, AgentTx, ConnId, CoreError, Event, MAX_NAME_LEN, MasterCore, ToAgent};
use crate::allocator::Millis;
use crate::registry::{AgentRecord, AgentState, Command};
use crate::tasks::{TaskBook, TaskRecord};

/// Longest reason an agent gives for being unhealthy that the master keeps; longer ones are
/// cut.
pub(super) const MAX_UNHEALTHY_REASON_BYTES: usize = 1024;

/// Whether the task is in the book with no update awaiting acknowledgement.
fn rec_pending_none(tasks: &TaskBook, fw: &FrameworkId, task: &TaskId) -> bool {
    tasks.get(fw, task).is_some_and(|r| r.pending_ack.is_none())
}

impl MasterCore {
    /// Handles the first message of an agent stream (register or re-register). The message
    /// and the tasks it reports are checked before the books change; on error the caller
    /// refuses the stream with the message (the gRPC server answers `FAILED_PRECONDITION`
    /// whatever the error's kind, as it always has).
    pub fn agent_register(
        &mut self,
        conn: ConnId,
        tx: AgentTx,
        reg: pb::agent_message::Register,
        now: Millis,
    ) -> Result<AgentId, CoreError> {
        let unhealthy_reason = reg.unhealthy_reason;
        let isolation = (
            reg.isolation
                .into_iter()
                .take(16)
                .map(|p| p.chars().filter(|c| !c.is_control()).take(64).collect())
                .collect(),
            reg.isolation_warning
                .chars()
                .filter(|c| !c.is_control())
                .take(1024)
                .collect(),
        );
        let info = reg
            .info
            .ok_or_else(|| CoreError::Invalid("register.info is missing".into()))?;
        if info.hostname.len() > MAX_NAME_LEN || info.address.len() > MAX_NAME_LEN {
            return Err(CoreError::Invalid(format!(
                "hostname and address must be at most {MAX_NAME_LEN} bytes"
            )));
        }
        let id: AgentId = if info.id.is_empty() {
            AgentId::new(self.mint("agent")).map_err(|e| CoreError::Internal(e.to_string()))?
        } else {
            convert::id("register.info.id", &info.id)?
        };
        let total = convert::resources(info.resources);
        let max = wasmos_api::launch::MAX_RESOURCE;
        if total.millicpus > max || total.mem_mb > max || total.disk_mb > max {
            return Err(CoreError::Invalid(format!(
                "agent resources {total} exceed the per-resource limit {max}"
            )));
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
                Err(e) => {
                    return Err(CoreError::Invalid(format!(
                        "a reported task is malformed: {e}"
                    )));
                }
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
        }))?;
        if let Err(e) = self.allocator.add_agent(id.clone(), total) {
            warn!(error = %e, "allocator refused an agent");
            return Err(e.into());
        }
        self.agents.insert(
            id.clone(),
            AgentConn {
                conn,
                tx,
                last_heartbeat_ms: now,
                unhealthy: None,
                isolation,
            },
        );
        self.set_agent_health(&id, unhealthy_reason, now);

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
                // The master declared it LOST (and the framework acknowledged that): it stays
                // lost, and dies here.
                None if self.tombstones.holds(&id, &fw, &task.task_id, now) => {
                    warn!(framework_id = %fw, task_id = %task.task_id, "a task this master declared lost was reported again; killing it");
                    to_kill.push((fw, task.task_id));
                    continue;
                }
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
                        launched_ms: now,
                        pending_ack: None,
                        pending_from_master: None,
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
                self.send_master_update(&fw, &task.task_id, reason::AGENT_REREGISTERED, now);
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

    /// Marks a task LOST and tells its framework, by an update the master makes: the task
    /// stays in the book, `LOST`, until the framework acknowledges it (resent meanwhile), and
    /// a tombstone after that, so that its agent reporting it again is told to kill it. A
    /// task already terminal keeps its own pending update (a terminal one with none is
    /// forgotten). `counted` says whether the allocator still counts the task's resources on
    /// its agent.
    pub(super) fn lose_task(
        &mut self,
        fw: &FrameworkId,
        task: &TaskId,
        why: &str,
        reason: &'static str,
        counted: bool,
        now: Millis,
    ) {
        let Some(rec) = self.tasks.get(fw, task) else {
            return;
        };
        if rec.state.is_terminal() {
            if rec.pending_ack.is_none() {
                self.tasks.remove(fw, task);
            }
            return;
        }
        let (agent, resources) = (rec.agent.clone(), rec.resources);
        if let Err(e) = self
            .tasks
            .update(fw, task, TaskState::Lost, why.to_string(), None, now)
        {
            warn!(framework_id = %fw, task_id = %task, error = %e, "marking a task lost");
            return;
        }
        // Remembered after the record goes, so that its agent reporting it later kills it.
        self.tombstones.lay(&agent, fw, task, now);
        if counted {
            let _ = self.allocator.recover(fw, &agent, resources, 0, now);
        }
        self.send_master_update(fw, task, reason, now);
    }

    /// Records what the agent says of its health (`reason` empty: healthy). An agent that
    /// turns unhealthy has its offers rescinded and nothing of it is offered until it reports
    /// healthy again; its tasks are left alone (they may still run and report).
    pub(super) fn set_agent_health(&mut self, agent: &AgentId, reason: String, now: Millis) {
        let reason = (!reason.is_empty()).then(|| {
            let mut r = reason;
            let mut cut = r.len().min(MAX_UNHEALTHY_REASON_BYTES);
            while !r.is_char_boundary(cut) {
                cut -= 1;
            }
            r.truncate(cut);
            r
        });
        let Some(c) = self.agents.get_mut(agent) else {
            return;
        };
        if c.unhealthy == reason {
            return;
        }
        c.unhealthy = reason.clone();
        match &reason {
            Some(why) => {
                warn!(agent_id = %agent, reason = %why, "agent unhealthy; its resources are not offered");
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
            }
            None => info!(agent_id = %agent, "agent healthy again; its resources are offered"),
        }
        if let Err(e) = self.allocator.set_agent_usable(agent, reason.is_none()) {
            warn!(agent_id = %agent, error = %e, "allocator");
        }
        self.want_allocation();
    }

    /// Why a connected agent said it cannot take tasks; `None` while it can (or is not
    /// connected).
    pub fn agent_unhealthy_reason(&self, agent: &AgentId) -> Option<&str> {
        self.agents.get(agent).and_then(|c| c.unhealthy.as_deref())
    }

    /// The native-task isolation a connected agent reported: the pieces on, and its warning.
    pub fn agent_isolation(&self, agent: &AgentId) -> (Vec<String>, String) {
        self.agents
            .get(agent)
            .map(|c| c.isolation.clone())
            .unwrap_or_default()
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

    /// The agent's stream ended: it is unreachable until it re-registers.
    pub fn agent_disconnected(&mut self, agent: &AgentId, conn: ConnId, now: Millis) {
        if self.agents.get(agent).map(|c| c.conn) != Some(conn) {
            return;
        }
        self.mark_unreachable(agent, now, "its connection closed");
    }

    /// The agent stopped talking: its offers are rescinded, its live tasks become
    /// `UNREACHABLE`, and their frameworks get a `Failure` event.
    pub(super) fn mark_unreachable(&mut self, agent: &AgentId, now: Millis, why: &str) {
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
            if self
                .tasks
                .update(&fw, &task, TaskState::Unreachable, message, None, now)
                .is_err()
            {
                continue;
            }
            self.send_master_update(&fw, &task, reason::AGENT_UNREACHABLE, now);
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

    /// Forgets an agent that stayed unreachable past its removal timeout; its tasks are `LOST`.
    pub(super) fn remove_agent(&mut self, agent: &AgentId, now: Millis) {
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
}
