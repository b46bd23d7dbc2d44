//! The RDMA backend of [`Verbs`] (cargo feature `rdma`): real adapters and soft-RoCE through
//! `sideway` (protection domains, memory regions, completion queues, reliable-connected queue
//! pairs, posting and polling) and librdmacm for connections (module `cm`: `sideway` has no CM
//! private data, which iSER's CM header needs). Both libraries are loaded at run time:
//! a binary built with this feature starts on a machine without them and fails with a clear
//! error when it tries to connect.
//!
//! One connection is one [`RdmaEndpoint`]: its own RDMA-CM identifier and event channel, a
//! protection domain, one completion queue (Sends, RDMA Writes and Reads, and receives) with
//! a completion channel, and an RC queue pair that we drive through INIT, RTR and RTS with
//! the attributes RDMA-CM computes. Completions are awaited through tokio on the completion
//! channel's descriptor; connection events (the peer disconnecting) on the CM channel's.
//!
//! Transports: InfiniBand and RoCE (soft-RoCE included). iWARP devices are not supported
//! yet: with a queue pair the application manages they end the connect with ESTABLISHED
//! instead of CONNECT_RESPONSE, which this backend does not take.
//!
//! Memory: message buffers ([`RdmaMsg`]) are registered once, when made. Task buffers are
//! the caller's `Vec<u8>`s, registered while the adapter may touch them: for the length of
//! an RDMA Write or Read we post, or between [`Verbs::expose`] and [`Verbs::revoke`]
//! (deregistering invalidates the STag, so a late peer access fails with a remote access
//! error). A buffer the adapter may touch is owned by the endpoint, so safe code cannot
//! reach it; dropping the endpoint destroys the queue pair before it frees any buffer.
//!
//! Everything here is `unsafe`-free except module `cm` and the few raw calls marked below
//! (memory registration, arming the completion queue); this module is the only place of
//! the project allowed `unsafe` code.

mod cm;

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io;
use std::mem::ManuallyDrop;
use std::net::SocketAddr;
use std::ops::Range;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll;
use std::time::Duration;

use iscsi_proto::datamover::DataBuffer;
use rdma_mummy_sys::{ibv_qp_attr_mask, ibv_qp_state, ibv_wc_status};
use sideway::ibverbs::AccessFlags;
use sideway::ibverbs::completion::{
    BasicCompletionQueue, CompletionChannel, CompletionQueue, GenericCompletionQueue,
    PollCompletionQueueError,
};
use sideway::ibverbs::device::{DeviceInfo, DeviceList};
use sideway::ibverbs::device_context::DeviceContext;
use sideway::ibverbs::memory_region::MemoryRegion;
use sideway::ibverbs::protection_domain::ProtectionDomain;
use sideway::ibverbs::queue_pair::{
    BasicQueuePair, PostSendGuard, QueuePair, QueuePairAttribute, QueuePairState,
    SetScatterGatherEntry, WorkRequestFlags,
};
use tokio::io::unix::AsyncFd;

use crate::header::Stag;
use crate::verbs::{Access, Completion, Verbs, WcStatus, WorkBuf, WorkKind};
use cm::{BorrowedFd, CmId, ConnParams};

/// Why an RDMA operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RdmaError {
    /// A library call failed.
    #[error("{op}: {source}")]
    Os {
        /// What was being done.
        op: &'static str,
        /// The error the library reported.
        source: io::Error,
    },
    /// RDMA-CM reported something else than the step expected.
    #[error("RDMA-CM while {op}: {event} (status {status})")]
    Cm {
        /// The step.
        op: &'static str,
        /// The event that came.
        event: &'static str,
        /// Its status (a negative errno or a transport reason).
        status: i32,
    },
    /// The peer rejected the connection.
    #[error("connection rejected by the peer (status {status})")]
    Rejected {
        /// The reject reason from the transport.
        status: i32,
        /// Private data sent with the reject.
        private_data: Vec<u8>,
    },
    /// No RDMA device, or not the one RDMA-CM chose.
    #[error("RDMA device: {0}")]
    Device(String),
    /// A verbs call failed.
    #[error("{op}: {detail}")]
    Verbs {
        /// What was being done.
        op: &'static str,
        /// The library's error.
        detail: String,
    },
    /// A request that does not fit the buffer or the connection (a bug of the caller).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The connection is closed.
    #[error("the RDMA connection is closed")]
    Closed,
}

