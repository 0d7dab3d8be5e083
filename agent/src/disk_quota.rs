//! The disk quota of a native task's sandbox: measured usage with a kill on overrun, as
//! Mesos's `disk/du` isolator does, plus `RLIMIT_FSIZE` in the task.
//!
//! # Why measured usage
//!
//! A project quota (ext4/XFS `prjquota`) would make the kernel refuse the write that crosses
//! the quota, but it needs the file system mounted with project quotas and a project id per
//! sandbox, which an agent cannot assume (this project's own test machine mounts its work
//! directory as plain ext4). A size-limited mount (a loop device or tmpfs per sandbox) costs
//! memory or a preallocated file per task. So the agent measures: every
//! `NativeConfig::disk_watch_interval` (500 ms by default) it adds up the blocks the sandbox
//! holds, and a task over its quota is killed (SIGKILL to its cgroup, as the OOM killer does:
//! a grace period would let it write on) and fails with a reason naming the quota and the
//! usage ([`Overrun::message`]). Between two polls one file cannot pass the quota either: the
//! task runs with `RLIMIT_FSIZE` at its quota, so the write that would cross it gets SIGXFSZ
//! (or `EFBIG` when the program ignores that signal), and a task killed by SIGXFSZ fails with
//! the same reason. When a task ends, its sandbox is measured once more, so a task that
//! wrote past its quota and exited before the next poll fails too.
//!
//! # What is counted
//!
//! Allocated blocks (`st_blocks`, what `du` shows; a sparse file costs what it holds), of
//! every file, directory and symlink under the sandbox, the sandbox itself and its `stdout`
//! and `stderr` included (their size is capped by the agent, `max_output_bytes`, but they are
//! on the agent's disk like the rest). A file with several hard links is counted once;
//! symlinks are not followed (the link itself is counted); a directory on another device (a
//! mount point) is neither counted nor entered, since its space is not the sandbox's disk.
//!
//! # Bounded work
//!
//! A poll looks at no more than [`ENTRIES_PER_POLL`] directory entries (about 2 µs of system
//! time each on this project's test machine, so about 40 ms a poll): a walk of a larger
//! sandbox resumes at the next poll, so a sandbox of a million small files is measured once
//! every 50 polls (25 s at the default interval) at a cost of under a tenth of a core,
//! instead of stalling on a 2 s walk every 500 ms. A walk stops as soon as its count passes
//! the quota. Its memory is bounded by the quota too: it remembers only directories not yet
//! read and hard-linked files that hold blocks, each of which it has already counted at one
//! block (4 KiB) or more, so a walk tracks at most quota / 4 KiB of them (262,144 for a
//! 1 GiB quota, a few MiB of memory), and all of it is dropped when the task ends.
//!
//! # Freeing the space
//!
//! A task over its quota has its sandbox emptied at once, not at sandbox GC: everything is
//! removed except `stdout` and `stderr`, which are what tells the task's owner what happened.
//! They are kept (cut to `max_output_bytes` and the truncation marker, in case the task wrote
//! to them itself), so what stays is bounded by the agent's output cap, whatever the task did.
//! A `stdout` or `stderr` that is not a plain file with a single link is removed too, so that
//! truncating it cannot touch a file elsewhere.
//!
//! What lives elsewhere: the `setrlimit` in the task (`launcher`), the kill and the exit
//! report (`native`).

use std::collections::HashSet;
use std::fs::ReadDir;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most directory entries one poll of a sandbox's usage looks at; a larger sandbox is walked
/// over several polls (see the module doc).
pub const ENTRIES_PER_POLL: usize = 20_000;

/// The message of every disk-quota failure starts with this, so tools can tell it apart from
/// other failures.
pub const DISK_QUOTA_EXCEEDED: &str = "disk quota exceeded";

/// The files of a sandbox kept when it is emptied after an overrun.
pub const KEPT_FILES: [&str; 2] = ["stdout", "stderr"];

