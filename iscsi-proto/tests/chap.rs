//! CHAP authentication (RFC 7143 §12.1.3, RFC 1994): known answers, initiator/target round
//! trips for every algorithm and encoding, one-way and mutual, every refusal with its Login
//! status, and garbage that must never panic.

use iscsi_proto::auth::{
    AuthError, AuthPolicy, ChapAlgorithm, ChapCredential, ChapEncoding, InitiatorAuthConfig,
    InitiatorAuthenticator, TargetAuthConfig, TargetAuthenticator, login_status,
};
use proptest::prelude::*;

const INITIATOR_SECRET: &[u8] = b"initiator-secret-0123";
const TARGET_SECRET: &[u8] = b"target-secret-9876";
const TARGET_NAME: &str = "iqn.2024-01.org.example:disk";

const AUTH_FAILURE: (u8, u8) = (0x02, 0x01);
const INITIATOR_ERROR: (u8, u8) = (0x02, 0x00);
const TARGET_ERROR: (u8, u8) = (0x03, 0x00);

type Pairs = Vec<(String, String)>;

fn pairs(list: &[(&str, &str)]) -> Pairs {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn alice() -> ChapCredential {
    ChapCredential::new("alice", INITIATOR_SECRET.to_vec())
}

fn target_credential() -> ChapCredential {
    ChapCredential::new(TARGET_NAME, TARGET_SECRET.to_vec())
}

/// The target's random bytes: identifier 0x2a, then the challenge 0x10..=0x2f.
fn target_random() -> Vec<u8> {
    let mut r = vec![0x2a];
    r.extend(0x10..0x30u8);
    r
}

/// The initiator's random bytes: identifier 1, then the challenge 0xa0..=0xbf.
fn initiator_random() -> Vec<u8> {
    let mut r = vec![1];
    r.extend(0xa0..0xc0u8);
    r
}

fn chap_target() -> TargetAuthConfig {
    TargetAuthConfig::chap(vec![
        ChapCredential::new("bob", b"bob-secret-bob-secret".to_vec()),
        alice(),
    ])
}

fn mutual_target() -> TargetAuthConfig {
    TargetAuthConfig {
        mutual: Some(target_credential()),
        ..chap_target()
    }
}

/// Asserts that an error's message and debug form hold no configured secret.
fn assert_no_secret(e: &AuthError) {
    for text in [e.to_string(), format!("{e:?}")] {
        for secret in [INITIATOR_SECRET, TARGET_SECRET, b"bob-secret-bob-secret"] {
            let secret = std::str::from_utf8(secret).unwrap();
            assert!(!text.contains(secret), "secret leaked in {text}");
        }
    }
}

#[derive(Debug)]
enum Side {
    Target,
    Initiator,
}

/// Runs a whole exchange in memory; returns both authenticators or the side that failed.
fn exchange(
    target_config: TargetAuthConfig,
    initiator_config: InitiatorAuthConfig,
) -> Result<(TargetAuthenticator, InitiatorAuthenticator), (Side, AuthError)> {
    let mut target = TargetAuthenticator::new(target_config, &target_random());
    let mut initiator = InitiatorAuthenticator::new(initiator_config, &initiator_random());
    let mut request = initiator.start();
    for _ in 0..8 {
        let response = target.handle(&request).map_err(|e| (Side::Target, e))?;
        request = initiator
            .handle(&response)
            .map_err(|e| (Side::Initiator, e))?;
        if initiator.is_done() && target.is_done() && request.is_empty() {
            target.check_transit().map_err(|e| (Side::Target, e))?;
            initiator
                .check_transit()
                .map_err(|e| (Side::Initiator, e))?;
            return Ok((target, initiator));
        }
    }
    panic!("exchange did not finish");
}

/// A target that has sent its challenge for `algorithm` (after `AuthMethod` and `CHAP_A`).
fn challenged(config: TargetAuthConfig, algorithm: ChapAlgorithm) -> TargetAuthenticator {
    let mut t = TargetAuthenticator::new(config, &target_random());
    let out = t
        .handle(&pairs(&[
            ("AuthMethod", "CHAP,None"),
            ("CHAP_A", &algorithm.code().to_string()),
        ]))
        .unwrap();
    assert_eq!(out[0], ("AuthMethod".into(), "CHAP".into()));
    assert_eq!(out[1], ("CHAP_A".into(), algorithm.code().to_string()));
    t
}

fn alice_response(algorithm: ChapAlgorithm) -> String {
    format!(
        "0x{}",
        hex(&algorithm.response(0x2a, INITIATOR_SECRET, &target_random()[1..]))
    )
}

fn target_error(t: &mut TargetAuthenticator, request: &[(&str, &str)]) -> AuthError {
    let e = t.handle(&pairs(request)).unwrap_err();
    assert_no_secret(&e);
    assert!(t.is_failed() && !t.is_done());
    // The failure sticks.
    assert_eq!(t.handle(&Pairs::new()).unwrap_err(), e);
    assert_eq!(t.check_transit().unwrap_err(), e);
    e
}

// ---------------------------------------------------------------------------------------
// Known answers: expected values computed independently with Python's hashlib, e.g.
// python3 -c 'import hashlib; print(hashlib.md5(bytes([0x2a]) + b"initiator-secret-0123"
//   + bytes(range(0x10, 0x30))).hexdigest())'

/// Algorithm, identifier, secret, challenge, expected response in hex.
type KnownAnswer<'a> = (ChapAlgorithm, u8, &'a [u8], &'a [u8], &'a str);

