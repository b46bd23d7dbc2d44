//! The iSER datamover: [`Datamover`] over any [`Verbs`] backend.
//!
//! Every PDU travels in an RDMA Send behind an iSER control header (login included, as Linux
//! ib_iser and isert do it on InfiniBand and RoCE): BHS, AHS and data segment, no digests and
//! no padding. Data moves by RDMA:
//!
//! | operation | initiator | target |
//! |---|---|---|
//! | read command | exposes the task buffer for remote write, read STag in the header | Put_Data: RDMA Write into the read STag, then the SCSI Response in a Send |
//! | write command | immediate and unsolicited data in Sends; exposes the buffer for remote read, write STag = the first solicited byte | Get_Data: RDMA Read from the write STag |
//! | SCSI Response | revokes the STag, the buffer comes back, then the response goes up | - |
//!
//! R2T, Data-In and solicited Data-Out never travel; one arriving is a protocol error that ends
//! the connection.
//!
//! **Copies of a payload by this code**: read data 0 (the target's RDMA Write lands in the
//! initiator's task buffer; the target writes from its own task buffer); solicited write data
//! 0 (RDMA Read from the initiator's task buffer into the target's); immediate and
//! unsolicited write data 1 on each side (into the Send buffer, out of the receive buffer, as
//! Linux does). Control PDUs are copied out of their receive buffer, which is posted again at
//! once.
//!
//! **Receive credits**: the datamover keeps [`IserConfig::recv_depth`] receives posted,
//! sized for [`IserConfig::recv_data_segment_length`] (at least 8192, the login's). An
//! initiator keeps at most `recv_depth` minus [`UNEXPECTED_RESERVE`] requests that expect an
//! answer (commands, Text, TMF, Logout, NOP-Out pings) in flight: the PDUs after that wait in
//! order until answers free receives, so the target's answers never meet an empty receive
//! queue. A target relies on its CmdSN window, which must be smaller than `recv_depth` (the
//! initiator's commands and immediate PDUs each take a receive until processed).
//!
//! **Write base offset**: the write STag's base offset is the address of the first byte the
//! target must fetch, i.e. the task buffer plus the unsolicited length (what Linux ib_iser
//! sends and isert expects); Get_Data offsets are translated accordingly.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;

use bytes::{Bytes, BytesMut};
use iscsi_proto::datamover::{DataBuffer, Datamover, GetData, Notify, PutData, SendCommand};
use iscsi_proto::pdu::{BHS_LEN, Bhs, DataOut, Digests, MAX_AHS_LEN, Pdu};
use iscsi_proto::serial::{DataSn, Itt, StatSn, Ttt};
use iscsi_proto::text::{NegotiatedParams, Role, SessionType};

use crate::header::{ControlHeader, ISER_HEADER_LEN, IserHeader, Stag};
use crate::verbs::{Access, Completion, Verbs, WcStatus, WorkBuf, WorkKind};

/// Receives an initiator keeps for PDUs the target sends unasked (NOP-In pings, Async
/// Messages, Rejects).
pub const UNEXPECTED_RESERVE: usize = 8;

/// The login's data segment limit (RFC 7143 §6.1: 8192 bytes while logging in).
const LOGIN_SEGMENT: u32 = 8192;

/// Sizes of an iSER connection.
#[derive(Clone, Debug)]
pub struct IserConfig {
    /// Receives kept posted.
    pub recv_depth: usize,
    /// Largest data segment received in a Send: declare it as
    /// Initiator/TargetRecvDataSegmentLength (and MaxRecvDataSegmentLength for discovery
    /// sessions). Receive buffers hold at least the login's 8192 bytes.
    pub recv_data_segment_length: u32,
    /// Work requests on the send queue at once (Sends, RDMA Writes and Reads).
    pub send_depth: usize,
}

impl Default for IserConfig {
    fn default() -> Self {
        Self {
            recv_depth: 160,
            recv_data_segment_length: 8192,
            send_depth: 256,
        }
    }
}

/// Why an iSER connection ended.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IserError {
    /// The verbs backend failed.
    #[error("RDMA: {0}")]
    Verbs(Box<dyn std::error::Error + Send + Sync>),
    /// A work request failed.
    #[error("RDMA {kind:?} failed: {status:?}")]
    Completion {
        /// Which kind.
        kind: WorkKind,
        /// How.
        status: WcStatus,
    },
    /// The peer broke the protocol.
    #[error("iSER protocol error: {0}")]
    Protocol(String),
    /// A request this datamover cannot carry.
    #[error("{0}")]
    Unsupported(&'static str),
    /// A PDU could not be encoded.
    #[error("cannot encode a PDU: {0}")]
    Encode(String),
}