/// How a task passed its quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverrunCause {
    /// A poll found its sandbox's usage over the quota while it ran; it was killed.
    Measured,
    /// Its sandbox's usage was over the quota when it had ended (it wrote past the quota and
    /// exited before a poll saw it).
    MeasuredAtEnd,
    /// It was killed by SIGXFSZ: one file reached `RLIMIT_FSIZE`, which is the quota.
    FileSizeLimit,
}

/// A task's sandbox over its quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overrun {
    /// How it was found.
    pub cause: OverrunCause,
    /// The sandbox's usage in bytes when it was found (a lower bound when `partial`).
    pub used_bytes: u64,
    /// True when the walk stopped as soon as its count passed the quota, before it had seen
    /// the whole sandbox.
    pub partial: bool,
    /// The quota, in MiB (the task's `disk_mb`, or the agent's default for a task asking for
    /// none).
    pub limit_mb: u64,
}

impl Overrun {
    /// The task's failure reason, starting with [`DISK_QUOTA_EXCEEDED`], naming the quota and
    /// the usage.
    pub fn message(&self) -> String {
        let used = mib(self.used_bytes);
        let at_least = if self.partial { "at least " } else { "" };
        match self.cause {
            OverrunCause::Measured => format!(
                "{DISK_QUOTA_EXCEEDED}: sandbox used {at_least}{used} MiB of its {} MiB quota \
                 (disk_mb); the task was killed and its files removed except stdout and stderr",
                self.limit_mb
            ),
            OverrunCause::MeasuredAtEnd => format!(
                "{DISK_QUOTA_EXCEEDED}: sandbox used {at_least}{used} MiB of its {} MiB quota \
                 (disk_mb) when the task ended; its files were removed except stdout and stderr",
                self.limit_mb
            ),
            OverrunCause::FileSizeLimit => format!(
                "{DISK_QUOTA_EXCEEDED}: a file the command wrote reached the sandbox's {} MiB \
                 quota (disk_mb, enforced per file as RLIMIT_FSIZE) and the command was killed \
                 by SIGXFSZ; sandbox used {at_least}{used} MiB; its files were removed except \
                 stdout and stderr",
                self.limit_mb
            ),
        }
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 20) as f64)
}

/// Where a walk stands after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The walk has seen the whole tree; its usage in bytes.
    Done(u64),
    /// The walk has more to see; bytes counted so far.
    Partial(u64),
}

/// A walk adding up the blocks a directory tree holds, a bounded number of entries at a time
/// (see the module doc for what is counted and what memory it takes).
#[derive(Debug)]
pub struct UsageWalk {
    root: PathBuf,
    dev: Option<u64>,
    pending: Vec<PathBuf>,
    current: Option<ReadDir>,
    linked: HashSet<(u64, u64)>,
    bytes: u64,
}

impl UsageWalk {
    /// A walk of the tree at `root`, not started yet.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        UsageWalk {
            root: root.into(),
            dev: None,
            pending: Vec::new(),
            current: None,
            linked: HashSet::new(),
            bytes: 0,
        }
    }

    /// Bytes counted so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Looks at up to `max_entries` more entries, stopping early once the count passes
    /// `stop_above` bytes (`Step::Partial` then). Entries that vanish while it looks are
    /// skipped; a root that does not exist holds 0 bytes.
    pub fn step(&mut self, max_entries: usize, stop_above: u64) -> Step {
        let dev = match self.dev {
            Some(d) => d,
            None => match std::fs::symlink_metadata(&self.root) {
                Ok(m) => {
                    self.dev = Some(m.dev());
                    self.bytes = self.bytes.saturating_add(m.blocks() * 512);
                    if m.is_dir() {
                        self.pending.push(self.root.clone());
                    }
                    m.dev()
                }
                Err(_) => return Step::Done(0),
            },
        };
        let mut budget = max_entries;
        loop {
            if self.bytes > stop_above {
                return Step::Partial(self.bytes);
            }
            let Some(dir) = self.current.as_mut() else {
                match self.pending.pop() {
                    Some(next) => {
                        self.current = std::fs::read_dir(&next).ok();
                        continue;
                    }
                    None => return Step::Done(self.bytes),
                }
            };
            if budget == 0 {
                return Step::Partial(self.bytes);
            }
            budget -= 1;
            let Some(entry) = dir.next() else {
                self.current = None;
                continue;
            };
            let Ok(entry) = entry else { continue };
            // `DirEntry::metadata` is an `fstatat` without following symlinks.
            let Ok(m) = entry.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            let blocks = m.blocks() * 512;
            if m.is_dir() {
                self.pending.push(entry.path());
            } else if m.nlink() > 1 && blocks > 0 && !self.linked.insert((m.dev(), m.ino())) {
                continue;
            }
            self.bytes = self.bytes.saturating_add(blocks);
        }
    }
}

