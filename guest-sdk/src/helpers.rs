//! Conveniences on the generated WIT types: resource arithmetic and matching, decline filters
//! with a long default, task constructors, and a do-nothing scheduler.
//!
//! The types themselves come from `wit-bindgen`; this file only adds methods, so a value built
//! here is exactly what crosses the component boundary.

use std::fmt;

use crate::driver::{self, DEFAULT_REFUSE_SECONDS};
use crate::{Filters, Offer, Resources, Scheduler, TaskInfo, TaskKind, TaskState, WasmTask};

impl Resources {
    /// No resources.
    pub const ZERO: Resources = Resources::new(0, 0, 0);

    /// `millicpus` thousandths of a core, `mem_mb` MiB of memory, `disk_mb` MiB of disk.
    pub const fn new(millicpus: u64, mem_mb: u64, disk_mb: u64) -> Self {
        Resources {
            millicpus,
            mem_mb,
            disk_mb,
        }
    }

    /// CPU and memory, no disk: what most Wasm tasks ask for.
    pub const fn cpu_mem(millicpus: u64, mem_mb: u64) -> Self {
        Resources::new(millicpus, mem_mb, 0)
    }

    /// Whether every amount is zero.
    pub const fn is_zero(&self) -> bool {
        self.millicpus == 0 && self.mem_mb == 0 && self.disk_mb == 0
    }

    /// Whether `self` fits in `available`: no amount is larger.
    pub const fn fits(&self, available: &Resources) -> bool {
        self.millicpus <= available.millicpus
            && self.mem_mb <= available.mem_mb
            && self.disk_mb <= available.disk_mb
    }

    /// `self + other`, or `None` on overflow.
    pub fn checked_add(&self, other: &Resources) -> Option<Resources> {
        Some(Resources::new(
            self.millicpus.checked_add(other.millicpus)?,
            self.mem_mb.checked_add(other.mem_mb)?,
            self.disk_mb.checked_add(other.disk_mb)?,
        ))
    }

    /// `self - other`, or `None` if `other` does not fit in `self`.
    pub fn checked_sub(&self, other: &Resources) -> Option<Resources> {
        Some(Resources::new(
            self.millicpus.checked_sub(other.millicpus)?,
            self.mem_mb.checked_sub(other.mem_mb)?,
            self.disk_mb.checked_sub(other.disk_mb)?,
        ))
    }

    /// `self - other`, each amount stopping at zero.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources::new(
            self.millicpus.saturating_sub(other.millicpus),
            self.mem_mb.saturating_sub(other.mem_mb),
            self.disk_mb.saturating_sub(other.disk_mb),
        )
    }

    /// `self * n`, or `None` on overflow.
    pub fn checked_mul(&self, n: u64) -> Option<Resources> {
        Some(Resources::new(
            self.millicpus.checked_mul(n)?,
            self.mem_mb.checked_mul(n)?,
            self.disk_mb.checked_mul(n)?,
        ))
    }

    /// Takes `need` out of `self` if it fits and says whether it did: the loop body of packing
    /// tasks into an offer (`while left.try_take(&per_task) { ... }`).
    pub fn try_take(&mut self, need: &Resources) -> bool {
        match self.checked_sub(need) {
            Some(rest) => {
                *self = rest;
                true
            }
            None => false,
        }
    }

    /// How many copies of `self` fit in `available` (`u64::MAX` if `self` is zero).
    pub fn count_in(&self, available: &Resources) -> u64 {
        [
            (self.millicpus, available.millicpus),
            (self.mem_mb, available.mem_mb),
            (self.disk_mb, available.disk_mb),
        ]
        .into_iter()
        .filter(|&(need, _)| need > 0)
        .map(|(need, have)| have / need)
        .min()
        .unwrap_or(u64::MAX)
    }
}

impl Default for Resources {
    fn default() -> Self {
        Resources::ZERO
    }
}

impl fmt::Display for Resources {
    /// `cpus 1.5, mem 512 MiB, disk 0 MiB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.millicpus / 1000;
        let frac = self.millicpus % 1000;
        if frac == 0 {
            write!(f, "cpus {whole}")?;
        } else {
            let frac = format!("{frac:03}");
            write!(f, "cpus {whole}.{}", frac.trim_end_matches('0'))?;
        }
        write!(f, ", mem {} MiB, disk {} MiB", self.mem_mb, self.disk_mb)
    }
}

impl Filters {
    /// Refuse the declined agents for `seconds` (negative or NaN counts as 0, infinity as a
    /// very long time, which the master caps).
    pub fn refuse(seconds: f64) -> Self {
        let refuse_seconds = if seconds.is_nan() || seconds < 0.0 {
            0.0
        } else {
            seconds
        };
        Filters { refuse_seconds }
    }
}

impl Default for Filters {
    /// Refuse for [`DEFAULT_REFUSE_SECONDS`] (120 s).
    fn default() -> Self {
        Filters {
            refuse_seconds: DEFAULT_REFUSE_SECONDS,
        }
    }
}

impl TaskInfo {
    /// A task for this framework's own executor: runs `payload` in executor `executor_id` on
    /// `agent_id`. Its display name is its id; set `name` afterwards for another one.
    pub fn wasm(
        task_id: impl Into<String>,
        agent_id: impl Into<String>,
        resources: Resources,
        executor_id: impl Into<String>,
        payload: impl Into<Vec<u8>>,
    ) -> TaskInfo {
        let task_id = task_id.into();
        TaskInfo {
            name: task_id.clone(),
            task_id,
            agent_id: agent_id.into(),
            resources,
            kind: TaskKind::Wasm(WasmTask {
                executor_id: executor_id.into(),
                payload: payload.into(),
                timeout_seconds: None,
                fuel: None,
            }),
        }
    }

