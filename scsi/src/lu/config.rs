//! Configuration of an emulated logical unit.

use crate::backend::Provisioning;

/// How an emulated block device presents itself. [`LuConfig::new`] gives sensible defaults;
/// every field is public so a caller can adjust the ones it cares about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LuConfig {
    /// T10 vendor identification, at most 8 ASCII characters (padded with spaces).
    pub vendor: String,
    /// Product identification, at most 16 ASCII characters.
    pub product: String,
    /// Product revision level, at most 4 ASCII characters.
    pub revision: String,
    /// Unit serial number (VPD page 80h), printable ASCII, at most 32 characters.
    pub serial: String,
    /// The 60-bit value of the NAA locally-assigned designator (NAA 3h) in VPD page 83h. It must
    /// be unique per logical unit among everything an initiator sees: multipath software groups
    /// paths by it. [`LuConfig::new`] derives it from the serial number.
    pub naa_id: u64,
    /// Logical block length in bytes: 512 or 4096 (any power of two from 512 to 65536 works).
    pub block_size: u32,
    /// Present the unit as write protected: writes fail with DATA PROTECT / WRITE PROTECTED.
    pub read_only: bool,
    /// Report removable medium (INQUIRY RMB); PREVENT ALLOW MEDIUM REMOVAL then matters for
    /// START STOP UNIT with LOEJ.
    pub removable: bool,
    /// Initial state of the write cache (caching mode page WCE). When off, every write is
    /// written through as if FUA were set.
    pub write_cache: bool,
    /// MAXIMUM TRANSFER LENGTH in blocks (VPD B0h); longer READ/WRITE commands are refused.
    pub max_transfer_blocks: u32,
    /// OPTIMAL TRANSFER LENGTH in blocks (VPD B0h).
    pub optimal_transfer_blocks: u32,
    /// MAXIMUM UNMAP LBA COUNT (VPD B0h).
    pub max_unmap_blocks: u32,
    /// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT (VPD B0h).
    pub max_unmap_descriptors: u32,
    /// MAXIMUM WRITE SAME LENGTH in blocks (VPD B0h).
    pub max_write_same_blocks: u64,
    /// MAXIMUM COMPARE AND WRITE LENGTH in blocks (VPD B0h), 1..=255.
    pub max_compare_and_write_blocks: u8,
    /// MAXIMUM ATOMIC TRANSFER LENGTH in blocks for WRITE ATOMIC (16) (VPD B0h); 0 disables it.
    pub max_atomic_blocks: u32,
    /// Advertise the provisioning of the backend as given, instead of asking it.
    pub provisioning: Option<Provisioning>,
}

impl LuConfig {
    /// Defaults for a disk with the given serial number: vendor `ISCSI-RS`, 512-byte blocks,
    /// write cache on, 8 MiB maximum transfer.
    pub fn new(serial: impl Into<String>) -> Self {
        let serial = serial.into();
        Self {
            vendor: "ISCSI-RS".into(),
            product: "RAMDISK".into(),
            revision: "0001".into(),
            naa_id: naa_from_serial(&serial),
            serial,
            block_size: 512,
            read_only: false,
            removable: false,
            write_cache: true,
            max_transfer_blocks: 16384,
            optimal_transfer_blocks: 128,
            max_unmap_blocks: 0x10_0000,
            max_unmap_descriptors: 256,
            max_write_same_blocks: 0x40_0000,
            max_compare_and_write_blocks: 255,
            max_atomic_blocks: 256,
            provisioning: None,
        }
    }
}

/// A 60-bit identifier derived from a serial number (FNV-1a, 64 bits, folded).
pub(crate) fn naa_from_serial(serial: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in serial.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h ^ (h >> 60)) & 0x0FFF_FFFF_FFFF_FFFF
}
