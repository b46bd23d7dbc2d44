//! Block-device logical unit emulation (SPC-4, SBC-3) over a [`BlockBackend`].

use crate::{
    backend::Provisioning,
    nexus::ItNexus,
    sense::{Asc, Sense},
};

mod config;
pub(crate) mod inquiry;
pub(crate) mod mode;
pub(crate) mod opcodes;
pub(crate) mod pr;

pub use config::LuConfig;
pub use inquiry::report_luns;

/// Facts about the device that the command handlers need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DeviceInfo {
    /// Logical block length in bytes.
    pub block_size: u32,
    /// Number of logical blocks.
    pub num_blocks: u64,
    /// Write protected (by configuration or by the control mode page's SWP bit).
    pub read_only: bool,
    /// Provisioning reported to initiators.
    pub provisioning: Provisioning,
}

/// How a command fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// CHECK CONDITION with this sense.
    Check(Sense),
    /// RESERVATION CONFLICT status, no sense.
    ReservationConflict,
}

impl From<Sense> for Failure {
    fn from(s: Sense) -> Self {
        Self::Check(s)
    }
}

/// A unit attention condition to establish for one I_T nexus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UnitAttention {
    /// Who gets it.
    pub nexus: ItNexus,
    /// What it reports.
    pub asc: Asc,
}