    /// This Wasm task with its own wall-clock deadline instead of its framework's (or the
    /// agent's 1 h default). A native task is returned unchanged: it has no deadline.
    pub fn with_timeout_seconds(mut self, seconds: f64) -> TaskInfo {
        if let TaskKind::Wasm(w) = &mut self.kind {
            w.timeout_seconds = Some(seconds);
        }
        self
    }

    /// This Wasm task with its own fuel budget instead of its framework's (or the agent's
    /// 10^11 default). A native task is returned unchanged.
    pub fn with_fuel(mut self, fuel: u64) -> TaskInfo {
        if let TaskKind::Wasm(w) = &mut self.kind {
            w.fuel = Some(fuel);
        }
        self
    }

    /// A native command task (`argv[0]` looked up on the agent's PATH, nothing inherited from
    /// the agent's environment but `env`). Only roles the cluster's ACLs allow may run these.
    pub fn command(
        task_id: impl Into<String>,
        agent_id: impl Into<String>,
        resources: Resources,
        argv: Vec<String>,
        env: Vec<(String, String)>,
    ) -> TaskInfo {
        let task_id = task_id.into();
        TaskInfo {
            name: task_id.clone(),
            task_id,
            agent_id: agent_id.into(),
            resources,
            kind: TaskKind::Command(crate::CommandTask { argv, env }),
        }
    }
}

impl TaskState {
    /// Whether the task will not change state again (`finished`, `failed`, `killed`, `lost`,
    /// `error`). `unreachable` is not terminal: the agent may come back with the task running.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Finished
                | TaskState::Failed
                | TaskState::Killed
                | TaskState::Lost
                | TaskState::Error
        )
    }
}

impl fmt::Display for TaskState {
    /// The WIT name: `running`, `finished`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TaskState::Staging => "staging",
            TaskState::Starting => "starting",
            TaskState::Running => "running",
            TaskState::Finished => "finished",
            TaskState::Failed => "failed",
            TaskState::Killed => "killed",
            TaskState::Lost => "lost",
            TaskState::Error => "error",
            TaskState::Unreachable => "unreachable",
        })
    }
}

/// The ids of `offers`, for [`driver::decline`] and [`driver::launch`].
pub fn offer_ids(offers: &[Offer]) -> Vec<String> {
    offers.iter().map(|o| o.id.clone()).collect()
}

/// A scheduler that runs nothing: it declines every offer (with the long default refusal) and
/// suppresses further ones. For components whose executor is driven by other means, such as
/// `wasmos task run` or a benchmark.
pub struct DeclineAll;

impl Scheduler for DeclineAll {
    fn init(_args: Vec<String>) -> Result<Self, String> {
        Ok(DeclineAll)
    }

    fn resource_offers(&mut self, offers: Vec<Offer>) {
        driver::decline(&offer_ids(&offers));
        driver::suppress();
    }

    fn status_update(&mut self, _status: crate::TaskStatus) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_and_take() {
        let per_task = Resources::cpu_mem(100, 32);
        let mut left = Resources::new(350, 1000, 5);
        let mut n = 0;
        while left.try_take(&per_task) {
            n += 1;
        }
        assert_eq!(n, 3);
        assert_eq!(left, Resources::new(50, 904, 5));
        assert_eq!(per_task.count_in(&Resources::new(350, 1000, 5)), 3);
        assert!(!per_task.fits(&left));
        assert_eq!(Resources::ZERO.count_in(&left), u64::MAX);
    }

    #[test]
    fn checked_arithmetic() {
        let a = Resources::new(1, 2, 3);
        assert_eq!(a.checked_sub(&Resources::new(2, 0, 0)), None);
        assert_eq!(
            a.saturating_sub(&Resources::new(2, 1, 0)),
            Resources::new(0, 1, 3)
        );
        assert_eq!(Resources::new(u64::MAX, 0, 0).checked_add(&a), None);
        assert_eq!(a.checked_mul(2), Some(Resources::new(2, 4, 6)));
        assert_eq!(Resources::default(), Resources::ZERO);
    }

    #[test]
    fn display() {
        assert_eq!(
            Resources::new(1500, 512, 0).to_string(),
            "cpus 1.5, mem 512 MiB, disk 0 MiB"
        );
        assert_eq!(
            Resources::new(2000, 1, 2).to_string(),
            "cpus 2, mem 1 MiB, disk 2 MiB"
        );
        assert_eq!(
            Resources::new(25, 0, 0).to_string(),
            "cpus 0.025, mem 0 MiB, disk 0 MiB"
        );
    }

    #[test]
    fn filters_default_long() {
        assert_eq!(Filters::default().refuse_seconds, 120.0);
        assert_eq!(Filters::refuse(-1.0).refuse_seconds, 0.0);
        assert_eq!(Filters::refuse(f64::NAN).refuse_seconds, 0.0);
        assert_eq!(Filters::refuse(5.0).refuse_seconds, 5.0);
    }

    #[test]
    fn terminal_states() {
        assert!(TaskState::Lost.is_terminal());
        assert!(!TaskState::Unreachable.is_terminal());
        assert!(!TaskState::Running.is_terminal());
        assert_eq!(TaskState::Finished.to_string(), "finished");
    }

    #[test]
    fn wasm_task() {
        let t = TaskInfo::wasm("t1", "a1", Resources::cpu_mem(100, 32), "pi", "10 1");
        assert_eq!(t.name, "t1");
        match t.kind {
            TaskKind::Wasm(w) => {
                assert_eq!(w.executor_id, "pi");
                assert_eq!(w.payload, b"10 1");
            }
            TaskKind::Command(_) => panic!("expected a wasm task"),
        }
    }
}
