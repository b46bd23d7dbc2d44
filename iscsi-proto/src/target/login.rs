//! The login phase of a target connection (RFC 7143 §6), sans-IO.
//!
//! [`TargetLogin`] takes Login requests one at a time and answers each with a Login response
//! ([`LoginStep`]). It runs the security stage through the CHAP authenticator
//! ([`crate::auth`]), the operational stage through the [`Negotiator`], and asks its
//! [`LoginHost`] (the engine) two questions: may this initiator see this target, and which
//! session (TSIH) does the login open or reinstate.
//!
//! Every failure ends in a Login response with the RFC's status (authentication failure,
//! target not found, missing parameter, unsupported version, out of resources, ...); the
//! caller sends it and closes the connection.

use std::sync::Arc;

use bytes::Bytes;

use crate::auth::{LOGIN_SEGMENT, TargetAuthConfig, TargetAuthenticator, is_security_key};
use crate::pdu::{Isid, LoginRequest, LoginResponse, LoginStatus, Stage, Tsih};
use crate::serial::{CmdSn, StatSn};
use crate::text::{
    LocalConfig, NegotiatedParams, Negotiator, Role, SessionType, Stage as TextStage,
    TextAssembler, encode_text,
};

/// Who is logging in to what (asked of [`LoginHost::authorize`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginIdentity {
    /// InitiatorName.
    pub initiator_name: String,
    /// TargetName (absent in discovery sessions that did not name one).
    pub target_name: Option<String>,
    /// SessionType.
    pub session_type: SessionType,
    /// The initiator's session identifier.
    pub isid: Isid,
    /// TSIH sent by the initiator (0: a new session).
    pub tsih: Tsih,
    /// Connection ID.
    pub cid: u16,
}

/// What the engine decides during a login.
pub trait LoginHost {
    /// The initiator named itself and its target: may it log in? Returns the target's
    /// authentication settings, or the status to refuse with (`NOT_FOUND`,
    /// `AUTHORIZATION_FAILURE`, `TARGET_REMOVED`...).
    fn authorize(&mut self, who: &LoginIdentity) -> Result<Arc<TargetAuthConfig>, LoginStatus>;

    /// The login is about to enter full feature phase (authenticated as `user` when CHAP
    /// ran): create the session (TSIH 0: returns a new TSIH) or reinstate the one named
    /// (RFC 7143 §6.3.5), or refuse (`SESSION_DOES_NOT_EXIST`, `TOO_MANY_CONNECTIONS`,
    /// `OUT_OF_RESOURCES`...).
    fn open_session(
        &mut self,
        who: &LoginIdentity,
        user: Option<&str>,
    ) -> Result<Tsih, LoginStatus>;
}

/// Settings of a login.
#[derive(Clone, Debug)]
pub struct LoginConfig {
    /// The target's negotiation wishes (TargetPortalGroupTag, digests accepted, lengths...).
    pub negotiation: LocalConfig,
    /// The StatSN of the first response.
    pub initial_stat_sn: StatSn,
    /// Commands the session will accept at once: MaxCmdSN = ExpCmdSN + depth - 1 in the
    /// final response.
    pub queue_depth: u32,
    /// Fresh random bytes for the CHAP identifier and challenge (at least 33).
    pub random: Vec<u8>,
}

/// Why a login failed (the status is also in the response sent).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("login failed with status {:02x}{:02x}: {message}", status.class, status.detail)]
pub struct LoginError {
    /// The status sent.
    pub status: LoginStatus,
    /// What happened.
    pub message: String,
}

/// What to do with a login response.
#[derive(Debug)]
pub enum LoginStep {
    /// Send it; the login goes on.
    Continue(LoginResponse),
    /// Send it, then close the connection.
    Failed(LoginResponse, LoginError),
    /// Send it; the connection is in full feature phase: take [`TargetLogin::finish`].
    Complete(LoginResponse),
}

/// The result of a successful login.
#[derive(Debug)]
pub struct LoginOutcome {
    /// The negotiator, to carry on with Text negotiation.
    pub negotiator: Negotiator,
    /// Values in force.
    pub params: NegotiatedParams,
    /// Who logged in.
    pub identity: LoginIdentity,
    /// The session's TSIH.
    pub tsih: Tsih,
    /// The CHAP user, if CHAP ran.
    pub user: Option<String>,
    /// ExpCmdSN for full feature phase.
    pub exp_cmd_sn: CmdSn,
    /// The next StatSN.
    pub stat_sn: StatSn,
}

/// A login status from its (class, detail) pair.
fn status_of((class, detail): (u8, u8)) -> LoginStatus {
    LoginStatus { class, detail }
}

/// A target connection's login.
#[derive(Debug)]
pub struct TargetLogin {
    cfg: LoginConfig,
    negotiator: Negotiator,
    stage: Stage,
    started: bool,
    isid: Isid,
    tsih: Tsih,
    cid: u16,
    exp_cmd_sn: CmdSn,
    stat_sn: StatSn,
    assembler: TextAssembler,
    /// Answer text still to send after a C=1 response.
    out_rest: Option<Bytes>,
    identity: Option<LoginIdentity>,
    auth_cfg: Option<Arc<TargetAuthConfig>>,
    auth: Option<TargetAuthenticator>,
    done: bool,
    completed: bool,
}

