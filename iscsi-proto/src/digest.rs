//! CRC32C (Castagnoli) header and data digests, RFC 7143 §13.1 and Appendix B.
//!
//! Backed by the `crc-fast` crate, which picks the fastest instruction set at run time
//! (VPCLMULQDQ/AVX-512, PCLMULQDQ, SSE4.2 or ARM CRC/NEON). On the wire the digest's bytes are
//! those of the reflected CRC register, least significant first; see [`crc32c_wire`] and the
//! RFC's test vectors in this module's tests.

/// CRC32C over `data` (the value as returned by the usual `crc32c()` functions).
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(data)
}

/// Incremental CRC32C, for digests over data that arrives or is sent in pieces (data + padding).
#[derive(Clone)]
pub struct Crc32c(crc_fast::Digest);

impl Crc32c {
    /// A fresh digest.
    pub fn new() -> Self {
        Self(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi))
    }

    /// Feeds more bytes.
    #[inline]
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The CRC of everything fed so far.
    #[inline]
    pub fn finish(&self) -> u32 {
        self.0.finalize() as u32
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}

impl core::fmt::Debug for Crc32c {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Crc32c({:#010x})", self.finish())
    }
}

/// The four digest bytes as they appear on the wire for a CRC value.
///
/// RFC 7143 §13.1 transmits the CRC least significant byte first (the byte order in which the
/// reflected CRC register is shifted out), which is the little-endian encoding of the usual value.
#[inline]
pub const fn crc32c_wire(crc: u32) -> [u8; 4] {
    crc.to_le_bytes()
}

/// Reads a digest from its four wire bytes (inverse of [`crc32c_wire`]).
#[inline]
pub const fn crc32c_from_wire(b: [u8; 4]) -> u32 {
    u32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7143 Appendix B.4 (CRC examples): 32 bytes of zeros -> aa 36 91 8a on the wire,
    // 32 bytes of 0xff -> 43 ab a8 62, 0x00..0x1f ascending -> 4e 79 dd 46,
    // 0x1f..0x00 descending -> 5c db 3f 11.
    #[test]
    fn rfc_vectors() {
        let zeros = [0u8; 32];
        assert_eq!(crc32c_wire(crc32c(&zeros)), [0xaa, 0x36, 0x91, 0x8a]);
        let ones = [0xffu8; 32];
        assert_eq!(crc32c_wire(crc32c(&ones)), [0x43, 0xab, 0xa8, 0x62]);
        let inc: Vec<u8> = (0u8..32).collect();
        assert_eq!(crc32c_wire(crc32c(&inc)), [0x4e, 0x79, 0xdd, 0x46]);
        let dec: Vec<u8> = (0u8..32).rev().collect();
        assert_eq!(crc32c_wire(crc32c(&dec)), [0x5c, 0xdb, 0x3f, 0x11]);
    }

    #[test]
    fn incremental_matches_oneshot() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        let mut d = Crc32c::new();
        d.update(&data[..333]);
        d.update(&data[333..]);
        assert_eq!(d.finish(), crc32c(&data));
        assert_eq!(crc32c_from_wire(crc32c_wire(0x1234_5678)), 0x1234_5678);
    }
}
