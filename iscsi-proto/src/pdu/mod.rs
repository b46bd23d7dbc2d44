//! iSCSI PDUs (RFC 7143 §11): one typed struct per PDU, the [`Pdu`] enum, parsing and building.
//!
//! # Parsing
//! [`Pdu::parse`] takes a [`Bytes`] holding one or more whole PDUs and returns the first one; its
//! data segment is a slice of the input (no copy). A stream of bytes goes through the
//! [`Deframer`](crate::Deframer) first, which yields [`Frame`](crate::Frame)s for [`Pdu::from_frame`].
//!
//! Reserved *fields* are ignored on receipt and written as zero, as RFC 7143 §11.2.1 asks of a
//! receiver; reserved *code values* in defined fields (a reserved task attribute, logout reason,
//! SNACK type, login stage, AHS type...) and inconsistent lengths are errors. Every [`PduError`]
//! names the Reject reason to answer with ([`PduError::reject_reason`]).
//!
//! # Building
//! [`Pdu::encode`] appends the whole PDU (header, AHS, header digest, data, padding, data digest) to
//! a [`BytesMut`]. A transport that wants to send the data segment without copying it calls
//! [`Pdu::encode_header`] for the header part and sends [`Pdu::data`] and [`data_trailer`] after it.

mod bhs;
mod data;
mod login;
mod misc;
mod nop;
mod scsi;
mod text;
mod tmf;

pub use bhs::{BHS_LEN, Bhs, pad4};
pub use data::{DataIn, DataOut, R2t};
pub use login::{Isid, LoginRequest, LoginResponse, LoginStatus, Stage, Tsih};
pub use misc::{
    AsyncEvent, AsyncMessage, LogoutReason, LogoutRequest, LogoutResponse, LogoutResponseCode,
    Reject, SnackRequest, SnackType,
};
pub use nop::{NopIn, NopOut};
pub use scsi::{ScsiCommand, ScsiResponse, ScsiStatus, ServiceResponse, TaskAttribute};
pub use text::{TextRequest, TextResponse};
pub use tmf::{TaskMgmtFunction, TaskMgmtRequest, TaskMgmtResponse, TmfResponse};

use bytes::{BufMut, Bytes, BytesMut};
use core::fmt;

use crate::digest::{Crc32c, crc32c, crc32c_wire};

/// Largest DataSegmentLength the 24-bit field can carry.
pub const MAX_DATA_SEGMENT_LEN: u32 = (1 << 24) - 1;
/// Largest total AHS length (255 words).
pub const MAX_AHS_LEN: usize = 255 * 4;

/// A PDU opcode (6 bits). Open: an unknown value is representable so that it can be rejected.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Opcode(pub u8);

impl Opcode {
    /// NOP-Out (initiator).
    pub const NOP_OUT: Opcode = Opcode(0x00);
    /// SCSI Command (initiator).
    pub const SCSI_COMMAND: Opcode = Opcode(0x01);
    /// SCSI Task Management Function Request (initiator).
    pub const TASK_MGMT_REQUEST: Opcode = Opcode(0x02);
    /// Login Request (initiator).
    pub const LOGIN_REQUEST: Opcode = Opcode(0x03);
    /// Text Request (initiator).
    pub const TEXT_REQUEST: Opcode = Opcode(0x04);
    /// SCSI Data-Out (initiator).
    pub const DATA_OUT: Opcode = Opcode(0x05);
    /// Logout Request (initiator).
    pub const LOGOUT_REQUEST: Opcode = Opcode(0x06);
    /// SNACK Request (initiator).
    pub const SNACK_REQUEST: Opcode = Opcode(0x10);
    /// NOP-In (target).
    pub const NOP_IN: Opcode = Opcode(0x20);
    /// SCSI Response (target).
    pub const SCSI_RESPONSE: Opcode = Opcode(0x21);
    /// SCSI Task Management Function Response (target).
    pub const TASK_MGMT_RESPONSE: Opcode = Opcode(0x22);
    /// Login Response (target).
    pub const LOGIN_RESPONSE: Opcode = Opcode(0x23);
    /// Text Response (target).
    pub const TEXT_RESPONSE: Opcode = Opcode(0x24);
    /// SCSI Data-In (target).
    pub const DATA_IN: Opcode = Opcode(0x25);
    /// Logout Response (target).
    pub const LOGOUT_RESPONSE: Opcode = Opcode(0x26);
    /// Ready To Transfer (target).
    pub const R2T: Opcode = Opcode(0x31);
    /// Asynchronous Message (target).
    pub const ASYNC_MESSAGE: Opcode = Opcode(0x32);
    /// Reject (target).
    pub const REJECT: Opcode = Opcode(0x3f);

