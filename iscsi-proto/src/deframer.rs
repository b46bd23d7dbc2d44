//! A streaming deframer: any split of a byte stream in, whole PDUs out.
//!
//! The transport reads the socket straight into [`Deframer::read_buf`] (or copies with
//! [`Deframer::feed`]), then drains [`Deframer::next_frame`] until it returns `Ok(None)`. Each
//! [`Frame`] holds slices of the receive buffer: the data segment is never copied.
//!
//! ```
//! use iscsi_proto::{Deframer, DeframerConfig, Pdu};
//! use iscsi_proto::pdu::{Digests, NopOut};
//!
//! let wire = Pdu::from(NopOut { data: "ping".into(), ..Default::default() })
//!     .to_bytes(Digests::NONE)
//!     .unwrap();
//! let mut d = Deframer::new(DeframerConfig::default());
//! // Bytes arrive in arbitrary pieces.
//! d.feed(&wire[..10]);
//! assert!(d.next_frame().unwrap().is_none());
//! d.feed(&wire[10..]);
//! let frame = d.next_frame().unwrap().expect("a whole PDU");
//! assert_eq!(Pdu::from_frame(&frame).unwrap().data().as_ref(), b"ping");
//! ```
//!
//! Limits: the data segment is checked against [`DeframerConfig::max_data_segment_len`] as soon as
//! the header is complete, before any of it is buffered; an oversized segment is reported once
//! and then skipped without being stored, so the connection can answer with a Reject. A header
//! digest error is fatal (the PDU boundaries are lost): the deframer reports it on every later
//! call.

use bytes::{Buf, Bytes, BytesMut};

use crate::digest::{crc32c, crc32c_from_wire};
use crate::pdu::{BHS_LEN, Bhs, Digests, PduError};

/// Deframer settings; change them with [`Deframer::set_config`] when login negotiation ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeframerConfig {
    /// Header and data digests in use.
    pub digests: Digests,
    /// The MaxRecvDataSegmentLength this side declared (8192 during login, RFC 7143 §13.12).
    pub max_data_segment_len: u32,
}

impl Default for DeframerConfig {
    fn default() -> Self {
        DeframerConfig {
            digests: Digests::NONE,
            max_data_segment_len: 8192,
        }
    }
}

/// One PDU cut out of the stream, not yet decoded (see [`crate::Pdu::from_frame`]).
///
/// It holds the PDU's bytes as one [`Bytes`]; the accessors slice it without copying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The parsed Basic Header Segment.
    pub header: Bhs,
    /// The whole PDU as received: header, AHS, digests, data and padding.
    pub bytes: Bytes,
    data_start: usize,
}

impl Frame {
    /// The raw BHS and AHS bytes (what a Reject carries back).
    pub fn raw_header(&self) -> Bytes {
        self.bytes.slice(..BHS_LEN + self.header.ahs_len())
    }

    /// The additional header segments.
    pub fn ahs(&self) -> Bytes {
        self.bytes.slice(BHS_LEN..BHS_LEN + self.header.ahs_len())
    }

    /// The data segment without padding or digest.
    pub fn data(&self) -> Bytes {
        self.bytes
            .slice(self.data_start..self.data_start + self.header.data_segment_len as usize)
    }

    /// Bytes the PDU took on the wire.
    pub fn wire_len(&self) -> usize {
        self.bytes.len()
    }
}

/// A deframing error, with the offending header when it is known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct FrameError {
    /// What went wrong; [`PduError::reject_reason`] says how to answer.
    pub error: PduError,
    /// The parsed header of the offending PDU, if it was read.
    pub header: Option<Bhs>,
    /// The raw BHS (and AHS) bytes, to send back in a Reject; empty if unknown.
    pub raw_header: Bytes,
}

impl FrameError {
    /// Whether the stream cannot continue (header digest error): close the connection.
    pub fn is_fatal(&self) -> bool {
        self.error.reject_reason().is_none()
    }
}

