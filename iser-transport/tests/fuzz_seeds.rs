//! The iSER fuzz targets' seeds (`fuzz/corpus/TARGET/seed-*`) and crash regressions
//! (`fuzz/regressions/TARGET/*`) run through the target bodies on every `cargo test` with the
//! `fuzzing` feature: `cargo test -p iscsi-iser --features fuzzing`.
//!
//! `cargo test -p iscsi-iser --features fuzzing --test fuzz_seeds -- --ignored` rewrites the
//! `iser_header` seeds from headers this crate encodes (the `iser_mover` seeds are operation
//! scripts, written by hand; their format is on `iscsi_iser::fuzzing::mover`).
#![cfg(feature = "fuzzing")]

use std::path::{Path, PathBuf};

use iscsi_iser::fuzzing;
use iscsi_iser::header::{CmPrivateData, ControlHeader, Hello, HelloReply, IserHeader, Stag};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

#[test]
fn seeds_and_regressions_pass() {
    iscsi_proto::fuzzing::run_seeds_and_regressions("iser_header", fuzzing::header);
    iscsi_proto::fuzzing::run_seeds_and_regressions("iser_mover", fuzzing::mover);
}

#[test]
#[ignore = "rewrites the committed iser_header seeds; run by hand"]
fn regenerate_header_seeds() {
    let dir = fuzz_dir().join("corpus").join("iser_header");
    std::fs::create_dir_all(&dir).unwrap();
    let stag = |stag, base_offset| Stag { stag, base_offset };
    let headers = [
        (
            "control-both",
            IserHeader::Control(ControlHeader {
                write: Some(stag(0x1234, 0x7f00_0000_1000)),
                read: Some(stag(0x5678, 0x7f00_0000_2000)),
            }),
        ),
        (
            "control-read",
            IserHeader::Control(ControlHeader {
                write: None,
                read: Some(stag(0x9abc, 0x5555_0000)),
            }),
        ),
        (
            "control-none",
            IserHeader::Control(ControlHeader::default()),
        ),
        (
            "hello",
            IserHeader::Hello(Hello {
                max_ver: 10,
                min_ver: 10,
                ird: 16,
            }),
        ),
        (
            "hello-reply",
            IserHeader::HelloReply(HelloReply {
                reject: false,
                max_ver: 10,
                cur_ver: 10,
                ord: 16,
            }),
        ),
    ];
    for (name, h) in headers {
        std::fs::write(dir.join(format!("seed-{name}")), h.to_bytes()).unwrap();
    }
    std::fs::write(
        dir.join("seed-cm-private-data"),
        CmPrivateData::OURS.to_bytes(),
    )
    .unwrap();
}
