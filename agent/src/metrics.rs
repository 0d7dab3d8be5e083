//! What the agent measures for its `/metrics` (`crate::http`): launch latency (launch to
//! RUNNING), fuel burned by Wasm tasks, tasks by terminal state, and whether the agent is
//! registered with a master. The gauges read at a scrape (executor instances live, status
//! updates not yet acknowledged, sandbox disk used) are set from the agent then.
//!
//! prometheus-client's own types in one registry that lives as long as the agent process:
//! counters are atomics, the histogram takes its own short lock per observation, the
//! terminal family one read lock per task end; nothing is allocated per task.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use wasmos_api::TaskState;

/// Upper bounds, in seconds, of the launch-latency histogram's buckets (`+Inf` implied).
pub const LAUNCH_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// A `state` label: a terminal task state in lower case.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

/// The agent's metrics; all start at zero, and the agent unregistered.
#[derive(Debug)]
pub struct AgentMetrics {
    registry: Registry,
    launch: Histogram,
    fuel: Counter,
    terminal: Family<StateLabel, Counter>,
    executors: Gauge,
    pending: Gauge,
    disk: Gauge,
    registered_gauge: Gauge,
    registered: AtomicBool,
    /// Why the agent is not registered, for `/ready`.
    not_ready: Mutex<String>,
}

impl Default for AgentMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The lower-case name of a terminal state, or None.
fn terminal_name(state: TaskState) -> Option<&'static str> {
    Some(match state {
        TaskState::Finished => "finished",
        TaskState::Failed => "failed",
        TaskState::Killed => "killed",
        TaskState::Lost => "lost",
        TaskState::Error => "error",
        _ => return None,
    })
}

impl AgentMetrics {
    /// Metrics at zero, every terminal state listed (so that a rate reads 0, not nothing).
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let launch = Histogram::new(LAUNCH_BUCKETS);
        let fuel = Counter::default();
        let terminal: Family<StateLabel, Counter> = Family::default();
        for s in ["finished", "failed", "killed", "lost", "error"] {
            let _ = terminal.get_or_create(&StateLabel { state: s });
        }
        let (executors, pending, disk, registered_gauge) = Default::default();
        registry.register(
            "wasmos_agent_task_launch_duration_seconds",
            "Time from a launch request to the task's RUNNING update",
            launch.clone(),
        );
        registry.register(
            "wasmos_agent_fuel_burned",
            "Fuel (about one unit per Wasm instruction) burned by Wasm tasks that ended",
            fuel.clone(),
        );
        registry.register(
            "wasmos_agent_tasks_terminal",
            "Tasks that reached a terminal state here, by state",
            terminal.clone(),
        );
        registry.register(
            "wasmos_agent_executor_instances",
            "Wasm executor instances alive",
            Gauge::clone(&executors),
        );
        registry.register(
            "wasmos_agent_status_updates_pending",
            "Status updates not yet acknowledged by the master",
            Gauge::clone(&pending),
        );
        registry.register(
            "wasmos_agent_sandbox_disk_used_bytes",
            "Disk used by task and executor sandboxes",
            Gauge::clone(&disk),
        );
        registry.register(
            "wasmos_agent_registered",
            "1 while the agent is registered with a master, else 0",
            Gauge::clone(&registered_gauge),
        );
        AgentMetrics {
            registry,
            launch,
            fuel,
            terminal,
            executors,
            pending,
            disk,
            registered_gauge,
            registered: AtomicBool::new(false),
            not_ready: Mutex::new("not registered with a master yet".to_string()),
        }
    }

    /// Records a launch that reached RUNNING after `took`.
    pub fn launched(&self, took: Duration) {
        self.launch.observe(took.as_secs_f64());
    }

    /// Counts a status update of `state` (ignored unless terminal).
    pub fn task_ended(&self, state: TaskState) {
        if let Some(state) = terminal_name(state) {
            self.terminal.get_or_create(&StateLabel { state }).inc();
        }
    }

    /// Adds fuel a Wasm task burned.
    pub fn fuel_burned(&self, units: u64) {
        self.fuel.inc_by(units);
    }

    /// The agent registered with the master at `master`.
    pub fn registered(&self, master: &str) {
        self.registered.store(true, Ordering::Relaxed);
        tracing::trace!(master, "ready");
    }

    /// The agent is not registered (any more), because of `why`.
    pub fn unregistered(&self, why: String) {
        self.registered.store(false, Ordering::Relaxed);
        *self.not_ready.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// None while registered, else why not.
    pub fn not_ready(&self) -> Option<String> {
        if self.registered.load(Ordering::Relaxed) {
            return None;
        }
        Some(
            self.not_ready
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }

    /// The Prometheus text, with the scrape-time gauges set to the given values.
    pub fn render(&self, executors: usize, pending: usize, disk_bytes: u64) -> String {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.executors.set(n(executors as u64));
        self.pending.set(n(pending as u64));
        self.disk.set(n(disk_bytes));
        self.registered_gauge
            .set(i64::from(self.registered.load(Ordering::Relaxed)));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_terminal_states_launches_and_fuel() {
        let m = AgentMetrics::new();
        m.task_ended(TaskState::Running);
        m.task_ended(TaskState::Finished);
        m.launched(Duration::from_millis(3));
        m.fuel_burned(42);
        let text = m.render(1, 2, 3);
        assert!(
            text.contains("wasmos_agent_tasks_terminal_total{state=\"finished\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("wasmos_agent_tasks_terminal_total{state=\"failed\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("wasmos_agent_task_launch_duration_seconds_count 1"),
            "{text}"
        );
        assert!(text.contains("wasmos_agent_fuel_burned_total 42"), "{text}");
        assert!(
            text.contains("wasmos_agent_status_updates_pending 2"),
            "{text}"
        );
        assert!(m.not_ready().is_some());
        m.registered("m:1");
        assert!(m.not_ready().is_none());
        m.unregistered("lost the master".into());
        assert_eq!(m.not_ready().as_deref(), Some("lost the master"));
    }
}
