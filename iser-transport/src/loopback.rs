//! An in-process [`Verbs`] backend: two endpoints joined by a simulated reliable-connected
//! queue pair, for tests and for trying iSER without RDMA hardware.
//!
//! It keeps the rules an adapter enforces, so that a datamover that breaks them fails here
//! rather than on a real network:
//! - exposed memory is found by STag in a table with its address range and access rights; an
//!   unknown or revoked STag, an access outside the range or without the right fails the
//!   operation with [`WcStatus::RemoteAccess`];
//! - a Send needs a receive posted by the peer in advance: without one it fails with
//!   [`WcStatus::ReceiverNotReady`] (no retries), and one that does not fit the posted buffer
//!   fails with [`WcStatus::LocalLength`] at the receiver;
//! - any error puts the connection in the error state: the requests still posted (receives)
//!   complete with [`WcStatus::Flushed`], later posts fail, and both sides see the end;
//! - each side's completions come in posting order, and an RDMA Write is in the peer's
//!   memory before the peer sees a Send posted after it.
//!
//! Base offsets are virtual addresses (not zero-based, as on Linux): every exposed region gets
//! its own address range. [`Faults`] injects failures (a disconnect after N operations, a
//! refused RDMA access).
//!
//! Connections are set up through a [`Fabric`] the way RDMA-CM does it: a listener gets
//! connect requests carrying the initiator's private data, and accepts (with its own private
//! data) or rejects them. [`pair`] joins two endpoints directly.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, oneshot};

use crate::header::Stag;
use crate::mover::IserError;
use crate::verbs::{Access, Completion, Verbs, WcStatus, WorkBuf, WorkKind};

/// Limits of an endpoint.
#[derive(Clone, Debug)]
pub struct LoopbackConfig {
    /// Largest buffer [`Verbs::alloc`] hands out.
    pub max_alloc: usize,
    /// Most regions exposed at once.
    pub max_exposed: usize,
    /// Most receives posted at once.
    pub max_recv: usize,
}

impl Default for LoopbackConfig {
    fn default() -> Self {
        Self {
            max_alloc: 64 << 20,
            max_exposed: 4096,
            max_recv: 4096,
        }
    }
}

/// Why a loopback operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoopbackError {
    /// The connection is over (disconnected or in the error state).
    #[error("the connection is closed")]
    Disconnected,
    /// Nobody listens on that name.
    #[error("connection refused: nobody listens on {0:?}")]
    Refused(String),
    /// The listener rejected the connection.
    #[error("the peer rejected the connection")]
    Rejected,
    /// The name already has a listener.
    #[error("{0:?} already has a listener")]
    AddrInUse(String),
    /// A buffer or a range is larger than allowed or out of the buffer.
    #[error("{0}")]
    Invalid(String),
    /// Too many exposed regions or posted receives.
    #[error("{0}")]
    Exhausted(&'static str),
}

/// What moved over the connections of a [`Fabric`] (or a [`pair`]), counted at the
/// initiating side of each operation: how tests tell RDMA transfers from Sends.
#[derive(Debug, Default)]
pub struct Stats {
    /// Sends delivered.
    pub sends: AtomicU64,
    /// Bytes delivered by Sends.
    pub send_bytes: AtomicU64,
    /// RDMA Writes done.
    pub writes: AtomicU64,
    /// Bytes moved by RDMA Writes.
    pub write_bytes: AtomicU64,
    /// RDMA Reads done.
    pub reads: AtomicU64,
    /// Bytes moved by RDMA Reads.
    pub read_bytes: AtomicU64,
}

impl Stats {
    /// (sends, send bytes, writes, write bytes, reads, read bytes) now.
    pub fn snapshot(&self) -> [u64; 6] {
        [
            &self.sends,
            &self.send_bytes,
            &self.writes,
            &self.write_bytes,
            &self.reads,
            &self.read_bytes,
        ]
        .map(|a| a.load(Ordering::Relaxed))
    }
}

fn count(n: &AtomicU64, bytes: &AtomicU64, len: usize) {
    n.fetch_add(1, Ordering::Relaxed);
    bytes.fetch_add(len as u64, Ordering::Relaxed);
}

/// Failures to inject into a connection (shared by both endpoints).
#[derive(Clone, Debug, Default)]
pub struct Faults {
    inner: Arc<Mutex<FaultState>>,
}

