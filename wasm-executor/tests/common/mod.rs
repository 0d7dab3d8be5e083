//! Shared helpers for the executor's integration tests: locating the example components and
//! running a task next to a well-behaved bystander.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmos_api::{ExecutorId, FrameworkId, TaskId};
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
