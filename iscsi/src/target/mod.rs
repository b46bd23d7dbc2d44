//! The iSCSI target runtime: portals, target nodes with their LUNs and access rules, sessions.
//!
//! ```no_run
//! use iscsi::target::{Target, TargetConfig, TargetNode};
//! use iscsi::scsi::backend::RamBackend;
//! use iscsi::scsi::lu::{LogicalUnit, LuConfig};
//!
//! # async fn run() -> std::io::Result<()> {
//! let lu = LogicalUnit::new(LuConfig::new("disk0"), RamBackend::new(64 << 20)).unwrap();
//! let node = TargetNode::new("iqn.2026-11.rs.iscsi:disk").lun(0, lu);
//! let target = Target::bind(TargetConfig::default(), &["127.0.0.1:3260".parse().unwrap()], vec![node]).await?;
//! let stop = target.shutdown_handle();
//! // Later, from anywhere: `stop.shutdown()` asks initiators to log out and ends `run`.
//! # drop(stop);
//! target.run().await
//! # }
//! ```
//!
//! Each accepted connection gets one tokio task that drives the sans-IO login
//! ([`iscsi_proto::target::TargetLogin`]) and then the full feature phase
//! ([`iscsi_proto::target::TargetSession`]) over a [`iscsi_tcp::TcpDatamover`]. The SCSI
//! commands of a connection run concurrently inside that task (a `FuturesUnordered`), so a
//! backend that waits (files) overlaps them and the RAM backend costs no thread hop.

mod conn;
mod registry;
mod throttle;

pub use throttle::AuthThrottle;

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use iscsi_proto::auth::{AuthPolicy, ChapCredential, TargetAuthConfig};
use iscsi_proto::datamover::Datamover;
use iscsi_proto::target::SessionConfig;
use iscsi_proto::text::Role;
use iscsi_proto::text::{Digest, LocalConfig};
use iscsi_tcp::TcpDatamover;
use scsi_core::backend::BlockBackend;
use scsi_core::lu::LogicalUnit;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

use registry::Registry;

/// One iSCSI target node: a name, its logical units, who may log in and how.
pub struct TargetNode<B> {
    pub(crate) name: String,
    pub(crate) alias: Option<String>,
    pub(crate) luns: BTreeMap<u16, Arc<LogicalUnit<B>>>,
    pub(crate) acl: Option<Vec<String>>,
    pub(crate) auth: TargetAuthConfig,
    /// CHAP users that may only log in under these initiator names.
    pub(crate) chap_bindings: Vec<(String, String)>,
}

impl<B: BlockBackend> TargetNode<B> {
    /// A target named `name` (an iSCSI name: `iqn.…`, `eui.…` or `naa.…`), with no LUNs,
    /// open to every initiator, without authentication.
    pub fn new(name: impl Into<String>) -> Self {
        TargetNode {
            name: name.into(),
            alias: None,
            luns: BTreeMap::new(),
            acl: None,
            auth: TargetAuthConfig::default(),
            chap_bindings: Vec::new(),
        }
    }

    /// Adds logical unit number `lun` (0..16383).
    pub fn lun(mut self, lun: u16, unit: LogicalUnit<B>) -> Self {
        self.luns.insert(lun, Arc::new(unit));
        self
    }

    /// Sets the TargetAlias.
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.alias = Some(alias.into());
        self
    }

    /// Admits `initiator_name` (calling it once turns the access list on: only listed
    /// initiators may log in).
    pub fn allow(mut self, initiator_name: impl Into<String>) -> Self {
        self.acl
            .get_or_insert_with(Vec::new)
            .push(initiator_name.into());
        self
    }

    /// Requires CHAP and admits this user (call again for more users).
    pub fn chap(mut self, user: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        self.auth.method = AuthPolicy::Chap;
        let cred = ChapCredential::new(user, secret);
        match self
            .auth
            .credentials
            .iter_mut()
            .find(|c| c.user == cred.user)
        {
            // The same user again: the new secret replaces the old one.
            Some(c) => *c = cred,
            None => self.auth.credentials.push(cred),
        }
        self
    }

    /// Requires CHAP and admits this user, only under `initiator_name` (call again to bind
    /// more names to the same user). Without a binding, a CHAP user may log in under any
    /// initiator name the access list admits, and so take over another initiator's sessions
    /// and reservations, which are keyed by initiator name.
    pub fn chap_for(
        mut self,
        initiator_name: impl Into<String>,
        user: impl Into<String>,
        secret: impl Into<Vec<u8>>,
    ) -> Self {
        let user = user.into();
        if !self.auth.credentials.iter().any(|c| c.user == user) {
            self.auth.method = AuthPolicy::Chap;
            self.auth
                .credentials
                .push(ChapCredential::new(user.clone(), secret));
        }
        self.chap_bindings.push((user, initiator_name.into()));
        self
    }

    /// Whether CHAP user `user` may log in as `initiator`.
    pub(crate) fn chap_user_admits(&self, user: &str, initiator: &str) -> bool {
        let mut bound = self
            .chap_bindings
            .iter()
            .filter(|(u, _)| u == user)
            .peekable();
        bound.peek().is_none() || bound.any(|(_, i)| i == initiator)
    }

    /// The target's own name and secret for mutual CHAP (the initiator authenticates us).
    pub fn mutual_chap(mut self, user: impl Into<String>, secret: impl Into<Vec<u8>>) -> Self {
        self.auth.mutual = Some(ChapCredential::new(user, secret));
        self
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// LUN numbers, ascending.
    pub fn lun_numbers(&self) -> Vec<u16> {
        self.luns.keys().copied().collect()
    }
}

