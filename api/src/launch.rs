//! Domain records for offers, launches and status updates, mirroring the WIT `types` interface.
//!
//! These are what the master, the agent and the framework host pass around internally; the
//! `.proto` messages convert to and from them in [`crate::convert`], where wire input is
//! validated (ids, sizes), so code holding one of these may trust it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{AgentId, ExecutorId, FrameworkId, OfferId, Resources, TaskId, TaskState};

pub use crate::limits::MAX_PAYLOAD_BYTES;
use crate::limits::{MAX_COMMAND_BYTES, MAX_WASM_TASK_FUEL, MAX_WASM_TASK_TIMEOUT_SECONDS};
/// Most arguments plus environment entries of a command task.
pub const MAX_COMMAND_ITEMS: usize = 1024;
/// Largest amount of any one resource accepted in a task or an agent (about 10^12: a billion
/// cores, an exbibyte), so that sums over a whole cluster can never overflow.
pub const MAX_RESOURCE: u64 = 1 << 40;

/// Longest refuse filter honoured, in seconds (one year); longer ones are cut to this.
pub const MAX_REFUSE_SECONDS: f64 = 365.0 * 24.0 * 3600.0;
/// Mesos's default refuse filter, in seconds.
pub const DEFAULT_REFUSE_SECONDS: f64 = 5.0;
/// Shortest refuse filter a decline gets, in seconds (1 s: four of the master's default 250 ms
/// allocation intervals). A decline asking for less (zero, negative, NaN) is raised to it, so a
/// framework that declines everything sees each agent at most once a second instead of every
/// cycle. Remainders of accepts that launch something keep the filter asked for (0 allowed):
/// their framework's share grew by what it launched.
pub const MIN_DECLINE_REFUSE_SECONDS: f64 = 1.0;

/// One agent's resources offered to one framework.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    /// The offer's id, which an accept or a decline names.
    pub id: OfferId,
    /// The framework it is offered to.
    pub framework_id: FrameworkId,
    /// The agent whose resources these are.
    pub agent_id: AgentId,
    /// The agent's host name.
    pub hostname: String,
    /// What is offered.
    pub resources: Resources,
    /// The agent's attributes (`--attributes key=value`), for placement.
    pub attributes: BTreeMap<String, String>,
}

/// What a task runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Run in the framework's executor; tasks with the same executor id on one agent share an
    /// instance.
    Wasm {
        /// The executor instance that runs it.
        executor_id: ExecutorId,
        /// The bytes handed to the executor's `launch` (at most [`MAX_PAYLOAD_BYTES`]).
        payload: Vec<u8>,
        /// This task's own deadline and fuel; by default none (its framework's, else the
        /// agent's defaults apply).
        #[serde(default)]
        budget: WasmBudget,
    },
    /// A native command in a cgroup.
    Command {
        /// The program and its arguments (`argv[0]` is the program; not empty).
        argv: Vec<String>,
        /// Environment variables set for the command.
        env: Vec<(String, String)>,
    },
}

/// A Wasm task's own deadline and fuel budget (`WasmTask.timeout_seconds`/`fuel`), or a
/// framework's defaults for its Wasm tasks (`FrameworkInfo.wasm_task_timeout_seconds`/
/// `wasm_task_fuel`). `None` leaves the value to the next level: task, then framework, then
/// the agent's default. By default both are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmBudget {
    /// The wall-clock deadline; at most [`MAX_WASM_TASK_TIMEOUT_SECONDS`], more than zero.
    pub timeout: Option<Duration>,
    /// The fuel budget; 1..=[`MAX_WASM_TASK_FUEL`].
    pub fuel: Option<u64>,
}