    /// Whether initiators send this opcode (bit 5 clear).
    pub const fn is_initiator(self) -> bool {
        self.0 & 0x20 == 0
    }

    /// The RFC's name, or `None` for an unassigned or vendor-specific opcode.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0x00 => "NOP-Out",
            0x01 => "SCSI Command",
            0x02 => "Task Management Request",
            0x03 => "Login Request",
            0x04 => "Text Request",
            0x05 => "SCSI Data-Out",
            0x06 => "Logout Request",
            0x10 => "SNACK Request",
            0x20 => "NOP-In",
            0x21 => "SCSI Response",
            0x22 => "Task Management Response",
            0x23 => "Login Response",
            0x24 => "Text Response",
            0x25 => "SCSI Data-In",
            0x26 => "Logout Response",
            0x31 => "R2T",
            0x32 => "Asynchronous Message",
            0x3f => "Reject",
            _ => return None,
        })
    }
}

impl fmt::Debug for Opcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}({:#04x})", self.0),
            None => write!(f, "Opcode({:#04x})", self.0),
        }
    }
}

/// Reason code of a Reject PDU (RFC 7143 §11.17.1). Open: unknown codes stay representable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RejectReason(pub u8);

impl RejectReason {
    /// 0x02: data (payload) digest error; the original PDU may be resent.
    pub const DATA_DIGEST_ERROR: RejectReason = RejectReason(0x02);
    /// 0x03: SNACK reject; the original PDU may be resent.
    pub const SNACK_REJECT: RejectReason = RejectReason(0x03);
    /// 0x04: protocol error (for example a SNACK for a status already acknowledged).
    pub const PROTOCOL_ERROR: RejectReason = RejectReason(0x04);
    /// 0x05: command not supported.
    pub const COMMAND_NOT_SUPPORTED: RejectReason = RejectReason(0x05);
    /// 0x06: immediate command reject, too many immediate commands.
    pub const IMMEDIATE_COMMAND_REJECT: RejectReason = RejectReason(0x06);
    /// 0x07: task in progress.
    pub const TASK_IN_PROGRESS: RejectReason = RejectReason(0x07);
    /// 0x08: invalid data ACK.
    pub const INVALID_DATA_ACK: RejectReason = RejectReason(0x08);
    /// 0x09: invalid PDU field.
    pub const INVALID_PDU_FIELD: RejectReason = RejectReason(0x09);
    /// 0x0a: long operation reject, out of resources to generate a TTT.
    pub const LONG_OP_REJECT: RejectReason = RejectReason(0x0a);
    /// 0x0b: deprecated (negotiation reset in RFC 3720).
    pub const DEPRECATED: RejectReason = RejectReason(0x0b);
    /// 0x0c: waiting for logout.
    pub const WAITING_FOR_LOGOUT: RejectReason = RejectReason(0x0c);
}

/// Whether header and data digests (CRC32C) are in use on a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Digests {
    /// HeaderDigest=CRC32C.
    pub header: bool,
    /// DataDigest=CRC32C.
    pub data: bool,
}

impl Digests {
    /// No digests (the default before and during login).
    pub const NONE: Digests = Digests {
        header: false,
        data: false,
    };
}

