//! Negotiation errors and the Login status each maps to (RFC 7143 §11.13.5).

use thiserror::Error;

use super::params::{Role, Stage};
use super::parse::TextError;

/// Login status class/detail pairs used by [`NegotiationError::login_status`]
/// (RFC 7143 §11.13.5).
pub mod login_status {
    /// 0x0200: initiator error (miscellaneous), e.g. a protocol violation in the text.
    pub const INITIATOR_ERROR: (u8, u8) = (0x02, 0x00);
    /// 0x0207: missing parameter (InitiatorName, TargetName).
    pub const MISSING_PARAMETER: (u8, u8) = (0x02, 0x07);
    /// 0x0209: session type not supported.
    pub const SESSION_TYPE_NOT_SUPPORTED: (u8, u8) = (0x02, 0x09);
    /// 0x0300: target error (miscellaneous).
    pub const TARGET_ERROR: (u8, u8) = (0x03, 0x00);
    /// 0x0302: target out of resources, e.g. a text beyond our bounds.
    pub const OUT_OF_RESOURCES: (u8, u8) = (0x03, 0x02);
}

/// Longest value quoted in an error.
const MAX_QUOTED: usize = 64;

/// Shortens a peer-supplied value for inclusion in an error.
pub(crate) fn clip(value: &str) -> String {
    if value.len() <= MAX_QUOTED {
        return value.to_owned();
    }
    let mut end = MAX_QUOTED;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let mut s = value.get(..end).unwrap_or_default().to_owned();
    s.push('…');
    s
}

/// A negotiation that cannot go on.
///
/// A target answers it with a Login response carrying [`NegotiationError::login_status`] (or,
/// in full feature phase, with a Reject); an initiator drops the connection (RFC 7143 §6.2,
/// §6.10).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NegotiationError {
    /// The text itself is malformed or too large.
    #[error("malformed text: {0}")]
    Text(#[from] TextError),
    /// The peer sent a key it already sent (offered, declared or answered) in this
    /// negotiation (RFC 7143 §6.2: parameters are negotiated at most once).
    #[error("key {key} sent a second time (renegotiation)")]
    Renegotiation {
        /// The key name.
        key: String,
    },
    /// The key may not be sent by the peer's role.
    #[error("key {key} may not be sent by the {sender:?}")]
    WrongSender {
        /// The key name.
        key: String,
        /// The role that sent it.
        sender: Role,
    },
    /// The key does not belong in the current stage (e.g. an authentication key in the
    /// operational stage, an operational key in the security stage, a login-only key in a
    /// full feature phase Text request).
    #[error("key {key} is not allowed in the {stage:?} stage")]
    WrongStage {
        /// The key name.
        key: String,
        /// The current stage.
        stage: Stage,
    },
    /// A leading-only key on a connection that is not the leading one.
    #[error("leading-only key {key} sent on a non-leading connection")]
    LeadingOnly {
        /// The key name.
        key: String,
    },
    /// A declared value that is not valid (declarations cannot be answered with Reject).
    #[error("invalid value {value:?} for key {key}")]
    InvalidValue {
        /// The key name.
        key: String,
        /// The value (shortened).
        value: String,
    },
    /// The answer to our offer breaks the key's selection rule (e.g. a number above our
    /// offer for a Minimum key, a value not in our list).
    #[error("answer {value:?} for key {key} is not admissible for our offer {offered:?}")]
    InvalidAnswer {
        /// The key name.
        key: String,
        /// The answer (shortened).
        value: String,
        /// Our offer.
        offered: String,
    },
    /// `Reject`, `Irrelevant` or `NotUnderstood` sent for a key we did not offer.
    #[error("unsolicited answer {value:?} for key {key}")]
    UnexpectedAnswer {
        /// The key name.
        key: String,
        /// The value.
        value: String,
    },
    /// A key that must be present in the first Login request is missing.
    #[error("required key {key} is missing")]
    MissingParameter {
        /// The key name.
        key: &'static str,
    },
    /// SessionType has a value other than Discovery or Normal, or changes on a non-leading
    /// connection.
    #[error("session type {value:?} is not supported")]
    UnsupportedSessionType {
        /// The value (shortened).
        value: String,
    },
    /// No value acceptable to us remains for a key (e.g. we require CRC32C and the peer
    /// rejected it, or offered only `None`).
    #[error("no acceptable value for key {key}")]
    NoAcceptableValue {
        /// The key name.
        key: String,
    },
    /// Too many distinct unrecognised keys in one negotiation.
    #[error("more than {max} distinct unrecognised keys")]
    TooManyKeys {
        /// The bound.
        max: usize,
    },
}

impl NegotiationError {
    /// The Login status (class, detail) a target sends for this error (RFC 7143 §11.13.5).
    pub fn login_status(&self) -> (u8, u8) {
        match self {
            NegotiationError::Text(e) => e.login_status(),
            NegotiationError::MissingParameter { .. } => login_status::MISSING_PARAMETER,
            NegotiationError::UnsupportedSessionType { .. } => {
                login_status::SESSION_TYPE_NOT_SUPPORTED
            }
            NegotiationError::TooManyKeys { .. } => login_status::OUT_OF_RESOURCES,
            _ => login_status::INITIATOR_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_respects_char_boundaries() {
        assert_eq!(clip("abc"), "abc");
        let long = "é".repeat(100);
        let c = clip(&long);
        assert!(c.len() <= MAX_QUOTED + '…'.len_utf8());
        assert!(c.ends_with('…'));
    }

    #[test]
    fn statuses() {
        assert_eq!(
            NegotiationError::MissingParameter {
                key: "InitiatorName"
            }
            .login_status(),
            (0x02, 0x07)
        );
        assert_eq!(
            NegotiationError::UnsupportedSessionType { value: "x".into() }.login_status(),
            (0x02, 0x09)
        );
        assert_eq!(
            NegotiationError::Renegotiation { key: "A".into() }.login_status(),
            (0x02, 0x00)
        );
    }
}
