//! The registry: what the master must not forget across failovers, as a state machine.
//!
//! Plain data (frameworks, admitted agents, role weights and quotas) and one
//! [`Registry::apply`] that takes a [`Command`]. Nothing here does I/O or reads a clock: times
//! come inside commands, so replaying the same commands on any replica gives the same registry.
//! Raft ([`crate::raft`]) replicates exactly these commands and keeps the registry as its state
//! machine.
//!
//! Tasks, offers and resource usage are *not* here: they are soft state rebuilt from agents
//! (see [`crate::tasks`] and [`crate::offers`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmos_api::{AgentId, FrameworkId, Resources};

use crate::allocator::{Millis, Quota};

/// Longest role name accepted, in bytes.
pub const MAX_ROLE_LEN: usize = 128;

/// Whether a framework is connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameworkState {
    /// Its scheduler is connected.
    Connected,
    /// Its scheduler went away at `since_ms`; its tasks keep running until
    /// `since_ms + failover_timeout_ms`, after which it is torn down.
    Disconnected {
        /// When the master noticed (master clock, milliseconds).
        since_ms: Millis,
    },
}

/// A framework the master knows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrameworkRecord {
    /// Its id, given by the master at its first subscription; never reused.
    pub id: FrameworkId,
    /// Human-readable name.
    pub name: String,
    /// The role whose share and quota it draws from.
    pub role: String,
    /// Who registered it (for ACLs and display); may be empty.
    pub principal: String,
    /// How long its tasks survive a disconnected scheduler, in milliseconds.
    pub failover_timeout_ms: Millis,
    /// Whether its scheduler is connected.
    pub state: FrameworkState,
    /// The sha256 of its component in the blob store (64 lowercase hex digits), which agents
    /// fetch to run its Wasm tasks; `None` for a framework of command tasks only.
    pub component_sha256: Option<String>,
    /// The default deadline and fuel of its Wasm tasks (`FrameworkInfo.wasm_task_*`), carried
    /// to agents in `RunTasks`; by default none (the agents' defaults). Fixed at the first
    /// subscription.
    #[serde(default)]
    pub wasm_budget: wasmos_api::WasmBudget,
}

/// Longest key a framework may store with `driver.state-put`, in bytes.
pub const MAX_STATE_KEY_BYTES: usize = 1024;
/// Largest value a framework may store under one key, in bytes.
pub const MAX_STATE_VALUE_BYTES: usize = 64 << 10;
/// Most bytes (keys plus values) a framework may store in total.
pub const MAX_STATE_BYTES: usize = 1 << 20;

/// How a framework ended, kept after it is removed so that its submitter can read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameworkOutcome {
    /// It finished with this result (`driver.finish(ok(...))`).
    Succeeded(String),
    /// It failed: its own `driver.finish(err(...))`, or the master failed it (a trap, a limit).
    Failed(String),
}

/// Bytes a framework's stored state takes against [`MAX_STATE_BYTES`].
pub fn state_bytes(state: &BTreeMap<String, Vec<u8>>) -> usize {
    state.iter().map(|(k, v)| k.len() + v.len()).sum()
}

/// How the master runs a framework's scheduler that it hosts (`SubmitFramework`): what a new
/// leader needs to start it again from its component.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedSpec {
    /// The arguments of the scheduler's `init`.
    pub args: Vec<String>,
    /// Fuel per callback (`None`: unmetered).
    pub fuel: Option<u64>,
    /// Memory cap of the scheduler instance, in bytes.
    pub memory_bytes: u64,
    /// Wall-clock deadline of one callback, in milliseconds.
    pub callback_timeout_ms: u64,
}

/// Whether an admitted agent is reachable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// Registered and heartbeating.
    Active,
    /// Missed its heartbeats since `since_ms`; its tasks were reported unreachable. It may
    /// re-register.
    Unreachable {
        /// When it was marked unreachable (master clock, milliseconds).
        since_ms: Millis,
    },
}

