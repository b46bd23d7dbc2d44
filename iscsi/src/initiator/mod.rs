//! The async initiator: a [`Session`] to one target, shared by any number of tasks.
//!
//! ```no_run
//! # async fn run() -> Result<(), iscsi::initiator::Error> {
//! use iscsi::initiator::Session;
//!
//! let session = Session::connect("iscsi://127.0.0.1:3260/iqn.2026-11.rs.iscsi:disk/1").await?;
//! let cap = session.read_capacity().await?;
//! session.write(0, &vec![0xa5; cap.block_size as usize]).await?;
//! let back = session.read(0, 1).await?;
//! assert_eq!(back[0], 0xa5);
//! session.logout().await?;
//! # Ok(()) }
//! ```
//!
//! ## Design
//! - One tokio task per session owns the connection: a [`Datamover`] (TCP by default, any
//!   [`Transport`]) and the sans-IO [`InitiatorSession`](iscsi_proto::initiator::InitiatorSession).
//!   Handles ([`Session`] is `Clone`) send it commands over a channel and await a oneshot
//!   answer, so any number of commands from any number of tasks are in flight together, up to
//!   the target's CmdSN window (the rest wait in order).
//! - Buffers are `Vec<u8>`: a read's buffer is filled in place by the datamover (Data-In goes
//!   from the receive buffer straight to its offset in it) and handed back; a write's buffer
//!   is sent without a copy ([`Session::write_owned`] gives it back).
//! - Every command has a deadline ([`InitiatorConfig::command_timeout`], or
//!   [`Request::timeout`]): past it the task is aborted (ABORT TASK) and the caller gets
//!   [`Error::TimedOut`] at once.
//!
//! ## Reconnection and retries
//! When the connection fails (transport error, ping timeout, protocol error, the target
//! dropping it or asking for a logout) the task logs in again with the same ISID and TSIH 0,
//! which **reinstates** the session: the target ends the old one and every task in it before
//! the new login completes (RFC 7143 §6.3.5), so an old command cannot run after its retry.
//! Logins are retried with exponential backoff ([`ReconnectPolicy`]); an authentication or
//! authorization refusal ends the session at once. Then:
//! - commands that were never sent are sent on the new connection;
//! - commands that were sent but got no status are sent again only if replaying them is
//!   harmless (reads, writes, UNMAP, WRITE SAME, SYNCHRONIZE CACHE, INQUIRY...; at most
//!   [`InitiatorConfig::max_retries`] times). COMPARE AND WRITE, PERSISTENT RESERVE OUT,
//!   ORWRITE, EXTENDED COPY, FORMAT UNIT, SANITIZE, WRITE BUFFER, SECURITY PROTOCOL OUT and
//!   variable-length CDBs are not: they fail with [`Error::ConnectionLost`] `{ sent: true }`,
//!   since the target may or may not have run them;
//! - a command that got a status is never sent again (a read whose data-in broke the rules is
//!   the exception: it is read again).
//!
//! After a reinstatement the target reports a UNIT ATTENTION; the typed helpers
//! ([`Session::read`], [`Session::write`], ...) retry a command that gets one (up to 3 times),
//! [`Session::execute`] returns it to the caller.

mod conn;
mod url;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use iscsi_proto::auth::{ChapCredential, InitiatorAuthConfig};
use iscsi_proto::datamover::Datamover;
pub use iscsi_proto::initiator::Cdb;
use iscsi_proto::initiator::{CommandStatus, Direction, InitiatorSessionConfig, LoginFailure};
use iscsi_proto::pdu::{ScsiStatus, TmfResponse};
use iscsi_proto::target::{TargetRecord, decode_send_targets};
use iscsi_proto::text::{Digest, LocalConfig, NegotiatedParams, Role, SessionType};
use iscsi_tcp::TcpDatamover;
use scsi_core::sense::{Sense, SenseKey};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub use conn::replayable;
pub use url::{DEFAULT_PORT, IscsiUrl, UrlError};

use conn::{CommandOp, Op, TmfKind};

/// How an initiator reaches a portal: makes a connected [`Datamover`].
pub trait Transport: Send + Sync + 'static {
    /// The datamover of one connection.
    type Mover: Datamover<Buffer = Vec<u8>> + 'static;
    /// Connects to `portal` (`host:port`).
    fn connect(&self, portal: &str) -> impl Future<Output = std::io::Result<Self::Mover>> + Send;
}