/// A parse error. Each names the Reject reason to answer with, or says that the connection
/// cannot continue ([`PduError::reject_reason`] returns `None`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PduError {
    /// The input ends before the PDU does.
    #[error("truncated PDU: {needed} more bytes needed")]
    Truncated {
        /// Bytes missing.
        needed: usize,
    },
    /// An opcode this implementation does not know (or a vendor-specific one).
    #[error("unsupported opcode {0:?}")]
    UnknownOpcode(Opcode),
    /// A defined field holds a reserved or impossible value.
    #[error("invalid {field} (value {value:#x}) in {opcode:?} at byte {offset}")]
    InvalidField {
        /// The PDU's opcode.
        opcode: Opcode,
        /// The field's RFC name.
        field: &'static str,
        /// Byte offset of the field in the PDU.
        offset: usize,
        /// The value found.
        value: u32,
    },
    /// A data segment on a PDU that carries none, or AHS on a PDU that takes none.
    #[error("{opcode:?} carries an unexpected {what} of {len} bytes")]
    Unexpected {
        /// The PDU's opcode.
        opcode: Opcode,
        /// `"data segment"` or `"AHS"`.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A malformed additional header segment.
    #[error("malformed AHS at byte {offset}: {reason}")]
    BadAhs {
        /// Byte offset in the PDU.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// DataSegmentLength above what this side declared it can receive.
    #[error("data segment of {len} bytes exceeds MaxRecvDataSegmentLength {max}")]
    DataSegmentTooLong {
        /// Length announced by the header.
        len: u32,
        /// The negotiated limit.
        max: u32,
    },
    /// Header digest mismatch: the header cannot be trusted, so neither can its lengths.
    #[error("header digest mismatch: computed {computed:#010x}, received {received:#010x}")]
    HeaderDigest {
        /// CRC computed over the header.
        computed: u32,
        /// CRC found on the wire.
        received: u32,
    },
    /// Data digest mismatch.
    #[error("data digest mismatch: computed {computed:#010x}, received {received:#010x}")]
    DataDigest {
        /// CRC computed over data and padding.
        computed: u32,
        /// CRC found on the wire.
        received: u32,
    },
}

impl PduError {
    /// The Reject reason to answer with (RFC 7143 §11.17.1), or `None` when the connection must be
    /// dropped instead (a header digest error: the PDU's boundaries are unknown, §7.8).
    pub fn reject_reason(&self) -> Option<RejectReason> {
        Some(match self {
            PduError::Truncated { .. } | PduError::Unexpected { .. } => {
                RejectReason::PROTOCOL_ERROR
            }
            PduError::DataSegmentTooLong { .. } => RejectReason::PROTOCOL_ERROR,
            PduError::UnknownOpcode(_) => RejectReason::COMMAND_NOT_SUPPORTED,
            PduError::InvalidField { .. } | PduError::BadAhs { .. } => {
                RejectReason::INVALID_PDU_FIELD
            }
            PduError::DataDigest { .. } => RejectReason::DATA_DIGEST_ERROR,
            PduError::HeaderDigest { .. } => return None,
        })
    }
}

/// An error building a PDU from values that do not fit its fields.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The data segment is longer than the 24-bit DataSegmentLength field allows.
    #[error("data segment of {0} bytes does not fit the 24-bit length field")]
    DataTooLong(usize),
    /// The additional header segments exceed 255 words.
    #[error("AHS of {0} bytes exceeds the 1020-byte limit")]
    AhsTooLong(usize),
    /// A field holds a value the receiver would refuse (the same rule the parser applies).
    #[error("{field} cannot be encoded: {reason}")]
    InvalidField {
        /// The RFC name of the field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A Logical Unit Number in its 8-byte SAM encoding (RFC 7143 §11.2.1.3 refers to SAM).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Lun(pub u64);

impl Lun {
    /// Encodes LUN `n` with SAM's peripheral device addressing (n < 256) or flat space
    /// addressing (n < 16384), the encodings Linux, VMware and Windows use.
    /// Returns `None` for `n >= 16384`.
    pub const fn from_index(n: u16) -> Option<Lun> {
        if n < 256 {
            Some(Lun((n as u64) << 48))
        } else if n < 0x4000 {
            Some(Lun(((0x4000 | n as u64) << 48) & 0xffff_0000_0000_0000))
        } else {
            None
        }
    }

    /// The LUN number for peripheral (bus 0) or flat space addressing with the other levels zero,
    /// else `None`.
    pub const fn index(self) -> Option<u16> {
        if self.0 & 0x0000_ffff_ffff_ffff != 0 {
            return None;
        }
        let first = (self.0 >> 48) as u16;
        match first >> 14 {
            0 if first >> 8 == 0 => Some(first & 0xff),
            1 => Some(first & 0x3fff),
            _ => None,
        }
    }
}

impl fmt::Debug for Lun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index() {
            Some(n) => write!(f, "Lun({n})"),
            None => write!(f, "Lun({:#018x})", self.0),
        }
    }
}