/// An agent admitted to the cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Its id, which the agent keeps across restarts.
    pub id: AgentId,
    /// Host name, for display and for frameworks' locality decisions.
    pub hostname: String,
    /// Where the agent can be reached (`host:port`); may be empty for agents that only dial in.
    pub address: String,
    /// Total resources it offers to the cluster.
    pub resources: Resources,
    /// Free-form attributes (`rack=r1`).
    pub attributes: BTreeMap<String, String>,
    /// Whether it is reachable.
    pub state: AgentState,
}

/// The bytes of a stored component, shared (not copied) between the registry, its copies and
/// the blob store. Serialized as a byte string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobBytes(
    /// The bytes, shared.
    pub Arc<Vec<u8>>,
);

impl From<Vec<u8>> for BlobBytes {
    fn from(bytes: Vec<u8>) -> Self {
        BlobBytes(Arc::new(bytes))
    }
}

impl Serialize for BlobBytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for BlobBytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_byte_buf(Visitor).map(BlobBytes::from)
    }
}

/// Every change the registry can undergo. Replicated as is (externally tagged: the Raft
/// encoding is not self-describing).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// A new framework subscribed.
    AddFramework(FrameworkRecord),
    /// A framework re-subscribed with (possibly) new info; its role may not change.
    UpdateFramework {
        /// The framework.
        id: FrameworkId,
        /// Its new name.
        name: String,
        /// Its new failover timeout, in milliseconds.
        failover_timeout_ms: Millis,
    },
    /// A framework connected or disconnected.
    SetFrameworkState {
        /// The framework.
        id: FrameworkId,
        /// Connected, or disconnected since when.
        state: FrameworkState,
    },
    /// A framework is gone for good (teardown or failover timeout); its id may not come back.
    RemoveFramework {
        /// The framework.
        id: FrameworkId,
    },
    /// A framework stored `value` under `key` (`driver.state-put`); size-capped.
    PutFrameworkState {
        /// The framework.
        id: FrameworkId,
        /// At most [`MAX_STATE_KEY_BYTES`] bytes.
        key: String,
        /// At most [`MAX_STATE_VALUE_BYTES`] bytes; the framework's keys and values together
        /// stay within [`MAX_STATE_BYTES`].
        value: Vec<u8>,
    },
    /// A framework ended with this outcome; recorded before it is removed.
    RecordOutcome {
        /// The framework.
        id: FrameworkId,
        /// How it ended.
        outcome: FrameworkOutcome,
    },
    /// An agent registered or re-registered; replaces what was known about it.
    AdmitAgent(AgentRecord),
    /// An agent missed its heartbeats.
    MarkAgentUnreachable {
        /// The agent.
        id: AgentId,
        /// When it was found unreachable (master clock, milliseconds).
        since_ms: Millis,
    },
    /// An agent is gone for good.
    RemoveAgent {
        /// The agent.
        id: AgentId,
    },
    /// Sets a role's weight (1.0 is the default).
    SetWeight {
        /// A valid role name ([`validate_role`]).
        role: String,
        /// A finite number above zero.
        weight: f64,
    },
    /// Sets (`Some`) or removes (`None`) a role's quota.
    SetQuota {
        /// A valid role name ([`validate_role`]).
        role: String,
        /// The quota; its guarantee must fit in its limit. `None` goes back to the default:
        /// no guarantee, no limit.
        quota: Option<Quota>,
    },
    /// Stores a framework component under its sha256 (64 lowercase hex digits), which must be
    /// the digest of `bytes`. Storing one that is already there changes nothing.
    PutComponent {
        /// The digest, 64 lowercase hex digits.
        sha256: String,
        /// The component.
        bytes: BlobBytes,
    },
    /// The master hosts this framework's scheduler, started as `spec` says.
    SetHosted {
        /// The framework.
        id: FrameworkId,
        /// How to start its scheduler.
        spec: HostedSpec,
    },
    /// Drops a component (an operator's delete, or garbage collection of one no framework
    /// references). Refused while a registered framework names it; deleting one that is not
    /// stored changes nothing.
    DeleteComponent {
        /// The digest, 64 lowercase hex digits.
        sha256: String,
    },
    /// Stores the first management token (`wasmos acl bootstrap`); refused once the ACLs are
    /// bootstrapped.
    AclBootstrap(crate::acl::TokenRecord),
    /// Stores a new token (its secret's hash only).
    PutToken(crate::acl::TokenRecord),
    /// Forgets a token: it is refused from now on.
    RevokeToken {
        /// The token's accessor.
        accessor: String,
    },
    /// Defines or replaces a policy.
    PutPolicy {
        /// Its name.
        name: String,
        /// What it grants.
        policy: crate::acl::Policy,
    },
    /// A hosted framework was submitted with the token of this accessor: its scheduler acts
    /// with that token's rights ([`crate::acl::AclState::submitted_with`]).
    SetSubmitter {
        /// The framework (registered).
        id: FrameworkId,
        /// The submitting token's accessor.
        accessor: String,
    },
    // New variants go last: the log and snapshots name variants by their position.
    /// Agent changes ([`Command::AdmitAgent`], [`Command::MarkAgentUnreachable`],
    /// [`Command::RemoveAgent`]) in one log entry, applied in order, each as it would be alone:
    /// the leader packs a burst of them (a registration storm, a partition healing) so that
    /// 10,000 agents cost a few dozen entries instead of 10,000. The result is the first
    /// refusal (the others still apply); anything but an agent change inside is refused.
    AgentBatch(Vec<Command>),
}