#[derive(Debug, Default)]
struct FaultState {
    /// Data operations (Send, RDMA Write, RDMA Read, from either side) still allowed before
    /// the connection breaks.
    disconnect_after: Option<u64>,
    /// Data operations before the next RDMA Write or Read is refused as a remote access error.
    refuse_rdma_after: Option<u64>,
    /// Operations so far.
    ops: u64,
    /// Faults that fired.
    injected: u64,
}

impl Faults {
    /// Breaks the connection when `n` more data operations (Sends, RDMA Writes and Reads of
    /// either side) have run; the next one fails and flushes everything.
    pub fn disconnect_after(&self, n: u64) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .disconnect_after = Some(n);
    }

    /// Refuses the first RDMA Write or Read after `n` more data operations with
    /// [`WcStatus::RemoteAccess`] (as a bad STag would).
    pub fn refuse_rdma_after(&self, n: u64) {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .refuse_rdma_after = Some(n);
    }

    /// Data operations run so far (on every connection sharing this injector).
    pub fn ops(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).ops
    }

    /// Faults that fired so far.
    pub fn injected(&self) -> u64 {
        self.inner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .injected
    }

    /// Counts one operation; what to do with it.
    fn next(&self, rdma: bool) -> Fault {
        let mut f = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f.ops += 1;
        if let Some(n) = f.disconnect_after {
            if n == 0 {
                f.disconnect_after = None;
                f.injected += 1;
                return Fault::Disconnect;
            }
            f.disconnect_after = Some(n - 1);
        }
        match f.refuse_rdma_after {
            Some(0) if rdma => {
                f.refuse_rdma_after = None;
                f.injected += 1;
                Fault::RefuseRdma
            }
            Some(n) if n > 0 => {
                f.refuse_rdma_after = Some(n - 1);
                Fault::None
            }
            _ => Fault::None,
        }
    }
}

enum Fault {
    None,
    Disconnect,
    RefuseRdma,
}

/// An exposed region.
struct Region {
    buf: Vec<u8>,
    len: usize,
    addr: u64,
    access: Access,
}

/// One side of a connection.
struct Side {
    recvs: VecDeque<(u64, Vec<u8>)>,
    regions: HashMap<u32, Region>,
    cq: Option<mpsc::UnboundedSender<Completion<Vec<u8>, Vec<u8>>>>,
    next_key: u32,
    next_addr: u64,
}

impl Side {
    fn new(cq: mpsc::UnboundedSender<Completion<Vec<u8>, Vec<u8>>>, salt: u32) -> Self {
        Self {
            recvs: VecDeque::new(),
            regions: HashMap::new(),
            cq: Some(cq),
            next_key: salt,
            // Different for each side so that an STag or address used on the wrong side
            // does not happen to work.
            next_addr: 0x7f00_0000_0000 + u64::from(salt) * 0x1_0000_0000,
        }
    }

    fn complete(&self, c: Completion<Vec<u8>, Vec<u8>>) {
        if let Some(cq) = &self.cq {
            let _ = cq.send(c);
        }
    }
}

struct Link {
    sides: [Side; 2],
    broken: bool,
    stats: Arc<Stats>,
}

impl Link {
    /// Reports the end of `side`'s request; a failure breaks the link.
    fn finish(
        &mut self,
        side: usize,
        wr_id: u64,
        kind: WorkKind,
        status: WcStatus,
        len: usize,
        buf: Vec<u8>,
    ) {
        let ok = status == WcStatus::Success;
        let buf = match kind {
            WorkKind::Recv | WorkKind::Send => WorkBuf::Msg(buf),
            WorkKind::Write | WorkKind::Read => WorkBuf::Task(buf),
        };
        self.sides[side].complete(Completion {
            wr_id,
            kind,
            status,
            len: if ok { len } else { 0 },
            buf,
        });
        if !ok {
            self.break_link();
        }
    }

    /// The error state: receives flushed, both completion streams end after what is queued.
    fn break_link(&mut self) {
        if self.broken {
            return;
        }
        self.broken = true;
        for side in &mut self.sides {
            while let Some((wr_id, buf)) = side.recvs.pop_front() {
                side.complete(Completion {
                    wr_id,
                    kind: WorkKind::Recv,
                    status: WcStatus::Flushed,
                    len: 0,
                    buf: WorkBuf::Msg(buf),
                });
            }
            // Exposed memory stays where it is (the peer can no longer reach it: every RDMA
            // operation fails on a broken link); its owner revokes it to get it back.
            side.cq = None;
        }
    }
}

