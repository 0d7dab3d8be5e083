//! `DrfAllocator`: hierarchical Dominant Resource Fairness with weights, quotas and filters.
//!
//! # Policy
//! Each cycle gives free agents' resources away one agent at a time:
//! 1. **Quota guarantees first.** Roles whose allocation does not yet cover their guarantee are
//!    served, lowest weighted share first, until the guarantee is covered. A role may end up to
//!    one agent's worth above its guarantee, because offers are whole agents.
//! 2. **Fair share.** The role with the lowest weighted dominant share (`share / weight`) is
//!    picked, then the framework with the lowest dominant share within it, and that framework
//!    gets all the free resources of the first free agent it has not filtered.
//! 3. **Limits.** An offer is cut down so that the role's allocation stays within its quota
//!    limit; a role that cannot take anything more is skipped for the rest of the cycle. An
//!    agent whose free resources the limit cuts down to nothing worth offering (the role may
//!    take CPU only, and the agent has only memory free) is stepped over, like a filtered one.
//!
//! Equal shares take turns: the role, then the framework, allocated least recently goes first
//! (never-allocated first, then by slab index). A framework that declines every offer falls
//! back to share zero each time, but it is then the most recently allocated of the zeros, so
//! every other framework at zero gets an agent before it gets one again.
//!
//! A framework gets at most one allocation per agent per cycle. Offered-but-unanswered
//! resources count as allocated until [`Allocator::recover`](super::Allocator::recover) returns them,
//! so a framework that never answers has the share of everything it was offered.
//!
//! # Cost
//! Nothing here scans frameworks × agents. Roles and frameworks sit in `Sorter`s keyed by
//! share, so picking the next one is `O(log n)`. Free agents live in an ordered set, and a cycle
//! looks only at agents that changed since the previous one (resources recovered, agent added,
//! filter expired), or at all free agents after a change that may affect any of them (a new or
//! revived framework, a weight or quota change). Filters are a side index per framework plus
//! one expiry queue, so a cycle pays only for filters that expire or that it steps over; each
//! framework keeps a cursor into the free agents, so one cycle steps over each of its filtered
//! agents at most once. Shares are re-keyed in bulk only when the cluster total changes. A
//! role that a cycle refused a free agent because of its quota limit is marked, and the next
//! decrease of what it holds makes every free agent a candidate again (a bigger headroom may
//! suit an agent that did not change).
//!
//! Slots of removed agents and frameworks are not reused, so stale entries in the filter queue
//! can never point at a newcomer; they are dropped when they come due.
//!
//! # Waiting frameworks
//! [`Allocator::waiting`](super::Allocator::waiting) names the frameworks that wanted offers
//! through the last cycle and got nothing from it, lowest share first, so the master can
//! rescind offers held by higher shares for them (see `core/early_rescind.rs`). It looks only
//! at the front of each sorter: at most `max` roles, lowest weighted share first, and in each
//! the lowest-share frameworks that got nothing, stepping over those the cycle served (so it
//! costs at most the cycle's own allocations plus `O(max² log n)`).
//!
//! # Where things are
//! `holdings` counts who holds what where; `shares` orders roles and frameworks by share;
//! `quota` creates roles and applies weights' and quotas' defaults and limits; `filters` keeps
//! refuse filters; `cycle` runs one allocation cycle; `events` is the [`Allocator`](super::Allocator) interface
//! the master drives.

mod cycle;
mod events;
mod filters;
mod holdings;
mod quota;
mod shares;
#[cfg(test)]
mod testing;

use std::collections::{BTreeSet, HashMap, HashSet};

use wasmos_api::{AgentId, FrameworkId, Resources};

use super::sorter::{Key, Sorter};
use super::{AllocatorConfig, AllocatorError, Millis, Quota};

/// An agent as the allocator sees it: its size and who holds what on it.
#[derive(Debug)]
struct AgentSlot {
    id: AgentId,
    total: Resources,
    /// Sum of `by_framework`.
    allocated: Resources,
    /// What each framework (slab index) holds here; usually zero to a few entries.
    by_framework: Vec<(u32, Resources)>,
    /// False while the agent cannot take tasks (it reported itself unhealthy): nothing of it
    /// is offered.
    usable: bool,
}

impl AgentSlot {
    fn available(&self) -> Resources {
        self.total.saturating_sub(&self.allocated)
    }
}

/// A framework as the allocator sees it: its role, what it holds, its filters and whether it
/// wants offers.
#[derive(Debug)]
struct FrameworkSlot {
    id: FrameworkId,
    role: u32,
    allocated: Resources,
    /// Agents where this framework holds something.
    agents: HashSet<u32>,
    /// Agent -> (time until which, resources within which) it is not offered to this
    /// framework. As in Mesos, a filter covers only what was declined: once the agent has more
    /// free than that (a task of its own ended there, say), it is offered again.
    filters: HashMap<u32, (Millis, Resources)>,
    active: bool,
    suppressed: bool,
    /// [`DrfAllocator::allocation_seq`] at its last allocation; 0 if it never had one.
    last_allocated: u64,
    /// [`DrfAllocator::cycle_no`] of the cycle that last allocated to it; 0 if none did.
    last_cycle: u64,
    /// [`DrfAllocator::cycle_no`] when it last started wanting offers: it has waited through
    /// a cycle only once a later cycle ran.
    wanting_since: u64,
    /// The key under which it sits in its role's sorter, when it does.
    key: Option<Key>,
}

