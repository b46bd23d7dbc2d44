//! The `scsi_lu` fuzz target's seeds (`fuzz/corpus/scsi_lu/seed-*`) and crash regressions
//! (`fuzz/regressions/scsi_lu/*`) run through its body on every `cargo test` with the
//! `fuzzing` feature: `cargo test -p scsi-core --features fuzzing`.
//!
//! `cargo test -p scsi-core --features fuzzing --test fuzz_seeds -- --ignored` rewrites the
//! seeds from command sequences built here.
#![cfg(feature = "fuzzing")]

use std::path::{Path, PathBuf};

use scsi_core::{
    cdb::{Cdb, CdbSize, Rw},
    fuzzing,
};

fn dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz")
        .join(kind)
        .join("scsi_lu")
}

fn files(dir: &Path, prefix: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<_> = rd
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

/// One record of the fuzz input format: control byte, 16 CDB bytes, length, data.
fn record(out: &mut Vec<u8>, nexus: u8, cdb: Cdb, data: &[u8]) {
    out.push(nexus);
    out.extend_from_slice(&cdb.encode().padded());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
}

fn pr_out(sa: u8, kind: u8, key: u64, sa_key: u64) -> (Cdb, Vec<u8>) {
    let mut p = vec![0u8; 24];
    p[..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    (
        Cdb::PersistentReserveOut {
            service_action: sa,
            scope: 0,
            kind,
            param_len: 24,
        },
        p,
    )
}

fn seeds() -> Vec<Vec<u8>> {
    let bs = 512usize;
    let mut all = Vec::new();
    // Block I/O.
    let mut s = Vec::new();
    record(&mut s, 0, Cdb::TestUnitReady, &[]);
    record(&mut s, 0, Cdb::Write(Rw::new(1, 2)), &vec![0x5A; 2 * bs]);
    record(
        &mut s,
        0,
        Cdb::Read(Rw {
            size: CdbSize::Twelve,
            ..Rw::new(1, 2)
        }),
        &vec![0; 2 * bs],
    );
    record(
        &mut s,
        0,
        Cdb::Verify {
            rw: Rw::new(1, 1),
            bytchk: 1,
        },
        &vec![0x5A; bs],
    );
    record(
        &mut s,
        0,
        Cdb::CompareAndWrite { rw: Rw::new(1, 1) },
        &[vec![0x5A; bs], vec![1; bs]].concat(),
    );
    record(&mut s, 0, Cdb::OrWrite(Rw::new(2, 1)), &vec![0x0F; bs]);
    record(
        &mut s,
        0,
        Cdb::WriteSame {
            rw: Rw {
                size: CdbSize::Sixteen,
                ..Rw::new(0, 8)
            },
            unmap: true,
            anchor: false,
            ndob: false,
        },
        &vec![0; bs],
    );
    let mut unmap = vec![0, 22, 0, 16, 0, 0, 0, 0];
    unmap.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 8, 0, 0, 0, 0]);
    record(
        &mut s,
        0,
        Cdb::Unmap {
            anchor: false,
            group: 0,
            param_len: 24,
        },
        &unmap,
    );
    record(
        &mut s,
        0,
        Cdb::GetLbaStatus {
            lba: 0,
            alloc_len: 64,
        },
        &[0; 64],
    );
    record(
        &mut s,
        0,
        Cdb::SynchronizeCache {
            size: CdbSize::Ten,
            lba: 0,
            blocks: 0,
            immed: false,
        },
        &[],
    );
    all.push(s);
    // Inquiry, capacity, mode pages, opcodes.
    let mut s = Vec::new();
    record(
        &mut s,
        1,
        Cdb::Inquiry {
            evpd: false,
            cmddt: false,
            page: 0,
            alloc_len: 96,
        },
        &[0; 96],
    );
    for page in [0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2] {
        record(
            &mut s,
            1,
            Cdb::Inquiry {
                evpd: true,
                cmddt: false,
                page,
                alloc_len: 255,
            },
            &[0; 255],
        );
    }
    record(
        &mut s,
        1,
        Cdb::ReadCapacity16 {
            lba: 0,
            pmi: false,
            alloc_len: 32,
        },
        &[0; 32],
    );
    record(
        &mut s,
        1,
        Cdb::ModeSense {
            ten: true,
            dbd: false,
            llbaa: false,
            pc: 0,
            page: 0x3F,
            subpage: 0,
            alloc_len: 512,
        },
        &[0; 512],
    );
    let mut caching = vec![0, 0, 0, 0, 0x08, 0x12, 0x00];
    caching.resize(4 + 20, 0);
    record(
        &mut s,
        1,
        Cdb::ModeSelect {
            ten: false,
            pf: true,
            sp: false,
            param_len: 24,
        },
        &caching,
    );
    record(
        &mut s,
        1,
        Cdb::ReportSupportedOpcodes {
            rctd: true,
            options: 0,
            opcode: 0,
            service_action: 0,
            alloc_len: 4096,
        },
        &[0; 4096],
    );
    record(
        &mut s,
        1,
        Cdb::ReportLuns {
            select_report: 0,
            alloc_len: 64,
        },
        &[0; 64],
    );
    record(
        &mut s,
        1,
        Cdb::RequestSense {
            desc: true,
            alloc_len: 252,
        },
        &[0; 252],
    );
    all.push(s);
    // Reservations from two nexuses, resets and nexus loss.
    let mut s = Vec::new();
    for (n, (cdb, p)) in [
        (0, pr_out(0, 0, 0, 0xAA)),
        (1, pr_out(0, 0, 0, 0xBB)),
        (0, pr_out(1, 6, 0xAA, 0)),
        (1, pr_out(4, 6, 0xBB, 0xAA)),
        (0, pr_out(3, 0, 0xAA, 0)),
    ] {
        record(&mut s, n, cdb, &p);
    }
    record(
        &mut s,
        0,
        Cdb::PersistentReserveIn {
            service_action: 3,
            alloc_len: 512,
        },
        &[0; 512],
    );
    record(&mut s, 0, Cdb::Reserve { ten: false }, &[]);
    record(&mut s, 1, Cdb::Write(Rw::new(0, 1)), &vec![1; bs]);
    s.push(0xFE);
    record(&mut s, 1, Cdb::TestUnitReady, &[]);
    s.push(0xFF);
    record(&mut s, 1, Cdb::PreventAllow { prevent: 1 }, &[]);
    all.push(s);
    all
}

#[test]
fn seeds_and_regressions_pass() {
    let stored = files(&dir("corpus"), "seed-");
    assert!(!stored.is_empty(), "no seeds for fuzz target scsi_lu");
    for (path, data) in stored.iter().chain(files(&dir("regressions"), "").iter()) {
        eprintln!("scsi_lu: {}", path.display());
        fuzzing::lu_commands(data);
    }
    // The built-in sequences too, so a stale corpus cannot hide a change.
    for s in seeds() {
        fuzzing::lu_commands(&s);
    }
}

#[test]
#[ignore = "rewrites fuzz/corpus/scsi_lu/seed-*"]
fn write_seeds() {
    let d = dir("corpus");
    std::fs::create_dir_all(&d).unwrap();
    for (i, s) in seeds().iter().enumerate() {
        std::fs::write(d.join(format!("seed-{i:02}")), s).unwrap();
    }
}
