//! Shared helpers for the agent's integration tests: a fake master that records status updates
//! and acknowledges them (and can be taken down), an agent in a temporary work directory,
//! task builders, and the cgroup check that decides whether a native test can run here.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmos_agent::native::NativeConfig;
use wasmos_agent::{
    Agent, AgentConfig, ComponentFetcher, QueuedUpdate, RetryPolicy, StatusQueue, TransportError,
    UpdateTransport,
};
use wasmos_api::{
    AgentId, ExecutorId, FrameworkId, Resources, TaskId, TaskInfo, TaskKind, TaskState,
};
use wasmos_wasm_executor::{PoolingConfig, RuntimeConfig};

/// A master stand-in: records every update it receives and acknowledges it, unless it is down.
pub struct FakeMaster {
    up: AtomicBool,
    received: Mutex<Vec<QueuedUpdate>>,
    queue: OnceLock<Arc<StatusQueue>>,
}

impl FakeMaster {
    pub fn new(up: bool) -> Arc<Self> {
        Arc::new(FakeMaster {
            up: AtomicBool::new(up),
            received: Mutex::new(Vec::new()),
            queue: OnceLock::new(),
        })
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
    }

    /// Every update received, in arrival order (resends included).
    pub fn received(&self) -> Vec<QueuedUpdate> {
        self.received.lock().unwrap().clone()
    }

    /// Received updates of one task, resends removed, in arrival order.
    pub fn task_updates(&self, fw: &str, task: &str) -> Vec<QueuedUpdate> {
        let mut seen = std::collections::HashSet::new();
        self.received()
            .into_iter()
            .filter(|u| u.framework_id.as_str() == fw && u.status.task_id.as_str() == task)
            .filter(|u| seen.insert(u.status.uuid.clone()))
            .collect()
    }

    /// The terminal update of a task, if it arrived.
    pub fn terminal(&self, fw: &str, task: &str) -> Option<QueuedUpdate> {
        self.task_updates(fw, task)
            .into_iter()
            .find(|u| u.status.state.is_terminal())
    }

    /// Runs `queue` over this master until `stop`.
    pub fn serve(self: &Arc<Self>, queue: Arc<StatusQueue>, stop: CancellationToken) {
        let _ = self.queue.set(queue.clone());
        tokio::spawn(queue.run(self.clone(), stop));
    }
}

#[async_trait::async_trait]
impl UpdateTransport for FakeMaster {
    async fn send(&self, updates: Vec<QueuedUpdate>) -> Result<(), TransportError> {
        if !self.up.load(Ordering::SeqCst) {
            return Err(TransportError("fake master is down".into()));
        }
        for u in updates {
            self.received.lock().unwrap().push(u.clone());
            if let (Some(q), Some(uuid)) = (self.queue.get(), u.status.uuid.as_deref()) {
                q.acknowledge(&u.framework_id, &u.status.task_id, uuid);
            }
        }
        Ok(())
    }
}

/// Polls `cond` every 20 ms until it holds or `limit` passes; returns whether it held.
pub async fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
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

/// Waits (up to 60 s, generous for a busy machine) for a task's terminal update.
pub async fn terminal(master: &FakeMaster, fw: &str, task: &str) -> QueuedUpdate {
    assert!(
        wait_until(Duration::from_secs(60), || master
            .terminal(fw, task)
            .is_some())
        .await,
        "task {fw}/{task} never reported a terminal state; got {:?}",
        master.task_updates(fw, task)
    );
    master.terminal(fw, task).unwrap()
}

/// A small pool so that many test agents fit in one process's address space.
pub fn small_pool() -> PoolingConfig {
    PoolingConfig {
        total_component_instances: 8,
        total_memories: 32,
        total_tables: 64,
        max_memory_bytes: 1 << 30,
    }
}

