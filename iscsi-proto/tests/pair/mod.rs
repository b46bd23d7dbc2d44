//! An in-memory initiator/target pair for `initiator_session.rs`.
//!
//! The initiator is an [`InitiatorLogin`] followed by an [`InitiatorSession`] and a
//! [`PduMover`] in the initiator role; the target is a [`TargetLogin`] followed by a
//! [`TargetSession`], a [`PduMover`] in the target role and a small block store (two LUNs of
//! 1 MiB, 512-byte blocks) that runs TEST UNIT READY, INQUIRY, READ CAPACITY (10), READ (10)
//! and WRITE (10). Both engines are wired the way `iscsi/src/target/conn.rs` wires a target.
//!
//! Every PDU crosses the "wire" as bytes: it is encoded with the negotiated digests, appended
//! to the direction's byte queue, and cut back into PDUs by a [`Deframer`] configured with the
//! receiver's MaxRecvDataSegmentLength, optionally fed in random pieces so that framing is
//! exercised. Filters can drop or edit PDUs before they are encoded (to play a broken
//! target), links can be paused, and time is virtual.
//!
//! While it runs, the harness checks the initiator's sequence numbers on every PDU it sends:
//! non-immediate PDUs take consecutive CmdSNs within the target's MaxCmdSN as last received,
//! immediate PDUs carry the next CmdSN, ExpStatSN never goes back and acknowledges every
//! StatSN received (except possibly that of the target PDU being handled when it is sent), no
//! data segment exceeds the target's MaxRecvDataSegmentLength. At execution time the block
//! store checks that a write received exactly the bytes the initiator was given, and records
//! what a read returned so that the initiator's buffer can be compared.
//! [`Pair::check_wire`] replays the PDU log for the data-transfer rules.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iscsi_proto::auth::TargetAuthConfig;
use iscsi_proto::datamover::{DataError, GetData, Notify, SendCommand};
use iscsi_proto::initiator::{
    CloseReason, Command, CommandStatus, Direction, InitiatorLogin, InitiatorLoginConfig,
    InitiatorSession, InitiatorSessionConfig, InitiatorStep, SessionEvent, SubmitError, TaskError,
};
use iscsi_proto::pdu::{
    AsyncMessage, Digests, LoginStatus, Lun, ScsiCommand, ScsiStatus, TmfResponse, Tsih,
};
use iscsi_proto::pdu_mover::PduMover;
use iscsi_proto::target::{
    CloseReason as TargetClose, Event, LoginConfig, LoginHost, LoginIdentity, LoginStep,
    NewCommand, Reply, ScsiOutcome, SendTargetsQuery, SessionConfig, TargetLogin, TargetRecord,
    TargetSession, TmfRequest, encode_send_targets,
};
use iscsi_proto::text::{Digest, LocalConfig, NegotiatedParams, Role, SessionType};
use iscsi_proto::{CmdSn, Deframer, DeframerConfig, Itt, Pdu, StatSn, Ttt};

/// The target's name.
pub const TARGET: &str = "iqn.2026-11.rs.iscsi:target";
/// The initiator's name.
pub const INITIATOR: &str = "iqn.2026-11.rs.iscsi:initiator";
/// Block size of the store.
pub const BLOCK: usize = 512;
/// Blocks per LUN (1 MiB).
pub const DISK_BLOCKS: u32 = 2048;
/// LUNs of the store.
pub const LUNS: usize = 2;

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// SplitMix64: deterministic test randomness.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(len + 8);
        while v.len() < len {
            v.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        v.truncate(len);
        v
    }

    /// Shuffles `v` in place.
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

/// READ (10) of `blocks` blocks at `lba`.
pub fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    [0x28, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0]
}

/// WRITE (10) of `blocks` blocks at `lba`.
pub fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

/// 18 bytes of fixed-format sense data.
pub fn fixed_sense(key: u8, asc: u8, ascq: u8) -> Bytes {
    let mut s = [0u8; 18];
    s[0] = 0x70;
    s[2] = key;
    s[7] = 10;
    s[12] = asc;
    s[13] = ascq;
    Bytes::copy_from_slice(&s)
}

/// The standard INQUIRY data the store returns (36 bytes).
pub fn inquiry_data() -> Vec<u8> {
    let mut d = vec![0u8; 36];
    d[2] = 0x06; // SPC-4
    d[3] = 0x02;
    d[4] = 31;
    d[8..16].copy_from_slice(b"RUSTTEST");
    d[16..32].copy_from_slice(b"PAIR DISK       ");
    d[32..36].copy_from_slice(b"0001");
    d
}

fn check_condition(key: u8, asc: u8, ascq: u8) -> ScsiOutcome {
    ScsiOutcome {
        status: ScsiStatus::CHECK_CONDITION,
        sense: Some(fixed_sense(key, asc, ascq)),
        data_len: 0,
        transfer_len: 0,
    }
}

fn good(data_len: u32, transfer_len: u64) -> ScsiOutcome {
    ScsiOutcome {
        status: ScsiStatus::GOOD,
        sense: None,
        data_len,
        transfer_len,
    }
}

/// The CmdSN of a request PDU and whether it is immediate.
pub fn cmd_sn_of(pdu: &Pdu) -> Option<(bool, CmdSn)> {
    Some(match pdu {
        Pdu::ScsiCommand(c) => (c.immediate, c.cmd_sn),
        Pdu::TaskMgmtRequest(t) => (t.immediate, t.cmd_sn),
        Pdu::TextRequest(t) => (t.immediate, t.cmd_sn),
        Pdu::LogoutRequest(l) => (l.immediate, l.cmd_sn),
        Pdu::NopOut(n) => (n.immediate, n.cmd_sn),
        _ => return None,
    })
}

/// The ExpStatSN an initiator PDU carries.
pub fn exp_stat_sn_of(pdu: &Pdu) -> Option<StatSn> {
    Some(match pdu {
        Pdu::ScsiCommand(c) => c.exp_stat_sn,
        Pdu::TaskMgmtRequest(t) => t.exp_stat_sn,
        Pdu::TextRequest(t) => t.exp_stat_sn,
        Pdu::LogoutRequest(l) => l.exp_stat_sn,
        Pdu::NopOut(n) => n.exp_stat_sn,
        Pdu::DataOut(d) => d.exp_stat_sn,
        _ => return None,
    })
}

/// The ExpStatSN a target PDU makes the initiator expect next: StatSN + 1 for PDUs that take
/// a StatSN, StatSN itself for a NOP-In ping (it shows the next one).
fn stat_sn_ack(pdu: &Pdu) -> Option<StatSn> {
    Some(match pdu {
        Pdu::ScsiResponse(r) => r.stat_sn.next(),
        Pdu::TaskMgmtResponse(r) => r.stat_sn.next(),
        Pdu::TextResponse(r) => r.stat_sn.next(),
        Pdu::LogoutResponse(r) => r.stat_sn.next(),
        Pdu::Reject(r) => r.stat_sn.next(),
        Pdu::AsyncMessage(r) => r.stat_sn.next(),
        Pdu::DataIn(d) if d.status.is_some() => d.stat_sn.next(),
        Pdu::NopIn(n) if n.itt.is_reserved() => n.stat_sn,
        Pdu::NopIn(n) => n.stat_sn.next(),
        _ => return None,
    })
}