impl Command {
    /// Whether it is one of the agent changes a [`Command::AgentBatch`] may hold.
    pub fn is_agent_change(&self) -> bool {
        matches!(
            self,
            Command::AdmitAgent(_)
                | Command::MarkAgentUnreachable { .. }
                | Command::RemoveAgent { .. }
        )
    }

    /// About how many bytes an agent change takes in the log, to bound a batch; `None` for
    /// any other command.
    pub fn agent_change_bytes(&self) -> Option<usize> {
        match self {
            Command::AdmitAgent(r) => Some(
                128 + r.id.as_str().len()
                    + r.hostname.len()
                    + r.address.len()
                    + r.attributes
                        .iter()
                        .map(|(k, v)| 16 + k.len() + v.len())
                        .sum::<usize>(),
            ),
            Command::MarkAgentUnreachable { id, .. } | Command::RemoveAgent { id } => {
                Some(64 + id.as_str().len())
            }
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Command::AgentBatch(_) => "a nested agent batch",
            _ => "a framework, role, component or token change",
        }
    }
}

/// Why a command was refused. The registry is unchanged when `apply` returns one. Serializable
/// because it is the result Raft hands back for a replicated command.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum RegistryError {
    /// [`Command::AddFramework`] for an id that is registered.
    #[error("framework {0} is already registered")]
    FrameworkExists(FrameworkId),
    /// [`Command::AddFramework`] for the id of a removed framework.
    #[error("framework {0} was torn down; subscribe without an id to get a new one")]
    FrameworkTornDown(FrameworkId),
    /// The command names a framework that is not registered.
    #[error("framework {0} is not registered")]
    UnknownFramework(FrameworkId),
    /// [`Command::PutFrameworkState`] over one of the size limits; says which, and by how much.
    #[error("framework state: {0}")]
    StateTooLarge(String),
    /// The command names an agent that is not admitted.
    #[error("agent {0} is not admitted")]
    UnknownAgent(AgentId),
    /// A role name that [`validate_role`] refuses.
    #[error("role {role:?} is invalid: {why}")]
    InvalidRole {
        /// The name refused.
        role: String,
        /// Which rule it breaks.
        why: Cow<'static, str>,
    },
    /// [`Command::SetWeight`] with a weight that is zero, negative, infinite or NaN.
    #[error("weight {weight} for role {role:?} must be a finite number above zero")]
    InvalidWeight {
        /// The role.
        role: String,
        /// The weight refused.
        weight: f64,
    },
    /// [`Command::PutComponent`] whose digest is not that of its bytes.
    #[error("component digest {sha256:?} is not the sha256 of its bytes")]
    ComponentDigest {
        /// The digest given.
        sha256: String,
    },
    /// [`Command::DeleteComponent`] of a component a registered framework names.
    #[error("component {sha256} is in use by framework {framework}; tear the framework down first")]
    ComponentInUse {
        /// The digest.
        sha256: String,
        /// A framework that names it.
        framework: FrameworkId,
    },
    /// [`Command::SetQuota`] with a guarantee that does not fit in the limit.
    #[error("quota for role {role:?}: guarantee {guarantee} exceeds limit {limit}")]
    GuaranteeAboveLimit {
        /// The role.
        role: String,
        /// The guarantee asked for.
        guarantee: Resources,
        /// The limit it exceeds.
        limit: Resources,
    },
    /// An ACL command ([`Command::AclBootstrap`], [`Command::PutToken`],
    /// [`Command::RevokeToken`], [`Command::PutPolicy`]) refused.
    #[error(transparent)]
    Acl(#[from] crate::acl::AclStateError),
    /// [`Command::AgentBatch`] holding a command that is not an agent change.
    #[error("an agent batch may hold only agent changes, not {0}")]
    NotAnAgentChange(String),
}

