//! Starting a native task: a small supervisor process that outlives the agent, and the task
//! itself in its cgroup.
//!
//! The agent forks a **supervisor** (no exec: it runs a loop of raw system calls only, which is
//! what a child of a multi-threaded process may do). The supervisor forks the task's **init**
//! (into a new PID namespace when that is on, where it is PID 1), which joins the task's
//! cgroup, enters a new mount namespace and pivots into the task's root (see `isolation`), and
//! forks the **task**, which drops its privileges (capabilities, uid, no-new-privs, seccomp),
//! enters its sandbox and execs the command. The init forwards TERM, INT, HUP, QUIT, USR1 and
//! USR2 to the task (a PID 1 ignores signals it has no handler for, so the kill path's SIGTERM
//! would otherwise be lost), reaps orphans, and hands the task's wait status to the supervisor
//! through a pipe; when the init exits, whatever is left in its PID namespace is killed. The supervisor copies the task's
//! stdout and stderr into size-capped files in the sandbox, waits for the task, and writes how
//! it ended to an exit file beside the sandbox. Because the supervisor belongs to neither the
//! agent nor the task's cgroup, the task keeps its output pipes when the agent is killed, its
//! exit is recorded even while no agent runs, and the OOM killer never picks the supervisor.
//!
//! Everything the children need (C strings, open files) is prepared before `fork`; after it
//! they allocate nothing. The supervisor closes every descriptor it inherited but its own, so
//! it holds neither the agent's database lock nor its sockets.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cgroups::TaskCgroup;
use crate::isolation::{Piece, TaskIsolation};

/// PATH given to a task whose environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Why a native task could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The program is not on the task's `PATH`.
    #[error("command {program:?} not found on PATH {path:?}")]
    NotFound {
        /// The program asked for (`argv[0]`).
        program: String,
        /// The `PATH` searched.
        path: String,
    },
    /// An argument or environment entry cannot be passed to `execve`.
    #[error("argument or environment entry contains a NUL byte")]
    Nul,
    /// A file the task needs (its output files, stdin, the file that puts it in its cgroup)
    /// could not
    /// be opened.
    #[error("cannot prepare {what} {path}: {source}")]
    Prepare {
        /// What the file is for (`"stdout file"`, `"stdin"`, `"cgroup membership file"`).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
    /// The supervisor process could not be forked.
    #[error("cannot fork the task supervisor: {0}")]
    Fork(io::Error),
    /// The task process could not be moved into its cgroup.
    #[error("the command could not join its cgroup: {0}")]
    JoinCgroup(io::Error),
    /// The task's file size limit could not be set.
    #[error("the command's file size limit (RLIMIT_FSIZE) could not be set: {0}")]
    FileSizeLimit(io::Error),
    /// The task process could not change into its sandbox directory.
    #[error("the command could not enter its sandbox: {0}")]
    Chdir(io::Error),
    /// A piece of the task's isolation could not be applied.
    #[error("cannot isolate the command ({piece}): {source}")]
    Isolate {
        /// The piece (`"mount"`, `"pid"`, `"user"`, ...).
        piece: &'static str,
        /// What the kernel said.
        source: io::Error,
    },
    /// The program exists on the host but not in the task's own root.
    #[error(
        "cannot execute {program:?}: it is not in the task's root, which holds /usr, /bin, \
         /sbin, /lib*, part of /etc and the sandbox (at /sandbox); put the program in one of them"
    )]
    NotInRoot {
        /// The program, as resolved on `PATH`.
        program: String,
    },
    /// `execve` of the program failed.
    #[error("cannot execute {program:?}: {source}")]
    Exec {
        /// The program, as resolved on `PATH`.
        program: String,
        /// What `execve` said.
        source: io::Error,
    },
}

/// What to start.
pub struct CommandSpec<'a> {
    /// The program and its arguments; `argv[0]` is looked up on the task's `PATH` (or
    /// [`DEFAULT_PATH`]) unless it contains a '/'.
    pub argv: &'a [String],
    /// The task's environment: it gets exactly these, plus `PATH` ([`DEFAULT_PATH`]) when
    /// they have none and `WASMOS_SANDBOX` (its sandbox directory, as the task sees it).
    pub env: &'a [(String, String)],
    /// The task's sandbox on the host; stdout and stderr are written here. The task works in
    /// it (at `/sandbox` when it has its own mount namespace).
    pub sandbox: &'a Path,
    /// Where the supervisor records the exit (outside the sandbox).
    pub exit_file: &'a Path,
    /// Cap on each of stdout and stderr, in bytes.
    pub max_output_bytes: u64,
    /// The cgroup the command runs in (created beforehand).
    pub cgroup: &'a TaskCgroup,
    /// The task's `RLIMIT_FSIZE` in bytes: its sandbox's disk quota, so that one file cannot
    /// pass it between two polls of the sandbox's usage (`disk_quota`).
    pub max_file_bytes: u64,
    /// Its isolation, prepared beforehand ([`TaskIsolation::none`] for none).
    pub isolation: &'a TaskIsolation,
}

