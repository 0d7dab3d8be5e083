//! `hostile`: an executor that misbehaves on purpose, for wasmos's isolation tests.
//!
//! The task payload (UTF-8) picks the behaviour:
//!
//! | payload | does |
//! |---|---|
//! | `echo:TEXT` | returns `TEXT` (the well-behaved control) |
//! | `loop` | spins forever without I/O (fuel / deadline) |
//! | `membomb` | allocates and touches 1 MiB chunks forever, keeping them (memory cap) |
//! | `recurse` | unbounded non-tail recursion on the wasm stack (`Trap::StackOverflow`) |
//! | `panic` | panics (the instance traps; `panic = "abort"`) |
//! | `spew` | writes 100 MiB to stdout in 64 KiB chunks, stopping at the first write error, then returns `spewed` |
//! | `read:PATH` | returns the bytes of `PATH`, or fails with `cannot read PATH: ERROR` |
//! | `write:PATH:TEXT` | writes `TEXT` to `PATH`, or fails with `cannot write PATH: ERROR` |
//! | `symlink-read:NAME` | like `read:` (the host puts a symlink named `NAME` in the sandbox) |
//! | `count` | returns how many `count` tasks this instance ran, in decimal (instance reuse) |
//! | `sleep:MS` | sleeps `MS` milliseconds, returns `slept` |
//! | `progress:TEXT` | reports `TEXT` with `executor_driver::progress`, returns `progress sent` |
//! | `driver` | calls the scheduler-only `driver.suppress` from the executor (the host must refuse) |
//! | `stderr:TEXT` | writes `TEXT` and a newline to stderr, returns `stderr written` |
//! | `log-flood:N` | writes `N` lines of 100 bytes with `executor_driver::log`, returns `logged N` |
//! | `message-flood:N:BYTES` | sends `N` framework messages of `BYTES` bytes each, returns `sent N` (a bounded host traps it first) |
//! | `connect:ADDR` | opens a TCP connection to `ADDR` (`IP:PORT`) and writes `hostile` to it, returns `connected`, or fails with `cannot connect ADDR: ERROR` |
//! | `udp:ADDR` | sends one `hostile` datagram to `ADDR` from an unbound socket, returns `sent`, or fails with `cannot send to ADDR: ERROR` |
//! | `resolve:HOST` | looks `HOST` up (port 80), returns the addresses, or fails with `cannot resolve HOST: ERROR` |
//! | `env` | returns its environment as `NAME=VALUE` lines (empty when it has none) and, after a line `args:`, its arguments |
//!
//! Anything else fails the task with `unknown hostile payload`.
//!
//! The scheduler half misbehaves according to its `init` arguments:
//!
//! | argument | does |
//! |---|---|
//! | `loop` | spins forever inside `init` (fuel / deadline on the master) |
//! | `misuse` | calls the executor-only `executor-driver.progress` (the host must refuse) |
//! | `panic` | panics inside `init` |
//! | `fail` | returns `Err("hostile scheduler refused to start on purpose")` |
//! | `offers-loop` | spins forever inside its first `resource-offers` |
//! | `offers-membomb` | allocates memory without bound inside its first `resource-offers` |
//! | `foreign-offer` | launches a task with an offer id it was never given (an invented one) |
//! | `overcommit` | launches one task needing 1 CPU and 1 GiB more than the offer holds |
//! | `greedy:CPU_MILLIS:MEM_MIB:TASK_MS` | fills every offer with sleeping tasks of that size, forever |
//! | `running-loop` | launches a native `sleep 600` task, then spins once it is `running` (the master must fail the scheduler and kill the task) |
//! | `log-flood:N` | writes `N` lines of 100 bytes with `driver::log` inside `init`, then behaves as without it |
//! | `alias-launch:N` | launches `N` Wasm tasks whose payloads all name one 4 MiB region of its memory (the host would copy `N` × 4 MiB); finishes with `hostile launch refused: ...` should the call return |
//! | `budget:FUEL:SECONDS:PAYLOAD` | launches one task running `PAYLOAD` (e.g. `loop`) with its own fuel budget and deadline (`-` leaves one unset), and finishes with `Ok("budget task STATE: MESSAGE")` once it ends (`Err("hostile launch refused: ...")` if refused) |
//! | `timers:N` | sets `N` timers (ids `0..N`, one hour each) inside `init`, sets timer 0 again, and finishes with `Ok("timers: S set, R refused, reset 0: ok; first refusal: ERROR")` (`reset 0: err: ERROR` if setting a pending id again failed) |
//!
//! `foreign-offer` and `overcommit` end the framework with `driver::finish(Err(..))` carrying
//! the master's reason, `hostile launch refused: REASON`, whether the launch call itself fails
//! or its tasks come back `error`; should the master accept such a launch, they finish with
//! `hostile launch was accepted: ...` instead, which a test can tell apart.
//!
//! `greedy`'s tasks sleep between `TASK_MS / 2` and `3 * TASK_MS / 2` milliseconds (spread by task
//! number, `TASK_MS` on average), so tasks launched together do not all end together. It keeps
//! one executor id per concurrently running task slot on each agent (reused once its task
//! ends), so it never has more executor instances than tasks fit at once, and declines an offer
//! too small for one task for 1 s. It never finishes: it exists to keep a cluster
//! saturated with short tasks so that the allocator's sharing shows.
//!
//! Otherwise it behaves like [`wasmos_guest::DeclineAll`]: declines every offer and suppresses.

