//! Sharing CPU among Wasm tasks in proportion to their declared `millicpus` ([`CpuGovernor`]),
//! through the async yields fuel and epoch metering already make.
//!
//! Each task's call future is wrapped ([`governed`]): every poll is timed with the thread's CPU
//! clock (`CLOCK_THREAD_CPUTIME_ID`; the first poll with the wall clock only, so that a task
//! that ends in one poll pays no system call), and the time is charged to the task as
//! *virtual time*: `v += cpu_ns * 1000 / millicpus`, so a task running at exactly its declared
//! share advances `v` as fast as the wall clock. At each yield (a poll that ended with the guest
//! waking itself, as a fuel or epoch yield does) two rules decide whether it sleeps first:
//!
//! - **Proportion** (always on): a task whose `v` is more than [`SLACK`] ahead of the least `v`
//!   among the tasks that want CPU sleeps until they catch up. Whatever limits the CPU (the
//!   declared capacity, the machine's cores, other processes), tasks that want CPU get it in
//!   proportion to their `millicpus`.
//! - **Capacity** (always on) and **hard cap** (opt-in): each task's `v` may run ahead of its
//!   own allowance by at most [`BURST`]; the allowance grows at `capacity / Σ millicpus of the
//!   tasks that want CPU` per wall-clock ns, so together they use at most the capacity (a lone
//!   task may use all of it); with the hard cap, at most 1 per ns, so each uses at most its
//!   declared share even on an idle machine.
//!
//! A task wants CPU from its first yield until it blocks in a host call (its poll returned
//! pending without waking itself), and again once woken; a task sleeping for either rule
//! still wants CPU. Tasks that end in their first poll never enter the registry.
//!
//! Cost per yield (about every 1,000,000 units of fuel, ~1 ms of guest CPU): two reads of the
//! thread CPU clock (a system call each, ~0.5 µs on the reference VM), one lock of the
//! registry and a scan of the tasks that want CPU. Cost per task that ends in one poll: one
//! small allocation (the waker wrapper), two wall-clock reads (vDSO) and no system call.
//! What is not counted: CPU a host call spends on tokio's blocking threads (WASI file I/O), and
//! guests under `LimitMode::Unmetered`, which never yield. One task runs on one thread at a
//! time, so a task cannot use more than one core whatever its share.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// How far (in virtual ns: ns of CPU at the declared share) a task may run ahead of the task
/// furthest behind before it sleeps: 20 ms.
pub const SLACK: Duration = Duration::from_millis(20);

/// How far (in virtual ns) a task may run ahead of its allowance before it sleeps, which is
/// also the most allowance an idle task keeps: 20 ms (5 ms of CPU for a 0.25-CPU task).
pub const BURST: Duration = Duration::from_millis(20);

/// The weight of a task that declared no CPU: 10 millicpus (Mesos's smallest task, 0.01).
pub const MIN_MILLICPUS: u64 = 10;

/// The longest a task sleeps before it checks again: 50 ms.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// The CPU time a task has used so far, readable while it runs. Cheap to clone; clones share.
#[derive(Clone, Debug, Default)]
pub struct CpuMeter(Arc<AtomicU64>);

impl CpuMeter {
    /// CPU time charged so far (only counted when the pool has a [`CpuGovernor`]).
    pub fn used(&self) -> Duration {
        Duration::from_nanos(self.0.load(Ordering::Relaxed))
    }

    fn add(&self, ns: u64) {
        self.0.fetch_add(ns, Ordering::Relaxed);
    }
}

/// Shares the CPU among the Wasm tasks of one process (one agent): see the module doc.
#[derive(Debug)]
pub struct CpuGovernor {
    capacity: u64,
    hard_cap: bool,
    registry: Mutex<Registry>,
    /// CPU ns charged to every task since creation.
    charged: AtomicU64,
}

#[derive(Debug, Default)]
struct Registry {
    /// Tasks that want CPU; `None` slots are free.
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// Σ weight of the entries.
    weight: u64,
}

#[derive(Debug)]
struct Entry {
    /// Virtual time used, in ns.
    v: u64,
    /// Virtual time allowed by the rate rule, in ns.
    allowed: f64,
    /// When `allowed` was last brought up to date.
    refilled: Instant,
    weight: u64,
}

impl Registry {
    fn min_v_except(&self, me: Option<usize>) -> Option<u64> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != me)
            .filter_map(|(_, e)| e.as_ref().map(|e| e.v))
            .min()
    }
}

impl CpuGovernor {
    /// A governor sharing `capacity_millicpus` (at least 1) among Wasm tasks; with `hard_cap`,
    /// each task also stays within its own declared share when others leave CPU idle.
    pub fn new(capacity_millicpus: u64, hard_cap: bool) -> Self {
        CpuGovernor {
            capacity: capacity_millicpus.max(1),
            hard_cap,
            registry: Mutex::new(Registry::default()),
            charged: AtomicU64::new(0),
        }
    }

