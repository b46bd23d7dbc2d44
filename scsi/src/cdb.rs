//! Command descriptor blocks: typed parse and build for every command the emulation serves.
//!
//! [`Cdb::parse`] turns CDB bytes into a [`Cdb`]; [`Cdb::encode`] builds the bytes back, so an
//! initiator builds its commands with the same types a target decodes them with, and
//! `parse(encode(c)) == c` holds for every value (a property test checks it).
//!
//! Parsing checks what is structural: the CDB length for the opcode, the service action, and the
//! CONTROL byte (NACA and LINK are not supported, as SAM-5 allows), plus the reserved fields of
//! SANITIZE. Field values that are legal syntax but not supported by a given device (protection
//! information, unsupported modes) are left to the device server, which answers with the right
//! sense.

use crate::sense::{Asc, Sense};

/// Bytes of an encoded CDB (at most 16).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CdbBytes {
    bytes: [u8; 16],
    len: u8,
}

impl CdbBytes {
    /// The CDB.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
    /// The CDB zero-padded to 16 bytes (the iSCSI SCSI Command PDU's CDB field).
    pub fn padded(&self) -> [u8; 16] {
        self.bytes
    }
    /// The CDB length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    /// Always false: a CDB has at least six bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl AsRef<[u8]> for CdbBytes {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for CdbBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.as_slice() {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// Operation codes (SPC-4 / SBC-3).
#[allow(missing_docs)]
pub mod opcode {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const READ_6: u8 = 0x08;
    pub const WRITE_6: u8 = 0x0A;
    pub const INQUIRY: u8 = 0x12;
    pub const MODE_SELECT_6: u8 = 0x15;
    pub const RESERVE_6: u8 = 0x16;
    pub const RELEASE_6: u8 = 0x17;
    pub const MODE_SENSE_6: u8 = 0x1A;
    pub const START_STOP_UNIT: u8 = 0x1B;
    pub const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1E;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const WRITE_10: u8 = 0x2A;
    pub const WRITE_AND_VERIFY_10: u8 = 0x2E;
    pub const VERIFY_10: u8 = 0x2F;
    pub const PRE_FETCH_10: u8 = 0x34;
    pub const SYNCHRONIZE_CACHE_10: u8 = 0x35;
    pub const READ_DEFECT_DATA_10: u8 = 0x37;
    pub const WRITE_SAME_10: u8 = 0x41;
    pub const UNMAP: u8 = 0x42;
    pub const SANITIZE: u8 = 0x48;
    pub const MODE_SELECT_10: u8 = 0x55;
    pub const RESERVE_10: u8 = 0x56;
    pub const RELEASE_10: u8 = 0x57;
    pub const MODE_SENSE_10: u8 = 0x5A;
    pub const PERSISTENT_RESERVE_IN: u8 = 0x5E;
    pub const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
    pub const READ_16: u8 = 0x88;
    pub const COMPARE_AND_WRITE: u8 = 0x89;
    pub const WRITE_16: u8 = 0x8A;
    pub const ORWRITE_16: u8 = 0x8B;
    pub const WRITE_AND_VERIFY_16: u8 = 0x8E;
    pub const VERIFY_16: u8 = 0x8F;
    pub const PRE_FETCH_16: u8 = 0x90;
    pub const SYNCHRONIZE_CACHE_16: u8 = 0x91;
    pub const WRITE_SAME_16: u8 = 0x93;
    pub const WRITE_ATOMIC_16: u8 = 0x9C;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9E;
    pub const REPORT_LUNS: u8 = 0xA0;
    pub const MAINTENANCE_IN: u8 = 0xA3;
    pub const READ_12: u8 = 0xA8;
    pub const WRITE_12: u8 = 0xAA;
    pub const WRITE_AND_VERIFY_12: u8 = 0xAE;
    pub const VERIFY_12: u8 = 0xAF;
    pub const READ_DEFECT_DATA_12: u8 = 0xB7;

    /// SERVICE ACTION IN(16) service action READ CAPACITY(16).
    pub const SA_READ_CAPACITY_16: u8 = 0x10;
    /// SERVICE ACTION IN(16) service action GET LBA STATUS.
    pub const SA_GET_LBA_STATUS: u8 = 0x12;
    /// MAINTENANCE IN service action REPORT SUPPORTED OPERATION CODES.
    pub const SA_REPORT_SUPPORTED_OPCODES: u8 = 0x0C;
    /// MAINTENANCE IN service action REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS.
    pub const SA_REPORT_SUPPORTED_TMFS: u8 = 0x0D;
}

/// The CDB length of an operation code, from its group code (SPC-4 §4.2.5.1); `None` for the
/// variable-length and vendor groups.
pub fn cdb_len(op: u8) -> Option<usize> {
    match op >> 5 {
        0 => Some(6),
        1 | 2 => Some(10),
        4 => Some(16),
        5 => Some(12),
        _ => None,
    }
}

/// Size of a READ/WRITE-family CDB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CdbSize {
    /// 6-byte CDB (READ(6), WRITE(6)).
    Six,
    /// 10-byte CDB.
    Ten,
    /// 12-byte CDB.
    Twelve,
    /// 16-byte CDB.
    Sixteen,
}

/// The common fields of READ, WRITE, WRITE AND VERIFY, VERIFY, ORWRITE and WRITE ATOMIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rw {
    /// CDB size.
    pub size: CdbSize,
    /// First logical block.
    pub lba: u64,
    /// Number of blocks. For READ(6)/WRITE(6), 0 on the wire means 256 and is stored as 256.
    pub blocks: u32,
    /// RDPROTECT / WRPROTECT / VRPROTECT / ORPROTECT (3 bits).
    pub protect: u8,
    /// Disable page out.
    pub dpo: bool,
    /// Force unit access.
    pub fua: bool,
    /// Group number (5 bits).
    pub group: u8,
}

