//! In-memory tests of the sans-IO target core (RFC 7143): [`TargetLogin`] and
//! [`TargetSession`] driven by a small scripted initiator (`support`), with virtual time.
//!
//! Every PDU the target produces goes through the harness, which checks that it encodes and
//! parses back, that StatSN advances by exactly one per status-bearing PDU (and that R2T-like
//! Get_Data requests and NOP-In pings show the next StatSN without taking it), and that
//! ExpCmdSN and MaxCmdSN never move backwards. The fixtures start CmdSN and StatSN a few
//! numbers before 2^32 so that serial arithmetic (RFC 1982) wraps in every test.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::auth::{
    ChapAlgorithm, ChapCredential, InitiatorAuthConfig, InitiatorAuthenticator, TargetAuthConfig,
};
use iscsi_proto::datamover::{DataError, PutData, R2tRequest};
use iscsi_proto::pdu::{
    AsyncEvent, Digests, Isid, LoginRequest, LoginResponse, LoginStatus, LogoutReason,
    LogoutResponseCode, Lun, NopIn, NopOut, Opcode, ScsiResponse, ScsiStatus, ServiceResponse,
    SnackRequest, Stage, TaskAttribute, TaskMgmtFunction, TaskMgmtResponse, TmfResponse, Tsih,
};
use iscsi_proto::target::{
    CloseReason, Event, LoginIdentity, LoginStep, NewCommand, Reply, ScsiOutcome, SendTargetsQuery,
    TargetLogin, TmfRequest,
};
use iscsi_proto::text::{LocalConfig, SessionType};
use iscsi_proto::{CmdSn, DataSn, Itt, Pdu, PduError, R2tSn, RejectReason, StatSn, Ttt};
use proptest::prelude::*;

use support::random::{Driver, config, many_targets, op};
use support::*;

// =============================================================================================
// Login helpers
// =============================================================================================

fn names_normal() -> Vec<(String, String)> {
    kv(&[
        ("InitiatorName", INITIATOR),
        ("SessionType", "Normal"),
        ("TargetName", TARGET),
    ])
}

fn with(mut pairs: Vec<(String, String)>, more: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.extend(kv(more));
    pairs
}

fn new_login(negotiation: LocalConfig, queue_depth: u32) -> TargetLogin {
    TargetLogin::new(login_config(negotiation, queue_depth), false)
}

fn identity(session_type: SessionType, target: Option<&str>) -> LoginIdentity {
    LoginIdentity {
        initiator_name: INITIATOR.into(),
        target_name: target.map(str::to_owned),
        session_type,
        isid: ISID,
        tsih: Tsih(0),
        cid: 1,
    }
}

const STAT0: StatSn = StatSn(FIRST_STAT_SN);
const CMD0: CmdSn = CmdSn(FIRST_CMD_SN);

/// Response fields shared by every login response of a login that goes on.
fn assert_login_response(r: &LoginResponse, stat_sn: StatSn, csg: Stage, transit: Option<Stage>) {
    assert_eq!(r.stat_sn, stat_sn, "StatSN");
    assert_eq!(r.exp_cmd_sn, CMD0, "ExpCmdSN is the login's CmdSN");
    assert_eq!(r.csg, csg, "CSG");
    assert!(!r.cont);
    match transit {
        Some(nsg) => {
            assert!(r.transit, "T=1 expected");
            assert_eq!(r.nsg, nsg, "NSG");
        }
        None => assert!(!r.transit, "T=0 expected"),
    }
}

// =============================================================================================
// 1. Login with AuthMethod=None
// =============================================================================================

#[test]
fn login_none_security_then_operational_then_full_feature() {
    let negotiation = LocalConfig {
        target_portal_group_tag: Some(1),
        max_recv_data_segment_length: 65536,
        max_burst_length: 131_072,
        first_burst_length: 65536,
        immediate_data: false,
        initial_r2t: true,
        max_outstanding_r2t: 8,
        ..LocalConfig::default()
    };
    let mut login = new_login(negotiation, 32);
    let mut host = Host::open();
    let mut script = LoginScript::default();

    // Security stage: AuthMethod=None, asking for the operational stage.
    let r1 = script.req(
        Stage::Security,
        Stage::Operational,
        true,
        &with(names_normal(), &[("AuthMethod", "None")]),
    );
    let resp = expect_continue(script.step(&mut login, &mut host, &r1));
    assert_login_response(&resp, STAT0, Stage::Security, Some(Stage::Operational));
    assert_eq!(resp.tsih, Tsih(0), "TSIH only in the final response");
    assert!(resp.max_cmd_sn.is_at_or_after(resp.exp_cmd_sn.sub(1)));
    let answers = parse(&resp.data);
    assert_eq!(value(&answers, "AuthMethod"), Some("None"));
    assert_eq!(
        value(&answers, "TargetPortalGroupTag"),
        Some("1"),
        "TPGT in the first response (RFC 7143 §13.9)"
    );
    assert_eq!(
        host.authorized,
        [identity(SessionType::Normal, Some(TARGET))]
    );
    assert!(host.opened.is_empty());

    // Operational stage, asking for full feature phase.
    let offers = kv(&[
        ("HeaderDigest", "CRC32C,None"),
        ("DataDigest", "None"),
        ("MaxRecvDataSegmentLength", "16384"),
        ("InitialR2T", "No"),
        ("ImmediateData", "Yes"),
        ("MaxBurstLength", "262144"),
        ("FirstBurstLength", "262144"),
        ("MaxOutstandingR2T", "4"),
        ("DefaultTime2Wait", "2"),
        ("DefaultTime2Retain", "20"),
    ]);
    let r2 = script.req(Stage::Operational, Stage::FullFeature, true, &offers);
    let resp = expect_complete(script.step(&mut login, &mut host, &r2));
    assert_login_response(
        &resp,
        STAT0.next(),
        Stage::Operational,
        Some(Stage::FullFeature),
    );
    assert_eq!(resp.stat_sn, StatSn(0xffff_fffe));
    assert_eq!(resp.tsih, HOST_TSIH, "TSIH from the host");
    assert_eq!(
        resp.max_cmd_sn,
        CMD0.add(32).sub(1),
        "MaxCmdSN = ExpCmdSN + queue_depth - 1"
    );
    assert_eq!(resp.max_cmd_sn, CmdSn(29), "wraps");
    let answers = parse(&resp.data);
    // Our HeaderDigest list is None only.
    assert_eq!(value(&answers, "HeaderDigest"), Some("None"));
    assert_eq!(value(&answers, "DataDigest"), Some("None"));
    // MaxBurstLength: minimum.
    assert_eq!(value(&answers, "MaxBurstLength"), Some("131072"));
    // InitialR2T: OR (our Yes wins); ImmediateData: AND (our No wins).
    assert_eq!(value(&answers, "InitialR2T"), Some("Yes"));
    assert_eq!(value(&answers, "ImmediateData"), Some("No"));
    // No unsolicited data at all: FirstBurstLength is irrelevant (RFC 7143 §13.14).
    assert_eq!(value(&answers, "FirstBurstLength"), Some("Irrelevant"));
    assert_eq!(value(&answers, "MaxOutstandingR2T"), Some("4"));
    // MaxRecvDataSegmentLength is declared, not answered: the target states its own value once.
    let mrdsl: Vec<_> = answers
        .iter()
        .filter(|(k, _)| k == "MaxRecvDataSegmentLength")
        .collect();
    assert_eq!(mrdsl.len(), 1);
    assert_eq!(mrdsl[0].1, "65536");
    assert_eq!(
        host.opened,
        [(identity(SessionType::Normal, Some(TARGET)), None)]
    );
    assert!(login.is_done());

    let outcome = login.finish().expect("completed login");
    assert_eq!(outcome.tsih, HOST_TSIH);
    assert_eq!(outcome.user, None);
    assert_eq!(outcome.exp_cmd_sn, CMD0);
    assert_eq!(outcome.stat_sn, STAT0.add(2));
    assert_eq!(
        outcome.identity,
        identity(SessionType::Normal, Some(TARGET))
    );
    let p = outcome.params;
    assert_eq!(p.initiator_max_recv_data_segment_length, 16384);
    assert_eq!(p.target_max_recv_data_segment_length, 65536);
    assert_eq!(p.max_burst_length, 131_072);
    assert!(p.initial_r2t);
    assert!(!p.immediate_data);
    assert_eq!(p.max_outstanding_r2t, 4);
    assert_eq!(p.session_type, SessionType::Normal);
    assert_eq!(p.target_name.as_deref(), Some(TARGET));
    assert_eq!(p.initiator_name.as_deref(), Some(INITIATOR));
}

#[test]
fn login_starts_in_operational_stage_when_no_auth_is_required() {
    let mut login = new_login(target_local_config(), 8);
    let mut host = Host::open();
    let mut script = LoginScript::default();
    let mut pairs = names_normal();
    pairs.extend(default_offers());
    let r1 = script.req(Stage::Operational, Stage::FullFeature, true, &pairs);
    let resp = expect_complete(script.step(&mut login, &mut host, &r1));
    assert_login_response(&resp, STAT0, Stage::Operational, Some(Stage::FullFeature));
    assert_eq!(resp.tsih, HOST_TSIH);
    assert_eq!(resp.max_cmd_sn, CMD0.add(7));
    let answers = parse(&resp.data);
    assert_eq!(value(&answers, "TargetPortalGroupTag"), Some("1"));
    assert_eq!(value(&answers, "MaxBurstLength"), Some("262144"));
    assert_eq!(value(&answers, "FirstBurstLength"), Some("65536"));
    assert_eq!(value(&answers, "InitialR2T"), Some("Yes"));
    assert_eq!(value(&answers, "ImmediateData"), Some("Yes"));
    assert_eq!(value(&answers, "MaxRecvDataSegmentLength"), Some("65536"));
    assert_eq!(host.opened.len(), 1);
    let outcome = login.finish().unwrap();
    assert_eq!(outcome.params.initiator_max_recv_data_segment_length, 8192);
    assert_eq!(outcome.stat_sn, STAT0.next());
}

#[test]
fn login_goes_straight_from_security_to_full_feature() {
    let mut login = new_login(target_local_config(), 4);
    let mut host = Host::open();
    let mut script = LoginScript::default();
    let r1 = script.req(
        Stage::Security,
        Stage::FullFeature,
        true,
        &with(names_normal(), &[("AuthMethod", "None")]),
    );
    let resp = expect_complete(script.step(&mut login, &mut host, &r1));
    assert_login_response(&resp, STAT0, Stage::Security, Some(Stage::FullFeature));
    assert_eq!(resp.tsih, HOST_TSIH);
    assert_eq!(resp.max_cmd_sn, CMD0.add(3));
    let answers = parse(&resp.data);
    assert_eq!(value(&answers, "AuthMethod"), Some("None"));
    assert_eq!(value(&answers, "TargetPortalGroupTag"), Some("1"));
    // Nothing operational was negotiated: every value is the RFC default.
    let p = login.finish().unwrap().params;
    assert_eq!(p.max_burst_length, 262_144);
    assert_eq!(p.first_burst_length, 65536);
    assert!(p.initial_r2t && p.immediate_data);
    assert_eq!(p.initiator_max_recv_data_segment_length, 8192);
    assert_eq!(p.target_max_recv_data_segment_length, 8192);
    assert_eq!(p.max_outstanding_r2t, 1);
}

#[test]
fn login_stays_in_operational_stage_while_the_target_offer_is_unanswered() {
    // The target wants a smaller MaxBurstLength than the default and the initiator did not
    // offer the key: the target offers it and answers T=0 until it is answered.
    let negotiation = LocalConfig {
        max_burst_length: 65536,
        first_burst_length: 65536,
        ..LocalConfig::default()
    };
    let mut login = new_login(negotiation, 8);
    let mut host = Host::open();
    let mut script = LoginScript::default();
    let r1 = script.req(
        Stage::Security,
        Stage::Operational,
        true,
        &with(names_normal(), &[("AuthMethod", "None")]),
    );
    expect_continue(script.step(&mut login, &mut host, &r1));
    let r2 = script.req(
        Stage::Operational,
        Stage::FullFeature,
        true,
        &kv(&[("MaxRecvDataSegmentLength", "8192")]),
    );
    let resp = expect_continue(script.step(&mut login, &mut host, &r2));
    assert_login_response(&resp, STAT0.next(), Stage::Operational, None);
    let answers = parse(&resp.data);
    assert_eq!(value(&answers, "MaxBurstLength"), Some("65536"));
    assert!(host.opened.is_empty());
    let r3 = script.req(
        Stage::Operational,
        Stage::FullFeature,
        true,
        &kv(&[("MaxBurstLength", "32768")]),
    );
    let resp = expect_complete(script.step(&mut login, &mut host, &r3));
    assert_eq!(resp.stat_sn, STAT0.add(2));
    assert_eq!(login.finish().unwrap().params.max_burst_length, 32768);
}

#[test]
fn login_text_with_continue_bit_is_answered_empty_then_processed() {
    let mut login = new_login(target_local_config(), 8);
    let mut host = Host::open();
    let mut script = LoginScript::default();
    let whole = text(&with(names_normal(), &[("AuthMethod", "None")]));
    // Cut inside the TargetName value.
    let cut = whole.windows(10).position(|w| w == b"TargetName").unwrap() + 16;
    let mut first = script.req(Stage::Security, Stage::Security, false, &[]);
    first.cont = true;
    first.data = whole.slice(..cut);
    let first = match wire(&first.into()) {
        Pdu::LoginRequest(r) => r,
        _ => unreachable!(),
    };
    let resp = expect_continue(script.step(&mut login, &mut host, &first));
    assert_login_response(&resp, STAT0, Stage::Security, None);
    assert!(resp.data.is_empty(), "a C=1 request gets an empty response");
    assert!(host.authorized.is_empty(), "nothing acted on before C=0");

    let mut second = script.req(Stage::Security, Stage::Operational, true, &[]);
    second.data = whole.slice(cut..);
    let resp = expect_continue(script.step(&mut login, &mut host, &second));
    assert_login_response(
        &resp,
        STAT0.next(),
        Stage::Security,
        Some(Stage::Operational),
    );
    assert_eq!(value(&parse(&resp.data), "AuthMethod"), Some("None"));
    assert_eq!(
        host.authorized,
        [identity(SessionType::Normal, Some(TARGET))]
    );
}

