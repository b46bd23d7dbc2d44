//! Test support for `target_session.rs`: a scripted initiator (raw PDU builders with CmdSN and
//! ITT counters, RFC 7143 behaviour), a [`LoginHost`] that records what it was asked, a login
//! driver, and a harness around a logged-in [`TargetSession`] with virtual time that checks
//! the invariants of every PDU the target produces (it encodes and parses back; StatSN advances
//! by one per status-bearing PDU; ExpCmdSN and MaxCmdSN never move backwards).

#![allow(dead_code)]

pub mod random;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iscsi_proto::auth::TargetAuthConfig;
use iscsi_proto::pdu::{
    Digests, Isid, LoginRequest, LoginResponse, LoginStatus, LogoutReason, LogoutRequest, Lun,
    NopOut, ScsiCommand, ScsiResponse, Stage, TaskMgmtFunction, TaskMgmtRequest, TextRequest, Tsih,
};
use iscsi_proto::target::{
    Event, LoginConfig, LoginHost, LoginIdentity, LoginStep, Reply, ScsiOutcome, SessionConfig,
    TargetLogin, TargetSession,
};
use iscsi_proto::text::{LocalConfig, NegotiatedParams, TextLimits, encode_text, parse_text_owned};
use iscsi_proto::{CmdSn, DataSn, Itt, Pdu, StatSn, Ttt};

/// The target's name.
pub const TARGET: &str = "iqn.2026-11.rs.iscsi:target";
/// The initiator's name.
pub const INITIATOR: &str = "iqn.2026-11.rs.iscsi:initiator";
/// The initiator's session ID (random type).
pub const ISID: Isid = Isid([0x80, 0x12, 0x34, 0x56, 0x00, 0x01]);
/// The TSIH the test host hands out.
pub const HOST_TSIH: Tsih = Tsih(0x1234);
/// First CmdSN of the fixture sessions: close to the 2^32 wrap so that serial arithmetic is
/// exercised by every test.
pub const FIRST_CMD_SN: u32 = 0xffff_fffe;
/// First StatSN of the fixture logins (also close to the wrap).
pub const FIRST_STAT_SN: u32 = 0xffff_fffd;

