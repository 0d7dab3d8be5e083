//! What the soak checks, as it goes and at the end; each broken rule is a violation, logged
//! on stderr at once and counted in the report:
//!
//! - every submitted framework ends, within a bound, with its correct result
//!   ([`super::workload::check`]); one that fails, is removed without a result or does not end
//!   in time is a violation. A status update that never reached its scheduler shows up here:
//!   pi, logreg and benchguest wait for every task's end, so a lost update leaves them waiting
//!   until the bound;
//! - no task id ran twice to different results: the leaders' task histories, read over the
//!   whole run and across leader changes, must not report one (framework, task) both
//!   FINISHED and FAILED. Only those two are results of a run: KILLED, LOST, ERROR and
//!   UNREACHABLE say the outcome is unknown or that it never ran, and a scheduler restarted
//!   on a new leader may launch an id again after such an end;
//! - the masters' registries are identical at the end: at the same applied index, the same
//!   digest ([`compare_digests`]);
//! - no process's RSS passes the bound (sampled every second, by process name: restarts
//!   included).

use std::collections::BTreeMap;

use super::cluster::Digest;
use super::workload::{self, Kind, Verdict};

/// The run's findings.
pub struct Checker {
    violations: Vec<String>,
    /// Terminal state (the `TaskState` number) of each task seen, by (framework, task).
    tasks: BTreeMap<(String, String), i32>,
    /// Largest RSS seen per process name, in KiB.
    rss_max_kib: BTreeMap<String, u64>,
    rss_bound_kib: u64,
    logreg_reference: Option<String>,
    completed: BTreeMap<Kind, u64>,
    failed_by_fault: BTreeMap<Kind, u64>,
}

impl Checker {
    pub fn new(rss_bound_mib: u64) -> Checker {
        Checker {
            violations: Vec::new(),
            tasks: BTreeMap::new(),
            rss_max_kib: BTreeMap::new(),
            rss_bound_kib: rss_bound_mib * 1024,
            logreg_reference: None,
            completed: BTreeMap::new(),
            failed_by_fault: BTreeMap::new(),
        }
    }

    /// Records a violation (and says so on stderr at once).
    pub fn violation(&mut self, what: String) {
        eprintln!("wasmos-bench chaos: VIOLATION: {what}");
        self.violations.push(what);
    }

    pub fn violations(&self) -> &[String] {
        &self.violations
    }

    /// A framework ended: checks its outcome.
    pub fn outcome(&mut self, kind: Kind, name: &str, id: &str, succeeded: bool, result: &str) {
        match workload::check(kind, succeeded, result, &mut self.logreg_reference) {
            Ok(Verdict::Correct) => *self.completed.entry(kind).or_default() += 1,
            Ok(Verdict::FailedByFault) => *self.failed_by_fault.entry(kind).or_default() += 1,
            Err(e) => self.violation(format!("{name} ({id}, {}): {e:#}", kind.name())),
        }
    }

    /// Frameworks that reached their correct result, by kind.
    pub fn completed(&self) -> &BTreeMap<Kind, u64> {
        &self.completed
    }

    /// Frameworks that failed as one that does not survive faults does, by kind.
    pub fn failed_by_fault(&self) -> &BTreeMap<Kind, u64> {
        &self.failed_by_fault
    }

    /// A terminal state of a task, as a leader's history reports it.
    pub fn task_ended(&mut self, framework: &str, task: &str, state: i32) {
        use wasmos_api::proto::TaskState;
        if state != TaskState::Finished as i32 && state != TaskState::Failed as i32 {
            return;
        }
        let key = (framework.to_string(), task.to_string());
        match self.tasks.get(&key) {
            None => {
                self.tasks.insert(key, state);
            }
            Some(&before) if before == state => {}
            Some(&before) => self.violation(format!(
                "task {task} of {framework} ended twice with different states: {} then {}",
                state_name(before),
                state_name(state)
            )),
        }
    }

    /// Tasks whose result (FINISHED or FAILED) was seen.
    pub fn tasks_seen(&self) -> usize {
        self.tasks.len()
    }

    /// One RSS sample of process `name`.
    pub fn rss(&mut self, name: &str, kib: u64) {
        let max = self.rss_max_kib.entry(name.to_string()).or_default();
        let was_within = *max <= self.rss_bound_kib;
        *max = (*max).max(kib);
        if was_within && kib > self.rss_bound_kib {
            self.violation(format!(
                "{name} uses {} MiB of RSS, more than the bound of {} MiB",
                kib / 1024,
                self.rss_bound_kib / 1024
            ));
        }
    }

