//! Text Request and Text Response (RFC 7143 §11.10, §11.11).

use bytes::Bytes;

use super::{Bhs, EncodeError, Lun, Opcode, PduBody, PduError, refuse};
use crate::serial::{CmdSn, Itt, StatSn, Ttt};

fn final_and_continue(opcode: Opcode, flags: u8) -> Result<(bool, bool), PduError> {
    let (f, c) = (flags & 0x80 != 0, flags & 0x40 != 0);
    if f && c {
        return Err(PduError::InvalidField {
            opcode,
            field: "F and C bits",
            offset: 1,
            value: flags as u32,
        });
    }
    Ok((f, c))
}

/// The encoder's side of the rule that the two bits are never both set.
fn check_final_continue(first: bool, cont: bool) -> Result<(), EncodeError> {
    if first && cont {
        return refuse("F and C bits", "both set");
    }
    Ok(())
}

/// Text Request.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TextRequest {
    /// I bit: immediate delivery.
    pub immediate: bool,
    /// F bit: the last PDU of the request sequence.
    pub final_: bool,
    /// C bit: the text continues in the next PDU.
    pub cont: bool,
    /// Logical Unit Number.
    pub lun: Lun,
    /// Initiator Task Tag.
    pub itt: Itt,
    /// Target Transfer Tag: reserved to start, or the target's TTT to continue an exchange.
    pub ttt: Ttt,
    /// CmdSN.
    pub cmd_sn: CmdSn,
    /// ExpStatSN.
    pub exp_stat_sn: StatSn,
    /// Text (key=value pairs).
    pub data: Bytes,
}

impl PduBody for TextRequest {
    const OPCODE: Opcode = Opcode::TEXT_REQUEST;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        let (final_, cont) = final_and_continue(Self::OPCODE, h.flags)?;
        Ok(TextRequest {
            immediate: h.immediate,
            final_,
            cont,
            lun: Lun(h.lun),
            itt: Itt(h.itt),
            ttt: Ttt(h.w[0]),
            cmd_sn: CmdSn(h.w[1]),
            exp_stat_sn: StatSn(h.w[2]),
            data,
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.immediate = self.immediate;
        h.flags = (self.final_ as u8) << 7 | (self.cont as u8) << 6;
        h.lun = self.lun.0;
        h.itt = self.itt.0;
        h.w[0] = self.ttt.0;
        h.w[1] = self.cmd_sn.0;
        h.w[2] = self.exp_stat_sn.0;
    }

    fn check(&self) -> Result<(), EncodeError> {
        check_final_continue(self.final_, self.cont)
    }

    fn data(&self) -> &Bytes {
        &self.data
    }
}

/// Text Response.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TextResponse {
    /// F bit: the last PDU of the response sequence.
    pub final_: bool,
    /// C bit: the text continues in the next PDU.
    pub cont: bool,
    /// Logical Unit Number.
    pub lun: Lun,
    /// Initiator Task Tag (echoed).
    pub itt: Itt,
    /// Target Transfer Tag: not reserved while the target has more to send.
    pub ttt: Ttt,
    /// StatSN.
    pub stat_sn: StatSn,
    /// ExpCmdSN.
    pub exp_cmd_sn: CmdSn,
    /// MaxCmdSN.
    pub max_cmd_sn: CmdSn,
    /// Text (key=value pairs).
    pub data: Bytes,
}

impl PduBody for TextResponse {
    const OPCODE: Opcode = Opcode::TEXT_RESPONSE;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        let (final_, cont) = final_and_continue(Self::OPCODE, h.flags)?;
        Ok(TextResponse {
            final_,
            cont,
            lun: Lun(h.lun),
            itt: Itt(h.itt),
            ttt: Ttt(h.w[0]),
            stat_sn: StatSn(h.w[1]),
            exp_cmd_sn: CmdSn(h.w[2]),
            max_cmd_sn: CmdSn(h.w[3]),
            data,
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.flags = (self.final_ as u8) << 7 | (self.cont as u8) << 6;
        h.lun = self.lun.0;
        h.itt = self.itt.0;
        h.w[0] = self.ttt.0;
        h.w[1] = self.stat_sn.0;
        h.w[2] = self.exp_cmd_sn.0;
        h.w[3] = self.max_cmd_sn.0;
    }

    fn check(&self) -> Result<(), EncodeError> {
        check_final_continue(self.final_, self.cont)
    }

    fn data(&self) -> &Bytes {
        &self.data
    }
}
