//! The task book: every task the master knows (soft state), its latest state, and the status
//! updates waiting for the framework's acknowledgement.
//!
//! State changes go through [`TaskState::transition`], so an impossible report (a finished task
//! running again) is refused instead of corrupting the book. A task leaves the book once it is
//! terminal and the framework acknowledged its terminal update, whether the agent or the
//! master made that update (a task its agent's removal made `LOST` stays until the framework
//! acknowledges the `LOST`), so what the master resends is bounded by the book. Rebuilt from agents'
//! re-registrations after a failover. Plain data, no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use wasmos_api::{AgentId, FrameworkId, Resources, TaskId, TaskState, TransitionError};

use crate::allocator::Millis;
use crate::history::{CompletedTask, History, HistoryBounds};

/// One task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskRecord {
    /// The framework that launched the task; with `id`, the task's key in the book.
    pub framework: FrameworkId,
    /// The task's id, unique within its framework while the task is in the book.
    pub id: TaskId,
    /// The human-readable name the framework gave at launch, shown by operator commands; not
    /// unique and never used to find the task.
    pub name: String,
    /// The agent the task runs on; the book indexes tasks by it so an agent's loss reaches
    /// all its tasks.
    pub agent: AgentId,
    /// What the task was launched with; counted as used on `agent` by the allocator until
    /// the task is terminal.
    pub resources: Resources,
    /// The latest state, changed only through [`TaskState::transition`].
    pub state: TaskState,
    /// The message of the latest update.
    pub message: String,
    /// The data of the latest update (a finished Wasm task's result).
    pub data: Option<Vec<u8>>,
    /// When the latest update was recorded, on the core's clock ([`Millis`]).
    pub updated_ms: Millis,
    /// When the master launched the task (or, for a task a new leader learnt of from its
    /// agent, when it learnt of it), on the core's clock; kept in the history.
    pub launched_ms: Millis,
    /// The uuid of the latest update sent to the framework and not yet acknowledged; it is
    /// resent until acknowledged. `None` (the default) when nothing awaits an acknowledgement.
    pub pending_ack: Option<String>,
    /// `Some(reason)` when the pending update was made by the master (`LOST`, `UNREACHABLE`,
    /// a reconciliation answer), with the reason it carries: its acknowledgement goes to no
    /// agent. `None` (the default) for an update forwarded from the task's agent.
    pub pending_from_master: Option<&'static str>,
}

/// Why the book refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskBookError {
    /// [`TaskBook::insert`] of a task id the framework still has in the book (live, or
    /// terminal with its last update unacknowledged).
    #[error("task {task} of framework {framework} already exists and is {state}")]
    Duplicate {
        /// The framework that launched both.
        framework: FrameworkId,
        /// The reused task id.
        task: TaskId,
        /// The state of the task already in the book.
        state: TaskState,
    },
    /// An update for a task the book does not hold (never launched, or already removed).
    #[error("task {task} of framework {framework} is not known")]
    Unknown {
        /// The framework named by the update.
        framework: FrameworkId,
        /// The task id named by the update.
        task: TaskId,
    },
    /// An update the task state machine refuses (a terminal task reported running again);
    /// the record is left as it was.
    #[error("task {task} of framework {framework}: {source}")]
    Transition {
        /// The task's framework.
        framework: FrameworkId,
        /// The task.
        task: TaskId,
        /// The refused transition, with the state it was and the one reported.
        #[source]
        source: TransitionError,
    },
}

type Key = (FrameworkId, TaskId);

/// All tasks the master knows.
#[derive(Debug, Default)]
pub struct TaskBook {
    tasks: HashMap<Key, TaskRecord>,
    by_agent: HashMap<AgentId, BTreeSet<Key>>,
    by_framework: HashMap<FrameworkId, BTreeMap<TaskId, ()>>,
    /// Per framework, how many of its tasks ended and left the book (acknowledged): soft
    /// state of this leader, dropped with the framework.
    ended: HashMap<FrameworkId, EndedCounts>,
    /// Where ended tasks go when they leave the book.
    history: History,
    /// The master's counters: a task that becomes terminal is counted here.
    counters: std::sync::Arc<crate::counters::Counters>,
}

/// How many of a framework's tasks ended and were removed from the book, by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndedCounts {
    /// Ended `TASK_FINISHED`.
    pub finished: u64,
    /// Ended in any other terminal state (failed, killed, lost, error, ...).
    pub failed: u64,
}

impl TaskBook {
    /// An empty book whose history keeps what `bounds` allows.
    pub fn new(bounds: HistoryBounds) -> Self {
        TaskBook {
            history: History::new(bounds),
            ..TaskBook::default()
        }
    }

