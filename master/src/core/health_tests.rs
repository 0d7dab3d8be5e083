//! Agents that cannot carry out launches, against `MasterCore` directly (no network, time passed
//! in): an agent that reports itself unhealthy has its offers rescinded and gets none until it
//! reports healthy again, and a task its agent never reports `RUNNING` is `LOST` after the
//! launch timeout, its resources freed and its agent told to kill it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};

use super::agents::MAX_UNHEALTHY_REASON_BYTES;
use super::*;

type SchedRx = mpsc::Receiver<Result<pb::SchedulerEvent, tonic::Status>>;
type AgentRx = mpsc::Receiver<Result<pb::MasterMessage, tonic::Status>>;

const LAUNCH_TIMEOUT_MS: Millis = 10_000;

/// A core with one agent and one framework.
struct World {
    core: MasterCore,
    agent: AgentId,
    agent_conn: ConnId,
    agent_rx: AgentRx,
    fw: FrameworkId,
    sched_conn: ConnId,
    sched_rx: SchedRx,
}

impl World {
    fn new() -> Self {
        let config = MasterConfig {
            launch_timeout: Some(Duration::from_millis(LAUNCH_TIMEOUT_MS)),
            ..MasterConfig::default()
        };
        let mut core = MasterCore::new(config, "t", Arc::new(Notify::new()));
        let (tx, agent_rx) = mpsc::channel(1024);
        let agent_conn = core.new_conn();
        let reg = pb::agent_message::Register {
            info: Some(pb::AgentInfo {
                id: String::new(),
                hostname: "h".into(),
                address: String::new(),
                resources: Some(pb::Resources {
                    millicpus: 4000,
                    mem_mb: 4096,
                    disk_mb: 0,
                }),
                attributes: vec![],
            }),
            tasks: vec![],
            unhealthy_reason: String::new(),
            isolation: vec![],
            isolation_warning: String::new(),
        };
        let agent = core.agent_register(agent_conn, tx, reg, 0).unwrap();
        let (tx, sched_rx) = mpsc::channel(1024);
        let sched_conn = core.new_conn();
        let info = pb::FrameworkInfo {
            id: String::new(),
            name: "f".into(),
            role: "r".into(),
            principal: String::new(),
            failover_timeout_seconds: 0.0,
            component_sha256: String::new(),
            ..Default::default()
        };
        let fw = core.subscribe(sched_conn, tx, Some(info), 0).unwrap();
        World {
            core,
            agent,
            agent_conn,
            agent_rx,
            fw,
            sched_conn,
            sched_rx,
        }
    }

    fn cycle_at(&mut self, at: Millis) {
        self.core.tick(at);
        self.core.allocate(at);
    }

    /// The scheduler's events since the last look.
    fn events(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(Ok(ev)) = self.sched_rx.try_recv() {
            out.extend(ev.event);
        }
        out
    }

    fn offers(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Offers(o) => Some(o.offers.iter().map(|o| o.id.clone())),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// What the agent was sent since the last look.
    fn to_agent(&mut self) -> Vec<pb::master_message::Message> {
        let mut out = Vec::new();
        while let Ok(Ok(m)) = self.agent_rx.try_recv() {
            out.extend(m.message);
        }
        out
    }

    fn heartbeat(&mut self, unhealthy_reason: &str, now: Millis) {
        let hb = pb::agent_message::Message::Heartbeat(pb::agent_message::Heartbeat {
            unhealthy_reason: unhealthy_reason.into(),
        });
        assert!(
            self.core
                .agent_message(&self.agent, self.agent_conn, Some(hb), now)
        );
    }

    fn launch(&mut self, offer: String, task: &str, now: Millis) {
        let task = pb::TaskInfo {
            task_id: task.into(),
            name: String::new(),
            agent_id: self.agent.to_string(),
            resources: Some(pb::Resources {
                millicpus: 1000,
                mem_mb: 128,
                disk_mb: 0,
            }),
            kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
                executor_id: "e".into(),
                payload: vec![],
                ..Default::default()
            })),
        };
        let accept = Call::Accept(pb::scheduler_call::Accept {
            offer_ids: vec![offer],
            launches: vec![task],
            filters: None,
        });
        assert!(
            self.core
                .scheduler_call(&self.fw, self.sched_conn, Some(accept), now)
        );
    }

    fn state_of(&self, task: &str) -> Option<pb::TaskSummary> {
        self.core
            .cluster_state(&Default::default())
            .tasks
            .into_iter()
            .find(|t| t.status.as_ref().is_some_and(|s| s.task_id == task))
    }
}

