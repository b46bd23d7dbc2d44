//! The initiator's login under a hostile target: an [`InitiatorLogin`] answered by arbitrary
//! Login responses, by free-form ones built from the input, and by a real [`TargetLogin`]
//! (so the fuzzer reaches the deep paths: CHAP, operational negotiation, completion) whose
//! answers it may corrupt.
//!
//! Input: a configuration byte (bits 0-1: no authentication, CHAP, mutual CHAP, mutual CHAP
//! with a target that knows the wrong secret; bit 2: a discovery session; bit 3: the real
//! target requires CHAP; bits 4-5: the CHAP algorithms offered), then up to 64 operations,
//! each an operation byte and its arguments: 0 a raw PDU from the next bytes (whatever parses;
//! a Login Response goes to the initiator); 1 a free-form Login Response (flags, status,
//! StatSN step, TSIH, text); 2 the real target's answer to our request; 3 the real target's
//! answer with one byte of its text changed.
//!
//! Checked: no panic; every request encodes and parses back to itself, holds at most 8192
//! bytes of text and names the stage it is in; answered by the real target alone, no empty
//! security-stage request goes out but one collecting a continued answer; the login ends
//! within 64 responses; after it ended, more
//! responses change nothing (an error stays an error); with mutual CHAP the login completes
//! only if the real target proved itself (no other answer can carry the right CHAP_R).

use std::sync::Arc;

use bytes::Bytes;

use super::Reader;
use crate::auth::{
    AuthPolicy, ChapAlgorithm, ChapCredential, InitiatorAuthConfig, TargetAuthConfig,
};
use crate::initiator::{InitiatorLogin, InitiatorLoginConfig, InitiatorStep};
use crate::pdu::{Digests, LoginRequest, LoginResponse, LoginStatus, Pdu, Stage, Tsih};
use crate::serial::StatSn;
use crate::target::{LoginConfig, LoginHost, LoginIdentity, LoginStep, TargetLogin};
use crate::text::{LocalConfig, SessionType};

const INITIATOR: &str = "iqn.2026-12.rs.iscsi:fuzz-initiator";
const TARGET: &str = "iqn.2026-12.rs.iscsi:fuzz-target";
const SECRET: &str = "alice-secret-0123";
const TARGET_SECRET: &str = "bob-secret-4567";
const MAX_OPS: usize = 64;

struct Host {
    auth: Arc<TargetAuthConfig>,
}

impl LoginHost for Host {
    fn authorize(&mut self, _: &LoginIdentity) -> Result<Arc<TargetAuthConfig>, LoginStatus> {
        Ok(self.auth.clone())
    }

    fn open_session(&mut self, _: &LoginIdentity, _: Option<&str>) -> Result<Tsih, LoginStatus> {
        Ok(Tsih(9))
    }
}

fn algorithms(b: u8) -> Vec<ChapAlgorithm> {
    match b & 3 {
        0 => vec![ChapAlgorithm::Md5],
        1 => vec![ChapAlgorithm::Sha256, ChapAlgorithm::Sha1],
        2 => vec![ChapAlgorithm::Sha3_256],
        _ => vec![
            ChapAlgorithm::Sha3_256,
            ChapAlgorithm::Sha256,
            ChapAlgorithm::Sha1,
            ChapAlgorithm::Md5,
        ],
    }
}

/// Checks a request the initiator wants to send (`cont`: the last response said more was
/// coming, which an empty request collects).
fn check_request(req: &LoginRequest, cont: bool) {
    let pdu = Pdu::LoginRequest(req.clone());
    let bytes = pdu
        .to_bytes(Digests::NONE)
        .expect("a login request encodes");
    let (back, used) = Pdu::parse(&bytes, Digests::NONE).expect("a login request parses");
    assert_eq!(used, bytes.len());
    assert_eq!(back, pdu);
    assert!(
        req.data.len() <= 8192,
        "{} bytes of login text",
        req.data.len()
    );
    if req.transit {
        assert!(
            req.nsg > req.csg,
            "T=1 must move forward: {:?} -> {:?}",
            req.csg,
            req.nsg
        );
    }
    assert!(
        cont || !(req.csg == Stage::Security && req.data.is_empty() && !req.transit),
        "an empty security-stage request that neither moves on nor collects a continued answer"
    );
}

/// A free-form Login Response from the input.
fn free_response(r: &mut Reader<'_>, last: &LoginRequest) -> LoginResponse {
    let flags = r.u8();
    let stages = [
        Stage::Security,
        Stage::Operational,
        Stage::FullFeature,
        Stage::FullFeature,
    ];
    let csg = stages[usize::from(flags >> 2 & 3)];
    let nsg = stages[usize::from(flags & 3)];
    let class = r.u8() % 4;
    let detail = r.u8() % 12;
    let step = r.u8() % 3;
    let len = usize::from(r.u8());
    let text: Vec<u8> = r.bytes(len).to_vec();
    LoginResponse {
        transit: flags & 0x80 != 0,
        cont: flags & 0x40 != 0,
        csg,
        nsg,
        version_max: 0,
        version_active: 0,
        isid: last.isid,
        tsih: Tsih(u16::from(flags & 0x10 != 0) * 7),
        itt: last.itt,
        stat_sn: StatSn(u32::from(step)),
        exp_cmd_sn: last.cmd_sn,
        max_cmd_sn: last.cmd_sn,
        status: LoginStatus { class, detail },
        data: Bytes::from(text),
    }
}

