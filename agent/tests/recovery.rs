//! Checkpoint and recovery: an agent process is killed with SIGKILL while it runs a native task
//! and a Wasm task; a new agent on the same work directory adopts the native task (pid and
//! cgroup), reports its later exit, reports a task that ended while no agent ran, and reports
//! the Wasm task FAILED with reason "agent restarted". Also: a recorded status update that was
//! never acknowledged is delivered after the restart.
//!
//! The killed agent is this test binary run again as a child (see `agent_process`).

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use wasmos_agent::{Agent, FrameworkContext, MemoryFetcher};
use wasmos_api::{Resources, TaskState};

const CHILD_ENV: &str = "WASMOS_AGENT_TEST_CHILD_DIR";
const FW: &str = "fw-restart";

fn wait_go(name: &str, code: i32) -> String {
    format!("while [ ! -f {name} ]; do sleep 0.05; done; exit {code}")
}

/// The agent process that gets killed: launches the tasks, says so, and waits to die.
#[test]
#[ignore = "helper: run as a child process by the restart test, which SIGKILLs it"]
fn agent_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let fetcher = Arc::new(MemoryFetcher::new());
        let digest = fetcher.add(example_bytes("hostile"));
        // No transport: every update stays queued on disk, unacknowledged.
        let (agent, _) = Agent::open(config(dir.join("work")), fetcher)
            .await
            .unwrap();
        let native = FrameworkContext {
            framework_id: fw(FW),
            role: "batch".into(),
            component: None,
            wasm_budget: Default::default(),
        };
        let wasm = FrameworkContext {
            component: Some(digest),
            ..native.clone()
        };
        let r = Resources::new(0.2, 32, 0);
        if !dir.join("wasm-only").exists() {
            assert_eq!(
                agent
                    .launch(&native, command_task("adopted", &wait_go("go", 7), r))
                    .await
                    .unwrap(),
                TaskState::Running
            );
            assert_eq!(
                agent
                    .launch(&native, command_task("early", &wait_go("go", 5), r))
                    .await
                    .unwrap(),
                TaskState::Running
            );
        }
        assert_eq!(
            agent
                .launch(&wasm, wasm_task("wasm", "e", "sleep:600000", 64))
                .await
                .unwrap(),
            TaskState::Running
        );
        std::fs::write(dir.join("launched"), "").unwrap();
        wait_to_be_killed().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_with_sigkill_and_restarted_adopts_its_native_task() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_agent_process(CHILD_ENV, dir.path());
    let launched = dir.path().join("launched");
    let started = wait_until(Duration::from_secs(120), || launched.exists()).await;
    if !started {
        let _ = child.kill();
        panic!("the agent process never launched its tasks");
    }
    // SIGKILL: no cleanup, no flush, no goodbye.
    child.kill().unwrap();
    child.wait().unwrap();

    let work = dir.path().join("work");
    let sandbox = |task: &str| work.join("sandboxes").join(FW).join(task);
    // "early" exits while no agent runs; its supervisor records the exit.
    std::fs::write(sandbox("early").join("go"), "").unwrap();
    let exit_file = work.join("run").join(FW).join("early.exit");
    assert!(wait_until(Duration::from_secs(30), || exit_file.exists()).await);

    let fetcher = Arc::new(MemoryFetcher::new());
    let (agent, report) = Agent::open(config(work.clone()), fetcher).await.unwrap();
    assert_eq!(
        report.adopted,
        vec![(fw(FW), "adopted".parse().unwrap())],
        "{report:?}"
    );
    assert_eq!(report.ended.len(), 2, "{report:?}");
    assert!(report.pending_updates >= 3, "{report:?}");
    let running: Vec<_> = agent
        .running_tasks()
        .into_iter()
        .map(|t| t.task.task_id.to_string())
        .collect();
    // What the agent would report on re-registration: exactly what still runs.
    assert_eq!(running, vec!["adopted".to_string()]);

    let master = FakeMaster::new(true);
    let stop = tokio_util::sync::CancellationToken::new();
    master.serve(agent.status_queue().clone(), stop.clone());

    let wasm = terminal(&master, FW, "wasm").await;
    assert_eq!(wasm.status.state, TaskState::Failed);
    assert!(
        wasm.status.message.contains("agent restarted"),
        "{}",
        wasm.status.message
    );
    let early = terminal(&master, FW, "early").await;
    assert_eq!(early.status.state, TaskState::Failed);
    assert!(
        early.status.message.contains("exited with code 5"),
        "{}",
        early.status.message
    );

    // The adopted task is still running in its cgroup; now it exits, and that is reported.
    let c = agent
        .container(&fw(FW), &"adopted".parse().unwrap())
        .unwrap();
    let cg = wasmos_agent::native::task_cgroup(&c).unwrap().clone();
    assert!(
        !cg.pids().is_empty(),
        "the adopted task's processes are in its cgroup"
    );
    assert!(master.terminal(FW, "adopted").is_none());
    std::fs::write(sandbox("adopted").join("go"), "").unwrap();
    let adopted = terminal(&master, FW, "adopted").await;
    assert_eq!(adopted.status.state, TaskState::Failed);
    assert!(
        adopted.status.message.contains("exited with code 7"),
        "{}",
        adopted.status.message
    );
    // RUNNING from the killed agent, then the exit from the new one: nothing lost, in order.
    for task in ["adopted", "early", "wasm"] {
        assert_eq!(
            states(&master.task_updates(FW, task)),
            vec![
                TaskState::Running,
                master.terminal(FW, task).unwrap().status.state
            ],
            "{task}"
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), || !cg.exists()).await,
        "cgroup left behind"
    );
    assert!(agent.running_tasks().is_empty());
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_tasks_are_reported_failed_with_agent_restarted_after_a_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wasm-only"), "").unwrap();
    let mut child = spawn_agent_process(CHILD_ENV, dir.path());
    let launched = dir.path().join("launched");
    if !wait_until(Duration::from_secs(120), || launched.exists()).await {
        let _ = child.kill();
        panic!("the agent process never launched its task");
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let (agent, report) = Agent::open(
        config(dir.path().join("work")),
        Arc::new(MemoryFetcher::new()),
    )
    .await
    .unwrap();
    assert!(report.adopted.is_empty(), "{report:?}");
    assert_eq!(report.ended, vec![(fw(FW), "wasm".parse().unwrap())]);
    let master = FakeMaster::new(true);
    let stop = tokio_util::sync::CancellationToken::new();
    master.serve(agent.status_queue().clone(), stop.clone());
    let end = terminal(&master, FW, "wasm").await;
    assert_eq!(end.status.state, TaskState::Failed);
    assert!(
        end.status.message.contains("agent restarted"),
        "{}",
        end.status.message
    );
    assert_eq!(
        states(&master.task_updates(FW, "wasm")),
        vec![TaskState::Running, TaskState::Failed]
    );
    stop.cancel();
}
