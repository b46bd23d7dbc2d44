//! Parsing and encoding of text data: the `key=value\0` pairs carried in the data segment of
//! Login and Text PDUs (RFC 7143 §6.1).
//!
//! Rules enforced when parsing:
//! - every pair is terminated by a NUL byte; zero bytes after the last pair are accepted as
//!   padding, a NUL where a pair should start before the end is an error;
//! - every pair has an `=`; the key name is 1 to 63 bytes of letters, digits, `.`, `-`, `+`,
//!   `@`, `_` (plus the `#` of `X#` public extension keys);
//! - a value is UTF-8 and at most 255 bytes, except for keys whose values may be longer (lists,
//!   where the 255-byte bound applies to each element, large binary values such as `CHAP_C`,
//!   and keys this crate does not know, whose syntax it cannot check), which are bounded by
//!   [`TextLimits::max_long_value_len`];
//! - the whole text is bounded by [`TextLimits::max_text_len`] (64 KiB by default; RFC 7143
//!   requires accepting at least 8192 bytes) and the number of pairs by
//!   [`TextLimits::max_pairs`].

use bytes::{BufMut, BytesMut};
use thiserror::Error;

use super::keys::lookup;

/// Longest key name (RFC 7143 §6.1).
pub const MAX_KEY_NAME_LEN: usize = 63;
/// Longest simple value, not counting its delimiter (RFC 7143 §6.1).
pub const MAX_SIMPLE_VALUE_LEN: usize = 255;
/// Default bound for list values, large binary values and values of unknown keys. Enough for
/// a 1024-byte CHAP challenge in hex (2050 characters) or for 8192-bit SRP values.
pub const DEFAULT_MAX_LONG_VALUE_LEN: usize = 8192;
/// Default bound for a whole text (one negotiation sequence after reassembly).
pub const DEFAULT_MAX_TEXT_LEN: usize = 64 * 1024;
/// Default bound for the number of pairs in one text.
pub const DEFAULT_MAX_PAIRS: usize = 1024;

/// Bounds applied while parsing text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextLimits {
    /// Longest accepted text in bytes.
    pub max_text_len: usize,
    /// Longest value of a simple key.
    pub max_simple_value_len: usize,
    /// Longest value of a list key, a large-binary key, or a key this crate does not know.
    pub max_long_value_len: usize,
    /// Largest number of pairs.
    pub max_pairs: usize,
}

impl Default for TextLimits {
    fn default() -> Self {
        TextLimits {
            max_text_len: DEFAULT_MAX_TEXT_LEN,
            max_simple_value_len: MAX_SIMPLE_VALUE_LEN,
            max_long_value_len: DEFAULT_MAX_LONG_VALUE_LEN,
            max_pairs: DEFAULT_MAX_PAIRS,
        }
    }
}

impl TextLimits {
    /// The longest value accepted for the key `name`.
    pub fn max_value_len(&self, name: &str) -> usize {
        match lookup(name) {
            Some(def) => def.max_value_len(self.max_simple_value_len, self.max_long_value_len),
            None => self.max_long_value_len,
        }
    }
}

