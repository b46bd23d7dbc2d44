//! Test support for `target_tcp.rs`: a small async iSCSI initiator built from the protocol
//! core's pieces (PDUs written with `Pdu::to_bytes`, read with the `Deframer`, login with the
//! text `Negotiator` and the CHAP `InitiatorAuthenticator`), and the target fixture.
//!
//! The initiator checks what it can on every PDU the target sends: StatSN goes up by one per
//! status-bearing PDU and R2T / unsolicited NOP-In carry the next StatSN without advancing it;
//! Data-In DataSN counts from 0 per task; every PDU parses (with the negotiated digests).
//!
//! Only the tokio features the `iscsi` crate already enables are used (`net`, `time`, `rt`,
//! `macros`, `sync`): sockets are driven with `readable`/`try_read` and `writable`/`try_write`.

#![allow(dead_code)]

pub mod tgtd;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iscsi::proto::auth::{InitiatorAuthConfig, InitiatorAuthenticator};
use iscsi::proto::pdu::{
    AsyncMessage, DataOut, Digests, Isid, LoginRequest, LoginResponse, LoginStatus, LogoutReason,
    LogoutRequest, LogoutResponse, Lun, NopIn, NopOut, R2t, ScsiCommand, ScsiStatus, Stage,
    TaskMgmtFunction, TaskMgmtRequest, TaskMgmtResponse, TextRequest, Tsih,
};
use iscsi::proto::text::{
    Digest, LocalConfig, NegotiatedParams, Negotiator, Role, SessionType, Stage as TextStage,
    TextLimits, encode_text, parse_text_owned,
};
use iscsi::proto::{CmdSn, DataSn, Deframer, DeframerConfig, Itt, Pdu, StatSn, Ttt};
use iscsi::scsi::backend::RamBackend;
use iscsi::scsi::lu::{LogicalUnit, LuConfig};
use iscsi::target::{ShutdownHandle, Target, TargetConfig, TargetNode};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The default target name of the tests.
pub const TARGET: &str = "iqn.2026-11.rs.iscsi:disk";
/// The default initiator name of the tests.
pub const INITIATOR: &str = "iqn.2026-11.rs.iscsi:host";
/// Bound of any single wait (a PDU, a close, a login).
pub const STEP: Duration = Duration::from_secs(10);
/// How long "nothing arrives" is watched for.
pub const QUIET: Duration = Duration::from_millis(400);

/// Runs `f`, panicking with `what` if it takes longer than `d`.
pub async fn within<F: Future>(d: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(d, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {d:?}: {what}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Randomness (deterministic per seed)

/// xorshift64*: reproducible test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
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
}

/// A fresh ISID (random type) for test connection `n`.
pub fn isid(n: u32) -> Isid {
    Isid::random(0x00AB_0000 | (n & 0xffff), n as u16)
}

// ---------------------------------------------------------------------------------------------
// Target fixture

/// A RAM logical unit of `bytes` bytes.
pub fn ram_lu(serial: &str, bytes: u64) -> LogicalUnit<RamBackend> {
    LogicalUnit::new(LuConfig::new(serial), RamBackend::new(bytes)).expect("LU config")
}

/// A target node with one RAM LUN 0 of `bytes` bytes.
pub fn disk(name: &str, bytes: u64) -> TargetNode<RamBackend> {
    let serial: String = name
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
        .to_string();
    TargetNode::new(name).lun(0, ram_lu(&serial, bytes))
}

/// A target running in a spawned task.
pub struct Running {
    /// The bound portal.
    pub addr: SocketAddr,
    /// Stops it.
    pub stop: ShutdownHandle,
    /// The task running `Target::run`.
    pub task: JoinHandle<io::Result<()>>,
}

/// Binds 127.0.0.1:0 and spawns `run`.
pub async fn start(cfg: TargetConfig, nodes: Vec<TargetNode<RamBackend>>) -> Running {
    start_with(cfg, nodes, |_, _| {}).await
}

/// Like [`start`], with `more` adding to the target before it runs (an iSER acceptor: it
/// gets the TCP portal address too).
pub async fn start_with(
    cfg: TargetConfig,
    nodes: Vec<TargetNode<RamBackend>>,
    more: impl FnOnce(&mut Target<RamBackend>, SocketAddr),
) -> Running {
    let portal: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let mut target = Target::bind(cfg, &[portal], nodes).await.expect("bind");
    let addr = target.local_addrs()[0];
    more(&mut target, addr);
    assert_ne!(addr.port(), 0);
    let stop = target.shutdown_handle();
    let task = tokio::spawn(target.run());
    Running { addr, stop, task }
}

impl Running {
    /// Starts the graceful shutdown and waits (bounded) for `run` to return; returns how
    /// long that took.
    pub async fn shutdown(self) -> Duration {
        let t0 = Instant::now();
        self.stop.shutdown();
        within(STEP, "Target::run to return after shutdown", self.task)
            .await
            .expect("run task panicked")
            .expect("run returned an error");
        t0.elapsed()
    }
}

// ---------------------------------------------------------------------------------------------
// SCSI helpers

/// CDB builders.
pub mod cdb {
    /// TEST UNIT READY.
    pub fn test_unit_ready() -> Vec<u8> {
        vec![0x00, 0, 0, 0, 0, 0]
    }

    /// INQUIRY (standard data).
    pub fn inquiry(alloc: u16) -> Vec<u8> {
        let a = alloc.to_be_bytes();
        vec![0x12, 0, 0, a[0], a[1], 0]
    }

    /// READ CAPACITY (16).
    pub fn read_capacity16(alloc: u32) -> Vec<u8> {
        let mut c = vec![0u8; 16];
        c[0] = 0x9e;
        c[1] = 0x10;
        c[10..14].copy_from_slice(&alloc.to_be_bytes());
        c
    }

    fn rw10(op: u8, lba: u32, blocks: u16) -> Vec<u8> {
        let mut c = vec![0u8; 10];
        c[0] = op;
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&blocks.to_be_bytes());
        c
    }

    /// READ (10).
    pub fn read10(lba: u32, blocks: u16) -> Vec<u8> {
        rw10(0x28, lba, blocks)
    }

    /// WRITE (10).
    pub fn write10(lba: u32, blocks: u16) -> Vec<u8> {
        rw10(0x2a, lba, blocks)
    }
}

