//! `wasmos dev` and `wasmos submit` as real processes: `dev --run` runs `pi` to its estimate and
//! fails a scheduler that loops in `init` for fuel; `submit` runs `pi` on a separately started
//! `wasmos master` and `wasmos agent`; a missing file, a core module and an unreachable master
//! are refused with exit status 2 and a reason; `dev` without `--run` says where to submit,
//! serves `submit`, and stops cleanly on SIGTERM.

use std::process::{Output, Stdio};

mod common;

use common::{WAIT, example, start_master, wasmos};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

async fn output(args: &[&str]) -> Output {
    tokio::time::timeout(WAIT, wasmos().args(args).output())
        .await
        .unwrap_or_else(|_| panic!("wasmos {args:?} did not exit within {WAIT:?}"))
        .expect("wasmos runs")
}

/// The estimate in `pi ~= 3.14159x (...)`.
fn estimate(stdout: &str) -> f64 {
    let rest = stdout
        .split("pi ~= ")
        .nth(1)
        .unwrap_or_else(|| panic!("no estimate in {stdout:?}"));
    rest.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no number in {stdout:?}"))
}

fn assert_pi(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    let pi = estimate(&stdout);
    assert!(
        (pi - std::f64::consts::PI).abs() < 0.05,
        "{pi} is not close to pi"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_pi_to_its_estimate() {
    let pi = example("pi");
    let out = output(&["dev", "--agents", "2", "--run", &pi, "--", "8", "20000"]).await;
    assert_pi(&out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_fails_a_looping_scheduler_for_fuel() {
    let hostile = example("hostile");
    let out = output(&["dev", "--run", &hostile, "--", "loop"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("the framework failed") && stderr.contains("fuel"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_runs_pi_on_a_master_and_agent_and_refuses_a_core_module() {
    let (mut master, addr) = start_master().await;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = wasmos()
        .args(["agent", "--master", &addr, "--work-dir"])
        .arg(dir.path().join("work"))
        .args(["--resources", "cpus:2;mem:2048"])
        .spawn()
        .expect("wasmos agent starts");

    // No wait for the agent: the framework gets offers once it registers.
    let pi = example("pi");
    let out = output(&["submit", &pi, "--master", &addr, "--", "8", "20000"]).await;
    assert_pi(&out);

    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = output(&["submit", core.to_str().unwrap(), "--master", &addr]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("refused the component") && stderr.contains("not a Wasm component"),
        "{stderr}"
    );

    agent.kill().await.expect("kill the agent");
    master.kill().await.expect("kill the master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_refuses_a_missing_file_and_an_unreachable_master() {
    let out = output(&["submit", "/nonexistent/framework.wasm"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains("cannot read") && stderr.contains("/nonexistent/framework.wasm"),
        "{stderr}"
    );

    // Port 1 on loopback: nothing listens there.
    let pi = example("pi");
    let out = output(&["submit", &pi, "--master", "127.0.0.1:1"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_without_run_serves_and_says_where_to_submit() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = wasmos()
        .args(["dev", "--agents", "1", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("wasmos dev starts");
    let stdout = dev.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("wasmos dev says where the master is in time")
        .expect("stdout readable")
        .expect("a line on stdout");
    let addr = line
        .split("master at ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    assert!(
        line.contains(&format!("wasmos submit FRAMEWORK.wasm --master {addr}")),
        "{line}"
    );

    let pi = example("pi");
    let out = output(&["submit", &pi, "--master", &addr, "--", "4", "20000"]).await;
    assert_pi(&out);

    // SIGTERM stops the cluster cleanly (exit 0).
    let pid = dev.id().expect("wasmos dev still runs").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(WAIT, dev.wait())
        .await
        .expect("wasmos dev stops in time after SIGTERM")
        .expect("wait for wasmos dev");
    assert!(status.success(), "wasmos dev exited {status:?} on SIGTERM");
}
