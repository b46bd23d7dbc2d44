//! SCSI Command and SCSI Response (RFC 7143 §11.3, §11.4), with the command's additional header
//! segments (extended CDB, bidirectional expected read length; §11.2.2).

use bytes::{BufMut, Bytes, BytesMut};
use nom::Parser;
use nom::number::complete::{be_u8, be_u16};

use super::{BHS_LEN, Bhs, EncodeError, Lun, Opcode, PduBody, PduError, pad4, refuse};
use crate::serial::{CmdSn, DataSn, Itt, StatSn};

/// SCSI task attribute (ATTR field of the SCSI Command, SAM).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum TaskAttribute {
    /// 0: untagged.
    Untagged = 0,
    /// 1: simple.
    #[default]
    Simple = 1,
    /// 2: ordered.
    Ordered = 2,
    /// 3: head of queue.
    HeadOfQueue = 3,
    /// 4: ACA.
    Aca = 4,
}

impl TaskAttribute {
    /// Decodes the 3-bit field; 5-7 are reserved.
    pub const fn from_bits(v: u8) -> Option<Self> {
        Some(match v {
            0 => Self::Untagged,
            1 => Self::Simple,
            2 => Self::Ordered,
            3 => Self::HeadOfQueue,
            4 => Self::Aca,
            _ => return None,
        })
    }
}

/// SCSI status byte (SAM). Open: any value is representable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ScsiStatus(pub u8);

impl ScsiStatus {
    /// GOOD.
    pub const GOOD: ScsiStatus = ScsiStatus(0x00);
    /// CHECK CONDITION (sense data follows).
    pub const CHECK_CONDITION: ScsiStatus = ScsiStatus(0x02);
    /// CONDITION MET.
    pub const CONDITION_MET: ScsiStatus = ScsiStatus(0x04);
    /// BUSY.
    pub const BUSY: ScsiStatus = ScsiStatus(0x08);
    /// RESERVATION CONFLICT.
    pub const RESERVATION_CONFLICT: ScsiStatus = ScsiStatus(0x18);
    /// TASK SET FULL.
    pub const TASK_SET_FULL: ScsiStatus = ScsiStatus(0x28);
    /// ACA ACTIVE.
    pub const ACA_ACTIVE: ScsiStatus = ScsiStatus(0x30);
    /// TASK ABORTED.
    pub const TASK_ABORTED: ScsiStatus = ScsiStatus(0x40);
}

/// iSCSI service response of a SCSI Response (RFC 7143 §11.4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ServiceResponse(pub u8);

impl ServiceResponse {
    /// 0x00: command completed at target (the status byte is valid).
    pub const COMPLETED: ServiceResponse = ServiceResponse(0x00);
    /// 0x01: target failure.
    pub const TARGET_FAILURE: ServiceResponse = ServiceResponse(0x01);
}

/// AHS type codes (RFC 7143 §11.2.2.1).
const AHS_EXTENDED_CDB: u8 = 1;
const AHS_BIDI_READ_LEN: u8 = 2;

/// SCSI Command.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ScsiCommand {
    /// I bit: immediate delivery.
    pub immediate: bool,
    /// F bit: no unsolicited Data-Out follows this PDU.
    pub final_: bool,
    /// R bit: data is expected from the target.
    pub read: bool,
    /// W bit: data is expected from the initiator.
    pub write: bool,
    /// Task attribute.
    pub attr: TaskAttribute,
    /// Logical Unit Number.
    pub lun: Lun,
    /// Initiator Task Tag.
    pub itt: Itt,
    /// Expected Data Transfer Length (for bidirectional commands, the write length).
    pub expected_data_len: u32,
    /// CmdSN.
    pub cmd_sn: CmdSn,
    /// ExpStatSN.
    pub exp_stat_sn: StatSn,
    /// The first 16 bytes of the CDB (zero padded for shorter CDBs).
    pub cdb: [u8; 16],
    /// CDB bytes beyond the first 16 (Extended CDB AHS), if any.
    pub extended_cdb: Option<Bytes>,
    /// Bidirectional Read Expected Data Transfer Length (AHS), if any.
    pub bidi_read_len: Option<u32>,
    /// Immediate data.
    pub data: Bytes,
}

impl ScsiCommand {
    /// A command for the given CDB of up to 16 bytes (longer CDBs: set `extended_cdb`).
    /// Returns `None` if `cdb` is longer than 16 bytes.
    pub fn with_cdb(cdb: &[u8]) -> Option<Self> {
        let mut c = ScsiCommand {
            final_: true,
            ..Default::default()
        };
        c.cdb.get_mut(..cdb.len())?.copy_from_slice(cdb);
        Some(c)
    }

