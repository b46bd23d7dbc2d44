//! # iscsi
//!
//! The async iSCSI engine: Target and Initiator runtimes generic over the datamover (TCP or iSER),
//! gluing the sans-IO [`iscsi_proto`] core to [`scsi_core`] logical units.
//!
//! ## Design overview
//! One driver future per connection (inbound, then outbound, then timers, then events to the
//! application), a tracing span per session and connection. This release re-exports the protocol
//! core; the runtimes arrive with the target and initiator issues.
#![forbid(unsafe_code)]

pub mod target;

pub use iscsi_proto as proto;
pub use iscsi_tcp as tcp;
pub use scsi_core as scsi;
