//! The SCSI-family tests of libiscsi's conformance suite `iscsi-test-cu` (SPC and the SBC
//! basics), replayed against a [`LogicalUnit`] without a transport.
//!
//! Each Rust test is named after the libiscsi test it replays (`ProutReserve.OwnershipEA` is
//! `prout_reserve_ownership_ea`) and sends the same commands in the same order, with the same
//! allocation lengths and expected data transfer lengths, and asserts what libiscsi asserts. The
//! helpers mirror libiscsi's `iscsi-support.c`: [`check_result`] accepts exactly the statuses and
//! sense codes of libiscsi's `EXPECT_*` lists, and treats INVALID COMMAND OPERATION CODE (and, for
//! MAINTENANCE IN / SERVICE ACTION IN, INVALID FIELD IN CDB at byte 1) as "not implemented", which
//! libiscsi reports as a SKIP: here it fails the test, since the unit must run every test.
//!
//! The iSCSI events map as in the target: logout and connection loss are
//! [`LogicalUnit::nexus_lost`], a LOGICAL UNIT RESET is [`ResetKind::LogicalUnit`], a TARGET WARM
//! or COLD RESET resets the unit and drops every session. A libiscsi login (and reconnect) opens a
//! new session with a new ISID, so a new I_T nexus, and sends TEST UNIT READY until no unit
//! attention is left, then the INQUIRY commands of `iscsi_full_connect_sync`.
//!
//! Besides one test per libiscsi test (on a fresh unit, after the startup probing of
//! `iscsi-test-cu` and the suite's `suite_init`), `family_*` tests run every suite covered here in
//! the order of libiscsi's suite table on one unit, with `suite_init` / `suite_cleanup` between
//! suites, so state left behind by one test (unit attentions, registrations, PRgeneration) meets
//! the next one as it will in the real run.
//!
//! libiscsi is run with `--dataloss`. On a fixed, writable disk behind a single URL these SKIP
//! (each is also run here on a unit where it does not): PreventAllow.* and NoMedia.NoMediaSBC (not
//! removable), StartStopUnit.Simple (not removable; PwrCnd and NoLoej return early and pass),
//! ReadOnly.ReadOnlySBC (not write protected) and MultipathIO.* (one URL).

use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicU32, Ordering},
};

use scsi_core::{
    ItNexus, Status,
    backend::RamBackend,
    cdb::{Cdb, CdbSize, Rw},
    lu::{Completion, LogicalUnit, LuConfig, ResetKind, Residual},
};

const BS: usize = 512;
const BLOCKS: u64 = 4096;

/// libiscsi's `initiatorname1` and `initiatorname2`.
const INITIATOR1: &str = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test";
const INITIATOR2: &str = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-test-2";

// ---------------------------------------------------------------------------------------------
// Sense data and results as libiscsi sees them
// ---------------------------------------------------------------------------------------------

/// Sense data decoded the way libiscsi's `scsi_parse_sense_data` does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LibSense {
    /// Response code (70h..73h).
    error_type: u8,
    key: u8,
    /// `(asc << 8) | ascq`.
    ascq: u16,
    sense_specific: bool,
    field_pointer: u16,
}

impl LibSense {
    fn parse(sb: &[u8]) -> Self {
        let g = |i: usize| sb.get(i).copied().unwrap_or(0);
        let mut s = Self {
            error_type: g(0) & 0x7F,
            ..Self::default()
        };
        let spec = |s: &mut Self, at: usize| {
            if g(at) & 0x80 != 0 {
                s.sense_specific = true;
                s.field_pointer = u16::from_be_bytes([g(at + 1), g(at + 2)]);
            }
        };
        match s.error_type {
            0x70 | 0x71 => {
                s.key = g(2) & 0x0F;
                s.ascq = u16::from_be_bytes([g(12), g(13)]);
                spec(&mut s, 15);
            }
            0x72 | 0x73 => {
                s.key = g(1) & 0x0F;
                s.ascq = u16::from_be_bytes([g(2), g(3)]);
                let end = 8 + usize::from(g(7));
                let mut p = 8;
                while p < end {
                    let addl = usize::from(g(p + 1));
                    if addl < 4 {
                        break;
                    }
                    if g(p) == 2 && addl == 6 {
                        spec(&mut s, p + 4);
                    }
                    p += addl + 2;
                }
            }
            _ => {}
        }
        s
    }
}

/// A completed command as libiscsi's `struct scsi_task` shows it.
#[derive(Debug)]
struct Task {
    cdb: Vec<u8>,
    status: Status,
    sense: LibSense,
    /// DATA-IN as received.
    data: Vec<u8>,
    residual: Residual,
}

impl Task {
    fn from(cdb: &[u8], expected: usize, c: Completion<Vec<u8>>) -> Self {
        let sense = c
            .sense_bytes()
            .map(|b| LibSense::parse(&b))
            .unwrap_or_default();
        Self {
            cdb: cdb.to_vec(),
            status: c.status,
            sense,
            data: c.data().to_vec(),
            residual: c.residual(expected as u64),
        }
    }

    fn good(&self) -> bool {
        self.status == Status::GOOD
    }

    fn is_ua(&self) -> bool {
        self.status == Status::CHECK_CONDITION && self.sense.key == UNIT_ATTENTION
    }

    /// libiscsi's `status_is_invalid_opcode`: the command is "not implemented" (a SKIP).
    fn is_invalid_opcode(&self) -> bool {
        if self.status != Status::CHECK_CONDITION || self.sense.key != ILLEGAL_REQUEST {
            return false;
        }
        if self.sense.ascq == 0x2000 {
            return true;
        }
        matches!(self.cdb.first(), Some(0xA3 | 0x9E))
            && matches!(self.sense.ascq, 0x2400 | 0x2600)
            && (!self.sense.sense_specific || self.sense.field_pointer == 1)
    }

    fn be16(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.byte(at), self.byte(at + 1)])
    }

    fn be32(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.byte(at),
            self.byte(at + 1),
            self.byte(at + 2),
            self.byte(at + 3),
        ])
    }

    fn be64(&self, at: usize) -> u64 {
        (u64::from(self.be32(at)) << 32) | u64::from(self.be32(at + 4))
    }

    /// libiscsi's `task_get_uint8`: zero past the end of the DATA-IN.
    fn byte(&self, at: usize) -> u8 {
        self.data.get(at).copied().unwrap_or(0)
    }
}

const ILLEGAL_REQUEST: u8 = 0x5;
const UNIT_ATTENTION: u8 = 0x6;
const NOT_READY: u8 = 0x2;
const DATA_PROTECT: u8 = 0x7;
const MISCOMPARE: u8 = 0xE;

/// libiscsi's `EXPECT_*` lists: status, sense key and the accepted ASC/ASCQ values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Good,
    /// INVALID FIELD IN CDB or INVALID FIELD IN PARAMETER LIST.
    InvalidFieldInCdb,
    LbaOob,
    NoMedium,
    RemovalPrevented,
    WriteProtected,
    Miscompare,
    ReservationConflict,
}

impl Expect {
    fn parts(self) -> (Status, u8, &'static [u16]) {
        match self {
            Self::Good => (Status::GOOD, 0, &[]),
            Self::InvalidFieldInCdb => {
                (Status::CHECK_CONDITION, ILLEGAL_REQUEST, &[0x2400, 0x2600])
            }
            Self::LbaOob => (Status::CHECK_CONDITION, ILLEGAL_REQUEST, &[0x2100]),
            Self::NoMedium => (
                Status::CHECK_CONDITION,
                NOT_READY,
                &[0x3A00, 0x3A02, 0x3A01],
            ),
            Self::RemovalPrevented => (Status::CHECK_CONDITION, ILLEGAL_REQUEST, &[0x5302]),
            Self::WriteProtected => (
                Status::CHECK_CONDITION,
                DATA_PROTECT,
                &[0x2700, 0x2701, 0x2702],
            ),
            Self::Miscompare => (Status::CHECK_CONDITION, MISCOMPARE, &[0x1D00]),
            Self::ReservationConflict => (Status::RESERVATION_CONFLICT, 0, &[]),
        }
    }
}

/// What a libiscsi helper returns: `Ok` for 0, `Err` with the reason for -1 and -2 (a SKIP,
/// which is a failure here).
type Ret = Result<(), String>;

/// libiscsi's `check_result`.
fn check_result(what: &str, t: &Task, e: Expect) -> Ret {
    if t.is_invalid_opcode() {
        return Err(format!(
            "[SKIPPED] {what} is not implemented ({:?})",
            t.sense
        ));
    }
    let (status, key, ascqs) = e.parts();
    if status == Status::GOOD && !t.good() {
        return Err(format!("{what} failed with {} / {:?}", t.status, t.sense));
    }
    if status != Status::GOOD && t.good() {
        return Err(format!(
            "{what} succeeded but should have failed with {e:?}"
        ));
    }
    if status == Status::RESERVATION_CONFLICT && t.status != Status::RESERVATION_CONFLICT {
        return Err(format!(
            "{what} should have failed with RESERVATION CONFLICT"
        ));
    }
    if status == Status::CHECK_CONDITION {
        let ascq_ok = ascqs.is_empty() || ascqs.contains(&t.sense.ascq);
        if t.status != status || t.sense.key != key || !ascq_ok {
            return Err(format!(
                "{what} failed with wrong sense: expected {e:?}, got {} / {:?}",
                t.status, t.sense
            ));
        }
    }
    Ok(())
}

/// `CU_ASSERT_EQUAL(ret, 0)` on a helper's result.
#[track_caller]
fn ok(r: Ret) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// `check_result` then `CU_ASSERT_EQUAL(ret, 0)`.
#[track_caller]
fn expect(t: &Task, e: Expect) {
    ok(check_result(&format!("{:02x?}", t.cdb), t, e));
}

// ---------------------------------------------------------------------------------------------
// The target, its sessions, and libiscsi's helpers
// ---------------------------------------------------------------------------------------------

/// One libiscsi `struct scsi_device`: a session (an iSCSI context). Clones share it.
#[derive(Clone, Debug)]
struct Sd(Arc<SdInner>);

#[derive(Debug)]
struct SdInner {
    name: &'static str,
    port: u16,
    /// `iscsi_set_no_ua_on_reconnect(ctx, 1)`: set on the contexts `main` and `suite_init`
    /// create, not on those the tests create themselves. A reconnect then consumes the unit
    /// attentions with TEST UNIT READY before it resends the command.
    no_ua_on_reconnect: bool,
    state: Mutex<SdState>,
}

#[derive(Debug)]
struct SdState {
    nexus: ItNexus,
    link: Link,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    Up,
    /// The target dropped the connection (target reset): the next command reconnects first.
    Dropped,
    /// Logged out and destroyed: a bug to use.
    Gone,
}

impl Sd {
    fn state(&self) -> MutexGuard<'_, SdState> {
        self.0.state.lock().unwrap()
    }

    fn nexus(&self) -> ItNexus {
        self.state().nexus.clone()
    }
}

/// A logical unit with the sessions logged in to it.
struct Target {
    lu: LogicalUnit<RamBackend>,
    /// Source of ISIDs: every libiscsi context picks its own.
    isid: AtomicU32,
    /// Sessions not logged out (a target reset drops them all).
    sessions: Mutex<Vec<Sd>>,
}

/// One command descriptor of REPORT SUPPORTED OPERATION CODES (all commands).
#[derive(Clone, Copy, Debug)]
struct CommandDescriptor {
    opcode: u8,
    sa: u16,
    ctdp: bool,
    servactv: bool,
    cdb_len: u16,
    timeout_descriptor_length: u16,
}

/// Parses REPORT SUPPORTED OPERATION CODES all_commands data as libiscsi does.
fn parse_rsoc(t: &Task) -> Option<Vec<CommandDescriptor>> {
    if t.data.len() < 4 {
        return None;
    }
    let mut len = i64::from(t.be32(0));
    let mut i = 4;
    let mut v = Vec::new();
    while len >= 8 {
        let mut d = CommandDescriptor {
            opcode: t.byte(i),
            sa: t.be16(i + 2),
            ctdp: t.byte(i + 5) & 0x02 != 0,
            servactv: t.byte(i + 5) & 0x01 != 0,
            cdb_len: t.be16(i + 6),
            timeout_descriptor_length: 0,
        };
        len -= 8;
        i += 8;
        if d.ctdp {
            d.timeout_descriptor_length = t.be16(i);
            len -= i64::from(d.timeout_descriptor_length) + 2;
            i += usize::from(d.timeout_descriptor_length) + 2;
        }
        v.push(d);
    }
    Some(v)
}

/// What `iscsi-test-cu`'s `main` learns about the unit before it runs any test.
#[derive(Clone, Debug)]
struct Probe {
    num_blocks: u64,
    lbpme: bool,
    lbppbe: u8,
    device_type: u8,
    rmb: bool,
    version_descriptors: [u16; 8],
    sbc3_support: bool,
    /// MAXIMUM COMPARE AND WRITE LENGTH from the Block Limits VPD page.
    max_cmp: Option<u8>,
    readonly: bool,
}

impl Target {
    fn new(cfg: LuConfig) -> Arc<Self> {
        let lu = LogicalUnit::new(cfg, RamBackend::new(BLOCKS * BS as u64)).unwrap();
        Arc::new(Self {
            lu,
            isid: AtomicU32::new(1),
            sessions: Mutex::new(Vec::new()),
        })
    }

    async fn exec(&self, sd: &Sd, cdb: &[u8], buf: Vec<u8>) -> Task {
        self.reconnect_if_dropped(sd).await;
        let expected = buf.len();
        let c = self.lu.execute(&sd.nexus(), cdb, buf).await;
        Task::from(cdb, expected, c)
    }

    async fn run(&self, sd: &Sd, cdb: Cdb, buf: Vec<u8>) -> Task {
        self.exec(sd, cdb.encode().as_slice(), buf).await
    }

