//! libFuzzer target `snapshot`: see `wasmos_fuzz_harness::snapshot`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmos_fuzz_harness::snapshot(data));
