//! The table of every standard text key: RFC 7143 §12 (security keys) and §13 (operational
//! keys, including `TaskReporting` from RFC 5048 and `iSCSIProtocolLevel` from RFC 7144) and
//! RFC 7145 §6 (iSER keys).
//!
//! Each [`KeyDef`] records what the RFC's key description says: the value type and its range,
//! the default, who may send the key, when it may be used (leading connection only, initial
//! login of each connection, any time, full feature phase only), in which login stage it
//! belongs, its scope, and the result function that combines the two sides' values.
//!
//! Key names are case-sensitive (RFC 7143 §6.1). Names that are not in the table are
//! classified by [`classify`]: `X-` private extension keys, `X#` public extension keys, and
//! anything else, all of which the negotiator answers with `NotUnderstood` unless the local
//! configuration registers them.

/// Every key known to this crate.
///
/// Security keys (`AuthMethod`, `CHAP_*`, `SRP_*`, `KRB_*`, `TargetAuth`) are recognised so that
/// they are checked for stage and sender and handed to an authenticator; the negotiator does
/// not negotiate them itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Key {
    /// `AuthMethod` (RFC 7143 §12.1).
    AuthMethod,
    /// `CHAP_A`: list of CHAP algorithms (RFC 7143 §12.1.3).
    ChapA,
    /// `CHAP_I`: CHAP identifier.
    ChapI,
    /// `CHAP_C`: CHAP challenge (large binary value).
    ChapC,
    /// `CHAP_N`: CHAP name (text).
    ChapN,
    /// `CHAP_R`: CHAP response (large binary value).
    ChapR,
    /// `SRP_U`: SRP user name (RFC 7143 §12.1.2).
    SrpU,
    /// `SRP_GROUP`: list of SRP groups.
    SrpGroup,
    /// `SRP_A`.
    SrpA,
    /// `SRP_B`.
    SrpB,
    /// `SRP_M`.
    SrpM,
    /// `SRP_HM`.
    SrpHm,
    /// `SRP_s`: SRP salt.
    SrpS,
    /// `TargetAuth`: whether the initiator asks for mutual SRP authentication.
    TargetAuth,
    /// `KRB_AP_REQ` (RFC 7143 §12.1.1).
    KrbApReq,
    /// `KRB_AP_REP`.
    KrbApRep,
    /// `HeaderDigest` (RFC 7143 §13.1).
    HeaderDigest,
    /// `DataDigest` (RFC 7143 §13.1).
    DataDigest,
    /// `MaxConnections` (RFC 7143 §13.2).
    MaxConnections,
    /// `SendTargets` (RFC 7143 §13.3).
    SendTargets,
    /// `TargetName` (RFC 7143 §13.4).
    TargetName,
    /// `InitiatorName` (RFC 7143 §13.5).
    InitiatorName,
    /// `TargetAlias` (RFC 7143 §13.6).
    TargetAlias,
    /// `InitiatorAlias` (RFC 7143 §13.7).
    InitiatorAlias,
    /// `TargetAddress` (RFC 7143 §13.8).
    TargetAddress,
    /// `TargetPortalGroupTag` (RFC 7143 §13.9).
    TargetPortalGroupTag,
    /// `InitialR2T` (RFC 7143 §13.10).
    InitialR2T,
    /// `ImmediateData` (RFC 7143 §13.11).
    ImmediateData,
    /// `MaxRecvDataSegmentLength` (RFC 7143 §13.12).
    MaxRecvDataSegmentLength,
    /// `MaxBurstLength` (RFC 7143 §13.13).
    MaxBurstLength,
    /// `FirstBurstLength` (RFC 7143 §13.14).
    FirstBurstLength,
    /// `DefaultTime2Wait` (RFC 7143 §13.15).
    DefaultTime2Wait,
    /// `DefaultTime2Retain` (RFC 7143 §13.16).
    DefaultTime2Retain,
    /// `MaxOutstandingR2T` (RFC 7143 §13.17).
    MaxOutstandingR2T,
    /// `DataPDUInOrder` (RFC 7143 §13.18).
    DataPduInOrder,
    /// `DataSequenceInOrder` (RFC 7143 §13.19).
    DataSequenceInOrder,
    /// `ErrorRecoveryLevel` (RFC 7143 §13.20).
    ErrorRecoveryLevel,
    /// `SessionType` (RFC 7143 §13.21).
    SessionType,
    /// `IFMarker`: obsolete (RFC 7143 §13, obsoleted keys), answered with `Reject`.
    IfMarker,
    /// `OFMarker`: obsolete (RFC 7143 §13, obsoleted keys), answered with `Reject`.
    OfMarker,
    /// `IFMarkInt`: obsolete (RFC 7143 §13, obsoleted keys), answered with `Reject`.
    IfMarkInt,
    /// `OFMarkInt`: obsolete (RFC 7143 §13, obsoleted keys), answered with `Reject`.
    OfMarkInt,
    /// `iSCSIProtocolLevel` (RFC 7143 §13, RFC 7144).
    IscsiProtocolLevel,
    /// `TaskReporting` (RFC 7143 §13, from RFC 5048).
    TaskReporting,
    /// `RDMAExtensions` (RFC 7145 §6).
    RdmaExtensions,
    /// `TargetRecvDataSegmentLength` (RFC 7145 §6).
    TargetRecvDataSegmentLength,
    /// `InitiatorRecvDataSegmentLength` (RFC 7145 §6).
    InitiatorRecvDataSegmentLength,
    /// `MaxOutstandingUnexpectedPDUs` (RFC 7145 §6).
    MaxOutstandingUnexpectedPdus,
}

