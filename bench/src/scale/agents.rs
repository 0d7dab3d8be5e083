//! Simulated agents: each is a real `AgentService.Session` over real gRPC to a real master,
//! registering with its resources and attributes, heartbeating on the interval the master gives,
//! and running the tasks it is sent as simulated work (a sleep of the task's declared duration,
//! `sleep:MS` in a Wasm task's payload, then `FINISHED`), with status updates sent one at a
//! time per task and the next one only once the master acknowledged the previous, as a real
//! agent does. After a session ends (the leader died) it re-registers with its id and its
//! tasks, following the `wasmos-leader` hint.
//!
//! Many agents share one HTTP/2 connection (`--agents-per-connection`): 50,000 agents would
//! otherwise need 50,000 sockets and the master's per-address connection cap (1,024) would
//! refuse most of them. The master sees one stream per agent, as with real agents.

use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use wasmos_api::proto as pb;

use pb::agent_message::Message as Out;
use pb::master_message::Message as In;

use crate::secure::{AgentClient, Security};

/// Most errors kept for the report.
const MAX_ERRORS: usize = 20;
/// Wait before a lost session tries again (spread per agent so a failover is not one burst).
const RETRY: Duration = Duration::from_millis(200);

/// What every simulated agent counts, shared.
#[derive(Default)]
pub struct Counters {
    /// Agents with a session open now, per master (index into the master list).
    pub registered_with: Vec<AtomicUsize>,
    /// `registered` answers received in all.
    pub registrations: AtomicU64,
    /// Heartbeats handed to open sessions.
    pub heartbeats: AtomicU64,
    /// Tasks received in `RunTasks`.
    pub tasks_received: AtomicU64,
    /// Tasks reported `FINISHED`.
    pub tasks_finished: AtomicU64,
    /// Tasks reported `KILLED`.
    pub tasks_killed: AtomicU64,
    /// Sessions that ended without being asked to.
    pub sessions_lost: AtomicU64,
    /// The first errors seen.
    pub errors: Mutex<Vec<String>>,
}

impl Counters {
    pub fn new(masters: usize) -> Counters {
        Counters {
            registered_with: (0..masters).map(|_| AtomicUsize::new(0)).collect(),
            ..Default::default()
        }
    }

    /// Agents with an open session to any master.
    pub fn registered(&self) -> usize {
        self.registered_with.iter().map(|n| n.load(Relaxed)).sum()
    }

    fn error(&self, e: String) {
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < MAX_ERRORS {
            errors.push(e);
        }
    }
}

/// The masters the agents know, with `per_connection` agents on each HTTP/2 connection.
pub struct Masters {
    pub addrs: Vec<String>,
    /// `clients[m][c]`: connection `c` to master `m` (lazy: connects on first use, reconnects).
    clients: Vec<Vec<AgentClient>>,
    per_connection: usize,
}

