//! Pair tests of the initiator's full feature phase (RFC 7143), sans-IO: an
//! [`InitiatorSession`](iscsi_proto::initiator::InitiatorSession) and its `PduMover` against a
//! `TargetSession`, its `PduMover` and a small block store, every PDU going through its wire
//! encoding (see `pair`). Sequence numbers start a few steps before 2^32 so that serial
//! arithmetic wraps; several tests feed the wire in random pieces.

mod pair;

use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::datamover::DataError;
use iscsi_proto::initiator::{CloseReason, Command, Direction, Residual, SubmitError, TaskError};
use iscsi_proto::pdu::{
    AsyncEvent, AsyncMessage, DataIn, DataOut, LogoutReason, LogoutResponseCode, Lun, ScsiResponse,
    ScsiStatus, ServiceResponse, TaskMgmtFunction, TaskMgmtRequest, TextRequest, TextResponse,
    TmfResponse,
};
use iscsi_proto::target::{CloseReason as TargetClose, TargetRecord, encode_send_targets};
use iscsi_proto::{CmdSn, Itt, Pdu, RejectReason, Ttt};
use proptest::prelude::*;

use pair::Rng;
use pair::*;

// =============================================================================================
// Fixtures
// =============================================================================================

/// One negotiation outcome to run data through.
#[derive(Clone, Copy, Debug)]
struct Combo {
    immediate: bool,
    initial_r2t: bool,
    first_burst: u32,
    max_burst: u32,
    ini_mrdsl: u32,
    tgt_mrdsl: u32,
    max_r2t: u16,
    digests: bool,
}

const COMBOS: [Combo; 6] = [
    // The RFC's defaults, with 8 KiB segments.
    Combo {
        immediate: true,
        initial_r2t: true,
        first_burst: 65536,
        max_burst: 262_144,
        ini_mrdsl: 8192,
        tgt_mrdsl: 8192,
        max_r2t: 1,
        digests: false,
    },
    // No immediate data but unsolicited Data-Out; 512-byte Data-In; several R2Ts at once;
    // digests.
    Combo {
        immediate: false,
        initial_r2t: false,
        first_burst: 16384,
        max_burst: 32768,
        ini_mrdsl: 512,
        tgt_mrdsl: 4096,
        max_r2t: 4,
        digests: true,
    },
    // Immediate and unsolicited data in 512-byte segments; small bursts.
    Combo {
        immediate: true,
        initial_r2t: false,
        first_burst: 1024,
        max_burst: 4096,
        ini_mrdsl: 1024,
        tgt_mrdsl: 512,
        max_r2t: 3,
        digests: false,
    },
    // Everything solicited, one block per R2T.
    Combo {
        immediate: false,
        initial_r2t: true,
        first_burst: 512,
        max_burst: 512,
        ini_mrdsl: 512,
        tgt_mrdsl: 512,
        max_r2t: 2,
        digests: false,
    },
    // Large everything: immediate data bounded by the target's segment length.
    Combo {
        immediate: true,
        initial_r2t: false,
        first_burst: 262_144,
        max_burst: 262_144,
        ini_mrdsl: 262_144,
        tgt_mrdsl: 65536,
        max_r2t: 1,
        digests: true,
    },
    // Immediate data bounded by FirstBurstLength, below the segment length.
    Combo {
        immediate: true,
        initial_r2t: true,
        first_burst: 2048,
        max_burst: 8192,
        ini_mrdsl: 4096,
        tgt_mrdsl: 8192,
        max_r2t: 8,
        digests: false,
    },
];

fn opts(c: &Combo) -> Opts {
    let o = Opts::new()
        .burst(c.immediate, c.initial_r2t, c.first_burst, c.max_burst)
        .mrdsl(c.ini_mrdsl, c.tgt_mrdsl)
        .max_r2t(c.max_r2t);
    if c.digests { o.digests() } else { o }
}

