//! `service`: a Marathon-like long-running framework in one wasmos component.
//!
//! `wasmos submit service.wasm -- [OPTIONS] K CPUS MEM_MB [--] ARGV...` keeps `K` instances of a
//! native command running, each a `command` task with `CPUS` cores (decimal, e.g. `0.25`) and
//! `MEM_MB` MiB, which the agent enforces with cgroup limits. An instance whose task ends in any
//! way (`finished`, `failed`, `killed`, `lost`) is launched again on the next offers that
//! fit; one that is refused (`error`: a role that may not run native tasks, a command the agent
//! cannot start) fails the framework with the reason instead, since it would only be refused
//! again. Without options it never finishes by itself: it runs until the framework is torn down.
//! With `--for SECONDS` it stops after that long, and with `--until-replaced N` once `N`
//! instances were replaced and all `K` run again; either way it finishes with a summary of what
//! runs and what ended (the master then kills its tasks).
//!
//! It suppresses offers while all `K` are launched and revives them when one must be replaced.
//! What it runs is published with `driver::state_put` under the key [`STATE_KEY`], as JSON (one
//! instance a line), and read back by `init` after a master failover, so the tasks still running
//! are adopted (and reconciled) rather than launched a second time.
//!
//! The executor half is unused (the tasks are native commands); it refuses any task.

use std::time::Instant;

use wasmos_guest::{
    Executor, Offer, Resources, Scheduler, Task, TaskInfo, TaskState, TaskStatus, driver,
};

/// The state key under which the instance table is published.
pub const STATE_KEY: &str = "instances";

/// Upper bounds on the arguments, so a typo cannot make the scheduler allocate gigabytes.
const MAX_INSTANCES: u32 = 10_000;
const MAX_MILLICPUS: u64 = 1_000_000;
const MAX_MEM_MB: u64 = 16 << 20;

/// Upper bound on `--for`, in seconds (a year).
const MAX_RUN_SECS: u64 = 365 * 24 * 3600;

/// The timer `--for` sets.
const STOP_TIMER: u64 = 1;

/// Ended tasks the summary names (the most recent ones).
const SUMMARY_ENDED: usize = 20;

const USAGE: &str =
    "usage: service [--for SECONDS] [--until-replaced N] K CPUS MEM_MB [--] ARGV...";

/// Where one instance stands.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Needs a launch.
    Waiting,
    /// Launched; not yet reported running.
    Staging,
    Running,
    /// Its agent stopped answering; it may still run there, so it is not replaced yet.
    Unreachable,
}

impl Phase {
    fn word(&self) -> &'static str {
        match self {
            Phase::Waiting => "waiting",
            Phase::Staging => "staging",
            Phase::Running => "running",
            Phase::Unreachable => "unreachable",
        }
    }
}

#[derive(Debug, Clone)]
struct Instance {
    phase: Phase,
    /// Launches so far; the current task id ends in it.
    launches: u32,
    /// The agent of the current task (when launched).
    agent_id: Option<String>,
    /// Why the previous task ended, for the published record.
    last_exit: Option<String>,
}

/// The scheduler half.
struct ServiceScheduler {
    per_task: Resources,
    argv: Vec<String>,
    instances: Vec<Instance>,
    suppressed: bool,
    /// The last record published, to publish only changes.
    published: String,
    /// Instances relaunched because their task ended.
    replaced: u32,
    /// The most recent ended tasks, `"service-0-1 (failed: ...)"`, for the summary.
    ended: Vec<String>,
    /// `--until-replaced N`: finish once `N` instances were replaced and all run again.
    until_replaced: Option<u32>,
    /// `--for SECONDS`, in milliseconds: finish when that much time has passed.
    run_for_ms: Option<u64>,
    started: Instant,
    /// Set once `driver::finish` was called: later callbacks do nothing.
    finished: bool,
}

/// What the options before `K` ask for.
#[derive(Debug, Default, PartialEq)]
struct Options {
    run_for_ms: Option<u64>,
    until_replaced: Option<u32>,
}

