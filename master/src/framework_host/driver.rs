//! The `driver` import of a hosted scheduler: what the guest may ask of the master from inside
//! a callback.
//!
//! `driver` calls are synchronous and made while the guest runs, so they never touch the core:
//! they check what can be checked at once (so a scheduler hears of its mistake in the call
//! that made it), then queue the work in [`Pending`]. The driving task (`driving.rs`) applies
//! the queue to the core right after the callback returns. `state-get` answers from the mirror
//! of the framework's state kept in [`Pending::state`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmos_api::limits::{
    MAX_DRIVER_BYTES_PER_CALLBACK, MAX_DRIVER_CALLS_PER_CALLBACK, MAX_PENDING_TIMERS,
    check_accept_size,
};
use wasmos_api::proto as pb;
use wasmos_wasm_executor::DriverHost;
use wasmos_wasm_executor::bindings::types as wit;
use wasmos_wasm_executor::log_budget::LogBudget;

use super::convert::{show, task_to_pb};
use crate::registry::{
    FrameworkOutcome, MAX_STATE_BYTES, MAX_STATE_KEY_BYTES, MAX_STATE_VALUE_BYTES, state_bytes,
};
use crate::sync::lock;
use wasmos_api::Resources;

use pb::scheduler_call::Call;

/// What the scheduler asked for during one callback, applied right after it returns; and what
/// the driver needs to answer synchronously.
#[derive(Default)]
pub(super) struct Pending {
    /// The framework's id, for the guest's log lines (empty until it is subscribed).
    pub(super) framework_id: String,
    /// Scheduler calls, in the order made.
    pub(super) calls: Vec<Call>,
    /// `state-put`s, committed after the calls.
    pub(super) puts: Vec<(String, Vec<u8>)>,
    /// `set-timer`s: (id, delay in ms).
    pub(super) timers: Vec<(u64, u64)>,
    /// Ids of the timers set and not yet fired (queued in `timers` or running in the driving
    /// task), at most [`MAX_PENDING_TIMERS`]: the driving task removes an id when it fires.
    pub(super) timer_ids: HashSet<u64>,
    /// How much of the guest's `log` reaches the master's log.
    pub(super) log: LogBudget,
    /// Calls queued (in `calls`, `puts`, `timers`) since the last callback's were applied, at
    /// most [`MAX_DRIVER_CALLS_PER_CALLBACK`] before the guest is stopped.
    pub(super) queued_calls: usize,
    /// Their bytes, at most [`MAX_DRIVER_BYTES_PER_CALLBACK`] before the guest is stopped.
    pub(super) queued_bytes: usize,
    /// Set by `finish`; later driver calls are ignored.
    pub(super) finish: Option<FrameworkOutcome>,
    /// The framework's state as the scheduler has written it (the registry's copy plus the
    /// puts not yet committed).
    pub(super) state: BTreeMap<String, Vec<u8>>,
    /// Offers given to the scheduler and not yet used, declined or rescinded.
    pub(super) offers: HashMap<String, (String, wit::Resources)>,
    /// The latest `report-progress` not yet handed to the core: (tasks in all, resources of
    /// a task that waits).
    pub(super) progress: Option<(Option<u64>, Option<Resources>)>,
}

impl Pending {
    /// Counts one queued call of `bytes` against the callback's caps.
    fn charge(&mut self, bytes: usize) {
        self.queued_calls += 1;
        self.queued_bytes = self.queued_bytes.saturating_add(bytes);
    }

    /// Takes what the callback queued, and resets the callback's caps.
    pub(super) fn take_queued(&mut self) -> (Vec<Call>, Vec<(String, Vec<u8>)>, Vec<(u64, u64)>) {
        self.queued_calls = 0;
        self.queued_bytes = 0;
        (
            std::mem::take(&mut self.calls),
            std::mem::take(&mut self.puts),
            std::mem::take(&mut self.timers),
        )
    }
}

