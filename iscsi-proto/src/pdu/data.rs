//! SCSI Data-Out, SCSI Data-In and R2T (RFC 7143 §11.7, §11.8).

use bytes::Bytes;

use super::{Bhs, EMPTY, EncodeError, Lun, Opcode, PduBody, PduError, ScsiStatus, no_data, refuse};
use crate::serial::{CmdSn, DataSn, Itt, R2tSn, StatSn, Ttt};

/// SCSI Data-Out: write data from the initiator, solicited by an R2T or unsolicited.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DataOut {
    /// F bit: the last PDU of the sequence (R2T burst or unsolicited burst).
    pub final_: bool,
    /// Logical Unit Number.
    pub lun: Lun,
    /// Initiator Task Tag of the command.
    pub itt: Itt,
    /// Target Transfer Tag of the R2T, or reserved for unsolicited data.
    pub ttt: Ttt,
    /// ExpStatSN.
    pub exp_stat_sn: StatSn,
    /// DataSN, restarting at 0 for each R2T and for the unsolicited burst.
    pub data_sn: DataSn,
    /// Buffer Offset of this PDU's data within the command's data.
    pub buffer_offset: u32,
    /// The data.
    pub data: Bytes,
}

impl PduBody for DataOut {
    const OPCODE: Opcode = Opcode::DATA_OUT;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        Ok(DataOut {
            final_: h.flags & 0x80 != 0,
            lun: Lun(h.lun),
            itt: Itt(h.itt),
            ttt: Ttt(h.w[0]),
            exp_stat_sn: StatSn(h.w[2]),
            data_sn: DataSn(h.w[4]),
            buffer_offset: h.w[5],
            data,
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.flags = (self.final_ as u8) << 7;
        h.lun = self.lun.0;
        h.itt = self.itt.0;
        h.w[0] = self.ttt.0;
        h.w[2] = self.exp_stat_sn.0;
        h.w[4] = self.data_sn.0;
        h.w[5] = self.buffer_offset;
    }

    fn data(&self) -> &Bytes {
        &self.data
    }
}

/// SCSI Data-In: read data from the target, possibly with the command's status (S bit).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DataIn {
    /// F bit: the last PDU of the sequence.
    pub final_: bool,
    /// A bit: the target asks for a DataACK SNACK (ErrorRecoveryLevel > 0).
    pub ack: bool,
    /// O bit: residual overflow (with status).
    pub overflow: bool,
    /// U bit: residual underflow (with status).
    pub underflow: bool,
    /// The SCSI status when the S bit is set (status delivered in this PDU); requires `final_`.
    pub status: Option<ScsiStatus>,
    /// Logical Unit Number (meaningful with the A bit).
    pub lun: Lun,
    /// Initiator Task Tag of the command.
    pub itt: Itt,
    /// Target Transfer Tag (with the A bit), else reserved.
    pub ttt: Ttt,
    /// StatSN (meaningful with status).
    pub stat_sn: StatSn,
    /// ExpCmdSN.
    pub exp_cmd_sn: CmdSn,
    /// MaxCmdSN.
    pub max_cmd_sn: CmdSn,
    /// DataSN, counting Data-In PDUs of the command from 0.
    pub data_sn: DataSn,
    /// Buffer Offset.
    pub buffer_offset: u32,
    /// Residual Count (meaningful with status).
    pub residual_count: u32,
    /// The data.
    pub data: Bytes,
}

