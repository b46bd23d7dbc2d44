//! NOP-Out and NOP-In (RFC 7143 §11.18, §11.19).

use bytes::Bytes;

use super::{Bhs, Lun, Opcode, PduBody, PduError};
use crate::serial::{CmdSn, Itt, StatSn, Ttt};

/// NOP-Out: a ping from the initiator, or the answer to a target's NOP-In.
///
/// `itt == Itt::RESERVED` means no answer is wanted (then `ttt` echoes a NOP-In's TTT or is
/// reserved); otherwise the target answers with a NOP-In carrying the same ITT and data.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NopOut {
    /// I bit: immediate delivery.
    pub immediate: bool,
    /// Logical Unit Number (when answering a NOP-In, copied from it).
    pub lun: Lun,
    /// Initiator Task Tag.
    pub itt: Itt,
    /// Target Transfer Tag: the NOP-In's TTT when answering one, else reserved.
    pub ttt: Ttt,
    /// CmdSN (not advanced by an immediate NOP-Out).
    pub cmd_sn: CmdSn,
    /// ExpStatSN.
    pub exp_stat_sn: StatSn,
    /// Ping data, echoed by the answer.
    pub data: Bytes,
}

impl PduBody for NopOut {
    const OPCODE: Opcode = Opcode::NOP_OUT;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        Ok(NopOut {
            immediate: h.immediate,
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
        h.flags = 0x80;
        h.lun = self.lun.0;
        h.itt = self.itt.0;
        h.w[0] = self.ttt.0;
        h.w[1] = self.cmd_sn.0;
        h.w[2] = self.exp_stat_sn.0;
    }

    fn data(&self) -> &Bytes {
        &self.data
    }
}

/// NOP-In: the target's answer to a NOP-Out, or its own ping (`itt == Itt::RESERVED` and a
/// non-reserved `ttt` asks the initiator to answer).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NopIn {
    /// Logical Unit Number.
    pub lun: Lun,
    /// Initiator Task Tag (reserved for a target ping).
    pub itt: Itt,
    /// Target Transfer Tag (reserved when answering a NOP-Out or when no answer is wanted).
    pub ttt: Ttt,
    /// StatSN (not advanced when `itt` is reserved).
    pub stat_sn: StatSn,
    /// ExpCmdSN.
    pub exp_cmd_sn: CmdSn,
    /// MaxCmdSN.
    pub max_cmd_sn: CmdSn,
    /// Ping data.
    pub data: Bytes,
}

impl PduBody for NopIn {
    const OPCODE: Opcode = Opcode::NOP_IN;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        Ok(NopIn {
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
        h.flags = 0x80;
        h.lun = self.lun.0;
        h.itt = self.itt.0;
        h.w[0] = self.ttt.0;
        h.w[1] = self.stat_sn.0;
        h.w[2] = self.exp_cmd_sn.0;
        h.w[3] = self.max_cmd_sn.0;
    }

    fn data(&self) -> &Bytes {
        &self.data
    }
}