/// The CmdSN window a target PDU carries.
fn window_of(pdu: &Pdu) -> Option<(CmdSn, CmdSn)> {
    Some(match pdu {
        Pdu::NopIn(p) => (p.exp_cmd_sn, p.max_cmd_sn),
        Pdu::ScsiResponse(p) => (p.exp_cmd_sn, p.max_cmd_sn),
        Pdu::TaskMgmtResponse(p) => (p.exp_cmd_sn, p.max_cmd_sn),
        Pdu::TextResponse(p) => (p.exp_cmd_sn, p.max_cmd_sn),
        Pdu::DataIn(p) => (p.exp_cmd_sn, p.max_cmd_sn),
        Pdu::LogoutResponse(p) => (p.exp_cmd_sn, p.max_cmd_sn),
        Pdu::R2t(p) => (p.exp_cmd_sn, p.max_cmd_sn),
        Pdu::AsyncMessage(p) => (p.exp_cmd_sn, p.max_cmd_sn),
        Pdu::Reject(p) => (p.exp_cmd_sn, p.max_cmd_sn),
        _ => return None,
    })
}

fn wire(pdu: Pdu) -> Pdu {
    let b = pdu.to_bytes(Digests::NONE).expect("login PDU encodes");
    let (back, used) = Pdu::parse(&b, Digests::NONE).expect("login PDU parses");
    assert_eq!(used, b.len());
    back
}

// ---------------------------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------------------------

/// How to build a pair.
#[derive(Clone, Debug)]
pub struct Opts {
    /// The initiator's negotiation wishes.
    pub ini: LocalConfig,
    /// The target's negotiation settings (permissive: the initiator's wishes decide).
    pub tgt: LocalConfig,
    /// The target's queue depth (CmdSN window).
    pub queue_depth: u32,
    /// The target session's settings (its queue depth is replaced by `queue_depth`).
    pub tgt_session: SessionConfig,
    /// The initiator session's settings.
    pub ini_session: InitiatorSessionConfig,
    /// A discovery session.
    pub discovery: bool,
    /// The initiator's first CmdSN.
    pub first_cmd_sn: u32,
    /// The target's first StatSN.
    pub first_stat_sn: u32,
    /// Feed the wire in random pieces.
    pub split: bool,
    /// Seed of the randomness.
    pub seed: u64,
    /// The test damages the wire: framing and digest errors are handled as a datamover
    /// handles them instead of failing the test.
    pub faults: bool,
    /// A deadline this far from submission for every command that has none (what the
    /// `iscsi` crate's initiator does by default).
    pub command_timeout: Option<Duration>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts::new()
    }
}

impl Opts {
    /// Defaults: ImmediateData=Yes, InitialR2T=Yes, 8 KiB segments both ways, bursts of 64 KiB
    /// / 256 KiB, queue depth 16, no pings, sequence numbers just before 2^32.
    pub fn new() -> Opts {
        let ini = LocalConfig {
            initiator_name: Some(INITIATOR.into()),
            target_name: Some(TARGET.into()),
            max_recv_data_segment_length: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            immediate_data: true,
            initial_r2t: true,
            max_outstanding_r2t: 1,
            ..LocalConfig::default()
        };
        let tgt = LocalConfig {
            target_portal_group_tag: Some(1),
            header_digest: vec![Digest::Crc32c, Digest::None],
            data_digest: vec![Digest::Crc32c, Digest::None],
            initial_r2t: false,
            immediate_data: true,
            max_recv_data_segment_length: 8192,
            max_burst_length: (1 << 24) - 1,
            first_burst_length: (1 << 24) - 1,
            max_outstanding_r2t: 65535,
            ..LocalConfig::default()
        };
        Opts {
            ini,
            tgt,
            queue_depth: 16,
            tgt_session: SessionConfig {
                nop_in_interval: None,
                ..SessionConfig::default()
            },
            ini_session: InitiatorSessionConfig {
                nop_interval: None,
                ..InitiatorSessionConfig::default()
            },
            discovery: false,
            first_cmd_sn: 0xffff_fff0,
            first_stat_sn: 0xffff_fff4,
            split: false,
            seed: 1,
            faults: false,
            command_timeout: None,
        }
    }

    /// The test damages the wire (see [`Opts::faults`]).
    pub fn faults(mut self) -> Opts {
        self.faults = true;
        self
    }

    /// ImmediateData, InitialR2T, FirstBurstLength, MaxBurstLength.
    pub fn burst(mut self, immediate: bool, initial_r2t: bool, first: u32, max: u32) -> Opts {
        self.ini.immediate_data = immediate;
        self.ini.initial_r2t = initial_r2t;
        self.ini.first_burst_length = first;
        self.ini.max_burst_length = max;
        self
    }

    /// MaxRecvDataSegmentLength declared by the initiator and by the target.
    pub fn mrdsl(mut self, initiator: u32, target: u32) -> Opts {
        self.ini.max_recv_data_segment_length = initiator;
        self.tgt.max_recv_data_segment_length = target;
        self
    }

    /// MaxOutstandingR2T.
    pub fn max_r2t(mut self, n: u16) -> Opts {
        self.ini.max_outstanding_r2t = n;
        self
    }

    /// The target's queue depth.
    pub fn depth(mut self, n: u32) -> Opts {
        self.queue_depth = n;
        self
    }

    /// CRC32C header and data digests.
    pub fn digests(mut self) -> Opts {
        self.ini.header_digest = vec![Digest::Crc32c];
        self.ini.data_digest = vec![Digest::Crc32c];
        self
    }

    /// Random split points, from `seed`.
    pub fn split(mut self, seed: u64) -> Opts {
        self.split = true;
        self.seed = seed;
        self
    }

    /// A discovery session.
    pub fn discovery(mut self) -> Opts {
        self.discovery = true;
        self.ini.target_name = None;
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// A direction on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Initiator to target.
    ToTarget,
    /// Target to initiator.
    ToInitiator,
}

/// A command as the initiator's engine sees it.
#[derive(Debug)]
pub struct IniTask {
    /// What was submitted.
    pub cmd: Command,
    /// The data-out given (writes).
    pub data: Option<Vec<u8>>,
    /// The task buffer while the engine holds it.
    pub buf: Option<Vec<u8>>,
    /// The datamover holds the buffer.
    pub at_mover: bool,
    /// The SendCommand the session produced.
    pub sent: Option<SendCommand>,
    /// The outcome.
    pub result: Option<Result<CommandStatus, TaskError>>,
    /// A data-in failure reported by the datamover.
    pub data_error: Option<DataError>,
}

/// What the initiator session reported, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum IniEv {
    /// A command completed.
    Complete(Itt),
    /// A task management answer.
    Tmf(Itt, TmfResponse),
    /// A text answer.
    Text(Itt, Option<Vec<u8>>),
    /// The target asked for a logout.
    LogoutRequested(u16),
    /// An asynchronous message.
    Async(AsyncMessage),
    /// The connection closed.
    Close(CloseReason),
}

/// A target task ready to run.
#[derive(Debug)]
pub struct Exec {
    /// Its tag.
    pub itt: Itt,
    /// Its LUN.
    pub lun: Lun,
    /// Its CDB.
    pub cdb: Vec<u8>,
    /// Its buffer.
    pub buf: Vec<u8>,
}

#[derive(Debug)]
struct Waiting {
    lun: Lun,
    cdb: Vec<u8>,
    buf: Option<Vec<u8>>,
}

/// Drops (`None`) or edits a PDU before it is encoded.
pub type Filter = Box<dyn FnMut(Pdu) -> Option<Pdu>>;

struct Link {
    pending: Vec<u8>,
    deframer: Deframer,
    digests: Digests,
    max_data: u32,
    paused: bool,
}

/// Counts from [`Pair::check_wire`].
#[derive(Debug, Default, Clone)]
pub struct WireStats {
    /// SCSI Commands sent.
    pub commands: usize,
    /// Bytes of immediate data.
    pub immediate_bytes: u64,
    /// Unsolicited Data-Out PDUs.
    pub unsolicited_pdus: usize,
    /// Unsolicited Data-Out bytes.
    pub unsolicited_bytes: u64,
    /// R2Ts received.
    pub r2ts: usize,
    /// Solicited Data-Out PDUs.
    pub solicited_pdus: usize,
    /// Solicited Data-Out bytes.
    pub solicited_bytes: u64,
    /// Most R2Ts one Get_Data asked for at once.
    pub max_r2ts_at_once: usize,
    /// Data-In PDUs.
    pub data_in_pdus: usize,
    /// Data-In PDUs with the status.
    pub status_in_data: usize,
    /// SCSI Responses after Data-In.
    pub separate_responses: usize,
    /// Largest data segment the initiator sent.
    pub largest_to_target: usize,
    /// Largest data segment the target sent.
    pub largest_to_initiator: usize,
}

