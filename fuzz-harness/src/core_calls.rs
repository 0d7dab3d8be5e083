//! Target `core_calls`: a master core (`wasmos_master::core::MasterCore`, no server, no Raft)
//! fed a sequence of scheduler calls, agent messages, operator requests and clock ticks chosen
//! by the input. Some are built to be mostly valid (accepting offers the core made, updating
//! tasks it launched), some are whatever prost decodes from the input. After every step the
//! core's books must agree (`MasterCore::check_invariants`), and nothing may panic.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use tokio::sync::{Notify, mpsc};
use wasmos_api::proto as pb;
use wasmos_api::{AgentId, FrameworkId, TaskId};
use wasmos_master::allocator::Millis;
use wasmos_master::config::MasterConfig;
use wasmos_master::core::{ConnId, MasterCore};

use crate::input::Input;

const SLOTS: usize = 3;
/// Steps taken from one input at most, so that one input stays fast.
const MAX_STEPS: usize = 256;

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
    /// Updates schedulers saw that carry a uuid.
    updates: Vec<(FrameworkId, pb::TaskStatus)>,
    /// Tasks agents were asked to run: (agent, framework, task).
    launched: Vec<(AgentId, FrameworkId, pb::TaskInfo)>,
    uuid: u64,
}

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
            core: MasterCore::new(config, "fuzz", Arc::new(Notify::new())),
            now: 0,
            schedulers: [None, None, None],
            framework_ids: [None, None, None],
            agents: [None, None, None],
            agent_ids: [None, None, None],
            offers: Vec::new(),
            updates: Vec::new(),
            launched: Vec::new(),
            uuid: 0,
        }
    }

    /// Reads what the core sent to schedulers and agents (keeping the offers, updates and
    /// launches later steps refer to, boundedly) and forgets closed streams.
    fn drain(&mut self) {
        use pb::master_message::Message as ToAgent;
        use pb::scheduler_event::Event;
        for slot in self.schedulers.iter_mut() {
            let Some((fw, _, rx)) = slot else { continue };
            loop {
                match rx.try_recv() {
                    Ok(Ok(ev)) => match ev.event {
                        Some(Event::Offers(o)) => {
                            for x in o.offers {
                                self.offers.push((fw.clone(), x.id, x.agent_id));
                            }
                        }
                        Some(Event::Rescind(r)) => self.offers.retain(|o| o.1 != r.offer_id),
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
                        *slot = None;
                        break;
                    }
                }
            }
        }
        for slot in self.agents.iter_mut() {
            let Some((agent, _, rx)) = slot else { continue };
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
                        *slot = None;
                        break;
                    }
                }
            }
        }
        self.offers.truncate(4096);
        self.updates.truncate(4096);
        self.launched.truncate(4096);
    }

    fn call(&mut self, s: usize, call: Option<pb::scheduler_call::Call>) {
        if let Some((fw, conn, _)) = &self.schedulers[s] {
            let (fw, conn) = (fw.clone(), *conn);
            if !self.core.scheduler_call(&fw, conn, call, self.now) {
                self.core.scheduler_disconnected(&fw, conn, self.now);
                self.schedulers[s] = None;
            }
        }
    }

    fn fw_of_slot(&self, s: usize) -> Option<FrameworkId> {
        self.schedulers[s].as_ref().map(|x| x.0.clone())
    }

    fn step(&mut self, input: &mut Input) {
        use pb::scheduler_call::Call;
        let op = input.byte();
        let s = (input.byte() as usize) % SLOTS;
        let now = self.now;
        match op % 16 {
            0 => self.subscribe(s, input),
            1 => {
                if let Some((fw, conn, _)) = self.schedulers[s].take() {
                    self.core.scheduler_disconnected(&fw, conn, now);
                }
            }
            2 => self.register(s, input),
            3 => {
                if let Some((id, conn, _)) = self.agents[s].take() {
                    self.core.agent_disconnected(&id, conn, now);
                }
            }
            4 => self.accept(s, input),
            5 => {
                let Some(fw) = self.fw_of_slot(s) else { return };
                let mine: Vec<String> = self
                    .offers
                    .iter()
                    .filter(|o| o.0 == fw)
                    .map(|o| o.1.clone())
                    .collect();
                let pick = input.byte() as usize;
                let refuse = f64::from(input.byte()) / 16.0;
                let offer_ids = if mine.is_empty() {
                    vec![input.string()]
                } else {
                    vec![mine[pick % mine.len()].clone()]
                };
                self.call(
                    s,
                    Some(Call::Decline(pb::scheduler_call::Decline {
                        offer_ids,
                        filters: Some(pb::Filters {
                            refuse_seconds: Some(refuse),
                        }),
                    })),
                );
            }
            6 => self.agent_update(input),
            7 => {
                if self.updates.is_empty() {
                    return;
                }
                let (fw, st) = self.updates[input.byte() as usize % self.updates.len()].clone();
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
            8 => {
                let task_id = format!("t{}", input.byte() % 8);
                self.call(
                    s,
                    Some(Call::Kill(pb::scheduler_call::Kill {
                        task_id,
                        agent_id: String::new(),
                    })),
                );
            }
            9 | 10 => {
                // A scheduler call as prost decodes it from the input.
                if let Ok(c) = pb::SchedulerCall::decode(input.chunk(512)) {
                    self.call(s, c.call);
                }
            }
            11 => {
                // An agent message as prost decodes it from the input.
                let Ok(m) = pb::AgentMessage::decode(input.chunk(512)) else {
                    return;
                };
                if let Some((agent, conn, _)) = &self.agents[s] {
                    let (agent, conn) = (agent.clone(), *conn);
                    if !self.core.agent_message(&agent, conn, m.message, now) {
                        self.core.agent_disconnected(&agent, conn, now);
                        self.agents[s] = None;
                    }
                }
            }
            12 => {
                // An operator's kill or teardown.
                let task = TaskId::new(format!("t{}", input.byte() % 8));
                let fw = self.framework_ids[s].clone();
                if input.bool() {
                    if let Ok(task) = task {
                        let _ = self.core.operator_kill_task(fw.as_ref(), &task, now);
                    }
                } else if let Some(fw) = fw {
                    let _ = self.core.operator_teardown(&fw, now);
                }
            }
            13 => {
                let call = match input.byte() % 5 {
                    0 => Call::Revive(pb::scheduler_call::Revive {}),
                    1 => Call::Suppress(pb::scheduler_call::Suppress {}),
                    2 => Call::Reconcile(pb::scheduler_call::Reconcile { tasks: vec![] }),
                    3 => Call::Reconcile(pb::scheduler_call::Reconcile {
                        tasks: vec![pb::scheduler_call::reconcile::Task {
                            task_id: format!("t{}", input.byte() % 8),
                            agent_id: String::new(),
                        }],
                    }),
                    _ => Call::Teardown(pb::scheduler_call::Teardown {}),
                };
                self.call(s, Some(call));
            }
            _ => {
                self.now += Millis::from(input.u16());
                self.core.tick(self.now);
            }
        }
    }

    fn subscribe(&mut self, s: usize, input: &mut Input) {
        if self.schedulers[s].is_some() {
            return;
        }
        let decoded = if input.byte() % 4 == 0 {
            pb::FrameworkInfo::decode(input.chunk(256)).ok()
        } else {
            None
        };
        let info = decoded.unwrap_or_else(|| pb::FrameworkInfo {
            id: self.framework_ids[s]
                .as_ref()
                .map(|f| f.to_string())
                .unwrap_or_default(),
            name: format!("f{s}"),
            role: format!("r{s}"),
            failover_timeout_seconds: [0.0, 2.0, 3600.0][input.byte() as usize % 3],
            ..Default::default()
        });
        let (tx, rx) = mpsc::channel(100_000);
        let conn = self.core.new_conn();
        match self.core.subscribe(conn, tx, Some(info), self.now) {
            Ok(fw) => {
                self.framework_ids[s] = Some(fw.clone());
                self.schedulers[s] = Some((fw, conn, rx));
            }
            Err(_) => self.framework_ids[s] = None,
        }
    }

    fn register(&mut self, a: usize, input: &mut Input) {
        if let Some((id, conn, _)) = self.agents[a].take() {
            self.core.agent_disconnected(&id, conn, self.now);
        }
        let reg = if input.byte() % 4 == 0 {
            match pb::AgentMessage::decode(input.chunk(512)).map(|m| m.message) {
                Ok(Some(pb::agent_message::Message::Register(r))) => r,
                _ => return,
            }
        } else {
            let id = self.agent_ids[a].clone();
            let tasks = match (&id, input.bool()) {
                (Some(id), true) => self
                    .launched
                    .iter()
                    .filter(|(ag, _, _)| ag == id)
                    .map(|(_, fw, t)| pb::RunningTask {
                        framework_id: fw.to_string(),
                        task: Some(t.clone()),
                        state: i32::from(input.byte() % 11),
                    })
                    .collect(),
                _ => Vec::new(),
            };
            pb::agent_message::Register {
                info: Some(pb::AgentInfo {
                    id: id.map(|i| i.to_string()).unwrap_or_default(),
                    hostname: format!("h{a}"),
                    address: String::new(),
                    resources: Some(pb::Resources {
                        millicpus: 1000 * u64::from(input.byte() % 8),
                        mem_mb: 256 * u64::from(input.byte() % 16),
                        disk_mb: 0,
                    }),
                    attributes: vec![],
                }),
                tasks,
                unhealthy_reason: if input.byte() % 16 == 0 {
                    "disk full".into()
                } else {
                    String::new()
                },
                isolation: vec![],
                isolation_warning: String::new(),
            }
        };
        let (tx, rx) = mpsc::channel(100_000);
        let conn = self.core.new_conn();
        if let Ok(agent) = self.core.agent_register(conn, tx, reg, self.now) {
            self.agent_ids[a] = Some(agent.clone());
            self.agents[a] = Some((agent, conn, rx));
        }
    }

    fn accept(&mut self, s: usize, input: &mut Input) {
        use pb::scheduler_call::Call;
        // Act as the framework holding the picked offer, if any holds one.
        let pick = input.byte() as usize;
        let s = if self.offers.is_empty() {
            s
        } else {
            let fw = self.offers[pick % self.offers.len()].0.clone();
            self.schedulers
                .iter()
                .position(|x| x.as_ref().is_some_and(|x| x.0 == fw))
                .unwrap_or(s)
        };
        let Some(fw) = self.fw_of_slot(s) else { return };
        let mine: Vec<(String, String)> = self
            .offers
            .iter()
            .filter(|o| o.0 == fw)
            .map(|o| (o.1.clone(), o.2.clone()))
            .collect();
        let mut offer_ids = Vec::new();
        let mut agent = String::from("nowhere");
        for _ in 0..=(input.byte() % 2) {
            if !mine.is_empty() {
                let o = &mine[input.byte() as usize % mine.len()];
                offer_ids.push(o.0.clone());
                agent = o.1.clone();
            }
        }
        if input.byte() % 32 == 0 {
            offer_ids.push("../bogus".into());
        }
        let mut launches = Vec::new();
        for _ in 0..=(input.byte() % 3) {
            let kind = match input.byte() % 10 {
                0 => Some(pb::task_info::Kind::Command(pb::CommandTask {
                    argv: vec!["true".into()],
                    env: vec![],
                })),
                1 => None,
                2 => pb::TaskInfo::decode(input.chunk(128))
                    .ok()
                    .and_then(|t| t.kind),
                _ => Some(pb::task_info::Kind::Wasm(pb::WasmTask {
                    executor_id: "e".into(),
                    ..Default::default()
                })),
            };
            launches.push(pb::TaskInfo {
                task_id: format!("t{}", input.byte() % 8),
                name: String::new(),
                agent_id: if input.byte() % 32 == 0 {
                    "elsewhere".into()
                } else {
                    agent.clone()
                },
                resources: Some(pb::Resources {
                    millicpus: 100 * u64::from(input.byte() % 16),
                    mem_mb: 32 * u64::from(input.byte() % 16),
                    disk_mb: 0,
                }),
                kind,
            });
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

    fn agent_update(&mut self, input: &mut Input) {
        if self.launched.is_empty() {
            return;
        }
        let (agent, fw, task) = self.launched[input.byte() as usize % self.launched.len()].clone();
        let Some((_, conn, _)) = self.agents.iter().flatten().find(|(id, _, _)| *id == agent)
        else {
            return;
        };
        let conn = *conn;
        let uuid = if input.byte() % 5 == 0 {
            format!("u{}", self.uuid)
        } else {
            self.uuid += 1;
            format!("u{}", self.uuid)
        };
        let status = pb::TaskStatus {
            task_id: task.task_id.clone(),
            agent_id: agent.to_string(),
            state: i32::from(input.byte() % 11), // 0 and 10 are invalid on purpose
            message: String::new(),
            data: None,
            uuid,
            reason: String::new(),
        };
        let msg = pb::agent_message::Message::StatusUpdates(pb::agent_message::StatusUpdates {
            updates: vec![pb::AgentStatusUpdate {
                framework_id: fw.to_string(),
                status: Some(status),
            }],
        });
        self.core.agent_message(&agent, conn, Some(msg), self.now);
    }
}

/// Runs the steps the input describes (two bytes choose each step and its slot, the bytes after
/// them its details), checking the core's books after each.
pub fn core_calls(data: &[u8]) {
    let mut world = World::new();
    let mut input = Input::new(data);
    let mut step = 0;
    while !input.is_empty() && step < MAX_STEPS {
        world.step(&mut input);
        // The server runs an allocation cycle whenever something changed.
        world.core.allocate(world.now);
        world.drain();
        if let Err(e) = world.core.check_invariants() {
            panic!("the master's books disagree after step {step}: {e}");
        }
        step += 1;
    }
}
