//! Conversions between the wire messages in [`crate::proto`] and the domain types.
//!
//! Everything that comes off the network passes through here: ids are validated, enums checked,
//! sizes capped, and a missing required field is an error that names it. Conversions towards
//! the wire cannot fail.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::ids::IdError;
use crate::launch::{
    Filters, MAX_PAYLOAD_BYTES, Offer, SpecError, TaskInfo, TaskKind, TaskStatus, WasmBudget,
};
use crate::proto as pb;
use crate::{ExecutorId, Resources, TaskState};

/// Why a wire message could not become a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A required field is absent.
    #[error("field {field} is missing")]
    Missing {
        /// The field's name.
        field: &'static str,
    },
    /// An id field is not a valid id.
    #[error("field {field}: {source}")]
    Id {
        /// The field's name.
        field: &'static str,
        /// What is wrong with the id.
        #[source]
        source: IdError,
    },
    /// A task state field holds a number that is no task state (or `UNSPECIFIED`).
    #[error("field {field}: {value} is not a known task state")]
    State {
        /// The field's name.
        field: &'static str,
        /// The number it holds.
        value: i32,
    },
    /// A field is longer than its limit.
    #[error("field {field} is {len} bytes long; the limit is {max}")]
    TooLarge {
        /// The field's name.
        field: &'static str,
        /// Its length, in bytes.
        len: usize,
        /// The limit, in bytes.
        max: usize,
    },
    /// The task spec the message describes is malformed.
    #[error(transparent)]
    Spec(#[from] SpecError),
}

/// Parses a required id field.
pub fn id<T: FromStr<Err = IdError>>(field: &'static str, s: &str) -> Result<T, ConvertError> {
    s.parse()
        .map_err(|source| ConvertError::Id { field, source })
}

/// Parses an optional id field: empty means absent.
pub fn opt_id<T: FromStr<Err = IdError>>(
    field: &'static str,
    s: &str,
) -> Result<Option<T>, ConvertError> {
    if s.is_empty() {
        Ok(None)
    } else {
        id(field, s).map(Some)
    }
}

impl From<Resources> for pb::Resources {
    fn from(r: Resources) -> Self {
        pb::Resources {
            millicpus: r.millicpus,
            mem_mb: r.mem_mb,
            disk_mb: r.disk_mb,
        }
    }
}

impl From<pb::Resources> for Resources {
    fn from(r: pb::Resources) -> Self {
        Resources {
            millicpus: r.millicpus,
            mem_mb: r.mem_mb,
            disk_mb: r.disk_mb,
        }
    }
}

/// Resources from an optional field; absent is zero.
pub fn resources(r: Option<pb::Resources>) -> Resources {
    r.map(Resources::from).unwrap_or_default()
}

impl From<TaskState> for pb::TaskState {
    fn from(s: TaskState) -> Self {
        match s {
            TaskState::Staging => pb::TaskState::Staging,
            TaskState::Starting => pb::TaskState::Starting,
            TaskState::Running => pb::TaskState::Running,
            TaskState::Finished => pb::TaskState::Finished,
            TaskState::Failed => pb::TaskState::Failed,
            TaskState::Killed => pb::TaskState::Killed,
            TaskState::Lost => pb::TaskState::Lost,
            TaskState::Error => pb::TaskState::Error,
            TaskState::Unreachable => pb::TaskState::Unreachable,
        }
    }
}

/// A task state from its wire number.
pub fn task_state(field: &'static str, value: i32) -> Result<TaskState, ConvertError> {
    let bad = ConvertError::State { field, value };
    Ok(
        match pb::TaskState::try_from(value).map_err(|_| bad.clone())? {
            pb::TaskState::Unspecified => return Err(bad),
            pb::TaskState::Staging => TaskState::Staging,
            pb::TaskState::Starting => TaskState::Starting,
            pb::TaskState::Running => TaskState::Running,
            pb::TaskState::Finished => TaskState::Finished,
            pb::TaskState::Failed => TaskState::Failed,
            pb::TaskState::Killed => TaskState::Killed,
            pb::TaskState::Lost => TaskState::Lost,
            pb::TaskState::Error => TaskState::Error,
            pb::TaskState::Unreachable => TaskState::Unreachable,
        },
    )
}