fn lun(n: u16) -> Lun {
    Lun::from_index(n).expect("small LUN")
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn records(n: usize) -> Vec<TargetRecord> {
    (0..n)
        .map(|i| TargetRecord {
            name: format!("iqn.2026-11.rs.iscsi:disk-{i:03}-with-a-rather-long-name"),
            addresses: vec![
                (format!("192.0.2.{}:3260", i % 250 + 1), 1),
                (format!("[2001:db8::{:x}]:3260", i + 1), 1),
            ],
        })
        .collect()
}

/// What `pick` takes from the PDUs sent in direction `dir`, in order.
fn picked<T>(p: &Pair, dir: Dir, pick: impl Fn(&Pdu) -> Option<T>) -> Vec<T> {
    p.sent(dir).filter_map(pick).collect()
}

fn data_ins(p: &Pair, itt: Itt) -> Vec<DataIn> {
    picked(p, Dir::ToInitiator, |x| match x {
        Pdu::DataIn(d) if d.itt == itt => Some(d.clone()),
        _ => None,
    })
}

fn responses(p: &Pair, itt: Itt) -> Vec<ScsiResponse> {
    picked(p, Dir::ToInitiator, |x| match x {
        Pdu::ScsiResponse(r) if r.itt == itt => Some(r.clone()),
        _ => None,
    })
}

fn data_outs(p: &Pair, itt: Itt) -> Vec<DataOut> {
    picked(p, Dir::ToTarget, |x| match x {
        Pdu::DataOut(d) if d.itt == itt => Some(d.clone()),
        _ => None,
    })
}

fn tmf_requests(p: &Pair) -> Vec<TaskMgmtRequest> {
    picked(p, Dir::ToTarget, |x| match x {
        Pdu::TaskMgmtRequest(t) => Some(t.clone()),
        _ => None,
    })
}

fn commands_on_wire(p: &Pair) -> Vec<(Itt, CmdSn)> {
    picked(p, Dir::ToTarget, |x| match x {
        Pdu::ScsiCommand(c) => Some((c.itt, c.cmd_sn)),
        _ => None,
    })
}

fn is_tmf_event(e: &IniEv) -> bool {
    matches!(e, IniEv::Tmf(..))
}

// =============================================================================================
// 1. Data round trips under every burst setting
// =============================================================================================

/// Writes of many sizes, all at once, under each negotiation combination; then each region
/// and the whole area are read back and compared. The split between immediate data,
/// unsolicited Data-Out and solicited Data-Out follows ImmediateData, InitialR2T,
/// FirstBurstLength and the target's MaxRecvDataSegmentLength exactly; no initiator PDU
/// exceeds the target's MaxRecvDataSegmentLength (and the limit is used, not only respected).
#[test]
fn writes_and_reads_round_trip_under_every_burst_setting() {
    const SIZES: [u16; 9] = [1, 2, 3, 8, 10, 32, 129, 256, 520];
    for (i, c) in COMBOS.iter().enumerate() {
        let mut o = opts(c);
        if i % 2 == 1 {
            o = o.split(0x1234 + i as u64);
        }
        let mut p = Pair::new(o);
        let pr = p.params.clone();
        assert_eq!(pr.immediate_data, c.immediate, "{c:?}");
        assert_eq!(pr.initial_r2t, c.initial_r2t);
        assert_eq!(pr.first_burst_length, c.first_burst);
        assert_eq!(pr.max_burst_length, c.max_burst);
        assert_eq!(pr.max_outstanding_r2t, c.max_r2t);
        assert_eq!(pr.initiator_max_recv_data_segment_length, c.ini_mrdsl);
        assert_eq!(pr.target_max_recv_data_segment_length, c.tgt_mrdsl);

        let mut rng = Rng::new(i as u64);
        let mut lba = 0u32;
        let mut writes = Vec::new();
        for &blocks in &SIZES {
            let data = rng.bytes(usize::from(blocks) * BLOCK);
            let itt = p.write(0, lba, data.clone());
            writes.push((itt, lba, blocks, data));
            lba += u32::from(blocks);
        }
        p.run();
        for (itt, lba, _, data) in &writes {
            assert_eq!(p.good(*itt).residual, Residual::None);
            let len = data.len() as u32;
            let imm = if c.immediate {
                len.min(c.first_burst).min(c.tgt_mrdsl)
            } else {
                0
            };
            let unsol = if c.initial_r2t {
                imm
            } else {
                len.min(c.first_burst).max(imm)
            };
            let sent = p.task(*itt).sent.clone().expect("sent");
            assert_eq!(
                (sent.immediate_len, sent.unsolicited_len),
                (imm, unsol),
                "{c:?} write of {len}"
            );
            let cmd = p.command_pdu(*itt);
            assert_eq!(cmd.data.len() as u32, imm, "immediate data on the wire");
            assert_eq!(
                cmd.final_,
                unsol == imm,
                "F bit announces unsolicited Data-Out"
            );
            assert_eq!(&cmd.data[..], &data[..imm as usize]);
            let outs = data_outs(&p, *itt);
            let unsolicited: usize = outs
                .iter()
                .filter(|d| d.ttt.is_reserved())
                .map(|d| d.data.len())
                .sum();
            let solicited: usize = outs
                .iter()
                .filter(|d| !d.ttt.is_reserved())
                .map(|d| d.data.len())
                .sum();
            assert_eq!(unsolicited as u32, unsol - imm, "{c:?} write of {len}");
            assert_eq!(solicited as u32, len - unsol, "{c:?} write of {len}");
            let start = *lba as usize * BLOCK;
            assert!(p.disks[0][start..start + data.len()] == data[..]);
        }

        let reads: Vec<Itt> = writes
            .iter()
            .map(|(_, lba, blocks, _)| p.read(0, *lba, *blocks))
            .collect();
        let all = p.read(0, 0, lba as u16);
        p.run();
        for (r, (_, _, _, data)) in reads.iter().zip(&writes) {
            assert_eq!(p.good(*r).residual, Residual::None);
            assert!(
                p.buffer(*r) == &data[..],
                "{c:?}: read back what was written"
            );
        }
        let whole: Vec<u8> = writes.iter().flat_map(|w| w.3.iter().copied()).collect();
        assert!(p.buffer(all) == &whole[..]);
        p.check_reads();

        let st = p.check_wire();
        assert_eq!(
            st.largest_to_target, c.tgt_mrdsl as usize,
            "{c:?}: segments as large as the target accepts"
        );
        assert!(st.largest_to_initiator <= c.ini_mrdsl as usize);
        assert_eq!(st.commands, 2 * SIZES.len() + 1);
        if c.immediate {
            assert!(st.immediate_bytes > 0);
        } else {
            assert_eq!(st.immediate_bytes, 0);
        }
        if c.initial_r2t {
            assert_eq!(st.unsolicited_pdus, 0);
        } else {
            assert!(st.unsolicited_pdus > 0);
        }
        assert!(st.r2ts > 0);
        if c.max_r2t > 1 {
            assert!(
                st.max_r2ts_at_once > 1,
                "{c:?}: several R2Ts outstanding at once"
            );
        }
        p.check_sequence_agreement();
        assert_eq!(p.ini.task_count(), 0);
        assert_eq!(p.ini.in_flight(), 0);
    }
}

/// Data-In sequences are bounded by MaxBurstLength even when the initiator accepts longer
/// segments (RFC 7143 §13.13: MaxBurstLength is the most SCSI data in one Data-In sequence).
#[test]
fn data_in_sequences_respect_max_burst_length() {
    let mut p = Pair::new(Opts::new().burst(true, true, 4096, 4096).mrdsl(16384, 8192));
    let data = Rng::new(11).bytes(32 * BLOCK);
    let w = p.write(0, 0, data.clone());
    p.run();
    p.good(w);
    let r = p.read(0, 0, 32);
    p.run();
    assert!(p.buffer(r) == &data[..]);
    let mut seq = 0usize;
    for d in data_ins(&p, r) {
        seq += d.data.len();
        assert!(
            seq <= 4096,
            "a Data-In sequence of {seq} bytes with MaxBurstLength 4096 (PDU of {} bytes)",
            d.data.len()
        );
        if d.final_ {
            seq = 0;
        }
    }
}

// =============================================================================================
// 2. Status, residuals, sense
// =============================================================================================

/// The status rides in the last Data-In when the target may put it there, or comes in its
/// own SCSI Response (with ExpDataSN counting the Data-In PDUs); either way the data and a
/// GOOD status arrive.
#[test]
fn status_in_the_last_data_in_or_in_a_separate_response() {
    let mut p = Pair::new(Opts::new().mrdsl(1024, 8192));
    let data = Rng::new(2).bytes(4096);
    let w = p.write(0, 100, data.clone());
    p.run();
    p.good(w);

    let r1 = p.read(0, 100, 8);
    p.run();
    assert_eq!(p.good(r1).residual, Residual::None);
    assert!(p.buffer(r1) == &data[..]);
    let ins = data_ins(&p, r1);
    assert_eq!(ins.len(), 4, "4 KiB in 1 KiB segments");
    assert!(ins[..3].iter().all(|d| d.status.is_none()));
    assert_eq!(ins[3].status, Some(ScsiStatus::GOOD));
    assert!(ins[3].final_);
    assert!(responses(&p, r1).is_empty(), "no separate SCSI Response");

    p.force_separate_status = true;
    let r2 = p.read(0, 100, 8);
    p.run();
    let s = p.good(r2);
    assert_eq!(s.residual, Residual::None);
    assert_eq!(s.sense, None);
    assert!(p.buffer(r2) == &data[..]);
    let ins = data_ins(&p, r2);
    assert_eq!(ins.len(), 4);
    assert!(ins.iter().all(|d| d.status.is_none()));
    let resp = responses(&p, r2);
    assert_eq!(resp.len(), 1);
    assert_eq!(resp[0].exp_data_sn.0, 4);

    let st = p.check_wire();
    assert_eq!(st.status_in_data, 1);
    assert_eq!(st.separate_responses, 1);
    p.check_reads();
    p.check_sequence_agreement();
}

/// A READ whose CDB moves less than the expected length reports an underflow (and the
/// transferred byte count), one that moves more an overflow; with the status in the last
/// Data-In and in a separate response. A WRITE whose CDB takes less than was sent underflows.
#[test]
fn residual_underflow_and_overflow_are_reported() {
    let mut p = Pair::new(Opts::new().mrdsl(1024, 8192));
    let data = Rng::new(3).bytes(4096);
    let w = p.write(0, 100, data.clone());
    p.run();
    p.good(w);

    for separate in [false, true] {
        p.force_separate_status = separate;
        // CDB: 4 blocks; expected: 8 blocks.
        let under = p.submit(Command::read(0, &read10(100, 4), 4096), None);
        // CDB: 8 blocks; expected: 4 blocks.
        let over = p.submit(Command::read(0, &read10(100, 8), 2048), None);
        p.run();

        let s = p.good(under);
        assert_eq!(s.residual, Residual::Underflow(2048), "separate={separate}");
        assert_eq!(s.transferred(4096), 2048);
        let b = p.buffer(under);
        assert!(b[..2048] == data[..2048]);
        assert!(b[2048..].iter().all(|x| *x == 0), "nothing beyond the data");

        let s = p.good(over);
        assert_eq!(s.residual, Residual::Overflow(2048), "separate={separate}");
        assert_eq!(s.transferred(2048), 2048);
        assert!(p.buffer(over) == &data[..2048]);
    }

    // WRITE(10) of 2 blocks with 4 blocks of data-out.
    let more = Rng::new(4).bytes(2048);
    let w = p.submit(
        Command::write(0, &write10(200, 2), 2048),
        Some(more.clone()),
    );
    p.run();
    assert_eq!(p.good(w).residual, Residual::Underflow(1024));
    assert!(p.disks[0][200 * BLOCK..201 * BLOCK + 512] == more[..1024]);
    assert!(p.disks[0][202 * BLOCK..204 * BLOCK].iter().all(|x| *x == 0));

    p.check_reads();
    p.check_wire();
    p.check_sequence_agreement();
}

/// CHECK CONDITION arrives with its sense data in `CommandStatus::sense`; INQUIRY and READ
/// CAPACITY data come through.
#[test]
fn check_condition_delivers_sense_data() {
    let mut p = Pair::new(Opts::new());
    // Beyond the last block.
    let r = p.read(0, DISK_BLOCKS - 1, 2);
    // An operation code the store does not know.
    let u = p.submit(Command::new(0, &[0xee, 0, 0, 0, 0, 0]), None);
    // A LUN that does not exist.
    let l = p.tur(5);
    let inq = p.submit(Command::read(0, &[0x12, 0, 0, 0, 96, 0], 96), None);
    let cap = p.submit(
        Command::read(0, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], 8),
        None,
    );
    p.run();

    let expect = |p: &Pair, itt: Itt, sense: Bytes, residual: Residual| {
        let s = p.result(itt).as_ref().expect("a status");
        assert_eq!(s.response, ServiceResponse::COMPLETED);
        assert_eq!(s.status, ScsiStatus::CHECK_CONDITION);
        assert!(!s.is_good());
        assert_eq!(s.sense, Some(sense));
        assert_eq!(s.residual, residual);
    };
    expect(&p, r, fixed_sense(5, 0x21, 0), Residual::Underflow(1024));
    expect(&p, u, fixed_sense(5, 0x20, 0), Residual::None);
    expect(&p, l, fixed_sense(5, 0x25, 0), Residual::None);
    assert!(p.buffer(r).iter().all(|b| *b == 0));

    let s = p.good(inq);
    assert_eq!(s.residual, Residual::Underflow(60));
    assert!(p.buffer(inq)[..36] == inquiry_data()[..]);
    p.good(cap);
    assert_eq!(p.buffer(cap), &[0, 0, 7, 0xff, 0, 0, 2, 0]);

    // Sense data means a separate response: the status never rides in a Data-In.
    assert_eq!(responses(&p, r).len(), 1);
    p.check_wire();
    p.check_sequence_agreement();
}

// =============================================================================================
// 3. The CmdSN window
// =============================================================================================

