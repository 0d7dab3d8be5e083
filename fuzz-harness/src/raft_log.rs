//! Target `raft_log`: the Raft store's record checks (`wasmos_master::raft::store::
//! check_records`, what `open_store` runs on what it reads from `raft.redb`) and the decoding
//! of the Raft RPCs a master receives from its peers. Arbitrary records never panic; a valid
//! log with one record corrupted (any byte changed) or one entry missing is always refused.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
use wasmos_master::raft::store::{RawRecords, check_records, seal_record};
use wasmos_master::raft::{NodeId, TypeConfig, codec};
use wasmos_master::registry::{BlobBytes, Command};

use crate::input::Input;

/// The first byte chooses the mode: arbitrary records, a valid log then corrupted, or a
/// peer's RPC payload.
pub fn raft_log(data: &[u8]) {
    let mut input = Input::new(data);
    match input.byte() % 4 {
        0 => arbitrary_records(&mut input),
        1 => corrupted_log(&mut input),
        2 => sealed_values(&mut input),
        _ => rpc(input.byte(), input.rest()),
    }
}

fn maybe(input: &mut Input) -> Option<Vec<u8>> {
    input.bool().then(|| input.chunk(128).to_vec())
}

fn arbitrary_records(input: &mut Input) {
    let mut raw = RawRecords {
        vote: maybe(input),
        committed: maybe(input),
        purged: maybe(input),
        snapshot: maybe(input),
        log: Vec::new(),
    };
    // Indexes increase as redb iterates them; the steps and the start come from the input.
    let mut index = input.u64();
    while !input.is_empty() && raw.log.len() < 64 {
        raw.log.push((index, input.chunk(256).to_vec()));
        index = index.saturating_add(u64::from(input.byte() % 3).max(1));
    }
    let _ = check_records(raw);
}

/// An index or term near the interesting places: small, or near `u64::MAX`.
fn number(input: &mut Input) -> u64 {
    let n = u64::from(input.byte() % 16);
    if input.byte() % 4 == 0 {
        u64::MAX - n
    } else {
        n
    }
}

/// Records whose checksums are right but whose values are anything: markers, indexes and
/// terms that contradict each other or sit at the ends of the number range.
fn sealed_values(input: &mut Input) {
    let opt_log_id = |input: &mut Input| -> Option<Vec<u8>> {
        match input.byte() % 3 {
            0 => None,
            1 => Some(sealed(&None::<LogId<NodeId>>)),
            _ => Some(sealed(&Some(log_id(number(input), number(input))))),
        }
    };
    let committed = opt_log_id(input);
    let purged = opt_log_id(input);
    let mut log = Vec::new();
    let mut key = number(input);
    for _ in 0..input.byte() % 6 {
        let entry: Entry<TypeConfig> = Entry {
            log_id: log_id(
                number(input),
                if input.bool() { key } else { number(input) },
            ),
            payload: EntryPayload::Blank,
        };
        log.push((key, sealed(&entry)));
        match key.checked_add(1 + u64::from(input.byte() % 2)) {
            Some(k) => key = k,
            None => break,
        }
    }
    let raw = RawRecords {
        vote: input
            .bool()
            .then(|| sealed(&Vote::<NodeId>::new(number(input), number(input)))),
        committed,
        purged,
        snapshot: None,
        log,
    };
    let _ = check_records(raw);
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn sealed<T: serde::Serialize>(value: &T) -> Vec<u8> {
    seal_record(value).expect("the harness's records encode")
}

fn corrupted_log(input: &mut Input) {
    let n = 1 + u64::from(input.byte() % 8);
    let first = u64::from(input.byte()) + 1;
    let mut term = 1;
    let mut log = Vec::new();
    for index in first..first + n {
        term += u64::from(input.byte() % 2);
        let payload = match input.byte() % 3 {
            0 => EntryPayload::Blank,
            _ => EntryPayload::Normal(Command::PutComponent {
                sha256: "ab".repeat(32),
                bytes: BlobBytes::from(input.chunk(64).to_vec()),
            }),
        };
        let entry: Entry<TypeConfig> = Entry {
            log_id: log_id(term, index),
            payload,
        };
        log.push((index, sealed(&entry)));
    }
    let last = first + n - 1;
    let committed = first + u64::from(input.byte()) % n;
    let raw = RawRecords {
        vote: Some(sealed(&Vote::<NodeId>::new(term, 1))),
        committed: Some(sealed(&Some(log_id(1, committed)))),
        purged: None,
        snapshot: None,
        log,
    };
    let checked = check_records(raw.clone()).expect("a valid log is accepted");
    assert_eq!(checked.log_entries as u64, n);
    assert_eq!(checked.last_log_index, Some(last));

    // One byte of one record changed: the checksum (or the decoding) must catch it.
    let mut bad = raw.clone();
    let flip = input.byte().max(1);
    let which = input.byte() as usize;
    let records: Vec<&mut Vec<u8>> = [bad.vote.as_mut(), bad.committed.as_mut()]
        .into_iter()
        .flatten()
        .chain(bad.log.iter_mut().map(|(_, r)| r))
        .collect();
    let count = records.len();
    let record = records.into_iter().nth(which % count).expect("in range");
    let at = input.u16() as usize % record.len();
    record[at] ^= flip;
    assert!(
        check_records(bad).is_err(),
        "a record with byte {at} changed was accepted"
    );

    // A record cut short.
    let mut bad = raw.clone();
    let i = input.byte() as usize % bad.log.len();
    let keep = input.u16() as usize % bad.log[i].1.len();
    bad.log[i].1.truncate(keep);
    assert!(
        check_records(bad).is_err(),
        "a truncated log entry was accepted"
    );

    // An entry missing from the middle of the log.
    if n >= 3 {
        let mut bad = raw;
        bad.log.remove(1 + input.byte() as usize % (n as usize - 2));
        assert!(check_records(bad).is_err(), "a log with a gap was accepted");
    }
}

/// A peer's answer as `raft::service` encodes it.
type Answer<T> = Result<T, RaftError<NodeId>>;

/// The payloads of the Raft RPCs, as `raft::service` (requests) and `raft::network` (answers)
/// decode them.
fn rpc(which: u8, payload: &[u8]) {
    match which % 6 {
        0 => drop(codec::from_slice::<AppendEntriesRequest<TypeConfig>>(
            payload,
        )),
        1 => drop(codec::from_slice::<VoteRequest<NodeId>>(payload)),
        2 => drop(codec::from_slice::<InstallSnapshotRequest<TypeConfig>>(
            payload,
        )),
        3 => drop(codec::from_slice::<Answer<AppendEntriesResponse<NodeId>>>(
            payload,
        )),
        4 => drop(codec::from_slice::<Answer<VoteResponse<NodeId>>>(payload)),
        _ => drop(codec::from_slice::<
            Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
        >(payload)),
    }
}
