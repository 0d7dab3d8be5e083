//! `wasmos-bench failover --tls` end to end with the binaries of this build: three masters and
//! an agent as real processes, the leader killed once, plain and then over mutual TLS. Checks that the machinery works and that
//! the JSON it prints is complete and consistent; no timing thresholds.

use serde_json::Value;

mod common;

use common::{number, run_report};

#[test]
fn failover_kills_the_leader_plain_and_over_tls_and_reports_every_key() {
    let report: Value = run_report(&[
        "failover",
        "--tls",
        "--kills",
        "1",
        "--agents",
        "1",
        "--commits",
        "50",
        "--writers",
        "4",
    ]);

    // The plain run, then the TLS run: each with ACLs enforced (the bench probes a master),
    // and only the second refusing plain text.
    check_one_kill(&report);
    assert_eq!(report["acl_enforced"], true, "{report}");
    assert_eq!(report["tls_enforced"], Value::Null, "{report}");
    let tls = &report["tls"];
    check_one_kill(tls);
    assert_eq!(tls["acl_enforced"], true, "{report}");
    assert_eq!(tls["tls_enforced"], true, "{report}");
    let (plain, over_tls) = (
        number(&report, "failover_ms_p50"),
        number(&report, "tls_failover_ms_p50"),
    );
    assert_eq!(tls["failover_ms_p50"].as_f64(), Some(over_tls), "{report}");
    let ratio = number(&report, "tls_failover_ratio");
    assert!(
        (ratio - over_tls / plain).abs() <= 0.001,
        "tls_failover_ratio {ratio} is not {over_tls} / {plain}: {report}"
    );
}

/// One kill's figures: each is that kill's, and they come in the order they happen.
fn check_one_kill(report: &Value) {
    assert_eq!(report["kills"], 1, "{report}");
    assert!(number(report, "commits_per_s") > 0.0, "{report}");
    let commit = number(report, "first_commit_ms_p50");
    let offer = number(report, "failover_ms_p50");
    let launch = number(report, "first_launch_ms_p50");
    assert!(
        0.0 < commit && commit <= offer && offer <= launch,
        "{report}"
    );
    assert_eq!(number(report, "failover_ms_p99"), offer, "{report}");
}
