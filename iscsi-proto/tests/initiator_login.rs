//! The initiator's login against the target's, in memory: both sans-IO machines of this
//! crate talk until the initiator reaches full feature phase or fails.

use std::sync::Arc;

use iscsi_proto::auth::{
    AuthPolicy, ChapAlgorithm, ChapCredential, InitiatorAuthConfig, TargetAuthConfig,
};
use iscsi_proto::initiator::{InitiatorLogin, InitiatorLoginConfig, InitiatorStep, LoginFailure};
use iscsi_proto::pdu::{LoginRequest, LoginResponse, LoginStatus, Tsih};
use iscsi_proto::serial::StatSn;
use iscsi_proto::target::{LoginConfig, LoginHost, LoginIdentity, LoginStep, TargetLogin};
use iscsi_proto::text::{LocalConfig, SessionType};

const INITIATOR: &str = "iqn.2026-11.rs.iscsi:initiator";
const TARGET: &str = "iqn.2026-11.rs.iscsi:target";

/// A host that admits `TARGET` with the given authentication and hands out TSIH 7.
struct Host {
    auth: Arc<TargetAuthConfig>,
    refuse: Option<LoginStatus>,
}

impl LoginHost for Host {
    fn authorize(&mut self, who: &LoginIdentity) -> Result<Arc<TargetAuthConfig>, LoginStatus> {
        if let Some(s) = self.refuse {
            return Err(s);
        }
        match (who.session_type, who.target_name.as_deref()) {
            (SessionType::Discovery, _) => Ok(Arc::new(TargetAuthConfig::default())),
            (_, Some(TARGET)) => Ok(self.auth.clone()),
            _ => Err(LoginStatus::NOT_FOUND),
        }
    }

    fn open_session(&mut self, _: &LoginIdentity, _: Option<&str>) -> Result<Tsih, LoginStatus> {
        Ok(Tsih(7))
    }
}

fn target(host_auth: TargetAuthConfig) -> (TargetLogin, Host) {
    let negotiation = LocalConfig {
        target_portal_group_tag: Some(1),
        max_recv_data_segment_length: 262_144,
        max_burst_length: 1 << 20,
        first_burst_length: 1 << 20,
        initial_r2t: false,
        max_outstanding_r2t: 8,
        ..LocalConfig::default()
    };
    let login = TargetLogin::new(
        LoginConfig {
            negotiation,
            initial_stat_sn: StatSn(0xffff_fffe),
            queue_depth: 32,
            random: (0..64).map(|i| i as u8 ^ 0x5a).collect(),
        },
        false,
    );
    let host = Host {
        auth: Arc::new(host_auth),
        refuse: None,
    };
    (login, host)
}

fn initiator(kind: SessionType, auth: Option<InitiatorAuthConfig>) -> InitiatorLogin {
    let negotiation = LocalConfig {
        initiator_name: Some(INITIATOR.into()),
        target_name: (kind == SessionType::Normal).then(|| TARGET.into()),
        max_recv_data_segment_length: 65_536,
        max_burst_length: 262_144,
        first_burst_length: 65_536,
        max_outstanding_r2t: 4,
        ..LocalConfig::default()
    };
    let mut cfg = InitiatorLoginConfig::new(negotiation);
    cfg.session_type = kind;
    cfg.auth = auth.map(Arc::new);
    cfg.random = (0..64).map(|i| (i * 7) as u8).collect();
    InitiatorLogin::new(cfg, false)
}

/// Runs both sides to the end: the initiator's result, and the target's last step.
fn run(
    i: InitiatorLogin,
    t: TargetLogin,
    host: &mut Host,
) -> (Result<InitiatorStep, LoginFailure>, u32) {
    run_watching(i, t, host, |_| {})
}

/// [`run`], showing each of the initiator's requests to `watch` before the target gets it.
fn run_watching(
    mut i: InitiatorLogin,
    mut t: TargetLogin,
    host: &mut Host,
    mut watch: impl FnMut(&LoginRequest),
) -> (Result<InitiatorStep, LoginFailure>, u32) {
    let mut req = i.start();
    for round in 1..=32 {
        watch(&req);
        let resp: LoginResponse = match t.handle(&req, host) {
            LoginStep::Continue(r) | LoginStep::Complete(r) | LoginStep::Failed(r, _) => r,
        };
        match i.handle(&resp) {
            Ok(InitiatorStep::Send(next)) => req = next,
            other => return (other, round),
        }
    }
    panic!("no end after 32 rounds");
}

