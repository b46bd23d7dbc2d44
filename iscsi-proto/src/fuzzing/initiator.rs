//! The initiator's full feature phase under a hostile target: [`InitiatorSession`] and the
//! initiator-role [`PduMover`] glued as the engine glues them, fed commands from the
//! application and arbitrary target PDUs.
//!
//! Input: byte 0-5 choose the negotiated values (ImmediateData, InitialR2T, FirstBurstLength,
//! MaxBurstLength, the target's MaxRecvDataSegmentLength, the in-flight limit, NOP pings);
//! then up to 512 operations, each an opcode byte and its arguments:
//! 0 submit a command; 1 a well-formed target PDU aimed at our tasks (response, Data-In,
//! R2T, NOP-In, TMF/Text/Logout response, Async Message, Reject); 2 any PDU the parser
//! accepts from the next bytes; 3 advance virtual time; 4 ABORT TASK / LU RESET / TARGET
//! RESET; 5 Text request or Logout; 6 a malformed-PDU report; 7 connection loss.
//!
//! Checked: no panic; every PDU the initiator sends encodes; non-immediate CmdSNs are
//! consecutive and within the window; no data segment beyond the target's MaxRecvDataSegmentLength; immediate plus
//! unsolicited data within FirstBurstLength; Data-Out inside its task's buffer; every
//! command completes at most once and only after it was submitted; `in_flight` within its
//! limit; a write buffer comes back unchanged.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Reader;
use crate::datamover::Notify;
use crate::initiator::{
    Command, Direction, InitiatorLoginOutcome, InitiatorSession, InitiatorSessionConfig,
    SessionEvent,
};
use crate::pdu::{
    AsyncEvent, AsyncMessage, BHS_LEN, DataIn, Digests, LogoutResponse, Lun, NopIn, Pdu, R2t,
    Reject, RejectReason, ScsiResponse, ScsiStatus, ServiceResponse, TaskMgmtResponse,
    TextResponse, TmfResponse, Tsih,
};
use crate::pdu_mover::PduMover;
use crate::serial::{CmdSn, DataSn, Itt, StatSn, Ttt};
use crate::text::{LocalConfig, Negotiator, Role, SessionType};

const MAX_OPS: usize = 512;
const FIRST_CMD_SN: u32 = 0xffff_fff0;
const FIRST_STAT_SN: u32 = 0xffff_fff8;

struct Task {
    write: Option<Vec<u8>>,
    len: usize,
    done: bool,
}

struct Harness {
    session: InitiatorSession,
    mover: PduMover,
    now: Instant,
    tasks: HashMap<Itt, Task>,
    order: Vec<Itt>,
    /// Buffers back from the mover, by task.
    returned: HashMap<Itt, Vec<u8>>,
    next_cmd_sn: Option<CmdSn>,
    max_seg: u32,
    first_burst: u32,
    max_in_flight: usize,
    /// Unsolicited bytes sent per task (immediate + Data-Out with the reserved TTT).
    unsolicited: HashMap<Itt, u64>,
    stat_sn: StatSn,
    seen_itts: HashSet<Itt>,
}

impl Harness {
    fn pick(&self, b: u8) -> Itt {
        if self.order.is_empty() || b == 0xff {
            return Itt(u32::from(b));
        }
        self.order[b as usize % self.order.len()]
    }

    fn drive(&mut self) {
        for _ in 0..10_000 {
            let mut busy = false;
            while let Some(ev) = self.session.poll_event() {
                busy = true;
                self.event(ev);
            }
            while let Some(pdu) = self.mover.next_output() {
                busy = true;
                self.check_out(&pdu);
            }
            while let Some(n) = self.mover.next_notify() {
                busy = true;
                self.notify(n);
            }
            assert!(self.session.in_flight() <= self.max_in_flight);
            if !busy {
                return;
            }
        }
        panic!("the session does not settle");
    }

