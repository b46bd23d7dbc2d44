//! Bodies of the cargo-fuzz targets in `fuzz/`, compiled in ordinary builds with the `fuzzing`
//! feature (and under `cfg(fuzzing)`) so that `cargo test` catches breakage. Each function
//! asserts the properties its target checks; a failed assertion is a finding.

use bytes::{Bytes, BytesMut};

use crate::pdu::{Digests, Pdu};
use crate::{Deframer, DeframerConfig};

/// Runs `body` on every seed (`fuzz/corpus/TARGET/seed-*`) and crash regression
/// (`fuzz/regressions/TARGET/*`) of the fuzz target `target` in this repository, naming each
/// file on stderr first; panics if the target has no seed. For the `fuzz_seeds` tests of the
/// crates that hold fuzz target bodies.
pub fn run_seeds_and_regressions(target: &str, body: impl Fn(&[u8])) {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let files = |dir: std::path::PathBuf, seeds_only: bool| {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .filter(|p| {
                !seeds_only
                    || p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            })
            .collect();
        v.sort();
        v
    };
    let seeds = files(fuzz.join("corpus").join(target), true);
    assert!(!seeds.is_empty(), "no seeds for fuzz target {target}");
    for path in seeds
        .iter()
        .chain(&files(fuzz.join("regressions").join(target), false))
    {
        eprintln!("{target}: {}", path.display());
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        body(&data);
    }
}

fn digests_from(b: u8) -> Digests {
    Digests {
        header: b & 1 != 0,
        data: b & 2 != 0,
    }
}

/// PDU parser: never panics; whatever parses re-encodes to a buffer that parses to the same PDU
/// (parse-build-parse is stable).
pub fn pdu_parse(input: &[u8]) {
    let Some((&first, rest)) = input.split_first() else {
        return;
    };
    let digests = digests_from(first);
    let buf = Bytes::copy_from_slice(rest);
    if let Ok((pdu, used)) = Pdu::parse(&buf, digests) {
        assert!(used <= buf.len());
        let again = pdu
            .to_bytes(digests)
            .expect("a parsed PDU always fits its fields");
        assert_eq!(again.len(), pdu.wire_len(digests));
        let (back, used2) = Pdu::parse(&again, digests).expect("re-encoded PDU parses");
        assert_eq!(used2, again.len());
        assert_eq!(back, pdu);
    }
}

/// Deframer: feeding the input in arbitrary pieces yields the same frames and errors as feeding
/// it whole, and the buffer never holds more than one bounded PDU.
pub fn deframer_splits(input: &[u8]) {
    if input.len() < 3 {
        return;
    }
    let config = DeframerConfig {
        digests: digests_from(input[0]),
        max_data_segment_len: 512 + (input[1] as u32) * 64,
    };
    let seed = input[2];
    let stream = &input[3..];
    let drain = |d: &mut Deframer, out: &mut Vec<Result<Bytes, String>>| {
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    let mut raw = BytesMut::new();
                    raw.extend_from_slice(&f.raw_header());
                    raw.extend_from_slice(&f.data());
                    out.push(Ok(raw.freeze()));
                }
                Ok(None) => break,
                Err(e) => {
                    let fatal = e.is_fatal();
                    out.push(Err(e.to_string()));
                    if fatal {
                        break;
                    }
                }
            }
        }
    };
    let mut whole = Vec::new();
    let mut d = Deframer::new(config);
    d.feed(stream);
    drain(&mut d, &mut whole);

    let mut pieces = Vec::new();
    let mut d = Deframer::new(config);
    let mut pos = 0;
    let mut step = seed as usize % 7 + 1;
    let bound = crate::pdu::BHS_LEN
        + crate::pdu::MAX_AHS_LEN
        + 8
        + config.max_data_segment_len as usize
        + 64;
    while pos < stream.len() {
        let end = (pos + step).min(stream.len());
        d.feed(&stream[pos..end]);
        pos = end;
        step = (step * 5 + seed as usize) % 61 + 1;
        drain(&mut d, &mut pieces);
        assert!(
            d.buffered() <= bound,
            "deframer buffered {} > {bound}",
            d.buffered()
        );
        if pieces.last().is_some_and(|r| r.is_err())
            && d.next_frame().is_err()
            && whole.len() <= pieces.len()
        {
            break;
        }
    }
    let n = whole.len().min(pieces.len());
    assert_eq!(whole[..n], pieces[..n]);
}

/// Text layer: C-bit reassembly of arbitrary pieces, parsing, and a negotiator in either role
/// fed the result never panic; reassembly equals the whole; a negotiation that succeeds yields
/// FirstBurstLength <= MaxBurstLength.
pub fn text_negotiation(input: &[u8]) {
    use crate::text::{
        LocalConfig, Negotiator, Role, SessionType, Stage, TextAssembler, TextLimits, parse_text,
    };
    let Some((&ctl, text)) = input.split_first() else {
        return;
    };
    // Reassemble `text` from pieces whose sizes come from the control byte.
    let mut asm = TextAssembler::new(64 * 1024);
    let step = ctl as usize % 13 + 1;
    let mut whole = None;
    let mut pieces = text.chunks(step).peekable();
    if text.is_empty() {
        whole = asm.feed(&[], false).ok().flatten();
    }
    while let Some(p) = pieces.next() {
        let last = pieces.peek().is_none();
        match asm.feed(p, !last) {
            Ok(Some(t)) => whole = Some(t),
            Ok(None) => {}
            Err(_) => return,
        }
    }
    let whole = whole.expect("the last piece had C=0");
    assert_eq!(whole, text);

    let role = if ctl & 0x80 != 0 {
        Role::Target
    } else {
        Role::Initiator
    };
    let session = if ctl & 0x40 != 0 {
        SessionType::Discovery
    } else {
        SessionType::Normal
    };
    let mut config = LocalConfig::default();
    if role == Role::Initiator {
        config.initiator_name = Some("iqn.2026-11.rs.iscsi:fuzz".into());
        config.target_name = Some("iqn.2026-11.rs.iscsi:t".into());
    }
    let mut n = Negotiator::new(role, config, session, ctl & 0x20 == 0, ctl & 0x10 != 0);
    if ctl & 0x08 != 0 {
        n.set_stage(Stage::Operational);
    }
    let _ = n.offer();
    if let Ok(pairs) = parse_text(&whole, &TextLimits::default())
        && n.handle(&pairs).is_ok()
    {
        let r = n.result();
        assert!(r.first_burst_length <= r.max_burst_length);
    }
    // The same bytes straight into the negotiator's own text entry point.
    let _ = n.handle_text(&whole);
}

/// Reads a fuzz input; past its end every read is zero.
pub(crate) struct Reader<'a> {
    pub(crate) data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    pub(crate) fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub(crate) fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (a, b) = self.data.split_at(n.min(self.data.len()));
        self.data = b;
        a
    }
}

mod initiator;
mod login;

/// The initiator's login under a hostile target: see the `login` fuzzing module for the input
/// format and the properties checked.
pub fn initiator_login(data: &[u8]) {
    login::run(data);
}

/// The initiator's full feature phase under a hostile target: see the `initiator` fuzzing
/// module for the input format and the properties checked.
pub fn initiator_session(data: &[u8]) {
    initiator::run(data);
}

