//! Text parsing, C-bit reassembly and key negotiation (RFC 7143 §6, §13; RFC 7145 §6),
//! through the public API only.

use iscsi_proto::text::value::{
    decode_binary, encode_base64, encode_hex, format_number, parse_number, parse_number_in,
};
use iscsi_proto::text::{
    AssembleError, Digest, HandleOutput, Key, LocalConfig, NegotiatedParams, NegotiationError,
    Negotiator, Role, SessionType, Stage, TaskReporting, TextAssembler, TextError, TextLimits,
    encode_text, parse_text, parse_text_owned, split_text,
};
use proptest::prelude::*;

const INITIATOR: &str = "iqn.2024-01.org.example:host";
const TARGET: &str = "iqn.2024-01.org.example:disk";

fn initiator_config() -> LocalConfig {
    LocalConfig {
        initiator_name: Some(INITIATOR.into()),
        target_name: Some(TARGET.into()),
        ..LocalConfig::default()
    }
}

fn target_config() -> LocalConfig {
    LocalConfig {
        target_portal_group_tag: Some(1),
        ..LocalConfig::default()
    }
}

fn initiator_with(config: LocalConfig, session_type: SessionType) -> Negotiator {
    let mut n = Negotiator::new(Role::Initiator, config, session_type, true, false);
    n.set_stage(Stage::Operational);
    n
}

fn target_with(config: LocalConfig) -> Negotiator {
    let mut n = Negotiator::new(Role::Target, config, SessionType::Normal, true, false);
    n.set_stage(Stage::Operational);
    n
}

/// Raw pairs from a hand-written peer, with the names a first Login request needs.
fn request(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v = vec![
        ("InitiatorName".to_string(), INITIATOR.to_string()),
        ("TargetName".to_string(), TARGET.to_string()),
    ];
    v.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn answer<'a>(out: &'a HandleOutput, key: &str) -> Option<&'a str> {
    out.responses
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Sends pairs over the "wire": encode, split into PDUs of `mrdsl` bytes with the C bit,
/// reassemble, parse.
fn wire(pairs: &[(String, String)], mrdsl: usize) -> Vec<(String, String)> {
    let text = encode_text(pairs).unwrap();
    let mut assembler = TextAssembler::default();
    let mut whole = None;
    for chunk in split_text(&text, mrdsl) {
        // The receiver would answer each C=1 PDU with an empty PDU here.
        whole = assembler.feed(chunk.data, chunk.continue_bit).unwrap();
    }
    parse_text_owned(&whole.unwrap(), &TextLimits::default()).unwrap()
}

/// Runs an operational-stage negotiation between two negotiators until both are done.
fn run_operational(initiator: &mut Negotiator, target: &mut Negotiator, mrdsl: usize) {
    initiator.set_stage(Stage::Operational);
    target.set_stage(Stage::Operational);
    let mut req = initiator.offer();
    for _ in 0..8 {
        let out = target.handle(&wire(&req, mrdsl)).unwrap();
        let mut resp = out.responses;
        resp.extend(target.offer());
        let out = initiator.handle(&wire(&resp, mrdsl)).unwrap();
        let mut next = out.responses;
        next.extend(initiator.offer());
        if next.is_empty() && initiator.is_complete() && target.is_complete() {
            return;
        }
        req = next;
    }
    panic!("negotiation did not converge");
}

/// The session-wide and per-connection values both sides must agree on.
fn agreed(p: &NegotiatedParams) -> impl PartialEq + std::fmt::Debug + use<> {
    (
        (
            p.session_type,
            p.header_digest,
            p.data_digest,
            p.max_connections,
            p.initial_r2t,
            p.immediate_data,
            p.max_burst_length,
            p.first_burst_length,
        ),
        (
            p.default_time2wait,
            p.default_time2retain,
            p.max_outstanding_r2t,
            p.data_pdu_in_order,
            p.data_sequence_in_order,
            p.error_recovery_level,
            p.iscsi_protocol_level,
            p.task_reporting,
        ),
        (
            p.initiator_max_recv_data_segment_length,
            p.target_max_recv_data_segment_length,
            p.rdma_extensions,
            p.initiator_recv_data_segment_length,
            p.target_recv_data_segment_length,
            p.initiator_max_outstanding_unexpected_pdus,
            p.target_max_outstanding_unexpected_pdus,
        ),
    )
}

// ---------------------------------------------------------------------------------------
// Parsing and encodings
// ---------------------------------------------------------------------------------------

#[test]
fn parse_rejects_malformed_text() {
    let limits = TextLimits::default();
    assert!(matches!(
        parse_text(b"HeaderDigest=None", &limits),
        Err(TextError::MissingTerminator { .. })
    ));
    assert!(matches!(
        parse_text(b"HeaderDigest\0", &limits),
        Err(TextError::MissingEquals { .. })
    ));
    assert!(matches!(
        parse_text(b"=None\0", &limits),
        Err(TextError::EmptyKey { .. })
    ));
    assert!(matches!(
        parse_text(b"Header Digest=None\0", &limits),
        Err(TextError::InvalidKeyChar { .. })
    ));
    assert!(matches!(
        parse_text(format!("{}=1\0", "K".repeat(64)).as_bytes(), &limits),
        Err(TextError::KeyTooLong { .. })
    ));
    assert!(matches!(
        parse_text(
            format!("InitiatorAlias={}\0", "a".repeat(256)).as_bytes(),
            &limits
        ),
        Err(TextError::ValueTooLong { .. })
    ));
    assert!(matches!(
        parse_text(b"A=1\0\0B=2\0", &limits),
        Err(TextError::EmptyPair { .. })
    ));
    // Trailing zero padding is accepted.
    assert_eq!(parse_text(b"A=1\0\0\0\0", &limits).unwrap(), [("A", "1")]);
    let small = TextLimits {
        max_text_len: 4,
        ..TextLimits::default()
    };
    let err = parse_text(b"AB=1\0", &small).unwrap_err();
    assert!(matches!(err, TextError::TooLong { len: 5, max: 4 }));
    assert_eq!(err.login_status(), (0x03, 0x02));
}

#[test]
fn large_binary_values_allowed_for_chap() {
    let challenge = vec![0xa5u8; 1024];
    let hex = encode_hex(&challenge);
    let text = encode_text(&[("CHAP_C", hex.as_str())]).unwrap();
    let parsed = parse_text(&text, &TextLimits::default()).unwrap();
    assert_eq!(decode_binary(parsed[0].1, 1024).unwrap(), challenge);
    let b64 = encode_base64(&challenge);
    assert_eq!(decode_binary(&b64, 1024).unwrap(), challenge);
    assert!(decode_binary(&b64, 1023).is_err());
}

