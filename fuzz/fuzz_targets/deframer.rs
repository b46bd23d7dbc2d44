#![no_main]
//! Fuzz target: see `iscsi_proto::fuzzing::deframer_splits` for the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    iscsi_proto::fuzzing::deframer_splits(data);
});
