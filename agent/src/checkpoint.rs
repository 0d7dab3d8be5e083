//! The checkpoint record of a running task: what the agent writes when a task starts and
//! removes (in the same transaction as its terminal status update) when it ends, so that after
//! a restart it knows exactly what was running and how to find it.

use serde::{Deserialize, Serialize};
use wasmos_api::{FrameworkId, TaskId, TaskInfo, TaskState};

use crate::containerizer::ContainerCheckpoint;
use crate::store::{Op, StoreError};

/// One running task, as checkpointed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// The framework the task belongs to.
    pub framework_id: FrameworkId,
    /// The framework's role, for native-task ACLs.
    pub role: String,
    /// The framework's component (hex sha256), for Wasm tasks.
    pub component: Option<String>,
    /// The task as the master launched it.
    pub task: TaskInfo,
    /// Its latest state.
    pub state: TaskState,
    /// How to find its container again.
    pub container: ContainerCheckpoint,
}

/// The record's key: `<framework>/<task>` (ids contain no '/').
pub fn key(framework_id: &FrameworkId, task_id: &TaskId) -> String {
    format!("{framework_id}/{task_id}")
}

impl TaskRecord {
    /// The store operation that writes this record.
    pub fn put(&self) -> Result<Op, StoreError> {
        let bytes = serde_json::to_vec(self)
            .map_err(|e| StoreError::Db(format!("cannot encode a task record: {e}")))?;
        Ok(Op::PutTask(
            key(&self.framework_id, &self.task.task_id),
            bytes,
        ))
    }

    /// The store operation that removes a task's record.
    pub fn remove(framework_id: &FrameworkId, task_id: &TaskId) -> Op {
        Op::RemoveTask(key(framework_id, task_id))
    }

    /// Decodes a stored record.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Db(format!("task record {key} is corrupt: {e}")))
    }
}
