//! The store marker: a small file in a master's data dir (`<data-dir>/raft.marker`) that says
//! "this dir held Raft state", so that a store file found missing, empty or without state is
//! refused instead of silently starting a new, empty member (which would lose the registry).
//!
//! Its file format and durable write are [`wasmos_api::marker`]'s. The store writes it once,
//! after its first durable commit of a vote or log entry (or at open, for a store that already
//! holds state but predates markers). It holds the master's node id and when it was written; a
//! marker that does not parse still counts as present.

use std::io;
use std::path::{Path, PathBuf};

use super::NodeId;

/// The marker's file name inside a master's data dir.
pub const MARKER_FILE: &str = "raft.marker";

/// What a marker says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The master whose store this is, when the marker names one.
    pub node_id: Option<NodeId>,
    /// When the marker was written, in seconds since the Unix epoch, when it says so.
    pub written_unix_secs: Option<u64>,
}

impl std::fmt::Display for Marker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.node_id {
            Some(id) => write!(f, "written by master {id}")?,
            None => write!(f, "unreadable")?,
        }
        if let Some(t) = self.written_unix_secs {
            write!(f, " at unix time {t}")?;
        }
        Ok(())
    }
}

/// The marker's path in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(MARKER_FILE)
}

/// Reads the marker in `data_dir`: `None` when there is none.
pub fn read(data_dir: &Path) -> io::Result<Option<Marker>> {
    Ok(wasmos_api::marker::read(&path(data_dir))?.map(|f| Marker {
        node_id: f.get("node_id").and_then(|v| v.parse().ok()),
        written_unix_secs: f.written_unix_secs(),
    }))
}

/// Writes the marker for master `node_id` into `data_dir`, durably.
pub fn write(data_dir: &Path, node_id: NodeId) -> io::Result<()> {
    let comment = format!(
        "wasmos: this data dir holds the Raft store ({}) of master {node_id}. If that file is \
         lost, the master refuses to start; restore it, or remove the whole data dir.",
        super::store::STORE_FILE
    );
    wasmos_api::marker::write(
        &path(data_dir),
        &comment,
        &[("node_id", &node_id.to_string())],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_marker_reads_back_and_a_garbled_one_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read(dir.path()).unwrap(), None);
        write(dir.path(), 7).unwrap();
        let m = read(dir.path()).unwrap().unwrap();
        assert_eq!(m.node_id, Some(7));
        assert!(m.written_unix_secs.is_some_and(|t| t > 0));
        std::fs::write(path(dir.path()), b"\xff\x00garbage").unwrap();
        let m = read(dir.path()).unwrap().unwrap();
        assert_eq!(m.node_id, None);
    }
}
