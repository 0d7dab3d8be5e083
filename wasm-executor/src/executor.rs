//! [`ExecutorPool`]: the executor instances of every framework on this machine, and running a
//! task in one.
//!
//! Instances are kept per (framework, executor id). Tasks of one executor id run one after
//! another in the same instance, so what the executor kept in memory is there for the next task;
//! tasks of different instances run in parallel. An instance whose task trapped, ran out of
//! fuel, hit its memory cap, its deadline, or was killed is dropped (its pooling slot returns
//! to the engine) and the next task gets a fresh one.
//!
//! Each instance has a sandbox directory, the only directory its guest can see (preopened as
//! `/`), and capped `stdout`/`stderr` files beside it, outside the guest's view:
//!
//! ```text
//! <work_dir>/<framework_id>/<executor_id>/sandbox/   guest-visible
//! <work_dir>/<framework_id>/<executor_id>/stdout
//! <work_dir>/<framework_id>/<executor_id>/stderr
//! ```
//!
//! With a task output directory ([`ExecutorPool::with_task_output_dir`]; the agent's
//! `<agent work dir>/sandboxes`, where native tasks' sandboxes are) what an instance writes
//! while a task runs goes to that task's own capped files instead, made on its first write, and
//! its executor's `log` lines of that task are added to its stderr as `LEVEL message` lines:
//!
//! ```text
//! <task_output_dir>/<framework_id>/<task_id>/stdout
//! <task_output_dir>/<framework_id>/<task_id>/stderr
//! ```
//!
//! What the instance writes between tasks (while it is instantiated) stays in its own files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wasmos_api::{ComponentDigest, ExecutorId, FrameworkId, TaskId};
use wasmtime::Store;

use crate::bindings::{ExecutorTask, Framework};
use crate::config::{LimitMode, TaskLimits};
use crate::cpu_share::{CpuGovernor, CpuMeter, governed};
use crate::error::TaskError;
use crate::events::EventSender;
use crate::host::{HostState, Role};
use crate::log_budget::LogBudget;
use crate::output::CappedOutput;
use crate::runtime::{LoadedComponent, WasmRuntime, root_message};

/// One task to run.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    /// The task's framework (with `executor_id`, names the instance it runs in).
    pub framework_id: FrameworkId,
    /// The executor instance it runs in: tasks of one executor id share one instance.
    pub executor_id: ExecutorId,
    /// The task.
    pub task_id: TaskId,
    /// The bytes handed to the executor's `launch`.
    pub payload: Vec<u8>,
    /// The task's limits; by default [`TaskLimits::default`] (from [`TaskRequest::new`]).
    pub limits: TaskLimits,
    /// Where progress and framework messages go (a bounded queue, [`crate::events`]); `None`
    /// drops them.
    pub events: Option<EventSender>,
    /// Cancelled to kill the task (the instance is discarded).
    pub kill: CancellationToken,
    /// The CPU the task declared, in millicpus: its weight in the pool's [`CpuGovernor`] (0
    /// counts as [`crate::cpu_share::MIN_MILLICPUS`]). By default 0.
    pub millicpus: u64,
    /// Where the task's CPU time is counted while it runs (when the pool has a governor). By
    /// default a fresh meter.
    pub cpu_meter: CpuMeter,
}

impl TaskRequest {
    /// A request with default limits, no event channel and a fresh kill token.
    pub fn new(
        framework_id: FrameworkId,
        executor_id: ExecutorId,
        task_id: TaskId,
        payload: Vec<u8>,
    ) -> Self {
        TaskRequest {
            framework_id,
            executor_id,
            task_id,
            payload,
            limits: TaskLimits::default(),
            events: None,
            kill: CancellationToken::new(),
            millicpus: 0,
            cpu_meter: CpuMeter::default(),
        }
    }
}

/// A task's result.
#[derive(Debug, Clone)]
pub struct TaskOutcome {
    /// The bytes the executor returned.
    pub output: Vec<u8>,
    /// Fuel burnt, with fuel metering.
    pub fuel_consumed: Option<u64>,
    /// Time spent in the call (instantiation included when there was one).
    pub elapsed: Duration,
    /// True when the task ran in an instance kept from an earlier task.
    pub reused_instance: bool,
}

