//! Master-made status updates against `MasterCore` directly (no network, time passed in): the
//! `LOST` updates of an agent with more tasks than its framework's event queue holds all
//! reach a framework that reads slowly, each is resent after the resend interval until
//! acknowledged and not after; answers about tasks the master does not hold are kept up to
//! `MAX_RESENT_ANSWERS_PER_FRAMEWORK` per framework.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::{Notify, mpsc};
use wasmos_api::limits::{MAX_RESENT_ANSWERS_PER_FRAMEWORK, MAX_TASKS_PER_LAUNCH};

use super::*;

type SchedRx = mpsc::Receiver<Result<pb::SchedulerEvent, tonic::Status>>;
type AgentRx = mpsc::Receiver<Result<pb::MasterMessage, tonic::Status>>;

/// The scheduler's event queue in these tests: far fewer than the updates it must carry.
const QUEUE: usize = 32;

struct World {
    core: MasterCore,
    now: Millis,
    agent: AgentId,
    agent_conn: ConnId,
    _agent_rx: AgentRx,
    fw: FrameworkId,
    conn: ConnId,
    rx: SchedRx,
}

impl World {
    fn new(config: MasterConfig, queue: usize) -> Self {
        let mut core = MasterCore::new(config, "t", Arc::new(Notify::new()));
        let (tx, agent_rx) = mpsc::channel(1024);
        let agent_conn = core.new_conn();
        let reg = pb::agent_message::Register {
            info: Some(pb::AgentInfo {
                id: String::new(),
                hostname: "h".into(),
                address: String::new(),
                resources: Some(pb::Resources {
                    millicpus: 64_000,
                    mem_mb: 64_000,
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
        let (tx, rx) = mpsc::channel(queue);
        let conn = core.new_conn();
        let info = pb::FrameworkInfo {
            id: String::new(),
            name: "f".into(),
            role: "r".into(),
            principal: String::new(),
            failover_timeout_seconds: 3600.0,
            component_sha256: String::new(),
            ..Default::default()
        };
        let fw = core.subscribe(conn, tx, Some(info), 0).unwrap();
        World {
            core,
            now: 0,
            agent,
            agent_conn,
            _agent_rx: agent_rx,
            fw,
            conn,
            rx,
        }
    }

    fn call(&mut self, call: Call) {
        assert!(
            self.core
                .scheduler_call(&self.fw, self.conn, Some(call), self.now)
        );
    }

    /// Every event queued for the scheduler now.
    fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Ok(Ok(ev)) = self.rx.try_recv() {
            out.extend(ev.event);
        }
        out
    }

    /// The status updates queued for the scheduler now.
    fn updates(&mut self) -> Vec<pb::TaskStatus> {
        self.drain()
            .into_iter()
            .filter_map(|e| match e {
                Event::Update(u) => u.status,
                _ => None,
            })
            .collect()
    }

    fn ack(&mut self, s: &pb::TaskStatus) {
        self.call(Call::Acknowledge(pb::scheduler_call::Acknowledge {
            agent_id: s.agent_id.clone(),
            task_id: s.task_id.clone(),
            uuid: s.uuid.clone(),
        }));
    }

    /// Launches `n` small tasks `t0..` on the agent (in launches of at most
    /// `MAX_TASKS_PER_LAUNCH`).
    fn launch(&mut self, n: usize) {
        let mut next = 0;
        while next < n {
            // Past the remainder's filter of the previous launch.
            self.now += 10_000;
            self.core.allocate(self.now);
            let offer = self
                .drain()
                .into_iter()
                .find_map(|e| match e {
                    Event::Offers(o) => o.offers.into_iter().next(),
                    _ => None,
                })
                .expect("an offer of the agent");
            let count = (n - next).min(MAX_TASKS_PER_LAUNCH);
            let launches = (next..next + count)
                .map(|i| pb::TaskInfo {
                    task_id: format!("t{i}"),
                    name: format!("t{i}"),
                    agent_id: self.agent.to_string(),
                    resources: Some(pb::Resources {
                        millicpus: 10,
                        mem_mb: 10,
                        disk_mb: 0,
                    }),
                    kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
                        executor_id: "e".into(),
                        payload: vec![],
                        ..Default::default()
                    })),
                })
                .collect();
            self.call(Call::Accept(pb::scheduler_call::Accept {
                offer_ids: vec![offer.id],
                launches,
                filters: None,
            }));
            next += count;
        }
        assert_eq!(self.core.tasks.of_framework(&self.fw).len(), n);
    }

    /// The agent's stream closes (its tasks become UNREACHABLE), and it stays away past its
    /// removal timeout (they become LOST).
    fn lose_the_agent(&mut self) {
        let agent = self.agent.clone();
        self.core
            .agent_disconnected(&agent, self.agent_conn, self.now);
        self.now += MasterCore::ms(self.core.config.agent_removal_timeout) + 1;
        self.core.tick(self.now);
    }
}

fn config() -> MasterConfig {
    MasterConfig {
        offer_timeout: None,
        ..MasterConfig::default()
    }
}

#[test]
fn every_lost_update_reaches_a_slow_framework_and_is_resent_until_acknowledged() {
    // Far more tasks than the queue holds: 10 times, and more than one launch's worth.
    const TASKS: usize = 10 * QUEUE + MAX_TASKS_PER_LAUNCH;
    let mut w = World::new(config(), QUEUE);
    let resend = MasterCore::ms(w.core.config.update_resend_interval);
    w.launch(TASKS);
    w.lose_the_agent();
    // The framework reads its queue once per resend scan and acknowledges every LOST but
    // one's; the UNREACHABLE updates it is sent first it acknowledges too.
    let kept = "t7".to_string();
    let mut lost: BTreeMap<String, pb::TaskStatus> = BTreeMap::new();
    let mut scans = 0;
    while lost.len() < TASKS {
        scans += 1;
        assert!(
            scans <= 4 * TASKS / QUEUE,
            "after {scans} scans, {} of {TASKS} LOST updates arrived",
            lost.len()
        );
        for s in w.updates() {
            assert!(!s.uuid.is_empty(), "a master-made update has a uuid: {s:?}");
            if s.state == pb::TaskState::Lost as i32 {
                assert_eq!(s.reason, "agent_removed");
                lost.insert(s.task_id.clone(), s.clone());
            }
            if s.task_id != kept || s.state != pb::TaskState::Lost as i32 {
                w.ack(&s);
            }
        }
        w.now += resend / 10;
        w.core.tick(w.now);
    }
    assert_eq!(
        lost.keys().cloned().collect::<BTreeSet<_>>(),
        (0..TASKS).map(|i| format!("t{i}")).collect(),
    );
    // The acknowledged tasks are gone; the one not acknowledged stays, LOST, and its update
    // comes again every resend interval (not sooner) with the same uuid, and only it.
    let first = lost[&kept].clone();
    let mut again = w.updates();
    for _ in 0..10 {
        if !again.is_empty() {
            break;
        }
        w.now += resend / 10;
        w.core.tick(w.now);
        again = w.updates();
    }
    for round in 0..3 {
        assert_eq!(again.len(), 1, "round {round}: {again:?}");
        assert_eq!(
            (&again[0].task_id, &again[0].uuid, again[0].state),
            (&kept, &first.uuid, pb::TaskState::Lost as i32)
        );
        for _ in 0..9 {
            w.now += resend / 10;
            w.core.tick(w.now);
            assert!(w.updates().is_empty(), "resent before the interval");
        }
        w.now += resend / 10;
        w.core.tick(w.now);
        again = w.updates();
    }
    assert_eq!(w.core.tasks.of_framework(&w.fw).len(), 1);
    // Acknowledged, it is resent no more and leaves the book.
    w.ack(&again[0]);
    for _ in 0..30 {
        w.now += resend / 10;
        w.core.tick(w.now);
    }
    assert!(w.updates().is_empty());
    assert!(w.core.tasks.is_empty() && w.core.unacked.is_empty());
}

#[test]
fn reconciliation_answers_are_resent_until_acknowledged() {
    let mut w = World::new(config(), 1024);
    let resend = MasterCore::ms(w.core.config.update_resend_interval);
    w.launch(1);
    w.call(Call::Reconcile(pb::scheduler_call::Reconcile {
        tasks: vec![
            pb::scheduler_call::reconcile::Task {
                task_id: "t0".into(),
                agent_id: String::new(),
            },
            pb::scheduler_call::reconcile::Task {
                task_id: "nope".into(),
                agent_id: String::new(),
            },
        ],
    }));
    let answers = w.updates();
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|s| !s.uuid.is_empty()), "{answers:?}");
    w.now += resend;
    w.core.tick(w.now);
    let again = w.updates();
    assert_eq!(
        again.iter().map(|s| &s.uuid).collect::<BTreeSet<_>>(),
        answers.iter().map(|s| &s.uuid).collect::<BTreeSet<_>>(),
    );
    for s in &again {
        w.ack(s);
    }
    w.now += resend;
    w.core.tick(w.now);
    assert!(w.updates().is_empty());
    // The running task stays; the answer about the unknown one is forgotten.
    assert_eq!(w.core.tasks.len(), 1);
    assert!(w.core.answers.is_empty() && w.core.unacked.is_empty());
}

