//! What an operator asks of the core (`OperatorService`): killing one task, tearing a
//! framework down, setting role weights and quotas. Each goes through the same paths as a
//! framework's own calls; refusals are [`CoreError`]s, which the server turns into gRPC codes
//! with [`to_status`](super::to_status). The read-only `cluster_state` lives in `view`.

use std::collections::BTreeSet;

use tracing::info;
use wasmos_api::proto as pb;
use wasmos_api::{AgentId, FrameworkId, TaskId, TaskState};

use super::{CoreError, MasterCore};
use crate::allocator::{Millis, Quota};
use crate::registry::{Command, RegistryError, validate_role};
use crate::tasks::TaskRecord;

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

impl MasterCore {
    /// Kills a live task for an operator, through the same path as its framework's own `Kill`
    /// call: the agent is asked to kill it and its update (`TASK_KILLED`) goes to the framework.
    /// `framework` may be `None` when the task id is used by one framework only.
    ///
    /// Refused with [`CoreError::NotFound`] (no such framework or task),
    /// [`CoreError::Precondition`] (the task already ended, or its id names tasks of more than
    /// one framework) or [`CoreError::Unavailable`] (its agent is unreachable).
    pub fn operator_kill_task(
        &mut self,
        framework: Option<&FrameworkId>,
        task: &TaskId,
        now: Millis,
    ) -> Result<OperatorKill, CoreError> {
        if let Some(fw) = framework
            && !self.registry.frameworks.contains_key(fw)
        {
            return Err(CoreError::NotFound(format!(
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
                    Some(r) => CoreError::Precondition(format!(
                        "task {task} of framework {} has already ended ({})",
                        r.framework, r.state
                    )),
                    None => CoreError::NotFound(match framework {
                        Some(fw) => format!("framework {fw} has no task {task}"),
                        None => format!("no framework has a task {task}"),
                    }),
                });
            }
            many => {
                let mut frameworks: Vec<String> =
                    many.iter().map(|r| r.framework.to_string()).collect();
                frameworks.sort();
                return Err(CoreError::Precondition(format!(
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
            return Err(CoreError::Unavailable(format!(
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
    /// scheduler). Refused with [`CoreError::NotFound`] for a framework not (or no longer)
    /// registered.
    pub fn operator_teardown(
        &mut self,
        fw: &FrameworkId,
        now: Millis,
    ) -> Result<OperatorTeardown, CoreError> {
        if !self.registry.frameworks.contains_key(fw) {
            return Err(CoreError::NotFound(
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

    /// Sets role weights: all are checked before any is applied. Refused with
    /// [`CoreError::Invalid`] for a bad role name or a weight that is not a finite number above
    /// zero.
    pub fn set_weights(&mut self, weights: Vec<(String, f64)>) -> Result<(), CoreError> {
        for (role, weight) in &weights {
            validate_role(role)?;
            if !weight.is_finite() || *weight <= 0.0 {
                return Err(RegistryError::InvalidWeight {
                    role: role.clone(),
                    weight: *weight,
                }
                .into());
            }
        }
        for (role, weight) in weights {
            self.commit(Command::SetWeight {
                role: role.clone(),
                weight,
            })?;
            self.allocator.set_weight(&role, weight)?;
        }
        self.want_allocation();
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) a role's quota. Refused with [`CoreError::Invalid`]
    /// for a bad role name or a guarantee above the limit.
    pub fn set_quota(&mut self, role: String, quota: Option<Quota>) -> Result<(), CoreError> {
        self.commit(Command::SetQuota {
            role: role.clone(),
            quota,
        })?;
        self.allocator.set_quota(&role, quota.unwrap_or_default())?;
        self.want_allocation();
        Ok(())
    }
}