#[test]
fn number_encodings() {
    assert_eq!(parse_number("262144"), Ok(262_144));
    assert_eq!(parse_number("0x40000"), Ok(262_144));
    assert_eq!(parse_number("0BBAAA"), Ok(262_144));
    assert!(parse_number("0262144").is_err());
    assert!(parse_number_in("16777216", 512, 16_777_215).is_err());
    assert_eq!(format_number(8192), "8192");
}

#[test]
fn reassembly_of_pair_split_midway() {
    let text = b"MaxBurstLength=262144\0FirstBurstLength=65536\0";
    let mut assembler = TextAssembler::new(1024);
    // Split inside the first value and inside the second key.
    assert_eq!(assembler.feed(&text[..17], true), Ok(None));
    assert_eq!(assembler.feed(&text[17..30], true), Ok(None));
    let whole = assembler.feed(&text[30..], false).unwrap().unwrap();
    assert_eq!(
        parse_text(&whole, &TextLimits::default()).unwrap(),
        [("MaxBurstLength", "262144"), ("FirstBurstLength", "65536")]
    );
}

#[test]
fn reassembly_bound_is_an_error() {
    let mut assembler = TextAssembler::new(10);
    assert_eq!(assembler.feed(b"0123456", true), Ok(None));
    let err = assembler.feed(b"7890", true).unwrap_err();
    assert_eq!(err, AssembleError { len: 11, max: 10 });
    assert_eq!(err.login_status(), (0x03, 0x02));
    assert!(!assembler.is_partial());
}

#[test]
fn split_for_small_mrdsl_sets_c_bit() {
    let text = encode_text(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]).unwrap();
    let chunks: Vec<_> = split_text(&text, 16).collect();
    assert!(chunks.len() > 2);
    for (i, c) in chunks.iter().enumerate() {
        assert!(c.data.len() <= 16);
        assert_eq!(c.continue_bit, i + 1 < chunks.len());
    }
}

// ---------------------------------------------------------------------------------------
// Result functions
// ---------------------------------------------------------------------------------------

#[test]
fn minimum_key_takes_smaller_value() {
    let mut t = target_with(LocalConfig {
        max_burst_length: 65536,
        ..target_config()
    });
    let out = t
        .handle(&request(&[
            ("MaxBurstLength", "262144"),
            ("MaxOutstandingR2T", "4"),
        ]))
        .unwrap();
    assert_eq!(answer(&out, "MaxBurstLength"), Some("65536"));
    assert_eq!(answer(&out, "MaxOutstandingR2T"), Some("1"));
    assert_eq!(t.result().max_burst_length, 65536);
}

#[test]
fn maximum_key_takes_larger_value() {
    let mut t = target_with(LocalConfig {
        default_time2wait: 5,
        ..target_config()
    });
    let out = t.handle(&request(&[("DefaultTime2Wait", "3")])).unwrap();
    assert_eq!(answer(&out, "DefaultTime2Wait"), Some("5"));
    assert_eq!(t.result().default_time2wait, 5);
}

#[test]
fn or_and_boolean_keys() {
    let mut t = target_with(LocalConfig {
        initial_r2t: true,
        immediate_data: false,
        ..target_config()
    });
    let out = t
        .handle(&request(&[("InitialR2T", "No"), ("ImmediateData", "Yes")]))
        .unwrap();
    assert_eq!(answer(&out, "InitialR2T"), Some("Yes"));
    assert_eq!(answer(&out, "ImmediateData"), Some("No"));
    let r = t.result();
    assert!(r.initial_r2t);
    assert!(!r.immediate_data);
}

#[test]
fn list_key_takes_first_acceptable_offered_value() {
    let mut t = target_with(LocalConfig {
        header_digest: vec![Digest::None, Digest::Crc32c],
        data_digest: vec![Digest::Crc32c],
        ..target_config()
    });
    let out = t
        .handle(&request(&[
            ("HeaderDigest", "CRC32C,None"),
            ("DataDigest", "X-unknown,CRC32C"),
        ]))
        .unwrap();
    // The offerer's order wins; unknown values are ignored.
    assert_eq!(answer(&out, "HeaderDigest"), Some("CRC32C"));
    assert_eq!(answer(&out, "DataDigest"), Some("CRC32C"));
    assert_eq!(t.result().header_digest, Digest::Crc32c);
}

#[test]
fn list_key_without_common_value_is_rejected() {
    let mut t = target_with(target_config());
    let out = t.handle(&request(&[("HeaderDigest", "CRC32C")])).unwrap();
    // None is not offered, so it cannot be chosen: Reject, and the default (None) stays.
    assert_eq!(answer(&out, "HeaderDigest"), Some("Reject"));
    assert_eq!(t.result().header_digest, Digest::None);
}

#[test]
fn required_digest_refused_fails_negotiation() {
    let mut i = initiator_with(
        LocalConfig {
            header_digest: vec![Digest::Crc32c],
            ..initiator_config()
        },
        SessionType::Normal,
    );
    i.offer();
    let err = i.handle(&pairs(&[("HeaderDigest", "Reject")])).unwrap_err();
    assert!(matches!(err, NegotiationError::NoAcceptableValue { .. }));
    // A target requiring CRC32C and offered only None cannot agree either.
    let mut t = target_with(LocalConfig {
        data_digest: vec![Digest::Crc32c],
        ..target_config()
    });
    let err = t.handle(&request(&[("DataDigest", "None")])).unwrap_err();
    assert!(matches!(err, NegotiationError::NoAcceptableValue { .. }));
}

// ---------------------------------------------------------------------------------------
// Offerer side: answers outside the offered bounds
// ---------------------------------------------------------------------------------------

#[test]
fn offerer_refuses_answer_above_its_offer_for_minimum_key() {
    let mut i = initiator_with(
        LocalConfig {
            max_burst_length: 65536,
            ..initiator_config()
        },
        SessionType::Normal,
    );
    let offers = i.offer();
    assert!(
        offers
            .iter()
            .any(|(k, v)| k == "MaxBurstLength" && v == "65536")
    );
    let err = i
        .handle(&pairs(&[("MaxBurstLength", "131072")]))
        .unwrap_err();
    assert!(matches!(err, NegotiationError::InvalidAnswer { .. }));
    assert_eq!(err.login_status(), (0x02, 0x00));
}

