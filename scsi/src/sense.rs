//! Status codes and sense data (SPC-4 §4.5), in fixed and descriptor formats.
//!
//! [`Sense`] is the typed form: a [`SenseKey`], an [`Asc`] (the additional sense code and its
//! qualifier), and the optional INFORMATION and SENSE-KEY SPECIFIC fields. [`Sense::encode`] writes
//! it in either format; [`Sense::parse`] reads both (an initiator decoding a target's answer).
//! The codes the emulation uses are named constants on [`Asc`].

use std::fmt;

/// SCSI status byte (SAM-5 §5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status(pub u8);

impl Status {
    /// The command completed.
    pub const GOOD: Self = Self(0x00);
    /// Sense data describes an error or exception.
    pub const CHECK_CONDITION: Self = Self(0x02);
    /// PRE-FETCH: the range fits the cache.
    pub const CONDITION_MET: Self = Self(0x04);
    /// The logical unit is busy; retry later.
    pub const BUSY: Self = Self(0x08);
    /// A reservation held by another I_T nexus forbids this command.
    pub const RESERVATION_CONFLICT: Self = Self(0x18);
    /// The task set is full.
    pub const TASK_SET_FULL: Self = Self(0x28);
    /// An ACA condition exists.
    pub const ACA_ACTIVE: Self = Self(0x30);
    /// The command was aborted by another I_T nexus.
    pub const TASK_ABORTED: Self = Self(0x40);
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Self::GOOD => "GOOD",
            Self::CHECK_CONDITION => "CHECK CONDITION",
            Self::CONDITION_MET => "CONDITION MET",
            Self::BUSY => "BUSY",
            Self::RESERVATION_CONFLICT => "RESERVATION CONFLICT",
            Self::TASK_SET_FULL => "TASK SET FULL",
            Self::ACA_ACTIVE => "ACA ACTIVE",
            Self::TASK_ABORTED => "TASK ABORTED",
            Self(other) => return write!(f, "status 0x{other:02x}"),
        };
        f.write_str(name)
    }
}

/// Sense key (SPC-4 table 27).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SenseKey(pub u8);

impl SenseKey {
    /// No specific sense key information.
    pub const NO_SENSE: Self = Self(0x0);
    /// The command completed with recovery action.
    pub const RECOVERED_ERROR: Self = Self(0x1);
    /// The logical unit is not accessible.
    pub const NOT_READY: Self = Self(0x2);
    /// A flaw in the medium or the recorded data.
    pub const MEDIUM_ERROR: Self = Self(0x3);
    /// A non-recoverable hardware failure.
    pub const HARDWARE_ERROR: Self = Self(0x4);
    /// An illegal parameter in the CDB or in the parameter data.
    pub const ILLEGAL_REQUEST: Self = Self(0x5);
    /// A unit attention condition was reported.
    pub const UNIT_ATTENTION: Self = Self(0x6);
    /// Access to a protected block was refused.
    pub const DATA_PROTECT: Self = Self(0x7);
    /// A write-once device found blank or non-blank medium.
    pub const BLANK_CHECK: Self = Self(0x8);
    /// Vendor specific.
    pub const VENDOR_SPECIFIC: Self = Self(0x9);
    /// A copy command was aborted.
    pub const COPY_ABORTED: Self = Self(0xA);
    /// The device server aborted the command.
    pub const ABORTED_COMMAND: Self = Self(0xB);
    /// A buffered device reached the end of the partition.
    pub const VOLUME_OVERFLOW: Self = Self(0xD);
    /// Source data did not match the data on the medium.
    pub const MISCOMPARE: Self = Self(0xE);
    /// Completed (used with descriptor-format sense only).
    pub const COMPLETED: Self = Self(0xF);
}

/// Additional sense code and qualifier (SPC-4 table 28), as `(asc << 8) | ascq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Asc(pub u16);

