//! Hostile peers against the real target on loopback (issue 8): secret guessing, half-open and
//! slow logins, many sessions at once. Every loop is bounded in count and time.

mod support;

use std::time::Duration;

use iscsi::initiator::{Error, InitiatorConfig, Session, Tcp};
use iscsi::proto::initiator::LoginFailure;
use iscsi::proto::pdu::LoginStatus;
use iscsi::target::{AuthThrottle, TargetConfig};
use support::{disk, start, within};

const TARGET: &str = "iqn.2026-12.rs.iscsi:hostile";
const SECRET: &str = "alice-secret-0123";

fn config(portal: &str, secret: &str) -> InitiatorConfig {
    let mut cfg = InitiatorConfig::new(portal, TARGET)
        .chap("alice", secret.as_bytes().to_vec())
        .expect("CHAP settings");
    cfg.initiator_name = "iqn.2026-12.rs.iscsi:guesser".into();
    cfg.login_timeout = Duration::from_secs(5);
    cfg
}

/// CHAP secret guessing: the first failures are answered "authentication failure"; then the
/// address's connections are closed unanswered, the right secret included, until the block
/// (which doubles) ends; a success clears the record.
#[tokio::test]
async fn chap_guessing_is_throttled_per_address() {
    within(Duration::from_secs(60), "test", async {
        let cfg = TargetConfig {
            auth_throttle: AuthThrottle {
                free_failures: 3,
                window: Duration::from_secs(30),
                first_block: Duration::from_millis(400),
                max_block: Duration::from_secs(2),
            },
            ..TargetConfig::default()
        };
        let t = start(cfg, vec![disk(TARGET, 1 << 20).chap("alice", SECRET)]).await;
        let portal = t.addr.to_string();
        let refused = |r: Result<Session, Error>| match r {
            Err(Error::Login(LoginFailure::Refused(s))) => s == LoginStatus::AUTHENTICATION_FAILURE,
            _ => false,
        };
        // Three free failures, then the fourth also gets its answer and starts a block.
        for i in 0..4 {
            let r = Session::connect_with(config(&portal, &format!("guess-{i:012}")), Tcp).await;
            assert!(
                refused(r),
                "guess {i} is answered with authentication failure"
            );
        }
        // Blocked: even the right secret gets no answer, and nor does a wrong one.
        for secret in [SECRET, "guess-000000000009"] {
            let r = Session::connect_with(config(&portal, secret), Tcp).await;
            assert!(
                matches!(r, Err(Error::Io(_)) | Err(Error::LoginTimeout)),
                "a blocked address gets no login answer: {:?}",
                r.map(|_| ())
            );
        }
        // After the block the right secret logs in, and the record is cleared: three more
        // failures are free again.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let s = Session::connect_with(config(&portal, SECRET), Tcp)
            .await
            .expect("the right secret after the block");
        s.test_unit_ready().await.expect("TEST UNIT READY");
        s.logout().await.expect("logout");
        for i in 0..3 {
            let r = Session::connect_with(config(&portal, &format!("again-{i:012}")), Tcp).await;
            assert!(refused(r), "after a success, failure {i} is free again");
        }
        t.shutdown().await;
    })
    .await;
}
