//! The framework host: runs a framework's scheduler half (a Wasm component) inside the master.
//!
//! A hosted scheduler goes through the same internal path as an external gRPC scheduler: the
//! host subscribes to [`MasterCore`](crate::core::MasterCore) with its own outbound queue, turns
//! the events it receives into the component's callbacks (offers into `resource-offers`,
//! updates into `status-update` followed by an acknowledgement, rescinds into
//! `offer-rescinded`, executor messages into `framework-message`), and turns the component's
//! `driver` calls into the same scheduler calls a gRPC client sends (accept with launches,
//! decline with filters, kill, revive, suppress, reconcile).
//!
//! `driver` calls are synchronous and made from inside a guest callback, so they only queue
//! work in [`Pending`]; the host applies the queue to the core, under one short lock, right
//! after the callback returns. `state-get` answers from a mirror of the framework's state that
//! the host keeps (the registry holds the durable copy, written through `Command`s);
//! `set-timer` starts a tokio timer that calls `timer`; `finish` records the outcome in the
//! registry and tears the framework down.
//!
//! Each callback runs under the framework's own fuel and memory caps and a wall-clock deadline
//! ([`TaskLimits`]). A callback that traps or exceeds a limit fails the framework with the
//! error's message (recorded as its outcome; its tasks are killed) and the master carries on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};
use tracing::{Instrument, debug, info, info_span, warn};
use wasmos_api::FrameworkId;
use wasmos_api::proto as pb;
use wasmos_wasm_executor::bindings::types as wit;
use wasmos_wasm_executor::{
    ComponentError, DriverHost, RuntimeConfig, SchedulerError, SchedulerInstance, TaskLimits,
    WasmRuntime,
};

use crate::blobs::{BlobError, Digest};
use crate::core::ConnId;
use crate::registry::{
    FrameworkOutcome, HostedSpec, MAX_STATE_BYTES, MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES,
    state_bytes,
};
use crate::server::Master;

use pb::scheduler_call::Call;
use pb::scheduler_event::Event;

/// Most timers one hosted scheduler may have pending; further `set-timer` calls are ignored.
pub const MAX_PENDING_TIMERS: usize = 1024;
/// Longest timer delay honoured (one day); longer delays are cut to it.
const MAX_TIMER_DELAY: Duration = Duration::from_secs(24 * 3600);
/// Most fuel an operator may give one callback.
const MAX_FUEL: u64 = 100_000_000_000;
/// Most memory an operator may give a scheduler, in MiB.
const MAX_MEMORY_MB: u64 = 1024;
/// Longest callback deadline an operator may set.
const MAX_CALLBACK_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest guest log line kept, in characters.
const MAX_LOG_CHARS: usize = 4096;
/// Most events handled back to back before the acknowledgements they produced are passed on
/// (in one message per agent): enough to batch a burst, few enough to add little latency.
const MAX_EVENT_BATCH: usize = 128;