/// `wr_id` bit marking receives.
const RECV_BIT: u64 = 1 << 63;

/// Send-queue work not yet posted (`M` message buffers, `B` task buffers).
enum Work<M, B> {
    Send {
        buf: M,
        len: usize,
    },
    Write {
        buf: B,
        len: usize,
        remote: Stag,
    },
    Read {
        itt: Itt,
        buf: B,
        range: Range<usize>,
        remote: Stag,
    },
}

/// What a posted send-queue request was.
#[derive(Clone, Copy, Debug)]
enum Posted {
    Send { pooled: bool },
    Write,
    Read { itt: Itt },
}

/// An initiator task with data.
struct InitTask<B> {
    /// The STag the buffer is exposed under, if it is.
    stag: Option<u32>,
    /// The buffer, when it is not exposed (a write sent whole unsolicited).
    buf: Option<B>,
}

/// A target task: what the initiator advertised in its command.
struct TargetTask<B> {
    read: Option<Stag>,
    write: Option<Stag>,
    /// Bytes the initiator sends unsolicited: the write STag's base is this buffer offset.
    unsolicited: u32,
    /// Get_Data in progress: the ranges still to read (buffer range, remote address).
    reads: VecDeque<(Range<usize>, Stag)>,
    /// Cancelled while a read was in flight: drop the buffer when it comes back.
    cancelled: bool,
    /// The buffer, between two reads of one Get_Data.
    buf: Option<B>,
}

/// Initiator: framed Sends waiting for a receive credit, in order.
struct Held<M> {
    /// What answer the first Send expects, if any.
    answer: Option<Answer>,
    sends: Vec<(M, usize)>,
}

/// An answer an initiator request expects (it takes one of our receives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    /// The SCSI Response of this task.
    Task(Itt),
    /// The answer to a Text, TMF, Logout, Login, SNACK or NOP-Out ping.
    Other,
}

/// The iSER datamover of one connection (see the module documentation).
pub struct IserDatamover<V: Verbs> {
    verbs: V,
    role: Role,
    cfg: IserConfig,
    /// Size of a receive buffer and of a pooled send buffer.
    buf_size: usize,
    /// Largest data segment the peer accepts.
    peer_segment: u32,
    initial_r2t: bool,
    first_burst: u32,
    notes: VecDeque<Notify<V::Buf>>,
    pending: VecDeque<Work<V::Msg, V::Buf>>,
    posted: HashMap<u64, Posted>,
    send_pool: Vec<V::Msg>,
    next_wr: u64,
    init_tasks: HashMap<Itt, InitTask<V::Buf>>,
    target_tasks: HashMap<Itt, TargetTask<V::Buf>>,
    /// Initiator: commands sent whose SCSI Response may still come.
    awaiting_tasks: std::collections::HashSet<Itt>,
    /// Initiator: other requests sent that expect an answer.
    awaiting_other: usize,
    /// Initiator: Sends waiting for a receive credit, in order.
    held: VecDeque<Held<V::Msg>>,
    /// An error to report on the next `recv`.
    fatal: Option<IserError>,
    /// ExpStatSN of our latest PDU (for the Data-Out we build).
    exp_stat_sn: StatSn,
    closed: bool,
    sends: u64,
    receives: u64,
}

impl<V: Verbs> std::fmt::Debug for IserDatamover<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IserDatamover")
            .field("role", &self.role)
            .field("sends", &self.sends)
            .field("receives", &self.receives)
            .finish_non_exhaustive()
    }
}

fn verbs_err<E: std::error::Error + Send + Sync + 'static>(e: E) -> IserError {
    IserError::Verbs(Box::new(e))
}

