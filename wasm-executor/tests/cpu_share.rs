//! CPU shares of Wasm tasks ([`CpuGovernor`]): spinning guests (the `hostile` example's `loop`
//! payload) declared different `millicpus` split the CPU in proportion, and the hard cap holds
//! a lone task to its share.
//!
//! What is measured is CPU time, never wall-clock progress: each task's time as the governor
//! charged it (read from the thread CPU clock around each poll), cross-checked against the CPU
//! time of the whole test process (`getrusage`), over a window of 3 s after a 1 s warm-up. A
//! busy machine gives the tasks less CPU but does not change their ratio, and can only lower a
//! task's use against the wall clock, so the bounds below do not depend on the machine being
//! idle.
//!
//! "Within 20% of 1:9" means: the 0.1-CPU task's fraction of the two tasks' CPU time over the
//! window is within 20% of 0.1, i.e. in [0.08, 0.12].

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use tokio_util::sync::CancellationToken;
use wasmos_wasm_executor::{
    CpuGovernor, CpuMeter, ExecutorPool, LimitMode, LoadedComponent, RuntimeConfig, TaskLimits,
    WasmRuntime,
};

const WARM_UP: Duration = Duration::from_secs(1);
const WINDOW: Duration = Duration::from_secs(3);

struct Rig {
    pool: Arc<ExecutorPool>,
    hostile: Arc<LoadedComponent>,
    _dir: tempfile::TempDir,
}

fn rig(capacity_millicpus: u64, hard_cap: bool) -> Rig {
    let runtime = WasmRuntime::new(RuntimeConfig {
        limit_mode: LimitMode::Fuel,
        pooling: Some(small_pool()),
        ..RuntimeConfig::default()
    })
    .expect("engine");
    let hostile = runtime
        .load(&example_bytes("hostile"))
        .expect("hostile component loads");
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = ExecutorPool::new(runtime, dir.path())
        .with_cpu_governor(Arc::new(CpuGovernor::new(capacity_millicpus, hard_cap)));
    Rig {
        pool: Arc::new(pool),
        hostile,
        _dir: dir,
    }
}

