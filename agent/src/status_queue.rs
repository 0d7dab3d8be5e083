//! The durable status-update queue: every task state change is written to disk before it is
//! sent, resent with backoff until the master acknowledges it, and delivered in order per task
//! (a task's next update is held back until the previous one is acknowledged, as in Mesos).
//!
//! The queue does not know how updates travel: [`StatusQueue::run`] hands batches to an
//! [`UpdateTransport`] (the master session, or a test double) and the transport's owner calls
//! [`StatusQueue::acknowledge`] when acknowledgements come back. Writes share commits with
//! every other write of the agent (see `store`), so a burst of updates costs a few fsyncs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmos_api::{FrameworkId, TaskId, TaskStatus};

use crate::store::{Op, Store, StoreError};

const SEQ_KEY: &str = "status_update_next_seq";
const NONCE_KEY: &str = "status_update_nonce";
/// Most updates handed to the transport at once.
const MAX_BATCH: usize = 1024;

/// An update as stored and sent: its place in the queue, its framework, the status (with its
/// uuid set).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedUpdate {
    /// Its place in the queue: increasing, never reused.
    pub seq: u64,
    /// The framework the task belongs to.
    pub framework_id: FrameworkId,
    /// The status, with its uuid set.
    pub status: TaskStatus,
}

impl QueuedUpdate {
    /// Decodes the update stored under sequence number `seq`, refusing one that does not
    /// parse or that says it has another place in the queue.
    pub fn decode(seq: u64, bytes: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |why: String| {
            StoreError::Db(format!(
                "status update {seq} in the queue is corrupt: {why}"
            ))
        };
        let update: QueuedUpdate =
            serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
        if update.seq != seq {
            return Err(corrupt(format!("it says it is update {}", update.seq)));
        }
        Ok(update)
    }
}

/// The transport could not take the updates (the master is down, the stream broke).
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot send status updates: {0}")]
pub struct TransportError(pub String);

/// Carries updates to the master. Acknowledgements come back through
/// [`StatusQueue::acknowledge`].
#[async_trait::async_trait]
pub trait UpdateTransport: Send + Sync {
    /// Sends `updates` to the master in one message; an error leaves them queued for a resend.
    async fn send(&self, updates: Vec<QueuedUpdate>) -> Result<(), TransportError>;
}

/// How unacknowledged updates are resent.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Wait before the first resend; doubles each time.
    pub initial: Duration,
    /// Longest wait between resends.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// Mesos's agent: 10 s, doubling up to 10 min. A reconnect resends at once
    /// ([`StatusQueue::resend_now`]), so a master that was down is caught up without waiting.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    fn delay(&self, attempts: u32) -> Duration {
        let shift = attempts.saturating_sub(1).min(20);
        self.initial
            .checked_mul(1u32 << shift)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

struct Entry {
    update: QueuedUpdate,
    /// Committed to disk; only durable entries are sent.
    durable: bool,
    attempts: u32,
    /// When to send next; `None` for as soon as possible.
    next_send: Option<Instant>,
}

type TaskKey = (FrameworkId, TaskId);

struct State {
    tasks: HashMap<TaskKey, VecDeque<Entry>>,
    next_seq: u64,
    nonce: u64,
    sent: u64,
}

/// The queue. Shared as `Arc<StatusQueue>`.
pub struct StatusQueue {
    store: Store,
    policy: RetryPolicy,
    state: Mutex<State>,
    notify: Notify,
}