impl<V: Verbs> IserDatamover<V> {
    /// A datamover for a connected endpoint. It posts its receives at once: a target should
    /// build it before accepting the connection (the initiator's first login request needs
    /// a receive), an initiator before sending anything.
    pub fn new(mut verbs: V, role: Role, cfg: IserConfig) -> Result<Self, IserError> {
        if cfg.recv_depth <= UNEXPECTED_RESERVE || cfg.send_depth == 0 {
            return Err(IserError::Unsupported(
                "recv_depth must exceed the unexpected-PDU reserve and send_depth be positive",
            ));
        }
        let segment = cfg.recv_data_segment_length.max(LOGIN_SEGMENT);
        let buf_size = ISER_HEADER_LEN + BHS_LEN + MAX_AHS_LEN + segment as usize;
        for i in 0..cfg.recv_depth {
            let buf = verbs.msg_buf(buf_size).map_err(verbs_err)?;
            verbs
                .post_recv(RECV_BIT | i as u64, buf)
                .map_err(verbs_err)?;
        }
        Ok(Self {
            verbs,
            role,
            cfg,
            buf_size,
            peer_segment: LOGIN_SEGMENT,
            initial_r2t: true,
            first_burst: 0,
            notes: VecDeque::new(),
            pending: VecDeque::new(),
            posted: HashMap::new(),
            send_pool: Vec::new(),
            next_wr: 0,
            init_tasks: HashMap::new(),
            target_tasks: HashMap::new(),
            awaiting_tasks: std::collections::HashSet::new(),
            awaiting_other: 0,
            held: VecDeque::new(),
            fatal: None,
            exp_stat_sn: StatSn(0),
            closed: false,
            sends: 0,
            receives: 0,
        })
    }

    /// The verbs endpoint.
    pub fn verbs(&self) -> &V {
        &self.verbs
    }

    /// Sends and receives so far (messages, not RDMA operations).
    pub fn message_counts(&self) -> (u64, u64) {
        (self.sends, self.receives)
    }

    fn wr_id(&mut self) -> u64 {
        self.next_wr = (self.next_wr + 1) & !RECV_BIT;
        self.next_wr
    }

    /// A send buffer for `len` bytes: pooled when it fits the standard size.
    fn send_buf(&mut self, len: usize) -> Result<(V::Msg, bool), IserError> {
        if len <= self.buf_size {
            if let Some(b) = self.send_pool.pop() {
                return Ok((b, true));
            }
            return Ok((self.verbs.msg_buf(self.buf_size).map_err(verbs_err)?, true));
        }
        Ok((self.verbs.msg_buf(len).map_err(verbs_err)?, false))
    }

    /// Encodes `pdu` behind `hdr` into a send buffer; the data segment is `data` when given
    /// (immediate data taken from a task buffer), else the PDU's own.
    fn frame(
        &mut self,
        hdr: ControlHeader,
        pdu: &Pdu,
        data: Option<&[u8]>,
    ) -> Result<(V::Msg, usize, bool), IserError> {
        let mut head = BytesMut::with_capacity(BHS_LEN + 64);
        pdu.encode_header(&mut head, Digests::default())
            .map_err(|e| IserError::Encode(e.to_string()))?;
        let data: &[u8] = match data {
            Some(d) => {
                // DataSegmentLength (BHS bytes 5-7) of the data given here.
                let n = d.len() as u32;
                if n >= 1 << 24 {
                    return Err(IserError::Encode("immediate data too long".into()));
                }
                head[5..8].copy_from_slice(&n.to_be_bytes()[1..]);
                d
            }
            None => pdu.data(),
        };
        let len = ISER_HEADER_LEN + head.len() + data.len();
        let (mut buf, pooled) = self.send_buf(len)?;
        let b = buf.as_mut_bytes();
        b[..ISER_HEADER_LEN].copy_from_slice(&IserHeader::Control(hdr).to_bytes());
        b[ISER_HEADER_LEN..ISER_HEADER_LEN + head.len()].copy_from_slice(&head);
        b[ISER_HEADER_LEN + head.len()..len].copy_from_slice(data);
        Ok((buf, len, pooled))
    }

    /// Queues send-queue work and posts what fits.
    fn push(&mut self, w: Work<V::Msg, V::Buf>) -> Result<(), IserError> {
        self.pending.push_back(w);
        self.post_pending()
    }

    fn post_pending(&mut self) -> Result<(), IserError> {
        while self.posted.len() < self.cfg.send_depth {
            let Some(w) = self.pending.pop_front() else {
                break;
            };
            let id = self.wr_id();
            match w {
                Work::Send { buf, len } => {
                    let pooled = buf.as_bytes().len() == self.buf_size;
                    self.posted.insert(id, Posted::Send { pooled });
                    self.sends += 1;
                    self.verbs.post_send(id, buf, len).map_err(verbs_err)?;
                }
                Work::Write { buf, len, remote } => {
                    self.posted.insert(id, Posted::Write);
                    self.verbs
                        .post_write(id, buf, 0..len, remote)
                        .map_err(verbs_err)?;
                }
                Work::Read {
                    itt,
                    buf,
                    range,
                    remote,
                } => {
                    self.posted.insert(id, Posted::Read { itt });
                    self.verbs
                        .post_read(id, buf, range, remote)
                        .map_err(verbs_err)?;
                }
            }
        }
        Ok(())
    }

