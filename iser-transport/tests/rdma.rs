//! The RDMA backend (`sideway` + librdmacm) on a real RDMA device: the same contract the
//! loopback backend's tests check (`loopback.rs`), over an actual queue pair.
//!
//! Ignored by default: they need an RDMA device (an adapter, or soft-RoCE) and the address
//! of its interface in `ISCSI_RDMA_ADDR`; the interop lab runs them on soft-RoCE:
//! `ISCSI_RDMA_ADDR=192.0.2.1 cargo test -p iscsi-iser --features rdma --test rdma -- --ignored`.
#![cfg(feature = "rdma")]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use iscsi_iser::header::{CmPrivateData, Stag};
use iscsi_iser::rdma::{self, RdmaConfig, RdmaEndpoint, RdmaError, RdmaListener, RdmaMsg};
use iscsi_iser::verbs::{Access, Completion, Verbs, WcStatus, WorkBuf, WorkKind};
use iscsi_proto::datamover::DataBuffer;

const STEP: Duration = Duration::from_secs(20);

fn addr() -> IpAddr {
    std::env::var("ISCSI_RDMA_ADDR")
        .expect("ISCSI_RDMA_ADDR: the address of an RDMA-capable interface")
        .parse()
        .expect("ISCSI_RDMA_ADDR is an IP address")
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {STEP:?}"))
}

/// A connected pair: (initiator side, target side), and the private data each received.
async fn pair(cfg: RdmaConfig) -> (RdmaEndpoint, RdmaEndpoint, Vec<u8>, Vec<u8>) {
    let mut l = RdmaListener::bind(SocketAddr::new(addr(), 0), cfg.clone()).expect("listen");
    let at = l.local_addr();
    assert_ne!(at.port(), 0);
    let accept = tokio::spawn(async move {
        let req = l.accept().await.expect("connect request");
        let got = req.private_data.clone();
        let ep = req
            .accept_with(b"target-says-hi", |mut ep| {
                // A receive is posted before the connection is accepted.
                let b = ep.msg_buf(256)?;
                ep.post_recv(100, b)?;
                Ok::<_, RdmaError>(ep)
            })
            .expect("accept");
        (ep, got, l)
    });
    let hdr = CmPrivateData::OURS.to_bytes();
    let (ini, reply) = within("connect", rdma::connect(at, &hdr, &cfg))
        .await
        .expect("connect");
    let (tgt, got, _l) = within("accept", accept).await.expect("accept task");
    assert!(
        got.starts_with(&hdr),
        "the target received the iSER CM header: {got:02x?}"
    );
    (ini, tgt, got, reply)
}

async fn next(e: &mut RdmaEndpoint) -> Completion<RdmaMsg, Vec<u8>> {
    within("a completion", e.poll())
        .await
        .expect("poll")
        .expect("a completion")
}

fn msg(e: &mut RdmaEndpoint, bytes: &[u8], size: usize) -> RdmaMsg {
    let mut m = e.msg_buf(size).expect("message buffer");
    m.as_mut_bytes()[..bytes.len()].copy_from_slice(bytes);
    m
}

#[tokio::test]
#[ignore = "needs an RDMA device and ISCSI_RDMA_ADDR (the interop lab runs it)"]
async fn connect_with_private_data_then_sends_land_in_order() {
    let (mut ini, mut tgt, _, reply) = pair(RdmaConfig::default()).await;
    assert!(reply.starts_with(b"target-says-hi"), "{reply:02x?}");
    let b = tgt.msg_buf(256).unwrap();
    tgt.post_recv(101, b).unwrap();
    let m1 = msg(&mut ini, b"first", 64);
    let m2 = msg(&mut ini, b"second message", 64);
    ini.post_send(1, m1, 5).unwrap();
    ini.post_send(2, m2, 14).unwrap();
    for (id, len) in [(1, 5), (2, 14)] {
        let c = next(&mut ini).await;
        assert_eq!(
            (c.wr_id, c.kind, c.status, c.len),
            (id, WorkKind::Send, WcStatus::Success, len)
        );
    }
    for (id, text) in [(100u64, &b"first"[..]), (101, &b"second message"[..])] {
        let c = next(&mut tgt).await;
        assert_eq!(
            (c.wr_id, c.kind, c.status, c.len),
            (id, WorkKind::Recv, WcStatus::Success, text.len())
        );
        let WorkBuf::Msg(m) = c.buf else {
            panic!("a receive hands back its message buffer")
        };
        assert_eq!(&m.as_bytes()[..text.len()], text);
    }
}

