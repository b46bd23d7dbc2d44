//! # iscsi-iser
//!
//! The iSER datamover (RFC 7145, iSCSI Extensions for RDMA) for the [`iscsi_proto`] session core.
//!
//! ## Design overview
//! Control PDUs travel in RDMA Sends behind a 28-byte iSER header; Data-In becomes RDMA Write and
//! solicited Data-Out becomes RDMA Read on registered memory. A verbs trait hides the RDMA stack
//! (a `sideway` backend for real hardware and soft-RoCE, and an in-process loopback backend for
//! tests). This release only reserves the crate's place in the workspace; the iSER text keys are
//! already negotiated by [`iscsi_proto::text`].
#![forbid(unsafe_code)]