#[test]
fn known_answers() {
    let challenge: Vec<u8> = (0x10..0x30).collect();
    let vectors: [KnownAnswer; 12] = [
        (
            ChapAlgorithm::Md5,
            0x2a,
            INITIATOR_SECRET,
            &challenge,
            "ac849ee0b99490816ef128a029f39deb",
        ),
        (
            ChapAlgorithm::Sha1,
            0x2a,
            INITIATOR_SECRET,
            &challenge,
            "ae4be9e8da2089c1a3fbc10f62ec7080a9c4f8fb",
        ),
        (
            ChapAlgorithm::Sha256,
            0x2a,
            INITIATOR_SECRET,
            &challenge,
            "5b3795c8d69000dd27c7e3976b5b23a4886e334cd46b3470c71f444408ff164c",
        ),
        (
            ChapAlgorithm::Sha3_256,
            0x2a,
            INITIATOR_SECRET,
            &challenge,
            "338e4551696c81516557025a8780fee867d6b3b172f78a0e79c6d76442204416",
        ),
        (
            ChapAlgorithm::Md5,
            0,
            b"a",
            &[0xff; 16],
            "9e2aab24d6a48a3d932ef2ce4332c0d1",
        ),
        (
            ChapAlgorithm::Sha1,
            0,
            b"a",
            &[0xff; 16],
            "d25b49500a8004e929453747a953f8008082e82a",
        ),
        (
            ChapAlgorithm::Sha256,
            0,
            b"a",
            &[0xff; 16],
            "8ecd0a34f82e711acd8bcde44e4c8d789a7f30def19580fed77a1fc8f3d6f0da",
        ),
        (
            ChapAlgorithm::Sha3_256,
            0,
            b"a",
            &[0xff; 16],
            "4a32eb167f5e7a9c8dabd010c1d2ed05a7f71412470f2e9b1702764fc449dc31",
        ),
        (
            ChapAlgorithm::Md5,
            255,
            TARGET_SECRET,
            &[1],
            "3afe65b4080a329e42819c9903113828",
        ),
        (
            ChapAlgorithm::Sha1,
            255,
            TARGET_SECRET,
            &[1],
            "b9366a6896268f4dda992a0b149ca33c4f3d3995",
        ),
        (
            ChapAlgorithm::Sha256,
            255,
            TARGET_SECRET,
            &[1],
            "6244e2510cc32440f6ae141a5f50c4a31ce38842cd957c7d12c7d2ec8793dfa0",
        ),
        (
            ChapAlgorithm::Sha3_256,
            255,
            TARGET_SECRET,
            &[1],
            "5c98e99bfc3f4ea510a02f76c8c3d728f10738f42f5ce93d7045e28e7595afd1",
        ),
    ];
    for (algorithm, id, secret, challenge, expected) in vectors {
        let response = algorithm.response(id, secret, challenge);
        assert_eq!(hex(&response), expected, "{algorithm}");
        assert_eq!(response.len(), algorithm.digest_len());
    }
}

#[test]
fn algorithm_codes() {
    let codes: Vec<u8> = ChapAlgorithm::ALL.iter().map(|a| a.code()).collect();
    assert_eq!(codes, [8, 7, 6, 5]);
    assert_eq!(ChapAlgorithm::from_code(5), Some(ChapAlgorithm::Md5));
    assert_eq!(ChapAlgorithm::from_code(6), Some(ChapAlgorithm::Sha1));
    assert_eq!(ChapAlgorithm::from_code(7), Some(ChapAlgorithm::Sha256));
    assert_eq!(ChapAlgorithm::from_code(8), Some(ChapAlgorithm::Sha3_256));
    assert_eq!(ChapAlgorithm::from_code(129), None);
    assert_eq!(ChapAlgorithm::Sha1.digest_len(), 20);
}

/// A libiscsi-style exchange, byte for byte: `CHAP_A=5` only, uppercase hex response with a
/// `0X` prefix accepted, then a mutual challenge answered with the expected MD5.
#[test]
fn libiscsi_style_transcript() {
    let mut t = TargetAuthenticator::new(mutual_target(), &target_random());
    assert_eq!(
        t.handle(&pairs(&[("AuthMethod", "CHAP,None")])).unwrap(),
        pairs(&[("AuthMethod", "CHAP")])
    );
    assert!(!t.is_done());
    assert_eq!(
        t.handle(&pairs(&[("CHAP_A", "5")])).unwrap(),
        pairs(&[
            ("CHAP_A", "5"),
            ("CHAP_I", "42"),
            (
                "CHAP_C",
                "0x101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f"
            ),
        ])
    );
    let response = format!("0X{}", "ac849ee0b99490816ef128a029f39deb".to_uppercase());
    let out = t
        .handle(&pairs(&[
            ("CHAP_N", "alice"),
            ("CHAP_R", &response),
            ("CHAP_I", "1"),
            (
                "CHAP_C",
                "0xA0A1A2A3A4A5A6A7A8A9AAABACADAEAFB0B1B2B3B4B5B6B7B8B9BABBBCBDBEBF",
            ),
        ]))
        .unwrap();
    assert_eq!(
        out,
        pairs(&[
            ("CHAP_N", TARGET_NAME),
            ("CHAP_R", "0x77a8757ecd55f8d4a06554a073d84ef0"),
        ])
    );
    assert!(t.is_done() && t.is_mutual());
    assert_eq!(t.authenticated_user(), Some("alice"));
    assert_eq!(t.algorithm(), Some(ChapAlgorithm::Md5));
    assert_eq!(t.check_transit(), Ok(()));
    // Nothing more is expected; an empty request is fine, more keys are not.
    assert_eq!(t.handle(&Pairs::new()), Ok(vec![]));
}

#[test]
fn base64_response_accepted() {
    let mut t = challenged(chap_target(), ChapAlgorithm::Md5);
    // MD5 KAT above in base64, with and without padding.
    for r in ["0brISe4LmUkIFu8SigKfOd6w==", "0BrISe4LmUkIFu8SigKfOd6w"] {
        let mut t2 = t.clone();
        assert_eq!(
            t2.handle(&pairs(&[("CHAP_N", "alice"), ("CHAP_R", r)])),
            Ok(vec![])
        );
        assert!(t2.is_done());
    }
    assert_eq!(
        t.handle(&pairs(&[
            ("CHAP_N", "alice"),
            ("CHAP_R", &alice_response(ChapAlgorithm::Md5))
        ])),
        Ok(vec![])
    );
}

// ---------------------------------------------------------------------------------------
// Round trips

#[test]
fn round_trip_every_algorithm_encoding_and_direction() {
    let encodings = [ChapEncoding::Hex, ChapEncoding::Base64];
    for algorithm in ChapAlgorithm::ALL {
        for mutual in [false, true] {
            for target_encoding in encodings {
                for initiator_encoding in encodings {
                    let target_config = TargetAuthConfig {
                        algorithms: vec![algorithm],
                        encoding: target_encoding,
                        ..mutual_target()
                    };
                    let initiator_config = InitiatorAuthConfig {
                        credential: Some(alice()),
                        mutual: mutual.then(target_credential),
                        encoding: initiator_encoding,
                        // Every algorithm offered (the default leaves out 7).
                        algorithms: ChapAlgorithm::ALL.to_vec(),
                        ..InitiatorAuthConfig::default()
                    };
                    let (t, i) = exchange(target_config, initiator_config).unwrap();
                    assert_eq!(t.authenticated_user(), Some("alice"));
                    assert_eq!(t.algorithm(), Some(algorithm));
                    assert_eq!(i.algorithm(), Some(algorithm));
                    assert_eq!(t.is_mutual(), mutual);
                    assert_eq!(i.is_mutual(), mutual);
                }
            }
        }
    }
}

