//! Roles' weights and quotas: the role a framework names is created on first use with weight
//! 1.0 and no quota; its headroom under its quota limit caps every offer to it, and a role whose
//! guarantee is not yet covered is served before fair sharing starts (see `cycle`).
//!
//! Checking and setting weights and quotas is part of the event interface, in `events`.

use wasmos_api::Resources;

use super::super::Quota;
use super::super::sorter::Sorter;
use super::{DrfAllocator, RoleSlot};

impl DrfAllocator {
    pub(super) fn role_idx_or_create(&mut self, role: &str) -> u32 {
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
            last_allocated: 0,
            key: None,
            limit_blocked: false,
        });
        self.role_index.insert(role.to_string(), r);
        r
    }

    pub(super) fn headroom(&self, r: u32) -> Resources {
        let role = &self.roles[r as usize];
        match role.quota.limit {
            None => Resources::UNLIMITED,
            Some(limit) => limit.saturating_sub(&role.allocated),
        }
    }

    pub(super) fn guarantee_unmet(&self, r: u32) -> bool {
        let role = &self.roles[r as usize];
        !role.quota.guarantee.is_zero() && !role.quota.guarantee.fits_in(&role.allocated)
    }
}

#[cfg(test)]
mod tests {
    use super::super::DrfAllocator;
    use super::super::testing::{agent, cluster, fwk, res};
    use crate::allocator::{Allocator, AllocatorConfig, Quota};
    use wasmos_api::Resources;

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

    /// Found by the liveness property test: a role whose limit leaves it CPU but no memory
    /// was set aside for the whole cycle at the first agent with only memory free, so the
    /// CPU free on other agents was never offered to it (and, those agents not changing, not
    /// in later cycles either).
    #[test]
    fn a_limit_that_one_agent_cannot_meet_does_not_stop_the_role() {
        let mut al = DrfAllocator::new(AllocatorConfig::default());
        al.add_agent(agent(0), res(0.0, 4096)).unwrap();
        al.add_agent(agent(1), res(4.0, 0)).unwrap();
        al.set_quota(
            "a",
            Quota {
                guarantee: Resources::ZERO,
                limit: Some(res(2.0, 0)),
            },
        )
        .unwrap();
        al.add_framework(fwk(0), "a", true).unwrap();
        let out = al.allocate(0);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((&out[0].agent, out[0].resources), (&agent(1), res(2.0, 0)));
    }

    /// The proptest's own minimal case: a CPU limit of 1 reached on the first agent, memory
    /// (unlimited) still free on the others, two frameworks in the role.
    #[test]
    fn a_role_at_its_cpu_limit_is_still_offered_unlimited_memory() {
        let mut al = DrfAllocator::new(AllocatorConfig::default());
        for (i, cpus) in [2.0, 1.0, 1.0].into_iter().enumerate() {
            al.add_agent(agent(i), res(cpus, 256)).unwrap();
        }
        let limit = Resources {
            millicpus: 1000,
            mem_mb: u64::MAX,
            disk_mb: u64::MAX,
        };
        al.set_quota(
            "a",
            Quota {
                guarantee: Resources::ZERO,
                limit: Some(limit),
            },
        )
        .unwrap();
        al.add_framework(fwk(0), "a", true).unwrap();
        al.add_framework(fwk(1), "a", true).unwrap();
        al.allocate(0);
        assert_eq!(al.role_allocation("a"), Some(res(1.0, 768)));
        for i in 0..3 {
            let free = al.agent_available(&agent(i)).unwrap();
            assert_eq!(free.mem_mb, 0, "agent {i} has {free} left");
        }
    }

    /// Found by the same property: an offer cut down by the limit leaves the rest of its agent
    /// free; when the role later gives something back elsewhere, that rest suits it again,
    /// though its agent did not change.
    #[test]
    fn what_a_limit_cut_off_is_offered_once_the_role_holds_less() {
        let mut al = DrfAllocator::new(AllocatorConfig::default());
        for (i, cpus) in [1.0, 4.0, 12.0].into_iter().enumerate() {
            al.add_agent(agent(i), res(cpus, 256)).unwrap();
        }
        let limit = Resources {
            millicpus: 16_000,
            mem_mb: u64::MAX,
            disk_mb: u64::MAX,
        };
        al.set_quota(
            "a",
            Quota {
                guarantee: Resources::ZERO,
                limit: Some(limit),
            },
        )
        .unwrap();
        al.add_framework(fwk(0), "a", true).unwrap();
        al.allocate(0);
        assert_eq!(al.role_allocation("a"), Some(res(16.0, 768)));
        assert_eq!(al.agent_available(&agent(2)), Some(res(1.0, 0)));
        // Declines agent 0 for a while: 1 cpu of headroom, which agent 2's rest now suits.
        al.recover(&fwk(0), &agent(0), res(1.0, 256), 60_000, 1)
            .unwrap();
        let out = al.allocate(2);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((&out[0].agent, out[0].resources), (&agent(2), res(1.0, 0)));
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
}