/// One iSCSI PDU.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is documented on its struct
pub enum Pdu {
    NopOut(NopOut),
    ScsiCommand(ScsiCommand),
    TaskMgmtRequest(TaskMgmtRequest),
    LoginRequest(LoginRequest),
    TextRequest(TextRequest),
    DataOut(DataOut),
    LogoutRequest(LogoutRequest),
    SnackRequest(SnackRequest),
    NopIn(NopIn),
    ScsiResponse(ScsiResponse),
    TaskMgmtResponse(TaskMgmtResponse),
    LoginResponse(LoginResponse),
    TextResponse(TextResponse),
    DataIn(DataIn),
    LogoutResponse(LogoutResponse),
    R2t(R2t),
    AsyncMessage(AsyncMessage),
    Reject(Reject),
}

/// Shared plumbing of the typed PDU structs.
pub(crate) trait PduBody: Sized {
    const OPCODE: Opcode;
    /// Decodes from the header, the AHS bytes and the (unpadded) data segment.
    fn decode(h: &Bhs, ahs: &Bytes, data: Bytes) -> Result<Self, PduError>;
    /// Fills the opcode-specific fields (the caller sets opcode, lengths).
    fn fill(&self, h: &mut Bhs);
    /// The data segment.
    fn data(&self) -> &Bytes;
    /// Appends the AHS bytes (only the SCSI Command has any).
    fn write_ahs(&self, _dst: &mut BytesMut) {}
    /// Length in bytes of the AHS this PDU writes.
    fn ahs_len(&self) -> usize {
        0
    }
    /// Refuses typed values that the parser would reject, so that what we send always parses.
    fn check(&self) -> Result<(), EncodeError> {
        Ok(())
    }
}

/// Shorthand for [`EncodeError::InvalidField`].
pub(crate) fn refuse(field: &'static str, reason: &'static str) -> Result<(), EncodeError> {
    Err(EncodeError::InvalidField { field, reason })
}

/// The data segment of PDUs that carry none.
pub(crate) static EMPTY: Bytes = Bytes::new();

/// Fails when a PDU that takes no data segment carries one.
pub(crate) fn no_data(opcode: Opcode, data: &Bytes) -> Result<(), PduError> {
    if data.is_empty() {
        Ok(())
    } else {
        Err(PduError::Unexpected {
            opcode,
            what: "data segment",
            len: data.len(),
        })
    }
}

macro_rules! dispatch {
    ($self:expr, $p:ident => $e:expr) => {
        match $self {
            Pdu::NopOut($p) => $e,
            Pdu::ScsiCommand($p) => $e,
            Pdu::TaskMgmtRequest($p) => $e,
            Pdu::LoginRequest($p) => $e,
            Pdu::TextRequest($p) => $e,
            Pdu::DataOut($p) => $e,
            Pdu::LogoutRequest($p) => $e,
            Pdu::SnackRequest($p) => $e,
            Pdu::NopIn($p) => $e,
            Pdu::ScsiResponse($p) => $e,
            Pdu::TaskMgmtResponse($p) => $e,
            Pdu::LoginResponse($p) => $e,
            Pdu::TextResponse($p) => $e,
            Pdu::DataIn($p) => $e,
            Pdu::LogoutResponse($p) => $e,
            Pdu::R2t($p) => $e,
            Pdu::AsyncMessage($p) => $e,
            Pdu::Reject($p) => $e,
        }
    };
}

