//! The scheduler half: `pi`'s scheduler, hosted with a recording driver, launches tasks on
//! offers; the tasks run in real executor instances; their results flow back as status updates
//! until the scheduler finishes with an estimate of pi. A one-process stand-in for the master.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use wasmos_wasm_executor::bindings::types::{Offer, Resources, TaskKind, TaskState, TaskStatus};
use wasmos_wasm_executor::{LimitMode, SchedulerInstance, TaskLimits};

fn offer(n: usize) -> Offer {
    Offer {
        id: format!("offer-{n}"),
        agent_id: "agent-1".into(),
        hostname: "localhost".into(),
        resources: Resources {
            millicpus: 2000,
            mem_mb: 2048,
            disk_mb: 1024,
        },
        attributes: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_scheduler_drives_its_executors_to_a_result() {
    let h = harness(LimitMode::Fuel);
    let runtime = h.pool.runtime().clone();
    let pi = runtime.load(&example_bytes("pi")).unwrap();
    let calls = Arc::new(Mutex::new(Calls::default()));
    let limits = TaskLimits {
        fuel: Some(1_000_000_000),
        ..limits()
    };
    let mut scheduler = SchedulerInstance::new(
        &runtime,
        &pi,
        Box::new(Recorder(calls.clone())),
        limits.clone(),
    )
    .await
    .unwrap();
    scheduler
        .init(vec!["6".into(), "20000".into()])
        .await
        .unwrap();

    let mut launched = 0;
    for round in 0..50 {
        if calls.lock().unwrap().finished.is_some() {
            break;
        }
        scheduler.resource_offers(vec![offer(round)]).await.unwrap();
        let launches = std::mem::take(&mut calls.lock().unwrap().launches);
        for (offer_ids, tasks) in launches {
            assert_eq!(
                offer_ids,
                vec![format!("offer-{round}")],
                "launches use the offer given"
            );
            let mut used = 0;
            for task in tasks {
                launched += 1;
                used += task.resources.millicpus;
                let TaskKind::Wasm(w) = &task.kind else {
                    panic!("pi launches Wasm tasks")
                };
                let payload = String::from_utf8(w.payload.clone()).unwrap();
                let req = request(&w.executor_id, &task.task_id, &payload, limits.clone());
                let out = h.pool.run_task(&pi, req).await.expect("pi task runs");
                scheduler
                    .status_update(TaskStatus {
                        task_id: task.task_id.clone(),
                        agent_id: Some("agent-1".into()),
                        state: TaskState::Finished,
                        message: String::new(),
                        data: Some(out.output),
                    })
                    .await
                    .unwrap();
            }
            assert!(used <= 2000, "tasks fit the offer: {used} millicpus");
        }
    }
    let calls = calls.lock().unwrap();
    let result = calls
        .finished
        .clone()
        .expect("pi finished")
        .expect("pi succeeded");
    assert_eq!(launched, 6, "one launch per task, none repeated");
    let estimate: f64 = result
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find_map(|w| w.parse().ok().filter(|v: &f64| *v > 2.0))
        .unwrap_or_else(|| panic!("no estimate in {result:?}"));
    assert!((estimate - std::f64::consts::PI).abs() < 0.05, "{result}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_may_not_call_the_executor_driver() {
    // `hostile`'s scheduler half calls executor-driver.progress when given "misuse" in init.
    let h = harness(LimitMode::Fuel);
    let runtime = h.pool.runtime().clone();
    let calls = Arc::new(Mutex::new(Calls::default()));
    let mut scheduler =
        SchedulerInstance::new(&runtime, &h.hostile, Box::new(Recorder(calls)), limits())
            .await
            .unwrap();
    let err = scheduler.init(vec!["misuse".into()]).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("only a framework's executor may use"),
        "{err}"
    );
    let again = scheduler.resource_offers(vec![]).await.unwrap_err();
    assert!(
        again
            .to_string()
            .contains("unusable after an earlier failure"),
        "{again}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_scheduler_callback_is_stopped() {
    // `hostile`'s scheduler loops forever in init when given "loop".
    let h = harness(LimitMode::Fuel);
    let runtime = h.pool.runtime().clone();
    let calls = Arc::new(Mutex::new(Calls::default()));
    let limits = TaskLimits {
        fuel: Some(20_000_000),
        ..limits()
    };
    let mut scheduler =
        SchedulerInstance::new(&runtime, &h.hostile, Box::new(Recorder(calls)), limits)
            .await
            .unwrap();
    let err = scheduler.init(vec!["loop".into()]).await.unwrap_err();
    assert!(
        err.to_string().contains("scheduler init failed")
            || err.to_string().contains("ran out of fuel"),
        "{err}"
    );
    assert!(err.to_string().contains("ran out of fuel"), "{err}");
}

/// A scheduler callback that traps is failed quoting the end of what it wrote to stderr: a Rust
/// guest's panic message (a Python guest's traceback, in `cli/tests/python.rs`), not a bare
/// trap code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trapping_scheduler_is_failed_quoting_its_stderr() {
    // `hostile`'s scheduler panics in init when given "panic" (`panic = "abort"`: a trap).
    let h = harness(LimitMode::Fuel);
    let runtime = h.pool.runtime().clone();
    let calls = Arc::new(Mutex::new(Calls::default()));
    let mut scheduler =
        SchedulerInstance::new(&runtime, &h.hostile, Box::new(Recorder(calls)), limits())
            .await
            .unwrap();
    let err = scheduler
        .init(vec!["panic".into()])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("scheduler init failed")
            && err.contains("guest stderr:")
            && err.contains("hostile scheduler panicked on purpose"),
        "{err}"
    );
}