/// One end of a loopback connection.
pub struct Endpoint {
    link: Arc<Mutex<Link>>,
    me: usize,
    cq: mpsc::UnboundedReceiver<Completion<Vec<u8>, Vec<u8>>>,
    faults: Faults,
    config: LoopbackConfig,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("side", &self.me)
            .finish_non_exhaustive()
    }
}

/// Two connected endpoints sharing `faults`.
pub fn pair(config: LoopbackConfig, faults: Faults) -> (Endpoint, Endpoint) {
    pair_counted(config, faults, Arc::default())
}

fn pair_counted(config: LoopbackConfig, faults: Faults, stats: Arc<Stats>) -> (Endpoint, Endpoint) {
    let (tx0, rx0) = mpsc::unbounded_channel();
    let (tx1, rx1) = mpsc::unbounded_channel();
    let link = Arc::new(Mutex::new(Link {
        sides: [Side::new(tx0, 0x11), Side::new(tx1, 0x22)],
        broken: false,
        stats,
    }));
    let end = |me, cq| Endpoint {
        link: link.clone(),
        me,
        cq,
        faults: faults.clone(),
        config: config.clone(),
    };
    (end(0, rx0), end(1, rx1))
}

impl Endpoint {
    /// The fault injector of this connection.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The counters of this connection (its fabric's, for a fabric connection).
    pub fn stats(&self) -> Arc<Stats> {
        self.lock().stats.clone()
    }

    /// Whether the connection is in the error state or disconnected.
    pub fn is_broken(&self) -> bool {
        self.lock().broken
    }

    fn lock(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The link, if it is not broken.
    fn live(&self) -> Result<MutexGuard<'_, Link>, LoopbackError> {
        let link = self.lock();
        if link.broken {
            return Err(LoopbackError::Disconnected);
        }
        Ok(link)
    }

    fn check_range(buf: &[u8], range: &Range<usize>) -> Result<(), LoopbackError> {
        if range.start > range.end || range.end > buf.len() {
            return Err(LoopbackError::Invalid(format!(
                "range {range:?} outside a buffer of {} bytes",
                buf.len()
            )));
        }
        Ok(())
    }

    /// Runs an RDMA Write (`write`) or Read against the peer's exposed memory.
    fn rdma(
        &mut self,
        wr_id: u64,
        mut buf: Vec<u8>,
        range: Range<usize>,
        remote: Stag,
        write: bool,
    ) -> Result<(), LoopbackError> {
        Self::check_range(&buf, &range)?;
        let fault = self.faults.next(true);
        let me = self.me;
        let mut link = self.live()?;
        let kind = if write {
            WorkKind::Write
        } else {
            WorkKind::Read
        };
        if matches!(fault, Fault::Disconnect) {
            link.finish(me, wr_id, kind, WcStatus::Fatal, 0, buf);
            return Ok(());
        }
        let len = range.len();
        let want = if write {
            Access::RemoteWrite
        } else {
            Access::RemoteRead
        };
        let peer = &mut link.sides[1 - me];
        let target = peer.regions.get_mut(&remote.stag).and_then(|r| {
            let start = remote.base_offset.checked_sub(r.addr)?;
            let end = start.checked_add(len as u64)?;
            (r.access == want && end <= r.len as u64).then_some((r, start as usize))
        });
        let status = match (fault, target) {
            (Fault::None, Some((region, start))) => {
                if write {
                    region.buf[start..start + len].copy_from_slice(&buf[range]);
                } else {
                    buf[range].copy_from_slice(&region.buf[start..start + len]);
                }
                WcStatus::Success
            }
            _ => WcStatus::RemoteAccess,
        };
        if status == WcStatus::Success {
            let st = &link.stats;
            if write {
                count(&st.writes, &st.write_bytes, len);
            } else {
                count(&st.reads, &st.read_bytes, len);
            }
        }
        link.finish(me, wr_id, kind, status, len, buf);
        Ok(())
    }
}

impl Verbs for Endpoint {
    type Msg = Vec<u8>;
    type Buf = Vec<u8>;
    type Error = LoopbackError;

    fn msg_buf(&mut self, len: usize) -> Result<Vec<u8>, LoopbackError> {
        self.alloc(len)
    }

