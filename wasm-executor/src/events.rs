//! [`event_queue`]: the bounded queue between a running task's `executor-driver` calls and the
//! agent that forwards them ([`EventSender`] in the guest's store, [`EventReceiver`] in the
//! agent).
//!
//! A guest chooses how often it calls `progress` and `send-framework-message` (the latter with
//! up to 4 MiB each); the agent forwards them as fast as its master link allows, which may be
//! not at all while it reconnects. The queue therefore holds at most
//! [`MAX_QUEUED_EXECUTOR_EVENTS`] events and [`MAX_QUEUED_EXECUTOR_EVENT_BYTES`] bytes per task,
//! counted from the guest's call until the agent drops the event's [`EventPermit`] (after the
//! event left the agent, or was given up). Past it:
//!
//! - a framework message is refused: the guest's call traps and the task fails with a reason
//!   naming the cap ([`QueueFull`]). `send-framework-message` returns nothing in the WIT, so a
//!   trap is the only error a guest can see; a silent drop would lose data it believes sent.
//! - progress is coalesced: the latest message waits in one slot (earlier ones it replaces are
//!   gone), delivered once the queue drains. Progress is a status, and only the latest counts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
pub use wasmos_api::limits::{MAX_QUEUED_EXECUTOR_EVENT_BYTES, MAX_QUEUED_EXECUTOR_EVENTS};

use crate::host_api::ExecutorEvent;

/// What one queue may hold, in events and bytes. By default [`MAX_QUEUED_EXECUTOR_EVENTS`]
/// (64) and [`MAX_QUEUED_EXECUTOR_EVENT_BYTES`] (16 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBounds {
    /// Events queued and not yet released.
    pub events: usize,
    /// Bytes (messages' lengths) queued and not yet released.
    pub bytes: usize,
}

impl Default for QueueBounds {
    fn default() -> Self {
        QueueBounds {
            events: MAX_QUEUED_EXECUTOR_EVENTS,
            bytes: MAX_QUEUED_EXECUTOR_EVENT_BYTES,
        }
    }
}

/// A framework message refused because the task's queue is full.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "send-framework-message refused: {queued_events} events ({queued_bytes} bytes) of this task \
     are queued unsent and {wanted} more bytes would pass the cap of {} events or {} bytes; \
     send fewer or smaller messages (large data belongs in a task's result)",
    bounds.events,
    bounds.bytes
)]
pub struct QueueFull {
    /// Events queued when the message was refused.
    pub queued_events: usize,
    /// Bytes queued when the message was refused.
    pub queued_bytes: usize,
    /// The refused message's length.
    pub wanted: usize,
    /// The queue's bounds.
    pub bounds: QueueBounds,
}

#[derive(Debug)]
struct Shared {
    bounds: QueueBounds,
    events: AtomicUsize,
    bytes: AtomicUsize,
    /// The latest progress message that found the queue full.
    coalesced: Mutex<Option<ExecutorEvent>>,
}

impl Shared {
    fn try_reserve(&self, bytes: usize) -> bool {
        // One writer (the guest's store) reserves; releases only lower the counts, so a check
        // then add cannot pass the bounds.
        let events = self.events.load(Ordering::Acquire);
        let queued = self.bytes.load(Ordering::Acquire);
        if events >= self.bounds.events || queued.saturating_add(bytes) > self.bounds.bytes {
            return false;
        }
        self.events.fetch_add(1, Ordering::AcqRel);
        self.bytes.fetch_add(bytes, Ordering::AcqRel);
        true
    }
}

/// Holds an event's place in its queue; dropping it frees the place.
#[derive(Debug)]
pub struct EventPermit {
    shared: Arc<Shared>,
    bytes: usize,
}

impl Drop for EventPermit {
    fn drop(&mut self) {
        self.shared.events.fetch_sub(1, Ordering::AcqRel);
        self.shared.bytes.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

enum Item {
    Event(ExecutorEvent, EventPermit),
    /// A progress message waits in the coalescing slot.
    Coalesced,
}

/// The guest's end of a task's event queue.
#[derive(Clone)]
pub struct EventSender {
    tx: mpsc::UnboundedSender<Item>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EventSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSender")
            .field("shared", &self.shared)
            .finish()
    }
}

/// The agent's end of a task's event queue.
pub struct EventReceiver {
    rx: mpsc::UnboundedReceiver<Item>,
    shared: Arc<Shared>,
}

/// A bounded queue of one task's executor events.
pub fn event_queue(bounds: QueueBounds) -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        bounds,
        events: AtomicUsize::new(0),
        bytes: AtomicUsize::new(0),
        coalesced: Mutex::new(None),
    });
    (
        EventSender {
            tx,
            shared: shared.clone(),
        },
        EventReceiver { rx, shared },
    )
}

fn event_bytes(ev: &ExecutorEvent) -> usize {
    match ev {
        ExecutorEvent::Progress { message, .. } => message.len(),
        ExecutorEvent::FrameworkMessage { data, .. } => data.len(),
    }
}

