//! Reservations of one logical unit: SPC-2 RESERVE/RELEASE and SPC-4 persistent reservations
//! (SPC-4 §5.13, PERSISTENT RESERVE IN §6.15, PERSISTENT RESERVE OUT §6.16).
//!
//! [`Reservations`] is plain state with no I/O: the logical-unit core asks
//! [`Reservations::check`] before running any command, routes the reservation commands to their
//! entries here, and establishes the unit attentions that PERSISTENT RESERVE OUT hands back.
//!
//! # Decisions
//! - **APTPL** (persist through power loss) is not supported: the state lives in memory only.
//!   REPORT CAPABILITIES reports PTPL_C = 0, a REGISTER, REGISTER AND IGNORE EXISTING KEY or
//!   REGISTER AND MOVE with APTPL = 1 fails with INVALID FIELD IN PARAMETER LIST, and
//!   [`Reservations::power_on`] forgets everything.
//! - **SPEC_I_PT** is supported (SIP_C = 1) for iSCSI TransportIDs in format 01b (initiator port
//!   name with its ISID): each listed initiator port is registered through the target port the
//!   command came in on (or through every target port with ALL_TG_PT). Format 00b names an
//!   initiator device rather than a port, and this logical unit keeps registrations per port, so
//!   it is refused with INVALID FIELD IN PARAMETER LIST, as are other protocols. The same applies
//!   to the TransportID of REGISTER AND MOVE.
//! - **ALL_TG_PT** is honoured (ATP_C = 1): such a registration covers the initiator port through
//!   every target port. An initiator port may not hold both kinds at once: registering with
//!   ALL_TG_PT while the port is already registered through another target port is a
//!   RESERVATION CONFLICT.
//! - **CRH** = 1: RESERVE/RELEASE (SPC-2) from a persistent reservation holder, or from a
//!   registrant of a registrants-only or all-registrants reservation, completes with GOOD and
//!   changes nothing; any other RESERVE/RELEASE while registrations exist is a RESERVATION
//!   CONFLICT (SPC-4 §5.13.3). While an SPC-2 reservation exists, PERSISTENT RESERVE IN and OUT
//!   conflict for every I_T nexus, the holder included (SPC-2 §5.5.1).
//! - **ALLOW COMMANDS** = 011b: TEST UNIT READY passes Write Exclusive and Exclusive Access
//!   reservations, and MODE SENSE, READ BUFFER, RECEIVE DIAGNOSTIC RESULTS, READ ATTRIBUTE,
//!   RECEIVE COPY RESULTS, REPORT SUPPORTED OPERATION CODES / TASK MANAGEMENT FUNCTIONS and
//!   READ DEFECT DATA are treated like reads (they pass Write Exclusive type reservations).
//! - At most [`MAX_REGISTRATIONS`] registrations; more fail with INSUFFICIENT REGISTRATION
//!   RESOURCES.

use crate::{
    lu::{Failure, UnitAttention},
    nexus::{ItNexus, PROTOCOL_ID_ISCSI, iscsi_transport_id},
    sense::{Asc, Sense},
};

#[cfg(test)]
mod tests;

/// Most registrations one logical unit keeps; more fail with INSUFFICIENT REGISTRATION RESOURCES.
pub(crate) const MAX_REGISTRATIONS: usize = 1024;

/// Longest initiator port name accepted from a TransportID (an iSCSI name is at most 223 bytes,
/// plus `,i,0x` and twelve hex digits).
const MAX_PORT_NAME: usize = 255;

/// 26/04 INVALID RELEASE OF PERSISTENT RESERVATION.
const INVALID_RELEASE: Asc = Asc::new(0x26, 0x04);

/// PERSISTENT RESERVE IN service actions.
mod sa_in {
    pub(super) const READ_KEYS: u8 = 0x00;
    pub(super) const READ_RESERVATION: u8 = 0x01;
    pub(super) const REPORT_CAPABILITIES: u8 = 0x02;
    pub(super) const READ_FULL_STATUS: u8 = 0x03;
}

/// PERSISTENT RESERVE OUT service actions.
mod sa_out {
    pub(super) const REGISTER: u8 = 0x00;
    pub(super) const RESERVE: u8 = 0x01;
    pub(super) const RELEASE: u8 = 0x02;
    pub(super) const CLEAR: u8 = 0x03;
    pub(super) const PREEMPT: u8 = 0x04;
    pub(super) const PREEMPT_AND_ABORT: u8 = 0x05;
    pub(super) const REGISTER_AND_IGNORE: u8 = 0x06;
    pub(super) const REGISTER_AND_MOVE: u8 = 0x07;
}

/// The only persistent reservation scope SPC-4 still defines: the whole logical unit.
const LU_SCOPE: u8 = 0;

/// Persistent reservation type (SPC-4 §6.16.3, table 175).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PrType {
    /// Only the holder may write; everyone may read.
    WriteExclusive,
    /// Only the holder may read or write.
    ExclusiveAccess,
    /// Only registrants may write; everyone may read.
    WriteExclusiveRegistrantsOnly,
    /// Only registrants may read or write.
    ExclusiveAccessRegistrantsOnly,
    /// Like registrants-only, but every registrant is a holder.
    WriteExclusiveAllRegistrants,
    /// Like registrants-only, but every registrant is a holder.
    ExclusiveAccessAllRegistrants,
}

