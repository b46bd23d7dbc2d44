//! `iscsi-decode`: decode a raw iSCSI byte stream (one direction of a TCP connection, such as
//! Wireshark's "Follow TCP stream → Save as raw") into PDUs, and show a login negotiation.
//!
//! ```text
//! cargo run -p iscsi-examples --bin iscsi-decode -- --demo
//! cargo run -p iscsi-examples --bin iscsi-decode -- capture.bin --header-digest
//! ```
//!
//! This is the runnable face of `iscsi-proto` until the target and initiator examples land.

use std::io::Read;
use std::process::ExitCode;

use bytes::{Bytes, BytesMut};
use clap::Parser;
use iscsi_proto::pdu::{
    DataIn, Digests, Isid, LoginRequest, LoginResponse, LoginStatus, Lun, ScsiCommand, ScsiStatus,
    Stage,
};
use iscsi_proto::text::{
    LocalConfig, Negotiator, Role, SessionType, Stage as TextStage, encode_text,
};
use iscsi_proto::{CmdSn, Deframer, DeframerConfig, Itt, Pdu, StatSn};

/// Decode a raw iSCSI byte stream into PDUs.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// File holding the raw stream ("-" for standard input). Omit with --demo.
    file: Option<String>,
    /// The stream carries CRC32C header digests.
    #[arg(long)]
    header_digest: bool,
    /// The stream carries CRC32C data digests.
    #[arg(long)]
    data_digest: bool,
    /// Refuse data segments longer than this (MaxRecvDataSegmentLength).
    #[arg(long, default_value_t = 262_144)]
    max_recv: u32,
    /// Negotiate a login between an initiator and a target in memory, then decode the PDUs.
    #[arg(long)]
    demo: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let digests = Digests {
        header: args.header_digest,
        data: args.data_digest,
    };
    let stream = if args.demo {
        match demo_stream(digests) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("iscsi-decode: demo failed: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        match read_input(args.file.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("iscsi-decode: {e}");
                return ExitCode::from(2);
            }
        }
    };
    decode(&stream, digests, args.max_recv)
}

fn read_input(file: Option<&str>) -> Result<Vec<u8>, String> {
    match file {
        None => Err("give a FILE (or - for stdin), or --demo; see --help".into()),
        Some("-") => {
            let mut v = Vec::new();
            std::io::stdin()
                .read_to_end(&mut v)
                .map_err(|e| format!("reading stdin: {e}"))?;
            Ok(v)
        }
        Some(path) => std::fs::read(path).map_err(|e| format!("reading {path}: {e}")),
    }
}