    /// Frames and queues a control PDU.
    fn send_pdu(
        &mut self,
        hdr: ControlHeader,
        pdu: &Pdu,
        data: Option<&[u8]>,
    ) -> Result<(), IserError> {
        let (buf, len, _) = self.frame(hdr, pdu, data)?;
        self.push(Work::Send { buf, len })
    }

    /// The answer an initiator PDU expects from the target (it takes one of our receives).
    fn answer_of(pdu: &Pdu) -> Option<Answer> {
        match pdu {
            Pdu::ScsiCommand(c) => Some(Answer::Task(c.itt)),
            Pdu::TaskMgmtRequest(_)
            | Pdu::TextRequest(_)
            | Pdu::LogoutRequest(_)
            | Pdu::LoginRequest(_)
            | Pdu::SnackRequest(_) => Some(Answer::Other),
            // A ping (ITT not reserved) gets a NOP-In; an answer to the target's ping does not.
            Pdu::NopOut(n) if n.itt != Itt::RESERVED => Some(Answer::Other),
            _ => None,
        }
    }

    fn awaiting(&self) -> usize {
        self.awaiting_tasks.len() + self.awaiting_other
    }

    /// Initiator: queues framed Sends behind the held ones and sends what the credits allow.
    fn hold(
        &mut self,
        answer: Option<Answer>,
        sends: Vec<(V::Msg, usize)>,
    ) -> Result<(), IserError> {
        self.held.push_back(Held { answer, sends });
        self.release_held()
    }

    /// Initiator: sends held messages while there are receive credits.
    fn release_held(&mut self) -> Result<(), IserError> {
        let limit = self.cfg.recv_depth - UNEXPECTED_RESERVE;
        while let Some(h) = self.held.front() {
            if h.answer.is_some() && self.awaiting() >= limit {
                break;
            }
            let Some(h) = self.held.pop_front() else {
                break;
            };
            match h.answer {
                Some(Answer::Task(itt)) => {
                    self.awaiting_tasks.insert(itt);
                }
                Some(Answer::Other) => self.awaiting_other += 1,
                None => {}
            }
            for (buf, len) in h.sends {
                self.pending.push_back(Work::Send { buf, len });
            }
        }
        self.post_pending()
    }

    /// Initiator: an answer arrived (or will not come).
    fn answered(&mut self, a: Answer) {
        match a {
            Answer::Task(itt) => {
                self.awaiting_tasks.remove(&itt);
            }
            Answer::Other => self.awaiting_other = self.awaiting_other.saturating_sub(1),
        }
    }

    /// Handles one completion; notifications go to `notes`.
    fn completion(&mut self, c: Completion<V::Msg, V::Buf>) -> Result<(), IserError> {
        if c.wr_id & RECV_BIT != 0 {
            if c.status != WcStatus::Success {
                return self.failed(c.kind, c.status);
            }
            let WorkBuf::Msg(buf) = c.buf else {
                return Err(IserError::Protocol(
                    "a receive completed with a task buffer".into(),
                ));
            };
            self.receives += 1;
            let msg = buf.as_bytes().get(..c.len).unwrap_or_default();
            let parsed = parse_message(msg);
            // The buffer goes back at once: the PDU was copied out. If the connection is
            // gone already (the peer sent its last PDU and disconnected), what arrived still
            // goes up, and the connection ends after it.
            if self.verbs.post_recv(c.wr_id, buf).is_err() {
                self.closed = true;
            }
            return self.message(parsed?);
        }
        let Some(what) = self.posted.remove(&c.wr_id) else {
            return Err(IserError::Protocol(format!(
                "completion for unknown work request {}",
                c.wr_id
            )));
        };
        if c.status != WcStatus::Success {
            return self.failed(c.kind, c.status);
        }
        match (what, c.buf) {
            (Posted::Send { pooled }, WorkBuf::Msg(buf)) => {
                if pooled && self.send_pool.len() < self.cfg.send_depth {
                    self.send_pool.push(buf);
                }
            }
            // Put_Data's buffer is done with: the response follows on the send queue.
            (Posted::Write, _) => {}
            (Posted::Read { itt }, WorkBuf::Task(buf)) => self.read_done(itt, buf)?,
            (p, _) => {
                return Err(IserError::Protocol(format!(
                    "a completion for {p:?} with the other kind of buffer"
                )));
            }
        }
        self.post_pending()
    }

