//! `pi`: a batch framework that estimates π by Monte Carlo sampling, in one wasmos component.
//!
//! * Scheduler: `wasmos submit pi.wasm -- [TASKS] [SAMPLES_PER_TASK] [CPUS_PER_TASK]` (defaults
//!   100 × 1,000,000, 0.1 CPU) splits the job into tasks, packs them into offers (CPUS_PER_TASK
//!   and 32 MiB each), declines what it cannot use, suppresses offers once everything is
//!   launched, relaunches failed or lost tasks (up to [`MAX_ATTEMPTS`] times each), and finishes
//!   with `pi ~= 3.14...` when every task is in. It reports its total to the master and, while
//!   offers are too small for a task, what a task needs (`driver::report_progress`), so
//!   `wasmos status` can say why it waits.
//! * Executor: a task's payload is `"SAMPLES SEED"`; it returns `"INSIDE SAMPLES"`.
//!
//! Seeds are the task index, so the estimate is the same however tasks are scheduled, retried or
//! duplicated.

mod sample;

use std::collections::VecDeque;

use wasmos_guest::{
    Executor, Offer, Resources, Scheduler, Task, TaskInfo, TaskState, TaskStatus, driver,
};

/// What one task asks for by default: 0.1 CPU and 32 MiB.
const PER_TASK: Resources = Resources::cpu_mem(100, 32);

/// The largest CPUS_PER_TASK accepted: 1,000 cores.
const MAX_CPUS_PER_TASK: f64 = 1000.0;

const USAGE: &str = "usage: pi [TASKS] [SAMPLES_PER_TASK] [CPUS_PER_TASK]";

/// Default number of tasks; with [`DEFAULT_SAMPLES`] the estimate is within 0.001 of π.
const DEFAULT_TASKS: u32 = 100;

/// Default samples per task: about 10 ms of work on one core.
const DEFAULT_SAMPLES: u64 = 1_000_000;

/// Upper bounds on the arguments, so a typo cannot make the scheduler allocate gigabytes.
const MAX_TASKS: u32 = 1_000_000;
const MAX_SAMPLES: u64 = 1_000_000_000_000;

/// Launches of one task before the job gives up on it (and fails).
const MAX_ATTEMPTS: u32 = 5;

/// The scheduler half: which tasks still have to run, which are in, and the running totals.
struct PiScheduler {
    samples_per_task: u64,
    /// What one task asks for.
    per_task: Resources,
    /// Whether the master was last told that a task waits for resources.
    told_waiting: bool,
    /// Task indices waiting for resources, launched from the front.
    pending: VecDeque<u32>,
    /// Per task index: how many times it was launched (its latest task id ends in this number).
    attempts: Vec<u32>,
    /// Per task index: whether its result was counted (status updates may arrive twice).
    done: Vec<bool>,
    done_count: u32,
    inside: u64,
    sampled: u64,
    /// Whether offers are suppressed (so a relaunch must revive them).
    suppressed: bool,
    /// Set once `driver::finish` was called; later calls are ignored.
    finished: bool,
}

/// `pi-INDEX-ATTEMPT`: every launch gets a fresh id, so a late update from an earlier attempt
/// cannot be mistaken for the current one.
fn task_id(index: u32, attempt: u32) -> String {
    format!("pi-{index}-{attempt}")
}

fn parse_task_id(id: &str) -> Option<(u32, u32)> {
    let (index, attempt) = id.strip_prefix("pi-")?.split_once('-')?;
    Some((index.parse().ok()?, attempt.parse().ok()?))
}

fn parse_arg<T: std::str::FromStr + PartialOrd + std::fmt::Display>(
    args: &[String],
    at: usize,
    what: &str,
    default: T,
    max: T,
) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    let Some(text) = args.get(at) else {
        return Ok(default);
    };
    let value: T = text.parse().map_err(|e| {
        format!("pi: bad {what} {text:?}: {e}; {USAGE}")
    })?;
    if value.partial_cmp(&max) == Some(std::cmp::Ordering::Greater) {
        return Err(format!("pi: {what} {value} is more than the maximum {max}"));
    }
    Ok(value)
}

