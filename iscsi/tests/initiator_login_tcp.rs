//! The sans-IO initiator login over real TCP: against this crate's target (always), and
//! against any target given by `ISCSI_LOGIN_PEER=HOST:PORT/IQN` (e.g. tgtd).

mod support;

use std::sync::Arc;
use std::time::Duration;

use iscsi::proto::auth::{ChapCredential, InitiatorAuthConfig};
use iscsi::proto::initiator::{InitiatorLogin, InitiatorLoginConfig, InitiatorStep, LoginFailure};
use iscsi::proto::pdu::{Digests, LoginStatus, Pdu};
use iscsi::proto::text::{LocalConfig, SessionType};
use iscsi::proto::{Deframer, DeframerConfig};
use iscsi::target::TargetConfig;
use support::tgtd::{TGT_IQN, Tgtd};
use support::{STEP, TARGET, disk, start, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INITIATOR: &str = "iqn.2026-11.rs.iscsi:initiator-login";

/// Logs in over `addr`; returns the initiator's verdict.
async fn login(
    addr: &str,
    target: Option<&str>,
    auth: Option<InitiatorAuthConfig>,
) -> Result<InitiatorStep, LoginFailure> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let negotiation = LocalConfig {
        initiator_name: Some(INITIATOR.into()),
        target_name: target.map(str::to_owned),
        ..LocalConfig::default()
    };
    let mut cfg = InitiatorLoginConfig::new(negotiation);
    if target.is_none() {
        cfg.session_type = SessionType::Discovery;
    }
    cfg.auth = auth.map(Arc::new);
    cfg.random = (0..64).map(|i| (i * 31 + 7) as u8).collect();
    let mut login = InitiatorLogin::new(cfg, false);
    let mut req = login.start();
    let mut deframer = Deframer::new(DeframerConfig::default());
    loop {
        let bytes = Pdu::LoginRequest(req).to_bytes(Digests::NONE).unwrap();
        stream.write_all(&bytes).await.expect("send");
        let frame = loop {
            if let Some(f) = deframer.next_frame().expect("deframe") {
                break f;
            }
            let n = within(STEP, "login response", stream.read_buf(deframer.read_buf()))
                .await
                .expect("read");
            assert!(n > 0, "the target closed the connection during login");
        };
        let Pdu::LoginResponse(resp) = Pdu::from_frame(&frame).expect("decode") else {
            panic!("not a login response")
        };
        match login.handle(&resp) {
            Ok(InitiatorStep::Send(next)) => req = next,
            other => return other,
        }
    }
}

#[tokio::test]
async fn logs_in_to_our_target_with_and_without_chap() {
    within(Duration::from_secs(30), "test", async {
        let open = start(TargetConfig::default(), vec![disk(TARGET, 1 << 20)]).await;
        let addr = open.addr.to_string();
        let r = login(&addr, Some(TARGET), None).await;
        assert!(matches!(r, Ok(InitiatorStep::Complete(_))), "{r:?}");
        let r = login(&addr, None, None).await;
        assert!(
            matches!(r, Ok(InitiatorStep::Complete(_))),
            "discovery: {r:?}"
        );
        let r = login(&addr, Some("iqn.2026-11.rs.iscsi:nope"), None).await;
        assert_eq!(r.err(), Some(LoginFailure::Refused(LoginStatus::NOT_FOUND)));

        let chap = start(
            TargetConfig::default(),
            vec![
                disk(TARGET, 1 << 20)
                    .chap("alice", b"alice-secret-0123".to_vec())
                    .mutual_chap("target-bob", b"bob-secret-4567".to_vec()),
            ],
        )
        .await;
        let addr = chap.addr.to_string();
        let auth = |secret: &str, mutual: Option<&str>| InitiatorAuthConfig {
            credential: Some(ChapCredential::new("alice", secret)),
            mutual: mutual.map(|s| ChapCredential::new("target-bob", s)),
            ..InitiatorAuthConfig::default()
        };
        let r = login(&addr, Some(TARGET), Some(auth("alice-secret-0123", None))).await;
        assert!(matches!(r, Ok(InitiatorStep::Complete(_))), "CHAP: {r:?}");
        let r = login(
            &addr,
            Some(TARGET),
            Some(auth("alice-secret-0123", Some("bob-secret-4567"))),
        )
        .await;
        assert!(matches!(r, Ok(InitiatorStep::Complete(_))), "mutual: {r:?}");
        let r = login(&addr, Some(TARGET), Some(auth("wrong-secret-0000", None))).await;
        assert_eq!(
            r.err(),
            Some(LoginFailure::Refused(LoginStatus::AUTHENTICATION_FAILURE))
        );
        let r = login(&addr, Some(TARGET), None).await;
        assert_eq!(
            r.err(),
            Some(LoginFailure::Refused(LoginStatus::AUTHENTICATION_FAILURE))
        );
    })
    .await;
}

/// `ISCSI_LOGIN_PEER=127.0.0.1:3260/iqn...` logs in to that target (no CHAP) and to its
/// discovery session.
#[tokio::test]
async fn logs_in_to_a_peer_target() {
    let Ok(peer) = std::env::var("ISCSI_LOGIN_PEER") else {
        println!("SKIPPED logs_in_to_a_peer_target: ISCSI_LOGIN_PEER=HOST:PORT/IQN not set");
        return;
    };
    let (addr, iqn) = peer
        .split_once('/')
        .expect("ISCSI_LOGIN_PEER=HOST:PORT/IQN");
    let r = login(addr, Some(iqn), None).await;
    let Ok(InitiatorStep::Complete(o)) = r else {
        panic!("login to {peer}: {r:?}")
    };
    println!("logged in to {peer}: TSIH {:?}, {:?}", o.tsih, o.params);
    let r = login(addr, None, None).await;
    assert!(
        matches!(r, Ok(InitiatorStep::Complete(_))),
        "discovery: {r:?}"
    );
}

#[tokio::test]
async fn logs_in_to_tgtd_with_and_without_chap() {
    let Some(open) = Tgtd::start(None) else {
        return;
    };
    let addr = open.addr();
    let r = within(STEP, "login", login(&addr, Some(TGT_IQN), None)).await;
    assert!(matches!(r, Ok(InitiatorStep::Complete(_))), "tgtd: {r:?}");
    let r = within(STEP, "discovery", login(&addr, None, None)).await;
    assert!(
        matches!(r, Ok(InitiatorStep::Complete(_))),
        "tgtd discovery: {r:?}"
    );
    drop(open);

    let Some(chap) = Tgtd::start(Some(("alice", "alice-secret-0123"))) else {
        return;
    };
    let addr = chap.addr();
    // The default CHAP_A offer (8,6,5) works with tgtd; offering 7 does not: tgtd picks it
    // and means SHA-1 by it (RFC 7143: 7 is SHA-256) and refuses the SHA-256 answer.
    let auth = |secret: &str| InitiatorAuthConfig {
        credential: Some(ChapCredential::new("alice", secret)),
        ..InitiatorAuthConfig::default()
    };
    let r = within(
        STEP,
        "CHAP",
        login(&addr, Some(TGT_IQN), Some(auth("alice-secret-0123"))),
    )
    .await;
    assert!(
        matches!(r, Ok(InitiatorStep::Complete(_))),
        "tgtd CHAP: {r:?}"
    );
    let r = within(
        STEP,
        "wrong",
        login(&addr, Some(TGT_IQN), Some(auth("wrong-secret-4567"))),
    )
    .await;
    assert!(
        matches!(r, Err(LoginFailure::Refused(s)) if s.class == 2),
        "tgtd with a wrong secret: {r:?}"
    );
}
