//! The JSON the HTTP API answers with: plain serde types, documented for the OpenAPI
//! document (utoipa), built from the published view or from the gRPC handlers' answers.
//! Times are unix milliseconds, CPU in thousandths of a core, memory and disk in MiB.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;
use wasmos_api::proto as pb;

/// An amount of resources.
#[derive(Clone, Copy, Debug, Default, Serialize, ToSchema)]
pub struct ResourcesJson {
    /// CPU in thousandths of a core (1500 = 1.5 cores).
    pub millicpus: u64,
    /// Memory in MiB.
    pub mem_mb: u64,
    /// Disk in MiB.
    pub disk_mb: u64,
}

impl From<Option<&pb::Resources>> for ResourcesJson {
    fn from(r: Option<&pb::Resources>) -> Self {
        r.map_or_else(Self::default, |r| ResourcesJson {
            millicpus: r.millicpus,
            mem_mb: r.mem_mb,
            disk_mb: r.disk_mb,
        })
    }
}

impl From<wasmos_api::Resources> for ResourcesJson {
    fn from(r: wasmos_api::Resources) -> Self {
        let p: pb::Resources = r.into();
        Self::from(Some(&p))
    }
}

impl ResourcesJson {
    /// `self + o`, saturating.
    pub fn plus(self, o: ResourcesJson) -> Self {
        ResourcesJson {
            millicpus: self.millicpus.saturating_add(o.millicpus),
            mem_mb: self.mem_mb.saturating_add(o.mem_mb),
            disk_mb: self.disk_mb.saturating_add(o.disk_mb),
        }
    }

    /// `self - o`, saturating at zero.
    pub fn minus(self, o: ResourcesJson) -> Self {
        ResourcesJson {
            millicpus: self.millicpus.saturating_sub(o.millicpus),
            mem_mb: self.mem_mb.saturating_sub(o.mem_mb),
            disk_mb: self.disk_mb.saturating_sub(o.disk_mb),
        }
    }
}

/// The cluster at a glance (`GET /api/v1/cluster`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ClusterJson {
    /// Id of the master that leads (1 for a master kept in memory); absent when unknown.
    pub leader_id: Option<u64>,
    /// The master's version.
    pub version: String,
    /// How long this master process has run, in seconds.
    pub uptime_seconds: f64,
    /// How old the view answered from is, in milliseconds (at most about 250).
    pub view_age_ms: u64,
    /// Agents admitted, reachable and not.
    pub agents: AgentCounts,
    /// Registered frameworks the caller may see.
    pub frameworks: FrameworkCounts,
    /// Known tasks the caller may see, by state (`running`, `staging`, ...).
    pub tasks: BTreeMap<String, u64>,
    /// The cluster's resources.
    pub resources: ClusterResources,
}

/// Agents by state.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct AgentCounts {
    /// Every admitted agent.
    pub total: u64,
    /// Those that answer.
    pub reachable: u64,
    /// Those that stopped answering.
    pub unreachable: u64,
}

/// Frameworks by state.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct FrameworkCounts {
    /// Registered.
    pub active: u64,
    /// Whose scheduler is connected.
    pub connected: u64,
    /// Whose scheduler this master hosts.
    pub hosted: u64,
}

/// The cluster's resources, as Mesos's home page shows them.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ClusterResources {
    /// Of every reachable agent.
    pub total: ResourcesJson,
    /// Held by running (non-terminal) tasks.
    pub used: ResourcesJson,
    /// In outstanding offers.
    pub offered: ResourcesJson,
    /// Neither used nor offered.
    pub idle: ResourcesJson,
}

/// An agent (`GET /api/v1/agents`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentJson {
    /// Its id.
    pub id: String,
    /// Its host name.
    pub hostname: String,
    /// The address it registered from.
    pub address: String,
    /// Whether it answers.
    pub reachable: bool,
    /// What it offers in all.
    pub resources: ResourcesJson,
    /// What is not allocated.
    pub available: ResourcesJson,
    /// What its live tasks use.
    pub used: ResourcesJson,
    /// Its live tasks.
    pub active_tasks: u32,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
    /// Why it is unhealthy; empty when healthy.
    pub unhealthy_reason: String,
    /// The isolation it enforces (`cgroup-v2`, ...).
    pub isolation: Vec<String>,
}

impl From<&pb::AgentSummary> for AgentJson {
    fn from(a: &pb::AgentSummary) -> Self {
        let info = a.info.clone().unwrap_or_default();
        AgentJson {
            id: info.id,
            hostname: info.hostname,
            address: info.address,
            reachable: a.reachable,
            resources: info.resources.as_ref().into(),
            available: a.available.as_ref().into(),
            used: a.used.as_ref().into(),
            active_tasks: a.active_tasks,
            attributes: info
                .attributes
                .into_iter()
                .map(|at| (at.key, at.value))
                .collect(),
            unhealthy_reason: a.unhealthy_reason.clone(),
            isolation: a.isolation.clone(),
        }
    }
}

