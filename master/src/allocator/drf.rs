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
//!    limit; a role that cannot take anything more is skipped for the rest of the cycle.
//!
//! A framework gets at most one allocation per agent per cycle. Offered-but-unanswered
//! resources count as allocated until [`Allocator::recover`] returns them.
//!
//! # Cost
//! Nothing here scans frameworks × agents. Roles and frameworks sit in [`Sorter`]s keyed by
//! share, so picking the next one is `O(log n)`. Free agents live in an ordered set, and a cycle
//! looks only at agents that changed since the previous one (resources recovered, agent added,
//! filter expired), or at all free agents after a change that may affect any of them (a new or
//! revived framework, a weight or quota change). Filters are a side index per framework plus
//! one expiry queue, so a cycle pays only for filters that expire or that it steps over; each
//! framework keeps a cursor into the free agents, so one cycle steps over each of its filtered
//! agents at most once. Shares are re-keyed in bulk only when the cluster total changes.
//!
//! Slots of removed agents and frameworks are not reused, so stale entries in the filter queue
//! can never point at a newcomer; they are dropped when they come due.

use std::collections::{BTreeSet, HashMap, HashSet};

use wasmos_api::{AgentId, FrameworkId, Resources};

use super::sorter::{Share, Sorter};
use super::{Allocation, Allocator, AllocatorConfig, AllocatorError, Millis, Quota};

#[derive(Debug)]
struct AgentSlot {
    id: AgentId,
    total: Resources,
    /// Sum of `by_framework`.
    allocated: Resources,
    /// What each framework (slab index) holds here; usually zero to a few entries.
    by_framework: Vec<(u32, Resources)>,
}

impl AgentSlot {
    fn available(&self) -> Resources {
        saturating_sub(&self.total, &self.allocated)
    }
}

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
    /// The key under which it sits in its role's sorter, when it does.
    key: Option<Share>,
}

impl FrameworkSlot {
    fn wants_offers(&self) -> bool {
        self.active && !self.suppressed
    }
}

#[derive(Debug)]
struct RoleSlot {
    name: String,
    weight: f64,
    quota: Quota,
    allocated: Resources,
    /// Frameworks of this role that want offers, by dominant share.
    sorter: Sorter,
    /// The key under which it sits in the role sorter, when it does (iff `sorter` is not empty).
    key: Option<Share>,
}

/// Per-cycle scratch state.
struct Cycle {
    candidates: BTreeSet<u32>,
    excluded_frameworks: Vec<u32>,
    excluded_roles: Vec<u32>,
    out: Vec<Allocation>,
}

enum Step {
    Allocated,
    RoleDone,
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
    cycle_no: u64,
}

fn saturating_sub(a: &Resources, b: &Resources) -> Resources {
    Resources {
        millicpus: a.millicpus.saturating_sub(b.millicpus),
        mem_mb: a.mem_mb.saturating_sub(b.mem_mb),
        disk_mb: a.disk_mb.saturating_sub(b.disk_mb),
    }
}

