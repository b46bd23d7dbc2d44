//! PDU parse/build and CRC32C benchmarks: `cargo bench -p iscsi-proto`.
//!
//! Goals (issue 2): BHS parse >= 100 M/s on one core; CRC32C >= 15 GB/s.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use iscsi_proto::pdu::{Bhs, DataIn, Digests, Lun, ScsiCommand, ScsiStatus};
use iscsi_proto::{CmdSn, DataSn, Itt, Pdu, StatSn};

fn read10() -> Pdu {
    let mut c = ScsiCommand::with_cdb(&[0x28, 0, 0, 0, 0x10, 0, 0, 0, 8, 0]).unwrap();
    c.read = true;
    c.lun = Lun::from_index(1).unwrap();
    c.itt = Itt(0x1234);
    c.expected_data_len = 4096;
    c.cmd_sn = CmdSn(77);
    c.exp_stat_sn = StatSn(12);
    Pdu::ScsiCommand(c)
}

fn data_in(len: usize) -> Pdu {
    Pdu::DataIn(DataIn {
        final_: true,
        status: Some(ScsiStatus::GOOD),
        itt: Itt(9),
        stat_sn: StatSn(5),
        exp_cmd_sn: CmdSn(6),
        max_cmd_sn: CmdSn(70),
        data_sn: DataSn(0),
        data: Bytes::from(vec![0x5a; len]),
        ..Default::default()
    })
}

fn bench_header(c: &mut Criterion) {
    let wire = read10().to_bytes(Digests::NONE).unwrap();
    let mut g = c.benchmark_group("header");
    g.throughput(Throughput::Elements(1));
    g.bench_function("bhs_parse", |b| {
        b.iter(|| Bhs::parse(black_box(&wire[..])).map(|(_, h)| h))
    });
    let h = Bhs::parse(&wire).unwrap().1;
    let empty = Bytes::new();
    g.bench_function("scsi_command_decode_from_bhs", |b| {
        b.iter(|| Pdu::decode(black_box(&h), &empty, Bytes::new()))
    });
    g.bench_function("scsi_command_parse", |b| {
        b.iter(|| Pdu::parse(black_box(&wire), Digests::NONE))
    });
    let pdu = read10();
    let mut buf = BytesMut::with_capacity(1 << 16);
    g.bench_function("scsi_command_build", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&pdu).encode(&mut buf, Digests::NONE).unwrap();
        })
    });
    g.finish();
}

fn bench_data(c: &mut Criterion) {
    let mut g = c.benchmark_group("pdu_8k");
    g.throughput(Throughput::Elements(1));
    for (name, digests) in [
        ("no_digests", Digests::NONE),
        (
            "crc32c_digests",
            Digests {
                header: true,
                data: true,
            },
        ),
    ] {
        let pdu = data_in(8192);
        let wire = pdu.to_bytes(digests).unwrap();
        g.bench_function(format!("parse_data_in_{name}"), |b| {
            b.iter(|| Pdu::parse(black_box(&wire), digests).unwrap())
        });
        let mut buf = BytesMut::with_capacity(1 << 16);
        g.bench_function(format!("build_data_in_{name}"), |b| {
            b.iter(|| {
                buf.clear();
                black_box(&pdu).encode(&mut buf, digests).unwrap();
            })
        });
        g.bench_function(format!("build_header_only_{name}"), |b| {
            b.iter(|| {
                buf.clear();
                black_box(&pdu).encode_header(&mut buf, digests).unwrap();
                iscsi_proto::pdu::data_trailer(pdu.data(), digests.data)
            })
        });
    }
    g.finish();
}

fn bench_crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32c");
    for size in [8 * 1024usize, 256 * 1024] {
        let data: Vec<u8> = (0..size).map(|i| (i * 131 + 7) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("{}k", size / 1024), |b| {
            b.iter(|| iscsi_proto::digest::crc32c(black_box(&data)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_header, bench_data, bench_crc);
criterion_main!(benches);
