//! `wasmos-bench scale` at CI size: 1,000 simulated agents and 10 frameworks against a group of
//! three real `wasmos master` processes of this build, with a starvation phase of 50 small
//! frameworks and a leader kill. Checks that every phase ran to its end and that the report is
//! complete and consistent: every agent registered and came back after the failover, tasks were
//! launched and finished without failures, the large framework got its first offer and its
//! fair share. No timing thresholds: the targets are for the benchmark (`bench/README.md`).

use std::process::Command;

use serde_json::Value;

mod common;

use common::{number, wasmos_binary};

#[test]
fn scale_registers_a_thousand_agents_runs_every_phase_and_reports_every_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmos-bench"))
        .args([
            "scale",
            "--agents",
            "1000",
            "--frameworks",
            "10",
            "--tasks-per-framework",
            "5",
            "--task-ms",
            "500",
            "--load-seconds",
            "8",
            "--starvation-frameworks",
            "50",
            "--heartbeat-interval",
            "1",
            "--json",
            "--wasmos",
        ])
        .arg(wasmos_binary())
        .output()
        .expect("wasmos-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "wasmos-bench scale failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"));

    assert_eq!(report["agents"], 1000, "{report}");
    assert_eq!(report["masters"], 3, "{report}");
    // 100 agents per connection: 10 connections per master, not 1,000.
    assert_eq!(report["connections"], 10, "{report}");
    assert_eq!(report["errors"], Value::Array(vec![]), "{report}");
    assert!(number(&report, "register_all_s") > 0.0, "{report}");
    assert!(
        number(&report, "master_rss_bytes_per_agent") > 0.0,
        "{report}"
    );
    // Every agent heartbeats once a second for the 8 s of load: about 1,000/s; well under
    // that means heartbeats stalled (or sessions closed).
    let hb = number(&report, "heartbeats_per_s");
    assert!((500.0..=1500.0).contains(&hb), "{report}");
    assert_eq!(report["sessions_lost_under_load"], 0, "{report}");

    // 10 frameworks keep 5 tasks of 0.5 s running for 8 s: many launches, each measured.
    let launches = number(&report, "launches");
    assert!(launches >= 50.0, "{report}");
    assert!(number(&report, "tasks_finished") >= 50.0, "{report}");
    assert_eq!(report["tasks_failed"], 0, "{report}");
    let (p50, p99) = (
        number(&report, "launch_overhead_ms_p50"),
        number(&report, "launch_overhead_ms_p99"),
    );
    assert!(0.0 < p50 && p50 <= p99, "{report}");
    assert!(number(&report, "offer_cycles") > 0.0, "{report}");
    assert!(number(&report, "offer_cycle_ms_p50") > 0.0, "{report}");

    // Starvation: the small ones ran, the large one got an offer and then half the cluster.
    assert_eq!(report["starvation_small_all_offered"], true, "{report}");
    assert!(
        number(&report, "starvation_small_tasks_finished") > 0.0,
        "{report}"
    );
    let first = number(&report, "starvation_first_offer_s");
    let fair = number(&report, "starvation_fair_share_s");
    assert!(0.0 < first && first <= fair, "{report}");
    let shares = report["starvation_shares"]
        .as_array()
        .unwrap_or_else(|| panic!("starvation_shares is not a list: {report}"));
    assert!(!shares.is_empty(), "{report}");
    assert_eq!(
        report["starvation_errors"],
        Value::Array(vec![]),
        "{report}"
    );

    // Failover: every agent came back to the new leader, which offered again.
    assert!(
        number(&report, "reregister_after_failover_s") > 0.0,
        "{report}"
    );
    assert!(report.get("failover_error").is_none(), "{report}");
}