impl PrType {
    /// Every type, in code order.
    pub(crate) const ALL: [Self; 6] = [
        Self::WriteExclusive,
        Self::ExclusiveAccess,
        Self::WriteExclusiveRegistrantsOnly,
        Self::ExclusiveAccessRegistrantsOnly,
        Self::WriteExclusiveAllRegistrants,
        Self::ExclusiveAccessAllRegistrants,
    ];

    /// The type with this TYPE field value.
    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// The TYPE field value.
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::WriteExclusive => 0x1,
            Self::ExclusiveAccess => 0x3,
            Self::WriteExclusiveRegistrantsOnly => 0x5,
            Self::ExclusiveAccessRegistrantsOnly => 0x6,
            Self::WriteExclusiveAllRegistrants => 0x7,
            Self::ExclusiveAccessAllRegistrants => 0x8,
        }
    }

    /// Every registrant holds the reservation.
    pub(crate) fn all_registrants(self) -> bool {
        matches!(
            self,
            Self::WriteExclusiveAllRegistrants | Self::ExclusiveAccessAllRegistrants
        )
    }

    /// Registrants-only or all-registrants: registered I_T nexuses get full access.
    pub(crate) fn for_registrants(self) -> bool {
        !matches!(self, Self::WriteExclusive | Self::ExclusiveAccess)
    }

    /// The Exclusive Access family: reads are restricted too.
    pub(crate) fn exclusive_access(self) -> bool {
        matches!(
            self,
            Self::ExclusiveAccess
                | Self::ExclusiveAccessRegistrantsOnly
                | Self::ExclusiveAccessAllRegistrants
        )
    }
}

/// How a command fares against reservations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Allowed through every persistent reservation.
    Always,
    /// Reads the medium (or is treated like a read): passes Write Exclusive type reservations.
    Read,
    /// Writes the medium or changes the device: only holders and registrants of
    /// registrants-only / all-registrants reservations.
    Write,
    /// PERSISTENT RESERVE IN.
    PersistentIn,
    /// PERSISTENT RESERVE OUT: its service actions check the registration themselves.
    PersistentOut,
    /// RESERVE(6)/(10).
    Reserve,
    /// RELEASE(6)/(10).
    Release,
}

/// Classifies a CDB for the persistent reservation conflict check (SPC-4 §5.13.1 table 66,
/// SBC-3 §4.17 table 13). Unknown operation codes (and an empty CDB) are [`Class::Write`].
fn classify(cdb: &[u8]) -> Class {
    let byte = |i: usize| cdb.get(i).copied().unwrap_or(0);
    let Some(&opcode) = cdb.first() else {
        return Class::Write;
    };
    let sa5 = byte(1) & 0x1F;
    match opcode {
        // TEST UNIT READY, REQUEST SENSE, INQUIRY, READ CAPACITY(10), LOG SENSE,
        // ACCESS CONTROL IN/OUT, REPORT LUNS, SECURITY PROTOCOL IN.
        0x00 | 0x03 | 0x12 | 0x25 | 0x4D | 0x86 | 0x87 | 0xA0 | 0xA2 => Class::Always,
        0x5E => Class::PersistentIn,
        0x5F => Class::PersistentOut,
        0x16 | 0x56 => Class::Reserve,
        0x17 | 0x57 => Class::Release,
        // PREVENT ALLOW MEDIUM REMOVAL: allowing removal is harmless.
        0x1E if byte(4) & 0x03 == 0 => Class::Always,
        // START STOP UNIT with START = 1 and POWER CONDITION = 0.
        0x1B if byte(4) & 0x01 == 1 && byte(4) >> 4 == 0 => Class::Always,
        // READ(6/10/12/16), VERIFY(10/12/16), PRE-FETCH(10/16), READ DEFECT DATA(10/12),
        // READ LONG(10), XDREAD(10), and the SPC commands that ALLOW COMMANDS = 011b lets through
        // Write Exclusive: MODE SENSE(6/10), READ BUFFER, RECEIVE DIAGNOSTIC RESULTS,
        // READ ATTRIBUTE, RECEIVE COPY RESULTS (THIRD-PARTY COPY IN).
        0x08 | 0x28 | 0xA8 | 0x88 | 0x2F | 0xAF | 0x8F | 0x34 | 0x90 | 0x37 | 0xB7 | 0x3E
        | 0x52 | 0x1A | 0x5A | 0x3C | 0x1C | 0x8C | 0x84 => Class::Read,
        // SERVICE ACTION IN(16): READ CAPACITY(16); READ LONG(16), GET LBA STATUS,
        // REPORT REFERRALS.
        0x9E => match sa5 {
            0x10 => Class::Always,
            0x11..=0x13 => Class::Read,
            _ => Class::Write,
        },
        // MAINTENANCE IN: REPORT IDENTIFYING INFORMATION, REPORT TARGET PORT GROUPS,
        // REPORT ALIASES, REPORT PRIORITY, REPORT TIMESTAMP, MANAGEMENT PROTOCOL IN; REPORT
        // SUPPORTED OPERATION CODES and REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS read-like.
        0xA3 => match sa5 {
            0x05 | 0x0A | 0x0B | 0x0E | 0x0F | 0x10 => Class::Always,
            0x0C | 0x0D => Class::Read,
            _ => Class::Write,
        },
        // SERVICE ACTION IN(12): READ MEDIA SERIAL NUMBER.
        0xAB if sa5 == 0x01 => Class::Always,
        // THIRD-PARTY COPY OUT: POPULATE TOKEN only reads.
        0x83 if sa5 == 0x10 => Class::Read,
        // Variable length: READ(32), VERIFY(32).
        0x7F if matches!(u16::from_be_bytes([byte(8), byte(9)]), 0x0009 | 0x000A) => Class::Read,
        _ => Class::Write,
    }
}

