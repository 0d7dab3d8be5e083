//! The Raft store of one master: its log, vote, committed and purged markers, its latest
//! snapshot, all in one redb file (`<data-dir>/raft.redb`), and the state machine that wraps
//! the [`Registry`].
//!
//! Layout: table `raft_log` maps a log index to an entry, table `raft_meta` holds the vote,
//! the committed and purged log ids, and the snapshot. Every value is a record: a CRC-32 of the
//! payload, then the payload, encoded with [`super::codec`] (postcard); a snapshot's payload
//! is the length of its encoded metadata (8 bytes, little endian), the metadata, then the
//! encoded registry. [`open_store`] reads every record back and checks that the log has no
//! gap, so a master whose disk state is damaged refuses to start ([`StoreError::Corrupt`])
//! instead of joining with bad data. redb's own page checksums are verified on open too.
//! Once the store holds a vote or log entry, [`super::marker`] records that in the data dir; a
//! store file then found missing, empty (0 bytes) or without any state is refused
//! ([`StoreError::Lost`]) rather than opened as a new, empty member, and a data dir is refused
//! to a master of another id ([`StoreError::OtherMaster`]).
//!
//! Durability and group commit: the log, vote and markers are mirrored in memory, so that an
//! appended entry is readable at once, and a writer thread persists the changes in order: all
//! the changes waiting when it starts a commit go into one redb transaction and one fsync, and
//! only then is openraft told that the entries are on disk. A vote is durable before its call
//! returns. A batch of only markers and deletions (committed, purged, truncated) is committed
//! without an fsync: the next durable commit persists it, and what survives a crash is always
//! a prefix of the changes, which openraft recovers from. The mirror holds the log that compaction has not purged yet.
//!
//! The state machine lives in memory and is persisted through snapshots: on start it is the
//! last snapshot, and openraft re-applies the committed entries after it (the committed marker
//! is stored for that).

// openraft's `StorageError` is what its traits return; it is large, and not ours to box.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::io::{self, Cursor};
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, RwLock};

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, LogState, OptionalSend, RaftLogReader,
    RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
    Vote,
};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::faults::StoreFaults;
use super::{CommandResult, NodeId, TypeConfig, apply_command};
use crate::registry::Registry;
use crate::sync;

/// The file name of the store inside a master's data dir.
pub const STORE_FILE: &str = "raft.redb";

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "purged";
const KEY_SNAPSHOT: &str = "snapshot";

type SResult<T> = Result<T, StorageError<NodeId>>;

/// Why a Raft store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data dir could not be created or used.
    #[error("cannot use the data dir {path}: {source}")]
    DataDir {
        /// The data dir.
        path: PathBuf,
        /// The I/O error: creating the dir, or starting the store's writer thread.
        #[source]
        source: io::Error,
    },
    /// redb could not open the file for a reason other than damage (it is locked by another
    /// process, it cannot be read).
    #[error("cannot open the Raft store {path}: {detail}")]
    Open {
        /// The store file.
        path: PathBuf,
        /// What redb said.
        detail: String,
    },
    /// The file or a record in it is damaged, or the records contradict each other.
    #[error(
        "the Raft store {path} is corrupt: {detail}. This master refuses to start with bad \
         data: restore its data dir from a copy, or move the data dir away and add this master \
         back to the cluster as a new member"
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// Which record is damaged, or which records disagree, and how.
        detail: String,
    },
    /// The data dir's marker says it held a Raft store, but the store file is missing, empty
    /// or holds no state: starting would make this master a new, empty member and lose the
    /// registry it had.
    #[error(
        "the data dir {dir} held a Raft store (its marker {marker_path} was {marker}), but \
         {path} {found}. This master refuses to start as a new, empty member, which would lose \
         the registry: restore {path} from a backup, or remove the data dir to start afresh \
         (in a group, the master then joins as a new member: `wasmos operator members add`; a \
         master alone then starts a new, empty group)"
    )]
    Lost {
        /// The data dir.
        dir: PathBuf,
        /// The store file.
        path: PathBuf,
        /// The marker file.
        marker_path: PathBuf,
        /// What the marker says.
        marker: super::marker::Marker,
        /// What is wrong with the store file: "is missing", "is empty (0 bytes)", ...
        found: String,
    },
    /// The data dir holds the store of another master.
    #[error(
        "the data dir {dir} holds the Raft store of master {owner} (its marker {marker_path} \
         says so), not of master {id}: start that master with --id {owner}, or give master \
         {id} a data dir of its own"
    )]
    OtherMaster {
        /// The data dir.
        dir: PathBuf,
        /// The marker file.
        marker_path: PathBuf,
        /// The master the marker names.
        owner: NodeId,
        /// The master that tried to open it.
        id: NodeId,
    },
}

// ----- records -----

