//! The last `log` lines of each hosted scheduler, kept in the master's memory for
//! `ReadSchedulerLog` (`wasmos logs --scheduler`).
//!
//! Bounded three ways: at most [`MAX_LINES_PER_FRAMEWORK`] lines and
//! [`MAX_BYTES_PER_FRAMEWORK`] bytes per framework (the oldest lines go first), and at most
//! [`MAX_FRAMEWORKS`] frameworks (past it, the one that logged least recently is dropped). The
//! lines of a framework that ended stay until that last rule drops them, so `wasmos logs
//! --scheduler` works on a finished job. Only lines its log budget admitted are kept (the same
//! as reach the master's log). Soft state: a new leader starts empty (its restarted schedulers
//! log anew). Plain data, no I/O.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::sync::lock;

/// Most lines kept per framework.
pub const MAX_LINES_PER_FRAMEWORK: usize = 1000;
/// Most bytes of messages kept per framework.
pub const MAX_BYTES_PER_FRAMEWORK: usize = 256 << 10;
/// Most frameworks whose lines are kept.
pub const MAX_FRAMEWORKS: usize = 128;

/// One kept line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Its number, from 1 per framework.
    pub seq: u64,
    /// When it was logged (unix ms).
    pub unix_ms: u64,
    /// "TRACE", "DEBUG", "INFO", "WARN" or "ERROR".
    pub level: &'static str,
    /// The message, as the log budget admitted it.
    pub message: String,
}

#[derive(Default)]
struct Lines {
    lines: VecDeque<LogLine>,
    bytes: usize,
    last_seq: u64,
    /// When it last logged, on the store's own counter.
    touched: u64,
}

#[derive(Default)]
struct Inner {
    frameworks: HashMap<String, Lines>,
    clock: u64,
}

/// The lines of every hosted scheduler of one master (shared by its framework host).
#[derive(Default)]
pub struct SchedulerLogs {
    inner: Mutex<Inner>,
}

impl SchedulerLogs {
    /// Keeps one line of `framework`'s scheduler (an empty id, before it subscribed, is not
    /// kept).
    pub fn push(&self, framework: &str, level: &'static str, message: &str, unix_ms: u64) {
        if framework.is_empty() {
            return;
        }
        let mut inner = lock(&self.inner);
        inner.clock += 1;
        let clock = inner.clock;
        if !inner.frameworks.contains_key(framework) && inner.frameworks.len() >= MAX_FRAMEWORKS {
            let oldest = inner
                .frameworks
                .iter()
                .min_by_key(|(_, l)| l.touched)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                inner.frameworks.remove(&k);
            }
        }
        let l = inner.frameworks.entry(framework.to_string()).or_default();
        l.touched = clock;
        l.last_seq += 1;
        let message: String = if message.len() > MAX_BYTES_PER_FRAMEWORK {
            crate::history::cut_text(message, MAX_BYTES_PER_FRAMEWORK)
        } else {
            message.to_string()
        };
        l.bytes += message.len();
        l.lines.push_back(LogLine {
            seq: l.last_seq,
            unix_ms,
            level,
            message,
        });
        while l.lines.len() > MAX_LINES_PER_FRAMEWORK || l.bytes > MAX_BYTES_PER_FRAMEWORK {
            match l.lines.pop_front() {
                Some(old) => l.bytes -= old.message.len(),
                None => break,
            }
        }
    }

    /// `framework`'s kept lines after `after_seq`, oldest first; with `tail` > 0 only the last
    /// `tail` of them.
    pub fn read(&self, framework: &str, after_seq: u64, tail: usize) -> Vec<LogLine> {
        let inner = lock(&self.inner);
        let Some(l) = inner.frameworks.get(framework) else {
            return Vec::new();
        };
        let after: Vec<&LogLine> = l.lines.iter().filter(|x| x.seq > after_seq).collect();
        let skip = if tail > 0 {
            after.len().saturating_sub(tail)
        } else {
            0
        };
        after.into_iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_per_framework_and_read_after_a_seq() {
        let logs = SchedulerLogs::default();
        for i in 0..MAX_LINES_PER_FRAMEWORK + 5 {
            logs.push("f", "INFO", &format!("line {i}"), i as u64);
        }
        let all = logs.read("f", 0, 0);
        assert_eq!(all.len(), MAX_LINES_PER_FRAMEWORK);
        assert_eq!(all[0].message, "line 5");
        assert_eq!(all[0].seq, 6);
        let last = logs.read("f", 0, 2);
        assert_eq!(
            last.iter().map(|l| l.seq).collect::<Vec<_>>(),
            vec![1004, 1005]
        );
        assert!(logs.read("f", 1005, 0).is_empty());
        assert_eq!(logs.read("f", 1003, 0).len(), 2);
        // Bytes bound too.
        let big = "x".repeat(100 << 10);
        for _ in 0..4 {
            logs.push("g", "WARN", &big, 0);
        }
        assert_eq!(logs.read("g", 0, 0).len(), 2);
        logs.push("", "INFO", "before subscribing", 0);
        assert!(logs.read("", 0, 0).is_empty());
    }

    #[test]
    fn the_framework_that_logged_least_recently_is_dropped() {
        let logs = SchedulerLogs::default();
        for i in 0..MAX_FRAMEWORKS {
            logs.push(&format!("f{i}"), "INFO", "x", 0);
        }
        logs.push("f0", "INFO", "still here", 0);
        logs.push("new", "INFO", "x", 0);
        assert_eq!(logs.read("f0", 0, 0).len(), 2);
        assert!(logs.read("f1", 0, 0).is_empty());
        assert_eq!(logs.read("new", 0, 0).len(), 1);
    }
}
