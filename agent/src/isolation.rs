//! Isolation of native tasks from each other and from the agent: the operator's settings
//! ([`IsolationConfig`]), the probe of what this kernel and these privileges allow
//! ([`probe`]), the per-framework uids ([`UidAllocator`]), and what one task gets
//! ([`TaskIsolation`], with the mount table and seccomp filter prepared before `fork`).
//!
//! # What a native task gets
//!
//! - **user**: an unprivileged uid, by default one per framework from
//!   [`DEFAULT_TASK_UID_RANGE`] (gid = uid, no supplementary groups), or one configured user
//!   for all (`--task-user nobody`). Root only for the roles the operator names
//!   (`--root-task-roles`). The sandbox is chowned to that uid, mode 0700.
//! - **mount**: a new mount namespace whose root is a small tmpfs holding read-only,
//!   nosuid, nodev binds of `/usr`, `/bin`, `/sbin`, `/lib*` (or their symlinks on a merged-/usr
//!   system), the `/etc` files ordinary programs read ([`ETC_FILES`]), `/dev/{null,zero,full,
//!   random,urandom}` (nosuid, noexec), a fresh `/proc` of its PID namespace, its sandbox
//!   (read-write, nosuid, nodev) at the fixed path [`SANDBOX_INSIDE`] (`/sandbox`: its
//!   working directory and `WASMOS_SANDBOX`; a fixed path rather than the host's, which may
//!   itself lie under `/tmp` or another directory the root provides), and `<sandbox>/.tmp` at
//!   `/tmp`, so what it puts in `/tmp` counts as sandbox disk use. Nothing of the work
//!   directory (its database, other sandboxes, the run directory) is there. The root is
//!   entered with `pivot_root` and the old one detached, then made read-only.
//! - **pid**: a new PID namespace; its PID 1 is a tiny init (see `launcher`) that forwards
//!   TERM, INT, HUP, QUIT, USR1 and USR2 to the task, reaps orphans, and hands the task's
//!   status to the supervisor; when it exits, every process left in the namespace is killed.
//! - **no_new_privs**: `PR_SET_NO_NEW_PRIVS`, so a setuid binary cannot raise privileges.
//! - **caps**: every capability dropped from the bounding set, ambient set cleared, keepcaps
//!   off, then the uid change clears the rest (and `capset` zeroes them explicitly).
//! - **seccomp**: a deny-list filter ([`DENIED_SYSCALLS`]: ptrace, mount, namespaces, kernel
//!   modules, kexec, bpf, keyrings, perf, handles, ...; `clone` with namespace flags; `clone3`
//!   answers ENOSYS so libc falls back to `clone`) returning EPERM. Raw BPF prepared before
//!   fork: no dependency, nothing allocated in the child. The uid and the PID namespace
//!   already keep a task from ptracing others; the filter also closes the kernel surface
//!   behind those calls.
//!
//! # Probe and refusal
//!
//! At start the agent forks a throwaway child that tries each piece exactly as a task would
//! ([`probe`]). A piece that fails is *missing*: every native task is then refused with a
//! message naming the missing pieces, unless the operator accepts weaker isolation
//! (`--allow-weak-isolation`), in which case those pieces are skipped and the agent's
//! registration lists what is on and carries the warning. No silent fallback.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The default uid range of native tasks: 100000 to 165535, one uid per framework (gid = uid).
/// Above the ranges distributions give to people (1000–60000) and system users.
pub const DEFAULT_TASK_UID_RANGE: (u32, u32) = (100_000, 165_535);

/// `/etc` entries bound read-only into a task's root when they exist: what the C library
/// needs to look up users, hosts and time zones and to load libraries, CA certificates, and
/// Debian's `alternatives` (the targets of `/usr/bin/awk` and friends).
pub const ETC_FILES: &[&str] = &[
    "passwd",
    "group",
    "hosts",
    "host.conf",
    "resolv.conf",
    "nsswitch.conf",
    "services",
    "protocols",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "ssl",
    "ca-certificates",
    "pki",
    "alternatives",
];

/// Where a task's sandbox is inside its mount namespace: its working directory and
/// `WASMOS_SANDBOX`.
pub const SANDBOX_INSIDE: &str = "/sandbox";

/// System directories bound read-only (or recreated as symlinks) into a task's root.
pub const SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

/// One piece of isolation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Piece {
    /// An unprivileged uid and gid, no supplementary groups.
    User,
    /// A mount namespace with a new root.
    Mount,
    /// A PID namespace with a tiny init.
    Pid,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
    /// Capabilities dropped (bounding, ambient, effective, permitted, inheritable).
    Caps,
    /// The seccomp deny-list filter.
    Seccomp,
}

impl Piece {
    /// Every piece, in the order the probe tries them.
    pub const ALL: [Piece; 6] = [
        Piece::User,
        Piece::Mount,
        Piece::Pid,
        Piece::NoNewPrivs,
        Piece::Caps,
        Piece::Seccomp,
    ];