    fn failed(&mut self, kind: WorkKind, status: WcStatus) -> Result<(), IserError> {
        if status == WcStatus::Flushed {
            // The connection went down (the peer disconnected, or an error reported first).
            self.closed = true;
            return Ok(());
        }
        Err(IserError::Completion { kind, status })
    }

    /// Target: one RDMA Read of a Get_Data finished.
    fn read_done(&mut self, itt: Itt, buf: V::Buf) -> Result<(), IserError> {
        let Some(t) = self.target_tasks.get_mut(&itt) else {
            return Ok(());
        };
        if t.cancelled {
            self.target_tasks.remove(&itt);
            return Ok(());
        }
        match t.reads.pop_front() {
            Some((range, remote)) => self.push(Work::Read {
                itt,
                buf,
                range,
                remote,
            }),
            None => {
                t.buf = None;
                self.notes.push_back(Notify::DataComplete { itt, buf });
                Ok(())
            }
        }
    }

    /// A received message.
    fn message(&mut self, m: Message) -> Result<(), IserError> {
        let (hdr, pdu) = match m {
            Message::Pdu { hdr, pdu } => (hdr, pdu),
            Message::Malformed { header, error } => {
                self.notes.push_back(Notify::Malformed { header, error });
                return Ok(());
            }
        };
        match self.role {
            Role::Initiator => self.initiator_pdu(pdu),
            Role::Target => self.target_pdu(hdr, pdu),
        }
    }

    fn initiator_pdu(&mut self, pdu: Pdu) -> Result<(), IserError> {
        let answer = match &pdu {
            Pdu::DataIn(_) | Pdu::R2t(_) => {
                return Err(IserError::Protocol(format!(
                    "the target sent {:?}, which never travels over iSER",
                    pdu.opcode()
                )));
            }
            Pdu::ScsiResponse(r) => Some(Answer::Task(r.itt)),
            Pdu::TaskMgmtResponse(_)
            | Pdu::TextResponse(_)
            | Pdu::LogoutResponse(_)
            | Pdu::LoginResponse(_) => Some(Answer::Other),
            Pdu::NopIn(n) if n.itt != Itt::RESERVED => Some(Answer::Other),
            // A Reject answers the PDU whose header it carries.
            Pdu::Reject(r) => Some(match r.data.get(16..20) {
                Some(b) => {
                    let itt = Itt(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                    if self.awaiting_tasks.contains(&itt) {
                        Answer::Task(itt)
                    } else {
                        Answer::Other
                    }
                }
                None => Answer::Other,
            }),
            _ => None,
        };
        if let Some(a) = answer {
            self.answered(a);
        }
        if let Pdu::ScsiResponse(r) = &pdu
            && let Some(t) = self.init_tasks.remove(&r.itt)
        {
            let buf = match t.stag {
                Some(s) => self.verbs.revoke(s),
                None => t.buf,
            };
            if let Some(buf) = buf {
                self.notes
                    .push_back(Notify::DataComplete { itt: r.itt, buf });
            }
        }
        self.notes.push_back(Notify::Control(pdu));
        self.release_held()
    }

    fn target_pdu(&mut self, hdr: ControlHeader, pdu: Pdu) -> Result<(), IserError> {
        match &pdu {
            Pdu::DataOut(d) if d.ttt != Ttt::RESERVED => {
                return Err(IserError::Protocol(
                    "solicited Data-Out, which never travels over iSER".into(),
                ));
            }
            Pdu::ScsiCommand(cmd) if cmd.read || cmd.write => {
                let unsolicited = if cmd.write {
                    task_unsolicited(cmd, self.initial_r2t, self.first_burst)
                        .min(cmd.expected_data_len)
                        .max(cmd.data.len() as u32)
                } else {
                    0
                };
                self.target_tasks.insert(
                    cmd.itt,
                    TargetTask {
                        read: hdr.read,
                        write: hdr.write,
                        unsolicited,
                        reads: VecDeque::new(),
                        cancelled: false,
                        buf: None,
                    },
                );
            }
            _ => {}
        }
        self.notes.push_back(Notify::Control(pdu));
        Ok(())
    }
}

/// Bytes of a write the initiator sends unsolicited (RFC 7143 §13.11, §13.13; Linux ib_iser
/// computes the same): with InitialR2T=No a first burst, else the immediate data.
fn task_unsolicited(cmd: &iscsi_proto::pdu::ScsiCommand, initial_r2t: bool, first: u32) -> u32 {
    if initial_r2t {
        cmd.data.len() as u32
    } else {
        cmd.expected_data_len.min(first)
    }
}

enum Message {
    Pdu {
        hdr: ControlHeader,
        pdu: Pdu,
    },
    Malformed {
        header: Bytes,
        error: iscsi_proto::PduError,
    },
}

/// Splits a received message into its iSER header and PDU.
fn parse_message(msg: &[u8]) -> Result<Message, IserError> {
    let hdr = match IserHeader::decode(msg) {
        Ok(IserHeader::Control(h)) => h,
        Ok(other) => {
            return Err(IserError::Protocol(format!(
                "{other:?} on an InfiniBand/RoCE connection (Hello is for iWARP)"
            )));
        }
        Err(e) => return Err(IserError::Protocol(e.to_string())),
    };
    let body = &msg[ISER_HEADER_LEN..];
    let Some(raw) = body.get(..BHS_LEN) else {
        return Err(IserError::Protocol(format!(
            "a message of {} bytes has no complete BHS",
            msg.len()
        )));
    };
    let mut arr = [0u8; BHS_LEN];
    arr.copy_from_slice(raw);
    let h = Bhs::from_array(&arr);
    let ahs = usize::from(h.total_ahs_len) * 4;
    let dlen = h.data_segment_len as usize;
    let need = BHS_LEN + ahs + dlen;
    // Padding to 4 bytes is tolerated (Linux does too), nothing more.
    if body.len() < need || body.len() > need + 3 {
        return Err(IserError::Protocol(format!(
            "a message of {} bytes after the iSER header for a PDU of {need}",
            body.len()
        )));
    }
    let all = Bytes::copy_from_slice(&body[..need]);
    let header = all.slice(..BHS_LEN);
    let ahs_b = all.slice(BHS_LEN..BHS_LEN + ahs);
    let data = all.slice(BHS_LEN + ahs..);
    Ok(match Pdu::decode(&h, &ahs_b, data) {
        Ok(pdu) => Message::Pdu { hdr, pdu },
        Err(error) => Message::Malformed { header, error },
    })
}

impl<V: Verbs> Datamover for IserDatamover<V> {
    type Buffer = V::Buf;
    type Error = IserError;

