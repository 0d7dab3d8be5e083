//! Native (command) tasks on this machine's real cgroups: exit codes, OOM kills, CPU
//! throttling, the pids limit, TERM-then-KILL, capped output, cleanup, and role ACLs. Tests that need root and
//! cgroups skip visibly (`require_cgroups!`) when they cannot run.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use wasmos_agent::isolation::Piece;
use wasmos_agent::native::task_cgroup;
use wasmos_agent::{FrameworkContext, MemoryFetcher};
use wasmos_api::{Resources, TaskState};

fn ctx(name: &str) -> FrameworkContext {
    FrameworkContext {
        framework_id: fw(name),
        role: "batch".into(),
        component: None,
        wasm_budget: Default::default(),
    }
}

async fn agent(dir: &tempfile::TempDir) -> TestAgent {
    start(
        config(dir.path().to_path_buf()),
        Arc::new(MemoryFetcher::new()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_become_finished_and_failed_and_the_cgroup_is_removed() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let t = agent(&dir).await;
    let fw_name = "native-exit";
    let wait_go = "while [ ! -f go ]; do sleep 0.05; done";
    let ok = command_task(
        "ok",
        &format!("{wait_go}; echo hello; echo oops >&2"),
        Resources::new(0.5, 64, 0),
    );
    let bad = command_task(
        "bad",
        &format!("{wait_go}; exit 3"),
        Resources::new(0.5, 64, 0),
    );
    assert_eq!(
        t.agent.launch(&ctx(fw_name), ok).await.unwrap(),
        TaskState::Running
    );
    assert_eq!(
        t.agent.launch(&ctx(fw_name), bad).await.unwrap(),
        TaskState::Running
    );

    // While they wait for "go", their cgroups exist with the limits asked for.
    let mut cgroups = Vec::new();
    for task in ["ok", "bad"] {
        let c = t
            .agent
            .container(&fw(fw_name), &task.parse().unwrap())
            .expect("task is running");
        let cg = task_cgroup(&c).expect("a native task has a cgroup").clone();
        assert!(cg.exists());
        assert_eq!(cg.memory_limit().unwrap(), 64 << 20);
        assert_eq!(cg.cpu_quota().unwrap(), Some((50_000, 100_000)));
        // Launch returns once the command was executed inside its cgroup.
        assert!(
            !cg.pids().is_empty(),
            "the task's processes are in its cgroup"
        );
        cgroups.push(cg);
        std::fs::write(
            t.agent
                .sandbox_dir(&fw(fw_name), &task.parse().unwrap())
                .join("go"),
            "",
        )
        .unwrap();
    }

    let ok = terminal(&t.master, fw_name, "ok").await;
    assert_eq!(ok.status.state, TaskState::Finished, "{:?}", ok.status);
    let bad = terminal(&t.master, fw_name, "bad").await;
    assert_eq!(bad.status.state, TaskState::Failed);
    assert!(
        bad.status.message.contains("exited with code 3"),
        "{}",
        bad.status.message
    );
    assert_eq!(
        states(&t.master.task_updates(fw_name, "ok")),
        vec![TaskState::Running, TaskState::Finished]
    );

    // Output went to the sandbox; the cgroups and processes are gone.
    let sandbox = t.agent.sandbox_dir(&fw(fw_name), &"ok".parse().unwrap());
    assert_eq!(
        std::fs::read_to_string(sandbox.join("stdout")).unwrap(),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(sandbox.join("stderr")).unwrap(),
        "oops\n"
    );
    for cg in cgroups {
        assert!(!cg.exists(), "cgroup {:?} was not removed", cg.dirs);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_over_its_memory_limit_is_oom_killed_and_reported() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let t = agent(&dir).await;
    // `tail` keeps every line it has read; /dev/zero has no line ends, so it grows forever.
    let task = command_task("bomb", "exec tail /dev/zero", Resources::new(0.5, 32, 0));
    t.agent.launch(&ctx("native-oom"), task).await.unwrap();
    let end = terminal(&t.master, "native-oom", "bomb").await;
    assert_eq!(end.status.state, TaskState::Failed);
    assert!(
        end.status.message.contains("memory limit exceeded"),
        "{}",
        end.status.message
    );
    assert!(
        end.status.message.contains("32 MiB"),
        "{}",
        end.status.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_bound_task_under_half_a_cpu_is_throttled() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let t = agent(&dir).await;
    let task = command_task("spin", "while :; do :; done", Resources::new(0.5, 32, 0));
    t.agent.launch(&ctx("native-cpu"), task).await.unwrap();
    let c = t
        .agent
        .container(&fw("native-cpu"), &"spin".parse().unwrap())
        .unwrap();
    let cg = task_cgroup(&c).unwrap().clone();
    assert_eq!(cg.cpu_quota().unwrap(), Some((50_000, 100_000)));
    // A busy loop under a 50 ms-per-100 ms quota is throttled in every period it runs a full
    // half; the kernel's own counters say so, whatever the wall clock does.
    let throttled = wait_until(Duration::from_secs(30), || {
        cg.cpu_stats().map(|s| s.nr_throttled >= 5).unwrap_or(false)
    })
    .await;
    let stats = cg.cpu_stats().unwrap();
    assert!(throttled, "the task was not throttled: {stats:?}");
    assert!(stats.throttled > Duration::ZERO, "{stats:?}");
    assert!(t.agent.kill(&fw("native-cpu"), &"spin".parse().unwrap()));
    let end = terminal(&t.master, "native-cpu", "spin").await;
    assert_eq!(end.status.state, TaskState::Killed);
    assert!(!cg.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_escalates_from_term_to_kill_for_a_task_that_ignores_term() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let t = agent(&dir).await;
    let f = "native-kill";
    let stubborn = command_task(
        "stubborn",
        "trap '' TERM; touch ready; while :; do sleep 0.05; done",
        Resources::new(0.2, 32, 0),
    );
    let polite = command_task(
        "polite",
        "touch ready; exec sleep 600",
        Resources::new(0.2, 32, 0),
    );
    t.agent.launch(&ctx(f), stubborn).await.unwrap();
    t.agent.launch(&ctx(f), polite).await.unwrap();
    for task in ["stubborn", "polite"] {
        let ready = t
            .agent
            .sandbox_dir(&fw(f), &task.parse().unwrap())
            .join("ready");
        assert!(
            wait_until(Duration::from_secs(30), || ready.exists()).await,
            "{task} never started"
        );
        assert!(t.agent.kill(&fw(f), &task.parse().unwrap()));
    }
    let polite = terminal(&t.master, f, "polite").await;
    assert_eq!(polite.status.state, TaskState::Killed);
    assert!(
        polite.status.message.contains("(SIGTERM)"),
        "{}",
        polite.status.message
    );
    let stubborn = terminal(&t.master, f, "stubborn").await;
    assert_eq!(stubborn.status.state, TaskState::Killed);
    assert!(
        stubborn.status.message.contains("sent SIGKILL"),
        "{}",
        stubborn.status.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_files_are_capped() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path().to_path_buf());
    c.native.max_output_bytes = 1000;
    let t = start(c, Arc::new(MemoryFetcher::new())).await;
    let task = command_task(
        "chatty",
        "head -c 100000 /dev/zero | tr '\\0' a",
        Resources::new(0.5, 64, 0),
    );
    t.agent.launch(&ctx("native-out"), task).await.unwrap();
    let end = terminal(&t.master, "native-out", "chatty").await;
    assert_eq!(end.status.state, TaskState::Finished, "{:?}", end.status);
    let out = std::fs::read_to_string(
        t.agent
            .sandbox_dir(&fw("native-out"), &"chatty".parse().unwrap())
            .join("stdout"),
    )
    .unwrap();
    assert!(
        out.starts_with(&"a".repeat(1000)),
        "{}",
        &out[..out.len().min(80)]
    );
    assert!(out.len() < 1100, "{} bytes kept", out.len());
    assert!(out.contains("[wasmos: output truncated at 1000 bytes]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_tasks_are_refused_for_roles_not_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path().to_path_buf());
    c.native.allowed_roles = vec!["ops".into()];
    let t = start(c, Arc::new(MemoryFetcher::new())).await;
    let task = command_task("t", "true", Resources::new(0.1, 16, 0));
    let state = t.agent.launch(&ctx("native-acl"), task).await.unwrap();
    assert_eq!(state, TaskState::Error);
    let end = terminal(&t.master, "native-acl", "t").await;
    assert_eq!(end.status.state, TaskState::Error);
    assert!(
        end.status
            .message
            .contains("not allowed for role \"batch\""),
        "{}",
        end.status.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_cannot_be_executed_fails_with_the_reason() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    // The task's own root holds no file the test could plant, so this one runs without it.
    let mut c = config(dir.path().to_path_buf());
    c.native.isolation.wanted.retain(|p| *p != Piece::Mount);
    // Then the task's uid must be able to walk to its sandbox.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let t = start(c, Arc::new(MemoryFetcher::new())).await;
    let mut task = command_task("noexec", "", Resources::new(0.1, 16, 0));
    // Exists, is executable, but is not a program the kernel can run.
    let fake = dir.path().join("fake-program");
    std::fs::write(&fake, b"\x00\x01not an executable").unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    task.kind = wasmos_api::TaskKind::Command {
        argv: vec![fake.display().to_string()],
        env: vec![],
    };
    assert_eq!(
        t.agent.launch(&ctx("native-noexec"), task).await.unwrap(),
        TaskState::Failed
    );
    let end = terminal(&t.master, "native-noexec", "noexec").await;
    assert!(
        end.status.message.contains("cannot execute"),
        "{}",
        end.status.message
    );
    assert!(
        end.status.message.contains("Exec format error"),
        "{}",
        end.status.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_program_fails_with_its_name() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let t = agent(&dir).await;
    let mut task = command_task("missing", "", Resources::new(0.1, 16, 0));
    task.kind = wasmos_api::TaskKind::Command {
        argv: vec!["no-such-program-xyz".into()],
        env: vec![],
    };
    assert_eq!(
        t.agent.launch(&ctx("native-missing"), task).await.unwrap(),
        TaskState::Failed
    );
    let end = terminal(&t.master, "native-missing", "missing").await;
    assert!(
        end.status
            .message
            .contains("\"no-such-program-xyz\" not found"),
        "{}",
        end.status.message
    );
}

/// A task cannot run more processes than `pids_max`: its forks past the limit fail (the
/// kernel counts them in `pids.events`), and only the ones under it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_cannot_fork_past_its_pids_limit() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path().to_path_buf());
    config.native.pids_max = 8;
    let t = start(config, Arc::new(MemoryFetcher::new())).await;
    let f = "native-pids";
    // A subshell starts 20 background `sleep`s, each noting that it started, until a fork
    // fails; the task's shell then blocks reading a fifo (no fork) until it is killed.
    let script = "mkfifo gate; \
        (i=0; while [ $i -lt 20 ]; do i=$((i+1)); (echo x >> started; exec sleep 30) & done; wait); \
        read x < gate";
    let task = command_task("forks", script, Resources::new(0.1, 64, 0));
    t.agent.launch(&ctx(f), task).await.unwrap();
    let c = t
        .agent
        .container(&fw(f), &"forks".parse().unwrap())
        .expect("task is running");
    let cg = task_cgroup(&c).expect("a native task has a cgroup").clone();
    let pids_dir = cg
        .dirs
        .iter()
        .find(|d| d.join("pids.max").exists())
        .expect("a pids controller directory")
        .clone();
    let read = |file: &str| std::fs::read_to_string(pids_dir.join(file)).unwrap_or_default();
    assert_eq!(read("pids.max").trim(), "8");
    // `max N` in pids.events: N forks refused for the limit.
    let refused = || {
        read("pids.events")
            .lines()
            .find_map(|l| l.strip_prefix("max "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(30), || refused() > 0).await,
        "no fork was refused: pids.events {:?}, {} processes",
        read("pids.events"),
        cg.pids().len()
    );
    assert!(cg.pids().len() <= 8, "{:?}", cg.pids());
    let sandbox = t.agent.sandbox_dir(&fw(f), &"forks".parse().unwrap());
    let started = std::fs::read_to_string(sandbox.join("started"))
        .unwrap_or_default()
        .lines()
        .count();
    assert!((1..8).contains(&started), "{started} of 20 started");
    t.agent.kill(&fw(f), &"forks".parse().unwrap());
    let end = terminal(&t.master, f, "forks").await;
    assert!(end.status.state.is_terminal(), "{:?}", end.status);
    assert!(!cg.exists());
}