    /// The name used in flags, logs, the registration and `wasmos agents`.
    pub fn name(self) -> &'static str {
        match self {
            Piece::User => "user",
            Piece::Mount => "mount",
            Piece::Pid => "pid",
            Piece::NoNewPrivs => "no_new_privs",
            Piece::Caps => "caps",
            Piece::Seccomp => "seccomp",
        }
    }

    fn index(self) -> usize {
        Piece::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }
}

/// Which uid native tasks run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskUser {
    /// One uid per framework from `first..=last` (gid = uid), kept stable across agent
    /// restarts by claim files in `<work_dir>/uids/`.
    Range {
        /// The lowest uid.
        first: u32,
        /// The highest uid (inclusive).
        last: u32,
    },
    /// One user for every task.
    Fixed {
        /// The user's name, as given (for messages).
        name: String,
        /// Its uid.
        uid: u32,
        /// Its primary gid.
        gid: u32,
    },
}

impl Default for TaskUser {
    fn default() -> Self {
        TaskUser::Range {
            first: DEFAULT_TASK_UID_RANGE.0,
            last: DEFAULT_TASK_UID_RANGE.1,
        }
    }
}

impl TaskUser {
    /// Parses `FIRST-LAST` (`--task-uid-range`). Uid 0 and an empty or reversed range are
    /// refused.
    pub fn parse_range(s: &str) -> Result<Self, String> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("uid range {s:?} is not FIRST-LAST, e.g. 100000-165535"))?;
        let first: u32 = a
            .trim()
            .parse()
            .map_err(|_| format!("uid range {s:?}: {a:?} is not a uid"))?;
        let last: u32 = b
            .trim()
            .parse()
            .map_err(|_| format!("uid range {s:?}: {b:?} is not a uid"))?;
        if first == 0 || last < first || last == u32::MAX {
            return Err(format!(
                "uid range {s:?} must be non-empty, above 0 and below 4294967295"
            ));
        }
        Ok(TaskUser::Range { first, last })
    }

    /// Looks up a user (`--task-user`) by name in `/etc/passwd`, or takes `UID[:GID]`. Root is
    /// refused: use `--root-task-roles` for that.
    pub fn named(s: &str) -> Result<Self, String> {
        let (uid, gid) = if let Some((u, g)) = s.split_once(':') {
            let uid = u.parse().map_err(|_| format!("{u:?} is not a uid"))?;
            let gid = g.parse().map_err(|_| format!("{g:?} is not a gid"))?;
            (uid, gid)
        } else if let Ok(uid) = s.parse::<u32>() {
            (uid, uid)
        } else {
            let passwd = std::fs::read_to_string("/etc/passwd")
                .map_err(|e| format!("cannot read /etc/passwd to look up user {s:?}: {e}"))?;
            passwd
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 4 && f[0] == s)
                        .then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
                        .flatten()
                })
                .next()
                .ok_or_else(|| {
                    format!("user {s:?} is not in /etc/passwd; give a user name or UID[:GID]")
                })?
        };
        if uid == 0 {
            return Err(format!(
                "--task-user {s:?} is root; name the roles that may run as root with \
                 --root-task-roles instead"
            ));
        }
        Ok(TaskUser::Fixed {
            name: s.to_string(),
            uid,
            gid,
        })
    }
}

/// The operator's isolation settings.
#[derive(Clone, Debug)]
pub struct IsolationConfig {
    /// Which uid tasks run as. By default one per framework from [`DEFAULT_TASK_UID_RANGE`].
    pub user: TaskUser,
    /// Roles whose native tasks run as root (still in their own mount and PID namespaces,
    /// with their capabilities, no seccomp filter). By default none.
    pub root_task_roles: Vec<String>,
    /// Run native tasks with the pieces that work when some do not (listed in the agent's
    /// registration with a warning), instead of refusing them. By default `false`.
    pub allow_weak: bool,
    /// The pieces wanted. By default all ([`Piece::ALL`]); benchmarks ask for none to measure
    /// what isolation costs. A piece not wanted is off without a warning.
    pub wanted: Vec<Piece>,
}

impl Default for IsolationConfig {
    fn default() -> Self {
        IsolationConfig {
            user: TaskUser::default(),
            root_task_roles: Vec::new(),
            allow_weak: false,
            wanted: Piece::ALL.to_vec(),
        }
    }
}

impl IsolationConfig {
    /// No isolation at all: tasks run as root in the agent's namespaces (benchmarks).
    pub fn none() -> Self {
        IsolationConfig {
            wanted: Vec::new(),
            ..IsolationConfig::default()
        }
    }
}

/// Why a task's isolation could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// Every uid of the range is claimed by another framework.
    #[error(
        "every uid of the task uid range {first}-{last} is taken by another framework; widen \
         --task-uid-range or remove claims of frameworks gone for good from {dir}"
    )]
    RangeExhausted {
        /// The lowest uid.
        first: u32,
        /// The highest uid.
        last: u32,
        /// Where the claims are.
        dir: PathBuf,
    },
    /// A file operation on the sandbox or the uid claims failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which file.
        path: PathBuf,
        /// What the file system said.
        source: io::Error,
    },
}

