//! The sans-IO text-key negotiator used by both login roles (RFC 7143 §6.2, §6.3, §13;
//! RFC 7145 §6).
//!
//! A [`Negotiator`] keeps, for every key, whether we offered or declared it and whether the
//! peer sent it. Each received text goes through [`Negotiator::handle`], which returns the
//! answers to put in our next PDU; [`Negotiator::offer`] then adds our own offers and
//! declarations for keys not yet exchanged. [`Negotiator::result`] gives the typed values in
//! force.
//!
//! ```
//! use iscsi_proto::text::{LocalConfig, Negotiator, Role, SessionType, Stage};
//!
//! let initiator_config = LocalConfig {
//!     initiator_name: Some("iqn.2024-01.org.example:host".into()),
//!     target_name: Some("iqn.2024-01.org.example:disk".into()),
//!     ..LocalConfig::default()
//! };
//! let mut initiator = Negotiator::new(
//!     Role::Initiator, initiator_config, SessionType::Normal, true, false);
//! let mut target = Negotiator::new(
//!     Role::Target, LocalConfig::default(), SessionType::Normal, true, false);
//! initiator.set_stage(Stage::Operational);
//! target.set_stage(Stage::Operational);
//!
//! let request = initiator.offer();
//! let mut response = target.handle(&request).unwrap().responses;
//! response.extend(target.offer());
//! initiator.handle(&response).unwrap();
//! assert!(initiator.is_complete() && target.is_complete());
//! assert_eq!(initiator.result().max_burst_length, target.result().max_burst_length);
//! ```
//!
//! Rules implemented (with the RFC 7143 section):
//! - results use each key's function: Minimum, Maximum, OR, AND, or the first value of the
//!   offerer's list that we support (§6.2.1, §6.2.2); as offerer we refuse an answer that
//!   breaks the rule (a number above our offer for a Minimum key, a value we did not list,
//!   `No` to our `Yes` for OR, ...) with [`NegotiationError::InvalidAnswer`];
//! - unknown keys are answered `NotUnderstood`, keys that do not apply `Irrelevant`, and
//!   inadmissible values `Reject`; a `Reject`/`Irrelevant`/`NotUnderstood` answer to our offer
//!   leaves the key at its default (§6.2);
//! - a key is negotiated at most once: the peer sending a key again, other than as the answer
//!   to our offer, is [`NegotiationError::Renegotiation`] (§6.2);
//! - declarative keys are recorded and not answered;
//! - after negotiation FirstBurstLength never exceeds MaxBurstLength (§13.14): a responder
//!   caps its FirstBurstLength answer at MaxBurstLength and [`Negotiator::result`] clamps a
//!   result that still breaks the rule;
//! - leading-only keys on another connection are refused, and keys irrelevant to a Discovery
//!   session are answered `Irrelevant` (§13);
//! - iSER (RFC 7145 §6): `RDMAExtensions` is AND-negotiated on the leading connection; when
//!   it is `Yes`, digests are `Irrelevant`, `MaxRecvDataSegmentLength` is replaced by the
//!   Minimum-negotiated `InitiatorRecvDataSegmentLength`/`TargetRecvDataSegmentLength`, and
//!   `MaxOutstandingUnexpectedPDUs` is declared by each side (0 = no limit);
//! - the obsolete marker keys are answered `Reject` (RFC 7143 §13, obsoleted keys);
//! - security keys are not negotiated here: they are checked for stage, sender and
//!   repetition and handed back in [`HandleOutput::passthrough`] for the authenticator.

use super::error::{NegotiationError, clip};
use super::keys::{Key, KeyClass, Phase, ResultFunction, Usage, ValueType, classify};
use super::params::{
    Digest, LocalConfig, NegotiatedParams, Role, SessionType, Stage, TaskReporting,
};
use super::parse::{TextError, parse_text, validate_key_name};
use super::value::{
    IRRELEVANT, NO, NOT_UNDERSTOOD, REJECT, YES, format_bool, format_number, is_special_answer,
    join_list, parse_bool, parse_number, parse_number_in, split_list,
};

/// Longest iSCSI name (RFC 7143 §4.2.7.1).
pub const MAX_ISCSI_NAME_LEN: usize = 223;

/// Most `TargetAddress` values remembered from one login.
const MAX_TARGET_ADDRESSES: usize = 64;

/// What [`Negotiator::handle`] produced for one received text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandleOutput {
    /// Answers to send in our next PDU, in the order the keys were received.
    pub responses: Vec<(String, String)>,
    /// Pairs not negotiated here, in received order: security keys for the authenticator,
    /// `SendTargets` (target) and its `TargetName`/`TargetAddress` results (initiator),
    /// registered extension keys, and `Reject`/`Irrelevant`/`NotUnderstood` answers to
    /// unrecognised keys that the application itself sent.
    pub passthrough: Vec<(String, String)>,
}

/// Per-key negotiation state.
#[derive(Clone, Debug, Default)]
struct KeyState {
    /// What we offered or declared in this negotiation.
    offered: Option<String>,
    /// Our offer waits for the peer's answer.
    awaiting: bool,
    /// The answer may be omitted because our offer decides the result (AND with `No`, OR
    /// with `Yes`; RFC 7143 §6.2.2).
    answer_optional: bool,
    /// The peer sent this key (offer, declaration or answer).
    received: bool,
}

/// What to do with one received pair.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Nothing,
    Respond(String),
    Pass,
}