/// Checks a role name: 1 to [`MAX_ROLE_LEN`] bytes of `[A-Za-z0-9._/-]`, `/`-separated
/// segments (hierarchical roles, as in Mesos), none of them empty, `.` or `..`.
pub fn validate_role(role: &str) -> Result<(), RegistryError> {
    let bad = |why: &'static str| {
        Err(RegistryError::InvalidRole {
            role: role.to_string(),
            why: Cow::Borrowed(why),
        })
    };
    if role.is_empty() {
        return bad("it is empty");
    }
    if role.len() > MAX_ROLE_LEN {
        return bad("it is longer than 128 bytes");
    }
    if !role
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        return bad("only letters, digits, '.', '_', '-' and '/' are allowed");
    }
    if role
        .split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return bad("a '/'-separated segment is empty, '.' or '..'");
    }
    Ok(())
}

/// The replicated state: plain data.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    /// Registered frameworks, connected or not, by id.
    pub frameworks: BTreeMap<FrameworkId, FrameworkRecord>,
    /// Ids of removed frameworks: they may not subscribe again.
    pub removed_frameworks: BTreeSet<FrameworkId>,
    /// Admitted agents, reachable or not, by id.
    pub agents: BTreeMap<AgentId, AgentRecord>,
    /// Role weights that were set; a role absent here has weight 1.0 ([`Registry::weight`]).
    pub weights: BTreeMap<String, f64>,
    /// Role quotas that were set; a role absent here has no guarantee and no limit.
    pub quotas: BTreeMap<String, Quota>,
    /// Each framework's key-value state (`driver.state-put`); dropped with the framework.
    pub framework_state: BTreeMap<FrameworkId, BTreeMap<String, Vec<u8>>>,
    /// How frameworks that ended through `finish` (or were failed by their host) ended.
    pub outcomes: BTreeMap<FrameworkId, FrameworkOutcome>,
    /// Framework components by sha256 (lowercase hex), which agents fetch and the framework
    /// host runs; they stay after their framework ends until an operator deletes them or the
    /// leader collects them ([`Command::DeleteComponent`]).
    pub components: BTreeMap<String, BlobBytes>,
    /// Frameworks whose scheduler the master hosts, and how to start it; dropped with the
    /// framework.
    pub hosted: BTreeMap<FrameworkId, HostedSpec>,
    /// Tokens (hashes only) and policies. Last, so that a snapshot written before it existed
    /// decodes with the default appended (`raft::store`).
    pub acl: crate::acl::AclState,
}

impl Registry {
    /// The sha256 (64 lowercase hex digits) of the registry's Raft encoding, every field and
    /// every component's bytes included: two masters that applied the same log hold registries
    /// with the same digest (`GET /registry/digest`). Streams the encoding into the hash.
    pub fn digest(&self) -> Result<String, postcard::Error> {
        use sha2::{Digest as _, Sha256};
        let mut hasher = Sha256::new();
        postcard::to_io(self, &mut hasher)?;
        Ok(hex::encode(hasher.finalize()))
    }

