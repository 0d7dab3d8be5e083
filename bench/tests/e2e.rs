//! `wasmos-bench e2e` end to end with the binaries of this build: a master and two agents as
//! real processes, a small timed run, and a small logreg. Checks that the machinery works and
//! that the JSON it prints is complete and consistent; no timing thresholds (numbers belong in
//! benchmark runs, not in tests).

use std::process::Command;

use serde_json::Value;

mod common;

use common::{number, run_report};

#[test]
fn e2e_runs_a_cluster_of_processes_and_reports_every_key() {
    let report: Value = run_report(&[
        "e2e",
        "--tasks",
        "200",
        "--agents",
        "2",
        "--slots",
        "100",
        "--warmup",
        "20",
        "--logreg-args",
        "2 2000 3 1000",
        "--timeout",
        "300",
    ]);

    assert_eq!(report["tasks"], 200, "{report}");
    assert_eq!(report["agents"], 2, "{report}");
    // Every master enforces ACLs: the bench's own calls and its children carry the token.
    assert_eq!(report["acl_enforced"], true, "{report}");
    assert_eq!(report["tls"], Value::Null, "{report}");
    let per_s = number(&report, "tasks_per_s");
    assert!(per_s > 0.0, "{report}");
    let (p50, p99) = (
        number(&report, "latency_ms_p50"),
        number(&report, "latency_ms_p99"),
    );
    assert!(0.0 < p50 && p50 <= p99, "{report}");
    assert!(p99 <= number(&report, "latency_ms_max"), "{report}");
    // Every task's latency lies within the run, and the rate is the count over the run.
    let elapsed = number(&report, "elapsed_ms");
    assert!(number(&report, "latency_ms_max") <= elapsed, "{report}");
    let expected = 200.0 / (elapsed / 1000.0);
    assert!(
        (per_s - expected).abs() <= expected * 0.01 + 1.0,
        "tasks_per_s {per_s} is not 200 tasks over {elapsed} ms: {report}"
    );
    // The scheduler launched in batches: 200 tasks on 2 agents of 100 slots fit in a few
    // offers, so a few launch calls; one per task would be 200.
    let calls = number(&report, "launch_calls");
    assert!((1.0..200.0 / 10.0).contains(&calls), "{report}");

    let iters = report["logreg_iter_ms"]
        .as_array()
        .unwrap_or_else(|| panic!("logreg_iter_ms is not a list: {report}"));
    assert_eq!(iters.len(), 3, "{report}");
    let first = number(&report, "logreg_first_iter_ms");
    let later = number(&report, "logreg_later_iter_ms");
    assert!(first > 0.0 && later > 0.0, "{report}");
    assert_eq!(iters[0].as_f64(), Some(first), "{report}");
    let mut rest: Vec<f64> = iters[1..].iter().filter_map(Value::as_f64).collect();
    rest.sort_by(f64::total_cmp);
    // The report rounds to 0.01 ms.
    assert!(
        (later - (rest[0] + rest[1]) / 2.0).abs() <= 0.006,
        "the median of the later ones: {report}"
    );
    assert!(
        report["logreg_result"]
            .as_str()
            .is_some_and(|r| r.contains("accuracy")),
        "{report}"
    );
}

/// `--tls`: the plain run and then the same run over mutual TLS, one report with both. Both
/// clusters really enforce ACLs and the second really refuses plain text (the bench probes
/// each master), and the slowdown is the ratio of the two rates.
#[test]
fn e2e_tls_runs_plain_then_mutual_tls_and_reports_the_slowdown() {
    let report: Value = run_report(&[
        "e2e",
        "--tls",
        "--tasks",
        "100",
        "--agents",
        "1",
        "--slots",
        "50",
        "--warmup",
        "10",
        "--no-logreg",
        "--timeout",
        "300",
    ]);

    // The plain run: its keys as without --tls, ACLs enforced, no TLS.
    assert_eq!(report["tasks"], 100, "{report}");
    assert_eq!(report["acl_enforced"], true, "{report}");
    assert_eq!(report["tls_enforced"], Value::Null, "{report}");
    let plain = number(&report, "tasks_per_s");
    // The TLS run: the same run, ACLs enforced and plain text refused.
    let tls = &report["tls"];
    assert_eq!(tls["tasks"], 100, "{report}");
    assert_eq!(tls["acl_enforced"], true, "{report}");
    assert_eq!(tls["tls_enforced"], true, "{report}");
    let over_tls = number(&report, "tls_tasks_per_s");
    assert_eq!(tls["tasks_per_s"].as_f64(), Some(over_tls), "{report}");
    assert!(plain > 0.0 && over_tls > 0.0, "{report}");
    assert_eq!(
        report["tls_latency_ms_p50"], tls["latency_ms_p50"],
        "{report}"
    );
    let slowdown = number(&report, "tls_slowdown");
    assert!(
        (slowdown - plain / over_tls).abs() <= 0.001,
        "tls_slowdown {slowdown} is not {plain} / {over_tls}: {report}"
    );
}

#[test]
fn e2e_refuses_bad_arguments_clearly() {
    let out = Command::new(env!("CARGO_BIN_EXE_wasmos-bench"))
        .args(["e2e", "--tasks", "0", "--json"])
        .output()
        .expect("wasmos-bench runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tasks"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_wasmos-bench"))
        .args(["e2e", "--json", "--wasmos", "/nonexistent/wasmos"])
        .output()
        .expect("wasmos-bench runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/wasmos"), "{stderr}");
}