/// A spinning task, running until killed.
struct Spinner {
    meter: CpuMeter,
    kill: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

fn spin(rig: &Rig, executor: &str, millicpus: u64) -> Spinner {
    let mut req = request(
        executor,
        &format!("{executor}-task"),
        "loop",
        TaskLimits {
            timeout: Duration::from_secs(60),
            ..limits()
        },
    );
    req.millicpus = millicpus;
    let meter = req.cpu_meter.clone();
    let kill = req.kill.clone();
    let (pool, hostile) = (rig.pool.clone(), rig.hostile.clone());
    let done = tokio::spawn(async move {
        let r = pool.run_task(&hostile, req).await;
        assert!(r.is_err(), "a spinning guest ended: {r:?}");
    });
    Spinner { meter, kill, done }
}

impl Spinner {
    async fn stop(self) {
        self.kill.cancel();
        self.done.await.expect("task joined");
    }
}

/// CPU time of this whole process (every thread), user plus system.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Waits until every spinner has been charged some CPU, then for the warm-up.
async fn warm_up(spinners: &[&Spinner]) {
    let started = Instant::now();
    while spinners.iter().any(|s| s.meter.used().is_zero()) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a spinning task was never charged any CPU"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(WARM_UP).await;
}

/// Each spinner's CPU time over [`WINDOW`], the wall time the window took, and the process's
/// CPU time over it.
async fn window(spinners: &[&Spinner]) -> (Vec<Duration>, Duration, Duration) {
    let before: Vec<Duration> = spinners.iter().map(|s| s.meter.used()).collect();
    let (wall, proc) = (Instant::now(), process_cpu());
    tokio::time::sleep(WINDOW).await;
    let used = spinners
        .iter()
        .zip(&before)
        .map(|(s, b)| s.meter.used() - *b)
        .collect();
    (used, wall.elapsed(), process_cpu() - proc)
}

/// The governor's accounting agrees with the kernel's: the tasks were charged no more CPU than
/// the process used, and most of it (the rest is the runtime and this test).
fn cross_check(charged: Duration, process: Duration) {
    assert!(
        charged <= process.mul_f64(1.05) + Duration::from_millis(50),
        "tasks charged {charged:?} but the process used only {process:?}"
    );
    assert!(
        charged >= process.mul_f64(0.5),
        "tasks charged {charged:?} of the process's {process:?}: CPU time went uncounted"
    );
}

async fn split_one_to_nine(capacity_millicpus: u64) {
    let rig = rig(capacity_millicpus, false);
    let small = spin(&rig, "small", 100);
    let big = spin(&rig, "big", 900);
    warm_up(&[&small, &big]).await;
    let (used, _, process) = window(&[&small, &big]).await;
    let total = used[0] + used[1];
    let fraction = used[0].as_secs_f64() / total.as_secs_f64();
    eprintln!(
        "small {:?}, big {:?}, fraction {fraction:.3}, process {process:?}",
        used[0], used[1]
    );
    assert!(
        total >= Duration::from_millis(200),
        "the tasks got only {total:?} of CPU in {WINDOW:?}: nothing to compare"
    );
    assert!(
        (0.08..=0.12).contains(&fraction),
        "the 0.1-CPU task got {fraction:.3} of the CPU (small {:?}, big {:?}); want 0.1 +- 20%",
        used[0],
        used[1]
    );
    cross_check(total, process);
    small.stop().await;
    big.stop().await;
}

/// The case: a 1-CPU agent (Wasm capacity 1 CPU) on a machine with two worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_spinning_tasks_of_0_1_and_0_9_cpu_split_a_1_cpu_agent_1_to_9() {
    split_one_to_nine(1000).await;
}

/// The capacity is far above what one thread gives: the proportion still holds when the
/// machine, not the declared capacity, is what limits the tasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_split_holds_when_the_machine_is_the_bottleneck() {
    split_one_to_nine(8000).await;
}

/// With the hard cap, a lone 0.25-CPU task on an otherwise idle 1-CPU agent uses at most 30% of
/// a core (CPU time over the window's wall time: a busy machine only lowers it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hard_cap_holds_a_lone_quarter_cpu_task_to_its_share() {
    let rig = rig(1000, true);
    let task = spin(&rig, "quarter", 250);
    warm_up(&[&task]).await;
    let (used, wall, process) = window(&[&task]).await;
    let share = used[0].as_secs_f64() / wall.as_secs_f64();
    eprintln!("quarter: {:?} in {wall:?} ({share:.3} of a core)", used[0]);
    assert!(used[0] > Duration::from_millis(10), "the task got no CPU");
    assert!(
        share <= 0.30,
        "a 0.25-CPU task under the hard cap used {share:.3} of a core"
    );
    cross_check(used[0], process);
    task.stop().await;
}

/// Without the hard cap, tasks together stay within the agent's capacity: a lone 0.25-CPU task
/// on a 0.5-CPU agent uses at most 60% of a core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_task_without_the_cap_stays_within_the_capacity() {
    let rig = rig(500, false);
    let task = spin(&rig, "quarter", 250);
    warm_up(&[&task]).await;
    let (used, wall, process) = window(&[&task]).await;
    let share = used[0].as_secs_f64() / wall.as_secs_f64();
    eprintln!(
        "quarter uncapped on 0.5: {:?} in {wall:?} ({share:.3})",
        used[0]
    );
    assert!(used[0] > Duration::from_millis(10), "the task got no CPU");
    assert!(
        share <= 0.60,
        "a lone task on a 0.5-CPU agent used {share:.3} of a core"
    );
    cross_check(used[0], process);
    task.stop().await;
}