/// CRC-32 (IEEE 802.3, reflected), table-driven.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        crc = TABLE[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// A record: the CRC-32 of `payload` (little endian), then `payload`.
fn seal(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// The payload of a record, or why it is damaged.
fn unseal(record: &[u8]) -> Result<&[u8], String> {
    if record.len() < 4 {
        return Err(format!(
            "a {}-byte record is shorter than its checksum",
            record.len()
        ));
    }
    let (sum, payload) = record.split_at(4);
    let want = u32::from_le_bytes(sum.try_into().expect("4 bytes"));
    let got = crc32(payload);
    if want != got {
        return Err(format!(
            "checksum mismatch (stored {want:08x}, computed {got:08x})"
        ));
    }
    Ok(payload)
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // The types stored here (openraft's log ids, votes, entries of registry commands) are
    // plain data that postcard always serializes.
    seal(&super::codec::to_vec(value).expect("Raft records serialize"))
}

fn decode<T: DeserializeOwned>(record: &[u8]) -> Result<T, String> {
    super::codec::from_slice(unseal(record)?).map_err(|e| format!("undecodable record: {e}"))
}

/// The metadata of a stored snapshot and the serialized registry it holds.
#[derive(Serialize, Deserialize)]
struct SnapshotHeader {
    meta: SnapshotMeta<NodeId, BasicNode>,
}

fn encode_snapshot(meta: &SnapshotMeta<NodeId, BasicNode>, data: &[u8]) -> Vec<u8> {
    let header =
        super::codec::to_vec(&SnapshotHeader { meta: meta.clone() }).expect("snapshot metadata");
    let mut payload = Vec::with_capacity(8 + header.len() + data.len());
    payload.extend_from_slice(&(header.len() as u64).to_le_bytes());
    payload.extend_from_slice(&header);
    payload.extend_from_slice(data);
    seal(&payload)
}

/// A stored snapshot, checked: its metadata and registry decode.
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

fn decode_snapshot(record: &[u8]) -> Result<StoredSnapshot, String> {
    let payload = unseal(record)?;
    if payload.len() < 8 {
        return Err("snapshot record is truncated".into());
    }
    let (len, rest) = payload.split_at(8);
    let len = u64::from_le_bytes(len.try_into().expect("8 bytes")) as usize;
    if len > rest.len() {
        return Err("snapshot header is longer than the record".into());
    }
    let (header, data) = rest.split_at(len);
    let header: SnapshotHeader = super::codec::from_slice(header)
        .map_err(|e| format!("undecodable snapshot header: {e}"))?;
    Ok(StoredSnapshot {
        meta: header.meta,
        data: data.to_vec(),
    })
}

fn decode_registry(data: &[u8]) -> Result<Registry, String> {
    super::codec::from_slice(data).or_else(|e| {
        // A snapshot written before the registry's last fields: postcard encodes a struct as
        // its fields in order, and the registry ends with `acl`, which ends with the fields
        // appended to it later (`AclState::submitted_with`, `ended_owners`). Appending the
        // defaults of what is missing makes it a current one: first the ACL state's later
        // fields (written with `acl`, before them), then the whole ACL state (written before
        // `acl`).
        let full = crate::acl::AclState::default();
        let later = (full.submitted_with.clone(), full.ended_owners.clone());
        for tail in [super::codec::to_vec(&later), super::codec::to_vec(&full)] {
            let tail = tail.map_err(|e| format!("the default ACL state does not encode: {e}"))?;
            let mut upgraded = data.to_vec();
            upgraded.extend(tail);
            if let Ok(r) = super::codec::from_slice(&upgraded) {
                return Ok(r);
            }
        }
        Err(format!("the snapshot's registry does not decode: {e}"))
    })
}

fn read_err(e: impl Into<redb::Error>) -> StorageError<NodeId> {
    StorageIOError::read(AnyError::new(&e.into())).into()
}

fn write_err(e: impl Into<redb::Error>) -> StorageError<NodeId> {
    StorageIOError::write(AnyError::new(&e.into())).into()
}

fn corrupt_read(detail: String) -> StorageError<NodeId> {
    StorageIOError::read(AnyError::error(detail)).into()
}

/// Runs a blocking redb write off the async runtime's worker threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> SResult<T> + Send + 'static,
) -> SResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::from(StorageIOError::write(AnyError::new(&e))))?
}

// ----- opening and checking -----

/// The stores of one master, opened and checked: hand `log` and `state_machine` to
/// `openraft::Raft::new`.
pub struct OpenedStore {
    /// The log, vote and markers.
    pub log: LogStore,
    /// The state machine around the registry.
    pub state_machine: StateMachineStore,
    /// A read handle on the state machine's registry.
    pub registry: RegistryHandle,
    /// Tells when every user of the database (the two stores, their readers) is gone and the
    /// file is closed, so that it may be opened again.
    pub closed: StoreClosed,
}

/// What [`open_store`] found, after checking it.
struct Loaded {
    snapshot: Option<StoredSnapshot>,
    registry: Registry,
    log: LogMem,
}

impl Loaded {
    /// Whether the store holds anything Raft wrote: a vote, a log entry, a marker or a snapshot.
    fn has_state(&self) -> bool {
        self.snapshot.is_some()
            || self.log.vote.is_some()
            || !self.log.entries.is_empty()
            || self.log.purged.is_some()
            || self.log.committed.is_some()
    }
}

/// The marker the writer thread still has to write, after the store's first durable vote or
/// log entry.
struct MarkerDue {
    data_dir: PathBuf,
    node_id: NodeId,
}

/// Opens (creating it if needed) the Raft store of master `node_id` in `data_dir`, verifies
/// redb's page checksums and every record, and returns the stores. Refuses a damaged store
/// with [`StoreError::Corrupt`], a store the data dir's marker says held state but that is
/// missing, empty or stateless with [`StoreError::Lost`], and another master's data dir with
/// [`StoreError::OtherMaster`].
pub fn open_store(data_dir: &Path, node_id: NodeId) -> Result<OpenedStore, StoreError> {
    open_store_with_faults(data_dir, node_id, None)
}