/// Fifty commands submitted at once against a queue depth of four: four go out before any
/// answer, never one beyond MaxCmdSN (checked on every PDU by the harness), all complete
/// (released out of order), with consecutive CmdSNs across the 2^32 wrap, and ExpStatSN
/// acknowledging exactly what arrived.
#[test]
fn fifty_commands_through_a_window_of_four() {
    let mut o = Opts::new().depth(4).split(3);
    o.first_cmd_sn = 0xffff_ffe8;
    let mut p = Pair::new(o);
    p.hold = true;
    let mut rng = Rng::new(3);
    let mut itts = Vec::new();
    for i in 0..50u32 {
        let itt = match i % 3 {
            0 => p.write(0, i, rng.bytes(BLOCK)),
            1 => p.read(0, 1000 + i, 1),
            _ => p.tur(0),
        };
        itts.push(itt);
    }
    assert_eq!(p.ini.task_count(), 50);
    p.settle_initiator();
    assert_eq!(commands_on_wire(&p).len(), 4, "the window holds four");
    assert_eq!(p.ini.in_flight(), 4);

    p.run();
    let mut rounds = 0;
    while !p.all_done() {
        assert!(
            p.tgt.task_count() <= 4,
            "the target never holds more than its depth"
        );
        let mut held = p.held_itts();
        assert!(!held.is_empty(), "stuck with nothing held");
        assert!(held.len() <= 4);
        rng.shuffle(&mut held);
        let n = 1 + rng.below(held.len() as u64) as usize;
        for itt in &held[..n] {
            p.release(*itt);
        }
        rounds += 1;
    }
    assert!(rounds >= 13);
    for itt in &itts {
        p.good(*itt);
    }
    assert_ne!(p.completions(), itts, "completions came out of order");

    let sent = commands_on_wire(&p);
    assert_eq!(sent.iter().map(|x| x.0).collect::<Vec<_>>(), itts);
    for (k, (_, sn)) in sent.iter().enumerate() {
        assert_eq!(*sn, CmdSn(0xffff_ffe8u32.wrapping_add(k as u32)));
    }
    assert_eq!(p.ini.cmd_sn(), CmdSn(0xffff_ffe8u32.wrapping_add(50)));
    p.check_reads();
    p.check_wire();
    p.check_sequence_agreement();
    assert_eq!(p.ini.in_flight(), 0);
}

/// `max_in_flight` bounds the commands on the wire inside a larger window, `max_queued` the
/// commands waiting; CDBs must be 1..=1020 bytes; a Text request must fit the target's
/// MaxRecvDataSegmentLength.
#[test]
fn submit_limits() {
    let mut o = Opts::new().depth(32);
    o.ini_session.max_in_flight = 2;
    o.ini_session.max_queued = 3;
    let mut p = Pair::new(o);
    p.hold = true;
    let mut itts: Vec<Itt> = (0..5).map(|_| p.tur(0)).collect();
    assert_eq!(
        p.try_submit(Command::new(0, &[0; 6]), None),
        Err(SubmitError::QueueFull)
    );
    assert_eq!(
        p.try_submit(Command::new(0, &[]), None),
        Err(SubmitError::CdbLength(0))
    );
    assert_eq!(
        p.try_submit(Command::new(0, &[0; 1021]), None),
        Err(SubmitError::CdbLength(1021))
    );
    // A Text request must fit the target's MaxRecvDataSegmentLength.
    let max = p.params.target_max_recv_data_segment_length;
    let now = p.instant();
    assert_eq!(
        p.ini
            .text_request(Bytes::from(vec![b'a'; max as usize + 1]), now),
        Err(SubmitError::TextLength {
            len: max as usize + 1,
            max
        })
    );
    p.run();
    assert_eq!(p.held.len(), 2);
    assert_eq!(commands_on_wire(&p).len(), 2);
    while !p.all_done() {
        assert!(p.tgt.task_count() <= 2);
        let first = p.held_itts()[0];
        p.release(first);
    }
    itts.sort_by_key(|i| i.0);
    for itt in &itts {
        p.good(*itt);
    }
    p.check_sequence_agreement();
}

// =============================================================================================
// 4. Many commands in flight
// =============================================================================================

/// Reads and writes of different LBAs all in flight at once (small bursts: immediate,
/// unsolicited and solicited data interleave on the wire), completed by the target in a
/// random order: each completes when the target answers it, with the right data.
#[test]
fn interleaved_reads_and_writes_complete_out_of_order() {
    let mut p = Pair::new(opts(&COMBOS[2]).depth(32).split(44));
    let mut rng = Rng::new(4);
    let initial = rng.bytes(DISK_BLOCKS as usize * BLOCK);
    p.disks[0] = initial.clone();
    p.hold = true;
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    let (mut wlba, mut rlba) = (0u32, 1024u32);
    for i in 0..24 {
        let blocks = 1 + rng.below(16) as u16;
        if i % 2 == 0 {
            let data = rng.bytes(usize::from(blocks) * BLOCK);
            writes.push((p.write(0, wlba, data.clone()), wlba, data));
            wlba += u32::from(blocks);
        } else {
            reads.push((p.read(0, rlba, blocks), rlba, blocks));
            rlba += u32::from(blocks);
        }
    }
    p.run();
    assert_eq!(
        p.held.len(),
        24,
        "every command reached the store, data included"
    );
    let mut order = p.held_itts();
    rng.shuffle(&mut order);
    assert_ne!(order, p.submitted);
    for itt in &order {
        assert!(!p.is_done(*itt));
        p.release(*itt);
        assert!(
            p.is_done(*itt),
            "{itt:?} completes when the target answers it"
        );
    }
    assert_eq!(p.completions(), order);
    for (itt, lba, data) in &writes {
        p.good(*itt);
        let s = *lba as usize * BLOCK;
        assert!(p.disks[0][s..s + data.len()] == data[..]);
    }
    for (itt, lba, blocks) in &reads {
        p.good(*itt);
        let s = *lba as usize * BLOCK;
        assert!(p.buffer(*itt) == &initial[s..s + usize::from(*blocks) * BLOCK]);
    }
    p.check_reads();
    p.check_wire();
    p.check_sequence_agreement();
}

// =============================================================================================
// 5. NOP
// =============================================================================================

