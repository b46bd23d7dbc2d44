//! MODE SENSE / MODE SELECT (SPC-4 §6.11–§6.14) and the mode pages of the emulated
//! direct-access block device (SPC-4 §7.5, SBC-3 §6.4).
//!
//! Every page is held as the raw bytes of its body (what follows the page header) in three
//! copies: current, saved and default. A static table gives each page's default body and its
//! changeable mask. The mask is the single source of truth for MODE SELECT: a bit outside it must
//! restate the current value. MODE SENSE with PC = changeable returns the mask itself.
//!
//! | page      | name and notable values                    | changeable    |
//! |-----------|--------------------------------------------|---------------|
//! | 01h       | Read-Write Error Recovery: AWRE, ARRE set  | nothing       |
//! | 02h       | Disconnect-Reconnect: all zero (no limits) | nothing       |
//! | 08h       | Caching: WCE as configured, RCD 0          | WCE           |
//! | 0Ah       | Control: GLTSD, TAS, QAM 1h, TST/QERR 0    | D_SENSE, SWP  |
//! | 0Ah / 01h | Control Extension: all zero                | nothing       |
//! | 1Ah       | Power Condition: timers off, CCF 01b       | nothing       |
//! | 1Ch       | Informational Exceptions Control: DEXCPT   | DEXCPT, MRIE  |
//!
//! Saving: MODE SELECT with SP = 1 copies the current values to the saved values, and every
//! page reports PS = 1. The saved values live in memory only: they survive what
//! [`ModePages::reset_to_saved`] models (logical unit reset, power on), not a process restart.

use super::DeviceInfo;
use crate::sense::{Asc, Sense};

const MODE_SENSE_6: u8 = 0x1A;
const MODE_SENSE_10: u8 = 0x5A;
const MODE_SELECT_6: u8 = 0x15;
const MODE_SELECT_10: u8 = 0x55;

/// PAGE CODE asking for every page.
const ALL_PAGES: u8 = 0x3F;
/// SUBPAGE CODE asking for every subpage.
const ALL_SUBPAGES: u8 = 0xFF;

/// Device-specific parameter (SBC-3): write protected.
const DSP_WP: u8 = 0x80;
/// Device-specific parameter (SBC-3): DPO and FUA supported.
const DSP_DPOFUA: u8 = 0x10;

/// Page header byte 0: parameters savable.
const PS: u8 = 0x80;
/// Page header byte 0: sub_page format.
const SPF: u8 = 0x40;

/// Indexes into [`PAGES`] of the pages whose values the logical unit acts on.
const CACHING: usize = 2;
const CONTROL: usize = 3;
const INFORMATIONAL_EXCEPTIONS: usize = 6;
const PAGE_COUNT: usize = 7;
/// The longest page body (power condition).
const MAX_BODY: usize = 0x26;

/// Caching page, body byte 0 (page byte 2): WCE.
const CACHING_WCE: u8 = 0x04;
/// Control page, body byte 0 (page byte 2): D_SENSE.
const CONTROL_D_SENSE: u8 = 0x04;
/// Control page, body byte 0: GLTSD (log parameters are never saved implicitly).
const CONTROL_GLTSD: u8 = 0x02;
/// Control page, body byte 1: QUEUE ALGORITHM MODIFIER 1h, unrestricted reordering allowed
/// (commands run concurrently on the backend). QERR is 00b.
const CONTROL_QAM_1: u8 = 0x10;
/// Control page, body byte 2 (page byte 4): SWP.
const CONTROL_SWP: u8 = 0x08;
/// Control page, body byte 3 (page byte 5): TAS.
const CONTROL_TAS: u8 = 0x40;
/// Informational exceptions control page, body byte 0: DEXCPT.
const IEC_DEXCPT: u8 = 0x08;
/// Informational exceptions control page, body byte 1: the MRIE field.
const IEC_MRIE: u8 = 0x0F;
/// The highest MRIE value SPC-4 defines (6h, only report informational exceptions on request).
const IEC_MRIE_MAX: u8 = 0x06;

/// AWRE and ARRE set; no retry counts, no recovery time limit.
const RWER_DEFAULT: [u8; 0x0A] = [0xC0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
/// WCE is set by [`ModePages::new`] as configured.
const CACHING_DEFAULT: [u8; 0x12] = [0; 0x12];
const CACHING_CHANGEABLE: [u8; 0x12] = {
    let mut b = [0; 0x12];
    b[0] = CACHING_WCE;
    b
};
/// TST 000b, QERR 00b, BUSY TIMEOUT PERIOD FFFFh (unlimited), no self-test completion time.
const CONTROL_DEFAULT: [u8; 0x0A] = {
    let mut b = [0; 0x0A];
    (b[0], b[1], b[3]) = (CONTROL_GLTSD, CONTROL_QAM_1, CONTROL_TAS);
    (b[6], b[7]) = (0xFF, 0xFF);
    b
};
const CONTROL_CHANGEABLE: [u8; 0x0A] = [CONTROL_D_SENSE, 0, CONTROL_SWP, 0, 0, 0, 0, 0, 0, 0];
/// Every timer disabled; CCF IDLE, CCF STANDBY and CCF STOPPED 01b (no CHECK CONDITION).
const POWER_CONDITION_DEFAULT: [u8; 0x26] = {
    let mut b = [0; 0x26];
    b[0x25] = 0x54;
    b
};
/// DEXCPT set: informational exceptions disabled (the emulation never detects any).
const IEC_DEFAULT: [u8; 0x0A] = [IEC_DEXCPT, 0, 0, 0, 0, 0, 0, 0, 0, 0];
const IEC_CHANGEABLE: [u8; 0x0A] = [IEC_DEXCPT, IEC_MRIE, 0, 0, 0, 0, 0, 0, 0, 0];

/// One supported mode page.
struct PageDef {
    /// PAGE CODE.
    page: u8,
    /// SUBPAGE CODE; 0 means the page_0 format (no SPF).
    subpage: u8,
    /// Default body: the bytes after the page header. Its length is the PAGE LENGTH.
    default: &'static [u8],
    /// Changeable mask, as long as `default`.
    changeable: &'static [u8],
}

impl PageDef {
    /// The PAGE LENGTH value (bytes after the page header).
    const fn len(&self) -> usize {
        self.default.len()
    }
}

/// Shorthand for the [`PAGES`] table.
const fn def(page: u8, subpage: u8, default: &'static [u8], mask: &'static [u8]) -> PageDef {
    PageDef {
        page,
        subpage,
        default,
        changeable: mask,
    }
}

/// The supported pages, in the order MODE SENSE returns them (ascending page, then subpage).
/// Pages without a changeable bit have an all-zero mask; the disconnect-reconnect page
/// (no limits), and the control extension page (IALUAE, SCSIP, TCMOS 0, no maximum sense data
/// length) are all zero.
static PAGES: [PageDef; PAGE_COUNT] = [
    def(0x01, 0, &RWER_DEFAULT, &[0; 0x0A]),
    def(0x02, 0, &[0; 0x0E], &[0; 0x0E]),
    def(0x08, 0, &CACHING_DEFAULT, &CACHING_CHANGEABLE),
    def(0x0A, 0, &CONTROL_DEFAULT, &CONTROL_CHANGEABLE),
    def(0x0A, 0x01, &[0; 0x1C], &[0; 0x1C]),
    def(0x1A, 0, &POWER_CONDITION_DEFAULT, &[0; 0x26]),
    def(0x1C, 0, &IEC_DEFAULT, &IEC_CHANGEABLE),
];

/// One full set of page bodies, indexed like [`PAGES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Values([[u8; MAX_BODY]; PAGE_COUNT]);

impl Values {
    fn defaults(write_cache: bool) -> Self {
        let mut v = Self([[0; MAX_BODY]; PAGE_COUNT]);
        for (i, def) in PAGES.iter().enumerate() {
            v.body_mut(i).copy_from_slice(def.default);
        }
        if write_cache && let Some(b) = v.body_mut(CACHING).first_mut() {
            *b |= CACHING_WCE;
        }
        v
    }

    /// The body of page `idx` (empty for an unknown index).
    fn body(&self, idx: usize) -> &[u8] {
        let len = PAGES.get(idx).map_or(0, PageDef::len);
        self.0.get(idx).and_then(|b| b.get(..len)).unwrap_or(&[])
    }

    /// The body of page `idx`, writable (empty for an unknown index).
    fn body_mut(&mut self, idx: usize) -> &mut [u8] {
        let len = PAGES.get(idx).map_or(0, PageDef::len);
        self.0
            .get_mut(idx)
            .and_then(|b| b.get_mut(..len))
            .unwrap_or(&mut [])
    }

    /// Whether any bit of `mask` is set in body byte `byte` of page `idx`.
    fn bit(&self, idx: usize, byte: usize, mask: u8) -> bool {
        self.body(idx).get(byte).is_some_and(|b| b & mask != 0)
    }
}

/// The current, saved and default values of the mode pages of one logical unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ModePages {
    current: Values,
    saved: Values,
    default: Values,
}