/// Splits the leading `--for SECONDS` and `--until-replaced N` off `args`.
fn parse_options(mut args: &[String]) -> Result<(Options, &[String]), String> {
    let mut options = Options::default();
    while let [flag, rest @ ..] = args {
        let value = |what: &str| {
            rest.first()
                .ok_or_else(|| format!("service: {flag} needs {what}; {USAGE}"))
        };
        match flag.as_str() {
            "--for" => {
                let text = value("SECONDS")?;
                let secs: f64 = text
                    .parse()
                    .map_err(|e| format!("service: bad --for {text:?}: {e}; {USAGE}"))?;
                if !(secs > 0.0 && secs <= MAX_RUN_SECS as f64) {
                    return Err(format!(
                        "service: --for must be more than 0 and at most {MAX_RUN_SECS} seconds, \
                         not {text}"
                    ));
                }
                options.run_for_ms = Some((secs * 1000.0).ceil() as u64);
            }
            "--until-replaced" => {
                let text = value("N")?;
                let n: u32 = text
                    .parse()
                    .map_err(|e| format!("service: bad --until-replaced {text:?}: {e}; {USAGE}"))?;
                if n == 0 {
                    return Err(format!(
                        "service: --until-replaced must be at least 1; {USAGE}"
                    ));
                }
                options.until_replaced = Some(n);
            }
            other if other.starts_with("--") && other != "--" => {
                return Err(format!("service: unknown option {other:?}; {USAGE}"));
            }
            _ => break,
        }
        args = &rest[1..];
    }
    Ok((options, args))
}

/// `service-INSTANCE-LAUNCH`: a fresh id per launch, so a late update about a replaced task
/// cannot be taken for its replacement.
fn task_id(instance: u32, launch: u32) -> String {
    format!("service-{instance}-{launch}")
}

fn parse_task_id(id: &str) -> Option<(u32, u32)> {
    let (i, l) = id.strip_prefix("service-")?.split_once('-')?;
    Some((i.parse().ok()?, l.parse().ok()?))
}

/// `"0.25"` cores to 250 millicpus, exactly (no float rounding).
fn parse_cpus(text: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("service: bad CPUS {text:?}: {why}; {USAGE}");
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if frac.len() > 3 || (whole.is_empty() && frac.is_empty()) {
        return Err(bad("expected cores with at most 3 decimals, e.g. 0.25"));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|e| bad(&format!("{e}")))?
    };
    let frac_milli: u64 = if frac.is_empty() {
        0
    } else {
        let digits: u64 = frac.parse().map_err(|e| bad(&format!("{e}")))?;
        digits * 10u64.pow(3 - frac.len() as u32)
    };
    let milli = whole
        .checked_mul(1000)
        .and_then(|m| m.checked_add(frac_milli))
        .filter(|&m| m <= MAX_MILLICPUS)
        .ok_or_else(|| bad("too large"))?;
    if milli == 0 {
        return Err(bad("must be more than 0"));
    }
    Ok(milli)
}

/// Escapes `s` as a JSON string body.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The value of `"key":"..."` or `"key":123` on one line of our own record (not a general JSON
/// parser: it reads only what [`ServiceScheduler::record`] writes).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let rest = &line[at..];
    if let Some(quoted) = rest.strip_prefix('"') {
        quoted.split('"').next()
    } else {
        rest.split([',', '}']).next()
    }
}

impl ServiceScheduler {
    /// The instance table as JSON, one instance a line:
    ///
    /// ```text
    /// {"wanted":2,"replaced":1,"cpus_milli":250,"mem_mb":64,"argv":["sleep","1000"],"instances":[
    /// {"instance":0,"task_id":"service-0-1","agent_id":"a1","state":"running"},
    /// {"instance":1,"task_id":null,"agent_id":null,"state":"waiting","last_exit":"failed: ..."}
    /// ]}
    /// ```
    fn record(&self) -> String {
        let argv: Vec<String> = self.argv.iter().map(|a| json_str(a)).collect();
        let mut out = format!(
            "{{\"wanted\":{},\"replaced\":{},\"cpus_milli\":{},\"mem_mb\":{},\"argv\":[{}],\"instances\":[",
            self.instances.len(),
            self.replaced,
            self.per_task.millicpus,
            self.per_task.mem_mb,
            argv.join(",")
        );
        for (i, inst) in self.instances.iter().enumerate() {
            let launched = inst.phase != Phase::Waiting;
            let task = if launched {
                json_str(&task_id(i as u32, inst.launches))
            } else {
                "null".into()
            };
            let agent = match (&inst.agent_id, launched) {
                (Some(a), true) => json_str(a),
                _ => "null".into(),
            };
            out.push_str(if i == 0 { "\n" } else { ",\n" });
            out.push_str(&format!(
                "{{\"instance\":{i},\"launches\":{},\"task_id\":{task},\"agent_id\":{agent},\"state\":\"{}\"",
                inst.launches,
                inst.phase.word()
            ));
            if let Some(exit) = &inst.last_exit {
                out.push_str(&format!(",\"last_exit\":{}", json_str(exit)));
            }
            out.push('}');
        }
        out.push_str("\n]}");
        out
    }

