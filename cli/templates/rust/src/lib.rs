//! `{{name}}`: a wasmos framework. Both halves live in this one component:
//!
//! * Scheduler (hosted by the master): `wasmos dev --run {{crate}}.wasm -- [N]` launches N tasks
//!   (default 4, at most 1,000), the numbers 1..=N, one per task, on offered resources; it
//!   relaunches a task that fails (up to 3 launches) and finishes with
//!   `{{name}}: sum of squares of 1..=N = SUM`.
//! * Executor (run by agents): a task's payload is a number; it returns its square.
//!   `wasmos task run {{crate}}.wasm --payload 7` prints `49`.

use std::collections::BTreeMap;

use wasmos_guest::{
    Executor, Offer, Resources, Scheduler, Task, TaskInfo, TaskState, TaskStatus, driver,
    executor_driver,
};

/// What one task asks for: a tenth of a core and 32 MiB.
const PER_TASK: Resources = Resources::cpu_mem(100, 32);
/// Tasks when `init` gets no argument.
const DEFAULT_TASKS: u64 = 4;
/// The most tasks an argument may ask for.
const MAX_TASKS: u64 = 1_000;
/// Launches of one number before the framework gives up.
const MAX_LAUNCHES: u32 = 3;
/// The executor id of every task: tasks on one agent share one executor instance.
const EXECUTOR_ID: &str = "{{name}}";

/// The scheduler half: the numbers still to launch, launches per number, and the sum so far.
struct SquaresScheduler {
    n: u64,
    to_launch: Vec<u64>,
    launches: BTreeMap<u64, u32>,
    squared: BTreeMap<u64, u64>,
    finished: bool,
}

/// Task ids are `square-N`: the id says which number a status is about.
fn number_of(task_id: &str) -> Option<u64> {
    task_id.strip_prefix("square-")?.parse().ok()
}

impl SquaresScheduler {
    fn finish(&mut self, outcome: Result<String, String>) {
        self.finished = true;
        driver::finish(outcome);
    }
}

impl Scheduler for SquaresScheduler {
    fn init(args: Vec<String>) -> Result<Self, String> {
        let n = match args.as_slice() {
            [] => DEFAULT_TASKS,
            [a] => a
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_TASKS).contains(n))
                .ok_or_else(|| {
                    format!("{{name}}: N must be a number from 1 to {MAX_TASKS}, not {a:?}")
                })?,
            _ => return Err("{{name}}: usage: {{name}} [N]".into()),
        };
        driver::report_progress(Some(n), None);
        Ok(SquaresScheduler {
            n,
            to_launch: (1..=n).rev().collect(),
            launches: BTreeMap::new(),
            squared: BTreeMap::new(),
            finished: false,
        })
    }

    fn resource_offers(&mut self, offers: Vec<Offer>) {
        for offer in offers {
            let mut left = offer.resources;
            let mut tasks = Vec::new();
            while !self.finished && !self.to_launch.is_empty() && left.try_take(&PER_TASK) {
                let Some(n) = self.to_launch.pop() else { break };
                *self.launches.entry(n).or_default() += 1;
                let id = format!("square-{n}");
                tasks.push(TaskInfo::wasm(
                    id,
                    &offer.agent_id,
                    PER_TASK,
                    EXECUTOR_ID,
                    n.to_string(),
                ));
            }
            if tasks.is_empty() {
                // Nothing to run here: refuse this agent for the SDK's default 120 s.
                driver::decline(&[offer.id]);
            } else if let Err(e) = driver::launch(&[offer.id], &tasks) {
                driver::warn(&format!(
                    "{{name}}: launch failed, retrying on a later offer: {e}"
                ));
                for n in tasks.iter().filter_map(|t| number_of(&t.task_id)) {
                    if let Some(l) = self.launches.get_mut(&n) {
                        *l -= 1;
                    }
                    self.to_launch.push(n);
                }
            }
        }
        if self.to_launch.is_empty() {
            // Nothing left to launch: stop receiving offers.
            driver::suppress();
        }
    }

    fn status_update(&mut self, status: TaskStatus) {
        let Some(n) = number_of(&status.task_id) else {
            return;
        };
        // Updates are delivered at least once: count each number once.
        if self.finished || self.squared.contains_key(&n) {
            return;
        }
        match status.state {
            TaskState::Finished => {
                let data = status.data.unwrap_or_default();
                let Some(square) = std::str::from_utf8(&data).ok().and_then(|s| s.parse().ok())
                else {
                    let got = String::from_utf8_lossy(&data).into_owned();
                    self.finish(Err(format!(
                        "{{name}}: task {n} returned {got:?}, not a number"
                    )));
                    return;
                };
                self.squared.insert(n, square);
                if self.squared.len() as u64 == self.n {
                    let sum = self
                        .squared
                        .values()
                        .fold(0u64, |a, b| a.saturating_add(*b));
                    self.finish(Ok(format!(
                        "{{name}}: sum of squares of 1..={} = {sum}",
                        self.n
                    )));
                }
            }
            state if state.is_terminal() => {
                // Failed, lost, ...: launch it again on a later offer, a few times.
                if self.launches.get(&n).copied().unwrap_or(0) >= MAX_LAUNCHES {
                    let why = status.message;
                    self.finish(Err(format!(
                        "{{name}}: task {n} failed {MAX_LAUNCHES} times: {why}"
                    )));
                    return;
                }
                self.to_launch.push(n);
                driver::revive();
            }
            _ => {}
        }
    }
}

/// The executor half. One instance per executor id on an agent: whatever it keeps in `self`
/// (here a count) is still there for the next task.
#[derive(Default)]
struct SquaresExecutor {
    tasks_run: u64,
}

impl Executor for SquaresExecutor {
    fn new() -> Self {
        SquaresExecutor::default()
    }

    fn launch(&mut self, task: Task) -> Result<Vec<u8>, String> {
        self.tasks_run += 1;
        let text = String::from_utf8_lossy(&task.payload);
        let n: u64 = text
            .trim()
            .parse()
            .map_err(|e| format!("payload {text:?} is not a whole number: {e}"))?;
        let square = n
            .checked_mul(n)
            .ok_or_else(|| format!("{n} squared overflows u64"))?;
        // On the agent, in the task's log (`wasmos logs TASK`).
        executor_driver::info(&format!(
            "{n} squared is {square}; task {} of this instance",
            self.tasks_run
        ));
        Ok(square.to_string().into_bytes())
    }
}

wasmos_guest::export!(scheduler = SquaresScheduler, executor = SquaresExecutor);