#[test]
fn offerer_refuses_inadmissible_answers() {
    let cases: &[(&str, &str)] = &[
        ("DefaultTime2Wait", "1"),   // Maximum key answered below our offer (2)
        ("InitialR2T", "No"),        // OR key: our Yes can only be answered Yes
        ("HeaderDigest", "CRC32C"),  // not in our list (None)
        ("DataDigest", "None,None"), // a list as an answer
        ("ErrorRecoveryLevel", "3"), // outside the key's range
        ("MaxConnections", "lots"),  // not a number
        ("MaxBurstLength", "0x7fffffffff"), // far above our offer
    ];
    for (key, value) in cases {
        let mut i = initiator_with(initiator_config(), SessionType::Normal);
        i.offer();
        let err = i.handle(&pairs(&[(key, value)])).unwrap_err();
        assert!(
            matches!(err, NegotiationError::InvalidAnswer { .. }),
            "{key}={value}: {err:?}"
        );
    }
}

#[test]
fn target_as_offerer_checks_the_initiator_answer() {
    let mut t = target_with(LocalConfig {
        max_burst_length: 16384,
        ..target_config()
    });
    t.handle(&request(&[])).unwrap();
    let offers = t.offer();
    assert!(
        offers
            .iter()
            .any(|(k, v)| k == "MaxBurstLength" && v == "16384")
    );
    assert!(!t.is_complete());
    assert_eq!(t.outstanding_keys(), ["MaxBurstLength", "FirstBurstLength"]);
    let err = t
        .clone()
        .handle(&pairs(&[("MaxBurstLength", "20000")]))
        .unwrap_err();
    assert!(matches!(err, NegotiationError::InvalidAnswer { .. }));
    t.handle(&pairs(&[
        ("MaxBurstLength", "8192"),
        ("FirstBurstLength", "8192"),
    ]))
    .unwrap();
    assert!(t.is_complete());
    assert_eq!(t.result().max_burst_length, 8192);
}

// ---------------------------------------------------------------------------------------
// NotUnderstood, Irrelevant, Reject
// ---------------------------------------------------------------------------------------

#[test]
fn unknown_and_extension_keys_not_understood() {
    let mut t = target_with(target_config());
    let out = t
        .handle(&request(&[
            ("X-com.example.Feature", "Yes"),
            ("X#Registered", "1"),
            ("SomethingElse", "1"),
            ("headerdigest", "None"),
        ]))
        .unwrap();
    for key in [
        "X-com.example.Feature",
        "X#Registered",
        "SomethingElse",
        "headerdigest",
    ] {
        assert_eq!(answer(&out, key), Some("NotUnderstood"), "{key}");
    }
}

#[test]
fn registered_extension_keys_pass_through() {
    let mut t = target_with(LocalConfig {
        extension_keys: vec!["X-com.example.Feature".into()],
        ..target_config()
    });
    let out = t
        .handle(&request(&[("X-com.example.Feature", "Yes")]))
        .unwrap();
    assert!(answer(&out, "X-com.example.Feature").is_none());
    assert_eq!(out.passthrough, pairs(&[("X-com.example.Feature", "Yes")]));
}

#[test]
fn discovery_session_irrelevant_keys() {
    let mut t = target_with(target_config());
    let out = t
        .handle(&pairs(&[
            ("InitiatorName", INITIATOR),
            ("ImmediateData", "No"),
            ("MaxBurstLength", "4096"),
            ("MaxConnections", "4"),
            ("DataPDUInOrder", "No"),
            ("SessionType", "Discovery"),
            ("HeaderDigest", "None"),
            ("ErrorRecoveryLevel", "1"),
        ]))
        .unwrap();
    // SessionType was processed first although it came later in the text.
    assert_eq!(t.session_type(), SessionType::Discovery);
    assert_eq!(answer(&out, "ImmediateData"), Some("Irrelevant"));
    assert_eq!(answer(&out, "MaxBurstLength"), Some("Irrelevant"));
    assert_eq!(answer(&out, "MaxConnections"), Some("Irrelevant"));
    assert_eq!(answer(&out, "DataPDUInOrder"), Some("Irrelevant"));
    assert_eq!(answer(&out, "HeaderDigest"), Some("None"));
    assert_eq!(answer(&out, "ErrorRecoveryLevel"), Some("0"));
    let r = t.result();
    assert!(r.immediate_data);
    assert_eq!(r.max_burst_length, 262_144);
}

#[test]
fn discovery_initiator_offers_only_relevant_keys() {
    let mut i = initiator_with(
        LocalConfig {
            target_name: None,
            ..initiator_config()
        },
        SessionType::Discovery,
    );
    let offers = i.clone().offer();
    let keys: Vec<&str> = offers.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.contains(&"SessionType"));
    assert!(keys.contains(&"HeaderDigest"));
    assert!(keys.contains(&"MaxRecvDataSegmentLength"));
    for irrelevant in [
        "TargetName",
        "ImmediateData",
        "InitialR2T",
        "MaxBurstLength",
        "FirstBurstLength",
        "MaxConnections",
        "MaxOutstandingR2T",
        "DataPDUInOrder",
        "DataSequenceInOrder",
    ] {
        assert!(!keys.contains(&irrelevant), "{irrelevant}");
    }
    let mut t = target_with(target_config());
    run_operational(&mut i, &mut t, 8192);
    assert_eq!(agreed(&i.result()), agreed(&t.result()));
    assert_eq!(t.result().session_type, SessionType::Discovery);
}

#[test]
fn bad_value_rejected_and_offerer_keeps_default() {
    let mut t = target_with(target_config());
    let out = t
        .handle(&request(&[
            ("MaxBurstLength", "100"),  // below 512
            ("ImmediateData", "Maybe"), // not a boolean
            ("ErrorRecoveryLevel", "007"),
        ]))
        .unwrap();
    assert_eq!(answer(&out, "MaxBurstLength"), Some("Reject"));
    assert_eq!(answer(&out, "ImmediateData"), Some("Reject"));
    assert_eq!(answer(&out, "ErrorRecoveryLevel"), Some("Reject"));
    assert_eq!(t.result().max_burst_length, 262_144);

    // The offerer receiving Reject (or NotUnderstood, Irrelevant) keeps the default.
    let mut i = initiator_with(
        LocalConfig {
            max_burst_length: 4096,
            first_burst_length: 4096,
            error_recovery_level: 1,
            max_connections: 4,
            ..initiator_config()
        },
        SessionType::Normal,
    );
    i.offer();
    i.handle(&pairs(&[
        ("MaxBurstLength", "Reject"),
        ("ErrorRecoveryLevel", "NotUnderstood"),
        ("MaxConnections", "Irrelevant"),
    ]))
    .unwrap();
    let r = i.result();
    assert_eq!(r.max_burst_length, 262_144);
    assert_eq!(r.error_recovery_level, 0);
    assert_eq!(r.max_connections, 1);
}