#[test]
fn round_trip_wire_forms() {
    let mut t = TargetAuthenticator::new(
        TargetAuthConfig {
            encoding: ChapEncoding::Base64,
            ..mutual_target()
        },
        &target_random(),
    );
    let mut i = InitiatorAuthenticator::new(
        InitiatorAuthConfig::mutual_chap(alice(), target_credential()),
        &initiator_random(),
    );
    let r1 = i.start();
    assert_eq!(r1, pairs(&[("AuthMethod", "CHAP")]));
    let a1 = t.handle(&r1).unwrap();
    let r2 = i.handle(&a1).unwrap();
    // The default offer leaves out 7 (tgt reads it as SHA-1).
    assert_eq!(r2, pairs(&[("CHAP_A", "8,6,5")]));
    let a2 = t.handle(&r2).unwrap();
    assert_eq!(a2[0], ("CHAP_A".into(), "8".into()));
    assert!(a2[2].1.starts_with("0b"), "{a2:?}");
    let r3 = i.handle(&a2).unwrap();
    let keys: Vec<&str> = r3.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["CHAP_N", "CHAP_R", "CHAP_I", "CHAP_C"]);
    assert_eq!(r3[0].1, "alice");
    assert_eq!(r3[1].1.len(), 2 + 64);
    assert_eq!(r3[2].1, "1");
    assert!(!i.is_done());
    let a3 = t.handle(&r3).unwrap();
    assert_eq!(a3[0], ("CHAP_N".into(), TARGET_NAME.into()));
    assert!(t.is_done());
    assert_eq!(i.handle(&a3), Ok(vec![]));
    assert!(i.is_done() && i.is_mutual());
}

#[test]
fn target_picks_initiators_first_acceptable_algorithm() {
    let cases = [
        (
            vec![ChapAlgorithm::Md5, ChapAlgorithm::Sha256],
            vec![ChapAlgorithm::Sha256, ChapAlgorithm::Md5],
            ChapAlgorithm::Md5,
        ),
        (
            vec![ChapAlgorithm::Sha1, ChapAlgorithm::Sha3_256],
            vec![ChapAlgorithm::Sha3_256],
            ChapAlgorithm::Sha3_256,
        ),
        (
            ChapAlgorithm::ALL.to_vec(),
            vec![ChapAlgorithm::Md5, ChapAlgorithm::Sha1],
            ChapAlgorithm::Sha1,
        ),
    ];
    for (offered, accepted, expected) in cases {
        let (t, _) = exchange(
            TargetAuthConfig {
                algorithms: accepted,
                ..chap_target()
            },
            InitiatorAuthConfig {
                algorithms: offered,
                ..InitiatorAuthConfig::chap(alice())
            },
        )
        .unwrap();
        assert_eq!(t.algorithm(), Some(expected));
    }
    // Unknown and out-of-range numbers in the list are skipped (261 is not 5).
    let mut t = TargetAuthenticator::new(chap_target(), &target_random());
    t.handle(&pairs(&[("AuthMethod", "CHAP")])).unwrap();
    let out = t.handle(&pairs(&[("CHAP_A", "129,261,x,,6")])).unwrap();
    assert_eq!(out[0], ("CHAP_A".into(), "6".into()));
}

#[test]
fn auth_method_none() {
    // Target without authentication, initiator without credentials.
    let (t, i) = exchange(TargetAuthConfig::default(), InitiatorAuthConfig::default()).unwrap();
    assert_eq!(t.authenticated_user(), None);
    assert_eq!(i.algorithm(), None);
    // The initiator offers CHAP,None; a target without authentication picks None.
    let (t, i) = exchange(
        TargetAuthConfig::default(),
        InitiatorAuthConfig::chap(alice()),
    )
    .unwrap();
    assert!(t.is_done() && i.is_done());
    assert_eq!(t.authenticated_user(), None);
    // An initiator that skips the security stage is fine without authentication.
    let t = TargetAuthenticator::new(TargetAuthConfig::default(), &[]);
    assert!(t.is_done());
    assert_eq!(t.check_transit(), Ok(()));
    let mut i = InitiatorAuthenticator::new(InitiatorAuthConfig::default(), &[]);
    assert!(i.is_done());
    assert_eq!(i.start(), pairs(&[("AuthMethod", "None")]));
    assert_eq!(i.start(), vec![]);
}

#[test]
fn initiator_offers_follow_credentials() {
    let mut i = InitiatorAuthenticator::new(InitiatorAuthConfig::chap(alice()), &[]);
    assert_eq!(i.start(), pairs(&[("AuthMethod", "CHAP,None")]));
    let mut i = InitiatorAuthenticator::new(
        InitiatorAuthConfig::mutual_chap(alice(), target_credential()),
        &initiator_random(),
    );
    assert_eq!(i.start(), pairs(&[("AuthMethod", "CHAP")]));
    // Repeated algorithms are offered once.
    let mut i = InitiatorAuthenticator::new(
        InitiatorAuthConfig {
            algorithms: vec![ChapAlgorithm::Md5, ChapAlgorithm::Sha1, ChapAlgorithm::Md5],
            ..InitiatorAuthConfig::chap(alice())
        },
        &[],
    );
    i.start();
    assert_eq!(
        i.handle(&pairs(&[("AuthMethod", "CHAP")])).unwrap(),
        pairs(&[("CHAP_A", "5,6")])
    );
}

// ---------------------------------------------------------------------------------------
// Target refusals

#[test]
fn target_rejects_unacceptable_auth_method() {
    for (config, offer) in [
        (chap_target(), "None"),
        (chap_target(), "KRB5,SRP,X-vendor"),
        (TargetAuthConfig::default(), "CHAP"),
    ] {
        let mut t = TargetAuthenticator::new(config, &target_random());
        assert_eq!(
            t.handle(&pairs(&[("AuthMethod", offer)])).unwrap(),
            pairs(&[("AuthMethod", "Reject")])
        );
        assert!(t.is_failed() && !t.is_done());
        let e = t.check_transit().unwrap_err();
        assert!(matches!(e, AuthError::NoAcceptableMethod { .. }));
        assert_eq!(e.login_status(), AUTH_FAILURE);
        assert_eq!(t.handle(&pairs(&[("CHAP_A", "5")])).unwrap_err(), e);
    }
}

#[test]
fn target_requires_authentication_before_transit() {
    // No AuthMethod at all while CHAP is required.
    let mut t = TargetAuthenticator::new(chap_target(), &target_random());
    assert!(!t.is_done());
    assert_eq!(t.handle(&Pairs::new()), Ok(vec![]));
    let e = t.check_transit().unwrap_err();
    assert_eq!(e, AuthError::AuthenticationRequired);
    assert_eq!(e.login_status(), AUTH_FAILURE);
    // Leaving in the middle of the exchange.
    t.handle(&pairs(&[("AuthMethod", "CHAP")])).unwrap();
    assert_eq!(t.check_transit().unwrap_err().login_status(), AUTH_FAILURE);
    t.handle(&pairs(&[("CHAP_A", "5")])).unwrap();
    assert!(matches!(
        t.check_transit(),
        Err(AuthError::Incomplete { .. })
    ));
}