fn min_each(a: &Resources, b: &Resources) -> Resources {
    Resources {
        millicpus: a.millicpus.min(b.millicpus),
        mem_mb: a.mem_mb.min(b.mem_mb),
        disk_mb: a.disk_mb.min(b.disk_mb),
    }
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

    /// Whether `framework` may not be offered `agent` at time `now` because of a filter.
    pub fn is_filtered(&self, framework: &FrameworkId, agent: &AgentId, now: Millis) -> bool {
        let (Some(&f), Some(&a)) = (
            self.framework_index.get(framework),
            self.agent_index.get(agent),
        ) else {
            return false;
        };
        let Some(available) = self.agents[a as usize].as_ref().map(AgentSlot::available) else {
            return false;
        };
        self.frameworks[f as usize]
            .as_ref()
            .and_then(|fw| fw.filters.get(&a))
            .is_some_and(|&(until, declined)| until > now && available.fits_in(&declined))
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

    fn role_idx_or_create(&mut self, role: &str) -> u32 {
        if let Some(&r) = self.role_index.get(role) {
            return r;
        }
        let r = self.roles.len() as u32;
        self.roles.push(RoleSlot {
            name: role.to_string(),
            weight: 1.0,
            quota: Quota::default(),
            allocated: Resources::ZERO,
            sorter: Sorter::default(),
            key: None,
        });
        self.role_index.insert(role.to_string(), r);
        r
    }

    fn fw_share(&self, f: u32) -> Share {
        Share(self.fw(f).allocated.dominant_share(&self.total))
    }

    fn role_share(&self, r: u32) -> Share {
        let role = &self.roles[r as usize];
        Share(role.allocated.dominant_share(&self.total) / role.weight)
    }

    /// Moves a framework and its role to their current keys, if they are sorted.
    fn rekey(&mut self, f: u32) {
        let share = self.fw_share(f);
        let fw = self.fw_mut(f);
        let r = fw.role;
        if let Some(old) = fw.key {
            fw.key = Some(share);
            let sorter = &mut self.roles[r as usize].sorter;
            sorter.remove(old, f);
            sorter.insert(share, f);
        }
        self.rekey_role(r);
    }

    fn rekey_role(&mut self, r: u32) {
        let share = self.role_share(r);
        let role = &mut self.roles[r as usize];
        if let Some(old) = role.key {
            role.key = Some(share);
            self.role_sorter.remove(old, r);
            self.role_sorter.insert(share, r);
        }
    }

    /// Puts a framework into (or takes it out of) its role's sorter according to whether it
    /// wants offers, and the role into the role sorter iff it has sorted frameworks.
    fn sync_membership(&mut self, f: u32) {
        let share = self.fw_share(f);
        let fw = self.fw_mut(f);
        let r = fw.role;
        match (fw.wants_offers(), fw.key) {
            (true, None) => {
                fw.key = Some(share);
                self.roles[r as usize].sorter.insert(share, f);
            }
            (false, Some(old)) => {
                fw.key = None;
                self.roles[r as usize].sorter.remove(old, f);
            }
            _ => {}
        }
        self.sync_role_membership(r);
    }

    fn sync_role_membership(&mut self, r: u32) {
        let share = self.role_share(r);
        let role = &mut self.roles[r as usize];
        match (!role.sorter.is_empty(), role.key) {
            (true, None) => {
                role.key = Some(share);
                self.role_sorter.insert(share, r);
            }
            (false, Some(old)) => {
                role.key = None;
                self.role_sorter.remove(old, r);
            }
            _ => {}
        }
    }

    /// Recomputes every key; called when the cluster total changed.
    fn rebuild_sorters(&mut self) {
        self.role_sorter.clear();
        for role in &mut self.roles {
            role.sorter.clear();
            role.key = None;
        }
        for f in 0..self.frameworks.len() as u32 {
            let Some(fw) = self.frameworks[f as usize].as_ref() else {
                continue;
            };
            if fw.key.is_some() {
                let share = self.fw_share(f);
                let fw = self.fw_mut(f);
                fw.key = Some(share);
                let r = fw.role;
                self.roles[r as usize].sorter.insert(share, f);
            }
        }
        for r in 0..self.roles.len() as u32 {
            self.sync_role_membership(r);
        }
        self.shares_dirty = false;
    }

    fn refresh_free(&mut self, a: u32) {
        let available = self.ag(a).available();
        if self.config.allocatable(&available) {
            self.free.insert(a);
        } else {
            self.free.remove(&a);
        }
        self.dirty.insert(a);
    }

    /// Adds `res` to what framework `f` holds on agent `a`, everywhere it is counted.
    fn add_alloc(&mut self, f: u32, a: u32, res: Resources) -> Result<(), AllocatorError> {
        let err = |this: &Self, source| AllocatorError::Resources {
            action: "allocate",
            framework: this.fw(f).id.clone(),
            agent: this.ag(a).id.clone(),
            source,
        };
        let r = self.fw(f).role;
        // Compute every sum first so a failure changes nothing.
        let agent_alloc = self
            .ag(a)
            .allocated
            .checked_add(&res)
            .map_err(|e| err(self, e))?;
        let fw_alloc = self
            .fw(f)
            .allocated
            .checked_add(&res)
            .map_err(|e| err(self, e))?;
        let role_alloc = self.roles[r as usize]
            .allocated
            .checked_add(&res)
            .map_err(|e| err(self, e))?;
        let agent = self.ag_mut(a);
        match agent.by_framework.iter_mut().find(|(g, _)| *g == f) {
            // Cannot overflow: it is part of `agent.allocated`, which did not.
            Some((_, held)) => *held = held.checked_add(&res).unwrap_or(*held),
            None => agent.by_framework.push((f, res)),
        }
        agent.allocated = agent_alloc;
        let fw = self.fw_mut(f);
        fw.allocated = fw_alloc;
        fw.agents.insert(a);
        self.roles[r as usize].allocated = role_alloc;
        Ok(())
    }

    /// Takes `res` away from what framework `f` holds on agent `a`.
    fn sub_alloc(&mut self, f: u32, a: u32, res: Resources) -> Result<(), AllocatorError> {
        let err = |this: &Self, source| AllocatorError::Resources {
            action: "recover",
            framework: this.fw(f).id.clone(),
            agent: this.ag(a).id.clone(),
            source,
        };
        let r = self.fw(f).role;
        let pos = self.ag(a).by_framework.iter().position(|(g, _)| *g == f);
        let held = pos
            .map(|p| self.ag(a).by_framework[p].1)
            .unwrap_or_default();
        let left = held.checked_sub(&res).map_err(|e| err(self, e))?;
        // `held` is part of each of these sums, so they cannot go short; saturate anyway.
        let agent = self.ag_mut(a);
        agent.allocated = saturating_sub(&agent.allocated, &res);
        if let Some(p) = pos {
            if left.is_zero() {
                agent.by_framework.swap_remove(p);
            } else {
                agent.by_framework[p].1 = left;
            }
        }
        let fw = self.fw_mut(f);
        fw.allocated = saturating_sub(&fw.allocated, &res);
        if left.is_zero() {
            fw.agents.remove(&a);
        }
        let role = &mut self.roles[r as usize];
        role.allocated = saturating_sub(&role.allocated, &res);
        Ok(())
    }

    fn add_filter(&mut self, f: u32, a: u32, until: Millis, declined: Resources) {
        let fw = self.fw_mut(f);
        if let Some((old, _)) = fw.filters.insert(a, (until, declined)) {
            self.filter_expiry.remove(&(old, f, a));
        }
        self.filter_expiry.insert((until, f, a));
    }

    fn clear_filters(&mut self, f: u32) {
        let filters = std::mem::take(&mut self.fw_mut(f).filters);
        for (a, (until, _)) in filters {
            self.filter_expiry.remove(&(until, f, a));
        }
    }

    fn expire_filters(&mut self, now: Millis) {
        while let Some(&(until, f, a)) = self.filter_expiry.first() {
            if until > now {
                break;
            }
            self.filter_expiry.pop_first();
            let Some(fw) = self.frameworks[f as usize].as_mut() else {
                continue;
            };
            if fw.filters.get(&a).map(|&(u, _)| u) == Some(until) {
                fw.filters.remove(&a);
                if self.agents[a as usize].is_some() {
                    self.dirty.insert(a);
                }
            }
        }
    }

    fn headroom(&self, r: u32) -> Resources {
        let role = &self.roles[r as usize];
        match role.quota.limit {
            None => Resources {
                millicpus: u64::MAX,
                mem_mb: u64::MAX,
                disk_mb: u64::MAX,
            },
            Some(limit) => saturating_sub(&limit, &role.allocated),
        }
    }

    fn guarantee_unmet(&self, r: u32) -> bool {
        let role = &self.roles[r as usize];
        !role.quota.guarantee.is_zero() && !role.quota.guarantee.fits_in(&role.allocated)
    }

    /// The next agent framework `f` may get in this cycle, advancing its cursor.
    fn next_agent_for(&mut self, f: u32, cycle: &Cycle, now: Millis) -> Option<u32> {
        let fi = f as usize;
        if self.cursors.len() <= fi {
            self.cursors.resize(fi + 1, (0, 0));
        }
        if self.cursors[fi].0 != self.cycle_no {
            self.cursors[fi] = (self.cycle_no, 0);
        }
        let start = self.cursors[fi].1;
        // A filter holds while what would be offered (free resources, capped by the role's
        // headroom, as in `step_role`) is within what was declined.
        let headroom = self.headroom(self.fw(f).role);
        let filters = &self.fw(f).filters;
        let agents = &self.agents;
        let found = cycle.candidates.range(start..).copied().find(|a| {
            filters.get(a).is_none_or(|&(until, declined)| {
                until <= now
                    || agents[*a as usize].as_ref().is_none_or(|slot| {
                        !min_each(&slot.available(), &headroom).fits_in(&declined)
                    })
            })
        });
        self.cursors[fi].1 = found.map_or(u32::MAX, |a| a.saturating_add(1));
        found
    }

    /// Gives the lowest-share framework of role `r` one agent, or says the role is done.
    fn step_role(&mut self, r: u32, cycle: &mut Cycle, now: Millis) -> Step {
        loop {
            let Some(f) = self.roles[r as usize].sorter.first() else {
                return Step::RoleDone;
            };
            let Some(a) = self.next_agent_for(f, cycle, now) else {
                // Nothing left for this framework in this cycle: set it aside.
                let fw = self.fw_mut(f);
                if let Some(key) = fw.key.take() {
                    self.roles[r as usize].sorter.remove(key, f);
                }
                cycle.excluded_frameworks.push(f);
                continue;
            };
            let offer = min_each(&self.ag(a).available(), &self.headroom(r));
            if !self.config.allocatable(&offer) {
                if self.config.allocatable(&self.ag(a).available()) {
                    // The agent has enough; the role's limit does not.
                    return Step::RoleDone;
                }
                cycle.candidates.remove(&a);
                continue;
            }
            if self.add_alloc(f, a, offer).is_err() {
                // Only possible on u64 overflow of a sum; never offer what cannot be counted.
                cycle.candidates.remove(&a);
                continue;
            }
            if !self.config.allocatable(&self.ag(a).available()) {
                cycle.candidates.remove(&a);
                self.free.remove(&a);
            }
            self.rekey(f);
            cycle.out.push(Allocation {
                framework: self.fw(f).id.clone(),
                agent: self.ag(a).id.clone(),
                resources: offer,
            });
            return Step::Allocated;
        }
    }

    fn run_cycle(&mut self, now: Millis) -> Vec<Allocation> {
        self.cycle_no += 1;
        self.expire_filters(now);
        if self.shares_dirty {
            self.rebuild_sorters();
        }
        let dirty = std::mem::take(&mut self.dirty);
        let candidates = if std::mem::take(&mut self.all_dirty) {
            self.free.clone()
        } else {
            let mut d = dirty;
            d.retain(|a| self.free.contains(a));
            d
        };
        if candidates.is_empty() || self.role_sorter.is_empty() {
            return Vec::new();
        }
        let mut cycle = Cycle {
            candidates,
            excluded_frameworks: Vec::new(),
            excluded_roles: Vec::new(),
            out: Vec::new(),
        };

        // Stage 1: quota guarantees, lowest weighted share first.
        let mut unmet = Sorter::default();
        let mut unmet_keys = HashMap::new();
        for &r in &self.quota_roles {
            if self.guarantee_unmet(r) && !self.roles[r as usize].sorter.is_empty() {
                let k = self.role_share(r);
                unmet.insert(k, r);
                unmet_keys.insert(r, k);
            }
        }
        while let Some(r) = unmet.first() {
            if cycle.candidates.is_empty() {
                break;
            }
            let key = unmet_keys[&r];
            unmet.remove(key, r);
            if let Step::Allocated = self.step_role(r, &mut cycle, now)
                && self.guarantee_unmet(r)
            {
                let k = self.role_share(r);
                unmet.insert(k, r);
                unmet_keys.insert(r, k);
            }
        }

        // Stage 2: fair share over every role.
        while let Some(r) = self.role_sorter.first() {
            if cycle.candidates.is_empty() {
                break;
            }
            if let Step::RoleDone = self.step_role(r, &mut cycle, now) {
                if let Some(key) = self.roles[r as usize].key.take() {
                    self.role_sorter.remove(key, r);
                }
                cycle.excluded_roles.push(r);
            }
        }

        // Put back what was set aside for this cycle only.
        for f in std::mem::take(&mut cycle.excluded_frameworks) {
            self.sync_membership(f);
        }
        for r in std::mem::take(&mut cycle.excluded_roles) {
            self.sync_role_membership(r);
        }
        cycle.out
    }
}

impl Allocator for DrfAllocator {
    fn add_agent(&mut self, agent: AgentId, total: Resources) -> Result<(), AllocatorError> {
        if self.agent_index.contains_key(&agent) {
            return Err(AllocatorError::DuplicateAgent(agent));
        }
        let new_total =
            self.total
                .checked_add(&total)
                .map_err(|source| AllocatorError::ClusterTotal {
                    agent: agent.clone(),
                    resources: total,
                    source,
                })?;
        let a = self.agents.len() as u32;
        self.agents.push(Some(AgentSlot {
            id: agent.clone(),
            total,
            allocated: Resources::ZERO,
            by_framework: Vec::new(),
        }));
        self.agent_index.insert(agent, a);
        self.total = new_total;
        self.shares_dirty = true;
        self.refresh_free(a);
        Ok(())
    }

    fn update_agent(&mut self, agent: &AgentId, total: Resources) -> Result<(), AllocatorError> {
        let a = self.agent_idx(agent)?;
        let old = self.ag(a).total;
        let new_total = saturating_sub(&self.total, &old)
            .checked_add(&total)
            .map_err(|source| AllocatorError::ClusterTotal {
                agent: agent.clone(),
                resources: total,
                source,
            })?;
        self.ag_mut(a).total = total;
        self.total = new_total;
        self.shares_dirty = true;
        self.refresh_free(a);
        Ok(())
    }

    fn remove_agent(&mut self, agent: &AgentId) -> Result<(), AllocatorError> {
        let a = self.agent_idx(agent)?;
        let held = self.ag(a).by_framework.clone();
        for (f, res) in held {
            // Cannot fail: we take back exactly what is held.
            let _ = self.sub_alloc(f, a, res);
        }
        let slot = self.agents[a as usize].take();
        self.agent_index.remove(agent);
        self.free.remove(&a);
        self.dirty.remove(&a);
        if let Some(slot) = slot {
            self.total = saturating_sub(&self.total, &slot.total);
        }
        self.shares_dirty = true;
        Ok(())
    }

    fn add_framework(
        &mut self,
        framework: FrameworkId,
        role: &str,
        active: bool,
    ) -> Result<(), AllocatorError> {
        if self.framework_index.contains_key(&framework) {
            return Err(AllocatorError::DuplicateFramework(framework));
        }
        let r = self.role_idx_or_create(role);
        let f = self.frameworks.len() as u32;
        self.frameworks.push(Some(FrameworkSlot {
            id: framework.clone(),
            role: r,
            allocated: Resources::ZERO,
            agents: HashSet::new(),
            filters: HashMap::new(),
            active,
            suppressed: false,
            key: None,
        }));
        self.framework_index.insert(framework, f);
        self.sync_membership(f);
        self.all_dirty = true;
        Ok(())
    }

    fn remove_framework(&mut self, framework: &FrameworkId) -> Result<(), AllocatorError> {
        let f = self.framework_idx(framework)?;
        let agents: Vec<u32> = self.fw(f).agents.iter().copied().collect();
        for a in agents {
            let held = self
                .ag(a)
                .by_framework
                .iter()
                .find(|(g, _)| *g == f)
                .map(|(_, r)| *r)
                .unwrap_or_default();
            let _ = self.sub_alloc(f, a, held);
            self.refresh_free(a);
        }
        self.clear_filters(f);
        let fw = self.fw_mut(f);
        fw.active = false;
        let r = fw.role;
        self.sync_membership(f);
        self.rekey_role(r);
        self.frameworks[f as usize] = None;
        self.framework_index.remove(framework);
        Ok(())
    }

    fn set_framework_active(
        &mut self,
        framework: &FrameworkId,
        active: bool,
    ) -> Result<(), AllocatorError> {
        let f = self.framework_idx(framework)?;
        let was = self.fw(f).wants_offers();
        self.fw_mut(f).active = active;
        self.sync_membership(f);
        if !was && self.fw(f).wants_offers() {
            self.all_dirty = true;
        }
        Ok(())
    }

    fn suppress(&mut self, framework: &FrameworkId) -> Result<(), AllocatorError> {
        let f = self.framework_idx(framework)?;
        self.fw_mut(f).suppressed = true;
        self.sync_membership(f);
        Ok(())
    }

    fn revive(&mut self, framework: &FrameworkId) -> Result<(), AllocatorError> {
        let f = self.framework_idx(framework)?;
        self.fw_mut(f).suppressed = false;
        self.clear_filters(f);
        self.sync_membership(f);
        self.all_dirty = true;
        Ok(())
    }

    fn add_used(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: Resources,
    ) -> Result<(), AllocatorError> {
        let f = self.framework_idx(framework)?;
        let a = self.agent_idx(agent)?;
        self.add_alloc(f, a, resources)?;
        self.rekey(f);
        self.refresh_free(a);
        Ok(())
    }

    fn recover(
        &mut self,
        framework: &FrameworkId,
        agent: &AgentId,
        resources: Resources,
        refuse_ms: Millis,
        now: Millis,
    ) -> Result<(), AllocatorError> {
        let f = self.framework_idx(framework)?;
        let a = self.agent_idx(agent)?;
        self.sub_alloc(f, a, resources)?;
        if refuse_ms > 0 {
            self.add_filter(f, a, now.saturating_add(refuse_ms), resources);
        }
        self.rekey(f);
        self.refresh_free(a);
        Ok(())
    }

    fn set_weight(&mut self, role: &str, weight: f64) -> Result<(), AllocatorError> {
        if !weight.is_finite() || weight <= 0.0 {
            return Err(AllocatorError::InvalidWeight {
                role: role.to_string(),
                weight,
            });
        }
        let r = self.role_idx_or_create(role);
        self.roles[r as usize].weight = weight;
        self.rekey_role(r);
        self.all_dirty = true;
        Ok(())
    }

    fn set_quota(&mut self, role: &str, quota: Quota) -> Result<(), AllocatorError> {
        if let Some(limit) = quota.limit
            && !quota.guarantee.fits_in(&limit)
        {
            return Err(AllocatorError::GuaranteeAboveLimit {
                role: role.to_string(),
                guarantee: quota.guarantee,
                limit,
            });
        }
        let r = self.role_idx_or_create(role);
        self.roles[r as usize].quota = quota;
        if quota.guarantee.is_zero() {
            self.quota_roles.remove(&r);
        } else {
            self.quota_roles.insert(r);
        }
        self.all_dirty = true;
        Ok(())
    }

    fn allocate(&mut self, now: Millis) -> Vec<Allocation> {
        self.run_cycle(now)
    }

    fn framework_allocation(&self, framework: &FrameworkId) -> Option<Resources> {
        let f = *self.framework_index.get(framework)?;
        Some(self.fw(f).allocated)
    }

    fn role_allocation(&self, role: &str) -> Option<Resources> {
        Some(self.roles[*self.role_index.get(role)? as usize].allocated)
    }

    fn agent_available(&self, agent: &AgentId) -> Option<Resources> {
        Some(self.agent(agent)?.available())
    }

    fn cluster_total(&self) -> Resources {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(i: usize) -> AgentId {
        AgentId::new(format!("a{i}")).unwrap()
    }
    fn fwk(i: usize) -> FrameworkId {
        FrameworkId::new(format!("f{i}")).unwrap()
    }
    fn res(cpus: f64, mem: u64) -> Resources {
        Resources::new(cpus, mem, 0)
    }

    fn cluster(agents: usize, frameworks: &[&str]) -> DrfAllocator {
        let mut al = DrfAllocator::new(AllocatorConfig::default());
        for i in 0..agents {
            al.add_agent(agent(i), res(4.0, 4096)).unwrap();
        }
        for (i, role) in frameworks.iter().enumerate() {
            al.add_framework(fwk(i), role, true).unwrap();
        }
        al
    }

    #[test]
    fn each_agent_goes_to_the_lowest_share() {
        let mut al = cluster(4, &["a", "a"]);
        let out = al.allocate(0);
        assert_eq!(out.len(), 4);
        assert_eq!(al.framework_allocation(&fwk(0)), Some(res(8.0, 8192)));
        assert_eq!(al.framework_allocation(&fwk(1)), Some(res(8.0, 8192)));
        assert!(
            al.allocate(1).is_empty(),
            "nothing changed, nothing to offer"
        );
    }

    #[test]
    fn a_filter_covers_only_what_was_declined() {
        // The framework uses 1 cpu of the agent and declines the rest for a long time; when its
        // task ends, the agent has more free than was declined, so it is offered again at once.
        let mut al = cluster(1, &["a"]);
        let out = al.allocate(0);
        assert_eq!(out[0].resources, res(4.0, 4096));
        let used = res(1.0, 1024);
        let declined = out[0].resources.checked_sub(&used).unwrap();
        al.recover(&fwk(0), &agent(0), declined, 120_000, 10)
            .unwrap();
        assert!(
            al.allocate(20).is_empty(),
            "within the declined resources: filtered"
        );
        assert!(al.is_filtered(&fwk(0), &agent(0), 20));
        al.recover(&fwk(0), &agent(0), used, 0, 30).unwrap();
        assert!(!al.is_filtered(&fwk(0), &agent(0), 40));
        let again = al.allocate(40);
        assert_eq!(again.len(), 1, "more than was declined is offered again");
        assert_eq!(again[0].resources, res(4.0, 4096));
    }

    #[test]
    fn recovered_resources_are_reoffered_unless_filtered() {
        let mut al = cluster(1, &["a"]);
        let out = al.allocate(0);
        assert_eq!(out.len(), 1);
        al.recover(&fwk(0), &agent(0), out[0].resources, 5_000, 1_000)
            .unwrap();
        assert!(al.allocate(1_000).is_empty());
        assert!(al.allocate(5_999).is_empty());
        let again = al.allocate(6_000);
        assert_eq!(again.len(), 1, "the filter expired at 6000");
    }

    #[test]
    fn filtered_agent_goes_to_the_next_framework() {
        let mut al = cluster(1, &["a"]);
        let out = al.allocate(0);
        al.recover(&fwk(0), &agent(0), out[0].resources, 60_000, 0)
            .unwrap();
        al.add_framework(fwk(9), "a", true).unwrap();
        let out = al.allocate(1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].framework, fwk(9));
    }

    #[test]
    fn suppress_and_revive() {
        let mut al = cluster(2, &["a"]);
        al.suppress(&fwk(0)).unwrap();
        assert!(al.allocate(0).is_empty());
        al.revive(&fwk(0)).unwrap();
        assert_eq!(al.allocate(1).len(), 2);
    }

    #[test]
    fn revive_clears_filters() {
        let mut al = cluster(1, &["a"]);
        let out = al.allocate(0);
        al.recover(&fwk(0), &agent(0), out[0].resources, 60_000, 0)
            .unwrap();
        assert!(al.allocate(1).is_empty());
        al.revive(&fwk(0)).unwrap();
        assert_eq!(al.allocate(2).len(), 1);
    }

    #[test]
    fn limit_cuts_offers_down() {
        let mut al = cluster(2, &["a"]);
        al.set_quota(
            "a",
            Quota {
                guarantee: Resources::ZERO,
                limit: Some(res(5.0, 100_000)),
            },
        )
        .unwrap();
        al.allocate(0);
        assert_eq!(al.role_allocation("a"), Some(res(5.0, 8192)));
        let total = al.role_allocation("a").unwrap();
        assert!(total.millicpus <= 5000);
    }

    #[test]
    fn weights_bias_shares() {
        let mut al = cluster(30, &["a", "b"]);
        al.set_weight("b", 2.0).unwrap();
        al.allocate(0);
        assert_eq!(al.role_allocation("a"), Some(res(40.0, 40960)));
        assert_eq!(al.role_allocation("b"), Some(res(80.0, 81920)));
    }

    #[test]
    fn guarantee_is_served_before_fair_share() {
        // Role "q" already has a big framework competitor in "p" with a lower share.
        let mut al = cluster(10, &["p", "q"]);
        al.set_quota(
            "q",
            Quota {
                guarantee: res(28.0, 0),
                limit: None,
            },
        )
        .unwrap();
        al.allocate(0);
        assert!(al.role_allocation("q").unwrap().millicpus >= 28_000);
    }

    #[test]
    fn removing_things_frees_and_forgets() {
        let mut al = cluster(2, &["a", "b"]);
        al.allocate(0);
        al.remove_framework(&fwk(0)).unwrap();
        assert_eq!(al.role_allocation("a"), Some(Resources::ZERO));
        let out = al.allocate(1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].framework, fwk(1));
        al.remove_agent(&agent(0)).unwrap();
        assert_eq!(al.cluster_total(), res(4.0, 4096));
        assert_eq!(al.framework_allocation(&fwk(1)), Some(res(4.0, 4096)));
        assert!(matches!(
            al.recover(&fwk(1), &agent(0), res(1.0, 1), 0, 2),
            Err(AllocatorError::UnknownAgent(_))
        ));
    }

    #[test]
    fn recovering_more_than_held_is_refused_without_change() {
        let mut al = cluster(1, &["a"]);
        al.allocate(0);
        let err = al
            .recover(&fwk(0), &agent(0), res(5.0, 0), 0, 1)
            .unwrap_err();
        assert!(err.to_string().contains("not enough cpus"), "{err}");
        assert_eq!(al.framework_allocation(&fwk(0)), Some(res(4.0, 4096)));
    }

    #[test]
    fn inactive_framework_keeps_resources_but_gets_no_offers() {
        let mut al = cluster(2, &["a"]);
        al.add_used(&fwk(0), &agent(0), res(1.0, 100)).unwrap();
        al.set_framework_active(&fwk(0), false).unwrap();
        assert!(al.allocate(0).is_empty());
        assert_eq!(al.framework_allocation(&fwk(0)), Some(res(1.0, 100)));
        al.set_framework_active(&fwk(0), true).unwrap();
        assert_eq!(al.allocate(1).len(), 2);
    }
}
