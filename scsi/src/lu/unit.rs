//! The logical unit: command admission (unit attentions, reservations, medium state) and the
//! commands that do not move blocks. Block I/O lives in `block.rs`.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use super::{
    DeviceInfo, Failure, LuConfig, UnitAttention, inquiry, mode::ModePages, opcodes,
    pr::Reservations,
};
use crate::{
    backend::{BlockBackend, IoBuf},
    cdb::Cdb,
    nexus::ItNexus,
    sense::{Asc, Sense, SenseFormat, SenseKey, Status},
};

/// At most this many unit attentions wait per I_T nexus; older, lower-priority ones are dropped.
const MAX_PENDING_UA: usize = 16;
/// At most this many I_T nexuses are tracked; beyond it, nexuses with no state worth keeping
/// are forgotten (they get a POWER ON unit attention if they come back).
const MAX_NEXUSES: usize = 4096;

/// Why a [`LogicalUnit`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The block size is not a power of two between 512 and 65536.
    #[error("block size {0} is not a power of two between 512 and 65536")]
    BlockSize(u32),
    /// The backend holds less than one block.
    #[error("the backend holds {0} bytes, less than one block")]
    TooSmall(u64),
    /// A text field is too long or not printable ASCII.
    #[error("{field} must be printable ASCII of at most {max} characters")]
    Text {
        /// Which field.
        field: &'static str,
        /// Its maximum length.
        max: usize,
    },
    /// MAXIMUM COMPARE AND WRITE LENGTH is 0.
    #[error("max_compare_and_write_blocks must be at least 1")]
    CompareAndWrite,
}

/// What resets a logical unit (SAM-5 §6): each establishes its own unit attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetKind {
    /// LOGICAL UNIT RESET task management function: 29/03.
    LogicalUnit,
    /// TARGET WARM RESET: 29/02.
    TargetWarm,
    /// TARGET COLD RESET or power on: 29/01.
    TargetCold,
}

/// Residual of a transfer, from the transport's expected length and the command's own length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Residual {
    /// The lengths agree.
    None,
    /// The command moved this many bytes fewer than expected.
    Underflow(u64),
    /// The command wanted this many bytes more than expected.
    Overflow(u64),
}

/// The end of a command: status, sense, the buffer, and how much of it holds data-in.
#[derive(Debug)]
pub struct Completion<B> {
    /// The task buffer handed to [`LogicalUnit::execute`]. For data-in commands its first
    /// [`data_len`](Self::data_len) bytes are the data to return.
    pub buf: B,
    /// SCSI status.
    pub status: Status,
    /// Sense data for CHECK CONDITION.
    pub sense: Option<Sense>,
    /// Format the sense must be sent in (the control mode page's D_SENSE).
    pub sense_format: SenseFormat,
    /// Bytes of data-in at the start of `buf`.
    pub data_len: usize,
    /// Bytes the command itself would transfer with no limit from the transport (the SCSI
    /// transfer length): compare with the expected length for the residual.
    pub transfer_len: u64,
}

impl<B: IoBuf> Completion<B> {
    fn new(buf: B) -> Self {
        Self {
            buf,
            status: Status::GOOD,
            sense: None,
            sense_format: SenseFormat::Fixed,
            data_len: 0,
            transfer_len: 0,
        }
    }

    /// The encoded sense data, if any.
    pub fn sense_bytes(&self) -> Option<Vec<u8>> {
        self.sense.map(|s| s.to_vec(self.sense_format))
    }

    /// The residual against the transport's expected data transfer length.
    pub fn residual(&self, expected: u64) -> Residual {
        use std::cmp::Ordering::*;
        match self.transfer_len.cmp(&expected) {
            Equal => Residual::None,
            Less => Residual::Underflow(expected - self.transfer_len),
            Greater => Residual::Overflow(self.transfer_len - expected),
        }
    }

    /// The data-in bytes.
    pub fn data(&self) -> &[u8] {
        self.buf.as_bytes().get(..self.data_len).unwrap_or_default()
    }
}

