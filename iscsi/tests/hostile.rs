//! Hostile peers against the real target on loopback (issue 8): secret guessing, half-open and
//! slow logins, many sessions at once. Every loop is bounded in count and time.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use iscsi::initiator::{Error, InitiatorConfig, Session, Tcp};
use iscsi::proto::initiator::LoginFailure;
use iscsi::proto::pdu::RejectReason;
use iscsi::proto::pdu::{Bhs, DataOut, LoginRequest, LoginStatus, Opcode, Pdu, Stage};
use iscsi::proto::serial::{CmdSn, DataSn, Itt, Ttt};
use iscsi::proto::text::{Digest, encode_text};
use iscsi::target::{AuthThrottle, TargetConfig};
use support::{Cmd, Conn, Login, cdb, disk, isid, start, within};

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

/// Resident memory of this process (target and test), KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

const OPEN: &str = "iqn.2026-12.rs.iscsi:hostile-open";
const INITIATOR: &str = "iqn.2026-12.rs.iscsi:hostile-initiator";

/// A slow sender that dribbles its login a byte at a time, and keeps dribbling, is cut at the
/// login timeout (bytes arriving do not extend it); so are many half-open connections at
/// once, beyond the logins-in-progress limit; a prompt initiator still logs in.
#[tokio::test]
async fn slow_and_half_open_logins_are_cut_at_the_login_timeout() {
    within(Duration::from_secs(60), "test", async {
        let timeout = Duration::from_millis(500);
        let cfg = TargetConfig {
            login_timeout: timeout,
            max_logins_in_progress: 64,
            ..TargetConfig::default()
        };
        let t = start(cfg, vec![disk(OPEN, 1 << 20)]).await;
        // 200 connections that say nothing (64 in login at most; the rest are closed).
        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(Conn::connect(t.addr).await);
        }
        // One that dribbles a Login Request, one byte every 20 ms, for longer than the
        // login timeout.
        let req = LoginRequest {
            csg: Stage::Security,
            nsg: Stage::Security,
            isid: isid(1),
            itt: Itt(1),
            cmd_sn: CmdSn(1),
            data: encode_text(&[
                ("InitiatorName", INITIATOR),
                ("TargetName", OPEN),
                ("SessionType", "Normal"),
                ("AuthMethod", "None"),
            ])
            .unwrap()
            .freeze(),
            ..Default::default()
        };
        let mut slow = Conn::connect(t.addr).await;
        let wire = slow.encode(&Pdu::LoginRequest(req));
        let t0 = Instant::now();
        let mut cut = None;
        for b in wire.iter().cycle().take(400) {
            if slow.send_raw(&[*b]).await.is_err() {
                cut = Some(t0.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let cut = match cut {
            Some(c) => c,
            None => slow
                .expect_closed(Duration::from_secs(2), "the dribbling sender")
                .await
                .max(t0.elapsed()),
        };
        assert!(
            cut < timeout + Duration::from_millis(1500),
            "the slow sender was cut after {cut:?}, login timeout {timeout:?}"
        );
        for (i, c) in idle.iter_mut().enumerate() {
            c.expect_closed(
                timeout + Duration::from_secs(2),
                &format!("idle connection {i}"),
            )
            .await;
        }
        let c = Login::normal(INITIATOR, OPEN, isid(2)).ok(t.addr).await;
        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

/// Headers claiming the largest AHS (255 words) and the largest data segment (2^24 - 1
/// bytes): the target answers or closes without buffering them, and keeps serving.
#[tokio::test]
async fn maximum_ahs_and_data_segment_lengths_are_not_buffered() {
    within(Duration::from_secs(60), "test", async {
        let t = start(TargetConfig::default(), vec![disk(OPEN, 1 << 20)]).await;
        let before = rss_kib();
        for (ahs, dsl) in [(255u8, 0u32), (0, 0x00ff_ffff), (255, 0x00ff_ffff)] {
            let mut c = Login::normal(INITIATOR, OPEN, isid(3)).ok(t.addr).await;
            let mut h = Bhs::new(Opcode::SCSI_COMMAND);
            h.flags = 0x80;
            h.total_ahs_len = ahs;
            h.data_segment_len = dsl;
            h.itt = 0x4242;
            h.w[1] = c.cmd_sn.0;
            h.w[2] = c.exp_stat_sn.0;
            let mut wire = h.to_array().to_vec();
            // Some of what was announced, never all of it.
            wire.extend(std::iter::repeat_n(0xa5u8, 64 << 10));
            let _ = c.send_raw(&wire).await;
            // Whatever the target answers, it must not wait for 16 MiB nor die.
            let _ = c.recv_within(Duration::from_millis(300)).await;
            drop(c);
        }
        let grew = rss_kib().saturating_sub(before);
        assert!(grew < 12 << 10, "memory grew by {grew} KiB");
        let mut c = Login::normal(INITIATOR, OPEN, isid(4)).ok(t.addr).await;
        c.clear_unit_attention().await;
        c.ping(b"still serving", true).await;
        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

/// 50,000 commands beyond MaxCmdSN in one burst are dropped without a trace (no answer, no
/// memory), and the session carries on in its window.
#[tokio::test]
async fn a_flood_of_commands_beyond_the_window_is_dropped() {
    within(Duration::from_secs(60), "test", async {
        let t = start(TargetConfig::default(), vec![disk(OPEN, 1 << 20)]).await;
        let mut c = Login::normal(INITIATOR, OPEN, isid(5)).ok(t.addr).await;
        c.clear_unit_attention().await;
        let before = rss_kib();
        let far = c.max_cmd_sn.add(1000);
        let mut wire = Vec::new();
        for i in 0..50_000u32 {
            let itt = c.itt();
            let pdu = c.command_pdu(&Cmd::read(cdb::read10(0, 1), 512), itt, far.add(i), false);
            wire.extend_from_slice(&c.encode(&Pdu::ScsiCommand(pdu)));
        }
        c.send_raw(&wire).await.expect("flood written");
        assert!(
            c.recv_within(Duration::from_millis(500)).await.is_none(),
            "commands outside the window are not answered"
        );
        let grew = rss_kib().saturating_sub(before);
        assert!(
            grew < 16 << 10,
            "memory grew by {grew} KiB for dropped commands"
        );
        let d = c.exec_good(Cmd::none(cdb::test_unit_ready())).await;
        assert_eq!(d.cmd_sn, c.cmd_sn.sub(1), "in-window commands still run");
        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

/// Data-Out that matches nothing (unknown task, wrong TTT, offsets beyond the transfer, DataSN
/// out of order, more data than asked) in a flood: never a panic, never data in another
/// task; the connection may end, another session is not disturbed and the target serves on.
#[tokio::test]
async fn mismatched_data_out_floods_do_not_disturb_other_sessions() {
    within(Duration::from_secs(60), "test", async {
        let t = start(TargetConfig::default(), vec![disk(OPEN, 1 << 20)]).await;
        let mut other = Login::normal(&format!("{INITIATOR}-2"), OPEN, isid(6))
            .ok(t.addr)
            .await;
        other.clear_unit_attention().await;
        let data = vec![0x3cu8; 4096];
        other
            .exec_good(Cmd::write(cdb::write10(64, 8), data.clone(), 0))
            .await;

        let mut c = Login::normal(INITIATOR, OPEN, isid(7)).ok(t.addr).await;
        c.clear_unit_attention().await;
        let mut wire = Vec::new();
        for i in 0..2000u32 {
            let pdu = DataOut {
                final_: i % 3 == 0,
                itt: Itt(if i % 2 == 0 { 0x9999 } else { 0x100 + i % 7 }),
                ttt: Ttt(i % 5),
                exp_stat_sn: c.exp_stat_sn,
                data_sn: DataSn(i % 4),
                buffer_offset: (i % 9) * 0x1000_0000,
                data: Bytes::from(vec![0xee; 512]),
                ..DataOut::default()
            };
            wire.extend_from_slice(&c.encode(&Pdu::DataOut(pdu)));
        }
        let _ = c.send_raw(&wire).await;
        while c.recv_within(Duration::from_millis(200)).await.is_some() {}
        drop(c);

        let back = other.exec_good(Cmd::read(cdb::read10(64, 8), 4096)).await;
        assert_eq!(back.data, data, "the other session's blocks are untouched");
        other.ping(b"other", false).await;
        other.logout_and_close().await;
        let c = Login::normal(INITIATOR, OPEN, isid(8)).ok(t.addr).await;
        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}

/// A write whose immediate data fails its digest and that the initiator neither sends again
/// nor plugs with ABORT TASK (the Linux initiator waits for its SCSI command timeout): the
/// target rejects it (RFC 7143 §7.8), holds the commands behind it only for
/// `cmd_sn_gap_timeout`, then closes the connection; the damaged write never ran.
#[tokio::test]
async fn an_unfilled_gap_of_a_damaged_command_ends_the_connection() {
    within(Duration::from_secs(60), "test", async {
        let gap = Duration::from_millis(400);
        let mut cfg = TargetConfig::default();
        cfg.session.cmd_sn_gap_timeout = Some(gap);
        let t = start(cfg, vec![disk(OPEN, 1 << 20)]).await;
        let login =
            Login::normal(INITIATOR, OPEN, isid(9)).digests(&[Digest::None], &[Digest::Crc32c]);
        let mut c = login.ok(t.addr).await;
        c.clear_unit_attention().await;

        let write = Cmd::write(cdb::write10(7, 1), vec![0x5a; 512], 512);
        let (itt, sn) = (c.itt(), c.take_cmd_sn(false));
        let mut wire = c
            .encode(&Pdu::ScsiCommand(c.command_pdu(&write, itt, sn, false)))
            .to_vec();
        wire[48 + 100] ^= 0x01;
        c.send_raw(&wire).await.expect("damaged write sent");
        let read = Cmd::read(cdb::read10(7, 1), 512);
        let (itt, sn) = (c.itt(), c.take_cmd_sn(false));
        let pdu = c.command_pdu(&read, itt, sn, false);
        c.send(pdu).await;

        let (after, seen) = c
            .closed_within(gap + Duration::from_secs(5))
            .await
            .expect("the connection closes");
        assert!(
            after >= gap - Duration::from_millis(50) && after < gap + Duration::from_secs(3),
            "closed after {after:?}, gap timeout {gap:?}"
        );
        assert!(
            seen.iter().any(
                |p| matches!(p, Pdu::Reject(r) if r.reason == RejectReason::DATA_DIGEST_ERROR)
            ),
            "a Data Digest Error Reject: {seen:?}"
        );
        assert!(
            !seen
                .iter()
                .any(|p| matches!(p, Pdu::ScsiResponse(_) | Pdu::DataIn(_))),
            "the read behind the gap did not run: {seen:?}"
        );

        let mut c = login.ok(t.addr).await;
        c.clear_unit_attention().await;
        let back = c.exec_good(Cmd::read(cdb::read10(7, 1), 512)).await;
        assert_eq!(back.data, vec![0u8; 512], "the damaged write never ran");
        c.logout_and_close().await;
        t.shutdown().await;
    })
    .await;
}
