//! Fault simulation, sans-IO: the initiator and target engines of `pair` joined by a wire
//! that damages what crosses it. Every single-bit error in a read or a write is caught by the
//! CRC32C digests; commands delivered out of order or twice run once each, in CmdSN order; a
//! connection cut before any PDU of a workload loses nothing that was acknowledged and runs
//! nothing twice; and random mixes of these faults never end in a GOOD status over wrong
//! data, a task that never finishes, or a panic.
//!
//! The block store of `pair` asserts, whenever it runs a write, that it received exactly the
//! bytes the initiator was given, so damaged data-out that slipped through would fail the
//! test there; `Pair::check_reads` compares every GOOD read with what the store read.

mod pair;

use std::collections::HashMap;
use std::time::Duration;

use iscsi_proto::initiator::{CommandStatus, TaskError};
use iscsi_proto::pdu::ScsiStatus;
use iscsi_proto::{Itt, RejectReason};

use pair::Rng;
use pair::*;

/// Options for a damaged wire: digests on both ways, pings so that a stalled link is
/// noticed, and the command deadline of the `iscsi` crate's initiator.
fn faulty(opts: Opts) -> Opts {
    let mut o = opts.digests().faults();
    o.ini_session.nop_interval = Some(Duration::from_secs(5));
    o.ini_session.nop_timeout = Duration::from_secs(10);
    o.command_timeout = Some(Duration::from_secs(30));
    o
}

/// Random contents for blocks `lba..lba + blocks` of LUN 0, written into the store.
fn fill(p: &mut Pair, rng: &mut Rng, lba: u32, blocks: u32) -> Vec<u8> {
    let data = rng.bytes(blocks as usize * BLOCK);
    let start = lba as usize * BLOCK;
    p.disks[0][start..start + data.len()].copy_from_slice(&data);
    data
}

/// The bytes of blocks `lba..lba + blocks` of LUN 0.
fn blocks(p: &Pair, lba: u32, n: u32) -> &[u8] {
    let start = lba as usize * BLOCK;
    &p.disks[0][start..start + n as usize * BLOCK]
}

/// Runs the pair while holding `dir` back: each batch of bytes the sender queued is
/// delivered on its own, and the byte at `pos` of everything sent that way is XORed with
/// `mask` on the way. Returns how many bytes went that way.
fn run_flipping(p: &mut Pair, dir: Dir, pos: usize, mask: u8) -> usize {
    p.pause(dir, true);
    let mut seen = 0;
    for _ in 0..10_000 {
        p.run();
        let pending = p.pending_mut(dir);
        if pending.is_empty() {
            p.pause(dir, false);
            return seen;
        }
        let n = pending.len();
        if (seen..seen + n).contains(&pos) {
            pending[pos - seen] ^= mask;
        }
        seen += n;
        p.deliver_now(dir);
    }
    panic!("the pair never went quiet");
}

/// Lets two minutes pass (pings notice a stalled link, command deadlines one that drops
/// PDUs), then does what the engine does when
/// the initiator's session has closed the connection: ends the tasks it still held.
fn finish(p: &mut Pair) {
    p.advance(Duration::from_secs(120));
    if p.ini.is_closed() {
        p.connection_lost();
    }
}

/// After a faulty run: resumes both links, lets [`finish`] end what is stuck, then checks
/// that every task finished, none ran twice and every GOOD read returned what the store read.
fn settle_and_check(p: &mut Pair, what: &str) {
    p.pause(Dir::ToTarget, false);
    p.pause(Dir::ToInitiator, false);
    finish(p);
    assert!(p.all_done(), "{what}: a task never finished: {p:?}");
    let mut runs = p.executed.clone();
    runs.sort();
    runs.dedup();
    assert_eq!(runs.len(), p.executed.len(), "{what}: a task ran twice");
    p.check_reads();
}

/// A status that is not GOOD, or an error: the command did not claim success.
fn failed(r: &Result<CommandStatus, TaskError>) -> bool {
    !matches!(r, Ok(s) if s.is_good())
}

/// The sense key and additional sense code of a CHECK CONDITION.
fn sense_of(r: &Result<CommandStatus, TaskError>) -> Option<(u8, u8, u8)> {
    match r {
        Ok(s) if s.status == ScsiStatus::CHECK_CONDITION => {
            let sense = s.sense.as_ref()?;
            Some((sense[2] & 0x0f, sense[12], sense[13]))
        }
        _ => None,
    }
}

