//! The OpenAPI property test: schemathesis (from PyPI, pinned, installed into a venv under
//! the target dir by `scripts/install-schemathesis.sh`) generates requests from
//! `/api/v1/openapi.json` against a real master with a finished pi job in it, with the root
//! token, and runs every check (no 5xx, responses that conform to their schema, ...). The
//! test fails with schemathesis's report when it finds a problem, and when schemathesis
//! cannot be installed (no silent skip).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use common::{spawn_agent, start_master_with};

/// A loopback address no one listens on now.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The schemathesis command, installed if need be.
fn schemathesis() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-schemathesis.sh");
    let out = std::process::Command::new("sh")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "{} failed ({}): schemathesis is needed for this test; see its output above",
        script.display(),
        out.status
    );
    String::from_utf8(out.stdout)
        .expect("a path")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_no_server_error_and_no_schema_break() {
    let st = schemathesis();
    let http = free_addr();
    let (mut master, addr) = start_master_with(&["--http", &http], Stdio::inherit()).await;
    let root = common::tokens_for(&addr).unwrap().root;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = spawn_agent(
        &addr,
        &dir.path().join("w"),
        &["--resources", "cpus:2;mem:2048"],
    );
    common::submit_pi(&addr, 4).await;

    let started = Instant::now();
    let run = tokio::process::Command::new(&st)
        .args(["run", &format!("http://{http}/api/v1/openapi.json")])
        .args(["--url", &format!("http://{http}")])
        .args(["--checks", "all", "--max-examples", "30"])
        .args(["--header", &format!("Authorization: Bearer {root}")])
        .args(["--no-color"])
        .env("SCHEMATHESIS_HOOKS", "")
        // Its cache (`.schemathesis/`) goes with the test's directory.
        .current_dir(dir.path())
        .kill_on_drop(true)
        .output();
    let run = tokio::time::timeout(std::time::Duration::from_secs(600), run)
        .await
        .expect("schemathesis ends within 10 minutes")
        .expect("schemathesis runs");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    eprintln!(
        "schemathesis took {:.1} s:\n{report}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        run.status.success(),
        "schemathesis found problems ({}):\n{report}",
        run.status
    );
    agent.kill().await.unwrap();
    master.kill().await.unwrap();
}
