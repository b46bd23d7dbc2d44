//! Authentication during the login security stage (RFC 7143 §12): CHAP.
//!
//! Sans-IO like the rest of the crate: the authenticators take the security keys the
//! [`Negotiator`](crate::text::Negotiator) hands back in
//! [`HandleOutput::passthrough`](crate::text::HandleOutput::passthrough) and return the keys to
//! send; random bytes (CHAP identifiers and challenges) come from the caller.
//!
//! - [`TargetAuthenticator`] with a [`TargetAuthConfig`]: selects `AuthMethod` by the
//!   [`AuthPolicy`], selects the CHAP algorithm, sends the challenge, verifies the initiator's
//!   response and, when asked, answers the initiator's challenge (mutual CHAP).
//! - [`InitiatorAuthenticator`] with an [`InitiatorAuthConfig`]: the mirror image.
//! - [`ChapAlgorithm`]: `CHAP_A` 5 = MD5, 6 = SHA-1, 7 = SHA-256, 8 = SHA3-256, and the
//!   response function of RFC 1994, `H(identifier || secret || challenge)`.
//! - [`AuthError`]: why authentication stopped, with the Login status a target answers.
//!
//! ## The exchange (RFC 7143 §12.1.3)
//!
//! ```text
//! I -> T  AuthMethod=CHAP,None
//! T -> I  AuthMethod=CHAP
//! I -> T  CHAP_A=8,6,5
//! T -> I  CHAP_A=8 CHAP_I=<id> CHAP_C=<challenge>
//! I -> T  CHAP_N=<name> CHAP_R=<response> [CHAP_I=<id'> CHAP_C=<challenge'>]   (T=1 allowed)
//! T -> I  [CHAP_N=<target name> CHAP_R=<response'>]                           (T=1)
//! ```
//!
//! ```
//! use iscsi_proto::auth::{
//!     ChapCredential, InitiatorAuthConfig, InitiatorAuthenticator, TargetAuthConfig,
//!     TargetAuthenticator,
//! };
//!
//! let target_config = TargetAuthConfig {
//!     mutual: Some(ChapCredential::new("iqn.2024-01.org.example:disk", b"target-secret-0001".to_vec())),
//!     ..TargetAuthConfig::chap(vec![ChapCredential::new("alice", b"initiator-secret-1".to_vec())])
//! };
//! let initiator_config = InitiatorAuthConfig::mutual_chap(
//!     ChapCredential::new("alice", b"initiator-secret-1".to_vec()),
//!     ChapCredential::new("iqn.2024-01.org.example:disk", b"target-secret-0001".to_vec()),
//! );
//! // Random bytes come from the caller (use a CSPRNG in real code).
//! let mut target = TargetAuthenticator::new(target_config, &[7u8; 33]);
//! let mut initiator = InitiatorAuthenticator::new(initiator_config, &[9u8; 33]);
//!
//! let mut request = initiator.start();
//! while !(initiator.is_done() && target.is_done()) {
//!     let response = target.handle(&request).unwrap();
//!     request = initiator.handle(&response).unwrap();
//! }
//! assert_eq!(target.authenticated_user(), Some("alice"));
//! assert!(initiator.is_mutual() && target.is_mutual());
//! ```
//!
//! ## What the login layer does
//!
//! - Target: create a [`TargetAuthenticator`] per connection; pass each request's security
//!   keys to `handle` and send the result with the negotiator's answers; answer T=1 only once
//!   `is_done`; when the initiator asks to leave the security stage, or starts in the
//!   operational stage, call `check_transit` and fail the login with its error's
//!   [`AuthError::login_status`] (0x0201 when CHAP is required and incomplete). When no
//!   offered method or algorithm is acceptable, `handle` answers `Reject` (RFC 7143 §6.2)
//!   and fails from then on; the login may also be failed at once (`is_failed`).
//! - Initiator: send `start()`'s keys in the first request; feed each response's security
//!   keys to `handle`; set T=1 once `is_done`; call `check_transit` when the target answers
//!   T=1; drop the connection on any error.
//!
//! ## Rules enforced
//!
//! - Lists follow RFC 7143 §6.2.1: the target picks the first offered value it accepts.
//! - `CHAP_C` and `CHAP_R` are read in hex (`0x`/`0X`) or base64 (`0b`/`0B`); at most 1024
//!   bytes (RFC 7143 §12.1.3); a challenge must not be empty; a response must be exactly
//!   the digest length. Responses are compared in constant time (`subtle`).
//! - Reflection (RFC 7143 §9.2.1): a challenge equal to the one this side sent is refused.
//! - One secret for both directions is refused (RFC 7143 §9.2.1: a secret used to
//!   authenticate initiators must not authenticate targets), on both sides, by comparing the
//!   configured secrets; the target checks it for every CHAP login once a mutual credential
//!   is configured.
//! - An unknown `CHAP_N` costs the same hash as a known one, and both fail with 0x0201.
//! - Secrets never appear in `Debug` output or error messages.
//!
//! ## Interoperability notes (from reading the peers' code)
//!
//! - libiscsi (`lib/login.c`): offers `AuthMethod=CHAP,None` with T=1 in the first request,
//!   then `CHAP_A=5` only (MD5), then `CHAP_N` and `CHAP_R=0x` with uppercase hex digits. For
//!   mutual CHAP it adds `CHAP_I` (a counter, decimal) and a 32-byte `CHAP_C` in hex. It only
//!   reads `CHAP_C=0x...` (hex, lowercase `x`), keeps it in a 255-character buffer (so our
//!   challenge must stay below 127 bytes), and checks the target's `CHAP_R` as exactly 32 hex
//!   digits (MD5). Keep [`ChapEncoding::Hex`] and MD5 enabled to serve it.
//! - Linux LIO (`drivers/target/iscsi/iscsi_target_auth.c`): accepts `CHAP_A` 5, 6, 7 and 8
//!   since Linux 5.5 (MD5 is skipped in FIPS mode), picking the first acceptable number of
//!   the initiator's list; its challenge is as long as the digest; it reads `CHAP_R` and the
//!   mutual `CHAP_C` in hex or base64, bounds `CHAP_C` at 1024 bytes, refuses a reflected
//!   challenge, compares with `crypto_memneq`, and writes its values in hex. It takes
//!   `CHAP_I` in decimal or hex.
//! - open-iscsi: `node.session.auth.chap_algs` lists the offered algorithms (MD5, SHA1,
//!   SHA256, SHA3-256; the shipped default is MD5 alone, distributions often enable all four).
//!   Its auth library treats a target response that equals the one it would compute with its
//!   own secret as an error (identical secrets).
//! - tgt (stgt) and FreeBSD's old `iscontrol` map `CHAP_A=7` to SHA-1 instead of SHA-256:
//!   against such a peer the exchange fails with a wrong response whenever 7 is selected;
//!   leave [`ChapAlgorithm::Sha256`] out of the list for them.
//! - Some storage arrays (SolidFire before 12.7) accept MD5 only.
//!
//! Secrets are held in plain `Vec<u8>` and are not wiped from memory.

