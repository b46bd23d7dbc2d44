//! The commands the logical unit implements, and the two commands that report them: REPORT
//! SUPPORTED OPERATION CODES and REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (SPC-4 §6.35, §6.36).
//!
//! [`COMMANDS`] is the single source: one [`CommandInfo`] per operation code, or per operation
//! code and service action. Its CDB USAGE DATA follows SPC-4: byte 0 holds the operation code,
//! the SERVICE ACTION field holds the service action, and every other bit is one when the device
//! server evaluates it. Bits the device server treats as reserved (refusing a non-zero value) are
//! zero: RDPROTECT, WRPROTECT, VRPROTECT and ORPROTECT (no protection information), ANCHOR (no
//! anchored LBAs), GROUP NUMBER, FUA_NV, RARC, the third-party fields of RESERVE and RELEASE. In
//! the CONTROL byte only NACA is marked (NACA = 1 is refused: ACA is not supported); LINK is
//! obsolete (SAM-5) and refused like a reserved bit.

// Until the LU core calls every entry.

use super::LuConfig;
#[cfg(test)]
use crate::sense::Asc;
use crate::sense::Sense;

/// Which way the data of a command moves, for the transport to check a command's READ and WRITE
/// bits against.
///
/// A command that may move data in one direction reports it even when a zero transfer length or
/// ALLOCATION LENGTH means no data moves this time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DataDirection {
    /// The command never transfers data.
    None,
    /// Data-in: from the device server to the initiator.
    Read,
    /// Data-out: from the initiator to the device server.
    Write,
}

/// One supported command: an operation code, or an operation code and service action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CommandInfo {
    /// OPERATION CODE.
    pub opcode: u8,
    /// SERVICE ACTION (CDB byte 1, bits 4..0) for operation codes that have service actions.
    pub service_action: Option<u8>,
    /// CDB length in bytes (SBC-3, SPC-4); equal to `usage.len()`.
    pub cdb_len: u8,
    /// CDB USAGE DATA (SPC-4 §6.35.3): the operation code, the service action in its field, and
    /// a one for every other bit the device server evaluates.
    pub usage: &'static [u8],
    /// Direction of the data transfer, if any.
    pub direction: DataDirection,
    /// NOMINAL COMMAND PROCESSING TIMEOUT, seconds.
    pub nominal_timeout: u32,
    /// RECOMMENDED COMMAND TIMEOUT, seconds.
    pub recommended_timeout: u32,
    /// The command's name in the standards.
    pub name: &'static str,
}

/// CONTROL byte usage: NACA only.
const C: u8 = 0x04;
/// A CDB byte evaluated whole.
const F: u8 = 0xFF;

/// Nominal and recommended timeouts (seconds) for commands that touch no medium.
const QUICK: (u32, u32) = (1, 30);
/// ... for commands that read or write a bounded range.
const MEDIA: (u32, u32) = (1, 60);
/// ... for commands that may cover the whole medium (WRITE SAME, UNMAP, SYNCHRONIZE CACHE, ...).
const BULK: (u32, u32) = (10, 600);
/// ... for SANITIZE without IMMED.
const SANITIZE: (u32, u32) = (600, 36_000);

/// A command without service actions; the operation code is `usage[0]`.
const fn cmd(
    name: &'static str,
    direction: DataDirection,
    timeouts: (u32, u32),
    usage: &'static [u8],
) -> CommandInfo {
    CommandInfo {
        opcode: usage[0],
        service_action: None,
        cdb_len: usage.len() as u8,
        usage,
        direction,
        nominal_timeout: timeouts.0,
        recommended_timeout: timeouts.1,
        name,
    }
}

/// A command with a service action; `usage[1]` holds it in bits 4..0.
const fn sa_cmd(
    name: &'static str,
    direction: DataDirection,
    timeouts: (u32, u32),
    usage: &'static [u8],
) -> CommandInfo {
    let mut c = cmd(name, direction, timeouts, usage);
    c.service_action = Some(usage[1] & 0x1F);
    c
}

