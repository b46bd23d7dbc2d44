//! The target engine over real loopback TCP, driven by the small test initiator in
//! `support/` (iscsi-proto PDUs, deframer, negotiator and CHAP authenticator over a tokio
//! `TcpStream`). Every test binds 127.0.0.1:0, runs the target in a spawned task and stops it
//! at the end; every wait is bounded, so a hang fails the test instead of blocking it.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use iscsi::proto::auth::{ChapCredential, InitiatorAuthConfig};
use iscsi::proto::pdu::{
    AsyncEvent, BHS_LEN, Bhs, LoginStatus, Lun, NopOut, Opcode, RejectReason, ScsiStatus,
    TaskMgmtFunction, TmfResponse,
};
use iscsi::proto::text::Digest;
use iscsi::proto::{CmdSn, Itt, Pdu, Ttt};
use iscsi::target::TargetConfig;
use support::{
    Cmd, Conn, INITIATOR, Login, QUIET, Rng, STEP, TARGET, cdb, disk, isid, start, values, within,
};
use tokio::net::TcpStream;

const MIB: u64 = 1 << 20;
/// Bound of a whole test.
const TEST: Duration = Duration::from_secs(120);

fn initiator(suffix: &str) -> String {
    format!("{INITIATOR}-{suffix}")
}

// ---------------------------------------------------------------------------------------------
// 1. Login, INQUIRY, READ CAPACITY, WRITE with immediate data and R2Ts, READ with Data-In
//    segmentation, logout.