/// The target's NOP-In pings (TTT set, ITT reserved) are echoed at once with an immediate
/// NOP-Out carrying the TTT, ITT 0xffffffff and the next CmdSN; the target never times out.
#[test]
fn target_nop_in_pings_are_answered() {
    let mut o = Opts::new();
    o.tgt_session.nop_in_interval = Some(Duration::from_secs(10));
    o.tgt_session.nop_in_timeout = Duration::from_secs(5);
    let mut p = Pair::new(o);
    p.advance(secs(9.0));
    assert_eq!(p.sent(Dir::ToInitiator).count(), 0);
    p.advance(secs(1.0));
    let pings: Vec<_> = p
        .sent(Dir::ToInitiator)
        .filter_map(|x| match x {
            Pdu::NopIn(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(pings.len(), 1);
    assert!(pings[0].itt.is_reserved() && !pings[0].ttt.is_reserved());
    let answers: Vec<_> = p
        .sent(Dir::ToTarget)
        .filter_map(|x| match x {
            Pdu::NopOut(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(answers.len(), 1);
    let a = &answers[0];
    assert!(a.immediate && a.itt.is_reserved());
    assert_eq!(a.ttt, pings[0].ttt);
    assert_eq!(a.cmd_sn, p.ini.cmd_sn());
    assert_eq!(
        a.exp_stat_sn, pings[0].stat_sn,
        "the ping shows the next StatSN"
    );

    p.advance(secs(50.0));
    assert_eq!(p.tgt_close, None, "every ping answered");
    let pings: Vec<Ttt> = p
        .sent(Dir::ToInitiator)
        .filter_map(|x| match x {
            Pdu::NopIn(n) => Some(n.ttt),
            _ => None,
        })
        .collect();
    let echoed: Vec<Ttt> = p
        .sent(Dir::ToTarget)
        .filter_map(|x| match x {
            Pdu::NopOut(n) => Some(n.ttt),
            _ => None,
        })
        .collect();
    assert_eq!(pings.len(), 6, "a ping every 10 s of silence");
    assert_eq!(pings, echoed);
    assert!(p.events.is_empty(), "nothing for the application");

    let t = p.tur(0);
    p.run();
    p.good(t);
    p.check_sequence_agreement();
}

/// A ping's data is echoed in the answer (RFC 7143 §11.18: up to the target's
/// MaxRecvDataSegmentLength).
#[test]
fn ping_data_is_echoed() {
    let mut p = Pair::new(Opts::new());
    let ping = iscsi_proto::pdu::NopIn {
        lun: lun(0),
        itt: Itt::RESERVED,
        ttt: Ttt(0x77),
        stat_sn: p.tgt.stat_sn(),
        exp_cmd_sn: p.tgt.exp_cmd_sn(),
        max_cmd_sn: p.tgt.max_cmd_sn(),
        data: Bytes::from_static(b"are you there?"),
    };
    p.inject_to_initiator(ping.into());
    p.run();
    let answer = p
        .sent(Dir::ToTarget)
        .find_map(|x| match x {
            Pdu::NopOut(n) => Some(n.clone()),
            _ => None,
        })
        .expect("an answer");
    assert_eq!(answer.ttt, Ttt(0x77));
    assert!(answer.itt.is_reserved() && answer.immediate);
    assert_eq!(&answer.data[..], b"are you there?");
    assert_eq!(p.ini_close, None);
}

/// After `nop_interval` without hearing from the target the initiator pings it (NOP-Out with
/// a real ITT, TTT reserved, immediate); the answer (NOP-In with that ITT) keeps the
/// connection up. Traffic postpones the ping.
#[test]
fn keep_alive_nop_out_after_idle_time() {
    let mut o = Opts::new();
    o.ini_session.nop_interval = Some(Duration::from_secs(5));
    o.ini_session.nop_timeout = Duration::from_secs(10);
    let mut p = Pair::new(o);
    let nop_outs = |p: &Pair| -> Vec<iscsi_proto::pdu::NopOut> {
        p.sent(Dir::ToTarget)
            .filter_map(|x| match x {
                Pdu::NopOut(n) => Some(n.clone()),
                _ => None,
            })
            .collect()
    };
    p.advance(secs(4.0));
    let t = p.tur(0);
    p.run();
    p.good(t);
    p.advance(secs(4.9));
    assert!(
        nop_outs(&p).is_empty(),
        "the response at 4 s restarted the idle timer"
    );
    p.advance(secs(0.1));
    let pings = nop_outs(&p);
    assert_eq!(pings.len(), 1);
    let ping = &pings[0];
    assert!(ping.immediate && !ping.itt.is_reserved() && ping.ttt.is_reserved());
    assert!(ping.data.is_empty());
    assert_eq!(ping.cmd_sn, p.ini.cmd_sn());
    let answer = p
        .sent(Dir::ToInitiator)
        .find_map(|x| match x {
            Pdu::NopIn(n) if n.itt == ping.itt => Some(n.clone()),
            _ => None,
        })
        .expect("the target answers the ping");
    assert!(answer.ttt.is_reserved());

    p.advance(secs(51.0));
    assert_eq!(p.ini_close, None);
    let pings = nop_outs(&p);
    assert_eq!(pings.len(), 11, "pings at 9, 14, ..., 59 s");
    let mut itts: Vec<u32> = pings.iter().map(|n| n.itt.0).collect();
    itts.push(t.0);
    itts.sort_unstable();
    itts.dedup();
    assert_eq!(itts.len(), 12, "every ping has its own tag");
    p.check_sequence_agreement();
}

/// A keep-alive ping the target never answers closes the connection with PingTimeout after
/// `nop_timeout`; the command still running is then lost (it was sent).
#[test]
fn unanswered_keep_alive_closes_with_ping_timeout() {
    let mut o = Opts::new();
    o.ini_session.nop_interval = Some(Duration::from_secs(5));
    o.ini_session.nop_timeout = Duration::from_secs(10);
    let mut p = Pair::new(o);
    p.hold = true;
    let a = p.read(0, 0, 1);
    p.run();
    p.to_initiator_filter = Some(Box::new(|pdu| match pdu {
        Pdu::NopIn(_) => None,
        other => Some(other),
    }));
    p.advance(secs(5.0));
    assert_eq!(
        p.sent(Dir::ToTarget)
            .filter(|x| matches!(x, Pdu::NopOut(_)))
            .count(),
        1
    );
    p.advance(secs(9.9));
    assert_eq!(p.ini_close, None);
    p.advance(secs(0.1));
    assert_eq!(p.ini_close, Some(CloseReason::PingTimeout));
    assert_eq!(
        p.sent(Dir::ToTarget)
            .filter(|x| matches!(x, Pdu::NopOut(_)))
            .count(),
        1,
        "one ping, no retries"
    );
    p.connection_lost();
    assert_eq!(p.result(a), &Err(TaskError::ConnectionLost { sent: true }));
    assert_eq!(p.buffer(a).len(), BLOCK);
}

// =============================================================================================
// 6. Task management and deadlines
// =============================================================================================

/// ABORT TASK of a command the target is running: the request names the task and its CmdSN;
/// the answer comes once the task has ended at the target (without a status), and the
/// command then ends with Aborted. A command still queued here is aborted without a word.
#[test]
fn abort_task_of_a_held_command() {
    let mut p = Pair::new(Opts::new().depth(2));
    p.hold = true;
    let a = p.read(0, 10, 8);
    let b = p.tur(0);
    let c = p.tur(0);
    p.run();
    assert_eq!(p.held_itts(), vec![a, b]);

    let now = p.instant();
    assert_eq!(p.ini.abort_task(c, now), None, "queued: no request needed");
    p.run();
    assert_eq!(p.result(c), &Err(TaskError::Aborted));

    let tmf = p
        .ini
        .abort_task(a, now)
        .expect("a request for a running command");
    p.run();
    let reqs = tmf_requests(&p);
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.itt, tmf);
    assert!(r.immediate);
    assert_eq!(r.function, TaskMgmtFunction::ABORT_TASK);
    assert_eq!(r.referenced_task_tag, a);
    assert_eq!(r.ref_cmd_sn, p.command_pdu(a).cmd_sn);
    assert_eq!(r.lun, lun(0));
    assert!(!p.is_done(a), "not before the target answers");
    assert!(
        p.tmf_requests.is_empty(),
        "the target waits for the running task"
    );
    assert!(!p.events.iter().any(is_tmf_event));

    p.release(a);
    assert_eq!(p.silenced, vec![a], "an aborted task sends no status");
    assert_eq!(p.result(a), &Err(TaskError::Aborted));
    assert!(p.events.contains(&IniEv::Tmf(tmf, TmfResponse::COMPLETE)));
    assert_eq!(p.buffer(a).len(), 4096, "the buffer is back");
    assert!(data_ins(&p, a).is_empty() && responses(&p, a).is_empty());
    assert_eq!(p.ini.abort_task(a, now), None, "already over");

    p.release(b);
    p.good(b);
    assert!(commands_on_wire(&p).iter().all(|(i, _)| *i != c));
    p.check_sequence_agreement();
}

/// The command's status overtakes its ABORT TASK: the command completes with its status, the
/// abort is answered "task does not exist", and nothing completes twice.
#[test]
fn a_status_that_overtakes_the_abort_wins() {
    let mut p = Pair::new(Opts::new());
    p.hold = true;
    let a = p.read(0, 0, 2);
    p.run();
    p.pause(Dir::ToTarget, true);
    let tmf = p.ini.abort_task(a, p.instant()).expect("running");
    p.run();
    p.release(a);
    p.good(a);
    p.pause(Dir::ToTarget, false);
    p.run();
    assert!(
        p.events
            .contains(&IniEv::Tmf(tmf, TmfResponse::TASK_DOES_NOT_EXIST))
    );
    assert_eq!(p.completions(), vec![a]);
    assert_eq!(p.ini_close, None);
    p.check_reads();
    p.check_sequence_agreement();
}

/// Task management, Text and Logout requests the target never answers close the connection
/// with RequestTimeout after `request_timeout`.
#[test]
fn unanswered_requests_time_out() {
    for kind in 0..3 {
        let mut o = Opts::new().discovery();
        o.ini_session.request_timeout = Duration::from_secs(15);
        let mut p = Pair::new(o);
        p.to_initiator_filter = Some(Box::new(|pdu| match pdu {
            Pdu::TaskMgmtResponse(_) | Pdu::TextResponse(_) | Pdu::LogoutResponse(_) => None,
            other => Some(other),
        }));
        let now = p.instant();
        match kind {
            0 => {
                p.ini.target_reset(now);
            }
            1 => {
                p.ini
                    .text_request(Bytes::from_static(b"SendTargets=All\0"), now)
                    .expect("accepted");
            }
            _ => {
                p.ini.logout(now);
            }
        }
        p.advance(secs(14.9));
        assert_eq!(p.ini_close, None, "kind {kind}");
        p.advance(secs(0.1));
        assert_eq!(
            p.ini_close,
            Some(CloseReason::RequestTimeout),
            "kind {kind}"
        );
    }
}

/// LOGICAL UNIT RESET: every command sent to that LUN before it ends with Aborted once the
/// target answers; the other LUN's command and the commands still queued here go on.
#[test]
fn lu_reset_aborts_the_commands_sent_to_that_lun() {
    let mut p = Pair::new(Opts::new().depth(5).burst(true, true, 4096, 262_144));
    let mut rng = Rng::new(6);
    p.hold = true;
    let l0 = vec![
        p.read(0, 0, 4),
        p.write(0, 8, rng.bytes(1024)),
        p.write(0, 16, rng.bytes(16 * BLOCK)),
        p.tur(0),
    ];
    let l1 = p.read(1, 0, 2);
    let queued = vec![p.read(0, 40, 1), p.tur(0)];
    p.run();
    assert_eq!(p.held.len(), 5, "the write needing an R2T got its data");
    assert!(
        commands_on_wire(&p)
            .iter()
            .all(|(i, _)| !queued.contains(i))
    );

    let now = p.instant();
    let reset = p.ini.lu_reset(lun(0), now);
    p.run();
    let reqs = tmf_requests(&p);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].function, TaskMgmtFunction::LOGICAL_UNIT_RESET);
    assert_eq!(reqs[0].lun, lun(0));
    assert!(reqs[0].immediate);
    assert!(reqs[0].referenced_task_tag.is_reserved());

    for itt in &l0 {
        assert!(!p.is_done(*itt));
        p.release(*itt);
    }
    for itt in &l0 {
        assert_eq!(p.result(*itt), &Err(TaskError::Aborted), "{itt:?}");
        let t = p.task(*itt);
        assert!(!t.at_mover, "buffer back");
        assert_eq!(t.buf.is_some(), t.cmd.direction != Direction::None);
    }
    assert!(p.events.contains(&IniEv::Tmf(reset, TmfResponse::COMPLETE)));
    assert!(!p.is_done(l1), "LUN 1 is not reset");
    p.release_all();
    p.good(l1);
    for itt in &queued {
        p.good(*itt);
    }
    p.check_reads();
    p.check_sequence_agreement();
}

/// TARGET WARM RESET aborts every command sent, whatever its LUN.
#[test]
fn target_reset_aborts_everything_sent() {
    let mut p = Pair::new(Opts::new());
    p.hold = true;
    let a = p.read(0, 0, 4);
    let b = p.write(1, 0, Rng::new(7).bytes(2048));
    p.run();
    let reset = p.ini.target_reset(p.instant());
    p.run();
    let reqs = tmf_requests(&p);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].function, TaskMgmtFunction::TARGET_WARM_RESET);
    p.release_all();
    assert_eq!(p.result(a), &Err(TaskError::Aborted));
    assert_eq!(p.result(b), &Err(TaskError::Aborted));
    assert!(p.events.contains(&IniEv::Tmf(reset, TmfResponse::COMPLETE)));
    assert_eq!(p.silenced.len(), 2, "no status for either");
    p.hold = false;
    let t = p.tur(1);
    p.run();
    p.good(t);
    p.check_sequence_agreement();
}

/// A running command past its deadline completes with TimedOut at once and an ABORT TASK
/// goes out for it; the abort's answer is not reported, the command is not completed twice,
/// and its tag is not handed out again meanwhile.
#[test]
fn a_command_past_its_deadline_times_out_at_once_and_is_aborted() {
    let mut p = Pair::new(Opts::new());
    p.hold = true;
    let deadline = p.instant() + Duration::from_secs(5);
    let a = p.submit(
        Command::read(0, &read10(0, 8), 4096).with_deadline(deadline),
        None,
    );
    let b = p.tur(0);
    p.run();
    p.advance(secs(4.9));
    assert!(!p.is_done(a));
    assert!(tmf_requests(&p).is_empty());
    p.advance(secs(0.1));
    assert_eq!(p.result(a), &Err(TaskError::TimedOut));
    assert_eq!(p.buffer(a).len(), 4096, "the buffer is back at once");
    let reqs = tmf_requests(&p);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].function, TaskMgmtFunction::ABORT_TASK);
    assert_eq!(reqs[0].referenced_task_tag, a);
    assert_eq!(reqs[0].ref_cmd_sn, p.command_pdu(a).cmd_sn);
    assert_eq!(p.ini.task_count(), 1, "only b counts");

    let more: Vec<Itt> = (0..8).map(|_| p.tur(0)).collect();
    assert!(
        !more.contains(&a),
        "the tag stays taken while the abort runs"
    );
    p.run();

    p.release(a);
    assert_eq!(p.silenced, vec![a]);
    let answered = p.sent(Dir::ToInitiator).any(|x| {
        matches!(x, Pdu::TaskMgmtResponse(r) if r.itt == reqs[0].itt && r.response == TmfResponse::COMPLETE)
    });
    assert!(answered);
    assert!(
        !p.events.iter().any(is_tmf_event),
        "our own abort is not reported"
    );
    assert_eq!(p.completions().iter().filter(|i| **i == a).count(), 1);
    p.release_all();
    p.good(b);
    for itt in &more {
        p.good(*itt);
    }
    p.check_sequence_agreement();
}

