//! Why an authentication cannot go on, and the Login status a target answers it with.

use thiserror::Error;

/// Login status class/detail pairs used by [`AuthError::login_status`] (RFC 7143 §11.13.5).
pub mod login_status {
    /// 0x0200: initiator error: a malformed, missing or unexpected security key.
    pub const INITIATOR_ERROR: (u8, u8) = (0x02, 0x00);
    /// 0x0201: authentication failure.
    pub const AUTHENTICATION_FAILURE: (u8, u8) = (0x02, 0x01);
    /// 0x0300: target error: the target's own configuration or random source.
    pub const TARGET_ERROR: (u8, u8) = (0x03, 0x00);
}

/// An authentication that cannot go on.
///
/// A target fails the login with a Login response carrying [`AuthError::login_status`]; an
/// initiator drops the connection. No message ever contains a secret; values the peer sent
/// are shortened.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// A security key has a value that cannot be decoded or is out of range (a response of
    /// the wrong length, an identifier above 255, an empty or oversized challenge, ...).
    #[error("bad value for {key}: {reason}")]
    Malformed {
        /// The key.
        key: &'static str,
        /// What is wrong with the value.
        reason: String,
    },
    /// A key this step needs is absent (e.g. `CHAP_R` without `CHAP_N`, `CHAP_I` without
    /// `CHAP_C`).
    #[error("missing key {key}")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A key that does not belong to this step of the exchange, or to the method in use.
    #[error("unexpected key {key} at this step of authentication")]
    UnexpectedKey {
        /// The key, shortened.
        key: String,
    },
    /// The same key twice in one text.
    #[error("key {key} sent twice")]
    DuplicateKey {
        /// The key.
        key: &'static str,
    },
    /// None of the offered `AuthMethod` values is acceptable (the target answered
    /// `AuthMethod=Reject`).
    #[error("no acceptable AuthMethod among {offered:?}")]
    NoAcceptableMethod {
        /// The offered list, shortened.
        offered: String,
    },
    /// None of the offered `CHAP_A` algorithms is acceptable (the target answered
    /// `CHAP_A=Reject`).
    #[error("no acceptable CHAP algorithm among {offered:?}")]
    NoCommonAlgorithm {
        /// The offered list, shortened.
        offered: String,
    },
    /// The target requires CHAP and the initiator tried to leave the security stage
    /// without negotiating an authentication method.
    #[error("authentication required")]
    AuthenticationRequired,
    /// The peer tried to leave the security stage before the exchange was complete.
    #[error("security stage left before authentication completed (waiting for {waiting_for})")]
    Incomplete {
        /// What was still expected.
        waiting_for: &'static str,
    },
    /// The CHAP name is not one this side knows.
    #[error("unknown CHAP name {user:?}")]
    UnknownUser {
        /// The received name, shortened.
        user: String,
    },
    /// The CHAP response does not match the expected one.
    #[error("wrong CHAP response for {user:?}")]
    WrongResponse {
        /// The CHAP name the response was for, shortened.
        user: String,
    },
    /// The peer's challenge equals the one this side sent (a reflection attack, RFC 7143
    /// §9.2.1).
    #[error("the peer's CHAP challenge reflects ours")]
    ReflectedChallenge,
    /// The same secret would authenticate both directions (forbidden by RFC 7143 §9.2.1).
    #[error("the same CHAP secret is configured for both directions")]
    IdenticalSecrets,
    /// The initiator asked for mutual authentication and the target has no credential for
    /// it.
    #[error("mutual CHAP requested but no target credential is configured")]
    MutualNotConfigured,
    /// The target requires mutual authentication and the initiator did not ask for it.
    #[error("mutual CHAP required but the initiator did not send CHAP_I and CHAP_C")]
    MutualRequired,
    /// The peer answered `Reject` to our offer of this key (initiator side).
    #[error("the target rejected our {key} offer")]
    Rejected {
        /// The key.
        key: &'static str,
    },
    /// The peer selected a value we did not offer (initiator side).
    #[error("the target selected {key}={value:?}, which was not offered")]
    NotOffered {
        /// The key.
        key: &'static str,
        /// The selected value, shortened.
        value: String,
    },
    /// The random bytes given at construction are too few for the challenge to send.
    #[error("{needed} random bytes needed, {got} given")]
    InsufficientRandom {
        /// Bytes needed: one for the identifier plus the challenge length.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
    /// The local configuration cannot work (see `validate` on the configurations).
    #[error("invalid authentication configuration: {0}")]
    Config(String),
}

impl AuthError {
    /// The Login status class and detail a target answers this error with (RFC 7143
    /// §11.13.5): 0x0201 (authentication failure) for a failed or refused authentication,
    /// 0x0200 (initiator error) for malformed, missing, duplicate or unexpected keys, and
    /// 0x0300 (target error) for a local problem.
    pub fn login_status(&self) -> (u8, u8) {
        match self {
            AuthError::Malformed { .. }
            | AuthError::MissingKey { .. }
            | AuthError::UnexpectedKey { .. }
            | AuthError::DuplicateKey { .. }
            | AuthError::NotOffered { .. } => login_status::INITIATOR_ERROR,
            AuthError::InsufficientRandom { .. } | AuthError::Config(_) => {
                login_status::TARGET_ERROR
            }
            AuthError::NoAcceptableMethod { .. }
            | AuthError::NoCommonAlgorithm { .. }
            | AuthError::AuthenticationRequired
            | AuthError::Incomplete { .. }
            | AuthError::UnknownUser { .. }
            | AuthError::WrongResponse { .. }
            | AuthError::ReflectedChallenge
            | AuthError::IdenticalSecrets
            | AuthError::MutualNotConfigured
            | AuthError::MutualRequired
            | AuthError::Rejected { .. } => login_status::AUTHENTICATION_FAILURE,
        }
    }
}
