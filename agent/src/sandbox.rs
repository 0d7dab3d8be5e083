//! Task sandboxes: one directory per task, and their garbage collection.
//!
//! ```text
//! <work_dir>/sandboxes/<framework_id>/<task_id>/   the task's working directory, with its
//!                                                  stdout and stderr files
//! <work_dir>/run/<framework_id>/<task_id>.exit     how a native task ended (its supervisor
//!                                                  writes it; outside the task's directory)
//! <work_dir>/run/<framework_id>/<task_id>.done     when the task ended (its age drives GC)
//! ```
//!
//! A finished task's sandbox is kept for the retention time so people can read its output, and
//! removed earlier, oldest first, when the disk holding the work directory runs low. A
//! sandbox of a task that still runs is never removed.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use wasmos_api::{FrameworkId, TaskId};

/// When sandboxes are removed.
#[derive(Clone, Copy, Debug)]
pub struct GcPolicy {
    /// How long a finished task's sandbox is kept.
    pub retention: Duration,
    /// Below this much free space on the work directory's disk, finished sandboxes are removed
    /// oldest first regardless of age.
    pub min_free_bytes: u64,
}

impl Default for GcPolicy {
    fn default() -> Self {
        GcPolicy {
            retention: Duration::from_secs(7 * 24 * 3600),
            min_free_bytes: 1 << 30,
        }
    }
}

/// What a GC pass removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// (framework, task) of each removed sandbox.
    pub removed: Vec<(String, String)>,
}

/// The sandboxes under one work directory.
#[derive(Clone, Debug)]
pub struct Sandboxes {
    sandboxes: PathBuf,
    run: PathBuf,
}

impl Sandboxes {
    /// Sandboxes under `work_dir`.
    pub fn new(work_dir: &Path) -> Self {
        Sandboxes {
            sandboxes: work_dir.join("sandboxes"),
            run: work_dir.join("run"),
        }
    }

    /// The sandbox directory of a task.
    pub fn dir(&self, framework_id: &FrameworkId, task_id: &TaskId) -> PathBuf {
        // Ids are validated to be plain file names.
        self.sandboxes
            .join(framework_id.as_str())
            .join(task_id.as_str())
    }

    /// Where a native task's exit is recorded.
    pub fn exit_file(&self, framework_id: &FrameworkId, task_id: &TaskId) -> PathBuf {
        self.run
            .join(framework_id.as_str())
            .join(format!("{}.exit", task_id.as_str()))
    }

    fn done_file(&self, framework: &str, task: &str) -> PathBuf {
        self.run.join(framework).join(format!("{task}.done"))
    }

