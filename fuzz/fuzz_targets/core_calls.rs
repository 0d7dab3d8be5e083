//! libFuzzer target `core_calls`: see `wasmos_fuzz_harness::core_calls`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmos_fuzz_harness::core_calls(data));