/// A registered framework (`GET /api/v1/frameworks`, `/frameworks/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct FrameworkJson {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The principal that registered it.
    pub principal: String,
    /// Whether its scheduler is connected.
    pub connected: bool,
    /// Whether this master hosts its scheduler.
    pub hosted: bool,
    /// Allocated to it (offered and used).
    pub allocated: ResourcesJson,
    /// Used by its live tasks.
    pub used: ResourcesJson,
    /// Its outstanding offers.
    pub offers: u32,
    /// Its live tasks.
    pub active_tasks: u32,
    /// Its tasks that ended `finished`.
    pub tasks_finished: u64,
    /// Its tasks that ended otherwise.
    pub tasks_failed: u64,
    /// How many tasks it will run in all, when its scheduler said so; absent when unknown.
    pub tasks_total: Option<u64>,
    /// Why it has waited for resources for more than a few seconds ("waiting: no agent
    /// registered"); empty when nothing waits.
    pub waiting: String,
    /// Since when it waits (unix ms); 0 when `waiting` is empty.
    pub waiting_since_unix_ms: u64,
    /// When it registered with this leader (unix ms); 0 when unknown.
    pub registered_unix_ms: u64,
}

impl From<&pb::FrameworkSummary> for FrameworkJson {
    fn from(f: &pb::FrameworkSummary) -> Self {
        let info = f.info.clone().unwrap_or_default();
        FrameworkJson {
            id: info.id,
            name: info.name,
            role: info.role,
            principal: info.principal,
            connected: f.connected,
            hosted: f.hosted,
            allocated: f.allocated.as_ref().into(),
            used: f.used.as_ref().into(),
            offers: f.offers,
            active_tasks: f.active_tasks,
            tasks_finished: f.tasks_finished,
            tasks_failed: f.tasks_failed,
            tasks_total: f.tasks_total,
            waiting: f.waiting.clone(),
            waiting_since_unix_ms: f.waiting_since_unix_ms,
            registered_unix_ms: f.registered_unix_ms,
        }
    }
}

/// A framework that ended (`GET /api/v1/frameworks?completed=true`).
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletedFrameworkJson {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Its principal.
    pub principal: String,
    /// How it ended: `succeeded`, `failed` or `torn_down`.
    pub end: String,
    /// Its result or failure reason.
    pub text: String,
    /// When it registered (unix ms; 0 when unknown).
    pub registered_unix_ms: u64,
    /// When it ended (unix ms).
    pub ended_unix_ms: u64,
    /// Its tasks that finished.
    pub tasks_finished: u64,
    /// Its tasks that ended otherwise.
    pub tasks_failed: u64,
}

impl From<pb::CompletedFramework> for CompletedFrameworkJson {
    fn from(f: pb::CompletedFramework) -> Self {
        let end = match pb::FrameworkEnd::try_from(f.end) {
            Ok(pb::FrameworkEnd::Succeeded) => "succeeded",
            Ok(pb::FrameworkEnd::Failed) => "failed",
            Ok(pb::FrameworkEnd::TornDown) => "torn_down",
            _ => "unknown",
        };
        CompletedFrameworkJson {
            id: f.framework_id,
            name: f.name,
            role: f.role,
            principal: f.principal,
            end: end.into(),
            text: f.text,
            registered_unix_ms: f.registered_unix_ms,
            ended_unix_ms: f.ended_unix_ms,
            tasks_finished: f.tasks_finished,
            tasks_failed: f.tasks_failed,
        }
    }
}

/// The frameworks listing.
#[derive(Debug, Serialize, ToSchema)]
pub struct FrameworksJson {
    /// Registered frameworks the caller may see.
    pub frameworks: Vec<FrameworkJson>,
    /// With `?completed=true`: ended ones the caller may see (newest first, first 1000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed: Option<Vec<CompletedFrameworkJson>>,
}

/// A task, live or (with `?completed=true`) ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskJson {
    /// Its id.
    pub id: String,
    /// Its framework.
    pub framework_id: String,
    /// Its name.
    pub name: String,
    /// The agent it runs (ran) on.
    pub agent_id: String,
    /// Its state: `staging`, `starting`, `running`, `finished`, `failed`, `killed`,
    /// `lost`, `error`, `unreachable`.
    pub state: String,
    /// The message of its latest update.
    pub message: String,
    /// Its resources (live tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourcesJson>,
    /// When it was launched (ended tasks; unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launched_unix_ms: Option<u64>,
    /// When it ended (ended tasks; unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_unix_ms: Option<u64>,
    /// Size of its result in bytes (ended tasks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_bytes: Option<u64>,
}

/// The name of a wire task state.
pub fn state_name(state: i32) -> String {
    wasmos_api::convert::task_state("state", state)
        .map(|s| s.to_string())
        .unwrap_or_else(|_| "unknown".into())
}

