//! The [`Allocator`] interface of [`DrfAllocator`]: the events the master feeds in (agents and
//! frameworks come and go, resources are used and recovered, frameworks suppress and revive,
//! operators set weights and quotas) and the queries it asks.
//!
//! Each event is checked before anything changes, then updates the holdings, the sorters' keys
//! and the dirty marks that tell the next cycle which agents to look at.

use std::collections::{HashMap, HashSet};

use wasmos_api::{AgentId, FrameworkId, Resources};

use super::super::{Allocation, Allocator, AllocatorError, Millis, Quota};
use super::{AgentSlot, DrfAllocator, FrameworkSlot};

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
            usable: true,
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
        let new_total = self
            .total
            .saturating_sub(&old)
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

    fn set_agent_usable(&mut self, agent: &AgentId, usable: bool) -> Result<(), AllocatorError> {
        let a = self.agent_idx(agent)?;
        self.ag_mut(a).usable = usable;
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
            self.total = self.total.saturating_sub(&slot.total);
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
            last_allocated: 0,
            last_cycle: 0,
            wanting_since: 0,
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

    fn resume(&mut self, framework: &FrameworkId) -> Result<(), AllocatorError> {
        let f = self.framework_idx(framework)?;
        self.fw_mut(f).suppressed = false;
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

    fn waiting(&self, max: usize) -> Vec<(FrameworkId, f64)> {
        self.waiting_frameworks(max)
    }

    fn wants_offers(&self, framework: &FrameworkId) -> bool {
        self.framework_index
            .get(framework)
            .is_some_and(|&f| self.fw(f).wants_offers())
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
    use super::super::testing::{agent, cluster, fwk, res};
    use crate::allocator::{Allocator, AllocatorError};
    use wasmos_api::Resources;

    #[test]
    fn suppress_and_revive() {
        let mut al = cluster(2, &["a"]);
        al.suppress(&fwk(0)).unwrap();
        assert!(al.allocate(0).is_empty());
        al.revive(&fwk(0)).unwrap();
        assert_eq!(al.allocate(1).len(), 2);
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
