//! Share bookkeeping: where each framework and role sits in its
//! [`Sorter`](super::super::sorter::Sorter).
//!
//! A framework is in its role's sorter iff it wants offers (active and not suppressed), keyed by
//! its dominant share; a role is in the role sorter iff its own sorter is not empty, keyed by its
//! weighted dominant share (`share / weight`). Both keys carry the member's last allocation's
//! sequence number, so that equal shares take turns. The functions here keep those keys current after
//! an allocation changes, and rebuild every key when the cluster total (the denominator of
//! every share) does. What a framework holds is counted in `holdings`; this file only orders.

use super::super::sorter::{Key, Share};
use super::DrfAllocator;

impl DrfAllocator {
    fn fw_key(&self, f: u32) -> Key {
        let fw = self.fw(f);
        Key {
            share: Share(fw.allocated.dominant_share(&self.total)),
            last_allocated: fw.last_allocated,
        }
    }

    pub(super) fn role_key(&self, r: u32) -> Key {
        let role = &self.roles[r as usize];
        Key {
            share: Share(role.allocated.dominant_share(&self.total) / role.weight),
            last_allocated: role.last_allocated,
        }
    }

    /// Moves a framework and its role to their current keys, if they are sorted.
    pub(super) fn rekey(&mut self, f: u32) {
        let key = self.fw_key(f);
        let fw = self.fw_mut(f);
        let r = fw.role;
        if let Some(old) = fw.key {
            fw.key = Some(key);
            let sorter = &mut self.roles[r as usize].sorter;
            sorter.remove(old, f);
            sorter.insert(key, f);
        }
        self.rekey_role(r);
    }

    pub(super) fn rekey_role(&mut self, r: u32) {
        let key = self.role_key(r);
        let role = &mut self.roles[r as usize];
        if let Some(old) = role.key {
            role.key = Some(key);
            self.role_sorter.remove(old, r);
            self.role_sorter.insert(key, r);
        }
    }

    /// Puts a framework into (or takes it out of) its role's sorter according to whether it
    /// wants offers, and the role into the role sorter iff it has sorted frameworks.
    pub(super) fn sync_membership(&mut self, f: u32) {
        let key = self.fw_key(f);
        let cycle_no = self.cycle_no;
        let fw = self.fw_mut(f);
        let r = fw.role;
        match (fw.wants_offers(), fw.key) {
            (true, None) => {
                fw.key = Some(key);
                fw.wanting_since = cycle_no;
                self.roles[r as usize].sorter.insert(key, f);
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
        let key = self.role_key(r);
        let role = &mut self.roles[r as usize];
        match (!role.sorter.is_empty(), role.key) {
            (true, None) => {
                role.key = Some(key);
                self.role_sorter.insert(key, r);
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
                let key = self.fw_key(f);
                let fw = self.fw_mut(f);
                fw.key = Some(key);
                let r = fw.role;
                self.roles[r as usize].sorter.insert(key, f);
            }
        }
        for r in 0..self.roles.len() as u32 {
            self.sync_role_membership(r);
        }
        self.shares_dirty = false;
    }
}
