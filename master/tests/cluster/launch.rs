//! The happy path: register, offer, launch, status updates acknowledged end to end, kill,
//! reconciliation, and the operator's view.

use crate::harness::*;
use wasmos_api::proto as pb;

#[tokio::test]
async fn launch_update_ack_kill_and_reconcile() {
    let (addr, _master) = start_master(fast_config()).await;
    let mut agent = SimAgent::register(addr, "", res(4.0, 4096), vec![]).await;
    assert!(
        agent.id.starts_with("agent-"),
        "the master assigned {}",
        agent.id
    );
    let mut sched = Scheduler::subscribe(addr, framework_info("", "web", 60.0))
        .await
        .unwrap();

    let offers = sched.offers().await;
    assert_eq!(offers.len(), 1);
    let offer = &offers[0];
    assert_eq!(offer.agent_id, agent.id);
    assert_eq!(offer.resources, Some(res(4.0, 4096)));
    assert_eq!(
        offer.hostname, "host-",
        "the agent registered without an id"
    );

    sched
        .accept(
            vec![offer.id.clone()],
            vec![
                wasm_task("t1", &agent.id, 1.0, 128),
                wasm_task("t2", &agent.id, 1.0, 128),
            ],
        )
        .await;
    let run = agent
        .wait_for(|m| match m {
            ToAgent::RunTasks(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(run.framework_id, sched.id);
    let ids: Vec<&str> = run.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["t1", "t2"]);

    // The unused 2 cpus come back as a new offer.
    let again = sched.offers().await;
    assert_eq!(again[0].resources, Some(res(2.0, 4096 - 256)));

    // RUNNING: forwarded with its uuid; the ack travels back to the agent.
    let u1 = agent
        .update(&sched.id, "t1", pb::TaskState::Running, None)
        .await;
    let st = sched.update_of("t1").await;
    assert_eq!(
        (st.state, st.uuid.as_str(), st.reason.as_str()),
        (pb::TaskState::Running as i32, u1.as_str(), "agent")
    );
    sched.ack(&st).await;
    agent.wait_ack(&u1).await;

    // FINISHED with data.
    let u2 = agent
        .update(
            &sched.id,
            "t1",
            pb::TaskState::Finished,
            Some(b"42".to_vec()),
        )
        .await;
    let st = sched.update_of("t1").await;
    assert_eq!(st.state, pb::TaskState::Finished as i32);
    assert_eq!(st.data.as_deref(), Some(&b"42"[..]));
    sched.ack(&st).await;
    agent.wait_ack(&u2).await;

    // Explicit reconciliation: a known task and an unknown one.
    sched.reconcile(&["t2", "ghost"]).await;
    let t2 = sched.update_of("t2").await;
    // Answers are resent until acknowledged, so they carry a uuid.
    assert_eq!(
        (t2.state, t2.reason.as_str()),
        (pb::TaskState::Staging as i32, "reconciliation")
    );
    assert!(!t2.uuid.is_empty());
    let ghost = sched.update_of("ghost").await;
    assert_eq!(
        (ghost.state, ghost.reason.as_str()),
        (pb::TaskState::Lost as i32, "unknown_task")
    );
    assert!(!ghost.uuid.is_empty());
    sched.ack(&ghost).await;

    // Implicit: every task still known (t1 is gone once its terminal update was acked).
    sched.reconcile(&[]).await;
    let st = sched
        .wait_for(|e| match e {
            Event::Update(u) => u.status.clone(),
            _ => None,
        })
        .await;
    assert_eq!(st.task_id, "t2");

    // Kill reaches the agent.
    sched
        .call(Call::Kill(pb::scheduler_call::Kill {
            task_id: "t2".into(),
            agent_id: String::new(),
        }))
        .await;
    let killed = agent
        .wait_for(|m| match m {
            ToAgent::KillTasks(k) => Some(k.tasks.clone()),
            _ => None,
        })
        .await;
    assert_eq!(killed[0].task_id, "t2");

    let state = wait_state(addr, |s| s.tasks.len() == 1).await;
    assert_eq!(state.frameworks.len(), 1);
    assert!(state.frameworks[0].connected);
    assert_eq!(state.agents.len(), 1);
    assert_eq!(state.total, Some(res(4.0, 4096)));
}
