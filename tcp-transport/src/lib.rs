//! # iscsi-tcp
//!
//! The iSCSI/TCP datamover (RFC 7143 over TCP) for the [`iscsi_proto`] session core.
//!
//! ## Design overview
//! A tokio task per connection feeds received bytes into [`iscsi_proto::Deframer`] and writes
//! outgoing PDUs as one vectored write of header and data, so payload bytes are never copied by
//! this crate. The datamover trait it implements is defined in `iscsi-proto` (RFC 5047 shape) and
//! arrives with the target issue; until then this crate only reserves its place in the workspace.
#![forbid(unsafe_code)]