impl Rw {
    /// A command of `blocks` blocks at `lba` with every flag clear, in the smallest CDB that
    /// holds it (10 or 16 bytes).
    pub fn new(lba: u64, blocks: u32) -> Self {
        let size = if lba <= u64::from(u32::MAX) && blocks <= 0xFFFF {
            CdbSize::Ten
        } else {
            CdbSize::Sixteen
        };
        Self {
            size,
            lba,
            blocks,
            protect: 0,
            dpo: false,
            fua: false,
            group: 0,
        }
    }
}

/// A parsed CDB.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cdb {
    /// TEST UNIT READY.
    TestUnitReady,
    /// REQUEST SENSE.
    RequestSense {
        /// Descriptor-format sense requested.
        desc: bool,
        /// Allocation length.
        alloc_len: u8,
    },
    /// INQUIRY.
    Inquiry {
        /// Vital product data requested.
        evpd: bool,
        /// Obsolete CMDDT bit (refused by the device server).
        cmddt: bool,
        /// VPD page code.
        page: u8,
        /// Allocation length.
        alloc_len: u16,
    },
    /// READ(6/10/12/16).
    Read(Rw),
    /// WRITE(6/10/12/16).
    Write(Rw),
    /// WRITE AND VERIFY(10/12/16) (`dpo`, `protect` apply; `fua` unused).
    WriteAndVerify {
        /// Common fields.
        rw: Rw,
        /// BYTCHK (2 bits).
        bytchk: u8,
    },
    /// VERIFY(10/12/16) (`protect` is VRPROTECT; `fua` unused).
    Verify {
        /// Common fields.
        rw: Rw,
        /// BYTCHK (2 bits): 0 no data, 1 compare the data-out, 3 one block repeated.
        bytchk: u8,
    },
    /// ORWRITE(16).
    OrWrite(Rw),
    /// WRITE ATOMIC(16).
    WriteAtomic {
        /// Common fields (size is always 16).
        rw: Rw,
        /// ATOMIC BOUNDARY.
        boundary: u16,
    },
    /// COMPARE AND WRITE.
    CompareAndWrite {
        /// Common fields (size is always 16; `blocks` is at most 255).
        rw: Rw,
    },
    /// WRITE SAME(10/16).
    WriteSame {
        /// Common fields (`protect` is WRPROTECT).
        rw: Rw,
        /// Deallocate the blocks if possible.
        unmap: bool,
        /// Anchor instead of deallocate.
        anchor: bool,
        /// No data-out buffer: write zeros (WRITE SAME(16) only).
        ndob: bool,
    },
    /// UNMAP.
    Unmap {
        /// Anchor instead of deallocate.
        anchor: bool,
        /// Group number.
        group: u8,
        /// Parameter list length.
        param_len: u16,
    },
    /// SYNCHRONIZE CACHE(10/16).
    SynchronizeCache {
        /// CDB size (Ten or Sixteen).
        size: CdbSize,
        /// First block.
        lba: u64,
        /// Number of blocks; 0 = to the end of the medium.
        blocks: u32,
        /// Return status before the flush completes.
        immed: bool,
    },
    /// PRE-FETCH(10/16).
    PreFetch {
        /// CDB size (Ten or Sixteen).
        size: CdbSize,
        /// First block.
        lba: u64,
        /// Number of blocks; 0 = to the end of the medium.
        blocks: u32,
        /// Return status at once.
        immed: bool,
    },
    /// READ CAPACITY(10).
    ReadCapacity10 {
        /// LOGICAL BLOCK ADDRESS (obsolete; must be 0 unless PMI).
        lba: u32,
        /// Partial medium indicator (obsolete).
        pmi: bool,
    },
    /// READ CAPACITY(16).
    ReadCapacity16 {
        /// LOGICAL BLOCK ADDRESS (obsolete).
        lba: u64,
        /// Partial medium indicator (obsolete).
        pmi: bool,
        /// Allocation length.
        alloc_len: u32,
    },
    /// GET LBA STATUS.
    GetLbaStatus {
        /// Starting LBA.
        lba: u64,
        /// Allocation length.
        alloc_len: u32,
    },
    /// MODE SENSE(6/10).
    ModeSense {
        /// MODE SENSE(10) rather than (6).
        ten: bool,
        /// Disable block descriptors.
        dbd: bool,
        /// Long LBA block descriptors accepted (10 only).
        llbaa: bool,
        /// Page control (2 bits).
        pc: u8,
        /// Page code (6 bits).
        page: u8,
        /// Subpage code.
        subpage: u8,
        /// Allocation length.
        alloc_len: u16,
    },
    /// MODE SELECT(6/10).
    ModeSelect {
        /// MODE SELECT(10) rather than (6).
        ten: bool,
        /// Page format.
        pf: bool,
        /// Save pages.
        sp: bool,
        /// Parameter list length.
        param_len: u16,
    },
    /// START STOP UNIT.
    StartStopUnit {
        /// Return status at once.
        immed: bool,
        /// Power condition modifier (4 bits).
        power_condition_modifier: u8,
        /// Power condition (4 bits).
        power_condition: u8,
        /// Do not flush the cache when stopping.
        no_flush: bool,
        /// Load / eject the medium.
        loej: bool,
        /// Start (or load) rather than stop (or eject).
        start: bool,
    },
    /// PREVENT ALLOW MEDIUM REMOVAL.
    PreventAllow {
        /// PREVENT field (2 bits).
        prevent: u8,
    },
    /// READ DEFECT DATA(10/12).
    ReadDefectData {
        /// READ DEFECT DATA(12) rather than (10).
        twelve: bool,
        /// Primary defect list requested.
        plist: bool,
        /// Grown defect list requested.
        glist: bool,
        /// Defect list format (3 bits).
        format: u8,
        /// Allocation length.
        alloc_len: u32,
    },
    /// REPORT LUNS.
    ReportLuns {
        /// SELECT REPORT.
        select_report: u8,
        /// Allocation length.
        alloc_len: u32,
    },
    /// REPORT SUPPORTED OPERATION CODES.
    ReportSupportedOpcodes {
        /// Return command timeouts descriptors.
        rctd: bool,
        /// REPORTING OPTIONS (3 bits).
        options: u8,
        /// Requested operation code.
        opcode: u8,
        /// Requested service action.
        service_action: u16,
        /// Allocation length.
        alloc_len: u32,
    },
    /// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS.
    ReportSupportedTmfs {
        /// Return extended parameter data.
        repd: bool,
        /// Allocation length.
        alloc_len: u32,
    },
    /// RESERVE(6/10).
    Reserve {
        /// RESERVE(10) rather than (6).
        ten: bool,
    },
    /// RELEASE(6/10).
    Release {
        /// RELEASE(10) rather than (6).
        ten: bool,
    },
    /// PERSISTENT RESERVE IN.
    PersistentReserveIn {
        /// Service action (5 bits).
        service_action: u8,
        /// Allocation length.
        alloc_len: u16,
    },
    /// PERSISTENT RESERVE OUT.
    PersistentReserveOut {
        /// Service action (5 bits).
        service_action: u8,
        /// SCOPE (4 bits).
        scope: u8,
        /// TYPE (4 bits).
        kind: u8,
        /// Parameter list length.
        param_len: u32,
    },
    /// SANITIZE.
    Sanitize {
        /// Return status at once.
        immed: bool,
        /// Allow unrestricted sanitize exit.
        ause: bool,
        /// Service action (5 bits).
        service_action: u8,
        /// Parameter list length.
        param_len: u16,
    },
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

