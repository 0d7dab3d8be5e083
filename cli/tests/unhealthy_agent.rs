//! An agent whose store cannot write (its disk full, simulated by the agent's hidden
//! `--store-faults-while-exists FILE` switch) against a real `wasmos master`: it reports
//! itself unhealthy, gets no offers, `wasmos agents` says why; once the disk writes again it
//! reopens its store, reports healthy, delivers the status update it made during the fault, and
//! a framework's new task completes.

use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use wasmos_api::proto as pb;

mod common;

use common::scheduler::Scheduler;
use common::{example, operator, output, spawn_agent, start_master, until};
use pb::scheduler_call::Call;
use pb::scheduler_event::Event;

async fn ok(addr: &str, args: &[&str]) -> String {
    let out: Output = output(&[args, &["--master", addr]].concat()).await;
    assert!(
        out.status.success(),
        "wasmos {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

async fn agents_json(addr: &str) -> Vec<Value> {
    let out = ok(addr, &["agents", "--json"]).await;
    match serde_json::from_str(&out) {
        Ok(Value::Array(items)) => items,
        other => panic!("wasmos agents --json printed no JSON array ({other:?}): {out}"),
    }
}

/// Launches task `id` with `payload` for the `hostile` executor on `offer`, refusing the
/// remainder for only 1 s.
async fn launch(sched: &Scheduler, offer: &pb::Offer, id: &str, payload: &str) {
    let task = pb::TaskInfo {
        task_id: id.into(),
        name: id.into(),
        agent_id: offer.agent_id.clone(),
        resources: Some(pb::Resources {
            millicpus: 250,
            mem_mb: 64,
            disk_mb: 0,
        }),
        kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
            executor_id: format!("exec-{id}"),
            payload: payload.as_bytes().to_vec(),
            ..Default::default()
        })),
    };
    let filters = pb::Filters {
        refuse_seconds: Some(1.0),
    };
    sched.accept(offer, vec![task], Some(filters)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_store_fails_is_unhealthy_and_recovers_without_losing_an_update() {
    let (mut master, addr) = start_master().await;
    let dir = tempfile::tempdir().unwrap();
    let fault = dir.path().join("disk-full");
    let mut agent = spawn_agent(
        &addr,
        &dir.path().join("agent"),
        &[
            "--resources",
            "cpus:4;mem:4096;disk:1000",
            "--store-faults-while-exists",
            fault.to_str().unwrap(),
        ],
    );
    until("the agent registers", || async {
        let a = agents_json(&addr).await;
        (a.len() == 1 && a[0]["health"]["healthy"] == true).then_some(())
    })
    .await;

    let bytes = std::fs::read(example("hostile")).unwrap();
    let digest = operator(&addr)
        .await
        .upload_component(tokio_stream::iter(vec![pb::UploadComponentChunk {
            expected_sha256: String::new(),
            data: bytes,
        }]))
        .await
        .expect("upload accepted")
        .into_inner()
        .sha256;
    let info = pb::FrameworkInfo {
        name: "health".into(),
        role: "tests".into(),
        principal: "tester".into(),
        component_sha256: digest,
        ..Default::default()
    };
    let mut sched = Scheduler::subscribe(&addr, info).await;
    let offer = sched.offer().await;
    launch(&sched, &offer, "sleeper", "sleep:600000").await;
    sched.update_of("sleeper", pb::TaskState::Running).await;

    // The disk fills. The agent says so; its offers go and do not come back (the accept's
    // remainder was refused for only 1 s).
    std::fs::write(&fault, b"").unwrap();
    let agents = until("the agent reports itself unhealthy", || async {
        let a = agents_json(&addr).await;
        (a[0]["health"]["healthy"] == false).then_some(a)
    })
    .await;
    let reason = agents[0]["health"]["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("store cannot write") && reason.contains("No space left"),
        "{reason}"
    );
    assert_eq!(agents[0]["reachable"], true, "{agents:?}");
    let table = ok(&addr, &["agents"]).await;
    assert!(
        table.contains("unhealthy: the agent's store cannot write"),
        "{table}"
    );

    // A kill during the fault: the agent kills the task, but its KILLED update cannot be
    // written, so it is held and not sent yet; and no offer comes.
    sched
        .call(Call::Kill(pb::scheduler_call::Kill {
            task_id: "sleeper".into(),
            agent_id: offer.agent_id.clone(),
        }))
        .await;
    // An offer made before the agent turned unhealthy may still be on its way; it is
    // rescinded after it. None may stand at the end.
    let mut standing = std::collections::HashSet::new();
    let quiet_until = tokio::time::Instant::now() + Duration::from_secs(4);
    while let Some(e) = sched.event_before(quiet_until).await {
        match e {
            Event::Offers(o) => standing.extend(o.offers.into_iter().map(|o| o.id)),
            Event::Rescind(r) => {
                standing.remove(&r.offer_id);
            }
            Event::Update(u) => {
                let s = u.status.unwrap_or_default();
                assert_ne!(
                    s.state,
                    pb::TaskState::Killed as i32,
                    "KILLED was sent while the store could not write it: {s:?}"
                );
                sched.ack(&s).await;
            }
            _ => {}
        }
    }
    assert!(
        standing.is_empty(),
        "an unhealthy agent's resources were offered: {standing:?}"
    );

    // The disk is freed: the agent reopens its store, the held update arrives, the agent is
    // healthy and offered again, and a new task completes.
    std::fs::remove_file(&fault).unwrap();
    let killed = sched.update_of("sleeper", pb::TaskState::Killed).await;
    assert_eq!(killed.agent_id, offer.agent_id);
    until("the agent reports itself healthy", || async {
        let a = agents_json(&addr).await;
        (a[0]["health"]["healthy"] == true && a[0]["health"]["reason"].is_null()).then_some(())
    })
    .await;
    let offer = sched.offer().await;
    launch(&sched, &offer, "after", "echo:done").await;
    sched.update_of("after", pb::TaskState::Finished).await;

    let _ = agent.kill().await;
    let _ = master.kill().await;
}
