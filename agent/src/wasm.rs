//! The Wasm containerizer: runs a task in its framework's executor instance (one per
//! framework and executor id, from `wasmos_wasm_executor::ExecutorPool`), with the instance's
//! memory capped by the task's resources. Kill interrupts the running call; a framework's
//! teardown drops its instances and its lease on its component, so the last framework of a
//! component to end unloads it (`wasmos_wasm_executor::ComponentLease`).
//!
//! Wasm tasks live in the agent's process, so they do not survive an agent restart: recovery
//! reports them FAILED with reason "agent restarted".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wasmos_api::launch::MAX_PAYLOAD_BYTES;
use wasmos_api::{ExecutorId, FrameworkId, TaskInfo, TaskKind, TaskState, WasmBudget};
use wasmos_wasm_executor::{
    ComponentLease, EventPermit, ExecutorPool, QueueBounds, TaskError, TaskLimits, TaskRequest,
    event_queue,
};

use crate::containerizer::{
    ContainerCheckpoint, ContainerError, Containerizer, ExitFuture, LaunchContext, Launched,
    TaskExit,
};
use crate::fetch::ComponentStore;

/// The reason given for Wasm tasks that were running when the agent stopped.
pub const AGENT_RESTARTED: &str =
    "agent restarted: the Wasm executor instance running this task ended with the agent process";

/// Bytes an executor sent to its framework's scheduler.
#[derive(Debug)]
pub struct FrameworkMessage {
    /// The framework whose scheduler gets the message.
    pub framework_id: FrameworkId,
    /// The executor that sent it.
    pub executor_id: ExecutorId,
    /// The bytes, as the executor sent them.
    pub data: Vec<u8>,
    /// The message's place in its task's bounded event queue
    /// ([`wasmos_wasm_executor::events`]), freed when this is dropped: once the message has
    /// been handed to the master session. `None` for a message that holds no place.
    pub permit: Option<EventPermit>,
}

/// The most a Wasm task or its framework may ask for on this agent (`AgentConfig::
/// max_wasm_task_timeout`/`max_wasm_task_fuel`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WasmMaxima {
    /// The longest deadline (`wasmos agent --max-wasm-task-timeout`).
    pub timeout: Duration,
    /// The largest fuel budget (`wasmos agent --max-wasm-task-fuel`).
    pub fuel: u64,
}

/// Where a task's deadline or fuel budget came from, for the messages that name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Task,
    Framework,
    Agent,
}

impl Source {
    fn of<T>(task: Option<T>, framework: Option<T>) -> Source {
        match (task, framework) {
            (Some(_), _) => Source::Task,
            (None, Some(_)) => Source::Framework,
            (None, None) => Source::Agent,
        }
    }

    fn describe(self, task_field: &str, framework_field: &str) -> String {
        match self {
            Source::Task => format!("the task's {task_field}"),
            Source::Framework => format!("its framework's {framework_field}"),
            Source::Agent => "this agent's default".into(),
        }
    }
}

/// The deadline and fuel budget one task runs with: its own, else its framework's, else the
/// agent's default (cut to the agent's maximum); a value asked for above the maximum refuses
/// the task. Also returns what to say when the task hits either.
fn effective_limits(
    template: &TaskLimits,
    maxima: WasmMaxima,
    task: WasmBudget,
    framework: WasmBudget,
) -> Result<(TaskLimits, Source, Source), ContainerError> {
    let asked = task.or(framework);
    let timeout_source = Source::of(task.timeout, framework.timeout);
    let fuel_source = Source::of(task.fuel, framework.fuel);
    if let Some(t) = asked.timeout
        && t > maxima.timeout
    {
        return Err(ContainerError::Refused(format!(
            "{} asks for a deadline of {} s; this agent's maximum is {} s (its operator's \
             `wasmos agent --max-wasm-task-timeout`): ask for less",
            timeout_source.describe(
                "WasmTask.timeout_seconds",
                "FrameworkInfo.wasm_task_timeout_seconds"
            ),
            t.as_secs_f64(),
            maxima.timeout.as_secs_f64()
        )));
    }
    if let Some(f) = asked.fuel
        && f > maxima.fuel
    {
        return Err(ContainerError::Refused(format!(
            "{} asks for a fuel budget of {f}; this agent's maximum is {} (its operator's \
             `wasmos agent --max-wasm-task-fuel`): ask for less",
            fuel_source.describe("WasmTask.fuel", "FrameworkInfo.wasm_task_fuel"),
            maxima.fuel
        )));
    }
    let mut limits = template.clone();
    limits.timeout = asked.timeout.unwrap_or(limits.timeout.min(maxima.timeout));
    limits.fuel = match asked.fuel {
        Some(f) => Some(f),
        None => Some(limits.fuel.unwrap_or(maxima.fuel).min(maxima.fuel)),
    };
    Ok((limits, timeout_source, fuel_source))
}

/// Runs Wasm tasks.
pub struct WasmContainerizer {
    pool: Arc<ExecutorPool>,
    components: Arc<ComponentStore>,
    limits: TaskLimits,
    /// Each framework's claim on the component its tasks run, dropped at its teardown.
    leases: Mutex<HashMap<FrameworkId, ComponentLease>>,
    maxima: WasmMaxima,
    /// Where the fuel tasks burn is counted.
    metrics: Arc<crate::metrics::AgentMetrics>,
}

