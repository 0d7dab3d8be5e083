//! Launch validation: every kind of bad launch is refused with a TASK_ERROR naming the reason,
//! the offers' resources return to the pool, nothing reaches the agent, and junk calls do not
//! hurt the master.

use std::collections::BTreeSet;

use crate::harness::*;
use wasmos_api::proto as pb;

async fn refused(sched: &mut Scheduler, task: &str, needle: &str) {
    let st = sched.update_of(task).await;
    assert_eq!(st.state, pb::TaskState::Error as i32, "{st:?}");
    assert_eq!(st.reason, "invalid_launch");
    assert!(
        st.message.contains(needle),
        "{:?} should mention {needle:?}",
        st.message
    );
}

#[tokio::test]
async fn invalid_launches_are_refused_with_reasons() {
    let mut config = fast_config();
    config.command_task_roles = Some(BTreeSet::from(["ops".to_string()]));
    let (_addr, _master, mut agent, mut sched) =
        start_cluster(config, res(2.0, 1024), framework_info("", "web", 60.0)).await;
    let a = agent.id.clone();

    // Unknown offer id.
    let o1 = sched.offers().await.remove(0);
    sched
        .accept(
            vec!["no-such-offer".into()],
            vec![wasm_task("t1", &a, 0.5, 64)],
        )
        .await;
    refused(&mut sched, "t1", "unknown or no longer valid").await;

    // Resources beyond the offer; the offer's resources come back in a new offer.
    sched
        .accept(vec![o1.id.clone()], vec![wasm_task("t2", &a, 8.0, 64)])
        .await;
    refused(&mut sched, "t2", "need").await;
    let o2 = sched.offers().await.remove(0);
    assert_ne!(o1.id, o2.id);
    assert_eq!(o2.resources, Some(res(2.0, 1024)), "all of it came back");

    // The used offer id is stale now.
    sched
        .accept(vec![o1.id.clone()], vec![wasm_task("t3", &a, 0.5, 64)])
        .await;
    refused(&mut sched, "t3", "unknown or no longer valid").await;

    // Duplicate task ids in one launch.
    sched
        .accept(
            vec![o2.id.clone()],
            vec![wasm_task("dup", &a, 0.5, 64), wasm_task("dup", &a, 0.5, 64)],
        )
        .await;
    refused(&mut sched, "dup", "used twice").await;

    // A command task from a role that may not run them.
    let o3 = sched.offers().await.remove(0);
    let mut cmd = wasm_task("cmd", &a, 0.5, 64);
    cmd.kind = Some(pb::task_info::Kind::Command(pb::CommandTask {
        argv: vec!["/bin/true".into()],
        env: vec![],
    }));
    sched.accept(vec![o3.id.clone()], vec![cmd]).await;
    refused(&mut sched, "cmd", "may not run native command tasks").await;

    // Malformed: no kind; no resources; wrong agent.
    let o4 = sched.offers().await.remove(0);
    let mut no_kind = wasm_task("nokind", &a, 0.5, 64);
    no_kind.kind = None;
    sched.accept(vec![o4.id.clone()], vec![no_kind]).await;
    refused(&mut sched, "nokind", "task.kind").await;
    let o5 = sched.offers().await.remove(0);
    sched
        .accept(vec![o5.id.clone()], vec![wasm_task("empty", &a, 0.0, 0)])
        .await;
    refused(&mut sched, "empty", "no cpus and no memory").await;
    let o6 = sched.offers().await.remove(0);
    sched
        .accept(
            vec![o6.id.clone()],
            vec![wasm_task("elsewhere", "other-agent", 0.5, 64)],
        )
        .await;
    refused(&mut sched, "elsewhere", "names agent other-agent").await;
    let o7 = sched.offers().await.remove(0);

    // Junk calls: an empty call, a second subscribe, bad ids. The stream stays usable.
    sched.send_raw(pb::SchedulerCall { call: None }).await;
    let e = sched.error().await;
    assert!(!e.fatal && e.message.contains("empty call"), "{e:?}");
    sched
        .call(Call::Subscribe(pb::scheduler_call::Subscribe {
            framework_info: None,
        }))
        .await;
    let e = sched.error().await;
    assert!(e.message.contains("already subscribed"), "{e:?}");
    sched.accept(vec!["../../etc".into()], vec![]).await;
    let e = sched.error().await;
    assert!(e.message.contains("accept.offer_ids"), "{e:?}");
    sched
        .call(Call::Kill(pb::scheduler_call::Kill {
            task_id: "bad id!".into(),
            agent_id: String::new(),
        }))
        .await;
    let e = sched.error().await;
    assert!(e.message.contains("kill.task_id"), "{e:?}");

    // A valid launch still works, and it is the first thing the agent is asked to run.
    sched
        .accept(vec![o7.id.clone()], vec![wasm_task("good", &a, 0.5, 64)])
        .await;
    let run = agent.run_tasks().await;
    let ids: Vec<&str> = run.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, ["good"]);
}