impl Masters {
    pub fn new(
        security: &Security,
        addrs: Vec<String>,
        agents: usize,
        per_connection: usize,
    ) -> anyhow::Result<Masters> {
        let per_connection = per_connection.max(1);
        let connections = agents.div_ceil(per_connection).max(1);
        let clients = addrs
            .iter()
            .map(|a| {
                (0..connections)
                    .map(|_| security.agent_lazy(a))
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Masters {
            addrs,
            clients,
            per_connection,
        })
    }

    fn client(&self, master: usize, agent: usize) -> AgentClient {
        self.clients[master][agent / self.per_connection].clone()
    }

    fn index_of(&self, hint: &str) -> Option<usize> {
        let hint = hint
            .trim_start_matches("http://")
            .trim_start_matches("https://");
        self.addrs.iter().position(|a| a == hint)
    }

    /// Connections per master.
    pub fn connections(&self) -> usize {
        self.clients.first().map_or(0, Vec::len)
    }
}

/// One simulated agent's description.
#[derive(Clone)]
pub struct Spec {
    pub index: usize,
    pub resources: pb::Resources,
    /// `rack` attribute (agents spread over racks of 40).
    pub rack: String,
}

/// A task the agent holds.
struct Task {
    framework_id: String,
    info: pb::TaskInfo,
    /// The last state reported.
    state: pb::TaskState,
    /// The uuid of the last update, until acknowledged.
    unacked: Option<String>,
    /// The state to report once `unacked` is acknowledged.
    next: Option<pb::TaskState>,
    /// When its simulated work ends.
    due: Instant,
}

type Key = (String, String);

/// How a session ended.
enum Ended {
    Stop,
    /// Another master leads (by index), or the session failed: try again.
    Retry(Option<usize>),
}

/// Runs agent `spec` until `stop`: registers with master `first`, then keeps a session open.
pub async fn run(
    spec: Spec,
    masters: Arc<Masters>,
    counters: Arc<Counters>,
    first: usize,
    stop: CancellationToken,
) {
    let mut agent = Agent {
        spec,
        id: String::new(),
        tasks: HashMap::new(),
        timers: BinaryHeap::new(),
        uuid: 0,
    };
    let mut master = first;
    let mut failures = 0u32;
    loop {
        if stop.is_cancelled() {
            return;
        }
        match agent.session(&masters, &counters, master, &stop).await {
            Ended::Stop => return,
            Ended::Retry(Some(m)) => {
                master = m;
                failures = 0;
            }
            Ended::Retry(None) => {
                failures += 1;
                master = (master + 1) % masters.addrs.len();
                // Spread the retries: agent index picks a slot within RETRY.
                let spread = RETRY.mul_f64((agent.spec.index % 97) as f64 / 97.0);
                let backoff = RETRY * failures.min(5) + spread;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
            }
        }
    }
}

struct Agent {
    spec: Spec,
    id: String,
    tasks: HashMap<Key, Task>,
    /// When tasks' work ends (stale entries are skipped).
    timers: BinaryHeap<std::cmp::Reverse<(Instant, Key)>>,
    uuid: u64,
}

/// The duration a task declares: `sleep:MS` in its payload; anything else ends at once.
fn declared(info: &pb::TaskInfo) -> Duration {
    let ms = match &info.kind {
        Some(pb::task_info::Kind::Wasm(w)) => std::str::from_utf8(&w.payload)
            .ok()
            .and_then(|p| p.strip_prefix("sleep:"))
            .and_then(|ms| ms.parse::<u64>().ok())
            .unwrap_or(0),
        _ => 0,
    };
    Duration::from_millis(ms)
}

impl Agent {
    fn register_message(&self) -> pb::AgentMessage {
        let tasks = self
            .tasks
            .values()
            .map(|t| pb::RunningTask {
                framework_id: t.framework_id.clone(),
                task: Some(t.info.clone()),
                state: t.state as i32,
            })
            .collect();
        pb::AgentMessage {
            message: Some(Out::Register(pb::agent_message::Register {
                info: Some(pb::AgentInfo {
                    id: self.id.clone(),
                    hostname: format!("sim-{:05}", self.spec.index),
                    resources: Some(self.spec.resources),
                    attributes: vec![pb::Attribute {
                        key: "rack".into(),
                        value: self.spec.rack.clone(),
                    }],
                    ..Default::default()
                }),
                tasks,
                ..Default::default()
            })),
        }
    }

    fn fresh_uuid(&mut self) -> String {
        self.uuid += 1;
        format!("{}-{:x}", self.spec.index, self.uuid)
    }

    /// The update reporting `key` in `state`, with a fresh uuid noted as unacknowledged.
    fn report(&mut self, key: &Key, state: pb::TaskState) -> Option<pb::AgentStatusUpdate> {
        let uuid = self.fresh_uuid();
        let agent_id = self.id.clone();
        let t = self.tasks.get_mut(key)?;
        t.state = state;
        t.unacked = Some(uuid.clone());
        t.next = None;
        Some(pb::AgentStatusUpdate {
            framework_id: t.framework_id.clone(),
            status: Some(pb::TaskStatus {
                task_id: t.info.task_id.clone(),
                agent_id,
                state: state as i32,
                message: String::new(),
                data: None,
                uuid,
                reason: String::new(),
            }),
        })
    }

    /// Reports `state` for `key` now if nothing is unacknowledged, else once it is.
    fn transition(
        &mut self,
        key: &Key,
        state: pb::TaskState,
        out: &mut Vec<pb::AgentStatusUpdate>,
    ) {
        let Some(t) = self.tasks.get_mut(key) else {
            return;
        };
        if is_terminal(t.state) {
            return;
        }
        if t.unacked.is_some() {
            t.next = Some(state);
        } else if let Some(u) = self.report(key, state) {
            out.push(u);
        }
    }