/// ILLEGAL REQUEST / INVALID FIELD IN PARAMETER LIST at `at` in the parameter list.
fn param_field(at: usize, bit: Option<u8>) -> Sense {
    Sense::invalid_param_field(u16::try_from(at).unwrap_or(u16::MAX), bit)
}

/// ILLEGAL REQUEST / PARAMETER LIST LENGTH ERROR.
fn list_length_error() -> Sense {
    Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR)
}

/// `range` of the parameter list, or PARAMETER LIST LENGTH ERROR when it is cut short.
fn part(data: &[u8], range: std::ops::Range<usize>) -> Result<&[u8], Sense> {
    data.get(range).ok_or_else(list_length_error)
}

/// The byte at `i`, or 0 past the end.
fn byte(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// The big-endian 16-bit value at `i`, or 0 past the end.
fn be16(b: &[u8], i: usize) -> usize {
    usize::from(u16::from_be_bytes([byte(b, i), byte(b, i + 1)]))
}

/// The big-endian value of the bytes at `range` (up to 8), or `None` past the end.
fn be(b: &[u8], range: std::ops::Range<usize>) -> Option<u64> {
    let bytes = b.get(range)?;
    Some(bytes.iter().fold(0, |acc, &x| (acc << 8) | u64::from(x)))
}

/// Whether `cdb` is the 10-byte form (`ten`) or the 6-byte form (`six`) of a command; refuses
/// other operation codes and CDBs too short for their form.
fn ten_byte_form(cdb: &[u8], six: u8, ten: u8) -> Result<bool, Sense> {
    let long = match cdb.first() {
        Some(&op) if op == six => false,
        Some(&op) if op == ten => true,
        _ => return Err(Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE)),
    };
    if cdb.len() < if long { 10 } else { 6 } {
        return Err(Sense::invalid_cdb_field(0, None));
    }
    Ok(long)
}

/// Indexes into [`PAGES`] for a MODE SENSE PAGE CODE and SUBPAGE CODE.
fn pages_for(page: u8, subpage: u8) -> Result<Vec<usize>, Sense> {
    let wanted = |d: &PageDef| match (page, subpage) {
        (ALL_PAGES, ALL_SUBPAGES) => true,
        (ALL_PAGES, 0) => d.subpage == 0,
        (_, ALL_SUBPAGES) => d.page == page,
        _ => d.page == page && d.subpage == subpage,
    };
    let picked: Vec<usize> = (0..PAGE_COUNT)
        .filter(|&i| PAGES.get(i).is_some_and(wanted))
        .collect();
    if picked.is_empty() {
        // Point at the SUBPAGE CODE when the page exists but not that subpage.
        let page_known = page == ALL_PAGES || PAGES.iter().any(|d| d.page == page);
        return Err(if page_known {
            Sense::invalid_cdb_field(3, None)
        } else {
            Sense::invalid_cdb_field(2, Some(5))
        });
    }
    Ok(picked)
}

/// NUMBER OF LOGICAL BLOCKS as a short block descriptor reports it (SBC-3: FFFFFFFFh when the
/// capacity does not fit).
fn short_block_count(dev: &DeviceInfo) -> u32 {
    u32::try_from(dev.num_blocks).unwrap_or(u32::MAX)
}

/// Appends a block descriptor: long LBA (16 bytes) or short (8 bytes). With `mask`, the
/// changeable form: all zeros, since neither the capacity nor the block length can change.
fn push_block_descriptor(out: &mut Vec<u8>, long: bool, mask: bool, dev: &DeviceInfo) {
    let start = out.len();
    if long {
        out.extend_from_slice(&dev.num_blocks.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&dev.block_size.to_be_bytes());
    } else {
        out.extend_from_slice(&short_block_count(dev).to_be_bytes());
        let [_, a, b, c] = dev.block_size.min(0x00FF_FFFF).to_be_bytes();
        out.extend_from_slice(&[0, a, b, c]);
    }
    if mask && let Some(d) = out.get_mut(start..) {
        d.fill(0);
    }
}

