//! The security keys of one received text, sorted by name, and the value decoders shared by
//! both roles.

use super::chap::{ChapAlgorithm, MAX_CHAP_BINARY_LEN};
use super::error::AuthError;
use crate::text::error::clip;
use crate::text::value::{decode_binary, is_special_answer, parse_number};

/// The keys an authenticator understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthKey {
    AuthMethod = 0,
    ChapA = 1,
    ChapI = 2,
    ChapC = 3,
    ChapN = 4,
    ChapR = 5,
}

impl AuthKey {
    const ALL: [AuthKey; 6] = [
        AuthKey::AuthMethod,
        AuthKey::ChapA,
        AuthKey::ChapI,
        AuthKey::ChapC,
        AuthKey::ChapN,
        AuthKey::ChapR,
    ];

    pub(crate) const fn name(self) -> &'static str {
        match self {
            AuthKey::AuthMethod => "AuthMethod",
            AuthKey::ChapA => "CHAP_A",
            AuthKey::ChapI => "CHAP_I",
            AuthKey::ChapC => "CHAP_C",
            AuthKey::ChapN => "CHAP_N",
            AuthKey::ChapR => "CHAP_R",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        AuthKey::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// One received text's security keys, each at most once.
#[derive(Debug, Default)]
pub(crate) struct Received<'a> {
    values: [Option<&'a str>; 6],
}

impl<'a> Received<'a> {
    /// Sorts the pairs; any other key is [`AuthError::UnexpectedKey`], a repeated one
    /// [`AuthError::DuplicateKey`].
    pub(crate) fn parse<K, V>(pairs: &'a [(K, V)]) -> Result<Self, AuthError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut received = Received::default();
        for (k, v) in pairs {
            let key = AuthKey::from_name(k.as_ref()).ok_or_else(|| AuthError::UnexpectedKey {
                key: clip(k.as_ref()),
            })?;
            let slot = &mut received.values[key as usize];
            if slot.is_some() {
                return Err(AuthError::DuplicateKey { key: key.name() });
            }
            *slot = Some(v.as_ref());
        }
        Ok(received)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }

    pub(crate) fn get(&self, key: AuthKey) -> Option<&'a str> {
        self.values[key as usize]
    }

    pub(crate) fn require(&self, key: AuthKey) -> Result<&'a str, AuthError> {
        self.get(key)
            .ok_or(AuthError::MissingKey { key: key.name() })
    }

    /// Refuses every present key outside `allowed`.
    pub(crate) fn only(&self, allowed: &[AuthKey]) -> Result<(), AuthError> {
        match AuthKey::ALL
            .into_iter()
            .find(|k| self.get(*k).is_some() && !allowed.contains(k))
        {
            Some(k) => Err(AuthError::UnexpectedKey {
                key: k.name().to_owned(),
            }),
            None => Ok(()),
        }
    }
}

fn malformed(key: AuthKey, reason: impl Into<String>) -> AuthError {
    AuthError::Malformed {
        key: key.name(),
        reason: reason.into(),
    }
}

/// Refuses `Reject`, `Irrelevant` and `NotUnderstood` where an offer is expected.
pub(crate) fn no_special_answer(key: AuthKey, value: &str) -> Result<(), AuthError> {
    if is_special_answer(value) {
        return Err(malformed(key, format!("{value} is not an offer")));
    }
    Ok(())
}

/// `CHAP_I`: a number from 0 to 255 (decimal, hex or base64).
pub(crate) fn parse_identifier(value: &str) -> Result<u8, AuthError> {
    let n = parse_number(value).map_err(|e| malformed(AuthKey::ChapI, e.to_string()))?;
    u8::try_from(n).map_err(|_| malformed(AuthKey::ChapI, format!("{n} is above 255")))
}

/// `CHAP_C`: a binary value of 1 to [`MAX_CHAP_BINARY_LEN`] bytes.
pub(crate) fn parse_challenge(value: &str) -> Result<Vec<u8>, AuthError> {
    let challenge = decode_binary(value, MAX_CHAP_BINARY_LEN)
        .map_err(|e| malformed(AuthKey::ChapC, e.to_string()))?;
    if challenge.is_empty() {
        return Err(malformed(AuthKey::ChapC, "empty challenge"));
    }
    Ok(challenge)
}

/// `CHAP_R`: a binary value exactly as long as the algorithm's digest.
pub(crate) fn parse_response(value: &str, algorithm: ChapAlgorithm) -> Result<Vec<u8>, AuthError> {
    let response = decode_binary(value, MAX_CHAP_BINARY_LEN)
        .map_err(|e| malformed(AuthKey::ChapR, e.to_string()))?;
    if response.len() != algorithm.digest_len() {
        return Err(malformed(
            AuthKey::ChapR,
            format!(
                "{} bytes where {} needs {}",
                response.len(),
                algorithm,
                algorithm.digest_len()
            ),
        ));
    }
    Ok(response)
}

/// One element of a `CHAP_A` list: the algorithm, or `None` for a number this crate does not
/// implement or an element that is not a number.
pub(crate) fn parse_algorithm(value: &str) -> Option<ChapAlgorithm> {
    parse_number(value)
        .ok()
        .and_then(|n| u8::try_from(n).ok())
        .and_then(ChapAlgorithm::from_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_and_refuses_duplicates() {
        let pairs = [("CHAP_N", "alice"), ("CHAP_R", "0x00")];
        let r = Received::parse(&pairs).unwrap();
        assert_eq!(r.get(AuthKey::ChapN), Some("alice"));
        assert!(r.only(&[AuthKey::ChapN, AuthKey::ChapR]).is_ok());
        assert_eq!(
            r.only(&[AuthKey::ChapN]),
            Err(AuthError::UnexpectedKey {
                key: "CHAP_R".into()
            })
        );
        let dup = [("CHAP_N", "a"), ("CHAP_N", "b")];
        assert_eq!(
            Received::parse(&dup).unwrap_err(),
            AuthError::DuplicateKey { key: "CHAP_N" }
        );
        let other = [("SRP_U", "x")];
        assert!(matches!(
            Received::parse(&other),
            Err(AuthError::UnexpectedKey { .. })
        ));
        assert!(Received::parse::<&str, &str>(&[]).unwrap().is_empty());
    }

    #[test]
    fn decoders() {
        assert_eq!(parse_identifier("255"), Ok(255));
        assert_eq!(parse_identifier("0x2a"), Ok(42));
        assert!(parse_identifier("256").is_err());
        assert!(parse_identifier("").is_err());
        assert!(parse_challenge("0x").is_err());
        assert!(parse_challenge("0b").is_err());
        assert_eq!(parse_challenge("0X0A"), Ok(vec![10]));
        assert!(parse_challenge(&format!("0x{}", "00".repeat(1025))).is_err());
        assert!(parse_challenge(&format!("0x{}", "00".repeat(1024))).is_ok());
        assert!(parse_response("0x00", ChapAlgorithm::Md5).is_err());
        assert!(parse_response(&format!("0x{}", "ab".repeat(16)), ChapAlgorithm::Md5).is_ok());
        assert_eq!(parse_algorithm("5"), Some(ChapAlgorithm::Md5));
        assert_eq!(parse_algorithm("0x08"), Some(ChapAlgorithm::Sha3_256));
        assert_eq!(parse_algorithm("129"), None);
        assert_eq!(parse_algorithm("261"), None);
        assert_eq!(parse_algorithm("x"), None);
        assert!(no_special_answer(AuthKey::AuthMethod, "Reject").is_err());
        assert!(no_special_answer(AuthKey::AuthMethod, "None").is_ok());
    }
}