impl WasmBudget {
    /// A budget from its wire fields, named `timeout_field` and `fuel_field` in the refusal:
    /// a timeout must be finite, above zero and at most [`MAX_WASM_TASK_TIMEOUT_SECONDS`]; a
    /// fuel budget 1..=[`MAX_WASM_TASK_FUEL`].
    pub fn from_wire(
        timeout_field: &str,
        timeout_seconds: Option<f64>,
        fuel_field: &str,
        fuel: Option<u64>,
    ) -> Result<Self, String> {
        let timeout = match timeout_seconds {
            None => None,
            Some(s) if !s.is_finite() || s <= 0.0 => {
                return Err(format!(
                    "{timeout_field} is {s}; give a number of seconds above 0 and at most \
                     {MAX_WASM_TASK_TIMEOUT_SECONDS} (7 days), or leave it unset for the default"
                ));
            }
            Some(s) if s > MAX_WASM_TASK_TIMEOUT_SECONDS => {
                return Err(format!(
                    "{timeout_field} is {s} s; the limit is {MAX_WASM_TASK_TIMEOUT_SECONDS} s \
                     (7 days); long-running services belong in command tasks"
                ));
            }
            Some(s) => {
                let d = Duration::from_secs_f64(s);
                if d.is_zero() {
                    return Err(format!(
                        "{timeout_field} is {s} s, which rounds to no time at all; give at \
                         least a nanosecond"
                    ));
                }
                Some(d)
            }
        };
        let fuel = match fuel {
            Some(0) => {
                return Err(format!(
                    "{fuel_field} is 0; give 1..={MAX_WASM_TASK_FUEL}, or leave it unset for \
                     the default"
                ));
            }
            Some(f) if f > MAX_WASM_TASK_FUEL => {
                return Err(format!(
                    "{fuel_field} is {f}; the limit is {MAX_WASM_TASK_FUEL} (10^13)"
                ));
            }
            f => f,
        };
        Ok(WasmBudget { timeout, fuel })
    }

    /// The deadline in seconds, for the wire.
    pub fn timeout_seconds(&self) -> Option<f64> {
        self.timeout.map(|d| d.as_secs_f64())
    }

    /// Each value of `self`, else of `fallback`.
    pub fn or(self, fallback: WasmBudget) -> WasmBudget {
        WasmBudget {
            timeout: self.timeout.or(fallback.timeout),
            fuel: self.fuel.or(fallback.fuel),
        }
    }

    /// Checks a budget built in memory (not from the wire) against the same bounds.
    pub fn check(&self, timeout_field: &str, fuel_field: &str) -> Result<(), String> {
        WasmBudget::from_wire(timeout_field, self.timeout_seconds(), fuel_field, self.fuel)
            .map(|_| ())
    }
}

/// A task a scheduler wants to launch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// The task's id, unique within its framework.
    pub task_id: TaskId,
    /// A name for people (at most 1024 bytes; may be empty).
    pub name: String,
    /// The agent to run it on (the agent of the offers it is launched on).
    pub agent_id: AgentId,
    /// What it may use (at least some cpus or memory).
    pub resources: Resources,
    /// What it runs.
    pub kind: TaskKind,
}

/// Why a task spec is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The task spec breaks a rule, named in `why`.
    #[error("task {task}: {why}")]
    Invalid {
        /// The task.
        task: TaskId,
        /// Which rule it breaks.
        why: String,
    },
}