/// The usage of the tree at `root` in bytes, walked to the end in one go, or a lower bound
/// above `stop_above` when it passes that (for a task's last measure, when it has ended).
pub fn measure(root: &Path, stop_above: u64) -> Step {
    let mut walk = UsageWalk::new(root);
    loop {
        match walk.step(usize::MAX, stop_above) {
            Step::Partial(b) if b > stop_above => return Step::Partial(b),
            Step::Partial(_) => {}
            done => return done,
        }
    }
}

/// Polls the usage of `sandbox` every `interval`, [`ENTRIES_PER_POLL`] entries a poll, and
/// resolves once it is over `limit_mb` MiB; never resolves otherwise. Dropping it stops it.
pub async fn watch(sandbox: PathBuf, limit_mb: u64, interval: Duration) -> Overrun {
    let limit = limit_mb.saturating_mul(1 << 20);
    // The first poll one interval after the start: a task that just started holds nothing.
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut walk = None;
    loop {
        ticker.tick().await;
        let mut w = walk.take().unwrap_or_else(|| UsageWalk::new(&sandbox));
        let Ok((w, step)) = tokio::task::spawn_blocking(move || {
            let step = w.step(ENTRIES_PER_POLL, limit);
            (w, step)
        })
        .await
        else {
            continue;
        };
        let (used, partial) = match step {
            Step::Done(b) => (b, false),
            Step::Partial(b) => (b, true),
        };
        if used > limit {
            return Overrun {
                cause: OverrunCause::Measured,
                used_bytes: used,
                partial,
                limit_mb,
            };
        }
        if partial {
            walk = Some(w);
        }
    }
}