/// iSCSI over TCP.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tcp;

impl Transport for Tcp {
    type Mover = TcpDatamover;

    async fn connect(&self, portal: &str) -> std::io::Result<TcpDatamover> {
        let stream = tokio::net::TcpStream::connect(portal).await?;
        TcpDatamover::new(stream, Role::Initiator)
    }
}

/// Reconnection after a connection loss.
#[derive(Clone, Debug)]
pub struct ReconnectPolicy {
    /// Reconnect at all (otherwise the session ends with the connection).
    pub enabled: bool,
    /// First wait before logging in again.
    pub initial_backoff: Duration,
    /// Longest wait between attempts (the wait doubles each time).
    pub max_backoff: Duration,
    /// Failed logins in a row before the session gives up.
    pub max_attempts: u32,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            enabled: true,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_attempts: 10,
        }
    }
}

impl ReconnectPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(1u32 << attempt.min(16).saturating_sub(1));
        exp.min(self.max_backoff)
    }
}

/// Everything a session needs.
#[derive(Clone, Debug)]
pub struct InitiatorConfig {
    /// Our iSCSI name.
    pub initiator_name: String,
    /// `host:port` of the portal.
    pub portal: String,
    /// The target's iSCSI name.
    pub target: String,
    /// LUN the typed helpers use.
    pub lun: u16,
    /// CHAP (one-way or mutual); `None` logs in without authentication.
    pub auth: Option<Arc<InitiatorAuthConfig>>,
    /// Our login offers: digests, lengths, ImmediateData, InitialR2T... (names are filled in
    /// from the fields above).
    pub negotiation: LocalConfig,
    /// Full-feature-phase settings (in-flight limit, NOP pings, request timeouts).
    pub session: InitiatorSessionConfig,
    /// Deadline of a command that gives none.
    pub command_timeout: Option<Duration>,
    /// Deadline of one login (TCP connect included).
    pub login_timeout: Duration,
    /// Reconnection.
    pub reconnect: ReconnectPolicy,
    /// Times a command lost with its connection is sent again.
    pub max_retries: u32,
}

/// Our default iSCSI name.
pub const DEFAULT_INITIATOR_NAME: &str = "iqn.2026-11.rs.iscsi:initiator";

impl InitiatorConfig {
    /// Settings for `target` at `portal` with our defaults: ImmediateData=Yes,
    /// InitialR2T=No, 256 KiB data segments and first burst, 16 MiB bursts, no digests,
    /// 30 s command timeout, 10 s login timeout, reconnection on.
    pub fn new(portal: impl Into<String>, target: impl Into<String>) -> Self {
        InitiatorConfig {
            initiator_name: DEFAULT_INITIATOR_NAME.into(),
            portal: portal.into(),
            target: target.into(),
            lun: 0,
            auth: None,
            negotiation: LocalConfig {
                immediate_data: true,
                initial_r2t: false,
                max_recv_data_segment_length: 262_144,
                max_burst_length: 16_776_192,
                first_burst_length: 262_144,
                ..LocalConfig::default()
            },
            session: InitiatorSessionConfig::default(),
            command_timeout: Some(Duration::from_secs(30)),
            login_timeout: Duration::from_secs(10),
            reconnect: ReconnectPolicy::default(),
            max_retries: 3,
        }
    }

    /// Settings from a URL (CHAP from its user and password). A URL without a target
    /// (`iscsi://host[:port]`) gives settings for [`Session::discover`] only.
    pub fn from_url(url: &IscsiUrl) -> Result<Self, Error> {
        let target = url.target.clone().unwrap_or_default();
        let mut cfg = InitiatorConfig::new(url.portal(), target);
        cfg.lun = url.lun;
        if let Some(user) = &url.user {
            let secret = url.password.clone().ok_or_else(|| {
                Error::Config(format!(
                    "{url}: a CHAP user needs a password (user%password@)"
                ))
            })?;
            cfg = cfg.chap(user, secret)?;
        }
        Ok(cfg)
    }

    /// One-way CHAP with this user name and secret.
    pub fn chap(mut self, user: &str, secret: impl Into<Vec<u8>>) -> Result<Self, Error> {
        let auth = InitiatorAuthConfig::chap(ChapCredential::new(user, secret));
        auth.validate().map_err(|e| Error::Config(e.to_string()))?;
        self.auth = Some(Arc::new(auth));
        Ok(self)
    }

