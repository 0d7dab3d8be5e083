//! CPU shares of Wasm tasks on the agent: the agent shares its Wasm capacity by each task's
//! declared cpus (`AgentConfig::wasm_cpu`, `wasmos agent --wasm-cpus`), and with the hard cap
//! (`--wasm-cpu-hard-cap`) a lone 0.25-CPU spinning task uses at most 30% of a core: its CPU
//! time as the governor charged it (thread CPU clock around each poll), cross-checked against
//! the CPU time of this whole test process, over 3 s of wall time (a busy machine only lowers
//! it). The split between tasks is tested in `wasm-executor/tests/cpu_share.rs`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use wasmos_agent::{FrameworkContext, MemoryFetcher, WasmCpu};
use wasmos_api::{Resources, TaskState};

/// CPU time of this whole process (every thread), user plus system.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_hard_cap_a_lone_quarter_cpu_task_uses_at_most_30_percent_of_a_core() {
    let dir = tempfile::tempdir().unwrap();
    let fetcher = Arc::new(MemoryFetcher::new());
    let digest = fetcher.add(example_bytes("hostile"));
    let mut c = config(dir.path().to_path_buf());
    c.wasm_cpu = WasmCpu {
        capacity_millicpus: Some(1000),
        hard_cap: true,
    };
    let t = start(c, fetcher).await;
    let ctx = FrameworkContext {
        framework_id: fw("fw-cpu"),
        role: "batch".into(),
        component: Some(digest),
        wasm_budget: Default::default(),
    };
    let mut task = wasm_task("spin", "e", "loop", 64);
    task.resources = Resources::new(0.25, 64, 0);
    t.agent.launch(&ctx, task).await.unwrap();

    let governor = t
        .agent
        .executor_pool()
        .cpu_governor()
        .expect("the agent shares CPU among Wasm tasks")
        .clone();
    assert_eq!(governor.capacity_millicpus(), 1000);
    assert!(governor.hard_cap());
    // The task's declared cpus are its weight.
    assert!(
        wait_until(Duration::from_secs(30), || governor.runnable_millicpus()
            == 250)
        .await,
        "the spinning task never counted 250 millicpus (now {})",
        governor.runnable_millicpus()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (wall, cpu, charged) = (Instant::now(), process_cpu(), governor.charged());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (charged, process) = (governor.charged() - charged, process_cpu() - cpu);
    let share = charged.as_secs_f64() / wall.elapsed().as_secs_f64();
    eprintln!("task charged {charged:?} ({share:.3} of a core), process {process:?}");
    assert!(
        share <= 0.30,
        "a 0.25-CPU task under the hard cap used {share:.3} of a core"
    );
    // The governor's accounting against the kernel's: no more than the process used.
    assert!(
        charged <= process.mul_f64(1.05) + Duration::from_millis(50),
        "the task was charged {charged:?} but the process used only {process:?}"
    );
    assert!(
        charged >= process.mul_f64(0.5),
        "the task was charged {charged:?} of the process's {process:?}: CPU went uncounted"
    );

    assert!(
        t.agent
            .kill(&fw("fw-cpu"), &wasmos_api::TaskId::new("spin").unwrap())
    );
    let end = terminal(&t.master, "fw-cpu", "spin").await;
    assert_eq!(end.status.state, TaskState::Killed);
    assert!(
        wait_until(Duration::from_secs(10), || governor.runnable_millicpus()
            == 0)
        .await,
        "a killed task still holds its share"
    );
}

#[tokio::test]
async fn by_default_wasm_tasks_share_every_cpu_without_a_hard_cap() {
    let dir = tempfile::tempdir().unwrap();
    let t = start(
        config(dir.path().to_path_buf()),
        Arc::new(MemoryFetcher::new()),
    )
    .await;
    let governor = t.agent.executor_pool().cpu_governor().expect("a governor");
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    assert_eq!(governor.capacity_millicpus(), cpus * 1000);
    assert!(!governor.hard_cap());
}
