//! Share bookkeeping: where each framework and role sits in its
//! [`Sorter`](super::super::sorter::Sorter).
//!
//! A framework is in its role's sorter iff it wants offers (active and not suppressed), keyed by
//! its dominant share; a role is in the role sorter iff its own sorter is not empty, keyed by its
//! weighted dominant share (`share / weight`). The functions here keep those keys current after
//! an allocation changes, and rebuild every key when the cluster total (the denominator of
//! every share) does. What a framework holds is counted in `holdings`; this file only orders.

use super::super::sorter::Share;
use super::DrfAllocator;

impl DrfAllocator {
    fn fw_share(&self, f: u32) -> Share {
        Share(self.fw(f).allocated.dominant_share(&self.total))
    }

    pub(super) fn role_share(&self, r: u32) -> Share {
        let role = &self.roles[r as usize];
        Share(role.allocated.dominant_share(&self.total) / role.weight)
    }

    /// Moves a framework and its role to their current keys, if they are sorted.
    pub(super) fn rekey(&mut self, f: u32) {
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

    pub(super) fn rekey_role(&mut self, r: u32) {
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
    pub(super) fn sync_membership(&mut self, f: u32) {
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

    pub(super) fn sync_role_membership(&mut self, r: u32) {
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
    pub(super) fn rebuild_sorters(&mut self) {
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
}