fn verbs_err(op: &'static str, e: impl std::fmt::Display) -> RdmaError {
    RdmaError::Verbs {
        op,
        detail: e.to_string(),
    }
}

/// Sizes of one RDMA connection (match them to the datamover's
/// [`IserConfig`](crate::mover::IserConfig): receives and send-queue work).
#[derive(Clone, Debug)]
pub struct RdmaConfig {
    /// Receive work requests the queue pair holds.
    pub recv_depth: u32,
    /// Send-queue work requests (Sends, RDMA Writes and Reads) the queue pair holds.
    pub send_depth: u32,
    /// Most RDMA Reads in flight in either direction (clamped to the device and the peer).
    pub rdma_read_depth: u8,
    /// How long address and route resolution may take.
    pub resolve_timeout: Duration,
}

impl Default for RdmaConfig {
    fn default() -> Self {
        let iser = crate::mover::IserConfig::default();
        Self {
            recv_depth: u32::try_from(iser.recv_depth).unwrap_or(u32::MAX),
            send_depth: u32::try_from(iser.send_depth).unwrap_or(u32::MAX),
            rdma_read_depth: 16,
            resolve_timeout: Duration::from_secs(2),
        }
    }
}

/// A registered message buffer (Sends and receives).
#[derive(Debug)]
pub struct RdmaMsg {
    /// Declared first: deregistered before the memory is freed.
    mr: Arc<MemoryRegion>,
    data: Vec<u8>,
}

impl DataBuffer for RdmaMsg {
    fn as_bytes(&self) -> &[u8] {
        &self.data
    }
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

/// A buffer the adapter may be using, with its registration (if it has its own).
#[derive(Debug)]
struct InUse {
    /// Declared first: deregistered before the buffer goes back to the caller.
    mr: Option<Arc<MemoryRegion>>,
    kind: WorkKind,
    len: usize,
    buf: WorkBuf<RdmaMsg, Vec<u8>>,
}

/// Registers `buf[range]` (a live, non-empty range of a vector the caller will not touch
/// until the registration is dropped).
fn register(
    pd: &Arc<ProtectionDomain>,
    buf: &[u8],
    range: Range<usize>,
    access: AccessFlags,
) -> Result<Arc<MemoryRegion>, RdmaError> {
    let Some(part) = buf.get(range.clone()).filter(|p| !p.is_empty()) else {
        return Err(RdmaError::Invalid(format!(
            "range {range:?} of a {}-byte buffer",
            buf.len()
        )));
    };
    // SAFETY: `part` is valid for its length, and its vector outlives the registration (every
    // owner declares the registration first, so it is dropped first). The adapter touches
    // registered memory only while a work request on it is posted or while it is exposed to
    // the peer, and the endpoint owns the buffer for exactly that long: task buffers are
    // registered only for that time; a message buffer stays registered (local write only)
    // for its life, and safe code may use it between work requests, when the adapter
    // does not.
    unsafe { pd.reg_mr(part.as_ptr() as usize, part.len(), access) }.map_err(|e| {
        verbs_err(
            "ibv_reg_mr (registration pins memory: the locked-memory limit, `ulimit -l`, \
                 must allow it)",
            e,
        )
    })
}

/// Devices opened by this process, by name (one context per device, shared by connections).
fn devices() -> &'static Mutex<HashMap<String, Arc<DeviceContext>>> {
    static OPEN: OnceLock<Mutex<HashMap<String, Arc<DeviceContext>>>> = OnceLock::new();
    OPEN.get_or_init(Mutex::default)
}

/// The open context of the device `name` (opened on first use).
fn device(name: &str) -> Result<Arc<DeviceContext>, RdmaError> {
    let mut open = devices().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(ctx) = open.get(name) {
        return Ok(ctx.clone());
    }
    let list = DeviceList::new().map_err(|e| verbs_err("ibv_get_device_list", e))?;
    let dev = list.iter().find(|d| d.name() == name).ok_or_else(|| {
        RdmaError::Device(format!(
            "RDMA-CM chose {name}, which libibverbs does not list"
        ))
    })?;
    let ctx = dev.open().map_err(|e| verbs_err("ibv_open_device", e))?;
    open.insert(name.to_owned(), ctx.clone());
    Ok(ctx)
}

/// Forgets the context of `name` (the device went away: the next use opens it again).
fn forget_device(name: &str) {
    devices()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(name);
}

