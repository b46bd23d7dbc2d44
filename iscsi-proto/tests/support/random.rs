//! Random traffic for the property tests of `target_session.rs`: an [`Op`] strategy (SCSI
//! commands in and out of CmdSN order, Data-Out with random fields, NOPs, TMFs, Text,
//! Logout, raw bytes, completions, timers) and a [`Driver`] that feeds them to a [`Harness`].
//!
//! The driver has two modes. *Robustness* calls the session's API with random task tags
//! (completing tasks that never ran, and so on). *Engine contract* behaves like an engine
//! (completes only tasks it was told to run, reports only requested data) and checks what the
//! session promises an engine: a new task never reuses the tag of a task the engine still
//! holds; Get_Data, Data and Execute only for tasks waiting for data; Release never for a task
//! the engine is running; and a running task's status only through `complete`.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::datamover::DataError;
use iscsi_proto::pdu::{Digests, LogoutReason, ScsiStatus, TaskMgmtFunction, TmfResponse};
use iscsi_proto::target::{Event, Reply, ScsiOutcome, TargetRecord, encode_send_targets};
use iscsi_proto::{CmdSn, Itt, Pdu, Ttt};
use proptest::prelude::*;

use super::{Harness, fixed_sense, kv, lun, pattern, reply_response};

/// Proptest settings: `cases` (or `PROPTEST_CASES` when set), failures not persisted.
pub fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A SendTargets answer with `n` targets of two portals each.
pub fn many_targets(n: usize) -> Bytes {
    let records: Vec<TargetRecord> = (0..n)
        .map(|i| TargetRecord {
            name: format!("iqn.2026-11.rs.iscsi:target-number-{i:04}"),
            addresses: vec![
                (format!("192.0.2.{}:3260", i % 250), 1),
                ("[2001:db8::1]:3260".to_owned(), 1),
            ],
        })
        .collect();
    encode_send_targets(&records)
}

/// One step of the random traffic. `itt` fields index a pool of 15 tags (15: 0xffffffff);
/// `pick` fields choose among the tasks the driver knows of.
#[derive(Clone, Debug)]
#[allow(missing_docs)]
pub enum Op {
    Read {
        itt: u8,
        edtl: u16,
        sn: i8,
        immediate: bool,
        lun: u8,
    },
    Write {
        itt: u8,
        edtl: u16,
        imm: u16,
        final_: bool,
        sn: i8,
        immediate: bool,
    },
    DataOut {
        itt: u8,
        data_sn: u8,
        offset: u16,
        len: u16,
        final_: bool,
        solicited: bool,
    },
    /// The next unsolicited Data-Out of a task that waits for it (right offset and DataSN).
    NextData {
        pick: u8,
        len: u16,
        final_: bool,
    },
    Nop {
        itt: Option<u8>,
        answer_ping: bool,
        immediate: bool,
        len: u16,
    },
    Tmf {
        function: u8,
        itt: u8,
        lun: u8,
        ref_sn: i8,
    },
    Text {
        which: u8,
    },
    Logout {
        reason: u8,
        go: bool,
    },
    Raw {
        opcode: u8,
        immediate: bool,
        bytes: Vec<u8>,
    },
    Complete {
        pick: u8,
        status: u8,
        data_len: u16,
        transfer_len: u16,
        sense: bool,
    },
    DataComplete {
        pick: u8,
    },
    DataFailed {
        pick: u8,
    },
    TmfDone {
        response: u8,
    },
    SendTargetsReply {
        len: u16,
    },
    Tick {
        secs: u8,
    },
    RequestLogout,
    AbortForReset {
        lun: Option<u8>,
    },
}

/// The tag of pool entry `i`.
pub fn itt_of(i: u8) -> Itt {
    if i % 16 == 15 {
        Itt::RESERVED
    } else {
        Itt(0x10 + u32::from(i % 16))
    }
}

fn cmd_sn_delta() -> impl Strategy<Value = i8> {
    prop_oneof![6 => Just(0i8), 1 => any::<i8>()]
}

