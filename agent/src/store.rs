//! The agent's durable state in one redb file (`<work_dir>/agent.redb`): the checkpoint of
//! running tasks, the status-update queue, and small metadata (the agent id), written by one
//! group-committing writer thread.
//!
//! Every write goes through [`Store::write`], which hands a batch of operations to the writer
//! and resolves once they are on disk. The writer takes every batch waiting when it starts a
//! transaction, so many writers share one commit (one fsync): this is what lets the agent
//! record thousands of task states per second. Reads happen at start-up only.
//!
//! # When the disk fails
//!
//! A commit that fails (disk full, I/O error) leaves redb refusing every later commit until
//! the database is closed and opened again. So the writer then marks the store **unhealthy**
//! (with redb's error as the reason, see [`Store::health`]), closes the database, keeps the
//! failed batches and every later one in memory, and every [`REOPEN_INTERVAL`] opens the
//! file again and commits what it holds. Once that succeeds the store is healthy again and the
//! held writes resolve as written, in their order. What is held is bounded by
//! [`MAX_HELD_BYTES`]: a write past it fails at once with [`StoreError::Unavailable`] (its
//! caller sees the error; the held ones are kept).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{oneshot, watch};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const UPDATES: TableDefinition<u64, &[u8]> = TableDefinition::new("status_updates");

/// Most batches folded into one transaction.
const MAX_BATCHES_PER_COMMIT: usize = 4096;

/// Most bytes of writes (keys and values) held in memory while the store is unhealthy: 32 MiB,
/// about 100,000 status updates. A write past it fails at once with
/// [`StoreError::Unavailable`].
pub const MAX_HELD_BYTES: usize = 32 << 20;

/// How often an unhealthy store tries to open its file again and commit what it holds: 1 s.
pub const REOPEN_INTERVAL: Duration = Duration::from_secs(1);

/// The agent's database could not be used.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or created.
    #[error(
        "cannot open the agent database {path}: {why} (is another agent using this work \
         directory?)"
    )]
    Open {
        /// The database file.
        path: String,
        /// What redb said.
        why: String,
    },
    /// A read or write of the open database failed.
    #[error("agent database: {0}")]
    Db(String),
    /// The writer thread is gone (the agent is shutting down), so nothing more is stored.
    #[error("the agent database writer has stopped")]
    Closed,
    /// The store is unhealthy and already holds [`MAX_HELD_BYTES`] of writes in memory.
    #[error(
        "the agent database cannot write ({reason}) and already holds {held_bytes} bytes of \
         writes in memory; free disk space on the agent's work directory"
    )]
    Unavailable {
        /// Why the store is unhealthy.
        reason: String,
        /// Bytes held when this write was refused.
        held_bytes: usize,
    },
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

/// One change to the durable state.
#[derive(Debug, Clone)]
pub enum Op {
    /// Stores an agent record (key, value), replacing the old one.
    PutMeta(String, Vec<u8>),
    /// Stores a task checkpoint (key, record), replacing the old one.
    PutTask(String, Vec<u8>),
    /// Removes a task checkpoint.
    RemoveTask(String),
    /// Stores a status update under its sequence number.
    PutUpdate(u64, Vec<u8>),
    /// Removes an acknowledged status update.
    RemoveUpdate(u64),
}

impl Op {
    /// Roughly what the op costs in memory while held.
    fn size(&self) -> usize {
        16 + match self {
            Op::PutMeta(k, v) | Op::PutTask(k, v) => k.len() + v.len(),
            Op::RemoveTask(k) => k.len(),
            Op::PutUpdate(_, v) => v.len(),
            Op::RemoveUpdate(_) => 0,
        }
    }
}

struct Batch {
    ops: Vec<Op>,
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
}

impl Batch {
    fn size(&self) -> usize {
        self.ops.iter().map(Op::size).sum()
    }
}

/// Everything the store held when it was opened.
#[derive(Debug, Default)]
pub struct Loaded {
    /// The agent's own records (its id, the status queue's counters), by key.
    pub meta: Vec<(String, Vec<u8>)>,
    /// The task checkpoints, by key (see [`crate::checkpoint::key`]).
    pub tasks: Vec<(String, Vec<u8>)>,
    /// In sequence order.
    pub updates: Vec<(u64, Vec<u8>)>,
}

pub use wasmos_api::store_faults::StoreFaults;

