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
//!
//! With the cargo feature `rdma`, [`rdma`] implements the trait on real RDMA (adapters and
//! soft-RoCE) through `sideway` and librdmacm.
//!
//! `unsafe` code is forbidden everywhere but in [`rdma`] (foreign calls into libibverbs and
//! librdmacm), which only exists with the feature.
#![cfg_attr(not(feature = "rdma"), forbid(unsafe_code))]
#![cfg_attr(feature = "rdma", deny(unsafe_code))]

pub mod header;
pub mod loopback;
pub mod mover;
#[cfg(feature = "rdma")]
#[allow(unsafe_code)]
pub mod rdma;
pub mod verbs;
