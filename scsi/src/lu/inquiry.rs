//! INQUIRY (standard data and vital product data pages) and REPORT LUNS.
//!
//! Every function here returns the whole parameter data; the caller truncates it to the
//! ALLOCATION LENGTH of the CDB.
//!
//! # What the logical unit advertises about provisioning
//! Our devices accept UNMAP and WRITE SAME with the UNMAP bit whatever the backend does with a
//! discard (a fully provisioned backend writes zeros), so the Logical Block Provisioning VPD page
//! always sets LBPU, LBPWS and LBPWS10, and READ CAPACITY (16) must always set LBPME (libiscsi
//! requires LBPME = 1 whenever UNMAP succeeds); [`rc16_provisioning_bits`] gives its LBPME and
//! LBPRZ bits so the two answers agree. A thin backend is reported as thin provisioned, any other
//! as resource provisioned (every LBA has storage behind it, yet unmapping is allowed).

// Until the LU core calls every entry.

use crate::{
    nexus::{ItNexus, PROTOCOL_ID_ISCSI},
    sense::Sense,
};

use super::{DeviceInfo, LuConfig};

/// Peripheral qualifier 000b (connected) and peripheral device type 00h (direct access block).
const PERIPHERAL: u8 = 0x00;

/// VERSION 06h: the device claims SPC-4.
const VERSION_SPC4: u8 = 0x06;

/// Length of the standard INQUIRY data we return.
const STANDARD_LEN: usize = 96;

/// Version descriptors (SPC-4 table 146), in the recommended order: architecture, transport,
/// primary command set, device-type command set.
const VERSION_DESCRIPTORS: [u16; 4] = [
    0x00A0, // SAM-5 (no version claimed)
    0x0960, // iSCSI (no version claimed)
    0x0460, // SPC-4 (no version claimed)
    0x04C0, // SBC-3 (no version claimed)
];

/// Longest unit serial number reported (VPD page 80h and the T10 vendor ID designator).
const MAX_SERIAL_LEN: usize = 32;

/// What a VPD page builder may look at.
struct Ctx<'a> {
    cfg: &'a LuConfig,
    dev: &'a DeviceInfo,
    relative_target_port: u16,
}

