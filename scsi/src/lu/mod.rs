//! Block-device logical unit emulation (SPC-4, SBC-3) over a [`BlockBackend`](crate::backend::BlockBackend).

use crate::{
    backend::Provisioning,
    nexus::ItNexus,
    sense::{Asc, Sense},
};

mod block;
mod config;
pub(crate) mod inquiry;
pub(crate) mod mode;
pub(crate) mod opcodes;
pub(crate) mod pr;
mod unit;

pub use block::PATTERN_BYTES;
pub use config::LuConfig;
pub use inquiry::report_luns;
pub use opcodes::{DataDirection, data_direction};
pub use unit::{Completion, ConfigError, LogicalUnit, ResetKind, Residual};

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
    /// The caching mode page's WCE: when clear, every write is written through.
    pub write_cache: bool,
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

#[cfg(test)]
mod tests {
    use crate::cdb::Cdb;

    /// The command table (REPORT SUPPORTED OPERATION CODES) and the CDB parser agree on which
    /// operation codes and service actions exist, and on their CDB lengths.
    #[test]
    fn command_table_matches_the_parser() {
        for op in 0..=255u8 {
            for sa in 0..32u8 {
                let mut cdb = [0u8; 16];
                cdb[0] = op;
                cdb[1] = sa;
                let parsed = Cdb::parse(&cdb);
                let listed = super::opcodes::resolve(&cdb);
                match (&parsed, &listed) {
                    (Ok(c), Ok(info)) => {
                        assert_eq!(
                            usize::from(info.cdb_len),
                            c.encode().len(),
                            "{op:#x}/{sa:#x}"
                        )
                    }
                    (Err(_), Err(_)) => {}
                    // These parse every service action; the unit refuses the unknown ones with
                    // INVALID FIELD IN CDB.
                    (
                        Ok(
                            Cdb::Sanitize { .. }
                            | Cdb::PersistentReserveIn { .. }
                            | Cdb::PersistentReserveOut { .. },
                        ),
                        Err(_),
                    ) => {}
                    _ => panic!("{op:#04x}/{sa:#04x}: parser {parsed:?}, table {listed:?}"),
                }
            }
        }
    }
}