    fn alloc(&mut self, len: usize) -> Result<V::Buf, IserError> {
        self.verbs.alloc(len).map_err(verbs_err)
    }

    fn send_control(&mut self, pdu: Pdu) -> Result<(), IserError> {
        match self.role {
            Role::Initiator => {
                if let Some(e) = pdu_exp_stat_sn(&pdu) {
                    self.exp_stat_sn = e;
                }
                let framed = self.frame(ControlHeader::default(), &pdu, None)?;
                self.hold(Self::answer_of(&pdu), vec![(framed.0, framed.1)])
            }
            Role::Target => {
                match &pdu {
                    Pdu::DataIn(_) | Pdu::R2t(_) => {
                        return Err(IserError::Unsupported(
                            "Data-In and R2T PDUs do not travel over iSER",
                        ));
                    }
                    Pdu::ScsiResponse(r) => {
                        self.target_tasks.remove(&r.itt);
                    }
                    _ => {}
                }
                self.send_pdu(ControlHeader::default(), &pdu, None)
            }
        }
    }

    fn put_data(&mut self, req: PutData, buf: V::Buf) -> Result<(), IserError> {
        let task = self.target_tasks.remove(&req.itt);
        if req.len > 0 {
            let Some(read) = task.as_ref().and_then(|t| t.read) else {
                return Err(IserError::Protocol(format!(
                    "data-in for task {:?} whose command advertised no read STag",
                    req.itt
                )));
            };
            let len = (req.len as usize).min(buf.as_bytes().len());
            self.push(Work::Write {
                buf,
                len,
                remote: read,
            })?;
        }
        // RC ordering: the response arrives after the data is in place.
        self.send_pdu(
            ControlHeader::default(),
            &Pdu::ScsiResponse(req.response),
            None,
        )
    }

