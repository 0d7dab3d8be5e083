//! Shared helpers for the executor's integration tests: locating the example components and
//! running a task next to a well-behaved bystander.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmos_api::{ExecutorId, FrameworkId, TaskId};
use wasmos_wasm_executor::DriverHost;
use wasmos_wasm_executor::bindings::types::{Filters, LogLevel, TaskInfo};
use wasmos_wasm_executor::{
    ExecutorPool, LimitMode, LoadedComponent, PoolingConfig, RuntimeConfig, TaskError, TaskLimits,
    TaskOutcome, TaskRequest, WasmRuntime,
};

/// A component built by `scripts/build-examples.sh`.
pub fn example(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples-wasm/target/wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/build-examples.sh (scripts/test.sh does) before the tests",
        p.display()
    );
    p
}

pub fn example_bytes(name: &str) -> Vec<u8> {
    std::fs::read(example(name)).expect("example component is readable")
}

/// A small pool so that a leaked slot shows up quickly.
pub fn small_pool() -> PoolingConfig {
    PoolingConfig {
        total_component_instances: 8,
        total_memories: 32,
        total_tables: 64,
        max_memory_bytes: 1 << 30,
    }
}

pub struct Harness {
    pub pool: ExecutorPool,
    pub hostile: Arc<LoadedComponent>,
    pub dir: tempfile::TempDir,
}

pub fn harness(mode: LimitMode) -> Harness {
    let runtime = WasmRuntime::new(RuntimeConfig {
        limit_mode: mode,
        pooling: Some(small_pool()),
        ..RuntimeConfig::default()
    })
    .expect("engine");
    let hostile = runtime
        .load(&example_bytes("hostile"))
        .expect("hostile component loads");
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = ExecutorPool::new(runtime, dir.path());
    Harness { pool, hostile, dir }
}

pub fn fw() -> FrameworkId {
    FrameworkId::new("fw").unwrap()
}

pub fn request(executor: &str, task: &str, payload: &str, limits: TaskLimits) -> TaskRequest {
    let mut r = TaskRequest::new(
        fw(),
        ExecutorId::new(executor).unwrap(),
        TaskId::new(task).unwrap(),
        payload.as_bytes().to_vec(),
    );
    r.limits = limits;
    r
}

pub fn limits() -> TaskLimits {
    TaskLimits {
        timeout: Duration::from_secs(20),
        memory_bytes: 64 << 20,
        ..TaskLimits::default()
    }
}

impl Harness {
    pub async fn run(
        &self,
        executor: &str,
        payload: &str,
        limits: TaskLimits,
    ) -> Result<TaskOutcome, TaskError> {
        self.pool
            .run_task(
                &self.hostile,
                request(executor, &format!("{executor}-task"), payload, limits),
            )
            .await
    }

    /// Runs `payload` in its own executor while a well-behaved task runs in another, and checks
    /// that the bystander finished with the right answer.
    pub async fn run_beside_bystander(
        &self,
        payload: &str,
        limits: TaskLimits,
    ) -> Result<TaskOutcome, TaskError> {
        let hostile = self.run("hostile", payload, limits);
        let bystander = async {
            // Start after the hostile task is under way.
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.run("bystander", "echo:still here", self::limits())
                .await
        };
        let (hostile, bystander) = tokio::join!(hostile, bystander);
        let bystander = bystander.expect("the well-behaved task finishes");
        assert_eq!(bystander.output, b"still here");
        hostile
    }
}

/// Everything a hosted scheduler asked of its driver: a one-process stand-in for the master.
#[derive(Default)]
pub struct Calls {
    pub launches: Vec<(Vec<String>, Vec<TaskInfo>)>,
    pub declined: Vec<String>,
    pub revives: usize,
    pub suppresses: usize,
    pub reconciled: Vec<Vec<String>>,
    pub timers: Vec<(u64, u64)>,
    pub logs: Vec<String>,
    pub finished: Option<Result<String, String>>,
    pub state: HashMap<String, Vec<u8>>,
}

pub struct Recorder(pub Arc<Mutex<Calls>>);

impl DriverHost for Recorder {
    fn launch(&mut self, offer_ids: Vec<String>, tasks: Vec<TaskInfo>) -> Result<(), String> {
        self.0.lock().unwrap().launches.push((offer_ids, tasks));
        Ok(())
    }
    fn decline(&mut self, offer_ids: Vec<String>, _filters: Filters) {
        self.0.lock().unwrap().declined.extend(offer_ids);
    }
    fn kill(&mut self, _task_id: String) {}
    fn revive(&mut self) {
        self.0.lock().unwrap().revives += 1;
    }
    fn suppress(&mut self) {
        self.0.lock().unwrap().suppresses += 1;
    }
    fn reconcile(&mut self, task_ids: Vec<String>) {
        self.0.lock().unwrap().reconciled.push(task_ids);
    }
    fn state_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.0.lock().unwrap().state.get(&key).cloned()
    }
    fn state_put(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        self.0.lock().unwrap().state.insert(key, value);
        Ok(())
    }
    fn finish(&mut self, outcome: Result<String, String>) {
        self.0.lock().unwrap().finished = Some(outcome);
    }
    fn log(&mut self, _level: LogLevel, message: String) {
        self.0.lock().unwrap().logs.push(message);
    }
    fn set_timer(&mut self, timer_id: u64, delay_ms: u64) -> Result<(), String> {
        self.0.lock().unwrap().timers.push((timer_id, delay_ms));
        Ok(())
    }
}