    /// Applies one command, or refuses it leaving the registry unchanged.
    pub fn apply(&mut self, command: Command) -> Result<(), RegistryError> {
        match command {
            Command::AddFramework(record) => {
                validate_role(&record.role)?;
                if self.removed_frameworks.contains(&record.id) {
                    return Err(RegistryError::FrameworkTornDown(record.id));
                }
                if self.frameworks.contains_key(&record.id) {
                    return Err(RegistryError::FrameworkExists(record.id));
                }
                self.frameworks.insert(record.id.clone(), record);
            }
            Command::UpdateFramework {
                id,
                name,
                failover_timeout_ms,
            } => {
                let fw = self.framework_mut(&id)?;
                fw.name = name;
                fw.failover_timeout_ms = failover_timeout_ms;
            }
            Command::SetFrameworkState { id, state } => {
                self.framework_mut(&id)?.state = state;
            }
            Command::RemoveFramework { id } => {
                let Some(removed) = self.frameworks.remove(&id) else {
                    return Err(RegistryError::UnknownFramework(id));
                };
                if self.outcomes.contains_key(&id) {
                    // The kept outcome stays its owner's to read.
                    self.acl.ended_owners.insert(id.clone(), removed.principal);
                }
                self.acl.submitted_with.remove(&id);
                self.framework_state.remove(&id);
                self.hosted.remove(&id);
                self.removed_frameworks.insert(id);
            }
            Command::PutFrameworkState { id, key, value } => {
                self.framework_mut(&id)?;
                if key.len() > MAX_STATE_KEY_BYTES {
                    return Err(RegistryError::StateTooLarge(format!(
                        "key is {} bytes; the limit is {MAX_STATE_KEY_BYTES}",
                        key.len()
                    )));
                }
                if value.len() > MAX_STATE_VALUE_BYTES {
                    return Err(RegistryError::StateTooLarge(format!(
                        "value is {} bytes; the limit is {MAX_STATE_VALUE_BYTES}",
                        value.len()
                    )));
                }
                let (used, old) = self.framework_state.get(&id).map_or((0, 0), |s| {
                    let old = s.get(&key).map_or(0, |v| key.len() + v.len());
                    (state_bytes(s), old)
                });
                let total = used - old + key.len() + value.len();
                if total > MAX_STATE_BYTES {
                    return Err(RegistryError::StateTooLarge(format!(
                        "the framework would store {total} bytes; the limit is {MAX_STATE_BYTES}"
                    )));
                }
                self.framework_state
                    .entry(id)
                    .or_default()
                    .insert(key, value);
            }
            Command::RecordOutcome { id, outcome } => {
                self.framework_mut(&id)?;
                self.outcomes.insert(id, outcome);
            }
            Command::AdmitAgent(record) => {
                self.agents.insert(record.id.clone(), record);
            }
            Command::MarkAgentUnreachable { id, since_ms } => {
                let agent = self
                    .agents
                    .get_mut(&id)
                    .ok_or_else(|| RegistryError::UnknownAgent(id.clone()))?;
                agent.state = AgentState::Unreachable { since_ms };
            }
            Command::RemoveAgent { id } => {
                if self.agents.remove(&id).is_none() {
                    return Err(RegistryError::UnknownAgent(id));
                }
            }
            Command::AgentBatch(commands) => {
                let mut first = Ok(());
                for c in commands {
                    let r = if c.is_agent_change() {
                        self.apply(c)
                    } else {
                        Err(RegistryError::NotAnAgentChange(c.kind().to_string()))
                    };
                    if first.is_ok() {
                        first = r;
                    }
                }
                return first;
            }
            Command::SetWeight { role, weight } => {
                validate_role(&role)?;
                if !weight.is_finite() || weight <= 0.0 {
                    return Err(RegistryError::InvalidWeight { role, weight });
                }
                self.weights.insert(role, weight);
            }
            Command::SetQuota { role, quota } => {
                validate_role(&role)?;
                match quota {
                    None => {
                        self.quotas.remove(&role);
                    }
                    Some(q) => {
                        if let Some(limit) = q.limit
                            && !q.guarantee.fits_in(&limit)
                        {
                            return Err(RegistryError::GuaranteeAboveLimit {
                                role,
                                guarantee: q.guarantee,
                                limit,
                            });
                        }
                        self.quotas.insert(role, q);
                    }
                }
            }
            Command::PutComponent { sha256, bytes } => {
                if self.components.contains_key(&sha256) {
                    return Ok(());
                }
                if crate::blobs::Digest::of(&bytes.0).to_string() != sha256 {
                    return Err(RegistryError::ComponentDigest { sha256 });
                }
                self.components.insert(sha256, bytes);
            }
            Command::SetHosted { id, spec } => {
                self.framework_mut(&id)?;
                self.hosted.insert(id, spec);
            }
            Command::DeleteComponent { sha256 } => {
                if let Some(f) = self
                    .frameworks
                    .values()
                    .find(|f| f.component_sha256.as_deref() == Some(sha256.as_str()))
                {
                    return Err(RegistryError::ComponentInUse {
                        sha256,
                        framework: f.id.clone(),
                    });
                }
                self.components.remove(&sha256);
            }
            Command::AclBootstrap(token) => self.acl.bootstrap(token)?,
            Command::PutToken(token) => self.acl.put_token(token)?,
            Command::RevokeToken { accessor } => {
                self.acl.revoke(&accessor)?;
            }
            Command::PutPolicy { name, policy } => self.acl.put_policy(name, policy)?,
            Command::SetSubmitter { id, accessor } => {
                self.framework_mut(&id)?;
                self.acl.submitted_with.insert(id, accessor);
            }
        }
        Ok(())
    }