/// The `DriverHost` behind a hosted scheduler's `driver` import: queues, never blocks.
pub(super) struct HostDriver {
    pub(super) pending: Arc<Mutex<Pending>>,
    /// Where admitted `log` lines are kept for `ReadSchedulerLog`.
    pub(super) logs: Arc<super::scheduler_log::SchedulerLogs>,
}

impl DriverHost for HostDriver {
    fn launch(&mut self, offer_ids: Vec<String>, tasks: Vec<wit::TaskInfo>) -> Result<(), String> {
        let mut p = lock(&self.pending);
        if p.finish.is_some() {
            return Err("the framework has finished".into());
        }
        if offer_ids.is_empty() {
            return Err("launch lists no offer ids".into());
        }
        // Before anything is read, so a huge call costs no more than its count.
        check_accept_size(offer_ids.len(), tasks.len()).map_err(|e| e.to_string())?;
        // Checked here so that the scheduler hears of its mistake at once; the core checks
        // everything again when the accept is applied.
        let mut seen = HashSet::new();
        let mut agent: Option<&str> = None;
        let mut offered = Resources::ZERO;
        for id in &offer_ids {
            if !seen.insert(id.as_str()) {
                return Err(format!("offer {id} is listed twice"));
            }
            let Some((a, r)) = p.offers.get(id) else {
                return Err(format!(
                    "offer {id} is unknown or no longer valid (used, declined or rescinded)"
                ));
            };
            if agent.is_some_and(|x| x != a) {
                return Err("the offers are of more than one agent; launch on one agent's".into());
            }
            agent = Some(a);
            offered = offered.saturating_add(&Resources::from(*r));
        }
        let mut needed = Resources::ZERO;
        for t in &tasks {
            if Some(t.agent_id.as_str()) != agent {
                return Err(format!(
                    "task {} names agent {} but the offers are of agent {}",
                    t.task_id,
                    t.agent_id,
                    agent.unwrap_or("")
                ));
            }
            needed = needed.saturating_add(&Resources::from(t.resources));
        }
        if !needed.fits_in(&offered) {
            return Err(format!(
                "the tasks need {} but the offers hold {}",
                show(&needed),
                show(&offered)
            ));
        }
        for id in &offer_ids {
            p.offers.remove(id);
        }
        let call = Call::Accept(pb::scheduler_call::Accept {
            offer_ids,
            launches: tasks.into_iter().map(task_to_pb).collect(),
            filters: Some(pb::Filters {
                refuse_seconds: Some(0.0),
            }),
        });
        p.charge(call_bytes(&call));
        p.calls.push(call);
        Ok(())
    }

    fn decline(&mut self, offer_ids: Vec<String>, filters: wit::Filters) {
        let mut p = lock(&self.pending);
        if p.finish.is_some() {
            return;
        }
        for id in &offer_ids {
            p.offers.remove(id);
        }
        let call = Call::Decline(pb::scheduler_call::Decline {
            offer_ids,
            filters: Some(pb::Filters {
                refuse_seconds: Some(filters.refuse_seconds),
            }),
        });
        p.charge(call_bytes(&call));
        p.calls.push(call);
    }

    fn kill(&mut self, task_id: String) {
        self.push(Call::Kill(pb::scheduler_call::Kill {
            task_id,
            agent_id: String::new(),
        }));
    }

    fn revive(&mut self) {
        self.push(Call::Revive(pb::scheduler_call::Revive {}));
    }

    fn suppress(&mut self) {
        self.push(Call::Suppress(pb::scheduler_call::Suppress {}));
    }

    fn reconcile(&mut self, task_ids: Vec<String>) {
        self.push(Call::Reconcile(pb::scheduler_call::Reconcile {
            tasks: task_ids
                .into_iter()
                .map(|task_id| pb::scheduler_call::reconcile::Task {
                    task_id,
                    agent_id: String::new(),
                })
                .collect(),
        }));
    }

    fn state_get(&mut self, key: String) -> Option<Vec<u8>> {
        lock(&self.pending).state.get(&key).cloned()
    }