/// How a task process ended, as its supervisor recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitRecord {
    /// It exited with this status code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitRecord {
    /// Parses the exit file's text (`exit N` or `signal N`).
    pub fn parse(text: &str) -> Option<Self> {
        let mut it = text.split_whitespace();
        let kind = it.next()?;
        let n: i32 = it.next()?.parse().ok()?;
        match kind {
            "exit" => Some(ExitRecord::Code(n)),
            "signal" => Some(ExitRecord::Signal(n)),
            _ => None,
        }
    }

    /// Reads an exit file; `None` when absent or unreadable.
    pub fn read(path: &Path) -> Option<Self> {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| Self::parse(&t))
    }
}

fn cstr(s: impl AsRef<OsStr>) -> Result<CString, LaunchError> {
    CString::new(s.as_ref().as_bytes()).map_err(|_| LaunchError::Nul)
}

/// Finds `program` on `path` the way execvp would (a name with '/' is taken as is).
fn resolve(program: &str, path: &str) -> Result<PathBuf, LaunchError> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(program);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            use std::os::unix::fs::PermissionsExt;
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(LaunchError::NotFound {
        program: program.to_string(),
        path: path.to_string(),
    })
}

fn open_file(path: &Path, what: &'static str, create: bool) -> Result<File, LaunchError> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true);
    if create {
        o.create(true).truncate(true);
    }
    o.open(path).map_err(|source| LaunchError::Prepare {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Forks the supervisor, which starts the task. Returns the supervisor's pid.
pub fn spawn(spec: &CommandSpec<'_>) -> Result<i32, LaunchError> {
    // The task's environment: exactly what it asked for, plus a PATH and its sandbox.
    let mut env: Vec<(String, String)> = spec.env.to_vec();
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    env.push((
        "WASMOS_SANDBOX".into(),
        spec.isolation
            .sandbox_path(spec.sandbox)
            .to_string_lossy()
            .into_owned(),
    ));
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let program_name = spec.argv.first().map(String::as_str).unwrap_or_default();
    let resolved = resolve(program_name, &path_var)?;
    let program = cstr(&resolved)?;
    let argv: Vec<CString> = spec.argv.iter().map(cstr).collect::<Result<_, _>>()?;
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}")))
        .collect::<Result<_, _>>()?;
    let mut argv_p: Vec<*const libc::c_char> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_p.push(std::ptr::null());
    let mut envp_p: Vec<*const libc::c_char> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_p.push(std::ptr::null());
    let cwd = cstr(spec.isolation.sandbox_path(spec.sandbox))?;
    let exit_tmp = cstr(spec.exit_file.with_extension("tmp"))?;
    let exit_final = cstr(spec.exit_file)?;
    let _ = std::fs::remove_file(spec.exit_file);

    let stdout = open_file(&spec.sandbox.join("stdout"), "stdout file", true)?;
    let stderr = open_file(&spec.sandbox.join("stderr"), "stderr file", true)?;
    let devnull = std::fs::File::open("/dev/null").map_err(|source| LaunchError::Prepare {
        what: "stdin",
        path: "/dev/null".into(),
        source,
    })?;
    let procs: Vec<File> = spec
        .cgroup
        .procs_files()
        .iter()
        .map(|p| open_file(p, "cgroup membership file", false))
        .collect::<Result<_, _>>()?;
    let procs_fds: Vec<RawFd> = procs.iter().map(|f| f.as_raw_fd()).collect();
    let marker = format!(
        "\n[wasmos: output truncated at {} bytes]\n",
        spec.max_output_bytes
    )
    .into_bytes();
    // The task reports on this pipe whether it got as far as exec: the write end is closed by
    // a successful exec (close-on-exec), or carries the failing stage and errno.
    let mut ready = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(LaunchError::Fork(io::Error::last_os_error()));
    }
    // SAFETY: both descriptors are fresh and owned here.
    let (ready_r, ready_w) = unsafe {
        (
            OwnedFd::from_raw_fd(ready[0]),
            OwnedFd::from_raw_fd(ready[1]),
        )
    };
    let mut keep: Vec<RawFd> = vec![
        stdout.as_raw_fd(),
        stderr.as_raw_fd(),
        devnull.as_raw_fd(),
        ready_w.as_raw_fd(),
    ];
    keep.extend(&procs_fds);
    keep.sort_unstable();

    let ctx = ChildCtx {
        program: program.as_ptr(),
        argv: argv_p.as_ptr(),
        envp: envp_p.as_ptr(),
        cwd: cwd.as_ptr(),
        exit_tmp: exit_tmp.as_ptr(),
        exit_final: exit_final.as_ptr(),
        stdout: stdout.as_raw_fd(),
        stderr: stderr.as_raw_fd(),
        devnull: devnull.as_raw_fd(),
        ready: ready_w.as_raw_fd(),
        procs: &procs_fds,
        keep: &keep,
        cap: spec.max_output_bytes,
        marker: &marker,
        fsize: libc::rlimit {
            rlim_cur: spec.max_file_bytes,
            rlim_max: spec.max_file_bytes,
        },
        iso: spec.isolation,
    };
    // SAFETY: after fork the child runs only `supervise`, which makes async-signal-safe system
    // calls on memory prepared above and never returns (it ends in `_exit`).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(LaunchError::Fork(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above; `ctx` points into memory that the fork copied.
        unsafe { supervise(&ctx) }
    }
    drop(ready_w);
    // Blocks for the time of a fork and an exec (well under a millisecond usually).
    let mut report = [0u8; 8];
    let mut got = 0;
    while got < report.len() {
        // SAFETY: reads into the unfilled part of `report`.
        let n = unsafe {
            libc::read(
                ready_r.as_raw_fd(),
                report[got..].as_mut_ptr().cast(),
                report.len() - got,
            )
        };
        if n == 0 {
            break;
        }
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        got += n as usize;
    }
    if got == report.len() {
        let stage = u32::from_le_bytes([report[0], report[1], report[2], report[3]]);
        let errno = i32::from_le_bytes([report[4], report[5], report[6], report[7]]);
        let source = io::Error::from_raw_os_error(errno);
        // The supervisor records the failure and exits; reap it in the background.
        tokio::spawn(wait_exit(pid));
        return Err(match stage {
            STAGE_CGROUP => LaunchError::JoinCgroup(source),
            STAGE_CHDIR => LaunchError::Chdir(source),
            STAGE_FSIZE => LaunchError::FileSizeLimit(source),
            s if s >= STAGE_PIECE => LaunchError::Isolate {
                piece: Piece::ALL
                    .get((s - STAGE_PIECE) as usize)
                    .map_or("fork", |p| p.name()),
                source,
            },
            _ if errno == libc::ENOENT && spec.isolation.mounts.is_some() => {
                LaunchError::NotInRoot {
                    program: resolved.display().to_string(),
                }
            }
            _ => LaunchError::Exec {
                program: resolved.display().to_string(),
                source,
            },
        });
    }
    Ok(pid)
}

