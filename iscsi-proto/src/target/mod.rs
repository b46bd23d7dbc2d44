//! The target side of the protocol, sans-IO: login ([`TargetLogin`]), the full feature phase
//! of a connection and its session ([`TargetSession`]), and SendTargets ([`discovery`]).
//!
//! An engine runs one [`TargetLogin`] per new connection, then one [`TargetSession`] per
//! logged-in connection, wiring both to a [`crate::datamover::Datamover`]. Neither does IO or
//! reads a clock: time comes in as arguments, random bytes in the [`LoginConfig`].

pub mod discovery;
pub mod login;
pub mod session;

pub use discovery::{
    SendTargetsQuery, TargetRecord, decode_send_targets, encode_send_targets, is_iscsi_name,
};
pub use login::{
    LoginConfig, LoginError, LoginHost, LoginIdentity, LoginOutcome, LoginStep, TargetLogin,
};
pub use session::{
    CloseReason, Event, NewCommand, Reply, ScsiOutcome, SessionConfig, TargetSession, TmfRequest,
};
