//! `logreg`: the Spark paper's iterative logistic regression as one wasmos component.
//!
//! * Scheduler: `wasmos submit logreg.wasm -- [PARTITIONS] [POINTS] [ITERATIONS] [WAIT_MS]`
//!   (defaults 4 × 25,000 × 10, 3000 ms). Each iteration launches one task per partition with the
//!   current weights, sums the returned gradients in partition order, and steps the weights. It
//!   prefers the agent that already holds a partition (delay scheduling: up to `WAIT_MS` per
//!   iteration, then anywhere), and rebuilds a partition elsewhere when its task or agent is lost
//!   (lineage: the partition is regenerated from its source). It logs each iteration's time and
//!   finishes with the accuracy on held-out points, the per-iteration times, and how many
//!   partitions were parsed in the first iteration and rebuilt in later ones.
//! * Executor: a task's payload is `"PARTITION POINTS W1 ... W10"`. The first task for a
//!   partition in an executor instance produces the partition as text and parses it (Spark's
//!   `textFile(...).map(readPoint)`); the parsed points stay in the instance (`&mut self`), so
//!   later tasks only compute the gradient. It returns `"loaded|cached POINTS G1 ... G10"`.
//!
//! Executor ids are `logreg-pPARTITION`: one instance per partition on an agent, so partitions
//! are processed in parallel and each stays in the instance that parsed it.

mod data;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use data::{DIMS, HELD_OUT_PARTITION, Points, Source};
use wasmos_guest::{
    Executor, Offer, Resources, Scheduler, Task, TaskInfo, TaskState, TaskStatus, driver,
    executor_driver,
};

/// CPU one task asks for: half a core.
const TASK_MILLICPUS: u64 = 500;
/// Memory one task asks for besides its partition: the instance's code, stack and heap slack.
const TASK_BASE_MEM_MB: u64 = 64;
/// Bytes a point needs while it is loaded: about 110 of text plus 88 parsed, rounded up.
const BYTES_PER_POINT: u64 = 256;

const DEFAULT_PARTITIONS: u32 = 4;
/// Default points per partition: the first iteration's parse then costs well over 10× a
/// later iteration's gradient.
const DEFAULT_POINTS: usize = 25_000;
const DEFAULT_ITERATIONS: u32 = 10;
/// How long an iteration waits for offers on the agents holding its partitions.
const DEFAULT_WAIT_MS: u64 = 3_000;

/// Bounds on the arguments, so a typo cannot exhaust the scheduler's or an executor's memory.
const MAX_PARTITIONS: u32 = 10_000;
const MAX_POINTS: usize = 1_000_000;
const MAX_ITERATIONS: u32 = 10_000;
const MAX_WAIT_MS: u64 = 3_600_000;

/// Step size on the mean gradient.
pub(crate) const LEARNING_RATE: f64 = 2.0;

/// Points held out to score the model.
const HELD_OUT_POINTS: usize = 2_000;

/// Failed launches of one partition within one iteration before the job gives up.
const MAX_ATTEMPTS_PER_ITERATION: u32 = 5;

const USAGE: &str = "usage: logreg [PARTITIONS] [POINTS_PER_PARTITION] [ITERATIONS] [WAIT_MS]";

/// Where one partition stands in the current iteration.
#[derive(Debug, Clone, PartialEq)]
enum Slot {
    /// Waiting for an offer.
    Pending,
    /// Launched as `task_id` on `agent_id`.
    Running { task_id: String, agent_id: String },
    /// Its gradient for this iteration is in.
    Done([f64; DIMS]),
}

/// The scheduler half.
struct LogregScheduler {
    /// Whether the master was last told that a task waits for resources.
    told_waiting: bool,
    per_task: Resources,
    partitions: u32,
    points: usize,
    iterations: u32,
    wait_ms: u64,
    weights: [f64; DIMS],
    /// The current iteration, from 0.
    iteration: u32,
    slots: Vec<Slot>,
    /// Per partition: the agent whose executor holds it parsed, if any.
    holder: Vec<Option<String>>,
    /// Per partition: launches so far (task ids end in this number, so each launch is unique).
    launches: Vec<u32>,
    /// Per partition: failed launches in the current iteration.
    failures: Vec<u32>,
    /// Set when this iteration's locality wait is over: pending partitions may run anywhere.
    relaxed: bool,
    started: Instant,
    /// Wall time of each finished iteration.
    times: Vec<Duration>,
    /// Partitions parsed (not found cached) in the current iteration.
    loaded: u32,
    /// Partitions parsed in each finished iteration: all of them in the first, then only
    /// those rebuilt after their executor or agent was lost.
    parsed: Vec<u32>,
    suppressed: bool,
    finished: bool,
}

