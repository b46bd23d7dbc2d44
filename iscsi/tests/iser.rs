//! The engine over iSER on loopback verbs, beyond the shared scenarios of
//! `initiator_tcp.rs` (which run over iSER as `<scenario>::iser`): data really moves by RDMA
//! Write and Read, and failures (a disconnect in the middle of IO, a refused RDMA access,
//! exhausted receive credits) end connections cleanly, lose nothing, and recover.

mod support;

use std::sync::Arc;
use std::time::Duration;

use iscsi::initiator::{Error, InitiatorConfig, Session};
use iscsi::iser::{LoopbackIser, LoopbackIserAcceptor};
use iscsi::iser_transport::loopback::{Fabric, Faults, LoopbackConfig};
use iscsi::iser_transport::mover::IserConfig;
use iscsi::target::TargetConfig;
use support::{Rng, Running, disk, start_with, within};

const TARGET: &str = "iqn.2026-11.rs.iscsi:iser";
const MIB: usize = 1 << 20;
const TEST: Duration = Duration::from_secs(60);

/// Our target with a 16 MiB disk, reachable over iSER as `portal`.
async fn target(target_iser: IserConfig) -> (Running, Fabric, String) {
    let fabric = Fabric::new(LoopbackConfig::default());
    let f = fabric.clone();
    let t = start_with(
        TargetConfig::default(),
        vec![disk(TARGET, 16 * MIB as u64)],
        move |target, addr| {
            let a = LoopbackIserAcceptor::listen(&f, &addr.to_string(), target_iser)
                .expect("iSER listener");
            target.add_acceptor(a);
        },
    )
    .await;
    let portal = t.addr.to_string();
    (t, fabric, portal)
}

fn config(portal: &str) -> InitiatorConfig {
    let mut cfg = InitiatorConfig::new(portal, TARGET);
    cfg.initiator_name = "iqn.2026-11.rs.iscsi:iser-test".into();
    cfg.command_timeout = Some(Duration::from_secs(20));
    cfg
}

/// A write's data is fetched by RDMA Read (all of it but the immediate data), a read's is
/// placed by RDMA Write, and only the commands and responses travel in Sends.
#[tokio::test]
async fn data_moves_by_rdma_write_and_read() {
    within(TEST, "test", async {
        let (t, fabric, portal) = target(IserConfig::default()).await;
        let s = Session::connect_with(config(&portal), LoopbackIser::new(fabric.clone()))
            .await
            .expect("login over iSER");
        let data = Rng::new(1).bytes(MIB);
        // The typed helpers learn the block size first (READ CAPACITY): not counted.
        s.read_capacity().await.expect("READ CAPACITY");
        let before = fabric.stats().snapshot();
        s.write(100, &data).await.expect("write");
        let [sends, send_bytes, writes, _, reads, read_bytes] =
            delta(before, fabric.stats().snapshot());
        // ImmediateData=Yes: the first 8 KiB ride in the command (TargetRecvDataSegmentLength
        // 8192); InitialR2T=Yes on iSER: the rest is one RDMA Read.
        assert_eq!(writes, 0, "a write moves no data by RDMA Write");
        assert_eq!(read_bytes, (MIB - 8192) as u64, "RDMA Read bytes");
        assert_eq!(reads, 1, "contiguous solicited data is one RDMA Read");
        assert_eq!(
            sends, 2,
            "the command (with immediate data) and the response"
        );
        assert!(send_bytes < 8192 + 512, "{send_bytes} bytes in Sends");

        let before = fabric.stats().snapshot();
        let back = s.read(100, (MIB / 512) as u32).await.expect("read");
        let [sends, send_bytes, writes, write_bytes, reads, _] =
            delta(before, fabric.stats().snapshot());
        assert!(back == data, "read back what was written");
        assert_eq!(
            (writes, write_bytes),
            (1, MIB as u64),
            "one RDMA Write of the data"
        );
        assert_eq!(reads, 0);
        assert_eq!(sends, 2, "command and response");
        assert!(send_bytes < 512, "{send_bytes} bytes in Sends");
        s.logout().await.expect("logout");
        t.shutdown().await;
    })
    .await;
}

fn delta(a: [u64; 6], b: [u64; 6]) -> [u64; 6] {
    std::array::from_fn(|i| b[i] - a[i])
}

/// Writes from many tasks, each checked on read-back, with the connection broken under them
/// by `arm` once the session runs; every write succeeds (the initiator reconnects and sends
/// again what got no status) and `faults` fired exactly once.
async fn survives(faults: Faults, arm: impl FnOnce(&Faults)) {
    let (t, fabric, portal) = target(IserConfig::default()).await;
    let transport = LoopbackIser::new(fabric).with_faults(faults.clone());
    let s = Session::connect_with(config(&portal), transport)
        .await
        .expect("login over iSER");
    arm(&faults);
    let region = Arc::new(Rng::new(7).bytes(4 * MIB));
    let mut tasks = Vec::new();
    for i in 0..16usize {
        let (s, region) = (s.clone(), region.clone());
        tasks.push(tokio::spawn(async move {
            for j in 0..4usize {
                let off = (i * 4 + j) * 64 * 1024;
                let chunk = &region[off..off + 64 * 1024];
                s.write((off / 512) as u64, chunk).await?;
            }
            Ok::<_, Error>(())
        }));
    }
    for task in tasks {
        task.await
            .expect("task")
            .expect("every write succeeds across the fault");
    }
    assert_eq!(faults.injected(), 1, "the fault fired");
    let back = s.read(0, (4 * MIB / 512) as u32).await.expect("read back");
    assert!(
        back == *region,
        "the data written across the fault reads back"
    );
    s.logout().await.expect("logout");
    t.shutdown().await;
}

