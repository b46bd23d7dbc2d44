//! The initiator's side of the security stage: offers `AuthMethod` and `CHAP_A`, answers the
//! target's challenge, and with mutual CHAP challenges the target and checks its answer.

use std::sync::Arc;

use super::chap::{
    ChapAlgorithm, ChapCredential, ChapEncoding, DEFAULT_CHALLENGE_LEN, MAX_CHAP_BINARY_LEN,
    MIN_CHALLENGE_LEN, secrets_equal,
};
use super::error::AuthError;
use super::received::{
    AuthKey, Received, parse_algorithm, parse_challenge, parse_identifier, parse_response,
};
use super::{METHOD_CHAP, METHOD_NONE};
use crate::text::error::clip;
use crate::text::value::{REJECT, join_list};

/// The initiator's default `CHAP_A` offer: SHA3-256, SHA-1, MD5 (see
/// [`InitiatorAuthConfig::algorithms`]).
pub const DEFAULT_INITIATOR_ALGORITHMS: [ChapAlgorithm; 3] = [
    ChapAlgorithm::Sha3_256,
    ChapAlgorithm::Sha1,
    ChapAlgorithm::Md5,
];

/// The initiator's authentication settings.
///
/// What is offered follows from the credentials:
/// - no `credential` and no `mutual`: `AuthMethod=None`;
/// - `credential` only: `AuthMethod=CHAP,None` (a target may choose not to authenticate us;
///   that costs the initiator nothing, as it does not authenticate the target either);
/// - `credential` and `mutual`: `AuthMethod=CHAP`, and the target must prove its identity.
///
/// `mutual` without `credential` cannot work (mutual CHAP rides on the initiator's CHAP
/// exchange): CHAP is offered and the exchange fails with [`AuthError::Config`].
#[derive(Clone, Debug)]
pub struct InitiatorAuthConfig {
    /// Our CHAP name and secret, to answer the target's challenge.
    pub credential: Option<ChapCredential>,
    /// The name and secret expected from the target for mutual CHAP; `Some` asks for mutual
    /// CHAP and makes it mandatory. The secret must differ from ours (RFC 7143 §9.2.1).
    pub mutual: Option<ChapCredential>,
    /// The algorithms offered in `CHAP_A`, most preferred first. Default: SHA3-256, SHA-1, MD5
    /// (`8,6,5`). SHA-256 (7) is left out of the default because tgt reads 7 as SHA-1: a
    /// target of that family picks 7 and refuses the SHA-256 answer (seen with tgtd 1.0.85).
    /// Add it where every target follows RFC 7143. RFC 7143 §12.1.3 asks initiators to always
    /// offer MD5 (5) for interoperability; leave it out only when every target supports the
    /// others.
    pub algorithms: Vec<ChapAlgorithm>,
    /// Length of our mutual CHAP challenge, in bytes, clamped to
    /// [`MIN_CHALLENGE_LEN`]`..=`[`MAX_CHAP_BINARY_LEN`]. Default [`DEFAULT_CHALLENGE_LEN`].
    pub challenge_len: usize,
    /// How our `CHAP_R` and `CHAP_C` are written. Default hex.
    pub encoding: ChapEncoding,
}

impl Default for InitiatorAuthConfig {
    fn default() -> Self {
        InitiatorAuthConfig {
            credential: None,
            mutual: None,
            algorithms: DEFAULT_INITIATOR_ALGORITHMS.to_vec(),
            challenge_len: DEFAULT_CHALLENGE_LEN,
            encoding: ChapEncoding::Hex,
        }
    }
}

impl InitiatorAuthConfig {
    /// A configuration authenticating with `credential` (one-way CHAP).
    pub fn chap(credential: ChapCredential) -> Self {
        InitiatorAuthConfig {
            credential: Some(credential),
            ..InitiatorAuthConfig::default()
        }
    }

    /// A configuration authenticating with `credential` and requiring the target to prove
    /// itself with `target` (mutual CHAP).
    pub fn mutual_chap(credential: ChapCredential, target: ChapCredential) -> Self {
        InitiatorAuthConfig {
            credential: Some(credential),
            mutual: Some(target),
            ..InitiatorAuthConfig::default()
        }
    }

    /// The challenge length actually used: [`InitiatorAuthConfig::challenge_len`] clamped.
    pub fn effective_challenge_len(&self) -> usize {
        self.challenge_len
            .clamp(MIN_CHALLENGE_LEN, MAX_CHAP_BINARY_LEN)
    }

