//! The full feature phase of an initiator connection (RFC 7143), sans-IO.
//!
//! [`InitiatorSession`] keeps the task table and the sequence numbers of one connection after
//! its login: it gives each command an Initiator Task Tag and a CmdSN, sends it only while the
//! target's window (ExpCmdSN..=MaxCmdSN) has room and queues it otherwise, decides how much of
//! a write goes unsolicited (ImmediateData, InitialR2T, FirstBurstLength), turns SCSI
//! Responses into [`CommandStatus`] (status, sense, residuals), answers the target's NOP-In
//! pings and sends its own keep-alive pings, runs task management (ABORT TASK, LOGICAL UNIT
//! RESET, TARGET WARM RESET), Text requests (SendTargets), Logout and Asynchronous Messages,
//! and enforces per-command deadlines (a command past its deadline is aborted with ABORT TASK
//! and completed with [`TaskError::TimedOut`] at once).
//!
//! It moves no data: a command goes out as [`Event::Command`] for the engine to hand to its
//! [`Datamover`](crate::datamover::Datamover) with the task buffer
//! ([`Datamover::send_command`](crate::datamover::Datamover::send_command)); the datamover
//! answers R2Ts and places Data-In itself, and returns the buffer before the status. The
//! engine reports what the datamover says with [`InitiatorSession::handle_pdu`],
//! [`InitiatorSession::data_failed`] and [`InitiatorSession::window`], and drives time with
//! [`InitiatorSession::poll_timeout`] / [`InitiatorSession::handle_timeout`].
//!
//! ```
//! use std::time::Instant;
//! use iscsi_proto::initiator::{Command, InitiatorSession, InitiatorSessionConfig, SessionEvent};
//! use iscsi_proto::initiator::InitiatorLoginOutcome;
//! # fn outcome() -> InitiatorLoginOutcome { unimplemented!() }
//! # fn run() {
//! let now = Instant::now();
//! let mut s = InitiatorSession::new(InitiatorSessionConfig::default(), &outcome(), now);
//! // READ CAPACITY (10) of LUN 0, 8 bytes of data-in.
//! let itt = s.submit(Command::read(0, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8), now).unwrap();
//! while let Some(ev) = s.poll_event() {
//!     match ev {
//!         SessionEvent::Command(req) => { /* datamover.send_command(req, Some(buffer)) */ }
//!         SessionEvent::Send(pdu) => { /* datamover.send_control(pdu) */ }
//!         _ => {}
//!     }
//! }
//! # let _ = itt; }
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::datamover::{DataError, Notify, SendCommand};
use crate::initiator::deadlines::Deadlines;
use crate::initiator::login::InitiatorLoginOutcome;
use crate::pdu::{
    AsyncEvent, AsyncMessage, BHS_LEN, LogoutReason, LogoutRequest, LogoutResponseCode, Lun, NopIn,
    NopOut, Pdu, PduError, Reject, RejectReason, ScsiCommand, ScsiResponse, ScsiStatus,
    ServiceResponse, TaskAttribute, TaskMgmtFunction, TaskMgmtRequest, TaskMgmtResponse,
    TextRequest, TextResponse, TmfResponse,
};
use crate::serial::{CmdSn, DataSn, Itt, StatSn, TagMap, Ttt};
use crate::text::NegotiatedParams;

/// Settings of an initiator connection's full feature phase.
#[derive(Clone, Debug)]
pub struct InitiatorSessionConfig {
    /// Most commands sent and not yet answered (on top of the target's CmdSN window).
    pub max_in_flight: usize,
    /// Most commands accepted by [`InitiatorSession::submit`] and not yet sent.
    pub max_queued: usize,
    /// Idle time after which we ping the target with a NOP-Out (`None`: never).
    pub nop_interval: Option<Duration>,
    /// How long a ping may go unanswered before the connection is declared dead.
    pub nop_timeout: Duration,
    /// How long a task management request, Text request or Logout may take.
    pub request_timeout: Duration,
    /// Largest Text response accepted (SendTargets answers).
    pub max_text_len: usize,
}

impl Default for InitiatorSessionConfig {
    fn default() -> Self {
        InitiatorSessionConfig {
            max_in_flight: 256,
            max_queued: 4096,
            nop_interval: Some(Duration::from_secs(5)),
            nop_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(15),
            max_text_len: 1 << 20,
        }
    }
}

/// Which way a command's data goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// No data.
    None,
    /// Data-in of up to this many bytes (a read).
    Read(u32),
    /// Data-out of this many bytes (a write).
    Write(u32),
}

/// Longest CDB a command may carry: 16 bytes in the header and up to 1004 more in an
/// Extended CDB AHS (RFC 7143 §11.3.6: the AHS length field counts 4-byte words).
pub const MAX_CDB_LEN: usize = 16 + 1004;

/// A CDB. The first 16 bytes (all of any common CDB) are kept inline, so building and
/// copying one allocates nothing; the rest of a longer one (variable-length CDBs) is shared.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Cdb {
    head: [u8; 16],
    len: usize,
    /// Bytes past the 16th.
    ext: Option<Bytes>,
}

