//! Value encodings of RFC 7143 §6.1: numbers (decimal, `0x` hex, `0b` base64), booleans,
//! comma-separated lists, numeric ranges, binary values (hex and base64), and the special
//! answer constants.
//!
//! Every decoder bounds its output before allocating and returns a [`ValueError`] on any
//! malformed input; none of them panics.

use thiserror::Error;

/// Boolean true.
pub const YES: &str = "Yes";
/// Boolean false.
pub const NO: &str = "No";
/// "No function" in list negotiations (e.g. `HeaderDigest=None`).
pub const NONE: &str = "None";
/// Answer for an offer whose value is not admissible.
pub const REJECT: &str = "Reject";
/// Answer for a key that does not apply in this session or connection.
pub const IRRELEVANT: &str = "Irrelevant";
/// Answer for a key the responder does not know.
pub const NOT_UNDERSTOOD: &str = "NotUnderstood";

/// Whether `value` is one of the answer constants `Reject`, `Irrelevant` or `NotUnderstood`.
pub fn is_special_answer(value: &str) -> bool {
    matches!(value, REJECT | IRRELEVANT | NOT_UNDERSTOOD)
}

/// Why a value could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The value is empty where a number or binary value is required.
    #[error("empty value")]
    Empty,
    /// A decimal constant has a non-digit character.
    #[error("invalid decimal constant")]
    InvalidDecimal,
    /// A decimal constant other than `0` starts with `0` (RFC 7143 §6.1).
    #[error("decimal constant with a leading zero")]
    LeadingZero,
    /// A hex constant has no digits or a non-hex character.
    #[error("invalid hex constant")]
    InvalidHex,
    /// A base64 constant has no digits, a character outside the alphabet, or bad padding.
    #[error("invalid base64 constant")]
    InvalidBase64,
    /// The number does not fit in 64 bits.
    #[error("number does not fit in 64 bits")]
    Overflow,
    /// The number is outside the valid range.
    #[error("{value} is outside {min}..={max}")]
    OutOfRange {
        /// The decoded number.
        value: u64,
        /// Smallest valid value.
        min: u64,
        /// Largest valid value.
        max: u64,
    },
    /// Neither `Yes` nor `No`.
    #[error("not a boolean (Yes or No)")]
    NotBoolean,
    /// A numeric range is not `a~b` with `a <= b`.
    #[error("invalid numeric range")]
    InvalidRange,
    /// A binary value is not `0x`/`0X` hex or `0b`/`0B` base64.
    #[error("binary value needs a 0x or 0b prefix")]
    MissingBinaryPrefix,
    /// The decoded binary value is longer than allowed.
    #[error("binary value of {len} bytes exceeds {max}")]
    BinaryTooLong {
        /// Decoded length (or its lower bound).
        len: usize,
        /// Allowed length.
        max: usize,
    },
}

/// Parses a numerical value (RFC 7143 §6.1): a decimal constant without leading zeros, a
/// hex constant `0x…`/`0X…`, or a base64 constant `0b…`/`0B…`, less than 2^64.
pub fn parse_number(s: &str) -> Result<u64, ValueError> {
    let bytes = s.as_bytes();
    match bytes {
        [] => Err(ValueError::Empty),
        [b'0', b'x' | b'X', rest @ ..] => parse_hex_number(rest),
        [b'0', b'b' | b'B', rest @ ..] => {
            // Eight bytes take twelve base64 characters; allow some leading zero bytes but
            // bound the work before decoding.
            if rest.len() > 64 {
                return Err(ValueError::Overflow);
            }
            let decoded = base64_decode_bytes(rest, 48)?;
            let mut value: u64 = 0;
            for byte in decoded {
                value = value
                    .checked_mul(256)
                    .and_then(|v| v.checked_add(u64::from(byte)))
                    .ok_or(ValueError::Overflow)?;
            }
            Ok(value)
        }
        [b'0'] => Ok(0),
        [b'0', ..] => {
            if bytes.iter().all(u8::is_ascii_digit) {
                Err(ValueError::LeadingZero)
            } else {
                Err(ValueError::InvalidDecimal)
            }
        }
        _ => {
            let mut value: u64 = 0;
            for &b in bytes {
                if !b.is_ascii_digit() {
                    return Err(ValueError::InvalidDecimal);
                }
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')))
                    .ok_or(ValueError::Overflow)?;
            }
            Ok(value)
        }
    }
}

