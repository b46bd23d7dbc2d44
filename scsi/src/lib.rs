//! # scsi-core
//!
//! SCSI for storage stacks, independent of any transport: CDB parsing and building, sense data,
//! and a block-device logical-unit emulation (SPC-4 / SBC-3) over a backend trait.
//!
//! ## Design overview
//! The crate knows nothing of iSCSI. A target hands it a CDB plus data buffers and gets back a
//! status with sense; an initiator uses it to build CDBs and decode answers.
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