#[test]
fn obsolete_marker_keys_are_rejected() {
    let mut t = target_with(target_config());
    let out = t
        .handle(&request(&[
            ("IFMarker", "No"),
            ("OFMarker", "Yes"),
            ("IFMarkInt", "2048~8192"),
            ("OFMarkInt", "1~65535"),
        ]))
        .unwrap();
    for key in ["IFMarker", "OFMarker", "IFMarkInt", "OFMarkInt"] {
        assert_eq!(answer(&out, key), Some("Reject"), "{key}");
    }
}

#[test]
fn unsolicited_special_value_is_an_error() {
    let mut t = target_with(target_config());
    let err = t
        .handle(&request(&[("MaxBurstLength", "Reject")]))
        .unwrap_err();
    assert!(matches!(err, NegotiationError::UnexpectedAnswer { .. }));
}

// ---------------------------------------------------------------------------------------
// Renegotiation, declarations, senders, stages, leading connection
// ---------------------------------------------------------------------------------------

#[test]
fn key_offered_twice_by_peer_is_renegotiation() {
    let mut t = target_with(target_config());
    t.handle(&request(&[("MaxBurstLength", "65536")])).unwrap();
    let err = t
        .handle(&pairs(&[("MaxBurstLength", "65536")]))
        .unwrap_err();
    assert!(matches!(err, NegotiationError::Renegotiation { .. }));
    assert_eq!(err.login_status(), (0x02, 0x00));

    // Twice in the same text.
    let mut t = target_with(target_config());
    let err = t
        .handle(&request(&[
            ("ErrorRecoveryLevel", "0"),
            ("ErrorRecoveryLevel", "0"),
        ]))
        .unwrap_err();
    assert!(matches!(err, NegotiationError::Renegotiation { .. }));

    // Declarations too, and unknown keys.
    let mut t = target_with(target_config());
    let err = t
        .handle(&request(&[
            ("MaxRecvDataSegmentLength", "8192"),
            ("MaxRecvDataSegmentLength", "16384"),
        ]))
        .unwrap_err();
    assert!(matches!(err, NegotiationError::Renegotiation { .. }));
    let mut t = target_with(target_config());
    t.handle(&request(&[("X-a", "1")])).unwrap();
    assert!(matches!(
        t.handle(&pairs(&[("X-a", "1")])),
        Err(NegotiationError::Renegotiation { .. })
    ));
}

#[test]
fn answer_to_our_offer_is_not_renegotiation() {
    let mut i = initiator_with(initiator_config(), SessionType::Normal);
    i.offer();
    i.handle(&pairs(&[("MaxBurstLength", "65536")])).unwrap();
    assert_eq!(i.result().max_burst_length, 65536);
    // But a second answer is.
    let err = i
        .handle(&pairs(&[("MaxBurstLength", "65536")]))
        .unwrap_err();
    assert!(matches!(err, NegotiationError::Renegotiation { .. }));
}

#[test]
fn declarative_keys_are_not_answered() {
    let mut t = target_with(target_config());
    let out = t
        .handle(&request(&[
            ("InitiatorAlias", "host one"),
            ("MaxRecvDataSegmentLength", "65536"),
            ("SessionType", "Normal"),
        ]))
        .unwrap();
    assert!(out.responses.is_empty(), "{:?}", out.responses);
    let r = t.result();
    assert_eq!(r.initiator_max_recv_data_segment_length, 65536);
    assert_eq!(r.initiator_alias.as_deref(), Some("host one"));
    assert_eq!(r.initiator_name.as_deref(), Some(INITIATOR));
    assert_eq!(r.target_name.as_deref(), Some(TARGET));
    // The target declares its own MaxRecvDataSegmentLength and portal group tag.
    let offers = t.offer();
    assert!(
        offers
            .iter()
            .any(|(k, v)| k == "MaxRecvDataSegmentLength" && v == "8192")
    );
    assert!(
        offers
            .iter()
            .any(|(k, v)| k == "TargetPortalGroupTag" && v == "1")
    );
    assert!(t.is_complete());

    // The initiator records the target's declarations without answering them.
    let mut i = initiator_with(initiator_config(), SessionType::Normal);
    i.offer();
    let out = i
        .handle(&pairs(&[
            ("TargetAlias", "disk"),
            ("TargetPortalGroupTag", "7"),
            ("MaxRecvDataSegmentLength", "262144"),
            ("TargetAddress", "192.0.2.1:3260,1"),
            ("TargetAddress", "[2001:db8::1]:3260,1"),
        ]))
        .unwrap();
    assert!(out.responses.is_empty());
    let r = i.result();
    assert_eq!(r.target_alias.as_deref(), Some("disk"));
    assert_eq!(r.target_portal_group_tag, Some(7));
    assert_eq!(r.target_max_recv_data_segment_length, 262_144);
    assert_eq!(r.max_send_data_segment_length(Role::Initiator), 262_144);
    assert_eq!(r.target_addresses.len(), 2);
}

#[test]
fn invalid_declaration_is_an_error() {
    let mut t = target_with(target_config());
    let err = t
        .handle(&request(&[("MaxRecvDataSegmentLength", "511")]))
        .unwrap_err();
    assert!(matches!(err, NegotiationError::InvalidValue { .. }));
}

#[test]
fn keys_from_the_wrong_sender_are_refused() {
    let mut i = initiator_with(initiator_config(), SessionType::Normal);
    let err = i
        .handle(&pairs(&[("InitiatorName", INITIATOR)]))
        .unwrap_err();
    assert!(matches!(
        err,
        NegotiationError::WrongSender {
            sender: Role::Target,
            ..
        }
    ));
    let mut t = target_with(target_config());
    let err = t.handle(&request(&[("TargetAlias", "me")])).unwrap_err();
    assert!(matches!(err, NegotiationError::WrongSender { .. }));
}

