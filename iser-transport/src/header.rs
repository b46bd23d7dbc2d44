//! The iSER header (RFC 7145 §9.2), the Hello and HelloReply messages (§9.3, §9.4) and the
//! RDMA-CM private data that Linux ib_iser and isert exchange.
//!
//! Every RDMA Send of an iSER connection starts with a 28-byte iSER header; in full feature
//! phase an iSCSI control-type PDU (BHS, AHS, data segment, no digests and no padding) follows
//! it. The header advertises the initiator's buffers for a command: the *write STag* (the
//! memory the target reads the solicited data-out from) and the *read STag* (the memory the
//! target writes the data-in into), each with a base offset.
//!
//! ```text
//!  byte 0      opcode (high nibble: 1 control, 2 Hello, 3 HelloReply) | W 0x08 | R 0x04
//!  bytes 1-3   reserved
//!  bytes 4-7   write STag          bytes 8-15   write base offset
//!  bytes 16-19 read STag           bytes 20-27  read base offset
//! ```
//!
//! All fields are big-endian. Hello and HelloReply use the same opcode nibble in byte 0 and
//! their own layout in bytes 1-3 (versions, IRD/ORD); the rest of their 28 bytes is reserved.

use bytes::BufMut;

/// Length of the iSER header.
pub const ISER_HEADER_LEN: usize = 28;

/// The iSER version of RFC 7145 (0xA; RFC 5046 used 1), carried in Hello and HelloReply.
/// Only iWARP connections exchange those: on InfiniBand and RoCE (Linux ib_iser and isert)
/// the [`CmPrivateData`] takes their place and Linux isert does not answer a Hello.
pub const ISER_VERSION: u8 = 10;

/// Opcode of an iSCSI control-type PDU message (in the high nibble of byte 0).
const OP_CONTROL: u8 = 0x1;
/// Opcode of an iSER Hello message.
const OP_HELLO: u8 = 0x2;
/// Opcode of an iSER HelloReply message.
const OP_HELLO_REPLY: u8 = 0x3;
/// Write STag valid.
const WSV: u8 = 0x08;
/// Read STag valid.
const RSV: u8 = 0x04;
/// HelloReply: the target rejects the Hello.
const REJECT: u8 = 0x01;

/// Remote memory the peer may access: a steering tag (the RDMA rkey) and the base offset
/// (the virtual address, or 0 for zero-based addressing) the transfer offsets count from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Stag {
    /// The steering tag (rkey).
    pub stag: u32,
    /// The base offset (tagged offset of the first byte).
    pub base_offset: u64,
}

/// The header of an iSCSI control-type PDU message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControlHeader {
    /// The buffer the target reads solicited data-out from (write commands).
    pub write: Option<Stag>,
    /// The buffer the target writes data-in into (read commands).
    pub read: Option<Stag>,
}

/// The iSER Hello message (RFC 7145 §9.3): sent by an initiator on an iWARP connection before
/// the login; InfiniBand and RoCE connections exchange the [`CmPrivateData`] instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Highest iSER version the initiator supports.
    pub max_ver: u8,
    /// Lowest iSER version the initiator supports.
    pub min_ver: u8,
    /// The initiator's inbound RDMA Read queue depth.
    pub ird: u16,
}

/// The iSER HelloReply message (RFC 7145 §9.4): the target's answer to a [`Hello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HelloReply {
    /// The target refuses the connection (no common version).
    pub reject: bool,
    /// Highest iSER version the target supports.
    pub max_ver: u8,
    /// The version in use (meaningful when not rejected).
    pub cur_ver: u8,
    /// The target's outbound RDMA Read queue depth.
    pub ord: u16,
}

/// An iSER header of any kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IserHeader {
    /// An iSCSI control-type PDU follows.
    Control(ControlHeader),
    /// A Hello message.
    Hello(Hello),
    /// A HelloReply message.
    HelloReply(HelloReply),
}

/// Why bytes are not an iSER header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer than [`ISER_HEADER_LEN`] bytes.
    #[error("iSER message of {0} bytes, shorter than the 28-byte iSER header")]
    Short(usize),
    /// An opcode RFC 7145 does not define.
    #[error("unknown iSER opcode {0:#x}")]
    Opcode(u8),
}

