//! One allocation cycle: which free agents are looked at, and who gets each of them.
//!
//! Stage 1 serves roles whose quota guarantee is unmet, stage 2 every role by weighted share
//! (the policy is argued in the parent module's docs). Within a role the lowest-share framework
//! gets the first candidate agent its filters let through, found through a per-framework cursor
//! so a cycle steps over each filtered agent at most once. Frameworks and roles that can take
//! nothing more are set aside for the rest of the cycle and put back at its end.

use std::collections::{BTreeSet, HashMap};

use super::super::sorter::Sorter;
use wasmos_api::FrameworkId;

use super::super::{Allocation, Millis};
use super::DrfAllocator;

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

impl DrfAllocator {
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
        let r = self.fw(f).role;
        let headroom = self.headroom(r);
        let filters = &self.fw(f).filters;
        let agents = &self.agents;
        // Whether a filter held only because the limit cut the offer down to what was declined.
        let mut held_by_limit = false;
        let found = cycle.candidates.range(start..).copied().find(|a| {
            filters.get(a).is_none_or(|&(until, declined)| {
                until <= now
                    || agents[*a as usize].as_ref().is_none_or(|slot| {
                        let free = slot.available();
                        let holds = free.min_each(&headroom).fits_in(&declined);
                        held_by_limit |= holds && !free.fits_in(&declined);
                        !holds
                    })
            })
        });
        if held_by_limit {
            self.roles[r as usize].limit_blocked = true;
        }
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
            let headroom = self.headroom(r);
            let offer = self.ag(a).available().min_each(&headroom);
            if !self.config.allocatable(&offer) {
                if !self.config.allocatable(&self.ag(a).available()) {
                    cycle.candidates.remove(&a);
                    continue;
                }
                self.roles[r as usize].limit_blocked = true;
                if !self.config.allocatable(&headroom) {
                    // The role's limit leaves nothing worth offering on any agent.
                    return Step::RoleDone;
                }
                // Otherwise only this agent's free mix does not meet the role's headroom
                // (CPU left under the limit, but this agent has only memory free, say):
                // another agent may, and the framework's cursor has moved past this one.
                continue;
            }
            if offer != self.ag(a).available() {
                // Cut down by the limit: the rest may suit the role once it holds less.
                self.roles[r as usize].limit_blocked = true;
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
            self.allocation_seq += 1;
            let (seq, cycle_no) = (self.allocation_seq, self.cycle_no);
            let fw = self.fw_mut(f);
            fw.last_allocated = seq;
            fw.last_cycle = cycle_no;
            self.roles[r as usize].last_allocated = self.allocation_seq;
            self.rekey(f);
            cycle.out.push(Allocation {
                framework: self.fw(f).id.clone(),
                agent: self.ag(a).id.clone(),
                resources: offer,
            });
            return Step::Allocated;
        }
    }

    /// See [`Allocator::waiting`](super::super::Allocator::waiting) and the parent module's
    /// "Waiting frameworks".
    pub(super) fn waiting_frameworks(&self, max: usize) -> Vec<(FrameworkId, f64)> {
        let mut out: Vec<(FrameworkId, f64)> = Vec::new();
        if max == 0 || self.cycle_no == 0 {
            return out;
        }
        for r in self.role_sorter.iter().take(max) {
            let waiting = self.roles[r as usize]
                .sorter
                .iter()
                .map(|f| self.fw(f))
                .filter(|fw| fw.last_cycle != self.cycle_no && fw.wanting_since < self.cycle_no)
                .take(max);
            out.extend(waiting.map(|fw| (fw.id.clone(), fw.allocated.dominant_share(&self.total))));
        }
        out.sort_by(|a, b| a.1.total_cmp(&b.1));
        out.truncate(max);
        out
    }

    pub(super) fn run_cycle(&mut self, now: Millis) -> Vec<Allocation> {
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
                let k = self.role_key(r);
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
                let k = self.role_key(r);
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

#[cfg(test)]
mod tests {
    use super::super::DrfAllocator;
    use super::super::testing::{agent, cluster, fwk, res};
    use crate::allocator::{Allocation, Allocator, AllocatorConfig};
    use wasmos_api::FrameworkId;

    /// Every framework declines everything it is offered with no filter at all (the worst a
    /// hostile framework can do once the master's decline floor is out of the way).
    fn decline_all(al: &mut DrfAllocator, out: &[Allocation], now: u64) {
        for a in out {
            al.recover(&a.framework, &a.agent, a.resources, 0, now)
                .unwrap();
        }
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
    fn a_framework_declining_everything_does_not_keep_an_agent_from_a_later_one() {
        // Same role (framework ties) and another role (role ties).
        for later_role in ["a", "b"] {
            let mut al = cluster(1, &["a"]);
            for now in 0..5 {
                let out = al.allocate(now);
                assert_eq!(out[0].framework, fwk(0));
                decline_all(&mut al, &out, now);
            }
            al.add_framework(fwk(1), later_role, true).unwrap();
            let out = al.allocate(5);
            assert_eq!(
                out.iter().map(|a| &a.framework).collect::<Vec<_>>(),
                [&fwk(1)],
                "the later framework in role {later_role:?} gets the agent in the first cycle"
            );
        }
    }

    #[test]
    fn equal_shares_take_turns() {
        for roles in [&["a", "a", "a"], &["a", "b", "c"]] {
            let mut al = cluster(1, roles);
            let mut order = Vec::new();
            for now in 0..6 {
                let out = al.allocate(now);
                order.extend(out.iter().map(|a| a.framework.clone()));
                decline_all(&mut al, &out, now);
            }
            let (f0, f1, f2) = (fwk(0), fwk(1), fwk(2));
            assert_eq!(
                order,
                [&f0, &f1, &f2, &f0, &f1, &f2].map(Clone::clone),
                "roles {roles:?}"
            );
        }
    }

    #[test]
    fn five_hundred_frameworks_declining_everything_do_not_keep_a_newcomer_waiting() {
        // 500 frameworks in 5 roles on 20 agents decline everything with no filter. After 50
        // cycles every one of them has been offered something; then a newcomer subscribes.
        const CYCLES_ALLOWED: u64 = 3;
        for newcomer_role in ["r0", "new"] {
            let mut al = DrfAllocator::new(AllocatorConfig::default());
            for i in 0..20 {
                al.add_agent(agent(i), res(4.0, 4096)).unwrap();
            }
            for i in 0..500 {
                al.add_framework(fwk(i), &format!("r{}", i % 5), true)
                    .unwrap();
            }
            let mut now = 0;
            for _ in 0..50 {
                now += 1;
                let out = al.allocate(now);
                assert_eq!(out.len(), 20);
                decline_all(&mut al, &out, now);
            }
            let newcomer = fwk(500);
            al.add_framework(newcomer.clone(), newcomer_role, true)
                .unwrap();
            let waited = (1..=CYCLES_ALLOWED).find(|_| {
                now += 1;
                let out = al.allocate(now);
                decline_all(&mut al, &out, now);
                out.iter().any(|a| a.framework == newcomer)
            });
            assert_eq!(
                waited,
                Some(1),
                "the newcomer (role {newcomer_role:?}) is offered an agent in its first cycle"
            );
        }
    }

    #[test]
    fn unanswered_offers_count_against_their_framework() {
        // f0 holds its offer of agent 0 without answering; agent 1 then goes to f1, whose share
        // is lower, even though f1 came later.
        let mut al = cluster(1, &["a"]);
        let out = al.allocate(0);
        assert_eq!(out[0].framework, fwk(0));
        assert_eq!(al.framework_allocation(&fwk(0)), Some(res(4.0, 4096)));
        assert!(al.framework_share(&fwk(0)).unwrap() > 0.0);
        al.add_framework(fwk(1), "a", true).unwrap();
        al.add_agent(agent(1), res(2.0, 2048)).unwrap();
        let out = al.allocate(1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].framework, fwk(1));
        // And f0, still sitting on agent 0, is not offered more while f1 holds less.
        al.add_agent(agent(2), res(8.0, 8192)).unwrap();
        let out = al.allocate(2);
        assert_eq!(out[0].framework, fwk(1));
    }

    #[test]
    fn waiting_names_who_wanted_offers_through_a_cycle_and_got_none() {
        // One agent, three frameworks: f0 gets the agent, f1 and f2 get nothing.
        let mut al = cluster(1, &["a", "a", "b"]);
        assert!(al.waiting(8).is_empty(), "no cycle ran yet");
        al.allocate(0);
        // Equal shares come in role order; compare as sets.
        let names = |w: Vec<(FrameworkId, f64)>| {
            let mut n: Vec<_> = w.into_iter().map(|x| x.0).collect();
            n.sort();
            n
        };
        assert_eq!(
            names(al.waiting(8)),
            [fwk(1), fwk(2)],
            "the served one is not waiting"
        );
        assert_eq!(names(al.waiting(1)).len(), 1, "at most `max`");
        // A framework added after the cycle has not waited through one; a suppressed one
        // does not want offers.
        al.add_framework(fwk(3), "a", true).unwrap();
        al.suppress(&fwk(2)).unwrap();
        assert_eq!(names(al.waiting(8)), [fwk(1)]);
        // Nothing is free in the next cycle: f0, which holds the agent, waits too, last.
        al.allocate(1);
        assert_eq!(names(al.waiting(8)), [fwk(0), fwk(1), fwk(3)]);
        let w = al.waiting(8);
        assert_eq!((&w[2].0, w[2].1), (&fwk(0), 1.0), "lowest share first");
    }
}
