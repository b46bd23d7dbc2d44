//! SendTargets (RFC 7143 §13.3 and Appendix C): the query and the encoded answer.

use bytes::{Bytes, BytesMut};

use crate::text::{SessionType, encode_text_into};

/// What a `SendTargets` key asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendTargetsQuery {
    /// `SendTargets=All`: every target the initiator may see.
    All,
    /// `SendTargets=<iSCSI name>`: that target only.
    Target(String),
    /// `SendTargets=` (empty, normal sessions): the session's own target.
    Current,
}

/// Whether `name` looks like an iSCSI name (`iqn.`, `eui.` or `naa.` format, RFC 7143
/// §4.2.7), at most 223 bytes, without spaces or control characters.
pub fn is_iscsi_name(name: &str) -> bool {
    let prefixed = ["iqn.", "eui.", "naa."].iter().any(|p| {
        name.len() > p.len()
            && name
                .get(..p.len())
                .is_some_and(|h| h.eq_ignore_ascii_case(p))
    });
    prefixed
        && name.len() <= crate::text::negotiate::MAX_ISCSI_NAME_LEN
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Parses a `SendTargets` value; `None` for a value to answer with `Reject`.
pub fn parse_send_targets(value: &str, session: SessionType) -> Option<SendTargetsQuery> {
    match value {
        "All" => Some(SendTargetsQuery::All),
        "" if session == SessionType::Normal => Some(SendTargetsQuery::Current),
        v if is_iscsi_name(v) => Some(SendTargetsQuery::Target(v.to_owned())),
        _ => None,
    }
}

/// One target in a SendTargets answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRecord {
    /// Its iSCSI name.
    pub name: String,
    /// Its portals: (address as `host:port`, with IPv6 hosts in brackets; portal group tag).
    pub addresses: Vec<(String, u16)>,
}

/// Encodes SendTargets records: `TargetName=` followed by its `TargetAddress=` keys.
pub fn encode_send_targets(records: &[TargetRecord]) -> Bytes {
    let mut out = BytesMut::new();
    for r in records {
        let mut pairs = vec![("TargetName".to_owned(), r.name.clone())];
        for (addr, tpgt) in &r.addresses {
            pairs.push(("TargetAddress".to_owned(), format!("{addr},{tpgt}")));
        }
        // Names and addresses are ours; a pair that cannot be encoded is left out.
        let _ = encode_text_into(&mut out, &pairs);
    }
    out.freeze()
}

/// Decodes a SendTargets answer (the initiator's side of [`encode_send_targets`]): each
/// `TargetName=` starts a record and the `TargetAddress=` keys after it (`host:port,tpgt`;
/// the tag defaults to 1 when missing or not a number) are its portals. Other keys and
/// addresses before any name are ignored.
pub fn decode_send_targets(text: &[u8]) -> Vec<TargetRecord> {
    let mut out: Vec<TargetRecord> = Vec::new();
    for pair in text.split(|b| *b == 0).filter(|p| !p.is_empty()) {
        let Ok(pair) = std::str::from_utf8(pair) else {
            continue;
        };
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        match key {
            "TargetName" => out.push(TargetRecord {
                name: value.to_owned(),
                addresses: Vec::new(),
            }),
            "TargetAddress" => {
                let Some(last) = out.last_mut() else {
                    continue;
                };
                let (addr, tag) = match value.rsplit_once(',') {
                    Some((a, t)) => (a, t.parse().unwrap_or(1)),
                    None => (value, 1),
                };
                last.addresses.push((addr.to_owned(), tag));
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        let n = SessionType::Normal;
        assert_eq!(parse_send_targets("All", n), Some(SendTargetsQuery::All));
        assert_eq!(parse_send_targets("", n), Some(SendTargetsQuery::Current));
        assert_eq!(parse_send_targets("", SessionType::Discovery), None);
        assert_eq!(parse_send_targets("Alle", n), None);
        assert_eq!(parse_send_targets("A", n), None);
        assert_eq!(parse_send_targets("aLL", n), None);
        assert_eq!(
            parse_send_targets("iqn.2026-11.rs.iscsi:t", n),
            Some(SendTargetsQuery::Target("iqn.2026-11.rs.iscsi:t".into()))
        );
        assert_eq!(parse_send_targets("iqn.", n), None);
    }

    #[test]
    fn encoding() {
        let b = encode_send_targets(&[TargetRecord {
            name: "iqn.2026-11.rs.iscsi:t".into(),
            addresses: vec![("127.0.0.1:3260".into(), 1), ("[::1]:3260".into(), 1)],
        }]);
        assert_eq!(
            &b[..],
            b"TargetName=iqn.2026-11.rs.iscsi:t\0TargetAddress=127.0.0.1:3260,1\0TargetAddress=[::1]:3260,1\0"
        );
    }

    #[test]
    fn send_targets_round_trip() {
        let records = vec![
            TargetRecord {
                name: "iqn.2026-11.rs.iscsi:a".into(),
                addresses: vec![("127.0.0.1:3260".into(), 1), ("[::1]:3261".into(), 2)],
            },
            TargetRecord {
                name: "iqn.2026-11.rs.iscsi:b".into(),
                addresses: vec![],
            },
        ];
        assert_eq!(decode_send_targets(&encode_send_targets(&records)), records);
        let odd = b"TargetAddress=1.2.3.4:1,1\0TargetName=iqn.x:y\0TargetAddress=h:3260\0X=1\0";
        let got = decode_send_targets(odd);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].addresses, vec![("h:3260".to_owned(), 1)]);
    }
}
