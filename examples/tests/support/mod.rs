//! Helpers of the libiscsi integration tests: running the tools and the target
//! ([`peer`]) and reading `iscsi-test-cu`'s output ([`testcu`]).

pub mod peer;
pub mod testcu;
