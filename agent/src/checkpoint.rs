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

    /// Decodes a stored record, refusing one that does not parse or whose framework and task
    /// are not the ones its key names (the agent would never remove such a record).
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        let record: TaskRecord = serde_json::from_slice(bytes)
            .map_err(|e| StoreError::Db(format!("task record {key} is corrupt: {e}")))?;
        let own = self::key(&record.framework_id, &record.task.task_id);
        if own != key {
            return Err(StoreError::Db(format!(
                "task record {key} is corrupt: it holds task {own}"
            )));
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use wasmos_api::{TaskKind, WasmBudget};

    use super::*;

    fn record() -> TaskRecord {
        TaskRecord {
            framework_id: "fw-1".parse().unwrap(),
            role: "batch".into(),
            component: None,
            task: TaskInfo {
                task_id: "t1".parse().unwrap(),
                name: String::new(),
                agent_id: "agent-1".parse().unwrap(),
                resources: Default::default(),
                kind: TaskKind::Wasm {
                    executor_id: "e1".parse().unwrap(),
                    payload: vec![],
                    budget: WasmBudget::default(),
                },
            },
            state: TaskState::Running,
            container: ContainerCheckpoint::Wasm {
                executor_id: "e1".into(),
            },
        }
    }

    #[test]
    fn a_record_decodes_under_its_own_key_only() {
        let Ok(Op::PutTask(key, bytes)) = record().put() else {
            panic!("a record encodes as a put");
        };
        assert_eq!(TaskRecord::decode(&key, &bytes).unwrap(), record());
        // A record stored under another task's key: the agent would never remove it (the fuzz
        // target `agent_records` checks the same on any input).
        let err = TaskRecord::decode("fw-1/t2", &bytes)
            .unwrap_err()
            .to_string();
        assert!(err.contains("fw-1/t2") && err.contains("fw-1/t1"), "{err}");
    }
}