#[test]
fn target_rejects_unacceptable_algorithms() {
    let config = TargetAuthConfig {
        algorithms: vec![ChapAlgorithm::Sha256],
        ..chap_target()
    };
    let mut t = TargetAuthenticator::new(config, &target_random());
    t.handle(&pairs(&[("AuthMethod", "CHAP")])).unwrap();
    assert_eq!(
        t.handle(&pairs(&[("CHAP_A", "5,6,8,129")])).unwrap(),
        pairs(&[("CHAP_A", "Reject")])
    );
    assert!(t.is_failed());
    let e = t.check_transit().unwrap_err();
    assert!(matches!(e, AuthError::NoCommonAlgorithm { .. }));
    assert_eq!(e.login_status(), AUTH_FAILURE);
    // The initiator side of the same refusal.
    let mut i = InitiatorAuthenticator::new(InitiatorAuthConfig::chap(alice()), &[]);
    i.start();
    i.handle(&pairs(&[("AuthMethod", "CHAP")])).unwrap();
    assert_eq!(
        i.handle(&pairs(&[("CHAP_A", "Reject")])).unwrap_err(),
        AuthError::Rejected { key: "CHAP_A" }
    );
}

#[test]
fn target_refuses_wrong_responses() {
    for algorithm in ChapAlgorithm::ALL {
        // Wrong secret.
        let mut t = challenged(chap_target(), algorithm);
        let wrong = hex(&algorithm.response(0x2a, b"not-the-secret", &target_random()[1..]));
        let e = target_error(
            &mut t,
            &[("CHAP_N", "alice"), ("CHAP_R", &format!("0x{wrong}"))],
        );
        assert_eq!(
            e,
            AuthError::WrongResponse {
                user: "alice".into()
            }
        );
        assert_eq!(e.login_status(), AUTH_FAILURE);
        // Another user's name with alice's response.
        let mut t = challenged(chap_target(), algorithm);
        let e = target_error(
            &mut t,
            &[("CHAP_N", "bob"), ("CHAP_R", &alice_response(algorithm))],
        );
        assert_eq!(e.login_status(), AUTH_FAILURE);
        // Unknown user.
        let mut t = challenged(chap_target(), algorithm);
        let e = target_error(
            &mut t,
            &[
                ("CHAP_N", "mallory"),
                ("CHAP_R", &alice_response(algorithm)),
            ],
        );
        assert_eq!(
            e,
            AuthError::UnknownUser {
                user: "mallory".into()
            }
        );
        assert_eq!(e.login_status(), AUTH_FAILURE);
        // One bit flipped.
        let mut t = challenged(chap_target(), algorithm);
        let mut r = unhex(&alice_response(algorithm)[2..]);
        r[0] ^= 1;
        let e = target_error(
            &mut t,
            &[("CHAP_N", "alice"), ("CHAP_R", &format!("0x{}", hex(&r)))],
        );
        assert_eq!(e.login_status(), AUTH_FAILURE);
    }
}

#[test]
fn target_refuses_malformed_responses() {
    let good = alice_response(ChapAlgorithm::Sha256);
    let too_long = format!("{good}00");
    let too_short = good[..good.len() - 2].to_owned();
    // The MD5 response where SHA-256 was selected.
    let md5 = alice_response(ChapAlgorithm::Md5);
    for r in [
        too_long.as_str(),
        too_short.as_str(),
        md5.as_str(),
        "0x",
        "0xzz",
        "1234",
        "",
        "0b!!",
        "Reject",
    ] {
        let mut t = challenged(chap_target(), ChapAlgorithm::Sha256);
        let e = target_error(&mut t, &[("CHAP_N", "alice"), ("CHAP_R", r)]);
        assert!(
            matches!(e, AuthError::Malformed { key: "CHAP_R", .. }),
            "{r}: {e}"
        );
        assert_eq!(e.login_status(), INITIATOR_ERROR);
    }
    // Missing halves.
    let mut t = challenged(chap_target(), ChapAlgorithm::Sha256);
    let e = target_error(&mut t, &[("CHAP_N", "alice")]);
    assert_eq!(e, AuthError::MissingKey { key: "CHAP_R" });
    assert_eq!(e.login_status(), INITIATOR_ERROR);
    let mut t = challenged(chap_target(), ChapAlgorithm::Sha256);
    let e = target_error(&mut t, &[("CHAP_R", &good)]);
    assert_eq!(e, AuthError::MissingKey { key: "CHAP_N" });
}

#[test]
fn target_refuses_unexpected_and_duplicate_keys() {
    let cases: [(TargetAuthenticator, Pairs); 7] = [
        // CHAP keys before AuthMethod.
        (
            TargetAuthenticator::new(chap_target(), &target_random()),
            pairs(&[("CHAP_N", "alice")]),
        ),
        (
            TargetAuthenticator::new(chap_target(), &target_random()),
            pairs(&[("CHAP_A", "5")]),
        ),
        // Another method's key.
        (
            TargetAuthenticator::new(chap_target(), &target_random()),
            pairs(&[("AuthMethod", "CHAP"), ("SRP_U", "alice")]),
        ),
        // CHAP_A when None was selected.
        (
            TargetAuthenticator::new(TargetAuthConfig::default(), &target_random()),
            pairs(&[("AuthMethod", "None"), ("CHAP_A", "5")]),
        ),
        // CHAP_A again after the challenge.
        (
            challenged(chap_target(), ChapAlgorithm::Md5),
            pairs(&[("CHAP_A", "5")]),
        ),
        // A key twice in one request.
        (
            challenged(chap_target(), ChapAlgorithm::Md5),
            pairs(&[("CHAP_N", "alice"), ("CHAP_N", "alice")]),
        ),
        // An answer constant where an offer is expected.
        (
            TargetAuthenticator::new(chap_target(), &target_random()),
            pairs(&[("AuthMethod", "Reject")]),
        ),
    ];
    for (mut t, request) in cases {
        let e = t.handle(&request).unwrap_err();
        assert_eq!(e.login_status(), INITIATOR_ERROR, "{request:?}: {e}");
        assert!(t.is_failed());
    }
    // Keys after success.
    let mut t = challenged(chap_target(), ChapAlgorithm::Md5);
    t.handle(&pairs(&[
        ("CHAP_N", "alice"),
        ("CHAP_R", &alice_response(ChapAlgorithm::Md5)),
    ]))
    .unwrap();
    let e = t.handle(&pairs(&[("CHAP_N", "alice")])).unwrap_err();
    assert!(matches!(e, AuthError::UnexpectedKey { .. }));
}

