//! Hand-built PDU byte vectors from the field tables of RFC 7143 §11, one or more per PDU type.
//!
//! Every Basic Header Segment is written out literally, with a distinct recognizable value in
//! every field. Each vector is parsed and checked field by field (a full struct literal, so that
//! no field is forgotten), and the typed value must encode back to exactly the same bytes.
//!
//! Recurring values: LUN 01 02 03 04 05 06 07 08, ITT 11223344, TTT 55667788, CmdSN 0a0b0c0d,
//! ExpStatSN 1a1b1c1d, StatSN 2a2b2c2d, ExpCmdSN 3a3b3c3d, MaxCmdSN 4a4b4c4d, DataSN 5a5b5c5d,
//! Buffer Offset 6a6b6c6d, Residual Count 7a7b7c7d.

use bytes::{Bytes, BytesMut};
use iscsi_proto::digest::crc32c;
use iscsi_proto::pdu::{
    AsyncEvent, AsyncMessage, Bhs, DataIn, DataOut, Digests, EncodeError, Isid, LoginRequest,
    LoginResponse, LoginStatus, LogoutReason, LogoutRequest, LogoutResponse, LogoutResponseCode,
    Lun, NopIn, NopOut, Opcode, R2t, Reject, ScsiCommand, ScsiResponse, ScsiStatus,
    ServiceResponse, SnackRequest, SnackType, Stage, TaskAttribute, TaskMgmtFunction,
    TaskMgmtRequest, TaskMgmtResponse, TextRequest, TextResponse, TmfResponse, Tsih,
};
use iscsi_proto::{
    CmdSn, DataSn, Deframer, DeframerConfig, Itt, Pdu, PduError, R2tSn, RejectReason, StatSn, Ttt,
};

const NONE: Digests = Digests::NONE;
const HEADER: Digests = Digests {
    header: true,
    data: false,
};
const DATA: Digests = Digests {
    header: false,
    data: true,
};
const BOTH: Digests = Digests {
    header: true,
    data: true,
};

const LUN: Lun = Lun(0x0102_0304_0506_0708);
const ITT: Itt = Itt(0x1122_3344);
const TTT: Ttt = Ttt(0x5566_7788);
const CMD_SN: CmdSn = CmdSn(0x0a0b_0c0d);
const EXP_STAT_SN: StatSn = StatSn(0x1a1b_1c1d);
const STAT_SN: StatSn = StatSn(0x2a2b_2c2d);
const EXP_CMD_SN: CmdSn = CmdSn(0x3a3b_3c3d);
const MAX_CMD_SN: CmdSn = CmdSn(0x4a4b_4c4d);
const DATA_SN: DataSn = DataSn(0x5a5b_5c5d);
const BUFFER_OFFSET: u32 = 0x6a6b_6c6d;
const RESIDUAL: u32 = 0x7a7b_7c7d;
const ISID: Isid = Isid([0x80, 0x12, 0x34, 0x56, 0x78, 0x9a]);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn cat(parts: &[&[u8]]) -> Bytes {
    Bytes::from(parts.concat())
}

/// The RFC 7143 wire form of a CRC32C: the bytes of Appendix B.4 (32 zero bytes give aa 36 91 8a
/// for the value 0x8a9136aa), i.e. least significant byte first.
fn digest_bytes(covered: &[u8]) -> [u8; 4] {
    crc32c(covered).to_le_bytes()
}

/// Parses `wire` (which must be exactly one PDU) and checks it against `expected`, then checks
/// that `expected` encodes to exactly `wire`, that trailing bytes are not consumed, and that the
/// deframer yields the same PDU.
fn check_vector(wire: &Bytes, digests: Digests, expected: &Pdu) {
    let (pdu, used) = Pdu::parse(wire, digests).expect("vector parses");
    assert_eq!(&pdu, expected);
    assert_eq!(used, wire.len(), "consumed length");
    assert_eq!(expected.wire_len(digests), wire.len(), "wire_len");
    let encoded = expected.to_bytes(digests).expect("vector encodes");
    assert_eq!(encoded, wire, "encoding differs from the vector");

    let mut longer = BytesMut::from(&wire[..]);
    longer.extend_from_slice(&[0xee; 52]);
    let (again, used) = Pdu::parse(&longer.freeze(), digests).expect("parses with trailing bytes");
    assert_eq!(&again, expected);
    assert_eq!(used, wire.len());

    let mut d = Deframer::new(DeframerConfig {
        digests,
        max_data_segment_len: 8192,
    });
    d.feed(wire);
    let frame = d.next_frame().expect("deframes").expect("a whole PDU");
    assert_eq!(frame.wire_len(), wire.len());
    assert_eq!(&Pdu::from_frame(&frame).expect("frame decodes"), expected);
    assert_eq!(d.buffered(), 0);
}

fn parse_err(wire: &Bytes, digests: Digests) -> PduError {
    match Pdu::parse(wire, digests) {
        Ok((pdu, _)) => panic!("expected an error, parsed {pdu:?}"),
        Err(e) => e,
    }
}

fn invalid(opcode: Opcode, field: &'static str, offset: usize, value: u32) -> PduError {
    PduError::InvalidField {
        opcode,
        field,
        offset,
        value,
    }
}

fn assert_reject(e: &PduError, reason: RejectReason) {
    assert_eq!(e.reject_reason(), Some(reason), "reject reason of {e:?}");
}

// ---------------------------------------------------------------------------------------------
// The vectors (BHS only; data segments are appended by each test)
// ---------------------------------------------------------------------------------------------

/// NOP-Out (§11.18): immediate, 5 bytes of ping data.
#[rustfmt::skip]
const NOP_OUT: [u8; 48] = [
    0x40, 0x80, 0x00, 0x00,                         // I | 0x00; F; reserved
    0x00, 0x00, 0x00, 0x05,                         // TotalAHSLength 0; DataSegmentLength 5
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // LUN
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x55, 0x66, 0x77, 0x88,                         // TTT
    0x0a, 0x0b, 0x0c, 0x0d,                         // CmdSN
    0x1a, 0x1b, 0x1c, 0x1d,                         // ExpStatSN
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
];

/// NOP-In (§11.19): a target ping (ITT reserved, TTT set), no data.
#[rustfmt::skip]
const NOP_IN: [u8; 48] = [
    0x20, 0x80, 0x00, 0x00,                         // 0x20; F; reserved
    0x00, 0x00, 0x00, 0x00,                         // no AHS, no data
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // LUN
    0xff, 0xff, 0xff, 0xff,                         // ITT reserved
    0x55, 0x66, 0x77, 0x88,                         // TTT
    0x2a, 0x2b, 0x2c, 0x2d,                         // StatSN
    0x3a, 0x3b, 0x3c, 0x3d,                         // ExpCmdSN
    0x4a, 0x4b, 0x4c, 0x4d,                         // MaxCmdSN
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0x00, 0x00, 0x00, 0x00,                         // reserved
];

/// SCSI Command (§11.3): immediate, F + W, ATTR ordered, 16-byte CDB, 8 bytes immediate data.
#[rustfmt::skip]
const SCSI_COMMAND: [u8; 48] = [
    0x41, 0xa2, 0x00, 0x00,                         // I | 0x01; F W ATTR=2; reserved
    0x00, 0x00, 0x00, 0x08,                         // no AHS; DataSegmentLength 8
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // LUN
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0xe1, 0xe2, 0xe3, 0xe4,                         // Expected Data Transfer Length
    0x0a, 0x0b, 0x0c, 0x0d,                         // CmdSN
    0x1a, 0x1b, 0x1c, 0x1d,                         // ExpStatSN
    0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, // CDB 0-7
    0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, // CDB 8-15
];

/// SCSI Command with AHS: F R W, ATTR head of queue, TotalAHSLength 7 (Extended CDB + bidi).
#[rustfmt::skip]
const SCSI_COMMAND_AHS: [u8; 48] = [
    0x01, 0xe3, 0x00, 0x00,                         // 0x01; F R W ATTR=3; reserved
    0x07, 0x00, 0x00, 0x00,                         // TotalAHSLength 7 words; no data
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // LUN
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0xe1, 0xe2, 0xe3, 0xe4,                         // Expected Data Transfer Length
    0x0a, 0x0b, 0x0c, 0x0d,                         // CmdSN
    0x1a, 0x1b, 0x1c, 0x1d,                         // ExpStatSN
    0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, // CDB 0-7
    0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf, // CDB 8-15
];

/// Extended CDB AHS for a 32-byte CDB (bytes 16-31) then Bidirectional Read Length AHS.
#[rustfmt::skip]
const AHS_EXT_CDB_AND_BIDI: [u8; 28] = [
    0x00, 0x11, 0x01, 0x00,                         // AHSLength 17; type 1; reserved
    0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, // CDB 16-23
    0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, // CDB 24-31
    0x00, 0x05, 0x02, 0x00,                         // AHSLength 5; type 2; reserved
    0xb1, 0xb2, 0xb3, 0xb4,                         // Bidirectional Read Expected Data Transfer Length
];

/// SCSI Response (§11.4): o and U set, completed with CHECK CONDITION, 20 bytes of sense segment.
#[rustfmt::skip]
const SCSI_RESPONSE: [u8; 48] = [
    0x21, 0x92, 0x00, 0x02,                         // 0x21; F o U; Response 0; Status 0x02
    0x00, 0x00, 0x00, 0x14,                         // no AHS; DataSegmentLength 20
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x9a, 0x9b, 0x9c, 0x9d,                         // SNACK Tag
    0x2a, 0x2b, 0x2c, 0x2d,                         // StatSN
    0x3a, 0x3b, 0x3c, 0x3d,                         // ExpCmdSN
    0x4a, 0x4b, 0x4c, 0x4d,                         // MaxCmdSN
    0x5a, 0x5b, 0x5c, 0x5d,                         // ExpDataSN
    0x8a, 0x8b, 0x8c, 0x8d,                         // Bidirectional Read Residual Count
    0x7a, 0x7b, 0x7c, 0x7d,                         // Residual Count
];

