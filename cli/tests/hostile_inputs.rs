//! A tenant at every wire limit against real `wasmos master` and `wasmos agent` processes:
//! its accept past the task cap is refused whole, one at the cap of invalid tasks is answered
//! task by task with bounded messages, and three tasks with payloads at the cap reach the
//! agent and finish. Meanwhile the agent keeps its session (same id, reachable, never
//! re-registered), `pi` submitted afterwards on the same master and agent completes, and both
//! processes stay within a stated resident-memory bound (read from `VmRSS`).

mod common;

use std::time::Duration;

use common::scheduler::Scheduler;
use common::{
    MasterAndAgent, assert_pi, cluster_state, example, operator, output, vm_rss_kib,
    wait_for_agents,
};
use wasmos_api::Resources;
use wasmos_api::limits::{MAX_PAYLOAD_BYTES, MAX_REFUSAL_MESSAGE_BYTES, MAX_TASKS_PER_LAUNCH};
use wasmos_api::proto as pb;

use pb::scheduler_call::Call;
use pb::scheduler_event::Event;

/// The master's resident memory stays below this after the hostile inputs (MiB). Measured: it
/// starts near 20 MiB and ends near 110 MiB (the payloads pass through its Raft log); fifteen
/// rounds of the payload-cap tasks kept it at 112 MiB.
const MASTER_RSS_BOUND_MIB: u64 = 256;

/// The agent's resident memory stays below this after running the three tasks at the payload
/// cap and pi (MiB). Measured: near 20 MiB at start, 80 to 140 MiB after.
const AGENT_RSS_BOUND_MIB: u64 = 512;

fn task(id: &str, agent: &str, res: Resources, payload: Vec<u8>) -> pb::TaskInfo {
    pb::TaskInfo {
        task_id: id.into(),
        name: id.into(),
        agent_id: agent.into(),
        resources: Some(res.into()),
        kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
            executor_id: "exec".into(),
            payload,
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_every_wire_limit_leaves_its_cluster_mates_running() {
    let cluster = MasterAndAgent::start().await;
    let addr = cluster.addr.as_str();
    let mut op = operator(addr).await;
    wait_for_agents(&mut op, 1).await;
    eprintln!(
        "VmRSS at start: master {} MiB, agent {} MiB",
        vm_rss_kib(cluster.master.id().unwrap()) >> 10,
        vm_rss_kib(cluster.agent.id().unwrap()) >> 10
    );
    let agent_id = cluster_state(&mut op).await.agents[0]
        .info
        .as_ref()
        .unwrap()
        .id
        .clone();

    let hostile = std::fs::read(example("hostile")).unwrap();
    let digest = wasmos_api::component::ComponentDigest::of(&hostile).to_hex();
    let chunks: Vec<_> = hostile
        .chunks(256 << 10)
        .enumerate()
        .map(|(i, c)| pb::UploadComponentChunk {
            expected_sha256: if i == 0 {
                digest.clone()
            } else {
                String::new()
            },
            data: c.to_vec(),
        })
        .collect();
    op.upload_component(tokio_stream::iter(chunks))
        .await
        .expect("the component uploads");
    let info = pb::FrameworkInfo {
        name: "at-the-limits".into(),
        role: "tenant".into(),
        component_sha256: digest.clone(),
        ..Default::default()
    };
    // Updates carry a task's data of up to the payload cap.
    let mut sched = Scheduler::subscribe_with_message_limit(addr, info, 16 << 20).await;

    // Far past the task cap: refused whole with one error event, no update per task.
    let offer = sched.offer().await;
    let far_past: Vec<_> = (0..100_000)
        .map(|i| {
            task(
                &format!("z{i}"),
                &agent_id,
                Resources::new(0.0, 0, 0),
                vec![],
            )
        })
        .collect();
    sched.accept(&offer, far_past, None).await;
    let e = sched
        .wait_for(|e| match e {
            Event::Error(e) => Some(e.clone()),
            Event::Update(u) => panic!("an update for a launch refused whole: {u:?}"),
            _ => None,
        })
        .await;
    assert!(
        e.message
            .contains(&format!("100000 tasks; at most {MAX_TASKS_PER_LAUNCH}")),
        "{e:?}"
    );

    // At the cap, every task invalid: each answered once, with a bounded message.
    let offer = sched.offer().await;
    let at_cap: Vec<_> = (0..MAX_TASKS_PER_LAUNCH)
        .map(|i| {
            task(
                &format!("z{i}"),
                &agent_id,
                Resources::new(0.0, 0, 0),
                vec![],
            )
        })
        .collect();
    sched.accept(&offer, at_cap, None).await;
    for _ in 0..MAX_TASKS_PER_LAUNCH {
        let st = sched.update().await;
        assert_eq!(st.state, pb::TaskState::Error as i32, "{st:?}");
        assert!(st.message.len() <= MAX_REFUSAL_MESSAGE_BYTES, "{st:?}");
    }

    // Three tasks whose payloads are at the cap reach the agent and finish.
    let offer = sched.offer().await;
    let mut payload = b"echo:".to_vec();
    payload.resize(MAX_PAYLOAD_BYTES, b'x');
    let big: Vec<_> = (0..3)
        .map(|i| {
            task(
                &format!("big{i}"),
                &agent_id,
                Resources::new(0.1, 64, 0),
                payload.clone(),
            )
        })
        .collect();
    sched.accept(&offer, big, None).await;
    let mut finished = 0;
    while finished < 3 {
        let st = sched.update().await;
        assert!(st.task_id.starts_with("big"), "{st:?}");
        match pb::TaskState::try_from(st.state) {
            Ok(pb::TaskState::Finished) => {
                assert_eq!(
                    st.data.as_ref().map(Vec::len),
                    Some(MAX_PAYLOAD_BYTES - 5),
                    "the echo came back whole"
                );
                finished += 1;
            }
            Ok(pb::TaskState::Staging | pb::TaskState::Starting | pb::TaskState::Running) => {}
            other => panic!("a task at the payload cap ended {other:?}: {}", st.message),
        }
    }

    // The tenant steps aside; pi runs on the same master and agent.
    sched
        .call(Call::Teardown(pb::scheduler_call::Teardown {}))
        .await;
    let out = output(&[
        "submit",
        &example("pi"),
        "--master",
        addr,
        "--",
        "4",
        "20000",
    ])
    .await;
    assert_pi(&out);

    // The agent kept its one session throughout: same id, reachable, not registered anew.
    let state = cluster_state(&mut op).await;
    assert_eq!(state.agents.len(), 1, "{:#?}", state.agents);
    assert_eq!(state.agents[0].info.as_ref().unwrap().id, agent_id);
    assert!(state.agents[0].reachable);

    tokio::time::sleep(Duration::from_millis(200)).await;
    let master_mib = vm_rss_kib(cluster.master.id().unwrap()) >> 10;
    let agent_mib = vm_rss_kib(cluster.agent.id().unwrap()) >> 10;
    eprintln!("VmRSS: master {master_mib} MiB, agent {agent_mib} MiB");
    assert!(
        master_mib < MASTER_RSS_BOUND_MIB,
        "the master holds {master_mib} MiB"
    );
    assert!(
        agent_mib < AGENT_RSS_BOUND_MIB,
        "the agent holds {agent_mib} MiB"
    );
    cluster.stop().await;
}