/// Engine settings.
#[derive(Clone, Debug)]
pub struct TargetConfig {
    /// Most sessions at once (discovery sessions included); more logins get
    /// "out of resources" (0x0302).
    pub max_sessions: usize,
    /// Time a connection has to complete its login.
    pub login_timeout: Duration,
    /// Limits and timers of each session (queue depth, memory, NOP-In).
    pub session: SessionConfig,
    /// Our side of the negotiation. Digests: the accepted values, the initiator's preference
    /// order decides among them.
    pub negotiation: LocalConfig,
    /// Portal group tag of every portal.
    pub portal_group_tag: u16,
    /// How long a graceful shutdown waits for initiators to log out (and then again for
    /// commands still running), and how long a reinstating login waits for the old
    /// connection to end.
    pub shutdown_grace: Duration,
    /// Connections allowed to be in their login phase at once; more are closed on accept
    /// (half-open logins cannot pile up until the file descriptors run out).
    pub max_logins_in_progress: usize,
    /// Whether initiators may use TARGET WARM RESET and TARGET COLD RESET. A cold reset
    /// closes every session of the target node and clears persistent reservations (a power
    /// cycle), which any initiator on the access list could then do to the others: turn this
    /// off where that matters (they are then answered "function authorization failed").
    pub allow_target_reset: bool,
    /// Against CHAP secret guessing: how failed authentications from one address block its
    /// next connections for a while (see [`AuthThrottle`]).
    pub auth_throttle: AuthThrottle,
}

impl Default for TargetConfig {
    fn default() -> Self {
        let negotiation = LocalConfig {
            header_digest: vec![Digest::None, Digest::Crc32c],
            data_digest: vec![Digest::None, Digest::Crc32c],
            max_recv_data_segment_length: 256 << 10,
            max_burst_length: 16 << 20,
            first_burst_length: 16 << 20,
            max_outstanding_r2t: 16,
            initial_r2t: false,
            immediate_data: true,
            max_connections: 1,
            error_recovery_level: 0,
            ..LocalConfig::default()
        };
        TargetConfig {
            max_sessions: 1024,
            login_timeout: Duration::from_secs(15),
            session: SessionConfig::default(),
            negotiation,
            portal_group_tag: 1,
            shutdown_grace: Duration::from_secs(5),
            max_logins_in_progress: 256,
            allow_target_reset: true,
            auth_throttle: AuthThrottle::default(),
        }
    }
}

impl TargetConfig {
    /// Requires CRC32C header digests (`true`) or accepts both (`false`).
    pub fn require_header_digest(mut self, on: bool) -> Self {
        self.negotiation.header_digest = if on {
            vec![Digest::Crc32c]
        } else {
            vec![Digest::None, Digest::Crc32c]
        };
        self
    }

    /// Requires CRC32C data digests (`true`) or accepts both (`false`).
    pub fn require_data_digest(mut self, on: bool) -> Self {
        self.negotiation.data_digest = if on {
            vec![Digest::Crc32c]
        } else {
            vec![Digest::None, Digest::Crc32c]
        };
        self
    }
}

