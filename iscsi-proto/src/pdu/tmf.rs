//! Task Management Function Request and Response (RFC 7143 §11.5, §11.6).

use bytes::Bytes;

use super::{Bhs, EMPTY, EncodeError, Lun, Opcode, PduBody, PduError, no_data, refuse};
use crate::serial::{CmdSn, DataSn, Itt, StatSn};

/// Task management function code (RFC 7143 §11.5.1). Open: the target answers an unknown code
/// with [`TmfResponse::NOT_SUPPORTED`] rather than rejecting the PDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TaskMgmtFunction(pub u8);

impl TaskMgmtFunction {
    /// 1: ABORT TASK.
    pub const ABORT_TASK: Self = Self(1);
    /// 2: ABORT TASK SET.
    pub const ABORT_TASK_SET: Self = Self(2);
    /// 3: CLEAR ACA.
    pub const CLEAR_ACA: Self = Self(3);
    /// 4: CLEAR TASK SET.
    pub const CLEAR_TASK_SET: Self = Self(4);
    /// 5: LOGICAL UNIT RESET.
    pub const LOGICAL_UNIT_RESET: Self = Self(5);
    /// 6: TARGET WARM RESET.
    pub const TARGET_WARM_RESET: Self = Self(6);
    /// 7: TARGET COLD RESET.
    pub const TARGET_COLD_RESET: Self = Self(7);
    /// 8: TASK REASSIGN.
    pub const TASK_REASSIGN: Self = Self(8);
    /// 9: QUERY TASK.
    pub const QUERY_TASK: Self = Self(9);
    /// 10: QUERY TASK SET.
    pub const QUERY_TASK_SET: Self = Self(10);
    /// 11: I_T NEXUS RESET.
    pub const I_T_NEXUS_RESET: Self = Self(11);
    /// 12: QUERY ASYNCHRONOUS EVENT.
    pub const QUERY_ASYNC_EVENT: Self = Self(12);
}

/// Task Management Function Request.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TaskMgmtRequest {
    /// I bit: immediate delivery.
    pub immediate: bool,
    /// Function (7 bits).
    pub function: TaskMgmtFunction,
    /// Logical Unit Number.
    pub lun: Lun,
    /// Initiator Task Tag of this request.
    pub itt: Itt,
    /// Referenced Task Tag (ABORT TASK, TASK REASSIGN, QUERY TASK); reserved otherwise.
    pub referenced_task_tag: Itt,
    /// CmdSN.
    pub cmd_sn: CmdSn,
    /// ExpStatSN.
    pub exp_stat_sn: StatSn,
    /// RefCmdSN: CmdSN of the referenced task (ABORT TASK), or of the request for set functions.
    pub ref_cmd_sn: CmdSn,
    /// ExpDataSN (TASK REASSIGN).
    pub exp_data_sn: DataSn,
}

impl PduBody for TaskMgmtRequest {
    const OPCODE: Opcode = Opcode::TASK_MGMT_REQUEST;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        no_data(Self::OPCODE, &data)?;
        Ok(TaskMgmtRequest {
            immediate: h.immediate,
            function: TaskMgmtFunction(h.flags & 0x7f),
            lun: Lun(h.lun),
            itt: Itt(h.itt),
            referenced_task_tag: Itt(h.w[0]),
            cmd_sn: CmdSn(h.w[1]),
            exp_stat_sn: StatSn(h.w[2]),
            ref_cmd_sn: CmdSn(h.w[3]),
            exp_data_sn: DataSn(h.w[4]),
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.immediate = self.immediate;
        h.flags = 0x80 | (self.function.0 & 0x7f);
        h.lun = self.lun.0;
        h.itt = self.itt.0;
        h.w[0] = self.referenced_task_tag.0;
        h.w[1] = self.cmd_sn.0;
        h.w[2] = self.exp_stat_sn.0;
        h.w[3] = self.ref_cmd_sn.0;
        h.w[4] = self.exp_data_sn.0;
    }

    fn check(&self) -> Result<(), EncodeError> {
        if self.function.0 >= 0x80 {
            return refuse("Function", "does not fit 7 bits");
        }
        Ok(())
    }

    fn data(&self) -> &Bytes {
        &EMPTY
    }
}

/// Task management response code (RFC 7143 §11.6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct TmfResponse(pub u8);

impl TmfResponse {
    /// 0: function complete.
    pub const COMPLETE: Self = Self(0);
    /// 1: task does not exist.
    pub const TASK_DOES_NOT_EXIST: Self = Self(1);
    /// 2: LUN does not exist.
    pub const LUN_DOES_NOT_EXIST: Self = Self(2);
    /// 3: task still allegiant.
    pub const TASK_STILL_ALLEGIANT: Self = Self(3);
    /// 4: task allegiance reassignment not supported.
    pub const REASSIGNMENT_NOT_SUPPORTED: Self = Self(4);
    /// 5: task management function not supported.
    pub const NOT_SUPPORTED: Self = Self(5);
    /// 6: function authorization failed.
    pub const AUTHORIZATION_FAILED: Self = Self(6);
    /// 255: function rejected.
    pub const REJECTED: Self = Self(255);
}

/// Task Management Function Response.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TaskMgmtResponse {
    /// Response code.
    pub response: TmfResponse,
    /// Initiator Task Tag of the request.
    pub itt: Itt,
    /// StatSN.
    pub stat_sn: StatSn,
    /// ExpCmdSN.
    pub exp_cmd_sn: CmdSn,
    /// MaxCmdSN.
    pub max_cmd_sn: CmdSn,
}

impl PduBody for TaskMgmtResponse {
    const OPCODE: Opcode = Opcode::TASK_MGMT_RESPONSE;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        no_data(Self::OPCODE, &data)?;
        Ok(TaskMgmtResponse {
            response: TmfResponse(h.b2),
            itt: Itt(h.itt),
            stat_sn: StatSn(h.w[1]),
            exp_cmd_sn: CmdSn(h.w[2]),
            max_cmd_sn: CmdSn(h.w[3]),
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.flags = 0x80;
        h.b2 = self.response.0;
        h.itt = self.itt.0;
        h.w[1] = self.stat_sn.0;
        h.w[2] = self.exp_cmd_sn.0;
        h.w[3] = self.max_cmd_sn.0;
    }

    fn data(&self) -> &Bytes {
        &EMPTY
    }
}