    fn publish(&mut self) {
        let record = self.record();
        if record == self.published {
            return;
        }
        match driver::state_put(STATE_KEY, record.as_bytes()) {
            Ok(()) => self.published = record,
            Err(e) => driver::warn(&format!("service: could not publish state: {e}")),
        }
    }

    fn running(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.phase == Phase::Running)
            .count()
    }

    /// Adopts the tasks a previous incarnation of this scheduler published (after a master
    /// failover `init` runs again while the tasks keep running) and asks for their state.
    fn adopt(&mut self, record: &str) {
        if let Some(replaced) = record
            .lines()
            .next()
            .and_then(|header| field(header, "replaced"))
            .and_then(|r| r.parse().ok())
        {
            self.replaced = replaced;
        }
        let mut adopted = Vec::new();
        for line in record.lines() {
            let (Some(i), Some(launches)) = (field(line, "instance"), field(line, "launches"))
            else {
                continue;
            };
            let (Ok(i), Ok(launches)) = (i.parse::<usize>(), launches.parse::<u32>()) else {
                continue;
            };
            let Some(inst) = self.instances.get_mut(i) else {
                continue;
            };
            inst.launches = launches;
            if let (Some(task), Some(agent)) = (field(line, "task_id"), field(line, "agent_id"))
                && field(line, "state") != Some("waiting")
                && task != "null"
            {
                inst.phase = Phase::Staging;
                inst.agent_id = Some(agent.to_string());
                adopted.push(task.to_string());
            }
        }
        if !adopted.is_empty() {
            driver::info(&format!(
                "service: adopting {} tasks from before a restart",
                adopted.len()
            ));
            driver::reconcile(&adopted);
        }
    }

    /// What runs and what ended, as the framework's result:
    ///
    /// ```text
    /// service: stopping after 2 replacements (--until-replaced 2); 2 of 2 instances running
    /// after 1.3 s, 2 replaced; instances: service-0-3 running on agent-1, service-1-1 running
    /// on agent-2; ended: service-0-1 (failed: ...), service-0-2 (failed: ...)
    /// ```
    fn summary(&self, why: &str) -> String {
        let instances: Vec<String> = self
            .instances
            .iter()
            .enumerate()
            .map(|(i, inst)| match (&inst.phase, &inst.agent_id) {
                (Phase::Waiting, _) => format!("instance {i} waiting"),
                (phase, Some(agent)) => format!(
                    "{} {} on {agent}",
                    task_id(i as u32, inst.launches),
                    phase.word()
                ),
                (phase, None) => {
                    format!("{} {}", task_id(i as u32, inst.launches), phase.word())
                }
            })
            .collect();
        let ended = if self.ended.is_empty() {
            "none".to_string()
        } else {
            self.ended.join(", ")
        };
        format!(
            "service: stopping after {why}; {} of {} instances running after {:.1} s, {} \
             replaced; instances: {}; ended: {ended}",
            self.running(),
            self.instances.len(),
            self.started.elapsed().as_secs_f64(),
            self.replaced,
            instances.join(", ")
        )
    }

    fn finish(&mut self, why: &str) {
        let summary = self.summary(why);
        self.finished = true;
        driver::finish(Ok(summary));
    }
}