    fn state_put(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        let mut p = lock(&self.pending);
        if p.finish.is_some() {
            return Err("the framework has finished".into());
        }
        if key.len() > MAX_STATE_KEY_BYTES {
            return Err(format!(
                "state key is {} bytes; the limit is {MAX_STATE_KEY_BYTES}",
                key.len()
            ));
        }
        if value.len() > MAX_STATE_VALUE_BYTES {
            return Err(format!(
                "state value is {} bytes; the limit is {MAX_STATE_VALUE_BYTES}",
                value.len()
            ));
        }
        let old = p.state.get(&key).map_or(0, |v| key.len() + v.len());
        let total = state_bytes(&p.state) - old + key.len() + value.len();
        if total > MAX_STATE_BYTES {
            return Err(format!(
                "the framework would store {total} bytes of state; the limit is {MAX_STATE_BYTES}"
            ));
        }
        p.charge(key.len() + value.len());
        p.state.insert(key.clone(), value.clone());
        p.puts.push((key, value));
        Ok(())
    }

    fn finish(&mut self, outcome: Result<String, String>) {
        let mut p = lock(&self.pending);
        if p.finish.is_none() {
            p.finish = Some(match outcome {
                Ok(r) => FrameworkOutcome::Succeeded(r),
                Err(e) => FrameworkOutcome::Failed(e),
            });
        }
    }

    fn log(&mut self, level: wit::LogLevel, message: String) {
        // No framework_id field: the `hosted_scheduler` span every callback runs in names it.
        let (framework_id, admission) = {
            let mut p = lock(&self.pending);
            let a = p.log.admit(Instant::now(), &message);
            (p.framework_id.clone(), a)
        };
        if let Some(dropped) = admission.report {
            tracing::warn!(target: "wasmos::scheduler", "{}", dropped.message(&framework_id));
        }
        let Some(message) = admission.line else {
            return;
        };
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.logs
            .push(&framework_id, level_name(level), &message, unix_ms);
        match level {
            wit::LogLevel::Trace => {
                tracing::trace!(target: "wasmos::scheduler", "{message}")
            }
            wit::LogLevel::Debug => {
                tracing::debug!(target: "wasmos::scheduler", "{message}")
            }
            wit::LogLevel::Info => {
                tracing::info!(target: "wasmos::scheduler", "{message}")
            }
            wit::LogLevel::Warn => {
                tracing::warn!(target: "wasmos::scheduler", "{message}")
            }
            wit::LogLevel::Error => {
                tracing::error!(target: "wasmos::scheduler", "{message}")
            }
        }
    }

    fn set_timer(&mut self, timer_id: u64, delay_ms: u64) -> Result<(), String> {
        let mut p = lock(&self.pending);
        if p.finish.is_some() {
            return Err("the framework has finished".into());
        }
        // Checked here, so the guest hears of it; nothing is logged, since a guest could call
        // this a million times in one callback.
        if !p.timer_ids.contains(&timer_id) && p.timer_ids.len() >= MAX_PENDING_TIMERS {
            return Err(format!(
                "timer {timer_id} not set: {MAX_PENDING_TIMERS} timers are pending, the most a \
                 scheduler may have; reuse a pending timer's id or wait for one to fire"
            ));
        }
        p.charge(16);
        p.timer_ids.insert(timer_id);
        p.timers.push((timer_id, delay_ms));
        Ok(())
    }

    fn report_progress(&mut self, progress: wit::FrameworkProgress) {
        let mut p = lock(&self.pending);
        if p.finish.is_some() {
            return;
        }
        // Counted like any call, so a loop of reports is stopped by the callback's cap; only
        // the latest is kept.
        p.charge(32);
        p.progress = Some((
            progress.tasks_total,
            progress.waiting_for.map(Resources::from),
        ));
    }

