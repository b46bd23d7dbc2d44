//! The fuzz targets' seed corpora (`fuzz/corpus/TARGET/seed-*`) and crash regressions
//! (`fuzz/regressions/TARGET/*`) run through the fuzz target bodies on every `cargo test`.
//! Needs the `fuzzing` feature: `cargo test -p iscsi-proto --features fuzzing`.
//!
//! `cargo test -p iscsi-proto --features fuzzing --test fuzz_seeds -- --ignored` rewrites the
//! seeds from PDUs built here (our own traffic: a login, commands, data, every PDU type).
#![cfg(feature = "fuzzing")]

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use iscsi_proto::fuzzing;
use iscsi_proto::pdu::*;
use iscsi_proto::{CmdSn, DataSn, Itt, StatSn, Ttt};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

type Body = fn(&[u8]);

const TARGETS: &[(&str, Body)] = &[
    ("pdu_parse", fuzzing::pdu_parse),
    ("deframer", fuzzing::deframer_splits),
    ("text", fuzzing::text_negotiation),
    ("target_session", fuzzing::target_session),
    ("initiator_session", fuzzing::initiator_session),
    ("initiator_login", fuzzing::initiator_login),
];

#[test]
fn seeds_and_regressions_pass() {
    for (name, body) in TARGETS {
        fuzzing::run_seeds_and_regressions(name, body);
    }
}

fn sample_pdus() -> Vec<Pdu> {
    let mut cmd = ScsiCommand::with_cdb(&[0x2a, 0, 0, 0, 0, 8, 0, 0, 8, 0]).unwrap();
    cmd.write = true;
    cmd.itt = Itt(3);
    cmd.expected_data_len = 4096;
    cmd.cmd_sn = CmdSn(9);
    cmd.data = Bytes::from(vec![0xab; 1000]);
    let mut long = cmd.clone();
    long.extended_cdb = Some(Bytes::from_static(&[
        1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    ]));
    long.bidi_read_len = Some(512);
    long.read = true;
    vec![
        LoginRequest {
            transit: true,
            csg: Stage::Operational,
            nsg: Stage::FullFeature,
            isid: Isid::random(0x00ab_cdef, 1),
            cmd_sn: CmdSn(1),
            data: Bytes::from_static(
                b"InitiatorName=iqn.2026-11.rs.iscsi:seed\0TargetName=iqn.2026-11.rs.iscsi:t\0SessionType=Normal\0HeaderDigest=CRC32C,None\0MaxBurstLength=262144\0",
            ),
            ..Default::default()
        }
        .into(),
        LoginResponse {
            transit: true,
            csg: Stage::Operational,
            nsg: Stage::FullFeature,
            tsih: Tsih(7),
            status: LoginStatus::SUCCESS,
            data: Bytes::from_static(b"HeaderDigest=None\0MaxBurstLength=262144\0"),
            ..Default::default()
        }
        .into(),
        cmd.into(),
        long.into(),
        DataOut { final_: true, itt: Itt(3), ttt: Ttt(5), data_sn: DataSn(0), buffer_offset: 1000, data: Bytes::from(vec![1u8; 301]), ..Default::default() }.into(),
        DataIn { final_: true, status: Some(ScsiStatus::GOOD), itt: Itt(4), data: Bytes::from(vec![2u8; 512]), ..Default::default() }.into(),
        R2t { itt: Itt(3), ttt: Ttt(5), buffer_offset: 1000, desired_len: 3096, ..Default::default() }.into(),
        ScsiResponse { status: ScsiStatus::CHECK_CONDITION, itt: Itt(3), data: ScsiResponse::sense_segment(&[0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x21, 0]), ..Default::default() }.into(),
        NopOut { itt: Itt::RESERVED, ttt: Ttt(9), ..Default::default() }.into(),
        NopIn { itt: Itt::RESERVED, ttt: Ttt(9), stat_sn: StatSn(4), data: Bytes::from_static(b"ping"), ..Default::default() }.into(),
        TaskMgmtRequest { function: TaskMgmtFunction::ABORT_TASK, referenced_task_tag: Itt(3), ..Default::default() }.into(),
        TaskMgmtResponse { response: TmfResponse::COMPLETE, ..Default::default() }.into(),
        TextRequest { final_: true, data: Bytes::from_static(b"SendTargets=All\0"), ..Default::default() }.into(),
        TextResponse { final_: true, data: Bytes::from_static(b"TargetName=iqn.2026-11.rs.iscsi:t\0TargetAddress=127.0.0.1:3260,1\0"), ..Default::default() }.into(),
        LogoutRequest { reason: LogoutReason::CloseSession, ..Default::default() }.into(),
        LogoutResponse { time2wait: 2, time2retain: 20, ..Default::default() }.into(),
        SnackRequest { kind: SnackType::Status, beg_run: 3, ..Default::default() }.into(),
        AsyncMessage { event: AsyncEvent::LOGOUT_REQUEST, parameter3: 10, ..Default::default() }.into(),
        Reject { reason: RejectReason::PROTOCOL_ERROR, data: Bytes::from(vec![0u8; 48]), ..Default::default() }.into(),
    ]
}

