//! The [`Containerizer`] trait over the two ways a task runs (a Wasm executor instance, a
//! native process in a cgroup), and the records they share: what a launch needs, what is
//! checkpointed about a running task, and how a task ended.
//!
//! A containerizer starts a task and hands back a future that resolves when the task ends; the
//! agent turns that into status updates. Killing is a [`CancellationToken`] given at launch:
//! cancelling it makes the containerizer stop the task, and the exit future then resolves with
//! `Killed`. After a restart, [`Containerizer::recover`] turns a checkpoint back into such a
//! future.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wasmos_api::{FrameworkId, TaskInfo, TaskState};
use wasmos_wasm_executor::{ComponentDigest, EventReceiver};

use crate::cgroups::TaskCgroup;

/// How a task ended: the terminal state and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskExit {
    /// The terminal state.
    pub state: TaskState,
    /// Why, for the status update.
    pub message: String,
    /// For a finished Wasm task, what its executor returned.
    pub data: Option<Vec<u8>>,
}

impl TaskExit {
    /// An exit in `state` for the reason `message`, with no executor data.
    pub fn new(state: TaskState, message: impl Into<String>) -> Self {
        TaskExit {
            state,
            message: message.into(),
            data: None,
        }
    }
}

/// Resolves when a task has ended.
pub type ExitFuture = Pin<Box<dyn Future<Output = TaskExit> + Send>>;

/// Everything a containerizer needs to start one task.
pub struct LaunchContext<'a> {
    /// The framework the task belongs to.
    pub framework_id: &'a FrameworkId,
    /// The framework's role, for native-task ACLs.
    pub role: &'a str,
    /// The framework's component, for Wasm tasks.
    pub component: Option<ComponentDigest>,
    /// The framework's default deadline and fuel for its Wasm tasks; a task's own come first.
    pub framework_budget: wasmos_api::WasmBudget,
    /// The task as the master launched it.
    pub task: &'a TaskInfo,
    /// The task's sandbox directory (exists).
    pub sandbox: &'a std::path::Path,
    /// Where a native task's supervisor records its exit (outside the sandbox).
    pub exit_file: &'a std::path::Path,
    /// Cancelled to kill the task.
    pub kill: CancellationToken,
}

/// A started task.
pub struct Launched {
    /// What to checkpoint so the task can be found again after an agent restart.
    pub checkpoint: ContainerCheckpoint,
    /// Resolves when the task ends.
    pub exit: ExitFuture,
    /// What the task's executor reports while it runs (Wasm tasks). Every event is in the
    /// queue before `exit` resolves, so the agent can report them in order before the end. The
    /// queue is bounded per task ([`wasmos_wasm_executor::events`]).
    pub events: Option<EventReceiver>,
}

/// What the agent records about a running task's container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerCheckpoint {
    /// A native task: its supervisor and cgroup outlive the agent and are found again.
    Native(NativeCheckpoint),
    /// Wasm tasks die with the agent process; recorded so their loss is reported.
    Wasm {
        /// The executor instance that ran the task.
        executor_id: String,
    },
}

/// A native task's supervisor process and cgroup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativeCheckpoint {
    /// The pid of the task's supervisor process.
    pub supervisor_pid: i32,
    /// The supervisor's start time, to tell it from a process that reused its pid.
    pub supervisor_start: u64,
    /// The task's cgroup.
    pub cgroup: TaskCgroup,
    /// Where the supervisor records the task's exit (outside the sandbox).
    pub exit_file: PathBuf,
    /// The memory limit, for the OOM message.
    pub memory_limit_mb: u64,
    /// The task's sandbox, whose disk usage is watched. Empty in records written before disk
    /// quotas (their tasks are not watched).
    #[serde(default)]
    pub sandbox: PathBuf,
    /// The sandbox's disk quota in MiB (`disk_quota`); 0 in records written before disk
    /// quotas, for which none is enforced.
    #[serde(default)]
    pub disk_limit_mb: u64,
}

/// A task could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The launch is not allowed here; reported as `TASK_ERROR`.
    #[error("{0}")]
    Refused(String),
    /// Starting failed; reported as `TASK_FAILED`.
    #[error("{0}")]
    Failed(String),
}

impl ContainerError {
    /// The state a task that could not start is reported in.
    pub fn state(&self) -> TaskState {
        match self {
            ContainerError::Refused(_) => TaskState::Error,
            ContainerError::Failed(_) => TaskState::Failed,
        }
    }
}

/// A way of running tasks.
#[async_trait::async_trait]
pub trait Containerizer: Send + Sync {
    /// Short name for logs ("wasm", "native").
    fn name(&self) -> &'static str;

    /// Starts a task; returns once it runs (RUNNING may be reported).
    async fn launch(&self, ctx: LaunchContext<'_>) -> Result<Launched, ContainerError>;

    /// After an agent restart: the exit of a task that was running. Tasks that did not
    /// survive the restart resolve at once with how they ended (or that they were lost).
    async fn recover(
        &self,
        checkpoint: &ContainerCheckpoint,
        task: &TaskInfo,
        kill: CancellationToken,
    ) -> ExitFuture;

    /// Releases what a framework holds here (executor instances). Its tasks are killed
    /// separately, through their tokens.
    async fn shutdown_framework(&self, framework_id: &FrameworkId);
}
