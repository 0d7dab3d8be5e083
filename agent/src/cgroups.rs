//! Control groups for native tasks: finding the hierarchy (v2 where mounted, v1 otherwise),
//! creating one cgroup per task with CPU, memory and pids limits, signalling and listing its
//! processes, reading its statistics and OOM count, and removing it.
//!
//! This talks to cgroupfs directly rather than through a crate: the agent needs only a handful
//! of files, must do the same on v1 and v2, and must be able to reopen a cgroup from a path it
//! checkpointed before a restart. On v1 a task's cgroup is one directory per controller (`cpu`,
//! `memory`, `pids`), nested under the agent's own cgroup of that controller so that the
//! agent's container limits still apply; on v2 it is one directory under `root` (default
//! `/sys/fs/cgroup/wasmos`) with the three controllers enabled on the way down.
//!
//! What lives elsewhere: starting processes in the cgroup (`launcher`), deciding what a task's
//! exit means (`native`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The v1 controllers a task's cgroup uses.
const V1_CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];
/// The CFS period used for every task (100 ms, the kernel's default).
const CFS_PERIOD_US: u64 = 100_000;

/// Why the agent cannot use cgroups, or a cgroup operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "cgroups are not usable: {0}; native (command) tasks are refused on this agent \
         (run the agent as root on Linux with the cpu, memory and pids controllers mounted)"
    )]
    /// cgroups cannot be used on this machine; says why.
    Unavailable(String),
    /// An operation on one cgroup's files failed.
    #[error("cgroup {path}: {op}: {source}")]
    Io {
        /// The cgroup file or directory.
        path: PathBuf,
        /// What was being done to it.
        op: &'static str,
        /// What the kernel said.
        source: io::Error,
    },
}

fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> CgroupError + use<> {
    let path = path.to_path_buf();
    move |source| CgroupError::Io { path, op, source }
}

/// Which cgroup hierarchy is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CgroupVersion {
    /// cgroup v1: one hierarchy per controller (`cpu`, `memory`, `pids`).
    V1,
    /// cgroup v2: the unified hierarchy.
    V2,
}

/// Limits applied to one task's cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CgroupLimits {
    /// CPU in thousandths of a core, enforced as a CFS quota per 100 ms period.
    pub millicpus: u64,
    /// Memory in bytes (hard limit; the OOM killer acts past it).
    pub memory_bytes: u64,
    /// Most processes and threads.
    pub pids: u64,
}

/// CPU statistics of a cgroup, from its own `cpu.stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Periods in which the cgroup ran.
    pub nr_periods: u64,
    /// Periods in which it was throttled for using up its quota.
    pub nr_throttled: u64,
    /// Total time throttled.
    pub throttled: Duration,
}

/// The agent's cgroup hierarchy: where task cgroups are created.
#[derive(Clone, Debug)]
pub struct CgroupHierarchy {
    version: CgroupVersion,
    /// v1: one base directory per controller (in [`V1_CONTROLLERS`] order); v2: one.
    bases: Vec<PathBuf>,
}

/// One task's cgroup. Plain paths, so it can be checkpointed and reopened after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskCgroup {
    /// The cgroup hierarchy it lives in.
    pub version: CgroupVersion,
    /// v1: the `cpu`, `memory` and `pids` directories; v2: the one directory.
    pub dirs: Vec<PathBuf>,
}