impl Asc {
    /// Builds from separate ASC and ASCQ bytes.
    pub const fn new(asc: u8, ascq: u8) -> Self {
        Self(((asc as u16) << 8) | ascq as u16)
    }
    /// The ADDITIONAL SENSE CODE byte.
    pub const fn asc(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// The ADDITIONAL SENSE CODE QUALIFIER byte.
    pub const fn ascq(self) -> u8 {
        self.0 as u8
    }

    /// 00/00 NO ADDITIONAL SENSE INFORMATION.
    pub const NO_ADDITIONAL_SENSE: Self = Self(0x0000);
    /// 04/02 LOGICAL UNIT NOT READY, INITIALIZING COMMAND REQUIRED (stopped by START STOP UNIT).
    pub const NOT_READY_INIT_REQUIRED: Self = Self(0x0402);
    /// 04/1B LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS.
    pub const SANITIZE_IN_PROGRESS: Self = Self(0x041B);
    /// 0C/00 WRITE ERROR.
    pub const WRITE_ERROR: Self = Self(0x0C00);
    /// 0E/03 INVALID FIELD IN COMMAND INFORMATION UNIT (data length does not match the CDB).
    pub const INVALID_FIELD_IN_COMMAND_IU: Self = Self(0x0E03);
    /// 11/00 UNRECOVERED READ ERROR.
    pub const UNRECOVERED_READ_ERROR: Self = Self(0x1100);
    /// 1A/00 PARAMETER LIST LENGTH ERROR.
    pub const PARAMETER_LIST_LENGTH_ERROR: Self = Self(0x1A00);
    /// 1D/00 MISCOMPARE DURING VERIFY OPERATION.
    pub const MISCOMPARE_DURING_VERIFY: Self = Self(0x1D00);
    /// 20/00 INVALID COMMAND OPERATION CODE.
    pub const INVALID_COMMAND_OPERATION_CODE: Self = Self(0x2000);
    /// 21/00 LOGICAL BLOCK ADDRESS OUT OF RANGE.
    pub const LBA_OUT_OF_RANGE: Self = Self(0x2100);
    /// 24/00 INVALID FIELD IN CDB.
    pub const INVALID_FIELD_IN_CDB: Self = Self(0x2400);
    /// 25/00 LOGICAL UNIT NOT SUPPORTED.
    pub const LOGICAL_UNIT_NOT_SUPPORTED: Self = Self(0x2500);
    /// 26/00 INVALID FIELD IN PARAMETER LIST.
    pub const INVALID_FIELD_IN_PARAMETER_LIST: Self = Self(0x2600);
    /// 26/01 PARAMETER NOT SUPPORTED.
    pub const PARAMETER_NOT_SUPPORTED: Self = Self(0x2601);
    /// 26/02 PARAMETER VALUE INVALID.
    pub const PARAMETER_VALUE_INVALID: Self = Self(0x2602);
    /// 27/00 WRITE PROTECTED.
    pub const WRITE_PROTECTED: Self = Self(0x2700);
    /// 27/02 SOFTWARE WRITE PROTECTED.
    pub const SOFTWARE_WRITE_PROTECTED: Self = Self(0x2702);
    /// 28/00 NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED.
    pub const NOT_READY_TO_READY_CHANGE: Self = Self(0x2800);
    /// 29/00 POWER ON, RESET, OR BUS DEVICE RESET OCCURRED.
    pub const POWER_ON_RESET: Self = Self(0x2900);
    /// 29/01 POWER ON OCCURRED.
    pub const POWER_ON_OCCURRED: Self = Self(0x2901);
    /// 29/02 SCSI BUS RESET OCCURRED (used for a target warm reset).
    pub const BUS_RESET_OCCURRED: Self = Self(0x2902);
    /// 29/03 BUS DEVICE RESET FUNCTION OCCURRED (LOGICAL UNIT RESET).
    pub const BUS_DEVICE_RESET_OCCURRED: Self = Self(0x2903);
    /// 29/07 I_T NEXUS LOSS OCCURRED.
    pub const IT_NEXUS_LOSS: Self = Self(0x2907);
    /// 2A/01 MODE PARAMETERS CHANGED.
    pub const MODE_PARAMETERS_CHANGED: Self = Self(0x2A01);
    /// 2A/03 RESERVATIONS PREEMPTED.
    pub const RESERVATIONS_PREEMPTED: Self = Self(0x2A03);
    /// 2A/04 RESERVATIONS RELEASED.
    pub const RESERVATIONS_RELEASED: Self = Self(0x2A04);
    /// 2A/05 REGISTRATIONS PREEMPTED.
    pub const REGISTRATIONS_PREEMPTED: Self = Self(0x2A05);
    /// 2A/09 CAPACITY DATA HAS CHANGED.
    pub const CAPACITY_DATA_CHANGED: Self = Self(0x2A09);
    /// 2C/00 COMMAND SEQUENCE ERROR.
    pub const COMMAND_SEQUENCE_ERROR: Self = Self(0x2C00);
    /// 3A/00 MEDIUM NOT PRESENT.
    pub const MEDIUM_NOT_PRESENT: Self = Self(0x3A00);
    /// 3F/0E REPORTED LUNS DATA HAS CHANGED.
    pub const REPORTED_LUNS_CHANGED: Self = Self(0x3F0E);
    /// 44/00 INTERNAL TARGET FAILURE.
    pub const INTERNAL_TARGET_FAILURE: Self = Self(0x4400);
    /// 53/02 MEDIUM REMOVAL PREVENTED.
    pub const MEDIUM_REMOVAL_PREVENTED: Self = Self(0x5302);
    /// 55/03 INSUFFICIENT RESOURCES.
    pub const INSUFFICIENT_RESOURCES: Self = Self(0x5503);
    /// 55/04 INSUFFICIENT REGISTRATION RESOURCES.
    pub const INSUFFICIENT_REGISTRATION_RESOURCES: Self = Self(0x5504);
}

impl SenseKey {
    /// The sense key's SPC-4 name (`"ILLEGAL REQUEST"`...).
    pub const fn name(self) -> &'static str {
        match self.0 {
            0x0 => "NO SENSE",
            0x1 => "RECOVERED ERROR",
            0x2 => "NOT READY",
            0x3 => "MEDIUM ERROR",
            0x4 => "HARDWARE ERROR",
            0x5 => "ILLEGAL REQUEST",
            0x6 => "UNIT ATTENTION",
            0x7 => "DATA PROTECT",
            0x8 => "BLANK CHECK",
            0x9 => "VENDOR SPECIFIC",
            0xA => "COPY ABORTED",
            0xB => "ABORTED COMMAND",
            0xD => "VOLUME OVERFLOW",
            0xE => "MISCOMPARE",
            0xF => "COMPLETED",
            _ => "RESERVED SENSE KEY",
        }
    }
}