struct LiveInstance {
    store: Store<HostState>,
    bindings: Framework,
    digest: ComponentDigest,
    stdout: CappedOutput,
    stderr: CappedOutput,
}

type Slot = Arc<tokio::sync::Mutex<Option<LiveInstance>>>;
type SlotKey = (FrameworkId, ExecutorId);

/// The executor instances of one agent (or of `wasmos task run`).
pub struct ExecutorPool {
    runtime: WasmRuntime,
    work_dir: PathBuf,
    slots: Mutex<HashMap<SlotKey, Slot>>,
    /// Each framework's log budget, shared by its executors in this pool.
    log_budgets: Mutex<HashMap<FrameworkId, Arc<Mutex<LogBudget>>>>,
    /// Shares CPU among tasks by their declared millicpus; `None` lets them run unchecked.
    governor: Option<Arc<CpuGovernor>>,
    /// Where each task's own output goes (`<dir>/<framework_id>/<task_id>/`); `None`: in its
    /// executor instance's files.
    task_output_dir: Option<PathBuf>,
}

impl ExecutorPool {
    /// A pool whose sandboxes live under `work_dir`.
    pub fn new(runtime: WasmRuntime, work_dir: impl Into<PathBuf>) -> Self {
        ExecutorPool {
            runtime,
            work_dir: work_dir.into(),
            slots: Mutex::new(HashMap::new()),
            log_budgets: Mutex::new(HashMap::new()),
            governor: None,
            task_output_dir: None,
        }
    }