/// The syntax of a key's value (RFC 7143 §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueType {
    /// `Yes` or `No`.
    Boolean,
    /// A numerical value (decimal, `0x` hex or `0b` base64) within `min..=max`.
    Numerical {
        /// Smallest valid value.
        min: u64,
        /// Largest valid value.
        max: u64,
    },
    /// Like [`ValueType::Numerical`], but `0` is also valid (and means "no limit").
    NumericalOrZero {
        /// Smallest valid non-zero value.
        min: u64,
        /// Largest valid value.
        max: u64,
    },
    /// A numeric range `a~b` (only the obsolete marker interval keys).
    NumericRange {
        /// Smallest valid bound.
        min: u64,
        /// Largest valid bound.
        max: u64,
    },
    /// A comma-separated list of values in order of preference; the listed ones are those
    /// defined by the RFC (others may appear and are ignored by a responder).
    ListOf(&'static [&'static str]),
    /// Exactly one of the listed values.
    OneOf(&'static [&'static str]),
    /// An iSCSI name (`iqn.`, `eui.`, `naa.`), at most 223 bytes (RFC 7143 §4.2.7.1).
    IscsiName,
    /// A UTF-8 local name (aliases).
    LocalName,
    /// A text value (addresses, names of CHAP users, `SendTargets` argument, ...).
    Text,
    /// A large binary value: hex (`0x`) or base64 (`0b`) encoded, longer than 64 bits.
    LargeBinary,
}

impl ValueType {
    /// Whether values of this type may be longer than the 255-byte simple-value limit of
    /// RFC 7143 §6.1 (lists, whose 255-byte limit applies to each element, and large binary
    /// values).
    pub fn allows_long_values(self) -> bool {
        matches!(self, ValueType::ListOf(_) | ValueType::LargeBinary)
    }
}

/// When a key may be used ("Use" in the RFC's key descriptions, RFC 7143 §13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// LO: only during the login of the leading connection of a session.
    LeadingOnly,
    /// IO: only during the login of each connection.
    InitialOnly,
    /// ALL: during login and in full feature phase (Text requests).
    All,
    /// FFPO: only in full feature phase.
    FullFeatureOnly,
}

/// Which side may send a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Senders {
    /// Only the initiator.
    Initiator,
    /// Only the target.
    Target,
    /// Both sides.
    Both,
}

