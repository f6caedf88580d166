#![no_main]
//! See `warden::fuzzing::cert_extensions`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::cert_extensions(data));