/// Per-framework uids from a range, stable across agent restarts.
///
/// A framework's uid starts from a hash of its id (so it is usually the same on every agent)
/// and is claimed by creating `<dir>/<uid>` holding the framework id (`O_EXCL`, so two
/// frameworks never share one); a taken uid moves the search to the next. The claim file is the
/// record, so a restarted agent finds the same uid without the store. Claims are never freed:
/// a uid given to a new framework could read what an old one left in sandboxes still kept for
/// reading.
#[derive(Debug)]
pub struct UidAllocator {
    dir: PathBuf,
    first: u32,
    last: u32,
    known: Mutex<HashMap<String, u32>>,
}

impl UidAllocator {
    /// Claims kept in `dir` (created if missing), uids from `first..=last`.
    pub fn new(dir: PathBuf, first: u32, last: u32) -> Self {
        let mut known = HashMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                let Some(uid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                    continue;
                };
                if let Ok(fw) = std::fs::read_to_string(e.path()) {
                    known.insert(fw, uid);
                }
            }
        }
        UidAllocator {
            dir,
            first,
            last,
            known: Mutex::new(known),
        }
    }

    /// The uid of `framework`, claiming one on first use.
    pub fn uid_for(&self, framework: &str) -> Result<u32, IsolationError> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(uid) = known.get(framework) {
            return Ok(*uid);
        }
        std::fs::create_dir_all(&self.dir).map_err(|source| IsolationError::Io {
            what: "create the uid claims directory",
            path: self.dir.clone(),
            source,
        })?;
        let count = u64::from(self.last - self.first) + 1;
        let start = fnv1a(framework.as_bytes()) % count;
        for i in 0..count {
            let uid = self.first + ((start + i) % count) as u32;
            let path = self.dir.join(uid.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    use std::io::Write;
                    f.write_all(framework.as_bytes())
                        .and_then(|()| f.sync_all())
                        .map_err(|source| IsolationError::Io {
                            what: "write the uid claim",
                            path: path.clone(),
                            source,
                        })?;
                    known.insert(framework.to_string(), uid);
                    return Ok(uid);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if std::fs::read_to_string(&path).ok().as_deref() == Some(framework) {
                        known.insert(framework.to_string(), uid);
                        return Ok(uid);
                    }
                }
                Err(source) => {
                    return Err(IsolationError::Io {
                        what: "claim a uid",
                        path,
                        source,
                    });
                }
            }
        }
        Err(IsolationError::RangeExhausted {
            first: self.first,
            last: self.last,
            dir: self.dir.clone(),
        })
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The agent's isolation: the settings, what the probe found, the uids.
#[derive(Debug)]
pub struct Isolation {
    config: IsolationConfig,
    on: [bool; 6],
    missing: Vec<String>,
    root_dir: PathBuf,
    uids: Option<UidAllocator>,
}

impl Isolation {
    /// Probes this machine (a throwaway child, a few milliseconds) for the pieces `config`
    /// wants. `work_dir` holds the mount point of tasks' roots (`run/.root`) and the uid
    /// claims (`uids/`).
    pub fn new(config: IsolationConfig, work_dir: &Path) -> Self {
        let root_dir = work_dir.join("run").join(".root");
        let probe_uid = match &config.user {
            TaskUser::Range { first, .. } => *first,
            TaskUser::Fixed { uid, .. } => *uid,
        };
        let wanted: Vec<Piece> = config.wanted.clone();
        let found = if wanted.is_empty() {
            Vec::new()
        } else {
            probe(&root_dir, work_dir, probe_uid)
        };
        let mut on = [false; 6];
        let mut missing: Vec<String> = Vec::new();
        for p in &wanted {
            // An unprivileged process may install a filter only under no-new-privs.
            if *p == Piece::Seccomp && !wanted.contains(&Piece::NoNewPrivs) {
                missing.push("seccomp (needs no_new_privs)".to_string());
                continue;
            }
            match found.iter().find(|(q, _)| q == p) {
                Some((_, Ok(()))) => on[p.index()] = true,
                Some((_, Err(why))) => missing.push(format!("{} ({why})", p.name())),
                None => missing.push(format!("{} (not probed)", p.name())),
            }
        }
        let uids = match &config.user {
            TaskUser::Range { first, last } => {
                Some(UidAllocator::new(work_dir.join("uids"), *first, *last))
            }
            TaskUser::Fixed { .. } => None,
        };
        let iso = Isolation {
            config,
            on,
            missing,
            root_dir,
            uids,
        };
        if let Some(why) = iso.refusal() {
            tracing::warn!(%why, "native tasks will be refused");
        } else if let Some(w) = iso.warning() {
            tracing::warn!(warning = %w, "native tasks run with weaker isolation");
        }
        iso
    }

    /// Whether `piece` is on for tasks of roles that do not run as root.
    pub fn is_on(&self, piece: Piece) -> bool {
        self.on[piece.index()]
    }

    /// The names of the pieces on ([`Piece::name`]), for the registration and benchmarks.
    pub fn enabled(&self) -> Vec<String> {
        Piece::ALL
            .iter()
            .filter(|p| self.is_on(**p))
            .map(|p| p.name().to_string())
            .collect()
    }

