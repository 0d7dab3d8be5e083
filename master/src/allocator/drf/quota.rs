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
    use super::super::testing::{cluster, res};
    use crate::allocator::{Allocator, Quota};
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