impl Asc {
    /// Words for the common additional sense codes (SPC-4 table 28), `None` for others.
    pub const fn description(self) -> Option<&'static str> {
        Some(match (self.asc(), self.ascq()) {
            (0x00, 0x00) => "no additional sense information",
            (0x04, 0x02) => "logical unit not ready, initializing command required",
            (0x04, 0x1B) => "logical unit not ready, sanitize in progress",
            (0x04, _) => "logical unit not ready",
            (0x0C, 0x00) => "write error",
            (0x0E, 0x03) => "invalid field in command information unit",
            (0x11, 0x00) => "unrecovered read error",
            (0x1A, 0x00) => "parameter list length error",
            (0x1D, 0x00) => "miscompare during verify operation",
            (0x20, 0x00) => "invalid command operation code",
            (0x21, 0x00) => "logical block address out of range",
            (0x24, 0x00) => "invalid field in CDB",
            (0x25, 0x00) => "logical unit not supported",
            (0x26, 0x00) => "invalid field in parameter list",
            (0x26, 0x01) => "parameter not supported",
            (0x26, 0x02) => "parameter value invalid",
            (0x27, _) => "write protected",
            (0x28, 0x00) => "not ready to ready change, medium may have changed",
            (0x29, 0x07) => "I_T nexus loss occurred",
            (0x29, _) => "power on, reset or bus device reset occurred",
            (0x2A, 0x01) => "mode parameters changed",
            (0x2A, 0x03) => "reservations preempted",
            (0x2A, 0x04) => "reservations released",
            (0x2A, 0x05) => "registrations preempted",
            (0x2A, 0x09) => "capacity data has changed",
            (0x2A, _) => "parameters changed",
            (0x2C, 0x00) => "command sequence error",
            (0x3A, _) => "medium not present",
            (0x3F, 0x0E) => "reported LUNs data has changed",
            (0x44, 0x00) => "internal target failure",
            (0x47, _) => "SCSI parity or protocol service CRC error",
            (0x53, 0x02) => "medium removal prevented",
            (0x55, 0x03) => "insufficient resources",
            (0x55, 0x04) => "insufficient registration resources",
            _ => return None,
        })
    }
}

