//! A guest's `log` flood reaches the host's log bounded: what the framework's budget allows is
//! written, the rest is counted in report lines, and every line is one or the other.
//!
//! Its own test binary, because it installs the process's tracing subscriber.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use common::*;
use wasmos_api::limits::{GUEST_LOG_BURST_LINES, GUEST_LOG_LINES_PER_SECOND};
use wasmos_wasm_executor::LimitMode;

/// Everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_from_two_executors_is_bounded_and_counted() {
    let out = Captured::default();
    let writer = out.clone();
    tracing_subscriber::fmt()
        .with_env_filter("wasmos::guest=info")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let h = harness(LimitMode::Fuel);
    let per_task = 100_000u64;
    let started = Instant::now();
    let payload = format!("log-flood:{per_task}");
    let (a, b) = tokio::join!(
        h.run("e1", &payload, limits()),
        h.run("e2", &payload, limits()),
    );
    let elapsed = started.elapsed();
    assert_eq!(a.expect("the flooder finishes").output, b"logged 100000");
    assert_eq!(b.expect("the flooder finishes").output, b"logged 100000");
    // The framework's end reports what was dropped since the last report.
    h.pool.shutdown_framework(&fw()).await;

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let line = "f".repeat(100);
    let kept = text.lines().filter(|l| l.contains(&line)).count() as u64;
    let dropped: u64 = text
        .lines()
        .filter_map(|l| l.split_once("framework fw dropped ")?.1.split(' ').next())
        .map(|n| n.parse::<u64>().expect("a count"))
        .sum();
    // Both executors share one budget: a burst, plus the rate for the time the flood took.
    let allowed = u64::from(GUEST_LOG_BURST_LINES)
        + (elapsed.as_secs() + 1) * u64::from(GUEST_LOG_LINES_PER_SECOND);
    assert!(kept <= allowed, "{kept} lines kept; at most {allowed}");
    assert!(
        kept >= u64::from(GUEST_LOG_BURST_LINES),
        "the burst is kept: {kept}"
    );
    assert_eq!(
        kept + dropped,
        2 * per_task,
        "every line is kept or counted"
    );
    assert!(
        text.len() < 2 << 20,
        "the host's log stays small: {} bytes",
        text.len()
    );
}
