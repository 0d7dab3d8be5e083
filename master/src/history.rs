//! The master's history: the tasks that ended and left the task book, per framework, and the
//! frameworks that were removed, each kept as Mesos keeps them (its
//! `max_completed_tasks_per_framework` and `max_completed_frameworks`): bounded, oldest evicted
//! first, in memory only.
//!
//! Soft state: nothing here is replicated, so a new leader starts with an empty history. A
//! task is recorded once, when it leaves the leader's task book; replicating every task's end
//! would put one Raft entry per task on the hot path for data that is only read by people.
//!
//! Memory: every string is capped ([`MAX_HISTORY_TEXT_BYTES`] for a framework's result or
//! failure, [`MAX_TASK_MESSAGE_BYTES`] for a task's message; ids and names are bounded where
//! they are accepted), so one completed task costs a few hundred bytes and the whole history
//! at most `(registered + max_completed_frameworks) * max_completed_tasks_per_framework` tasks.
//! Plain data, no I/O.

use std::collections::{BTreeMap, HashMap, VecDeque};

use wasmos_api::{AgentId, FrameworkId, TaskId, TaskState};

use crate::allocator::Millis;

/// Longest result or failure text kept for a completed framework, in bytes (cut at a UTF-8
/// boundary).
pub const MAX_HISTORY_TEXT_BYTES: usize = 4096;
/// Longest message kept for a completed task, in bytes (cut at a UTF-8 boundary).
pub const MAX_TASK_MESSAGE_BYTES: usize = 1024;

/// How much history the master keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryBounds {
    /// Most completed tasks kept per framework, registered or completed; the oldest is evicted
    /// past it. Default 1,000 (Mesos's default; `--max-completed-tasks-per-framework`).
    pub max_completed_tasks_per_framework: usize,
    /// Most completed frameworks kept (each with its completed tasks); the oldest is evicted
    /// past it. Default 100 (Mesos's default; `--max-completed-frameworks`).
    pub max_completed_frameworks: usize,
}

impl Default for HistoryBounds {
    fn default() -> Self {
        HistoryBounds {
            max_completed_tasks_per_framework: 1000,
            max_completed_frameworks: 100,
        }
    }
}

/// A task that ended and left the task book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedTask {
    /// Its framework.
    pub framework: FrameworkId,
    /// Its id.
    pub id: TaskId,
    /// The name its framework gave it.
    pub name: String,
    /// The agent it ran on.
    pub agent: AgentId,
    /// Its final (terminal) state.
    pub state: TaskState,
    /// The message of its final update, cut to [`MAX_TASK_MESSAGE_BYTES`].
    pub message: String,
    /// When the master launched it (unix ms; for a task a new leader learnt of from its agent,
    /// when it learnt of it).
    pub launched_ms: Millis,
    /// When its final update was recorded (unix ms).
    pub ended_ms: Millis,
    /// Size of its result (the data of its final update), in bytes; 0 when none.
    pub result_bytes: u64,
}

/// How a completed framework ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameworkEnd {
    /// It finished with a result (`driver.finish(ok(...))`).
    Succeeded,
    /// It failed (its own `driver.finish(err(...))`, or the master failed it).
    Failed,
    /// It was removed without an outcome: torn down (by itself or an operator), or its
    /// failover timeout passed.
    TornDown,
}

impl FrameworkEnd {
    /// Its name in listings: `succeeded`, `failed` or `torn_down`.
    pub fn as_str(self) -> &'static str {
        match self {
            FrameworkEnd::Succeeded => "succeeded",
            FrameworkEnd::Failed => "failed",
            FrameworkEnd::TornDown => "torn_down",
        }
    }
}

/// A framework that was removed, as [`History::complete_framework`] recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompletedFramework {
    /// Its id.
    pub id: FrameworkId,
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// Who registered it (may be empty).
    pub principal: String,
    /// How it ended.
    pub end: FrameworkEnd,
    /// Its result (succeeded), failure (failed) or why it was removed (torn down), cut to
    /// [`MAX_HISTORY_TEXT_BYTES`].
    pub text: String,
    /// When it registered (unix ms); `None` when it registered with an earlier leader.
    pub registered_ms: Option<Millis>,
    /// When it was removed (unix ms).
    pub ended_ms: Millis,
    /// How many of its tasks ended `FINISHED` (as far as this leader knows).
    pub tasks_finished: u64,
    /// How many ended in another terminal state.
    pub tasks_failed: u64,
    /// Its completed tasks, oldest first (at most `max_completed_tasks_per_framework`).
    pub tasks: VecDeque<CompletedTask>,
}