impl TargetLogin {
    /// A login on a new connection. `iser`: the connection is an iSER one (RDMAExtensions).
    pub fn new(cfg: LoginConfig, iser: bool) -> Self {
        let negotiator = Negotiator::new(
            Role::Target,
            cfg.negotiation.clone(),
            SessionType::Normal,
            true,
            iser,
        );
        TargetLogin {
            stat_sn: cfg.initial_stat_sn,
            assembler: TextAssembler::new(cfg.negotiation.limits.max_text_len),
            cfg,
            negotiator,
            stage: Stage::Security,
            started: false,
            isid: Isid::default(),
            tsih: Tsih(0),
            cid: 0,
            exp_cmd_sn: CmdSn(0),
            out_rest: None,
            identity: None,
            auth_cfg: None,
            auth: None,
            done: false,
            completed: false,
        }
    }

    fn response(&mut self, req: &LoginRequest, status: LoginStatus) -> LoginResponse {
        let stat_sn = self.stat_sn;
        self.stat_sn = stat_sn.next();
        LoginResponse {
            transit: false,
            cont: false,
            csg: req.csg,
            nsg: req.csg,
            version_max: 0,
            version_active: 0,
            isid: self.isid,
            tsih: self.tsih,
            itt: req.itt,
            stat_sn,
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.exp_cmd_sn,
            status,
            data: Bytes::new(),
        }
    }

    fn fail(&mut self, req: &LoginRequest, status: LoginStatus, message: String) -> LoginStep {
        self.done = true;
        let mut r = self.response(req, status);
        r.tsih = Tsih(0);
        r.nsg = r.csg;
        LoginStep::Failed(r, LoginError { status, message })
    }

    /// Handles one Login request.
    pub fn handle(&mut self, req: &LoginRequest, host: &mut dyn LoginHost) -> LoginStep {
        if self.done {
            return self.fail(
                req,
                LoginStatus::INITIATOR_ERROR,
                "login already ended".into(),
            );
        }
        if !self.started {
            self.started = true;
            self.isid = req.isid;
            self.tsih = req.tsih;
            self.cid = req.cid;
            self.exp_cmd_sn = req.cmd_sn;
            if req.version_min > 0 {
                return self.fail(
                    req,
                    LoginStatus::UNSUPPORTED_VERSION,
                    format!(
                        "version {}..{} not supported",
                        req.version_min, req.version_max
                    ),
                );
            }
            if req.csg == Stage::FullFeature {
                return self.fail(
                    req,
                    LoginStatus::INITIATOR_ERROR,
                    "login starts in FFP".into(),
                );
            }
            self.stage = req.csg;
        } else if req.isid != self.isid || req.tsih != self.tsih || req.cid != self.cid {
            return self.fail(
                req,
                LoginStatus::INITIATOR_ERROR,
                "ISID, TSIH or CID changed during login".into(),
            );
        } else if req.csg != self.stage {
            return self.fail(
                req,
                LoginStatus::INITIATOR_ERROR,
                format!(
                    "request in stage {:?}, login is in {:?}",
                    req.csg, self.stage
                ),
            );
        }
        if req.transit && (req.nsg as u8) <= (req.csg as u8) {
            return self.fail(
                req,
                LoginStatus::INITIATOR_ERROR,
                "transit to no later stage".into(),
            );
        }
        self.negotiator.set_stage(match self.stage {
            Stage::Security => TextStage::Security,
            _ => TextStage::Operational,
        });

        // The rest of a long answer of ours.
        if let Some(rest) = self.out_rest.take() {
            return self.send_text(req, rest, false, Stage::Security);
        }
        let text = match self.assembler.feed(&req.data, req.cont) {
            Ok(Some(text)) => text,
            Ok(None) => {
                let r = self.response(req, LoginStatus::SUCCESS);
                return LoginStep::Continue(r);
            }
            Err(e) => {
                return self.fail(req, status_of(e.login_status()), e.to_string());
            }
        };
        let out = match self.negotiator.handle_text(&text) {
            Ok(out) => out,
            Err(e) => {
                return self.fail(req, status_of(e.login_status()), e.to_string());
            }
        };
        let mut answers = out.responses;

        if self.identity.is_none() {
            let p = self.negotiator.result();
            let Some(initiator_name) = p.initiator_name.clone() else {
                return self.fail(
                    req,
                    LoginStatus::MISSING_PARAMETER,
                    "no InitiatorName".into(),
                );
            };
            let who = LoginIdentity {
                initiator_name,
                target_name: p.target_name.clone(),
                session_type: p.session_type,
                isid: self.isid,
                tsih: self.tsih,
                cid: self.cid,
            };
            match host.authorize(&who) {
                Ok(auth) => self.auth_cfg = Some(auth),
                Err(status) => {
                    let msg = format!(
                        "{} may not log in to {}",
                        who.initiator_name,
                        who.target_name.as_deref().unwrap_or("discovery")
                    );
                    return self.fail(req, status, msg);
                }
            }
            self.identity = Some(who);
        }
        let Some(auth_cfg) = self.auth_cfg.clone() else {
            return self.fail(req, LoginStatus::TARGET_ERROR, "no authorization".into());
        };

        let mut security = Vec::new();
        for (k, v) in out.passthrough {
            if is_security_key(&k) {
                security.push((k, v));
            } else {
                answers.push((k, "NotUnderstood".to_owned()));
            }
        }
        let random = self.cfg.random.clone();
        let auth = self
            .auth
            .get_or_insert_with(|| TargetAuthenticator::new(auth_cfg.clone(), &random));
        if !security.is_empty() {
            if self.stage != Stage::Security {
                return self.fail(
                    req,
                    LoginStatus::INITIATOR_ERROR,
                    "security keys outside the security stage".into(),
                );
            }
            match auth.handle(&security) {
                Ok(_) if auth.is_failed() => {
                    let e = auth.check_transit().err();
                    let msg = e.map(|e| e.to_string()).unwrap_or_default();
                    return self.fail(req, LoginStatus::AUTHENTICATION_FAILURE, msg);
                }
                Ok(reply) => answers.extend(reply),
                Err(e) => {
                    return self.fail(req, status_of(e.login_status()), e.to_string());
                }
            }
        }
        let auth_done = auth.is_done();
        // Leaving (or skipping) the security stage without the authentication required.
        let transit_refused = if self.stage == Stage::Operational
            || (req.transit && !auth_done && security.is_empty())
        {
            auth.check_transit().err()
        } else {
            None
        };
        if let Some(e) = transit_refused {
            return self.fail(req, status_of(e.login_status()), e.to_string());
        }
        answers.extend(self.negotiator.offer());

        // Stage transition: stay while authentication or our offers are pending.
        let mut next = None;
        if req.transit
            && (self.stage != Stage::Security || auth_done)
            && (req.nsg != Stage::FullFeature || self.negotiator.is_complete())
        {
            next = Some(req.nsg);
        }
        let data = match encode_text(&answers) {
            Ok(d) => d.freeze(),
            Err(e) => return self.fail(req, LoginStatus::TARGET_ERROR, e.to_string()),
        };
        if next == Some(Stage::FullFeature) && data.len() <= 8192 {
            let Some(who) = self.identity.clone() else {
                return self.fail(req, LoginStatus::TARGET_ERROR, "no identity".into());
            };
            let user = self
                .auth
                .as_ref()
                .and_then(|a| a.authenticated_user().map(str::to_owned));
            match host.open_session(&who, user.as_deref()) {
                Ok(tsih) => self.tsih = tsih,
                Err(status) => {
                    return self.fail(req, status, "session refused".into());
                }
            }
        }
        match next {
            Some(nsg) => self.send_text(req, data, true, nsg),
            None => self.send_text(req, data, false, Stage::Security),
        }
    }

