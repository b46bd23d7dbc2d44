#![no_main]
//! Fuzz target: see `iscsi_iser::fuzzing::header` for the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    iscsi_iser::fuzzing::header(data);
});