impl IserHeader {
    /// Decodes the header at the start of `b`; the rest of `b` is the message body.
    pub fn decode(b: &[u8]) -> Result<Self, HeaderError> {
        let Some(h) = b.get(..ISER_HEADER_LEN) else {
            return Err(HeaderError::Short(b.len()));
        };
        let u32_at = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        // Reserved bits are ignored on receipt.
        match h[0] >> 4 {
            OP_CONTROL => {
                let stag = |valid: bool, at: usize| {
                    valid.then(|| Stag {
                        stag: u32_at(at),
                        base_offset: u64_at(at + 4),
                    })
                };
                Ok(Self::Control(ControlHeader {
                    write: stag(h[0] & WSV != 0, 4),
                    read: stag(h[0] & RSV != 0, 16),
                }))
            }
            OP_HELLO => Ok(Self::Hello(Hello {
                max_ver: h[1] >> 4,
                min_ver: h[1] & 0x0f,
                ird: u16::from_be_bytes([h[2], h[3]]),
            })),
            OP_HELLO_REPLY => Ok(Self::HelloReply(HelloReply {
                reject: h[0] & REJECT != 0,
                max_ver: h[1] >> 4,
                cur_ver: h[1] & 0x0f,
                ord: u16::from_be_bytes([h[2], h[3]]),
            })),
            op => Err(HeaderError::Opcode(op)),
        }
    }

    /// The 28 bytes of this header.
    pub fn to_bytes(&self) -> [u8; ISER_HEADER_LEN] {
        let mut b = [0u8; ISER_HEADER_LEN];
        match *self {
            Self::Control(c) => {
                b[0] = OP_CONTROL << 4;
                if let Some(w) = c.write {
                    b[0] |= WSV;
                    b[4..8].copy_from_slice(&w.stag.to_be_bytes());
                    b[8..16].copy_from_slice(&w.base_offset.to_be_bytes());
                }
                if let Some(r) = c.read {
                    b[0] |= RSV;
                    b[16..20].copy_from_slice(&r.stag.to_be_bytes());
                    b[20..28].copy_from_slice(&r.base_offset.to_be_bytes());
                }
            }
            Self::Hello(h) => {
                b[0] = OP_HELLO << 4;
                b[1] = (h.max_ver << 4) | (h.min_ver & 0x0f);
                b[2..4].copy_from_slice(&h.ird.to_be_bytes());
            }
            Self::HelloReply(r) => {
                b[0] = (OP_HELLO_REPLY << 4) | u8::from(r.reject);
                b[1] = (r.max_ver << 4) | (r.cur_ver & 0x0f);
                b[2..4].copy_from_slice(&r.ord.to_be_bytes());
            }
        }
        b
    }

    /// Appends the 28 bytes of this header to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_slice(&self.to_bytes());
    }
}

/// The private data Linux puts in RDMA-CM connect requests and accepts on InfiniBand and
/// RoCE (`struct iser_cm_hdr`: a flags byte and three reserved bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CmPrivateData {
    /// The sender does not support zero-based virtual addresses: base offsets in iSER
    /// headers are virtual addresses, not offsets from 0 (flag 0x80).
    pub zbva_not_supported: bool,
    /// The sender does not support Send with Invalidate (flag 0x40).
    pub send_with_invalidate_not_supported: bool,
}

/// Length of [`CmPrivateData`] on the wire.
pub const CM_PRIVATE_DATA_LEN: usize = 4;

const CM_ZBVA_NOT_SUP: u8 = 0x80;
const CM_SEND_W_INV_NOT_SUP: u8 = 0x40;

impl CmPrivateData {
    /// What this crate sends: virtual addresses (not zero-based) and no Send with
    /// Invalidate, the values every Linux peer accepts.
    pub const OURS: Self = Self {
        zbva_not_supported: true,
        send_with_invalidate_not_supported: true,
    };

    /// The 4 bytes on the wire.
    pub fn to_bytes(self) -> [u8; CM_PRIVATE_DATA_LEN] {
        let mut flags = 0;
        if self.zbva_not_supported {
            flags |= CM_ZBVA_NOT_SUP;
        }
        if self.send_with_invalidate_not_supported {
            flags |= CM_SEND_W_INV_NOT_SUP;
        }
        [flags, 0, 0, 0]
    }

