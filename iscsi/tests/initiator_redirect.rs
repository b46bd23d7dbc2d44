//! Login redirection through the async initiator: a portal that answers every login with
//! "target moved temporarily" and a TargetAddress sends the session to the real target.

mod support;

use std::time::Duration;

use bytes::Bytes;
use iscsi::initiator::{InitiatorConfig, Session, Tcp};
use iscsi::proto::pdu::{Digests, LoginResponse, LoginStatus, Pdu, Stage};
use iscsi::proto::{Deframer, DeframerConfig};
use iscsi::target::TargetConfig;
use support::{TARGET, disk, start, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers each connection's first Login request with a redirection to `to` (status
/// `status`); counts the redirected logins.
async fn redirector(
    to: String,
    status: LoginStatus,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<u32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    (addr, serve(listener, to, status))
}

fn serve(listener: TcpListener, to: String, status: LoginStatus) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let mut served = 0;
        while let Ok(Ok((mut s, _))) =
            tokio::time::timeout(Duration::from_secs(5), listener.accept()).await
        {
            let mut d = Deframer::new(DeframerConfig::default());
            let frame = loop {
                if let Some(f) = d.next_frame().unwrap() {
                    break f;
                }
                if s.read_buf(d.read_buf()).await.unwrap() == 0 {
                    return served;
                }
            };
            let Pdu::LoginRequest(req) = Pdu::from_frame(&frame).unwrap() else {
                panic!("not a login")
            };
            let resp = LoginResponse {
                csg: req.csg,
                nsg: Stage::Security,
                isid: req.isid,
                itt: req.itt,
                exp_cmd_sn: req.cmd_sn,
                max_cmd_sn: req.cmd_sn,
                status,
                data: Bytes::from(format!("TargetAddress={to},1\0")),
                ..LoginResponse::default()
            };
            s.write_all(&Pdu::LoginResponse(resp).to_bytes(Digests::NONE).unwrap())
                .await
                .unwrap();
            served += 1;
        }
        served
    })
}

#[tokio::test]
async fn follows_a_login_redirection_to_the_real_target() {
    within(Duration::from_secs(30), "redirect", async {
        let t = start(TargetConfig::default(), vec![disk(TARGET, 1 << 20)]).await;
        for status in [
            LoginStatus::TARGET_MOVED_TEMPORARILY,
            LoginStatus::TARGET_MOVED_PERMANENTLY,
        ] {
            let (front, task) = redirector(t.addr.to_string(), status).await;
            let cfg = InitiatorConfig::new(front.to_string(), TARGET);
            let s = Session::connect_with(cfg, Tcp)
                .await
                .expect("redirected login");
            let block = vec![0x3cu8; 512];
            s.write(5, &block).await.unwrap();
            assert_eq!(s.read(5, 1).await.unwrap(), block);
            s.logout().await.unwrap();
            task.abort();
            let _ = task.await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_redirection_loop_ends_with_an_error() {
    within(Duration::from_secs(30), "redirect loop", async {
        // Two portals that send the initiator to each other.
        let a = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let b = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a_addr, b_addr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let ta = serve(a, b_addr.to_string(), LoginStatus::TARGET_MOVED_TEMPORARILY);
        let tb = serve(b, a_addr.to_string(), LoginStatus::TARGET_MOVED_PERMANENTLY);
        let cfg = InitiatorConfig::new(a_addr.to_string(), TARGET);
        let e = Session::connect_with(cfg, Tcp).await.unwrap_err();
        assert!(e.to_string().contains("redirections"), "{e}");
        ta.abort();
        tb.abort();
    })
    .await;
}
