//! Cost of the logical unit per command: 4 KiB and 128 KiB READ/WRITE through
//! `LogicalUnit::execute` over the RAM backend (so what is measured is the emulation: parsing,
//! admission, range checks, locking and the copy into or out of the task buffer), plus
//! COMPARE AND WRITE and INQUIRY.
//!
//! Run: `cargo bench -p scsi-core --bench lu`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use scsi_core::{
    ItNexus, Status,
    backend::RamBackend,
    cdb::{Cdb, Rw},
    lu::{LogicalUnit, LuConfig},
};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let lu = LogicalUnit::new(LuConfig::new("bench"), RamBackend::new(256 << 20)).unwrap();
    let n = ItNexus::iscsi("iqn.2026-11.bench:host", [0x80, 0, 0, 0, 0, 1], 1);
    rt.block_on(async {
        lu.execute(&n, Cdb::TestUnitReady.encode().as_slice(), Vec::new())
            .await;
        // Touch every block so reads hit allocated memory.
        for i in 0..256u64 {
            let cdb = Cdb::Write(Rw::new(i * 2048, 2048)).encode();
            let done = lu.execute(&n, cdb.as_slice(), vec![1u8; 1 << 20]).await;
            assert_eq!(done.status, Status::GOOD);
        }
    });
    let mut g = c.benchmark_group("lu");
    for (name, blocks) in [("4k", 8u32), ("128k", 256)] {
        let bytes = blocks as usize * 512;
        g.throughput(Throughput::Bytes(bytes as u64));
        let mut lba = 0u64;
        let mut buf = Some(vec![0u8; bytes]);
        g.bench_function(format!("read_{name}"), |b| {
            b.iter(|| {
                lba = (lba + 7919 * u64::from(blocks)) % (524_288 - u64::from(blocks));
                let cdb = Cdb::Read(Rw::new(lba, blocks)).encode();
                let done = rt.block_on(lu.execute(&n, cdb.as_slice(), buf.take().unwrap()));
                assert_eq!(done.status, Status::GOOD);
                buf = Some(done.buf);
            })
        });
        g.bench_function(format!("write_{name}"), |b| {
            b.iter(|| {
                lba = (lba + 7919 * u64::from(blocks)) % (524_288 - u64::from(blocks));
                let cdb = Cdb::Write(Rw::new(lba, blocks)).encode();
                let done = rt.block_on(lu.execute(&n, cdb.as_slice(), buf.take().unwrap()));
                assert_eq!(done.status, Status::GOOD);
                buf = Some(done.buf);
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    g.bench_function("compare_and_write_1", |b| {
        let mut data = vec![0u8; 1024];
        rt.block_on(lu.execute(
            &n,
            Cdb::Write(Rw::new(7, 1)).encode().as_slice(),
            vec![0u8; 512],
        ));
        b.iter(|| {
            let cdb = Cdb::CompareAndWrite { rw: Rw::new(7, 1) }.encode();
            let done = rt.block_on(lu.execute(&n, cdb.as_slice(), std::mem::take(&mut data)));
            assert_eq!(done.status, Status::GOOD);
            data = done.buf;
        })
    });
    g.bench_function("inquiry_vpd_83", |b| {
        let cdb = Cdb::Inquiry {
            evpd: true,
            cmddt: false,
            page: 0x83,
            alloc_len: 255,
        }
        .encode();
        let mut buf = Some(vec![0u8; 255]);
        b.iter(|| {
            let done = rt.block_on(lu.execute(&n, cdb.as_slice(), buf.take().unwrap()));
            assert_eq!(done.status, Status::GOOD);
            buf = Some(done.buf);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