impl CgroupHierarchy {
    /// Detects the hierarchy: v2 when `/sys/fs/cgroup/cgroup.controllers` exists, v1 otherwise.
    /// `name` is the directory the agent creates its task cgroups under (e.g. `wasmos`).
    /// Fails, saying why, when cgroups cannot be used (not Linux, not root, not mounted).
    pub fn detect(name: &str) -> Result<Self, CgroupError> {
        if !cfg!(target_os = "linux") {
            return Err(CgroupError::Unavailable(
                "this is not Linux, and cgroups exist only on Linux".into(),
            ));
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(CgroupError::Unavailable(
                "the agent is not running as root, so it cannot create cgroups".into(),
            ));
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").map_err(|e| {
            CgroupError::Unavailable(format!("cannot read /proc/self/mountinfo: {e}"))
        })?;
        let self_cgroup = fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| CgroupError::Unavailable(format!("cannot read /proc/self/cgroup: {e}")))?;
        let h = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            Self::v2_at(Path::new("/sys/fs/cgroup").join(name))?
        } else {
            let mut bases = Vec::new();
            for c in V1_CONTROLLERS {
                let mount = v1_mount(&mountinfo, c).ok_or_else(|| {
                    CgroupError::Unavailable(format!(
                        "the cgroup v1 controller {c:?} is not mounted (see /proc/self/mountinfo)"
                    ))
                })?;
                let own = v1_self_path(&self_cgroup, c).unwrap_or_else(|| "/".into());
                bases.push(mount.join(own.trim_start_matches('/')).join(name));
            }
            CgroupHierarchy {
                version: CgroupVersion::V1,
                bases,
            }
        };
        h.prepare()?;
        Ok(h)
    }

    /// A v2 hierarchy rooted at `root` (whose parent must be a cgroup v2 directory).
    pub fn v2_at(root: PathBuf) -> Result<Self, CgroupError> {
        Ok(CgroupHierarchy {
            version: CgroupVersion::V2,
            bases: vec![root],
        })
    }

    /// The version in use.
    pub fn version(&self) -> CgroupVersion {
        self.version
    }

    /// Creates the base directories and, on v2, enables the controllers for their children.
    fn prepare(&self) -> Result<(), CgroupError> {
        for base in &self.bases {
            fs::create_dir_all(base).map_err(|e| {
                CgroupError::Unavailable(format!("cannot create cgroup {}: {e}", base.display()))
            })?;
        }
        if self.version == CgroupVersion::V2 {
            let base = &self.bases[0];
            if let Some(parent) = base.parent() {
                enable_v2_controllers(parent)?;
            }
            enable_v2_controllers(base)?;
        }
        Ok(())
    }

    /// The cgroup `<base>/<group>/<leaf>` if it exists (one a task of an earlier agent left).
    pub fn existing(&self, group: &str, leaf: &str) -> Option<TaskCgroup> {
        let cg = TaskCgroup {
            version: self.version,
            dirs: self
                .bases
                .iter()
                .map(|b| b.join(group).join(leaf))
                .collect(),
        };
        cg.exists().then_some(cg)
    }

    /// Creates the cgroup `<base>/<group>/<leaf>` with `limits`. An existing one (left by a
    /// crash) is reused after its limits are rewritten.
    pub fn create(
        &self,
        group: &str,
        leaf: &str,
        limits: &CgroupLimits,
    ) -> Result<TaskCgroup, CgroupError> {
        let mut dirs = Vec::new();
        for base in &self.bases {
            let mid = base.join(group);
            if self.version == CgroupVersion::V2 && !mid.exists() {
                fs::create_dir_all(&mid).map_err(io_err(&mid, "create"))?;
                enable_v2_controllers(&mid)?;
            }
            let dir = mid.join(leaf);
            fs::create_dir_all(&dir).map_err(io_err(&dir, "create"))?;
            dirs.push(dir);
        }
        let cg = TaskCgroup {
            version: self.version,
            dirs,
        };
        if let Err(e) = cg.apply_limits(limits) {
            cg.remove();
            return Err(e);
        }
        Ok(cg)
    }
}

fn enable_v2_controllers(dir: &Path) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.subtree_control");
    let current = fs::read_to_string(&path).unwrap_or_default();
    for c in ["cpu", "memory", "pids"] {
        if current.split_whitespace().any(|x| x == c) {
            continue;
        }
        fs::write(&path, format!("+{c}")).map_err(|e| {
            CgroupError::Unavailable(format!(
                "cannot enable the {c} controller in {} ({e}); on cgroup v2 the agent needs a \
                 delegated subtree whose parent holds no processes",
                path.display()
            ))
        })?;
    }
    Ok(())
}

/// The mount point of the v1 hierarchy that carries `controller`, from `/proc/self/mountinfo`.
fn v1_mount(mountinfo: &str, controller: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (left, right) = line.split_once(" - ")?;
        let mut r = right.split_whitespace();
        if r.next()? != "cgroup" {
            return None;
        }
        let _source = r.next()?;
        let opts = r.next()?;
        if !opts.split(',').any(|o| o == controller) {
            return None;
        }
        left.split_whitespace().nth(4).map(PathBuf::from)
    })
}