#[test]
fn target_mutual_refusals() {
    let r = alice_response(ChapAlgorithm::Md5);
    let own_challenge = format!("0x{}", hex(&target_random()[1..]));
    let other_challenge = "0x0102030405060708090a0b0c0d0e0f10";

    // No target credential configured.
    let mut t = challenged(chap_target(), ChapAlgorithm::Md5);
    let e = target_error(
        &mut t,
        &[
            ("CHAP_N", "alice"),
            ("CHAP_R", &r),
            ("CHAP_I", "1"),
            ("CHAP_C", other_challenge),
        ],
    );
    assert_eq!(e, AuthError::MutualNotConfigured);
    assert_eq!(e.login_status(), AUTH_FAILURE);

    // Reflected challenge, in hex and in base64.
    let b64 = iscsi_proto::text::value::encode_base64(&target_random()[1..]);
    for c in [own_challenge.as_str(), b64.as_str()] {
        let mut t = challenged(mutual_target(), ChapAlgorithm::Md5);
        let e = target_error(
            &mut t,
            &[
                ("CHAP_N", "alice"),
                ("CHAP_R", &r),
                ("CHAP_I", "1"),
                ("CHAP_C", c),
            ],
        );
        assert_eq!(e, AuthError::ReflectedChallenge);
        assert_eq!(e.login_status(), AUTH_FAILURE);
    }

    // The target's secret equals the initiator's: refused with or without mutual CHAP.
    let same = TargetAuthConfig {
        mutual: Some(ChapCredential::new(TARGET_NAME, INITIATOR_SECRET.to_vec())),
        ..chap_target()
    };
    for mutual in [false, true] {
        let mut t = challenged(same.clone(), ChapAlgorithm::Md5);
        let mut request = vec![("CHAP_N", "alice"), ("CHAP_R", r.as_str())];
        if mutual {
            request.extend([("CHAP_I", "1"), ("CHAP_C", other_challenge)]);
        }
        let e = target_error(&mut t, &request);
        assert_eq!(e, AuthError::IdenticalSecrets);
        assert_eq!(e.login_status(), AUTH_FAILURE);
    }

    // Mutual CHAP required and not asked for.
    let required = TargetAuthConfig {
        require_mutual: true,
        ..mutual_target()
    };
    let mut t = challenged(required.clone(), ChapAlgorithm::Md5);
    let e = target_error(&mut t, &[("CHAP_N", "alice"), ("CHAP_R", &r)]);
    assert_eq!(e, AuthError::MutualRequired);
    assert_eq!(e.login_status(), AUTH_FAILURE);
    let (t, _) = exchange(
        required.clone(),
        InitiatorAuthConfig::mutual_chap(alice(), target_credential()),
    )
    .unwrap();
    assert!(t.is_mutual());
    let (side, e) = exchange(required, InitiatorAuthConfig::chap(alice())).unwrap_err();
    assert!(matches!(side, Side::Target));
    assert_eq!(e, AuthError::MutualRequired);
}

#[test]
fn target_checks_mutual_challenge_values() {
    let r = alice_response(ChapAlgorithm::Md5);
    let max = format!("0x{}", "5a".repeat(1024));
    let over = format!("0x{}", "5a".repeat(1025));
    // (CHAP_I, CHAP_C, accepted)
    let cases: [(&str, &str, bool); 8] = [
        ("1", "0x00", true),
        ("255", &max, true),
        ("0x10", "0bAQID", true),
        ("256", "0x00", false),
        ("-1", "0x00", false),
        ("1", "0x", false),
        ("1", &over, false),
        ("1", "deadbeef", false),
    ];
    for (id, challenge, accepted) in cases {
        let mut t = challenged(mutual_target(), ChapAlgorithm::Md5);
        let result = t.handle(&pairs(&[
            ("CHAP_N", "alice"),
            ("CHAP_R", &r),
            ("CHAP_I", id),
            ("CHAP_C", challenge),
        ]));
        if accepted {
            let out = result.unwrap();
            assert_eq!(out[0].1, TARGET_NAME);
        } else {
            let e = result.unwrap_err();
            assert!(matches!(e, AuthError::Malformed { .. }), "{id} {e}");
            assert_eq!(e.login_status(), INITIATOR_ERROR);
        }
    }
    // Half a mutual request.
    for request in [
        [("CHAP_I", "1"), ("CHAP_N", "alice"), ("CHAP_R", r.as_str())],
        [
            ("CHAP_C", "0x01"),
            ("CHAP_N", "alice"),
            ("CHAP_R", r.as_str()),
        ],
    ] {
        let mut t = challenged(mutual_target(), ChapAlgorithm::Md5);
        let e = target_error(&mut t, &request);
        assert!(matches!(e, AuthError::MissingKey { .. }));
        assert_eq!(e.login_status(), INITIATOR_ERROR);
    }
}

#[test]
fn target_needs_enough_random_bytes() {
    let mut t = TargetAuthenticator::new(chap_target(), &[1, 2, 3]);
    t.handle(&pairs(&[("AuthMethod", "CHAP")])).unwrap();
    let e = t.handle(&pairs(&[("CHAP_A", "5")])).unwrap_err();
    assert_eq!(e, AuthError::InsufficientRandom { needed: 33, got: 3 });
    assert_eq!(e.login_status(), TARGET_ERROR);
    assert_eq!(chap_target().random_len(), 33);
    // The challenge length is clamped.
    let tiny = TargetAuthConfig {
        challenge_len: 1,
        ..chap_target()
    };
    assert_eq!(tiny.random_len(), 17);
    let huge = TargetAuthConfig {
        challenge_len: 1 << 20,
        ..chap_target()
    };
    assert_eq!(huge.random_len(), 1025);
    // Extra random bytes are ignored.
    let mut long = target_random();
    long.extend([0xee; 100]);
    let mut t = TargetAuthenticator::new(chap_target(), &long);
    let out = t
        .handle(&pairs(&[("AuthMethod", "CHAP"), ("CHAP_A", "5")]))
        .unwrap();
    assert_eq!(out[3].1, format!("0x{}", hex(&target_random()[1..])));
}

// ---------------------------------------------------------------------------------------
// Initiator refusals

/// An initiator that has offered CHAP_A (mutual when `mutual`).
fn offered(mutual: bool, random: &[u8]) -> InitiatorAuthenticator {
    let config = if mutual {
        InitiatorAuthConfig::mutual_chap(alice(), target_credential())
    } else {
        InitiatorAuthConfig::chap(alice())
    };
    let mut i = InitiatorAuthenticator::new(config, random);
    i.start();
    i.handle(&pairs(&[("AuthMethod", "CHAP")])).unwrap();
    i
}

