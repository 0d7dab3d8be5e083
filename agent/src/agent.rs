//! [`Agent`]: the agent's core. It launches tasks through the containerizers, turns every state
//! change into a durable status update, checkpoints what runs, kills tasks and tears
//! frameworks down, and on start-up recovers what an earlier agent process left running.
//!
//! It knows nothing about the network: the master session (`session`) feeds it commands and
//! drains its status-update queue; tests drive it directly.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use wasmos_api::{AgentId, FrameworkId, TaskId, TaskInfo, TaskKind, TaskState, TaskStatus};
use wasmos_wasm_executor::{
    ComponentDigest, CpuGovernor, EventPermit, EventReceiver, ExecutorEvent, ExecutorPool,
    WasmRuntime,
};

use crate::checkpoint::TaskRecord;
use crate::config::AgentConfig;
use crate::containerizer::{
    ContainerCheckpoint, Containerizer, ExitFuture, LaunchContext, TaskExit,
};
use crate::fetch::{ComponentFetcher, ComponentStore};
use crate::native::NativeContainerizer;
use crate::sandbox::Sandboxes;
use crate::status_queue::StatusQueue;
use crate::store::{Op, Store, StoreError};
use crate::wasm::{FrameworkMessage, WasmContainerizer, WasmMaxima};

const AGENT_ID_KEY: &str = "agent_id";

/// The agent's store file inside its work dir.
pub const STORE_FILE: &str = "agent.redb";

/// The agent could not start or record something.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent's database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A directory the agent needs could not be created.
    #[error("cannot create {what} {path}: {source}")]
    Io {
        /// What the directory is for (`"work directory"`).
        what: &'static str,
        /// The directory.
        path: std::path::PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The Wasm runtime could not be set up (its settings, or its compiled-code cache).
    #[error("cannot start the Wasm runtime: {0}")]
    Runtime(String),
    /// The store marker could not be read or written.
    #[error("cannot use the agent's store marker {path}: {source}")]
    Marker {
        /// The marker file.
        path: std::path::PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The work dir's marker says its agent had an id, but `agent.redb` is missing, empty or
    /// holds no id: starting would register a new agent while the old one's tasks run on.
    #[error(
        "the work dir {work_dir} held an agent's state (its marker {marker_path} was {marker}), \
         but {path} {found}. The agent refuses to start as a new agent, which would leave the \
         old one's tasks running unaccounted: restore {path} from a backup, or remove it and \
         {marker_path} to start as a new agent (which first kills the native tasks the old one \
         left running here)"
    )]
    StoreLost {
        /// The work dir.
        work_dir: std::path::PathBuf,
        /// The store file.
        path: std::path::PathBuf,
        /// The marker file.
        marker_path: std::path::PathBuf,
        /// What the marker says.
        marker: crate::marker::Marker,
        /// What is wrong with the store file: "is missing", "is empty (0 bytes)", ...
        found: String,
    },
}

/// The framework a launch belongs to, as far as the agent needs to know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameworkContext {
    /// The framework's id.
    pub framework_id: FrameworkId,
    /// Its role, for native-task ACLs.
    pub role: String,
    /// Its component, for Wasm tasks.
    pub component: Option<ComponentDigest>,
    /// Its default deadline and fuel for Wasm tasks (`RunTasks.wasm_task_*`); by default none
    /// (the agent's defaults).
    pub wasm_budget: wasmos_api::WasmBudget,
}

/// A task the agent runs, as reported on (re-)registration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunningTask {
    /// The framework it belongs to.
    pub framework_id: FrameworkId,
    /// The task as the master launched it.
    pub task: TaskInfo,
    /// Its latest state.
    pub state: TaskState,
}

/// What start-up recovery found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Native tasks found running and adopted again.
    pub adopted: Vec<(FrameworkId, TaskId)>,
    /// Tasks that had ended or died with the agent (reported with their terminal state).
    pub ended: Vec<(FrameworkId, TaskId)>,
    /// Status updates still waiting for acknowledgement.
    pub pending_updates: usize,
    /// Native tasks found running in this work dir's cgroups without a task record (left by an
    /// earlier agent whose store was removed, or by a crash between launch and checkpoint),
    /// killed before the agent registers.
    pub killed_unrecorded: Vec<(String, String)>,
}

