#![no_main]
//! Fuzz target: see `iscsi_proto::fuzzing::text_negotiation` for the properties checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    iscsi_proto::fuzzing::text_negotiation(data);
});