/// Appends page `idx` with the given body: page_0 or sub_page format header, PS set.
fn push_page(out: &mut Vec<u8>, idx: usize, body: &[u8]) {
    let Some(def) = PAGES.get(idx) else { return };
    if def.subpage == 0 {
        out.extend_from_slice(&[PS | def.page, u8::try_from(body.len()).unwrap_or(u8::MAX)]);
    } else {
        let [hi, lo] = u16::try_from(body.len()).unwrap_or(u16::MAX).to_be_bytes();
        out.extend_from_slice(&[PS | SPF | def.page, def.subpage, hi, lo]);
    }
    out.extend_from_slice(body);
}

/// Checks a MODE SELECT mode parameter header; returns the block descriptor length and
/// whether LONGLBA is set.
fn check_header(h: &[u8], ten: bool) -> Result<(usize, bool), Sense> {
    let (mdl, medium_at, longlba, bdl_at, bdl) = if ten {
        (be16(h, 0), 2, byte(h, 4) & 0x01 != 0, 6, be16(h, 6))
    } else {
        (byte(h, 0).into(), 1, false, 3, byte(h, 3).into())
    };
    if mdl != 0 {
        return Err(param_field(0, None));
    }
    if byte(h, medium_at) != 0 {
        return Err(param_field(medium_at, None));
    }
    if bdl != 0 && bdl != if longlba { 16 } else { 8 } {
        return Err(param_field(bdl_at, None));
    }
    Ok((bdl, longlba))
}

/// Checks a MODE SELECT block descriptor at `at` in the list: it may only restate the block
/// length, and either restate the number of blocks or leave it zero.
fn check_block_descriptor(bd: &[u8], long: bool, at: usize, dev: &DeviceInfo) -> Result<(), Sense> {
    let short = u64::from(short_block_count(dev));
    let (count, reported, len_at, len) = if long {
        (be(bd, 0..8), dev.num_blocks, 12, be(bd, 12..16))
    } else {
        (be(bd, 0..4), short, 5, be(bd, 5..8))
    };
    let (count, len) = count.zip(len).ok_or_else(list_length_error)?;
    if len != u64::from(dev.block_size) {
        return Err(param_field(at + len_at, None));
    }
    if count != 0 && count != reported {
        return Err(param_field(at, None));
    }
    Ok(())
}

/// Reads the MODE SELECT page header at `at`: the page's index into [`PAGES`], its definition
/// and the offset of its body, after checking the page format and length.
fn check_page_header(data: &[u8], at: usize) -> Result<(usize, &'static PageDef, usize), Sense> {
    let b0 = byte(data, at);
    let spf = b0 & SPF != 0;
    let page = b0 & 0x3F;
    let (subpage, len_at, body_at) = if spf {
        (byte(data, at + 1), at + 2, at + 4)
    } else {
        (0, at + 1, at + 2)
    };
    if data.len() < body_at {
        return Err(list_length_error());
    }
    let len = if spf {
        be16(data, len_at)
    } else {
        byte(data, len_at).into()
    };
    let found = PAGES
        .iter()
        .enumerate()
        .find(|(_, d)| (d.page, d.subpage) == (page, subpage));
    let Some((idx, def)) = found else {
        // Point at the SUBPAGE CODE when the page exists but not that subpage.
        let sub_wrong = spf && PAGES.iter().any(|d| d.page == page);
        let at = if sub_wrong { at + 1 } else { at };
        return Err(param_field(at, (!sub_wrong).then_some(5)));
    };
    if spf != (def.subpage != 0) {
        return Err(param_field(at, Some(6)));
    }
    if len != def.len() {
        return Err(param_field(len_at, None));
    }
    Ok((idx, def, body_at))
}

/// Value checks beyond the changeable mask, on the new body of page `idx` at `at` in the list.
fn check_values(idx: usize, body: &[u8], at: usize) -> Result<(), Sense> {
    if idx == INFORMATIONAL_EXCEPTIONS && byte(body, 1) & IEC_MRIE > IEC_MRIE_MAX {
        return Err(param_field(at + 1, Some(3)));
    }
    Ok(())
}

impl ModePages {
    /// Pages at their default values, with the caching page's WCE set to `write_cache`; the
    /// saved values start equal to the defaults.
    pub(crate) fn new(write_cache: bool) -> Self {
        let default = Values::defaults(write_cache);
        Self {
            current: default,
            saved: default,
            default,
        }
    }

    /// MODE SENSE(6) (1Ah) and MODE SENSE(10) (5Ah): the whole parameter data (mode parameter
    /// header, a block descriptor unless DBD, then the pages asked for); the caller truncates it
    /// to the ALLOCATION LENGTH.
    ///
    /// PC 00b current, 01b changeable (the mask of changeable bits), 10b default, 11b saved.
    /// PAGE CODE 3Fh returns every page (SUBPAGE CODE 00h) or every page and subpage (FFh); a
    /// SUBPAGE CODE FFh with another page returns all of that page's subpages. An unsupported
    /// page or subpage fails with ILLEGAL REQUEST / INVALID FIELD IN CDB and a field pointer.
    /// MODE SENSE(10) with LLBAA returns a long LBA (16-byte) block descriptor. The header holds
    /// MEDIUM TYPE 0 and the device-specific parameter with DPOFUA, and WP when `dev.read_only`
    /// or the control page's SWP is set.
    pub(crate) fn sense(&self, cdb: &[u8], dev: &DeviceInfo) -> Result<Vec<u8>, Sense> {
        let ten = ten_byte_form(cdb, MODE_SENSE_6, MODE_SENSE_10)?;
        let dbd = byte(cdb, 1) & 0x08 != 0;
        let llbaa = ten && byte(cdb, 1) & 0x10 != 0;
        let pc = byte(cdb, 2) >> 6;
        let picked = pages_for(byte(cdb, 2) & 0x3F, byte(cdb, 3))?;

        let mut rest = Vec::with_capacity(256);
        if !dbd {
            push_block_descriptor(&mut rest, llbaa, pc == 1, dev);
        }
        let bdl = rest.len();
        for idx in picked {
            let body = match pc {
                0 => self.current.body(idx),
                1 => PAGES.get(idx).map_or(&[][..], |d| d.changeable),
                2 => self.default.body(idx),
                _ => self.saved.body(idx),
            };
            push_page(&mut rest, idx, body);
        }

        let wp = dev.read_only || self.software_write_protect();
        let dsp = DSP_DPOFUA | if wp { DSP_WP } else { 0 };
        let mut out = Vec::with_capacity(rest.len() + 8);
        if ten {
            let mdl = u16::try_from(rest.len() + 6).unwrap_or(u16::MAX);
            let [m0, m1] = mdl.to_be_bytes();
            let [b0, b1] = u16::try_from(bdl).unwrap_or(u16::MAX).to_be_bytes();
            out.extend_from_slice(&[m0, m1, 0, dsp, u8::from(llbaa && !dbd), 0, b0, b1]);
        } else {
            let mdl = u8::try_from(rest.len() + 3).unwrap_or(u8::MAX);
            out.extend_from_slice(&[mdl, 0, dsp, u8::try_from(bdl).unwrap_or(u8::MAX)]);
        }
        out.extend_from_slice(&rest);
        Ok(out)
    }