impl PiScheduler {
    fn total(&self) -> u32 {
        self.done.len() as u32
    }

    /// Tells the master the total and whether a task waits for resources, when the latter
    /// changed.
    fn tell_waiting(&mut self, waiting: bool) {
        if waiting != self.told_waiting {
            self.told_waiting = waiting;
            driver::report_progress(
                Some(u64::from(self.total())),
                waiting.then_some(&self.per_task),
            );
        }
    }

    /// A launch of task `index` ended without a usable result: queue it again, or give up.
    fn relaunch(&mut self, index: u32, why: &str) {
        let attempts = self.attempts[index as usize];
        if attempts >= MAX_ATTEMPTS {
            self.finished = true;
            driver::finish(Err(format!(
                "pi: task {index} failed {attempts} times, giving up; last error: {why}"
            )));
            return;
        }
        driver::warn(&format!(
            "pi: task {index} attempt {attempts} failed ({why}); relaunching"
        ));
        self.pending.push_back(index);
        if self.suppressed {
            self.suppressed = false;
            driver::revive();
        }
    }

    fn finish_if_done(&mut self) {
        if self.done_count < self.total() {
            return;
        }
        let estimate = 4.0 * self.inside as f64 / self.sampled as f64;
        self.finished = true;
        driver::finish(Ok(format!(
            "pi ~= {estimate:.6} ({} samples in {} tasks, off by {:.1e})",
            self.sampled,
            self.total(),
            (estimate - std::f64::consts::PI).abs()
        )));
    }
}

impl Scheduler for PiScheduler {
    fn init(args: Vec<String>) -> Result<Self, String> {
        if args.len() > 3 {
            return Err(format!("pi: too many arguments {args:?}; {USAGE}"));
        }
        let tasks = parse_arg(&args, 0, "TASKS", DEFAULT_TASKS, MAX_TASKS)?;
        let samples_per_task =
            parse_arg(&args, 1, "SAMPLES_PER_TASK", DEFAULT_SAMPLES, MAX_SAMPLES)?;
        let cpus = parse_arg(&args, 2, "CPUS_PER_TASK", 0.1, MAX_CPUS_PER_TASK)?;
        if tasks == 0 || samples_per_task == 0 {
            return Err("pi: TASKS and SAMPLES_PER_TASK must be at least 1".into());
        }
        // `!(>= 0.001)` also refuses NaN.
        if !(cpus >= 0.001) {
            return Err(format!(
                "pi: CPUS_PER_TASK {cpus} is less than 0.001 (one millicpu); {USAGE}"
            ));
        }
        let per_task = Resources::cpu_mem((cpus * 1000.0).round() as u64, PER_TASK.mem_mb);
        driver::info(&format!(
            "pi: {tasks} tasks x {samples_per_task} samples, {cpus} CPUs each"
        ));
        driver::report_progress(Some(u64::from(tasks)), None);
        Ok(PiScheduler {
            samples_per_task,
            per_task,
            told_waiting: false,
            pending: (0..tasks).collect(),
            attempts: vec![0; tasks as usize],
            done: vec![false; tasks as usize],
            done_count: 0,
            inside: 0,
            sampled: 0,
            suppressed: false,
            finished: false,
        })
    }

