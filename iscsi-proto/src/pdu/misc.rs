//! Logout Request/Response, SNACK Request, Asynchronous Message and Reject
//! (RFC 7143 §11.14 - §11.17, §11.9).

use bytes::Bytes;

use super::{
    Bhs, EMPTY, EncodeError, Lun, Opcode, PduBody, PduError, RejectReason, no_data, refuse,
};
use crate::serial::{CmdSn, DataSn, Itt, StatSn, Ttt};

fn invalid(opcode: Opcode, field: &'static str, offset: usize, value: u8) -> PduError {
    PduError::InvalidField {
        opcode,
        field,
        offset,
        value: value as u32,
    }
}

/// Reason code of a Logout Request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum LogoutReason {
    /// 0: close the session (all its connections).
    #[default]
    CloseSession = 0,
    /// 1: close the connection named by the CID.
    CloseConnection = 1,
    /// 2: remove the connection for recovery.
    RemoveForRecovery = 2,
}

/// Logout Request.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LogoutRequest {
    /// I bit: immediate delivery.
    pub immediate: bool,
    /// Reason code.
    pub reason: LogoutReason,
    /// Initiator Task Tag.
    pub itt: Itt,
    /// CID of the connection to close (reserved when closing the session).
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: CmdSn,
    /// ExpStatSN.
    pub exp_stat_sn: StatSn,
}

impl PduBody for LogoutRequest {
    const OPCODE: Opcode = Opcode::LOGOUT_REQUEST;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        no_data(Self::OPCODE, &data)?;
        let reason = match h.flags & 0x7f {
            0 => LogoutReason::CloseSession,
            1 => LogoutReason::CloseConnection,
            2 => LogoutReason::RemoveForRecovery,
            v => return Err(invalid(Self::OPCODE, "Reason Code", 1, v)),
        };
        Ok(LogoutRequest {
            immediate: h.immediate,
            reason,
            itt: Itt(h.itt),
            cid: (h.w[0] >> 16) as u16,
            cmd_sn: CmdSn(h.w[1]),
            exp_stat_sn: StatSn(h.w[2]),
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.immediate = self.immediate;
        h.flags = 0x80 | self.reason as u8;
        h.itt = self.itt.0;
        h.w[0] = (self.cid as u32) << 16;
        h.w[1] = self.cmd_sn.0;
        h.w[2] = self.exp_stat_sn.0;
    }

    fn data(&self) -> &Bytes {
        &EMPTY
    }
}

/// Response code of a Logout Response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum LogoutResponseCode {
    /// 0: connection or session closed successfully.
    #[default]
    Closed = 0,
    /// 1: CID not found.
    CidNotFound = 1,
    /// 2: connection recovery is not supported.
    RecoveryNotSupported = 2,
    /// 3: cleanup failed for various reasons.
    CleanupFailed = 3,
}

/// Logout Response.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LogoutResponse {
    /// Response code.
    pub response: LogoutResponseCode,
    /// Initiator Task Tag (echoed).
    pub itt: Itt,
    /// StatSN.
    pub stat_sn: StatSn,
    /// ExpCmdSN.
    pub exp_cmd_sn: CmdSn,
    /// MaxCmdSN.
    pub max_cmd_sn: CmdSn,
    /// Time2Wait in seconds.
    pub time2wait: u16,
    /// Time2Retain in seconds.
    pub time2retain: u16,
}

