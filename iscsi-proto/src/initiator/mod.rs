//! The initiator side of the protocol, sans-IO: login ([`InitiatorLogin`]) and the full
//! feature phase ([`InitiatorSession`]).

pub mod login;
pub mod session;

pub use login::{
    InitiatorLogin, InitiatorLoginConfig, InitiatorLoginOutcome, InitiatorStep, LoginFailure,
    status_text,
};
pub use session::{
    CloseReason, Command, CommandStatus, Direction, InitiatorSession, InitiatorSessionConfig,
    Residual, SessionEvent, SubmitError, TaskError,
};
