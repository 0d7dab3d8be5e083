//! Hosted frameworks: the master runs a framework's Wasm scheduler itself (the framework
//! host), driving it through the same core path as a gRPC scheduler. A simulated agent runs
//! the Wasm tasks it is sent in a real executor pool and reports their output, so `pi` runs to
//! its estimate; a scheduler that loops in `init` is failed for running out of fuel while `pi`
//! on the same master still completes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use wasmos_api::proto as pb;
use wasmos_api::proto::operator_service_client::OperatorServiceClient;
use wasmos_api::{ExecutorId, FrameworkId, TaskId};
use wasmos_master::blobs::Digest;
use wasmos_master::registry::FrameworkOutcome;
use wasmos_master::{FrameworkHost, HostedFramework, Master, MasterConfig};
use wasmos_wasm_executor::{
    ExecutorPool, LimitMode, PoolingConfig, RuntimeConfig, TaskLimits, TaskRequest, WasmRuntime,
};

use crate::harness::*;

/// How long a whole hosted framework may take.
const JOB_WAIT: Duration = Duration::from_secs(120);

fn runtime() -> WasmRuntime {
    WasmRuntime::new(RuntimeConfig {
        limit_mode: LimitMode::Fuel,
        pooling: Some(PoolingConfig {
            total_component_instances: 16,
            total_memories: 32,
            total_tables: 64,
            max_memory_bytes: 1 << 30,
        }),
        ..RuntimeConfig::default()
    })
    .expect("engine")
}

fn task_limits() -> TaskLimits {
    TaskLimits {
        fuel: Some(5_000_000_000),
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(30),
        ..TaskLimits::default()
    }
}

/// Stores a component in the master's blob store and returns its digest.
fn store(master: &Master, bytes: Vec<u8>) -> String {
    let digest = Digest::of(&bytes);
    master
        .core()
        .put_component(digest, bytes)
        .expect("component stored");
    digest.to_string()
}

fn hosted_info(name: &str, digest: &str) -> pb::FrameworkInfo {
    pb::FrameworkInfo {
        id: String::new(),
        name: name.into(),
        role: "batch".into(),
        principal: "tester".into(),
        failover_timeout_seconds: 0.0,
        component_sha256: digest.into(),
        ..Default::default()
    }
}