/// Target login and full feature phase: arbitrary input drives a [`crate::target::TargetLogin`]
/// and then a [`crate::target::TargetSession`], with an engine model that behaves like a correct
/// engine (plus a few harmless misbehaviours). Never panics; checks that every PDU the target
/// sends encodes and parses back to itself, that StatSN advances by exactly one per
/// status-bearing PDU, that ExpCmdSN and MaxCmdSN never move backwards (RFC 1982), that a CHAP
/// login only completes authenticated, and the session's promises to its engine (no new task
/// with the tag of a task the engine holds; Get_Data, Data and Execute only for tasks waiting
/// for data; no Release or status behind the engine's back of a task it runs).
///
/// Input: three configuration bytes, then login operations, then full feature operations, each
/// an operation byte followed by the bytes it reads (missing bytes read as zero).
///
/// - Configuration byte 0: bit 0 CHAP required, bit 1 mutual CHAP, bit 2 discovery session,
///   bit 3 NOP-In keep-alive, bits 4-5 queue depth (1, 2, 4, 32), bits 6-7 host (2: refuses
///   authorization, 3: refuses the session). Byte 1: bit 0 target InitialR2T=Yes, bit 1
///   ImmediateData=No, bit 2 small buffer budget, bit 3 small MaxTransferLength, bits 4-5 the
///   target's MaxRecvDataSegmentLength (8192, 512, 1024, 65536), bit 6 small bursts, bit 7 a
///   wrong CHAP secret. Byte 2: bit 0 data digests, bit 1 header digests, bit 2 small text
///   limit, bits 3-4 MaxOutstandingR2T (1, 2, 4, 16), bit 5 NOP-In timeout 0, bit 6 the
///   initiator's MaxRecvDataSegmentLength 512, bit 7 the initiator offers ImmediateData=No.
/// - Login operation byte, modulo 4: 0 a raw PDU, 1 a free-form Login request, 2 the next
///   request of a correct initiator, 3 the connection gives up the login. The login phase ends
///   when the login completes or fails, on operation 3, or after 16 operations; a session that
///   did not log in is then built directly in full feature phase.
/// - Full feature operation byte: bits 0-2 the kind, bits 3-7 a sub-choice. Kind 0: a raw PDU;
///   1-3: a well-formed PDU (sub mod 8: READ, WRITE, next unsolicited Data-Out, free-form
///   Data-Out, NOP-Out, TMF, Text, Logout); 4-5: an engine action (sub mod 8: complete the
///   oldest or a chosen running task, data_complete, data_failed, tmf_done, send_targets_reply,
///   complete an unknown task, data_complete where there is no Get_Data); 6: advance virtual
///   time and handle timers; 7: request_logout, abort_for_reset, cold_reset, or connection
///   loss (sub mod 4).
pub fn target_session(data: &[u8]) {
    session_fuzz::run(data);
}