/// One RDMA connection: the verbs iSER needs (see the module documentation).
pub struct RdmaEndpoint {
    // Drop order (declaration order): stop the reactor watching the completion channel,
    // disconnect and destroy the queue pair (no more DMA), then free buffers and
    // registrations, then the completion queue, its channel, the protection domain, and
    // last the RDMA-CM identifier.
    cq_fd: AsyncFd<BorrowedFd>,
    /// Destroyed by hand in `Drop`, before anything else (see there).
    qp: ManuallyDrop<BasicQueuePair>,
    posted: HashMap<u64, InUse>,
    exposed: HashMap<u32, InUse>,
    ready: VecDeque<Completion<RdmaMsg, Vec<u8>>>,
    cq: Arc<BasicCompletionQueue>,
    channel: Arc<CompletionChannel>,
    pd: Arc<ProtectionDomain>,
    id: Arc<CmId>,
    /// The completion queue is armed (a notification will come for the next completion).
    armed: bool,
    /// The queue pair was put in the error state (or failed on its own): nothing more moves
    /// and what is posted completes (flushed).
    closed: bool,
    /// Putting the queue pair in the error state failed: nothing will flush what is posted.
    stuck: Option<String>,
    /// `rdma_disconnect` was called (the peer is told, or answered).
    cm_disconnected: bool,
    peer: Option<SocketAddr>,
    /// RDMA Reads the device serves and issues at once on one queue pair.
    read_caps: (u8, u8),
}