/// A malformed text.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TextError {
    /// The text is longer than the configured bound.
    #[error("text of {len} bytes exceeds the bound of {max} bytes")]
    TooLong {
        /// Length of the text.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The text has more pairs than the configured bound.
    #[error("text has more than {max} key=value pairs")]
    TooManyPairs {
        /// The bound.
        max: usize,
    },
    /// The last pair is not terminated by a NUL byte.
    #[error("key=value pair at offset {offset} is not terminated by a NUL byte")]
    MissingTerminator {
        /// Offset of the pair in the text.
        offset: usize,
    },
    /// A NUL byte where a pair should start, followed by more pairs.
    #[error("empty key=value pair (stray NUL byte) at offset {offset}")]
    EmptyPair {
        /// Offset of the NUL byte.
        offset: usize,
    },
    /// A pair without `=`.
    #[error("key=value pair at offset {offset} has no '='")]
    MissingEquals {
        /// Offset of the pair.
        offset: usize,
    },
    /// A pair starting with `=`.
    #[error("empty key name at offset {offset}")]
    EmptyKey {
        /// Offset of the pair.
        offset: usize,
    },
    /// A key name longer than 63 bytes.
    #[error("key name at offset {offset} is {len} bytes long, more than 63")]
    KeyTooLong {
        /// Offset of the pair.
        offset: usize,
        /// Length of the key name.
        len: usize,
    },
    /// A key name with a byte outside the allowed set.
    #[error("key name at offset {offset} has the invalid byte 0x{byte:02x}")]
    InvalidKeyChar {
        /// Offset of the byte.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A value longer than allowed for its key.
    #[error("value of key {key} is {len} bytes long, more than {max}")]
    ValueTooLong {
        /// The key name.
        key: String,
        /// Length of the value.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A value that is not UTF-8.
    #[error("value of key {key} is not valid UTF-8")]
    InvalidUtf8 {
        /// The key name.
        key: String,
    },
    /// A value to encode contains a NUL byte.
    #[error("value of key {key} contains a NUL byte")]
    NulInValue {
        /// The key name.
        key: String,
    },
}

impl TextError {
    /// The Login status (class, detail) to answer with (RFC 7143 §11.13.5): "out of
    /// resources" (0x03/0x02) for texts above our bounds, "initiator error" (0x02/0x00)
    /// otherwise.
    pub fn login_status(&self) -> (u8, u8) {
        match self {
            TextError::TooLong { .. } | TextError::TooManyPairs { .. } => (0x03, 0x02),
            _ => (0x02, 0x00),
        }
    }
}

fn is_key_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+' | b'@' | b'_')
}

/// Checks the bytes of a key name; `offset` is where the name starts in the text, for errors.
fn check_key_bytes(key: &[u8], offset: usize) -> Result<(), TextError> {
    if key.is_empty() {
        return Err(TextError::EmptyKey { offset });
    }
    if key.len() > MAX_KEY_NAME_LEN {
        return Err(TextError::KeyTooLong {
            offset,
            len: key.len(),
        });
    }
    let public_extension = key.starts_with(b"X#");
    for (i, &b) in key.iter().enumerate() {
        let allowed = is_key_byte(b) || (b == b'#' && i == 1 && public_extension);
        if !allowed {
            return Err(TextError::InvalidKeyChar {
                offset: offset + i,
                byte: b,
            });
        }
    }
    Ok(())
}

/// Checks that `name` is a valid key name (length and characters).
pub fn validate_key_name(name: &str) -> Result<(), TextError> {
    check_key_bytes(name.as_bytes(), 0)
}

/// Parses a text into borrowed `(key, value)` pairs, in order, duplicates included.
pub fn parse_text<'a>(
    data: &'a [u8],
    limits: &TextLimits,
) -> Result<Vec<(&'a str, &'a str)>, TextError> {
    if data.len() > limits.max_text_len {
        return Err(TextError::TooLong {
            len: data.len(),
            max: limits.max_text_len,
        });
    }
    let mut pairs = Vec::new();
    let mut offset = 0usize;
    let mut rest = data;
    while let Some(&first) = rest.first() {
        if first == 0 {
            if rest.iter().all(|&b| b == 0) {
                break; // trailing padding
            }
            return Err(TextError::EmptyPair { offset });
        }
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(TextError::MissingTerminator { offset })?;
        let (pair, after) = rest.split_at(nul);
        let eq = pair
            .iter()
            .position(|&b| b == b'=')
            .ok_or(TextError::MissingEquals { offset })?;
        let (key, value_with_eq) = pair.split_at(eq);
        let value = value_with_eq.get(1..).unwrap_or_default();
        check_key_bytes(key, offset)?;
        // Key bytes are ASCII, so this cannot fail; map it anyway rather than unwrap.
        let key = std::str::from_utf8(key).map_err(|_| TextError::InvalidKeyChar {
            offset,
            byte: key.first().copied().unwrap_or(0),
        })?;
        let max = limits.max_value_len(key);
        if value.len() > max {
            return Err(TextError::ValueTooLong {
                key: key.to_owned(),
                len: value.len(),
                max,
            });
        }
        let value = std::str::from_utf8(value).map_err(|_| TextError::InvalidUtf8 {
            key: key.to_owned(),
        })?;
        if pairs.len() >= limits.max_pairs {
            return Err(TextError::TooManyPairs {
                max: limits.max_pairs,
            });
        }
        pairs.push((key, value));
        rest = after.get(1..).unwrap_or_default();
        offset += nul + 1;
    }
    Ok(pairs)
}

