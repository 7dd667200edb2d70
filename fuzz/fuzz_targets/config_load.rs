//! The whole config loader on arbitrary bytes as `compose.yml`.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    common::load(data, None);
});