impl From<&pb::TaskSummary> for TaskJson {
    fn from(t: &pb::TaskSummary) -> Self {
        let status = t.status.clone().unwrap_or_default();
        TaskJson {
            id: status.task_id,
            framework_id: t.framework_id.clone(),
            name: t.name.clone(),
            agent_id: status.agent_id,
            state: state_name(status.state),
            message: status.message,
            resources: Some(t.resources.as_ref().into()),
            launched_unix_ms: None,
            ended_unix_ms: None,
            result_bytes: None,
        }
    }
}

impl From<pb::CompletedTask> for TaskJson {
    fn from(t: pb::CompletedTask) -> Self {
        TaskJson {
            id: t.task_id,
            framework_id: t.framework_id,
            name: t.name,
            agent_id: t.agent_id,
            state: state_name(t.state),
            message: t.message,
            resources: None,
            launched_unix_ms: Some(t.launched_unix_ms),
            ended_unix_ms: Some(t.ended_unix_ms),
            result_bytes: Some(t.result_bytes),
        }
    }
}

/// A page of agents (`GET /api/v1/agents`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentPage {
    /// The agents of this page, in the order asked for.
    pub agents: Vec<AgentJson>,
    /// Agents this master knows in all.
    pub total: u64,
    /// Pass as `offset` for the next page; absent on the last.
    pub next_offset: Option<u64>,
}

/// A page of tasks.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskPage {
    /// The tasks.
    pub tasks: Vec<TaskJson>,
    /// Pass as `offset` for the next page; absent on the last.
    pub next_offset: Option<u64>,
}

/// A role (`GET /api/v1/roles`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RoleJson {
    /// Its name.
    pub role: String,
    /// Its DRF weight.
    pub weight: f64,
    /// Its quota's guarantee.
    pub guarantee: ResourcesJson,
    /// Its quota's limit; absent for none.
    pub limit: Option<ResourcesJson>,
    /// Allocated to its frameworks (offered and used).
    pub allocated: ResourcesJson,
    /// In its frameworks' outstanding offers.
    pub offered: ResourcesJson,
    /// Its dominant share: the largest fraction of the cluster's total of any resource it is
    /// allocated (0 to 1).
    pub dominant_share: f64,
    /// That share divided by its weight, what DRF orders roles by.
    pub weighted_share: f64,
}

/// An outstanding offer (`GET /api/v1/offers`).
#[derive(Debug, Serialize, ToSchema)]
pub struct OfferJson {
    /// Its id.
    pub id: String,
    /// The framework it was made to.
    pub framework_id: String,
    /// The agent whose resources it offers.
    pub agent_id: String,
    /// What it offers.
    pub resources: ResourcesJson,
    /// When it was made (unix ms).
    pub created_unix_ms: u64,
    /// When it is rescinded unanswered (unix ms); absent: never.
    pub expires_unix_ms: Option<u64>,
}

/// The Raft group (`GET /api/v1/raft`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RaftJson {
    /// False for a master kept in memory (no group; the other fields are then empty).
    pub replicated: bool,
    /// This master's id.
    pub id: u64,
    /// The leader's id, when known.
    pub leader_id: Option<u64>,
    /// The current term.
    pub term: u64,
    /// The index of the last log entry applied to the registry.
    pub last_applied_index: Option<u64>,
    /// The members.
    pub members: Vec<MemberJson>,
}

/// A member of the Raft group.
#[derive(Debug, Serialize, ToSchema)]
pub struct MemberJson {
    /// Its id.
    pub id: u64,
    /// Its gRPC address.
    pub address: String,
    /// Whether it votes.
    pub voter: bool,
}

/// A framework's stored state (`GET /api/v1/frameworks/{id}/state`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StateJson {
    /// Its keys, ordered.
    pub entries: Vec<StateEntryJson>,
}

/// One stored key.
#[derive(Debug, Serialize, ToSchema)]
pub struct StateEntryJson {
    /// The key.
    pub key: String,
    /// The value as text, when it is UTF-8.
    pub value: Option<String>,
    /// The value in hex.
    pub value_hex: String,
}

/// How a framework ended (`GET /api/v1/frameworks/{id}/result`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultJson {
    /// Whether it ended.
    pub ended: bool,
    /// Whether it ended with a result (else it failed).
    pub succeeded: bool,
    /// Its result, or why it failed.
    pub result: String,
    /// Whether it is still registered.
    pub registered: bool,
}

/// `GET /ready`'s answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyJson {
    /// Whether this master leads and serves.
    pub ready: bool,
    /// Why not, when not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /registry/digest`'s answer: the registry as this master has applied it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RegistryDigestJson {
    /// False for a master kept in memory (no group; the other fields are then empty).
    pub replicated: bool,
    /// This master's id.
    pub id: u64,
    /// The index of the last Raft entry applied to the registry; absent before the first.
    pub applied_index: Option<u64>,
    /// The sha256 of the registry's encoding (64 lowercase hex digits); masters at the same
    /// `applied_index` have the same one.
    pub sha256: Option<String>,
    /// Frameworks in the registry.
    pub frameworks: u64,
    /// Agents in the registry.
    pub agents: u64,
}
