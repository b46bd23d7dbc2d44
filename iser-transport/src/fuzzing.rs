//! Bodies of the cargo-fuzz targets for iSER (`fuzz/fuzz_targets/iser_*.rs`), compiled with
//! the `fuzzing` feature so that `cargo test` feeds them their seeds and regressions.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use iscsi_proto::datamover::{Datamover, GetData, Notify, PutData, R2tRequest, SendCommand};
use iscsi_proto::pdu::{Digests, Lun, Pdu, ScsiCommand, ScsiResponse};
use iscsi_proto::serial::{CmdSn, Itt, R2tSn, StatSn, Ttt};
use iscsi_proto::text::Role;

use crate::header::{CmPrivateData, ControlHeader, ISER_HEADER_LEN, IserHeader, Stag};
use crate::loopback::{Endpoint, Faults, LoopbackConfig, pair};
use crate::mover::{IserConfig, IserDatamover};
use crate::verbs::{Access, Verbs};

/// iSER header, Hello, HelloReply and CM private data: decoding never panics, and what
/// decodes encodes back to bytes that decode to the same value.
pub fn header(data: &[u8]) {
    if let Ok(h) = IserHeader::decode(data) {
        let bytes = h.to_bytes();
        assert_eq!(bytes.len(), ISER_HEADER_LEN);
        assert_eq!(IserHeader::decode(&bytes), Ok(h), "iSER header round trip");
    }
    if let Some(p) = CmPrivateData::decode(data) {
        assert_eq!(
            CmPrivateData::decode(&p.to_bytes()),
            Some(p),
            "CM header round trip"
        );
    }
}

/// Polls `f` once (the loopback verbs need no runtime).
fn once<F: Future>(f: F) -> Option<F::Output> {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a.to_vec()
    }
}

/// The peer side (the fuzzer's): a raw loopback endpoint.
struct Peer {
    ep: Endpoint,
    next_wr: u64,
    /// Memory it exposed (for the mover's RDMA), by STag.
    exposed: Vec<(Stag, usize)>,
}

impl Peer {
    fn wr(&mut self) -> u64 {
        self.next_wr += 1;
        self.next_wr
    }

    /// Sends an iSER control message with `pdu` and these STags.
    fn send_pdu(&mut self, hdr: ControlHeader, pdu: &Pdu) {
        let Ok(bytes) = pdu.to_bytes(Digests::NONE) else {
            return;
        };
        let mut msg = IserHeader::Control(hdr).to_bytes().to_vec();
        msg.extend_from_slice(&bytes);
        let len = msg.len();
        let id = self.wr();
        let _ = self.ep.post_send(id, msg, len);
    }

    /// Takes what completed on the peer side (and drops it).
    fn drain(&mut self) {
        while let Some(Ok(Some(_))) = once(self.ep.poll()) {}
    }
}

