//! libFuzzer target `component_upload`: see `wasmos_fuzz_harness::component_upload`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmos_fuzz_harness::component_upload(data));
