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
