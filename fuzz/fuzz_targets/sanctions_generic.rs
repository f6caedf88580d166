#![no_main]
//! See `warden::fuzzing::sanctions_generic`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::sanctions_generic(data));