fn parse_hex_number(digits: &[u8]) -> Result<u64, ValueError> {
    if digits.is_empty() {
        return Err(ValueError::InvalidHex);
    }
    let mut value: u64 = 0;
    for &b in digits {
        let nibble = hex_value(b).ok_or(ValueError::InvalidHex)?;
        value = value
            .checked_mul(16)
            .and_then(|v| v.checked_add(u64::from(nibble)))
            .ok_or(ValueError::Overflow)?;
    }
    Ok(value)
}

/// Parses a numerical value and checks that it lies in `min..=max`.
pub fn parse_number_in(s: &str, min: u64, max: u64) -> Result<u64, ValueError> {
    let value = parse_number(s)?;
    if value < min || value > max {
        return Err(ValueError::OutOfRange { value, min, max });
    }
    Ok(value)
}

/// Formats a number as a decimal constant (the form this crate always sends).
pub fn format_number(value: u64) -> String {
    value.to_string()
}

/// Parses `Yes` or `No` (case-sensitive, RFC 7143 §6.1).
pub fn parse_bool(s: &str) -> Result<bool, ValueError> {
    match s {
        YES => Ok(true),
        NO => Ok(false),
        _ => Err(ValueError::NotBoolean),
    }
}

/// Formats a boolean as `Yes` or `No`.
pub fn format_bool(value: bool) -> &'static str {
    if value { YES } else { NO }
}

/// Splits a list-of-values on commas. Empty elements are returned as empty strings.
pub fn split_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',')
}

/// Joins values into a comma-separated list.
pub fn join_list<I, S>(items: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let mut out = String::new();
    for (i, item) in items.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(item.as_ref());
    }
    out
}

/// Parses a numeric range `a~b` (used by the obsolete `IFMarkInt`/`OFMarkInt` keys).
pub fn parse_range(s: &str) -> Result<(u64, u64), ValueError> {
    let (low, high) = s.split_once('~').ok_or(ValueError::InvalidRange)?;
    let low = parse_number(low)?;
    let high = parse_number(high)?;
    if low > high {
        return Err(ValueError::InvalidRange);
    }
    Ok((low, high))
}

/// Formats a numeric range `a~b`.
pub fn format_range(low: u64, high: u64) -> String {
    format!("{low}~{high}")
}

/// Decodes a binary value written as a hex constant (`0x`/`0X`) or a base64 constant
/// (`0b`/`0B`), refusing more than `max_len` decoded bytes before allocating.
///
/// An odd number of hex digits is read as if a leading `0` were present.
pub fn decode_binary(s: &str, max_len: usize) -> Result<Vec<u8>, ValueError> {
    match s.as_bytes() {
        [b'0', b'x' | b'X', rest @ ..] => hex_decode_bytes(rest, max_len),
        [b'0', b'b' | b'B', rest @ ..] => base64_decode_bytes(rest, max_len),
        [] => Err(ValueError::Empty),
        _ => Err(ValueError::MissingBinaryPrefix),
    }
}

/// Decodes a regular binary value (at most 64 bits): a decimal, hex or base64 constant.
/// A decimal constant is returned as its 8-byte big-endian form.
pub fn decode_regular_binary(s: &str) -> Result<Vec<u8>, ValueError> {
    match s.as_bytes() {
        [b'0', b'x' | b'X', ..] | [b'0', b'b' | b'B', ..] => decode_binary(s, 8),
        _ => parse_number(s).map(|n| n.to_be_bytes().to_vec()),
    }
}

/// Encodes bytes as a hex constant: `0x` followed by lowercase digits.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("0x");
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Encodes bytes as a base64 constant: `0b` followed by padded base64 (RFC 4648 alphabet).
pub fn encode_base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(2 + bytes.len().div_ceil(3) * 4);
    out.push_str("0b");
    base64_encode_into(bytes, &mut out);
    out
}

/// Encodes bytes as padded base64 (RFC 4648 alphabet), without the `0b` prefix.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    base64_encode_into(bytes, &mut out);
    out
}