/// Commands another I_T nexus may still send while an SPC-2 reservation is held (SPC-2 §5.5.1
/// and annex B; SBC-2 READ CAPACITY and START STOP UNIT with START = 1).
fn legacy_allowed(cdb: &[u8]) -> bool {
    let byte = |i: usize| cdb.get(i).copied().unwrap_or(0);
    let sa5 = byte(1) & 0x1F;
    match byte(0) {
        // REQUEST SENSE, INQUIRY, RELEASE(6)/(10) (no-ops for a non-holder), READ CAPACITY(10),
        // LOG SENSE, REPORT LUNS.
        0x03 | 0x12 | 0x17 | 0x57 | 0x25 | 0x4D | 0xA0 => true,
        0x1E => byte(4) & 0x03 == 0,
        0x1B => byte(4) & 0x01 == 1 && byte(4) >> 4 == 0,
        0x9E => sa5 == 0x10,
        0xA3 => matches!(sa5, 0x05 | 0x0A),
        0xAB => sa5 == 0x01,
        _ => false,
    }
}

/// One registered I_T nexus (or, with ALL_TG_PT, initiator port).
#[derive(Clone, Debug)]
struct Registration {
    /// Stable identity (keys change, positions in the list shift).
    id: u64,
    /// The nexus that registered (its target port is ignored when `all_tg_pt`).
    nexus: ItNexus,
    /// The reservation key, never zero.
    key: u64,
    /// Registered through every target port.
    all_tg_pt: bool,
}

impl Registration {
    /// Whether this registration is the one of `nexus`.
    fn covers(&self, nexus: &ItNexus) -> bool {
        self.nexus
            .initiator_port()
            .eq_ignore_ascii_case(nexus.initiator_port())
            && (self.all_tg_pt || self.nexus.relative_target_port() == nexus.relative_target_port())
    }
}

/// The persistent reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Persistent {
    /// Its type (the scope is always the logical unit).
    kind: PrType,
    /// The registration that holds it; for all-registrants types, the one that established
    /// it (every registrant holds those).
    holder: u64,
}

impl Persistent {
    /// Whether `reg` is a reservation holder.
    fn held_by(&self, reg: &Registration) -> bool {
        self.kind.all_registrants() || self.holder == reg.id
    }
}

/// Every SPC-2 RESERVE/RELEASE and SPC-4 persistent reservation state of one logical unit.
#[derive(Debug, Default)]
pub(crate) struct Reservations {
    /// PRgeneration (SPC-4 §6.15.2).
    generation: u32,
    /// Registrations, in registration order; no two cover the same I_T nexus.
    registrations: Vec<Registration>,
    /// The persistent reservation, if any.
    reservation: Option<Persistent>,
    /// Next registration id.
    next_id: u64,
    /// The I_T nexus holding an SPC-2 RESERVE(6)/(10) reservation.
    legacy: Option<ItNexus>,
}

/// RESERVATION CONFLICT.
const CONFLICT: Failure = Failure::ReservationConflict;

/// INVALID FIELD IN CDB at `byte` (and `bit`).
fn cdb_field(byte: u16, bit: Option<u8>) -> Failure {
    Failure::Check(Sense::invalid_cdb_field(byte, bit))
}

/// INVALID FIELD IN PARAMETER LIST at `byte` (and `bit`).
fn param_field(byte: usize, bit: Option<u8>) -> Failure {
    Failure::Check(Sense::invalid_param_field(
        u16::try_from(byte).unwrap_or(u16::MAX),
        bit,
    ))
}

/// PARAMETER LIST LENGTH ERROR.
fn list_length() -> Failure {
    Failure::Check(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR))
}

/// INSUFFICIENT REGISTRATION RESOURCES.
fn no_room() -> Failure {
    Failure::Check(Sense::illegal(Asc::INSUFFICIENT_REGISTRATION_RESOURCES))
}

/// `N` big-endian bytes at `at`, zeros where `b` is too short.
fn be<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(s) = at.checked_add(N).and_then(|end| b.get(at..end)) {
        out.copy_from_slice(s);
    }
    out
}

/// The u64 at `at` (big-endian).
fn be_u64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(be(b, at))
}

/// The u32 at `at` (big-endian), as a `usize`.
fn be_len(b: &[u8], at: usize) -> usize {
    usize::try_from(u32::from_be_bytes(be(b, at))).unwrap_or(usize::MAX)
}