#[test]
fn login_answer_longer_than_8192_bytes_is_sent_with_the_continue_bit() {
    let mut login = new_login(
        LocalConfig {
            target_portal_group_tag: Some(1),
            ..LocalConfig::default()
        },
        8,
    );
    let mut host = Host::open();
    let mut script = LoginScript::default();
    let r1 = script.req(
        Stage::Security,
        Stage::Operational,
        true,
        &with(names_normal(), &[("AuthMethod", "None")]),
    );
    expect_continue(script.step(&mut login, &mut host, &r1));
    // 200 unknown keys: each is answered NotUnderstood, more than 8192 bytes in all.
    let keys: Vec<(String, String)> = (0..200)
        .map(|i| {
            (
                format!("X-com.example.extension-key-number-{i:04}"),
                "1".to_owned(),
            )
        })
        .collect();
    let whole = text(&keys);
    let pieces: Vec<Bytes> = whole.chunks(8192).map(Bytes::copy_from_slice).collect();
    let mut stat_sn = STAT0.next();
    let mut resp = None;
    for (i, piece) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let mut req = script.req(Stage::Operational, Stage::FullFeature, last, &[]);
        req.cont = !last;
        req.data = piece.clone();
        let step = script.step(&mut login, &mut host, &req);
        let r = expect_continue(step);
        assert_eq!(r.stat_sn, stat_sn);
        stat_sn = stat_sn.next();
        if !last {
            assert!(r.data.is_empty() && !r.transit && !r.cont);
        }
        resp = Some(r);
    }
    // The answer comes in pieces of at most 8192 bytes, C=1 on all but the last.
    let mut answer = Vec::new();
    let mut r = resp.unwrap();
    loop {
        assert!(r.data.len() <= 8192);
        answer.extend_from_slice(&r.data);
        if !r.cont {
            break;
        }
        assert!(!r.transit, "T=0 while C=1");
        let req = script.req(Stage::Operational, Stage::FullFeature, true, &[]);
        r = expect_continue(script.step(&mut login, &mut host, &req));
        assert_eq!(r.stat_sn, stat_sn);
        stat_sn = stat_sn.next();
    }
    let answers = parse(&answer);
    assert_eq!(
        answers.len(),
        201,
        "200 NotUnderstood and the MRDSL declaration"
    );
    assert!(
        keys.iter()
            .all(|(k, _)| value(&answers, k) == Some("NotUnderstood"))
    );
    assert!(answer.len() > 8192);
    // Then the login completes.
    let req = script.req(Stage::Operational, Stage::FullFeature, true, &[]);
    let step = script.step(&mut login, &mut host, &req);
    let done = expect_complete(step);
    assert_eq!(done.stat_sn, stat_sn);
}

// =============================================================================================
// 2. CHAP
// =============================================================================================

const ALICE_SECRET: &[u8] = b"alice-secret-0123";
const TARGET_SECRET: &[u8] = b"target-secret-9876";

fn alice() -> ChapCredential {
    ChapCredential::new("alice", ALICE_SECRET.to_vec())
}

fn target_credential() -> ChapCredential {
    ChapCredential::new(TARGET, TARGET_SECRET.to_vec())
}

/// Runs the security stage with an [`InitiatorAuthenticator`] (T=1 once it is done). Returns
/// every response's text and the final step (a transit to the operational stage, or the
/// failure).
fn chap_security(
    login: &mut TargetLogin,
    host: &mut Host,
    script: &mut LoginScript,
    ia: &mut InitiatorAuthenticator,
) -> (Vec<Vec<(String, String)>>, LoginStep) {
    chap_security_with(login, host, script, ia, false)
}

/// [`chap_security`]; `eager`: set T=1 already in the request that carries CHAP_R (allowed
/// with mutual CHAP too: the target answers its CHAP_N/CHAP_R with T=1).
fn chap_security_with(
    login: &mut TargetLogin,
    host: &mut Host,
    script: &mut LoginScript,
    ia: &mut InitiatorAuthenticator,
    eager: bool,
) -> (Vec<Vec<(String, String)>>, LoginStep) {
    let mut pairs = names_normal();
    pairs.extend(ia.start());
    let mut texts = Vec::new();
    for round in 0..8 {
        let transit = ia.is_done() || (eager && value(&pairs, "CHAP_R").is_some());
        let req = script.req(Stage::Security, Stage::Operational, transit, &pairs);
        let step = script.step(login, host, &req);
        let resp = match &step {
            LoginStep::Continue(r) => r.clone(),
            _ => return (texts, step),
        };
        assert_eq!(
            resp.stat_sn,
            STAT0.add(round),
            "StatSN advances per response"
        );
        assert_eq!(resp.csg, Stage::Security);
        assert_eq!(resp.tsih, Tsih(0));
        let answers = parse(&resp.data);
        let security: Vec<_> = answers
            .iter()
            .filter(|(k, _)| is_security_key(k))
            .cloned()
            .collect();
        texts.push(answers);
        if resp.transit {
            assert_eq!(resp.nsg, Stage::Operational);
            ia.handle(&security)
                .expect("initiator accepts the last answer");
            ia.check_transit()
                .expect("the target may leave the security stage");
            return (texts, step);
        }
        pairs = ia.handle(&security).expect("initiator accepts the answer");
    }
    panic!("security stage did not end");
}

/// Logs in through CHAP then the operational stage; returns the host, the answers of the
/// security stage and the authenticator.
fn chap_login(
    auth: TargetAuthConfig,
    ini: InitiatorAuthConfig,
) -> (Host, Vec<Vec<(String, String)>>, InitiatorAuthenticator) {
    let mut host = Host::with_auth(auth);
    let mut login = new_login(target_local_config(), 8);
    let mut script = LoginScript::default();
    let mut ia = InitiatorAuthenticator::new(ini, &[0x5a; 40]);
    let (texts, step) = chap_security(&mut login, &mut host, &mut script, &mut ia);
    let resp = expect_continue(step);
    assert!(resp.transit);
    let rounds = texts.len() as u32;
    let req = script.req(
        Stage::Operational,
        Stage::FullFeature,
        true,
        &default_offers(),
    );
    let resp = expect_complete(script.step(&mut login, &mut host, &req));
    assert_eq!(resp.stat_sn, STAT0.add(rounds));
    assert_eq!(resp.tsih, HOST_TSIH);
    let outcome = login.finish().unwrap();
    assert_eq!(outcome.user.as_deref(), Some("alice"));
    (host, texts, ia)
}

#[test]
fn chap_one_way_with_each_algorithm() {
    for alg in ChapAlgorithm::ALL {
        let ini = InitiatorAuthConfig {
            algorithms: vec![alg],
            ..InitiatorAuthConfig::chap(alice())
        };
        let (host, texts, ia) = chap_login(TargetAuthConfig::chap(vec![alice()]), ini);
        assert_eq!(value(&texts[0], "AuthMethod"), Some("CHAP"), "{alg:?}");
        assert_eq!(
            value(&texts[1], "CHAP_A"),
            Some(alg.code().to_string().as_str()),
            "{alg:?}"
        );
        assert!(value(&texts[1], "CHAP_I").is_some());
        assert!(value(&texts[1], "CHAP_C").unwrap().starts_with("0x"));
        assert_eq!(texts.len(), 3, "{alg:?}: method, challenge, verdict");
        assert!(texts[2].iter().all(|(k, _)| !is_security_key(k)));
        assert_eq!(ia.algorithm(), Some(alg));
        assert!(!ia.is_mutual());
        assert_eq!(host.opened.len(), 1);
        assert_eq!(host.opened[0].1.as_deref(), Some("alice"), "{alg:?}");
    }
}

#[test]
fn chap_mutual() {
    let auth = TargetAuthConfig {
        mutual: Some(target_credential()),
        ..TargetAuthConfig::chap(vec![alice()])
    };
    let ini = InitiatorAuthConfig::mutual_chap(alice(), target_credential());
    let (host, texts, ia) = chap_login(auth, ini);
    assert!(ia.is_mutual(), "the target proved its identity");
    // The target's CHAP_N/CHAP_R come in the response to the initiator's response.
    assert_eq!(value(&texts[2], "CHAP_N"), Some(TARGET));
    assert!(value(&texts[2], "CHAP_R").is_some());
    assert_eq!(host.opened[0].1.as_deref(), Some("alice"));
}

#[test]
fn chap_mutual_with_transit_in_the_response_round() {
    let auth = TargetAuthConfig {
        mutual: Some(target_credential()),
        ..TargetAuthConfig::chap(vec![alice()])
    };
    let mut host = Host::with_auth(auth);
    let mut login = new_login(target_local_config(), 8);
    let mut script = LoginScript::default();
    let mut ia = InitiatorAuthenticator::new(
        InitiatorAuthConfig::mutual_chap(alice(), target_credential()),
        &[0x5a; 40],
    );
    let (texts, step) = chap_security_with(&mut login, &mut host, &mut script, &mut ia, true);
    let resp = expect_continue(step);
    assert!(resp.transit, "T=1 together with the target's CHAP_N/CHAP_R");
    assert_eq!(texts.len(), 3);
    assert_eq!(value(&texts[2], "CHAP_N"), Some(TARGET));
    assert!(ia.is_mutual());
}

#[test]
fn chap_wrong_secret_fails_with_authentication_failure() {
    let mut host = Host::with_auth(TargetAuthConfig::chap(vec![alice()]));
    let mut login = new_login(target_local_config(), 8);
    let mut script = LoginScript::default();
    let mut ia = InitiatorAuthenticator::new(
        InitiatorAuthConfig::chap(ChapCredential::new("alice", b"not-alice-secret".to_vec())),
        &[],
    );
    let (texts, step) = chap_security(&mut login, &mut host, &mut script, &mut ia);
    assert_eq!(texts.len(), 2);
    let r = expect_failed(step, LoginStatus::AUTHENTICATION_FAILURE);
    assert_eq!(r.stat_sn, STAT0.add(2));
    assert!(login.is_done());
    assert!(host.opened.is_empty());
    // Nothing more is accepted on this login.
    let again = script.req(Stage::Security, Stage::Operational, true, &[]);
    expect_failed(
        script.step(&mut login, &mut host, &again),
        LoginStatus::INITIATOR_ERROR,
    );
}

#[test]
fn chap_unknown_user_fails_with_authentication_failure() {
    let mut host = Host::with_auth(TargetAuthConfig::chap(vec![alice()]));
    let mut login = new_login(target_local_config(), 8);
    let mut script = LoginScript::default();
    let mut ia = InitiatorAuthenticator::new(
        InitiatorAuthConfig::chap(ChapCredential::new("mallory", ALICE_SECRET.to_vec())),
        &[],
    );
    let (_, step) = chap_security(&mut login, &mut host, &mut script, &mut ia);
    expect_failed(step, LoginStatus::AUTHENTICATION_FAILURE);
}

#[test]
fn chap_required_but_only_none_offered() {
    let mut host = Host::with_auth(TargetAuthConfig::chap(vec![alice()]));
    let mut login = new_login(target_local_config(), 8);
    let mut script = LoginScript::default();
    let req = script.req(
        Stage::Security,
        Stage::Operational,
        true,
        &with(names_normal(), &[("AuthMethod", "None")]),
    );
    let r = expect_failed(
        script.step(&mut login, &mut host, &req),
        LoginStatus::AUTHENTICATION_FAILURE,
    );
    assert_eq!(r.stat_sn, STAT0);
    assert!(host.opened.is_empty());
}

#[test]
fn chap_required_and_security_stage_skipped() {
    // Starting in the operational stage.
    let mut host = Host::with_auth(TargetAuthConfig::chap(vec![alice()]));
    let mut login = new_login(target_local_config(), 8);
    let mut script = LoginScript::default();
    let mut pairs = names_normal();
    pairs.extend(default_offers());
    let req = script.req(Stage::Operational, Stage::FullFeature, true, &pairs);
    expect_failed(
        script.step(&mut login, &mut host, &req),
        LoginStatus::AUTHENTICATION_FAILURE,
    );
    assert!(host.opened.is_empty());

    // Leaving the security stage without any AuthMethod.
    let mut host = Host::with_auth(TargetAuthConfig::chap(vec![alice()]));
    let mut login = new_login(target_local_config(), 8);
    let mut script = LoginScript::default();
    let req = script.req(Stage::Security, Stage::Operational, true, &names_normal());
    expect_failed(
        script.step(&mut login, &mut host, &req),
        LoginStatus::AUTHENTICATION_FAILURE,
    );

    // Going straight to full feature phase in the middle of the CHAP exchange.
    let mut host = Host::with_auth(TargetAuthConfig::chap(vec![alice()]));
    let mut login = new_login(target_local_config(), 8);
    let mut script = LoginScript::default();
    let req = script.req(
        Stage::Security,
        Stage::Security,
        false,
        &with(names_normal(), &[("AuthMethod", "CHAP")]),
    );
    let resp = expect_continue(script.step(&mut login, &mut host, &req));
    assert_eq!(value(&parse(&resp.data), "AuthMethod"), Some("CHAP"));
    let req = script.req(Stage::Security, Stage::FullFeature, true, &[]);
    expect_failed(
        script.step(&mut login, &mut host, &req),
        LoginStatus::AUTHENTICATION_FAILURE,
    );
    assert!(host.opened.is_empty());
}

#[test]
fn chap_mutual_required_but_initiator_asks_one_way() {
    let auth = TargetAuthConfig {
        mutual: Some(target_credential()),
        require_mutual: true,
        ..TargetAuthConfig::chap(vec![alice()])
    };
    let mut host = Host::with_auth(auth);
    let mut login = new_login(target_local_config(), 8);
    let mut script = LoginScript::default();
    let mut ia = InitiatorAuthenticator::new(InitiatorAuthConfig::chap(alice()), &[]);
    let (_, step) = chap_security(&mut login, &mut host, &mut script, &mut ia);
    expect_failed(step, LoginStatus::AUTHENTICATION_FAILURE);
}

// =============================================================================================
// 3. Login failures
// =============================================================================================

fn first_request(pairs: &[(String, String)]) -> (TargetLogin, Host, LoginScript, LoginRequest) {
    let login = new_login(target_local_config(), 8);
    let host = Host::open();
    let script = LoginScript::default();
    let req = script.req(Stage::Security, Stage::Operational, true, pairs);
    (login, host, script, req)
}

