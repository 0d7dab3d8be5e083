//! Where components are compiled: in this process ([`Compiler::InProcess`]) or in a child
//! process under a memory and a time budget ([`Compiler::Subprocess`]).
//!
//! Compiling is the one step whose cost a component's author controls and the host cannot
//! bound from outside: Cranelift's memory and time grow with what is inside, used or not (a
//! valid 2.9 MB component with a large unused module took 1.2 GB to compile, and the allocator
//! kept most of it after). The content bounds (`wasmos_api::component_contents`) refuse the
//! worst shapes before compiling; the child process bounds the rest, and the parent reads back at most `max_artifact_bytes` of artifact. The child is the same
//! program re-executed with [`COMPILE_SUBCOMMAND`]: it reads the component on stdin, sets
//! `RLIMIT_AS` (its memory budget) and `RLIMIT_CPU` on itself, compiles with an engine of the
//! parent's configuration (`Engine::precompile_component`) and writes the artifact to stdout.
//! The parent kills it when the wall-clock budget passes, and its memory goes back to the system
//! when it exits; the parent only ever holds the artifact, which it loads with
//! `Component::deserialize` (wasmtime refuses an artifact of another engine configuration).
//!
//! The library defaults to in-process compilation, because a library's tests and benches may
//! have no `wasmos` binary to run; the `wasmos` command (master, agent, dev) compiles in a child.
//!
//! Cost: one process spawn per component compiled (a few milliseconds), paid once per component
//! and process; cached components (in memory or on disk) are not compiled again.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::config::{LimitMode, RuntimeConfig};
use crate::error::{CompileBudget, ComponentError};

/// The hidden first argument that makes a program built on this crate a compiler child (see
/// [`child_main`]).
pub const COMPILE_SUBCOMMAND: &str = "__compile";

/// Exit status of a child whose compiler refused the component (message on stderr).
const EXIT_INVALID: i32 = 2;
/// Exit status of a child that ran out of its memory budget and noticed (message on stderr).
const EXIT_OUT_OF_MEMORY: i32 = 3;
/// Exit status of a child given arguments or input it cannot use.
const EXIT_USAGE: i32 = 64;
/// Most bytes of the child's stderr kept for an error message.
const MAX_STDERR_BYTES: usize = 4 << 10;

/// How components are compiled. By default [`Compiler::InProcess`].
#[derive(Clone, Debug, Default)]
pub enum Compiler {
    /// In this process, with no budget but the content bounds. For tests, benches, and
    /// programs that have no compiler child to run.
    #[default]
    InProcess,
    /// In a child process under a memory and a time budget.
    Subprocess(SubprocessCompiler),
}

/// A child process that compiles one component: `program args... [settings]`, the component
/// on stdin, the artifact on stdout.
#[derive(Clone, Debug)]
pub struct SubprocessCompiler {
    /// The program to run; it must call [`child_main`] when its first argument is
    /// [`COMPILE_SUBCOMMAND`] (the `wasmos` command does).
    pub program: PathBuf,
    /// Arguments before the engine settings the runtime appends; by default
    /// `[COMPILE_SUBCOMMAND]`.
    pub args: Vec<OsString>,
    /// The child's address-space limit (`RLIMIT_AS`), in bytes: past it, allocations fail and
    /// the component is refused with [`CompileBudget::Memory`]. It counts the program's own
    /// mappings too (about 100 MiB for `wasmos`). By default 2 GiB
    /// ([`SubprocessCompiler::DEFAULT_MEMORY_LIMIT`]).
    pub memory_limit: u64,
    /// Wall-clock budget of one compilation; past it the child is killed and the component
    /// refused with [`CompileBudget::Time`]. By default 60 s
    /// ([`SubprocessCompiler::DEFAULT_TIMEOUT`]).
    pub timeout: Duration,
    /// Most bytes of compiled artifact the parent reads back; a larger one is refused with
    /// [`ComponentError::Compiler`] and the rest of it is discarded unread, so the parent never
    /// holds more. By default 256 MiB ([`SubprocessCompiler::DEFAULT_MAX_ARTIFACT_BYTES`]),
    /// far above what a component within the content bounds compiles to.
    pub max_artifact_bytes: u64,
}

