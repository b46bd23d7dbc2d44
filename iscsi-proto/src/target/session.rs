//! The full feature phase of a target connection (RFC 7143 §4.2, §11), sans-IO.
//!
//! [`TargetSession`] takes what the datamover reports ([`TargetSession::handle_pdu`],
//! [`TargetSession::data_complete`], ...) and what the SCSI layer finished
//! ([`TargetSession::complete`]), and produces [`Event`]s: PDUs to send, tasks to run, data to
//! fetch. It owns the connection's StatSN and the session's CmdSN window (one connection per
//! session: MaxConnections is 1), the task table and the NOP-In keep-alive.
//!
//! It never sees R2T, solicited Data-Out or Data-In PDUs: it asks for data with
//! [`Event::GetData`] and hands data-in over in [`Reply::Data`]; a datamover does the rest.
//!
//! The drive loop of an engine:
//!
//! ```no_run
//! # use iscsi_proto::target::{TargetSession, Event, ScsiOutcome};
//! # fn drive(s: &mut TargetSession, now: std::time::Instant, pdu: iscsi_proto::Pdu) {
//! s.handle_pdu(now, pdu);
//! while let Some(event) = s.poll_event() {
//!     match event {
//!         Event::Send(pdu) => { /* datamover.send_control(pdu) */ }
//!         Event::Command(cmd) => { /* allocate cmd.edtl bytes, place cmd.immediate_data,
//!                                    run it now if cmd.ready */ }
//!         Event::Data { .. } => { /* copy into the task buffer */ }
//!         Event::GetData(req) => { /* datamover.get_data(req, buffer) */ }
//!         Event::Execute { .. } => { /* run the task: then s.complete(itt, outcome) */ }
//!         Event::Release { .. } => { /* drop the task buffer, datamover.cancel_data */ }
//!         _ => { /* TMF, SendTargets, parameters, close... */ }
//!     }
//! }
//! // Wake up at s.poll_timeout() and call s.handle_timeout(now).
//! # }
//! ```

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::datamover::{DataError, GetData, PutData, R2tRequest};
use crate::pdu::{
    AsyncEvent, AsyncMessage, DataOut, LogoutReason, LogoutRequest, LogoutResponse,
    LogoutResponseCode, Lun, NopIn, NopOut, Pdu, PduError, Reject, RejectReason, ScsiCommand,
    ScsiResponse, ScsiStatus, ServiceResponse, TaskAttribute, TaskMgmtFunction, TaskMgmtRequest,
    TaskMgmtResponse, TextRequest, TextResponse, TmfResponse,
};
use crate::serial::{CmdSn, DataSn, Itt, R2tSn, StatSn, Ttt};
use crate::text::{NegotiatedParams, Negotiator, Role, SessionType, TextAssembler, encode_text};

use super::discovery::{SendTargetsQuery, parse_send_targets};

/// Limits and timers of a target session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Commands the initiator may have outstanding (the CmdSN window when idle), 1..=65536.
    pub queue_depth: u32,
    /// Largest Expected Data Transfer Length accepted for one command; larger commands end
    /// with CHECK CONDITION (ILLEGAL REQUEST, INVALID FIELD IN CDB) before any buffer is made.
    pub max_transfer_len: u32,
    /// Bytes of task buffers a connection may hold at once; a command that would exceed it
    /// (while others are in flight) ends with TASK SET FULL.
    pub max_buffered: u64,
    /// Idle time after which a NOP-In ping is sent (`None`: never).
    pub nop_in_interval: Option<Duration>,
    /// How long a NOP-In ping waits for its NOP-Out before the connection is closed.
    pub nop_in_timeout: Duration,
    /// Largest text a Text request may assemble from C-bit pieces.
    pub max_text_len: usize,
    /// How long the CmdSN of a request discarded for a data digest error (answered with a
    /// Reject) may stay unfilled before the connection is closed. RFC 7143 §7.8 has the
    /// initiator send the command again or plug its CmdSN with ABORT TASK, and until then
    /// every later command waits; an initiator that does neither until its own command
    /// timeout (the Linux initiator: 30 s) would hold the whole session that long. Closing
    /// escalates to session recovery, as §7.8 allows. The deadline runs from the first
    /// damaged copy (a retry damaged again does not restart it). `None`: wait for ever.
    pub cmd_sn_gap_timeout: Option<Duration>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            queue_depth: 128,
            max_transfer_len: 64 << 20,
            max_buffered: 256 << 20,
            nop_in_interval: Some(Duration::from_secs(30)),
            nop_in_timeout: Duration::from_secs(30),
            max_text_len: 64 << 10,
            cmd_sn_gap_timeout: Some(Duration::from_secs(2)),
        }
    }
}

/// A new SCSI task for the engine ([`Event::Command`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCommand {
    /// Initiator Task Tag.
    pub itt: Itt,
    /// Logical unit.
    pub lun: Lun,
    /// The CDB's first 16 bytes.
    pub cdb: [u8; 16],
    /// CDB bytes beyond 16, if any.
    pub extended_cdb: Option<Bytes>,
    /// Expected Data Transfer Length: the size of the task buffer to allocate.
    pub edtl: u32,
    /// R bit: the initiator expects data-in.
    pub read: bool,
    /// W bit: the initiator sends data-out.
    pub write: bool,
    /// Task attribute.
    pub attr: TaskAttribute,
    /// Immediate data, for offset 0 of the buffer.
    pub immediate_data: Bytes,
    /// All data-out is in `immediate_data` (or there is none): run the task now. Otherwise
    /// wait for [`Event::Execute`].
    pub ready: bool,
}

impl NewCommand {
    /// The whole CDB: 16 bytes, plus the extended part.
    pub fn cdb_bytes(&self) -> Vec<u8> {
        let mut v = self.cdb.to_vec();
        if let Some(e) = &self.extended_cdb {
            v.extend_from_slice(e);
        }
        v
    }
}

/// A task management request for the engine's SCSI-level part ([`Event::TaskManagement`]).
/// The session has already aborted its own affected tasks; answer with
/// [`TargetSession::tmf_done`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TmfRequest {
    /// ITT of the TMF request.
    pub itt: Itt,
    /// The function.
    pub function: TaskMgmtFunction,
    /// Its logical unit.
    pub lun: Lun,
    /// For ABORT TASK: the referenced task, and whether it was found (and aborted).
    pub referenced: Option<(Itt, bool)>,
}

