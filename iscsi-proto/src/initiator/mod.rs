//! The initiator side of the protocol, sans-IO: login ([`InitiatorLogin`]) and the full
//! feature phase ([`InitiatorSession`]).

mod deadlines;
pub mod login;
pub mod session;

pub use login::{
    InitiatorLogin, InitiatorLoginConfig, InitiatorLoginOutcome, InitiatorStep, LoginFailure,
    status_text,
};
pub use session::{
    Cdb, CloseReason, Command, CommandStatus, Direction, InitiatorSession, InitiatorSessionConfig,
    MAX_CDB_LEN, Residual, SessionEvent, SubmitError, TaskError,
};