/// [`open_store`], with the file's writes failing while `faults` is on (for tests of a full
/// or failing disk).
pub fn open_store_with_faults(
    data_dir: &Path,
    node_id: NodeId,
    faults: Option<&StoreFaults>,
) -> Result<OpenedStore, StoreError> {
    let dir_err = |source| StoreError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(data_dir).map_err(dir_err)?;
    let path = data_dir.join(STORE_FILE);
    let found_marker = super::marker::read(data_dir).map_err(dir_err)?;
    let lost = |marker: &super::marker::Marker, found: &str| StoreError::Lost {
        dir: data_dir.to_path_buf(),
        path: path.clone(),
        marker_path: super::marker::path(data_dir),
        marker: marker.clone(),
        found: found.to_string(),
    };
    if let Some(m) = &found_marker {
        if let Some(owner) = m.node_id
            && owner != node_id
        {
            return Err(StoreError::OtherMaster {
                dir: data_dir.to_path_buf(),
                marker_path: super::marker::path(data_dir),
                owner,
                id: node_id,
            });
        }
        // Checked before redb opens the file, which would create a missing or empty one anew.
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(lost(m, "is missing")),
            Err(e) => {
                return Err(StoreError::Open {
                    path: path.clone(),
                    detail: e.to_string(),
                });
            }
            Ok(md) if md.len() == 0 => return Err(lost(m, "is empty (0 bytes)")),
            Ok(_) => {}
        }
    }
    let corrupt = |detail: String| StoreError::Corrupt {
        path: path.clone(),
        detail,
    };
    let mut builder = redb::Builder::new();
    builder.set_check_integrity_on_open(true);
    let db = match faults {
        None => builder.create(&path),
        Some(faults) => std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| redb::DatabaseError::Storage(redb::StorageError::Io(e)))
            .and_then(redb::backends::FileBackend::new)
            .and_then(|inner| builder.create_with_backend(faults.backend(inner))),
    }
    .map_err(|e| match e {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(d)) => corrupt(d),
        redb::DatabaseError::Storage(redb::StorageError::Io(io))
            if matches!(
                io.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData
            ) =>
        {
            corrupt(io.to_string())
        }
        other => StoreError::Open {
            path: path.clone(),
            detail: other.to_string(),
        },
    })?;
    let open_err = |e: redb::Error| match e {
        redb::Error::Corrupted(d) => corrupt(d),
        other => StoreError::Open {
            path: path.clone(),
            detail: other.to_string(),
        },
    };
    (|| -> Result<(), redb::Error> {
        let w = db.begin_write()?;
        w.open_table(LOG)?;
        w.open_table(META)?;
        w.commit()?;
        Ok(())
    })()
    .map_err(open_err)?;
    let loaded = check(&db).map_err(|e| match e {
        CheckError::Redb(e) => open_err(e),
        CheckError::Corrupt(d) => corrupt(d),
    })?;
    let has_state = loaded.has_state();
    if let Some(m) = &found_marker
        && !has_state
    {
        return Err(lost(
            m,
            "holds no Raft state (no vote, log entry or snapshot)",
        ));
    }
    // A store that holds state but no marker predates markers, or its master stopped between
    // the first commit and writing the marker.
    if found_marker.is_none() && has_state {
        super::marker::write(data_dir, node_id).map_err(dir_err)?;
    }
    let marker_due = (found_marker.is_none() && !has_state).then(|| MarkerDue {
        data_dir: data_dir.to_path_buf(),
        node_id,
    });

    let closed = StoreClosed(Arc::new(AtomicBool::new(false)));
    let db = Arc::new(Db {
        db,
        _signal: CloseSignal(closed.0.clone()),
    });
    let (writer_tx, writer_rx) = std_mpsc::channel();
    let durable_commits = Arc::new(AtomicU64::new(0));
    {
        let db = db.clone();
        let commits = durable_commits.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer(db, writer_rx, commits, marker_due))
            .map_err(dir_err)?;
    }
    let (last_applied, last_membership) = match &loaded.snapshot {
        Some(s) => (s.meta.last_log_id, s.meta.last_membership.clone()),
        None => (None, StoredMembership::default()),
    };
    let state = Arc::new(RwLock::new(SmData {
        last_applied,
        last_membership,
        registry: loaded.registry,
    }));
    Ok(OpenedStore {
        log: LogStore {
            reader: LogReader {
                mem: Arc::new(RwLock::new(loaded.log)),
            },
            writer: writer_tx,
            durable_commits,
        },
        state_machine: StateMachineStore {
            db,
            state: state.clone(),
            snapshot_seq: Arc::new(AtomicU64::new(0)),
        },
        registry: RegistryHandle { state },
        closed,
    })
}

/// Whether a store's file is closed (see [`OpenedStore::closed`]).
#[derive(Clone, Debug)]
pub struct StoreClosed(Arc<AtomicBool>);