struct LoginHostImpl;

impl LoginHost for LoginHostImpl {
    fn authorize(&mut self, _: &LoginIdentity) -> Result<Arc<TargetAuthConfig>, LoginStatus> {
        Ok(Arc::new(TargetAuthConfig::default()))
    }

    fn open_session(&mut self, _: &LoginIdentity, _: Option<&str>) -> Result<Tsih, LoginStatus> {
        Ok(Tsih(0x77))
    }
}

// ---------------------------------------------------------------------------------------------
// The pair
// ---------------------------------------------------------------------------------------------

/// A logged-in initiator and target joined by an in-memory wire.
pub struct Pair {
    /// Virtual time zero.
    pub t0: Instant,
    /// Virtual time elapsed.
    pub now: Duration,
    /// The initiator's session.
    pub ini: InitiatorSession,
    /// The initiator's datamover.
    pub imover: PduMover,
    /// The target's session.
    pub tgt: TargetSession,
    /// The target's datamover.
    pub tmover: PduMover,
    /// Parameters in force (the initiator's view; the target's agrees).
    pub params: NegotiatedParams,
    /// The options used.
    pub opts: Opts,
    /// The LUNs' contents.
    pub disks: Vec<Vec<u8>>,
    /// Initiator tasks by tag.
    pub tasks: HashMap<Itt, IniTask>,
    /// Tags in submission order.
    pub submitted: Vec<Itt>,
    /// Initiator events in order.
    pub events: Vec<IniEv>,
    /// Why the initiator closed.
    pub ini_close: Option<CloseReason>,
    /// Why the target closed.
    pub tgt_close: Option<TargetClose>,
    /// Target: hold ready tasks instead of running them.
    pub hold: bool,
    /// Target: tasks held.
    pub held: Vec<Exec>,
    /// Target: tags in execution order.
    pub executed: Vec<Itt>,
    /// Target: tasks whose completion produced no status (aborted).
    pub silenced: Vec<Itt>,
    /// Target: tasks released without running.
    pub released: Vec<Itt>,
    /// Target: new commands seen.
    pub new_commands: Vec<NewCommand>,
    /// Target: Get_Data requests.
    pub get_data: Vec<GetData>,
    /// Target: task management requests handed to the engine.
    pub tmf_requests: Vec<TmfRequest>,
    /// Target: how the engine answers task management.
    pub tmf_response: TmfResponse,
    /// Target: SendTargets records.
    pub records: Vec<TargetRecord>,
    /// Target: never put the status in the last Data-In.
    pub force_separate_status: bool,
    /// Target: what each read returned, taken from the store when it ran.
    pub read_snapshots: HashMap<Itt, Vec<u8>>,
    /// Every PDU on the wire: initiator PDUs when sent, target PDUs when received.
    pub log: Vec<(Dir, Pdu)>,
    /// Edits or drops initiator PDUs.
    pub to_target_filter: Option<Filter>,
    /// Edits or drops target PDUs.
    pub to_initiator_filter: Option<Filter>,
    /// Randomness (split points).
    pub rng: Rng,
    waiting: HashMap<Itt, Waiting>,
    ready: VecDeque<Exec>,
    i2t: Link,
    t2i: Link,
    /// The initiator closed: the connection is down.
    down: bool,
    /// The target closed: it reads no more.
    target_down: bool,
    // Live sequence checks.
    next_cmd_sn: CmdSn,
    max_cmd_sn_seen: CmdSn,
    exp_stat_sn_seen: StatSn,
    /// What the initiator had acknowledged before the PDU being processed arrived.
    exp_stat_sn_floor: StatSn,
    last_exp_stat_sn_sent: StatSn,
    last_data_out_exp_stat_sn: StatSn,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("now", &self.now)
            .field("ini", &self.ini)
            .field("tgt", &self.tgt)
            .finish_non_exhaustive()
    }
}

impl Pair {
    /// Logs in with `opts` and starts both sessions at virtual time zero.
    pub fn new(opts: Opts) -> Pair {
        let t0 = Instant::now();
        let mut icfg = InitiatorLoginConfig::new(opts.ini.clone());
        icfg.cmd_sn = CmdSn(opts.first_cmd_sn);
        icfg.itt = Itt(0x0100_0000);
        if opts.discovery {
            icfg.session_type = SessionType::Discovery;
        }
        let mut ilogin = InitiatorLogin::new(icfg, false);
        let mut tlogin = TargetLogin::new(
            LoginConfig {
                negotiation: opts.tgt.clone(),
                initial_stat_sn: StatSn(opts.first_stat_sn),
                queue_depth: opts.queue_depth,
                random: (0..64u8).map(|b| b.wrapping_mul(29) ^ 0x5a).collect(),
            },
            false,
        );
        let mut host = LoginHostImpl;
        let mut req = ilogin.start();
        let mut outcome = None;
        for _ in 0..16 {
            let Pdu::LoginRequest(r) = wire(Pdu::LoginRequest(req.clone())) else {
                unreachable!()
            };
            let (resp, complete) = match tlogin.handle(&r, &mut host) {
                LoginStep::Continue(r) => (r, false),
                LoginStep::Complete(r) => (r, true),
                LoginStep::Failed(r, e) => panic!("target refused the login: {e} ({r:?})"),
            };
            let Pdu::LoginResponse(resp) = wire(Pdu::LoginResponse(resp)) else {
                unreachable!()
            };
            match ilogin.handle(&resp).expect("initiator login step") {
                InitiatorStep::Send(next) => req = next,
                InitiatorStep::Complete(o) => {
                    assert!(complete, "initiator done while the target is not");
                    outcome = Some(o);
                    break;
                }
                InitiatorStep::Redirect { .. } => panic!("unexpected redirection"),
            }
        }
        let outcome = outcome.expect("login completes");
        let toutcome = tlogin.finish().expect("target login outcome");
        let (ip, tp) = (&outcome.params, &toutcome.params);
        assert_eq!(ip.immediate_data, tp.immediate_data);
        assert_eq!(ip.initial_r2t, tp.initial_r2t);
        assert_eq!(ip.first_burst_length, tp.first_burst_length);
        assert_eq!(ip.max_burst_length, tp.max_burst_length);
        assert_eq!(ip.max_outstanding_r2t, tp.max_outstanding_r2t);
        assert_eq!(
            ip.initiator_max_recv_data_segment_length,
            tp.initiator_max_recv_data_segment_length
        );
        assert_eq!(
            ip.target_max_recv_data_segment_length,
            tp.target_max_recv_data_segment_length
        );
        assert_eq!(ip.header_digest, tp.header_digest);
        assert_eq!(ip.data_digest, tp.data_digest);
        assert_eq!(outcome.cmd_sn, CmdSn(opts.first_cmd_sn));
        assert_eq!(toutcome.exp_cmd_sn, outcome.cmd_sn);
        assert_eq!(outcome.exp_stat_sn, toutcome.stat_sn);

        let params = outcome.params.clone();
        let digests = Digests {
            header: params.header_digest == Digest::Crc32c,
            data: params.data_digest == Digest::Crc32c,
        };
        let ini = InitiatorSession::new(opts.ini_session.clone(), &outcome, t0);
        let tgt = TargetSession::new(
            SessionConfig {
                queue_depth: opts.queue_depth,
                ..opts.tgt_session.clone()
            },
            toutcome.negotiator,
            toutcome.exp_cmd_sn,
            toutcome.stat_sn,
            t0,
        );
        let mut imover = PduMover::new(Role::Initiator);
        imover.notice_key_values(&outcome.params);
        let mut tmover = PduMover::new(Role::Target);
        tmover.notice_key_values(&toutcome.params);
        let link = |max: u32| Link {
            pending: Vec::new(),
            deframer: Deframer::new(DeframerConfig {
                digests,
                max_data_segment_len: max,
            }),
            digests,
            max_data: max,
            paused: false,
        };
        let i2t = link(params.target_max_recv_data_segment_length);
        let t2i = link(params.initiator_max_recv_data_segment_length);
        Pair {
            t0,
            now: Duration::ZERO,
            ini,
            imover,
            tgt,
            tmover,
            next_cmd_sn: outcome.cmd_sn,
            max_cmd_sn_seen: outcome.max_cmd_sn,
            exp_stat_sn_seen: outcome.exp_stat_sn,
            exp_stat_sn_floor: outcome.exp_stat_sn,
            last_exp_stat_sn_sent: outcome.exp_stat_sn,
            last_data_out_exp_stat_sn: outcome.exp_stat_sn,
            params,
            rng: Rng::new(opts.seed),
            opts,
            disks: vec![vec![0; DISK_BLOCKS as usize * BLOCK]; LUNS],
            tasks: HashMap::new(),
            submitted: Vec::new(),
            events: Vec::new(),
            ini_close: None,
            tgt_close: None,
            hold: false,
            held: Vec::new(),
            executed: Vec::new(),
            silenced: Vec::new(),
            released: Vec::new(),
            new_commands: Vec::new(),
            get_data: Vec::new(),
            tmf_requests: Vec::new(),
            tmf_response: TmfResponse::COMPLETE,
            records: Vec::new(),
            force_separate_status: false,
            read_snapshots: HashMap::new(),
            log: Vec::new(),
            to_target_filter: None,
            to_initiator_filter: None,
            waiting: HashMap::new(),
            ready: VecDeque::new(),
            i2t,
            t2i,
            down: false,
            target_down: false,
        }
    }

