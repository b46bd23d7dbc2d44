//! Local configuration of a negotiator and the typed result of a negotiation.

use super::keys::MAX_DATA_SEGMENT_LIMIT;
use super::parse::TextLimits;

/// Which end of the login a negotiator speaks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The initiator: sends Login/Text requests.
    Initiator,
    /// The target: sends Login/Text responses.
    Target,
}

impl Role {
    /// The other end.
    pub fn peer(self) -> Role {
        match self {
            Role::Initiator => Role::Target,
            Role::Target => Role::Initiator,
        }
    }
}

/// `SessionType` (RFC 7143 §13.21).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SessionType {
    /// A normal session (the default).
    #[default]
    Normal,
    /// A discovery session (SendTargets only).
    Discovery,
}

impl SessionType {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionType::Normal => "Normal",
            SessionType::Discovery => "Discovery",
        }
    }

    /// Parses a wire value.
    pub fn from_wire(value: &str) -> Option<SessionType> {
        match value {
            "Normal" => Some(SessionType::Normal),
            "Discovery" => Some(SessionType::Discovery),
            _ => None,
        }
    }
}

/// Where in the conversation the negotiator is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Login, security negotiation stage (CSG=0).
    Security,
    /// Login, operational negotiation stage (CSG=1).
    Operational,
    /// Full feature phase: Text request/response negotiation.
    FullFeature,
}

/// A digest algorithm (`HeaderDigest` / `DataDigest`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Digest {
    /// No digest (the default).
    #[default]
    None,
    /// CRC32C.
    Crc32c,
}

impl Digest {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Digest::None => "None",
            Digest::Crc32c => "CRC32C",
        }
    }

    /// Parses a wire value (the algorithm name is matched without regard to ASCII case).
    pub fn from_wire(value: &str) -> Option<Digest> {
        if value == "None" {
            Some(Digest::None)
        } else if value.eq_ignore_ascii_case("CRC32C") {
            Some(Digest::Crc32c)
        } else {
            None
        }
    }
}

/// `TaskReporting` values (RFC 7143 §13, from RFC 5048).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TaskReporting {
    /// The RFC 3720 behaviour (the default).
    #[default]
    Rfc3720,
    /// Response fence semantics.
    ResponseFence,
    /// Fast multi-task abort semantics (implies response fence).
    FastAbort,
}

impl TaskReporting {
    /// Wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskReporting::Rfc3720 => "RFC3720",
            TaskReporting::ResponseFence => "ResponseFence",
            TaskReporting::FastAbort => "FastAbort",
        }
    }

    /// Parses a wire value.
    pub fn from_wire(value: &str) -> Option<TaskReporting> {
        match value {
            "RFC3720" => Some(TaskReporting::Rfc3720),
            "ResponseFence" => Some(TaskReporting::ResponseFence),
            "FastAbort" => Some(TaskReporting::FastAbort),
            _ => None,
        }
    }
}

/// What this side wants and accepts.
///
/// For keys negotiated with Minimum the value is the largest we accept; with Maximum the
/// smallest; for boolean keys our preference; for list keys our acceptable values in order of
/// preference. Values outside a key's valid range are clamped by [`crate::text::Negotiator::new`],
/// and `first_burst_length` is lowered to `max_burst_length` if needed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalConfig {
    /// Our InitiatorName (initiator role; required).
    pub initiator_name: Option<String>,
    /// Our InitiatorAlias (initiator role).
    pub initiator_alias: Option<String>,
    /// The TargetName to log in to (initiator role; required for normal sessions).
    pub target_name: Option<String>,
    /// Our TargetAlias (target role).
    pub target_alias: Option<String>,
    /// Our TargetPortalGroupTag (target role; sent in the first login response).
    pub target_portal_group_tag: Option<u16>,
    /// Acceptable header digests, preferred first. Empty means `[None]`.
    pub header_digest: Vec<Digest>,
    /// Acceptable data digests, preferred first. Empty means `[None]`.
    pub data_digest: Vec<Digest>,
    /// MaxConnections (1..=65535).
    pub max_connections: u16,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// ImmediateData.
    pub immediate_data: bool,
    /// Our MaxRecvDataSegmentLength, declared to the peer (512..=2^24-1).
    pub max_recv_data_segment_length: u32,
    /// MaxBurstLength (512..=2^24-1).
    pub max_burst_length: u32,
    /// FirstBurstLength (512..=2^24-1, at most `max_burst_length`).
    pub first_burst_length: u32,
    /// DefaultTime2Wait in seconds (0..=3600).
    pub default_time2wait: u16,
    /// DefaultTime2Retain in seconds (0..=3600).
    pub default_time2retain: u16,
    /// MaxOutstandingR2T (1..=65535).
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder.
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel (0..=2).
    pub error_recovery_level: u8,
    /// iSCSIProtocolLevel (0..=31); offered only when not the default 1.
    pub iscsi_protocol_level: u8,
    /// Acceptable TaskReporting values, preferred first. Empty means `[RFC3720]`; offered
    /// only when different from that.
    pub task_reporting: Vec<TaskReporting>,
    /// iSER InitiatorRecvDataSegmentLength (512..=2^24-1).
    pub initiator_recv_data_segment_length: u32,
    /// iSER TargetRecvDataSegmentLength (512..=2^24-1).
    pub target_recv_data_segment_length: u32,
    /// iSER MaxOutstandingUnexpectedPDUs we declare (0 = no limit, otherwise >= 2).
    pub max_outstanding_unexpected_pdus: u32,
    /// Extension keys (`X-…`, `X#…` or others) that the application handles: they are handed
    /// back in [`crate::text::HandleOutput::passthrough`] instead of being answered
    /// `NotUnderstood`.
    pub extension_keys: Vec<String>,
    /// Bounds for texts and values.
    pub limits: TextLimits,
    /// Largest number of distinct unrecognised keys remembered per negotiation (to detect
    /// their renegotiation); beyond it the negotiation fails.
    pub max_unknown_keys: usize,
}