/// Every command the logical unit implements, sorted by operation code and service action.
/// PERSISTENT RESERVE OUT REPLACE LOST RESERVATION is not among them: persistent reservations are
/// never lost here, and the service action is refused. WRITE ATOMIC (16) is switched off by a
/// zero `max_atomic_blocks` (see [`offered`]).
#[rustfmt::skip]
pub(crate) static COMMANDS: &[CommandInfo] = {
    use DataDirection::{None as NoData, Read, Write};
    &[
        cmd("TEST UNIT READY", NoData, QUICK, &[0x00, 0, 0, 0, 0, C]),
        // DESC; ALLOCATION LENGTH.
        cmd("REQUEST SENSE", Read, QUICK, &[0x03, 0x01, 0, 0, F, C]),
        // LBA (21 bits); TRANSFER LENGTH.
        cmd("READ(6)", Read, MEDIA, &[0x08, 0x1F, F, F, F, C]),
        cmd("WRITE(6)", Write, MEDIA, &[0x0A, 0x1F, F, F, F, C]),
        // EVPD (CMDDT is obsolete: refused); PAGE CODE; ALLOCATION LENGTH.
        cmd("INQUIRY", Read, QUICK, &[0x12, 0x01, F, F, F, C]),
        // PF, SP; PARAMETER LIST LENGTH.
        cmd("MODE SELECT(6)", Write, QUICK, &[0x15, 0x11, 0, 0, F, C]),
        cmd("RESERVE(6)", NoData, QUICK, &[0x16, 0, 0, 0, 0, C]),
        cmd("RELEASE(6)", NoData, QUICK, &[0x17, 0, 0, 0, 0, C]),
        // DBD; PC, PAGE CODE; SUBPAGE CODE; ALLOCATION LENGTH.
        cmd("MODE SENSE(6)", Read, QUICK, &[0x1A, 0x08, F, F, F, C]),
        // IMMED; POWER CONDITION MODIFIER; POWER CONDITION, NO_FLUSH, LOEJ, START.
        cmd("START STOP UNIT", NoData, MEDIA, &[0x1B, 0x01, 0, 0x0F, 0xF7, C]),
        // PREVENT.
        cmd("PREVENT ALLOW MEDIUM REMOVAL", NoData, QUICK, &[0x1E, 0, 0, 0, 0x03, C]),
        // LOGICAL BLOCK ADDRESS and PMI (obsolete, checked for consistency).
        cmd("READ CAPACITY(10)", Read, QUICK, &[0x25, 0, F, F, F, F, 0, 0, 0x01, C]),
        // DPO, FUA; LBA; TRANSFER LENGTH.
        cmd("READ(10)", Read, MEDIA, &[0x28, 0x18, F, F, F, F, 0, F, F, C]),
        cmd("WRITE(10)", Write, MEDIA, &[0x2A, 0x18, F, F, F, F, 0, F, F, C]),
        // DPO, BYTCHK; LBA; TRANSFER / VERIFICATION LENGTH.
        cmd("WRITE AND VERIFY(10)", Write, MEDIA, &[0x2E, 0x16, F, F, F, F, 0, F, F, C]),
        cmd("VERIFY(10)", Write, MEDIA, &[0x2F, 0x16, F, F, F, F, 0, F, F, C]),
        // IMMED; LBA; PREFETCH LENGTH.
        cmd("PRE-FETCH(10)", NoData, BULK, &[0x34, 0x02, F, F, F, F, 0, F, F, C]),
        // IMMED; LBA; NUMBER OF LOGICAL BLOCKS.
        cmd("SYNCHRONIZE CACHE(10)", NoData, BULK, &[0x35, 0x02, F, F, F, F, 0, F, F, C]),
        // REQ_PLIST, REQ_GLIST, DEFECT LIST FORMAT; ALLOCATION LENGTH.
        cmd("READ DEFECT DATA(10)", Read, QUICK, &[0x37, 0, 0x1F, 0, 0, 0, 0, F, F, C]),
        // UNMAP; LBA; NUMBER OF LOGICAL BLOCKS.
        cmd("WRITE SAME(10)", Write, BULK, &[0x41, 0x08, F, F, F, F, 0, F, F, C]),
        // PARAMETER LIST LENGTH.
        cmd("UNMAP", Write, BULK, &[0x42, 0, 0, 0, 0, 0, 0, F, F, C]),
        // IMMED, AUSE, SERVICE ACTION; PARAMETER LIST LENGTH.
        sa_cmd("SANITIZE OVERWRITE", Write, SANITIZE, &[0x48, 0xA0 | 0x01, 0, 0, 0, 0, 0, F, F, C]),
        sa_cmd("SANITIZE BLOCK ERASE", Write, SANITIZE, &[0x48, 0xA0 | 0x02, 0, 0, 0, 0, 0, F, F, C]),
        sa_cmd("SANITIZE EXIT FAILURE MODE", Write, QUICK, &[0x48, 0xA0 | 0x1F, 0, 0, 0, 0, 0, F, F, C]),
        // PF, SP; PARAMETER LIST LENGTH.
        cmd("MODE SELECT(10)", Write, QUICK, &[0x55, 0x11, 0, 0, 0, 0, 0, F, F, C]),
        cmd("RESERVE(10)", NoData, QUICK, &[0x56, 0, 0, 0, 0, 0, 0, 0, 0, C]),
        cmd("RELEASE(10)", NoData, QUICK, &[0x57, 0, 0, 0, 0, 0, 0, 0, 0, C]),
        // LLBAA, DBD; PC, PAGE CODE; SUBPAGE CODE; ALLOCATION LENGTH.
        cmd("MODE SENSE(10)", Read, QUICK, &[0x5A, 0x18, F, F, 0, 0, 0, F, F, C]),
        // SERVICE ACTION; ALLOCATION LENGTH.
        sa_cmd("PERSISTENT RESERVE IN READ KEYS", Read, QUICK, &[0x5E, 0x00, 0, 0, 0, 0, 0, F, F, C]),
        sa_cmd("PERSISTENT RESERVE IN READ RESERVATION", Read, QUICK, &[0x5E, 0x01, 0, 0, 0, 0, 0, F, F, C]),
        sa_cmd("PERSISTENT RESERVE IN REPORT CAPABILITIES", Read, QUICK, &[0x5E, 0x02, 0, 0, 0, 0, 0, F, F, C]),
        sa_cmd("PERSISTENT RESERVE IN READ FULL STATUS", Read, QUICK, &[0x5E, 0x03, 0, 0, 0, 0, 0, F, F, C]),
        // SERVICE ACTION; SCOPE, TYPE; PARAMETER LIST LENGTH (4 bytes).
        sa_cmd("PERSISTENT RESERVE OUT REGISTER", Write, QUICK, &[0x5F, 0x00, F, 0, 0, F, F, F, F, C]),
        sa_cmd("PERSISTENT RESERVE OUT RESERVE", Write, QUICK, &[0x5F, 0x01, F, 0, 0, F, F, F, F, C]),
        sa_cmd("PERSISTENT RESERVE OUT RELEASE", Write, QUICK, &[0x5F, 0x02, F, 0, 0, F, F, F, F, C]),
        sa_cmd("PERSISTENT RESERVE OUT CLEAR", Write, QUICK, &[0x5F, 0x03, F, 0, 0, F, F, F, F, C]),
        sa_cmd("PERSISTENT RESERVE OUT PREEMPT", Write, QUICK, &[0x5F, 0x04, F, 0, 0, F, F, F, F, C]),
        sa_cmd("PERSISTENT RESERVE OUT PREEMPT AND ABORT", Write, QUICK, &[0x5F, 0x05, F, 0, 0, F, F, F, F, C]),
        sa_cmd("PERSISTENT RESERVE OUT REGISTER AND IGNORE EXISTING KEY", Write, QUICK, &[0x5F, 0x06, F, 0, 0, F, F, F, F, C]),
        sa_cmd("PERSISTENT RESERVE OUT REGISTER AND MOVE", Write, QUICK, &[0x5F, 0x07, F, 0, 0, F, F, F, F, C]),
        // DPO, FUA; LBA (8 bytes); TRANSFER LENGTH (4 bytes).
        cmd("READ(16)", Read, MEDIA, &[0x88, 0x18, F, F, F, F, F, F, F, F, F, F, F, F, 0, C]),
        // DPO, FUA; LBA; NUMBER OF LOGICAL BLOCKS (byte 13).
        cmd("COMPARE AND WRITE", Write, MEDIA, &[0x89, 0x18, F, F, F, F, F, F, F, F, 0, 0, 0, F, 0, C]),
        cmd("WRITE(16)", Write, MEDIA, &[0x8A, 0x18, F, F, F, F, F, F, F, F, F, F, F, F, 0, C]),
        cmd("ORWRITE(16)", Write, MEDIA, &[0x8B, 0x18, F, F, F, F, F, F, F, F, F, F, F, F, 0, C]),
        cmd("WRITE AND VERIFY(16)", Write, MEDIA, &[0x8E, 0x16, F, F, F, F, F, F, F, F, F, F, F, F, 0, C]),
        cmd("VERIFY(16)", Write, MEDIA, &[0x8F, 0x16, F, F, F, F, F, F, F, F, F, F, F, F, 0, C]),
        cmd("PRE-FETCH(16)", NoData, BULK, &[0x90, 0x02, F, F, F, F, F, F, F, F, F, F, F, F, 0, C]),
        cmd("SYNCHRONIZE CACHE(16)", NoData, BULK, &[0x91, 0x02, F, F, F, F, F, F, F, F, F, F, F, F, 0, C]),
        cmd("WRITE SAME(16)", Write, BULK, &[0x93, 0x09, F, F, F, F, F, F, F, F, F, F, F, F, 0, C]),
        // DPO, FUA; LBA; TRANSFER LENGTH (bytes 12..13; no atomic boundary).
        cmd("WRITE ATOMIC(16)", Write, MEDIA, &[0x9C, 0x18, F, F, F, F, F, F, F, F, 0, 0, F, F, 0, C]),
        // SERVICE ACTION; LBA and PMI (obsolete, checked for consistency); ALLOCATION LENGTH.
        sa_cmd("READ CAPACITY(16)", Read, QUICK, &[0x9E, 0x10, F, F, F, F, F, F, F, F, F, F, F, F, 0x01, C]),
        // SERVICE ACTION; STARTING LBA; ALLOCATION LENGTH.
        sa_cmd("GET LBA STATUS", Read, QUICK, &[0x9E, 0x12, F, F, F, F, F, F, F, F, F, F, F, F, 0, C]),
        // SELECT REPORT; ALLOCATION LENGTH.
        cmd("REPORT LUNS", Read, QUICK, &[0xA0, 0, F, 0, 0, 0, F, F, F, F, 0, C]),
        // SERVICE ACTION; RCTD, REPORTING OPTIONS; REQUESTED OPERATION CODE; REQUESTED SERVICE
        // ACTION; ALLOCATION LENGTH.
        sa_cmd("REPORT SUPPORTED OPERATION CODES", Read, QUICK, &[0xA3, 0x0C, 0x87, F, F, F, F, F, F, F, 0, C]),
        // SERVICE ACTION; REPD; ALLOCATION LENGTH.
        sa_cmd("REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS", Read, QUICK, &[0xA3, 0x0D, 0x80, 0, 0, 0, F, F, F, F, 0, C]),
        // DPO, FUA; LBA; TRANSFER LENGTH (4 bytes).
        cmd("READ(12)", Read, MEDIA, &[0xA8, 0x18, F, F, F, F, F, F, F, F, 0, C]),
        cmd("WRITE(12)", Write, MEDIA, &[0xAA, 0x18, F, F, F, F, F, F, F, F, 0, C]),
        cmd("WRITE AND VERIFY(12)", Write, MEDIA, &[0xAE, 0x16, F, F, F, F, F, F, F, F, 0, C]),
        cmd("VERIFY(12)", Write, MEDIA, &[0xAF, 0x16, F, F, F, F, F, F, F, F, 0, C]),
        // REQ_PLIST, REQ_GLIST, DEFECT LIST FORMAT; ALLOCATION LENGTH (the list is empty, so the
        // ADDRESS DESCRIPTOR INDEX is not looked at).
        cmd("READ DEFECT DATA(12)", Read, QUICK, &[0xB7, 0x1F, 0, 0, 0, 0, F, F, F, F, 0, C]),
    ]
};