fn initiator_error(i: &mut InitiatorAuthenticator, response: &[(&str, &str)]) -> AuthError {
    let e = i.handle(&pairs(response)).unwrap_err();
    assert_no_secret(&e);
    assert!(i.is_failed() && !i.is_done());
    assert_eq!(i.handle(&Pairs::new()).unwrap_err(), e);
    assert_eq!(i.check_transit().unwrap_err(), e);
    e
}

const TARGET_CHALLENGE: &str = "0x101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f";

#[test]
fn initiator_refuses_auth_method_answers() {
    let mut i = InitiatorAuthenticator::new(InitiatorAuthConfig::chap(alice()), &[]);
    i.start();
    assert_eq!(
        initiator_error(&mut i, &[("AuthMethod", "Reject")]),
        AuthError::Rejected { key: "AuthMethod" }
    );
    // None when we require the target to authenticate.
    let mut i = InitiatorAuthenticator::new(
        InitiatorAuthConfig::mutual_chap(alice(), target_credential()),
        &initiator_random(),
    );
    i.start();
    let e = initiator_error(&mut i, &[("AuthMethod", "None")]);
    assert!(matches!(
        e,
        AuthError::NotOffered {
            key: "AuthMethod",
            ..
        }
    ));
    // Something never offered.
    for answer in ["SRP", "CHAP,None", ""] {
        let mut i = InitiatorAuthenticator::new(InitiatorAuthConfig::chap(alice()), &[]);
        i.start();
        let e = initiator_error(&mut i, &[("AuthMethod", answer)]);
        assert!(matches!(e, AuthError::NotOffered { .. }), "{answer}");
    }
    // CHAP when we have no credential.
    let mut i = InitiatorAuthenticator::new(InitiatorAuthConfig::default(), &[]);
    i.start();
    let e = initiator_error(&mut i, &[("AuthMethod", "CHAP")]);
    assert!(matches!(e, AuthError::NotOffered { .. }));
    // A CHAP key before CHAP was selected.
    let mut i = InitiatorAuthenticator::new(InitiatorAuthConfig::chap(alice()), &[]);
    i.start();
    let e = initiator_error(&mut i, &[("AuthMethod", "CHAP"), ("CHAP_A", "5")]);
    assert!(matches!(e, AuthError::UnexpectedKey { .. }));
}

#[test]
fn initiator_refuses_bad_challenges() {
    // An algorithm we did not offer.
    let mut i = InitiatorAuthenticator::new(
        InitiatorAuthConfig {
            algorithms: vec![ChapAlgorithm::Md5],
            ..InitiatorAuthConfig::chap(alice())
        },
        &[],
    );
    i.start();
    i.handle(&pairs(&[("AuthMethod", "CHAP")])).unwrap();
    let e = initiator_error(
        &mut i,
        &[
            ("CHAP_A", "7"),
            ("CHAP_I", "1"),
            ("CHAP_C", TARGET_CHALLENGE),
        ],
    );
    assert_eq!(
        e,
        AuthError::NotOffered {
            key: "CHAP_A",
            value: "7".into()
        }
    );
    for (a, id, c) in [
        ("5,6", "1", TARGET_CHALLENGE),
        ("129", "1", TARGET_CHALLENGE),
        ("5", "300", TARGET_CHALLENGE),
        ("5", "1", "0x"),
        ("5", "1", "abc"),
    ] {
        let mut i = offered(false, &[]);
        let e = initiator_error(&mut i, &[("CHAP_A", a), ("CHAP_I", id), ("CHAP_C", c)]);
        assert!(
            matches!(
                e,
                AuthError::NotOffered { .. } | AuthError::Malformed { .. }
            ),
            "{a} {id} {c}: {e}"
        );
    }
    let mut i = offered(false, &[]);
    let e = initiator_error(&mut i, &[("CHAP_A", "5"), ("CHAP_I", "1")]);
    assert_eq!(e, AuthError::MissingKey { key: "CHAP_C" });
}

#[test]
fn initiator_one_way_response() {
    let mut i = offered(false, &[]);
    let out = i
        .handle(&pairs(&[
            ("CHAP_A", "5"),
            ("CHAP_I", "42"),
            ("CHAP_C", TARGET_CHALLENGE),
        ]))
        .unwrap();
    assert_eq!(
        out,
        pairs(&[
            ("CHAP_N", "alice"),
            ("CHAP_R", "0xac849ee0b99490816ef128a029f39deb"),
        ])
    );
    assert!(i.is_done() && !i.is_mutual());
    assert_eq!(i.check_transit(), Ok(()));
    // Mutual keys the initiator did not ask for.
    let e = initiator_error(&mut i, &[("CHAP_N", "x"), ("CHAP_R", "0x00")]);
    assert!(matches!(e, AuthError::UnexpectedKey { .. }));
}

#[test]
fn initiator_refuses_reflected_challenge() {
    // Our own challenge would be the target's: refuse rather than answer.
    let mut random = vec![5];
    random.extend(unhex(&TARGET_CHALLENGE[2..]));
    let mut i = offered(true, &random);
    let e = initiator_error(
        &mut i,
        &[
            ("CHAP_A", "5"),
            ("CHAP_I", "42"),
            ("CHAP_C", TARGET_CHALLENGE),
        ],
    );
    assert_eq!(e, AuthError::ReflectedChallenge);
}

#[test]
fn initiator_refuses_identical_secrets() {
    let config = InitiatorAuthConfig::mutual_chap(
        alice(),
        ChapCredential::new(TARGET_NAME, INITIATOR_SECRET.to_vec()),
    );
    assert_eq!(config.validate(), Err(AuthError::IdenticalSecrets));
    let mut i = InitiatorAuthenticator::new(config, &initiator_random());
    i.start();
    i.handle(&pairs(&[("AuthMethod", "CHAP")])).unwrap();
    let e = initiator_error(
        &mut i,
        &[
            ("CHAP_A", "5"),
            ("CHAP_I", "42"),
            ("CHAP_C", TARGET_CHALLENGE),
        ],
    );
    assert_eq!(e, AuthError::IdenticalSecrets);
}

