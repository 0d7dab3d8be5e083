//! `Sorter`: members kept in order of their (weighted) dominant share.
//!
//! A `BTreeSet<(Share, index)>`: the lowest share is `first()`, and changing one member's share
//! costs two `O(log n)` operations. The caller keeps each member's current key (it must pass the
//! old key to move a member), which keeps this type free of maps.

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

/// Members (slab indices) ordered by share, ties broken by index.
#[derive(Clone, Debug, Default)]
pub(crate) struct Sorter {
    set: BTreeSet<(Share, u32)>,
}

impl Sorter {
    pub(crate) fn insert(&mut self, share: Share, member: u32) {
        self.set.insert((share, member));
    }

    pub(crate) fn remove(&mut self, share: Share, member: u32) -> bool {
        self.set.remove(&(share, member))
    }

    /// The member with the lowest share.
    pub(crate) fn first(&self) -> Option<u32> {
        self.set.first().map(|&(_, m)| m)
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

    #[test]
    fn lowest_share_first_and_moves_are_cheap() {
        let mut s = Sorter::default();
        s.insert(Share(0.5), 1);
        s.insert(Share(0.1), 2);
        s.insert(Share(0.1), 0);
        assert_eq!(s.first(), Some(0));
        assert!(s.remove(Share(0.1), 0));
        assert!(!s.remove(Share(0.3), 2), "removing needs the current key");
        assert_eq!(s.first(), Some(2));
        assert_eq!(s.len(), 2);
    }
}
