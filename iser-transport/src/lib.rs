//! # iscsi-iser
//!
//! The iSER datamover (RFC 7145, iSCSI Extensions for RDMA) for the [`iscsi_proto`] session core.
//!
//! ## Design overview
//! Control PDUs travel in RDMA Sends behind a 28-byte iSER header ([`header`]); Data-In becomes
//! RDMA Write and solicited Data-Out becomes RDMA Read on registered memory. The [`verbs::Verbs`]
//! trait hides the RDMA stack; [`loopback`] implements it in process (with the checks an
//! adapter makes and fault injection) for tests. The iSER text keys are negotiated by
//! [`iscsi_proto::text`].
#![forbid(unsafe_code)]

pub mod header;
pub mod loopback;
pub mod mover;
pub mod verbs;