    fn event(&mut self, ev: SessionEvent) {
        match ev {
            SessionEvent::Command(req) => {
                let itt = req.command.itt;
                let t = self
                    .tasks
                    .get(&itt)
                    .expect("a command the application submitted");
                assert!(!t.done, "a completed command sent");
                assert!(req.immediate_len <= req.unsolicited_len);
                assert!(req.unsolicited_len <= self.first_burst || req.unsolicited_len == 0);
                let buf = match (&t.write, req.command.read) {
                    (Some(w), _) => Some(w.clone()),
                    (None, true) => Some(vec![0u8; t.len]),
                    (None, false) => None,
                };
                self.mover.send_command(req, buf);
            }
            SessionEvent::Send(pdu) => self.mover.send_control(pdu),
            SessionEvent::Complete { itt, .. } => {
                let t = self
                    .tasks
                    .get_mut(&itt)
                    .expect("completion of a submitted command");
                assert!(!t.done, "a command completed twice");
                t.done = true;
                let back = self
                    .returned
                    .remove(&itt)
                    .or_else(|| self.mover.cancel_data(itt));
                if let (Some(w), Some(b)) = (&t.write, &back) {
                    assert_eq!(w, b, "a write buffer came back changed");
                }
                if let Some(b) = back {
                    assert_eq!(b.len(), t.len, "a buffer came back resized");
                }
            }
            _ => {}
        }
    }

    fn check_out(&mut self, pdu: &Pdu) {
        assert!(pdu.to_bytes(Digests::NONE).is_ok(), "unencodable {pdu:?}");
        assert!(
            pdu.data().len() <= self.max_seg as usize,
            "a data segment beyond the target's MaxRecvDataSegmentLength"
        );
        let non_immediate_sn = match pdu {
            Pdu::ScsiCommand(c) => {
                *self.unsolicited.entry(c.itt).or_default() += c.data.len() as u64;
                (!c.immediate).then_some(c.cmd_sn)
            }
            Pdu::TextRequest(t) if t.ttt.is_reserved() && !t.immediate => Some(t.cmd_sn),
            Pdu::LogoutRequest(l) if !l.immediate => Some(l.cmd_sn),
            Pdu::DataOut(d) => {
                let t = self.tasks.get(&d.itt).expect("Data-Out of a known task");
                let end = u64::from(d.buffer_offset) + d.data.len() as u64;
                assert!(end <= t.len as u64, "Data-Out beyond its buffer");
                if let Some(w) = &t.write {
                    assert_eq!(&w[d.buffer_offset as usize..end as usize], &d.data[..]);
                }
                if d.ttt.is_reserved() {
                    let u = self.unsolicited.entry(d.itt).or_default();
                    *u += d.data.len() as u64;
                    assert!(*u <= u64::from(self.first_burst), "beyond FirstBurstLength");
                }
                None
            }
            _ => None,
        };
        if let Some(sn) = non_immediate_sn {
            assert!(
                sn.is_at_or_before(self.session.max_cmd_sn()),
                "CmdSN {sn:?} beyond MaxCmdSN {:?}",
                self.session.max_cmd_sn()
            );
            if let Some(expected) = self.next_cmd_sn {
                assert_eq!(sn, expected, "non-immediate CmdSNs not consecutive");
            }
            self.next_cmd_sn = Some(sn.next());
        }
    }

    fn notify(&mut self, n: Notify<Vec<u8>>) {
        if let Some((itt, buf)) = self.session.handle_notify(self.now, n) {
            self.returned.insert(itt, buf);
        }
    }

    fn window(&self, r: &mut Reader<'_>) -> (CmdSn, CmdSn) {
        let exp = self.session.exp_cmd_sn().add(u32::from(r.u8() & 7));
        let max = exp.add(u32::from(r.u8() & 15)).sub(1);
        (exp, max)
    }

    fn stat(&mut self) -> StatSn {
        let s = self.stat_sn;
        self.stat_sn = s.next();
        s
    }

