#![no_main]
//! See `warden::fuzzing::config_toml`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| warden::fuzzing::config_toml(data));