/// The scope of a key's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// SW: one value for the whole session.
    SessionWide,
    /// CO: one value per connection.
    ConnectionOnly,
}

/// In which part of the conversation a key belongs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Security negotiation stage of the login only (authentication keys).
    Security,
    /// Operational negotiation stage of the login (and full feature phase when its
    /// [`Usage`] is [`Usage::All`]).
    Operational,
    /// Declarative key that may appear in either login stage (names, aliases, ...).
    AnyStage,
    /// Full feature phase only (`SendTargets`).
    FullFeature,
}

/// How the negotiated value is computed from the offer and the answer (RFC 7143 §6.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultFunction {
    /// Numerical minimum of the two values.
    Minimum,
    /// Numerical maximum of the two values.
    Maximum,
    /// Boolean OR.
    Or,
    /// Boolean AND.
    And,
    /// The first value of the offerer's list that the responder supports.
    List,
    /// Declarative: each side states its own value and it is not answered.
    Declarative,
    /// Not negotiated by the generic rules (security keys, `SendTargets`, obsolete keys).
    None,
}

/// Conditions under which a key is irrelevant ("Irrelevant when" in the RFC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IrrelevantWhen {
    /// Irrelevant when `SessionType=Discovery`.
    pub discovery: bool,
    /// Irrelevant when `RDMAExtensions=Yes` (RFC 7145 §6).
    pub rdma_yes: bool,
    /// Irrelevant when `RDMAExtensions=No` (RFC 7145 iSER-only keys).
    pub rdma_no: bool,
    /// Irrelevant when `InitialR2T=Yes` and `ImmediateData=No` (`FirstBurstLength`).
    pub no_unsolicited_data: bool,
}

impl IrrelevantWhen {
    const NEVER: IrrelevantWhen = IrrelevantWhen {
        discovery: false,
        rdma_yes: false,
        rdma_no: false,
        no_unsolicited_data: false,
    };
    const DISCOVERY: IrrelevantWhen = IrrelevantWhen {
        discovery: true,
        ..IrrelevantWhen::NEVER
    };
    const RDMA_YES: IrrelevantWhen = IrrelevantWhen {
        rdma_yes: true,
        ..IrrelevantWhen::NEVER
    };
    const RDMA_NO: IrrelevantWhen = IrrelevantWhen {
        discovery: true,
        rdma_no: true,
        ..IrrelevantWhen::NEVER
    };
}

/// Everything the RFCs say about one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyDef {
    /// The key.
    pub key: Key,
    /// The key name as sent on the wire.
    pub name: &'static str,
    /// The syntax and range of its value.
    pub value_type: ValueType,
    /// The default value, in wire form, when the RFC defines one.
    pub default: Option<&'static str>,
    /// When the key may be used.
    pub usage: Usage,
    /// Who may send it.
    pub senders: Senders,
    /// Session-wide or per connection.
    pub scope: Scope,
    /// Login stage / phase in which it belongs.
    pub phase: Phase,
    /// How the result is computed.
    pub result: ResultFunction,
    /// When the key is irrelevant.
    pub irrelevant_when: IrrelevantWhen,
    /// Obsoleted by RFC 7143 (markers): answered with `Reject`, never offered.
    pub obsolete: bool,
    /// Where the key is defined.
    pub reference: &'static str,
}

impl KeyDef {
    /// Whether this is an authentication key handed to an authenticator.
    pub fn is_security(&self) -> bool {
        self.phase == Phase::Security
    }

    /// Whether the key is declarative (not answered).
    pub fn is_declarative(&self) -> bool {
        self.result == ResultFunction::Declarative
    }

    /// The longest value accepted for this key, given the simple-value bound and the bound
    /// for long values (lists and large binary values).
    pub fn max_value_len(&self, simple: usize, long: usize) -> usize {
        if self.value_type.allows_long_values() {
            long
        } else {
            simple
        }
    }

    /// Whether the initiator may send this key.
    pub fn may_be_sent_by_initiator(&self) -> bool {
        matches!(self.senders, Initiator | Both)
    }