    /// Why every native task is refused: wanted pieces are missing and weaker isolation was not
    /// accepted.
    pub fn refusal(&self) -> Option<String> {
        if self.missing.is_empty() || self.config.allow_weak {
            return None;
        }
        Some(format!(
            "native task refused: this agent cannot isolate native tasks: missing {}; run the \
             agent as root on a kernel with mount and PID namespaces and seccomp, or start it \
             with --allow-weak-isolation to run them without the missing pieces",
            self.missing.join(", ")
        ))
    }

    /// What the registration says when pieces are missing and weaker isolation was accepted.
    pub fn warning(&self) -> Option<String> {
        (!self.missing.is_empty() && self.config.allow_weak).then(|| {
            format!(
                "weak isolation accepted (--allow-weak-isolation): native tasks run without {}",
                self.missing.join(", ")
            )
        })
    }

    /// Prepares one task's isolation: its uid (claimed on the framework's first task), its
    /// sandbox chowned to it with mode 0700 and a private `.tmp`, its mount table.
    pub fn prepare(
        &self,
        framework: &str,
        role: &str,
        sandbox: &Path,
    ) -> Result<TaskIsolation, IsolationError> {
        let as_root = self.config.root_task_roles.iter().any(|r| r == role);
        let user = self.is_on(Piece::User) && !as_root;
        let (uid, gid) = if user {
            match &self.config.user {
                TaskUser::Fixed { uid, gid, .. } => (*uid, *gid),
                TaskUser::Range { .. } => {
                    let uid = match &self.uids {
                        Some(a) => a.uid_for(framework)?,
                        None => 0,
                    };
                    (uid, uid)
                }
            }
        } else {
            (0, 0)
        };
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| IsolationError::Io { what, path, source }
        };
        let tmp = sandbox.join(".tmp");
        let mount = self.is_on(Piece::Mount);
        if mount {
            std::fs::create_dir_all(&tmp).map_err(io("create", &tmp))?;
        }
        if user {
            for dir in [sandbox, tmp.as_path()] {
                if dir == tmp && !mount {
                    continue;
                }
                std::os::unix::fs::chown(dir, Some(uid), Some(gid))
                    .map_err(io("chown the sandbox", dir))?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(io("set the mode of", dir))?;
            }
        }
        let mounts = if mount {
            Some(MountPlan::for_task(&self.root_dir, sandbox, &tmp).prepare()?)
        } else {
            None
        };
        let strict = !as_root;
        Ok(TaskIsolation {
            uid,
            gid,
            user,
            mounts,
            pid: self.is_on(Piece::Pid),
            no_new_privs: strict && self.is_on(Piece::NoNewPrivs),
            caps: strict && self.is_on(Piece::Caps),
            seccomp: (strict && self.is_on(Piece::Seccomp)).then(seccomp_filter),
            last_cap: last_cap(),
        })
    }
}

/// What one task gets, prepared before `fork` (nothing here allocates when applied).
pub struct TaskIsolation {
    /// The uid the task runs as (0 when `user` is off).
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// Whether to switch to `uid`/`gid` and drop supplementary groups.
    pub user: bool,
    /// The mount table of its root, when the mount namespace is on.
    pub mounts: Option<PreparedMounts>,
    /// Whether to start it in a new PID namespace.
    pub pid: bool,
    /// Whether to set `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privs: bool,
    /// Whether to drop every capability.
    pub caps: bool,
    /// The seccomp filter, when on.
    pub seccomp: Option<Vec<libc::sock_filter>>,
    /// The highest capability number of this kernel.
    pub last_cap: u32,
}

impl TaskIsolation {
    /// The sandbox's path as the task sees it: [`SANDBOX_INSIDE`] in its own mount
    /// namespace, else `host`.
    pub fn sandbox_path<'a>(&self, host: &'a Path) -> &'a Path {
        if self.mounts.is_some() {
            Path::new(SANDBOX_INSIDE)
        } else {
            host
        }
    }

    /// No isolation: root in the agent's namespaces.
    pub fn none() -> Self {
        TaskIsolation {
            uid: 0,
            gid: 0,
            user: false,
            mounts: None,
            pid: false,
            no_new_privs: false,
            caps: false,
            seccomp: None,
            last_cap: last_cap(),
        }
    }
}

fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(63)
}

/// One step of building a task's root (host paths, before `pivot_root`).
#[derive(Clone, Debug, PartialEq, Eq)]
enum MountOp {
    Dir(PathBuf),
    File(PathBuf),
    Symlink {
        target: PathBuf,
        path: PathBuf,
    },
    Bind {
        src: PathBuf,
        dst: PathBuf,
        flags: libc::c_ulong,
    },
    Proc(PathBuf),
}

/// A task's root, described with host paths.
struct MountPlan {
    root: PathBuf,
    ops: Vec<MountOp>,
}

const RO: libc::c_ulong = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
const RW: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;
const DEV: libc::c_ulong = libc::MS_NOSUID | libc::MS_NOEXEC;

