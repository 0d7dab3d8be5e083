//! [`StderrTail`]: a guest's stderr kept in memory as its last few KiB, so that a hosted
//! scheduler that fails can be failed with what it said last (a Python or JavaScript guest's
//! uncaught exception is a traceback on stderr followed by a bare `unreachable` trap).
//!
//! The master has no task directory to write a scheduler's output to, and a guest may write
//! without end: this keeps at most `cap` bytes (older bytes are dropped as new ones come, in
//! O(written) time and no allocation past the cap), and the guest is told every write
//! succeeded. Nothing is logged per write.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The most of a scheduler's stderr kept: 2 KiB, the end of a traceback of a dozen frames (the
/// exception's line is the last). The failure message quoting it, with its own words before,
/// stays under the 4 KiB a completed framework's message is cut to in the master's history
/// (`MAX_HISTORY_TEXT_BYTES`), so the exception's line is never the part cut off.
pub const SCHEDULER_STDERR_TAIL_BYTES: usize = 2 << 10;

/// What [`StderrTail::tail`] puts before a tail whose start was dropped.
pub const DROPPED_MARKER: &str = "[…] ";

struct Ring {
    bytes: VecDeque<u8>,
    cap: usize,
    /// Bytes dropped off the front since the last [`StderrTail::clear`].
    dropped: u64,
}

/// The last bytes written to a guest's stderr. Clones share the buffer.
#[derive(Clone)]
pub struct StderrTail {
    ring: Arc<Mutex<Ring>>,
}

impl StderrTail {
    /// An empty tail keeping at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        StderrTail {
            ring: Arc::new(Mutex::new(Ring {
                bytes: VecDeque::with_capacity(cap.min(SCHEDULER_STDERR_TAIL_BYTES)),
                cap,
                dropped: 0,
            })),
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, buf: &[u8]) {
        let mut r = self.ring();
        let cap = r.cap;
        // Of one write larger than the buffer only its end can survive.
        let skip = buf.len().saturating_sub(cap);
        let buf = &buf[skip..];
        let over = (r.bytes.len() + buf.len()).saturating_sub(cap);
        r.bytes.drain(..over);
        r.bytes.extend(buf);
        r.dropped += (skip + over) as u64;
    }

    /// Forgets what was written so far (before each callback, so a failure quotes only what
    /// the failing callback wrote).
    pub fn clear(&self) {
        let mut r = self.ring();
        r.bytes.clear();
        r.dropped = 0;
    }

    /// Bytes held now (at most the cap).
    pub fn len(&self) -> usize {
        self.ring().bytes.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What is held, lossily decoded and trimmed, starting with [`DROPPED_MARKER`] when earlier
    /// bytes were dropped; empty when nothing (but whitespace) was written.
    pub fn tail(&self) -> String {
        let r = self.ring();
        let (a, b) = r.bytes.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        if text.is_empty() {
            String::new()
        } else if r.dropped > 0 {
            format!("{DROPPED_MARKER}{text}")
        } else {
            text.to_string()
        }
    }
}

impl IsTerminal for StderrTail {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for StderrTail {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for StderrTail {
    async fn ready(&mut self) {}
}

impl OutputStream for StderrTail {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for StderrTail {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
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
    fn keeps_everything_up_to_the_cap() {
        let t = StderrTail::new(18);
        t.push(b"Traceback:\n");
        t.push(b"  E: x\n");
        assert_eq!(t.len(), 18, "at the cap");
        assert_eq!(t.tail(), "Traceback:\n  E: x");
        t.clear();
        assert!(t.is_empty());
        assert_eq!(t.tail(), "");
        t.push(b" \n\t");
        assert_eq!(t.tail(), "", "only whitespace");
    }

    #[test]
    fn keeps_the_end_one_past_and_far_past_the_cap() {
        let t = StderrTail::new(16);
        t.push(b"0123456789abcdef");
        t.push(b"!");
        assert_eq!(t.len(), 16, "one past");
        assert_eq!(t.tail(), format!("{DROPPED_MARKER}123456789abcdef!"));

        // Far past, in one write and in many: never more than the cap held.
        let t = StderrTail::new(SCHEDULER_STDERR_TAIL_BYTES);
        let mut big = vec![b'x'; 64 << 20];
        big.extend_from_slice(b"\nValueError: bad input 42\n");
        t.push(&big);
        assert_eq!(t.len(), SCHEDULER_STDERR_TAIL_BYTES);
        for _ in 0..10_000 {
            t.push(&[b'y'; 1023]);
            t.push(b"\n");
        }
        t.push(b"ValueError: after the flood\n");
        assert_eq!(t.len(), SCHEDULER_STDERR_TAIL_BYTES);
        let tail = t.tail();
        assert!(tail.ends_with("ValueError: after the flood"), "{tail}");
        assert!(tail.len() <= SCHEDULER_STDERR_TAIL_BYTES + DROPPED_MARKER.len());
        let r = t.ring();
        assert!(
            r.bytes.capacity() < 2 * SCHEDULER_STDERR_TAIL_BYTES + 64,
            "the buffer grew to {}",
            r.bytes.capacity()
        );
    }

    #[test]
    fn a_cut_character_is_replaced_not_an_error() {
        let t = StderrTail::new(2);
        t.push("aé".as_bytes());
        t.push("€".as_bytes());
        let tail = t.tail();
        assert!(
            tail.starts_with(DROPPED_MARKER) && tail.contains('\u{FFFD}'),
            "{tail}"
        );
    }
}
