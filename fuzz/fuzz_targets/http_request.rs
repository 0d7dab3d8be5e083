//! libFuzzer target `http_request`: see `wasmos_fuzz_harness::http_request`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| wasmos_fuzz_harness::http_request(data));