impl MountPlan {
    fn for_task(root: &Path, sandbox: &Path, tmp: &Path) -> Self {
        let mut plan = MountPlan {
            root: root.to_path_buf(),
            ops: Vec::new(),
        };
        let mut dirs = std::collections::HashSet::new();
        let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        let mut mkdirs = |plan: &mut MountPlan, p: &Path| {
            let mut acc = PathBuf::from("/");
            for c in p.components().skip(1) {
                acc.push(c);
                if dirs.insert(acc.clone()) {
                    plan.ops.push(MountOp::Dir(inside(&acc)));
                }
            }
        };
        for d in SYSTEM_DIRS {
            let host = Path::new("/").join(d);
            let Ok(meta) = std::fs::symlink_metadata(&host) else {
                continue;
            };
            if meta.file_type().is_symlink() {
                if let Ok(target) = std::fs::read_link(&host) {
                    plan.ops.push(MountOp::Symlink {
                        target,
                        path: inside(&host),
                    });
                }
            } else if meta.is_dir() {
                mkdirs(&mut plan, &host);
                plan.ops.push(MountOp::Bind {
                    src: host.clone(),
                    dst: inside(&host),
                    flags: RO,
                });
            }
        }
        mkdirs(&mut plan, Path::new("/etc"));
        for f in ETC_FILES {
            let host = Path::new("/etc").join(f);
            let Ok(meta) = std::fs::metadata(&host) else {
                continue;
            };
            if meta.is_dir() {
                mkdirs(&mut plan, &host);
            } else {
                plan.ops.push(MountOp::File(inside(&host)));
            }
            plan.ops.push(MountOp::Bind {
                src: host.clone(),
                dst: inside(&host),
                flags: RO,
            });
        }
        mkdirs(&mut plan, Path::new("/dev"));
        for d in ["null", "zero", "full", "random", "urandom"] {
            let host = Path::new("/dev").join(d);
            if std::fs::metadata(&host).is_err() {
                continue;
            }
            plan.ops.push(MountOp::File(inside(&host)));
            plan.ops.push(MountOp::Bind {
                src: host.clone(),
                dst: inside(&host),
                flags: DEV,
            });
        }
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            plan.ops.push(MountOp::Symlink {
                target: target.into(),
                path: inside(&Path::new("/dev").join(name)),
            });
        }
        mkdirs(&mut plan, Path::new("/proc"));
        plan.ops.push(MountOp::Proc(inside(Path::new("/proc"))));
        let sandbox_inside = Path::new(SANDBOX_INSIDE);
        mkdirs(&mut plan, sandbox_inside);
        plan.ops.push(MountOp::Bind {
            src: sandbox.to_path_buf(),
            dst: inside(sandbox_inside),
            flags: RW,
        });
        mkdirs(&mut plan, Path::new("/tmp"));
        plan.ops.push(MountOp::Bind {
            src: tmp.to_path_buf(),
            dst: inside(Path::new("/tmp")),
            flags: RW,
        });
        plan
    }

    fn prepare(&self) -> Result<PreparedMounts, IsolationError> {
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes()).map_err(|_| IsolationError::Io {
                what: "use the path (it holds a NUL byte)",
                path: p.to_path_buf(),
                source: io::Error::from(io::ErrorKind::InvalidInput),
            })
        };
        let mut ops = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            ops.push(match op {
                MountOp::Dir(p) => RawOp::Dir(c(p)?),
                MountOp::File(p) => RawOp::File(c(p)?),
                MountOp::Symlink { target, path } => RawOp::Symlink(c(target)?, c(path)?),
                MountOp::Bind { src, dst, flags } => RawOp::Bind(c(src)?, c(dst)?, *flags),
                MountOp::Proc(p) => RawOp::Proc(c(p)?),
            });
        }
        Ok(PreparedMounts {
            root: c(&self.root)?,
            ops,
        })
    }
}

enum RawOp {
    Dir(CString),
    File(CString),
    Symlink(CString, CString),
    Bind(CString, CString, libc::c_ulong),
    Proc(CString),
}

/// A task's mount table as C strings, ready to apply after `fork`.
pub struct PreparedMounts {
    root: CString,
    ops: Vec<RawOp>,
}

/// Which step of applying isolation failed, with `errno`.
#[derive(Clone, Copy, Debug)]
pub struct StepFailed {
    /// The piece that failed.
    pub piece: Piece,
    /// The error number.
    pub errno: i32,
}