    fn exhausted(&self) -> Option<String> {
        let p = lock(&self.pending);
        if p.queued_calls > MAX_DRIVER_CALLS_PER_CALLBACK {
            return Some(format!(
                "the scheduler queued more than {MAX_DRIVER_CALLS_PER_CALLBACK} driver calls in                  one callback; return from the callback to have them applied"
            ));
        }
        if p.queued_bytes > MAX_DRIVER_BYTES_PER_CALLBACK {
            return Some(format!(
                "the scheduler queued {} bytes of driver calls in one callback; the limit is                  {MAX_DRIVER_BYTES_PER_CALLBACK}",
                p.queued_bytes
            ));
        }
        None
    }
}

/// What a queued call costs against [`MAX_DRIVER_BYTES_PER_CALLBACK`]: its encoded size.
fn call_bytes(call: &Call) -> usize {
    call.encoded_len()
}

/// A log level as shown by `wasmos logs --scheduler`.
fn level_name(level: wit::LogLevel) -> &'static str {
    match level {
        wit::LogLevel::Trace => "TRACE",
        wit::LogLevel::Debug => "DEBUG",
        wit::LogLevel::Info => "INFO",
        wit::LogLevel::Warn => "WARN",
        wit::LogLevel::Error => "ERROR",
    }
}

impl HostDriver {
    fn push(&mut self, call: Call) {
        let mut p = lock(&self.pending);
        if p.finish.is_none() {
            p.charge(call_bytes(&call));
            p.calls.push(call);
        }
    }
}

#[cfg(test)]
mod tests {
    use wasmos_api::limits::{MAX_OFFERS_PER_ACCEPT, MAX_TASKS_PER_LAUNCH};

    use super::*;

    fn res(millicpus: u64) -> wit::Resources {
        wit::Resources {
            millicpus,
            mem_mb: 0,
            disk_mb: 0,
        }
    }

    /// A driver holding offer `o1` of agent `a1` with 100 cpus.
    fn driver() -> HostDriver {
        let mut p = Pending::default();
        p.offers
            .insert("o1".into(), ("a1".into(), res(100_000_000)));
        HostDriver {
            pending: Arc::new(Mutex::new(p)),
            logs: Arc::default(),
        }
    }

    fn tasks(n: usize) -> Vec<wit::TaskInfo> {
        (0..n)
            .map(|i| wit::TaskInfo {
                task_id: format!("t{i}"),
                name: String::new(),
                agent_id: "a1".into(),
                resources: res(1),
                kind: wit::TaskKind::Wasm(wit::WasmTask {
                    executor_id: "e".into(),
                    payload: vec![],
                    timeout_seconds: None,
                    fuel: None,
                }),
            })
            .collect()
    }

    #[test]
    fn launch_takes_the_task_cap_and_refuses_one_past_and_far_past() {
        let d = &mut driver();
        assert_eq!(
            d.launch(vec!["o1".into()], tasks(MAX_TASKS_PER_LAUNCH)),
            Ok(())
        );
        for n in [MAX_TASKS_PER_LAUNCH + 1, 100_000] {
            let d = &mut driver();
            let e = d.launch(vec!["o1".into()], tasks(n)).unwrap_err();
            assert!(
                e.contains(&format!("{n} tasks")) && e.contains(&MAX_TASKS_PER_LAUNCH.to_string()),
                "{e}"
            );
            let p = lock(&d.pending);
            assert!(p.calls.is_empty(), "nothing queued");
            assert!(
                p.offers.contains_key("o1"),
                "the offer is still the guest's"
            );
        }
    }

    #[test]
    fn set_timer_takes_the_cap_and_tells_the_guest_past_it() {
        let d = &mut driver();
        for id in 0..MAX_PENDING_TIMERS as u64 {
            assert_eq!(
                d.set_timer(id, 1000),
                Ok(()),
                "timer {id} is within the cap"
            );
        }
        let e = d.set_timer(MAX_PENDING_TIMERS as u64, 1000).unwrap_err();
        assert!(
            e.contains(&MAX_PENDING_TIMERS.to_string()) && e.contains("pending"),
            "{e}"
        );
        // Far past: every call is refused and nothing more is queued.
        for id in 0..100_000u64 {
            assert!(d.set_timer(10_000 + id, 1).is_err());
        }
        // A pending id may be set again (it replaces the timer).
        assert_eq!(d.set_timer(7, 5), Ok(()));
        let p = lock(&d.pending);
        assert_eq!(p.timer_ids.len(), MAX_PENDING_TIMERS);
        assert_eq!(p.timers.len(), MAX_PENDING_TIMERS + 1);
    }

