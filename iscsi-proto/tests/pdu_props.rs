//! Property tests of the PDU layer (RFC 7143 §11): typed round trips for every PDU type and every
//! digest combination, header/data split encoding, deframing of streams cut anywhere, robustness
//! against arbitrary bytes, and CRC32C coverage of single-bit errors.

use bytes::{Bytes, BytesMut};
use iscsi_proto::pdu::{
    AsyncEvent, AsyncMessage, BHS_LEN, Bhs, DataIn, DataOut, Digests, Isid, LoginRequest,
    LoginResponse, LoginStatus, LogoutReason, LogoutRequest, LogoutResponse, LogoutResponseCode,
    Lun, NopIn, NopOut, R2t, Reject, ScsiCommand, ScsiResponse, ScsiStatus, ServiceResponse,
    SnackRequest, SnackType, Stage, TaskAttribute, TaskMgmtFunction, TaskMgmtRequest,
    TaskMgmtResponse, TextRequest, TextResponse, TmfResponse, Tsih, data_trailer,
};
use iscsi_proto::{
    CmdSn, DataSn, Deframer, DeframerConfig, Itt, Pdu, PduError, R2tSn, RejectReason, StatSn, Ttt,
};
use proptest::prelude::*;

const ALL_DIGESTS: [Digests; 4] = [
    Digests {
        header: false,
        data: false,
    },
    Digests {
        header: true,
        data: false,
    },
    Digests {
        header: false,
        data: true,
    },
    Digests {
        header: true,
        data: true,
    },
];

const BOTH_DIGESTS: Digests = Digests {
    header: true,
    data: true,
};

/// Largest data segment the strategies generate.
const MAX_DATA: usize = 300;

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn digests() -> impl Strategy<Value = Digests> {
    prop::sample::select(ALL_DIGESTS.to_vec())
}

/// A data segment, empty a fair share of the time (no padding, no data digest then).
fn data() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        1 => Just(Bytes::new()),
        1 => prop::collection::vec(any::<u8>(), 1..=8).prop_map(Bytes::from),
        3 => prop::collection::vec(any::<u8>(), 0..=MAX_DATA).prop_map(Bytes::from),
    ]
}

/// A 32-bit tag or sequence number, with the boundary values (reserved tag, wrap) favoured.
fn word() -> impl Strategy<Value = u32> {
    prop_oneof![
        1 => Just(0u32),
        1 => Just(u32::MAX),
        1 => Just(0x7fff_ffff),
        6 => any::<u32>(),
    ]
}

fn words<const N: usize>() -> impl Strategy<Value = [u32; N]> {
    prop::array::uniform(word())
}

fn lun() -> impl Strategy<Value = Lun> {
    prop_oneof![
        (0u16..0x4000).prop_map(|n| Lun::from_index(n).unwrap()),
        any::<u64>().prop_map(Lun),
    ]
}

/// Two flags that must not both be set (Login T/C, Text F/C, SCSI Response O/U and o/u).
fn exclusive_pair() -> impl Strategy<Value = (bool, bool)> {
    prop_oneof![
        Just((false, false)),
        Just((true, false)),
        Just((false, true))
    ]
}

fn stage() -> impl Strategy<Value = Stage> {
    prop_oneof![
        Just(Stage::Security),
        Just(Stage::Operational),
        Just(Stage::FullFeature)
    ]
}

prop_compose! {
    fn nop_out()(
        immediate in any::<bool>(),
        lun in lun(),
        w in words::<4>(),
        data in data(),
    ) -> NopOut {
        NopOut {
            immediate,
            lun,
            itt: Itt(w[0]),
            ttt: Ttt(w[1]),
            cmd_sn: CmdSn(w[2]),
            exp_stat_sn: StatSn(w[3]),
            data,
        }
    }
}

prop_compose! {
    fn nop_in()(lun in lun(), w in words::<5>(), data in data()) -> NopIn {
        NopIn {
            lun,
            itt: Itt(w[0]),
            ttt: Ttt(w[1]),
            stat_sn: StatSn(w[2]),
            exp_cmd_sn: CmdSn(w[3]),
            max_cmd_sn: CmdSn(w[4]),
            data,
        }
    }
}