    /// Mutual CHAP: our credential and the one the target must prove.
    pub fn mutual_chap(
        mut self,
        user: &str,
        secret: impl Into<Vec<u8>>,
        target_user: &str,
        target_secret: impl Into<Vec<u8>>,
    ) -> Result<Self, Error> {
        let auth = InitiatorAuthConfig::mutual_chap(
            ChapCredential::new(user, secret),
            ChapCredential::new(target_user, target_secret),
        );
        auth.validate().map_err(|e| Error::Config(e.to_string()))?;
        self.auth = Some(Arc::new(auth));
        Ok(self)
    }

    /// Asks for CRC32C header and/or data digests (and accepts none if the target refuses).
    pub fn digests(mut self, header: bool, data: bool) -> Self {
        let pick = |on| {
            if on {
                vec![Digest::Crc32c, Digest::None]
            } else {
                vec![Digest::None]
            }
        };
        self.negotiation.header_digest = pick(header);
        self.negotiation.data_digest = pick(data);
        self
    }
}

/// What went wrong.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad settings.
    #[error("configuration: {0}")]
    Config(String),
    /// A bad URL.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The transport failed.
    #[error("transport: {0}")]
    Io(Arc<std::io::Error>),
    /// The login failed (refused, authentication, negotiation).
    #[error("login: {0}")]
    Login(LoginFailure),
    /// The login did not finish in time.
    #[error("the login timed out")]
    LoginTimeout,
    /// The target broke the protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The command got CHECK CONDITION.
    #[error("CHECK CONDITION: {}", describe_sense(.sense))]
    CheckCondition {
        /// The sense data, decoded (`None` if missing or not decodable).
        sense: Option<Sense>,
        /// The raw sense bytes.
        raw: Bytes,
    },
    /// Another SCSI status than GOOD or CHECK CONDITION (BUSY, RESERVATION CONFLICT, TASK
    /// SET FULL...), or a service response other than "completed".
    #[error("SCSI status {status:#04x}, service response {response:#04x}")]
    Status {
        /// SCSI status.
        status: u8,
        /// iSCSI service response.
        response: u8,
    },
    /// The command passed its deadline and was aborted.
    #[error("the command timed out and was aborted")]
    TimedOut,
    /// Task management ended the command.
    #[error("the command was aborted by task management")]
    Aborted,
    /// The target rejected the command's PDU (reason code).
    #[error("the target rejected the command (reason {0:#04x})")]
    Rejected(u8),
    /// The data-in broke the rules and the command could not be retried.
    #[error("data-in: {0}")]
    Data(String),
    /// The connection was lost before the command's status; `sent`: it had been sent, so the
    /// target may have run it (a command that must not run twice is not replayed).
    #[error("the connection was lost before the command's status (sent: {sent})")]
    ConnectionLost {
        /// Whether the command had been sent.
        sent: bool,
    },
    /// The session refused the command (queue full, closing).
    #[error("not submitted: {0}")]
    Submit(String),
    /// The session is closed.
    #[error("the session is closed")]
    Closed,
    /// A task management request got this answer instead of "function complete".
    #[error("task management refused: response {0}")]
    Tmf(u8),
    /// A response too short or malformed for the helper.
    #[error("unexpected data: {0}")]
    Unexpected(String),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

impl Error {
    /// Whether this is a CHECK CONDITION with UNIT ATTENTION.
    pub fn is_unit_attention(&self) -> bool {
        matches!(self, Error::CheckCondition { sense: Some(s), .. } if s.key == SenseKey::UNIT_ATTENTION)
    }

    /// The sense data of a CHECK CONDITION.
    pub fn sense(&self) -> Option<&Sense> {
        match self {
            Error::CheckCondition { sense, .. } => sense.as_ref(),
            _ => None,
        }
    }
}

fn describe_sense(s: &Option<Sense>) -> String {
    match s {
        Some(s) => match s.asc.description() {
            Some(what) => format!("{}, {what} (ASC/ASCQ {})", s.key.name(), s.asc),
            None => format!("{} (ASC/ASCQ {})", s.key.name(), s.asc),
        },
        None => "no sense data".into(),
    }
}

/// The data direction and buffer of a raw command.
#[derive(Debug)]
pub enum Data {
    /// No data.
    None,
    /// Read up to this many bytes (the buffer is allocated).
    Read(u32),
    /// Read into this buffer (its length is the expected length).
    ReadInto(Vec<u8>),
    /// Write these bytes.
    Write(Vec<u8>),
}