impl std::fmt::Debug for RdmaEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RdmaEndpoint")
            .field("peer", &self.peer)
            .field("posted", &self.posted.len())
            .field("exposed", &self.exposed.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

/// Verbs objects for one connection on the device RDMA-CM bound `id` to, the queue pair in
/// INIT.
fn build(
    id: Arc<CmId>,
    cfg: &RdmaConfig,
    peer: Option<SocketAddr>,
) -> Result<RdmaEndpoint, RdmaError> {
    let name = id
        .device_name()
        .ok_or_else(|| RdmaError::Device("RDMA-CM bound no device".into()))?;
    let mut ctx = device(&name)?;
    // A context kept from before the device was removed and added again is dead: open it
    // afresh once.
    if ctx.query_device().is_err() {
        forget_device(&name);
        ctx = device(&name)?;
    }
    let read_caps = ctx
        .query_device()
        .map(|a| {
            let cap = |n: i32| u8::try_from(n.max(0)).unwrap_or(u8::MAX);
            (cap(a.max_qp_rd_atom()), cap(a.max_qp_init_rd_atom()))
        })
        .map_err(|e| verbs_err("ibv_query_device", e))?;
    let pd = ctx.alloc_pd().map_err(|e| verbs_err("ibv_alloc_pd", e))?;
    let channel = ctx
        .create_comp_channel()
        .map_err(|e| verbs_err("ibv_create_comp_channel", e))?;
    channel
        .set_nonblocking(true)
        .map_err(|source| RdmaError::Os {
            op: "making the completion channel non-blocking",
            source,
        })?;
    let cq = ctx
        .create_cq_builder()
        .setup_cqe(cfg.send_depth + cfg.recv_depth)
        .setup_comp_channel(&channel, 0)
        .build()
        .map_err(|e| verbs_err("ibv_create_cq", e))?;
    let mut qp = pd
        .create_qp_builder()
        .setup_max_send_wr(cfg.send_depth)
        .setup_max_recv_wr(cfg.recv_depth)
        .setup_max_send_sge(1)
        .setup_max_recv_sge(1)
        .setup_send_cq(GenericCompletionQueue::from(cq.clone()))
        .setup_recv_cq(GenericCompletionQueue::from(cq.clone()))
        .build()
        .map_err(|e| verbs_err("ibv_create_qp", e))?;
    modify(&id, &mut qp, ibv_qp_state::IBV_QPS_INIT, (0, 0))?;
    let raw_fd = std::os::fd::AsRawFd::as_raw_fd(&*channel);
    // SAFETY: the endpoint declares `cq_fd` first, so it is dropped before `channel` (and
    // the completion queue, whose holds on the channel end with it) closes the descriptor.
    let cq_fd = unsafe { cm::watch(raw_fd) }.map_err(|source| RdmaError::Os {
        op: "registering the completion channel",
        source,
    })?;
    Ok(RdmaEndpoint {
        cq_fd,
        qp: ManuallyDrop::new(qp),
        posted: HashMap::new(),
        exposed: HashMap::new(),
        ready: VecDeque::new(),
        cq,
        channel,
        pd,
        id,
        armed: false,
        closed: false,
        stuck: None,
        cm_disconnected: false,
        peer,
        read_caps,
    })
}

/// Moves `qp` to `state` with the attributes RDMA-CM computed for the connection. In INIT
/// the queue pair also admits remote reads and writes (the memory regions decide what the
/// peer may really touch; RDMA-CM leaves remote read out before the connection exists). In
/// RTR and RTS the RDMA Read depths are the ones agreed with the peer (`depths`: responder
/// resources, initiator depth), as librdmacm sets them: before `rdma_accept` RDMA-CM only
/// knows what the request asked.
fn modify(
    id: &CmId,
    qp: &mut BasicQueuePair,
    state: u32,
    depths: (u8, u8),
) -> Result<(), RdmaError> {
    let (mut attr, mut mask) = id.qp_attr(state)?;
    match state {
        ibv_qp_state::IBV_QPS_INIT => {
            attr.qp_access_flags =
                (AccessFlags::LocalWrite | AccessFlags::RemoteWrite | AccessFlags::RemoteRead)
                    .bits() as u32;
        }
        ibv_qp_state::IBV_QPS_RTR => {
            attr.max_dest_rd_atomic = depths.0;
            mask |= ibv_qp_attr_mask::IBV_QP_MAX_DEST_RD_ATOMIC.0 as i32;
        }
        ibv_qp_state::IBV_QPS_RTS => {
            attr.max_rd_atomic = depths.1;
            mask |= ibv_qp_attr_mask::IBV_QP_MAX_QP_RD_ATOMIC.0 as i32;
        }
        _ => {}
    }
    qp.modify(&QueuePairAttribute::from(&attr, mask))
        .map_err(|e| verbs_err("ibv_modify_qp", e))
}

/// Our RDMA Read depths (responder resources, initiator depth), clamped to the device.
fn read_depths(ep: &RdmaEndpoint, cfg: &RdmaConfig) -> (u8, u8) {
    (
        cfg.rdma_read_depth.min(ep.read_caps.0),
        cfg.rdma_read_depth.min(ep.read_caps.1),
    )
}

fn status(raw: u32) -> WcStatus {
    match raw {
        ibv_wc_status::IBV_WC_SUCCESS => WcStatus::Success,
        ibv_wc_status::IBV_WC_WR_FLUSH_ERR => WcStatus::Flushed,
        ibv_wc_status::IBV_WC_RNR_RETRY_EXC_ERR => WcStatus::ReceiverNotReady,
        ibv_wc_status::IBV_WC_REM_ACCESS_ERR => WcStatus::RemoteAccess,
        ibv_wc_status::IBV_WC_LOC_LEN_ERR => WcStatus::LocalLength,
        _ => WcStatus::Fatal,
    }
}

impl RdmaEndpoint {
    /// The peer's address (its RDMA-CM address), when known.
    pub fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Our address on the connection, when known.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.id.local_addr()
    }

    /// Takes every completion waiting in the completion queue into `ready`.
    fn drain_cq(&mut self) -> Result<(), RdmaError> {
        let mut poller = match self.cq.start_poll() {
            Ok(p) => p,
            Err(PollCompletionQueueError::CompletionQueueEmpty) => return Ok(()),
            Err(e) => {
                self.close_qp();
                return Err(verbs_err("ibv_poll_cq", e));
            }
        };
        let mut failed = false;
        for wc in poller.by_ref() {
            let wr_id = wc.wr_id();
            let st = status(wc.status());
            if st != WcStatus::Success {
                // The queue pair is in the error state: the connection is over.
                failed = true;
            }
            let Some(done) = self.posted.remove(&wr_id) else {
                // Every request we post is in `posted` until it completes.
                debug_assert!(false, "a completion for unknown work request {wr_id}");
                continue;
            };
            let len = match (st, done.kind) {
                (WcStatus::Success, WorkKind::Recv) => wc.byte_len() as usize,
                (WcStatus::Success, _) => done.len,
                _ => 0,
            };
            let InUse { mr, kind, buf, .. } = done;
            drop(mr);
            self.ready.push_back(Completion {
                wr_id,
                kind,
                status: st,
                len,
                buf,
            });
        }
        drop(poller);
        if failed {
            self.close_qp();
        }
        Ok(())
    }

    /// Handles what arrived on the connection's CM channel (the peer disconnecting).
    fn drain_cm(&mut self) -> Result<(), RdmaError> {
        while let Some(ev) = self.id.channel().try_next()? {
            if ev.ends_connection() {
                self.close_qp();
            }
        }
        Ok(())
    }

    /// Puts the queue pair in the error state: every outstanding request completes
    /// (flushed) and nothing more moves.
    fn close_qp(&mut self) {
        if !self.closed {
            self.closed = true;
            let mut attr = QueuePairAttribute::new();
            attr.setup_state(QueuePairState::Error);
            if let Err(e) = self.qp.modify(&attr) {
                self.stuck = Some(e.to_string());
            }
        }
    }

    /// Arms the completion queue: the channel becomes readable at the next completion.
    fn arm(&mut self) -> Result<(), RdmaError> {
        // SAFETY: the completion queue is live (held by `self.cq`).
        let ret = unsafe { rdma_mummy_sys::ibv_req_notify_cq(self.cq.cq().as_ptr(), 0) };
        if ret != 0 {
            return Err(RdmaError::Os {
                op: "ibv_req_notify_cq",
                source: io::Error::from_raw_os_error(ret),
            });
        }
        self.armed = true;
        Ok(())
    }

    /// Takes a completion notification off the channel, if one is there.
    fn take_notification(&mut self) -> Result<bool, RdmaError> {
        let mut cq = std::ptr::null_mut();
        let mut ctx = std::ptr::null_mut();
        // SAFETY: the channel is live and non-blocking; the out-pointers are valid.
        let ret = unsafe {
            rdma_mummy_sys::ibv_get_cq_event(
                self.channel.comp_channel().as_ptr(),
                &mut cq,
                &mut ctx,
            )
        };
        if ret != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(false);
            }
            return Err(RdmaError::Os {
                op: "ibv_get_cq_event",
                source: e,
            });
        }
        // SAFETY: `cq` is our completion queue (the only one on this channel); each event
        // is acknowledged once, right away, so destroying the queue never waits.
        unsafe { rdma_mummy_sys::ibv_ack_cq_events(cq, 1) };
        self.armed = false;
        Ok(true)
    }

    /// Posts with `op` and keeps `used` (the buffer and its registration) until the request
    /// completes. If posting fails the buffer is dropped with the error.
    fn post(
        &mut self,
        wr_id: u64,
        used: InUse,
        op: impl FnOnce(&mut BasicQueuePair) -> Result<(), RdmaError>,
    ) -> Result<(), RdmaError> {
        if self.closed {
            return Err(RdmaError::Closed);
        }
        if self.posted.contains_key(&wr_id) {
            return Err(RdmaError::Invalid(format!(
                "work request {wr_id} is already posted"
            )));
        }
        // Kept before posting: the adapter may use the buffer as soon as it is posted.
        self.posted.insert(wr_id, used);
        if let Err(e) = op(&mut self.qp) {
            self.posted.remove(&wr_id);
            return Err(e);
        }
        Ok(())
    }
}

