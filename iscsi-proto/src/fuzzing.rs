//! Bodies of the cargo-fuzz targets in `fuzz/`, compiled in ordinary builds with the `fuzzing`
//! feature (and under `cfg(fuzzing)`) so that `cargo test` catches breakage. Each function
//! asserts the properties its target checks; a failed assertion is a finding.

use bytes::{Bytes, BytesMut};

use crate::pdu::{Digests, Pdu};
use crate::{Deframer, DeframerConfig};

fn digests_from(b: u8) -> Digests {
    Digests {
        header: b & 1 != 0,
        data: b & 2 != 0,
    }
}

/// PDU parser: never panics; whatever parses re-encodes to a buffer that parses to the same PDU
/// (parse-build-parse is stable).
pub fn pdu_parse(input: &[u8]) {
    let Some((&first, rest)) = input.split_first() else {
        return;
    };
    let digests = digests_from(first);
    let buf = Bytes::copy_from_slice(rest);
    if let Ok((pdu, used)) = Pdu::parse(&buf, digests) {
        assert!(used <= buf.len());
        let again = pdu
            .to_bytes(digests)
            .expect("a parsed PDU always fits its fields");
        assert_eq!(again.len(), pdu.wire_len(digests));
        let (back, used2) = Pdu::parse(&again, digests).expect("re-encoded PDU parses");
        assert_eq!(used2, again.len());
        assert_eq!(back, pdu);
    }
}

/// Deframer: feeding the input in arbitrary pieces yields the same frames and errors as feeding
/// it whole, and the buffer never holds more than one bounded PDU.
pub fn deframer_splits(input: &[u8]) {
    if input.len() < 3 {
        return;
    }
    let config = DeframerConfig {
        digests: digests_from(input[0]),
        max_data_segment_len: 512 + (input[1] as u32) * 64,
    };
    let seed = input[2];
    let stream = &input[3..];
    let drain = |d: &mut Deframer, out: &mut Vec<Result<Bytes, String>>| {
        loop {
            match d.next_frame() {
                Ok(Some(f)) => {
                    let mut raw = BytesMut::new();
                    raw.extend_from_slice(&f.raw_header());
                    raw.extend_from_slice(&f.data());
                    out.push(Ok(raw.freeze()));
                }
                Ok(None) => break,
                Err(e) => {
                    let fatal = e.is_fatal();
                    out.push(Err(e.to_string()));
                    if fatal {
                        break;
                    }
                }
            }
        }
    };
    let mut whole = Vec::new();
    let mut d = Deframer::new(config);
    d.feed(stream);
    drain(&mut d, &mut whole);

    let mut pieces = Vec::new();
    let mut d = Deframer::new(config);
    let mut pos = 0;
    let mut step = seed as usize % 7 + 1;
    let bound = crate::pdu::BHS_LEN
        + crate::pdu::MAX_AHS_LEN
        + 8
        + config.max_data_segment_len as usize
        + 64;
    while pos < stream.len() {
        let end = (pos + step).min(stream.len());
        d.feed(&stream[pos..end]);
        pos = end;
        step = (step * 5 + seed as usize) % 61 + 1;
        drain(&mut d, &mut pieces);
        assert!(
            d.buffered() <= bound,
            "deframer buffered {} > {bound}",
            d.buffered()
        );
        if pieces.last().is_some_and(|r| r.is_err())
            && d.next_frame().is_err()
            && whole.len() <= pieces.len()
        {
            break;
        }
    }
    let n = whole.len().min(pieces.len());
    assert_eq!(whole[..n], pieces[..n]);
}

/// Text layer: C-bit reassembly of arbitrary pieces, parsing, and a negotiator in either role
/// fed the result never panic; reassembly equals the whole; a negotiation that succeeds yields
/// FirstBurstLength <= MaxBurstLength.
pub fn text_negotiation(input: &[u8]) {
    use crate::text::{
        LocalConfig, Negotiator, Role, SessionType, Stage, TextAssembler, TextLimits, parse_text,
    };
    let Some((&ctl, text)) = input.split_first() else {
        return;
    };
    // Reassemble `text` from pieces whose sizes come from the control byte.
    let mut asm = TextAssembler::new(64 * 1024);
    let step = ctl as usize % 13 + 1;
    let mut whole = None;
    let mut pieces = text.chunks(step).peekable();
    if text.is_empty() {
        whole = asm.feed(&[], false).ok().flatten();
    }
    while let Some(p) = pieces.next() {
        let last = pieces.peek().is_none();
        match asm.feed(p, !last) {
            Ok(Some(t)) => whole = Some(t),
            Ok(None) => {}
            Err(_) => return,
        }
    }
    let whole = whole.expect("the last piece had C=0");
    assert_eq!(whole, text);

    let role = if ctl & 0x80 != 0 {
        Role::Target
    } else {
        Role::Initiator
    };
    let session = if ctl & 0x40 != 0 {
        SessionType::Discovery
    } else {
        SessionType::Normal
    };
    let mut config = LocalConfig::default();
    if role == Role::Initiator {
        config.initiator_name = Some("iqn.2026-11.rs.iscsi:fuzz".into());
        config.target_name = Some("iqn.2026-11.rs.iscsi:t".into());
    }
    let mut n = Negotiator::new(role, config, session, ctl & 0x20 == 0, ctl & 0x10 != 0);
    if ctl & 0x08 != 0 {
        n.set_stage(Stage::Operational);
    }
    let _ = n.offer();
    if let Ok(pairs) = parse_text(&whole, &TextLimits::default())
        && n.handle(&pairs).is_ok()
    {
        let r = n.result();
        assert!(r.first_burst_length <= r.max_burst_length);
    }
    // The same bytes straight into the negotiator's own text entry point.
    let _ = n.handle_text(&whole);
}