    /// The current virtual instant.
    pub fn instant(&self) -> Instant {
        self.t0 + self.now
    }

    // -----------------------------------------------------------------------------------------
    // Initiator side
    // -----------------------------------------------------------------------------------------

    /// Submits a command (with its data-out for a write).
    pub fn try_submit(&mut self, cmd: Command, data: Option<Vec<u8>>) -> Result<Itt, SubmitError> {
        let buf = match cmd.direction {
            Direction::None => None,
            Direction::Read(n) => Some(vec![0u8; n as usize]),
            Direction::Write(n) => {
                let d = data.clone().expect("a write needs data");
                assert_eq!(d.len(), n as usize, "write data length");
                Some(d)
            }
        };
        let now = self.instant();
        let mut cmd = cmd;
        if cmd.deadline.is_none() {
            cmd.deadline = self.opts.command_timeout.map(|t| now + t);
        }
        let itt = self.ini.submit(cmd.clone(), now)?;
        assert!(
            !self.tasks.contains_key(&itt),
            "ITT {itt:?} handed out twice"
        );
        self.tasks.insert(
            itt,
            IniTask {
                cmd,
                data,
                buf,
                at_mover: false,
                sent: None,
                result: None,
                data_error: None,
            },
        );
        self.submitted.push(itt);
        Ok(itt)
    }

    /// Submits a command, which must be accepted.
    pub fn submit(&mut self, cmd: Command, data: Option<Vec<u8>>) -> Itt {
        self.try_submit(cmd, data).expect("command accepted")
    }

    /// READ (10) on `lun`.
    pub fn read(&mut self, lun: u16, lba: u32, blocks: u16) -> Itt {
        let len = u32::from(blocks) * BLOCK as u32;
        self.submit(Command::read(lun, &read10(lba, blocks), len), None)
    }

    /// WRITE (10) of `data` (whole blocks) on `lun`.
    pub fn write(&mut self, lun: u16, lba: u32, data: Vec<u8>) -> Itt {
        assert_eq!(data.len() % BLOCK, 0);
        let blocks = (data.len() / BLOCK) as u16;
        let cmd = Command::write(lun, &write10(lba, blocks), data.len() as u32);
        self.submit(cmd, Some(data))
    }

    /// TEST UNIT READY on `lun`.
    pub fn tur(&mut self, lun: u16) -> Itt {
        self.submit(Command::new(lun, &[0; 6]), None)
    }

    fn ini_event(&mut self, e: SessionEvent) {
        match e {
            SessionEvent::Send(pdu) => self.imover.send_control(pdu),
            SessionEvent::Command(req) => {
                let itt = req.command.itt;
                let t = self
                    .tasks
                    .get_mut(&itt)
                    .unwrap_or_else(|| panic!("Command event for unknown task {itt:?}"));
                assert!(t.sent.is_none(), "command {itt:?} sent twice");
                assert!(
                    t.result.is_none(),
                    "command {itt:?} sent after it completed"
                );
                let buf = t.buf.take();
                t.at_mover = buf.is_some();
                t.sent = Some(req.clone());
                self.imover.send_command(req, buf);
            }
            SessionEvent::Complete { itt, result } => {
                let t = self
                    .tasks
                    .get_mut(&itt)
                    .unwrap_or_else(|| panic!("Complete for unknown task {itt:?}"));
                assert!(
                    t.result.is_none(),
                    "{itt:?} completed twice: {:?} then {result:?}",
                    t.result
                );
                if t.at_mover {
                    t.buf = self.imover.cancel_data(itt);
                    t.at_mover = false;
                    assert!(t.buf.is_some(), "cancel_data gives {itt:?}'s buffer back");
                }
                t.result = Some(result);
                self.events.push(IniEv::Complete(itt));
            }
            SessionEvent::TaskManagement { itt, response } => {
                self.events.push(IniEv::Tmf(itt, response))
            }
            SessionEvent::Text { itt, text } => self.events.push(IniEv::Text(itt, text)),
            SessionEvent::LogoutRequested { within_secs } => {
                self.events.push(IniEv::LogoutRequested(within_secs))
            }
            SessionEvent::Async(m) => self.events.push(IniEv::Async(m)),
            SessionEvent::Close(r) => {
                assert!(self.ini_close.is_none(), "closed twice: {r:?}");
                self.ini_close = Some(r.clone());
                self.events.push(IniEv::Close(r));
                self.down = true;
            }
            other => panic!("unexpected initiator event {other:?}"),
        }
    }

    fn buffer_back(&mut self, itt: Itt, buf: Vec<u8>) -> &mut IniTask {
        let t = self
            .tasks
            .get_mut(&itt)
            .unwrap_or_else(|| panic!("buffer of unknown task {itt:?}"));
        assert!(t.at_mover, "buffer of {itt:?} returned twice");
        assert!(
            t.result.is_none(),
            "buffer of {itt:?} returned after Complete"
        );
        t.at_mover = false;
        t.buf = Some(buf);
        t
    }

    fn ini_notify(&mut self, n: Notify<Vec<u8>>) {
        let now = self.instant();
        match n {
            Notify::Control(pdu) => self.ini.handle_pdu(now, pdu),
            Notify::Malformed { header, error } => self.ini.handle_malformed(now, &header, &error),
            Notify::DataComplete { itt, buf } => {
                self.buffer_back(itt, buf);
            }
            Notify::DataFailed { itt, buf, error } => {
                self.buffer_back(itt, buf).data_error = Some(error.clone());
                self.ini.data_failed(itt, error);
            }
            Notify::Window {
                exp_cmd_sn,
                max_cmd_sn,
            } => self.ini.window(exp_cmd_sn, max_cmd_sn),
            other => panic!("unexpected initiator notification {other:?}"),
        }
    }