#[test]
fn initiator_verifies_target_response() {
    let challenge_request = [
        ("CHAP_A", "5"),
        ("CHAP_I", "42"),
        ("CHAP_C", TARGET_CHALLENGE),
    ];
    let good = "0x77a8757ecd55f8d4a06554a073d84ef0";

    let mut i = offered(true, &initiator_random());
    let out = i.handle(&pairs(&challenge_request)).unwrap();
    assert_eq!(out[2], ("CHAP_I".into(), "1".into()));
    assert_eq!(
        out[3],
        (
            "CHAP_C".into(),
            "0xa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf".into()
        )
    );
    assert!(!i.is_done());
    // The target leaves without answering our challenge.
    let e = i.check_transit().unwrap_err();
    assert!(matches!(e, AuthError::Incomplete { .. }));
    assert_eq!(e.login_status(), AUTH_FAILURE);
    let mut ok = i.clone();
    assert_eq!(
        ok.handle(&pairs(&[("CHAP_N", TARGET_NAME), ("CHAP_R", good)])),
        Ok(vec![])
    );
    assert!(ok.is_done() && ok.is_mutual());
    assert_eq!(ok.check_transit(), Ok(()));

    // Wrong name, wrong response, wrong length, missing response.
    let mut bad = i.clone();
    let e = initiator_error(&mut bad, &[("CHAP_N", "impostor"), ("CHAP_R", good)]);
    assert!(matches!(e, AuthError::UnknownUser { .. }));
    let mut bad = i.clone();
    let e = initiator_error(
        &mut bad,
        &[
            ("CHAP_N", TARGET_NAME),
            ("CHAP_R", "0x77a8757ecd55f8d4a06554a073d84ef1"),
        ],
    );
    assert!(matches!(e, AuthError::WrongResponse { .. }));
    let mut bad = i.clone();
    let e = initiator_error(&mut bad, &[("CHAP_N", TARGET_NAME), ("CHAP_R", "0x77a8")]);
    assert!(matches!(e, AuthError::Malformed { key: "CHAP_R", .. }));
    let mut bad = i.clone();
    let e = initiator_error(&mut bad, &[("CHAP_N", TARGET_NAME)]);
    assert_eq!(e, AuthError::MissingKey { key: "CHAP_R" });
    // The response an impostor computes with the initiator's own secret.
    let mut bad = i;
    let reflected = ChapAlgorithm::Md5.response(1, INITIATOR_SECRET, &initiator_random()[1..]);
    let e = initiator_error(
        &mut bad,
        &[
            ("CHAP_N", TARGET_NAME),
            ("CHAP_R", &format!("0x{}", hex(&reflected))),
        ],
    );
    assert!(matches!(e, AuthError::WrongResponse { .. }));
}

#[test]
fn initiator_transit_checks() {
    // CHAP,None offered and the target leaves without answering: no authentication needed.
    let mut i = InitiatorAuthenticator::new(InitiatorAuthConfig::chap(alice()), &[]);
    i.start();
    assert_eq!(i.check_transit(), Ok(()));
    // CHAP required (mutual): not acceptable.
    let mut i = InitiatorAuthenticator::new(
        InitiatorAuthConfig::mutual_chap(alice(), target_credential()),
        &initiator_random(),
    );
    i.start();
    assert!(matches!(
        i.check_transit(),
        Err(AuthError::Incomplete { .. })
    ));
    // Waiting for the challenge.
    let i = offered(false, &[]);
    assert!(i.check_transit().is_err());
}

#[test]
fn initiator_needs_enough_random_bytes_for_mutual() {
    let mut i = offered(true, &[1, 2]);
    let e = i
        .handle(&pairs(&[
            ("CHAP_A", "5"),
            ("CHAP_I", "1"),
            ("CHAP_C", TARGET_CHALLENGE),
        ]))
        .unwrap_err();
    assert_eq!(e, AuthError::InsufficientRandom { needed: 33, got: 2 });
    assert_eq!(InitiatorAuthConfig::chap(alice()).random_len(), 0);
}

#[test]
fn mutual_without_credential_is_a_config_error() {
    let config = InitiatorAuthConfig {
        mutual: Some(target_credential()),
        ..InitiatorAuthConfig::default()
    };
    assert!(matches!(config.validate(), Err(AuthError::Config(_))));
    let mut i = InitiatorAuthenticator::new(config, &initiator_random());
    assert_eq!(i.start(), pairs(&[("AuthMethod", "CHAP")]));
    let e = i.handle(&pairs(&[("AuthMethod", "CHAP")])).unwrap_err();
    assert!(matches!(e, AuthError::Config(_)));
}

// ---------------------------------------------------------------------------------------
// Configuration and secrecy

#[test]
fn config_validation() {
    assert_eq!(TargetAuthConfig::default().validate(), Ok(()));
    assert_eq!(mutual_target().validate(), Ok(()));
    assert_eq!(InitiatorAuthConfig::default().validate(), Ok(()));
    assert_eq!(
        InitiatorAuthConfig::mutual_chap(alice(), target_credential()).validate(),
        Ok(())
    );
    let bad_targets = [
        TargetAuthConfig::chap(vec![]),
        TargetAuthConfig {
            algorithms: vec![],
            ..chap_target()
        },
        TargetAuthConfig::chap(vec![ChapCredential::new("empty", Vec::new())]),
        TargetAuthConfig::chap(vec![alice(), alice()]),
        TargetAuthConfig {
            mutual: Some(ChapCredential::new(TARGET_NAME, INITIATOR_SECRET.to_vec())),
            ..chap_target()
        },
        TargetAuthConfig {
            require_mutual: true,
            ..chap_target()
        },
        TargetAuthConfig {
            challenge_len: 8,
            ..chap_target()
        },
    ];
    for config in bad_targets {
        let e = config.validate().unwrap_err();
        assert_no_secret(&e);
    }
    let bad_initiators = [
        InitiatorAuthConfig::chap(ChapCredential::new("alice", Vec::new())),
        InitiatorAuthConfig {
            algorithms: vec![],
            ..InitiatorAuthConfig::chap(alice())
        },
        InitiatorAuthConfig {
            challenge_len: 2000,
            ..InitiatorAuthConfig::default()
        },
    ];
    for config in bad_initiators {
        assert!(config.validate().is_err());
    }
}

#[test]
fn empty_secret_never_authenticates() {
    let config = TargetAuthConfig::chap(vec![ChapCredential::new("anon", Vec::new())]);
    let mut t = challenged(config, ChapAlgorithm::Md5);
    let r = ChapAlgorithm::Md5.response(0x2a, b"", &target_random()[1..]);
    let e = target_error(
        &mut t,
        &[("CHAP_N", "anon"), ("CHAP_R", &format!("0x{}", hex(&r)))],
    );
    assert_eq!(e.login_status(), AUTH_FAILURE);
}