    fn alloc(&mut self, len: usize) -> Result<Vec<u8>, LoopbackError> {
        if len > self.config.max_alloc {
            return Err(LoopbackError::Invalid(format!(
                "{len} bytes is more than the {} a buffer may have",
                self.config.max_alloc
            )));
        }
        Ok(vec![0; len])
    }

    fn expose(&mut self, buf: Vec<u8>, len: usize, access: Access) -> Result<Stag, LoopbackError> {
        if len > buf.len() {
            return Err(LoopbackError::Invalid(format!(
                "cannot expose {len} bytes of a {}-byte buffer",
                buf.len()
            )));
        }
        let (max, me) = (self.config.max_exposed, self.me);
        let mut link = self.live()?;
        let side = &mut link.sides[me];
        if side.regions.len() >= max {
            return Err(LoopbackError::Exhausted("too many exposed regions"));
        }
        // Keys like an adapter's: an index and a varying low byte, never 0.
        let stag = loop {
            side.next_key = side.next_key.wrapping_add(0x101);
            if side.next_key != 0 && !side.regions.contains_key(&side.next_key) {
                break side.next_key;
            }
        };
        let addr = side.next_addr;
        // A gap after each region, so that an access past its end cannot land in the next.
        side.next_addr = side
            .next_addr
            .wrapping_add((len as u64).next_multiple_of(4096) + 4096);
        side.regions.insert(
            stag,
            Region {
                buf,
                len,
                addr,
                access,
            },
        );
        Ok(Stag {
            stag,
            base_offset: addr,
        })
    }

    fn revoke(&mut self, stag: u32) -> Option<Vec<u8>> {
        let me = self.me;
        self.lock().sides[me].regions.remove(&stag).map(|r| r.buf)
    }

    fn post_recv(&mut self, wr_id: u64, buf: Vec<u8>) -> Result<(), LoopbackError> {
        let (max, me) = (self.config.max_recv, self.me);
        let mut link = self.live()?;
        let side = &mut link.sides[me];
        if side.recvs.len() >= max {
            return Err(LoopbackError::Exhausted("too many receives posted"));
        }
        side.recvs.push_back((wr_id, buf));
        Ok(())
    }

    fn post_send(&mut self, wr_id: u64, buf: Vec<u8>, len: usize) -> Result<(), LoopbackError> {
        Self::check_range(&buf, &(0..len))?;
        let fault = self.faults.next(false);
        let me = self.me;
        let mut link = self.live()?;
        let (status, peer_status) = if matches!(fault, Fault::Disconnect) {
            (WcStatus::Fatal, None)
        } else {
            match link.sides[1 - me].recvs.pop_front() {
                None => (WcStatus::ReceiverNotReady, None),
                Some((rid, mut rbuf)) => {
                    if len > rbuf.len() {
                        (WcStatus::Fatal, Some((rid, rbuf, WcStatus::LocalLength)))
                    } else {
                        rbuf[..len].copy_from_slice(&buf[..len]);
                        count(&link.stats.sends, &link.stats.send_bytes, len);
                        (WcStatus::Success, Some((rid, rbuf, WcStatus::Success)))
                    }
                }
            }
        };
        if let Some((rid, rbuf, st)) = peer_status {
            link.sides[1 - me].complete(Completion {
                wr_id: rid,
                kind: WorkKind::Recv,
                status: st,
                len: if st == WcStatus::Success { len } else { 0 },
                buf: WorkBuf::Msg(rbuf),
            });
        }
        link.finish(me, wr_id, WorkKind::Send, status, len, buf);
        Ok(())
    }

    fn post_write(
        &mut self,
        wr_id: u64,
        buf: Vec<u8>,
        range: Range<usize>,
        remote: Stag,
    ) -> Result<(), LoopbackError> {
        self.rdma(wr_id, buf, range, remote, true)
    }

    fn post_read(
        &mut self,
        wr_id: u64,
        buf: Vec<u8>,
        range: Range<usize>,
        remote: Stag,
    ) -> Result<(), LoopbackError> {
        self.rdma(wr_id, buf, range, remote, false)
    }

    async fn poll(&mut self) -> Result<Option<Completion<Vec<u8>, Vec<u8>>>, LoopbackError> {
        Ok(self.cq.recv().await)
    }

    fn disconnect(&mut self) {
        self.lock().break_link();
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.lock().break_link();
    }
}

