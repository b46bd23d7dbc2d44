//! The `url` fuzz target's seeds (`fuzz/corpus/url/seed-*`: URLs of the forms the
//! documentation and tests use) and crash regressions (`fuzz/regressions/url/*`) run through
//! its body on every `cargo test -p iscsi --features fuzzing`.
#![cfg(feature = "fuzzing")]

#[test]
fn url_seeds_and_regressions_pass() {
    iscsi::proto::fuzzing::run_seeds_and_regressions("url", iscsi::fuzzing::url);
}
