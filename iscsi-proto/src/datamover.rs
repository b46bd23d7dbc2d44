//! The datamover interface (RFC 5047, reused by RFC 7145 §8).
//!
//! RFC 5047 splits iSCSI into an *iSCSI layer* (login, sessions, sequence numbers, tasks) and a
//! *datamover layer* that moves PDUs and data. The session cores of this crate are the iSCSI
//! layer; a [`Datamover`] is the other half. iSCSI/TCP and iSER are two implementations of the
//! same operations:
//!
//! | RFC 5047 operation | here | iSCSI/TCP | iSER |
//! |---|---|---|---|
//! | Send_Control | [`Datamover::send_control`] | writes the PDU (+ digests) | Send with an iSER header |
//! | Put_Data | [`Datamover::put_data`] | Data-In PDUs cut to the initiator's MaxRecvDataSegmentLength, status in the last one when allowed | RDMA Write, then the SCSI Response in a Send |
//! | Get_Data | [`Datamover::get_data`] | R2T PDUs, then collects the Data-Out PDUs into the buffer | RDMA Read from the initiator's write STag |
//! | Send_Control of a SCSI Command, with its buffer (initiator) | [`Datamover::send_command`] | the command with its immediate data, the unsolicited Data-Out, later the Data-Out each R2T asks for; Data-In placed into the buffer | Send with the buffer's STag; the target reads and writes it by RDMA |
//! | Control_Notify | [`Notify::Control`] | a control PDU arrived | a Send arrived |
//! | Data_Completion_Notify | [`Notify::DataComplete`] | target: every Data-Out of the requested R2Ts arrived; initiator: the status arrived and every Data-In before it | target: the RDMA Reads completed; initiator: the status arrived |
//! | Notice_Key_Values / Enable_Datamover | [`Datamover::notice_key_values`] | digests, MaxRecvDataSegmentLength | RDMAExtensions, Initiator/TargetRecvDataSegmentLength |
//! | Allocate/Deallocate_Task_Resources | [`Datamover::alloc`], [`Datamover::cancel_data`] | heap buffers | registered memory, STag invalidation |
//! | Connection_Terminate | dropping the datamover | closes the socket | disconnects the queue pair |
//!
//! On the initiator side the session core decides how much of a write goes unsolicited
//! (immediate data, then unsolicited Data-Out, per ImmediateData/InitialR2T/FirstBurstLength)
//! and hands the task buffer over with the command; the datamover answers R2Ts and places
//! Data-In on its own, and gives the buffer back (in [`Notify::DataComplete`] or
//! [`Notify::DataFailed`]) just before the task's SCSI Response. Data PDUs it consumed report
//! the CmdSN window they carried in [`Notify::Window`].
//!
//! The session core decides *what* data to fetch (the R2T contents: offsets, lengths, target
//! transfer tags, R2TSN, under MaxBurstLength and MaxOutstandingR2T) and *when* a task's data
//! is complete; the datamover decides *how*. Nothing above a datamover builds or parses R2T,
//! solicited Data-Out or Data-In PDUs, and task data always lives in buffers the datamover
//! hands out ([`Datamover::Buffer`]), so that an RDMA datamover can give registered memory.
//!
//! The trait is asynchronous: [`Datamover::recv`] drives the transport (it also writes what
//! was queued) and must be cancel-safe, so that an engine can `select!` between it and its own
//! work. The other operations only queue and never wait.

use core::future::Future;

use bytes::Bytes;

use crate::pdu::{Lun, Pdu, PduError, ScsiCommand, ScsiResponse};
use crate::serial::{CmdSn, Itt, R2tSn, StatSn, Ttt};
use crate::text::NegotiatedParams;

/// Memory that holds a task's data, handed out by a datamover.
pub trait DataBuffer: Send + 'static {
    /// The bytes.
    fn as_bytes(&self) -> &[u8];
    /// The bytes, writable.
    fn as_mut_bytes(&mut self) -> &mut [u8];
}

impl DataBuffer for Vec<u8> {
    fn as_bytes(&self) -> &[u8] {
        self
    }
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        self
    }
}