    /// The updates still unacknowledged (sent again on a new session).
    fn unacked_updates(&mut self) -> Vec<pb::AgentStatusUpdate> {
        let keys: Vec<(Key, pb::TaskState)> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.unacked.is_some())
            .map(|(k, t)| (k.clone(), t.state))
            .collect();
        keys.into_iter()
            .filter_map(|(k, s)| self.report(&k, s))
            .collect()
    }

    async fn session(
        &mut self,
        masters: &Masters,
        counters: &Counters,
        master: usize,
        stop: &CancellationToken,
    ) -> Ended {
        let (tx, rx) = mpsc::channel(64);
        if tx.send(self.register_message()).await.is_err() {
            return Ended::Retry(None);
        }
        let mut client: AgentClient = masters.client(master, self.spec.index);
        let call = tokio::select! {
            _ = stop.cancelled() => return Ended::Stop,
            r = client.session(ReceiverStream::new(rx)) => r,
        };
        let mut stream = match call {
            Ok(r) => r.into_inner(),
            Err(s) => {
                if let Some(hint) = wasmos_api::leader::leader_hint(&s) {
                    return Ended::Retry(masters.index_of(&hint));
                }
                // Unavailable: the master is down or not yet up (a failover); try the next.
                if !wasmos_api::leader::is_not_leader(&s) && s.code() != tonic::Code::Unavailable {
                    counters.error(format!("agent {}: session refused: {s}", self.spec.index));
                }
                return Ended::Retry(None);
            }
        };
        let interval = match stream.message().await {
            Ok(Some(pb::MasterMessage {
                message: Some(In::Registered(r)),
            })) => {
                self.id = r.agent_id;
                Duration::from_secs_f64(r.heartbeat_interval_seconds.clamp(0.05, 3600.0))
            }
            Ok(Some(other)) => {
                counters.error(format!(
                    "agent {}: first answer not `registered`: {other:?}",
                    self.spec.index
                ));
                return Ended::Retry(None);
            }
            Ok(None) => return Ended::Retry(None),
            Err(s) => {
                if let Some(hint) = wasmos_api::leader::leader_hint(&s) {
                    return Ended::Retry(masters.index_of(&hint));
                }
                return Ended::Retry(None);
            }
        };
        counters.registrations.fetch_add(1, Relaxed);
        counters.registered_with[master].fetch_add(1, Relaxed);
        let ended = self.serve(&tx, &mut stream, interval, counters, stop).await;
        counters.registered_with[master].fetch_sub(1, Relaxed);
        if !matches!(ended, Ended::Stop) {
            counters.sessions_lost.fetch_add(1, Relaxed);
        }
        ended
    }

    async fn serve(
        &mut self,
        tx: &mpsc::Sender<pb::AgentMessage>,
        stream: &mut tonic::Streaming<pb::MasterMessage>,
        interval: Duration,
        counters: &Counters,
        stop: &CancellationToken,
    ) -> Ended {
        let send = |updates: Vec<pb::AgentStatusUpdate>| {
            let tx = tx.clone();
            async move {
                if updates.is_empty() {
                    return true;
                }
                let m = pb::AgentMessage {
                    message: Some(Out::StatusUpdates(pb::agent_message::StatusUpdates {
                        updates,
                    })),
                };
                tx.send(m).await.is_ok()
            }
        };
        if !send(self.unacked_updates()).await {
            return Ended::Retry(None);
        }
        // Heartbeats of different agents spread over the interval.
        let phase = interval.mul_f64((self.spec.index % 1000) as f64 / 1000.0);
        let mut heartbeat = tokio::time::interval_at(Instant::now() + phase, interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_due = self.timers.peek().map(|r| r.0.0);
            let timer = async {
                match next_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return Ended::Stop,
                _ = heartbeat.tick() => {
                    let hb = pb::AgentMessage {
                        message: Some(Out::Heartbeat(pb::agent_message::Heartbeat::default())),
                    };
                    if tx.send(hb).await.is_err() {
                        return Ended::Retry(None);
                    }
                    counters.heartbeats.fetch_add(1, Relaxed);
                }
                _ = timer => {
                    let now = Instant::now();
                    let mut out = Vec::new();
                    while let Some(std::cmp::Reverse((at, _))) = self.timers.peek() {
                        if *at > now {
                            break;
                        }
                        let std::cmp::Reverse((_, key)) = self.timers.pop().expect("peeked");
                        if self.tasks.contains_key(&key) {
                            self.transition(&key, pb::TaskState::Finished, &mut out);
                        }
                    }
                    if !send(out).await {
                        return Ended::Retry(None);
                    }
                }
                m = stream.message() => {
                    let m = match m {
                        Ok(Some(m)) => m,
                        Ok(None) | Err(_) => return Ended::Retry(None),
                    };
                    let mut out = Vec::new();
                    match m.message {
                        Some(In::RunTasks(r)) => self.run_tasks(r, counters, &mut out),
                        Some(In::Acknowledgements(a)) => self.acknowledged(a, counters, &mut out),
                        Some(In::KillTasks(k)) => {
                            for t in k.tasks {
                                self.transition(&(t.framework_id, t.task_id), pb::TaskState::Killed, &mut out);
                            }
                        }
                        Some(In::ShutdownFramework(s)) => {
                            let keys: Vec<Key> = self
                                .tasks
                                .keys()
                                .filter(|k| k.0 == s.framework_id)
                                .cloned()
                                .collect();
                            for k in keys {
                                self.transition(&k, pb::TaskState::Killed, &mut out);
                            }
                        }
                        Some(In::ReadLog(r)) => {
                            let chunk = pb::AgentMessage {
                                message: Some(Out::LogChunk(pb::agent_message::LogChunk {
                                    request_id: r.request_id,
                                    missing: true,
                                    ..Default::default()
                                })),
                            };
                            if tx.send(chunk).await.is_err() {
                                return Ended::Retry(None);
                            }
                        }
                        Some(In::Error(e)) => {
                            counters.error(format!("agent {}: master error: {}", self.spec.index, e.message));
                            if e.fatal {
                                return Ended::Retry(None);
                            }
                        }
                        Some(In::FrameworkMessage(_)) | Some(In::Registered(_)) | None => {}
                    }
                    if !send(out).await {
                        return Ended::Retry(None);
                    }
                }
            }
        }
    }