    fn get_data(&mut self, req: GetData, buf: V::Buf) -> Result<(), IserError> {
        let Some(t) = self.target_tasks.get_mut(&req.itt) else {
            return Err(IserError::Protocol(format!(
                "Get_Data for unknown task {:?}",
                req.itt
            )));
        };
        let Some(write) = t.write else {
            return Err(IserError::Protocol(format!(
                "task {:?} needs solicited data but advertised no write STag",
                req.itt
            )));
        };
        // Contiguous R2Ts become one read.
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for r in &req.r2ts {
            let (start, end) = (r.offset as usize, r.offset as usize + r.len as usize);
            match ranges.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => ranges.push((start, end)),
            }
        }
        let unsolicited = t.unsolicited as usize;
        for &(start, end) in &ranges {
            if start < unsolicited || end > buf.as_bytes().len() {
                return Err(IserError::Protocol(format!(
                    "solicited range {start}..{end} of task {:?} outside its buffer or \
                     before the {unsolicited} unsolicited bytes",
                    req.itt
                )));
            }
            let remote = Stag {
                stag: write.stag,
                base_offset: write.base_offset.wrapping_add((start - unsolicited) as u64),
            };
            t.reads.push_back((start..end, remote));
        }
        let Some((range, remote)) = t.reads.pop_front() else {
            self.notes
                .push_back(Notify::DataComplete { itt: req.itt, buf });
            return Ok(());
        };
        self.push(Work::Read {
            itt: req.itt,
            buf,
            range,
            remote,
        })
    }

    fn send_command(&mut self, req: SendCommand, buf: Option<V::Buf>) -> Result<(), IserError> {
        let mut cmd = req.command;
        let itt = cmd.itt;
        self.exp_stat_sn = cmd.exp_stat_sn;
        cmd.data = Bytes::new();
        let answer = Some(Answer::Task(itt));
        let Some(buf) = buf else {
            let (b, len, _) = self.frame(ControlHeader::default(), &Pdu::ScsiCommand(cmd), None)?;
            return self.hold(answer, vec![(b, len)]);
        };
        if cmd.read && cmd.write {
            return Err(IserError::Unsupported(
                "bidirectional commands are not supported over iSER",
            ));
        }
        let edtl = (cmd.expected_data_len as usize).min(buf.as_bytes().len());
        if cmd.read {
            let s = self
                .verbs
                .expose(buf, edtl, Access::RemoteWrite)
                .map_err(verbs_err)?;
            let hdr = ControlHeader {
                write: None,
                read: Some(s),
            };
            let (b, len, _) = self.frame(hdr, &Pdu::ScsiCommand(cmd), None)?;
            self.init_tasks.insert(
                itt,
                InitTask {
                    stag: Some(s.stag),
                    buf: None,
                },
            );
            return self.hold(answer, vec![(b, len)]);
        }
        let imm = (req.immediate_len as usize).min(edtl);
        let unsol = (req.unsolicited_len as usize).clamp(imm, edtl);
        // The target computes the unsolicited length from InitialR2T and FirstBurstLength
        // (the write STag's base counts from there): the session core must agree.
        let expected = if self.initial_r2t {
            imm
        } else {
            (self.first_burst as usize).min(edtl)
        };
        if unsol != expected {
            return Err(IserError::Unsupported(
                "unsolicited data other than what InitialR2T and FirstBurstLength imply",
            ));
        }
        // Immediate data and unsolicited Data-Out are copied into Sends now; then the rest
        // of the buffer is exposed for the target to read.
        let lun = cmd.lun;
        let mut hdr = ControlHeader::default();
        let cmd_pdu = Pdu::ScsiCommand(cmd);
        // Data-Out PDUs (framed from the buffer before it is exposed).
        let seg = self.peer_segment.max(1) as usize;
        let mut offset = imm;
        let mut data_sn = 0u32;
        let mut data_outs = Vec::new();
        while offset < unsol {
            let stop = (offset + seg).min(unsol);
            let out = Pdu::DataOut(DataOut {
                final_: stop == unsol,
                lun,
                itt,
                ttt: Ttt::RESERVED,
                exp_stat_sn: self.exp_stat_sn,
                data_sn: DataSn(data_sn),
                buffer_offset: offset as u32,
                data: Bytes::new(),
            });
            let (b, len, _) = self.frame(
                ControlHeader::default(),
                &out,
                Some(&buf.as_bytes()[offset..stop]),
            )?;
            data_outs.push((b, len));
            offset = stop;
            data_sn += 1;
        }
        // The command carries the STag in its iSER header: framed now (immediate data from
        // the buffer), its header rewritten once the buffer is exposed.
        let (mut cmd_buf, cmd_len, _) = self.frame(hdr, &cmd_pdu, Some(&buf.as_bytes()[..imm]))?;
        let task = if unsol < edtl {
            let s = self
                .verbs
                .expose(buf, edtl, Access::RemoteRead)
                .map_err(verbs_err)?;
            hdr.write = Some(Stag {
                stag: s.stag,
                base_offset: s.base_offset.wrapping_add(unsol as u64),
            });
            cmd_buf.as_mut_bytes()[..ISER_HEADER_LEN]
                .copy_from_slice(&IserHeader::Control(hdr).to_bytes());
            InitTask {
                stag: Some(s.stag),
                buf: None,
            }
        } else {
            InitTask {
                stag: None,
                buf: Some(buf),
            }
        };
        self.init_tasks.insert(itt, task);
        let mut sends = Vec::with_capacity(1 + data_outs.len());
        sends.push((cmd_buf, cmd_len));
        sends.extend(data_outs);
        self.hold(answer, sends)
    }

