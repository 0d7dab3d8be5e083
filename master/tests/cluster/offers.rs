//! Offers: declined agents stay filtered for their refuse time, revive clears filters,
//! suppress stops offers, and the operator's weights are accepted or refused.

use crate::harness::*;
use wasmos_api::proto as pb;

#[tokio::test]
async fn declined_agent_is_not_reoffered_until_revive() {
    let (addr, _master, a, mut sched) = start_cluster(
        fast_config(),
        res(2.0, 1024),
        framework_info("", "batch", 60.0),
    )
    .await;
    let offers = sched.offers().await;
    assert_eq!(offers[0].agent_id, a.id);
    sched.decline(vec![offers[0].id.clone()], 3600.0).await;
    sched.sync().await;

    // A second agent registers after the decline. Allocation runs every 20 ms, so were the
    // filter ignored, agent a would be offered again before (or with) agent b.
    let b = SimAgent::register(addr, "", res(2.0, 1024), vec![]).await;
    let mut seen = Vec::new();
    let b_offer = sched
        .wait_for(|e| match e {
            Event::Offers(o) => {
                seen.extend(o.offers.iter().map(|x| x.agent_id.clone()));
                o.offers.iter().find(|x| x.agent_id == b.id).cloned()
            }
            _ => None,
        })
        .await;
    assert!(!seen.contains(&a.id), "filtered agent re-offered: {seen:?}");
    sched.decline(vec![b_offer.id], 3600.0).await;

    sched
        .call(Call::Revive(pb::scheduler_call::Revive {}))
        .await;
    let mut back = std::collections::BTreeSet::new();
    while back.len() < 2 {
        for o in sched.offers().await {
            back.insert(o.agent_id);
        }
    }
    assert!(back.contains(&a.id) && back.contains(&b.id));
}

#[tokio::test]
async fn suppressed_framework_gets_nothing_others_do() {
    let (addr, _master) = start_master(fast_config()).await;
    let mut quiet = Scheduler::subscribe(addr, framework_info("", "a", 60.0))
        .await
        .unwrap();
    quiet
        .call(Call::Suppress(pb::scheduler_call::Suppress {}))
        .await;
    quiet.sync().await;
    let mut busy = Scheduler::subscribe(addr, framework_info("", "b", 60.0))
        .await
        .unwrap();
    let agent = SimAgent::register(addr, "", res(1.0, 512), vec![]).await;
    let offers = busy.offers().await;
    assert_eq!(offers[0].agent_id, agent.id);
    busy.decline(vec![offers[0].id.clone()], 3600.0).await;
    // With busy filtered and quiet suppressed, nobody holds the agent.
    let state = wait_state(addr, |s| s.outstanding_offers == 0).await;
    assert_eq!(state.agents[0].available, Some(res(1.0, 512)));
    // Reviving quiet brings the agent to it.
    quiet
        .call(Call::Revive(pb::scheduler_call::Revive {}))
        .await;
    assert_eq!(quiet.offers().await[0].agent_id, agent.id);
}

#[tokio::test]
async fn operator_sets_weights_and_quotas_and_refuses_bad_ones() {
    let (addr, _master) = start_master(fast_config()).await;
    let mut op = operator(addr).await;
    op.set_weights(pb::SetWeightsRequest {
        weights: vec![pb::RoleWeight {
            role: "eng/web".into(),
            weight: 3.0,
        }],
    })
    .await
    .unwrap();
    let err = op
        .set_weights(pb::SetWeightsRequest {
            weights: vec![
                pb::RoleWeight {
                    role: "ok".into(),
                    weight: 1.0,
                },
                pb::RoleWeight {
                    role: "bad".into(),
                    weight: -1.0,
                },
            ],
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("above zero"), "{err}");
    let err = op
        .set_quota(pb::SetQuotaRequest {
            role: "eng".into(),
            guarantee: Some(res(4.0, 0)),
            limit: Some(res(2.0, 100)),
            remove: false,
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("exceeds limit"), "{err}");
    op.set_quota(pb::SetQuotaRequest {
        role: "eng".into(),
        guarantee: Some(res(1.0, 0)),
        limit: None,
        remove: false,
    })
    .await
    .unwrap();
    let state = op
        .get_state(pb::GetStateRequest {})
        .await
        .unwrap()
        .into_inner();
    let roles: Vec<(&str, f64)> = state
        .roles
        .iter()
        .map(|r| (r.role.as_str(), r.weight))
        .collect();
    assert_eq!(
        roles,
        [("eng", 1.0), ("eng/web", 3.0)],
        "'ok' was not applied"
    );
}

#[tokio::test]
async fn unanswered_offers_are_rescinded_after_the_offer_timeout() {
    let mut config = fast_config();
    config.offer_timeout = Some(std::time::Duration::from_millis(100));
    let (_addr, _master, agent, mut sched) =
        start_cluster(config, res(1.0, 512), framework_info("", "a", 60.0)).await;
    let first = sched.offers().await.remove(0);
    // Say nothing: the offer is rescinded and the resources are offered again.
    let rescinded = sched
        .wait_for(|e| {
            if let Event::Rescind(r) = e {
                Some(r.offer_id.clone())
            } else {
                None
            }
        })
        .await;
    assert_eq!(rescinded, first.id);
    // Accepting the rescinded offer fails. Until this answer the framework was set aside:
    // nothing was offered to it after the rescind.
    sched
        .accept(
            vec![first.id.clone()],
            vec![wasm_task("late", &agent.id, 0.5, 64)],
        )
        .await;
    let st = sched
        .wait_for(|e| match e {
            Event::Offers(_) => panic!("offered again before it answered: {e:?}"),
            Event::Update(u) => u.status.clone(),
            _ => None,
        })
        .await;
    assert_eq!(
        (st.task_id.as_str(), st.state),
        ("late", pb::TaskState::Error as i32)
    );
    // Having answered, it is offered the agent again once the implicit decline's filter
    // (5 s) has passed, or at once when it revives.
    sched
        .call(Call::Revive(pb::scheduler_call::Revive {}))
        .await;
    let second = sched.offers().await.remove(0);
    assert_eq!(second.agent_id, agent.id);
    assert_ne!(second.id, first.id);
}

#[tokio::test]
async fn unacknowledged_updates_are_resent_and_teardown_ends_the_framework() {
    let mut config = fast_config();
    config.update_resend_interval = std::time::Duration::from_millis(100);
    let (addr, _master, mut agent, mut sched) =
        start_cluster(config, res(1.0, 512), framework_info("", "a", 3600.0)).await;
    launch_one(&mut sched, &mut agent, "t1", 0.5, 64).await;
    let uuid = agent
        .update(&sched.id, "t1", pb::TaskState::Running, None)
        .await;
    let first = sched.update_of("t1").await;
    let again = sched.update_of("t1").await;
    assert_eq!(
        (first.uuid.as_str(), again.uuid.as_str()),
        (uuid.as_str(), uuid.as_str())
    );
    sched.ack(&again).await;
    agent.wait_ack(&uuid).await;

    sched
        .call(Call::Teardown(pb::scheduler_call::Teardown {}))
        .await;
    let e = sched.error().await;
    assert!(e.fatal && e.message.contains("tore itself down"), "{e:?}");
    let shutdown = agent.shutdown_framework().await;
    assert_eq!(shutdown.framework_id, sched.id);
    let state = wait_state(addr, |s| s.frameworks.is_empty()).await;
    assert_eq!(state.agents[0].available, Some(res(1.0, 512)));
}