#[test]
fn login_refused_by_host_with_its_status() {
    for status in [
        LoginStatus::NOT_FOUND,
        LoginStatus::AUTHORIZATION_FAILURE,
        LoginStatus::TARGET_REMOVED,
    ] {
        let (mut login, mut host, mut script, req) =
            first_request(&with(names_normal(), &[("AuthMethod", "None")]));
        host.refuse = Some(status);
        let r = expect_failed(script.step(&mut login, &mut host, &req), status);
        assert_eq!(r.stat_sn, STAT0);
        assert_eq!(host.authorized.len(), 1);
        assert!(host.opened.is_empty());
        assert!(login.is_done());
    }
    assert_eq!(
        LoginStatus::NOT_FOUND,
        LoginStatus {
            class: 2,
            detail: 3
        }
    );
    assert_eq!(
        LoginStatus::AUTHORIZATION_FAILURE,
        LoginStatus {
            class: 2,
            detail: 2
        }
    );
}

#[test]
fn login_without_initiator_name_is_missing_parameter() {
    let (mut login, mut host, mut script, req) = first_request(&kv(&[
        ("SessionType", "Normal"),
        ("TargetName", TARGET),
        ("AuthMethod", "None"),
    ]));
    expect_failed(
        script.step(&mut login, &mut host, &req),
        LoginStatus::MISSING_PARAMETER,
    );
    assert!(host.authorized.is_empty());
}

#[test]
fn login_without_target_name_in_a_normal_session_is_missing_parameter() {
    let (mut login, mut host, mut script, req) = first_request(&kv(&[
        ("InitiatorName", INITIATOR),
        ("SessionType", "Normal"),
        ("AuthMethod", "None"),
    ]));
    expect_failed(
        script.step(&mut login, &mut host, &req),
        LoginStatus::MISSING_PARAMETER,
    );
    assert_eq!(
        LoginStatus::MISSING_PARAMETER,
        LoginStatus {
            class: 2,
            detail: 7
        }
    );

    // A discovery session needs no TargetName.
    let (mut login, mut host, mut script, req) = first_request(&kv(&[
        ("InitiatorName", INITIATOR),
        ("SessionType", "Discovery"),
        ("AuthMethod", "None"),
    ]));
    expect_continue(script.step(&mut login, &mut host, &req));
    assert_eq!(host.authorized, [identity(SessionType::Discovery, None)]);
}

#[test]
fn login_with_unsupported_version_fails() {
    let (mut login, mut host, mut script, mut req) =
        first_request(&with(names_normal(), &[("AuthMethod", "None")]));
    req.version_max = 1;
    req.version_min = 1;
    let r = expect_failed(
        script.step(&mut login, &mut host, &req),
        LoginStatus::UNSUPPORTED_VERSION,
    );
    assert_eq!((r.status.class, r.status.detail), (2, 5));
    assert!(host.authorized.is_empty());
}

#[test]
fn login_transit_to_an_earlier_or_same_stage_fails() {
    // Operational -> Security.
    let (mut login, mut host, mut script, req) =
        first_request(&with(names_normal(), &[("AuthMethod", "None")]));
    expect_continue(script.step(&mut login, &mut host, &req));
    let back = script.req(Stage::Operational, Stage::Security, true, &[]);
    let r = expect_failed(
        script.step(&mut login, &mut host, &back),
        LoginStatus::INITIATOR_ERROR,
    );
    assert_eq!(r.stat_sn, STAT0.next());

    // Security -> Security with T=1.
    let mut login = new_login(target_local_config(), 8);
    let mut host = Host::open();
    let mut script = LoginScript::default();
    let req = script.req(
        Stage::Security,
        Stage::Security,
        true,
        &with(names_normal(), &[("AuthMethod", "None")]),
    );
    expect_failed(
        script.step(&mut login, &mut host, &req),
        LoginStatus::INITIATOR_ERROR,
    );
}

#[test]
fn login_identity_change_mid_login_fails() {
    type Change = fn(&mut LoginRequest);
    let changes: [(&str, Change); 4] = [
        ("ISID", |r| r.isid = Isid([0x80, 9, 9, 9, 0, 1])),
        ("TSIH", |r| r.tsih = Tsih(7)),
        ("CID", |r| r.cid = 2),
        ("CSG", |r| r.csg = Stage::Operational),
    ];
    for (what, change) in changes {
        let mut login = new_login(target_local_config(), 8);
        let mut host = Host::open();
        let mut script = LoginScript::default();
        let req = script.req(
            Stage::Security,
            Stage::Security,
            false,
            &with(names_normal(), &[("AuthMethod", "None")]),
        );
        expect_continue(script.step(&mut login, &mut host, &req));
        let mut next = script.req(Stage::Security, Stage::Operational, true, &[]);
        change(&mut next);
        let step = login.handle(&next, &mut host);
        let r = expect_failed(step, LoginStatus::INITIATOR_ERROR);
        assert_eq!(r.stat_sn, STAT0.next(), "{what}");
        assert!(host.opened.is_empty(), "{what}");
    }
}

#[test]
fn login_refused_by_host_when_opening_the_session() {
    let mut login = new_login(target_local_config(), 8);
    let mut host = Host::open();
    host.refuse_session = Some(LoginStatus::SESSION_DOES_NOT_EXIST);
    let mut script = LoginScript {
        tsih: Tsih(0x77),
        ..LoginScript::default()
    };
    let req = script.req(
        Stage::Security,
        Stage::Operational,
        true,
        &with(names_normal(), &[("AuthMethod", "None")]),
    );
    let resp = expect_continue(script.step(&mut login, &mut host, &req));
    assert_eq!(
        resp.tsih,
        Tsih(0x77),
        "the initiator's TSIH is echoed while going on"
    );
    let req = script.req(
        Stage::Operational,
        Stage::FullFeature,
        true,
        &default_offers(),
    );
    let r = expect_failed(
        script.step(&mut login, &mut host, &req),
        LoginStatus::SESSION_DOES_NOT_EXIST,
    );
    assert_eq!((r.status.class, r.status.detail), (2, 0x0a));
    assert_eq!(r.stat_sn, STAT0.next());
    assert_eq!(host.opened.len(), 1);
    assert_eq!(host.opened[0].0.tsih, Tsih(0x77));
}

/// The login's final MaxCmdSN and the session's window must agree: the session clamps
/// `SessionConfig::queue_depth` to 65536, the login takes `LoginConfig::queue_depth` as it
/// is, so with a larger depth the window the initiator was given shrinks at the first PDU of
/// full feature phase (MaxCmdSN moves backwards; initiators ignore that, so they keep
/// sending commands the target then drops as outside its window).
#[test]
fn login_and_session_agree_on_the_window_for_any_queue_depth() {
    let depth = 100_000;
    let mut login = new_login(target_local_config(), depth);
    let mut host = Host::open();
    let mut script = LoginScript::default();
    let req = script.req(
        Stage::Security,
        Stage::FullFeature,
        true,
        &with(names_normal(), &[("AuthMethod", "None")]),
    );
    let resp = expect_complete(script.step(&mut login, &mut host, &req));
    let outcome = login.finish().unwrap();
    let session = iscsi_proto::target::TargetSession::new(
        iscsi_proto::target::SessionConfig {
            queue_depth: depth,
            ..Default::default()
        },
        outcome.negotiator,
        outcome.exp_cmd_sn,
        outcome.stat_sn,
        std::time::Instant::now(),
    );
    assert_eq!(session.max_cmd_sn(), resp.max_cmd_sn);
}

/// `TargetLogin::finish` is documented to return `None` if the login did not complete.
#[test]
fn finish_after_a_failed_login_is_none() {
    let mut login = new_login(target_local_config(), 8);
    let mut host = Host::open();
    host.refuse_session = Some(LoginStatus::OUT_OF_RESOURCES);
    let mut script = LoginScript::default();
    let req = script.req(
        Stage::Security,
        Stage::FullFeature,
        true,
        &with(names_normal(), &[("AuthMethod", "None")]),
    );
    expect_failed(
        script.step(&mut login, &mut host, &req),
        LoginStatus::OUT_OF_RESOURCES,
    );
    assert!(login.finish().is_none(), "a failed login has no outcome");
}

// =============================================================================================
// 4. READ
// =============================================================================================

fn expect_command(events: &[Event]) -> &NewCommand {
    match events.first() {
        Some(Event::Command(c)) => c,
        other => panic!("expected a new command, got {other:?}"),
    }
}

#[test]
fn read_is_ready_at_once_and_completes_with_data_and_status() {
    let mut h = Setup::normal()
        .offer("MaxRecvDataSegmentLength", "4096")
        .login();
    let exp0 = h.s.exp_cmd_sn();
    assert_eq!(exp0, CMD0);
    assert_eq!(h.s.max_cmd_sn(), exp0.add(15));
    let cmd = h.ini.read(8192);
    let itt = cmd.itt;
    let events = h.send(cmd.clone());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        expect_command(&events),
        &NewCommand {
            itt,
            lun: Lun(0),
            cdb: cmd.cdb,
            extended_cdb: None,
            edtl: 8192,
            read: true,
            write: false,
            attr: TaskAttribute::Simple,
            immediate_data: Bytes::new(),
            ready: true,
        }
    );
    assert_eq!(h.s.exp_cmd_sn(), exp0.next());
    assert_eq!(h.s.max_cmd_sn(), exp0.add(15), "one slot taken");
    assert_eq!(h.s.task_count(), 1);

    let stat_sn = h.next_stat_sn;
    let reply = h.complete(itt, good(8192, 8192)).expect("a reply");
    let Reply::Data(put) = reply else {
        panic!("data-in expected: {reply:?}");
    };
    assert_eq!(
        put,
        PutData {
            itt,
            lun: Lun(0),
            len: 8192,
            exp_cmd_sn: exp0.next(),
            max_cmd_sn: exp0.add(16),
            max_segment_len: 4096,
            max_burst_len: 262_144,
            response: ScsiResponse {
                response: ServiceResponse::COMPLETED,
                status: ScsiStatus::GOOD,
                itt,
                stat_sn,
                exp_cmd_sn: exp0.next(),
                max_cmd_sn: exp0.add(16),
                exp_data_sn: DataSn(0),
                residual_count: 0,
                ..ScsiResponse::default()
            },
            status_in_data: true,
        }
    );
    assert!(h.drain().is_empty());
    assert_eq!(h.s.task_count(), 0);
    assert!(h.s.complete(itt, good(0, 0)).is_none(), "already ended");
}

#[test]
fn read_residual_underflow_and_overflow() {
    let mut h = Setup::normal().login();
    // Less data than expected.
    let cmd = h.ini.read(8192);
    let itt = cmd.itt;
    h.send(cmd);
    let reply = h.complete(itt, good(2048, 2048)).unwrap();
    let Reply::Data(put) = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(put.len, 2048);
    assert!(put.status_in_data);
    let r = reply_response(&reply);
    assert!(r.underflow && !r.overflow);
    assert_eq!(r.residual_count, 6144);

    // The command would move more than the initiator expects: data is cut at EDTL.
    let cmd = h.ini.read(4096);
    let itt = cmd.itt;
    h.send(cmd);
    let reply = h.complete(itt, good(16384, 16384)).unwrap();
    let Reply::Data(put) = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(put.len, 4096, "never more than EDTL");
    let r = reply_response(&reply);
    assert!(r.overflow && !r.underflow);
    assert_eq!(r.residual_count, 12288);

    // No data at all, a shorter transfer: a plain response with the underflow.
    let cmd = h.ini.read(4096);
    let itt = cmd.itt;
    h.send(cmd);
    let reply = h.complete(itt, good(0, 0)).unwrap();
    let Reply::Response(Pdu::ScsiResponse(r)) = &reply else {
        panic!("{reply:?}")
    };
    assert!(r.underflow);
    assert_eq!(r.residual_count, 4096);
    assert_eq!(r.status, ScsiStatus::GOOD);
    assert!(r.data.is_empty());
}

#[test]
fn read_check_condition_carries_sense_in_the_response() {
    let mut h = Setup::normal().login();
    let sense = fixed_sense(0x03, 0x11, 0x00);
    // Without data.
    let cmd = h.ini.read(4096);
    let itt = cmd.itt;
    h.send(cmd);
    let outcome = ScsiOutcome {
        status: ScsiStatus::CHECK_CONDITION,
        sense: Some(sense.clone()),
        data_len: 0,
        transfer_len: 4096,
    };
    let reply = h.complete(itt, outcome).unwrap();
    let Reply::Response(Pdu::ScsiResponse(r)) = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
    assert_eq!(r.response, ServiceResponse::COMPLETED);
    assert_eq!(
        r.data,
        sense_segment(&sense),
        "SenseLength (2 bytes) then sense"
    );
    assert_eq!(&r.data[..2], &[0, 18]);
    assert_eq!(r.sense(), Some(sense.clone()));
    assert!(!r.underflow && !r.overflow);

    // With some data: the status cannot ride in the last Data-In.
    let cmd = h.ini.read(4096);
    let itt = cmd.itt;
    h.send(cmd);
    let outcome = ScsiOutcome {
        status: ScsiStatus::CHECK_CONDITION,
        sense: Some(sense.clone()),
        data_len: 1024,
        transfer_len: 1024,
    };
    let reply = h.complete(itt, outcome).unwrap();
    let Reply::Data(put) = &reply else {
        panic!("{reply:?}")
    };
    assert!(!put.status_in_data, "sense data: status in a SCSI Response");
    assert_eq!(put.len, 1024);
    assert_eq!(put.response.status, ScsiStatus::CHECK_CONDITION);
    assert_eq!(put.response.data, sense_segment(&sense));
    assert!(put.response.underflow);
    assert_eq!(put.response.residual_count, 3072);
}

/// RFC 7143 §11.7.3 (Data-In, S bit): status may ride in the last Data-In only for a command
/// that completed successfully (GOOD, CONDITION MET, INTERMEDIATE-CONDITION MET), and "for
/// bidirectional commands, the status MUST be sent in a SCSI Response PDU".
#[test]
fn status_rides_in_data_in_only_for_successful_unidirectional_commands() {
    let mut h = Setup::normal().login();
    // A bidirectional command with all its write data immediate.
    let mut c = h.ini.command(
        &[0x53, 0, 0, 0, 0, 0, 0, 0, 1, 0],
        true,
        true,
        512,
        pattern(0, 512),
        true,
    );
    c.bidi_read_len = Some(512);
    let itt = c.itt;
    assert!(expect_command(&h.send(c)).ready);
    if let Some(Reply::Data(put)) = h.complete(itt, good(512, 512)) {
        assert!(
            !put.status_in_data,
            "bidirectional: status in a SCSI Response"
        );
    }
    // A READ that ends BUSY (an exception) after some data.
    let c = h.ini.read(512);
    let itt = c.itt;
    h.send(c);
    let outcome = ScsiOutcome {
        status: ScsiStatus::BUSY,
        sense: None,
        data_len: 512,
        transfer_len: 512,
    };
    if let Some(Reply::Data(put)) = h.complete(itt, outcome) {
        assert!(!put.status_in_data, "not a successful completion");
    }
}