    /// Whether the target may send this key.
    pub fn may_be_sent_by_target(&self) -> bool {
        matches!(self.senders, Target | Both)
    }
}

/// Largest MaxRecvDataSegmentLength and burst length: 2^24 - 1.
pub const MAX_DATA_SEGMENT_LIMIT: u64 = (1 << 24) - 1;

const DIGESTS: &[&str] = &["CRC32C", "None"];
const AUTH_METHODS: &[&str] = &["KRB5", "SRP", "CHAP", "None"];
const SESSION_TYPES: &[&str] = &["Discovery", "Normal"];
const TASK_REPORTING: &[&str] = &["RFC3720", "ResponseFence", "FastAbort"];
const CHAP_ALGORITHMS: &[&str] = &["5", "6", "7", "8"];
const SRP_GROUPS: &[&str] = &[
    "SRP-768",
    "SRP-1024",
    "SRP-1280",
    "SRP-1536",
    "SRP-2048",
    "MODP-3072",
    "MODP-4096",
    "MODP-6144",
    "MODP-8192",
];

const fn num(min: u64, max: u64) -> ValueType {
    ValueType::Numerical { min, max }
}

/// Builds a security key definition: used during the security stage of each connection's
/// login, result computed by the authenticator.
const fn security(key: Key, name: &'static str, value_type: ValueType, senders: Senders) -> KeyDef {
    KeyDef {
        key,
        name,
        value_type,
        default: None,
        usage: Usage::InitialOnly,
        senders,
        scope: Scope::ConnectionOnly,
        phase: Phase::Security,
        result: ResultFunction::None,
        irrelevant_when: IrrelevantWhen::NEVER,
        obsolete: false,
        reference: "RFC 7143 §12.1",
    }
}

/// Builds an operational key definition.
#[allow(clippy::too_many_arguments)]
const fn op(
    key: Key,
    name: &'static str,
    value_type: ValueType,
    default: Option<&'static str>,
    usage: Usage,
    senders: Senders,
    scope: Scope,
    phase: Phase,
    result: ResultFunction,
    irrelevant_when: IrrelevantWhen,
    reference: &'static str,
) -> KeyDef {
    KeyDef {
        key,
        name,
        value_type,
        default,
        usage,
        senders,
        scope,
        phase,
        result,
        irrelevant_when,
        obsolete: false,
        reference,
    }
}

const fn obsolete(key: Key, name: &'static str, value_type: ValueType) -> KeyDef {
    KeyDef {
        key,
        name,
        value_type,
        default: None,
        usage: IO,
        senders: Both,
        scope: CO,
        phase: Operational,
        result: ResultFunction::None,
        irrelevant_when: IrrelevantWhen::NEVER,
        obsolete: true,
        reference: "RFC 7143 §13, obsoleted keys",
    }
}

use Phase::{AnyStage, FullFeature, Operational};
use ResultFunction as R;
use Scope::{ConnectionOnly as CO, SessionWide as SW};
use Senders::{Both, Initiator, Target};
use Usage::{All, FullFeatureOnly, InitialOnly as IO, LeadingOnly as LO};

