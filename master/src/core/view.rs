//! The read-only view: [`MasterCore::cluster_state`], the cluster as this master sees it
//! (frameworks, agents, tasks, roles), as `OperatorService.GetState` returns it. Nothing here
//! changes the core.

use std::collections::{BTreeSet, HashMap, HashSet};

use wasmos_api::proto as pb;
use wasmos_api::{AgentId, FrameworkId, Resources, convert};

use super::MasterCore;
use crate::allocator::Millis;
use crate::registry::AgentState;

/// Number and resources of the non-terminal tasks, by agent or framework.
type LiveTotals<'a, K> = HashMap<&'a K, (u32, Resources)>;

impl MasterCore {
    /// Count and resources of the non-terminal tasks, per agent and per framework.
    fn live_task_totals(&self) -> (LiveTotals<'_, AgentId>, LiveTotals<'_, FrameworkId>) {
        let mut by_agent: HashMap<&AgentId, (u32, Resources)> = HashMap::new();
        let mut by_framework: HashMap<&FrameworkId, (u32, Resources)> = HashMap::new();
        for r in self.tasks.all().filter(|r| !r.state.is_terminal()) {
            for entry in [
                by_agent.entry(&r.agent).or_default(),
                by_framework.entry(&r.framework).or_default(),
            ] {
                entry.0 += 1;
                entry.1 = entry.1.checked_add(&r.resources).unwrap_or(entry.1);
            }
        }
        (by_agent, by_framework)
    }

    /// The cluster as this master sees it; `hosted` names the frameworks whose scheduler the
    /// master hosts (the framework host's running set, which the core does not track).
    /// Without placement feedback (`waiting` empty): [`MasterCore::cluster_state_at`] has it.
    pub fn cluster_state(&self, hosted: &HashSet<FrameworkId>) -> pb::ClusterState {
        self.cluster_state_at(hosted, 0)
    }

    /// [`MasterCore::cluster_state`] with each framework's placement feedback as of `now`
    /// (why it waits, see `placement`; nothing has waited at time 0).
    pub fn cluster_state_at(&self, hosted: &HashSet<FrameworkId>, now: Millis) -> pb::ClusterState {
        let (live_by_agent, live_by_framework) = self.live_task_totals();
        let waiting = if now == 0 {
            Default::default()
        } else {
            self.waiting_frameworks(now)
        };
        let frameworks = self
            .registry
            .frameworks
            .values()
            .map(|f| (f, self.tasks.ended_counts(&f.id)))
            .map(|(f, ended)| pb::FrameworkSummary {
                info: Some(pb::FrameworkInfo {
                    id: f.id.to_string(),
                    name: f.name.clone(),
                    role: f.role.clone(),
                    principal: f.principal.clone(),
                    failover_timeout_seconds: f.failover_timeout_ms as f64 / 1000.0,
                    component_sha256: f.component_sha256.clone().unwrap_or_default(),
                    ..Default::default()
                }),
                connected: self.schedulers.contains_key(&f.id),
                allocated: self.allocator.framework_allocation(&f.id).map(Into::into),
                offers: self.offers.of_framework(&f.id).len() as u32,
                active_tasks: live_by_framework.get(&f.id).map_or(0, |l| l.0),
                used: Some(
                    live_by_framework
                        .get(&f.id)
                        .map_or(Resources::ZERO, |l| l.1)
                        .into(),
                ),
                hosted: hosted.contains(&f.id),
                tasks_finished: ended.finished,
                tasks_failed: ended.failed,
                tasks_total: self.progress_of(&f.id).and_then(|p| p.tasks_total),
                waiting: waiting.get(&f.id).map(|w| w.0.clone()).unwrap_or_default(),
                waiting_since_unix_ms: waiting.get(&f.id).map_or(0, |w| w.1),
                registered_unix_ms: self.tasks.history().registered_ms(&f.id).unwrap_or(0),
            })
            .collect();
        let agents = self
            .registry
            .agents
            .values()
            .map(|a| {
                let (isolation, isolation_warning) = self.agent_isolation(&a.id);
                pb::AgentSummary {
                    isolation,
                    isolation_warning,
                    info: Some(pb::AgentInfo {
                        id: a.id.to_string(),
                        hostname: a.hostname.clone(),
                        address: a.address.clone(),
                        resources: Some(a.resources.into()),
                        attributes: convert::attributes_pb(&a.attributes),
                    }),
                    reachable: matches!(a.state, AgentState::Active),
                    available: Some(
                        self.allocator
                            .agent_available(&a.id)
                            .unwrap_or_default()
                            .into(),
                    ),
                    active_tasks: live_by_agent.get(&a.id).map_or(0, |l| l.0),
                    unhealthy_reason: self
                        .agent_unhealthy_reason(&a.id)
                        .unwrap_or_default()
                        .to_string(),
                    used: Some(
                        live_by_agent
                            .get(&a.id)
                            .map_or(Resources::ZERO, |l| l.1)
                            .into(),
                    ),
                }
            })
            .collect();
        let mut tasks: Vec<pb::TaskSummary> = self
            .tasks
            .all()
            .map(|r| pb::TaskSummary {
                framework_id: r.framework.to_string(),
                status: Some(convert::status_to_pb(&Self::status_of(r, None), "")),
                resources: Some(r.resources.into()),
                name: r.name.clone(),
            })
            .collect();
        tasks.sort_by(|a, b| {
            (&a.framework_id, a.status.as_ref().map(|s| &s.task_id))
                .cmp(&(&b.framework_id, b.status.as_ref().map(|s| &s.task_id)))
        });
        let mut role_names: BTreeSet<String> = self
            .registry
            .frameworks
            .values()
            .map(|f| f.role.clone())
            .collect();
        role_names.extend(self.registry.weights.keys().cloned());
        role_names.extend(self.registry.quotas.keys().cloned());
        let roles = role_names
            .into_iter()
            .map(|role| {
                let quota = self.registry.quotas.get(&role).copied().unwrap_or_default();
                pb::RoleSummary {
                    weight: self.registry.weight(&role),
                    guarantee: Some(quota.guarantee.into()),
                    limit: quota.limit.map(Into::into),
                    allocated: Some(
                        self.allocator
                            .role_allocation(&role)
                            .unwrap_or_default()
                            .into(),
                    ),
                    role,
                }
            })
            .collect();
        pb::ClusterState {
            frameworks,
            agents,
            tasks,
            roles,
            total: Some(self.allocator.cluster_total().into()),
            outstanding_offers: self.offers.len() as u64,
            hosted_schedulers: hosted.len() as u32,
        }
    }
}