// =============================================================================================
// 5. WRITE with solicited data (InitialR2T=Yes)
// =============================================================================================

fn expect_get_data(events: &[Event]) -> Vec<R2tRequest> {
    let gets: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::GetData(g) => Some(g.r2ts.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(gets.len(), 1, "one Get_Data expected: {events:?}");
    gets.into_iter().next().unwrap()
}

#[test]
fn write_with_immediate_data_and_initial_r2t() {
    let mut h = Setup::normal()
        .offer("InitialR2T", "Yes")
        .offer("ImmediateData", "Yes")
        .offer("MaxBurstLength", "8192")
        .offer("FirstBurstLength", "4096")
        .offer("MaxOutstandingR2T", "2")
        .login();
    assert!(h.params.initial_r2t && h.params.immediate_data);
    assert_eq!(h.params.max_burst_length, 8192);
    assert_eq!(h.params.first_burst_length, 4096);
    assert_eq!(h.params.max_outstanding_r2t, 2);

    let edtl = 40960;
    let cmd = h.ini.write(edtl, 4096, true);
    let itt = cmd.itt;
    let events = h.send(cmd);
    assert_eq!(events.len(), 2, "{events:?}");
    let c = expect_command(&events);
    assert!(!c.ready && c.write && !c.read);
    assert_eq!(c.edtl, edtl);
    assert_eq!(c.immediate_data, pattern(0, 4096));
    let Event::GetData(g) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!((g.itt, g.lun), (itt, Lun(0)));
    assert_eq!(g.exp_cmd_sn, h.s.exp_cmd_sn());
    assert_eq!(g.max_cmd_sn, h.s.max_cmd_sn());

    let mut all = g.r2ts.clone();
    let mut batches = vec![g.r2ts.len()];
    loop {
        h.s.data_complete(itt);
        let events = h.drain();
        if let [Event::Execute { itt: done }] = events.as_slice() {
            assert_eq!(*done, itt);
            break;
        }
        let r2ts = expect_get_data(&events);
        batches.push(r2ts.len());
        all.extend(r2ts);
    }
    assert_eq!(batches, [2, 2, 1], "at most MaxOutstandingR2T per batch");
    // R2TSN 0.., offsets cover [4096, edtl) exactly, each <= MaxBurstLength.
    let expected: Vec<(u32, u32, u32)> = vec![
        (0, 4096, 8192),
        (1, 12288, 8192),
        (2, 20480, 8192),
        (3, 28672, 8192),
        (4, 36864, 4096),
    ];
    let got: Vec<_> = all.iter().map(|r| (r.r2t_sn.0, r.offset, r.len)).collect();
    assert_eq!(got, expected);
    let ttts: HashSet<Ttt> = all.iter().map(|r| r.ttt).collect();
    assert_eq!(ttts.len(), all.len(), "unique TTTs");
    assert!(all.iter().all(|r| !r.ttt.is_reserved()));

    // A late data completion changes nothing.
    h.s.data_complete(itt);
    assert!(h.drain().is_empty());

    let reply = h
        .complete(
            itt,
            ScsiOutcome {
                transfer_len: u64::from(edtl),
                ..ScsiOutcome::status(ScsiStatus::GOOD)
            },
        )
        .unwrap();
    let Reply::Response(Pdu::ScsiResponse(r)) = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(
        r.exp_data_sn,
        DataSn(0),
        "ExpDataSN counts Data-In PDUs: none for a write (RFC 7143 §11.4.6)"
    );
    assert_eq!(r.status, ScsiStatus::GOOD);
    assert!(!r.underflow && !r.overflow && r.residual_count == 0);
    assert!(r.data.is_empty());
}

#[test]
fn write_without_immediate_data_solicits_everything() {
    let mut h = Setup::normal().login();
    let cmd = h.ini.write(1000, 0, true);
    let itt = cmd.itt;
    let events = h.send(cmd);
    assert!(!expect_command(&events).ready);
    let r2ts = expect_get_data(&events);
    assert_eq!(r2ts.len(), 1);
    assert_eq!(
        (r2ts[0].r2t_sn, r2ts[0].offset, r2ts[0].len),
        (R2tSn(0), 0, 1000)
    );
    h.s.data_complete(itt);
    assert!(matches!(h.drain().as_slice(), [Event::Execute { itt: i }] if *i == itt));
    // The SCSI layer wanted only 512 of the 1000 bytes: residual underflow.
    let reply = h
        .complete(
            itt,
            ScsiOutcome {
                transfer_len: 512,
                ..ScsiOutcome::status(ScsiStatus::GOOD)
            },
        )
        .unwrap();
    let r = reply_response(&reply);
    assert!(r.underflow);
    assert_eq!(r.residual_count, 488);
    assert_eq!(r.exp_data_sn, DataSn(0));
}

#[test]
fn write_with_all_data_immediate_is_ready() {
    let mut h = Setup::normal().login();
    let cmd = h.ini.write(2048, 2048, true);
    let itt = cmd.itt;
    let events = h.send(cmd);
    assert_eq!(events.len(), 1);
    let c = expect_command(&events);
    assert!(c.ready);
    assert_eq!(c.immediate_data.len(), 2048);
    let reply = h
        .complete(
            itt,
            ScsiOutcome {
                transfer_len: 2048,
                ..ScsiOutcome::status(ScsiStatus::GOOD)
            },
        )
        .unwrap();
    assert_eq!(reply_response(&reply).exp_data_sn, DataSn(0));
}

#[test]
fn failed_solicited_data_ends_the_task_with_check_condition() {
    let mut h = Setup::normal().login();
    let cmd = h.ini.write(4096, 0, true);
    let itt = cmd.itt;
    h.send(cmd);
    h.s.data_failed(
        itt,
        DataError::DataSn {
            expected: 0,
            got: 3,
        },
    );
    let events = h.drain();
    assert!(matches!(events[0], Event::Release { itt: i } if i == itt));
    let [_, Event::Send(Pdu::ScsiResponse(r))] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
    assert_eq!(r.sense(), Some(fixed_sense(0x0b, 0x4b, 0x00)));
    assert_eq!(h.s.task_count(), 0);
}

// =============================================================================================
// 6. WRITE with unsolicited Data-Out (InitialR2T=No)
// =============================================================================================

fn unsolicited_setup() -> Harness {
    let h = Setup::normal()
        .offer("InitialR2T", "No")
        .offer("ImmediateData", "Yes")
        .offer("FirstBurstLength", "16384")
        .offer("MaxBurstLength", "32768")
        .offer("MaxOutstandingR2T", "1")
        .login();
    assert!(!h.params.initial_r2t);
    assert_eq!(h.params.first_burst_length, 16384);
    h
}

#[test]
fn write_with_unsolicited_data_out() {
    let mut h = unsolicited_setup();
    let cmd = h.ini.write(65536, 4096, false);
    let itt = cmd.itt;
    let events = h.send(cmd);
    assert_eq!(
        events.len(),
        1,
        "waits for unsolicited Data-Out: {events:?}"
    );
    assert!(!expect_command(&events).ready);

    let d = h.ini.data_out(itt, 0, 4096, 4096, false);
    let events = h.send(d);
    assert_eq!(events.len(), 1);
    assert!(
        matches!(&events[0], Event::Data { itt: i, offset: 4096, data } if *i == itt && *data == pattern(4096, 4096))
    );

    // The last PDU of the unsolicited burst (F=1, ends at FirstBurstLength).
    let d = h.ini.data_out(itt, 1, 8192, 8192, true);
    let events = h.send(d);
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(&events[0], Event::Data { offset: 8192, data, .. } if data.len() == 8192));
    let r2ts = expect_get_data(&events);
    assert_eq!(
        r2ts.iter()
            .map(|r| (r.r2t_sn.0, r.offset, r.len))
            .collect::<Vec<_>>(),
        [(0, 16384, 32768)]
    );
    h.s.data_complete(itt);
    let r2ts = expect_get_data(&h.drain());
    assert_eq!(
        r2ts.iter()
            .map(|r| (r.r2t_sn.0, r.offset, r.len))
            .collect::<Vec<_>>(),
        [(1, 49152, 16384)]
    );
    h.s.data_complete(itt);
    assert!(matches!(h.drain().as_slice(), [Event::Execute { itt: i }] if *i == itt));
    let reply = h
        .complete(
            itt,
            ScsiOutcome {
                transfer_len: 65536,
                ..ScsiOutcome::status(ScsiStatus::GOOD)
            },
        )
        .unwrap();
    assert_eq!(reply_response(&reply).exp_data_sn, DataSn(0));
}

#[test]
fn unsolicited_burst_ending_early_with_f_bit() {
    let mut h = unsolicited_setup();
    let cmd = h.ini.write(8192, 0, false);
    let itt = cmd.itt;
    h.send(cmd);
    // The initiator ends its unsolicited burst after 2048 bytes (F=1).
    let events = h.send(h.ini.data_out(itt, 0, 0, 2048, true));
    assert!(matches!(events[0], Event::Data { offset: 0, .. }));
    let r2ts = expect_get_data(&events);
    assert_eq!(
        r2ts.iter()
            .map(|r| (r.r2t_sn.0, r.offset, r.len))
            .collect::<Vec<_>>(),
        [(0, 2048, 6144)]
    );
}

/// Reject (protocol error, with the Data-Out header), Release and CHECK CONDITION (ABORTED
/// COMMAND, DATA PHASE ERROR 4B/00) for a task whose unsolicited data went wrong.
fn assert_data_phase_error(events: &[Event], itt: Itt, header: [u8; 48], edtl: u32) {
    assert_eq!(events.len(), 3, "{events:?}");
    let pdus = sent(events);
    let Pdu::Reject(rej) = pdus[0] else {
        panic!("{events:?}")
    };
    assert_eq!(rej.reason, RejectReason::PROTOCOL_ERROR);
    assert_eq!(rej.reason, RejectReason(0x04));
    assert_eq!(&rej.data[..], &header[..]);
    let Pdu::ScsiResponse(r) = pdus[1] else {
        panic!("{events:?}")
    };
    assert_eq!(r.itt, itt);
    assert_eq!(r.response, ServiceResponse::COMPLETED);
    assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
    assert_eq!(r.sense(), Some(fixed_sense(0x0b, 0x4b, 0x00)));
    assert!(r.underflow);
    assert_eq!(r.residual_count, edtl);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Release { itt: i } if *i == itt))
    );
}

#[test]
fn unsolicited_data_out_with_bad_data_sn_or_offset() {
    let mut h = unsolicited_setup();
    // Wrong DataSN.
    let cmd = h.ini.write(16384, 0, false);
    let itt = cmd.itt;
    h.send(cmd);
    let events = h.send(h.ini.data_out(itt, 0, 0, 1024, false));
    assert!(matches!(events.as_slice(), [Event::Data { offset: 0, .. }]));
    let bad = h.ini.data_out(itt, 5, 1024, 1024, false);
    let header = Pdu::DataOut(bad.clone()).bhs().to_array();
    let events = h.send(bad);
    assert_data_phase_error(&events, itt, header, 16384);
    assert_eq!(h.s.task_count(), 0);
    assert!(h.complete(itt, good(0, 0)).is_none());
    // Later data for the ended task is ignored.
    assert!(h.send(h.ini.data_out(itt, 2, 2048, 1024, false)).is_empty());

    // Wrong offset (a hole).
    let cmd = h.ini.write(16384, 0, false);
    let itt = cmd.itt;
    h.send(cmd);
    let bad = h.ini.data_out(itt, 0, 512, 1024, false);
    let header = Pdu::DataOut(bad.clone()).bhs().to_array();
    let events = h.send(bad);
    assert_data_phase_error(&events, itt, header, 16384);

    // Beyond FirstBurstLength.
    let cmd = h.ini.write(65536, 0, false);
    let itt = cmd.itt;
    h.send(cmd);
    let bad = h.ini.data_out(itt, 0, 0, 20000, false);
    let header = Pdu::DataOut(bad.clone()).bhs().to_array();
    let events = h.send(bad);
    assert_data_phase_error(&events, itt, header, 65536);
}

/// A WRITE that waits in the CmdSN queue behind a gap has been received: its unsolicited
/// Data-Out (which follows it on the connection) must not be lost, or the task waits for that
/// data forever once the gap is filled.
#[test]
fn unsolicited_data_for_a_command_queued_behind_a_gap_is_kept() {
    let mut h = unsolicited_setup();
    let first = h.ini.tur(); // CmdSN exp: delayed
    let w = h.ini.write(4096, 0, false); // CmdSN exp + 1: queued
    assert!(h.send(w.clone()).is_empty());
    let d = h.ini.data_out(w.itt, 0, 0, 4096, true);
    let mut events = h.send(d);
    events.extend(h.send(first));
    let got_data = events
        .iter()
        .any(|e| matches!(e, Event::Data { itt, .. } if *itt == w.itt));
    let executes = events
        .iter()
        .any(|e| matches!(e, Event::Execute { itt } if *itt == w.itt));
    assert!(
        got_data && executes,
        "the WRITE gets its data and runs: {events:?}"
    );
}

#[test]
fn data_out_for_unknown_task_or_solicited_transfer_is_ignored() {
    let mut h = unsolicited_setup();
    assert!(
        h.send(h.ini.data_out(Itt(0xdead), 0, 0, 512, true))
            .is_empty()
    );
    // A solicited Data-Out (TTT set) reaching the core belongs to no live transfer: dropped.
    let cmd = h.ini.write(4096, 0, true);
    let itt = cmd.itt;
    h.send(cmd);
    let mut d = h.ini.data_out(itt, 0, 0, 512, true);
    d.ttt = Ttt(0x1234);
    assert!(h.send(d).is_empty());
    assert_eq!(h.s.task_count(), 1);
}

