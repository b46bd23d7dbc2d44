//! The initiator side of the protocol, sans-IO: login ([`InitiatorLogin`]). The full feature
//! phase follows.

pub mod login;

pub use login::{
    InitiatorLogin, InitiatorLoginConfig, InitiatorLoginOutcome, InitiatorStep, LoginFailure,
    status_text,
};