    /// Counts terminal tasks in `counters` from now on.
    pub fn count_into(&mut self, counters: std::sync::Arc<crate::counters::Counters>) {
        self.counters = counters;
    }

    /// The history of tasks that ended and left the book, and of removed frameworks.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The history, to record a removed framework in.
    pub fn history_mut(&mut self) -> &mut History {
        &mut self.history
    }

    /// Adds a new task. A task id may be reused only once the old task is gone from the book.
    pub fn insert(&mut self, record: TaskRecord) -> Result<(), TaskBookError> {
        let key = (record.framework.clone(), record.id.clone());
        if let Some(old) = self.tasks.get(&key) {
            return Err(TaskBookError::Duplicate {
                framework: key.0,
                task: key.1,
                state: old.state,
            });
        }
        self.by_agent
            .entry(record.agent.clone())
            .or_default()
            .insert(key.clone());
        self.by_framework
            .entry(key.0.clone())
            .or_default()
            .insert(key.1.clone(), ());
        self.tasks.insert(key, record);
        Ok(())
    }

    /// Whether the framework has a task with this id.
    pub fn contains(&self, framework: &FrameworkId, task: &TaskId) -> bool {
        self.tasks.contains_key(&(framework.clone(), task.clone()))
    }

    /// Looks a task up.
    pub fn get(&self, framework: &FrameworkId, task: &TaskId) -> Option<&TaskRecord> {
        self.tasks.get(&(framework.clone(), task.clone()))
    }

    /// Moves a task to `state` if the state machine allows it, and returns the task as it was
    /// before (so the caller can tell whether it just became terminal).
    pub fn update(
        &mut self,
        framework: &FrameworkId,
        task: &TaskId,
        state: TaskState,
        message: String,
        data: Option<Vec<u8>>,
        now: Millis,
    ) -> Result<(TaskState, &mut TaskRecord), TaskBookError> {
        let unknown = || TaskBookError::Unknown {
            framework: framework.clone(),
            task: task.clone(),
        };
        let record = self
            .tasks
            .get_mut(&(framework.clone(), task.clone()))
            .ok_or_else(unknown)?;
        let old = record.state;
        record.state = old
            .transition(state)
            .map_err(|source| TaskBookError::Transition {
                framework: framework.clone(),
                task: task.clone(),
                source,
            })?;
        record.message = message;
        if data.is_some() {
            record.data = data;
        }
        record.updated_ms = now;
        if !old.is_terminal() && record.state.is_terminal() {
            self.counters.task_ended(record.state);
        }
        Ok((old, record))
    }

    /// Mutable access, for bookkeeping fields such as `pending_ack`.
    pub fn get_mut(&mut self, framework: &FrameworkId, task: &TaskId) -> Option<&mut TaskRecord> {
        self.tasks.get_mut(&(framework.clone(), task.clone()))
    }

    /// Removes a task; one that ended is counted in [`TaskBook::ended_counts`] and recorded
    /// in the [`History`] (the one place tasks enter it).
    pub fn remove(&mut self, framework: &FrameworkId, task: &TaskId) -> Option<TaskRecord> {
        let key = (framework.clone(), task.clone());
        let record = self.tasks.remove(&key)?;
        if record.state.is_terminal() {
            self.history.record_task(CompletedTask {
                framework: record.framework.clone(),
                id: record.id.clone(),
                name: record.name.clone(),
                agent: record.agent.clone(),
                state: record.state,
                message: record.message.clone(),
                launched_ms: record.launched_ms,
                ended_ms: record.updated_ms,
                result_bytes: record.data.as_ref().map_or(0, |d| d.len() as u64),
            });
            let counts = self.ended.entry(framework.clone()).or_default();
            if record.state == TaskState::Finished {
                counts.finished += 1;
            } else {
                counts.failed += 1;
            }
        }
        if let Some(set) = self.by_agent.get_mut(&record.agent) {
            set.remove(&key);
            if set.is_empty() {
                self.by_agent.remove(&record.agent);
            }
        }
        if let Some(map) = self.by_framework.get_mut(framework) {
            map.remove(task);
            if map.is_empty() {
                self.by_framework.remove(framework);
            }
        }
        Some(record)
    }

    /// How many of `framework`'s tasks ended and left the book, plus those that ended and are
    /// still in it (not yet acknowledged): its tasks' outcomes as far as this leader knows.
    pub fn ended_counts(&self, framework: &FrameworkId) -> EndedCounts {
        let mut counts = self.ended.get(framework).copied().unwrap_or_default();
        for r in self.of_framework(framework) {
            match r.state {
                TaskState::Finished => counts.finished += 1,
                s if s.is_terminal() => counts.failed += 1,
                _ => {}
            }
        }
        counts
    }