/// Runs one input (see the module documentation).
pub(super) fn run(data: &[u8]) {
    let mut r = Reader { data };
    let c = r.u8();
    let discovery = c & 4 != 0;
    let (auth, mutual) = match c & 3 {
        0 => (None, false),
        1 => (
            Some(InitiatorAuthConfig {
                algorithms: algorithms(c >> 4),
                ..InitiatorAuthConfig::chap(ChapCredential::new("alice", SECRET))
            }),
            false,
        ),
        _ => (
            Some(InitiatorAuthConfig {
                algorithms: algorithms(c >> 4),
                ..InitiatorAuthConfig::mutual_chap(
                    ChapCredential::new("alice", SECRET),
                    ChapCredential::new("target-bob", TARGET_SECRET),
                )
            }),
            true,
        ),
    };
    let negotiation = LocalConfig {
        initiator_name: Some(INITIATOR.into()),
        target_name: (!discovery).then(|| TARGET.into()),
        ..LocalConfig::default()
    };
    let mut cfg = InitiatorLoginConfig::new(negotiation);
    cfg.session_type = if discovery {
        SessionType::Discovery
    } else {
        SessionType::Normal
    };
    cfg.auth = auth.map(Arc::new);
    cfg.random = (0..64).map(|i| (i * 13 + 5) as u8).collect();
    let mut login = InitiatorLogin::new(cfg, false);

    // The real target: requires CHAP (bit 3) with our secret, or the wrong target secret.
    let target_auth = TargetAuthConfig {
        method: if c & 8 != 0 {
            AuthPolicy::Chap
        } else {
            TargetAuthConfig::default().method
        },
        credentials: vec![ChapCredential::new("alice", SECRET)],
        mutual: Some(ChapCredential::new(
            "target-bob",
            if c & 3 == 3 {
                "wrong-secret-0000"
            } else {
                TARGET_SECRET
            },
        )),
        ..TargetAuthConfig::default()
    };
    let mut host = Host {
        auth: Arc::new(target_auth),
    };
    let mut target = TargetLogin::new(
        LoginConfig {
            negotiation: LocalConfig {
                target_portal_group_tag: Some(1),
                ..LocalConfig::default()
            },
            initial_stat_sn: StatSn(0xffff_fff0),
            queue_depth: 32,
            random: (0..64).map(|i| (i * 31 + 7) as u8).collect(),
        },
        false,
    );

    let mut req = login.start();
    check_request(&req, false);
    // Whether the real target answered a request of ours that carried our CHAP challenge.
    let mut proved = false;
    let mut ended = false;
    // Every answer so far came from the real target, unchanged.
    let mut pure = true;
    for _ in 0..MAX_OPS {
        if r.is_empty() {
            break;
        }
        let op = r.u8() % 4;
        pure &= op == 2;
        let resp = match op {
            0 => {
                let len = usize::from(r.u16() % 9000);
                let raw = Bytes::copy_from_slice(r.bytes(len));
                match Pdu::parse(&raw, Digests::NONE) {
                    Ok((Pdu::LoginResponse(resp), _)) => resp,
                    _ => continue,
                }
            }
            1 => free_response(&mut r, &req),
            _ => {
                let asked = req.data.windows(7).any(|w| w == b"CHAP_C=");
                let mut resp = match target.handle(&req, &mut host) {
                    LoginStep::Continue(resp)
                    | LoginStep::Complete(resp)
                    | LoginStep::Failed(resp, _) => resp,
                };
                // A changed answer can only lose the proof, never forge one.
                proved |= asked;
                if op == 3 && !resp.data.is_empty() {
                    let at = usize::from(r.u16()) % resp.data.len();
                    let mut text = resp.data.to_vec();
                    text[at] ^= r.u8() | 1;
                    resp.data = Bytes::from(text);
                }
                resp
            }
        };
        let step = login.handle(&resp);
        if ended {
            assert!(
                step.is_err(),
                "a login that ended took another response: {step:?}"
            );
            continue;
        }
        match step {
            Ok(InitiatorStep::Send(next)) => {
                // Against a correct target an empty security-stage request only collects a
                // continued answer (LIO refuses any other); a broken answer may leave us with
                // nothing to say.
                check_request(&next, resp.cont || !pure);
                req = next;
            }
            Ok(InitiatorStep::Complete(_)) => {
                assert!(
                    !mutual || proved,
                    "mutual CHAP completed without the target's proof"
                );
                assert!(
                    c & 3 != 3,
                    "mutual CHAP completed against a target with the wrong secret"
                );
                ended = true;
            }
            Ok(InitiatorStep::Redirect { .. }) | Err(_) => ended = true,
        }
    }
}
