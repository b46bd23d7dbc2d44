//! # iscsi
//!
//! The async iSCSI engine: runtimes generic over the datamover (TCP now, iSER next), gluing the
//! sans-IO [`iscsi_proto`] core to [`scsi_core`] logical units.
//!
//! ## Design overview
//! - [`target`]: a [`target::Target`] binds portals and serves [`target::TargetNode`]s (an
//!   iSCSI name, LUNs from [`scsi_core`], an access list, CHAP settings). Every connection is
//!   one tokio task that drives the sans-IO login and then the full feature phase over a
//!   [`iscsi_proto::datamover::Datamover`]: inbound PDUs first, then finished SCSI commands,
//!   then messages from other sessions (resets), then timers (NOP-In, shutdown). Each has a
//!   tracing span (`conn`, then `session`).
//! - SCSI commands of a connection run concurrently inside its task; their buffers come from
//!   the datamover, so an RDMA datamover can hand out registered memory.
//! - A session table allocates TSIHs, reinstates sessions and connections (RFC 7143 §6.3.5),
//!   enforces the session limit and carries LUN and target resets to the other sessions.
//!
//! - [`initiator`]: a [`initiator::Session`] logs in to one target (from a libiscsi-style URL
//!   or an [`initiator::InitiatorConfig`]) and runs any number of commands from any number of
//!   tasks over one connection task, with typed helpers, per-command deadlines, and
//!   reconnection with session reinstatement after a connection loss.
#![forbid(unsafe_code)]

pub mod initiator;
pub mod iser;

/// Random bytes from the OS for CHAP challenges, ISIDs and the initial StatSN. Without them
/// logins are refused (both roles): predictable challenges would defeat CHAP.
pub(crate) fn fill_random(buf: &mut [u8]) -> bool {
    getrandom::fill(buf).is_ok()
}

pub mod target;

pub use iscsi_iser as iser_transport;
pub use iscsi_proto as proto;
pub use iscsi_tcp as tcp;
pub use scsi_core as scsi;

/// Bodies of the cargo-fuzz targets for this crate (`fuzz/fuzz_targets/url.rs`).
#[cfg(any(fuzzing, feature = "fuzzing"))]
pub mod fuzzing {
    use crate::initiator::IscsiUrl;

    /// URL parser: never panics; a URL that parses prints (without its password) as a URL
    /// that parses to the same fields, and its portal parses back as the same host and port.
    pub fn url(data: &[u8]) {
        let Ok(s) = std::str::from_utf8(data) else {
            return;
        };
        let Ok(u) = s.parse::<IscsiUrl>() else {
            return;
        };
        let shown = u.to_string();
        let again: IscsiUrl = shown
            .parse()
            .unwrap_or_else(|e| panic!("{shown:?} (printed from {s:?}) does not parse: {e}"));
        assert_eq!(again.iser, u.iser);
        assert_eq!(again.host, u.host);
        assert_eq!(again.port, u.port);
        assert_eq!(again.target, u.target);
        assert_eq!(again.lun, u.lun);
        assert_eq!(again.user, u.user);
        assert_eq!(again.password, None, "the password is never printed");
        if u.password.is_some() {
            assert!(
                format!("{u:?}").contains("<hidden>"),
                "Debug hides the password"
            );
        }
    }
}