mod chap;
mod error;
mod initiator;
mod received;
mod target;

pub use chap::{
    ChapAlgorithm, ChapCredential, ChapEncoding, DEFAULT_CHALLENGE_LEN, MAX_CHAP_BINARY_LEN,
    MIN_CHALLENGE_LEN,
};
pub use error::{AuthError, login_status};
pub use initiator::{DEFAULT_INITIATOR_ALGORITHMS, InitiatorAuthConfig, InitiatorAuthenticator};
pub use target::{AuthPolicy, TargetAuthConfig, TargetAuthenticator};

/// `AuthMethod=CHAP`.
pub const METHOD_CHAP: &str = "CHAP";
/// `AuthMethod=None`.
pub const METHOD_NONE: &str = "None";

/// Whether `key` belongs to the security stage's authenticator (`AuthMethod` and the keys of
/// every method: CHAP, SRP, Kerberos), rather than to the operational negotiation.
pub(crate) fn is_security_key(key: &str) -> bool {
    key == "AuthMethod"
        || key.starts_with("CHAP_")
        || key.starts_with("SRP_")
        || key.starts_with("KRB_")
}

/// Largest data segment of a Login PDU: the default MaxRecvDataSegmentLength, which applies
/// until the login ends (RFC 7143 §13.12).
pub(crate) const LOGIN_SEGMENT: usize = 8192;
