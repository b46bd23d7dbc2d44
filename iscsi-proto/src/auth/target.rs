//! The target's side of the security stage: `AuthMethod` selection and CHAP verification,
//! with optional mutual (bidirectional) CHAP.

use std::sync::Arc;

use super::chap::{
    ChapAlgorithm, ChapCredential, ChapEncoding, DEFAULT_CHALLENGE_LEN, MAX_CHAP_BINARY_LEN,
    MIN_CHALLENGE_LEN, secrets_equal,
};
use super::error::AuthError;
use super::received::{
    AuthKey, Received, no_special_answer, parse_algorithm, parse_challenge, parse_identifier,
    parse_response,
};
use super::{METHOD_CHAP, METHOD_NONE};
use crate::text::error::clip;
use crate::text::value::{REJECT, split_list};

/// Which `AuthMethod` a target accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AuthPolicy {
    /// No authentication: only `AuthMethod=None` is accepted, and an initiator may also skip
    /// the security stage.
    #[default]
    None,
    /// CHAP is required: only `AuthMethod=CHAP` is accepted, and the initiator may not leave
    /// the security stage before it authenticated.
    Chap,
}

/// The target's authentication settings, usually shared by every login to one target (wrap it
/// in an [`Arc`]).
#[derive(Clone, Debug)]
pub struct TargetAuthConfig {
    /// Which `AuthMethod` is accepted.
    pub method: AuthPolicy,
    /// The initiator credentials allowed to log in (initiator-to-target direction), looked
    /// up by `CHAP_N`. The first entry with a given name wins.
    pub credentials: Vec<ChapCredential>,
    /// The target's own name and secret, sent when an initiator asks for mutual CHAP. Its
    /// secret must differ from every initiator secret (RFC 7143 §9.2.1): a login whose
    /// initiator secret equals it fails even without mutual CHAP.
    pub mutual: Option<ChapCredential>,
    /// Refuse initiators that do not ask for mutual CHAP.
    pub require_mutual: bool,
    /// The algorithms accepted. The selection follows the initiator's order (RFC 7143
    /// §6.2.1: the first offered value the responder supports), so this order does not
    /// matter. Default: all four.
    pub algorithms: Vec<ChapAlgorithm>,
    /// Length of the challenge sent, in bytes, clamped to
    /// [`MIN_CHALLENGE_LEN`]`..=`[`MAX_CHAP_BINARY_LEN`]. Default [`DEFAULT_CHALLENGE_LEN`]
    /// (32): at least as long as any supported digest. libiscsi keeps the challenge in a
    /// 255-character buffer, so stay below 127 bytes to serve it.
    pub challenge_len: usize,
    /// How `CHAP_C` and the mutual `CHAP_R` are written. Default hex, the only encoding
    /// libiscsi reads.
    pub encoding: ChapEncoding,
}

impl Default for TargetAuthConfig {
    fn default() -> Self {
        TargetAuthConfig {
            method: AuthPolicy::None,
            credentials: Vec::new(),
            mutual: None,
            require_mutual: false,
            algorithms: ChapAlgorithm::ALL.to_vec(),
            challenge_len: DEFAULT_CHALLENGE_LEN,
            encoding: ChapEncoding::Hex,
        }
    }
}

impl TargetAuthConfig {
    /// A configuration requiring CHAP from the given initiator credentials.
    pub fn chap(credentials: Vec<ChapCredential>) -> Self {
        TargetAuthConfig {
            method: AuthPolicy::Chap,
            credentials,
            ..TargetAuthConfig::default()
        }
    }

    /// The challenge length actually used: [`TargetAuthConfig::challenge_len`] clamped.
    pub fn effective_challenge_len(&self) -> usize {
        self.challenge_len
            .clamp(MIN_CHALLENGE_LEN, MAX_CHAP_BINARY_LEN)
    }

    /// How many random bytes [`TargetAuthenticator::new`] needs: one for the identifier plus
    /// the challenge.
    pub fn random_len(&self) -> usize {
        1 + self.effective_challenge_len()
    }