    /// How many random bytes [`InitiatorAuthenticator::new`] needs: one for the identifier
    /// plus the challenge with mutual CHAP, none otherwise.
    pub fn random_len(&self) -> usize {
        if self.mutual.is_some() {
            1 + self.effective_challenge_len()
        } else {
            0
        }
    }

    /// Checks the configuration for mistakes that would make every CHAP login fail or break
    /// RFC 7143 §9.2.1: `mutual` without `credential`, empty secrets, identical secrets for
    /// both directions, no algorithms, a challenge length out of range. Authenticators work
    /// with any configuration; this is for configuration time.
    pub fn validate(&self) -> Result<(), AuthError> {
        let config = |msg: &str| Err(AuthError::Config(msg.to_owned()));
        match (&self.credential, &self.mutual) {
            (None, Some(_)) => return config("mutual CHAP needs an initiator credential"),
            (Some(c), _) if c.secret.is_empty() => return config("empty CHAP secret"),
            (_, Some(m)) if m.secret.is_empty() => return config("empty mutual CHAP secret"),
            (Some(c), Some(m)) if c.same_secret(m) => return Err(AuthError::IdenticalSecrets),
            _ => {}
        }
        if self.credential.is_some() && self.algorithms.is_empty() {
            return config("no CHAP algorithms");
        }
        if !(MIN_CHALLENGE_LEN..=MAX_CHAP_BINARY_LEN).contains(&self.challenge_len) {
            return Err(AuthError::Config(format!(
                "challenge length {} outside {MIN_CHALLENGE_LEN}..={MAX_CHAP_BINARY_LEN}",
                self.challenge_len
            )));
        }
        Ok(())
    }

    fn offers_chap(&self) -> bool {
        self.credential.is_some() || self.mutual.is_some()
    }

    fn offers_none(&self) -> bool {
        self.mutual.is_none()
    }

    /// The offered algorithms without repetitions.
    fn offered_algorithms(&self) -> Vec<ChapAlgorithm> {
        let mut list = Vec::with_capacity(ChapAlgorithm::ALL.len());
        for a in &self.algorithms {
            if !list.contains(a) {
                list.push(*a);
            }
        }
        list
    }
}

#[derive(Clone, Debug)]
enum State {
    /// [`InitiatorAuthenticator::start`] not called yet.
    Initial,
    /// `AuthMethod` offered; waiting for the target's choice.
    AwaitMethod,
    /// `CHAP_A` offered; waiting for `CHAP_A`, `CHAP_I`, `CHAP_C`.
    AwaitChallenge { offered: Vec<ChapAlgorithm> },
    /// Response and our challenge sent; waiting for the target's `CHAP_N`, `CHAP_R`.
    AwaitTargetResponse {
        algorithm: ChapAlgorithm,
        id: u8,
        challenge: Vec<u8>,
    },
    /// Our part is complete.
    Done {
        algorithm: Option<ChapAlgorithm>,
        mutual: bool,
    },
    /// Failed for good: every later call returns this error.
    Failed(AuthError),
}

/// The initiator's authenticator for one connection's security stage.
///
/// Put [`InitiatorAuthenticator::start`]'s keys in the first Login request, then feed the
/// security keys of each Login response ([`HandleOutput::passthrough`]) to
/// [`InitiatorAuthenticator::handle`] and send what it returns in the next request. Once
/// [`InitiatorAuthenticator::may_request_transit`], the request may set T=1. When the target answers T=1
/// out of the security stage, call [`InitiatorAuthenticator::check_transit`]: it fails when
/// the target skipped a step we need (notably its mutual CHAP answer). On any error, drop the
/// connection.
///
/// [`HandleOutput::passthrough`]: crate::text::HandleOutput::passthrough
#[derive(Clone, Debug)]
pub struct InitiatorAuthenticator {
    config: Arc<InitiatorAuthConfig>,
    /// Identifier byte then challenge for mutual CHAP, from the caller's random bytes.
    random: Vec<u8>,
    state: State,
}

impl InitiatorAuthenticator {
    /// A new authenticator for one connection. With mutual CHAP, `random` must hold at
    /// least [`InitiatorAuthConfig::random_len`] fresh random bytes (identifier, then
    /// challenge); extra bytes are ignored. Too few bytes make the response step fail with
    /// [`AuthError::InsufficientRandom`].
    pub fn new(config: impl Into<Arc<InitiatorAuthConfig>>, random: &[u8]) -> Self {
        let config = config.into();
        let random = random.get(..config.random_len()).unwrap_or(random).to_vec();
        InitiatorAuthenticator {
            config,
            random,
            state: State::Initial,
        }
    }