    /// MODE SELECT(6) (15h) and MODE SELECT(10) (55h) with the parameter data `data` as
    /// received (only the PARAMETER LIST LENGTH of the CDB is used; fewer bytes is a PARAMETER
    /// LIST LENGTH ERROR).
    ///
    /// PF must be 1. The header's MODE DATA LENGTH and MEDIUM TYPE must be 0 (the
    /// device-specific parameter is reserved on select and ignored). The block descriptor length
    /// must be 0 or 8 (16 with LONGLBA in MODE SELECT(10)), and a block descriptor may only
    /// restate the block length and the number of blocks (or give 0 blocks). Each page must
    /// have our page length, and only its changeable bits may differ from the current values
    /// (PS is reserved and ignored). Violations fail with INVALID FIELD IN PARAMETER LIST and a
    /// field pointer; a truncated header, descriptor or page with PARAMETER LIST LENGTH ERROR.
    /// Nothing changes unless the whole list is valid.
    ///
    /// SP = 1 also makes the (new) current values the saved values; they are kept in memory
    /// only. Returns whether a current value changed (the caller then establishes MODE
    /// PARAMETERS CHANGED for the other I_T nexuses).
    pub(crate) fn select(
        &mut self,
        cdb: &[u8],
        data: &[u8],
        dev: &DeviceInfo,
    ) -> Result<bool, Sense> {
        let ten = ten_byte_form(cdb, MODE_SELECT_6, MODE_SELECT_10)?;
        let pf = byte(cdb, 1) & 0x10 != 0;
        let sp = byte(cdb, 1) & 0x01 != 0;
        let list_len = if ten {
            be16(cdb, 7)
        } else {
            byte(cdb, 4).into()
        };
        if list_len == 0 {
            // No data is not an error (SPC-4); SP still saves every savable page.
            if sp {
                self.saved = self.current;
            }
            return Ok(false);
        }
        if !pf {
            return Err(Sense::invalid_cdb_field(1, Some(4)));
        }
        let data = part(data, 0..list_len)?;
        let hdr_len = if ten { 8 } else { 4 };
        let (bdl, longlba) = check_header(part(data, 0..hdr_len)?, ten)?;
        if bdl != 0 {
            check_block_descriptor(part(data, hdr_len..hdr_len + bdl)?, longlba, hdr_len, dev)?;
        }

        let mut staged = self.current;
        let mut at = hdr_len + bdl;
        while at < data.len() {
            let (idx, def, body_at) = check_page_header(data, at)?;
            let body = part(data, body_at..body_at + def.len())?;
            let cur = staged.body_mut(idx);
            let bytes = body.iter().zip(cur.iter()).zip(def.changeable);
            for (i, ((&new, &old), &mask)) in bytes.enumerate() {
                let bad = (new ^ old) & !mask;
                if let Some(bit) = bad.checked_ilog2() {
                    return Err(param_field(body_at + i, u8::try_from(bit).ok()));
                }
            }
            check_values(idx, body, body_at)?;
            cur.copy_from_slice(body);
            at = body_at + def.len();
        }

        let changed = staged != self.current;
        self.current = staged;
        if sp {
            self.saved = staged;
        }
        Ok(changed)
    }

    /// The caching page's WCE bit (current value): writes may be cached until SYNCHRONIZE CACHE.
    pub(crate) fn write_cache(&self) -> bool {
        self.current.bit(CACHING, 0, CACHING_WCE)
    }

    /// The control page's D_SENSE bit (current value): sense data in descriptor format.
    pub(crate) fn descriptor_sense(&self) -> bool {
        self.current.bit(CONTROL, 0, CONTROL_D_SENSE)
    }

    /// The control page's SWP bit (current value): the medium is software write protected, so
    /// writes fail with DATA PROTECT / WRITE PROTECTED.
    pub(crate) fn software_write_protect(&self) -> bool {
        self.current.bit(CONTROL, 2, CONTROL_SWP)
    }