#[tokio::test]
async fn bad_subscriptions_are_refused() {
    let (addr, _master) = start_master(fast_config()).await;
    let err = refused_subscription(addr, framework_info("", "../root", 1.0)).await;
    assert!(err.message().contains("role"), "{err}");
    let err = refused_subscription(addr, framework_info("", "web", f64::NAN)).await;
    assert!(err.message().contains("failover_timeout_seconds"), "{err}");
    for name in ["evil\nFAKE LINE", "\u{1b}]0;title\u{7}", "nul\0"] {
        let mut info = framework_info("", "web", 1.0);
        info.name = name.into();
        let err = refused_subscription(addr, info).await;
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{name:?}: {err}");
        assert!(
            err.message().contains("framework_info.name") && err.message().contains("control"),
            "{err}"
        );
    }
    let err = refused_subscription(addr, framework_info("fw-unknown", "web", 1.0)).await;
    assert!(err.message().contains("not registered"), "{err}");
    let ok = Scheduler::subscribe(addr, framework_info("", "web", 1.0))
        .await
        .unwrap();
    let err = refused_subscription(addr, framework_info(&ok.id, "other", 1.0)).await;
    assert!(err.message().contains("cannot change"), "{err}");
}

const MAX_TIMEOUT: f64 = wasmos_api::limits::MAX_WASM_TASK_TIMEOUT_SECONDS;
const MAX_FUEL: u64 = wasmos_api::limits::MAX_WASM_TASK_FUEL;