/// The order in which keys are offered (names first, RDMAExtensions before the keys it
/// makes relevant or irrelevant, MaxBurstLength before FirstBurstLength).
const OFFER_ORDER: &[Key] = &[
    Key::InitiatorName,
    Key::InitiatorAlias,
    Key::SessionType,
    Key::TargetName,
    Key::TargetAlias,
    Key::TargetPortalGroupTag,
    Key::RdmaExtensions,
    Key::HeaderDigest,
    Key::DataDigest,
    Key::MaxRecvDataSegmentLength,
    Key::InitiatorRecvDataSegmentLength,
    Key::TargetRecvDataSegmentLength,
    Key::MaxOutstandingUnexpectedPdus,
    Key::MaxConnections,
    Key::InitialR2T,
    Key::ImmediateData,
    Key::MaxBurstLength,
    Key::FirstBurstLength,
    Key::DefaultTime2Wait,
    Key::DefaultTime2Retain,
    Key::MaxOutstandingR2T,
    Key::DataPduInOrder,
    Key::DataSequenceInOrder,
    Key::ErrorRecoveryLevel,
    Key::IscsiProtocolLevel,
    Key::TaskReporting,
];

/// Processing order inside one received text: keys that decide the relevance or the bounds
/// of other keys come first.
fn rank(name: &str) -> u8 {
    match Key::from_name(name) {
        Some(Key::SessionType) => 0,
        Some(Key::RdmaExtensions) => 1,
        Some(Key::InitialR2T | Key::ImmediateData | Key::MaxBurstLength) => 2,
        _ => 3,
    }
}

fn numeric_bounds(value_type: ValueType) -> (u64, u64) {
    match value_type {
        ValueType::Numerical { min, max }
        | ValueType::NumericalOrZero { min, max }
        | ValueType::NumericRange { min, max } => (min, max),
        _ => (0, u64::MAX),
    }
}

fn to_u16(n: u64) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn to_u8(n: u64) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

/// Checks an iSCSI name: 1 to 223 bytes, no spaces or control characters.
fn valid_iscsi_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_ISCSI_NAME_LEN
        && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether two list elements name the same value (digest names ignore ASCII case).
fn list_item_eq(key: Key, a: &str, b: &str) -> bool {
    match key {
        Key::HeaderDigest | Key::DataDigest => {
            Digest::from_wire(a).is_some() && Digest::from_wire(a) == Digest::from_wire(b)
        }
        _ => a == b,
    }
}

/// One side of a text-key negotiation; see the module documentation.
#[derive(Clone, Debug)]
pub struct Negotiator {
    role: Role,
    config: LocalConfig,
    leading: bool,
    iser: bool,
    stage: Stage,
    states: Vec<KeyState>,
    unknown_seen: Vec<String>,
    params: NegotiatedParams,
    first_request_checked: bool,
}

impl Negotiator {
    /// Creates a negotiator.
    ///
    /// - `role`: the side we speak for.
    /// - `config`: our wishes; out-of-range values are clamped ([`LocalConfig::normalized`]).
    /// - `session_type`: for an initiator the session type it asks for; for a target the
    ///   initial assumption, replaced by the initiator's `SessionType` key.
    /// - `leading_connection`: whether this is the first connection of the session (TSIH 0).
    /// - `iser_enabled`: the transport supports iSER. On the leading connection
    ///   `RDMAExtensions=Yes` is then offered (initiator) or accepted (target); on another
    ///   connection it states that the session negotiated `RDMAExtensions=Yes`.
    ///
    /// The negotiator starts in [`Stage::Security`]; call [`Negotiator::set_stage`] when the
    /// login goes to (or starts in) the operational stage and in full feature phase.
    pub fn new(
        role: Role,
        config: LocalConfig,
        session_type: SessionType,
        leading_connection: bool,
        iser_enabled: bool,
    ) -> Negotiator {
        let config = config.normalized();
        let mut params = NegotiatedParams {
            session_type,
            ..NegotiatedParams::default()
        };
        if !leading_connection {
            params.rdma_extensions = iser_enabled;
        }
        Negotiator {
            role,
            config,
            leading: leading_connection,
            iser: iser_enabled,
            stage: Stage::Security,
            states: vec![KeyState::default(); Key::COUNT],
            unknown_seen: Vec::new(),
            params,
            first_request_checked: false,
        }
    }