/// `true` when `opcode` is implemented with service actions.
pub(crate) fn has_service_actions(opcode: u8) -> bool {
    COMMANDS
        .iter()
        .any(|c| c.opcode == opcode && c.service_action.is_some())
}

/// The command a CDB names: its operation code, plus the SERVICE ACTION field (byte 1, bits
/// 4..0) for operation codes with service actions (MAINTENANCE IN, SERVICE ACTION IN (16),
/// PERSISTENT RESERVE IN/OUT, SANITIZE). `None` when the logical unit does not implement it.
pub(crate) fn lookup(cdb: &[u8]) -> Option<&'static CommandInfo> {
    let opcode = *cdb.first()?;
    let sa = cdb.get(1).map(|b| b & 0x1F);
    COMMANDS
        .iter()
        .find(|c| c.opcode == opcode && c.service_action.is_none_or(|s| Some(s) == sa))
}

/// Like [`lookup`], with the sense to return for an unimplemented command: INVALID COMMAND
/// OPERATION CODE for an unknown operation code, INVALID FIELD IN CDB (byte 1, bit 4) for an
/// unknown service action of a known one.
#[cfg(test)]
pub(crate) fn resolve(cdb: &[u8]) -> Result<&'static CommandInfo, Sense> {
    if let Some(c) = lookup(cdb) {
        return Ok(c);
    }
    match cdb.first() {
        Some(&op) if has_service_actions(op) => Err(Sense::invalid_cdb_field(1, Some(4))),
        _ => Err(Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE)),
    }
}