struct Live {
    framework_id: FrameworkId,
    task: TaskInfo,
    state: TaskState,
    kill: CancellationToken,
    container: Option<ContainerCheckpoint>,
}

type Key = (FrameworkId, TaskId);

struct Inner {
    config: AgentConfig,
    queue: Arc<StatusQueue>,
    store: Store,
    native: Arc<NativeContainerizer>,
    wasm: Arc<WasmContainerizer>,
    sandboxes: Sandboxes,
    tasks: Mutex<HashMap<Key, Live>>,
    agent_id: Mutex<Option<AgentId>>,
    framework_messages_tx: mpsc::UnboundedSender<FrameworkMessage>,
    framework_messages: Mutex<Option<mpsc::UnboundedReceiver<FrameworkMessage>>>,
    stop: CancellationToken,
    metrics: Arc<crate::metrics::AgentMetrics>,
}

/// The agent. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Agent {
    inner: Arc<Inner>,
}

impl Agent {
    /// Opens the agent's work directory, starts the containerizers and recovers: native tasks
    /// still alive are adopted and watched, tasks that ended meanwhile are reported with how
    /// they ended, Wasm tasks are reported FAILED ("agent restarted"), and status updates not
    /// yet acknowledged are queued again.
    pub async fn open(
        config: AgentConfig,
        fetcher: Arc<dyn ComponentFetcher>,
    ) -> Result<(Agent, RecoveryReport), AgentError> {
        let work = config.work_dir.clone();
        std::fs::create_dir_all(&work).map_err(|source| AgentError::Io {
            what: "work directory",
            path: work.clone(),
            source,
        })?;
        let store_path = work.join(STORE_FILE);
        let marker_path = crate::marker::path(&work);
        let marker_err = |source| AgentError::Marker {
            path: marker_path.clone(),
            source,
        };
        let marker = crate::marker::read(&work).map_err(marker_err)?;
        let lost = |marker: &crate::marker::Marker, found: &str| AgentError::StoreLost {
            work_dir: work.clone(),
            path: store_path.clone(),
            marker_path: marker_path.clone(),
            marker: marker.clone(),
            found: found.into(),
        };
        if let Some(m) = &marker {
            // Checked before redb opens the file, which would create a missing or empty one.
            match std::fs::metadata(&store_path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(lost(m, "is missing"));
                }
                Ok(md) if md.len() == 0 => return Err(lost(m, "is empty (0 bytes)")),
                _ => {}
            }
        }
        let (store, loaded) = Store::open_with_faults(&store_path, config.store_faults.clone())?;
        let agent_id = loaded
            .meta
            .iter()
            .find(|(k, _)| k == AGENT_ID_KEY)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
            .and_then(|s| AgentId::new(s).ok());
        match (&marker, &agent_id) {
            (Some(m), None) => return Err(lost(m, "holds no agent id")),
            // A store from before markers.
            (None, Some(id)) => crate::marker::write(&work, id.as_str()).map_err(marker_err)?,
            _ => {}
        }
        let queue = StatusQueue::new(store.clone(), &loaded.meta, &loaded.updates, config.retry)?;

