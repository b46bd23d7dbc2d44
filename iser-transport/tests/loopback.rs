//! The loopback verbs backend keeps an adapter's rules: receives before Sends, STag table with
//! bounds and access checks, the error state, ordered completions, fault injection and the
//! connection manager's private data.

use iscsi_iser::header::Stag;
use iscsi_iser::loopback::{Endpoint, Fabric, Faults, LoopbackConfig, LoopbackError, pair};
use iscsi_iser::verbs::{Access, Completion, Verbs, WcStatus, WorkKind};

fn ends() -> (Endpoint, Endpoint) {
    pair(LoopbackConfig::default(), Faults::default())
}

/// A completion with its buffer unwrapped (the loopback's two kinds are both `Vec<u8>`).
#[derive(Debug)]
struct Done {
    wr_id: u64,
    kind: WorkKind,
    status: WcStatus,
    len: usize,
    buf: Vec<u8>,
}

async fn next(e: &mut Endpoint) -> Done {
    let c: Completion<Vec<u8>, Vec<u8>> = e.poll().await.unwrap().expect("a completion");
    Done {
        wr_id: c.wr_id,
        kind: c.kind,
        status: c.status,
        len: c.len,
        buf: c.buf.into_inner(),
    }
}

/// Both completion streams end (after what is queued) and every post fails.
async fn assert_over(e: &mut Endpoint) {
    while let Some(c) = e.poll().await.unwrap() {
        assert_ne!(c.status, WcStatus::Success, "{c:?}");
    }
    assert!(e.is_broken());
    assert_eq!(e.post_recv(1, vec![0; 8]), Err(LoopbackError::Disconnected));
    assert_eq!(
        e.post_send(1, vec![0; 8], 8),
        Err(LoopbackError::Disconnected)
    );
}

#[tokio::test]
async fn send_lands_in_the_next_posted_receive_in_order() {
    let (mut a, mut b) = ends();
    b.post_recv(10, vec![0; 64]).unwrap();
    b.post_recv(11, vec![0; 64]).unwrap();
    a.post_send(1, b"first".to_vec(), 5).unwrap();
    a.post_send(2, b"second message".to_vec(), 6).unwrap();

    let c = next(&mut a).await;
    assert_eq!(
        (c.wr_id, c.kind, c.status, c.len),
        (1, WorkKind::Send, WcStatus::Success, 5)
    );
    assert_eq!(c.buf, b"first", "the send buffer comes back");
    let c = next(&mut a).await;
    assert_eq!((c.wr_id, c.status, c.len), (2, WcStatus::Success, 6));

    let r = next(&mut b).await;
    assert_eq!(
        (r.wr_id, r.kind, r.status, r.len),
        (10, WorkKind::Recv, WcStatus::Success, 5)
    );
    assert_eq!(&r.buf[..5], b"first");
    assert_eq!(r.buf.len(), 64);
    let r = next(&mut b).await;
    assert_eq!((r.wr_id, r.len), (11, 6));
    assert_eq!(&r.buf[..6], b"second");
    assert!(!a.is_broken());
}

#[tokio::test]
async fn send_without_a_posted_receive_is_receiver_not_ready_and_breaks_the_connection() {
    let (mut a, mut b) = ends();
    a.post_recv(7, vec![0; 16]).unwrap();
    a.post_send(1, vec![1; 4], 4).unwrap();
    let c = next(&mut a).await;
    // The receive `a` had posted is flushed before the failed send reports (error state).
    let (flushed, failed) = if c.kind == WorkKind::Recv {
        (c, next(&mut a).await)
    } else {
        (next(&mut a).await, c)
    };
    assert_eq!(
        (failed.wr_id, failed.status),
        (1, WcStatus::ReceiverNotReady)
    );
    assert_eq!((flushed.wr_id, flushed.status), (7, WcStatus::Flushed));
    assert_over(&mut a).await;
    assert_over(&mut b).await;
}