fn attributes_to_pb(a: &BTreeMap<String, String>) -> Vec<pb::Attribute> {
    a.iter()
        .map(|(k, v)| pb::Attribute {
            key: k.clone(),
            value: v.clone(),
        })
        .collect()
}

/// Attributes from the wire; a repeated key keeps its last value.
pub fn attributes(a: Vec<pb::Attribute>) -> BTreeMap<String, String> {
    a.into_iter().map(|kv| (kv.key, kv.value)).collect()
}

impl TryFrom<pb::TaskInfo> for TaskInfo {
    type Error = ConvertError;

    /// Validates ids and the spec ([`TaskInfo::validate`]).
    fn try_from(t: pb::TaskInfo) -> Result<Self, ConvertError> {
        let kind = match t.kind {
            None => return Err(ConvertError::Missing { field: "task.kind" }),
            Some(pb::task_info::Kind::Wasm(w)) => TaskKind::Wasm {
                executor_id: id::<ExecutorId>("task.wasm.executor_id", &w.executor_id)?,
                budget: WasmBudget::from_wire(
                    "wasm.timeout_seconds",
                    w.timeout_seconds,
                    "wasm.fuel",
                    w.fuel,
                )
                .map_err(|why| -> ConvertError {
                    match id("task.task_id", &t.task_id) {
                        Ok(task) => SpecError::Invalid { task, why }.into(),
                        Err(e) => e,
                    }
                })?,
                payload: w.payload,
            },
            Some(pb::task_info::Kind::Command(c)) => TaskKind::Command {
                argv: c.argv,
                env: c.env.into_iter().map(|kv| (kv.key, kv.value)).collect(),
            },
        };
        let info = TaskInfo {
            task_id: id("task.task_id", &t.task_id)?,
            name: t.name,
            agent_id: id("task.agent_id", &t.agent_id)?,
            resources: resources(t.resources),
            kind,
        };
        info.validate()?;
        Ok(info)
    }
}