/// The iSER datamover, in either role, driven by a hostile peer on the loopback verbs: raw
/// messages, well-formed commands and responses with real or forged STags, RDMA Writes and
/// Reads at any STag, receives posted or not, disconnects; for the target role the engine's
/// side answers commands with Put_Data, Get_Data and responses chosen by the input.
///
/// Input: byte 0 (bit 0: initiator role; bits 1-2: receive depth; bit 3: the peer posts no
/// receives of its own), then up to 256 operations, each an operation byte and its
/// arguments: 0 a raw message; 1 a SCSI Command (target) or SCSI Response (initiator) with
/// the peer's STags or forged ones; 2 run the datamover (take its notifications, answer as
/// the engine); 3 an RDMA Write or Read by the peer at an STag from the input or one the
/// mover advertised; 4 the peer posts a receive; 5 a command from our initiator's engine;
/// 6 the peer takes its completions; 7 either side disconnects.
///
/// Checked: no panic; a task buffer comes back at most once per request; after an error the
/// datamover keeps failing cleanly.
pub fn mover(data: &[u8]) {
    let mut r = Input(data);
    let c = r.u8();
    let role = if c & 1 != 0 {
        Role::Initiator
    } else {
        Role::Target
    };
    let cfg = IserConfig {
        recv_depth: [10, 16, 32, 160][usize::from(c >> 1 & 3)],
        recv_data_segment_length: 8192,
        send_depth: 16,
    };
    let faults = Faults::default();
    let (ours, theirs) = pair(
        LoopbackConfig {
            max_alloc: 1 << 20,
            ..LoopbackConfig::default()
        },
        faults.clone(),
    );
    let mut peer = Peer {
        ep: theirs,
        next_wr: 1 << 40,
        exposed: Vec::new(),
    };
    if c & 8 == 0 {
        for _ in 0..16 {
            let id = peer.wr();
            let _ = peer.ep.post_recv(id, vec![0; 9000]);
        }
    }
    let Ok(mut dm) = IserDatamover::new(ours, role, cfg) else {
        return;
    };
    // Buffers the datamover holds, by task: each comes back at most once.
    let mut held: HashMap<Itt, usize> = HashMap::new();
    // Tasks our side announced (commands seen by the target, sent by the initiator).
    let mut tasks: Vec<(Itt, u32)> = Vec::new();
    let mut next_itt = 0x100u32;
    let mut cmd_sn = 1u32;
    for _ in 0..256 {
        if r.0.is_empty() {
            break;
        }
        match r.u8() % 8 {
            0 => {
                let len = usize::from(r.u16() % 9000);
                let msg = r.bytes(len);
                if !msg.is_empty() {
                    let id = peer.wr();
                    let n = msg.len();
                    let _ = peer.ep.post_send(id, msg, n);
                }
            }
            1 => {
                // The peer's memory, or a forged STag.
                let len = usize::from(r.u16() % 16384) + 1;
                let stag = if r.u8() & 1 == 0 {
                    let access = if r.u8() & 1 == 0 {
                        Access::RemoteWrite
                    } else {
                        Access::RemoteRead
                    };
                    match peer.ep.expose(vec![0x5a; len], len, access) {
                        Ok(s) => {
                            peer.exposed.push((s, len));
                            s
                        }
                        Err(_) => continue,
                    }
                } else {
                    Stag {
                        stag: r.u32(),
                        base_offset: u64::from(r.u32()),
                    }
                };
                let itt = Itt(next_itt);
                next_itt += 1;
                match role {
                    Role::Target => {
                        let write = r.u8() & 1 == 0;
                        let imm = usize::from(r.u16()) % (len + 1);
                        let mut cdb = [0u8; 16];
                        cdb[0] = if write { 0x2a } else { 0x28 };
                        let cmd = ScsiCommand {
                            final_: true,
                            read: !write,
                            write,
                            itt,
                            expected_data_len: len as u32,
                            cmd_sn: CmdSn(cmd_sn),
                            cdb,
                            data: Bytes::from(vec![0xc3; imm.min(8192)]),
                            ..ScsiCommand::default()
                        };
                        cmd_sn = cmd_sn.wrapping_add(1);
                        let hdr = if write {
                            ControlHeader {
                                write: Some(stag),
                                read: None,
                            }
                        } else {
                            ControlHeader {
                                write: None,
                                read: Some(stag),
                            }
                        };
                        peer.send_pdu(hdr, &Pdu::ScsiCommand(cmd));
                    }
                    Role::Initiator => {
                        // A response for a task of ours (or an unknown one).
                        let itt = match tasks.get(usize::from(r.u8())) {
                            Some(&(t, _)) => t,
                            None => itt,
                        };
                        let resp = ScsiResponse {
                            itt,
                            stat_sn: StatSn(r.u32()),
                            exp_cmd_sn: CmdSn(cmd_sn),
                            max_cmd_sn: CmdSn(cmd_sn.wrapping_add(32)),
                            ..ScsiResponse::default()
                        };
                        peer.send_pdu(ControlHeader::default(), &Pdu::ScsiResponse(resp));
                    }
                }
            }
            2 => {
                for _ in 0..64 {
                    let Some(n) = once(dm.recv()) else {
                        break;
                    };
                    match n {
                        Err(_) | Ok(None) => break,
                        Ok(Some(Notify::Control(Pdu::ScsiCommand(cmd)))) => {
                            if role == Role::Target {
                                tasks.push((cmd.itt, cmd.expected_data_len));
                                if engine_answer(&mut dm, &mut r, &cmd) {
                                    *held.entry(cmd.itt).or_default() += 1;
                                }
                            }
                        }
                        Ok(Some(
                            Notify::DataComplete { itt, .. } | Notify::DataFailed { itt, .. },
                        )) => give_back(&mut held, itt),
                        Ok(Some(_)) => {}
                    }
                }
            }
            3 => {
                let len = usize::from(r.u16() % 8192) + 1;
                let remote = match peer.exposed.get(usize::from(r.u8())) {
                    Some(&(s, n)) if r.u8() & 1 == 0 => Stag {
                        stag: s.stag,
                        base_offset: s.base_offset + u64::from(r.u16()) % n as u64,
                    },
                    _ => Stag {
                        stag: r.u32(),
                        base_offset: u64::from(r.u32()),
                    },
                };
                let id = peer.wr();
                if r.u8() & 1 == 0 {
                    let _ = peer.ep.post_write(id, vec![0x77; len], 0..len, remote);
                } else {
                    let _ = peer.ep.post_read(id, vec![0; len], 0..len, remote);
                }
            }
            4 => {
                let id = peer.wr();
                let _ = peer.ep.post_recv(id, vec![0; 9000]);
            }
            5 => {
                if role == Role::Initiator {
                    let len = u32::from(r.u16() % 16384);
                    let write = r.u8() & 1 == 0;
                    let itt = Itt(next_itt);
                    next_itt += 1;
                    let mut cdb = [0u8; 16];
                    cdb[0] = if write { 0x2a } else { 0x28 };
                    let command = ScsiCommand {
                        final_: true,
                        read: !write && len > 0,
                        write: write && len > 0,
                        itt,
                        expected_data_len: len,
                        cmd_sn: CmdSn(cmd_sn),
                        cdb,
                        ..ScsiCommand::default()
                    };
                    cmd_sn = cmd_sn.wrapping_add(1);
                    let imm = u32::from(r.u16()) % (len + 1);
                    let req = SendCommand {
                        command,
                        immediate_len: if write { imm.min(8192) } else { 0 },
                        unsolicited_len: if write { imm.min(8192) } else { 0 },
                    };
                    let buf = (len > 0).then(|| vec![0x3c; len as usize]);
                    let with_buf = buf.is_some();
                    if dm.send_command(req, buf).is_ok() && with_buf {
                        *held.entry(itt).or_default() += 1;
                    }
                    tasks.push((itt, len));
                } else if let Some(&(itt, _)) = tasks.get(usize::from(r.u8()))
                    && dm.cancel_data(itt).is_some()
                {
                    give_back(&mut held, itt);
                }
            }
            6 => peer.drain(),
            _ => match r.u8() % 3 {
                0 => peer.ep.disconnect(),
                1 => faults.disconnect_after(u64::from(r.u8() % 4)),
                _ => faults.refuse_rdma_after(u64::from(r.u8() % 4)),
            },
        }
    }
    // Whatever is left comes out without a panic, and no buffer twice.
    for _ in 0..256 {
        match once(dm.recv()) {
            Some(Ok(Some(Notify::DataComplete { itt, .. } | Notify::DataFailed { itt, .. }))) => {
                give_back(&mut held, itt)
            }
            Some(Ok(Some(_))) => {}
            _ => break,
        }
    }
}