/// Reads the iSCSI TransportID at the start of `b` (SPC-4 §7.6.4.6), which sits at offset `at`
/// of the parameter list. Returns the initiator port name (`name,i,0x<isid>`, ISID in lower
/// case) and the TransportID's length. Only format 01b is accepted (see the module notes).
fn parse_transport_id(b: &[u8], at: usize) -> Result<(String, usize), Failure> {
    let bad = |off: usize| param_field(at.saturating_add(off), None);
    let head = b.get(..4).ok_or_else(|| bad(0))?;
    if head[0] & 0x0F != PROTOCOL_ID_ISCSI || head[0] >> 6 != 0b01 {
        return Err(bad(0));
    }
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let body = b.get(4..4 + len).ok_or_else(|| bad(2))?;
    let end = body.iter().position(|&c| c == 0).unwrap_or(body.len());
    let text = std::str::from_utf8(&body[..end]).map_err(|_| bad(4))?;
    if text.is_empty() || text.len() > MAX_PORT_NAME || !text.is_ascii() {
        return Err(bad(4));
    }
    let sep = text
        .to_ascii_lowercase()
        .rfind(",i,0x")
        .ok_or_else(|| bad(4))?;
    let (name, isid) = (&text[..sep], &text[sep + 5..]);
    if name.is_empty() || isid.len() != 12 || !isid.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad(4));
    }
    Ok((format!("{name},i,0x{}", isid.to_ascii_lowercase()), 4 + len))
}

/// The nexus of initiator port `port` through relative target port `target_port`.
fn nexus_of(port: &str, target_port: u16) -> ItNexus {
    ItNexus::new(port, target_port, iscsi_transport_id(port))
}

impl Reservations {
    /// No reservation, no registration, PRgeneration zero.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Conflict check run before every command (SPC-4 §5.13.1 table 66, SBC-3 table 13, and
    /// SPC-2 RESERVE(6)/(10) semantics). `cdb` is the whole CDB. Returns
    /// `Err(Failure::ReservationConflict)` when this nexus may not run this command.
    ///
    /// The core should refuse unsupported operation codes before asking: unknown codes count as
    /// writes here. PERSISTENT RESERVE OUT always passes (its service actions check the
    /// registration themselves), except while an SPC-2 reservation exists.
    pub(crate) fn check(&self, nexus: &ItNexus, cdb: &[u8]) -> Result<(), Failure> {
        let class = classify(cdb);
        match class {
            Class::Reserve => {
                if self.legacy_gate(nexus)? && self.legacy.as_ref().is_some_and(|h| h != nexus) {
                    return Err(CONFLICT);
                }
                return Ok(());
            }
            Class::Release => return self.legacy_gate(nexus).map(drop),
            _ => {}
        }
        if let Some(holder) = &self.legacy {
            return match class {
                Class::PersistentIn | Class::PersistentOut => Err(CONFLICT),
                _ if holder == nexus || legacy_allowed(cdb) => Ok(()),
                _ => Err(CONFLICT),
            };
        }
        let Some(res) = self.reservation else {
            return Ok(());
        };
        let reg = self.registration(nexus);
        if reg.is_some_and(|r| res.held_by(r)) {
            return Ok(());
        }
        let registrant = reg.is_some() && res.kind.for_registrants();
        match class {
            Class::Always | Class::PersistentIn | Class::PersistentOut => Ok(()),
            Class::Read if registrant || !res.kind.exclusive_access() => Ok(()),
            Class::Write if registrant => Ok(()),
            _ => Err(CONFLICT),
        }
    }

    /// PERSISTENT RESERVE IN (opcode 0x5E): READ KEYS, READ RESERVATION, REPORT CAPABILITIES,
    /// READ FULL STATUS. Returns the full parameter data (the caller truncates it to the
    /// ALLOCATION LENGTH). Unknown service action: ILLEGAL REQUEST / INVALID FIELD IN CDB.
    pub(crate) fn persistent_reserve_in(
        &self,
        _nexus: &ItNexus,
        cdb: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        if self.legacy.is_some() {
            return Err(CONFLICT);
        }
        match cdb.get(1).copied().unwrap_or(0) & 0x1F {
            sa_in::READ_KEYS => Ok(self.read_keys()),
            sa_in::READ_RESERVATION => Ok(self.read_reservation()),
            sa_in::REPORT_CAPABILITIES => Ok(Self::report_capabilities()),
            sa_in::READ_FULL_STATUS => Ok(self.read_full_status()),
            _ => Err(cdb_field(1, Some(4))),
        }
    }