    /// A new I_T nexus: a new session with its own ISID.
    fn fresh_nexus(&self, name: &str, port: u16) -> ItNexus {
        let n = self.isid.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        ItNexus::iscsi(name, [0x80, 0, n[0], n[1], n[2], n[3]], port)
    }

    /// What `iscsi_full_connect_sync` (and a reconnect) sends once logged in: TEST UNIT READY
    /// until no unit attention is left (on a first login, or on a reconnect with
    /// `no_ua_on_reconnect`), then standard INQUIRY, and VPD page 80h for a non-removable disk.
    async fn connect_commands(&self, nexus: &ItNexus, consume_uas: bool) {
        let run = |cdb: Cdb, len: usize| async move {
            let bytes = cdb.encode();
            self.lu.execute(nexus, bytes.as_slice(), vec![0; len]).await
        };
        if consume_uas {
            let mut uas = 0;
            loop {
                let c = run(Cdb::TestUnitReady, 0).await;
                let t = Task::from(&[0; 6], 0, c);
                if t.is_ua() {
                    uas += 1;
                    assert!(uas <= 10, "Too many UnitAttentions during login");
                    continue;
                }
                let not_ready = t.status == Status::CHECK_CONDITION
                    && t.sense.key == NOT_READY
                    && matches!(t.sense.ascq, 0x3A00 | 0x3A01 | 0x3A02 | 0x041B);
                assert!(
                    t.good() || not_ready || t.status == Status::RESERVATION_CONFLICT,
                    "login TEST UNIT READY: {} {:?}",
                    t.status,
                    t.sense
                );
                break;
            }
        }
        let inquiry = |evpd, page, alloc_len| Cdb::Inquiry {
            evpd,
            cmddt: false,
            page,
            alloc_len,
        };
        let c = run(inquiry(false, 0, 96), 96).await;
        assert_eq!(c.status, Status::GOOD, "login INQUIRY: {:?}", c.sense);
        let d = c.data();
        if d[1] & 0x80 == 0 && d[0] & 0x1F == 0 {
            let c = run(inquiry(true, 0x80, 259), 259).await;
            assert_eq!(
                c.status,
                Status::GOOD,
                "login INQUIRY VPD 80h: {:?}",
                c.sense
            );
        }
    }

    /// `iscsi_context_login`: a new session through target port `port`. `no_ua_on_reconnect`
    /// as the caller sets it afterwards.
    async fn login(&self, name: &'static str, port: u16, no_ua_on_reconnect: bool) -> Sd {
        let nexus = self.fresh_nexus(name, port);
        self.connect_commands(&nexus, true).await;
        let sd = Sd(Arc::new(SdInner {
            name,
            port,
            no_ua_on_reconnect,
            state: Mutex::new(SdState {
                nexus,
                link: Link::Up,
            }),
        }));
        self.sessions.lock().unwrap().push(sd.clone());
        sd
    }

    /// libiscsi's automatic reconnect after the target dropped the connection: a new session
    /// (new ISID), then the command is resent.
    async fn reconnect_if_dropped(&self, sd: &Sd) {
        let nexus = {
            let mut st = sd.state();
            match st.link {
                Link::Up => return,
                Link::Gone => panic!("{:?} is logged out", st.nexus),
                Link::Dropped => {}
            }
            st.nexus = self.fresh_nexus(sd.0.name, sd.0.port);
            st.link = Link::Up;
            st.nexus.clone()
        };
        self.connect_commands(&nexus, sd.0.no_ua_on_reconnect).await;
    }

    /// `iscsi_logout_sync` + `iscsi_destroy_context` (or `iscsi_destroy_context` alone: the
    /// connection drops): the I_T nexus is gone.
    fn logout(&self, sd: &Sd) {
        let mut st = sd.state();
        if st.link == Link::Up {
            self.lu.nexus_lost(&st.nexus);
        }
        st.link = Link::Gone;
        drop(st);
        self.sessions
            .lock()
            .unwrap()
            .retain(|s| !Arc::ptr_eq(&s.0, &sd.0));
    }

    /// What a test does to log in again: `iscsi_destroy_context` then `iscsi_context_login`
    /// (the new context does not have `no_ua_on_reconnect`).
    async fn relogin(&self, sd: &mut Sd) {
        self.logout(sd);
        *sd = self.login(sd.0.name, sd.0.port, false).await;
    }

    /// LOGICAL UNIT RESET task management function.
    fn lun_reset(&self) {
        self.lu.reset(ResetKind::LogicalUnit);
    }

    /// TARGET WARM / COLD RESET: the unit resets and the target drops every session; libiscsi
    /// reconnects each on its next command.
    fn target_reset(&self, kind: ResetKind) {
        self.lu.reset(kind);
        for sd in self.sessions.lock().unwrap().iter() {
            let mut st = sd.state();
            if st.link == Link::Up {
                self.lu.nexus_lost(&st.nexus);
                st.link = Link::Dropped;
            }
        }
    }

    // ---- plain commands ----

    async fn tur(&self, sd: &Sd) -> Task {
        self.run(sd, Cdb::TestUnitReady, vec![]).await
    }

    async fn inquiry(&self, sd: &Sd, evpd: bool, page: u8, alloc: u16) -> Task {
        let cdb = Cdb::Inquiry {
            evpd,
            cmddt: false,
            page,
            alloc_len: alloc,
        };
        self.run(sd, cdb, vec![0; usize::from(alloc)]).await
    }

    async fn modesense6(&self, sd: &Sd, dbd: bool, pc: u8, page: u8, sub: u8, alloc: u8) -> Task {
        let cdb = Cdb::ModeSense {
            ten: false,
            dbd,
            llbaa: false,
            pc,
            page,
            subpage: sub,
            alloc_len: u16::from(alloc),
        };
        self.run(sd, cdb, vec![0; usize::from(alloc)]).await
    }

    /// `modeselect6`: a 4-byte header of zeros, then the page.
    async fn modeselect6(&self, sd: &Sd, pf: bool, sp: bool, page: &[u8]) -> Task {
        let mut data = vec![0u8; 4];
        data.extend_from_slice(page);
        let cdb = Cdb::ModeSelect {
            ten: false,
            pf,
            sp,
            param_len: data.len() as u16,
        };
        self.run(sd, cdb, data).await
    }

    async fn read(&self, sd: &Sd, size: CdbSize, lba: u64, blocks: u32) -> Task {
        let rw = Rw {
            size,
            ..Rw::new(lba, blocks)
        };
        self.run(sd, Cdb::Read(rw), vec![0; blocks as usize * BS])
            .await
    }

    async fn write(&self, sd: &Sd, size: CdbSize, lba: u64, data: Vec<u8>) -> Task {
        let rw = Rw {
            size,
            ..Rw::new(lba, (data.len() / BS) as u32)
        };
        self.run(sd, Cdb::Write(rw), data).await
    }

    async fn readcapacity10(&self, sd: &Sd) -> Task {
        self.run(sd, Cdb::ReadCapacity10 { lba: 0, pmi: false }, vec![0; 8])
            .await
    }

    async fn readcapacity16(&self, sd: &Sd, alloc: u32) -> Task {
        let cdb = Cdb::ReadCapacity16 {
            lba: 0,
            pmi: false,
            alloc_len: alloc,
        };
        self.run(sd, cdb, vec![0; alloc as usize]).await
    }

    async fn report_supported_opcodes(
        &self,
        sd: &Sd,
        rctd: bool,
        options: u8,
        opcode: u8,
        sa: u16,
        alloc: u32,
    ) -> Task {
        let cdb = Cdb::ReportSupportedOpcodes {
            rctd,
            options,
            opcode,
            service_action: sa,
            alloc_len: alloc,
        };
        self.run(sd, cdb, vec![0; alloc as usize]).await
    }

    /// STARTSTOPUNIT(sd, immed, pcm, pc, no_flush, loej, start).
    async fn startstopunit(&self, sd: &Sd, args: SsuArgs) -> Task {
        let (immed, pcm, pc, no_flush, loej, start) = args;
        let cdb = Cdb::StartStopUnit {
            immed: immed != 0,
            power_condition_modifier: pcm,
            power_condition: pc,
            no_flush: no_flush != 0,
            loej: loej != 0,
            start: start != 0,
        };
        self.run(sd, cdb, vec![]).await
    }

    /// `preventallow`.
    async fn preventallow(&self, sd: &Sd, prevent: u8) -> Ret {
        let t = self.run(sd, Cdb::PreventAllow { prevent }, vec![]).await;
        if t.is_invalid_opcode() {
            return Err("[SKIPPED] PREVENTALLOW is not implemented".into());
        }
        if !t.good() {
            return Err(format!("PREVENTALLOW failed: {} {:?}", t.status, t.sense));
        }
        Ok(())
    }

    // ---- RESERVE(6) / RELEASE(6) (libiscsi retries up to three times and takes a 29/00 unit
    // attention for success) ----

    async fn reserve6_like(&self, sd: &Sd, want: Status, what: &str) -> Ret {
        let mut res = Err(String::new());
        for _ in 0..3 {
            let t = self.run(sd, Cdb::Reserve { ten: false }, vec![]).await;
            let bus_reset = t.is_ua() && t.sense.ascq == 0x2900;
            res = if t.is_invalid_opcode() {
                Err("[SKIPPED] RESERVE6 is not implemented".into())
            } else if t.status != want && !bus_reset {
                Err(format!("{what}: {} {:?}", t.status, t.sense))
            } else {
                Ok(())
            };
            if res.is_ok() {
                break;
            }
        }
        res
    }

    async fn reserve6(&self, sd: &Sd) -> Ret {
        self.reserve6_like(sd, Status::GOOD, "RESERVE6 failed")
            .await
    }

    async fn reserve6_conflict(&self, sd: &Sd) -> Ret {
        let what = "RESERVE6 should have failed with RESERVATION_CONFLICT";
        self.reserve6_like(sd, Status::RESERVATION_CONFLICT, what)
            .await
    }

    async fn release6(&self, sd: &Sd) -> Ret {
        let mut res = Err(String::new());
        for _ in 0..3 {
            let t = self.run(sd, Cdb::Release { ten: false }, vec![]).await;
            let bus_reset = t.is_ua() && t.sense.ascq == 0x2900;
            res = if !t.good() && !bus_reset {
                Err(format!("RELEASE6 failed: {} {:?}", t.status, t.sense))
            } else {
                Ok(())
            };
            if res.is_ok() {
                break;
            }
        }
        res
    }

    // ---- persistent reservations ----

    async fn prin(&self, sd: &Sd, sa: u8, alloc: u16) -> Task {
        let cdb = Cdb::PersistentReserveIn {
            service_action: sa,
            alloc_len: alloc,
        };
        self.run(sd, cdb, vec![0; usize::from(alloc)]).await
    }

    /// A basic PERSISTENT RESERVE OUT (24-byte parameter list, LU scope).
    async fn prout(&self, sd: &Sd, sa: u8, kind: u8, key: u64, sark: u64) -> Task {
        let mut params = vec![0u8; 24];
        params[0..8].copy_from_slice(&key.to_be_bytes());
        params[8..16].copy_from_slice(&sark.to_be_bytes());
        let cdb = Cdb::PersistentReserveOut {
            service_action: sa,
            scope: 0,
            kind,
            param_len: 24,
        };
        self.run(sd, cdb, params).await
    }

    /// The helpers' common tail: -2 for not implemented, -1 unless GOOD.
    fn pr_ret(t: &Task, what: &str) -> Ret {
        if t.is_invalid_opcode() {
            return Err(format!("[SKIPPED] {what} is not implemented"));
        }
        if !t.good() {
            return Err(format!("{what} failed: {} {:?}", t.status, t.sense));
        }
        Ok(())
    }

    /// `prin_task`: service action `sa` with a 16384-byte allocation, expected to succeed or not.
    async fn prin_task(&self, sd: &Sd, sa: u8, success_expected: bool) -> Ret {
        let t = self.prin(sd, sa, 16384).await;
        if t.is_invalid_opcode() {
            return Err("[SKIPPED] PERSISTENT RESERVE IN is not implemented".into());
        }
        match (success_expected, t.good()) {
            (true, false) => Err(format!("PRIN/SA={sa:#x} failed: {:?}", t.sense)),
            (false, true) => Err(format!(
                "PRIN/SA={sa:#x} succeeded with invalid serviceaction"
            )),
            _ => Ok(()),
        }
    }

    /// `prin_read_keys`: the task and the unmarshalled keys.
    async fn prin_read_keys(&self, sd: &Sd, alloc: u16) -> (Task, Result<ReadKeys, String>) {
        let t = self.prin(sd, 0x00, alloc).await;
        let rk = Self::pr_ret(&t, "PRIN/READ_KEYS").and_then(|()| {
            if t.data.len() < 8 {
                return Err("failed to unmarshall PRIN/READ_KEYS data".into());
            }
            let additional_length = t.be32(4);
            let keys_len = additional_length.min((t.data.len() - 8) as u32) as usize;
            Ok(ReadKeys {
                prgeneration: t.be32(0),
                additional_length,
                keys: (0..keys_len / 8).map(|i| t.be64(8 + 8 * i)).collect(),
            })
        });
        (t, rk)
    }

    async fn prout_register_and_ignore(&self, sd: &Sd, sark: u64) -> Ret {
        let t = self.prout(sd, 0x06, 0, 0, sark).await;
        Self::pr_ret(&t, "PROUT/REGISTER_AND_IGNORE")
    }

    async fn prout_register_key(&self, sd: &Sd, sark: u64, key: u64) -> Ret {
        let t = self.prout(sd, 0x00, 0, key, sark).await;
        Self::pr_ret(&t, "PROUT/REGISTER")
    }