/// Agent settings for tests: fast resends, a short kill grace, the shared test cgroup.
pub fn config(work_dir: PathBuf) -> AgentConfig {
    let mut c = AgentConfig::new(work_dir);
    c.native = NativeConfig {
        cgroup_name: "wasmos-test".into(),
        kill_grace: Duration::from_millis(500),
        ..NativeConfig::default()
    };
    c.runtime = RuntimeConfig {
        pooling: Some(small_pool()),
        ..RuntimeConfig::default()
    };
    c.retry = RetryPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(500),
    };
    c
}

pub struct TestAgent {
    pub agent: Agent,
    pub master: Arc<FakeMaster>,
    pub stop: CancellationToken,
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        self.stop.cancel();
        self.agent.stop();
    }
}

/// Opens an agent with `config` and serves its queue with a fake master that is up.
pub async fn start(config: AgentConfig, fetcher: Arc<dyn ComponentFetcher>) -> TestAgent {
    let (agent, _report) = Agent::open(config, fetcher).await.expect("agent opens");
    let master = FakeMaster::new(true);
    let stop = CancellationToken::new();
    master.serve(agent.status_queue().clone(), stop.clone());
    TestAgent {
        agent,
        master,
        stop,
    }
}

pub fn fw(name: &str) -> FrameworkId {
    FrameworkId::new(name).unwrap()
}

pub fn command_task(id: &str, script: &str, res: Resources) -> TaskInfo {
    TaskInfo {
        task_id: TaskId::new(id).unwrap(),
        name: id.into(),
        agent_id: AgentId::new("agent-1").unwrap(),
        resources: res,
        kind: TaskKind::Command {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![],
        },
    }
}

pub fn wasm_task(id: &str, executor: &str, payload: &str, mem_mb: u64) -> TaskInfo {
    TaskInfo {
        task_id: TaskId::new(id).unwrap(),
        name: id.into(),
        agent_id: AgentId::new("agent-1").unwrap(),
        resources: Resources::new(0.1, mem_mb, 0),
        kind: TaskKind::Wasm {
            executor_id: ExecutorId::new(executor).unwrap(),
            payload: payload.as_bytes().to_vec(),
            budget: Default::default(),
        },
    }
}

/// Why native tests cannot run here, or `None` when they can. A test that skips prints it.
pub fn cgroups_unavailable() -> Option<String> {
    wasmos_agent::cgroups::CgroupHierarchy::detect("wasmos-test")
        .err()
        .map(|e| e.to_string())
}

/// What a native test needs, as the skip log says it.
pub const NEEDS_CGROUPS: &str = "root and cgroups (cpu, memory, pids)";

/// Skips (returns from) the calling test when cgroups are unusable, visibly: see
/// `wasmos_test_skip` (under `WASMOS_REQUIRE_ROOT=1` the test fails instead).
#[macro_export]
macro_rules! require_cgroups {
    () => {
        wasmos_test_skip::require!(common::NEEDS_CGROUPS, common::cgroups_unavailable())
    };
}

/// A component built by `scripts/build-examples.sh`.
pub fn example_bytes(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples-wasm/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    std::fs::read(&p).unwrap_or_else(|e| {
        panic!(
            "{} is missing ({e}): run scripts/build-examples.sh (scripts/test.sh does) before the tests",
            p.display()
        )
    })
}

pub fn states(updates: &[QueuedUpdate]) -> Vec<TaskState> {
    updates.iter().map(|u| u.status.state).collect()
}

/// Starts this test binary again as a child process that runs only its ignored test
/// `agent_process`, with `env` set to `dir`: the half of a restart test that plays the agent
/// the test SIGKILLs. Its stderr is passed through.
pub fn spawn_agent_process(env: &str, dir: &Path) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "agent_process",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(env, dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap()
}

/// What a child agent process does once it is set up: wait to be SIGKILLed by its test. The
/// 10 min bound only ends a child whose test died without killing it.
pub async fn wait_to_be_killed() {
    tokio::time::sleep(Duration::from_secs(600)).await;
}