impl StoreClosed {
    /// True once the database has been dropped and its file lock released.
    pub fn is_closed(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Sets the flag when dropped.
struct CloseSignal(Arc<AtomicBool>);

impl Drop for CloseSignal {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The database and its close signal. Fields drop in order: the database (closing the file)
/// first, then the signal.
struct Db {
    db: Database,
    _signal: CloseSignal,
}

impl std::ops::Deref for Db {
    type Target = Database;

    fn deref(&self) -> &Database {
        &self.db
    }
}

enum CheckError {
    Redb(redb::Error),
    Corrupt(String),
}

impl<E: Into<redb::Error>> From<E> for CheckError {
    fn from(e: E) -> Self {
        CheckError::Redb(e.into())
    }
}

/// Reads back every record and checks that they agree with each other.
fn check(db: &Database) -> Result<Loaded, CheckError> {
    let r = db.begin_read()?;
    let meta = r.open_table(META)?;
    let get = |key: &str| -> Result<Option<Vec<u8>>, CheckError> {
        Ok(meta.get(key)?.map(|v| v.value().to_vec()))
    };
    let raw = RawMeta {
        vote: get(KEY_VOTE)?,
        committed: get(KEY_COMMITTED)?,
        purged: get(KEY_PURGED)?,
        snapshot: get(KEY_SNAPSHOT)?,
    };
    let log = r.open_table(LOG)?;
    let entries = log.iter()?.map(|item| {
        let (k, v) = item?;
        Ok((k.value(), v.value().to_vec()))
    });
    check_parts(raw, entries)
}

/// The records of table `raft_meta`, not yet decoded.
struct RawMeta {
    vote: Option<Vec<u8>>,
    committed: Option<Vec<u8>>,
    purged: Option<Vec<u8>>,
    snapshot: Option<Vec<u8>>,
}

/// Decodes the records of a store (the log in index order, one entry at a time) and checks
/// that they agree with each other: what [`open_store`] does once redb has read them.
fn check_parts(
    raw: RawMeta,
    log: impl IntoIterator<Item = Result<(u64, Vec<u8>), CheckError>>,
) -> Result<Loaded, CheckError> {
    let bad = |what: &str, e: String| CheckError::Corrupt(format!("{what}: {e}"));
    let vote = match raw.vote {
        Some(v) => Some(decode::<Vote<NodeId>>(&v).map_err(|e| bad("the vote", e))?),
        None => None,
    };
    let committed = match raw.committed {
        Some(v) => {
            decode::<Option<LogId<NodeId>>>(&v).map_err(|e| bad("the committed marker", e))?
        }
        None => None,
    };
    let purged = match raw.purged {
        Some(v) => decode::<Option<LogId<NodeId>>>(&v).map_err(|e| bad("the purged marker", e))?,
        None => None,
    };
    let (snapshot, registry) = match raw.snapshot {
        Some(v) => {
            let s = decode_snapshot(&v).map_err(|e| bad("the snapshot", e))?;
            let registry = decode_registry(&s.data).map_err(|e| bad("the snapshot", e))?;
            (Some(s), registry)
        }
        None => (None, Registry::default()),
    };

    // No log reaches the end of the index range: an index there is a damaged record (and
    // the next index would overflow).
    let past_the_end = |what: String| {
        CheckError::Corrupt(format!(
            "{what} is at index {}, the end of the index range, which no log reaches",
            u64::MAX
        ))
    };
    let mut expected: Option<u64> = match purged {
        Some(p) => Some(
            p.index
                .checked_add(1)
                .ok_or_else(|| past_the_end("the purged marker".into()))?,
        ),
        None => None,
    };
    let mut last: Option<LogId<NodeId>> = None;
    let mut entries = BTreeMap::new();
    for item in log {
        let (index, v) = item?;
        if let Some(want) = expected
            && index != want
        {
            return Err(CheckError::Corrupt(if last.is_none() {
                format!(
                    "the log starts at index {index}, but entries up to index {} were purged: \
                     entries {want} to {} are missing",
                    want - 1,
                    index.saturating_sub(1)
                )
            } else {
                format!(
                    "the log has a gap: entries {want} to {} are missing",
                    index.saturating_sub(1)
                )
            }));
        }
        let entry: Entry<TypeConfig> =
            decode(&v).map_err(|e| bad(&format!("log entry {index}"), e))?;
        if entry.log_id.index != index {
            return Err(CheckError::Corrupt(format!(
                "log entry stored at index {index} says it is entry {}",
                entry.log_id.index
            )));
        }
        if let Some(prev) = last
            && entry.log_id.leader_id.term < prev.leader_id.term
        {
            return Err(CheckError::Corrupt(format!(
                "log entry {index} has term {} below the term {} of the entry before it",
                entry.log_id.leader_id.term, prev.leader_id.term
            )));
        }
        last = Some(entry.log_id);
        expected = Some(
            index
                .checked_add(1)
                .ok_or_else(|| past_the_end(format!("log entry {index}")))?,
        );
        entries.insert(index, entry);
    }
    let snapshot_last = snapshot.as_ref().and_then(|s| s.meta.last_log_id);
    if let Some(p) = purged
        && snapshot_last.is_none_or(|s| s.index < p.index)
    {
        return Err(CheckError::Corrupt(format!(
            "log entries up to index {} were purged, but no snapshot covers them (the snapshot \
             ends at {})",
            p.index,
            snapshot_last.map_or("nothing".to_string(), |s| s.index.to_string())
        )));
    }
    let last_known = last.or(purged).max(snapshot_last);
    if let Some(c) = committed
        && last_known.is_none_or(|l| l.index < c.index)
    {
        return Err(CheckError::Corrupt(format!(
            "entry {} is marked committed, but the log and snapshot end before it",
            c.index
        )));
    }
    Ok(Loaded {
        snapshot,
        registry,
        log: LogMem {
            entries,
            purged,
            vote,
            committed,
        },
    })
}

// ----- the record checks, without a database (tools, the fuzz harness) -----

/// The records of a Raft store as its tables hold them, not yet decoded: the input of
/// [`check_records`]. Every field is absent (or empty) by default.
#[derive(Clone, Debug, Default)]
pub struct RawRecords {
    /// The vote record (`raft_meta` key `vote`).
    pub vote: Option<Vec<u8>>,
    /// The committed marker record (key `committed`).
    pub committed: Option<Vec<u8>>,
    /// The purged marker record (key `purged`).
    pub purged: Option<Vec<u8>>,
    /// The snapshot record (key `snapshot`).
    pub snapshot: Option<Vec<u8>>,
    /// The log records (`raft_log`), as (index, record), in increasing index order as redb
    /// iterates them.
    pub log: Vec<(u64, Vec<u8>)>,
}

/// What [`check_records`] found in records that passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedRecords {
    /// Log entries kept.
    pub log_entries: usize,
    /// The index of the last log entry, if any.
    pub last_log_index: Option<u64>,
    /// Whether a snapshot was stored.
    pub has_snapshot: bool,
}

/// Decodes and cross-checks `raw` exactly as [`open_store`] does with what it reads from the
/// file: every record's checksum and encoding, the snapshot's registry, no gap in the log,
/// indexes and terms in order, markers covered by the log or snapshot. On refusal, returns
/// the detail that [`StoreError::Corrupt`] would carry.
pub fn check_records(raw: RawRecords) -> Result<CheckedRecords, String> {
    let meta = RawMeta {
        vote: raw.vote,
        committed: raw.committed,
        purged: raw.purged,
        snapshot: raw.snapshot,
    };
    match check_parts(meta, raw.log.into_iter().map(Ok)) {
        Ok(l) => Ok(CheckedRecords {
            log_entries: l.log.entries.len(),
            last_log_index: l.log.entries.keys().next_back().copied(),
            has_snapshot: l.snapshot.is_some(),
        }),
        Err(CheckError::Corrupt(d)) => Err(d),
        Err(CheckError::Redb(e)) => Err(e.to_string()),
    }
}

/// `value` as the store writes it in a record: its checksum, then its encoding. Fails only
/// for a value postcard cannot encode.
pub fn seal_record<T: Serialize>(value: &T) -> Result<Vec<u8>, super::codec::Error> {
    Ok(seal(&super::codec::to_vec(value)?))
}

/// The snapshot record the store writes for `meta` and the encoded registry `data`.
pub fn seal_snapshot(meta: &SnapshotMeta<NodeId, BasicNode>, data: &[u8]) -> Vec<u8> {
    encode_snapshot(meta, data)
}

/// Decodes a snapshot's data (the encoded registry) as a follower does when its leader
/// installs a snapshot, accepting the older layouts the store still reads.
pub fn decode_snapshot_data(data: &[u8]) -> Result<Registry, String> {
    decode_registry(data)
}

// ----- the log -----

/// The log as the rest of the store sees it: every entry not purged, the vote and markers. It
/// changes before the writer thread persists the change, so that what was appended is
/// readable at once; its size is bounded by log compaction.
#[derive(Default)]
struct LogMem {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    purged: Option<LogId<NodeId>>,
    vote: Option<Vote<NodeId>>,
    committed: Option<LogId<NodeId>>,
}

/// Reads log entries; replication tasks each hold one.
#[derive(Clone)]
pub struct LogReader {
    mem: Arc<RwLock<LogMem>>,
}

impl LogReader {
    fn read<RB: RangeBounds<u64>>(&self, range: RB) -> Vec<Entry<TypeConfig>> {
        let start = match range.start_bound() {
            Bound::Included(&s) => Bound::Included(s),
            Bound::Excluded(&s) => Bound::Excluded(s),
            Bound::Unbounded => Bound::Unbounded,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => Bound::Included(e),
            Bound::Excluded(&e) => Bound::Excluded(e),
            Bound::Unbounded => Bound::Unbounded,
        };
        // `BTreeMap::range` panics on an inverted range; openraft may ask for an empty one.
        let empty = match (start, end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s) | Bound::Excluded(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e)) => s >= e,
            _ => false,
        };
        if empty {
            return Vec::new();
        }
        sync::read(&self.mem)
            .entries
            .range((start, end))
            .map(|(_, e)| e.clone())
            .collect()
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> SResult<Vec<Entry<TypeConfig>>> {
        Ok(self.read(range))
    }
}

/// A change for the writer thread, applied in the order sent.
enum Op {
    /// Store these records; call back once they are durable.
    Append(Vec<(u64, Vec<u8>)>, LogFlushed<TypeConfig>),
    /// Delete entries from this index on.
    Truncate(u64),
    /// Delete entries up to this one (inclusive) and store the purged marker.
    Purge(LogId<NodeId>, Vec<u8>),
    /// Store a meta record.
    Meta(&'static str, Vec<u8>),
    /// Answer once everything before is durable.
    Sync(tokio::sync::oneshot::Sender<Result<(), String>>),
}

/// The Raft log, vote and markers of one master (openraft's `RaftLogStorage`).
pub struct LogStore {
    reader: LogReader,
    writer: std_mpsc::Sender<Op>,
    durable_commits: Arc<AtomicU64>,
}

impl LogStore {
    /// How many fsync'd commits the writer made so far (changes that arrive while one is in
    /// progress share the next).
    pub fn durable_commits(&self) -> u64 {
        self.durable_commits.load(Ordering::Relaxed)
    }