#[tokio::test]
async fn a_disconnect_in_the_middle_of_io_is_survived() {
    within(
        TEST,
        "test",
        survives(Faults::default(), |f| f.disconnect_after(40)),
    )
    .await;
}

#[tokio::test]
async fn a_refused_rdma_access_ends_the_connection_and_is_survived() {
    within(
        TEST,
        "test",
        survives(Faults::default(), |f| f.refuse_rdma_after(25)),
    )
    .await;
}

/// An initiator with few receives holds its commands back instead of overrunning them: 64
/// reads from 32 tasks with 12 receives (4 requests in flight) all succeed on one connection
/// (reconnection off: a receiver-not-ready error would fail them).
#[tokio::test]
async fn an_initiator_with_few_receives_holds_commands_back() {
    within(TEST, "test", async {
        let (t, fabric, portal) = target(IserConfig::default()).await;
        let mut cfg = config(&portal);
        cfg.reconnect.enabled = false;
        let small = IserConfig {
            recv_depth: 12,
            ..IserConfig::default()
        };
        let s = Session::connect_with(cfg, LoopbackIser::with_config(fabric, small))
            .await
            .expect("login over iSER");
        let data = Rng::new(3).bytes(MIB);
        s.write(0, &data).await.expect("write");
        let data = Arc::new(data);
        let mut tasks = Vec::new();
        for i in 0..32usize {
            let (s, data) = (s.clone(), data.clone());
            tasks.push(tokio::spawn(async move {
                for j in 0..2usize {
                    let blk = (i * 2 + j) % 256;
                    let got = s.read((blk * 8) as u64, 8).await?;
                    assert!(got[..] == data[blk * 4096..(blk + 1) * 4096], "block {blk}");
                }
                Ok::<_, Error>(())
            }));
        }
        for task in tasks {
            task.await.expect("task").expect("read");
        }
        s.logout().await.expect("logout");
        t.shutdown().await;
    })
    .await;
}

/// A target whose receives are fewer than its CmdSN window lets the initiator overrun them:
/// the Send fails with receiver-not-ready, the connection ends with an error (no hang, no
/// panic), the commands fail with `ConnectionLost` (reconnection off), and the target keeps
/// serving new sessions.
#[tokio::test]
async fn exhausted_target_receive_credits_fail_cleanly() {
    within(TEST, "test", async {
        let (t, fabric, portal) = target(IserConfig {
            recv_depth: 10,
            ..IserConfig::default()
        })
        .await;
        let mut cfg = config(&portal);
        cfg.reconnect.enabled = false;
        let s = Session::connect_with(cfg.clone(), LoopbackIser::new(fabric.clone()))
            .await
            .expect("login over iSER");
        let mut tasks = Vec::new();
        for i in 0..64u64 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move { s.read(i * 8, 8).await }));
        }
        let mut lost = 0;
        for task in tasks {
            match task.await.expect("task") {
                Ok(_) => {}
                Err(Error::ConnectionLost { .. } | Error::Closed) => lost += 1,
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert!(lost > 0, "64 commands at once overrun 10 receives");
        // A new session works (one command at a time fits).
        let s = Session::connect_with(cfg, LoopbackIser::new(fabric))
            .await
            .expect("a new login");
        s.read(0, 8).await.expect("a read on the new session");
        s.logout().await.expect("logout");
        t.shutdown().await;
    })
    .await;
}

/// A target with no TCP portal serves its iSER acceptor alone (discovery included); one with
/// nothing to accept from refuses to run.
#[tokio::test]
async fn a_target_without_tcp_portals_serves_iser_only() {
    use iscsi::target::{Target, TargetError};
    within(TEST, "test", async {
        let nothing = Target::without_tcp(TargetConfig::default(), vec![disk(TARGET, 1 << 20)])
            .expect("target");
        let e = nothing.run().await.expect_err("no portal and no acceptor");
        assert_eq!(e.to_string(), TargetError::NoPortal.to_string());

        let fabric = Fabric::new(LoopbackConfig::default());
        let mut t = Target::without_tcp(TargetConfig::default(), vec![disk(TARGET, 1 << 20)])
            .expect("target");
        t.add_acceptor(
            LoopbackIserAcceptor::listen(&fabric, "rdma-only:3260", IserConfig::default())
                .expect("iSER listener"),
        );
        assert!(t.local_addrs().is_empty() && t.urls().is_empty());
        let stop = t.shutdown_handle();
        let running = tokio::spawn(t.run());
        let mut cfg = InitiatorConfig::new("rdma-only:3260", "");
        cfg.initiator_name = "iqn.2026-11.rs.iscsi:iser-test".into();
        let found = Session::discover_with(&cfg, &LoopbackIser::new(fabric.clone()))
            .await
            .expect("discovery over iSER");
        assert!(found.iter().any(|r| r.name == TARGET), "{found:?}");
        let s = Session::connect_with(config("rdma-only:3260"), LoopbackIser::new(fabric))
            .await
            .expect("login over iSER");
        let data = Rng::new(7).bytes(64 << 10);
        s.write(8, &data).await.expect("write");
        assert!(s.read(8, 128).await.expect("read") == data);
        s.logout().await.expect("logout");
        stop.shutdown();
        within(Duration::from_secs(10), "shutdown", running)
            .await
            .expect("run task")
            .expect("run");
    })
    .await;
}