impl WasmContainerizer {
    /// `limits` is the template for every task: its memory cap is replaced by the task's
    /// memory when the task asks for some, its deadline and fuel by the task's or its
    /// framework's (up to `maxima`; a task asking for more is refused).
    pub fn new(
        pool: Arc<ExecutorPool>,
        components: Arc<ComponentStore>,
        limits: TaskLimits,
        maxima: WasmMaxima,
    ) -> Self {
        WasmContainerizer {
            pool,
            components,
            limits,
            leases: Mutex::new(HashMap::new()),
            maxima,
            metrics: Arc::default(),
        }
    }

    /// Counts the fuel tasks burn in `metrics` (by default, metrics of its own).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::AgentMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The executor pool.
    pub fn pool(&self) -> &Arc<ExecutorPool> {
        &self.pool
    }
}

#[async_trait::async_trait]
impl Containerizer for WasmContainerizer {
    fn name(&self) -> &'static str {
        "wasm"
    }

    async fn launch(&self, ctx: LaunchContext<'_>) -> Result<Launched, ContainerError> {
        let TaskKind::Wasm {
            executor_id,
            payload,
            budget,
        } = &ctx.task.kind
        else {
            return Err(ContainerError::Refused(
                "the Wasm containerizer runs Wasm tasks only".into(),
            ));
        };
        let digest = ctx.component.ok_or_else(|| {
            ContainerError::Refused(
                "Wasm task without a framework component: the framework subscribed without \
                 `component_sha256`; upload its component and subscribe with its digest"
                    .into(),
            )
        })?;
        let (mut limits, timeout_source, fuel_source) =
            effective_limits(&self.limits, self.maxima, *budget, ctx.framework_budget)?;
        let component = self
            .components
            .get(digest)
            .await
            .map_err(|e| ContainerError::Failed(e.to_string()))?;
        {
            let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
            if leases.get(ctx.framework_id).map(|l| l.digest()) != Some(digest) {
                let lease = self.pool.runtime().lease(digest);
                leases.insert(ctx.framework_id.clone(), lease);
            }
        }
        if ctx.task.resources.mem_mb > 0 {
            limits.memory_bytes =
                usize::try_from(ctx.task.resources.mem_mb.saturating_mul(1 << 20))
                    .unwrap_or(usize::MAX);
        }
        let (events, events_rx) = event_queue(QueueBounds::default());
        let req = TaskRequest {
            framework_id: ctx.framework_id.clone(),
            executor_id: executor_id.clone(),
            task_id: ctx.task.task_id.clone(),
            payload: payload.clone(),
            limits,
            events: Some(events),
            kill: ctx.kill.clone(),
            millicpus: ctx.task.resources.millicpus,
            cpu_meter: Default::default(),
        };
        let pool = self.pool.clone();
        let metrics = self.metrics.clone();
        let exit = Box::pin(async move {
            let ran = pool.run_task(&component, req).await;
            match &ran {
                Ok(out) => metrics.fuel_burned(out.fuel_consumed.unwrap_or(0)),
                Err(TaskError::OutOfFuel { budget }) => metrics.fuel_burned(*budget),
                Err(_) => {}
            }
            match ran {
                Ok(out) if out.output.len() > MAX_PAYLOAD_BYTES => TaskExit::new(
                    TaskState::Failed,
                    format!(
                        "the executor returned {} bytes; the limit of a task's result is \
                         {MAX_PAYLOAD_BYTES}",
                        out.output.len()
                    ),
                ),
                Ok(out) => TaskExit {
                    state: TaskState::Finished,
                    message: String::new(),
                    data: Some(out.output),
                },
                Err(TaskError::Killed) => TaskExit::new(TaskState::Killed, "killed on request"),
                Err(TaskError::Deadline(d)) => TaskExit::new(
                    TaskState::Failed,
                    format!(
                        "task exceeded its deadline of {} s, set by {}",
                        d.as_secs_f64(),
                        timeout_source.describe(
                            "WasmTask.timeout_seconds",
                            "FrameworkInfo.wasm_task_timeout_seconds"
                        )
                    ),
                ),
                Err(TaskError::OutOfFuel { budget }) => TaskExit::new(
                    TaskState::Failed,
                    format!(
                        "task ran out of fuel (budget {budget} units, set by {}); give it a \
                         larger budget or do less work per task",
                        fuel_source.describe("WasmTask.fuel", "FrameworkInfo.wasm_task_fuel")
                    ),
                ),
                Err(e) => TaskExit::new(TaskState::Failed, e.to_string()),
            }
        });
        Ok(Launched {
            checkpoint: ContainerCheckpoint::Wasm {
                executor_id: executor_id.to_string(),
            },
            exit,
            events: Some(events_rx),
        })
    }

    async fn recover(
        &self,
        _checkpoint: &ContainerCheckpoint,
        _task: &TaskInfo,
        _kill: CancellationToken,
    ) -> ExitFuture {
        Box::pin(std::future::ready(TaskExit::new(
            TaskState::Failed,
            AGENT_RESTARTED,
        )))
    }

    async fn shutdown_framework(&self, framework_id: &FrameworkId) {
        let n = self.pool.shutdown_framework(framework_id).await;
        // After the instances: the last lease of a component unloads it.
        let lease = self
            .leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(framework_id);
        drop(lease);
        tracing::debug!(%framework_id, instances = n, "executor instances shut down");
    }
}