impl PduBody for DataIn {
    const OPCODE: Opcode = Opcode::DATA_IN;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        let f = h.flags;
        let invalid = |field| PduError::InvalidField {
            opcode: Self::OPCODE,
            field,
            offset: 1,
            value: f as u32,
        };
        let has_status = f & 0x01 != 0;
        if has_status && f & 0x80 == 0 {
            return Err(invalid("S bit without F bit"));
        }
        if f & 0x06 == 0x06 {
            return Err(invalid("O and U bits"));
        }
        Ok(DataIn {
            final_: f & 0x80 != 0,
            ack: f & 0x40 != 0,
            overflow: f & 0x04 != 0,
            underflow: f & 0x02 != 0,
            status: has_status.then_some(ScsiStatus(h.b3)),
            lun: Lun(h.lun),
            itt: Itt(h.itt),
            ttt: Ttt(h.w[0]),
            stat_sn: StatSn(h.w[1]),
            exp_cmd_sn: CmdSn(h.w[2]),
            max_cmd_sn: CmdSn(h.w[3]),
            data_sn: DataSn(h.w[4]),
            buffer_offset: h.w[5],
            residual_count: h.w[6],
            data,
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.flags = (self.final_ as u8) << 7
            | (self.ack as u8) << 6
            | (self.overflow as u8) << 2
            | (self.underflow as u8) << 1
            | self.status.is_some() as u8;
        h.b3 = self.status.map_or(0, |s| s.0);
        h.lun = self.lun.0;
        h.itt = self.itt.0;
        h.w = [
            self.ttt.0,
            self.stat_sn.0,
            self.exp_cmd_sn.0,
            self.max_cmd_sn.0,
            self.data_sn.0,
            self.buffer_offset,
            self.residual_count,
        ];
    }

    fn check(&self) -> Result<(), EncodeError> {
        if self.status.is_some() && !self.final_ {
            return refuse("S bit", "status without the F bit");
        }
        if self.overflow && self.underflow {
            return refuse("O and U bits", "both set");
        }
        Ok(())
    }

    fn data(&self) -> &Bytes {
        &self.data
    }
}

/// Ready To Transfer: the target asks for a burst of write data.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct R2t {
    /// Logical Unit Number.
    pub lun: Lun,
    /// Initiator Task Tag of the command.
    pub itt: Itt,
    /// Target Transfer Tag that the Data-Out PDUs must carry.
    pub ttt: Ttt,
    /// StatSN: the next StatSN, not advanced by the R2T.
    pub stat_sn: StatSn,
    /// ExpCmdSN.
    pub exp_cmd_sn: CmdSn,
    /// MaxCmdSN.
    pub max_cmd_sn: CmdSn,
    /// R2TSN.
    pub r2t_sn: R2tSn,
    /// Buffer Offset of the requested data.
    pub buffer_offset: u32,
    /// Desired Data Transfer Length: never 0, at most MaxBurstLength.
    pub desired_len: u32,
}

impl PduBody for R2t {
    const OPCODE: Opcode = Opcode::R2T;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        no_data(Self::OPCODE, &data)?;
        if h.w[6] == 0 {
            return Err(PduError::InvalidField {
                opcode: Self::OPCODE,
                field: "Desired Data Transfer Length",
                offset: 44,
                value: 0,
            });
        }
        Ok(R2t {
            lun: Lun(h.lun),
            itt: Itt(h.itt),
            ttt: Ttt(h.w[0]),
            stat_sn: StatSn(h.w[1]),
            exp_cmd_sn: CmdSn(h.w[2]),
            max_cmd_sn: CmdSn(h.w[3]),
            r2t_sn: R2tSn(h.w[4]),
            buffer_offset: h.w[5],
            desired_len: h.w[6],
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.flags = 0x80;
        h.lun = self.lun.0;
        h.itt = self.itt.0;
        h.w = [
            self.ttt.0,
            self.stat_sn.0,
            self.exp_cmd_sn.0,
            self.max_cmd_sn.0,
            self.r2t_sn.0,
            self.buffer_offset,
            self.desired_len,
        ];
    }

    fn check(&self) -> Result<(), EncodeError> {
        if self.desired_len == 0 {
            return refuse("Desired Data Transfer Length", "zero");
        }
        Ok(())
    }

    fn data(&self) -> &Bytes {
        &EMPTY
    }
}