impl TaskInfo {
    /// Checks what ids alone do not: resources, sizes, a non-empty command.
    pub fn validate(&self) -> Result<(), SpecError> {
        let bad = |why: String| {
            Err(SpecError::Invalid {
                task: self.task_id.clone(),
                why,
            })
        };
        if self.resources.millicpus == 0 && self.resources.mem_mb == 0 {
            return bad("it asks for no cpus and no memory; give it at least one".into());
        }
        let r = &self.resources;
        if r.millicpus > MAX_RESOURCE || r.mem_mb > MAX_RESOURCE || r.disk_mb > MAX_RESOURCE {
            return bad(format!(
                "it asks for {r}; no resource may exceed {MAX_RESOURCE}"
            ));
        }
        if self.name.len() > 1024 {
            return bad(format!(
                "its name is {} bytes; the limit is 1024",
                self.name.len()
            ));
        }
        if let Some((at, c)) = crate::limits::first_control_char(&self.name) {
            return bad(format!(
                "its name holds the control character U+{:04X} at byte {at}; names are shown \
                 to people, so give printable text",
                c as u32
            ));
        }
        if let TaskKind::Wasm { budget, .. } = &self.kind
            && let Err(why) = budget.check("wasm.timeout_seconds", "wasm.fuel")
        {
            return bad(why);
        }
        match &self.kind {
            TaskKind::Wasm { payload, .. } if payload.len() > MAX_PAYLOAD_BYTES => bad(format!(
                "its payload is {} bytes; the limit is {MAX_PAYLOAD_BYTES}",
                payload.len()
            )),
            TaskKind::Command { argv, .. } if argv.is_empty() || argv[0].is_empty() => {
                bad("its command has no program (argv is empty)".into())
            }
            TaskKind::Command { argv, env } if argv.len() + env.len() > MAX_COMMAND_ITEMS => bad(
                format!("its command has more than {MAX_COMMAND_ITEMS} arguments and variables"),
            ),
            TaskKind::Command { argv, env } => {
                let bytes = argv.iter().map(String::len).sum::<usize>()
                    + env.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
                if bytes > MAX_COMMAND_BYTES {
                    bad(format!(
                        "its command's arguments and environment are {bytes} bytes; the limit \
                         is {MAX_COMMAND_BYTES}"
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// A change in a task's state, as reported by an agent or generated by the master.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The task.
    pub task_id: TaskId,
    /// The agent it runs or ran on; `None` when it never reached one.
    pub agent_id: Option<AgentId>,
    /// Its new state.
    pub state: TaskState,
    /// Why, in words; may be empty.
    pub message: String,
    /// For a finished Wasm task, the executor's result.
    pub data: Option<Vec<u8>>,
    /// Set when the update must be acknowledged; the acknowledgement carries it back.
    pub uuid: Option<String>,
}

/// How long a framework does not want to see a declined agent again.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Filters {
    /// How long, in seconds, the declined agent is not offered to the framework again; by
    /// default [`DEFAULT_REFUSE_SECONDS`] (5 s), at most [`MAX_REFUSE_SECONDS`].
    pub refuse_seconds: f64,
}

impl Default for Filters {
    fn default() -> Self {
        Filters {
            refuse_seconds: DEFAULT_REFUSE_SECONDS,
        }
    }
}

impl Filters {
    /// The filter in milliseconds: negative or NaN is zero, huge is cut to a year.
    pub fn refuse_ms(&self) -> u64 {
        let s = self.refuse_seconds;
        if s.is_nan() || s <= 0.0 {
            0
        } else {
            (s.min(MAX_REFUSE_SECONDS) * 1000.0) as u64
        }
    }

    /// The filter of a decline (or of an accept that launches nothing) in milliseconds: as
    /// [`refuse_ms`](Self::refuse_ms), but never below [`MIN_DECLINE_REFUSE_SECONDS`].
    pub fn decline_ms(&self) -> u64 {
        self.refuse_ms()
            .max((MIN_DECLINE_REFUSE_SECONDS * 1000.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(kind: TaskKind, res: Resources) -> TaskInfo {
        TaskInfo {
            task_id: TaskId::new("t").unwrap(),
            name: "t".into(),
            agent_id: AgentId::new("a").unwrap(),
            resources: res,
            kind,
        }
    }

    fn wasm_ok() -> TaskKind {
        TaskKind::Wasm {
            executor_id: ExecutorId::new("e").unwrap(),
            payload: vec![],
            budget: WasmBudget::default(),
        }
    }

    #[test]
    fn spec_validation_names_the_problem() {
        let wasm = TaskKind::Wasm {
            executor_id: ExecutorId::new("e").unwrap(),
            payload: vec![],
            budget: WasmBudget::default(),
        };
        assert!(
            task(wasm.clone(), Resources::new(0.1, 0, 0))
                .validate()
                .is_ok()
        );
        let e = task(wasm, Resources::ZERO)
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("no cpus and no memory"), "{e}");
        for name in ["a\nb", "\u{1b}[2J", "\0", "x\u{9b}"] {
            let mut t = task(wasm_ok(), Resources::new(0.1, 0, 0));
            t.name = name.into();
            let e = t.validate().unwrap_err().to_string();
            assert!(e.contains("control character"), "{name:?}: {e}");
        }
        let mut t = task(wasm_ok(), Resources::new(0.1, 0, 0));
        t.name = "π-é tab-free".into();
        assert!(t.validate().is_ok());
        let cmd = TaskKind::Command {
            argv: vec![],
            env: vec![],
        };
        let e = task(cmd, Resources::new(1.0, 0, 0))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(e.contains("argv is empty"), "{e}");
    }

    #[test]
    fn specs_at_one_past_and_far_past_the_size_limits() {
        let wasm = |n| TaskKind::Wasm {
            executor_id: ExecutorId::new("e").unwrap(),
            payload: vec![0; n],
            budget: WasmBudget::default(),
        };
        let r = Resources::new(0.1, 0, 0);
        assert!(task(wasm(MAX_PAYLOAD_BYTES), r).validate().is_ok());
        for n in [MAX_PAYLOAD_BYTES + 1, 4 * MAX_PAYLOAD_BYTES] {
            let e = task(wasm(n), r).validate().unwrap_err().to_string();
            assert!(e.contains(&format!("payload is {n} bytes")), "{e}");
        }
        // argv[0] "x", then one argument that brings the command to `n` bytes.
        let cmd = |n: usize| TaskKind::Command {
            argv: vec!["x".into(), "a".repeat(n - 1)],
            env: vec![],
        };
        assert!(task(cmd(MAX_COMMAND_BYTES), r).validate().is_ok());
        for n in [MAX_COMMAND_BYTES + 1, 16 * MAX_COMMAND_BYTES] {
            let e = task(cmd(n), r).validate().unwrap_err().to_string();
            assert!(e.contains(&format!("are {n} bytes")), "{e}");
        }
        let env = TaskKind::Command {
            argv: vec!["x".into()],
            env: vec![("K".into(), "v".repeat(MAX_COMMAND_BYTES))],
        };
        assert!(task(env, r).validate().is_err(), "the environment counts");
    }

    #[test]
    fn absurd_resources_are_refused() {
        let wasm = TaskKind::Wasm {
            executor_id: ExecutorId::new("e").unwrap(),
            payload: vec![],
            budget: WasmBudget::default(),
        };
        let huge = Resources {
            millicpus: MAX_RESOURCE + 1,
            mem_mb: 1,
            disk_mb: 0,
        };
        let e = task(wasm, huge).validate().unwrap_err().to_string();
        assert!(e.contains("no resource may exceed"), "{e}");
    }

    #[test]
    fn refuse_ms_is_clamped() {
        assert_eq!(
            Filters {
                refuse_seconds: -1.0
            }
            .refuse_ms(),
            0
        );
        assert_eq!(
            Filters {
                refuse_seconds: f64::NAN
            }
            .refuse_ms(),
            0
        );
        assert_eq!(
            Filters {
                refuse_seconds: 1.5
            }
            .refuse_ms(),
            1500
        );
        assert_eq!(
            Filters {
                refuse_seconds: f64::INFINITY
            }
            .refuse_ms(),
            31_536_000_000
        );
        assert_eq!(Filters::default().refuse_ms(), 5000);
    }

    #[test]
    fn declines_are_raised_to_the_floor() {
        let decline = |refuse_seconds| Filters { refuse_seconds }.decline_ms();
        for below in [0.0, -0.0, -1.0, f64::NEG_INFINITY, f64::NAN, 0.001, 0.999] {
            assert_eq!(decline(below), 1000, "{below}");
        }
        assert_eq!(decline(MIN_DECLINE_REFUSE_SECONDS), 1000, "at the floor");
        assert_eq!(decline(1.5), 1500, "above it");
        assert_eq!(decline(5.0), 5000);
        assert_eq!(decline(f64::INFINITY), 31_536_000_000, "cut to a year");
        assert_eq!(decline(f64::MAX), 31_536_000_000);
        assert_eq!(Filters::default().decline_ms(), 5000);
    }
}