#[test]
fn keys_in_the_wrong_stage_are_refused() {
    // Authentication key in the operational stage.
    let mut t = target_with(target_config());
    let err = t.handle(&request(&[("CHAP_A", "5")])).unwrap_err();
    assert!(matches!(
        err,
        NegotiationError::WrongStage {
            stage: Stage::Operational,
            ..
        }
    ));
    // SendTargets during login.
    let mut t = target_with(target_config());
    assert!(matches!(
        t.handle(&request(&[("SendTargets", "All")])),
        Err(NegotiationError::WrongStage { .. })
    ));
    // A leading-only key in a full feature phase Text request.
    let mut t = target_with(target_config());
    t.handle(&request(&[])).unwrap();
    t.set_stage(Stage::FullFeature);
    assert!(matches!(
        t.handle(&pairs(&[("MaxBurstLength", "512")])),
        Err(NegotiationError::WrongStage { .. })
    ));
}

#[test]
fn full_feature_text_negotiation() {
    let mut t = target_with(target_config());
    t.handle(&request(&[("MaxRecvDataSegmentLength", "8192")]))
        .unwrap();
    t.set_stage(Stage::FullFeature);
    let out = t
        .handle(&pairs(&[
            ("SendTargets", "All"),
            ("MaxRecvDataSegmentLength", "16384"),
        ]))
        .unwrap();
    assert_eq!(out.passthrough, pairs(&[("SendTargets", "All")]));
    assert_eq!(t.result().initiator_max_recv_data_segment_length, 16384);
    // A new sequence may declare again; within one sequence it may not.
    assert!(
        t.handle(&pairs(&[("MaxRecvDataSegmentLength", "4096")]))
            .is_err()
    );
    t.begin_text_negotiation();
    t.handle(&pairs(&[("MaxRecvDataSegmentLength", "4096")]))
        .unwrap();

    // The initiator gets the SendTargets results handed back.
    let mut i = initiator_with(initiator_config(), SessionType::Discovery);
    i.set_stage(Stage::FullFeature);
    let out = i
        .handle(&pairs(&[
            ("TargetName", TARGET),
            ("TargetAddress", "192.0.2.1:3260,1"),
            ("TargetName", "iqn.2024-01.org.example:other"),
            ("TargetAddress", "192.0.2.2:3260,1"),
        ]))
        .unwrap();
    assert_eq!(out.passthrough.len(), 4);
}

#[test]
fn leading_only_keys_refused_on_other_connections() {
    let session = NegotiatedParams {
        max_burst_length: 65536,
        ..NegotiatedParams::default()
    };
    let mut t = Negotiator::new(
        Role::Target,
        target_config(),
        SessionType::Normal,
        false,
        false,
    )
    .with_session(&session);
    t.set_stage(Stage::Operational);
    let err = t
        .clone()
        .handle(&request(&[("MaxBurstLength", "8192")]))
        .unwrap_err();
    assert!(matches!(err, NegotiationError::LeadingOnly { .. }));
    assert_eq!(err.login_status(), (0x02, 0x00));
    // Connection keys are fine, and the session values are kept.
    let out = t
        .handle(&request(&[
            ("HeaderDigest", "None"),
            ("MaxRecvDataSegmentLength", "16384"),
        ]))
        .unwrap();
    assert_eq!(answer(&out, "HeaderDigest"), Some("None"));
    assert_eq!(t.result().max_burst_length, 65536);

    // The initiator does not offer leading-only keys there.
    let mut i = Negotiator::new(
        Role::Initiator,
        initiator_config(),
        SessionType::Normal,
        false,
        false,
    );
    i.set_stage(Stage::Operational);
    let offers = i.offer();
    assert!(offers.iter().all(|(k, _)| {
        let def = Key::from_name(k).unwrap().def();
        def.usage != iscsi_proto::text::keys::Usage::LeadingOnly
    }));
    assert!(offers.iter().any(|(k, _)| k == "HeaderDigest"));
}

#[test]
fn session_type_on_other_connections_must_match() {
    let session = NegotiatedParams {
        session_type: SessionType::Normal,
        ..NegotiatedParams::default()
    };
    let t = Negotiator::new(
        Role::Target,
        target_config(),
        SessionType::Normal,
        false,
        false,
    )
    .with_session(&session);
    let mut ok = t.clone();
    ok.set_stage(Stage::Operational);
    ok.handle(&request(&[("SessionType", "Normal")])).unwrap();
    let mut bad = t;
    bad.set_stage(Stage::Operational);
    let err = bad
        .handle(&request(&[("SessionType", "Discovery")]))
        .unwrap_err();
    assert_eq!(err.login_status(), (0x02, 0x09));
}

// ---------------------------------------------------------------------------------------
// FirstBurstLength <= MaxBurstLength
// ---------------------------------------------------------------------------------------

#[test]
fn first_burst_never_exceeds_max_burst() {
    // Responder caps its answer.
    let mut t = target_with(target_config());
    let out = t
        .handle(&request(&[
            ("FirstBurstLength", "262144"),
            ("MaxBurstLength", "8192"),
        ]))
        .unwrap();
    assert_eq!(answer(&out, "FirstBurstLength"), Some("8192"));
    // The offerer clamps a result that still breaks the rule.
    let mut i = initiator_with(initiator_config(), SessionType::Normal);
    i.offer();
    i.handle(&pairs(&[
        ("MaxBurstLength", "4096"),
        ("FirstBurstLength", "65536"),
    ]))
    .unwrap();
    let r = i.result();
    assert_eq!(r.max_burst_length, 4096);
    assert_eq!(r.first_burst_length, 4096);
    // Local configuration is normalised too.
    let i = Negotiator::new(
        Role::Initiator,
        LocalConfig {
            max_burst_length: 1024,
            first_burst_length: 65536,
            ..initiator_config()
        },
        SessionType::Normal,
        true,
        false,
    );
    assert_eq!(i.config().first_burst_length, 1024);
}

// ---------------------------------------------------------------------------------------
// Required keys and session type → Login status
// ---------------------------------------------------------------------------------------

#[test]
fn missing_names_map_to_missing_parameter() {
    let mut t = target_with(target_config());
    let err = t.handle(&pairs(&[("TargetName", TARGET)])).unwrap_err();
    assert_eq!(
        err,
        NegotiationError::MissingParameter {
            key: "InitiatorName"
        }
    );
    assert_eq!(err.login_status(), (0x02, 0x07));
    let mut t = target_with(target_config());
    let err = t
        .handle(&pairs(&[("InitiatorName", INITIATOR)]))
        .unwrap_err();
    assert_eq!(err.login_status(), (0x02, 0x07));
    // A discovery session needs no TargetName.
    let mut t = target_with(target_config());
    t.handle(&pairs(&[
        ("InitiatorName", INITIATOR),
        ("SessionType", "Discovery"),
    ]))
    .unwrap();
}