    /// PERSISTENT RESERVE OUT (opcode 0x5F): REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT,
    /// PREEMPT AND ABORT (as PREEMPT; aborting the preempted nexuses' tasks is the transport's
    /// job: they are the ones given REGISTRATIONS PREEMPTED), REGISTER AND IGNORE EXISTING KEY,
    /// REGISTER AND MOVE. `params` is the parameter data received; fewer bytes than the
    /// PARAMETER LIST LENGTH is a PARAMETER LIST LENGTH ERROR. Returns the unit attentions to
    /// establish on other I_T nexuses.
    pub(crate) fn persistent_reserve_out(
        &mut self,
        nexus: &ItNexus,
        cdb: &[u8],
        params: &[u8],
    ) -> Result<Vec<UnitAttention>, Failure> {
        let byte = |i: usize| cdb.get(i).copied().unwrap_or(0);
        let sa = byte(1) & 0x1F;
        if sa > sa_out::REGISTER_AND_MOVE {
            return Err(cdb_field(1, Some(4)));
        }
        if self.legacy.is_some() {
            return Err(CONFLICT);
        }
        // SCOPE and TYPE matter to RESERVE, RELEASE and PREEMPT (AND ABORT) only.
        let kind = if matches!(
            sa,
            sa_out::RESERVE | sa_out::RELEASE | sa_out::PREEMPT | sa_out::PREEMPT_AND_ABORT
        ) {
            if byte(2) >> 4 != LU_SCOPE {
                return Err(cdb_field(2, Some(7)));
            }
            Some(PrType::from_code(byte(2) & 0x0F).ok_or_else(|| cdb_field(2, Some(3)))?)
        } else {
            None
        };
        let list_len = be_len(cdb, 5);
        let data = params.get(..list_len).ok_or_else(list_length)?;
        if sa == sa_out::REGISTER_AND_MOVE {
            return self.register_and_move(nexus, data);
        }
        if data.len() < 24 {
            return Err(list_length());
        }
        let flags = data[20];
        let spec_i_pt = flags & 0x08 != 0;
        if spec_i_pt && sa != sa_out::REGISTER {
            return Err(param_field(20, Some(3)));
        }
        let tids = if spec_i_pt {
            let tid_len = be_len(data, 24);
            if data.len() < 28 || 28usize.checked_add(tid_len) != Some(data.len()) {
                return Err(list_length());
            }
            Some(&data[28..])
        } else {
            if data.len() != 24 {
                return Err(list_length());
            }
            None
        };
        let registering = matches!(sa, sa_out::REGISTER | sa_out::REGISTER_AND_IGNORE);
        if registering && flags & 0x01 != 0 {
            return Err(param_field(20, Some(0)));
        }
        let key = be_u64(data, 0);
        let sark = be_u64(data, 8);
        let all_tg_pt = flags & 0x04 != 0;
        match (sa, kind) {
            (sa_out::REGISTER, _) => self.register(nexus, Some(key), sark, all_tg_pt, tids),
            (sa_out::REGISTER_AND_IGNORE, _) => self.register(nexus, None, sark, all_tg_pt, None),
            (sa_out::CLEAR, _) => self.clear(nexus, key),
            (sa_out::RESERVE, Some(kind)) => self.pr_reserve(nexus, key, kind),
            (sa_out::RELEASE, Some(kind)) => self.pr_release(nexus, key, kind),
            (_, Some(kind)) => self.preempt(nexus, key, sark, kind),
            (_, None) => Err(cdb_field(1, Some(4))),
        }
    }

    /// RESERVE(6) 0x16 / RESERVE(10) 0x56 (SPC-2): reserves the whole logical unit for this
    /// I_T nexus. RESERVATION CONFLICT if another nexus holds it, or if registrations exist
    /// (except the CRH = 1 cases, which complete with GOOD and change nothing). Third-party,
    /// extent and long-ID fields: INVALID FIELD IN CDB.
    pub(crate) fn reserve(&mut self, nexus: &ItNexus, cdb: &[u8]) -> Result<(), Failure> {
        check_legacy_cdb(cdb)?;
        if !self.legacy_gate(nexus)? {
            return Ok(());
        }
        match &self.legacy {
            Some(holder) if holder != nexus => Err(CONFLICT),
            _ => {
                self.legacy = Some(nexus.clone());
                Ok(())
            }
        }
    }

    /// RELEASE(6) 0x17 / RELEASE(10) 0x57 (SPC-2): releases the reservation if this nexus holds
    /// it; GOOD without effect otherwise. While registrations exist, RESERVATION CONFLICT except
    /// in the CRH = 1 cases (GOOD, nothing changes).
    pub(crate) fn release(&mut self, nexus: &ItNexus, cdb: &[u8]) -> Result<(), Failure> {
        check_legacy_cdb(cdb)?;
        if self.legacy_gate(nexus)? && self.legacy.as_ref() == Some(nexus) {
            self.legacy = None;
        }
        Ok(())
    }

    /// I_T nexus loss (including logout): drops an SPC-2 reservation it held. Persistent
    /// reservations and registrations stay.
    pub(crate) fn nexus_lost(&mut self, nexus: &ItNexus) {
        if self.legacy.as_ref() == Some(nexus) {
            self.legacy = None;
        }
    }

    /// Logical unit reset, target warm reset: drops the SPC-2 reservation. Persistent
    /// reservations and registrations stay (SPC-4 §5.13.1).
    pub(crate) fn reset(&mut self) {
        self.legacy = None;
    }

    /// Power on (a target cold reset is one): without APTPL support nothing persists, so every
    /// reservation and registration is dropped and PRgeneration starts again at zero.
    pub(crate) fn power_on(&mut self) {
        *self = Self::default();
    }

    /// Whether `nexus` is registered.
    #[cfg(test)]
    pub(crate) fn is_registered(&self, nexus: &ItNexus) -> bool {
        self.registration(nexus).is_some()
    }

    /// The I_T nexus holding an SPC-2 reservation, if any.
    #[cfg(test)]
    pub(crate) fn legacy_holder(&self) -> Option<&ItNexus> {
        self.legacy.as_ref()
    }

    // ---- state helpers ----

    /// The position of the registration of `nexus`.
    fn position(&self, nexus: &ItNexus) -> Option<usize> {
        self.registrations.iter().position(|r| r.covers(nexus))
    }

