//! The task state machine: every state a task can be in, and the one function that says which
//! transitions are allowed.
//!
//! States follow Mesos's (`TASK_STAGING` … `TASK_UNREACHABLE`) so frameworks ported from Mesos
//! keep their logic. A terminal state is final, with one exception Mesos also makes: an
//! `Unreachable` task whose agent comes back may report its real state.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Accepted by the master, not yet on the agent.
    Staging,
    /// The agent is preparing it (fetching the component, creating the sandbox).
    Starting,
    /// Running in its executor or process.
    Running,
    /// Completed successfully. Terminal.
    Finished,
    /// Completed with an error (non-zero exit, trap, limit exceeded). Terminal.
    Failed,
    /// Killed on request. Terminal.
    Killed,
    /// Its agent or executor was lost; its outcome is unknown. Terminal.
    Lost,
    /// Rejected before it ran (invalid launch). Terminal.
    Error,
    /// Its agent stopped answering; it may still be running there.
    Unreachable,
}

/// A transition that the state machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task state cannot go from {from} to {to}")]
pub struct TransitionError {
    /// The state the task is in.
    pub from: TaskState,
    /// The state it was asked to go to.
    pub to: TaskState,
}

impl TaskState {
    /// Every state, for tests and tables.
    pub const ALL: [TaskState; 9] = [
        TaskState::Staging,
        TaskState::Starting,
        TaskState::Running,
        TaskState::Finished,
        TaskState::Failed,
        TaskState::Killed,
        TaskState::Lost,
        TaskState::Error,
        TaskState::Unreachable,
    ];

    /// True for states a task never leaves.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Lost
                | TaskState::Error
        )
    }

    /// The one place that decides whether `self -> to` is allowed. Repeating the same
    /// non-terminal state is allowed (a resent update, a progress message while running).
    pub fn transition(self, to: TaskState) -> Result<TaskState, TransitionError> {
        use TaskState::*;
        let ok = match (self, to) {
            (from, _) if from.is_terminal() => false,
            (Unreachable, _) => true,
            (from, to) if from == to => true,
            (Staging, _) => true,
            (Starting, Staging) => false,
            (Starting, _) => true,
            (Running, Staging | Starting) => false,
            (Running, _) => true,
            _ => false,
        };
        if ok {
            Ok(to)
        } else {
            Err(TransitionError { from: self, to })
        }
    }

    /// Mesos's name for the state (`TASK_RUNNING`), for users coming from Mesos.
    pub fn mesos_name(self) -> &'static str {
        match self {
            TaskState::Staging => "TASK_STAGING",
            TaskState::Starting => "TASK_STARTING",
            TaskState::Running => "TASK_RUNNING",
            TaskState::Finished => "TASK_FINISHED",
            TaskState::Failed => "TASK_FAILED",
            TaskState::Killed => "TASK_KILLED",
            TaskState::Lost => "TASK_LOST",
            TaskState::Error => "TASK_ERROR",
            TaskState::Unreachable => "TASK_UNREACHABLE",
        }
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            TaskState::Staging => "staging",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Finished => "finished",
            TaskState::Failed => "failed",
            TaskState::Killed => "killed",
            TaskState::Lost => "lost",
            TaskState::Error => "error",
            TaskState::Unreachable => "unreachable",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::TaskState::*;
    use super::*;

    #[test]
    fn terminal_states_are_final() {
        for from in TaskState::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in TaskState::ALL {
                assert!(
                    from.transition(to).is_err(),
                    "{from} -> {to} must be refused"
                );
            }
        }
    }

    #[test]
    fn the_happy_path_is_allowed() {
        let s = Staging.transition(Starting).unwrap();
        let s = s.transition(Running).unwrap();
        assert_eq!(s.transition(Running), Ok(Running));
        assert_eq!(s.transition(Finished), Ok(Finished));
    }

    #[test]
    fn no_going_backwards() {
        assert_eq!(
            Running.transition(Staging),
            Err(TransitionError {
                from: Running,
                to: Staging
            })
        );
        assert!(Starting.transition(Staging).is_err());
    }

    #[test]
    fn unreachable_can_resolve() {
        assert_eq!(Unreachable.transition(Running), Ok(Running));
        assert_eq!(Unreachable.transition(Lost), Ok(Lost));
    }
}
