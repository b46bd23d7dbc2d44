//! CHAP building blocks (RFC 1994, RFC 7143 §12.1.3): the hash algorithms of `CHAP_A`, the
//! response function, credentials and the encoding of binary values.

use std::fmt;

use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use sha3::Sha3_256;
use subtle::ConstantTimeEq;

use crate::text::value::{encode_base64, encode_hex};

/// Longest binary value (challenge or response) accepted or sent, in bytes: RFC 7143 §12.1.3
/// says the binary length of `CHAP_C` and `CHAP_R` must not exceed 1024 bytes.
pub const MAX_CHAP_BINARY_LEN: usize = 1024;

/// Shortest challenge this crate sends, in bytes: configured challenge lengths are raised to
/// it (RFC 1994 prefers challenges at least as long as the digest; 16 bytes is MD5's).
pub const MIN_CHALLENGE_LEN: usize = 16;

/// Default challenge length, in bytes: as long as the longest supported digest (SHA-256 and
/// SHA3-256, 32 bytes), so the challenge is at least as long as the hash whatever the
/// algorithm negotiated.
pub const DEFAULT_CHALLENGE_LEN: usize = 32;

/// A CHAP hash algorithm, as numbered in `CHAP_A` (the PPP Authentication Algorithms
/// registry of IANA, used by RFC 7143 §12.1.3).
///
/// RFC 1994 makes MD5 (5) mandatory to implement and RFC 7143 asks initiators to always
/// offer it; the SHA algorithms (6, 7, 8) were added to the registry for iSCSI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChapAlgorithm {
    /// `CHAP_A=5`: MD5, 16-byte responses.
    Md5,
    /// `CHAP_A=6`: SHA-1, 20-byte responses.
    Sha1,
    /// `CHAP_A=7`: SHA-256, 32-byte responses.
    Sha256,
    /// `CHAP_A=8`: SHA3-256, 32-byte responses.
    Sha3_256,
}

impl ChapAlgorithm {
    /// Every algorithm, strongest first: the default preference order.
    pub const ALL: [ChapAlgorithm; 4] = [
        ChapAlgorithm::Sha3_256,
        ChapAlgorithm::Sha256,
        ChapAlgorithm::Sha1,
        ChapAlgorithm::Md5,
    ];

    /// The `CHAP_A` number: 5, 6, 7 or 8.
    pub const fn code(self) -> u8 {
        match self {
            ChapAlgorithm::Md5 => 5,
            ChapAlgorithm::Sha1 => 6,
            ChapAlgorithm::Sha256 => 7,
            ChapAlgorithm::Sha3_256 => 8,
        }
    }

    /// The algorithm for a `CHAP_A` number, or `None` for a number this crate does not
    /// implement.
    pub const fn from_code(code: u8) -> Option<Self> {
        match code {
            5 => Some(ChapAlgorithm::Md5),
            6 => Some(ChapAlgorithm::Sha1),
            7 => Some(ChapAlgorithm::Sha256),
            8 => Some(ChapAlgorithm::Sha3_256),
            _ => None,
        }
    }

    /// Length of a response (the digest), in bytes.
    pub const fn digest_len(self) -> usize {
        match self {
            ChapAlgorithm::Md5 => 16,
            ChapAlgorithm::Sha1 => 20,
            ChapAlgorithm::Sha256 | ChapAlgorithm::Sha3_256 => 32,
        }
    }

    /// The usual name of the hash: `MD5`, `SHA-1`, `SHA-256` or `SHA3-256`.
    pub const fn name(self) -> &'static str {
        match self {
            ChapAlgorithm::Md5 => "MD5",
            ChapAlgorithm::Sha1 => "SHA-1",
            ChapAlgorithm::Sha256 => "SHA-256",
            ChapAlgorithm::Sha3_256 => "SHA3-256",
        }
    }

    /// The CHAP response of RFC 1994 §2: the hash of the identifier octet, then the secret,
    /// then the challenge. The result is [`ChapAlgorithm::digest_len`] bytes long.
    pub fn response(self, id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        fn hash<D: Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut hasher = D::new();
            hasher.update([id]);
            hasher.update(secret);
            hasher.update(challenge);
            hasher.finalize().to_vec()
        }
        match self {
            ChapAlgorithm::Md5 => hash::<Md5>(id, secret, challenge),
            ChapAlgorithm::Sha1 => hash::<Sha1>(id, secret, challenge),
            ChapAlgorithm::Sha256 => hash::<Sha256>(id, secret, challenge),
            ChapAlgorithm::Sha3_256 => hash::<Sha3_256>(id, secret, challenge),
        }
    }
}