    /// A counter of the writer's fsync'd commits that outlives handing the store to openraft.
    pub fn durable_commits_counter(&self) -> Arc<AtomicU64> {
        self.durable_commits.clone()
    }

    fn send(&self, op: Op) -> SResult<()> {
        self.writer.send(op).map_err(|_| {
            StorageError::from(StorageIOError::write_logs(AnyError::error(
                "the Raft log writer has stopped",
            )))
        })
    }

    /// Queues `op` and waits until it (and everything before it) is durable.
    async fn send_durable(&self, op: Op) -> SResult<()> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(op)?;
        self.send(Op::Sync(tx))?;
        let failed = |e: String| StorageError::from(StorageIOError::write(AnyError::error(e)));
        rx.await
            .map_err(|_| failed("the Raft log writer has stopped".into()))?
            .map_err(failed)
    }

    fn mem(&self) -> std::sync::RwLockWriteGuard<'_, LogMem> {
        sync::write(&self.reader.mem)
    }
}

/// Persists the queued changes: everything waiting goes into one transaction and one fsync.
/// Runs until the log store is dropped and every queued change is written; the file closes
/// after that.
fn writer(
    db: Arc<Db>,
    rx: std_mpsc::Receiver<Op>,
    commits: Arc<AtomicU64>,
    mut marker_due: Option<MarkerDue>,
) {
    let mut state_pending = false;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        // Markers and deletions alone need no fsync of their own: the next durable commit
        // persists them with everything before it (a redb commit persists earlier ones).
        let durable = batch
            .iter()
            .any(|op| matches!(op, Op::Append(..) | Op::Sync(_)));
        let result = write_batch(&db, &batch, durable).map_err(|e| e.to_string());
        if durable {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "writing the Raft log failed");
        }
        // Only once a vote or an entry is on disk does the data dir hold state to protect. A
        // vote is queued as a marker write followed by a sync, which may land in two batches:
        // the state seen in a non-durable batch counts at the next durable one.
        state_pending |= batch
            .iter()
            .any(|op| matches!(op, Op::Append(..) | Op::Meta(KEY_VOTE, _)));
        if durable
            && state_pending
            && result.is_ok()
            && let Some(due) = &marker_due
        {
            match super::marker::write(&due.data_dir, due.node_id) {
                Ok(()) => marker_due = None,
                // Retried at the next commit, and written at the next start at the latest.
                Err(e) => tracing::error!(
                    error = %e,
                    data_dir = %due.data_dir.display(),
                    "cannot write the Raft store marker"
                ),
            }
        }
        for op in batch {
            match op {
                Op::Append(_, callback) => {
                    callback.log_io_completed(result.clone().map_err(io::Error::other))
                }
                Op::Sync(done) => {
                    let _ = done.send(result.clone());
                }
                Op::Truncate(_) | Op::Purge(..) | Op::Meta(..) => {}
            }
        }
    }
}

fn write_batch(db: &Database, batch: &[Op], durable: bool) -> Result<(), redb::Error> {
    let mut w = db.begin_write()?;
    if !durable {
        w.set_durability(Durability::None)?;
    }
    {
        let mut log = w.open_table(LOG)?;
        let mut meta = w.open_table(META)?;
        for op in batch {
            match op {
                Op::Append(records, _) => {
                    for (index, record) in records {
                        log.insert(*index, record.as_slice())?;
                    }
                }
                Op::Truncate(from) => log.retain_in::<u64, _>(*from.., |_, _| false)?,
                Op::Purge(upto, marker) => {
                    meta.insert(KEY_PURGED, marker.as_slice())?;
                    log.retain_in::<u64, _>(..=upto.index, |_, _| false)?;
                }
                Op::Meta(key, value) => {
                    meta.insert(*key, value.as_slice())?;
                }
                Op::Sync(_) => {}
            }
        }
    }
    w.commit()?;
    Ok(())
}

