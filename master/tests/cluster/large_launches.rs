//! Large launches: a refused accept of many tasks answers each task once with a message of
//! bounded size that counts the problems, an accept over the task or offer cap is refused
//! whole with its offers returned, and neither keeps another framework from launching.

use std::collections::BTreeMap;

use crate::harness::*;
use wasmos_api::limits::{MAX_OFFERS_PER_ACCEPT, MAX_REFUSAL_MESSAGE_BYTES, MAX_TASKS_PER_LAUNCH};
use wasmos_api::proto as pb;

/// `n` tasks on `agent` that ask for nothing (each one a problem).
fn empty_tasks(n: usize, agent: &str) -> Vec<pb::TaskInfo> {
    (0..n)
        .map(|i| wasm_task(&format!("z{i}"), agent, 0.0, 0))
        .collect()
}

/// After `first` has had its turn, a second framework subscribes, gets an offer of all of
/// `agent` and launches on it; the launch is the first thing `agent` is asked to run.
/// `offered` is the first framework's offer if it was already read.
async fn a_second_framework_still_launches(
    addr: std::net::SocketAddr,
    first: &mut Scheduler,
    offered: Option<pb::Offer>,
    agent: &mut SimAgent,
) {
    // The first framework steps aside for good, so the offer can go to the second.
    let o = match offered {
        Some(o) => o,
        None => first.offers().await.remove(0),
    };
    first.decline(vec![o.id], 3600.0).await;
    let mut second = Scheduler::subscribe(addr, framework_info("", "other", 60.0))
        .await
        .unwrap();
    let offer = second.offers().await.remove(0);
    assert_eq!(offer.resources, Some(res(4.0, 4096)), "all of the agent");
    second
        .accept(vec![offer.id], vec![wasm_task("fine", &agent.id, 1.0, 64)])
        .await;
    let run = agent.run_tasks().await;
    assert_eq!(
        run.framework_id, second.id,
        "nothing of the refused launch ran"
    );
    let ids: Vec<&str> = run.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["fine"]);
}

#[tokio::test]
async fn a_refused_launch_of_the_cap_answers_each_task_once_with_a_bounded_message() {
    let (addr, _master, mut agent, mut sched) = start_cluster(
        fast_config(),
        res(4.0, 4096),
        framework_info("", "web", 60.0),
    )
    .await;
    let offer = sched.offers().await.remove(0);
    sched
        .accept(vec![offer.id], empty_tasks(MAX_TASKS_PER_LAUNCH, &agent.id))
        .await;
    // Calls are handled in order: every update of the launch comes before the probe's answer.
    let mut updates: BTreeMap<String, usize> = BTreeMap::new();
    let mut offered = None;
    sched.reconcile(&["sync-probe"]).await;
    loop {
        match sched.next().await {
            Event::Update(u) => {
                let st = u.status.expect("a status");
                if st.task_id == "sync-probe" {
                    break;
                }
                assert_eq!(st.state, pb::TaskState::Error as i32, "{st:?}");
                assert_eq!(st.reason, "invalid_launch");
                assert!(
                    st.message.len() <= MAX_REFUSAL_MESSAGE_BYTES,
                    "{} bytes",
                    st.message.len()
                );
                let rest = MAX_TASKS_PER_LAUNCH - 5;
                assert!(
                    st.message.contains("no cpus and no memory")
                        && st.message.ends_with(&format!("and {rest} more problems")),
                    "{:?}",
                    st.message
                );
                *updates.entry(st.task_id).or_default() += 1;
            }
            Event::Offers(o) => offered = o.offers.into_iter().next(),
            _ => continue,
        }
    }
    assert_eq!(updates.len(), MAX_TASKS_PER_LAUNCH, "every task answered");
    assert!(updates.values().all(|&n| n == 1), "each once");

    a_second_framework_still_launches(addr, &mut sched, offered, &mut agent).await;
}

/// Sends an accept of `tasks` on `offer` and expects it refused whole: an `Error` event
/// naming `needle`, no task update, and the offer's resources offered again (returned).
async fn refused_whole(
    sched: &mut Scheduler,
    offer: pb::Offer,
    offer_ids: impl FnOnce(String) -> Vec<String>,
    tasks: Vec<pb::TaskInfo>,
    needle: &str,
) -> pb::Offer {
    sched.accept(offer_ids(offer.id.clone()), tasks).await;
    let mut updates = 0;
    let e = sched
        .wait_for(|e| match e {
            Event::Error(e) => Some(e.clone()),
            Event::Update(_) => {
                updates += 1;
                None
            }
            _ => None,
        })
        .await;
    assert!(!e.fatal, "{e:?}");
    assert!(
        e.message.contains(needle),
        "{:?} should name {needle:?}",
        e.message
    );
    assert_eq!(updates, 0, "no per-task update");
    let again = sched.offers().await.remove(0);
    assert_ne!(again.id, offer.id);
    assert_eq!(
        again.resources,
        Some(res(4.0, 4096)),
        "the offer came back whole"
    );
    again
}

#[tokio::test]
async fn an_accept_past_the_task_or_offer_cap_is_refused_whole() {
    let (addr, _master, mut agent, mut sched) = start_cluster(
        fast_config(),
        res(4.0, 4096),
        framework_info("", "web", 60.0),
    )
    .await;
    let a = agent.id.clone();
    let one_past = MAX_TASKS_PER_LAUNCH + 1;
    let offer = sched.offers().await.remove(0);
    let offer = refused_whole(
        &mut sched,
        offer,
        |o| vec![o],
        empty_tasks(one_past, &a),
        &format!("{one_past} tasks; at most {MAX_TASKS_PER_LAUNCH}"),
    )
    .await;
    let offer = refused_whole(
        &mut sched,
        offer,
        |o| vec![o],
        empty_tasks(100_000, &a),
        &format!("100000 tasks; at most {MAX_TASKS_PER_LAUNCH}"),
    )
    .await;
    let many_offers = |o: String| {
        std::iter::once(o)
            .chain((0..MAX_OFFERS_PER_ACCEPT).map(|i| format!("no-such-{i}")))
            .collect()
    };
    let offer = refused_whole(
        &mut sched,
        offer,
        many_offers,
        vec![wasm_task("t", &a, 1.0, 64)],
        &format!("{} offer ids", MAX_OFFERS_PER_ACCEPT + 1),
    )
    .await;

    // At the caps the call is read: its problems are the tasks' own.
    let at_cap: Vec<String> = std::iter::once(offer.id)
        .chain((1..MAX_OFFERS_PER_ACCEPT).map(|i| format!("no-such-{i}")))
        .collect();
    sched
        .accept(at_cap, empty_tasks(MAX_TASKS_PER_LAUNCH, &a))
        .await;
    let st = sched.update_of("z0").await;
    assert_eq!(st.state, pb::TaskState::Error as i32, "{st:?}");
    assert!(
        st.message.contains("unknown or no longer valid"),
        "{:?}",
        st.message
    );

    a_second_framework_still_launches(addr, &mut sched, None, &mut agent).await;
}