mod session_fuzz {
    use super::Reader;
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, Instant};

    use bytes::Bytes;

    use crate::auth::{
        AuthPolicy, ChapCredential, InitiatorAuthConfig, InitiatorAuthenticator, TargetAuthConfig,
    };
    use crate::datamover::DataError;
    use crate::digest::{crc32c, crc32c_wire};
    use crate::pdu::{
        BHS_LEN, Bhs, DataOut, Digests, Isid, LoginRequest, LoginStatus, LogoutReason,
        LogoutRequest, LogoutResponseCode, Lun, NopOut, Pdu, PduError, ScsiCommand, ScsiStatus,
        Stage, TaskMgmtFunction, TaskMgmtRequest, TextRequest, TmfResponse, Tsih,
    };
    use crate::serial::{CmdSn, DataSn, Itt, StatSn, Ttt};
    use crate::target::{
        Event, LoginConfig, LoginHost, LoginIdentity, LoginStep, Reply, ScsiOutcome, SessionConfig,
        TargetLogin, TargetRecord, TargetSession, encode_send_targets,
    };
    use crate::text::{
        Digest, LocalConfig, Negotiator, Role, SessionType, Stage as TextStage, TextLimits,
        encode_text, parse_text_owned,
    };
    use crate::{Deframer, DeframerConfig};

    const TARGET: &str = "iqn.2026-11.rs.iscsi:target";
    const INITIATOR: &str = "iqn.2026-11.rs.iscsi:initiator";
    const ISID: Isid = Isid([0x80, 0x12, 0x34, 0x56, 0x00, 0x01]);
    const HOST_TSIH: Tsih = Tsih(0x1234);
    /// Close to the 2^32 wrap, so that serial arithmetic is always exercised.
    const FIRST_CMD_SN: u32 = 0xffff_fffe;
    const FIRST_STAT_SN: u32 = 0xffff_fffd;
    const LOGIN_ITT: Itt = Itt(0x4c4f_4731);
    const LOGIN_SEGMENT: u32 = 8192;
    const MAX_LOGIN_OPS: usize = 16;
    const MAX_OPS: usize = 512;
    const USER: &str = "alice";
    const SECRET: &[u8] = b"alice-secret-0123";
    const TARGET_SECRET: &[u8] = b"target-secret-9876";

    /// `len` bytes (at most 64 KiB) of a recognisable pattern, as if cut at buffer offset
    /// `offset`: a slice of one static buffer, so that no instrumented loop builds it.
    fn pattern(offset: usize, len: usize) -> Bytes {
        const MAX: usize = 64 << 10;
        static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
        let p = PATTERN.get_or_init(|| (0..MAX + 251).map(|i| (i % 251) as u8).collect());
        let start = offset % 251;
        Bytes::from_static(&p[start..start + len.min(MAX)])
    }

    fn kv(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn text(pairs: &[(String, String)]) -> Bytes {
        encode_text(pairs).map(|b| b.freeze()).unwrap_or_default()
    }

    fn lun(b: u8) -> Lun {
        Lun(u64::from(b & 1) << 48)
    }

    /// Tag pool entry `b` (15 is the reserved tag).
    fn pool_itt(b: u8) -> Itt {
        match b & 0x0f {
            15 => Itt::RESERVED,
            n => Itt(0x10 + u32::from(n)),
        }
    }

    /// A SendTargets answer with `n` (< 64) targets of two portals each, encoded once per
    /// process.
    fn send_targets_answer(n: usize) -> Bytes {
        static ANSWERS: OnceLock<Vec<Bytes>> = OnceLock::new();
        let answers = ANSWERS.get_or_init(|| {
            let records: Vec<TargetRecord> = (0..64)
                .map(|i| TargetRecord {
                    name: format!("{TARGET}-{i:04}"),
                    addresses: vec![
                        (format!("192.0.2.{}:3260", i % 250), 1),
                        ("[2001:db8::1]:3260".to_owned(), 1),
                    ],
                })
                .collect();
            (0..64)
                .map(|n| encode_send_targets(&records[..n]))
                .collect()
        });
        answers[n % 64].clone()
    }

    /// What the configuration bytes chose.
    struct Setup {
        chap: bool,
        discovery: bool,
        refuse: Option<LoginStatus>,
        refuse_session: Option<LoginStatus>,
        auth: TargetAuthConfig,
        initiator_auth: Option<InitiatorAuthConfig>,
        local: LocalConfig,
        session: SessionConfig,
        names: Vec<(String, String)>,
        offers: Vec<(String, String)>,
    }

    fn setup(c0: u8, c1: u8, c2: u8) -> Setup {
        let chap = c0 & 1 != 0;
        let mutual = c0 & 2 != 0;
        let discovery = c0 & 4 != 0;
        let depth = [1, 2, 4, 32][usize::from((c0 >> 4) & 3)];
        let alice = ChapCredential::new(USER, SECRET.to_vec());
        let target_cred = ChapCredential::new(TARGET, TARGET_SECRET.to_vec());
        let auth = TargetAuthConfig {
            method: if chap {
                AuthPolicy::Chap
            } else {
                AuthPolicy::None
            },
            credentials: vec![alice],
            mutual: mutual.then(|| target_cred.clone()),
            ..TargetAuthConfig::default()
        };
        let secret: &[u8] = if c1 & 0x80 != 0 {
            b"not-alice-secret"
        } else {
            SECRET
        };
        let ini_cred = ChapCredential::new(USER, secret.to_vec());
        let initiator_auth = chap.then(|| {
            if mutual {
                InitiatorAuthConfig::mutual_chap(ini_cred, target_cred)
            } else {
                InitiatorAuthConfig::chap(ini_cred)
            }
        });
        let digest = |on: bool| {
            if on {
                vec![Digest::Crc32c, Digest::None]
            } else {
                vec![Digest::None]
            }
        };
        let small_bursts = c1 & 0x40 != 0;
        let local = LocalConfig {
            target_portal_group_tag: Some(1),
            header_digest: digest(c2 & 2 != 0),
            data_digest: digest(c2 & 1 != 0),
            initial_r2t: c1 & 1 != 0,
            immediate_data: c1 & 2 == 0,
            max_recv_data_segment_length: [8192, 512, 1024, 65536][usize::from((c1 >> 4) & 3)],
            max_burst_length: if small_bursts { 1024 } else { 1 << 20 },
            first_burst_length: if small_bursts { 512 } else { 1 << 20 },
            max_outstanding_r2t: [1, 2, 4, 16][usize::from((c2 >> 3) & 3)],
            ..LocalConfig::default()
        };
        let session = SessionConfig {
            queue_depth: depth,
            max_transfer_len: if c1 & 8 != 0 { 4096 } else { 1 << 20 },
            max_buffered: if c1 & 4 != 0 { 8192 } else { 16 << 20 },
            nop_in_interval: (c0 & 8 != 0).then_some(Duration::from_secs(30)),
            nop_in_timeout: if c2 & 0x20 != 0 {
                Duration::ZERO
            } else {
                Duration::from_secs(10)
            },
            max_text_len: if c2 & 4 != 0 { 256 } else { 64 << 10 },
            cmd_sn_gap_timeout: (c0 >> 6 == 1).then_some(Duration::from_secs(2)),
        };
        let mut names = kv(&[("InitiatorName", INITIATOR)]);
        if discovery {
            names.extend(kv(&[("SessionType", "Discovery")]));
        } else {
            names.extend(kv(&[("SessionType", "Normal"), ("TargetName", TARGET)]));
        }
        let yes_crc = |on: bool| if on { "CRC32C" } else { "None" };
        let mut offers = kv(&[
            ("HeaderDigest", yes_crc(c2 & 2 != 0)),
            ("DataDigest", yes_crc(c2 & 1 != 0)),
            (
                "MaxRecvDataSegmentLength",
                if c2 & 0x40 != 0 { "512" } else { "8192" },
            ),
        ]);
        if !discovery {
            offers.extend(kv(&[
                ("InitialR2T", "No"),
                ("ImmediateData", if c2 & 0x80 != 0 { "No" } else { "Yes" }),
                ("MaxBurstLength", "262144"),
                ("FirstBurstLength", "65536"),
                ("MaxOutstandingR2T", "16"),
                ("ErrorRecoveryLevel", "0"),
            ]));
        }
        Setup {
            chap,
            discovery,
            refuse: (c0 >> 6 == 2).then_some(LoginStatus::NOT_FOUND),
            refuse_session: (c0 >> 6 == 3).then_some(LoginStatus::OUT_OF_RESOURCES),
            auth,
            initiator_auth,
            local,
            session,
            names,
            offers,
        }
    }

    /// The engine's answers during login.
    struct Host {
        auth: Arc<TargetAuthConfig>,
        refuse: Option<LoginStatus>,
        refuse_session: Option<LoginStatus>,
        /// The last `open_session`: the TSIH handed out and the CHAP user.
        opened: Option<(Tsih, Option<String>)>,
    }

    impl LoginHost for Host {
        fn authorize(
            &mut self,
            _who: &LoginIdentity,
        ) -> Result<Arc<TargetAuthConfig>, LoginStatus> {
            match self.refuse {
                Some(status) => Err(status),
                None => Ok(self.auth.clone()),
            }
        }

        fn open_session(
            &mut self,
            _who: &LoginIdentity,
            user: Option<&str>,
        ) -> Result<Tsih, LoginStatus> {
            self.opened = None;
            if let Some(status) = self.refuse_session {
                return Err(status);
            }
            self.opened = Some((HOST_TSIH, user.map(str::to_owned)));
            Ok(HOST_TSIH)
        }
    }

    /// One PDU out of the deframer.
    enum Rx {
        Pdu(Pdu),
        Malformed(Bytes, PduError),
        /// The stream cannot go on (header digest error): the connection drops.
        Fatal,
    }

    /// Frames `bytes` as a datamover would and decodes each frame.
    fn deframe(bytes: &[u8], config: DeframerConfig) -> Vec<Rx> {
        let mut d = Deframer::new(config);
        d.feed(bytes);
        let mut out = Vec::new();
        loop {
            match d.next_frame() {
                Ok(Some(f)) => out.push(match Pdu::from_frame(&f) {
                    Ok(p) => Rx::Pdu(p),
                    Err(e) => Rx::Malformed(f.raw_header(), e),
                }),
                Ok(None) => break,
                Err(e) if e.is_fatal() => {
                    out.push(Rx::Fatal);
                    break;
                }
                Err(e) => out.push(Rx::Malformed(e.raw_header, e.error)),
            }
        }
        out
    }

    /// Raw PDU bytes from the input: a flags byte, the 48-byte BHS, then as much AHS and data
    /// as its lengths ask for (zeros where the input ends). Flags: bit 0 keeps the header's
    /// lengths (otherwise no AHS and no data), bit 1 replaces the opcode with a common one
    /// (bits 4-6), bit 2 writes correct digests.
    fn raw_pdu(r: &mut Reader, digests: Digests, max_data: u32) -> Vec<u8> {
        const OPCODES: [u8; 8] = [0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10];
        let flags = r.u8();
        let mut h = [0u8; BHS_LEN];
        let src = r.bytes(BHS_LEN);
        h[..src.len()].copy_from_slice(src);
        if flags & 1 == 0 {
            h[4..8].fill(0);
        }
        if flags & 2 != 0 {
            h[0] = (h[0] & 0x40) | OPCODES[usize::from((flags >> 4) & 7)];
        }
        let bhs = Bhs::from_array(&h);
        let ahs_end = BHS_LEN + bhs.ahs_len();
        let header_part = ahs_end + if digests.header { 4 } else { 0 };
        let with_data = bhs.data_segment_len > 0 && bhs.data_segment_len <= max_data;
        let total = header_part
            + if with_data {
                bhs.padded_data_len() + if digests.data { 4 } else { 0 }
            } else {
                0
            };
        let mut pdu = h.to_vec();
        pdu.extend_from_slice(r.bytes(total - BHS_LEN));
        pdu.resize(total, 0);
        if flags & 4 != 0 {
            if digests.header {
                let crc = crc32c_wire(crc32c(&pdu[..ahs_end]));
                pdu[ahs_end..header_part].copy_from_slice(&crc);
            }
            if digests.data && with_data {
                let end = header_part + bhs.padded_data_len();
                let crc = crc32c_wire(crc32c(&pdu[header_part..end]));
                pdu[end..end + 4].copy_from_slice(&crc);
            }
        }
        pdu
    }

    /// Checks that a PDU the target sends encodes and parses back to itself.
    fn round_trip(pdu: &Pdu) {
        let bytes = pdu.to_bytes(Digests::NONE).expect("a target PDU encodes");
        let (back, used) = Pdu::parse(&bytes, Digests::NONE).expect("a target PDU parses back");
        assert_eq!(used, bytes.len());
        assert_eq!(&back, pdu, "target PDU round trip");
    }

    // -----------------------------------------------------------------------------------------
    // Login phase
    // -----------------------------------------------------------------------------------------

    /// The initiator's side of the login.
    struct LoginDriver {
        stage: Stage,
        started: bool,
        ia: Option<InitiatorAuthenticator>,
        next_security: Vec<(String, String)>,
        /// The last response had C=1: the next correct request asks for the rest.
        more: bool,
        exp_stat_sn: StatSn,
    }

    /// Keys of the free-form Login requests.
    const VOCAB: [(&str, &str); 32] = [
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
        ("TargetName", "iqn.2026-11.rs.iscsi:other"),
        ("SessionType", "Normal"),
        ("SessionType", "Discovery"),
        ("SessionType", "Bogus"),
        ("AuthMethod", "None"),
        ("AuthMethod", "CHAP"),
        ("AuthMethod", "CHAP,None"),
        ("AuthMethod", "SRP"),
        ("CHAP_A", "5"),
        ("CHAP_A", "7,6,5"),
        ("CHAP_N", USER),
        ("CHAP_R", "0x00112233445566778899aabbccddeeff"),
        ("CHAP_I", "1"),
        ("CHAP_C", "0x00112233445566778899aabbccddeeff"),
        ("HeaderDigest", "CRC32C,None"),
        ("DataDigest", "CRC32C"),
        ("MaxRecvDataSegmentLength", "512"),
        ("MaxRecvDataSegmentLength", "16777215"),
        ("MaxBurstLength", "512"),
        ("FirstBurstLength", "16777215"),
        ("InitialR2T", "No"),
        ("ImmediateData", "No"),
        ("MaxOutstandingR2T", "65535"),
        ("ErrorRecoveryLevel", "2"),
        ("MaxConnections", "4"),
        ("DataPDUInOrder", "No"),
        ("X-com.example.key", "value"),
        ("RDMAExtensions", "Yes"),
        ("TargetAlias", "alias"),
        ("SendTargets", "All"),
    ];

    impl LoginDriver {
        fn req(&self, csg: Stage, nsg: Stage, transit: bool, data: Bytes) -> LoginRequest {
            LoginRequest {
                transit,
                cont: false,
                csg,
                nsg,
                version_max: 0,
                version_min: 0,
                isid: ISID,
                tsih: Tsih(0),
                itt: LOGIN_ITT,
                cid: 1,
                cmd_sn: CmdSn(FIRST_CMD_SN),
                exp_stat_sn: self.exp_stat_sn,
                data,
            }
        }

        /// The next request of a correct initiator.
        fn scripted(&mut self, setup: &Setup) -> LoginRequest {
            if self.more {
                return self.req(self.stage, self.stage, false, Bytes::new());
            }
            let first = !self.started;
            self.started = true;
            match self.stage {
                Stage::Security => {
                    let pairs = if first {
                        let mut p = setup.names.clone();
                        match &mut self.ia {
                            Some(ia) => p.extend(ia.start()),
                            None => p.extend(kv(&[("AuthMethod", "None")])),
                        }
                        p
                    } else {
                        std::mem::take(&mut self.next_security)
                    };
                    let transit = self.ia.as_ref().is_none_or(InitiatorAuthenticator::is_done);
                    let nsg = if transit {
                        Stage::Operational
                    } else {
                        Stage::Security
                    };
                    self.req(Stage::Security, nsg, transit, text(&pairs))
                }
                _ => {
                    let mut pairs = if first {
                        setup.names.clone()
                    } else {
                        Vec::new()
                    };
                    pairs.extend(setup.offers.iter().cloned());
                    self.req(Stage::Operational, Stage::FullFeature, true, text(&pairs))
                }
            }
        }

        /// A request with stages, flags and keys from the input.
        fn free_form(&mut self, r: &mut Reader) -> LoginRequest {
            let f = r.u8();
            let stage = |v: u8| Stage::from_bits(v & 3).unwrap_or(Stage::FullFeature);
            let n = r.u8() % 6;
            let mut pairs = Vec::new();
            for _ in 0..n {
                let v = r.u8();
                if v & 0xe0 == 0xe0 {
                    let k = String::from_utf8_lossy(r.bytes(usize::from(v & 7) + 1)).into_owned();
                    let len = usize::from(r.u8() % 16);
                    let v = String::from_utf8_lossy(r.bytes(len)).into_owned();
                    pairs.push((k, v));
                } else {
                    let (k, v) = VOCAB[usize::from(v) % VOCAB.len()];
                    pairs.push((k.to_owned(), v.to_owned()));
                }
            }
            self.started = true;
            let mut req = self.req(stage(f), stage(f >> 2), f & 0x10 != 0, text(&pairs));
            req.cont = f & 0x20 != 0;
            if f & 0x40 != 0 {
                let g = r.u8();
                match g & 3 {
                    0 => req.version_min = g >> 2,
                    1 => req.isid.0[5] ^= 1,
                    2 => req.tsih = Tsih(u16::from(g >> 2)),
                    _ => req.cid ^= 1,
                }
            }
            if f & 0x80 != 0 {
                let len = usize::from(r.u8());
                req.data = Bytes::copy_from_slice(r.bytes(len));
            }
            req
        }

        fn on_response(&mut self, resp: &crate::pdu::LoginResponse) {
            self.exp_stat_sn = resp.stat_sn.next();
            self.more = resp.cont;
            if resp.transit {
                self.stage = resp.nsg;
            }
            let Some(ia) = &mut self.ia else {
                return;
            };
            if resp.cont {
                return;
            }
            let Ok(pairs) = parse_text_owned(&resp.data, &TextLimits::default()) else {
                return;
            };
            let security: Vec<_> = pairs
                .into_iter()
                .filter(|(k, _)| k == "AuthMethod" || k.starts_with("CHAP_"))
                .collect();
            if !security.is_empty()
                && let Ok(next) = ia.handle(&security)
            {
                self.next_security = next;
            }
        }
    }

    /// Checks a login step against its request; `next` is the StatSN it must carry.
    fn check_login_step(step: &LoginStep, req: &LoginRequest, next: &mut StatSn) {
        let r = match step {
            LoginStep::Continue(r) | LoginStep::Complete(r) | LoginStep::Failed(r, _) => r,
        };
        round_trip(&Pdu::LoginResponse(r.clone()));
        assert_eq!(r.itt, req.itt, "login response ITT");
        assert_eq!(r.stat_sn, *next, "login response StatSN");
        *next = next.next();
        assert!(
            r.data.len() <= LOGIN_SEGMENT as usize,
            "login text segment too long"
        );
        assert!(!(r.transit && r.cont), "login response with T=1 and C=1");
        match step {
            LoginStep::Failed(r, e) => {
                assert_eq!(r.status, e.status);
                assert!(!r.status.is_success(), "failed login with a success status");
                assert!(!r.transit, "failed login response with T=1");
                assert_eq!(r.tsih, Tsih(0), "failed login response with a TSIH");
                assert!(r.data.is_empty(), "failed login response with text");
            }
            LoginStep::Continue(r) => {
                assert_eq!(r.status, LoginStatus::SUCCESS);
                assert!(!r.transit || r.nsg != Stage::FullFeature);
            }
            LoginStep::Complete(r) => {
                assert_eq!(r.status, LoginStatus::SUCCESS);
                assert!(r.transit && r.nsg == Stage::FullFeature);
            }
        }
    }

    /// Runs the login phase and builds the session (logged in, or directly in full feature
    /// phase).
    fn login_phase(setup: &Setup, r: &mut Reader, t0: Instant) -> Ffp {
        let cfg = LoginConfig {
            negotiation: setup.local.clone(),
            initial_stat_sn: StatSn(FIRST_STAT_SN),
            queue_depth: setup.session.queue_depth,
            random: (0..64u8)
                .map(|b| b.wrapping_mul(37).wrapping_add(11))
                .collect(),
        };
        let mut login = TargetLogin::new(cfg, false);
        let mut host = Host {
            auth: Arc::new(setup.auth.clone()),
            refuse: setup.refuse,
            refuse_session: setup.refuse_session,
            opened: None,
        };
        let mut driver = LoginDriver {
            stage: Stage::Security,
            started: false,
            ia: setup
                .initiator_auth
                .clone()
                .map(|c| InitiatorAuthenticator::new(c, &[0x5a; 40])),
            next_security: Vec::new(),
            more: false,
            exp_stat_sn: StatSn(0),
        };
        let mut next_stat_sn = StatSn(FIRST_STAT_SN);
        let mut done = None;
        for _ in 0..MAX_LOGIN_OPS {
            if r.is_empty() {
                break;
            }
            let req = match r.u8() % 4 {
                0 => {
                    let raw = raw_pdu(r, Digests::NONE, LOGIN_SEGMENT);
                    let config = DeframerConfig {
                        digests: Digests::NONE,
                        max_data_segment_len: LOGIN_SEGMENT,
                    };
                    match deframe(&raw, config).into_iter().next() {
                        Some(Rx::Pdu(Pdu::LoginRequest(l))) => {
                            driver.started = true;
                            l
                        }
                        // Anything else during login: an engine drops it (or the connection).
                        _ => continue,
                    }
                }
                1 => driver.free_form(r),
                2 => driver.scripted(setup),
                _ => break,
            };
            // What reaches the login went over the wire.
            let Ok(bytes) = Pdu::LoginRequest(req).to_bytes(Digests::NONE) else {
                continue;
            };
            let Ok((Pdu::LoginRequest(req), _)) = Pdu::parse(&bytes, Digests::NONE) else {
                continue;
            };
            let step = login.handle(&req, &mut host);
            check_login_step(&step, &req, &mut next_stat_sn);
            match step {
                LoginStep::Continue(resp) => driver.on_response(&resp),
                LoginStep::Failed(..) => break,
                LoginStep::Complete(resp) => {
                    done = Some(resp);
                    break;
                }
            }
        }
        let Some(resp) = done else {
            assert!(
                login.finish().is_none(),
                "outcome of a login that did not complete"
            );
            return fallback_session(setup, t0);
        };
        let outcome = login.finish().expect("a completed login has an outcome");
        assert_eq!(
            host.opened,
            Some((outcome.tsih, outcome.user.clone())),
            "login completed without the host opening its session"
        );
        assert_eq!(resp.tsih, outcome.tsih);
        if setup.chap {
            assert_eq!(
                outcome.user.as_deref(),
                Some(USER),
                "a login to a CHAP target completed without authentication"
            );
        }
        assert_eq!(outcome.stat_sn, resp.stat_sn.next());
        assert_eq!(outcome.exp_cmd_sn, resp.exp_cmd_sn);
        assert!(outcome.params.first_burst_length <= outcome.params.max_burst_length);
        let s = TargetSession::new(
            setup.session.clone(),
            outcome.negotiator,
            outcome.exp_cmd_sn,
            outcome.stat_sn,
            t0,
        );
        assert_eq!(s.exp_cmd_sn(), resp.exp_cmd_sn);
        assert_eq!(s.max_cmd_sn(), resp.max_cmd_sn);
        Ffp::new(s, t0, outcome.exp_cmd_sn, resp.exp_cmd_sn, resp.max_cmd_sn)
    }

    /// A session built without a login: the target's negotiator fed the correct initiator's
    /// names and offers in the operational stage.
    fn fallback_session(setup: &Setup, t0: Instant) -> Ffp {
        let session_type = if setup.discovery {
            SessionType::Discovery
        } else {
            SessionType::Normal
        };
        let mut n = Negotiator::new(Role::Target, setup.local.clone(), session_type, true, false);
        n.set_stage(TextStage::Operational);
        let mut pairs = setup.names.clone();
        pairs.extend(setup.offers.iter().cloned());
        let _ = n.handle(&pairs);
        let exp = CmdSn(FIRST_CMD_SN);
        let s = TargetSession::new(setup.session.clone(), n, exp, StatSn(FIRST_STAT_SN), t0);
        let (e, m) = (s.exp_cmd_sn(), s.max_cmd_sn());
        Ffp::new(s, t0, exp, e, m)
    }

    // -----------------------------------------------------------------------------------------
    // Full feature phase
    // -----------------------------------------------------------------------------------------

    /// A task the engine holds.
    struct Task {
        itt: Itt,
        edtl: u32,
        /// Running at SCSI level (ready, or after Execute).
        running: bool,
        /// The transfers of an outstanding Get_Data.
        fetching: Vec<Ttt>,
        /// Offset and R2TSN the next Get_Data must start with, after a first one.
        next_r2t: Option<(u32, u32)>,
    }

    /// The session, the initiator's counters and the engine's model.
    struct Ffp {
        s: TargetSession,
        t0: Instant,
        now: Duration,
        next_stat_sn: StatSn,
        last_exp: CmdSn,
        last_max: CmdSn,
        cmd_sn: CmdSn,
        next_itt: u32,
        tasks: Vec<Task>,
        tmfs: Vec<Itt>,
        send_targets: Vec<Itt>,
        ping: Option<Ttt>,
        text_ttt: Option<(Itt, Ttt)>,
        /// Recent SCSI commands sent: (ITT, CmdSN, LUN).
        sent: Vec<(Itt, CmdSn, Lun)>,
        /// Recent writes sent: (ITT, immediate data, F bit, EDTL, LUN).
        writes: Vec<(Itt, u32, bool, u32, Lun)>,
        /// Tasks receiving unsolicited Data-Out: (ITT, LUN, next offset, next DataSN, end).
        unsolicited: Vec<(Itt, Lun, u32, u32, u32)>,
        recent_ttts: Vec<Ttt>,
        /// Running tasks aborted by another nexus: their status is TASK ABORTED.
        reset_aborted: Vec<Itt>,
        /// The connection is gone (Close, a fatal framing error): no more PDUs arrive.
        dropped: bool,
        /// The session produced Event::Close.
        closed: bool,
        /// The initiator's MaxRecvDataSegmentLength when the last step ended.
        seg_limit: u32,
    }

    fn push_bounded<T>(v: &mut Vec<T>, x: T) {
        if v.len() >= 16 {
            v.remove(0);
        }
        v.push(x);
    }

    impl Ffp {
        fn new(s: TargetSession, t0: Instant, cmd_sn: CmdSn, exp: CmdSn, max: CmdSn) -> Ffp {
            let next_stat_sn = s.stat_sn();
            let seg_limit = s.params().max_send_data_segment_length(Role::Target);
            Ffp {
                s,
                t0,
                now: Duration::ZERO,
                next_stat_sn,
                last_exp: exp,
                last_max: max,
                cmd_sn,
                next_itt: 0x1000,
                tasks: Vec::new(),
                tmfs: Vec::new(),
                send_targets: Vec::new(),
                ping: None,
                text_ttt: None,
                sent: Vec::new(),
                writes: Vec::new(),
                unsolicited: Vec::new(),
                recent_ttts: Vec::new(),
                reset_aborted: Vec::new(),
                dropped: false,
                closed: false,
                seg_limit,
            }
        }

        fn instant(&self) -> Instant {
            self.t0 + self.now
        }

        fn task(&self, itt: Itt) -> Option<&Task> {
            self.tasks.iter().find(|t| t.itt == itt)
        }

        fn task_mut(&mut self, itt: Itt) -> Option<&mut Task> {
            self.tasks.iter_mut().find(|t| t.itt == itt)
        }

        fn digests(&self) -> Digests {
            let p = self.s.params();
            Digests {
                header: p.header_digest == Digest::Crc32c,
                data: p.data_digest == Digest::Crc32c,
            }
        }

        // --- invariants ---

        fn check_window(&mut self, exp: CmdSn, max: CmdSn) {
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

        /// A PDU the target sends: it encodes and parses back, fits the initiator's
        /// MaxRecvDataSegmentLength, carries the next StatSN (taking it unless it is a NOP-In
        /// ping) and a window that did not move back.
        fn check_pdu(&mut self, pdu: &Pdu) {
            round_trip(pdu);
            // A Text negotiation may lower the limit after PDUs of the same step were made.
            let max_seg = self
                .s
                .params()
                .max_send_data_segment_length(Role::Target)
                .max(self.seg_limit);
            assert!(
                pdu.data().len() <= max_seg.max(512) as usize,
                "data segment of {} bytes over MaxRecvDataSegmentLength {max_seg}: {pdu:?}",
                pdu.data().len()
            );
            let (stat_sn, takes, exp, max) = match pdu {
                Pdu::ScsiResponse(r) => (r.stat_sn, true, r.exp_cmd_sn, r.max_cmd_sn),
                Pdu::TaskMgmtResponse(r) => (r.stat_sn, true, r.exp_cmd_sn, r.max_cmd_sn),
                Pdu::TextResponse(r) => (r.stat_sn, true, r.exp_cmd_sn, r.max_cmd_sn),
                Pdu::LogoutResponse(r) => (r.stat_sn, true, r.exp_cmd_sn, r.max_cmd_sn),
                Pdu::Reject(r) => (r.stat_sn, true, r.exp_cmd_sn, r.max_cmd_sn),
                Pdu::AsyncMessage(r) => (r.stat_sn, true, r.exp_cmd_sn, r.max_cmd_sn),
                Pdu::NopIn(r) => (r.stat_sn, !r.itt.is_reserved(), r.exp_cmd_sn, r.max_cmd_sn),
                other => panic!("the session core sent a PDU it never sends: {other:?}"),
            };
            assert_eq!(stat_sn, self.next_stat_sn, "StatSN of {pdu:?}");
            if takes {
                self.next_stat_sn = stat_sn.next();
            }
            self.check_window(exp, max);
        }

        fn on_event(&mut self, e: Event) {
            if self.closed {
                assert!(
                    !matches!(
                        e,
                        Event::Command(_)
                            | Event::Data { .. }
                            | Event::GetData(_)
                            | Event::Execute { .. }
                    ),
                    "{e:?} after the connection closed"
                );
            }
            match e {
                Event::Send(pdu) => {
                    self.check_pdu(&pdu);
                    match &pdu {
                        Pdu::ScsiResponse(r) => assert!(
                            self.task(r.itt).is_none(),
                            "status of {:?} sent while the engine holds it",
                            r.itt
                        ),
                        Pdu::NopIn(n) if n.itt.is_reserved() => self.ping = Some(n.ttt),
                        Pdu::LogoutResponse(l) if l.response == LogoutResponseCode::Closed => {
                            assert!(
                                self.tasks.is_empty(),
                                "logout answered while the engine holds tasks"
                            );
                        }
                        Pdu::TextResponse(t) if !t.ttt.is_reserved() => {
                            self.text_ttt = Some((t.itt, t.ttt));
                        }
                        _ => {}
                    }
                }
                Event::Command(c) => {
                    assert!(!c.itt.is_reserved(), "new task with the reserved tag");
                    assert!(
                        self.task(c.itt).is_none(),
                        "new task {:?} while the engine still holds a task with that tag",
                        c.itt
                    );
                    assert!(c.immediate_data.len() as u64 <= u64::from(c.edtl));
                    self.unsolicited.retain(|u| u.0 != c.itt);
                    if c.write
                        && !c.ready
                        && let Some(&(_, imm, final_, edtl, l)) =
                            self.writes.iter().rev().find(|w| w.0 == c.itt)
                    {
                        let end = self.s.params().first_burst_length.min(edtl);
                        if !final_ && imm < end {
                            self.unsolicited.push((c.itt, l, imm, 0, end));
                        }
                    }
                    self.tasks.push(Task {
                        itt: c.itt,
                        edtl: c.edtl,
                        running: c.ready,
                        fetching: Vec::new(),
                        next_r2t: None,
                    });
                }
                Event::Data { itt, offset, data } => {
                    let t = self
                        .task(itt)
                        .expect("Data for a task the engine does not hold");
                    assert!(!t.running && t.fetching.is_empty(), "Data for {itt:?}");
                    assert!(u64::from(offset) + data.len() as u64 <= u64::from(t.edtl));
                }
                Event::GetData(g) => {
                    assert_eq!(
                        g.stat_sn, self.next_stat_sn,
                        "Get_Data shows the next StatSN"
                    );
                    self.check_window(g.exp_cmd_sn, g.max_cmd_sn);
                    let t = self.task(g.itt).expect("Get_Data for an unknown task");
                    assert!(!t.running, "Get_Data for running task {:?}", g.itt);
                    assert!(
                        t.fetching.is_empty(),
                        "two Get_Data at once for {:?}",
                        g.itt
                    );
                    assert!(!g.r2ts.is_empty(), "empty Get_Data");
                    let p = self.s.params();
                    assert!(
                        g.r2ts.len() <= usize::from(p.max_outstanding_r2t.max(1)),
                        "{} R2Ts at once, MaxOutstandingR2T {}",
                        g.r2ts.len(),
                        p.max_outstanding_r2t
                    );
                    let max_burst = p.max_burst_length.max(512);
                    let edtl = u64::from(t.edtl);
                    for r in &g.r2ts {
                        assert!(!r.ttt.is_reserved() && r.len > 0, "bad transfer {r:?}");
                        assert!(r.len <= max_burst, "{r:?} over MaxBurstLength {max_burst}");
                        assert!(
                            u64::from(r.offset) + u64::from(r.len) <= edtl,
                            "{r:?} past EDTL"
                        );
                    }
                    // The transfers follow each other, and on from the previous Get_Data.
                    if let Some((offset, r2t_sn)) = t.next_r2t {
                        let first = &g.r2ts[0];
                        assert_eq!(
                            (first.offset, first.r2t_sn.0),
                            (offset, r2t_sn),
                            "Get_Data does not go on from the previous one"
                        );
                    }
                    for w in g.r2ts.windows(2) {
                        assert_eq!(w[1].offset, w[0].offset + w[0].len, "gap between R2Ts");
                        assert_eq!(w[1].r2t_sn.0, w[0].r2t_sn.0.wrapping_add(1), "R2TSN");
                    }
                    let next = g
                        .r2ts
                        .last()
                        .map(|r| (r.offset + r.len, r.r2t_sn.0.wrapping_add(1)));
                    let ttts: Vec<Ttt> = g.r2ts.iter().map(|r| r.ttt).collect();
                    for &ttt in &ttts {
                        push_bounded(&mut self.recent_ttts, ttt);
                    }
                    self.unsolicited.retain(|u| u.0 != g.itt);
                    if let Some(t) = self.task_mut(g.itt) {
                        t.fetching = ttts;
                        t.next_r2t = next;
                    }
                }
                Event::Execute { itt } => {
                    let t = self.task_mut(itt).expect("Execute for an unknown task");
                    assert!(!t.running && t.fetching.is_empty(), "Execute for {itt:?}");
                    t.running = true;
                    self.unsolicited.retain(|u| u.0 != itt);
                }
                Event::Release { itt } => {
                    let t = self.task(itt).expect("Release of an unknown task");
                    assert!(!t.running, "Release of {itt:?}, a task the engine runs");
                    self.tasks.retain(|t| t.itt != itt);
                    self.unsolicited.retain(|u| u.0 != itt);
                }
                Event::TaskManagement(t) => {
                    // The task an ABORT TASK found has ended by the time the engine hears of it.
                    if let Some((itt, true)) = t.referenced {
                        assert!(
                            self.task(itt).is_none(),
                            "ABORT TASK of {itt:?} while it is held"
                        );
                    }
                    self.tmfs.push(t.itt);
                }
                Event::SendTargets { itt, .. } => self.send_targets.push(itt),
                Event::KeyValues(p) => assert!(p.first_burst_length <= p.max_burst_length),
                Event::Close(_) => {
                    self.dropped = true;
                    self.closed = true;
                }
            }
        }

        fn drain(&mut self) {
            while let Some(e) = self.s.poll_event() {
                self.on_event(e);
            }
            self.seg_limit = self.s.params().max_send_data_segment_length(Role::Target);
            assert_eq!(
                self.tasks.len(),
                self.s.task_count(),
                "task table and engine disagree"
            );
            assert_eq!(
                self.s.stat_sn(),
                self.next_stat_sn,
                "StatSN moved without a PDU"
            );
            let (exp, max) = (self.s.exp_cmd_sn(), self.s.max_cmd_sn());
            self.check_window(exp, max);
        }

        fn assert_no_events(&mut self, what: &str) {
            if let Some(e) = self.s.poll_event() {
                panic!("{what} produced {e:?}");
            }
            self.drain();
        }

        // --- input ---

        fn take_sn(&mut self, b: u8, immediate: bool) -> CmdSn {
            if immediate {
                return self.cmd_sn;
            }
            match b as i8 {
                0 => {
                    let sn = self.cmd_sn;
                    self.cmd_sn = sn.next();
                    sn
                }
                d if d > 0 => self.cmd_sn.add(d as u32),
                d => self.cmd_sn.sub(u32::from(d.unsigned_abs())),
            }
        }

        /// A tag: bit 7 from the pool, else bit 6 a tag the engine holds, else a fresh one.
        fn itt(&mut self, b: u8) -> Itt {
            if b & 0x80 != 0 {
                return pool_itt(b);
            }
            if b & 0x40 != 0 && !self.tasks.is_empty() {
                return self.tasks[usize::from(b & 0x3f) % self.tasks.len()].itt;
            }
            let itt = Itt(self.next_itt);
            self.next_itt = self.next_itt.wrapping_add(1);
            itt
        }

        /// Delivers a PDU over the wire, as a datamover would.
        fn send(&mut self, pdu: Pdu) {
            if self.dropped {
                return;
            }
            if let Ok(bytes) = pdu.to_bytes(self.digests()) {
                self.deliver(&bytes);
            }
        }

        fn deliver(&mut self, bytes: &[u8]) {
            let config = DeframerConfig {
                digests: self.digests(),
                max_data_segment_len: self.s.params().max_recv_data_segment_length(Role::Target),
            };
            for rx in deframe(bytes, config) {
                if self.dropped {
                    return;
                }
                let now = self.instant();
                match rx {
                    // Solicited Data-Out of a transfer in progress stays in the datamover.
                    Rx::Pdu(Pdu::DataOut(d))
                        if !d.ttt.is_reserved()
                            && self.tasks.iter().any(|t| t.fetching.contains(&d.ttt)) => {}
                    Rx::Pdu(p) => self.s.handle_pdu(now, p),
                    Rx::Malformed(h, e) => self.s.handle_malformed(now, &h, &e),
                    Rx::Fatal => self.dropped = true,
                }
                self.drain();
            }
        }

        fn op(&mut self, r: &mut Reader) {
            let b = r.u8();
            let sub = b >> 3;
            match b & 7 {
                0 => {
                    let max = self.s.params().max_recv_data_segment_length(Role::Target);
                    let raw = raw_pdu(r, self.digests(), max);
                    if !self.dropped {
                        self.deliver(&raw);
                    }
                }
                1..=3 => self.op_pdu(sub, r),
                4 | 5 => self.op_engine(sub, r),
                6 => {
                    self.now += Duration::from_secs(u64::from(r.u8()));
                    let now = self.instant();
                    self.s.handle_timeout(now);
                    self.drain();
                }
                _ => self.op_control(sub, r),
            }
        }

        fn op_pdu(&mut self, sub: u8, r: &mut Reader) {
            let stat = self.next_stat_sn;
            let pdu: Pdu = match sub % 8 {
                // READ(10), bit 3 of the flags makes it bidirectional.
                0 => {
                    let (ib, sn, e, f) = (r.u8(), r.u8(), r.u8(), r.u8());
                    let itt = self.itt(ib);
                    let edtl = if f & 4 != 0 {
                        u32::from(e) << 18
                    } else {
                        u32::from(e) * 64
                    };
                    let blocks = ((edtl / 512).min(0xffff) as u16).to_be_bytes();
                    let Some(mut c) =
                        ScsiCommand::with_cdb(&[0x28, 0, 0, 0, 0, 8, 0, blocks[0], blocks[1], 0])
                    else {
                        return;
                    };
                    c.immediate = f & 1 != 0;
                    c.final_ = true;
                    c.read = true;
                    c.write = f & 8 != 0;
                    c.lun = lun(f >> 1);
                    c.itt = itt;
                    c.expected_data_len = edtl;
                    c.cmd_sn = self.take_sn(sn, c.immediate);
                    c.exp_stat_sn = stat;
                    push_bounded(&mut self.sent, (c.itt, c.cmd_sn, c.lun));
                    c.into()
                }
                // WRITE(10) with immediate data; F=0 announces unsolicited Data-Out.
                1 => {
                    let (ib, sn, e, i, f) = (r.u8(), r.u8(), r.u8(), r.u8(), r.u8());
                    let itt = self.itt(ib);
                    let edtl = if f & 4 != 0 {
                        u32::from(e) << 18
                    } else {
                        u32::from(e) * 64
                    };
                    let mut imm = u32::from(i) * 16;
                    if f & 8 == 0 {
                        imm = imm.min(edtl);
                    }
                    let blocks = ((edtl / 512).min(0xffff) as u16).to_be_bytes();
                    let Some(mut c) =
                        ScsiCommand::with_cdb(&[0x2a, 0, 0, 0, 0, 8, 0, blocks[0], blocks[1], 0])
                    else {
                        return;
                    };
                    c.immediate = f & 1 != 0;
                    c.final_ = f & 2 == 0;
                    c.write = f & 0x10 == 0;
                    c.lun = lun(f >> 5);
                    c.itt = itt;
                    c.expected_data_len = edtl;
                    c.cmd_sn = self.take_sn(sn, c.immediate);
                    c.exp_stat_sn = stat;
                    c.data = pattern(0, imm as usize);
                    push_bounded(&mut self.sent, (c.itt, c.cmd_sn, c.lun));
                    self.writes.retain(|w| w.0 != itt);
                    push_bounded(&mut self.writes, (itt, imm, c.final_, edtl, c.lun));
                    c.into()
                }
                // The next unsolicited Data-Out of a task that waits for it (0: the rest).
                2 => {
                    let (pick, l, f) = (r.u8(), r.u8(), r.u8());
                    if self.unsolicited.is_empty() {
                        return;
                    }
                    let i = usize::from(pick) % self.unsolicited.len();
                    let (itt, l_un, offset, data_sn, end) = self.unsolicited[i];
                    let mrdsl = self.s.params().max_recv_data_segment_length(Role::Target);
                    let len = match l {
                        0 => end - offset,
                        l => u32::from(l) * 16,
                    }
                    .min(end - offset)
                    .min(mrdsl);
                    let final_ = f & 1 != 0 || offset + len == end;
                    if final_ {
                        self.unsolicited.remove(i);
                    } else {
                        self.unsolicited[i] = (itt, l_un, offset + len, data_sn + 1, end);
                    }
                    DataOut {
                        final_,
                        lun: l_un,
                        itt,
                        ttt: Ttt::RESERVED,
                        exp_stat_sn: stat,
                        data_sn: DataSn(data_sn),
                        buffer_offset: offset,
                        data: pattern(offset as usize, len as usize),
                    }
                    .into()
                }
                // A Data-Out with fields from the input.
                3 => {
                    let (ib, sn, off, l, f) = (r.u8(), r.u8(), r.u16(), r.u8(), r.u8());
                    let itt = if f & 2 != 0 && !self.writes.is_empty() {
                        self.writes[usize::from(ib) % self.writes.len()].0
                    } else {
                        self.itt(ib)
                    };
                    let ttt = match (f >> 2) & 3 {
                        1 if !self.recent_ttts.is_empty() => {
                            self.recent_ttts[usize::from(ib) % self.recent_ttts.len()]
                        }
                        2 => Ttt(r.u32()),
                        _ => Ttt::RESERVED,
                    };
                    DataOut {
                        final_: f & 1 != 0,
                        lun: lun(f >> 4),
                        itt,
                        ttt,
                        exp_stat_sn: stat,
                        data_sn: DataSn(u32::from(sn)),
                        buffer_offset: u32::from(off),
                        data: pattern(usize::from(off), usize::from(l) * 16),
                    }
                    .into()
                }
                // NOP-Out: the answer to a ping (or none wanted), or a ping of ours.
                4 => {
                    let (f, ib, sn, l) = (r.u8(), r.u8(), r.u8(), r.u8());
                    if f & 1 != 0 {
                        let ttt = if f & 2 != 0 {
                            self.ping.unwrap_or(Ttt::RESERVED)
                        } else if f & 4 != 0 {
                            Ttt(u32::from(ib))
                        } else {
                            Ttt::RESERVED
                        };
                        NopOut {
                            immediate: true,
                            lun: Lun(0),
                            itt: Itt::RESERVED,
                            ttt,
                            cmd_sn: self.cmd_sn,
                            exp_stat_sn: stat,
                            data: Bytes::new(),
                        }
                        .into()
                    } else {
                        let immediate = f & 2 != 0;
                        NopOut {
                            immediate,
                            lun: Lun(0),
                            itt: self.itt(ib),
                            ttt: Ttt::RESERVED,
                            cmd_sn: self.take_sn(sn, immediate),
                            exp_stat_sn: stat,
                            data: pattern(0, usize::from(l) * 8),
                        }
                        .into()
                    }
                }
                // Task management: any function; the referenced task from the commands sent.
                5 => {
                    let (fb, rb, sb, f) = (r.u8(), r.u8(), r.u8(), r.u8());
                    let function = if fb & 0x80 != 0 {
                        TaskMgmtFunction(fb & 0x7f)
                    } else {
                        TaskMgmtFunction(fb % 14)
                    };
                    let (referenced, mut ref_cmd_sn, l) = if f & 1 != 0 && !self.sent.is_empty() {
                        self.sent[usize::from(rb) % self.sent.len()]
                    } else {
                        let itt = if f & 0x10 != 0 {
                            Itt::RESERVED
                        } else {
                            self.itt(rb)
                        };
                        (itt, self.cmd_sn, lun(f >> 1))
                    };
                    if f & 4 != 0 {
                        ref_cmd_sn = ref_cmd_sn.add(sb as i8 as u32);
                    }
                    let immediate = f & 8 == 0;
                    let itt = self.itt(0);
                    TaskMgmtRequest {
                        immediate,
                        function,
                        lun: l,
                        itt,
                        referenced_task_tag: referenced,
                        cmd_sn: self.take_sn(0, immediate),
                        exp_stat_sn: stat,
                        ref_cmd_sn,
                        exp_data_sn: DataSn(0),
                    }
                    .into()
                }
                // Text: SendTargets, negotiation, unknown keys, C-bit pieces, continuations.
                6 => {
                    let (k, f) = (r.u8(), r.u8());
                    let immediate = f & 1 != 0;
                    if k % 8 == 5 {
                        let Some((itt, ttt)) = self.text_ttt else {
                            return;
                        };
                        let cont = f & 4 != 0;
                        TextRequest {
                            immediate,
                            final_: !cont,
                            cont,
                            lun: Lun(0),
                            itt,
                            ttt,
                            cmd_sn: self.take_sn(0, immediate),
                            exp_stat_sn: stat,
                            data: if f & 2 != 0 {
                                Bytes::from_static(b"All\0")
                            } else {
                                Bytes::new()
                            },
                        }
                        .into()
                    } else {
                        let ib = r.u8();
                        let mut cont = false;
                        let data = match k % 8 {
                            0 => Bytes::from_static(b"SendTargets=All\0"),
                            1 => Bytes::from_static(b"SendTargets=\0"),
                            2 => Bytes::from(format!("SendTargets={TARGET}\0")),
                            3 => Bytes::from(format!(
                                "MaxRecvDataSegmentLength={}\0",
                                512 + u32::from(r.u8()) * 64
                            )),
                            4 => Bytes::from_static(b"X-com.example.key=1\0FooBar=2\0"),
                            6 => {
                                cont = true;
                                Bytes::from_static(b"SendTargets=")
                            }
                            _ => {
                                let len = usize::from(r.u8() % 64);
                                Bytes::copy_from_slice(r.bytes(len))
                            }
                        };
                        TextRequest {
                            immediate,
                            final_: !cont,
                            cont,
                            lun: Lun(0),
                            itt: self.itt(ib),
                            ttt: Ttt::RESERVED,
                            cmd_sn: self.take_sn(0, immediate),
                            exp_stat_sn: stat,
                            data,
                        }
                        .into()
                    }
                }
                // Logout.
                _ => {
                    let f = r.u8();
                    let reason = match f & 3 {
                        1 => LogoutReason::CloseConnection,
                        2 => LogoutReason::RemoveForRecovery,
                        _ => LogoutReason::CloseSession,
                    };
                    let immediate = f & 4 == 0;
                    let itt = self.itt(0);
                    LogoutRequest {
                        immediate,
                        reason,
                        itt,
                        cid: if f & 8 != 0 { 2 } else { 1 },
                        cmd_sn: self.take_sn(0, immediate),
                        exp_stat_sn: stat,
                    }
                    .into()
                }
            };
            self.send(pdu);
        }

        fn outcome(r: &mut Reader) -> ScsiOutcome {
            let f = r.u8();
            let status = match f & 7 {
                0 | 1 => ScsiStatus::GOOD,
                2 => ScsiStatus::CHECK_CONDITION,
                3 => ScsiStatus::CONDITION_MET,
                4 => ScsiStatus::BUSY,
                5 => ScsiStatus::TASK_SET_FULL,
                6 => ScsiStatus::RESERVATION_CONFLICT,
                _ => ScsiStatus(r.u8()),
            };
            // At most 252 bytes of sense data (SPC).
            let sense = (f & 8 != 0).then(|| pattern(0, usize::from(r.u8()).min(252)));
            let data_len = if f & 0x10 != 0 {
                u32::MAX
            } else {
                u32::from(r.u16())
            };
            let transfer_len = if f & 0x20 != 0 {
                u64::MAX
            } else {
                u64::from(r.u16())
            };
            ScsiOutcome {
                status,
                sense,
                data_len,
                transfer_len,
            }
        }

        fn complete(&mut self, itt: Itt, outcome: ScsiOutcome) {
            let edtl = self.task(itt).map_or(0, |t| t.edtl);
            self.tasks.retain(|t| t.itt != itt);
            let reset_aborted = self.reset_aborted.contains(&itt);
            self.reset_aborted.retain(|i| *i != itt);
            let reply = self.s.complete(itt, outcome);
            let response = match &reply {
                Some(Reply::Response(pdu)) => {
                    let Pdu::ScsiResponse(r) = pdu else {
                        panic!("complete() replied with {pdu:?}");
                    };
                    self.check_pdu(pdu);
                    Some(r.clone())
                }
                Some(Reply::Data(put)) => {
                    assert_eq!(put.itt, itt);
                    assert!(
                        put.len > 0 && put.len <= edtl,
                        "Put_Data of {} bytes",
                        put.len
                    );
                    assert!(put.max_segment_len >= 512 && put.max_burst_len >= 512);
                    assert_eq!(put.exp_cmd_sn, put.response.exp_cmd_sn);
                    assert_eq!(put.max_cmd_sn, put.response.max_cmd_sn);
                    self.check_pdu(&Pdu::ScsiResponse(put.response.clone()));
                    Some(put.response.clone())
                }
                None => None,
            };
            if let Some(r) = response {
                assert_eq!(r.itt, itt, "response to another task");
                assert!(!(r.overflow && r.underflow), "overflow and underflow");
                if reset_aborted {
                    assert_eq!(r.status, ScsiStatus::TASK_ABORTED, "task aborted by reset");
                }
            }
            self.drain();
        }

        fn op_engine(&mut self, sub: u8, r: &mut Reader) {
            let running: Vec<Itt> = self
                .tasks
                .iter()
                .filter(|t| t.running)
                .map(|t| t.itt)
                .collect();
            let fetching: Vec<Itt> = self
                .tasks
                .iter()
                .filter(|t| !t.fetching.is_empty())
                .map(|t| t.itt)
                .collect();
            let kind = sub % 8;
            match kind {
                0 | 1 => {
                    let pick = if kind == 0 { 0 } else { r.u8() };
                    let outcome = Self::outcome(r);
                    if let Some(&itt) = running.get(usize::from(pick) % running.len().max(1)) {
                        self.complete(itt, outcome);
                    }
                }
                // The datamover reports on a Get_Data (while the connection lasts).
                2 | 3 => {
                    let pick = r.u8();
                    let Some(&itt) = fetching.get(usize::from(pick) % fetching.len().max(1)) else {
                        return;
                    };
                    if self.closed {
                        return;
                    }
                    if let Some(t) = self.task_mut(itt) {
                        t.fetching.clear();
                    }
                    if kind == 2 {
                        self.s.data_complete(itt);
                    } else {
                        let error = match r.u8() % 5 {
                            0 => DataError::DataSn {
                                expected: 0,
                                got: 1,
                            },
                            1 => DataError::Range { offset: 0, len: 1 },
                            2 => DataError::FinalBit,
                            3 => DataError::DataDigest,
                            _ => DataError::Transport("gone".into()),
                        };
                        self.s.data_failed(itt, error);
                    }
                    self.drain();
                    if kind == 3 {
                        assert!(self.task(itt).is_none(), "failed task {itt:?} not released");
                    }
                }
                4 => {
                    let response = match r.u8() % 8 {
                        7 => TmfResponse(255),
                        n => TmfResponse(n),
                    };
                    if !self.tmfs.is_empty() {
                        let itt = self.tmfs.remove(0);
                        self.s.tmf_done(itt, response);
                        self.drain();
                    }
                }
                5 => {
                    let b = r.u8();
                    let raw = if b & 0x80 != 0 {
                        Some(Bytes::copy_from_slice(r.bytes(usize::from(b & 0x7f))))
                    } else {
                        None
                    };
                    if self.send_targets.is_empty() {
                        return;
                    }
                    let answer = raw.unwrap_or_else(|| send_targets_answer(usize::from(b % 64)));
                    let itt = self.send_targets.remove(0);
                    self.s.send_targets_reply(itt, answer);
                    self.drain();
                }
                // Misbehaving engine: completes a task the session does not hold.
                6 => {
                    let itt = pool_itt(r.u8());
                    let outcome = Self::outcome(r);
                    if self.task(itt).is_none() {
                        let reply = self.s.complete(itt, outcome);
                        assert!(reply.is_none(), "reply for unknown task {itt:?}: {reply:?}");
                        self.assert_no_events("complete() of an unknown task");
                    }
                }
                // Misbehaving engine: data_complete where no Get_Data is outstanding.
                _ => {
                    let b = r.u8();
                    let idle: Vec<Itt> = self
                        .tasks
                        .iter()
                        .filter(|t| t.fetching.is_empty())
                        .map(|t| t.itt)
                        .collect();
                    let itt = if b & 0x80 != 0 && !idle.is_empty() {
                        idle[usize::from(b & 0x7f) % idle.len()]
                    } else {
                        pool_itt(b)
                    };
                    if self.task(itt).is_none_or(|t| t.fetching.is_empty()) {
                        self.s.data_complete(itt);
                        self.assert_no_events("data_complete() without Get_Data");
                    }
                }
            }
        }

        fn op_control(&mut self, sub: u8, r: &mut Reader) {
            match sub % 4 {
                0 => self.s.request_logout(r.u16()),
                1 => {
                    let b = r.u8();
                    let l = (b & 1 != 0).then(|| lun(b >> 1));
                    for itt in self.s.abort_for_reset(l) {
                        assert!(
                            self.task(itt).is_some_and(|t| t.running),
                            "abort_for_reset() names {itt:?}, not a running task"
                        );
                        if !self.reset_aborted.contains(&itt) {
                            self.reset_aborted.push(itt);
                        }
                    }
                }
                2 => self.s.cold_reset(),
                _ => self.dropped = true,
            }
            self.drain();
        }
    }

    pub(super) fn run(data: &[u8]) {
        let mut r = Reader { data };
        let (c0, c1, c2) = (r.u8(), r.u8(), r.u8());
        let setup = setup(c0, c1, c2);
        let t0 = Instant::now();
        let mut ffp = login_phase(&setup, &mut r, t0);
        for _ in 0..MAX_OPS {
            if r.is_empty() {
                break;
            }
            ffp.op(&mut r);
        }
    }
}