/// A buffer of `itt` came back: the datamover held one.
fn give_back(held: &mut HashMap<Itt, usize>, itt: Itt) {
    let n = held.entry(itt).or_default();
    assert!(
        *n > 0,
        "a buffer of task {itt:?} came back that the datamover did not hold"
    );
    *n -= 1;
}

/// `usual`, or any 16-bit value when the input says so.
fn usual_or_any(r: &mut Input<'_>, usual: u32) -> u32 {
    if r.u8() & 1 == 0 {
        usual
    } else {
        u32::from(r.u16())
    }
}

/// The target engine's answer to a command: Put_Data, Get_Data or a response, with lengths
/// from the input (sometimes wrong). Whether the datamover took a buffer.
fn engine_answer(dm: &mut IserDatamover<Endpoint>, r: &mut Input<'_>, cmd: &ScsiCommand) -> bool {
    let len = cmd.expected_data_len;
    let resp = ScsiResponse {
        itt: cmd.itt,
        ..ScsiResponse::default()
    };
    match r.u8() % 4 {
        0 if cmd.read => {
            let n = usual_or_any(r, len);
            let Ok(buf) = dm.alloc(n.min(1 << 16) as usize) else {
                return false;
            };
            dm.put_data(
                PutData {
                    itt: cmd.itt,
                    lun: Lun::default(),
                    len: n,
                    exp_cmd_sn: CmdSn(0),
                    max_cmd_sn: CmdSn(0),
                    max_segment_len: 8192,
                    max_burst_len: 1 << 20,
                    response: resp,
                    status_in_data: false,
                },
                buf,
            )
            .is_ok()
        }
        1 if cmd.write => {
            let offset = usual_or_any(r, cmd.data.len() as u32);
            let want = usual_or_any(r, len.saturating_sub(offset));
            let Ok(buf) = dm.alloc(len.min(1 << 16) as usize) else {
                return false;
            };
            dm.get_data(
                GetData {
                    itt: cmd.itt,
                    lun: Lun::default(),
                    r2ts: vec![R2tRequest {
                        ttt: Ttt(1),
                        r2t_sn: R2tSn(0),
                        offset,
                        len: want,
                    }],
                    stat_sn: StatSn(0),
                    exp_cmd_sn: CmdSn(0),
                    max_cmd_sn: CmdSn(0),
                },
                buf,
            )
            .is_ok()
        }
        _ => {
            let _ = dm.send_control(Pdu::ScsiResponse(resp));
            false
        }
    }
}
