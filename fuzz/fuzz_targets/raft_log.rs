//! libFuzzer target `raft_log`: see `wasmos_fuzz_harness::raft_log`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmos_fuzz_harness::raft_log(data));