#[test]
fn answers_about_unknown_tasks_are_kept_up_to_the_cap() {
    let cap = MAX_RESENT_ANSWERS_PER_FRAMEWORK;
    let mut w = World::new(config(), 3 * cap);
    let reconcile = |w: &mut World, ids: std::ops::Range<usize>| {
        w.call(Call::Reconcile(pb::scheduler_call::Reconcile {
            tasks: ids
                .map(|i| pb::scheduler_call::reconcile::Task {
                    task_id: format!("u{i}"),
                    agent_id: String::new(),
                })
                .collect(),
        }));
        w.updates()
    };
    // At the cap: every answer has a uuid. One past and far past: sent once, without.
    let at = reconcile(&mut w, 0..cap);
    assert!(at.iter().all(|s| !s.uuid.is_empty()));
    let past = reconcile(&mut w, cap..2 * cap);
    assert_eq!(past.len(), cap);
    assert!(past.iter().all(|s| s.uuid.is_empty()), "{:?}", past[0]);
    // Asking again about a kept one replaces it, without growing past the cap.
    let same = reconcile(&mut w, 0..1);
    assert!(!same[0].uuid.is_empty() && same[0].uuid != at[0].uuid);
    assert_eq!(w.core.answers.len(), cap);
    // Once one is acknowledged there is room for one more.
    w.ack(&same[0]);
    let one_more = reconcile(&mut w, 2 * cap..2 * cap + 2);
    assert!(!one_more[0].uuid.is_empty() && one_more[1].uuid.is_empty());
    // A stale uuid acknowledges nothing.
    let mut stale = at[1].clone();
    stale.uuid = at[0].uuid.clone();
    w.ack(&stale);
    assert_eq!(w.core.answers.len(), cap);
}

