//! Random sequences of scheduler calls and agent messages (valid, stale and malformed) fed to
//! `MasterCore` directly, with time jumping forward: the master never panics, after every step
//! its books agree with each other (see `check_invariants`), and what the clients saw agrees
//! with an oracle kept here from the events alone: no offer id is ever given twice, every
//! offer names a connected agent and is non-empty, and the offers outstanding on an agent
//! (offered, not yet rescinded, accepted or declined) never add up to more than the agent has.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::sync::{Notify, mpsc};
use wasmos_api::Resources;

use super::*;

const SLOTS: usize = 3;

#[derive(Clone, Debug)]
struct TaskSpec {
    task_no: u8,
    millicpus: u64,
    mem_mb: u64,
    wrong_agent: bool,
    kind: u8,
}

#[derive(Clone, Debug)]
enum Op {
    Subscribe {
        s: usize,
        failover: u8,
    },
    SchedulerGone(usize),
    AgentRegister {
        a: usize,
        report: bool,
    },
    AgentGone(usize),
    Accept {
        s: usize,
        picks: Vec<usize>,
        tasks: Vec<TaskSpec>,
        bogus_offer: bool,
    },
    Decline {
        s: usize,
        pick: usize,
        refuse: bool,
    },
    AgentUpdate {
        pick: usize,
        state: u8,
        reuse_uuid: bool,
    },
    Ack {
        pick: usize,
    },
    Kill {
        s: usize,
        task_no: u8,
    },
    Reconcile {
        s: usize,
        all: bool,
    },
    Revive(usize),
    Suppress(usize),
    Teardown(usize),
    Garbage(usize),
    Tick {
        dt: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    // Mostly valid tasks, so launches succeed often; sometimes broken in one way or another.
    let kind = prop_oneof![8 => Just(0u8), 1 => Just(2u8), 1 => Just(3u8)];
    let task = (
        0u8..12,
        0u64..1200,
        0u64..500,
        prop::bool::weighted(0.03),
        kind,
    )
        .prop_map(|(task_no, millicpus, mem_mb, wrong_agent, kind)| TaskSpec {
            task_no,
            millicpus,
            mem_mb,
            wrong_agent,
            kind,
        });
    prop_oneof![
        3 => (0..SLOTS, 0u8..3).prop_map(|(s, failover)| Op::Subscribe { s, failover }),
        1 => (0..SLOTS).prop_map(Op::SchedulerGone),
        3 => (0..SLOTS, any::<bool>()).prop_map(|(a, report)| Op::AgentRegister { a, report }),
        1 => (0..SLOTS).prop_map(Op::AgentGone),
        5 => (0..SLOTS, prop_oneof![8 => prop::collection::vec(any::<usize>(), 1..2),
                                     1 => prop::collection::vec(any::<usize>(), 0..3)],
              prop::collection::vec(task, 1..3), prop::bool::weighted(0.05))
            .prop_map(|(s, picks, tasks, bogus_offer)| Op::Accept { s, picks, tasks, bogus_offer }),
        2 => (0..SLOTS, any::<usize>(), any::<bool>())
            .prop_map(|(s, pick, refuse)| Op::Decline { s, pick, refuse }),
        4 => (any::<usize>(), 0u8..10, prop::bool::weighted(0.2))
            .prop_map(|(pick, state, reuse_uuid)| Op::AgentUpdate { pick, state, reuse_uuid }),
        3 => any::<usize>().prop_map(|pick| Op::Ack { pick }),
        1 => (0..SLOTS, 0u8..7).prop_map(|(s, task_no)| Op::Kill { s, task_no }),
        1 => (0..SLOTS, any::<bool>()).prop_map(|(s, all)| Op::Reconcile { s, all }),
        1 => (0..SLOTS).prop_map(Op::Revive),
        1 => (0..SLOTS).prop_map(Op::Suppress),
        1 => (0..SLOTS).prop_map(Op::Teardown),
        1 => (0..SLOTS).prop_map(Op::Garbage),
        4 => (0u64..2500).prop_map(|dt| Op::Tick { dt }),
    ]
}

type SchedRx = mpsc::Receiver<Result<pb::SchedulerEvent, tonic::Status>>;
type AgentRx = mpsc::Receiver<Result<pb::MasterMessage, tonic::Status>>;

struct World {
    core: MasterCore,
    now: Millis,
    schedulers: [Option<(FrameworkId, ConnId, SchedRx)>; SLOTS],
    framework_ids: [Option<FrameworkId>; SLOTS],
    agents: [Option<(AgentId, ConnId, AgentRx)>; SLOTS],
    agent_ids: [Option<AgentId>; SLOTS],
    /// (framework, offer id, agent)
    offers: Vec<(FrameworkId, String, String)>,
    /// Updates seen by schedulers that carry a uuid.
    updates: Vec<(FrameworkId, pb::TaskStatus)>,
    /// Tasks agents were asked to run: (agent, framework, task).
    launched: Vec<(AgentId, FrameworkId, pb::TaskInfo)>,
    uuid: u64,
    /// The oracle's own books: every offer id seen, and the offers outstanding as the
    /// schedulers see them (id -> framework, agent, resources).
    seen_offers: HashSet<String>,
    outstanding: HashMap<String, (FrameworkId, AgentId, Resources)>,
    /// What the oracle found wrong since the last check.
    violations: Vec<String>,
}

/// What every agent of this test registers with.
const AGENT_TOTAL: Resources = Resources {
    millicpus: 4000,
    mem_mb: 2048,
    disk_mb: 0,
};

impl World {
    fn new() -> Self {
        let config = MasterConfig {
            offer_timeout: Some(Duration::from_millis(3000)),
            agent_unreachable_timeout: Duration::from_millis(4000),
            agent_removal_timeout: Duration::from_millis(4000),
            update_resend_interval: Duration::from_millis(1000),
            command_task_roles: Some(BTreeSet::from(["r0".to_string()])),
            ..MasterConfig::default()
        };
        World {
            core: MasterCore::new(config, "t", Arc::new(Notify::new())),
            now: 0,
            schedulers: [None, None, None],
            framework_ids: [None, None, None],
            agents: [None, None, None],
            agent_ids: [None, None, None],
            offers: Vec::new(),
            updates: Vec::new(),
            launched: Vec::new(),
            uuid: 0,
            seen_offers: HashSet::new(),
            outstanding: HashMap::new(),
            violations: Vec::new(),
        }
    }