/// Parses a text into owned `(key, value)` pairs.
pub fn parse_text_owned(
    data: &[u8],
    limits: &TextLimits,
) -> Result<Vec<(String, String)>, TextError> {
    Ok(parse_text(data, limits)?
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// Checks one pair against the default limits before encoding it.
fn check_pair(key: &str, value: &str) -> Result<(), TextError> {
    validate_key_name(key)?;
    if value.as_bytes().contains(&0) {
        return Err(TextError::NulInValue {
            key: key.to_owned(),
        });
    }
    let max = TextLimits::default().max_value_len(key);
    if value.len() > max {
        return Err(TextError::ValueTooLong {
            key: key.to_owned(),
            len: value.len(),
            max,
        });
    }
    Ok(())
}

/// Appends `key=value\0` to `out`, after checking the key name and the value length.
pub fn encode_pair(out: &mut BytesMut, key: &str, value: &str) -> Result<(), TextError> {
    check_pair(key, value)?;
    out.reserve(key.len() + value.len() + 2);
    out.put_slice(key.as_bytes());
    out.put_u8(b'=');
    out.put_slice(value.as_bytes());
    out.put_u8(0);
    Ok(())
}

/// Appends every pair to `out`. On error nothing is appended.
pub fn encode_text_into<K, V>(out: &mut BytesMut, pairs: &[(K, V)]) -> Result<(), TextError>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    for (k, v) in pairs {
        check_pair(k.as_ref(), v.as_ref())?;
    }
    for (k, v) in pairs {
        encode_pair(out, k.as_ref(), v.as_ref())?;
    }
    Ok(())
}

/// Encodes pairs into a new buffer.
pub fn encode_text<K, V>(pairs: &[(K, V)]) -> Result<BytesMut, TextError>
where
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut out = BytesMut::new();
    encode_text_into(&mut out, pairs)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(data: &[u8]) -> Result<Vec<(&str, &str)>, TextError> {
        parse_text(data, &TextLimits::default())
    }

    #[test]
    fn parses_pairs_in_order() {
        let text = b"InitiatorName=iqn.2024-01.org.example:a\0SessionType=Normal\0SendTargets=\0";
        assert_eq!(
            parse(text).unwrap(),
            [
                ("InitiatorName", "iqn.2024-01.org.example:a"),
                ("SessionType", "Normal"),
                ("SendTargets", "")
            ]
        );
    }

    #[test]
    fn value_may_contain_equals() {
        assert_eq!(parse(b"X-a=b=c\0").unwrap(), [("X-a", "b=c")]);
    }

    #[test]
    fn empty_text_and_padding() {
        assert!(parse(b"").unwrap().is_empty());
        assert!(parse(b"\0\0\0").unwrap().is_empty());
        assert_eq!(parse(b"A=1\0\0\0").unwrap(), [("A", "1")]);
        assert_eq!(
            parse(b"A=1\0\0B=2\0"),
            Err(TextError::EmptyPair { offset: 4 })
        );
    }

    #[test]
    fn malformed_inputs() {
        assert_eq!(
            parse(b"A=1"),
            Err(TextError::MissingTerminator { offset: 0 })
        );
        assert_eq!(
            parse(b"A=1\0B=2"),
            Err(TextError::MissingTerminator { offset: 4 })
        );
        assert_eq!(
            parse(b"A=1\0B\0"),
            Err(TextError::MissingEquals { offset: 4 })
        );
        assert_eq!(parse(b"=1\0"), Err(TextError::EmptyKey { offset: 0 }));
        assert_eq!(
            parse(b"A B=1\0"),
            Err(TextError::InvalidKeyChar {
                offset: 1,
                byte: b' '
            })
        );
        assert_eq!(
            parse(b"A#=1\0"),
            Err(TextError::InvalidKeyChar {
                offset: 1,
                byte: b'#'
            })
        );
        assert!(parse(b"X#Foo=1\0").is_ok());
        assert!(matches!(
            parse(b"X-a=\xff\0"),
            Err(TextError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn key_length_limit() {
        let ok = format!("{}=1\0", "K".repeat(63));
        assert!(parse(ok.as_bytes()).is_ok());
        let long = format!("{}=1\0", "K".repeat(64));
        assert_eq!(
            parse(long.as_bytes()),
            Err(TextError::KeyTooLong { offset: 0, len: 64 })
        );
    }

    #[test]
    fn value_length_limits() {
        let ok = format!("TargetAlias={}\0", "a".repeat(255));
        assert!(parse(ok.as_bytes()).is_ok());
        let long = format!("TargetAlias={}\0", "a".repeat(256));
        assert_eq!(
            parse(long.as_bytes()),
            Err(TextError::ValueTooLong {
                key: "TargetAlias".into(),
                len: 256,
                max: 255
            })
        );
        // A 1024-byte CHAP challenge in hex is 2050 characters: allowed.
        let chap = format!("CHAP_C=0x{}\0", "ab".repeat(1024));
        assert!(parse(chap.as_bytes()).is_ok());
        let too_long = format!("CHAP_C=0x{}\0", "a".repeat(8192));
        assert!(matches!(
            parse(too_long.as_bytes()),
            Err(TextError::ValueTooLong { .. })
        ));
    }

    #[test]
    fn unknown_and_list_keys_allow_long_values() {
        let unknown = format!("X-com.example.blob={}\0", "b".repeat(1000));
        assert!(parse(unknown.as_bytes()).is_ok());
        let list = format!("HeaderDigest={}None\0", "X,".repeat(200));
        assert!(parse(list.as_bytes()).is_ok());
    }

    #[test]
    fn total_and_pair_bounds() {
        let limits = TextLimits {
            max_text_len: 8,
            ..TextLimits::default()
        };
        assert_eq!(
            parse_text(b"A=1\0B=22\0", &limits),
            Err(TextError::TooLong { len: 9, max: 8 })
        );
        let limits = TextLimits {
            max_pairs: 1,
            ..TextLimits::default()
        };
        assert_eq!(
            parse_text(b"A=1\0B=2\0", &limits),
            Err(TextError::TooManyPairs { max: 1 })
        );
    }

    #[test]
    fn encodes_and_round_trips() {
        let pairs = [("HeaderDigest", "CRC32C,None"), ("SendTargets", "")];
        let buf = encode_text(&pairs).unwrap();
        assert_eq!(&buf[..], b"HeaderDigest=CRC32C,None\0SendTargets=\0");
        assert_eq!(parse(&buf).unwrap(), pairs);
    }

    #[test]
    fn encoding_checks_pairs() {
        let mut out = BytesMut::new();
        assert!(encode_pair(&mut out, "Bad Key", "x").is_err());
        assert!(encode_pair(&mut out, "Key", "a\0b").is_err());
        assert!(encode_text_into(&mut out, &[("A", "1"), ("", "2")]).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn login_status_of_errors() {
        assert_eq!(
            TextError::TooLong { len: 1, max: 0 }.login_status(),
            (0x03, 0x02)
        );
        assert_eq!(
            TextError::MissingEquals { offset: 0 }.login_status(),
            (0x02, 0x00)
        );
    }
}
