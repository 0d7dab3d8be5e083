//! libFuzzer target `agent_records`: see `wasmos_fuzz_harness::agent_records`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmos_fuzz_harness::agent_records(data));
