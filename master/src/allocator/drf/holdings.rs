//! Who holds what where: the three sums (per agent, per framework, per role) that every share
//! and every free-agent decision is computed from, kept equal to each other, and the set of
//! agents whose free resources are worth offering.
//!
//! A change is computed in full before it is applied, so a failed one (an overflow, or taking
//! back more than is held) leaves every sum as it was. Ordering by share is `shares`'s job.

use wasmos_api::Resources;

use super::super::AllocatorError;
use super::DrfAllocator;

impl DrfAllocator {
    pub(super) fn refresh_free(&mut self, a: u32) {
        let available = self.ag(a).available();
        if self.ag(a).usable && self.config.allocatable(&available) {
            self.free.insert(a);
        } else {
            self.free.remove(&a);
        }
        self.dirty.insert(a);
    }

    /// Adds `res` to what framework `f` holds on agent `a`, everywhere it is counted.
    pub(super) fn add_alloc(
        &mut self,
        f: u32,
        a: u32,
        res: Resources,
    ) -> Result<(), AllocatorError> {
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
    pub(super) fn sub_alloc(
        &mut self,
        f: u32,
        a: u32,
        res: Resources,
    ) -> Result<(), AllocatorError> {
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
        agent.allocated = agent.allocated.saturating_sub(&res);
        if let Some(p) = pos {
            if left.is_zero() {
                agent.by_framework.swap_remove(p);
            } else {
                agent.by_framework[p].1 = left;
            }
        }
        let fw = self.fw_mut(f);
        fw.allocated = fw.allocated.saturating_sub(&res);
        if left.is_zero() {
            fw.agents.remove(&a);
        }
        let role = &mut self.roles[r as usize];
        role.allocated = role.allocated.saturating_sub(&res);
        if role.limit_blocked && !res.is_zero() {
            role.limit_blocked = false;
            self.all_dirty = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{agent, cluster, fwk, res};
    use crate::allocator::Allocator;

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
}
