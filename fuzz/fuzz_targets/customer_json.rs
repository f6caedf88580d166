#![no_main]
//! See `warden::fuzzing::customer_json`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::customer_json(data));