/// `logreg-ITERATION-PARTITION-LAUNCH`.
fn task_id(iteration: u32, partition: u32, launch: u32) -> String {
    format!("logreg-{iteration}-{partition}-{launch}")
}

fn parse_task_id(id: &str) -> Option<(u32, u32, u32)> {
    let mut parts = id.strip_prefix("logreg-")?.split('-');
    let (Some(i), Some(p), Some(l), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    Some((i.parse().ok()?, p.parse().ok()?, l.parse().ok()?))
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
    let value: T = text
        .parse()
        .map_err(|e| format!("logreg: bad {what} {text:?}: {e}; {USAGE}"))?;
    if value.partial_cmp(&max) == Some(std::cmp::Ordering::Greater) {
        return Err(format!(
            "logreg: {what} {value} is more than the maximum {max}"
        ));
    }
    Ok(value)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl LogregScheduler {
    fn pending(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.partitions).filter(|&p| self.slots[p as usize] == Slot::Pending)
    }

    fn want_offers(&mut self) {
        if self.suppressed {
            self.suppressed = false;
            driver::revive();
        }
    }

    fn start_iteration(&mut self) {
        self.slots = vec![Slot::Pending; self.partitions as usize];
        self.failures = vec![0; self.partitions as usize];
        self.loaded = 0;
        self.started = Instant::now();
        // With nothing cached anywhere there is no locality to wait for.
        self.relaxed = self.holder.iter().all(Option::is_none);
        if !self.relaxed && driver::set_timer(u64::from(self.iteration), self.wait_ms).is_err() {
            // Without the timer nothing would end the wait for locality: run anywhere.
            self.relaxed = true;
        }
        // Also clears the filters of agents declined last iteration.
        self.suppressed = true;
        self.want_offers();
    }

    /// Whether partition `p` may run on `agent_id` now.
    fn may_run_on(&self, p: u32, agent_id: &str) -> bool {
        match &self.holder[p as usize] {
            None => true,
            Some(holder) => holder == agent_id || self.relaxed,
        }
    }

    fn fail(&mut self, why: String) {
        self.finished = true;
        driver::finish(Err(format!("logreg: {why}")));
    }

    /// A launch of partition `p` ended without a gradient: queue it again, or give up.
    fn relaunch(&mut self, p: u32, why: &str) {
        let failures = &mut self.failures[p as usize];
        *failures += 1;
        if *failures >= MAX_ATTEMPTS_PER_ITERATION {
            let n = *failures;
            self.fail(format!(
                "partition {p} failed {n} times in iteration {}; last error: {why}",
                self.iteration + 1
            ));
            return;
        }
        driver::warn(&format!(
            "logreg: partition {p} in iteration {}: {why}; rebuilding it from its source",
            self.iteration + 1
        ));
        self.slots[p as usize] = Slot::Pending;
        self.want_offers();
    }

    /// Every partition of `agent_id` is gone with it: they are rebuilt from their source
    /// wherever the next offers are (their tasks' own lost updates requeue them).
    fn forget_agent(&mut self, agent_id: &str) {
        for holder in &mut self.holder {
            if holder.as_deref() == Some(agent_id) {
                *holder = None;
            }
        }
    }

    fn end_iteration(&mut self) {
        let mut total = [0.0; DIMS];
        // Partition order, so the sum (and the model) does not depend on arrival order.
        for slot in &self.slots {
            if let Slot::Done(g) = slot {
                for (t, gi) in total.iter_mut().zip(g) {
                    *t += gi;
                }
            }
        }
        let n = self.partitions as f64 * self.points as f64;
        for (w, t) in self.weights.iter_mut().zip(total) {
            *w -= LEARNING_RATE * t / n;
        }
        let took = self.started.elapsed();
        self.times.push(took);
        self.parsed.push(self.loaded);
        driver::info(&format!(
            "logreg: iteration {} took {:.1} ms ({} of {} partitions parsed, the rest cached)",
            self.iteration + 1,
            ms(took),
            self.loaded,
            self.partitions
        ));
        self.iteration += 1;
        if self.iteration < self.iterations {
            self.start_iteration();
        } else {
            self.finish_job();
        }
    }

    fn finish_job(&mut self) {
        let held_out = data::points(HELD_OUT_PARTITION, HELD_OUT_POINTS);
        let accuracy = data::accuracy(&held_out, &self.weights);
        let mut later: Vec<f64> = self.times.iter().skip(1).map(|t| ms(*t)).collect();
        later.sort_by(f64::total_cmp);
        let speedup = match later.get(later.len() / 2) {
            Some(&median) if median > 0.0 => {
                format!("; first/median-later = {:.1}x", ms(self.times[0]) / median)
            }
            _ => String::new(),
        };
        self.finished = true;
        driver::finish(Ok(format!(
            "logreg: accuracy {accuracy:.4} on {HELD_OUT_POINTS} held-out points after {} \
             iterations over {} partitions x {} points; iteration ms: {}{speedup}; {}",
            self.iterations,
            self.partitions,
            self.points,
            listed_times(&self.times),
            parsed_summary(&self.parsed)
        )));
    }
}

/// Most iteration times the result lists; a longer job lists the first ones and a count.
const LISTED_TIMES: usize = 20;

/// `"371.8, 7.7, 6.9"`, or for a long job `"371.8, 7.7, ... (980 more)"`.
fn listed_times(times: &[Duration]) -> String {
    let mut listed: Vec<String> = times
        .iter()
        .take(LISTED_TIMES)
        .map(|t| format!("{:.1}", ms(*t)))
        .collect();
    if times.len() > LISTED_TIMES {
        listed.push(format!("... ({} more)", times.len() - LISTED_TIMES));
    }
    listed.join(", ")
}

/// How many partitions each iteration parsed, from `parsed[i]` of iteration `i + 1`:
/// `"partitions parsed: 4 in the first iteration, 0 rebuilt later"`, or with rebuilds
/// `"partitions parsed: 4 in the first iteration, 2 rebuilt later (iteration 37: 2)"`.
fn parsed_summary(parsed: &[u32]) -> String {
    let first = parsed.first().copied().unwrap_or(0);
    let rebuilt: Vec<String> = parsed
        .iter()
        .enumerate()
        .skip(1)
        .filter(|&(_, &n)| n > 0)
        .map(|(i, n)| format!("iteration {}: {n}", i + 1))
        .collect();
    let later: u32 = parsed.iter().skip(1).sum();
    let detail = if rebuilt.is_empty() {
        String::new()
    } else {
        format!(" ({})", rebuilt.join(", "))
    };
    format!("partitions parsed: {first} in the first iteration, {later} rebuilt later{detail}")
}

impl Scheduler for LogregScheduler {
    fn init(args: Vec<String>) -> Result<Self, String> {
        if args.len() > 4 {
            return Err(format!("logreg: too many arguments {args:?}; {USAGE}"));
        }
        let partitions = parse_arg(&args, 0, "PARTITIONS", DEFAULT_PARTITIONS, MAX_PARTITIONS)?;
        let points = parse_arg(&args, 1, "POINTS_PER_PARTITION", DEFAULT_POINTS, MAX_POINTS)?;
        let iterations = parse_arg(&args, 2, "ITERATIONS", DEFAULT_ITERATIONS, MAX_ITERATIONS)?;
        let wait_ms = parse_arg(&args, 3, "WAIT_MS", DEFAULT_WAIT_MS, MAX_WAIT_MS)?;
        if partitions == 0 || points == 0 || iterations == 0 {
            return Err(format!(
                "logreg: PARTITIONS, POINTS_PER_PARTITION and ITERATIONS must be at least 1; {USAGE}"
            ));
        }
        driver::info(&format!(
            "logreg: {iterations} iterations over {partitions} partitions x {points} points, \
             locality wait {wait_ms} ms"
        ));
        let n = partitions as usize;
        let per_task = Resources::cpu_mem(
            TASK_MILLICPUS,
            TASK_BASE_MEM_MB + (points as u64 * BYTES_PER_POINT).div_ceil(1 << 20),
        );
        // For `wasmos status` and submit's progress line: one task per partition and iteration.
        driver::report_progress(Some(u64::from(partitions) * u64::from(iterations)), None);
        let mut s = LogregScheduler {
            told_waiting: false,
            per_task,
            partitions,
            points,
            iterations,
            wait_ms,
            weights: [0.0; DIMS],
            iteration: 0,
            slots: Vec::new(),
            holder: vec![None; n],
            launches: vec![0; n],
            failures: Vec::new(),
            relaxed: true,
            started: Instant::now(),
            times: Vec::new(),
            loaded: 0,
            parsed: Vec::new(),
            suppressed: false,
            finished: false,
        };
        s.start_iteration();
        Ok(s)
    }

    fn resource_offers(&mut self, offers: Vec<Offer>) {
        // Whether an offer had a partition that may run there but no room for its task.
        let mut too_small = false;
        let mut launched = false;
        for offer in offers {
            if self.finished {
                driver::decline(&[offer.id]);
                continue;
            }
            let mut left = offer.resources;
            let mut tasks = Vec::new();
            let candidates: Vec<u32> = self
                .pending()
                .filter(|&p| self.may_run_on(p, &offer.agent_id))
                .collect();
            let has_candidates = !candidates.is_empty();
            for p in candidates {
                if !left.try_take(&self.per_task) {
                    break;
                }
                self.launches[p as usize] += 1;
                let id = task_id(self.iteration, p, self.launches[p as usize]);
                self.slots[p as usize] = Slot::Running {
                    task_id: id.clone(),
                    agent_id: offer.agent_id.clone(),
                };
                tasks.push(TaskInfo::wasm(
                    id,
                    &offer.agent_id,
                    self.per_task,
                    format!("logreg-p{p}"),
                    data::format_payload(p, self.points, &self.weights),
                ));
            }
            if tasks.is_empty() {
                too_small |= has_candidates;
                // Revived at the next iteration, or when the locality wait ends.
                driver::decline(&[offer.id]);
            } else if let Err(e) = driver::launch(&[offer.id], &tasks) {
                driver::warn(&format!(
                    "logreg: launch on agent {} failed: {e}",
                    offer.agent_id
                ));
                // Nothing was launched.
                for task in &tasks {
                    if let Some((_, p, _)) = parse_task_id(&task.task_id) {
                        self.slots[p as usize] = Slot::Pending;
                    }
                }
            } else {
                launched = true;
            }
        }
        let waiting = !self.finished && too_small && !launched;
        if waiting != self.told_waiting {
            self.told_waiting = waiting;
            let total = u64::from(self.partitions) * u64::from(self.iterations);
            driver::report_progress(Some(total), waiting.then_some(&self.per_task));
        }
        if !self.finished && self.pending().next().is_none() && !self.suppressed {
            // Everything of this iteration is launched; the next one revives.
            self.suppressed = true;
            driver::suppress();
        }
    }

    fn status_update(&mut self, status: TaskStatus) {
        if self.finished {
            return;
        }
        let Some((iteration, p, _)) = parse_task_id(&status.task_id) else {
            driver::warn(&format!(
                "logreg: status for unknown task {}",
                status.task_id
            ));
            return;
        };
        if matches!(status.state, TaskState::Lost | TaskState::Unreachable)
            && let Some(agent) = &status.agent_id
        {
            // Whatever that agent held is gone (or out of reach, which for this job is the
            // same), whichever iteration this task was from.
            self.forget_agent(agent);
        }
        // Only the current launch of a partition in this iteration counts; anything else is a
        // duplicate or a late report of a launch that was replaced.
        let agent_id = match self.slots.get(p as usize) {
            Some(Slot::Running { task_id, agent_id })
                if iteration == self.iteration && *task_id == status.task_id =>
            {
                agent_id.clone()
            }
            _ => return,
        };
        match status.state {
            TaskState::Finished => {
                let parsed = match status.data.as_deref() {
                    Some(d) => data::parse_result(d),
                    None => Err("finished without data".into()),
                };
                match parsed {
                    Ok((source, count, g)) if count == self.points => {
                        if source == Source::Loaded {
                            self.loaded += 1;
                        }
                        self.holder[p as usize] = Some(agent_id);
                        self.slots[p as usize] = Slot::Done(g);
                        if self.slots.iter().all(|s| matches!(s, Slot::Done(_))) {
                            self.end_iteration();
                        }
                    }
                    Ok((_, count, _)) => {
                        let why = format!("returned {count} points, expected {}", self.points);
                        self.relaunch(p, &why);
                    }
                    Err(e) => self.relaunch(p, &e),
                }
            }
            // An unreachable agent may come back, but only after the master's removal timeout
            // (10 minutes by default) would it be reported lost: an iteration does not wait
            // that long. The partition is rebuilt elsewhere now; a late result of this launch
            // is ignored, as its task id is no longer the partition's current one.
            state if state.is_terminal() || state == TaskState::Unreachable => {
                // Its executor instance may be gone (a trap discards it): rebuild anywhere.
                self.holder[p as usize] = None;
                self.relaunch(p, &format!("{state}: {}", status.message));
            }
            // staging/starting/running.
            _ => {}
        }
    }

    fn timer(&mut self, timer_id: u64) {
        if self.finished || timer_id != u64::from(self.iteration) || self.relaxed {
            return; // A timer of an iteration that is already over.
        }
        self.relaxed = true;
        let waiting = self.pending().count();
        if waiting > 0 {
            driver::info(&format!(
                "logreg: locality wait of {} ms over; {waiting} partitions may run on any agent",
                self.wait_ms
            ));
            // Offers declined while waiting left filters behind; reviving clears them too.
            self.suppressed = false;
            driver::revive();
        }
    }
}

/// The executor half: the parsed partitions this instance holds, by partition index.
struct LogregExecutor {
    cache: HashMap<u32, Points>,
}

impl Executor for LogregExecutor {
    fn new() -> Self {
        LogregExecutor {
            cache: HashMap::new(),
        }
    }

    fn launch(&mut self, task: Task) -> Result<Vec<u8>, String> {
        let (partition, count, weights) = data::parse_payload(&task.payload)?;
        if count > MAX_POINTS {
            return Err(format!(
                "payload asks for {count} points, more than the maximum {MAX_POINTS}"
            ));
        }
        let source = match self.cache.get(&partition) {
            Some(points) if points.len() == count => Source::Cached,
            _ => {
                let started = Instant::now();
                let text = data::partition_text(partition, count);
                let points =
                    data::parse_points(&text).map_err(|e| format!("partition {partition}: {e}"))?;
                executor_driver::info(&format!(
                    "logreg: partition {partition}: produced and parsed {count} points \
                     ({} bytes of text) in {:.1} ms",
                    text.len(),
                    ms(started.elapsed())
                ));
                self.cache.insert(partition, points);
                Source::Loaded
            }
        };
        let points = self
            .cache
            .get(&partition)
            .ok_or_else(|| format!("partition {partition} vanished from the cache"))?;
        let g = data::gradient(points, &weights);
        Ok(data::format_result(source, count, &g).into_bytes())
    }
}

wasmos_guest::export!(scheduler = LogregScheduler, executor = LogregExecutor);

#[cfg(test)]
mod tests {
    //! Run on the host: `cargo test -p logreg --target x86_64-unknown-linux-gnu` in examples-wasm/.

    use super::*;

    #[test]
    fn result_lists_at_most_twenty_times_and_counts_rebuilds() {
        let three: Vec<Duration> = [371.84, 7.7, 6.92]
            .iter()
            .map(|&m| Duration::from_secs_f64(m / 1000.0))
            .collect();
        assert_eq!(listed_times(&three), "371.8, 7.7, 6.9");
        let many = vec![Duration::from_millis(5); 1000];
        let listed = listed_times(&many);
        assert_eq!(listed.matches("5.0").count(), LISTED_TIMES, "{listed}");
        assert!(listed.ends_with("... (980 more)"), "{listed}");

        assert_eq!(
            parsed_summary(&[4, 0, 0]),
            "partitions parsed: 4 in the first iteration, 0 rebuilt later"
        );
        assert_eq!(
            parsed_summary(&[4, 0, 1, 2]),
            "partitions parsed: 4 in the first iteration, 3 rebuilt later \
             (iteration 3: 1, iteration 4: 2)"
        );
    }
}