    /// A target PDU aimed at our tasks.
    fn target_pdu(&mut self, r: &mut Reader<'_>) -> Pdu {
        let kind = r.u8() % 11;
        let itt = self.pick(r.u8());
        let (exp_cmd_sn, max_cmd_sn) = self.window(r);
        match kind {
            0 | 1 => {
                let flags = r.u8();
                let sense = if flags & 0x10 != 0 {
                    ScsiResponse::sense_segment(r.bytes(18))
                } else {
                    Bytes::new()
                };
                ScsiResponse {
                    overflow: flags & 1 != 0,
                    underflow: flags & 2 != 0 && flags & 1 == 0,
                    response: ServiceResponse(u8::from(flags & 4 != 0)),
                    status: ScsiStatus(if flags & 8 != 0 { 2 } else { 0 }),
                    itt,
                    stat_sn: self.stat(),
                    exp_cmd_sn,
                    max_cmd_sn,
                    exp_data_sn: DataSn(u32::from(r.u8() & 3)),
                    residual_count: u32::from(r.u16()),
                    data: sense,
                    ..ScsiResponse::default()
                }
                .into()
            }
            2 | 3 => {
                let flags = r.u8();
                let status = flags & 1 != 0;
                let len = usize::from(r.u16() % 9000);
                DataIn {
                    final_: status || flags & 2 != 0,
                    status: status.then_some(ScsiStatus(flags & 0x02)),
                    underflow: status && flags & 4 != 0,
                    itt,
                    stat_sn: if status { self.stat() } else { StatSn(0) },
                    exp_cmd_sn,
                    max_cmd_sn,
                    data_sn: DataSn(u32::from(r.u8() & 7)),
                    buffer_offset: u32::from(r.u16()) * 16,
                    residual_count: u32::from(r.u16()),
                    data: Bytes::from(vec![0x5a; len]),
                    ..DataIn::default()
                }
                .into()
            }
            4 => R2t {
                itt,
                ttt: Ttt(r.u32()),
                stat_sn: self.stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                r2t_sn: Default::default(),
                buffer_offset: u32::from(r.u16()) * 16,
                desired_len: u32::from(r.u16()) * 4,
                lun: Lun::default(),
            }
            .into(),
            5 => {
                let ping = r.u8() & 1 != 0;
                NopIn {
                    itt: if ping { Itt::RESERVED } else { itt },
                    ttt: if ping { Ttt(r.u32()) } else { Ttt::RESERVED },
                    stat_sn: if ping { self.stat_sn } else { self.stat() },
                    exp_cmd_sn,
                    max_cmd_sn,
                    data: {
                        let n = usize::from(r.u8());
                        Bytes::copy_from_slice(r.bytes(n))
                    },
                    ..NopIn::default()
                }
                .into()
            }
            6 => TaskMgmtResponse {
                response: TmfResponse(r.u8() % 7),
                itt,
                stat_sn: self.stat(),
                exp_cmd_sn,
                max_cmd_sn,
            }
            .into(),
            7 => {
                let flags = r.u8();
                TextResponse {
                    final_: flags & 1 != 0,
                    cont: flags & 3 == 2,
                    itt,
                    ttt: if flags & 1 != 0 {
                        Ttt::RESERVED
                    } else {
                        Ttt(7)
                    },
                    stat_sn: self.stat(),
                    exp_cmd_sn,
                    max_cmd_sn,
                    data: {
                        let n = usize::from(r.u8());
                        Bytes::copy_from_slice(r.bytes(n))
                    },
                    ..TextResponse::default()
                }
                .into()
            }
            8 => LogoutResponse {
                itt,
                stat_sn: self.stat(),
                exp_cmd_sn,
                max_cmd_sn,
                ..LogoutResponse::default()
            }
            .into(),
            9 => AsyncMessage {
                event: AsyncEvent(r.u8() % 6),
                stat_sn: self.stat(),
                exp_cmd_sn,
                max_cmd_sn,
                parameter2: u16::from(r.u8()),
                parameter3: u16::from(r.u8()),
                ..AsyncMessage::default()
            }
            .into(),
            _ => {
                let mut header = vec![0u8; BHS_LEN];
                header[0] = r.u8() & 0x3f;
                header[16..20].copy_from_slice(&itt.0.to_be_bytes());
                Reject {
                    reason: RejectReason(r.u8() % 13),
                    stat_sn: self.stat(),
                    exp_cmd_sn,
                    max_cmd_sn,
                    data: Bytes::from(header),
                    ..Reject::default()
                }
                .into()
            }
        }
    }
}

