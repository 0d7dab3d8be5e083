//! A skip is recorded, and fails under `WASMOS_REQUIRE_ROOT=1`: this binary runs its own
//! ignored test `needs_the_impossible` as a child process with either environment.

use std::process::{Command, Output};

const CHILD: &str = "needs_the_impossible";

/// Stands in for a test whose precondition is missing; run only as the child.
#[test]
#[ignore = "run by the other tests of this file, as a child process"]
fn needs_the_impossible() {
    wasmos_test_skip::require!("a unicorn", Some("none in this stable"));
    panic!("the test ran past a missing precondition");
}

fn run_child(log: &std::path::Path, require: Option<&str>) -> Output {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", CHILD, "--ignored", "--nocapture"])
        .env(wasmos_test_skip::LOG_ENV, log)
        .env_remove(wasmos_test_skip::REQUIRE_ENV);
    if let Some(v) = require {
        cmd.env(wasmos_test_skip::REQUIRE_ENV, v);
    }
    cmd.output().unwrap()
}

#[test]
fn a_missing_precondition_skips_visibly_and_is_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("skips.txt");
    for require in [None, Some("0"), Some("")] {
        let out = run_child(&log, require);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{out:?}");
        assert!(
            stderr.contains(
                "SKIPPED skip::needs_the_impossible: needs a unicorn: none in this stable"
            ),
            "{stderr}"
        );
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged,
        "skip::needs_the_impossible: needs a unicorn: none in this stable\n".repeat(3)
    );
}

#[test]
fn under_require_root_a_missing_precondition_fails() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("skips.txt");
    let out = run_child(&log, Some("1"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        stderr.contains("needs a unicorn, which this machine lacks: none in this stable")
            && stderr.contains("WASMOS_REQUIRE_ROOT=1 makes this a failure"),
        "{stderr}"
    );
    assert!(!log.exists(), "a failure is not logged as a skip");
}
