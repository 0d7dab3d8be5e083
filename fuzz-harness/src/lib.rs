//! The bodies of wasmos's fuzz targets, one public function per target, each taking the raw
//! bytes a fuzzer hands it. `fuzz/fuzz_targets/*.rs` (cargo-fuzz, libFuzzer, nightly) are
//! one-line calls into this crate; `tests/smoke.rs` runs the same functions on stable over the
//! committed corpus (`fuzz/corpus/<target>/`) and a few thousand seeded mutations of it, as part
//! of the test command.
//!
//! Each function feeds its input to the entry point the real service feeds with the bytes it
//! receives (a prost-decoded message, a stored record, an uploaded component, an HTTP request),
//! and panics only when a property the code promises is broken: a panic inside the code under
//! test, a record that was corrupted yet accepted, a conversion that does not round-trip, books
//! of the master that disagree. A panic is a finding.

#![warn(missing_docs)]

mod input;

pub mod agent_records;
pub mod component_upload;
pub mod convert;
pub mod core_calls;
pub mod http_request;
pub mod raft_log;
pub mod snapshot;

pub use agent_records::agent_records;
pub use component_upload::component_upload;
pub use convert::convert;
pub use core_calls::core_calls;
pub use http_request::http_request;
pub use raft_log::raft_log;
pub use snapshot::snapshot;

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` and corpus directory.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[
    ("convert", convert),
    ("core_calls", core_calls),
    ("raft_log", raft_log),
    ("snapshot", snapshot),
    ("component_upload", component_upload),
    ("agent_records", agent_records),
    ("http_request", http_request),
];