/// Owned pairs from a literal list.
pub fn kv(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Encodes pairs as a text data segment.
pub fn text(pairs: &[(String, String)]) -> Bytes {
    encode_text(pairs).expect("test text encodes").freeze()
}

/// Parses a text data segment.
pub fn parse(data: &[u8]) -> Vec<(String, String)> {
    parse_text_owned(data, &TextLimits::default()).expect("target text parses")
}

/// The value of `key` in `pairs`.
pub fn value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Whether `key` is a security key (handed to the authenticators).
pub fn is_security_key(key: &str) -> bool {
    key == "AuthMethod" || key.starts_with("CHAP_")
}

/// Encodes a PDU and parses it back: what the scripted peer sends is always a valid wire PDU,
/// and what the target sends always encodes to one.
pub fn wire(pdu: &Pdu) -> Pdu {
    let bytes = pdu.to_bytes(Digests::NONE).expect("PDU encodes");
    let (back, used) = Pdu::parse(&bytes, Digests::NONE).expect("encoded PDU parses");
    assert_eq!(used, bytes.len());
    back
}

// ---------------------------------------------------------------------------------------------
// Login host
// ---------------------------------------------------------------------------------------------

/// A [`LoginHost`] that answers from its fields and records the questions.
#[derive(Debug)]
pub struct Host {
    /// Authentication settings returned by `authorize`.
    pub auth: Arc<TargetAuthConfig>,
    /// Refuse `authorize` with this status.
    pub refuse: Option<LoginStatus>,
    /// Refuse `open_session` with this status.
    pub refuse_session: Option<LoginStatus>,
    /// TSIH returned by `open_session`.
    pub tsih: Tsih,
    /// Every `authorize` call.
    pub authorized: Vec<LoginIdentity>,
    /// Every `open_session` call, with the CHAP user.
    pub opened: Vec<(LoginIdentity, Option<String>)>,
}

impl Host {
    /// No authentication, TSIH [`HOST_TSIH`].
    pub fn open() -> Host {
        Host::with_auth(TargetAuthConfig::default())
    }

    /// The given authentication settings.
    pub fn with_auth(auth: TargetAuthConfig) -> Host {
        Host {
            auth: Arc::new(auth),
            refuse: None,
            refuse_session: None,
            tsih: HOST_TSIH,
            authorized: Vec::new(),
            opened: Vec::new(),
        }
    }
}

impl LoginHost for Host {
    fn authorize(&mut self, who: &LoginIdentity) -> Result<Arc<TargetAuthConfig>, LoginStatus> {
        self.authorized.push(who.clone());
        match self.refuse {
            Some(status) => Err(status),
            None => Ok(self.auth.clone()),
        }
    }

    fn open_session(
        &mut self,
        who: &LoginIdentity,
        user: Option<&str>,
    ) -> Result<Tsih, LoginStatus> {
        self.opened.push((who.clone(), user.map(str::to_owned)));
        match self.refuse_session {
            Some(status) => Err(status),
            None => Ok(self.tsih),
        }
    }
}

/// The target's login settings used by the tests: permissive negotiation values so that the
/// initiator's offers decide the results, TargetPortalGroupTag 1.
pub fn target_local_config() -> LocalConfig {
    LocalConfig {
        target_portal_group_tag: Some(1),
        initial_r2t: false,
        immediate_data: true,
        max_recv_data_segment_length: 65536,
        max_burst_length: 1 << 20,
        first_burst_length: 1 << 20,
        max_outstanding_r2t: 16,
        ..LocalConfig::default()
    }
}

/// Login settings: `negotiation`, StatSN [`FIRST_STAT_SN`], the given queue depth, and 64
/// deterministic "random" bytes.
pub fn login_config(negotiation: LocalConfig, queue_depth: u32) -> LoginConfig {
    LoginConfig {
        negotiation,
        initial_stat_sn: StatSn(FIRST_STAT_SN),
        queue_depth,
        random: (0..64u8)
            .map(|b| b.wrapping_mul(37).wrapping_add(11))
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Scripted initiator: login
// ---------------------------------------------------------------------------------------------

/// The initiator's side of one login: fixed ISID/TSIH/CID/ITT/CmdSN, ExpStatSN following the
/// target's responses.
#[derive(Clone, Debug)]
pub struct LoginScript {
    /// ISID.
    pub isid: Isid,
    /// TSIH (0: new session).
    pub tsih: Tsih,
    /// CID.
    pub cid: u16,
    /// ITT of every request of the login.
    pub itt: Itt,
    /// CmdSN of every request of the login (login requests are immediate).
    pub cmd_sn: CmdSn,
    /// ExpStatSN (updated by [`LoginScript::step`]).
    pub exp_stat_sn: StatSn,
}

impl Default for LoginScript {
    fn default() -> Self {
        LoginScript {
            isid: ISID,
            tsih: Tsih(0),
            cid: 1,
            itt: Itt(0x4c4f_4731),
            cmd_sn: CmdSn(FIRST_CMD_SN),
            exp_stat_sn: StatSn(0),
        }
    }
}

impl LoginScript {
    /// A Login request.
    pub fn req(
        &self,
        csg: Stage,
        nsg: Stage,
        transit: bool,
        pairs: &[(String, String)],
    ) -> LoginRequest {
        let req = LoginRequest {
            transit,
            cont: false,
            csg,
            nsg: if transit { nsg } else { csg },
            version_max: 0,
            version_min: 0,
            isid: self.isid,
            tsih: self.tsih,
            itt: self.itt,
            cid: self.cid,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: text(pairs),
        };
        match wire(&req.into()) {
            Pdu::LoginRequest(r) => r,
            other => panic!("not a login request: {other:?}"),
        }
    }

    /// Sends `req` to `login` and returns the step; the response is checked to encode and to
    /// echo ISID and ITT, and ExpStatSN follows its StatSN.
    pub fn step(
        &mut self,
        login: &mut TargetLogin,
        host: &mut Host,
        req: &LoginRequest,
    ) -> LoginStep {
        let step = login.handle(req, host);
        let r = response_of(&step);
        let back = wire(&Pdu::LoginResponse(r.clone()));
        assert_eq!(
            back,
            Pdu::LoginResponse(r.clone()),
            "login response round trip"
        );
        assert_eq!(r.isid, req.isid, "ISID echoed");
        assert_eq!(r.itt, req.itt, "ITT echoed");
        assert_eq!(r.version_max, 0);
        assert_eq!(r.version_active, 0);
        self.exp_stat_sn = r.stat_sn.next();
        step
    }
}

/// The response inside a login step.
pub fn response_of(step: &LoginStep) -> &LoginResponse {
    match step {
        LoginStep::Continue(r) | LoginStep::Complete(r) => r,
        LoginStep::Failed(r, _) => r,
    }
}

/// Asserts that the step failed with `status` and returns the response.
pub fn expect_failed(step: LoginStep, status: LoginStatus) -> LoginResponse {
    match step {
        LoginStep::Failed(r, e) => {
            assert_eq!(r.status, status, "login status ({e})");
            assert_eq!(e.status, status);
            assert!(!r.transit, "a failed login response has T=0");
            assert_eq!(r.tsih, Tsih(0), "a failed login response has TSIH 0");
            assert!(r.data.is_empty(), "a failed login response carries no text");
            r
        }
        other => panic!("expected a failure with {status:?}, got {other:?}"),
    }
}

/// Asserts that the step continues and returns the response.
pub fn expect_continue(step: LoginStep) -> LoginResponse {
    match step {
        LoginStep::Continue(r) => {
            assert_eq!(r.status, LoginStatus::SUCCESS);
            r
        }
        other => panic!("expected the login to continue, got {other:?}"),
    }
}

/// Asserts that the step completed the login and returns the response.
pub fn expect_complete(step: LoginStep) -> LoginResponse {
    match step {
        LoginStep::Complete(r) => {
            assert_eq!(r.status, LoginStatus::SUCCESS);
            assert!(r.transit && !r.cont);
            assert_eq!(r.nsg, Stage::FullFeature);
            r
        }
        other => panic!("expected the login to complete, got {other:?}"),
    }
}

/// The operational keys the fixture initiator offers by default.
pub fn default_offers() -> Vec<(String, String)> {
    kv(&[
        ("HeaderDigest", "None"),
        ("DataDigest", "None"),
        ("MaxRecvDataSegmentLength", "8192"),
        ("InitialR2T", "Yes"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "65536"),
        ("MaxOutstandingR2T", "1"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "20"),
        ("ErrorRecoveryLevel", "0"),
    ])
}

/// How to log in for a session test.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The target's negotiation settings.
    pub target: LocalConfig,
    /// The initiator's operational offers.
    pub offers: Vec<(String, String)>,
    /// The session's settings (also gives the login's queue depth).
    pub session: SessionConfig,
    /// A discovery session.
    pub discovery: bool,
}

impl Setup {
    /// A normal session with [`default_offers`] and [`target_local_config`].
    pub fn normal() -> Setup {
        Setup {
            target: target_local_config(),
            offers: default_offers(),
            session: SessionConfig {
                queue_depth: 16,
                ..SessionConfig::default()
            },
            discovery: false,
        }
    }

    /// A discovery session.
    pub fn discovery() -> Setup {
        Setup {
            offers: kv(&[
                ("HeaderDigest", "None"),
                ("DataDigest", "None"),
                ("MaxRecvDataSegmentLength", "8192"),
            ]),
            discovery: true,
            ..Setup::normal()
        }
    }

    /// Replaces (or adds) one initiator offer.
    pub fn offer(mut self, key: &str, value: &str) -> Setup {
        match self.offers.iter_mut().find(|(k, _)| k == key) {
            Some(pair) => pair.1 = value.to_owned(),
            None => self.offers.push((key.to_owned(), value.to_owned())),
        }
        self
    }

    /// Sets the session's queue depth.
    pub fn queue_depth(mut self, depth: u32) -> Setup {
        self.session.queue_depth = depth;
        self
    }

    /// Logs in (security stage with AuthMethod=None, operational stage, full feature phase)
    /// and starts the session at virtual time zero.
    pub fn login(self) -> Harness {
        let mut host = Host::open();
        let mut login = TargetLogin::new(
            login_config(self.target.clone(), self.session.queue_depth),
            false,
        );
        let mut script = LoginScript::default();
        let mut names = kv(&[("InitiatorName", INITIATOR)]);
        if self.discovery {
            names.push(("SessionType".into(), "Discovery".into()));
        } else {
            names.push(("SessionType".into(), "Normal".into()));
            names.push(("TargetName".into(), TARGET.into()));
        }
        names.push(("AuthMethod".into(), "None".into()));
        let r1 = script.req(Stage::Security, Stage::Operational, true, &names);
        let step = script.step(&mut login, &mut host, &r1);
        let resp = expect_continue(step);
        assert!(resp.transit, "security stage left");
        let r2 = script.req(Stage::Operational, Stage::FullFeature, true, &self.offers);
        let step = script.step(&mut login, &mut host, &r2);
        let resp = expect_complete(step);
        let outcome = login.finish().expect("login outcome");
        assert_eq!(outcome.tsih, HOST_TSIH);
        let params = outcome.params.clone();
        let t0 = Instant::now();
        let session = TargetSession::new(
            self.session.clone(),
            outcome.negotiator,
            outcome.exp_cmd_sn,
            outcome.stat_sn,
            t0,
        );
        assert_eq!(session.exp_cmd_sn(), resp.exp_cmd_sn);
        assert_eq!(session.max_cmd_sn(), resp.max_cmd_sn);
        assert_eq!(session.stat_sn(), resp.stat_sn.next());
        Harness {
            ini: Ini {
                cmd_sn: outcome.exp_cmd_sn,
                itt: 0x100,
                exp_stat_sn: outcome.stat_sn,
                lun: Lun(0),
            },
            next_stat_sn: outcome.stat_sn,
            last_exp: resp.exp_cmd_sn,
            last_max: resp.max_cmd_sn,
            s: session,
            t0,
            now: Duration::ZERO,
            params,
            config: self.session,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Scripted initiator: full feature phase
// ---------------------------------------------------------------------------------------------

/// The initiator's counters in full feature phase and builders for its PDUs. Non-immediate
/// requests take the next CmdSN; immediate ones carry it without advancing it (RFC 7143
/// §4.2.2.1).
#[derive(Clone, Debug)]
pub struct Ini {
    /// The next CmdSN.
    pub cmd_sn: CmdSn,
    /// The next ITT.
    pub itt: u32,
    /// ExpStatSN sent.
    pub exp_stat_sn: StatSn,
    /// LUN of SCSI commands.
    pub lun: Lun,
}

impl Ini {
    /// A fresh ITT.
    pub fn next_itt(&mut self) -> Itt {
        let itt = Itt(self.itt);
        self.itt += 1;
        itt
    }

    /// Takes the next CmdSN (non-immediate request).
    pub fn take_cmd_sn(&mut self) -> CmdSn {
        let sn = self.cmd_sn;
        self.cmd_sn = sn.next();
        sn
    }

    /// A SCSI command with a CDB, flags and immediate data, non-immediate.
    pub fn command(
        &mut self,
        cdb: &[u8],
        read: bool,
        write: bool,
        edtl: u32,
        immediate_data: Bytes,
        final_: bool,
    ) -> ScsiCommand {
        let mut c = ScsiCommand::with_cdb(cdb).expect("CDB of at most 16 bytes");
        c.final_ = final_;
        c.read = read;
        c.write = write;
        c.lun = self.lun;
        c.itt = self.next_itt();
        c.expected_data_len = edtl;
        c.cmd_sn = self.take_cmd_sn();
        c.exp_stat_sn = self.exp_stat_sn;
        c.data = immediate_data;
        c
    }

    /// READ(10) of `edtl` bytes (512-byte blocks).
    pub fn read(&mut self, edtl: u32) -> ScsiCommand {
        let blocks = (edtl / 512) as u16;
        let b = blocks.to_be_bytes();
        self.command(
            &[0x28, 0, 0, 0, 0, 8, 0, b[0], b[1], 0],
            true,
            false,
            edtl,
            Bytes::new(),
            true,
        )
    }

    /// WRITE(10) of `edtl` bytes with `imm` bytes of immediate data; `final_` false announces
    /// unsolicited Data-Out PDUs.
    pub fn write(&mut self, edtl: u32, imm: usize, final_: bool) -> ScsiCommand {
        let blocks = (edtl / 512) as u16;
        let b = blocks.to_be_bytes();
        self.command(
            &[0x2a, 0, 0, 0, 0, 8, 0, b[0], b[1], 0],
            false,
            true,
            edtl,
            pattern(0, imm),
            final_,
        )
    }

    /// TEST UNIT READY (no data).
    pub fn tur(&mut self) -> ScsiCommand {
        self.command(&[0; 6], false, false, 0, Bytes::new(), true)
    }

    /// An unsolicited Data-Out (TTT 0xffffffff) carrying `len` bytes of the pattern at
    /// `offset`.
    pub fn data_out(
        &self,
        itt: Itt,
        data_sn: u32,
        offset: u32,
        len: usize,
        final_: bool,
    ) -> iscsi_proto::pdu::DataOut {
        iscsi_proto::pdu::DataOut {
            final_,
            lun: self.lun,
            itt,
            ttt: Ttt::RESERVED,
            exp_stat_sn: self.exp_stat_sn,
            data_sn: DataSn(data_sn),
            buffer_offset: offset,
            data: pattern(offset as usize, len),
        }
    }

    /// A NOP-Out asking for an answer (fresh ITT), non-immediate, with `data`.
    pub fn nop_out(&mut self, data: Bytes) -> NopOut {
        NopOut {
            immediate: false,
            lun: Lun(0),
            itt: self.next_itt(),
            ttt: Ttt::RESERVED,
            cmd_sn: self.take_cmd_sn(),
            exp_stat_sn: self.exp_stat_sn,
            data,
        }
    }

    /// An immediate NOP-Out with ITT 0xffffffff: no answer wanted, or (with the target's TTT)
    /// the answer to a NOP-In ping.
    pub fn nop_out_no_answer(&self, ttt: Ttt) -> NopOut {
        NopOut {
            immediate: true,
            lun: Lun(0),
            itt: Itt::RESERVED,
            ttt,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data: Bytes::new(),
        }
    }

    /// An immediate task management request.
    pub fn tmf(
        &mut self,
        function: TaskMgmtFunction,
        lun: Lun,
        referenced: Itt,
        ref_cmd_sn: CmdSn,
    ) -> TaskMgmtRequest {
        TaskMgmtRequest {
            immediate: true,
            function,
            lun,
            itt: self.next_itt(),
            referenced_task_tag: referenced,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            ref_cmd_sn,
            exp_data_sn: DataSn(0),
        }
    }

    /// A non-immediate Text request with F=1 (unless `cont`), a new exchange (TTT reserved).
    pub fn text(&mut self, pairs: &[(String, String)]) -> TextRequest {
        TextRequest {
            immediate: false,
            final_: true,
            cont: false,
            lun: Lun(0),
            itt: self.next_itt(),
            ttt: Ttt::RESERVED,
            cmd_sn: self.take_cmd_sn(),
            exp_stat_sn: self.exp_stat_sn,
            data: text(pairs),
        }
    }

    /// The next Text request of an exchange: same ITT, the target's TTT, empty or `data`.
    pub fn text_continue(&mut self, itt: Itt, ttt: Ttt, data: Bytes, cont: bool) -> TextRequest {
        TextRequest {
            immediate: false,
            final_: !cont,
            cont,
            lun: Lun(0),
            itt,
            ttt,
            cmd_sn: self.take_cmd_sn(),
            exp_stat_sn: self.exp_stat_sn,
            data,
        }
    }

    /// An immediate Logout request.
    pub fn logout(&mut self, reason: LogoutReason) -> LogoutRequest {
        LogoutRequest {
            immediate: true,
            reason,
            itt: self.next_itt(),
            cid: 1,
            cmd_sn: self.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        }
    }
}

/// `len` bytes of a recognisable pattern, as if cut at buffer offset `offset`.
pub fn pattern(offset: usize, len: usize) -> Bytes {
    (offset..offset + len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// How a PDU carries StatSN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatSnUse {
    /// The PDU takes the next StatSN (responses, Reject, asynchronous messages).
    Advances,
    /// The PDU shows the next StatSN without taking it (a NOP-In ping).
    Shows,
}

/// StatSN, its use, ExpCmdSN and MaxCmdSN of a PDU the target sends.
pub fn sequence_fields(pdu: &Pdu) -> Option<(StatSn, StatSnUse, CmdSn, CmdSn)> {
    use StatSnUse::{Advances, Shows};
    Some(match pdu {
        Pdu::ScsiResponse(r) => (r.stat_sn, Advances, r.exp_cmd_sn, r.max_cmd_sn),
        Pdu::TaskMgmtResponse(r) => (r.stat_sn, Advances, r.exp_cmd_sn, r.max_cmd_sn),
        Pdu::TextResponse(r) => (r.stat_sn, Advances, r.exp_cmd_sn, r.max_cmd_sn),
        Pdu::LogoutResponse(r) => (r.stat_sn, Advances, r.exp_cmd_sn, r.max_cmd_sn),
        Pdu::Reject(r) => (r.stat_sn, Advances, r.exp_cmd_sn, r.max_cmd_sn),
        Pdu::AsyncMessage(r) => (r.stat_sn, Advances, r.exp_cmd_sn, r.max_cmd_sn),
        Pdu::NopIn(r) if r.itt.is_reserved() => (r.stat_sn, Shows, r.exp_cmd_sn, r.max_cmd_sn),
        Pdu::NopIn(r) => (r.stat_sn, Advances, r.exp_cmd_sn, r.max_cmd_sn),
        _ => return None,
    })
}

/// A logged-in session driven by the scripted initiator with virtual time.
#[derive(Debug)]
pub struct Harness {
    /// The session under test.
    pub s: TargetSession,
    /// The scripted initiator.
    pub ini: Ini,
    /// Virtual time zero.
    pub t0: Instant,
    /// Virtual time elapsed.
    pub now: Duration,
    /// Parameters negotiated at login.
    pub params: NegotiatedParams,
    /// The session's settings.
    pub config: SessionConfig,
    /// The StatSN the next status-bearing PDU must carry.
    pub next_stat_sn: StatSn,
    /// Highest ExpCmdSN seen.
    pub last_exp: CmdSn,
    /// Highest MaxCmdSN seen.
    pub last_max: CmdSn,
}

impl Harness {
    /// The current virtual instant.
    pub fn instant(&self) -> Instant {
        self.t0 + self.now
    }

    /// Moves virtual time forward.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Checks one PDU from the target: it encodes and parses back to itself; StatSN is the
    /// next one (and advances when the PDU takes it); ExpCmdSN and MaxCmdSN never go back.
    pub fn check_pdu(&mut self, pdu: &Pdu) {
        assert_eq!(&wire(pdu), pdu, "target PDU round trip");
        let Some((stat_sn, usage, exp, max)) = sequence_fields(pdu) else {
            panic!("the session core sent a PDU it never sends: {pdu:?}");
        };
        assert_eq!(stat_sn, self.next_stat_sn, "StatSN of {pdu:?}");
        if usage == StatSnUse::Advances {
            self.next_stat_sn = stat_sn.next();
            self.ini.exp_stat_sn = self.next_stat_sn;
        }
        self.check_window(exp, max);
    }

    /// ExpCmdSN and MaxCmdSN never move backwards (RFC 1982 comparison), and MaxCmdSN is at
    /// least ExpCmdSN - 1.
    pub fn check_window(&mut self, exp: CmdSn, max: CmdSn) {
        assert!(
            exp.is_at_or_after(self.last_exp),
            "ExpCmdSN went back from {:?} to {exp:?}",
            self.last_exp
        );
        assert!(
            max.is_at_or_after(self.last_max),
            "MaxCmdSN went back from {:?} to {max:?}",
            self.last_max
        );
        assert!(
            max.is_at_or_after(exp.sub(1)),
            "MaxCmdSN {max:?} below ExpCmdSN {exp:?} - 1"
        );
        self.last_exp = exp;
        self.last_max = max;
    }

    /// Polls every event, checking the PDUs to send and the sequence numbers of Get_Data.
    pub fn drain(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = self.s.poll_event() {
            match &e {
                Event::Send(pdu) => self.check_pdu(pdu),
                Event::GetData(g) => {
                    assert_eq!(
                        g.stat_sn, self.next_stat_sn,
                        "Get_Data shows the next StatSN"
                    );
                    self.check_window(g.exp_cmd_sn, g.max_cmd_sn);
                }
                _ => {}
            }
            out.push(e);
        }
        out
    }

    /// Sends a PDU (through its wire encoding) at the current virtual time and returns the
    /// events.
    pub fn send(&mut self, pdu: impl Into<Pdu>) -> Vec<Event> {
        let pdu = wire(&pdu.into());
        let now = self.instant();
        self.s.handle_pdu(now, pdu);
        self.drain()
    }

    /// Completes a task and checks the reply's fields; the events that follow are left for
    /// [`Harness::drain`].
    pub fn complete(&mut self, itt: Itt, outcome: ScsiOutcome) -> Option<Reply> {
        let reply = self.s.complete(itt, outcome);
        match &reply {
            Some(Reply::Response(pdu)) => {
                assert!(matches!(pdu, Pdu::ScsiResponse(r) if r.itt == itt));
                self.check_pdu(pdu);
            }
            Some(Reply::Data(put)) => {
                assert_eq!(put.itt, itt);
                assert_eq!(put.response.itt, itt);
                assert_eq!(put.exp_cmd_sn, put.response.exp_cmd_sn);
                assert_eq!(put.max_cmd_sn, put.response.max_cmd_sn);
                self.check_pdu(&Pdu::ScsiResponse(put.response.clone()));
            }
            None => {}
        }
        reply
    }

    /// Handles timers at the current virtual time and returns the events.
    pub fn timeout(&mut self) -> Vec<Event> {
        let now = self.instant();
        self.s.handle_timeout(now);
        self.drain()
    }
}

// ---------------------------------------------------------------------------------------------
// Event helpers
// ---------------------------------------------------------------------------------------------

/// The PDUs among the events.
pub fn sent(events: &[Event]) -> Vec<&Pdu> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Send(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// Asserts that the events are exactly one PDU to send, and returns it.
pub fn only_send(events: Vec<Event>) -> Pdu {
    let mut events = events;
    assert_eq!(events.len(), 1, "expected exactly one event: {events:?}");
    match events.pop() {
        Some(Event::Send(p)) => p,
        other => panic!("expected a PDU to send, got {other:?}"),
    }
}

/// The SCSI Response in a reply (a plain response, or the one that follows Put_Data).
pub fn reply_response(reply: &Reply) -> &ScsiResponse {
    match reply {
        Reply::Response(Pdu::ScsiResponse(r)) => r,
        Reply::Data(put) => &put.response,
        other => panic!("not a SCSI response: {other:?}"),
    }
}

/// 18 bytes of fixed-format sense data with the given key, ASC and ASCQ.
pub fn fixed_sense(key: u8, asc: u8, ascq: u8) -> Bytes {
    let mut s = [0u8; 18];
    s[0] = 0x70;
    s[2] = key;
    s[7] = 10;
    s[12] = asc;
    s[13] = ascq;
    Bytes::copy_from_slice(&s)
}

/// The data segment of a SCSI Response carrying `sense` (SenseLength + sense).
pub fn sense_segment(sense: &[u8]) -> Bytes {
    let mut v = (sense.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(sense);
    v.into()
}

/// LUN `n` in SAM peripheral/flat addressing.
pub fn lun(n: u16) -> Lun {
    Lun::from_index(n).expect("small LUN")
}

/// The Referenced Task Tag of task management functions that name no task.
pub const NO_TASK: Itt = Itt::RESERVED;

/// A `ScsiOutcome` with GOOD status and `data_len` bytes of data-in, transfer length
/// `transfer_len`.
pub fn good(data_len: u32, transfer_len: u64) -> ScsiOutcome {
    ScsiOutcome {
        status: iscsi_proto::pdu::ScsiStatus::GOOD,
        sense: None,
        data_len,
        transfer_len,
    }
}
