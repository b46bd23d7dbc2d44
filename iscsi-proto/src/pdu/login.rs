//! Login Request and Login Response (RFC 7143 §11.12, §11.13), ISID, TSIH and login status.

use bytes::Bytes;
use core::fmt;

use super::{Bhs, EncodeError, Opcode, PduBody, PduError, refuse};
use crate::serial::{CmdSn, Itt, StatSn};

/// Login stage (CSG / NSG field).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stage {
    /// 0: security negotiation.
    #[default]
    Security = 0,
    /// 1: login operational negotiation.
    Operational = 1,
    /// 3: full feature phase.
    FullFeature = 3,
}

impl Stage {
    /// Decodes the 2-bit field; 2 is reserved.
    pub const fn from_bits(v: u8) -> Option<Stage> {
        Some(match v {
            0 => Stage::Security,
            1 => Stage::Operational,
            3 => Stage::FullFeature,
            _ => return None,
        })
    }
}

/// Initiator Session ID, 6 bytes (RFC 7143 §11.12.5): type (2 bits), A (6), B (16), C (8), D (16).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Isid(pub [u8; 6]);

impl Isid {
    /// The T field (top two bits): 0 OUI, 1 EN, 2 random, 3 reserved.
    pub const fn kind(self) -> u8 {
        self.0[0] >> 6
    }

    /// Builds an ISID of type 2 (random) from 24 random bits in `random` and a 16-bit qualifier.
    pub const fn random(random: u32, qualifier: u16) -> Isid {
        let r = random.to_be_bytes();
        let q = qualifier.to_be_bytes();
        Isid([0x80, r[1], r[2], r[3], q[0], q[1]])
    }

    fn from_u64(v: u64) -> Isid {
        let b = v.to_be_bytes();
        Isid([b[0], b[1], b[2], b[3], b[4], b[5]])
    }

    fn to_u64(self) -> u64 {
        let b = self.0;
        u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], 0, 0])
    }
}

impl fmt::Debug for Isid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Isid(")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

/// Target Session Identifying Handle. Zero in a Login Request starts a new session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Tsih(pub u16);

impl Tsih {
    /// The value an initiator sends to create a new session.
    pub const NEW_SESSION: Tsih = Tsih(0);
}

/// Login status: class and detail (RFC 7143 §11.13.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct LoginStatus {
    /// Status-Class: 0 success, 1 redirection, 2 initiator error, 3 target error.
    pub class: u8,
    /// Status-Detail.
    pub detail: u8,
}