    /// The CPU shared, in millicpus.
    pub fn capacity_millicpus(&self) -> u64 {
        self.capacity
    }

    /// Whether each task is held to its declared share even when CPU is idle.
    pub fn hard_cap(&self) -> bool {
        self.hard_cap
    }

    /// How many tasks want CPU now (have yielded and are not blocked in a host call).
    pub fn runnable_tasks(&self) -> usize {
        self.lock().entries.iter().flatten().count()
    }

    /// CPU time charged to all tasks together since this governor was created.
    pub fn charged(&self) -> Duration {
        Duration::from_nanos(self.charged.load(Ordering::Relaxed))
    }

    /// Σ declared millicpus of the tasks that want CPU now (0 counted as
    /// [`MIN_MILLICPUS`]).
    pub fn runnable_millicpus(&self) -> u64 {
        self.lock().weight
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Every update leaves the registry consistent, so a poisoned lock is still usable.
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Charges `used_ns` of CPU to the task in `slot` (entering it in the registry if it is
    /// not), and returns how long it should sleep before running again.
    fn charge(&self, share: &mut Share, used_ns: u64, now: Instant) -> Duration {
        let mut reg = self.lock();
        let reg = &mut *reg;
        let i = match share.slot {
            Some(i) => i,
            None => {
                // A task entering (or coming back from a host call) starts level with the
                // task furthest behind: no credit for the time it did not want CPU.
                let base = reg.min_v_except(None).unwrap_or(0).max(share.v);
                share.v = base;
                let entry = Entry {
                    v: base,
                    allowed: (base + BURST.as_nanos() as u64) as f64,
                    refilled: now,
                    weight: share.weight,
                };
                reg.weight += share.weight;
                let i = match reg.free.pop() {
                    Some(i) => {
                        reg.entries[i] = Some(entry);
                        i
                    }
                    None => {
                        reg.entries.push(Some(entry));
                        reg.entries.len() - 1
                    }
                };
                share.slot = Some(i);
                i
            }
        };
        let weight_sum = reg.weight.max(1) as f64;
        let fair_rate = self.capacity as f64 / weight_sum;
        let rate = if self.hard_cap {
            fair_rate.min(1.0)
        } else {
            fair_rate
        };
        let others_min = reg.min_v_except(Some(i));
        let Some(e) = reg.entries[i].as_mut() else {
            return Duration::ZERO;
        };
        e.v =
            e.v.saturating_add(used_ns.saturating_mul(1000) / e.weight.max(1));
        share.v = e.v;
        let dt = now.saturating_duration_since(e.refilled).as_nanos() as f64;
        e.refilled = now;
        e.allowed = (e.allowed + dt * rate).min((e.v + BURST.as_nanos() as u64) as f64);
        let mut sleep_ns = 0.0f64;
        if (e.v as f64) > e.allowed {
            sleep_ns = (e.v as f64 - e.allowed) / rate;
        }
        if let Some(min) = others_min {
            let lead = e.v.saturating_sub(min);
            if lead > SLACK.as_nanos() as u64 {
                // At full use of the capacity every task's `v` advances at `fair_rate`.
                sleep_ns = sleep_ns.max(lead as f64 / fair_rate);
            }
        }
        Duration::from_nanos(sleep_ns.min(MAX_SLEEP.as_nanos() as f64) as u64)
    }

    /// Takes the task out of the registry (it blocked, ended, or was dropped).
    fn leave(&self, share: &mut Share) {
        if let Some(i) = share.slot.take() {
            let mut reg = self.lock();
            if let Some(e) = reg.entries[i].take() {
                reg.weight = reg.weight.saturating_sub(e.weight);
                reg.free.push(i);
            }
        }
    }
}

/// One task's place in the governor.
struct Share {
    governor: Arc<CpuGovernor>,
    weight: u64,
    slot: Option<usize>,
    /// The task's virtual time, kept while it is out of the registry.
    v: u64,
}

impl Drop for Share {
    fn drop(&mut self) {
        let g = self.governor.clone();
        g.leave(self);
    }
}

/// Records whether the wrapped future woke itself during a poll (a yield), and passes wakes
/// on to the task's real waker.
struct YieldFlag {
    woken: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Wake for YieldFlag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(w) = self
            .waker
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            w.wake_by_ref();
        }
    }
}