/// (sense key, ASC, ASCQ) of fixed or descriptor format sense data.
pub fn sense_triplet(s: &[u8]) -> Option<(u8, u8, u8)> {
    match s.first()? & 0x7f {
        0x70 | 0x71 => Some((s.get(2)? & 0x0f, *s.get(12)?, *s.get(13)?)),
        0x72 | 0x73 => Some((s.get(1)? & 0x0f, *s.get(2)?, *s.get(3)?)),
        _ => None,
    }
}

/// One SCSI command to run.
#[derive(Clone, Debug, Default)]
pub struct Cmd {
    /// The CDB (at most 16 bytes).
    pub cdb: Vec<u8>,
    /// LUN number.
    pub lun: u16,
    /// Expected data-in length.
    pub read_len: u32,
    /// Data-out.
    pub write: Bytes,
    /// Bytes of `write` sent as immediate data (the rest goes on R2Ts).
    pub immediate: usize,
    /// End of the unsolicited burst: when above `immediate`, the bytes in between follow the
    /// command as unsolicited Data-Out PDUs (InitialR2T=No) and the command has F=0.
    pub unsolicited: usize,
}

impl Cmd {
    /// A command without data.
    pub fn none(cdb: Vec<u8>) -> Cmd {
        Cmd {
            cdb,
            ..Cmd::default()
        }
    }

    /// A command reading `len` bytes.
    pub fn read(cdb: Vec<u8>, len: u32) -> Cmd {
        Cmd {
            cdb,
            read_len: len,
            ..Cmd::default()
        }
    }

    /// A command writing `data`, `immediate` bytes of it as immediate data.
    pub fn write(cdb: Vec<u8>, data: impl Into<Bytes>, immediate: usize) -> Cmd {
        Cmd {
            cdb,
            write: data.into(),
            immediate,
            ..Cmd::default()
        }
    }

    /// Expected Data Transfer Length.
    pub fn edtl(&self) -> u32 {
        if self.write.is_empty() {
            self.read_len
        } else {
            self.write.len() as u32
        }
    }
}

/// One Data-In PDU as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataInRec {
    /// DataSN.
    pub data_sn: u32,
    /// Buffer Offset.
    pub offset: u32,
    /// Data segment length.
    pub len: usize,
    /// F bit.
    pub final_: bool,
    /// S bit (status inside).
    pub status: bool,
}

/// One Data-Out PDU as sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataOutRec {
    /// TTT of the R2T it answers.
    pub ttt: u32,
    /// DataSN.
    pub data_sn: u32,
    /// Buffer Offset.
    pub offset: u32,
    /// Length.
    pub len: usize,
    /// F bit.
    pub final_: bool,
}

/// A finished command.
#[derive(Clone, Debug, Default)]
pub struct Done {
    /// Its ITT.
    pub itt: Itt,
    /// Its CmdSN.
    pub cmd_sn: CmdSn,
    /// iSCSI service response (0 when the status came in a Data-In).
    pub response: u8,
    /// SCSI status.
    pub status: ScsiStatus,
    /// Sense data.
    pub sense: Option<Bytes>,
    /// Data-in, `read_len` bytes (what did not arrive stays zero).
    pub data: Vec<u8>,
    /// Data-in bytes received.
    pub data_received: usize,
    /// The Data-In PDUs.
    pub data_in: Vec<DataInRec>,
    /// The R2Ts.
    pub r2ts: Vec<R2t>,
    /// The Data-Out PDUs sent.
    pub data_out: Vec<DataOutRec>,
    /// U bit.
    pub underflow: bool,
    /// O bit.
    pub overflow: bool,
    /// Residual Count.
    pub residual: u32,
    /// The status came in the last Data-In (no SCSI Response PDU).
    pub status_in_data: bool,
}

impl Done {
    /// Panics unless the status is GOOD.
    pub fn good(self) -> Done {
        assert_eq!(
            self.status,
            ScsiStatus::GOOD,
            "command {:?} failed, sense {:?}",
            self.itt,
            self.sense.as_ref().and_then(|s| sense_triplet(s))
        );
        self
    }

