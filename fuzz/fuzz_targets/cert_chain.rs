#![no_main]
//! See `warden::fuzzing::cert_chain`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::cert_chain(data));
