//! Target `snapshot`: a Raft snapshot as a master reads it from its store (the sealed record:
//! checksum, metadata, registry) and as a follower installs it from its leader (the registry's
//! encoding, including the older layouts still read), and registry commands as a follower
//! applies them from the log. Arbitrary bytes never panic; a valid snapshot record with any one
//! byte changed is refused; a registry round-trips through its encoding.

use openraft::{BasicNode, CommittedLeaderId, LogId, SnapshotMeta, StoredMembership};
use wasmos_master::raft::store::{RawRecords, check_records, decode_snapshot_data, seal_snapshot};
use wasmos_master::raft::{NodeId, codec};
use wasmos_master::registry::{Command, Registry};

use crate::input::Input;

/// The first byte chooses the mode: the bytes as a stored snapshot record and as installed
/// snapshot data, or commands decoded from the input applied to a registry that is then
/// snapshotted, checked, and corrupted.
pub fn snapshot(data: &[u8]) {
    let mut input = Input::new(data);
    if input.byte() % 2 == 0 {
        let bytes = input.rest();
        let _ = decode_snapshot_data(bytes);
        let _ = check_records(RawRecords {
            snapshot: Some(bytes.to_vec()),
            ..RawRecords::default()
        });
        return;
    }
    let mut registry = Registry::default();
    let mut applied = 0u64;
    while !input.is_empty() && applied < 64 {
        if let Ok(command) = codec::from_slice::<Command>(input.chunk(512)) {
            let _ = registry.apply(command);
            applied += 1;
        }
    }
    let encoded = codec::to_vec(&registry).expect("a registry encodes");
    let decoded = decode_snapshot_data(&encoded).expect("an encoded registry decodes");
    assert!(
        codec::to_vec(&decoded).ok().as_ref() == Some(&encoded),
        "a registry does not round-trip through a snapshot"
    );

    let last = LogId::new(CommittedLeaderId::new(1, 1), applied.max(1));
    let meta = SnapshotMeta::<NodeId, BasicNode> {
        last_log_id: Some(last),
        last_membership: StoredMembership::default(),
        snapshot_id: format!("fuzz-{applied}"),
    };
    let record = seal_snapshot(&meta, &encoded);
    let stored = |snapshot: Vec<u8>| {
        check_records(RawRecords {
            snapshot: Some(snapshot),
            ..RawRecords::default()
        })
    };
    let checked = stored(record.clone()).expect("a valid snapshot record is accepted");
    assert!(checked.has_snapshot);
    let mut bad = record.clone();
    let at = (data.len() * 7919) % bad.len();
    bad[at] ^= data.last().copied().unwrap_or(1).max(1);
    assert!(
        stored(bad).is_err(),
        "a snapshot record with byte {at} changed was accepted"
    );
    let mut cut = record;
    cut.truncate(at);
    assert!(
        stored(cut).is_err(),
        "a truncated snapshot record was accepted"
    );
}