    /// Checks the configuration for mistakes that would make every CHAP login fail or break
    /// RFC 7143 §9.2.1: no credentials or algorithms under [`AuthPolicy::Chap`], empty
    /// secrets, repeated names, a mutual secret equal to an initiator secret,
    /// `require_mutual` without a mutual credential, a challenge length out of range.
    /// Authenticators work with any configuration; this is for configuration time.
    pub fn validate(&self) -> Result<(), AuthError> {
        let config = |msg: &str| Err(AuthError::Config(msg.to_owned()));
        if self.method == AuthPolicy::Chap {
            if self.credentials.is_empty() {
                return config("CHAP required but no initiator credentials");
            }
            if self.algorithms.is_empty() {
                return config("CHAP required but no algorithms");
            }
        }
        for (i, c) in self.credentials.iter().enumerate() {
            if c.secret.is_empty() {
                return Err(AuthError::Config(format!(
                    "empty secret for CHAP name {:?}",
                    clip(&c.user)
                )));
            }
            if self.credentials.iter().take(i).any(|o| o.user == c.user) {
                return Err(AuthError::Config(format!(
                    "CHAP name {:?} configured twice",
                    clip(&c.user)
                )));
            }
        }
        if let Some(m) = &self.mutual {
            if m.secret.is_empty() {
                return config("empty mutual CHAP secret");
            }
            if self.credentials.iter().any(|c| c.same_secret(m)) {
                return Err(AuthError::IdenticalSecrets);
            }
        } else if self.require_mutual {
            return config("mutual CHAP required but no target credential");
        }
        if !(MIN_CHALLENGE_LEN..=MAX_CHAP_BINARY_LEN).contains(&self.challenge_len) {
            return Err(AuthError::Config(format!(
                "challenge length {} outside {MIN_CHALLENGE_LEN}..={MAX_CHAP_BINARY_LEN}",
                self.challenge_len
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
enum State {
    /// Waiting for `AuthMethod`.
    Start,
    /// CHAP selected; waiting for `CHAP_A`.
    AwaitAlgorithm,
    /// Challenge sent; waiting for `CHAP_N` and `CHAP_R`.
    ChallengeSent {
        algorithm: ChapAlgorithm,
        id: u8,
        challenge: Vec<u8>,
    },
    /// Authentication complete (`user` is `None` for `AuthMethod=None`).
    Done {
        user: Option<String>,
        algorithm: Option<ChapAlgorithm>,
        mutual: bool,
    },
    /// Failed for good: every later call returns this error.
    Failed(AuthError),
}

/// The target's authenticator for one connection's security stage.
///
/// Feed it the security keys of each Login request ([`HandleOutput::passthrough`]) with
/// [`TargetAuthenticator::handle`] and send back what it returns along with the negotiator's
/// answers. Before accepting a request with T=1 out of the security stage (or a first request
/// that starts in the operational stage), call [`TargetAuthenticator::check_transit`]: it
/// refuses with 0x0201 when the policy requires CHAP and authentication is not complete. On
/// any error, fail the login with [`AuthError::login_status`].
///
/// When no offered value is acceptable (`AuthMethod` or `CHAP_A`), `handle` answers `Reject`
/// (RFC 7143 §6.2) and the authenticator is failed from then on ([`Self::is_failed`]): the
/// next request, or the attempt to leave the stage, gets the 0x0201 error. A login layer may
/// also fail the login at once.
///
/// [`HandleOutput::passthrough`]: crate::text::HandleOutput::passthrough
#[derive(Clone, Debug)]
pub struct TargetAuthenticator {
    config: Arc<TargetAuthConfig>,
    /// Identifier byte then challenge, taken from the caller's random bytes.
    random: Vec<u8>,
    state: State,
}

impl TargetAuthenticator {
    /// A new authenticator for one connection. `random` must hold at least
    /// [`TargetAuthConfig::random_len`] fresh random bytes (the identifier, then the
    /// challenge); extra bytes are ignored. Too few bytes make the challenge step fail with
    /// [`AuthError::InsufficientRandom`] (status 0x0300).
    pub fn new(config: impl Into<Arc<TargetAuthConfig>>, random: &[u8]) -> Self {
        let config = config.into();
        let random = random.get(..config.random_len()).unwrap_or(random).to_vec();
        TargetAuthenticator {
            config,
            random,
            state: State::Start,
        }
    }

    /// Handles the security keys (`AuthMethod`, `CHAP_*`) of one received Login request and
    /// returns the keys to answer with (possibly none). Any other key is refused.
    ///
    /// Steps: `AuthMethod` → `AuthMethod=CHAP` or `None` (or `Reject`); `CHAP_A` →
    /// `CHAP_A`, `CHAP_I`, `CHAP_C` (or `CHAP_A=Reject`); `CHAP_N`, `CHAP_R` (and `CHAP_I`,
    /// `CHAP_C` for mutual CHAP) → nothing, or the target's `CHAP_N`, `CHAP_R`. `AuthMethod`
    /// and `CHAP_A` may come in the same request. A request without security keys changes
    /// nothing.
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

    /// Whether authentication is complete, so the initiator may leave the security stage.
    /// True from the start under [`AuthPolicy::None`] until a refused offer.
    pub fn is_done(&self) -> bool {
        match self.state {
            State::Done { .. } => true,
            State::Start => self.config.method == AuthPolicy::None,
            _ => false,
        }
    }

    /// Whether the authenticator failed (every later call returns the error).
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// Call when the initiator asks to leave the security stage (T=1), or starts its login
    /// in the operational stage: `Ok` when it may, otherwise the error to fail the login
    /// with: [`AuthError::AuthenticationRequired`] (0x0201) when CHAP is required and was
    /// never started, [`AuthError::Incomplete`] (0x0201) in the middle of the exchange, or
    /// the earlier failure.
    pub fn check_transit(&self) -> Result<(), AuthError> {
        match &self.state {
            State::Done { .. } => Ok(()),
            State::Start => match self.config.method {
                AuthPolicy::None => Ok(()),
                AuthPolicy::Chap => Err(AuthError::AuthenticationRequired),
            },
            State::AwaitAlgorithm => Err(AuthError::Incomplete {
                waiting_for: "CHAP_A",
            }),
            State::ChallengeSent { .. } => Err(AuthError::Incomplete {
                waiting_for: "CHAP_N and CHAP_R",
            }),
            State::Failed(e) => Err(e.clone()),
        }
    }

    /// The authenticated CHAP name, once CHAP succeeded (`None` for `AuthMethod=None`).
    pub fn authenticated_user(&self) -> Option<&str> {
        match &self.state {
            State::Done { user, .. } => user.as_deref(),
            _ => None,
        }
    }

    /// The negotiated CHAP algorithm, once CHAP succeeded.
    pub fn algorithm(&self) -> Option<ChapAlgorithm> {
        match &self.state {
            State::Done { algorithm, .. } => *algorithm,
            _ => None,
        }
    }

    /// Whether the target also authenticated itself to the initiator (mutual CHAP).
    pub fn is_mutual(&self) -> bool {
        matches!(self.state, State::Done { mutual: true, .. })
    }

    fn step(&mut self, rx: &Received<'_>) -> Result<Vec<(String, String)>, AuthError> {
        let mut out = Vec::new();
        if rx.is_empty() {
            return Ok(out);
        }
        match &self.state {
            State::Start => {
                rx.only(&[AuthKey::AuthMethod, AuthKey::ChapA])?;
                let offered = match rx.get(AuthKey::AuthMethod) {
                    Some(v) => v,
                    // CHAP_A before AuthMethod selected CHAP.
                    None => {
                        return Err(AuthError::UnexpectedKey {
                            key: AuthKey::ChapA.name().to_owned(),
                        });
                    }
                };
                self.select_method(offered, &mut out)?;
                match (&self.state, rx.get(AuthKey::ChapA)) {
                    (State::AwaitAlgorithm, Some(a)) => self.select_algorithm(a, &mut out)?,
                    (State::Done { .. }, Some(_)) => {
                        return Err(AuthError::UnexpectedKey {
                            key: AuthKey::ChapA.name().to_owned(),
                        });
                    }
                    _ => {}
                }
            }
            State::AwaitAlgorithm => {
                rx.only(&[AuthKey::ChapA])?;
                let offered = rx.require(AuthKey::ChapA)?;
                self.select_algorithm(offered, &mut out)?;
            }
            State::ChallengeSent {
                algorithm,
                id,
                challenge,
            } => {
                rx.only(&[
                    AuthKey::ChapN,
                    AuthKey::ChapR,
                    AuthKey::ChapI,
                    AuthKey::ChapC,
                ])?;
                let (algorithm, id) = (*algorithm, *id);
                let challenge = challenge.clone();
                self.verify(rx, algorithm, id, &challenge, &mut out)?;
            }
            State::Done { .. } => {
                rx.only(&[])?;
            }
            State::Failed(e) => return Err(e.clone()),
        }
        Ok(out)
    }

    fn select_method(
        &mut self,
        offered: &str,
        out: &mut Vec<(String, String)>,
    ) -> Result<(), AuthError> {
        no_special_answer(AuthKey::AuthMethod, offered)?;
        let wanted = match self.config.method {
            AuthPolicy::None => METHOD_NONE,
            AuthPolicy::Chap => METHOD_CHAP,
        };
        let key = AuthKey::AuthMethod.name().to_owned();
        if split_list(offered).any(|m| m == wanted) {
            out.push((key, wanted.to_owned()));
            self.state = match self.config.method {
                AuthPolicy::None => State::Done {
                    user: None,
                    algorithm: None,
                    mutual: false,
                },
                AuthPolicy::Chap => State::AwaitAlgorithm,
            };
        } else {
            out.push((key, REJECT.to_owned()));
            self.state = State::Failed(AuthError::NoAcceptableMethod {
                offered: clip(offered),
            });
        }
        Ok(())
    }

    fn select_algorithm(
        &mut self,
        offered: &str,
        out: &mut Vec<(String, String)>,
    ) -> Result<(), AuthError> {
        no_special_answer(AuthKey::ChapA, offered)?;
        let chosen = split_list(offered)
            .filter_map(parse_algorithm)
            .find(|a| self.config.algorithms.contains(a));
        let Some(algorithm) = chosen else {
            out.push((AuthKey::ChapA.name().to_owned(), REJECT.to_owned()));
            self.state = State::Failed(AuthError::NoCommonAlgorithm {
                offered: clip(offered),
            });
            return Ok(());
        };
        let needed = self.config.random_len();
        let (id, challenge) = match self.random.split_first() {
            Some((&id, challenge)) if self.random.len() >= needed => (id, challenge.to_vec()),
            _ => {
                return Err(AuthError::InsufficientRandom {
                    needed,
                    got: self.random.len(),
                });
            }
        };
        out.push((
            AuthKey::ChapA.name().to_owned(),
            algorithm.code().to_string(),
        ));
        out.push((AuthKey::ChapI.name().to_owned(), id.to_string()));
        out.push((
            AuthKey::ChapC.name().to_owned(),
            self.config.encoding.encode(&challenge),
        ));
        self.state = State::ChallengeSent {
            algorithm,
            id,
            challenge,
        };
        Ok(())
    }

    fn verify(
        &mut self,
        rx: &Received<'_>,
        algorithm: ChapAlgorithm,
        id: u8,
        challenge: &[u8],
        out: &mut Vec<(String, String)>,
    ) -> Result<(), AuthError> {
        let user = rx.require(AuthKey::ChapN)?;
        let response = parse_response(rx.require(AuthKey::ChapR)?, algorithm)?;
        let mutual_request = match (rx.get(AuthKey::ChapI), rx.get(AuthKey::ChapC)) {
            (Some(i), Some(c)) => Some((parse_identifier(i)?, parse_challenge(c)?)),
            (None, None) => None,
            (Some(_), None) => return Err(AuthError::MissingKey { key: "CHAP_C" }),
            (None, Some(_)) => return Err(AuthError::MissingKey { key: "CHAP_I" }),
        };

        // Verify the initiator. An unknown name costs the same hash as a known one.
        let credential = self.config.credentials.iter().find(|c| c.user == user);
        let secret = credential.map_or(&[][..], |c| c.secret.as_slice());
        let expected = algorithm.response(id, secret, challenge);
        let matches = secrets_equal(&expected, &response);
        if credential.is_none() {
            return Err(AuthError::UnknownUser { user: clip(user) });
        }
        if !matches || secret.is_empty() {
            return Err(AuthError::WrongResponse { user: clip(user) });
        }
        if let Some(m) = &self.config.mutual
            && secrets_equal(&m.secret, secret)
        {
            return Err(AuthError::IdenticalSecrets);
        }

        // Authenticate the target when asked.
        let mutual_requested = mutual_request.is_some();
        match mutual_request {
            Some((peer_id, peer_challenge)) => {
                let mutual = match &self.config.mutual {
                    Some(m) if !m.secret.is_empty() => m,
                    _ => return Err(AuthError::MutualNotConfigured),
                };
                if peer_challenge == challenge {
                    return Err(AuthError::ReflectedChallenge);
                }
                let answer = algorithm.response(peer_id, &mutual.secret, &peer_challenge);
                out.push((AuthKey::ChapN.name().to_owned(), mutual.user.clone()));
                out.push((
                    AuthKey::ChapR.name().to_owned(),
                    self.config.encoding.encode(&answer),
                ));
            }
            None if self.config.require_mutual => return Err(AuthError::MutualRequired),
            None => {}
        }
        self.state = State::Done {
            user: Some(user.to_owned()),
            algorithm: Some(algorithm),
            mutual: mutual_requested,
        };
        Ok(())
    }
}