const STAGE_CGROUP: u32 = 1;
const STAGE_CHDIR: u32 = 2;
const STAGE_EXEC: u32 = 3;
const STAGE_FSIZE: u32 = 4;
/// `STAGE_PIECE + i` is the failure of `Piece::ALL[i]`; past them, the init's fork.
const STAGE_PIECE: u32 = 16;
const STAGE_FORK: u32 = STAGE_PIECE + Piece::ALL.len() as u32;

fn piece_stage(piece: Piece) -> u32 {
    STAGE_PIECE + Piece::ALL.iter().position(|p| *p == piece).unwrap_or(0) as u32
}

/// Signals the init passes on to the task.
const FORWARDED: [libc::c_int; 6] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The task's pid, in the init process (0 elsewhere).
static TASK_PID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn forward_signal(sig: libc::c_int) {
    let pid = TASK_PID.load(std::sync::atomic::Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

unsafe fn set_errno(e: i32) {
    // SAFETY: writes this thread's errno.
    unsafe { *libc::__errno_location() = e };
}

/// Tells the agent which stage failed and why, then exits with `code`.
unsafe fn fail_start(c: &ChildCtx<'_>, stage: u32, code: i32) -> ! {
    unsafe {
        let errno = *libc::__errno_location();
        let mut msg = [0u8; 8];
        msg[..4].copy_from_slice(&stage.to_le_bytes());
        msg[4..].copy_from_slice(&errno.to_le_bytes());
        write_all(c.ready, &msg);
        libc::_exit(code)
    }
}

struct ChildCtx<'a> {
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    exit_tmp: *const libc::c_char,
    exit_final: *const libc::c_char,
    stdout: RawFd,
    stderr: RawFd,
    devnull: RawFd,
    ready: RawFd,
    procs: &'a [RawFd],
    keep: &'a [RawFd],
    cap: u64,
    marker: &'a [u8],
    fsize: libc::rlimit,
    iso: &'a TaskIsolation,
}

/// Closes every descriptor from 3 up except those in `keep` (sorted).
unsafe fn close_others(keep: &[RawFd]) {
    let mut from: u32 = 3;
    for &k in keep {
        let k = k as u32;
        if k > from {
            close_range(from, k - 1);
        }
        if k + 1 > from {
            from = k + 1;
        }
    }
    close_range(from, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    // SAFETY: closing descriptors is memory-safe; the caller made sure none of them is needed.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
    if r != 0 {
        let end = last.min(4096);
        let mut fd = first;
        while fd <= end {
            // SAFETY: as above.
            unsafe { libc::close(fd as i32) };
            fd += 1;
        }
    }
}

/// The supervisor: starts the task, copies its output, records its exit. Never returns.
unsafe fn supervise(c: &ChildCtx<'_>) -> ! {
    unsafe {
        libc::setsid();
        // Hold nothing of the agent's: not its terminal or log pipes, not its database lock,
        // not its sockets.
        libc::dup2(c.devnull, 0);
        libc::dup2(c.devnull, 1);
        libc::dup2(c.devnull, 2);
        close_others(c.keep);
        let mut out_pipe = [0; 2];
        let mut err_pipe = [0; 2];
        if libc::pipe2(out_pipe.as_mut_ptr(), libc::O_CLOEXEC) != 0
            || libc::pipe2(err_pipe.as_mut_ptr(), libc::O_CLOEXEC) != 0
        {
            record_exit(c, b"exit ", 126);
            libc::_exit(1);
        }
        // The init hands over the task's wait status here (4 bytes fit in any pipe, so its
        // write never blocks); the task loses its copy at exec.
        let mut status_pipe = [0; 2];
        if libc::pipe2(status_pipe.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) != 0 {
            record_exit(c, b"exit ", 126);
            libc::_exit(1);
        }
        if c.iso.pid && libc::unshare(libc::CLONE_NEWPID) != 0 {
            let e = *libc::__errno_location();
            record_exit(c, b"exit ", 126);
            set_errno(e);
            fail_start(c, piece_stage(Piece::Pid), 1);
        }
        // The first child in a new PID namespace is its PID 1.
        let task = libc::fork();
        if task < 0 {
            record_exit(c, b"exit ", 126);
            libc::_exit(1);
        }
        if task == 0 {
            libc::close(status_pipe[0]);
            run_init(c, out_pipe[1], err_pipe[1], status_pipe[1]);
        }
        libc::close(status_pipe[1]);
        libc::close(out_pipe[1]);
        libc::close(err_pipe[1]);
        libc::close(c.devnull);
        libc::close(c.ready);
        for &fd in c.procs {
            libc::close(fd);
        }
        let mut fds = [
            libc::pollfd {
                fd: out_pipe[0],
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: err_pipe[0],
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let sinks = [c.stdout, c.stderr];
        let mut written = [0u64; 2];
        let mut truncated = [false; 2];
        let mut buf = [0u8; 16384];
        let mut status: libc::c_int = 0;
        let mut exited = false;
        // Reads allowed after the task exited: a grandchild that keeps writing must not keep
        // the exit from being recorded.
        let mut drain_budget = 256;
        loop {
            let open = fds.iter().filter(|f| f.fd >= 0).count();
            if open == 0 && exited {
                break;
            }
            if open == 0 {
                // Output closed but the task lives on: wait for it.
                if libc::waitpid(task, &mut status, 0) == task {
                    break;
                }
                continue;
            }
            // Wake up now and then to notice a task that exited while a grandchild still
            // holds its output open.
            let n = libc::poll(fds.as_mut_ptr(), 2, if exited { 0 } else { 200 });
            if n <= 0 {
                if !exited && libc::waitpid(task, &mut status, libc::WNOHANG) == task {
                    exited = true;
                    continue;
                }
                if exited {
                    break;
                }
                continue;
            }
            if exited {
                drain_budget -= 1;
                if drain_budget == 0 {
                    break;
                }
            }
            for i in 0..2 {
                if fds[i].fd < 0 || fds[i].revents == 0 {
                    continue;
                }
                let r = libc::read(fds[i].fd, buf.as_mut_ptr().cast(), buf.len());
                if r <= 0 {
                    libc::close(fds[i].fd);
                    fds[i].fd = -1;
                    continue;
                }
                let r = r as u64;
                let room = c.cap.saturating_sub(written[i]);
                let take = r.min(room);
                if take > 0 {
                    write_all(sinks[i], &buf[..take as usize]);
                    written[i] += take;
                }
                if take < r && !truncated[i] {
                    truncated[i] = true;
                    write_all(sinks[i], c.marker);
                }
            }
        }
        // The task's own status, as its init saw it; the init's when it died first.
        let mut task_status = [0u8; 4];
        if libc::read(status_pipe[0], task_status.as_mut_ptr().cast(), 4) == 4 {
            status = libc::c_int::from_ne_bytes(task_status);
        }
        if libc::WIFEXITED(status) {
            record_exit(c, b"exit ", libc::WEXITSTATUS(status));
        } else if libc::WIFSIGNALED(status) {
            record_exit(c, b"signal ", libc::WTERMSIG(status));
        } else {
            record_exit(c, b"exit ", 126);
        }
        libc::_exit(0)
    }
}

unsafe fn write_all(fd: RawFd, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: `data` is valid for its length.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n <= 0 {
            return;
        }
        data = &data[n as usize..];
    }
}

/// Writes `<kind><n>\n` to the exit file, atomically (temporary file, then rename).
unsafe fn record_exit(c: &ChildCtx<'_>, kind: &[u8], n: i32) {
    let mut line = [0u8; 32];
    let mut len = 0;
    for &b in kind {
        line[len] = b;
        len += 1;
    }
    let mut digits = [0u8; 12];
    let mut d = 0;
    let neg = n < 0;
    let mut v = (n as i64).unsigned_abs();
    loop {
        digits[d] = b'0' + (v % 10) as u8;
        d += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    if neg {
        line[len] = b'-';
        len += 1;
    }
    while d > 0 {
        d -= 1;
        line[len] = digits[d];
        len += 1;
    }
    line[len] = b'\n';
    len += 1;
    unsafe {
        let fd = libc::open(
            c.exit_tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_CLOEXEC,
            0o644,
        );
        if fd >= 0 {
            write_all(fd, &line[..len]);
            libc::fsync(fd);
            libc::close(fd);
            libc::rename(c.exit_tmp, c.exit_final);
        }
    }
}

/// The task's init: joins the cgroup, enters the task's mount namespace and root, forks the
/// task, forwards signals to it, reaps, and hands the task's wait status to the supervisor on
/// `status`. Never returns.
unsafe fn run_init(c: &ChildCtx<'_>, out: RawFd, err: RawFd, status: RawFd) -> ! {
    unsafe {
        for &fd in c.procs {
            if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                // Running outside the cgroup would break the promise of limits.
                fail_start(c, STAGE_CGROUP, 125);
            }
        }
        if let Some(mounts) = &c.iso.mounts
            && let Err(e) = mounts.apply()
        {
            set_errno(e.errno);
            fail_start(c, piece_stage(e.piece), 126);
        }
        // Signals stay blocked until the task's pid is known, so none is lost in between.
        let mut block: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        for s in FORWARDED {
            libc::sigaddset(&mut block, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &block, std::ptr::null_mut());
        for s in FORWARDED {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = forward_signal as extern "C" fn(libc::c_int) as usize;
            act.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut act.sa_mask);
            libc::sigaction(s, &act, std::ptr::null_mut());
        }
        let task = libc::fork();
        if task < 0 {
            fail_start(c, STAGE_FORK, 126);
        }
        if task == 0 {
            libc::close(status);
            start_task(c, out, err);
        }
        TASK_PID.store(task, std::sync::atomic::Ordering::Relaxed);
        libc::sigprocmask(libc::SIG_UNBLOCK, &block, std::ptr::null_mut());
        libc::close(out);
        libc::close(err);
        libc::close(c.ready);
        libc::close(c.devnull);
        for &fd in c.procs {
            libc::close(fd);
        }
        let mut wait_status: libc::c_int = 0;
        loop {
            let mut st: libc::c_int = 0;
            let r = libc::waitpid(-1, &mut st, 0);
            if r == task {
                wait_status = st;
                break;
            }
            if r < 0 && *libc::__errno_location() != libc::EINTR {
                break;
            }
        }
        write_all(status, &wait_status.to_ne_bytes());
        libc::_exit(0)
    }
}

/// The task: sets up stdio, drops its privileges, enters its sandbox, execs. Never returns.
unsafe fn start_task(c: &ChildCtx<'_>, out: RawFd, err: RawFd) -> ! {
    unsafe {
        for s in FORWARDED {
            libc::signal(s, libc::SIG_DFL);
        }
        libc::setpgid(0, 0);
        libc::dup2(c.devnull, 0);
        libc::dup2(out, 1);
        libc::dup2(err, 2);
        // Rust ignores SIGPIPE and the runtime may block signals; a command expects neither.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        // A write past the disk quota ends the task with SIGXFSZ (reported as the quota).
        libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
        if libc::setrlimit(libc::RLIMIT_FSIZE, &c.fsize) != 0 {
            fail_start(c, STAGE_FSIZE, 126);
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        if let Err(e) = c.iso.drop_privileges() {
            set_errno(e.errno);
            fail_start(c, piece_stage(e.piece), 126);
        }
        if libc::chdir(c.cwd) != 0 {
            fail_start(c, STAGE_CHDIR, 126);
        }
        libc::execve(c.program, c.argv, c.envp);
        fail_start(c, STAGE_EXEC, 127)
    }
}

/// The start time of a process (clock ticks since boot, field 22 of `/proc/<pid>/stat`),
/// which tells a process from a later one that reused its pid. `None` when it is gone.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // After the command name: field 3 (state) is index 0, so field 22 is index 19.
    after.split_whitespace().nth(19)?.parse().ok()
}

/// True when the process exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

/// Waits until process `pid` has exited, whether or not it is our child: through a pidfd when
/// the kernel has them, by polling `/proc` otherwise. Reaps it when it is our child.
pub async fn wait_exit(pid: i32) {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd >= 0 {
        // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        // SAFETY: `owned` is a valid pidfd that the AsyncFd owns and nothing else closes or
        // replaces while it is registered.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE)
        };
        if let Ok(afd) = registered {
            let _ = afd.readable().await;
            reap(pid);
            return;
        }
    }
    while process_alive(pid) {
        reap(pid);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reap(pid);
}

/// Collects the exit status of `pid` if it is our exited child, so it does not stay a zombie.
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid on a specific pid with WNOHANG; ECHILD for a non-child is fine.
    unsafe {
        libc::waitpid(pid, &mut status, libc::WNOHANG);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_records_round_trip() {
        assert_eq!(ExitRecord::parse("exit 3\n"), Some(ExitRecord::Code(3)));
        assert_eq!(ExitRecord::parse("signal 9"), Some(ExitRecord::Signal(9)));
        assert_eq!(ExitRecord::parse("garbage"), None);
    }

    #[test]
    fn resolves_on_path() {
        assert!(resolve("sh", DEFAULT_PATH).is_ok());
        let e = resolve("no-such-program-xyz", "/bin").unwrap_err();
        assert!(e.to_string().contains("not found on PATH"), "{e}");
    }

    /// The start time read is the kernel's (the uptime when the process started, in clock
    /// ticks), also for a command name with `)` and spaces in it, and `None` once the process
    /// is gone.
    #[test]
    fn reads_own_start_time() {
        let me = std::process::id() as i32;
        assert!(process_alive(me));
        let mine = process_start_time(me).expect("this process's start time");
        let dir = tempfile::tempdir().unwrap();
        // The kernel names a process after the path it was started by.
        let odd = dir.path().join("a) 1 2 3 4 5");
        std::os::unix::fs::symlink("/bin/sleep", &odd).unwrap();
        let mut child = std::process::Command::new(&odd).arg("30").spawn().unwrap();
        let pid = child.id() as i32;
        // SAFETY: sysconf has no preconditions.
        let ticks_per_s = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let uptime_s: f64 = std::fs::read_to_string("/proc/uptime")
            .unwrap()
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap();
        let started = process_start_time(pid).expect("a live child's start time") as f64;
        let now = uptime_s * ticks_per_s;
        assert!(
            now - 10.0 * ticks_per_s <= started && started <= now + ticks_per_s,
            "a child started now has start time {started} ticks; the uptime is {now} ticks"
        );
        assert!(mine as f64 <= started, "{mine} > {started}");
        assert!(process_alive(pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(process_start_time(pid), None);
        assert!(!process_alive(pid));
    }
}
