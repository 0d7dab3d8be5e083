//! Refuse filters: a framework that declines resources with a refuse time is not offered that
//! agent again until the filter expires, unless the agent then has more free than was declined.
//!
//! Each framework keeps its filters by agent; one expiry queue, soonest first, lets a cycle pay
//! only for the filters that come due. Revive and framework removal clear a framework's filters.
//! Skipping filtered agents during a cycle is the cursor's job, in `cycle`.

use wasmos_api::{AgentId, FrameworkId, Resources};

use super::super::Millis;
use super::{AgentSlot, DrfAllocator};

impl DrfAllocator {
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
}

impl DrfAllocator {
    pub(super) fn add_filter(&mut self, f: u32, a: u32, until: Millis, declined: Resources) {
        let fw = self.fw_mut(f);
        if let Some((old, _)) = fw.filters.insert(a, (until, declined)) {
            self.filter_expiry.remove(&(old, f, a));
        }
        self.filter_expiry.insert((until, f, a));
    }

    pub(super) fn clear_filters(&mut self, f: u32) {
        let filters = std::mem::take(&mut self.fw_mut(f).filters);
        for (a, (until, _)) in filters {
            self.filter_expiry.remove(&(until, f, a));
        }
    }

    pub(super) fn expire_filters(&mut self, now: Millis) {
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::{agent, cluster, fwk, res};
    use crate::allocator::Allocator;

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
    fn revive_clears_filters() {
        let mut al = cluster(1, &["a"]);
        let out = al.allocate(0);
        al.recover(&fwk(0), &agent(0), out[0].resources, 60_000, 0)
            .unwrap();
        assert!(al.allocate(1).is_empty());
        al.revive(&fwk(0)).unwrap();
        assert_eq!(al.allocate(2).len(), 1);
    }
}
