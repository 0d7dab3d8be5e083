//! A store marker's file: a few `key=value` lines under a one-line comment, written durably
//! (a temporary file, fsynced, renamed into place, the dir fsynced after). The master's Raft
//! store and the agent's store each keep one beside their store file, saying "this dir held
//! state", so that a store file found missing or empty is refused instead of silently starting
//! anew; each crate gives its marker its own fields and message.
//!
//! The one file operation of this crate: the master and the agent share it, and nothing else
//! they both depend on is a better home for it.

use std::io::{self, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// The key every marker carries: when it was written, in seconds since the Unix epoch.
pub const WRITTEN_KEY: &str = "written_unix_secs";

/// The fields of the marker at `path`, in file order: `None` when there is no marker. A
/// marker that does not parse still counts as present (it has no fields then).
pub fn read(path: &Path) -> io::Result<Option<Fields>> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(Fields(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect(),
    )))
}

/// Writes a marker at `path`: `comment` (one line, `# ` is prepended), then `fields` and
/// [`WRITTEN_KEY`] as `key=value` lines, durably.
pub fn write(path: &Path, comment: &str, fields: &[(&str, &str)]) -> io::Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut text = format!("# {comment}\n");
    for (k, v) in fields {
        text.push_str(&format!("{k}={v}\n"));
    }
    text.push_str(&format!("{WRITTEN_KEY}={now}\n"));
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// The `key=value` fields of a marker.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    /// The value of `key`, when present and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// When the marker was written, when it says so.
    pub fn written_unix_secs(&self) -> Option<u64> {
        self.get(WRITTEN_KEY).and_then(|v| v.parse().ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_marker_reads_back_and_a_garbled_one_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.marker");
        assert_eq!(read(&path).unwrap(), None);
        write(&path, "a comment with key=value in it", &[("id", "7")]).unwrap();
        let m = read(&path).unwrap().unwrap();
        assert_eq!(m.get("id"), Some("7"));
        assert_eq!(m.get("a comment with key"), None, "the comment is no field");
        assert!(m.written_unix_secs().is_some_and(|t| t > 0));
        assert!(!dir.path().join("x.marker.tmp").exists());
        std::fs::write(&path, b"\xff\x00garbage").unwrap();
        let m = read(&path)
            .unwrap()
            .expect("a garbled marker is still a marker");
        assert_eq!(m.get("id"), None);
    }
}