    /// Runs the initiator's engine until it has nothing to do. True if it did anything.
    pub fn settle_initiator(&mut self) -> bool {
        let mut progress = false;
        loop {
            let mut any = false;
            while let Some(n) = self.imover.next_notify() {
                any = true;
                self.ini_notify(n);
            }
            while let Some(e) = self.ini.poll_event() {
                any = true;
                self.ini_event(e);
            }
            while let Some(p) = self.imover.next_output() {
                any = true;
                self.transmit_to_target(p);
            }
            if !any {
                return progress;
            }
            progress = true;
        }
    }

    fn transmit_to_target(&mut self, pdu: Pdu) {
        if self.down {
            return;
        }
        let pdu = match self.to_target_filter.as_mut() {
            Some(f) => match f(pdu) {
                Some(p) => p,
                None => return,
            },
            None => pdu,
        };
        self.check_initiator_pdu(&pdu);
        let bytes = pdu
            .to_bytes(self.i2t.digests)
            .expect("initiator PDU encodes");
        self.i2t.pending.extend_from_slice(&bytes);
        self.log.push((Dir::ToTarget, pdu));
    }

    /// The live checks of an initiator PDU.
    fn check_initiator_pdu(&mut self, pdu: &Pdu) {
        let max = self.params.target_max_recv_data_segment_length as usize;
        assert!(
            pdu.data().len() <= max,
            "initiator sent {} data bytes, above the target's MaxRecvDataSegmentLength {max}: {pdu:?}",
            pdu.data().len()
        );
        if let Some((immediate, sn)) = cmd_sn_of(pdu) {
            assert_eq!(
                sn, self.next_cmd_sn,
                "CmdSN of {pdu:?}: expected the next one ({:?}), immediate={immediate}",
                self.next_cmd_sn
            );
            if !immediate {
                assert!(
                    sn.is_at_or_before(self.max_cmd_sn_seen),
                    "non-immediate {pdu:?} with CmdSN {sn:?} beyond MaxCmdSN {:?}",
                    self.max_cmd_sn_seen
                );
                self.next_cmd_sn = sn.next();
            }
        }
        if let Some(e) = exp_stat_sn_of(pdu) {
            if matches!(pdu, Pdu::DataOut(_)) {
                assert!(
                    e.is_at_or_before(self.exp_stat_sn_seen)
                        && e.is_at_or_after(self.last_data_out_exp_stat_sn),
                    "Data-Out ExpStatSN {e:?} outside {:?}..={:?}",
                    self.last_data_out_exp_stat_sn,
                    self.exp_stat_sn_seen
                );
                self.last_data_out_exp_stat_sn = e;
            } else {
                // Up to date, except that a PDU sent while a target PDU is being handled may
                // not yet count that PDU's own StatSN; never backwards.
                assert!(
                    e.is_at_or_before(self.exp_stat_sn_seen)
                        && e.is_at_or_after(self.exp_stat_sn_floor)
                        && e.is_at_or_after(self.last_exp_stat_sn_sent),
                    "ExpStatSN {e:?} of {pdu:?}: expected {:?} (at least {:?}, and not below {:?})",
                    self.exp_stat_sn_seen,
                    self.exp_stat_sn_floor,
                    self.last_exp_stat_sn_sent
                );
                self.last_exp_stat_sn_sent = e;
            }
        }
    }

    /// Puts a PDU on the wire to the initiator as if the target had sent it (not filtered).
    pub fn inject_to_initiator(&mut self, pdu: Pdu) {
        let bytes = pdu
            .to_bytes(self.t2i.digests)
            .expect("injected PDU encodes");
        self.t2i.pending.extend_from_slice(&bytes);
    }

    /// Puts raw bytes on the wire to the initiator.
    pub fn inject_raw_to_initiator(&mut self, bytes: &[u8]) {
        self.t2i.pending.extend_from_slice(bytes);
    }

    /// A stream that cannot be framed any more: the transport fails and both ends see the
    /// connection go (the target's engine ends the session's tasks, the initiator's engine
    /// calls `connection_lost`).
    fn wire_broke(&mut self, _dir: Dir) {
        self.target_down = true;
        self.connection_lost();
    }

    /// The bytes waiting on the wire in one direction (a test may edit them while the link
    /// is paused: corrupt, cut, reorder).
    pub fn pending_mut(&mut self, dir: Dir) -> &mut Vec<u8> {
        match dir {
            Dir::ToTarget => &mut self.i2t.pending,
            Dir::ToInitiator => &mut self.t2i.pending,
        }
    }

    /// The digests on the wire in one direction.
    pub fn wire_digests(&self, dir: Dir) -> Digests {
        match dir {
            Dir::ToTarget => self.i2t.digests,
            Dir::ToInitiator => self.t2i.digests,
        }
    }

    /// The whole PDUs waiting on the wire in one direction, as their bytes (a trailing
    /// fragment, or bytes that cannot be framed, come last as one piece).
    pub fn pending_pdus(&self, dir: Dir) -> Vec<Vec<u8>> {
        let link = match dir {
            Dir::ToTarget => &self.i2t,
            Dir::ToInitiator => &self.t2i,
        };
        let mut d = Deframer::new(DeframerConfig {
            digests: link.digests,
            max_data_segment_len: link.max_data,
        });
        d.feed(&link.pending);
        let mut out = Vec::new();
        let mut used = 0;
        while let Ok(Some(f)) = d.next_frame() {
            used += f.wire_len();
            out.push(f.bytes.to_vec());
        }
        if used < link.pending.len() {
            out.push(link.pending[used..].to_vec());
        }
        out
    }

    /// Delivers what is waiting in one direction now, even while the link is paused.
    pub fn deliver_now(&mut self, dir: Dir) {
        let paused = match dir {
            Dir::ToTarget => self.i2t.paused,
            Dir::ToInitiator => self.t2i.paused,
        };
        self.pause(dir, false);
        self.deliver(dir);
        self.pause(dir, paused);
    }

    /// The transport fails under both ends: the target stops reading and the initiator's
    /// engine learns the connection is gone.
    pub fn cut(&mut self) {
        self.wire_broke(Dir::ToTarget);
    }

    /// The engine's reaction to a dead transport: the session's `connection_lost`.
    pub fn connection_lost(&mut self) {
        self.down = true;
        self.ini.connection_lost();
        self.settle_initiator();
    }

    // -----------------------------------------------------------------------------------------
    // Target side
    // -----------------------------------------------------------------------------------------

    fn enqueue(&mut self, x: Exec) {
        if self.hold {
            self.held.push(x);
        } else {
            self.ready.push_back(x);
        }
    }