impl Scheduler for ServiceScheduler {
    fn init(args: Vec<String>) -> Result<Self, String> {
        let (options, args) = parse_options(&args)?;
        let [k, cpus, mem, rest @ ..] = args else {
            return Err(format!("service: too few arguments {args:?}; {USAGE}"));
        };
        let k: u32 = k
            .parse()
            .map_err(|e| format!("service: bad K {k:?}: {e}; {USAGE}"))?;
        if k == 0 || k > MAX_INSTANCES {
            return Err(format!("service: K must be 1 to {MAX_INSTANCES}, not {k}"));
        }
        let millicpus = parse_cpus(cpus)?;
        let mem_mb: u64 = mem
            .parse()
            .map_err(|e| format!("service: bad MEM_MB {mem:?}: {e}; {USAGE}"))?;
        if mem_mb == 0 || mem_mb > MAX_MEM_MB {
            return Err(format!(
                "service: MEM_MB must be 1 to {MAX_MEM_MB}, not {mem_mb}"
            ));
        }
        let argv = match rest {
            [dashes, argv @ ..] if dashes == "--" => argv,
            argv => argv,
        };
        if argv.is_empty() {
            return Err(format!("service: no command given; {USAGE}"));
        }
        let mut s = ServiceScheduler {
            per_task: Resources::cpu_mem(millicpus, mem_mb),
            argv: argv.to_vec(),
            instances: vec![
                Instance {
                    phase: Phase::Waiting,
                    launches: 0,
                    agent_id: None,
                    last_exit: None,
                };
                k as usize
            ],
            suppressed: false,
            published: String::new(),
            replaced: 0,
            ended: Vec::new(),
            until_replaced: options.until_replaced,
            run_for_ms: options.run_for_ms,
            started: Instant::now(),
            finished: false,
        };
        if let Some(previous) = driver::state_get(STATE_KEY) {
            s.adopt(&String::from_utf8_lossy(&previous));
        }
        driver::info(&format!(
            "service: keeping {k} instances of {:?} running, each with {}",
            s.argv, s.per_task
        ));
        if let Some(ms) = s.run_for_ms {
            driver::set_timer(STOP_TIMER, ms)
                .map_err(|e| format!("service: cannot set its stop timer: {e}"))?;
        }
        s.publish();
        Ok(s)
    }

    fn resource_offers(&mut self, offers: Vec<Offer>) {
        if self.finished {
            let ids: Vec<String> = offers.into_iter().map(|o| o.id).collect();
            driver::decline(&ids);
            return;
        }
        for offer in offers {
            let mut left = offer.resources;
            let mut tasks = Vec::new();
            for (i, inst) in self.instances.iter_mut().enumerate() {
                if inst.phase != Phase::Waiting {
                    continue;
                }
                if !left.try_take(&self.per_task) {
                    break;
                }
                inst.launches += 1;
                inst.phase = Phase::Staging;
                inst.agent_id = Some(offer.agent_id.clone());
                tasks.push(TaskInfo::command(
                    task_id(i as u32, inst.launches),
                    &offer.agent_id,
                    self.per_task,
                    self.argv.clone(),
                    Vec::new(),
                ));
            }
            if tasks.is_empty() {
                driver::decline(&[offer.id]);
            } else if let Err(e) = driver::launch(&[offer.id], &tasks) {
                driver::warn(&format!(
                    "service: launch on agent {} failed: {e}",
                    offer.agent_id
                ));
                // Nothing was launched: the instances wait for the next offers.
                for task in &tasks {
                    if let Some((i, _)) = parse_task_id(&task.task_id)
                        && let Some(inst) = self.instances.get_mut(i as usize)
                    {
                        inst.phase = Phase::Waiting;
                        inst.launches -= 1;
                    }
                }
            }
        }
        let waiting = self.instances.iter().any(|i| i.phase == Phase::Waiting);
        if !waiting && !self.suppressed {
            // All K are placed: an idle framework should not hold up others' offers.
            self.suppressed = true;
            driver::suppress();
        }
        self.publish();
    }