    /// The registration of `nexus`.
    fn registration(&self, nexus: &ItNexus) -> Option<&Registration> {
        self.registrations.iter().find(|r| r.covers(nexus))
    }

    /// Counts a successful registration change.
    fn bump(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// Adds a registration and returns its id. The caller checked room and uniqueness.
    fn add(&mut self, nexus: ItNexus, key: u64, all_tg_pt: bool) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.registrations.push(Registration {
            id,
            nexus,
            key,
            all_tg_pt,
        });
        id
    }

    /// Unit attentions with `asc` for every registrant except the one of `except`.
    fn attentions(&self, except: &ItNexus, asc: Asc) -> Vec<UnitAttention> {
        self.registrations
            .iter()
            .filter(|r| !r.covers(except))
            .map(|r| UnitAttention {
                nexus: r.nexus.clone(),
                asc,
            })
            .collect()
    }

    /// The gate SPC-4 §5.13.3 puts before RESERVE/RELEASE (SPC-2): `Ok(true)` to process the
    /// command as SPC-2 says, `Ok(false)` to complete it with GOOD and do nothing (CRH = 1),
    /// `Err` for RESERVATION CONFLICT (registrations exist).
    fn legacy_gate(&self, nexus: &ItNexus) -> Result<bool, Failure> {
        if self.registrations.is_empty() {
            return Ok(true);
        }
        if let (Some(res), Some(reg)) = (self.reservation, self.registration(nexus))
            && (res.held_by(reg) || res.kind.for_registrants())
        {
            return Ok(false);
        }
        Err(CONFLICT)
    }

    // ---- PERSISTENT RESERVE IN ----

    /// READ KEYS parameter data (SPC-4 §6.15.2).
    fn read_keys(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(8 + 8 * self.registrations.len());
        v.extend_from_slice(&self.generation.to_be_bytes());
        let len = 8 * self.registrations.len();
        v.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        for r in &self.registrations {
            v.extend_from_slice(&r.key.to_be_bytes());
        }
        v
    }