/// Data-In and status of a command that already timed out (they were on the wire when the
/// deadline passed) are dropped without disturbing the connection; the abort finds no task.
#[test]
fn data_for_a_timed_out_command_is_dropped_quietly() {
    let mut p = Pair::new(Opts::new().mrdsl(1024, 8192));
    let data = Rng::new(8).bytes(4096);
    let w = p.write(0, 0, data.clone());
    p.run();
    p.good(w);
    p.hold = true;
    let deadline = p.instant() + Duration::from_secs(5);
    let a = p.submit(
        Command::read(0, &read10(0, 8), 4096).with_deadline(deadline),
        None,
    );
    p.run();
    p.pause(Dir::ToInitiator, true);
    p.release(a);
    p.advance(secs(5.0));
    assert_eq!(p.result(a), &Err(TaskError::TimedOut));
    assert_eq!(tmf_requests(&p).len(), 1);
    p.pause(Dir::ToInitiator, false);
    p.run();
    assert_eq!(p.ini_close, None);
    assert_eq!(data_ins(&p, a).len(), 4, "the data did arrive");
    let tmf = tmf_requests(&p)[0].itt;
    assert!(p.sent(Dir::ToInitiator).any(|x| {
        matches!(x, Pdu::TaskMgmtResponse(r) if r.itt == tmf && r.response == TmfResponse::TASK_DOES_NOT_EXIST)
    }));
    assert_eq!(p.completions().iter().filter(|i| **i == a).count(), 1);
    assert!(
        p.buffer(a).iter().all(|b| *b == 0),
        "no data placed after the timeout"
    );
    assert!(!p.events.iter().any(is_tmf_event));

    p.hold = false;
    let r = p.read(0, 0, 8);
    p.run();
    assert!(p.buffer(r) == &data[..]);
    p.check_sequence_agreement();
}

/// A command still waiting for window room when its deadline passes times out and is never
/// sent (and takes no CmdSN).
#[test]
fn a_queued_command_past_its_deadline_is_never_sent() {
    let mut p = Pair::new(Opts::new().depth(1));
    p.hold = true;
    let a = p.tur(0);
    let deadline = p.instant() + Duration::from_secs(5);
    let b = p.submit(Command::new(0, &[0; 6]).with_deadline(deadline), None);
    p.run();
    p.advance(secs(5.0));
    assert_eq!(p.result(b), &Err(TaskError::TimedOut));
    assert!(
        tmf_requests(&p).is_empty(),
        "nothing to abort at the target"
    );
    p.release(a);
    p.good(a);
    let c = p.tur(0);
    p.run();
    p.release_all();
    p.good(c);
    let sent = commands_on_wire(&p);
    assert_eq!(
        sent.iter().map(|x| x.0).collect::<Vec<_>>(),
        vec![a, c],
        "b never went out"
    );
    assert_eq!(sent[1].1, sent[0].1.next());
    p.check_sequence_agreement();
}

/// A write that times out while its R2T is on the way: the late R2T is ignored (no Data-Out,
/// no protocol error) and the ABORT TASK ends the transfer at the target.
#[test]
fn a_late_r2t_for_a_timed_out_write_is_ignored() {
    let mut p = Pair::new(Opts::new().burst(false, true, 65536, 262_144));
    let deadline = p.instant() + Duration::from_secs(5);
    p.pause(Dir::ToInitiator, true);
    let w = p.submit(
        Command::write(0, &write10(0, 4), 2048).with_deadline(deadline),
        Some(Rng::new(16).bytes(2048)),
    );
    p.run();
    assert_eq!(p.get_data.len(), 1, "the target asked for the data");
    p.advance(secs(5.0));
    assert_eq!(p.result(w), &Err(TaskError::TimedOut));
    assert_eq!(p.buffer(w).len(), 2048);
    assert_eq!(
        p.released,
        vec![w],
        "the abort ended the transfer at the target"
    );
    p.pause(Dir::ToInitiator, false);
    p.run();
    assert!(
        p.sent(Dir::ToInitiator)
            .any(|x| matches!(x, Pdu::R2t(r) if r.itt == w))
    );
    assert!(data_outs(&p, w).is_empty(), "no data for a task given up");
    assert_eq!(p.ini_close, None);
    assert!(!p.events.iter().any(is_tmf_event));
    let t = p.tur(0);
    p.run();
    p.good(t);
    p.check_sequence_agreement();
}

/// A one-block read with a 5 s deadline that the target holds past it: timed out, and its
/// ABORT TASK on the way.
fn read_timed_out(p: &mut Pair) -> Itt {
    let deadline = p.instant() + Duration::from_secs(5);
    let a = p.submit(
        Command::read(0, &read10(0, 1), 512).with_deadline(deadline),
        None,
    );
    p.run();
    p.advance(secs(5.0));
    assert_eq!(p.result(a), &Err(TaskError::TimedOut));
    a
}

