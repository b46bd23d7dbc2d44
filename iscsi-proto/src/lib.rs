//! # iscsi-proto
//!
//! A sans-IO iSCSI protocol core (RFC 7143, with the iSER keys of RFC 7145): it parses and builds
//! every PDU, frames a byte stream into PDUs, computes CRC32C digests, and negotiates text keys.
//! It never does IO and never reads a clock.
//!
//! ## Design overview
//! - [`pdu`]: one typed struct per PDU (RFC 7143 §11) and the [`Pdu`] enum. Parsing takes a
//!   [`bytes::Bytes`] and keeps the data segment as a slice of it (no copy); building writes into a
//!   [`bytes::BytesMut`], or writes only the header so that a transport can send header and data
//!   with one vectored write. Every malformed input becomes a [`PduError`] that names the
//!   Reject reason to answer with ([`RejectReason`]); nothing a peer sends can panic.
//! - [`Deframer`]: a streaming framer. Feed it any split of a byte stream and it yields whole
//!   PDUs, checking digests when negotiated and refusing a DataSegmentLength above the negotiated
//!   MaxRecvDataSegmentLength *before* buffering it.
//! - [`serial`]: CmdSN, StatSN, DataSN and R2TSN newtypes with RFC 1982 serial arithmetic, and
//!   the task tags [`Itt`] / [`Ttt`] with their reserved value.
//! - [`digest`]: hardware-accelerated CRC32C.
//! - [`auth`]: CHAP (RFC 7143 §12.1.3; MD5, SHA-1, SHA-256, SHA3-256) for both roles.
//! - [`datamover`]: the RFC 5047 datamover trait that iSCSI/TCP and iSER implement.
//! - [`pdu_mover`]: the PDU half of iSCSI/TCP's datamover (both roles), without the socket.
//! - [`initiator`]: the initiator's login and full-feature-phase state machines.
//! - [`target`]: the target's login and full-feature-phase state machines, and SendTargets.
//! - [`text`]: `key=value` text parsing, C-bit reassembly under a bound, the table of every
//!   standard key, and one sans-IO negotiator used by both login roles.
//!
//! Payload copies: parsing copies no data segment; the [`Deframer`] receives bytes once into its
//! buffer (the transport reads the socket straight into it) and hands out slices of it.
#![forbid(unsafe_code)]

pub mod auth;
pub mod datamover;
pub mod deframer;
pub mod digest;
pub mod initiator;
pub mod pdu;
pub mod pdu_mover;
pub mod serial;
pub mod target;
pub mod text;

#[cfg(any(fuzzing, feature = "fuzzing"))]
pub mod fuzzing;

pub use deframer::{Deframer, DeframerConfig, Frame, FrameError, PendingHeader};
pub use pdu::{Pdu, PduError, RejectReason};
pub use serial::{CmdSn, DataSn, Itt, R2tSn, StatSn, Ttt};