/// The key table, in the order of [`Key`]'s variants.
pub static KEY_TABLE: &[KeyDef] = &[
    security(
        Key::AuthMethod,
        "AuthMethod",
        ValueType::ListOf(AUTH_METHODS),
        Both,
    ),
    security(
        Key::ChapA,
        "CHAP_A",
        ValueType::ListOf(CHAP_ALGORITHMS),
        Both,
    ),
    security(Key::ChapI, "CHAP_I", num(0, 255), Both),
    security(Key::ChapC, "CHAP_C", ValueType::LargeBinary, Both),
    security(Key::ChapN, "CHAP_N", ValueType::Text, Both),
    security(Key::ChapR, "CHAP_R", ValueType::LargeBinary, Both),
    security(Key::SrpU, "SRP_U", ValueType::Text, Initiator),
    security(
        Key::SrpGroup,
        "SRP_GROUP",
        ValueType::ListOf(SRP_GROUPS),
        Target,
    ),
    security(Key::SrpA, "SRP_A", ValueType::LargeBinary, Initiator),
    security(Key::SrpB, "SRP_B", ValueType::LargeBinary, Target),
    security(Key::SrpM, "SRP_M", ValueType::LargeBinary, Initiator),
    security(Key::SrpHm, "SRP_HM", ValueType::LargeBinary, Target),
    security(Key::SrpS, "SRP_s", ValueType::LargeBinary, Target),
    security(Key::TargetAuth, "TargetAuth", ValueType::Boolean, Initiator),
    security(
        Key::KrbApReq,
        "KRB_AP_REQ",
        ValueType::LargeBinary,
        Initiator,
    ),
    security(Key::KrbApRep, "KRB_AP_REP", ValueType::LargeBinary, Target),
    op(
        Key::HeaderDigest,
        "HeaderDigest",
        ValueType::ListOf(DIGESTS),
        Some("None"),
        IO,
        Both,
        CO,
        Operational,
        R::List,
        IrrelevantWhen::RDMA_YES,
        "RFC 7143 §13.1, RFC 7145 §6",
    ),
    op(
        Key::DataDigest,
        "DataDigest",
        ValueType::ListOf(DIGESTS),
        Some("None"),
        IO,
        Both,
        CO,
        Operational,
        R::List,
        IrrelevantWhen::RDMA_YES,
        "RFC 7143 §13.1, RFC 7145 §6",
    ),
    op(
        Key::MaxConnections,
        "MaxConnections",
        num(1, 65535),
        Some("1"),
        LO,
        Both,
        SW,
        Operational,
        R::Minimum,
        IrrelevantWhen::DISCOVERY,
        "RFC 7143 §13.2",
    ),
    op(
        Key::SendTargets,
        "SendTargets",
        ValueType::Text,
        None,
        FullFeatureOnly,
        Initiator,
        SW,
        FullFeature,
        R::None,
        IrrelevantWhen::NEVER,
        "RFC 7143 §13.3",
    ),
    op(
        Key::TargetName,
        "TargetName",
        ValueType::IscsiName,
        None,
        IO,
        Both,
        SW,
        AnyStage,
        R::Declarative,
        IrrelevantWhen::NEVER,
        "RFC 7143 §13.4",
    ),
    op(
        Key::InitiatorName,
        "InitiatorName",
        ValueType::IscsiName,
        None,
        IO,
        Initiator,
        SW,
        AnyStage,
        R::Declarative,
        IrrelevantWhen::NEVER,
        "RFC 7143 §13.5",
    ),
    op(
        Key::TargetAlias,
        "TargetAlias",
        ValueType::LocalName,
        None,
        All,
        Target,
        SW,
        AnyStage,
        R::Declarative,
        IrrelevantWhen::NEVER,
        "RFC 7143 §13.6",
    ),
    op(
        Key::InitiatorAlias,
        "InitiatorAlias",
        ValueType::LocalName,
        None,
        All,
        Initiator,
        SW,
        AnyStage,
        R::Declarative,
        IrrelevantWhen::NEVER,
        "RFC 7143 §13.7",
    ),
    op(
        Key::TargetAddress,
        "TargetAddress",
        ValueType::Text,
        None,
        All,
        Target,
        SW,
        AnyStage,
        R::Declarative,
        IrrelevantWhen::NEVER,
        "RFC 7143 §13.8",
    ),
    op(
        Key::TargetPortalGroupTag,
        "TargetPortalGroupTag",
        num(0, 65535),
        None,
        IO,
        Target,
        SW,
        AnyStage,
        R::Declarative,
        IrrelevantWhen::NEVER,
        "RFC 7143 §13.9",
    ),
    op(
        Key::InitialR2T,
        "InitialR2T",
        ValueType::Boolean,
        Some("Yes"),
        LO,
        Both,
        SW,
        Operational,
        R::Or,
        IrrelevantWhen::DISCOVERY,
        "RFC 7143 §13.10",
    ),
    op(
        Key::ImmediateData,
        "ImmediateData",
        ValueType::Boolean,
        Some("Yes"),
        LO,
        Both,
        SW,
        Operational,
        R::And,
        IrrelevantWhen::DISCOVERY,
        "RFC 7143 §13.11",
    ),
    op(
        Key::MaxRecvDataSegmentLength,
        "MaxRecvDataSegmentLength",
        num(512, MAX_DATA_SEGMENT_LIMIT),
        Some("8192"),
        All,
        Both,
        CO,
        Operational,
        R::Declarative,
        IrrelevantWhen::RDMA_YES,
        "RFC 7143 §13.12, RFC 7145 §6",
    ),
    op(
        Key::MaxBurstLength,
        "MaxBurstLength",
        num(512, MAX_DATA_SEGMENT_LIMIT),
        Some("262144"),
        LO,
        Both,
        SW,
        Operational,
        R::Minimum,
        IrrelevantWhen::DISCOVERY,
        "RFC 7143 §13.13",
    ),
    op(
        Key::FirstBurstLength,
        "FirstBurstLength",
        num(512, MAX_DATA_SEGMENT_LIMIT),
        Some("65536"),
        LO,
        Both,
        SW,
        Operational,
        R::Minimum,
        IrrelevantWhen {
            discovery: true,
            rdma_yes: false,
            rdma_no: false,
            no_unsolicited_data: true,
        },
        "RFC 7143 §13.14",
    ),
    op(
        Key::DefaultTime2Wait,
        "DefaultTime2Wait",
        num(0, 3600),
        Some("2"),
        LO,
        Both,
        SW,
        Operational,
        R::Maximum,
        IrrelevantWhen::NEVER,
        "RFC 7143 §13.15",
    ),
    op(
        Key::DefaultTime2Retain,
        "DefaultTime2Retain",
        num(0, 3600),
        Some("20"),
        LO,
        Both,
        SW,
        Operational,
        R::Minimum,
        IrrelevantWhen::NEVER,
        "RFC 7143 §13.16",
    ),
    op(
        Key::MaxOutstandingR2T,
        "MaxOutstandingR2T",
        num(1, 65535),
        Some("1"),
        LO,
        Both,
        SW,
        Operational,
        R::Minimum,
        IrrelevantWhen::DISCOVERY,
        "RFC 7143 §13.17",
    ),
    op(
        Key::DataPduInOrder,
        "DataPDUInOrder",
        ValueType::Boolean,
        Some("Yes"),
        LO,
        Both,
        SW,
        Operational,
        R::Or,
        IrrelevantWhen::DISCOVERY,
        "RFC 7143 §13.18",
    ),
    op(
        Key::DataSequenceInOrder,
        "DataSequenceInOrder",
        ValueType::Boolean,
        Some("Yes"),
        LO,
        Both,
        SW,
        Operational,
        R::Or,
        IrrelevantWhen::DISCOVERY,
        "RFC 7143 §13.19",
    ),
    op(
        Key::ErrorRecoveryLevel,
        "ErrorRecoveryLevel",
        num(0, 2),
        Some("0"),
        LO,
        Both,
        SW,
        Operational,
        R::Minimum,
        IrrelevantWhen::NEVER,
        "RFC 7143 §13.20",
    ),
    op(
        Key::SessionType,
        "SessionType",
        ValueType::OneOf(SESSION_TYPES),
        Some("Normal"),
        LO,
        Initiator,
        SW,
        AnyStage,
        R::Declarative,
        IrrelevantWhen::NEVER,
        "RFC 7143 §13.21",
    ),
    obsolete(Key::IfMarker, "IFMarker", ValueType::Boolean),
    obsolete(Key::OfMarker, "OFMarker", ValueType::Boolean),
    obsolete(
        Key::IfMarkInt,
        "IFMarkInt",
        ValueType::NumericRange { min: 1, max: 65535 },
    ),
    obsolete(
        Key::OfMarkInt,
        "OFMarkInt",
        ValueType::NumericRange { min: 1, max: 65535 },
    ),
    op(
        Key::IscsiProtocolLevel,
        "iSCSIProtocolLevel",
        num(0, 31),
        Some("1"),
        LO,
        Both,
        SW,
        Operational,
        R::Minimum,
        IrrelevantWhen::DISCOVERY,
        "RFC 7143 §13, RFC 7144",
    ),
    op(
        Key::TaskReporting,
        "TaskReporting",
        ValueType::ListOf(TASK_REPORTING),
        Some("RFC3720"),
        LO,
        Both,
        SW,
        Operational,
        R::List,
        IrrelevantWhen::DISCOVERY,
        "RFC 7143 §13 (from RFC 5048)",
    ),
    op(
        Key::RdmaExtensions,
        "RDMAExtensions",
        ValueType::Boolean,
        Some("No"),
        LO,
        Both,
        SW,
        Operational,
        R::And,
        IrrelevantWhen::DISCOVERY,
        "RFC 7145 §6",
    ),
    op(
        Key::TargetRecvDataSegmentLength,
        "TargetRecvDataSegmentLength",
        num(512, MAX_DATA_SEGMENT_LIMIT),
        Some("8192"),
        IO,
        Both,
        CO,
        Operational,
        R::Minimum,
        IrrelevantWhen::RDMA_NO,
        "RFC 7145 §6",
    ),
    op(
        Key::InitiatorRecvDataSegmentLength,
        "InitiatorRecvDataSegmentLength",
        num(512, MAX_DATA_SEGMENT_LIMIT),
        Some("8192"),
        IO,
        Both,
        CO,
        Operational,
        R::Minimum,
        IrrelevantWhen::RDMA_NO,
        "RFC 7145 §6",
    ),
    op(
        Key::MaxOutstandingUnexpectedPdus,
        "MaxOutstandingUnexpectedPDUs",
        ValueType::NumericalOrZero {
            min: 2,
            max: u32::MAX as u64,
        },
        Some("0"),
        LO,
        Both,
        SW,
        Operational,
        R::Declarative,
        IrrelevantWhen::RDMA_NO,
        "RFC 7145 §6",
    ),
];

