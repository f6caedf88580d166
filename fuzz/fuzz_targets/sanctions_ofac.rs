#![no_main]
//! See `warden::fuzzing::sanctions_ofac`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::sanctions_ofac(data));