macro_rules! statuses {
    ($($(#[$d:meta])* $name:ident = ($c:expr, $de:expr);)*) => {
        impl LoginStatus {$(
            $(#[$d])*
            pub const $name: LoginStatus = LoginStatus { class: $c, detail: $de };
        )*}
    };
}

statuses! {
    /// 0x0000: login is proceeding OK.
    SUCCESS = (0, 0);
    /// 0x0101: the target has moved temporarily (TargetAddress given).
    TARGET_MOVED_TEMPORARILY = (1, 1);
    /// 0x0102: the target has moved permanently (TargetAddress given).
    TARGET_MOVED_PERMANENTLY = (1, 2);
    /// 0x0200: miscellaneous initiator error.
    INITIATOR_ERROR = (2, 0);
    /// 0x0201: authentication failed.
    AUTHENTICATION_FAILURE = (2, 1);
    /// 0x0202: the initiator is not allowed access to the target.
    AUTHORIZATION_FAILURE = (2, 2);
    /// 0x0203: the requested target name does not exist here.
    NOT_FOUND = (2, 3);
    /// 0x0204: the target has been removed.
    TARGET_REMOVED = (2, 4);
    /// 0x0205: unsupported version.
    UNSUPPORTED_VERSION = (2, 5);
    /// 0x0206: too many connections on this session.
    TOO_MANY_CONNECTIONS = (2, 6);
    /// 0x0207: a required key was not sent.
    MISSING_PARAMETER = (2, 7);
    /// 0x0208: the target does not support session spanning to this connection.
    CANT_INCLUDE_IN_SESSION = (2, 8);
    /// 0x0209: the session type is not supported.
    SESSION_TYPE_NOT_SUPPORTED = (2, 9);
    /// 0x020a: attempt to add a connection to a session that does not exist.
    SESSION_DOES_NOT_EXIST = (2, 0x0a);
    /// 0x020b: invalid request type during login.
    INVALID_DURING_LOGIN = (2, 0x0b);
    /// 0x0300: target hardware or software error.
    TARGET_ERROR = (3, 0);
    /// 0x0301: the iSCSI service or target is not currently operational.
    SERVICE_UNAVAILABLE = (3, 1);
    /// 0x0302: the target has insufficient resources.
    OUT_OF_RESOURCES = (3, 2);
}

impl LoginStatus {
    /// Whether the login may proceed (class 0).
    pub const fn is_success(self) -> bool {
        self.class == 0
    }
}

fn stage_field(opcode: Opcode, field: &'static str, v: u8) -> Result<Stage, PduError> {
    Stage::from_bits(v).ok_or(PduError::InvalidField {
        opcode,
        field,
        offset: 1,
        value: v as u32,
    })
}

/// Decodes T, C, CSG and NSG. NSG is reserved (and ignored) when T is 0.
fn decode_stages(opcode: Opcode, flags: u8) -> Result<(bool, bool, Stage, Stage), PduError> {
    let transit = flags & 0x80 != 0;
    let cont = flags & 0x40 != 0;
    if transit && cont {
        return Err(PduError::InvalidField {
            opcode,
            field: "T and C bits",
            offset: 1,
            value: flags as u32,
        });
    }
    let csg = stage_field(opcode, "CSG", (flags >> 2) & 3)?;
    let nsg = if transit {
        stage_field(opcode, "NSG", flags & 3)?
    } else {
        Stage::from_bits(flags & 3).unwrap_or(csg)
    };
    Ok((transit, cont, csg, nsg))
}

fn encode_stages(transit: bool, cont: bool, csg: Stage, nsg: Stage) -> u8 {
    (transit as u8) << 7 | (cont as u8) << 6 | (csg as u8) << 2 | nsg as u8
}

/// The encoder's side of the rule that the two bits are never both set.
fn check_transit_continue(first: bool, cont: bool) -> Result<(), EncodeError> {
    if first && cont {
        return refuse("T and C bits", "both set");
    }
    Ok(())
}

/// Login Request (always immediate).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LoginRequest {
    /// T bit: the initiator is ready to move to `nsg`.
    pub transit: bool,
    /// C bit: the text continues in the next PDU.
    pub cont: bool,
    /// Current stage.
    pub csg: Stage,
    /// Next stage (meaningful when `transit`).
    pub nsg: Stage,
    /// Version-max.
    pub version_max: u8,
    /// Version-min.
    pub version_min: u8,
    /// ISID.
    pub isid: Isid,
    /// TSIH (0 for a new session).
    pub tsih: Tsih,
    /// Initiator Task Tag.
    pub itt: Itt,
    /// Connection ID.
    pub cid: u16,
    /// CmdSN.
    pub cmd_sn: CmdSn,
    /// ExpStatSN.
    pub exp_stat_sn: StatSn,
    /// Text (key=value pairs).
    pub data: Bytes,
}

impl PduBody for LoginRequest {
    const OPCODE: Opcode = Opcode::LOGIN_REQUEST;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        let (transit, cont, csg, nsg) = decode_stages(Self::OPCODE, h.flags)?;
        Ok(LoginRequest {
            transit,
            cont,
            csg,
            nsg,
            version_max: h.b2,
            version_min: h.b3,
            isid: Isid::from_u64(h.lun),
            tsih: Tsih(h.lun as u16),
            itt: Itt(h.itt),
            cid: (h.w[0] >> 16) as u16,
            cmd_sn: CmdSn(h.w[1]),
            exp_stat_sn: StatSn(h.w[2]),
            data,
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.immediate = true;
        h.flags = encode_stages(self.transit, self.cont, self.csg, self.nsg);
        h.b2 = self.version_max;
        h.b3 = self.version_min;
        h.lun = self.isid.to_u64() | self.tsih.0 as u64;
        h.itt = self.itt.0;
        h.w[0] = (self.cid as u32) << 16;
        h.w[1] = self.cmd_sn.0;
        h.w[2] = self.exp_stat_sn.0;
    }

    fn check(&self) -> Result<(), EncodeError> {
        check_transit_continue(self.transit, self.cont)
    }

    fn data(&self) -> &Bytes {
        &self.data
    }
}

/// Login Response.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct LoginResponse {
    /// T bit: the target agrees to move to `nsg`.
    pub transit: bool,
    /// C bit: the text continues in the next PDU.
    pub cont: bool,
    /// Current stage.
    pub csg: Stage,
    /// Next stage (meaningful when `transit`).
    pub nsg: Stage,
    /// Version-max.
    pub version_max: u8,
    /// Version-active.
    pub version_active: u8,
    /// ISID (echoed).
    pub isid: Isid,
    /// TSIH (set by the target in the final response).
    pub tsih: Tsih,
    /// Initiator Task Tag (echoed).
    pub itt: Itt,
    /// StatSN.
    pub stat_sn: StatSn,
    /// ExpCmdSN.
    pub exp_cmd_sn: CmdSn,
    /// MaxCmdSN.
    pub max_cmd_sn: CmdSn,
    /// Status class and detail.
    pub status: LoginStatus,
    /// Text (key=value pairs).
    pub data: Bytes,
}

impl PduBody for LoginResponse {
    const OPCODE: Opcode = Opcode::LOGIN_RESPONSE;

    fn decode(h: &Bhs, _ahs: &Bytes, data: Bytes) -> Result<Self, PduError> {
        let (transit, cont, csg, nsg) = decode_stages(Self::OPCODE, h.flags)?;
        Ok(LoginResponse {
            transit,
            cont,
            csg,
            nsg,
            version_max: h.b2,
            version_active: h.b3,
            isid: Isid::from_u64(h.lun),
            tsih: Tsih(h.lun as u16),
            itt: Itt(h.itt),
            stat_sn: StatSn(h.w[1]),
            exp_cmd_sn: CmdSn(h.w[2]),
            max_cmd_sn: CmdSn(h.w[3]),
            status: LoginStatus {
                class: (h.w[4] >> 24) as u8,
                detail: (h.w[4] >> 16) as u8,
            },
            data,
        })
    }

    fn fill(&self, h: &mut Bhs) {
        h.flags = encode_stages(self.transit, self.cont, self.csg, self.nsg);
        h.b2 = self.version_max;
        h.b3 = self.version_active;
        h.lun = self.isid.to_u64() | self.tsih.0 as u64;
        h.itt = self.itt.0;
        h.w[1] = self.stat_sn.0;
        h.w[2] = self.exp_cmd_sn.0;
        h.w[3] = self.max_cmd_sn.0;
        h.w[4] = (self.status.class as u32) << 24 | (self.status.detail as u32) << 16;
    }

    fn check(&self) -> Result<(), EncodeError> {
        check_transit_continue(self.transit, self.cont)
    }

    fn data(&self) -> &Bytes {
        &self.data
    }
}