/// Which completed tasks a listing wants; `None` fields match every task.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only this framework's.
    pub framework: Option<FrameworkId>,
    /// Only tasks that ran on this agent.
    pub agent: Option<AgentId>,
    /// Only tasks that ended in this state.
    pub state: Option<TaskState>,
    /// Only tasks with this id.
    pub task: Option<TaskId>,
}

impl TaskFilter {
    fn matches(&self, t: &CompletedTask) -> bool {
        self.agent.as_ref().is_none_or(|a| &t.agent == a)
            && self.state.is_none_or(|s| t.state == s)
            && self.task.as_ref().is_none_or(|id| &t.id == id)
    }
}

/// The history. See the module docs.
#[derive(Debug, Default)]
pub struct History {
    bounds: HistoryBounds,
    /// Completed tasks of frameworks still registered, oldest first.
    live: BTreeMap<FrameworkId, VecDeque<CompletedTask>>,
    /// When each framework registered with this leader.
    registered: HashMap<FrameworkId, Millis>,
    /// Removed frameworks, oldest first.
    frameworks: VecDeque<CompletedFramework>,
}

/// `s` cut to at most `max` bytes at a UTF-8 boundary.
pub fn cut_text(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

impl History {
    /// An empty history with these bounds.
    pub fn new(bounds: HistoryBounds) -> Self {
        History {
            bounds,
            ..History::default()
        }
    }

    /// Its bounds.
    pub fn bounds(&self) -> HistoryBounds {
        self.bounds
    }

    /// Notes when `framework` registered (its first subscription with this leader).
    pub fn registered(&mut self, framework: FrameworkId, now: Millis) {
        self.registered.entry(framework).or_insert(now);
    }

    /// When `framework` registered with this leader, if it is registered and did.
    pub fn registered_ms(&self, framework: &FrameworkId) -> Option<Millis> {
        self.registered.get(framework).copied()
    }

    /// Records a task that ended and left the book; the framework's oldest completed task is
    /// evicted past the bound.
    pub fn record_task(&mut self, mut task: CompletedTask) {
        let max = self.bounds.max_completed_tasks_per_framework;
        if max == 0 {
            return;
        }
        task.message = cut_text(&task.message, MAX_TASK_MESSAGE_BYTES);
        let list = self.live.entry(task.framework.clone()).or_default();
        while list.len() >= max {
            list.pop_front();
        }
        list.push_back(task);
    }

    /// Records that a framework was removed, moving its completed tasks along; the oldest
    /// completed framework is evicted past the bound. `text` is cut to
    /// [`MAX_HISTORY_TEXT_BYTES`]; `registered_ms` and `tasks` are filled in here.
    pub fn complete_framework(&mut self, mut framework: CompletedFramework) {
        framework.text = cut_text(&framework.text, MAX_HISTORY_TEXT_BYTES);
        framework.registered_ms = self.registered.remove(&framework.id);
        framework.tasks = self.live.remove(&framework.id).unwrap_or_default();
        let max = self.bounds.max_completed_frameworks;
        if max == 0 {
            return;
        }
        while self.frameworks.len() >= max {
            self.frameworks.pop_front();
        }
        self.frameworks.push_back(framework);
    }

    /// Drops what is kept of a registered framework that is gone without a record to complete
    /// (so nothing of it stays behind unbounded).
    pub fn forget(&mut self, framework: &FrameworkId) {
        self.registered.remove(framework);
        self.live.remove(framework);
    }

    /// The completed framework with this id, while it is kept.
    pub fn completed_framework(&self, id: &FrameworkId) -> Option<&CompletedFramework> {
        self.frameworks.iter().rev().find(|f| &f.id == id)
    }

    /// Completed frameworks, newest first.
    pub fn frameworks(&self) -> impl Iterator<Item = &CompletedFramework> {
        self.frameworks.iter().rev()
    }

    /// Completed tasks that match `filter` and whose framework `visible` accepts (given the
    /// framework's id and, for a completed framework, its principal): those of registered
    /// frameworks in framework id order, then those of completed frameworks, newest framework
    /// first; each framework's newest task first.
    pub fn tasks<'a>(
        &'a self,
        filter: &'a TaskFilter,
        visible: &'a dyn Fn(&FrameworkId, Option<&str>) -> bool,
    ) -> impl Iterator<Item = &'a CompletedTask> + 'a {
        let wanted = move |id: &FrameworkId| filter.framework.as_ref().is_none_or(|f| f == id);
        let live = self
            .live
            .iter()
            .filter(move |(id, _)| wanted(id) && visible(id, None))
            .flat_map(|(_, tasks)| tasks.iter().rev());
        let completed = self
            .frameworks
            .iter()
            .rev()
            .filter(move |f| wanted(&f.id) && visible(&f.id, Some(&f.principal)))
            .flat_map(|f| f.tasks.iter().rev());
        live.chain(completed).filter(move |t| filter.matches(t))
    }

    /// How many completed tasks are kept in all.
    pub fn task_count(&self) -> usize {
        self.live.values().map(VecDeque::len).sum::<usize>()
            + self.frameworks.iter().map(|f| f.tasks.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fw(id: &str) -> FrameworkId {
        FrameworkId::new(id).unwrap()
    }

    fn task(f: &str, t: &str) -> CompletedTask {
        CompletedTask {
            framework: fw(f),
            id: TaskId::new(t).unwrap(),
            name: t.into(),
            agent: AgentId::new("a").unwrap(),
            state: TaskState::Finished,
            message: String::new(),
            launched_ms: 1,
            ended_ms: 2,
            result_bytes: 0,
        }
    }

    fn completed(id: &str) -> CompletedFramework {
        CompletedFramework {
            id: fw(id),
            name: id.into(),
            role: "*".into(),
            principal: "p".into(),
            end: FrameworkEnd::Succeeded,
            text: String::new(),
            registered_ms: None,
            ended_ms: 3,
            tasks_finished: 0,
            tasks_failed: 0,
            tasks: VecDeque::new(),
        }
    }

    fn ids(h: &History, filter: &TaskFilter) -> Vec<String> {
        h.tasks(filter, &|_, _| true)
            .map(|t| t.id.to_string())
            .collect()
    }

    #[test]
    fn completed_tasks_are_kept_up_to_the_bound_then_the_oldest_goes() {
        let mut h = History::new(HistoryBounds {
            max_completed_tasks_per_framework: 3,
            max_completed_frameworks: 2,
        });
        for t in ["t1", "t2", "t3"] {
            h.record_task(task("f", t));
        }
        // At the bound: all kept, newest first.
        assert_eq!(ids(&h, &TaskFilter::default()), ["t3", "t2", "t1"]);
        h.record_task(task("f", "t4"));
        // One past: the oldest went.
        assert_eq!(ids(&h, &TaskFilter::default()), ["t4", "t3", "t2"]);
        // Another framework's tasks have their own bound.
        h.record_task(task("g", "u1"));
        assert_eq!(h.task_count(), 4);
    }

    #[test]
    fn completed_frameworks_carry_their_tasks_and_the_oldest_goes_past_the_bound() {
        let mut h = History::new(HistoryBounds {
            max_completed_tasks_per_framework: 10,
            max_completed_frameworks: 2,
        });
        h.registered(fw("f1"), 7);
        h.record_task(task("f1", "t1"));
        let mut f1 = completed("f1");
        f1.text = "é".repeat(MAX_HISTORY_TEXT_BYTES);
        h.complete_framework(f1);
        let kept = h.completed_framework(&fw("f1")).unwrap();
        assert_eq!(kept.registered_ms, Some(7));
        assert_eq!(kept.tasks.len(), 1);
        assert!(kept.text.len() <= MAX_HISTORY_TEXT_BYTES && kept.text.len() > 4000);
        let only_f1 = TaskFilter {
            framework: Some(fw("f1")),
            ..TaskFilter::default()
        };
        assert_eq!(ids(&h, &only_f1), ["t1"]);
        h.complete_framework(completed("f2"));
        let names: Vec<String> = h.frameworks().map(|f| f.name.clone()).collect();
        assert_eq!(names, ["f2", "f1"]);
        h.complete_framework(completed("f3"));
        let names: Vec<String> = h.frameworks().map(|f| f.name.clone()).collect();
        assert_eq!(names, ["f3", "f2"]);
        // Its tasks went with it.
        assert!(ids(&h, &only_f1).is_empty());
        assert_eq!(h.task_count(), 0);
    }

    #[test]
    fn listings_follow_the_filter_and_the_visibility() {
        let mut h = History::default();
        h.record_task(task("f", "t1"));
        let mut killed = task("f", "t2");
        killed.state = TaskState::Killed;
        killed.message = "x".repeat(MAX_TASK_MESSAGE_BYTES * 2);
        h.record_task(killed);
        h.record_task(task("g", "t1"));
        let by_state = TaskFilter {
            state: Some(TaskState::Killed),
            ..TaskFilter::default()
        };
        let found: Vec<&CompletedTask> = h.tasks(&by_state, &|_, _| true).collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].message.len(), MAX_TASK_MESSAGE_BYTES);
        let only_g = |f: &FrameworkId, _: Option<&str>| f.as_str() == "g";
        let by_id = TaskFilter {
            task: Some(TaskId::new("t1").unwrap()),
            ..TaskFilter::default()
        };
        let seen: Vec<String> = h
            .tasks(&by_id, &only_g)
            .map(|t| t.framework.to_string())
            .collect();
        assert_eq!(seen, ["g"]);
    }
}