impl SubprocessCompiler {
    /// The default memory budget: 2 GiB of address space.
    pub const DEFAULT_MEMORY_LIMIT: u64 = 2 << 30;
    /// The default time budget: 60 s.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
    /// The default cap on a compiled artifact: 256 MiB.
    pub const DEFAULT_MAX_ARTIFACT_BYTES: u64 = 256 << 20;

    /// A compiler child running `program` [`COMPILE_SUBCOMMAND`], with the default budgets.
    pub fn new(program: PathBuf) -> Self {
        SubprocessCompiler {
            program,
            args: vec![COMPILE_SUBCOMMAND.into()],
            memory_limit: Self::DEFAULT_MEMORY_LIMIT,
            timeout: Self::DEFAULT_TIMEOUT,
            max_artifact_bytes: Self::DEFAULT_MAX_ARTIFACT_BYTES,
        }
    }

    /// This program re-executed as the compiler child (`std::env::current_exe()`), with the
    /// default budgets.
    pub fn current_exe() -> std::io::Result<Self> {
        Ok(Self::new(std::env::current_exe()?))
    }
}

/// The parts of [`RuntimeConfig`] that change the compiled code, as the child's arguments. The
/// child builds its engine from them; pooling is left out (it changes no code, and its
/// reservations would use up the child's address-space budget).
fn engine_args(config: &RuntimeConfig) -> [String; 2] {
    [
        config.limit_mode.name().to_string(),
        config.max_wasm_stack.to_string(),
    ]
}

/// The engine configuration of `config`, shared by the runtime and the compiler child so that
/// the child's artifacts load in the parent.
pub(crate) fn engine_config(limit_mode: LimitMode, max_wasm_stack: usize) -> wasmtime::Config {
    let mut wt = wasmtime::Config::new();
    wt.wasm_component_model(true);
    wt.max_wasm_stack(max_wasm_stack);
    match limit_mode {
        LimitMode::Fuel => {
            wt.consume_fuel(true);
        }
        LimitMode::Epoch => {
            wt.epoch_interruption(true);
        }
        LimitMode::Unmetered => {}
    }
    wt
}

/// Compiles `bytes` in a child process under `compiler`'s budgets and returns the artifact
/// (`Engine::precompile_component`'s output for an engine of `config`). Blocking.
pub(crate) fn compile_in_child(
    compiler: &SubprocessCompiler,
    config: &RuntimeConfig,
    bytes: &[u8],
) -> Result<Vec<u8>, ComponentError> {
    let spawn_err = |e: std::io::Error| ComponentError::Compiler {
        message: format!(
            "cannot run the compiler process {}: {e}",
            compiler.program.display()
        ),
    };
    let mut child = Command::new(&compiler.program)
        .args(&compiler.args)
        .args(engine_args(config))
        .arg(compiler.memory_limit.to_string())
        .arg(cpu_budget_secs(compiler.timeout).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let started = Instant::now();
    // Each pipe gets its own thread, so that a child blocked writing one never waits for us to
    // finish writing the other.
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let input = bytes.to_vec();
    let max_artifact = compiler.max_artifact_bytes;
    let writer = std::thread::spawn(move || {
        if let Some(mut s) = stdin.take() {
            // A child that died early closes the pipe; its exit status says why.
            let _ = s.write_all(&input);
        }
    });
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        if let Some(s) = stdout.as_mut() {
            // One byte past the cap tells a too-large artifact; the rest is drained unread.
            let _ = s.take(max_artifact.saturating_add(1)).read_to_end(&mut out);
            let _ = std::io::copy(s, &mut std::io::sink());
        }
        out
    });
    let err_reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(s) = stderr.as_mut() {
            let _ = s.take(MAX_STDERR_BYTES as u64).read_to_end(&mut kept);
            // Drain the rest so the child never blocks on a full pipe.
            let _ = std::io::copy(s, &mut std::io::sink());
        }
        String::from_utf8_lossy(&kept).trim().to_string()
    });
    let status = wait_with_timeout(&mut child, started, compiler.timeout);
    let _ = writer.join();
    let artifact = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    let status = match status {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(ComponentError::CompileBudget(CompileBudget::Time {
                limit: compiler.timeout,
            }));
        }
        Err(e) => {
            return Err(ComponentError::Compiler {
                message: format!("cannot wait for the compiler process: {e}"),
            });
        }
    };
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        artifact_bytes = artifact.len(),
        ?status,
        "compiler process ended"
    );
    if artifact.len() as u64 > compiler.max_artifact_bytes {
        return Err(ComponentError::Compiler {
            message: format!(
                "the compiled component is larger than the {} bytes the host reads back; \
                 remove unused code from the component",
                compiler.max_artifact_bytes
            ),
        });
    }
    classify(status, artifact, stderr, compiler)
}

