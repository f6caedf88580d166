#![no_main]
//! See `warden::fuzzing::checkpoint`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::checkpoint(data));