fn chap_target(mutual: bool) -> TargetAuthConfig {
    TargetAuthConfig {
        method: AuthPolicy::Chap,
        credentials: vec![ChapCredential::new("alice", "alice-secret-0123")],
        mutual: mutual.then(|| ChapCredential::new("target-bob", "bob-secret-4567")),
        ..TargetAuthConfig::default()
    }
}

fn chap_initiator(secret: &str, mutual: Option<&str>, alg: ChapAlgorithm) -> InitiatorAuthConfig {
    InitiatorAuthConfig {
        credential: Some(ChapCredential::new("alice", secret)),
        mutual: mutual.map(|s| ChapCredential::new("target-bob", s)),
        algorithms: vec![alg],
        ..InitiatorAuthConfig::default()
    }
}

#[test]
fn no_authentication_reaches_full_feature_phase_with_agreed_values() {
    let (t, mut host) = target(TargetAuthConfig::default());
    let (r, rounds) = run(initiator(SessionType::Normal, None), t, &mut host);
    let Ok(InitiatorStep::Complete(o)) = r else {
        panic!("{r:?}")
    };
    assert!(rounds <= 3, "{rounds} round trips");
    assert_eq!(o.tsih, Tsih(7));
    let p = &o.params;
    assert_eq!(p.max_burst_length, 262_144, "Minimum of both");
    assert_eq!(p.first_burst_length, 65_536);
    assert_eq!(p.max_outstanding_r2t, 4);
    assert!(p.immediate_data);
    assert!(p.initial_r2t, "OR: the initiator kept the default Yes");
    assert_eq!(
        p.target_max_recv_data_segment_length, 262_144,
        "declared by the target"
    );
    assert_eq!(p.initiator_max_recv_data_segment_length, 65_536);
    assert_eq!(p.target_portal_group_tag, Some(1));
    // StatSN wrapped during the login (the target started at 2^32 - 2).
    assert_eq!(o.exp_stat_sn.0, (0xffff_fffeu32).wrapping_add(rounds));
    assert_eq!(o.max_cmd_sn, o.exp_cmd_sn.add(31));
}

#[test]
fn chap_one_way_and_mutual_with_every_algorithm() {
    for alg in ChapAlgorithm::ALL {
        for mutual in [false, true] {
            let (t, mut host) = target(chap_target(mutual));
            let auth = chap_initiator(
                "alice-secret-0123",
                mutual.then_some("bob-secret-4567"),
                alg,
            );
            let (r, _) = run(initiator(SessionType::Normal, Some(auth)), t, &mut host);
            assert!(
                matches!(r, Ok(InitiatorStep::Complete(_))),
                "{alg:?} mutual={mutual}: {r:?}"
            );
        }
    }
}