#[test]
#[ignore = "rewrites the committed fuzz seeds; run by hand"]
fn regenerate_seeds() {
    let write = |target: &str, name: String, data: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };
    let pdus = sample_pdus();
    for (mode, digests) in [
        (0u8, Digests::NONE),
        (
            3u8,
            Digests {
                header: true,
                data: true,
            },
        ),
    ] {
        let mut stream = BytesMut::new();
        for (i, p) in pdus.iter().enumerate() {
            let mut one = vec![mode];
            one.extend_from_slice(&p.to_bytes(digests).unwrap());
            write("pdu_parse", format!("{mode}-{i:02}"), &one);
            p.encode(&mut stream, digests).unwrap();
        }
        let mut d = vec![mode, 120, 3];
        d.extend_from_slice(&stream);
        write("deframer", format!("{mode}-stream"), &d);
    }
    for (i, p) in pdus.iter().enumerate() {
        if matches!(
            p,
            Pdu::LoginRequest(_)
                | Pdu::LoginResponse(_)
                | Pdu::TextRequest(_)
                | Pdu::TextResponse(_)
        ) {
            let mut t = vec![i as u8];
            t.extend_from_slice(p.data());
            write("text", format!("{i:02}"), &t);
        }
    }
    for (i, (name, data)) in target_session_seeds().iter().enumerate() {
        write("target_session", format!("{i:02}-{name}"), data);
    }
    // initiator_login: logins answered by the real target (no CHAP, CHAP, mutual CHAP, the
    // wrong target secret, discovery, a target requiring CHAP, every algorithm list), one
    // with a corrupted answer, one with free-form answers.
    for c in [0u8, 1, 2, 3, 4, 8, 9, 10, 0x19, 0x2a, 0x3a, 0x0b] {
        let mut d = vec![c];
        d.extend(std::iter::repeat_n(2u8, 8));
        write("initiator_login", format!("{c:02x}-real-target"), &d);
    }
    write(
        "initiator_login",
        "0a-corrupted".into(),
        &[0x0a, 2, 3, 0, 9, 0x20, 2, 2, 2],
    );
    let mut free = vec![0u8, 1, 0x81, 0, 0, 1, 14];
    free.extend_from_slice(b"AuthMethod=None\0");
    free.extend_from_slice(&[1, 0x87, 0, 0, 1, 0]);
    write("initiator_login", "00-free-form".into(), &free);
}

/// Builds `target_session` inputs, operation by operation (the format is documented on
/// `iscsi_proto::fuzzing::target_session`). New tags are fresh: the first task is 0x1000.
struct TsSeed(Vec<u8>);

impl TsSeed {
    /// The three configuration bytes.
    fn new(c0: u8, c1: u8, c2: u8) -> TsSeed {
        TsSeed(vec![c0, c1, c2])
    }

    fn op(mut self, bytes: &[u8]) -> TsSeed {
        self.0.extend_from_slice(bytes);
        self
    }

    /// `n` requests of a correct initiator (2 for AuthMethod=None: security, operational).
    fn login(mut self, n: usize) -> TsSeed {
        self.0.extend(std::iter::repeat_n(2u8, n));
        self
    }

    /// A raw PDU (flags: bit 0 keep its lengths, bit 2 write correct digests).
    fn raw(self, flags: u8, pdu: &[u8]) -> TsSeed {
        self.op(&[0x00, flags]).op(pdu)
    }

