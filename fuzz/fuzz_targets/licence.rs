#![no_main]
//! See `warden::fuzzing::licence`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::licence(data));