/// One R2T's worth of solicited data (RFC 7143 §11.8): what the session core wants fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct R2tRequest {
    /// Target Transfer Tag naming this transfer.
    pub ttt: Ttt,
    /// R2TSN of the transfer within its task.
    pub r2t_sn: R2tSn,
    /// Offset in the task buffer.
    pub offset: u32,
    /// Bytes to fetch (at most MaxBurstLength).
    pub len: u32,
}

/// Get_Data: fetch solicited data-out of one task into its buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetData {
    /// The task.
    pub itt: Itt,
    /// Its logical unit.
    pub lun: Lun,
    /// The transfers to run now (at most MaxOutstandingR2T).
    pub r2ts: Vec<R2tRequest>,
    /// StatSN, ExpCmdSN and MaxCmdSN at the time of the request, for transports that carry
    /// them in their solicitation (the R2T PDU).
    pub stat_sn: StatSn,
    /// See `stat_sn`.
    pub exp_cmd_sn: CmdSn,
    /// See `stat_sn`.
    pub max_cmd_sn: CmdSn,
}

impl GetData {
    /// Total bytes requested.
    pub fn total_len(&self) -> u64 {
        self.r2ts.iter().map(|r| u64::from(r.len)).sum()
    }
}

/// Put_Data: send the data-in of one task, then its status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutData {
    /// The task.
    pub itt: Itt,
    /// Its logical unit.
    pub lun: Lun,
    /// Bytes of data-in at the start of the buffer.
    pub len: u32,
    /// ExpCmdSN at the time of the request.
    pub exp_cmd_sn: CmdSn,
    /// MaxCmdSN at the time of the request.
    pub max_cmd_sn: CmdSn,
    /// Largest data segment the initiator accepts.
    pub max_segment_len: u32,
    /// Largest data-in sequence (MaxBurstLength): PDU-based transports end each sequence
    /// with the F bit.
    pub max_burst_len: u32,
    /// The task's SCSI Response, to send after the data.
    pub response: ScsiResponse,
    /// Whether the status may instead ride in the last data PDU (RFC 7143 §11.7.4: no sense
    /// data, not a bidirectional command). A datamover that has no data PDUs ignores it.
    pub status_in_data: bool,
}

/// Initiator: a SCSI Command to send with its task buffer (the data-out of a write, the room
/// for the data-in of a read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendCommand {
    /// The command; its `data` is filled by the datamover (immediate data).
    pub command: ScsiCommand,
    /// Bytes at the start of the buffer sent as immediate data.
    pub immediate_len: u32,
    /// Bytes at the start of the buffer sent unsolicited in all, immediate data included
    /// (the rest in unsolicited Data-Out PDUs); the target asks for the remainder.
    pub unsolicited_len: u32,
}

/// Why a datamover gave up on a task's solicited data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A Data-Out's DataSN was not the next one.
    #[error("DataSN {got} where {expected} was expected")]
    DataSn {
        /// Expected DataSN.
        expected: u32,
        /// Received DataSN.
        got: u32,
    },
    /// A Data-Out's offset or length fell outside what was solicited, or out of order.
    #[error("data at offset {offset} length {len} outside the solicited range")]
    Range {
        /// Buffer offset of the PDU.
        offset: u32,
        /// Its length.
        len: u32,
    },
    /// The F bit came too early or not on the last PDU of a sequence.
    #[error("F bit inconsistent with the solicited length")]
    FinalBit,
    /// Data arrived with a data digest error (reported once the sequence ended).
    #[error("data digest error in the solicited data")]
    DataDigest,
    /// The transfer was refused by the transport (RDMA access error and the like).
    #[error("transport failure: {0}")]
    Transport(String),
}