    fn run_tasks(
        &mut self,
        r: pb::master_message::RunTasks,
        counters: &Counters,
        out: &mut Vec<pb::AgentStatusUpdate>,
    ) {
        let now = Instant::now();
        counters
            .tasks_received
            .fetch_add(r.tasks.len() as u64, Relaxed);
        for info in r.tasks {
            let key = (r.framework_id.clone(), info.task_id.clone());
            if self.tasks.contains_key(&key) {
                continue;
            }
            let due = now + declared(&info);
            self.tasks.insert(
                key.clone(),
                Task {
                    framework_id: r.framework_id.clone(),
                    info,
                    state: pb::TaskState::Staging,
                    unacked: None,
                    next: None,
                    due,
                },
            );
            self.timers.push(std::cmp::Reverse((due, key.clone())));
            self.transition(&key, pb::TaskState::Running, out);
        }
    }

    fn acknowledged(
        &mut self,
        a: pb::master_message::Acknowledgements,
        counters: &Counters,
        out: &mut Vec<pb::AgentStatusUpdate>,
    ) {
        let now = Instant::now();
        for ack in a.acks {
            let key = (ack.framework_id, ack.task_id);
            let Some(t) = self.tasks.get_mut(&key) else {
                continue;
            };
            if t.unacked.as_deref() != Some(ack.uuid.as_str()) {
                continue;
            }
            t.unacked = None;
            if is_terminal(t.state) {
                match t.state {
                    pb::TaskState::Finished => counters.tasks_finished.fetch_add(1, Relaxed),
                    _ => counters.tasks_killed.fetch_add(1, Relaxed),
                };
                self.tasks.remove(&key);
                continue;
            }
            let next = t
                .next
                .take()
                .or((t.due <= now).then_some(pb::TaskState::Finished));
            if let Some(state) = next
                && let Some(u) = self.report(&key, state)
            {
                out.push(u);
            }
        }
    }
}

fn is_terminal(s: pb::TaskState) -> bool {
    !matches!(
        s,
        pb::TaskState::Staging | pb::TaskState::Starting | pb::TaskState::Running
    )
}

/// Starts `n` agents (indexes from `from`) on master `first`; their tasks end at `stop`.
pub fn spawn(
    specs: Vec<Spec>,
    masters: &Arc<Masters>,
    counters: &Arc<Counters>,
    first: usize,
    stop: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    specs
        .into_iter()
        .map(|spec| {
            tokio::spawn(run(
                spec,
                masters.clone(),
                counters.clone(),
                first,
                stop.clone(),
            ))
        })
        .collect()
}
