//! Precondition checks for tests that cannot run on every machine (root and cgroups for native
//! tasks, `ip netns` for partitions, a cgroup layout): one place that decides whether such a
//! test runs, skips visibly, or fails.
//!
//! Neither libtest (`cargo test`) nor nextest can mark a test skipped while it runs, and both
//! hide the output of a passing test. So a skipped test still passes, but never silently:
//! - it prints `SKIPPED binary::test: needs WHAT: WHY` on stderr;
//! - it appends that line to the skip log, `$WASMOS_SKIP_LOG` or else `wasmos-skipped.txt` in
//!   the target directory of the test binary (`target/wasmos-skipped.txt`).
//!   `scripts/test.sh` empties the log before the run and prints after it how many tests
//!   skipped and why;
//! - under `WASMOS_REQUIRE_ROOT=1` (which `.ci/run` sets on a machine with root and cgroups)
//!   [`met`] panics instead: there a missing precondition is a failure, not a skip.
//!
//! Use it from any test crate (it is a dev-dependency of `agent`, `cli` and `bench`):
//!
//! ```
//! # fn cgroups_unavailable() -> Option<String> { None }
//! // A `#[test]` in a test crate (the attribute is left out here so the example runs).
//! fn needs_cgroups() {
//!     // Returns from the test (recording the skip) when the second argument is `Some(why)`.
//!     wasmos_test_skip::require!("root and cgroups (cpu, memory, pids)", cgroups_unavailable());
//!     // ... the test proper
//! }
//! # needs_cgroups();
//! ```
//!
//! For the part of a test that needs something, `if wasmos_test_skip::met(what, missing)
//! { ... }` runs it only where it can (and records the skipped part). A precondition that a
//! fully equipped machine may lack by design (a cgroup v1 machine's hybrid v2 mount) goes
//! through [`optional`]: logged and counted, never failed.
//!
//! A precondition is given as `Option<why-not>` (`None`: met), so the test crate keeps its own
//! probe (e.g. the agent's cgroup detection); [`not_root`] and [`missing_command`] are the
//! common ones.

use std::fmt::Display;
use std::io::Write;
use std::path::PathBuf;

/// The variable under which a missing precondition fails the test instead of skipping it.
pub const REQUIRE_ENV: &str = "WASMOS_REQUIRE_ROOT";
/// The variable naming the skip log (one line per skip); by default `wasmos-skipped.txt` in
/// the target directory.
pub const LOG_ENV: &str = "WASMOS_SKIP_LOG";
/// The skip log's file name in the target directory.
pub const LOG_FILE: &str = "wasmos-skipped.txt";

/// Returns from the calling test (a function returning `()`) when the precondition `what` is
/// not met, i.e. `missing` is `Some(why)`; see [`met`].
#[macro_export]
macro_rules! require {
    ($what:expr, $missing:expr $(,)?) => {
        if !$crate::met($what, $missing) {
            return;
        }
    };
}

/// Whether the precondition `what` (e.g. "root and cgroups") holds: `missing` is `None`.
/// When it is `Some(why)`: panics under `WASMOS_REQUIRE_ROOT=1`, else records the skip (stderr
/// and the skip log) and returns false.
pub fn met(what: &str, missing: Option<impl Display>) -> bool {
    let Some(why) = missing else { return true };
    if required() {
        panic!(
            "{} needs {what}, which this machine lacks: {why} \
             ({REQUIRE_ENV}=1 makes this a failure instead of a skip)",
            test_name()
        );
    }
    record(what, &why.to_string());
    false
}

/// As [`met`], but never fails, even under `WASMOS_REQUIRE_ROOT=1`: for a precondition a
/// machine with root and cgroups may still lack by design (one cgroup layout of two).
pub fn optional(what: &str, missing: Option<impl Display>) -> bool {
    let Some(why) = missing else { return true };
    record(what, &format!("{why} (optional)"));
    false
}

/// Why this process is not root, or `None` when it is (effective uid 0).
pub fn not_root() -> Option<String> {
    let status = match std::fs::read_to_string("/proc/self/status") {
        Ok(s) => s,
        Err(e) => return Some(format!("cannot read /proc/self/status: {e}")),
    };
    // "Uid:	real	effective	saved	fs"
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1));
    match euid {
        Some("0") => None,
        Some(uid) => Some(format!("runs as uid {uid}, not root")),
        None => Some("no Uid line in /proc/self/status".into()),
    }
}

/// Why `command` cannot be run from `PATH`, or `None` when it can.
pub fn missing_command(command: &str) -> Option<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(command)).is_ok_and(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.is_file() && m.permissions().mode() & 0o111 != 0
        })
    });
    (!found).then(|| format!("`{command}` is not on PATH"))
}

/// Whether `WASMOS_REQUIRE_ROOT` asks for failures instead of skips.
pub fn required() -> bool {
    std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1")
}

fn record(what: &str, why: &str) {
    let line = format!("{}: needs {what}: {why}", test_name());
    eprintln!("SKIPPED {line}");
    let Some(path) = log_path() else { return };
    // One short write to a file opened for appending: lines of tests running in parallel do
    // not interleave.
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
    if let Err(e) = appended {
        eprintln!("cannot append to the skip log {}: {e}", path.display());
    }
}

/// `binary::test`: the test binary's name without its hash, then the test's (libtest runs
/// each test on a thread named after it; nextest also passes it as an argument).
fn test_name() -> String {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .map(|stem| match stem.rsplit_once('-') {
            Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.into(),
            _ => stem,
        })
        .unwrap_or_else(|| "?".into());
    let thread = std::thread::current();
    let test = match thread.name() {
        Some(name) if name != "main" => name.to_string(),
        _ => std::env::args()
            .skip(1)
            .find(|a| !a.starts_with('-'))
            .unwrap_or_else(|| "?".into()),
    };
    format!("{binary}::{test}")
}

/// `$WASMOS_SKIP_LOG`, else the skip log in the target directory holding this test binary
/// (`target/debug/deps/NAME-HASH` → `target/wasmos-skipped.txt`).
fn log_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(LOG_ENV).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let deps = exe.ancestors().find(|a| a.ends_with("deps"))?;
    Some(deps.parent()?.parent()?.join(LOG_FILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_met_precondition_runs_the_test() {
        assert!(met("nothing", None::<String>));
        assert!(optional("nothing", None::<String>));
    }

    #[test]
    fn names_the_running_test() {
        assert!(
            test_name().ends_with("::tests::names_the_running_test"),
            "{}",
            test_name()
        );
    }

    #[test]
    fn finds_a_command_on_path_and_misses_one_that_is_not() {
        assert_eq!(missing_command("sh"), None);
        let why = missing_command("no-such-command-wasmos").unwrap();
        assert!(why.contains("not on PATH"), "{why}");
    }
}