    /// What a power on or logical unit reset does to the mode pages (SPC-4): the current values
    /// revert to the saved values.
    pub(crate) fn reset_to_saved(&mut self) {
        self.current = self.saved;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Provisioning;
    use proptest::prelude::*;

    const DBD: u8 = 0x08;
    const LLBAA: u8 = 0x10;
    /// (page, subpage, page length) as SPC-4 / SBC-3 define them.
    const LENGTHS: [(u8, u8, usize); PAGE_COUNT] = [
        (0x01, 0, 0x0A),
        (0x02, 0, 0x0E),
        (0x08, 0, 0x12),
        (0x0A, 0, 0x0A),
        (0x0A, 1, 0x1C),
        (0x1A, 0, 0x26),
        (0x1C, 0, 0x0A),
    ];

    fn dev() -> DeviceInfo {
        let (block_size, num_blocks, provisioning) = (512, 2048, Provisioning::default());
        DeviceInfo {
            block_size,
            num_blocks,
            read_only: false,
            provisioning,
            write_cache: true,
        }
    }

    /// A MODE SENSE CDB, allocation length 255 (6) or 4096 (10).
    fn ms_cdb(ten: bool, b1: u8, pc: u8, page: u8, sub: u8) -> Vec<u8> {
        let mut cdb = vec![MODE_SENSE_6, b1, (pc << 6) | page, sub, 255, 0];
        if ten {
            cdb[0] = MODE_SENSE_10;
            cdb.splice(4.., [0, 0, 0, 0x10, 0, 0]);
        }
        cdb
    }

    /// MODE SENSE against `dev()`, which must succeed.
    fn ms(mp: &ModePages, ten: bool, b1: u8, pc: u8, page: u8, sub: u8) -> Vec<u8> {
        mp.sense(&ms_cdb(ten, b1, pc, page, sub), &dev()).unwrap()
    }

    /// A MODE SELECT CDB with PF set.
    fn sel_cdb(ten: bool, sp: bool, len: usize) -> Vec<u8> {
        let b1 = 0x10 | u8::from(sp);
        if ten {
            let [hi, lo] = u16::try_from(len).unwrap().to_be_bytes();
            vec![MODE_SELECT_10, b1, 0, 0, 0, 0, 0, hi, lo, 0]
        } else {
            vec![MODE_SELECT_6, b1, 0, 0, u8::try_from(len).unwrap(), 0]
        }
    }

    fn sel(mp: &mut ModePages, sp: bool, list: &[u8]) -> Result<bool, Sense> {
        mp.select(&sel_cdb(false, sp, list.len()), list, &dev())
    }

    fn sel10(mp: &mut ModePages, list: &[u8]) -> Result<bool, Sense> {
        mp.select(&sel_cdb(true, false, list.len()), list, &dev())
    }

    fn bad_param(at: u16, bit: Option<u8>) -> Result<bool, Sense> {
        Err(Sense::invalid_param_field(at, bit))
    }

    /// MODE SENSE data split up, checking that the lengths are consistent.
    struct Parsed {
        dsp: u8,
        longlba: bool,
        bd: Vec<u8>,
        /// (page byte 0, subpage, body)
        pages: Vec<(u8, u8, Vec<u8>)>,
    }

    impl Parsed {
        fn page(&self, page: u8, sub: u8) -> &[u8] {
            let found = self.pages.iter().find(|p| p.0 & 0x3F == page && p.1 == sub);
            &found.expect("page present").2
        }
        fn codes(&self) -> Vec<(u8, u8)> {
            self.pages.iter().map(|p| (p.0 & 0x3F, p.1)).collect()
        }
    }

    fn parse(data: &[u8], ten: bool) -> Parsed {
        let (hdr, total, bdl) = if ten {
            (8, be16(data, 0) + 2, be16(data, 6))
        } else {
            (4, usize::from(data[0]) + 1, usize::from(data[3]))
        };
        assert_eq!(total, data.len(), "MODE DATA LENGTH excludes only itself");
        assert_eq!(data[if ten { 2 } else { 1 }], 0, "medium type");
        let mut at = hdr + bdl;
        let mut pages = Vec::new();
        while at < data.len() {
            let b0 = data[at];
            let (sub, len, body) = if b0 & SPF != 0 {
                (data[at + 1], be16(data, at + 2), at + 4)
            } else {
                (0, usize::from(data[at + 1]), at + 2)
            };
            pages.push((b0, sub, data[body..body + len].to_vec()));
            at = body + len;
        }
        assert_eq!(at, data.len(), "pages end with the data");
        let dsp = data[if ten { 3 } else { 2 }];
        let bd = data[hdr..hdr + bdl].to_vec();
        let longlba = ten && data[4] & 1 != 0;
        Parsed {
            dsp,
            longlba,
            bd,
            pages,
        }
    }

    /// Turns MODE SENSE data into a MODE SELECT parameter list: MODE DATA LENGTH 0, PS clear.
    fn to_list(data: &[u8], ten: bool) -> Vec<u8> {
        let p = parse(data, ten);
        let mut v = data.to_vec();
        v[0] = 0;
        v[1] &= if ten { 0 } else { 0xFF };
        let mut at = if ten { 8 } else { 4 } + p.bd.len();
        for (b0, _, body) in &p.pages {
            v[at] &= !PS;
            at += if b0 & SPF != 0 { 4 } else { 2 } + body.len();
        }
        v
    }

    /// One page (header and body) as MODE SELECT(6) data: zero header, no block descriptor.
    fn page_list(mp: &ModePages, page: u8, sub: u8) -> Vec<u8> {
        to_list(&ms(mp, false, DBD, 0, page, sub), false)
    }

    #[test]
    fn page_table_is_consistent() {
        for (def, &(page, sub, len)) in PAGES.iter().zip(LENGTHS.iter()) {
            assert_eq!((def.page, def.subpage, def.len()), (page, sub, len));
            assert_eq!(def.changeable.len(), def.len());
            assert!(def.len() <= MAX_BODY);
        }
        let acted_on = [
            (CACHING, 0x08),
            (CONTROL, 0x0A),
            (INFORMATIONAL_EXCEPTIONS, 0x1C),
        ];
        for (idx, page) in acted_on {
            assert_eq!((PAGES[idx].page, PAGES[idx].subpage), (page, 0));
        }
    }

    #[test]
    fn sense6_all_pages() {
        let mp = ModePages::new(true);
        let p = parse(&ms(&mp, false, 0, 0, ALL_PAGES, 0), false);
        assert_eq!(p.dsp, DSP_DPOFUA);
        assert_eq!(p.bd, [0, 0, 0x08, 0x00, 0, 0, 0x02, 0x00]);
        let codes = [(1, 0), (2, 0), (8, 0), (0x0A, 0), (0x1A, 0), (0x1C, 0)];
        assert_eq!(p.codes(), codes);
        for (b0, sub, body) in &p.pages {
            assert_eq!(b0 & (PS | SPF), PS);
            let len = LENGTHS.iter().find(|l| (l.0, l.1) == (b0 & 0x3F, *sub));
            let len = len.unwrap().2;
            assert_eq!(body.len(), len);
        }
        assert_eq!(p.page(0x01, 0)[0], 0xC0, "AWRE and ARRE");
        assert_eq!(p.page(0x08, 0)[0], CACHING_WCE, "WCE set, RCD clear");
        let control = p.page(0x0A, 0);
        assert_eq!(control[..4], [CONTROL_GLTSD, 0x10, 0, CONTROL_TAS]);
        assert_eq!(p.page(0x1C, 0)[0], IEC_DEXCPT);
        assert_eq!(p.page(0x1A, 0)[37], 0x54);
    }

    #[test]
    fn sense10_all_pages_and_subpages() {
        let mp = ModePages::new(false);
        for (sub, count) in [(0, 6), (ALL_SUBPAGES, 7)] {
            let p = parse(&ms(&mp, true, 0, 0, ALL_PAGES, sub), true);
            assert!(!p.longlba);
            assert_eq!((p.bd.len(), p.pages.len()), (8, count));
        }
        let p = parse(&ms(&mp, true, 0, 0, ALL_PAGES, ALL_SUBPAGES), true);
        let ext = p.pages.iter().find(|x| x.1 == 1).unwrap();
        assert_eq!((ext.0, ext.2.len()), (PS | SPF | 0x0A, 0x1C));
        assert_eq!(p.page(0x08, 0)[0], 0, "WCE off");
        // MODE SENSE(6) holds everything.
        let six = ms(&mp, false, 0, 0, ALL_PAGES, ALL_SUBPAGES);
        assert!(six.len() <= 256);
        assert_eq!(parse(&six, false).pages, p.pages);
    }

    #[test]
    fn each_page_alone_matches_all_pages() {
        let mp = ModePages::new(true);
        let all = parse(&ms(&mp, false, DBD, 0, ALL_PAGES, ALL_SUBPAGES), false);
        for &(page, sub, len) in &LENGTHS {
            for ten in [false, true] {
                let p = parse(&ms(&mp, ten, DBD, 0, page, sub), ten);
                assert!(p.bd.is_empty());
                assert_eq!(p.codes(), [(page, sub)]);
                assert_eq!(p.pages[0].2.len(), len);
                assert_eq!(p.pages[0].2, all.page(page, sub));
            }
        }
        // 0Ah / FFh: the control page and its extension.
        let p = parse(&ms(&mp, false, DBD, 0, 0x0A, ALL_SUBPAGES), false);
        assert_eq!(p.codes(), [(0x0A, 0), (0x0A, 1)]);
        let p = parse(&ms(&mp, false, DBD, 0, 0x08, ALL_SUBPAGES), false);
        assert_eq!(p.codes(), [(0x08, 0)]);
    }

    #[test]
    fn dbd_and_llbaa() {
        let mp = ModePages::new(true);
        let data = ms(&mp, false, DBD, 0, 0x08, 0);
        assert_eq!((data[3], data[4]), (0, PS | 0x08));
        let (num_blocks, block_size) = (0x1_0000_0001, 4096);
        let big = DeviceInfo {
            num_blocks,
            block_size,
            ..dev()
        };
        let sense = |ten, b1| parse(&mp.sense(&ms_cdb(ten, b1, 0, 0x08, 0), &big).unwrap(), ten);
        let p = sense(true, LLBAA);
        assert!(p.longlba);
        assert_eq!(p.bd, [0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x10, 0]);
        let p = sense(true, 0);
        assert!(!p.longlba);
        assert_eq!(p.bd, [0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0x10, 0], "too big");
        // LLBAA with DBD: no descriptor, LONGLBA clear.
        let p = sense(true, LLBAA | DBD);
        assert!(!p.longlba && p.bd.is_empty());
        // Bit 4 of MODE SENSE(6) byte 1 is reserved: still a short descriptor.
        assert_eq!(sense(false, LLBAA).bd.len(), 8);
    }

    #[test]
    fn page_control_values() {
        let mut mp = ModePages::new(false);
        let get = |mp: &ModePages, pc| parse(&ms(mp, false, 0, pc, ALL_PAGES, ALL_SUBPAGES), false);
        let ch = get(&mp, 1);
        assert_eq!(ch.bd, [0; 8], "nothing changeable in the descriptor");
        assert_eq!(ch.page(0x08, 0), CACHING_CHANGEABLE);
        assert_eq!(ch.page(0x0A, 0)[..3], [CONTROL_D_SENSE, 0, CONTROL_SWP]);
        assert_eq!(ch.page(0x1C, 0)[..2], [IEC_DEXCPT, IEC_MRIE]);
        let fixed = [
            ch.page(0x01, 0),
            ch.page(0x02, 0),
            ch.page(0x0A, 1),
            ch.page(0x1A, 0),
        ];
        assert!(fixed.concat().iter().all(|&b| b == 0));
        assert!(ch.pages.iter().all(|p| p.0 & PS != 0));

        let mut list = page_list(&mp, 0x0A, 0);
        list[6] |= CONTROL_D_SENSE;
        assert_eq!(sel(&mut mp, false, &list), Ok(true));
        let control = |pc| get(&mp, pc).page(0x0A, 0)[0];
        assert_eq!(control(0), CONTROL_GLTSD | CONTROL_D_SENSE);
        assert_eq!(control(2), CONTROL_GLTSD, "default unchanged");
        assert_eq!(control(3), CONTROL_GLTSD, "not saved without SP");
        assert_eq!(get(&mp, 3).page(0x08, 0)[0], 0, "saved starts at default");
        assert_eq!(get(&mp, 0).bd, get(&mp, 2).bd);
    }

    #[test]
    fn invalid_cdb_fields() {
        let mp = ModePages::new(true);
        let d = dev();
        for page in [0x00, 0x03, 0x05, 0x19, 0x3E] {
            let e = mp.sense(&ms_cdb(false, 0, 0, page, 0), &d).unwrap_err();
            assert_eq!(e, Sense::invalid_cdb_field(2, Some(5)));
            assert_eq!(mp.sense(&ms_cdb(true, 0, 3, page, 0xFF), &d), Err(e));
        }
        for (page, sub) in [(0x08, 0x01), (0x0A, 0x02), (ALL_PAGES, 0x01), (0x1C, 0xFE)] {
            let e = mp.sense(&ms_cdb(false, 0, 0, page, sub), &d).unwrap_err();
            assert_eq!(e, Sense::invalid_cdb_field(3, None));
        }
        let e = mp.sense(&[0x12, 0, 0, 0, 255, 0], &d).unwrap_err();
        assert_eq!(e, Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE));
        let e = mp.sense(&[MODE_SENSE_10, 0, 0x3F, 0], &d).unwrap_err();
        assert_eq!(e, Sense::invalid_cdb_field(0, None));
    }

