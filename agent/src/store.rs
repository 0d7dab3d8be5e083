//! The agent's durable state in one redb file (`<work_dir>/agent.redb`): the checkpoint of
//! running tasks, the status-update queue, and small metadata (the agent id), written by one
//! group-committing writer thread.
//!
//! Every write goes through [`Store::write`], which hands a batch of operations to the writer
//! and resolves once they are on disk. The writer takes every batch waiting when it starts a
//! transaction, so many writers share one commit (one fsync): this is what lets the agent
//! record thousands of task states per second. Reads happen at start-up only.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
const UPDATES: TableDefinition<u64, &[u8]> = TableDefinition::new("status_updates");

/// Most batches folded into one transaction.
const MAX_BATCHES_PER_COMMIT: usize = 4096;

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

struct Batch {
    ops: Vec<Op>,
    done: Option<oneshot::Sender<Result<(), StoreError>>>,
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

/// The durable state. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::UnboundedSender<Batch>,
    commits: Arc<AtomicU64>,
}

impl Store {
    /// Opens (or creates) the database and starts its writer thread; returns what it holds.
    pub fn open(path: &Path) -> Result<(Store, Loaded), StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
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

        let (tx, rx) = mpsc::unbounded_channel();
        let commits = Arc::new(AtomicU64::new(0));
        let c = commits.clone();
        std::thread::Builder::new()
            .name("wasmos-agent-store".into())
            .spawn(move || writer(db, rx, c))
            .map_err(|e| StoreError::Db(format!("cannot start the writer thread: {e}")))?;
        Ok((Store { tx, commits }, loaded))
    }

    /// Applies `ops` atomically and durably; the returned future resolves once they are
    /// committed. The batch is handed to the writer when this is called, not when the future
    /// is first polled, so the order of calls is the order of writes.
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
}

fn writer(db: Database, mut rx: mpsc::UnboundedReceiver<Batch>, commits: Arc<AtomicU64>) {
    while let Some(first) = rx.blocking_recv() {
        let mut batches = vec![first];
        while batches.len() < MAX_BATCHES_PER_COMMIT {
            match rx.try_recv() {
                Ok(b) => batches.push(b),
                Err(_) => break,
            }
        }
        let result = commit(&db, &batches);
        commits.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = &result {
            tracing::error!(error = %e, "agent database commit failed");
        }
        for b in batches {
            if let Some(done) = b.done {
                let _ = done.send(result.clone());
            }
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
}
