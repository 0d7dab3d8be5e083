//! [`LogBudget`]: how much a framework's guests may write to the host's log, and the one line
//! that counts what was dropped.
//!
//! A guest chooses how often it calls `log` and what it writes; without a budget one scheduler
//! wrote 1.1 GB to the master's stderr in 8 s. Each framework gets two token buckets on each
//! host (lines and bytes, refilled at [`GUEST_LOG_LINES_PER_SECOND`] and
//! [`GUEST_LOG_BYTES_PER_SECOND`], holding at most a burst). A line that finds either bucket
//! short is dropped and counted; the count is written as one line at most once per
//! [`GUEST_LOG_DROP_REPORT_SECONDS`], never one line per drop. Lines are first cut to
//! [`GUEST_LOG_LINE_MAX_BYTES`].
//!
//! The clock is passed in, so the policy is tested without sleeping.

use std::time::{Duration, Instant};

use wasmos_api::limits::{
    GUEST_LOG_BURST_BYTES, GUEST_LOG_BURST_LINES, GUEST_LOG_BYTES_PER_SECOND,
    GUEST_LOG_DROP_REPORT_SECONDS, GUEST_LOG_LINE_MAX_BYTES, GUEST_LOG_LINES_PER_SECOND,
};

/// Log lines dropped since the last report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DroppedLogs {
    /// Lines dropped.
    pub lines: u64,
    /// Bytes of those lines (after cutting each to [`GUEST_LOG_LINE_MAX_BYTES`]).
    pub bytes: u64,
    /// Seconds since the previous report (or since the budget was created), rounded down.
    pub seconds: u64,
}

impl DroppedLogs {
    /// The report line, naming the framework: `framework X dropped N log lines (M bytes) in
    /// the last S s`.
    pub fn message(&self, framework: &str) -> String {
        format!(
            "framework {framework} dropped {} log line{} ({} bytes) in the last {} s: guests \
             may log {GUEST_LOG_LINES_PER_SECOND} lines and {GUEST_LOG_BYTES_PER_SECOND} bytes \
             a second",
            self.lines,
            if self.lines == 1 { "" } else { "s" },
            self.bytes,
            self.seconds
        )
    }
}

impl Default for LogBudget {
    /// A full budget as of now: [`LogBudget::new`] at `Instant::now()`.
    fn default() -> Self {
        LogBudget::new(Instant::now())
    }
}

/// What [`LogBudget::admit`] decided about one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// `Some(line)` (cut to [`GUEST_LOG_LINE_MAX_BYTES`]) to write it; `None` when dropped.
    pub line: Option<String>,
    /// Set when a report of dropped lines is due: write it (once) as well.
    pub report: Option<DroppedLogs>,
}

/// One framework's log budget on one host. By default (`LogBudget::new`) the rates and bursts
/// of `wasmos_api::limits`.
#[derive(Debug, Clone)]
pub struct LogBudget {
    lines_per_second: f64,
    bytes_per_second: f64,
    burst_lines: f64,
    burst_bytes: f64,
    line_tokens: f64,
    byte_tokens: f64,
    refilled: Instant,
    dropped_lines: u64,
    dropped_bytes: u64,
    reported: Instant,
    report_every: Duration,
}

impl LogBudget {
    /// A full budget at `now`, with the limits of `wasmos_api::limits`.
    pub fn new(now: Instant) -> Self {
        LogBudget {
            lines_per_second: f64::from(GUEST_LOG_LINES_PER_SECOND),
            bytes_per_second: f64::from(GUEST_LOG_BYTES_PER_SECOND),
            burst_lines: f64::from(GUEST_LOG_BURST_LINES),
            burst_bytes: f64::from(GUEST_LOG_BURST_BYTES),
            line_tokens: f64::from(GUEST_LOG_BURST_LINES),
            byte_tokens: f64::from(GUEST_LOG_BURST_BYTES),
            refilled: now,
            dropped_lines: 0,
            dropped_bytes: 0,
            reported: now,
            report_every: Duration::from_secs(GUEST_LOG_DROP_REPORT_SECONDS),
        }
    }

    /// Decides about one line the guest wrote at `now`: cuts it, keeps it if the budget
    /// allows (taking one line and its bytes from the buckets), otherwise counts it; and says
    /// whether the report of dropped lines is due.
    pub fn admit(&mut self, now: Instant, message: &str) -> Admission {
        let line = cut_line(message);
        self.refill(now);
        let bytes = line.len() as f64;
        let line = if self.line_tokens >= 1.0 && self.byte_tokens >= bytes {
            self.line_tokens -= 1.0;
            self.byte_tokens -= bytes;
            Some(line)
        } else {
            self.dropped_lines += 1;
            self.dropped_bytes += line.len() as u64;
            None
        };
        Admission {
            line,
            report: self.due_report(now, false),
        }
    }