    /// READ(10) of `edtl64` * 64 bytes.
    fn read(self, edtl64: u8) -> TsSeed {
        self.op(&[0x01, 0, 0, edtl64, 0])
    }

    /// WRITE(10) of `edtl64` * 64 bytes with `imm16` * 16 bytes of immediate data; `final_`
    /// false announces unsolicited Data-Out.
    fn write(self, edtl64: u8, imm16: u8, final_: bool) -> TsSeed {
        self.op(&[0x09, 0, 0, edtl64, imm16, if final_ { 0 } else { 2 }])
    }

    /// The rest of the unsolicited data of the first task waiting for it.
    fn next_data(self) -> TsSeed {
        self.op(&[0x11, 0, 0, 0])
    }

    /// A NOP-Out asking for an answer with 32 bytes of data.
    fn nop(self) -> TsSeed {
        self.op(&[0x21, 0, 0, 0, 4])
    }

    /// The answer to the target's last NOP-In ping.
    fn nop_answer(self) -> TsSeed {
        self.op(&[0x21, 3, 0, 0, 0])
    }

    /// An immediate task management request; `sent`: the referenced task is the `sent`-th
    /// SCSI command sent (with its CmdSN and LUN), otherwise a fresh tag on LUN 0.
    fn tmf(self, function: u8, sent: Option<u8>) -> TsSeed {
        match sent {
            Some(i) => self.op(&[0x29, function, i, 0, 1]),
            None => self.op(&[0x29, function, 0, 0, 0]),
        }
    }

    /// A Text request: 0 SendTargets=All, 1 SendTargets=, 2 SendTargets=<target>, 4 unknown
    /// keys, 6 the first piece of a C-bit request.
    fn text(self, which: u8) -> TsSeed {
        self.op(&[0x31, which, 0, 0])
    }

    /// The next Text request of the exchange the target gave a TTT (`all`: carrying "All").
    fn text_continue(self, all: bool) -> TsSeed {
        self.op(&[0x31, 5, if all { 2 } else { 0 }])
    }

    /// An immediate Logout request closing the session.
    fn logout(self) -> TsSeed {
        self.op(&[0x39, 0])
    }

    /// The engine completes the oldest running task: GOOD, `len` bytes of data-in.
    fn complete(self, len: u16) -> TsSeed {
        let l = len.to_be_bytes();
        self.op(&[0x04, 0, l[0], l[1], l[0], l[1]])
    }

    /// The datamover fetched the data of the first outstanding Get_Data.
    fn data_complete(self) -> TsSeed {
        self.op(&[0x14, 0])
    }

    /// The engine answers the oldest task management request: function complete.
    fn tmf_done(self) -> TsSeed {
        self.op(&[0x24, 0])
    }

    /// The engine answers the oldest SendTargets query with `n` targets.
    fn send_targets_reply(self, n: u8) -> TsSeed {
        self.op(&[0x2c, n])
    }

    /// Virtual time advances by `secs`, then timers run.
    fn tick(self, secs: u8) -> TsSeed {
        self.op(&[0x06, secs])
    }
}