    fn status_update(&mut self, status: TaskStatus) {
        if self.finished {
            return;
        }
        let Some((i, launch)) = parse_task_id(&status.task_id) else {
            driver::warn(&format!(
                "service: status for unknown task {}",
                status.task_id
            ));
            return;
        };
        let Some(inst) = self.instances.get_mut(i as usize) else {
            driver::warn(&format!(
                "service: status for unknown task {}",
                status.task_id
            ));
            return;
        };
        if launch != inst.launches || inst.phase == Phase::Waiting {
            // A replaced task (or a duplicate of its end): the instance has moved on.
            return;
        }
        if let Some(agent) = &status.agent_id {
            inst.agent_id = Some(agent.clone());
        }
        match status.state {
            TaskState::Running => inst.phase = Phase::Running,
            TaskState::Error => {
                // The master or agent refused the task as described (a role without the right
                // to run it, an invalid command): launching it again would only be refused
                // again, as fast as offers come.
                let why = format!(
                    "service: instance {i} ({}) was refused: {}; a refused task is not \
                     launched again",
                    status.task_id, status.message
                );
                self.publish();
                self.finished = true;
                driver::finish(Err(why));
                return;
            }
            TaskState::Unreachable => inst.phase = Phase::Unreachable,
            state if state.is_terminal() => {
                let why = if status.message.is_empty() {
                    state.to_string()
                } else {
                    format!("{state}: {}", status.message)
                };
                driver::warn(&format!(
                    "service: instance {i} ({}) ended ({why}); relaunching",
                    status.task_id
                ));
                inst.phase = Phase::Waiting;
                self.ended.push(format!("{} ({why})", status.task_id));
                if self.ended.len() > SUMMARY_ENDED {
                    self.ended.remove(0);
                }
                inst.last_exit = Some(why);
                self.replaced += 1;
                if self.suppressed {
                    self.suppressed = false;
                    driver::revive();
                }
            }
            // staging/starting.
            _ => {}
        }
        if status.state == TaskState::Running && self.running() == self.instances.len() {
            driver::info(&format!(
                "service: all {} instances running",
                self.running()
            ));
            if let Some(n) = self.until_replaced
                && self.replaced >= n
            {
                self.publish();
                self.finish(&format!("{n} replacements (--until-replaced {n})"));
                return;
            }
        }
        self.publish();
    }

    fn timer(&mut self, timer_id: u64) {
        if self.finished || timer_id != STOP_TIMER {
            return;
        }
        let Some(ms) = self.run_for_ms else { return };
        self.finish(&format!("{:.1} s (--for)", ms as f64 / 1000.0));
    }
}

/// The executor half: this framework runs only command tasks, so a Wasm task is a mistake.
struct NoExecutor;

impl Executor for NoExecutor {
    fn new() -> Self {
        NoExecutor
    }

    fn launch(&mut self, task: Task) -> Result<Vec<u8>, String> {
        Err(format!(
            "service runs native command tasks only; Wasm task {} has nothing to run",
            task.task_id
        ))
    }
}

wasmos_guest::export!(scheduler = ServiceScheduler, executor = NoExecutor);

#[cfg(test)]
mod tests {
    //! Run on the host: `cargo test -p service --target x86_64-unknown-linux-gnu` in examples-wasm/.

    use super::*;

    #[test]
    fn cpus_parse_exactly() {
        assert_eq!(parse_cpus("0.25"), Ok(250));
        assert_eq!(parse_cpus("2"), Ok(2000));
        assert_eq!(parse_cpus(".5"), Ok(500));
        assert_eq!(parse_cpus("1.125"), Ok(1125));
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("0.0001").is_err());
        assert!(parse_cpus("x").is_err());
        assert!(parse_cpus("").is_err());
    }

    #[test]
    fn options_come_before_k() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = args(&[
            "--for",
            "1.5",
            "--until-replaced",
            "3",
            "2",
            "0.1",
            "16",
            "sleep",
        ]);
        let (o, rest) = parse_options(&a).unwrap();
        assert_eq!(
            o,
            Options {
                run_for_ms: Some(1500),
                until_replaced: Some(3)
            }
        );
        assert_eq!(rest, &a[4..]);
        // Without options everything is K CPUS MEM_MB ARGV; a `--` in ARGV stays.
        let a = args(&["2", "0.1", "16", "--", "sleep", "--for"]);
        assert_eq!(parse_options(&a).unwrap(), (Options::default(), &a[..]));
        assert!(
            parse_options(&args(&["--for"]))
                .unwrap_err()
                .contains("SECONDS")
        );
        assert!(parse_options(&args(&["--for", "0", "1"])).is_err());
        assert!(parse_options(&args(&["--for", "x", "1"])).is_err());
        assert!(parse_options(&args(&["--until-replaced", "0", "1"])).is_err());
        assert!(
            parse_options(&args(&["--forever", "1"]))
                .unwrap_err()
                .contains("unknown")
        );
    }

    #[test]
    fn record_fields_read_back() {
        let line = r#"{"instance":3,"launches":2,"task_id":"service-3-2","agent_id":"a1","state":"running"}"#;
        assert_eq!(field(line, "instance"), Some("3"));
        assert_eq!(field(line, "task_id"), Some("service-3-2"));
        assert_eq!(field(line, "state"), Some("running"));
        assert_eq!(field(line, "nope"), None);
        assert_eq!(json_str("a\"b"), r#""a\"b""#);
    }
}
