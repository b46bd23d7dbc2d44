//! Text that spans several PDUs: the C (continue) bit of Login and Text PDUs
//! (RFC 7143 §11.10.2, §11.12.2, §6.2).
//!
//! A sender whose text does not fit in one data segment (MaxRecvDataSegmentLength of the
//! receiver, 8192 bytes during login unless declared otherwise) splits it over several PDUs
//! and sets C=1 on all but the last. The split may fall anywhere, including in the middle of a
//! `key=value` pair, so the receiver must reassemble the whole text before parsing it.
//!
//! **Protocol obligation of the caller:** every PDU received with C=1 must be answered with a
//! PDU carrying an *empty* data segment (a Login or Text response/request with no text), which
//! asks the peer for the next piece; only after the piece with C=0 does the receiver parse and
//! answer. [`TextAssembler`] only collects bytes; sending those empty PDUs is the job of the
//! login/text layer.

use thiserror::Error;

use super::parse::DEFAULT_MAX_TEXT_LEN;

/// The reassembled text would exceed the configured bound.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("reassembled text of at least {len} bytes exceeds the bound of {max} bytes")]
pub struct AssembleError {
    /// Length the text would have reached.
    pub len: usize,
    /// The bound.
    pub max: usize,
}

impl AssembleError {
    /// The Login status to answer with: target "out of resources" (0x03/0x02).
    pub fn login_status(&self) -> (u8, u8) {
        (0x03, 0x02)
    }
}

/// Collects the data segments of a text sent over several PDUs (C bit) under a size bound.
#[derive(Clone, Debug)]
pub struct TextAssembler {
    buf: Vec<u8>,
    max_len: usize,
    partial: bool,
}

impl Default for TextAssembler {
    fn default() -> Self {
        TextAssembler::new(DEFAULT_MAX_TEXT_LEN)
    }
}

impl TextAssembler {
    /// Creates an assembler that refuses texts longer than `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        TextAssembler {
            buf: Vec::new(),
            max_len,
            partial: false,
        }
    }

    /// The bound on the reassembled text.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Whether a text is partly received (a C=1 piece was fed and the C=0 piece has not).
    pub fn is_partial(&self) -> bool {
        self.partial
    }

    /// Number of bytes buffered so far.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// Drops any partial text.
    pub fn reset(&mut self) {
        self.buf = Vec::new();
        self.partial = false;
    }

    /// Feeds the data segment of one PDU and its C bit.
    ///
    /// Returns `Ok(None)` while C=1 (the caller must then answer with an empty PDU), and the
    /// whole text when C=0. If the text would grow beyond the bound the partial text is
    /// dropped and an error is returned; nothing beyond the bound is ever allocated.
    pub fn feed(
        &mut self,
        data: &[u8],
        continue_bit: bool,
    ) -> Result<Option<Vec<u8>>, AssembleError> {
        let len = self.buf.len().saturating_add(data.len());
        if len > self.max_len {
            self.reset();
            return Err(AssembleError {
                len,
                max: self.max_len,
            });
        }
        if continue_bit {
            self.buf.extend_from_slice(data);
            self.partial = true;
            return Ok(None);
        }
        let mut text = std::mem::take(&mut self.buf);
        text.extend_from_slice(data);
        self.partial = false;
        Ok(Some(text))
    }
}

/// One piece of an outgoing text: the data segment of one PDU and its C bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextChunk<'a> {
    /// The bytes for this PDU's data segment.
    pub data: &'a [u8],
    /// C bit: set on every piece but the last.
    pub continue_bit: bool,
}

/// Iterator over the pieces of an outgoing text; see [`split_text`].
#[derive(Clone, Debug)]
pub struct TextChunks<'a> {
    rest: &'a [u8],
    max: usize,
    done: bool,
}

impl<'a> Iterator for TextChunks<'a> {
    type Item = TextChunk<'a>;

    fn next(&mut self) -> Option<TextChunk<'a>> {
        if self.done {
            return None;
        }
        let take = self.rest.len().min(self.max);
        let (data, rest) = self.rest.split_at(take);
        self.rest = rest;
        let continue_bit = !rest.is_empty();
        if !continue_bit {
            self.done = true;
        }
        Some(TextChunk { data, continue_bit })
    }
}

/// Splits an outgoing text into pieces of at most `max_segment_len` bytes (the peer's
/// MaxRecvDataSegmentLength), with the C bit set on all but the last piece.
///
/// The split is purely by length: a `key=value` pair may be cut in the middle, which the RFC
/// allows and the peer reassembles. An empty text gives one empty piece with C=0. A
/// `max_segment_len` of 0 is treated as 1.
pub fn split_text(text: &[u8], max_segment_len: usize) -> TextChunks<'_> {
    TextChunks {
        rest: text,
        max: max_segment_len.max(1),
        done: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_piece() {
        let mut a = TextAssembler::new(100);
        assert_eq!(a.feed(b"A=1\0", false), Ok(Some(b"A=1\0".to_vec())));
        assert!(!a.is_partial());
    }

    #[test]
    fn pair_split_mid_way() {
        let mut a = TextAssembler::new(100);
        assert_eq!(a.feed(b"HeaderDig", true), Ok(None));
        assert!(a.is_partial());
        assert_eq!(a.feed(b"est=No", true), Ok(None));
        assert_eq!(
            a.feed(b"ne\0", false),
            Ok(Some(b"HeaderDigest=None\0".to_vec()))
        );
        assert_eq!(a.buffered_len(), 0);
    }

    #[test]
    fn bound_is_enforced_before_growing() {
        let mut a = TextAssembler::new(8);
        assert_eq!(a.feed(b"12345", true), Ok(None));
        assert_eq!(
            a.feed(b"6789", false),
            Err(AssembleError { len: 9, max: 8 })
        );
        assert!(!a.is_partial());
        assert_eq!(a.buffered_len(), 0);
        assert_eq!(a.feed(b"12345678", false), Ok(Some(b"12345678".to_vec())));
    }

    #[test]
    fn split_sets_continue_bit() {
        let chunks: Vec<_> = split_text(b"abcdefg", 3).collect();
        assert_eq!(
            chunks,
            [
                TextChunk {
                    data: b"abc",
                    continue_bit: true
                },
                TextChunk {
                    data: b"def",
                    continue_bit: true
                },
                TextChunk {
                    data: b"g",
                    continue_bit: false
                },
            ]
        );
        let exact: Vec<_> = split_text(b"abcdef", 3).collect();
        assert_eq!(exact.len(), 2);
        assert!(!exact[1].continue_bit);
        let empty: Vec<_> = split_text(b"", 3).collect();
        assert_eq!(
            empty,
            [TextChunk {
                data: b"",
                continue_bit: false
            }]
        );
        assert_eq!(split_text(b"ab", 0).count(), 2);
    }
}
