//! `Sorter`: members kept in order of their (weighted) dominant share, equal shares taking turns.
//!
//! A `BTreeSet<(Key, index)>`: the lowest share is `first()`, and changing one member's key
//! costs two `O(log n)` operations. The caller keeps each member's current key (it must pass the
//! old key to move a member), which keeps this type free of maps.
//!
//! Equal shares are ordered by when the member was last allocated something (never first, then
//! least recently), and only then by index. Were ties broken by index alone, a framework that
//! declines every offer (its share falls back to zero each time) would win every tie with a
//! later framework at zero and keep an agent to itself; Mesos's sorter breaks ties the same
//! way (by how often a client was allocated).

use std::cmp::Ordering;
use std::collections::BTreeSet;

/// A share as a totally ordered float (NaN sorts last and never arises from our arithmetic).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Share(pub f64);

impl PartialEq for Share {
    fn eq(&self, other: &Self) -> bool {
        self.0.total_cmp(&other.0) == Ordering::Equal
    }
}
impl Eq for Share {}
impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Share {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Where a member sorts: by share, then by the sequence number of its last allocation (0:
/// never), so that of equal shares the one allocated least recently comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Key {
    pub(crate) share: Share,
    pub(crate) last_allocated: u64,
}

/// Members (slab indices) ordered by [`Key`], then by index.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sorter {
    set: BTreeSet<(Key, u32)>,
}

impl Sorter {
    pub(crate) fn insert(&mut self, key: Key, member: u32) {
        self.set.insert((key, member));
    }

    pub(crate) fn remove(&mut self, key: Key, member: u32) -> bool {
        self.set.remove(&(key, member))
    }

    /// The member with the lowest share.
    pub(crate) fn first(&self) -> Option<u32> {
        self.set.first().map(|&(_, m)| m)
    }

    /// The members, lowest share first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.set.iter().map(|&(_, m)| m)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.set.clear()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(share: f64, last_allocated: u64) -> Key {
        Key {
            share: Share(share),
            last_allocated,
        }
    }

    #[test]
    fn lowest_share_first_and_moves_are_cheap() {
        let mut s = Sorter::default();
        s.insert(key(0.5, 0), 1);
        s.insert(key(0.1, 0), 2);
        s.insert(key(0.1, 0), 0);
        assert_eq!(s.first(), Some(0));
        assert!(s.remove(key(0.1, 0), 0));
        assert!(!s.remove(key(0.3, 0), 2), "removing needs the current key");
        assert_eq!(s.first(), Some(2));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn equal_shares_go_to_the_least_recently_allocated() {
        let mut s = Sorter::default();
        s.insert(key(0.0, 7), 0);
        s.insert(key(0.0, 3), 1);
        s.insert(key(0.0, 0), 2);
        s.insert(key(0.2, 0), 3);
        assert_eq!(s.first(), Some(2), "never allocated comes first");
        s.remove(key(0.0, 0), 2);
        assert_eq!(s.first(), Some(1), "then the least recently allocated");
    }
}