/// A raw SCSI command for [`Session::execute`].
#[derive(Debug)]
pub struct Request {
    /// Logical unit.
    pub lun: u16,
    /// The CDB.
    pub cdb: Cdb,
    /// Data.
    pub data: Data,
    /// Deadline from now (`None`: the session's default).
    pub timeout: Option<Duration>,
}

impl Request {
    /// A command on `lun`.
    pub fn new(lun: u16, cdb: &[u8], data: Data) -> Self {
        Request {
            lun,
            cdb: Cdb::new(cdb),
            data,
            timeout: None,
        }
    }

    /// With this deadline from now.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
}

/// A raw command's outcome.
#[derive(Debug)]
pub struct Completion {
    /// Status, sense and residual.
    pub status: CommandStatus,
    /// The buffer (read data, or the write buffer back).
    pub data: Option<Vec<u8>>,
}

impl Completion {
    /// `Ok` with the buffer for GOOD status; [`Error::CheckCondition`] or [`Error::Status`]
    /// otherwise.
    pub fn into_good(self) -> Result<Option<Vec<u8>>, Error> {
        self.check()?;
        Ok(self.data)
    }

    /// `Ok` for GOOD status; [`Error::CheckCondition`] or [`Error::Status`] otherwise (the
    /// buffer stays in `self.data`).
    pub fn check(&self) -> Result<(), Error> {
        let s = &self.status;
        if s.is_good() {
            return Ok(());
        }
        if s.response == iscsi_proto::pdu::ServiceResponse::COMPLETED
            && s.status == ScsiStatus::CHECK_CONDITION
        {
            let raw = s.sense.clone().unwrap_or_default();
            return Err(Error::CheckCondition {
                sense: Sense::parse(&raw).ok(),
                raw,
            });
        }
        Err(Error::Status {
            status: s.status.0,
            response: s.response.0,
        })
    }
}

/// READ CAPACITY's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    /// Number of logical blocks.
    pub blocks: u64,
    /// Bytes per logical block.
    pub block_size: u32,
}

impl Inquiry {
    /// Whether a logical unit is connected at this LUN (peripheral qualifier 0).
    pub fn connected(&self) -> bool {
        self.qualifier == 0
    }
}

impl Capacity {
    /// Capacity in bytes.
    pub fn bytes(&self) -> u64 {
        self.blocks * u64::from(self.block_size)
    }
}

/// Standard INQUIRY data, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inquiry {
    /// Peripheral qualifier (0: a unit is connected; 1: supported but not connected; 3: no
    /// logical unit at this LUN).
    pub qualifier: u8,
    /// Peripheral device type (0: disk; 0x1f with qualifier 3: no unit).
    pub device_type: u8,
    /// Removable medium.
    pub removable: bool,
    /// T10 vendor identification.
    pub vendor: String,
    /// Product identification.
    pub product: String,
    /// Product revision level.
    pub revision: String,
    /// The raw data.
    pub raw: Vec<u8>,
}

/// COMPARE AND WRITE's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompareResult {
    /// The data matched and was written.
    Written,
    /// The data differed at this byte offset (of the compared range); nothing was written.
    Miscompare {
        /// Offset of the first differing byte, if the target said.
        offset: Option<u64>,
    },
}

struct Shared {
    tx: mpsc::UnboundedSender<Op>,
    cfg: Arc<InitiatorConfig>,
    params: NegotiatedParams,
    block_size: AtomicU32,
}

/// A logged-in session to one target (see the module documentation). Cheap to clone; the
/// session logs out when the last clone is dropped (or at [`Session::logout`]).
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    lun: u16,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("target", &self.shared.cfg.target)
            .field("portal", &self.shared.cfg.portal)
            .field("lun", &self.lun)
            .finish()
    }
}

/// Attempts of a typed helper's command that meets UNIT ATTENTION.
const UA_RETRIES: u32 = 3;

impl Session {
    /// Connects to a URL: `iscsi://[user[%password]@]host[:port]/target-iqn/lun` over TCP, or
    /// `iser://...` over iSER (RDMA; needs the cargo feature `rdma`).
    pub async fn connect(url: &str) -> Result<Session, Error> {
        let url: IscsiUrl = url.parse()?;
        let cfg = InitiatorConfig::from_url(&url)?;
        if url.iser {
            #[cfg(feature = "rdma")]
            return Session::connect_with(cfg, crate::iser::RdmaIser::new()).await;
            #[cfg(not(feature = "rdma"))]
            return Err(no_rdma());
        }
        Session::connect_with(cfg, Tcp).await
    }