/// Timeouts at the bound (accepted), one past, far past, and not a positive number.
fn bad_timeouts() -> [(f64, &'static str); 7] {
    [
        (MAX_TIMEOUT + 0.001, "the limit is 604800"),
        (MAX_TIMEOUT + 1.0, "the limit is 604800"),
        (1e300, "the limit is 604800"),
        (f64::INFINITY, "above 0"),
        (f64::NAN, "above 0"),
        (-1.0, "above 0"),
        (0.0, "above 0"),
    ]
}

fn bad_fuels() -> [(u64, &'static str); 3] {
    [
        (MAX_FUEL + 1, "the limit is 10000000000000"),
        (u64::MAX, "the limit is 10000000000000"),
        (0, "give 1..=10000000000000"),
    ]
}

#[tokio::test]
async fn a_frameworks_wasm_task_budget_out_of_bounds_is_refused_at_subscribe() {
    let (addr, _master) = start_master(fast_config()).await;
    for (t, needle) in bad_timeouts() {
        let mut info = framework_info("", "web", 1.0);
        info.wasm_task_timeout_seconds = Some(t);
        let err = refused_subscription(addr, info).await;
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{t}: {err}");
        assert!(
            err.message()
                .contains("framework_info.wasm_task_timeout_seconds")
                && err.message().contains(needle),
            "{t}: {err}"
        );
    }
    for (f, needle) in bad_fuels() {
        let mut info = framework_info("", "web", 1.0);
        info.wasm_task_fuel = Some(f);
        let err = refused_subscription(addr, info).await;
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{f}: {err}");
        assert!(
            err.message().contains("framework_info.wasm_task_fuel")
                && err.message().contains(needle),
            "{f}: {err}"
        );
    }
    // At the bounds: accepted; a re-subscription may repeat them or leave them unset, not
    // change them.
    let mut info = framework_info("", "web", 60.0);
    info.wasm_task_timeout_seconds = Some(MAX_TIMEOUT);
    info.wasm_task_fuel = Some(MAX_FUEL);
    let ok = Scheduler::subscribe(addr, info.clone()).await.unwrap();
    info.id = ok.id.clone();
    drop(Scheduler::subscribe(addr, info.clone()).await.unwrap());
    let mut changed = info.clone();
    changed.wasm_task_fuel = Some(1);
    let err = refused_subscription(addr, changed).await;
    assert!(
        err.message().contains("wasm_task_fuel") && err.message().contains("cannot change"),
        "{err}"
    );
    let mut unset = info;
    unset.wasm_task_timeout_seconds = None;
    unset.wasm_task_fuel = None;
    drop(Scheduler::subscribe(addr, unset).await.unwrap());
}

fn budget_task(id: &str, agent: &str, timeout: Option<f64>, fuel: Option<u64>) -> pb::TaskInfo {
    let mut t = wasm_task(id, agent, 0.1, 8);
    if let Some(pb::task_info::Kind::Wasm(w)) = &mut t.kind {
        w.timeout_seconds = timeout;
        w.fuel = fuel;
    }
    t
}

#[tokio::test]
async fn a_tasks_wasm_budget_out_of_bounds_is_refused_at_launch_and_the_frameworks_is_carried() {
    let mut info = framework_info("", "web", 60.0);
    info.wasm_task_timeout_seconds = Some(5.0);
    info.wasm_task_fuel = Some(123);
    let (_addr, _master, mut agent, mut sched) =
        start_cluster(fast_config(), res(2.0, 1024), info).await;
    let a = agent.id.clone();
    let mut n = 0;
    let mut cases: Vec<(pb::TaskInfo, &str, &str)> = Vec::new();
    for (t, needle) in bad_timeouts() {
        n += 1;
        let id = format!("t{n}");
        cases.push((
            budget_task(&id, &a, Some(t), None),
            "wasm.timeout_seconds",
            needle,
        ));
    }
    for (f, needle) in bad_fuels() {
        n += 1;
        let id = format!("t{n}");
        cases.push((budget_task(&id, &a, None, Some(f)), "wasm.fuel", needle));
    }
    for (task, field, needle) in cases {
        let id = task.task_id.clone();
        let o = sched.offers().await.remove(0);
        sched.accept(vec![o.id], vec![task]).await;
        let st = sched.update_of(&id).await;
        assert_eq!(st.state, pb::TaskState::Error as i32, "{id}: {st:?}");
        assert!(
            st.message.contains(field) && st.message.contains(needle),
            "{id}: {:?} should name {field} and {needle:?}",
            st.message
        );
    }
    // At the bounds, and unset: launched, with the framework's defaults carried beside them.
    let o = sched.offers().await.remove(0);
    sched
        .accept(
            vec![o.id],
            vec![
                budget_task("at-max", &a, Some(MAX_TIMEOUT), Some(MAX_FUEL)),
                budget_task("unset", &a, None, None),
            ],
        )
        .await;
    let run = agent.run_tasks().await;
    assert_eq!(run.wasm_task_timeout_seconds, Some(5.0));
    assert_eq!(run.wasm_task_fuel, Some(123));
    let budgets: Vec<(Option<f64>, Option<u64>)> = run
        .tasks
        .iter()
        .map(|t| match &t.kind {
            Some(pb::task_info::Kind::Wasm(w)) => (w.timeout_seconds, w.fuel),
            _ => panic!("a wasm task"),
        })
        .collect();
    assert_eq!(budgets, [(Some(MAX_TIMEOUT), Some(MAX_FUEL)), (None, None)]);
}