impl Key {
    /// Every key, in table order.
    pub const ALL: [Key; 48] = [
        Key::AuthMethod,
        Key::ChapA,
        Key::ChapI,
        Key::ChapC,
        Key::ChapN,
        Key::ChapR,
        Key::SrpU,
        Key::SrpGroup,
        Key::SrpA,
        Key::SrpB,
        Key::SrpM,
        Key::SrpHm,
        Key::SrpS,
        Key::TargetAuth,
        Key::KrbApReq,
        Key::KrbApRep,
        Key::HeaderDigest,
        Key::DataDigest,
        Key::MaxConnections,
        Key::SendTargets,
        Key::TargetName,
        Key::InitiatorName,
        Key::TargetAlias,
        Key::InitiatorAlias,
        Key::TargetAddress,
        Key::TargetPortalGroupTag,
        Key::InitialR2T,
        Key::ImmediateData,
        Key::MaxRecvDataSegmentLength,
        Key::MaxBurstLength,
        Key::FirstBurstLength,
        Key::DefaultTime2Wait,
        Key::DefaultTime2Retain,
        Key::MaxOutstandingR2T,
        Key::DataPduInOrder,
        Key::DataSequenceInOrder,
        Key::ErrorRecoveryLevel,
        Key::SessionType,
        Key::IfMarker,
        Key::OfMarker,
        Key::IfMarkInt,
        Key::OfMarkInt,
        Key::IscsiProtocolLevel,
        Key::TaskReporting,
        Key::RdmaExtensions,
        Key::TargetRecvDataSegmentLength,
        Key::InitiatorRecvDataSegmentLength,
        Key::MaxOutstandingUnexpectedPdus,
    ];