    fn parse_ahs(ahs: &Bytes, cmd: &mut ScsiCommand) -> Result<(), PduError> {
        let mut off = 0usize;
        while off < ahs.len() {
            let at = BHS_LEN + off;
            let rest = &ahs[off..];
            let (_, (len, ty)) = (be_u16::<_, nom::error::Error<&[u8]>>, be_u8)
                .parse(rest)
                .map_err(|_| PduError::BadAhs {
                    offset: at,
                    reason: "AHS header truncated",
                })?;
            let total = pad4(3 + len as usize);
            let body = ahs
                .get(off + 3..off + 3 + len as usize)
                .ok_or(PduError::BadAhs {
                    offset: at,
                    reason: "AHSLength beyond TotalAHSLength",
                })?;
            if total > rest.len() {
                return Err(PduError::BadAhs {
                    offset: at,
                    reason: "AHS padding beyond TotalAHSLength",
                });
            }
            match ty & 0x3f {
                AHS_EXTENDED_CDB => {
                    if cmd.extended_cdb.is_some() || len < 2 {
                        return Err(PduError::BadAhs {
                            offset: at,
                            reason: "duplicate or empty extended CDB AHS",
                        });
                    }
                    // body[0] is reserved.
                    cmd.extended_cdb = Some(ahs.slice(off + 4..off + 3 + len as usize));
                }
                AHS_BIDI_READ_LEN => {
                    if cmd.bidi_read_len.is_some() || len != 5 {
                        return Err(PduError::BadAhs {
                            offset: at,
                            reason: "duplicate or malformed bidirectional read length AHS",
                        });
                    }
                    cmd.bidi_read_len =
                        Some(u32::from_be_bytes([body[1], body[2], body[3], body[4]]));
                }
                // Non-iSCSI extensions: ignored.
                60..=63 => {}
                _ => {
                    return Err(PduError::BadAhs {
                        offset: at,
                        reason: "reserved AHS type",
                    });
                }
            }
            off += total;
        }
        Ok(())
    }
}

impl PduBody for ScsiCommand {
    const OPCODE: Opcode = Opcode::SCSI_COMMAND;

    fn decode(h: &Bhs, ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        let attr = TaskAttribute::from_bits(h.flags & 0x07).ok_or(PduError::InvalidField {
            opcode: Self::OPCODE,
            field: "ATTR",
            offset: 1,
            value: (h.flags & 0x07) as u32,
        })?;
        let mut cdb = [0u8; 16];
        for (i, w) in h.w[3..7].iter().enumerate() {
            cdb[i * 4..i * 4 + 4].copy_from_slice(&w.to_be_bytes());
        }
        let mut cmd = ScsiCommand {
            immediate: h.immediate,
            final_: h.flags & 0x80 != 0,
            read: h.flags & 0x40 != 0,
            write: h.flags & 0x20 != 0,
            attr,
            lun: Lun(h.lun),
            itt: Itt(h.itt),
            expected_data_len: h.w[0],
            cmd_sn: CmdSn(h.w[1]),
            exp_stat_sn: StatSn(h.w[2]),
            cdb,
            extended_cdb: None,
            bidi_read_len: None,
            data,
        };
        Self::parse_ahs(ahs, &mut cmd)?;
        Ok(cmd)
    }

    fn fill(&self, h: &mut Bhs) {
        h.immediate = self.immediate;
        h.flags = (self.final_ as u8) << 7
            | (self.read as u8) << 6
            | (self.write as u8) << 5
            | self.attr as u8;
        h.lun = self.lun.0;
        h.itt = self.itt.0;
        h.w[0] = self.expected_data_len;
        h.w[1] = self.cmd_sn.0;
        h.w[2] = self.exp_stat_sn.0;
        for i in 0..4 {
            let c = &self.cdb;
            h.w[3 + i] = u32::from_be_bytes([c[i * 4], c[i * 4 + 1], c[i * 4 + 2], c[i * 4 + 3]]);
        }
    }

    fn check(&self) -> Result<(), EncodeError> {
        match &self.extended_cdb {
            Some(e) if e.is_empty() => refuse("Extended CDB", "empty (leave it None)"),
            _ => Ok(()),
        }
    }

    fn data(&self) -> &Bytes {
        &self.data
    }

    fn ahs_len(&self) -> usize {
        let ext = self.extended_cdb.as_ref().map_or(0, |e| pad4(4 + e.len()));
        let bidi = if self.bidi_read_len.is_some() { 8 } else { 0 };
        ext + bidi
    }

    fn write_ahs(&self, dst: &mut BytesMut) {
        if let Some(ext) = &self.extended_cdb {
            // AHSLength counts the reserved byte and the CDB bytes; it saturates for absurd
            // lengths, which `Pdu::encode` refuses before calling this (1020-byte AHS limit).
            let len = u16::try_from(ext.len() + 1).unwrap_or(u16::MAX);
            dst.put_u16(len);
            dst.put_u8(AHS_EXTENDED_CDB);
            dst.put_u8(0);
            dst.put_slice(ext);
            dst.put_bytes(0, pad4(4 + ext.len()) - 4 - ext.len());
        }
        if let Some(n) = self.bidi_read_len {
            dst.put_u16(5);
            dst.put_u8(AHS_BIDI_READ_LEN);
            dst.put_u8(0);
            dst.put_u32(n);
        }
    }
}

