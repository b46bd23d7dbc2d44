//! Many sessions against the `target` example (a separate process, so that its memory is its
//! own): 1,000 sessions log in, each writes and reads back its own blocks while all are
//! busy, and the target's resident memory is read from /proc when they are idle and at the
//! peak. Prints the figures; fails if a session loses data, the target dies, or memory per
//! session is out of bounds.
//!
//! ```sh
//! cargo test --release -p iscsi-examples --test load -- --nocapture
//! ```
#![cfg(target_os = "linux")]

#[allow(dead_code)]
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iscsi::initiator::{InitiatorConfig, Session, Tcp};
use support::peer::TargetProcess;
use tokio::sync::Semaphore;

const IQN: &str = "iqn.2026-12.rs.iscsi:load";
const SESSIONS: usize = 1000;
const BLOCK: usize = 512;
/// Blocks each session owns (its own region of the LUN).
const PER_SESSION: usize = 16;

/// VmRSS and VmHWM (peak) of `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The target example on 127.0.0.1 (a free port) with `IQN`, a RAM LUN of `lun` and `more`
/// arguments; its log (stderr) in the test directory as `log`.
fn target(lun: &str, more: &[&str], env: &[(&str, &str)], log: &str) -> TargetProcess {
    let mut args = vec!["--listen", "127.0.0.1:0", "--iqn", IQN, "--lun", lun];
    args.extend_from_slice(more);
    TargetProcess::start_with_env(
        std::path::Path::new(env!("CARGO_BIN_EXE_target")),
        &args,
        env,
        1,
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(log),
    )
}

/// The open-file limit must hold one socket per session on each side (both ends run on this
/// machine) and some.
fn enough_descriptors() -> bool {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap_or(0);
    soft >= (SESSIONS as u64) + 256
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_doing_io() {
    assert!(
        enough_descriptors(),
        "the open-file limit (ulimit -n) is below {}: raise it to run this test",
        SESSIONS + 256
    );
    let lun_blocks = SESSIONS * PER_SESSION;
    let mut target = target(
        &format!("ram:{}", lun_blocks * BLOCK),
        &["--max-sessions", "2000"],
        &[],
        "load-target.log",
    );
    let pid = target.pid();
    let portal = target.urls[0].portal_url();
    let portal = portal.trim_start_matches("iscsi://").to_owned();
    let (base, _) = memory_kib(pid);

    // Log in, at most 100 at a time (the target admits 256 logins in progress).
    let t0 = Instant::now();
    let gate = Arc::new(Semaphore::new(100));
    let mut logins = Vec::new();
    for i in 0..SESSIONS {
        let (gate, portal) = (gate.clone(), portal.clone());
        logins.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.expect("gate");
            let mut cfg = InitiatorConfig::new(&portal, IQN);
            cfg.initiator_name = format!("iqn.2026-12.rs.iscsi:load-{i}");
            cfg.login_timeout = Duration::from_secs(60);
            Session::connect_with(cfg, Tcp).await
        }));
    }
    let mut sessions = Vec::with_capacity(SESSIONS);
    for (i, l) in logins.into_iter().enumerate() {
        match l.await.expect("login task") {
            Ok(s) => sessions.push(s),
            Err(e) => panic!(
                "session {i} could not log in: {e}; {}",
                target.stderr_tail()
            ),
        }
    }
    let login_time = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (idle, _) = memory_kib(pid);

    // Every session writes its own blocks and reads them back, all at once.
    let t1 = Instant::now();
    let mut io = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let s = s.clone();
        io.push(tokio::spawn(async move {
            let lba = (i * PER_SESSION) as u64;
            let data: Vec<u8> = (0..PER_SESSION * BLOCK)
                .map(|j| (i as u8).wrapping_mul(31) ^ (j as u8))
                .collect();
            for round in 0..4 {
                s.write(lba, &data)
                    .await
                    .map_err(|e| format!("session {i} write {round}: {e}"))?;
                let back = s
                    .read(lba, PER_SESSION as u32)
                    .await
                    .map_err(|e| format!("session {i} read {round}: {e}"))?;
                if back != data {
                    return Err(format!("session {i} read back other data in round {round}"));
                }
            }
            Ok::<(), String>(())
        }));
    }
    for t in io {
        if let Err(e) = t.await.expect("IO task") {
            panic!("{e}; {}", target.stderr_tail());
        }
    }
    let io_time = t1.elapsed();
    let (busy_after, peak) = memory_kib(pid);
    target.assert_alive();

    for s in &sessions {
        let _ = tokio::time::timeout(Duration::from_secs(10), s.logout()).await;
    }
    drop(sessions);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (after, _) = memory_kib(pid);
    target.assert_alive();

    let per_idle = (idle.saturating_sub(base)) as f64 / SESSIONS as f64;
    let per_busy = (peak.saturating_sub(base)) as f64 / SESSIONS as f64;
    println!(
        "{SESSIONS} sessions: logins {login_time:.1?}, {} writes + {} reads of {} KiB in {io_time:.1?}; \
         target RSS: {base} KiB at start, {idle} KiB with the sessions idle ({per_idle:.1} KiB per \
         session), peak {peak} KiB ({per_busy:.1} KiB per busy session), {busy_after} KiB after \
         the IO, {after} KiB after the logouts",
        SESSIONS * 4,
        SESSIONS * 4,
        PER_SESSION * BLOCK / 1024
    );
    // The LUN itself (8 MiB of written RAM) counts in the peak; sessions must stay small.
    assert!(per_idle < 256.0, "{per_idle:.1} KiB per idle session");
    assert!(per_busy < 1024.0, "{per_busy:.1} KiB per busy session");
}

/// CHAP secrets never reach the target's logs, even at trace level: one login with the right
/// secrets (mutual CHAP), one with a wrong secret.
#[test]
fn chap_secrets_never_reach_the_logs() {
    const SECRET: &str = "s3cret-alice-0123";
    const TARGET_SECRET: &str = "s3cret-target-4567";
    const WRONG: &str = "s3cret-wrong-8901";
    let (chap, mutual) = (format!("alice:{SECRET}"), format!("bob:{TARGET_SECRET}"));
    let target = target(
        "ram:1MiB",
        &["--chap", &chap, "--mutual-chap", &mutual],
        &[("RUST_LOG", "trace")],
        "secrets-target.log",
    );
    let log = target.log.clone();
    let portal = target.urls[0].portal_url();
    let portal = portal.trim_start_matches("iscsi://");
    let initiator = |secret: &str| {
        support::peer::run_with_timeout(
            std::process::Command::new(env!("CARGO_BIN_EXE_initiator")).args([
                "inquiry",
                &format!("iscsi://alice%{secret}@{portal}/{IQN}/0"),
                "--mutual-chap",
                &format!("bob%{TARGET_SECRET}"),
            ]),
            Duration::from_secs(60),
        )
    };
    let ok = initiator(SECRET);
    assert!(ok.success(), "the right secrets log in: {}", ok.describe());
    let refused = initiator(WRONG);
    assert!(!refused.success(), "a wrong secret is refused");
    drop(target);
    let text = std::fs::read_to_string(&log).expect("target log");
    assert!(
        text.contains("logged in") && text.contains("login refused"),
        "the log holds both logins (trace level): {}",
        support::peer::tail_lines(&text, 20)
    );
    for s in [SECRET, TARGET_SECRET, WRONG] {
        assert!(!text.contains(s), "a secret is in the target's log");
    }
}