/// A connect request at a [`Listener`].
#[derive(Debug)]
pub struct ConnectRequest {
    /// The private data the initiator sent.
    pub private_data: Vec<u8>,
    reply: oneshot::Sender<Option<(Endpoint, Vec<u8>)>>,
    config: LoopbackConfig,
    faults: Faults,
    stats: Arc<Stats>,
}

impl ConnectRequest {
    /// Accepts, sending `private_data` back; the endpoint for this side.
    pub fn accept(self, private_data: &[u8]) -> Result<Endpoint, LoopbackError> {
        self.accept_with(private_data, Ok)
    }

    /// Accepts once `setup` has turned this side's endpoint into what will use it (a
    /// datamover that posts its receives): what it posts is in place before the initiator
    /// sees the connection, as when receives are posted before `rdma_accept`.
    pub fn accept_with<T, E: From<LoopbackError>>(
        self,
        private_data: &[u8],
        setup: impl FnOnce(Endpoint) -> Result<T, E>,
    ) -> Result<T, E> {
        let (ours, theirs) = pair_counted(self.config, self.faults, self.stats);
        let user = setup(ours)?;
        self.reply
            .send(Some((theirs, private_data.to_vec())))
            .map_err(|_| LoopbackError::Disconnected)?;
        Ok(user)
    }

    /// Rejects the connection.
    pub fn reject(self) {
        let _ = self.reply.send(None);
    }

    /// The fault injector the connection will have.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }
}

/// A namespace of listeners, standing in for RDMA-CM addresses.
#[derive(Clone, Debug, Default)]
pub struct Fabric {
    listeners: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<ConnectRequest>>>>,
    config: LoopbackConfig,
    stats: Arc<Stats>,
}

/// Connect requests for one name of a [`Fabric`]; the name is free again when it is dropped.
#[derive(Debug)]
pub struct Listener {
    name: String,
    rx: mpsc::UnboundedReceiver<ConnectRequest>,
    fabric: Fabric,
}

impl Fabric {
    /// A fabric whose endpoints have these limits.
    pub fn new(config: LoopbackConfig) -> Self {
        Self {
            listeners: Arc::default(),
            config,
            stats: Arc::default(),
        }
    }

    /// What moved over every connection of this fabric so far.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Listens on `name`.
    pub fn listen(&self, name: &str) -> Result<Listener, LoopbackError> {
        let mut l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        if l.get(name).is_some_and(|tx| !tx.is_closed()) {
            return Err(LoopbackError::AddrInUse(name.into()));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        l.insert(name.into(), tx);
        Ok(Listener {
            name: name.into(),
            rx,
            fabric: self.clone(),
        })
    }

    /// Connects to `name` with `private_data`; the endpoint and the listener's private data.
    pub async fn connect(
        &self,
        name: &str,
        private_data: &[u8],
    ) -> Result<(Endpoint, Vec<u8>), LoopbackError> {
        self.connect_with(name, private_data, Faults::default())
            .await
    }

    /// Like [`Fabric::connect`], with a fault injector for the connection.
    pub async fn connect_with(
        &self,
        name: &str,
        private_data: &[u8],
        faults: Faults,
    ) -> Result<(Endpoint, Vec<u8>), LoopbackError> {
        let (reply, rx) = oneshot::channel();
        let req = ConnectRequest {
            private_data: private_data.to_vec(),
            reply,
            config: self.config.clone(),
            faults,
            stats: self.stats.clone(),
        };
        let sent = {
            let l = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
            l.get(name).is_some_and(|tx| tx.send(req).is_ok())
        };
        if !sent {
            return Err(LoopbackError::Refused(name.into()));
        }
        match rx.await {
            Ok(Some(accepted)) => Ok(accepted),
            Ok(None) | Err(_) => Err(LoopbackError::Rejected),
        }
    }
}

impl Listener {
    /// The next connect request; `None` never happens while the listener lives.
    pub async fn accept(&mut self) -> Option<ConnectRequest> {
        self.rx.recv().await
    }

    /// The name listened on.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Closing our receiver closes the sender in the table (and no later listener on the
        // name can be ours, since the name is taken while this one lives).
        self.rx.close();
        let mut l = self
            .fabric
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if l.get(&self.name).is_some_and(|tx| tx.is_closed()) {
            l.remove(&self.name);
        }
    }
}

impl From<LoopbackError> for IserError {
    fn from(e: LoopbackError) -> Self {
        IserError::Verbs(Box::new(e))
    }
}
