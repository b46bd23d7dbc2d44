//! Logical-unit tests through the public API: block commands, residuals, unit attentions,
//! medium state and the bad-input answers libiscsi's test suite probes.

use std::sync::Arc;

use scsi_core::{
    Asc, ItNexus, Sense, SenseKey, Status,
    backend::{BlockBackend, RamBackend},
    cdb::{Cdb, CdbSize, Rw},
    lu::{Completion, LogicalUnit, LuConfig, ResetKind, Residual},
};

const BS: usize = 512;
const BLOCKS: u64 = 2048;

struct Harness {
    lu: Arc<LogicalUnit<RamBackend>>,
    a: ItNexus,
    b: ItNexus,
}

impl Harness {
    /// A 1 MiB unit whose power-on unit attentions are already cleared for `a` and `b`.
    async fn new() -> Self {
        Self::with(LuConfig::new("lu-test")).await
    }

    async fn with(cfg: LuConfig) -> Self {
        let lu = LogicalUnit::new(cfg, RamBackend::new(BLOCKS * BS as u64)).unwrap();
        let h = Self {
            lu: Arc::new(lu),
            a: ItNexus::iscsi("iqn.2026-11.test:a", [0x80, 0, 0, 0, 0, 1], 1),
            b: ItNexus::iscsi("iqn.2026-11.test:b", [0x80, 0, 0, 0, 0, 2], 1),
        };
        for n in [h.a.clone(), h.b.clone()] {
            let c = h.run(&n, Cdb::TestUnitReady, vec![]).await;
            assert_ua(&c, Asc::POWER_ON_RESET);
            expect_good(&h.run(&n, Cdb::TestUnitReady, vec![]).await);
        }
        h
    }

    async fn run(&self, n: &ItNexus, cdb: Cdb, buf: Vec<u8>) -> Completion<Vec<u8>> {
        self.lu.execute(n, cdb.encode().as_slice(), buf).await
    }

    async fn raw(&self, cdb: &[u8], buf: Vec<u8>) -> Completion<Vec<u8>> {
        self.lu.execute(&self.a, cdb, buf).await
    }

    async fn write(&self, lba: u64, data: Vec<u8>) -> Completion<Vec<u8>> {
        let blocks = (data.len() / BS) as u32;
        self.run(&self.a, Cdb::Write(Rw::new(lba, blocks)), data)
            .await
    }

    async fn read(&self, lba: u64, blocks: u32) -> Vec<u8> {
        let c = self
            .run(
                &self.a,
                Cdb::Read(Rw::new(lba, blocks)),
                vec![0; blocks as usize * BS],
            )
            .await;
        expect_good(&c);
        c.data().to_vec()
    }
}

#[track_caller]
fn expect_good(c: &Completion<Vec<u8>>) {
    assert_eq!(c.status, Status::GOOD, "sense {:?}", c.sense);
}

#[track_caller]
fn expect_sense(c: &Completion<Vec<u8>>, key: SenseKey, asc: Asc) -> Sense {
    assert_eq!(c.status, Status::CHECK_CONDITION, "expected {asc}");
    let s = c.sense.expect("sense data");
    assert_eq!((s.key, s.asc), (key, asc), "got {s}");
    assert_eq!(c.data_len, 0);
    s
}

#[track_caller]
fn assert_ua(c: &Completion<Vec<u8>>, asc: Asc) {
    expect_sense(c, SenseKey::UNIT_ATTENTION, asc);
}