/// See the module documentation.
pub fn run(data: &[u8]) {
    let mut r = Reader { data };
    let cfg_bytes = [r.u8(), r.u8(), r.u8(), r.u8(), r.u8(), r.u8()];
    let immediate_data = cfg_bytes[0] & 1 != 0;
    let initial_r2t = cfg_bytes[0] & 2 != 0;
    let max_burst = 512 * (1 + u32::from(cfg_bytes[1] % 64));
    let first_burst = (512 * (1 + u32::from(cfg_bytes[2] % 64))).min(max_burst);
    let max_seg = 512 * (1 + u32::from(cfg_bytes[3] % 32));
    let max_in_flight = 1 + usize::from(cfg_bytes[4] % 16);
    let nop = cfg_bytes[5] & 1 != 0;

    let local = LocalConfig {
        initiator_name: Some("iqn.2026-11.rs.iscsi:fuzz-initiator".into()),
        target_name: Some("iqn.2026-11.rs.iscsi:fuzz-target".into()),
        ..LocalConfig::default()
    };
    let negotiator = Negotiator::new(Role::Initiator, local, SessionType::Normal, true, false);
    let mut params = negotiator.result();
    params.immediate_data = immediate_data;
    params.initial_r2t = initial_r2t;
    params.max_burst_length = max_burst;
    params.first_burst_length = first_burst;
    params.target_max_recv_data_segment_length = max_seg;
    params.initiator_max_recv_data_segment_length = 8192;
    let outcome = InitiatorLoginOutcome {
        negotiator,
        params: params.clone(),
        tsih: Tsih(1),
        cmd_sn: CmdSn(FIRST_CMD_SN),
        exp_cmd_sn: CmdSn(FIRST_CMD_SN),
        max_cmd_sn: CmdSn(FIRST_CMD_SN).add(3),
        exp_stat_sn: StatSn(FIRST_STAT_SN),
    };
    let scfg = InitiatorSessionConfig {
        max_in_flight,
        max_queued: 64,
        nop_interval: nop.then(|| Duration::from_secs(5)),
        nop_timeout: Duration::from_secs(10),
        request_timeout: Duration::from_secs(15),
        max_text_len: 4096,
    };
    let now = Instant::now();
    let mut mover = PduMover::new(Role::Initiator);
    mover.notice_key_values(&params);
    let mut h = Harness {
        session: InitiatorSession::new(scfg, &outcome, now),
        mover,
        now,
        tasks: HashMap::new(),
        order: Vec::new(),
        returned: HashMap::new(),
        next_cmd_sn: None,
        max_seg,
        first_burst,
        max_in_flight,
        unsolicited: HashMap::new(),
        stat_sn: StatSn(FIRST_STAT_SN),
        seen_itts: HashSet::new(),
    };

    for _ in 0..MAX_OPS {
        if r.is_empty() {
            break;
        }
        match r.u8() % 8 {
            0 => {
                let kind = r.u8();
                let len = usize::from(r.u16() % 20_000);
                let cdb = [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0];
                let direction = match kind % 3 {
                    0 => Direction::None,
                    1 => Direction::Read(len as u32),
                    _ => Direction::Write(len as u32),
                };
                let mut cmd = Command::new(u16::from(kind >> 4), &cdb);
                cmd.direction = direction;
                if kind & 8 != 0 {
                    cmd.deadline = Some(h.now + Duration::from_millis(u64::from(r.u8()) * 10));
                }
                let write = matches!(direction, Direction::Write(n) if n > 0)
                    .then(|| (0..len).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
                if let Ok(itt) = h.session.submit(cmd, h.now) {
                    assert!(h.seen_itts.insert(itt), "a tag handed out twice");
                    h.order.push(itt);
                    h.tasks.insert(
                        itt,
                        Task {
                            write,
                            len: if matches!(direction, Direction::None) {
                                0
                            } else {
                                len
                            },
                            done: false,
                        },
                    );
                }
            }
            1 => {
                let pdu = h.target_pdu(&mut r);
                h.mover.receive(pdu);
            }
            2 => {
                let n = usize::from(r.u16() % 2048);
                let bytes = Bytes::copy_from_slice(r.bytes(n));
                if let Ok((pdu, _)) = Pdu::parse(&bytes, Digests::NONE)
                    && !pdu.opcode().is_initiator()
                {
                    h.mover.receive(pdu);
                }
            }
            3 => {
                h.now += Duration::from_millis(u64::from(r.u16()) * 4);
                h.session.handle_timeout(h.now);
            }
            4 => {
                let itt = h.pick(r.u8());
                match r.u8() % 3 {
                    0 => drop(h.session.abort_task(itt, h.now)),
                    1 => drop(h.session.lu_reset(Lun::default(), h.now)),
                    _ => drop(h.session.target_reset(h.now)),
                }
            }
            5 => {
                if r.u8() & 1 == 0 {
                    let _ = h
                        .session
                        .text_request(Bytes::from_static(b"SendTargets=All\0"), h.now);
                } else {
                    h.session.logout(h.now);
                }
            }
            6 => {
                let header = Bytes::copy_from_slice(r.bytes(BHS_LEN));
                h.mover
                    .receive_malformed(header, crate::pdu::PduError::Truncated { needed: 1 });
            }
            _ => {
                h.session.connection_lost();
                h.drive();
                assert!(h.session.is_closed());
                assert_eq!(h.session.task_count(), 0);
                break;
            }
        }
        h.drive();
    }
}