    /// (key, ASC, ASCQ) of the sense data, if any.
    pub fn sense(&self) -> Option<(u8, u8, u8)> {
        self.sense.as_ref().and_then(|s| sense_triplet(s))
    }
}

// ---------------------------------------------------------------------------------------------
// The connection

/// Why a login failed.
#[derive(Debug)]
pub enum LoginFailure {
    /// The target answered with this non-success status.
    Status(LoginStatus),
    /// The target closed the connection.
    Closed,
    /// Our side refused what the target sent (authentication, negotiation, protocol).
    Refused(String),
}

impl LoginFailure {
    /// The status, panicking for other failures.
    pub fn status(&self) -> LoginStatus {
        match self {
            LoginFailure::Status(s) => *s,
            other => panic!("expected a login status, got {other:?}"),
        }
    }
}

/// What to log in to and how.
#[derive(Clone, Debug)]
pub struct Login {
    /// InitiatorName.
    pub initiator: String,
    /// TargetName; `None` for a discovery session.
    pub target: Option<String>,
    /// ISID.
    pub isid: Isid,
    /// TSIH (0: a new session).
    pub tsih: u16,
    /// Our operational wishes (names are filled in from the fields above).
    pub cfg: LocalConfig,
    /// Our authentication settings.
    pub auth: InitiatorAuthConfig,
    /// CmdSN of the login (the first command's CmdSN).
    pub cmd_sn: u32,
}

impl Login {
    /// A normal session to `target` without authentication, MaxRecvDataSegmentLength 8192,
    /// no digests, InitialR2T=Yes, ImmediateData=Yes.
    pub fn normal(initiator: &str, target: &str, isid: Isid) -> Login {
        Login {
            initiator: initiator.to_owned(),
            target: Some(target.to_owned()),
            isid,
            tsih: 0,
            cfg: LocalConfig {
                max_recv_data_segment_length: 8192,
                ..LocalConfig::default()
            },
            auth: InitiatorAuthConfig::default(),
            // Close to the 2^32 wrap: longer tests cross it (RFC 1982 serial arithmetic).
            cmd_sn: 0xffff_ff00,
        }
    }

    /// A discovery session.
    pub fn discovery(initiator: &str, isid: Isid) -> Login {
        Login {
            target: None,
            ..Login::normal(initiator, TARGET, isid)
        }
    }

    /// Offers these digests (preferred first) for both header and data.
    pub fn digests(mut self, header: &[Digest], data: &[Digest]) -> Login {
        self.cfg.header_digest = header.to_vec();
        self.cfg.data_digest = data.to_vec();
        self
    }

    /// Uses these authentication settings.
    pub fn auth(mut self, auth: InitiatorAuthConfig) -> Login {
        self.auth = auth;
        self
    }

    /// Logs in on a new connection to `addr`.
    pub async fn connect(&self, addr: SocketAddr) -> Result<Conn, LoginFailure> {
        let conn = Conn::connect(addr).await;
        conn.login(self).await
    }

    /// Like [`Login::connect`], panicking on failure.
    pub async fn ok(&self, addr: SocketAddr) -> Conn {
        match self.connect(addr).await {
            Ok(c) => c,
            Err(e) => panic!("login of {} failed: {e:?}", self.initiator),
        }
    }
}

fn is_security_key(k: &str) -> bool {
    k == "AuthMethod" || k.starts_with("CHAP_")
}

/// An initiator connection.
pub struct Conn {
    stream: TcpStream,
    deframer: Deframer,
    rbuf: Vec<u8>,
    digests: Digests,
    /// The next CmdSN.
    pub cmd_sn: CmdSn,
    /// The next StatSN expected.
    pub exp_stat_sn: StatSn,
    /// Whether `exp_stat_sn` is known (after the first login response).
    stat_sn_known: bool,
    /// Latest ExpCmdSN from the target.
    pub exp_cmd_sn: CmdSn,
    /// Latest MaxCmdSN from the target.
    pub max_cmd_sn: CmdSn,
    next_itt: u32,
    /// Values in force after login.
    pub params: NegotiatedParams,
    /// TSIH of the session.
    pub tsih: u16,
    /// ISID of the session.
    pub isid: Isid,
    /// Largest Data-Out segment we send (further bounded by the target's declaration).
    pub data_out_seg: usize,
    /// Whether the target proved its identity (mutual CHAP).
    pub mutual_ok: bool,
    /// Most commands seen in flight at once by [`Conn::run_cmds`].
    pub max_in_flight: usize,
    /// Times [`Conn::run_cmds`] waited because the CmdSN window was closed.
    pub window_waits: usize,
    /// Target NOP-In pings answered.
    pub pings_answered: usize,
}

impl Conn {
    /// Connects (bounded).
    pub async fn connect(addr: SocketAddr) -> Conn {
        let stream = within(STEP, "TCP connect", TcpStream::connect(addr))
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Conn::from_stream(stream)
    }

    /// Wraps a connected stream.
    pub fn from_stream(stream: TcpStream) -> Conn {
        Conn {
            stream,
            deframer: Deframer::new(DeframerConfig::default()),
            rbuf: vec![0u8; 256 << 10],
            digests: Digests::NONE,
            cmd_sn: CmdSn(0),
            exp_stat_sn: StatSn(0),
            stat_sn_known: false,
            exp_cmd_sn: CmdSn(0),
            max_cmd_sn: CmdSn(0),
            next_itt: 0x100,
            params: NegotiatedParams::default(),
            tsih: 0,
            isid: Isid::default(),
            data_out_seg: 8192,
            mutual_ok: false,
            max_in_flight: 0,
            window_waits: 0,
            pings_answered: 0,
        }
    }

