//! The store marker: a small file in the agent's work dir (`<work_dir>/agent.marker`) that says
//! "this work dir's agent had an id", so that an `agent.redb` found missing, empty or without
//! an id is refused instead of silently registering as a new agent while the old one's tasks
//! run on unaccounted.
//!
//! Its file format and durable write are [`wasmos_api::marker`]'s. Written when the agent first gets an id from the master (and again if the id changes), or at
//! start for a store that holds an id but predates markers. It holds the id and when it was
//! written; a marker that does not parse still counts as present.

use std::io;
use std::path::{Path, PathBuf};

/// The marker's file name inside the work dir.
pub const MARKER_FILE: &str = "agent.marker";

/// What a marker says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The id the agent had, when the marker names one.
    pub agent_id: Option<String>,
    /// When the marker was written, in seconds since the Unix epoch, when it says so.
    pub written_unix_secs: Option<u64>,
}

impl std::fmt::Display for Marker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.agent_id {
            Some(id) => write!(f, "written for agent {id}")?,
            None => write!(f, "unreadable")?,
        }
        if let Some(t) = self.written_unix_secs {
            write!(f, " at unix time {t}")?;
        }
        Ok(())
    }
}

/// The marker's path in `work_dir`.
pub fn path(work_dir: &Path) -> PathBuf {
    work_dir.join(MARKER_FILE)
}

/// Reads the marker in `work_dir`: `None` when there is none.
pub fn read(work_dir: &Path) -> io::Result<Option<Marker>> {
    Ok(wasmos_api::marker::read(&path(work_dir))?.map(|f| Marker {
        agent_id: f.get("agent_id").map(str::to_string),
        written_unix_secs: f.written_unix_secs(),
    }))
}

/// Writes the marker for `agent_id` into `work_dir`, durably.
pub fn write(work_dir: &Path, agent_id: &str) -> io::Result<()> {
    let comment = format!(
        "wasmos: this work dir's agent is {agent_id}, its state in agent.redb. If that file is \
         lost, the agent refuses to start; restore it, or remove it and this marker to start \
         as a new agent (which kills the native tasks left running here)."
    );
    wasmos_api::marker::write(&path(work_dir), &comment, &[("agent_id", agent_id)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_marker_reads_back_and_a_garbled_one_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), "agent-7").unwrap();
        let m = read(dir.path()).unwrap().unwrap();
        assert_eq!(m.agent_id.as_deref(), Some("agent-7"));
        std::fs::write(path(dir.path()), b"\xff\x00garbage").unwrap();
        assert_eq!(read(dir.path()).unwrap().unwrap().agent_id, None);
    }
}