impl EventSender {
    /// Queues a framework message, or refuses it when the queue is full.
    pub fn send_message(&self, task_id: &str, data: Vec<u8>) -> Result<(), QueueFull> {
        let bytes = data.len();
        if !self.shared.try_reserve(bytes) {
            return Err(QueueFull {
                queued_events: self.shared.events.load(Ordering::Acquire),
                queued_bytes: self.shared.bytes.load(Ordering::Acquire),
                wanted: bytes,
                bounds: self.shared.bounds,
            });
        }
        let permit = EventPermit {
            shared: self.shared.clone(),
            bytes,
        };
        let ev = ExecutorEvent::FrameworkMessage {
            task_id: task_id.to_string(),
            data,
        };
        // A closed receiver drops the event (and its permit) here: nobody forwards it.
        let _ = self.tx.send(Item::Event(ev, permit));
        Ok(())
    }

    /// Queues a progress message; when the queue is full, it replaces the one waiting in the
    /// coalescing slot instead.
    pub fn send_progress(&self, task_id: &str, message: String) {
        let ev = ExecutorEvent::Progress {
            task_id: task_id.to_string(),
            message,
        };
        let bytes = event_bytes(&ev);
        if self.shared.try_reserve(bytes) {
            let permit = EventPermit {
                shared: self.shared.clone(),
                bytes,
            };
            let _ = self.tx.send(Item::Event(ev, permit));
            return;
        }
        let was_empty = self
            .shared
            .coalesced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(ev)
            .is_none();
        // At most one wake-up is in the channel per filled slot, so the slot adds one item.
        if was_empty {
            let _ = self.tx.send(Item::Coalesced);
        }
    }

    /// Events queued and not yet released (for tests and metrics).
    pub fn queued_events(&self) -> usize {
        self.shared.events.load(Ordering::Acquire)
    }

    /// Bytes queued and not yet released (for tests and metrics).
    pub fn queued_bytes(&self) -> usize {
        self.shared.bytes.load(Ordering::Acquire)
    }
}

impl EventReceiver {
    /// The next event with its permit (drop the permit once the event has left), or `None`
    /// when every sender is gone and the queue is empty. A coalesced progress comes with a
    /// permit that holds no place.
    pub async fn recv(&mut self) -> Option<(ExecutorEvent, Option<EventPermit>)> {
        loop {
            match self.rx.recv().await? {
                Item::Event(ev, permit) => return Some((ev, Some(permit))),
                Item::Coalesced => {
                    if let Some(ev) = self.take_coalesced() {
                        return Some((ev, None));
                    }
                }
            }
        }
    }

    /// Like [`EventReceiver::recv`] without waiting: `None` when nothing is queued now.
    pub fn try_recv(&mut self) -> Option<(ExecutorEvent, Option<EventPermit>)> {
        loop {
            match self.rx.try_recv().ok()? {
                Item::Event(ev, permit) => return Some((ev, Some(permit))),
                Item::Coalesced => {
                    if let Some(ev) = self.take_coalesced() {
                        return Some((ev, None));
                    }
                }
            }
        }
    }

    fn take_coalesced(&self) -> Option<ExecutorEvent> {
        self.shared
            .coalesced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Bytes queued and not yet released (for tests and metrics).
    pub fn queued_bytes(&self) -> usize {
        self.shared.bytes.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: QueueBounds = QueueBounds {
        events: 3,
        bytes: 100,
    };

    #[tokio::test]
    async fn messages_past_the_count_or_byte_bound_are_refused_until_released() {
        let (tx, mut rx) = event_queue(B);
        for _ in 0..3 {
            tx.send_message("t", vec![0; 10]).unwrap();
        }
        let full = tx.send_message("t", vec![0; 10]).unwrap_err();
        assert_eq!(full.queued_events, 3);
        assert!(full.to_string().contains("cap of 3 events or 100 bytes"));
        let (_, permit) = rx.recv().await.unwrap();
        // Received but not released: still counted.
        assert!(tx.send_message("t", vec![0; 10]).is_err());
        drop(permit);
        tx.send_message("t", vec![0; 10]).unwrap();

        let (tx, _rx) = event_queue(B);
        tx.send_message("t", vec![0; 100]).unwrap();
        assert!(tx.send_message("t", vec![0; 1]).is_err());
        assert_eq!(tx.queued_bytes(), 100);
        let (tx, _rx) = event_queue(B);
        assert!(tx.send_message("t", vec![0; 101]).is_err());
        assert_eq!(tx.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn progress_past_the_bound_is_coalesced_latest_wins() {
        let (tx, mut rx) = event_queue(B);
        for i in 0..10 {
            tx.send_progress("t", format!("p{i}"));
        }
        assert_eq!(tx.queued_events(), 3);
        let mut got = Vec::new();
        while let Some((ev, _permit)) = rx.try_recv() {
            if let ExecutorEvent::Progress { message, .. } = ev {
                got.push(message);
            }
        }
        assert_eq!(got, ["p0", "p1", "p2", "p9"]);
    }
}
