//! Wasm tasks through the agent: components fetched once by digest and verified, executors of
//! two frameworks side by side with one misbehaving, kill, and framework teardown.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use wasmos_agent::{ComponentFetcher, FetchError, FrameworkContext, MemoryFetcher};
use wasmos_api::TaskState;
use wasmos_wasm_executor::ComponentDigest;

/// Counts fetches, to show each component is fetched once.
struct Counting {
    inner: MemoryFetcher,
    fetches: AtomicUsize,
}

#[async_trait::async_trait]
impl ComponentFetcher for Counting {
    async fn fetch(&self, digest: &ComponentDigest) -> Result<Vec<u8>, FetchError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.inner.fetch(digest).await
    }
}

fn ctx(name: &str, component: ComponentDigest) -> FrameworkContext {
    FrameworkContext {
        framework_id: fw(name),
        role: "batch".into(),
        component: Some(component),
        wasm_budget: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_whose_digest_does_not_match_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Arc::new(MemoryFetcher::new());
    let claimed = ComponentDigest::of(&example_bytes("hostile"));
    // The "master" serves other bytes under the hostile component's digest.
    fetcher.insert(claimed, example_bytes("pi"));
    let t = start(config(dir.path().to_path_buf()), fetcher).await;
    let state = t
        .agent
        .launch(
            &ctx("fw-corrupt", claimed),
            wasm_task("t", "e", "echo:hi", 64),
        )
        .await
        .unwrap();
    assert_eq!(state, TaskState::Failed);
    let end = terminal(&t.master, "fw-corrupt", "t").await;
    assert_eq!(end.status.state, TaskState::Failed);
    let msg = &end.status.message;
    assert!(msg.contains("component refused"), "{msg}");
    assert!(msg.contains(&claimed.to_hex()), "{msg}");
    assert!(
        msg.contains(&ComponentDigest::of(&example_bytes("pi")).to_hex()),
        "{msg}"
    );
    assert_eq!(
        t.agent.executor_pool().runtime().compile_count(),
        0,
        "refused bytes were compiled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_frameworks_side_by_side_one_memory_bomb_does_not_disturb_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Arc::new(Counting {
        inner: MemoryFetcher::new(),
        fetches: AtomicUsize::new(0),
    });
    let digest = fetcher.inner.add(example_bytes("hostile"));
    let t = start(config(dir.path().to_path_buf()), fetcher.clone()).await;

    // The bomber's executor grows until its 64 MiB cap; meanwhile the calm framework's executor
    // answers tasks.
    let bomber = ctx("bomber", digest);
    let bomb = t
        .agent
        .launch(&bomber, wasm_task("bomb", "e", "membomb", 64));
    let calm = async {
        let mut states = Vec::new();
        for i in 0..3 {
            let task = wasm_task(&format!("calm-{i}"), "e", &format!("echo:calm {i}"), 64);
            states.push(t.agent.launch(&ctx("calm", digest), task).await.unwrap());
        }
        states
    };
    let (bomb, calm) = tokio::join!(bomb, calm);
    assert_eq!(bomb.unwrap(), TaskState::Running);
    assert_eq!(calm, vec![TaskState::Running; 3]);

    let end = terminal(&t.master, "bomber", "bomb").await;
    assert_eq!(end.status.state, TaskState::Failed);
    assert!(
        end.status
            .message
            .contains("exceeded its memory limit of 64 MiB"),
        "{}",
        end.status.message
    );
    for i in 0..3 {
        let end = terminal(&t.master, "calm", &format!("calm-{i}")).await;
        assert_eq!(end.status.state, TaskState::Finished, "{:?}", end.status);
        assert_eq!(
            end.status.data.as_deref(),
            Some(format!("calm {i}").as_bytes())
        );
    }
    // After the bomb, the calm framework still works, and the component was fetched once.
    t.agent
        .launch(
            &ctx("calm", digest),
            wasm_task("after", "e", "echo:after", 64),
        )
        .await
        .unwrap();
    let end = terminal(&t.master, "calm", "after").await;
    assert_eq!(end.status.data.as_deref(), Some(&b"after"[..]));
    assert_eq!(fetcher.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_interrupts_a_running_wasm_task_and_teardown_drops_instances() {
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Arc::new(MemoryFetcher::new());
    let digest = fetcher.add(example_bytes("hostile"));
    let t = start(config(dir.path().to_path_buf()), fetcher).await;
    let c = ctx("fw-kill", digest);
    t.agent
        .launch(&c, wasm_task("warm", "keep", "echo:warm", 64))
        .await
        .unwrap();
    terminal(&t.master, "fw-kill", "warm").await;
    t.agent
        .launch(&c, wasm_task("spin", "spinner", "loop", 64))
        .await
        .unwrap();
    assert!(t.agent.kill(&fw("fw-kill"), &"spin".parse().unwrap()));
    let end = terminal(&t.master, "fw-kill", "spin").await;
    assert_eq!(end.status.state, TaskState::Killed, "{:?}", end.status);

    // The warm instance of executor "keep" is still there until the framework is torn down.
    assert_eq!(t.agent.executor_pool().live_instances(), 1);
    t.agent.shutdown_framework(&fw("fw-kill")).await;
    assert_eq!(t.agent.executor_pool().live_instances(), 0);
    assert!(!dir.path().join("executors").join("fw-kill").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_becomes_a_running_update() {
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Arc::new(MemoryFetcher::new());
    let digest = fetcher.add(example_bytes("hostile"));
    let t = start(config(dir.path().to_path_buf()), fetcher).await;
    t.agent
        .launch(
            &ctx("fw-progress", digest),
            wasm_task("p", "e", "progress:half way", 64),
        )
        .await
        .unwrap();
    terminal(&t.master, "fw-progress", "p").await;
    let got = t.master.task_updates("fw-progress", "p");
    assert!(
        wait_until(Duration::from_secs(10), || {
            t.master
                .task_updates("fw-progress", "p")
                .iter()
                .any(|u| u.status.message == "half way")
        })
        .await,
        "{got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_messages_are_cut_to_the_bound_with_a_marker() {
    use wasmos_api::limits::{MAX_STATUS_MESSAGE_BYTES, STATUS_MESSAGE_CUT_MARKER};
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Arc::new(MemoryFetcher::new());
    let digest = fetcher.add(example_bytes("hostile"));
    let t = start(config(dir.path().to_path_buf()), fetcher).await;
    // A progress message of 3 times the bound, and a failure whose reason quotes a payload of
    // 100 times the bound (`unknown hostile payload "..."`).
    let long = format!("progress:{}", "p".repeat(3 * MAX_STATUS_MESSAGE_BYTES));
    let huge = "x".repeat(100 * MAX_STATUS_MESSAGE_BYTES);
    let c = ctx("fw-long", digest);
    t.agent
        .launch(&c, wasm_task("p", "e1", &long, 64))
        .await
        .unwrap();
    t.agent
        .launch(&c, wasm_task("f", "e2", &huge, 64))
        .await
        .unwrap();
    terminal(&t.master, "fw-long", "p").await;
    terminal(&t.master, "fw-long", "f").await;
    let cut = |task: &str| {
        t.master
            .task_updates("fw-long", task)
            .into_iter()
            .map(|u| u.status.message)
            .find(|m| m.len() > 100)
    };
    for task in ["p", "f"] {
        let m = cut(task).unwrap_or_else(|| panic!("task {task} has a long message"));
        assert!(
            m.len() <= MAX_STATUS_MESSAGE_BYTES,
            "{task}: {} bytes",
            m.len()
        );
        assert!(m.ends_with(STATUS_MESSAGE_CUT_MARKER), "{task}: {m}");
    }
}
