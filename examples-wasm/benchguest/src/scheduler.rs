//! The scheduler half of `benchguest`: launches `N` `noop` tasks as fast as offers allow and
//! times each from its launch to its `finished` update, for `wasmos-bench e2e`.
//!
//! Arguments: `N [MILLICPUS] [MEM_MB] [EXECUTORS]`. Task `i` is `t{i}`, runs payload `noop` in
//! executor `bench-{i % EXECUTORS}` and asks for `MILLICPUS` thousandths of a core and `MEM_MB`
//! MiB (its executor instance's memory cap). Each round of offers gets the tasks not yet
//! launched spread evenly over its offers, as many as each offer holds.
//!
//! When every task has finished, the framework finishes with one JSON object (see
//! [`BenchScheduler::report`]). A task that ends in any other state fails the framework: its
//! time would not measure a task run.

use std::time::{Duration, Instant};

use wasmos_guest::{Offer, Resources, Scheduler, TaskInfo, TaskState, TaskStatus, driver};

const USAGE: &str = "usage: benchguest N [MILLICPUS] [MEM_MB] [EXECUTORS]";
/// Most tasks one run may time (the per-task records must fit the scheduler's memory cap).
const MAX_TASKS: u32 = 1_000_000;
/// Most executor instances per agent.
const MAX_EXECUTORS: u32 = 1024;
const DEFAULT_MILLICPUS: u64 = 10;
const DEFAULT_MEM_MB: u64 = 32;
const DEFAULT_EXECUTORS: u32 = 4;

/// The scheduler's state: what is launched, when, and what has finished.
pub struct BenchScheduler {
    n: u32,
    per_task: Resources,
    executors: u32,
    /// The next task index to launch.
    next: u32,
    /// When `init` ran: the start of the run.
    started: Instant,
    /// When the first launch was handed to the driver, since `started`.
    first_launch: Option<Duration>,
    /// Per task: when it was handed to `driver::launch`.
    launched_at: Vec<Option<Instant>>,
    /// Per task: whether its `finished` update has come (updates arrive at least once).
    done: Vec<bool>,
    /// Launch-to-finished time of each finished task, in arrival order.
    latencies: Vec<Duration>,
    /// `driver::launch` calls made, and offers received.
    launch_calls: u32,
    offers_seen: u32,
    suppressed: bool,
    finished: bool,
}

fn arg<T: std::str::FromStr>(
    args: &[String],
    at: usize,
    what: &str,
    default: T,
) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match args.get(at) {
        None => Ok(default),
        Some(text) => text
            .parse()
            .map_err(|e| format!("benchguest: bad {what} {text:?}: {e}; {USAGE}")),
    }
}

/// `t{i}` back to `i`.
fn index_of(task_id: &str) -> Option<u32> {
    task_id.strip_prefix('t')?.parse().ok()
}

/// The `p`-th percentile (0..=100) of sorted `samples`, nearest-rank.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl BenchScheduler {
    fn fail(&mut self, why: String) {
        self.finished = true;
        driver::finish(Err(format!("benchguest: {why}")));
    }

    /// The result, one JSON object: `tasks`; `elapsed_ms` from `init` to the last `finished`
    /// update; `tasks_per_s` = tasks / elapsed; `first_launch_ms` (init to the first launch,
    /// i.e. waiting for the first offers); `latency_ms_p50`, `latency_ms_p99`, `latency_ms_max`
    /// of launch-to-finished; `launch_calls` and `offers` (how the tasks were batched).
    pub fn report(&self) -> String {
        let elapsed = self.started.elapsed();
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let per_s = if elapsed.is_zero() {
            0.0
        } else {
            (f64::from(self.n) / elapsed.as_secs_f64()).round()
        };
        format!(
            "{{\"tasks\":{},\"elapsed_ms\":{},\"tasks_per_s\":{},\"first_launch_ms\":{},\
             \"latency_ms_p50\":{},\"latency_ms_p99\":{},\"latency_ms_max\":{},\
             \"launch_calls\":{},\"offers\":{}}}",
            self.n,
            ms(elapsed),
            per_s,
            ms(self.first_launch.unwrap_or_default()),
            ms(percentile(&sorted, 50.0)),
            ms(percentile(&sorted, 99.0)),
            ms(percentile(&sorted, 100.0)),
            self.launch_calls,
            self.offers_seen,
        )
    }
}

