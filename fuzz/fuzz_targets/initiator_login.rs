#![no_main]
//! Fuzz target: see `iscsi_proto::fuzzing::initiator_login` for the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    iscsi_proto::fuzzing::initiator_login(data);
});