    fn drain(&mut self) {
        for slot in self.schedulers.iter_mut() {
            let Some((fw, _, rx)) = slot else { continue };
            let mut closed = false;
            loop {
                match rx.try_recv() {
                    Ok(Ok(ev)) => match ev.event {
                        Some(Event::Offers(o)) => {
                            for x in o.offers {
                                let r = wasmos_api::convert::resources(x.resources);
                                if !self.seen_offers.insert(x.id.clone()) {
                                    self.violations
                                        .push(format!("offer id {} given twice", x.id));
                                }
                                if r.is_zero() {
                                    self.violations.push(format!("offer {} is empty", x.id));
                                }
                                match AgentId::new(x.agent_id.clone()) {
                                    Ok(agent)
                                        if self.agents.iter().flatten().any(|a| a.0 == agent) =>
                                    {
                                        self.outstanding
                                            .insert(x.id.clone(), (fw.clone(), agent, r));
                                    }
                                    _ => self.violations.push(format!(
                                        "offer {} names agent {:?}, which is not connected",
                                        x.id, x.agent_id
                                    )),
                                }
                                self.offers.push((fw.clone(), x.id, x.agent_id));
                            }
                        }
                        Some(Event::Rescind(r)) => {
                            self.outstanding.remove(&r.offer_id);
                            self.offers.retain(|o| o.1 != r.offer_id)
                        }
                        Some(Event::Update(u)) => {
                            if let Some(s) = u.status
                                && !s.uuid.is_empty()
                            {
                                self.updates.push((fw.clone(), s));
                            }
                        }
                        _ => {}
                    },
                    Ok(Err(_)) => {}
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if closed {
                *slot = None;
            }
        }
        for slot in self.agents.iter_mut() {
            let Some((agent, _, rx)) = slot else { continue };
            let mut closed = false;
            loop {
                match rx.try_recv() {
                    Ok(Ok(m)) => {
                        if let Some(ToAgent::RunTasks(r)) = m.message
                            && let Ok(fw) = FrameworkId::new(r.framework_id)
                        {
                            for t in r.tasks {
                                self.launched.push((agent.clone(), fw.clone(), t));
                            }
                        }
                    }
                    Ok(Err(_)) => {}
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if closed {
                *slot = None;
            }
        }
    }

    fn call(&mut self, s: usize, call: Option<Call>) {
        if let Some((fw, conn, _)) = &self.schedulers[s] {
            let (fw, conn) = (fw.clone(), *conn);
            if !self.core.scheduler_call(&fw, conn, call, self.now) {
                self.core.scheduler_disconnected(&fw, conn, self.now);
                self.schedulers[s] = None;
                self.forget_offers(|f, _| *f == fw);
            }
        }
    }

    /// Drops the oracle's outstanding offers that `gone` matches (their scheduler or agent
    /// went away, so the master drops them without a word).
    fn forget_offers(&mut self, gone: impl Fn(&FrameworkId, &AgentId) -> bool) {
        self.outstanding.retain(|_, (f, a, _)| !gone(f, a));
    }

    /// The oracle's check: the offers outstanding on an agent fit in it.
    fn check_offers(&mut self) -> Result<(), String> {
        // Offers whose scheduler or agent is no longer connected are void.
        let fws: Vec<FrameworkId> = self
            .schedulers
            .iter()
            .flatten()
            .map(|s| s.0.clone())
            .collect();
        let agents: Vec<AgentId> = self.agents.iter().flatten().map(|a| a.0.clone()).collect();
        self.forget_offers(|f, a| !fws.contains(f) || !agents.contains(a));
        if !self.violations.is_empty() {
            return Err(std::mem::take(&mut self.violations).join("; "));
        }
        let mut per_agent: HashMap<&AgentId, Resources> = HashMap::new();
        for (_, a, r) in self.outstanding.values() {
            let sum = per_agent.entry(a).or_default();
            *sum = sum
                .checked_add(r)
                .map_err(|e| format!("offers on {a} overflow: {e}"))?;
        }
        for (a, sum) in per_agent {
            if !sum.fits_in(&AGENT_TOTAL) {
                let mut ids: Vec<&String> = self
                    .outstanding
                    .iter()
                    .filter(|(_, o)| o.1 == *a)
                    .map(|(id, _)| id)
                    .collect();
                ids.sort();
                return Err(format!(
                    "offers {ids:?} outstanding on {a} add up to {sum}, more than its {AGENT_TOTAL}"
                ));
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: Op) {
        let now = self.now;
        match op {
            Op::Subscribe { s, failover } => {
                if self.schedulers[s].is_some() {
                    return;
                }
                let (tx, rx) = mpsc::channel(100_000);
                let conn = self.core.new_conn();
                let info = pb::FrameworkInfo {
                    id: self.framework_ids[s]
                        .as_ref()
                        .map(|f| f.to_string())
                        .unwrap_or_default(),
                    name: format!("f{s}"),
                    role: format!("r{s}"),
                    principal: String::new(),
                    failover_timeout_seconds: [0.0, 2.0, 3600.0][failover as usize],
                    component_sha256: String::new(),
                    ..Default::default()
                };
                match self.core.subscribe(conn, tx, Some(info), now) {
                    Ok(fw) => {
                        self.framework_ids[s] = Some(fw.clone());
                        self.schedulers[s] = Some((fw, conn, rx));
                    }
                    Err(_) => self.framework_ids[s] = None, // torn down: start afresh next time
                }
            }
            Op::SchedulerGone(s) => {
                if let Some((fw, conn, _)) = self.schedulers[s].take() {
                    self.core.scheduler_disconnected(&fw, conn, now);
                    self.forget_offers(|f, _| *f == fw);
                }
            }
            Op::AgentRegister { a, report } => {
                if let Some((id, conn, _)) = self.agents[a].take() {
                    self.core.agent_disconnected(&id, conn, now);
                    self.forget_offers(|_, ag| *ag == id);
                }
                let id = self.agent_ids[a].clone();
                let tasks = match (&id, report) {
                    (Some(id), true) => self
                        .launched
                        .iter()
                        .filter(|(ag, _, _)| ag == id)
                        .map(|(_, fw, t)| pb::RunningTask {
                            framework_id: fw.to_string(),
                            task: Some(t.clone()),
                            state: pb::TaskState::Running as i32,
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let (tx, rx) = mpsc::channel(100_000);
                let conn = self.core.new_conn();
                let reg = pb::agent_message::Register {
                    info: Some(pb::AgentInfo {
                        id: id.map(|i| i.to_string()).unwrap_or_default(),
                        hostname: format!("h{a}"),
                        address: String::new(),
                        resources: Some(pb::Resources {
                            millicpus: AGENT_TOTAL.millicpus,
                            mem_mb: AGENT_TOTAL.mem_mb,
                            disk_mb: AGENT_TOTAL.disk_mb,
                        }),
                        attributes: vec![],
                    }),
                    tasks,
                    unhealthy_reason: String::new(),
                    isolation: vec![],
                    isolation_warning: String::new(),
                };
                if let Ok(agent) = self.core.agent_register(conn, tx, reg, now) {
                    self.agent_ids[a] = Some(agent.clone());
                    self.agents[a] = Some((agent, conn, rx));
                }
            }
            Op::AgentGone(a) => {
                if let Some((id, conn, _)) = self.agents[a].take() {
                    self.core.agent_disconnected(&id, conn, now);
                    self.forget_offers(|_, ag| *ag == id);
                }
            }
            Op::Accept {
                s,
                picks,
                tasks,
                bogus_offer,
            } => {
                // Act as the framework holding the first picked offer, if any holds one.
                let s = picks
                    .first()
                    .filter(|_| !self.offers.is_empty())
                    .map(|p| self.offers[p % self.offers.len()].0.clone())
                    .and_then(|fw| {
                        self.schedulers
                            .iter()
                            .position(|x| x.as_ref().is_some_and(|x| x.0 == fw))
                    })
                    .unwrap_or(s);
                let Some((fw, _, _)) = &self.schedulers[s] else {
                    return;
                };
                let mine: Vec<&(FrameworkId, String, String)> =
                    self.offers.iter().filter(|o| &o.0 == fw).collect();
                let mut offer_ids: Vec<String> = Vec::new();
                let mut agent = String::from("nowhere");
                if !mine.is_empty() {
                    for p in picks {
                        let o = mine[p % mine.len()];
                        offer_ids.push(o.1.clone());
                        agent = o.2.clone();
                    }
                }
                if bogus_offer {
                    offer_ids.push("../bogus".into());
                }
                let launches = tasks
                    .iter()
                    .map(|t| pb::TaskInfo {
                        task_id: format!("t{}", t.task_no),
                        name: String::new(),
                        agent_id: if t.wrong_agent {
                            "elsewhere".into()
                        } else {
                            agent.clone()
                        },
                        resources: Some(pb::Resources {
                            millicpus: t.millicpus,
                            mem_mb: t.mem_mb,
                            disk_mb: 0,
                        }),
                        kind: match t.kind {
                            0 | 1 => Some(pb::task_info::Kind::Wasm(pb::WasmTask {
                                executor_id: "e".into(),
                                payload: vec![],
                                ..Default::default()
                            })),
                            2 => Some(pb::task_info::Kind::Command(pb::CommandTask {
                                argv: vec!["true".into()],
                                env: vec![],
                            })),
                            _ => None,
                        },
                    })
                    .collect();
                // An offer named in an accept is used up, whether or not the launches hold.
                for id in &offer_ids {
                    self.outstanding.remove(id);
                }
                self.call(
                    s,
                    Some(Call::Accept(pb::scheduler_call::Accept {
                        offer_ids,
                        launches,
                        filters: None,
                    })),
                );
            }
            Op::Decline { s, pick, refuse } => {
                let Some((fw, _, _)) = &self.schedulers[s] else {
                    return;
                };
                let mine: Vec<String> = self
                    .offers
                    .iter()
                    .filter(|o| &o.0 == fw)
                    .map(|o| o.1.clone())
                    .collect();
                if mine.is_empty() {
                    return;
                }
                let id = mine[pick % mine.len()].clone();
                self.outstanding.remove(&id);
                let refuse_seconds = Some(if refuse { 1.0 } else { 0.0 });
                self.call(
                    s,
                    Some(Call::Decline(pb::scheduler_call::Decline {
                        offer_ids: vec![id],
                        filters: Some(pb::Filters { refuse_seconds }),
                    })),
                );
            }
            Op::AgentUpdate {
                pick,
                state,
                reuse_uuid,
            } => {
                if self.launched.is_empty() {
                    return;
                }
                let (agent, fw, task) = self.launched[pick % self.launched.len()].clone();
                let Some(slot) = self
                    .agents
                    .iter()
                    .position(|a| a.as_ref().is_some_and(|a| a.0 == agent))
                else {
                    return;
                };
                let conn = self.agents[slot].as_ref().map(|a| a.1).unwrap_or_default();
                let uuid = if reuse_uuid {
                    format!("u{}", self.uuid)
                } else {
                    self.uuid += 1;
                    format!("u{}", self.uuid)
                };
                let status = pb::TaskStatus {
                    task_id: task.task_id.clone(),
                    agent_id: agent.to_string(),
                    state: state as i32, // 0 is invalid on purpose
                    message: String::new(),
                    data: None,
                    uuid,
                    reason: String::new(),
                };
                let msg =
                    pb::agent_message::Message::StatusUpdates(pb::agent_message::StatusUpdates {
                        updates: vec![pb::AgentStatusUpdate {
                            framework_id: fw.to_string(),
                            status: Some(status),
                        }],
                    });
                self.core.agent_message(&agent, conn, Some(msg), now);
            }
            Op::Ack { pick } => {
                if self.updates.is_empty() {
                    return;
                }
                let (fw, st) = self.updates[pick % self.updates.len()].clone();
                let Some(s) = self
                    .schedulers
                    .iter()
                    .position(|x| x.as_ref().is_some_and(|x| x.0 == fw))
                else {
                    return;
                };
                self.call(
                    s,
                    Some(Call::Acknowledge(pb::scheduler_call::Acknowledge {
                        agent_id: st.agent_id,
                        task_id: st.task_id,
                        uuid: st.uuid,
                    })),
                );
            }
            Op::Kill { s, task_no } => self.call(
                s,
                Some(Call::Kill(pb::scheduler_call::Kill {
                    task_id: format!("t{task_no}"),
                    agent_id: String::new(),
                })),
            ),
            Op::Reconcile { s, all } => {
                let tasks = if all {
                    vec![]
                } else {
                    vec![pb::scheduler_call::reconcile::Task {
                        task_id: "t1".into(),
                        agent_id: String::new(),
                    }]
                };
                self.call(
                    s,
                    Some(Call::Reconcile(pb::scheduler_call::Reconcile { tasks })),
                )
            }
            Op::Revive(s) => self.call(s, Some(Call::Revive(pb::scheduler_call::Revive {}))),
            Op::Suppress(s) => self.call(s, Some(Call::Suppress(pb::scheduler_call::Suppress {}))),
            Op::Teardown(s) => {
                if let Some((fw, _, _)) = &self.schedulers[s] {
                    let fw = fw.clone();
                    self.forget_offers(|f, _| *f == fw);
                }
                self.call(s, Some(Call::Teardown(pb::scheduler_call::Teardown {})))
            }
            Op::Garbage(s) => {
                self.call(s, None);
                self.call(
                    s,
                    Some(Call::Acknowledge(pb::scheduler_call::Acknowledge {
                        agent_id: "a b".into(),
                        task_id: "..".into(),
                        uuid: String::new(),
                    })),
                );
                self.call(
                    s,
                    Some(Call::Message(pb::scheduler_call::FrameworkMessage {
                        agent_id: "nope".into(),
                        executor_id: String::new(),
                        data: vec![0; 10],
                    })),
                );
            }
            Op::Tick { dt } => {
                self.now += dt;
                self.core.tick(self.now);
            }
        }
        // The server runs a cycle whenever something changed; do it after every step.
        self.core.allocate(self.now);
        self.drain();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn books_stay_consistent_whatever_clients_send(ops in prop::collection::vec(op(), 1..150)) {
        let mut world = World::new();
        for (i, op) in ops.into_iter().enumerate() {
            let desc = format!("{op:?}");
            world.apply(op);
            if let Err(e) = world.core.check_invariants() {
                return Err(TestCaseError::fail(format!("after step {i} {desc}: {e}")));
            }
            if let Err(e) = world.check_offers() {
                return Err(TestCaseError::fail(format!("oracle, after step {i} {desc}: {e}")));
            }
        }
        // Everything eventually returns: tear every framework down and all resources are free.
        let fws: Vec<FrameworkId> = world.core.registry.frameworks.keys().cloned().collect();
        for fw in fws {
            world.core.remove_framework(&fw, world.now, "test end");
        }
        for a in world.core.registry.agents.keys() {
            if let Some(r) = world.core.registry.agents.get(a).filter(|_| world.core.agents.contains_key(a)) {
                prop_assert_eq!(world.core.allocator.agent_available(a), Some(r.resources));
            }
        }
    }
}