    /// Reads the header at the start of a peer's private data (RDMA-CM pads private data
    /// with zeros; unknown flags are ignored). `None` if there is no byte at all: a peer
    /// that sends none (iWARP, or an old initiator) supports neither feature.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let flags = *b.first()?;
        Some(Self {
            zbva_not_supported: flags & CM_ZBVA_NOT_SUP != 0,
            send_with_invalidate_not_supported: flags & CM_SEND_W_INV_NOT_SUP != 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_header_bytes() {
        // A read command: read STag valid only (Linux iser_prepare_read_cmd sets ISER_RSV).
        let h = IserHeader::Control(ControlHeader {
            write: None,
            read: Some(Stag {
                stag: 0x1234_5678,
                base_offset: 0x0000_7f00_dead_b000,
            }),
        });
        let b = h.to_bytes();
        assert_eq!(
            b,
            [
                0x14, 0, 0, 0, // control | RSV
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // no write STag
                0x12, 0x34, 0x56, 0x78, // read STag
                0x00, 0x00, 0x7f, 0x00, 0xde, 0xad, 0xb0, 0x00, // read VA
            ]
        );
        assert_eq!(IserHeader::decode(&b), Ok(h));

        // A write: write STag valid (0x18), and a bare control PDU (0x10).
        let w = IserHeader::Control(ControlHeader {
            write: Some(Stag {
                stag: 0xaabb_ccdd,
                base_offset: 1,
            }),
            read: None,
        });
        let b = w.to_bytes();
        assert_eq!(
            &b[..16],
            &[
                0x18, 0, 0, 0, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0, 0, 0, 0, 0, 0, 1
            ]
        );
        assert_eq!(&b[16..], &[0; 12]);
        assert_eq!(IserHeader::decode(&b), Ok(w));
        let bare = IserHeader::Control(ControlHeader::default());
        assert_eq!(bare.to_bytes(), {
            let mut e = [0u8; 28];
            e[0] = 0x10;
            e
        });
    }

    #[test]
    fn reserved_bits_ignored_and_fields_without_valid_bit_dropped() {
        let mut b = [0xffu8; 28];
        b[0] = 0x13; // control, neither STag valid, reserved bits set
        assert_eq!(
            IserHeader::decode(&b),
            Ok(IserHeader::Control(ControlHeader::default()))
        );
    }

    #[test]
    fn hello_and_reply_bytes() {
        let h = IserHeader::Hello(Hello {
            max_ver: ISER_VERSION,
            min_ver: ISER_VERSION,
            ird: 16,
        });
        let b = h.to_bytes();
        assert_eq!(&b[..4], &[0x20, 0xaa, 0x00, 0x10]);
        assert_eq!(&b[4..], &[0; 24]);
        assert_eq!(IserHeader::decode(&b), Ok(h));

        let r = IserHeader::HelloReply(HelloReply {
            reject: true,
            max_ver: ISER_VERSION,
            cur_ver: 1,
            ord: 0x0102,
        });
        let b = r.to_bytes();
        assert_eq!(&b[..4], &[0x31, 0xa1, 0x01, 0x02]);
        assert_eq!(IserHeader::decode(&b), Ok(r));
    }

    #[test]
    fn bad_input() {
        assert_eq!(IserHeader::decode(&[0x10; 27]), Err(HeaderError::Short(27)));
        assert_eq!(IserHeader::decode(&[]), Err(HeaderError::Short(0)));
        for op in [0u8, 4, 0xf] {
            let mut b = [0u8; 28];
            b[0] = op << 4;
            assert_eq!(IserHeader::decode(&b), Err(HeaderError::Opcode(op)));
        }
    }

    #[test]
    fn cm_private_data() {
        assert_eq!(CmPrivateData::OURS.to_bytes(), [0xc0, 0, 0, 0]);
        assert_eq!(
            CmPrivateData::decode(&[0xc0, 0, 0, 0]),
            Some(CmPrivateData::OURS)
        );
        // Linux isert accepts with ISERT_ZBVA_NOT_USED only, padded by RDMA-CM.
        let mut padded = vec![0u8; 196];
        padded[0] = 0x80;
        assert_eq!(
            CmPrivateData::decode(&padded),
            Some(CmPrivateData {
                zbva_not_supported: true,
                send_with_invalidate_not_supported: false,
            })
        );
        assert_eq!(CmPrivateData::decode(&[]), None);
        assert_eq!(
            CmPrivateData::decode(&[0x3f]),
            Some(CmPrivateData::default())
        );
    }

    #[test]
    fn round_trip_every_control_header() {
        let stags = [
            None,
            Some(Stag::default()),
            Some(Stag {
                stag: u32::MAX,
                base_offset: u64::MAX,
            }),
            Some(Stag {
                stag: 7,
                base_offset: 1 << 40,
            }),
        ];
        for write in stags {
            for read in stags {
                let h = IserHeader::Control(ControlHeader { write, read });
                let mut v = Vec::new();
                h.encode(&mut v);
                v.extend_from_slice(b"body");
                assert_eq!(IserHeader::decode(&v), Ok(h));
            }
        }
    }
}