/// The CPU time the calling thread has used, in ns, or `None` where the clock is missing.
fn thread_cpu_ns() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        if rc == 0 {
            return Some((ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64);
        }
        None
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Runs `fut` under `governor` as a task that declared `millicpus` (0 counts as
/// [`MIN_MILLICPUS`]), charging its CPU time to `meter`.
pub async fn governed<F: Future>(
    governor: Arc<CpuGovernor>,
    millicpus: u64,
    meter: CpuMeter,
    fut: F,
) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let flag = Arc::new(YieldFlag {
        woken: AtomicBool::new(false),
        waker: Mutex::new(None),
    });
    let inner_waker = Waker::from(flag.clone());
    let mut share = Share {
        governor,
        weight: if millicpus == 0 {
            MIN_MILLICPUS
        } else {
            millicpus
        },
        slot: None,
        v: 0,
    };
    let mut first = true;
    loop {
        let step = std::future::poll_fn(|cx| {
            {
                let mut w = flag.waker.lock().unwrap_or_else(|p| p.into_inner());
                match w.as_ref() {
                    Some(old) if old.will_wake(cx.waker()) => {}
                    _ => *w = Some(cx.waker().clone()),
                }
            }
            flag.woken.store(false, Ordering::Release);
            let wall = Instant::now();
            // The first poll is timed by the wall clock only (an upper bound on its CPU time):
            // a task that ends in one poll pays no system call.
            let cpu_before = if first { None } else { thread_cpu_ns() };
            let r = fut.as_mut().poll(&mut Context::from_waker(&inner_waker));
            let now = Instant::now();
            let cpu_after = if cpu_before.is_some() {
                thread_cpu_ns()
            } else {
                None
            };
            let used = match (cpu_before, cpu_after) {
                (Some(a), Some(b)) => b.saturating_sub(a),
                _ => now.saturating_duration_since(wall).as_nanos() as u64,
            };
            first = false;
            meter.add(used);
            share.governor.charged.fetch_add(used, Ordering::Relaxed);
            let g = share.governor.clone();
            match r {
                Poll::Ready(out) => Poll::Ready(Step::Done(out)),
                Poll::Pending if flag.woken.load(Ordering::Acquire) => {
                    // A yield: the guest wants CPU and has woken this task already.
                    match g.charge(&mut share, used, now) {
                        sleep if sleep.is_zero() => Poll::Pending,
                        sleep => Poll::Ready(Step::Sleep(sleep)),
                    }
                }
                Poll::Pending => {
                    // Blocked in a host call: it wants no CPU until woken.
                    if share.slot.is_some() {
                        g.charge(&mut share, used, now);
                        g.leave(&mut share);
                    }
                    Poll::Pending
                }
            }
        })
        .await;
        match step {
            Step::Done(out) => return out,
            Step::Sleep(d) => tokio::time::sleep(d).await,
        }
    }
}

/// What one governed poll decided.
enum Step<T> {
    Done(T),
    Sleep(Duration),
}

/// Compile-time check: a governed future of a `Send` future is `Send`.
#[allow(dead_code)]
fn governed_is_send<F: Future + Send>(g: Arc<CpuGovernor>, f: F)
where
    F::Output: Send,
{
    fn is_send<T: Send>(_: T) {}
    is_send(governed(g, 1, CpuMeter::default(), f));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Yields (waking itself) `yields` times, then waits forever for `never`.
    struct YieldThenBlock {
        yields: u32,
        never: tokio::sync::oneshot::Receiver<()>,
    }

    impl Future for YieldThenBlock {
        type Output = ();
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.yields > 0 {
                self.yields -= 1;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let _ = std::pin::Pin::new(&mut self.never).poll(cx);
            Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_task_blocked_in_a_host_call_leaves_the_share_and_one_that_ends_is_gone() {
        let g = Arc::new(CpuGovernor::new(1000, false));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(governed(
            g.clone(),
            500,
            CpuMeter::default(),
            YieldThenBlock {
                yields: 3,
                never: rx,
            },
        ));
        // The yields enter it; blocking takes it out again.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        assert_eq!(g.runnable_tasks(), 0, "a blocked task still wants CPU");
        assert_eq!(g.lock().weight, 0);
        task.abort();
        drop(tx);

        let spinner = tokio::spawn(governed(
            g.clone(),
            500,
            CpuMeter::default(),
            YieldThenBlock {
                yields: u32::MAX,
                never: tokio::sync::oneshot::channel().1,
            },
        ));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(g.runnable_tasks(), 1, "a yielding task wants CPU");
        spinner.abort();
        let _ = spinner.await;
        assert_eq!(
            g.runnable_tasks(),
            0,
            "a dropped task left its entry behind"
        );
        assert_eq!(g.lock().weight, 0);
    }

    #[tokio::test]
    async fn a_task_that_ends_in_one_poll_never_enters_the_registry() {
        let g = Arc::new(CpuGovernor::new(1000, false));
        let meter = CpuMeter::default();
        assert_eq!(governed(g.clone(), 0, meter, async { 7 }).await, 7);
        assert!(g.lock().entries.is_empty());
    }
}