impl fmt::Display for Asc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}/{:02x}", self.asc(), self.ascq())
    }
}

/// Which sense data format to build (SPC-4 §4.5.1): the control mode page's D_SENSE bit picks it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SenseFormat {
    /// Fixed format, response code 70h/71h (18 bytes).
    #[default]
    Fixed,
    /// Descriptor format, response code 72h/73h.
    Descriptor,
}

/// The SENSE-KEY SPECIFIC field (SPC-4 §4.5.2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SenseKeySpecific {
    /// Points at the byte (and optionally bit) that holds the bad value.
    FieldPointer {
        /// `true` when the field is in the CDB, `false` when in the parameter data.
        in_cdb: bool,
        /// Bit within the byte, if meaningful (0..=7).
        bit: Option<u8>,
        /// Byte offset of the field.
        byte: u16,
    },
    /// Progress indication for NOT READY (e.g. sanitize in progress): a fraction of 65536.
    Progress(u16),
    /// The raw three bytes (SKSV set), for kinds this crate does not model.
    Raw([u8; 3]),
}

impl SenseKeySpecific {
    fn to_bytes(self) -> [u8; 3] {
        match self {
            Self::FieldPointer { in_cdb, bit, byte } => {
                let mut b0 = 0x80;
                if in_cdb {
                    b0 |= 0x40;
                }
                if let Some(bit) = bit {
                    b0 |= 0x08 | (bit & 7);
                }
                let [hi, lo] = byte.to_be_bytes();
                [b0, hi, lo]
            }
            Self::Progress(p) => {
                let [hi, lo] = p.to_be_bytes();
                [0x80, hi, lo]
            }
            Self::Raw(r) => [r[0] | 0x80, r[1], r[2]],
        }
    }

    fn from_bytes(key: SenseKey, b: [u8; 3]) -> Option<Self> {
        if b[0] & 0x80 == 0 {
            return None;
        }
        Some(match key {
            SenseKey::ILLEGAL_REQUEST => Self::FieldPointer {
                in_cdb: b[0] & 0x40 != 0,
                bit: (b[0] & 0x08 != 0).then_some(b[0] & 7),
                byte: u16::from_be_bytes([b[1], b[2]]),
            },
            SenseKey::NOT_READY | SenseKey::NO_SENSE => {
                Self::Progress(u16::from_be_bytes([b[1], b[2]]))
            }
            _ => Self::Raw(b),
        })
    }
}

/// Sense data, typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Sense {
    /// The sense key.
    pub key: SenseKey,
    /// Additional sense code and qualifier.
    pub asc: Asc,
    /// The INFORMATION field (for example the first LBA that failed), when valid.
    pub information: Option<u64>,
    /// The SENSE-KEY SPECIFIC field, when valid.
    pub specific: Option<SenseKeySpecific>,
    /// Deferred error (response code 71h/73h) rather than current (70h/72h).
    pub deferred: bool,
}

/// Why bytes could not be read as sense data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SenseParseError {
    /// Fewer bytes than the format's fixed part.
    #[error("sense data is truncated ({0} bytes)")]
    Truncated(usize),
    /// The response code is none of 70h..73h.
    #[error("unknown sense response code 0x{0:02x}")]
    UnknownResponseCode(u8),
}

impl Sense {
    /// Sense with a key and code only.
    pub const fn new(key: SenseKey, asc: Asc) -> Self {
        Self {
            key,
            asc,
            information: None,
            specific: None,
            deferred: false,
        }
    }

    /// ILLEGAL REQUEST sense.
    pub const fn illegal(asc: Asc) -> Self {
        Self::new(SenseKey::ILLEGAL_REQUEST, asc)
    }

