#![no_main]
//! See `warden::fuzzing::signed_note`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::signed_note(data));