/// Why a connection ends ([`Event::Close`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The initiator logged out.
    Logout,
    /// A NOP-In ping went unanswered.
    PingTimeout,
    /// The initiator broke the protocol beyond what a Reject can answer.
    ProtocolError(String),
    /// TARGET COLD RESET: every connection of the target closes.
    ColdReset,
    /// A request discarded for a data digest error was neither sent again nor had its CmdSN
    /// plugged within [`SessionConfig::cmd_sn_gap_timeout`].
    CmdSnGap(CmdSn),
}

/// What the session asks of its engine and datamover.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// Send_Control: queue this PDU.
    Send(Pdu),
    /// A new task: allocate its buffer; run it now if `ready`.
    Command(NewCommand),
    /// Unsolicited data-out to copy into a task buffer.
    Data {
        /// The task.
        itt: Itt,
        /// Buffer offset.
        offset: u32,
        /// The bytes.
        data: Bytes,
    },
    /// Get_Data: hand the task buffer to the datamover with this request.
    GetData(GetData),
    /// All data-out of the task is in its buffer: run it.
    Execute {
        /// The task.
        itt: Itt,
    },
    /// The task ended without running (aborted, failed data transfer): drop its buffer and
    /// any outstanding Get_Data.
    Release {
        /// The task.
        itt: Itt,
    },
    /// A task management function to carry out at SCSI level.
    TaskManagement(TmfRequest),
    /// A SendTargets query: answer with [`TargetSession::send_targets_reply`].
    SendTargets {
        /// ITT of the Text request.
        itt: Itt,
        /// What was asked.
        query: SendTargetsQuery,
    },
    /// Operational values changed in full feature phase (a new MaxRecvDataSegmentLength):
    /// tell the datamover.
    KeyValues(NegotiatedParams),
    /// Close the connection once queued output is written.
    Close(CloseReason),
}

/// How a task ended at SCSI level ([`TargetSession::complete`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScsiOutcome {
    /// SCSI status.
    pub status: ScsiStatus,
    /// Sense data (for CHECK CONDITION).
    pub sense: Option<Bytes>,
    /// Bytes of data-in at the start of the task buffer.
    pub data_len: u32,
    /// Bytes the command itself would move (its SCSI transfer length), for residuals.
    pub transfer_len: u64,
}

impl ScsiOutcome {
    /// A status with no data and no sense.
    pub fn status(status: ScsiStatus) -> Self {
        ScsiOutcome {
            status,
            sense: None,
            data_len: 0,
            transfer_len: 0,
        }
    }
}

/// What to send for a completed task ([`TargetSession::complete`]).
#[derive(Debug)]
pub enum Reply {
    /// Send_Control this SCSI Response; the buffer can be dropped.
    Response(Pdu),
    /// Put_Data with the task buffer.
    Data(PutData),
}

/// Where a task is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Receiving unsolicited Data-Out.
    Unsolicited,
    /// A Get_Data is outstanding.
    Soliciting,
    /// Handed to the engine to run.
    Executing,
}

#[derive(Debug)]
struct Task {
    lun: Lun,
    edtl: u32,
    read: bool,
    /// Read and write: the status always goes in a SCSI Response.
    bidi: bool,
    /// Occupies a slot of the CmdSN window (not immediate).
    counted: bool,
    phase: Phase,
    /// Aborted while executing: its status is not sent.
    aborted: bool,
    /// Aborted by another I_T nexus (TAS=1): it ends with TASK ABORTED.
    aborted_by_other: bool,
    /// Some of its data-out was lost to a data digest error.
    crc_error: bool,
    /// End of the data-out received so far (in order).
    received: u32,
    /// End of the unsolicited burst.
    unsolicited_end: u32,
    next_data_sn: u32,
    r2t_sn: u32,
}

#[derive(Debug)]
struct PendingTmf {
    req: TmfRequest,
    waiting: Vec<Itt>,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    Running,
    /// A logout was received: waiting for executing tasks before answering.
    LoggingOut {
        itt: Itt,
        reason: LogoutReason,
    },
    Closed,
}

/// Sense data (fixed format, 18 bytes) for the iSCSI-level failures of RFC 7143 §11.4.7.2.
fn fixed_sense(key: u8, asc: u8, ascq: u8) -> Bytes {
    let mut s = [0u8; 18];
    s[0] = 0x70;
    s[2] = key & 0x0f;
    s[7] = 10;
    s[12] = asc;
    s[13] = ascq;
    Bytes::copy_from_slice(&s)
}

/// Statuses a Data-In may carry (RFC 7143 §11.7.4): GOOD, CONDITION MET and INTERMEDIATE
/// CONDITION MET.
fn status_may_ride(s: ScsiStatus) -> bool {
    matches!(s.0, 0x00 | 0x04 | 0x14)
}

const ILLEGAL_REQUEST: u8 = 0x05;
const ABORTED_COMMAND: u8 = 0x0b;

/// The full feature phase of one connection and its session (target side).
#[derive(Debug)]
pub struct TargetSession {
    cfg: SessionConfig,
    params: NegotiatedParams,
    negotiator: Negotiator,
    stat_sn: StatSn,
    exp_cmd_sn: CmdSn,
    /// Non-immediate tasks in the window (admitted, not yet answered).
    active: u32,
    buffered: u64,
    /// Commands that arrived ahead of ExpCmdSN, within the window.
    /// (`None`: a CmdSN consumed by an ABORT TASK of a command that never arrived.)
    pending: Vec<(CmdSn, Option<Pdu>)>,
    /// Unsolicited Data-Out of commands still waiting in `pending` (bounded).
    early_data: Vec<DataOut>,
    /// A Text request being received in C-bit pieces: its ITT and our TTT.
    text_in: Option<(Itt, Ttt)>,
    /// Answers to send before the SendTargets records of this ITT.
    text_prefix: Option<(Itt, Vec<(String, String)>)>,
    tasks: HashMap<Itt, Task>,
    next_ttt: u32,
    events: VecDeque<Event>,
    last_rx: Instant,
    ping: Option<(Ttt, Instant)>,
    /// CmdSNs of requests discarded for a data digest error, each with the time the
    /// connection closes if it is still unfilled then (at most one per CmdSN of the window).
    digest_gaps: Vec<(CmdSn, Instant)>,
    tmfs: Vec<PendingTmf>,
    text: TextAssembler,
    /// A text answer waiting for the initiator's continuation requests: (ITT, TTT, rest).
    text_out: Option<(Itt, Ttt, Bytes)>,
    state: State,
}