/// A Data-Out for a task the SCSI layer is already running (all its data came as immediate
/// data) must not end the task: its status would go out while it still runs, and its ITT
/// would become free for a new task that the old task's `complete` would then end.
#[test]
fn stray_data_out_for_an_executing_task_does_not_end_it() {
    let mut h = unsolicited_setup();
    let w = h.ini.write(512, 512, true);
    assert!(
        expect_command(&h.send(w.clone())).ready,
        "running at SCSI level"
    );
    let events = h.send(h.ini.data_out(w.itt, 0, 512, 512, true));
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Release { .. } | Event::Send(Pdu::ScsiResponse(_)))),
        "the running task is not ended by a stray Data-Out: {events:?}"
    );
    assert_eq!(h.s.task_count(), 1);
    // The ITT stays busy until the task ends...
    let mut reuse = h.ini.read(512);
    reuse.itt = w.itt;
    assert!(matches!(only_send(h.send(reuse)), Pdu::Reject(_)));
    // ...and the task's own status is sent when it ends.
    let reply = h.complete(
        w.itt,
        ScsiOutcome {
            transfer_len: 512,
            ..ScsiOutcome::status(ScsiStatus::GOOD)
        },
    );
    assert!(reply.is_some());
}

#[test]
fn unsolicited_data_out_announced_under_initial_r2t_is_rejected() {
    let mut h = Setup::normal().offer("InitialR2T", "Yes").login();
    let w = h.ini.write(8192, 0, false);
    let header = Pdu::ScsiCommand(w.clone()).bhs().to_array();
    let Pdu::Reject(r) = only_send(h.send(w)) else {
        panic!()
    };
    assert_eq!(r.reason, RejectReason::PROTOCOL_ERROR);
    assert_eq!(&r.data[..], &header[..]);
    assert_eq!(h.s.task_count(), 0);
}

// =============================================================================================
// 7. Data the initiator may not send; too large a transfer
// =============================================================================================

fn expect_check_condition(events: Vec<Event>, itt: Itt, sense: Bytes) -> ScsiResponse {
    let pdu = only_send(events);
    let Pdu::ScsiResponse(r) = pdu else {
        panic!("expected a SCSI Response: {pdu:?}")
    };
    assert_eq!(r.itt, itt);
    assert_eq!(r.response, ServiceResponse::COMPLETED);
    assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
    assert_eq!(r.sense(), Some(sense));
    r
}

#[test]
fn immediate_data_beyond_edtl_is_answered_not_sliced() {
    let mut h = Setup::normal().login();
    let exp = h.s.exp_cmd_sn();
    let max = h.s.max_cmd_sn();
    let cmd = h.ini.write(512, 1024, true);
    let itt = cmd.itt;
    let r = expect_check_condition(h.send(cmd), itt, fixed_sense(0x0b, 0x0c, 0x0c));
    assert_eq!(r.exp_cmd_sn, exp.next(), "the command consumed its CmdSN");
    assert_eq!(r.max_cmd_sn, max.next(), "no task holds a slot");
    assert_eq!(h.s.task_count(), 0);

    // Beyond FirstBurstLength.
    let cmd = h.ini.write(1 << 20, 65536 + 512, true);
    let itt = cmd.itt;
    expect_check_condition(h.send(cmd), itt, fixed_sense(0x0b, 0x0c, 0x0c));

    // Immediate data on a READ.
    let mut cmd = h.ini.read(4096);
    cmd.data = pattern(0, 512);
    let itt = cmd.itt;
    expect_check_condition(h.send(cmd), itt, fixed_sense(0x0b, 0x0c, 0x0c));
}

#[test]
fn immediate_data_when_immediate_data_is_no() {
    let mut h = Setup::normal().offer("ImmediateData", "No").login();
    assert!(!h.params.immediate_data);
    let cmd = h.ini.write(4096, 512, true);
    let itt = cmd.itt;
    let r = expect_check_condition(h.send(cmd), itt, fixed_sense(0x0b, 0x0c, 0x0c));
    assert!(r.underflow);
    assert_eq!(r.residual_count, 4096);
    assert_eq!(h.s.task_count(), 0);
}

#[test]
fn edtl_above_max_transfer_len_is_refused() {
    let mut setup = Setup::normal();
    setup.session.max_transfer_len = 1 << 20;
    let mut h = setup.login();
    let cmd = h.ini.read((1 << 20) + 512);
    let itt = cmd.itt;
    expect_check_condition(h.send(cmd), itt, fixed_sense(0x05, 0x24, 0x00));
    assert_eq!(h.s.task_count(), 0);
    // Exactly the limit is fine.
    let cmd = h.ini.read(1 << 20);
    assert!(expect_command(&h.send(cmd)).ready);
}

#[test]
fn buffers_beyond_max_buffered_get_task_set_full() {
    let mut setup = Setup::normal();
    setup.session.max_buffered = 8192;
    let mut h = setup.login();
    let first = h.ini.read(8192);
    assert!(expect_command(&h.send(first)).ready);
    let cmd = h.ini.read(512);
    let itt = cmd.itt;
    let pdu = only_send(h.send(cmd));
    let Pdu::ScsiResponse(r) = pdu else {
        panic!("{pdu:?}")
    };
    assert_eq!((r.itt, r.status), (itt, ScsiStatus::TASK_SET_FULL));
    assert!(r.data.is_empty());
}

// =============================================================================================
// 8. CmdSN window
// =============================================================================================

#[test]
fn commands_outside_the_window_are_dropped_silently() {
    let mut h = Setup::normal().queue_depth(4).login();
    let exp = h.s.exp_cmd_sn();
    assert_eq!(h.s.max_cmd_sn(), exp.add(3));
    for sn in [exp.add(4), exp.add(1000), exp.sub(1), exp.sub(1 << 20)] {
        let mut c = h.ini.tur();
        c.cmd_sn = sn;
        h.ini.cmd_sn = exp;
        assert!(h.send(c).is_empty(), "CmdSN {sn:?} dropped");
        assert_eq!(h.s.exp_cmd_sn(), exp);
        assert_eq!(h.s.task_count(), 0);
    }
    // The window still works.
    let c = h.ini.tur();
    assert!(expect_command(&h.send(c)).ready);
}

#[test]
fn out_of_order_commands_wait_for_the_gap() {
    let mut h = Setup::normal().queue_depth(8).login();
    let exp = h.s.exp_cmd_sn();
    let a = h.ini.tur();
    let b = h.ini.read(512);
    let c = h.ini.tur();
    assert!(h.send(c.clone()).is_empty());
    assert!(h.send(b.clone()).is_empty());
    // A duplicate of a waiting command is dropped.
    assert!(h.send(b.clone()).is_empty());
    assert_eq!(h.s.exp_cmd_sn(), exp);
    let events = h.send(a.clone());
    let order: Vec<Itt> = events
        .iter()
        .map(|e| match e {
            Event::Command(c) => c.itt,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(order, [a.itt, b.itt, c.itt], "CmdSN order");
    assert_eq!(h.s.exp_cmd_sn(), exp.add(3));
    assert_eq!(h.s.max_cmd_sn(), exp.add(3).add(8 - 3).sub(1));
}

#[test]
fn immediate_commands_do_not_advance_exp_cmd_sn() {
    let mut h = Setup::normal().queue_depth(4).login();
    let exp = h.s.exp_cmd_sn();
    let max = h.s.max_cmd_sn();
    // Immediate NOP-Out with an ITT: answered, window unchanged.
    let mut nop = h.ini.nop_out(Bytes::from_static(b"x"));
    nop.immediate = true;
    nop.cmd_sn = exp;
    h.ini.cmd_sn = exp;
    let pdu = only_send(h.send(nop));
    let Pdu::NopIn(n) = pdu else {
        panic!("{pdu:?}")
    };
    assert_eq!((n.exp_cmd_sn, n.max_cmd_sn), (exp, max));
    // Immediate SCSI command: runs, takes no slot of the window.
    let mut c = h.ini.read(512);
    c.immediate = true;
    c.cmd_sn = exp;
    h.ini.cmd_sn = exp;
    let itt = c.itt;
    assert!(expect_command(&h.send(c)).ready);
    assert_eq!((h.s.exp_cmd_sn(), h.s.max_cmd_sn()), (exp, max));
    let reply = h.complete(itt, good(512, 512)).unwrap();
    let r = reply_response(&reply);
    assert_eq!((r.exp_cmd_sn, r.max_cmd_sn), (exp, max));
    // A non-immediate command still takes CmdSN `exp`.
    let c = h.ini.tur();
    assert_eq!(c.cmd_sn, exp);
    assert!(expect_command(&h.send(c)).ready);
    assert_eq!(h.s.exp_cmd_sn(), exp.next());
}

#[test]
fn immediate_commands_are_bounded_by_the_queue_depth() {
    let mut h = Setup::normal().queue_depth(2).login();
    let a = h.ini.read(512);
    h.send(a.clone());
    let b = h.ini.read(512);
    h.send(b.clone());
    let mut imm = h.ini.read(512);
    imm.immediate = true;
    imm.cmd_sn = h.s.exp_cmd_sn();
    h.ini.cmd_sn = imm.cmd_sn;
    let header = Pdu::ScsiCommand(imm.clone()).bhs().to_array();
    let Pdu::Reject(r) = only_send(h.send(imm.clone())) else {
        panic!()
    };
    assert_eq!(r.reason, RejectReason::IMMEDIATE_COMMAND_REJECT);
    assert_eq!(r.reason, RejectReason(0x06));
    assert_eq!(&r.data[..], &header[..]);
    assert_eq!(h.s.task_count(), 2);
    h.complete(a.itt, good(512, 512)).unwrap();
    assert!(expect_command(&h.send(imm)).ready, "room again");
}

#[test]
fn window_closes_at_queue_depth_and_reopens_on_completion() {
    let mut h = Setup::normal().queue_depth(2).login();
    let a = h.ini.read(512);
    let b = h.ini.read(512);
    h.send(a.clone());
    h.send(b.clone());
    let exp = h.s.exp_cmd_sn();
    assert_eq!(
        h.s.max_cmd_sn(),
        exp.sub(1),
        "closed: MaxCmdSN = ExpCmdSN - 1"
    );
    // Visible to the initiator in any response (an immediate NOP-Out here).
    let mut nop = h.ini.nop_out(Bytes::new());
    nop.immediate = true;
    h.ini.cmd_sn = nop.cmd_sn;
    let Pdu::NopIn(n) = only_send(h.send(nop)) else {
        panic!()
    };
    assert_eq!((n.exp_cmd_sn, n.max_cmd_sn), (exp, exp.sub(1)));
    let reply = h.complete(a.itt, good(512, 512)).unwrap();
    assert_eq!(reply_response(&reply).max_cmd_sn, exp, "one slot again");
    let reply = h.complete(b.itt, good(512, 512)).unwrap();
    assert_eq!(reply_response(&reply).max_cmd_sn, exp.next());
}

/// RFC 7143 §4.2.2.1: with MaxCmdSN = ExpCmdSN - 1 the window is empty, and "the target MUST
/// silently ignore any non-immediate command outside of this range".
#[test]
fn command_at_exp_cmd_sn_is_dropped_while_the_window_is_closed() {
    let mut h = Setup::normal().queue_depth(2).login();
    let a = h.ini.read(512);
    h.send(a);
    let b = h.ini.read(512);
    h.send(b);
    let exp = h.s.exp_cmd_sn();
    assert_eq!(h.s.max_cmd_sn(), exp.sub(1));
    let c = h.ini.read(512);
    assert_eq!(c.cmd_sn, exp);
    assert!(h.send(c).is_empty(), "outside the (empty) window: dropped");
    assert_eq!(h.s.exp_cmd_sn(), exp);
    assert_eq!(h.s.task_count(), 2);
}

#[test]
fn duplicate_itt_is_rejected() {
    let mut h = Setup::normal().login();
    let a = h.ini.read(512);
    h.send(a.clone());
    let mut dup = h.ini.read(1024);
    dup.itt = a.itt;
    let header = Pdu::ScsiCommand(dup.clone()).bhs().to_array();
    let exp = h.s.exp_cmd_sn();
    let Pdu::Reject(r) = only_send(h.send(dup)) else {
        panic!()
    };
    assert_eq!(r.reason, RejectReason::TASK_IN_PROGRESS);
    assert_eq!(&r.data[..], &header[..]);
    assert_eq!(r.exp_cmd_sn, exp.next(), "the CmdSN was consumed");
    assert_eq!(h.s.task_count(), 1);
    // A command may not use the reserved ITT either.
    let mut bad = h.ini.tur();
    bad.itt = Itt::RESERVED;
    assert!(matches!(only_send(h.send(bad)), Pdu::Reject(_)));
}

// =============================================================================================
// 9. Task management
// =============================================================================================

fn expect_tmf_response(pdu: Pdu, itt: Itt, response: TmfResponse) -> TaskMgmtResponse {
    let Pdu::TaskMgmtResponse(r) = pdu else {
        panic!("expected a TMF response: {pdu:?}")
    };
    assert_eq!((r.itt, r.response), (itt, response));
    r
}

fn expect_tmf_event(events: &[Event]) -> TmfRequest {
    match events
        .iter()
        .filter(|e| matches!(e, Event::TaskManagement(_)))
        .collect::<Vec<_>>()
        .as_slice()
    {
        [Event::TaskManagement(t)] => t.clone(),
        _ => panic!("expected one task management event: {events:?}"),
    }
}

#[test]
fn abort_task_waiting_for_data() {
    let mut h = Setup::normal().login();
    let w = h.ini.write(8192, 0, true);
    h.send(w.clone());
    let max_before = h.s.max_cmd_sn();
    let tmf = h
        .ini
        .tmf(TaskMgmtFunction::ABORT_TASK, Lun(0), w.itt, w.cmd_sn);
    let events = h.send(tmf.clone());
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(events[0], Event::Release { itt } if itt == w.itt));
    assert_eq!(
        expect_tmf_event(&events),
        TmfRequest {
            itt: tmf.itt,
            function: TaskMgmtFunction::ABORT_TASK,
            lun: Lun(0),
            referenced: Some((w.itt, true)),
        }
    );
    assert_eq!(h.s.task_count(), 0);
    assert_eq!(
        h.s.max_cmd_sn(),
        max_before.next(),
        "the slot is free again"
    );
    h.s.tmf_done(tmf.itt, TmfResponse::COMPLETE);
    let r = expect_tmf_response(only_send(h.drain()), tmf.itt, TmfResponse::COMPLETE);
    assert_eq!(r.exp_cmd_sn, h.s.exp_cmd_sn());
    // The datamover's late completion and the SCSI layer's are ignored.
    h.s.data_complete(w.itt);
    assert!(h.drain().is_empty());
    assert!(h.complete(w.itt, good(0, 8192)).is_none());
}

#[test]
fn abort_task_executing_waits_for_its_completion() {
    let mut h = Setup::normal().login();
    let r = h.ini.read(4096);
    h.send(r.clone());
    let tmf = h
        .ini
        .tmf(TaskMgmtFunction::ABORT_TASK, Lun(0), r.itt, r.cmd_sn);
    assert!(
        h.send(tmf.clone()).is_empty(),
        "nothing until the task ends"
    );
    assert!(h.complete(r.itt, good(4096, 4096)).is_none(), "no status");
    let t = expect_tmf_event(&h.drain());
    assert_eq!(t.referenced, Some((r.itt, true)));
    h.s.tmf_done(tmf.itt, TmfResponse::COMPLETE);
    expect_tmf_response(only_send(h.drain()), tmf.itt, TmfResponse::COMPLETE);
}

#[test]
fn abort_task_of_unknown_task_answers_task_does_not_exist() {
    let mut h = Setup::normal().login();
    let exp = h.s.exp_cmd_sn();
    // RefCmdSN outside the window (RFC 7143 §11.6.1, ABORT TASK case c).
    let tmf = h
        .ini
        .tmf(TaskMgmtFunction::ABORT_TASK, Lun(0), Itt(0x999), exp.sub(5));
    expect_tmf_response(
        only_send(h.send(tmf.clone())),
        tmf.itt,
        TmfResponse::TASK_DOES_NOT_EXIST,
    );
    assert_eq!(TmfResponse::TASK_DOES_NOT_EXIST, TmfResponse(1));
    // The task exists, but on another LUN.
    let r = h.ini.read(512);
    h.send(r.clone());
    let tmf = h
        .ini
        .tmf(TaskMgmtFunction::ABORT_TASK, lun(3), r.itt, r.cmd_sn);
    expect_tmf_response(
        only_send(h.send(tmf.clone())),
        tmf.itt,
        TmfResponse::TASK_DOES_NOT_EXIST,
    );
    assert_eq!(h.s.task_count(), 1);
}

/// RFC 7143 §11.6.1 (Response, ABORT TASK case b): "If the Referenced Task Tag does not identify an existing task but
/// the CmdSN indicated by the RefCmdSN field in the Task Management Function Request is
/// within the valid CmdSN window and less than the CmdSN of the Task Management Function
/// Request itself, then targets must consider the CmdSN as received and return the 'Function
/// complete' response."
#[test]
fn abort_task_of_a_lost_command_fills_the_cmd_sn_gap() {
    let mut h = Setup::normal().login();
    let exp = h.s.exp_cmd_sn();
    let lost = h.ini.read(512); // CmdSN exp: never arrives
    let next = h.ini.read(512); // CmdSN exp + 1: waits for the gap
    assert!(h.send(next.clone()).is_empty());
    let tmf = h
        .ini
        .tmf(TaskMgmtFunction::ABORT_TASK, Lun(0), lost.itt, lost.cmd_sn);
    assert_eq!(tmf.cmd_sn, exp.add(2));
    let mut events = h.send(tmf.clone());
    if let Some(t) = events.iter().find_map(|e| match e {
        Event::TaskManagement(t) => Some(t.clone()),
        _ => None,
    }) {
        h.s.tmf_done(t.itt, TmfResponse::COMPLETE);
        events.extend(h.drain());
    }
    let response = events
        .iter()
        .find_map(|e| match e {
            Event::Send(Pdu::TaskMgmtResponse(r)) => Some(r.response),
            _ => None,
        })
        .expect("a TMF response");
    assert_eq!(response, TmfResponse::COMPLETE, "function complete");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Command(c) if c.itt == next.itt)),
        "the lost CmdSN counts as received: the next command runs"
    );
    assert_eq!(h.s.exp_cmd_sn(), exp.add(2));
}