/// When the target refuses the ABORT TASK of a timed-out command its tag can no longer be
/// trusted: the connection closes with a protocol error.
#[test]
fn a_refused_abort_of_a_timed_out_command_closes_the_connection() {
    let mut p = Pair::new(Opts::new());
    p.hold = true;
    p.tmf_response = TmfResponse::REJECTED;
    let a = read_timed_out(&mut p);
    p.release(a);
    match &p.ini_close {
        Some(CloseReason::ProtocolError(m)) => assert!(m.contains("ABORT TASK"), "{m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

/// Keeps the initiator's PDUs that `which` picks from reaching the target; the last one is
/// in the returned cell.
fn keep_back(
    p: &mut Pair,
    which: impl Fn(&Pdu) -> bool + 'static,
) -> std::rc::Rc<std::cell::RefCell<Option<Pdu>>> {
    let caught = std::rc::Rc::new(std::cell::RefCell::new(None));
    let keep = caught.clone();
    p.to_target_filter = Some(Box::new(move |pdu| {
        if which(&pdu) {
            *keep.borrow_mut() = Some(pdu);
            None
        } else {
            Some(pdu)
        }
    }));
    caught
}

/// A Reject of that ABORT TASK is the same: the connection closes with a protocol error.
#[test]
fn a_rejected_abort_of_a_timed_out_command_closes_the_connection() {
    let mut p = Pair::new(Opts::new());
    p.hold = true;
    let caught = keep_back(&mut p, |pdu| matches!(pdu, Pdu::TaskMgmtRequest(_)));
    read_timed_out(&mut p);
    assert_eq!(p.ini_close, None);
    let header = caught
        .borrow()
        .as_ref()
        .expect("the ABORT TASK went out")
        .bhs()
        .to_array();
    let reject = iscsi_proto::pdu::Reject {
        reason: RejectReason::IMMEDIATE_COMMAND_REJECT,
        stat_sn: p.tgt.stat_sn(),
        exp_cmd_sn: p.tgt.exp_cmd_sn(),
        max_cmd_sn: p.tgt.max_cmd_sn(),
        data: Bytes::copy_from_slice(&header),
        ..Default::default()
    };
    p.inject_to_initiator(reject.into());
    p.run();
    match &p.ini_close {
        Some(CloseReason::ProtocolError(m)) => assert!(m.contains("ABORT TASK"), "{m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

// =============================================================================================
// 7. Text: SendTargets
// =============================================================================================

/// SendTargets=All in a discovery session returns the target's records, as encoded.
#[test]
fn send_targets_in_a_discovery_session() {
    let mut p = Pair::new(Opts::new().discovery());
    p.records = records(3);
    let now = p.instant();
    let itt = p
        .ini
        .text_request(Bytes::from_static(b"SendTargets=All\0"), now)
        .expect("accepted");
    p.run();
    let expected = encode_send_targets(&p.records).to_vec();
    assert_eq!(p.events, vec![IniEv::Text(itt, Some(expected))]);
    let reqs: Vec<&Pdu> = p
        .sent(Dir::ToTarget)
        .filter(|x| matches!(x, Pdu::TextRequest(_)))
        .collect();
    assert_eq!(reqs.len(), 1);
    p.check_sequence_agreement();

    p.ini.logout(p.instant());
    p.run();
    assert_eq!(
        p.ini_close,
        Some(CloseReason::Logout(LogoutResponseCode::Closed))
    );
}

/// A SendTargets answer longer than the initiator's MaxRecvDataSegmentLength arrives in
/// several Text responses (C=1, a TTT each), each fetched with an empty Text request echoing
/// the TTT; the application gets the whole text once, and the session stays in step.
#[test]
fn a_long_send_targets_answer_is_gathered_over_several_text_responses() {
    let mut p = Pair::new(Opts::new().discovery().mrdsl(512, 8192));
    p.records = records(40);
    let expected = encode_send_targets(&p.records);
    assert!(expected.len() > 8 * 512);
    let now = p.instant();
    let itt = p
        .ini
        .text_request(Bytes::from_static(b"SendTargets=All\0"), now)
        .expect("accepted");
    p.run();
    let resps: Vec<TextResponse> = p
        .sent(Dir::ToInitiator)
        .filter_map(|x| match x {
            Pdu::TextResponse(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    let reqs: Vec<TextRequest> = p
        .sent(Dir::ToTarget)
        .filter_map(|x| match x {
            Pdu::TextRequest(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(resps.len(), expected.len().div_ceil(512));
    assert_eq!(reqs.len(), resps.len());
    for (i, r) in resps.iter().enumerate() {
        let last = i + 1 == resps.len();
        assert_eq!(r.itt, itt);
        assert_eq!(r.final_, last);
        assert_eq!(r.cont, !last);
        assert_eq!(r.ttt.is_reserved(), last);
        if !last {
            let next = &reqs[i + 1];
            assert_eq!(next.itt, itt);
            assert_eq!(next.ttt, r.ttt, "the continuation echoes the TTT");
            assert!(next.data.is_empty() && next.final_ && !next.immediate);
        }
    }
    assert_eq!(p.events, vec![IniEv::Text(itt, Some(expected.to_vec()))]);
    p.check_sequence_agreement();

    p.ini.logout(p.instant());
    p.run();
    assert_eq!(
        p.ini_close,
        Some(CloseReason::Logout(LogoutResponseCode::Closed))
    );
}

/// A Text request the target rejects fails with no text; the session goes on.
#[test]
fn a_rejected_text_request_fails() {
    let mut p = Pair::new(Opts::new().discovery());
    let (stat_sn, exp, max) = (p.tgt.stat_sn(), p.tgt.exp_cmd_sn(), p.tgt.max_cmd_sn());
    // The request never reaches the target: it is kept here instead.
    let caught = keep_back(&mut p, |pdu| matches!(pdu, Pdu::TextRequest(_)));
    let now = p.instant();
    let t = p
        .ini
        .text_request(Bytes::from_static(b"SendTargets=All\0"), now)
        .expect("accepted");
    p.run();
    let header = caught
        .borrow()
        .as_ref()
        .expect("the request went out")
        .bhs()
        .to_array();
    let reject = iscsi_proto::pdu::Reject {
        reason: RejectReason::INVALID_PDU_FIELD,
        stat_sn,
        exp_cmd_sn: exp.next(),
        max_cmd_sn: max.next(),
        data: Bytes::copy_from_slice(&header),
        ..Default::default()
    };
    p.inject_to_initiator(reject.into());
    p.run();
    assert_eq!(p.events, vec![IniEv::Text(t, None)]);
    assert_eq!(p.ini_close, None);
    assert_eq!(p.ini.exp_stat_sn(), stat_sn.next());
}

// =============================================================================================
// 8. Logout
// =============================================================================================

/// Logout goes out after the commands already queued (the next CmdSN after the last of
/// them), the connection closes with Logout(Closed) once the target answers, and nothing is
/// accepted from the moment the logout was asked for.
#[test]
fn logout_after_queued_commands() {
    let mut p = Pair::new(Opts::new().depth(2).split(8));
    p.hold = true;
    let cmds = vec![
        p.read(0, 0, 1),
        p.tur(0),
        p.write(0, 5, Rng::new(9).bytes(BLOCK)),
        p.read(0, 6, 2),
        p.tur(0),
    ];
    let now = p.instant();
    let lo = p.ini.logout(now);
    assert_eq!(
        p.try_submit(Command::new(0, &[0; 6]), None),
        Err(SubmitError::Closing)
    );
    assert_eq!(
        p.ini
            .text_request(Bytes::from_static(b"SendTargets=All\0"), now),
        Err(SubmitError::Closing)
    );
    p.run();
    while p.ini_close.is_none() {
        let held = p.held_itts();
        assert!(!held.is_empty(), "stuck before the logout completed");
        p.release(held[0]);
    }
    for itt in &cmds {
        p.good(*itt);
    }
    let to_target: Vec<&Pdu> = p.sent(Dir::ToTarget).collect();
    let Some(Pdu::LogoutRequest(l)) = to_target.last() else {
        panic!("the Logout is the last PDU sent: {:?}", to_target.last());
    };
    assert_eq!(l.itt, lo);
    assert!(!l.immediate);
    assert_eq!(l.reason, LogoutReason::CloseSession);
    let sent = commands_on_wire(&p);
    assert_eq!(sent.len(), 5);
    assert_eq!(l.cmd_sn, sent[4].1.next());
    assert_eq!(
        p.ini_close,
        Some(CloseReason::Logout(LogoutResponseCode::Closed))
    );
    assert_eq!(p.tgt_close, Some(TargetClose::Logout));
    assert_eq!(
        p.events.last(),
        Some(&IniEv::Close(CloseReason::Logout(
            LogoutResponseCode::Closed
        )))
    );
    assert!(p.ini.is_closed());
    assert_eq!(
        p.try_submit(Command::new(0, &[0; 6]), None),
        Err(SubmitError::Closing)
    );
    p.check_reads();
    p.check_wire();
}

// =============================================================================================
// 9. Asynchronous messages, Reject, malformed PDUs, broken data
// =============================================================================================

/// The target's request to log out (Asynchronous Message 1) reaches the application; the
/// logout that follows closes the connection.
#[test]
fn the_target_asks_for_a_logout() {
    let mut p = Pair::new(Opts::new());
    p.tgt.request_logout(7);
    p.run();
    assert_eq!(p.events, vec![IniEv::LogoutRequested(7)]);
    p.check_sequence_agreement();
    p.ini.logout(p.instant());
    p.run();
    assert_eq!(
        p.ini_close,
        Some(CloseReason::Logout(LogoutResponseCode::Closed))
    );
    assert_eq!(p.tgt_close, Some(TargetClose::Logout));
}

/// A SCSI asynchronous event goes to the application with its sense data; a "drop the
/// connection" message closes with TargetDrop and the announced Time2Wait.
#[test]
fn asynchronous_events_and_connection_drops() {
    let mut p = Pair::new(Opts::new());
    let sense = fixed_sense(6, 0x2a, 0x09);
    let m = AsyncMessage {
        lun: lun(1),
        stat_sn: p.tgt.stat_sn(),
        exp_cmd_sn: p.tgt.exp_cmd_sn(),
        max_cmd_sn: p.tgt.max_cmd_sn(),
        event: AsyncEvent::SCSI,
        data: ScsiResponse::sense_segment(&sense),
        ..AsyncMessage::default()
    };
    p.inject_to_initiator(m.clone().into());
    p.run();
    assert_eq!(p.events, vec![IniEv::Async(m.clone())]);
    assert_eq!(p.ini.exp_stat_sn(), m.stat_sn.next());

    let d = AsyncMessage {
        stat_sn: m.stat_sn.next(),
        event: AsyncEvent::DROP_CONNECTION,
        parameter2: 3,
        ..m
    };
    p.inject_to_initiator(d.into());
    p.run();
    assert_eq!(p.ini_close, Some(CloseReason::TargetDrop { time2wait: 3 }));
}

/// A target that rejects a command (a SCSI command in a discovery session): the command ends
/// with Rejected and the reason, its buffer comes back, and the session goes on.
#[test]
fn a_rejected_command_fails_with_the_reason() {
    let mut p = Pair::new(Opts::new().discovery());
    let r = p.read(0, 0, 1);
    p.run();
    assert_eq!(
        p.result(r),
        &Err(TaskError::Rejected(RejectReason::PROTOCOL_ERROR))
    );
    assert_eq!(p.buffer(r).len(), BLOCK);
    let rej = p
        .sent(Dir::ToInitiator)
        .find_map(|x| match x {
            Pdu::Reject(j) => Some(j.clone()),
            _ => None,
        })
        .expect("a Reject");
    assert_eq!(
        &rej.data[16..20],
        &r.0.to_be_bytes(),
        "it carries our header"
    );
    p.check_sequence_agreement();

    p.records = records(1);
    let now = p.instant();
    let t = p
        .ini
        .text_request(Bytes::from_static(b"SendTargets=All\0"), now)
        .expect("accepted");
    p.run();
    assert_eq!(
        p.events.last(),
        Some(&IniEv::Text(
            t,
            Some(encode_send_targets(&p.records).to_vec())
        ))
    );
}

/// A PDU that cannot be decoded ends the connection with a protocol error; the command in
/// flight is then lost (sent).
#[test]
fn an_undecodable_pdu_closes_the_connection() {
    let mut p = Pair::new(Opts::new());
    p.hold = true;
    let a = p.read(0, 0, 1);
    p.run();
    let mut raw = [0u8; 48];
    raw[0] = 0x3d; // a vendor-specific target opcode
    raw[1] = 0x80;
    raw[16..20].copy_from_slice(&[0xff; 4]);
    p.inject_raw_to_initiator(&raw);
    p.run();
    match &p.ini_close {
        Some(CloseReason::ProtocolError(m)) => assert!(m.contains("0x3d"), "{m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    p.connection_lost();
    assert_eq!(p.result(a), &Err(TaskError::ConnectionLost { sent: true }));
}

fn dropping(data_sn: u32) -> Filter {
    Box::new(move |pdu| match pdu {
        Pdu::DataIn(d) if d.data_sn.0 == data_sn => None,
        other => Some(other),
    })
}

/// A Data-In lost in the middle of a read (a DataSN gap): the read ends with a data error
/// that carries the target's status; the connection goes on.
#[test]
fn a_data_in_gap_fails_the_read() {
    let mut p = Pair::new(Opts::new().mrdsl(512, 8192));
    let data = Rng::new(10).bytes(4096);
    let w = p.write(0, 0, data.clone());
    p.run();
    p.good(w);
    p.to_initiator_filter = Some(dropping(3));
    let r = p.read(0, 0, 8);
    p.run();
    match p.result(r) {
        Err(TaskError::Data { error, status }) => {
            assert_eq!(
                error,
                &DataError::DataSn {
                    expected: 3,
                    got: 4
                }
            );
            assert!(status.is_good());
        }
        other => panic!("expected a data error, got {other:?}"),
    }
    assert_eq!(
        p.task(r).data_error,
        Some(DataError::DataSn {
            expected: 3,
            got: 4
        })
    );
    assert_eq!(p.ini_close, None);
    p.to_initiator_filter = None;
    let r2 = p.read(0, 0, 8);
    p.run();
    assert!(p.buffer(r2) == &data[..]);
    p.check_sequence_agreement();
}

/// The last Data-In lost before a separate SCSI Response: the response's ExpDataSN shows it.
#[test]
fn a_missing_last_data_in_is_caught_by_exp_data_sn() {
    let mut p = Pair::new(Opts::new().mrdsl(512, 8192));
    p.force_separate_status = true;
    p.to_initiator_filter = Some(dropping(7));
    let r = p.read(0, 0, 8);
    p.run();
    match p.result(r) {
        Err(TaskError::Data { error, status }) => {
            assert_eq!(
                error,
                &DataError::DataSn {
                    expected: 8,
                    got: 7
                }
            );
            assert!(status.is_good());
        }
        other => panic!("expected a data error, got {other:?}"),
    }
    assert_eq!(p.ini_close, None);
    p.check_sequence_agreement();
}

/// A Data-In whose offset and length reach beyond the read buffer fails the read.
#[test]
fn a_data_in_outside_the_buffer_fails_the_read() {
    let mut p = Pair::new(Opts::new().mrdsl(512, 8192));
    p.to_initiator_filter = Some(Box::new(|pdu| match pdu {
        Pdu::DataIn(mut d) if d.data_sn.0 == 1 => {
            d.buffer_offset = 4096 - 256;
            Some(Pdu::DataIn(d))
        }
        other => Some(other),
    }));
    let r = p.read(0, 0, 8);
    p.run();
    match p.result(r) {
        Err(TaskError::Data { error, .. }) => assert_eq!(
            error,
            &DataError::Range {
                offset: 3840,
                len: 512
            }
        ),
        other => panic!("expected a data error, got {other:?}"),
    }
    assert_eq!(p.ini_close, None);
    p.check_sequence_agreement();
}

/// An R2T asking for more than the write holds ends the connection with a protocol error
/// (no Data-Out goes out for it).
#[test]
fn an_r2t_beyond_the_write_buffer_closes_the_connection() {
    let mut p = Pair::new(Opts::new().burst(false, true, 65536, 262_144));
    p.to_initiator_filter = Some(Box::new(|pdu| match pdu {
        Pdu::R2t(mut r) => {
            r.desired_len += 512;
            Some(Pdu::R2t(r))
        }
        other => Some(other),
    }));
    let w = p.write(0, 0, Rng::new(12).bytes(2048));
    p.run();
    match &p.ini_close {
        Some(CloseReason::ProtocolError(m)) => assert!(m.contains("R2T"), "{m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    assert!(data_outs(&p, w).is_empty());
    p.connection_lost();
    assert_eq!(p.result(w), &Err(TaskError::ConnectionLost { sent: true }));
    assert_eq!(p.buffer(w).len(), 2048);
}

/// An R2T for a read (a task with no data-out) is a protocol error too.
#[test]
fn an_r2t_for_a_read_closes_the_connection() {
    let mut p = Pair::new(Opts::new());
    p.hold = true;
    let r = p.read(0, 0, 4);
    p.run();
    let r2t = iscsi_proto::pdu::R2t {
        lun: lun(0),
        itt: r,
        ttt: Ttt(0x99),
        stat_sn: p.tgt.stat_sn(),
        exp_cmd_sn: p.tgt.exp_cmd_sn(),
        max_cmd_sn: p.tgt.max_cmd_sn(),
        r2t_sn: iscsi_proto::R2tSn(0),
        buffer_offset: 0,
        desired_len: 512,
    };
    p.inject_to_initiator(r2t.into());
    p.run();
    assert!(matches!(p.ini_close, Some(CloseReason::ProtocolError(_))));
    assert!(p.sent(Dir::ToTarget).all(|x| !matches!(x, Pdu::DataOut(_))));
}

// =============================================================================================
// 10. Connection loss
// =============================================================================================

/// `connection_lost` completes every command not yet answered with ConnectionLost, `sent`
/// telling those on the wire (reported first, in CmdSN order) from those still queued; a
/// timed-out command is not reported again; pending requests fail.
#[test]
fn connection_lost_reports_every_command_with_its_sent_flag() {
    let mut p = Pair::new(Opts::new().depth(3));
    p.hold = true;
    let now = p.instant();
    let a = p.submit(
        Command::read(0, &read10(0, 1), 512).with_deadline(now + Duration::from_secs(5)),
        None,
    );
    let b = p.write(0, 1, Rng::new(13).bytes(BLOCK));
    let c = p.read(0, 2, 1);
    let queued = vec![
        p.tur(0),
        p.read(0, 3, 1),
        p.write(0, 4, Rng::new(14).bytes(1024)),
        p.tur(1),
    ];
    let text = p
        .ini
        .text_request(Bytes::from_static(b"SendTargets=All\0"), now)
        .expect("accepted");
    p.run();
    assert_eq!(p.held_itts(), vec![a, b, c]);
    p.advance(secs(5.0));
    assert_eq!(p.result(a), &Err(TaskError::TimedOut));
    let reset = p.ini.lu_reset(lun(0), p.instant());
    p.run();
    assert!(
        !p.events.iter().any(is_tmf_event),
        "the reset waits at the target"
    );

    let before = p.events.len();
    p.connection_lost();
    let after: Vec<IniEv> = p.events[before..].to_vec();
    let lost: Vec<Itt> = after
        .iter()
        .filter_map(|e| match e {
            IniEv::Complete(i) => Some(*i),
            _ => None,
        })
        .collect();
    assert_eq!(lost.len(), 2 + queued.len(), "{after:?}");
    assert_eq!(&lost[..2], &[b, c], "sent ones first, in CmdSN order");
    let mut rest = lost[2..].to_vec();
    rest.sort_by_key(|i| i.0);
    let mut q = queued.clone();
    q.sort_by_key(|i| i.0);
    assert_eq!(rest, q);
    for itt in [b, c] {
        assert_eq!(
            p.result(itt),
            &Err(TaskError::ConnectionLost { sent: true })
        );
    }
    for itt in &queued {
        assert_eq!(
            p.result(*itt),
            &Err(TaskError::ConnectionLost { sent: false })
        );
    }
    assert_eq!(p.completions().iter().filter(|i| **i == a).count(), 1);
    assert!(after.contains(&IniEv::Tmf(reset, TmfResponse::REJECTED)));
    assert!(after.contains(&IniEv::Text(text, None)));
    for t in p.tasks.values() {
        assert!(!t.at_mover, "every buffer is back");
    }
    assert_eq!(
        p.try_submit(Command::new(0, &[0; 6]), None),
        Err(SubmitError::Closing)
    );
    assert_eq!(p.ini.task_count(), 0);
}

/// The commands still queued are reported in the order they were submitted (what the code
/// says it does), so that an engine can resubmit them in order.
#[test]
fn connection_lost_reports_queued_commands_in_submission_order() {
    let mut p = Pair::new(Opts::new().depth(1));
    p.hold = true;
    let first = p.tur(0);
    let queued: Vec<Itt> = (0..8).map(|_| p.tur(0)).collect();
    p.run();
    p.connection_lost();
    let lost = p.completions();
    assert_eq!(lost[0], first);
    assert_eq!(&lost[1..], &queued[..]);
}

// =============================================================================================
// 11. Random mixes
// =============================================================================================

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random mixes of writes, reads and TEST UNIT READY under a random negotiation, queue
    /// depth, split points and completion order, with sequence numbers around 2^32: every
    /// command completes GOOD, the target receives exactly the data-out given and the
    /// initiator exactly what the store held when the read ran, the store ends as the writes
    /// applied in execution order, CmdSNs are consecutive and within the window, and both
    /// sides agree on every sequence number at the end.
    #[test]
    fn random_command_mixes_keep_data_and_sequence_numbers(
        combo in 0..COMBOS.len(),
        seed in any::<u64>(),
        ops in prop::collection::vec((0u8..4, 0u32..96, 1u16..=20), 1..24),
        hold in any::<bool>(),
        depth in 1u32..10,
        sn_offset in 0u32..64,
        separate in any::<bool>(),
    ) {
        let mut o = opts(&COMBOS[combo]).depth(depth).split(seed);
        o.first_cmd_sn = u32::MAX - sn_offset;
        o.first_stat_sn = u32::MAX - sn_offset / 2;
        let mut p = Pair::new(o);
        let mut rng = Rng::new(seed);
        p.disks[0] = rng.bytes(DISK_BLOCKS as usize * BLOCK);
        let initial = p.disks[0].clone();
        p.hold = hold;
        p.force_separate_status = separate;
        let mut itts = Vec::new();
        for (kind, slot, blocks) in ops {
            let lba = slot * 20;
            let itt = match kind {
                0 | 1 => p.write(0, lba, rng.bytes(usize::from(blocks) * BLOCK)),
                2 => p.read(0, lba, blocks),
                _ => p.tur(0),
            };
            itts.push(itt);
            if rng.below(3) == 0 {
                p.run();
            }
        }
        p.run();
        while !p.all_done() {
            let mut held = p.held_itts();
            prop_assert!(!held.is_empty(), "stuck with nothing held");
            rng.shuffle(&mut held);
            p.release(held[0]);
        }
        for itt in &itts {
            p.good(*itt);
        }
        p.check_reads();
        p.check_wire();
        p.check_sequence_agreement();
        prop_assert_eq!(p.ini.task_count(), 0);
        prop_assert_eq!(p.tgt.task_count(), 0);
        let mut model = initial;
        for itt in &p.executed {
            let t = p.task(*itt);
            if let Some(d) = &t.data {
                let c = t.cmd.cdb.head();
                let lba = u32::from_be_bytes([c[2], c[3], c[4], c[5]]) as usize;
                model[lba * BLOCK..lba * BLOCK + d.len()].copy_from_slice(d);
            }
        }
        prop_assert!(model == p.disks[0], "the store holds the writes in execution order");
        let sent = commands_on_wire(&p);
        prop_assert_eq!(sent.iter().map(|x| x.0).collect::<Vec<_>>(), itts);
    }
}

// =============================================================================================
// The harness's own checks can fail
// =============================================================================================

/// A data segment above the target's MaxRecvDataSegmentLength is caught on the wire.
#[test]
#[should_panic(expected = "above the target's MaxRecvDataSegmentLength")]
fn harness_catches_an_oversized_segment() {
    let mut p = Pair::new(Opts::new().mrdsl(8192, 512));
    p.to_target_filter = Some(Box::new(|pdu| match pdu {
        Pdu::ScsiCommand(mut c) if c.write => {
            c.data = Bytes::from(vec![0u8; 1024]);
            Some(Pdu::ScsiCommand(c))
        }
        other => Some(other),
    }));
    p.write(0, 0, vec![1u8; 2048]);
    p.run();
}

/// A stale or skipped CmdSN or ExpStatSN is caught on the wire.
#[test]
#[should_panic(expected = "ExpStatSN")]
fn harness_catches_a_stale_exp_stat_sn() {
    let mut p = Pair::new(Opts::new());
    let t = p.tur(0);
    p.run();
    p.good(t);
    p.to_target_filter = Some(Box::new(|pdu| match pdu {
        Pdu::ScsiCommand(mut c) => {
            c.exp_stat_sn = c.exp_stat_sn.sub(1);
            Some(Pdu::ScsiCommand(c))
        }
        other => Some(other),
    }));
    p.tur(0);
    p.run();
}

/// A CmdSN that skips one is caught on the wire.
#[test]
#[should_panic(expected = "expected the next one")]
fn harness_catches_a_cmd_sn_gap() {
    let mut p = Pair::new(Opts::new());
    p.to_target_filter = Some(Box::new(|pdu| match pdu {
        Pdu::ScsiCommand(mut c) => {
            c.cmd_sn = c.cmd_sn.next();
            Some(Pdu::ScsiCommand(c))
        }
        other => Some(other),
    }));
    p.tur(0);
    p.run();
}

/// Data-out corrupted on its way is caught by the store.
#[test]
#[should_panic(expected = "other data-out than the initiator was given")]
fn harness_catches_corrupted_data_out() {
    let mut p = Pair::new(opts(&COMBOS[3]));
    p.to_target_filter = Some(Box::new(|pdu| match pdu {
        Pdu::DataOut(mut d) if d.buffer_offset == 1024 => {
            let mut v = d.data.to_vec();
            v[7] ^= 1;
            d.data = v.into();
            Some(Pdu::DataOut(d))
        }
        other => Some(other),
    }));
    p.write(0, 0, Rng::new(15).bytes(4096));
    p.run();
}
