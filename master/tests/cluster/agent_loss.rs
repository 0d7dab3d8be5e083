//! Losing agents: missed heartbeats make tasks UNREACHABLE, removal makes them LOST; an agent
//! that re-registers has its report reconciled.

use std::time::Duration;

use crate::harness::*;
use wasmos_api::proto as pb;

async fn running_task(sched: &mut Scheduler, agent: &mut SimAgent, task: &str) {
    let offer = sched.offers().await.remove(0);
    sched
        .accept(vec![offer.id], vec![wasm_task(task, &agent.id, 1.0, 128)])
        .await;
    agent
        .wait_for(|m| matches!(m, ToAgent::RunTasks(_)).then_some(()))
        .await;
    let uuid = agent
        .update(&sched.id, task, pb::TaskState::Running, None)
        .await;
    let st = sched.update_of(task).await;
    sched.ack(&st).await;
    agent.wait_ack(&uuid).await;
}

#[tokio::test]
async fn silent_agent_becomes_unreachable_then_its_tasks_are_lost() {
    let mut config = fast_config();
    // Heartbeats come every 50 ms; a second of silence is a clear signal even on a busy machine.
    config.agent_unreachable_timeout = Duration::from_secs(1);
    config.agent_removal_timeout = Duration::from_millis(200);
    let (addr, _master) = start_master(config).await;
    let mut agent = SimAgent::register(addr, "", res(2.0, 1024), vec![]).await;
    let mut sched = Scheduler::subscribe(addr, framework_info("", "web", 60.0))
        .await
        .unwrap();
    running_task(&mut sched, &mut agent, "t1").await;

    agent.stop_heartbeats();
    let st = sched.update_of("t1").await;
    assert_eq!(
        (st.state, st.reason.as_str()),
        (pb::TaskState::Unreachable as i32, "agent_unreachable")
    );
    let failure = sched
        .wait_for(|e| {
            if let Event::Failure(f) = e {
                Some(f.clone())
            } else {
                None
            }
        })
        .await;
    assert_eq!(failure.agent_id, agent.id);
    let st = sched.update_of("t1").await;
    assert_eq!(
        (st.state, st.reason.as_str()),
        (pb::TaskState::Lost as i32, "agent_removed")
    );
    // The LOST is resent until acknowledged; the task leaves the books with the ack.
    assert!(!st.uuid.is_empty());
    sched.ack(&st).await;

    let state = wait_state(addr, |s| s.agents.is_empty() && s.tasks.is_empty()).await;
    assert!(state.tasks.is_empty());
    assert_eq!(state.total, Some(res(0.0, 0)));
}

#[tokio::test]
async fn reregistering_agent_is_reconciled() {
    let (addr, _master) = start_master(fast_config()).await;
    let mut agent = SimAgent::register(addr, "", res(2.0, 1024), vec![]).await;
    let mut sched = Scheduler::subscribe(addr, framework_info("", "web", 60.0))
        .await
        .unwrap();
    running_task(&mut sched, &mut agent, "t1").await;
    let offer = sched.offers().await.remove(0);
    sched
        .accept(vec![offer.id], vec![wasm_task("t2", &agent.id, 0.5, 64)])
        .await;
    agent
        .wait_for(|m| matches!(m, ToAgent::RunTasks(_)).then_some(()))
        .await;

    // The connection drops: tasks become unreachable.
    let id = agent.id.clone();
    drop(agent);
    assert_eq!(
        sched.update_of("t1").await.state,
        pb::TaskState::Unreachable as i32
    );

    // It comes back running t1 (but not t2), plus a task of a framework that does not exist.
    let report = |fw: &str, task: &str| pb::RunningTask {
        framework_id: fw.into(),
        task: Some(wasm_task(task, &id, 1.0, 128)),
        state: pb::TaskState::Running as i32,
    };
    let mut agent = SimAgent::register(
        addr,
        &id,
        res(2.0, 1024),
        vec![report(&sched.id, "t1"), report("fw-gone", "orphan")],
    )
    .await;
    assert_eq!(agent.id, id, "re-registration keeps the id");
    let st = sched.update_of("t1").await;
    assert_eq!(
        (st.state, st.reason.as_str()),
        (pb::TaskState::Running as i32, "agent_reregistered")
    );
    let st = sched.update_of("t2").await;
    assert_eq!(st.state, pb::TaskState::Lost as i32);
    let kill = agent
        .wait_for(|m| {
            if let ToAgent::KillTasks(k) = m {
                Some(k.clone())
            } else {
                None
            }
        })
        .await;
    assert_eq!(kill.tasks[0].task_id, "orphan");

    // t1's resources are counted again: the next offer holds only what is left.
    let offer = sched
        .wait_for(|e| match e {
            Event::Offers(o) => o.offers.iter().find(|x| x.agent_id == id).cloned(),
            _ => None,
        })
        .await;
    assert_eq!(offer.resources, Some(res(1.0, 1024 - 128)));
}

/// An operator's kill of a task whose agent is unreachable is refused as unavailable (the
/// kill cannot be delivered), naming the agent; the task is left as it was. Once the agent
/// is back, the same kill goes through to it.
#[tokio::test]
async fn an_operator_kill_on_an_unreachable_agent_is_refused_until_it_is_back() {
    let (addr, _master) = start_master(fast_config()).await;
    let mut agent = SimAgent::register(addr, "", res(2.0, 1024), vec![]).await;
    let mut sched = Scheduler::subscribe(addr, framework_info("", "web", 60.0))
        .await
        .unwrap();
    running_task(&mut sched, &mut agent, "t1").await;
    let id = agent.id.clone();
    drop(agent);
    let st = sched.update_of("t1").await;
    assert_eq!(st.state, pb::TaskState::Unreachable as i32);

    let kill = || pb::KillTaskRequest {
        task_id: "t1".into(),
        framework_id: String::new(),
    };
    let err = operator(addr)
        .await
        .kill_task(kill())
        .await
        .expect_err("a kill that cannot be delivered is refused");
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(
        err.message()
            .contains(&format!("agent {id} of task t1 is unreachable")),
        "{err}"
    );
    let state = wait_state(addr, |_| true).await;
    assert_eq!(state.tasks.len(), 1, "{:?}", state.tasks);

    let report = pb::RunningTask {
        framework_id: sched.id.clone(),
        task: Some(wasm_task("t1", &id, 1.0, 128)),
        state: pb::TaskState::Running as i32,
    };
    let mut agent = SimAgent::register(addr, &id, res(2.0, 1024), vec![report]).await;
    operator(addr)
        .await
        .kill_task(kill())
        .await
        .expect("the kill is sent to the agent that is back");
    let killed = agent
        .wait_for(|m| match m {
            ToAgent::KillTasks(k) => Some(k.clone()),
            _ => None,
        })
        .await;
    assert_eq!(killed.tasks.len(), 1, "{killed:?}");
    assert_eq!(killed.tasks[0].task_id, "t1");
}