#[test]
fn unsupported_session_type() {
    let mut t = target_with(target_config());
    let err = t.handle(&request(&[("SessionType", "Bogus")])).unwrap_err();
    assert_eq!(err.login_status(), (0x02, 0x09));
}

#[test]
fn malformed_text_maps_to_initiator_error() {
    let mut t = target_with(target_config());
    let err = t.handle_text(b"InitiatorName").unwrap_err();
    assert!(matches!(err, NegotiationError::Text(_)));
    assert_eq!(err.login_status(), (0x02, 0x00));
}

// ---------------------------------------------------------------------------------------
// iSER (RFC 7145)
// ---------------------------------------------------------------------------------------

#[test]
fn iser_negotiation_end_to_end() {
    let mut i = Negotiator::new(
        Role::Initiator,
        LocalConfig {
            header_digest: vec![Digest::Crc32c, Digest::None],
            initiator_recv_data_segment_length: 262_144,
            target_recv_data_segment_length: 131_072,
            max_outstanding_unexpected_pdus: 16,
            ..initiator_config()
        },
        SessionType::Normal,
        true,
        true,
    );
    let mut t = Negotiator::new(
        Role::Target,
        LocalConfig {
            initiator_recv_data_segment_length: 65536,
            target_recv_data_segment_length: 262_144,
            ..target_config()
        },
        SessionType::Normal,
        true,
        true,
    );
    i.set_stage(Stage::Operational);
    let offers = i.clone().offer();
    let keys: Vec<&str> = offers.iter().map(|(k, _)| k.as_str()).collect();
    assert!(keys.contains(&"RDMAExtensions"));
    assert!(keys.contains(&"InitiatorRecvDataSegmentLength"));
    assert!(keys.contains(&"MaxOutstandingUnexpectedPDUs"));
    // Digests and MaxRecvDataSegmentLength do not apply with iSER.
    assert!(!keys.contains(&"HeaderDigest"));
    assert!(!keys.contains(&"MaxRecvDataSegmentLength"));
    run_operational(&mut i, &mut t, 8192);
    let (ri, rt) = (i.result(), t.result());
    assert_eq!(agreed(&ri), agreed(&rt));
    assert!(ri.rdma_extensions);
    assert_eq!(ri.initiator_recv_data_segment_length, 65536);
    assert_eq!(ri.target_recv_data_segment_length, 131_072);
    assert_eq!(ri.max_recv_data_segment_length(Role::Initiator), 65536);
    assert_eq!(ri.max_send_data_segment_length(Role::Initiator), 131_072);
    assert_eq!(rt.initiator_max_outstanding_unexpected_pdus, 16);
    assert_eq!(rt.target_max_outstanding_unexpected_pdus, 0);
    assert_eq!(ri.header_digest, Digest::None);
}

#[test]
fn iser_digests_irrelevant_with_rdma() {
    let mut t = Negotiator::new(
        Role::Target,
        LocalConfig {
            header_digest: vec![Digest::Crc32c, Digest::None],
            ..target_config()
        },
        SessionType::Normal,
        true,
        true,
    );
    t.set_stage(Stage::Operational);
    let out = t
        .handle(&request(&[
            ("HeaderDigest", "CRC32C,None"),
            ("TargetRecvDataSegmentLength", "65536"),
            ("RDMAExtensions", "Yes"),
        ]))
        .unwrap();
    assert_eq!(answer(&out, "RDMAExtensions"), Some("Yes"));
    assert_eq!(answer(&out, "HeaderDigest"), Some("Irrelevant"));
    assert_eq!(answer(&out, "TargetRecvDataSegmentLength"), Some("8192"));
    assert_eq!(t.result().header_digest, Digest::None);
}