/// The random steps, weighted towards SCSI traffic and completions.
pub fn op() -> impl Strategy<Value = Op> {
    let itt = 0u8..16;
    prop_oneof![
        4 => (itt.clone(), 0u16..17000, cmd_sn_delta(), prop::bool::weighted(0.1), 0u8..3)
            .prop_map(|(itt, edtl, sn, immediate, lun)| Op::Read { itt, edtl, sn, immediate, lun }),
        4 => (itt.clone(), 0u16..17000, 0u16..3000, any::<bool>(), cmd_sn_delta(), prop::bool::weighted(0.1))
            .prop_map(|(itt, edtl, imm, final_, sn, immediate)| Op::Write { itt, edtl, imm, final_, sn, immediate }),
        4 => (itt.clone(), 0u8..4, 0u16..20000, 0u16..9000, any::<bool>(), prop::bool::weighted(0.1))
            .prop_map(|(itt, data_sn, offset, len, final_, solicited)| Op::DataOut { itt, data_sn, offset, len, final_, solicited }),
        4 => (any::<u8>(), 1u16..3000, prop::bool::weighted(0.3))
            .prop_map(|(pick, len, final_)| Op::NextData { pick, len, final_ }),
        2 => (prop::option::of(itt.clone()), any::<bool>(), any::<bool>(), 0u16..1000)
            .prop_map(|(itt, answer_ping, immediate, len)| Op::Nop { itt, answer_ping, immediate, len }),
        2 => (0u8..14, itt.clone(), 0u8..3, prop_oneof![Just(0i8), any::<i8>()])
            .prop_map(|(function, itt, lun, ref_sn)| Op::Tmf { function, itt, lun, ref_sn }),
        2 => (0u8..8).prop_map(|which| Op::Text { which }),
        1 => (0u8..3, prop::bool::weighted(0.3)).prop_map(|(reason, go)| Op::Logout { reason, go }),
        2 => (
                prop_oneof![Just(0x00u8), Just(0x01), Just(0x02), Just(0x04), Just(0x05), Just(0x06), Just(0x10), 0u8..0x40],
                any::<bool>(),
                prop::collection::vec(any::<u8>(), 0..120),
            )
            .prop_map(|(opcode, immediate, bytes)| Op::Raw { opcode, immediate, bytes }),
        6 => (any::<u8>(), prop_oneof![Just(0u8), Just(2), any::<u8>()], 0u16..20000, 0u16..20000, any::<bool>())
            .prop_map(|(pick, status, data_len, transfer_len, sense)| Op::Complete { pick, status, data_len, transfer_len, sense }),
        3 => any::<u8>().prop_map(|pick| Op::DataComplete { pick }),
        1 => any::<u8>().prop_map(|pick| Op::DataFailed { pick }),
        2 => (0u8..7).prop_map(|response| Op::TmfDone { response }),
        1 => (0u16..3000).prop_map(|len| Op::SendTargetsReply { len }),
        1 => (0u8..40).prop_map(|secs| Op::Tick { secs }),
        1 => Just(Op::RequestLogout),
        1 => prop::option::of(0u8..3).prop_map(|lun| Op::AbortForReset { lun }),
    ]
}

/// Feeds [`Op`]s to a harness and keeps what an engine would know.
#[derive(Debug, Default)]
pub struct Driver {
    /// Behave like an engine and check the session's promises to it.
    pub contract: bool,
    /// In contract mode, also send Data-Out for tasks the engine is running.
    pub stray_data_for_running_tasks: bool,
    tmfs: Vec<Itt>,
    send_targets: Vec<Itt>,
    ping: Option<Ttt>,
    text_ttt: Option<(Itt, Ttt)>,
    /// Tasks the engine runs (ready, or after Execute) and has not completed.
    running: Vec<Itt>,
    /// Tasks waiting for data-out.
    waiting: HashSet<Itt>,
    /// Tasks with an outstanding Get_Data.
    fetching: Vec<Itt>,
    /// The last write command sent with each tag: (immediate data, F bit, EDTL).
    writes: Vec<(Itt, u32, bool, u32)>,
    /// Tasks receiving unsolicited Data-Out: (tag, next offset, next DataSN, end of burst).
    unsolicited: Vec<(Itt, u32, u32, u32)>,
}