impl Default for LocalConfig {
    /// The RFC defaults, no digests, no names.
    fn default() -> Self {
        LocalConfig {
            initiator_name: None,
            initiator_alias: None,
            target_name: None,
            target_alias: None,
            target_portal_group_tag: None,
            header_digest: vec![Digest::None],
            data_digest: vec![Digest::None],
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            max_recv_data_segment_length: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            iscsi_protocol_level: 1,
            task_reporting: vec![TaskReporting::Rfc3720],
            initiator_recv_data_segment_length: 8192,
            target_recv_data_segment_length: 8192,
            max_outstanding_unexpected_pdus: 0,
            extension_keys: Vec::new(),
            limits: TextLimits::default(),
            max_unknown_keys: 256,
        }
    }
}

fn clamp_u32(v: u32, min: u32, max: u32) -> u32 {
    v.clamp(min, max)
}

impl LocalConfig {
    /// Declares no receive data segment longer than `max`: MaxRecvDataSegmentLength and the
    /// iSER Initiator/TargetRecvDataSegmentLength are lowered to it (see
    /// [`crate::datamover::Datamover::max_recv_data_segment_length`]).
    pub fn limit_recv_data_segment_length(&mut self, max: u32) {
        self.max_recv_data_segment_length = self.max_recv_data_segment_length.min(max);
        self.initiator_recv_data_segment_length = self.initiator_recv_data_segment_length.min(max);
        self.target_recv_data_segment_length = self.target_recv_data_segment_length.min(max);
    }

    /// Brings every value into its key's valid range and enforces
    /// FirstBurstLength <= MaxBurstLength.
    pub fn normalized(mut self) -> LocalConfig {
        let seg_max = MAX_DATA_SEGMENT_LIMIT as u32;
        if self.header_digest.is_empty() {
            self.header_digest.push(Digest::None);
        }
        if self.data_digest.is_empty() {
            self.data_digest.push(Digest::None);
        }
        if self.task_reporting.is_empty() {
            self.task_reporting.push(TaskReporting::Rfc3720);
        }
        self.max_connections = self.max_connections.max(1);
        self.max_recv_data_segment_length =
            clamp_u32(self.max_recv_data_segment_length, 512, seg_max);
        self.max_burst_length = clamp_u32(self.max_burst_length, 512, seg_max);
        self.first_burst_length =
            clamp_u32(self.first_burst_length, 512, seg_max).min(self.max_burst_length);
        self.default_time2wait = self.default_time2wait.min(3600);
        self.default_time2retain = self.default_time2retain.min(3600);
        self.max_outstanding_r2t = self.max_outstanding_r2t.max(1);
        self.error_recovery_level = self.error_recovery_level.min(2);
        self.iscsi_protocol_level = self.iscsi_protocol_level.min(31);
        self.initiator_recv_data_segment_length =
            clamp_u32(self.initiator_recv_data_segment_length, 512, seg_max);
        self.target_recv_data_segment_length =
            clamp_u32(self.target_recv_data_segment_length, 512, seg_max);
        if self.max_outstanding_unexpected_pdus == 1 {
            self.max_outstanding_unexpected_pdus = 2;
        }
        self
    }
}

