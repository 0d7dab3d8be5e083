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
//!
//! Otherwise it behaves like [`wasmos_guest::DeclineAll`]: declines every offer and suppresses.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use wasmos_guest::{
    DeclineAll, Executor, Offer, Scheduler, Task, TaskStatus, driver, executor_driver,
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
            _ => Err(format!("unknown hostile payload {payload:?}")),
        }
    }
}

/// The scheduler half: hostile in `init` when asked to be, otherwise [`DeclineAll`].
struct HostileScheduler(DeclineAll);

impl Scheduler for HostileScheduler {
    fn init(args: Vec<String>) -> Result<Self, String> {
        for arg in &args {
            match arg.as_str() {
                "loop" => spin(),
                "misuse" => executor_driver::progress("a scheduler calling the executor driver"),
                "panic" => panic!("hostile scheduler panicked on purpose"),
                "fail" => return Err("hostile scheduler refused to start on purpose".into()),
                _ => {}
            }
        }
        Ok(HostileScheduler(DeclineAll::init(args)?))
    }

    fn resource_offers(&mut self, offers: Vec<Offer>) {
        self.0.resource_offers(offers);
    }

    fn status_update(&mut self, status: TaskStatus) {
        self.0.status_update(status);
    }
}

wasmos_guest::export!(scheduler = HostileScheduler, executor = Hostile);