impl RdmaEndpoint {
    /// RDMA Write from, or Read into, `buf[range]` (registered for the operation).
    fn post_rdma(
        &mut self,
        wr_id: u64,
        buf: Vec<u8>,
        range: Range<usize>,
        op: SendOp,
    ) -> Result<(), RdmaError> {
        let mr = register(&self.pd, &buf, range.clone(), AccessFlags::LocalWrite)?;
        let (lkey, addr, n) = (mr.lkey(), mr.get_ptr() as u64, len_u32(range.len())?);
        let used = InUse {
            mr: Some(mr),
            kind: match op {
                SendOp::Read(_) => WorkKind::Read,
                _ => WorkKind::Write,
            },
            len: range.len(),
            buf: WorkBuf::Task(buf),
        };
        self.post(wr_id, used, |qp| post_send_wr(qp, wr_id, lkey, addr, n, op))
    }
}

/// Posts one signaled send-queue work request: `set` picks the operation and `sge` is the
/// local buffer.
fn post_send_wr(
    qp: &mut BasicQueuePair,
    wr_id: u64,
    lkey: u32,
    addr: u64,
    len: u32,
    op: SendOp,
) -> Result<(), RdmaError> {
    let mut guard = qp.start_post_send();
    let wr = guard.construct_wr(wr_id, WorkRequestFlags::Signaled);
    let local = match op {
        SendOp::Send => wr.setup_send(),
        SendOp::Write(remote) => wr.setup_write(remote.stag, remote.base_offset),
        SendOp::Read(remote) => wr.setup_read(remote.stag, remote.base_offset),
    };
    // SAFETY: `addr..addr+len` lies in a buffer registered under `lkey` that the endpoint
    // holds (in `posted`) until this request completes.
    unsafe { local.setup_sge(lkey, addr, len) };
    guard.post().map_err(|e| verbs_err("ibv_post_send", e))
}