#[tokio::test]
#[ignore = "needs an RDMA device and ISCSI_RDMA_ADDR (the interop lab runs it)"]
async fn rdma_write_and_read_through_exposed_memory_and_revoke_invalidates() {
    let (mut ini, mut tgt, _, _) = pair(RdmaConfig::default()).await;
    let rbuf = ini.alloc(8192).unwrap();
    let read_stag = ini.expose(rbuf, 8192, Access::RemoteWrite).unwrap();
    let wbuf: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
    let write_stag = ini.expose(wbuf.clone(), 4096, Access::RemoteRead).unwrap();
    let at = |s: Stag, off: u64| Stag {
        stag: s.stag,
        base_offset: s.base_offset + off,
    };
    tgt.post_write(1, vec![0xab; 4096], 0..4096, at(read_stag, 0))
        .unwrap();
    tgt.post_write(2, vec![0xcd; 4096], 0..4096, at(read_stag, 4096))
        .unwrap();
    tgt.post_read(3, vec![0u8; 3000], 1000..3000, at(write_stag, 100))
        .unwrap();
    let mut fetched = None;
    for (id, kind, len) in [
        (1, WorkKind::Write, 4096),
        (2, WorkKind::Write, 4096),
        (3, WorkKind::Read, 2000),
    ] {
        let c = next(&mut tgt).await;
        assert_eq!(
            (c.wr_id, c.kind, c.status, c.len),
            (id, kind, WcStatus::Success, len)
        );
        if let WorkBuf::Task(b) = c.buf
            && id == 3
        {
            fetched = Some(b);
        }
    }
    let fetched = fetched.expect("the read's buffer");
    assert_eq!(&fetched[1000..3000], &wbuf[100..2100], "RDMA Read data");
    let placed = ini.revoke(read_stag.stag).expect("exposed buffer back");
    assert!(placed[..4096].iter().all(|&b| b == 0xab));
    assert!(placed[4096..].iter().all(|&b| b == 0xcd));
    assert!(ini.revoke(read_stag.stag).is_none(), "revoked once");

    // The revoked STag no longer works: the write fails and the connection is over.
    tgt.post_write(4, vec![1; 16], 0..16, at(read_stag, 0))
        .unwrap();
    let c = next(&mut tgt).await;
    assert_eq!((c.wr_id, c.status), (4, WcStatus::RemoteAccess));
    while let Some(c) = within("the rest", tgt.poll()).await.expect("poll") {
        assert_ne!(c.status, WcStatus::Success);
    }
    assert!(ini.revoke(write_stag.stag).is_some());
}

#[tokio::test]
#[ignore = "needs an RDMA device and ISCSI_RDMA_ADDR (the interop lab runs it)"]
async fn a_disconnect_flushes_what_is_posted_on_both_sides() {
    let (mut ini, mut tgt, _, _) = pair(RdmaConfig::default()).await;
    let b = ini.msg_buf(64).unwrap();
    ini.post_recv(9, b).unwrap();
    ini.disconnect();
    let c = next(&mut ini).await;
    assert_eq!(
        (c.wr_id, c.kind, c.status),
        (9, WorkKind::Recv, WcStatus::Flushed)
    );
    assert!(within("end", ini.poll()).await.expect("poll").is_none());
    // The target's posted receive (from `pair`) flushes when the disconnect arrives.
    let c = next(&mut tgt).await;
    assert_eq!((c.wr_id, c.status), (100, WcStatus::Flushed));
    assert!(within("end", tgt.poll()).await.expect("poll").is_none());
    let spare = tgt.msg_buf(64).unwrap();
    assert!(matches!(tgt.post_recv(1, spare), Err(RdmaError::Closed)));
}

#[tokio::test]
#[ignore = "needs an RDMA device and ISCSI_RDMA_ADDR (the interop lab runs it)"]
async fn nobody_listening_is_an_error_not_a_hang() {
    let e = within(
        "connect to nobody",
        rdma::connect(SocketAddr::new(addr(), 1), &[], &RdmaConfig::default()),
    )
    .await
    .expect_err("nobody listens on port 1");
    assert!(
        matches!(e, RdmaError::Rejected { .. } | RdmaError::Cm { .. }),
        "{e}"
    );
}