/// SCSI Response.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ScsiResponse {
    /// o bit: bidirectional read residual overflow.
    pub bidi_overflow: bool,
    /// u bit: bidirectional read residual underflow.
    pub bidi_underflow: bool,
    /// O bit: residual overflow.
    pub overflow: bool,
    /// U bit: residual underflow.
    pub underflow: bool,
    /// iSCSI service response.
    pub response: ServiceResponse,
    /// SCSI status (valid when `response` is COMPLETED).
    pub status: ScsiStatus,
    /// Initiator Task Tag.
    pub itt: Itt,
    /// SNACK Tag.
    pub snack_tag: u32,
    /// StatSN.
    pub stat_sn: StatSn,
    /// ExpCmdSN.
    pub exp_cmd_sn: CmdSn,
    /// MaxCmdSN.
    pub max_cmd_sn: CmdSn,
    /// ExpDataSN: number of Data-In (and R2T) PDUs the target sent for the command.
    pub exp_data_sn: DataSn,
    /// Bidirectional Read Residual Count.
    pub bidi_residual_count: u32,
    /// Residual Count.
    pub residual_count: u32,
    /// Data segment: SenseLength (2 bytes), sense data, then response data.
    pub data: Bytes,
}

impl ScsiResponse {
    /// The sense data inside the data segment, if any (bounded by the segment).
    pub fn sense(&self) -> Option<Bytes> {
        let d = &self.data;
        let len = u16::from_be_bytes([*d.first()?, *d.get(1)?]) as usize;
        if len == 0 {
            return None;
        }
        let end = (2 + len).min(d.len());
        Some(d.slice(2..end))
    }

    /// Builds the data segment for the given sense data (SenseLength + sense). Sense data longer
    /// than 65535 bytes is cut (SPC limits sense data to 252 bytes anyway).
    pub fn sense_segment(sense: &[u8]) -> Bytes {
        let sense = &sense[..sense.len().min(u16::MAX as usize)];
        let mut b = BytesMut::with_capacity(2 + sense.len());
        b.put_u16(sense.len() as u16);
        b.put_slice(sense);
        b.freeze()
    }
}

impl PduBody for ScsiResponse {
    const OPCODE: Opcode = Opcode::SCSI_RESPONSE;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        let f = h.flags;
        let invalid = |field, offset, value: u8| PduError::InvalidField {
            opcode: Self::OPCODE,
            field,
            offset,
            value: value as u32,
        };
        if f & 0x06 == 0x06 {
            return Err(invalid("O and U bits", 1, f));
        }
        if f & 0x18 == 0x18 {
            return Err(invalid("o and u bits", 1, f));
        }
        if (0x02..0x80).contains(&h.b2) {
            return Err(invalid("Response", 2, h.b2));
        }
        Ok(ScsiResponse {
            bidi_overflow: f & 0x10 != 0,
            bidi_underflow: f & 0x08 != 0,
            overflow: f & 0x04 != 0,
            underflow: f & 0x02 != 0,
            response: ServiceResponse(h.b2),
            status: ScsiStatus(h.b3),
            itt: Itt(h.itt),
            snack_tag: h.w[0],
            stat_sn: StatSn(h.w[1]),
            exp_cmd_sn: CmdSn(h.w[2]),
            max_cmd_sn: CmdSn(h.w[3]),
            exp_data_sn: DataSn(h.w[4]),
            bidi_residual_count: h.w[5],
            residual_count: h.w[6],
            data,
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.flags = 0x80
            | (self.bidi_overflow as u8) << 4
            | (self.bidi_underflow as u8) << 3
            | (self.overflow as u8) << 2
            | (self.underflow as u8) << 1;
        h.b2 = self.response.0;
        h.b3 = self.status.0;
        h.itt = self.itt.0;
        h.w = [
            self.snack_tag,
            self.stat_sn.0,
            self.exp_cmd_sn.0,
            self.max_cmd_sn.0,
            self.exp_data_sn.0,
            self.bidi_residual_count,
            self.residual_count,
        ];
    }

    fn check(&self) -> Result<(), EncodeError> {
        if self.overflow && self.underflow {
            return refuse("O and U bits", "both set");
        }
        if self.bidi_overflow && self.bidi_underflow {
            return refuse("o and u bits", "both set");
        }
        if (0x02..0x80).contains(&self.response.0) {
            return refuse("Response", "reserved value");
        }
        Ok(())
    }

    fn data(&self) -> &Bytes {
        &self.data
    }
}