    async fn prout_reregister_key_fails(&self, sd: &Sd, sark: u64) -> Ret {
        let t = self.prout(sd, 0x00, 0, 0, sark).await;
        if t.is_invalid_opcode() {
            return Err("[SKIPPED] PERSISTENT RESERVE OUT is not implemented".into());
        }
        if t.status != Status::RESERVATION_CONFLICT {
            return Err(format!("Expected RESERVATION CONFLICT, got {}", t.status));
        }
        Ok(())
    }

    async fn prout_reserve(&self, sd: &Sd, key: u64, kind: u8) -> Ret {
        let t = self.prout(sd, 0x01, kind, key, 0).await;
        Self::pr_ret(&t, "PROUT/RESERVE")
    }

    async fn prout_release(&self, sd: &Sd, key: u64, kind: u8) -> Ret {
        let t = self.prout(sd, 0x02, kind, key, 0).await;
        Self::pr_ret(&t, "PROUT/RELEASE")
    }

    async fn prout_clear(&self, sd: &Sd, key: u64) -> Ret {
        let t = self.prout(sd, 0x03, 0, key, 0).await;
        Self::pr_ret(&t, "PROUT/CLEAR")
    }

    async fn prout_preempt(&self, sd: &Sd, sark: u64, key: u64, kind: u8) -> Ret {
        let t = self.prout(sd, 0x04, kind, key, sark).await;
        Self::pr_ret(&t, "PROUT/PREEMPT")
    }

    async fn prin_verify_key_presence(&self, sd: &Sd, key: u64, present: bool) -> Ret {
        let (_, rk) = self.prin_read_keys(sd, 16384).await;
        let found = rk?.keys.contains(&key);
        if found != present {
            return Err(format!("key {key:#x}: present {found}, expected {present}"));
        }
        Ok(())
    }

    /// READ RESERVATION: `Some((key, type))` when reserved.
    async fn read_reservation(&self, sd: &Sd) -> Result<Option<(u64, u8)>, String> {
        let t = self.prin(sd, 0x01, 16384).await;
        Self::pr_ret(&t, "PRIN/READ_RESERVATION")?;
        Ok((t.be32(4) > 0).then(|| (t.be64(8), t.byte(21) & 0x0F)))
    }

    async fn prin_verify_reserved_as(&self, sd: &Sd, key: u64, kind: u8) -> Ret {
        match self.read_reservation(sd).await? {
            None => Err("Failed to find Target reserved as expected.".into()),
            Some((k, _)) if k != key => Err(format!("reservation key {k:#x}, expected {key:#x}")),
            Some((_, t)) if t != kind => Err(format!("reservation type {t}, expected {kind}")),
            Some(_) => Ok(()),
        }
    }

    async fn prin_verify_not_reserved(&self, sd: &Sd) -> Ret {
        match self.read_reservation(sd).await? {
            Some(r) => Err(format!("Target reserved ({r:x?}) when not expected")),
            None => Ok(()),
        }
    }

    async fn verify_read_works(&self, sd: &Sd) -> Ret {
        let t = self.read(sd, CdbSize::Ten, 1, 1).await;
        if !t.good() {
            return Err(format!("READ10 failed: {} {:?}", t.status, t.sense));
        }
        Ok(())
    }

    async fn verify_write_works(&self, sd: &Sd) -> Ret {
        let t = self.write(sd, CdbSize::Ten, 1, vec![0xA5; BS]).await;
        if !t.good() {
            return Err(format!("WRITE10 failed: {} {:?}", t.status, t.sense));
        }
        Ok(())
    }

    async fn verify_read_fails(&self, sd: &Sd) -> Ret {
        if self.read(sd, CdbSize::Ten, 1, 1).await.good() {
            return Err("READ10 command succeeded when expected to fail".into());
        }
        Ok(())
    }

    async fn verify_write_fails(&self, sd: &Sd) -> Ret {
        if self.write(sd, CdbSize::Ten, 1, vec![0x5A; BS]).await.good() {
            return Err("WRITE10 command succeeded when expected to fail".into());
        }
        Ok(())
    }

    /// `testunitready_clear_ua`: one TEST UNIT READY, whatever it answers.
    async fn testunitready_clear_ua(&self, sd: &Sd) {
        let _ = self.tur(sd).await;
    }

    /// `test_iscsi_tur_until_good`: the number of unit attentions seen, or an error after five
    /// tries.
    async fn tur_until_good(&self, sd: &Sd) -> Result<u32, String> {
        let mut uas = 0;
        for _ in 0..5 {
            let t = self.tur(sd).await;
            if t.good() {
                return Ok(uas);
            }
            if t.is_ua() {
                uas += 1;
            }
        }
        Err("TEST UNIT READY not GOOD after 5 tries".into())
    }

    /// libiscsi's `clear_pr`, with `--dataloss`: unregisters every key left behind.
    async fn clear_pr(&self, sd: &Sd) -> Ret {
        let (_, rk) = self.prin_read_keys(sd, 16384).await;
        let Ok(rk) = rk else { return Ok(()) };
        for key in rk.keys {
            self.prout_register_and_ignore(sd, key).await?;
            self.prout_register_key(sd, 0, key).await?;
        }
        Ok(())
    }
}

/// READ KEYS parameter data.
#[derive(Clone, Debug)]
struct ReadKeys {
    prgeneration: u32,
    additional_length: u32,
    keys: Vec<u64>,
}

/// Persistent reservation types.
const PR_WE: u8 = 0x1;
const PR_EA: u8 = 0x3;
const PR_WERO: u8 = 0x5;
const PR_EARO: u8 = 0x6;
const PR_WEAR: u8 = 0x7;
const PR_EAAR: u8 = 0x8;

fn all_registrants(kind: u8) -> bool {
    matches!(kind, PR_WEAR | PR_EAAR)
}

/// libiscsi's `rand_key`, made deterministic.
fn key(n: u64) -> u64 {
    0x1BAD_5EED_0000_0000 | n.wrapping_mul(0x9E37_79B9)
}

// ---------------------------------------------------------------------------------------------
// Mode sense data as libiscsi unmarshalls it
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct ModePage {
    spf: bool,
    page_code: u8,
    subpage_code: u8,
    body: Vec<u8>,
}

#[derive(Clone, Debug)]
struct ModeSense {
    mode_data_length: u8,
    device_specific_parameter: u8,
    /// In the order libiscsi's list holds them: the last page in the data first.
    pages: Vec<ModePage>,
}

/// `scsi_modesense_datain_unmarshall` for MODE SENSE(6).
fn parse_mode_sense6(t: &Task) -> Option<ModeSense> {
    if t.data.len() < 4 {
        return None;
    }
    let mut ms = ModeSense {
        mode_data_length: t.byte(0),
        device_specific_parameter: t.byte(2),
        pages: Vec::new(),
    };
    if usize::from(ms.mode_data_length) + 1 > t.data.len() {
        return None;
    }
    let mut pos = 4 + usize::from(t.byte(3));
    while pos < t.data.len() {
        let b0 = t.byte(pos);
        pos += 1;
        let spf = b0 & 0x40 != 0;
        let (subpage_code, len) = if spf {
            let r = (t.byte(pos), usize::from(t.be16(pos + 1)));
            pos += 3;
            r
        } else {
            let r = (0, usize::from(t.byte(pos)));
            pos += 1;
            r
        };
        let body = (pos..pos + len).map(|i| t.byte(i)).collect();
        ms.pages.insert(
            0,
            ModePage {
                spf,
                page_code: b0 & 0x3F,
                subpage_code,
                body,
            },
        );
        pos += len;
    }
    Some(ms)
}

/// The control mode page fields as libiscsi's `scsi_parse_mode_control` reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Control {
    tst: u8,
    tmf_only: bool,
    dpicz: bool,
    d_sense: bool,
    gltsd: bool,
    rlec: bool,
    queue_algorithm_modifier: u8,
    nuar: u8,
    qerr: u8,
    vs: bool,
    rac: bool,
    ua_intlck_ctrl: u8,
    swp: bool,
    ato: bool,
    tas: bool,
    atmpe: bool,
    rwwp: bool,
    autoload_mode: bool,
    busy_timeout_period: u16,
    extended_selftest_completion_time: u16,
}

impl Control {
    fn parse(body: &[u8]) -> Self {
        let b = |i: usize| body.get(i).copied().unwrap_or(0);
        Self {
            tst: (b(0) >> 5) & 7,
            tmf_only: b(0) & 0x10 != 0,
            dpicz: b(0) & 0x08 != 0,
            d_sense: b(0) & 0x04 != 0,
            gltsd: b(0) & 0x02 != 0,
            rlec: b(0) & 0x01 != 0,
            queue_algorithm_modifier: (b(1) >> 4) & 0x0F,
            nuar: b(1) & 0x08,
            qerr: (b(1) >> 1) & 3,
            vs: b(2) & 0x80 != 0,
            rac: b(2) & 0x40 != 0,
            ua_intlck_ctrl: (b(2) >> 4) & 0x0F,
            swp: b(2) & 0x08 != 0,
            ato: b(3) & 0x80 != 0,
            tas: b(3) & 0x40 != 0,
            atmpe: b(3) & 0x20 != 0,
            rwwp: b(3) & 0x10 != 0,
            autoload_mode: b(3) & 0x07 != 0,
            busy_timeout_period: u16::from_be_bytes([b(6), b(7)]),
            extended_selftest_completion_time: u16::from_be_bytes([b(8), b(9)]),
        }
    }

    /// `scsi_modesense_marshall_control` plus the page header `scsi_modesense_dataout_marshall`
    /// writes (PS clear, page_0 format).
    fn marshall(&self) -> Vec<u8> {
        let mut d = vec![0u8; 12];
        d[0] = 0x0A;
        d[1] = 10;
        d[2] |= (self.tst << 5) & 0xE0;
        d[2] |= u8::from(self.tmf_only) << 4
            | u8::from(self.dpicz) << 3
            | u8::from(self.d_sense) << 2
            | u8::from(self.gltsd) << 1
            | u8::from(self.rlec);
        d[3] |= (self.queue_algorithm_modifier << 4) & 0xF0;
        if self.nuar != 0 {
            d[3] |= 0x08;
        }
        d[3] |= (self.qerr << 1) & 0x06;
        d[4] |= u8::from(self.vs) << 7 | u8::from(self.rac) << 6;
        d[4] |= (self.ua_intlck_ctrl << 4) & 0x30;
        d[4] |= u8::from(self.swp) << 3;
        d[5] |= u8::from(self.ato) << 7
            | u8::from(self.tas) << 6
            | u8::from(self.atmpe) << 5
            | u8::from(self.rwwp) << 4
            | u8::from(self.autoload_mode);
        d[8..10].copy_from_slice(&self.busy_timeout_period.to_be_bytes());
        d[10..12].copy_from_slice(&self.extended_selftest_completion_time.to_be_bytes());
        d
    }
}

/// `scsi_modesense_get_page`.
fn get_page(ms: &ModeSense, code: u8, sub: u8) -> Option<&ModePage> {
    ms.pages
        .iter()
        .find(|p| p.page_code == code && p.subpage_code == sub)
}

const MODEPAGE_CONTROL: u8 = 0x0A;
const ALL_PAGES: u8 = 0x3F;
const PC_CURRENT: u8 = 0;
const PC_CHANGEABLE: u8 = 1;

// ---------------------------------------------------------------------------------------------
// The test program: startup probing, suite set-up and clean-up
// ---------------------------------------------------------------------------------------------

/// The state `iscsi-test-cu` keeps between tests.
struct Env {
    t: Arc<Target>,
    /// `sd` (`mp_sds[0]`).
    sd: Sd,
    /// `mp_sds[1]` when the program was given a second (multipath) URL.
    mp: Option<Sd>,
    p: Probe,
    /// The target carries out TARGET WARM / COLD RESET. When it refuses them, libiscsi SKIPs the
    /// rest of the test and the state it set up stays for the next test.
    target_resets: bool,
}

impl Env {
    /// `iscsi-test-cu` started with one URL.
    async fn start(cfg: LuConfig) -> Self {
        Self::start_with(cfg, false).await
    }

    /// `iscsi-test-cu` started with two URLs for the same logical unit (target ports 1 and 2).
    async fn start_multipath(cfg: LuConfig) -> Self {
        Self::start_with(cfg, true).await
    }

    /// `main`: connect, `clear_pr`, then the probing every test relies on.
    async fn start_with(cfg: LuConfig, multipath: bool) -> Self {
        let t = Target::new(cfg);
        let sd = t.login(INITIATOR1, 1, true).await;
        let mp = if multipath {
            Some(t.login(INITIATOR1, 2, true).await)
        } else {
            None
        };
        ok(t.clear_pr(&sd).await);

        let rc10 = t.readcapacity10(&sd).await;
        expect(&rc10, Expect::Good);
        let mut block_size = rc10.be32(4) as usize;
        let mut num_blocks = u64::from(rc10.be32(0)) + 1;
        assert_ne!(block_size, 0);
        let rc16 = t.readcapacity16(&sd, 96).await;
        let (mut lbpme, mut lbppbe) = (false, 0);
        if rc16.good() {
            block_size = rc16.be32(8) as usize;
            num_blocks = rc16.be64(0) + 1;
            lbpme = rc16.byte(14) & 0x80 != 0;
            lbppbe = rc16.byte(13) & 0x0F;
        }
        assert_eq!((block_size, num_blocks), (BS, BLOCKS));

        let mut inq = t.inquiry(&sd, false, 0, 64).await;
        expect(&inq, Expect::Good);
        let full = usize::from(inq.byte(4)) + 5;
        if full > inq.data.len() {
            inq = t.inquiry(&sd, false, 0, full as u16).await;
        }
        let version_descriptors: [u16; 8] = std::array::from_fn(|i| inq.be16(58 + 2 * i));
        let sbc3_support = version_descriptors
            .iter()
            .any(|v| matches!(v, 0x04C0 | 0x04C3 | 0x04C5 | 0x04C8));

        let mut bl = t.inquiry(&sd, true, 0xB0, 64).await;
        let max_cmp = if bl.good() {
            let full = usize::from(bl.be16(2)) + 4;
            if full > bl.data.len() {
                bl = t.inquiry(&sd, true, 0xB0, full as u16).await;
                expect(&bl, Expect::Good);
            }
            Some(bl.byte(5))
        } else {
            None
        };
        // Block device characteristics: libiscsi only prints a message when it fails.
        expect(&t.inquiry(&sd, true, 0xB1, 255).await, Expect::Good);
        if lbpme {
            expect(&t.inquiry(&sd, true, 0xB2, 64).await, Expect::Good);
        }

        let rsop_task = t.report_supported_opcodes(&sd, true, 0, 0, 0, 65535).await;
        let rsop = rsop_task.good().then(|| parse_rsoc(&rsop_task)).flatten();
        assert!(rsop.is_some(), "REPORT SUPPORTED OPERATION CODES");

        let ms = t
            .modesense6(&sd, false, PC_CURRENT, ALL_PAGES, 0, 255)
            .await;
        expect(&ms, Expect::Good);
        let readonly = parse_mode_sense6(&ms)
            .expect("mode sense")
            .device_specific_parameter
            & 0x80
            != 0;

        let p = Probe {
            num_blocks,
            lbpme,
            lbppbe,
            device_type: inq.byte(0) & 0x1F,
            rmb: inq.byte(1) & 0x80 != 0,
            version_descriptors,
            sbc3_support,
            max_cmp,
            readonly,
        };
        Self {
            t,
            sd,
            mp,
            p,
            target_resets: true,
        }
    }

