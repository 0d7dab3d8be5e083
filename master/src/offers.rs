//! The offer book: outstanding offers (soft state), indexed by id, agent and framework, with
//! their expiry times.
//!
//! An offer's resources are already counted as allocated to its framework by the allocator; the
//! book only remembers which offer id stands for which (framework, agent, resources), so that a
//! launch or decline can be checked and the resources returned exactly once. Plain data, no
//! clock: times are passed in.

use std::collections::{BTreeSet, HashMap};

use wasmos_api::{AgentId, FrameworkId, OfferId, Resources};

use crate::allocator::Millis;

/// One outstanding offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfferRecord {
    /// The offer's id, `PREFIX-oN` with the book's per-leader prefix, so an id from an
    /// earlier leader is never taken for a live offer.
    pub id: OfferId,
    /// The framework the offer was made to; only it may launch on or decline the offer.
    pub framework: FrameworkId,
    /// The agent whose resources are offered; one offer never spans agents.
    pub agent: AgentId,
    /// The offered resources, already counted as allocated to `framework` on `agent`; they
    /// return to the allocator exactly once, when the offer is removed.
    pub resources: Resources,
    /// When the offer was made, on the core's clock ([`Millis`]).
    pub created_ms: Millis,
    /// When it is rescinded if unanswered; `None` for never.
    pub expires_ms: Option<Millis>,
}

/// All outstanding offers.
#[derive(Debug, Default)]
pub struct OfferBook {
    offers: HashMap<OfferId, OfferRecord>,
    by_agent: HashMap<AgentId, BTreeSet<OfferId>>,
    by_framework: HashMap<FrameworkId, BTreeSet<OfferId>>,
    expiry: BTreeSet<(Millis, OfferId)>,
    /// Every offer by when it was made, oldest first (for early rescinds).
    by_age: BTreeSet<(Millis, OfferId)>,
    /// Distinguishes this leader's offer ids from an earlier leader's.
    prefix: String,
    next: u64,
}

impl OfferBook {
    /// An empty book whose offer ids start with `prefix` (pick one unique per leader term, so
    /// an offer id from a previous leader is never mistaken for a new one).
    pub fn new(prefix: &str) -> Self {
        OfferBook {
            prefix: prefix.to_string(),
            ..Default::default()
        }
    }

    /// Numbers new offers from where `from` left off (the book of the core this one
    /// replaces), so that ids stay unique over the process.
    pub fn continue_ids_from(&mut self, from: &OfferBook) {
        self.next = self.next.max(from.next);
    }

    /// Records a new offer and returns it.
    pub fn create(
        &mut self,
        framework: FrameworkId,
        agent: AgentId,
        resources: Resources,
        now: Millis,
        timeout_ms: Option<Millis>,
    ) -> OfferRecord {
        self.next += 1;
        let raw = format!("{}-o{}", self.prefix, self.next);
        let id = match OfferId::new(raw) {
            Ok(id) => id,
            // The prefix was not a valid id fragment; fall back to a plain counter.
            Err(_) => OfferId::new(format!("o{}", self.next)).expect("o<digits> is a valid id"),
        };
        let expires_ms = timeout_ms.map(|t| now.saturating_add(t));
        let record = OfferRecord {
            id: id.clone(),
            framework,
            agent,
            resources,
            created_ms: now,
            expires_ms,
        };
        self.by_agent
            .entry(record.agent.clone())
            .or_default()
            .insert(id.clone());
        self.by_framework
            .entry(record.framework.clone())
            .or_default()
            .insert(id.clone());
        if let Some(at) = expires_ms {
            self.expiry.insert((at, id.clone()));
        }
        self.by_age.insert((now, id.clone()));
        self.offers.insert(id, record.clone());
        record
    }

    /// Looks an offer up.
    pub fn get(&self, id: &OfferId) -> Option<&OfferRecord> {
        self.offers.get(id)
    }

    /// Removes an offer (accepted, declined or rescinded) and returns it.
    pub fn remove(&mut self, id: &OfferId) -> Option<OfferRecord> {
        let record = self.offers.remove(id)?;
        if let Some(set) = self.by_agent.get_mut(&record.agent) {
            set.remove(id);
            if set.is_empty() {
                self.by_agent.remove(&record.agent);
            }
        }
        if let Some(set) = self.by_framework.get_mut(&record.framework) {
            set.remove(id);
            if set.is_empty() {
                self.by_framework.remove(&record.framework);
            }
        }
        if let Some(at) = record.expires_ms {
            self.expiry.remove(&(at, id.clone()));
        }
        self.by_age.remove(&(record.created_ms, id.clone()));
        Some(record)
    }

    /// Removes and returns every offer of an agent.
    pub fn remove_for_agent(&mut self, agent: &AgentId) -> Vec<OfferRecord> {
        let ids: Vec<OfferId> = self
            .by_agent
            .get(agent)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Removes and returns every offer made to a framework.
    pub fn remove_for_framework(&mut self, framework: &FrameworkId) -> Vec<OfferRecord> {
        let ids: Vec<OfferId> = self
            .by_framework
            .get(framework)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Removes and returns the offers whose expiry is at or before `now`.
    pub fn remove_expired(&mut self, now: Millis) -> Vec<OfferRecord> {
        let mut out = Vec::new();
        while let Some((at, id)) = self.expiry.first().cloned() {
            if at > now {
                break;
            }
            out.extend(self.remove(&id));
        }
        out
    }

    /// The outstanding offers made at or before `made_by`, oldest first; each step costs
    /// `O(log n)`, so a caller that takes a few pays for a few.
    pub fn oldest(&self, made_by: Millis) -> impl Iterator<Item = &OfferRecord> + '_ {
        self.by_age
            .iter()
            .take_while(move |(at, _)| *at <= made_by)
            .filter_map(|(_, id)| self.offers.get(id))
    }

    /// The outstanding offers of a framework.
    pub fn of_framework(&self, framework: &FrameworkId) -> Vec<&OfferRecord> {
        self.by_framework
            .get(framework)
            .map(|s| s.iter().filter_map(|id| self.offers.get(id)).collect())
            .unwrap_or_default()
    }

    /// Number of outstanding offers.
    pub fn len(&self) -> usize {
        self.offers.len()
    }

    /// True when no offer is outstanding.
    pub fn is_empty(&self) -> bool {
        self.offers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offers_are_indexed_and_expire() {
        let mut book = OfferBook::new("t1");
        let (f, a) = (FrameworkId::new("f").unwrap(), AgentId::new("a").unwrap());
        let r = Resources::new(1.0, 1, 0);
        let o1 = book.create(f.clone(), a.clone(), r, 0, Some(100));
        let o2 = book.create(f.clone(), a.clone(), r, 50, None);
        assert_ne!(o1.id, o2.id);
        assert_eq!(book.of_framework(&f).len(), 2);
        assert_eq!(book.oldest(49).map(|o| &o.id).collect::<Vec<_>>(), [&o1.id]);
        assert_eq!(book.oldest(50).count(), 2);
        assert!(book.remove_expired(99).is_empty());
        assert_eq!(book.remove_expired(100), vec![o1.clone()]);
        assert!(book.remove(&o1.id).is_none(), "an offer is removed once");
        assert_eq!(
            book.oldest(u64::MAX).map(|o| &o.id).collect::<Vec<_>>(),
            [&o2.id]
        );
        assert_eq!(book.remove_for_agent(&a), vec![o2]);
        assert!(book.is_empty());
        assert_eq!(book.oldest(u64::MAX).count(), 0);
        assert!(book.remove_for_framework(&f).is_empty());
    }
}