#[derive(Clone, Copy)]
enum SendOp {
    Send,
    Write(Stag),
    Read(Stag),
}

fn len_u32(n: usize) -> Result<u32, RdmaError> {
    u32::try_from(n).map_err(|_| RdmaError::Invalid(format!("{n} bytes in one work request")))
}

impl Verbs for RdmaEndpoint {
    type Msg = RdmaMsg;
    type Buf = Vec<u8>;
    type Error = RdmaError;

    fn msg_buf(&mut self, len: usize) -> Result<RdmaMsg, RdmaError> {
        let data = vec![0u8; len.max(1)];
        let mr = register(&self.pd, &data, 0..data.len(), AccessFlags::LocalWrite)?;
        Ok(RdmaMsg { mr, data })
    }

    fn alloc(&mut self, len: usize) -> Result<Vec<u8>, RdmaError> {
        Ok(vec![0u8; len])
    }

    fn expose(&mut self, buf: Vec<u8>, len: usize, access: Access) -> Result<Stag, RdmaError> {
        let flags = match access {
            Access::RemoteRead => AccessFlags::RemoteRead,
            Access::RemoteWrite => AccessFlags::LocalWrite | AccessFlags::RemoteWrite,
        };
        let mr = register(&self.pd, &buf, 0..len, flags)?;
        let stag = Stag {
            stag: mr.rkey(),
            base_offset: mr.get_ptr() as u64,
        };
        let kind = match access {
            Access::RemoteRead => WorkKind::Read,
            Access::RemoteWrite => WorkKind::Write,
        };
        self.exposed.insert(
            stag.stag,
            InUse {
                mr: Some(mr),
                kind,
                len,
                buf: WorkBuf::Task(buf),
            },
        );
        Ok(stag)
    }

    fn revoke(&mut self, stag: u32) -> Option<Vec<u8>> {
        let InUse { mr, buf, .. } = self.exposed.remove(&stag)?;
        drop(mr);
        match buf {
            WorkBuf::Task(b) => Some(b),
            WorkBuf::Msg(_) => None,
        }
    }

    fn post_recv(&mut self, wr_id: u64, buf: RdmaMsg) -> Result<(), RdmaError> {
        let (lkey, addr, len) = (
            buf.mr.lkey(),
            buf.data.as_ptr() as u64,
            len_u32(buf.data.len())?,
        );
        let used = InUse {
            mr: None,
            kind: WorkKind::Recv,
            len: buf.data.len(),
            buf: WorkBuf::Msg(buf),
        };
        self.post(wr_id, used, |qp| {
            let mut guard = qp.start_post_recv();
            let wr = guard.construct_wr(wr_id);
            // SAFETY: the message buffer is registered under `lkey` and held in `posted`
            // until this receive completes.
            unsafe { wr.setup_sge(lkey, addr, len) };
            guard.post().map_err(|e| verbs_err("ibv_post_recv", e))
        })
    }

    fn post_send(&mut self, wr_id: u64, buf: RdmaMsg, len: usize) -> Result<(), RdmaError> {
        if len == 0 || len > buf.data.len() {
            return Err(RdmaError::Invalid(format!(
                "Send of {len} bytes from a {}-byte buffer",
                buf.data.len()
            )));
        }
        let (lkey, addr, n) = (buf.mr.lkey(), buf.data.as_ptr() as u64, len_u32(len)?);
        let used = InUse {
            mr: None,
            kind: WorkKind::Send,
            len,
            buf: WorkBuf::Msg(buf),
        };
        self.post(wr_id, used, |qp| {
            post_send_wr(qp, wr_id, lkey, addr, n, SendOp::Send)
        })
    }

    fn post_write(
        &mut self,
        wr_id: u64,
        buf: Vec<u8>,
        range: Range<usize>,
        remote: Stag,
    ) -> Result<(), RdmaError> {
        self.post_rdma(wr_id, buf, range, SendOp::Write(remote))
    }

