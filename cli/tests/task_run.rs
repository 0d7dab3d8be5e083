//! `wasmos task run` as a user runs it: the real binary on the example components.

mod common;

use std::process::{Command, Output};

use common::example;

fn wasmos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmos"))
        .args(args)
        .output()
        .expect("wasmos runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `wasmos task run ARGS...` and checks that it exits with `code` and that stderr says
/// `reason`.
fn expect_refusal(args: &[&str], code: i32, reason: &str) {
    let out = wasmos(&[&["task", "run"], args].concat());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: stderr {stderr}");
    assert!(
        stderr.contains(reason),
        "{args:?}: expected {reason:?} in {stderr}"
    );
}

#[test]
fn runs_the_pi_executor_and_prints_its_result() {
    let pi = example("pi");
    let out = wasmos(&[
        "task",
        "run",
        &pi,
        "--executor-id",
        "pi",
        "--payload",
        "100000 3",
    ]);
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let fields: Vec<u64> = stdout
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    assert_eq!(fields.len(), 2, "{stdout}");
    assert_eq!(fields[1], 100_000);
    let estimate = 4.0 * fields[0] as f64 / fields[1] as f64;
    assert!((estimate - std::f64::consts::PI).abs() < 0.05, "{estimate}");
    assert!(
        text(&out.stderr).contains("finished"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_failing_task_exits_1_with_the_reason() {
    let hostile = example("hostile");
    let h = hostile.as_str();
    expect_refusal(
        &[h, "--payload", "loop", "--fuel", "1000000"],
        1,
        "ran out of fuel",
    );
    expect_refusal(
        &[h, "--payload", "loop", "--timeout-ms", "200"],
        1,
        "exceeded its deadline",
    );
    expect_refusal(
        &[h, "--payload", "membomb", "--memory-mb", "32"],
        1,
        "memory limit of 32 MiB",
    );
}

#[test]
fn a_bad_component_exits_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"").unwrap();
    expect_refusal(&[empty.to_str().unwrap()], 2, "component is empty");
    expect_refusal(
        &[&example("wrongworld")],
        2,
        "does not implement the wasmos:framework",
    );
    let absent = dir.path().join("absent.wasm");
    expect_refusal(&[absent.to_str().unwrap()], 2, "cannot read");
}

#[test]
fn bad_flags_are_refused() {
    let pi = example("pi");
    expect_refusal(&[&pi, "--executor-id", "../x"], 2, "executor id");
    expect_refusal(
        &[&pi, "--limit", "epoch", "--fuel", "5"],
        2,
        "--fuel needs --limit fuel",
    );
}