    fn tgt_event(&mut self, e: Event) {
        match e {
            Event::Send(pdu) => self.tmover.send_control(pdu),
            Event::Command(cmd) => {
                let mut buf = vec![0u8; cmd.edtl as usize];
                let imm = &cmd.immediate_data;
                buf.get_mut(..imm.len())
                    .expect("immediate data fits the buffer")
                    .copy_from_slice(imm);
                let cdb = cmd.cdb_bytes();
                if cmd.ready {
                    self.enqueue(Exec {
                        itt: cmd.itt,
                        lun: cmd.lun,
                        cdb,
                        buf,
                    });
                } else {
                    self.waiting.insert(
                        cmd.itt,
                        Waiting {
                            lun: cmd.lun,
                            cdb,
                            buf: Some(buf),
                        },
                    );
                }
                self.new_commands.push(cmd);
            }
            Event::Data { itt, offset, data } => {
                let w = self
                    .waiting
                    .get_mut(&itt)
                    .and_then(|w| w.buf.as_mut())
                    .expect("unsolicited data for a waiting task");
                let start = offset as usize;
                w.get_mut(start..start + data.len())
                    .expect("unsolicited data inside the buffer")
                    .copy_from_slice(&data);
            }
            Event::GetData(req) => {
                let buf = self
                    .waiting
                    .get_mut(&req.itt)
                    .and_then(|w| w.buf.take())
                    .expect("Get_Data for a waiting task with its buffer");
                self.get_data.push(req.clone());
                self.tmover.get_data(req, buf);
            }
            Event::Execute { itt } => {
                let w = self
                    .waiting
                    .remove(&itt)
                    .expect("Execute of a waiting task");
                let buf = w.buf.expect("the buffer is back before Execute");
                self.enqueue(Exec {
                    itt,
                    lun: w.lun,
                    cdb: w.cdb,
                    buf,
                });
            }
            Event::Release { itt } => {
                self.waiting.remove(&itt);
                self.tmover.cancel_data(itt);
                self.released.push(itt);
            }
            Event::TaskManagement(req) => {
                let itt = req.itt;
                self.tmf_requests.push(req);
                self.tgt.tmf_done(itt, self.tmf_response);
            }
            Event::SendTargets { itt, query } => {
                let records: Vec<TargetRecord> = self
                    .records
                    .iter()
                    .filter(|r| match &query {
                        SendTargetsQuery::All => true,
                        SendTargetsQuery::Target(t) => r.name == *t,
                        SendTargetsQuery::Current => r.name == TARGET,
                    })
                    .cloned()
                    .collect();
                self.tgt
                    .send_targets_reply(itt, encode_send_targets(&records));
            }
            Event::KeyValues(p) => self.tmover.notice_key_values(&p),
            Event::Close(r) => {
                self.tgt_close = Some(r);
                self.target_down = true;
            }
            other => panic!("unexpected target event {other:?}"),
        }
    }

    fn tgt_notify(&mut self, n: Notify<Vec<u8>>) {
        let now = self.instant();
        match n {
            Notify::Control(pdu) => self.tgt.handle_pdu(now, pdu),
            Notify::Malformed { header, error } => self.tgt.handle_malformed(now, &header, &error),
            Notify::DataComplete { itt, buf } => {
                if let Some(w) = self.waiting.get_mut(&itt) {
                    w.buf = Some(buf);
                }
                self.tgt.data_complete(itt);
            }
            Notify::DataFailed { itt, error, .. } => self.tgt.data_failed(itt, error),
            other => panic!("unexpected target notification {other:?}"),
        }
    }

    /// Runs the target's engine until it has nothing to do. True if it did anything.
    pub fn settle_target(&mut self) -> bool {
        let mut progress = false;
        loop {
            let mut any = false;
            while let Some(n) = self.tmover.next_notify() {
                any = true;
                self.tgt_notify(n);
            }
            while let Some(e) = self.tgt.poll_event() {
                any = true;
                self.tgt_event(e);
            }
            while let Some(x) = self.ready.pop_front() {
                any = true;
                self.execute(x);
            }
            while let Some(p) = self.tmover.next_output() {
                any = true;
                self.transmit_to_initiator(p);
            }
            if !any {
                return progress;
            }
            progress = true;
        }
    }

    fn transmit_to_initiator(&mut self, pdu: Pdu) {
        if self.down {
            return;
        }
        let pdu = match self.to_initiator_filter.as_mut() {
            Some(f) => match f(pdu) {
                Some(p) => p,
                None => return,
            },
            None => pdu,
        };
        let bytes = pdu.to_bytes(self.t2i.digests).expect("target PDU encodes");
        self.t2i.pending.extend_from_slice(&bytes);
    }

    /// Runs one task at the target now.
    fn execute(&mut self, x: Exec) {
        let Exec {
            itt,
            lun,
            cdb,
            mut buf,
        } = x;
        self.executed.push(itt);
        let outcome = self.scsi(itt, lun, &cdb, &mut buf);
        match self.tgt.complete(itt, outcome) {
            Some(Reply::Response(pdu)) => self.tmover.send_control(pdu),
            Some(Reply::Data(mut put)) => {
                if self.force_separate_status {
                    put.status_in_data = false;
                }
                self.tmover.put_data(put, buf);
            }
            None => self.silenced.push(itt),
        }
    }

