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

/// Starts `wasmos master` on a free loopback port with `extra` flags (e.g. shorter agent
/// timeouts), its stderr sent to `stderr`; returns the process and its address.
pub async fn start_master_with(extra: &[&str], stderr: Stdio) -> (Child, String) {
    let mut master = wasmos()
        .args(["master", "--listen", "127.0.0.1:0"])
        .args(["--allocation-interval", "0.05"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(stderr)
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
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (master, addr)
}

/// Starts `wasmos agent` for the master at `addr`, working in `work_dir`, offering
/// `resources` (e.g. `"cpus:1;mem:1024"`) under the host name `hostname` (so a test can tell
/// its agents apart in `GetState`).
pub fn spawn_agent(
    addr: &str,
    work_dir: &std::path::Path,
    hostname: &str,
    resources: &str,
) -> Child {
    wasmos()
        .args(["agent", "--master", addr, "--work-dir"])
        .arg(work_dir)
        .args(["--hostname", hostname, "--resources", resources])
        .spawn()
        .expect("wasmos agent starts")
}

/// A client of the master's `OperatorService` at `addr`.
pub async fn operator(
    addr: &str,
) -> wasmos_api::proto::operator_service_client::OperatorServiceClient<tonic::transport::Channel> {
    wasmos_api::proto::operator_service_client::OperatorServiceClient::connect(format!(
        "http://{addr}"
    ))
    .await
    .expect("the operator API answers")
    .max_decoding_message_size(16 << 20)
}

/// Polls the master's `GetState` every 20 ms until `check` returns `Some`, and returns that;
/// panics, naming `what` and showing the last state, when `WAIT` passes first.
pub async fn wait_for_state<T>(
    op: &mut wasmos_api::proto::operator_service_client::OperatorServiceClient<
        tonic::transport::Channel,
    >,
    what: &str,
    mut check: impl FnMut(&wasmos_api::proto::ClusterState) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = op
            .get_state(wasmos_api::proto::GetStateRequest {})
            .await
            .expect("GetState answers")
            .into_inner();
        if let Some(found) = check(&state) {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}; last state: {state:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `cond` every 20 ms until it holds; false when `WAIT` passes first.
pub async fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Pids of the processes in the cgroup of native task `task_id` of `framework_id` (on any
/// agent of this machine), read from every process's `/proc/PID/cgroup`.
pub fn task_pids(framework_id: &str, task_id: &str) -> Vec<u32> {
    let suffix = format!("/{framework_id}/{task_id}");
    pids_where(|line| line.ends_with(&suffix))
}

/// Pids of the processes in any task cgroup of `framework_id` on this machine.
pub fn framework_pids(framework_id: &str) -> Vec<u32> {
    let part = format!("/{framework_id}/");
    pids_where(|line| line.contains(&part))
}

fn pids_where(matches: impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // A process may exit between listing and reading: then it matches nothing.
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .map(|text| text.lines().any(&matches))
                .unwrap_or(false)
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Why native (cgroup) tasks cannot run on this machine, or `None` when they can: the same
/// detection the agent does.
pub fn cgroups_unavailable() -> Option<String> {
    wasmos_agent::cgroups::CgroupHierarchy::detect("wasmos")
        .err()
        .map(|e| e.to_string())
}