    /// `suite_init`: every device logs out and in again, `mp_sds[1]` as `initiatorname2`.
    async fn suite_init(&mut self) {
        self.t.logout(&self.sd);
        self.sd = self.t.login(INITIATOR1, self.sd.0.port, true).await;
        if let Some(mp) = &mut self.mp {
            self.t.logout(mp);
            *mp = self.t.login(INITIATOR2, mp.0.port, true).await;
        }
    }

    /// `suite_cleanup`: `clear_pr` (its result is ignored) and logout.
    async fn suite_cleanup(&mut self) {
        let _ = self.t.clear_pr(&self.sd).await;
        self.t.logout(&self.sd);
        if let Some(mp) = &self.mp {
            let _ = self.t.clear_pr(mp).await;
            self.t.logout(mp);
        }
    }

    /// `mpath_sd2_get_or_clone`: the multipath device, or a new session as `initiatorname2`.
    async fn sd2_get(&self) -> Sd {
        match &self.mp {
            Some(mp) => mp.clone(),
            None => self.t.login(INITIATOR2, self.sd.0.port, false).await,
        }
    }

    /// `mpath_sd2_put`: a cloned session logs out.
    fn sd2_put(&self, sd2: &Sd) {
        if self.mp.is_none() {
            self.t.logout(sd2);
        }
    }

    /// `mp_sds`.
    fn paths(&self) -> Vec<Sd> {
        std::iter::once(self.sd.clone())
            .chain(self.mp.clone())
            .collect()
    }
}

/// A fresh unit, probed, with the suite set up: the state a libiscsi test starts in.
async fn env(cfg: LuConfig) -> Env {
    let mut e = Env::start(cfg).await;
    e.suite_init().await;
    e
}

fn disk() -> LuConfig {
    LuConfig::new("libiscsi-spc")
}

fn removable() -> LuConfig {
    let mut c = disk();
    c.removable = true;
    c
}

fn read_only() -> LuConfig {
    let mut c = disk();
    c.read_only = true;
    c
}

/// One `#[tokio::test]` per libiscsi test: a fresh unit with `$cfg`, then the scenario.
macro_rules! libiscsi_test {
    ($($name:ident => $scenario:ident($cfg:expr);)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let mut e = env($cfg).await;
                $scenario(&mut e).await;
            }
        )*
    };
}

// ---------------------------------------------------------------------------------------------
// TestUnitReady
// ---------------------------------------------------------------------------------------------

async fn testunitready_simple_(e: &mut Env) {
    expect(&e.t.tur(&e.sd).await, Expect::Good);
}

// ---------------------------------------------------------------------------------------------
// Inquiry
// ---------------------------------------------------------------------------------------------

/// Checks the standard INQUIRY data the way Inquiry.Standard does.
#[track_caller]
fn check_standard_inquiry(t: &Task) {
    let d = &t.data;
    assert!(d.len() >= 36, "at least 36 bytes");
    assert_eq!(t.byte(0) >> 5, 0, "peripheral qualifier");
    let version = t.byte(2);
    assert!(
        matches!(version, 0x4..=0x6),
        "version {version:#x} (libiscsi only warns for 0)"
    );
    assert_eq!(t.byte(3) & 0x0F, 2, "response data format");
    let al = usize::from(t.byte(4));
    assert!(al <= d.len() - 5, "additional length points past the data");
    if al < d.len() - 5 {
        assert!(d[al + 6..].iter().all(|&b| b == 0), "padding is not zero");
    }
    for (field, range) in [("vendor", 8..16), ("product", 16..32), ("revision", 32..36)] {
        assert!(
            d[range]
                .iter()
                .all(|&b| b == 0 || (0x20..=0x7E).contains(&b)),
            "{field} is not ASCII"
        );
    }
    assert!(!(t.byte(3) & 0x80 != 0 && version >= 5), "AERC set");
    assert!(!(t.byte(3) & 0x40 != 0 && version >= 4), "TRMTSK set");
}

async fn inquiry_standard_(e: &mut Env) {
    let t = e.t.inquiry(&e.sd, false, 0, 260).await;
    expect(&t, Expect::Good);
    check_standard_inquiry(&t);
}

async fn inquiry_alloc_length_(e: &mut Env) {
    let mut last = None;
    for i in 5..256u16 {
        let t = e.t.inquiry(&e.sd, false, 0, i).await;
        expect(&t, Expect::Good);
        // What the target sends never exceeds the allocation length.
        assert!(t.data.len() <= usize::from(i));
        last = Some(t);
    }
    let t = last.unwrap();
    assert!(t.data.len() >= 36);
    assert_eq!(t.byte(0) >> 5, 0, "peripheral qualifier");
    // SPC-3 or later: 16-bit allocation lengths.
    assert!(matches!(t.byte(2), 5 | 6), "[SKIPPED] not SPC-3 or later");
    let a = e.t.inquiry(&e.sd, false, 0, 511).await;
    expect(&a, Expect::Good);
    let b = e.t.inquiry(&e.sd, false, 0, 512).await;
    expect(&b, Expect::Good);
    assert_eq!(a.data.len(), b.data.len());
    assert_eq!(a.data, b.data);
}

async fn inquiry_evpd_(e: &mut Env) {
    let t = e.t.inquiry(&e.sd, false, 1, 256).await;
    expect(&t, Expect::InvalidFieldInCdb);
}

async fn inquiry_block_limits_(e: &mut Env) {
    assert_eq!(e.p.device_type, 0, "[SKIPPED] not SBC");
    let bl = e.t.inquiry(&e.sd, true, 0xB0, 255).await;
    expect(&bl, Expect::Good);
    assert_eq!(bl.data.len(), usize::from(bl.byte(3)) + 4, "page length");
    if bl.byte(3) == 8 {
        assert!(!e.p.sbc3_support, "SBC-3 claimed but page length is 8");
    } else if bl.data.len() >= 60 {
        assert!(e.p.sbc3_support, "SBC-3 page length without SBC-3 claim");
    }
    if bl.byte(3) != 0x3C {
        return;
    }
    // CHECK_FOR_THIN_PROVISIONING: without LBPME the rest is skipped.
    assert!(e.p.lbpme, "LBPME: the unit always reports it");
    let lbp = e.t.inquiry(&e.sd, true, 0xB2, 255).await;
    expect(&lbp, Expect::Good);
    let lbpu = lbp.byte(5) & 0x80 != 0;
    let (max_unmap, max_unmap_bdc) = (bl.be32(20), bl.be32(24));
    if lbpu {
        assert_ne!(max_unmap, 0);
        assert!(max_unmap >= 1 << e.p.lbppbe);
        if max_unmap != u32::MAX {
            assert!(
                max_unmap <= 1024 * 1024,
                "MAXIMUM UNMAP LBA COUNT insanely big"
            );
        }
        assert_ne!(max_unmap_bdc, 0);
        if max_unmap_bdc != u32::MAX {
            assert!(max_unmap_bdc <= 1024 * 1024);
        }
    } else {
        assert_eq!((max_unmap, max_unmap_bdc), (0, 0));
    }
}

async fn inquiry_mandatory_vpd_sbc_(e: &mut Env) {
    assert_eq!(e.p.device_type, 0, "[SKIPPED] not SBC");
    expect(&e.t.inquiry(&e.sd, true, 0x00, 255).await, Expect::Good);
    expect(&e.t.inquiry(&e.sd, true, 0x83, 255).await, Expect::Good);
}

/// The page list of the Supported VPD Pages page, as libiscsi unmarshalls it.
fn supported_pages(t: &Task) -> Vec<u8> {
    let n = usize::from(t.byte(3));
    (4..4 + n).map(|i| t.byte(i)).collect()
}

async fn inquiry_supported_vpd_(e: &mut Env) {
    let t = e.t.inquiry(&e.sd, true, 0x00, 255).await;
    expect(&t, Expect::Good);
    assert!(t.data.len() >= 4);
    for page in supported_pages(&t) {
        let p = e.t.inquiry(&e.sd, true, page, 255).await;
        expect(&p, Expect::Good);
    }
}

async fn inquiry_vpd_page_codes_sorted_(e: &mut Env) {
    let t = e.t.inquiry(&e.sd, true, 0x00, 255).await;
    expect(&t, Expect::Good);
    assert!(t.data.len() >= 4);
    let pages = supported_pages(&t);
    assert!(
        pages.windows(2).all(|w| w[1] > w[0]),
        "not ascending: {pages:02x?}"
    );
}

async fn inquiry_version_descriptors_(e: &mut Env) {
    // libiscsi only warns when no SPC or SBC version is claimed; we require both.
    assert_eq!(e.p.device_type, 0);
    const SPC: [u16; 21] = [
        0x0120, 0x013C, 0x013B, 0x0260, 0x0278, 0x0277, 0x0276, 0x0267, 0x0269, 0x0275, 0x0300,
        0x0316, 0x0314, 0x0301, 0x0307, 0x030F, 0x0312, 0x0460, 0x0461, 0x0462, 0x0463,
    ];
    const SBC: [u16; 10] = [
        0x0180, 0x019C, 0x019B, 0x0320, 0x033E, 0x033D, 0x033B, 0x0322, 0x0324, 0x04C0,
    ];
    let v = e.p.version_descriptors;
    assert!(
        v.iter().any(|d| SPC.contains(d)),
        "no SPC claimed: {v:04x?}"
    );
    assert!(
        v.iter().any(|d| SBC.contains(d)),
        "no SBC claimed: {v:04x?}"
    );
}

// ---------------------------------------------------------------------------------------------
// ReportLUNs
// ---------------------------------------------------------------------------------------------

async fn report_luns_simple_(e: &mut Env) {
    let cdb = Cdb::ReportLuns {
        select_report: 0,
        alloc_len: 512,
    };
    let t = e.t.run(&e.sd, cdb, vec![0; 512]).await;
    expect(&t, Expect::Good);
    let full = t.be32(0) as usize + 8;
    assert!(
        full <= t.data.len(),
        "[SKIPPED] REPORT LUNS response truncated"
    );
    let luns: Vec<u16> = (0..t.be32(0) as usize / 8)
        .map(|i| t.be16(8 + 8 * i))
        .collect();
    assert!(!luns.is_empty());
    for (i, a) in luns.iter().enumerate() {
        assert!(!luns[i + 1..].contains(a), "duplicate LUN {a:#x}");
    }
}

// ---------------------------------------------------------------------------------------------
// ModeSense6
// ---------------------------------------------------------------------------------------------

async fn modesense6_all_pages_(e: &mut Env) {
    let t =
        e.t.modesense6(&e.sd, false, PC_CURRENT, ALL_PAGES, 0, 255)
            .await;
    expect(&t, Expect::Good);
    let ms = parse_mode_sense6(&t).expect("unmarshall");
    assert!(ms.mode_data_length >= 3);
}

async fn modesense6_control_(e: &mut Env) {
    let ap =
        e.t.modesense6(&e.sd, false, PC_CURRENT, ALL_PAGES, 0, 255)
            .await;
    expect(&ap, Expect::Good);
    let ap = parse_mode_sense6(&ap).expect("unmarshall all pages");
    assert!(ap.mode_data_length >= 3);
    let ap_page = ap
        .pages
        .iter()
        .find(|p| p.page_code == MODEPAGE_CONTROL && !p.spf)
        .cloned();
    let ct =
        e.t.modesense6(&e.sd, false, PC_CURRENT, MODEPAGE_CONTROL, 0, 255)
            .await;
    expect(&ct, Expect::Good);
    let ct = parse_mode_sense6(&ct).expect("unmarshall control");
    assert!(ct.mode_data_length >= 3);
    let ct_page = ct
        .pages
        .iter()
        .find(|p| p.page_code == MODEPAGE_CONTROL)
        .cloned();
    // libiscsi passes when neither has the page; it must be in both or neither. We serve it.
    let (ap_page, ct_page) = (ap_page.expect("in AllPages"), ct_page.expect("direct"));
    let (a, c) = (Control::parse(&ap_page.body), Control::parse(&ct_page.body));
    assert_eq!(c, a, "CONTROL page differs between AllPages and direct");
    assert!(c.tst <= 1, "TST");
    assert!(
        !(2..8).contains(&c.queue_algorithm_modifier),
        "QUEUE ALGORITHM MODIFIER"
    );
    assert_ne!(c.qerr, 2, "QERR");
    assert_ne!(c.ua_intlck_ctrl, 1, "UA_INTLCK_CTRL");
    // libiscsi only warns when BUSY TIMEOUT PERIOD is 0.
    assert_ne!(c.busy_timeout_period, 0);
}

