#![no_main]
//! See `warden::fuzzing::backup`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::backup(data));
