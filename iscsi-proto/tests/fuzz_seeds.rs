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
];

fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn seeds_and_regressions_pass() {
    for (name, body) in TARGETS {
        let seeds: Vec<_> = inputs(&fuzz_dir().join("corpus").join(name))
            .into_iter()
            .filter(|(p, _)| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
            })
            .collect();
        assert!(!seeds.is_empty(), "no seeds for fuzz target {name}");
        for (path, data) in seeds
            .iter()
            .chain(inputs(&fuzz_dir().join("regressions").join(name)).iter())
        {
            eprintln!("{name}: {}", path.display());
            body(data);
        }
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
}
