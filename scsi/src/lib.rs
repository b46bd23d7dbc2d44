//! # scsi-core
//!
//! SCSI for storage stacks, independent of any transport: CDB parsing and building, sense data,
//! and a block-device logical-unit emulation (SPC-4 / SBC-3) over a backend trait.
//!
//! ## Design overview
//! The crate knows nothing of iSCSI. A target hands a [`LogicalUnit`](lu::LogicalUnit) a CDB,
//! the [`ItNexus`] it came through and the task buffer, and gets back a
//! [`Completion`](lu::Completion): status, sense, how much data-in the buffer holds, and the
//! command's own transfer length (from which the transport computes its residual). An initiator
//! uses the same [`cdb::Cdb`] type to build commands and [`Sense::parse`] to read the answers.
//!
//! - [`cdb`]: typed parse and build of every command the emulation serves.
//! - [`sense`]: status codes, sense keys, named ASC/ASCQ codes, fixed and descriptor formats.
//! - [`backend`]: the [`BlockBackend`](backend::BlockBackend) trait (async, owned buffers, so
//!   a backend may move I/O to other threads and a transport may pass RDMA-registered memory),
//!   with a sparse [`RamBackend`](backend::RamBackend) and a
//!   [`FileBackend`](backend::FileBackend) (positioned I/O on the blocking pool, UNMAP punches
//!   holes, holes reported by GET LBA STATUS).
//! - [`lu`]: the logical unit. Per-I_T-nexus unit attentions, SPC-2 RESERVE/RELEASE and SPC-4
//!   persistent reservations (every service action and type), mode pages with changeable /
//!   default / saved values, VPD pages 00h, 80h, 83h, B0h, B1h, B2h, REPORT SUPPORTED OPERATION
//!   CODES with timeouts, and the SBC block commands including COMPARE AND WRITE (atomic
//!   against every other command), ORWRITE, WRITE ATOMIC (16), WRITE SAME with UNMAP, UNMAP,
//!   GET LBA STATUS and SANITIZE (OVERWRITE, BLOCK ERASE, EXIT FAILURE MODE; no cryptographic
//!   erase).
//!
//! Bad input never panics: an unknown operation code, an invalid field, an LBA out of range or
//! a data-out length that does not match the CDB each end in CHECK CONDITION with the sense
//! SPC-4/SBC-3 specify, and the unit stays usable for every other I_T nexus.
//!
//! ## Copies
//! READ lands in the task buffer straight from the backend and WRITE leaves from it: the
//! emulation copies no payload (the RAM backend's own copy in or out of its memory is the one
//! copy). VERIFY, COMPARE AND WRITE and ORWRITE read the medium into a scratch buffer to compare
//! or merge; control commands (INQUIRY, MODE SENSE, ...) build their few bytes and copy them in.
//!
//! ## Not supported
//! Protection information (RDPROTECT/WRPROTECT/VRPROTECT must be 0), ACA (NACA must be 0),
//! persistence of reservations through power loss (APTPL), anchored LBAs, ALUA, EXTENDED COPY,
//! cryptographic erase. Each is refused with the sense the standards give for an unsupported
//! field or command.
//!
//! ## Example
//! ```
//! use scsi_core::{
//!     ItNexus, Status,
//!     backend::RamBackend,
//!     cdb::{Cdb, Rw},
//!     lu::{LogicalUnit, LuConfig},
//! };
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let lu = LogicalUnit::new(LuConfig::new("disk-0001"), RamBackend::new(64 << 20)).unwrap();
//! let host = ItNexus::iscsi("iqn.2026-11.org.example:host", [0x80, 0, 0, 0, 0, 1], 1);
//!
//! // The first command of a new I_T nexus reports the power-on unit attention.
//! let tur = Cdb::TestUnitReady.encode();
//! let done = lu.execute(&host, tur.as_slice(), Vec::new()).await;
//! assert_eq!(done.status, Status::CHECK_CONDITION);
//!
//! // Write two blocks, read them back into a buffer the caller owns.
//! let write = Cdb::Write(Rw::new(100, 2)).encode();
//! let done = lu.execute(&host, write.as_slice(), vec![0xA5; 1024]).await;
//! assert_eq!(done.status, Status::GOOD);
//! let read = Cdb::Read(Rw::new(100, 2)).encode();
//! let done = lu.execute(&host, read.as_slice(), vec![0; 1024]).await;
//! assert_eq!(done.data(), &[0xA5; 1024][..]);
//! # });
//! ```
#![forbid(unsafe_code)]

pub mod backend;
pub mod cdb;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod lu;
pub mod nexus;
pub mod sense;

pub use nexus::ItNexus;
pub use sense::{Asc, Sense, SenseFormat, SenseKey, Status};