    /// Digests in use on the wire.
    pub fn digests(&self) -> Digests {
        self.digests
    }

    /// A new ITT.
    pub fn itt(&mut self) -> Itt {
        let i = self.next_itt;
        self.next_itt = self.next_itt.wrapping_add(1);
        if self.next_itt == u32::MAX {
            self.next_itt = 1;
        }
        Itt(i)
    }

    /// Takes the CmdSN for a non-immediate command (advances it); immediate ones carry the
    /// current value.
    pub fn take_cmd_sn(&mut self, immediate: bool) -> CmdSn {
        let s = self.cmd_sn;
        if !immediate {
            self.cmd_sn = s.next();
        }
        s
    }

    /// Whether a non-immediate command may be sent now (CmdSN <= MaxCmdSN).
    pub fn window_open(&self) -> bool {
        self.cmd_sn.is_at_or_before(self.max_cmd_sn)
    }

    // -- raw IO -----------------------------------------------------------------------------

    /// Writes bytes (bounded).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stream = &self.stream;
        let write = async {
            let mut b = bytes;
            while !b.is_empty() {
                stream.writable().await?;
                match stream.try_write(b) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => b = &b[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        };
        within(STEP, "socket write", write).await
    }

    /// Encodes a PDU with the digests in use.
    pub fn encode(&self, pdu: &Pdu) -> Bytes {
        pdu.to_bytes(self.digests).expect("test PDU encodes")
    }

    /// Sends one PDU (panics on a socket error).
    pub async fn send(&mut self, pdu: impl Into<Pdu>) {
        let b = self.encode(&pdu.into());
        self.send_raw(&b).await.expect("send PDU");
    }

    async fn fill(&mut self) -> io::Result<usize> {
        loop {
            self.stream.readable().await?;
            match self.stream.try_read(&mut self.rbuf) {
                Ok(n) => {
                    self.deframer.feed(&self.rbuf[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// The next PDU, or `Ok(None)` at end of stream (not bounded; cancel safe).
    pub async fn recv_pdu(&mut self) -> io::Result<Option<Pdu>> {
        loop {
            match self.deframer.next_frame() {
                Ok(Some(frame)) => {
                    let pdu = Pdu::from_frame(&frame)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    self.observe(&pdu);
                    return Ok(Some(pdu));
                }
                Ok(None) => {}
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
            if self.fill().await? == 0 {
                return Ok(None);
            }
        }
    }

    /// The next PDU within `d`: `None` if nothing came; panics on end of stream or error.
    pub async fn recv_within(&mut self, d: Duration) -> Option<Pdu> {
        match tokio::time::timeout(d, self.recv_pdu()).await {
            Err(_) => None,
            Ok(Ok(Some(p))) => Some(p),
            Ok(Ok(None)) => panic!("target closed the connection"),
            Ok(Err(e)) => panic!("receive failed: {e}"),
        }
    }

    /// The next PDU (bounded by [`STEP`]).
    pub async fn recv(&mut self) -> Pdu {
        match self.recv_within(STEP).await {
            Some(p) => p,
            None => panic!("no PDU from the target within {STEP:?}"),
        }
    }

    /// Waits for the target to close the connection, discarding PDUs; returns them and how
    /// long it took, or `None` if it stayed open for `d`.
    pub async fn closed_within(&mut self, d: Duration) -> Option<(Duration, Vec<Pdu>)> {
        let t0 = Instant::now();
        let mut seen = Vec::new();
        let wait = async {
            loop {
                match self.recv_pdu().await {
                    Ok(Some(p)) => seen.push(p),
                    Ok(None) | Err(_) => return,
                }
            }
        };
        match tokio::time::timeout(d, wait).await {
            Ok(()) => Some((t0.elapsed(), seen)),
            Err(_) => None,
        }
    }

    /// Panics unless the target closes the connection within `d`.
    pub async fn expect_closed(&mut self, d: Duration, what: &str) -> Duration {
        match self.closed_within(d).await {
            Some((t, _)) => t,
            None => panic!("connection still open after {d:?}: {what}"),
        }
    }

    /// Checks StatSN and records ExpCmdSN / MaxCmdSN of a PDU from the target.
    fn observe(&mut self, pdu: &Pdu) {
        let (stat_sn, advances, window) = match pdu {
            Pdu::LoginResponse(r) => (Some(r.stat_sn), true, Some((r.exp_cmd_sn, r.max_cmd_sn))),
            Pdu::ScsiResponse(r) => (Some(r.stat_sn), true, Some((r.exp_cmd_sn, r.max_cmd_sn))),
            Pdu::TaskMgmtResponse(r) => (Some(r.stat_sn), true, Some((r.exp_cmd_sn, r.max_cmd_sn))),
            Pdu::LogoutResponse(r) => (Some(r.stat_sn), true, Some((r.exp_cmd_sn, r.max_cmd_sn))),
            Pdu::TextResponse(r) => (Some(r.stat_sn), true, Some((r.exp_cmd_sn, r.max_cmd_sn))),
            Pdu::Reject(r) => (Some(r.stat_sn), true, Some((r.exp_cmd_sn, r.max_cmd_sn))),
            Pdu::AsyncMessage(r) => (Some(r.stat_sn), true, Some((r.exp_cmd_sn, r.max_cmd_sn))),
            Pdu::NopIn(r) => (
                Some(r.stat_sn),
                !r.itt.is_reserved(),
                Some((r.exp_cmd_sn, r.max_cmd_sn)),
            ),
            Pdu::DataIn(r) => (
                r.status.map(|_| r.stat_sn),
                true,
                Some((r.exp_cmd_sn, r.max_cmd_sn)),
            ),
            Pdu::R2t(r) => (Some(r.stat_sn), false, Some((r.exp_cmd_sn, r.max_cmd_sn))),
            _ => (None, false, None),
        };
        if let Some(sn) = stat_sn {
            if self.stat_sn_known {
                assert_eq!(
                    sn, self.exp_stat_sn,
                    "StatSN of {pdu:?} (expected {:?})",
                    self.exp_stat_sn
                );
            }
            if advances {
                self.exp_stat_sn = sn.next();
                self.stat_sn_known = true;
            }
        }
        // During login the window is not open yet; take it from the final response.
        if let (Some((exp, max)), false) = (window, matches!(pdu, Pdu::LoginResponse(_))) {
            self.note_window(exp, max);
        }
    }

    fn note_window(&mut self, exp: CmdSn, max: CmdSn) {
        // RFC 7143 §4.2.2.1: MaxCmdSN + 1 >= ExpCmdSN; ignore stale values.
        if !max.next().is_at_or_after(exp) {
            return;
        }
        if exp.is_after(self.exp_cmd_sn) {
            self.exp_cmd_sn = exp;
        }
        if max.is_after(self.max_cmd_sn) {
            self.max_cmd_sn = max;
        }
    }

    // -- login ------------------------------------------------------------------------------

    /// Logs in on this connection.
    pub async fn login(mut self, l: &Login) -> Result<Conn, LoginFailure> {
        let refuse = |what: &str, e: &dyn std::fmt::Display| {
            Err(LoginFailure::Refused(format!("{what}: {e}")))
        };
        let session_type = if l.target.is_some() {
            SessionType::Normal
        } else {
            SessionType::Discovery
        };
        let cfg = LocalConfig {
            initiator_name: Some(l.initiator.clone()),
            target_name: l.target.clone(),
            ..l.cfg.clone()
        };
        let mut neg = Negotiator::new(Role::Initiator, cfg, session_type, l.tsih == 0, false);
        let mut rng = Rng::new(u64::from(l.isid.0[5]) << 8 | 0x5a);
        let mut auth = InitiatorAuthenticator::new(l.auth.clone(), &rng.bytes(1100));
        let chap = l.auth.credential.is_some() || l.auth.mutual.is_some();
        self.isid = l.isid;
        self.cmd_sn = CmdSn(l.cmd_sn);
        let itt = self.itt();
        let mut stage = Stage::Security;
        neg.set_stage(TextStage::Security);
        let mut pairs = neg.offer();
        pairs.extend(auth.start());
        let mut last = None;
        for _round in 0..16 {
            let (transit, nsg) = match stage {
                Stage::Security => (
                    !chap || auth.is_done() || pairs.iter().any(|(k, _)| k == "CHAP_R"),
                    Stage::Operational,
                ),
                _ => (true, Stage::FullFeature),
            };
            let req = LoginRequest {
                transit,
                cont: false,
                csg: stage,
                nsg: if transit { nsg } else { stage },
                version_max: 0,
                version_min: 0,
                isid: l.isid,
                tsih: Tsih(l.tsih),
                itt,
                cid: 0,
                cmd_sn: self.cmd_sn,
                exp_stat_sn: self.exp_stat_sn,
                data: encode_text(&pairs).expect("login text").freeze(),
            };
            let bytes = self.encode(&Pdu::LoginRequest(req));
            if self.send_raw(&bytes).await.is_err() {
                return Err(LoginFailure::Closed);
            }
            let resp: LoginResponse = match tokio::time::timeout(STEP, self.recv_pdu()).await {
                Err(_) => return refuse("login", &"no login response in time"),
                Ok(Ok(None)) | Ok(Err(_)) => return Err(LoginFailure::Closed),
                Ok(Ok(Some(Pdu::LoginResponse(r)))) => r,
                Ok(Ok(Some(other))) => return refuse("login", &format!("got {other:?}")),
            };
            if resp.itt != itt || resp.isid != l.isid {
                return refuse("login response", &"ITT or ISID not echoed");
            }
            if !resp.status.is_success() {
                return Err(LoginFailure::Status(resp.status));
            }
            if resp.cont {
                return refuse(
                    "login response",
                    &"C bit (not supported by the test initiator)",
                );
            }
            let rx = match parse_text_owned(&resp.data, &TextLimits::default()) {
                Ok(p) => p,
                Err(e) => return refuse("login text", &e),
            };
            let out = match neg.handle(&rx) {
                Ok(o) => o,
                Err(e) => return refuse("negotiation", &e),
            };
            let security: Vec<(String, String)> = out
                .passthrough
                .iter()
                .filter(|(k, _)| is_security_key(k))
                .cloned()
                .collect();
            let mut next = out.responses;
            if !security.is_empty() {
                match auth.handle(&security) {
                    Ok(keys) => next.extend(keys),
                    Err(e) => return refuse("authentication", &e),
                }
            }
            if resp.transit {
                if stage == Stage::Security
                    && let Err(e) = auth.check_transit()
                {
                    return refuse("authentication", &e);
                }
                stage = resp.nsg;
                if stage == Stage::FullFeature {
                    last = Some(resp);
                    break;
                }
                neg.set_stage(TextStage::Operational);
            }
            next.extend(neg.offer());
            pairs = next;
        }
        let Some(fin) = last else {
            return refuse("login", &"did not reach full feature phase in 16 rounds");
        };
        if !neg.is_complete() {
            return refuse(
                "negotiation",
                &format!("unanswered keys {:?}", neg.outstanding_keys()),
            );
        }
        self.tsih = fin.tsih.0;
        self.mutual_ok = auth.is_mutual();
        self.exp_cmd_sn = fin.exp_cmd_sn;
        self.max_cmd_sn = fin.max_cmd_sn;
        self.params = neg.result();
        self.digests = Digests {
            header: self.params.header_digest == Digest::Crc32c,
            data: self.params.data_digest == Digest::Crc32c,
        };
        self.deframer.set_config(DeframerConfig {
            digests: self.digests,
            max_data_segment_len: self.params.max_recv_data_segment_length(Role::Initiator),
        });
        Ok(self)
    }

    // -- full feature phase PDUs --------------------------------------------------------------

    /// A SCSI Command PDU for `c` with this ITT and CmdSN.
    pub fn command_pdu(&self, c: &Cmd, itt: Itt, cmd_sn: CmdSn, immediate: bool) -> ScsiCommand {
        let mut pdu = ScsiCommand::with_cdb(&c.cdb).expect("CDB of at most 16 bytes");
        pdu.immediate = immediate;
        pdu.final_ = c.unsolicited <= c.immediate;
        pdu.read = c.read_len > 0;
        pdu.write = !c.write.is_empty();
        pdu.lun = Lun::from_index(c.lun).expect("LUN");
        pdu.itt = itt;
        pdu.expected_data_len = c.edtl();
        pdu.cmd_sn = cmd_sn;
        pdu.exp_stat_sn = self.exp_stat_sn;
        pdu.data = c.write.slice(..c.immediate.min(c.write.len()));
        pdu
    }

    /// Sends a NOP-Out ping and returns its NOP-In (checked: same ITT and data).
    pub async fn ping(&mut self, data: &[u8], immediate: bool) -> NopIn {
        let itt = self.itt();
        let cmd_sn = self.take_cmd_sn(immediate);
        let exp_stat_sn = self.exp_stat_sn;
        self.send(NopOut {
            immediate,
            lun: Lun(0),
            itt,
            ttt: Ttt::RESERVED,
            cmd_sn,
            exp_stat_sn,
            data: Bytes::copy_from_slice(data),
        })
        .await;
        loop {
            match self.recv().await {
                Pdu::NopIn(n) if n.itt == itt => {
                    assert_eq!(n.data.as_ref(), data, "NOP-In echoes the ping data");
                    assert!(
                        n.ttt.is_reserved(),
                        "NOP-In answering a ping has TTT 0xffffffff"
                    );
                    return n;
                }
                Pdu::NopIn(n) if n.itt.is_reserved() => self.answer_nop_in(&n).await,
                other => panic!("waiting for NOP-In {itt:?}, got {other:?}"),
            }
        }
    }

    /// Answers a target's NOP-In ping.
    pub async fn answer_nop_in(&mut self, n: &NopIn) {
        if n.ttt.is_reserved() {
            return;
        }
        let cmd_sn = self.cmd_sn;
        let exp_stat_sn = self.exp_stat_sn;
        self.send(NopOut {
            immediate: true,
            lun: n.lun,
            itt: Itt::RESERVED,
            ttt: n.ttt,
            cmd_sn,
            exp_stat_sn,
            data: Bytes::new(),
        })
        .await;
        self.pings_answered += 1;
    }

    /// Sends a Logout Request (close the session) and waits for the Logout Response.
    pub async fn logout(&mut self) -> LogoutResponse {
        let itt = self.itt();
        let cmd_sn = self.take_cmd_sn(true);
        let exp_stat_sn = self.exp_stat_sn;
        self.send(LogoutRequest {
            immediate: true,
            reason: LogoutReason::CloseSession,
            itt,
            cid: 0,
            cmd_sn,
            exp_stat_sn,
        })
        .await;
        loop {
            match self.recv().await {
                Pdu::LogoutResponse(r) => {
                    assert_eq!(r.itt, itt);
                    return r;
                }
                Pdu::NopIn(n) if n.itt.is_reserved() => {}
                Pdu::AsyncMessage(_) => {}
                other => panic!("waiting for the Logout Response, got {other:?}"),
            }
        }
    }

    /// Logs out and checks that the target closes the connection.
    pub async fn logout_and_close(mut self) {
        let r = self.logout().await;
        assert_eq!(r.response as u8, 0, "logout response: closed successfully");
        self.expect_closed(STEP, "after the Logout Response").await;
    }

    /// Sends a task management request (immediate) and waits for its response; other PDUs
    /// received meanwhile are returned too.
    pub async fn tmf(
        &mut self,
        function: TaskMgmtFunction,
        lun: u16,
        referenced: Option<(Itt, CmdSn)>,
    ) -> (TaskMgmtResponse, Vec<Pdu>) {
        let itt = self.itt();
        let cmd_sn = self.take_cmd_sn(true);
        let exp_stat_sn = self.exp_stat_sn;
        let (rtt, ref_sn) = referenced.unwrap_or((Itt::RESERVED, cmd_sn));
        self.send(TaskMgmtRequest {
            immediate: true,
            function,
            lun: Lun::from_index(lun).expect("LUN"),
            itt,
            referenced_task_tag: rtt,
            cmd_sn,
            exp_stat_sn,
            ref_cmd_sn: ref_sn,
            exp_data_sn: DataSn(0),
        })
        .await;
        let mut other = Vec::new();
        loop {
            match self.recv().await {
                Pdu::TaskMgmtResponse(r) if r.itt == itt => return (r, other),
                p => other.push(p),
            }
        }
    }

    /// Sends `SendTargets=<what>` in a Text request and returns the pairs of the answer.
    pub async fn send_targets(&mut self, what: &str) -> Vec<(String, String)> {
        let itt = self.itt();
        let cmd_sn = self.take_cmd_sn(false);
        let mut ttt = Ttt::RESERVED;
        let mut text = Vec::new();
        let mut data = encode_text(&[("SendTargets", what)])
            .expect("text")
            .freeze();
        loop {
            let exp_stat_sn = self.exp_stat_sn;
            self.send(TextRequest {
                immediate: false,
                final_: true,
                cont: false,
                lun: Lun(0),
                itt,
                ttt,
                cmd_sn,
                exp_stat_sn,
                data: std::mem::take(&mut data),
            })
            .await;
            let r = match self.recv().await {
                Pdu::TextResponse(r) => r,
                other => panic!("waiting for the Text Response, got {other:?}"),
            };
            assert_eq!(r.itt, itt);
            text.extend_from_slice(&r.data);
            if r.final_ {
                assert!(
                    r.ttt.is_reserved(),
                    "final Text Response has TTT 0xffffffff"
                );
                break;
            }
            ttt = r.ttt;
        }
        parse_text_owned(&text, &TextLimits::default()).expect("SendTargets text parses")
    }

    // -- SCSI -------------------------------------------------------------------------------

    /// Runs one command.
    pub async fn exec(&mut self, c: Cmd) -> Done {
        self.run_cmds(vec![c], 1).await.remove(0)
    }

    /// Runs one command and checks GOOD status.
    pub async fn exec_good(&mut self, c: Cmd) -> Done {
        self.exec(c).await.good()
    }

    /// Issues TEST UNIT READY until it returns GOOD, accepting unit attentions (the target
    /// reports POWER ON, RESET to every new I_T nexus). Returns the attentions seen.
    pub async fn clear_unit_attention(&mut self) -> Vec<(u8, u8, u8)> {
        let mut seen = Vec::new();
        for _ in 0..8 {
            let d = self.exec(Cmd::none(cdb::test_unit_ready())).await;
            if d.status == ScsiStatus::GOOD {
                return seen;
            }
            let s = d.sense().expect("CHECK CONDITION carries sense");
            assert_eq!(s.0, 0x06, "only UNIT ATTENTION expected, got {s:x?}");
            seen.push(s);
        }
        panic!("unit attentions do not clear: {seen:x?}");
    }

    /// Runs commands with up to `depth` in flight, never beyond MaxCmdSN, answering R2Ts and
    /// target pings; results in the order of `cmds`.
    pub async fn run_cmds(&mut self, cmds: Vec<Cmd>, depth: usize) -> Vec<Done> {
        struct Flight {
            idx: usize,
            next_data_sn: u32,
            done: Done,
        }
        let n = cmds.len();
        let mut results: Vec<Option<Done>> = (0..n).map(|_| None).collect();
        let mut flights: HashMap<Itt, Flight> = HashMap::new();
        let mut next = 0;
        let mut finished = 0;
        while finished < n {
            while next < n && flights.len() < depth {
                if !self.window_open() {
                    self.window_waits += 1;
                    break;
                }
                let c = &cmds[next];
                let itt = self.itt();
                let cmd_sn = self.take_cmd_sn(false);
                let pdu = self.command_pdu(c, itt, cmd_sn, false);
                self.send(pdu).await;
                let unsolicited = self.send_unsolicited(c, itt).await;
                flights.insert(
                    itt,
                    Flight {
                        idx: next,
                        next_data_sn: 0,
                        done: Done {
                            itt,
                            cmd_sn,
                            data: vec![0u8; c.read_len as usize],
                            data_out: unsolicited,
                            ..Done::default()
                        },
                    },
                );
                self.max_in_flight = self.max_in_flight.max(flights.len());
                next += 1;
            }
            let ended = match self.recv().await {
                Pdu::DataIn(d) => {
                    let f = flights
                        .get_mut(&d.itt)
                        .unwrap_or_else(|| panic!("Data-In for unknown {:?}", d.itt));
                    assert_eq!(d.data_sn.0, f.next_data_sn, "Data-In DataSN of {:?}", d.itt);
                    f.next_data_sn += 1;
                    let off = d.buffer_offset as usize;
                    let dst = f
                        .done
                        .data
                        .get_mut(off..off + d.data.len())
                        .unwrap_or_else(|| panic!("Data-In beyond the expected length: {d:?}"));
                    dst.copy_from_slice(&d.data);
                    f.done.data_received += d.data.len();
                    f.done.data_in.push(DataInRec {
                        data_sn: d.data_sn.0,
                        offset: d.buffer_offset,
                        len: d.data.len(),
                        final_: d.final_,
                        status: d.status.is_some(),
                    });
                    match d.status {
                        Some(st) => {
                            f.done.status = st;
                            f.done.status_in_data = true;
                            f.done.underflow = d.underflow;
                            f.done.overflow = d.overflow;
                            f.done.residual = d.residual_count;
                            Some(d.itt)
                        }
                        None => None,
                    }
                }
                Pdu::ScsiResponse(r) => {
                    let f = flights
                        .get_mut(&r.itt)
                        .unwrap_or_else(|| panic!("SCSI Response for unknown {:?}", r.itt));
                    f.done.response = r.response.0;
                    f.done.status = r.status;
                    f.done.sense = r.sense();
                    f.done.underflow = r.underflow;
                    f.done.overflow = r.overflow;
                    f.done.residual = r.residual_count;
                    Some(r.itt)
                }
                Pdu::R2t(r) => {
                    let f = flights
                        .get_mut(&r.itt)
                        .unwrap_or_else(|| panic!("R2T for unknown {:?}", r.itt));
                    let c = &cmds[f.idx];
                    let recs = self.answer_r2t(c, &r).await;
                    f.done.data_out.extend(recs);
                    f.done.r2ts.push(r);
                    None
                }
                Pdu::NopIn(p) if p.itt.is_reserved() => {
                    self.answer_nop_in(&p).await;
                    None
                }
                other => panic!("unexpected PDU while running commands: {other:?}"),
            };
            if let Some(itt) = ended
                && let Some(f) = flights.remove(&itt)
            {
                results[f.idx] = Some(f.done);
                finished += 1;
            }
        }
        results.into_iter().map(|d| d.expect("result")).collect()
    }

    /// Sends the unsolicited Data-Out PDUs of a command (bytes `immediate..unsolicited`):
    /// TTT 0xffffffff, DataSN from 0, F on the last.
    pub async fn send_unsolicited(&mut self, c: &Cmd, itt: Itt) -> Vec<DataOutRec> {
        let end = c.unsolicited.min(c.write.len());
        let start = c.immediate.min(end);
        self.data_outs(
            c,
            itt,
            Lun::from_index(c.lun).expect("LUN"),
            Ttt::RESERVED,
            start,
            end,
        )
        .await
    }

    /// Sends Data-Out PDUs for `write[start..end]` with DataSN from 0 and F on the last.
    async fn data_outs(
        &mut self,
        c: &Cmd,
        itt: Itt,
        lun: Lun,
        ttt: Ttt,
        start: usize,
        end: usize,
    ) -> Vec<DataOutRec> {
        let seg = self
            .data_out_seg
            .min(self.params.max_send_data_segment_length(Role::Initiator) as usize)
            .max(1);
        let mut recs = Vec::new();
        let mut off = start;
        let mut sn = 0u32;
        let mut wire = Vec::new();
        while off < end {
            let e = (off + seg).min(end);
            let d = DataOut {
                final_: e == end,
                lun,
                itt,
                ttt,
                exp_stat_sn: self.exp_stat_sn,
                data_sn: DataSn(sn),
                buffer_offset: off as u32,
                data: c.write.slice(off..e),
            };
            recs.push(DataOutRec {
                ttt: ttt.0,
                data_sn: sn,
                offset: off as u32,
                len: e - off,
                final_: e == end,
            });
            wire.extend_from_slice(&self.encode(&Pdu::DataOut(d)));
            sn += 1;
            off = e;
        }
        if !wire.is_empty() {
            self.send_raw(&wire).await.expect("send Data-Out");
        }
        recs
    }

    /// Sends the Data-Out PDUs an R2T asks for: DataSN from 0, offsets from the R2T's,
    /// segments of at most our and the target's limit, F on the last.
    pub async fn answer_r2t(&mut self, c: &Cmd, r: &R2t) -> Vec<DataOutRec> {
        let start = r.buffer_offset as usize;
        let end = start + r.desired_len as usize;
        assert!(
            end <= c.write.len(),
            "R2T beyond the expected data transfer length: {r:?}"
        );
        self.data_outs(c, r.itt, r.lun, r.ttt, start, end).await
    }
}

/// Extracts the text values of `key`.
pub fn values<'a>(pairs: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// An Asynchronous Message, if `p` is one.
pub fn as_async(p: &Pdu) -> Option<&AsyncMessage> {
    match p {
        Pdu::AsyncMessage(m) => Some(m),
        _ => None,
    }
}