// =============================================================================================
// Every bit error is caught
// =============================================================================================

/// A read of 3 blocks sent as three Data-In PDUs (the initiator takes 512-byte segments) with
/// the status in the last one, and a NOP-free wire: flipping any single bit anywhere in what
/// the target sends fails the read at once, and the initiator's buffer is never reported good.
#[test]
fn every_bit_flipped_in_a_read_fails_it() {
    let opts = || faulty(Opts::new().mrdsl(512, 8192));
    let mut rng = Rng::new(7);
    let mut clean = Pair::new(opts());
    let data = fill(&mut clean, &mut rng, 40, 3);
    let itt = clean.read(0, 40, 3);
    let len = run_flipping(&mut clean, Dir::ToInitiator, usize::MAX, 0);
    assert!(clean.good(itt).is_good());
    assert_eq!(clean.buffer(itt), &data[..]);
    assert_eq!(
        len,
        3 * (48 + 4 + 512 + 4),
        "three Data-In PDUs with digests"
    );

    let mut closed = 0;
    for pos in 0..len {
        let mut p = Pair::new(opts());
        p.disks[0][40 * BLOCK..43 * BLOCK].copy_from_slice(&data);
        let itt = p.read(0, 40, 3);
        run_flipping(&mut p, Dir::ToInitiator, pos, 1 << (pos % 8));
        // At error recovery level 0 a damaged PDU from the target ends the connection
        // (RFC 7143 §7.8); the engine then ends the tasks.
        assert!(
            p.ini.is_closed(),
            "byte {pos}: the damaged PDU did not end the connection"
        );
        closed += 1;
        p.connection_lost();
        assert!(p.is_done(itt), "byte {pos}: the read is still waiting");
        assert!(
            failed(p.result(itt)),
            "byte {pos}: a damaged read was reported GOOD"
        );
        p.check_reads();
    }
    assert_eq!(closed, len);
}

/// A write of 3 blocks: 512 bytes of immediate data, then one R2T for the rest sent as two
/// Data-Out PDUs. Flipping any single bit of what the initiator sends never lets the write
/// reach the store: a damaged header ends the connection, a damaged data segment ends the
/// task with PROTOCOL SERVICE CRC ERROR while the session carries on.
#[test]
fn every_bit_flipped_in_a_write_keeps_it_off_the_disk() {
    let opts = || faulty(Opts::new().mrdsl(8192, 512).burst(true, true, 512, 65536));
    let mut rng = Rng::new(8);
    let data = rng.bytes(3 * BLOCK);
    let old = rng.bytes(3 * BLOCK);
    let mut clean = Pair::new(opts());
    clean.disks[0][80 * BLOCK..83 * BLOCK].copy_from_slice(&old);
    let itt = clean.write(0, 80, data.clone());
    let len = run_flipping(&mut clean, Dir::ToTarget, usize::MAX, 0);
    assert!(clean.good(itt).is_good());
    assert_eq!(blocks(&clean, 80, 3), &data[..]);
    assert_eq!(len, 3 * (48 + 4 + 512 + 4), "command and two Data-Out PDUs");

    let (mut rejected, mut crc_errors, mut closed) = (0, 0, 0);
    for pos in 0..len {
        let mut p = Pair::new(opts());
        p.disks[0][80 * BLOCK..83 * BLOCK].copy_from_slice(&old);
        let itt = p.write(0, 80, data.clone());
        run_flipping(&mut p, Dir::ToTarget, pos, 1 << (pos % 8));
        finish(&mut p);
        assert!(p.is_done(itt), "byte {pos}: the write never finished");
        let r = p.result(itt);
        assert!(failed(r), "byte {pos}: a damaged write was reported GOOD");
        assert!(
            !p.executed.contains(&itt),
            "byte {pos}: the damaged write ran"
        );
        assert_eq!(blocks(&p, 80, 3), &old[..], "byte {pos}: the disk changed");
        if p.ini.is_closed() {
            closed += 1;
            continue;
        }
        // Only the data was spoiled: the target said so, and the session still works.
        // Damaged immediate data gets the command rejected (RFC 7143 §11.17.1); damaged
        // solicited data ends the task with ABORTED COMMAND, PROTOCOL SERVICE CRC ERROR.
        if pos < 48 + 4 + 512 + 4 {
            assert!(
                matches!(r, Err(TaskError::Rejected(RejectReason::DATA_DIGEST_ERROR))),
                "byte {pos}: {r:?}"
            );
            rejected += 1;
        } else {
            assert_eq!(sense_of(r), Some((0x0b, 0x47, 0x05)), "byte {pos}");
            crc_errors += 1;
        }
        let again = p.write(0, 80, data.clone());
        p.run();
        assert!(
            p.is_done(again),
            "byte {pos}: the retry never finished: {p:?}"
        );
        assert!(p.good(again).is_good(), "byte {pos}: the retry failed");
        assert_eq!(blocks(&p, 80, 3), &data[..]);
    }
    // Data segments and their digests are 3 × 516 bytes; the rest is headers.
    assert_eq!(rejected, 512 + 4, "damaged immediate data was rejected");
    assert_eq!(
        crc_errors,
        2 * (512 + 4),
        "damaged solicited data answered with sense"
    );
    assert_eq!(closed, 3 * (48 + 4), "header damage ended the connection");
}