/// Opens the database file, through the fault switch when there is one.
fn open_db(path: &Path, faults: Option<&StoreFaults>) -> Result<Database, StoreError> {
    let open_err = |why: String| StoreError::Open {
        path: path.display().to_string(),
        why,
    };
    match faults {
        None => Database::create(path).map_err(|e| open_err(e.to_string())),
        Some(faults) => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| open_err(e.to_string()))?;
            let inner =
                redb::backends::FileBackend::new(file).map_err(|e| open_err(e.to_string()))?;
            Database::builder()
                .create_with_backend(faults.backend(inner))
                .map_err(|e| open_err(e.to_string()))
        }
    }
}

/// The durable state. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: std_mpsc::Sender<Batch>,
    commits: Arc<AtomicU64>,
    health: watch::Receiver<Option<String>>,
}

impl Store {
    /// Opens (or creates) the database and starts its writer thread; returns what it holds.
    pub fn open(path: &Path) -> Result<(Store, Loaded), StoreError> {
        Self::open_with_faults(path, None)
    }

    /// [`Store::open`], with the file's writes failing while `faults` is on.
    pub fn open_with_faults(
        path: &Path,
        faults: Option<StoreFaults>,
    ) -> Result<(Store, Loaded), StoreError> {
        let db = open_db(path, faults.as_ref())?;
        // Create the tables so that reads find them.
        let w = db.begin_write().map_err(db_err)?;
        w.open_table(META).map_err(db_err)?;
        w.open_table(TASKS).map_err(db_err)?;
        w.open_table(UPDATES).map_err(db_err)?;
        w.commit().map_err(db_err)?;

        let mut loaded = Loaded::default();
        {
            let r = db.begin_read().map_err(db_err)?;
            let t = r.open_table(META).map_err(db_err)?;
            for item in t.iter().map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                loaded
                    .meta
                    .push((k.value().to_string(), v.value().to_vec()));
            }
            let t = r.open_table(TASKS).map_err(db_err)?;
            for item in t.iter().map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                loaded
                    .tasks
                    .push((k.value().to_string(), v.value().to_vec()));
            }
            let t = r.open_table(UPDATES).map_err(db_err)?;
            for item in t.iter().map_err(db_err)? {
                let (k, v) = item.map_err(db_err)?;
                loaded.updates.push((k.value(), v.value().to_vec()));
            }
        }

        let (tx, rx) = std_mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let (health_tx, health) = watch::channel(None);
        let writer = Writer {
            path: path.to_path_buf(),
            faults,
            db: Some(db),
            rx,
            commits: commits.clone(),
            health: health_tx,
            held: VecDeque::new(),
            held_bytes: 0,
        };
        std::thread::Builder::new()
            .name("wasmos-agent-store".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        Ok((
            Store {
                tx,
                commits,
                health,
            },
            loaded,
        ))
    }

    /// Applies `ops` atomically and durably; the returned future resolves once they are
    /// committed. The batch is handed to the writer when this is called, not when the future
    /// is first polled, so the order of calls is the order of writes. While the store is
    /// unhealthy the future waits until it has recovered (see the module docs).
    pub fn write(
        &self,
        ops: Vec<Op>,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static {
        let (done, rx) = oneshot::channel();
        let sent = self
            .tx
            .send(Batch {
                ops,
                done: Some(done),
            })
            .is_ok();
        async move {
            if !sent {
                return Err(StoreError::Closed);
            }
            rx.await.map_err(|_| StoreError::Closed)?
        }
    }

    /// Applies `ops` with the next commit, without waiting for it (for changes whose loss
    /// only causes a harmless repeat, such as dropping an acknowledged update).
    pub fn write_later(&self, ops: Vec<Op>) {
        let _ = self.tx.send(Batch { ops, done: None });
    }

    /// Transactions committed so far (to observe group commit).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// `None` while the store writes; otherwise why it cannot (redb's error). Watch it to
    /// learn of changes.
    pub fn health(&self) -> watch::Receiver<Option<String>> {
        self.health.clone()
    }

    /// Why the store cannot write now, if it cannot.
    pub fn unhealthy_reason(&self) -> Option<String> {
        self.health.borrow().clone()
    }
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    faults: Option<StoreFaults>,
    /// `None` after a failed commit closed it, until it opens again.
    db: Option<Database>,
    rx: std_mpsc::Receiver<Batch>,
    commits: Arc<AtomicU64>,
    health: watch::Sender<Option<String>>,
    /// Writes waiting for the store to recover, in order.
    held: VecDeque<Batch>,
    held_bytes: usize,
}