/// The same rule for a command that did arrive but waits in the CmdSN queue behind a gap:
/// answering "task does not exist" and then running the command once the gap is filled
/// executes a command the initiator believes it aborted.
#[test]
fn abort_task_of_a_command_waiting_in_the_cmd_sn_queue() {
    let mut h = Setup::normal().login();
    let exp = h.s.exp_cmd_sn();
    let first = h.ini.read(512); // CmdSN exp: delayed
    let queued = h.ini.write(4096, 0, true); // CmdSN exp + 1: waits for the gap
    assert!(h.send(queued.clone()).is_empty());
    let tmf = h.ini.tmf(
        TaskMgmtFunction::ABORT_TASK,
        Lun(0),
        queued.itt,
        queued.cmd_sn,
    );
    let mut events = h.send(tmf.clone());
    if let Some(t) = events.iter().find_map(|e| match e {
        Event::TaskManagement(t) => Some(t.clone()),
        _ => None,
    }) {
        h.s.tmf_done(t.itt, TmfResponse::COMPLETE);
        events.extend(h.drain());
    }
    let response = events.iter().find_map(|e| match e {
        Event::Send(Pdu::TaskMgmtResponse(r)) => Some(r.response),
        _ => None,
    });
    assert_eq!(response, Some(TmfResponse::COMPLETE), "{events:?}");
    // The gap is filled: the aborted command must not run.
    let events = h.send(first.clone());
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Command(c) if c.itt == queued.itt)),
        "the aborted command ran: {events:?}"
    );
    assert_eq!(h.s.exp_cmd_sn(), exp.add(2));
}

#[test]
fn lun_reset_aborts_the_tasks_of_its_lun() {
    let mut h = Setup::normal().login();
    let a = h.ini.read(512); // LUN 0, executing
    h.send(a.clone());
    let b = h.ini.write(4096, 0, true); // LUN 0, waiting for data
    h.send(b.clone());
    h.ini.lun = lun(1);
    let c = h.ini.read(512); // LUN 1, executing
    h.send(c.clone());
    h.ini.lun = Lun(0);
    let tmf = h.ini.tmf(
        TaskMgmtFunction::LOGICAL_UNIT_RESET,
        Lun(0),
        NO_TASK,
        h.ini.cmd_sn,
    );
    let events = h.send(tmf.clone());
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(events[0], Event::Release { itt } if itt == b.itt));
    assert!(h.complete(a.itt, good(512, 512)).is_none());
    let t = expect_tmf_event(&h.drain());
    assert_eq!(
        t,
        TmfRequest {
            itt: tmf.itt,
            function: TaskMgmtFunction::LOGICAL_UNIT_RESET,
            lun: Lun(0),
            referenced: None,
        }
    );
    // The task of the other LUN is untouched.
    assert!(h.complete(c.itt, good(512, 512)).is_some());
    h.s.tmf_done(tmf.itt, TmfResponse::COMPLETE);
    expect_tmf_response(only_send(h.drain()), tmf.itt, TmfResponse::COMPLETE);
}

#[test]
fn target_warm_reset_aborts_every_task() {
    let mut h = Setup::normal().login();
    let a = h.ini.read(512);
    h.send(a.clone());
    h.ini.lun = lun(1);
    let c = h.ini.read(512);
    h.send(c.clone());
    let b = h.ini.write(4096, 0, true);
    h.send(b.clone());
    h.ini.lun = Lun(0);
    let tmf = h.ini.tmf(
        TaskMgmtFunction::TARGET_WARM_RESET,
        Lun(0),
        NO_TASK,
        h.ini.cmd_sn,
    );
    let events = h.send(tmf.clone());
    assert!(matches!(events.as_slice(), [Event::Release { itt }] if *itt == b.itt));
    assert!(h.complete(a.itt, good(512, 512)).is_none());
    assert!(h.drain().is_empty(), "still waiting for the task on LUN 1");
    assert!(h.complete(c.itt, good(512, 512)).is_none());
    let t = expect_tmf_event(&h.drain());
    assert_eq!(t.function, TaskMgmtFunction::TARGET_WARM_RESET);
    h.s.tmf_done(tmf.itt, TmfResponse::COMPLETE);
    expect_tmf_response(only_send(h.drain()), tmf.itt, TmfResponse::COMPLETE);
    assert_eq!(h.s.task_count(), 0);
}

/// A reset from another I_T nexus (the engine calls `abort_for_reset`): with TAS=1 every
/// affected task ends with TASK ABORTED, at once for a task waiting for data, on completion
/// for a running one.
#[test]
fn reset_from_another_nexus_ends_tasks_with_task_aborted() {
    let mut h = Setup::normal().login();
    let a = h.ini.read(4096); // running
    h.send(a.clone());
    let b = h.ini.write(4096, 0, true); // waiting for data
    h.send(b.clone());
    h.ini.lun = lun(1);
    let c = h.ini.read(512); // another LUN
    h.send(c.clone());
    h.ini.lun = Lun(0);
    let running = h.s.abort_for_reset(Some(Lun(0)));
    assert_eq!(running, [a.itt]);
    let events = h.drain();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(events[0], Event::Release { itt } if itt == b.itt));
    let Event::Send(Pdu::ScsiResponse(r)) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!((r.itt, r.status), (b.itt, ScsiStatus::TASK_ABORTED));
    assert!(r.data.is_empty());
    let reply = h.complete(a.itt, good(4096, 4096)).unwrap();
    let Reply::Response(Pdu::ScsiResponse(r)) = &reply else {
        panic!("no data for an aborted task: {reply:?}")
    };
    assert_eq!(r.status, ScsiStatus::TASK_ABORTED);
    let reply = h.complete(c.itt, good(512, 512)).unwrap();
    assert_eq!(reply_response(&reply).status, ScsiStatus::GOOD);
    assert_eq!(h.s.task_count(), 0);
}

#[test]
fn task_reassign_and_unknown_functions() {
    let mut h = Setup::normal().login();
    let tmf = h.ini.tmf(
        TaskMgmtFunction::TASK_REASSIGN,
        Lun(0),
        Itt(5),
        h.ini.cmd_sn,
    );
    expect_tmf_response(
        only_send(h.send(tmf.clone())),
        tmf.itt,
        TmfResponse::REASSIGNMENT_NOT_SUPPORTED,
    );
    assert_eq!(TmfResponse::REASSIGNMENT_NOT_SUPPORTED, TmfResponse(4));
    // An unassigned function code parses, and is answered "not supported".
    for f in [TaskMgmtFunction(0x20), TaskMgmtFunction::QUERY_TASK] {
        let tmf = h.ini.tmf(f, Lun(0), Itt(5), h.ini.cmd_sn);
        let back = wire(&tmf.clone().into());
        assert!(matches!(&back, Pdu::TaskMgmtRequest(t) if t.function == f));
        expect_tmf_response(
            only_send(h.send(tmf.clone())),
            tmf.itt,
            TmfResponse::NOT_SUPPORTED,
        );
    }
    assert_eq!(TmfResponse::NOT_SUPPORTED, TmfResponse(5));
}

// =============================================================================================
// 10. NOP-Out / NOP-In
// =============================================================================================

#[test]
fn nop_out_is_echoed() {
    let mut h = Setup::normal().login();
    let exp = h.s.exp_cmd_sn();
    let stat_sn = h.next_stat_sn;
    let nop = h.ini.nop_out(Bytes::from_static(b"are you there?"));
    let pdu = only_send(h.send(nop.clone()));
    assert_eq!(
        pdu,
        Pdu::NopIn(NopIn {
            lun: Lun(0),
            itt: nop.itt,
            ttt: Ttt::RESERVED,
            stat_sn,
            exp_cmd_sn: exp.next(),
            max_cmd_sn: exp.next().add(15),
            data: Bytes::from_static(b"are you there?"),
        })
    );
    assert_eq!(h.next_stat_sn, stat_sn.next(), "StatSN advanced");
    // No answer wanted.
    assert!(h.send(h.ini.nop_out_no_answer(Ttt::RESERVED)).is_empty());
    assert_eq!(h.s.stat_sn(), stat_sn.next());
}

#[test]
fn nop_in_echo_is_cut_to_the_initiators_max_recv_data_segment_length() {
    let mut h = Setup::normal()
        .offer("MaxRecvDataSegmentLength", "512")
        .login();
    let nop = h.ini.nop_out(pattern(0, 2000));
    let Pdu::NopIn(n) = only_send(h.send(nop)) else {
        panic!()
    };
    assert_eq!(n.data, pattern(0, 512));
}

fn ping_setup() -> Harness {
    let mut setup = Setup::normal();
    setup.session.nop_in_interval = Some(Duration::from_secs(10));
    setup.session.nop_in_timeout = Duration::from_secs(5);
    setup.login()
}

fn expect_ping(h: &mut Harness) -> Ttt {
    let stat_sn = h.s.stat_sn();
    let pdu = only_send(h.timeout());
    let Pdu::NopIn(n) = pdu else {
        panic!("expected a ping: {pdu:?}")
    };
    assert_eq!(n.itt, Itt::RESERVED);
    assert!(!n.ttt.is_reserved(), "a ping asks for an answer");
    assert_eq!(n.stat_sn, stat_sn, "the next StatSN, not advanced");
    assert_eq!(h.s.stat_sn(), stat_sn);
    assert_eq!(n.lun, Lun(0));
    assert!(n.data.is_empty());
    n.ttt
}

#[test]
fn idle_connection_is_pinged_and_the_answer_clears_the_ping() {
    let mut h = ping_setup();
    assert_eq!(h.s.poll_timeout(), Some(h.t0 + Duration::from_secs(10)));
    h.advance(Duration::from_millis(9999));
    assert!(h.timeout().is_empty());
    h.advance(Duration::from_millis(1));
    let ttt = expect_ping(&mut h);
    assert_eq!(h.s.poll_timeout(), Some(h.t0 + Duration::from_secs(15)));
    // Traffic other than the answer keeps the ping outstanding.
    h.advance(Duration::from_secs(1));
    let nop = h.ini.nop_out(Bytes::new());
    let Pdu::NopIn(answer) = only_send(h.send(nop)) else {
        panic!()
    };
    assert_ne!(answer.itt, Itt::RESERVED);
    assert_eq!(h.s.poll_timeout(), Some(h.t0 + Duration::from_secs(15)));
    // The answer: NOP-Out, ITT 0xffffffff, the ping's TTT, I=1.
    h.advance(Duration::from_secs(1));
    assert!(h.send(h.ini.nop_out_no_answer(ttt)).is_empty());
    assert_eq!(h.s.poll_timeout(), Some(h.t0 + Duration::from_secs(22)));
    h.advance(Duration::from_secs(5));
    assert!(h.timeout().is_empty(), "no close: the ping was answered");
    assert!(!h.s.is_closed());
    // Idle again: a new ping with a new TTT.
    h.advance(Duration::from_secs(5));
    let ttt2 = expect_ping(&mut h);
    assert_ne!(ttt, ttt2);
}