        let native = Arc::new(NativeContainerizer::new(config.native.clone(), &work));
        let mut runtime_config = config.runtime.clone();
        if runtime_config.cache_dir.is_none() {
            runtime_config.cache_dir = Some(work.join("compiled"));
        }
        let runtime =
            WasmRuntime::new(runtime_config).map_err(|e| AgentError::Runtime(e.to_string()))?;
        let cpu_capacity = config.wasm_cpu.capacity_millicpus.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, |n| n.get()) as u64 * 1000
        });
        let governor = Arc::new(CpuGovernor::new(cpu_capacity, config.wasm_cpu.hard_cap));
        let pool = Arc::new(
            ExecutorPool::new(runtime.clone(), work.join("executors"))
                .with_cpu_governor(governor)
                // Each Wasm task's output in its own sandbox, beside native tasks' (GC'd alike).
                .with_task_output_dir(work.join("sandboxes")),
        );
        let components = Arc::new(ComponentStore::new(
            runtime,
            fetcher,
            work.join("components"),
        ));
        let metrics = Arc::new(crate::metrics::AgentMetrics::new());
        let wasm = Arc::new(
            WasmContainerizer::new(
                pool,
                components,
                config.wasm_limits.clone(),
                WasmMaxima {
                    timeout: config.max_wasm_task_timeout,
                    fuel: config.max_wasm_task_fuel,
                },
            )
            .with_metrics(metrics.clone()),
        );
        let (messages_tx, messages_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            sandboxes: Sandboxes::new(&work),
            config,
            queue,
            store,
            native,
            wasm,
            tasks: Mutex::new(HashMap::new()),
            agent_id: Mutex::new(agent_id),
            framework_messages_tx: messages_tx,
            framework_messages: Mutex::new(Some(messages_rx)),
            stop: CancellationToken::new(),
            metrics,
        });
        let agent = Agent { inner };
        tokio::spawn(gc_loop(Arc::downgrade(&agent.inner)));
        tokio::spawn(health_loop(Arc::downgrade(&agent.inner)));
        let mut report = agent.recover(loaded.tasks).await?;
        report.pending_updates = agent.inner.queue.pending();
        report.killed_unrecorded = agent.kill_unrecorded(&report).await;
        Ok((agent, report))
    }

    /// Kills the native tasks that run in this work dir without a record (see
    /// [`RecoveryReport::killed_unrecorded`]), so that no registration leaves them running
    /// unaccounted, and marks their sandboxes done.
    async fn kill_unrecorded(&self, report: &RecoveryReport) -> Vec<(String, String)> {
        let known: HashSet<(String, String)> = report
            .adopted
            .iter()
            .chain(&report.ended)
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect();
        let unknown: Vec<_> = self
            .inner
            .sandboxes
            .list()
            .into_iter()
            .filter(|k| !known.contains(k))
            .collect();
        let killed = self.inner.native.kill_unrecorded(unknown).await;
        for (f, t) in &killed {
            if let (Ok(f), Ok(t)) = (FrameworkId::new(f), TaskId::new(t)) {
                self.inner.sandboxes.mark_done(&f, &t);
            }
        }
        if !killed.is_empty() {
            tracing::warn!(
                killed = killed.len(),
                work_dir = %self.inner.config.work_dir.display(),
                "killed native tasks that ran in this work dir without a record (an earlier \
                 agent's, whose store was removed)"
            );
        }
        killed
    }

    async fn recover(&self, records: Vec<(String, Vec<u8>)>) -> Result<RecoveryReport, AgentError> {
        let mut report = RecoveryReport::default();
        for (key, bytes) in records {
            let record = match TaskRecord::decode(&key, &bytes) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(%key, error = %e, "dropping an unreadable task record");
                    self.inner.store.write_later(vec![Op::RemoveTask(key)]);
                    continue;
                }
            };
            let k = (record.framework_id.clone(), record.task.task_id.clone());
            let kill = CancellationToken::new();
            let containerizer = self.containerizer_for(&record.task);
            let exit = containerizer
                .recover(&record.container, &record.task, kill.clone())
                .await;
            let adopted = matches!(record.container, ContainerCheckpoint::Native(_))
                && self.inner.native.is_running(&record.container);
            if adopted {
                // Only what still runs is reported to the master on re-registration; the
                // others' ends follow as status updates.
                self.lock_tasks().insert(
                    k.clone(),
                    Live {
                        framework_id: record.framework_id.clone(),
                        task: record.task.clone(),
                        state: record.state,
                        kill,
                        container: Some(record.container.clone()),
                    },
                );
                report.adopted.push(k);
            } else {
                report.ended.push(k);
            }
            self.watch(record.framework_id, record.task, exit, None);
        }
        Ok(report)
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Live>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn containerizer_for(&self, task: &TaskInfo) -> Arc<dyn Containerizer> {
        match task.kind {
            TaskKind::Wasm { .. } => self.inner.wasm.clone(),
            TaskKind::Command { .. } => self.inner.native.clone(),
        }
    }

    /// The status-update queue (to run it over a transport and feed it acknowledgements).
    pub fn status_queue(&self) -> &Arc<StatusQueue> {
        &self.inner.queue
    }

    /// The native containerizer (to ask why native tasks are refused here).
    pub fn native(&self) -> &NativeContainerizer {
        &self.inner.native
    }

    /// The Wasm executor pool.
    pub fn executor_pool(&self) -> &Arc<ExecutorPool> {
        self.inner.wasm.pool()
    }

    /// `None` while the agent can take tasks; otherwise why it cannot (its store cannot
    /// write). An unhealthy agent refuses launches and says so to the master, which offers
    /// none of its resources until it is healthy again.
    pub fn unhealthy_reason(&self) -> Option<String> {
        self.inner
            .store
            .unhealthy_reason()
            .map(|why| format!("the agent's store cannot write: {why}"))
    }

    /// Watches the agent's health (see [`Agent::unhealthy_reason`]); changes when the store
    /// fails or recovers.
    pub fn health(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.inner.store.health()
    }

    /// The agent's configuration.
    pub fn config(&self) -> &AgentConfig {
        &self.inner.config
    }

    /// The id the master gave this agent, if it registered before.
    pub fn agent_id(&self) -> Option<AgentId> {
        self.inner
            .agent_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records the id the master gave this agent (durably: it is used to re-register).
    pub async fn set_agent_id(&self, id: AgentId) -> Result<(), AgentError> {
        self.inner
            .store
            .write(vec![Op::PutMeta(
                AGENT_ID_KEY.into(),
                id.as_str().as_bytes().to_vec(),
            )])
            .await?;
        // After the store has the id, so that a marker never names an id the store lacks.
        if self.agent_id().as_ref() != Some(&id) {
            let work = &self.inner.config.work_dir;
            crate::marker::write(work, id.as_str()).map_err(|source| AgentError::Marker {
                path: crate::marker::path(work),
                source,
            })?;
        }
        *self
            .inner
            .agent_id
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(id);
        Ok(())
    }

    /// Executor-to-scheduler messages; the first caller gets the receiver.
    pub fn take_framework_messages(&self) -> Option<mpsc::UnboundedReceiver<FrameworkMessage>> {
        self.inner
            .framework_messages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Every task the agent runs now.
    pub fn running_tasks(&self) -> Vec<RunningTask> {
        self.lock_tasks()
            .values()
            .map(|l| RunningTask {
                framework_id: l.framework_id.clone(),
                task: l.task.clone(),
                state: l.state,
            })
            .collect()
    }

    /// The checkpointed container of a running task (its cgroup, for native tasks).
    pub fn container(
        &self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
    ) -> Option<ContainerCheckpoint> {
        self.lock_tasks()
            .get(&(framework_id.clone(), task_id.clone()))
            .and_then(|l| l.container.clone())
    }

    /// Launches a task. Whatever happens is reported through status updates (RUNNING, then a
    /// terminal state; or FAILED/ERROR at once when it cannot start); the returned state is
    /// the first one reported. Errors are only about recording state.
    pub async fn launch(
        &self,
        framework: &FrameworkContext,
        task: TaskInfo,
    ) -> Result<TaskState, AgentError> {
        let span = tracing::info_span!(
            "launch",
            framework_id = %framework.framework_id,
            agent_id = %task.agent_id,
            task_id = %task.task_id,
        );
        self.launch_inner(framework, task).instrument(span).await
    }

    async fn launch_inner(
        &self,
        framework: &FrameworkContext,
        task: TaskInfo,
    ) -> Result<TaskState, AgentError> {
        let started = std::time::Instant::now();
        let fw = framework.framework_id.clone();
        let key = (fw.clone(), task.task_id.clone());
        if let Err(e) = task.validate() {
            self.report(&fw, &task, TaskState::Error, e.to_string(), None, vec![])
                .await?;
            return Ok(TaskState::Error);
        }
        if let Some(why) = self.unhealthy_reason() {
            // Nothing about it could be recorded, so it does not start. The LOST update is
            // held with the store's other writes and reaches the master once it recovers.
            tracing::debug!(task_id = %task.task_id, reason = %why, "launch refused: the agent is unhealthy");
            let msg = format!(
                "agent {} is unhealthy and runs no new tasks: {why}",
                task.agent_id
            );
            self.report(&fw, &task, TaskState::Lost, msg, None, vec![])
                .await?;
            return Ok(TaskState::Lost);
        }
        let kill = CancellationToken::new();
        {
            let mut tasks = self.lock_tasks();
            if tasks.contains_key(&key) {
                tracing::warn!("launch of a task that already runs here; ignored");
                return Ok(tasks.get(&key).map_or(TaskState::Running, |l| l.state));
            }
            tasks.insert(
                key.clone(),
                Live {
                    framework_id: fw.clone(),
                    task: task.clone(),
                    state: TaskState::Starting,
                    kill: kill.clone(),
                    container: None,
                },
            );
        }
        let is_native = matches!(task.kind, TaskKind::Command { .. });
        let sandbox = match &task.kind {
            // A Wasm task works in its executor instance's sandbox.
            TaskKind::Wasm { executor_id, .. } => {
                self.inner.wasm.pool().executor_dir(&fw, executor_id)
            }
            TaskKind::Command { .. } => match self.inner.sandboxes.create(&fw, &task.task_id) {
                Ok(dir) => dir,
                Err(e) => {
                    self.lock_tasks().remove(&key);
                    let msg = format!("cannot create the task's sandbox: {e}");
                    self.report(&fw, &task, TaskState::Failed, msg, None, vec![])
                        .await?;
                    return Ok(TaskState::Failed);
                }
            },
        };
        let exit_file = self.inner.sandboxes.exit_file(&fw, &task.task_id);
        let containerizer = self.containerizer_for(&task);
        let launched = containerizer
            .launch(LaunchContext {
                framework_id: &fw,
                role: &framework.role,
                component: framework.component,
                framework_budget: framework.wasm_budget,
                task: &task,
                sandbox: &sandbox,
                exit_file: &exit_file,
                kill: kill.clone(),
            })
            .await;
        let launched = match launched {
            Ok(l) => l,
            Err(e) => {
                self.lock_tasks().remove(&key);
                let state = e.state();
                tracing::debug!(%state, error = %e, "task could not start");
                if is_native {
                    self.inner.sandboxes.mark_done(&fw, &task.task_id);
                }
                self.report(&fw, &task, state, e.to_string(), None, vec![])
                    .await?;
                return Ok(state);
            }
        };
        let record = TaskRecord {
            framework_id: fw.clone(),
            role: framework.role.clone(),
            component: framework.component.map(|d| d.to_hex()),
            task: task.clone(),
            state: TaskState::Running,
            container: launched.checkpoint.clone(),
        };
        if let Some(l) = self.lock_tasks().get_mut(&key) {
            l.state = TaskState::Running;
            l.container = Some(launched.checkpoint.clone());
        }
        // The checkpoint and the RUNNING update share one transaction.
        let put = record.put()?;
        self.report(
            &fw,
            &task,
            TaskState::Running,
            String::new(),
            None,
            vec![put],
        )
        .await?;
        self.inner.metrics.launched(started.elapsed());
        self.watch(fw, task, launched.exit, launched.events);
        Ok(TaskState::Running)
    }

    /// Waits for a task's exit in the background, then reports it and forgets the task.
    fn watch(
        &self,
        framework_id: FrameworkId,
        task: TaskInfo,
        exit: ExitFuture,
        mut events: Option<EventReceiver>,
    ) {
        let agent = self.clone();
        let span = tracing::info_span!(
            "task",
            framework_id = %framework_id,
            agent_id = %task.agent_id,
            task_id = %task.task_id,
        );
        tokio::spawn(
            async move {
                let mut exit = exit;
                // Progress is reported as it comes, and all of it before the end.
                let ended = loop {
                    let next = async {
                        match events.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        biased;
                        ended = &mut exit => break ended,
                        ev = next => match ev {
                            Some((ev, permit)) => {
                                agent.executor_event(&framework_id, &task, ev, permit).await
                            }
                            None => events = None,
                        },
                    }
                };
                if let Some(rx) = events.as_mut() {
                    while let Some((ev, permit)) = rx.try_recv() {
                        agent.executor_event(&framework_id, &task, ev, permit).await;
                    }
                }
                let TaskExit {
                    state,
                    message,
                    data,
                } = ended;
                tracing::debug!(%state, %message, "task ended");
                let remove = TaskRecord::remove(&framework_id, &task.task_id);
                // The terminal update and the removal of the checkpoint share a transaction:
                // after a crash the task is either still recorded or its end is queued.
                let result = agent
                    .report(&framework_id, &task, state, message, data, vec![remove])
                    .await;
                if let Err(e) = result {
                    tracing::error!(error = %e, "cannot record the task's end");
                }
                agent
                    .lock_tasks()
                    .remove(&(framework_id.clone(), task.task_id.clone()));
                if matches!(task.kind, TaskKind::Command { .. }) {
                    agent
                        .inner
                        .sandboxes
                        .mark_done(&framework_id, &task.task_id);
                }
            }
            .instrument(span),
        );
    }

    /// Forwards one executor event; `permit` (its place in the task's bounded queue) is freed
    /// once the event has left: a progress once recorded, a message once the session took it.
    async fn executor_event(
        &self,
        framework_id: &FrameworkId,
        task: &TaskInfo,
        ev: ExecutorEvent,
        permit: Option<EventPermit>,
    ) {
        match ev {
            ExecutorEvent::Progress { message, .. } => {
                let r = self
                    .report(
                        framework_id,
                        task,
                        TaskState::Running,
                        message,
                        None,
                        vec![],
                    )
                    .await;
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot record a progress update");
                }
            }
            ExecutorEvent::FrameworkMessage { data, .. } => {
                if let TaskKind::Wasm { executor_id, .. } = &task.kind {
                    let _ = self.inner.framework_messages_tx.send(FrameworkMessage {
                        framework_id: framework_id.clone(),
                        executor_id: executor_id.clone(),
                        data,
                        permit,
                    });
                }
            }
        }
    }

    async fn report(
        &self,
        framework_id: &FrameworkId,
        task: &TaskInfo,
        state: TaskState,
        message: String,
        data: Option<Vec<u8>>,
        extra: Vec<Op>,
    ) -> Result<(), AgentError> {
        let status = TaskStatus {
            task_id: task.task_id.clone(),
            agent_id: Some(task.agent_id.clone()),
            state,
            // A task's guest or program chose much of this text.
            message: wasmos_api::limits::cut_status_message(message),
            data,
            uuid: None,
        };
        self.inner
            .queue
            .enqueue(framework_id.clone(), status, extra)
            .await?;
        self.inner.metrics.task_ended(state);
        Ok(())
    }

    /// Kills a task (TERM then KILL for native tasks, interruption for Wasm tasks); its
    /// KILLED update follows when it has stopped. Returns false when the task does not run
    /// here.
    pub fn kill(&self, framework_id: &FrameworkId, task_id: &TaskId) -> bool {
        let tasks = self.lock_tasks();
        match tasks.get(&(framework_id.clone(), task_id.clone())) {
            Some(l) => {
                tracing::debug!(%framework_id, %task_id, "killing task");
                l.kill.cancel();
                true
            }
            None => false,
        }
    }

    /// Answers a kill of a task this agent does not run with a LOST update, so whoever asked
    /// is not left waiting for a KILLED that will never come.
    pub async fn report_not_running(
        &self,
        framework_id: &FrameworkId,
        task_id: &TaskId,
    ) -> Result<(), AgentError> {
        let status = TaskStatus {
            task_id: task_id.clone(),
            agent_id: self.agent_id(),
            state: TaskState::Lost,
            message: "the task is not running on this agent".into(),
            data: None,
            uuid: None,
        };
        self.inner
            .queue
            .enqueue(framework_id.clone(), status, vec![])
            .await?;
        Ok(())
    }

    /// Tears a framework down here: kills its tasks, waits for them to end, and shuts its
    /// executor instances down.
    pub async fn shutdown_framework(&self, framework_id: &FrameworkId) {
        let span = tracing::info_span!("shutdown_framework", framework_id = %framework_id);
        async {
            let tokens: Vec<CancellationToken> = self
                .lock_tasks()
                .values()
                .filter(|l| &l.framework_id == framework_id)
                .map(|l| l.kill.clone())
                .collect();
            for t in &tokens {
                t.cancel();
            }
            // Wait (bounded) for the tasks to report their end.
            let grace = self.inner.config.native.kill_grace + std::time::Duration::from_secs(5);
            let deadline = tokio::time::Instant::now() + grace;
            while tokio::time::Instant::now() < deadline
                && self
                    .lock_tasks()
                    .values()
                    .any(|l| &l.framework_id == framework_id)
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            self.inner.wasm.shutdown_framework(framework_id).await;
            self.inner.native.shutdown_framework(framework_id).await;
            // The executor instances' sandboxes go with the framework.
            let dir = self
                .inner
                .config
                .work_dir
                .join("executors")
                .join(framework_id.as_str());
            let _ = tokio::fs::remove_dir_all(dir).await;
        }
        .instrument(span)
        .await
    }

    /// Removes finished tasks' sandboxes that are past retention, or all the old ones when the
    /// disk runs low. Runs periodically on its own; callable for tests.
    pub fn gc_sandboxes(&self) -> crate::sandbox::GcReport {
        let live: HashSet<(String, String)> = self
            .lock_tasks()
            .keys()
            .map(|(f, t)| (f.to_string(), t.to_string()))
            .collect();
        self.inner.sandboxes.gc(&self.inner.config.gc, &live)
    }

    /// How native tasks are isolated on this agent: what is on, what is missing, and whether
    /// they are refused for it.
    pub fn native_isolation(&self) -> &crate::isolation::Isolation {
        self.inner.native.isolation()
    }

    /// What this agent measures (`wasmos agent --http`'s `/metrics`).
    pub fn metrics(&self) -> &Arc<crate::metrics::AgentMetrics> {
        &self.inner.metrics
    }

    /// Bytes the task sandboxes and executor instances' directories use on disk (a full walk;
    /// call it off the async runtime).
    pub fn sandbox_disk_used(&self) -> u64 {
        let work = &self.inner.config.work_dir;
        ["sandboxes", "executors"]
            .iter()
            .map(
                |d| match crate::disk_quota::measure(&work.join(d), u64::MAX) {
                    crate::disk_quota::Step::Done(b) | crate::disk_quota::Step::Partial(b) => b,
                },
            )
            .sum()
    }

    /// The directory holding every task's sandbox (`<work_dir>/sandboxes`).
    pub fn sandboxes_dir(&self) -> std::path::PathBuf {
        self.inner.config.work_dir.join("sandboxes")
    }

    /// The sandbox directory of a native task.
    pub fn sandbox_dir(&self, framework_id: &FrameworkId, task_id: &TaskId) -> std::path::PathBuf {
        self.inner.sandboxes.dir(framework_id, task_id)
    }

    /// Stops background work (GC, event forwarding). Running tasks are left alone: native
    /// ones are adopted by the next agent process.
    pub fn stop(&self) {
        self.inner.stop.cancel();
    }
}