    #[test]
    fn write_protect_bit() {
        let mut mp = ModePages::new(true);
        let wp =
            |mp: &ModePages, d: &DeviceInfo| mp.sense(&ms_cdb(false, DBD, 0, 8, 0), d).unwrap()[2];
        assert_eq!(wp(&mp, &dev()), DSP_DPOFUA);
        let ro = DeviceInfo {
            read_only: true,
            ..dev()
        };
        assert_eq!(wp(&mp, &ro), DSP_WP | DSP_DPOFUA);
        let ten = mp.sense(&ms_cdb(true, DBD, 0, 0x08, 0), &ro).unwrap();
        assert_eq!(ten[3], DSP_WP | DSP_DPOFUA);

        // The libiscsi sequence: changeable control page says SWP can change, set it, clear it.
        let ch = parse(&ms(&mp, false, DBD, 1, 0x0A, 0), false);
        assert_eq!(ch.page(0x0A, 0)[2] & CONTROL_SWP, CONTROL_SWP);
        let mut list = page_list(&mp, 0x0A, 0);
        list[8] |= CONTROL_SWP;
        assert_eq!(sel(&mut mp, false, &list), Ok(true));
        assert!(mp.software_write_protect());
        assert_eq!(wp(&mp, &dev()), DSP_WP | DSP_DPOFUA);
        list[8] &= !CONTROL_SWP;
        assert_eq!(sel(&mut mp, false, &list), Ok(true));
        assert!(!mp.software_write_protect());
        assert_eq!(wp(&mp, &dev()), DSP_DPOFUA);
    }