#[test]
fn unanswered_ping_closes_the_connection() {
    let mut h = ping_setup();
    h.advance(Duration::from_secs(10));
    let ttt = expect_ping(&mut h);
    // An answer with another TTT does not count.
    h.advance(Duration::from_secs(1));
    assert!(h.send(h.ini.nop_out_no_answer(Ttt(ttt.0 ^ 1))).is_empty());
    h.advance(Duration::from_secs(3));
    assert!(h.timeout().is_empty());
    h.advance(Duration::from_secs(1));
    let events = h.timeout();
    assert!(
        matches!(events.as_slice(), [Event::Close(CloseReason::PingTimeout)]),
        "{events:?}"
    );
    assert!(h.s.is_closed());
    assert_eq!(h.s.poll_timeout(), None);
    // Nothing more happens on a closed session.
    let nop = h.ini.nop_out(Bytes::new());
    assert!(h.send(nop).is_empty());
    h.advance(Duration::from_secs(60));
    assert!(h.timeout().is_empty());
}

/// A peer busy reading our backlog answers nothing, but the engine sees it take our output
/// (`peer_alive`): the ping's deadline moves, the connection stays; once the signs of life
/// stop, the ping times out as usual.
#[test]
fn signs_of_life_extend_an_outstanding_ping() {
    let mut h = ping_setup();
    h.advance(Duration::from_secs(10));
    expect_ping(&mut h);
    h.advance(Duration::from_secs(4));
    h.s.peer_alive(h.t0 + h.now);
    assert_eq!(h.s.poll_timeout(), Some(h.t0 + Duration::from_secs(19)));
    h.advance(Duration::from_secs(2));
    assert!(
        h.timeout().is_empty(),
        "the old deadline passed, the connection stays"
    );
    h.advance(Duration::from_secs(3));
    let events = h.timeout();
    assert!(
        matches!(events.as_slice(), [Event::Close(CloseReason::PingTimeout)]),
        "{events:?}"
    );
}

#[test]
fn no_ping_without_an_interval() {
    let mut setup = Setup::normal();
    setup.session.nop_in_interval = None;
    let mut h = setup.login();
    assert_eq!(h.s.poll_timeout(), None);
    h.advance(Duration::from_secs(3600));
    assert!(h.timeout().is_empty());
}

// =============================================================================================
// 11. Logout
// =============================================================================================

#[test]
fn logout_waits_for_the_executing_task() {
    let mut h = Setup::normal().login();
    let a = h.ini.read(4096); // executing
    h.send(a.clone());
    let b = h.ini.write(4096, 0, true); // waiting for data
    h.send(b.clone());
    let logout = h.ini.logout(LogoutReason::CloseSession);
    let events = h.send(logout.clone());
    assert!(
        matches!(events.as_slice(), [Event::Release { itt }] if *itt == b.itt),
        "tasks waiting for data end at once: {events:?}"
    );
    // New commands are refused while the logout is pending.
    let c = h.ini.tur();
    let header = Pdu::ScsiCommand(c.clone()).bhs().to_array();
    let Pdu::Reject(rej) = only_send(h.send(c)) else {
        panic!()
    };
    assert_eq!(rej.reason, RejectReason::WAITING_FOR_LOGOUT);
    assert_eq!(rej.reason, RejectReason(0x0c));
    assert_eq!(&rej.data[..], &header[..]);
    let tmf = h
        .ini
        .tmf(TaskMgmtFunction::ABORT_TASK, Lun(0), a.itt, a.cmd_sn);
    assert!(
        matches!(only_send(h.send(tmf)), Pdu::Reject(r) if r.reason == RejectReason::WAITING_FOR_LOGOUT)
    );
    assert!(!h.s.is_closed());

    let stat_before = h.next_stat_sn;
    let reply = h
        .complete(a.itt, good(4096, 4096))
        .expect("the task's status");
    assert_eq!(reply_response(&reply).stat_sn, stat_before);
    let events = h.drain();
    assert_eq!(events.len(), 2, "{events:?}");
    let Event::Send(Pdu::LogoutResponse(r)) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(r.itt, logout.itt);
    assert_eq!(r.response, LogoutResponseCode::Closed);
    assert_eq!(r.stat_sn, stat_before.next(), "after the task's response");
    assert_eq!((r.time2wait, r.time2retain), (0, 0));
    assert!(matches!(events[1], Event::Close(CloseReason::Logout)));
    assert!(h.s.is_closed());
}

#[test]
fn logout_of_an_idle_connection_is_answered_at_once() {
    let mut h = Setup::normal().login();
    let logout = h.ini.logout(LogoutReason::CloseConnection);
    let events = h.send(logout.clone());
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(matches!(
        &events[0],
        Event::Send(Pdu::LogoutResponse(r)) if r.itt == logout.itt && r.response == LogoutResponseCode::Closed
    ));
    assert!(matches!(events[1], Event::Close(CloseReason::Logout)));
}

#[test]
fn logout_remove_for_recovery_is_not_supported() {
    let mut h = Setup::normal().login();
    let logout = h.ini.logout(LogoutReason::RemoveForRecovery);
    let Pdu::LogoutResponse(r) = only_send(h.send(logout.clone())) else {
        panic!()
    };
    assert_eq!(r.itt, logout.itt);
    assert_eq!(r.response, LogoutResponseCode::RecoveryNotSupported);
    assert_eq!(r.response as u8, 2);
    assert!(!h.s.is_closed());
    let c = h.ini.tur();
    assert!(expect_command(&h.send(c)).ready, "the session goes on");
}

#[test]
fn request_logout_sends_an_async_message() {
    let mut h = Setup::normal().login();
    let stat_sn = h.next_stat_sn;
    h.s.request_logout(7);
    let Pdu::AsyncMessage(m) = only_send(h.drain()) else {
        panic!()
    };
    assert_eq!(m.event, AsyncEvent::LOGOUT_REQUEST);
    assert_eq!(m.parameter3, 7);
    assert_eq!(m.stat_sn, stat_sn);
    assert_eq!(m.lun, Lun(0));
}

// =============================================================================================
// 12. Text requests, SendTargets
// =============================================================================================

fn expect_text_response(pdu: Pdu) -> iscsi_proto::pdu::TextResponse {
    match pdu {
        Pdu::TextResponse(r) => r,
        other => panic!("expected a Text Response: {other:?}"),
    }
}

#[test]
fn send_targets_long_answer_is_split_with_continuations() {
    let mut h = Setup::discovery()
        .offer("MaxRecvDataSegmentLength", "512")
        .login();
    assert_eq!(h.params.session_type, SessionType::Discovery);
    let req = h.ini.text(&kv(&[("SendTargets", "All")]));
    let events = h.send(req.clone());
    assert!(
        matches!(events.as_slice(), [Event::SendTargets { itt, query: SendTargetsQuery::All }] if *itt == req.itt),
        "{events:?}"
    );
    let answer = many_targets(12);
    assert!(
        answer.len() > 1024 && answer.len() < 1536,
        "{}",
        answer.len()
    );
    h.s.send_targets_reply(req.itt, answer.clone());
    let first = expect_text_response(only_send(h.drain()));
    assert!(!first.final_ && first.cont, "F=0 C=1");
    assert!(!first.ttt.is_reserved());
    assert_eq!(first.itt, req.itt);
    assert_eq!(first.data.len(), 512);
    let mut got = first.data.to_vec();
    let mut ttts = vec![first.ttt];
    let mut ttt = first.ttt;
    loop {
        let cont = h.ini.text_continue(req.itt, ttt, Bytes::new(), false);
        let r = expect_text_response(only_send(h.send(cont)));
        assert_eq!(r.itt, req.itt);
        assert!(r.data.len() <= 512);
        got.extend_from_slice(&r.data);
        if r.final_ {
            assert!(!r.cont);
            assert!(r.ttt.is_reserved(), "the last response has TTT 0xffffffff");
            break;
        }
        assert!(r.cont && !r.ttt.is_reserved());
        ttts.push(r.ttt);
        ttt = r.ttt;
    }
    assert_eq!(got, answer.to_vec());
    assert_eq!(ttts.len(), 2);
    assert_ne!(ttts[0], ttts[1]);
}

#[test]
fn text_continuation_with_a_wrong_ttt_is_rejected() {
    let mut h = Setup::discovery()
        .offer("MaxRecvDataSegmentLength", "512")
        .login();
    let req = h.ini.text(&kv(&[("SendTargets", "All")]));
    h.send(req.clone());
    h.s.send_targets_reply(req.itt, many_targets(8));
    let first = expect_text_response(only_send(h.drain()));
    let cont = h.ini.text_continue(
        req.itt,
        Ttt(first.ttt.0.wrapping_add(77)),
        Bytes::new(),
        false,
    );
    let Pdu::Reject(r) = only_send(h.send(cont)) else {
        panic!()
    };
    assert_eq!(r.reason, RejectReason::INVALID_PDU_FIELD);
}

#[test]
fn send_targets_with_a_bad_value_and_unknown_keys() {
    let mut h = Setup::discovery().login();
    let req = h.ini.text(&kv(&[("SendTargets", "Alle")]));
    let r = expect_text_response(only_send(h.send(req.clone())));
    assert!(r.final_ && !r.cont && r.ttt.is_reserved());
    assert_eq!(r.itt, req.itt);
    assert_eq!(parse(&r.data), kv(&[("SendTargets", "Reject")]));

    let req = h.ini.text(&kv(&[("FooBar", "1")]));
    let r = expect_text_response(only_send(h.send(req)));
    assert_eq!(parse(&r.data), kv(&[("FooBar", "NotUnderstood")]));

    // An empty SendTargets asks for the session's own target: not in a discovery session.
    let req = h.ini.text(&kv(&[("SendTargets", "")]));
    let r = expect_text_response(only_send(h.send(req)));
    assert_eq!(parse(&r.data), kv(&[("SendTargets", "Reject")]));
}

/// A SendTargets request that also carries a key needing an answer (an unknown key here):
/// RFC 7143 §6.2 asks for NotUnderstood for the unknown key, and the SendTargets query must
/// still be answered (§13.3 / Appendix C).
#[test]
fn send_targets_with_another_key_is_still_answered() {
    let mut h = Setup::discovery().login();
    let req = h
        .ini
        .text(&kv(&[("SendTargets", "All"), ("X-com.example.hint", "1")]));
    let events = h.send(req);
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::SendTargets {
                query: SendTargetsQuery::All,
                ..
            }
        )),
        "the query reaches the engine: {events:?}"
    );
}

#[test]
fn send_targets_in_a_normal_session() {
    let mut h = Setup::normal().login();
    let req = h.ini.text(&kv(&[("SendTargets", "")]));
    let events = h.send(req);
    assert!(matches!(
        events.as_slice(),
        [Event::SendTargets {
            query: SendTargetsQuery::Current,
            ..
        }]
    ));
    let req = h.ini.text(&kv(&[("SendTargets", TARGET)]));
    let events = h.send(req.clone());
    assert!(matches!(
        events.as_slice(),
        [Event::SendTargets { query: SendTargetsQuery::Target(t), .. }] if t == TARGET
    ));
    h.s.send_targets_reply(req.itt, Bytes::new());
    let r = expect_text_response(only_send(h.drain()));
    assert!(r.final_ && r.data.is_empty());
}

#[test]
fn text_negotiation_in_full_feature_phase_reports_new_values() {
    let mut h = Setup::normal().login();
    let req = h.ini.text(&kv(&[("MaxRecvDataSegmentLength", "4096")]));
    let events = h.send(req.clone());
    assert_eq!(events.len(), 2, "{events:?}");
    let Event::KeyValues(params) = &events[0] else {
        panic!("new values for the datamover first: {events:?}")
    };
    assert_eq!(params.initiator_max_recv_data_segment_length, 4096);
    // A declaration needs no answer: an empty final response.
    let Event::Send(pdu) = &events[1] else {
        panic!("{events:?}")
    };
    let r = expect_text_response(pdu.clone());
    assert!(r.final_ && !r.cont && r.ttt.is_reserved());
    assert_eq!(r.itt, req.itt);
    assert_eq!(h.s.params().initiator_max_recv_data_segment_length, 4096);
    // Data-in now uses the new limit.
    let c = h.ini.read(8192);
    let itt = c.itt;
    h.send(c);
    let Some(Reply::Data(put)) = h.complete(itt, good(8192, 8192)) else {
        panic!()
    };
    assert_eq!(put.max_segment_len, 4096);
}

#[test]
fn scsi_command_in_a_discovery_session_is_rejected() {
    let mut h = Setup::discovery().login();
    let c = h.ini.read(512);
    let header = Pdu::ScsiCommand(c.clone()).bhs().to_array();
    let Pdu::Reject(r) = only_send(h.send(c)) else {
        panic!()
    };
    assert_eq!(r.reason, RejectReason::PROTOCOL_ERROR);
    assert_eq!(&r.data[..], &header[..]);
    assert_eq!(h.s.task_count(), 0);
}

/// RFC 7143 §11.10.4: the target answers a Text Request with C=1 with an empty response
/// carrying a TTT other than 0xffffffff, and "by copying the Target Transfer Tag from the
/// response to the next Text Request, the initiator tells the target to continue the
/// operation".
#[test]
fn text_request_with_continue_bit() {
    let mut h = Setup::discovery().login();
    let whole = text(&kv(&[("SendTargets", "All")]));
    let mut first = h.ini.text(&[]);
    first.cont = true;
    first.final_ = false;
    first.data = whole.slice(..6);
    let r = expect_text_response(only_send(h.send(first.clone())));
    assert!(!r.final_ && !r.cont && r.data.is_empty());
    assert!(!r.ttt.is_reserved());
    let second = h
        .ini
        .text_continue(first.itt, r.ttt, whole.slice(6..), false);
    let events = h.send(second);
    assert!(
        matches!(
            events.as_slice(),
            [Event::SendTargets {
                query: SendTargetsQuery::All,
                ..
            }]
        ),
        "{events:?}"
    );
}

/// A Text request with F=0 (the initiator has more to negotiate) is answered F=0 with a TTT;
/// the request echoing that TTT goes on, and only the answer to an F=1 request has F=1
/// (RFC 7143 §11.10.2, §11.11.1).
#[test]
fn text_request_without_final_bit_keeps_the_negotiation_open() {
    let mut h = Setup::normal().login();
    let mut first = h.ini.text(&kv(&[("X-com.example.a", "1")]));
    first.final_ = false;
    let r = expect_text_response(only_send(h.send(first.clone())));
    assert!(!r.final_ && !r.cont, "F=0 request, F=0 answer: {r:?}");
    assert!(!r.ttt.is_reserved());
    assert_eq!(
        value(&parse(&r.data), "X-com.example.a"),
        Some("NotUnderstood")
    );
    let mut second = h.ini.text_continue(
        first.itt,
        r.ttt,
        text(&kv(&[("X-com.example.b", "2")])),
        false,
    );
    second.final_ = true;
    let r = expect_text_response(only_send(h.send(second)));
    assert!(r.final_ && r.ttt.is_reserved(), "{r:?}");
    assert_eq!(
        value(&parse(&r.data), "X-com.example.b"),
        Some("NotUnderstood")
    );
}