/// `target_session` seeds: logins (None, CHAP, mutual CHAP, free-form and raw requests, a
/// refused one), then reads, writes with R2T and with unsolicited data, task management,
/// SendTargets, NOP keep-alive, digests, raw PDUs and logout.
fn target_session_seeds() -> Vec<(&'static str, Vec<u8>)> {
    // Configuration byte 0: 0x30 = queue depth 32, AuthMethod None, normal session.
    const NORMAL: u8 = 0x30;
    let nop_out = |itt: u32, digests: Digests| {
        Pdu::from(NopOut {
            immediate: true,
            itt: Itt(itt),
            ttt: Ttt::RESERVED,
            data: Bytes::from_static(b"ping"),
            ..Default::default()
        })
        .to_bytes(digests)
        .unwrap()
    };
    let login_request = LoginRequest {
        transit: true,
        csg: Stage::Security,
        nsg: Stage::Operational,
        isid: Isid([0x80, 0x12, 0x34, 0x56, 0x00, 0x01]),
        itt: Itt(0x4c4f_4731),
        cid: 1,
        cmd_sn: CmdSn(0xffff_fffe),
        data: Bytes::from_static(
            b"InitiatorName=iqn.2026-11.rs.iscsi:initiator\0SessionType=Normal\0TargetName=iqn.2026-11.rs.iscsi:target\0AuthMethod=None\0",
        ),
        ..Default::default()
    };
    let login_request = Pdu::from(login_request).to_bytes(Digests::NONE).unwrap();
    let both = Digests {
        header: true,
        data: true,
    };
    let data_out = |data_sn: u32, offset: u32, len: usize, final_: bool| -> Vec<u8> {
        let pdu = Pdu::from(DataOut {
            final_,
            itt: Itt(0x1000),
            ttt: Ttt::RESERVED,
            data_sn: DataSn(data_sn),
            buffer_offset: offset,
            data: Bytes::from(vec![0x5a; len]),
            ..Default::default()
        });
        pdu.to_bytes(both).unwrap().to_vec()
    };
    // The same with its data digest spoiled.
    let mut bad_data_out = data_out(0, 512, 512, false);
    *bad_data_out.last_mut().unwrap() ^= 0xff;
    vec![
        (
            "login-read",
            TsSeed::new(NORMAL, 0, 0).login(2).read(64).complete(4096).0,
        ),
        (
            "write-r2t",
            TsSeed::new(NORMAL, 0, 0)
                .login(2)
                .write(128, 0, true)
                .data_complete()
                .complete(8192)
                .0,
        ),
        (
            "write-unsolicited",
            TsSeed::new(NORMAL, 0, 0)
                .login(2)
                .write(64, 32, false)
                .next_data()
                .complete(4096)
                .0,
        ),
        (
            "tmf",
            TsSeed::new(NORMAL, 0, 0)
                .login(2)
                .read(64)
                .tmf(1, Some(0))
                .complete(0)
                .tmf_done()
                .write(128, 0, true)
                .tmf(5, None)
                .tmf_done()
                .0,
        ),
        (
            "text-send-targets",
            TsSeed::new(NORMAL, 0, 0)
                .login(2)
                .text(0)
                .send_targets_reply(3)
                .text(4)
                .text(6)
                .text_continue(true)
                .send_targets_reply(1)
                .0,
        ),
        (
            "logout",
            TsSeed::new(NORMAL, 0, 0)
                .login(2)
                .read(64)
                .logout()
                .complete(4096)
                .0,
        ),
        (
            "chap",
            TsSeed::new(NORMAL | 1, 0, 0)
                .login(4)
                .nop()
                .read(8)
                .complete(512)
                .0,
        ),
        (
            "chap-mutual",
            TsSeed::new(NORMAL | 3, 0, 0).login(5).nop().logout().0,
        ),
        (
            "discovery",
            TsSeed::new(NORMAL | 4, 0, 0x40)
                .login(2)
                .text(0)
                .send_targets_reply(40)
                .text_continue(false)
                .text_continue(false)
                .logout()
                .0,
        ),
        (
            "nop-timeout",
            TsSeed::new(NORMAL | 8, 0, 0)
                .login(2)
                .tick(31)
                .nop_answer()
                .tick(31)
                .tick(11)
                .0,
        ),
        (
            "login-free-form",
            // Security stage, T=1 to operational: InitiatorName, TargetName, AuthMethod=None.
            TsSeed::new(NORMAL, 0, 0)
                .op(&[0x01, 0x14, 3, 0, 1, 6])
                .login(1)
                .read(1)
                .complete(64)
                .0,
        ),
        (
            "login-raw",
            TsSeed::new(NORMAL, 0, 0)
                .raw(1, &login_request)
                .login(1)
                .raw(1, &nop_out(7, Digests::NONE))
                .0,
        ),
        (
            "login-refused",
            TsSeed::new(NORMAL | 0x80, 0, 0)
                .login(1)
                .read(64)
                .complete(4096)
                .0,
        ),
        (
            "digests",
            // Header and data digests; an unsolicited Data-Out with a bad data digest, then
            // the rest of the burst: the task ends with a CRC error.
            TsSeed::new(NORMAL, 0, 3)
                .login(2)
                .raw(5, &nop_out(7, both))
                .write(64, 32, false)
                .raw(1, &bad_data_out)
                .raw(5, &data_out(1, 1024, 3072, true))
                .0,
        ),
    ]
}
