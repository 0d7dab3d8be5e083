//! The master's clock-driven work: one loop that runs the core's timeouts (`tick`) and an
//! allocation cycle every `allocation_interval`, and at once when a change asks for one.
//!
//! What it does not own: what a tick or a cycle does (`core/`, `allocator/`), or the
//! leadership checks (`leader.rs`).

use super::Master;

impl Master {
    /// Runs the allocation/timeout loop until the process ends: a cycle every
    /// `allocation_interval`, and right after any change that asks for one. Does nothing
    /// while this master does not serve.
    pub async fn run_timers(self) {
        let interval = self.core().config().allocation_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = self.wake.notified() => {}
            }
            if !self.is_serving() {
                continue;
            }
            let now = self.now();
            let mut core = self.core();
            core.tick(now);
            let started = std::time::Instant::now();
            core.allocate(now);
            core.counters().allocation_ran(started.elapsed());
        }
    }
}