// =============================================================================================
// Reordered and duplicated commands
// =============================================================================================

/// Commands that reach the target shuffled, some of them twice, run exactly once each and
/// in CmdSN order: the last of sixteen writes to the same block wins, as it was submitted
/// last, and every other write lands.
#[test]
fn reordered_and_duplicated_commands_run_once_in_order() {
    for seed in 0..200u64 {
        let mut rng = Rng::new(seed);
        let mut p = Pair::new(faulty(Opts::new().depth(32)));
        p.pause(Dir::ToTarget, true);
        let mut expect: HashMap<u32, Vec<u8>> = HashMap::new();
        let mut itts = Vec::new();
        for i in 0..24u32 {
            // Sixteen writes to block 5, eight to blocks of their own.
            let lba = if i % 3 == 2 { 100 + i } else { 5 };
            let data = rng.bytes(BLOCK);
            expect.insert(lba, data.clone());
            itts.push(p.write(0, lba, data));
        }
        p.run();
        let mut pdus = p.pending_pdus(Dir::ToTarget);
        assert_eq!(pdus.len(), 24, "seed {seed}: one PDU per write");
        for _ in 0..rng.below(12) {
            let i = rng.below(pdus.len() as u64) as usize;
            let dup = pdus[i].clone();
            pdus.push(dup);
        }
        rng.shuffle(&mut pdus);
        *p.pending_mut(Dir::ToTarget) = pdus.concat();
        p.pause(Dir::ToTarget, false);
        p.run();

        for itt in &itts {
            assert!(p.good(*itt).is_good(), "seed {seed}: {itt:?}");
        }
        assert_eq!(
            p.executed, itts,
            "seed {seed}: run once each, in CmdSN order"
        );
        for (lba, data) in &expect {
            assert_eq!(blocks(&p, *lba, 1), &data[..], "seed {seed}: block {lba}");
        }
        assert!(!p.ini.is_closed() && !p.tgt.is_closed(), "seed {seed}");
        p.check_sequence_agreement();
    }
}

/// A write that reaches the target twice, once whole and once with its immediate data
/// damaged, in either order, runs once; when the whole copy came first the write is GOOD (the
/// Reject for the damaged copy, which arrives while the write runs, is recognised as such),
/// and either way the session goes on.
#[test]
fn a_damaged_duplicate_of_a_command_does_not_run_it_twice() {
    for damaged_first in [false, true] {
        let mut rng = Rng::new(11);
        let mut p = Pair::new(faulty(Opts::new()));
        let data = rng.bytes(BLOCK);
        p.pause(Dir::ToTarget, true);
        let itt = p.write(0, 60, data.clone());
        p.run();
        let pdus = p.pending_pdus(Dir::ToTarget);
        assert_eq!(pdus.len(), 1, "one PDU with immediate data");
        let mut bad = pdus[0].clone();
        bad[48 + 4 + 10] ^= 0x20;
        let wire = if damaged_first {
            [bad, pdus[0].clone()].concat()
        } else {
            [pdus[0].clone(), bad].concat()
        };
        *p.pending_mut(Dir::ToTarget) = wire;
        p.pause(Dir::ToTarget, false);
        // The target holds the write while the Reject for the damaged copy goes out.
        p.hold = true;
        p.run();
        p.hold = false;
        p.release_all();
        let what = if damaged_first {
            "damaged copy first"
        } else {
            "whole copy first"
        };
        let runs = p.executed.iter().filter(|i| **i == itt).count();
        assert_eq!(runs, 1, "{what}: the write ran once");
        assert_eq!(blocks(&p, 60, 1), &data[..], "{what}");
        if !damaged_first {
            assert!(p.good(itt).is_good(), "{what}: {:?}", p.result(itt));
        }
        let next = rng.bytes(BLOCK);
        let again = p.write(0, 61, next.clone());
        p.run();
        assert!(p.good(again).is_good(), "{what}: the session goes on");
        assert_eq!(blocks(&p, 61, 1), &next[..], "{what}");
    }
}