/// INVALID COMMAND OPERATION CODE.
fn invalid_opcode() -> Sense {
    Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE)
}

impl Cdb {
    /// Parses CDB bytes. `bytes` may be longer than the CDB (the iSCSI CDB field is 16 bytes;
    /// the rest is ignored). Unsupported opcodes and service actions fail with ILLEGAL REQUEST
    /// / INVALID COMMAND OPERATION CODE (SPC-4 §4.2.5.1), bad CONTROL bytes and short CDBs with
    /// INVALID FIELD IN CDB.
    pub fn parse(bytes: &[u8]) -> Result<Self, Sense> {
        use opcode::*;
        let op = *bytes.first().ok_or_else(invalid_opcode)?;
        let len = cdb_len(op).ok_or_else(invalid_opcode)?;
        let b = bytes
            .get(..len)
            .ok_or_else(|| Sense::invalid_cdb_field(0, None))?;
        // NACA (bit 2) and LINK (bit 0) of the CONTROL byte.
        if b[len - 1] & 0x05 != 0 {
            let bit = if b[len - 1] & 0x04 != 0 { 2 } else { 0 };
            return Err(Sense::invalid_cdb_field(len as u16 - 1, Some(bit)));
        }
        let flags = |b1: u8| (b1 >> 5, b1 & 0x10 != 0, b1 & 0x08 != 0);
        let rw10 = |b: &[u8]| {
            let (protect, dpo, fua) = flags(b[1]);
            Rw {
                size: CdbSize::Ten,
                lba: u64::from(be32(b, 2)),
                blocks: u32::from(be16(b, 7)),
                protect,
                dpo,
                fua,
                group: b[6] & 0x1F,
            }
        };
        let rw12 = |b: &[u8]| {
            let (protect, dpo, fua) = flags(b[1]);
            Rw {
                size: CdbSize::Twelve,
                lba: u64::from(be32(b, 2)),
                blocks: be32(b, 6),
                protect,
                dpo,
                fua,
                group: b[10] & 0x1F,
            }
        };
        let rw16 = |b: &[u8]| {
            let (protect, dpo, fua) = flags(b[1]);
            Rw {
                size: CdbSize::Sixteen,
                lba: be64(b, 2),
                blocks: be32(b, 10),
                protect,
                dpo,
                fua,
                group: b[14] & 0x1F,
            }
        };
        let rw6 = |b: &[u8]| Rw {
            size: CdbSize::Six,
            lba: u64::from(u32::from_be_bytes([0, b[1] & 0x1F, b[2], b[3]])),
            blocks: if b[4] == 0 { 256 } else { u32::from(b[4]) },
            protect: 0,
            dpo: false,
            fua: false,
            group: 0,
        };
        // The 10-, 12- or 16-byte layout, by the CDB length of the operation code.
        let rw_any = |b: &[u8]| match len {
            10 => rw10(b),
            12 => rw12(b),
            _ => rw16(b),
        };
        let bytchk = |b1: u8| (b1 >> 1) & 3;
        // Bit 3 of byte 1 is not FUA in VERIFY and WRITE AND VERIFY.
        let no_fua = |rw: Rw| Rw { fua: false, ..rw };
        Ok(match op {
            TEST_UNIT_READY => Self::TestUnitReady,
            REQUEST_SENSE => Self::RequestSense {
                desc: b[1] & 1 != 0,
                alloc_len: b[4],
            },
            INQUIRY => Self::Inquiry {
                evpd: b[1] & 1 != 0,
                cmddt: b[1] & 2 != 0,
                page: b[2],
                alloc_len: be16(b, 3),
            },
            READ_6 => Self::Read(rw6(b)),
            WRITE_6 => Self::Write(rw6(b)),
            READ_10 | READ_12 | READ_16 => Self::Read(rw_any(b)),
            WRITE_10 | WRITE_12 | WRITE_16 => Self::Write(rw_any(b)),
            WRITE_AND_VERIFY_10 | WRITE_AND_VERIFY_12 | WRITE_AND_VERIFY_16 => {
                Self::WriteAndVerify {
                    rw: no_fua(rw_any(b)),
                    bytchk: bytchk(b[1]),
                }
            }
            VERIFY_10 | VERIFY_12 | VERIFY_16 => Self::Verify {
                rw: no_fua(rw_any(b)),
                bytchk: bytchk(b[1]),
            },
            ORWRITE_16 => Self::OrWrite(rw16(b)),
            WRITE_ATOMIC_16 => {
                let mut rw = rw16(b);
                rw.blocks = u32::from(be16(b, 12));
                Self::WriteAtomic {
                    rw,
                    boundary: be16(b, 10),
                }
            }
            COMPARE_AND_WRITE => {
                let mut rw = rw16(b);
                rw.blocks = u32::from(b[13]);
                Self::CompareAndWrite { rw }
            }
            WRITE_SAME_10 | WRITE_SAME_16 => {
                let mut rw = rw_any(b);
                rw.dpo = false;
                rw.fua = false;
                Self::WriteSame {
                    rw,
                    unmap: b[1] & 0x08 != 0,
                    anchor: b[1] & 0x10 != 0,
                    ndob: op == WRITE_SAME_16 && b[1] & 0x01 != 0,
                }
            }
            UNMAP => Self::Unmap {
                anchor: b[1] & 1 != 0,
                group: b[6] & 0x1F,
                param_len: be16(b, 7),
            },
            SYNCHRONIZE_CACHE_10 => Self::SynchronizeCache {
                size: CdbSize::Ten,
                lba: u64::from(be32(b, 2)),
                blocks: u32::from(be16(b, 7)),
                immed: b[1] & 2 != 0,
            },
            SYNCHRONIZE_CACHE_16 => Self::SynchronizeCache {
                size: CdbSize::Sixteen,
                lba: be64(b, 2),
                blocks: be32(b, 10),
                immed: b[1] & 2 != 0,
            },
            PRE_FETCH_10 => Self::PreFetch {
                size: CdbSize::Ten,
                lba: u64::from(be32(b, 2)),
                blocks: u32::from(be16(b, 7)),
                immed: b[1] & 2 != 0,
            },
            PRE_FETCH_16 => Self::PreFetch {
                size: CdbSize::Sixteen,
                lba: be64(b, 2),
                blocks: be32(b, 10),
                immed: b[1] & 2 != 0,
            },
            READ_CAPACITY_10 => Self::ReadCapacity10 {
                lba: be32(b, 2),
                pmi: b[8] & 1 != 0,
            },
            SERVICE_ACTION_IN_16 => match b[1] & 0x1F {
                SA_READ_CAPACITY_16 => Self::ReadCapacity16 {
                    lba: be64(b, 2),
                    pmi: b[14] & 1 != 0,
                    alloc_len: be32(b, 10),
                },
                SA_GET_LBA_STATUS => Self::GetLbaStatus {
                    lba: be64(b, 2),
                    alloc_len: be32(b, 10),
                },
                _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
            },
            MODE_SENSE_6 | MODE_SENSE_10 => {
                let ten = op == MODE_SENSE_10;
                Self::ModeSense {
                    ten,
                    dbd: b[1] & 0x08 != 0,
                    llbaa: ten && b[1] & 0x10 != 0,
                    pc: b[2] >> 6,
                    page: b[2] & 0x3F,
                    subpage: b[3],
                    alloc_len: if ten { be16(b, 7) } else { u16::from(b[4]) },
                }
            }
            MODE_SELECT_6 | MODE_SELECT_10 => {
                let ten = op == MODE_SELECT_10;
                Self::ModeSelect {
                    ten,
                    pf: b[1] & 0x10 != 0,
                    sp: b[1] & 0x01 != 0,
                    param_len: if ten { be16(b, 7) } else { u16::from(b[4]) },
                }
            }
            START_STOP_UNIT => Self::StartStopUnit {
                immed: b[1] & 1 != 0,
                power_condition_modifier: b[3] & 0x0F,
                power_condition: b[4] >> 4,
                no_flush: b[4] & 0x04 != 0,
                loej: b[4] & 0x02 != 0,
                start: b[4] & 0x01 != 0,
            },
            PREVENT_ALLOW_MEDIUM_REMOVAL => Self::PreventAllow { prevent: b[4] & 3 },
            READ_DEFECT_DATA_10 => Self::ReadDefectData {
                twelve: false,
                plist: b[2] & 0x10 != 0,
                glist: b[2] & 0x08 != 0,
                format: b[2] & 7,
                alloc_len: u32::from(be16(b, 7)),
            },
            READ_DEFECT_DATA_12 => Self::ReadDefectData {
                twelve: true,
                plist: b[1] & 0x10 != 0,
                glist: b[1] & 0x08 != 0,
                format: b[1] & 7,
                alloc_len: be32(b, 6),
            },
            REPORT_LUNS => Self::ReportLuns {
                select_report: b[2],
                alloc_len: be32(b, 6),
            },
            MAINTENANCE_IN => match b[1] & 0x1F {
                SA_REPORT_SUPPORTED_OPCODES => Self::ReportSupportedOpcodes {
                    rctd: b[2] & 0x80 != 0,
                    options: b[2] & 7,
                    opcode: b[3],
                    service_action: be16(b, 4),
                    alloc_len: be32(b, 6),
                },
                SA_REPORT_SUPPORTED_TMFS => Self::ReportSupportedTmfs {
                    repd: b[2] & 0x80 != 0,
                    alloc_len: be32(b, 6),
                },
                _ => return Err(Sense::invalid_cdb_field(1, Some(4))),
            },
            RESERVE_6 => Self::Reserve { ten: false },
            RESERVE_10 => Self::Reserve { ten: true },
            RELEASE_6 => Self::Release { ten: false },
            RELEASE_10 => Self::Release { ten: true },
            PERSISTENT_RESERVE_IN => Self::PersistentReserveIn {
                service_action: b[1] & 0x1F,
                alloc_len: be16(b, 7),
            },
            PERSISTENT_RESERVE_OUT => Self::PersistentReserveOut {
                service_action: b[1] & 0x1F,
                scope: b[2] >> 4,
                kind: b[2] & 0x0F,
                param_len: be32(b, 5),
            },
            SANITIZE => {
                // Byte 1 bit 6 and bytes 2..=6 are reserved. SANITIZE destroys data, so a CDB
                // with any of them set is refused rather than guessed at (libiscsi's
                // Sanitize.*Reserved tests expect INVALID FIELD IN CDB).
                if b[1] & 0x40 != 0 {
                    return Err(Sense::invalid_cdb_field(1, Some(6)));
                }
                if let Some(at) = (2..=6).find(|&i| b[i] != 0) {
                    return Err(Sense::invalid_cdb_field(at as u16, None));
                }
                Self::Sanitize {
                    immed: b[1] & 0x80 != 0,
                    ause: b[1] & 0x20 != 0,
                    service_action: b[1] & 0x1F,
                    param_len: be16(b, 7),
                }
            }
            _ => return Err(invalid_opcode()),
        })
    }