    fn resource_offers(&mut self, offers: Vec<Offer>) {
        let mut too_small = false;
        let mut launched = false;
        for offer in offers {
            if self.finished || self.pending.is_empty() {
                driver::decline(&[offer.id]);
                continue;
            }
            // Tasks with one executor id run one after another in one instance, so spread a
            // launch over as many executor ids as the offer has whole cores: parallel across
            // cores, and each instance is reused by later launches on this agent.
            let lanes = (offer.resources.millicpus / 1000).max(1);
            let mut left = offer.resources;
            let mut tasks = Vec::new();
            while let Some(&index) = self.pending.front()
                && left.try_take(&self.per_task)
            {
                self.pending.pop_front();
                let attempt = &mut self.attempts[index as usize];
                *attempt += 1;
                let lane = tasks.len() as u64 % lanes;
                tasks.push(TaskInfo::wasm(
                    task_id(index, *attempt),
                    &offer.agent_id,
                    self.per_task,
                    format!("pi-{lane}"),
                    format!("{} {index}", self.samples_per_task),
                ));
            }
            if tasks.is_empty() {
                // Too small for even one task. The long default refusal is safe: it covers only
                // these resources, so the CPUs our own tasks free on that agent are offered again.
                too_small = true;
                driver::decline(&[offer.id]);
            } else if let Err(e) = driver::launch(&[offer.id], &tasks) {
                driver::warn(&format!(
                    "pi: launch on agent {} failed: {e}",
                    offer.agent_id
                ));
                // Nothing was launched: undo, keeping the original order.
                for task in tasks.iter().rev() {
                    if let Some((index, _)) = parse_task_id(&task.task_id) {
                        self.attempts[index as usize] -= 1;
                        self.pending.push_front(index);
                    }
                }
            } else {
                launched = true;
            }
        }
        if !self.finished {
            // Waiting: tasks remain and this round's offers could not take one.
            self.tell_waiting(!self.pending.is_empty() && too_small && !launched);
        }
        if self.pending.is_empty() && !self.suppressed && !self.finished {
            // Everything is launched: stop receiving offers until something must be relaunched.
            self.suppressed = true;
            driver::suppress();
        }
    }

    fn status_update(&mut self, status: TaskStatus) {
        if self.finished {
            return;
        }
        let Some((index, attempt)) = parse_task_id(&status.task_id) else {
            driver::warn(&format!("pi: status for unknown task {}", status.task_id));
            return;
        };
        let Some(&done) = self.done.get(index as usize) else {
            driver::warn(&format!("pi: status for unknown task {}", status.task_id));
            return;
        };
        if done {
            return; // A duplicate, or a late attempt: the result was already counted.
        }
        // Only the latest attempt's failure triggers a relaunch: an older one failing after the
        // index was relaunched must not queue it twice.
        let latest = attempt == self.attempts[index as usize] && !self.pending.contains(&index);
        match status.state {
            TaskState::Finished => {
                let parsed = match status.data.as_deref() {
                    Some(data) => sample::parse_result(data),
                    None => Err("finished without data".into()),
                };
                match parsed {
                    // Any attempt's result is as good as any other's: seeds are per index.
                    Ok((inside, sampled)) if sampled == self.samples_per_task => {
                        self.done[index as usize] = true;
                        self.done_count += 1;
                        self.inside += inside;
                        self.sampled += sampled;
                        // A relaunch may still be queued if an earlier attempt was reported lost.
                        self.pending.retain(|&i| i != index);
                        self.finish_if_done();
                    }
                    Ok((_, sampled)) if latest => self.relaunch(
                        index,
                        &format!(
                            "returned {sampled} samples, expected {}",
                            self.samples_per_task
                        ),
                    ),
                    Err(e) if latest => self.relaunch(index, &e),
                    _ => {}
                }
            }
            state if state.is_terminal() && latest => {
                self.relaunch(index, &format!("{state}: {}", status.message));
            }
            // staging/starting/running; unreachable may come back, and turns lost if it does not.
            _ => {}
        }
    }
}

/// The executor half: stateless, each task samples its own stream.
struct PiExecutor;

impl Executor for PiExecutor {
    fn new() -> Self {
        PiExecutor
    }

    fn launch(&mut self, task: Task) -> Result<Vec<u8>, String> {
        let (samples, seed) = sample::parse_payload(&task.payload)?;
        let inside = sample::count_inside(samples, seed);
        Ok(format!("{inside} {samples}").into_bytes())
    }
}

wasmos_guest::export!(scheduler = PiScheduler, executor = PiExecutor);