#[derive(Default)]
struct NexusState {
    ua: Vec<Asc>,
}

pub(super) struct State {
    nexuses: HashMap<ItNexus, NexusState>,
    pub(super) mode: ModePages,
    pub(super) reservations: Reservations,
    prevent: HashSet<ItNexus>,
    /// Medium loaded (only a removable unit can be without).
    loaded: bool,
}

/// An emulated block device (SPC-4 / SBC-3) over a [`BlockBackend`].
///
/// Share it between sessions with an `Arc`: [`execute`](Self::execute) takes `&self` and runs
/// commands concurrently. Per-I_T-nexus state (unit attentions, SPC-2 reservations, PREVENT
/// ALLOW) is keyed by the [`ItNexus`] each command names.
pub struct LogicalUnit<S> {
    pub(super) cfg: LuConfig,
    pub(super) backend: S,
    pub(super) block_size: u32,
    pub(super) shift: u32,
    pub(super) num_blocks: AtomicU64,
    pub(super) state: Mutex<State>,
    /// Ordinary reads and writes hold it shared; COMPARE AND WRITE, ORWRITE and WRITE ATOMIC hold
    /// it exclusively, which makes them atomic against every other command.
    pub(super) atomic: tokio::sync::RwLock<()>,
    /// A SANITIZE is running: other commands get NOT READY, SANITIZE IN PROGRESS.
    pub(super) sanitizing: std::sync::atomic::AtomicBool,
}

fn check_text(field: &'static str, s: &str, max: usize) -> Result<(), ConfigError> {
    if s.len() > max || !s.bytes().all(|b| (0x20..0x7F).contains(&b)) {
        return Err(ConfigError::Text { field, max });
    }
    Ok(())
}