    /// Sends `data` (cut at 8192 bytes, the login MaxRecvDataSegmentLength), transiting to
    /// `nsg` when `transit` and nothing remains.
    fn send_text(
        &mut self,
        req: &LoginRequest,
        data: Bytes,
        transit: bool,
        nsg: Stage,
    ) -> LoginStep {
        if data.len() > LOGIN_SEGMENT {
            self.out_rest = Some(data.slice(LOGIN_SEGMENT..));
            let mut r = self.response(req, LoginStatus::SUCCESS);
            r.cont = true;
            r.data = data.slice(..LOGIN_SEGMENT);
            return LoginStep::Continue(r);
        }
        if !transit {
            let mut r = self.response(req, LoginStatus::SUCCESS);
            r.data = data;
            return LoginStep::Continue(r);
        }
        if nsg == Stage::FullFeature {
            self.done = true;
            let mut r = self.response(req, LoginStatus::SUCCESS);
            r.transit = true;
            r.nsg = Stage::FullFeature;
            r.data = data;
            // The same clamp as the session's window.
            r.max_cmd_sn = self
                .exp_cmd_sn
                .add(self.cfg.queue_depth.clamp(1, 1 << 16))
                .sub(1);
            self.completed = true;
            return LoginStep::Complete(r);
        }
        self.stage = nsg;
        let mut r = self.response(req, LoginStatus::SUCCESS);
        r.transit = true;
        r.nsg = nsg;
        r.data = data;
        LoginStep::Continue(r)
    }

    /// Whether the login ended (completed or failed).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The ITT-independent result of a completed login. `None` if the login did not complete.
    pub fn finish(self) -> Option<LoginOutcome> {
        if !self.completed {
            return None;
        }
        let identity = self.identity?;
        Some(LoginOutcome {
            params: self.negotiator.result(),
            negotiator: self.negotiator,
            identity,
            tsih: self.tsih,
            user: self
                .auth
                .as_ref()
                .and_then(|a| a.authenticated_user().map(str::to_owned)),
            exp_cmd_sn: self.exp_cmd_sn,
            stat_sn: self.stat_sn,
        })
    }
}
