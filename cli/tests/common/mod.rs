//! Shared helpers for the tests that run the real `wasmos` binary: locating the example
//! components, starting commands, and starting a `wasmos master` process.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Bound on any one wait for a `wasmos` process (generous for a busy 2-core machine).
pub const WAIT: Duration = Duration::from_secs(120);

/// A component built by `scripts/build-examples.sh`, as a path string for command lines.
pub fn example(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples-wasm/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        p.is_file(),
        "{} is missing: run scripts/build-examples.sh (scripts/test.sh does) before the tests",
        p.display()
    );
    p.to_str().expect("a UTF-8 path").to_string()
}

/// The `wasmos` binary, killed when the handle is dropped, with no stdin.
pub fn wasmos() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wasmos"));
    c.kill_on_drop(true).stdin(Stdio::null());
    c
}

/// Starts `wasmos master` on a free loopback port; returns the process and its address.
pub async fn start_master() -> (Child, String) {
    let mut master = wasmos()
        .args(["master", "--listen", "127.0.0.1:0"])
        .args(["--allocation-interval", "0.05"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("wasmos master starts");
    let stdout = master.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("the master says where it listens in time")
        .expect("stdout readable")
        .expect("a line on stdout");
    let addr = line
        .strip_prefix("wasmos master listening on ")
        .unwrap_or_else(|| panic!("unexpected first line from the master: {line:?}"))
        .to_string();
    // Keep draining stdout so the master never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (master, addr)
}