impl Cdb {
    /// The CDB `bytes` (any length; [`InitiatorSession::submit`] refuses an empty one and one
    /// longer than [`MAX_CDB_LEN`]).
    pub fn new(bytes: &[u8]) -> Cdb {
        let mut head = [0u8; 16];
        let n = bytes.len().min(16);
        head[..n].copy_from_slice(&bytes[..n]);
        Cdb {
            head,
            len: bytes.len(),
            ext: (bytes.len() > 16).then(|| Bytes::copy_from_slice(&bytes[16..])),
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The operation code (the first byte).
    pub fn opcode(&self) -> Option<u8> {
        (self.len > 0).then_some(self.head[0])
    }

    /// The first bytes (all of a CDB of up to 16 bytes).
    pub fn head(&self) -> &[u8] {
        &self.head[..self.len.min(16)]
    }

    /// The first 16 bytes, zero-padded: what goes into the SCSI Command header.
    pub fn header_bytes(&self) -> [u8; 16] {
        self.head
    }

    /// The bytes past the 16th (an Extended CDB AHS), if any.
    pub fn extended(&self) -> Option<&Bytes> {
        self.ext.as_ref()
    }

    /// The whole CDB as one vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = self.head().to_vec();
        if let Some(e) = &self.ext {
            v.extend_from_slice(e);
        }
        v
    }
}

impl From<&[u8]> for Cdb {
    fn from(b: &[u8]) -> Cdb {
        Cdb::new(b)
    }
}

impl<const N: usize> From<&[u8; N]> for Cdb {
    fn from(b: &[u8; N]) -> Cdb {
        Cdb::new(b)
    }
}

impl<const N: usize> From<[u8; N]> for Cdb {
    fn from(b: [u8; N]) -> Cdb {
        Cdb::new(&b)
    }
}

impl std::fmt::Debug for Cdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cdb(")?;
        for b in self.head() {
            write!(f, "{b:02x}")?;
        }
        if let Some(e) = &self.ext {
            write!(f, "+{} bytes", e.len())?;
        }
        write!(f, ")")
    }
}

/// A SCSI command to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    /// Logical unit.
    pub lun: Lun,
    /// The CDB (up to 16 bytes in the header, the rest in an Extended CDB AHS).
    pub cdb: Cdb,
    /// Data direction and length.
    pub direction: Direction,
    /// Task attribute.
    pub attr: TaskAttribute,
    /// When to give up: the task is aborted and completes with [`TaskError::TimedOut`].
    pub deadline: Option<Instant>,
}

impl Command {
    /// A command on LUN `lun` (index) with no data.
    pub fn new(lun: u16, cdb: &[u8]) -> Command {
        Command {
            lun: Lun::from_index(lun).unwrap_or_default(),
            cdb: Cdb::new(cdb),
            direction: Direction::None,
            attr: TaskAttribute::Simple,
            deadline: None,
        }
    }

    /// A command reading up to `len` bytes.
    pub fn read(lun: u16, cdb: &[u8], len: u32) -> Command {
        Command {
            direction: Direction::Read(len),
            ..Command::new(lun, cdb)
        }
    }

    /// A command writing `len` bytes.
    pub fn write(lun: u16, cdb: &[u8], len: u32) -> Command {
        Command {
            direction: Direction::Write(len),
            ..Command::new(lun, cdb)
        }
    }

    /// The same with a deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Command {
        self.deadline = Some(deadline);
        self
    }
}

/// Bytes the target did not transfer, or could not (RFC 7143 §11.4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Residual {
    /// Exactly the expected length moved.
    #[default]
    None,
    /// This many fewer bytes than expected moved.
    Underflow(u32),
    /// The command wanted this many more bytes than expected.
    Overflow(u32),
}

/// A command's outcome from the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandStatus {
    /// iSCSI service response (0: command completed at target).
    pub response: ServiceResponse,
    /// SCSI status.
    pub status: ScsiStatus,
    /// Sense data (with CHECK CONDITION).
    pub sense: Option<Bytes>,
    /// Residual.
    pub residual: Residual,
}

impl CommandStatus {
    /// GOOD status from a completed command.
    pub fn is_good(&self) -> bool {
        self.response == ServiceResponse::COMPLETED && self.status == ScsiStatus::GOOD
    }

    /// Bytes of data moved out of `expected`, per the residual.
    pub fn transferred(&self, expected: u32) -> u32 {
        match self.residual {
            Residual::Underflow(n) => expected.saturating_sub(n),
            _ => expected,
        }
    }
}

/// Why a task ended without a status from the target.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// Its deadline passed; it was aborted.
    #[error("the command timed out and was aborted")]
    TimedOut,
    /// A task management function ended it (ABORT TASK, LU or target reset).
    #[error("the command was aborted by task management")]
    Aborted,
    /// The target rejected the PDU; it did not run. When the target had not counted the
    /// command's CmdSN, the session plugs the gap with an ABORT TASK naming it (RFC 7143
    /// §11.17.1, §11.5.1) so that later commands are not held up. A Data Digest Error
    /// (reason 0x02) means the command's immediate data was damaged on the way and the
    /// target discarded it: over a transport that does not duplicate PDUs (TCP, iSER) it did
    /// not run.
    #[error("the target rejected the command (reason {0:?})")]
    Rejected(RejectReason),
    /// Its data-in broke the rules (DataSN gap, out of range, digest); the status that came
    /// with it is given but the data cannot be trusted.
    #[error("data-in failed: {error}")]
    Data {
        /// What went wrong.
        error: DataError,
        /// The status the target sent.
        status: Box<CommandStatus>,
    },
    /// The connection ended before the status arrived. `sent`: the command had reached the
    /// wire (so the target may have run it).
    #[error("the connection ended before the command's status (sent: {sent})")]
    ConnectionLost {
        /// Whether the command was sent.
        sent: bool,
    },
}

/// Why [`InitiatorSession::submit`] refused a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    /// `max_queued` commands already wait.
    #[error("too many commands queued")]
    QueueFull,
    /// The session is logging out or closed.
    #[error("the connection is closing")]
    Closing,
    /// The CDB is empty or too long (16 bytes plus at most 1004 in the AHS).
    #[error("invalid CDB length {0}")]
    CdbLength(usize),
    /// A Text request longer than the target's MaxRecvDataSegmentLength.
    #[error("text of {len} bytes where the target takes at most {max}")]
    TextLength {
        /// The text's length.
        len: usize,
        /// The target's MaxRecvDataSegmentLength.
        max: u32,
    },
}