impl Writer {
    fn run(mut self) {
        loop {
            if self.held.is_empty() {
                let Ok(first) = self.rx.recv() else { return };
                let mut batches = vec![first];
                while batches.len() < MAX_BATCHES_PER_COMMIT {
                    match self.rx.try_recv() {
                        Ok(b) => batches.push(b),
                        Err(_) => break,
                    }
                }
                let result = match &self.db {
                    Some(db) => commit(db, &batches),
                    None => Err(StoreError::Db("the database is closed".into())),
                };
                self.commits.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(()) => resolve(batches, Ok(())),
                    Err(e) => {
                        self.fail(&e);
                        for b in batches {
                            self.hold(b);
                        }
                    }
                }
            } else {
                // Unhealthy: hold what comes until it is time to try again.
                let deadline = Instant::now() + REOPEN_INTERVAL;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match self.rx.recv_timeout(left) {
                        Ok(b) => self.hold(b),
                        Err(std_mpsc::RecvTimeoutError::Timeout) => break,
                        // The agent is shutting down: what is held cannot be written.
                        Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                            let reason = self.reason();
                            let held: Vec<Batch> = self.held.drain(..).collect();
                            resolve(
                                held,
                                Err(StoreError::Db(format!(
                                    "not written before shutdown: {reason}"
                                ))),
                            );
                            return;
                        }
                    }
                }
                self.retry();
            }
        }
    }

    fn reason(&self) -> String {
        self.health.borrow().clone().unwrap_or_default()
    }

    /// A commit failed: close the database (redb refuses every later commit after an I/O
    /// error until it is opened again) and say why.
    fn fail(&mut self, e: &StoreError) {
        self.db = None;
        let reason = e.to_string();
        if self.health.borrow().as_deref() != Some(reason.as_str()) {
            tracing::error!(error = %e, path = %self.path.display(),
                "agent database cannot write; holding writes in memory and retrying");
            self.health.send_replace(Some(reason));
        }
    }

    /// Keeps a batch for the next try, or refuses it when the bound is reached.
    fn hold(&mut self, b: Batch) {
        let size = b.size();
        if self.held_bytes + size > MAX_HELD_BYTES {
            let err = StoreError::Unavailable {
                reason: self.reason(),
                held_bytes: self.held_bytes,
            };
            match b.done {
                Some(done) => {
                    let _ = done.send(Err(err));
                }
                None => tracing::warn!(error = %err, "dropping a deferred agent database write"),
            }
            return;
        }
        self.held_bytes += size;
        self.held.push_back(b);
    }

    /// Opens the database again and commits everything held in one transaction.
    fn retry(&mut self) {
        self.db = None; // Closed before it is opened again: the file is locked while open.
        let db = match open_db(&self.path, self.faults.as_ref()) {
            Ok(db) => db,
            Err(e) => return self.fail(&e),
        };
        let batches: Vec<Batch> = self.held.drain(..).collect();
        let result = commit(&db, &batches);
        self.commits.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.held_bytes = 0;
                self.db = Some(db);
                tracing::info!(path = %self.path.display(), writes = batches.len(),
                    "agent database writes again; held writes committed");
                self.health.send_replace(None);
                resolve(batches, Ok(()));
            }
            Err(e) => {
                drop(db);
                self.held.extend(batches);
                self.fail(&e);
            }
        }
    }
}

fn resolve(batches: Vec<Batch>, result: Result<(), StoreError>) {
    for b in batches {
        if let Some(done) = b.done {
            let _ = done.send(result.clone());
        }
    }
}