/// A PDU whose header has arrived and whose data segment is still arriving; see
/// [`Deframer::pending_data`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingHeader {
    /// Its header.
    pub header: Bhs,
    /// Bytes of its data segment already buffered.
    pub buffered: usize,
    /// Bytes after the data segment: padding, then the data digest if negotiated.
    pub trailer: usize,
}

/// Streaming deframer; see the [module docs](self).
#[derive(Debug)]
pub struct Deframer {
    config: DeframerConfig,
    buf: BytesMut,
    /// Bytes of an oversized PDU still to be dropped.
    skip: usize,
    failed: Option<FrameError>,
}

/// Wire layout of a PDU whose BHS is known.
struct Layout {
    /// BHS + AHS (+ header digest).
    header_part: usize,
    /// Whole PDU.
    total: usize,
}

fn layout(h: &Bhs, digests: Digests) -> Layout {
    let hd = if digests.header { 4 } else { 0 };
    let data = h.data_segment_len as usize;
    let dd = if digests.data && data > 0 { 4 } else { 0 };
    let header_part = BHS_LEN + h.ahs_len() + hd;
    Layout {
        header_part,
        total: header_part + h.padded_data_len() + dd,
    }
}

/// Checks the digests of one whole PDU (`pdu.len() >= layout(h).total`) and returns where its
/// data segment starts.
fn verify(h: &Bhs, pdu: &[u8], digests: Digests) -> Result<usize, PduError> {
    let l = layout(h, digests);
    let ahs_end = BHS_LEN + h.ahs_len();
    if digests.header {
        let computed = crc32c(&pdu[..ahs_end]);
        let received = read_crc(&pdu[ahs_end..ahs_end + 4]);
        if computed != received {
            return Err(PduError::HeaderDigest { computed, received });
        }
    }
    if digests.data && h.data_segment_len > 0 {
        let padded_end = l.header_part + h.padded_data_len();
        let computed = crc32c(&pdu[l.header_part..padded_end]);
        let received = read_crc(&pdu[padded_end..padded_end + 4]);
        if computed != received {
            return Err(PduError::DataDigest { computed, received });
        }
    }
    Ok(l.header_part)
}

fn read_crc(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    crc32c_from_wire(a)
}

/// Locates the first PDU of a contiguous buffer and checks its digests (for
/// [`crate::Pdu::parse`]): returns its header, where its data starts, and its wire length.
pub(crate) fn locate(buf: &[u8], digests: Digests) -> Result<(Bhs, usize, usize), PduError> {
    let h = match Bhs::parse(buf) {
        Ok((_, h)) => h,
        Err(_) => {
            return Err(PduError::Truncated {
                needed: BHS_LEN - buf.len(),
            });
        }
    };
    let total = layout(&h, digests).total;
    if buf.len() < total {
        return Err(PduError::Truncated {
            needed: total - buf.len(),
        });
    }
    let data_start = verify(&h, buf, digests)?;
    Ok((h, data_start, total))
}

impl Deframer {
    /// A deframer with the given settings and an empty buffer.
    pub fn new(config: DeframerConfig) -> Self {
        Deframer {
            config,
            buf: BytesMut::with_capacity(BHS_LEN * 4),
            skip: 0,
            failed: None,
        }
    }

    /// The current settings.
    pub fn config(&self) -> DeframerConfig {
        self.config
    }

    /// Changes the settings; they apply from the next PDU boundary on (digests start with the
    /// first PDU after the login response that negotiated them).
    pub fn set_config(&mut self, config: DeframerConfig) {
        self.config = config;
    }

    /// Copies received bytes in.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The receive buffer, with room reserved for at least the rest of the PDU in progress
    /// (bounded by the configured maximum). Read the socket straight into it
    /// (`tokio::io::AsyncReadExt::read_buf`) to avoid a copy.
    pub fn read_buf(&mut self) -> &mut BytesMut {
        let want = match Bhs::parse(&self.buf) {
            Ok((_, h)) if self.skip == 0 => {
                let total = layout(&h, self.config.digests).total;
                if h.data_segment_len <= self.config.max_data_segment_len {
                    total.saturating_sub(self.buf.len())
                } else {
                    BHS_LEN
                }
            }
            _ => BHS_LEN,
        };
        self.buf.reserve(want.max(4096));
        &mut self.buf
    }