#[tokio::test]
async fn a_send_larger_than_the_receive_buffer_fails_at_both_ends() {
    let (mut a, mut b) = ends();
    b.post_recv(5, vec![0; 8]).unwrap();
    a.post_send(1, vec![1; 9], 9).unwrap();
    let r = next(&mut b).await;
    assert_eq!((r.wr_id, r.status), (5, WcStatus::LocalLength));
    assert_eq!(next(&mut a).await.status, WcStatus::Fatal);
    assert_over(&mut a).await;
    assert_over(&mut b).await;
}

#[tokio::test]
async fn rdma_write_and_read_through_an_exposed_region() {
    let (mut init, mut tgt) = ends();
    // The initiator exposes a read buffer (the target writes it) and a write buffer (the
    // target reads it).
    let rbuf = init.alloc(8192).unwrap();
    let read_stag = init.expose(rbuf, 8192, Access::RemoteWrite).unwrap();
    let wbuf: Vec<u8> = (0..4096u32).map(|i| i as u8).collect();
    let write_stag = init.expose(wbuf, 4096, Access::RemoteRead).unwrap();
    assert_ne!(read_stag.stag, write_stag.stag);
    assert_ne!(read_stag.stag, 0);
    assert!(
        read_stag.base_offset != 0,
        "virtual addresses, not zero-based"
    );

    // Two writes at offsets (data-in in two pieces), one read of the middle of the other.
    let data = vec![0xabu8; 6000];
    let at = |s: Stag, off: u64| Stag {
        stag: s.stag,
        base_offset: s.base_offset + off,
    };
    tgt.post_write(1, data, 0..4096, at(read_stag, 0)).unwrap();
    tgt.post_write(2, vec![0xcd; 4096], 0..4096, at(read_stag, 4096))
        .unwrap();
    let mut dst = vec![0u8; 3000];
    tgt.post_read(3, std::mem::take(&mut dst), 1000..3000, at(write_stag, 100))
        .unwrap();
    for (wr_id, kind, len) in [
        (1, WorkKind::Write, 4096),
        (2, WorkKind::Write, 4096),
        (3, WorkKind::Read, 2000),
    ] {
        let c = next(&mut tgt).await;
        assert_eq!(
            (c.wr_id, c.kind, c.status, c.len),
            (wr_id, kind, WcStatus::Success, len)
        );
        if wr_id == 3 {
            assert!(c.buf[..1000].iter().all(|&b| b == 0));
            let want: Vec<u8> = (100..2100u32).map(|i| i as u8).collect();
            assert_eq!(&c.buf[1000..3000], &want[..]);
        }
    }
    let back = init.revoke(read_stag.stag).unwrap();
    assert!(back[..4096].iter().all(|&b| b == 0xab));
    assert!(back[4096..].iter().all(|&b| b == 0xcd));
    assert_eq!(init.revoke(read_stag.stag), None, "revoked once");
    assert!(init.revoke(write_stag.stag).is_some());
}

#[tokio::test]
async fn a_write_is_visible_before_a_send_posted_after_it() {
    let (mut init, mut tgt) = ends();
    let stag = init.expose(vec![0; 512], 512, Access::RemoteWrite).unwrap();
    init.post_recv(9, vec![0; 64]).unwrap();
    tgt.post_write(1, vec![7; 512], 0..512, stag).unwrap();
    tgt.post_send(2, b"status".to_vec(), 6).unwrap();
    let r = next(&mut init).await;
    assert_eq!(r.wr_id, 9);
    // By the time the response arrived the data is in place.
    assert!(init.revoke(stag.stag).unwrap().iter().all(|&b| b == 7));
}