/// The direction of a CDB's data transfer, for a transport to check the READ and WRITE bits of
/// a SCSI command against. `None` when the logical unit does not implement the command (it will
/// refuse it, whatever the bits say).
///
/// VERIFY with BYTCHK = 00b and WRITE SAME (16) with NDOB set transfer nothing; every other
/// command has the direction of its table entry.
pub fn data_direction(cdb: &[u8]) -> Option<DataDirection> {
    let info = lookup(cdb)?;
    let b1 = byte(cdb, 1);
    let no_data = match info.opcode {
        0x2F | 0x8F | 0xAF => b1 & 0x06 == 0, // VERIFY, BYTCHK 00b
        0x93 => b1 & 0x01 != 0,               // WRITE SAME (16), NDOB
        _ => false,
    };
    Some(if no_data {
        DataDirection::None
    } else {
        info.direction
    })
}

/// CDB byte `i`, zero when the CDB is shorter.
fn byte(cdb: &[u8], i: usize) -> u8 {
    cdb.get(i).copied().unwrap_or(0)
}

/// Length of a command timeouts descriptor (SPC-4 §6.35.4), DESCRIPTOR LENGTH included.
const TIMEOUTS_LEN: usize = 12;

/// Appends the command timeouts descriptor of `c`.
fn push_timeouts(out: &mut Vec<u8>, c: &CommandInfo) {
    out.extend_from_slice(&[0x00, 0x0A, 0, 0]); // DESCRIPTOR LENGTH 0Ah; COMMAND SPECIFIC 0
    out.extend_from_slice(&c.nominal_timeout.to_be_bytes());
    out.extend_from_slice(&c.recommended_timeout.to_be_bytes());
}

