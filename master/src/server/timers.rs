//! The master's clock-driven work: one loop that runs the core's timeouts (`tick`) and an
//! allocation cycle every `allocation_interval`, and an allocation cycle (only) at once when a
//! change asks for one.
//!
//! What it does not own: what a tick or a cycle does (`core/`, `allocator/`), or the
//! leadership checks (`leader.rs`).

use std::time::Duration;

use super::Master;

/// The least time between two allocation cycles that changes asked for (the interval's own
/// cycles are not delayed by it).
const MIN_CYCLE_GAP: Duration = Duration::from_millis(5);

impl Master {
    /// Runs the allocation/timeout loop until the process ends: timeouts and a cycle every
    /// `allocation_interval`, and a cycle right after any change that asks for one. Does
    /// nothing while this master does not serve.
    ///
    /// The timeouts (`tick`) walk every agent and framework, so they run on the interval only:
    /// run at every wake, a storm of 50,000 registrations (each asks for a cycle) made them
    /// quadratic, most of the master's CPU, and registration fell from 8,000 to 300 a second.
    ///
    /// Cycles asked for by changes are at most one per [`MIN_CYCLE_GAP`]: every accept,
    /// decline and status update asks for one, and a thousand frameworks declining offers of
    /// 50,000 agents asked for thousands a second, each under the core's lock.
    pub async fn run_timers(self) {
        let interval = self.core().config().allocation_interval;
        let gap = MIN_CYCLE_GAP.min(interval);
        let mut next_tick = tokio::time::Instant::now();
        let mut last_cycle = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next_tick) => {}
                _ = self.wake.notified() => {
                    tokio::time::sleep_until(last_cycle + gap).await;
                }
            }
            last_cycle = tokio::time::Instant::now();
            if !self.is_serving() {
                next_tick = tokio::time::Instant::now() + interval;
                continue;
            }
            let now = self.now();
            let mut core = self.core();
            if tokio::time::Instant::now() >= next_tick {
                core.tick(now);
                next_tick = tokio::time::Instant::now() + interval;
            }
            let started = std::time::Instant::now();
            core.allocate(now);
            core.counters().allocation_ran(started.elapsed());
        }
    }
}
