//! `wasmos-bench failover` end to end with the binaries of this build: three masters and an
//! agent as real processes, the leader killed once. Checks that the machinery works and that
//! the JSON it prints is complete and consistent; no timing thresholds.

use std::process::Command;

use serde_json::Value;

mod common;

use common::{components, number, wasmos_binary};

#[test]
fn failover_kills_the_leader_and_reports_every_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmos-bench"))
        .args(["failover", "--kills", "1", "--agents", "1", "--json"])
        .args(["--commits", "50", "--writers", "4"])
        .arg("--wasmos")
        .arg(wasmos_binary())
        .arg("--components")
        .arg(components())
        .output()
        .expect("wasmos-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "wasmos-bench failover failed: {stderr}"
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"));

    assert_eq!(report["kills"], 1, "{report}");
    assert!(number(&report, "commits_per_s") > 0.0, "{report}");
    // One kill: each figure is that kill's, and they come in the order they happen.
    let commit = number(&report, "first_commit_ms_p50");
    let offer = number(&report, "failover_ms_p50");
    let launch = number(&report, "first_launch_ms_p50");
    assert!(
        0.0 < commit && commit <= offer && offer <= launch,
        "{report}"
    );
    assert_eq!(number(&report, "failover_ms_p99"), offer, "{report}");
}