#[test]
fn an_unhealthy_agent_is_not_offered_until_it_is_healthy_again() {
    let mut w = World::new();
    w.cycle_at(0);
    let offered = World::offers(&w.events());
    assert_eq!(offered.len(), 1);

    w.heartbeat(
        "the agent's store cannot write: No space left on device",
        100,
    );
    let events = w.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Rescind(r) if r.offer_id == offered[0])),
        "the outstanding offer is rescinded: {events:?}"
    );
    let state = w.core.cluster_state(&Default::default());
    assert_eq!(
        state.agents[0].unhealthy_reason,
        "the agent's store cannot write: No space left on device"
    );
    // Cycles long after: nothing offered, heartbeats repeating the reason change nothing.
    for at in [200, 1_000, 60_000, 3_600_000] {
        w.heartbeat(
            "the agent's store cannot write: No space left on device",
            at,
        );
        w.cycle_at(at);
        assert!(World::offers(&w.events()).is_empty(), "offered at {at}");
    }

    w.heartbeat("", 3_600_100);
    w.cycle_at(3_600_100);
    assert_eq!(World::offers(&w.events()).len(), 1, "offered once healthy");
    let state = w.core.cluster_state(&Default::default());
    assert_eq!(state.agents[0].unhealthy_reason, "");
}

#[test]
fn an_unhealthy_reason_is_cut_to_its_bound() {
    let mut w = World::new();
    let at_bound = "x".repeat(MAX_UNHEALTHY_REASON_BYTES);
    w.heartbeat(&at_bound, 1);
    let state = w.core.cluster_state(&Default::default());
    assert_eq!(state.agents[0].unhealthy_reason, at_bound);
    // One past and far past, with a multi-byte character across the cut.
    for reason in [
        format!("{at_bound}y"),
        format!(
            "{}é{}",
            "x".repeat(MAX_UNHEALTHY_REASON_BYTES - 1),
            "z".repeat(1 << 20)
        ),
    ] {
        w.heartbeat(&reason, 2);
        let kept = w.core.cluster_state(&Default::default()).agents[0]
            .unhealthy_reason
            .clone();
        assert!(kept.len() <= MAX_UNHEALTHY_REASON_BYTES, "{}", kept.len());
        assert!(reason.starts_with(&kept));
    }
}

#[test]
fn a_launch_never_reported_running_is_lost_after_the_timeout() {
    let mut w = World::new();
    w.cycle_at(0);
    let offer = World::offers(&w.events()).remove(0);
    w.launch(offer, "stuck", 0);
    let sent = w.to_agent();
    assert!(
        sent.iter()
            .any(|m| matches!(m, pb::master_message::Message::RunTasks(_))),
        "{sent:?}"
    );
    // Just before the timeout it still waits.
    w.cycle_at(LAUNCH_TIMEOUT_MS - 1);
    w.events();
    assert_eq!(
        w.state_of("stuck").unwrap().status.unwrap().state,
        pb::TaskState::Staging as i32
    );
    // Within a tenth past it (the scan runs that often), it is lost, with why.
    w.cycle_at(LAUNCH_TIMEOUT_MS + LAUNCH_TIMEOUT_MS / 10);
    let events = w.events();
    let lost = events
        .iter()
        .find_map(|e| match e {
            Event::Update(u) => u.status.clone().filter(|s| s.task_id == "stuck"),
            _ => None,
        })
        .expect("an update for the stuck task");
    assert_eq!(lost.state, pb::TaskState::Lost as i32);
    assert_eq!(lost.reason, "launch_timeout");
    assert!(lost.message.contains("launch timeout"), "{}", lost.message);
    // It stays in the book, LOST, until its framework acknowledges that update.
    assert_eq!(
        w.state_of("stuck").unwrap().status.unwrap().state,
        pb::TaskState::Lost as i32
    );
    // The agent is told to kill it, and its resources are offered again.
    let sent = w.to_agent();
    assert!(
        sent.iter().any(|m| matches!(m,
            pb::master_message::Message::KillTasks(k) if k.tasks.iter().any(|t| t.task_id == "stuck"))),
        "{sent:?}"
    );
    assert!(
        !World::offers(&events).is_empty(),
        "the freed resources are offered again: {events:?}"
    );
    let state = w.core.cluster_state(&Default::default());
    assert_eq!(state.agents[0].active_tasks, 0);
}