impl Driver {
    /// A driver in robustness mode (`contract` false) or engine-contract mode.
    pub fn new(contract: bool) -> Driver {
        Driver {
            contract,
            ..Driver::default()
        }
    }

    fn note(&mut self, h: &Harness, events: &[Event]) {
        for e in events {
            self.track_unsolicited(h, e);
            match e {
                Event::TaskManagement(t) => self.tmfs.push(t.itt),
                Event::SendTargets { itt, .. } => self.send_targets.push(*itt),
                Event::Send(Pdu::NopIn(n)) if n.itt.is_reserved() => self.ping = Some(n.ttt),
                Event::Send(Pdu::TextResponse(r)) if !r.ttt.is_reserved() => {
                    self.text_ttt = Some((r.itt, r.ttt));
                }
                _ => {}
            }
            match e {
                Event::Command(c) => {
                    assert!(!c.itt.is_reserved());
                    assert!(c.immediate_data.len() as u64 <= u64::from(c.edtl));
                }
                Event::GetData(g) => {
                    assert!(!g.r2ts.is_empty());
                    for r in &g.r2ts {
                        assert!(!r.ttt.is_reserved());
                        assert!(r.len > 0);
                    }
                }
                _ => {}
            }
            if self.contract {
                self.check_contract(e);
            }
        }
    }

    /// Follows which tasks expect unsolicited Data-Out (RFC 7143 §4.2.5.2: up to
    /// FirstBurstLength, F=0 on the command).
    fn track_unsolicited(&mut self, h: &Harness, e: &Event) {
        match e {
            Event::Command(c) if c.write && !c.ready => {
                self.unsolicited.retain(|u| u.0 != c.itt);
                if let Some(&(_, imm, final_, edtl)) =
                    self.writes.iter().rev().find(|w| w.0 == c.itt)
                {
                    let end = h.params.first_burst_length.min(edtl);
                    if !final_ && imm < end {
                        self.unsolicited.push((c.itt, imm, 0, end));
                    }
                }
            }
            Event::GetData(g) => self.unsolicited.retain(|u| u.0 != g.itt),
            Event::Release { itt } | Event::Execute { itt } => {
                self.unsolicited.retain(|u| u.0 != *itt);
            }
            _ => {}
        }
    }

    fn check_contract(&mut self, e: &Event) {
        match e {
            Event::Command(c) => {
                assert!(
                    !self.running.contains(&c.itt) && !self.waiting.contains(&c.itt),
                    "new task {:?} while the engine still holds a task with that tag",
                    c.itt
                );
                if c.ready {
                    self.running.push(c.itt);
                } else {
                    self.waiting.insert(c.itt);
                }
            }
            Event::GetData(g) => {
                assert!(self.waiting.contains(&g.itt), "Get_Data for {:?}", g.itt);
                assert!(!self.fetching.contains(&g.itt), "two Get_Data at once");
                self.fetching.push(g.itt);
            }
            Event::Data { itt, .. } => {
                assert!(self.waiting.contains(itt), "Data for {itt:?}");
            }
            Event::Execute { itt } => {
                assert!(self.waiting.remove(itt), "Execute for {itt:?}");
                assert!(!self.fetching.contains(itt));
                self.running.push(*itt);
            }
            Event::Release { itt } => {
                assert!(
                    !self.running.contains(itt),
                    "Release of {itt:?}, a task the engine is running"
                );
                self.waiting.remove(itt);
                self.fetching.retain(|i| i != itt);
            }
            Event::Send(Pdu::ScsiResponse(r)) => {
                assert!(
                    !self.running.contains(&r.itt),
                    "status of {:?} sent while the engine still runs it",
                    r.itt
                );
                assert!(
                    !self.waiting.contains(&r.itt),
                    "status of {:?} sent while it waits for data (no Release)",
                    r.itt
                );
            }
            _ => {}
        }
    }

    fn pick(list: &[Itt], pick: u8) -> Option<Itt> {
        (!list.is_empty()).then(|| list[usize::from(pick) % list.len()])
    }