/// REPORT SUPPORTED OPERATION CODES (MAINTENANCE IN A3h / 0Ch, SPC-4 r37 §6.35), whole; the
/// caller truncates it to the ALLOCATION LENGTH.
///
/// REPORTING OPTIONS:
/// - 000b: every command, 8-byte descriptors, or 20 bytes with a timeouts descriptor when RCTD
///   is set;
/// - 001b: the REQUESTED OPERATION CODE, which must not have service actions;
/// - 010b: the REQUESTED OPERATION CODE and REQUESTED SERVICE ACTION; the operation code must
///   have service actions;
/// - 011b: the operation code, with the service action when it has service actions (otherwise
///   the REQUESTED SERVICE ACTION is ignored).
///
/// The one-command formats answer SUPPORT 011b with the CDB usage data, or 001b (not supported)
/// for an operation code or service action the logical unit does not implement. Commands the
/// configuration switches off (see [`offered`]) are reported as not implemented.
///
/// # Errors
/// ILLEGAL REQUEST / INVALID FIELD IN CDB pointing at REPORTING OPTIONS (byte 2, bit 2) for
/// another reporting option, and for 001b / 010b when the implemented operation code does /
/// does not have service actions.
pub(crate) fn report_supported_opcodes(cdb: &[u8], cfg: &LuConfig) -> Result<Vec<u8>, Sense> {
    let rctd = byte(cdb, 2) & 0x80 != 0;
    let options = byte(cdb, 2) & 0x07;
    let opcode = byte(cdb, 3);
    let sa = u16::from_be_bytes([byte(cdb, 4), byte(cdb, 5)]);
    let bad_options = Sense::invalid_cdb_field(2, Some(2));
    let commands = || COMMANDS.iter().filter(|c| offered(c, cfg));
    let known = commands().any(|c| c.opcode == opcode);
    let with_sa = has_service_actions(opcode);
    let by_sa = |sa: u16| {
        commands().find(|c| c.opcode == opcode && c.service_action.map(u16::from) == Some(sa))
    };
    let without_sa = || commands().find(|c| c.opcode == opcode && c.service_action.is_none());
    let found = match options {
        0b000 => return Ok(all_commands(rctd, commands())),
        0b001 if with_sa => return Err(bad_options),
        0b001 => without_sa(),
        0b010 if known && !with_sa => return Err(bad_options),
        0b010 => by_sa(sa),
        0b011 if with_sa => by_sa(sa),
        0b011 => without_sa(),
        _ => return Err(bad_options),
    };
    Ok(one_command(found, rctd))
}

/// Whether the logical unit serves `c` with configuration `cfg`: WRITE ATOMIC (16) only with a
/// non-zero MAXIMUM ATOMIC TRANSFER LENGTH (otherwise it is refused as an unknown operation code).
fn offered(c: &CommandInfo, cfg: &LuConfig) -> bool {
    c.opcode != crate::cdb::opcode::WRITE_ATOMIC_16 || cfg.max_atomic_blocks != 0
}