fn opcode_of<T: PduBody>(_: &T) -> Opcode {
    T::OPCODE
}

impl Pdu {
    /// This PDU's opcode.
    pub fn opcode(&self) -> Opcode {
        dispatch!(self, p => opcode_of(p))
    }

    /// The data segment (without padding); empty for PDUs that carry none.
    pub fn data(&self) -> &Bytes {
        dispatch!(self, p => p.data())
    }

    /// The Initiator Task Tag field.
    pub fn itt(&self) -> crate::Itt {
        crate::Itt(self.bhs().itt)
    }

    /// The Basic Header Segment this PDU encodes to.
    pub fn bhs(&self) -> Bhs {
        let mut h = Bhs::new(self.opcode());
        dispatch!(self, p => {
            p.fill(&mut h);
            h.total_ahs_len = (p.ahs_len() / 4) as u8;
        });
        h.data_segment_len = self.data().len() as u32;
        h
    }

    /// Decodes a PDU from its parts: a parsed header, its AHS bytes, and its data segment without
    /// padding. Lengths in `h` are not re-checked against the slices (see [`Pdu::from_frame`]).
    pub fn decode(h: &Bhs, ahs: &Bytes, data: Bytes) -> Result<Pdu, PduError> {
        fn body<T: PduBody>(h: &Bhs, ahs: &Bytes, data: Bytes) -> Result<T, PduError> {
            if !ahs.is_empty() && T::OPCODE != Opcode::SCSI_COMMAND {
                return Err(PduError::Unexpected {
                    opcode: T::OPCODE,
                    what: "AHS",
                    len: ahs.len(),
                });
            }
            T::decode(h, ahs, data)
        }
        Ok(match h.opcode {
            Opcode::NOP_OUT => Pdu::NopOut(body(h, ahs, data)?),
            Opcode::SCSI_COMMAND => Pdu::ScsiCommand(body(h, ahs, data)?),
            Opcode::TASK_MGMT_REQUEST => Pdu::TaskMgmtRequest(body(h, ahs, data)?),
            Opcode::LOGIN_REQUEST => Pdu::LoginRequest(body(h, ahs, data)?),
            Opcode::TEXT_REQUEST => Pdu::TextRequest(body(h, ahs, data)?),
            Opcode::DATA_OUT => Pdu::DataOut(body(h, ahs, data)?),
            Opcode::LOGOUT_REQUEST => Pdu::LogoutRequest(body(h, ahs, data)?),
            Opcode::SNACK_REQUEST => Pdu::SnackRequest(body(h, ahs, data)?),
            Opcode::NOP_IN => Pdu::NopIn(body(h, ahs, data)?),
            Opcode::SCSI_RESPONSE => Pdu::ScsiResponse(body(h, ahs, data)?),
            Opcode::TASK_MGMT_RESPONSE => Pdu::TaskMgmtResponse(body(h, ahs, data)?),
            Opcode::LOGIN_RESPONSE => Pdu::LoginResponse(body(h, ahs, data)?),
            Opcode::TEXT_RESPONSE => Pdu::TextResponse(body(h, ahs, data)?),
            Opcode::DATA_IN => Pdu::DataIn(body(h, ahs, data)?),
            Opcode::LOGOUT_RESPONSE => Pdu::LogoutResponse(body(h, ahs, data)?),
            Opcode::R2T => Pdu::R2t(body(h, ahs, data)?),
            Opcode::ASYNC_MESSAGE => Pdu::AsyncMessage(body(h, ahs, data)?),
            Opcode::REJECT => Pdu::Reject(body(h, ahs, data)?),
            other => return Err(PduError::UnknownOpcode(other)),
        })
    }