#[test]
fn debug_output_hides_secrets() {
    let mut t = TargetAuthenticator::new(mutual_target(), &target_random());
    let mut i = InitiatorAuthenticator::new(
        InitiatorAuthConfig::mutual_chap(alice(), target_credential()),
        &initiator_random(),
    );
    let texts = [
        format!("{:?}", mutual_target()),
        format!(
            "{:?}",
            InitiatorAuthConfig::mutual_chap(alice(), target_credential())
        ),
        format!("{t:?}"),
        format!("{i:?}"),
    ];
    let r = i.start();
    t.handle(&r).unwrap();
    let texts2 = [format!("{t:?}"), format!("{i:?}")];
    for text in texts.iter().chain(&texts2) {
        for secret in [INITIATOR_SECRET, TARGET_SECRET] {
            let secret = std::str::from_utf8(secret).unwrap();
            assert!(!text.contains(secret), "{text}");
        }
        assert!(text.contains("redacted"), "{text}");
    }
}

#[test]
fn login_status_constants() {
    assert_eq!(login_status::AUTHENTICATION_FAILURE, AUTH_FAILURE);
    assert_eq!(login_status::INITIATOR_ERROR, INITIATOR_ERROR);
    assert_eq!(login_status::TARGET_ERROR, TARGET_ERROR);
    assert_eq!(AuthPolicy::default(), AuthPolicy::None);
}

// ---------------------------------------------------------------------------------------
// Properties

fn key_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("AuthMethod".to_owned()),
        Just("CHAP_A".to_owned()),
        Just("CHAP_I".to_owned()),
        Just("CHAP_C".to_owned()),
        Just("CHAP_N".to_owned()),
        Just("CHAP_R".to_owned()),
        Just("SRP_U".to_owned()),
        "[A-Za-z_]{0,12}",
    ]
}

fn value_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("CHAP,None".to_owned()),
        Just("CHAP".to_owned()),
        Just("None".to_owned()),
        Just("Reject".to_owned()),
        Just("8,7,6,5".to_owned()),
        Just("alice".to_owned()),
        Just(TARGET_NAME.to_owned()),
        "[0-9]{1,4}",
        "0[xX][0-9a-fA-F]{0,80}",
        "0[bB][A-Za-z0-9+/]{0,80}={0,3}",
        "[0-9,]{0,12}",
        ".{0,40}",
    ]
}

fn request_strategy() -> impl Strategy<Value = Pairs> {
    proptest::collection::vec((key_strategy(), value_strategy()), 0..6)
}

fn check_error(e: &AuthError) {
    let (class, _) = e.login_status();
    assert!(class == 2 || class == 3, "{e}");
    assert_no_secret(e);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Garbage in any state never panics, errors stick, and done/failed never overlap.
    #[test]
    fn garbage_never_panics(
        requests in proptest::collection::vec(request_strategy(), 1..6),
        policy_chap in any::<bool>(),
        random in proptest::collection::vec(any::<u8>(), 0..40),
        prefix in 0usize..3,
    ) {
        let config = TargetAuthConfig {
            method: if policy_chap { AuthPolicy::Chap } else { AuthPolicy::None },
            ..mutual_target()
        };
        let mut t = TargetAuthenticator::new(config, &random);
        // Start from a later step some of the time.
        let steps = [pairs(&[("AuthMethod", "CHAP")]), pairs(&[("CHAP_A", "5")])];
        for step in steps.iter().take(prefix) {
            let _ = t.handle(step);
        }
        let mut i = InitiatorAuthenticator::new(
            InitiatorAuthConfig::mutual_chap(alice(), target_credential()),
            &random,
        );
        i.start();
        let mut target_failed: Option<AuthError> = None;
        let mut initiator_failed: Option<AuthError> = None;
        for request in &requests {
            match t.handle(request) {
                Ok(out) => {
                    prop_assert!(target_failed.is_none());
                    prop_assert!(out.len() <= 4);
                }
                Err(e) => {
                    check_error(&e);
                    if let Some(previous) = &target_failed {
                        prop_assert_eq!(previous, &e);
                    }
                    target_failed = Some(e);
                }
            }
            prop_assert!(!(t.is_done() && t.is_failed()));
            let _ = t.check_transit().map_err(|e| check_error(&e));
            match i.handle(request) {
                Ok(_) => prop_assert!(initiator_failed.is_none()),
                Err(e) => {
                    check_error(&e);
                    if let Some(previous) = &initiator_failed {
                        prop_assert_eq!(previous, &e);
                    }
                    initiator_failed = Some(e);
                }
            }
            prop_assert!(!(i.is_done() && i.is_failed()));
            let _ = i.check_transit().map_err(|e| check_error(&e));
        }
    }

    /// Any secrets, random bytes and algorithm authenticate both ways; any change to the
    /// initiator's response is refused.
    #[test]
    fn round_trip_and_tamper(
        initiator_secret in proptest::collection::vec(any::<u8>(), 1..64),
        target_secret in proptest::collection::vec(any::<u8>(), 1..64),
        target_random in proptest::collection::vec(any::<u8>(), 33..40),
        initiator_random in proptest::collection::vec(any::<u8>(), 33..40),
        algorithm in proptest::sample::select(ChapAlgorithm::ALL.to_vec()),
        flip in any::<(usize, u8)>(),
    ) {
        prop_assume!(initiator_secret != target_secret);
        prop_assume!(target_random[1..33] != initiator_random[1..33]);
        let user = ChapCredential::new("u", initiator_secret);
        let tgt = ChapCredential::new("t", target_secret);
        let target_config = TargetAuthConfig {
            mutual: Some(tgt.clone()),
            algorithms: vec![algorithm],
            ..TargetAuthConfig::chap(vec![user.clone()])
        };
        let mut t = TargetAuthenticator::new(target_config, &target_random);
        let mut i = InitiatorAuthenticator::new(
            InitiatorAuthConfig {
                algorithms: ChapAlgorithm::ALL.to_vec(),
                ..InitiatorAuthConfig::mutual_chap(user, tgt)
            },
            &initiator_random,
        );
        let r1 = i.start();
        let a1 = t.handle(&r1).unwrap();
        let r2 = i.handle(&a1).unwrap();
        let a2 = t.handle(&r2).unwrap();
        let r3 = i.handle(&a2).unwrap();

        // Tamper with the response: one byte changed.
        let mut tampered = t.clone();
        let mut response = unhex(&r3[1].1[2..]);
        let at = flip.0 % response.len();
        response[at] ^= flip.1.max(1);
        let mut r3_bad = r3.clone();
        r3_bad[1].1 = format!("0x{}", hex(&response));
        let e = tampered.handle(&r3_bad).unwrap_err();
        prop_assert_eq!(e.login_status(), AUTH_FAILURE);

        let a3 = t.handle(&r3).unwrap();
        prop_assert!(i.handle(&a3).unwrap().is_empty());
        prop_assert!(t.is_done() && i.is_done() && t.is_mutual() && i.is_mutual());
        prop_assert_eq!(t.algorithm(), Some(algorithm));
    }
}
