//! Wire limits that hold on every hop: a launch of tasks with payloads at the cap reaches the
//! agent (whose end decodes what the master's end may send) without breaking its session; one byte past the
//! cap is refused at the master; framework messages at the cap reach the agent and one byte
//! past is refused with an error naming the limit. The agent's session stays up throughout.

use crate::harness::*;
use wasmos_api::limits::{MAX_FRAMEWORK_MESSAGE_BYTES, MAX_PAYLOAD_BYTES};
use wasmos_api::proto as pb;

fn with_payload(id: &str, agent: &str, bytes: usize) -> pb::TaskInfo {
    let mut t = wasm_task(id, agent, 0.1, 1);
    t.kind = Some(pb::task_info::Kind::Wasm(pb::WasmTask {
        executor_id: "exec-1".into(),
        payload: vec![b'p'; bytes],
        ..Default::default()
    }));
    t
}

#[tokio::test]
async fn payloads_at_the_cap_reach_the_agent_and_one_byte_past_is_refused() {
    let (_addr, _master, mut agent, mut sched) = start_cluster(
        fast_config(),
        res(4.0, 4096),
        framework_info("", "web", 60.0),
    )
    .await;
    let a = agent.id.clone();

    // Three tasks at the cap: 12 MiB of payload in one accept (within the scheduler's 16 MiB),
    // three times tonic's default 4 MiB that the agent's end used to decode.
    let offer = sched.offers().await.remove(0);
    let ids: Vec<String> = (0..3).map(|i| format!("big{i}")).collect();
    sched
        .accept(
            vec![offer.id],
            ids.iter()
                .map(|id| with_payload(id, &a, MAX_PAYLOAD_BYTES))
                .collect(),
        )
        .await;
    let mut got = Vec::new();
    while got.len() < ids.len() {
        let run = agent.run_tasks().await;
        for t in run.tasks {
            let Some(pb::task_info::Kind::Wasm(w)) = &t.kind else {
                panic!("a wasm task: {t:?}")
            };
            assert_eq!(
                w.payload.len(),
                MAX_PAYLOAD_BYTES,
                "the payload arrived whole"
            );
            got.push(t.task_id);
        }
    }
    assert_eq!(got, ids, "every task, in order");

    // One byte past the cap: refused at the master, nothing reaches the agent.
    let offer = sched.offers().await.remove(0);
    sched
        .accept(
            vec![offer.id],
            vec![with_payload("over", &a, MAX_PAYLOAD_BYTES + 1)],
        )
        .await;
    let st = sched.update_of("over").await;
    assert_eq!(st.state, pb::TaskState::Error as i32, "{st:?}");
    assert!(
        st.message
            .contains(&format!("payload is {} bytes", MAX_PAYLOAD_BYTES + 1)),
        "{:?}",
        st.message
    );

    // The agent's session is up: a small task still reaches it and reports.
    let run = launch_one(&mut sched, &mut agent, "small", 0.1, 1).await;
    assert_eq!(
        run.tasks[0].task_id, "small",
        "the refused task never reached it"
    );
    agent
        .update(&sched.id, "big0", pb::TaskState::Running, None)
        .await;
    let st = sched.update_of("big0").await;
    assert_eq!(st.state, pb::TaskState::Running as i32, "{st:?}");
}

#[tokio::test]
async fn framework_messages_at_the_cap_reach_the_agent_and_past_it_are_refused() {
    let (_addr, _master, mut agent, mut sched) = start_cluster(
        fast_config(),
        res(4.0, 4096),
        framework_info("", "web", 60.0),
    )
    .await;
    let offer = sched.offers().await.remove(0);
    let message = |bytes: usize| {
        Call::Message(pb::scheduler_call::FrameworkMessage {
            agent_id: agent.id.clone(),
            executor_id: "exec-1".into(),
            data: vec![b'm'; bytes],
        })
    };
    for bytes in [
        MAX_FRAMEWORK_MESSAGE_BYTES + 1,
        3 * MAX_FRAMEWORK_MESSAGE_BYTES,
    ] {
        sched.call(message(bytes)).await;
        let e = sched.error().await;
        assert!(!e.fatal, "{e:?}");
        assert!(
            e.message.contains(&format!("data is {bytes} bytes"))
                && e.message
                    .contains(&format!("limit is {MAX_FRAMEWORK_MESSAGE_BYTES}")),
            "{:?}",
            e.message
        );
    }
    sched.call(message(MAX_FRAMEWORK_MESSAGE_BYTES)).await;
    let m = agent
        .wait_for(|m| match m {
            ToAgent::FrameworkMessage(f) => Some(f.clone()),
            _ => None,
        })
        .await;
    assert_eq!(
        m.data.len(),
        MAX_FRAMEWORK_MESSAGE_BYTES,
        "only the one at the cap"
    );
    sched
        .accept(vec![offer.id], vec![wasm_task("after", &agent.id, 0.1, 1)])
        .await;
    let run = agent.run_tasks().await;
    assert_eq!(run.tasks[0].task_id, "after", "the session is up");
}
