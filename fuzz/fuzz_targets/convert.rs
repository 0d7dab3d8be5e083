//! libFuzzer target `convert`: see `wasmos_fuzz_harness::convert`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmos_fuzz_harness::convert(data));