/// This process's path in the v1 hierarchy of `controller`, from `/proc/self/cgroup`.
fn v1_self_path(self_cgroup: &str, controller: &str) -> Option<String> {
    self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

impl TaskCgroup {
    fn dir_of(&self, controller: &str) -> &Path {
        match self.version {
            CgroupVersion::V2 => &self.dirs[0],
            CgroupVersion::V1 => {
                let i = V1_CONTROLLERS
                    .iter()
                    .position(|c| *c == controller)
                    .unwrap_or(0);
                self.dirs.get(i).unwrap_or(&self.dirs[0])
            }
        }
    }

    fn write(&self, controller: &str, file: &str, value: &str) -> Result<(), CgroupError> {
        let path = self.dir_of(controller).join(file);
        fs::write(&path, value).map_err(io_err(&path, "write"))
    }

    fn read(&self, controller: &str, file: &str) -> Result<String, CgroupError> {
        let path = self.dir_of(controller).join(file);
        fs::read_to_string(&path).map_err(io_err(&path, "read"))
    }

    /// Writes the memory and pids limits and lifts the CPU quota: the task's own quota is
    /// applied by [`TaskCgroup::limit_cpu`] once it has started, so that starting it (the
    /// forks and the exec that tear down a copy of the agent's address space, a few ms of
    /// CPU) is not throttled to the task's share: at 0.01 CPU, 1 ms per 100 ms period, each
    /// step of the start waited a whole period.
    fn apply_limits(&self, l: &CgroupLimits) -> Result<(), CgroupError> {
        let mem = l.memory_bytes.max(4 << 20);
        match self.version {
            CgroupVersion::V1 => {
                self.write("cpu", "cpu.cfs_period_us", &CFS_PERIOD_US.to_string())?;
                self.write("cpu", "cpu.cfs_quota_us", "-1")?;
                self.write("memory", "memory.limit_in_bytes", &mem.to_string())?;
                // Without swap accounting this file is absent; with it, swap must not extend
                // the limit.
                if self
                    .dir_of("memory")
                    .join("memory.memsw.limit_in_bytes")
                    .exists()
                {
                    self.write("memory", "memory.memsw.limit_in_bytes", &mem.to_string())?;
                }
                self.write("pids", "pids.max", &l.pids.to_string())?;
            }
            CgroupVersion::V2 => {
                self.write("cpu", "cpu.max", &format!("max {CFS_PERIOD_US}"))?;
                self.write("memory", "memory.max", &mem.to_string())?;
                if self.dir_of("memory").join("memory.swap.max").exists() {
                    self.write("memory", "memory.swap.max", "0")?;
                }
                self.write("pids", "pids.max", &l.pids.to_string())?;
            }
        }
        Ok(())
    }

    /// Holds the cgroup to `millicpus` of CPU (a CFS quota per 100 ms period, at least 1 ms):
    /// called once its task has started (see [`TaskCgroup::apply_limits`]).
    pub fn limit_cpu(&self, millicpus: u64) -> Result<(), CgroupError> {
        let quota = (millicpus.max(10) * CFS_PERIOD_US / 1000).max(1000);
        match self.version {
            CgroupVersion::V1 => self.write("cpu", "cpu.cfs_quota_us", &quota.to_string()),
            CgroupVersion::V2 => self.write("cpu", "cpu.max", &format!("{quota} {CFS_PERIOD_US}")),
        }
    }

    /// The files a new, single-threaded process writes `0` into to join the cgroup (one per
    /// v1 controller). On v1 that is `tasks`, which moves the one thread: `cgroup.procs` moves
    /// a whole thread group under a global lock whose every write waited for an RCU grace
    /// period (10-18 ms measured on a v1 host, against 0.13 ms for `tasks`). On v2 it is
    /// `cgroup.procs` (`cgroup.threads` needs a threaded cgroup).
    pub fn procs_files(&self) -> Vec<PathBuf> {
        let file = match self.version {
            CgroupVersion::V1 => "tasks",
            CgroupVersion::V2 => "cgroup.procs",
        };
        self.dirs.iter().map(|d| d.join(file)).collect()
    }

    /// The processes in the cgroup now.
    pub fn pids(&self) -> Vec<i32> {
        // On v1 every controller directory holds the same processes; `pids` is the one a
        // process cannot leave by forking faster than we read.
        self.read("pids", "cgroup.procs")
            .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Sends `signal` to every process in the cgroup; returns how many were signalled.
    pub fn signal_all(&self, signal: i32) -> usize {
        if signal == libc::SIGKILL
            && self.version == CgroupVersion::V2
            && self.dirs[0].join("cgroup.kill").exists()
            && self.write("pids", "cgroup.kill", "1").is_ok()
        {
            return self.pids().len().max(1);
        }
        let pids = self.pids();
        for &pid in &pids {
            // SAFETY: kill has no memory-safety preconditions; a pid that exited meanwhile
            // gives ESRCH, which is fine.
            unsafe {
                libc::kill(pid, signal);
            }
        }
        pids.len()
    }

    /// CPU statistics from the cgroup's own `cpu.stat`.
    pub fn cpu_stats(&self) -> Result<CpuStats, CgroupError> {
        let text = self.read("cpu", "cpu.stat")?;
        let mut s = CpuStats::default();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(k), Some(v)) = (it.next(), it.next().and_then(|v| v.parse::<u64>().ok()))
            else {
                continue;
            };
            match k {
                "nr_periods" => s.nr_periods = v,
                "nr_throttled" => s.nr_throttled = v,
                // v1 counts nanoseconds, v2 microseconds.
                "throttled_time" => s.throttled = Duration::from_nanos(v),
                "throttled_usec" => s.throttled = Duration::from_micros(v),
                _ => {}
            }
        }
        Ok(s)
    }

    /// The CPU quota as (quota, period) in microseconds; `None` for no quota.
    pub fn cpu_quota(&self) -> Result<Option<(u64, u64)>, CgroupError> {
        match self.version {
            CgroupVersion::V1 => {
                let q = self.read("cpu", "cpu.cfs_quota_us")?;
                let p = self.read("cpu", "cpu.cfs_period_us")?;
                Ok(q.trim().parse::<u64>().ok().zip(p.trim().parse().ok()))
            }
            CgroupVersion::V2 => {
                let t = self.read("cpu", "cpu.max")?;
                let mut it = t.split_whitespace();
                Ok(it
                    .next()
                    .and_then(|q| q.parse().ok())
                    .zip(it.next().and_then(|p| p.parse().ok())))
            }
        }
    }

    /// How many times the kernel's OOM killer killed a process of this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let (file, key) = match self.version {
            CgroupVersion::V1 => ("memory.oom_control", "oom_kill"),
            CgroupVersion::V2 => ("memory.events", "oom_kill"),
        };
        let Ok(text) = self.read("memory", file) else {
            return 0;
        };
        let count = text.lines().find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(key))
                .then(|| it.next().and_then(|v| v.parse::<u64>().ok()))
                .flatten()
        });
        match count {
            Some(n) => n,
            // Kernels before 4.13 have no oom_kill counter on v1: a process hit the limit
            // and the cgroup was under OOM.
            None if self.version == CgroupVersion::V1 => {
                let under = text.lines().any(|l| l.trim() == "under_oom 1");
                let failcnt = self
                    .read("memory", "memory.failcnt")
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                u64::from(under && failcnt > 0)
            }
            None => 0,
        }
    }

    /// The memory limit in bytes, as the kernel holds it.
    pub fn memory_limit(&self) -> Result<u64, CgroupError> {
        let file = match self.version {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        };
        let t = self.read("memory", file)?;
        Ok(t.trim().parse().unwrap_or(u64::MAX))
    }

    /// True when the cgroup's directories still exist.
    pub fn exists(&self) -> bool {
        self.dirs.iter().any(|d| d.exists())
    }

    /// Kills whatever is left in the cgroup and removes its directories (and the group
    /// directory above them when it is empty). Best effort: a directory that cannot be removed
    /// is logged, since leaving one behind costs little.
    pub fn remove(&self) {
        for attempt in 0..50 {
            if self.pids().is_empty() {
                break;
            }
            self.signal_all(libc::SIGKILL);
            std::thread::sleep(Duration::from_millis(if attempt < 10 { 2 } else { 20 }));
        }
        for dir in &self.dirs {
            let mut last = None;
            for _ in 0..20 {
                match fs::remove_dir(dir) {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        last = None;
                        break;
                    }
                    Err(e) => {
                        last = Some(e);
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
            if let Some(e) = last {
                tracing::warn!(cgroup = %dir.display(), error = %e, "cannot remove task cgroup");
            }
            if let Some(parent) = dir.parent() {
                // Fails while other tasks of the framework run; that is expected.
                let _ = fs::remove_dir(parent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
29 23 0:26 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
30 23 0:27 / /sys/fs/cgroup/cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpuacct
32 23 0:29 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
35 23 0:32 / /sys/fs/cgroup/pids rw,relatime shared:15 - cgroup cgroup rw,pids
36 23 0:33 / /sys/fs/cgroup/unified rw,relatime shared:16 - cgroup2 cgroup2 rw
40 23 0:34 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct";

    #[test]
    fn finds_v1_mounts_by_controller_option() {
        assert_eq!(
            v1_mount(MOUNTINFO, "cpu"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu"))
        );
        assert_eq!(
            v1_mount(MOUNTINFO, "memory"),
            Some(PathBuf::from("/sys/fs/cgroup/memory"))
        );
        assert_eq!(v1_mount(MOUNTINFO, "blkio"), None);
    }

    #[test]
    fn finds_own_v1_path() {
        let s = "4:memory:/process_api/abc\n1:cpu,cpuacct:/\n0::/";
        assert_eq!(
            v1_self_path(s, "memory").as_deref(),
            Some("/process_api/abc")
        );
        assert_eq!(v1_self_path(s, "cpuacct").as_deref(), Some("/"));
        assert_eq!(v1_self_path(s, "pids"), None);
    }

    #[test]
    fn parses_cpu_stat_of_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        let cg = TaskCgroup {
            version: CgroupVersion::V2,
            dirs: vec![dir.path().to_path_buf()],
        };
        fs::write(
            dir.path().join("cpu.stat"),
            "usage_usec 10\nnr_periods 7\nnr_throttled 3\nthrottled_usec 1500\n",
        )
        .unwrap();
        let s = cg.cpu_stats().unwrap();
        assert_eq!((s.nr_periods, s.nr_throttled), (7, 3));
        assert_eq!(s.throttled, Duration::from_micros(1500));
        fs::write(
            dir.path().join("memory.events"),
            "low 0\noom 1\noom_kill 2\n",
        )
        .unwrap();
        assert_eq!(cg.oom_kills(), 2);
        fs::write(dir.path().join("cpu.max"), "50000 100000\n").unwrap();
        assert_eq!(cg.cpu_quota().unwrap(), Some((50_000, 100_000)));
    }

    /// The cgroup2 mount of a hybrid host (v1 controllers, an empty unified hierarchy), if
    /// this process may write there.
    fn unified_mount() -> Option<PathBuf> {
        let p = PathBuf::from("/sys/fs/cgroup/unified");
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        (root && p.join("cgroup.procs").exists()).then_some(p)
    }

    /// cgroup v2 as far as a hybrid host allows: its cgroup2 hierarchy has no controllers
    /// (cpu, memory and pids are bound to the v1 hierarchies and cannot move while those hold
    /// cgroups), so a v2 hierarchy there is refused, naming the controller it cannot enable
    /// and what the agent needs; and a v2 cgroup's limits are written as the v2 files.
    #[test]
    fn a_v2_hierarchy_without_controllers_is_refused_and_v2_limits_are_the_v2_files() {
        if let Some(unified) = unified_mount() {
            let h = CgroupHierarchy::v2_at(unified.join("wasmos-test-refusal")).unwrap();
            let e = h.prepare().unwrap_err().to_string();
            let _ = fs::remove_dir(unified.join("wasmos-test-refusal"));
            assert!(
                e.contains("cannot enable the cpu controller") && e.contains("delegated subtree"),
                "{e}"
            );
        } else {
            wasmos_test_skip::optional(
                "a writable hybrid cgroup2 mount (/sys/fs/cgroup/unified) for its refusal half",
                Some("none here"),
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let cg = TaskCgroup {
            version: CgroupVersion::V2,
            dirs: vec![dir.path().to_path_buf()],
        };
        fs::write(dir.path().join("memory.swap.max"), "max").unwrap();
        cg.apply_limits(&CgroupLimits {
            millicpus: 250,
            memory_bytes: 64 << 20,
            pids: 100,
        })
        .unwrap();
        let read = |f: &str| fs::read_to_string(dir.path().join(f)).unwrap();
        assert_eq!(read("cpu.max"), format!("max {CFS_PERIOD_US}"));
        cg.limit_cpu(250).unwrap();
        assert_eq!(
            read("cpu.max"),
            format!("{} {CFS_PERIOD_US}", CFS_PERIOD_US / 4)
        );
        assert_eq!(read("memory.max"), (64u64 << 20).to_string());
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("pids.max"), "100");
    }

    /// A process placed in a real v2 cgroup (on the host's cgroup2 mount) through
    /// `procs_files` is listed by `pids`, and `signal_all(SIGKILL)` ends it through
    /// `cgroup.kill`; `remove` then removes the cgroup.
    #[test]
    fn a_process_in_a_v2_cgroup_is_listed_and_killed_through_cgroup_kill() {
        let Some(unified) = unified_mount() else {
            wasmos_test_skip::optional(
                "a writable hybrid cgroup2 mount (/sys/fs/cgroup/unified)",
                Some("none here"),
            );
            return;
        };
        let dir = unified.join(format!("wasmos-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let cg = TaskCgroup {
            version: CgroupVersion::V2,
            dirs: vec![dir.clone()],
        };
        assert!(
            dir.join("cgroup.kill").exists(),
            "this kernel has cgroup.kill"
        );
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        for f in cg.procs_files() {
            fs::write(f, pid.to_string()).unwrap();
        }
        assert_eq!(cg.pids(), vec![pid]);
        assert_eq!(cg.signal_all(libc::SIGKILL), 1);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        cg.remove();
        assert!(!dir.exists(), "the cgroup was removed");
    }
}