/// What the connections share.
pub(crate) struct Shared<B> {
    pub(crate) cfg: TargetConfig,
    pub(crate) nodes: Vec<TargetNode<B>>,
    pub(crate) portals: Vec<SocketAddr>,
    pub(crate) registry: Registry,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Connection ids, unique across every portal and acceptor (the registry is keyed by
    /// them).
    pub(crate) next_conn_id: std::sync::atomic::AtomicU64,
    /// Failed authentications per source address.
    pub(crate) throttle: std::sync::Mutex<throttle::Throttle>,
}

impl<B> Shared<B> {
    fn conn_id(&self) -> u64 {
        self.next_conn_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, throttle::Throttle> {
        self.throttle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether connections from `ip` are refused for now (too many failed authentications).
    pub(crate) fn auth_blocked(&self, ip: Option<std::net::IpAddr>) -> bool {
        ip.is_some_and(|ip| {
            self.throttle()
                .blocked(&self.cfg.auth_throttle, ip, tokio::time::Instant::now())
        })
    }

    /// Records a failed (`false`) or successful authentication from `ip`.
    pub(crate) fn auth_result(&self, ip: Option<std::net::IpAddr>, ok: bool) {
        let Some(ip) = ip else { return };
        let mut t = self.throttle();
        if ok {
            t.succeeded(ip);
        } else {
            t.failed(&self.cfg.auth_throttle, ip, tokio::time::Instant::now());
        }
    }
}

/// The IP address in a connection's peer description (`ADDR:PORT` or `iser:ADDR:PORT`).
pub(crate) fn peer_ip(peer: &str) -> Option<std::net::IpAddr> {
    let addr = peer.strip_prefix("iser:").unwrap_or(peer);
    addr.parse::<SocketAddr>().ok().map(|a| a.ip())
}

/// Stops a running [`Target`]: initiators are asked to log out, in-flight commands finish,
/// then connections close.
#[derive(Clone, Debug)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    /// Starts the graceful shutdown.
    pub fn shutdown(&self) {
        let _ = self.0.send(true);
    }
}

/// A source of connections: the TCP portals, or an iSER listener added with
/// [`Target::add_acceptor`]. The target serves every datamover it hands out the same way.
pub trait Acceptor: Send + 'static {
    /// The datamover of one connection.
    type Mover: Datamover + 'static;
    /// The next connection; `None` once the acceptor is closed for good. Errors are logged
    /// and accepting goes on.
    fn accept(&mut self) -> impl Future<Output = Option<io::Result<Accepted<Self::Mover>>>> + Send;
}

/// A connection from an [`Acceptor`].
#[derive(Debug)]
pub struct Accepted<D> {
    /// Its datamover.
    pub mover: D,
    /// The peer, for the logs.
    pub peer: String,
    /// The local portal address it arrived on (for SendTargets answers), if it has one.
    pub local: Option<SocketAddr>,
}

/// The TCP portals' acceptor.
struct TcpAcceptor(TcpListener);

impl Acceptor for TcpAcceptor {
    type Mover = TcpDatamover;

    async fn accept(&mut self) -> Option<io::Result<Accepted<TcpDatamover>>> {
        Some(self.0.accept().await.and_then(|(stream, peer)| {
            let mover = TcpDatamover::new(stream, Role::Target)?;
            let local = mover.local_addr().ok();
            Ok(Accepted {
                mover,
                peer: peer.to_string(),
                local,
            })
        }))
    }
}

type AcceptLoop<B> =
    Box<dyn FnOnce(Arc<Shared<B>>) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A bound iSCSI target, ready to [`run`](Target::run).
pub struct Target<B> {
    shared: Arc<Shared<B>>,
    listeners: Vec<TcpListener>,
    acceptors: Vec<AcceptLoop<B>>,
    stop: Arc<watch::Sender<bool>>,
}

/// A configuration error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// A target name is not an iSCSI name.
    #[error("{0:?} is not an iSCSI name (iqn., eui. or naa. format)")]
    BadName(String),
    /// Two targets have the same name.
    #[error("target {0} is defined twice")]
    DuplicateName(String),
    /// Invalid CHAP settings.
    #[error("CHAP settings of {0}: {1}")]
    Auth(String, String),
    /// No portal.
    #[error("no portal to listen on")]
    NoPortal,
    /// A portal could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, io::Error),
}