/// The CONTROL page's D_SENSE bit, then a failing READ(16) whose sense format must follow it.
async fn d_sense_check(e: &Env) {
    let ms =
        e.t.modesense6(&e.sd, false, PC_CURRENT, MODEPAGE_CONTROL, 0, 255)
            .await;
    expect(&ms, Expect::Good);
    let ms = parse_mode_sense6(&ms).expect("unmarshall");
    let page = ms
        .pages
        .iter()
        .find(|p| p.page_code == MODEPAGE_CONTROL)
        .expect("[SKIPPED] CONTROL page not reported");
    let r16 = e.t.read(&e.sd, CdbSize::Sixteen, u64::MAX, 1).await;
    expect(&r16, Expect::LbaOob);
    let d_sense = Control::parse(&page.body).d_sense;
    match r16.sense.error_type {
        0x72 | 0x73 => assert!(d_sense, "descriptor sense while D_SENSE is clear"),
        0x70 | 0x71 => assert!(!d_sense, "fixed sense while D_SENSE is set"),
        other => panic!("response code {other:#x}"),
    }
}

async fn modesense6_control_d_sense_(e: &mut Env) {
    d_sense_check(e).await;
}

/// `set_swp` / `clear_swp`.
async fn change_swp(e: &Env, on: bool) -> Ret {
    if on {
        let ch =
            e.t.modesense6(&e.sd, true, PC_CHANGEABLE, MODEPAGE_CONTROL, 0, 255)
                .await;
        check_result("MODESENSE6", &ch, Expect::Good)?;
        let ms = parse_mode_sense6(&ch).ok_or("unmarshall")?;
        let first = ms.pages.first().ok_or("no page")?;
        if !Control::parse(&first.body).swp {
            return Err("[SKIPPED] SWP is not changeable".into());
        }
    }
    let cur =
        e.t.modesense6(&e.sd, true, PC_CURRENT, MODEPAGE_CONTROL, 0, 255)
            .await;
    check_result("MODESENSE6", &cur, Expect::Good)?;
    let ms = parse_mode_sense6(&cur).ok_or("unmarshall")?;
    let page = get_page(&ms, MODEPAGE_CONTROL, 0).ok_or("no control page")?;
    let mut control = Control::parse(&page.body);
    control.swp = on;
    let t =
        e.t.modeselect6(&e.sd, true, false, &control.marshall())
            .await;
    check_result("MODESELECT6", &t, Expect::Good)
}

async fn modesense6_control_swp_(e: &mut Env) {
    assert_eq!(e.p.device_type, 0);
    ok(change_swp(e, true).await);
    let ms =
        e.t.modesense6(&e.sd, false, PC_CURRENT, MODEPAGE_CONTROL, 0, 255)
            .await;
    expect(&ms, Expect::Good);
    let ms = parse_mode_sense6(&ms).expect("unmarshall");
    let page = ms
        .pages
        .iter()
        .find(|p| p.page_code == MODEPAGE_CONTROL)
        .expect("CONTROL page");
    assert!(Control::parse(&page.body).swp, "SWP is not set");
    expect(&e.t.read(&e.sd, CdbSize::Ten, 0, 1).await, Expect::Good);
    let w = e.t.write(&e.sd, CdbSize::Ten, 0, vec![0; BS]).await;
    expect(&w, Expect::WriteProtected);
    // libiscsi ignores clear_swp's result; it must work for what follows.
    ok(change_swp(e, false).await);
}

async fn modesense6_residuals_(e: &mut Env) {
    let t =
        e.t.modesense6(&e.sd, false, PC_CURRENT, ALL_PAGES, 0, 4)
            .await;
    expect(&t, Expect::Good);
    assert!(t.data.len() <= 4);
    assert!(
        !matches!(t.residual, Residual::Overflow(_)),
        "{:?}",
        t.residual
    );
    let t =
        e.t.modesense6(&e.sd, false, PC_CURRENT, ALL_PAGES, 0, 255)
            .await;
    expect(&t, Expect::Good);
    if t.data.len() == 255 {
        assert!(!matches!(t.residual, Residual::Underflow(_)));
    } else {
        assert!(
            matches!(t.residual, Residual::Underflow(_)),
            "{:?}",
            t.residual
        );
    }
}

// ---------------------------------------------------------------------------------------------
// ReadOnly, Mandatory
// ---------------------------------------------------------------------------------------------

/// ReadOnly.ReadOnlySBC. On a writable unit libiscsi SKIPs it (CHECK_FOR_READONLY).
async fn readonly_sbc_(e: &mut Env) {
    if !e.p.readonly {
        return; // [SKIPPED] Logical unit is not write-protected.
    }
    assert_eq!(e.p.device_type, 0);
    let (t, sd) = (&e.t, &e.sd);
    let block = vec![0xA6u8; BS];
    let wp = Expect::WriteProtected;
    let caw = Cdb::CompareAndWrite {
        rw: Rw {
            size: CdbSize::Sixteen,
            ..Rw::new(0, 1)
        },
    };
    expect(&t.run(sd, caw, vec![0xA6; 2 * BS]).await, wp);
    let orwrite = Cdb::OrWrite(Rw {
        size: CdbSize::Sixteen,
        ..Rw::new(0, 1)
    });
    expect(&t.run(sd, orwrite, block.clone()).await, wp);
    let lbppb = 1u32 << e.p.lbppbe;
    for num in [lbppb, 1] {
        let mut list = vec![0u8; 24];
        list[0..2].copy_from_slice(&22u16.to_be_bytes());
        list[2..4].copy_from_slice(&16u16.to_be_bytes());
        list[16..20].copy_from_slice(&num.to_be_bytes());
        let unmap = Cdb::Unmap {
            anchor: false,
            group: 0,
            param_len: 24,
        };
        expect(&t.run(sd, unmap, list).await, wp);
    }
    for size in [CdbSize::Ten, CdbSize::Twelve, CdbSize::Sixteen] {
        expect(&t.write(sd, size, 0, block.clone()).await, wp);
    }
    for size in [CdbSize::Ten, CdbSize::Sixteen] {
        let ws = |unmap| Cdb::WriteSame {
            rw: Rw {
                size,
                ..Rw::new(0, 1)
            },
            unmap,
            anchor: false,
            ndob: false,
        };
        expect(&t.run(sd, ws(false), block.clone()).await, wp);
        // WRITE SAME with UNMAP and no data-out buffer (libiscsi sends data NULL).
        expect(&t.run(sd, ws(true), vec![]).await, wp);
    }
    for size in [CdbSize::Ten, CdbSize::Twelve, CdbSize::Sixteen] {
        let wv = Cdb::WriteAndVerify {
            rw: Rw {
                size,
                ..Rw::new(0, 1)
            },
            bytchk: 1,
        };
        expect(&t.run(sd, wv, block.clone()).await, wp);
    }
}

async fn mandatory_sbc_(e: &mut Env) {
    assert_eq!(e.p.device_type, 0);
    expect(&e.t.inquiry(&e.sd, false, 0, 255).await, Expect::Good);
    expect(&e.t.readcapacity10(&e.sd).await, Expect::Good);
    assert!(e.p.sbc3_support);
    expect(&e.t.readcapacity16(&e.sd, 15).await, Expect::Good);
    expect(&e.t.read(&e.sd, CdbSize::Ten, 0, 1).await, Expect::Good);
    expect(&e.t.read(&e.sd, CdbSize::Sixteen, 0, 1).await, Expect::Good);
    expect(&e.t.tur(&e.sd).await, Expect::Good);
}

// ---------------------------------------------------------------------------------------------
// ReportSupportedOpcodes
// ---------------------------------------------------------------------------------------------

const RSOC_ALL: u8 = 0;
const RSOC_OPCODE: u8 = 1;
const RSOC_SERVICEACTION: u8 = 2;

async fn report_supported_opcodes_simple_(e: &mut Env) {
    let t =
        e.t.report_supported_opcodes(&e.sd, false, RSOC_ALL, 0, 0, 1024)
            .await;
    expect(&t, Expect::Good);
}

async fn all_opcodes(e: &Env, rctd: bool) -> Vec<CommandDescriptor> {
    let t =
        e.t.report_supported_opcodes(&e.sd, rctd, RSOC_ALL, 0, 0, 65535)
            .await;
    expect(&t, Expect::Good);
    parse_rsoc(&t).expect("unmarshall")
}

async fn report_supported_opcodes_one_command_(e: &mut Env) {
    let all = all_opcodes(e, false).await;
    assert!(!all.is_empty());
    for d in &all {
        let one = |options| {
            e.t.report_supported_opcodes(&e.sd, false, options, d.opcode, d.sa, 65535)
        };
        let (opcode_only, with_sa) = if d.servactv {
            (Expect::InvalidFieldInCdb, Expect::Good)
        } else {
            (Expect::Good, Expect::InvalidFieldInCdb)
        };
        expect(&one(RSOC_OPCODE).await, opcode_only);
        expect(&one(RSOC_SERVICEACTION).await, with_sa);
    }
    for d in &all {
        let options = if d.servactv {
            RSOC_SERVICEACTION
        } else {
            RSOC_OPCODE
        };
        let t =
            e.t.report_supported_opcodes(&e.sd, false, options, d.opcode, d.sa, 65535)
                .await;
        expect(&t, Expect::Good);
        let cdb_length = t.be16(2);
        assert_ne!(cdb_length, 0, "{:#04x}/{:#x}", d.opcode, d.sa);
        assert_eq!(t.byte(4), d.opcode, "CDB USAGE DATA[0]");
    }
}

async fn report_supported_opcodes_rctd_(e: &mut Env) {
    let all = all_opcodes(e, false).await;
    assert!(all.iter().all(|d| !d.ctdp), "CTDP set with RCTD == 0");
    let all = all_opcodes(e, true).await;
    assert!(all.iter().all(|d| d.ctdp), "CTDP clear with RCTD == 1");
    assert!(all.iter().all(|d| d.timeout_descriptor_length == 0x0A));
}

async fn report_supported_opcodes_servactv_(e: &mut Env) {
    let all = all_opcodes(e, false).await;
    assert!(all.iter().all(|d| d.servactv || d.sa == 0));
}