    fn cmd_sn(h: &mut Harness, delta: i8, immediate: bool) -> CmdSn {
        if immediate {
            return h.ini.cmd_sn;
        }
        let d = u32::from(delta.unsigned_abs());
        match delta {
            0 => h.ini.take_cmd_sn(),
            1.. => h.ini.cmd_sn.add(d),
            _ => h.ini.cmd_sn.sub(d),
        }
    }

    /// Runs one step.
    pub fn run(&mut self, h: &mut Harness, op: Op) {
        let events = match op {
            Op::Read {
                itt,
                edtl,
                sn,
                immediate,
                lun: l,
            } => {
                let mut c = h.ini.read(u32::from(edtl));
                h.ini.cmd_sn = c.cmd_sn;
                c.itt = itt_of(itt);
                c.lun = lun(u16::from(l));
                c.immediate = immediate;
                c.cmd_sn = Self::cmd_sn(h, sn, immediate);
                h.send(c)
            }
            Op::Write {
                itt,
                edtl,
                imm,
                final_,
                sn,
                immediate,
            } => {
                let mut c = h.ini.write(u32::from(edtl), usize::from(imm), final_);
                h.ini.cmd_sn = c.cmd_sn;
                c.itt = itt_of(itt);
                self.writes.retain(|w| w.0 != c.itt);
                self.writes
                    .push((c.itt, u32::from(imm), final_, u32::from(edtl)));
                c.immediate = immediate;
                c.cmd_sn = Self::cmd_sn(h, sn, immediate);
                h.send(c)
            }
            Op::DataOut {
                itt,
                data_sn,
                offset,
                len,
                final_,
                solicited,
            } => {
                let itt = itt_of(itt);
                if self.contract
                    && !self.stray_data_for_running_tasks
                    && self.running.contains(&itt)
                {
                    return;
                }
                let mut d = h.ini.data_out(
                    itt,
                    u32::from(data_sn),
                    u32::from(offset),
                    usize::from(len),
                    final_,
                );
                if solicited {
                    d.ttt = Ttt(1);
                }
                h.send(d)
            }
            Op::NextData { pick, len, final_ } => {
                if self.unsolicited.is_empty() {
                    return;
                }
                let i = usize::from(pick) % self.unsolicited.len();
                let (itt, offset, data_sn, end) = self.unsolicited[i];
                let len = u32::from(len).min(end - offset);
                let final_ = final_ || offset + len == end;
                self.unsolicited[i] = (itt, offset + len, data_sn + 1, end);
                if final_ {
                    self.unsolicited.remove(i);
                }
                let d = h.ini.data_out(itt, data_sn, offset, len as usize, final_);
                h.send(d)
            }
            Op::Nop {
                itt,
                answer_ping,
                immediate,
                len,
            } => match itt {
                None => {
                    let ttt = match (answer_ping, self.ping) {
                        (true, Some(t)) => t,
                        _ => Ttt::RESERVED,
                    };
                    h.send(h.ini.nop_out_no_answer(ttt))
                }
                Some(i) => {
                    let mut n = h.ini.nop_out(pattern(0, usize::from(len)));
                    n.itt = itt_of(i);
                    if immediate {
                        n.immediate = true;
                        h.ini.cmd_sn = n.cmd_sn;
                    }
                    h.send(n)
                }
            },
            Op::Tmf {
                function,
                itt,
                lun: l,
                ref_sn,
            } => {
                let ref_cmd_sn = Self::cmd_sn(h, ref_sn, true);
                let t = h.ini.tmf(
                    TaskMgmtFunction(function),
                    lun(u16::from(l)),
                    itt_of(itt),
                    ref_cmd_sn,
                );
                h.send(t)
            }
            Op::Text { which } => match (which, self.text_ttt) {
                (5, Some((itt, ttt))) => {
                    let t = h.ini.text_continue(itt, ttt, Bytes::new(), false);
                    h.send(t)
                }
                (6, _) => {
                    let mut t = h.ini.text(&kv(&[("SendTargets", "All")]));
                    t.cont = true;
                    t.final_ = false;
                    h.send(t)
                }
                _ => {
                    let pairs = match which {
                        0 => kv(&[("SendTargets", "All")]),
                        1 => kv(&[("SendTargets", "")]),
                        2 => kv(&[("SendTargets", "Alle")]),
                        3 => kv(&[("FooBar", "1")]),
                        4 => kv(&[("MaxRecvDataSegmentLength", "1024")]),
                        _ => Vec::new(),
                    };
                    let t = h.ini.text(&pairs);
                    h.send(t)
                }
            },
            Op::Logout { reason, go } => {
                if !go {
                    return;
                }
                let reason = match reason {
                    0 => LogoutReason::CloseSession,
                    1 => LogoutReason::CloseConnection,
                    _ => LogoutReason::RemoveForRecovery,
                };
                let l = h.ini.logout(reason);
                h.send(l)
            }
            Op::Raw {
                opcode,
                immediate,
                bytes,
            } => {
                let mut raw = bytes;
                raw.resize(raw.len().max(48), 0);
                raw[0] = (opcode & 0x3f) | if immediate { 0x40 } else { 0 };
                // Mostly no data segment, so that more headers parse.
                if raw[5] & 1 == 0 {
                    raw[4..8].fill(0);
                }
                let buf = Bytes::from(raw);
                let now = h.instant();
                match Pdu::parse(&buf, Digests::NONE) {
                    Ok((pdu, _)) => {
                        // Contract mode: the datamover keeps solicited Data-Out to itself.
                        if self.contract
                            && matches!(&pdu, Pdu::DataOut(d)
                                if !self.stray_data_for_running_tasks && self.running.contains(&d.itt))
                        {
                            return;
                        }
                        h.s.handle_pdu(now, pdu)
                    }
                    Err(e) => h.s.handle_malformed(now, &buf[..48], &e),
                }
                h.drain()
            }
            Op::Complete {
                pick,
                status,
                data_len,
                transfer_len,
                sense,
            } => {
                let itt = if self.contract {
                    let Some(itt) = Self::pick(&self.running, pick) else {
                        return;
                    };
                    self.running.retain(|i| *i != itt);
                    itt
                } else {
                    itt_of(pick)
                };
                let outcome = ScsiOutcome {
                    status: ScsiStatus(status),
                    sense: sense.then(|| fixed_sense(0x05, 0x24, 0x00)),
                    data_len: u32::from(data_len),
                    transfer_len: u64::from(transfer_len),
                };
                if let Some(reply) = h.complete(itt, outcome) {
                    let r = reply_response(&reply);
                    assert!(!(r.overflow && r.underflow));
                    if let Reply::Data(put) = &reply {
                        assert!(put.len > 0);
                        assert!(put.max_segment_len >= 512);
                        assert!(put.max_burst_len >= 512);
                    }
                }
                h.drain()
            }
            Op::DataComplete { pick } => {
                let itt = if self.contract {
                    let Some(itt) = Self::pick(&self.fetching, pick) else {
                        return;
                    };
                    self.fetching.retain(|i| *i != itt);
                    itt
                } else {
                    itt_of(pick)
                };
                h.s.data_complete(itt);
                h.drain()
            }
            Op::DataFailed { pick } => {
                let itt = if self.contract {
                    let Some(itt) = Self::pick(&self.fetching, pick) else {
                        return;
                    };
                    self.fetching.retain(|i| *i != itt);
                    itt
                } else {
                    itt_of(pick)
                };
                h.s.data_failed(itt, DataError::Transport("gone".into()));
                h.drain()
            }
            Op::TmfDone { response } => {
                if self.tmfs.is_empty() {
                    return;
                }
                let itt = self.tmfs.remove(0);
                h.s.tmf_done(itt, TmfResponse(response));
                h.drain()
            }
            Op::SendTargetsReply { len } => {
                if self.send_targets.is_empty() {
                    return;
                }
                let itt = self.send_targets.remove(0);
                h.s.send_targets_reply(itt, many_targets(usize::from(len) / 100));
                h.drain()
            }
            Op::Tick { secs } => {
                h.advance(Duration::from_secs(u64::from(secs)));
                h.timeout()
            }
            Op::RequestLogout => {
                h.s.request_logout(10);
                h.drain()
            }
            Op::AbortForReset { lun: l } => {
                let _ = h.s.abort_for_reset(l.map(|l| lun(u16::from(l))));
                h.drain()
            }
        };
        self.note(h, &events);
    }
}
