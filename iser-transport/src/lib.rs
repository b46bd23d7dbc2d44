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
//! With the cargo feature `rdma`, `rdma` implements the trait on real RDMA (adapters and
//! soft-RoCE) through `sideway` and librdmacm. It was checked on soft-RoCE (rdma_rxe, Linux
//! 6.1 in a VM) against itself (this crate's `tests/rdma.rs` and the engine's
//! `<scenario>::rdma` tests, ignored by default), against the Linux kernel's iSER initiator
//! (ib_iser: login, 16 MiB written and read back, fio random writes with CRC32C verify) and
//! against LIO's iSER target (isert: login, 8 MiB copied in and out and compared).
//!
//! ## Cost per IO: TCP against iSER (loopback verbs)
//! `cargo run --release -p iscsi-examples --bin transport-bench -- --seconds 5`: our target
//! and our initiator in one process on one thread, the same engine and workload, over
//! loopback TCP and over iSER on the [`loopback`] verbs (2-core VM, 2026-12-07; CPU time is
//! both ends together):
//!
//! | workload | TCP IOPS | TCP CPU/IO | iSER IOPS | iSER CPU/IO | iSER/TCP CPU | iSER bytes per IO |
//! |---|---|---|---|---|---|---|
//! | 4K random read, 32 in flight | 244,297 | 4.10 us | 337,416 | 2.96 us | 0.72 | 152 in Sends, 4096 by RDMA Write |
//! | 4K random write, 32 in flight | 235,823 | 4.24 us | 292,445 | 3.43 us | 0.81 | 4248 in Sends (immediate data), 0 by RDMA |
//! | 128K sequential read, 8 in flight | 14,884 | 66.97 us | 65,747 | 15.21 us | 0.23 | 152 in Sends, 131072 by RDMA Write |
//!
//! Payload copies per IO made by this project's code: over iSER, reads 0 and solicited write
//! data 0 (the adapter moves them; the loopback verbs stand in with one memcpy), immediate
//! and unsolicited write data 1 at each end (into the Send buffer, out of the receive
//! buffer); over TCP, reads 0 at the target and 0 (data of 16 KiB and more, read straight
//! into the task buffer) or 1 at the initiator, writes 0 at the initiator and 1 at the target
//! (receive buffer to task buffer), on top of the kernel's two socket copies.
//!
//! `unsafe` code is forbidden everywhere but in `rdma` (foreign calls into libibverbs and
//! librdmacm), which only exists with the feature.
#![cfg_attr(not(feature = "rdma"), forbid(unsafe_code))]
#![cfg_attr(feature = "rdma", deny(unsafe_code))]

#[cfg(any(fuzzing, feature = "fuzzing"))]
pub mod fuzzing;
pub mod header;
pub mod loopback;
pub mod mover;
#[cfg(feature = "rdma")]
#[allow(unsafe_code)]
pub mod rdma;
pub mod verbs;
