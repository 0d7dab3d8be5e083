//! Native tasks held to their sandbox's disk quota, with real processes on this machine: many
//! small files are caught by the usage poll, one big file by `RLIMIT_FSIZE`, a task that
//! wrote past its quota and exited before a poll by the last measure; each fails with a
//! reason naming the quota, its sandbox is emptied but for its output, and the agent runs
//! the next task. Tests that need root and cgroups skip visibly (`require_cgroups!`) when they
//! cannot run.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use wasmos_agent::disk_quota::{self, Step};
use wasmos_agent::{FrameworkContext, MemoryFetcher};
use wasmos_api::{Resources, TaskState};

const QUOTA_MB: u64 = 8;
const MIB: u64 = 1 << 20;

fn ctx(name: &str) -> FrameworkContext {
    FrameworkContext {
        framework_id: fw(name),
        role: "batch".into(),
        component: None,
        wasm_budget: Default::default(),
    }
}

/// An agent polling sandboxes every `interval`, giving tasks that ask for no disk the same
/// quota as the others.
async fn agent(dir: &tempfile::TempDir, interval: Duration) -> TestAgent {
    let mut c = config(dir.path().to_path_buf());
    c.native.disk_watch_interval = interval;
    c.native.default_disk_mb = QUOTA_MB;
    start(c, Arc::new(MemoryFetcher::new())).await
}

fn usage(sandbox: &Path) -> u64 {
    match disk_quota::measure(sandbox, u64::MAX) {
        Step::Done(b) | Step::Partial(b) => b,
    }
}

/// Runs `script` with an 8 MiB quota and returns its terminal state, message and stdout.
async fn run(t: &TestAgent, f: &str, id: &str, script: &str) -> (TaskState, String, String) {
    run_with_disk(t, f, id, script, QUOTA_MB).await
}

async fn run_with_disk(
    t: &TestAgent,
    f: &str,
    id: &str,
    script: &str,
    disk_mb: u64,
) -> (TaskState, String, String) {
    let task = command_task(id, script, Resources::new(0.5, 64, disk_mb));
    assert_eq!(
        t.agent.launch(&ctx(f), task).await.unwrap(),
        TaskState::Running
    );
    let end = terminal(&t.master, f, id).await;
    let sandbox = t.agent.sandbox_dir(&fw(f), &id.parse().unwrap());
    let stdout = std::fs::read_to_string(sandbox.join("stdout")).unwrap_or_default();
    (end.status.state, end.status.message, stdout)
}

fn assert_quota_failure(state: TaskState, message: &str) {
    assert_eq!(state, TaskState::Failed, "{message}");
    assert!(
        message.starts_with("disk quota exceeded") && message.contains("8 MiB quota (disk_mb"),
        "{message}"
    );
}

/// Many small files (64 KiB each, far below `RLIMIT_FSIZE`), then the task waits: only the
/// usage poll can end it. Its files are removed, its output kept, and the agent runs the
/// next task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_small_files_past_the_quota_are_caught_by_the_poll_and_removed() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let t = agent(&dir, Duration::from_millis(100)).await;
    let f = "disk-small";
    // 16 MiB in 256 files in subdirectories, twice the quota.
    let script = "echo started; for d in 1 2 3 4; do mkdir -p d$d; \
                  for i in $(seq 64); do head -c 65536 /dev/zero > d$d/f$i; done; done; \
                  echo wrote; exec sleep 600";
    let (state, message, stdout) = run(&t, f, "small", script).await;
    assert_quota_failure(state, &message);
    assert!(message.contains("the task was killed"), "{message}");
    assert!(stdout.starts_with("started"), "output is kept: {stdout:?}");
    let sandbox = t.agent.sandbox_dir(&fw(f), &"small".parse().unwrap());
    let mut left: Vec<_> = std::fs::read_dir(&sandbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["stderr", "stdout"]);
    let after = usage(&sandbox);
    assert!(after < 64 << 10, "the sandbox still holds {after} bytes");

    // The agent serves the next task.
    let (state, message, stdout) = run(&t, f, "next", "echo fine").await;
    assert_eq!(state, TaskState::Finished, "{message}");
    assert_eq!(stdout, "fine\n");
}

/// One big file: `RLIMIT_FSIZE` stops it at the quota (the task sees the file at exactly
/// 8 MiB, not 100 MiB), and the task fails for its quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_big_file_stops_at_the_quota_by_rlimit_fsize() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    // A poll too slow to matter: the file size limit and the last measure act alone.
    let t = agent(&dir, Duration::from_secs(3600)).await;
    let f = "disk-big";
    let script = "head -c 100M /dev/zero > f; echo size=$(stat -c %s f)";
    let (state, message, stdout) = run(&t, f, "big", script).await;
    assert_quota_failure(state, &message);
    assert_eq!(stdout, format!("size={}\n", QUOTA_MB * MIB), "{message}");
    let sandbox = t.agent.sandbox_dir(&fw(f), &"big".parse().unwrap());
    assert!(!sandbox.join("f").exists(), "the big file was removed");
    assert!(usage(&sandbox) < 64 << 10);

    // Far past, and the program is the task itself: killed by SIGXFSZ. The task asks for no
    // disk, so it gets the agent's default quota (set to 8 MiB here).
    let script = "exec head -c 200M /dev/zero > f";
    let (state, message, _) = run_with_disk(&t, f, "bigger", script, 0).await;
    assert_quota_failure(state, &message);
    assert!(message.contains("SIGXFSZ"), "{message}");
}

/// At the bound: just under the quota finishes; just over, in files each under
/// `RLIMIT_FSIZE`, with an exit before any poll, fails by the last measure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn just_under_the_quota_finishes_and_just_over_fails_at_the_end() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let t = agent(&dir, Duration::from_secs(3600)).await;
    let f = "disk-bound";
    // 8 MiB less 64 KiB, in one file; the sandbox itself and its empty output files hold a
    // few KiB more.
    let under = format!(
        "head -c {} /dev/zero > f; sync f",
        QUOTA_MB * MIB - (64 << 10)
    );
    let (state, message, _) = run(&t, f, "under", &under).await;
    assert_eq!(state, TaskState::Finished, "{message}");
    let sandbox = t.agent.sandbox_dir(&fw(f), &"under".parse().unwrap());
    assert!(
        sandbox.join("f").exists(),
        "a task under its quota keeps its files"
    );

    // The same plus 128 KiB in a second file: 64 KiB over.
    let over = format!("{under}; head -c 131072 /dev/zero > g; sync g");
    let (state, message, _) = run(&t, f, "over", &over).await;
    assert_quota_failure(state, &message);
    assert!(
        message.contains("8.1 MiB of its 8 MiB quota (disk_mb) when the task ended"),
        "{message}"
    );
    let sandbox = t.agent.sandbox_dir(&fw(f), &"over".parse().unwrap());
    assert!(usage(&sandbox) < 64 << 10);
}
