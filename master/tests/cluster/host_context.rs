//! The framework host on its own: a real component (`service`) hosted against a bare
//! [`MasterCore`] through a test [`HostContext`], with a fake agent registered straight with
//! the core. No gRPC server and no Raft: this is the narrow context the host is written
//! against.
//!
//! What it pins down: a scheduler's `state-put`s hold back its next callback until the context
//! says they are committed (its launch reaches the agent only then), and the host's running set
//! is what the cluster state reports as `hosted`, from start until the framework is torn down.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};
use wasmos_api::proto as pb;
use wasmos_master::allocator::Millis;
use wasmos_master::blobs::Digest;
use wasmos_master::core::MasterCore;
use wasmos_master::{FrameworkHost, HostContext, MasterConfig};
use wasmos_wasm_executor::RuntimeConfig;

use crate::harness::*;

/// A context over a bare core whose commit wait holds until the test opens `commits`.
#[derive(Clone)]
struct BareContext {
    core: Arc<Mutex<MasterCore>>,
    start: Instant,
    commits: watch::Receiver<bool>,
}

impl HostContext for BareContext {
    fn core(&self) -> MutexGuard<'_, MasterCore> {
        wasmos_master::sync::lock(&self.core)
    }

    fn now(&self) -> Millis {
        self.start.elapsed().as_millis() as Millis
    }

    fn committed(&self) -> impl Future<Output = Result<(), tonic::Status>> + Send {
        let mut commits = self.commits.clone();
        async move {
            commits
                .wait_for(|open| *open)
                .await
                .map(|_| ())
                .map_err(|_| tonic::Status::unavailable("the test dropped its commit gate"))
        }
    }
}

/// Receives the next `RunTasks` sent to the fake agent, skipping other messages.
async fn next_run_tasks(
    rx: &mut mpsc::Receiver<Result<pb::MasterMessage, tonic::Status>>,
) -> pb::master_message::RunTasks {
    loop {
        let m = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("a message for the agent in time")
            .expect("the agent's queue stays open")
            .expect("no error for the agent");
        if let Some(ToAgent::RunTasks(r)) = m.message {
            return r;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_scheduler_waits_for_its_state_to_commit_and_is_listed_while_it_runs() {
    let (open_commits, commits) = watch::channel(false);
    let ctx = BareContext {
        core: Arc::new(Mutex::new(MasterCore::new(
            MasterConfig {
                // service runs native command tasks, which no role may by default.
                command_task_roles: None,
                ..fast_config()
            },
            "test",
            Arc::new(Notify::new()),
        ))),
        start: Instant::now(),
        commits,
    };

    // A fake agent: its queue is read by the test, nothing runs.
    let (agent_tx, mut agent_rx) = mpsc::channel(64);
    {
        let now = ctx.now();
        let mut core = ctx.core();
        let conn = core.new_conn();
        core.agent_register(
            conn,
            agent_tx,
            pb::agent_message::Register {
                info: Some(pb::AgentInfo {
                    id: String::new(),
                    hostname: "fake".into(),
                    address: String::new(),
                    resources: Some(res(2.0, 2048)),
                    attributes: vec![],
                }),
                tasks: vec![],
                unhealthy_reason: String::new(),
                isolation: vec![],
                isolation_warning: String::new(),
            },
            now,
        )
        .expect("the fake agent registers");
    }
    // The timer loop a master would run.
    let timers = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            loop {
                let now = ctx.now();
                {
                    let mut core = ctx.core();
                    core.tick(now);
                    core.allocate(now);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    let bytes = example_bytes("service");
    let digest = Digest::of(&bytes);
    ctx.core()
        .put_component(digest, bytes)
        .expect("component stored");
    let host = FrameworkHost::new(RuntimeConfig {
        pooling: None,
        ..RuntimeConfig::default()
    })
    .expect("engine");
    let hosted = host
        .start(
            &ctx,
            pb::FrameworkInfo {
                id: String::new(),
                name: "service".into(),
                role: "batch".into(),
                principal: "tester".into(),
                failover_timeout_seconds: 0.0,
                component_sha256: digest.to_string(),
                ..Default::default()
            },
            ["1", "0.1", "32", "--", "sleep", "1000"]
                .map(String::from)
                .to_vec(),
            FrameworkHost::default_limits(),
        )
        .await
        .expect("service starts");
    let fw = hosted.framework_id.clone();

    // Listed as hosted from the start, in the host's set and in the cluster state.
    assert!(host.is_running(&fw));
    let state = ctx.core().cluster_state(&host.running());
    assert_eq!(state.hosted_schedulers, 1);
    let summary = state
        .frameworks
        .iter()
        .find(|f| f.info.as_ref().is_some_and(|i| i.id == fw.to_string()))
        .expect("the framework is in the cluster state");
    assert!(summary.hosted, "{summary:?}");

    // init's state-put is applied to the core at once, but not committed: the offer the
    // scheduler has been sent waits, so nothing reaches the agent.
    let no_launch_yet = |rx: &mut mpsc::Receiver<Result<pb::MasterMessage, tonic::Status>>| {
        while let Ok(m) = rx.try_recv() {
            let m = m.expect("no error for the agent");
            assert!(
                !matches!(m.message, Some(ToAgent::RunTasks(_))),
                "a launch went out before the scheduler's state was committed"
            );
        }
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        no_launch_yet(&mut agent_rx);
        let offered = {
            let core = ctx.core();
            let stored = core
                .registry()
                .framework_state
                .get(&fw)
                .is_some_and(|s| s.contains_key("instances"));
            let offers = core
                .cluster_state(&host.running())
                .frameworks
                .iter()
                .any(|f| f.offers > 0);
            stored && offers
        };
        if offered {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no state-put and offer in time"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Time for a scheduler that did not wait to answer its offer.
    tokio::time::sleep(Duration::from_millis(300)).await;
    no_launch_yet(&mut agent_rx);

    // Committed: the scheduler takes its offer and launches.
    open_commits.send_replace(true);
    let run = next_run_tasks(&mut agent_rx).await;
    assert_eq!(run.framework_id, fw.to_string());
    let Some(pb::task_info::Kind::Command(c)) = &run.tasks[0].kind else {
        panic!("service launches command tasks: {run:?}")
    };
    assert_eq!(c.argv, ["sleep", "1000"]);

    // Torn down: the driving task ends and the host no longer lists the framework.
    let now = ctx.now();
    ctx.core()
        .operator_teardown(&fw, now)
        .expect("the framework is torn down");
    tokio::time::timeout(WAIT, hosted.task)
        .await
        .expect("the hosted scheduler stops in time")
        .expect("the hosting task does not panic");
    assert!(!host.is_running(&fw));
    assert_eq!(
        ctx.core().cluster_state(&host.running()).hosted_schedulers,
        0
    );
    timers.abort();
}