/// Appends the body of one VPD page (everything after the 4-byte header).
type PageBody = fn(&Ctx<'_>, &mut Vec<u8>);

/// The VPD pages served, in ascending page-code order (Supported VPD Pages lists them so).
const VPD_PAGES: &[(u8, PageBody)] = &[
    (0x00, supported_pages),
    (0x80, unit_serial_number),
    (0x83, device_identification),
    (0xB0, block_limits),
    (0xB1, block_device_characteristics),
    (0xB2, logical_block_provisioning),
];

/// INQUIRY (12h): the standard data (EVPD = 0) or one VPD page (EVPD = 1), whole; the caller
/// truncates it to the ALLOCATION LENGTH.
///
/// Refused with ILLEGAL REQUEST / INVALID FIELD IN CDB: CMDDT set (byte 1 bit 1), a PAGE CODE
/// with EVPD clear (byte 2), and a VPD page this logical unit does not serve (byte 2).
pub(crate) fn inquiry(
    cdb: &[u8],
    cfg: &LuConfig,
    dev: &DeviceInfo,
    nexus: &ItNexus,
) -> Result<Vec<u8>, Sense> {
    let flags = byte(cdb, 1);
    let page_code = byte(cdb, 2);
    if flags & 0x02 != 0 {
        return Err(Sense::invalid_cdb_field(1, Some(1)));
    }
    if flags & 0x01 == 0 {
        if page_code != 0 {
            return Err(Sense::invalid_cdb_field(2, None));
        }
        return Ok(standard_inquiry(cfg));
    }
    let Some(&(_, body)) = VPD_PAGES.iter().find(|(code, _)| *code == page_code) else {
        return Err(Sense::invalid_cdb_field(2, None));
    };
    let ctx = Ctx {
        cfg,
        dev,
        relative_target_port: nexus.relative_target_port(),
    };
    let mut page = vec![PERIPHERAL, page_code, 0, 0];
    body(&ctx, &mut page);
    let len = u16::try_from(page.len() - 4).unwrap_or(u16::MAX);
    page[2..4].copy_from_slice(&len.to_be_bytes());
    Ok(page)
}

/// The LBPME and LBPRZ bits of READ CAPACITY (16) parameter data byte 14 (bits 7 and 6), to be
/// ORed with the LOWEST ALIGNED LOGICAL BLOCK ADDRESS. LBPME is always set (see the module
/// documentation); LBPRZ follows the backend's `discard_zeroes`, as in VPD page B2h.
pub(crate) fn rc16_provisioning_bits(dev: &DeviceInfo) -> u8 {
    let lbprz = if dev.provisioning.discard_zeroes {
        0x40
    } else {
        0
    };
    0x80 | lbprz
}

/// The standard INQUIRY data (SPC-4 §6.6.2), 96 bytes.
fn standard_inquiry(cfg: &LuConfig) -> Vec<u8> {
    let mut d = vec![0u8; STANDARD_LEN];
    d[0] = PERIPHERAL;
    d[1] = if cfg.removable { 0x80 } else { 0 }; // RMB
    d[2] = VERSION_SPC4;
    d[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2 (NORMACA clear)
    d[4] = (STANDARD_LEN - 5) as u8; // ADDITIONAL LENGTH
    // Byte 5: SCCS, ACC, TPGS = 00b (no ALUA), 3PC, PROTECT all clear.
    // Byte 6: ENCSERV, MULTIP clear.
    d[7] = 0x02; // CMDQUE
    d[8..16].copy_from_slice(&ascii_field(&cfg.vendor, 8));
    d[16..32].copy_from_slice(&ascii_field(&cfg.product, 16));
    d[32..36].copy_from_slice(&ascii_field(&cfg.revision, 4));
    for (i, v) in VERSION_DESCRIPTORS.iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    d
}

/// Supported VPD Pages (00h): every page code of [`VPD_PAGES`].
fn supported_pages(_: &Ctx<'_>, out: &mut Vec<u8>) {
    out.extend(VPD_PAGES.iter().map(|(code, _)| *code));
}

/// Unit Serial Number (80h).
fn unit_serial_number(ctx: &Ctx<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(&serial(ctx.cfg));
}

/// Device Identification (83h): the logical unit's NAA and T10 vendor ID designators, then the
/// relative target port designator of the port the command came through.
fn device_identification(ctx: &Ctx<'_>, out: &mut Vec<u8>) {
    // NAA 3h (locally assigned), binary, association logical unit.
    let naa = (3u64 << 60) | (ctx.cfg.naa_id & 0x0FFF_FFFF_FFFF_FFFF);
    designator(
        out,
        Designator {
            protocol: None,
            code_set: 1,
            association: 0,
            kind: 3,
        },
        &naa.to_be_bytes(),
    );

    // T10 vendor ID based: vendor, then product and serial as the vendor-specific part.
    let mut t10 = Vec::with_capacity(8 + 16 + MAX_SERIAL_LEN);
    t10.extend_from_slice(&ascii_field(&ctx.cfg.vendor, 8));
    t10.extend_from_slice(&ascii_field(&ctx.cfg.product, 16));
    t10.extend_from_slice(&serial(ctx.cfg));
    designator(
        out,
        Designator {
            protocol: None,
            code_set: 2,
            association: 0,
            kind: 1,
        },
        &t10,
    );

    // Relative target port, association target port; PIV set, protocol iSCSI.
    let [hi, lo] = ctx.relative_target_port.to_be_bytes();
    designator(
        out,
        Designator {
            protocol: Some(PROTOCOL_ID_ISCSI),
            code_set: 1,
            association: 1,
            kind: 4,
        },
        &[0, 0, hi, lo],
    );
}

/// The header fields of one designation descriptor (SPC-4 §7.8.6.1).
struct Designator {
    /// PROTOCOL IDENTIFIER with PIV set, or `None` (PIV clear).
    protocol: Option<u8>,
    /// CODE SET: 1 binary, 2 ASCII, 3 UTF-8.
    code_set: u8,
    /// ASSOCIATION: 0 logical unit, 1 target port, 2 target device.
    association: u8,
    /// DESIGNATOR TYPE.
    kind: u8,
}

/// Appends one designation descriptor.
fn designator(out: &mut Vec<u8>, d: Designator, value: &[u8]) {
    let (proto, piv) = match d.protocol {
        Some(p) => (p << 4, 0x80),
        None => (0, 0),
    };
    let len = u8::try_from(value.len()).unwrap_or(u8::MAX);
    out.extend_from_slice(&[
        proto | (d.code_set & 0x0F),
        piv | ((d.association & 3) << 4) | (d.kind & 0x0F),
        0,
        len,
    ]);
    out.extend_from_slice(&value[..usize::from(len)]);
}

/// Block Limits (B0h, SBC-3 §6.5.3), page length 3Ch.
fn block_limits(ctx: &Ctx<'_>, out: &mut Vec<u8>) {
    let cfg = ctx.cfg;
    // WSNZ clear: WRITE SAME with NUMBER OF LOGICAL BLOCKS 0 means "to the last LBA".
    out.push(0);
    out.push(cfg.max_compare_and_write_blocks);
    out.extend_from_slice(&1u16.to_be_bytes()); // OPTIMAL TRANSFER LENGTH GRANULARITY
    out.extend_from_slice(&cfg.max_transfer_blocks.to_be_bytes());
    out.extend_from_slice(&cfg.optimal_transfer_blocks.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // MAXIMUM PREFETCH LENGTH: no limit reported
    // UNMAP is always supported (LBPU = 1 in page B2h), so both limits are reported as set.
    out.extend_from_slice(&cfg.max_unmap_blocks.to_be_bytes());
    out.extend_from_slice(&cfg.max_unmap_descriptors.to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes()); // OPTIMAL UNMAP GRANULARITY
    out.extend_from_slice(&0x8000_0000u32.to_be_bytes()); // UGAVALID, UNMAP GRANULARITY ALIGNMENT 0
    out.extend_from_slice(&cfg.max_write_same_blocks.to_be_bytes());
    // WRITE ATOMIC (16): never longer than a plain transfer; no alignment or granularity rule.
    let atomic = cfg.max_atomic_blocks.min(cfg.max_transfer_blocks);
    out.extend_from_slice(&atomic.to_be_bytes()); // MAXIMUM ATOMIC TRANSFER LENGTH
    out.extend_from_slice(&0u32.to_be_bytes()); // ATOMIC ALIGNMENT
    out.extend_from_slice(&0u32.to_be_bytes()); // ATOMIC TRANSFER LENGTH GRANULARITY
    out.extend_from_slice(&0u32.to_be_bytes()); // MAXIMUM ATOMIC TRANSFER LENGTH WITH ATOMIC BOUNDARY
    out.extend_from_slice(&0u32.to_be_bytes()); // MAXIMUM ATOMIC BOUNDARY SIZE
}

/// Block Device Characteristics (B1h, SBC-3 §6.5.2), page length 3Ch.
fn block_device_characteristics(_: &Ctx<'_>, out: &mut Vec<u8>) {
    let mut body = [0u8; 0x3C];
    body[0..2].copy_from_slice(&1u16.to_be_bytes()); // MEDIUM ROTATION RATE: non-rotating
    body[2] = 0; // PRODUCT TYPE: not indicated
    // WABEREQ = 01b: after a BLOCK ERASE sanitize, reads of unwritten blocks succeed. WACEREQ
    // = 00b: CRYPTOGRAPHIC ERASE is not supported. NOMINAL FORM FACTOR not reported.
    body[3] = 0x40;
    body[4] = 0x02; // FUAB: FUA and SYNCHRONIZE CACHE behave as SBC-3 says; VBULS clear
    out.extend_from_slice(&body);
}

/// Logical Block Provisioning (B2h, SBC-3 §6.5.4), page length 4 (no provisioning group).
fn logical_block_provisioning(ctx: &Ctx<'_>, out: &mut Vec<u8>) {
    let p = ctx.dev.provisioning;
    out.push(0); // THRESHOLD EXPONENT: no thresholds
    let lbprz = if p.discard_zeroes { 0x04 } else { 0 };
    out.push(0x80 | 0x40 | 0x20 | lbprz); // LBPU, LBPWS, LBPWS10; ANC_SUP and DP clear
    out.push(if p.thin { 0x02 } else { 0x01 }); // PROVISIONING TYPE: thin / resource
    out.push(0);
}

/// `s` as a fixed-width, left-aligned ASCII field padded with spaces (SPC-4 §4.4.1). Characters
/// outside 20h..7Eh become `_`; a longer string is cut.
fn ascii_field(s: &str, width: usize) -> Vec<u8> {
    let mut v: Vec<u8> = s.chars().take(width).map(printable).collect();
    v.resize(width, b' ');
    v
}

/// The unit serial number as reported: printable ASCII, at most [`MAX_SERIAL_LEN`] bytes; ASCII
/// spaces when the configuration has none (SPC-4 §7.8.15).
fn serial(cfg: &LuConfig) -> Vec<u8> {
    let v: Vec<u8> = cfg
        .serial
        .chars()
        .take(MAX_SERIAL_LEN)
        .map(printable)
        .collect();
    if v.is_empty() { vec![b' '; 8] } else { v }
}

/// One character as printable ASCII, `_` standing in for anything else.
fn printable(c: char) -> u8 {
    u8::try_from(c)
        .ok()
        .filter(|b| (0x20..=0x7E).contains(b))
        .unwrap_or(b'_')
}

/// CDB byte `i`, zero when the CDB is shorter.
fn byte(cdb: &[u8], i: usize) -> u8 {
    cdb.get(i).copied().unwrap_or(0)
}

/// REPORT LUNS (A0h, SPC-4 §6.33): the LUN list of a target whose logical units are numbered
/// `luns`, whole; the caller truncates it to the ALLOCATION LENGTH.
///
/// LUNs below 256 use peripheral device addressing (`00 nn`), the others flat space addressing
/// (`40 | hi, lo`); numbers of 16384 and above have no single-level encoding and are left out.
/// The list is sorted and free of duplicates. SELECT REPORT 00h and 02h report every logical
/// unit, 01h (well-known logical units only) an empty list.
///
/// # Errors
/// ILLEGAL REQUEST / INVALID FIELD IN CDB for another SELECT REPORT (byte 2) or an ALLOCATION
/// LENGTH below 16 (byte 6).
///
/// # Example
/// ```
/// use scsi_core::lu::report_luns;
///
/// let mut cdb = [0u8; 12];
/// cdb[0] = 0xA0;
/// cdb[6..10].copy_from_slice(&4096u32.to_be_bytes());
/// let data = report_luns(&cdb, &[0, 300]).unwrap();
/// assert_eq!(&data[0..4], &16u32.to_be_bytes()); // LUN LIST LENGTH: two entries
/// assert_eq!(&data[8..10], &[0x00, 0x00]); // LUN 0, peripheral device addressing
/// assert_eq!(&data[16..18], &[0x41, 0x2C]); // LUN 300, flat space addressing
/// ```
pub fn report_luns(cdb: &[u8], luns: &[u16]) -> Result<Vec<u8>, Sense> {
    let select = byte(cdb, 2);
    if !matches!(select, 0x00..=0x02) {
        return Err(Sense::invalid_cdb_field(2, None));
    }
    let alloc = u32::from_be_bytes([byte(cdb, 6), byte(cdb, 7), byte(cdb, 8), byte(cdb, 9)]);
    if alloc < 16 {
        return Err(Sense::invalid_cdb_field(6, None));
    }
    let mut list: Vec<u16> = if select == 0x01 {
        Vec::new()
    } else {
        luns.iter().copied().filter(|&n| n < 0x4000).collect()
    };
    list.sort_unstable();
    list.dedup();
    let mut out = Vec::with_capacity(8 + 8 * list.len());
    out.extend_from_slice(&((8 * list.len()) as u32).to_be_bytes());
    out.extend_from_slice(&[0; 4]);
    for n in list {
        let [hi, lo] = n.to_be_bytes();
        let first = if n < 256 { 0x00 } else { 0x40 | hi };
        out.extend_from_slice(&[first, lo, 0, 0, 0, 0, 0, 0]);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{backend::Provisioning, sense::Asc};

    fn cfg() -> LuConfig {
        LuConfig::new("SN-0042")
    }

    fn dev(thin: bool, discard_zeroes: bool) -> DeviceInfo {
        DeviceInfo {
            block_size: 512,
            num_blocks: 1 << 20,
            read_only: false,
            provisioning: Provisioning {
                thin,
                discard_zeroes,
            },
            write_cache: true,
        }
    }

    fn nexus() -> ItNexus {
        ItNexus::iscsi("iqn.1994-05.com.example:host", [0x40, 0, 0, 0, 0, 1], 3)
    }

    fn inq(evpd: bool, page: u8) -> Result<Vec<u8>, Sense> {
        inq_with(&cfg(), &dev(true, true), evpd, page)
    }

    fn inq_with(cfg: &LuConfig, dev: &DeviceInfo, evpd: bool, page: u8) -> Result<Vec<u8>, Sense> {
        let cdb = [0x12, u8::from(evpd), page, 0x01, 0x00, 0x00];
        inquiry(&cdb, cfg, dev, &nexus())
    }

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    fn assert_invalid_field(r: Result<Vec<u8>, Sense>, byte: u16, bit: Option<u8>) {
        assert_eq!(r, Err(Sense::invalid_cdb_field(byte, bit)));
    }

    #[test]
    fn standard_inquiry_fields() {
        let d = inq(false, 0).unwrap();
        assert_eq!(d.len(), 96);
        assert_eq!(usize::from(d[4]) + 5, d.len());
        assert_eq!(d[0], 0x00, "qualifier 0, direct access");
        assert_eq!(d[1] & 0x80, 0, "not removable");
        assert_eq!(d[2], 0x06);
        assert_eq!(d[3] & 0x0F, 2, "response data format");
        assert_ne!(d[3] & 0x10, 0, "HISUP");
        assert_eq!(d[3] & 0xE0, 0, "AERC, TRMTSK, NORMACA clear");
        assert_eq!(d[5] & 0x30, 0, "no TPGS");
        assert_eq!(d[7] & 0x02, 0x02, "CMDQUE");
        assert_eq!(&d[8..16], b"ISCSI-RS");
        assert_eq!(&d[16..32], b"RAMDISK         ");
        assert_eq!(&d[32..36], b"0001");
        let descriptors: Vec<u16> = (0..8)
            .map(|i| u16::from_be_bytes([d[58 + 2 * i], d[59 + 2 * i]]))
            .collect();
        assert_eq!(&descriptors[..4], &[0x00A0, 0x0960, 0x0460, 0x04C0]);
        assert!(descriptors[4..].iter().all(|&v| v == 0));
    }

    #[test]
    fn standard_inquiry_removable_and_sanitised_strings() {
        let mut c = cfg();
        c.removable = true;
        c.vendor = "Ven\u{7}dör-long-name".into();
        c.product = "".into();
        c.revision = "1\n".into();
        let d = inq_with(&c, &dev(false, false), false, 0).unwrap();
        assert_eq!(d[1] & 0x80, 0x80);
        assert_eq!(&d[8..16], b"Ven_d_r-");
        assert_eq!(&d[16..32], &[b' '; 16]);
        assert_eq!(&d[32..36], b"1_  ");
        assert!(d[8..36].iter().all(|b| (0x20..=0x7E).contains(b)));
    }

    #[test]
    fn cdb_checks() {
        // PAGE CODE without EVPD.
        assert_invalid_field(inq(false, 0x80), 2, None);
        // CMDDT.
        let cdb = [0x12, 0x02, 0, 0, 0xFF, 0];
        assert_invalid_field(
            inquiry(&cdb, &cfg(), &dev(true, true), &nexus()),
            1,
            Some(1),
        );
        let cdb = [0x12, 0x03, 0x80, 0, 0xFF, 0];
        assert_invalid_field(
            inquiry(&cdb, &cfg(), &dev(true, true), &nexus()),
            1,
            Some(1),
        );
        // Unknown VPD pages.
        for page in [0x01, 0x81, 0x86, 0x89, 0xB3, 0xFF] {
            assert_invalid_field(inq(true, page), 2, None);
        }
        // The sense is ILLEGAL REQUEST / INVALID FIELD IN CDB.
        assert_eq!(inq(true, 0xFF).unwrap_err().asc, Asc::INVALID_FIELD_IN_CDB);
        // A short CDB does not panic.
        assert!(inquiry(&[0x12], &cfg(), &dev(true, true), &nexus()).is_ok());
        assert!(inquiry(&[], &cfg(), &dev(true, true), &nexus()).is_ok());
    }

    #[test]
    fn every_vpd_page_has_a_consistent_header() {
        for &(code, _) in VPD_PAGES {
            for thin in [false, true] {
                let p = inq_with(&cfg(), &dev(thin, thin), true, code).unwrap();
                assert_eq!(p[0], 0x00, "page {code:02x}: qualifier/type");
                assert_eq!(p[1], code);
                let len = usize::from(u16::from_be_bytes([p[2], p[3]]));
                assert_eq!(len + 4, p.len(), "page {code:02x}: page length");
            }
        }
    }

    #[test]
    fn supported_pages_are_sorted_and_exactly_the_served_ones() {
        let p = inq(true, 0x00).unwrap();
        let listed = &p[4..];
        assert_eq!(usize::from(p[3]), listed.len());
        assert!(
            listed.windows(2).all(|w| w[0] < w[1]),
            "ascending: {listed:02x?}"
        );
        assert_eq!(listed, &[0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2]);
        for code in 0..=255u8 {
            assert_eq!(
                inq(true, code).is_ok(),
                listed.contains(&code),
                "page {code:02x}"
            );
        }
    }

    #[test]
    fn unit_serial_number() {
        let p = inq(true, 0x80).unwrap();
        assert_eq!(&p[4..], b"SN-0042");
        let mut c = cfg();
        c.serial = "x".repeat(40);
        let p = inq_with(&c, &dev(true, true), true, 0x80).unwrap();
        assert_eq!(p.len(), 4 + MAX_SERIAL_LEN);
        c.serial = String::new();
        let p = inq_with(&c, &dev(true, true), true, 0x80).unwrap();
        assert!(p.len() > 4 && p[4..].iter().all(|&b| b == b' '));
    }

    /// (protocol identifier, code set, PIV, association, type, designator)
    type Desc = (u8, u8, bool, u8, u8, Vec<u8>);

    fn designators(p: &[u8]) -> Vec<Desc> {
        let end = 4 + usize::from(u16::from_be_bytes([p[2], p[3]]));
        let mut at = 4;
        let mut v = Vec::new();
        while at < end {
            assert!(at + 4 <= end, "descriptor header runs past the page");
            let len = usize::from(p[at + 3]);
            assert!(at + 4 + len <= end, "descriptor runs past the page");
            v.push((
                p[at] >> 4,
                p[at] & 0x0F,
                p[at + 1] & 0x80 != 0,
                (p[at + 1] >> 4) & 3,
                p[at + 1] & 0x0F,
                p[at + 4..at + 4 + len].to_vec(),
            ));
            at += 4 + len;
        }
        assert_eq!(at, end);
        v
    }

    #[test]
    fn device_identification_designators() {
        let mut c = cfg();
        c.naa_id = 0x0123_4567_89AB_CDEF;
        let p = inq_with(&c, &dev(true, true), true, 0x83).unwrap();
        let d = designators(&p);
        assert_eq!(d.len(), 3);

        let (proto, code_set, piv, assoc, kind, naa) = &d[0];
        assert_eq!(
            (*proto, *code_set, *piv, *assoc, *kind),
            (0, 1, false, 0, 3)
        );
        assert_eq!(naa, &0x3123_4567_89AB_CDEFu64.to_be_bytes());

        let (proto, code_set, piv, assoc, kind, t10) = &d[1];
        assert_eq!(
            (*proto, *code_set, *piv, *assoc, *kind),
            (0, 2, false, 0, 1)
        );
        assert_eq!(&t10[..8], b"ISCSI-RS");
        assert_eq!(&t10[8..24], b"RAMDISK         ");
        assert_eq!(&t10[24..], b"SN-0042");

        let (proto, code_set, piv, assoc, kind, rtp) = &d[2];
        assert_eq!((*proto, *code_set, *piv, *assoc, *kind), (5, 1, true, 1, 4));
        assert_eq!(rtp, &[0, 0, 0, 3]);

        // The NAA designator follows the configuration; the default one is derived from the
        // serial number, so two units differ.
        let a = inq_with(&LuConfig::new("a"), &dev(true, true), true, 0x83).unwrap();
        let b = inq_with(&LuConfig::new("b"), &dev(true, true), true, 0x83).unwrap();
        assert_ne!(designators(&a)[0].5, designators(&b)[0].5);
        assert_eq!(designators(&a)[0].5[0] >> 4, 3);
    }

    #[test]
    fn block_limits_from_config() {
        let mut c = cfg();
        c.max_compare_and_write_blocks = 7;
        c.max_transfer_blocks = 2048;
        c.optimal_transfer_blocks = 64;
        c.max_unmap_blocks = 0x1_0000;
        c.max_unmap_descriptors = 32;
        c.max_write_same_blocks = 0x1_2345_6789;
        c.max_atomic_blocks = 128;
        let p = inq_with(&c, &dev(false, true), true, 0xB0).unwrap();
        assert_eq!(p.len(), 64);
        assert_eq!(p[3], 0x3C);
        assert_eq!(p[4] & 1, 0, "WSNZ");
        assert_eq!(p[5], 7);
        assert_eq!(u16::from_be_bytes([p[6], p[7]]), 1);
        assert_eq!(be32(&p, 8), 2048);
        assert_eq!(be32(&p, 12), 64);
        assert_eq!(be32(&p, 16), 0);
        assert_eq!(be32(&p, 20), 0x1_0000);
        assert_eq!(be32(&p, 24), 32);
        assert_eq!(be32(&p, 28), 1);
        assert_eq!(be32(&p, 32), 0x8000_0000, "UGAVALID, alignment 0");
        assert_eq!(
            u64::from(be32(&p, 36)) << 32 | u64::from(be32(&p, 40)),
            0x1_2345_6789
        );
        assert_eq!(be32(&p, 44), 128);
        assert_eq!(be32(&p, 48), 0);
        assert_eq!(be32(&p, 52), 0);
        assert_eq!(be32(&p, 56), 0);
        assert_eq!(be32(&p, 60), 0);

        // The atomic limit never exceeds the transfer limit; 0 disables WRITE ATOMIC.
        c.max_atomic_blocks = 100_000;
        let p = inq_with(&c, &dev(false, true), true, 0xB0).unwrap();
        assert_eq!(be32(&p, 44), 2048);
        c.max_atomic_blocks = 0;
        let p = inq_with(&c, &dev(false, true), true, 0xB0).unwrap();
        assert_eq!(be32(&p, 44), 0);
    }

    #[test]
    fn block_device_characteristics() {
        let p = inq(true, 0xB1).unwrap();
        assert_eq!(p.len(), 64);
        assert_eq!(p[3], 0x3C);
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), 1, "non-rotating");
        assert_eq!(p[7] >> 6, 1, "WABEREQ");
        assert_eq!((p[7] >> 4) & 3, 0, "WACEREQ: no cryptographic erase");
    }

    #[test]
    fn logical_block_provisioning_by_provisioning() {
        for (thin, zeroes) in [(false, false), (false, true), (true, false), (true, true)] {
            let d = dev(thin, zeroes);
            let p = inq_with(&cfg(), &d, true, 0xB2).unwrap();
            assert_eq!(p.len(), 8);
            assert_eq!(p[4], 0, "threshold exponent");
            assert_eq!(p[5] & 0xE0, 0xE0, "LBPU, LBPWS, LBPWS10");
            assert_eq!(p[5] & 0x04 != 0, zeroes, "LBPRZ");
            assert_eq!(p[5] & 0x03, 0, "ANC_SUP, DP");
            assert_eq!(p[6] & 0x07, if thin { 2 } else { 1 });
            // READ CAPACITY (16) agrees: LBPME always, LBPRZ as in the page.
            let rc = rc16_provisioning_bits(&d);
            assert_eq!(rc & 0x80, 0x80);
            assert_eq!(rc & 0x40 != 0, p[5] & 0x04 != 0);
        }
    }

    fn rl_cdb(select: u8, alloc: u32) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[0] = 0xA0;
        c[2] = select;
        c[6..10].copy_from_slice(&alloc.to_be_bytes());
        c
    }

    fn parse_luns(d: &[u8]) -> Vec<[u8; 8]> {
        let len = be32(d, 0) as usize;
        assert_eq!(len % 8, 0);
        assert_eq!(d.len(), 8 + len);
        assert_eq!(&d[4..8], &[0; 4]);
        d[8..].chunks(8).map(|c| c.try_into().unwrap()).collect()
    }

    #[test]
    fn report_luns_encodings() {
        let d = report_luns(&rl_cdb(0, 16), &[256, 0, 255, 0x3FFF, 1]).unwrap();
        assert_eq!(
            parse_luns(&d),
            vec![
                [0x00, 0x00, 0, 0, 0, 0, 0, 0],
                [0x00, 0x01, 0, 0, 0, 0, 0, 0],
                [0x00, 0xFF, 0, 0, 0, 0, 0, 0],
                [0x41, 0x00, 0, 0, 0, 0, 0, 0],
                [0x7F, 0xFF, 0, 0, 0, 0, 0, 0],
            ]
        );
        // Duplicates merged; unencodable numbers dropped.
        let d = report_luns(&rl_cdb(2, 4096), &[7, 7, 0x4000, 0xFFFF]).unwrap();
        assert_eq!(parse_luns(&d), vec![[0x00, 0x07, 0, 0, 0, 0, 0, 0]]);
        // No logical units: header only.
        let d = report_luns(&rl_cdb(0, 16), &[]).unwrap();
        assert_eq!(d, vec![0; 8]);
        // Well-known logical units only: none.
        let d = report_luns(&rl_cdb(1, 16), &[0, 1]).unwrap();
        assert_eq!(d, vec![0; 8]);
    }

    #[test]
    fn report_luns_many() {
        let luns: Vec<u16> = (0..1000).rev().collect();
        let d = report_luns(&rl_cdb(0, 16), &luns).unwrap();
        let entries = parse_luns(&d);
        assert_eq!(entries.len(), 1000);
        for (n, e) in entries.iter().enumerate() {
            let first = u16::from_be_bytes([e[0], e[1]]);
            let decoded = if first >> 14 == 1 {
                first & 0x3FFF
            } else {
                first & 0xFF
            };
            assert_eq!(usize::from(decoded), n);
            assert_eq!(first >> 14 == 1, n >= 256);
        }
    }

    #[test]
    fn report_luns_invalid_fields() {
        for select in [0x03, 0x10, 0x11, 0x12, 0xFF] {
            assert_eq!(
                report_luns(&rl_cdb(select, 4096), &[0]),
                Err(Sense::invalid_cdb_field(2, None))
            );
        }
        for alloc in [0, 1, 8, 15] {
            assert_eq!(
                report_luns(&rl_cdb(0, alloc), &[0]),
                Err(Sense::invalid_cdb_field(6, None))
            );
        }
        assert_eq!(
            report_luns(&[0xA0], &[0]),
            Err(Sense::invalid_cdb_field(6, None))
        );
        assert!(report_luns(&rl_cdb(0, 16), &[0]).is_ok());
    }

    #[test]
    fn random_cdbs_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let c = cfg();
        let n = nexus();
        for i in 0..20_000usize {
            let mut cdb = [0u8; 16];
            for b in &mut cdb {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            let len = i % 17;
            let d = dev(i % 2 == 0, i % 3 == 0);
            if let Ok(data) = inquiry(&cdb[..len], &c, &d, &n) {
                assert!(data.len() >= 4);
            }
            let _ = report_luns(&cdb[..len], &[0, 1, 2, 300]);
        }
    }
}
