//! Crash safety with the file backend: the `target` example serves a file; 16 writers write
//! generations of their blocks (some with FUA, some followed by SYNCHRONIZE CACHE) while the
//! target is killed with SIGKILL at a random moment; the target is started again on the same
//! file and every write that was durable when acknowledged (GOOD with FUA, or GOOD before a
//! SYNCHRONIZE CACHE that completed) must be there, whole: each block holds that generation
//! or a later one, never a mix. Three rounds, the kill at a different moment each time.
//!
//! A process kill keeps the page cache, so this checks that the target never acknowledges a
//! write before it has handed the data to the kernel (no cache of its own, no reordering of
//! a FUA write behind its status), not power-loss durability.
#![cfg(target_os = "linux")]

#[allow(dead_code)]
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iscsi::initiator::{InitiatorConfig, Session, Tcp};
use support::peer::TargetProcess;

const IQN: &str = "iqn.2026-12.rs.iscsi:crash";
const BS: usize = 4096;
const WRITERS: u64 = 16;
/// 4 KiB blocks each writer owns.
const BLOCKS_PER_WRITER: u64 = 32;

/// One 4 KiB block image: (block, generation) stamped in every 16 bytes.
fn image(block: u64, generation: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(BS);
    while v.len() < BS {
        v.extend_from_slice(&block.to_le_bytes());
        v.extend_from_slice(&generation.to_le_bytes());
    }
    v
}

/// The generation a block image holds, if it is whole (one block, one generation).
fn generation_of(block: u64, data: &[u8]) -> Result<u64, String> {
    let mut seen = None;
    for chunk in data.chunks(16) {
        let b = u64::from_le_bytes(chunk[..8].try_into().unwrap());
        let g = u64::from_le_bytes(chunk[8..].try_into().unwrap());
        if (b, g) == (0, 0) && seen.is_none_or(|x| x == 0) {
            seen = Some(0);
            continue;
        }
        if b != block {
            return Err(format!("block {block} holds data of block {b}"));
        }
        match seen {
            None => seen = Some(g),
            Some(x) if x == g => {}
            Some(x) => return Err(format!("block {block} is torn: generations {x} and {g}")),
        }
    }
    Ok(seen.unwrap_or(0))
}

fn start(file: &str, log: &str) -> TargetProcess {
    TargetProcess::start(
        std::path::Path::new(env!("CARGO_BIN_EXE_target")),
        &[
            "--listen",
            "127.0.0.1:0",
            "--iqn",
            IQN,
            "--lun",
            &format!("file:{file}"),
            "--block-size",
            "4096",
        ],
        1,
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(log),
    )
}

async fn session(target: &TargetProcess) -> Session {
    let portal = target.urls[0].portal_url();
    let mut cfg = InitiatorConfig::new(portal.trim_start_matches("iscsi://"), IQN);
    cfg.initiator_name = "iqn.2026-12.rs.iscsi:crash-test".into();
    cfg.reconnect.enabled = false;
    Session::connect_with(cfg, Tcp).await.expect("login")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_durable_writes_survive_a_kill_9() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for round in 0..3u64 {
        let file = dir.join(format!("crash-{round}.img"));
        let _ = std::fs::remove_file(&file);
        std::fs::File::create(&file)
            .and_then(|f| f.set_len(WRITERS * BLOCKS_PER_WRITER * BS as u64))
            .expect("backing file");
        let file = file.to_string_lossy().into_owned();
        let target = start(&file, &format!("crash-{round}.log"));
        let s = session(&target).await;

        // Durable generation of each block, as acknowledged.
        let durable: Arc<Mutex<HashMap<u64, u64>>> = Arc::default();
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (s, durable) = (s.clone(), durable.clone());
            writers.push(tokio::spawn(async move {
                let mut pending: Vec<(u64, u64)> = Vec::new();
                for generation in 1u64.. {
                    for i in 0..BLOCKS_PER_WRITER {
                        let block = w * BLOCKS_PER_WRITER + i;
                        let data = image(block, generation);
                        if (block + generation).is_multiple_of(3) {
                            if s.write_fua(block, data).await.is_err() {
                                return;
                            }
                            durable.lock().unwrap().insert(block, generation);
                        } else {
                            if s.write(block, &data).await.is_err() {
                                return;
                            }
                            pending.push((block, generation));
                            if pending.len() >= 8 {
                                if s.sync_cache().await.is_err() {
                                    return;
                                }
                                let mut d = durable.lock().unwrap();
                                for (b, g) in pending.drain(..) {
                                    let e = d.entry(b).or_insert(0);
                                    *e = (*e).max(g);
                                }
                            }
                        }
                    }
                }
            }));
        }
        // Let them write, then kill the target hard.
        tokio::time::sleep(Duration::from_millis(300 + 250 * round)).await;
        let pid = target.pid().to_string();
        let killed = Command::new("kill").args(["-KILL", &pid]).status();
        assert!(killed.is_ok_and(|st| st.success()), "kill -9 {pid}");
        for w in writers {
            let _ = tokio::time::timeout(Duration::from_secs(30), w).await;
        }
        drop(s);
        drop(target);
        let durable = durable.lock().unwrap().clone();
        assert!(
            durable.len() as u64 > WRITERS,
            "round {round}: only {} blocks were acknowledged durable before the kill",
            durable.len()
        );

        // Start again on the same file and check every block.
        let target = start(&file, &format!("crash-{round}-after.log"));
        let s = session(&target).await;
        let mut checked = 0;
        for block in 0..WRITERS * BLOCKS_PER_WRITER {
            let data = s.read(block, 1).await.expect("read after restart");
            let got = generation_of(block, &data).unwrap_or_else(|e| panic!("round {round}: {e}"));
            if let Some(&want) = durable.get(&block) {
                assert!(
                    got >= want,
                    "round {round}: block {block} holds generation {got}, but {want} was \
                     acknowledged durable"
                );
                checked += 1;
            }
        }
        println!(
            "round {round}: {checked} blocks checked against their durable generation after kill -9"
        );
        let _ = s.logout().await;
    }
}