impl TargetSession {
    /// Starts the full feature phase after a successful login.
    ///
    /// `negotiator` is the login's (it carries on for Text negotiation); `exp_cmd_sn` the
    /// CmdSN the initiator will use next; `stat_sn` the next StatSN of the connection.
    pub fn new(
        cfg: SessionConfig,
        mut negotiator: Negotiator,
        exp_cmd_sn: CmdSn,
        stat_sn: StatSn,
        now: Instant,
    ) -> Self {
        let mut cfg = cfg;
        cfg.queue_depth = cfg.queue_depth.clamp(1, 1 << 16);
        negotiator.set_stage(crate::text::Stage::FullFeature);
        let params = negotiator.result();
        TargetSession {
            text: TextAssembler::new(cfg.max_text_len),
            cfg,
            params,
            negotiator,
            stat_sn,
            exp_cmd_sn,
            active: 0,
            buffered: 0,
            pending: Vec::new(),
            early_data: Vec::new(),
            text_in: None,
            text_prefix: None,
            tasks: HashMap::new(),
            next_ttt: 1,
            events: VecDeque::new(),
            last_rx: now,
            ping: None,
            digest_gaps: Vec::new(),
            tmfs: Vec::new(),
            text_out: None,
            state: State::Running,
        }
    }

    /// The operational values in force.
    pub fn params(&self) -> &NegotiatedParams {
        &self.params
    }

    /// The next StatSN.
    pub fn stat_sn(&self) -> StatSn {
        self.stat_sn
    }

    /// ExpCmdSN.
    pub fn exp_cmd_sn(&self) -> CmdSn {
        self.exp_cmd_sn
    }

    /// MaxCmdSN: ExpCmdSN plus the free slots of the window, minus one.
    pub fn max_cmd_sn(&self) -> CmdSn {
        let free = self.cfg.queue_depth.saturating_sub(self.active);
        self.exp_cmd_sn.add(free).sub(1)
    }

    /// Tasks in the table.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    /// Whether the session has ended ([`Event::Close`] was produced).
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The next event, if any. Call after every input until it returns `None`.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn push(&mut self, e: Event) {
        self.events.push_back(e);
    }

    fn take_stat_sn(&mut self) -> StatSn {
        let s = self.stat_sn;
        self.stat_sn = s.next();
        s
    }