fn errno() -> i32 {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

impl PreparedMounts {
    /// Enters a new mount namespace and pivots into the task's root. Async-signal-safe: raw
    /// system calls on memory prepared before `fork`.
    ///
    /// # Safety
    /// Call in a single-threaded child (after `fork`) that may change its mount namespace.
    pub unsafe fn apply(&self) -> Result<(), StepFailed> {
        let fail = || StepFailed {
            piece: Piece::Mount,
            errno: errno(),
        };
        let null = std::ptr::null::<libc::c_char>();
        unsafe {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(fail());
            }
            if libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(fail());
            }
            if libc::mount(
                c"tmpfs".as_ptr(),
                self.root.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                c"size=1m,mode=0755".as_ptr().cast(),
            ) != 0
            {
                return Err(fail());
            }
            for op in &self.ops {
                let ok = match op {
                    RawOp::Dir(p) => libc::mkdir(p.as_ptr(), 0o755) == 0 || errno() == libc::EEXIST,
                    RawOp::File(p) => {
                        let fd = libc::open(
                            p.as_ptr(),
                            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                            0o644,
                        );
                        fd >= 0 && libc::close(fd) == 0
                    }
                    RawOp::Symlink(t, p) => libc::symlink(t.as_ptr(), p.as_ptr()) == 0,
                    RawOp::Bind(src, dst, flags) => {
                        libc::mount(
                            src.as_ptr(),
                            dst.as_ptr(),
                            null,
                            libc::MS_BIND,
                            std::ptr::null(),
                        ) == 0
                            && libc::mount(
                                null,
                                dst.as_ptr(),
                                null,
                                libc::MS_BIND | libc::MS_REMOUNT | flags,
                                std::ptr::null(),
                            ) == 0
                    }
                    RawOp::Proc(p) => {
                        libc::mount(
                            c"proc".as_ptr(),
                            p.as_ptr(),
                            c"proc".as_ptr(),
                            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                            std::ptr::null(),
                        ) == 0
                    }
                };
                if !ok {
                    return Err(fail());
                }
            }
            // pivot_root(".", ".") stacks the old root on the new one; detaching "." then
            // removes the old root (runc's way, which needs no put_old directory).
            if libc::chdir(self.root.as_ptr()) != 0
                || libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) != 0
                || libc::umount2(c".".as_ptr(), libc::MNT_DETACH) != 0
                || libc::chdir(c"/".as_ptr()) != 0
            {
                return Err(fail());
            }
            if libc::mount(
                null,
                c"/".as_ptr(),
                null,
                libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
                std::ptr::null(),
            ) != 0
            {
                return Err(fail());
            }
        }
        Ok(())
    }
}

impl TaskIsolation {
    /// Drops privileges in the task's process, right before `chdir` and `execve`: bounding
    /// capabilities, groups, gid, uid, remaining capabilities, no-new-privs, seccomp.
    /// Async-signal-safe.
    ///
    /// # Safety
    /// Call in a single-threaded child (after `fork`).
    pub unsafe fn drop_privileges(&self) -> Result<(), StepFailed> {
        let fail = |piece| StepFailed {
            piece,
            errno: errno(),
        };
        unsafe {
            if self.caps {
                if libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0 {
                    return Err(fail(Piece::Caps));
                }
                // Fails with EINVAL on kernels without ambient capabilities, which have none
                // to clear.
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL,
                    0,
                    0,
                    0,
                );
                for cap in 0..=self.last_cap {
                    if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) != 0 {
                        return Err(fail(Piece::Caps));
                    }
                }
            }
            if self.user {
                // Raw system calls: glibc's wrappers would try to signal the threads the
                // parent had.
                if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0
                    || libc::syscall(libc::SYS_setresgid, self.gid, self.gid, self.gid) != 0
                    || libc::syscall(libc::SYS_setresuid, self.uid, self.uid, self.uid) != 0
                {
                    return Err(fail(Piece::User));
                }
            }
            if self.caps {
                #[repr(C)]
                struct Header {
                    version: u32,
                    pid: i32,
                }
                #[repr(C)]
                #[derive(Clone, Copy)]
                struct Data {
                    effective: u32,
                    permitted: u32,
                    inheritable: u32,
                }
                let mut header = Header {
                    version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
                    pid: 0,
                };
                let data = [Data {
                    effective: 0,
                    permitted: 0,
                    inheritable: 0,
                }; 2];
                if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) != 0 {
                    return Err(fail(Piece::Caps));
                }
            }
            if self.no_new_privs && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(fail(Piece::NoNewPrivs));
            }
            if let Some(filter) = &self.seccomp {
                let prog = libc::sock_fprog {
                    len: filter.len() as u16,
                    filter: filter.as_ptr() as *mut libc::sock_filter,
                };
                if libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &prog as *const libc::sock_fprog,
                    0,
                    0,
                ) != 0
                {
                    return Err(fail(Piece::Seccomp));
                }
            }
        }
        Ok(())
    }
}