/// What a datamover reports to the session core.
#[derive(Debug)]
#[non_exhaustive]
pub enum Notify<B> {
    /// Control_Notify: a PDU for the session core (every PDU but solicited Data-Out).
    Control(Pdu),
    /// A PDU that could not be decoded. `header` is its 48-byte BHS (for the Reject);
    /// `error` says why.
    Malformed {
        /// The raw basic header segment.
        header: Bytes,
        /// The decoding error.
        error: PduError,
    },
    /// Data_Completion_Notify: every transfer of a [`GetData`] completed; the buffer is back.
    DataComplete {
        /// The task.
        itt: Itt,
        /// Its buffer, filled.
        buf: B,
    },
    /// A transfer failed (a [`GetData`] at a target, a command's data-in at an initiator);
    /// the buffer is back.
    DataFailed {
        /// The task.
        itt: Itt,
        /// Its buffer.
        buf: B,
        /// What went wrong.
        error: DataError,
    },
    /// Initiator: the CmdSN window carried by data PDUs the datamover consumed (Data-In, R2T);
    /// reported when it changes.
    Window {
        /// ExpCmdSN.
        exp_cmd_sn: CmdSn,
        /// MaxCmdSN.
        max_cmd_sn: CmdSn,
    },
}

/// A datamover: the transport half of an iSCSI connection (see the module documentation).
pub trait Datamover: Send {
    /// Task data memory.
    type Buffer: DataBuffer;
    /// A connection-ending failure.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A zeroed buffer of `len` bytes for one task (Allocate_Task_Resources). An error (no
    /// registered memory left, say) ends the connection.
    fn alloc(&mut self, len: usize) -> Result<Self::Buffer, Self::Error>;

    /// Send_Control: queue a PDU for the peer.
    fn send_control(&mut self, pdu: Pdu) -> Result<(), Self::Error>;

    /// Put_Data: queue a task's data-in (the first `req.len` bytes of `buf`) and its status.
    fn put_data(&mut self, req: PutData, buf: Self::Buffer) -> Result<(), Self::Error>;

    /// Get_Data: fetch the requested solicited data into `buf`; reported by
    /// [`Notify::DataComplete`] or [`Notify::DataFailed`], with the buffer.
    fn get_data(&mut self, req: GetData, buf: Self::Buffer) -> Result<(), Self::Error>;

    /// Initiator: send a SCSI Command with its task buffer (`None` for a command without
    /// data). The datamover sends the immediate and unsolicited data the request names,
    /// answers the target's R2Ts from the buffer and places Data-In into it; the buffer
    /// comes back in [`Notify::DataComplete`] or [`Notify::DataFailed`] right before the
    /// command's SCSI Response.
    fn send_command(
        &mut self,
        req: SendCommand,
        buf: Option<Self::Buffer>,
    ) -> Result<(), Self::Error>;

    /// Deallocate_Task_Resources: drop a task's outstanding data transfers (an aborted task)
    /// and return its buffer if the datamover held one that can be handed back.
    fn cancel_data(&mut self, itt: Itt) -> Option<Self::Buffer>;

    /// Whether the peer took any of our output since the last call: a sign of life when
    /// nothing arrives because the peer is busy reading a backlog (keeps NOP-In pings from
    /// closing a slow but live connection).
    fn output_progress(&mut self) -> bool {
        false
    }

    /// Whether this datamover is iSER (RFC 7145): the login then offers or accepts
    /// `RDMAExtensions=Yes`.
    fn rdma_extensions(&self) -> bool {
        false
    }

    /// The largest data segment this datamover can receive in one PDU, if it has a limit
    /// (iSER: the size of its posted receive buffers). Engines lower the values their login
    /// declares to it ([`crate::text::LocalConfig::limit_recv_data_segment_length`]).
    fn max_recv_data_segment_length(&self) -> Option<u32> {
        None
    }

    /// Notice_Key_Values and Enable_Datamover: the operational values negotiated at login,
    /// in force for everything queued after this call and everything received after the
    /// last login response.
    fn notice_key_values(&mut self, params: &NegotiatedParams);

    /// Waits for the next notification, writing queued output meanwhile. Cancel-safe.
    /// `Ok(None)` when the peer closed the connection cleanly.
    fn recv(
        &mut self,
    ) -> impl Future<Output = Result<Option<Notify<Self::Buffer>>, Self::Error>> + Send;

    /// Writes everything queued.
    fn flush(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}
