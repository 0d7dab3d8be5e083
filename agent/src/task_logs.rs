//! Reading a task's stdout or stderr from its sandbox, for the master's `ReadLog`.
//!
//! Read-only and bounded: at most [`MAX_READ_BYTES`] per answer, whatever was asked. The path
//! is `<work_dir>/sandboxes/<framework_id>/<task_id>/<stdout|stderr>` and never leaves that
//! directory: the ids must be plain file names, and every component below `sandboxes/` is
//! opened without following symbolic links and the file must be a regular one (a native task
//! controls its sandbox, so it could leave a link to `/etc/shadow` or a FIFO that would block
//! the read in place of its `stdout`).

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use wasmos_api::proto as pb;

/// Most bytes one answer carries (a larger `max_bytes` is served as this).
pub const MAX_READ_BYTES: u64 = 1 << 20;
/// Bytes one answer carries when the request asks for 0.
pub const DEFAULT_READ_BYTES: u64 = 64 << 10;
/// Most lines a `tail_lines` request returns.
pub const MAX_TAIL_LINES: u32 = 10_000;

/// Why a log could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadLogError {
    /// An id or the stream name is not a plain file name.
    #[error("{what} {value:?} is not a valid name (a plain file name is needed)")]
    BadName {
        /// Which field.
        what: &'static str,
        /// Its value.
        value: String,
    },
    /// A component of the path is a symbolic link, or the file is not a regular file.
    #[error("{path} is not a regular file or directory (links are not followed)")]
    NotRegular {
        /// The path below the sandboxes directory.
        path: String,
    },
    /// The file does not exist.
    #[error("{path} does not exist")]
    Missing {
        /// The path below the sandboxes directory.
        path: String,
    },
    /// Reading failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path below the sandboxes directory.
        path: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Checks that `value` is a plain file name: not empty, not `.` or `..`, no `/` or NUL.
pub fn check_name(what: &'static str, value: &str) -> Result<(), ReadLogError> {
    let bad = value.is_empty()
        || value == "."
        || value == ".."
        || value.len() > 255
        || value.contains('/')
        || value.contains('\0');
    if bad {
        return Err(ReadLogError::BadName {
            what,
            value: value.chars().take(64).collect(),
        });
    }
    Ok(())
}

/// What was read.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Piece {
    /// The bytes.
    pub data: Vec<u8>,
    /// The offset just past them.
    pub next_offset: u64,
    /// The file's size when read.
    pub size: u64,
}