/// Every way an RDMA access can be refused ends with RemoteAccess and the error state.
#[tokio::test]
async fn refused_rdma_accesses() {
    type Case = (&'static str, fn(Stag) -> Stag, bool, Access);
    let cases: [Case; 6] = [
        (
            "unknown STag",
            |s| Stag {
                stag: s.stag ^ 0x100,
                ..s
            },
            true,
            Access::RemoteWrite,
        ),
        (
            "past the end",
            |s| Stag {
                base_offset: s.base_offset + 1,
                ..s
            },
            true,
            Access::RemoteWrite,
        ),
        (
            "before the start",
            |s| Stag {
                base_offset: s.base_offset - 1,
                ..s
            },
            true,
            Access::RemoteWrite,
        ),
        ("write into read-only", |s| s, true, Access::RemoteRead),
        ("read from write-only", |s| s, false, Access::RemoteWrite),
        (
            "address overflow",
            |s| Stag {
                base_offset: u64::MAX,
                ..s
            },
            false,
            Access::RemoteRead,
        ),
    ];
    for (what, remote, write, access) in cases {
        let (mut init, mut tgt) = ends();
        init.post_recv(1, vec![0; 16]).unwrap();
        let stag = init.expose(vec![0; 256], 256, access).unwrap();
        let r = if write {
            tgt.post_write(5, vec![1; 256], 0..256, remote(stag))
        } else {
            tgt.post_read(5, vec![0; 256], 0..256, remote(stag))
        };
        r.unwrap();
        let c = next(&mut tgt).await;
        assert_eq!(
            (c.wr_id, c.status, c.len),
            (5, WcStatus::RemoteAccess, 0),
            "{what}"
        );
        assert_over(&mut tgt).await;
        let flushed = next(&mut init).await;
        assert_eq!(flushed.status, WcStatus::Flushed, "{what}");
        assert_over(&mut init).await;
    }
}

#[tokio::test]
async fn a_revoked_stag_is_refused() {
    let (mut init, mut tgt) = ends();
    let stag = init.expose(vec![0; 64], 64, Access::RemoteWrite).unwrap();
    init.revoke(stag.stag).unwrap();
    tgt.post_write(1, vec![1; 64], 0..64, stag).unwrap();
    assert_eq!(next(&mut tgt).await.status, WcStatus::RemoteAccess);
}

#[tokio::test]
async fn local_misuse_is_an_error_not_a_panic() {
    let (mut a, _b) = pair(
        LoopbackConfig {
            max_alloc: 1024,
            max_exposed: 1,
            max_recv: 1,
        },
        Faults::default(),
    );
    assert!(matches!(a.alloc(1025), Err(LoopbackError::Invalid(_))));
    assert!(matches!(
        a.expose(vec![0; 4], 5, Access::RemoteRead),
        Err(LoopbackError::Invalid(_))
    ));
    a.expose(vec![0; 4], 4, Access::RemoteRead).unwrap();
    assert!(matches!(
        a.expose(vec![0; 4], 4, Access::RemoteRead),
        Err(LoopbackError::Exhausted(_))
    ));
    a.post_recv(1, vec![0; 4]).unwrap();
    assert!(matches!(
        a.post_recv(2, vec![0; 4]),
        Err(LoopbackError::Exhausted(_))
    ));
    assert!(matches!(
        a.post_send(1, vec![0; 4], 5),
        Err(LoopbackError::Invalid(_))
    ));
    let stag = Stag::default();
    assert!(matches!(
        a.post_write(1, vec![0; 4], 2..5, stag),
        Err(LoopbackError::Invalid(_))
    ));
    #[allow(clippy::reversed_empty_ranges)]
    let backwards = 3..2;
    assert!(matches!(
        a.post_read(1, vec![0; 4], backwards, stag),
        Err(LoopbackError::Invalid(_))
    ));
    assert!(!a.is_broken(), "local errors leave the connection alone");
}

#[tokio::test]
async fn disconnect_flushes_and_ends_both_streams() {
    let (mut a, mut b) = ends();
    b.post_recv(3, vec![0; 8]).unwrap();
    b.post_recv(4, vec![0; 8]).unwrap();
    a.disconnect();
    for wr_id in [3, 4] {
        let c = next(&mut b).await;
        assert_eq!((c.wr_id, c.status), (wr_id, WcStatus::Flushed));
    }
    assert_over(&mut b).await;
    assert_over(&mut a).await;

    // Dropping an endpoint is a disconnect too.
    let (a, mut b) = ends();
    b.post_recv(1, vec![0; 8]).unwrap();
    drop(a);
    assert_eq!(next(&mut b).await.status, WcStatus::Flushed);
    assert_over(&mut b).await;
}

#[tokio::test]
async fn injected_faults() {
    // The third operation breaks the connection.
    let faults = Faults::default();
    let (mut a, mut b) = pair(LoopbackConfig::default(), faults.clone());
    for i in 0..3 {
        b.post_recv(i, vec![0; 8]).unwrap();
    }
    faults.disconnect_after(2);
    for i in 0..3 {
        a.post_send(i, vec![1; 8], 8).unwrap();
    }
    let st: Vec<_> = [next(&mut a).await, next(&mut a).await, next(&mut a).await]
        .iter()
        .map(|c| (c.wr_id, c.status))
        .collect();
    assert_eq!(
        st,
        [
            (0, WcStatus::Success),
            (1, WcStatus::Success),
            (2, WcStatus::Fatal)
        ]
    );
    assert_eq!(faults.ops(), 3);
    let got: Vec<_> = [next(&mut b).await, next(&mut b).await, next(&mut b).await]
        .iter()
        .map(|c| (c.wr_id, c.status))
        .collect();
    assert_eq!(
        got,
        [
            (0, WcStatus::Success),
            (1, WcStatus::Success),
            (2, WcStatus::Flushed)
        ]
    );
    assert_over(&mut a).await;

    // The first RDMA operation after one more operation is refused; sends are not.
    let faults = Faults::default();
    let (mut init, mut tgt) = pair(LoopbackConfig::default(), faults.clone());
    let stag = init.expose(vec![0; 64], 64, Access::RemoteWrite).unwrap();
    init.post_recv(1, vec![0; 8]).unwrap();
    init.post_recv(2, vec![0; 8]).unwrap();
    faults.refuse_rdma_after(1);
    tgt.post_write(1, vec![1; 64], 0..64, stag).unwrap();
    tgt.post_send(2, vec![1; 8], 8).unwrap();
    tgt.post_write(3, vec![1; 64], 0..64, stag).unwrap();
    let st: Vec<_> = [
        next(&mut tgt).await,
        next(&mut tgt).await,
        next(&mut tgt).await,
    ]
    .iter()
    .map(|c| (c.wr_id, c.status))
    .collect();
    assert_eq!(
        st,
        [
            (1, WcStatus::Success),
            (2, WcStatus::Success),
            (3, WcStatus::RemoteAccess)
        ]
    );
}

#[tokio::test]
async fn connection_manager_private_data_accept_reject_refuse() {
    let fabric = Fabric::new(LoopbackConfig::default());
    let mut l = fabric.listen("10.0.0.1:3260").unwrap();
    assert_eq!(
        fabric.listen("10.0.0.1:3260").unwrap_err(),
        LoopbackError::AddrInUse("10.0.0.1:3260".into())
    );
    let f2 = fabric.clone();
    let server = tokio::spawn(async move {
        let req = l.accept().await.unwrap();
        assert_eq!(req.private_data, [0xc0, 0, 0, 0]);
        // The receive is posted before the initiator learns of the connection.
        let mut ep = req
            .accept_with(&[0x80, 0, 0, 0], |mut ep| {
                ep.post_recv(1, vec![0; 16])?;
                Ok::<_, LoopbackError>(ep)
            })
            .unwrap();
        let c = next(&mut ep).await;
        assert_eq!(&c.buf[..c.len], b"hello");
        // The second request is rejected.
        l.accept().await.unwrap().reject();
        drop(l);
        drop(f2);
    });
    let (mut ep, reply) = fabric
        .connect("10.0.0.1:3260", &[0xc0, 0, 0, 0])
        .await
        .unwrap();
    assert_eq!(reply, [0x80, 0, 0, 0]);
    ep.post_send(1, b"hello".to_vec(), 5).unwrap();
    assert_eq!(ep.poll().await.unwrap().unwrap().status, WcStatus::Success);
    assert_eq!(
        fabric.connect("10.0.0.1:3260", &[]).await.unwrap_err(),
        LoopbackError::Rejected
    );
    server.await.unwrap();
    // The listener is gone: refused, and the name is free again.
    assert_eq!(
        fabric.connect("10.0.0.1:3260", &[]).await.unwrap_err(),
        LoopbackError::Refused("10.0.0.1:3260".into())
    );
    fabric.listen("10.0.0.1:3260").unwrap();
}