    /// Connects with explicit settings over `transport`.
    pub async fn connect_with<T: Transport>(
        cfg: InitiatorConfig,
        transport: T,
    ) -> Result<Session, Error> {
        if cfg.initiator_name.is_empty() {
            return Err(Error::Config("the initiator name is empty".into()));
        }
        if cfg.target.is_empty() {
            return Err(Error::Config(format!(
                "no target name to log in to at {} (iscsi://host[:port]/target-iqn/lun)",
                cfg.portal
            )));
        }
        let isid = conn::random_isid()?;
        let cfg = Arc::new(cfg);
        let first = conn::connect_and_login(&transport, &cfg, SessionType::Normal, isid).await?;
        let params = first.outcome.params.clone();
        // Unbounded: a command costs its caller a task and a buffer already; how many wait
        // for the target is bounded by the session's queue (`max_queued`, then
        // `SubmitError::QueueFull`).
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(conn::drive(transport, cfg.clone(), isid, first, rx));
        Ok(Session {
            lun: cfg.lun,
            shared: Arc::new(Shared {
                tx,
                cfg,
                params,
                block_size: AtomicU32::new(0),
            }),
        })
    }

    /// Lists the targets a portal offers (a discovery session with `SendTargets=All`), over
    /// TCP. `cfg.target` is ignored.
    pub async fn discover(cfg: &InitiatorConfig) -> Result<Vec<TargetRecord>, Error> {
        Session::discover_with(cfg, &Tcp).await
    }

    /// [`Session::discover`] over `transport`.
    pub async fn discover_with<T: Transport>(
        cfg: &InitiatorConfig,
        transport: &T,
    ) -> Result<Vec<TargetRecord>, Error> {
        let text = conn::send_targets(transport, cfg).await?;
        Ok(decode_send_targets(&text))
    }

    /// The same session addressing another LUN with the typed helpers.
    pub fn with_lun(&self, lun: u16) -> Session {
        Session {
            shared: self.shared.clone(),
            lun,
        }
    }

    /// The LUN the typed helpers address.
    pub fn lun(&self) -> u16 {
        self.lun
    }

    /// The values negotiated at the first login.
    pub fn params(&self) -> &NegotiatedParams {
        &self.shared.params
    }

    /// The settings.
    pub fn config(&self) -> &InitiatorConfig {
        &self.shared.cfg
    }

    /// Runs a raw command. Any status comes back in [`Completion`] (see
    /// [`Completion::into_good`]); errors are for commands that got none.
    pub async fn execute(&self, req: Request) -> Result<Completion, Error> {
        let (direction, buf) = match req.data {
            Data::None => (Direction::None, None),
            Data::Read(n) => (Direction::Read(n), None),
            Data::ReadInto(b) => (
                Direction::Read(u32::try_from(b.len()).map_err(|_| too_long())?),
                Some(b),
            ),
            Data::Write(b) => (
                Direction::Write(u32::try_from(b.len()).map_err(|_| too_long())?),
                Some(b),
            ),
        };
        let timeout = req.timeout.or(self.shared.cfg.command_timeout);
        let (reply, rx) = oneshot::channel();
        let op = CommandOp {
            lun: req.lun,
            cdb: req.cdb,
            direction,
            buf,
            deadline: timeout.map(|t| Instant::now() + t),
            reply,
            retries: 0,
        };
        self.shared
            .tx
            .send(Op::Command(op))
            .map_err(|_| Error::Closed)?;
        let (status, data) = rx.await.map_err(|_| Error::Closed)??;
        Ok(Completion { status, data })
    }

    /// Runs a command on this handle's LUN, retrying UNIT ATTENTION; `Ok` only for GOOD.
    /// `make` builds the data for each attempt.
    async fn run(
        &self,
        cdb: impl Into<Cdb>,
        mut make: impl FnMut() -> Data,
    ) -> Result<Option<Vec<u8>>, Error> {
        let cdb = cdb.into();
        let mut attempt = 0;
        loop {
            let c = self
                .execute(Request {
                    lun: self.lun,
                    cdb: cdb.clone(),
                    data: make(),
                    timeout: None,
                })
                .await?;
            match c.into_good() {
                Err(e) if e.is_unit_attention() && attempt < UA_RETRIES => attempt += 1,
                other => return other,
            }
        }
    }