/// The child's CPU-time limit: a backstop behind the wall-clock kill, so a child whose parent
/// died still stops. Its threads compile in parallel, so it may use the timeout on every core.
fn cpu_budget_secs(timeout: Duration) -> u64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    timeout.as_secs().saturating_add(1).saturating_mul(cores)
}

/// Waits for `child` until `timeout` after `started`; kills it and returns `None` past that.
fn wait_with_timeout(
    child: &mut std::process::Child,
    started: Instant,
    timeout: Duration,
) -> std::io::Result<Option<ExitStatus>> {
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(nap.min(timeout - elapsed));
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

/// Turns the child's exit into the artifact or the error that says why there is none.
fn classify(
    status: ExitStatus,
    artifact: Vec<u8>,
    stderr: String,
    compiler: &SubprocessCompiler,
) -> Result<Vec<u8>, ComponentError> {
    let memory = || {
        ComponentError::CompileBudget(CompileBudget::Memory {
            bytes: compiler.memory_limit,
        })
    };
    if status.success() {
        return Ok(artifact);
    }
    match status.code() {
        Some(EXIT_INVALID) => Err(ComponentError::Invalid(stderr)),
        Some(EXIT_OUT_OF_MEMORY) => Err(memory()),
        Some(code) => Err(ComponentError::Compiler {
            message: format!("the compiler process exited with status {code}: {stderr}"),
        }),
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                match status.signal() {
                    // Rust aborts when an allocation fails; the kernel kills on RLIMIT_CPU.
                    Some(libc::SIGABRT) | Some(libc::SIGSEGV) | Some(libc::SIGBUS)
                        if stderr.is_empty() || stderr.contains("memory allocation") =>
                    {
                        Err(memory())
                    }
                    Some(libc::SIGXCPU) | Some(libc::SIGKILL) => {
                        Err(ComponentError::CompileBudget(CompileBudget::Time {
                            limit: compiler.timeout,
                        }))
                    }
                    sig => Err(ComponentError::Compiler {
                        message: format!(
                            "the compiler process was killed by signal {sig:?}: {stderr}"
                        ),
                    }),
                }
            }
            #[cfg(not(unix))]
            Err(ComponentError::Compiler {
                message: format!("the compiler process failed: {stderr}"),
            })
        }
    }
}

