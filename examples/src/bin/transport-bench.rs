//! TCP against iSER, same engine, same workload, one process: our target (a RAM LUN) and our
//! initiator run on one thread, first over loopback TCP, then over iSER on the in-process
//! loopback verbs, alternating, and the table shows IOPS and the CPU time per IO of the whole
//! process (both ends, user + system), with the payload bytes that travelled in Sends and by
//! RDMA on the iSER runs.
//!
//! ```sh
//! cargo run --release -p iscsi-examples --bin transport-bench -- --seconds 5
//! ```
//!
//! The loopback verbs copy RDMA payloads with the CPU (a NIC would move them by DMA), so the
//! iSER numbers include one memcpy per payload that real RDMA does not cost; the TCP numbers
//! include the kernel's socket copies (two per payload) and loopback stack.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use iscsi::initiator::{InitiatorConfig, Session, Tcp};
use iscsi::iser::{LoopbackIser, LoopbackIserAcceptor};
use iscsi::iser_transport::loopback::{Fabric, LoopbackConfig};
use iscsi::scsi::backend::RamBackend;
use iscsi::scsi::lu::{LogicalUnit, LuConfig};
use iscsi::target::{Target, TargetConfig, TargetNode};

/// TCP vs iSER (loopback verbs): IOPS and CPU time per IO, same engine and workload.
#[derive(Parser, Debug)]
struct Args {
    /// Seconds per run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds (each runs every workload over TCP, then over iSER).
    #[arg(long, default_value_t = 2)]
    rounds: u32,
}

const IQN: &str = "iqn.2026-11.rs.iscsi:transport-bench";
const LUN_BYTES: u64 = 256 << 20;

struct Workload {
    name: &'static str,
    bytes: usize,
    depth: usize,
    write: bool,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        name: "4K rand read QD32",
        bytes: 4096,
        depth: 32,
        write: false,
    },
    Workload {
        name: "4K rand write QD32",
        bytes: 4096,
        depth: 32,
        write: true,
    },
    Workload {
        name: "128K seq read QD8",
        bytes: 128 << 10,
        depth: 8,
        write: false,
    },
];

/// User + system CPU time of this process (`/proc/self/stat`, clock ticks of 1/100 s).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// Runs `w` for `secs` with `w.depth` tasks; (IOs, elapsed, CPU time).
async fn run(s: &Session, w: &Workload, secs: u64) -> (u64, Duration, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let ios = Arc::new(AtomicU64::new(0));
    let blocks = (w.bytes / 512) as u64;
    let slots = LUN_BYTES / w.bytes as u64;
    let (t0, c0) = (Instant::now(), cpu_time());
    let mut tasks = Vec::new();
    for i in 0..w.depth {
        let (s, stop, ios) = (s.clone(), stop.clone(), ios.clone());
        let (bytes, write) = (w.bytes, w.write);
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0x5au8; bytes];
            let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ i as u64;
            let mut seq = i as u64;
            while !stop.load(Ordering::Relaxed) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let slot = if bytes == 4096 {
                    x % slots
                } else {
                    seq % slots
                };
                seq += 1;
                let lba = slot * blocks;
                buf = if write {
                    s.write_owned(lba, buf).await
                } else {
                    s.read_into(lba, buf).await
                }
                .expect("IO");
                ios.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("worker");
    }
    (ios.load(Ordering::Relaxed), t0.elapsed(), cpu_time() - c0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // One thread for both ends: the CPU time per IO is the whole stack's.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(bench(args))
}

async fn bench(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let fabric = Fabric::new(LoopbackConfig::default());
    let lu = LogicalUnit::new(LuConfig::new("bench"), RamBackend::new(LUN_BYTES))?;
    let node = TargetNode::new(IQN).lun(0, lu);
    let mut target = Target::bind(
        TargetConfig::default(),
        &["127.0.0.1:0".parse()?],
        vec![node],
    )
    .await?;
    let portal = target.local_addrs()[0].to_string();
    target.add_acceptor(LoopbackIserAcceptor::listen(
        &fabric,
        "iser-bench",
        Default::default(),
    )?);
    let stop = target.shutdown_handle();
    let running = tokio::spawn(target.run());

    let mut cfg = InitiatorConfig::new(&portal, IQN);
    cfg.command_timeout = Some(Duration::from_secs(30));
    let tcp = Session::connect_with(cfg.clone(), Tcp).await?;
    cfg.portal = "iser-bench".into();
    let iser = Session::connect_with(cfg, LoopbackIser::new(fabric.clone())).await?;
    // Thin RAM: write the whole LUN once so reads copy real data.
    let chunk = vec![0xa5u8; 1 << 20];
    for off in (0..LUN_BYTES).step_by(chunk.len()) {
        tcp.write(off / 512, &chunk).await?;
    }

    println!(
        "{} s per run, {} rounds; one thread runs target and initiator",
        args.seconds, args.rounds
    );
    for w in &WORKLOADS {
        let mut sums = [(0u64, Duration::ZERO, Duration::ZERO); 2];
        let mut moved = [0u64; 6];
        for _ in 0..args.rounds {
            for (i, s) in [&tcp, &iser].into_iter().enumerate() {
                let before = fabric.stats().snapshot();
                let (n, t, c) = run(s, w, args.seconds).await;
                let after = fabric.stats().snapshot();
                if i == 1 {
                    for k in 0..6 {
                        moved[k] += after[k] - before[k];
                    }
                }
                sums[i].0 += n;
                sums[i].1 += t;
                sums[i].2 += c;
            }
        }
        let per = |(n, t, c): (u64, Duration, Duration)| {
            (
                n as f64 / t.as_secs_f64(),
                c.as_secs_f64() * 1e6 / n.max(1) as f64,
            )
        };
        let (tcp_iops, tcp_us) = per(sums[0]);
        let (iser_iops, iser_us) = per(sums[1]);
        let n = sums[1].0.max(1) as f64;
        let send_b = moved[1] as f64 / n;
        let rdma_b = (moved[3] + moved[5]) as f64 / n;
        println!(
            "{:<20} TCP {:>8.0} IOPS {:>6.2} us/IO | iSER {:>8.0} IOPS {:>6.2} us/IO | \
             iSER/TCP CPU per IO {:.2} | iSER per IO: {:.0} B in Sends, {:.0} B by RDMA",
            w.name,
            tcp_iops,
            tcp_us,
            iser_iops,
            iser_us,
            iser_us / tcp_us,
            send_b,
            rdma_b
        );
    }
    tcp.logout().await?;
    iser.logout().await?;
    stop.shutdown();
    running.await??;
    Ok(())
}