prop_compose! {
    fn scsi_command()(
        flags in any::<[bool; 4]>(),
        attr in (0u8..=4).prop_map(|v| TaskAttribute::from_bits(v).unwrap()),
        lun in lun(),
        w in words::<4>(),
        cdb in any::<[u8; 16]>(),
        // AHSLength is the extended CDB length + 1 and must be at least 2 (RFC 7143 §11.2.2.3).
        extended_cdb in prop::option::of(
            prop::collection::vec(any::<u8>(), 1..=200).prop_map(Bytes::from)
        ),
        bidi_read_len in prop::option::of(word()),
        data in data(),
    ) -> ScsiCommand {
        ScsiCommand {
            immediate: flags[0],
            final_: flags[1],
            read: flags[2],
            write: flags[3],
            attr,
            lun,
            itt: Itt(w[0]),
            expected_data_len: w[1],
            cmd_sn: CmdSn(w[2]),
            exp_stat_sn: StatSn(w[3]),
            cdb,
            extended_cdb,
            bidi_read_len,
            data,
        }
    }
}

prop_compose! {
    fn scsi_response()(
        (bidi_overflow, bidi_underflow) in exclusive_pair(),
        (overflow, underflow) in exclusive_pair(),
        response in prop_oneof![Just(0u8), Just(1u8), 0x80u8..=0xff],
        status in any::<u8>(),
        w in words::<8>(),
        data in data(),
    ) -> ScsiResponse {
        ScsiResponse {
            bidi_overflow,
            bidi_underflow,
            overflow,
            underflow,
            response: ServiceResponse(response),
            status: ScsiStatus(status),
            itt: Itt(w[0]),
            snack_tag: w[1],
            stat_sn: StatSn(w[2]),
            exp_cmd_sn: CmdSn(w[3]),
            max_cmd_sn: CmdSn(w[4]),
            exp_data_sn: DataSn(w[5]),
            bidi_residual_count: w[6],
            residual_count: w[7],
            data,
        }
    }
}

prop_compose! {
    fn tmf_request()(
        immediate in any::<bool>(),
        function in 0u8..=0x7f,
        lun in lun(),
        w in words::<6>(),
    ) -> TaskMgmtRequest {
        TaskMgmtRequest {
            immediate,
            function: TaskMgmtFunction(function),
            lun,
            itt: Itt(w[0]),
            referenced_task_tag: Itt(w[1]),
            cmd_sn: CmdSn(w[2]),
            exp_stat_sn: StatSn(w[3]),
            ref_cmd_sn: CmdSn(w[4]),
            exp_data_sn: DataSn(w[5]),
        }
    }
}

prop_compose! {
    fn tmf_response()(response in any::<u8>(), w in words::<4>()) -> TaskMgmtResponse {
        TaskMgmtResponse {
            response: TmfResponse(response),
            itt: Itt(w[0]),
            stat_sn: StatSn(w[1]),
            exp_cmd_sn: CmdSn(w[2]),
            max_cmd_sn: CmdSn(w[3]),
        }
    }
}

prop_compose! {
    fn login_request()(
        (transit, cont) in exclusive_pair(),
        csg in stage(),
        nsg in stage(),
        versions in any::<[u8; 2]>(),
        isid in any::<[u8; 6]>(),
        tsih in any::<u16>(),
        cid in any::<u16>(),
        w in words::<3>(),
        data in data(),
    ) -> LoginRequest {
        LoginRequest {
            transit,
            cont,
            csg,
            nsg,
            version_max: versions[0],
            version_min: versions[1],
            isid: Isid(isid),
            tsih: Tsih(tsih),
            itt: Itt(w[0]),
            cid,
            cmd_sn: CmdSn(w[1]),
            exp_stat_sn: StatSn(w[2]),
            data,
        }
    }
}

prop_compose! {
    fn login_response()(
        (transit, cont) in exclusive_pair(),
        csg in stage(),
        nsg in stage(),
        versions in any::<[u8; 2]>(),
        isid in any::<[u8; 6]>(),
        tsih in any::<u16>(),
        status in any::<[u8; 2]>(),
        w in words::<4>(),
        data in data(),
    ) -> LoginResponse {
        LoginResponse {
            transit,
            cont,
            csg,
            nsg,
            version_max: versions[0],
            version_active: versions[1],
            isid: Isid(isid),
            tsih: Tsih(tsih),
            itt: Itt(w[0]),
            stat_sn: StatSn(w[1]),
            exp_cmd_sn: CmdSn(w[2]),
            max_cmd_sn: CmdSn(w[3]),
            status: LoginStatus {
                class: status[0],
                detail: status[1],
            },
            data,
        }
    }
}

