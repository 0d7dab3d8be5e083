//! Framework failover: a scheduler that reconnects within its failover timeout keeps its tasks
//! and gets its unacknowledged updates again; one that does not is torn down.

use std::time::Duration;

use crate::harness::*;
use wasmos_api::proto as pb;

#[tokio::test]
async fn failover_within_timeout_keeps_tasks_and_resends_updates() {
    let (addr, _master) = start_master(fast_config()).await;
    let mut agent = SimAgent::register(addr, "", res(2.0, 1024), vec![]).await;
    let mut sched = Scheduler::subscribe(addr, framework_info("", "web", 3600.0))
        .await
        .unwrap();
    let offer = sched.offers().await.remove(0);
    sched
        .accept(vec![offer.id], vec![wasm_task("t1", &agent.id, 1.0, 128)])
        .await;
    agent
        .wait_for(|m| matches!(m, ToAgent::RunTasks(_)).then_some(()))
        .await;
    let uuid = agent
        .update(&sched.id, "t1", pb::TaskState::Running, None)
        .await;
    let st = sched.update_of("t1").await;
    assert_eq!(st.uuid, uuid);

    // The scheduler dies without acknowledging.
    let id = sched.id.clone();
    drop(sched);
    wait_state(addr, |s| {
        s.frameworks.len() == 1 && !s.frameworks[0].connected
    })
    .await;

    let mut sched = Scheduler::subscribe(addr, framework_info(&id, "web", 3600.0))
        .await
        .unwrap();
    assert_eq!(sched.id, id, "same framework");
    let st = sched.update_of("t1").await;
    assert_eq!(
        (st.state, st.uuid.as_str()),
        (pb::TaskState::Running as i32, uuid.as_str()),
        "resent"
    );
    sched.ack(&st).await;
    agent.wait_ack(&uuid).await;
    sched.reconcile(&[]).await;
    assert_eq!(
        sched.update_of("t1").await.state,
        pb::TaskState::Running as i32
    );
    // The task was never killed: the first kill-ish message would have arrived before the ack.
    let state = wait_state(addr, |s| s.frameworks[0].connected).await;
    assert_eq!(state.tasks.len(), 1);
}

#[tokio::test]
async fn failover_timeout_tears_the_framework_down() {
    let (addr, _master) = start_master(fast_config()).await;
    let mut agent = SimAgent::register(addr, "", res(2.0, 1024), vec![]).await;
    let mut sched = Scheduler::subscribe(addr, framework_info("", "web", 0.2))
        .await
        .unwrap();
    let offer = sched.offers().await.remove(0);
    sched
        .accept(vec![offer.id], vec![wasm_task("t1", &agent.id, 1.0, 128)])
        .await;
    agent
        .wait_for(|m| matches!(m, ToAgent::RunTasks(_)).then_some(()))
        .await;
    let id = sched.id.clone();
    drop(sched);

    let shutdown = agent
        .wait_for(|m| {
            if let ToAgent::ShutdownFramework(s) = m {
                Some(s.clone())
            } else {
                None
            }
        })
        .await;
    assert_eq!(shutdown.framework_id, id);
    let state = wait_state(addr, |s| s.frameworks.is_empty()).await;
    assert!(state.tasks.is_empty());
    assert_eq!(state.agents[0].available, Some(res(2.0, 1024)));
    let err = Scheduler::subscribe(addr, framework_info(&id, "web", 1.0))
        .await
        .err()
        .unwrap();
    assert!(err.message().contains("torn down"), "{err}");

    // A late update from the agent for the removed framework is acknowledged and dropped.
    let uuid = agent.update(&id, "t1", pb::TaskState::Killed, None).await;
    agent.wait_ack(&uuid).await;
    let _ = Duration::ZERO;
}