/// Empties a sandbox after an overrun: removes everything in it but [`KEPT_FILES`], which are
/// cut to `keep_bytes` (or removed too when they are not plain files with one link). Returns
/// the sandbox's usage afterwards. Errors on single entries are skipped (logged at debug):
/// the sandbox GC removes what is left with the sandbox.
pub fn free_space(sandbox: &Path, keep_bytes: u64) -> u64 {
    let Ok(entries) = std::fs::read_dir(sandbox) else {
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(m) = entry.metadata() else { continue };
        let name = entry.file_name();
        let kept = KEPT_FILES.iter().any(|k| name == *k) && m.is_file() && m.nlink() == 1;
        let result = if kept {
            if m.len() > keep_bytes {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_len(keep_bytes))
            } else {
                Ok(())
            }
        } else if m.is_dir() {
            // Does not follow symlinks, and refuses to be raced into following one.
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if let Err(e) = result {
            tracing::debug!(path = %path.display(), error = %e, "cannot free sandbox space");
        }
    }
    match measure(sandbox, u64::MAX) {
        Step::Done(b) | Step::Partial(b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(path: &Path, bytes: usize) {
        let mut f = std::fs::File::create(path).unwrap();
        f.write_all(&vec![1u8; bytes]).unwrap();
        f.sync_all().unwrap();
    }

    fn usage(root: &Path) -> u64 {
        match measure(root, u64::MAX) {
            Step::Done(b) => b,
            Step::Partial(b) => panic!("walk stopped at {b}"),
        }
    }

    #[test]
    fn hard_links_count_once_and_symlinks_are_not_followed() {
        let outside = tempfile::tempdir().unwrap();
        write(&outside.path().join("big"), 4 << 20);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("sub")).unwrap();
        write(&root.join("sub/a"), 1 << 20);
        let base = usage(root);
        assert!(base >= 1 << 20, "{base}");
        assert!(base < (1 << 20) + (64 << 10), "{base}");

        // Two more names for the same 1 MiB: nothing more.
        std::fs::hard_link(root.join("sub/a"), root.join("b")).unwrap();
        std::fs::hard_link(root.join("sub/a"), root.join("sub/c")).unwrap();
        assert_eq!(usage(root), base);

        // A link to 4 MiB outside, and one to the tree's own directory: the links' own few
        // bytes at most (a short symlink's target is held in its inode).
        std::os::unix::fs::symlink(outside.path().join("big"), root.join("to-big")).unwrap();
        std::os::unix::fs::symlink(root, root.join("sub/loop")).unwrap();
        let with_links = usage(root);
        assert!(with_links - base < 64 << 10, "{with_links} vs {base}");

        // A second, distinct file is counted.
        write(&root.join("d"), 1 << 20);
        assert!(usage(root) >= with_links + (1 << 20));
    }

    #[test]
    fn a_walk_resumes_across_steps_and_stops_past_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        for d in 0..5 {
            std::fs::create_dir(dir.path().join(format!("d{d}"))).unwrap();
            for f in 0..20 {
                write(&dir.path().join(format!("d{d}/f{f}")), 4096);
            }
        }
        let whole = usage(dir.path());
        let mut walk = UsageWalk::new(dir.path());
        let mut steps = 0;
        let stepped = loop {
            steps += 1;
            match walk.step(7, u64::MAX) {
                Step::Done(b) => break b,
                Step::Partial(_) => assert!(steps < 1000),
            }
        };
        assert_eq!(stepped, whole);
        // 105 entries plus the end of each of 6 directories, 7 at a time.
        assert!(steps >= 15, "{steps}");

        match measure(dir.path(), 40 * 4096) {
            Step::Partial(b) => assert!(b > 40 * 4096 && b < whole, "{b} of {whole}"),
            Step::Done(b) => panic!("walk did not stop early: {b}"),
        }
        assert_eq!(measure(&dir.path().join("missing"), 0), Step::Done(0));
    }

    #[test]
    fn freeing_space_keeps_only_the_output_files_cut_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(&root.join("stdout"), 100_000);
        write(&root.join("stderr"), 10);
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        write(&root.join("a/b/f"), 1 << 20);
        write(&root.join("g"), 1 << 20);
        let outside = tempfile::tempdir().unwrap();
        write(&outside.path().join("precious"), 100_000);
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        let after = free_space(root, 50_000);
        let mut names: Vec<_> = std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["stderr", "stdout"]);
        assert_eq!(
            std::fs::metadata(root.join("stdout")).unwrap().len(),
            50_000
        );
        assert_eq!(std::fs::metadata(root.join("stderr")).unwrap().len(), 10);
        assert!(after < 128 << 10, "{after}");
        assert_eq!(
            std::fs::metadata(outside.path().join("precious"))
                .unwrap()
                .len(),
            100_000
        );

        // A stdout hard-linked to a file elsewhere is unlinked, never truncated.
        std::fs::remove_file(root.join("stdout")).unwrap();
        std::fs::hard_link(outside.path().join("precious"), root.join("stdout")).unwrap();
        free_space(root, 10);
        assert!(!root.join("stdout").exists());
        assert_eq!(
            std::fs::metadata(outside.path().join("precious"))
                .unwrap()
                .len(),
            100_000
        );
    }

    #[test]
    fn messages_name_the_quota_and_the_usage() {
        let o = Overrun {
            cause: OverrunCause::Measured,
            used_bytes: 70 << 20,
            partial: false,
            limit_mb: 64,
        };
        let m = o.message();
        assert!(m.starts_with(DISK_QUOTA_EXCEEDED), "{m}");
        assert!(
            m.contains("sandbox used 70.0 MiB of its 64 MiB quota (disk_mb)"),
            "{m}"
        );
        let m = Overrun {
            cause: OverrunCause::FileSizeLimit,
            partial: true,
            ..o
        }
        .message();
        assert!(
            m.contains("SIGXFSZ") && m.contains("at least 70.0 MiB"),
            "{m}"
        );
    }
}