prop_compose! {
    fn text_request()(
        immediate in any::<bool>(),
        (final_, cont) in exclusive_pair(),
        lun in lun(),
        w in words::<4>(),
        data in data(),
    ) -> TextRequest {
        TextRequest {
            immediate,
            final_,
            cont,
            lun,
            itt: Itt(w[0]),
            ttt: Ttt(w[1]),
            cmd_sn: CmdSn(w[2]),
            exp_stat_sn: StatSn(w[3]),
            data,
        }
    }
}

prop_compose! {
    fn text_response()(
        (final_, cont) in exclusive_pair(),
        lun in lun(),
        w in words::<5>(),
        data in data(),
    ) -> TextResponse {
        TextResponse {
            final_,
            cont,
            lun,
            itt: Itt(w[0]),
            ttt: Ttt(w[1]),
            stat_sn: StatSn(w[2]),
            exp_cmd_sn: CmdSn(w[3]),
            max_cmd_sn: CmdSn(w[4]),
            data,
        }
    }
}

prop_compose! {
    fn data_out()(final_ in any::<bool>(), lun in lun(), w in words::<5>(), data in data()) -> DataOut {
        DataOut {
            final_,
            lun,
            itt: Itt(w[0]),
            ttt: Ttt(w[1]),
            exp_stat_sn: StatSn(w[2]),
            data_sn: DataSn(w[3]),
            buffer_offset: w[4],
            data,
        }
    }
}

prop_compose! {
    fn data_in()(
        // Status (S bit) only on the final PDU of a sequence.
        (final_, status) in prop_oneof![
            (Just(false), Just(None)),
            (Just(true), prop::option::of(any::<u8>())),
        ],
        ack in any::<bool>(),
        (overflow, underflow) in exclusive_pair(),
        lun in lun(),
        w in words::<8>(),
        data in data(),
    ) -> DataIn {
        DataIn {
            final_,
            ack,
            overflow,
            underflow,
            status: status.map(ScsiStatus),
            lun,
            itt: Itt(w[0]),
            ttt: Ttt(w[1]),
            stat_sn: StatSn(w[2]),
            exp_cmd_sn: CmdSn(w[3]),
            max_cmd_sn: CmdSn(w[4]),
            data_sn: DataSn(w[5]),
            buffer_offset: w[6],
            residual_count: w[7],
            data,
        }
    }
}

prop_compose! {
    fn r2t()(lun in lun(), w in words::<7>(), desired_len in 1u32..=u32::MAX) -> R2t {
        R2t {
            lun,
            itt: Itt(w[0]),
            ttt: Ttt(w[1]),
            stat_sn: StatSn(w[2]),
            exp_cmd_sn: CmdSn(w[3]),
            max_cmd_sn: CmdSn(w[4]),
            r2t_sn: R2tSn(w[5]),
            buffer_offset: w[6],
            desired_len,
        }
    }
}

prop_compose! {
    fn logout_request()(
        immediate in any::<bool>(),
        reason in prop_oneof![
            Just(LogoutReason::CloseSession),
            Just(LogoutReason::CloseConnection),
            Just(LogoutReason::RemoveForRecovery),
        ],
        cid in any::<u16>(),
        w in words::<3>(),
    ) -> LogoutRequest {
        LogoutRequest {
            immediate,
            reason,
            itt: Itt(w[0]),
            cid,
            cmd_sn: CmdSn(w[1]),
            exp_stat_sn: StatSn(w[2]),
        }
    }
}

prop_compose! {
    fn logout_response()(
        response in prop_oneof![
            Just(LogoutResponseCode::Closed),
            Just(LogoutResponseCode::CidNotFound),
            Just(LogoutResponseCode::RecoveryNotSupported),
            Just(LogoutResponseCode::CleanupFailed),
        ],
        w in words::<4>(),
        times in any::<[u16; 2]>(),
    ) -> LogoutResponse {
        LogoutResponse {
            response,
            itt: Itt(w[0]),
            stat_sn: StatSn(w[1]),
            exp_cmd_sn: CmdSn(w[2]),
            max_cmd_sn: CmdSn(w[3]),
            time2wait: times[0],
            time2retain: times[1],
        }
    }
}