impl Scheduler for BenchScheduler {
    fn init(args: Vec<String>) -> Result<Self, String> {
        if args.is_empty() || args.len() > 4 {
            return Err(format!("benchguest: expected 1 to 4 arguments; {USAGE}"));
        }
        let n: u32 = arg(&args, 0, "N", 0)?;
        let millicpus: u64 = arg(&args, 1, "MILLICPUS", DEFAULT_MILLICPUS)?;
        let mem_mb: u64 = arg(&args, 2, "MEM_MB", DEFAULT_MEM_MB)?;
        let executors: u32 = arg(&args, 3, "EXECUTORS", DEFAULT_EXECUTORS)?;
        if n == 0 || n > MAX_TASKS {
            return Err(format!("benchguest: N must be 1..={MAX_TASKS}; {USAGE}"));
        }
        if millicpus == 0 && mem_mb == 0 {
            return Err(format!(
                "benchguest: a task must ask for some CPU or memory; {USAGE}"
            ));
        }
        if executors == 0 || executors > MAX_EXECUTORS {
            return Err(format!(
                "benchguest: EXECUTORS must be 1..={MAX_EXECUTORS}; {USAGE}"
            ));
        }
        let len = n as usize;
        Ok(BenchScheduler {
            n,
            per_task: Resources::cpu_mem(millicpus, mem_mb),
            executors,
            next: 0,
            started: Instant::now(),
            first_launch: None,
            launched_at: vec![None; len],
            done: vec![false; len],
            latencies: Vec::with_capacity(len),
            launch_calls: 0,
            offers_seen: 0,
            suppressed: false,
            finished: false,
        })
    }

    fn resource_offers(&mut self, offers: Vec<Offer>) {
        let count = offers.len();
        self.offers_seen += count as u32;
        for (j, offer) in offers.into_iter().enumerate() {
            let remaining = self.n - self.next;
            if self.finished || remaining == 0 {
                driver::decline(&[offer.id]);
                continue;
            }
            // Spread what is left evenly over the offers still to answer in this round.
            let share = remaining.div_ceil((count - j) as u32);
            let fits = self.per_task.count_in(&offer.resources);
            let take = u64::from(share).min(fits) as u32;
            if take == 0 {
                // Too small for one task; a filter covers only these resources, so the agent
                // is offered again once tasks there end.
                driver::decline(&[offer.id]);
                continue;
            }
            let first = self.next;
            let tasks: Vec<TaskInfo> = (first..first + take)
                .map(|i| {
                    TaskInfo::wasm(
                        format!("t{i}"),
                        &offer.agent_id,
                        self.per_task,
                        format!("bench-{}", i % self.executors),
                        "noop",
                    )
                })
                .collect();
            let now = Instant::now();
            if let Err(e) = driver::launch(&[offer.id], &tasks) {
                self.fail(format!(
                    "launch of {take} tasks on agent {} refused: {e}",
                    offer.agent_id
                ));
                continue;
            }
            self.first_launch
                .get_or_insert_with(|| now.duration_since(self.started));
            for i in first..first + take {
                self.launched_at[i as usize] = Some(now);
            }
            self.next += take;
            self.launch_calls += 1;
        }
        if !self.finished && self.next == self.n && !self.suppressed {
            self.suppressed = true;
            driver::suppress();
        }
    }

    fn status_update(&mut self, status: TaskStatus) {
        if self.finished {
            return;
        }
        let Some(i) = index_of(&status.task_id).filter(|&i| i < self.n) else {
            driver::warn(&format!(
                "benchguest: update for unknown task {}",
                status.task_id
            ));
            return;
        };
        if self.done[i as usize] {
            return; // A duplicate.
        }
        match status.state {
            TaskState::Finished => {
                let Some(at) = self.launched_at[i as usize] else {
                    self.fail(format!(
                        "task {} finished but was never launched",
                        status.task_id
                    ));
                    return;
                };
                self.latencies.push(at.elapsed());
                self.done[i as usize] = true;
                if self.latencies.len() == self.n as usize {
                    self.finished = true;
                    driver::finish(Ok(self.report()));
                }
            }
            state if state.is_terminal() => {
                let why = format!(
                    "task {} ended {state}, not finished: {}",
                    status.task_id, status.message
                );
                self.fail(why);
            }
            _ => {}
        }
    }
}
