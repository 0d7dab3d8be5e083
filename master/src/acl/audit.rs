//! The audit log: one JSON line per mutating call and per refusal, in the master's data dir
//! (`audit.jsonl`) and as events of the tracing target `wasmos::audit`.
//!
//! Each master records the calls it answered (only the leader answers calls, so after a
//! failover the earlier records are on the earlier leader's disk). The file is bounded:
//! when a write would take it past [`MAX_AUDIT_FILE_BYTES`] it is renamed to `audit.jsonl.1`
//! (replacing the previous one) and a new file begins, so a master keeps at most twice that.
//! Records never hold a token's secret: the principal and the token's accessor identify the
//! caller. `wasmos audit --data-dir DIR` reads the files ([`read`]).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use crate::allocator::Millis;
use crate::sync::lock;

/// The audit file's name in the data dir.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// The previous audit file's name, kept after a rotation.
pub const AUDIT_FILE_ROTATED: &str = "audit.jsonl.1";

/// Size past which the audit file is rotated: 16 MiB.
pub const MAX_AUDIT_FILE_BYTES: u64 = 16 << 20;

/// How a call ended, as far as authorization is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Authorized (the call may still fail for another reason afterwards).
    Allowed,
    /// Refused: no token, an unknown or revoked one, or a right it lacks.
    Denied,
}

/// One audit record (one line of `audit.jsonl`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When, in milliseconds since the Unix epoch (the master's wall clock).
    pub time_ms: Millis,
    /// When, as RFC 3339 UTC (`2026-12-01T17:55:53.123Z`).
    pub time: String,
    /// Who: the token's principal, or `anonymous` without a valid token.
    pub principal: String,
    /// The accessor of the token used (public); empty without a valid token.
    pub accessor: String,
    /// What was asked (`framework.subscribe`, `tokens.revoke`, ...).
    pub action: String,
    /// On what (a role, a framework id, an accessor, a member id); may be empty.
    pub object: String,
    /// Allowed or denied.
    pub outcome: Outcome,
    /// Why it was denied (names the missing right); empty when allowed.
    pub reason: String,
    /// The caller's address (`ip:port`), empty when unknown.
    pub peer: String,
}

/// Formats milliseconds since the Unix epoch as RFC 3339 UTC.
pub fn rfc3339(ms: Millis) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// Where audit records go: always the tracing target, and the file when the master has a
/// data dir.
#[derive(Debug)]
pub struct AuditLog {
    file: Option<Mutex<Sink>>,
}

#[derive(Debug)]
struct Sink {
    dir: PathBuf,
    file: Option<File>,
    size: u64,
}

impl AuditLog {
    /// An audit log writing to `dir/audit.jsonl` (when `dir` is given) and the tracing target.
    pub fn new(dir: Option<&Path>) -> AuditLog {
        AuditLog {
            file: dir.map(|d| {
                Mutex::new(Sink {
                    dir: d.to_path_buf(),
                    file: None,
                    size: 0,
                })
            }),
        }
    }

    /// Records one line. A failing write is logged (once per failure) and does not fail the
    /// call: the tracing target still has the record.
    pub fn record(&self, r: &AuditRecord) {
        let line = match serde_json::to_string(r) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "an audit record did not serialize");
                return;
            }
        };
        debug!(target: "wasmos::audit", "{line}");
        let Some(sink) = &self.file else { return };
        let mut s = lock(sink);
        if let Err(e) = s.append(&line) {
            warn!(error = %e, dir = %s.dir.display(), "cannot write the audit log");
            s.file = None;
        }
    }
}

impl Sink {
    fn append(&mut self, line: &str) -> std::io::Result<()> {
        let path = self.dir.join(AUDIT_FILE);
        if self.file.is_none() {
            let f = OpenOptions::new().create(true).append(true).open(&path)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        let len = line.len() as u64 + 1;
        if self.size > 0 && self.size + len > MAX_AUDIT_FILE_BYTES {
            self.file = None;
            std::fs::rename(&path, self.dir.join(AUDIT_FILE_ROTATED))?;
            self.file = Some(OpenOptions::new().create(true).append(true).open(&path)?);
            self.size = 0;
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(format!("{line}\n").as_bytes())?;
            self.size += len;
        }
        Ok(())
    }
}

/// Reads the records in `dir` (the rotated file first), those at or after `since_ms`. Lines
/// that do not parse (a torn last line) are skipped.
pub fn read(dir: &Path, since_ms: Millis) -> std::io::Result<Vec<AuditRecord>> {
    let mut out = Vec::new();
    for name in [AUDIT_FILE_ROTATED, AUDIT_FILE] {
        let f = match File::open(dir.join(name)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for line in BufReader::new(f).lines() {
            if let Ok(r) = serde_json::from_str::<AuditRecord>(&line?)
                && r.time_ms >= since_ms
            {
                out.push(r);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: Millis) -> AuditRecord {
        AuditRecord {
            time_ms: t,
            time: rfc3339(t),
            principal: "p".into(),
            accessor: String::new(),
            action: "a".into(),
            object: "o".into(),
            outcome: Outcome::Denied,
            reason: "r".repeat(1000),
            peer: String::new(),
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_147_753_123), "2026-12-01T17:55:53.123Z");
    }

    #[test]
    fn the_file_rotates_and_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::new(Some(dir.path()));
        let n = (MAX_AUDIT_FILE_BYTES / 1000) as u64 + 100;
        for t in 0..n {
            log.record(&rec(t));
        }
        let size = |name| std::fs::metadata(dir.path().join(name)).unwrap().len();
        assert!(size(AUDIT_FILE) <= MAX_AUDIT_FILE_BYTES);
        assert!(size(AUDIT_FILE_ROTATED) <= MAX_AUDIT_FILE_BYTES);
        let back = read(dir.path(), 0).unwrap();
        assert!(back.windows(2).all(|w| w[0].time_ms < w[1].time_ms));
        assert_eq!(back.last().unwrap().time_ms, n - 1);
        assert_eq!(read(dir.path(), n - 5).unwrap().len(), 5);
    }
}