    #[test]
    fn a_fired_timer_makes_room_for_another() {
        let d = &mut driver();
        for id in 0..MAX_PENDING_TIMERS as u64 {
            d.set_timer(id, 1000).unwrap();
        }
        assert!(d.set_timer(5000, 1).is_err());
        // What the driving task does when timer 3 fires.
        lock(&d.pending).timer_ids.remove(&3);
        assert_eq!(d.set_timer(5000, 1), Ok(()));
    }

    #[test]
    fn a_log_flood_is_budgeted_and_counted() {
        let d = &mut driver();
        let n = 100_000u64;
        for _ in 0..n {
            d.log(wit::LogLevel::Info, "x".repeat(100));
        }
        let dropped = lock(&d.pending)
            .log
            .flush(Instant::now())
            .expect("the flood was cut");
        let burst = u64::from(wasmos_api::limits::GUEST_LOG_BURST_LINES);
        // At most the burst (plus what the rate refilled while the test ran) was kept.
        assert!(dropped.lines >= n - burst - 1000, "{dropped:?}");
        assert_eq!(dropped.bytes, dropped.lines * 100);
    }

    #[test]
    fn driver_calls_past_the_callback_cap_exhaust_the_driver() {
        let d = &mut driver();
        for _ in 0..MAX_DRIVER_CALLS_PER_CALLBACK {
            d.revive();
        }
        assert_eq!(d.exhausted(), None, "at the bound");
        d.kill("t".into());
        let why = d.exhausted().expect("one past the bound");
        assert!(
            why.contains(&MAX_DRIVER_CALLS_PER_CALLBACK.to_string()),
            "{why}"
        );
        // Applying the callback's calls gives the next callback a fresh allowance.
        let (calls, _, _) = lock(&d.pending).take_queued();
        assert_eq!(calls.len(), MAX_DRIVER_CALLS_PER_CALLBACK + 1);
        assert_eq!(d.exhausted(), None);
        // Re-setting one timer counts too: the queue, not the timer set, is what grows.
        for _ in 0..=MAX_DRIVER_CALLS_PER_CALLBACK {
            d.set_timer(1, 1).unwrap();
        }
        assert!(d.exhausted().is_some());
    }

    #[test]
    fn driver_bytes_past_the_callback_cap_exhaust_the_driver() {
        let d = &mut driver();
        let value = vec![7u8; MAX_STATE_VALUE_BYTES];
        let mut puts = 0;
        // Bounded, so that a driver that never says so fails the test instead of hanging it.
        while d.exhausted().is_none() && puts <= 2 * MAX_DRIVER_BYTES_PER_CALLBACK / value.len() {
            d.state_put("k".into(), value.clone()).unwrap();
            puts += 1;
        }
        assert_eq!(
            puts,
            MAX_DRIVER_BYTES_PER_CALLBACK / (MAX_STATE_VALUE_BYTES + 1) + 1,
            "the put that crosses the bound is the last"
        );
        assert!(d.exhausted().unwrap().contains("bytes of driver calls"));
    }

    #[test]
    fn launch_refuses_more_offer_ids_than_the_cap() {
        let d = &mut driver();
        let ids: Vec<String> = (0..=MAX_OFFERS_PER_ACCEPT)
            .map(|i| format!("o{i}"))
            .collect();
        let e = d.launch(ids, tasks(1)).unwrap_err();
        assert!(
            e.contains(&format!("{} offer ids", MAX_OFFERS_PER_ACCEPT + 1)),
            "{e}"
        );
    }
}
