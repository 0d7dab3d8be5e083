//! Running tasks: results, instance reuse, parallelism, kills, progress events, and `pi`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use wasmos_wasm_executor::{
    ExecutorEvent, LimitMode, QueueBounds, TaskError, TaskLimits, event_queue,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_executor_samples_points() {
    let h = harness(LimitMode::Fuel);
    let pi = h.pool.runtime().load(&example_bytes("pi")).unwrap();
    let out = h
        .pool
        .run_task(&pi, request("pi", "t1", "200000 7", limits()))
        .await
        .expect("pi task");
    let text = String::from_utf8(out.output).unwrap();
    let mut parts = text.split_whitespace().map(|p| p.parse::<u64>().unwrap());
    let (inside, total) = (parts.next().unwrap(), parts.next().unwrap());
    assert_eq!(total, 200_000);
    let estimate = 4.0 * inside as f64 / total as f64;
    assert!(
        (estimate - std::f64::consts::PI).abs() < 0.05,
        "estimate {estimate}"
    );
    assert!(out.fuel_consumed.unwrap() > 200_000, "fuel is metered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_with_the_same_executor_id_share_memory() {
    let h = harness(LimitMode::Fuel);
    let first = h.run("counter", "count", limits()).await.unwrap();
    let second = h.run("counter", "count", limits()).await.unwrap();
    let other = h.run("other", "count", limits()).await.unwrap();
    assert_eq!(
        (first.output.as_slice(), first.reused_instance),
        (&b"1"[..], false)
    );
    assert_eq!(
        (second.output.as_slice(), second.reused_instance),
        (&b"2"[..], true)
    );
    assert_eq!(
        other.output, b"1",
        "another executor id gets its own instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_error_keeps_the_instance_but_a_trap_discards_it() {
    let h = harness(LimitMode::Fuel);
    h.run("e", "count", limits()).await.unwrap();
    let err = h.run("e", "read:/nope", limits()).await.unwrap_err();
    assert!(matches!(err, TaskError::Guest(_)), "{err:?}");
    assert_eq!(h.run("e", "count", limits()).await.unwrap().output, b"2");
    h.run("e", "panic", limits()).await.unwrap_err();
    let fresh = h.run("e", "count", limits()).await.unwrap();
    assert_eq!(
        fresh.output, b"1",
        "a trapped instance is replaced by a fresh one"
    );
    assert!(!fresh.reused_instance);
}

#[tokio::test(flavor = "current_thread")]
async fn a_busy_guest_does_not_block_the_runtime() {
    // One runtime thread: the looping guest must yield for the other task to make progress.
    let h = harness(LimitMode::Fuel);
    let busy = async {
        let r = h
            .run(
                "busy",
                "loop",
                TaskLimits {
                    timeout: Duration::from_secs(3),
                    ..limits()
                },
            )
            .await;
        (Instant::now(), r)
    };
    let quick = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = h.run("quick", "echo:done", limits()).await;
        (Instant::now(), r)
    };
    let ((busy_end, busy), (quick_end, quick)) = tokio::join!(busy, quick);
    assert_eq!(quick.unwrap().output, b"done");
    assert!(matches!(busy.unwrap_err(), TaskError::Deadline(_)));
    assert!(
        quick_end < busy_end,
        "the quick task finished while the busy one was still looping"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_interrupts_a_running_task() {
    let h = harness(LimitMode::Fuel);
    let mut req = request(
        "k",
        "k1",
        "loop",
        TaskLimits {
            timeout: Duration::from_secs(30),
            ..limits()
        },
    );
    let kill = req.kill.clone();
    req.limits.fuel = None;
    let task = h.pool.run_task(&h.hostile, req);
    let killer = async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        kill.cancel();
        Instant::now()
    };
    let ((result, ended), killed_at) = tokio::join!(
        async {
            let r = task.await;
            (r, Instant::now())
        },
        killer
    );
    assert!(matches!(result, Err(TaskError::Killed)), "{result:?}");
    // The guest loops without end (30 s deadline, no fuel limit): only the kill stops it,
    // within 2 s even on a busy machine.
    let after_kill = ended.saturating_duration_since(killed_at);
    assert!(
        after_kill < Duration::from_secs(2),
        "the task ended {} ms after its kill",
        after_kill.as_millis()
    );
    assert_eq!(h.pool.live_instances(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_and_messages_reach_the_agent() {
    let h = harness(LimitMode::Fuel);
    let (tx, mut rx) = event_queue(QueueBounds::default());
    let mut req = request("p", "p1", "progress:half way", limits());
    req.events = Some(tx);
    h.pool.run_task(&h.hostile, req).await.unwrap();
    assert_eq!(
        rx.recv().await.map(|(ev, _permit)| ev),
        Some(ExecutorEvent::Progress {
            task_id: "p1".into(),
            message: "half way".into()
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_a_framework_drops_its_instances() {
    let h = harness(LimitMode::Fuel);
    h.run("a", "count", limits()).await.unwrap();
    h.run("b", "count", limits()).await.unwrap();
    assert_eq!(h.pool.live_instances(), 2);
    assert_eq!(h.pool.shutdown_framework(&fw()).await, 2);
    assert_eq!(h.pool.live_instances(), 0);
    assert_eq!(h.run("a", "count", limits()).await.unwrap().output, b"1");
}

/// Epoch interruption (the other metering mode) must also let a kill stop a guest that loops
/// without calling the host. The task runs on a thread of its own with its own runtime, and the
/// test waits on a plain channel, so a guest that never yields makes the bounded wait fail
/// instead of hanging the test.
#[test]
fn kill_interrupts_a_looping_guest_in_epoch_mode() {
    let h = std::sync::Arc::new(harness(LimitMode::Epoch));
    let req = request(
        "k",
        "k1",
        "loop",
        TaskLimits {
            timeout: Duration::from_secs(30),
            ..limits()
        },
    );
    let kill = req.kill.clone();
    let runner = h.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let result = rt.block_on(runner.pool.run_task(&runner.hostile, req));
        let _ = done_tx.send(result);
    });
    // Let the guest get into its loop.
    assert!(
        done_rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the looping guest is still running"
    );
    let killed_at = Instant::now();
    kill.cancel();
    let result = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the kill stopped the guest within 10 s");
    assert!(matches!(result, Err(TaskError::Killed)), "{result:?}");
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(2), "killed in {took:?}");
    assert_eq!(h.pool.live_instances(), 0);
}