    /// Seeds the session-wide values of a non-leading connection with the result of the
    /// leading connection's negotiation (session type, burst lengths, ERL, RDMAExtensions...).
    /// Connection-only values (digests, data segment lengths) start from their defaults.
    pub fn with_session(mut self, session: &NegotiatedParams) -> Negotiator {
        let mut params = session.clone();
        let defaults = NegotiatedParams::default();
        params.header_digest = defaults.header_digest;
        params.data_digest = defaults.data_digest;
        params.initiator_max_recv_data_segment_length =
            defaults.initiator_max_recv_data_segment_length;
        params.target_max_recv_data_segment_length = defaults.target_max_recv_data_segment_length;
        params.initiator_recv_data_segment_length = defaults.initiator_recv_data_segment_length;
        params.target_recv_data_segment_length = defaults.target_recv_data_segment_length;
        params.target_addresses.clear();
        self.iser = session.rdma_extensions;
        self.params = params;
        self
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Whether this negotiator runs on the leading connection.
    pub fn is_leading(&self) -> bool {
        self.leading
    }

    /// The session type (for a target, as declared by the initiator).
    pub fn session_type(&self) -> SessionType {
        self.params.session_type
    }

    /// Our (normalized) configuration.
    pub fn config(&self) -> &LocalConfig {
        &self.config
    }

    /// Moves to another stage. Entering [`Stage::FullFeature`] starts a new Text
    /// negotiation: keys usable in full feature phase may then be exchanged again.
    pub fn set_stage(&mut self, stage: Stage) {
        if stage == Stage::FullFeature && self.stage != Stage::FullFeature {
            self.begin_text_negotiation();
        }
        self.stage = stage;
    }

    /// Starts a new full feature phase Text negotiation sequence (a new Initiator Task Tag):
    /// forgets which full-feature keys were exchanged so that they can be declared or
    /// negotiated again.
    pub fn begin_text_negotiation(&mut self) {
        for key in Key::ALL {
            if matches!(key.def().usage, Usage::All | Usage::FullFeatureOnly)
                && let Some(st) = self.states.get_mut(key.index())
            {
                *st = KeyState::default();
            }
        }
        self.unknown_seen.clear();
    }

    fn state(&self, key: Key) -> &KeyState {
        // `states` has one entry per key; index() is always in range.
        &self.states[key.index()]
    }

    fn state_mut(&mut self, key: Key) -> &mut KeyState {
        &mut self.states[key.index()]
    }

    /// Whether every key we offered has been answered (offers whose answer is optional
    /// excepted). Answers to the peer's offers are always produced by [`Negotiator::handle`],
    /// so this is what tells an initiator (or a target that offered keys) that the
    /// negotiation of its keys is complete.
    pub fn is_complete(&self) -> bool {
        self.states.iter().all(|s| !s.awaiting || s.answer_optional)
    }

    /// Names of the keys whose answer we still wait for.
    pub fn outstanding_keys(&self) -> Vec<&'static str> {
        Key::ALL
            .iter()
            .filter(|k| {
                let s = self.state(**k);
                s.awaiting && !s.answer_optional
            })
            .map(|k| k.name())
            .collect()
    }

    /// The values in force: negotiated results, declared values, and defaults for the rest.
    /// FirstBurstLength is clamped to MaxBurstLength, and digests are None when
    /// RDMAExtensions=Yes.
    pub fn result(&self) -> NegotiatedParams {
        let mut params = self.params.clone();
        params.first_burst_length = params.first_burst_length.min(params.max_burst_length);
        if params.rdma_extensions {
            params.header_digest = Digest::None;
            params.data_digest = Digest::None;
        }
        params
    }

    /// Parses a whole (reassembled) text with the configured limits and handles it.
    pub fn handle_text(&mut self, data: &[u8]) -> Result<HandleOutput, NegotiationError> {
        let pairs = parse_text(data, &self.config.limits)?;
        self.handle(&pairs)
    }