    /// Like `run` for a write whose buffer is moved in and handed back.
    async fn run_owned(&self, cdb: Cdb, mut data: Vec<u8>) -> Result<Vec<u8>, Error> {
        let mut attempt = 0;
        loop {
            let c = self
                .execute(Request {
                    lun: self.lun,
                    cdb: cdb.clone(),
                    data: Data::Write(data),
                    timeout: None,
                })
                .await?;
            match c.check() {
                Err(e) if e.is_unit_attention() && attempt < UA_RETRIES => {
                    attempt += 1;
                    data = c
                        .data
                        .ok_or_else(|| Error::Unexpected("write buffer lost".into()))?;
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(c.data.unwrap_or_default()),
            }
        }
    }

    /// TEST UNIT READY.
    pub async fn test_unit_ready(&self) -> Result<(), Error> {
        self.run(&[0x00, 0, 0, 0, 0, 0], || Data::None)
            .await
            .map(drop)
    }

    /// Standard INQUIRY.
    pub async fn inquiry(&self) -> Result<Inquiry, Error> {
        let raw = self
            .run(&[0x12, 0, 0, 0, 255, 0], || Data::Read(255))
            .await?
            .unwrap_or_default();
        if raw.len() < 36 {
            return Err(Error::Unexpected(format!(
                "INQUIRY data of {} bytes",
                raw.len()
            )));
        }
        let text = |r: std::ops::Range<usize>| {
            String::from_utf8_lossy(&raw[r])
                .trim_matches(|c: char| c == '\0' || c.is_whitespace())
                .to_owned()
        };
        Ok(Inquiry {
            qualifier: raw[0] >> 5,
            device_type: raw[0] & 0x1f,
            removable: raw[1] & 0x80 != 0,
            vendor: text(8..16),
            product: text(16..32),
            revision: text(32..36),
            raw: raw.clone(),
        })
    }

    /// READ CAPACITY (16), or (10) if the unit does not know it. Remembers the block size
    /// for [`Session::read`] and [`Session::write`].
    pub async fn read_capacity(&self) -> Result<Capacity, Error> {
        let mut cdb16 = [0u8; 16];
        cdb16[0] = 0x9e;
        cdb16[1] = 0x10;
        cdb16[13] = 32;
        let cap = match self.run(&cdb16, || Data::Read(32)).await {
            Ok(d) => {
                let d = d.unwrap_or_default();
                if d.len() < 12 {
                    return Err(Error::Unexpected("short READ CAPACITY (16) data".into()));
                }
                Capacity {
                    blocks: u64::from_be_bytes(d[0..8].try_into().unwrap_or_default()) + 1,
                    block_size: u32::from_be_bytes(d[8..12].try_into().unwrap_or_default()),
                }
            }
            Err(e)
                if e.sense()
                    .is_some_and(|s| s.key == SenseKey::ILLEGAL_REQUEST) =>
            {
                let d = self
                    .run(&[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], || Data::Read(8))
                    .await?
                    .unwrap_or_default();
                if d.len() < 8 {
                    return Err(Error::Unexpected("short READ CAPACITY (10) data".into()));
                }
                Capacity {
                    blocks: u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])) + 1,
                    block_size: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
                }
            }
            Err(e) => return Err(e),
        };
        if cap.block_size == 0 {
            return Err(Error::Unexpected("block size 0".into()));
        }
        self.shared
            .block_size
            .store(cap.block_size, Ordering::Relaxed);
        Ok(cap)
    }

    /// The block size (READ CAPACITY the first time).
    pub async fn block_size(&self) -> Result<u32, Error> {
        match self.shared.block_size.load(Ordering::Relaxed) {
            0 => Ok(self.read_capacity().await?.block_size),
            n => Ok(n),
        }
    }

    /// REPORT LUNS: the LUN numbers (flat and peripheral addressing) the target offers.
    pub async fn report_luns(&self) -> Result<Vec<u16>, Error> {
        let alloc: u32 = 16 + 8 * 1024;
        let mut cdb = [0u8; 12];
        cdb[0] = 0xa0;
        cdb[6..10].copy_from_slice(&alloc.to_be_bytes());
        let d = self
            .run(&cdb, || Data::Read(alloc))
            .await?
            .unwrap_or_default();
        if d.len() < 8 {
            return Err(Error::Unexpected("short REPORT LUNS data".into()));
        }
        let len = u32::from_be_bytes([d[0], d[1], d[2], d[3]]) as usize;
        let list = &d[8..(8 + len).min(d.len())];
        Ok(list
            .chunks_exact(8)
            .map(|l| u16::from_be_bytes([l[0] & 0x3f, l[1]]))
            .collect())
    }

    fn rw_cdb(op10: u8, op16: u8, lba: u64, blocks: u32, fua: bool) -> Cdb {
        let mut c = [0u8; 16];
        c[1] = if fua { 0x08 } else { 0 };
        let len = if lba <= u64::from(u32::MAX) && blocks <= 0xffff {
            c[0] = op10;
            c[2..6].copy_from_slice(&(lba as u32).to_be_bytes());
            c[7..9].copy_from_slice(&(blocks as u16).to_be_bytes());
            10
        } else {
            c[0] = op16;
            c[2..10].copy_from_slice(&lba.to_be_bytes());
            c[10..14].copy_from_slice(&blocks.to_be_bytes());
            16
        };
        Cdb::new(&c[..len])
    }

    /// Reads `blocks` blocks at `lba`.
    pub async fn read(&self, lba: u64, blocks: u32) -> Result<Vec<u8>, Error> {
        let bs = self.block_size().await?;
        let len = u32::try_from(u64::from(blocks) * u64::from(bs)).map_err(|_| too_long())?;
        let cdb = Self::rw_cdb(0x28, 0x88, lba, blocks, false);
        let mut d = self.run(cdb, || Data::Read(len)).await?.unwrap_or_default();
        d.truncate(len as usize);
        Ok(d)
    }

    /// Reads into `buf` (whole blocks) at `lba`; the buffer comes back filled.
    pub async fn read_into(&self, lba: u64, buf: Vec<u8>) -> Result<Vec<u8>, Error> {
        let bs = self.block_size().await?;
        let blocks = whole_blocks(buf.len(), bs)?;
        let cdb = Self::rw_cdb(0x28, 0x88, lba, blocks, false);
        let mut buf = Some(buf);
        let mut attempt = 0;
        loop {
            let b = buf.take().unwrap_or_default();
            let c = self
                .execute(Request {
                    lun: self.lun,
                    cdb: cdb.clone(),
                    data: Data::ReadInto(b),
                    timeout: None,
                })
                .await?;
            match c.check() {
                Err(e) if e.is_unit_attention() && attempt < UA_RETRIES => {
                    attempt += 1;
                    buf = c.data;
                }
                Err(e) => return Err(e),
                Ok(()) => return Ok(c.data.unwrap_or_default()),
            }
        }
    }

    /// Writes `data` (whole blocks) at `lba` (copies it into a buffer; see
    /// [`Session::write_owned`]).
    pub async fn write(&self, lba: u64, data: &[u8]) -> Result<(), Error> {
        self.write_owned(lba, data.to_vec()).await.map(drop)
    }

    /// Writes `data` (whole blocks) at `lba` without copying it; the buffer comes back.
    pub async fn write_owned(&self, lba: u64, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.write_flags(lba, data, false).await
    }

    /// Writes with FUA (forced unit access): GOOD means the data is on stable storage.
    pub async fn write_fua(&self, lba: u64, data: Vec<u8>) -> Result<Vec<u8>, Error> {
        self.write_flags(lba, data, true).await
    }

    async fn write_flags(&self, lba: u64, data: Vec<u8>, fua: bool) -> Result<Vec<u8>, Error> {
        let bs = self.block_size().await?;
        let blocks = whole_blocks(data.len(), bs)?;
        let cdb = Self::rw_cdb(0x2a, 0x8a, lba, blocks, fua);
        self.run_owned(cdb, data).await
    }

    /// SYNCHRONIZE CACHE (10) of the whole unit.
    pub async fn sync_cache(&self) -> Result<(), Error> {
        self.run(&[0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0], || Data::None)
            .await
            .map(drop)
    }

    /// UNMAP these (lba, blocks) ranges.
    pub async fn unmap(&self, ranges: &[(u64, u32)]) -> Result<(), Error> {
        let desc_len = ranges.len() * 16;
        let total = 8 + desc_len;
        let param_len = u16::try_from(total).map_err(|_| too_long())?;
        let mut p = vec![0u8; total];
        p[0..2].copy_from_slice(&((total - 2) as u16).to_be_bytes());
        p[2..4].copy_from_slice(&(desc_len as u16).to_be_bytes());
        for (i, (lba, n)) in ranges.iter().enumerate() {
            let d = &mut p[8 + i * 16..8 + (i + 1) * 16];
            d[0..8].copy_from_slice(&lba.to_be_bytes());
            d[8..12].copy_from_slice(&n.to_be_bytes());
        }
        let mut cdb = [0u8; 10];
        cdb[0] = 0x42;
        cdb[7..9].copy_from_slice(&param_len.to_be_bytes());
        self.run(&cdb, || Data::Write(p.clone())).await.map(drop)
    }

    /// WRITE SAME (16): `block` (one block) repeated over `blocks` blocks at `lba`; with
    /// `unmap` the target may deallocate them instead (when `block` is zeros).
    pub async fn write_same(
        &self,
        lba: u64,
        blocks: u32,
        block: &[u8],
        unmap: bool,
    ) -> Result<(), Error> {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x93;
        cdb[1] = if unmap { 0x08 } else { 0 };
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        self.run(&cdb, || Data::Write(block.to_vec()))
            .await
            .map(drop)
    }

    /// COMPARE AND WRITE: if the blocks at `lba` equal `compare`, write `write` there
    /// (atomically). Both hold the same whole number of blocks.
    pub async fn compare_and_write(
        &self,
        lba: u64,
        compare: &[u8],
        write: &[u8],
    ) -> Result<CompareResult, Error> {
        let bs = self.block_size().await?;
        if compare.len() != write.len() {
            return Err(Error::Config(
                "COMPARE AND WRITE needs as many bytes to compare as to write".into(),
            ));
        }
        let blocks = whole_blocks(compare.len(), bs)?;
        let blocks = u8::try_from(blocks).map_err(|_| too_long())?;
        let mut cdb = [0u8; 16];
        cdb[0] = 0x89;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[13] = blocks;
        let mut data = Vec::with_capacity(compare.len() * 2);
        data.extend_from_slice(compare);
        data.extend_from_slice(write);
        match self.run(&cdb, || Data::Write(data.clone())).await {
            Ok(_) => Ok(CompareResult::Written),
            Err(e) if e.sense().is_some_and(|s| s.key == SenseKey::MISCOMPARE) => {
                Ok(CompareResult::Miscompare {
                    offset: e.sense().and_then(|s| s.information),
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn tmf(&self, kind: TmfKind) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Op::Tmf { kind, reply })
            .map_err(|_| Error::Closed)?;
        match rx.await.map_err(|_| Error::Closed)?? {
            TmfResponse::COMPLETE => Ok(()),
            r => Err(Error::Tmf(r.0)),
        }
    }

    /// LOGICAL UNIT RESET of this handle's LUN: our commands on it end with
    /// [`Error::Aborted`].
    pub async fn lu_reset(&self) -> Result<(), Error> {
        self.tmf(TmfKind::LuReset(self.lun)).await
    }

    /// TARGET WARM RESET: our commands end with [`Error::Aborted`].
    pub async fn target_reset(&self) -> Result<(), Error> {
        self.tmf(TmfKind::TargetReset).await
    }

    /// Logs out after the commands already submitted; later commands fail with
    /// [`Error::Closed`].
    pub async fn logout(&self) -> Result<(), Error> {
        let (reply, rx) = oneshot::channel();
        if self.shared.tx.send(Op::Logout { reply }).is_err() {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    /// Whether the session has ended (logged out, or gave up reconnecting).
    pub fn is_closed(&self) -> bool {
        self.shared.tx.is_closed()
    }
}

/// The error for an `iser://` URL in a build without RDMA.
#[cfg(not(feature = "rdma"))]
pub(crate) fn no_rdma() -> Error {
    Error::Config(
        "iser:// needs RDMA support: build the iscsi crate with the cargo feature `rdma`".into(),
    )
}

fn too_long() -> Error {
    Error::Config("transfer longer than 4 GiB".into())
}

fn whole_blocks(len: usize, bs: u32) -> Result<u32, Error> {
    if !len.is_multiple_of(bs as usize) {
        return Err(Error::Config(format!(
            "{len} bytes is not a whole number of {bs}-byte blocks"
        )));
    }
    u32::try_from(len / bs as usize).map_err(|_| too_long())
}