impl fmt::Display for ChapAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A CHAP name and its shared secret.
///
/// `Debug` prints the name and the secret's length, never the secret. The secret is not wiped
/// from memory on drop.
///
/// RFC 1994 requires a secret of at least one byte (an empty secret never authenticates here)
/// and prefers one at least as long as the digest; RFC 7143 §9.2.1 asks for IPsec when the
/// secret has less than 96 random bits (12 random bytes).
#[derive(Clone)]
pub struct ChapCredential {
    /// The CHAP name (`CHAP_N`), often the initiator's or target's iSCSI name.
    pub user: String,
    /// The shared secret.
    pub secret: Vec<u8>,
}

impl ChapCredential {
    /// A credential from a name and a secret.
    pub fn new(user: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        ChapCredential {
            user: user.into(),
            secret: secret.into(),
        }
    }

    /// Whether `other` holds the same secret, compared in constant time (for equal lengths).
    pub fn same_secret(&self, other: &ChapCredential) -> bool {
        secrets_equal(&self.secret, &other.secret)
    }
}

impl fmt::Debug for ChapCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChapCredential")
            .field("user", &self.user)
            .field(
                "secret",
                &format_args!("<{} bytes redacted>", self.secret.len()),
            )
            .finish()
    }
}

/// Constant-time equality of two byte strings (the length is not hidden).
pub(crate) fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// How this side writes the binary values it sends (`CHAP_C`, `CHAP_R`). Both encodings are
/// always accepted on receipt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ChapEncoding {
    /// `0x` followed by lowercase hex digits: what every known implementation accepts
    /// (libiscsi reads only `0x` values).
    #[default]
    Hex,
    /// `0b` followed by padded base64 (RFC 7143 §6.1).
    Base64,
}

impl ChapEncoding {
    /// Encodes `bytes` as a binary value with this encoding.
    pub fn encode(self, bytes: &[u8]) -> String {
        match self {
            ChapEncoding::Hex => encode_hex(bytes),
            ChapEncoding::Base64 => encode_base64(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for alg in ChapAlgorithm::ALL {
            assert_eq!(ChapAlgorithm::from_code(alg.code()), Some(alg));
            assert_eq!(alg.response(1, b"s", b"c").len(), alg.digest_len());
        }
        for code in (0..=255u8).filter(|c| !(5..=8).contains(c)) {
            assert_eq!(ChapAlgorithm::from_code(code), None);
        }
        assert_eq!(ChapAlgorithm::Sha3_256.to_string(), "SHA3-256");
    }

    #[test]
    fn debug_hides_the_secret() {
        let c = ChapCredential::new("alice", b"hunter2-hunter2".to_vec());
        let s = format!("{c:?}");
        assert!(s.contains("alice"));
        assert!(!s.contains("hunter2"));
        assert!(s.contains("15 bytes"));
    }

    #[test]
    fn secret_comparison() {
        let a = ChapCredential::new("a", b"same".to_vec());
        let b = ChapCredential::new("b", b"same".to_vec());
        let c = ChapCredential::new("c", b"other".to_vec());
        assert!(a.same_secret(&b));
        assert!(!a.same_secret(&c));
    }

    #[test]
    fn encodings() {
        assert_eq!(ChapEncoding::Hex.encode(&[0xab, 1]), "0xab01");
        assert_eq!(ChapEncoding::Base64.encode(&[1, 2, 0xff]), "0bAQL/");
    }
}