/// SenseLength 18 + fixed-format sense data (ILLEGAL REQUEST, ASC 0x24).
#[rustfmt::skip]
const SENSE_SEGMENT: [u8; 20] = [
    0x00, 0x12,
    0x70, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x0a, 0x00, 0x00,
    0x00, 0x00, 0x24, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// Task Management Function Request (§11.5): immediate ABORT TASK.
#[rustfmt::skip]
const TMF_REQUEST: [u8; 48] = [
    0x42, 0x81, 0x00, 0x00,                         // I | 0x02; 1 + function 1; reserved
    0x00, 0x00, 0x00, 0x00,                         // no AHS, no data
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // LUN
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x99, 0xaa, 0xbb, 0xcc,                         // Referenced Task Tag
    0x0a, 0x0b, 0x0c, 0x0d,                         // CmdSN
    0x1a, 0x1b, 0x1c, 0x1d,                         // ExpStatSN
    0x8a, 0x8b, 0x8c, 0x8d,                         // RefCmdSN
    0x5a, 0x5b, 0x5c, 0x5d,                         // ExpDataSN
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
];

/// Task Management Function Response (§11.6): function not supported (5).
#[rustfmt::skip]
const TMF_RESPONSE: [u8; 48] = [
    0x22, 0x80, 0x05, 0x00,                         // 0x22; 1; Response 5; reserved
    0x00, 0x00, 0x00, 0x00,                         // no AHS, no data
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x00, 0x00, 0x00, 0x00,                         // reserved
    0x2a, 0x2b, 0x2c, 0x2d,                         // StatSN
    0x3a, 0x3b, 0x3c, 0x3d,                         // ExpCmdSN
    0x4a, 0x4b, 0x4c, 0x4d,                         // MaxCmdSN
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0x00, 0x00, 0x00, 0x00,                         // reserved
];

/// Login Request (§11.12): T, CSG 1, NSG 3, Version-max 2, Version-min 1, 18 bytes of text.
#[rustfmt::skip]
const LOGIN_REQUEST: [u8; 48] = [
    0x43, 0x87, 0x02, 0x01,                         // I | 0x03; T CSG=1 NSG=3; max; min
    0x00, 0x00, 0x00, 0x12,                         // no AHS; DataSegmentLength 18
    0x80, 0x12, 0x34, 0x56, 0x78, 0x9a,             // ISID (T=2 random, A, B, C, D)
    0xbe, 0xef,                                     // TSIH
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x43, 0x21, 0x00, 0x00,                         // CID; reserved
    0x0a, 0x0b, 0x0c, 0x0d,                         // CmdSN
    0x1a, 0x1b, 0x1c, 0x1d,                         // ExpStatSN
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
];

const LOGIN_TEXT: &[u8; 18] = b"HeaderDigest=None\0";

/// Login Response (§11.13): T, CSG 0, NSG 1, status class 2 detail 1 (authentication failure).
#[rustfmt::skip]
const LOGIN_RESPONSE: [u8; 48] = [
    0x23, 0x81, 0x02, 0x01,                         // 0x23; T CSG=0 NSG=1; max; active
    0x00, 0x00, 0x00, 0x00,                         // no AHS, no data
    0x80, 0x12, 0x34, 0x56, 0x78, 0x9a,             // ISID
    0xbe, 0xef,                                     // TSIH
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x00, 0x00, 0x00, 0x00,                         // reserved
    0x2a, 0x2b, 0x2c, 0x2d,                         // StatSN
    0x3a, 0x3b, 0x3c, 0x3d,                         // ExpCmdSN
    0x4a, 0x4b, 0x4c, 0x4d,                         // MaxCmdSN
    0x02, 0x01, 0x00, 0x00,                         // Status-Class; Status-Detail; reserved
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
];

/// Text Request (§11.10): immediate, C set, TTT reserved, 16 bytes of text.
#[rustfmt::skip]
const TEXT_REQUEST: [u8; 48] = [
    0x44, 0x40, 0x00, 0x00,                         // I | 0x04; C; reserved
    0x00, 0x00, 0x00, 0x10,                         // no AHS; DataSegmentLength 16
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // LUN
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0xff, 0xff, 0xff, 0xff,                         // TTT reserved
    0x0a, 0x0b, 0x0c, 0x0d,                         // CmdSN
    0x1a, 0x1b, 0x1c, 0x1d,                         // ExpStatSN
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
];

const TEXT_REQUEST_TEXT: &[u8; 16] = b"SendTargets=All\0";

/// Text Response (§11.11): F set, 14 bytes of text (2 bytes padding).
#[rustfmt::skip]
const TEXT_RESPONSE: [u8; 48] = [
    0x24, 0x80, 0x00, 0x00,                         // 0x24; F; reserved
    0x00, 0x00, 0x00, 0x0e,                         // no AHS; DataSegmentLength 14
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // LUN
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x55, 0x66, 0x77, 0x88,                         // TTT
    0x2a, 0x2b, 0x2c, 0x2d,                         // StatSN
    0x3a, 0x3b, 0x3c, 0x3d,                         // ExpCmdSN
    0x4a, 0x4b, 0x4c, 0x4d,                         // MaxCmdSN
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0x00, 0x00, 0x00, 0x00,                         // reserved
];

const TEXT_RESPONSE_TEXT: &[u8; 14] = b"TargetName=t1\0";

/// SCSI Data-Out (§11.7): F set, 7 bytes of data (1 byte padding).
#[rustfmt::skip]
const DATA_OUT: [u8; 48] = [
    0x05, 0x80, 0x00, 0x00,                         // 0x05; F; reserved
    0x00, 0x00, 0x00, 0x07,                         // no AHS; DataSegmentLength 7
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // LUN
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x55, 0x66, 0x77, 0x88,                         // TTT
    0x00, 0x00, 0x00, 0x00,                         // reserved
    0x1a, 0x1b, 0x1c, 0x1d,                         // ExpStatSN
    0x00, 0x00, 0x00, 0x00,                         // reserved
    0x5a, 0x5b, 0x5c, 0x5d,                         // DataSN
    0x6a, 0x6b, 0x6c, 0x6d,                         // Buffer Offset
    0x00, 0x00, 0x00, 0x00,                         // reserved
];

/// SCSI Data-In (§11.8): F, U and S set, status TASK SET FULL in byte 3, 3 bytes of data.
#[rustfmt::skip]
const DATA_IN: [u8; 48] = [
    0x25, 0x83, 0x00, 0x28,                         // 0x25; F U S; reserved; Status
    0x00, 0x00, 0x00, 0x03,                         // no AHS; DataSegmentLength 3
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // LUN
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x55, 0x66, 0x77, 0x88,                         // TTT
    0x2a, 0x2b, 0x2c, 0x2d,                         // StatSN
    0x3a, 0x3b, 0x3c, 0x3d,                         // ExpCmdSN
    0x4a, 0x4b, 0x4c, 0x4d,                         // MaxCmdSN
    0x5a, 0x5b, 0x5c, 0x5d,                         // DataSN
    0x6a, 0x6b, 0x6c, 0x6d,                         // Buffer Offset
    0x7a, 0x7b, 0x7c, 0x7d,                         // Residual Count
];

/// SCSI Data-In without status: A and O set, byte 3 reserved, 4 bytes of data.
#[rustfmt::skip]
const DATA_IN_ACK: [u8; 48] = [
    0x25, 0x44, 0x00, 0x00,                         // 0x25; A O; reserved; reserved (no S)
    0x00, 0x00, 0x00, 0x04,                         // no AHS; DataSegmentLength 4
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // LUN
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x55, 0x66, 0x77, 0x88,                         // TTT
    0x2a, 0x2b, 0x2c, 0x2d,                         // StatSN
    0x3a, 0x3b, 0x3c, 0x3d,                         // ExpCmdSN
    0x4a, 0x4b, 0x4c, 0x4d,                         // MaxCmdSN
    0x5a, 0x5b, 0x5c, 0x5d,                         // DataSN
    0x6a, 0x6b, 0x6c, 0x6d,                         // Buffer Offset
    0x7a, 0x7b, 0x7c, 0x7d,                         // Residual Count
];

/// Logout Request (§11.14): immediate, reason 1 (close the connection), CID 0x4321.
#[rustfmt::skip]
const LOGOUT_REQUEST: [u8; 48] = [
    0x46, 0x81, 0x00, 0x00,                         // I | 0x06; 1 + reason 1; reserved
    0x00, 0x00, 0x00, 0x00,                         // no AHS, no data
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x43, 0x21, 0x00, 0x00,                         // CID; reserved
    0x0a, 0x0b, 0x0c, 0x0d,                         // CmdSN
    0x1a, 0x1b, 0x1c, 0x1d,                         // ExpStatSN
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
];

/// Logout Response (§11.15): response 2, Time2Wait 0x0102, Time2Retain 3600.
#[rustfmt::skip]
const LOGOUT_RESPONSE: [u8; 48] = [
    0x26, 0x80, 0x02, 0x00,                         // 0x26; 1; Response 2; reserved
    0x00, 0x00, 0x00, 0x00,                         // no AHS, no data
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x00, 0x00, 0x00, 0x00,                         // reserved
    0x2a, 0x2b, 0x2c, 0x2d,                         // StatSN
    0x3a, 0x3b, 0x3c, 0x3d,                         // ExpCmdSN
    0x4a, 0x4b, 0x4c, 0x4d,                         // MaxCmdSN
    0x00, 0x00, 0x00, 0x00,                         // reserved
    0x01, 0x02, 0x0e, 0x10,                         // Time2Wait; Time2Retain
    0x00, 0x00, 0x00, 0x00,                         // reserved
];

/// SNACK Request (§11.16): type 3 (R-Data SNACK).
#[rustfmt::skip]
const SNACK: [u8; 48] = [
    0x10, 0x83, 0x00, 0x00,                         // 0x10; 1 + type 3; reserved
    0x00, 0x00, 0x00, 0x00,                         // no AHS, no data
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // LUN
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x55, 0x66, 0x77, 0x88,                         // TTT / SNACK Tag
    0x00, 0x00, 0x00, 0x00,                         // reserved
    0x1a, 0x1b, 0x1c, 0x1d,                         // ExpStatSN
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0xa1, 0xa2, 0xa3, 0xa4,                         // BegRun
    0xb1, 0xb2, 0xb3, 0xb4,                         // RunLength
];

/// R2T (§11.8): Desired Data Transfer Length 0x40000.
#[rustfmt::skip]
const R2T: [u8; 48] = [
    0x31, 0x80, 0x00, 0x00,                         // 0x31; 1; reserved
    0x00, 0x00, 0x00, 0x00,                         // no AHS, no data
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // LUN
    0x11, 0x22, 0x33, 0x44,                         // ITT
    0x55, 0x66, 0x77, 0x88,                         // TTT
    0x2a, 0x2b, 0x2c, 0x2d,                         // StatSN
    0x3a, 0x3b, 0x3c, 0x3d,                         // ExpCmdSN
    0x4a, 0x4b, 0x4c, 0x4d,                         // MaxCmdSN
    0x9a, 0x9b, 0x9c, 0x9d,                         // R2TSN
    0x6a, 0x6b, 0x6c, 0x6d,                         // Buffer Offset
    0x00, 0x04, 0x00, 0x00,                         // Desired Data Transfer Length
];

/// Asynchronous Message (§11.9): event 1 (logout request), vcode 0x77, parameters.
#[rustfmt::skip]
const ASYNC_MESSAGE: [u8; 48] = [
    0x32, 0x80, 0x00, 0x00,                         // 0x32; 1; reserved
    0x00, 0x00, 0x00, 0x00,                         // no AHS, no data
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // LUN
    0xff, 0xff, 0xff, 0xff,                         // ITT 0xffffffff
    0x00, 0x00, 0x00, 0x00,                         // reserved
    0x2a, 0x2b, 0x2c, 0x2d,                         // StatSN
    0x3a, 0x3b, 0x3c, 0x3d,                         // ExpCmdSN
    0x4a, 0x4b, 0x4c, 0x4d,                         // MaxCmdSN
    0x01, 0x77, 0xa1, 0xa2,                         // AsyncEvent; AsyncVCode; Parameter1
    0xb1, 0xb2, 0xc1, 0xc2,                         // Parameter2; Parameter3
    0x00, 0x00, 0x00, 0x00,                         // reserved
];

/// Reject (§11.17): reason 0x09 (invalid PDU field); the data segment is the rejected SNACK BHS.
#[rustfmt::skip]
const REJECT: [u8; 48] = [
    0x3f, 0x80, 0x09, 0x00,                         // 0x3f; 1; Reason; reserved
    0x00, 0x00, 0x00, 0x30,                         // no AHS; DataSegmentLength 48
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
    0xff, 0xff, 0xff, 0xff,                         // 0xffffffff
    0x00, 0x00, 0x00, 0x00,                         // reserved
    0x2a, 0x2b, 0x2c, 0x2d,                         // StatSN
    0x3a, 0x3b, 0x3c, 0x3d,                         // ExpCmdSN
    0x4a, 0x4b, 0x4c, 0x4d,                         // MaxCmdSN
    0x5a, 0x5b, 0x5c, 0x5d,                         // DataSN/R2TSN
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
];

// ---------------------------------------------------------------------------------------------
// Expected typed values
// ---------------------------------------------------------------------------------------------

fn nop_out() -> NopOut {
    NopOut {
        immediate: true,
        lun: LUN,
        itt: ITT,
        ttt: TTT,
        cmd_sn: CMD_SN,
        exp_stat_sn: EXP_STAT_SN,
        data: Bytes::from_static(b"hello"),
    }
}

fn nop_in() -> NopIn {
    NopIn {
        lun: LUN,
        itt: Itt::RESERVED,
        ttt: TTT,
        stat_sn: STAT_SN,
        exp_cmd_sn: EXP_CMD_SN,
        max_cmd_sn: MAX_CMD_SN,
        data: Bytes::new(),
    }
}

const CDB: [u8; 16] = [
    0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,
];
const IMMEDIATE_DATA: [u8; 8] = [0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7];

fn scsi_command() -> ScsiCommand {
    ScsiCommand {
        immediate: true,
        final_: true,
        read: false,
        write: true,
        attr: TaskAttribute::Ordered,
        lun: LUN,
        itt: ITT,
        expected_data_len: 0xe1e2_e3e4,
        cmd_sn: CMD_SN,
        exp_stat_sn: EXP_STAT_SN,
        cdb: CDB,
        extended_cdb: None,
        bidi_read_len: None,
        data: Bytes::from_static(&IMMEDIATE_DATA),
    }
}

fn scsi_command_ahs() -> ScsiCommand {
    ScsiCommand {
        immediate: false,
        final_: true,
        read: true,
        write: true,
        attr: TaskAttribute::HeadOfQueue,
        lun: LUN,
        itt: ITT,
        expected_data_len: 0xe1e2_e3e4,
        cmd_sn: CMD_SN,
        exp_stat_sn: EXP_STAT_SN,
        cdb: CDB,
        extended_cdb: Some(Bytes::copy_from_slice(&AHS_EXT_CDB_AND_BIDI[4..20])),
        bidi_read_len: Some(0xb1b2_b3b4),
        data: Bytes::new(),
    }
}

fn scsi_response() -> ScsiResponse {
    ScsiResponse {
        bidi_overflow: true,
        bidi_underflow: false,
        overflow: false,
        underflow: true,
        response: ServiceResponse::COMPLETED,
        status: ScsiStatus::CHECK_CONDITION,
        itt: ITT,
        snack_tag: 0x9a9b_9c9d,
        stat_sn: STAT_SN,
        exp_cmd_sn: EXP_CMD_SN,
        max_cmd_sn: MAX_CMD_SN,
        exp_data_sn: DATA_SN,
        bidi_residual_count: 0x8a8b_8c8d,
        residual_count: RESIDUAL,
        data: Bytes::from_static(&SENSE_SEGMENT),
    }
}

fn tmf_request() -> TaskMgmtRequest {
    TaskMgmtRequest {
        immediate: true,
        function: TaskMgmtFunction::ABORT_TASK,
        lun: LUN,
        itt: ITT,
        referenced_task_tag: Itt(0x99aa_bbcc),
        cmd_sn: CMD_SN,
        exp_stat_sn: EXP_STAT_SN,
        ref_cmd_sn: CmdSn(0x8a8b_8c8d),
        exp_data_sn: DATA_SN,
    }
}

fn tmf_response() -> TaskMgmtResponse {
    TaskMgmtResponse {
        response: TmfResponse::NOT_SUPPORTED,
        itt: ITT,
        stat_sn: STAT_SN,
        exp_cmd_sn: EXP_CMD_SN,
        max_cmd_sn: MAX_CMD_SN,
    }
}

fn login_request() -> LoginRequest {
    LoginRequest {
        transit: true,
        cont: false,
        csg: Stage::Operational,
        nsg: Stage::FullFeature,
        version_max: 2,
        version_min: 1,
        isid: ISID,
        tsih: Tsih(0xbeef),
        itt: ITT,
        cid: 0x4321,
        cmd_sn: CMD_SN,
        exp_stat_sn: EXP_STAT_SN,
        data: Bytes::from_static(LOGIN_TEXT),
    }
}

fn login_response() -> LoginResponse {
    LoginResponse {
        transit: true,
        cont: false,
        csg: Stage::Security,
        nsg: Stage::Operational,
        version_max: 2,
        version_active: 1,
        isid: ISID,
        tsih: Tsih(0xbeef),
        itt: ITT,
        stat_sn: STAT_SN,
        exp_cmd_sn: EXP_CMD_SN,
        max_cmd_sn: MAX_CMD_SN,
        status: LoginStatus::AUTHENTICATION_FAILURE,
        data: Bytes::new(),
    }
}

fn text_request() -> TextRequest {
    TextRequest {
        immediate: true,
        final_: false,
        cont: true,
        lun: LUN,
        itt: ITT,
        ttt: Ttt::RESERVED,
        cmd_sn: CMD_SN,
        exp_stat_sn: EXP_STAT_SN,
        data: Bytes::from_static(TEXT_REQUEST_TEXT),
    }
}

fn text_response() -> TextResponse {
    TextResponse {
        final_: true,
        cont: false,
        lun: LUN,
        itt: ITT,
        ttt: TTT,
        stat_sn: STAT_SN,
        exp_cmd_sn: EXP_CMD_SN,
        max_cmd_sn: MAX_CMD_SN,
        data: Bytes::from_static(TEXT_RESPONSE_TEXT),
    }
}

fn data_out() -> DataOut {
    DataOut {
        final_: true,
        lun: LUN,
        itt: ITT,
        ttt: TTT,
        exp_stat_sn: EXP_STAT_SN,
        data_sn: DATA_SN,
        buffer_offset: BUFFER_OFFSET,
        data: Bytes::from_static(&[0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6]),
    }
}

fn data_in() -> DataIn {
    DataIn {
        final_: true,
        ack: false,
        overflow: false,
        underflow: true,
        status: Some(ScsiStatus::TASK_SET_FULL),
        lun: LUN,
        itt: ITT,
        ttt: TTT,
        stat_sn: STAT_SN,
        exp_cmd_sn: EXP_CMD_SN,
        max_cmd_sn: MAX_CMD_SN,
        data_sn: DATA_SN,
        buffer_offset: BUFFER_OFFSET,
        residual_count: RESIDUAL,
        data: Bytes::from_static(b"xyz"),
    }
}

fn data_in_ack() -> DataIn {
    DataIn {
        final_: false,
        ack: true,
        overflow: true,
        underflow: false,
        status: None,
        data: Bytes::from_static(b"abcd"),
        ..data_in()
    }
}

fn logout_request() -> LogoutRequest {
    LogoutRequest {
        immediate: true,
        reason: LogoutReason::CloseConnection,
        itt: ITT,
        cid: 0x4321,
        cmd_sn: CMD_SN,
        exp_stat_sn: EXP_STAT_SN,
    }
}

fn logout_response() -> LogoutResponse {
    LogoutResponse {
        response: LogoutResponseCode::RecoveryNotSupported,
        itt: ITT,
        stat_sn: STAT_SN,
        exp_cmd_sn: EXP_CMD_SN,
        max_cmd_sn: MAX_CMD_SN,
        time2wait: 0x0102,
        time2retain: 3600,
    }
}

fn snack() -> SnackRequest {
    SnackRequest {
        kind: SnackType::RData,
        lun: LUN,
        itt: ITT,
        ttt: TTT,
        exp_stat_sn: EXP_STAT_SN,
        beg_run: 0xa1a2_a3a4,
        run_length: 0xb1b2_b3b4,
    }
}

fn r2t() -> R2t {
    R2t {
        lun: LUN,
        itt: ITT,
        ttt: TTT,
        stat_sn: STAT_SN,
        exp_cmd_sn: EXP_CMD_SN,
        max_cmd_sn: MAX_CMD_SN,
        r2t_sn: R2tSn(0x9a9b_9c9d),
        buffer_offset: BUFFER_OFFSET,
        desired_len: 0x0004_0000,
    }
}

fn async_message() -> AsyncMessage {
    AsyncMessage {
        lun: LUN,
        stat_sn: STAT_SN,
        exp_cmd_sn: EXP_CMD_SN,
        max_cmd_sn: MAX_CMD_SN,
        event: AsyncEvent::LOGOUT_REQUEST,
        vcode: 0x77,
        parameter1: 0xa1a2,
        parameter2: 0xb1b2,
        parameter3: 0xc1c2,
        data: Bytes::new(),
    }
}

fn reject() -> Reject {
    Reject {
        reason: RejectReason::INVALID_PDU_FIELD,
        stat_sn: STAT_SN,
        exp_cmd_sn: EXP_CMD_SN,
        max_cmd_sn: MAX_CMD_SN,
        data_sn: DATA_SN,
        data: Bytes::from_static(&SNACK),
    }
}

/// One vector: its name, whole PDU bytes (no digests), expected value, and the reserved bits of
/// its BHS as (byte, mask) pairs plus wholly reserved byte ranges `[start, end)`.
struct Vector {
    name: &'static str,
    wire: Bytes,
    pdu: Pdu,
    reserved_bits: &'static [(usize, u8)],
    reserved_bytes: &'static [(usize, usize)],
}

fn vectors() -> Vec<Vector> {
    vec![
        Vector {
            name: "NOP-Out",
            wire: cat(&[&NOP_OUT, b"hello", &[0; 3]]),
            pdu: nop_out().into(),
            reserved_bits: &[(0, 0x80), (1, 0x7f)],
            reserved_bytes: &[(2, 4), (32, 48)],
        },
        Vector {
            name: "NOP-In",
            wire: cat(&[&NOP_IN]),
            pdu: nop_in().into(),
            reserved_bits: &[(0, 0xc0), (1, 0x7f)],
            reserved_bytes: &[(2, 4), (36, 48)],
        },
        Vector {
            name: "SCSI Command",
            wire: cat(&[&SCSI_COMMAND, &IMMEDIATE_DATA]),
            pdu: scsi_command().into(),
            reserved_bits: &[(0, 0x80), (1, 0x18)],
            reserved_bytes: &[(2, 4)],
        },
        Vector {
            name: "SCSI Command with AHS",
            wire: cat(&[&SCSI_COMMAND_AHS, &AHS_EXT_CDB_AND_BIDI]),
            pdu: scsi_command_ahs().into(),
            // Also the reserved byte of each AHS and the two top bits of each AHSType.
            reserved_bits: &[
                (0, 0x80),
                (1, 0x18),
                (50, 0xc0),
                (51, 0xff),
                (70, 0xc0),
                (71, 0xff),
            ],
            reserved_bytes: &[(2, 4)],
        },
        Vector {
            name: "SCSI Response",
            wire: cat(&[&SCSI_RESPONSE, &SENSE_SEGMENT]),
            pdu: scsi_response().into(),
            reserved_bits: &[(0, 0xc0), (1, 0x61)],
            reserved_bytes: &[(8, 16)],
        },
        Vector {
            name: "Task Management Function Request",
            wire: cat(&[&TMF_REQUEST]),
            pdu: tmf_request().into(),
            reserved_bits: &[(0, 0x80)],
            reserved_bytes: &[(2, 4), (40, 48)],
        },
        Vector {
            name: "Task Management Function Response",
            wire: cat(&[&TMF_RESPONSE]),
            pdu: tmf_response().into(),
            reserved_bits: &[(0, 0xc0), (1, 0x7f)],
            reserved_bytes: &[(3, 4), (8, 16), (20, 24), (36, 48)],
        },
        Vector {
            name: "Login Request",
            wire: cat(&[&LOGIN_REQUEST, LOGIN_TEXT, &[0; 2]]),
            pdu: login_request().into(),
            reserved_bits: &[(0, 0x80), (1, 0x30)],
            reserved_bytes: &[(22, 24), (32, 48)],
        },
        Vector {
            name: "Login Response",
            wire: cat(&[&LOGIN_RESPONSE]),
            pdu: login_response().into(),
            reserved_bits: &[(0, 0xc0), (1, 0x30)],
            reserved_bytes: &[(20, 24), (38, 48)],
        },
        Vector {
            name: "Text Request",
            wire: cat(&[&TEXT_REQUEST, TEXT_REQUEST_TEXT]),
            pdu: text_request().into(),
            reserved_bits: &[(0, 0x80), (1, 0x3f)],
            reserved_bytes: &[(2, 4), (32, 48)],
        },
        Vector {
            name: "Text Response",
            wire: cat(&[&TEXT_RESPONSE, TEXT_RESPONSE_TEXT, &[0; 2]]),
            pdu: text_response().into(),
            reserved_bits: &[(0, 0xc0), (1, 0x3f)],
            reserved_bytes: &[(2, 4), (36, 48)],
        },
        Vector {
            name: "SCSI Data-Out",
            wire: cat(&[&DATA_OUT, &[0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6], &[0]]),
            pdu: data_out().into(),
            reserved_bits: &[(0, 0xc0), (1, 0x7f)],
            reserved_bytes: &[(2, 4), (24, 28), (32, 36), (44, 48)],
        },
        Vector {
            name: "SCSI Data-In with status",
            wire: cat(&[&DATA_IN, b"xyz", &[0]]),
            pdu: data_in().into(),
            reserved_bits: &[(0, 0xc0), (1, 0x38)],
            reserved_bytes: &[(2, 3)],
        },
        Vector {
            name: "SCSI Data-In without status",
            wire: cat(&[&DATA_IN_ACK, b"abcd"]),
            pdu: data_in_ack().into(),
            // Without the S bit the status byte is reserved too.
            reserved_bits: &[(0, 0xc0), (1, 0x38)],
            reserved_bytes: &[(2, 4)],
        },
        Vector {
            name: "Logout Request",
            wire: cat(&[&LOGOUT_REQUEST]),
            pdu: logout_request().into(),
            reserved_bits: &[(0, 0x80)],
            reserved_bytes: &[(2, 4), (8, 16), (22, 24), (32, 48)],
        },
        Vector {
            name: "Logout Response",
            wire: cat(&[&LOGOUT_RESPONSE]),
            pdu: logout_response().into(),
            reserved_bits: &[(0, 0xc0), (1, 0x7f)],
            reserved_bytes: &[(3, 4), (8, 16), (20, 24), (36, 40), (44, 48)],
        },
        Vector {
            name: "SNACK Request",
            wire: cat(&[&SNACK]),
            pdu: snack().into(),
            reserved_bits: &[(0, 0xc0), (1, 0x70)],
            reserved_bytes: &[(2, 4), (24, 28), (32, 40)],
        },
        Vector {
            name: "R2T",
            wire: cat(&[&R2T]),
            pdu: r2t().into(),
            reserved_bits: &[(0, 0xc0), (1, 0x7f)],
            reserved_bytes: &[(2, 4)],
        },
        Vector {
            name: "Asynchronous Message",
            wire: cat(&[&ASYNC_MESSAGE]),
            pdu: async_message().into(),
            reserved_bits: &[(0, 0xc0), (1, 0x7f)],
            reserved_bytes: &[(2, 4), (20, 24), (44, 48)],
        },
        Vector {
            name: "Reject",
            wire: cat(&[&REJECT, &SNACK]),
            pdu: reject().into(),
            reserved_bits: &[(0, 0xc0), (1, 0x7f)],
            reserved_bytes: &[(3, 4), (8, 16), (20, 24), (40, 48)],
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Positive vectors
// ---------------------------------------------------------------------------------------------

#[test]
fn every_vector_round_trips_and_every_opcode_is_covered() {
    let mut opcodes: Vec<u8> = Vec::new();
    for v in vectors() {
        check_vector(&v.wire, NONE, &v.pdu);
        assert_eq!(v.pdu.opcode().0, v.wire[0] & 0x3f, "{}", v.name);
        opcodes.push(v.wire[0] & 0x3f);
    }
    opcodes.sort_unstable();
    opcodes.dedup();
    assert_eq!(
        opcodes,
        [
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x10, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25,
            0x26, 0x31, 0x32, 0x3f
        ]
    );
}

#[test]
fn nop_out_with_padded_data() {
    let wire = cat(&[&NOP_OUT, b"hello", &[0, 0, 0]]);
    assert_eq!(wire.len(), 56);
    let (pdu, used) = Pdu::parse(&wire, NONE).unwrap();
    assert_eq!(used, 56);
    let Pdu::NopOut(p) = &pdu else {
        panic!("not a NOP-Out: {pdu:?}")
    };
    assert_eq!(p, &nop_out());
    assert_eq!(p.data.as_ref(), b"hello");
    // The data segment is a slice of the input, not a copy.
    assert_eq!(p.data.as_ptr(), wire[48..].as_ptr());
    assert_eq!(pdu.opcode(), Opcode::NOP_OUT);
    assert_eq!(pdu.itt(), ITT);
    check_vector(&wire, NONE, &pdu);

    // Two PDUs back to back: the first one takes exactly its padded length.
    let two = cat(&[&wire, &NOP_IN]);
    let (first, used) = Pdu::parse(&two, NONE).unwrap();
    assert_eq!((first, used), (pdu, 56));
    let (second, used) = Pdu::parse(&two.slice(56..), NONE).unwrap();
    assert_eq!((second, used), (Pdu::NopIn(nop_in()), 48));
}

#[test]
fn nop_in_target_ping() {
    let wire = cat(&[&NOP_IN]);
    let (pdu, used) = Pdu::parse(&wire, NONE).unwrap();
    assert_eq!(used, 48);
    assert_eq!(pdu, Pdu::NopIn(nop_in()));
    assert!(pdu.itt().is_reserved());
    check_vector(&wire, NONE, &pdu);
}

#[test]
fn scsi_command_with_immediate_data() {
    let wire = cat(&[&SCSI_COMMAND, &IMMEDIATE_DATA]);
    let (pdu, used) = Pdu::parse(&wire, NONE).unwrap();
    assert_eq!(used, 56);
    let Pdu::ScsiCommand(c) = &pdu else {
        panic!("not a SCSI Command: {pdu:?}")
    };
    assert_eq!(c, &scsi_command());
    assert_eq!(c.cdb, CDB);
    assert_eq!(c.expected_data_len, 0xe1e2_e3e4);
    check_vector(&wire, NONE, &pdu);
}

#[test]
fn scsi_command_with_extended_cdb_and_bidi_ahs() {
    let wire = cat(&[&SCSI_COMMAND_AHS, &AHS_EXT_CDB_AND_BIDI]);
    assert_eq!(wire.len(), 48 + 7 * 4);
    let (pdu, used) = Pdu::parse(&wire, NONE).unwrap();
    assert_eq!(used, 76);
    let Pdu::ScsiCommand(c) = &pdu else {
        panic!("not a SCSI Command: {pdu:?}")
    };
    assert_eq!(c, &scsi_command_ahs());
    // The whole 32-byte CDB is cdb ++ extended_cdb.
    let ext = c.extended_cdb.as_ref().unwrap();
    assert_eq!(ext.len(), 16);
    let full: Vec<u8> = c.cdb.iter().chain(ext.iter()).copied().collect();
    let want: Vec<u8> = (0xc0..=0xcf).chain(0xd0..=0xdf).collect();
    assert_eq!(full, want);
    assert_eq!(c.bidi_read_len, Some(0xb1b2_b3b4));
    assert_eq!(pdu.bhs().total_ahs_len, 7);
    check_vector(&wire, NONE, &pdu);

    // The deframer hands out the AHS and the raw header (BHS + AHS) separately.
    let mut d = Deframer::new(DeframerConfig::default());
    d.feed(&wire);
    let f = d.next_frame().unwrap().unwrap();
    assert_eq!(&f.ahs()[..], &AHS_EXT_CDB_AND_BIDI[..]);
    assert_eq!(&f.raw_header()[..], &wire[..]);
    assert!(f.data().is_empty());

    // Only the bidirectional AHS, with immediate data.
    let mut h = SCSI_COMMAND_AHS;
    h[4] = 2;
    h[7] = 3;
    let wire = cat(&[&h, &AHS_EXT_CDB_AND_BIDI[20..], b"abc", &[0]]);
    let expected = ScsiCommand {
        extended_cdb: None,
        data: Bytes::from_static(b"abc"),
        ..scsi_command_ahs()
    };
    check_vector(&wire, NONE, &expected.into());
}

#[test]
fn scsi_command_with_padded_extended_cdb() {
    // An 18-byte CDB: AHSLength 3 (reserved byte + 2 CDB bytes), 2 bytes of AHS padding.
    let mut h = SCSI_COMMAND_AHS;
    h[4] = 2;
    #[rustfmt::skip]
    let ahs = [
        0x00, 0x03, 0x01, 0x00, // AHSLength 3; type 1; reserved
        0xd0, 0xd1, 0x00, 0x00, // CDB 16-17; padding
    ];
    let wire = cat(&[&h, &ahs]);
    let expected = ScsiCommand {
        extended_cdb: Some(Bytes::from_static(&[0xd0, 0xd1])),
        bidi_read_len: None,
        ..scsi_command_ahs()
    };
    check_vector(&wire, NONE, &expected.into());
}

#[test]
fn scsi_response_with_sense() {
    let wire = cat(&[&SCSI_RESPONSE, &SENSE_SEGMENT]);
    let (pdu, used) = Pdu::parse(&wire, NONE).unwrap();
    assert_eq!(used, 68);
    let Pdu::ScsiResponse(r) = &pdu else {
        panic!("not a SCSI Response: {pdu:?}")
    };
    assert_eq!(r, &scsi_response());
    assert_eq!(r.sense().as_deref(), Some(&SENSE_SEGMENT[2..]));
    assert_eq!(
        ScsiResponse::sense_segment(&SENSE_SEGMENT[2..]),
        &SENSE_SEGMENT[..]
    );
    check_vector(&wire, NONE, &pdu);

    // A vendor-specific response code (0x80-0xff) is accepted.
    let mut h = SCSI_RESPONSE;
    h[2] = 0x80;
    let expected = ScsiResponse {
        response: ServiceResponse(0x80),
        ..scsi_response()
    };
    check_vector(&cat(&[&h, &SENSE_SEGMENT]), NONE, &expected.into());
}

#[test]
fn task_management_request_and_response() {
    let wire = cat(&[&TMF_REQUEST]);
    check_vector(&wire, NONE, &tmf_request().into());
    let wire = cat(&[&TMF_RESPONSE]);
    check_vector(&wire, NONE, &tmf_response().into());
}

#[test]
fn login_request_isid_tsih_cid_version_layout() {
    let wire = cat(&[&LOGIN_REQUEST, LOGIN_TEXT, &[0, 0]]);
    let (pdu, used) = Pdu::parse(&wire, NONE).unwrap();
    assert_eq!(used, 48 + 20);
    let Pdu::LoginRequest(l) = &pdu else {
        panic!("not a Login Request: {pdu:?}")
    };
    assert_eq!(l, &login_request());
    assert_eq!(l.isid.0, [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a]);
    assert_eq!(l.isid.kind(), 2);
    assert_eq!(l.isid, Isid::random(0x12_3456, 0x789a));
    assert_eq!(l.tsih, Tsih(0xbeef));
    assert_eq!(l.cid, 0x4321);
    assert_eq!((l.version_max, l.version_min), (2, 1));
    assert_eq!((l.csg, l.nsg), (Stage::Operational, Stage::FullFeature));
    check_vector(&wire, NONE, &pdu);

    // The I bit is always set on a Login Request, whatever the typed value says.
    assert_eq!(pdu.to_bytes(NONE).unwrap()[0], 0x43);

    // C without T: the text continues; NSG is reserved then and kept as given.
    let mut h = LOGIN_REQUEST;
    h[1] = 0x44; // C, CSG=1, NSG=0
    let expected = LoginRequest {
        transit: false,
        cont: true,
        nsg: Stage::Security,
        ..login_request()
    };
    check_vector(&cat(&[&h, LOGIN_TEXT, &[0, 0]]), NONE, &expected.into());
}

#[test]
fn login_response_status_bytes_36_37() {
    let wire = cat(&[&LOGIN_RESPONSE]);
    let (pdu, _) = Pdu::parse(&wire, NONE).unwrap();
    let Pdu::LoginResponse(l) = &pdu else {
        panic!("not a Login Response: {pdu:?}")
    };
    assert_eq!(l, &login_response());
    assert_eq!(
        l.status,
        LoginStatus {
            class: 2,
            detail: 1
        }
    );
    assert!(!l.status.is_success());
    check_vector(&wire, NONE, &pdu);

    // Status byte positions: class at 36, detail at 37.
    let mut h = LOGIN_RESPONSE;
    h[36] = 0x03;
    h[37] = 0x02;
    let expected = LoginResponse {
        status: LoginStatus::OUT_OF_RESOURCES,
        ..login_response()
    };
    check_vector(&cat(&[&h]), NONE, &expected.into());
}

#[test]
fn text_request_and_response() {
    check_vector(
        &cat(&[&TEXT_REQUEST, TEXT_REQUEST_TEXT]),
        NONE,
        &text_request().into(),
    );
    let wire = cat(&[&TEXT_RESPONSE, TEXT_RESPONSE_TEXT, &[0, 0]]);
    let (pdu, used) = Pdu::parse(&wire, NONE).unwrap();
    assert_eq!(used, 48 + 16);
    assert_eq!(pdu.data().as_ref(), TEXT_RESPONSE_TEXT);
    check_vector(&wire, NONE, &text_response().into());
}

#[test]
fn data_out_with_padding() {
    let wire = cat(&[&DATA_OUT, &[0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6], &[0]]);
    let (pdu, used) = Pdu::parse(&wire, NONE).unwrap();
    assert_eq!(used, 56);
    assert_eq!(pdu.data().len(), 7);
    check_vector(&wire, NONE, &data_out().into());
}

#[test]
fn data_in_s_bit_with_status_byte_3() {
    let wire = cat(&[&DATA_IN, b"xyz", &[0]]);
    let (pdu, used) = Pdu::parse(&wire, NONE).unwrap();
    assert_eq!(used, 52);
    let Pdu::DataIn(d) = &pdu else {
        panic!("not a Data-In: {pdu:?}")
    };
    assert_eq!(d, &data_in());
    assert_eq!(d.status, Some(ScsiStatus(0x28)));
    check_vector(&wire, NONE, &pdu);

    // Without S, byte 3 is not a status.
    check_vector(&cat(&[&DATA_IN_ACK, b"abcd"]), NONE, &data_in_ack().into());
}

#[test]
fn logout_request_and_response_time2wait_time2retain() {
    check_vector(&cat(&[&LOGOUT_REQUEST]), NONE, &logout_request().into());
    let wire = cat(&[&LOGOUT_RESPONSE]);
    let (pdu, _) = Pdu::parse(&wire, NONE).unwrap();
    let Pdu::LogoutResponse(l) = &pdu else {
        panic!("not a Logout Response: {pdu:?}")
    };
    assert_eq!((l.time2wait, l.time2retain), (0x0102, 3600));
    check_vector(&wire, NONE, &logout_response().into());
}

#[test]
fn snack_and_r2t() {
    check_vector(&cat(&[&SNACK]), NONE, &snack().into());
    check_vector(&cat(&[&R2T]), NONE, &r2t().into());
}

#[test]
fn async_message_event_vcode_parameters() {
    let wire = cat(&[&ASYNC_MESSAGE]);
    let (pdu, _) = Pdu::parse(&wire, NONE).unwrap();
    let Pdu::AsyncMessage(a) = &pdu else {
        panic!("not an Async Message: {pdu:?}")
    };
    assert_eq!(a, &async_message());
    assert_eq!(
        (a.event, a.vcode, a.parameter1, a.parameter2, a.parameter3),
        (AsyncEvent(1), 0x77, 0xa1a2, 0xb1b2, 0xc1c2)
    );
    assert!(pdu.itt().is_reserved());
    check_vector(&wire, NONE, &pdu);

    // Vendor-specific event 255 with a data segment (SenseLength 0 + 3 bytes of event data).
    let mut h = ASYNC_MESSAGE;
    h[7] = 5;
    h[36] = 0xff;
    let wire = cat(&[&h, &[0, 0, 0xe1, 0xe2, 0xe3], &[0, 0, 0]]);
    let expected = AsyncMessage {
        event: AsyncEvent::VENDOR,
        data: Bytes::from_static(&[0, 0, 0xe1, 0xe2, 0xe3]),
        ..async_message()
    };
    check_vector(&wire, NONE, &expected.into());
}

#[test]
fn reject_carries_the_rejected_header() {
    let wire = cat(&[&REJECT, &SNACK]);
    let (pdu, used) = Pdu::parse(&wire, NONE).unwrap();
    assert_eq!(used, 96);
    let Pdu::Reject(r) = &pdu else {
        panic!("not a Reject: {pdu:?}")
    };
    assert_eq!(r, &reject());
    // The rejected header parses back to the SNACK.
    let (inner, _) = Pdu::parse(&r.data, NONE).unwrap();
    assert_eq!(inner, Pdu::SnackRequest(snack()));
    check_vector(&wire, NONE, &pdu);
}

// ---------------------------------------------------------------------------------------------
// Digests
// ---------------------------------------------------------------------------------------------

/// Bitwise reference CRC32C (reflected polynomial 0x82f63b78), independent of the crate's.
fn crc32c_reference(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn crc32c_matches_rfc_7143_appendix_b4() {
    let zeros = [0u8; 32];
    let ones = [0xffu8; 32];
    let inc: Vec<u8> = (0u8..32).collect();
    let dec: Vec<u8> = (0u8..32).rev().collect();
    for (input, wire) in [
        (&zeros[..], [0xaa, 0x36, 0x91, 0x8a]),
        (&ones[..], [0x43, 0xab, 0xa8, 0x62]),
        (&inc[..], [0x4e, 0x79, 0xdd, 0x46]),
        (&dec[..], [0x5c, 0xdb, 0x3f, 0x11]),
    ] {
        assert_eq!(digest_bytes(input), wire);
        assert_eq!(crc32c_reference(input).to_le_bytes(), wire);
        assert_eq!(iscsi_proto::digest::crc32c_wire(crc32c(input)), wire);
    }
    for bhs in [&NOP_OUT, &SCSI_RESPONSE, &LOGIN_REQUEST] {
        assert_eq!(crc32c(bhs), crc32c_reference(bhs));
    }
}

#[test]
fn header_and_data_digests() {
    let padded: &[u8] = b"hello\0\0\0";
    let hd = digest_bytes(&NOP_OUT);
    let dd = digest_bytes(padded);
    assert_eq!(hd, crc32c_reference(&NOP_OUT).to_le_bytes());
    assert_eq!(dd, crc32c_reference(padded).to_le_bytes());
    let pdu: Pdu = nop_out().into();

    // Both digests: BHS, header digest, data, padding, data digest.
    let wire = cat(&[&NOP_OUT, &hd, padded, &dd]);
    assert_eq!(wire.len(), 64);
    let (got, used) = Pdu::parse(&wire, BOTH).unwrap();
    assert_eq!((&got, used), (&pdu, 64));
    let encoded = pdu.to_bytes(BOTH).unwrap();
    assert_eq!(&encoded[48..52], &hd);
    assert_eq!(&encoded[60..64], &dd);
    check_vector(&wire, BOTH, &pdu);

    // Header digest only.
    check_vector(&cat(&[&NOP_OUT, &hd, padded]), HEADER, &pdu);
    // Data digest only.
    check_vector(&cat(&[&NOP_OUT, padded, &dd]), DATA, &pdu);

    // No data segment: no data digest even when negotiated.
    let hd = digest_bytes(&R2T);
    check_vector(&cat(&[&R2T, &hd]), BOTH, &r2t().into());
    check_vector(&cat(&[&R2T]), DATA, &r2t().into());
}

#[test]
fn header_digest_covers_the_ahs() {
    let header = cat(&[&SCSI_COMMAND_AHS, &AHS_EXT_CDB_AND_BIDI]);
    let hd = digest_bytes(&header);
    assert_ne!(hd, digest_bytes(&SCSI_COMMAND_AHS));
    let wire = cat(&[&header, &hd]);
    check_vector(&wire, BOTH, &scsi_command_ahs().into());

    // With immediate data: digest over data + padding follows.
    let mut h = SCSI_COMMAND_AHS;
    h[7] = 5;
    let header = cat(&[&h, &AHS_EXT_CDB_AND_BIDI]);
    let data: &[u8] = &[1, 2, 3, 4, 5, 0, 0, 0];
    let wire = cat(&[&header, &digest_bytes(&header), data, &digest_bytes(data)]);
    let expected = ScsiCommand {
        data: Bytes::from_static(&[1, 2, 3, 4, 5]),
        ..scsi_command_ahs()
    };
    check_vector(&wire, BOTH, &expected.into());
}

#[test]
fn header_digest_mismatch_is_fatal() {
    let padded: &[u8] = b"hello\0\0\0";
    let good = crc32c(&NOP_OUT);
    let bad = good ^ 0x0100_0000;
    let wire = cat(&[&NOP_OUT, &bad.to_le_bytes(), padded, &digest_bytes(padded)]);
    let e = parse_err(&wire, BOTH);
    assert_eq!(
        e,
        PduError::HeaderDigest {
            computed: good,
            received: bad
        }
    );
    assert_eq!(e.reject_reason(), None);

    // A corrupted BHS under a correct-looking digest.
    let mut h = NOP_OUT;
    h[27] ^= 0x01;
    let wire = cat(&[&h, &digest_bytes(&NOP_OUT), padded]);
    let e = parse_err(&wire, HEADER);
    assert_eq!(
        e,
        PduError::HeaderDigest {
            computed: crc32c(&h),
            received: good
        }
    );
    assert_eq!(e.reject_reason(), None);

    // The deframer gives up on the connection.
    let mut d = Deframer::new(DeframerConfig {
        digests: HEADER,
        max_data_segment_len: 8192,
    });
    d.feed(&wire);
    let fe = d.next_frame().unwrap_err();
    assert!(fe.is_fatal());
    assert_eq!(fe.error, e);
    d.feed(&cat(&[&NOP_IN, &digest_bytes(&NOP_IN)]));
    assert!(d.next_frame().is_err());
}

#[test]
fn data_digest_mismatch_is_rejected() {
    let padded: &[u8] = b"hello\0\0\0";
    let corrupted: &[u8] = b"hellO\0\0\0";
    let wire = cat(&[
        &NOP_OUT,
        &digest_bytes(&NOP_OUT),
        corrupted,
        &digest_bytes(padded),
    ]);
    let e = parse_err(&wire, BOTH);
    assert_eq!(
        e,
        PduError::DataDigest {
            computed: crc32c(corrupted),
            received: crc32c(padded)
        }
    );
    assert_reject(&e, RejectReason::DATA_DIGEST_ERROR);

    // Non-zero padding is covered by the data digest as well.
    let bad_pad: &[u8] = b"hello\0\x01\0";
    let wire = cat(&[&NOP_OUT, bad_pad, &digest_bytes(padded)]);
    assert!(matches!(
        parse_err(&wire, DATA),
        PduError::DataDigest { .. }
    ));

    // The deframer reports it, keeps the raw header for the Reject, and goes on.
    let next = cat(&[&NOP_IN]);
    let mut d = Deframer::new(DeframerConfig {
        digests: DATA,
        max_data_segment_len: 8192,
    });
    d.feed(&cat(&[&NOP_OUT, corrupted, &digest_bytes(padded), &next]));
    let fe = d.next_frame().unwrap_err();
    assert!(!fe.is_fatal());
    assert_eq!(&fe.raw_header[..], &NOP_OUT[..]);
    assert_eq!(fe.header, Some(Bhs::from_array(&NOP_OUT)));
    let f = d.next_frame().unwrap().unwrap();
    assert_eq!(Pdu::from_frame(&f).unwrap(), Pdu::NopIn(nop_in()));
}

// ---------------------------------------------------------------------------------------------
// Negative vectors
// ---------------------------------------------------------------------------------------------

/// A BHS with the given opcode byte and everything else zero.
fn bare(b0: u8) -> [u8; 48] {
    let mut h = [0u8; 48];
    h[0] = b0;
    h
}

#[test]
fn unknown_opcodes_are_not_supported() {
    // Unassigned, vendor-specific initiator (0x1c-0x1e) and target (0x3c-0x3e) opcodes.
    for op in [
        0x07u8, 0x0f, 0x11, 0x1c, 0x1d, 0x1e, 0x27, 0x30, 0x3c, 0x3d, 0x3e,
    ] {
        for b0 in [op, op | 0x40] {
            let e = parse_err(&cat(&[&bare(b0)]), NONE);
            assert_eq!(e, PduError::UnknownOpcode(Opcode(op)), "opcode {op:#04x}");
            assert_reject(&e, RejectReason::COMMAND_NOT_SUPPORTED);
        }
    }
    // Also with a data segment: framed first, then refused.
    let mut h = bare(0x1c);
    h[7] = 4;
    let e = parse_err(&cat(&[&h, b"abcd"]), NONE);
    assert_eq!(e, PduError::UnknownOpcode(Opcode(0x1c)));
}

#[test]
fn reserved_task_attribute() {
    for attr in 5u8..=7 {
        let mut h = SCSI_COMMAND;
        h[1] = 0xa0 | attr;
        let e = parse_err(&cat(&[&h, &IMMEDIATE_DATA]), NONE);
        assert_eq!(e, invalid(Opcode::SCSI_COMMAND, "ATTR", 1, attr as u32));
        assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
    }
}

#[test]
fn reserved_login_stages_and_t_with_c() {
    let text = cat(&[LOGIN_TEXT, &[0, 0]]);
    // CSG 2.
    let mut h = LOGIN_REQUEST;
    h[1] = 0x80 | (2 << 2) | 3;
    let e = parse_err(&cat(&[&h, &text]), NONE);
    assert_eq!(e, invalid(Opcode::LOGIN_REQUEST, "CSG", 1, 2));
    assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
    // NSG 2 with T set.
    h[1] = 0x80 | (1 << 2) | 2;
    let e = parse_err(&cat(&[&h, &text]), NONE);
    assert_eq!(e, invalid(Opcode::LOGIN_REQUEST, "NSG", 1, 2));
    assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
    // T and C both set.
    h[1] = 0xc0 | (1 << 2) | 3;
    let e = parse_err(&cat(&[&h, &text]), NONE);
    assert_eq!(e, invalid(Opcode::LOGIN_REQUEST, "T and C bits", 1, 0xc7));
    assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
    // The same on a Login Response.
    let mut h = LOGIN_RESPONSE;
    h[1] = 0xc1;
    let e = parse_err(&cat(&[&h]), NONE);
    assert_eq!(e, invalid(Opcode::LOGIN_RESPONSE, "T and C bits", 1, 0xc1));
    h[1] = 0x89;
    let e = parse_err(&cat(&[&h]), NONE);
    assert_eq!(e, invalid(Opcode::LOGIN_RESPONSE, "CSG", 1, 2));
}

#[test]
fn text_with_f_and_c() {
    let mut h = TEXT_REQUEST;
    h[1] = 0xc0;
    let e = parse_err(&cat(&[&h, TEXT_REQUEST_TEXT]), NONE);
    assert_eq!(e, invalid(Opcode::TEXT_REQUEST, "F and C bits", 1, 0xc0));
    assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
    let mut h = TEXT_RESPONSE;
    h[1] = 0xc0;
    let e = parse_err(&cat(&[&h, TEXT_RESPONSE_TEXT, &[0, 0]]), NONE);
    assert_eq!(e, invalid(Opcode::TEXT_RESPONSE, "F and C bits", 1, 0xc0));
}

#[test]
fn reserved_logout_reason() {
    for reason in [3u8, 4, 0x7f] {
        let mut h = LOGOUT_REQUEST;
        h[1] = 0x80 | reason;
        let e = parse_err(&cat(&[&h]), NONE);
        assert_eq!(
            e,
            invalid(Opcode::LOGOUT_REQUEST, "Reason Code", 1, reason as u32)
        );
        assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
    }
}

#[test]
fn reserved_snack_type() {
    for kind in [4u8, 5, 15] {
        let mut h = SNACK;
        h[1] = 0x80 | kind;
        let e = parse_err(&cat(&[&h]), NONE);
        assert_eq!(e, invalid(Opcode::SNACK_REQUEST, "Type", 1, kind as u32));
        assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
    }
}

#[test]
fn reserved_logout_response_code() {
    let mut h = LOGOUT_RESPONSE;
    h[2] = 4;
    let e = parse_err(&cat(&[&h]), NONE);
    assert_eq!(e, invalid(Opcode::LOGOUT_RESPONSE, "Response", 2, 4));
    assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
}

#[test]
fn r2t_with_zero_desired_length() {
    let mut h = R2T;
    h[44..48].copy_from_slice(&[0, 0, 0, 0]);
    let e = parse_err(&cat(&[&h]), NONE);
    assert_eq!(
        e,
        invalid(Opcode::R2T, "Desired Data Transfer Length", 44, 0)
    );
    assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
}

#[test]
fn data_in_with_s_but_not_f() {
    let mut h = DATA_IN;
    h[1] = 0x03; // U S, no F
    let e = parse_err(&cat(&[&h, b"xyz", &[0]]), NONE);
    assert_eq!(e, invalid(Opcode::DATA_IN, "S bit without F bit", 1, 0x03));
    assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
    // O and U together.
    h[1] = 0x87;
    let e = parse_err(&cat(&[&h, b"xyz", &[0]]), NONE);
    assert_eq!(e, invalid(Opcode::DATA_IN, "O and U bits", 1, 0x87));
}

#[test]
fn scsi_response_with_o_and_u() {
    let data = cat(&[&SENSE_SEGMENT]);
    let mut h = SCSI_RESPONSE;
    h[1] = 0x86; // O and U
    let e = parse_err(&cat(&[&h, &data]), NONE);
    assert_eq!(e, invalid(Opcode::SCSI_RESPONSE, "O and U bits", 1, 0x86));
    assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
    h[1] = 0x98; // o and u
    let e = parse_err(&cat(&[&h, &data]), NONE);
    assert_eq!(e, invalid(Opcode::SCSI_RESPONSE, "o and u bits", 1, 0x98));
    assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
    // Reserved response code.
    h[1] = 0x80;
    h[2] = 0x02;
    let e = parse_err(&cat(&[&h, &data]), NONE);
    assert_eq!(e, invalid(Opcode::SCSI_RESPONSE, "Response", 2, 2));
}

#[test]
fn reserved_async_event() {
    for event in [6u8, 0x80, 0xfe] {
        let mut h = ASYNC_MESSAGE;
        h[36] = event;
        let e = parse_err(&cat(&[&h]), NONE);
        assert_eq!(
            e,
            invalid(Opcode::ASYNC_MESSAGE, "AsyncEvent", 36, event as u32)
        );
        assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
    }
}

#[test]
fn data_segment_on_pdus_that_carry_none() {
    for (name, bhs) in [
        ("TMF request", TMF_REQUEST),
        ("TMF response", TMF_RESPONSE),
        ("R2T", R2T),
        ("Logout request", LOGOUT_REQUEST),
        ("Logout response", LOGOUT_RESPONSE),
        ("SNACK", SNACK),
    ] {
        let mut h = bhs;
        h[7] = 5;
        let e = parse_err(&cat(&[&h, b"abcde", &[0; 3]]), NONE);
        assert_eq!(
            e,
            PduError::Unexpected {
                opcode: Opcode(bhs[0] & 0x3f),
                what: "data segment",
                len: 5
            },
            "{name}"
        );
        assert_reject(&e, RejectReason::PROTOCOL_ERROR);
    }
}

#[test]
fn ahs_on_a_non_command_pdu() {
    let ahs = [0x00, 0x05, 0x02, 0x00, 0xb1, 0xb2, 0xb3, 0xb4];
    for bhs in [NOP_OUT, LOGIN_REQUEST, DATA_OUT, NOP_IN, DATA_IN, R2T] {
        let mut h = bhs;
        h[4] = 2;
        let padded = h[7] as usize;
        let padded = (padded + 3) & !3;
        let wire = cat(&[&h, &ahs, &vec![0x61; padded]]);
        let e = parse_err(&wire, NONE);
        assert_eq!(
            e,
            PduError::Unexpected {
                opcode: Opcode(bhs[0] & 0x3f),
                what: "AHS",
                len: 8
            }
        );
        assert_reject(&e, RejectReason::PROTOCOL_ERROR);
    }
}

#[test]
fn malformed_ahs() {
    fn with_ahs(ahs: &[u8]) -> Bytes {
        assert_eq!(ahs.len() % 4, 0);
        let mut h = SCSI_COMMAND_AHS;
        h[4] = (ahs.len() / 4) as u8;
        cat(&[&h, ahs])
    }
    let cases: [(&str, Vec<u8>, usize); 7] = [
        (
            "AHSLength beyond TotalAHSLength",
            vec![0x00, 0x11, 0x01, 0x00, 0xd0, 0xd1, 0xd2, 0xd3],
            48,
        ),
        (
            "reserved AHS type 3",
            vec![0x00, 0x05, 0x03, 0x00, 0xb1, 0xb2, 0xb3, 0xb4],
            48,
        ),
        (
            "reserved AHS type 0",
            vec![0x00, 0x05, 0x00, 0x00, 0xb1, 0xb2, 0xb3, 0xb4],
            48,
        ),
        (
            "bidi AHS with AHSLength 4",
            vec![0x00, 0x04, 0x02, 0x00, 0xb1, 0xb2, 0xb3, 0x00],
            48,
        ),
        (
            "extended CDB AHS without CDB bytes",
            vec![0x00, 0x01, 0x01, 0x00],
            48,
        ),
        (
            "duplicate bidi AHS",
            [&AHS_EXT_CDB_AND_BIDI[20..], &AHS_EXT_CDB_AND_BIDI[20..]].concat(),
            56,
        ),
        (
            "second AHS overruns",
            [&AHS_EXT_CDB_AND_BIDI[20..], &[0x00, 0x09, 0x01, 0x00][..]].concat(),
            56,
        ),
    ];
    for (name, ahs, offset) in cases {
        let e = parse_err(&with_ahs(&ahs), NONE);
        assert!(
            matches!(e, PduError::BadAhs { offset: o, .. } if o == offset),
            "{name}: {e:?}"
        );
        assert_reject(&e, RejectReason::INVALID_PDU_FIELD);
    }
}

#[test]
fn truncated_input() {
    for len in [0usize, 1, 47] {
        let e = parse_err(&Bytes::copy_from_slice(&NOP_IN[..len]), NONE);
        assert_eq!(e, PduError::Truncated { needed: 48 - len });
        assert_reject(&e, RejectReason::PROTOCOL_ERROR);
    }
    // Data present but not its padding.
    let e = parse_err(&cat(&[&NOP_OUT, b"hello"]), NONE);
    assert_eq!(e, PduError::Truncated { needed: 3 });
    // Header digest missing.
    let e = parse_err(&cat(&[&R2T]), HEADER);
    assert_eq!(e, PduError::Truncated { needed: 4 });
    // Data digest missing.
    let e = parse_err(&cat(&[&NOP_OUT, b"hello\0\0\0"]), DATA);
    assert_eq!(e, PduError::Truncated { needed: 4 });
    // AHS missing.
    let e = parse_err(
        &cat(&[&SCSI_COMMAND_AHS, &AHS_EXT_CDB_AND_BIDI[..10]]),
        NONE,
    );
    assert_eq!(e, PduError::Truncated { needed: 18 });
    // A header announcing the largest data segment.
    let mut h = NOP_OUT;
    h[5..8].copy_from_slice(&[0xff, 0xff, 0xff]);
    let e = parse_err(&cat(&[&h]), NONE);
    assert_eq!(
        e,
        PduError::Truncated {
            needed: 0x0100_0000
        }
    );
}

#[test]
fn oversized_data_segment_is_refused_by_the_deframer() {
    let mut h = LOGIN_REQUEST;
    h[5..8].copy_from_slice(&[0x00, 0x20, 0x01]); // 8193 bytes
    let mut d = Deframer::new(DeframerConfig::default());
    d.feed(&h);
    let fe = d.next_frame().unwrap_err();
    assert_eq!(
        fe.error,
        PduError::DataSegmentTooLong {
            len: 8193,
            max: 8192
        }
    );
    assert_reject(&fe.error, RejectReason::PROTOCOL_ERROR);
    assert!(!fe.is_fatal());
    assert_eq!(&fe.raw_header[..], &h[..]);
}

#[test]
fn reserved_fields_are_ignored() {
    for v in vectors() {
        for fill in [0xffu8, 0x5a, 0xa5] {
            let mut bytes = v.wire.to_vec();
            for &(at, mask) in v.reserved_bits {
                bytes[at] |= mask & fill;
            }
            for &(start, end) in v.reserved_bytes {
                for b in &mut bytes[start..end] {
                    *b = fill;
                }
            }
            assert_ne!(&bytes[..], &v.wire[..], "{}: nothing changed", v.name);
            let dirty = Bytes::from(bytes);
            let (pdu, used) = Pdu::parse(&dirty, NONE)
                .unwrap_or_else(|e| panic!("{} with reserved fields {fill:#04x}: {e}", v.name));
            assert_eq!(pdu, v.pdu, "{} with reserved fields {fill:#04x}", v.name);
            assert_eq!(used, v.wire.len());
            // Reserved fields are written as zero.
            assert_eq!(pdu.to_bytes(NONE).unwrap(), v.wire, "{}", v.name);
        }
    }
}

#[test]
fn login_nsg_is_reserved_without_t() {
    // RFC 7143 §11.12.3: NSG is reserved when T is 0. A reserved NSG value (2) is then ignored.
    let mut h = LOGIN_REQUEST;
    h[1] = 0x06; // no T, CSG=1, NSG=2
    let (pdu, _) = Pdu::parse(&cat(&[&h, LOGIN_TEXT, &[0, 0]]), NONE).unwrap();
    let Pdu::LoginRequest(l) = pdu else {
        panic!("not a Login Request")
    };
    assert!(!l.transit);
    assert_eq!(l.csg, Stage::Operational);
}

#[test]
fn ahs_and_data_length_limits_on_encode() {
    // 255 words of AHS is the most TotalAHSLength can say: a 1016-byte extended CDB part
    // (AHSLength 1017) fills it exactly, and parses back.
    let cmd = ScsiCommand {
        extended_cdb: Some(Bytes::from(vec![0xd5; 1016])),
        bidi_read_len: None,
        ..scsi_command_ahs()
    };
    let wire = Pdu::from(cmd.clone()).to_bytes(BOTH).unwrap();
    assert_eq!(wire[4], 255);
    assert_eq!(&wire[48..51], &[0x03, 0xf9, 0x01]);
    let (back, used) = Pdu::parse(&wire, BOTH).unwrap();
    assert_eq!((back, used), (Pdu::ScsiCommand(cmd.clone()), wire.len()));

    // One more byte does not fit.
    let too_long = ScsiCommand {
        extended_cdb: Some(Bytes::from(vec![0xd5; 1017])),
        ..cmd.clone()
    };
    assert_eq!(
        Pdu::from(too_long).to_bytes(NONE),
        Err(EncodeError::AhsTooLong(1024))
    );
    // Nor does the bidirectional AHS on top of a full extended CDB AHS.
    let too_long = ScsiCommand {
        bidi_read_len: Some(1),
        ..cmd
    };
    let mut buf = BytesMut::new();
    assert_eq!(
        Pdu::from(too_long).encode_header(&mut buf, NONE),
        Err(EncodeError::AhsTooLong(1028))
    );

    // DataSegmentLength is 24 bits.
    let big = DataOut {
        data: Bytes::from(vec![0u8; 1 << 24]),
        ..data_out()
    };
    assert_eq!(
        Pdu::from(big).to_bytes(NONE),
        Err(EncodeError::DataTooLong(1 << 24))
    );
}

#[test]
fn oversized_pdu_with_digests_is_skipped_whole() {
    // A Data-Out announcing 8193 bytes, with both digests, then a NOP-In.
    let data = vec![0x5au8; 8193];
    let big = Pdu::from(DataOut {
        data: Bytes::from(data),
        ..data_out()
    })
    .to_bytes(BOTH)
    .unwrap();
    assert_eq!(big.len(), 48 + 4 + 8196 + 4);
    let next = cat(&[&NOP_IN, &digest_bytes(&NOP_IN)]);
    let stream = cat(&[&big, &next]);
    let mut d = Deframer::new(DeframerConfig {
        digests: BOTH,
        max_data_segment_len: 8192,
    });
    let mut errors = Vec::new();
    let mut frames = Vec::new();
    for piece in stream.chunks(100) {
        d.feed(piece);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => frames.push(Pdu::from_frame(&f).unwrap()),
                Ok(None) => break,
                Err(e) => errors.push(e),
            }
        }
        assert!(d.buffered() <= 200);
    }
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].error,
        PduError::DataSegmentTooLong {
            len: 8193,
            max: 8192
        }
    );
    assert!(!errors[0].is_fatal());
    assert_eq!(&errors[0].raw_header[..], &big[..48]);
    assert_eq!(frames, vec![Pdu::NopIn(nop_in())]);
    assert_eq!(d.buffered(), 0);
}

#[test]
fn oversized_length_under_a_bad_header_digest_is_a_digest_error() {
    // DataSegmentLength 0x200000 but the header digest does not match: the length cannot be
    // trusted, so this is a (fatal) header digest error, not a protocol error.
    let mut h = NOP_OUT;
    h[5..8].copy_from_slice(&[0x20, 0x00, 0x00]);
    let mut d = Deframer::new(DeframerConfig {
        digests: HEADER,
        max_data_segment_len: 8192,
    });
    d.feed(&h);
    // The digest has not arrived yet.
    assert!(d.next_frame().unwrap().is_none());
    d.feed(&digest_bytes(&NOP_OUT));
    let fe = d.next_frame().unwrap_err();
    assert_eq!(
        fe.error,
        PduError::HeaderDigest {
            computed: crc32c(&h),
            received: crc32c(&NOP_OUT)
        }
    );
    assert!(fe.is_fatal());
}