    /// ILLEGAL REQUEST / INVALID FIELD IN CDB, pointing at `byte` (and `bit`) of the CDB.
    pub const fn invalid_cdb_field(byte: u16, bit: Option<u8>) -> Self {
        Self::illegal(Asc::INVALID_FIELD_IN_CDB).with_specific(SenseKeySpecific::FieldPointer {
            in_cdb: true,
            bit,
            byte,
        })
    }

    /// ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST, pointing at `byte` of the parameter data.
    pub const fn invalid_param_field(byte: u16, bit: Option<u8>) -> Self {
        Self::illegal(Asc::INVALID_FIELD_IN_PARAMETER_LIST).with_specific(
            SenseKeySpecific::FieldPointer {
                in_cdb: false,
                bit,
                byte,
            },
        )
    }

    /// UNIT ATTENTION sense with the given code.
    pub const fn unit_attention(asc: Asc) -> Self {
        Self::new(SenseKey::UNIT_ATTENTION, asc)
    }

    /// Sets the INFORMATION field.
    #[must_use]
    pub const fn with_information(mut self, information: u64) -> Self {
        self.information = Some(information);
        self
    }

    /// Sets the SENSE-KEY SPECIFIC field.
    #[must_use]
    pub const fn with_specific(mut self, specific: SenseKeySpecific) -> Self {
        self.specific = Some(specific);
        self
    }

    /// Appends the encoded sense data to `out` and returns its length.
    ///
    /// Fixed format holds a 32-bit INFORMATION field: a larger value is stored only in descriptor
    /// format, and fixed format then leaves the VALID bit clear (SPC-4 §4.5.3).
    pub fn encode(&self, format: SenseFormat, out: &mut Vec<u8>) -> usize {
        let start = out.len();
        match format {
            SenseFormat::Fixed => {
                let mut b = [0u8; 18];
                b[0] = if self.deferred { 0x71 } else { 0x70 };
                if let Some(info) = self.information.and_then(|i| u32::try_from(i).ok()) {
                    b[0] |= 0x80;
                    b[3..7].copy_from_slice(&info.to_be_bytes());
                }
                b[2] = self.key.0 & 0x0F;
                b[7] = 10;
                b[12] = self.asc.asc();
                b[13] = self.asc.ascq();
                if let Some(s) = self.specific {
                    b[15..18].copy_from_slice(&s.to_bytes());
                }
                out.extend_from_slice(&b);
            }
            SenseFormat::Descriptor => {
                out.extend_from_slice(&[
                    if self.deferred { 0x73 } else { 0x72 },
                    self.key.0 & 0x0F,
                    self.asc.asc(),
                    self.asc.ascq(),
                    0,
                    0,
                    0,
                    0,
                ]);
                if let Some(info) = self.information {
                    out.extend_from_slice(&[0x00, 0x0A, 0x80, 0]);
                    out.extend_from_slice(&info.to_be_bytes());
                }
                if let Some(s) = self.specific {
                    out.extend_from_slice(&[0x02, 0x06, 0, 0]);
                    out.extend_from_slice(&s.to_bytes());
                    out.push(0);
                }
                let added = out.len() - start - 8;
                out[start + 7] = added as u8;
            }
        }
        out.len() - start
    }

    /// The encoded sense data as a new vector.
    pub fn to_vec(&self, format: SenseFormat) -> Vec<u8> {
        let mut v = Vec::with_capacity(32);
        self.encode(format, &mut v);
        v
    }

