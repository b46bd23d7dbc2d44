#![no_main]
//! Fuzz target: see `iscsi::fuzzing::url` for the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    iscsi::fuzzing::url(data);
});