    /// The keys for the first Login request of the security stage: `AuthMethod` with
    /// `CHAP,None`, `CHAP` or `None` (see [`InitiatorAuthConfig`]). Later calls return
    /// nothing.
    pub fn start(&mut self) -> Vec<(String, String)> {
        if !matches!(self.state, State::Initial) {
            return Vec::new();
        }
        let mut methods = Vec::with_capacity(2);
        if self.config.offers_chap() {
            methods.push(METHOD_CHAP);
        }
        if self.config.offers_none() {
            methods.push(METHOD_NONE);
        }
        self.state = State::AwaitMethod;
        vec![(AuthKey::AuthMethod.name().to_owned(), join_list(methods))]
    }

    /// Handles the security keys of one Login response and returns the keys for our next
    /// request (possibly none). A response without security keys changes nothing.
    pub fn handle<K, V>(&mut self, pairs: &[(K, V)]) -> Result<Vec<(String, String)>, AuthError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        if let State::Failed(e) = &self.state {
            return Err(e.clone());
        }
        let result = Received::parse(pairs).and_then(|rx| self.step(&rx));
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
        }
        result
    }

    /// Whether our part is complete: we may set T=1 to leave the security stage. With
    /// one-way CHAP this is as soon as our response is sent (the target's verdict is the
    /// Login status); with mutual CHAP once the target's response checked out.
    pub fn is_done(&self) -> bool {
        match self.state {
            State::Done { .. } => true,
            State::Initial => !self.config.offers_chap(),
            _ => false,
        }
    }

    /// Whether the next request may set T=1: our part is complete, or all that is left is the
    /// target's mutual CHAP answer, which comes in the response to that request (RFC 7143
    /// Appendix B: the initiator sends its CHAP_R with its own challenge and T=1;
    /// [`InitiatorAuthenticator::check_transit`] still refuses a transition without the
    /// target's proof). Some targets (tgtd) refuse any further security-stage request once
    /// they answered, so waiting with T=0 fails there.
    pub fn may_request_transit(&self) -> bool {
        self.is_done() || matches!(self.state, State::AwaitTargetResponse { .. })
    }

    /// Whether the authenticator failed (every later call returns the error).
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// Call when the target answers T=1 out of the security stage: `Ok` when that is
    /// acceptable, otherwise why not. A target that leaves without answering our
    /// `AuthMethod` is accepted only when we offered `None`.
    pub fn check_transit(&self) -> Result<(), AuthError> {
        match &self.state {
            State::Done { .. } => Ok(()),
            State::Initial if !self.config.offers_chap() => Ok(()),
            State::AwaitMethod if self.config.offers_none() => Ok(()),
            State::Initial | State::AwaitMethod => Err(AuthError::Incomplete {
                waiting_for: "AuthMethod",
            }),
            State::AwaitChallenge { .. } => Err(AuthError::Incomplete {
                waiting_for: "CHAP_A, CHAP_I and CHAP_C",
            }),
            State::AwaitTargetResponse { .. } => Err(AuthError::Incomplete {
                waiting_for: "the target's CHAP_N and CHAP_R",
            }),
            State::Failed(e) => Err(e.clone()),
        }
    }

    /// The negotiated CHAP algorithm, once our part is complete with CHAP.
    pub fn algorithm(&self) -> Option<ChapAlgorithm> {
        match &self.state {
            State::Done { algorithm, .. } => *algorithm,
            _ => None,
        }
    }

    /// Whether the target proved its identity (mutual CHAP succeeded).
    pub fn is_mutual(&self) -> bool {
        matches!(self.state, State::Done { mutual: true, .. })
    }

    fn step(&mut self, rx: &Received<'_>) -> Result<Vec<(String, String)>, AuthError> {
        if rx.is_empty() {
            return Ok(Vec::new());
        }
        match &self.state {
            State::Initial | State::Done { .. } => {
                rx.only(&[])?;
                Ok(Vec::new())
            }
            State::AwaitMethod => {
                rx.only(&[AuthKey::AuthMethod])?;
                let chosen = rx.require(AuthKey::AuthMethod)?;
                self.on_method(chosen)
            }
            State::AwaitChallenge { offered } => {
                rx.only(&[AuthKey::ChapA, AuthKey::ChapI, AuthKey::ChapC])?;
                let offered = offered.clone();
                self.on_challenge(rx, &offered)
            }
            State::AwaitTargetResponse {
                algorithm,
                id,
                challenge,
            } => {
                rx.only(&[AuthKey::ChapN, AuthKey::ChapR])?;
                let (algorithm, id) = (*algorithm, *id);
                let challenge = challenge.clone();
                self.on_target_response(rx, algorithm, id, &challenge)?;
                Ok(Vec::new())
            }
            State::Failed(e) => Err(e.clone()),
        }
    }

    fn on_method(&mut self, chosen: &str) -> Result<Vec<(String, String)>, AuthError> {
        let key = AuthKey::AuthMethod.name();
        if chosen == REJECT {
            return Err(AuthError::Rejected { key });
        }
        if chosen == METHOD_NONE && self.config.offers_none() {
            self.state = State::Done {
                algorithm: None,
                mutual: false,
            };
            return Ok(Vec::new());
        }
        if chosen != METHOD_CHAP || !self.config.offers_chap() {
            return Err(AuthError::NotOffered {
                key,
                value: clip(chosen),
            });
        }
        if self.config.credential.is_none() {
            return Err(AuthError::Config(
                "mutual CHAP needs an initiator credential".to_owned(),
            ));
        }
        let offered = self.config.offered_algorithms();
        if offered.is_empty() {
            return Err(AuthError::Config("no CHAP algorithms".to_owned()));
        }
        let list = join_list(offered.iter().map(|a| a.code().to_string()));
        self.state = State::AwaitChallenge { offered };
        Ok(vec![(AuthKey::ChapA.name().to_owned(), list)])
    }

    fn on_challenge(
        &mut self,
        rx: &Received<'_>,
        offered: &[ChapAlgorithm],
    ) -> Result<Vec<(String, String)>, AuthError> {
        let chosen = rx.require(AuthKey::ChapA)?;
        if chosen == REJECT {
            return Err(AuthError::Rejected {
                key: AuthKey::ChapA.name(),
            });
        }
        let algorithm = parse_algorithm(chosen)
            .filter(|a| offered.contains(a))
            .ok_or_else(|| AuthError::NotOffered {
                key: AuthKey::ChapA.name(),
                value: clip(chosen),
            })?;
        let id = parse_identifier(rx.require(AuthKey::ChapI)?)?;
        let challenge = parse_challenge(rx.require(AuthKey::ChapC)?)?;

        let credential = match &self.config.credential {
            Some(c) if !c.secret.is_empty() => c,
            Some(_) => return Err(AuthError::Config("empty CHAP secret".to_owned())),
            None => {
                return Err(AuthError::Config(
                    "mutual CHAP needs an initiator credential".to_owned(),
                ));
            }
        };
        let encoding = self.config.encoding;
        let response = algorithm.response(id, &credential.secret, &challenge);
        let mut out = vec![
            (AuthKey::ChapN.name().to_owned(), credential.user.clone()),
            (AuthKey::ChapR.name().to_owned(), encoding.encode(&response)),
        ];

        let Some(target) = &self.config.mutual else {
            self.state = State::Done {
                algorithm: Some(algorithm),
                mutual: false,
            };
            return Ok(out);
        };
        if target.secret.is_empty() {
            return Err(AuthError::Config("empty mutual CHAP secret".to_owned()));
        }
        if secrets_equal(&target.secret, &credential.secret) {
            return Err(AuthError::IdenticalSecrets);
        }
        let needed = self.config.random_len();
        let (our_id, our_challenge) = match self.random.split_first() {
            Some((&id, c)) if self.random.len() >= needed => (id, c.to_vec()),
            _ => {
                return Err(AuthError::InsufficientRandom {
                    needed,
                    got: self.random.len(),
                });
            }
        };
        if our_challenge == challenge {
            return Err(AuthError::ReflectedChallenge);
        }
        out.push((AuthKey::ChapI.name().to_owned(), our_id.to_string()));
        out.push((
            AuthKey::ChapC.name().to_owned(),
            encoding.encode(&our_challenge),
        ));
        self.state = State::AwaitTargetResponse {
            algorithm,
            id: our_id,
            challenge: our_challenge,
        };
        Ok(out)
    }

    fn on_target_response(
        &mut self,
        rx: &Received<'_>,
        algorithm: ChapAlgorithm,
        id: u8,
        challenge: &[u8],
    ) -> Result<(), AuthError> {
        let name = rx.require(AuthKey::ChapN)?;
        let response = parse_response(rx.require(AuthKey::ChapR)?, algorithm)?;
        let target = match &self.config.mutual {
            Some(t) => t,
            None => return Err(AuthError::Config("no mutual credential".to_owned())),
        };
        let expected = algorithm.response(id, &target.secret, challenge);
        if name != target.user {
            return Err(AuthError::UnknownUser { user: clip(name) });
        }
        if !secrets_equal(&expected, &response) {
            return Err(AuthError::WrongResponse { user: clip(name) });
        }
        self.state = State::Done {
            algorithm: Some(algorithm),
            mutual: true,
        };
        Ok(())
    }
}