/// Decodes base64 (padded or not), without the `0b` prefix, refusing more than `max_len`
/// decoded bytes before allocating.
pub fn base64_decode(s: &str, max_len: usize) -> Result<Vec<u8>, ValueError> {
    base64_decode_bytes(s.as_bytes(), max_len)
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode_into(bytes: &[u8], out: &mut String) {
    let sextet = |v: u32| char::from(BASE64_ALPHABET[(v & 0x3f) as usize]);
    for chunk in bytes.chunks(3) {
        let b0 = u32::from(chunk.first().copied().unwrap_or(0));
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let group = (b0 << 16) | (b1 << 8) | b2;
        out.push(sextet(group >> 18));
        out.push(sextet(group >> 12));
        if chunk.len() > 1 {
            out.push(sextet(group >> 6));
        } else {
            out.push('=');
        }
        if chunk.len() > 2 {
            out.push(sextet(group));
        } else {
            out.push('=');
        }
    }
}

fn base64_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn base64_decode_bytes(input: &[u8], max_len: usize) -> Result<Vec<u8>, ValueError> {
    // Strip up to two '=' of padding; padding is only valid on a 4-character boundary.
    let unpadded_len = input.iter().rev().take_while(|&&c| c == b'=').count();
    if unpadded_len > 2 || (unpadded_len > 0 && !input.len().is_multiple_of(4)) {
        return Err(ValueError::InvalidBase64);
    }
    let data = input
        .get(..input.len() - unpadded_len)
        .ok_or(ValueError::InvalidBase64)?;
    if data.is_empty() || data.len() % 4 == 1 {
        return Err(ValueError::InvalidBase64);
    }
    let out_len = data.len() / 4 * 3 + (data.len() % 4).saturating_sub(1);
    if out_len > max_len {
        return Err(ValueError::BinaryTooLong {
            len: out_len,
            max: max_len,
        });
    }
    let mut out = Vec::with_capacity(out_len);
    for chunk in data.chunks(4) {
        let mut group: u32 = 0;
        for &c in chunk {
            let v = base64_value(c).ok_or(ValueError::InvalidBase64)?;
            group = (group << 6) | u32::from(v);
        }
        // Left-align a short final group to 24 bits.
        group <<= 6 * (4 - chunk.len() as u32);
        let produced = chunk.len() - 1;
        let bytes = group.to_be_bytes();
        out.extend(bytes.iter().skip(1).take(produced));
    }
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn hex_decode_bytes(digits: &[u8], max_len: usize) -> Result<Vec<u8>, ValueError> {
    if digits.is_empty() {
        return Err(ValueError::InvalidHex);
    }
    let out_len = digits.len().div_ceil(2);
    if out_len > max_len {
        return Err(ValueError::BinaryTooLong {
            len: out_len,
            max: max_len,
        });
    }
    let mut out = Vec::with_capacity(out_len);
    let (head, tail) = digits.split_at(digits.len() % 2);
    if let Some(&first) = head.first() {
        out.push(hex_value(first).ok_or(ValueError::InvalidHex)?);
    }
    for pair in tail.chunks_exact(2) {
        let (hi, lo) = match pair {
            [hi, lo] => (*hi, *lo),
            _ => return Err(ValueError::InvalidHex),
        };
        let hi = hex_value(hi).ok_or(ValueError::InvalidHex)?;
        let lo = hex_value(lo).ok_or(ValueError::InvalidHex)?;
        out.push((hi << 4) | lo);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_numbers() {
        assert_eq!(parse_number("0"), Ok(0));
        assert_eq!(parse_number("8192"), Ok(8192));
        assert_eq!(parse_number("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_number("18446744073709551616"),
            Err(ValueError::Overflow)
        );
        assert_eq!(parse_number("012"), Err(ValueError::LeadingZero));
        assert_eq!(parse_number("00"), Err(ValueError::LeadingZero));
        assert_eq!(parse_number("1a"), Err(ValueError::InvalidDecimal));
        assert_eq!(parse_number("-1"), Err(ValueError::InvalidDecimal));
        assert_eq!(parse_number("+1"), Err(ValueError::InvalidDecimal));
        assert_eq!(parse_number(" 1"), Err(ValueError::InvalidDecimal));
        assert_eq!(parse_number(""), Err(ValueError::Empty));
    }

    #[test]
    fn hex_numbers() {
        assert_eq!(parse_number("0x2000"), Ok(8192));
        assert_eq!(parse_number("0X2000"), Ok(8192));
        assert_eq!(parse_number("0xffffffffffffffff"), Ok(u64::MAX));
        assert_eq!(parse_number("0x00000000000000001"), Ok(1));
        assert_eq!(
            parse_number("0x10000000000000000"),
            Err(ValueError::Overflow)
        );
        assert_eq!(parse_number("0x"), Err(ValueError::InvalidHex));
        assert_eq!(parse_number("0xg"), Err(ValueError::InvalidHex));
    }

    #[test]
    fn base64_numbers() {
        // 0x2000 = bytes [0x20, 0x00] = "IAA="
        assert_eq!(parse_number("0bIAA="), Ok(8192));
        assert_eq!(parse_number("0BIAA"), Ok(8192));
        assert_eq!(
            parse_number(&encode_base64(&u64::MAX.to_be_bytes())),
            Ok(u64::MAX)
        );
        assert_eq!(parse_number("0bAAEC"), Ok(0x0102));
        assert_eq!(parse_number("0bAQAAAAAAAAAA"), Err(ValueError::Overflow));
        assert_eq!(parse_number("0b"), Err(ValueError::InvalidBase64));
        assert_eq!(parse_number("0b!!!!"), Err(ValueError::InvalidBase64));
    }

    #[test]
    fn ranges_checked() {
        assert_eq!(parse_number_in("512", 512, 16_777_215), Ok(512));
        assert_eq!(
            parse_number_in("511", 512, 16_777_215),
            Err(ValueError::OutOfRange {
                value: 511,
                min: 512,
                max: 16_777_215
            })
        );
        assert_eq!(parse_range("1~65535"), Ok((1, 65535)));
        assert_eq!(parse_range("5~4"), Err(ValueError::InvalidRange));
        assert_eq!(parse_range("5"), Err(ValueError::InvalidRange));
        assert_eq!(format_range(2, 9), "2~9");
    }

    #[test]
    fn booleans_and_lists() {
        assert_eq!(parse_bool("Yes"), Ok(true));
        assert_eq!(parse_bool("No"), Ok(false));
        assert_eq!(parse_bool("yes"), Err(ValueError::NotBoolean));
        assert_eq!(format_bool(true), "Yes");
        assert_eq!(
            split_list("CRC32C,None").collect::<Vec<_>>(),
            ["CRC32C", "None"]
        );
        assert_eq!(join_list(["CRC32C", "None"]), "CRC32C,None");
        assert_eq!(join_list(Vec::<String>::new()), "");
    }

    #[test]
    fn binary_values() {
        assert_eq!(decode_binary("0x0102ff", 16), Ok(vec![1, 2, 0xff]));
        assert_eq!(decode_binary("0x102", 16), Ok(vec![1, 2]));
        assert_eq!(decode_binary("0bAQL/", 16), Ok(vec![1, 2, 0xff]));
        assert_eq!(decode_binary("0bAQI=", 16), Ok(vec![1, 2]));
        assert_eq!(decode_binary("0bAQ==", 16), Ok(vec![1]));
        assert_eq!(decode_binary("0bAQ", 16), Ok(vec![1]));
        assert_eq!(decode_binary("0bA===", 16), Err(ValueError::InvalidBase64));
        assert_eq!(decode_binary("0bA", 16), Err(ValueError::InvalidBase64));
        assert_eq!(decode_binary("0bAQ=", 16), Err(ValueError::InvalidBase64));
        assert_eq!(
            decode_binary("0x010203", 2),
            Err(ValueError::BinaryTooLong { len: 3, max: 2 })
        );
        assert_eq!(
            decode_binary("1234", 16),
            Err(ValueError::MissingBinaryPrefix)
        );
        assert_eq!(encode_hex(&[1, 2, 0xff]), "0x0102ff");
        assert_eq!(encode_base64(&[1, 2, 0xff]), "0bAQL/");
        assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
        assert_eq!(base64_decode("Zm9vYmFy", 64), Ok(b"foobar".to_vec()));
        assert_eq!(decode_regular_binary("5"), Ok(5u64.to_be_bytes().to_vec()));
        assert_eq!(decode_regular_binary("0x05"), Ok(vec![5]));
    }

    #[test]
    fn special_answers() {
        assert!(is_special_answer("Reject"));
        assert!(is_special_answer("Irrelevant"));
        assert!(is_special_answer("NotUnderstood"));
        assert!(!is_special_answer("None"));
    }
}