/// System calls the seccomp filter answers with EPERM: debugging other processes, changing
/// mounts or namespaces, loading kernel code, keyrings, perf, file handles, raw I/O ports,
/// clocks, swap, reboot, and other processes' memory.
pub const DENIED_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_perf_event_open,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_userfaultfd,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// The seccomp program: another architecture is killed, denied calls get EPERM, `clone` with
/// a namespace flag EPERM, `clone3` ENOSYS, everything else is allowed.
pub fn seccomp_filter() -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let eperm = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let ns_flags = (libc::CLONE_NEWNS
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWCGROUP) as u32;
    let mut f = vec![
        stmt(BPF_LD | BPF_W | BPF_ABS, 4), // arch
        jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH, 1, 0),
        stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(BPF_LD | BPF_W | BPF_ABS, 0), // nr
    ];
    if cfg!(target_arch = "x86_64") {
        // The x32 ABI's numbers have bit 30 set.
        f.push(jump(BPF_JMP | BPF_JGE | BPF_K, 0x4000_0000, 0, 1));
        f.push(stmt(BPF_RET | BPF_K, eperm));
    }
    for nr in DENIED_SYSCALLS {
        f.push(jump(BPF_JMP | BPF_JEQ | BPF_K, *nr as u32, 0, 1));
        f.push(stmt(BPF_RET | BPF_K, eperm));
    }
    f.push(jump(
        BPF_JMP | BPF_JEQ | BPF_K,
        libc::SYS_clone3 as u32,
        0,
        1,
    ));
    f.push(stmt(BPF_RET | BPF_K, enosys));
    f.push(jump(
        BPF_JMP | BPF_JEQ | BPF_K,
        libc::SYS_clone as u32,
        0,
        3,
    ));
    f.push(stmt(BPF_LD | BPF_W | BPF_ABS, 16)); // args[0], low half
    f.push(jump(BPF_JMP | BPF_JSET | BPF_K, ns_flags, 0, 1));
    f.push(stmt(BPF_RET | BPF_K, eperm));
    f.push(stmt(BPF_RET | BPF_K, libc::SECCOMP_RET_ALLOW));
    f
}

/// Tries every piece in a throwaway child exactly as a task would get it (a PID namespace, a
/// mount namespace pivoted into a root built like a task's, capabilities dropped, uid
/// `probe_uid`, no-new-privs, the seccomp filter), and returns what worked and, for what did
/// not, why. `root_dir` is created (the mount point of tasks' roots); `work_dir/run/.probe`
/// plays the sandbox.
pub fn probe(root_dir: &Path, work_dir: &Path, probe_uid: u32) -> Vec<(Piece, Result<(), String>)> {
    let all_fail = |why: String| Piece::ALL.iter().map(|p| (*p, Err(why.clone()))).collect();
    let sandbox = work_dir.join("run").join(".probe");
    let tmp = sandbox.join(".tmp");
    if let Err(e) = std::fs::create_dir_all(root_dir).and_then(|()| std::fs::create_dir_all(&tmp)) {
        return all_fail(format!("cannot create {}: {e}", root_dir.display()));
    }
    let mounts = match MountPlan::for_task(root_dir, &sandbox, &tmp).prepare() {
        Ok(m) => m,
        Err(e) => return all_fail(e.to_string()),
    };
    let task = TaskIsolation {
        uid: probe_uid,
        gid: probe_uid,
        user: true,
        mounts: Some(mounts),
        pid: true,
        no_new_privs: true,
        caps: true,
        seccomp: Some(seccomp_filter()),
        last_cap: last_cap(),
    };
    let mut pipe = [0; 2];
    // SAFETY: pipe2 fills the array.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return all_fail(format!("pipe: {}", io::Error::last_os_error()));
    }
    // SAFETY: the child runs only `probe_child` (raw system calls on memory prepared above)
    // and ends in `_exit`.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return all_fail(format!("fork: {}", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            libc::close(pipe[0]);
            probe_child(&task, pipe[1])
        }
    }
    // SAFETY: closing our copy of the write end; reading into a local buffer.
    let mut report = [0i32; 6];
    let got = unsafe {
        libc::close(pipe[1]);
        let mut got = 0usize;
        let bytes = std::mem::size_of_val(&report);
        while got < bytes {
            let n = libc::read(
                pipe[0],
                report.as_mut_ptr().cast::<u8>().add(got).cast(),
                bytes - got,
            );
            if n <= 0 {
                if n < 0 && errno() == libc::EINTR {
                    continue;
                }
                break;
            }
            got += n as usize;
        }
        libc::close(pipe[0]);
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) < 0 && errno() == libc::EINTR {}
        got == bytes
    };
    let _ = std::fs::remove_dir_all(&sandbox);
    if !got {
        return all_fail("the probe process died before reporting".into());
    }
    Piece::ALL
        .iter()
        .map(|p| {
            let e = report[p.index()];
            (
                *p,
                match e {
                    0 => Ok(()),
                    -1 => Err("not tried: an earlier step failed".into()),
                    e => Err(io::Error::from_raw_os_error(e).to_string()),
                },
            )
        })
        .collect()
}