prop_compose! {
    fn snack()(
        kind in prop_oneof![
            Just(SnackType::DataR2t),
            Just(SnackType::Status),
            Just(SnackType::DataAck),
            Just(SnackType::RData),
        ],
        lun in lun(),
        w in words::<5>(),
    ) -> SnackRequest {
        SnackRequest {
            kind,
            lun,
            itt: Itt(w[0]),
            ttt: Ttt(w[1]),
            exp_stat_sn: StatSn(w[2]),
            beg_run: w[3],
            run_length: w[4],
        }
    }
}

prop_compose! {
    fn async_message()(
        lun in lun(),
        w in words::<3>(),
        event in prop_oneof![0u8..=5, Just(255u8)],
        vcode in any::<u8>(),
        params in any::<[u16; 3]>(),
        data in data(),
    ) -> AsyncMessage {
        AsyncMessage {
            lun,
            stat_sn: StatSn(w[0]),
            exp_cmd_sn: CmdSn(w[1]),
            max_cmd_sn: CmdSn(w[2]),
            event: AsyncEvent(event),
            vcode,
            parameter1: params[0],
            parameter2: params[1],
            parameter3: params[2],
            data,
        }
    }
}

prop_compose! {
    fn reject()(reason in any::<u8>(), w in words::<4>(), data in data()) -> Reject {
        Reject {
            reason: RejectReason(reason),
            stat_sn: StatSn(w[0]),
            exp_cmd_sn: CmdSn(w[1]),
            max_cmd_sn: CmdSn(w[2]),
            data_sn: DataSn(w[3]),
            data,
        }
    }
}

/// Any PDU of any of the 18 types.
fn any_pdu() -> impl Strategy<Value = Pdu> {
    prop_oneof![
        nop_out().prop_map(Pdu::from),
        scsi_command().prop_map(Pdu::from),
        tmf_request().prop_map(Pdu::from),
        login_request().prop_map(Pdu::from),
        text_request().prop_map(Pdu::from),
        data_out().prop_map(Pdu::from),
        logout_request().prop_map(Pdu::from),
        snack().prop_map(Pdu::from),
        nop_in().prop_map(Pdu::from),
        scsi_response().prop_map(Pdu::from),
        tmf_response().prop_map(Pdu::from),
        login_response().prop_map(Pdu::from),
        text_response().prop_map(Pdu::from),
        data_in().prop_map(Pdu::from),
        logout_response().prop_map(Pdu::from),
        r2t().prop_map(Pdu::from),
        async_message().prop_map(Pdu::from),
        reject().prop_map(Pdu::from),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn encode(pdu: &Pdu, digests: Digests) -> Bytes {
    pdu.to_bytes(digests)
        .expect("generated PDUs fit their fields")
}

/// Length of BHS + AHS of an encoded PDU.
fn header_len(pdu: &Pdu) -> usize {
    BHS_LEN + pdu.bhs().ahs_len()
}

/// Length of BHS + AHS + header digest.
fn header_part_len(pdu: &Pdu, digests: Digests) -> usize {
    header_len(pdu) + if digests.header { 4 } else { 0 }
}

/// Piece lengths for feeding a stream: mostly tiny (including 1-byte pieces), sometimes large.
fn piece_lengths() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(
        prop_oneof![
            3 => Just(1usize),
            3 => 1usize..=8,
            2 => 9usize..=64,
            1 => 65usize..=700,
        ],
        1..48,
    )
}

/// Feeds `stream` to `d` in pieces cycling through `pieces`, draining frames after every piece.
/// Returns the decoded PDUs; panics (test failure) on any deframing or decoding error.
fn deframe_all(d: &mut Deframer, stream: &[u8], pieces: &[usize]) -> Vec<(Pdu, usize, Bytes)> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < stream.len() {
        let n = pieces[i % pieces.len()].min(stream.len() - pos);
        i += 1;
        d.feed(&stream[pos..pos + n]);
        pos += n;
        while let Some(frame) = d.next_frame().expect("a valid stream deframes") {
            let pdu = Pdu::from_frame(&frame).expect("a valid frame decodes");
            out.push((pdu, frame.wire_len(), frame.raw_header()));
        }
    }
    out
}