#[test]
fn wrong_secret_is_refused_with_authentication_failure() {
    let (t, mut host) = target(chap_target(false));
    let auth = chap_initiator("not-the-secret-99", None, ChapAlgorithm::Md5);
    let (r, _) = run(initiator(SessionType::Normal, Some(auth)), t, &mut host);
    let Err(LoginFailure::Refused(s)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(s, LoginStatus::AUTHENTICATION_FAILURE);
    let msg = LoginFailure::Refused(s).to_string();
    assert!(
        msg.contains("0201") && msg.contains("authentication failed"),
        "{msg}"
    );
}

#[test]
fn a_target_that_fails_mutual_chap_is_refused_by_the_initiator() {
    let (t, mut host) = target(chap_target(true));
    let auth = chap_initiator(
        "alice-secret-0123",
        Some("what-we-expect-77"),
        ChapAlgorithm::Sha256,
    );
    let (r, _) = run(initiator(SessionType::Normal, Some(auth)), t, &mut host);
    assert!(matches!(r, Err(LoginFailure::Auth(_))), "{r:?}");
}

#[test]
fn chap_required_but_not_configured_on_the_initiator() {
    let (t, mut host) = target(chap_target(false));
    let (r, _) = run(initiator(SessionType::Normal, None), t, &mut host);
    assert_eq!(
        r.err(),
        Some(LoginFailure::Refused(LoginStatus::AUTHENTICATION_FAILURE))
    );
}

#[test]
fn discovery_session_logs_in_without_a_target_name() {
    let (t, mut host) = target(chap_target(false));
    let (r, _) = run(initiator(SessionType::Discovery, None), t, &mut host);
    let Ok(InitiatorStep::Complete(o)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(o.params.session_type, SessionType::Discovery);
}

#[test]
fn refusals_carry_the_target_status() {
    for status in [
        LoginStatus::NOT_FOUND,
        LoginStatus::AUTHORIZATION_FAILURE,
        LoginStatus::OUT_OF_RESOURCES,
    ] {
        let (t, mut host) = target(TargetAuthConfig::default());
        host.refuse = Some(status);
        let (r, rounds) = run(initiator(SessionType::Normal, None), t, &mut host);
        assert_eq!(rounds, 1);
        assert_eq!(r.err(), Some(LoginFailure::Refused(status)));
    }
}

#[test]
fn redirection_gives_the_addresses() {
    let mut i = initiator(SessionType::Normal, None);
    let req = i.start();
    let resp = LoginResponse {
        csg: req.csg,
        nsg: req.csg,
        itt: req.itt,
        isid: req.isid,
        stat_sn: StatSn(5),
        status: LoginStatus::TARGET_MOVED_TEMPORARILY,
        data: bytes::Bytes::from_static(b"TargetAddress=127.0.0.2:3260,1\0"),
        ..LoginResponse::default()
    };
    match i.handle(&resp) {
        Ok(InitiatorStep::Redirect {
            addresses,
            permanent,
        }) => {
            assert_eq!(addresses, vec!["127.0.0.2:3260,1".to_string()]);
            assert!(!permanent);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_target_that_never_moves_on_is_given_up() {
    // Answer every request with an empty response in the same stage, forever.
    let mut i = initiator(SessionType::Normal, None);
    let mut req = i.start();
    let mut stat_sn = StatSn(1);
    for _ in 0..100 {
        let resp = LoginResponse {
            csg: req.csg,
            nsg: req.csg,
            itt: req.itt,
            isid: req.isid,
            stat_sn,
            ..LoginResponse::default()
        };
        stat_sn = stat_sn.next();
        match i.handle(&resp) {
            Ok(InitiatorStep::Send(next)) => req = next,
            Err(LoginFailure::Protocol(m)) => {
                assert!(m.contains("exchanges"), "{m}");
                return;
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("the initiator never gave up");
}

/// The request that carries our CHAP response (and, with mutual CHAP, our challenge) asks to
/// leave the security stage (T=1, RFC 7143 Appendix B), so that the target's mutual answer
/// comes with its transition and no further security-stage request is needed: tgtd refuses
/// one once it has answered.
#[test]
fn the_chap_response_asks_to_move_on() {
    for mutual in [false, true] {
        let (t, mut host) = target(chap_target(mutual));
        let auth = chap_initiator(
            "alice-secret-0123",
            mutual.then_some("bob-secret-4567"),
            ChapAlgorithm::Sha256,
        );
        let i = initiator(SessionType::Normal, Some(auth));
        let mut security_requests = 0;
        let (r, _) = run_watching(i, t, &mut host, |req| {
            if req.csg == iscsi_proto::pdu::Stage::Security {
                security_requests += 1;
                if req.data.windows(7).any(|w| w == b"CHAP_R=") {
                    assert!(req.transit, "mutual={mutual}: CHAP_R sent with T=0");
                }
            }
        });
        assert!(matches!(r, Ok(InitiatorStep::Complete(_))), "{r:?}");
        // AuthMethod, CHAP_A, CHAP_N/CHAP_R (+ CHAP_I/CHAP_C): three requests, no fourth.
        assert_eq!(security_requests, 3, "mutual={mutual}");
    }
}

/// Without CHAP the first request already asks to leave the security stage (T=1, NSG=1) and
/// no security-stage request ever goes out empty: Linux LIO refuses an empty one ("zero
/// length security payload", 0201), which the T=0 first request used to lead to.
#[test]
fn without_chap_the_first_request_leaves_the_security_stage() {
    let (t, mut host) = target(TargetAuthConfig::default());
    let i = initiator(SessionType::Normal, None);
    let mut first = true;
    let (r, _) = run_watching(i, t, &mut host, |req| {
        if std::mem::take(&mut first) {
            assert!(req.transit, "T=1 in the first request");
            assert_eq!(
                (req.csg, req.nsg),
                (
                    iscsi_proto::pdu::Stage::Security,
                    iscsi_proto::pdu::Stage::Operational
                )
            );
        }
        assert!(
            req.csg != iscsi_proto::pdu::Stage::Security || !req.data.is_empty(),
            "an empty security-stage request"
        );
    });
    assert!(matches!(r, Ok(InitiatorStep::Complete(_))), "{r:?}");
}
