//! The raw Basic Header Segment: 48 bytes split into their generic fields (RFC 7143 §11.2.1).
//!
//! Every typed PDU maps to and from a [`Bhs`]; that single mapping is what makes
//! `parse(build(x)) == x` hold by construction for every PDU type.

use bytes::BufMut;
use nom::bytes::complete::take;
use nom::error::ErrorKind;
use nom::{IResult, Parser};

use super::Opcode;

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;

/// The Basic Header Segment in its generic layout.
///
/// ```text
/// byte 0      |.|I| opcode      (I = immediate delivery)
/// byte 1      flags (bit 7 = F on most PDUs)
/// bytes 2-3   opcode specific
/// byte 4      TotalAHSLength (4-byte words)
/// bytes 5-7   DataSegmentLength (bytes, without padding)
/// bytes 8-15  LUN or opcode specific
/// bytes 16-19 Initiator Task Tag
/// bytes 20-47 seven opcode-specific 32-bit words
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bhs {
    /// Bit 6 of byte 0.
    pub immediate: bool,
    /// Bits 0-5 of byte 0.
    pub opcode: Opcode,
    /// Byte 1.
    pub flags: u8,
    /// Byte 2.
    pub b2: u8,
    /// Byte 3.
    pub b3: u8,
    /// Byte 4: length of the additional header segments in 4-byte words.
    pub total_ahs_len: u8,
    /// Bytes 5-7: length of the data segment in bytes, padding excluded.
    pub data_segment_len: u32,
    /// Bytes 8-15 (LUN, or ISID+TSIH in login PDUs, ...).
    pub lun: u64,
    /// Bytes 16-19.
    pub itt: u32,
    /// Bytes 20-47 as seven big-endian words: `w[0]` is bytes 20-23, `w[6]` is bytes 44-47.
    pub w: [u32; 7],
}

impl Bhs {
    /// A header with the given opcode and everything else zero.
    pub const fn new(opcode: Opcode) -> Self {
        Self {
            immediate: false,
            opcode,
            flags: 0,
            b2: 0,
            b3: 0,
            total_ahs_len: 0,
            data_segment_len: 0,
            lun: 0,
            itt: 0,
            w: [0; 7],
        }
    }

    /// Parses the 48 bytes at the start of `input` (nom parser).
    #[inline]
    pub fn parse(input: &[u8]) -> IResult<&[u8], Bhs> {
        let (rest, raw) = take(BHS_LEN).parse(input)?;
        match <&[u8; BHS_LEN]>::try_from(raw) {
            Ok(a) => Ok((rest, Self::from_array(a))),
            Err(_) => Err(nom::Err::Error(nom::error::Error::new(
                input,
                ErrorKind::Eof,
            ))),
        }
    }

    /// Decodes a header from its 48 bytes (cannot fail: every bit pattern is a header).
    #[inline]
    pub fn from_array(b: &[u8; BHS_LEN]) -> Bhs {
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Bhs {
            immediate: b[0] & 0x40 != 0,
            opcode: Opcode(b[0] & 0x3f),
            flags: b[1],
            b2: b[2],
            b3: b[3],
            total_ahs_len: b[4],
            data_segment_len: word(4) & 0x00ff_ffff,
            lun: u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
            itt: word(16),
            w: [
                word(20),
                word(24),
                word(28),
                word(32),
                word(36),
                word(40),
                word(44),
            ],
        }
    }

    /// Writes the 48 bytes.
    #[inline]
    pub fn write(&self, dst: &mut impl BufMut) {
        dst.put_slice(&self.to_array());
    }

    /// The 48 bytes as an array.
    pub fn to_array(&self) -> [u8; BHS_LEN] {
        let mut out = [0u8; BHS_LEN];
        out[0] = self.opcode.0 & 0x3f | if self.immediate { 0x40 } else { 0 };
        out[1] = self.flags;
        out[2] = self.b2;
        out[3] = self.b3;
        out[4] = self.total_ahs_len;
        out[5..8].copy_from_slice(&self.data_segment_len.to_be_bytes()[1..]);
        out[8..16].copy_from_slice(&self.lun.to_be_bytes());
        out[16..20].copy_from_slice(&self.itt.to_be_bytes());
        for (chunk, w) in out[20..].chunks_exact_mut(4).zip(self.w) {
            chunk.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// The final bit (bit 7 of byte 1).
    #[inline]
    pub const fn final_bit(&self) -> bool {
        self.flags & 0x80 != 0
    }

    /// Length in bytes of the additional header segments.
    #[inline]
    pub const fn ahs_len(&self) -> usize {
        self.total_ahs_len as usize * 4
    }

    /// Data segment length rounded up to a multiple of four (padding included).
    #[inline]
    pub const fn padded_data_len(&self) -> usize {
        pad4(self.data_segment_len as usize)
    }
}

/// `n` rounded up to a multiple of four.
#[inline]
pub const fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trip() {
        let mut raw = [0u8; BHS_LEN];
        for (i, b) in raw.iter_mut().enumerate() {
            *b = i as u8 * 5 + 1;
        }
        let h = Bhs::from_array(&raw);
        assert_eq!(h.opcode, Opcode(raw[0] & 0x3f));
        assert_eq!(h.immediate, raw[0] & 0x40 != 0);
        assert_eq!(
            h.data_segment_len,
            u32::from_be_bytes([0, raw[5], raw[6], raw[7]])
        );
        assert_eq!(
            h.itt,
            u32::from_be_bytes([raw[16], raw[17], raw[18], raw[19]])
        );
        assert_eq!(
            h.w[6],
            u32::from_be_bytes([raw[44], raw[45], raw[46], raw[47]])
        );
        let mut back = h.to_array();
        // Bit 7 of byte 0 is reserved: dropped on parse, written as zero.
        back[0] |= raw[0] & 0x80;
        assert_eq!(back, raw);
    }

    #[test]
    fn short_input_is_incomplete() {
        assert!(Bhs::parse(&[0u8; 47]).is_err());
    }
}