/// Drains a deframer fed with arbitrary bytes; must not panic nor loop without progress.
fn drain_arbitrary(d: &mut Deframer) -> Result<(), TestCaseError> {
    for _ in 0..10_000 {
        let before = d.buffered();
        match d.next_frame() {
            Ok(None) => return Ok(()),
            Ok(Some(frame)) => {
                prop_assert!(frame.wire_len() >= BHS_LEN);
                prop_assert_eq!(frame.raw_header().len(), BHS_LEN + frame.header.ahs_len());
                prop_assert_eq!(frame.data().len(), frame.header.data_segment_len as usize);
                let _ = Pdu::from_frame(&frame);
            }
            Err(e) if e.is_fatal() => {
                prop_assert!(
                    matches!(e.error, PduError::HeaderDigest { .. }),
                    "fatal error {:?}",
                    e
                );
                // Fatal errors stick.
                prop_assert!(d.next_frame().is_err());
                return Ok(());
            }
            Err(e) => {
                prop_assert!(e.error.reject_reason().is_some());
                // A non-fatal error must consume something (or arm the skip of an oversized PDU).
                prop_assert!(
                    d.buffered() < before || matches!(e.error, PduError::DataSegmentTooLong { .. }),
                    "non-fatal error without progress: {:?}",
                    e
                );
            }
        }
    }
    Err(TestCaseError::fail("deframer made no progress"))
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// `cases` cases (or `PROPTEST_CASES` when set, for longer runs); failures are reported with the
/// shrunk input but not persisted to a file.
fn config(cases: u32) -> ProptestConfig {
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

proptest! {
    #![proptest_config(config(256))]

    /// (a) parse(encode(x)) == x for every type and every digest combination; the consumed length
    /// is `wire_len()`, and bytes after the PDU are left alone.
    #[test]
    fn parse_inverts_encode(
        pdu in any_pdu(),
        trailing in prop::collection::vec(any::<u8>(), 0..64),
        cut in any::<prop::sample::Index>(),
    ) {
        for digests in ALL_DIGESTS {
            let wire = encode(&pdu, digests);
            prop_assert_eq!(wire.len(), pdu.wire_len(digests));
            prop_assert_eq!(wire.len() % 4, 0);
            let (back, used) = Pdu::parse(&wire, digests).expect("encoded PDU parses");
            prop_assert_eq!(&back, &pdu);
            prop_assert_eq!(used, pdu.wire_len(digests));

            // The BHS on the wire is exactly `bhs()`.
            let raw: &[u8; BHS_LEN] = wire[..BHS_LEN].try_into().unwrap();
            prop_assert_eq!(Bhs::from_array(raw), pdu.bhs());
            prop_assert_eq!(back.opcode(), pdu.opcode());
            prop_assert_eq!(back.itt(), pdu.itt());

            // With more bytes behind it, the PDU still takes exactly its own length.
            let mut longer = BytesMut::from(&wire[..]);
            longer.extend_from_slice(&trailing);
            let (back2, used2) = Pdu::parse(&longer.freeze(), digests).expect("parses with trailing bytes");
            prop_assert_eq!(&back2, &pdu);
            prop_assert_eq!(used2, wire.len());

            // A strict prefix is truncated, and says by how much: up to the end of the BHS
            // while the BHS is incomplete, up to the end of the PDU once it is known.
            let cut = cut.index(wire.len());
            let needed = if cut < BHS_LEN { BHS_LEN - cut } else { wire.len() - cut };
            prop_assert_eq!(
                Pdu::parse(&wire.slice(..cut), digests).unwrap_err(),
                PduError::Truncated { needed }
            );
        }
    }

    /// (b) encode_header + data + data_trailer is byte for byte what encode writes.
    #[test]
    fn header_data_trailer_concatenate_to_encode(pdu in any_pdu()) {
        for digests in ALL_DIGESTS {
            let whole = encode(&pdu, digests);
            let mut parts = BytesMut::new();
            pdu.encode_header(&mut parts, digests).expect("header encodes");
            prop_assert_eq!(parts.len(), header_part_len(&pdu, digests));
            parts.extend_from_slice(pdu.data());
            let (trailer, n) = data_trailer(pdu.data(), digests.data);
            let pad = (4 - pdu.data().len() % 4) % 4;
            let digest_len = if digests.data && !pdu.data().is_empty() { 4 } else { 0 };
            prop_assert_eq!(n, pad + digest_len);
            prop_assert!(trailer[..pad].iter().all(|&b| b == 0));
            parts.extend_from_slice(&trailer[..n]);
            prop_assert_eq!(&parts[..], &whole[..]);

            // encode appends: what was in the buffer before stays.
            let mut appended = BytesMut::from(&b"xyz"[..]);
            pdu.encode(&mut appended, digests).expect("encodes");
            prop_assert_eq!(&appended[..3], b"xyz");
            prop_assert_eq!(&appended[3..], &whole[..]);
        }
    }

    /// (c) A stream of PDUs cut at arbitrary points comes out of the deframer whole and in order.
    #[test]
    fn deframer_reassembles_any_split(
        pdus in prop::collection::vec(any_pdu(), 1..6),
        digests in digests(),
        pieces in piece_lengths(),
    ) {
        let mut stream = BytesMut::new();
        let mut headers = Vec::new();
        for p in &pdus {
            let start = stream.len();
            p.encode(&mut stream, digests).expect("encodes");
            headers.push(stream[start..start + header_len(p)].to_vec());
        }
        let mut d = Deframer::new(DeframerConfig { digests, max_data_segment_len: MAX_DATA as u32 });
        let out = deframe_all(&mut d, &stream, &pieces);
        prop_assert_eq!(out.len(), pdus.len());
        for ((got, wire_len, raw_header), (want, header)) in out.iter().zip(pdus.iter().zip(&headers)) {
            prop_assert_eq!(got, want);
            prop_assert_eq!(*wire_len, want.wire_len(digests));
            prop_assert_eq!(&raw_header[..], &header[..]);
        }
        prop_assert_eq!(d.buffered(), 0);
        prop_assert!(d.next_frame().expect("nothing left").is_none());
    }

    /// (d) `Pdu::parse` never panics on arbitrary bytes, and whatever it accepts re-encodes to
    /// a buffer that parses to the same PDU.
    #[test]
    fn parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048), digests in digests()) {
        let buf = Bytes::from(bytes);
        if let Ok((pdu, used)) = Pdu::parse(&buf, digests) {
            prop_assert!(used <= buf.len());
            let again = encode(&pdu, digests);
            let (back, used2) = Pdu::parse(&again, digests).expect("re-encoded PDU parses");
            prop_assert_eq!(back, pdu);
            prop_assert_eq!(used2, again.len());
        }
    }

    /// (d) Arbitrary bytes that begin with a plausible header (a valid one with a few bytes
    /// changed, digests off so that the changes reach the field decoders): no panic, and a PDU
    /// that parses re-encodes stably.
    #[test]
    fn mutated_pdus_never_panic(
        pdu in any_pdu(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..5),
        digests in digests(),
    ) {
        let mut bytes = encode(&pdu, digests).to_vec();
        for (at, x) in &edits {
            // Concentrate on the header, where the structure is.
            let limit = header_len(&pdu).min(bytes.len());
            bytes[at.index(limit)] ^= x;
        }
        let buf = Bytes::from(bytes);
        match Pdu::parse(&buf, digests) {
            Ok((got, used)) => {
                prop_assert!(used <= buf.len());
                let again = encode(&got, digests);
                let (back, used2) = Pdu::parse(&again, digests).expect("re-encoded PDU parses");
                prop_assert_eq!(back, got);
                prop_assert_eq!(used2, again.len());
            }
            Err(e) => {
                if digests.header {
                    // Every edit is in the digested header: only digest or length errors.
                    prop_assert!(
                        matches!(e, PduError::HeaderDigest { .. } | PduError::Truncated { .. }),
                        "unexpected error {:?}",
                        e
                    );
                }
            }
        }
    }

    /// (d) The deframer never panics on arbitrary bytes fed in arbitrary pieces with an arbitrary
    /// configuration, and never buffers more than one bounded PDU.
    #[test]
    fn deframer_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        digests in digests(),
        max_data_segment_len in prop_oneof![Just(0u32), 0u32..=4096, Just(u32::MAX)],
        pieces in piece_lengths(),
    ) {
        let mut d = Deframer::new(DeframerConfig { digests, max_data_segment_len });
        let mut pos = 0;
        let mut i = 0;
        while pos < bytes.len() {
            let n = pieces[i % pieces.len()].min(bytes.len() - pos);
            i += 1;
            d.feed(&bytes[pos..pos + n]);
            pos += n;
            drain_arbitrary(&mut d)?;
            prop_assert!(d.buffered() <= bytes.len());
        }
    }

    /// (e) With both digests on, flipping any single bit of an encoded PDU is always detected:
    /// a header digest (or, if the bit is in a length field, truncation) error for a bit in the
    /// header part, a data digest error for a bit in the data, padding or data digest.
    #[test]
    fn single_bit_flip_is_detected_with_both_digests(pdu in any_pdu(), bit in any::<prop::sample::Index>()) {
        let wire = encode(&pdu, BOTH_DIGESTS);
        let bit = bit.index(wire.len() * 8);
        let mut bytes = wire.to_vec();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let flipped = Bytes::from(bytes);
        let err = Pdu::parse(&flipped, BOTH_DIGESTS)
            .expect_err("a single bit flip must never yield a PDU");
        if bit / 8 < header_part_len(&pdu, BOTH_DIGESTS) {
            prop_assert!(
                matches!(err, PduError::HeaderDigest { .. } | PduError::Truncated { .. }),
                "bit {} in the header part gave {:?}", bit, err
            );
        } else {
            prop_assert!(
                matches!(err, PduError::DataDigest { .. }),
                "bit {} in the data part gave {:?}", bit, err
            );
            prop_assert_eq!(err.reject_reason(), Some(RejectReason::DATA_DIGEST_ERROR));
        }

        // The deframer never hands the corrupted PDU out either.
        let mut d = Deframer::new(DeframerConfig { digests: BOTH_DIGESTS, max_data_segment_len: MAX_DATA as u32 });
        d.feed(&flipped);
        prop_assert!(!matches!(d.next_frame(), Ok(Some(_))));
    }

    /// (e) With one digest on, a flip in the part that digest covers is detected.
    #[test]
    fn single_bit_flip_in_covered_part_is_detected(
        pdu in any_pdu(),
        header_digest in any::<bool>(),
        bit in any::<prop::sample::Index>(),
    ) {
        // A data digest alone covers nothing when there is no data segment.
        let header_digest = header_digest || pdu.data().is_empty();
        let digests = Digests { header: header_digest, data: !header_digest };
        let wire = encode(&pdu, digests);
        let header_part = header_part_len(&pdu, digests);
        let covered = if digests.header { 0..header_part } else { header_part..wire.len() };
        let bit = covered.start * 8 + bit.index(covered.len() * 8);
        let mut bytes = wire.to_vec();
        bytes[bit / 8] ^= 1 << (bit % 8);
        let err = Pdu::parse(&Bytes::from(bytes), digests)
            .expect_err("a flip in a digested part must be detected");
        if digests.header {
            prop_assert!(matches!(err, PduError::HeaderDigest { .. } | PduError::Truncated { .. }), "{:?}", err);
        } else {
            prop_assert!(matches!(err, PduError::DataDigest { .. }), "{:?}", err);
        }
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// (c) The extreme split: a stream fed one byte at a time.
    #[test]
    fn deframer_byte_at_a_time(pdus in prop::collection::vec(any_pdu(), 1..4), digests in digests()) {
        let mut stream = BytesMut::new();
        for p in &pdus {
            p.encode(&mut stream, digests).expect("encodes");
        }
        let mut d = Deframer::new(DeframerConfig { digests, max_data_segment_len: MAX_DATA as u32 });
        let out = deframe_all(&mut d, &stream, &[1]);
        let got: Vec<Pdu> = out.into_iter().map(|(p, _, _)| p).collect();
        prop_assert_eq!(got, pdus);
        prop_assert_eq!(d.buffered(), 0);
    }

    /// (c) Whole stream at once: the deframer agrees with `Pdu::parse` walking the buffer.
    #[test]
    fn deframer_agrees_with_parse(pdus in prop::collection::vec(any_pdu(), 1..6), digests in digests()) {
        let mut stream = BytesMut::new();
        for p in &pdus {
            p.encode(&mut stream, digests).expect("encodes");
        }
        let stream = stream.freeze();
        let mut walked = Vec::new();
        let mut rest = stream.clone();
        while !rest.is_empty() {
            let (p, used) = Pdu::parse(&rest, digests).expect("parses");
            walked.push(p);
            rest = rest.slice(used..);
        }
        prop_assert_eq!(&walked, &pdus);
        let mut d = Deframer::new(DeframerConfig { digests, max_data_segment_len: MAX_DATA as u32 });
        let framed: Vec<Pdu> = deframe_all(&mut d, &stream, &[stream.len()])
            .into_iter()
            .map(|(p, _, _)| p)
            .collect();
        prop_assert_eq!(framed, walked);
    }
}