/// The operational values in force after a negotiation.
///
/// Keys that were not negotiated keep their RFC default. Per-direction values are named after
/// the side that *receives*: `initiator_max_recv_data_segment_length` is what the initiator
/// declared it can receive, i.e. the largest data segment the target may send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiatedParams {
    /// SessionType.
    pub session_type: SessionType,
    /// InitiatorName (ours or the peer's).
    pub initiator_name: Option<String>,
    /// InitiatorAlias.
    pub initiator_alias: Option<String>,
    /// TargetName.
    pub target_name: Option<String>,
    /// TargetAlias.
    pub target_alias: Option<String>,
    /// TargetPortalGroupTag.
    pub target_portal_group_tag: Option<u16>,
    /// TargetAddress values received during login (redirection).
    pub target_addresses: Vec<String>,
    /// HeaderDigest (None when RDMAExtensions=Yes).
    pub header_digest: Digest,
    /// DataDigest (None when RDMAExtensions=Yes).
    pub data_digest: Digest,
    /// MaxConnections.
    pub max_connections: u16,
    /// InitialR2T.
    pub initial_r2t: bool,
    /// ImmediateData.
    pub immediate_data: bool,
    /// MaxRecvDataSegmentLength declared by the initiator (limit for target-sent PDUs).
    pub initiator_max_recv_data_segment_length: u32,
    /// MaxRecvDataSegmentLength declared by the target (limit for initiator-sent PDUs).
    pub target_max_recv_data_segment_length: u32,
    /// MaxBurstLength.
    pub max_burst_length: u32,
    /// FirstBurstLength (never above `max_burst_length` in [`crate::text::Negotiator::result`]).
    pub first_burst_length: u32,
    /// DefaultTime2Wait (seconds).
    pub default_time2wait: u16,
    /// DefaultTime2Retain (seconds).
    pub default_time2retain: u16,
    /// MaxOutstandingR2T.
    pub max_outstanding_r2t: u16,
    /// DataPDUInOrder.
    pub data_pdu_in_order: bool,
    /// DataSequenceInOrder.
    pub data_sequence_in_order: bool,
    /// ErrorRecoveryLevel.
    pub error_recovery_level: u8,
    /// iSCSIProtocolLevel.
    pub iscsi_protocol_level: u8,
    /// TaskReporting.
    pub task_reporting: TaskReporting,
    /// RDMAExtensions (iSER-assisted mode).
    pub rdma_extensions: bool,
    /// iSER InitiatorRecvDataSegmentLength.
    pub initiator_recv_data_segment_length: u32,
    /// iSER TargetRecvDataSegmentLength.
    pub target_recv_data_segment_length: u32,
    /// iSER MaxOutstandingUnexpectedPDUs declared by the initiator (0 = no limit).
    pub initiator_max_outstanding_unexpected_pdus: u32,
    /// iSER MaxOutstandingUnexpectedPDUs declared by the target (0 = no limit).
    pub target_max_outstanding_unexpected_pdus: u32,
}

impl Default for NegotiatedParams {
    /// Every key at its RFC default.
    fn default() -> Self {
        NegotiatedParams {
            session_type: SessionType::Normal,
            initiator_name: None,
            initiator_alias: None,
            target_name: None,
            target_alias: None,
            target_portal_group_tag: None,
            target_addresses: Vec::new(),
            header_digest: Digest::None,
            data_digest: Digest::None,
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            initiator_max_recv_data_segment_length: 8192,
            target_max_recv_data_segment_length: 8192,
            max_burst_length: 262_144,
            first_burst_length: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            iscsi_protocol_level: 1,
            task_reporting: TaskReporting::Rfc3720,
            rdma_extensions: false,
            initiator_recv_data_segment_length: 8192,
            target_recv_data_segment_length: 8192,
            initiator_max_outstanding_unexpected_pdus: 0,
            target_max_outstanding_unexpected_pdus: 0,
        }
    }
}

impl NegotiatedParams {
    /// Largest data segment `receiver` accepts in full feature phase: its declared
    /// MaxRecvDataSegmentLength, or with RDMAExtensions=Yes the negotiated
    /// Initiator/TargetRecvDataSegmentLength that replaces it (RFC 7145 §6).
    pub fn max_recv_data_segment_length(&self, receiver: Role) -> u32 {
        match (receiver, self.rdma_extensions) {
            (Role::Initiator, false) => self.initiator_max_recv_data_segment_length,
            (Role::Target, false) => self.target_max_recv_data_segment_length,
            (Role::Initiator, true) => self.initiator_recv_data_segment_length,
            (Role::Target, true) => self.target_recv_data_segment_length,
        }
    }

    /// Largest data segment `sender` may send: what its peer accepts.
    pub fn max_send_data_segment_length(&self, sender: Role) -> u32 {
        self.max_recv_data_segment_length(sender.peer())
    }

    /// Whether the initiator may send unsolicited data (InitialR2T=No or ImmediateData=Yes).
    pub fn unsolicited_data_allowed(&self) -> bool {
        !self.initial_r2t || self.immediate_data
    }
}
