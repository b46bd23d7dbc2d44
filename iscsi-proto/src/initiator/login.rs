//! The login phase of an initiator connection (RFC 7143 §6), sans-IO.
//!
//! [`InitiatorLogin`] builds the Login requests and takes the target's responses one at a
//! time: the security stage through the CHAP authenticator ([`crate::auth`]), the operational
//! stage through the same [`Negotiator`] the target uses, C-bit texts in both directions,
//! redirection, and every failure status turned into a [`LoginFailure`] that says why.
//!
//! ```
//! use iscsi_proto::initiator::{InitiatorLogin, InitiatorLoginConfig, InitiatorStep};
//! use iscsi_proto::text::LocalConfig;
//!
//! let negotiation = LocalConfig {
//!     initiator_name: Some("iqn.2026-11.rs.iscsi:init".into()),
//!     target_name: Some("iqn.2026-11.rs.iscsi:disk".into()),
//!     ..LocalConfig::default()
//! };
//! let mut login = InitiatorLogin::new(InitiatorLoginConfig::new(negotiation), false);
//! let first = login.start();
//! assert!(first.data.starts_with(b"InitiatorName=iqn.2026-11.rs.iscsi:init\0"));
//! // Send `first`, then feed each Login response to `login.handle(&response)`:
//! // InitiatorStep::Send(next) goes out, InitiatorStep::Complete(outcome) starts the full
//! // feature phase.
//! # let _ = InitiatorStep::Send(first);
//! ```

use std::sync::Arc;

use bytes::Bytes;

use crate::auth::{
    AuthError, InitiatorAuthConfig, InitiatorAuthenticator, LOGIN_SEGMENT, is_security_key,
};
use crate::pdu::{Isid, LoginRequest, LoginResponse, LoginStatus, Stage, Tsih};
use crate::serial::{CmdSn, Itt, StatSn};
use crate::text::{
    LocalConfig, NegotiatedParams, NegotiationError, Negotiator, Role, SessionType,
    Stage as TextStage, TextAssembler, encode_text, parse_text,
};

/// Most Login requests one login may take (a target that never lets us through).
const MAX_EXCHANGES: u32 = 64;

/// Settings of one login.
#[derive(Clone, Debug)]
pub struct InitiatorLoginConfig {
    /// Our negotiation wishes: `initiator_name` (required), `target_name` (normal sessions),
    /// lengths, digests, ImmediateData, InitialR2T...
    pub negotiation: LocalConfig,
    /// Normal or discovery session.
    pub session_type: SessionType,
    /// Our session identifier.
    pub isid: Isid,
    /// 0 for a new session; an existing TSIH to reinstate a connection of it.
    pub tsih: Tsih,
    /// Connection ID.
    pub cid: u16,
    /// The ITT of the Login requests.
    pub itt: Itt,
    /// The CmdSN of the Login requests (the session's first CmdSN for a leading login).
    pub cmd_sn: CmdSn,
    /// Authentication: `None` offers `AuthMethod=None` only.
    pub auth: Option<Arc<InitiatorAuthConfig>>,
    /// Fresh random bytes for our mutual CHAP challenge (at least 33 when mutual CHAP is on).
    pub random: Vec<u8>,
}

impl InitiatorLoginConfig {
    /// A normal session's leading login with `negotiation`, ISID 0x80..., no authentication.
    pub fn new(negotiation: LocalConfig) -> Self {
        InitiatorLoginConfig {
            negotiation,
            session_type: SessionType::Normal,
            isid: Isid([0x80, 0, 0, 0, 0, 1]),
            tsih: Tsih(0),
            cid: 0,
            itt: Itt(0),
            cmd_sn: CmdSn(1),
            auth: None,
            random: Vec::new(),
        }
    }
}