    fn cancel_data(&mut self, itt: Itt) -> Option<V::Buf> {
        match self.role {
            Role::Initiator => {
                // The target will not answer an aborted or timed-out task (or its answer
                // is one the reserve absorbs).
                self.answered(Answer::Task(itt));
                let t = self.init_tasks.remove(&itt)?;
                match t.stag {
                    Some(s) => self.verbs.revoke(s),
                    None => t.buf,
                }
            }
            Role::Target => {
                let t = self.target_tasks.get_mut(&itt)?;
                if let Some(b) = t.buf.take() {
                    self.target_tasks.remove(&itt);
                    return Some(b);
                }
                let reading = self
                    .posted
                    .values()
                    .any(|p| matches!(p, Posted::Read { itt: i } if *i == itt))
                    || self
                        .pending
                        .iter()
                        .any(|w| matches!(w, Work::Read { itt: i, .. } if *i == itt));
                if reading {
                    // The buffer is the adapter's until the read completes; dropped then.
                    t.cancelled = true;
                    t.reads.clear();
                } else {
                    self.target_tasks.remove(&itt);
                }
                None
            }
        }
    }

    fn rdma_extensions(&self) -> bool {
        true
    }

    fn max_recv_data_segment_length(&self) -> Option<u32> {
        Some(self.cfg.recv_data_segment_length.max(LOGIN_SEGMENT))
    }

    fn notice_key_values(&mut self, params: &NegotiatedParams) {
        self.peer_segment = params.max_send_data_segment_length(self.role);
        self.initial_r2t = params.initial_r2t;
        self.first_burst = params.first_burst_length;
        let ours = params.max_recv_data_segment_length(self.role);
        let room = self.cfg.recv_data_segment_length.max(LOGIN_SEGMENT);
        if ours > room {
            // The session declared more than the receive buffers hold: a peer that uses it
            // would break the connection. A configuration error, reported at once.
            self.fatal = Some(IserError::Unsupported(
                "the session declares a receive data segment length larger than the iSER \
                 receive buffers (IserConfig::recv_data_segment_length)",
            ));
        }
        if params.session_type == SessionType::Normal && !params.rdma_extensions {
            self.fatal = Some(IserError::Protocol(
                "the login did not enable RDMAExtensions on an iSER connection".into(),
            ));
        }
    }

    async fn recv(&mut self) -> Result<Option<Notify<V::Buf>>, IserError> {
        loop {
            if let Some(n) = self.notes.pop_front() {
                return Ok(Some(n));
            }
            if let Some(e) = self.fatal.take() {
                self.closed = true;
                return Err(e);
            }
            if self.closed {
                return Ok(None);
            }
            match self.verbs.poll().await.map_err(verbs_err)? {
                None => {
                    self.closed = true;
                }
                Some(c) => self.completion(c)?,
            }
        }
    }

    async fn flush(&mut self) -> Result<(), IserError> {
        // Everything queued is posted as soon as the send queue has room; wait until the
        // queue is empty.
        while !self.pending.is_empty() || !self.posted.is_empty() {
            match self.verbs.poll().await.map_err(verbs_err)? {
                None => return Ok(()),
                Some(c) => self.completion(c)?,
            }
        }
        Ok(())
    }
}

fn pdu_exp_stat_sn(pdu: &Pdu) -> Option<StatSn> {
    Some(match pdu {
        Pdu::NopOut(n) => n.exp_stat_sn,
        Pdu::TaskMgmtRequest(t) => t.exp_stat_sn,
        Pdu::TextRequest(t) => t.exp_stat_sn,
        Pdu::LogoutRequest(l) => l.exp_stat_sn,
        Pdu::ScsiCommand(c) => c.exp_stat_sn,
        _ => return None,
    })
}
