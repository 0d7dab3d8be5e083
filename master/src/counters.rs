//! What the master counts for its metrics (`GET /metrics`, `http/metrics.rs`): offers sent,
//! declined, rescinded and accepted, tasks that reached each terminal state, how long
//! allocation cycles, Raft commits and hosted schedulers' callbacks take, and the fuel those
//! callbacks burn.
//!
//! Plain atomics, bumped with `Relaxed` stores where the event happens (the core holds its
//! lock there anyway): no lock of their own, nothing allocated per task. One [`Counters`] lives
//! as long as its master process: a core built anew on a leadership change shares its
//! predecessor's (`MasterCore::share_counters`), so counters only reset when the process
//! restarts, as Prometheus expects of a counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmos_api::TaskState;

/// Upper bounds, in seconds, of the allocation-cycle duration histogram's buckets (the last,
/// `+Inf`, is implied).
pub const ALLOCATION_BUCKETS: [f64; 10] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0,
];

/// Upper bounds, in seconds, of the Raft commit and scheduler callback histograms' buckets
/// (the last, `+Inf`, is implied).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5,
];

/// A histogram of durations over [`LATENCY_BUCKETS`], in atomics; starts empty.
#[derive(Debug, Default)]
pub struct Latency {
    /// Observations per bucket (not cumulative), and `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of the durations, in nanoseconds.
    nanos: AtomicU64,
}

impl Latency {
    /// Records one duration.
    pub fn observe(&self, took: Duration) {
        observe(&LATENCY_BUCKETS, &self.buckets, &self.nanos, took);
    }

    /// The histogram now.
    pub fn snapshot(&self) -> AllocationHistogram {
        snapshot(&LATENCY_BUCKETS, &self.buckets, &self.nanos)
    }
}

fn observe(bounds: &[f64], buckets: &[AtomicU64], nanos: &AtomicU64, took: Duration) {
    let secs = took.as_secs_f64();
    let i = bounds
        .iter()
        .position(|b| secs <= *b)
        .unwrap_or(bounds.len());
    buckets[i].fetch_add(1, Ordering::Relaxed);
    let n = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
    nanos.fetch_add(n, Ordering::Relaxed);
}

fn snapshot(bounds: &[f64], buckets: &[AtomicU64], nanos: &AtomicU64) -> AllocationHistogram {
    let mut cumulative = 0;
    let buckets: Vec<(f64, u64)> = bounds
        .iter()
        .copied()
        .chain([f64::INFINITY])
        .zip(buckets)
        .map(|(bound, n)| {
            cumulative += n.load(Ordering::Relaxed);
            (bound, cumulative)
        })
        .collect();
    AllocationHistogram {
        buckets,
        count: cumulative,
        sum_seconds: nanos.load(Ordering::Relaxed) as f64 / 1e9,
    }
}

/// Every terminal task state, in the order [`Counters::tasks_terminal`] reports them.
pub const TERMINAL_STATES: [TaskState; 5] = [
    TaskState::Finished,
    TaskState::Failed,
    TaskState::Killed,
    TaskState::Lost,
    TaskState::Error,
];

/// The master's counters; all start at zero.
#[derive(Debug, Default)]
pub struct Counters {
    /// Offers sent to schedulers.
    pub offers_sent: AtomicU64,
    /// Offers declined by their framework.
    pub offers_declined: AtomicU64,
    /// Offers rescinded (expired, taken back early, their agent or framework gone).
    pub offers_rescinded: AtomicU64,
    /// Offers named in accept calls.
    pub offers_accepted: AtomicU64,
    /// Tasks that reached each of [`TERMINAL_STATES`], by index.
    terminal: [AtomicU64; TERMINAL_STATES.len()],
    /// Allocation cycles per bucket of [`ALLOCATION_BUCKETS`] (not cumulative), and `+Inf`.
    allocation_buckets: [AtomicU64; ALLOCATION_BUCKETS.len() + 1],
    /// Sum of the allocation cycles' durations, in nanoseconds.
    allocation_nanos: AtomicU64,
    /// How long registry changes took to commit through Raft (proposal to applied).
    pub raft_commit: Latency,
    /// How long hosted schedulers' callbacks took.
    pub scheduler_callback: Latency,
    /// Fuel hosted schedulers' callbacks burned.
    pub scheduler_fuel: AtomicU64,
}

/// A copy of the allocation-cycle histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllocationHistogram {
    /// Cumulative counts: `(upper bound in seconds, cycles at most that long)`, ending with
    /// `f64::INFINITY`.
    pub buckets: Vec<(f64, u64)>,
    /// Number of cycles.
    pub count: u64,
    /// Their total duration, in seconds.
    pub sum_seconds: f64,
}

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a task that just reached `state` (ignored unless terminal).
    pub fn task_ended(&self, state: TaskState) {
        if let Some(i) = TERMINAL_STATES.iter().position(|s| *s == state) {
            self.terminal[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Tasks that reached each terminal state so far.
    pub fn tasks_terminal(&self) -> impl Iterator<Item = (TaskState, u64)> + '_ {
        TERMINAL_STATES
            .iter()
            .zip(&self.terminal)
            .map(|(s, n)| (*s, n.load(Ordering::Relaxed)))
    }

    /// Records one allocation cycle that took `took`.
    pub fn allocation_ran(&self, took: Duration) {
        observe(
            &ALLOCATION_BUCKETS,
            &self.allocation_buckets,
            &self.allocation_nanos,
            took,
        );
    }

    /// The allocation-cycle histogram now.
    pub fn allocation(&self) -> AllocationHistogram {
        snapshot(
            &ALLOCATION_BUCKETS,
            &self.allocation_buckets,
            &self.allocation_nanos,
        )
    }

    /// Records one hosted scheduler callback that took `took` and burned `fuel`.
    pub fn scheduler_called(&self, took: Duration, fuel: u64) {
        self.scheduler_callback.observe(took);
        self.scheduler_fuel.fetch_add(fuel, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_only_and_cumulative_buckets() {
        let c = Counters::default();
        c.task_ended(TaskState::Running);
        c.task_ended(TaskState::Finished);
        c.task_ended(TaskState::Finished);
        let t: Vec<_> = c.tasks_terminal().collect();
        assert_eq!(t[0], (TaskState::Finished, 2));
        assert_eq!(t.iter().map(|x| x.1).sum::<u64>(), 2);
        c.allocation_ran(Duration::from_micros(50));
        c.allocation_ran(Duration::from_secs(5));
        let h = c.allocation();
        assert_eq!(h.count, 2);
        assert_eq!(h.buckets[0], (0.0001, 1));
        assert_eq!(*h.buckets.last().unwrap(), (f64::INFINITY, 2));
        assert_eq!(h.buckets[h.buckets.len() - 2].1, 1);
        c.raft_commit.observe(Duration::from_millis(3));
        let r = c.raft_commit.snapshot();
        assert_eq!((r.count, r.buckets.len()), (1, LATENCY_BUCKETS.len() + 1));
        assert_eq!(r.buckets[5], (0.005, 1));
        assert_eq!(r.buckets[4].1, 0);
    }
}