impl From<TargetError> for io::Error {
    fn from(e: TargetError) -> io::Error {
        match e {
            TargetError::Bind(_, e) => e,
            other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

/// Checks target names and CHAP settings.
fn check_nodes<B: BlockBackend>(nodes: &[TargetNode<B>]) -> Result<(), TargetError> {
    for (i, n) in nodes.iter().enumerate() {
        if !iscsi_proto::target::is_iscsi_name(&n.name) {
            return Err(TargetError::BadName(n.name.clone()));
        }
        if nodes[..i].iter().any(|m| m.name == n.name) {
            return Err(TargetError::DuplicateName(n.name.clone()));
        }
        n.auth
            .validate()
            .map_err(|e| TargetError::Auth(n.name.clone(), e.to_string()))?;
    }
    Ok(())
}

impl<B: BlockBackend> Target<B> {
    /// Checks the configuration and binds every portal (port 0 picks a free port: see
    /// [`Target::local_addrs`]).
    pub async fn bind(
        cfg: TargetConfig,
        portals: &[SocketAddr],
        nodes: Vec<TargetNode<B>>,
    ) -> Result<Self, TargetError> {
        if portals.is_empty() {
            return Err(TargetError::NoPortal);
        }
        check_nodes(&nodes)?;
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for p in portals {
            let l = TcpListener::bind(p)
                .await
                .map_err(|e| TargetError::Bind(*p, e))?;
            addrs.push(l.local_addr().map_err(|e| TargetError::Bind(*p, e))?);
            listeners.push(l);
        }
        Ok(Self::assemble(cfg, nodes, addrs, listeners))
    }

    /// Checks the configuration; the target has no TCP portal and serves the connections of
    /// the acceptors added with [`Target::add_acceptor`] (iSER only). [`Target::run`] fails
    /// with [`TargetError::NoPortal`] if none was added.
    pub fn without_tcp(cfg: TargetConfig, nodes: Vec<TargetNode<B>>) -> Result<Self, TargetError> {
        check_nodes(&nodes)?;
        Ok(Self::assemble(cfg, nodes, Vec::new(), Vec::new()))
    }

    fn assemble(
        cfg: TargetConfig,
        nodes: Vec<TargetNode<B>>,
        portals: Vec<SocketAddr>,
        listeners: Vec<TcpListener>,
    ) -> Self {
        let (tx, rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            cfg,
            nodes,
            portals,
            registry: Registry::default(),
            shutdown: rx,
            next_conn_id: std::sync::atomic::AtomicU64::new(1),
            throttle: std::sync::Mutex::default(),
        });
        Target {
            shared,
            listeners,
            acceptors: Vec::new(),
            stop: Arc::new(tx),
        }
    }

    /// Serves the connections of `acceptor` too (iSER), with the same nodes, limits and
    /// shutdown as the TCP portals, once [`Target::run`] runs.
    pub fn add_acceptor<A: Acceptor>(&mut self, acceptor: A) {
        self.acceptors.push(Box::new(move |shared| {
            Box::pin(acceptor_loop(acceptor, shared))
        }));
    }

    /// The bound portal addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.shared.portals
    }

    /// `iscsi://host:port/target/lun` URLs (libiscsi syntax) of every LUN on every portal.
    pub fn urls(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.shared.portals {
            for n in &self.shared.nodes {
                for lun in n.luns.keys() {
                    out.push(format!("iscsi://{p}/{}/{lun}", n.name));
                }
            }
        }
        out
    }

    /// A handle that stops [`Target::run`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.stop.clone())
    }

    /// Accepts and serves connections until shut down.
    pub async fn run(self) -> io::Result<()> {
        if self.listeners.is_empty() && self.acceptors.is_empty() {
            return Err(TargetError::NoPortal.into());
        }
        let mut tasks = tokio::task::JoinSet::new();
        for l in self.listeners {
            tasks.spawn(acceptor_loop(TcpAcceptor(l), self.shared.clone()));
        }
        for a in self.acceptors {
            tasks.spawn(a(self.shared.clone()));
        }
        let mut stop = self.shared.shutdown.clone();
        stopped(&mut stop).await;
        info!("shutting down: asking initiators to log out");
        // Accept loops end on the same signal; then wait for the connections (bounded: a
        // connection waits up to one grace period for a logout, then up to another for its
        // running commands).
        let grace = 2 * self.shared.cfg.shutdown_grace + Duration::from_secs(1);
        let _ =
            tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
        tasks.abort_all();
        Ok(())
    }
}

/// Accepts connections from `a` until shutdown; each runs in its own task.
async fn acceptor_loop<B: BlockBackend, A: Acceptor>(mut a: A, shared: Arc<Shared<B>>) {
    let mut conns = tokio::task::JoinSet::new();
    let logins = Arc::new(Semaphore::new(shared.cfg.max_logins_in_progress.max(1)));
    let mut stop = shared.shutdown.clone();
    loop {
        tokio::select! {
            r = a.accept() => match r {
                Some(Ok(c)) => {
                    if shared.auth_blocked(peer_ip(&c.peer)) {
                        warn!(peer = %c.peer, "too many failed authentications from this address: connection closed");
                        continue;
                    }
                    let Ok(permit) = logins.clone().try_acquire_owned() else {
                        warn!(peer = %c.peer, "too many logins in progress: connection closed");
                        continue;
                    };
                    let (id, shared) = (shared.conn_id(), shared.clone());
                    conns.spawn(conn::serve(shared, c, id, permit));
                }
                Some(Err(e)) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                None => break,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            _ = stopped(&mut stop) => break,
        }
    }
    drop(a);
    while conns.join_next().await.is_some() {}
}

/// Resolves once the shutdown flag is set (or its sender is gone).
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
