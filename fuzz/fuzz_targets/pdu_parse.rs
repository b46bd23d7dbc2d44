#![no_main]
//! Fuzz target: see `iscsi_proto::fuzzing::pdu_parse` for the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    iscsi_proto::fuzzing::pdu_parse(data);
});