fn open_at(
    dir: Option<&OwnedFd>,
    base: &Path,
    name: &str,
    directory: bool,
) -> std::io::Result<OwnedFd> {
    let flags = libc::O_RDONLY
        | libc::O_CLOEXEC
        | libc::O_NOFOLLOW
        | libc::O_NONBLOCK
        | if directory { libc::O_DIRECTORY } else { 0 };
    let c = match dir {
        Some(_) => CString::new(name),
        None => CString::new(base.as_os_str().as_bytes()),
    }
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let at = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `c` is a valid C string; `at` is an open directory or AT_FDCWD.
    let fd = unsafe { libc::openat(at, c.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads a task's `stream` ("stdout" or "stderr") under `sandboxes` (the agent's
/// `<work_dir>/sandboxes`): from `offset`, at most `max_bytes` (0: [`DEFAULT_READ_BYTES`];
/// at most [`MAX_READ_BYTES`]); with `tail_lines` > 0, the last that many lines within the
/// last `max_bytes` of the file instead.
pub fn read(
    sandboxes: &Path,
    framework_id: &str,
    task_id: &str,
    stream: &str,
    offset: u64,
    max_bytes: u64,
    tail_lines: u32,
) -> Result<Piece, ReadLogError> {
    check_name("framework id", framework_id)?;
    check_name("task id", task_id)?;
    if stream != "stdout" && stream != "stderr" {
        return Err(ReadLogError::BadName {
            what: "stream",
            value: stream.chars().take(16).collect(),
        });
    }
    let rel = format!("{framework_id}/{task_id}/{stream}");
    let fail = |e: std::io::Error| match e.raw_os_error() {
        Some(libc::ENOENT) => ReadLogError::Missing { path: rel.clone() },
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => ReadLogError::NotRegular { path: rel.clone() },
        _ => ReadLogError::Io {
            path: rel.clone(),
            source: e,
        },
    };
    let root = open_at(None, sandboxes, "", true).map_err(fail)?;
    let fw = open_at(Some(&root), sandboxes, framework_id, true).map_err(fail)?;
    let task = open_at(Some(&fw), sandboxes, task_id, true).map_err(fail)?;
    let fd = open_at(Some(&task), sandboxes, stream, false).map_err(fail)?;
    let mut file = File::from(fd);
    let meta = file.metadata().map_err(fail)?;
    if !meta.file_type().is_file() {
        return Err(ReadLogError::NotRegular { path: rel });
    }
    let size = meta.len();
    let max = match max_bytes {
        0 => DEFAULT_READ_BYTES,
        n => n.min(MAX_READ_BYTES),
    };
    let start = if tail_lines > 0 {
        size.saturating_sub(max)
    } else {
        offset.min(size)
    };
    let len = (size - start).min(max);
    let mut data = vec![0; len as usize];
    file.seek(SeekFrom::Start(start)).map_err(fail)?;
    let mut got = 0;
    while got < data.len() {
        match file.read(&mut data[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(e)),
        }
    }
    data.truncate(got);
    let next_offset = start + got as u64;
    if tail_lines > 0 {
        let from = tail_start(&data, tail_lines.min(MAX_TAIL_LINES));
        data.drain(..from);
    }
    Ok(Piece {
        data,
        next_offset,
        size,
    })
}

/// Where the last `lines` lines of `data` start (a final newline ends the last line).
fn tail_start(data: &[u8], lines: u32) -> usize {
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    let mut seen = 0;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == lines {
                return i + 1;
            }
        }
    }
    0
}

/// Answers one `ReadLog` from the files under `sandboxes`.
pub fn answer(sandboxes: &Path, r: &pb::master_message::ReadLog) -> pb::agent_message::LogChunk {
    let mut chunk = pb::agent_message::LogChunk {
        request_id: r.request_id,
        ..Default::default()
    };
    match read(
        sandboxes,
        &r.framework_id,
        &r.task_id,
        &r.stream,
        r.offset,
        u64::from(r.max_bytes),
        r.tail_lines,
    ) {
        Ok(p) => {
            chunk.data = p.data;
            chunk.next_offset = p.next_offset;
            chunk.size = p.size;
        }
        Err(ReadLogError::Missing { .. }) => chunk.missing = true,
        Err(e) => chunk.error = e.to_string(),
    }
    chunk
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("fw/t1");
        std::fs::create_dir_all(&t).unwrap();
        std::fs::write(t.join("stdout"), b"one\ntwo\nthree\n").unwrap();
        dir
    }

    #[test]
    fn reads_from_an_offset_and_tails_lines() {
        let d = setup();
        let p = read(d.path(), "fw", "t1", "stdout", 4, 0, 0).unwrap();
        assert_eq!(
            (p.data.as_slice(), p.next_offset, p.size),
            (&b"two\nthree\n"[..], 14, 14)
        );
        let p = read(d.path(), "fw", "t1", "stdout", 0, 5, 0).unwrap();
        assert_eq!((p.data.as_slice(), p.next_offset), (&b"one\ntw"[..5], 5));
        let p = read(d.path(), "fw", "t1", "stdout", 0, 0, 2).unwrap();
        assert_eq!(
            (p.data.as_slice(), p.next_offset),
            (&b"two\nthree\n"[..], 14)
        );
        let p = read(d.path(), "fw", "t1", "stdout", 99, 0, 0).unwrap();
        assert_eq!((p.data.len(), p.next_offset), (0, 14));
        assert!(matches!(
            read(d.path(), "fw", "t1", "stderr", 0, 0, 0),
            Err(ReadLogError::Missing { .. })
        ));
    }

    #[test]
    fn ids_that_would_leave_the_sandboxes_are_refused() {
        let d = setup();
        for (fw, task) in [
            ("..", "t1"),
            ("fw", ".."),
            ("fw/t1", "x"),
            ("fw", "t1/../t1"),
            ("", "t1"),
        ] {
            assert!(
                matches!(
                    read(d.path(), fw, task, "stdout", 0, 0, 0),
                    Err(ReadLogError::BadName { .. })
                ),
                "{fw}/{task} must be refused"
            );
        }
        assert!(matches!(
            read(d.path(), "fw", "t1", "../t1/stdout", 0, 0, 0),
            Err(ReadLogError::BadName { .. })
        ));
    }

    #[test]
    fn links_and_non_files_are_not_followed() {
        let d = setup();
        let secret = d.path().join("secret");
        std::fs::write(&secret, b"secret").unwrap();
        let t2 = d.path().join("fw/t2");
        std::fs::create_dir_all(&t2).unwrap();
        std::os::unix::fs::symlink(&secret, t2.join("stdout")).unwrap();
        assert!(matches!(
            read(d.path(), "fw", "t2", "stdout", 0, 0, 0),
            Err(ReadLogError::NotRegular { .. })
        ));
        // A linked task directory is refused too.
        std::os::unix::fs::symlink(d.path().join("fw/t1"), d.path().join("fw/t3")).unwrap();
        assert!(matches!(
            read(d.path(), "fw", "t3", "stdout", 0, 0, 0),
            Err(ReadLogError::NotRegular { .. })
        ));
        // A FIFO would block a plain read.
        let fifo = CString::new(t2.join("stderr").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        assert!(matches!(
            read(d.path(), "fw", "t2", "stderr", 0, 0, 0),
            Err(ReadLogError::NotRegular { .. })
        ));
    }
}