impl StatusQueue {
    /// A queue over `store`, holding the updates that were unacknowledged when the store was
    /// last written (`updates`, in sequence order) and the sequence counter from `meta`.
    pub fn new(
        store: Store,
        meta: &[(String, Vec<u8>)],
        updates: &[(u64, Vec<u8>)],
        policy: RetryPolicy,
    ) -> Result<Arc<Self>, StoreError> {
        let read_u64 = |key: &str| {
            meta.iter()
                .find(|(k, _)| k == key)
                .and_then(|(_, v)| v.as_slice().try_into().ok())
                .map(u64::from_le_bytes)
        };
        let mut next_seq = read_u64(SEQ_KEY).unwrap_or(0);
        let nonce = match read_u64(NONCE_KEY) {
            Some(n) => n,
            None => {
                let n = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(0)
                    ^ u64::from(std::process::id());
                store.write_later(vec![Op::PutMeta(
                    NONCE_KEY.into(),
                    n.to_le_bytes().to_vec(),
                )]);
                n
            }
        };
        let mut tasks: HashMap<TaskKey, VecDeque<Entry>> = HashMap::new();
        for (seq, bytes) in updates {
            let update = QueuedUpdate::decode(*seq, bytes)?;
            next_seq = next_seq.max(seq + 1);
            tasks
                .entry((update.framework_id.clone(), update.status.task_id.clone()))
                .or_default()
                .push_back(Entry {
                    update,
                    durable: true,
                    attempts: 0,
                    next_send: None,
                });
        }
        Ok(Arc::new(StatusQueue {
            store,
            policy,
            state: Mutex::new(State {
                tasks,
                next_seq,
                nonce,
                sent: 0,
            }),
            notify: Notify::new(),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is left consistent between statements; a panic elsewhere does not
        // invalidate it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `status` (its uuid is assigned here) durably, together with `extra` operations
    /// in the same transaction, and queues it for sending. Resolves once it is on disk.
    pub async fn enqueue(
        &self,
        framework_id: FrameworkId,
        mut status: TaskStatus,
        extra: Vec<Op>,
    ) -> Result<QueuedUpdate, StoreError> {
        let key = (framework_id.clone(), status.task_id.clone());
        let (update, written) = {
            let mut st = self.lock();
            let seq = st.next_seq;
            st.next_seq += 1;
            status.uuid = Some(format!("{:x}-{seq:x}", st.nonce));
            let update = QueuedUpdate {
                seq,
                framework_id,
                status,
            };
            let bytes = serde_json::to_vec(&update)
                .map_err(|e| StoreError::Db(format!("cannot encode a status update: {e}")))?;
            let mut ops = vec![
                Op::PutUpdate(seq, bytes),
                Op::PutMeta(SEQ_KEY.into(), (seq + 1).to_le_bytes().to_vec()),
            ];
            ops.extend(extra);
            // Submitted under the lock, so the disk sees updates in sequence order.
            let written = self.store.write(ops);
            st.tasks.entry(key.clone()).or_default().push_back(Entry {
                update: update.clone(),
                durable: false,
                attempts: 0,
                next_send: None,
            });
            (update, written)
        };
        let result = written.await;
        let mut st = self.lock();
        if let Some(q) = st.tasks.get_mut(&key) {
            if result.is_ok() {
                if let Some(e) = q.iter_mut().find(|e| e.update.seq == update.seq) {
                    e.durable = true;
                }
            } else {
                q.retain(|e| e.update.seq != update.seq);
                if q.is_empty() {
                    st.tasks.remove(&key);
                }
            }
        }
        drop(st);
        result?;
        self.notify.notify_one();
        Ok(update)
    }

    /// The master acknowledged an update. Returns false when it is not the task's oldest
    /// unacknowledged update (a repeated or stale acknowledgement), which is ignored.
    pub fn acknowledge(&self, framework_id: &FrameworkId, task_id: &TaskId, uuid: &str) -> bool {
        let key = (framework_id.clone(), task_id.clone());
        let mut st = self.lock();
        let Some(q) = st.tasks.get_mut(&key) else {
            return false;
        };
        let matches = q
            .front()
            .is_some_and(|e| e.durable && e.update.status.uuid.as_deref() == Some(uuid));
        if !matches {
            return false;
        }
        let Some(done) = q.pop_front() else {
            return false;
        };
        if q.is_empty() {
            st.tasks.remove(&key);
        }
        drop(st);
        // Losing this removal in a crash only resends an update the master already has.
        self.store
            .write_later(vec![Op::RemoveUpdate(done.update.seq)]);
        self.notify.notify_one();
        true
    }

    /// Makes every held update due now (after a reconnect).
    pub fn resend_now(&self) {
        let mut st = self.lock();
        for q in st.tasks.values_mut() {
            if let Some(e) = q.front_mut() {
                e.next_send = None;
            }
        }
        drop(st);
        self.notify.notify_one();
    }

    /// Updates not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.lock().tasks.values().map(VecDeque::len).sum()
    }

    /// Batches handed to the transport so far.
    pub fn sends(&self) -> u64 {
        self.lock().sent
    }

    /// Takes the updates that are due: the head of each task's queue, if durable and its
    /// resend time has come. Returns them and when the next one falls due.
    fn take_due(&self, now: Instant) -> (Vec<QueuedUpdate>, Option<Instant>) {
        let mut st = self.lock();
        let mut batch = Vec::new();
        let mut wake: Option<Instant> = None;
        let policy = self.policy;
        for q in st.tasks.values_mut() {
            let Some(e) = q.front_mut() else { continue };
            if !e.durable {
                continue;
            }
            let due = e.next_send.is_none_or(|t| t <= now);
            if due && batch.len() < MAX_BATCH {
                e.attempts += 1;
                let next = now + policy.delay(e.attempts);
                e.next_send = Some(next);
                batch.push(e.update.clone());
                wake = Some(wake.map_or(next, |w| w.min(next)));
            } else {
                let at = e.next_send.unwrap_or(now);
                wake = Some(wake.map_or(at, |w| w.min(at)));
            }
        }
        if !batch.is_empty() {
            st.sent += 1;
        }
        // Oldest first, so that a transport that sends in order delivers in queue order.
        batch.sort_by_key(|u| u.seq);
        (batch, wake)
    }

    /// Sends due updates through `transport` until `stop` is cancelled.
    pub async fn run(
        self: Arc<Self>,
        transport: Arc<dyn UpdateTransport>,
        stop: CancellationToken,
    ) {
        loop {
            let (batch, wake) = self.take_due(Instant::now());
            if !batch.is_empty() {
                let n = batch.len();
                if let Err(e) = transport.send(batch).await {
                    tracing::debug!(error = %e, updates = n, "status updates not sent; will retry");
                }
                // Anything that fell due while sending is picked up at once.
                continue;
            }
            let sleep = match wake {
                Some(at) => tokio::time::sleep_until(at),
                None => tokio::time::sleep(Duration::from_secs(3600)),
            };
            tokio::select! {
                () = self.notify.notified() => {}
                () = sleep => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(600),
        };
        assert_eq!(p.delay(1), Duration::from_secs(10));
        assert_eq!(p.delay(2), Duration::from_secs(20));
        assert_eq!(p.delay(4), Duration::from_secs(80));
        assert_eq!(p.delay(30), Duration::from_secs(600));
    }

    #[test]
    fn an_update_decodes_under_its_own_number_only() {
        let update = QueuedUpdate {
            seq: 7,
            framework_id: "fw-1".parse().unwrap(),
            status: TaskStatus {
                task_id: "t1".parse().unwrap(),
                agent_id: None,
                state: wasmos_api::TaskState::Running,
                message: String::new(),
                data: None,
                uuid: Some("1-7".into()),
            },
        };
        let bytes = serde_json::to_vec(&update).unwrap();
        assert_eq!(QueuedUpdate::decode(7, &bytes).unwrap(), update);
        let err = QueuedUpdate::decode(8, &bytes).unwrap_err().to_string();
        assert!(
            err.contains("update 8") && err.contains("update 7"),
            "{err}"
        );
        assert!(QueuedUpdate::decode(7, b"{").is_err());
    }
}