    /// A role's weight (1.0 unless set).
    pub fn weight(&self, role: &str) -> f64 {
        self.weights.get(role).copied().unwrap_or(1.0)
    }

    fn framework_mut(&mut self, id: &FrameworkId) -> Result<&mut FrameworkRecord, RegistryError> {
        self.frameworks
            .get_mut(id)
            .ok_or_else(|| RegistryError::UnknownFramework(id.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fw(id: &str, role: &str) -> FrameworkRecord {
        FrameworkRecord {
            id: FrameworkId::new(id).unwrap(),
            name: "n".into(),
            role: role.into(),
            principal: String::new(),
            failover_timeout_ms: 1000,
            state: FrameworkState::Connected,
            component_sha256: None,
            wasm_budget: Default::default(),
        }
    }

    #[test]
    fn the_digest_is_of_the_whole_registry() {
        let mut a = Registry::default();
        a.apply(Command::AddFramework(fw("f1", "web"))).unwrap();
        let b = a.clone();
        assert_eq!(a.digest().unwrap(), b.digest().unwrap());
        assert_eq!(a.digest().unwrap().len(), 64);
        // A weight, and one byte of a component, each change it.
        let mut w = a.clone();
        w.weights.insert("web".into(), 2.0);
        assert_ne!(w.digest().unwrap(), a.digest().unwrap());
        let mut c1 = a.clone();
        c1.components
            .insert("ab".repeat(32), BlobBytes::from(vec![1, 2, 3]));
        let mut c2 = a.clone();
        c2.components
            .insert("ab".repeat(32), BlobBytes::from(vec![1, 2, 4]));
        assert_ne!(c1.digest().unwrap(), c2.digest().unwrap());
    }

    #[test]
    fn framework_lifecycle_and_no_reuse_of_removed_ids() {
        let mut reg = Registry::default();
        reg.apply(Command::AddFramework(fw("f1", "web"))).unwrap();
        assert_eq!(
            reg.apply(Command::AddFramework(fw("f1", "web"))),
            Err(RegistryError::FrameworkExists(
                FrameworkId::new("f1").unwrap()
            ))
        );
        let id = FrameworkId::new("f1").unwrap();
        reg.apply(Command::SetFrameworkState {
            id: id.clone(),
            state: FrameworkState::Disconnected { since_ms: 5 },
        })
        .unwrap();
        reg.apply(Command::RemoveFramework { id: id.clone() })
            .unwrap();
        assert!(reg.frameworks.is_empty());
        assert_eq!(
            reg.apply(Command::AddFramework(fw("f1", "web"))),
            Err(RegistryError::FrameworkTornDown(id))
        );
    }

    #[test]
    fn refused_commands_change_nothing() {
        let mut reg = Registry::default();
        let before = reg.clone();
        assert!(reg.apply(Command::AddFramework(fw("f1", "../x"))).is_err());
        assert!(
            reg.apply(Command::SetWeight {
                role: "r".into(),
                weight: f64::NAN
            })
            .is_err()
        );
        assert!(
            reg.apply(Command::SetWeight {
                role: "r".into(),
                weight: 0.0
            })
            .is_err()
        );
        let q = Quota {
            guarantee: Resources::new(2.0, 0, 0),
            limit: Some(Resources::new(1.0, 0, 0)),
        };
        assert!(matches!(
            reg.apply(Command::SetQuota {
                role: "r".into(),
                quota: Some(q)
            }),
            Err(RegistryError::GuaranteeAboveLimit { .. })
        ));
        assert!(
            reg.apply(Command::RemoveAgent {
                id: AgentId::new("a").unwrap()
            })
            .is_err()
        );
        assert_eq!(reg, before);
    }

    #[test]
    fn commands_round_trip_through_the_raft_codec_and_replay_identically() {
        let cmds = vec![
            Command::AddFramework(fw("f1", "eng/batch")),
            Command::AdmitAgent(AgentRecord {
                id: AgentId::new("a1").unwrap(),
                hostname: "h".into(),
                address: "127.0.0.1:1".into(),
                resources: Resources::new(4.0, 1024, 0),
                attributes: [("rack".to_string(), "r1".to_string())].into(),
                state: AgentState::Active,
            }),
            Command::SetWeight {
                role: "eng/batch".into(),
                weight: 2.5,
            },
            Command::SetQuota {
                role: "eng".into(),
                quota: Some(Quota::default()),
            },
            Command::MarkAgentUnreachable {
                id: AgentId::new("a1").unwrap(),
                since_ms: 9,
            },
        ];
        let encoded = crate::raft::codec::to_vec(&cmds).unwrap();
        let back: Vec<Command> = crate::raft::codec::from_slice(&encoded).unwrap();
        assert_eq!(back, cmds);
        let (mut a, mut b) = (Registry::default(), Registry::default());
        for c in cmds {
            a.apply(c).unwrap();
        }
        for c in back {
            b.apply(c).unwrap();
        }
        assert_eq!(a, b);
        assert_eq!(a.weight("eng/batch"), 2.5);
        assert_eq!(a.weight("other"), 1.0);
    }

    #[test]
    fn framework_state_is_size_capped_and_outcomes_outlive_the_framework() {
        let mut reg = Registry::default();
        reg.apply(Command::AddFramework(fw("f1", "web"))).unwrap();
        let id = FrameworkId::new("f1").unwrap();
        let put = |key: &str, len: usize| Command::PutFrameworkState {
            id: id.clone(),
            key: key.into(),
            value: vec![7; len],
        };
        reg.apply(put("a", 10)).unwrap();
        reg.apply(put("a", 20)).unwrap();
        assert_eq!(reg.framework_state[&id]["a"].len(), 20);
        let before = reg.clone();
        let too_big = reg.apply(put("b", MAX_STATE_VALUE_BYTES + 1)).unwrap_err();
        assert!(too_big.to_string().contains("value is"), "{too_big}");
        let long_key = "k".repeat(MAX_STATE_KEY_BYTES + 1);
        assert!(reg.apply(put(&long_key, 1)).is_err());
        for i in 0..(MAX_STATE_BYTES / MAX_STATE_VALUE_BYTES) - 1 {
            reg.apply(put(&format!("k{i}"), MAX_STATE_VALUE_BYTES))
                .unwrap();
        }
        let full = reg.apply(put("last", MAX_STATE_VALUE_BYTES)).unwrap_err();
        assert!(full.to_string().contains("would store"), "{full}");
        assert_ne!(reg, before);
        reg.apply(Command::RecordOutcome {
            id: id.clone(),
            outcome: FrameworkOutcome::Succeeded("done".into()),
        })
        .unwrap();
        reg.apply(Command::RemoveFramework { id: id.clone() })
            .unwrap();
        assert!(!reg.framework_state.contains_key(&id));
        assert_eq!(
            reg.outcomes.get(&id),
            Some(&FrameworkOutcome::Succeeded("done".into()))
        );
        assert!(
            reg.apply(put("a", 1)).is_err(),
            "no state for a removed framework"
        );
    }

    #[test]
    fn role_names() {
        assert!(validate_role("eng/batch-1").is_ok());
        for bad in ["", "/x", "x/", "a//b", "a/../b", "a b", "."] {
            assert!(validate_role(bad).is_err(), "{bad:?} must be refused");
        }
    }

    fn agent(id: &str) -> AgentRecord {
        AgentRecord {
            id: AgentId::new(id).unwrap(),
            hostname: format!("host-{id}"),
            address: String::new(),
            resources: Resources::new(4.0, 1024, 0),
            attributes: Default::default(),
            state: AgentState::Active,
        }
    }

    /// A batch applies each change as it would alone, in order: the same registry as the
    /// changes one by one, the first refusal as its result (the rest still applied), and a
    /// change that is not an agent change refused inside it. Its encoding round-trips, and the
    /// variants before it keep their positions (an old log still decodes).
    #[test]
    fn an_agent_batch_applies_like_its_changes_one_by_one() {
        let changes = vec![
            Command::AdmitAgent(agent("a1")),
            Command::AdmitAgent(agent("a2")),
            Command::RemoveAgent {
                id: AgentId::new("nobody").unwrap(),
            },
            Command::MarkAgentUnreachable {
                id: AgentId::new("a1").unwrap(),
                since_ms: 7,
            },
            Command::RemoveAgent {
                id: AgentId::new("a2").unwrap(),
            },
        ];
        let mut one_by_one = Registry::default();
        for c in changes.clone() {
            let _ = one_by_one.apply(c);
        }
        let batch = Command::AgentBatch(changes);
        let encoded = crate::raft::codec::to_vec(&batch).unwrap();
        let back: Command = crate::raft::codec::from_slice(&encoded).unwrap();
        assert_eq!(back, batch);
        let mut batched = Registry::default();
        assert_eq!(
            batched.apply(back),
            Err(RegistryError::UnknownAgent(AgentId::new("nobody").unwrap()))
        );
        assert_eq!(batched, one_by_one);
        assert_eq!(batched.agents.len(), 1);
        assert!(matches!(
            batched.agents[&AgentId::new("a1").unwrap()].state,
            AgentState::Unreachable { since_ms: 7 }
        ));

        let before = batched.clone();
        let mixed = Command::AgentBatch(vec![Command::SetWeight {
            role: "r".into(),
            weight: 2.0,
        }]);
        assert!(matches!(
            batched.apply(mixed),
            Err(RegistryError::NotAnAgentChange(_))
        ));
        assert_eq!(batched, before);

        // The log names a variant by its position (postcard's first byte here): the batch
        // came last, so entries written before it still mean what they meant.
        let tag = |c: &Command| crate::raft::codec::to_vec(c).unwrap()[0];
        assert_eq!(tag(&Command::AdmitAgent(agent("a1"))), 6);
        assert_eq!(
            tag(&Command::SetWeight {
                role: "r".into(),
                weight: 2.0,
            }),
            9
        );
        assert_eq!(
            tag(&Command::SetSubmitter {
                id: FrameworkId::new("f").unwrap(),
                accessor: "x".into(),
            }),
            18
        );
        assert_eq!(tag(&Command::AgentBatch(Vec::new())), 19);
    }
}