    /// Decodes a PDU from a frame produced by the [`Deframer`](crate::Deframer).
    pub fn from_frame(frame: &crate::Frame) -> Result<Pdu, PduError> {
        let ahs = if frame.header.total_ahs_len == 0 {
            Bytes::new()
        } else {
            frame.ahs()
        };
        Pdu::decode(&frame.header, &ahs, frame.data())
    }

    /// Parses the first PDU of `buf` (digests as given) and returns it with the number of bytes it
    /// took. The data segment is a slice of `buf`. The data segment length is not bounded here
    /// beyond what `buf` holds; a stream reader should use the [`Deframer`](crate::Deframer),
    /// which enforces MaxRecvDataSegmentLength.
    pub fn parse(buf: &Bytes, digests: Digests) -> Result<(Pdu, usize), PduError> {
        let (h, data_start, total) = crate::deframer::locate(buf, digests)?;
        let ahs = if h.total_ahs_len == 0 {
            Bytes::new()
        } else {
            buf.slice(BHS_LEN..BHS_LEN + h.ahs_len())
        };
        let data = if h.data_segment_len == 0 {
            Bytes::new()
        } else {
            buf.slice(data_start..data_start + h.data_segment_len as usize)
        };
        Ok((Pdu::decode(&h, &ahs, data)?, total))
    }

    /// Bytes this PDU takes on the wire with the given digests.
    pub fn wire_len(&self, digests: Digests) -> usize {
        let ahs = dispatch!(self, p => p.ahs_len());
        let data = self.data().len();
        BHS_LEN
            + ahs
            + if digests.header { 4 } else { 0 }
            + pad4(data)
            + if digests.data && data > 0 { 4 } else { 0 }
    }

    fn check_lengths(&self) -> Result<(), EncodeError> {
        let data = self.data().len();
        if data > MAX_DATA_SEGMENT_LEN as usize {
            return Err(EncodeError::DataTooLong(data));
        }
        let ahs = dispatch!(self, p => p.ahs_len());
        if ahs > MAX_AHS_LEN {
            return Err(EncodeError::AhsTooLong(ahs));
        }
        dispatch!(self, p => p.check())
    }

    /// Appends the header part: BHS, AHS and (if negotiated) the header digest.
    pub fn encode_header(&self, dst: &mut BytesMut, digests: Digests) -> Result<(), EncodeError> {
        self.check_lengths()?;
        let start = dst.len();
        let ahs_len = dispatch!(self, p => p.ahs_len());
        dst.reserve(BHS_LEN + ahs_len + 4);
        self.bhs().write(dst);
        dispatch!(self, p => p.write_ahs(dst));
        debug_assert_eq!(dst.len() - start, BHS_LEN + ahs_len);
        if digests.header {
            let crc = crc32c(&dst[start..]);
            dst.put_slice(&crc32c_wire(crc));
        }
        Ok(())
    }

    /// Appends the whole PDU: header part, data segment, padding and (if negotiated and the data
    /// segment is not empty) the data digest.
    pub fn encode(&self, dst: &mut BytesMut, digests: Digests) -> Result<(), EncodeError> {
        dst.reserve(self.wire_len(digests));
        self.encode_header(dst, digests)?;
        let data = self.data();
        dst.put_slice(data);
        let (trailer, n) = data_trailer(data, digests.data);
        dst.put_slice(&trailer[..n]);
        Ok(())
    }

    /// The whole PDU as one buffer.
    pub fn to_bytes(&self, digests: Digests) -> Result<Bytes, EncodeError> {
        let mut b = BytesMut::with_capacity(self.wire_len(digests));
        self.encode(&mut b, digests)?;
        Ok(b.freeze())
    }
}

/// What follows a data segment on the wire: zero padding to a 4-byte boundary and, if
/// `data_digest` and the segment is not empty, the CRC32C over data and padding. Returns the
/// bytes and how many of them to send.
pub fn data_trailer(data: &[u8], data_digest: bool) -> ([u8; 8], usize) {
    let mut out = [0u8; 8];
    let pad = pad4(data.len()) - data.len();
    let mut n = pad;
    if data_digest && !data.is_empty() {
        let mut c = Crc32c::new();
        c.update(data);
        c.update(&out[..pad]);
        out[pad..pad + 4].copy_from_slice(&crc32c_wire(c.finish()));
        n += 4;
    }
    (out, n)
}