    /// Largest RSS seen of the processes whose name starts with `prefix`, in MiB.
    pub fn rss_max_mib(&self, prefix: &str) -> Option<f64> {
        self.rss_max_kib
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(_, &k)| k)
            .max()
            .map(|k| (k as f64 / 1024.0 * 10.0).round() / 10.0)
    }
}

/// The name of a `TaskState` number.
pub fn state_name(state: i32) -> String {
    wasmos_api::proto::TaskState::try_from(state)
        .map(|s| s.as_str_name().to_string())
        .unwrap_or_else(|_| format!("state {state}"))
}

/// Compares the masters' registry digests: `Ok(true)` when all are at the same applied index
/// with the same digest, `Ok(false)` when their indexes differ (one is still catching up: ask
/// again), `Err` when two at the same index differ.
pub fn compare_digests(digests: &[Digest]) -> Result<bool, String> {
    let Some(first) = digests.first() else {
        return Ok(false);
    };
    if digests
        .iter()
        .any(|d| d.applied_index != first.applied_index)
    {
        return Ok(false);
    }
    match digests.iter().find(|d| d.sha256 != first.sha256) {
        None => Ok(true),
        Some(d) => Err(format!(
            "the masters' registries differ at applied index {}: {} ({} frameworks) and {} ({} \
             frameworks)",
            first.applied_index, first.sha256, first.frameworks, d.sha256, d.frameworks
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(index: u64, sha: &str) -> Digest {
        Digest {
            applied_index: index,
            sha256: sha.into(),
            frameworks: 1,
        }
    }

    #[test]
    fn registries_must_match_at_the_same_index() {
        assert_eq!(
            compare_digests(&[d(5, "a"), d(5, "a"), d(5, "a")]),
            Ok(true)
        );
        assert_eq!(
            compare_digests(&[d(5, "a"), d(4, "b"), d(5, "a")]),
            Ok(false)
        );
        assert!(compare_digests(&[d(5, "a"), d(5, "a"), d(5, "b")]).is_err());
        assert_eq!(compare_digests(&[]), Ok(false));
    }

    #[test]
    fn a_task_ending_twice_differently_is_a_violation() {
        let mut c = Checker::new(1024);
        c.task_ended("f1", "pi-0-1", 4);
        c.task_ended("f1", "pi-0-1", 4);
        // The same id in another framework is another task.
        c.task_ended("f2", "pi-0-1", 5);
        // Lost, killed, error: no result of a run.
        c.task_ended("f1", "pi-0-1", 7);
        c.task_ended("f1", "pi-0-1", 6);
        c.task_ended("f1", "pi-0-1", 8);
        assert!(c.violations().is_empty());
        assert_eq!(c.tasks_seen(), 2);
        c.task_ended("f1", "pi-0-1", 5);
        assert_eq!(c.violations().len(), 1);
        assert!(c.violations()[0].contains("TASK_STATE_FINISHED then TASK_STATE_FAILED"));
    }

    #[test]
    fn rss_past_the_bound_is_one_violation_per_process() {
        let mut c = Checker::new(100);
        c.rss("master1", 100 * 1024);
        assert!(c.violations().is_empty());
        c.rss("master1", 100 * 1024 + 1);
        c.rss("master1", 200 * 1024);
        assert_eq!(c.violations().len(), 1);
        c.rss("agent0", 50 * 1024);
        assert_eq!(c.rss_max_mib("master"), Some(200.0));
        assert_eq!(c.rss_max_mib("agent"), Some(50.0));
        assert_eq!(c.rss_max_mib("none"), None);
    }

    #[test]
    fn outcomes_count_completed_or_a_violation() {
        let mut c = Checker::new(1024);
        let good = workload::pi_result(1, 1000);
        c.outcome(Kind::Probe, "probe-1", "f1", true, &good);
        c.outcome(
            Kind::Probe,
            "probe-2",
            "f2",
            false,
            "pi: task 0 failed 5 times",
        );
        assert_eq!(c.completed().get(&Kind::Probe), Some(&1));
        assert_eq!(c.violations().len(), 1);
    }
}
