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

/// `report[key]` as a number; panics naming the key otherwise.
pub fn number(report: &Value, key: &str) -> f64 {
    report[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {report}"))
}
