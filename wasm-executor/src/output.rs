//! Size-capped files for a guest's stdout and stderr, routed to the task that runs.
//!
//! A guest may write without end; the host must not fill the disk or its memory. Bytes past the
//! cap are dropped (the guest is told the write succeeded, so a chatty but otherwise correct task
//! still finishes) and one marker line records the truncation.
//!
//! An executor instance serves many tasks one after another. While a task runs
//! ([`CappedOutput::begin_task`] .. [`CappedOutput::end_task`]) what the instance writes goes to
//! that task's own file (`<task dir>/stdout` or `stderr`, each capped on its own); what it writes
//! between tasks (while it is instantiated) stays in the instance's own file. A task's file and
//! its directory are made on its first write: a task that writes nothing costs no system call.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

struct Capped {
    file: File,
    written: u64,
    cap: u64,
    truncated: bool,
}

impl Capped {
    fn open(path: &Path, cap: u64) -> std::io::Result<Self> {
        let file = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            // The directory may be one a native task of the same id wrote into: never follow
            // a link it left in place of the file.
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        Ok(Capped {
            file,
            written: 0,
            cap,
            truncated: false,
        })
    }

    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let room = self.cap.saturating_sub(self.written);
        let take = (buf.len() as u64).min(room) as usize;
        if take > 0 {
            self.file.write_all(&buf[..take])?;
            self.written += take as u64;
        }
        if take < buf.len() && !self.truncated {
            self.truncated = true;
            writeln!(
                self.file,
                "\n[wasmos: output truncated at {} bytes]",
                self.cap
            )?;
        }
        Ok(())
    }

    /// Up to `max` bytes written since `offset`, lossily decoded.
    fn tail_since(&self, offset: u64, max: u64) -> String {
        let end = self.written;
        if end <= offset {
            return String::new();
        }
        let start = offset.max(end.saturating_sub(max));
        let mut f = match self.file.try_clone() {
            Ok(f) => f,
            Err(_) => return String::new(),
        };
        let mut buf = vec![0; (end - start) as usize];
        if f.seek(SeekFrom::Start(start)).is_err() || f.read_exact(&mut buf).is_err() {
            return String::new();
        }
        String::from_utf8_lossy(&buf).trim().to_string()
    }
}

/// The running task's file: made on the first write.
struct TaskFile {
    dir: PathBuf,
    cap: u64,
    file: Option<Capped>,
    /// Set when making the file failed: the task's output then goes to the instance's file
    /// (one failure per task, not one per write).
    failed: bool,
}

struct Routes {
    /// The instance's own file (`stdout` or `stderr`), also its name in a task's directory.
    own: Capped,
    name: &'static str,
    task: Option<TaskFile>,
}

impl Routes {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let Some(task) = self.task.as_mut() else {
            return self.own.write(buf);
        };
        if task.file.is_none() && !task.failed {
            let opened = std::fs::create_dir_all(&task.dir)
                .and_then(|()| Capped::open(&task.dir.join(self.name), task.cap));
            match opened {
                Ok(f) => task.file = Some(f),
                Err(e) => {
                    tracing::debug!(dir = %task.dir.display(), error = %e,
                        "cannot make the task's output file; it goes to its executor's");
                    task.failed = true;
                }
            }
        }
        match task.file.as_mut() {
            Some(f) => f.write(buf),
            None => self.own.write(buf),
        }
    }
}

/// A capped output file. Clones share the file, the count and the routing.
#[derive(Clone)]
pub struct CappedOutput {
    state: Arc<Mutex<Routes>>,
}