    /// This pool with each task's stdout and stderr in its own files under `dir`
    /// (`<dir>/<framework_id>/<task_id>/stdout|stderr`, made on the task's first write, each
    /// capped at the task's `max_output_bytes`). Without it (the default) a task's output goes
    /// to its executor instance's files.
    pub fn with_task_output_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.task_output_dir = Some(dir.into());
        self
    }

    /// The directory a task's own output goes to, when the pool has a task output directory.
    pub fn task_output_dir(&self, framework_id: &FrameworkId, task_id: &TaskId) -> Option<PathBuf> {
        // Ids are validated to be plain file names (no '/', not '..').
        self.task_output_dir
            .as_ref()
            .map(|d| d.join(framework_id.as_str()).join(task_id.as_str()))
    }

    /// This pool with its tasks' CPU shared by `governor` (see [`crate::cpu_share`]); without
    /// one (the default), tasks run as fast as the async runtime polls them.
    pub fn with_cpu_governor(mut self, governor: Arc<CpuGovernor>) -> Self {
        self.governor = Some(governor);
        self
    }

    /// The governor sharing this pool's CPU, if any.
    pub fn cpu_governor(&self) -> Option<&Arc<CpuGovernor>> {
        self.governor.as_ref()
    }

    /// The runtime this pool instantiates with.
    pub fn runtime(&self) -> &WasmRuntime {
        &self.runtime
    }

    /// The directory of an executor instance (its `sandbox/`, `stdout` and `stderr` are inside).
    pub fn executor_dir(&self, framework_id: &FrameworkId, executor_id: &ExecutorId) -> PathBuf {
        // Ids are validated to be plain file names (no '/', not '..').
        self.work_dir
            .join(framework_id.as_str())
            .join(executor_id.as_str())
    }

    /// Number of executor instances alive now.
    pub fn live_instances(&self) -> usize {
        self.lock_slots()
            .values()
            .filter(|s| s.try_lock().map(|g| g.is_some()).unwrap_or(true))
            .count()
    }

    fn lock_slots(&self) -> std::sync::MutexGuard<'_, HashMap<SlotKey, Slot>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn log_budget(&self, framework_id: &FrameworkId) -> Arc<Mutex<LogBudget>> {
        self.log_budgets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(framework_id.clone())
            .or_default()
            .clone()
    }

    fn slot(&self, key: &SlotKey) -> Slot {
        self.lock_slots().entry(key.clone()).or_default().clone()
    }

    /// Drops the instance of one executor (waiting for a running task to end first).
    pub async fn shutdown_executor(&self, framework_id: &FrameworkId, executor_id: &ExecutorId) {
        let key = (framework_id.clone(), executor_id.clone());
        let slot = self.lock_slots().remove(&key);
        if let Some(slot) = slot {
            slot.lock().await.take();
        }
    }

    /// Drops every instance of a framework; returns how many there were.
    pub async fn shutdown_framework(&self, framework_id: &FrameworkId) -> usize {
        let slots: Vec<Slot> = {
            let mut map = self.lock_slots();
            let keys: Vec<SlotKey> = map
                .keys()
                .filter(|(f, _)| f == framework_id)
                .cloned()
                .collect();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        let budget = self
            .log_budgets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(framework_id);
        // What was dropped since the last report is not left unsaid.
        if let Some(dropped) = budget.and_then(|b| {
            b.lock()
                .unwrap_or_else(|p| p.into_inner())
                .flush(Instant::now())
        }) {
            tracing::warn!(target: "wasmos::guest", %framework_id, "{}", dropped.message(framework_id.as_str()));
        }
        let mut n = 0;
        for slot in slots {
            if slot.lock().await.take().is_some() {
                n += 1;
            }
        }
        n
    }

    /// Runs one task in its executor instance, creating the instance if needed.
    pub async fn run_task(
        &self,
        component: &Arc<LoadedComponent>,
        req: TaskRequest,
    ) -> Result<TaskOutcome, TaskError> {
        let started = Instant::now();
        let key = (req.framework_id.clone(), req.executor_id.clone());
        let slot = self.slot(&key);
        let mut guard = tokio::select! {
            g = slot.lock() => g,
            () = req.kill.cancelled() => return Err(TaskError::Killed),
        };
        let (mut inst, reused) = match guard.take() {
            Some(i) if i.digest == component.digest() => (i, true),
            _ => (self.instantiate(component, &req).await?, false),
        };

        let limits = &req.limits;
        {
            let data = inst.store.data_mut();
            data.role = Role::Executor {
                events: req.events.clone(),
                task_id: req.task_id.to_string(),
                framework_id: req.framework_id.to_string(),
                log: self.log_budget(&req.framework_id),
                stderr: Some(inst.stderr.clone()),
            };
            data.limiter.memory_bytes = limits.memory_bytes;
            data.limiter.denied_memory = None;
        }
        let budget = limits.fuel.unwrap_or(u64::MAX);
        let fuel = self.runtime.config().limit_mode == LimitMode::Fuel;
        if fuel {
            inst.store
                .set_fuel(budget)
                .map_err(|e| TaskError::Instantiate(root_message(&e)))?;
        }
        let stderr_mark = inst.stderr.written();
        if let Some(dir) = self.task_output_dir(&req.framework_id, &req.task_id) {
            inst.stdout.begin_task(dir.clone(), limits.max_output_bytes);
            inst.stderr.begin_task(dir, limits.max_output_bytes);
        }
        let task = ExecutorTask {
            task_id: req.task_id.to_string(),
            executor_id: req.executor_id.to_string(),
            payload: req.payload,
        };
        let call = inst
            .bindings
            .wasmos_framework_executor()
            .call_launch(&mut inst.store, &task);
        let call = async {
            match &self.governor {
                Some(g) => governed(g.clone(), req.millicpus, req.cpu_meter.clone(), call).await,
                None => call.await,
            }
        };
        let result = tokio::select! {
            r = tokio::time::timeout(limits.timeout, call) => match r {
                Ok(r) => r,
                Err(_) => Err(wasmtime::Error::new(DeadlineHit)),
            },
            () = req.kill.cancelled() => Err(wasmtime::Error::new(Killed)),
        };
        let fuel_consumed = if fuel {
            inst.store
                .get_fuel()
                .ok()
                .map(|left| budget.saturating_sub(left))
        } else {
            None
        };
        if result.is_ok() {
            inst.stdout.end_task();
            inst.stderr.end_task();
        }
        match result {
            Ok(Ok(output)) => {
                *guard = Some(inst);
                Ok(TaskOutcome {
                    output,
                    fuel_consumed,
                    elapsed: started.elapsed(),
                    reused_instance: reused,
                })
            }
            Ok(Err(message)) => {
                *guard = Some(inst);
                Err(TaskError::Guest(message))
            }
            Err(e) => {
                let err = classify(&e, &inst.store, limits, budget, || {
                    inst.stderr
                        .task_tail(1024)
                        .unwrap_or_else(|| inst.stderr.tail_since(stderr_mark, 1024))
                });
                // `inst` is dropped here: a trapped instance must not run again, and its
                // pooling slot goes back to the engine.
                drop(inst);
                tracing::debug!(task_id = %req.task_id, error = %err, "task failed; instance discarded");
                Err(err)
            }
        }
    }

    async fn instantiate(
        &self,
        component: &Arc<LoadedComponent>,
        req: &TaskRequest,
    ) -> Result<LiveInstance, TaskError> {
        let dir = self.executor_dir(&req.framework_id, &req.executor_id);
        let sandbox = dir.join("sandbox");
        let io = |source| TaskError::Sandbox {
            path: dir.clone(),
            source,
        };
        tokio::fs::create_dir_all(&sandbox).await.map_err(io)?;
        let cap = req.limits.max_output_bytes;
        let stdout = CappedOutput::create(&dir.join("stdout"), cap).map_err(io)?;
        let stderr = CappedOutput::create(&dir.join("stderr"), cap).map_err(io)?;
        let role = Role::Executor {
            events: None,
            task_id: req.task_id.to_string(),
            framework_id: req.framework_id.to_string(),
            log: self.log_budget(&req.framework_id),
            stderr: Some(stderr.clone()),
        };
        let mut store = self
            .runtime
            .new_store(
                &req.limits,
                role,
                Some(&sandbox),
                Some(stdout.clone()),
                Some(stderr.clone()),
            )
            .map_err(|e| TaskError::Instantiate(root_message(&e)))?;
        let bindings = component
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| TaskError::Instantiate(root_message(&e)))?;
        Ok(LiveInstance {
            store,
            bindings,
            digest: component.digest(),
            stdout,
            stderr,
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("deadline")]
struct DeadlineHit;

#[derive(Debug, thiserror::Error)]
#[error("killed")]
struct Killed;

/// Turns a failed call into the error a user can act on.
pub(crate) fn classify(
    e: &wasmtime::Error,
    store: &Store<HostState>,
    limits: &TaskLimits,
    fuel_budget: u64,
    stderr_tail: impl FnOnce() -> String,
) -> TaskError {
    if e.downcast_ref::<DeadlineHit>().is_some() {
        return TaskError::Deadline(limits.timeout);
    }
    if e.downcast_ref::<Killed>().is_some() {
        return TaskError::Killed;
    }
    if let Some(wanted) = store.data().limiter.denied_memory {
        return TaskError::MemoryLimit {
            limit_mb: (limits.memory_bytes >> 20) as u64,
            wanted_mb: (wanted as u64).div_ceil(1 << 20),
        };
    }
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => TaskError::OutOfFuel {
            budget: fuel_budget,
        },
        Some(wasmtime::Trap::StackOverflow) => TaskError::StackOverflow,
        Some(wasmtime::Trap::Interrupt) => TaskError::Deadline(limits.timeout),
        Some(trap) => TaskError::Trap {
            message: trap.to_string(),
            stderr_tail: stderr_tail(),
        },
        None => TaskError::Trap {
            message: root_message(e),
            stderr_tail: stderr_tail(),
        },
    }
}

/// Compile-time check: a task's future can be spawned on a multi-threaded runtime.
#[allow(dead_code)]
fn run_task_is_send(p: &ExecutorPool, c: &Arc<LoadedComponent>, r: TaskRequest) {
    fn is_send<T: Send>(_: T) {}
    is_send(p.run_task(c, r));
}
