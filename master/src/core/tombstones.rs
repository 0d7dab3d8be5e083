//! [`Tombstones`]: the tasks this master declared `LOST` by its own decision (a launch that
//! timed out, an agent removed after it stayed away), remembered after their records are gone
//! so that an agent reporting one of them later (at re-registration) is told to kill it
//! instead of the master adopting it again.
//!
//! Bounded: at most [`MAX_TOMBSTONES`] entries, each kept [`TOMBSTONE_TTL_MS`]; the oldest go
//! first. Soft state: a new leader starts with none (an agent reporting a task lost on the old
//! leader is adopted there, as before).

use std::collections::{HashMap, VecDeque};

use wasmos_api::{AgentId, FrameworkId, TaskId};

use crate::allocator::Millis;

/// Most tombstones kept; the oldest is dropped for a new one past this.
pub(crate) const MAX_TOMBSTONES: usize = 65_536;
/// How long a tombstone is kept, in milliseconds (24 hours): longer than an agent is
/// expected to stay away and come back with its tasks.
pub(crate) const TOMBSTONE_TTL_MS: Millis = 24 * 60 * 60 * 1000;

type Key = (AgentId, FrameworkId, TaskId);

/// The tasks lost by the master's decision, by agent, framework and task.
#[derive(Debug, Default)]
pub(crate) struct Tombstones {
    /// When each was laid.
    at: HashMap<Key, Millis>,
    /// In the order laid (an entry re-laid later is stale here and skipped).
    order: VecDeque<(Key, Millis)>,
}

impl Tombstones {
    /// Remembers that the master lost `task` of `fw` on `agent` at `now`.
    pub(crate) fn lay(&mut self, agent: &AgentId, fw: &FrameworkId, task: &TaskId, now: Millis) {
        let key = (agent.clone(), fw.clone(), task.clone());
        self.at.insert(key.clone(), now);
        self.order.push_back((key, now));
        self.prune(now);
    }

    /// Whether the master lost `task` of `fw` on `agent` (within the last day).
    pub(crate) fn holds(
        &mut self,
        agent: &AgentId,
        fw: &FrameworkId,
        task: &TaskId,
        now: Millis,
    ) -> bool {
        self.prune(now);
        self.at
            .contains_key(&(agent.clone(), fw.clone(), task.clone()))
    }

    /// How many are kept.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.at.len()
    }

    fn prune(&mut self, now: Millis) {
        while let Some((key, laid)) = self.order.front() {
            let expired = now.saturating_sub(*laid) >= TOMBSTONE_TTL_MS;
            if !expired && self.at.len() <= MAX_TOMBSTONES {
                break;
            }
            if self.at.get(key) == Some(laid) {
                self.at.remove(key);
            }
            self.order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: usize) -> (AgentId, FrameworkId, TaskId) {
        (
            AgentId::new("a1").unwrap(),
            FrameworkId::new("f1").unwrap(),
            TaskId::new(format!("t{i}")).unwrap(),
        )
    }

    #[test]
    fn kept_up_to_the_cap_then_the_oldest_goes() {
        let mut t = Tombstones::default();
        for i in 0..MAX_TOMBSTONES {
            let (a, f, k) = key(i);
            t.lay(&a, &f, &k, 0);
        }
        assert_eq!(t.len(), MAX_TOMBSTONES);
        let (a, f, k0) = key(0);
        assert!(t.holds(&a, &f, &k0, 0), "at the cap all are kept");
        let (_, _, k) = key(MAX_TOMBSTONES);
        t.lay(&a, &f, &k, 0);
        assert_eq!(t.len(), MAX_TOMBSTONES, "one past the cap drops one");
        assert!(!t.holds(&a, &f, &k0, 0), "the oldest went");
        assert!(t.holds(&a, &f, &k, 0));
        for i in MAX_TOMBSTONES + 1..2 * MAX_TOMBSTONES + 10 {
            let (_, _, k) = key(i);
            t.lay(&a, &f, &k, 0);
        }
        assert_eq!(t.len(), MAX_TOMBSTONES, "far past the cap");
        assert_eq!(t.order.len(), MAX_TOMBSTONES);
    }

    #[test]
    fn expire_after_a_day_and_a_re_laid_one_is_kept_from_its_new_time() {
        let mut t = Tombstones::default();
        let (a, f, k) = key(1);
        t.lay(&a, &f, &k, 0);
        assert!(t.holds(&a, &f, &k, TOMBSTONE_TTL_MS - 1));
        t.lay(&a, &f, &k, 10);
        assert!(t.holds(&a, &f, &k, TOMBSTONE_TTL_MS), "re-laid at 10");
        assert!(!t.holds(&a, &f, &k, TOMBSTONE_TTL_MS + 10), "expired");
        assert_eq!(t.len(), 0);
    }
}