impl<S: BlockBackend> LogicalUnit<S> {
    /// A logical unit over `backend`, sized to the whole blocks the backend holds.
    pub fn new(cfg: LuConfig, backend: S) -> Result<Self, ConfigError> {
        let bs = cfg.block_size;
        if !(512..=65536).contains(&bs) || !bs.is_power_of_two() {
            return Err(ConfigError::BlockSize(bs));
        }
        let len = backend.len();
        if len < u64::from(bs) {
            return Err(ConfigError::TooSmall(len));
        }
        check_text("vendor", &cfg.vendor, 8)?;
        check_text("product", &cfg.product, 16)?;
        check_text("revision", &cfg.revision, 4)?;
        check_text("serial", &cfg.serial, 32)?;
        if cfg.max_compare_and_write_blocks == 0 {
            return Err(ConfigError::CompareAndWrite);
        }
        let state = State {
            nexuses: HashMap::new(),
            mode: ModePages::new(cfg.write_cache),
            reservations: Reservations::new(),
            prevent: HashSet::new(),
            loaded: true,
        };
        Ok(Self {
            shift: bs.trailing_zeros(),
            block_size: bs,
            num_blocks: AtomicU64::new(len >> bs.trailing_zeros()),
            cfg,
            backend,
            state: Mutex::new(state),
            atomic: tokio::sync::RwLock::new(()),
            sanitizing: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LuConfig {
        &self.cfg
    }

    /// The backend.
    pub fn backend(&self) -> &S {
        &self.backend
    }

    /// Logical block length in bytes.
    pub fn block_size(&self) -> u32 {
        self.block_size
    }

    /// Number of logical blocks.
    pub fn num_blocks(&self) -> u64 {
        self.num_blocks.load(Ordering::Relaxed)
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the unit down for every other session.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn device(&self, st: &State) -> DeviceInfo {
        DeviceInfo {
            block_size: self.block_size,
            num_blocks: self.num_blocks(),
            read_only: self.cfg.read_only || st.mode.software_write_protect(),
            provisioning: self
                .cfg
                .provisioning
                .unwrap_or_else(|| self.backend.provisioning()),
            write_cache: st.mode.write_cache(),
        }
    }

    /// Runs one command from `nexus`. `buf` is the task buffer: its length is the transport's
    /// expected data transfer length; for a data-out command it holds the data received, for a
    /// data-in command the data is written to its start. Never panics, whatever the CDB and data.
    pub async fn execute<B: IoBuf>(&self, nexus: &ItNexus, cdb: &[u8], buf: B) -> Completion<B> {
        let mut c = Completion::new(buf);
        let parsed = Cdb::parse(cdb);
        let admitted = {
            let mut st = self.lock();
            c.sense_format = sense_format(&st);
            self.admit(&mut st, nexus, cdb, parsed)
        };
        let (cmd, dev) = match admitted {
            Ok(a) => a,
            Err(f) => return fail(c, f),
        };
        c.transfer_len = cmd.transfer(self.block_size).len();
        let reply = if let Cdb::GetLbaStatus { lba, alloc_len } = cmd {
            self.lba_status(&dev, lba, alloc_len).await.map(Reply::Data)
        } else if is_block_io(&cmd) {
            let (r, buf, data_len) = self.block_io(&cmd, &dev, c.buf).await;
            c.buf = buf;
            c.data_len = data_len;
            r.map(Reply::Status)
        } else {
            self.control(nexus, &cmd, cdb, c.buf.as_bytes())
        };
        // Data built by the unit: the transfer length is what it would send within the
        // allocation length; the buffer (the expected length) may cut it further.
        let result = reply.map(|reply| match reply {
            Reply::Data(data) => {
                c.transfer_len = c.transfer_len.min(data.len() as u64);
                let out = c.buf.as_mut_bytes();
                let n = data.len().min(out.len()).min(c.transfer_len as usize);
                out[..n].copy_from_slice(&data[..n]);
                c.data_len = n;
                Status::GOOD
            }
            Reply::Status(s) => s,
        });
        match result {
            Ok(status) => {
                c.status = status;
                c
            }
            Err(f) => fail(c, f),
        }
    }

    /// Unit attentions, reservations and medium state decide whether the command runs.
    fn admit(
        &self,
        st: &mut State,
        nexus: &ItNexus,
        bytes: &[u8],
        parsed: Result<Cdb, Sense>,
    ) -> Result<(Cdb, DeviceInfo), Failure> {
        self.nexus_state(st, nexus);
        let cmd = parsed?;
        // SPC-4 §5.14: INQUIRY, REPORT LUNS and REQUEST SENSE run despite a pending unit
        // attention; everything else reports it (and clears it).
        let ua_exempt = matches!(
            cmd,
            Cdb::Inquiry { .. } | Cdb::ReportLuns { .. } | Cdb::RequestSense { .. }
        );
        if !ua_exempt && let Some(asc) = take_ua(st, nexus) {
            return Err(Sense::unit_attention(asc).into());
        }
        st.reservations.check(nexus, bytes)?;
        // SBC-3 §4.11: while a sanitize runs, only INQUIRY, REPORT LUNS and REQUEST SENSE run.
        if !ua_exempt && self.sanitizing.load(Ordering::Acquire) {
            return Err(Sense::new(SenseKey::NOT_READY, Asc::SANITIZE_IN_PROGRESS).into());
        }
        if !st.loaded && needs_medium(&cmd) {
            return Err(Sense::new(SenseKey::NOT_READY, Asc::MEDIUM_NOT_PRESENT).into());
        }
        Ok((cmd, self.device(st)))
    }

    fn nexus_state<'a>(&self, st: &'a mut State, nexus: &ItNexus) -> &'a mut NexusState {
        if !st.nexuses.contains_key(nexus) && st.nexuses.len() >= MAX_NEXUSES {
            let idle: Vec<ItNexus> = st
                .nexuses
                .iter()
                .filter(|(n, s)| s.ua.iter().all(|a| a.asc() == 0x29) && !st.prevent.contains(n))
                .map(|(n, _)| n.clone())
                .take(MAX_NEXUSES / 4)
                .collect();
            for n in idle {
                st.nexuses.remove(&n);
            }
        }
        st.nexuses
            .entry(nexus.clone())
            .or_insert_with(|| NexusState {
                ua: vec![Asc::POWER_ON_RESET],
            })
    }

    /// Establishes a unit attention for every known I_T nexus except `except`.
    pub(super) fn ua_all(st: &mut State, asc: Asc, except: Option<&ItNexus>) {
        for (n, s) in st.nexuses.iter_mut() {
            if Some(n) != except {
                push_ua(&mut s.ua, asc);
            }
        }
    }

    fn post(&self, st: &mut State, uas: Vec<UnitAttention>) {
        for ua in uas {
            let s = self.nexus_state(st, &ua.nexus);
            push_ua(&mut s.ua, ua.asc);
        }
    }

    /// Commands answered from state under the lock (everything but block I/O).
    fn control(
        &self,
        nexus: &ItNexus,
        cmd: &Cdb,
        bytes: &[u8],
        data_out: &[u8],
    ) -> Result<Reply, Failure> {
        let mut st = self.lock();
        let dev = self.device(&st);
        let st = &mut *st;
        match *cmd {
            Cdb::TestUnitReady => Ok(Reply::Status(Status::GOOD)),
            Cdb::RequestSense { desc, .. } => {
                let idle = if self.sanitizing.load(Ordering::Acquire) {
                    Sense::new(SenseKey::NOT_READY, Asc::SANITIZE_IN_PROGRESS)
                } else {
                    Sense::new(SenseKey::NO_SENSE, Asc::NO_ADDITIONAL_SENSE)
                };
                let sense = take_ua(st, nexus)
                    .map(Sense::unit_attention)
                    .unwrap_or(idle);
                let format = if desc {
                    SenseFormat::Descriptor
                } else {
                    SenseFormat::Fixed
                };
                Ok(Reply::Data(sense.to_vec(format)))
            }
            Cdb::Inquiry { .. } => inquiry::inquiry(bytes, &self.cfg, &dev, nexus)
                .map(Reply::Data)
                .map_err(Into::into),
            Cdb::ReportLuns { .. } => {
                // A unit on its own reports itself as LUN 0; a target answers REPORT LUNS with
                // its own list before it reaches a unit.
                inquiry::report_luns(bytes, &[0])
                    .map(Reply::Data)
                    .map_err(Into::into)
            }
            Cdb::ReportSupportedOpcodes { .. } => {
                opcodes::report_supported_opcodes(bytes, &self.cfg)
                    .map(Reply::Data)
                    .map_err(Into::into)
            }
            Cdb::ReportSupportedTmfs { .. } => opcodes::report_supported_tmf(bytes)
                .map(Reply::Data)
                .map_err(Into::into),
            Cdb::ModeSense { .. } => st
                .mode
                .sense(bytes, &dev)
                .map(Reply::Data)
                .map_err(Into::into),
            Cdb::ModeSelect { param_len, .. } => {
                let Some(params) = data_out.get(..usize::from(param_len)) else {
                    return Err(Sense::illegal(Asc::INVALID_FIELD_IN_COMMAND_IU).into());
                };
                match st.mode.select(bytes, params, &dev) {
                    Ok(changed) => {
                        if changed {
                            Self::ua_all(st, Asc::MODE_PARAMETERS_CHANGED, Some(nexus));
                        }
                        Ok(Reply::Status(Status::GOOD))
                    }
                    Err(s) => Err(s.into()),
                }
            }
            Cdb::Reserve { .. } => st
                .reservations
                .reserve(nexus, bytes)
                .map(|()| Reply::Status(Status::GOOD)),
            Cdb::Release { .. } => st
                .reservations
                .release(nexus, bytes)
                .map(|()| Reply::Status(Status::GOOD)),
            Cdb::PersistentReserveIn { .. } => st
                .reservations
                .persistent_reserve_in(nexus, bytes)
                .map(Reply::Data),
            Cdb::PersistentReserveOut { param_len, .. } => {
                let params = data_out.get(..param_len as usize).unwrap_or(data_out);
                match st.reservations.persistent_reserve_out(nexus, bytes, params) {
                    Ok(uas) => {
                        self.post(st, uas);
                        Ok(Reply::Status(Status::GOOD))
                    }
                    Err(f) => Err(f),
                }
            }
            Cdb::StartStopUnit {
                loej,
                start,
                power_condition,
                ..
            } => self.start_stop(st, loej, start, power_condition),
            Cdb::PreventAllow { prevent } => {
                if prevent & 1 != 0 {
                    st.prevent.insert(nexus.clone());
                } else {
                    st.prevent.remove(nexus);
                }
                Ok(Reply::Status(Status::GOOD))
            }
            Cdb::ReadCapacity10 { lba, pmi } => {
                if !pmi && lba != 0 {
                    return Err(Sense::invalid_cdb_field(2, None).into());
                }
                let last = dev.num_blocks - 1;
                let mut d = Vec::with_capacity(8);
                d.extend_from_slice(&u32::try_from(last).unwrap_or(u32::MAX).to_be_bytes());
                d.extend_from_slice(&dev.block_size.to_be_bytes());
                Ok(Reply::Data(d))
            }
            Cdb::ReadCapacity16 { .. } => {
                let mut d = vec![0u8; 32];
                d[..8].copy_from_slice(&(dev.num_blocks - 1).to_be_bytes());
                d[8..12].copy_from_slice(&dev.block_size.to_be_bytes());
                // LBPME: UNMAP and WRITE SAME with UNMAP are served on every backend.
                d[14] = inquiry::rc16_provisioning_bits(&dev);
                Ok(Reply::Data(d))
            }
            Cdb::ReadDefectData {
                twelve,
                plist,
                glist,
                format,
                ..
            } => {
                // No defects. The header echoes the lists asked for and the format.
                let flags = (u8::from(plist) << 4) | (u8::from(glist) << 3) | (format & 7);
                Ok(Reply::Data(if twelve {
                    vec![0, flags, 0, 0, 0, 0, 0, 0]
                } else {
                    vec![0, flags, 0, 0]
                }))
            }
            _ => Err(Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE).into()),
        }
    }

    fn start_stop(
        &self,
        st: &mut State,
        loej: bool,
        start: bool,
        power: u8,
    ) -> Result<Reply, Failure> {
        if power != 0 {
            // Power conditions other than START_VALID are accepted and ignored: the emulated
            // unit has no power states.
            return Ok(Reply::Status(Status::GOOD));
        }
        if loej {
            if !self.cfg.removable {
                return Err(Sense::invalid_cdb_field(4, Some(1)).into());
            }
            if !st.prevent.is_empty() {
                return Err(Sense::illegal(Asc::MEDIUM_REMOVAL_PREVENTED).into());
            }
            st.loaded = start;
        }
        Ok(Reply::Status(Status::GOOD))
    }

    /// Reports an I_T nexus loss (the session ended or failed): drops its SPC-2 reservation
    /// and its PREVENT, and establishes I_T NEXUS LOSS OCCURRED for when it comes back.
    pub fn nexus_lost(&self, nexus: &ItNexus) {
        let mut st = self.lock();
        st.reservations.nexus_lost(nexus);
        st.prevent.remove(nexus);
        if let Some(s) = st.nexuses.get_mut(nexus) {
            push_ua(&mut s.ua, Asc::IT_NEXUS_LOSS);
        }
    }

    /// Resets the unit: SPC-2 reservations, PREVENT and mode parameters go back to their
    /// defaults and every I_T nexus gets a unit attention. Persistent reservations stay, except
    /// on a cold reset: that is a power on, and registrations do not persist through power loss
    /// here (APTPL is not supported).
    pub fn reset(&self, kind: ResetKind) {
        let mut st = self.lock();
        if kind == ResetKind::TargetCold {
            st.reservations.power_on();
        } else {
            st.reservations.reset();
        }
        st.prevent.clear();
        st.mode.reset_to_saved();
        if kind == ResetKind::TargetCold {
            st.loaded = true;
        }
        let asc = match kind {
            ResetKind::LogicalUnit => Asc::BUS_DEVICE_RESET_OCCURRED,
            ResetKind::TargetWarm => Asc::BUS_RESET_OCCURRED,
            ResetKind::TargetCold => Asc::POWER_ON_OCCURRED,
        };
        for s in st.nexuses.values_mut() {
            // A reset supersedes every pending attention (SAM-5 §5.14).
            s.ua.clear();
            s.ua.push(asc);
        }
    }

    /// Establishes a unit attention for every I_T nexus, for example REPORTED LUNS DATA HAS
    /// CHANGED when a target adds a LUN.
    pub fn unit_attention(&self, asc: Asc) {
        Self::ua_all(&mut self.lock(), asc, None);
    }

    /// Re-reads the backend's size after it changed and reports CAPACITY DATA HAS CHANGED.
    pub fn capacity_changed(&self) {
        let blocks = self.backend.len() >> self.shift;
        self.num_blocks.store(blocks.max(1), Ordering::Relaxed);
        self.unit_attention(Asc::CAPACITY_DATA_CHANGED);
    }
}

/// The answer of a command run under the state lock.
enum Reply {
    /// Data-in (whole; truncated to the allocation and expected lengths by the caller).
    Data(Vec<u8>),
    /// Status only.
    Status(Status),
}

fn sense_format(st: &State) -> SenseFormat {
    if st.mode.descriptor_sense() {
        SenseFormat::Descriptor
    } else {
        SenseFormat::Fixed
    }
}

fn fail<B: IoBuf>(mut c: Completion<B>, f: Failure) -> Completion<B> {
    c.data_len = 0;
    match f {
        Failure::Check(s) => {
            c.status = Status::CHECK_CONDITION;
            c.sense = Some(s);
        }
        Failure::ReservationConflict => c.status = Status::RESERVATION_CONFLICT,
    }
    c
}

fn push_ua(q: &mut Vec<Asc>, asc: Asc) {
    if q.contains(&asc) {
        return;
    }
    if q.len() >= MAX_PENDING_UA {
        // Drop the oldest attention that is not a reset.
        let at = q.iter().position(|a| a.asc() != 0x29).unwrap_or(0);
        q.remove(at);
    }
    q.push(asc);
}

/// The next unit attention for `nexus`: resets first (SPC-4 §5.14 priority), then in order.
fn take_ua(st: &mut State, nexus: &ItNexus) -> Option<Asc> {
    let q = &mut st.nexuses.get_mut(nexus)?.ua;
    if q.is_empty() {
        return None;
    }
    let at = q.iter().position(|a| a.asc() == 0x29).unwrap_or(0);
    Some(q.remove(at))
}

/// Commands served by `block.rs` (they may await the backend).
fn is_block_io(cmd: &Cdb) -> bool {
    matches!(
        cmd,
        Cdb::Read(_)
            | Cdb::Write(_)
            | Cdb::WriteAndVerify { .. }
            | Cdb::Verify { .. }
            | Cdb::OrWrite(_)
            | Cdb::WriteAtomic { .. }
            | Cdb::CompareAndWrite { .. }
            | Cdb::WriteSame { .. }
            | Cdb::Unmap { .. }
            | Cdb::SynchronizeCache { .. }
            | Cdb::PreFetch { .. }
            | Cdb::GetLbaStatus { .. }
            | Cdb::Sanitize { .. }
    )
}

/// Commands that access the medium: refused with MEDIUM NOT PRESENT when it is ejected.
fn needs_medium(cmd: &Cdb) -> bool {
    is_block_io(cmd)
        || matches!(
            cmd,
            Cdb::TestUnitReady | Cdb::ReadCapacity10 { .. } | Cdb::ReadCapacity16 { .. }
        )
}