#[tokio::test]
async fn login_io_and_logout() {
    within(TEST, "test", async {
        let t = start(TargetConfig::default(), vec![disk(TARGET, 16 * MIB)]).await;
        let mut login = Login::normal(INITIATOR, TARGET, isid(1));
        // Small bursts: the 64 KiB write needs several R2Ts, the read several sequences.
        login.cfg.max_burst_length = 16384;
        login.cfg.first_burst_length = 16384;
        login.cfg.max_outstanding_r2t = 2;
        let mut c = login.ok(t.addr).await;
        assert_ne!(c.tsih, 0, "the target assigns a TSIH");
        assert_eq!(c.params.max_burst_length, 16384);
        assert!(c.params.initial_r2t && c.params.immediate_data);
        assert_eq!(c.params.initiator_max_recv_data_segment_length, 8192);
        assert_eq!(c.params.target_portal_group_tag, Some(1));

        // INQUIRY: runs despite the pending POWER ON unit attention.
        let inq = c.exec_good(Cmd::read(cdb::inquiry(96), 96)).await;
        assert_eq!(inq.data[0] & 0x1f, 0x00, "direct access block device");
        assert_eq!(&inq.data[8..16], b"ISCSI-RS");
        assert!(inq.data_received >= 36);

        let ua = c.clear_unit_attention().await;
        assert_eq!(ua.first().map(|u| (u.1, u.2)), Some((0x29, 0x00)));

        let cap = c.exec_good(Cmd::read(cdb::read_capacity16(32), 32)).await;
        let last_lba = u64::from_be_bytes(cap.data[0..8].try_into().unwrap());
        let block = u32::from_be_bytes(cap.data[8..12].try_into().unwrap());
        assert_eq!((last_lba, block), (16 * MIB / 512 - 1, 512));

        // WRITE(10) of 64 KiB: 8 KiB immediate, the rest on R2Ts.
        let data = Bytes::from(Rng::new(1).bytes(64 << 10));
        let w = c
            .exec_good(Cmd::write(cdb::write10(100, 128), data.clone(), 8192))
            .await;
        assert!(!w.r2ts.is_empty());
        let mut expect_offset = 8192u32;
        for (i, r) in w.r2ts.iter().enumerate() {
            assert_eq!(r.r2t_sn.0, i as u32, "R2TSN counts from 0");
            assert_eq!(
                r.buffer_offset, expect_offset,
                "R2Ts ask for the data in order"
            );
            assert!(r.desired_len <= 16384, "R2T within MaxBurstLength");
            assert!(!r.ttt.is_reserved());
            expect_offset += r.desired_len;
        }
        assert_eq!(expect_offset, 64 << 10, "R2Ts cover the rest of the data");
        assert_eq!(w.r2ts.len(), 4);
        // Our Data-Out answers: DataSN from 0 per R2T, F on the last of each.
        for r in &w.r2ts {
            let outs: Vec<_> = w.data_out.iter().filter(|d| d.ttt == r.ttt.0).collect();
            assert_eq!(outs.len(), r.desired_len.div_ceil(8192) as usize);
            let mut offset = r.buffer_offset;
            for (i, d) in outs.iter().enumerate() {
                assert_eq!(d.data_sn, i as u32);
                assert_eq!(d.offset, offset);
                assert_eq!(d.final_, i + 1 == outs.len());
                offset += d.len as u32;
            }
            assert_eq!(offset, r.buffer_offset + r.desired_len);
        }
        assert!(!w.underflow && !w.overflow);

        // READ(10) back: Data-In at most 8192 bytes each, DataSN 0.., F at each 16 KiB burst,
        // status in the last one.
        let r = c
            .exec_good(Cmd::read(cdb::read10(100, 128), 64 << 10))
            .await;
        assert_eq!(r.data, data.as_ref(), "read back what was written");
        assert_eq!(r.data_in.len(), 8);
        assert!(r.status_in_data, "GOOD status travels in the last Data-In");
        for (i, d) in r.data_in.iter().enumerate() {
            assert_eq!(d.data_sn, i as u32);
            assert_eq!(d.offset, i as u32 * 8192);
            assert_eq!(d.len, 8192);
            assert_eq!(
                d.final_,
                i % 2 == 1,
                "F bit ends each MaxBurstLength sequence"
            );
            assert_eq!(d.status, i == 7, "S bit only on the last Data-In");
        }

        // A READ past the end: CHECK CONDITION in a SCSI Response, no Data-In.
        let past = (16 * MIB / 512) as u32;
        let e = c.exec(Cmd::read(cdb::read10(past, 1), 512)).await;
        assert_eq!(e.status, ScsiStatus::CHECK_CONDITION);
        assert_eq!(e.sense(), Some((0x05, 0x21, 0x00)), "LBA out of range");
        assert!(e.data_in.is_empty() && !e.status_in_data);

        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 2. Digests.

#[tokio::test]
async fn crc32c_digests_required_and_used() {
    within(TEST, "test", async {
        let cfg = TargetConfig::default()
            .require_header_digest(true)
            .require_data_digest(true);
        let t = start(cfg, vec![disk(TARGET, 4 * MIB)]).await;
        let both = [Digest::Crc32c, Digest::None];

        // An initiator that offers only None is refused with an initiator error.
        let none = Login::normal(INITIATOR, TARGET, isid(1))
            .digests(&[Digest::None], &[Digest::None])
            .connect(t.addr)
            .await
            .err()
            .expect("login without digests must fail");
        assert_eq!(none.status().class, 2, "{none:?}");
        // Header digest alone is not enough either.
        let half = Login::normal(INITIATOR, TARGET, isid(1))
            .digests(&both, &[Digest::None])
            .connect(t.addr)
            .await
            .err()
            .expect("login without data digest must fail");
        assert_eq!(half.status().class, 2, "{half:?}");

        let mut c = Login::normal(INITIATOR, TARGET, isid(2))
            .digests(&both, &both)
            .ok(t.addr)
            .await;
        assert_eq!(c.params.header_digest, Digest::Crc32c);
        assert_eq!(c.params.data_digest, Digest::Crc32c);
        assert!(c.digests().header && c.digests().data);
        // Everything below parses only if the target puts correct digests on its PDUs, and
        // gets answered only if it accepts ours.
        c.clear_unit_attention().await;
        // 5001 bytes of immediate data and Data-Out segments of odd lengths: padding is
        // covered by the digests too.
        let data = Bytes::from(Rng::new(2).bytes(20 * 1024));
        let w = c
            .exec_good(Cmd::write(cdb::write10(8, 40), data.clone(), 5001))
            .await;
        assert!(!w.r2ts.is_empty());
        assert!(w.data_out.iter().any(|d| d.len % 4 != 0));
        let r = c.exec_good(Cmd::read(cdb::read10(8, 40), 20 * 1024)).await;
        assert_eq!(r.data, data.as_ref());
        let n = c.ping(b"digest ping 123", false).await;
        assert_eq!(n.data.as_ref(), b"digest ping 123");

        // A corrupted data digest: Reject with reason "data digest error", session goes on.
        let itt = c.itt();
        let cmd_sn = c.take_cmd_sn(true);
        let mut wire = c
            .encode(&Pdu::NopOut(NopOut {
                immediate: true,
                lun: Lun(0),
                itt,
                ttt: Ttt::RESERVED,
                cmd_sn,
                exp_stat_sn: c.exp_stat_sn,
                data: Bytes::from_static(b"12345678"),
            }))
            .to_vec();
        let last = wire.len() - 1;
        wire[last] ^= 0x55;
        c.send_raw(&wire).await.unwrap();
        match c.recv().await {
            Pdu::Reject(r) => {
                assert_eq!(r.reason, RejectReason::DATA_DIGEST_ERROR);
                assert_eq!(&r.data[..BHS_LEN], &wire[..BHS_LEN]);
            }
            other => panic!("expected a Reject, got {other:?}"),
        }
        c.ping(b"still here", true).await;
        c.logout_and_close().await;

        // A corrupted header digest: the PDU boundaries are lost, the target closes.
        let mut c = Login::normal(INITIATOR, TARGET, isid(3))
            .digests(&both, &both)
            .ok(t.addr)
            .await;
        let itt = c.itt();
        let mut wire = c
            .encode(&Pdu::NopOut(NopOut {
                immediate: true,
                itt,
                ttt: Ttt::RESERVED,
                cmd_sn: c.cmd_sn,
                exp_stat_sn: c.exp_stat_sn,
                ..NopOut::default()
            }))
            .to_vec();
        wire[BHS_LEN] ^= 0xff;
        c.send_raw(&wire).await.unwrap();
        c.expect_closed(STEP, "after a header digest error").await;
        t.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 3. Login timeout.

#[tokio::test]
async fn login_timeout_closes_idle_and_half_logins() {
    within(TEST, "test", async {
        let timeout = Duration::from_millis(300);
        let cfg = TargetConfig {
            login_timeout: timeout,
            ..TargetConfig::default()
        };
        let t = start(cfg, vec![disk(TARGET, MIB)]).await;
        let slack = Duration::from_millis(1500);

        // Connect and send nothing.
        let mut idle = Conn::connect(t.addr).await;
        let took = idle
            .expect_closed(timeout + slack, "silent connection")
            .await;
        assert!(
            took >= timeout - Duration::from_millis(50),
            "closed after {took:?}, before the login timeout"
        );

        // Half a login: the first request is answered, then nothing more is sent.
        let mut half = Conn::connect(t.addr).await;
        let t0 = Instant::now();
        let req = iscsi::proto::pdu::LoginRequest {
            transit: false,
            csg: iscsi::proto::pdu::Stage::Security,
            nsg: iscsi::proto::pdu::Stage::Security,
            isid: isid(1),
            itt: Itt(1),
            cmd_sn: CmdSn(1),
            data: iscsi::proto::text::encode_text(&[
                ("InitiatorName", INITIATOR),
                ("TargetName", TARGET),
                ("SessionType", "Normal"),
                ("AuthMethod", "None"),
            ])
            .unwrap()
            .freeze(),
            ..Default::default()
        };
        half.send(req).await;
        match half.recv().await {
            Pdu::LoginResponse(r) => assert!(r.status.is_success()),
            other => panic!("expected a Login Response, got {other:?}"),
        }
        half.expect_closed(timeout + slack, "half login").await;
        assert!(t0.elapsed() >= timeout - Duration::from_millis(50));

        // The target still logs in a prompt initiator.
        let c = Login::normal(INITIATOR, TARGET, isid(2)).ok(t.addr).await;
        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 4. Session limit.

#[tokio::test]
async fn max_sessions_refuses_then_admits_after_logout() {
    within(TEST, "test", async {
        let cfg = TargetConfig {
            max_sessions: 1,
            ..TargetConfig::default()
        };
        let t = start(cfg, vec![disk(TARGET, MIB)]).await;
        let mut first = Login::normal(INITIATOR, TARGET, isid(1)).ok(t.addr).await;
        let refused = Login::normal(&initiator("b"), TARGET, isid(2))
            .connect(t.addr)
            .await
            .err()
            .expect("second session over the limit");
        assert_eq!(refused.status(), LoginStatus::OUT_OF_RESOURCES);
        // The first session is unaffected.
        first.ping(b"x", true).await;
        first.logout_and_close().await;

        // The slot is free once the first connection has closed.
        let deadline = Instant::now() + Duration::from_secs(2);
        let second = loop {
            match Login::normal(&initiator("b"), TARGET, isid(2))
                .connect(t.addr)
                .await
            {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    assert_eq!(e.status(), LoginStatus::OUT_OF_RESOURCES);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("session slot not released after logout: {e:?}"),
            }
        };
        second.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

/// Connections on different portals have different ids: with two portals the session limit
/// still counts every session (ids were once per portal, so the second portal's first
/// connection replaced the first portal's in the registry and a third session got in).
#[tokio::test]
async fn max_sessions_counts_every_portal() {
    within(TEST, "test", async {
        let cfg = TargetConfig {
            max_sessions: 2,
            ..TargetConfig::default()
        };
        let portal: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
        let target = iscsi::target::Target::bind(cfg, &[portal, portal], vec![disk(TARGET, MIB)])
            .await
            .expect("bind");
        let (a, b) = (target.local_addrs()[0], target.local_addrs()[1]);
        let stop = target.shutdown_handle();
        let task = tokio::spawn(target.run());
        let mut first = Login::normal(INITIATOR, TARGET, isid(1)).ok(a).await;
        let mut second = Login::normal(&initiator("b"), TARGET, isid(2)).ok(b).await;
        let refused = Login::normal(&initiator("c"), TARGET, isid(3))
            .connect(a)
            .await
            .err()
            .expect("a third session over the limit of 2");
        assert_eq!(refused.status(), LoginStatus::OUT_OF_RESOURCES);
        first.ping(b"x", true).await;
        second.ping(b"y", true).await;
        first.logout_and_close().await;
        second.logout_and_close().await;
        stop.shutdown();
        within(STEP, "run to return", task).await.unwrap().unwrap();
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 5. Access control and discovery.

#[tokio::test]
async fn acl_not_found_and_send_targets() {
    within(TEST, "test", async {
        let private = "iqn.2026-11.rs.iscsi:private";
        let public = "iqn.2026-11.rs.iscsi:public";
        let a = initiator("a");
        let b = initiator("b");
        let nodes = vec![disk(private, MIB).allow(a.clone()), disk(public, MIB)];
        let t = start(TargetConfig::default(), nodes).await;

        let e = Login::normal(&b, private, isid(1))
            .connect(t.addr)
            .await
            .err()
            .expect("b is not on the access list");
        assert_eq!(e.status(), LoginStatus::AUTHORIZATION_FAILURE);

        let e = Login::normal(&a, "iqn.2026-11.rs.iscsi:nosuch", isid(2))
            .connect(t.addr)
            .await
            .err()
            .expect("unknown target");
        assert_eq!(e.status(), LoginStatus::NOT_FOUND);

        let ok = Login::normal(&a, private, isid(3)).ok(t.addr).await;
        ok.logout_and_close().await;
        let ok = Login::normal(&b, public, isid(4)).ok(t.addr).await;
        ok.logout_and_close().await;

        let portal = format!("{},1", t.addr);
        let mut d = Login::discovery(&b, isid(5)).ok(t.addr).await;
        let pairs = d.send_targets("All").await;
        assert_eq!(values(&pairs, "TargetName"), vec![public]);
        assert_eq!(values(&pairs, "TargetAddress"), vec![portal.as_str()]);
        // A discovery session carries no SCSI commands.
        let itt = d.itt();
        let cmd_sn = d.take_cmd_sn(false);
        let pdu = d.command_pdu(&Cmd::none(cdb::test_unit_ready()), itt, cmd_sn, false);
        d.send(pdu).await;
        match d.recv().await {
            Pdu::Reject(r) => assert_eq!(r.reason, RejectReason::PROTOCOL_ERROR),
            other => panic!("expected a Reject, got {other:?}"),
        }
        d.logout_and_close().await;

        let mut d = Login::discovery(&a, isid(6)).ok(t.addr).await;
        let pairs = d.send_targets("All").await;
        let mut names = values(&pairs, "TargetName");
        names.sort_unstable();
        assert_eq!(names, vec![private, public]);
        assert_eq!(
            values(&pairs, "TargetAddress"),
            vec![portal.as_str(), portal.as_str()]
        );
        assert_eq!(pairs[0].0, "TargetName", "each record starts with its name");
        d.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 6. CHAP.

#[tokio::test]
async fn chap_one_way_wrong_secret_and_mutual() {
    within(TEST, "test", async {
        let one_way = "iqn.2026-11.rs.iscsi:chap";
        let mutual = "iqn.2026-11.rs.iscsi:mutual";
        let nodes = vec![
            disk(one_way, MIB).chap("alice", b"alice-secret-0001".to_vec()),
            disk(mutual, MIB)
                .chap("bob", b"bob-secret-000002".to_vec())
                .mutual_chap("target-m", b"target-secret-003".to_vec()),
        ];
        let t = start(TargetConfig::default(), nodes).await;
        let cred = |u: &str, s: &[u8]| ChapCredential::new(u, s.to_vec());

        let mut c = Login::normal(INITIATOR, one_way, isid(1))
            .auth(InitiatorAuthConfig::chap(cred(
                "alice",
                b"alice-secret-0001",
            )))
            .ok(t.addr)
            .await;
        assert!(!c.mutual_ok);
        c.ping(b"authenticated", true).await;
        c.logout_and_close().await;

        let e = Login::normal(INITIATOR, one_way, isid(2))
            .auth(InitiatorAuthConfig::chap(cred(
                "alice",
                b"wrong-secret-0001",
            )))
            .connect(t.addr)
            .await
            .err()
            .expect("wrong secret");
        assert_eq!(e.status(), LoginStatus::AUTHENTICATION_FAILURE);

        let e = Login::normal(INITIATOR, one_way, isid(3))
            .connect(t.addr)
            .await
            .err()
            .expect("CHAP is required");
        assert_eq!(e.status(), LoginStatus::AUTHENTICATION_FAILURE);

        // MD5 only (what libiscsi offers) works too.
        let mut md5 = InitiatorAuthConfig::chap(cred("alice", b"alice-secret-0001"));
        md5.algorithms = vec![iscsi::proto::auth::ChapAlgorithm::Md5];
        let c = Login::normal(INITIATOR, one_way, isid(4))
            .auth(md5)
            .ok(t.addr)
            .await;
        c.logout_and_close().await;

        // Mutual CHAP: the initiator side verifies the target's answer.
        let c = Login::normal(INITIATOR, mutual, isid(5))
            .auth(InitiatorAuthConfig::mutual_chap(
                cred("bob", b"bob-secret-000002"),
                cred("target-m", b"target-secret-003"),
            ))
            .ok(t.addr)
            .await;
        assert!(c.mutual_ok, "the target proved its identity");
        c.logout_and_close().await;

        // An initiator expecting another target secret refuses the target's answer.
        let e = Login::normal(INITIATOR, mutual, isid(6))
            .auth(InitiatorAuthConfig::mutual_chap(
                cred("bob", b"bob-secret-000002"),
                cred("target-m", b"not-the-secret-04"),
            ))
            .connect(t.addr)
            .await
            .err()
            .expect("mutual CHAP with the wrong target secret");
        assert!(
            matches!(&e, support::LoginFailure::Refused(m) if m.contains("authentication")),
            "{e:?}"
        );
        t.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 7. Session reinstatement.

#[tokio::test]
async fn same_isid_reinstates_and_closes_the_old_connection() {
    within(TEST, "test", async {
        let t = start(TargetConfig::default(), vec![disk(TARGET, MIB)]).await;
        let mut old = Login::normal(INITIATOR, TARGET, isid(7)).ok(t.addr).await;
        old.clear_unit_attention().await;
        let mut new = Login::normal(INITIATOR, TARGET, isid(7)).ok(t.addr).await;
        old.expect_closed(STEP, "the reinstated session's connection")
            .await;
        // The new session works (a unit attention for the lost nexus is acceptable).
        new.clear_unit_attention().await;
        new.exec_good(Cmd::read(cdb::read10(0, 1), 512)).await;
        // A different ISID is a second session, not a reinstatement.
        let mut other = Login::normal(INITIATOR, TARGET, isid(8)).ok(t.addr).await;
        other.ping(b"o", true).await;
        new.ping(b"n", true).await;
        other.logout_and_close().await;
        new.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 8. Graceful shutdown.

#[tokio::test]
async fn shutdown_asks_for_logout_and_stops_accepting() {
    within(TEST, "test", async {
        let grace = Duration::from_secs(3);
        let cfg = TargetConfig {
            shutdown_grace: grace,
            ..TargetConfig::default()
        };
        let t = start(cfg, vec![disk(TARGET, MIB)]).await;
        let addr = t.addr;
        let mut c = Login::normal(INITIATOR, TARGET, isid(1)).ok(addr).await;
        c.clear_unit_attention().await;

        let t0 = Instant::now();
        t.stop.shutdown();
        let msg = match c.recv().await {
            Pdu::AsyncMessage(m) => m,
            other => panic!("expected an Asynchronous Message, got {other:?}"),
        };
        assert_eq!(msg.event, AsyncEvent::LOGOUT_REQUEST);
        assert_eq!(msg.parameter3, grace.as_secs() as u16, "time to logout");
        c.logout_and_close().await;
        within(grace, "run() to return within shutdown_grace", t.task)
            .await
            .expect("run task")
            .expect("run result");
        assert!(t0.elapsed() < grace);
        let refused = within(STEP, "connect after shutdown", TcpStream::connect(addr)).await;
        assert!(
            refused.is_err(),
            "new connections are refused after shutdown"
        );
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_initiators_that_do_not_log_out() {
    within(TEST, "test", async {
        let grace = Duration::from_secs(1);
        let cfg = TargetConfig {
            shutdown_grace: grace,
            ..TargetConfig::default()
        };
        let t = start(cfg, vec![disk(TARGET, MIB)]).await;
        let mut c = Login::normal(INITIATOR, TARGET, isid(1)).ok(t.addr).await;
        let took = t.shutdown().await;
        let (_, seen) = c
            .closed_within(STEP)
            .await
            .expect("the target closes a connection that ignores the logout request");
        assert!(
            seen.iter()
                .filter_map(support::as_async)
                .any(|m| m.event == AsyncEvent::LOGOUT_REQUEST)
        );
        assert!(took >= grace - Duration::from_millis(100), "{took:?}");
        assert!(took < grace + Duration::from_secs(3), "{took:?}");
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 9. NOP.

#[tokio::test]
async fn nop_out_ping_is_echoed_with_real_sequence_numbers() {
    within(TEST, "test", async {
        let t = start(TargetConfig::default(), vec![disk(TARGET, MIB)]).await;
        let mut c = Login::normal(INITIATOR, TARGET, isid(1)).ok(t.addr).await;
        let depth = TargetConfig::default().session.queue_depth;
        let first_cmd_sn = c.cmd_sn;
        let stat_sn = c.exp_stat_sn;

        let n = c.ping(b"hello, target", false).await;
        assert_eq!(n.stat_sn, stat_sn, "NOP-In carries the connection's StatSN");
        assert_eq!(n.exp_cmd_sn, first_cmd_sn.next(), "the ping took one CmdSN");
        assert_eq!(n.max_cmd_sn, n.exp_cmd_sn.add(depth - 1));
        assert_eq!(n.lun, Lun(0));

        let n = c.ping(&[0xa5; 1000], true).await;
        assert_eq!(n.stat_sn, stat_sn.next());
        assert_eq!(
            n.exp_cmd_sn,
            first_cmd_sn.next(),
            "immediate: CmdSN not taken"
        );
        assert_eq!(n.max_cmd_sn, n.exp_cmd_sn.add(depth - 1));

        // A NOP-Out with ITT 0xffffffff wants no answer.
        let (cmd_sn, exp_stat_sn) = (c.cmd_sn, c.exp_stat_sn);
        c.send(NopOut {
            immediate: true,
            itt: Itt::RESERVED,
            ttt: Ttt::RESERVED,
            cmd_sn,
            exp_stat_sn,
            ..NopOut::default()
        })
        .await;
        assert!(c.recv_within(QUIET).await.is_none());
        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn nop_in_keepalive_disconnects_a_silent_initiator() {
    within(TEST, "test", async {
        let mut cfg = TargetConfig::default();
        cfg.session.nop_in_interval = Some(Duration::from_millis(200));
        cfg.session.nop_in_timeout = Duration::from_millis(200);
        let t = start(cfg, vec![disk(TARGET, MIB)]).await;

        // Silent: receives the ping, never answers, gets disconnected.
        let mut silent = Login::normal(&initiator("s"), TARGET, isid(1))
            .ok(t.addr)
            .await;
        let t0 = Instant::now();
        let next_stat_sn = silent.exp_stat_sn;
        let ping = match silent.recv().await {
            Pdu::NopIn(p) => p,
            other => panic!("expected a NOP-In ping, got {other:?}"),
        };
        assert!(ping.itt.is_reserved(), "a target ping has ITT 0xffffffff");
        assert!(
            !ping.ttt.is_reserved(),
            "a ping that wants an answer has a TTT"
        );
        assert_eq!(
            ping.stat_sn, next_stat_sn,
            "unsolicited NOP-In: next StatSN"
        );
        silent
            .expect_closed(Duration::from_secs(3), "unanswered NOP-In")
            .await;
        let took = t0.elapsed();
        assert!(took >= Duration::from_millis(350), "{took:?}");

        // Answering: stays connected through several pings.
        let mut alive = Login::normal(&initiator("a"), TARGET, isid(2))
            .ok(t.addr)
            .await;
        let until = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < until {
            if let Some(p) = alive.recv_within(Duration::from_millis(100)).await {
                match p {
                    Pdu::NopIn(n) if n.itt.is_reserved() => alive.answer_nop_in(&n).await,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        assert!(alive.pings_answered >= 3, "{} pings", alive.pings_answered);
        alive.clear_unit_attention().await;
        alive.ping(b"still connected", true).await;
        alive.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 10. Concurrency and the CmdSN window.

#[tokio::test]
async fn thirty_two_sessions_write_and_verify_concurrently() {
    within(TEST, "test", async {
        const SESSIONS: u32 = 32;
        const ROUNDS: usize = 50;
        const BLOCKS: u64 = 64; // 4 KiB blocks per session
        const DEPTH: usize = 8;
        let mut cfg = TargetConfig::default();
        cfg.session.queue_depth = 6; // below DEPTH: MaxCmdSN must hold the initiator back
        let t = start(cfg, vec![disk(TARGET, 16 * MIB)]).await;
        let addr = t.addr;
        let mut tasks = tokio::task::JoinSet::new();
        for s in 0..SESSIONS {
            tasks.spawn(async move {
                let name = initiator(&format!("c{s}"));
                let mut c = Login::normal(&name, TARGET, isid(100 + s)).ok(addr).await;
                c.clear_unit_attention().await;
                let mut rng = Rng::new(u64::from(s) + 1000);
                let mut shadow = vec![None::<Bytes>; BLOCKS as usize];
                let lba = |b: u64| ((u64::from(s) * BLOCKS + b) * 8) as u32;
                for _ in 0..ROUNDS {
                    let mut writes = Vec::new();
                    for _ in 0..DEPTH {
                        let b = rng.below(BLOCKS);
                        let data = Bytes::from(rng.bytes(4096));
                        shadow[b as usize] = Some(data.clone());
                        writes.push(Cmd::write(cdb::write10(lba(b), 8), data, 4096));
                    }
                    for d in c.run_cmds(writes, DEPTH).await {
                        d.good();
                    }
                    let picks: Vec<u64> = (0..DEPTH).map(|_| rng.below(BLOCKS)).collect();
                    let reads = picks
                        .iter()
                        .map(|&b| Cmd::read(cdb::read10(lba(b), 8), 4096))
                        .collect();
                    for (d, &b) in c.run_cmds(reads, DEPTH).await.into_iter().zip(&picks) {
                        let d = d.good();
                        match &shadow[b as usize] {
                            Some(want) => {
                                assert_eq!(&d.data[..], &want[..], "session {s} block {b}")
                            }
                            None => assert!(d.data.iter().all(|&x| x == 0)),
                        }
                    }
                }
                assert!(c.max_in_flight <= 6, "never beyond MaxCmdSN");
                assert!(c.window_waits > 0, "the window held the initiator back");
                c.logout_and_close().await;
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("session task");
        }
        t.shutdown().await;
    })
    .await;
}

/// Sends commands with the given CmdSNs in one write and returns the ITT of each.
async fn send_with_cmd_sns(c: &mut Conn, sns: &[CmdSn]) -> Vec<Itt> {
    let mut wire = Vec::new();
    let mut itts = Vec::new();
    for &sn in sns {
        let itt = c.itt();
        let pdu = c.command_pdu(&Cmd::none(cdb::test_unit_ready()), itt, sn, false);
        wire.extend_from_slice(&c.encode(&Pdu::ScsiCommand(pdu)));
        itts.push(itt);
    }
    c.send_raw(&wire).await.unwrap();
    itts
}

/// Collects SCSI Responses until `QUIET` passes without a PDU.
async fn responses_until_quiet(c: &mut Conn) -> Vec<Itt> {
    let mut got = Vec::new();
    while let Some(p) = c.recv_within(QUIET).await {
        match p {
            Pdu::ScsiResponse(r) => {
                assert_eq!(r.status, ScsiStatus::GOOD);
                got.push(r.itt);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    got
}

#[tokio::test]
async fn commands_beyond_max_cmd_sn_are_ignored() {
    within(TEST, "test", async {
        let mut cfg = TargetConfig::default();
        cfg.session.queue_depth = 4;
        let t = start(cfg, vec![disk(TARGET, MIB)]).await;
        let mut c = Login::normal(INITIATOR, TARGET, isid(1)).ok(t.addr).await;
        c.clear_unit_attention().await;
        let exp = c.cmd_sn;
        assert_eq!(
            c.max_cmd_sn,
            exp.add(3),
            "idle window of queue_depth commands"
        );

        // Far beyond the window, and one in it: only the latter is answered.
        let itts = send_with_cmd_sns(&mut c, &[exp.add(9), exp]).await;
        assert_eq!(responses_until_quiet(&mut c).await, vec![itts[1]]);
        c.cmd_sn = exp.next();
        let d = c.exec_good(Cmd::none(cdb::test_unit_ready())).await;
        assert_eq!(d.cmd_sn, exp.next(), "the ignored command took no CmdSN");

        // The session still works and its window is where it should be.
        let pong = c.ping(b"p", true).await;
        assert_eq!(pong.exp_cmd_sn, c.cmd_sn);
        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

/// RFC 7143 §4.2.2.1: with MaxCmdSN = ExpCmdSN - 1 the window is closed, so a command with
/// CmdSN = ExpCmdSN is outside it and must be ignored.
#[tokio::test]
async fn command_just_past_a_full_window_is_ignored() {
    within(TEST, "test", async {
        let mut cfg = TargetConfig::default();
        cfg.session.queue_depth = 4;
        let t = start(cfg, vec![disk(TARGET, MIB)]).await;
        let mut c = Login::normal(INITIATOR, TARGET, isid(1)).ok(t.addr).await;
        c.clear_unit_attention().await;
        let exp = c.cmd_sn;
        let max = c.max_cmd_sn;
        assert_eq!(max, exp.add(3));
        // Fill the window (exp..=max) and send one more (max + 1) in the same write: the
        // target admitted four commands, MaxCmdSN is still exp + 3 when the fifth arrives.
        let sns: Vec<CmdSn> = (0..5).map(|i| exp.add(i)).collect();
        let itts = send_with_cmd_sns(&mut c, &sns).await;
        let mut got = responses_until_quiet(&mut c).await;
        got.sort_unstable();
        assert_eq!(
            got,
            itts[..4].to_vec(),
            "the command beyond MaxCmdSN is ignored"
        );
        // It took no CmdSN: sent again now that the window is open, it runs.
        c.cmd_sn = exp.add(4);
        let d = c.exec_good(Cmd::none(cdb::test_unit_ready())).await;
        assert_eq!(d.cmd_sn, exp.add(4));
        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 11. Hostile bytes.

#[tokio::test]
async fn unknown_opcode_and_oversized_segment_are_rejected() {
    within(TEST, "test", async {
        let mut cfg = TargetConfig::default();
        cfg.negotiation.max_recv_data_segment_length = 8192;
        let t = start(cfg, vec![disk(TARGET, MIB)]).await;
        let mut other = Login::normal(&initiator("o"), TARGET, isid(2))
            .ok(t.addr)
            .await;
        let mut c = Login::normal(INITIATOR, TARGET, isid(1)).ok(t.addr).await;
        assert_eq!(c.params.target_max_recv_data_segment_length, 8192);

        // Unknown opcode 0x1c: Reject, reason "command not supported", with our header.
        let mut h = Bhs::new(Opcode(0x1c));
        h.immediate = true;
        h.flags = 0x80;
        h.itt = 0x4242;
        h.w[1] = c.cmd_sn.0;
        h.w[2] = c.exp_stat_sn.0;
        let raw = h.to_array();
        c.send_raw(&raw).await.unwrap();
        match c.recv().await {
            Pdu::Reject(r) => {
                assert_eq!(r.reason, RejectReason::COMMAND_NOT_SUPPORTED);
                assert_eq!(&r.data[..BHS_LEN], &raw[..]);
            }
            other => panic!("expected a Reject, got {other:?}"),
        }
        c.ping(b"after unknown opcode", true).await;

        // Immediate data longer than the expected transfer length: answered, not sliced
        // (RFC 7143 §11.4.7.2: unexpected unsolicited data).
        let over = Cmd {
            immediate: 1024,
            ..Cmd::write(cdb::write10(0, 1), vec![9u8; 1024], 1024)
        };
        let itt = c.itt();
        let cmd_sn = c.take_cmd_sn(false);
        let mut pdu = c.command_pdu(&over, itt, cmd_sn, false);
        pdu.expected_data_len = 512;
        c.send(pdu).await;
        match c.recv().await {
            Pdu::ScsiResponse(r) => {
                assert_eq!(r.itt, itt);
                assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
                let sense = r.sense().and_then(|s| support::sense_triplet(&s));
                let (_, asc, ascq) = sense.expect("sense data");
                assert_eq!((asc, ascq), (0x0c, 0x0c), "unexpected unsolicited data");
            }
            other => panic!("expected a SCSI Response, got {other:?}"),
        }

        // A data segment above the target's MaxRecvDataSegmentLength (8192).
        let itt = c.itt();
        let cmd_sn = c.take_cmd_sn(true);
        let big = Pdu::NopOut(NopOut {
            immediate: true,
            itt,
            ttt: Ttt::RESERVED,
            cmd_sn,
            exp_stat_sn: c.exp_stat_sn,
            data: Bytes::from(vec![7u8; 16384]),
            ..NopOut::default()
        });
        let wire = c.encode(&big);
        let _ = c.send_raw(&wire).await;
        match c.recv_within(STEP).await {
            Some(Pdu::Reject(r)) => {
                assert_eq!(r.reason, RejectReason::PROTOCOL_ERROR);
                assert_eq!(&r.data[..BHS_LEN], &wire[..BHS_LEN]);
                // The oversized data was skipped: the stream is still in sync.
                c.clear_unit_attention().await;
                c.ping(b"after oversized segment", true).await;
                c.logout_and_close().await;
            }
            Some(other) => panic!("expected a Reject, got {other:?}"),
            None => panic!("no answer to an oversized data segment"),
        }

        // The other session was not disturbed.
        other.clear_unit_attention().await;
        other.ping(b"other", false).await;
        other.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn garbage_on_a_fresh_connection_is_closed() {
    within(TEST, "test", async {
        let t = start(TargetConfig::default(), vec![disk(TARGET, MIB)]).await;
        let mut rng = Rng::new(11);
        let mut patterns: Vec<Vec<u8>> = (0..4).map(|_| rng.bytes(64 << 10)).collect();
        patterns.push(vec![0xff; 64 << 10]);
        patterns.push(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(200));
        // A Login Request header with an absurd data segment length.
        let mut login = Bhs::new(Opcode::LOGIN_REQUEST);
        login.immediate = true;
        login.data_segment_len = 0x00ff_ffff;
        let mut l = login.to_array().to_vec();
        l.extend_from_slice(&rng.bytes(4096));
        patterns.push(l);
        for (i, p) in patterns.iter().enumerate() {
            let mut c = Conn::connect(t.addr).await;
            // The target may close while we still write: that is fine.
            let _ = c.send_raw(p).await;
            let (took, _) = c
                .closed_within(Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("garbage pattern {i} left the connection open"));
            assert!(took < Duration::from_secs(5));
        }
        // The target still serves.
        let mut c = Login::normal(INITIATOR, TARGET, isid(1)).ok(t.addr).await;
        c.clear_unit_attention().await;
        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// 12. Task management over the wire.

#[tokio::test]
async fn abort_task_waiting_for_data_and_lun_reset() {
    within(TEST, "test", async {
        let t = start(TargetConfig::default(), vec![disk(TARGET, MIB)]).await;
        let mut c = Login::normal(INITIATOR, TARGET, isid(1)).ok(t.addr).await;
        assert!(c.params.initial_r2t);
        c.clear_unit_attention().await;

        // A WRITE without immediate data: the target asks for the data with an R2T.
        let w = Cmd::write(cdb::write10(10, 16), vec![0x5a; 8192], 0);
        let itt = c.itt();
        let cmd_sn = c.take_cmd_sn(false);
        let pdu = c.command_pdu(&w, itt, cmd_sn, false);
        c.send(pdu).await;
        let r2t = match c.recv().await {
            Pdu::R2t(r) => r,
            other => panic!("expected an R2T, got {other:?}"),
        };
        assert_eq!(
            (r2t.itt, r2t.buffer_offset, r2t.desired_len),
            (itt, 0, 8192)
        );
        assert_eq!(r2t.r2t_sn.0, 0);

        // ABORT TASK: function complete, and the aborted task gets no SCSI Response.
        let (resp, meanwhile) = c
            .tmf(TaskMgmtFunction::ABORT_TASK, 0, Some((itt, cmd_sn)))
            .await;
        assert_eq!(resp.response, TmfResponse::COMPLETE);
        assert!(meanwhile.is_empty(), "{meanwhile:?}");
        // Data-Out for the dead transfer is dropped silently.
        c.answer_r2t(&w, &r2t).await;
        c.ping(b"after abort", true).await;
        assert!(
            c.recv_within(QUIET).await.is_none(),
            "no response for the aborted task"
        );
        // ABORT TASK of a task that does not exist.
        let (resp, _) = c
            .tmf(TaskMgmtFunction::ABORT_TASK, 0, Some((Itt(0x7777), cmd_sn)))
            .await;
        assert_eq!(resp.response, TmfResponse::TASK_DOES_NOT_EXIST);

        // LUN RESET: complete, then a unit attention (29h/03h) for the next command.
        let (resp, _) = c.tmf(TaskMgmtFunction::LOGICAL_UNIT_RESET, 0, None).await;
        assert_eq!(resp.response, TmfResponse::COMPLETE);
        let d = c.exec(Cmd::none(cdb::test_unit_ready())).await;
        assert_eq!(d.status, ScsiStatus::CHECK_CONDITION);
        assert_eq!(d.sense(), Some((0x06, 0x29, 0x03)));
        c.exec_good(Cmd::none(cdb::test_unit_ready())).await;
        // A reset of a LUN that does not exist.
        let (resp, _) = c.tmf(TaskMgmtFunction::LOGICAL_UNIT_RESET, 5, None).await;
        assert_eq!(resp.response, TmfResponse::LUN_DOES_NOT_EXIST);

        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------------
// More data-out paths: unsolicited Data-Out (InitialR2T=No), data digest errors on Data-Out.

#[tokio::test]
async fn unsolicited_data_out_then_r2t() {
    within(TEST, "test", async {
        let t = start(TargetConfig::default(), vec![disk(TARGET, 4 * MIB)]).await;
        let mut login = Login::normal(INITIATOR, TARGET, isid(1));
        login.cfg.initial_r2t = false;
        login.cfg.first_burst_length = 16384;
        login.cfg.max_burst_length = 32768;
        let mut c = login.ok(t.addr).await;
        assert!(!c.params.initial_r2t && c.params.immediate_data);
        assert_eq!(c.params.first_burst_length, 16384);
        c.clear_unit_attention().await;

        // 4 KiB immediate, unsolicited Data-Out up to FirstBurstLength, R2Ts for the rest.
        let data = Bytes::from(Rng::new(3).bytes(64 << 10));
        let mut cmd = Cmd::write(cdb::write10(0, 128), data.clone(), 4096);
        cmd.unsolicited = 16384;
        let w = c.exec_good(cmd).await;
        let unsolicited: Vec<_> = w.data_out.iter().filter(|d| d.ttt == u32::MAX).collect();
        assert_eq!(unsolicited.len(), 2);
        assert_eq!(
            w.r2ts[0].buffer_offset, 16384,
            "R2Ts start after the first burst"
        );
        let covered: u32 = w.r2ts.iter().map(|r| r.desired_len).sum();
        assert_eq!(covered, (64 << 10) - 16384);
        let r = c.exec_good(Cmd::read(cdb::read10(0, 128), 64 << 10)).await;
        assert_eq!(r.data, data.as_ref());

        // The whole write in unsolicited Data-Out (no immediate data, no R2T).
        let small = Bytes::from(Rng::new(4).bytes(8192));
        let mut cmd = Cmd::write(cdb::write10(1000, 16), small.clone(), 0);
        cmd.unsolicited = 8192;
        let w = c.exec_good(cmd).await;
        assert!(w.r2ts.is_empty());
        let r = c.exec_good(Cmd::read(cdb::read10(1000, 16), 8192)).await;
        assert_eq!(r.data, small.as_ref());

        // Unsolicited data beyond FirstBurstLength: a protocol error. The excess Data-Out
        // is rejected; the task then either gets its data through the R2T or ends with
        // CHECK CONDITION, and the session goes on.
        let big = Cmd {
            unsolicited: 32768,
            ..Cmd::write(cdb::write10(2000, 64), Rng::new(6).bytes(32768), 0)
        };
        let itt = c.itt();
        let cmd_sn = c.take_cmd_sn(false);
        let pdu = c.command_pdu(&big, itt, cmd_sn, false);
        c.send(pdu).await;
        c.send_unsolicited(&big, itt).await;
        let mut rejected = 0;
        let status = loop {
            match c.recv().await {
                Pdu::Reject(r) => {
                    assert_eq!(r.reason, RejectReason::PROTOCOL_ERROR);
                    rejected += 1;
                }
                Pdu::R2t(r) => {
                    assert_eq!((r.itt, r.buffer_offset), (itt, 16384));
                    c.answer_r2t(&big, &r).await;
                }
                Pdu::ScsiResponse(r) if r.itt == itt => break r,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert!(rejected > 0, "the excess Data-Out is rejected");
        if status.status == ScsiStatus::GOOD {
            let r = c.exec_good(Cmd::read(cdb::read10(2000, 64), 32768)).await;
            assert_eq!(r.data, big.write.as_ref());
        } else {
            assert_eq!(status.status, ScsiStatus::CHECK_CONDITION);
        }
        c.ping(b"session survives", true).await;
        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

/// Logs in with CRC32C digests, sends a WRITE of `len` bytes without immediate data, and
/// returns the connection, the command, its ITT and the R2T.
async fn write_awaiting_r2t(
    t: &support::Running,
    len: usize,
) -> (Conn, Cmd, Itt, iscsi::proto::pdu::R2t) {
    let both = [Digest::Crc32c];
    let mut c = Login::normal(INITIATOR, TARGET, isid(1))
        .digests(&both, &both)
        .ok(t.addr)
        .await;
    c.clear_unit_attention().await;
    let w = Cmd::write(
        cdb::write10(64, (len / 512) as u16),
        Rng::new(5).bytes(len),
        0,
    );
    let itt = c.itt();
    let cmd_sn = c.take_cmd_sn(false);
    let pdu = c.command_pdu(&w, itt, cmd_sn, false);
    c.send(pdu).await;
    let r2t = match c.recv().await {
        Pdu::R2t(r) => r,
        other => panic!("expected an R2T, got {other:?}"),
    };
    assert_eq!(r2t.desired_len as usize, len);
    (c, w, itt, r2t)
}

/// The Data-Out PDUs answering `r2t` in 8 KiB pieces, encoded; piece `bad` gets a wrong
/// data digest.
fn data_outs_with_bad_digest(
    c: &Conn,
    w: &Cmd,
    r2t: &iscsi::proto::pdu::R2t,
    bad: usize,
) -> Vec<Vec<u8>> {
    let len = r2t.desired_len as usize;
    (0..len.div_ceil(8192))
        .map(|i| {
            let off = i * 8192;
            let end = (off + 8192).min(len);
            let d = iscsi::proto::pdu::DataOut {
                final_: end == len,
                lun: r2t.lun,
                itt: r2t.itt,
                ttt: r2t.ttt,
                exp_stat_sn: c.exp_stat_sn,
                data_sn: iscsi::proto::DataSn(i as u32),
                buffer_offset: off as u32,
                data: w.write.slice(off..end),
            };
            let mut b = c.encode(&Pdu::DataOut(d)).to_vec();
            if i == bad {
                let n = b.len();
                b[n - 1] ^= 0x01;
            }
            b
        })
        .collect()
}

/// RFC 7143 §7.8: a data digest error on a Data-Out is answered with a Reject (reason 0x02);
/// at ErrorRecoveryLevel 0 the task then ends with CHECK CONDITION, "protocol service CRC
/// error" (ABORTED COMMAND, 47h/05h, §11.4.7.2) once all its data has arrived, or the
/// connection is dropped (session recovery). It must not wait forever.
#[tokio::test]
async fn data_digest_error_on_the_final_data_out_ends_the_task() {
    within(TEST, "test", async {
        let cfg = TargetConfig::default().require_data_digest(true);
        let t = start(cfg, vec![disk(TARGET, MIB)]).await;
        let (mut c, w, itt, r2t) = write_awaiting_r2t(&t, 16384).await;
        let pdus = data_outs_with_bad_digest(&c, &w, &r2t, 1);
        c.send_raw(&pdus.concat()).await.unwrap();
        match c.recv().await {
            Pdu::Reject(r) => {
                assert_eq!(r.reason, RejectReason::DATA_DIGEST_ERROR);
                assert_eq!(&r.data[..BHS_LEN], &pdus[1][..BHS_LEN]);
            }
            other => panic!("expected a Reject, got {other:?}"),
        }
        match tokio::time::timeout(Duration::from_secs(3), c.recv_pdu()).await {
            Err(_) => panic!("the task neither ended nor was the connection dropped"),
            Ok(Ok(None)) | Ok(Err(_)) => {} // session recovery: acceptable
            Ok(Ok(Some(Pdu::ScsiResponse(r)))) => {
                assert_eq!(r.itt, itt);
                assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
                let sense = r.sense().and_then(|s| support::sense_triplet(&s));
                assert_eq!(
                    sense,
                    Some((0x0b, 0x47, 0x05)),
                    "protocol service CRC error"
                );
            }
            Ok(Ok(Some(other))) => panic!("unexpected {other:?}"),
        }
        t.shutdown().await;
    })
    .await;
}

/// The same for a Data-Out in the middle of the burst: the response waits for the Data-Out
/// with the F bit and reports "protocol service CRC error" (RFC 7143 §7.8 b).
#[tokio::test]
async fn data_digest_error_on_a_middle_data_out_reports_crc_error_after_the_burst() {
    within(TEST, "test", async {
        let cfg = TargetConfig::default().require_data_digest(true);
        let t = start(cfg, vec![disk(TARGET, MIB)]).await;
        let (mut c, w, itt, r2t) = write_awaiting_r2t(&t, 24576).await;
        let pdus = data_outs_with_bad_digest(&c, &w, &r2t, 0);
        c.send_raw(&pdus[..2].concat()).await.unwrap();
        match c.recv().await {
            Pdu::Reject(r) => assert_eq!(r.reason, RejectReason::DATA_DIGEST_ERROR),
            other => panic!("expected a Reject, got {other:?}"),
        }
        if let Some(p) = c.recv_within(QUIET).await {
            panic!("response before the Data-Out with the F bit: {p:?}");
        }
        c.send_raw(&pdus[2]).await.unwrap();
        match c.recv().await {
            Pdu::ScsiResponse(r) => {
                assert_eq!(r.itt, itt);
                assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
                let sense = r.sense().and_then(|s| support::sense_triplet(&s));
                assert_eq!(
                    sense,
                    Some((0x0b, 0x47, 0x05)),
                    "protocol service CRC error"
                );
            }
            other => panic!("expected the SCSI Response, got {other:?}"),
        }
        c.ping(b"session survives", true).await;
        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

/// RFC 7143 §11.4.7.2: "unexpected unsolicited data" is CHECK CONDITION with sense key
/// ABORTED COMMAND (0Bh), ASC/ASCQ 0Ch/0Ch.
#[tokio::test]
async fn unexpected_unsolicited_data_is_aborted_command() {
    within(TEST, "test", async {
        let t = start(TargetConfig::default(), vec![disk(TARGET, MIB)]).await;
        let mut c = Login::normal(INITIATOR, TARGET, isid(1)).ok(t.addr).await;
        c.clear_unit_attention().await;
        // Immediate data beyond the Expected Data Transfer Length, then immediate data on a
        // command without the W bit.
        let over = Cmd::write(cdb::write10(0, 1), vec![9u8; 1024], 1024);
        let itt = c.itt();
        let cmd_sn = c.take_cmd_sn(false);
        let mut pdu = c.command_pdu(&over, itt, cmd_sn, false);
        pdu.expected_data_len = 512;
        c.send(pdu).await;
        let itt2 = c.itt();
        let cmd_sn = c.take_cmd_sn(false);
        let mut pdu = c.command_pdu(&Cmd::read(cdb::read10(0, 1), 512), itt2, cmd_sn, false);
        pdu.data = Bytes::from_static(&[1u8; 512]);
        c.send(pdu).await;
        for want in [itt, itt2] {
            match c.recv().await {
                Pdu::ScsiResponse(r) => {
                    assert_eq!(r.itt, want);
                    assert_eq!(r.status, ScsiStatus::CHECK_CONDITION);
                    let sense = r.sense().and_then(|s| support::sense_triplet(&s));
                    assert_eq!(sense, Some((0x0b, 0x0c, 0x0c)));
                }
                other => panic!("expected a SCSI Response, got {other:?}"),
            }
        }
        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

/// Session reinstatement ends the old connection before the new session runs: the old
/// connection's end (its I_T nexus loss) must not undo what the new session does, e.g. drop
/// the SPC-2 reservation it takes (found in review: the old connection used to drain for the
/// grace period and then report the nexus lost).
#[tokio::test]
async fn reinstatement_finishes_the_old_connection_first() {
    within(Duration::from_secs(60), "test", async {
        let cfg = TargetConfig {
            shutdown_grace: Duration::from_secs(1),
            ..TargetConfig::default()
        };
        let t = start(cfg, vec![disk(TARGET, 64 * MIB)]).await;
        let mut old = Login::normal(INITIATOR, TARGET, isid(1)).ok(t.addr).await;
        old.clear_unit_attention().await;
        // The old connection has work queued and never reads again: 8 x 8 MiB READs.
        for i in 0..8u32 {
            let c = Cmd::read(cdb::read10(i * 16384, 16384), 8 << 20);
            let itt = old.itt();
            let sn = old.take_cmd_sn(false);
            let pdu = old.command_pdu(&c, itt, sn, false);
            old.send(pdu).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Reinstate (same initiator name and ISID, TSIH 0), then reserve the unit.
        let mut new = Login::normal(INITIATOR, TARGET, isid(1)).ok(t.addr).await;
        new.clear_unit_attention().await;
        let mut other = Login::normal(&format!("{INITIATOR}-other"), TARGET, isid(2))
            .ok(t.addr)
            .await;
        other.clear_unit_attention().await;
        let r = new.exec(Cmd::none(vec![0x16, 0, 0, 0, 0, 0])).await; // RESERVE(6)
        assert_eq!(r.status, ScsiStatus::GOOD, "RESERVE(6)");
        let w = Cmd::write(cdb::write10(0, 1), Bytes::from(vec![0xaa; 512]), 512);
        assert_eq!(
            other.exec(w.clone()).await.status,
            ScsiStatus::RESERVATION_CONFLICT
        );
        // Well past the old connection's grace period: the reservation still holds, and the
        // new session got no late unit attention.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            other.exec(w).await.status,
            ScsiStatus::RESERVATION_CONFLICT,
            "the old connection dropped the new session's reservation"
        );
        let tur = new.exec(Cmd::none(cdb::test_unit_ready())).await;
        assert_eq!(tur.status, ScsiStatus::GOOD, "sense {:x?}", tur.sense());
        drop(old);
    })
    .await;
}

/// A CHAP user bound to initiator names (`chap_for`) is refused under any other name, even
/// with the right secret; unbound users are not restricted.
#[tokio::test]
async fn chap_user_bound_to_an_initiator_name() {
    within(TEST, "test", async {
        let node = "iqn.2026-11.rs.iscsi:bound";
        let nodes = vec![
            disk(node, MIB)
                .chap_for(INITIATOR, "carol", b"carol-secret-0004".to_vec())
                .chap("dave", b"dave-secret-00005".to_vec()),
        ];
        let t = start(TargetConfig::default(), nodes).await;
        let auth =
            |u: &str, s: &[u8]| InitiatorAuthConfig::chap(ChapCredential::new(u, s.to_vec()));
        let c = Login::normal(INITIATOR, node, isid(1))
            .auth(auth("carol", b"carol-secret-0004"))
            .ok(t.addr)
            .await;
        c.logout_and_close().await;
        let e = Login::normal("iqn.2026-11.rs.iscsi:other", node, isid(2))
            .auth(auth("carol", b"carol-secret-0004"))
            .connect(t.addr)
            .await
            .err()
            .expect("carol is bound to another initiator name");
        assert_eq!(e.status(), LoginStatus::AUTHORIZATION_FAILURE);
        let c = Login::normal("iqn.2026-11.rs.iscsi:other", node, isid(3))
            .auth(auth("dave", b"dave-secret-00005"))
            .ok(t.addr)
            .await;
        c.logout_and_close().await;
    })
    .await;
}