    #[test]
    fn select_round_trip_write_cache() {
        let mut mp = ModePages::new(true);
        assert!(mp.write_cache());
        let mut list = page_list(&mp, 0x08, 0);
        assert_eq!((list.len(), list[6]), (4 + 2 + 0x12, CACHING_WCE));
        list[6] &= !CACHING_WCE;
        assert_eq!(sel(&mut mp, false, &list), Ok(true));
        assert!(!mp.write_cache());
        assert_eq!(page_list(&mp, 0x08, 0), list);
        assert_eq!(sel(&mut mp, false, &list), Ok(false), "no change");
        // The same through MODE SELECT(10) with a short block descriptor.
        let mut ten = vec![0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0x08, 0, 0, 0, 0x02, 0];
        ten.extend_from_slice(&list[4..]);
        ten[16 + 2] |= CACHING_WCE;
        assert_eq!(sel10(&mut mp, &ten), Ok(true));
        assert!(mp.write_cache());
    }

    #[test]
    fn whole_sense_data_is_a_valid_select_list() {
        let mut mp = ModePages::new(true);
        for (ten, b1) in [(false, 0), (true, 0), (true, LLBAA)] {
            let list = to_list(&ms(&mp, ten, b1, 0, ALL_PAGES, ALL_SUBPAGES), ten);
            let cdb = sel_cdb(ten, true, list.len());
            assert_eq!(mp.select(&cdb, &list, &dev()), Ok(false));
        }
    }

    #[test]
    fn select_refuses_unchangeable_bits_atomically() {
        let mut mp = ModePages::new(true);
        let before = mp.clone();
        let mut list = page_list(&mp, 0x08, 0);
        list[6] = 0; // WCE off: allowed
        let mut control = page_list(&mp, 0x0A, 0).split_off(4);
        control[3] |= 0x02; // QERR 01b: not changeable
        list.extend_from_slice(&control);
        assert_eq!(sel(&mut mp, false, &list), bad_param(24 + 3, Some(1)));
        assert_eq!(mp, before, "nothing applied");
        // RCD, the caching page's bit 0.
        let mut list = page_list(&mp, 0x08, 0);
        list[6] |= 0x01;
        assert_eq!(sel(&mut mp, false, &list), bad_param(6, Some(0)));
        // AWRE cleared in the read-write error recovery page.
        let mut list = page_list(&mp, 0x01, 0);
        list[6] = 0x40;
        assert_eq!(sel(&mut mp, false, &list), bad_param(6, Some(7)));
        // A reserved MRIE value, although the field is changeable.
        let mut list = page_list(&mp, 0x1C, 0);
        list[7] = 0x07;
        assert_eq!(sel(&mut mp, false, &list), bad_param(7, Some(3)));
        (list[6], list[7]) = (0, 6);
        assert_eq!(sel(&mut mp, false, &list), Ok(true));
        assert_eq!(ms(&mp, false, DBD, 0, 0x1C, 0)[6..8], [0, 6]);
        // The PS bit is reserved on select: ignored.
        let mut list = page_list(&mp, 0x08, 0);
        list[4] |= PS;
        assert_eq!(sel(&mut mp, false, &list), Ok(false));
    }

    #[test]
    fn select_refuses_bad_page_headers() {
        let mut mp = ModePages::new(true);
        let mut list = page_list(&mp, 0x08, 0);
        list[5] = 0x13;
        list.push(0);
        assert_eq!(sel(&mut mp, false, &list), bad_param(5, None));
        let mut list = page_list(&mp, 0x08, 0);
        list[4] = 0x07; // an unsupported page
        assert_eq!(sel(&mut mp, false, &list), bad_param(4, Some(5)));
        // The control extension page needs the sub_page format, and vice versa.
        let mut list = page_list(&mp, 0x0A, 1);
        assert_eq!(sel(&mut mp, false, &list), Ok(false));
        list[5] = 0x02;
        assert_eq!(sel(&mut mp, false, &list), bad_param(5, None));
        list[5] = 0x00;
        assert_eq!(sel(&mut mp, false, &list), bad_param(4, Some(6)));
        let mut list = page_list(&mp, 0x0A, 1);
        list[7] = 0x1B;
        assert_eq!(sel(&mut mp, false, &list), bad_param(6, None));
    }

    #[test]
    fn select_refuses_truncated_lists() {
        let mut mp = ModePages::new(true);
        let plle = Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        let d = dev();
        let list = page_list(&mp, 0x08, 0);
        for len in [1, 3, 5, 10, list.len() - 1] {
            assert_eq!(
                mp.select(&sel_cdb(false, false, len), &list, &d),
                plle,
                "{len}"
            );
        }
        // Fewer bytes than the CDB announces.
        let cdb = sel_cdb(false, false, list.len());
        assert_eq!(mp.select(&cdb, &list[..10], &d), plle);
        // A block descriptor cut short.
        assert_eq!(sel(&mut mp, false, &[0, 0, 0, 8, 0, 0, 0, 0, 0]), plle);
        // The sub_page header cut short.
        let list = page_list(&mp, 0x0A, 1);
        assert_eq!(sel(&mut mp, false, &list[..7]), plle);
        // Bytes past the announced length are not read.
        let mut longer = page_list(&mp, 0x08, 0);
        let cdb = sel_cdb(false, false, longer.len());
        longer.extend_from_slice(&[0xFF; 7]);
        assert_eq!(mp.select(&cdb, &longer, &d), Ok(false));
    }