macro_rules! impl_from {
    ($($t:ident),*) => {$(
        impl From<$t> for Pdu {
            fn from(p: $t) -> Pdu {
                Pdu::$t(p)
            }
        }
    )*};
}
impl_from!(
    NopOut,
    ScsiCommand,
    TaskMgmtRequest,
    LoginRequest,
    TextRequest,
    DataOut,
    LogoutRequest,
    SnackRequest,
    NopIn,
    ScsiResponse,
    TaskMgmtResponse,
    LoginResponse,
    TextResponse,
    DataIn,
    LogoutResponse,
    R2t,
    AsyncMessage,
    Reject
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lun_encodings() {
        assert_eq!(Lun::from_index(0), Some(Lun(0)));
        assert_eq!(Lun::from_index(5).map(|l| l.0), Some(0x0005_0000_0000_0000));
        assert_eq!(
            Lun::from_index(300).map(|l| l.0),
            Some(0x412c_0000_0000_0000)
        );
        assert_eq!(Lun::from_index(0x4000), None);
        for n in [0u16, 1, 255, 256, 1000, 0x3fff] {
            assert_eq!(Lun::from_index(n).and_then(Lun::index), Some(n));
        }
        assert_eq!(Lun(0x0001_0000_0000_0001).index(), None);
        assert_eq!(Lun(0x8000_0000_0000_0000).index(), None);
    }

    #[test]
    fn trailer_padding_and_digest() {
        assert_eq!(data_trailer(b"", true).1, 0);
        assert_eq!(data_trailer(b"abcd", false).1, 0);
        let (t, n) = data_trailer(b"abcde", false);
        assert_eq!((n, &t[..3]), (3, &[0u8, 0, 0][..]));
        let (t, n) = data_trailer(b"abcde", true);
        assert_eq!(n, 7);
        let crc = crc32c(b"abcde\0\0\0");
        assert_eq!(&t[3..7], &crc32c_wire(crc));
    }

    #[test]
    fn encoder_refuses_what_the_parser_rejects() {
        let bad: Vec<Pdu> = vec![
            R2t::default().into(),
            DataIn {
                status: Some(ScsiStatus::GOOD),
                ..Default::default()
            }
            .into(),
            LoginRequest {
                transit: true,
                cont: true,
                ..Default::default()
            }
            .into(),
            TextResponse {
                final_: true,
                cont: true,
                ..Default::default()
            }
            .into(),
            TaskMgmtRequest {
                function: TaskMgmtFunction(0x85),
                ..Default::default()
            }
            .into(),
            ScsiCommand {
                extended_cdb: Some(Bytes::new()),
                ..Default::default()
            }
            .into(),
            AsyncMessage {
                event: AsyncEvent(7),
                ..Default::default()
            }
            .into(),
            ScsiResponse {
                overflow: true,
                underflow: true,
                ..Default::default()
            }
            .into(),
        ];
        for p in bad {
            let e = p.to_bytes(Digests::NONE).unwrap_err();
            assert!(matches!(e, EncodeError::InvalidField { .. }), "{p:?}: {e}");
        }
        let long = Pdu::from(NopIn {
            data: Bytes::from(vec![0u8; MAX_DATA_SEGMENT_LEN as usize + 1]),
            ..Default::default()
        });
        assert!(matches!(
            long.to_bytes(Digests::NONE),
            Err(EncodeError::DataTooLong(_))
        ));
    }

    #[test]
    fn reject_reasons() {
        assert_eq!(
            PduError::UnknownOpcode(Opcode(0x1c)).reject_reason(),
            Some(RejectReason::COMMAND_NOT_SUPPORTED)
        );
        assert_eq!(
            PduError::HeaderDigest {
                computed: 1,
                received: 2
            }
            .reject_reason(),
            None
        );
    }
}
