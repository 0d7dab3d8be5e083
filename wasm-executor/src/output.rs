//! Size-capped files for a guest's stdout and stderr.
//!
//! A guest may write without end; the host must not fill the disk or its memory. Bytes past the
//! cap are dropped (the guest is told the write succeeded, so a chatty but otherwise correct task
//! still finishes) and one marker line records the truncation.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

struct State {
    file: File,
    written: u64,
    cap: u64,
    truncated: bool,
}

impl State {
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
}

/// A capped output file. Clones share the file and the count.
#[derive(Clone)]
pub struct CappedOutput {
    state: Arc<Mutex<State>>,
}

impl CappedOutput {
    /// Creates (or truncates) `path` with room for `cap` bytes.
    pub fn create(path: &Path, cap: u64) -> std::io::Result<Self> {
        let file = File::options()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)?;
        Ok(CappedOutput {
            state: Arc::new(Mutex::new(State {
                file,
                written: 0,
                cap,
                truncated: false,
            })),
        })
    }

    fn write_bytes(&self, buf: &[u8]) -> std::io::Result<()> {
        match self.state.lock() {
            Ok(mut s) => s.write(buf),
            Err(_) => Err(std::io::Error::other("output file lock poisoned")),
        }
    }

    /// Bytes kept so far.
    pub fn written(&self) -> u64 {
        self.state.lock().map(|s| s.written).unwrap_or(0)
    }

    /// True once output was dropped.
    #[cfg(test)]
    pub fn truncated(&self) -> bool {
        self.state.lock().map(|s| s.truncated).unwrap_or(false)
    }

    /// Up to `max` bytes written since `offset`, lossily decoded, for error messages.
    pub fn tail_since(&self, offset: u64, max: u64) -> String {
        let Ok(s) = self.state.lock() else {
            return String::new();
        };
        let end = s.written;
        if end <= offset {
            return String::new();
        }
        let start = offset.max(end.saturating_sub(max));
        let mut f = match s.file.try_clone() {
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
}