fn commit(db: &Database, batches: &[Batch]) -> Result<(), StoreError> {
    let w = db.begin_write().map_err(db_err)?;
    {
        let mut meta = w.open_table(META).map_err(db_err)?;
        let mut tasks = w.open_table(TASKS).map_err(db_err)?;
        let mut updates = w.open_table(UPDATES).map_err(db_err)?;
        for op in batches.iter().flat_map(|b| &b.ops) {
            match op {
                Op::PutMeta(k, v) => {
                    meta.insert(k.as_str(), v.as_slice()).map_err(db_err)?;
                }
                Op::PutTask(k, v) => {
                    tasks.insert(k.as_str(), v.as_slice()).map_err(db_err)?;
                }
                Op::RemoveTask(k) => {
                    tasks.remove(k.as_str()).map_err(db_err)?;
                }
                Op::PutUpdate(k, v) => {
                    updates.insert(*k, v.as_slice()).map_err(db_err)?;
                }
                Op::RemoveUpdate(k) => {
                    updates.remove(*k).map_err(db_err)?;
                }
            }
        }
    }
    w.commit().map_err(db_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_survive_reopen_and_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.redb");
        {
            let (store, loaded) = Store::open(&path).unwrap();
            assert!(loaded.tasks.is_empty());
            let writes: Vec<_> = (0..200u64)
                .map(|i| store.write(vec![Op::PutUpdate(i, vec![i as u8])]))
                .collect();
            for w in writes {
                w.await.unwrap();
            }
            assert!(
                store.commits() < 50,
                "200 concurrent writes took {} commits; they should share commits",
                store.commits()
            );
            store
                .write(vec![
                    Op::PutTask("fw/t".into(), b"x".to_vec()),
                    Op::RemoveUpdate(5),
                    Op::PutMeta("agent_id".into(), b"a1".to_vec()),
                ])
                .await
                .unwrap();
        }
        // The writer thread exits when the store's sender is dropped; give it a moment to
        // release the file.
        let mut tries = 0;
        let loaded = loop {
            match Store::open(&path) {
                Ok((_, l)) => break l,
                Err(e) if tries < 500 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(loaded.updates.len(), 199);
        assert_eq!(loaded.updates[0], (0, vec![0]));
        assert!(loaded.updates.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(loaded.tasks, vec![("fw/t".to_string(), b"x".to_vec())]);
        assert_eq!(loaded.meta, vec![("agent_id".to_string(), b"a1".to_vec())]);
    }

    async fn wait_health(store: &Store, healthy: bool) {
        let mut h = store.health();
        tokio::time::timeout(
            Duration::from_secs(60),
            h.wait_for(|r| r.is_none() == healthy),
        )
        .await
        .expect("the store's health did not change")
        .unwrap();
    }

    #[tokio::test]
    async fn a_failing_disk_holds_writes_and_commits_them_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.redb");
        let faults = StoreFaults::new();
        let (store, _) = Store::open_with_faults(&path, Some(faults.clone())).unwrap();
        store
            .write(vec![Op::PutUpdate(1, b"before".to_vec())])
            .await
            .unwrap();
        assert_eq!(store.unhealthy_reason(), None);

        faults.set_failing(true);
        let during = store.write(vec![Op::PutUpdate(2, b"during".to_vec())]);
        wait_health(&store, false).await;
        let reason = store.unhealthy_reason().unwrap();
        assert!(reason.contains("No space left"), "{reason}");
        // Later writes queue behind it in order, and nothing resolves while the disk fails.
        let later = store.write(vec![
            Op::RemoveUpdate(1),
            Op::PutUpdate(3, b"later".to_vec()),
        ]);
        let mut both = Box::pin(async { (during.await, later.await) });
        assert!(
            tokio::time::timeout(REOPEN_INTERVAL * 3, &mut both)
                .await
                .is_err(),
            "a write resolved while the disk failed"
        );
        assert!(store.unhealthy_reason().is_some());

        faults.set_failing(false);
        let (a, b) = both.await;
        a.unwrap();
        b.unwrap();
        wait_health(&store, true).await;
        store
            .write(vec![Op::PutUpdate(4, b"after".to_vec())])
            .await
            .unwrap();

        drop(store);
        let loaded = loop {
            match Store::open(&path) {
                Ok((_, l)) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        let keys: Vec<u64> = loaded.updates.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, vec![2, 3, 4]);
    }

    #[tokio::test]
    async fn held_writes_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.redb");
        let faults = StoreFaults::new();
        let (store, _) = Store::open_with_faults(&path, Some(faults.clone())).unwrap();
        faults.set_failing(true);
        // Exactly at the bound: held.
        let at_bound = store.write(vec![Op::PutUpdate(1, vec![7; MAX_HELD_BYTES - 16])]);
        wait_health(&store, false).await;
        // One byte of op past it: refused at once, and so is one far past it.
        let refused_at_once = Duration::from_secs(30);
        let past = tokio::time::timeout(refused_at_once, store.write(vec![Op::RemoveUpdate(9)]))
            .await
            .expect("a write past the bound is refused at once, not held");
        assert!(
            matches!(past, Err(StoreError::Unavailable { .. })),
            "{past:?}"
        );
        let far = tokio::time::timeout(
            refused_at_once,
            store.write(vec![Op::PutUpdate(2, vec![0; 2 * MAX_HELD_BYTES])]),
        )
        .await
        .expect("a write far past the bound is refused at once, not held");
        assert!(
            matches!(far, Err(StoreError::Unavailable { .. })),
            "{far:?}"
        );
        faults.set_failing(false);
        at_bound.await.unwrap();
        // Once recovered, the room is back.
        store.write(vec![Op::RemoveUpdate(9)]).await.unwrap();
    }
}