    /// Number of known keys.
    pub const COUNT: usize = Key::ALL.len();

    /// Position of the key in [`Key::ALL`] and [`KEY_TABLE`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The key's definition.
    pub fn def(self) -> &'static KeyDef {
        // The table is in variant order; a test checks it. Fall back to a linear search so
        // that a mistake can never panic.
        match KEY_TABLE.get(self.index()) {
            Some(def) if def.key == self => def,
            _ => KEY_TABLE
                .iter()
                .find(|d| d.key == self)
                .unwrap_or(&KEY_TABLE[0]),
        }
    }

    /// The key name as sent on the wire.
    pub fn name(self) -> &'static str {
        self.def().name
    }

    /// Looks a key up by its exact (case-sensitive) wire name.
    pub fn from_name(name: &str) -> Option<Key> {
        KEY_TABLE.iter().find(|d| d.name == name).map(|d| d.key)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What kind of key a name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyClass {
    /// A key of the table.
    Standard(Key),
    /// A private extension key, `X-<reversed domain>.<name>` (RFC 7143 §13.22).
    PrivateExtension,
    /// A public extension key, `X#<IANA-registered string>` (RFC 7143 §13.23).
    PublicExtension,
    /// Any other name.
    Unknown,
}

/// Classifies a key name.
pub fn classify(name: &str) -> KeyClass {
    if let Some(key) = Key::from_name(name) {
        KeyClass::Standard(key)
    } else if name.starts_with("X-") {
        KeyClass::PrivateExtension
    } else if name.starts_with("X#") {
        KeyClass::PublicExtension
    } else {
        KeyClass::Unknown
    }
}

/// Looks up the definition of a key name.
pub fn lookup(name: &str) -> Option<&'static KeyDef> {
    Key::from_name(name).map(Key::def)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_variant_order() {
        assert_eq!(KEY_TABLE.len(), Key::COUNT);
        for (i, key) in Key::ALL.iter().enumerate() {
            assert_eq!(key.index(), i);
            assert_eq!(KEY_TABLE[i].key, *key, "entry {i}");
            assert_eq!(Key::from_name(key.name()), Some(*key));
        }
    }

    #[test]
    fn names_are_unique_and_valid() {
        for (i, a) in KEY_TABLE.iter().enumerate() {
            assert!(a.name.len() <= 63);
            assert!(crate::text::parse::validate_key_name(a.name).is_ok());
            for b in &KEY_TABLE[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }

    #[test]
    fn defaults_match_rfc() {
        let d = |k: Key| k.def().default;
        assert_eq!(d(Key::MaxRecvDataSegmentLength), Some("8192"));
        assert_eq!(d(Key::MaxBurstLength), Some("262144"));
        assert_eq!(d(Key::FirstBurstLength), Some("65536"));
        assert_eq!(d(Key::DefaultTime2Wait), Some("2"));
        assert_eq!(d(Key::DefaultTime2Retain), Some("20"));
        assert_eq!(d(Key::InitialR2T), Some("Yes"));
        assert_eq!(d(Key::ImmediateData), Some("Yes"));
        assert_eq!(d(Key::RdmaExtensions), Some("No"));
        assert_eq!(Key::DefaultTime2Wait.def().result, ResultFunction::Maximum);
        assert_eq!(Key::InitialR2T.def().result, ResultFunction::Or);
        assert_eq!(Key::ImmediateData.def().result, ResultFunction::And);
        assert!(Key::MaxRecvDataSegmentLength.def().is_declarative());
        assert!(Key::IfMarker.def().obsolete);
        assert!(Key::ChapC.def().is_security());
    }

    #[test]
    fn classify_extension_keys() {
        assert_eq!(classify("X-com.example.foo"), KeyClass::PrivateExtension);
        assert_eq!(classify("X#Foo"), KeyClass::PublicExtension);
        assert_eq!(classify("Whatever"), KeyClass::Unknown);
        assert_eq!(classify("headerdigest"), KeyClass::Unknown);
        assert_eq!(
            classify("HeaderDigest"),
            KeyClass::Standard(Key::HeaderDigest)
        );
    }
}
