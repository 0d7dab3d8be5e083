//! The allocator: turns agents' free resources into allocations (future offers) for frameworks.
//!
//! [`Allocator`] is the pluggable interface the master drives, as Mesos's allocator module is:
//! it is fed events (agents and frameworks come and go, resources are recovered, frameworks
//! suppress and revive, operators set weights and quotas) and, once per batch interval or after
//! a change, [`Allocator::allocate`] returns who gets what. It does no I/O and reads no clock:
//! time is passed in as milliseconds so tests control it.
//!
//! [`DrfAllocator`] is the default implementation: hierarchical Dominant Resource Fairness,
//! roles first and frameworks within a role, with weights, quota guarantees and limits, and
//! refuse filters. Its design notes are in [`drf`].
//!
//! What lives elsewhere: offer ids and timeouts are the offer book's ([`crate::offers`]);
//! which tasks use the resources is the task book's ([`crate::tasks`]).

pub mod drf;
mod sorter;

#[cfg(test)]
mod proptests;

use serde::{Deserialize, Serialize};
use wasmos_api::{AgentId, FrameworkId, Resources, ResourcesError};

pub use drf::DrfAllocator;

/// Milliseconds on the caller's clock. Only differences matter.
pub type Millis = u64;

/// One agent's resources given to one framework in one allocation cycle; the master turns it
/// into an offer. Until the framework answers, the resources count as used by it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    /// The framework that gets the resources.
    pub framework: FrameworkId,
    /// The agent they are on.
    pub agent: AgentId,
    /// How much of the agent's free resources it gets (all of them, unless its role's quota
    /// limit cut the allocation down).
    pub resources: Resources,
}

/// A role's quota. The guarantee is allocated before any role gets its fair share; the limit
/// is never exceeded (offers are cut down to fit under it). The default (a role whose quota
/// was never set) is no guarantee and no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    /// Resources the role gets before fair sharing starts, as long as it has frameworks that
    /// want offers. Zero means no guarantee.
    pub guarantee: Resources,
    /// The most the role may hold (offered plus used), per resource. `None` means no limit; a
    /// resource that should be unlimited within a limit is set to `u64::MAX`.
    pub limit: Option<Resources>,
}

/// Knobs of the allocator, with defaults that match Mesos's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocatorConfig {
    /// An agent's free resources are offered only if they hold at least this much CPU *or*
    /// this much memory (Mesos's `min_allocatable_resources`: 0.01 cpus or 32 MiB). Smaller
    /// leftovers would only make offers nobody can use.
    pub min_allocatable: Resources,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            min_allocatable: Resources {
                millicpus: 10,
                mem_mb: 32,
                disk_mb: 0,
            },
        }
    }
}

impl AllocatorConfig {
    /// True when `r` is big enough to be worth offering.
    pub fn allocatable(&self, r: &Resources) -> bool {
        let min = &self.min_allocatable;
        if min.is_zero() {
            return !r.is_zero();
        }
        (min.millicpus > 0 && r.millicpus >= min.millicpus)
            || (min.mem_mb > 0 && r.mem_mb >= min.mem_mb)
            || (min.disk_mb > 0 && r.disk_mb >= min.disk_mb)
    }
}

/// Why the allocator refused an event. Each names the object; none leaves the allocator in a
/// half-changed state.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AllocatorError {
    /// The event names an agent that was never added, or was removed.
    #[error("agent {0} is not known to the allocator")]
    UnknownAgent(AgentId),
    /// [`Allocator::add_agent`] for an agent that is already there.
    #[error("agent {0} is already known to the allocator; remove it first")]
    DuplicateAgent(AgentId),
    /// The event names a framework that was never added, or was removed.
    #[error("framework {0} is not known to the allocator")]
    UnknownFramework(FrameworkId),
    /// [`Allocator::add_framework`] for a framework that is already there.
    #[error("framework {0} is already known to the allocator; remove it first")]
    DuplicateFramework(FrameworkId),
    /// [`Allocator::set_weight`] with a weight that is zero, negative, infinite or NaN.
    #[error("role weight {weight} for role {role:?} must be a finite number above zero")]
    InvalidWeight {
        /// The role whose weight was to be set.
        role: String,
        /// The weight refused.
        weight: f64,
    },
    /// [`Allocator::set_quota`] with a guarantee that does not fit in the limit.
    #[error("quota for role {role:?}: guarantee {guarantee} exceeds limit {limit}")]
    GuaranteeAboveLimit {
        /// The role whose quota was to be set.
        role: String,
        /// The guarantee asked for.
        guarantee: Resources,
        /// The limit it exceeds.
        limit: Resources,
    },
    /// Adding or resizing an agent would overflow the cluster's total resources.
    #[error("cannot add agent {agent} with {resources}: the cluster total {source}")]
    ClusterTotal {
        /// The agent added or resized.
        agent: AgentId,
        /// Its new total.
        resources: Resources,
        /// The overflow.
        #[source]
        source: ResourcesError,
    },
    /// Counting resources in or out of a framework's allocation failed: more recovered than
    /// it holds there, or a sum overflowed.
    #[error("cannot {action} resources for framework {framework} on agent {agent}: {source}")]
    Resources {
        /// What was being done: `"allocate"` or `"recover"`.
        action: &'static str,
        /// The framework whose allocation was to change.
        framework: FrameworkId,
        /// The agent the resources are on.
        agent: AgentId,
        /// Which resource fell short or overflowed.
        #[source]
        source: ResourcesError,
    },
}