impl PduBody for LogoutResponse {
    const OPCODE: Opcode = Opcode::LOGOUT_RESPONSE;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        no_data(Self::OPCODE, &data)?;
        let response = match h.b2 {
            0 => LogoutResponseCode::Closed,
            1 => LogoutResponseCode::CidNotFound,
            2 => LogoutResponseCode::RecoveryNotSupported,
            3 => LogoutResponseCode::CleanupFailed,
            v => return Err(invalid(Self::OPCODE, "Response", 2, v)),
        };
        Ok(LogoutResponse {
            response,
            itt: Itt(h.itt),
            stat_sn: StatSn(h.w[1]),
            exp_cmd_sn: CmdSn(h.w[2]),
            max_cmd_sn: CmdSn(h.w[3]),
            time2wait: (h.w[5] >> 16) as u16,
            time2retain: h.w[5] as u16,
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.flags = 0x80;
        h.b2 = self.response as u8;
        h.itt = self.itt.0;
        h.w[1] = self.stat_sn.0;
        h.w[2] = self.exp_cmd_sn.0;
        h.w[3] = self.max_cmd_sn.0;
        h.w[5] = (self.time2wait as u32) << 16 | self.time2retain as u32;
    }

    fn data(&self) -> &Bytes {
        &EMPTY
    }
}

/// SNACK type (RFC 7143 §11.16.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum SnackType {
    /// 0: Data/R2T SNACK.
    #[default]
    DataR2t = 0,
    /// 1: Status SNACK.
    Status = 1,
    /// 2: DataACK.
    DataAck = 2,
    /// 3: R-Data SNACK.
    RData = 3,
}

/// SNACK Request.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SnackRequest {
    /// Type.
    pub kind: SnackType,
    /// Logical Unit Number (DataACK).
    pub lun: Lun,
    /// Initiator Task Tag of the task (reserved for Status SNACK).
    pub itt: Itt,
    /// Target Transfer Tag (DataACK) or SNACK Tag (R-Data), else reserved.
    pub ttt: Ttt,
    /// ExpStatSN.
    pub exp_stat_sn: StatSn,
    /// BegRun: first missing DataSN, R2TSN or StatSN.
    pub beg_run: u32,
    /// RunLength: number of PDUs requested (0 = all from BegRun).
    pub run_length: u32,
}

impl PduBody for SnackRequest {
    const OPCODE: Opcode = Opcode::SNACK_REQUEST;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        no_data(Self::OPCODE, &data)?;
        let kind = match h.flags & 0x0f {
            0 => SnackType::DataR2t,
            1 => SnackType::Status,
            2 => SnackType::DataAck,
            3 => SnackType::RData,
            v => return Err(invalid(Self::OPCODE, "Type", 1, v)),
        };
        Ok(SnackRequest {
            kind,
            lun: Lun(h.lun),
            itt: Itt(h.itt),
            ttt: Ttt(h.w[0]),
            exp_stat_sn: StatSn(h.w[2]),
            beg_run: h.w[5],
            run_length: h.w[6],
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.flags = 0x80 | self.kind as u8;
        h.lun = self.lun.0;
        h.itt = self.itt.0;
        h.w[0] = self.ttt.0;
        h.w[2] = self.exp_stat_sn.0;
        h.w[5] = self.beg_run;
        h.w[6] = self.run_length;
    }

    fn data(&self) -> &Bytes {
        &EMPTY
    }
}

/// AsyncEvent code of an Asynchronous Message (RFC 7143 §11.9.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AsyncEvent(pub u8);

impl AsyncEvent {
    /// 0: a SCSI asynchronous event (sense data in the data segment).
    pub const SCSI: Self = Self(0);
    /// 1: the target asks for a logout (Parameter3: time to logout).
    pub const LOGOUT_REQUEST: Self = Self(1);
    /// 2: the target will drop the connection (Parameter1: CID).
    pub const DROP_CONNECTION: Self = Self(2);
    /// 3: the target will drop all connections of the session.
    pub const DROP_ALL_CONNECTIONS: Self = Self(3);
    /// 4: the target asks for parameter renegotiation.
    pub const NEGOTIATION_REQUEST: Self = Self(4);
    /// 5: all active tasks of the LU are being terminated.
    pub const TASK_TERMINATION: Self = Self(5);
    /// 255: vendor specific (AsyncVCode).
    pub const VENDOR: Self = Self(255);
}

/// Asynchronous Message.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AsyncMessage {
    /// Logical Unit Number (SCSI events).
    pub lun: Lun,
    /// StatSN.
    pub stat_sn: StatSn,
    /// ExpCmdSN.
    pub exp_cmd_sn: CmdSn,
    /// MaxCmdSN.
    pub max_cmd_sn: CmdSn,
    /// AsyncEvent.
    pub event: AsyncEvent,
    /// AsyncVCode (vendor code).
    pub vcode: u8,
    /// Parameter1.
    pub parameter1: u16,
    /// Parameter2.
    pub parameter2: u16,
    /// Parameter3.
    pub parameter3: u16,
    /// Data segment: SenseLength, sense data, iSCSI event data.
    pub data: Bytes,
}

