//! A framework's life in the core: subscription (new or failover), its stored state and how
//! the master hosts it, its outcome, its scheduler's disconnection, and its removal. The calls
//! a subscribed scheduler makes live in `schedulers` and `launch`.

use std::collections::BTreeSet;

use tracing::{info, warn};
use wasmos_api::convert;
use wasmos_api::proto as pb;
use wasmos_api::{AgentId, FrameworkId, TaskId, TaskState, TaskStatus, WasmBudget};

use super::{
    ConnId, CoreError, Event, MAX_NAME_LEN, MasterCore, SchedulerConn, SchedulerTx, ToAgent,
};
use crate::allocator::Millis;
use crate::blobs::{BlobError, Digest};
use crate::history::{CompletedFramework, FrameworkEnd};
use crate::registry::{
    Command, FrameworkOutcome, FrameworkRecord, FrameworkState, RegistryError, validate_role,
};

/// Longest failover timeout honoured (one year).
const MAX_FAILOVER_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

impl MasterCore {
    /// Handles the first call of a scheduler stream. On success the framework is connected
    /// through `tx`; on error the caller refuses the stream with the message (the gRPC
    /// server answers `FAILED_PRECONDITION` whatever the error's kind, as it always has).
    pub fn subscribe(
        &mut self,
        conn: ConnId,
        tx: SchedulerTx,
        info: Option<pb::FrameworkInfo>,
        now: Millis,
    ) -> Result<FrameworkId, CoreError> {
        let info =
            info.ok_or_else(|| CoreError::Invalid("subscribe.framework_info is missing".into()))?;
        if info.name.is_empty() || info.name.len() > MAX_NAME_LEN {
            return Err(CoreError::Invalid(format!(
                "framework name must be 1..{MAX_NAME_LEN} bytes"
            )));
        }
        if info.principal.len() > MAX_NAME_LEN {
            return Err(CoreError::Invalid(format!(
                "principal must be at most {MAX_NAME_LEN} bytes"
            )));
        }
        for (field, text) in [
            ("framework_info.name", &info.name),
            ("framework_info.principal", &info.principal),
        ] {
            if let Some((at, c)) = wasmos_api::limits::first_control_char(text) {
                return Err(CoreError::Invalid(format!(
                    "{field} holds the control character U+{:04X} at byte {at}; it is shown to \
                     people, so give printable text",
                    c as u32
                )));
            }
        }
        validate_role(&info.role)?;
        if let Some(allowed) = &self.config.allowed_roles
            && !allowed.contains(&info.role)
        {
            return Err(CoreError::Precondition(format!(
                "role {:?} is not allowed on this cluster",
                info.role
            )));
        }
        let failover = info.failover_timeout_seconds;
        if !failover.is_finite() || failover < 0.0 {
            return Err(CoreError::Invalid(format!(
                "failover_timeout_seconds {failover} must be a finite number >= 0"
            )));
        }
        let failover_timeout_ms = (failover.min(MAX_FAILOVER_SECONDS) * 1000.0) as Millis;
        let wasm_budget = WasmBudget::from_wire(
            "framework_info.wasm_task_timeout_seconds",
            info.wasm_task_timeout_seconds,
            "framework_info.wasm_task_fuel",
            info.wasm_task_fuel,
        )
        .map_err(CoreError::Invalid)?;
        let component_sha256 = if info.component_sha256.is_empty() {
            None
        } else {
            let digest = Digest::parse(&info.component_sha256)
                .map_err(|e| CoreError::Invalid(e.to_string()))?;
            if !self.blobs.contains(&digest) {
                return Err(CoreError::NotFound(BlobError::Unknown(digest).to_string()));
            }
            Some(digest.to_string())
        };

        let id = if info.id.is_empty() {
            let id = FrameworkId::new(self.mint("fw"))
                .map_err(|e| CoreError::Internal(e.to_string()))?;
            self.commit(Command::AddFramework(FrameworkRecord {
                id: id.clone(),
                name: info.name,
                role: info.role.clone(),
                principal: info.principal,
                failover_timeout_ms,
                state: FrameworkState::Connected,
                component_sha256,
                wasm_budget,
            }))?;
            if let Err(e) = self.allocator.add_framework(id.clone(), &info.role, true) {
                warn!(framework_id = %id, error = %e, "allocator refused a new framework");
            }
            self.tasks.history_mut().registered(id.clone(), now);
            info!(framework_id = %id, role = %info.role, "framework subscribed");
            id
        } else {
            let id: FrameworkId = convert::id("framework_info.id", &info.id)?;
            let Some(rec) = self.registry.frameworks.get(&id) else {
                return Err(if self.registry.removed_frameworks.contains(&id) {
                    RegistryError::FrameworkTornDown(id).into()
                } else {
                    CoreError::NotFound(format!(
                        "framework {id} is not registered; subscribe without an id"
                    ))
                });
            };
            if rec.role != info.role {
                return Err(CoreError::Precondition(format!(
                    "framework {id} has role {:?}; a re-subscription cannot change it to {:?}",
                    rec.role, info.role
                )));
            }
            if component_sha256.is_some() && component_sha256 != rec.component_sha256 {
                return Err(CoreError::Precondition(format!(
                    "framework {id} has component {:?}; a re-subscription cannot change it to \
                     {:?} (subscribe without an id to run a new component)",
                    rec.component_sha256.as_deref().unwrap_or(""),
                    info.component_sha256
                )));
            }
            let (asked, has) = (wasm_budget, rec.wasm_budget);
            if (asked.timeout.is_some() && asked.timeout != has.timeout)
                || (asked.fuel.is_some() && asked.fuel != has.fuel)
            {
                return Err(CoreError::Precondition(format!(
                    "framework {id} has wasm_task_timeout_seconds {:?} and wasm_task_fuel {:?}; \
                     a re-subscription cannot change them to {:?} and {:?} (leave them unset, \
                     or subscribe without an id)",
                    has.timeout_seconds(),
                    has.fuel,
                    asked.timeout_seconds(),
                    asked.fuel
                )));
            }
            self.commit(Command::UpdateFramework {
                id: id.clone(),
                name: info.name,
                failover_timeout_ms,
            })?;
            self.commit(Command::SetFrameworkState {
                id: id.clone(),
                state: FrameworkState::Connected,
            })?;
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
        self.end_idle(&id, true);
        self.send_scheduler(
            &id,
            Event::Subscribed(pb::scheduler_event::Subscribed {
                framework_id: id.to_string(),
                heartbeat_interval_seconds: self.config.scheduler_heartbeat_interval.as_secs_f64(),
            }),
        );
        // Everything it has not acknowledged, again.
        // (Unacknowledged answers about tasks it does not hold follow at the next resend scan.)
        let pending: Vec<(TaskStatus, &'static str)> = self
            .tasks
            .of_framework(&id)
            .into_iter()
            .filter_map(Self::pending_of)
            .collect();
        for (status, why) in pending {
            self.send_update(&id, &status, why, now);
        }
        self.want_allocation();
        Ok(id)
    }

    /// Stores a framework's key-value state (`driver.state-put` of a hosted scheduler),
    /// through the registry; refused with [`CoreError::Exhausted`] when a size cap is hit.
    pub fn put_framework_state(
        &mut self,
        fw: &FrameworkId,
        key: String,
        value: Vec<u8>,
    ) -> Result<(), CoreError> {
        self.commit(Command::PutFrameworkState {
            id: fw.clone(),
            key,
            value,
        })
        .map_err(CoreError::from)
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
    /// Refused with [`CoreError::NotFound`] when `fw` is not registered.
    pub fn set_hosted(
        &mut self,
        fw: &FrameworkId,
        spec: crate::registry::HostedSpec,
    ) -> Result<(), CoreError> {
        self.commit(Command::SetHosted {
            id: fw.clone(),
            spec,
        })
        .map_err(CoreError::from)
    }

    /// Records that hosted framework `fw` was submitted with the token of `accessor`: its
    /// scheduler acts with that token's rights (`acl::Acl::authorize_hosted_native`).
    pub fn set_submitter(&mut self, fw: &FrameworkId, accessor: String) -> Result<(), CoreError> {
        self.commit(Command::SetSubmitter {
            id: fw.clone(),
            accessor,
        })
        .map_err(CoreError::from)
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

    /// Removes a framework for good: kills its tasks, drops its offers, forgets it.
    pub(super) fn remove_framework(&mut self, fw: &FrameworkId, now: Millis, why: &str) {
        info!(framework_id = %fw, why, "removing framework");
        self.progress.remove(fw);
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
            // As Mesos does: a live task of a removed framework ends KILLED (its agent is
            // told to shut the framework down), and is kept in the history as such.
            let _ = self.tasks.update(
                fw,
                &task,
                TaskState::Killed,
                format!("its framework was removed: {why}"),
                None,
                now,
            );
            self.tasks.remove(fw, &task);
            self.unacked.remove(&(fw.clone(), task));
        }
        self.record_completed_framework(fw, now, why);
        self.tasks.forget_framework(fw);
        self.forget_answers_of(fw);
        self.idle.remove(fw);
        self.early_rescinds.remove(fw);
        if let Err(e) = self.allocator.remove_framework(fw) {
            warn!(framework_id = %fw, error = %e, "allocator");
        }
        let _ = self.commit(Command::RemoveFramework { id: fw.clone() });
        if self.schedulers.contains_key(fw) {
            self.scheduler_error(fw, format!("framework removed: {why}"), true);
            self.schedulers.remove(fw);
        }
        self.want_allocation();
    }

    /// Moves `fw` (being removed) and its completed tasks into the history, with the outcome
    /// its registry record holds (torn down, with `why`, when it has none).
    fn record_completed_framework(&mut self, fw: &FrameworkId, now: Millis, why: &str) {
        let Some(rec) = self.registry.frameworks.get(fw) else {
            self.tasks.history_mut().forget(fw);
            return;
        };
        let (end, text) = match self.registry.outcomes.get(fw) {
            Some(FrameworkOutcome::Succeeded(r)) => (FrameworkEnd::Succeeded, r.as_str()),
            Some(FrameworkOutcome::Failed(e)) => (FrameworkEnd::Failed, e.as_str()),
            None => (FrameworkEnd::TornDown, why),
        };
        let counts = self.tasks.ended_counts(fw);
        let completed = CompletedFramework {
            id: fw.clone(),
            name: rec.name.clone(),
            role: rec.role.clone(),
            principal: rec.principal.clone(),
            end,
            text: text.to_string(),
            registered_ms: None,
            ended_ms: now,
            tasks_finished: counts.finished,
            tasks_failed: counts.failed,
            tasks: Default::default(),
        };
        self.tasks.history_mut().complete_framework(completed);
    }
}
