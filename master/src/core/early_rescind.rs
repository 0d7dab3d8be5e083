//! Early rescinds: offers held unanswered by a higher share are taken back for a framework
//! that waits with nothing free to give it, long before their offer timeout.
//!
//! After each allocation cycle, [`MasterCore::rescind_for_waiting`] asks the allocator for the
//! frameworks that wanted offers through the whole cycle and got nothing (subscribed, not
//! suppressed, not set aside; see [`Allocator::waiting`](crate::allocator::Allocator::waiting)).
//! If one of them has a strictly lower dominant share than the holder of an offer that has
//! been outstanding for at least [`MasterCore::min_offer_hold_ms`], the oldest such offers are
//! rescinded, at most one per waiting framework per cycle, and the next cycle gives the
//! resources away by DRF as usual, so the lowest-share waiting framework gets them.
//!
//! The holder loses only the offer: the agent is refused to it for the implicit-decline
//! filter (as for an expired offer), so it does not get the same agent straight back. A
//! framework rescinded early [`EARLY_RESCINDS_BEFORE_SET_ASIDE`] times without a call in
//! between is set aside like one whose offer expired. Equal shares never rescind each other
//! (the waiting share must be strictly lower), so two frameworks holding one agent each do
//! not take turns taking it back.
//!
//! Cost per cycle: nothing unless the oldest offer is older than the hold; then one bounded
//! query of the allocator and at most [`OFFERS_LOOKED_AT_PER_WAITING`] offers per waiting
//! framework, oldest first from the offer book's age index.

use tracing::{debug, warn};
use wasmos_api::proto as pb;
use wasmos_api::{FrameworkId, OfferId};

use super::{Event, MasterCore};
use crate::allocator::Millis;

/// How many waiting frameworks one cycle considers (and so the most offers it rescinds early).
const MAX_WAITING_PER_CYCLE: usize = 64;

/// How many of the oldest held offers one cycle looks at per waiting framework before it
/// stops looking (offers held by shares no higher than the waiting ones are stepped over).
const OFFERS_LOOKED_AT_PER_WAITING: usize = 4;

/// Early rescinds without a call from the framework in between after which it is set aside
/// like a framework whose offer expired (it gets offers again once it accepts, declines,
/// revives or subscribes). One rescind may fall on a live but slow scheduler; two in a row
/// without a word is a scheduler that does not answer.
pub(super) const EARLY_RESCINDS_BEFORE_SET_ASIDE: u32 = 2;

/// How long a framework stays set aside without a call (30 s): then it is offered again, so a
/// live scheduler that only waits for offers (and drops rescinded ones) is slowed, never
/// starved; one that never answers costs the cluster one offer per this interval.
pub(super) const SET_ASIDE_MS: Millis = 30_000;

impl MasterCore {
    /// How long an offer is left alone before it may be rescinded early: five allocation
    /// intervals, at least 1 s, and never more than the offer timeout (1.25 s at the default
    /// 250 ms interval). A scheduler that answers within that time is never rescinded early;
    /// a well-behaved one answers within milliseconds.
    pub(super) fn min_offer_hold_ms(&self) -> Millis {
        let hold = Self::ms(self.config.allocation_interval)
            .saturating_mul(5)
            .max(1000);
        match self.config.offer_timeout {
            Some(t) => hold.min(Self::ms(t)),
            None => hold,
        }
    }

    /// Rescinds, for the frameworks the last cycle left waiting, the oldest offers held for at
    /// least the minimum hold by frameworks of a strictly higher share. See the module docs.
    pub(super) fn rescind_for_waiting(&mut self, now: Millis) {
        let Some(made_by) = now.checked_sub(self.min_offer_hold_ms()) else {
            return;
        };
        if self.offers.oldest(made_by).next().is_none() {
            return;
        }
        let waiting = self.allocator.waiting(MAX_WAITING_PER_CYCLE);
        let Some(lowest) = waiting.first().map(|w| w.1) else {
            return;
        };
        let total = self.allocator.cluster_total();
        let victims: Vec<OfferId> = self
            .offers
            .oldest(made_by)
            .take(waiting.len().saturating_mul(OFFERS_LOOKED_AT_PER_WAITING))
            .filter(|o| {
                self.allocator
                    .framework_allocation(&o.framework)
                    .is_some_and(|held| held.dominant_share(&total) > lowest)
            })
            .take(waiting.len())
            .map(|o| o.id.clone())
            .collect();
        if victims.is_empty() {
            return;
        }
        let refuse_ms = wasmos_api::launch::Filters::default().decline_ms();
        for id in victims {
            let Some(o) = self.offers.remove(&id) else {
                continue;
            };
            if let Err(e) =
                self.allocator
                    .recover(&o.framework, &o.agent, o.resources, refuse_ms, now)
            {
                warn!(framework_id = %o.framework, agent_id = %o.agent, error = %e, "recovering an offer rescinded early");
            }
            debug!(framework_id = %o.framework, agent_id = %o.agent, held_ms = now - o.created_ms,
                "offer rescinded early for a framework with a lower share");
            self.send_scheduler(
                &o.framework,
                Event::Rescind(pb::scheduler_event::Rescind {
                    offer_id: o.id.to_string(),
                }),
            );
            let count = self.early_rescinds.entry(o.framework.clone()).or_default();
            *count += 1;
            if *count >= EARLY_RESCINDS_BEFORE_SET_ASIDE {
                self.early_rescinds.remove(&o.framework);
                self.set_aside(
                    &o.framework,
                    "its offers were rescinded early unanswered",
                    now,
                );
            }
        }
        self.want_allocation();
    }

    /// Sets a framework that does not answer aside: suppressed in the allocator until it
    /// accepts, declines, revives or subscribes again (see `end_idle`).
    pub(super) fn set_aside(&mut self, fw: &FrameworkId, why: &str, now: Millis) {
        if self.idle.insert(fw.clone(), now).is_none() {
            debug!(framework_id = %fw, why, "no more offers until the framework answers or revives");
            if let Err(e) = self.allocator.suppress(fw) {
                warn!(framework_id = %fw, error = %e, "setting an idle framework aside");
            }
        }
    }

    /// Offers again to frameworks set aside for [`SET_ASIDE_MS`] without a call.
    pub(super) fn end_expired_set_asides(&mut self, now: Millis) {
        let due: Vec<FrameworkId> = self
            .idle
            .iter()
            .filter(|(_, since)| now.saturating_sub(**since) >= SET_ASIDE_MS)
            .map(|(fw, _)| fw.clone())
            .collect();
        for fw in due {
            self.end_idle(&fw, true);
        }
    }
}