#[test]
fn a_launch_reported_running_in_time_is_kept() {
    let mut w = World::new();
    w.cycle_at(0);
    let offer = World::offers(&w.events()).remove(0);
    w.launch(offer, "ok", 0);
    let running = pb::agent_message::Message::StatusUpdates(pb::agent_message::StatusUpdates {
        updates: vec![pb::AgentStatusUpdate {
            framework_id: w.fw.to_string(),
            status: Some(pb::TaskStatus {
                task_id: "ok".into(),
                state: pb::TaskState::Running as i32,
                uuid: "u1".into(),
                ..Default::default()
            }),
        }],
    });
    assert!(
        w.core
            .agent_message(&w.agent, w.agent_conn, Some(running), LAUNCH_TIMEOUT_MS - 1)
    );
    // Far past the timeout (within the agent's heartbeat timeout).
    w.heartbeat("", LAUNCH_TIMEOUT_MS * 5);
    w.cycle_at(LAUNCH_TIMEOUT_MS * 5);
    assert_eq!(
        w.state_of("ok").unwrap().status.unwrap().state,
        pb::TaskState::Running as i32
    );
}

#[test]
fn a_task_lost_to_the_launch_timeout_is_killed_not_adopted_when_its_agent_reports_it() {
    let mut w = World::new();
    w.cycle_at(0);
    let offer = World::offers(&w.events()).remove(0);
    w.launch(offer, "late", 0);
    w.cycle_at(LAUNCH_TIMEOUT_MS + LAUNCH_TIMEOUT_MS / 10);
    let lost = w
        .events()
        .iter()
        .find_map(|e| match e {
            Event::Update(u) => u.status.clone().filter(|s| s.task_id == "late"),
            _ => None,
        })
        .expect("the LOST update");
    assert_eq!(lost.state, pb::TaskState::Lost as i32);
    // The framework acknowledges it: the record leaves the book.
    let ack = Call::Acknowledge(pb::scheduler_call::Acknowledge {
        agent_id: lost.agent_id.clone(),
        task_id: lost.task_id.clone(),
        uuid: lost.uuid.clone(),
    });
    let now = LAUNCH_TIMEOUT_MS * 2;
    assert!(w.core.scheduler_call(&w.fw, w.sched_conn, Some(ack), now));
    assert!(
        w.state_of("late").is_none(),
        "acknowledged, it is forgotten"
    );
    w.to_agent();
    // The agent comes back on a new connection, the task having started after all.
    let (tx, agent_rx) = mpsc::channel(1024);
    let conn = w.core.new_conn();
    let reg = pb::agent_message::Register {
        info: Some(pb::AgentInfo {
            id: w.agent.to_string(),
            hostname: "h".into(),
            address: String::new(),
            resources: Some(pb::Resources {
                millicpus: 4000,
                mem_mb: 4096,
                disk_mb: 0,
            }),
            attributes: vec![],
        }),
        tasks: vec![pb::RunningTask {
            framework_id: w.fw.to_string(),
            task: Some(pb::TaskInfo {
                task_id: "late".into(),
                name: String::new(),
                agent_id: w.agent.to_string(),
                resources: Some(pb::Resources {
                    millicpus: 1000,
                    mem_mb: 128,
                    disk_mb: 0,
                }),
                kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
                    executor_id: "e".into(),
                    payload: vec![],
                    ..Default::default()
                })),
            }),
            state: pb::TaskState::Running as i32,
        }],
        unhealthy_reason: String::new(),
        isolation: vec![],
        isolation_warning: String::new(),
    };
    w.core.agent_register(conn, tx, reg, now + 1).unwrap();
    w.agent_conn = conn;
    w.agent_rx = agent_rx;
    // Not adopted: the master declared it lost, so it is killed there.
    assert!(w.state_of("late").is_none(), "{:?}", w.state_of("late"));
    let sent = w.to_agent();
    assert!(
        sent.iter().any(|m| matches!(m,
            pb::master_message::Message::KillTasks(k) if k.tasks.iter().any(|t| t.task_id == "late"))),
        "{sent:?}"
    );
    assert!(
        !w.events().iter().any(|e| matches!(e,
            Event::Update(u) if u.status.as_ref().is_some_and(|s| s.task_id == "late"))),
        "the framework hears nothing more of the task"
    );
    let state = w.core.cluster_state(&Default::default());
    assert_eq!(state.agents[0].active_tasks, 0);
}