    /// Builds the CDB bytes (CONTROL byte 0). Fields wider than their CDB slot are truncated
    /// to the slot (for example a READ(6) LBA to 21 bits): pick the CDB size that fits.
    pub fn encode(&self) -> CdbBytes {
        use opcode::*;
        let mut b = [0u8; 16];
        let put16 =
            |b: &mut [u8; 16], at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_be_bytes());
        let put32 =
            |b: &mut [u8; 16], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_be_bytes());
        let put64 =
            |b: &mut [u8; 16], at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_be_bytes());
        let flags =
            |rw: &Rw| ((rw.protect & 7) << 5) | (u8::from(rw.dpo) << 4) | (u8::from(rw.fua) << 3);
        // Writes a READ/WRITE-family CDB with the given opcodes per size and returns its length.
        let rw_into = |b: &mut [u8; 16], rw: &Rw, ops: [u8; 4]| -> usize {
            match rw.size {
                CdbSize::Six => {
                    b[0] = ops[0];
                    let lba = (rw.lba as u32) & 0x1F_FFFF;
                    b[1..4].copy_from_slice(&lba.to_be_bytes()[1..]);
                    b[4] = rw.blocks as u8;
                    6
                }
                CdbSize::Ten => {
                    b[0] = ops[1];
                    b[1] = flags(rw);
                    put32(b, 2, rw.lba as u32);
                    b[6] = rw.group & 0x1F;
                    put16(b, 7, rw.blocks as u16);
                    10
                }
                CdbSize::Twelve => {
                    b[0] = ops[2];
                    b[1] = flags(rw);
                    put32(b, 2, rw.lba as u32);
                    put32(b, 6, rw.blocks);
                    b[10] = rw.group & 0x1F;
                    12
                }
                CdbSize::Sixteen => {
                    b[0] = ops[3];
                    b[1] = flags(rw);
                    put64(b, 2, rw.lba);
                    put32(b, 10, rw.blocks);
                    b[14] = rw.group & 0x1F;
                    16
                }
            }
        };
        let len = match *self {
            Self::TestUnitReady => 6,
            Self::RequestSense { desc, alloc_len } => {
                b[0] = REQUEST_SENSE;
                b[1] = u8::from(desc);
                b[4] = alloc_len;
                6
            }
            Self::Inquiry {
                evpd,
                cmddt,
                page,
                alloc_len,
            } => {
                b[0] = INQUIRY;
                b[1] = u8::from(evpd) | (u8::from(cmddt) << 1);
                b[2] = page;
                put16(&mut b, 3, alloc_len);
                6
            }
            Self::Read(rw) => rw_into(&mut b, &rw, [READ_6, READ_10, READ_12, READ_16]),
            Self::Write(rw) => rw_into(&mut b, &rw, [WRITE_6, WRITE_10, WRITE_12, WRITE_16]),
            Self::WriteAndVerify { rw, bytchk } => {
                let ops = [
                    WRITE_AND_VERIFY_10,
                    WRITE_AND_VERIFY_10,
                    WRITE_AND_VERIFY_12,
                    WRITE_AND_VERIFY_16,
                ];
                let rw = Rw {
                    fua: false,
                    size: rw.size.at_least_ten(),
                    ..rw
                };
                let n = rw_into(&mut b, &rw, ops);
                b[1] |= (bytchk & 3) << 1;
                n
            }
            Self::Verify { rw, bytchk } => {
                let ops = [VERIFY_10, VERIFY_10, VERIFY_12, VERIFY_16];
                let rw = Rw {
                    fua: false,
                    size: rw.size.at_least_ten(),
                    ..rw
                };
                let n = rw_into(&mut b, &rw, ops);
                b[1] |= (bytchk & 3) << 1;
                n
            }
            Self::OrWrite(rw) => rw_into(
                &mut b,
                &Rw {
                    size: CdbSize::Sixteen,
                    ..rw
                },
                [ORWRITE_16; 4],
            ),
            Self::WriteAtomic { rw, boundary } => {
                rw_into(
                    &mut b,
                    &Rw {
                        size: CdbSize::Sixteen,
                        ..rw
                    },
                    [WRITE_ATOMIC_16; 4],
                );
                put16(&mut b, 10, boundary);
                put16(&mut b, 12, rw.blocks as u16);
                16
            }
            Self::CompareAndWrite { rw } => {
                rw_into(
                    &mut b,
                    &Rw {
                        size: CdbSize::Sixteen,
                        ..rw
                    },
                    [COMPARE_AND_WRITE; 4],
                );
                put32(&mut b, 10, 0);
                b[13] = rw.blocks as u8;
                16
            }
            Self::WriteSame {
                rw,
                unmap,
                anchor,
                ndob,
            } => {
                let sixteen = rw.size == CdbSize::Sixteen;
                let rw = Rw {
                    size: if sixteen {
                        CdbSize::Sixteen
                    } else {
                        CdbSize::Ten
                    },
                    dpo: false,
                    fua: false,
                    ..rw
                };
                let n = rw_into(
                    &mut b,
                    &rw,
                    [WRITE_SAME_10, WRITE_SAME_10, WRITE_SAME_10, WRITE_SAME_16],
                );
                b[1] |=
                    (u8::from(anchor) << 4) | (u8::from(unmap) << 3) | u8::from(ndob && sixteen);
                n
            }
            Self::Unmap {
                anchor,
                group,
                param_len,
            } => {
                b[0] = UNMAP;
                b[1] = u8::from(anchor);
                b[6] = group & 0x1F;
                put16(&mut b, 7, param_len);
                10
            }
            Self::SynchronizeCache {
                size,
                lba,
                blocks,
                immed,
            } => range_into(
                &mut b,
                size,
                [SYNCHRONIZE_CACHE_10, SYNCHRONIZE_CACHE_16],
                lba,
                blocks,
                immed,
            ),
            Self::PreFetch {
                size,
                lba,
                blocks,
                immed,
            } => range_into(
                &mut b,
                size,
                [PRE_FETCH_10, PRE_FETCH_16],
                lba,
                blocks,
                immed,
            ),
            Self::ReadCapacity10 { lba, pmi } => {
                b[0] = READ_CAPACITY_10;
                put32(&mut b, 2, lba);
                b[8] = u8::from(pmi);
                10
            }
            Self::ReadCapacity16 {
                lba,
                pmi,
                alloc_len,
            } => {
                b[0] = SERVICE_ACTION_IN_16;
                b[1] = SA_READ_CAPACITY_16;
                put64(&mut b, 2, lba);
                put32(&mut b, 10, alloc_len);
                b[14] = u8::from(pmi);
                16
            }
            Self::GetLbaStatus { lba, alloc_len } => {
                b[0] = SERVICE_ACTION_IN_16;
                b[1] = SA_GET_LBA_STATUS;
                put64(&mut b, 2, lba);
                put32(&mut b, 10, alloc_len);
                16
            }
            Self::ModeSense {
                ten,
                dbd,
                llbaa,
                pc,
                page,
                subpage,
                alloc_len,
            } => {
                b[1] = (u8::from(dbd) << 3) | (u8::from(llbaa && ten) << 4);
                b[2] = ((pc & 3) << 6) | (page & 0x3F);
                b[3] = subpage;
                if ten {
                    b[0] = MODE_SENSE_10;
                    put16(&mut b, 7, alloc_len);
                    10
                } else {
                    b[0] = MODE_SENSE_6;
                    b[4] = alloc_len as u8;
                    6
                }
            }
            Self::ModeSelect {
                ten,
                pf,
                sp,
                param_len,
            } => {
                b[1] = (u8::from(pf) << 4) | u8::from(sp);
                if ten {
                    b[0] = MODE_SELECT_10;
                    put16(&mut b, 7, param_len);
                    10
                } else {
                    b[0] = MODE_SELECT_6;
                    b[4] = param_len as u8;
                    6
                }
            }
            Self::StartStopUnit {
                immed,
                power_condition_modifier,
                power_condition,
                no_flush,
                loej,
                start,
            } => {
                b[0] = START_STOP_UNIT;
                b[1] = u8::from(immed);
                b[3] = power_condition_modifier & 0x0F;
                b[4] = (power_condition << 4)
                    | (u8::from(no_flush) << 2)
                    | (u8::from(loej) << 1)
                    | u8::from(start);
                6
            }
            Self::PreventAllow { prevent } => {
                b[0] = PREVENT_ALLOW_MEDIUM_REMOVAL;
                b[4] = prevent & 3;
                6
            }
            Self::ReadDefectData {
                twelve,
                plist,
                glist,
                format,
                alloc_len,
            } => {
                let f = (u8::from(plist) << 4) | (u8::from(glist) << 3) | (format & 7);
                if twelve {
                    b[0] = READ_DEFECT_DATA_12;
                    b[1] = f;
                    put32(&mut b, 6, alloc_len);
                    12
                } else {
                    b[0] = READ_DEFECT_DATA_10;
                    b[2] = f;
                    put16(&mut b, 7, alloc_len as u16);
                    10
                }
            }
            Self::ReportLuns {
                select_report,
                alloc_len,
            } => {
                b[0] = REPORT_LUNS;
                b[2] = select_report;
                put32(&mut b, 6, alloc_len);
                12
            }
            Self::ReportSupportedOpcodes {
                rctd,
                options,
                opcode,
                service_action,
                alloc_len,
            } => {
                b[0] = MAINTENANCE_IN;
                b[1] = SA_REPORT_SUPPORTED_OPCODES;
                b[2] = (u8::from(rctd) << 7) | (options & 7);
                b[3] = opcode;
                put16(&mut b, 4, service_action);
                put32(&mut b, 6, alloc_len);
                12
            }
            Self::ReportSupportedTmfs { repd, alloc_len } => {
                b[0] = MAINTENANCE_IN;
                b[1] = SA_REPORT_SUPPORTED_TMFS;
                b[2] = u8::from(repd) << 7;
                put32(&mut b, 6, alloc_len);
                12
            }
            Self::Reserve { ten } => {
                b[0] = if ten { RESERVE_10 } else { RESERVE_6 };
                if ten { 10 } else { 6 }
            }
            Self::Release { ten } => {
                b[0] = if ten { RELEASE_10 } else { RELEASE_6 };
                if ten { 10 } else { 6 }
            }
            Self::PersistentReserveIn {
                service_action,
                alloc_len,
            } => {
                b[0] = PERSISTENT_RESERVE_IN;
                b[1] = service_action & 0x1F;
                put16(&mut b, 7, alloc_len);
                10
            }
            Self::PersistentReserveOut {
                service_action,
                scope,
                kind,
                param_len,
            } => {
                b[0] = PERSISTENT_RESERVE_OUT;
                b[1] = service_action & 0x1F;
                b[2] = (scope << 4) | (kind & 0x0F);
                put32(&mut b, 5, param_len);
                10
            }
            Self::Sanitize {
                immed,
                ause,
                service_action,
                param_len,
            } => {
                b[0] = SANITIZE;
                b[1] = (u8::from(immed) << 7) | (u8::from(ause) << 5) | (service_action & 0x1F);
                put16(&mut b, 7, param_len);
                10
            }
        };
        CdbBytes {
            bytes: b,
            len: len as u8,
        }
    }

    /// How the command moves data, and how many bytes the CDB asks for when the block size is
    /// `block_size` (the SCSI "transfer length" before the transport's expected length is
    /// applied). For allocation-length commands it is the allocation length (the device may send
    /// less).
    pub fn transfer(&self, block_size: u32) -> Transfer {
        let bs = u64::from(block_size);
        let blocks = |rw: &Rw| u64::from(rw.blocks) * bs;
        match *self {
            Self::Read(rw) => Transfer::In(blocks(&rw)),
            Self::Write(rw) | Self::OrWrite(rw) => Transfer::Out(blocks(&rw)),
            Self::WriteAtomic { rw, .. } => Transfer::Out(blocks(&rw)),
            Self::WriteAndVerify { rw, .. } => Transfer::Out(blocks(&rw)),
            Self::CompareAndWrite { rw } => Transfer::Out(2 * blocks(&rw)),
            Self::Verify { rw, bytchk } => match bytchk {
                0 => Transfer::None,
                3 => Transfer::Out(if rw.blocks == 0 { 0 } else { bs }),
                _ => Transfer::Out(blocks(&rw)),
            },
            Self::WriteSame { ndob, .. } => {
                if ndob {
                    Transfer::None
                } else {
                    Transfer::Out(bs)
                }
            }
            Self::Unmap { param_len, .. } => Transfer::Out(u64::from(param_len)),
            Self::ModeSelect { param_len, .. } => Transfer::Out(u64::from(param_len)),
            Self::PersistentReserveOut { param_len, .. } => Transfer::Out(u64::from(param_len)),
            Self::Sanitize { param_len, .. } => Transfer::Out(u64::from(param_len)),
            Self::RequestSense { alloc_len, .. } => Transfer::In(u64::from(alloc_len)),
            Self::Inquiry { alloc_len, .. } => Transfer::In(u64::from(alloc_len)),
            Self::ModeSense { alloc_len, .. } => Transfer::In(u64::from(alloc_len)),
            Self::PersistentReserveIn { alloc_len, .. } => Transfer::In(u64::from(alloc_len)),
            Self::ReadCapacity10 { .. } => Transfer::In(8),
            Self::ReadCapacity16 { alloc_len, .. }
            | Self::GetLbaStatus { alloc_len, .. }
            | Self::ReadDefectData { alloc_len, .. }
            | Self::ReportLuns { alloc_len, .. }
            | Self::ReportSupportedOpcodes { alloc_len, .. }
            | Self::ReportSupportedTmfs { alloc_len, .. } => Transfer::In(u64::from(alloc_len)),
            Self::TestUnitReady
            | Self::SynchronizeCache { .. }
            | Self::PreFetch { .. }
            | Self::StartStopUnit { .. }
            | Self::PreventAllow { .. }
            | Self::Reserve { .. }
            | Self::Release { .. } => Transfer::None,
        }
    }
}

