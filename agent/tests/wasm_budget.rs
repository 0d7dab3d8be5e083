//! The deadline and fuel of Wasm tasks on the agent: a framework's default and a task's own
//! replace the agent's, each stop names the limit that fired and where it came from, and a
//! task asking for more than the agent's operator maximum is refused with that maximum named.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use wasmos_agent::{FrameworkContext, MemoryFetcher};
use wasmos_api::{TaskInfo, TaskKind, TaskState, WasmBudget};
use wasmos_wasm_executor::ComponentDigest;

fn ctx(name: &str, component: ComponentDigest, budget: WasmBudget) -> FrameworkContext {
    FrameworkContext {
        framework_id: fw(name),
        role: "batch".into(),
        component: Some(component),
        wasm_budget: budget,
    }
}

fn with_budget(mut t: TaskInfo, b: WasmBudget) -> TaskInfo {
    if let TaskKind::Wasm { budget, .. } = &mut t.kind {
        *budget = b;
    }
    t
}

async fn hostile_agent(dir: &std::path::Path) -> (TestAgent, ComponentDigest) {
    let fetcher = Arc::new(MemoryFetcher::new());
    let digest = fetcher.add(example_bytes("hostile"));
    (start(config(dir.to_path_buf()), fetcher).await, digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spinning_task_is_stopped_at_its_frameworks_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (t, digest) = hostile_agent(dir.path()).await;
    let framework = WasmBudget {
        timeout: Some(Duration::from_secs(1)),
        fuel: None,
    };
    t.agent
        .launch(
            &ctx("fw-deadline", digest, framework),
            wasm_task("spin", "e", "loop", 64),
        )
        .await
        .unwrap();
    let end = terminal(&t.master, "fw-deadline", "spin").await;
    assert_eq!(end.status.state, TaskState::Failed);
    let msg = &end.status.message;
    assert!(msg.contains("deadline of 1 s"), "{msg}");
    assert!(
        msg.contains("its framework's FrameworkInfo.wasm_task_timeout_seconds"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_own_fuel_budget_stops_it_before_the_frameworks_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (t, digest) = hostile_agent(dir.path()).await;
    // The framework's deadline (an hour) would let it spin; the task's own budget does not.
    let framework = WasmBudget {
        timeout: Some(Duration::from_secs(3600)),
        fuel: Some(1_000_000_000_000),
    };
    let task = with_budget(
        wasm_task("spin", "e", "loop", 64),
        WasmBudget {
            timeout: None,
            fuel: Some(10_000_000),
        },
    );
    t.agent
        .launch(&ctx("fw-fuel", digest, framework), task)
        .await
        .unwrap();
    let end = terminal(&t.master, "fw-fuel", "spin").await;
    assert_eq!(end.status.state, TaskState::Failed);
    let msg = &end.status.message;
    assert!(
        msg.contains("ran out of fuel (budget 10000000 units"),
        "{msg}"
    );
    assert!(msg.contains("the task's WasmTask.fuel"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_asking_above_the_agents_maximum_is_refused_with_the_maximum_named() {
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Arc::new(MemoryFetcher::new());
    let digest = fetcher.add(example_bytes("hostile"));
    let mut c = config(dir.path().to_path_buf());
    c.max_wasm_task_timeout = Duration::from_secs(100);
    c.max_wasm_task_fuel = 1_000_000_000;
    let t = start(c, fetcher).await;
    let none = WasmBudget::default();
    let cases = [
        // At the maxima: runs.
        (
            "at-max",
            none,
            WasmBudget {
                timeout: Some(Duration::from_secs(100)),
                fuel: Some(1_000_000_000),
            },
            None,
        ),
        // One past, from the task.
        (
            "timeout-past",
            none,
            WasmBudget {
                timeout: Some(Duration::from_millis(100_001)),
                fuel: None,
            },
            Some(("maximum is 100 s", "--max-wasm-task-timeout")),
        ),
        (
            "fuel-past",
            none,
            WasmBudget {
                timeout: None,
                fuel: Some(1_000_000_001),
            },
            Some(("maximum is 1000000000", "--max-wasm-task-fuel")),
        ),
        // Far past, from the framework's default.
        (
            "framework-far-past",
            WasmBudget {
                timeout: Some(Duration::from_secs(7 * 24 * 3600)),
                fuel: None,
            },
            none,
            Some((
                "its framework's FrameworkInfo.wasm_task_timeout_seconds",
                "--max-wasm-task-timeout",
            )),
        ),
    ];
    for (id, framework, task, refused) in cases {
        let fw_name = format!("fw-{id}");
        t.agent
            .launch(
                &ctx(&fw_name, digest, framework),
                with_budget(wasm_task(id, "e", "echo:hi", 64), task),
            )
            .await
            .unwrap();
        let end = terminal(&t.master, &fw_name, id).await;
        let msg = &end.status.message;
        match refused {
            None => assert_eq!(end.status.state, TaskState::Finished, "{id}: {msg}"),
            Some((max, flag)) => {
                assert_eq!(end.status.state, TaskState::Error, "{id}: {msg}");
                assert!(msg.contains(max), "{id}: {msg}");
                assert!(msg.contains(flag), "{id}: {msg}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agents_default_deadline_is_cut_to_its_maximum() {
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Arc::new(MemoryFetcher::new());
    let digest = fetcher.add(example_bytes("hostile"));
    let mut c = config(dir.path().to_path_buf());
    // An operator lowering the maximum below the 1 h default lowers the default with it.
    c.max_wasm_task_timeout = Duration::from_secs(1);
    let t = start(c, fetcher).await;
    t.agent
        .launch(
            &ctx("fw-default", digest, WasmBudget::default()),
            wasm_task("spin", "e", "loop", 64),
        )
        .await
        .unwrap();
    let end = terminal(&t.master, "fw-default", "spin").await;
    assert_eq!(end.status.state, TaskState::Failed);
    let msg = &end.status.message;
    assert!(msg.contains("deadline of 1 s"), "{msg}");
    assert!(msg.contains("this agent's default"), "{msg}");
}