impl NativeContainerizer {
    /// True when the checkpointed supervisor is still the process it was.
    pub(crate) fn is_running(&self, container: &ContainerCheckpoint) -> bool {
        match container {
            ContainerCheckpoint::Native(n) => {
                crate::launcher::process_start_time(n.supervisor_pid) == Some(n.supervisor_start)
                    && crate::launcher::process_alive(n.supervisor_pid)
            }
            ContainerCheckpoint::Wasm { .. } => false,
        }
    }
}

/// When the store turns unhealthy (most often a full disk), removes what garbage collection
/// can at once rather than at its next round, so that the store can write again sooner.
async fn health_loop(agent: Weak<Inner>) {
    let (mut health, stop) = match agent.upgrade() {
        Some(inner) => (inner.store.health(), inner.stop.clone()),
        None => return,
    };
    loop {
        tokio::select! {
            changed = health.changed() => if changed.is_err() { return },
            () = stop.cancelled() => return,
        }
        if health.borrow_and_update().is_none() {
            continue;
        }
        let Some(inner) = agent.upgrade() else { return };
        let agent_ref = Agent { inner };
        let report = tokio::task::spawn_blocking(move || agent_ref.gc_sandboxes()).await;
        if let Ok(r) = report {
            tracing::warn!(
                removed = r.removed.len(),
                "agent store cannot write; finished sandboxes garbage-collected"
            );
        }
    }
}

async fn gc_loop(agent: Weak<Inner>) {
    loop {
        let (interval, stop) = match agent.upgrade() {
            Some(inner) => (inner.config.gc_interval, inner.stop.clone()),
            None => return,
        };
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = stop.cancelled() => return,
        }
        let Some(inner) = agent.upgrade() else { return };
        let agent_ref = Agent { inner };
        let report = tokio::task::spawn_blocking(move || agent_ref.gc_sandboxes()).await;
        if let Ok(r) = report
            && !r.removed.is_empty()
        {
            tracing::info!(removed = r.removed.len(), "sandboxes garbage-collected");
        }
    }
}