    /// Handles the pairs of one received text (after C-bit reassembly) and returns our
    /// answers. Pairs are accepted from any source: names and values are checked here too.
    ///
    /// A target must send every answer in `responses`: together with the pass-through
    /// security keys answered by the authenticator, that answers every key the initiator
    /// offered.
    pub fn handle<K, V>(&mut self, pairs: &[(K, V)]) -> Result<HandleOutput, NegotiationError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        if pairs.len() > self.config.limits.max_pairs {
            return Err(TextError::TooManyPairs {
                max: self.config.limits.max_pairs,
            }
            .into());
        }
        for (k, v) in pairs {
            self.check_pair(k.as_ref(), v.as_ref())?;
        }
        let mut outcomes = vec![Outcome::Nothing; pairs.len()];
        for pass in 0..=3u8 {
            for ((k, v), outcome) in pairs.iter().zip(outcomes.iter_mut()) {
                let (k, v) = (k.as_ref(), v.as_ref());
                if rank(k) == pass {
                    *outcome = self.process(k, v)?;
                }
            }
        }
        if self.role == Role::Target && self.stage != Stage::FullFeature {
            self.check_first_request()?;
        }
        let mut out = HandleOutput::default();
        for ((k, v), outcome) in pairs.iter().zip(outcomes) {
            match outcome {
                Outcome::Nothing => {}
                Outcome::Respond(answer) => out.responses.push((k.as_ref().to_owned(), answer)),
                Outcome::Pass => out
                    .passthrough
                    .push((k.as_ref().to_owned(), v.as_ref().to_owned())),
            }
        }
        Ok(out)
    }

    fn check_pair(&self, key: &str, value: &str) -> Result<(), TextError> {
        validate_key_name(key)?;
        if value.as_bytes().contains(&0) {
            return Err(TextError::NulInValue {
                key: key.to_owned(),
            });
        }
        let max = self.config.limits.max_value_len(key);
        if value.len() > max {
            return Err(TextError::ValueTooLong {
                key: key.to_owned(),
                len: value.len(),
                max,
            });
        }
        Ok(())
    }

    /// RFC 7143 §6.3: the first Login request carries InitiatorName, and TargetName for a
    /// normal session.
    fn check_first_request(&mut self) -> Result<(), NegotiationError> {
        if self.first_request_checked {
            return Ok(());
        }
        self.first_request_checked = true;
        if !self.state(Key::InitiatorName).received {
            return Err(NegotiationError::MissingParameter {
                key: Key::InitiatorName.name(),
            });
        }
        if self.params.session_type == SessionType::Normal && !self.state(Key::TargetName).received
        {
            return Err(NegotiationError::MissingParameter {
                key: Key::TargetName.name(),
            });
        }
        Ok(())
    }

    fn process(&mut self, name: &str, value: &str) -> Result<Outcome, NegotiationError> {
        match classify(name) {
            KeyClass::Standard(key) => self.process_key(key, value),
            KeyClass::PrivateExtension | KeyClass::PublicExtension | KeyClass::Unknown => {
                self.process_unknown(name, value)
            }
        }
    }

    fn process_unknown(&mut self, name: &str, value: &str) -> Result<Outcome, NegotiationError> {
        if self.config.extension_keys.iter().any(|k| k == name) || is_special_answer(value) {
            return Ok(Outcome::Pass);
        }
        if self.unknown_seen.iter().any(|k| k == name) {
            return Err(NegotiationError::Renegotiation {
                key: name.to_owned(),
            });
        }
        if self.unknown_seen.len() >= self.config.max_unknown_keys {
            return Err(NegotiationError::TooManyKeys {
                max: self.config.max_unknown_keys,
            });
        }
        self.unknown_seen.push(name.to_owned());
        Ok(Outcome::Respond(NOT_UNDERSTOOD.to_owned()))
    }

    fn process_key(&mut self, key: Key, value: &str) -> Result<Outcome, NegotiationError> {
        let def = key.def();
        if self.state(key).awaiting {
            return self.process_answer(key, value);
        }
        // Results of our SendTargets in full feature phase: many TargetName/TargetAddress.
        if self.stage == Stage::FullFeature
            && self.role == Role::Initiator
            && matches!(key, Key::TargetName | Key::TargetAddress)
        {
            return Ok(Outcome::Pass);
        }
        if self.state(key).received && key != Key::TargetAddress {
            return Err(NegotiationError::Renegotiation {
                key: def.name.to_owned(),
            });
        }
        // A special answer to a key we declared (declarations need no answer): accept it.
        if def.is_declarative() && self.state(key).offered.is_some() && is_special_answer(value) {
            self.state_mut(key).received = true;
            return Ok(Outcome::Nothing);
        }
        let peer = self.role.peer();
        let allowed = match peer {
            Role::Initiator => def.may_be_sent_by_initiator(),
            Role::Target => def.may_be_sent_by_target(),
        };
        if !allowed {
            return Err(NegotiationError::WrongSender {
                key: def.name.to_owned(),
                sender: peer,
            });
        }
        if !self.stage_allows(key) {
            return Err(NegotiationError::WrongStage {
                key: def.name.to_owned(),
                stage: self.stage,
            });
        }
        if def.usage == Usage::LeadingOnly && !self.leading && key != Key::SessionType {
            return Err(NegotiationError::LeadingOnly {
                key: def.name.to_owned(),
            });
        }
        self.state_mut(key).received = true;
        if def.is_security() || key == Key::SendTargets {
            return Ok(Outcome::Pass);
        }
        if is_special_answer(value) {
            return Err(NegotiationError::UnexpectedAnswer {
                key: def.name.to_owned(),
                value: clip(value),
            });
        }
        if def.obsolete {
            // RFC 7143 §13, obsoleted keys: answer Reject, never NotUnderstood.
            return Ok(Outcome::Respond(REJECT.to_owned()));
        }
        if def.is_declarative() {
            return self.accept_declaration(key, value);
        }
        if self.is_irrelevant(key) {
            return Ok(Outcome::Respond(IRRELEVANT.to_owned()));
        }
        self.respond(key, value)
    }

    fn stage_allows(&self, key: Key) -> bool {
        let def = key.def();
        match self.stage {
            Stage::Security => matches!(def.phase, Phase::Security | Phase::AnyStage),
            Stage::Operational => matches!(def.phase, Phase::Operational | Phase::AnyStage),
            Stage::FullFeature => matches!(def.usage, Usage::All | Usage::FullFeatureOnly),
        }
    }

    fn is_irrelevant(&self, key: Key) -> bool {
        let w = key.def().irrelevant_when;
        let p = &self.params;
        (w.discovery && p.session_type == SessionType::Discovery)
            || (w.rdma_yes && p.rdma_extensions)
            || (w.rdma_no && !p.rdma_extensions)
            || (w.no_unsolicited_data && p.initial_r2t && !p.immediate_data)
    }

    fn invalid(key: Key, value: &str) -> NegotiationError {
        NegotiationError::InvalidValue {
            key: key.name().to_owned(),
            value: clip(value),
        }
    }

    /// Records the peer's declaration of a declarative key.
    fn accept_declaration(&mut self, key: Key, value: &str) -> Result<Outcome, NegotiationError> {
        let peer = self.role.peer();
        match key {
            Key::InitiatorName => {
                if !valid_iscsi_name(value) {
                    return Err(Self::invalid(key, value));
                }
                self.params.initiator_name = Some(value.to_owned());
            }
            Key::TargetName => {
                if !valid_iscsi_name(value) {
                    return Err(Self::invalid(key, value));
                }
                // A target echoing TargetName during login is tolerated and ignored.
                if self.role == Role::Target {
                    self.params.target_name = Some(value.to_owned());
                }
            }
            Key::InitiatorAlias => self.params.initiator_alias = Some(value.to_owned()),
            Key::TargetAlias => self.params.target_alias = Some(value.to_owned()),
            Key::TargetAddress => {
                if value.is_empty() {
                    return Err(Self::invalid(key, value));
                }
                if self.params.target_addresses.len() < MAX_TARGET_ADDRESSES {
                    self.params.target_addresses.push(value.to_owned());
                }
            }
            Key::TargetPortalGroupTag => {
                let tag =
                    parse_number_in(value, 0, 65535).map_err(|_| Self::invalid(key, value))?;
                self.params.target_portal_group_tag = Some(to_u16(tag));
            }
            Key::SessionType => {
                let session_type = SessionType::from_wire(value).ok_or_else(|| {
                    NegotiationError::UnsupportedSessionType { value: clip(value) }
                })?;
                if !self.leading && session_type != self.params.session_type {
                    return Err(NegotiationError::UnsupportedSessionType { value: clip(value) });
                }
                self.params.session_type = session_type;
            }
            Key::MaxRecvDataSegmentLength => {
                let (min, max) = numeric_bounds(key.def().value_type);
                let n = parse_number_in(value, min, max).map_err(|_| Self::invalid(key, value))?;
                self.set_declared(key, peer, n);
            }
            Key::MaxOutstandingUnexpectedPdus => {
                if self.is_irrelevant(key) {
                    return Ok(Outcome::Nothing);
                }
                let (min, max) = numeric_bounds(key.def().value_type);
                let n = parse_number(value).map_err(|_| Self::invalid(key, value))?;
                if n != 0 && (n < min || n > max) {
                    return Err(Self::invalid(key, value));
                }
                self.set_declared(key, peer, n);
            }
            _ => {}
        }
        Ok(Outcome::Nothing)
    }

    /// Stores a per-direction declared number for `declarer`.
    fn set_declared(&mut self, key: Key, declarer: Role, n: u64) {
        let p = &mut self.params;
        match (key, declarer) {
            (Key::MaxRecvDataSegmentLength, Role::Initiator) => {
                p.initiator_max_recv_data_segment_length = to_u32(n);
            }
            (Key::MaxRecvDataSegmentLength, Role::Target) => {
                p.target_max_recv_data_segment_length = to_u32(n);
            }
            (Key::MaxOutstandingUnexpectedPdus, Role::Initiator) => {
                p.initiator_max_outstanding_unexpected_pdus = to_u32(n);
            }
            (Key::MaxOutstandingUnexpectedPdus, Role::Target) => {
                p.target_max_outstanding_unexpected_pdus = to_u32(n);
            }
            _ => {}
        }
    }

    /// Answers the peer's offer of a negotiated key.
    fn respond(&mut self, key: Key, value: &str) -> Result<Outcome, NegotiationError> {
        let def = key.def();
        match def.result {
            ResultFunction::Minimum | ResultFunction::Maximum => {
                let (min, max) = numeric_bounds(def.value_type);
                let Ok(offered) = parse_number_in(value, min, max) else {
                    return Ok(Outcome::Respond(REJECT.to_owned()));
                };
                let ours = self.local_number(key);
                let mut answer = if def.result == ResultFunction::Minimum {
                    offered.min(ours)
                } else {
                    offered.max(ours)
                };
                if key == Key::FirstBurstLength {
                    answer = answer.min(u64::from(self.params.max_burst_length));
                }
                let answer = format_number(answer);
                self.apply(key, &answer);
                Ok(Outcome::Respond(answer))
            }
            ResultFunction::Or | ResultFunction::And => {
                let Ok(offered) = parse_bool(value) else {
                    return Ok(Outcome::Respond(REJECT.to_owned()));
                };
                let ours = self.local_bool(key);
                let answer = if def.result == ResultFunction::Or {
                    offered || ours
                } else {
                    offered && ours
                };
                let answer = format_bool(answer);
                self.apply(key, answer);
                Ok(Outcome::Respond(answer.to_owned()))
            }
            ResultFunction::List => match self.select_from_list(key, value) {
                Some(choice) => {
                    self.apply(key, &choice);
                    Ok(Outcome::Respond(choice))
                }
                None => {
                    if !self.default_acceptable(key) {
                        return Err(NegotiationError::NoAcceptableValue {
                            key: def.name.to_owned(),
                        });
                    }
                    Ok(Outcome::Respond(REJECT.to_owned()))
                }
            },
            ResultFunction::Declarative | ResultFunction::None => Ok(Outcome::Nothing),
        }
    }

    /// The first element of the offered list that we accept, as spelled by the offerer.
    fn select_from_list(&self, key: Key, offered: &str) -> Option<String> {
        let ours = self.local_list(key);
        split_list(offered)
            .filter(|item| {
                !item.is_empty() && item.len() <= self.config.limits.max_simple_value_len
            })
            .find(|item| ours.iter().any(|o| list_item_eq(key, o, item)))
            .map(str::to_owned)
    }

    /// Whether the key's default value is among the values we accept (list keys).
    fn default_acceptable(&self, key: Key) -> bool {
        match key.def().default {
            Some(default) if key.def().result == ResultFunction::List => self
                .local_list(key)
                .iter()
                .any(|o| list_item_eq(key, o, default)),
            _ => true,
        }
    }

    /// Handles the peer's answer to our offer.
    fn process_answer(&mut self, key: Key, value: &str) -> Result<Outcome, NegotiationError> {
        let def = key.def();
        let (offered, determined) = {
            let st = self.state_mut(key);
            st.awaiting = false;
            st.received = true;
            (st.offered.clone().unwrap_or_default(), st.answer_optional)
        };
        if is_special_answer(value) {
            // Reject, Irrelevant, NotUnderstood: the key keeps its default, unless our offer
            // alone decides the result.
            if !determined {
                self.reset_to_default(key);
                if !self.default_acceptable(key) {
                    return Err(NegotiationError::NoAcceptableValue {
                        key: def.name.to_owned(),
                    });
                }
            }
            return Ok(Outcome::Nothing);
        }
        let bad = || NegotiationError::InvalidAnswer {
            key: def.name.to_owned(),
            value: clip(value),
            offered: clip(&offered),
        };
        match def.result {
            ResultFunction::Minimum | ResultFunction::Maximum => {
                let (min, max) = numeric_bounds(def.value_type);
                let answer = parse_number_in(value, min, max).map_err(|_| bad())?;
                let ours = parse_number(&offered).map_err(|_| bad())?;
                let admissible = if def.result == ResultFunction::Minimum {
                    answer <= ours
                } else {
                    answer >= ours
                };
                if !admissible {
                    return Err(bad());
                }
                self.apply(key, value);
            }
            ResultFunction::Or | ResultFunction::And => {
                let answer = parse_bool(value).map_err(|_| bad())?;
                let ours = parse_bool(&offered).map_err(|_| bad())?;
                // OR: our Yes can only be answered Yes; AND: our No only No.
                if determined && answer != ours {
                    return Err(bad());
                }
                self.apply(key, value);
            }
            ResultFunction::List => {
                let listed = split_list(&offered).any(|o| list_item_eq(key, o, value));
                if value.contains(',') || !listed {
                    return Err(bad());
                }
                self.apply(key, value);
            }
            ResultFunction::Declarative | ResultFunction::None => {}
        }
        Ok(Outcome::Nothing)
    }

    fn reset_to_default(&mut self, key: Key) {
        if let Some(default) = key.def().default {
            self.apply(key, default);
        }
    }

    /// Stores an agreed value (already validated) in the typed result.
    fn apply(&mut self, key: Key, value: &str) {
        let number = parse_number(value).ok();
        let boolean = parse_bool(value).ok();
        let p = &mut self.params;
        match key {
            Key::HeaderDigest => {
                if let Some(d) = Digest::from_wire(value) {
                    p.header_digest = d;
                }
            }
            Key::DataDigest => {
                if let Some(d) = Digest::from_wire(value) {
                    p.data_digest = d;
                }
            }
            Key::TaskReporting => {
                if let Some(t) = TaskReporting::from_wire(value) {
                    p.task_reporting = t;
                }
            }
            Key::InitialR2T => p.initial_r2t = boolean.unwrap_or(p.initial_r2t),
            Key::ImmediateData => p.immediate_data = boolean.unwrap_or(p.immediate_data),
            Key::DataPduInOrder => p.data_pdu_in_order = boolean.unwrap_or(p.data_pdu_in_order),
            Key::DataSequenceInOrder => {
                p.data_sequence_in_order = boolean.unwrap_or(p.data_sequence_in_order);
            }
            Key::RdmaExtensions => p.rdma_extensions = boolean.unwrap_or(p.rdma_extensions),
            _ => {
                let Some(n) = number else { return };
                match key {
                    Key::MaxConnections => p.max_connections = to_u16(n),
                    Key::MaxBurstLength => p.max_burst_length = to_u32(n),
                    Key::FirstBurstLength => p.first_burst_length = to_u32(n),
                    Key::DefaultTime2Wait => p.default_time2wait = to_u16(n),
                    Key::DefaultTime2Retain => p.default_time2retain = to_u16(n),
                    Key::MaxOutstandingR2T => p.max_outstanding_r2t = to_u16(n),
                    Key::ErrorRecoveryLevel => p.error_recovery_level = to_u8(n),
                    Key::IscsiProtocolLevel => p.iscsi_protocol_level = to_u8(n),
                    Key::InitiatorRecvDataSegmentLength => {
                        p.initiator_recv_data_segment_length = to_u32(n);
                    }
                    Key::TargetRecvDataSegmentLength => {
                        p.target_recv_data_segment_length = to_u32(n);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Our value for a numerical negotiated key.
    fn local_number(&self, key: Key) -> u64 {
        let c = &self.config;
        match key {
            Key::MaxConnections => u64::from(c.max_connections),
            Key::MaxBurstLength => u64::from(c.max_burst_length),
            Key::FirstBurstLength => u64::from(c.first_burst_length),
            Key::DefaultTime2Wait => u64::from(c.default_time2wait),
            Key::DefaultTime2Retain => u64::from(c.default_time2retain),
            Key::MaxOutstandingR2T => u64::from(c.max_outstanding_r2t),
            Key::ErrorRecoveryLevel => u64::from(c.error_recovery_level),
            Key::IscsiProtocolLevel => u64::from(c.iscsi_protocol_level),
            Key::InitiatorRecvDataSegmentLength => u64::from(c.initiator_recv_data_segment_length),
            Key::TargetRecvDataSegmentLength => u64::from(c.target_recv_data_segment_length),
            Key::MaxRecvDataSegmentLength => u64::from(c.max_recv_data_segment_length),
            Key::MaxOutstandingUnexpectedPdus => u64::from(c.max_outstanding_unexpected_pdus),
            _ => key
                .def()
                .default
                .and_then(|d| parse_number(d).ok())
                .unwrap_or(0),
        }
    }

    /// Our value for a boolean negotiated key.
    fn local_bool(&self, key: Key) -> bool {
        let c = &self.config;
        match key {
            Key::InitialR2T => c.initial_r2t,
            Key::ImmediateData => c.immediate_data,
            Key::DataPduInOrder => c.data_pdu_in_order,
            Key::DataSequenceInOrder => c.data_sequence_in_order,
            Key::RdmaExtensions => {
                self.iser && self.leading && self.params.session_type == SessionType::Normal
            }
            _ => false,
        }
    }

    /// Our acceptable values for a list key, preferred first.
    fn local_list(&self, key: Key) -> Vec<&'static str> {
        match key {
            Key::HeaderDigest => self
                .config
                .header_digest
                .iter()
                .map(|d| d.as_str())
                .collect(),
            Key::DataDigest => self.config.data_digest.iter().map(|d| d.as_str()).collect(),
            Key::TaskReporting => self
                .config
                .task_reporting
                .iter()
                .map(|t| t.as_str())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The value we would offer or declare for `key`, if we have one.
    fn local_value(&self, key: Key) -> Option<String> {
        let c = &self.config;
        let def = key.def();
        match key {
            Key::InitiatorName => c.initiator_name.clone(),
            Key::InitiatorAlias => c.initiator_alias.clone(),
            Key::TargetName => c.target_name.clone(),
            Key::TargetAlias => c.target_alias.clone(),
            Key::TargetPortalGroupTag => c.target_portal_group_tag.map(|t| t.to_string()),
            Key::SessionType => Some(self.params.session_type.as_str().to_owned()),
            Key::HeaderDigest | Key::DataDigest | Key::TaskReporting => {
                Some(join_list(self.local_list(key)))
            }
            _ => match def.value_type {
                ValueType::Boolean => Some(format_bool(self.local_bool(key)).to_owned()),
                ValueType::Numerical { .. } | ValueType::NumericalOrZero { .. } => {
                    Some(format_number(self.local_number(key)))
                }
                _ => None,
            },
        }
    }

    /// Whether RDMAExtensions is, or is about to be, `Yes` from our point of view.
    fn expect_rdma(&self) -> bool {
        let st = self.state(Key::RdmaExtensions);
        if st.received {
            self.params.rdma_extensions
        } else if let Some(offered) = &st.offered {
            offered == YES
        } else {
            self.params.rdma_extensions
        }
    }

    /// Our expected value of a boolean key: agreed if exchanged, else our own wish.
    fn expect_bool(&self, key: Key) -> bool {
        if self.state(key).received {
            match key {
                Key::InitialR2T => self.params.initial_r2t,
                Key::ImmediateData => self.params.immediate_data,
                _ => self.local_bool(key),
            }
        } else {
            self.local_bool(key)
        }
    }

    fn should_offer(&self, key: Key) -> bool {
        let def = key.def();
        let st = self.state(key);
        if st.offered.is_some() || (st.received && !def.is_declarative()) {
            return false;
        }
        let we_may_send = match self.role {
            Role::Initiator => def.may_be_sent_by_initiator(),
            Role::Target => def.may_be_sent_by_target(),
        };
        let stage_ok = match self.stage {
            Stage::Security => def.phase == Phase::AnyStage,
            Stage::Operational => matches!(def.phase, Phase::Operational | Phase::AnyStage),
            Stage::FullFeature => false,
        };
        if !we_may_send || !stage_ok || (def.usage == Usage::LeadingOnly && !self.leading) {
            return false;
        }
        let w = def.irrelevant_when;
        let rdma = self.expect_rdma();
        let irrelevant = (w.discovery && self.params.session_type == SessionType::Discovery)
            || (w.rdma_yes && rdma)
            || (w.rdma_no && !rdma)
            || (w.no_unsolicited_data
                && self.expect_bool(Key::InitialR2T)
                && !self.expect_bool(Key::ImmediateData));
        if irrelevant {
            return false;
        }
        let differs = self.local_value(key).as_deref() != def.default;
        match key {
            // Optional keys: only when we want something else than the default.
            Key::IscsiProtocolLevel
            | Key::TaskReporting
            | Key::RdmaExtensions
            | Key::MaxOutstandingUnexpectedPdus => differs,
            // The initiator names the target it logs in to (optional for Discovery).
            Key::TargetName => {
                self.role == Role::Initiator
                    && (self.params.session_type == SessionType::Normal || differs)
            }
            _ if def.is_declarative() => true,
            // A target offers only what it wants different from the default; an initiator
            // states all its operational wishes.
            _ => self.role == Role::Initiator || differs,
        }
    }

    /// Our offers and declarations for keys not yet exchanged in the current stage. Call it
    /// after [`Negotiator::handle`] so that keys the peer just offered are not offered back.
    ///
    /// What is offered: an initiator states every relevant key (names and `SessionType` in
    /// the security stage, all operational keys in the operational stage); a target declares
    /// its `TargetPortalGroupTag`, alias and MaxRecvDataSegmentLength and offers only the keys
    /// the initiator has not offered and for which it wants a non-default value. Keys
    /// irrelevant to the session (Discovery, iSER) and leading-only keys on another connection
    /// are left out. Security keys (AuthMethod, CHAP...) are never produced here: the
    /// authenticator adds them. In full feature phase nothing is offered: the application
    /// adds what it needs (e.g. `SendTargets=All`).
    ///
    /// The login layer may move to the next stage once this returns nothing and
    /// [`Negotiator::is_complete`] holds.
    pub fn offer(&mut self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for &key in OFFER_ORDER {
            if !self.should_offer(key) {
                continue;
            }
            let Some(value) = self.local_value(key) else {
                continue;
            };
            self.record_offer(key, &value);
            out.push((key.name().to_owned(), value));
        }
        out
    }

    fn record_offer(&mut self, key: Key, value: &str) {
        let def = key.def();
        let role = self.role;
        {
            let st = self.state_mut(key);
            st.offered = Some(value.to_owned());
        }
        if def.is_declarative() {
            match key {
                Key::MaxRecvDataSegmentLength | Key::MaxOutstandingUnexpectedPdus => {
                    if let Ok(n) = parse_number(value) {
                        self.set_declared(key, role, n);
                    }
                }
                Key::InitiatorName => self.params.initiator_name = Some(value.to_owned()),
                Key::InitiatorAlias => self.params.initiator_alias = Some(value.to_owned()),
                Key::TargetName => self.params.target_name = Some(value.to_owned()),
                Key::TargetAlias => self.params.target_alias = Some(value.to_owned()),
                Key::TargetPortalGroupTag => {
                    if let Ok(n) = parse_number(value) {
                        self.params.target_portal_group_tag = Some(to_u16(n));
                    }
                }
                _ => {}
            }
            return;
        }
        let determined = (def.result == ResultFunction::And && value == NO)
            || (def.result == ResultFunction::Or && value == YES);
        {
            let st = self.state_mut(key);
            st.awaiting = true;
            st.answer_optional = determined;
        }
        if determined {
            self.apply(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn initiator_config() -> LocalConfig {
        LocalConfig {
            initiator_name: Some("iqn.2024-01.org.example:init".into()),
            target_name: Some("iqn.2024-01.org.example:tgt".into()),
            ..LocalConfig::default()
        }
    }

    fn target(session_type: SessionType) -> Negotiator {
        let mut t = Negotiator::new(
            Role::Target,
            LocalConfig::default(),
            session_type,
            true,
            false,
        );
        t.set_stage(Stage::Operational);
        t
    }

    fn names() -> Vec<(&'static str, &'static str)> {
        vec![
            ("InitiatorName", "iqn.2024-01.org.example:init"),
            ("TargetName", "iqn.2024-01.org.example:tgt"),
        ]
    }

    fn answer<'a>(out: &'a HandleOutput, key: &str) -> Option<&'a str> {
        out.responses
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn rank_orders_dependencies() {
        assert!(rank("SessionType") < rank("RDMAExtensions"));
        assert!(rank("RDMAExtensions") < rank("HeaderDigest"));
        assert!(rank("MaxBurstLength") < rank("FirstBurstLength"));
    }

    #[test]
    fn iscsi_names_checked() {
        assert!(valid_iscsi_name("iqn.2024-01.org.example:a"));
        assert!(!valid_iscsi_name(""));
        assert!(!valid_iscsi_name("iqn. x"));
        assert!(!valid_iscsi_name(&"a".repeat(224)));
    }

    #[test]
    fn first_burst_capped_by_max_burst_as_responder() {
        let mut t = target(SessionType::Normal);
        let mut pairs = names();
        pairs.push(("FirstBurstLength", "65536"));
        pairs.push(("MaxBurstLength", "16384"));
        let out = t.handle(&pairs).unwrap();
        assert_eq!(answer(&out, "MaxBurstLength"), Some("16384"));
        assert_eq!(answer(&out, "FirstBurstLength"), Some("16384"));
        // Responses keep the received order even though MaxBurstLength was handled first.
        assert_eq!(out.responses[0].0, "FirstBurstLength");
    }

    #[test]
    fn first_burst_irrelevant_without_unsolicited_data() {
        let mut t = target(SessionType::Normal);
        let mut pairs = names();
        pairs.push(("FirstBurstLength", "4096"));
        pairs.push(("InitialR2T", "Yes"));
        pairs.push(("ImmediateData", "No"));
        let out = t.handle(&pairs).unwrap();
        assert_eq!(answer(&out, "FirstBurstLength"), Some("Irrelevant"));
        assert_eq!(t.result().first_burst_length, 65536);
    }

    #[test]
    fn determined_offers_need_no_answer() {
        let config = LocalConfig {
            immediate_data: false,
            ..initiator_config()
        };
        let mut i = Negotiator::new(Role::Initiator, config, SessionType::Normal, true, false);
        i.set_stage(Stage::Operational);
        let offers = i.offer();
        assert!(
            offers
                .iter()
                .any(|(k, v)| k == "ImmediateData" && v == "No")
        );
        // InitialR2T=Yes (OR) and ImmediateData=No (AND) are decided by the offer itself.
        let outstanding = i.outstanding_keys();
        assert!(!outstanding.contains(&"InitialR2T"));
        assert!(!outstanding.contains(&"ImmediateData"));
        assert!(outstanding.contains(&"MaxBurstLength"));
        assert!(!i.result().immediate_data);
    }

    #[test]
    fn security_keys_pass_through_in_security_stage() {
        let mut t = Negotiator::new(
            Role::Target,
            LocalConfig::default(),
            SessionType::Normal,
            true,
            false,
        );
        let mut pairs = names();
        pairs.push(("AuthMethod", "CHAP,None"));
        let out = t.handle(&pairs).unwrap();
        assert!(out.responses.is_empty());
        assert_eq!(
            out.passthrough,
            [("AuthMethod".to_string(), "CHAP,None".to_string())]
        );
        // An operational key in the security stage is refused.
        let err = t.handle(&[("MaxBurstLength", "512")]).unwrap_err();
        assert!(matches!(err, NegotiationError::WrongStage { .. }));
    }

    #[test]
    fn unknown_keys_are_bounded() {
        let config = LocalConfig {
            max_unknown_keys: 2,
            ..LocalConfig::default()
        };
        let mut t = Negotiator::new(Role::Target, config, SessionType::Normal, true, false);
        t.set_stage(Stage::Operational);
        let mut pairs = names();
        pairs.push(("X-a", "1"));
        pairs.push(("X-b", "1"));
        t.handle(&pairs).unwrap();
        let err = t.handle(&[("X-c", "1")]).unwrap_err();
        assert_eq!(err, NegotiationError::TooManyKeys { max: 2 });
        assert_eq!(err.login_status(), (0x03, 0x02));
    }
}
