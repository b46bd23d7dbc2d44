//! Text keys (`key=value\0`) and their negotiation, RFC 7143 §6 and §13, RFC 7145 §6.
//!
//! The data segment of Login and Text PDUs carries `key=value` pairs, each terminated by a
//! NUL byte. This module has four layers, all sans-IO and panic-free on any input:
//!
//! - [`parse`]: parsing a text into pairs under [`TextLimits`] (key names of at most 63
//!   allowed characters, values of at most 255 bytes except for lists and large binary values,
//!   a bound on the whole text, 64 KiB by default) and encoding pairs into a
//!   [`bytes::BytesMut`]. [`value`] has the value encodings: numbers (decimal, `0x` hex, `0b`
//!   base64), `Yes`/`No`, lists, ranges, and binary values for the authentication keys.
//! - [`assemble`]: reassembly of a text sent over several PDUs with the C (continue) bit, under
//!   a bound, and the reverse split of an outgoing text into pieces of at most the peer's
//!   MaxRecvDataSegmentLength. The login/text layer must answer every C=1 PDU with an empty
//!   one.
//! - [`keys`]: the table of every standard key with its type, range, default, scope, usage,
//!   senders, stage and result function.
//! - [`negotiate`]: the [`Negotiator`], one state machine for both login roles: it answers
//!   the peer's offers ([`Negotiator::handle`]), produces our own ([`Negotiator::offer`]),
//!   checks the peer's answers, tells when our offers are all answered
//!   ([`Negotiator::is_complete`]) and yields the typed [`NegotiatedParams`]. Errors carry the
//!   Login status to answer with ([`NegotiationError::login_status`]).
//!
//! A typical login step on either side:
//!
//! ```
//! use iscsi_proto::text::{encode_text, parse_text, LocalConfig, Negotiator, Role, SessionType,
//!     Stage, TextAssembler, TextLimits};
//!
//! let mut target = Negotiator::new(
//!     Role::Target, LocalConfig::default(), SessionType::Normal, true, false);
//! target.set_stage(Stage::Operational);
//! let mut assembler = TextAssembler::default();
//!
//! // Data segment of a Login request with C=0.
//! let segment = b"InitiatorName=iqn.2024-01.org.example:i\0\
//!                 TargetName=iqn.2024-01.org.example:t\0MaxBurstLength=65536\0";
//! if let Some(text) = assembler.feed(segment, false).unwrap() {
//!     let pairs = parse_text(&text, &TextLimits::default()).unwrap();
//!     let mut reply = target.handle(&pairs).unwrap().responses;
//!     reply.extend(target.offer());
//!     let data = encode_text(&reply).unwrap();
//!     assert!(data.starts_with(b"MaxBurstLength=65536\0"));
//! }
//! ```

pub mod assemble;
pub mod error;
pub mod keys;
pub mod negotiate;
pub mod params;
pub mod parse;
pub mod value;

pub use assemble::{AssembleError, TextAssembler, TextChunk, TextChunks, split_text};
pub use error::{NegotiationError, login_status};
pub use keys::{Key, KeyClass, KeyDef, classify, lookup};
pub use negotiate::{HandleOutput, Negotiator};
pub use params::{Digest, LocalConfig, NegotiatedParams, Role, SessionType, Stage, TaskReporting};
pub use parse::{
    TextError, TextLimits, encode_pair, encode_text, encode_text_into, parse_text, parse_text_owned,
};
pub use value::ValueError;