    #[test]
    fn select_checks_header_and_block_descriptor() {
        let mut mp = ModePages::new(true);
        let page = page_list(&mp, 0x08, 0).split_off(4);
        let with = |hdr: &[u8], bd: &[u8]| [hdr, bd, &page].concat();
        for bd in [[0, 0, 0x08, 0, 0, 0, 0x02, 0], [0, 0, 0, 0, 0, 0, 0x02, 0]] {
            assert_eq!(sel(&mut mp, false, &with(&[0, 0, 0, 8], &bd)), Ok(false));
        }
        let list = with(&[0, 0, 0, 8], &[0, 0, 0, 0, 0, 0, 0x10, 0]);
        assert_eq!(sel(&mut mp, false, &list), bad_param(9, None));
        let list = with(&[0, 0, 0, 8], &[0, 0, 0x10, 0, 0, 0, 0x02, 0]);
        assert_eq!(sel(&mut mp, false, &list), bad_param(4, None));
        let list = with(&[0, 0, 0, 4], &[0, 0, 0, 0]);
        assert_eq!(sel(&mut mp, false, &list), bad_param(3, None));
        let list = with(&[0x17, 0, 0, 0], &[]);
        assert_eq!(sel(&mut mp, false, &list), bad_param(0, None));
        let list = with(&[0, 0x05, 0, 0], &[]);
        assert_eq!(sel(&mut mp, false, &list), bad_param(1, None));
        // The device-specific parameter is reserved on select: WP and DPOFUA echoed back pass.
        let list = with(&[0, 0, DSP_WP | DSP_DPOFUA, 0], &[]);
        assert_eq!(sel(&mut mp, false, &list), Ok(false));
        // MODE SELECT(10): a long descriptor needs LONGLBA, and must restate the block length.
        let mut long_bd = [0; 16];
        (long_bd[6], long_bd[14]) = (0x08, 0x02);
        let list = with(&[0, 0, 0, 0, 1, 0, 0, 16], &long_bd);
        assert_eq!(sel10(&mut mp, &list), Ok(false));
        let list = with(&[0, 0, 0, 0, 0, 0, 0, 16], &long_bd);
        assert_eq!(sel10(&mut mp, &list), bad_param(6, None));
        long_bd[14] = 0x04;
        let list = with(&[0, 0, 0, 0, 1, 0, 0, 16], &long_bd);
        assert_eq!(sel10(&mut mp, &list), bad_param(20, None));
        let list = with(&[0, 1, 0, 0, 0, 0, 0, 0], &[]);
        assert_eq!(sel10(&mut mp, &list), bad_param(0, None));
    }

    #[test]
    fn select_cdb_checks() {
        let mut mp = ModePages::new(true);
        let d = dev();
        let list = page_list(&mp, 0x08, 0);
        let mut cdb = sel_cdb(false, false, list.len());
        cdb[1] &= !0x10;
        let e = mp.select(&cdb, &list, &d).unwrap_err();
        assert_eq!(e, Sense::invalid_cdb_field(1, Some(4)), "PF must be set");
        assert_eq!(sel(&mut mp, false, &[]), Ok(false), "no data is no error");
        let e = mp.select(&[MODE_SELECT_10, 0x10], &list, &d).unwrap_err();
        assert_eq!(e, Sense::invalid_cdb_field(0, None));
        let e = mp.select(&[MODE_SENSE_6, 0x10, 0, 0, 22, 0], &list, &d);
        let e = e.unwrap_err();
        assert_eq!(e, Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE));
    }

    #[test]
    fn d_sense_switch() {
        let mut mp = ModePages::new(true);
        assert!(!mp.descriptor_sense());
        let mut list = page_list(&mp, 0x0A, 0);
        list[6] |= CONTROL_D_SENSE;
        assert_eq!(sel(&mut mp, false, &list), Ok(true));
        assert!(mp.descriptor_sense());
        let p = parse(&ms(&mp, true, DBD, 0, 0x0A, 0), true);
        assert_eq!(p.page(0x0A, 0)[0] & CONTROL_D_SENSE, CONTROL_D_SENSE);
        list[6] &= !CONTROL_D_SENSE;
        assert_eq!(sel(&mut mp, false, &list), Ok(true));
        assert!(!mp.descriptor_sense());
    }

    #[test]
    fn saving_and_reset_to_saved() {
        let mut mp = ModePages::new(true);
        // Not saved: a reset undoes it.
        let mut list = page_list(&mp, 0x08, 0);
        list[6] = 0;
        assert_eq!(sel(&mut mp, false, &list), Ok(true));
        mp.reset_to_saved();
        assert!(mp.write_cache());
        // Saved: a reset keeps it, and PC saved reports it.
        assert_eq!(sel(&mut mp, true, &list), Ok(true));
        let mut control = page_list(&mp, 0x0A, 0);
        control[8] |= CONTROL_SWP;
        assert_eq!(sel(&mut mp, false, &control), Ok(true));
        mp.reset_to_saved();
        assert!(!mp.write_cache());
        assert!(!mp.software_write_protect(), "SWP was not saved");
        assert_eq!(ms(&mp, false, DBD, 3, 0x08, 0)[6], 0);
        assert_eq!(ms(&mp, false, DBD, 2, 0x08, 0)[6], CACHING_WCE);
        // SP with an empty list saves the current values.
        assert_eq!(sel(&mut mp, false, &control), Ok(true));
        assert_eq!(sel(&mut mp, true, &[]), Ok(false));
        mp.reset_to_saved();
        assert!(mp.software_write_protect());
    }

    /// Bits outside the changeable masks keep their default values whatever is selected.
    fn fixed_bits_unchanged(mp: &ModePages) -> bool {
        PAGES.iter().enumerate().all(|(i, def)| {
            [mp.current.body(i), mp.saved.body(i)].iter().all(|body| {
                let bytes = body.iter().zip(def.default).zip(def.changeable);
                bytes.into_iter().all(|((b, d), m)| (b ^ d) & !m == 0)
            })
        })
    }

    proptest! {
        #[test]
        fn random_input_never_panics(
            op in prop::sample::select(vec![0x1A, 0x5A, 0x15, 0x55, 0]),
            rest in prop::collection::vec(any::<u8>(), 0..12),
            params in prop::collection::vec(any::<u8>(), 0..300),
            read_only: bool,
            num_blocks: u64,
        ) {
            let d = DeviceInfo { read_only, num_blocks, ..dev() };
            let cdb = [&[op][..], &rest].concat();
            let mut mp = ModePages::new(true);
            if let Ok(data) = mp.sense(&cdb, &d) {
                parse(&data, op == MODE_SENSE_10);
            }
            let _ = mp.select(&cdb, &params, &d);
            prop_assert!(fixed_bits_unchanged(&mp));
        }

        #[test]
        fn mutated_select_lists_never_panic(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            cut in any::<prop::sample::Index>(),
            ten: bool,
            sp: bool,
        ) {
            let mut mp = ModePages::new(false);
            let mut list = to_list(&ms(&mp, ten, 0, 0, ALL_PAGES, ALL_SUBPAGES), ten);
            for (at, x) in flips {
                let i = at.index(list.len());
                list[i] ^= x;
            }
            let cdb = sel_cdb(ten, sp, cut.index(list.len() + 1));
            let _ = mp.select(&cdb, &list, &dev());
            prop_assert!(fixed_bits_unchanged(&mp));
            parse(&ms(&mp, true, 0, 3, ALL_PAGES, ALL_SUBPAGES), true);
        }
    }
}
