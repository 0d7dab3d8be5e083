//! `wasmos task run` as a user runs it: the real binary on the example components.

use std::path::PathBuf;
use std::process::{Command, Output};

fn example(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples-wasm/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/build-examples.sh first",
        p.display()
    );
    p
}

fn wasmos(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmos"))
        .args(args)
        .output()
        .expect("wasmos runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn runs_the_pi_executor_and_prints_its_result() {
    let pi = example("pi");
    let out = wasmos(&[
        "task",
        "run",
        pi.to_str().unwrap(),
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
    let out = wasmos(&[
        "task",
        "run",
        hostile.to_str().unwrap(),
        "--payload",
        "loop",
        "--fuel",
        "1000000",
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("ran out of fuel"),
        "{}",
        text(&out.stderr)
    );

    let out = wasmos(&[
        "task",
        "run",
        hostile.to_str().unwrap(),
        "--payload",
        "loop",
        "--timeout-ms",
        "200",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("exceeded its deadline"),
        "{}",
        text(&out.stderr)
    );

    let out = wasmos(&[
        "task",
        "run",
        hostile.to_str().unwrap(),
        "--payload",
        "membomb",
        "--memory-mb",
        "32",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("memory limit of 32 MiB"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_bad_component_exits_2_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"").unwrap();
    let out = wasmos(&["task", "run", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("component is empty"),
        "{}",
        text(&out.stderr)
    );

    let out = wasmos(&["task", "run", example("wrongworld").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("does not implement the wasmos:framework"));

    let out = wasmos(&[
        "task",
        "run",
        dir.path().join("absent.wasm").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_flags_are_refused() {
    let pi = example("pi");
    let out = wasmos(&["task", "run", pi.to_str().unwrap(), "--executor-id", "../x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("executor id"),
        "{}",
        text(&out.stderr)
    );
    let out = wasmos(&[
        "task",
        "run",
        pi.to_str().unwrap(),
        "--limit",
        "epoch",
        "--fuel",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--fuel needs --limit fuel"),
        "{}",
        text(&out.stderr)
    );
}