use std::collections::{BTreeMap, HashMap};
use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use wasmos_guest::{
    DeclineAll, Executor, Offer, Resources, Scheduler, Task, TaskInfo, TaskState, TaskStatus,
    driver, executor_driver,
};

/// Per-instance state: survives between tasks with the same executor id.
struct Hostile {
    count: u64,
}

/// Spins forever. `black_box` makes every iteration observable, so the loop cannot be removed
/// or proven infinite-and-therefore-unreachable.
fn spin() -> ! {
    let mut n = 0u64;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Allocates 1 MiB chunks forever, writing one byte per 4 KiB page so each is really backed, and
/// keeps them all. Ends when the host's memory cap makes allocation fail (an abort, a trap).
fn membomb() -> ! {
    const CHUNK: usize = 1 << 20;
    let mut kept: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut chunk = vec![0u8; CHUNK];
        for page in chunk.iter_mut().step_by(4096) {
            *page = 1;
        }
        kept.push(black_box(chunk));
        black_box(&kept);
    }
}

/// Unbounded recursion whose frames live on the wasm value stack, not in linear memory: no
/// local has its address taken, so the engine's stack limit (`Trap::StackOverflow`) is hit, not
/// the shadow stack. The result feeds a non-associative mix, so LLVM cannot turn it into a loop;
/// `limit` comes from `black_box` so the depth is unknown at compile time.
#[inline(never)]
fn recurse(depth: u64, limit: u64) -> u64 {
    if depth >= limit {
        return depth;
    }
    let below = recurse(depth + 1, limit);
    below.rotate_left(7) ^ depth.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Writes 100 MiB to stdout in 64 KiB chunks; a capped or closed stdout stops it early.
fn spew() -> Vec<u8> {
    const TOTAL: usize = 100 << 20;
    const CHUNK: usize = 64 << 10;
    let line = b"spew spew spew spew spew spew spew spew spew spew spew spew spew\n";
    let chunk: Vec<u8> = line.iter().copied().cycle().take(CHUNK).collect();
    let mut out = std::io::stdout().lock();
    let mut written = 0;
    while written < TOTAL {
        if out.write_all(&chunk).is_err() {
            break;
        }
        written += CHUNK;
    }
    let _ = out.flush();
    b"spewed".to_vec()
}

impl Executor for Hostile {
    fn new() -> Self {
        Hostile { count: 0 }
    }

    fn launch(&mut self, task: Task) -> Result<Vec<u8>, String> {
        let payload = String::from_utf8(task.payload)
            .map_err(|e| format!("hostile payload is not UTF-8: {e}"))?;
        let (verb, arg) = payload.split_once(':').unwrap_or((payload.as_str(), ""));
        match verb {
            "echo" => Ok(arg.as_bytes().to_vec()),
            "loop" => spin(),
            "membomb" => membomb(),
            "recurse" => {
                let depth = recurse(0, black_box(u64::MAX));
                Ok(depth.to_string().into_bytes())
            }
            "panic" => panic!("hostile guest panicked on purpose"),
            "spew" => Ok(spew()),
            "read" | "symlink-read" => {
                std::fs::read(arg).map_err(|e| format!("cannot read {arg}: {e}"))
            }
            "write" => {
                let (path, text) = arg.split_once(':').unwrap_or((arg, ""));
                std::fs::write(path, text)
                    .map(|()| b"written".to_vec())
                    .map_err(|e| format!("cannot write {path}: {e}"))
            }
            "count" => {
                self.count += 1;
                Ok(self.count.to_string().into_bytes())
            }
            "sleep" => {
                let ms: u64 = arg
                    .parse()
                    .map_err(|e| format!("bad sleep:MS {arg:?}: {e}"))?;
                std::thread::sleep(Duration::from_millis(ms));
                Ok(b"slept".to_vec())
            }
            "progress" => {
                executor_driver::progress(arg);
                Ok(b"progress sent".to_vec())
            }
            "driver" => {
                // Scheduler-only import; a correct host traps or refuses before this returns.
                driver::suppress();
                Ok(b"driver call returned".to_vec())
            }
            "stderr" => {
                eprintln!("{arg}");
                Ok(b"stderr written".to_vec())
            }
            "log-flood" => {
                let n: u64 = arg
                    .parse()
                    .map_err(|e| format!("bad log-flood:N {arg:?}: {e}"))?;
                let line = "f".repeat(100);
                for _ in 0..n {
                    executor_driver::info(&line);
                }
                Ok(format!("logged {n}").into_bytes())
            }
            "message-flood" => {
                let (n, bytes) = arg.split_once(':').unwrap_or((arg, "0"));
                let n: u64 = n
                    .parse()
                    .map_err(|e| format!("bad message-flood:N:BYTES {arg:?}: {e}"))?;
                let bytes: usize = bytes
                    .parse()
                    .map_err(|e| format!("bad message-flood:N:BYTES {arg:?}: {e}"))?;
                let data = vec![b'm'; bytes];
                for _ in 0..n {
                    executor_driver::send_framework_message(&data);
                }
                Ok(format!("sent {n}").into_bytes())
            }
            "connect" => {
                let mut stream = std::net::TcpStream::connect(arg)
                    .map_err(|e| format!("cannot connect {arg}: {e}"))?;
                stream
                    .write_all(b"hostile")
                    .map_err(|e| format!("cannot connect {arg}: write: {e}"))?;
                Ok(b"connected".to_vec())
            }
            "udp" => {
                let socket = std::net::UdpSocket::bind("0.0.0.0:0")
                    .map_err(|e| format!("cannot send to {arg}: bind: {e}"))?;
                socket
                    .send_to(b"hostile", arg)
                    .map(|_| b"sent".to_vec())
                    .map_err(|e| format!("cannot send to {arg}: {e}"))
            }
            "resolve" => {
                use std::net::ToSocketAddrs;
                let addrs: Vec<String> = (arg, 80)
                    .to_socket_addrs()
                    .map_err(|e| format!("cannot resolve {arg}: {e}"))?
                    .map(|a| a.to_string())
                    .collect();
                Ok(addrs.join("\n").into_bytes())
            }
            "env" => {
                let mut out = String::new();
                for (name, value) in std::env::vars_os() {
                    out.push_str(&format!("{}={}\n", name.to_string_lossy(), value.to_string_lossy()));
                }
                out.push_str("args:\n");
                for a in std::env::args_os() {
                    out.push_str(&format!("{}\n", a.to_string_lossy()));
                }
                Ok(out.into_bytes())
            }
            _ => Err(format!("unknown hostile payload {payload:?}")),
        }
    }
}

/// How the scheduler half misbehaves after `init`.
enum Mode {
    /// Declines everything (the well-behaved default).
    Decline(DeclineAll),
    /// Spins inside `resource-offers`.
    OffersLoop,
    /// Allocates without bound inside `resource-offers`.
    OffersMembomb,
    /// Launches onto an offer id it was never given, then waits for the refusal.
    ForeignOffer { launched: bool },
    /// Launches more than the offer holds, then waits for the refusal.
    Overcommit { launched: bool },
    /// Fills every offer with short tasks, forever.
    Greedy(Greedy),
    /// Launches a long native task, then spins once it runs.
    RunningLoop { launched: bool },
    /// Launches this many tasks whose payloads alias one region.
    AliasLaunch(usize),
    /// Launches one task with its own budget; reports how it ended.
    Budget {
        fuel: Option<u64>,
        timeout_seconds: Option<f64>,
        payload: String,
        launched: bool,
    },
}

/// `greedy:CPU_MILLIS:MEM_MIB:TASK_MS`.
struct Greedy {
    per_task: Resources,
    task_ms: u64,
    next_task: u64,
    /// Per agent: executor ids whose last task ended, ready for the next one.
    free_slots: BTreeMap<String, Vec<String>>,
    /// Per agent: how many executor ids were ever made there.
    slots_made: BTreeMap<String, u64>,
    /// Running tasks: their agent and executor id.
    running: HashMap<String, (String, String)>,
}

impl Greedy {
    fn parse(spec: &str) -> Result<Self, String> {
        let usage = "usage: greedy:CPU_MILLIS:MEM_MIB:TASK_MS (e.g. greedy:250:64:200)";
        let parts: Vec<&str> = spec.split(':').collect();
        let [cpu, mem, ms] = parts[..] else {
            return Err(format!("bad greedy spec {spec:?}; {usage}"));
        };
        let number = |what: &str, text: &str| -> Result<u64, String> {
            text.parse::<u64>()
                .map_err(|e| format!("bad greedy {what} {text:?}: {e}; {usage}"))
        };
        let per_task = Resources::cpu_mem(number("CPU_MILLIS", cpu)?, number("MEM_MIB", mem)?);
        let ms = number("TASK_MS", ms)?;
        if per_task.millicpus == 0 && per_task.mem_mb == 0 {
            return Err(format!(
                "greedy tasks must need some CPU or memory; {usage}"
            ));
        }
        Ok(Greedy {
            per_task,
            task_ms: ms,
            next_task: 0,
            free_slots: BTreeMap::new(),
            slots_made: BTreeMap::new(),
            running: HashMap::new(),
        })
    }

    fn slot(&mut self, agent: &str) -> String {
        if let Some(slot) = self.free_slots.get_mut(agent).and_then(Vec::pop) {
            return slot;
        }
        let made = self.slots_made.entry(agent.to_string()).or_insert(0);
        *made += 1;
        format!("greedy-slot-{made}")
    }

    /// Task `n` sleeps `TASK_MS / 2 + (n * K mod (TASK_MS + 1))` ms: spread over
    /// `[TASK_MS / 2, 3 * TASK_MS / 2]` by a multiplicative hash of `n`.
    fn payload(&self, n: u64) -> String {
        let spread = n.wrapping_mul(2_654_435_761) % (self.task_ms + 1);
        format!("sleep:{}", self.task_ms / 2 + spread)
    }

    fn release(&mut self, task_id: &str) {
        if let Some((agent, slot)) = self.running.remove(task_id) {
            self.free_slots.entry(agent).or_default().push(slot);
        }
    }

    fn resource_offers(&mut self, offers: Vec<Offer>) {
        for offer in offers {
            let mut left = offer.resources;
            let mut tasks = Vec::new();
            while left.try_take(&self.per_task) {
                self.next_task += 1;
                let id = format!("greedy-{}", self.next_task);
                let slot = self.slot(&offer.agent_id);
                self.running
                    .insert(id.clone(), (offer.agent_id.clone(), slot.clone()));
                tasks.push(TaskInfo::wasm(
                    id,
                    &offer.agent_id,
                    self.per_task,
                    slot,
                    self.payload(self.next_task),
                ));
            }
            if tasks.is_empty() {
                driver::decline_for(&[offer.id], 1.0);
            } else if let Err(e) = driver::launch(&[offer.id], &tasks) {
                driver::warn(&format!("greedy launch refused: {e}"));
                for t in &tasks {
                    self.release(&t.task_id);
                }
            }
        }
    }

    fn status_update(&mut self, status: &TaskStatus) {
        if status.state.is_terminal() {
            self.release(&status.task_id);
        }
    }
}

/// Launches `task` on `offer_ids`; finishes the framework if the launch call is refused.
/// Returns whether the launch call was accepted (the master may still refuse it later).
fn launch_or_finish(offer_ids: &[String], task: TaskInfo) -> bool {
    launch_or_finish_many(offer_ids, std::slice::from_ref(&task))
}

/// `alias-launch:N`: one `launch` of `n` tasks whose payloads are the same 4 MiB of memory,
/// as a guest writing the call's arguments by hand could name it. The guest itself holds 4 MiB
/// and `n` small records; a host that copied every payload would hold `n` × 4 MiB.
fn alias_launch(offer_id: &str, agent_id: &str, n: usize) {
    let payload = std::mem::ManuallyDrop::new(vec![7u8; 4 << 20]);
    let tasks: Vec<TaskInfo> = (0..n)
        .map(|i| {
            // SAFETY: every alias shares `payload`'s buffer, which is never freed (it and the
            // tasks are leaked below), and nothing writes through them: the host only reads.
            let alias = unsafe {
                Vec::from_raw_parts(
                    payload.as_ptr() as *mut u8,
                    payload.len(),
                    payload.capacity(),
                )
            };
            TaskInfo::wasm(
                format!("alias-{i}"),
                agent_id,
                Resources::cpu_mem(10, 16),
                "hostile",
                alias,
            )
        })
        .collect();
    let tasks = std::mem::ManuallyDrop::new(tasks);
    let _ = launch_or_finish_many(&[offer_id.to_string()], &tasks);
}

fn launch_or_finish_many(offer_ids: &[String], tasks: &[TaskInfo]) -> bool {
    match driver::launch(offer_ids, tasks) {
        Ok(()) => true,
        Err(e) => {
            driver::finish(Err(format!("hostile launch refused: {e}")));
            false
        }
    }
}

/// `timers:N`: sets `N` one-hour timers, then timer 0 again, and finishes with what the
/// driver said.
fn set_timers(n: u64) {
    let (mut set, mut refused, mut first) = (0u64, 0u64, None);
    for id in 0..n {
        match driver::set_timer(id, 3_600_000) {
            Ok(()) => set += 1,
            Err(e) => {
                refused += 1;
                first.get_or_insert(e);
            }
        }
    }
    let reset = match driver::set_timer(0, 3_600_000) {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("err: {e}"),
    };
    driver::finish(Ok(format!(
        "timers: {set} set, {refused} refused, reset 0: {reset}; first refusal: {}",
        first.as_deref().unwrap_or("none")
    )));
}

/// The scheduler half: hostile in `init` or in its callbacks when asked to be, otherwise
/// [`DeclineAll`].
struct HostileScheduler(Mode);

impl Scheduler for HostileScheduler {
    fn init(args: Vec<String>) -> Result<Self, String> {
        let mut mode = None;
        for arg in &args {
            let (verb, rest) = arg.split_once(':').unwrap_or((arg.as_str(), ""));
            match verb {
                "loop" => spin(),
                "misuse" => executor_driver::progress("a scheduler calling the executor driver"),
                "panic" => panic!("hostile scheduler panicked on purpose"),
                "fail" => return Err("hostile scheduler refused to start on purpose".into()),
                "offers-loop" => mode = Some(Mode::OffersLoop),
                "offers-membomb" => mode = Some(Mode::OffersMembomb),
                "foreign-offer" => mode = Some(Mode::ForeignOffer { launched: false }),
                "overcommit" => mode = Some(Mode::Overcommit { launched: false }),
                "greedy" => mode = Some(Mode::Greedy(Greedy::parse(rest)?)),
                "running-loop" => mode = Some(Mode::RunningLoop { launched: false }),
                "budget" => {
                    let usage = "usage: budget:FUEL:SECONDS:PAYLOAD (- for unset)";
                    let mut parts = rest.splitn(3, ':');
                    let (Some(fuel), Some(secs), Some(payload)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(format!("bad budget spec {rest:?}; {usage}"));
                    };
                    let fuel = match fuel {
                        "-" => None,
                        n => Some(
                            n.parse::<u64>()
                                .map_err(|e| format!("bad fuel {n:?}: {e}; {usage}"))?,
                        ),
                    };
                    let timeout_seconds = match secs {
                        "-" => None,
                        n => Some(
                            n.parse::<f64>()
                                .map_err(|e| format!("bad seconds {n:?}: {e}; {usage}"))?,
                        ),
                    };
                    mode = Some(Mode::Budget {
                        fuel,
                        timeout_seconds,
                        payload: payload.to_string(),
                        launched: false,
                    });
                }
                "alias-launch" => {
                    let n: usize = rest
                        .parse()
                        .map_err(|e| format!("bad alias-launch:N {rest:?}: {e}"))?;
                    mode = Some(Mode::AliasLaunch(n));
                }
                "log-flood" => {
                    let n: u64 = rest
                        .parse()
                        .map_err(|e| format!("bad log-flood:N {rest:?}: {e}"))?;
                    let line = "s".repeat(100);
                    for _ in 0..n {
                        driver::info(&line);
                    }
                }
                "timers" => {
                    let n: u64 = rest
                        .parse()
                        .map_err(|e| format!("bad timers:N {rest:?}: {e}"))?;
                    set_timers(n);
                }
                _ => {}
            }
        }
        match mode {
            Some(m) => Ok(HostileScheduler(m)),
            None => Ok(HostileScheduler(Mode::Decline(DeclineAll::init(args)?))),
        }
    }

    fn resource_offers(&mut self, offers: Vec<Offer>) {
        match &mut self.0 {
            Mode::Decline(d) => d.resource_offers(offers),
            Mode::OffersLoop => spin(),
            Mode::OffersMembomb => membomb(),
            Mode::ForeignOffer { launched } => {
                let Some(offer) = offers.first().filter(|_| !*launched) else {
                    return;
                };
                // An id in the master's format that no offer ever had.
                let invented = format!("{}-invented-by-hostile", offer.id);
                let task = TaskInfo::wasm(
                    "foreign-1",
                    &offer.agent_id,
                    Resources::cpu_mem(10, 1),
                    "hostile",
                    "echo:should never run",
                );
                *launched = launch_or_finish(&[invented], task);
            }
            Mode::Overcommit { launched } => {
                let Some(offer) = offers.first().filter(|_| !*launched) else {
                    return;
                };
                let too_much = Resources::new(
                    offer.resources.millicpus + 1000,
                    offer.resources.mem_mb + 1024,
                    offer.resources.disk_mb,
                );
                let task = TaskInfo::wasm(
                    "overcommit-1",
                    &offer.agent_id,
                    too_much,
                    "hostile",
                    "echo:should never run",
                );
                *launched = launch_or_finish(std::slice::from_ref(&offer.id), task);
            }
            Mode::Greedy(g) => g.resource_offers(offers),
            Mode::RunningLoop { launched } => {
                let Some(offer) = offers.first().filter(|_| !*launched) else {
                    return;
                };
                let task = TaskInfo::command(
                    "running-loop-1",
                    &offer.agent_id,
                    Resources::cpu_mem(100, 32),
                    vec!["sleep".into(), "600".into()],
                    Vec::new(),
                );
                *launched = launch_or_finish(std::slice::from_ref(&offer.id), task);
            }
            Mode::AliasLaunch(n) => {
                let Some(offer) = offers.first() else {
                    return;
                };
                alias_launch(&offer.id, &offer.agent_id, *n);
            }
            Mode::Budget {
                fuel,
                timeout_seconds,
                payload,
                launched,
            } => {
                let Some(offer) = offers.first().filter(|_| !*launched) else {
                    return;
                };
                let mut task = TaskInfo::wasm(
                    "budget-1",
                    &offer.agent_id,
                    Resources::cpu_mem(100, 32),
                    "hostile",
                    payload.as_bytes(),
                );
                if let Some(f) = fuel {
                    task = task.with_fuel(*f);
                }
                if let Some(t) = timeout_seconds {
                    task = task.with_timeout_seconds(*t);
                }
                *launched = launch_or_finish(std::slice::from_ref(&offer.id), task);
            }
        }
    }

    fn status_update(&mut self, status: TaskStatus) {
        match &mut self.0 {
            Mode::Decline(d) => d.status_update(status),
            Mode::ForeignOffer { launched: true } | Mode::Overcommit { launched: true } => {
                match status.state {
                    TaskState::Error => {
                        driver::finish(Err(format!("hostile launch refused: {}", status.message)))
                    }
                    state if state.is_terminal() || state == TaskState::Running => {
                        driver::finish(Err(format!(
                            "hostile launch was accepted: task {} became {state}",
                            status.task_id
                        )))
                    }
                    _ => {}
                }
            }
            Mode::Greedy(g) => g.status_update(&status),
            Mode::Budget { .. } if status.state == TaskState::Error => {
                driver::finish(Err(format!("hostile launch refused: {}", status.message)))
            }
            Mode::Budget { .. } if status.state.is_terminal() => driver::finish(Ok(format!(
                "budget task {}: {}",
                status.state, status.message
            ))),
            Mode::RunningLoop { .. } if status.state == TaskState::Running => spin(),
            Mode::RunningLoop { .. } if status.state.is_terminal() => driver::finish(Err(format!(
                "running-loop task {} ended before the scheduler spun: {} {}",
                status.task_id, status.state, status.message
            ))),
            _ => {}
        }
    }
}

wasmos_guest::export!(scheduler = HostileScheduler, executor = Hostile);