impl PduBody for AsyncMessage {
    const OPCODE: Opcode = Opcode::ASYNC_MESSAGE;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        let event = (h.w[4] >> 24) as u8;
        if (6..255).contains(&event) {
            return Err(invalid(Self::OPCODE, "AsyncEvent", 36, event));
        }
        Ok(AsyncMessage {
            lun: Lun(h.lun),
            stat_sn: StatSn(h.w[1]),
            exp_cmd_sn: CmdSn(h.w[2]),
            max_cmd_sn: CmdSn(h.w[3]),
            event: AsyncEvent(event),
            vcode: (h.w[4] >> 16) as u8,
            parameter1: h.w[4] as u16,
            parameter2: (h.w[5] >> 16) as u16,
            parameter3: h.w[5] as u16,
            data,
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.flags = 0x80;
        h.lun = self.lun.0;
        h.itt = Itt::RESERVED.0;
        h.w[1] = self.stat_sn.0;
        h.w[2] = self.exp_cmd_sn.0;
        h.w[3] = self.max_cmd_sn.0;
        h.w[4] = (self.event.0 as u32) << 24 | (self.vcode as u32) << 16 | self.parameter1 as u32;
        h.w[5] = (self.parameter2 as u32) << 16 | self.parameter3 as u32;
    }

    fn check(&self) -> Result<(), EncodeError> {
        if (6..255).contains(&self.event.0) {
            return refuse("AsyncEvent", "reserved value");
        }
        Ok(())
    }

    fn data(&self) -> &Bytes {
        &self.data
    }
}

/// Reject: the target refuses a PDU; the data segment holds the rejected PDU's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    /// Reason.
    pub reason: RejectReason,
    /// StatSN.
    pub stat_sn: StatSn,
    /// ExpCmdSN.
    pub exp_cmd_sn: CmdSn,
    /// MaxCmdSN.
    pub max_cmd_sn: CmdSn,
    /// DataSN/R2TSN of the rejected Data/R2T SNACK, else reserved.
    pub data_sn: DataSn,
    /// The complete header (BHS and AHS) of the rejected PDU.
    pub data: Bytes,
}

impl Default for Reject {
    fn default() -> Self {
        Reject {
            reason: RejectReason::PROTOCOL_ERROR,
            stat_sn: StatSn(0),
            exp_cmd_sn: CmdSn(0),
            max_cmd_sn: CmdSn(0),
            data_sn: DataSn(0),
            data: Bytes::new(),
        }
    }
}

impl PduBody for Reject {
    const OPCODE: Opcode = Opcode::REJECT;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        Ok(Reject {
            reason: RejectReason(h.b2),
            stat_sn: StatSn(h.w[1]),
            exp_cmd_sn: CmdSn(h.w[2]),
            max_cmd_sn: CmdSn(h.w[3]),
            data_sn: DataSn(h.w[4]),
            data,
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.flags = 0x80;
        h.b2 = self.reason.0;
        h.itt = Itt::RESERVED.0;
        h.w[1] = self.stat_sn.0;
        h.w[2] = self.exp_cmd_sn.0;
        h.w[3] = self.max_cmd_sn.0;
        h.w[4] = self.data_sn.0;
    }

    fn data(&self) -> &Bytes {
        &self.data
    }
}