    /// The report of lines dropped and not yet reported, whether or not its interval has
    /// passed (for when the framework's guests stop: nothing is left unsaid).
    pub fn flush(&mut self, now: Instant) -> Option<DroppedLogs> {
        self.due_report(now, true)
    }

    fn due_report(&mut self, now: Instant, force: bool) -> Option<DroppedLogs> {
        let since = now.saturating_duration_since(self.reported);
        if self.dropped_lines == 0 || (!force && since < self.report_every) {
            return None;
        }
        let report = DroppedLogs {
            lines: self.dropped_lines,
            bytes: self.dropped_bytes,
            seconds: since.as_secs(),
        };
        self.dropped_lines = 0;
        self.dropped_bytes = 0;
        self.reported = now;
        Some(report)
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = self.refilled.max(now);
        self.line_tokens = (self.line_tokens + dt * self.lines_per_second).min(self.burst_lines);
        self.byte_tokens = (self.byte_tokens + dt * self.bytes_per_second).min(self.burst_bytes);
    }
}

/// `message` cut to [`GUEST_LOG_LINE_MAX_BYTES`] at a character boundary, ending in `…` when
/// cut.
pub fn cut_line(message: &str) -> String {
    if message.len() <= GUEST_LOG_LINE_MAX_BYTES {
        return message.to_string();
    }
    let mut end = GUEST_LOG_LINE_MAX_BYTES - '…'.len_utf8();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(b: &mut LogBudget, now: Instant, n: usize, line: &str) -> usize {
        (0..n).filter(|_| b.admit(now, line).line.is_some()).count()
    }

    #[test]
    fn a_burst_of_lines_is_kept_up_to_the_bound_and_the_rest_counted() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(t0);
        let burst = GUEST_LOG_BURST_LINES as usize;
        assert_eq!(kept(&mut b, t0, burst, "x"), burst, "at the bound");
        assert!(b.admit(t0, "x").line.is_none(), "one past the bound");
        assert_eq!(kept(&mut b, t0, 1_000_000, "x"), 0, "far past the bound");
        let r = b.flush(t0).expect("drops are reported");
        assert_eq!((r.lines, r.bytes), (1_000_001, 1_000_001));
        assert_eq!(b.flush(t0), None, "reported once");
    }

    #[test]
    fn bytes_are_budgeted_too() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(t0);
        let line = "y".repeat(GUEST_LOG_LINE_MAX_BYTES);
        let fit = GUEST_LOG_BURST_BYTES as usize / GUEST_LOG_LINE_MAX_BYTES;
        assert_eq!(kept(&mut b, t0, fit, &line), fit, "at the bound");
        assert!(b.admit(t0, &line).line.is_none(), "one past the bound");
        // A second later the rate has refilled what it gives per second, no more.
        let t1 = t0 + Duration::from_secs(1);
        let per_second = GUEST_LOG_BYTES_PER_SECOND as usize / GUEST_LOG_LINE_MAX_BYTES;
        assert_eq!(kept(&mut b, t1, 10_000, &line), per_second);
    }

    #[test]
    fn a_flood_for_a_minute_keeps_what_the_rate_allows_and_reports_every_interval() {
        let t0 = Instant::now();
        let mut b = LogBudget::new(t0);
        let (mut kept_lines, mut reports, mut dropped) = (0u64, Vec::new(), 0u64);
        for ms in 0..60_000u64 {
            let now = t0 + Duration::from_millis(ms);
            for _ in 0..10 {
                let a = b.admit(now, "flood");
                kept_lines += u64::from(a.line.is_some());
                if let Some(r) = a.report {
                    dropped += r.lines;
                    reports.push(r);
                }
            }
        }
        let max = u64::from(GUEST_LOG_BURST_LINES) + 60 * u64::from(GUEST_LOG_LINES_PER_SECOND);
        assert!(kept_lines <= max, "{kept_lines} > {max}");
        assert_eq!(reports.len() as u64, 60 / GUEST_LOG_DROP_REPORT_SECONDS - 1);
        dropped += b.flush(t0 + Duration::from_secs(60)).map_or(0, |r| r.lines);
        assert_eq!(
            kept_lines + dropped,
            600_000,
            "every line is kept or counted"
        );
        let m = reports[0].message("f1");
        assert!(
            m.starts_with("framework f1 dropped ") && m.contains("log lines ("),
            "{m}"
        );
    }

    #[test]
    fn long_lines_are_cut_at_a_char_boundary() {
        assert_eq!(cut_line(&"a".repeat(GUEST_LOG_LINE_MAX_BYTES)).len(), 4096);
        let cut = cut_line(&"é".repeat(GUEST_LOG_LINE_MAX_BYTES));
        assert!(cut.len() <= GUEST_LOG_LINE_MAX_BYTES && cut.ends_with('…'));
    }
}