/// Runs a simulated agent that executes the Wasm tasks it is sent in its own executor pool
/// (fetching components from the master's blob store by digest) and reports FINISHED with the
/// executor's output, or FAILED with the error.
async fn spawn_running_agent(addr: std::net::SocketAddr, master: Master) {
    let mut agent = SimAgent::register(addr, "", res(2.0, 2048), vec![]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pool = Arc::new(ExecutorPool::new(runtime(), dir.path()));
    tokio::spawn(async move {
        let _dir = dir;
        type Done = (String, String, Result<Vec<u8>, String>);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
        loop {
            tokio::select! {
                m = agent.next() => match m {
                    ToAgent::RunTasks(r) => {
                        let bytes = Digest::parse(&r.component_sha256)
                            .map_err(wasmos_master::blobs::BlobError::from)
                            .and_then(|d| master.core().blobs().get(&d))
                            .expect("the master has the component");
                        let component = pool
                            .runtime()
                            .load_async(bytes.as_ref().clone())
                            .await
                            .expect("component loads");
                        for t in r.tasks {
                            let Some(pb::task_info::Kind::Wasm(w)) = t.kind else {
                                continue;
                            };
                            let mut req = TaskRequest::new(
                                FrameworkId::new(r.framework_id.clone()).unwrap(),
                                ExecutorId::new(w.executor_id).unwrap(),
                                TaskId::new(t.task_id.clone()).unwrap(),
                                w.payload,
                            );
                            req.limits = task_limits();
                            let (pool, component, tx) =
                                (pool.clone(), component.clone(), done_tx.clone());
                            let fw = r.framework_id.clone();
                            tokio::spawn(async move {
                                let out = pool.run_task(&component, req).await;
                                let _ = tx.send((
                                    fw,
                                    t.task_id,
                                    out.map(|o| o.output).map_err(|e| e.to_string()),
                                ));
                            });
                        }
                    }
                    ToAgent::ShutdownFramework(s) => {
                        if let Ok(fw) = FrameworkId::new(s.framework_id) {
                            pool.shutdown_framework(&fw).await;
                        }
                    }
                    _ => {}
                },
                Some((fw, task, out)) = done_rx.recv() => {
                    match out {
                        Ok(data) => {
                            agent.update(&fw, &task, pb::TaskState::Finished, Some(data)).await;
                        }
                        Err(_) => {
                            agent.update(&fw, &task, pb::TaskState::Failed, None).await;
                        }
                    }
                }
            }
        }
    });
}

/// Waits for a hosted framework to end and returns its recorded outcome.
async fn outcome(master: &Master, hosted: HostedFramework) -> FrameworkOutcome {
    tokio::time::timeout(JOB_WAIT, hosted.task)
        .await
        .expect("the hosted framework ends in time")
        .expect("the hosting task does not panic");
    master
        .core()
        .framework_outcome(&hosted.framework_id)
        .cloned()
        .expect("an outcome is recorded")
}

fn assert_pi(outcome: &FrameworkOutcome) {
    let FrameworkOutcome::Succeeded(result) = outcome else {
        panic!("pi failed: {outcome:?}")
    };
    let estimate: f64 = result
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find_map(|w| w.parse().ok().filter(|v: &f64| *v > 2.0))
        .unwrap_or_else(|| panic!("no estimate in {result:?}"));
    assert!(
        (estimate - std::f64::consts::PI).abs() < 0.05,
        "estimate too far from pi: {result}"
    );
}

/// Starts `pi` (stored under `digest`) on `host` for 8 tasks of 20000 samples, with the
/// default scheduler limits.
async fn start_pi(host: &FrameworkHost, master: &Master, digest: &str) -> HostedFramework {
    host.start(
        master,
        hosted_info("pi", digest),
        vec!["8".into(), "20000".into()],
        FrameworkHost::default_limits(),
    )
    .await
    .expect("pi starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_pi_runs_to_its_result() {
    let (addr, master) = start_master(fast_config()).await;
    spawn_running_agent(addr, master.clone()).await;
    let digest = store(&master, example_bytes("pi"));
    let host = FrameworkHost::with_runtime(runtime());
    let hosted = start_pi(&host, &master, &digest).await;
    let id = hosted.framework_id.clone();
    let out = outcome(&master, hosted).await;
    assert_pi(&out);
    // Torn down: gone from the registry, its resources back in the pool.
    let core = master.core();
    assert!(!core.registry().frameworks.contains_key(&id));
    assert!(core.registry().removed_frameworks.contains(&id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_looping_scheduler_is_failed_for_fuel_while_pi_completes() {
    let (addr, master) = start_master(fast_config()).await;
    spawn_running_agent(addr, master.clone()).await;
    let pi = store(&master, example_bytes("pi"));
    let hostile = store(&master, example_bytes("hostile"));
    let host = FrameworkHost::with_runtime(runtime());

    let bad = host
        .start(
            &master,
            hosted_info("hostile", &hostile),
            vec!["loop".into()],
            TaskLimits {
                fuel: Some(20_000_000),
                ..FrameworkHost::default_limits()
            },
        )
        .await
        .expect("the hostile framework is registered");
    let good = start_pi(&host, &master, &pi).await;

    let bad_id = bad.framework_id.clone();
    let (bad, good) = tokio::join!(outcome(&master, bad), outcome(&master, good));
    let FrameworkOutcome::Failed(reason) = &bad else {
        panic!("the looping scheduler must fail: {bad:?}")
    };
    assert!(reason.contains("fuel"), "reason names fuel: {reason}");
    assert!(
        reason.contains("init"),
        "reason names the callback: {reason}"
    );
    assert!(!master.core().registry().frameworks.contains_key(&bad_id));
    assert_pi(&good);
}

/// Submits a hosted framework through the operator API; returns its framework id, or the
/// refusal.
async fn submit(
    op: &mut OperatorServiceClient<tonic::transport::Channel>,
    info: pb::FrameworkInfo,
    args: Vec<String>,
    limits: Option<pb::SchedulerLimits>,
) -> Result<String, tonic::Status> {
    Ok(op
        .submit_framework(pb::SubmitFrameworkRequest {
            info: Some(info),
            args,
            limits,
        })
        .await?
        .into_inner()
        .framework_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_submit_hosted_frameworks_and_read_their_results() {
    let (addr, master) = start_master(fast_config()).await;
    spawn_running_agent(addr, master.clone()).await;
    let digest = upload_component(addr, &example_bytes("pi"), 1 << 20)
        .await
        .expect("upload accepted");
    let mut op = operator(addr).await;

    let mut with_id = hosted_info("pi", &digest);
    with_id.id = "mine".into();
    let e = submit(&mut op, with_id, vec![], None).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = submit(&mut op, hosted_info("pi", &"ab".repeat(32)), vec![], None)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");

    let id = submit(
        &mut op,
        hosted_info("pi", &digest),
        vec!["8".into(), "20000".into()],
        Some(pb::SchedulerLimits {
            fuel: 2_000_000_000,
            memory_mb: 0,
            callback_timeout_seconds: 0.0,
        }),
    )
    .await
    .expect("submitted");
    let deadline = tokio::time::Instant::now() + JOB_WAIT;
    let result = loop {
        let r = op
            .get_framework_result(pb::GetFrameworkResultRequest {
                framework_id: id.clone(),
            })
            .await
            .expect("a known framework")
            .into_inner();
        if r.ended {
            break r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pi never ended: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(!result.registered, "torn down after finishing");
    let outcome = if result.succeeded {
        FrameworkOutcome::Succeeded(result.result)
    } else {
        FrameworkOutcome::Failed(result.result)
    };
    assert_pi(&outcome);

    let e = op
        .get_framework_result(pb::GetFrameworkResultRequest {
            framework_id: "never-seen".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_state_puts_land_in_the_registry_and_updates_are_acknowledged() {
    let (addr, master) = start_master(MasterConfig {
        // service runs native command tasks, which no role may by default.
        command_task_roles: None,
        ..fast_config()
    })
    .await;
    let mut agent = SimAgent::register(addr, "", res(2.0, 2048), vec![]).await;
    let digest = store(&master, example_bytes("service"));
    let host = FrameworkHost::with_runtime(runtime());
    let hosted = host
        .start(
            &master,
            hosted_info("service", &digest),
            ["1", "0.1", "32", "--", "sleep", "1000"]
                .map(String::from)
                .to_vec(),
            FrameworkHost::default_limits(),
        )
        .await
        .expect("service starts");
    let fw = hosted.framework_id.clone();
    let state = |master: &Master| -> String {
        let core = master.core();
        let bytes = core
            .registry()
            .framework_state
            .get(&fw)
            .and_then(|s| s.get("instances"))
            .cloned()
            .expect("service published its instances through state-put");
        String::from_utf8(bytes).unwrap()
    };

    // The launch reaches the agent as a command task, after init's state-put was committed.
    let run = agent.run_tasks().await;
    assert_eq!(run.framework_id, fw.to_string());
    let task = &run.tasks[0];
    let Some(pb::task_info::Kind::Command(c)) = &task.kind else {
        panic!("service launches command tasks: {task:?}")
    };
    assert_eq!(c.argv, ["sleep", "1000"]);
    assert!(
        state(&master).contains("\"instance\":0"),
        "{}",
        state(&master)
    );

    // An update goes to status-update, then the host acknowledges it to the agent.
    let uuid = agent
        .update(
            &run.framework_id,
            &task.task_id,
            pb::TaskState::Running,
            None,
        )
        .await;
    agent.wait_ack(&uuid).await;
    assert!(state(&master).contains("running"), "{}", state(&master));
    assert!(!hosted.task.is_finished(), "service keeps running");
    hosted.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_is_told_when_set_timer_is_past_the_cap() {
    let (_addr, master) = start_master(fast_config()).await;
    let hostile = store(&master, example_bytes("hostile"));
    let host = FrameworkHost::with_runtime(runtime());
    let n = wasmos_api::limits::MAX_PENDING_TIMERS + 76;
    let hosted = host
        .start(
            &master,
            hosted_info("hostile", &hostile),
            vec![format!("timers:{n}")],
            FrameworkHost::default_limits(),
        )
        .await
        .expect("the hostile framework is registered");
    let FrameworkOutcome::Succeeded(result) = outcome(&master, hosted).await else {
        panic!("the timers scheduler finishes with what it was told")
    };
    // The guest saw each refusal, and could still set a pending id again.
    assert!(
        result.starts_with("timers: 1024 set, 76 refused, reset 0: ok; first refusal: timer 1024"),
        "{result}"
    );
    assert!(result.contains("1024 timers are pending"), "{result}");
}