    fn new_ttt(&mut self) -> Ttt {
        let t = self.next_ttt;
        self.next_ttt = match t.wrapping_add(1) {
            0xffff_ffff | 0 => 1,
            n => n,
        };
        Ttt(t)
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.push(Event::Close(reason));
        }
    }

    fn reject(&mut self, header: [u8; 48], reason: RejectReason) {
        let stat_sn = self.take_stat_sn();
        let pdu = Reject {
            reason,
            stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data_sn: DataSn(0),
            data: Bytes::copy_from_slice(&header),
        };
        self.push(Event::Send(Pdu::Reject(pdu)));
    }

    fn reject_pdu(&mut self, pdu: &Pdu, reason: RejectReason) {
        self.reject(pdu.bhs().to_array(), reason);
    }

    /// A PDU that failed to decode: answered with a Reject naming the reason, or the end of
    /// the connection when the PDU cannot be answered.
    pub fn handle_malformed(&mut self, now: Instant, header: &[u8], error: &PduError) {
        self.last_rx = now;
        if matches!(error, PduError::DataDigest { .. }) {
            self.spoiled_data_out(header);
            self.spoiled_request(now, header);
        }
        match (
            error.reject_reason(),
            <[u8; 48]>::try_from(header.get(..48).unwrap_or(&[])),
        ) {
            (Some(reason), Ok(h)) => self.reject(h, reason),
            _ => self.close(CloseReason::ProtocolError(error.to_string())),
        }
    }

    /// A request discarded for a data digest error (RFC 7143 §7.8): when it is a
    /// non-immediate one whose CmdSN is in the window and not yet counted, later commands wait
    /// for it to be sent again or plugged; [`SessionConfig::cmd_sn_gap_timeout`] bounds that.
    fn spoiled_request(&mut self, now: Instant, header: &[u8]) {
        let Some(timeout) = self.cfg.cmd_sn_gap_timeout else {
            return;
        };
        let Some(h) = header.get(..48) else {
            return;
        };
        // NOP-Out, SCSI Command, Text and Logout requests carry a CmdSN at bytes 24..28.
        let immediate = h[0] & 0x40 != 0;
        if immediate || !matches!(h[0] & 0x3f, 0x00 | 0x01 | 0x04 | 0x06) {
            return;
        }
        let sn = CmdSn(u32::from_be_bytes([h[24], h[25], h[26], h[27]]));
        // Only a CmdSN the target would have taken and has not got in any form: not one
        // outside an open window, not one already parked (an intact copy or a plug). While
        // logging out, a plug would be refused, so the Logout decides.
        let uncounted = self.state == State::Running
            && sn.is_within(self.exp_cmd_sn, self.max_cmd_sn())
            && !self.pending.iter().any(|(s, _)| *s == sn);
        // A retry that fails its digest again does not move the deadline.
        if uncounted
            && !self.digest_gaps.iter().any(|(s, _)| *s == sn)
            && let Some(deadline) = now.checked_add(timeout)
        {
            self.digest_gaps.push((sn, deadline));
        }
    }

    /// Forgets the digest-error gaps ExpCmdSN has passed.
    fn check_gap(&mut self) {
        let exp = self.exp_cmd_sn;
        self.digest_gaps.retain(|(sn, _)| !exp.is_after(*sn));
    }

    /// A PDU from the initiator (Control_Notify).
    pub fn handle_pdu(&mut self, now: Instant, pdu: Pdu) {
        self.handle_pdu_inner(now, pdu);
        self.check_gap();
    }

    fn handle_pdu_inner(&mut self, now: Instant, pdu: Pdu) {
        self.last_rx = now;
        if self.state == State::Closed {
            return;
        }
        match pdu {
            Pdu::DataOut(d) => return self.data_out(d),
            Pdu::SnackRequest(_) => {
                // ErrorRecoveryLevel 0: SNACK is not supported.
                return self.reject_pdu(&pdu, RejectReason::COMMAND_NOT_SUPPORTED);
            }
            Pdu::LoginRequest(_) => {
                return self.reject_pdu(&pdu, RejectReason::PROTOCOL_ERROR);
            }
            Pdu::ScsiCommand(_)
            | Pdu::TaskMgmtRequest(_)
            | Pdu::TextRequest(_)
            | Pdu::LogoutRequest(_)
            | Pdu::NopOut(_) => {}
            _ => return self.reject_pdu(&pdu, RejectReason::PROTOCOL_ERROR),
        }
        let (immediate, cmd_sn) = match &pdu {
            Pdu::ScsiCommand(c) => (c.immediate, c.cmd_sn),
            Pdu::TaskMgmtRequest(t) => (t.immediate, t.cmd_sn),
            Pdu::TextRequest(t) => (t.immediate, t.cmd_sn),
            Pdu::LogoutRequest(l) => (l.immediate, l.cmd_sn),
            Pdu::NopOut(n) => (n.immediate, n.cmd_sn),
            _ => (true, self.exp_cmd_sn),
        };
        if immediate {
            return self.dispatch(pdu, true);
        }
        // Non-immediate: ordered by CmdSN inside the window; outside it silently dropped
        // (RFC 7143 §3.2.2.1).
        let window_open = self.active < self.cfg.queue_depth;
        if cmd_sn == self.exp_cmd_sn && window_open {
            self.exp_cmd_sn = self.exp_cmd_sn.next();
            self.dispatch(pdu, false);
            self.drain_pending();
        } else if cmd_sn.is_after(self.exp_cmd_sn)
            && cmd_sn.is_at_or_before(self.max_cmd_sn())
            && !self.pending.iter().any(|(sn, _)| *sn == cmd_sn)
            && self.pending.len() < self.cfg.queue_depth as usize
            && self.parked_bytes() + pdu.data().len() as u64 <= self.cfg.max_buffered / 4
        {
            self.pending.push((cmd_sn, Some(pdu)));
        }
    }

    /// Bytes held for commands (and their data) waiting behind a CmdSN gap.
    fn parked_bytes(&self) -> u64 {
        let cmds: usize = self
            .pending
            .iter()
            .map(|(_, p)| p.as_ref().map_or(0, |p| p.data().len()))
            .sum();
        let data: usize = self.early_data.iter().map(|d| d.data.len()).sum();
        (cmds + data) as u64
    }

    fn drain_pending(&mut self) {
        while let Some(i) = self
            .pending
            .iter()
            .position(|(sn, _)| *sn == self.exp_cmd_sn)
        {
            let (_, pdu) = self.pending.swap_remove(i);
            self.exp_cmd_sn = self.exp_cmd_sn.next();
            let Some(pdu) = pdu else {
                continue;
            };
            self.dispatch(pdu, false);
        }
    }

    fn dispatch(&mut self, pdu: Pdu, immediate: bool) {
        if self.state == State::Closed {
            return;
        }
        if matches!(self.state, State::LoggingOut { .. }) && !matches!(pdu, Pdu::NopOut(_)) {
            return self.reject_pdu(&pdu, RejectReason::WAITING_FOR_LOGOUT);
        }
        match pdu {
            Pdu::ScsiCommand(c) => self.scsi_command(c, immediate),
            Pdu::TaskMgmtRequest(t) => self.task_management(t),
            Pdu::TextRequest(t) => self.text_request(t),
            Pdu::LogoutRequest(l) => self.logout(l),
            Pdu::NopOut(n) => self.nop_out(n),
            other => self.reject_pdu(&other, RejectReason::PROTOCOL_ERROR),
        }
    }

    /// Ends a task that never ran with a status (no data-in).
    fn respond_now(&mut self, itt: Itt, status: ScsiStatus, sense: Option<Bytes>, edtl: u32) {
        let stat_sn = self.take_stat_sn();
        let resp = ScsiResponse {
            response: ServiceResponse::COMPLETED,
            status,
            itt,
            stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            underflow: edtl > 0,
            residual_count: edtl,
            data: sense
                .map(|s| ScsiResponse::sense_segment(&s))
                .unwrap_or_default(),
            ..ScsiResponse::default()
        };
        self.push(Event::Send(Pdu::ScsiResponse(resp)));
    }

    fn scsi_command(&mut self, c: ScsiCommand, immediate: bool) {
        if self.params.session_type == SessionType::Discovery {
            return self.reject_pdu(&Pdu::ScsiCommand(c), RejectReason::PROTOCOL_ERROR);
        }
        if c.itt.is_reserved() || self.tasks.contains_key(&c.itt) {
            return self.reject_pdu(&Pdu::ScsiCommand(c), RejectReason::TASK_IN_PROGRESS);
        }
        // Immediate commands are outside the CmdSN window: bound them by the queue depth too.
        if immediate && self.tasks.len() >= self.cfg.queue_depth as usize {
            return self.reject_pdu(&Pdu::ScsiCommand(c), RejectReason::IMMEDIATE_COMMAND_REJECT);
        }
        let imm = u32::try_from(c.data.len()).unwrap_or(u32::MAX);
        let edtl = c.expected_data_len;
        let first_burst = self.params.first_burst_length.min(edtl);
        // Data-out the initiator may not send: answered, never sliced (RFC 7143 §11.4.7.2).
        let unexpected =
            imm > 0 && (!c.write || !self.params.immediate_data || imm > edtl || imm > first_burst);
        let unsolicited_pdus = c.write && !c.final_;
        if unsolicited_pdus && self.params.initial_r2t {
            return self.reject_pdu(&Pdu::ScsiCommand(c), RejectReason::PROTOCOL_ERROR);
        }
        if unexpected {
            // Unexpected unsolicited data (RFC 7143 §11.4.7.2: ABORTED COMMAND, 0C/0C).
            let sense = fixed_sense(ABORTED_COMMAND, 0x0c, 0x0c);
            return self.respond_now(c.itt, ScsiStatus::CHECK_CONDITION, Some(sense), edtl);
        }
        if edtl > self.cfg.max_transfer_len {
            let sense = fixed_sense(ILLEGAL_REQUEST, 0x24, 0x00);
            return self.respond_now(c.itt, ScsiStatus::CHECK_CONDITION, Some(sense), edtl);
        }
        if self.buffered + u64::from(edtl) > self.cfg.max_buffered && !self.tasks.is_empty() {
            return self.respond_now(c.itt, ScsiStatus::TASK_SET_FULL, None, edtl);
        }
        let write_len = if c.write { edtl } else { 0 };
        let unsolicited_end = if unsolicited_pdus { first_burst } else { imm };
        let ready = imm >= write_len;
        let phase = if ready {
            Phase::Executing
        } else if unsolicited_pdus && imm < unsolicited_end {
            Phase::Unsolicited
        } else {
            Phase::Soliciting
        };
        self.buffered += u64::from(edtl);
        if !immediate {
            self.active += 1;
        }
        self.tasks.insert(
            c.itt,
            Task {
                lun: c.lun,
                edtl,
                read: c.read,
                bidi: c.read && c.write,
                counted: !immediate,
                phase,
                aborted: false,
                aborted_by_other: false,
                crc_error: false,
                received: imm,
                unsolicited_end,
                next_data_sn: 0,
                r2t_sn: 0,
            },
        );
        self.push(Event::Command(NewCommand {
            itt: c.itt,
            lun: c.lun,
            cdb: c.cdb,
            extended_cdb: c.extended_cdb,
            edtl,
            read: c.read,
            write: c.write,
            attr: c.attr,
            immediate_data: c.data,
            ready,
        }));
        if phase == Phase::Soliciting {
            self.solicit(c.itt);
        }
        if !self.early_data.is_empty() {
            let itt = c.itt;
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.early_data)
                .into_iter()
                .partition(|d| d.itt == itt);
            self.early_data = rest;
            for d in mine {
                self.data_out(d);
            }
        }
    }

    /// Issues the next batch of R2Ts for a task (or marks it ready).
    fn solicit(&mut self, itt: Itt) {
        let max_burst = self.params.max_burst_length.max(512);
        let max_r2t = u32::from(self.params.max_outstanding_r2t.max(1));
        let Some(task) = self.tasks.get(&itt) else {
            return;
        };
        if task.crc_error {
            // Its unsolicited burst is over, with a piece lost to a digest error.
            return self.fail_task(itt, DataError::DataDigest);
        }
        let (lun, mut offset, end, mut r2t_sn) = (task.lun, task.received, task.edtl, task.r2t_sn);
        if offset >= end {
            if let Some(t) = self.tasks.get_mut(&itt) {
                t.phase = Phase::Executing;
            }
            return self.push(Event::Execute { itt });
        }
        let mut r2ts = Vec::new();
        while offset < end && (r2ts.len() as u32) < max_r2t {
            let len = (end - offset).min(max_burst);
            let ttt = self.new_ttt();
            r2ts.push(R2tRequest {
                ttt,
                r2t_sn: R2tSn(r2t_sn),
                offset,
                len,
            });
            r2t_sn = r2t_sn.wrapping_add(1);
            offset += len;
        }
        if let Some(t) = self.tasks.get_mut(&itt) {
            t.phase = Phase::Soliciting;
            t.r2t_sn = r2t_sn;
            t.received = offset;
        }
        let req = GetData {
            itt,
            lun,
            r2ts,
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        };
        self.push(Event::GetData(req));
    }

    fn data_out(&mut self, d: DataOut) {
        // Solicited Data-Out belongs to the datamover; one that reaches us names a transfer
        // that no longer exists (an aborted task): dropped.
        if !d.ttt.is_reserved() {
            return;
        }
        let Some(task) = self.tasks.get_mut(&d.itt) else {
            // Data of a command waiting behind a CmdSN gap is kept for it (bounded); data of
            // a task that ended already (refused or aborted) is dropped.
            let queued = self
                .pending
                .iter()
                .any(|(_, p)| matches!(p, Some(Pdu::ScsiCommand(c)) if c.itt == d.itt));
            if queued
                && self.early_data.len() < 4 * self.cfg.queue_depth as usize
                && self.parked_bytes() + d.data.len() as u64 <= self.cfg.max_buffered / 4
            {
                self.early_data.push(d);
            }
            return;
        };
        let len = u32::try_from(d.data.len()).unwrap_or(u32::MAX);
        if task.phase != Phase::Unsolicited {
            // Unsolicited data after the unsolicited burst: refused, the task goes on.
            let header = Pdu::DataOut(d).bhs().to_array();
            return self.reject(header, RejectReason::PROTOCOL_ERROR);
        }
        let bad = if d.data_sn.0 != task.next_data_sn {
            Some(DataError::DataSn {
                expected: task.next_data_sn,
                got: d.data_sn.0,
            })
        } else if d.buffer_offset != task.received
            || u64::from(d.buffer_offset) + u64::from(len) > u64::from(task.unsolicited_end)
        {
            Some(DataError::Range {
                offset: d.buffer_offset,
                len,
            })
        } else {
            None
        };
        let itt = d.itt;
        if let Some(e) = bad {
            let header = Pdu::DataOut(d.clone()).bhs().to_array();
            self.reject(header, RejectReason::PROTOCOL_ERROR);
            return self.fail_task(itt, e);
        }
        task.next_data_sn = task.next_data_sn.wrapping_add(1);
        task.received += len;
        let done = d.final_ || task.received >= task.unsolicited_end;
        if len > 0 {
            self.push(Event::Data {
                itt,
                offset: d.buffer_offset,
                data: d.data,
            });
        }
        if done {
            self.solicit(itt);
        }
    }

    /// An unsolicited Data-Out whose data digest failed: its place in the burst is taken (so
    /// the PDUs after it still fit), and the task ends with a CRC error once its data is in.
    fn spoiled_data_out(&mut self, header: &[u8]) {
        let Ok(h) = <&[u8; 48]>::try_from(header.get(..48).unwrap_or(&[])) else {
            return;
        };
        let b = crate::pdu::Bhs::from_array(h);
        if b.opcode != crate::pdu::Opcode::DATA_OUT || !Ttt(b.w[0]).is_reserved() {
            return;
        }
        let Some(task) = self.tasks.get_mut(&Itt(b.itt)) else {
            return;
        };
        let (data_sn, offset, len) = (b.w[4], b.w[5], b.data_segment_len);
        if task.phase != Phase::Unsolicited
            || data_sn != task.next_data_sn
            || offset != task.received
            || u64::from(offset) + u64::from(len) > u64::from(task.unsolicited_end)
        {
            return;
        }
        task.next_data_sn = task.next_data_sn.wrapping_add(1);
        task.received += len;
        task.crc_error = true;
        if b.final_bit() || task.received >= task.unsolicited_end {
            self.fail_task(Itt(b.itt), DataError::DataDigest);
        }
    }

    /// Ends a task whose data-out failed, with CHECK CONDITION (ABORTED COMMAND).
    fn fail_task(&mut self, itt: Itt, error: DataError) {
        let Some(task) = self.remove_task(itt) else {
            return;
        };
        self.push(Event::Release { itt });
        if !task.aborted {
            // PROTOCOL SERVICE CRC ERROR for data lost to a digest error (RFC 7143 §7.8),
            // DATA PHASE ERROR for data that broke the sequence rules.
            let (asc, ascq) = match error {
                DataError::DataDigest => (0x47, 0x05),
                _ => (0x4b, 0x00),
            };
            let sense = fixed_sense(ABORTED_COMMAND, asc, ascq);
            self.respond_now(itt, ScsiStatus::CHECK_CONDITION, Some(sense), task.edtl);
        }
        self.after_task_end(itt);
    }

    fn remove_task(&mut self, itt: Itt) -> Option<Task> {
        let task = self.tasks.remove(&itt)?;
        if task.counted {
            self.active = self.active.saturating_sub(1);
        }
        self.buffered = self.buffered.saturating_sub(u64::from(task.edtl));
        Some(task)
    }

    /// Data_Completion_Notify: the datamover fetched every transfer of the task's last
    /// [`Event::GetData`] (and gave the buffer back).
    pub fn data_complete(&mut self, itt: Itt) {
        if self
            .tasks
            .get(&itt)
            .is_some_and(|t| t.phase == Phase::Soliciting)
        {
            self.solicit(itt);
        }
    }

    /// The datamover gave up on a task's solicited data.
    pub fn data_failed(&mut self, itt: Itt, error: DataError) {
        self.fail_task(itt, error);
    }

    /// The SCSI layer finished a task (after [`NewCommand::ready`] or [`Event::Execute`]).
    ///
    /// Returns what to send, or `None` when nothing is sent (the task was aborted, or is
    /// unknown); the task buffer can then be dropped. Poll events afterwards: the end of a
    /// task can release a pending task management function or logout.
    pub fn complete(&mut self, itt: Itt, outcome: ScsiOutcome) -> Option<Reply> {
        let task = self.remove_task(itt)?;
        let reply = if task.aborted {
            None
        } else if task.aborted_by_other {
            let status = ScsiOutcome::status(ScsiStatus::TASK_ABORTED);
            Some(self.build_reply(itt, &task, status))
        } else {
            Some(self.build_reply(itt, &task, outcome))
        };
        self.after_task_end(itt);
        reply
    }

    fn build_reply(&mut self, itt: Itt, task: &Task, o: ScsiOutcome) -> Reply {
        let edtl = u64::from(task.edtl);
        let (overflow, underflow, residual) = match o.transfer_len.cmp(&edtl) {
            std::cmp::Ordering::Equal => (false, false, 0),
            std::cmp::Ordering::Greater => (true, false, o.transfer_len - edtl),
            std::cmp::Ordering::Less => (false, true, edtl - o.transfer_len),
        };
        let residual = u32::try_from(residual).unwrap_or(u32::MAX);
        let data_len = if task.read {
            o.data_len.min(task.edtl)
        } else {
            0
        };
        let has_sense = o.sense.is_some();
        let stat_sn = self.take_stat_sn();
        let resp = ScsiResponse {
            response: ServiceResponse::COMPLETED,
            status: o.status,
            itt,
            stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            overflow,
            underflow,
            residual_count: residual,
            // Data-In PDUs sent: counted by the datamover that sends them; 0 otherwise
            // (RFC 7143 §11.4.6).
            exp_data_sn: DataSn(0),
            data: o
                .sense
                .map(|s| ScsiResponse::sense_segment(&s))
                .unwrap_or_default(),
            ..ScsiResponse::default()
        };
        if data_len == 0 {
            return Reply::Response(Pdu::ScsiResponse(resp));
        }
        Reply::Data(PutData {
            itt,
            lun: task.lun,
            len: data_len,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            max_segment_len: self
                .params
                .max_send_data_segment_length(Role::Target)
                .max(512),
            max_burst_len: self.params.max_burst_length.max(512),
            response: resp,
            status_in_data: !has_sense && !task.bidi && status_may_ride(o.status),
        })
    }

    /// Bookkeeping after a task left the table: pending TMFs and logout may go on.
    fn after_task_end(&mut self, itt: Itt) {
        let mut ready = Vec::new();
        for (i, t) in self.tmfs.iter_mut().enumerate() {
            t.waiting.retain(|w| *w != itt);
            if t.waiting.is_empty() {
                ready.push(i);
            }
        }
        for i in ready.into_iter().rev() {
            let t = self.tmfs.remove(i);
            self.push(Event::TaskManagement(t.req));
        }
        self.maybe_finish_logout();
    }

    /// Task management (RFC 7143 §11.5). Tasks of this session are aborted here; the engine
    /// gets [`Event::TaskManagement`] once those that were running have ended.
    fn task_management(&mut self, t: TaskMgmtRequest) {
        let f = t.function;
        let affected: Vec<Itt> = match f {
            TaskMgmtFunction::ABORT_TASK => {
                let found = self
                    .tasks
                    .get(&t.referenced_task_tag)
                    .is_some_and(|task| task.lun == t.lun);
                if !found {
                    let response = if self.consume_ref_cmd_sn(&t) {
                        TmfResponse::COMPLETE
                    } else {
                        TmfResponse::TASK_DOES_NOT_EXIST
                    };
                    return self.tmf_done(t.itt, response);
                }
                vec![t.referenced_task_tag]
            }
            TaskMgmtFunction::ABORT_TASK_SET
            | TaskMgmtFunction::CLEAR_TASK_SET
            | TaskMgmtFunction::LOGICAL_UNIT_RESET => self
                .tasks
                .iter()
                .filter(|(_, task)| task.lun == t.lun)
                .map(|(itt, _)| *itt)
                .collect(),
            TaskMgmtFunction::TARGET_WARM_RESET | TaskMgmtFunction::TARGET_COLD_RESET => {
                self.tasks.keys().copied().collect()
            }
            TaskMgmtFunction::TASK_REASSIGN => {
                return self.tmf_done(t.itt, TmfResponse::REASSIGNMENT_NOT_SUPPORTED);
            }
            _ => return self.tmf_done(t.itt, TmfResponse::NOT_SUPPORTED),
        };
        let referenced =
            (f == TaskMgmtFunction::ABORT_TASK).then_some((t.referenced_task_tag, true));
        let waiting = self.abort_tasks(&affected);
        let req = TmfRequest {
            itt: t.itt,
            function: f,
            lun: t.lun,
            referenced,
        };
        if waiting.is_empty() {
            self.push(Event::TaskManagement(req));
        } else if self.tmfs.len() >= self.cfg.queue_depth as usize {
            // As many functions already wait for running tasks: refused (bounded memory).
            self.tmf_done(req.itt, TmfResponse::REJECTED);
        } else {
            self.tmfs.push(PendingTmf { req, waiting });
        }
    }

    /// ABORT TASK of a task that is not here (RFC 7143 §11.5.1, case b): when RefCmdSN is in
    /// the window and before the TMF's own CmdSN, that CmdSN counts as received (a command
    /// still queued behind a gap is dropped, one never seen leaves no gap) and the abort is
    /// complete.
    fn consume_ref_cmd_sn(&mut self, t: &TaskMgmtRequest) -> bool {
        let r = t.ref_cmd_sn;
        let in_window = r.is_at_or_after(self.exp_cmd_sn) && r.is_at_or_before(self.max_cmd_sn());
        if !in_window || !r.is_before(t.cmd_sn) {
            return false;
        }
        match self.pending.iter().position(|(sn, _)| *sn == r) {
            Some(i) => {
                let referenced = match &self.pending[i].1 {
                    Some(p) => p.itt() == t.referenced_task_tag,
                    None => true,
                };
                if !referenced {
                    return false;
                }
                self.pending[i].1 = None;
                self.early_data.retain(|d| d.itt != t.referenced_task_tag);
            }
            None if self.pending.len() < self.cfg.queue_depth as usize => {
                self.pending.push((r, None));
            }
            None => return false,
        }
        self.drain_pending();
        true
    }

    /// Aborts tasks: those not running end now; running ones lose their status. Returns the
    /// running ones.
    fn abort_tasks(&mut self, itts: &[Itt]) -> Vec<Itt> {
        let mut running = Vec::new();
        for &itt in itts {
            let Some(task) = self.tasks.get_mut(&itt) else {
                continue;
            };
            if task.phase == Phase::Executing {
                task.aborted = true;
                running.push(itt);
            } else {
                self.remove_task(itt);
                self.push(Event::Release { itt });
            }
        }
        running
    }

    /// Aborts every task of the session on `lun` (or all LUNs) for a task management
    /// function issued by another I_T nexus. With TAS=1 (what the control mode page of the
    /// units here reports) each ends with TASK ABORTED status (SAM-5 §5.6): tasks waiting for
    /// data at once, running ones when they complete. Returns the ITTs still running.
    pub fn abort_for_reset(&mut self, lun: Option<Lun>) -> Vec<Itt> {
        let itts: Vec<Itt> = self
            .tasks
            .iter()
            .filter(|(_, t)| lun.is_none_or(|l| t.lun == l))
            .map(|(i, _)| *i)
            .collect();
        let mut running = Vec::new();
        for itt in itts {
            let Some(task) = self.tasks.get_mut(&itt) else {
                continue;
            };
            if task.phase == Phase::Executing {
                task.aborted_by_other = true;
                running.push(itt);
            } else if let Some(task) = self.remove_task(itt) {
                self.push(Event::Release { itt });
                self.respond_now(itt, ScsiStatus::TASK_ABORTED, None, task.edtl);
                self.after_task_end(itt);
            }
        }
        running
    }

    /// Answers a task management request ([`Event::TaskManagement`]) with `response`.
    pub fn tmf_done(&mut self, itt: Itt, response: TmfResponse) {
        let stat_sn = self.take_stat_sn();
        let r = TaskMgmtResponse {
            response,
            itt,
            stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
        };
        self.push(Event::Send(Pdu::TaskMgmtResponse(r)));
    }

    fn nop_out(&mut self, n: NopOut) {
        if n.itt.is_reserved() {
            // An answer to our ping (or a NOP-Out that wants no answer).
            if let Some((ttt, _)) = self.ping
                && ttt == n.ttt
            {
                self.ping = None;
            }
            return;
        }
        let max = self.params.max_send_data_segment_length(Role::Target) as usize;
        let data = n.data.slice(..n.data.len().min(max));
        let stat_sn = self.take_stat_sn();
        let r = NopIn {
            lun: n.lun,
            itt: n.itt,
            ttt: Ttt::RESERVED,
            stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data,
        };
        self.push(Event::Send(Pdu::NopIn(r)));
    }

    fn text_request(&mut self, t: TextRequest) {
        // A request answering our F=0 response (a negotiation that goes on) carries its TTT.
        let mut continues_negotiation = false;
        if !t.ttt.is_reserved() {
            let continues_request = self.text_in == Some((t.itt, t.ttt));
            continues_negotiation = continues_request && !self.text.is_partial();
            match self.text_out.take() {
                // Continuation of our long answer.
                Some((itt, ttt, rest)) if itt == t.itt && ttt == t.ttt => {
                    return self.send_text(itt, rest);
                }
                // The next piece of a request sent with the C bit: handled below.
                _ if continues_request => {}
                _ => return self.reject_pdu(&Pdu::TextRequest(t), RejectReason::INVALID_PDU_FIELD),
            }
        } else if self.text_in.take().is_some() {
            // A new request abandons a partial one.
            self.text.reset();
        }
        self.text_out = None;
        let text = match self.text.feed(&t.data, t.cont) {
            Ok(Some(text)) => {
                self.text_in = None;
                text
            }
            Ok(None) => {
                // More pieces follow: answer with an empty response carrying a TTT that the
                // next piece echoes (RFC 7143 §11.10.2, §11.10.4).
                let ttt = self.new_ttt();
                self.text_in = Some((t.itt, ttt));
                return self.text_response(t.itt, ttt, false, Bytes::new());
            }
            Err(_) => {
                self.text.reset();
                return self.reject_pdu(&Pdu::TextRequest(t), RejectReason::PROTOCOL_ERROR);
            }
        };
        if !continues_negotiation {
            self.negotiator.begin_text_negotiation();
        }
        let out = match self.negotiator.handle_text(&text) {
            Ok(out) => out,
            Err(_) => return self.reject_pdu(&Pdu::TextRequest(t), RejectReason::PROTOCOL_ERROR),
        };
        let mut answers = out.responses;
        let mut query = None;
        for (k, v) in out.passthrough {
            if k == "SendTargets" {
                match parse_send_targets(&v, self.params.session_type) {
                    Some(q) => query = Some(q),
                    None => answers.push((k, "Reject".to_owned())),
                }
            } else {
                answers.push((k, "NotUnderstood".to_owned()));
            }
        }
        let new = self.negotiator.result();
        if new != self.params {
            self.params = new.clone();
            self.push(Event::KeyValues(new));
        }
        match query {
            Some(query) => {
                // The other answers go first, in the same response as the records.
                self.text_prefix = (!answers.is_empty()).then_some((t.itt, answers));
                self.push(Event::SendTargets { itt: t.itt, query })
            }
            None => {
                let data = encode_text(&answers)
                    .map(|b| b.freeze())
                    .unwrap_or_default();
                if t.final_ {
                    self.send_text(t.itt, data);
                } else {
                    // F=0: the initiator has more to say; answer F=0 with a TTT that its next
                    // request echoes (RFC 7143 §11.10.2, §11.11.1: F=1 only after F=1).
                    let ttt = self.new_ttt();
                    self.text_in = Some((t.itt, ttt));
                    self.text_response(t.itt, ttt, false, data);
                }
            }
        }
    }

    fn send_text(&mut self, itt: Itt, data: Bytes) {
        let max = self
            .params
            .max_send_data_segment_length(Role::Target)
            .max(512) as usize;
        if data.len() <= max {
            return self.text_response(itt, Ttt::RESERVED, true, data);
        }
        // Cut after a NUL where possible so that pairs stay whole in each piece.
        let head = data.slice(..max);
        let rest = data.slice(max..);
        let ttt = self.new_ttt();
        self.text_out = Some((itt, ttt, rest));
        let stat_sn = self.take_stat_sn();
        let r = TextResponse {
            final_: false,
            cont: true,
            lun: Lun(0),
            itt,
            ttt,
            stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data: head,
        };
        self.push(Event::Send(Pdu::TextResponse(r)));
    }

    fn text_response(&mut self, itt: Itt, ttt: Ttt, final_: bool, data: Bytes) {
        let stat_sn = self.take_stat_sn();
        let r = TextResponse {
            final_,
            cont: false,
            lun: Lun(0),
            itt,
            ttt,
            stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data,
        };
        self.push(Event::Send(Pdu::TextResponse(r)));
    }

    /// Answers a SendTargets query ([`Event::SendTargets`]) with the encoded text
    /// (see [`super::discovery::encode_send_targets`]).
    pub fn send_targets_reply(&mut self, itt: Itt, text: Bytes) {
        let text = match self.text_prefix.take() {
            Some((prefix_itt, answers)) if prefix_itt == itt => {
                let mut all = encode_text(&answers).unwrap_or_default();
                all.extend_from_slice(&text);
                all.freeze()
            }
            _ => text,
        };
        self.send_text(itt, text);
    }

    fn logout(&mut self, l: LogoutRequest) {
        let code = match l.reason {
            LogoutReason::CloseSession => None,
            LogoutReason::CloseConnection => None,
            LogoutReason::RemoveForRecovery => Some(LogoutResponseCode::RecoveryNotSupported),
        };
        if let Some(code) = code {
            return self.logout_response(l.itt, code);
        }
        // Tasks still waiting for data will not get it: they end now.
        let waiting: Vec<Itt> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.phase != Phase::Executing)
            .map(|(i, _)| *i)
            .collect();
        for itt in waiting {
            self.remove_task(itt);
            self.push(Event::Release { itt });
        }
        self.state = State::LoggingOut {
            itt: l.itt,
            reason: l.reason,
        };
        self.maybe_finish_logout();
    }

    fn maybe_finish_logout(&mut self) {
        if let State::LoggingOut { itt, .. } = self.state
            && self.tasks.is_empty()
        {
            self.logout_response(itt, LogoutResponseCode::Closed);
            self.close(CloseReason::Logout);
        }
    }

    fn logout_response(&mut self, itt: Itt, response: LogoutResponseCode) {
        let stat_sn = self.take_stat_sn();
        let r = LogoutResponse {
            response,
            itt,
            stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            time2wait: 0,
            time2retain: 0,
        };
        self.push(Event::Send(Pdu::LogoutResponse(r)));
    }

    /// Asks the initiator to log out (Asynchronous Message, event 1) within `within_secs`
    /// seconds: used for a graceful shutdown.
    pub fn request_logout(&mut self, within_secs: u16) {
        if self.state != State::Running {
            return;
        }
        let stat_sn = self.take_stat_sn();
        let m = AsyncMessage {
            lun: Lun(0),
            stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            event: AsyncEvent::LOGOUT_REQUEST,
            parameter3: within_secs,
            ..AsyncMessage::default()
        };
        self.push(Event::Send(Pdu::AsyncMessage(m)));
    }

    /// Ends the connection for a TARGET COLD RESET issued anywhere on the target.
    pub fn cold_reset(&mut self) {
        self.close(CloseReason::ColdReset);
    }

    /// The initiator showed it is alive without sending anything (it took our output): the
    /// idle timer restarts and an outstanding ping gets a new deadline.
    pub fn peer_alive(&mut self, now: Instant) {
        self.last_rx = now;
        if let Some((ttt, _)) = self.ping {
            self.ping = Some((ttt, now + self.cfg.nop_in_timeout));
        }
    }

    /// When [`TargetSession::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let ping = match self.ping {
            Some((_, deadline)) => Some(deadline),
            None => self.cfg.nop_in_interval.map(|i| self.last_rx + i),
        };
        let gap = self.digest_gaps.iter().map(|(_, deadline)| *deadline).min();
        match (ping, gap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Timers: sends a NOP-In ping after the idle interval, closes the connection when a ping
    /// goes unanswered or when the CmdSN of a request discarded for a data digest error stays
    /// unfilled (see [`SessionConfig::cmd_sn_gap_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        self.check_gap();
        if let Some(&(sn, _)) = self.digest_gaps.iter().find(|(_, d)| now >= *d) {
            self.digest_gaps.clear();
            return self.close(CloseReason::CmdSnGap(sn));
        }
        if let Some((_, deadline)) = self.ping {
            if now >= deadline {
                self.close(CloseReason::PingTimeout);
            }
            return;
        }
        let Some(interval) = self.cfg.nop_in_interval else {
            return;
        };
        if now < self.last_rx + interval {
            return;
        }
        let ttt = self.new_ttt();
        self.ping = Some((ttt, now + self.cfg.nop_in_timeout));
        // An unsolicited NOP-In carries the next StatSN without advancing it.
        let p = NopIn {
            lun: Lun(0),
            itt: Itt::RESERVED,
            ttt,
            stat_sn: self.stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data: Bytes::new(),
        };
        self.push(Event::Send(Pdu::NopIn(p)));
    }
}