/// Not a libiscsi test: libiscsi decides from the REPORT SUPPORTED OPERATION CODES list whether a
/// command is supported (`get_command_descriptor`, used by the Sanitize tests), so every listed
/// command must be implemented: sent with its other CDB fields zero it must not be refused as an
/// unknown operation code or service action.
#[tokio::test]
async fn report_supported_opcodes_lists_only_implemented_commands() {
    let mut no_atomic = disk();
    no_atomic.max_atomic_blocks = 0;
    for cfg in [disk(), removable(), no_atomic] {
        let atomic = cfg.max_atomic_blocks != 0;
        let e = env(cfg).await;
        let all = all_opcodes(&e, false).await;
        assert_eq!(
            all.iter().any(|d| d.opcode == 0x9C),
            atomic,
            "WRITE ATOMIC(16)"
        );
        for d in all {
            let mut cdb = vec![0u8; usize::from(d.cdb_len)];
            cdb[0] = d.opcode;
            if d.servactv {
                cdb[1] = d.sa as u8 & 0x1F;
            }
            let t = e.t.exec(&e.sd, &cdb, vec![]).await;
            let what = format!("{:#04x}/{:#x}: {} {:?}", d.opcode, d.sa, t.status, t.sense);
            assert!(!t.is_invalid_opcode(), "{what}");
            let bad_sa = t.status == Status::CHECK_CONDITION
                && t.sense.ascq == 0x2400
                && t.sense.sense_specific
                && t.sense.field_pointer == 1;
            assert!(!(d.servactv && bad_sa), "service action refused: {what}");
            // Whatever it did, the unit still works.
            let _ = e.t.tur(&e.sd).await;
            let _ = e.t.startstopunit(&e.sd, (0, 0, 0, 0, 0, 1)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PrinReadKeys, PrinServiceactionRange, PrinReportCapabilities
// ---------------------------------------------------------------------------------------------

async fn prin_read_keys_simple_(e: &mut Env) {
    let (t, rk) = e.t.prin_read_keys(&e.sd, 16384).await;
    ok(rk.map(drop));
    assert!(t.data.len() >= 8);
    // libiscsi only logs a mismatch here.
    assert_eq!(t.be32(4) as usize, t.data.len() - 8, "ADDITIONAL LENGTH");
}

async fn prin_read_keys_truncate_(e: &mut Env) {
    let k = key(1);
    ok(e.t.prout_register_and_ignore(&e.sd, k).await);
    let (_, rk) = e.t.prin_read_keys(&e.sd, 8).await;
    let rk = rk.unwrap();
    assert_ne!(
        rk.additional_length, 0,
        "ADDITIONAL LENGTH is not truncated"
    );
    assert_eq!(rk.keys.len(), 0);
    ok(e.t.prout_register_key(&e.sd, 0, k).await);
}

async fn prin_serviceaction_range_(e: &mut Env) {
    let (_, rk) = e.t.prin_read_keys(&e.sd, 16384).await;
    ok(rk.map(drop));
    for sa in 0..4 {
        ok(e.t.prin_task(&e.sd, sa, true).await);
    }
    for sa in 4..0x20 {
        ok(e.t.prin_task(&e.sd, sa, false).await);
    }
}

async fn prin_report_caps_simple_(e: &mut Env) {
    let k = key(2);
    ok(e.t.prout_register_and_ignore(&e.sd, k).await);
    let t = e.t.prin(&e.sd, 0x02, 16384).await;
    ok(Target::pr_ret(&t, "PRIN/REPORT_CAPABILITIES"));
    assert_eq!(t.be16(0), 8, "LENGTH");
    assert!((t.byte(3) & 0x70) >> 4 <= 5, "ALLOW COMMANDS");
    let mask = t.be16(4);
    const ALL: u16 = 1 | 1 << 9 | 1 << 11 | 1 << 13 | 1 << 14 | 1 << 15;
    assert_eq!(mask & !ALL, 0);
    for (bit, kind) in [
        (1 << 15, PR_WEAR),
        (1 << 14, PR_EARO),
        (1 << 13, PR_WERO),
        (1 << 11, PR_EA),
        (1 << 9, PR_WE),
        (1, PR_EAAR),
    ] {
        // libiscsi skips unsupported types; the unit supports all six.
        assert_ne!(mask & bit, 0, "type {kind} not supported");
        ok(e.t.prout_reserve(&e.sd, k, kind).await);
        let want = if all_registrants(kind) { 0 } else { k };
        ok(e.t.prin_verify_reserved_as(&e.sd, want, kind).await);
        ok(e.t.prout_release(&e.sd, k, kind).await);
    }
    ok(e.t.prout_register_key(&e.sd, 0, k).await);
}

// ---------------------------------------------------------------------------------------------
// ProutRegister, ProutReserve, ProutClear, ProutPreempt
// ---------------------------------------------------------------------------------------------

async fn prout_register_simple_(e: &mut Env) {
    let k = key(3);
    ok(e.t.prout_register_and_ignore(&e.sd, k).await);
    ok(e.t.prin_verify_key_presence(&e.sd, k, true).await);
    ok(e.t.prout_reregister_key_fails(&e.sd, k + 1).await);
    ok(e.t.prout_register_key(&e.sd, 0, k).await);
    ok(e.t.prin_verify_key_presence(&e.sd, k, false).await);
}

async fn prout_reserve_simple_(e: &mut Env) {
    let k = key(4);
    ok(e.t.prout_register_and_ignore(&e.sd, k).await);
    for kind in [PR_WE, PR_EA, PR_WERO, PR_EARO, PR_WEAR, PR_EAAR] {
        ok(e.t.prout_reserve(&e.sd, k, kind).await);
        let want = if all_registrants(kind) { 0 } else { k };
        ok(e.t.prin_verify_reserved_as(&e.sd, want, kind).await);
        ok(e.t.prout_release(&e.sd, k, kind).await);
    }
    ok(e.t.prout_register_key(&e.sd, 0, k).await);
}

/// `verify_persistent_reserve_access`.
async fn reserve_access(
    e: &Env,
    sd2: &Sd,
    kind: u8,
    reg_i2_can_read: bool,
    reg_i2_can_write: bool,
    unreg_i2_can_read: bool,
    unreg_i2_can_write: bool,
) {
    let (t, sd1) = (&e.t, &e.sd);
    let (k1, k2) = (key(10 + u64::from(kind)), key(20 + u64::from(kind)));
    t.testunitready_clear_ua(sd1).await;
    t.testunitready_clear_ua(sd2).await;
    ok(t.prout_register_and_ignore(sd1, k1).await);
    ok(t.prout_register_and_ignore(sd2, k2).await);
    ok(t.prout_reserve(sd1, k1, kind).await);
    let want = if all_registrants(kind) { 0 } else { k1 };
    ok(t.prin_verify_reserved_as(sd1, want, kind).await);
    ok(t.verify_read_works(sd1).await);
    ok(t.verify_write_works(sd1).await);
    let can = |c: bool, works: Ret, fails: Ret| if c { works } else { fails };
    ok(can(
        reg_i2_can_read,
        t.verify_read_works(sd2).await,
        t.verify_read_fails(sd2).await,
    ));
    ok(can(
        reg_i2_can_write,
        t.verify_write_works(sd2).await,
        t.verify_write_fails(sd2).await,
    ));
    ok(t.prout_register_key(sd2, 0, k2).await);
    ok(can(
        unreg_i2_can_read,
        t.verify_read_works(sd2).await,
        t.verify_read_fails(sd2).await,
    ));
    ok(can(
        unreg_i2_can_write,
        t.verify_write_works(sd2).await,
        t.verify_write_fails(sd2).await,
    ));
    ok(t.prout_release(sd1, k1, kind).await);
    ok(t.prout_register_key(sd1, 0, k1).await);
}

async fn access(e: &mut Env, kind: u8, access: [bool; 4]) {
    let sd2 = e.sd2_get().await;
    let [a, b, c, d] = access;
    reserve_access(e, &sd2, kind, a, b, c, d).await;
    e.sd2_put(&sd2);
}

async fn prout_reserve_access_ea_(e: &mut Env) {
    access(e, PR_EA, [false, false, false, false]).await;
}

async fn prout_reserve_access_we_(e: &mut Env) {
    access(e, PR_WE, [true, false, true, false]).await;
}

async fn prout_reserve_access_earo_(e: &mut Env) {
    access(e, PR_EARO, [true, true, false, false]).await;
}

async fn prout_reserve_access_wero_(e: &mut Env) {
    access(e, PR_WERO, [true, true, true, false]).await;
}

async fn prout_reserve_access_eaar_(e: &mut Env) {
    access(e, PR_EAAR, [true, true, false, false]).await;
}

async fn prout_reserve_access_wear_(e: &mut Env) {
    access(e, PR_WEAR, [true, true, true, false]).await;
}

/// `verify_persistent_reserve_ownership`.
async fn ownership(e: &mut Env, kind: u8, resvn_is_shared: bool) {
    let sd2 = e.sd2_get().await;
    let (t, sd1) = (&e.t, &e.sd);
    let (k1, k2) = (key(30 + u64::from(kind)), key(40 + u64::from(kind)));
    t.testunitready_clear_ua(sd1).await;
    t.testunitready_clear_ua(&sd2).await;
    ok(t.prout_register_and_ignore(sd1, k1).await);
    ok(t.prout_register_and_ignore(&sd2, k2).await);
    ok(t.prout_reserve(sd1, k1, kind).await);
    let want = if all_registrants(kind) { 0 } else { k1 };
    ok(t.prin_verify_reserved_as(sd1, want, kind).await);
    // The holder unregisters.
    ok(t.prout_register_key(sd1, 0, k1).await);
    if resvn_is_shared {
        ok(t.prin_verify_reserved_as(sd1, want, kind).await);
        ok(t.prout_release(&sd2, k2, kind).await);
    } else {
        ok(t.prin_verify_not_reserved(sd1).await);
        t.testunitready_clear_ua(&sd2).await;
    }
    ok(t.prout_register_key(&sd2, 0, k2).await);
    e.sd2_put(&sd2);
}

async fn prout_reserve_ownership_ea_(e: &mut Env) {
    ownership(e, PR_EA, false).await;
}

async fn prout_reserve_ownership_we_(e: &mut Env) {
    ownership(e, PR_WE, false).await;
}

async fn prout_reserve_ownership_earo_(e: &mut Env) {
    ownership(e, PR_EARO, false).await;
}

async fn prout_reserve_ownership_wero_(e: &mut Env) {
    ownership(e, PR_WERO, false).await;
}

async fn prout_reserve_ownership_eaar_(e: &mut Env) {
    ownership(e, PR_EAAR, true).await;
}

async fn prout_reserve_ownership_wear_(e: &mut Env) {
    ownership(e, PR_WEAR, true).await;
}

async fn prout_clear_simple_(e: &mut Env) {
    let k = key(5);
    ok(e.t.prout_register_and_ignore(&e.sd, k).await);
    let (_, rk) = e.t.prin_read_keys(&e.sd, 16384).await;
    let rk = rk.unwrap();
    assert_ne!(rk.keys.len(), 0);
    let old_gen = rk.prgeneration;
    ok(e.t.prout_reserve(&e.sd, k, PR_EA).await);
    ok(e.t.prin_verify_reserved_as(&e.sd, k, PR_EA).await);
    ok(e.t.prout_clear(&e.sd, k).await);
    ok(e.t.prin_verify_not_reserved(&e.sd).await);
    let (_, rk) = e.t.prin_read_keys(&e.sd, 16384).await;
    let rk = rk.unwrap();
    assert_eq!(rk.keys.len(), 0);
    assert_eq!(rk.prgeneration, old_gen.wrapping_add(1), "CLEAR bumps once");
}

async fn prout_preempt_rm_reg_(e: &mut Env) {
    let (k1, k2) = (key(6), key(7));
    ok(e.t.prout_register_and_ignore(&e.sd, k1).await);
    ok(e.t.prout_clear(&e.sd, k1).await);
    ok(e.t.prout_register_and_ignore(&e.sd, k1).await);
    // The test never puts this session back.
    let sd2 = e.sd2_get().await;
    ok(e.t.prout_register_and_ignore(&sd2, k2).await);
    let (_, rk) = e.t.prin_read_keys(&e.sd, 16384).await;
    let rk = rk.unwrap();
    assert_eq!(rk.keys.len(), 2);
    let old_gen = rk.prgeneration;
    ok(e.t.prout_preempt(&sd2, k1, k2, PR_EA).await);
    e.t.tur_until_good(&e.sd).await.unwrap();
    e.t.tur_until_good(&sd2).await.unwrap();
    let (_, rk) = e.t.prin_read_keys(&e.sd, 16384).await;
    let rk = rk.unwrap();
    assert_eq!(rk.keys, vec![k2]);
    assert_eq!(
        rk.prgeneration,
        old_gen.wrapping_add(1),
        "PREEMPT bumps once"
    );
    ok(e.t.prout_register_key(&sd2, 0, k2).await);
}

// ---------------------------------------------------------------------------------------------
// Reserve6
// ---------------------------------------------------------------------------------------------

async fn reserve6_simple_(e: &mut Env) {
    ok(e.t.reserve6(&e.sd).await);
    ok(e.t.release6(&e.sd).await);
}

async fn reserve6_2initiators_(e: &mut Env) {
    let t = e.t.clone();
    ok(t.reserve6(&e.sd).await);
    ok(t.reserve6(&e.sd).await);
    let sd2 = e.sd2_get().await;
    ok(t.reserve6_conflict(&sd2).await);
    ok(t.release6(&sd2).await);
    let ms = t
        .modesense6(&e.sd, false, PC_CURRENT, ALL_PAGES, 0, 255)
        .await;
    expect(&ms, Expect::Good);
    let ms = t
        .modesense6(&sd2, false, PC_CURRENT, ALL_PAGES, 0, 255)
        .await;
    expect(&ms, Expect::ReservationConflict);
    ok(t.reserve6_conflict(&sd2).await);
    ok(t.release6(&e.sd).await);
    ok(t.reserve6(&sd2).await);
    ok(t.release6(&sd2).await);
    e.sd2_put(&sd2);
}

/// Reserve6.Logout and Reserve6.ITNexusLoss: both end the I_T nexus of the holder.
async fn reserve6_nexus_gone(e: &mut Env) {
    let t = e.t.clone();
    ok(t.reserve6(&e.sd).await);
    let sd2 = e.sd2_get().await;
    ok(t.reserve6_conflict(&sd2).await);
    t.relogin(&mut e.sd).await;
    ok(t.reserve6(&sd2).await);
    ok(t.release6(&sd2).await);
    e.sd2_put(&sd2);
}

async fn reserve6_logout_(e: &mut Env) {
    reserve6_nexus_gone(e).await;
}

async fn reserve6_itnexus_loss_(e: &mut Env) {
    reserve6_nexus_gone(e).await;
}

async fn reserve6_target_reset(e: &mut Env, kind: ResetKind) {
    let t = e.t.clone();
    ok(t.reserve6(&e.sd).await);
    if !e.target_resets {
        return; // [SKIPPED] Task Management function ... is not working/implemented
    }
    t.target_reset(kind);
    let sd2 = e.sd2_get().await;
    ok(t.reserve6(&sd2).await);
    ok(t.release6(&sd2).await);
    e.sd2_put(&sd2);
}

async fn reserve6_target_cold_reset_(e: &mut Env) {
    reserve6_target_reset(e, ResetKind::TargetCold).await;
}

async fn reserve6_target_warm_reset_(e: &mut Env) {
    reserve6_target_reset(e, ResetKind::TargetWarm).await;
}

async fn reserve6_lun_reset_(e: &mut Env) {
    let t = e.t.clone();
    ok(t.reserve6(&e.sd).await);
    t.lun_reset();
    // A fresh session as initiatorname2, not the multipath device.
    let sd2 = t.login(INITIATOR2, e.sd.0.port, false).await;
    ok(t.reserve6(&sd2).await);
    ok(t.release6(&sd2).await);
    t.logout(&sd2);
}

// ---------------------------------------------------------------------------------------------
// NoMedia (not in the brief's list; it checks the medium-not-present gate of a removable unit)
// ---------------------------------------------------------------------------------------------

async fn nomedia_sbc_(e: &mut Env) {
    if !e.p.rmb {
        return; // [SKIPPED] LUN is not removable.
    }
    let (t, sd) = (e.t.clone(), e.sd.clone());
    let nm = Expect::NoMedium;
    expect(&ssu(e, &sd, (1, 0, 0, 0, 1, 0)).await, Expect::Good);
    expect(&t.tur(&sd).await, nm);
    for size in [CdbSize::Ten, CdbSize::Sixteen] {
        let cdb = Cdb::SynchronizeCache {
            size,
            lba: 0,
            blocks: 1,
            immed: true,
        };
        expect(&t.run(&sd, cdb, vec![]).await, nm);
    }
    for size in [CdbSize::Ten, CdbSize::Twelve, CdbSize::Sixteen] {
        expect(&t.read(&sd, size, 0, 1).await, nm);
    }
    expect(&t.readcapacity10(&sd).await, nm);
    expect(&t.readcapacity16(&sd, 15).await, nm);
    for size in [CdbSize::Ten, CdbSize::Twelve, CdbSize::Sixteen] {
        let rw = Rw {
            size,
            ..Rw::new(0, 1)
        };
        let verify = Cdb::Verify { rw, bytchk: 1 };
        expect(&t.run(&sd, verify, vec![0; BS]).await, nm);
    }
    let gls = Cdb::GetLbaStatus {
        lba: 0,
        alloc_len: 24,
    };
    expect(&t.run(&sd, gls, vec![0; 24]).await, nm);
    for size in [CdbSize::Ten, CdbSize::Sixteen] {
        let cdb = Cdb::PreFetch {
            size,
            lba: 0,
            blocks: 1,
            immed: true,
        };
        expect(&t.run(&sd, cdb, vec![]).await, nm);
    }
    expect(&t.run(&sd, caw(0), vec![0; 2 * BS]).await, nm);
    let orwrite = Cdb::OrWrite(Rw {
        size: CdbSize::Sixteen,
        ..Rw::new(0, 1)
    });
    expect(&t.run(&sd, orwrite, vec![0; BS]).await, nm);
    let mut list = vec![0u8; 24];
    list[0..2].copy_from_slice(&22u16.to_be_bytes());
    list[2..4].copy_from_slice(&16u16.to_be_bytes());
    list[16..20].copy_from_slice(&(1u32 << e.p.lbppbe).to_be_bytes());
    let unmap = Cdb::Unmap {
        anchor: false,
        group: 0,
        param_len: 24,
    };
    expect(&t.run(&sd, unmap, list).await, nm);
    for size in [CdbSize::Ten, CdbSize::Twelve, CdbSize::Sixteen] {
        expect(&t.write(&sd, size, 0, vec![0; BS]).await, nm);
    }
    for size in [CdbSize::Ten, CdbSize::Sixteen] {
        let ws = Cdb::WriteSame {
            rw: Rw {
                size,
                ..Rw::new(0, 1)
            },
            unmap: false,
            anchor: false,
            ndob: false,
        };
        expect(&t.run(&sd, ws, vec![0; BS]).await, nm);
    }
    for size in [CdbSize::Ten, CdbSize::Twelve, CdbSize::Sixteen] {
        let rw = Rw {
            size,
            ..Rw::new(0, 1)
        };
        let wv = Cdb::WriteAndVerify { rw, bytchk: 1 };
        expect(&t.run(&sd, wv, vec![0; BS]).await, nm);
    }
    expect(&ssu(e, &sd, (1, 0, 0, 0, 1, 1)).await, Expect::Good);
}

// ---------------------------------------------------------------------------------------------
// PreventAllow (CHECK_FOR_REMOVABLE: every test SKIPs on a fixed disk)
// ---------------------------------------------------------------------------------------------

async fn ssu(e: &Env, sd: &Sd, args: SsuArgs) -> Task {
    e.t.startstopunit(sd, args).await
}

/// START STOP UNIT fields in libiscsi's order: IMMED, POWER CONDITION MODIFIER, POWER
/// CONDITION, NO_FLUSH, LOEJ, START.
type SsuArgs = (u8, u8, u8, u8, u8, u8);

const EJECT: SsuArgs = (0, 0, 0, 0, 1, 0);
const LOAD: SsuArgs = (0, 0, 0, 0, 1, 1);

/// The common opening: PREVENT, eject refused, medium still there.
async fn prevent_and_try_eject(e: &Env) {
    ok(e.t.preventallow(&e.sd, 1).await);
    expect(&ssu(e, &e.sd, EJECT).await, Expect::RemovalPrevented);
    expect(&e.t.tur(&e.sd).await, Expect::Good);
}

/// The common ending: eject works, no medium, eject again, ALLOW, load.
async fn eject_then_load(e: &Env) {
    expect(&ssu(e, &e.sd, EJECT).await, Expect::Good);
    expect(&e.t.tur(&e.sd).await, Expect::NoMedium);
    // ("Load the medium" with START = 0: another eject.)
    expect(&ssu(e, &e.sd, EJECT).await, Expect::Good);
    ok(e.t.preventallow(&e.sd, 0).await);
    expect(&ssu(e, &e.sd, LOAD).await, Expect::Good);
}

async fn preventallow_simple_(e: &mut Env) {
    if !e.p.rmb {
        return; // [SKIPPED] not removable
    }
    ok(e.t.preventallow(&e.sd, 1).await);
    ok(e.t.preventallow(&e.sd, 0).await);
}

async fn preventallow_eject_(e: &mut Env) {
    if !e.p.rmb {
        return; // [SKIPPED] not removable
    }
    prevent_and_try_eject(e).await;
    ok(e.t.preventallow(&e.sd, 0).await);
    expect(&ssu(e, &e.sd, EJECT).await, Expect::Good);
    expect(&e.t.tur(&e.sd).await, Expect::NoMedium);
    ok(e.t.preventallow(&e.sd, 1).await);
    expect(&ssu(e, &e.sd, LOAD).await, Expect::RemovalPrevented);
    ok(e.t.preventallow(&e.sd, 0).await);
    expect(&ssu(e, &e.sd, LOAD).await, Expect::Good);
}

/// PreventAllow.ITNexusLoss and PreventAllow.Logout.
async fn preventallow_nexus_gone(e: &mut Env) {
    if !e.p.rmb {
        return; // [SKIPPED] not removable
    }
    prevent_and_try_eject(e).await;
    let t = e.t.clone();
    t.relogin(&mut e.sd).await;
    eject_then_load(e).await;
}

async fn preventallow_itnexus_loss_(e: &mut Env) {
    preventallow_nexus_gone(e).await;
}

async fn preventallow_logout_(e: &mut Env) {
    preventallow_nexus_gone(e).await;
}

async fn preventallow_reset(e: &mut Env, kind: ResetKind) {
    if !e.p.rmb {
        return; // [SKIPPED] not removable
    }
    prevent_and_try_eject(e).await;
    let t = e.t.clone();
    if kind == ResetKind::LogicalUnit {
        t.lun_reset();
    } else if !e.target_resets {
        return; // [SKIPPED] Task Management function ... is not working/implemented
    } else {
        t.target_reset(kind);
    }
    // "Wait until all unit attentions clear".
    let mut n = 0;
    while !t.tur(&e.sd).await.good() {
        n += 1;
        assert!(n < 20, "TEST UNIT READY never GOOD");
    }
    eject_then_load(e).await;
}

async fn preventallow_warm_reset_(e: &mut Env) {
    preventallow_reset(e, ResetKind::TargetWarm).await;
}

async fn preventallow_cold_reset_(e: &mut Env) {
    preventallow_reset(e, ResetKind::TargetCold).await;
}

async fn preventallow_lun_reset_(e: &mut Env) {
    preventallow_reset(e, ResetKind::LogicalUnit).await;
}

async fn preventallow_2_itnexuses_(e: &mut Env) {
    if !e.p.rmb {
        return; // [SKIPPED] not removable
    }
    prevent_and_try_eject(e).await;
    let sd2 = e.sd2_get().await;
    expect(&ssu(e, &sd2, EJECT).await, Expect::RemovalPrevented);
    e.sd2_put(&sd2);
    ok(e.t.preventallow(&e.sd, 0).await);
    expect(&ssu(e, &e.sd, LOAD).await, Expect::Good);
}

// ---------------------------------------------------------------------------------------------
// StartStopUnit
// ---------------------------------------------------------------------------------------------

async fn startstopunit_simple_(e: &mut Env) {
    if !e.p.rmb {
        return; // [SKIPPED] Media is not removable.
    }
    expect(&ssu(e, &e.sd, (1, 0, 0, 0, 1, 0)).await, Expect::Good);
    expect(&e.t.tur(&e.sd).await, Expect::NoMedium);
    expect(&ssu(e, &e.sd, (1, 0, 0, 0, 1, 1)).await, Expect::Good);
    expect(&e.t.tur(&e.sd).await, Expect::Good);
    expect(&ssu(e, &e.sd, EJECT).await, Expect::Good);
    expect(&e.t.tur(&e.sd).await, Expect::NoMedium);
    expect(&ssu(e, &e.sd, LOAD).await, Expect::Good);
    expect(&e.t.tur(&e.sd).await, Expect::Good);
}

async fn startstopunit_pwrcnd_(e: &mut Env) {
    if !e.p.rmb {
        return; // [SKIPPED] LUN is not removable.
    }
    for pc in 1..16 {
        expect(&ssu(e, &e.sd, (1, 0, pc, 0, 1, 0)).await, Expect::Good);
        expect(&e.t.tur(&e.sd).await, Expect::Good);
    }
    expect(&ssu(e, &e.sd, (1, 0, 0, 0, 1, 1)).await, Expect::Good);
}

async fn startstopunit_noloej_(e: &mut Env) {
    if !e.p.rmb {
        return; // [SKIPPED] LUN is not removable.
    }
    for (immed, no_flush, start) in [
        (0, 0, 0),
        (0, 0, 1),
        (1, 0, 0),
        (1, 0, 1),
        (0, 1, 0),
        (0, 1, 1),
        (1, 1, 0),
        (1, 1, 1),
    ] {
        expect(
            &ssu(e, &e.sd, (immed, 0, 0, no_flush, 0, start)).await,
            Expect::Good,
        );
        expect(&e.t.tur(&e.sd).await, Expect::Good);
    }
    expect(&ssu(e, &e.sd, (1, 0, 0, 0, 1, 1)).await, Expect::Good);
}

// ---------------------------------------------------------------------------------------------
// MultipathIO (MPATH_SKIP_IF_UNAVAILABLE: libiscsi SKIPs these with a single URL)
// ---------------------------------------------------------------------------------------------

async fn multipathio_simple_(e: &mut Env) {
    let paths = e.paths();
    if paths.len() <= 1 {
        return; // [SKIPPED] Multipath unavailable.
    }
    for (write_path, sd) in paths.iter().enumerate() {
        let data = vec![0xA6 ^ write_path as u8; 256 * BS];
        let reader = &paths[(write_path + 1) % paths.len()];
        for i in 1..=256usize {
            let w =
                e.t.write(sd, CdbSize::Ten, 0, data[..i * BS].to_vec())
                    .await;
            expect(&w, Expect::Good);
            let r = e.t.read(reader, CdbSize::Ten, 0, i as u32).await;
            expect(&r, Expect::Good);
            assert!(r.data == data[..i * BS], "{i} blocks");
        }
    }
}

async fn multipathio_reset_(e: &mut Env) {
    let paths = e.paths();
    if paths.len() <= 1 {
        return; // [SKIPPED] Multipath unavailable.
    }
    for reset_sd in &paths {
        e.t.tur_until_good(reset_sd).await.unwrap();
        e.t.lun_reset();
        for sd in &paths {
            let uas = e.t.tur_until_good(sd).await.unwrap();
            assert_ne!(uas, 0, "no LU reset unit attention on {:?}", sd.nexus());
        }
    }
}

fn caw(lba: u64) -> Cdb {
    Cdb::CompareAndWrite {
        rw: Rw {
            size: CdbSize::Sixteen,
            ..Rw::new(lba, 1)
        },
    }
}

async fn multipathio_compareandwrite_(e: &mut Env) {
    let paths = e.paths();
    if paths.len() <= 1 {
        return; // [SKIPPED] Multipath unavailable.
    }
    let maxbl = e.p.max_cmp.unwrap_or(255);
    assert!(
        maxbl >= 1,
        "[SKIPPED] MAXIMUM COMPARE AND WRITE LENGTH too small"
    );
    let n = 255.min(e.p.num_blocks);
    let ws = Cdb::WriteSame {
        rw: Rw::new(0, 256),
        unmap: false,
        anchor: false,
        ndob: false,
    };
    expect(&e.t.run(&e.sd, ws, vec![0; BS]).await, Expect::Good);
    for i in 0..=n {
        for (path, sd) in paths.iter().enumerate() {
            let mut data = vec![path as u8; BS];
            data.extend_from_slice(&[path as u8 + 1; BS]);
            expect(&e.t.run(sd, caw(i), data.clone()).await, Expect::Good);
            expect(&e.t.run(sd, caw(i), data).await, Expect::Miscompare);
        }
    }
}

/// MultipathIO.CompareAndWriteAsync: COMPARE AND WRITEs queued on every path at once, each
/// expecting what the previous one left; each completes GOOD or with MISCOMPARE.
async fn multipathio_compareandwrite_async_(e: &mut Env) {
    let paths = e.paths();
    if paths.len() <= 1 {
        return; // [SKIPPED] Multipath unavailable.
    }
    let ws = Cdb::WriteSame {
        rw: Rw::new(0, 1),
        unmap: false,
        anchor: false,
        ndob: false,
    };
    expect(&e.t.run(&e.sd, ws, vec![0; BS]).await, Expect::Good);
    let n = paths.len();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..200 {
        for (i, sd) in paths.iter().enumerate() {
            let (t, sd) = (e.t.clone(), sd.clone());
            let (cmp, wr) = (i as u8, if i == n - 1 { 0 } else { i as u8 + 1 });
            set.spawn(async move {
                let mut data = vec![cmp; BS];
                data.extend_from_slice(&[wr; BS]);
                let task = t.run(&sd, caw(0), data).await;
                (i, task)
            });
        }
    }
    let mut successes = vec![0i64; n];
    while let Some(r) = set.join_next().await {
        let (i, task) = r.unwrap();
        if task.good() {
            successes[i] += 1;
        } else {
            assert_eq!(task.status, Status::CHECK_CONDITION);
            assert_eq!((task.sense.key, task.sense.ascq), (MISCOMPARE, 0x1D00));
        }
    }
    // Every success took the block from the value its path compares with to the next one, so
    // the successes went round the paths in order and the block shows how far they got.
    let r = e.t.read(&e.sd, CdbSize::Ten, 0, 1).await;
    expect(&r, Expect::Good);
    let total: i64 = successes.iter().sum();
    assert!(r.data.iter().all(|&b| i64::from(b) == total % n as i64));
    for w in successes.windows(2) {
        assert!(w[0] - w[1] == 0 || w[0] - w[1] == 1, "{successes:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// One test per libiscsi test
// ---------------------------------------------------------------------------------------------

libiscsi_test! {
    testunitready_simple => testunitready_simple_(disk());

    inquiry_standard => inquiry_standard_(disk());
    inquiry_alloc_length => inquiry_alloc_length_(disk());
    inquiry_evpd => inquiry_evpd_(disk());
    inquiry_block_limits => inquiry_block_limits_(disk());
    inquiry_mandatory_vpd_sbc => inquiry_mandatory_vpd_sbc_(disk());
    inquiry_supported_vpd => inquiry_supported_vpd_(disk());
    inquiry_vpd_page_codes_sorted => inquiry_vpd_page_codes_sorted_(disk());
    inquiry_version_descriptors => inquiry_version_descriptors_(disk());

    report_luns_simple => report_luns_simple_(disk());

    modesense6_all_pages => modesense6_all_pages_(disk());
    modesense6_control => modesense6_control_(disk());
    modesense6_control_d_sense => modesense6_control_d_sense_(disk());
    modesense6_control_swp => modesense6_control_swp_(disk());
    modesense6_residuals => modesense6_residuals_(disk());

    readonly_sbc => readonly_sbc_(read_only());
    mandatory_sbc => mandatory_sbc_(disk());

    report_supported_opcodes_simple => report_supported_opcodes_simple_(disk());
    report_supported_opcodes_one_command => report_supported_opcodes_one_command_(disk());
    report_supported_opcodes_rctd => report_supported_opcodes_rctd_(disk());
    report_supported_opcodes_servactv => report_supported_opcodes_servactv_(disk());

    prin_read_keys_simple => prin_read_keys_simple_(disk());
    prin_read_keys_truncate => prin_read_keys_truncate_(disk());
    prin_serviceaction_range => prin_serviceaction_range_(disk());
    prin_report_caps_simple => prin_report_caps_simple_(disk());

    prout_register_simple => prout_register_simple_(disk());
    prout_reserve_simple => prout_reserve_simple_(disk());
    prout_reserve_access_ea => prout_reserve_access_ea_(disk());
    prout_reserve_access_we => prout_reserve_access_we_(disk());
    prout_reserve_access_earo => prout_reserve_access_earo_(disk());
    prout_reserve_access_wero => prout_reserve_access_wero_(disk());
    prout_reserve_access_eaar => prout_reserve_access_eaar_(disk());
    prout_reserve_access_wear => prout_reserve_access_wear_(disk());
    prout_reserve_ownership_ea => prout_reserve_ownership_ea_(disk());
    prout_reserve_ownership_we => prout_reserve_ownership_we_(disk());
    prout_reserve_ownership_earo => prout_reserve_ownership_earo_(disk());
    prout_reserve_ownership_wero => prout_reserve_ownership_wero_(disk());
    prout_reserve_ownership_eaar => prout_reserve_ownership_eaar_(disk());
    prout_reserve_ownership_wear => prout_reserve_ownership_wear_(disk());
    prout_clear_simple => prout_clear_simple_(disk());
    prout_preempt_rm_reg => prout_preempt_rm_reg_(disk());

    reserve6_simple => reserve6_simple_(disk());
    reserve6_2initiators => reserve6_2initiators_(disk());
    reserve6_logout => reserve6_logout_(disk());
    reserve6_itnexus_loss => reserve6_itnexus_loss_(disk());
    reserve6_target_cold_reset => reserve6_target_cold_reset_(disk());
    reserve6_target_warm_reset => reserve6_target_warm_reset_(disk());
    reserve6_lun_reset => reserve6_lun_reset_(disk());

    preventallow_simple => preventallow_simple_(removable());
    preventallow_eject => preventallow_eject_(removable());
    preventallow_itnexus_loss => preventallow_itnexus_loss_(removable());
    preventallow_logout => preventallow_logout_(removable());
    preventallow_warm_reset => preventallow_warm_reset_(removable());
    preventallow_cold_reset => preventallow_cold_reset_(removable());
    preventallow_lun_reset => preventallow_lun_reset_(removable());
    preventallow_2_itnexuses => preventallow_2_itnexuses_(removable());

    startstopunit_simple => startstopunit_simple_(removable());
    startstopunit_pwrcnd => startstopunit_pwrcnd_(removable());
    startstopunit_noloej => startstopunit_noloej_(removable());

    nomedia_sbc => nomedia_sbc_(removable());
}

/// A multipath run: the MultipathIO tests need two URLs (libiscsi SKIPs them with one).
macro_rules! multipath_test {
    ($($name:ident => $scenario:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let mut e = Env::start_multipath(disk()).await;
                e.suite_init().await;
                $scenario(&mut e).await;
            }
        )*
    };
}

multipath_test! {
    multipathio_simple => multipathio_simple_;
    multipathio_reset => multipathio_reset_;
    multipathio_compareandwrite => multipathio_compareandwrite_;
    multipathio_compareandwrite_async => multipathio_compareandwrite_async_;
}

// ---------------------------------------------------------------------------------------------
// The paths libiscsi does not reach on a fixed, writable disk
// ---------------------------------------------------------------------------------------------

/// StartStopUnit.* and PreventAllow.* SKIP on a fixed disk. The unit still answers: PREVENT and
/// ALLOW succeed, START STOP UNIT without LOEJ and with a power condition succeed and leave the
/// medium, and LOEJ is an invalid field.
#[tokio::test]
async fn startstopunit_and_preventallow_on_a_fixed_disk() {
    let mut e = env(disk()).await;
    assert!(!e.p.rmb);
    for (immed, no_flush, start) in [(0, 0, 0), (1, 1, 1), (0, 1, 0), (1, 0, 1)] {
        let t = ssu(&e, &e.sd, (immed, 0, 0, no_flush, 0, start)).await;
        expect(&t, Expect::Good);
        expect(&e.t.tur(&e.sd).await, Expect::Good);
    }
    for pc in 1..16 {
        expect(&ssu(&e, &e.sd, (1, 0, pc, 0, 1, 0)).await, Expect::Good);
        expect(&e.t.tur(&e.sd).await, Expect::Good);
    }
    expect(&ssu(&e, &e.sd, EJECT).await, Expect::InvalidFieldInCdb);
    expect(&ssu(&e, &e.sd, LOAD).await, Expect::InvalidFieldInCdb);
    ok(e.t.preventallow(&e.sd, 1).await);
    expect(&ssu(&e, &e.sd, EJECT).await, Expect::InvalidFieldInCdb);
    ok(e.t.preventallow(&e.sd, 0).await);
    expect(&e.t.tur(&e.sd).await, Expect::Good);
    // The skipped scenarios run to their SKIP without a command.
    startstopunit_simple_(&mut e).await;
    preventallow_eject_(&mut e).await;
}

/// ModeSense6.Control-D_SENSE only looks at the current D_SENSE value (clear by default); with
/// D_SENSE set the same READ(16) must answer in descriptor format.
#[tokio::test]
async fn modesense6_control_d_sense_set() {
    let e = env(disk()).await;
    let ms =
        e.t.modesense6(&e.sd, true, PC_CURRENT, MODEPAGE_CONTROL, 0, 255)
            .await;
    let ms = parse_mode_sense6(&ms).unwrap();
    let mut control = Control::parse(&get_page(&ms, MODEPAGE_CONTROL, 0).unwrap().body);
    control.d_sense = true;
    let sel =
        e.t.modeselect6(&e.sd, true, false, &control.marshall())
            .await;
    expect(&sel, Expect::Good);
    d_sense_check(&e).await;
    let r16 = e.t.read(&e.sd, CdbSize::Sixteen, u64::MAX, 1).await;
    assert_eq!(r16.sense.error_type, 0x72);
    control.d_sense = false;
    let sel =
        e.t.modeselect6(&e.sd, true, false, &control.marshall())
            .await;
    expect(&sel, Expect::Good);
    d_sense_check(&e).await;
}

/// The read-only test SKIPs on a writable unit; the check that makes it skip must not fire.
#[tokio::test]
async fn readonly_sbc_skips_on_a_writable_unit() {
    let mut e = env(disk()).await;
    assert!(!e.p.readonly);
    readonly_sbc_(&mut e).await;
    let e = env(read_only()).await;
    assert!(e.p.readonly);
}

// ---------------------------------------------------------------------------------------------
// Whole suites in libiscsi's order on one unit
// ---------------------------------------------------------------------------------------------

/// Runs `$suite`'s tests in order, between `suite_init` and `suite_cleanup`.
macro_rules! suite {
    ($e:expr, [$($test:ident),* $(,)?]) => {{
        $e.suite_init().await;
        $( $test(&mut $e).await; )*
        $e.suite_cleanup().await;
    }};
}

/// Every suite covered here, in the order of `scsi_suites`, on one unit the way the real run will
/// see it.
async fn scsi_family_in_order(cfg: LuConfig, multipath: bool, target_resets: bool) {
    let mut e = Env::start_with(cfg, multipath).await;
    e.target_resets = target_resets;
    suite!(
        e,
        [
            inquiry_standard_,
            inquiry_alloc_length_,
            inquiry_evpd_,
            inquiry_block_limits_,
            inquiry_mandatory_vpd_sbc_,
            inquiry_supported_vpd_,
            inquiry_vpd_page_codes_sorted_,
            inquiry_version_descriptors_,
        ]
    );
    suite!(e, [mandatory_sbc_]);
    suite!(
        e,
        [
            modesense6_all_pages_,
            modesense6_control_,
            modesense6_control_d_sense_,
            modesense6_control_swp_,
            modesense6_residuals_,
        ]
    );
    suite!(e, [nomedia_sbc_]);
    suite!(
        e,
        [
            preventallow_simple_,
            preventallow_eject_,
            preventallow_itnexus_loss_,
            preventallow_logout_,
            preventallow_warm_reset_,
            preventallow_cold_reset_,
            preventallow_lun_reset_,
            preventallow_2_itnexuses_,
        ]
    );
    suite!(e, [prin_read_keys_simple_, prin_read_keys_truncate_]);
    suite!(e, [prin_serviceaction_range_]);
    suite!(e, [prin_report_caps_simple_]);
    suite!(e, [prout_register_simple_]);
    suite!(
        e,
        [
            prout_reserve_simple_,
            prout_reserve_access_ea_,
            prout_reserve_access_we_,
            prout_reserve_access_earo_,
            prout_reserve_access_wero_,
            prout_reserve_access_eaar_,
            prout_reserve_access_wear_,
            prout_reserve_ownership_ea_,
            prout_reserve_ownership_we_,
            prout_reserve_ownership_earo_,
            prout_reserve_ownership_wero_,
            prout_reserve_ownership_eaar_,
            prout_reserve_ownership_wear_,
        ]
    );
    suite!(e, [prout_clear_simple_]);
    suite!(e, [prout_preempt_rm_reg_]);
    suite!(e, [readonly_sbc_]);
    suite!(e, [report_luns_simple_]);
    suite!(
        e,
        [
            report_supported_opcodes_simple_,
            report_supported_opcodes_one_command_,
            report_supported_opcodes_rctd_,
            report_supported_opcodes_servactv_,
        ]
    );
    suite!(
        e,
        [
            reserve6_simple_,
            reserve6_2initiators_,
            reserve6_logout_,
            reserve6_itnexus_loss_,
            reserve6_target_cold_reset_,
            reserve6_target_warm_reset_,
            reserve6_lun_reset_,
        ]
    );
    suite!(
        e,
        [
            startstopunit_simple_,
            startstopunit_pwrcnd_,
            startstopunit_noloej_,
        ]
    );
    suite!(e, [testunitready_simple_]);
    suite!(
        e,
        [
            multipathio_simple_,
            multipathio_reset_,
            multipathio_compareandwrite_,
            multipathio_compareandwrite_async_,
        ]
    );
    // The unit is left without registrations.
    let sd = e.t.login(INITIATOR1, 1, false).await;
    let (_, rk) = e.t.prin_read_keys(&sd, 16384).await;
    assert!(rk.unwrap().keys.is_empty());
    assert_eq!(e.t.read_reservation(&sd).await, Ok(None));
    ok(e.t.reserve6(&sd).await);
}

/// A fixed, writable disk: PreventAllow, StartStopUnit's removable parts, NoMedia, ReadOnly and
/// MultipathIO SKIP. This is what the acceptance run will see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn family_scsi_in_suite_order_fixed_disk() {
    scsi_family_in_order(disk(), false, true).await;
}

/// A removable disk: PreventAllow, StartStopUnit and NoMedia run in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn family_scsi_in_suite_order_removable_disk() {
    scsi_family_in_order(removable(), false, true).await;
}

/// A target that refuses TARGET WARM / COLD RESET: the Reserve6 and PreventAllow reset tests
/// SKIP halfway and leave their RESERVE / PREVENT to the following tests (LUNReset then really
/// tests the logical unit reset).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn family_scsi_in_suite_order_without_target_resets() {
    scsi_family_in_order(removable(), false, false).await;
}

/// Two URLs: the second initiator is `mp_sds[1]` through target port 2, and MultipathIO runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn family_scsi_in_suite_order_multipath() {
    scsi_family_in_order(removable(), true, true).await;
}

/// A read-only disk: ReadOnly runs; ModeSense6.Control-SWP sets and clears SWP on top of it.
#[tokio::test]
async fn family_scsi_in_suite_order_read_only_disk() {
    let mut e = Env::start(read_only()).await;
    suite!(e, [modesense6_control_swp_, modesense6_residuals_]);
    suite!(e, [readonly_sbc_]);
    suite!(e, [mandatory_sbc_]);
}