// =============================================================================================
// A cut at every step
// =============================================================================================

/// The workload of [`cut_before_every_pdu_loses_nothing_acknowledged`]: writes to blocks
/// of their own (some with R2Ts) and reads of blocks nobody writes.
fn cut_workload(p: &mut Pair, rng: &mut Rng) -> Vec<(Itt, u32, Vec<u8>, Vec<u8>)> {
    let mut writes = Vec::new();
    for (i, n) in [1u32, 4, 2, 6, 1].into_iter().enumerate() {
        let lba = 200 + 10 * i as u32;
        let old = fill(p, rng, lba, n);
        let data = rng.bytes(n as usize * BLOCK);
        let itt = p.write(0, lba, data.clone());
        writes.push((itt, lba, old, data));
        fill(p, rng, 400 + 10 * i as u32, 3);
        p.read(0, 400 + 10 * i as u32, 3);
    }
    writes
}

/// Each run cuts the connection just before one more PDU would cross it (in either
/// direction). Afterwards every task has finished; a write reported GOOD is on the disk, a
/// write that never reached the wire did not run, no task ran twice, and a block written by
/// a write that failed holds either all its old or all its new data.
#[test]
fn cut_before_every_pdu_loses_nothing_acknowledged() {
    let opts = || faulty(Opts::new().mrdsl(1024, 1024).burst(true, true, 512, 2048));
    for cut_at in 0.. {
        let mut rng = Rng::new(99);
        let mut p = Pair::new(opts());
        p.pause(Dir::ToTarget, true);
        p.pause(Dir::ToInitiator, true);
        let writes = cut_workload(&mut p, &mut rng);
        let mut step = 0;
        let mut cut = false;
        'run: loop {
            p.run();
            let mut moved = false;
            for dir in [Dir::ToTarget, Dir::ToInitiator] {
                let pdus = p.pending_pdus(dir);
                for (k, pdu) in pdus.iter().enumerate() {
                    if step == cut_at {
                        p.cut();
                        cut = true;
                        break 'run;
                    }
                    step += 1;
                    // Deliver this PDU alone; the rest waits.
                    let rest = pdus[k + 1..].concat();
                    *p.pending_mut(dir) = pdu.clone();
                    p.deliver_now(dir);
                    p.run();
                    let queued = std::mem::take(p.pending_mut(dir));
                    *p.pending_mut(dir) = [rest, queued].concat();
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        settle_and_check(&mut p, &format!("cut at {cut_at}"));
        for (itt, lba, old, data) in &writes {
            let n = data.len() as u32 / BLOCK as u32;
            let now = blocks(&p, *lba, n);
            match p.result(*itt) {
                Ok(s) if s.is_good() => {
                    assert_eq!(now, &data[..], "cut at {cut_at}: acknowledged write lost")
                }
                Err(TaskError::ConnectionLost { sent: false }) => {
                    assert!(
                        !p.executed.contains(itt),
                        "cut at {cut_at}: unsent write ran"
                    );
                    assert_eq!(
                        now,
                        &old[..],
                        "cut at {cut_at}: unsent write changed the disk"
                    );
                }
                _ => assert!(
                    now == &old[..] || now == &data[..],
                    "cut at {cut_at}: a failed write left a mix"
                ),
            }
        }
        if !cut {
            // The workload ran to the end before the cut point: every step has been tried.
            assert!(p.submitted.iter().all(|i| !failed(p.result(*i))));
            assert!(cut_at > 20, "the workload took {cut_at} steps");
            eprintln!("cut before each of {cut_at} PDUs");
            break;
        }
    }
}

// =============================================================================================
// Random mixes
// =============================================================================================

/// What a damaged link may do to one batch of PDUs.
fn mangle(rng: &mut Rng, pdus: &mut Vec<Vec<u8>>, stats: &mut [usize; 5]) {
    if pdus.is_empty() {
        return;
    }
    match rng.below(12) {
        0 => {
            let i = rng.below(pdus.len() as u64) as usize;
            let pdu = &mut pdus[i];
            let b = rng.below(pdu.len() as u64) as usize;
            pdu[b] ^= 1 << rng.below(8);
            stats[0] += 1;
        }
        1 => {
            let i = rng.below(pdus.len() as u64) as usize;
            pdus.remove(i);
            stats[1] += 1;
        }
        2 => {
            let i = rng.below(pdus.len() as u64) as usize;
            let dup = pdus[i].clone();
            pdus.insert(i, dup);
            stats[2] += 1;
        }
        3 | 4 => {
            rng.shuffle(pdus);
            stats[3] += 1;
        }
        5 => {
            // A torn PDU: the connection ends after part of it.
            let i = rng.below(pdus.len() as u64) as usize;
            let keep = rng.below(pdus[i].len() as u64) as usize;
            pdus.truncate(i + 1);
            pdus[i].truncate(keep);
            stats[4] += 1;
        }
        _ => {}
    }
}

/// Random workloads over a link that flips bits, drops, duplicates, reorders and tears
/// PDUs in both directions (and, for half of them, hands the bytes over in random pieces). However it ends, no task is left waiting once the pings have
/// had time to notice a dead link, no GOOD read returned other data than the store read, no
/// write reached the store with other bytes than it was given, a GOOD write is on the disk,
/// and no task ran twice.
#[test]
fn random_faults_never_end_in_wrong_data_or_a_hang() {
    let mut totals = [0usize; 5];
    let (mut good, mut bad) = (0, 0);
    for seed in 0..1500u64 {
        let mut rng = Rng::new(seed);
        let opts = faulty(
            Opts::new()
                .mrdsl(1024, 2048)
                .burst(true, rng.below(2) == 0, 1024, 4096),
        )
        .max_r2t(2);
        // Odd seeds also feed the receivers in random pieces.
        let opts = if seed % 2 == 1 {
            opts.split(seed)
        } else {
            opts
        };
        let mut p = Pair::new(opts);
        p.pause(Dir::ToTarget, true);
        p.pause(Dir::ToInitiator, true);
        let mut writes = Vec::new();
        for i in 0..12u32 {
            let lba = 10 * i;
            let n = 1 + rng.below(8) as u32;
            if rng.below(2) == 0 {
                let data = rng.bytes(n as usize * BLOCK);
                writes.push((p.write(0, lba, data.clone()), lba, data));
            } else {
                fill(&mut p, &mut rng, lba, n);
                p.read(0, lba, n as u16);
            }
        }
        let mut faults_left = 1 + rng.below(3);
        for _ in 0..10_000 {
            p.run();
            let mut moved = false;
            for dir in [Dir::ToTarget, Dir::ToInitiator] {
                let mut pdus = p.pending_pdus(dir);
                if pdus.is_empty() {
                    continue;
                }
                if faults_left > 0 && rng.below(4) == 0 {
                    faults_left -= 1;
                    mangle(&mut rng, &mut pdus, &mut totals);
                }
                *p.pending_mut(dir) = pdus.concat();
                p.deliver_now(dir);
                moved = true;
            }
            if !moved {
                break;
            }
        }
        settle_and_check(&mut p, &format!("seed {seed}"));
        for (itt, lba, data) in &writes {
            if !failed(p.result(*itt)) {
                let n = data.len() as u32 / BLOCK as u32;
                assert_eq!(
                    blocks(&p, *lba, n),
                    &data[..],
                    "seed {seed}: GOOD write lost"
                );
            }
        }
        for itt in &p.submitted {
            if failed(p.result(*itt)) {
                bad += 1;
            } else {
                good += 1;
            }
        }
    }
    eprintln!(
        "faults: {} bit flips, {} drops, {} duplicates, {} reorders, {} tears; tasks: {good} good, {bad} failed",
        totals[0], totals[1], totals[2], totals[3], totals[4]
    );
    assert!(
        totals.iter().all(|n| *n > 10),
        "every kind of fault was tried"
    );
    assert!(good > 0 && bad > 0);
}