    fn post_read(
        &mut self,
        wr_id: u64,
        buf: Vec<u8>,
        range: Range<usize>,
        remote: Stag,
    ) -> Result<(), RdmaError> {
        self.post_rdma(wr_id, buf, range, SendOp::Read(remote))
    }

    async fn poll(&mut self) -> Result<Option<Completion<RdmaMsg, Vec<u8>>>, RdmaError> {
        loop {
            if let Some(c) = self.ready.pop_front() {
                return Ok(Some(c));
            }
            self.drain_cq()?;
            if !self.ready.is_empty() {
                continue;
            }
            self.drain_cm()?;
            if self.closed && self.posted.is_empty() {
                return Ok(None);
            }
            if let Some(why) = &self.stuck {
                // Nothing will flush what is still posted: give up rather than wait forever.
                return Err(RdmaError::Verbs {
                    op: "moving the queue pair to the error state",
                    detail: why.clone(),
                });
            }
            if !self.armed {
                // Arm, then look again: a completion that came in between raises no
                // notification.
                self.arm()?;
                continue;
            }
            if self.take_notification()? {
                continue;
            }
            // Wait for a completion notification or a connection event.
            let (cq_fd, id) = (&self.cq_fd, &self.id);
            poll_fn(|cx| {
                let cq = match cq_fd.poll_read_ready(cx) {
                    Poll::Ready(Ok(mut g)) => {
                        g.clear_ready();
                        Poll::Ready(Ok(()))
                    }
                    Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                    Poll::Pending => Poll::Pending,
                };
                let cm = id.channel().poll_ready(cx);
                match (cq, cm) {
                    (Poll::Ready(Err(e)), _) | (_, Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
                    (Poll::Pending, Poll::Pending) => Poll::Pending,
                    _ => Poll::Ready(Ok(())),
                }
            })
            .await
            .map_err(|source| RdmaError::Os {
                op: "waiting for completions",
                source,
            })?;
        }
    }

    fn disconnect(&mut self) {
        // The queue pair first (what is posted flushes), then the peer is told (librdmacm's
        // order for InfiniBand and RoCE); once each.
        self.close_qp();
        if !self.cm_disconnected {
            self.cm_disconnected = true;
            self.id.disconnect();
        }
    }
}

impl Drop for RdmaEndpoint {
    fn drop(&mut self) {
        self.disconnect();
        // The queue pair goes before the buffers it may still write into (`posted`,
        // `exposed`). sideway panics if destroying it fails; then the adapter may still own
        // those buffers, so they are leaked rather than freed.
        // SAFETY: `qp` is never used again (this is `drop`).
        let qp = unsafe { ManuallyDrop::take(&mut self.qp) };
        let destroyed = std::panic::catch_unwind(AssertUnwindSafe(move || drop(qp))).is_ok();
        if !destroyed {
            std::mem::forget(std::mem::take(&mut self.posted));
            std::mem::forget(std::mem::take(&mut self.exposed));
        }
    }
}

/// Connects to an iSER target at `addr` over RDMA-CM, sending `private_data` (the iSER CM
/// header) with the request. Returns the endpoint (queue pair in RTS) and the target's
/// private data.
pub async fn connect(
    addr: SocketAddr,
    private_data: &[u8],
    cfg: &RdmaConfig,
) -> Result<(RdmaEndpoint, Vec<u8>), RdmaError> {
    let id = Arc::new(CmId::new()?);
    id.resolve(addr, cfg.resolve_timeout).await?;
    let mut ep = build(id.clone(), cfg, Some(addr))?;
    let (resp, init) = read_depths(&ep, cfg);
    let params = ConnParams {
        private_data: private_data.to_vec(),
        responder_resources: resp,
        initiator_depth: init,
        qp_num: ep.qp.qp_number(),
    };
    let ev = id.connect(&params).await?;
    // The response's depths are from our side's point of view (RDMA-CM swaps them): what we
    // serve and what we may issue, never more than we offered.
    let depths = (
        ev.responder_resources.min(resp),
        ev.initiator_depth.min(init),
    );
    modify(&id, &mut ep.qp, ibv_qp_state::IBV_QPS_RTR, depths)?;
    modify(&id, &mut ep.qp, ibv_qp_state::IBV_QPS_RTS, depths)?;
    id.establish()?;
    Ok((ep, ev.private_data))
}

/// An RDMA-CM listener (the target side).
#[derive(Debug)]
pub struct RdmaListener {
    id: CmId,
    addr: SocketAddr,
    cfg: RdmaConfig,
}

impl RdmaListener {
    /// Listens on `addr` (an address of an RDMA-capable interface, or the unspecified
    /// address for all of them).
    pub fn bind(addr: SocketAddr, cfg: RdmaConfig) -> Result<RdmaListener, RdmaError> {
        let id = CmId::new()?;
        id.listen(addr, 128)?;
        Ok(RdmaListener { id, addr, cfg })
    }