#[test]
fn iser_keys_without_rdma() {
    // A target without iSER answers RDMAExtensions=No (AND), and the iSER keys are irrelevant.
    let mut t = target_with(target_config());
    let out = t
        .handle(&request(&[
            ("RDMAExtensions", "Yes"),
            ("InitiatorRecvDataSegmentLength", "65536"),
        ]))
        .unwrap();
    assert_eq!(answer(&out, "RDMAExtensions"), Some("No"));
    assert_eq!(
        answer(&out, "InitiatorRecvDataSegmentLength"),
        Some("Irrelevant")
    );
    assert!(!t.result().rdma_extensions);

    // RDMAExtensions is leading-only.
    let mut t = Negotiator::new(
        Role::Target,
        target_config(),
        SessionType::Normal,
        false,
        true,
    );
    t.set_stage(Stage::Operational);
    assert!(matches!(
        t.handle(&request(&[("RDMAExtensions", "Yes")])),
        Err(NegotiationError::LeadingOnly { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// Whole exchanges
// ---------------------------------------------------------------------------------------

#[test]
fn target_answers_every_offered_key() {
    let mut i = initiator_with(
        LocalConfig {
            iscsi_protocol_level: 2,
            task_reporting: vec![TaskReporting::ResponseFence, TaskReporting::Rfc3720],
            ..initiator_config()
        },
        SessionType::Normal,
    );
    let offers = i.offer();
    let mut t = target_with(target_config());
    let out = t.handle(&offers).unwrap();
    for (key, _) in &offers {
        let def = Key::from_name(key).unwrap().def();
        if !def.is_declarative() {
            assert!(answer(&out, key).is_some(), "{key} not answered");
        }
    }
    assert_eq!(answer(&out, "iSCSIProtocolLevel"), Some("1"));
    assert_eq!(answer(&out, "TaskReporting"), Some("RFC3720"));
}

#[test]
fn initiator_sees_completion() {
    let mut i = initiator_with(initiator_config(), SessionType::Normal);
    let offers = i.offer();
    assert!(!i.is_complete());
    let mut t = target_with(target_config());
    let mut out = t.handle(&offers).unwrap().responses;
    // Answer all but one key first.
    let held = out.pop().unwrap();
    i.handle(&out).unwrap();
    assert!(!i.is_complete());
    assert_eq!(i.outstanding_keys(), [held.0.as_str()]);
    i.handle(&[held]).unwrap();
    assert!(i.is_complete());
}

#[test]
fn full_login_back_to_back() {
    let mut i = Negotiator::new(
        Role::Initiator,
        LocalConfig {
            initiator_alias: Some("host".into()),
            header_digest: vec![Digest::Crc32c, Digest::None],
            data_digest: vec![Digest::None],
            max_recv_data_segment_length: 262_144,
            max_burst_length: 1_048_576,
            first_burst_length: 262_144,
            initial_r2t: false,
            immediate_data: true,
            max_connections: 8,
            error_recovery_level: 2,
            default_time2wait: 0,
            default_time2retain: 0,
            ..initiator_config()
        },
        SessionType::Normal,
        true,
        false,
    );
    let mut t = Negotiator::new(
        Role::Target,
        LocalConfig {
            target_alias: Some("disk".into()),
            header_digest: vec![Digest::Crc32c, Digest::None],
            max_recv_data_segment_length: 65536,
            max_burst_length: 524_288,
            max_connections: 4,
            error_recovery_level: 1,
            initial_r2t: false,
            ..target_config()
        },
        SessionType::Normal,
        true,
        false,
    );

    // Security stage: names and the authenticator's keys.
    let mut req = i.offer();
    req.push(("AuthMethod".into(), "CHAP,None".into()));
    let out = t.handle(&wire(&req, 8192)).unwrap();
    assert_eq!(out.passthrough, pairs(&[("AuthMethod", "CHAP,None")]));
    let mut resp = out.responses;
    resp.push(("AuthMethod".into(), "None".into())); // the authenticator's answer
    resp.extend(t.offer());
    let out = i.handle(&wire(&resp, 8192)).unwrap();
    assert_eq!(out.passthrough, pairs(&[("AuthMethod", "None")]));
    assert!(out.responses.is_empty());

    // Operational stage, with a small MaxRecvDataSegmentLength to force C-bit splits.
    run_operational(&mut i, &mut t, 100);
    let (ri, rt) = (i.result(), t.result());
    assert_eq!(agreed(&ri), agreed(&rt));
    assert_eq!(ri.header_digest, Digest::Crc32c);
    assert_eq!(ri.data_digest, Digest::None);
    assert_eq!(ri.max_burst_length, 524_288);
    assert_eq!(ri.first_burst_length, 65_536);
    assert!(!ri.initial_r2t);
    assert_eq!(ri.max_connections, 4);
    assert_eq!(ri.error_recovery_level, 1);
    assert_eq!(ri.default_time2wait, 2);
    assert_eq!(ri.default_time2retain, 0);
    assert_eq!(ri.max_send_data_segment_length(Role::Initiator), 65536);
    assert_eq!(ri.max_send_data_segment_length(Role::Target), 262_144);
    assert_eq!(ri.target_alias.as_deref(), Some("disk"));
    assert_eq!(rt.initiator_alias.as_deref(), Some("host"));
    assert_eq!(ri.target_portal_group_tag, Some(1));
}

#[test]
fn target_offers_its_non_default_wishes() {
    let mut t = target_with(LocalConfig {
        data_digest: vec![Digest::Crc32c, Digest::None],
        ..target_config()
    });
    // A minimal initiator sends only the names.
    t.handle(&request(&[])).unwrap();
    let offers = t.offer();
    assert!(
        offers
            .iter()
            .any(|(k, v)| k == "DataDigest" && v == "CRC32C,None")
    );
    // Keys at their default are not offered by a target.
    assert!(!offers.iter().any(|(k, _)| k == "HeaderDigest"));
    assert!(!t.is_complete());
    assert_eq!(t.outstanding_keys(), ["DataDigest"]);

    // Our initiator answers the target's offer before making its own.
    let mut i = initiator_with(
        LocalConfig {
            data_digest: vec![Digest::Crc32c, Digest::None],
            ..initiator_config()
        },
        SessionType::Normal,
    );
    let out = i.handle(&offers).unwrap();
    assert_eq!(answer(&out, "DataDigest"), Some("CRC32C"));
    assert!(!i.offer().iter().any(|(k, _)| k == "DataDigest"));
    t.handle(&out.responses).unwrap();
    assert!(t.is_complete());
    assert_eq!(t.result().data_digest, Digest::Crc32c);
    assert_eq!(i.result().data_digest, Digest::Crc32c);
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

fn key_strategy() -> impl Strategy<Value = String> {
    "[A-Za-z0-9.+@_-]{1,63}"
}

fn value_strategy() -> impl Strategy<Value = String> {
    // Any UTF-8 without NUL, at most 255 bytes.
    "[^\u{0}]{0,60}".prop_filter("value <= 255 bytes", |v| v.len() <= 255)
}

fn digest_list() -> impl Strategy<Value = Vec<Digest>> {
    prop_oneof![
        Just(vec![Digest::None]),
        Just(vec![Digest::Crc32c, Digest::None]),
        Just(vec![Digest::None, Digest::Crc32c]),
    ]
}

prop_compose! {
    fn config_strategy()(
        hd in digest_list(),
        dd in digest_list(),
        max_connections in 1u16..=65535,
        initial_r2t in any::<bool>(),
        immediate_data in any::<bool>(),
        mrdsl in 512u32..=16_777_215,
        mbl in 512u32..=16_777_215,
        fbl in 512u32..=16_777_215,
        t2w in 0u16..=3600,
        t2r in 0u16..=3600,
        mor2t in 1u16..=65535,
        dpio in any::<bool>(),
        dsio in any::<bool>(),
        erl in 0u8..=2,
    ) -> LocalConfig {
        LocalConfig {
            header_digest: hd,
            data_digest: dd,
            max_connections,
            initial_r2t,
            immediate_data,
            max_recv_data_segment_length: mrdsl,
            max_burst_length: mbl,
            first_burst_length: fbl,
            default_time2wait: t2w,
            default_time2retain: t2r,
            max_outstanding_r2t: mor2t,
            data_pdu_in_order: dpio,
            data_sequence_in_order: dsio,
            error_recovery_level: erl,
            ..LocalConfig::default()
        }
    }
}

proptest! {
    #[test]
    fn prop_encode_parse_round_trip(
        pairs in prop::collection::vec((key_strategy(), value_strategy()), 0..20)
    ) {
        let text = encode_text(&pairs).unwrap();
        let parsed = parse_text_owned(&text, &TextLimits::default()).unwrap();
        prop_assert_eq!(parsed, pairs);
    }

    #[test]
    fn prop_parser_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
        let limits = TextLimits { max_text_len: 256, ..TextLimits::default() };
        if let Ok(pairs) = parse_text(&data, &limits) {
            // Whatever parses re-encodes to the same text, padding aside.
            let text = encode_text(&pairs).unwrap();
            prop_assert!(data.starts_with(&text));
        }
    }

    #[test]
    fn prop_parser_never_panics_on_texty_bytes(
        data in prop::collection::vec(prop_oneof![Just(0u8), Just(b'='), Just(b'A'), Just(b'#'),
            Just(b'X'), Just(0xffu8), any::<u8>()], 0..300)
    ) {
        let _ = parse_text(&data, &TextLimits::default());
    }

    #[test]
    fn prop_reassembly_of_any_split(
        text in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(text.len() + 1)).collect();
        points.sort_unstable();
        let mut assembler = TextAssembler::new(2000);
        let mut start = 0;
        for p in points {
            prop_assert_eq!(assembler.feed(&text[start..p], true).unwrap(), None);
            start = p;
        }
        let whole = assembler.feed(&text[start..], false).unwrap();
        prop_assert_eq!(whole, Some(text));
    }

    #[test]
    fn prop_split_then_reassemble(
        text in prop::collection::vec(any::<u8>(), 0..3000),
        max in 1usize..600,
    ) {
        let mut assembler = TextAssembler::new(3000);
        let mut result = None;
        let mut count = 0;
        for chunk in split_text(&text, max) {
            prop_assert!(chunk.data.len() <= max);
            prop_assert!(result.is_none());
            result = assembler.feed(chunk.data, chunk.continue_bit).unwrap();
            count += 1;
        }
        prop_assert_eq!(count, text.len().div_ceil(max).max(1));
        prop_assert_eq!(result, Some(text));
    }

    #[test]
    fn prop_numbers_round_trip(n in any::<u64>()) {
        prop_assert_eq!(parse_number(&format_number(n)), Ok(n));
        prop_assert_eq!(parse_number(&format!("0x{n:x}")), Ok(n));
        prop_assert_eq!(parse_number(&encode_base64(&n.to_be_bytes())), Ok(n));
    }

    #[test]
    fn prop_binary_round_trip(bytes in prop::collection::vec(any::<u8>(), 1..300)) {
        prop_assert_eq!(decode_binary(&encode_hex(&bytes), 300).unwrap(), bytes.clone());
        prop_assert_eq!(decode_binary(&encode_base64(&bytes), 300).unwrap(), bytes);
    }

    #[test]
    fn prop_negotiator_never_panics(
        pairs in prop::collection::vec(
            (prop_oneof![
                Just("HeaderDigest".to_string()), Just("MaxBurstLength".to_string()),
                Just("FirstBurstLength".to_string()), Just("InitialR2T".to_string()),
                Just("SessionType".to_string()), Just("RDMAExtensions".to_string()),
                Just("InitiatorName".to_string()), Just("TargetName".to_string()),
                Just("MaxRecvDataSegmentLength".to_string()), Just("CHAP_C".to_string()),
                Just("TargetAddress".to_string()), Just("IFMarkInt".to_string()),
                Just("MaxOutstandingUnexpectedPDUs".to_string()),
                Just("TaskReporting".to_string()),
                "[A-Za-z#=\u{0} -]{0,70}",
            ],
            prop_oneof![
                Just("Yes".to_string()), Just("No".to_string()), Just("Reject".to_string()),
                Just("CRC32C,None".to_string()), Just("0x1000".to_string()),
                Just("Discovery".to_string()), Just("".to_string()),
                "[0-9]{1,25}", "\\PC{0,40}",
            ]),
            0..24),
        role in prop_oneof![Just(Role::Initiator), Just(Role::Target)],
        stage in prop_oneof![Just(Stage::Security), Just(Stage::Operational),
            Just(Stage::FullFeature)],
        leading in any::<bool>(),
        iser in any::<bool>(),
    ) {
        let mut n = Negotiator::new(role, initiator_config(), SessionType::Normal, leading, iser);
        n.set_stage(stage);
        let _ = n.offer();
        let _ = n.handle(&pairs);
        let _ = n.handle(&pairs);
        let _ = n.offer();
        let r = n.result();
        prop_assert!(r.first_burst_length <= r.max_burst_length);
        let text = encode_text(&pairs);
        if let Ok(text) = text {
            let mut m = Negotiator::new(role.peer(), target_config(), SessionType::Normal,
                leading, iser);
            m.set_stage(stage);
            let _ = m.handle_text(&text);
        }
    }

    #[test]
    fn prop_both_sides_agree_and_follow_result_functions(
        ic in config_strategy(),
        tc in config_strategy(),
    ) {
        let mut i = Negotiator::new(
            Role::Initiator,
            LocalConfig { initiator_name: Some(INITIATOR.into()),
                target_name: Some(TARGET.into()), ..ic.clone() },
            SessionType::Normal, true, false);
        let mut t = Negotiator::new(Role::Target, tc.clone(), SessionType::Normal, true, false);
        run_operational(&mut i, &mut t, 8192);
        let (ri, rt) = (i.result(), t.result());
        prop_assert_eq!(agreed(&ri), agreed(&rt));
        let ic = i.config().clone();
        let tc = t.config().clone();
        prop_assert_eq!(ri.max_burst_length, ic.max_burst_length.min(tc.max_burst_length));
        prop_assert_eq!(ri.max_connections, ic.max_connections.min(tc.max_connections));
        prop_assert_eq!(ri.default_time2wait, ic.default_time2wait.max(tc.default_time2wait));
        prop_assert_eq!(ri.default_time2retain,
            ic.default_time2retain.min(tc.default_time2retain));
        prop_assert_eq!(ri.error_recovery_level,
            ic.error_recovery_level.min(tc.error_recovery_level));
        prop_assert_eq!(ri.initial_r2t, ic.initial_r2t || tc.initial_r2t);
        prop_assert_eq!(ri.immediate_data, ic.immediate_data && tc.immediate_data);
        prop_assert_eq!(ri.data_pdu_in_order, ic.data_pdu_in_order || tc.data_pdu_in_order);
        prop_assert!(ri.first_burst_length <= ri.max_burst_length);
        if !ri.initial_r2t || ri.immediate_data {
            prop_assert_eq!(ri.first_burst_length,
                ic.first_burst_length.min(tc.first_burst_length).min(ri.max_burst_length));
        }
        prop_assert_eq!(ri.header_digest, list_pick(&ic.header_digest, &tc.header_digest));
        prop_assert_eq!(ri.data_digest, list_pick(&ic.data_digest, &tc.data_digest));
        prop_assert_eq!(ri.initiator_max_recv_data_segment_length,
            ic.max_recv_data_segment_length);
        prop_assert_eq!(ri.target_max_recv_data_segment_length,
            tc.max_recv_data_segment_length);
    }
}

/// The list rule: the first value of the offerer's list that the responder accepts.
fn list_pick(offer: &[Digest], accept: &[Digest]) -> Digest {
    offer
        .iter()
        .find(|d| accept.contains(d))
        .copied()
        .unwrap_or_default()
}
