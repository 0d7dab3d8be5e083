//! Framework failover: a scheduler that reconnects within its failover timeout keeps its tasks
//! and gets its unacknowledged updates again; one that does not is torn down.

use std::time::Duration;

use crate::harness::*;
use wasmos_api::proto as pb;

/// A master with one agent of 2 cpus and 1 GiB and a framework of role `web` with the
/// failover timeout `failover_seconds`, which has launched task `t1` (1 cpu, 128 MB) there.
async fn web_framework_running_t1(failover_seconds: f64) -> Cluster {
    let (addr, master, mut agent, mut sched) = start_cluster(
        fast_config(),
        res(2.0, 1024),
        framework_info("", "web", failover_seconds),
    )
    .await;
    launch_one(&mut sched, &mut agent, "t1", 1.0, 128).await;
    (addr, master, agent, sched)
}

#[tokio::test]
async fn failover_within_timeout_keeps_tasks_and_resends_updates() {
    let (addr, _master, mut agent, mut sched) = web_framework_running_t1(3600.0).await;
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
    // Everything the agent was told since the launch, up to the ack, and for a while after.
    let mut told = agent.wait_ack_noting(&uuid).await;
    sched.reconcile(&[]).await;
    assert_eq!(
        sched.update_of("t1").await.state,
        pb::TaskState::Running as i32
    );
    let state = wait_state(addr, |s| s.frameworks[0].connected).await;
    assert_eq!(state.tasks.len(), 1);
    told.extend(agent.received_within(Duration::from_millis(500)).await);
    // The task was never killed, nor its framework shut down on the agent.
    let killing: Vec<&ToAgent> = told
        .iter()
        .filter(|m| matches!(m, ToAgent::KillTasks(_) | ToAgent::ShutdownFramework(_)))
        .collect();
    assert!(killing.is_empty(), "the agent was told {killing:?}");
}

#[tokio::test]
async fn failover_timeout_tears_the_framework_down() {
    let (addr, _master, mut agent, sched) = web_framework_running_t1(0.2).await;
    let id = sched.id.clone();
    drop(sched);

    let shutdown = agent.shutdown_framework().await;
    assert_eq!(shutdown.framework_id, id);
    let state = wait_state(addr, |s| s.frameworks.is_empty()).await;
    assert!(state.tasks.is_empty());
    assert_eq!(state.agents[0].available, Some(res(2.0, 1024)));
    let err = refused_subscription(addr, framework_info(&id, "web", 1.0)).await;
    assert!(err.message().contains("torn down"), "{err}");

    // A late update from the agent for the removed framework is acknowledged and dropped.
    let uuid = agent.update(&id, "t1", pb::TaskState::Killed, None).await;
    agent.wait_ack(&uuid).await;
}
