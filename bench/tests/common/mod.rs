//! Shared by the bench's end-to-end tests: the binaries and components of this build.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The `wasmos` binary of this build, next to `wasmos-bench`. `cargo nextest run --workspace`
/// (what `scripts/test.sh` runs) builds it; a run of this package alone needs
/// `cargo build -p wasmos` first. Not built from here: a `cargo build -p wasmos` inside the test
/// resolves features for that one package and rebuilds much of the dependency tree.
pub fn wasmos_binary() -> PathBuf {
    let bench = Path::new(env!("CARGO_BIN_EXE_wasmos-bench"));
    let dir = bench.parent().expect("the bench binary has a directory");
    let wasmos = dir.join(format!("wasmos{}", std::env::consts::EXE_SUFFIX));
    assert!(
        wasmos.is_file(),
        "{} is missing: build it with `cargo build -p wasmos` (a workspace test run does)",
        wasmos.display()
    );
    wasmos
}

/// The examples' release output, checked to hold `benchguest`, `logreg` and `pi`.
pub fn components() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples-wasm/target/wasm32-wasip2/release");
    for name in ["benchguest", "logreg", "pi"] {
        let p = dir.join(format!("{name}.wasm"));
        assert!(
            p.is_file(),
            "{} is missing: run scripts/build-examples.sh (scripts/test.sh does) before the tests",
            p.display()
        );
    }
    dir
}

/// Runs `wasmos-bench ARGS --json --wasmos W --components C` (with this build's binary and
/// components) and returns its one JSON report, panicking with its stderr when it fails.
pub fn run_report(args: &[&str]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmos-bench"))
        .args(args)
        .arg("--json")
        .arg("--wasmos")
        .arg(wasmos_binary())
        .arg("--components")
        .arg(components())
        .output()
        .expect("wasmos-bench runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "wasmos-bench {args:?} failed: {stderr}"
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"))
}

/// `report[key]` as a number; panics naming the key otherwise.
pub fn number(report: &Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {report}"))
}