/// SYNCHRONIZE CACHE and PRE-FETCH: LBA, block count and IMMED in a 10- or 16-byte CDB.
fn range_into(
    b: &mut [u8; 16],
    size: CdbSize,
    ops: [u8; 2],
    lba: u64,
    blocks: u32,
    immed: bool,
) -> usize {
    b[1] = u8::from(immed) << 1;
    if size == CdbSize::Sixteen {
        b[0] = ops[1];
        b[2..10].copy_from_slice(&lba.to_be_bytes());
        b[10..14].copy_from_slice(&blocks.to_be_bytes());
        16
    } else {
        b[0] = ops[0];
        b[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
        b[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
        10
    }
}

impl CdbSize {
    fn at_least_ten(self) -> Self {
        if self == Self::Six { Self::Ten } else { self }
    }
}

/// Direction and size of a command's data transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transfer {
    /// No data.
    None,
    /// Data from the device to the initiator, at most this many bytes.
    In(u64),
    /// Data from the initiator to the device, this many bytes.
    Out(u64),
}

impl Transfer {
    /// The byte count, whatever the direction.
    pub fn len(self) -> u64 {
        match self {
            Self::None => 0,
            Self::In(n) | Self::Out(n) => n,
        }
    }

    /// `true` when no byte moves.
    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sense::SenseKey;

    #[test]
    fn read10_layout() {
        let c = Cdb::Read(Rw {
            dpo: true,
            fua: true,
            group: 3,
            ..Rw::new(0x0102_0304, 0x0506)
        });
        let b = c.encode();
        assert_eq!(b.as_slice(), &[0x28, 0x18, 1, 2, 3, 4, 3, 5, 6, 0]);
        assert_eq!(Cdb::parse(b.as_slice()), Ok(c));
        assert_eq!(c.transfer(512), Transfer::In(0x506 * 512));
    }

    #[test]
    fn read6_zero_means_256() {
        let c = Cdb::parse(&[0x08, 0x1F, 0xFF, 0xFF, 0, 0]).unwrap();
        assert_eq!(
            c,
            Cdb::Read(Rw {
                size: CdbSize::Six,
                lba: 0x1F_FFFF,
                blocks: 256,
                protect: 0,
                dpo: false,
                fua: false,
                group: 0
            })
        );
        assert_eq!(c.encode().as_slice(), &[0x08, 0x1F, 0xFF, 0xFF, 0, 0]);
    }

    #[test]
    fn compare_and_write_and_atomic_lengths() {
        let c = Cdb::parse(&[0x89, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0]).unwrap();
        assert_eq!(c.transfer(512), Transfer::Out(2048));
        let a = Cdb::parse(&[0x9C, 0x08, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 4, 0, 0]).unwrap();
        let Cdb::WriteAtomic { rw, boundary } = a else {
            panic!("{a:?}")
        };
        assert_eq!((rw.lba, rw.blocks, rw.fua, boundary), (7, 4, true, 0));
        assert_eq!(
            a.encode().as_slice(),
            &[0x9C, 0x08, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 4, 0, 0]
        );
    }

    #[test]
    fn unknown_opcode_and_service_action() {
        let e = Cdb::parse(&[0xC0; 16]).unwrap_err();
        assert_eq!(
            (e.key, e.asc),
            (
                SenseKey::ILLEGAL_REQUEST,
                Asc::INVALID_COMMAND_OPERATION_CODE
            )
        );
        let e = Cdb::parse(&[0x9E, 0x1F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(e.asc, Asc::INVALID_FIELD_IN_CDB);
        assert_eq!(
            Cdb::parse(&[]).unwrap_err().asc,
            Asc::INVALID_COMMAND_OPERATION_CODE
        );
        assert_eq!(
            Cdb::parse(&[0x28, 0, 0]).unwrap_err().asc,
            Asc::INVALID_FIELD_IN_CDB
        );
    }

    #[test]
    fn naca_and_link_refused() {
        let e = Cdb::parse(&[0, 0, 0, 0, 0, 0x04]).unwrap_err();
        assert_eq!(e, Sense::invalid_cdb_field(5, Some(2)));
        let e = Cdb::parse(&[0, 0, 0, 0, 0, 0x01]).unwrap_err();
        assert_eq!(e, Sense::invalid_cdb_field(5, Some(0)));
    }

    #[test]
    fn sanitize_reserved_fields_refused() {
        let ok = [0x48, 0xA2, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(Cdb::parse(&ok).is_ok());
        let mut b = ok;
        b[1] |= 0x40;
        assert_eq!(Cdb::parse(&b), Err(Sense::invalid_cdb_field(1, Some(6))));
        for at in 2..=6 {
            let mut b = ok;
            b[at] = at as u8;
            assert_eq!(
                Cdb::parse(&b),
                Err(Sense::invalid_cdb_field(at as u16, None))
            );
        }
    }

    #[test]
    fn cdb_lengths_follow_group_codes() {
        for op in 0..=255u8 {
            let mut b = [0u8; 16];
            b[0] = op;
            if let Ok(c) = Cdb::parse(&b) {
                assert_eq!(Some(c.encode().len()), cdb_len(op), "opcode {op:#x}");
            }
        }
    }

    use proptest::prelude::*;

    proptest! {
        /// parse(encode(parse(bytes))) == parse(bytes): whatever parses re-encodes to bytes that
        /// parse to the same command.
        #[test]
        fn reparse_is_stable(mut bytes in proptest::collection::vec(any::<u8>(), 16)) {
            // Keep the CONTROL byte clear so most inputs parse.
            if let Some(n) = cdb_len(bytes[0]) {
                bytes[n - 1] = 0;
            }
            if let Ok(c) = Cdb::parse(&bytes) {
                let again = Cdb::parse(c.encode().as_slice());
                prop_assert_eq!(again, Ok(c));
            }
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = Cdb::parse(&bytes);
        }
    }
}