/// Why the connection should end.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// Logout completed (the response code says how).
    Logout(LogoutResponseCode),
    /// A ping went unanswered.
    PingTimeout,
    /// A task management, Text or Logout request went unanswered.
    RequestTimeout,
    /// The target broke the protocol.
    ProtocolError(String),
    /// The target announced it drops the connection (Asynchronous Message 2 or 3); reconnect
    /// after `time2wait` seconds.
    TargetDrop {
        /// DefaultTime2Wait from the message.
        time2wait: u16,
    },
}

/// What the engine must do next.
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionEvent {
    /// Send this control PDU ([`Datamover::send_control`](crate::datamover::Datamover::send_control)).
    Send(Pdu),
    /// Send this command with the task's buffer ([`Datamover::send_command`](crate::datamover::Datamover::send_command)).
    Command(SendCommand),
    /// A command ended. Its buffer is the one the datamover gave back, or (for a command
    /// that ended without its status) the one [`Datamover::cancel_data`](crate::datamover::Datamover::cancel_data) returns.
    Complete {
        /// The command's tag from [`InitiatorSession::submit`].
        itt: Itt,
        /// Its outcome.
        result: Result<CommandStatus, TaskError>,
    },
    /// A task management request of ours was answered.
    TaskManagement {
        /// The request's tag.
        itt: Itt,
        /// The answer.
        response: TmfResponse,
    },
    /// A Text request of ours was answered (the whole text, continuations included), or
    /// failed (`None`).
    Text {
        /// The request's tag.
        itt: Itt,
        /// The text.
        text: Option<Vec<u8>>,
    },
    /// The target asked us to log out within `within_secs` (Asynchronous Message 1).
    LogoutRequested {
        /// Parameter3 of the message.
        within_secs: u16,
    },
    /// An Asynchronous Message for the application (a SCSI asynchronous event with its sense
    /// data, or a vendor event).
    Async(AsyncMessage),
    /// The connection is done: close it.
    Close(CloseReason),
}

/// Where a task stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TaskState {
    /// Waiting for window room.
    Queued,
    /// Sent, waiting for its status.
    Running,
    /// Completed for the caller (timed out) while an ABORT TASK runs; the tag stays taken.
    Abandoned,
}

#[derive(Debug)]
struct Task {
    cmd: Command,
    cmd_sn: CmdSn,
    state: TaskState,
    data_error: Option<DataError>,
}

/// A request of ours other than a SCSI command.
#[derive(Debug)]
enum Request {
    /// A NOP-Out ping.
    Ping,
    /// A task management function; for ABORT TASK the referenced task, for resets their LUN
    /// (`None`: the whole target) and the CmdSN before which tasks are affected.
    Tmf {
        lun: Option<Lun>,
        target: Option<Itt>,
        before: CmdSn,
        /// Our own abort of a timed-out task: not reported.
        internal: bool,
    },
    /// A Text request and the answer so far.
    Text { answer: Vec<u8> },
    /// Logout.
    Logout,
}

#[derive(Debug)]
struct Pending {
    request: Request,
    deadline: Instant,
}

/// Ordered work waiting for window room.
#[derive(Debug)]
enum Queued {
    Command(Itt),
    Text(Itt, Bytes, Ttt),
    Logout(Itt, LogoutReason),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Running,
    LoggingOut,
    Closed,
}

/// An initiator connection in full feature phase (see the module documentation).
#[derive(Debug)]
pub struct InitiatorSession {
    cfg: InitiatorSessionConfig,
    params: NegotiatedParams,
    cid: u16,
    cmd_sn: CmdSn,
    exp_cmd_sn: CmdSn,
    max_cmd_sn: CmdSn,
    exp_stat_sn: StatSn,
    next_itt: u32,
    tasks: TagMap<Itt, Task>,
    in_flight: usize,
    requests: TagMap<Itt, Pending>,
    queue: VecDeque<Queued>,
    deadlines: Deadlines,
    events: VecDeque<SessionEvent>,
    state: State,
    last_heard: Instant,
    ping: Option<Itt>,
}

impl InitiatorSession {
    /// The full feature phase after `login`, at time `now`.
    pub fn new(
        cfg: InitiatorSessionConfig,
        login: &InitiatorLoginOutcome,
        now: Instant,
    ) -> InitiatorSession {
        InitiatorSession {
            cfg,
            params: login.params.clone(),
            cid: 0,
            cmd_sn: login.cmd_sn,
            exp_cmd_sn: login.exp_cmd_sn,
            max_cmd_sn: login.max_cmd_sn,
            exp_stat_sn: login.exp_stat_sn,
            next_itt: 0x1000,
            tasks: TagMap::default(),
            in_flight: 0,
            requests: TagMap::default(),
            queue: VecDeque::new(),
            deadlines: Deadlines::default(),
            events: VecDeque::new(),
            state: State::Running,
            last_heard: now,
            ping: None,
        }
    }

    /// Sets the connection ID used in a connection Logout (default 0).
    pub fn set_cid(&mut self, cid: u16) {
        self.cid = cid;
    }

    /// The operational values in force.
    pub fn params(&self) -> &NegotiatedParams {
        &self.params
    }

    /// The next CmdSN to be used.
    pub fn cmd_sn(&self) -> CmdSn {
        self.cmd_sn
    }

    /// The target's ExpCmdSN as last seen.
    pub fn exp_cmd_sn(&self) -> CmdSn {
        self.exp_cmd_sn
    }

    /// The target's MaxCmdSN as last seen.
    pub fn max_cmd_sn(&self) -> CmdSn {
        self.max_cmd_sn
    }

    /// The StatSN we expect next.
    pub fn exp_stat_sn(&self) -> StatSn {
        self.exp_stat_sn
    }