/// The all_commands parameter data for `commands`.
fn all_commands<'a>(rctd: bool, commands: impl Iterator<Item = &'a CommandInfo>) -> Vec<u8> {
    let each = 8 + if rctd { TIMEOUTS_LEN } else { 0 };
    let mut out = Vec::with_capacity(4 + each * COMMANDS.len());
    out.extend_from_slice(&[0; 4]);
    for c in commands {
        let sa = c.service_action.map_or(0, u16::from).to_be_bytes();
        let flags = (u8::from(rctd) << 1) | u8::from(c.service_action.is_some()); // CTDP, SERVACTV
        out.extend_from_slice(&[c.opcode, 0, sa[0], sa[1], 0, flags, 0, c.cdb_len]);
        if rctd {
            push_timeouts(&mut out, c);
        }
    }
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    out[0..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// The one_command parameter data for `c` (`None`: not supported).
fn one_command(c: Option<&CommandInfo>, rctd: bool) -> Vec<u8> {
    let Some(c) = c else {
        return vec![0, 0x01, 0, 0]; // SUPPORT 001b, no CDB usage data
    };
    let ctdp = if rctd { 0x80 } else { 0 };
    let mut out = Vec::with_capacity(4 + c.usage.len() + TIMEOUTS_LEN);
    out.extend_from_slice(&[0, ctdp | 0x03, 0, c.cdb_len]); // SUPPORT 011b, CDB SIZE
    out.extend_from_slice(c.usage);
    if rctd {
        push_timeouts(&mut out, c);
    }
    out
}

/// Task management functions the transport implements (SPC-4 §6.36, byte 0): ABORT TASK (ATS),
/// ABORT TASK SET (ATSS), CLEAR TASK SET (CTSS), LOGICAL UNIT RESET (LURS) and target reset
/// (TRS). CLEAR ACA (no NACA support), QUERY TASK and the wakeup function are not implemented.
const TMF_SUPPORTED: u8 = 0x80 | 0x40 | 0x10 | 0x08 | 0x02;

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS (MAINTENANCE IN A3h / 0Dh, SPC-4 r37 §6.36),
/// whole; the caller truncates it to the ALLOCATION LENGTH.
///
/// The basic format is 4 bytes. With REPD set, the 16-byte extended format, whose TMFTMOV bit is
/// clear: no timeouts are reported. Byte 1 (QUERY ASYNCHRONOUS EVENT, QUERY TASK SET, I_T NEXUS
/// RESET) is zero: iSCSI has none of them.
pub(crate) fn report_supported_tmf(cdb: &[u8]) -> Result<Vec<u8>, Sense> {
    let repd = byte(cdb, 2) & 0x80 != 0;
    let mut out = vec![TMF_SUPPORTED, 0, 0, 0];
    if repd {
        out[3] = 0x0C; // ADDITIONAL DATA LENGTH
        out.resize(16, 0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rsoc(rctd: bool, options: u8, opcode: u8, sa: u16) -> Result<Vec<u8>, Sense> {
        let mut cdb = [0u8; 12];
        cdb[0] = 0xA3;
        cdb[1] = 0x0C;
        cdb[2] = (u8::from(rctd) << 7) | options;
        cdb[3] = opcode;
        cdb[4..6].copy_from_slice(&sa.to_be_bytes());
        cdb[6..10].copy_from_slice(&65535u32.to_be_bytes());
        report_supported_opcodes(&cdb, &LuConfig::new("opcodes"))
    }

    fn cdb_for(c: &CommandInfo) -> Vec<u8> {
        let mut cdb = vec![0u8; usize::from(c.cdb_len)];
        cdb[0] = c.opcode;
        if let Some(sa) = c.service_action {
            cdb[1] = sa;
        }
        cdb
    }

    #[test]
    fn table_is_sorted_and_consistent() {
        assert!(
            COMMANDS.windows(2).all(|w| {
                (w[0].opcode, w[0].service_action) < (w[1].opcode, w[1].service_action)
            })
        );
        for c in COMMANDS {
            assert_eq!(usize::from(c.cdb_len), c.usage.len(), "{}", c.name);
            assert_eq!(c.usage[0], c.opcode, "{}", c.name);
            let expected_len = match c.opcode >> 5 {
                0 => 6,
                1 | 2 => 10,
                4 => 16,
                5 => 12,
                _ => 0,
            };
            assert_eq!(usize::from(c.cdb_len), expected_len, "{}", c.name);
            assert_eq!(
                c.usage[usize::from(c.cdb_len) - 1],
                C,
                "{}: CONTROL",
                c.name
            );
            if let Some(sa) = c.service_action {
                assert_eq!(c.usage[1] & 0x1F, sa, "{}", c.name);
            }
            // An operation code either always or never has service actions.
            assert_eq!(
                c.service_action.is_some(),
                has_service_actions(c.opcode),
                "{}",
                c.name
            );
            assert!(c.nominal_timeout <= c.recommended_timeout);
            assert!(!c.name.is_empty());
        }
    }

    #[test]
    fn table_lists_exactly_the_implemented_set() {
        let got: Vec<(u8, Option<u8>)> = COMMANDS
            .iter()
            .map(|c| (c.opcode, c.service_action))
            .collect();
        let mut want: Vec<(u8, Option<u8>)> = [
            0x00, 0x03, 0x08, 0x0A, 0x12, 0x15, 0x16, 0x17, 0x1A, 0x1B, 0x1E, 0x25, 0x28, 0x2A,
            0x2E, 0x2F, 0x34, 0x35, 0x37, 0x41, 0x42, 0x55, 0x56, 0x57, 0x5A, 0x88, 0x89, 0x8A,
            0x8B, 0x8E, 0x8F, 0x90, 0x91, 0x93, 0x9C, 0xA0, 0xA8, 0xAA, 0xAE, 0xAF, 0xB7,
        ]
        .iter()
        .map(|&op| (op, None))
        .collect();
        want.extend([0x01, 0x02, 0x1F].map(|sa| (0x48, Some(sa))));
        want.extend((0..=3).map(|sa| (0x5E, Some(sa))));
        want.extend((0..=7).map(|sa| (0x5F, Some(sa))));
        want.extend([
            (0x9E, Some(0x10)),
            (0x9E, Some(0x12)),
            (0xA3, Some(0x0C)),
            (0xA3, Some(0x0D)),
        ]);
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn lookup_and_resolve() {
        for c in COMMANDS {
            let cdb = cdb_for(c);
            assert_eq!(lookup(&cdb), Some(c), "{}", c.name);
            assert_eq!(resolve(&cdb), Ok(c));
        }
        // Flag bits next to the service action do not change it.
        assert_eq!(
            lookup(&[0x48, 0x80 | 0x20 | 0x02]).map(|c| c.name),
            Some("SANITIZE BLOCK ERASE")
        );
        assert_eq!(
            lookup(&[0x9E, 0xF0]).map(|c| c.name),
            Some("READ CAPACITY(16)")
        );
        assert_eq!(lookup(&[0x9E, 0x11]), None);
        assert_eq!(lookup(&[0x9E]), None, "service action missing");
        assert_eq!(lookup(&[]), None);
        assert_eq!(lookup(&[0xFF, 0]), None);
        assert_eq!(
            resolve(&[0x9E, 0x11]),
            Err(Sense::invalid_cdb_field(1, Some(4)))
        );
        assert_eq!(
            resolve(&[0x48, 0x00]),
            Err(Sense::invalid_cdb_field(1, Some(4)))
        );
        for op in [0x04, 0x7F, 0xA4, 0xFF] {
            assert_eq!(
                resolve(&[op, 0]),
                Err(Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE))
            );
        }
        assert_eq!(
            resolve(&[]),
            Err(Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE))
        );
    }

    /// (opcode, SA, CTDP, SERVACTV, CDB length, timeouts) of each all_commands descriptor.
    type Entry = (u8, u16, bool, bool, u16, Option<(u32, u32)>);

    fn parse_all(d: &[u8]) -> Vec<Entry> {
        let len = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize;
        assert_eq!(len + 4, d.len(), "COMMAND DATA LENGTH");
        let mut at = 4;
        let mut v = Vec::new();
        while at < d.len() {
            let e = &d[at..at + 8];
            assert_eq!((e[1], e[4], e[5] & 0xFC), (0, 0, 0), "reserved bits");
            let ctdp = e[5] & 0x02 != 0;
            at += 8;
            let to = ctdp.then(|| {
                let t = &d[at..at + TIMEOUTS_LEN];
                assert_eq!(u16::from_be_bytes([t[0], t[1]]), 0x0A);
                at += TIMEOUTS_LEN;
                (
                    u32::from_be_bytes([t[4], t[5], t[6], t[7]]),
                    u32::from_be_bytes([t[8], t[9], t[10], t[11]]),
                )
            });
            v.push((
                e[0],
                u16::from_be_bytes([e[2], e[3]]),
                ctdp,
                e[5] & 1 != 0,
                u16::from_be_bytes([e[6], e[7]]),
                to,
            ));
        }
        v
    }

    #[test]
    fn all_commands_format() {
        for rctd in [false, true] {
            let d = rsoc(rctd, 0, 0, 0).unwrap();
            assert_eq!(d.len(), 4 + COMMANDS.len() * if rctd { 20 } else { 8 });
            let entries = parse_all(&d);
            assert_eq!(entries.len(), COMMANDS.len());
            for (e, c) in entries.iter().zip(COMMANDS) {
                assert_eq!(e.0, c.opcode);
                assert_eq!(e.1, c.service_action.map_or(0, u16::from));
                assert_eq!(e.2, rctd, "CTDP");
                assert_eq!(e.3, c.service_action.is_some(), "SERVACTV");
                assert_eq!(e.4, u16::from(c.cdb_len));
                assert_eq!(
                    e.5,
                    rctd.then_some((c.nominal_timeout, c.recommended_timeout))
                );
            }
        }
        // The requested operation code and service action are ignored.
        assert_eq!(rsoc(false, 0, 0x28, 7), rsoc(false, 0, 0, 0));
    }

    fn check_one(d: &[u8], c: &CommandInfo, rctd: bool) {
        assert_eq!(d[0], 0);
        assert_eq!(d[1] & 0x07, 0b011, "SUPPORT: supported");
        assert_eq!(d[1] & 0x80 != 0, rctd, "CTDP");
        let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
        assert_eq!(len, usize::from(c.cdb_len));
        assert_eq!(&d[4..4 + len], c.usage);
        assert_eq!(d[4], c.opcode);
        if rctd {
            assert_eq!(d.len(), 4 + len + TIMEOUTS_LEN);
            assert_eq!(&d[4 + len..4 + len + 2], &[0, 0x0A]);
        } else {
            assert_eq!(d.len(), 4 + len);
        }
    }

    #[test]
    fn one_command_for_every_entry() {
        for c in COMMANDS {
            let sa = c.service_action.map_or(0, u16::from);
            for rctd in [false, true] {
                let (good, bad) = if c.service_action.is_some() {
                    (0b010, 0b001)
                } else {
                    (0b001, 0b010)
                };
                check_one(&rsoc(rctd, good, c.opcode, sa).unwrap(), c, rctd);
                check_one(&rsoc(rctd, 0b011, c.opcode, sa).unwrap(), c, rctd);
                // The option that does not fit the command is refused.
                assert_eq!(
                    rsoc(rctd, bad, c.opcode, sa),
                    Err(Sense::invalid_cdb_field(2, Some(2))),
                    "{}",
                    c.name
                );
            }
            if c.service_action.is_none() {
                // 001b and 011b ignore the requested service action of such a command.
                check_one(&rsoc(false, 0b001, c.opcode, 0x1234).unwrap(), c, false);
                check_one(&rsoc(false, 0b011, c.opcode, 0x1234).unwrap(), c, false);
            }
        }
    }

    #[test]
    fn one_command_not_supported() {
        let not_supported = vec![0, 0x01, 0, 0];
        for options in [0b001, 0b010, 0b011] {
            for op in [0x04, 0x7F, 0xA4, 0xFF] {
                assert_eq!(rsoc(false, options, op, 0).unwrap(), not_supported);
                assert_eq!(rsoc(true, options, op, 0).unwrap(), not_supported);
            }
        }
        // Known operation codes, unknown service actions.
        assert_eq!(rsoc(false, 0b010, 0x9E, 0x11).unwrap(), not_supported);
        assert_eq!(rsoc(false, 0b011, 0x5F, 0x09).unwrap(), not_supported);
        // REPLACE LOST RESERVATION: persistent reservations are never lost, the service action
        // is refused, so it is not reported.
        assert_eq!(rsoc(false, 0b010, 0x5F, 0x08).unwrap(), not_supported);
        assert_eq!(
            rsoc(false, 0b010, 0x48, 0x0100 | 0x01).unwrap(),
            not_supported
        );
    }

    /// WRITE ATOMIC (16) is reported only while the configuration enables it.
    #[test]
    fn write_atomic_follows_the_configuration() {
        let mut cfg = LuConfig::new("opcodes");
        let cdb = |options: u8| {
            let mut cdb = [0u8; 12];
            cdb[..4].copy_from_slice(&[0xA3, 0x0C, options, 0x9C]);
            cdb[6..10].copy_from_slice(&65535u32.to_be_bytes());
            cdb
        };
        let listed = |cfg: &LuConfig| {
            let d = report_supported_opcodes(&cdb(0), cfg).unwrap();
            parse_all(&d).iter().any(|e| e.0 == 0x9C)
        };
        assert!(listed(&cfg));
        let one = report_supported_opcodes(&cdb(1), &cfg).unwrap();
        assert_eq!(one[1] & 7, 0b011);
        cfg.max_atomic_blocks = 0;
        assert!(!listed(&cfg));
        for options in [0b001, 0b011] {
            let one = report_supported_opcodes(&cdb(options), &cfg).unwrap();
            assert_eq!(one, vec![0, 0x01, 0, 0]);
        }
        let all = report_supported_opcodes(&cdb(0), &cfg).unwrap();
        assert_eq!(all.len(), 4 + 8 * (COMMANDS.len() - 1));
    }

    #[test]
    fn invalid_reporting_options() {
        for options in 0b100..=0b111 {
            assert_eq!(
                rsoc(false, options, 0, 0),
                Err(Sense::invalid_cdb_field(2, Some(2)))
            );
        }
    }

    #[test]
    fn task_management_functions() {
        let mut cdb = [0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0];
        let d = report_supported_tmf(&cdb).unwrap();
        assert_eq!(d.len(), 4);
        let b = d[0];
        assert_ne!(b & 0x80, 0, "ATS");
        assert_ne!(b & 0x40, 0, "ATSS");
        assert_eq!(b & 0x20, 0, "CACAS");
        assert_ne!(b & 0x10, 0, "CTSS");
        assert_ne!(b & 0x08, 0, "LURS");
        assert_eq!(b & 0x04, 0, "QTS");
        assert_ne!(b & 0x02, 0, "TRS");
        assert_eq!(b & 0x01, 0, "WAKES");
        assert_eq!(&d[1..], &[0, 0, 0]);
        cdb[2] = 0x80; // REPD
        let d = report_supported_tmf(&cdb).unwrap();
        assert_eq!(d.len(), 16);
        assert_eq!(d[0], b);
        assert_eq!(usize::from(d[3]) + 4, d.len(), "ADDITIONAL DATA LENGTH");
        assert_eq!(d[4] & 1, 0, "TMFTMOV");
    }

    #[test]
    fn data_direction_of_every_entry() {
        for c in COMMANDS {
            let cdb = cdb_for(c);
            let want = match c.opcode {
                0x2F | 0x8F | 0xAF => DataDirection::None, // BYTCHK 00b
                _ => c.direction,
            };
            assert_eq!(data_direction(&cdb), Some(want), "{}", c.name);
        }
        for (op, len) in [(0x2F, 10), (0x8F, 16), (0xAF, 12)] {
            let mut cdb = vec![0u8; len];
            cdb[0] = op;
            cdb[1] = 0x02; // BYTCHK 01b
            assert_eq!(data_direction(&cdb), Some(DataDirection::Write));
            cdb[1] = 0x06; // BYTCHK 11b
            assert_eq!(data_direction(&cdb), Some(DataDirection::Write));
        }
        // WRITE SAME (16) with NDOB sends no data-out buffer.
        let mut ws = [0u8; 16];
        ws[0] = 0x93;
        assert_eq!(data_direction(&ws), Some(DataDirection::Write));
        ws[1] = 0x08 | 0x01;
        assert_eq!(data_direction(&ws), Some(DataDirection::None));
        let dir = |cdb: &[u8]| data_direction(cdb);
        assert_eq!(
            dir(&[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(DataDirection::Read)
        );
        assert_eq!(
            dir(&[0x2A, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(DataDirection::Write)
        );
        assert_eq!(dir(&[0x00, 0, 0, 0, 0, 0]), Some(DataDirection::None));
        assert_eq!(dir(&[0x12, 1, 0x80, 0, 0xFF, 0]), Some(DataDirection::Read));
        assert_eq!(
            dir(&[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0]),
            Some(DataDirection::Write)
        );
        assert_eq!(dir(&[0xFF, 0, 0, 0, 0, 0]), None);
        assert_eq!(dir(&[0x9E, 0x1F]), None);
        assert_eq!(dir(&[]), None);
    }

    proptest! {
        #[test]
        fn random_cdbs_never_panic(cdb in proptest::collection::vec(any::<u8>(), 0..20)) {
            let _ = lookup(&cdb);
            let _ = resolve(&cdb);
            let _ = data_direction(&cdb);
            if let Ok(d) = report_supported_opcodes(&cdb, &LuConfig::new("opcodes")) {
                prop_assert!(d.len() >= 4);
            }
            prop_assert!(report_supported_tmf(&cdb).is_ok());
        }

        #[test]
        fn random_rsoc_requests_are_well_formed(rctd: bool, options in 0u8..8, opcode: u8, sa: u16) {
            match rsoc(rctd, options, opcode, sa) {
                Ok(d) if options == 0 => { parse_all(&d); }
                Ok(d) => {
                    let support = d[1] & 7;
                    prop_assert!(support == 1 || support == 3);
                    let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
                    let ctdp = d[1] & 0x80 != 0;
                    prop_assert_eq!(d.len(), 4 + len + if ctdp { TIMEOUTS_LEN } else { 0 });
                    if support == 3 {
                        prop_assert_eq!(d[4], opcode);
                    }
                }
                Err(e) => prop_assert_eq!(e, Sense::invalid_cdb_field(2, Some(2))),
            }
        }
    }
}
