//! Bodies of the cargo-fuzz targets (feature `fuzzing`), compiled by ordinary builds so they
//! cannot rot, and run on their seeds by the test suite.

use crate::{
    ItNexus, Status,
    backend::RamBackend,
    cdb::Cdb,
    lu::{LogicalUnit, LuConfig, ResetKind},
};

/// Runs a sequence of commands against a fresh 256-block logical unit and checks that every
/// completion is well formed.
///
/// Input format, repeated: one control byte (bit 0 picks one of two I_T nexuses; 0xFF = lose
/// that nexus, 0xFE = reset the unit), 16 CDB bytes, a two-byte big-endian length `n`, then `n`
/// data bytes (fewer if the input ends: the rest are zeros). Data lengths are capped at 64 KiB.
pub fn lu_commands(data: &[u8]) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().build() else {
        return;
    };
    let mut cfg = LuConfig::new("fuzz");
    cfg.removable = true;
    cfg.max_write_same_blocks = 256;
    let Ok(lu) = LogicalUnit::new(cfg, RamBackend::new(256 * 512)) else {
        return;
    };
    let nexuses = [
        ItNexus::iscsi("iqn.2026-11.fuzz:a", [0x80, 0, 0, 0, 0, 1], 1),
        ItNexus::iscsi("iqn.2026-11.fuzz:b", [0x80, 0, 0, 0, 0, 2], 1),
    ];
    let mut rest = data;
    for _ in 0..64 {
        let Some((&ctl, r)) = rest.split_first() else {
            break;
        };
        let nexus = &nexuses[usize::from(ctl & 1)];
        match ctl {
            0xFF => {
                lu.nexus_lost(nexus);
                rest = r;
                continue;
            }
            0xFE => {
                lu.reset(ResetKind::LogicalUnit);
                rest = r;
                continue;
            }
            _ => {}
        }
        let Some(cdb) = r.get(..16) else { break };
        let r = &r[16..];
        let Some(len) = r.get(..2) else { break };
        let len = usize::from(u16::from_be_bytes([len[0], len[1]])).min(64 * 1024);
        let r = &r[2..];
        let take = len.min(r.len());
        let mut buf = vec![0u8; len];
        buf[..take].copy_from_slice(&r[..take]);
        rest = &r[take..];
        let c = rt.block_on(lu.execute(nexus, cdb, buf));
        assert!(c.data_len <= len, "data_len past the buffer");
        assert_eq!(
            c.status == Status::CHECK_CONDITION,
            c.sense.is_some(),
            "sense iff CHECK CONDITION"
        );
        if let Ok(cmd) = Cdb::parse(cdb) {
            let again = Cdb::parse(cmd.encode().as_slice());
            assert_eq!(again, Ok(cmd), "CDB re-encoding");
        }
    }
}