/// Why a login failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginFailure {
    /// The target refused with this status (class 2: our fault, 3: the target's).
    #[error("the target refused the login with status {:02x}{:02x} ({})", .0.class, .0.detail, status_text(*.0))]
    Refused(LoginStatus),
    /// Authentication failed on our side (a wrong target answer, a method we do not accept).
    #[error("authentication: {0}")]
    Auth(#[from] AuthError),
    /// The target's keys could not be negotiated.
    #[error("negotiation: {0}")]
    Negotiation(#[from] NegotiationError),
    /// The target broke the login rules (stage, flags, fields).
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Human words for a login status (RFC 7143 §11.13.5).
pub fn status_text(s: LoginStatus) -> &'static str {
    match (s.class, s.detail) {
        (0, _) => "success",
        (1, 1) => "target moved temporarily",
        (1, 2) => "target moved permanently",
        (1, _) => "redirection",
        (2, 0) => "initiator error",
        (2, 1) => "authentication failed",
        (2, 2) => "authorization failure: this initiator may not use the target",
        (2, 3) => "target not found",
        (2, 4) => "target removed",
        (2, 5) => "unsupported version",
        (2, 6) => "too many connections",
        (2, 7) => "missing parameter",
        (2, 8) => "cannot include this connection in the session",
        (2, 9) => "session type not supported",
        (2, 10) => "session does not exist",
        (2, 11) => "invalid request during login",
        (2, _) => "initiator error",
        (3, 0) => "target error",
        (3, 1) => "service unavailable",
        (3, 2) => "out of resources",
        _ => "target error",
    }
}

/// What to do after a Login response.
#[derive(Debug)]
pub enum InitiatorStep {
    /// Send this request; the login goes on.
    Send(LoginRequest),
    /// The login succeeded: full feature phase.
    Complete(Box<InitiatorLoginOutcome>),
    /// The target moved (status class 1): log in there instead.
    Redirect {
        /// `TargetAddress` values given (`host:port,tpgt`).
        addresses: Vec<String>,
        /// Moved for good (0x0102) rather than for now (0x0101).
        permanent: bool,
    },
}

/// The result of a successful login.
#[derive(Debug)]
pub struct InitiatorLoginOutcome {
    /// The negotiator, to carry on with Text negotiation.
    pub negotiator: Negotiator,
    /// Values in force.
    pub params: NegotiatedParams,
    /// The session's TSIH (from the target).
    pub tsih: Tsih,
    /// The next CmdSN to use.
    pub cmd_sn: CmdSn,
    /// ExpCmdSN and MaxCmdSN from the final response.
    pub exp_cmd_sn: CmdSn,
    /// See `exp_cmd_sn`.
    pub max_cmd_sn: CmdSn,
    /// The StatSN we expect next.
    pub exp_stat_sn: StatSn,
}

/// An initiator connection's login.
#[derive(Debug)]
pub struct InitiatorLogin {
    cfg: InitiatorLoginConfig,
    negotiator: Negotiator,
    auth: InitiatorAuthenticator,
    stage: Stage,
    tsih: Tsih,
    exp_stat_sn: StatSn,
    assembler: TextAssembler,
    /// Our text still to send after a C=1 request.
    out_rest: Option<Bytes>,
    exchanges: u32,
    done: bool,
}

impl InitiatorLogin {
    /// A login. `iser`: the connection is an iSER one (RDMAExtensions=Yes is offered).
    pub fn new(cfg: InitiatorLoginConfig, iser: bool) -> Self {
        let negotiator = Negotiator::new(
            Role::Initiator,
            cfg.negotiation.clone(),
            cfg.session_type,
            cfg.tsih == Tsih(0),
            iser,
        );
        let auth_cfg = cfg.auth.clone().unwrap_or_default();
        let auth = InitiatorAuthenticator::new(auth_cfg, &cfg.random);
        InitiatorLogin {
            tsih: cfg.tsih,
            assembler: TextAssembler::new(cfg.negotiation.limits.max_text_len),
            cfg,
            negotiator,
            auth,
            stage: Stage::Security,
            exp_stat_sn: StatSn(0),
            out_rest: None,
            exchanges: 0,
            done: false,
        }
    }

    /// The first Login request: names, session type and AuthMethod in the security stage.
    pub fn start(&mut self) -> LoginRequest {
        self.negotiator.set_stage(TextStage::Security);
        // Without CHAP there is nothing to wait for: the first request asks to leave the
        // security stage (T=1), as libiscsi and open-iscsi do. Waiting for the target's
        // AuthMethod would need a second security-stage request with nothing in it, which
        // LIO refuses ("zero length security payload", status 0201). Read before `start`,
        // which moves the authenticator on.
        let transit = self.auth.is_done();
        let mut keys = self.negotiator.offer();
        keys.extend(self.auth.start());
        self.request(keys, transit)
    }

    /// Builds the next request with `keys`, asking to move on when `transit`.
    fn request(&mut self, keys: Vec<(String, String)>, transit: bool) -> LoginRequest {
        let data = encode_text(&keys).map(|b| b.freeze()).unwrap_or_default();
        self.request_data(data, transit)
    }

    fn request_data(&mut self, data: Bytes, transit: bool) -> LoginRequest {
        let (data, cont) = if data.len() > LOGIN_SEGMENT {
            self.out_rest = Some(data.slice(LOGIN_SEGMENT..));
            (data.slice(..LOGIN_SEGMENT), true)
        } else {
            (data, false)
        };
        let transit = transit && !cont;
        let nsg = match (transit, self.stage) {
            (false, s) => s,
            (true, Stage::Security) => Stage::Operational,
            (true, _) => Stage::FullFeature,
        };
        LoginRequest {
            transit,
            cont,
            csg: self.stage,
            nsg,
            version_max: 0,
            version_min: 0,
            isid: self.cfg.isid,
            tsih: self.tsih,
            itt: self.cfg.itt,
            cid: self.cfg.cid,
            cmd_sn: self.cfg.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
            data,
        }
    }

    fn fail(&mut self, e: LoginFailure) -> Result<InitiatorStep, LoginFailure> {
        self.done = true;
        Err(e)
    }

    /// Handles one Login response.
    pub fn handle(&mut self, resp: &LoginResponse) -> Result<InitiatorStep, LoginFailure> {
        if self.done {
            return Err(LoginFailure::Protocol("login already ended".into()));
        }
        self.exchanges += 1;
        if self.exchanges > MAX_EXCHANGES {
            return self.fail(LoginFailure::Protocol(format!(
                "no full feature phase after {MAX_EXCHANGES} exchanges"
            )));
        }
        if resp.itt != self.cfg.itt {
            return self.fail(LoginFailure::Protocol("response to another ITT".into()));
        }
        // RFC 7143 §11.13.4 has each login response carry the previous StatSN + 1, but real
        // targets do not all do so (tgtd repeats it during CHAP): the last one counts.
        self.exp_stat_sn = resp.stat_sn.next();
        match resp.status.class {
            0 => {}
            1 => {
                let addresses = parse_text(&resp.data, &self.cfg.negotiation.limits)
                    .map(|pairs| {
                        pairs
                            .into_iter()
                            .filter(|(k, _)| *k == "TargetAddress")
                            .map(|(_, v)| v.to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                self.done = true;
                return Ok(InitiatorStep::Redirect {
                    addresses,
                    permanent: resp.status.detail == 2,
                });
            }
            _ => return self.fail(LoginFailure::Refused(resp.status)),
        }
        if resp.csg != self.stage {
            return self.fail(LoginFailure::Protocol(format!(
                "response in stage {:?} while we are in {:?}",
                resp.csg, self.stage
            )));
        }
        // The rest of a long text of ours: the target answered a C=1 request.
        if let Some(rest) = self.out_rest.take() {
            return Ok(InitiatorStep::Send(self.request_data(rest, false)));
        }
        let text = match self.assembler.feed(&resp.data, resp.cont) {
            Ok(Some(t)) => t,
            // More of the target's text follows: ask for it with an empty request.
            Ok(None) => return Ok(InitiatorStep::Send(self.request(Vec::new(), false))),
            Err(e) => return self.fail(LoginFailure::Protocol(e.to_string())),
        };
        let out = match self.negotiator.handle_text(&text) {
            Ok(o) => o,
            Err(e) => return self.fail(e.into()),
        };
        let mut answers = out.responses;
        let mut security = Vec::new();
        for (k, v) in out.passthrough {
            if is_security_key(&k) {
                security.push((k, v));
            }
        }
        if !security.is_empty() {
            if self.stage != Stage::Security {
                return self.fail(LoginFailure::Protocol(
                    "security keys outside the security stage".into(),
                ));
            }
            match self.auth.handle(&security) {
                Ok(keys) => answers.extend(keys),
                Err(e) => return self.fail(e.into()),
            }
        }
        if resp.transit {
            if (resp.nsg as u8) <= (resp.csg as u8) {
                return self.fail(LoginFailure::Protocol("transit to no later stage".into()));
            }
            if self.stage == Stage::Security
                && let Err(e) = self.auth.check_transit()
            {
                return self.fail(e.into());
            }
            if resp.nsg == Stage::FullFeature {
                if !self.negotiator.is_complete() {
                    return self.fail(LoginFailure::Protocol(format!(
                        "full feature phase with our keys unanswered: {:?}",
                        self.negotiator.outstanding_keys()
                    )));
                }
                return Ok(self.complete(resp));
            }
            self.stage = resp.nsg;
            self.negotiator.set_stage(TextStage::Operational);
            answers.extend(self.negotiator.offer());
        }
        // Ask to move on once authentication is over; in the operational stage always (the
        // target answers our offers and moves on in the same response, or stays with T=0).
        let transit = match self.stage {
            Stage::Security => self.auth.may_request_transit(),
            _ => true,
        };
        Ok(InitiatorStep::Send(self.request(answers, transit)))
    }

    fn complete(&mut self, resp: &LoginResponse) -> InitiatorStep {
        self.done = true;
        self.negotiator.set_stage(TextStage::FullFeature);
        let negotiator = self.negotiator.clone();
        InitiatorStep::Complete(Box::new(InitiatorLoginOutcome {
            params: negotiator.result(),
            negotiator,
            tsih: resp.tsih,
            cmd_sn: self.cfg.cmd_sn,
            exp_cmd_sn: resp.exp_cmd_sn,
            max_cmd_sn: resp.max_cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        }))
    }
}