impl FrameworkSlot {
    fn wants_offers(&self) -> bool {
        self.active && !self.suppressed
    }
}

/// A role: its weight (1.0 until set), its quota (none until set), what its frameworks hold
/// together and their order by share.
#[derive(Debug)]
struct RoleSlot {
    name: String,
    weight: f64,
    quota: Quota,
    allocated: Resources,
    /// Frameworks of this role that want offers, by dominant share.
    sorter: Sorter,
    /// [`DrfAllocator::allocation_seq`] at its last allocation to one of its frameworks; 0 if
    /// none had one.
    last_allocated: u64,
    /// The key under which it sits in the role sorter, when it does (iff `sorter` is not empty).
    key: Option<Key>,
    /// Set when a cycle refused this role a free agent, or part of one, because of its limit
    /// (cut an offer down, stepped over the agent, or set the role aside): once the role
    /// holds less, that agent may suit it though the agent itself did not change, so the next
    /// decrease makes every free agent a candidate again.
    limit_blocked: bool,
}

/// Hierarchical DRF allocator. See the module docs for policy and cost.
#[derive(Debug, Default)]
pub struct DrfAllocator {
    config: AllocatorConfig,
    agents: Vec<Option<AgentSlot>>,
    agent_index: HashMap<AgentId, u32>,
    frameworks: Vec<Option<FrameworkSlot>>,
    framework_index: HashMap<FrameworkId, u32>,
    roles: Vec<RoleSlot>,
    role_index: HashMap<String, u32>,
    role_sorter: Sorter,
    /// Roles with a non-zero guarantee.
    quota_roles: BTreeSet<u32>,
    total: Resources,
    /// Agents whose free resources are allocatable.
    free: BTreeSet<u32>,
    /// Agents that changed since the last cycle.
    dirty: BTreeSet<u32>,
    /// Something changed that may affect every free agent.
    all_dirty: bool,
    /// The cluster total changed: every key is stale.
    shares_dirty: bool,
    /// (expiry, framework, agent) for every filter, soonest first.
    filter_expiry: BTreeSet<(Millis, u32, u32)>,
    /// Per framework: (cycle number, next agent index to look at).
    cursors: Vec<(u64, u32)>,
    /// Number of the last cycle run (cycles count from 1).
    cycle_no: u64,
    /// Counts allocations; each one stamps its framework and role, so that equal shares go to
    /// the least recently allocated (see [`Key`]).
    allocation_seq: u64,
}

impl DrfAllocator {
    /// An empty allocator.
    pub fn new(config: AllocatorConfig) -> Self {
        DrfAllocator {
            config,
            ..Default::default()
        }
    }

    /// Number of agents known.
    pub fn agent_count(&self) -> usize {
        self.agent_index.len()
    }

    /// Number of frameworks known.
    pub fn framework_count(&self) -> usize {
        self.framework_index.len()
    }

    /// A framework's dominant share of the cluster (not weighted).
    pub fn framework_share(&self, framework: &FrameworkId) -> Option<f64> {
        let f = self.frameworks[*self.framework_index.get(framework)? as usize].as_ref()?;
        Some(f.allocated.dominant_share(&self.total))
    }

    /// Every role known: name, weight and what its frameworks hold together.
    pub fn roles(&self) -> Vec<(String, f64, Resources)> {
        self.roles
            .iter()
            .map(|r| (r.name.clone(), r.weight, r.allocated))
            .collect()
    }

    /// What each framework holds on an agent.
    pub fn agent_allocation(&self, agent: &AgentId) -> Vec<(FrameworkId, Resources)> {
        let Some(a) = self.agent(agent) else {
            return Vec::new();
        };
        a.by_framework
            .iter()
            .filter_map(|(f, r)| Some((self.frameworks[*f as usize].as_ref()?.id.clone(), *r)))
            .collect()
    }

    fn agent(&self, id: &AgentId) -> Option<&AgentSlot> {
        self.agents[*self.agent_index.get(id)? as usize].as_ref()
    }

    fn agent_idx(&self, id: &AgentId) -> Result<u32, AllocatorError> {
        self.agent_index
            .get(id)
            .copied()
            .ok_or_else(|| AllocatorError::UnknownAgent(id.clone()))
    }

    fn framework_idx(&self, id: &FrameworkId) -> Result<u32, AllocatorError> {
        self.framework_index
            .get(id)
            .copied()
            .ok_or_else(|| AllocatorError::UnknownFramework(id.clone()))
    }

    fn fw(&self, f: u32) -> &FrameworkSlot {
        self.frameworks[f as usize]
            .as_ref()
            .expect("live framework index")
    }

    fn fw_mut(&mut self, f: u32) -> &mut FrameworkSlot {
        self.frameworks[f as usize]
            .as_mut()
            .expect("live framework index")
    }

    fn ag(&self, a: u32) -> &AgentSlot {
        self.agents[a as usize].as_ref().expect("live agent index")
    }

    fn ag_mut(&mut self, a: u32) -> &mut AgentSlot {
        self.agents[a as usize].as_mut().expect("live agent index")
    }
}