    /// Creates a fresh sandbox for a task (a leftover of an earlier task with the same id is
    /// removed first).
    pub fn create(&self, framework_id: &FrameworkId, task_id: &TaskId) -> io::Result<PathBuf> {
        let dir = self.dir(framework_id, task_id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        std::fs::create_dir_all(self.run.join(framework_id.as_str()))?;
        let _ = std::fs::remove_file(self.done_file(framework_id.as_str(), task_id.as_str()));
        Ok(dir)
    }

    /// (framework, task) of every sandbox under the work dir.
    pub fn list(&self) -> Vec<(String, String)> {
        let mut all = Vec::new();
        for fw in read_names(&self.sandboxes) {
            for task in read_names(&self.sandboxes.join(&fw)) {
                all.push((fw.clone(), task));
            }
        }
        all
    }

    /// Records that a task ended now; its sandbox becomes eligible for GC.
    pub fn mark_done(&self, framework_id: &FrameworkId, task_id: &TaskId) {
        let path = self.done_file(framework_id.as_str(), task_id.as_str());
        if let Err(e) = std::fs::write(&path, b"") {
            tracing::debug!(path = %path.display(), error = %e, "cannot mark sandbox done");
        }
    }

    /// Removes sandboxes of finished tasks older than the retention time, then, while the disk
    /// has less than `min_free_bytes` free, the oldest remaining finished ones. `live` holds
    /// (framework, task) of tasks that still run; theirs are never touched.
    pub fn gc(&self, policy: &GcPolicy, live: &HashSet<(String, String)>) -> GcReport {
        let mut finished: Vec<(SystemTime, String, String)> = Vec::new();
        for fw in read_names(&self.sandboxes) {
            for task in read_names(&self.sandboxes.join(&fw)) {
                if live.contains(&(fw.clone(), task.clone())) {
                    continue;
                }
                let done = self.done_file(&fw, &task);
                // A sandbox with no done mark and no live task is a leftover (a crash between
                // creating it and launching); its own age stands in.
                let at = std::fs::metadata(&done)
                    .or_else(|_| std::fs::metadata(self.sandboxes.join(&fw).join(&task)))
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                finished.push((at, fw.clone(), task));
            }
        }
        finished.sort();
        let now = SystemTime::now();
        let mut report = GcReport::default();
        for (at, fw, task) in finished {
            let expired = now.duration_since(at).unwrap_or_default() >= policy.retention;
            let low_disk = free_bytes(&self.sandboxes).is_some_and(|f| f < policy.min_free_bytes);
            if !(expired || low_disk) {
                // Sorted oldest first: once one is neither expired nor needed for space,
                // it could still be needed for space later in the loop only if the disk
                // filled up meanwhile; the next pass handles that.
                continue;
            }
            let dir = self.sandboxes.join(&fw).join(&task);
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {
                    let _ = std::fs::remove_file(self.done_file(&fw, &task));
                    report.removed.push((fw.clone(), task));
                }
                Err(e) => {
                    tracing::warn!(sandbox = %dir.display(), error = %e, "cannot remove sandbox")
                }
            }
            let _ = std::fs::remove_dir(self.sandboxes.join(&fw));
        }
        report
    }
}

fn read_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Free bytes on the filesystem holding `path` (available to unprivileged users).
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we pass; `c` is a valid C string.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
}

/// Total bytes of the filesystem holding `path`.
pub fn total_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: as in `free_bytes`.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some((s.f_blocks as u64).saturating_mul(s.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(f: &str, t: &str) -> (FrameworkId, TaskId) {
        (FrameworkId::new(f).unwrap(), TaskId::new(t).unwrap())
    }

    #[test]
    fn gc_removes_expired_finished_sandboxes_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sandboxes::new(dir.path());
        let (fw, done) = ids("fw", "done");
        let (_, running) = ids("fw", "running");
        s.create(&fw, &done).unwrap();
        std::fs::write(s.dir(&fw, &done).join("stdout"), "x").unwrap();
        s.mark_done(&fw, &done);
        s.create(&fw, &running).unwrap();
        let live: HashSet<_> = [("fw".to_string(), "running".to_string())].into();

        // Within retention and plenty of disk: nothing goes.
        let keep = GcPolicy {
            retention: Duration::from_secs(3600),
            min_free_bytes: 0,
        };
        assert!(s.gc(&keep, &live).removed.is_empty());

        // Expired: the finished one goes, the running one stays.
        let expire = GcPolicy {
            retention: Duration::ZERO,
            min_free_bytes: 0,
        };
        let r = s.gc(&expire, &live);
        assert_eq!(r.removed, vec![("fw".to_string(), "done".to_string())]);
        assert!(!s.dir(&fw, &done).exists());
        assert!(s.dir(&fw, &running).exists());
    }

    #[test]
    fn gc_frees_space_when_the_disk_runs_low() {
        let dir = tempfile::tempdir().unwrap();
        let s = Sandboxes::new(dir.path());
        let (fw, a) = ids("fw", "a");
        s.create(&fw, &a).unwrap();
        s.mark_done(&fw, &a);
        // No disk has u64::MAX bytes free, so the disk counts as low.
        let low = GcPolicy {
            retention: Duration::from_secs(3600),
            min_free_bytes: u64::MAX,
        };
        assert_eq!(s.gc(&low, &HashSet::new()).removed.len(), 1);
        assert!(!s.dir(&fw, &a).exists());
    }
}
