#![no_main]
//! Fuzz target: see `scsi_core::fuzzing::lu_commands` for the input format and the properties
//! checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    scsi_core::fuzzing::lu_commands(data);
});
