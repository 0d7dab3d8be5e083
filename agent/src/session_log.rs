//! How the agent reports sessions with a master that fail: the same failure against the same
//! master (a master that is down, refusing connections on every backoff step) makes one WARN
//! per [`REPEAT_WINDOW`], and the next one after the window says how many were left out. A
//! master that shut down cleanly is expected to be gone for a while (a restart, an upgrade):
//! failures to reach it are `info` for [`AFTER_SHUTDOWN_QUIET`] after it said so.
//!
//! Plain data with the time passed in, so that its rules are tested without waiting.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long one failure against one master is reported once.
pub const REPEAT_WINDOW: Duration = Duration::from_secs(30);

/// How long after a master's clean shutdown failing to reach it is only `info`.
pub const AFTER_SHUTDOWN_QUIET: Duration = Duration::from_secs(60);

/// The most distinct failures remembered; older ones are forgotten first (and reported again
/// when they recur).
const MAX_REMEMBERED: usize = 64;

/// How loudly to report one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Say nothing: the same failure was reported less than [`REPEAT_WINDOW`] ago.
    Quiet,
    /// An `info` line: a master that shut down cleanly is not back yet.
    Info,
    /// A WARN line; `left_out` is how many of the same failures went unreported since the
    /// last one.
    Warn {
        /// The same failures left out since the last report.
        left_out: u64,
    },
}

/// The failures reported recently, by master and failure text.
#[derive(Debug, Default)]
pub struct SessionLog {
    /// (master, failure) -> when it was last reported, and how many were left out since.
    seen: HashMap<(String, String), (Instant, u64)>,
    /// Masters that shut down cleanly, and when.
    shut_down: HashMap<String, Instant>,
}

impl SessionLog {
    /// Records that `master` said it was shutting down, at `now`.
    pub fn shut_down(&mut self, master: &str, now: Instant) {
        self.shut_down.insert(master.to_string(), now);
    }

    /// Records that a session with `master` registered: its failures are news again.
    pub fn registered(&mut self, master: &str) {
        self.shut_down.remove(master);
        self.seen.retain(|(m, _), _| m != master);
    }

    /// How to report `failure` of a session with `master` at `now`.
    pub fn failed(&mut self, master: &str, failure: &str, now: Instant) -> Report {
        if let Some(at) = self.shut_down.get(master) {
            if now.saturating_duration_since(*at) < AFTER_SHUTDOWN_QUIET {
                return Report::Info;
            }
            self.shut_down.remove(master);
        }
        let key = (master.to_string(), failure.to_string());
        if let Some((last, left_out)) = self.seen.get_mut(&key) {
            if now.saturating_duration_since(*last) < REPEAT_WINDOW {
                *left_out += 1;
                return Report::Quiet;
            }
            let report = Report::Warn {
                left_out: *left_out,
            };
            *last = now;
            *left_out = 0;
            return report;
        }
        if self.seen.len() >= MAX_REMEMBERED
            && let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(key, (now, 0));
        Report::Warn { left_out: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_failure_warns_once_per_window_then_counts_what_it_left_out() {
        let mut log = SessionLog::default();
        let t = Instant::now();
        let down = "cannot connect: connection refused";
        assert_eq!(log.failed("m1", down, t), Report::Warn { left_out: 0 });
        for s in 1..10 {
            let at = t + Duration::from_secs(s);
            assert_eq!(log.failed("m1", down, at), Report::Quiet);
        }
        // Another failure, or another master, is news.
        assert_eq!(
            log.failed("m1", "refused", t + Duration::from_secs(1)),
            Report::Warn { left_out: 0 }
        );
        assert_eq!(
            log.failed("m2", down, t + Duration::from_secs(1)),
            Report::Warn { left_out: 0 }
        );
        assert_eq!(
            log.failed("m1", down, t + REPEAT_WINDOW),
            Report::Warn { left_out: 9 }
        );
        assert_eq!(
            log.failed("m1", down, t + REPEAT_WINDOW + Duration::from_secs(1)),
            Report::Quiet
        );
        // A registration makes the next failure news.
        log.registered("m1");
        assert_eq!(
            log.failed("m1", down, t + REPEAT_WINDOW + Duration::from_secs(2)),
            Report::Warn { left_out: 0 }
        );
    }

    #[test]
    fn a_master_that_shut_down_is_only_info_for_a_while() {
        let mut log = SessionLog::default();
        let t = Instant::now();
        log.shut_down("m1", t);
        let down = "cannot connect: connection refused";
        assert_eq!(
            log.failed("m1", down, t + Duration::from_secs(5)),
            Report::Info
        );
        assert_eq!(
            log.failed("m2", down, t + Duration::from_secs(5)),
            Report::Warn { left_out: 0 }
        );
        assert_eq!(
            log.failed("m1", down, t + AFTER_SHUTDOWN_QUIET),
            Report::Warn { left_out: 0 }
        );
    }

    #[test]
    fn memory_stays_bounded_with_ever_new_failures() {
        let mut log = SessionLog::default();
        let t = Instant::now();
        for i in 0..1000u64 {
            let at = t + Duration::from_millis(i);
            log.failed("m1", &format!("failure {i}"), at);
        }
        assert!(log.seen.len() <= MAX_REMEMBERED);
    }
}