// =============================================================================================
// 13. Malformed PDUs and PDUs that do not belong here
// =============================================================================================

#[test]
fn malformed_pdu_with_a_reject_reason_is_rejected_with_its_header() {
    let mut h = Setup::normal().login();
    // An unknown opcode.
    let mut raw = Pdu::from(NopOut {
        itt: Itt(1),
        ttt: Ttt::RESERVED,
        ..NopOut::default()
    })
    .to_bytes(Digests::NONE)
    .unwrap()
    .to_vec();
    raw[0] = 0x1c;
    let raw = Bytes::from(raw);
    let err = Pdu::parse(&raw, Digests::NONE).unwrap_err();
    assert_eq!(err, PduError::UnknownOpcode(Opcode(0x1c)));
    let now = h.instant();
    h.s.handle_malformed(now, &raw[..48], &err);
    let Pdu::Reject(r) = only_send(h.drain()) else {
        panic!()
    };
    assert_eq!(r.reason, RejectReason::COMMAND_NOT_SUPPORTED);
    assert_eq!(&r.data[..], &raw[..48], "the 48-byte header");

    // A reserved Logout reason code.
    let mut raw = Pdu::from(iscsi_proto::pdu::LogoutRequest::default())
        .to_bytes(Digests::NONE)
        .unwrap()
        .to_vec();
    raw[1] = 0x85;
    let raw = Bytes::from(raw);
    let err = Pdu::parse(&raw, Digests::NONE).unwrap_err();
    assert!(matches!(err, PduError::InvalidField { .. }));
    h.s.handle_malformed(now, &raw, &err);
    let Pdu::Reject(r) = only_send(h.drain()) else {
        panic!()
    };
    assert_eq!(r.reason, RejectReason::INVALID_PDU_FIELD);
    assert_eq!(&r.data[..], &raw[..48]);
    assert!(!h.s.is_closed());
}

/// Feeds `pdu` to the session as it arrives with its data segment damaged (DataDigest=CRC32C
/// on the wire): the session gets the header and the digest error; returns the events.
fn damaged(h: &mut Harness, pdu: impl Into<Pdu>) -> Vec<Event> {
    let digests = Digests {
        header: false,
        data: true,
    };
    let mut raw = pdu.into().to_bytes(digests).unwrap().to_vec();
    raw[48] ^= 0x10;
    let raw = Bytes::from(raw);
    let err = Pdu::parse(&raw, digests).unwrap_err();
    assert!(matches!(err, PduError::DataDigest { .. }), "{err:?}");
    let now = h.instant();
    h.s.handle_malformed(now, &raw[..48], &err);
    h.drain()
}

fn expect_digest_reject(events: Vec<Event>) {
    let Pdu::Reject(r) = only_send(events) else {
        panic!("a Reject")
    };
    assert_eq!(r.reason, RejectReason::DATA_DIGEST_ERROR);
}

/// RFC 7143 §7.8: a command discarded for a data digest error holds every later command until
/// the initiator sends it again or plugs its CmdSN; one that does neither (the Linux initiator
/// waits for its SCSI command timeout) loses the connection after `cmd_sn_gap_timeout`.
#[test]
fn an_unfilled_cmd_sn_of_a_damaged_command_closes_the_connection_in_time() {
    let mut h = Setup::normal().login();
    assert_eq!(h.config.cmd_sn_gap_timeout, Some(Duration::from_secs(2)));
    let w = h.ini.write(512, 512, true);
    expect_digest_reject(damaged(&mut h, w.clone()));
    let next = h.ini.read(512);
    assert!(
        h.send(next).is_empty(),
        "the next command waits for the gap"
    );
    assert_eq!(
        h.s.poll_timeout(),
        Some(h.instant() + Duration::from_secs(2))
    );

    h.advance(Duration::from_millis(1999));
    assert!(h.timeout().is_empty());
    assert!(!h.s.is_closed());
    h.advance(Duration::from_millis(1));
    let events = h.timeout();
    assert!(
        matches!(events.as_slice(), [Event::Close(CloseReason::CmdSnGap(sn))] if *sn == w.cmd_sn),
        "{events:?}"
    );
    assert!(h.s.is_closed());
}

/// The command sent again (same ITT and CmdSN), or its CmdSN plugged with ABORT TASK, in time:
/// the connection stays.
#[test]
fn a_damaged_command_sent_again_or_aborted_in_time_keeps_the_connection() {
    let mut h = Setup::normal().login();
    let w = h.ini.write(512, 512, true);
    expect_digest_reject(damaged(&mut h, w.clone()));
    h.advance(Duration::from_secs(1));
    let events = h.send(w.clone());
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Command(c) if c.itt == w.itt)),
        "the retry runs: {events:?}"
    );
    let after = h.s.poll_timeout().expect("the ping timer");
    assert!(
        after >= h.instant() + Duration::from_secs(29),
        "no gap timer"
    );
    h.advance(Duration::from_secs(5));
    assert!(h.timeout().is_empty());

    let lost = h.ini.write(512, 512, true);
    expect_digest_reject(damaged(&mut h, lost.clone()));
    let tmf = h
        .ini
        .tmf(TaskMgmtFunction::ABORT_TASK, Lun(0), lost.itt, lost.cmd_sn);
    let mut events = h.send(tmf);
    if let Some(t) = events.iter().find_map(|e| match e {
        Event::TaskManagement(t) => Some(t.clone()),
        _ => None,
    }) {
        h.s.tmf_done(t.itt, TmfResponse::COMPLETE);
        events.extend(h.drain());
    }
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Send(Pdu::TaskMgmtResponse(_)))),
        "{events:?}"
    );
    assert_eq!(h.s.exp_cmd_sn(), lost.cmd_sn.next(), "the gap is plugged");
    h.advance(Duration::from_secs(5));
    assert!(h.timeout().is_empty());
    assert!(!h.s.is_closed());
}

/// Two damaged commands, only the first sent again: the second's gap still ends the
/// connection, at its own deadline.
#[test]
fn each_unfilled_cmd_sn_has_its_own_deadline() {
    let mut h = Setup::normal().login();
    let a = h.ini.write(512, 512, true);
    let b = h.ini.write(512, 512, true);
    expect_digest_reject(damaged(&mut h, a.clone()));
    h.advance(Duration::from_secs(1));
    expect_digest_reject(damaged(&mut h, b.clone()));
    let events = h.send(a);
    assert!(events.iter().any(|e| matches!(e, Event::Command(_))));
    assert_eq!(
        h.s.poll_timeout(),
        Some(h.instant() + Duration::from_secs(2))
    );
    h.advance(Duration::from_millis(1999));
    assert!(h.timeout().is_empty(), "the first gap is filled");
    h.advance(Duration::from_millis(1));
    let events = h.timeout();
    assert!(
        matches!(events.as_slice(), [Event::Close(CloseReason::CmdSnGap(sn))] if *sn == b.cmd_sn),
        "{events:?}"
    );
}

/// Only a CmdSN the target has not counted starts the timer (not an immediate command, not a
/// damaged copy of a command that already ran), and `None` turns it off.
#[test]
fn the_cmd_sn_gap_timer_only_for_uncounted_cmd_sns_and_only_when_on() {
    let quiet = |gap: Option<Duration>| {
        let mut setup = Setup::normal();
        setup.session.nop_in_interval = None;
        setup.session.cmd_sn_gap_timeout = gap;
        setup.login()
    };
    let mut h = quiet(Some(Duration::from_secs(2)));
    // An immediate command carries the next CmdSN without taking it.
    let mut imm = h.ini.write(512, 512, true);
    imm.immediate = true;
    h.ini.cmd_sn = imm.cmd_sn;
    expect_digest_reject(damaged(&mut h, imm));
    assert_eq!(
        h.s.poll_timeout(),
        None,
        "an immediate command leaves no gap"
    );
    let w = h.ini.write(512, 512, true);
    let events = h.send(w.clone());
    assert!(events.iter().any(|e| matches!(e, Event::Command(_))));
    expect_digest_reject(damaged(&mut h, w));
    assert_eq!(h.s.poll_timeout(), None, "nothing waits");
    h.advance(Duration::from_secs(3600));
    assert!(h.timeout().is_empty());

    // A damaged copy of a command parked behind another gap: its CmdSN is in hand.
    let mut h = quiet(Some(Duration::from_secs(2)));
    let _lost = h.ini.tur();
    let w = h.ini.write(512, 512, true);
    assert!(h.send(w.clone()).is_empty(), "parked behind the gap");
    expect_digest_reject(damaged(&mut h, w));
    assert_eq!(
        h.s.poll_timeout(),
        None,
        "a parked CmdSN leaves no gap of its own"
    );

    let mut h = quiet(None);
    let w = h.ini.write(512, 512, true);
    expect_digest_reject(damaged(&mut h, w));
    assert_eq!(h.s.poll_timeout(), None);
    h.advance(Duration::from_secs(3600));
    assert!(h.timeout().is_empty());
    assert!(!h.s.is_closed());
}

#[test]
fn malformed_pdu_without_a_reject_reason_closes_the_connection() {
    let mut h = Setup::normal().login();
    let now = h.instant();
    let err = PduError::HeaderDigest {
        computed: 1,
        received: 2,
    };
    assert_eq!(err.reject_reason(), None);
    h.s.handle_malformed(now, &[0u8; 48], &err);
    let events = h.drain();
    assert!(
        matches!(
            events.as_slice(),
            [Event::Close(CloseReason::ProtocolError(_))]
        ),
        "{events:?}"
    );
    assert!(h.s.is_closed());

    // A rejectable error whose header is not whole cannot be answered either.
    let mut h = Setup::normal().login();
    h.s.handle_malformed(now, &[0u8; 20], &PduError::Truncated { needed: 28 });
    assert!(matches!(
        h.drain().as_slice(),
        [Event::Close(CloseReason::ProtocolError(_))]
    ));
}

#[test]
fn pdus_that_do_not_belong_in_full_feature_phase_are_rejected() {
    let mut h = Setup::normal().login();
    let cases: Vec<(Pdu, RejectReason)> = vec![
        (
            NopIn {
                itt: Itt(3),
                ttt: Ttt::RESERVED,
                ..NopIn::default()
            }
            .into(),
            RejectReason::PROTOCOL_ERROR,
        ),
        (
            SnackRequest {
                itt: Itt(3),
                ..SnackRequest::default()
            }
            .into(),
            RejectReason::COMMAND_NOT_SUPPORTED,
        ),
        (
            LoginRequest {
                isid: ISID,
                itt: Itt(3),
                ..LoginRequest::default()
            }
            .into(),
            RejectReason::PROTOCOL_ERROR,
        ),
    ];
    for (pdu, reason) in cases {
        let header = pdu.bhs().to_array();
        let Pdu::Reject(r) = only_send(h.send(pdu.clone())) else {
            panic!("{pdu:?}")
        };
        assert_eq!(r.reason, reason, "{pdu:?}");
        assert_eq!(&r.data[..], &header[..]);
    }
}

// =============================================================================================
// 14. Property: random traffic against a logged-in session
// =============================================================================================

/// The session a property test runs against: small limits so that random traffic reaches
/// them (window, bursts, R2T batches, segment length, transfer and buffer bounds, pings).
fn random_setup(initial_r2t: bool, immediate: bool, depth: u32) -> Harness {
    let mut setup = Setup::normal()
        .offer("InitialR2T", if initial_r2t { "Yes" } else { "No" })
        .offer("ImmediateData", if immediate { "Yes" } else { "No" })
        .offer("MaxBurstLength", "4096")
        .offer("FirstBurstLength", "2048")
        .offer("MaxOutstandingR2T", "2")
        .offer("MaxRecvDataSegmentLength", "1024")
        .queue_depth(depth);
    setup.session.max_transfer_len = 16384;
    setup.session.max_buffered = 32768;
    setup.session.nop_in_interval = Some(Duration::from_secs(30));
    setup.session.nop_in_timeout = Duration::from_secs(20);
    setup.login()
}

proptest! {
    #![proptest_config(config(256))]

    /// Random traffic (well-formed requests in and out of CmdSN order, random field values,
    /// raw bytes, completions of random tags, timers) never panics; every PDU sent encodes and
    /// parses back; StatSN of status-bearing PDUs advances by exactly one (a NOP-In ping and
    /// Get_Data show it without taking it); ExpCmdSN and MaxCmdSN never move backwards (RFC
    /// 1982). The harness checks all of it on every PDU.
    #[test]
    fn random_traffic_keeps_the_sequence_invariants(
        ops in prop::collection::vec(op(), 1..80),
        initial_r2t in any::<bool>(),
        immediate in any::<bool>(),
        depth in 1u32..6,
    ) {
        let mut h = random_setup(initial_r2t, immediate, depth);
        let mut driver = Driver::new(false);
        for op in ops {
            driver.run(&mut h, op);
        }
    }

    /// The same traffic from an engine that follows the contract (completes only the tasks it
    /// runs, reports only requested data): besides the invariants above, the session never
    /// reuses the tag of a task the engine holds, never releases or answers a running task
    /// behind the engine's back, and asks for data only for tasks waiting for it. Data-Out
    /// for running tasks is left out here (see the next test).
    #[test]
    fn random_traffic_respects_the_engine_contract(
        ops in prop::collection::vec(op(), 1..80),
        initial_r2t in any::<bool>(),
        immediate in any::<bool>(),
        depth in 1u32..6,
    ) {
        let mut h = random_setup(initial_r2t, immediate, depth);
        let mut driver = Driver::new(true);
        for op in ops {
            driver.run(&mut h, op);
        }
    }

    /// As above, with stray Data-Out for running tasks too.
    #[test]
    fn random_traffic_with_stray_data_respects_the_engine_contract(
        ops in prop::collection::vec(op(), 1..80),
        initial_r2t in any::<bool>(),
        immediate in any::<bool>(),
        depth in 1u32..6,
    ) {
        let mut h = random_setup(initial_r2t, immediate, depth);
        let mut driver = Driver::new(true);
        driver.stray_data_for_running_tasks = true;
        for op in ops {
            driver.run(&mut h, op);
        }
    }
}