impl CappedOutput {
    /// Creates (or truncates) `path` with room for `cap` bytes. The file's name (`stdout` or
    /// `stderr`) is also the name of a task's file (see [`CappedOutput::begin_task`]).
    pub fn create(path: &Path, cap: u64) -> std::io::Result<Self> {
        let name = match path.file_name().and_then(|n| n.to_str()) {
            Some("stderr") => "stderr",
            _ => "stdout",
        };
        Ok(CappedOutput {
            state: Arc::new(Mutex::new(Routes {
                own: Capped::open(path, cap)?,
                name,
                task: None,
            })),
        })
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_bytes(&self, buf: &[u8]) -> std::io::Result<()> {
        self.routes().write(buf)
    }

    /// Sends what is written from now on to the task whose directory is `dir`, into a file of
    /// this output's name there, with room for `cap` bytes. Nothing is made until the first
    /// write (no system call here).
    pub fn begin_task(&self, dir: PathBuf, cap: u64) {
        self.routes().task = Some(TaskFile {
            dir,
            cap,
            file: None,
            failed: false,
        });
    }

    /// Sends what is written from now on to the instance's own file again.
    pub fn end_task(&self) {
        self.routes().task = None;
    }

    /// Writes a line (adding the newline) where output goes now.
    pub fn write_line(&self, line: &str) {
        let mut r = self.routes();
        let _ = r.write(line.as_bytes()).and_then(|()| r.write(b"\n"));
    }

    /// Bytes kept so far in the instance's own file.
    pub fn written(&self) -> u64 {
        self.routes().own.written
    }

    /// True once output to the instance's own file was dropped.
    #[cfg(test)]
    pub fn truncated(&self) -> bool {
        self.routes().own.truncated
    }

    /// Up to `max` bytes written to the instance's own file since `offset`, lossily decoded,
    /// for error messages.
    pub fn tail_since(&self, offset: u64, max: u64) -> String {
        self.routes().own.tail_since(offset, max)
    }

    /// Up to the last `max` bytes the running task wrote, lossily decoded; `None` when no task
    /// runs or its file was not made.
    pub fn task_tail(&self, max: u64) -> Option<String> {
        let r = self.routes();
        let f = r.task.as_ref()?.file.as_ref()?;
        Some(f.tail_since(0, max))
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes)
            .map_err(|e| StreamError::LastOperationFailed(wasmtime::Error::new(e)))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.write_bytes(buf).map(|()| buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_marks_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let out = CappedOutput::create(&path, 10).unwrap();
        out.write_bytes(b"hello ").unwrap();
        assert!(!out.truncated());
        out.write_bytes(b"world, and more").unwrap();
        out.write_bytes(b"even more").unwrap();
        assert!(out.truncated());
        assert_eq!(out.written(), 10);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "hello worl\n[wasmos: output truncated at 10 bytes]\n");
        assert_eq!(out.tail_since(6, 100), "worl");
    }

    #[test]
    fn a_task_gets_what_is_written_while_it_runs_in_a_file_made_on_its_first_write() {
        let dir = tempfile::tempdir().unwrap();
        let out = CappedOutput::create(&dir.path().join("stderr"), 100).unwrap();
        out.write_bytes(b"init\n").unwrap();
        let t1 = dir.path().join("sandboxes/fw/t1");
        out.begin_task(t1.clone(), 5);
        assert!(!t1.exists(), "nothing is made before the first write");
        out.write_bytes(b"one two").unwrap();
        assert_eq!(out.task_tail(100).as_deref(), Some("one t"));
        out.end_task();
        let t2 = dir.path().join("sandboxes/fw/t2");
        out.begin_task(t2.clone(), 5);
        assert_eq!(out.task_tail(100), None);
        out.end_task();
        out.write_line("between");
        let own = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
        assert_eq!(own, "init\nbetween\n");
        let t1_text = std::fs::read_to_string(t1.join("stderr")).unwrap();
        assert_eq!(t1_text, "one t\n[wasmos: output truncated at 5 bytes]\n");
        assert!(!t2.exists(), "a task that wrote nothing has no directory");
        // A task id run again starts a fresh file.
        out.begin_task(t1.clone(), 5);
        out.write_line("new");
        out.end_task();
        assert_eq!(std::fs::read_to_string(t1.join("stderr")).unwrap(), "new\n");
    }
}