fn pattern(blocks: usize, seed: u8) -> Vec<u8> {
    (0..blocks * BS)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn rw(size: CdbSize, lba: u64, blocks: u32) -> Rw {
    Rw {
        size,
        ..Rw::new(lba, blocks)
    }
}

#[tokio::test]
async fn write_then_read_every_cdb_size() {
    let h = Harness::new().await;
    for (i, size) in [
        CdbSize::Six,
        CdbSize::Ten,
        CdbSize::Twelve,
        CdbSize::Sixteen,
    ]
    .into_iter()
    .enumerate()
    {
        let data = pattern(3, i as u8);
        let lba = 10 + 5 * i as u64;
        let c = h
            .run(&h.a, Cdb::Write(rw(size, lba, 3)), data.clone())
            .await;
        expect_good(&c);
        assert_eq!(c.residual(3 * BS as u64), Residual::None);
        let c = h
            .run(&h.a, Cdb::Read(rw(size, lba, 3)), vec![0; 3 * BS])
            .await;
        expect_good(&c);
        assert_eq!(c.data(), &data[..]);
    }
    // READ(6) with 0 blocks transfers 256 blocks.
    let c = h
        .run(&h.a, Cdb::Read(rw(CdbSize::Six, 0, 256)), vec![0; 256 * BS])
        .await;
    expect_good(&c);
    assert_eq!(c.data_len, 256 * BS);
    assert_eq!(
        h.raw(&[0x08, 0, 0, 0, 0, 0], vec![0; 256 * BS])
            .await
            .data_len,
        256 * BS
    );
}

#[tokio::test]
async fn read_residuals_follow_the_expected_length() {
    let h = Harness::new().await;
    h.write(0, pattern(1, 7)).await;
    // Expected length 0: nothing moves, overflow of one block.
    let c = h.run(&h.a, Cdb::Read(Rw::new(0, 1)), vec![]).await;
    expect_good(&c);
    assert_eq!(c.residual(0), Residual::Overflow(BS as u64));
    // 10000: one block, underflow of the rest.
    let c = h.run(&h.a, Cdb::Read(Rw::new(0, 1)), vec![0; 10000]).await;
    expect_good(&c);
    assert_eq!(c.data_len, BS);
    assert_eq!(c.residual(10000), Residual::Underflow(10000 - BS as u64));
    // 200: the first 200 bytes, overflow of the rest.
    let c = h.run(&h.a, Cdb::Read(Rw::new(0, 1)), vec![0; 200]).await;
    expect_good(&c);
    assert_eq!(c.data(), &pattern(1, 7)[..200]);
    assert_eq!(c.residual(200), Residual::Overflow(BS as u64 - 200));
}

#[tokio::test]
async fn write_residuals_never_write_past_the_expected_length() {
    let h = Harness::new().await;
    h.write(0, vec![b'a'; 2 * BS]).await;
    // Expected length shorter than the CDB's: GOOD, exactly the bytes received are written
    // (a partial block included), nothing past them; the overflow is reported.
    for short in [0, 200, BS, BS + 100] {
        h.write(0, vec![b'a'; 2 * BS]).await;
        let c = h
            .run(&h.a, Cdb::Write(Rw::new(0, 2)), vec![b'b'; short])
            .await;
        expect_good(&c);
        assert_eq!(
            c.residual(short as u64),
            Residual::Overflow((2 * BS - short) as u64)
        );
        let got = h.read(0, 2).await;
        assert!(got[..short].iter().all(|&x| x == b'b'), "short {short}");
        assert!(got[short..].iter().all(|&x| x == b'a'), "short {short}");
    }
    // Expected length longer: the CDB's length is written, underflow reported.
    h.write(0, vec![b'a'; 2 * BS]).await;
    let c = h
        .run(&h.a, Cdb::Write(Rw::new(0, 1)), vec![b'b'; 2 * BS])
        .await;
    expect_good(&c);
    assert_eq!(c.residual(2 * BS as u64), Residual::Underflow(BS as u64));
    let got = h.read(0, 2).await;
    assert_eq!(&got[..BS], &[b'b'; BS][..]);
    assert_eq!(&got[BS..], &[b'a'; BS][..]);
}

#[tokio::test]
async fn out_of_range_and_zero_length() {
    let h = Harness::new().await;
    let oob = |c: &Completion<Vec<u8>>| {
        expect_sense(c, SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    };
    for blocks in [1u32, 2, 256] {
        let lba = BLOCKS + 1 - u64::from(blocks);
        oob(&h
            .run(
                &h.a,
                Cdb::Read(Rw::new(lba, blocks)),
                vec![0; blocks as usize * BS],
            )
            .await);
        oob(&h
            .run(
                &h.a,
                Cdb::Write(Rw::new(lba, blocks)),
                vec![0; blocks as usize * BS],
            )
            .await);
        oob(&h
            .run(
                &h.a,
                Cdb::Read(rw(CdbSize::Sixteen, u64::MAX, blocks)),
                vec![0; BS],
            )
            .await);
        oob(&h
            .run(
                &h.a,
                Cdb::Read(rw(CdbSize::Ten, 0x8000_0000, blocks)),
                vec![0; BS],
            )
            .await);
    }
    // Zero blocks: fine inside, out of range past the end.
    expect_good(&h.run(&h.a, Cdb::Write(Rw::new(0, 0)), vec![]).await);
    expect_good(&h.run(&h.a, Cdb::Read(Rw::new(BLOCKS, 0)), vec![]).await);
    oob(&h.run(&h.a, Cdb::Read(Rw::new(BLOCKS + 1, 0)), vec![]).await);
    oob(&h
        .run(
            &h.a,
            Cdb::Verify {
                rw: Rw::new(BLOCKS + 1, 0),
                bytchk: 0,
            },
            vec![],
        )
        .await);
    oob(&h
        .run(
            &h.a,
            Cdb::SynchronizeCache {
                size: CdbSize::Ten,
                lba: BLOCKS,
                blocks: 1,
                immed: false,
            },
            vec![],
        )
        .await);
    oob(&h
        .run(
            &h.a,
            Cdb::PreFetch {
                size: CdbSize::Sixteen,
                lba: BLOCKS - 1,
                blocks: 2,
                immed: false,
            },
            vec![],
        )
        .await);
    expect_good(
        &h.run(
            &h.a,
            Cdb::PreFetch {
                size: CdbSize::Ten,
                lba: BLOCKS - 1,
                blocks: 1,
                immed: false,
            },
            vec![],
        )
        .await,
    );
    expect_good(
        &h.run(
            &h.a,
            Cdb::SynchronizeCache {
                size: CdbSize::Sixteen,
                lba: 0,
                blocks: 0,
                immed: true,
            },
            vec![],
        )
        .await,
    );
}

#[tokio::test]
async fn protection_fields_and_transfer_limits_are_invalid_fields() {
    let h = Harness::new().await;
    for p in 1..8 {
        let c = h
            .run(
                &h.a,
                Cdb::Write(Rw {
                    protect: p,
                    ..Rw::new(0, 1)
                }),
                vec![0; BS],
            )
            .await;
        expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
        let c = h
            .run(
                &h.a,
                Cdb::Read(Rw {
                    protect: p,
                    ..Rw::new(0, 1)
                }),
                vec![0; BS],
            )
            .await;
        expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
        let c = h
            .run(
                &h.a,
                Cdb::Verify {
                    rw: Rw {
                        protect: p,
                        ..Rw::new(0, 1)
                    },
                    bytchk: 0,
                },
                vec![],
            )
            .await;
        expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
    }
    // DPO and FUA are accepted.
    let c = h
        .run(
            &h.a,
            Cdb::Write(Rw {
                dpo: true,
                fua: true,
                ..Rw::new(0, 1)
            }),
            vec![1; BS],
        )
        .await;
    expect_good(&c);
    // Longer than MAXIMUM TRANSFER LENGTH.
    let mut cfg = LuConfig::new("small-max");
    cfg.max_transfer_blocks = 8;
    let h = Harness::with(cfg).await;
    let c = h.run(&h.a, Cdb::Read(Rw::new(0, 9)), vec![0; 9 * BS]).await;
    let s = expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
    assert!(s.specific.is_some(), "field pointer expected");
}

#[tokio::test]
async fn verify_compares_and_reports_the_first_difference() {
    let h = Harness::new().await;
    let data = pattern(4, 3);
    h.write(100, data.clone()).await;
    let v = |bytchk| Cdb::Verify {
        rw: Rw::new(100, 4),
        bytchk,
    };
    expect_good(&h.run(&h.a, v(0), vec![]).await);
    expect_good(&h.run(&h.a, v(1), data.clone()).await);
    let mut bad = data.clone();
    bad[3 * BS + 17] ^= 1;
    let s = expect_sense(
        &h.run(&h.a, v(1), bad).await,
        SenseKey::MISCOMPARE,
        Asc::MISCOMPARE_DURING_VERIFY,
    );
    assert_eq!(s.information, Some(3 * BS as u64 + 17));
    expect_sense(
        &h.run(&h.a, v(2), data.clone()).await,
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_CDB,
    );
    // BYTCHK 3: one block compared with each block of the range.
    h.write(200, [vec![9; BS], vec![9; BS]].concat()).await;
    expect_good(
        &h.run(
            &h.a,
            Cdb::Verify {
                rw: Rw::new(200, 2),
                bytchk: 3,
            },
            vec![9; BS],
        )
        .await,
    );
    let c = h
        .run(
            &h.a,
            Cdb::Verify {
                rw: Rw::new(199, 2),
                bytchk: 3,
            },
            vec![9; BS],
        )
        .await;
    expect_sense(&c, SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY);
}

#[tokio::test]
async fn write_and_verify_writes() {
    let h = Harness::new().await;
    let data = pattern(2, 9);
    for bytchk in [0, 1] {
        let c = h
            .run(
                &h.a,
                Cdb::WriteAndVerify {
                    rw: Rw::new(7, 2),
                    bytchk,
                },
                data.clone(),
            )
            .await;
        expect_good(&c);
        assert_eq!(h.read(7, 2).await, data);
    }
}

#[tokio::test]
async fn compare_and_write() {
    let h = Harness::new().await;
    let old = pattern(2, 1);
    let new = pattern(2, 2);
    h.write(50, old.clone()).await;
    let caw = |blocks| Cdb::CompareAndWrite {
        rw: Rw::new(50, blocks),
    };
    // Miscompare: nothing written, INFORMATION is the offset of the first difference.
    let mut wrong = old.clone();
    wrong[700] ^= 0xFF;
    let c = h.run(&h.a, caw(2), [wrong, new.clone()].concat()).await;
    let s = expect_sense(&c, SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY);
    assert_eq!(s.information, Some(700));
    assert_eq!(h.read(50, 2).await, old);
    // Match: written.
    expect_good(
        &h.run(&h.a, caw(2), [old.clone(), new.clone()].concat())
            .await,
    );
    assert_eq!(h.read(50, 2).await, new);
    // Wrong data-out sizes are refused and write nothing.
    for len in [2 * BS, 3 * BS, 5 * BS] {
        let c = h.run(&h.a, caw(2), vec![0; len]).await;
        assert_eq!(c.status, Status::CHECK_CONDITION);
        assert_eq!(h.read(50, 2).await, new);
    }
    // More blocks than MAXIMUM COMPARE AND WRITE LENGTH.
    let mut cfg = LuConfig::new("caw");
    cfg.max_compare_and_write_blocks = 1;
    let h = Harness::with(cfg).await;
    let c = h.run(&h.a, caw(2), vec![0; 4 * BS]).await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
}

/// Many tasks increment one counter block with COMPARE AND WRITE; every success must count.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn compare_and_write_is_atomic_against_concurrent_writers() {
    let h = Arc::new(Harness::new().await);
    let block = |v: u64| {
        let mut b = vec![0u8; BS];
        b[..8].copy_from_slice(&v.to_le_bytes());
        b
    };
    h.write(9, block(0)).await;
    let mut tasks = Vec::new();
    for t in 0..8u64 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            let mut noise = 0u8;
            while done < 50 {
                // Plain writes to a neighbouring block run at the same time.
                h.write(10 + t, vec![noise; BS]).await;
                noise = noise.wrapping_add(1);
                let cur = h.read(9, 1).await;
                let v = u64::from_le_bytes(cur[..8].try_into().unwrap());
                let c = h
                    .run(
                        &h.a,
                        Cdb::CompareAndWrite { rw: Rw::new(9, 1) },
                        [cur, block(v + 1)].concat(),
                    )
                    .await;
                if c.status == Status::GOOD {
                    done += 1;
                } else {
                    expect_sense(&c, SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let end = h.read(9, 1).await;
    assert_eq!(u64::from_le_bytes(end[..8].try_into().unwrap()), 8 * 50);
}

#[tokio::test]
async fn orwrite_ors_into_the_medium() {
    let h = Harness::new().await;
    h.write(3, vec![0x0F; BS]).await;
    let c = h
        .run(&h.a, Cdb::OrWrite(Rw::new(3, 1)), vec![0xF0; BS])
        .await;
    expect_good(&c);
    assert_eq!(h.read(3, 1).await, vec![0xFF; BS]);
    expect_good(&h.run(&h.a, Cdb::OrWrite(Rw::new(3, 0)), vec![]).await);
    let c = h
        .run(&h.a, Cdb::OrWrite(Rw::new(BLOCKS, 1)), vec![0; BS])
        .await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
}

#[tokio::test]
async fn write_atomic() {
    let h = Harness::new().await;
    let data = pattern(4, 5);
    let c = h
        .run(
            &h.a,
            Cdb::WriteAtomic {
                rw: Rw::new(20, 4),
                boundary: 0,
            },
            data.clone(),
        )
        .await;
    expect_good(&c);
    assert_eq!(h.read(20, 4).await, data);
    let too_many = h.lu.config().max_atomic_blocks + 1;
    let c = h
        .run(
            &h.a,
            Cdb::WriteAtomic {
                rw: Rw::new(0, too_many),
                boundary: 0,
            },
            vec![0; too_many as usize * BS],
        )
        .await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
    let c = h
        .run(
            &h.a,
            Cdb::WriteAtomic {
                rw: Rw::new(0, 1),
                boundary: 1,
            },
            vec![0; BS],
        )
        .await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
}

fn ws(size: CdbSize, lba: u64, blocks: u32, unmap: bool, anchor: bool) -> Cdb {
    Cdb::WriteSame {
        rw: rw(size, lba, blocks),
        unmap,
        anchor,
        ndob: false,
    }
}

#[tokio::test]
async fn write_same_fills_unmaps_and_checks() {
    let h = Harness::new().await;
    let block: Vec<u8> = (0..BS).map(|i| i as u8).collect();
    expect_good(
        &h.run(&h.a, ws(CdbSize::Ten, 30, 5, false, false), block.clone())
            .await,
    );
    assert_eq!(h.read(30, 5).await, block.repeat(5));
    // UNMAP with zeros deallocates; reads return zeros.
    let c = h
        .run(&h.a, ws(CdbSize::Sixteen, 30, 5, true, false), vec![0; BS])
        .await;
    expect_good(&c);
    assert_eq!(h.read(30, 5).await, vec![0; 5 * BS]);
    // UNMAP deallocates whatever the data (the backend's discards read as zeros); without
    // UNMAP the data is written.
    expect_good(
        &h.run(
            &h.a,
            ws(CdbSize::Sixteen, 30, 2, true, false),
            block.clone(),
        )
        .await,
    );
    assert_eq!(h.read(30, 2).await, vec![0; 2 * BS]);
    expect_good(
        &h.run(
            &h.a,
            ws(CdbSize::Sixteen, 30, 2, false, false),
            block.clone(),
        )
        .await,
    );
    assert_eq!(h.read(30, 2).await, block.repeat(2));
    // NDOB writes zeros.
    let c = h
        .run(
            &h.a,
            Cdb::WriteSame {
                rw: rw(CdbSize::Sixteen, 30, 2),
                unmap: true,
                anchor: false,
                ndob: true,
            },
            vec![],
        )
        .await;
    expect_good(&c);
    assert_eq!(h.read(30, 2).await, vec![0; 2 * BS]);
    // ANCHOR is not supported.
    for unmap in [false, true] {
        let c = h
            .run(&h.a, ws(CdbSize::Ten, 0, 1, unmap, true), vec![0; BS])
            .await;
        expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
    }
    // Data-out must be exactly one block.
    for len in [BS - 1, BS + 1, 2 * BS] {
        let c = h
            .run(&h.a, ws(CdbSize::Ten, 0, 1, false, false), vec![0; len])
            .await;
        assert_eq!(c.status, Status::CHECK_CONDITION, "data-out of {len}");
    }
    // Zero blocks = to the end of the medium.
    let c = h
        .run(
            &h.a,
            ws(CdbSize::Ten, BLOCKS - 3, 0, false, false),
            vec![0xAB; BS],
        )
        .await;
    expect_good(&c);
    assert_eq!(h.read(BLOCKS - 3, 3).await, vec![0xAB; 3 * BS]);
    let c = h
        .run(
            &h.a,
            ws(CdbSize::Ten, BLOCKS + 1, 0, false, false),
            vec![0; BS],
        )
        .await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    // Longer than MAXIMUM WRITE SAME LENGTH.
    let mut cfg = LuConfig::new("ws");
    cfg.max_write_same_blocks = 16;
    let h = Harness::with(cfg).await;
    let c = h
        .run(&h.a, ws(CdbSize::Ten, 0, 17, false, false), vec![0; BS])
        .await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
    let c = h
        .run(&h.a, ws(CdbSize::Ten, 0, 0, false, false), vec![0; BS])
        .await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
}

fn unmap_list(ranges: &[(u64, u32)]) -> Vec<u8> {
    let mut v = vec![0u8; 8];
    for &(lba, n) in ranges {
        v.extend_from_slice(&lba.to_be_bytes());
        v.extend_from_slice(&n.to_be_bytes());
        v.extend_from_slice(&[0; 4]);
    }
    let d = (v.len() - 8) as u16;
    v[0..2].copy_from_slice(&(d + 6).to_be_bytes());
    v[2..4].copy_from_slice(&d.to_be_bytes());
    v
}

#[tokio::test]
async fn unmap_deallocates_and_checks_its_list() {
    let h = Harness::new().await;
    h.write(0, vec![7; 64 * BS]).await;
    let list = unmap_list(&[(0, 8), (40, 4)]);
    let c = h
        .run(
            &h.a,
            Cdb::Unmap {
                anchor: false,
                group: 0,
                param_len: list.len() as u16,
            },
            list,
        )
        .await;
    expect_good(&c);
    let got = h.read(0, 64).await;
    assert!(got[..8 * BS].iter().all(|&b| b == 0));
    assert!(got[8 * BS..40 * BS].iter().all(|&b| b == 7));
    assert!(got[40 * BS..44 * BS].iter().all(|&b| b == 0));
    // Empty list and zero-length descriptors are fine.
    expect_good(
        &h.run(
            &h.a,
            Cdb::Unmap {
                anchor: false,
                group: 0,
                param_len: 0,
            },
            vec![],
        )
        .await,
    );
    let l = unmap_list(&[(5, 0)]);
    expect_good(
        &h.run(
            &h.a,
            Cdb::Unmap {
                anchor: false,
                group: 0,
                param_len: l.len() as u16,
            },
            l,
        )
        .await,
    );
    // Past the end.
    let l = unmap_list(&[(BLOCKS - 1, 2)]);
    let c = h
        .run(
            &h.a,
            Cdb::Unmap {
                anchor: false,
                group: 0,
                param_len: l.len() as u16,
            },
            l,
        )
        .await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    // A parameter list length of 1..7.
    let c = h
        .run(
            &h.a,
            Cdb::Unmap {
                anchor: false,
                group: 0,
                param_len: 4,
            },
            vec![0; 4],
        )
        .await;
    expect_sense(
        &c,
        SenseKey::ILLEGAL_REQUEST,
        Asc::PARAMETER_LIST_LENGTH_ERROR,
    );
    // Too many descriptors.
    let many: Vec<(u64, u32)> = (0..=h.lu.config().max_unmap_descriptors as u64)
        .map(|i| (i, 1))
        .collect();
    let l = unmap_list(&many);
    let c = h
        .run(
            &h.a,
            Cdb::Unmap {
                anchor: false,
                group: 0,
                param_len: l.len() as u16,
            },
            l,
        )
        .await;
    expect_sense(
        &c,
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    // ANCHOR.
    let l = unmap_list(&[(0, 1)]);
    let c = h
        .run(
            &h.a,
            Cdb::Unmap {
                anchor: true,
                group: 0,
                param_len: l.len() as u16,
            },
            l,
        )
        .await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
}

#[tokio::test]
async fn read_only_unit_refuses_every_write() {
    let mut cfg = LuConfig::new("ro");
    cfg.read_only = true;
    let h = Harness::with(cfg).await;
    let l = unmap_list(&[(0, 1)]);
    let writes = [
        (Cdb::Write(Rw::new(0, 1)), vec![0; BS]),
        (
            Cdb::WriteAndVerify {
                rw: Rw::new(0, 1),
                bytchk: 0,
            },
            vec![0; BS],
        ),
        (Cdb::OrWrite(Rw::new(0, 1)), vec![0; BS]),
        (Cdb::CompareAndWrite { rw: Rw::new(0, 1) }, vec![0; 2 * BS]),
        (
            Cdb::WriteAtomic {
                rw: Rw::new(0, 1),
                boundary: 0,
            },
            vec![0; BS],
        ),
        (ws(CdbSize::Ten, 0, 1, false, false), vec![0; BS]),
        (ws(CdbSize::Sixteen, 0, 1, true, false), vec![0; BS]),
        (
            Cdb::Unmap {
                anchor: false,
                group: 0,
                param_len: l.len() as u16,
            },
            l,
        ),
    ];
    for (cdb, data) in writes {
        let c = h.run(&h.a, cdb, data).await;
        expect_sense(&c, SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED);
    }
    expect_good(&h.run(&h.a, Cdb::Read(Rw::new(0, 1)), vec![0; BS]).await);
}

#[tokio::test]
async fn read_capacity() {
    let h = Harness::new().await;
    let c = h
        .run(&h.a, Cdb::ReadCapacity10 { lba: 0, pmi: false }, vec![0; 8])
        .await;
    expect_good(&c);
    assert_eq!(c.data(), &[0, 0, 0x07, 0xFF, 0, 0, 0x02, 0x00]);
    let c = h
        .run(&h.a, Cdb::ReadCapacity10 { lba: 1, pmi: false }, vec![0; 8])
        .await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
    let c = h
        .run(
            &h.a,
            Cdb::ReadCapacity16 {
                lba: 0,
                pmi: false,
                alloc_len: 32,
            },
            vec![0; 32],
        )
        .await;
    expect_good(&c);
    let d = c.data();
    assert_eq!(u64::from_be_bytes(d[..8].try_into().unwrap()), BLOCKS - 1);
    assert_eq!(u32::from_be_bytes(d[8..12].try_into().unwrap()), BS as u32);
    assert_eq!(d[14] & 0x80, 0x80, "LBPME");
    // Allocation length truncates; the residual counts from what the unit would send.
    let c = h
        .run(
            &h.a,
            Cdb::ReadCapacity16 {
                lba: 0,
                pmi: false,
                alloc_len: 12,
            },
            vec![0; 64],
        )
        .await;
    assert_eq!(c.data_len, 12);
    assert_eq!(c.residual(64), Residual::Underflow(52));
}

#[tokio::test]
async fn get_lba_status_reports_mapped_and_deallocated_runs() {
    let h = Harness::new().await;
    let c = h
        .run(
            &h.a,
            Cdb::GetLbaStatus {
                lba: BLOCKS,
                alloc_len: 24,
            },
            vec![0; 24],
        )
        .await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::LBA_OUT_OF_RANGE);
    let c = h
        .run(
            &h.a,
            Cdb::GetLbaStatus {
                lba: BLOCKS - 1,
                alloc_len: 24,
            },
            vec![0; 24],
        )
        .await;
    expect_good(&c);
    let d = c.data();
    assert_eq!(u32::from_be_bytes(d[..4].try_into().unwrap()), 20);
    assert_eq!(u64::from_be_bytes(d[8..16].try_into().unwrap()), BLOCKS - 1);
    assert_eq!(u32::from_be_bytes(d[16..20].try_into().unwrap()), 1);
    // After writes and an unmap, the descriptors cover the range from the LBA asked for and
    // a deallocated run reads as deallocated.
    h.write(0, vec![1; 512 * BS]).await;
    let l = unmap_list(&[(0, 512)]);
    expect_good(
        &h.run(
            &h.a,
            Cdb::Unmap {
                anchor: false,
                group: 0,
                param_len: l.len() as u16,
            },
            l,
        )
        .await,
    );
    let c = h
        .run(
            &h.a,
            Cdb::GetLbaStatus {
                lba: 0,
                alloc_len: 1024,
            },
            vec![0; 1024],
        )
        .await;
    expect_good(&c);
    let d = c.data();
    assert_eq!(u64::from_be_bytes(d[8..16].try_into().unwrap()), 0);
    if h.lu.backend().provisioning().thin {
        assert_eq!(d[20] & 0x0F, 1, "first run deallocated");
    }
    let total: u64 = d[8..]
        .chunks_exact(16)
        .map(|x| u64::from(u32::from_be_bytes(x[8..12].try_into().unwrap())))
        .sum();
    assert!(total <= BLOCKS);
}

#[tokio::test]
async fn request_sense_returns_and_clears_unit_attentions() {
    let h = Harness::new().await;
    h.lu.reset(ResetKind::LogicalUnit);
    let c = h
        .run(
            &h.a,
            Cdb::RequestSense {
                desc: false,
                alloc_len: 252,
            },
            vec![0; 252],
        )
        .await;
    expect_good(&c);
    let s = Sense::parse(c.data()).unwrap();
    assert_eq!(
        (s.key, s.asc),
        (SenseKey::UNIT_ATTENTION, Asc::BUS_DEVICE_RESET_OCCURRED)
    );
    let c = h
        .run(
            &h.a,
            Cdb::RequestSense {
                desc: true,
                alloc_len: 252,
            },
            vec![0; 252],
        )
        .await;
    assert_eq!(c.data()[0], 0x72);
    assert_eq!(Sense::parse(c.data()).unwrap().key, SenseKey::NO_SENSE);
    // b still has its attention; INQUIRY does not clear it, TEST UNIT READY reports it.
    expect_good(
        &h.run(
            &h.b,
            Cdb::Inquiry {
                evpd: false,
                cmddt: false,
                page: 0,
                alloc_len: 96,
            },
            vec![0; 96],
        )
        .await,
    );
    assert_ua(
        &h.run(&h.b, Cdb::TestUnitReady, vec![]).await,
        Asc::BUS_DEVICE_RESET_OCCURRED,
    );
    expect_good(&h.run(&h.b, Cdb::TestUnitReady, vec![]).await);
}

#[tokio::test]
async fn nexus_loss_and_resets_raise_their_attentions() {
    let h = Harness::new().await;
    h.lu.nexus_lost(&h.a);
    assert_ua(
        &h.run(&h.a, Cdb::TestUnitReady, vec![]).await,
        Asc::IT_NEXUS_LOSS,
    );
    expect_good(&h.run(&h.b, Cdb::TestUnitReady, vec![]).await);
    h.lu.reset(ResetKind::TargetCold);
    assert_ua(
        &h.run(&h.b, Cdb::TestUnitReady, vec![]).await,
        Asc::POWER_ON_OCCURRED,
    );
    h.lu.unit_attention(Asc::REPORTED_LUNS_CHANGED);
    assert_ua(
        &h.run(&h.a, Cdb::TestUnitReady, vec![]).await,
        Asc::POWER_ON_OCCURRED,
    );
    assert_ua(
        &h.run(&h.a, Cdb::TestUnitReady, vec![]).await,
        Asc::REPORTED_LUNS_CHANGED,
    );
    expect_good(&h.run(&h.a, Cdb::TestUnitReady, vec![]).await);
}

#[tokio::test]
async fn removable_medium_eject_load_and_prevent() {
    let mut cfg = LuConfig::new("rmb");
    cfg.removable = true;
    let h = Harness::with(cfg).await;
    let ssu = |loej, start| Cdb::StartStopUnit {
        immed: false,
        power_condition_modifier: 0,
        power_condition: 0,
        no_flush: false,
        loej,
        start,
    };
    // LOEJ = 0 never ejects.
    expect_good(&h.run(&h.a, ssu(false, false), vec![]).await);
    expect_good(&h.run(&h.a, Cdb::TestUnitReady, vec![]).await);
    // Eject: medium commands fail with MEDIUM NOT PRESENT; load brings it back.
    expect_good(&h.run(&h.a, ssu(true, false), vec![]).await);
    expect_sense(
        &h.run(&h.a, Cdb::TestUnitReady, vec![]).await,
        SenseKey::NOT_READY,
        Asc::MEDIUM_NOT_PRESENT,
    );
    expect_sense(
        &h.run(&h.a, Cdb::Read(Rw::new(0, 1)), vec![0; BS]).await,
        SenseKey::NOT_READY,
        Asc::MEDIUM_NOT_PRESENT,
    );
    expect_good(&h.run(&h.a, ssu(true, true), vec![]).await);
    expect_good(&h.run(&h.a, Cdb::TestUnitReady, vec![]).await);
    // PREVENT from any nexus blocks eject and load until it is allowed again or reset.
    expect_good(&h.run(&h.b, Cdb::PreventAllow { prevent: 1 }, vec![]).await);
    expect_sense(
        &h.run(&h.a, ssu(true, false), vec![]).await,
        SenseKey::ILLEGAL_REQUEST,
        Asc::MEDIUM_REMOVAL_PREVENTED,
    );
    expect_good(&h.run(&h.b, Cdb::PreventAllow { prevent: 0 }, vec![]).await);
    expect_good(&h.run(&h.a, ssu(true, false), vec![]).await);
    expect_good(&h.run(&h.b, Cdb::PreventAllow { prevent: 1 }, vec![]).await);
    expect_sense(
        &h.run(&h.a, ssu(true, true), vec![]).await,
        SenseKey::ILLEGAL_REQUEST,
        Asc::MEDIUM_REMOVAL_PREVENTED,
    );
    h.lu.nexus_lost(&h.b);
    expect_good(&h.run(&h.a, ssu(true, true), vec![]).await);
    expect_good(&h.run(&h.a, Cdb::TestUnitReady, vec![]).await);
}

#[tokio::test]
async fn fixed_disk_refuses_eject() {
    let h = Harness::new().await;
    let c = h
        .run(
            &h.a,
            Cdb::StartStopUnit {
                immed: true,
                power_condition_modifier: 0,
                power_condition: 0,
                no_flush: false,
                loej: true,
                start: false,
            },
            vec![],
        )
        .await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
    expect_good(&h.run(&h.a, Cdb::TestUnitReady, vec![]).await);
}

#[tokio::test]
async fn unknown_opcodes_and_bad_cdbs() {
    let h = Harness::new().await;
    for op in [0x01u8, 0x04, 0x3B, 0x7F, 0xC0, 0xFF] {
        let mut cdb = [0u8; 16];
        cdb[0] = op;
        let c = h.raw(&cdb, vec![0; 64]).await;
        expect_sense(
            &c,
            SenseKey::ILLEGAL_REQUEST,
            Asc::INVALID_COMMAND_OPERATION_CODE,
        );
    }
    let c = h.raw(&[0x00, 0, 0, 0, 0, 0x04], vec![]).await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
    let c = h.raw(&[], vec![]).await;
    assert_eq!(c.status, Status::CHECK_CONDITION);
}

#[tokio::test]
async fn read_defect_data_reports_an_empty_list() {
    let h = Harness::new().await;
    let c = h
        .run(
            &h.a,
            Cdb::ReadDefectData {
                twelve: false,
                plist: true,
                glist: true,
                format: 5,
                alloc_len: 4,
            },
            vec![0; 4],
        )
        .await;
    expect_good(&c);
    assert_eq!(c.data(), &[0, 0x18 | 5, 0, 0]);
    let c = h
        .run(
            &h.a,
            Cdb::ReadDefectData {
                twelve: true,
                plist: false,
                glist: true,
                format: 4,
                alloc_len: 8,
            },
            vec![0; 8],
        )
        .await;
    expect_good(&c);
    assert_eq!(c.data(), &[0, 0x08 | 4, 0, 0, 0, 0, 0, 0]);
}

/// Random CDBs and data never panic and always end in a well-formed completion.
#[test]
fn random_commands_never_panic() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let h = rt.block_on(Harness::new());
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 3000,
        ..Default::default()
    });
    let strategy = (
        proptest::collection::vec(any::<u8>(), 16),
        proptest::sample::select(vec![
            0x00u8, 0x03, 0x08, 0x0A, 0x12, 0x15, 0x16, 0x17, 0x1A, 0x1B, 0x1E, 0x25, 0x28, 0x2A,
            0x2E, 0x2F, 0x34, 0x35, 0x37, 0x41, 0x42, 0x48, 0x55, 0x56, 0x57, 0x5A, 0x5E, 0x5F,
            0x88, 0x89, 0x8A, 0x8B, 0x8E, 0x8F, 0x90, 0x91, 0x93, 0x9C, 0x9E, 0xA0, 0xA3, 0xA8,
            0xAA, 0xAE, 0xAF, 0xB7,
        ]),
        0usize..4096,
        any::<u8>(),
    );
    runner
        .run(&strategy, |(mut cdb, op, len, fill)| {
            cdb[0] = op;
            // Keep lengths modest so the run stays fast: small transfer-length bytes.
            for b in &mut cdb[6..14] {
                *b &= 0x03;
            }
            cdb[15] = 0;
            let c = rt.block_on(h.lu.execute(&h.a, &cdb, vec![fill; len]));
            prop_assert!(c.data_len <= len);
            prop_assert_eq!(c.status == Status::CHECK_CONDITION, c.sense.is_some());
            Ok(())
        })
        .unwrap();
}

fn sanitize(service_action: u8, param_len: u16) -> Cdb {
    Cdb::Sanitize {
        immed: false,
        ause: false,
        service_action,
        param_len,
    }
}

#[tokio::test]
async fn sanitize_overwrite_block_erase_and_bad_parameters() {
    let h = Harness::new().await;
    h.write(0, vec![b'a'; 4 * BS]).await;
    h.write(BLOCKS - 4, vec![b'a'; 4 * BS]).await;
    // OVERWRITE with a 4-byte pattern, one pass.
    let mut list = vec![0x01, 0, 0, 4];
    list.extend_from_slice(&[1, 2, 3, 4]);
    expect_good(&h.run(&h.a, sanitize(1, 8), list).await);
    let expect: Vec<u8> = [1u8, 2, 3, 4].repeat(BS);
    assert_eq!(h.read(0, 4).await, expect);
    assert_eq!(h.read(BLOCKS - 4, 4).await, expect);
    // Parameter list lengths of 0..=4 and block size + 5 are invalid fields in the CDB.
    for len in [0u16, 1, 4, BS as u16 + 5] {
        let c = h
            .run(&h.a, sanitize(1, len), vec![0x01; len as usize])
            .await;
        expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
    }
    // OVERWRITE COUNT 0 and pattern length 0 are invalid fields in the parameter list.
    let mut list = vec![0x00, 0, 2, 0];
    list.extend_from_slice(&[0xAA; BS]);
    let c = h.run(&h.a, sanitize(1, list.len() as u16), list).await;
    expect_sense(
        &c,
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    let list = [vec![0x01, 0, 0, 0], vec![0xAA; BS]].concat();
    let c = h.run(&h.a, sanitize(1, list.len() as u16), list).await;
    expect_sense(
        &c,
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_PARAMETER_LIST,
    );
    // BLOCK ERASE deallocates everything; a parameter list is refused.
    expect_good(&h.run(&h.a, sanitize(2, 0), vec![]).await);
    assert_eq!(h.read(0, 4).await, vec![0; 4 * BS]);
    let c = h.run(&h.a, sanitize(2, 8), vec![0; 8]).await;
    expect_sense(&c, SenseKey::ILLEGAL_REQUEST, Asc::INVALID_FIELD_IN_CDB);
    // CRYPTOGRAPHIC ERASE is not supported; EXIT FAILURE MODE has nothing to do.
    expect_sense(
        &h.run(&h.a, sanitize(3, 0), vec![]).await,
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_CDB,
    );
    expect_good(&h.run(&h.a, sanitize(0x1F, 0), vec![]).await);
    expect_sense(
        &h.run(&h.a, sanitize(0x05, 0), vec![]).await,
        SenseKey::ILLEGAL_REQUEST,
        Asc::INVALID_FIELD_IN_CDB,
    );
}

/// A RAM backend whose writes wait for a permit while the gate is closed, so a test can hold a
/// long operation in the middle.
struct Gated {
    inner: RamBackend,
    closed: std::sync::atomic::AtomicBool,
    permits: tokio::sync::Semaphore,
}

impl BlockBackend for Gated {
    fn len(&self) -> u64 {
        self.inner.len()
    }
    async fn read_at<B: scsi_core::backend::IoBuf>(
        &self,
        offset: u64,
        buf: B,
        range: std::ops::Range<usize>,
    ) -> scsi_core::backend::BufResult<B> {
        self.inner.read_at(offset, buf, range).await
    }
    async fn write_at<B: scsi_core::backend::IoBuf>(
        &self,
        offset: u64,
        buf: B,
        range: std::ops::Range<usize>,
        fua: bool,
    ) -> scsi_core::backend::BufResult<B> {
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            self.permits.acquire().await.unwrap().forget();
        }
        self.inner.write_at(offset, buf, range, fua).await
    }
    async fn flush(&self) -> std::io::Result<()> {
        self.inner.flush().await
    }
    async fn discard(&self, offset: u64, len: u64) -> std::io::Result<()> {
        self.inner.discard(offset, len).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_wait_out_a_sanitize_with_not_ready() {
    let backend = Gated {
        inner: RamBackend::new(BLOCKS * BS as u64),
        closed: std::sync::atomic::AtomicBool::new(true),
        permits: tokio::sync::Semaphore::new(0),
    };
    let lu = Arc::new(LogicalUnit::new(LuConfig::new("sanitize"), backend).unwrap());
    let a = ItNexus::iscsi("iqn.2026-11.test:a", [0x80, 0, 0, 0, 0, 1], 1);
    let tur = Cdb::TestUnitReady.encode();
    lu.execute(&a, tur.as_slice(), vec![]).await;
    let list = [vec![0x01, 0, 0, 4], vec![0xEE; 4]].concat();
    let cdb = sanitize(1, 8).encode();
    let (lu2, a2) = (lu.clone(), a.clone());
    let running = tokio::spawn(async move { lu2.execute(&a2, cdb.as_slice(), list).await });
    // Wait until the sanitize holds the unit (its first write waits at the gate).
    let mut seen = false;
    for _ in 0..2000 {
        let c = lu.execute(&a, tur.as_slice(), vec![]).await;
        if c.status == Status::CHECK_CONDITION {
            expect_sense(&c, SenseKey::NOT_READY, Asc::SANITIZE_IN_PROGRESS);
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    assert!(seen, "TEST UNIT READY never saw the sanitize");
    let read = Cdb::Read(Rw::new(0, 1)).encode();
    let c = lu.execute(&a, read.as_slice(), vec![0; BS]).await;
    expect_sense(&c, SenseKey::NOT_READY, Asc::SANITIZE_IN_PROGRESS);
    let inq = Cdb::Inquiry {
        evpd: false,
        cmddt: false,
        page: 0,
        alloc_len: 96,
    }
    .encode();
    expect_good(&lu.execute(&a, inq.as_slice(), vec![0; 96]).await);
    let rs = Cdb::RequestSense {
        desc: false,
        alloc_len: 18,
    }
    .encode();
    let c = lu.execute(&a, rs.as_slice(), vec![0; 18]).await;
    expect_good(&c);
    let s = Sense::parse(c.data()).unwrap();
    assert_eq!(
        (s.key, s.asc),
        (SenseKey::NOT_READY, Asc::SANITIZE_IN_PROGRESS)
    );
    // Resets do not end it.
    lu.reset(ResetKind::LogicalUnit);
    let c = lu.execute(&a, tur.as_slice(), vec![]).await;
    assert_ua(&c, Asc::BUS_DEVICE_RESET_OCCURRED);
    let c = lu.execute(&a, tur.as_slice(), vec![]).await;
    expect_sense(&c, SenseKey::NOT_READY, Asc::SANITIZE_IN_PROGRESS);
    // Open the gate: the sanitize finishes and the unit is ready again.
    lu.backend()
        .closed
        .store(false, std::sync::atomic::Ordering::Release);
    lu.backend().permits.add_permits(1 << 20);
    expect_good(&running.await.unwrap());
    expect_good(&lu.execute(&a, tur.as_slice(), vec![]).await);
    let c = lu.execute(&a, read.as_slice(), vec![0; BS]).await;
    assert_eq!(c.data(), &[0xEE; BS][..]);
}

/// GET LBA STATUS cut by a short expected length reports the bytes it could not send.
#[tokio::test]
async fn get_lba_status_residual_counts_what_the_buffer_cut() {
    let h = Harness::new().await;
    let c = h
        .run(
            &h.a,
            Cdb::GetLbaStatus {
                lba: 0,
                alloc_len: 24,
            },
            vec![0; 16],
        )
        .await;
    expect_good(&c);
    assert_eq!(c.data_len, 16);
    assert_eq!(c.residual(16), Residual::Overflow(8));
}

/// With the write cache off (MODE SELECT clears WCE), writes still land and read back; the
/// flag reaches the block path through the device facts, not a second lock.
#[tokio::test]
async fn writes_with_the_write_cache_off() {
    let mut cfg = LuConfig::new("wce-off");
    cfg.write_cache = false;
    let h = Harness::with(cfg).await;
    let c = h
        .run(
            &h.a,
            Cdb::ModeSense {
                ten: false,
                dbd: true,
                llbaa: false,
                pc: 0,
                page: 0x08,
                subpage: 0,
                alloc_len: 255,
            },
            vec![0; 255],
        )
        .await;
    expect_good(&c);
    assert_eq!(c.data()[4 + 2] & 0x04, 0, "WCE clear");
    let data = pattern(2, 4);
    expect_good(&h.write(40, data.clone()).await);
    assert_eq!(h.read(40, 2).await, data);
}