/// The compiler child: call it from `main` when the first argument is [`COMPILE_SUBCOMMAND`],
/// with the arguments after it, before starting any thread; exit with the status it returns.
///
/// Arguments (written by the runtime, not a user): limit mode, max Wasm stack, memory limit
/// in bytes, CPU-time limit in seconds. It limits itself (`RLIMIT_AS`, `RLIMIT_CPU`), reads
/// the component from stdin, and writes the artifact to stdout (status 0), or a message to
/// stderr (status 2: the component does not compile; 3: out of memory).
pub fn child_main(args: &[OsString]) -> i32 {
    let args: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let [mode, stack, memory, cpu] = args[..] else {
        eprintln!("usage: {COMPILE_SUBCOMMAND} MODE MAX_WASM_STACK MEMORY_BYTES CPU_SECS");
        return EXIT_USAGE;
    };
    let (Ok(mode), Ok(stack), Ok(memory), Ok(cpu)) = (
        mode.parse::<LimitMode>(),
        stack.parse::<usize>(),
        memory.parse::<u64>(),
        cpu.parse::<u64>(),
    ) else {
        eprintln!("{COMPILE_SUBCOMMAND}: bad arguments {args:?}");
        return EXIT_USAGE;
    };
    if let Err(e) = limit_self(memory, cpu) {
        eprintln!("{COMPILE_SUBCOMMAND}: cannot set the compile budget: {e}");
        return EXIT_USAGE;
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin().lock().read_to_end(&mut bytes) {
        eprintln!("{COMPILE_SUBCOMMAND}: cannot read the component from stdin: {e}");
        return if e.kind() == std::io::ErrorKind::OutOfMemory {
            EXIT_OUT_OF_MEMORY
        } else {
            EXIT_USAGE
        };
    }
    let engine = match wasmtime::Engine::new(&engine_config(mode, stack)) {
        Ok(e) => e,
        Err(e) => return refuse(&e),
    };
    match engine.precompile_component(&bytes) {
        Ok(artifact) => match std::io::stdout().lock().write_all(&artifact) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("{COMPILE_SUBCOMMAND}: cannot write the artifact: {e}");
                EXIT_USAGE
            }
        },
        Err(e) => refuse(&e),
    }
}

/// Reports a compile error: out of memory (an allocation or mapping the budget refused) or the
/// component itself.
fn refuse(e: &wasmtime::Error) -> i32 {
    let message = crate::runtime::root_message(e);
    let oom = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::ENOMEM))
    }) || message.contains("Cannot allocate memory");
    eprintln!("{message}");
    if oom {
        EXIT_OUT_OF_MEMORY
    } else {
        EXIT_INVALID
    }
}

#[cfg(unix)]
fn limit_self(memory: u64, cpu_secs: u64) -> std::io::Result<()> {
    // The CPU limit's hard value is one second past the soft one: SIGXCPU first, then SIGKILL.
    for (resource, soft, hard) in [
        (libc::RLIMIT_AS, memory, memory),
        (libc::RLIMIT_CPU, cpu_secs, cpu_secs.saturating_add(1)),
    ] {
        let lim = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit reads the struct we pass and changes only this process's limits.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn limit_self(_memory: u64, _cpu_secs: u64) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in compiler that writes `$0` zero bytes (its first argument after the script)
    /// and reads its stdin.
    fn writing(bytes: u64, cap: u64) -> SubprocessCompiler {
        SubprocessCompiler {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "head -c \"$0\" /dev/zero; cat >/dev/null".into(),
                bytes.to_string().into(),
            ],
            memory_limit: SubprocessCompiler::DEFAULT_MEMORY_LIMIT,
            timeout: Duration::from_secs(60),
            max_artifact_bytes: cap,
        }
    }

    #[test]
    fn an_artifact_past_the_cap_is_refused_and_not_held() {
        let config = RuntimeConfig::default();
        let cap = 4096;
        let at = compile_in_child(&writing(cap, cap), &config, b"component").unwrap();
        assert_eq!(at.len() as u64, cap, "at the cap it is read whole");
        for past in [cap + 1, cap * 1000] {
            let err = compile_in_child(&writing(past, cap), &config, b"component").unwrap_err();
            let ComponentError::Compiler { message } = &err else {
                panic!("{past} bytes: {err:?}")
            };
            assert!(message.contains("larger than the 4096 bytes"), "{message}");
        }
    }
}
