//! A tenant at every wire limit against real `wasmos master` and `wasmos agent` processes:
//! its accept past the task cap is refused whole, one at the cap of invalid tasks is answered
//! task by task with bounded messages, and three tasks with payloads at the cap reach the
//! agent and finish. Meanwhile the agent keeps its session (same id, reachable, never
//! re-registered), `pi` submitted afterwards on the same master and agent completes, and both
//! processes stay within a stated resident-memory bound (read from `VmRSS`).

mod common;

use std::time::Duration;

use common::{
    MasterAndAgent, WAIT, assert_pi, cluster_state, example, operator, output, vm_rss_kib,
    wait_for_agents,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wasmos_api::Resources;
use wasmos_api::limits::{MAX_PAYLOAD_BYTES, MAX_REFUSAL_MESSAGE_BYTES, MAX_TASKS_PER_LAUNCH};
use wasmos_api::proto as pb;
use wasmos_api::proto::scheduler_service_client::SchedulerServiceClient;

use pb::scheduler_call::Call;
use pb::scheduler_event::Event;

/// The master's resident memory stays below this after the hostile inputs (MiB). Measured: it
/// starts near 20 MiB and ends near 110 MiB (the payloads pass through its Raft log); fifteen
/// rounds of the payload-cap tasks kept it at 112 MiB.
const MASTER_RSS_BOUND_MIB: u64 = 256;

/// The agent's resident memory stays below this after running the three tasks at the payload
/// cap and pi (MiB). Measured: near 20 MiB at start, 80 to 140 MiB after.
const AGENT_RSS_BOUND_MIB: u64 = 512;

struct Scheduler {
    tx: mpsc::Sender<pb::SchedulerCall>,
    events: tonic::Streaming<pb::SchedulerEvent>,
    id: String,
}

impl Scheduler {
    async fn subscribe(addr: &str, component_sha256: &str) -> Self {
        let mut client = SchedulerServiceClient::connect(format!("http://{addr}"))
            .await
            .expect("the scheduler API answers")
            // Updates carry a task's data of up to the payload cap.
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20);
        let (tx, rx) = mpsc::channel(64);
        let info = pb::FrameworkInfo {
            id: String::new(),
            name: "at-the-limits".into(),
            role: "tenant".into(),
            principal: String::new(),
            failover_timeout_seconds: 0.0,
            component_sha256: component_sha256.into(),
            ..Default::default()
        };
        tx.send(pb::SchedulerCall {
            call: Some(Call::Subscribe(pb::scheduler_call::Subscribe {
                framework_info: Some(info),
            })),
        })
        .await
        .unwrap();
        let events = client
            .subscribe(ReceiverStream::new(rx))
            .await
            .expect("subscribed")
            .into_inner();
        let mut s = Scheduler {
            tx,
            events,
            id: String::new(),
        };
        s.id = s
            .wait_for(|e| match e {
                Event::Subscribed(sub) => Some(sub.framework_id.clone()),
                _ => None,
            })
            .await;
        s
    }

    async fn call(&self, call: Call) {
        self.tx
            .send(pb::SchedulerCall { call: Some(call) })
            .await
            .expect("the stream is open");
    }

    /// Skips events until `f` picks one.
    async fn wait_for<T>(&mut self, mut f: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.events.message())
                .await
                .expect("the awaited event in time")
                .expect("the stream is healthy")
                .expect("the stream is open");
            if let Some(t) = msg.event.as_ref().and_then(&mut f) {
                return t;
            }
        }
    }

    async fn offer(&mut self) -> pb::Offer {
        self.wait_for(|e| match e {
            Event::Offers(o) => o.offers.first().cloned(),
            _ => None,
        })
        .await
    }

    async fn accept(&self, offer: &pb::Offer, launches: Vec<pb::TaskInfo>) {
        self.call(Call::Accept(pb::scheduler_call::Accept {
            offer_ids: vec![offer.id.clone()],
            launches,
            filters: None,
        }))
        .await
    }

    /// The next update, acknowledged.
    async fn update(&mut self) -> pb::TaskStatus {
        let st = self
            .wait_for(|e| match e {
                Event::Update(u) => u.status.clone(),
                _ => None,
            })
            .await;
        if !st.uuid.is_empty() {
            self.call(Call::Acknowledge(pb::scheduler_call::Acknowledge {
                agent_id: st.agent_id.clone(),
                task_id: st.task_id.clone(),
                uuid: st.uuid.clone(),
            }))
            .await;
        }
        st
    }
}

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
    let mut sched = Scheduler::subscribe(addr, &digest).await;

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
    sched.accept(&offer, far_past).await;
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
    sched.accept(&offer, at_cap).await;
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
    sched.accept(&offer, big).await;
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