    /// Commands not yet completed (queued or running).
    pub fn task_count(&self) -> usize {
        self.tasks
            .values()
            .filter(|t| t.state != TaskState::Abandoned)
            .count()
    }

    /// Commands sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether the connection is done.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The next thing to do.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    fn alloc_itt(&mut self) -> Itt {
        loop {
            let itt = Itt(self.next_itt);
            self.next_itt = self.next_itt.wrapping_add(1);
            if !itt.is_reserved()
                && !self.tasks.contains_key(&itt)
                && !self.requests.contains_key(&itt)
            {
                return itt;
            }
        }
    }

    /// Whether the window has room for a non-immediate PDU.
    fn window_open(&self) -> bool {
        self.cmd_sn.is_at_or_before(self.max_cmd_sn)
    }

    /// Queues a command; it is sent ([`SessionEvent::Command`]) once the window has room.
    /// Returns its tag, by which the datamover and [`SessionEvent::Complete`] name it.
    pub fn submit(&mut self, cmd: Command, _now: Instant) -> Result<Itt, SubmitError> {
        if self.state != State::Running {
            return Err(SubmitError::Closing);
        }
        if cmd.cdb.is_empty() || cmd.cdb.len() > MAX_CDB_LEN {
            return Err(SubmitError::CdbLength(cmd.cdb.len()));
        }
        if self.queue.len() >= self.cfg.max_queued {
            return Err(SubmitError::QueueFull);
        }
        let itt = self.alloc_itt();
        if let Some(d) = cmd.deadline {
            self.deadlines.insert(d, itt);
        }
        self.tasks.insert(
            itt,
            Task {
                cmd,
                cmd_sn: CmdSn(0),
                state: TaskState::Queued,
                data_error: None,
            },
        );
        self.queue.push_back(Queued::Command(itt));
        self.pump();
        Ok(itt)
    }

    /// Sends what the window and `max_in_flight` allow, in order.
    fn pump(&mut self) {
        while self.window_open() {
            let Some(front) = self.queue.front() else {
                return;
            };
            if matches!(front, Queued::Command(_)) && self.in_flight >= self.cfg.max_in_flight {
                return;
            }
            let Some(q) = self.queue.pop_front() else {
                return;
            };
            match q {
                Queued::Command(itt) => self.send_command(itt),
                Queued::Text(itt, text, ttt) => self.send_text(itt, text, ttt),
                Queued::Logout(itt, reason) => {
                    let pdu = LogoutRequest {
                        immediate: false,
                        reason,
                        itt,
                        cid: self.cid,
                        cmd_sn: self.cmd_sn,
                        exp_stat_sn: self.exp_stat_sn,
                    };
                    self.cmd_sn = self.cmd_sn.next();
                    self.events
                        .push_back(SessionEvent::Send(Pdu::LogoutRequest(pdu)));
                }
            }
        }
    }

    fn send_command(&mut self, itt: Itt) {
        let cmd_sn = self.cmd_sn;
        let exp_stat_sn = self.exp_stat_sn;
        let Some(task) = self.tasks.get_mut(&itt) else {
            return;
        };
        if task.state != TaskState::Queued {
            return;
        }
        self.cmd_sn = self.cmd_sn.next();
        task.cmd_sn = cmd_sn;
        task.state = TaskState::Running;
        self.in_flight += 1;
        let c = &task.cmd;
        let (read, write, len) = match c.direction {
            Direction::None => (false, false, 0),
            Direction::Read(n) => (true, false, n),
            Direction::Write(n) => (false, n > 0, n),
        };
        let p = &self.params;
        let (immediate_len, unsolicited_len) = if write {
            let imm = if p.immediate_data {
                len.min(p.first_burst_length)
                    .min(p.max_send_data_segment_length(crate::text::Role::Initiator))
            } else {
                0
            };
            let unsol = if p.initial_r2t {
                imm
            } else {
                len.min(p.first_burst_length).max(imm)
            };
            (imm, unsol)
        } else {
            (0, 0)
        };
        let command = ScsiCommand {
            immediate: false,
            final_: unsolicited_len == immediate_len,
            read,
            write,
            attr: c.attr,
            lun: c.lun,
            itt,
            expected_data_len: len,
            cmd_sn,
            exp_stat_sn,
            cdb: c.cdb.header_bytes(),
            extended_cdb: c.cdb.extended().cloned(),
            bidi_read_len: None,
            data: Bytes::new(),
        };
        self.events.push_back(SessionEvent::Command(SendCommand {
            command,
            immediate_len,
            unsolicited_len,
        }));
    }

    fn send_text(&mut self, itt: Itt, text: Bytes, ttt: Ttt) {
        let pdu = TextRequest {
            immediate: false,
            final_: true,
            cont: false,
            lun: Lun::default(),
            itt,
            ttt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: text,
        };
        self.cmd_sn = self.cmd_sn.next();
        self.events
            .push_back(SessionEvent::Send(Pdu::TextRequest(pdu)));
    }

    /// Sends a Text request (e.g. `SendTargets=All\0` in a discovery session); answered by
    /// [`SessionEvent::Text`]. The text must fit the target's MaxRecvDataSegmentLength.
    pub fn text_request(&mut self, text: Bytes, now: Instant) -> Result<Itt, SubmitError> {
        if self.state != State::Running {
            return Err(SubmitError::Closing);
        }
        let max = self
            .params
            .max_send_data_segment_length(crate::text::Role::Initiator);
        if text.len() > max as usize {
            return Err(SubmitError::TextLength {
                len: text.len(),
                max,
            });
        }
        let itt = self.alloc_itt();
        self.add_request(
            itt,
            Request::Text { answer: Vec::new() },
            now + self.cfg.request_timeout,
        );
        self.queue.push_back(Queued::Text(itt, text, Ttt::RESERVED));
        self.pump();
        Ok(itt)
    }

    fn add_request(&mut self, itt: Itt, request: Request, deadline: Instant) {
        self.deadlines.insert(deadline, itt);
        self.requests.insert(itt, Pending { request, deadline });
    }

    /// Logs the session out (after the commands already queued); the connection closes with
    /// [`CloseReason::Logout`]. New commands are refused from now on.
    pub fn logout(&mut self, now: Instant) -> Itt {
        self.logout_with(LogoutReason::CloseSession, now)
    }

    /// Logout with an explicit reason (close the session, or only this connection).
    pub fn logout_with(&mut self, reason: LogoutReason, now: Instant) -> Itt {
        let itt = self.alloc_itt();
        if self.state == State::Running {
            self.state = State::LoggingOut;
        }
        self.add_request(itt, Request::Logout, now + self.cfg.request_timeout);
        self.queue.push_back(Queued::Logout(itt, reason));
        self.pump();
        itt
    }

    fn tmf(
        &mut self,
        function: TaskMgmtFunction,
        lun: Lun,
        target: Option<Itt>,
        ref_cmd_sn: CmdSn,
        internal: bool,
        now: Instant,
    ) -> Itt {
        let itt = self.alloc_itt();
        let scope = match function {
            TaskMgmtFunction::TARGET_WARM_RESET | TaskMgmtFunction::TARGET_COLD_RESET => None,
            _ => Some(lun),
        };
        self.add_request(
            itt,
            Request::Tmf {
                lun: scope,
                target,
                before: self.cmd_sn,
                internal,
            },
            now + self.cfg.request_timeout,
        );
        let pdu = TaskMgmtRequest {
            immediate: true,
            function,
            lun,
            itt,
            referenced_task_tag: target.unwrap_or(Itt::RESERVED),
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            ref_cmd_sn,
            exp_data_sn: DataSn(0),
        };
        self.events
            .push_back(SessionEvent::Send(Pdu::TaskMgmtRequest(pdu)));
        itt
    }

    /// ABORT TASK for a command of ours. A command still queued here ends at once with
    /// [`TaskError::Aborted`] (and `None` is returned); a running one ends when the target
    /// answers (its [`SessionEvent::Complete`] unless its status came first, then
    /// [`SessionEvent::TaskManagement`] with the returned tag).
    pub fn abort_task(&mut self, itt: Itt, now: Instant) -> Option<Itt> {
        let task = self.tasks.get(&itt)?;
        match task.state {
            TaskState::Queued => {
                self.finish(itt, Err(TaskError::Aborted));
                None
            }
            TaskState::Running => {
                let (lun, sn) = (task.cmd.lun, task.cmd_sn);
                Some(self.tmf(TaskMgmtFunction::ABORT_TASK, lun, Some(itt), sn, false, now))
            }
            TaskState::Abandoned => None,
        }
    }

    /// LOGICAL UNIT RESET: on success every command of ours on `lun` sent before it ends
    /// with [`TaskError::Aborted`].
    pub fn lu_reset(&mut self, lun: Lun, now: Instant) -> Itt {
        let sn = self.cmd_sn;
        self.tmf(
            TaskMgmtFunction::LOGICAL_UNIT_RESET,
            lun,
            None,
            sn,
            false,
            now,
        )
    }

    /// TARGET WARM RESET: on success every command of ours sent before it ends with
    /// [`TaskError::Aborted`].
    pub fn target_reset(&mut self, now: Instant) -> Itt {
        let sn = self.cmd_sn;
        self.tmf(
            TaskMgmtFunction::TARGET_WARM_RESET,
            Lun::default(),
            None,
            sn,
            false,
            now,
        )
    }

    /// Forgets the deadline `at` of `itt`, whose task or request was just removed.
    fn drop_deadline(&mut self, at: Instant, itt: Itt) {
        let (tasks, requests) = (&self.tasks, &self.requests);
        self.deadlines
            .remove(at, itt, tasks.len() + requests.len(), |d, i| {
                deadline_live(tasks, requests, d, i)
            });
    }

    /// Ends a task for the caller.
    fn finish(&mut self, itt: Itt, result: Result<CommandStatus, TaskError>) {
        if let Some(t) = self.tasks.remove(&itt) {
            if t.state == TaskState::Running {
                self.in_flight -= 1;
            }
            if let Some(d) = t.cmd.deadline {
                self.drop_deadline(d, itt);
            }
            if t.state == TaskState::Queued {
                self.queue
                    .retain(|q| !matches!(q, Queued::Command(i) if *i == itt));
            }
            if t.state != TaskState::Abandoned {
                self.events
                    .push_back(SessionEvent::Complete { itt, result });
            }
        }
        self.pump();
    }

    /// Takes one datamover notification: PDUs, malformed PDUs and CmdSN windows go to the
    /// session; a task buffer coming back ([`Notify::DataComplete`], [`Notify::DataFailed`],
    /// the latter also marking the task) is returned for the engine to keep until the
    /// task's [`SessionEvent::Complete`].
    pub fn handle_notify<B>(&mut self, now: Instant, n: Notify<B>) -> Option<(Itt, B)> {
        match n {
            Notify::Control(pdu) => self.handle_pdu(now, pdu),
            Notify::Malformed { header, error } => self.handle_malformed(now, &header, &error),
            Notify::DataComplete { itt, buf } => return Some((itt, buf)),
            Notify::DataFailed { itt, buf, error } => {
                self.data_failed(itt, error);
                return Some((itt, buf));
            }
            Notify::Window {
                exp_cmd_sn,
                max_cmd_sn,
            } => self.window(exp_cmd_sn, max_cmd_sn),
        }
        None
    }

    /// The datamover could not place a command's data-in ([`crate::datamover::Notify::DataFailed`]);
    /// the command completes with [`TaskError::Data`] when its status arrives.
    pub fn data_failed(&mut self, itt: Itt, error: DataError) {
        if let Some(t) = self.tasks.get_mut(&itt) {
            t.data_error = Some(error);
        }
    }

    /// A CmdSN window reported by the datamover ([`crate::datamover::Notify::Window`]).
    pub fn window(&mut self, exp_cmd_sn: CmdSn, max_cmd_sn: CmdSn) {
        self.update_window(exp_cmd_sn, max_cmd_sn);
        self.pump();
    }

    fn update_window(&mut self, exp: CmdSn, max: CmdSn) {
        // RFC 7143 §4.2.2.1: ignore a MaxCmdSN below ExpCmdSN - 1; never move backwards.
        if max.is_before(exp.sub(1)) {
            return;
        }
        if exp.is_after(self.exp_cmd_sn) {
            self.exp_cmd_sn = exp;
        }
        if max.is_after(self.max_cmd_sn) {
            self.max_cmd_sn = max;
        }
    }

    fn note_stat_sn(&mut self, stat_sn: StatSn) {
        let next = stat_sn.next();
        if next.is_after(self.exp_stat_sn) {
            self.exp_stat_sn = next;
        }
    }

    fn protocol_error(&mut self, why: String) {
        self.close(CloseReason::ProtocolError(why));
    }

    fn close(&mut self, reason: CloseReason) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.events.push_back(SessionEvent::Close(reason));
        }
    }

    /// Ends the connection's bookkeeping: every command not completed is reported with
    /// [`TaskError::ConnectionLost`] (saying whether it was sent), pending requests fail.
    /// For the engine after the transport failed or the connection closed.
    pub fn connection_lost(&mut self) {
        // The sent ones in CmdSN order, then the queued ones in submission order.
        let mut sent: Vec<(CmdSn, Itt)> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.state != TaskState::Queued)
            .map(|(i, t)| (t.cmd_sn, *i))
            .collect();
        sent.sort_by(|a, b| a.0.serial_cmp(b.0).unwrap_or(std::cmp::Ordering::Equal));
        let queued = self.queue.iter().filter_map(|q| match q {
            Queued::Command(itt) => Some((false, *itt)),
            _ => None,
        });
        let order: Vec<(bool, Itt)> = sent.iter().map(|(_, i)| (true, *i)).chain(queued).collect();
        for (sent, itt) in order {
            if let Some(t) = self.tasks.remove(&itt)
                && t.state != TaskState::Abandoned
            {
                self.events.push_back(SessionEvent::Complete {
                    itt,
                    result: Err(TaskError::ConnectionLost { sent }),
                });
            }
        }
        self.in_flight = 0;
        self.queue.clear();
        self.deadlines.clear();
        let reqs: Vec<(Itt, Pending)> = self.requests.drain().collect();
        for (itt, p) in reqs {
            self.fail_request(itt, p.request);
        }
        self.state = State::Closed;
    }

    fn fail_request(&mut self, itt: Itt, r: Request) {
        match r {
            Request::Tmf {
                internal: false, ..
            } => self.events.push_back(SessionEvent::TaskManagement {
                itt,
                response: TmfResponse::REJECTED,
            }),
            Request::Text { .. } => self
                .events
                .push_back(SessionEvent::Text { itt, text: None }),
            _ => {}
        }
    }

    /// A PDU that did not decode (or failed its data digest). At ErrorRecoveryLevel 0 an
    /// initiator cannot ask for it again: the connection ends, and commands without status
    /// are the engine's to retry.
    pub fn handle_malformed(&mut self, _now: Instant, header: &[u8], error: &PduError) {
        let op = header.first().map(|b| b & 0x3f).unwrap_or(0);
        self.protocol_error(format!("undecodable PDU (opcode {op:#04x}): {error}"));
    }

    /// A PDU from the target (what the datamover passed up).
    pub fn handle_pdu(&mut self, now: Instant, pdu: Pdu) {
        if self.state == State::Closed {
            return;
        }
        self.last_heard = now;
        match pdu {
            Pdu::ScsiResponse(r) => self.on_response(r),
            Pdu::NopIn(n) => self.on_nop_in(n),
            Pdu::TaskMgmtResponse(r) => self.on_tmf_response(r),
            Pdu::TextResponse(r) => self.on_text_response(r),
            Pdu::LogoutResponse(r) => {
                self.note_stat_sn(r.stat_sn);
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                if let Some(p) = self.requests.remove(&r.itt) {
                    self.drop_deadline(p.deadline, r.itt);
                    self.close(CloseReason::Logout(r.response));
                }
            }
            Pdu::AsyncMessage(m) => self.on_async(m),
            Pdu::Reject(r) => self.on_reject(r, now),
            Pdu::DataIn(d) => {
                self.update_window(d.exp_cmd_sn, d.max_cmd_sn);
                // Data for a task we gave up on is dropped; data for any other task reaches
                // us only if its datamover holds no buffer for it: the target broke the rules.
                match self.tasks.get(&d.itt) {
                    Some(t) if t.state == TaskState::Abandoned => {
                        if d.status.is_some() {
                            self.note_stat_sn(d.stat_sn);
                        }
                    }
                    _ => self.protocol_error(format!(
                        "Data-In for task {:?}, which expects none or is unknown",
                        d.itt
                    )),
                }
            }
            Pdu::R2t(r) => {
                self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
                match self.tasks.get(&r.itt) {
                    Some(t) if t.state == TaskState::Abandoned => {}
                    _ => self.protocol_error(format!(
                        "R2T for task {:?} (TTT {:?}) asks for offset {} length {} beyond its data or MaxBurstLength, or has the reserved TTT",
                        r.itt, r.ttt, r.buffer_offset, r.desired_len
                    )),
                }
            }
            other => {
                self.protocol_error(format!("unexpected {:?} from the target", other.opcode()))
            }
        }
        self.pump();
    }

    fn on_response(&mut self, r: ScsiResponse) {
        self.note_stat_sn(r.stat_sn);
        self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
        let Some(t) = self.tasks.get_mut(&r.itt) else {
            return;
        };
        if t.state == TaskState::Abandoned {
            // Answered after all; the tag stays taken until the abort is answered.
            return;
        }
        let residual = if r.underflow {
            Residual::Underflow(r.residual_count)
        } else if r.overflow {
            Residual::Overflow(r.residual_count)
        } else {
            Residual::None
        };
        let status = CommandStatus {
            response: r.response,
            status: r.status,
            sense: r.sense(),
            residual,
        };
        let result = match t.data_error.take() {
            Some(error) => Err(TaskError::Data {
                error,
                status: Box::new(status),
            }),
            None => Ok(status),
        };
        self.finish(r.itt, result);
    }

    fn on_nop_in(&mut self, n: NopIn) {
        self.update_window(n.exp_cmd_sn, n.max_cmd_sn);
        if !n.itt.is_reserved() {
            // The answer to our ping.
            self.note_stat_sn(n.stat_sn);
            if let Some(p) = self.requests.remove(&n.itt) {
                self.drop_deadline(p.deadline, n.itt);
            }
            if self.ping == Some(n.itt) {
                self.ping = None;
            }
            return;
        }
        if self.stat_sn_ahead(n.stat_sn) {
            self.exp_stat_sn = n.stat_sn;
        }
        if !n.ttt.is_reserved() {
            // The target's ping: echo it.
            let max = self
                .params
                .max_send_data_segment_length(crate::text::Role::Initiator)
                as usize;
            let data = n.data.slice(..n.data.len().min(max));
            let pdu = NopOut {
                immediate: true,
                lun: n.lun,
                itt: Itt::RESERVED,
                ttt: n.ttt,
                cmd_sn: self.cmd_sn,
                exp_stat_sn: self.exp_stat_sn,
                data,
            };
            self.events.push_back(SessionEvent::Send(Pdu::NopOut(pdu)));
        }
    }

    fn stat_sn_ahead(&self, s: StatSn) -> bool {
        s.is_after(self.exp_stat_sn)
    }

    fn on_tmf_response(&mut self, r: TaskMgmtResponse) {
        self.note_stat_sn(r.stat_sn);
        self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
        let Some(p) = self.requests.remove(&r.itt) else {
            return;
        };
        self.drop_deadline(p.deadline, r.itt);
        let Request::Tmf {
            lun,
            target,
            before,
            internal,
        } = p.request
        else {
            return self.protocol_error("Task Management response to another request".into());
        };
        let done = matches!(
            r.response,
            TmfResponse::COMPLETE | TmfResponse::TASK_DOES_NOT_EXIST
        );
        if done {
            let victims: Vec<Itt> = match target {
                Some(itt) => vec![itt],
                None => self
                    .tasks
                    .iter()
                    .filter(|(_, t)| {
                        t.state != TaskState::Queued
                            && t.cmd_sn.is_before(before)
                            && lun.is_none_or(|l| t.cmd.lun == l)
                    })
                    .map(|(i, _)| *i)
                    .collect(),
            };
            for itt in victims {
                self.finish(itt, Err(TaskError::Aborted));
            }
        } else if internal {
            // Our abort of a timed-out or rejected task failed: the task may still be running
            // at the target (or its CmdSN still a gap) and its tag cannot be reused safely.
            // Start over.
            return self.close(CloseReason::ProtocolError(format!(
                "ABORT TASK of a timed-out or rejected command refused ({:?})",
                r.response
            )));
        }
        if !internal {
            self.events.push_back(SessionEvent::TaskManagement {
                itt: r.itt,
                response: r.response,
            });
        }
    }

    fn on_text_response(&mut self, r: TextResponse) {
        self.note_stat_sn(r.stat_sn);
        self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
        let Some(p) = self.requests.get_mut(&r.itt) else {
            return;
        };
        let Request::Text { answer } = &mut p.request else {
            return self.protocol_error("Text response to another request".into());
        };
        if answer.len() + r.data.len() > self.cfg.max_text_len {
            let deadline = p.deadline;
            self.requests.remove(&r.itt);
            self.drop_deadline(deadline, r.itt);
            self.events.push_back(SessionEvent::Text {
                itt: r.itt,
                text: None,
            });
            return;
        }
        answer.extend_from_slice(&r.data);
        if r.final_ && !r.cont {
            let deadline = p.deadline;
            let text = std::mem::take(answer);
            self.requests.remove(&r.itt);
            self.drop_deadline(deadline, r.itt);
            self.events.push_back(SessionEvent::Text {
                itt: r.itt,
                text: Some(text),
            });
        } else {
            // More to come: an empty request with the target's TTT asks for it (a
            // non-immediate PDU with its own CmdSN, so it waits for window room).
            self.queue
                .push_back(Queued::Text(r.itt, Bytes::new(), r.ttt));
        }
    }

    fn on_async(&mut self, m: AsyncMessage) {
        self.note_stat_sn(m.stat_sn);
        self.update_window(m.exp_cmd_sn, m.max_cmd_sn);
        match m.event {
            AsyncEvent::LOGOUT_REQUEST => self.events.push_back(SessionEvent::LogoutRequested {
                within_secs: m.parameter3,
            }),
            AsyncEvent::DROP_CONNECTION | AsyncEvent::DROP_ALL_CONNECTIONS => {
                self.close(CloseReason::TargetDrop {
                    time2wait: m.parameter2,
                })
            }
            AsyncEvent::SCSI | AsyncEvent::VENDOR => self.events.push_back(SessionEvent::Async(m)),
            // Renegotiation requests and task termination notices need nothing from us.
            _ => {}
        }
    }

    /// Gives up on a running task: reports `error` for it at once and sends an internal ABORT
    /// TASK naming its CmdSN (which also plugs that CmdSN if the target never counted it). The
    /// tag stays taken until the TMF answer.
    fn abandon(&mut self, itt: Itt, error: TaskError, now: Instant) {
        let Some(t) = self.tasks.get_mut(&itt) else {
            return;
        };
        let (lun, sn) = (t.cmd.lun, t.cmd_sn);
        t.state = TaskState::Abandoned;
        self.in_flight -= 1;
        self.events.push_back(SessionEvent::Complete {
            itt,
            result: Err(error),
        });
        self.tmf(TaskMgmtFunction::ABORT_TASK, lun, Some(itt), sn, true, now);
        self.pump();
    }

    fn on_reject(&mut self, r: Reject, now: Instant) {
        self.note_stat_sn(r.stat_sn);
        self.update_window(r.exp_cmd_sn, r.max_cmd_sn);
        let Some(h) = r.data.get(..BHS_LEN) else {
            return self.protocol_error("Reject without the rejected header".into());
        };
        let itt = Itt(u32::from_be_bytes([h[16], h[17], h[18], h[19]]));
        let opcode = h[0] & 0x3f;
        // A rejected non-immediate request does not count as received (RFC 7143 §11.17.1):
        // unless the target's ExpCmdSN has gone past it, its CmdSN is a gap that holds up
        // every later command until we plug it, here with an ABORT TASK naming it
        // (§11.5.1: the target then counts the CmdSN as received).
        let cmd_sn = CmdSn(u32::from_be_bytes([h[24], h[25], h[26], h[27]]));
        let gap = h[0] & 0x40 == 0 && cmd_sn.is_at_or_after(r.exp_cmd_sn);
        if opcode == 0x01
            && let Some(t) = self.tasks.get_mut(&itt)
            && t.state == TaskState::Running
        {
            if !gap && r.reason == RejectReason::DATA_DIGEST_ERROR && t.cmd_sn == cmd_sn {
                // The target counted this CmdSN, which it never does for a PDU it discards
                // for a digest error: the rejected PDU was a damaged copy of a command that
                // arrived whole and is running. Its status is still to come.
                return;
            }
            if !gap || t.cmd_sn != cmd_sn {
                return self.finish(itt, Err(TaskError::Rejected(r.reason)));
            }
            return self.abandon(itt, TaskError::Rejected(r.reason), now);
        }
        if let Some(p) = self.requests.remove(&itt) {
            self.drop_deadline(p.deadline, itt);
            let plug = gap && matches!(p.request, Request::Text { .. });
            match p.request {
                Request::Logout => self.protocol_error("the target rejected our Logout".into()),
                // The same as the target refusing it (see `on_tmf_response`).
                Request::Tmf { internal: true, .. } => self.protocol_error(
                    "the target rejected our ABORT TASK of a timed-out or rejected command".into(),
                ),
                Request::Ping => self.ping = None,
                other => self.fail_request(itt, other),
            }
            if plug {
                self.tmf(
                    TaskMgmtFunction::ABORT_TASK,
                    Lun::default(),
                    Some(itt),
                    cmd_sn,
                    true,
                    now,
                );
            }
        }
    }

    /// When [`InitiatorSession::handle_timeout`] should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let deadline = self.deadlines.first();
        let ping = match (self.cfg.nop_interval, self.ping) {
            (Some(i), None) if self.state != State::Closed => Some(self.last_heard + i),
            _ => None,
        };
        match (deadline, ping) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs what is due at `now`: command deadlines (abort), request timeouts, pings.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        loop {
            let (tasks, requests) = (&self.tasks, &self.requests);
            let Some((d, itt)) = self
                .deadlines
                .pop_due(now, |d, i| deadline_live(tasks, requests, d, i))
            else {
                break;
            };
            if let Some(p) = self.requests.get(&itt)
                && p.deadline == d
            {
                let what = match p.request {
                    Request::Ping => {
                        self.ping = None;
                        return self.close(CloseReason::PingTimeout);
                    }
                    _ => CloseReason::RequestTimeout,
                };
                return self.close(what);
            }
            let Some(t) = self.tasks.get_mut(&itt) else {
                continue;
            };
            if t.cmd.deadline != Some(d) {
                continue;
            }
            match t.state {
                TaskState::Queued => self.finish(itt, Err(TaskError::TimedOut)),
                TaskState::Running => self.abandon(itt, TaskError::TimedOut, now),
                TaskState::Abandoned => {}
            }
        }
        if let (Some(i), None) = (self.cfg.nop_interval, self.ping)
            && now >= self.last_heard + i
        {
            let itt = self.alloc_itt();
            self.ping = Some(itt);
            self.add_request(itt, Request::Ping, now + self.cfg.nop_timeout);
            let pdu = NopOut {
                immediate: true,
                lun: Lun::default(),
                itt,
                ttt: Ttt::RESERVED,
                cmd_sn: self.cmd_sn,
                exp_stat_sn: self.exp_stat_sn,
                data: Bytes::new(),
            };
            self.events.push_back(SessionEvent::Send(Pdu::NopOut(pdu)));
        }
    }
}

/// Whether `at` is still the deadline of the task or request `itt`.
fn deadline_live(
    tasks: &TagMap<Itt, Task>,
    requests: &TagMap<Itt, Pending>,
    at: Instant,
    itt: Itt,
) -> bool {
    tasks.get(&itt).is_some_and(|t| t.cmd.deadline == Some(at))
        || requests.get(&itt).is_some_and(|p| p.deadline == at)
}