/// The probe's child: report slot per piece, 0 = worked, errno, or -1 = not tried.
unsafe fn probe_child(t: &TaskIsolation, out: RawFdInt) -> ! {
    unsafe {
        let mut report = [-1i32; 6];
        report[Piece::Pid.index()] = if libc::unshare(libc::CLONE_NEWPID) == 0 {
            0
        } else {
            errno()
        };
        // The first child in the new PID namespace is its PID 1, as a task's init is.
        let child = libc::fork();
        if child < 0 {
            libc::_exit(1);
        }
        if child > 0 {
            let mut status = 0;
            while libc::waitpid(child, &mut status, 0) < 0 && errno() == libc::EINTR {}
            libc::_exit(0);
        }
        if report[Piece::Pid.index()] == 0 && libc::getpid() != 1 {
            report[Piece::Pid.index()] = libc::EINVAL;
        }
        if let Some(m) = &t.mounts {
            report[Piece::Mount.index()] = match m.apply() {
                Ok(()) => 0,
                Err(e) => e.errno,
            };
        }
        // In the order a task applies them (capabilities go with the uid change, so they
        // cannot be tried apart): what comes before the failing piece worked, what comes after
        // was not tried.
        let privileges = TaskIsolation {
            uid: t.uid,
            gid: t.gid,
            user: true,
            mounts: None,
            pid: false,
            no_new_privs: true,
            caps: true,
            seccomp: None,
            last_cap: t.last_cap,
        };
        match privileges.drop_privileges() {
            Ok(()) => {
                for p in [Piece::Caps, Piece::User, Piece::NoNewPrivs] {
                    report[p.index()] = 0;
                }
            }
            Err(e) => {
                let order = [Piece::Caps, Piece::User, Piece::NoNewPrivs];
                for p in order.iter().take_while(|p| **p != e.piece) {
                    report[p.index()] = 0;
                }
                report[e.piece.index()] = e.errno.max(1);
            }
        }
        if report[Piece::NoNewPrivs.index()] == 0
            && let Some(filter) = &t.seccomp
        {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            let r = libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
                0,
                0,
            );
            // The filter must deny what it says it denies.
            report[Piece::Seccomp.index()] = if r != 0 {
                errno().max(1)
            } else if libc::syscall(libc::SYS_unshare, 0) == 0 || errno() != libc::EPERM {
                libc::EINVAL
            } else {
                0
            };
        }
        let bytes = std::slice::from_raw_parts(
            report.as_ptr().cast::<u8>(),
            std::mem::size_of_val(&report),
        );
        libc::write(out, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(0)
    }
}

type RawFdInt = libc::c_int;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_ranges_and_users_parse() {
        assert_eq!(
            TaskUser::parse_range("100-200").unwrap(),
            TaskUser::Range {
                first: 100,
                last: 200
            }
        );
        assert!(TaskUser::parse_range("0-10").is_err());
        assert!(TaskUser::parse_range("10-5").is_err());
        assert!(TaskUser::parse_range("10").is_err());
        assert!(TaskUser::named("root").is_err());
        assert!(TaskUser::named("0").is_err());
        assert!(matches!(
            TaskUser::named("nobody"),
            Ok(TaskUser::Fixed { uid: 65534, .. })
        ));
        assert!(TaskUser::named("no-such-user-xyz").is_err());
    }

    #[test]
    fn uids_are_stable_per_framework_and_never_shared() {
        let dir = tempfile::tempdir().unwrap();
        let a = UidAllocator::new(dir.path().join("uids"), 1000, 1001);
        let x = a.uid_for("fw-x").unwrap();
        let y = a.uid_for("fw-y").unwrap();
        assert_ne!(x, y);
        assert_eq!(a.uid_for("fw-x").unwrap(), x);
        assert!(matches!(
            a.uid_for("fw-z"),
            Err(IsolationError::RangeExhausted { .. })
        ));
        // A restarted agent finds the same claims.
        let b = UidAllocator::new(dir.path().join("uids"), 1000, 1001);
        assert_eq!(b.uid_for("fw-y").unwrap(), y);
        assert_eq!(b.uid_for("fw-x").unwrap(), x);
    }

    fn with_missing(allow_weak: bool) -> Isolation {
        let mut on = [true; 6];
        on[Piece::Pid.index()] = false;
        Isolation {
            config: IsolationConfig {
                allow_weak,
                ..IsolationConfig::default()
            },
            on,
            missing: vec!["pid (Operation not permitted (os error 1))".into()],
            root_dir: PathBuf::from("/nonexistent"),
            uids: None,
        }
    }

    #[test]
    fn a_missing_piece_refuses_native_tasks_unless_weak_isolation_is_accepted() {
        let strict = with_missing(false);
        let why = strict.refusal().expect("refused");
        assert!(
            why.contains("missing pid (Operation not permitted"),
            "{why}"
        );
        assert!(why.contains("--allow-weak-isolation"), "{why}");
        assert!(strict.warning().is_none());

        let weak = with_missing(true);
        assert!(weak.refusal().is_none());
        let w = weak.warning().expect("a warning");
        assert!(w.contains("without pid"), "{w}");
        assert!(!weak.enabled().contains(&"pid".to_string()));
        assert!(weak.enabled().contains(&"mount".to_string()));
    }

    #[test]
    fn seccomp_without_no_new_privs_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let iso = Isolation::new(
            IsolationConfig {
                wanted: vec![Piece::Seccomp],
                ..IsolationConfig::default()
            },
            dir.path(),
        );
        assert!(!iso.is_on(Piece::Seccomp));
        assert!(iso.refusal().unwrap().contains("needs no_new_privs"));
    }

    #[test]
    fn the_filter_ends_in_allow_and_names_ptrace() {
        let f = seccomp_filter();
        assert_eq!(f.last().unwrap().k, libc::SECCOMP_RET_ALLOW);
        assert!(f.iter().any(|i| i.k == libc::SYS_ptrace as u32));
        assert!(f.len() < 256);
    }
}