/// Why a hosted framework could not be started.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("the framework names no component (component_sha256 is empty)")]
    NoComponent,
    #[error("component: {0}")]
    Blob(#[from] BlobError),
    #[error("cannot load the framework's component: {0}")]
    Load(#[from] ComponentError),
    #[error("cannot start the framework's scheduler: {0}")]
    Instantiate(#[from] SchedulerError),
    #[error("subscription refused: {0}")]
    Subscribe(String),
    #[error("cannot create the Wasm engine: {0}")]
    Engine(String),
}

/// Hosts Wasm schedulers for one master process (one [`WasmRuntime`], shared by all of them).
#[derive(Clone)]
pub struct FrameworkHost {
    runtime: WasmRuntime,
}

/// A hosted framework that was started.
pub struct HostedFramework {
    /// The id the master gave it.
    pub framework_id: FrameworkId,
    /// The task driving its scheduler; it ends when the framework is torn down.
    pub task: JoinHandle<()>,
}

impl FrameworkHost {
    /// A host with its own Wasm runtime.
    pub fn new(config: RuntimeConfig) -> Result<Self, HostError> {
        let runtime = WasmRuntime::new(config).map_err(|e| HostError::Engine(e.to_string()))?;
        Ok(FrameworkHost { runtime })
    }

    /// A host sharing an existing runtime (one per process).
    pub fn with_runtime(runtime: WasmRuntime) -> Self {
        FrameworkHost { runtime }
    }

    /// Limits for a scheduler's callbacks when the submitter gives none: 10^9 fuel units, 128
    /// MiB of memory and 10 s per callback.
    pub fn default_limits() -> TaskLimits {
        TaskLimits {
            fuel: Some(1_000_000_000),
            memory_bytes: 128 << 20,
            timeout: Duration::from_secs(10),
            ..TaskLimits::default()
        }
    }

    /// Limits from an operator's request: zero fields take [`FrameworkHost::default_limits`];
    /// every field is capped (10^11 fuel, 1 GiB, 60 s).
    pub fn limits_from(requested: Option<pb::SchedulerLimits>) -> TaskLimits {
        let d = Self::default_limits();
        let Some(r) = requested else { return d };
        let fuel = match r.fuel {
            0 => d.fuel,
            f => Some(f.min(MAX_FUEL)),
        };
        let memory_bytes = match r.memory_mb {
            0 => d.memory_bytes,
            mb => (mb.min(MAX_MEMORY_MB) as usize) << 20,
        };
        let t = r.callback_timeout_seconds;
        let timeout = if t.is_finite() && t > 0.0 {
            Duration::from_secs_f64(t.min(MAX_CALLBACK_TIMEOUT.as_secs_f64()))
        } else {
            d.timeout
        };
        TaskLimits {
            fuel,
            memory_bytes,
            timeout,
            ..d
        }
    }

    /// The registry's record of how a scheduler is hosted.
    pub fn spec_of(args: &[String], limits: &TaskLimits) -> HostedSpec {
        HostedSpec {
            args: args.to_vec(),
            fuel: limits.fuel,
            memory_bytes: limits.memory_bytes as u64,
            callback_timeout_ms: limits.timeout.as_millis().min(u64::MAX as u128) as u64,
        }
    }

    /// The limits a registry record of a hosted scheduler gives.
    pub fn limits_of(spec: &HostedSpec) -> TaskLimits {
        TaskLimits {
            fuel: spec.fuel,
            memory_bytes: spec.memory_bytes as usize,
            timeout: Duration::from_millis(spec.callback_timeout_ms),
            ..Self::default_limits()
        }
    }

    /// Starts a hosted framework: loads the component named by `info.component_sha256` from
    /// the master's blob store, instantiates its scheduler half under `limits`, subscribes it
    /// to the master (registering the framework as `info` describes, and recording `args` and
    /// `limits` in the registry), calls `init(args)` and drives it until the framework ends.
    /// Returns once the framework is registered; a failing `init` then fails the framework
    /// like any later callback.
    ///
    /// With `info.id` set it restarts a registered framework (a new leader): the scheduler
    /// starts from `init(args)` and its stored state, and is sent the status of every task
    /// the master knows for it (more arrive as agents re-register).
    pub async fn start(
        &self,
        master: &Master,
        info: pb::FrameworkInfo,
        args: Vec<String>,
        limits: TaskLimits,
    ) -> Result<HostedFramework, HostError> {
        if info.component_sha256.is_empty() {
            return Err(HostError::NoComponent);
        }
        let digest = Digest::parse(&info.component_sha256).map_err(BlobError::from)?;
        let bytes = master.core().blobs().get(&digest)?;
        let component = self.runtime.load_async(bytes.as_ref().clone()).await?;

        let pending = Arc::new(Mutex::new(Pending::default()));
        let driver = HostDriver {
            pending: pending.clone(),
        };
        let spec = Self::spec_of(&args, &limits);
        let instance =
            SchedulerInstance::new(&self.runtime, &component, Box::new(driver), limits).await?;

        let queue = master.core().config().connection_queue;
        let (tx, rx) = mpsc::channel(queue);
        let (framework_id, conn) = {
            let now = master.now();
            let mut core = master.core();
            let conn = core.new_conn();
            let restart = !info.id.is_empty();
            let fw = core
                .subscribe(conn, tx, Some(info), now)
                .map_err(HostError::Subscribe)?;
            if restart {
                core.scheduler_call(
                    &fw,
                    conn,
                    Some(Call::Reconcile(pb::scheduler_call::Reconcile {
                        tasks: Vec::new(),
                    })),
                    now,
                );
            } else {
                core.set_hosted(&fw, spec).map_err(HostError::Subscribe)?;
            }
            // A framework id that was given may already hold state (a restarted host).
            let state = core
                .registry()
                .framework_state
                .get(&fw)
                .cloned()
                .unwrap_or_default();
            let mut p = lock(&pending);
            p.state = state;
            p.framework_id = fw.to_string();
            (fw, conn)
        };
        info!(framework_id = %framework_id, component = %digest, "hosted framework started");

        let span = info_span!("hosted_scheduler", framework_id = %framework_id);
        let driving = Driving {
            master: master.clone(),
            framework_id: framework_id.clone(),
            conn,
            instance,
            pending,
            timers: HashMap::new(),
            timer_tx: None,
            acks: Vec::new(),
            done: false,
            puts_uncommitted: false,
        };
        let task = tokio::spawn(driving.run(args, rx).instrument(span));
        Ok(HostedFramework { framework_id, task })
    }
}

fn lock(p: &Arc<Mutex<Pending>>) -> MutexGuard<'_, Pending> {
    // Pending is plain data, consistent between statements; a poisoned lock is still usable.
    p.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the scheduler asked for during one callback, applied right after it returns; and what
/// the driver needs to answer synchronously.
#[derive(Default)]
struct Pending {
    framework_id: String,
    /// Scheduler calls, in the order made.
    calls: Vec<Call>,
    /// `state-put`s, committed after the calls.
    puts: Vec<(String, Vec<u8>)>,
    /// `set-timer`s: (id, delay in ms).
    timers: Vec<(u64, u64)>,
    /// Set by `finish`; later driver calls are ignored.
    finish: Option<FrameworkOutcome>,
    /// The framework's state as the scheduler has written it (the registry's copy plus the
    /// puts not yet committed).
    state: BTreeMap<String, Vec<u8>>,
    /// Offers given to the scheduler and not yet used, declined or rescinded.
    offers: HashMap<String, (String, wit::Resources)>,
}

/// The `DriverHost` behind a hosted scheduler's `driver` import: queues, never blocks.
struct HostDriver {
    pending: Arc<Mutex<Pending>>,
}

fn add(a: wit::Resources, b: &wit::Resources) -> wit::Resources {
    wit::Resources {
        millicpus: a.millicpus.saturating_add(b.millicpus),
        mem_mb: a.mem_mb.saturating_add(b.mem_mb),
        disk_mb: a.disk_mb.saturating_add(b.disk_mb),
    }
}

fn fits(need: &wit::Resources, have: &wit::Resources) -> bool {
    need.millicpus <= have.millicpus && need.mem_mb <= have.mem_mb && need.disk_mb <= have.disk_mb
}

fn show(r: &wit::Resources) -> String {
    format!(
        "{} millicpus, {} MiB memory, {} MiB disk",
        r.millicpus, r.mem_mb, r.disk_mb
    )
}

fn task_to_pb(t: wit::TaskInfo) -> pb::TaskInfo {
    let kind = match t.kind {
        wit::TaskKind::Wasm(w) => pb::task_info::Kind::Wasm(pb::WasmTask {
            executor_id: w.executor_id,
            payload: w.payload,
        }),
        wit::TaskKind::Command(c) => pb::task_info::Kind::Command(pb::CommandTask {
            argv: c.argv,
            env: c
                .env
                .into_iter()
                .map(|(key, value)| pb::Attribute { key, value })
                .collect(),
        }),
    };
    pb::TaskInfo {
        task_id: t.task_id,
        name: t.name,
        agent_id: t.agent_id,
        resources: Some(pb::Resources {
            millicpus: t.resources.millicpus,
            mem_mb: t.resources.mem_mb,
            disk_mb: t.resources.disk_mb,
        }),
        kind: Some(kind),
    }
}

fn resources_of(r: Option<pb::Resources>) -> wit::Resources {
    let r = r.unwrap_or_default();
    wit::Resources {
        millicpus: r.millicpus,
        mem_mb: r.mem_mb,
        disk_mb: r.disk_mb,
    }
}

fn offer_of(o: pb::Offer) -> wit::Offer {
    wit::Offer {
        id: o.id,
        agent_id: o.agent_id,
        hostname: o.hostname,
        resources: resources_of(o.resources),
        attributes: o.attributes.into_iter().map(|a| (a.key, a.value)).collect(),
    }
}

fn state_of(raw: i32) -> Option<wit::TaskState> {
    Some(match pb::TaskState::try_from(raw).ok()? {
        pb::TaskState::Unspecified => return None,
        pb::TaskState::Staging => wit::TaskState::Staging,
        pb::TaskState::Starting => wit::TaskState::Starting,
        pb::TaskState::Running => wit::TaskState::Running,
        pb::TaskState::Finished => wit::TaskState::Finished,
        pb::TaskState::Failed => wit::TaskState::Failed,
        pb::TaskState::Killed => wit::TaskState::Killed,
        pb::TaskState::Lost => wit::TaskState::Lost,
        pb::TaskState::Error => wit::TaskState::Error,
        pb::TaskState::Unreachable => wit::TaskState::Unreachable,
    })
}

impl DriverHost for HostDriver {
    fn launch(&mut self, offer_ids: Vec<String>, tasks: Vec<wit::TaskInfo>) -> Result<(), String> {
        let mut p = lock(&self.pending);
        if p.finish.is_some() {
            return Err("the framework has finished".into());
        }
        if offer_ids.is_empty() {
            return Err("launch lists no offer ids".into());
        }
        // Checked here so that the scheduler hears of its mistake at once; the core checks
        // everything again when the accept is applied.
        let mut seen = HashSet::new();
        let mut agent: Option<&str> = None;
        let mut offered = wit::Resources {
            millicpus: 0,
            mem_mb: 0,
            disk_mb: 0,
        };
        for id in &offer_ids {
            if !seen.insert(id.as_str()) {
                return Err(format!("offer {id} is listed twice"));
            }
            let Some((a, r)) = p.offers.get(id) else {
                return Err(format!(
                    "offer {id} is unknown or no longer valid (used, declined or rescinded)"
                ));
            };
            if agent.is_some_and(|x| x != a) {
                return Err("the offers are of more than one agent; launch on one agent's".into());
            }
            agent = Some(a);
            offered = add(offered, r);
        }
        let mut needed = wit::Resources {
            millicpus: 0,
            mem_mb: 0,
            disk_mb: 0,
        };
        for t in &tasks {
            if Some(t.agent_id.as_str()) != agent {
                return Err(format!(
                    "task {} names agent {} but the offers are of agent {}",
                    t.task_id,
                    t.agent_id,
                    agent.unwrap_or("")
                ));
            }
            needed = add(needed, &t.resources);
        }
        if !fits(&needed, &offered) {
            return Err(format!(
                "the tasks need {} but the offers hold {}",
                show(&needed),
                show(&offered)
            ));
        }
        for id in &offer_ids {
            p.offers.remove(id);
        }
        p.calls.push(Call::Accept(pb::scheduler_call::Accept {
            offer_ids,
            launches: tasks.into_iter().map(task_to_pb).collect(),
            filters: Some(pb::Filters {
                refuse_seconds: Some(0.0),
            }),
        }));
        Ok(())
    }

    fn decline(&mut self, offer_ids: Vec<String>, filters: wit::Filters) {
        let mut p = lock(&self.pending);
        if p.finish.is_some() {
            return;
        }
        for id in &offer_ids {
            p.offers.remove(id);
        }
        p.calls.push(Call::Decline(pb::scheduler_call::Decline {
            offer_ids,
            filters: Some(pb::Filters {
                refuse_seconds: Some(filters.refuse_seconds),
            }),
        }));
    }

    fn kill(&mut self, task_id: String) {
        self.push(Call::Kill(pb::scheduler_call::Kill {
            task_id,
            agent_id: String::new(),
        }));
    }

    fn revive(&mut self) {
        self.push(Call::Revive(pb::scheduler_call::Revive {}));
    }

    fn suppress(&mut self) {
        self.push(Call::Suppress(pb::scheduler_call::Suppress {}));
    }

    fn reconcile(&mut self, task_ids: Vec<String>) {
        self.push(Call::Reconcile(pb::scheduler_call::Reconcile {
            tasks: task_ids
                .into_iter()
                .map(|task_id| pb::scheduler_call::reconcile::Task {
                    task_id,
                    agent_id: String::new(),
                })
                .collect(),
        }));
    }

    fn state_get(&mut self, key: String) -> Option<Vec<u8>> {
        lock(&self.pending).state.get(&key).cloned()
    }

    fn state_put(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        let mut p = lock(&self.pending);
        if p.finish.is_some() {
            return Err("the framework has finished".into());
        }
        if key.len() > MAX_STATE_KEY_BYTES {
            return Err(format!(
                "state key is {} bytes; the limit is {MAX_STATE_KEY_BYTES}",
                key.len()
            ));
        }
        if value.len() > MAX_STATE_VALUE_BYTES {
            return Err(format!(
                "state value is {} bytes; the limit is {MAX_STATE_VALUE_BYTES}",
                value.len()
            ));
        }
        let old = p.state.get(&key).map_or(0, |v| key.len() + v.len());
        let total = state_bytes(&p.state) - old + key.len() + value.len();
        if total > MAX_STATE_BYTES {
            return Err(format!(
                "the framework would store {total} bytes of state; the limit is {MAX_STATE_BYTES}"
            ));
        }
        p.state.insert(key.clone(), value.clone());
        p.puts.push((key, value));
        Ok(())
    }

    fn finish(&mut self, outcome: Result<String, String>) {
        let mut p = lock(&self.pending);
        if p.finish.is_none() {
            p.finish = Some(match outcome {
                Ok(r) => FrameworkOutcome::Succeeded(r),
                Err(e) => FrameworkOutcome::Failed(e),
            });
        }
    }

    fn log(&mut self, level: wit::LogLevel, message: String) {
        let framework_id = lock(&self.pending).framework_id.clone();
        let message: String = message.chars().take(MAX_LOG_CHARS).collect();
        match level {
            wit::LogLevel::Trace => {
                tracing::trace!(target: "wasmos::scheduler", %framework_id, "{message}")
            }
            wit::LogLevel::Debug => {
                tracing::debug!(target: "wasmos::scheduler", %framework_id, "{message}")
            }
            wit::LogLevel::Info => {
                tracing::info!(target: "wasmos::scheduler", %framework_id, "{message}")
            }
            wit::LogLevel::Warn => {
                tracing::warn!(target: "wasmos::scheduler", %framework_id, "{message}")
            }
            wit::LogLevel::Error => {
                tracing::error!(target: "wasmos::scheduler", %framework_id, "{message}")
            }
        }
    }

    fn set_timer(&mut self, timer_id: u64, delay_ms: u64) {
        let mut p = lock(&self.pending);
        if p.finish.is_none() {
            p.timers.push((timer_id, delay_ms));
        }
    }
}

impl HostDriver {
    fn push(&mut self, call: Call) {
        let mut p = lock(&self.pending);
        if p.finish.is_none() {
            p.calls.push(call);
        }
    }
}

/// The state of one hosted framework's driving task.
struct Driving {
    master: Master,
    framework_id: FrameworkId,
    conn: ConnId,
    instance: SchedulerInstance,
    pending: Arc<Mutex<Pending>>,
    /// Pending timers by id, so that setting one again replaces it.
    timers: HashMap<u64, AbortHandle>,
    timer_tx: Option<mpsc::UnboundedSender<u64>>,
    /// Acknowledgements of updates the scheduler has taken, not yet passed to the core.
    acks: Vec<pb::scheduler_call::Acknowledge>,
    /// True once the framework was finished or failed.
    done: bool,
    /// True while `state-put`s applied after the last callback may not be committed through
    /// Raft yet: the scheduler gets no further callback until they are, so a scheduler never
    /// acts on state that a leader change could still lose.
    puts_uncommitted: bool,
}

impl Driving {
    async fn run(
        mut self,
        args: Vec<String>,
        mut events: mpsc::Receiver<Result<pb::SchedulerEvent, tonic::Status>>,
    ) {
        let (timer_tx, mut timer_rx) = mpsc::unbounded_channel();
        self.timer_tx = Some(timer_tx);
        let r = self.instance.init(args).await;
        self.after_callback(r);
        while !self.done {
            if std::mem::take(&mut self.puts_uncommitted)
                && let Err(e) = self.master.committed().await
            {
                // Leadership lost (this driver is about to be stopped; the new leader restarts
                // the scheduler from what committed) or no majority in time: carry on.
                warn!(error = %e, "state-put not known to be committed");
            }
            tokio::select! {
                event = events.recv() => match event {
                    Some(Ok(e)) => {
                        self.on_event(e).await;
                        // Whatever else is waiting goes first, so that its acknowledgements
                        // travel together.
                        let mut closed = false;
                        for _ in 1..MAX_EVENT_BATCH {
                            if self.done {
                                break;
                            }
                            match events.try_recv() {
                                Ok(Ok(e)) => self.on_event(e).await,
                                Ok(Err(status)) => {
                                    info!(%status, "the master closed the hosted scheduler's stream");
                                    closed = true;
                                    break;
                                }
                                Err(mpsc::error::TryRecvError::Disconnected) => {
                                    closed = true;
                                    break;
                                }
                                Err(mpsc::error::TryRecvError::Empty) => break,
                            }
                        }
                        self.flush_acks();
                        if closed {
                            break;
                        }
                    }
                    Some(Err(status)) => {
                        info!(%status, "the master closed the hosted scheduler's stream");
                        break;
                    }
                    None => break,
                },
                Some(id) = timer_rx.recv() => {
                    if self.timers.remove(&id).is_some() {
                        let r = self.instance.timer(id).await;
                        self.after_callback(r);
                    }
                }
            }
        }
        for (_, t) in self.timers.drain() {
            t.abort();
        }
        let now = self.master.now();
        self.master
            .core()
            .scheduler_disconnected(&self.framework_id, self.conn, now);
        debug!("hosted scheduler stopped");
    }

    async fn on_event(&mut self, event: pb::SchedulerEvent) {
        let Some(event) = event.event else { return };
        match event {
            Event::Subscribed(_) | Event::Heartbeat(_) => {}
            Event::Offers(o) => {
                let offers: Vec<wit::Offer> = o.offers.into_iter().map(offer_of).collect();
                {
                    let mut p = lock(&self.pending);
                    for o in &offers {
                        p.offers
                            .insert(o.id.clone(), (o.agent_id.clone(), o.resources));
                    }
                }
                let r = self.instance.resource_offers(offers).await;
                self.after_callback(r);
            }
            Event::Rescind(r) => {
                lock(&self.pending).offers.remove(&r.offer_id);
                let r = self.instance.offer_rescinded(r.offer_id).await;
                self.after_callback(r);
            }
            Event::Update(u) => {
                let Some(s) = u.status else { return };
                let Some(state) = state_of(s.state) else {
                    warn!(task_id = %s.task_id, state = s.state, "update with an unknown state dropped");
                    return;
                };
                let ack = (!s.uuid.is_empty()).then(|| pb::scheduler_call::Acknowledge {
                    agent_id: s.agent_id.clone(),
                    task_id: s.task_id.clone(),
                    uuid: s.uuid.clone(),
                });
                let status = wit::TaskStatus {
                    task_id: s.task_id,
                    agent_id: (!s.agent_id.is_empty()).then_some(s.agent_id),
                    state,
                    message: s.message,
                    data: s.data,
                };
                let r = self.instance.status_update(status).await;
                if r.is_ok()
                    && let Some(ack) = ack
                {
                    // After the scheduler has it, as for a gRPC scheduler; passed on with the
                    // others of this burst (`flush_acks`).
                    self.acks.push(ack);
                }
                self.after_callback(r);
            }
            Event::Message(m) => {
                let r = self
                    .instance
                    .framework_message(m.agent_id, m.executor_id, m.data)
                    .await;
                self.after_callback(r);
            }
            Event::Failure(f) => {
                info!(agent_id = %f.agent_id, message = %f.message, "failure reported to hosted scheduler");
            }
            Event::Error(e) => {
                warn!(message = %e.message, fatal = e.fatal, "master error for hosted scheduler");
                if e.fatal {
                    self.done = true;
                }
            }
        }
    }

    /// Passes the acknowledgements collected so far to the core.
    fn flush_acks(&mut self) {
        if self.done || self.acks.is_empty() {
            return;
        }
        let acks = std::mem::take(&mut self.acks);
        if !self
            .master
            .core()
            .acknowledge_many(&self.framework_id, self.conn, acks)
        {
            self.done = true;
        }
    }

    /// Applies what the callback queued, or fails the framework if the callback failed.
    fn after_callback(&mut self, result: Result<(), SchedulerError>) {
        if self.done {
            return;
        }
        if result.is_err() || lock(&self.pending).finish.is_some() {
            // The updates the scheduler took before it ended are acknowledged first.
            self.flush_acks();
            if self.done {
                return;
            }
        }
        let (calls, puts, timers, finish) = {
            let mut p = lock(&self.pending);
            (
                std::mem::take(&mut p.calls),
                std::mem::take(&mut p.puts),
                std::mem::take(&mut p.timers),
                p.finish.clone(),
            )
        };
        let now = self.master.now();
        let mut core = self.master.core();
        if let Err(e) = result {
            // What the failed callback queued is dropped: the framework is failed instead.
            let reason = e.to_string();
            warn!(%reason, "hosted scheduler failed; failing its framework");
            core.finish_framework(
                &self.framework_id,
                self.conn,
                FrameworkOutcome::Failed(reason),
                now,
            );
            self.done = true;
            return;
        }
        for call in calls {
            if !core.scheduler_call(&self.framework_id, self.conn, Some(call), now) {
                self.done = true;
                return;
            }
        }
        self.puts_uncommitted |= !puts.is_empty();
        for (key, value) in puts {
            if let Err(e) = core.put_framework_state(&self.framework_id, key, value) {
                warn!(error = %e, "state-put refused by the registry");
            }
        }
        if let Some(outcome) = finish {
            info!(?outcome, "hosted framework finished");
            core.finish_framework(&self.framework_id, self.conn, outcome, now);
            self.done = true;
            return;
        }
        drop(core);
        for (id, delay_ms) in timers {
            if let Some(old) = self.timers.remove(&id) {
                old.abort();
            }
            if self.timers.len() >= MAX_PENDING_TIMERS {
                warn!(timer_id = id, "too many pending timers; set-timer ignored");
                continue;
            }
            let Some(tx) = self.timer_tx.clone() else {
                continue;
            };
            let delay = Duration::from_millis(delay_ms).min(MAX_TIMER_DELAY);
            let handle = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = tx.send(id);
            });
            self.timers.insert(id, handle.abort_handle());
        }
    }
}