/// Feeds the stream to a deframer in TCP-sized pieces and prints every PDU.
fn decode(stream: &[u8], digests: Digests, max_recv: u32) -> ExitCode {
    let mut deframer = Deframer::new(DeframerConfig {
        digests,
        max_data_segment_len: max_recv,
    });
    let (mut ok, mut bad) = (0usize, 0usize);
    for chunk in stream.chunks(1448) {
        deframer.feed(chunk);
        loop {
            match deframer.next_frame() {
                Ok(Some(frame)) => match Pdu::from_frame(&frame) {
                    Ok(pdu) => {
                        ok += 1;
                        print_pdu(&pdu);
                    }
                    Err(e) => {
                        bad += 1;
                        println!("!! {e} -> answer with Reject {:?}", e.reject_reason());
                    }
                },
                Ok(None) => break,
                Err(e) => {
                    bad += 1;
                    println!("!! {e}");
                    if e.is_fatal() {
                        println!("!! stream cannot continue");
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    }
    if deframer.buffered() > 0 {
        println!(
            "!! {} trailing bytes (an incomplete PDU)",
            deframer.buffered()
        );
    }
    println!("{ok} PDUs decoded, {bad} errors");
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn print_pdu(pdu: &Pdu) {
    let name = pdu.opcode().name().unwrap_or("?");
    println!("{name} ({} data bytes)", pdu.data().len());
    match pdu {
        Pdu::LoginRequest(LoginRequest { data, .. })
        | Pdu::LoginResponse(LoginResponse { data, .. }) => {
            for kv in data.split(|b| *b == 0).filter(|kv| !kv.is_empty()) {
                println!("    {}", String::from_utf8_lossy(kv));
            }
        }
        other => println!("    {other:?}"),
    }
}

/// Runs a login negotiation between an initiator and a target `Negotiator` in memory, then builds
/// the PDUs a real exchange would carry (the login, a READ(10) and its Data-In with status) as one
/// stream.
fn demo_stream(digests: Digests) -> Result<Vec<u8>, String> {
    let target_name = "iqn.2026-11.rs.iscsi:demo";
    let mut initiator = Negotiator::new(
        Role::Initiator,
        LocalConfig {
            initiator_name: Some("iqn.2026-11.rs.iscsi:client".into()),
            target_name: Some(target_name.into()),
            max_recv_data_segment_length: 262_144,
            initial_r2t: false,
            ..LocalConfig::default()
        },
        SessionType::Normal,
        true,
        false,
    );
    let mut target = Negotiator::new(
        Role::Target,
        LocalConfig {
            target_portal_group_tag: Some(1),
            max_recv_data_segment_length: 65_536,
            ..LocalConfig::default()
        },
        SessionType::Normal,
        true,
        false,
    );
    initiator.set_stage(TextStage::Operational);
    target.set_stage(TextStage::Operational);
    // One request and one response carry the whole operational negotiation here.
    let offer = initiator.offer();
    let mut answer = target.handle(&offer).map_err(|e| e.to_string())?.responses;
    answer.extend(target.offer());
    let back = initiator.handle(&answer).map_err(|e| e.to_string())?;
    if !back.responses.is_empty() || !initiator.is_complete() {
        return Err("negotiation needed more than one round trip".into());
    }
    let params = initiator.result();
    println!(
        "negotiated: MaxBurstLength={} FirstBurstLength={} InitialR2T={} ImmediateData={} \
         initiator MaxRecvDataSegmentLength={} target MaxRecvDataSegmentLength={}",
        params.max_burst_length,
        params.first_burst_length,
        params.initial_r2t,
        params.immediate_data,
        params.max_recv_data_segment_length(Role::Initiator),
        params.max_recv_data_segment_length(Role::Target),
    );

    let isid = Isid::random(0x12_3456, 1);
    let mut out = BytesMut::new();
    let login = |pdu: Pdu, out: &mut BytesMut| pdu.encode(out, digests);
    login(
        LoginRequest {
            transit: true,
            csg: Stage::Operational,
            nsg: Stage::FullFeature,
            isid,
            itt: Itt(0),
            cmd_sn: CmdSn(1),
            data: encode_text(&offer).map_err(|e| e.to_string())?.freeze(),
            ..Default::default()
        }
        .into(),
        &mut out,
    )
    .map_err(|e| e.to_string())?;
    login(
        LoginResponse {
            transit: true,
            csg: Stage::Operational,
            nsg: Stage::FullFeature,
            isid,
            tsih: iscsi_proto::pdu::Tsih(1),
            itt: Itt(0),
            stat_sn: StatSn(0),
            exp_cmd_sn: CmdSn(1),
            max_cmd_sn: CmdSn(32),
            status: LoginStatus::SUCCESS,
            data: encode_text(&answer).map_err(|e| e.to_string())?.freeze(),
            ..Default::default()
        }
        .into(),
        &mut out,
    )
    .map_err(|e| e.to_string())?;
    let mut read = ScsiCommand::with_cdb(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0])
        .ok_or("CDB longer than 16 bytes")?;
    read.read = true;
    read.lun = Lun::from_index(0).ok_or("bad LUN")?;
    read.itt = Itt(1);
    read.expected_data_len = 512;
    read.cmd_sn = CmdSn(1);
    read.exp_stat_sn = StatSn(1);
    Pdu::from(read)
        .encode(&mut out, digests)
        .map_err(|e| e.to_string())?;
    Pdu::from(DataIn {
        final_: true,
        status: Some(ScsiStatus::GOOD),
        itt: Itt(1),
        stat_sn: StatSn(1),
        exp_cmd_sn: CmdSn(2),
        max_cmd_sn: CmdSn(33),
        data: Bytes::from(vec![0u8; 512]),
        ..Default::default()
    })
    .encode(&mut out, digests)
    .map_err(|e| e.to_string())?;
    Ok(out.to_vec())
}