    /// The address listened on (with the port RDMA-CM picked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.id.local_addr().unwrap_or(self.addr)
    }

    /// The next connect request.
    pub async fn accept(&mut self) -> Result<RdmaConnectRequest, RdmaError> {
        loop {
            let ev = self.id.channel().next().await?;
            let Some(raw) = ev.new_id else {
                // Nothing else concerns a listener (a device going away ends it below).
                if ev.kind == rdma_mummy_sys::rdma_cm_event_type::RDMA_CM_EVENT_DEVICE_REMOVAL {
                    if let Some(name) = self.id.device_name() {
                        forget_device(&name);
                    }
                    return Err(RdmaError::Device(
                        "the listener's device was removed".into(),
                    ));
                }
                continue;
            };
            let id = CmId::adopt(raw)?;
            return Ok(RdmaConnectRequest {
                id: Arc::new(id),
                private_data: ev.private_data,
                asked_responder_resources: ev.responder_resources,
                asked_initiator_depth: ev.initiator_depth,
                cfg: self.cfg.clone(),
                done: false,
            });
        }
    }
}

/// A connect request at an [`RdmaListener`]: accept or reject it (dropping it rejects).
#[derive(Debug)]
pub struct RdmaConnectRequest {
    id: Arc<CmId>,
    /// The private data the initiator sent (the iSER CM header, padded by the transport).
    pub private_data: Vec<u8>,
    /// The request's RDMA Read depths from our side's point of view (RDMA-CM swaps the
    /// initiator's): the responder resources and the initiator depth it wants of us.
    asked_responder_resources: u8,
    asked_initiator_depth: u8,
    cfg: RdmaConfig,
    done: bool,
}

impl RdmaConnectRequest {
    /// The initiator's address.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.id.peer_addr()
    }

    /// The address the request arrived on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.id.local_addr()
    }

    /// Accepts once `setup` has turned this side's endpoint into what will use it (a
    /// datamover that posts its receives): the receives are in place before the initiator
    /// can send its first Login Request.
    pub fn accept_with<T, E: From<RdmaError>>(
        mut self,
        private_data: &[u8],
        setup: impl FnOnce(RdmaEndpoint) -> Result<T, E>,
    ) -> Result<T, E> {
        self.done = true;
        let peer = self.id.peer_addr();
        let mut ep = match build(self.id.clone(), &self.cfg, peer) {
            Ok(ep) => ep,
            Err(e) => {
                self.id.reject(&[]);
                return Err(e.into());
            }
        };
        let (resp, init) = read_depths(&ep, &self.cfg);
        // Serve at most the reads the initiator will issue, issue at most what it serves.
        let depths = (
            resp.min(self.asked_responder_resources),
            init.min(self.asked_initiator_depth),
        );
        let ready = modify(&self.id, &mut ep.qp, ibv_qp_state::IBV_QPS_RTR, depths)
            .and_then(|()| modify(&self.id, &mut ep.qp, ibv_qp_state::IBV_QPS_RTS, depths));
        if let Err(e) = ready {
            self.id.reject(&[]);
            return Err(e.into());
        }
        let params = ConnParams {
            private_data: private_data.to_vec(),
            responder_resources: depths.0,
            initiator_depth: depths.1,
            qp_num: ep.qp.qp_number(),
        };
        let user = match setup(ep) {
            Ok(u) => u,
            Err(e) => {
                self.id.reject(&[]);
                return Err(e);
            }
        };
        self.id.accept(&params)?;
        Ok(user)
    }

    /// Rejects the connection.
    pub fn reject(mut self) {
        self.done = true;
        self.id.reject(&[]);
    }
}

impl Drop for RdmaConnectRequest {
    fn drop(&mut self) {
        if !self.done {
            self.id.reject(&[]);
        }
    }
}

impl From<RdmaError> for crate::mover::IserError {
    fn from(e: RdmaError) -> Self {
        crate::mover::IserError::Verbs(Box::new(e))
    }
}