    /// Drops `framework`'s counts (it was removed).
    pub fn forget_framework(&mut self, framework: &FrameworkId) {
        self.ended.remove(framework);
    }

    /// The tasks on an agent.
    pub fn on_agent(&self, agent: &AgentId) -> Vec<&TaskRecord> {
        self.by_agent
            .get(agent)
            .map(|keys| keys.iter().filter_map(|k| self.tasks.get(k)).collect())
            .unwrap_or_default()
    }

    /// The tasks of a framework, in task id order.
    pub fn of_framework(&self, framework: &FrameworkId) -> Vec<&TaskRecord> {
        self.by_framework
            .get(framework)
            .map(|ids| {
                ids.keys()
                    .filter_map(|t| self.tasks.get(&(framework.clone(), t.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every task.
    pub fn all(&self) -> impl Iterator<Item = &TaskRecord> {
        self.tasks.values()
    }

    /// Number of tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// True when there is no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(task: &str) -> TaskRecord {
        TaskRecord {
            framework: FrameworkId::new("f").unwrap(),
            id: TaskId::new(task).unwrap(),
            name: task.into(),
            agent: AgentId::new("a").unwrap(),
            resources: Resources::new(1.0, 1, 0),
            state: TaskState::Staging,
            message: String::new(),
            data: None,
            updated_ms: 0,
            launched_ms: 0,
            pending_ack: None,
            pending_from_master: None,
        }
    }

    #[test]
    fn ended_tasks_are_counted_by_outcome_in_and_out_of_the_book() {
        let mut book = TaskBook::default();
        let f = FrameworkId::new("f").unwrap();
        for (t, end) in [
            ("t1", Some(TaskState::Finished)),
            ("t2", Some(TaskState::Finished)),
            ("t3", Some(TaskState::Failed)),
            ("t4", Some(TaskState::Killed)),
            ("t5", None),
        ] {
            book.insert(rec(t)).unwrap();
            book.update(
                &f,
                &TaskId::new(t).unwrap(),
                TaskState::Running,
                String::new(),
                None,
                1,
            )
            .unwrap();
            if let Some(end) = end {
                book.update(&f, &TaskId::new(t).unwrap(), end, String::new(), None, 2)
                    .unwrap();
            }
        }
        let counts = |b: &TaskBook| {
            let c = b.ended_counts(&f);
            (c.finished, c.failed)
        };
        // Ended but still in the book (not acknowledged): counted; the running one is not.
        assert_eq!(counts(&book), (2, 2));
        // Acknowledged and removed: still counted, once.
        for t in ["t1", "t3", "t4"] {
            book.remove(&f, &TaskId::new(t).unwrap());
        }
        assert_eq!(counts(&book), (2, 2));
        // ... and kept in the history, once each, with their final state.
        let all = crate::history::TaskFilter::default();
        let kept: Vec<(String, TaskState)> = book
            .history()
            .tasks(&all, &|_, _| true)
            .map(|t| (t.id.to_string(), t.state))
            .collect();
        assert_eq!(
            kept,
            [
                ("t4".to_string(), TaskState::Killed),
                ("t3".to_string(), TaskState::Failed),
                ("t1".to_string(), TaskState::Finished)
            ]
        );
        // A live task removed (its framework torn down) is no outcome.
        book.remove(&f, &TaskId::new("t5").unwrap());
        assert_eq!(counts(&book), (2, 2));
        assert_eq!(book.history().task_count(), 3);
        book.forget_framework(&f);
        assert_eq!(counts(&book), (1, 0));
    }

    #[test]
    fn lifecycle_follows_the_state_machine() {
        let mut book = TaskBook::default();
        book.insert(rec("t1")).unwrap();
        assert!(matches!(
            book.insert(rec("t1")),
            Err(TaskBookError::Duplicate { .. })
        ));
        let (f, t) = (FrameworkId::new("f").unwrap(), TaskId::new("t1").unwrap());
        let (old, r) = book
            .update(&f, &t, TaskState::Running, "up".into(), None, 1)
            .unwrap();
        assert_eq!((old, r.state), (TaskState::Staging, TaskState::Running));
        book.update(&f, &t, TaskState::Finished, String::new(), Some(vec![1]), 2)
            .unwrap();
        let err = book
            .update(&f, &t, TaskState::Running, String::new(), None, 3)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("cannot go from finished to running"),
            "{err}"
        );
        assert_eq!(book.on_agent(&AgentId::new("a").unwrap()).len(), 1);
        assert_eq!(book.of_framework(&f)[0].data, Some(vec![1]));
        book.remove(&f, &t).unwrap();
        assert!(book.is_empty() && book.on_agent(&AgentId::new("a").unwrap()).is_empty());
    }
}