    /// Bytes buffered and not yet returned in a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole PDU, `Ok(None)` if more bytes are needed, or an error. After a non-fatal
    /// error the stream goes on with the next PDU; after a fatal one every call fails.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.skip > 0 {
            let n = self.skip.min(self.buf.len());
            self.buf.advance(n);
            self.skip -= n;
            if self.skip > 0 {
                return Ok(None);
            }
        }
        let h = match Bhs::parse(&self.buf) {
            Ok((_, h)) => h,
            Err(_) => return Ok(None),
        };
        let l = layout(&h, self.config.digests);
        let too_long = h.data_segment_len > self.config.max_data_segment_len;
        if self.config.digests.header && (too_long || self.buf.len() < l.total) {
            // Check the header digest as soon as it is in: a corrupt length field must not be
            // mistaken for a peer's protocol error, nor leave us waiting for bytes that will
            // never come.
            let ahs_end = BHS_LEN + h.ahs_len();
            if self.buf.len() < ahs_end + 4 {
                return Ok(None);
            }
            let computed = crc32c(&self.buf[..ahs_end]);
            let received = read_crc(&self.buf[ahs_end..ahs_end + 4]);
            if computed != received {
                let raw_header = Bytes::copy_from_slice(&self.buf[..ahs_end]);
                return Err(self.fail(FrameError {
                    error: PduError::HeaderDigest { computed, received },
                    header: Some(h),
                    raw_header,
                }));
            }
        }
        if too_long {
            let raw_len = (BHS_LEN + h.ahs_len()).min(self.buf.len());
            let raw_header = Bytes::copy_from_slice(&self.buf[..raw_len]);
            self.skip = l.total;
            let n = self.skip.min(self.buf.len());
            self.buf.advance(n);
            self.skip -= n;
            return Err(FrameError {
                error: PduError::DataSegmentTooLong {
                    len: h.data_segment_len,
                    max: self.config.max_data_segment_len,
                },
                header: Some(h),
                raw_header,
            });
        }
        if self.buf.len() < l.total {
            return Ok(None);
        }
        let pdu = self.buf.split_to(l.total).freeze();
        match verify(&h, &pdu, self.config.digests) {
            Ok(data_start) => Ok(Some(Frame {
                header: h,
                bytes: pdu,
                data_start,
            })),
            Err(error) => {
                let e = FrameError {
                    error,
                    header: Some(h),
                    raw_header: pdu.slice(..BHS_LEN + h.ahs_len()),
                };
                Err(if e.is_fatal() { self.fail(e) } else { e })
            }
        }
    }

    /// The header of the PDU at the front when it has arrived whole (its header digest
    /// checked) and its data segment has not: a transport may then place the data segment
    /// straight into its destination ([`Deframer::take_pending`]) instead of buffering it.
    /// `None` otherwise (no header yet, data complete, an oversized or corrupt PDU: those
    /// take the [`Deframer::next_frame`] path).
    pub fn pending_data(&self) -> Option<PendingHeader> {
        if self.skip > 0 || self.failed.is_some() {
            return None;
        }
        let (_, h) = Bhs::parse(&self.buf).ok()?;
        if h.data_segment_len > self.config.max_data_segment_len {
            return None;
        }
        let l = layout(&h, self.config.digests);
        let data_len = h.data_segment_len as usize;
        if self.buf.len() < l.header_part || self.buf.len() >= l.header_part + data_len {
            return None;
        }
        if self.config.digests.header {
            let ahs_end = BHS_LEN + h.ahs_len();
            if crc32c(&self.buf[..ahs_end]) != read_crc(&self.buf[ahs_end..ahs_end + 4]) {
                return None;
            }
        }
        Some(PendingHeader {
            header: h,
            buffered: self.buf.len() - l.header_part,
            trailer: l.total - l.header_part - data_len,
        })
    }

    /// Takes the PDU that [`Deframer::pending_data`] describes out of the buffer: its header
    /// (BHS and AHS, without the header digest) and the part of its data segment already
    /// received. The caller then reads the rest of the data segment, the padding and the data
    /// digest ([`PendingHeader::trailer`] bytes) from the stream itself, and feeds the
    /// deframer again from the next PDU on.
    pub fn take_pending(&mut self) -> Option<(PendingHeader, Bytes, Bytes)> {
        let p = self.pending_data()?;
        let header_part = self.buf.len() - p.buffered;
        let header = self.buf.split_to(header_part).freeze();
        let prefix = self.buf.split().freeze();
        let raw = header.slice(..BHS_LEN + p.header.ahs_len());
        Some((p, raw, prefix))
    }

    fn fail(&mut self, e: FrameError) -> FrameError {
        self.buf.clear();
        self.failed = Some(e.clone());
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pdu;
    use crate::pdu::{DataOut, NopOut};

    fn nop(data: &'static [u8]) -> Pdu {
        Pdu::from(NopOut {
            data: Bytes::from_static(data),
            ..Default::default()
        })
    }

    #[test]
    fn byte_at_a_time() {
        let digests = Digests {
            header: true,
            data: true,
        };
        let mut wire = BytesMut::new();
        nop(b"hello").encode(&mut wire, digests).unwrap();
        nop(b"").encode(&mut wire, digests).unwrap();
        let mut d = Deframer::new(DeframerConfig {
            digests,
            max_data_segment_len: 8192,
        });
        let mut out = Vec::new();
        for b in wire.iter() {
            d.feed(&[*b]);
            while let Some(f) = d.next_frame().unwrap() {
                out.push(Pdu::from_frame(&f).unwrap());
            }
        }
        assert_eq!(out, vec![nop(b"hello"), nop(b"")]);
        assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn oversized_segment_is_refused_then_skipped() {
        let big = Pdu::from(DataOut {
            data: Bytes::from(vec![7u8; 9000]),
            ..Default::default()
        });
        let mut wire = BytesMut::new();
        big.encode(&mut wire, Digests::NONE).unwrap();
        nop(b"after").encode(&mut wire, Digests::NONE).unwrap();
        let mut d = Deframer::new(DeframerConfig::default());
        // Only the header has arrived: the error comes before any data is buffered.
        d.feed(&wire[..BHS_LEN]);
        let e = d.next_frame().unwrap_err();
        assert_eq!(
            e.error,
            PduError::DataSegmentTooLong {
                len: 9000,
                max: 8192
            }
        );
        assert_eq!(e.raw_header.len(), BHS_LEN);
        assert!(!e.is_fatal());
        assert_eq!(d.buffered(), 0);
        // The rest of the big PDU is dropped as it arrives; the next PDU comes through.
        for chunk in wire[BHS_LEN..].chunks(1000) {
            d.feed(chunk);
            assert!(d.buffered() <= 1000);
            if let Some(f) = d.next_frame().unwrap() {
                assert_eq!(Pdu::from_frame(&f).unwrap(), nop(b"after"));
                return;
            }
        }
        panic!("the PDU after the oversized one never came out");
    }

    #[test]
    fn header_digest_error_is_fatal() {
        let digests = Digests {
            header: true,
            data: false,
        };
        let mut wire = BytesMut::new();
        nop(b"x").encode(&mut wire, digests).unwrap();
        wire[20] ^= 1;
        let mut d = Deframer::new(DeframerConfig {
            digests,
            max_data_segment_len: 8192,
        });
        d.feed(&wire);
        let e = d.next_frame().unwrap_err();
        assert!(matches!(e.error, PduError::HeaderDigest { .. }));
        assert!(e.is_fatal());
        d.feed(&wire);
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn corrupt_length_is_caught_before_the_data_arrives() {
        let digests = Digests {
            header: true,
            data: true,
        };
        let mut wire = BytesMut::new();
        nop(b"abcd").encode(&mut wire, digests).unwrap();
        nop(&[9; 64]).encode(&mut wire, digests).unwrap();
        // TotalAHSLength and DataSegmentLength grown by a bit flip: the bytes they promise
        // are not all in (and may never come), but the header digest already tells.
        for (byte, mask) in [(4, 0x10), (6, 0x01), (7, 0x80)] {
            let mut bad = wire.clone();
            bad[byte] ^= mask;
            let mut d = Deframer::new(DeframerConfig {
                digests,
                max_data_segment_len: 1 << 20,
            });
            d.feed(&bad);
            let e = d.next_frame().unwrap_err();
            assert!(matches!(e.error, PduError::HeaderDigest { .. }), "{e}");
            assert!(e.is_fatal());
        }
    }

    #[test]
    fn data_digest_error_is_not_fatal() {
        let digests = Digests {
            header: false,
            data: true,
        };
        let mut wire = BytesMut::new();
        nop(b"abcdef").encode(&mut wire, digests).unwrap();
        let n = wire.len();
        nop(b"ok").encode(&mut wire, digests).unwrap();
        wire[BHS_LEN + 1] ^= 0x40;
        let mut d = Deframer::new(DeframerConfig {
            digests,
            max_data_segment_len: 8192,
        });
        d.feed(&wire);
        let e = d.next_frame().unwrap_err();
        assert!(matches!(e.error, PduError::DataDigest { .. }));
        assert_eq!(
            e.error.reject_reason(),
            Some(crate::RejectReason::DATA_DIGEST_ERROR)
        );
        assert_eq!(e.raw_header.len(), BHS_LEN);
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(f.wire_len(), wire.len() - n);
        assert_eq!(Pdu::from_frame(&f).unwrap(), nop(b"ok"));
    }

    #[test]
    fn pending_data_hands_out_the_header_and_the_prefix() {
        let digests = Digests {
            header: true,
            data: true,
        };
        let mut wire = BytesMut::new();
        nop(b"0123456789").encode(&mut wire, digests).unwrap();
        let header_part = BHS_LEN + 4;
        let mut d = Deframer::new(DeframerConfig {
            digests,
            max_data_segment_len: 8192,
        });
        // Header incomplete: nothing pending.
        d.feed(&wire[..header_part - 1]);
        assert_eq!(d.pending_data(), None);
        d.feed(&wire[header_part - 1..header_part + 3]);
        let p = d.pending_data().expect("header whole, data arriving");
        assert_eq!((p.buffered, p.trailer), (3, 2 + 4));
        assert_eq!(p.header.data_segment_len, 10);
        // A corrupt header digest is never pending (next_frame reports it).
        let mut bad = Deframer::new(d.config());
        let mut w2 = wire.clone();
        w2[header_part - 1] ^= 1;
        bad.feed(&w2[..header_part + 3]);
        assert_eq!(bad.pending_data(), None);
        let (p2, raw, prefix) = d.take_pending().unwrap();
        assert_eq!(p2, p);
        assert_eq!(&raw[..], &wire[..BHS_LEN]);
        assert_eq!(&prefix[..], b"012");
        assert_eq!(d.buffered(), 0);
        // The caller consumed the rest of the PDU; the next one frames normally.
        let mut next = BytesMut::new();
        nop(b"ok").encode(&mut next, digests).unwrap();
        d.feed(&next);
        assert_eq!(d.pending_data(), None);
        assert_eq!(
            Pdu::from_frame(&d.next_frame().unwrap().unwrap()).unwrap(),
            nop(b"ok")
        );
        // A PDU whose data is all there but not its digest is not pending either.
        d.feed(&wire[..wire.len() - 1]);
        assert_eq!(d.pending_data(), None);
    }
}