    /// READ RESERVATION parameter data (SPC-4 §6.15.3): the holder's key, or zero for an
    /// all-registrants reservation.
    fn read_reservation(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24);
        v.extend_from_slice(&self.generation.to_be_bytes());
        match self.reservation {
            None => v.extend_from_slice(&0u32.to_be_bytes()),
            Some(res) => {
                let key = if res.kind.all_registrants() {
                    0
                } else {
                    self.registrations
                        .iter()
                        .find(|r| r.id == res.holder)
                        .map_or(0, |r| r.key)
                };
                v.extend_from_slice(&16u32.to_be_bytes());
                v.extend_from_slice(&key.to_be_bytes());
                v.extend_from_slice(&[0; 5]); // obsolete, reserved
                v.push((LU_SCOPE << 4) | res.kind.code());
                v.extend_from_slice(&[0; 2]); // obsolete
            }
        }
        v
    }

    /// REPORT CAPABILITIES parameter data (SPC-4 §6.15.4).
    fn report_capabilities() -> Vec<u8> {
        // CRH, SIP_C, ATP_C; PTPL_C = 0.
        let caps = 0x10 | 0x08 | 0x04;
        // TMV, ALLOW COMMANDS = 011b; PTPL_A = 0.
        let valid = 0x80 | (0b011 << 4);
        // WR_EX_AR, EX_AC_RO, WR_EX_RO, EX_AC, WR_EX | EX_AC_AR.
        let mask = [0x80 | 0x40 | 0x20 | 0x08 | 0x02, 0x01];
        vec![0, 8, caps, valid, mask[0], mask[1], 0, 0]
    }

    /// READ FULL STATUS parameter data (SPC-4 §6.15.5): one descriptor per registration.
    fn read_full_status(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for r in &self.registrations {
            let holder = self.reservation.filter(|res| res.held_by(r));
            let tid = r.nexus.transport_id();
            body.extend_from_slice(&r.key.to_be_bytes());
            body.extend_from_slice(&[0; 4]);
            body.push((u8::from(r.all_tg_pt) << 1) | u8::from(holder.is_some()));
            body.push(holder.map_or(0, |res| (LU_SCOPE << 4) | res.kind.code()));
            body.extend_from_slice(&[0; 4]);
            body.extend_from_slice(&r.nexus.relative_target_port().to_be_bytes());
            body.extend_from_slice(&u32::try_from(tid.len()).unwrap_or(u32::MAX).to_be_bytes());
            body.extend_from_slice(tid);
        }
        let mut v = Vec::with_capacity(8 + body.len());
        v.extend_from_slice(&self.generation.to_be_bytes());
        v.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
        v.extend_from_slice(&body);
        v
    }

    // ---- PERSISTENT RESERVE OUT ----

    /// REGISTER (`key` is the RESERVATION KEY to check) or REGISTER AND IGNORE EXISTING KEY
    /// (`key` is `None`), SPC-4 §5.13.7. `tids` is the TransportID list after the
    /// TRANSPORTID PARAMETER DATA LENGTH field when SPEC_I_PT is set.
    fn register(
        &mut self,
        nexus: &ItNexus,
        key: Option<u64>,
        sark: u64,
        all_tg_pt: bool,
        tids: Option<&[u8]>,
    ) -> Result<Vec<UnitAttention>, Failure> {
        if let Some(i) = self.position(nexus) {
            if key.is_some_and(|k| k != self.registrations[i].key) {
                return Err(CONFLICT);
            }
            if tids.is_some() {
                return Err(param_field(20, Some(3)));
            }
            let attentions = if sark == 0 {
                self.unregister(i)
            } else {
                self.registrations[i].key = sark;
                Vec::new()
            };
            self.bump();
            return Ok(attentions);
        }
        if key.is_some_and(|k| k != 0) {
            return Err(CONFLICT);
        }
        if sark == 0 {
            return Ok(Vec::new());
        }
        let same_port =
            |r: &Registration, port: &str| r.nexus.initiator_port().eq_ignore_ascii_case(port);
        if all_tg_pt
            && self
                .registrations
                .iter()
                .any(|r| same_port(r, nexus.initiator_port()))
        {
            return Err(CONFLICT);
        }
        let mut more: Vec<ItNexus> = Vec::new();
        if let Some(list) = tids {
            let mut off = 0;
            while off < list.len() {
                let at = 28 + off;
                let (port, used) = parse_transport_id(&list[off..], at)?;
                off += used;
                if port.eq_ignore_ascii_case(nexus.initiator_port())
                    || more
                        .iter()
                        .any(|n| n.initiator_port().eq_ignore_ascii_case(&port))
                {
                    continue;
                }
                let dest = nexus_of(&port, nexus.relative_target_port());
                let taken = if all_tg_pt {
                    self.registrations.iter().any(|r| same_port(r, &port))
                } else {
                    self.registration(&dest).is_some()
                };
                if taken {
                    return Err(param_field(at, None));
                }
                if self.registrations.len() + more.len() + 1 >= MAX_REGISTRATIONS {
                    return Err(no_room());
                }
                more.push(dest);
            }
        }
        if self.registrations.len() + more.len() >= MAX_REGISTRATIONS {
            return Err(no_room());
        }
        self.add(nexus.clone(), sark, all_tg_pt);
        for dest in more {
            self.add(dest, sark, all_tg_pt);
        }
        self.bump();
        Ok(Vec::new())
    }

    /// Removes registration `i` (SPC-4 §5.13.11.3): a holder's reservation goes with it (for
    /// all-registrants types, with the last registrant), and releasing a registrants-only
    /// reservation this way tells the other registrants RESERVATIONS RELEASED.
    fn unregister(&mut self, i: usize) -> Vec<UnitAttention> {
        let gone = self.registrations.remove(i);
        let Some(res) = self.reservation else {
            return Vec::new();
        };
        if res.kind.all_registrants() {
            if self.registrations.is_empty() {
                self.reservation = None;
            }
            return Vec::new();
        }
        if res.holder != gone.id {
            return Vec::new();
        }
        self.reservation = None;
        if res.kind.for_registrants() {
            self.attentions(&gone.nexus, Asc::RESERVATIONS_RELEASED)
        } else {
            Vec::new()
        }
    }

    /// The registration of `nexus` if its key is `key`; RESERVATION CONFLICT otherwise.
    fn registered_as(&self, nexus: &ItNexus, key: u64) -> Result<&Registration, Failure> {
        self.registration(nexus)
            .filter(|r| r.key == key)
            .ok_or(CONFLICT)
    }

    /// RESERVE (SPC-4 §5.13.9). PRgeneration does not change.
    fn pr_reserve(
        &mut self,
        nexus: &ItNexus,
        key: u64,
        kind: PrType,
    ) -> Result<Vec<UnitAttention>, Failure> {
        let reg = self.registered_as(nexus, key)?;
        match self.reservation {
            Some(res) if res.held_by(reg) && res.kind == kind => Ok(Vec::new()),
            Some(_) => Err(CONFLICT),
            None => {
                self.reservation = Some(Persistent {
                    kind,
                    holder: reg.id,
                });
                Ok(Vec::new())
            }
        }
    }

    /// RELEASE (SPC-4 §5.13.11.2). PRgeneration does not change.
    fn pr_release(
        &mut self,
        nexus: &ItNexus,
        key: u64,
        kind: PrType,
    ) -> Result<Vec<UnitAttention>, Failure> {
        let reg = self.registered_as(nexus, key)?;
        let Some(res) = self.reservation.filter(|res| res.held_by(reg)) else {
            return Ok(Vec::new());
        };
        if res.kind != kind {
            return Err(Failure::Check(Sense::illegal(INVALID_RELEASE)));
        }
        self.reservation = None;
        if res.kind.for_registrants() {
            Ok(self.attentions(nexus, Asc::RESERVATIONS_RELEASED))
        } else {
            Ok(Vec::new())
        }
    }

    /// CLEAR (SPC-4 §5.13.11.6): drops the reservation and every registration.
    fn clear(&mut self, nexus: &ItNexus, key: u64) -> Result<Vec<UnitAttention>, Failure> {
        self.registered_as(nexus, key)?;
        let attentions = self.attentions(nexus, Asc::RESERVATIONS_PREEMPTED);
        self.registrations.clear();
        self.reservation = None;
        self.bump();
        Ok(attentions)
    }

    /// Removes every registration with key `sark` except the one of `nexus`; RESERVATION
    /// CONFLICT if no registration has that key. Returns REGISTRATIONS PREEMPTED for the
    /// removed ones.
    fn preempt_registrations(
        &mut self,
        nexus: &ItNexus,
        sark: u64,
    ) -> Result<Vec<UnitAttention>, Failure> {
        if !self.registrations.iter().any(|r| r.key == sark) {
            return Err(CONFLICT);
        }
        let mut attentions = Vec::new();
        self.registrations.retain(|r| {
            let gone = r.key == sark && !r.covers(nexus);
            if gone {
                attentions.push(UnitAttention {
                    nexus: r.nexus.clone(),
                    asc: Asc::REGISTRATIONS_PREEMPTED,
                });
            }
            !gone
        });
        Ok(attentions)
    }

    /// PREEMPT and PREEMPT AND ABORT (SPC-4 §5.13.11.4).
    fn preempt(
        &mut self,
        nexus: &ItNexus,
        key: u64,
        sark: u64,
        kind: PrType,
    ) -> Result<Vec<UnitAttention>, Failure> {
        let me = self.registered_as(nexus, key)?.id;
        let attentions = match self.reservation {
            // All-registrants with key zero: everyone else goes, a new reservation is ours.
            Some(res) if res.kind.all_registrants() && sark == 0 => {
                let attentions = self.attentions(nexus, Asc::REGISTRATIONS_PREEMPTED);
                self.registrations.retain(|r| r.id == me);
                self.reservation = Some(Persistent { kind, holder: me });
                attentions
            }
            // The holder's key: its registrations go and the reservation becomes ours.
            Some(res)
                if !res.kind.all_registrants()
                    && self
                        .registrations
                        .iter()
                        .any(|r| r.id == res.holder && r.key == sark) =>
            {
                let mut attentions = self.preempt_registrations(nexus, sark)?;
                self.reservation = Some(Persistent { kind, holder: me });
                if res.kind != kind {
                    attentions.extend(self.attentions(nexus, Asc::RESERVATIONS_RELEASED));
                }
                attentions
            }
            // Otherwise only registrations are preempted; a zero key names nobody.
            _ => {
                if sark == 0 {
                    return Err(param_field(8, None));
                }
                self.preempt_registrations(nexus, sark)?
            }
        };
        self.bump();
        Ok(attentions)
    }

    /// REGISTER AND MOVE (SPC-4 §5.13.8): registers the I_T nexus named by the TransportID and
    /// RELATIVE TARGET PORT IDENTIFIER with the service action key, makes it the reservation
    /// holder, and with UNREG unregisters the sender.
    fn register_and_move(
        &mut self,
        nexus: &ItNexus,
        data: &[u8],
    ) -> Result<Vec<UnitAttention>, Failure> {
        if data.len() < 24 || 24usize.checked_add(be_len(data, 20)) != Some(data.len()) {
            return Err(list_length());
        }
        if data[17] & 0x02 != 0 {
            return Err(param_field(17, Some(1)));
        }
        let unreg = data[17] & 0x01 != 0;
        let key = be_u64(data, 0);
        let sark = be_u64(data, 8);
        let target_port = u16::from_be_bytes([data[18], data[19]]);
        let me = self.registered_as(nexus, key)?.clone();
        let Some(res) = self.reservation else {
            return Err(CONFLICT);
        };
        if res.kind.all_registrants() || res.holder != me.id {
            return Err(CONFLICT);
        }
        if sark == 0 {
            return Err(param_field(8, None));
        }
        if target_port == 0 {
            return Err(param_field(18, None));
        }
        let (port, _) = parse_transport_id(&data[24..], 24)?;
        let dest = nexus_of(&port, target_port);
        if me.covers(&dest) {
            return Err(param_field(24, None));
        }
        let holder = match self.position(&dest) {
            Some(j) => {
                self.registrations[j].key = sark;
                self.registrations[j].id
            }
            None if self.registrations.len() >= MAX_REGISTRATIONS => return Err(no_room()),
            None => self.add(dest, sark, false),
        };
        self.reservation = Some(Persistent {
            kind: res.kind,
            holder,
        });
        if unreg {
            self.registrations.retain(|r| r.id != me.id);
        }
        self.bump();
        Ok(Vec::new())
    }
}

/// Refuses the RESERVE/RELEASE (6)/(10) fields this logical unit does not implement:
/// third-party reservations, LONGID, extents and a parameter list.
fn check_legacy_cdb(cdb: &[u8]) -> Result<(), Failure> {
    let byte = |i: usize| cdb.get(i).copied().unwrap_or(0);
    if matches!(byte(0), 0x56 | 0x57) {
        // 3RDPTY (bit 4), LONGID (bit 1), obsolete EXTENT (bit 0); PARAMETER LIST LENGTH.
        if byte(1) & 0x13 != 0 {
            return Err(cdb_field(1, None));
        }
        if byte(7) != 0 || byte(8) != 0 {
            return Err(cdb_field(7, None));
        }
    } else {
        // SCSI-2 3RDPTY, THIRD-PARTY DEVICE ID and EXTENT (byte 1); extent list length.
        if byte(1) & 0x1F != 0 {
            return Err(cdb_field(1, None));
        }
        if byte(3) != 0 || byte(4) != 0 {
            return Err(cdb_field(3, None));
        }
    }
    Ok(())
}