/// The interface between the master and an allocation policy.
///
/// Every method is cheap in the size of what changed, not of the cluster; only
/// [`allocate`](Allocator::allocate) walks agents, and only those whose state changed since
/// the last cycle (or all free ones after a change that affects every agent, such as a new
/// framework or a revive).
pub trait Allocator: Send {
    /// Adds an agent with its total resources, all free.
    fn add_agent(&mut self, agent: AgentId, total: Resources) -> Result<(), AllocatorError>;
    /// Changes an agent's total resources (it re-registered with a different size).
    fn update_agent(&mut self, agent: &AgentId, total: Resources) -> Result<(), AllocatorError>;
    /// Marks an agent able to take tasks (true, the default) or not: nothing of an agent that
    /// is not usable is offered, what it holds stays counted.
    fn set_agent_usable(&mut self, agent: &AgentId, usable: bool) -> Result<(), AllocatorError>;
    /// Removes an agent and everything allocated on it.
    fn remove_agent(&mut self, agent: &AgentId) -> Result<(), AllocatorError>;

    /// Adds a framework in `role`, active (wanting offers) unless `active` is false.
    fn add_framework(
        &mut self,
        framework: FrameworkId,
        role: &str,
        active: bool,
    ) -> Result<(), AllocatorError>;
    /// Removes a framework and frees everything allocated to it.
    fn remove_framework(&mut self, framework: &FrameworkId) -> Result<(), AllocatorError>;
    /// Marks a framework connected (true) or disconnected (false); a disconnected framework
    /// keeps what it holds but gets no offers.
    fn set_framework_active(
        &mut self,
        framework: &FrameworkId,
        active: bool,
    ) -> Result<(), AllocatorError>;
    /// Stops offers to a framework until [`revive`](Allocator::revive).
    fn suppress(&mut self, framework: &FrameworkId) -> Result<(), AllocatorError>;
    /// Resumes offers to a framework and clears its refuse filters.
    fn revive(&mut self, framework: &FrameworkId) -> Result<(), AllocatorError>;
    /// Resumes offers to a framework after [`suppress`](Allocator::suppress), keeping its
    /// refuse filters (the master's own suppress of a framework that left an offer
    /// unanswered, ended when it answers).
    fn resume(&mut self, framework: &FrameworkId) -> Result<(), AllocatorError>;

    /// Records resources already in use by a framework on an agent (tasks an agent reported
    /// when it re-registered).
    fn add_used(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: Resources,
    ) -> Result<(), AllocatorError>;
    /// Returns resources a framework held on an agent to the pool (declined, rescinded, unused
    /// part of an accepted offer, or freed by a finished task). With `refuse_ms > 0` the agent
    /// is not offered to this framework again until `now + refuse_ms`.
    fn recover(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: Resources,
        refuse_ms: Millis,
        now: Millis,
    ) -> Result<(), AllocatorError>;

    /// Sets a role's weight (default 1.0): its fair share is proportional to it.
    fn set_weight(&mut self, role: &str, weight: f64) -> Result<(), AllocatorError>;
    /// Sets a role's quota (default: no guarantee, no limit).
    fn set_quota(&mut self, role: &str, quota: Quota) -> Result<(), AllocatorError>;

    /// Runs one allocation cycle at time `now` and returns what each framework gets. The
    /// returned resources are counted as allocated to their frameworks from now on.
    fn allocate(&mut self, now: Millis) -> Vec<Allocation>;

    /// Up to `max` frameworks that wanted offers (active, not suppressed) through the whole of
    /// the last [`allocate`](Allocator::allocate) cycle and got nothing from it, each with its
    /// dominant share (unweighted, counting everything it holds), lowest share first. The
    /// master rescinds offers held by higher shares for them. Costs `O(max² log n)` plus the
    /// last cycle's allocations, whatever the number of frameworks.
    fn waiting(&self, max: usize) -> Vec<(FrameworkId, f64)>;

    /// Whether a framework wants offers now (known, active and not suppressed); `false` for an
    /// unknown one. Placement feedback asks it when the state is read.
    fn wants_offers(&self, framework: &FrameworkId) -> bool;
    /// What a framework holds (offered plus used), if it is known.
    fn framework_allocation(&self, framework: &FrameworkId) -> Option<Resources>;
    /// What a role's frameworks hold together, if the role is known.
    fn role_allocation(&self, role: &str) -> Option<Resources>;
    /// An agent's free resources, if it is known.
    fn agent_available(&self, agent: &AgentId) -> Option<Resources>;
    /// The sum of all agents' totals.
    fn cluster_total(&self) -> Resources;
}