impl From<&TaskInfo> for pb::TaskInfo {
    fn from(t: &TaskInfo) -> Self {
        let kind = match &t.kind {
            TaskKind::Wasm {
                executor_id,
                payload,
                budget,
            } => pb::task_info::Kind::Wasm(pb::WasmTask {
                executor_id: executor_id.to_string(),
                payload: payload.clone(),
                timeout_seconds: budget.timeout_seconds(),
                fuel: budget.fuel,
            }),
            TaskKind::Command { argv, env } => pb::task_info::Kind::Command(pb::CommandTask {
                argv: argv.clone(),
                env: env
                    .iter()
                    .map(|(k, v)| pb::Attribute {
                        key: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
            }),
        };
        pb::TaskInfo {
            task_id: t.task_id.to_string(),
            name: t.name.clone(),
            agent_id: t.agent_id.to_string(),
            resources: Some(t.resources.into()),
            kind: Some(kind),
        }
    }
}

impl TryFrom<pb::TaskStatus> for TaskStatus {
    type Error = ConvertError;

    fn try_from(s: pb::TaskStatus) -> Result<Self, ConvertError> {
        if let Some(data) = &s.data
            && data.len() > MAX_PAYLOAD_BYTES
        {
            return Err(ConvertError::TooLarge {
                field: "status.data",
                len: data.len(),
                max: MAX_PAYLOAD_BYTES,
            });
        }
        Ok(TaskStatus {
            task_id: id("status.task_id", &s.task_id)?,
            agent_id: opt_id("status.agent_id", &s.agent_id)?,
            state: task_state("status.state", s.state)?,
            message: s.message,
            data: s.data,
            uuid: if s.uuid.is_empty() {
                None
            } else {
                Some(s.uuid)
            },
        })
    }
}

/// A status for the wire, with the reason it was sent.
pub fn status_to_pb(s: &TaskStatus, reason: &str) -> pb::TaskStatus {
    pb::TaskStatus {
        task_id: s.task_id.to_string(),
        agent_id: s
            .agent_id
            .as_ref()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        state: pb::TaskState::from(s.state) as i32,
        message: s.message.clone(),
        data: s.data.clone(),
        uuid: s.uuid.clone().unwrap_or_default(),
        reason: reason.to_string(),
    }
}

impl From<&Offer> for pb::Offer {
    fn from(o: &Offer) -> Self {
        pb::Offer {
            id: o.id.to_string(),
            framework_id: o.framework_id.to_string(),
            agent_id: o.agent_id.to_string(),
            hostname: o.hostname.clone(),
            resources: Some(o.resources.into()),
            attributes: attributes_to_pb(&o.attributes),
        }
    }
}

/// Filters from an optional wire field: absent means the default (5 s).
pub fn filters(f: Option<pb::Filters>) -> Filters {
    match f.and_then(|f| f.refuse_seconds) {
        Some(refuse_seconds) => Filters { refuse_seconds },
        None => Filters::default(),
    }
}

/// Attributes for the wire.
pub fn attributes_pb(a: &BTreeMap<String, String>) -> Vec<pb::Attribute> {
    attributes_to_pb(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AgentId, TaskId};

    fn wasm_task() -> pb::TaskInfo {
        pb::TaskInfo {
            task_id: "t1".into(),
            name: "one".into(),
            agent_id: "a1".into(),
            resources: Some(pb::Resources {
                millicpus: 500,
                mem_mb: 64,
                disk_mb: 0,
            }),
            kind: Some(pb::task_info::Kind::Wasm(pb::WasmTask {
                executor_id: "e1".into(),
                payload: vec![1, 2],
                ..Default::default()
            })),
        }
    }

    #[test]
    fn task_info_round_trips() {
        let t = TaskInfo::try_from(wasm_task()).unwrap();
        assert_eq!(t.task_id, TaskId::new("t1").unwrap());
        assert_eq!(pb::TaskInfo::from(&t), wasm_task());
    }

    #[test]
    fn bad_wire_input_names_the_field() {
        let mut t = wasm_task();
        t.agent_id = "../a".into();
        let e = TaskInfo::try_from(t).unwrap_err().to_string();
        assert!(e.starts_with("field task.agent_id:"), "{e}");
        let mut t = wasm_task();
        t.kind = None;
        assert_eq!(
            TaskInfo::try_from(t),
            Err(ConvertError::Missing { field: "task.kind" })
        );
        let s = pb::TaskStatus {
            task_id: "t".into(),
            state: 0,
            ..Default::default()
        };
        assert!(matches!(
            TaskStatus::try_from(s),
            Err(ConvertError::State { value: 0, .. })
        ));
        let s = pb::TaskStatus {
            task_id: "t".into(),
            state: 99,
            ..Default::default()
        };
        assert!(TaskStatus::try_from(s).is_err());
    }

    #[test]
    fn status_round_trips_and_every_state_maps() {
        for state in TaskState::ALL {
            let s = TaskStatus {
                task_id: TaskId::new("t").unwrap(),
                agent_id: Some(AgentId::new("a").unwrap()),
                state,
                message: "m".into(),
                data: Some(vec![7]),
                uuid: Some("u".into()),
            };
            assert_eq!(TaskStatus::try_from(status_to_pb(&s, "agent")).unwrap(), s);
        }
    }

    #[test]
    fn absent_filters_mean_the_default() {
        assert_eq!(filters(None).refuse_ms(), 5000);
        assert_eq!(
            filters(Some(pb::Filters {
                refuse_seconds: None
            }))
            .refuse_ms(),
            5000
        );
        assert_eq!(
            filters(Some(pb::Filters {
                refuse_seconds: Some(0.0)
            }))
            .refuse_ms(),
            0
        );
    }
}