    /// The block store.
    fn scsi(&mut self, itt: Itt, lun: Lun, cdb: &[u8], buf: &mut [u8]) -> ScsiOutcome {
        let Some(disk) = lun.index().map(usize::from).filter(|i| *i < LUNS) else {
            return check_condition(0x05, 0x25, 0x00);
        };
        match cdb[0] {
            0x00 => good(0, 0),
            0x12 => {
                let alloc = usize::from(u16::from_be_bytes([cdb[3], cdb[4]]));
                let data = inquiry_data();
                let n = data.len().min(alloc).min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                good(n as u32, data.len().min(alloc) as u64)
            }
            0x25 => {
                let mut data = (DISK_BLOCKS - 1).to_be_bytes().to_vec();
                data.extend_from_slice(&(BLOCK as u32).to_be_bytes());
                let n = data.len().min(buf.len());
                buf[..n].copy_from_slice(&data[..n]);
                good(n as u32, 8)
            }
            op @ (0x28 | 0x2a) => {
                let lba = u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]]);
                let blocks = u32::from(u16::from_be_bytes([cdb[7], cdb[8]]));
                if u64::from(lba) + u64::from(blocks) > u64::from(DISK_BLOCKS) {
                    return check_condition(0x05, 0x21, 0x00);
                }
                let start = lba as usize * BLOCK;
                let transfer = blocks as usize * BLOCK;
                let n = transfer.min(buf.len());
                let disk = &mut self.disks[disk];
                if op == 0x28 {
                    buf[..n].copy_from_slice(&disk[start..start + n]);
                    self.read_snapshots.insert(itt, buf[..n].to_vec());
                    good(n as u32, transfer as u64)
                } else {
                    if let Some(expected) = self.tasks.get(&itt).and_then(|t| t.data.as_ref()) {
                        assert!(
                            buf == &expected[..],
                            "the target received other data-out than the initiator was given for {itt:?}"
                        );
                    }
                    disk[start..start + n].copy_from_slice(&buf[..n]);
                    good(0, transfer as u64)
                }
            }
            _ => check_condition(0x05, 0x20, 0x00),
        }
    }

    /// Runs a held task (and everything that follows).
    pub fn release(&mut self, itt: Itt) {
        let i = self
            .held
            .iter()
            .position(|x| x.itt == itt)
            .unwrap_or_else(|| panic!("{itt:?} is not held"));
        let x = self.held.remove(i);
        self.execute(x);
        self.run();
    }

    /// Runs every held task, in the order they arrived, until none is held.
    pub fn release_all(&mut self) {
        while !self.held.is_empty() {
            let x = self.held.remove(0);
            self.execute(x);
            self.run();
        }
    }

    /// Tags of the tasks held.
    pub fn held_itts(&self) -> Vec<Itt> {
        self.held.iter().map(|x| x.itt).collect()
    }

    // -----------------------------------------------------------------------------------------
    // The wire
    // -----------------------------------------------------------------------------------------

    /// Stops (or resumes) delivery in one direction.
    pub fn pause(&mut self, dir: Dir, paused: bool) {
        match dir {
            Dir::ToTarget => self.i2t.paused = paused,
            Dir::ToInitiator => self.t2i.paused = paused,
        }
    }

    fn deliver(&mut self, dir: Dir) -> bool {
        if self.down {
            self.i2t.pending.clear();
            self.t2i.pending.clear();
            return false;
        }
        if dir == Dir::ToTarget && self.target_down {
            self.i2t.pending.clear();
            return false;
        }
        let link = match dir {
            Dir::ToTarget => &mut self.i2t,
            Dir::ToInitiator => &mut self.t2i,
        };
        if link.paused || link.pending.is_empty() {
            return false;
        }
        let bytes = std::mem::take(&mut link.pending);
        let mut pos = 0;
        while pos < bytes.len() {
            let left = (bytes.len() - pos) as u64;
            let n = if self.opts.split {
                let cap = match self.rng.below(3) {
                    0 => 7,
                    1 => 100,
                    _ => 6000,
                };
                1 + self.rng.below(left.min(cap)) as usize
            } else {
                bytes.len() - pos
            };
            let piece = &bytes[pos..pos + n];
            pos += n;
            match dir {
                Dir::ToTarget => self.i2t.deframer.feed(piece),
                Dir::ToInitiator => self.t2i.deframer.feed(piece),
            }
            loop {
                if self.down || (dir == Dir::ToTarget && self.target_down) {
                    return true;
                }
                let frame = match dir {
                    Dir::ToTarget => self.i2t.deframer.next_frame(),
                    Dir::ToInitiator => self.t2i.deframer.next_frame(),
                };
                match frame {
                    Ok(Some(f)) => {
                        let decoded = Pdu::from_frame(&f);
                        self.on_pdu(dir, decoded, f.raw_header());
                    }
                    Ok(None) => break,
                    // What a damaged stream does to a TCP datamover: a lost framing ends the
                    // connection, a bad data digest is reported for the PDU it spoils.
                    Err(e) if e.is_fatal() => {
                        assert!(
                            self.opts.faults,
                            "{dir:?}: the wire broke without injected faults: {e}"
                        );
                        self.wire_broke(dir);
                        return true;
                    }
                    Err(e) => {
                        assert!(
                            self.opts.faults,
                            "{dir:?}: a damaged PDU without injected faults: {e}"
                        );
                        let digest = matches!(e.error, iscsi_proto::PduError::DataDigest { .. });
                        let mover = match dir {
                            Dir::ToTarget => &mut self.tmover,
                            Dir::ToInitiator => &mut self.imover,
                        };
                        match e.header {
                            Some(h) if digest => {
                                mover.receive_data_digest_error(e.raw_header, &h, e.error)
                            }
                            _ => mover.receive_malformed(e.raw_header, e.error),
                        }
                        match dir {
                            Dir::ToTarget => self.settle_target(),
                            Dir::ToInitiator => self.settle_initiator(),
                        };
                    }
                }
            }
        }
        true
    }

    fn on_pdu(&mut self, dir: Dir, pdu: Result<Pdu, iscsi_proto::PduError>, raw: Bytes) {
        match (dir, pdu) {
            (Dir::ToTarget, Ok(p)) => {
                self.tmover.receive(p);
                self.settle_target();
            }
            (Dir::ToTarget, Err(e)) => {
                self.tmover.receive_malformed(raw, e);
                self.settle_target();
            }
            (Dir::ToInitiator, Ok(p)) => {
                self.exp_stat_sn_floor = self.exp_stat_sn_seen;
                if let Some(ack) = stat_sn_ack(&p)
                    && ack.is_after(self.exp_stat_sn_seen)
                {
                    self.exp_stat_sn_seen = ack;
                }
                if let Some((exp, max)) = window_of(&p)
                    && !max.is_before(exp.sub(1))
                    && max.is_after(self.max_cmd_sn_seen)
                {
                    self.max_cmd_sn_seen = max;
                }
                self.log.push((Dir::ToInitiator, p.clone()));
                self.imover.receive(p);
                self.settle_initiator();
                self.exp_stat_sn_floor = self.exp_stat_sn_seen;
            }
            (Dir::ToInitiator, Err(e)) => {
                self.imover.receive_malformed(raw, e);
                self.settle_initiator();
            }
        }
    }

    /// Runs both sides and the wire until nothing moves (time does not pass).
    pub fn run(&mut self) {
        for _ in 0..1_000_000 {
            let mut progress = self.settle_initiator();
            progress |= self.settle_target();
            progress |= self.deliver(Dir::ToTarget);
            progress |= self.deliver(Dir::ToInitiator);
            if !progress {
                return;
            }
        }
        panic!("the pair never went quiet");
    }

    /// Lets `d` of virtual time pass, firing both sides' timers when they are due.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        for _ in 0..100_000 {
            self.run();
            let mut next: Option<Instant> = None;
            let mut consider = |t: Option<Instant>| {
                if let Some(t) = t {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            };
            if !self.ini.is_closed() {
                consider(self.ini.poll_timeout());
            }
            if !self.tgt.is_closed() {
                consider(self.tgt.poll_timeout());
            }
            match next {
                Some(t) if t <= self.t0 + end => {
                    if t > self.instant() {
                        self.now = t - self.t0;
                    }
                    let now = self.instant();
                    if !self.ini.is_closed() && self.ini.poll_timeout().is_some_and(|t| t <= now) {
                        self.ini.handle_timeout(now);
                    }
                    if !self.tgt.is_closed() && self.tgt.poll_timeout().is_some_and(|t| t <= now) {
                        self.tgt.handle_timeout(now);
                    }
                }
                _ => {
                    self.now = end;
                    self.run();
                    return;
                }
            }
        }
        panic!("timers keep firing");
    }

    // -----------------------------------------------------------------------------------------
    // Queries
    // -----------------------------------------------------------------------------------------

    /// A task's record.
    pub fn task(&self, itt: Itt) -> &IniTask {
        self.tasks
            .get(&itt)
            .unwrap_or_else(|| panic!("unknown task {itt:?}"))
    }

    /// A task's outcome (it must have completed).
    pub fn result(&self, itt: Itt) -> &Result<CommandStatus, TaskError> {
        self.task(itt)
            .result
            .as_ref()
            .unwrap_or_else(|| panic!("{itt:?} has not completed"))
    }

    /// Whether the task completed.
    pub fn is_done(&self, itt: Itt) -> bool {
        self.task(itt).result.is_some()
    }

    /// The GOOD status of a task.
    pub fn good(&self, itt: Itt) -> &CommandStatus {
        match self.result(itt) {
            Ok(s) if s.is_good() => s,
            other => panic!("{itt:?} did not end GOOD: {other:?}"),
        }
    }

    /// A task's buffer, back with the engine.
    pub fn buffer(&self, itt: Itt) -> &[u8] {
        let t = self.task(itt);
        assert!(!t.at_mover, "{itt:?}'s buffer is still with the datamover");
        t.buf.as_deref().expect("a buffer")
    }

    /// Whether every submitted command completed.
    pub fn all_done(&self) -> bool {
        self.tasks.values().all(|t| t.result.is_some())
    }

    /// Every PDU logged in one direction.
    pub fn sent(&self, dir: Dir) -> impl Iterator<Item = &Pdu> {
        self.log
            .iter()
            .filter(move |(d, _)| *d == dir)
            .map(|(_, p)| p)
    }

    /// The SCSI Command PDU of a task, as sent.
    pub fn command_pdu(&self, itt: Itt) -> &ScsiCommand {
        self.sent(Dir::ToTarget)
            .find_map(|p| match p {
                Pdu::ScsiCommand(c) if c.itt == itt => Some(c),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no SCSI Command for {itt:?} on the wire"))
    }

    /// Completions in order.
    pub fn completions(&self) -> Vec<Itt> {
        self.events
            .iter()
            .filter_map(|e| match e {
                IniEv::Complete(i) => Some(*i),
                _ => None,
            })
            .collect()
    }

    /// Compares every GOOD read's buffer with what the store returned when it ran.
    pub fn check_reads(&self) {
        for (itt, t) in &self.tasks {
            let (Some(Ok(s)), Direction::Read(len)) = (&t.result, t.cmd.direction) else {
                continue;
            };
            if !s.is_good() || t.cmd.cdb.opcode() != Some(0x28) {
                continue;
            }
            let snap = self
                .read_snapshots
                .get(itt)
                .unwrap_or_else(|| panic!("{itt:?} never ran at the target"));
            let n = s.transferred(len) as usize;
            assert_eq!(n, snap.len(), "{itt:?}: bytes transferred per the residual");
            assert!(
                self.buffer(*itt)[..n] == snap[..],
                "{itt:?}: the initiator's buffer holds other data than the target read"
            );
        }
    }

    /// Final agreement of both sides' sequence numbers once everything is answered.
    pub fn check_sequence_agreement(&self) {
        assert_eq!(
            self.ini.exp_stat_sn(),
            self.tgt.stat_sn(),
            "the initiator expects the target's next StatSN"
        );
        assert_eq!(
            self.ini.cmd_sn(),
            self.tgt.exp_cmd_sn(),
            "the target expects the initiator's next CmdSN"
        );
        assert_eq!(self.ini.max_cmd_sn(), self.tgt.max_cmd_sn());
    }

    /// Replays the wire log against the data transfer rules (RFC 7143 §4.2.5, §11.3-§11.8)
    /// and returns what it counted. Only for runs whose PDUs were not edited.
    pub fn check_wire(&self) -> WireStats {
        #[derive(Debug)]
        struct W {
            edtl: u32,
            unsol_end: u32,
            unsol_next: u32,
            unsol_sn: u32,
            unsol_done: bool,
            solicited: u64,
        }
        #[derive(Debug)]
        struct R {
            itt: Itt,
            end: u32,
            next: u32,
            sn: u32,
            done: bool,
        }
        #[derive(Debug)]
        struct Rd {
            edtl: u32,
            next_sn: u32,
        }
        let p = &self.params;
        let fbl = p.first_burst_length;
        let mut st = WireStats::default();
        let mut writes: HashMap<Itt, W> = HashMap::new();
        let mut r2ts: HashMap<Ttt, R> = HashMap::new();
        let mut reads: HashMap<Itt, Rd> = HashMap::new();
        for (dir, pdu) in &self.log {
            let len = pdu.data().len();
            match dir {
                Dir::ToTarget => {
                    assert!(len <= p.target_max_recv_data_segment_length as usize);
                    st.largest_to_target = st.largest_to_target.max(len);
                }
                Dir::ToInitiator => {
                    assert!(len <= p.initiator_max_recv_data_segment_length as usize);
                    st.largest_to_initiator = st.largest_to_initiator.max(len);
                }
            }
            let len = len as u32;
            match (dir, pdu) {
                (Dir::ToTarget, Pdu::ScsiCommand(c)) => {
                    st.commands += 1;
                    if c.write {
                        assert!(len <= fbl, "immediate data above FirstBurstLength: {c:?}");
                        assert!(len <= c.expected_data_len);
                        if !p.immediate_data {
                            assert_eq!(len, 0, "immediate data under ImmediateData=No");
                        }
                        if !c.final_ {
                            assert!(!p.initial_r2t, "unsolicited Data-Out under InitialR2T=Yes");
                        }
                        let unsol_end = if c.final_ {
                            len
                        } else {
                            c.expected_data_len.min(fbl)
                        };
                        st.immediate_bytes += u64::from(len);
                        writes.insert(
                            c.itt,
                            W {
                                edtl: c.expected_data_len,
                                unsol_end,
                                unsol_next: len,
                                unsol_sn: 0,
                                unsol_done: c.final_,
                                solicited: 0,
                            },
                        );
                    } else {
                        assert_eq!(len, 0, "data on a command that writes nothing");
                    }
                    if c.read {
                        reads.insert(
                            c.itt,
                            Rd {
                                edtl: c.expected_data_len,
                                next_sn: 0,
                            },
                        );
                    }
                }
                (Dir::ToTarget, Pdu::DataOut(d)) if d.ttt.is_reserved() => {
                    let w = writes
                        .get_mut(&d.itt)
                        .unwrap_or_else(|| panic!("unsolicited Data-Out of no write: {d:?}"));
                    assert!(!w.unsol_done, "unsolicited Data-Out past the burst: {d:?}");
                    assert_eq!(d.data_sn.0, w.unsol_sn, "unsolicited DataSN");
                    assert_eq!(d.buffer_offset, w.unsol_next, "unsolicited offset");
                    let end = d.buffer_offset + len;
                    assert!(
                        end <= w.unsol_end,
                        "unsolicited data beyond FirstBurstLength"
                    );
                    assert_eq!(d.final_, end == w.unsol_end, "F bit of {d:?}");
                    w.unsol_sn += 1;
                    w.unsol_next = end;
                    w.unsol_done = d.final_;
                    st.unsolicited_pdus += 1;
                    st.unsolicited_bytes += u64::from(len);
                }
                (Dir::ToTarget, Pdu::DataOut(d)) => {
                    let r = r2ts
                        .get_mut(&d.ttt)
                        .unwrap_or_else(|| panic!("Data-Out for no R2T: {d:?}"));
                    assert_eq!(r.itt, d.itt);
                    assert!(!r.done, "Data-Out after the R2T was satisfied");
                    assert_eq!(d.data_sn.0, r.sn, "DataSN within the R2T's sequence");
                    assert_eq!(d.buffer_offset, r.next, "solicited offset");
                    let end = d.buffer_offset + len;
                    assert!(end <= r.end, "solicited data beyond the R2T");
                    assert_eq!(d.final_, end == r.end, "F bit of {d:?}");
                    r.next = end;
                    r.sn += 1;
                    r.done = d.final_;
                    if let Some(w) = writes.get_mut(&d.itt) {
                        w.solicited += u64::from(len);
                    }
                    st.solicited_pdus += 1;
                    st.solicited_bytes += u64::from(len);
                }
                (Dir::ToInitiator, Pdu::R2t(r)) => {
                    let w = writes
                        .get(&r.itt)
                        .unwrap_or_else(|| panic!("R2T for no write: {r:?}"));
                    assert!(r.desired_len <= p.max_burst_length);
                    assert!(r.buffer_offset + r.desired_len <= w.edtl);
                    assert!(r.buffer_offset >= w.unsol_end, "R2T for unsolicited data");
                    r2ts.insert(
                        r.ttt,
                        R {
                            itt: r.itt,
                            end: r.buffer_offset + r.desired_len,
                            next: r.buffer_offset,
                            sn: 0,
                            done: false,
                        },
                    );
                    st.r2ts += 1;
                }
                (Dir::ToInitiator, Pdu::DataIn(d)) => {
                    let rd = reads
                        .get_mut(&d.itt)
                        .unwrap_or_else(|| panic!("Data-In for no read: {d:?}"));
                    assert_eq!(d.data_sn.0, rd.next_sn, "Data-In DataSN");
                    assert!(d.buffer_offset + len <= rd.edtl);
                    rd.next_sn += 1;
                    st.data_in_pdus += 1;
                    if d.status.is_some() {
                        st.status_in_data += 1;
                    }
                }
                (Dir::ToInitiator, Pdu::ScsiResponse(r)) => {
                    if let Some(rd) = reads.get(&r.itt)
                        && rd.next_sn > 0
                    {
                        assert_eq!(r.exp_data_sn.0, rd.next_sn, "ExpDataSN of {r:?}");
                        st.separate_responses += 1;
                    }
                }
                _ => {}
            }
        }
        for (itt, w) in &writes {
            if let Some(Some(Ok(s))) = self.tasks.get(itt).map(|t| t.result.as_ref())
                && s.is_good()
            {
                assert!(w.unsol_done, "{itt:?}: unsolicited burst not finished");
                assert_eq!(
                    u64::from(w.unsol_next) + w.solicited,
                    u64::from(w.edtl),
                    "{itt:?}: every byte of the write went out exactly once"
                );
            }
        }
        for g in &self.get_data {
            st.max_r2ts_at_once = st.max_r2ts_at_once.max(g.r2ts.len());
            assert!(g.r2ts.len() <= usize::from(p.max_outstanding_r2t.max(1)));
        }
        st
    }
}