/// A master that leads a second time (a core rebuilt from the registry, in the same process)
/// mints ids past those of its first term: the registry refuses a removed framework's id, so
/// reusing one failed every subscription (and submission) until the counter passed the old
/// ones. Found by the chaos soak (a follower paused and resumed, the leader re-elected).
#[test]
fn a_master_leading_again_does_not_mint_the_ids_of_its_first_term() {
    let info = |name: &str| pb::FrameworkInfo {
        name: name.into(),
        role: "r".into(),
        ..Default::default()
    };
    let mut first = MasterCore::new(MasterConfig::default(), "t", Arc::new(Notify::new()));
    let mut used = Vec::new();
    for i in 0..3 {
        let (tx, _rx) = mpsc::channel(QUEUE);
        let conn = first.new_conn();
        let fw = first
            .subscribe(conn, tx, Some(info(&format!("f{i}"))), 0)
            .unwrap();
        first.remove_framework(&fw, 0, "done");
        used.push(fw);
    }
    let mut again = MasterCore::from_registry(
        MasterConfig::default(),
        "t",
        Arc::new(Notify::new()),
        first.registry().clone(),
        0,
        std::time::Duration::from_secs(2),
    );
    again.continue_ids_from(&first);
    let (tx, _rx) = mpsc::channel(QUEUE);
    let conn = again.new_conn();
    let fw = again
        .subscribe(conn, tx, Some(info("f3")), 0)
        .expect("a new framework subscribes on the master leading again");
    assert!(!used.contains(&fw), "{fw} was minted in the first term");
}