/// Writes `f` in one fsync'd transaction.
fn write_txn(
    db: &Database,
    f: impl FnOnce(&redb::WriteTransaction) -> Result<(), redb::Error>,
) -> SResult<()> {
    let w = db.begin_write().map_err(write_err)?;
    f(&w).map_err(write_err)?;
    w.commit().map_err(write_err)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> SResult<Vec<Entry<TypeConfig>>> {
        Ok(self.reader.read(range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> SResult<LogState<TypeConfig>> {
        let mem = sync::read(&self.reader.mem);
        let last = mem.entries.last_key_value().map(|(_, e)| e.log_id);
        Ok(LogState {
            last_purged_log_id: mem.purged,
            last_log_id: last.or(mem.purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> SResult<()> {
        self.mem().vote = Some(*vote);
        self.send_durable(Op::Meta(KEY_VOTE, encode(vote))).await
    }

    async fn read_vote(&mut self) -> SResult<Option<Vote<NodeId>>> {
        Ok(sync::read(&self.reader.mem).vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> SResult<()> {
        self.mem().committed = committed;
        self.send(Op::Meta(KEY_COMMITTED, encode(&committed)))
    }

    async fn read_committed(&mut self) -> SResult<Option<LogId<NodeId>>> {
        Ok(sync::read(&self.reader.mem).committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> SResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let records = entries
            .iter()
            .map(|e| (e.log_id.index, encode(e)))
            .collect();
        {
            let mut mem = self.mem();
            for e in entries {
                mem.entries.insert(e.log_id.index, e);
            }
        }
        self.send(Op::Append(records, callback))
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> SResult<()> {
        self.mem().entries.split_off(&log_id.index);
        self.send(Op::Truncate(log_id.index))
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> SResult<()> {
        {
            let mut mem = self.mem();
            mem.entries = mem.entries.split_off(&(log_id.index + 1));
            mem.purged = Some(log_id);
        }
        self.send(Op::Purge(log_id, encode(&Some(log_id))))
    }
}

// ----- the state machine -----

/// The state machine's data: the registry and where it is in the log.
struct SmData {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
    registry: Registry,
}

/// A read handle on the registry as this master has applied it.
#[derive(Clone)]
pub struct RegistryHandle {
    state: Arc<RwLock<SmData>>,
}

impl RegistryHandle {
    /// Runs `f` on the registry (under a read lock: keep `f` short).
    pub fn read<T>(&self, f: impl FnOnce(&Registry) -> T) -> T {
        f(&sync::read(&self.state).registry)
    }

    /// A copy of the registry.
    pub fn snapshot(&self) -> Registry {
        self.read(Registry::clone)
    }

    /// The index of the last log entry applied to the registry.
    pub fn last_applied_index(&self) -> Option<u64> {
        sync::read(&self.state).last_applied.map(|l| l.index)
    }

    /// A copy of the registry and the index of the last entry applied to it, read together.
    pub fn snapshot_with_index(&self) -> (Option<u64>, Registry) {
        let s = sync::read(&self.state);
        (s.last_applied.map(|l| l.index), s.registry.clone())
    }
}

/// The state machine around the registry (openraft's `RaftStateMachine`).
pub struct StateMachineStore {
    db: Arc<Db>,
    state: Arc<RwLock<SmData>>,
    snapshot_seq: Arc<AtomicU64>,
}

/// Builds a snapshot: serializes the registry and stores it.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    state: Arc<RwLock<SmData>>,
    snapshot_seq: Arc<AtomicU64>,
}

/// Stores `record` as the snapshot unless the stored one is newer.
fn store_snapshot(
    db: &Database,
    last_log_id: Option<LogId<NodeId>>,
    record: Vec<u8>,
) -> SResult<()> {
    write_txn(db, |w| {
        let mut t = w.open_table(META)?;
        let newer_stored = match t.get(KEY_SNAPSHOT)? {
            Some(v) => decode_snapshot(v.value())
                .map(|s| s.meta.last_log_id > last_log_id)
                .unwrap_or(false),
            None => false,
        };
        if !newer_stored {
            t.insert(KEY_SNAPSHOT, record.as_slice())?;
        }
        Ok(())
    })
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> SResult<Snapshot<TypeConfig>> {
        let (data, last_applied, last_membership) = {
            let s = sync::read(&self.state);
            let data = super::codec::to_vec(&s.registry).map_err(|e| {
                StorageError::from(StorageIOError::read_state_machine(AnyError::new(&e)))
            })?;
            (data, s.last_applied, s.last_membership.clone())
        };
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!(
                "{}-{}-{}-{seq}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        let record = encode_snapshot(&meta, &data);
        let db = self.db.clone();
        blocking(move || store_snapshot(&db, last_applied, record)).await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> SResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let s = sync::read(&self.state);
        Ok((s.last_applied, s.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> SResult<Vec<CommandResult>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut s = sync::write(&self.state);
        let mut results = Vec::new();
        for entry in entries {
            results.push(match entry.payload {
                EntryPayload::Blank => CommandResult(Ok(())),
                EntryPayload::Normal(command) => apply_command(&mut s.registry, command),
                EntryPayload::Membership(m) => {
                    s.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResult(Ok(()))
                }
            });
            // Only once the entry is applied (see crate::sync: a panic in between must not
            // leave an entry counted that the registry never saw).
            s.last_applied = Some(entry.log_id);
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            db: self.db.clone(),
            state: self.state.clone(),
            snapshot_seq: self.snapshot_seq.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> SResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> SResult<()> {
        let data = snapshot.into_inner();
        let registry = decode_registry(&data).map_err(|e| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::error(e),
            ))
        })?;
        let record = encode_snapshot(meta, &data);
        let db = self.db.clone();
        let last = meta.last_log_id;
        blocking(move || store_snapshot(&db, last, record)).await?;
        let mut s = sync::write(&self.state);
        s.last_applied = meta.last_log_id;
        s.last_membership = meta.last_membership.clone();
        s.registry = registry;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> SResult<Option<Snapshot<TypeConfig>>> {
        let r = self.db.begin_read().map_err(read_err)?;
        let t = r.open_table(META).map_err(read_err)?;
        let Some(v) = t.get(KEY_SNAPSHOT).map_err(read_err)? else {
            return Ok(None);
        };
        let s = decode_snapshot(v.value()).map_err(|e| corrupt_read(format!("snapshot: {e}")))?;
        Ok(Some(Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use openraft::testing::{StoreBuilder, Suite};
    use openraft::{CommittedLeaderId, Membership, RaftLogReader};

    use crate::registry::Command;

    fn blank(term: u64, index: u64) -> Vec<u8> {
        let entry: Entry<TypeConfig> = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        };
        seal_record(&entry).unwrap()
    }

    #[test]
    fn check_records_accepts_a_log_and_refuses_a_damaged_one() {
        let log = vec![(1, blank(1, 1)), (2, blank(1, 2)), (3, blank(2, 3))];
        let ok = check_records(RawRecords {
            log: log.clone(),
            ..RawRecords::default()
        })
        .unwrap();
        assert_eq!(ok.log_entries, 3);
        assert_eq!(ok.last_log_index, Some(3));
        let mut flipped = log.clone();
        flipped[1].1[6] ^= 0x10;
        let err = check_records(RawRecords {
            log: flipped,
            ..RawRecords::default()
        })
        .unwrap_err();
        assert!(
            err.contains("log entry 2") && err.contains("checksum"),
            "{err}"
        );
        let mut gap = log;
        gap.remove(1);
        let err = check_records(RawRecords {
            log: gap,
            ..RawRecords::default()
        })
        .unwrap_err();
        assert!(err.contains("gap"), "{err}");
    }

    /// Found by the fuzz target `raft_log` (corpus `crash-log-entry-at-u64-max`): an entry or
    /// a purged marker at the last index overflowed the next expected index (a panic in a
    /// debug build, a wrap in a release one) instead of being refused.
    #[test]
    fn an_index_at_the_end_of_the_range_is_refused_not_overflowed() {
        let err = check_records(RawRecords {
            log: vec![(u64::MAX, blank(1, u64::MAX))],
            ..RawRecords::default()
        })
        .unwrap_err();
        assert!(err.contains("end of the index range"), "{err}");
        let purged = Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), u64::MAX));
        let err = check_records(RawRecords {
            purged: Some(seal_record(&purged).unwrap()),
            ..RawRecords::default()
        })
        .unwrap_err();
        assert!(err.contains("purged marker"), "{err}");
    }

    #[test]
    fn a_snapshot_from_before_the_acl_state_decodes_with_none() {
        let mut reg = Registry::default();
        reg.apply(Command::SetWeight {
            role: "r".into(),
            weight: 2.0,
        })
        .unwrap();
        let current = super::super::codec::to_vec(&reg).unwrap();
        let tail = super::super::codec::to_vec(&crate::acl::AclState::default()).unwrap();
        // What a master without the `acl` field wrote: the same bytes without the tail.
        let old = &current[..current.len() - tail.len()];
        assert_eq!(decode_registry(old).unwrap(), reg);
        assert!(decode_registry(&current[..3]).is_err());
    }

    #[test]
    fn a_snapshot_from_before_the_acl_states_later_fields_decodes_with_them_empty() {
        let mut reg = Registry::default();
        reg.acl.bootstrapped = true;
        let current = super::super::codec::to_vec(&reg).unwrap();
        let empty = crate::acl::AclState::default();
        let later =
            super::super::codec::to_vec(&(empty.submitted_with, empty.ended_owners)).unwrap();
        // What a master whose `AclState` ended at `policies` wrote.
        let old = &current[..current.len() - later.len()];
        assert_eq!(decode_registry(old).unwrap(), reg);
    }

    struct Builder;

    impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
        async fn build(&self) -> SResult<(tempfile::TempDir, LogStore, StateMachineStore)> {
            let dir = tempfile::tempdir().expect("temp dir");
            let opened = open_store(dir.path(), 1).expect("open store");
            Ok((dir, opened.log, opened.state_machine))
        }
    }

    /// openraft's own conformance suite for log stores and state machines.
    #[test]
    fn openraft_storage_suite() {
        Suite::test_all(Builder).expect("storage suite");
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn weight(index: u64, w: f64) -> Entry<TypeConfig> {
        Entry {
            log_id: log_id(1, index),
            payload: EntryPayload::Normal(Command::SetWeight {
                role: "r".into(),
                weight: w,
            }),
        }
    }

    async fn append(log: &mut LogStore, entries: Vec<Entry<TypeConfig>>) {
        openraft::storage::RaftLogStorageExt::blocking_append(log, entries)
            .await
            .expect("append");
    }

    /// A store with a membership entry, three weight commands (two applied), a vote, a
    /// committed marker and a snapshot at entry 2.
    /// Drops the stores and waits until the writer has persisted everything and closed the
    /// file.
    async fn close(opened: OpenedStore) {
        let closed = opened.closed.clone();
        drop(opened);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !closed.is_closed() {
            assert!(
                std::time::Instant::now() < deadline,
                "the store did not close"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    async fn populated(dir: &Path) {
        let mut opened = open_store(dir, 1).unwrap();
        let membership = Entry {
            log_id: log_id(1, 0),
            payload: EntryPayload::Membership(Membership::new(
                vec![[1u64].into_iter().collect()],
                None,
            )),
        };
        let entries = vec![membership, weight(1, 2.0), weight(2, 3.0), weight(3, 4.0)];
        append(&mut opened.log, entries.clone()).await;
        opened.log.save_vote(&Vote::new(1, 1)).await.unwrap();
        opened.log.save_committed(Some(log_id(1, 3))).await.unwrap();
        opened
            .state_machine
            .apply(entries[..3].to_vec())
            .await
            .unwrap();
        let mut builder = opened.state_machine.get_snapshot_builder().await;
        builder.build_snapshot().await.unwrap();
        drop(builder);
        opened.log.purge(log_id(1, 1)).await.unwrap();
        close(opened).await;
    }

    async fn reopen_after(dir: &Path, damage: impl FnOnce(&Database)) -> Result<(), StoreError> {
        {
            let db = Database::create(dir.join(STORE_FILE)).unwrap();
            damage(&db);
        }
        open_store(dir, 1).map(|_| ())
    }

    fn corrupt_detail(r: Result<(), StoreError>) -> String {
        match r {
            Err(e @ StoreError::Corrupt { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("refuses to start"), "{msg}");
                msg
            }
            other => panic!("expected a corrupt-store error, got {other:?}"),
        }
    }

    /// Changes queued while the writer is busy share its next fsync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_changes_share_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open_store(dir.path(), 1).unwrap();
        let before = opened.log.durable_commits();
        let mut waiting = Vec::new();
        for i in 0..200u64 {
            let (tx, rx) = tokio::sync::oneshot::channel();
            opened
                .log
                .send(Op::Meta(KEY_VOTE, encode(&Vote::<NodeId>::new(i, 1))))
                .unwrap();
            opened.log.send(Op::Sync(tx)).unwrap();
            waiting.push(rx);
        }
        for rx in waiting {
            rx.await.unwrap().unwrap();
        }
        let commits = opened.log.durable_commits() - before;
        // All 200 are queued before the first is awaited: the writer takes what has queued
        // by each fsync, so a handful of commits; one per change would be 200.
        assert!(
            commits < 200 / 10,
            "200 durable changes took {commits} fsyncs; queued ones should share"
        );
        close(opened).await;
        let mut reopened = open_store(dir.path(), 1).unwrap();
        assert_eq!(
            reopened.log.read_vote().await.unwrap(),
            Some(Vote::new(199, 1))
        );
    }

    /// Entries appended together (a follower's batch from the leader) are one fsync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_append_of_many_entries_is_one_fsync() {
        let dir = tempfile::tempdir().unwrap();
        let mut opened = open_store(dir.path(), 1).unwrap();
        let before = opened.log.durable_commits();
        append(
            &mut opened.log,
            (1..=100).map(|i| weight(i, i as f64)).collect(),
        )
        .await;
        assert_eq!(opened.log.durable_commits() - before, 1);
        let entries = opened.log.try_get_log_entries(1..101).await.unwrap();
        assert_eq!(entries.len(), 100);
        close(opened).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reopen_restores_log_vote_and_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path()).await;
        let mut opened = open_store(dir.path(), 1).unwrap();
        assert_eq!(opened.log.read_vote().await.unwrap(), Some(Vote::new(1, 1)));
        assert_eq!(
            opened.log.read_committed().await.unwrap(),
            Some(log_id(1, 3))
        );
        let state = opened.log.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 1)));
        assert_eq!(state.last_log_id, Some(log_id(1, 3)));
        let entries = opened.log.try_get_log_entries(2..4).await.unwrap();
        assert_eq!(entries.len(), 2);
        // The state machine comes back from the snapshot (entry 2 applied: weight 3.0).
        assert_eq!(opened.registry.read(|r| r.weight("r")), 3.0);
        let (applied, membership) = opened.state_machine.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(1, 2)));
        assert_eq!(membership.log_id(), &Some(log_id(1, 0)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_garbled_log_record_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path()).await;
        let msg = corrupt_detail(
            reopen_after(dir.path(), |db| {
                let w = db.begin_write().unwrap();
                {
                    let mut t = w.open_table(LOG).unwrap();
                    let mut v = t.get(3).unwrap().unwrap().value().to_vec();
                    let n = v.len();
                    v[n - 3] ^= 0x20;
                    t.insert(3, v.as_slice()).unwrap();
                }
                w.commit().unwrap();
            })
            .await,
        );
        assert!(
            msg.contains("log entry 3") && msg.contains("checksum"),
            "{msg}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_log_gap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path()).await;
        {
            let mut opened = open_store(dir.path(), 1).unwrap();
            append(&mut opened.log, vec![weight(4, 5.0), weight(5, 6.0)]).await;
            close(opened).await;
        }
        let msg = corrupt_detail(
            reopen_after(dir.path(), |db| {
                let w = db.begin_write().unwrap();
                w.open_table(LOG).unwrap().remove(4).unwrap();
                w.commit().unwrap();
            })
            .await,
        );
        assert!(
            msg.contains("gap") && msg.contains("entries 4 to 4"),
            "{msg}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_that_does_not_decode_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path()).await;
        let msg = corrupt_detail(
            reopen_after(dir.path(), |db| {
                let w = db.begin_write().unwrap();
                {
                    let mut t = w.open_table(META).unwrap();
                    let s = decode_snapshot(t.get(KEY_SNAPSHOT).unwrap().unwrap().value()).unwrap();
                    // A well-formed record (good checksum) whose registry is not a registry.
                    let record = encode_snapshot(&s.meta, b"{\"frameworks\": 7}");
                    t.insert(KEY_SNAPSHOT, record.as_slice()).unwrap();
                }
                w.commit().unwrap();
            })
            .await,
        );
        assert!(msg.contains("registry does not decode"), "{msg}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn purged_entries_without_a_snapshot_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path()).await;
        let msg = corrupt_detail(
            reopen_after(dir.path(), |db| {
                let w = db.begin_write().unwrap();
                w.open_table(META).unwrap().remove(KEY_SNAPSHOT).unwrap();
                w.commit().unwrap();
            })
            .await,
        );
        assert!(msg.contains("no snapshot covers them"), "{msg}");
    }

    #[test]
    fn a_file_that_is_not_a_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STORE_FILE), vec![0x5a; 64 << 10]).unwrap();
        let err = open_store(dir.path(), 1).map(|_| ()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    }

    fn lost(r: Result<OpenedStore, StoreError>) -> String {
        match r {
            Err(e @ StoreError::Lost { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("refuses to start"), "{msg}");
                assert!(msg.contains("restore"), "{msg}");
                assert!(msg.contains("remove the data dir"), "{msg}");
                msg
            }
            Err(other) => panic!("expected a lost-store error, got {other:?}"),
            Ok(_) => panic!("a store the marker says held state opened empty"),
        }
    }

    /// A store that holds nothing writes no marker (a fresh dir may start anew any number of
    /// times); its first vote writes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_marker_is_written_with_the_first_vote() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open_store(dir.path(), 1).unwrap();
        assert_eq!(super::super::marker::read(dir.path()).unwrap(), None);
        close(opened).await;
        let mut opened = open_store(dir.path(), 1).unwrap();
        assert_eq!(super::super::marker::read(dir.path()).unwrap(), None);
        opened.log.save_vote(&Vote::new(1, 1)).await.unwrap();
        let m = super::super::marker::read(dir.path()).unwrap();
        assert_eq!(m.and_then(|m| m.node_id), Some(1));
        close(opened).await;
    }

    /// The vote's write and its sync may reach the writer in two batches; the marker is still
    /// written with that sync.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_marker_is_written_when_the_vote_and_its_sync_land_in_two_batches() {
        let dir = tempfile::tempdir().unwrap();
        let opened = open_store(dir.path(), 1).unwrap();
        opened
            .log
            .send(Op::Meta(KEY_VOTE, encode(&Vote::<NodeId>::new(1, 1))))
            .unwrap();
        // Let the writer take the vote alone, as a batch that is not durable.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        assert_eq!(super::super::marker::read(dir.path()).unwrap(), None);
        let (tx, rx) = tokio::sync::oneshot::channel();
        opened.log.send(Op::Sync(tx)).unwrap();
        rx.await.unwrap().unwrap();
        let m = super::super::marker::read(dir.path()).unwrap();
        assert_eq!(m.and_then(|m| m.node_id), Some(1));
        close(opened).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_file_lost_after_it_held_state_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path()).await;
        let store = dir.path().join(STORE_FILE);

        std::fs::File::create(&store).unwrap(); // truncated to 0 bytes
        let msg = lost(open_store(dir.path(), 1));
        assert!(msg.contains("is empty (0 bytes)"), "{msg}");
        assert_eq!(
            std::fs::metadata(&store).unwrap().len(),
            0,
            "redb rewrote it"
        );

        std::fs::remove_file(&store).unwrap();
        let msg = lost(open_store(dir.path(), 1));
        assert!(msg.contains("is missing"), "{msg}");
        assert!(!store.exists(), "the refused open created a store");

        // A valid but empty redb file (e.g. one created anew by hand).
        drop(Database::create(&store).unwrap());
        let msg = lost(open_store(dir.path(), 1));
        assert!(msg.contains("holds no Raft state"), "{msg}");

        // The way out: remove the data dir's contents, and it starts anew.
        std::fs::remove_file(&store).unwrap();
        std::fs::remove_file(super::super::marker::path(dir.path())).unwrap();
        close(open_store(dir.path(), 1).unwrap()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_without_a_marker_gets_one_and_another_master_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        populated(dir.path()).await;
        std::fs::remove_file(super::super::marker::path(dir.path())).unwrap();
        close(open_store(dir.path(), 1).unwrap()).await;
        assert!(super::super::marker::path(dir.path()).exists());
        match open_store(dir.path(), 2) {
            Err(e @ StoreError::OtherMaster { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("--id 1"), "{msg}");
            }
            Err(other) => panic!("expected another master's store, got {other:?}"),
            Ok(_) => panic!("master 2 opened master 1's store"),
        }
    }
}