    /// Reads sense data in either format. Unknown descriptors are skipped; a truncated
    /// additional-length is tolerated by reading what is present.
    pub fn parse(b: &[u8]) -> Result<Self, SenseParseError> {
        let code = *b.first().ok_or(SenseParseError::Truncated(0))?;
        match code & 0x7F {
            0x70 | 0x71 => {
                if b.len() < 14 {
                    return Err(SenseParseError::Truncated(b.len()));
                }
                let key = SenseKey(b[2] & 0x0F);
                let information = (code & 0x80 != 0)
                    .then(|| u64::from(u32::from_be_bytes([b[3], b[4], b[5], b[6]])));
                let specific = if b.len() >= 18 {
                    SenseKeySpecific::from_bytes(key, [b[15], b[16], b[17]])
                } else {
                    None
                };
                Ok(Self {
                    key,
                    asc: Asc::new(b[12], b[13]),
                    information,
                    specific,
                    deferred: code & 0x7F == 0x71,
                })
            }
            0x72 | 0x73 => {
                if b.len() < 8 {
                    return Err(SenseParseError::Truncated(b.len()));
                }
                let key = SenseKey(b[1] & 0x0F);
                let mut sense = Self::new(key, Asc::new(b[2], b[3]));
                sense.deferred = code & 0x7F == 0x73;
                let end = b.len().min(8 + usize::from(b[7]));
                let mut at = 8;
                while at + 2 <= end {
                    let kind = b[at];
                    let len = usize::from(b[at + 1]);
                    let Some(d) = b.get(at + 2..at + 2 + len) else {
                        break;
                    };
                    match kind {
                        0x00 if len >= 10 && d[0] & 0x80 != 0 => {
                            let mut v = [0u8; 8];
                            v.copy_from_slice(&d[2..10]);
                            sense.information = Some(u64::from_be_bytes(v));
                        }
                        0x02 if len >= 5 => {
                            sense.specific = SenseKeySpecific::from_bytes(key, [d[2], d[3], d[4]]);
                        }
                        _ => {}
                    }
                    at += 2 + len;
                }
                Ok(sense)
            }
            other => Err(SenseParseError::UnknownResponseCode(other)),
        }
    }
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sense key 0x{:x}, asc/ascq {}", self.key.0, self.asc)?;
        if let Some(i) = self.information {
            write!(f, ", information {i}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_layout() {
        let s = Sense::illegal(Asc::LBA_OUT_OF_RANGE).with_information(0x1234);
        let b = s.to_vec(SenseFormat::Fixed);
        assert_eq!(b.len(), 18);
        assert_eq!(b[0], 0xF0);
        assert_eq!(b[2], 0x05);
        assert_eq!(&b[3..7], &[0, 0, 0x12, 0x34]);
        assert_eq!(b[7], 10);
        assert_eq!((b[12], b[13]), (0x21, 0x00));
        assert_eq!(Sense::parse(&b), Ok(s));
    }

    #[test]
    fn descriptor_layout_and_roundtrip() {
        let s = Sense::invalid_cdb_field(2, Some(3)).with_information(1 << 40);
        let b = s.to_vec(SenseFormat::Descriptor);
        assert_eq!(b[0], 0x72);
        assert_eq!(b[1], 0x05);
        assert_eq!((b[2], b[3]), (0x24, 0x00));
        assert_eq!(usize::from(b[7]), b.len() - 8);
        assert_eq!(&b[8..12], &[0x00, 0x0A, 0x80, 0x00]);
        assert_eq!(&b[20..23], &[0x02, 0x06, 0x00]);
        assert_eq!(&b[24..27], &[0x80 | 0x40 | 0x08 | 3, 0, 2]);
        assert_eq!(Sense::parse(&b), Ok(s));
    }

    #[test]
    fn fixed_drops_an_information_field_it_cannot_hold() {
        let s = Sense::new(SenseKey::MEDIUM_ERROR, Asc::UNRECOVERED_READ_ERROR)
            .with_information(u64::from(u32::MAX) + 1);
        let b = s.to_vec(SenseFormat::Fixed);
        assert_eq!(b[0], 0x70, "VALID must stay clear");
        assert_eq!(Sense::parse(&b).unwrap().information, None);
    }

    #[test]
    fn parse_refuses_garbage_without_panicking() {
        assert_eq!(Sense::parse(&[]), Err(SenseParseError::Truncated(0)));
        assert_eq!(
            Sense::parse(&[0x70, 0, 5]),
            Err(SenseParseError::Truncated(3))
        );
        assert_eq!(
            Sense::parse(&[0x12; 20]),
            Err(SenseParseError::UnknownResponseCode(0x12))
        );
        // Descriptor whose length runs past the buffer: stops quietly.
        let mut b = Sense::illegal(Asc::INVALID_FIELD_IN_CDB).to_vec(SenseFormat::Descriptor);
        b.extend_from_slice(&[0x00, 0xFF, 0x80]);
        b[7] = 0xFF;
        assert_eq!(Sense::parse(&b).unwrap().asc, Asc::INVALID_FIELD_IN_CDB);
    }
}
