//! A work dir that held an agent's state never silently starts as a new agent: an agent
//! process with an id and a running native task is killed with SIGKILL; restarted with its
//! `agent.redb` truncated to 0 bytes, or removed, it refuses, naming the file and the way out,
//! and leaves the task alone; started fresh (store and marker removed on purpose) it first
//! kills the native task the old agent left running, before it could register.
//!
//! The killed agent is this test binary run again as a child (see `agent_process`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use wasmos_agent::launcher::process_alive;
use wasmos_agent::{Agent, AgentError, FrameworkContext, MemoryFetcher};
use wasmos_api::{AgentId, Resources, TaskState};

const CHILD_ENV: &str = "WASMOS_AGENT_TEST_LOST_STORE_DIR";
const FW: &str = "fw-lost-store";

/// The agent process that gets killed: takes an id, launches a native task that writes its
/// pid, says so, and waits to die.
#[test]
#[ignore = "helper: run as a child process by the lost-store test, which SIGKILLs it"]
fn agent_process() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let (agent, _) = Agent::open(config(dir.join("work")), Arc::new(MemoryFetcher::new()))
            .await
            .unwrap();
        agent
            .set_agent_id(AgentId::new("agent-old").unwrap())
            .await
            .unwrap();
        let native = FrameworkContext {
            framework_id: fw(FW),
            role: "batch".into(),
            component: None,
            wasm_budget: Default::default(),
        };
        let task = command_task(
            "orphan",
            "echo $$ > task.pid.tmp; mv task.pid.tmp task.pid; exec sleep 600",
            Resources::new(0.1, 32, 0),
        );
        assert_eq!(
            agent.launch(&native, task).await.unwrap(),
            TaskState::Running
        );
        std::fs::write(dir.join("launched"), "").unwrap();
        wait_to_be_killed().await;
    });
}

async fn open(work: &Path) -> Result<(Agent, wasmos_agent::RecoveryReport), AgentError> {
    Agent::open(config(work.to_path_buf()), Arc::new(MemoryFetcher::new())).await
}

fn refusal(r: Result<(Agent, wasmos_agent::RecoveryReport), AgentError>) -> String {
    match r {
        Err(e @ AgentError::StoreLost { .. }) => e.to_string(),
        Err(other) => panic!("expected a lost-store refusal, got {other}"),
        Ok(_) => panic!("an agent whose store was lost started as a new agent"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_store_was_lost_refuses_and_a_fresh_one_kills_the_old_tasks() {
    require_cgroups!();
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_agent_process(CHILD_ENV, dir.path());
    let work = dir.path().join("work");
    let pid_file = work
        .join("sandboxes")
        .join(FW)
        .join("orphan")
        .join("task.pid");
    let started = wait_until(Duration::from_secs(120), || {
        dir.path().join("launched").exists() && pid_file.exists()
    })
    .await;
    if !started {
        let _ = child.kill();
        panic!("the agent process never launched its task");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The task's host pid, from its cgroup (in its own PID namespace, `$$` is not it): the
    // `sleep`, beside its namespace's init.
    let cgroup = wasmos_agent::cgroups::CgroupHierarchy::detect("wasmos-test")
        .unwrap()
        .existing(FW, "orphan")
        .expect("the task's cgroup");
    let pid: i32 = cgroup
        .pids()
        .into_iter()
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep")
        })
        .expect("the task's sleep runs");
    assert!(process_alive(pid), "the task outlives its agent");
    let store = work.join("agent.redb");

    std::fs::File::create(&store).unwrap(); // truncated to 0 bytes
    let msg = refusal(open(&work).await);
    eprintln!("{msg}");
    for want in [
        store.to_str().unwrap(),
        "is empty (0 bytes)",
        "agent-old",
        "refuses to start",
        "restore",
        "agent.marker",
    ] {
        assert!(msg.contains(want), "no {want:?} in: {msg}");
    }
    assert_eq!(
        std::fs::metadata(&store).unwrap().len(),
        0,
        "redb rewrote it"
    );

    std::fs::remove_file(&store).unwrap();
    let msg = refusal(open(&work).await);
    assert!(msg.contains("is missing"), "{msg}");
    assert!(process_alive(pid), "a refused agent killed the task");

    // Started fresh on purpose: the old agent's task is killed before the agent could
    // register (which happens only after `open` returns).
    std::fs::remove_file(work.join("agent.marker")).unwrap();
    let (agent, report) = open(&work).await.unwrap();
    assert!(!process_alive(pid), "the old agent's task {pid} still runs");
    assert_eq!(
        report.killed_unrecorded,
        vec![(FW.to_string(), "orphan".to_string())],
        "{report:?}"
    );
    assert!(agent.agent_id().is_none());
    assert!(agent.running_tasks().is_empty());
    agent.stop();
}
