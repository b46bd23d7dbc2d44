//! RDMA-CM (librdmacm) for iSER: event channels, identifiers, address and route resolution,
//! listen, connect and accept **with private data** (the iSER CM header), reject and
//! disconnect. `sideway` wraps librdmacm but keeps the raw identifiers and events to itself
//! and has no private data, so this module calls the library through `rdma-mummy-sys`, the
//! binding layer `sideway` is built on (it loads librdmacm at run time).
//!
//! Every identifier gets its own event channel (an accepted connection's identifier is
//! migrated to a new one), so each connection waits on its own file descriptor. Events are
//! copied out and acknowledged at once: nothing of an event outlives [`EventChannel::next`].

use std::ffi::c_void;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::{NonNull, null, null_mut};
use std::sync::Arc;
use std::time::Duration;

use rdma_mummy_sys::{
    ibv_qp_attr, rdma_accept, rdma_ack_cm_event, rdma_bind_addr, rdma_cm_event, rdma_cm_event_type,
    rdma_cm_id, rdma_conn_param, rdma_connect, rdma_create_event_channel, rdma_create_id,
    rdma_destroy_event_channel, rdma_destroy_id, rdma_disconnect, rdma_establish,
    rdma_event_channel, rdma_get_cm_event, rdma_init_qp_attr, rdma_listen, rdma_migrate_id,
    rdma_port_space, rdma_reject, rdma_resolve_addr, rdma_resolve_route,
};
use tokio::io::unix::AsyncFd;

use super::RdmaError;

/// A file descriptor owned elsewhere (by librdmacm or libibverbs), for [`AsyncFd`].
#[derive(Debug)]
pub(crate) struct BorrowedFd(pub(crate) RawFd);

impl AsRawFd for BorrowedFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Registers `fd` with the tokio reactor.
///
/// # Safety
/// `fd` must stay open (and the same open file) until the returned `AsyncFd` is dropped.
pub(crate) unsafe fn watch(fd: RawFd) -> io::Result<AsyncFd<BorrowedFd>> {
    // Registering outside a runtime panics: say so as an error instead.
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(io::Error::other(
            "RDMA connections must be made inside a tokio runtime with IO enabled",
        ));
    }
    // SAFETY: the caller keeps `fd` open for the lifetime of the registration.
    unsafe { AsyncFd::register(BorrowedFd(fd)) }.map_err(|e| e.into_parts().1)
}

/// Sets `O_NONBLOCK` on `fd`.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we were handed; F_GETFL/F_SETFL take no pointers.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn os_err(op: &'static str) -> RdmaError {
    RdmaError::Os {
        op,
        source: io::Error::last_os_error(),
    }
}

/// What a CM event said, copied out of librdmacm's event before it was acknowledged.
#[derive(Debug)]
pub(crate) struct CmEvent {
    pub kind: u32,
    pub status: i32,
    /// For a connect request: the new identifier (ours to accept, reject or destroy).
    pub new_id: Option<NonNull<rdma_cm_id>>,
    /// Private data of a connect request, a connect response, an established connection or
    /// a reject (a transport pads it: only its start is meaningful).
    pub private_data: Vec<u8>,
    /// The peer's connection parameters (connect requests and responses).
    pub responder_resources: u8,
    pub initiator_depth: u8,
}

impl CmEvent {
    pub fn name(&self) -> &'static str {
        use rdma_cm_event_type::*;
        match self.kind {
            RDMA_CM_EVENT_ADDR_RESOLVED => "ADDR_RESOLVED",
            RDMA_CM_EVENT_ADDR_ERROR => "ADDR_ERROR",
            RDMA_CM_EVENT_ROUTE_RESOLVED => "ROUTE_RESOLVED",
            RDMA_CM_EVENT_ROUTE_ERROR => "ROUTE_ERROR",
            RDMA_CM_EVENT_CONNECT_REQUEST => "CONNECT_REQUEST",
            RDMA_CM_EVENT_CONNECT_RESPONSE => "CONNECT_RESPONSE",
            RDMA_CM_EVENT_CONNECT_ERROR => "CONNECT_ERROR",
            RDMA_CM_EVENT_UNREACHABLE => "UNREACHABLE",
            RDMA_CM_EVENT_REJECTED => "REJECTED",
            RDMA_CM_EVENT_ESTABLISHED => "ESTABLISHED",
            RDMA_CM_EVENT_DISCONNECTED => "DISCONNECTED",
            RDMA_CM_EVENT_DEVICE_REMOVAL => "DEVICE_REMOVAL",
            RDMA_CM_EVENT_TIMEWAIT_EXIT => "TIMEWAIT_EXIT",
            RDMA_CM_EVENT_ADDR_CHANGE => "ADDR_CHANGE",
            _ => "OTHER",
        }
    }

    /// Whether this event ends an established (or establishing) connection.
    pub fn ends_connection(&self) -> bool {
        use rdma_cm_event_type::*;
        matches!(
            self.kind,
            RDMA_CM_EVENT_DISCONNECTED
                | RDMA_CM_EVENT_DEVICE_REMOVAL
                | RDMA_CM_EVENT_CONNECT_ERROR
                | RDMA_CM_EVENT_UNREACHABLE
                | RDMA_CM_EVENT_REJECTED
                | RDMA_CM_EVENT_ADDR_CHANGE
        )
    }
}

/// The librdmacm channel itself (destroyed when dropped).
#[derive(Debug)]
struct RawChannel(NonNull<rdma_event_channel>);

impl Drop for RawChannel {
    fn drop(&mut self) {
        // Every identifier holds an `Arc` of its channel and is destroyed first; every event
        // was acknowledged in `try_next`.
        // SAFETY: the channel is live and no longer used.
        unsafe { rdma_destroy_event_channel(self.0.as_ptr()) };
    }
}

/// An RDMA-CM event channel, readable through tokio.
#[derive(Debug)]
pub(crate) struct EventChannel {
    /// Declared first: deregistered from the reactor before the channel (and its descriptor)
    /// is destroyed, so the reactor never sees a reused descriptor number.
    fd: AsyncFd<BorrowedFd>,
    ch: RawChannel,
}

// SAFETY: an event channel is a file descriptor; librdmacm's calls on it are thread safe,
// and this type hands out no references into it.
unsafe impl Send for EventChannel {}
// SAFETY: as above; `next` takes `&self` and only reads events through librdmacm.
unsafe impl Sync for EventChannel {}

impl EventChannel {
    /// A new channel (non-blocking, registered with the tokio reactor).
    pub fn new() -> Result<Arc<EventChannel>, RdmaError> {
        // SAFETY: no arguments; a null return is an error.
        let ch = unsafe { rdma_create_event_channel() };
        let Some(ch) = NonNull::new(ch) else {
            let source = io::Error::last_os_error();
            if source.raw_os_error() == Some(libc::ENODEV) {
                return Err(RdmaError::Device(
                    "no RDMA device (an adapter's driver, or soft-RoCE: `rdma link add`), or \
                     librdmacm/libibverbs are not installed"
                        .into(),
                ));
            }
            return Err(RdmaError::Os {
                op: "rdma_create_event_channel",
                source,
            });
        };
        let ch = RawChannel(ch);
        // SAFETY: `ch` is a live channel; its first field is the descriptor.
        let raw = unsafe { ch.0.as_ref().fd };
        // SAFETY: `fd` is declared before `ch` in `EventChannel`, so the registration is
        // dropped before the channel closes the descriptor.
        let fd = set_nonblocking(raw)
            .and_then(|()| unsafe { watch(raw) })
            .map_err(|source| RdmaError::Os {
                op: "registering the CM event channel",
                source,
            })?;
        Ok(Arc::new(EventChannel { fd, ch }))
    }

    /// The next event, copied and acknowledged; waits for one.
    pub async fn next(&self) -> Result<CmEvent, RdmaError> {
        loop {
            if let Some(ev) = self.try_next()? {
                return Ok(ev);
            }
            let mut guard = self.fd.readable().await.map_err(|source| RdmaError::Os {
                op: "waiting for a CM event",
                source,
            })?;
            guard.clear_ready();
        }
    }

    /// An event if one is waiting.
    pub fn try_next(&self) -> Result<Option<CmEvent>, RdmaError> {
        let mut ev: *mut rdma_cm_event = null_mut();
        // SAFETY: `self.ch` is live; `ev` receives an event pointer on success.
        let ret = unsafe { rdma_get_cm_event(self.ch.0.as_ptr(), &mut ev) };
        if ret != 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                return Ok(None);
            }
            return Err(RdmaError::Os {
                op: "rdma_get_cm_event",
                source: e,
            });
        }
        // SAFETY: librdmacm returned a valid event; it stays valid until acknowledged below,
        // and everything needed is copied out first.
        let out = unsafe {
            let e = &*ev;
            let conn = e.param.conn;
            let private_data = if conn.private_data.is_null() || conn.private_data_len == 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(
                    conn.private_data.cast::<u8>(),
                    usize::from(conn.private_data_len),
                )
                .to_vec()
            };
            let new_id = (e.event == rdma_cm_event_type::RDMA_CM_EVENT_CONNECT_REQUEST)
                .then(|| NonNull::new(e.id))
                .flatten();
            CmEvent {
                kind: e.event,
                status: e.status,
                new_id,
                private_data,
                responder_resources: conn.responder_resources,
                initiator_depth: conn.initiator_depth,
            }
        };
        // SAFETY: acknowledges the event obtained above, exactly once.
        unsafe { rdma_ack_cm_event(ev) };
        Ok(Some(out))
    }

    /// Readiness of the channel's descriptor, for a caller that waits on several things.
    pub fn poll_ready(&self, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<()>> {
        match self.fd.poll_read_ready(cx) {
            std::task::Poll::Ready(Ok(mut g)) => {
                g.clear_ready();
                std::task::Poll::Ready(Ok(()))
            }
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

/// A `sockaddr` for librdmacm.
struct OsAddr {
    storage: libc::sockaddr_storage,
}

impl OsAddr {
    fn new(addr: SocketAddr) -> OsAddr {
        // SAFETY: an all-zero sockaddr_storage is valid; the family-specific struct is
        // written into its start, which is large and aligned enough for either.
        unsafe {
            let mut storage: libc::sockaddr_storage = std::mem::zeroed();
            match addr {
                SocketAddr::V4(a) => {
                    let sin = &mut *(&mut storage as *mut libc::sockaddr_storage)
                        .cast::<libc::sockaddr_in>();
                    sin.sin_family = libc::AF_INET as libc::sa_family_t;
                    sin.sin_port = a.port().to_be();
                    sin.sin_addr = libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    };
                }
                SocketAddr::V6(a) => {
                    let sin6 = &mut *(&mut storage as *mut libc::sockaddr_storage)
                        .cast::<libc::sockaddr_in6>();
                    sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                    sin6.sin6_port = a.port().to_be();
                    sin6.sin6_flowinfo = a.flowinfo();
                    sin6.sin6_addr = libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    };
                    sin6.sin6_scope_id = a.scope_id();
                }
            }
            OsAddr { storage }
        }
    }

    fn as_mut_ptr(&mut self) -> *mut libc::sockaddr {
        (&mut self.storage as *mut libc::sockaddr_storage).cast()
    }
}

/// The address in `s`, if it is IPv4 or IPv6.
///
/// # Safety
/// `s` must be initialized (any family).
unsafe fn from_os(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    let p = (s as *const libc::sockaddr_storage).cast::<u8>();
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in; storage is large and
            // aligned enough for it.
            let sin = unsafe { &*p.cast::<libc::sockaddr_in>() };
            let ip = std::net::Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &*p.cast::<libc::sockaddr_in6>() };
            let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Connection parameters (RDMA Read depths) and private data for connect and accept.
#[derive(Clone, Debug)]
pub(crate) struct ConnParams {
    pub private_data: Vec<u8>,
    pub responder_resources: u8,
    pub initiator_depth: u8,
    pub qp_num: u32,
}

/// An RDMA-CM identifier with its own event channel.
#[derive(Debug)]
pub(crate) struct CmId {
    id: NonNull<rdma_cm_id>,
    channel: Arc<EventChannel>,
}

// SAFETY: librdmacm's calls on an identifier are thread safe; the pointer is only passed to
// them (and `verbs` read once).
unsafe impl Send for CmId {}
// SAFETY: as above.
unsafe impl Sync for CmId {}

impl Drop for CmId {
    fn drop(&mut self) {
        // SAFETY: the identifier is live; its events were all acknowledged; the channel
        // (held by `self.channel`) outlives this call.
        unsafe { rdma_destroy_id(self.id.as_ptr()) };
    }
}

/// The port space of iSCSI over RDMA-CM (connections addressed like TCP).
const PS_TCP: u32 = rdma_port_space::RDMA_PS_TCP;

impl CmId {
    /// A new identifier on a new event channel.
    pub fn new() -> Result<CmId, RdmaError> {
        let channel = EventChannel::new()?;
        let mut id: *mut rdma_cm_id = null_mut();
        // SAFETY: the channel is live; `id` receives the new identifier.
        let ret = unsafe { rdma_create_id(channel.ch.0.as_ptr(), &mut id, null_mut(), PS_TCP) };
        match NonNull::new(id) {
            Some(id) if ret == 0 => Ok(CmId { id, channel }),
            _ => Err(os_err("rdma_create_id")),
        }
    }

    /// Takes ownership of the identifier of a connect request and moves its events to a
    /// channel of its own.
    pub fn adopt(id: NonNull<rdma_cm_id>) -> Result<CmId, RdmaError> {
        let channel = match EventChannel::new() {
            Ok(c) => c,
            Err(e) => {
                // SAFETY: the request's identifier is ours; nobody else uses it.
                unsafe { rdma_destroy_id(id.as_ptr()) };
                return Err(e);
            }
        };
        // SAFETY: both are live; the request's event was acknowledged already.
        let ret = unsafe { rdma_migrate_id(id.as_ptr(), channel.ch.0.as_ptr()) };
        if ret != 0 {
            let e = os_err("rdma_migrate_id");
            // SAFETY: as above.
            unsafe { rdma_destroy_id(id.as_ptr()) };
            return Err(e);
        }
        Ok(CmId { id, channel })
    }

    pub fn channel(&self) -> &EventChannel {
        &self.channel
    }

    /// Waits for the next event on this identifier's channel and checks it is `want`.
    async fn expect(&self, want: u32, op: &'static str) -> Result<CmEvent, RdmaError> {
        let ev = self.channel.next().await?;
        if ev.kind == want {
            return Ok(ev);
        }
        Err(match ev.kind {
            rdma_cm_event_type::RDMA_CM_EVENT_REJECTED => RdmaError::Rejected {
                status: ev.status,
                private_data: ev.private_data,
            },
            _ => RdmaError::Cm {
                op,
                event: ev.name(),
                status: ev.status,
            },
        })
    }

    /// Resolves `dst` (and the route to it); the identifier is then bound to a device.
    pub async fn resolve(&self, dst: SocketAddr, timeout: Duration) -> Result<(), RdmaError> {
        let ms = i32::try_from(timeout.as_millis())
            .unwrap_or(i32::MAX)
            .max(1);
        let mut dst = OsAddr::new(dst);
        // SAFETY: the identifier is live; `dst` outlives the call (librdmacm copies it).
        let ret = unsafe { rdma_resolve_addr(self.id.as_ptr(), null_mut(), dst.as_mut_ptr(), ms) };
        if ret != 0 {
            return Err(os_err("rdma_resolve_addr"));
        }
        self.expect(
            rdma_cm_event_type::RDMA_CM_EVENT_ADDR_RESOLVED,
            "resolving the address",
        )
        .await?;
        // SAFETY: as above.
        if unsafe { rdma_resolve_route(self.id.as_ptr(), ms) } != 0 {
            return Err(os_err("rdma_resolve_route"));
        }
        self.expect(
            rdma_cm_event_type::RDMA_CM_EVENT_ROUTE_RESOLVED,
            "resolving the route",
        )
        .await?;
        Ok(())
    }

    /// Binds to `addr` and listens.
    pub fn listen(&self, addr: SocketAddr, backlog: i32) -> Result<(), RdmaError> {
        let mut a = OsAddr::new(addr);
        // SAFETY: the identifier is live; `a` outlives the call.
        if unsafe { rdma_bind_addr(self.id.as_ptr(), a.as_mut_ptr()) } != 0 {
            return Err(os_err("rdma_bind_addr"));
        }
        // SAFETY: the identifier is live and bound.
        if unsafe { rdma_listen(self.id.as_ptr(), backlog) } != 0 {
            return Err(os_err("rdma_listen"));
        }
        Ok(())
    }

    /// The name of the RDMA device the identifier is bound to (after resolution, or for a
    /// connect request).
    pub fn device_name(&self) -> Option<String> {
        // SAFETY: the identifier is live; `verbs` is null or a context librdmacm keeps open
        // while the identifier exists; `device` of a live context is valid.
        unsafe {
            let verbs = self.id.as_ref().verbs;
            if verbs.is_null() {
                return None;
            }
            let name = rdma_mummy_sys::ibv_get_device_name((*verbs).device);
            if name.is_null() {
                return None;
            }
            Some(
                std::ffi::CStr::from_ptr(name)
                    .to_string_lossy()
                    .into_owned(),
            )
        }
    }

    /// The peer's address (known once the address is resolved, or for a connect request).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        // SAFETY: the identifier is live; the route's address unions are plain data that
        // librdmacm fills in (zero, AF_INET or AF_INET6 by their family field).
        unsafe { from_os(&self.id.as_ref().route.addr.dst_addr_union.dst_storage) }
    }

    /// Our address on the connection (or the one bound to).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        // SAFETY: as in `peer_addr`.
        unsafe { from_os(&self.id.as_ref().route.addr.src_addr_union.src_storage) }
    }

    /// The queue pair attributes for moving a queue pair of this connection to `state`
    /// (an `ibv_qp_state`), with their mask.
    pub fn qp_attr(&self, state: u32) -> Result<(ibv_qp_attr, i32), RdmaError> {
        // SAFETY: an all-zero ibv_qp_attr is valid input; librdmacm fills it in.
        let mut attr: ibv_qp_attr = unsafe { std::mem::zeroed() };
        attr.qp_state = state;
        let mut mask: i32 = 0;
        // SAFETY: the identifier is live; both out-pointers are valid.
        if unsafe { rdma_init_qp_attr(self.id.as_ptr(), &mut attr, &mut mask) } != 0 {
            return Err(os_err("rdma_init_qp_attr"));
        }
        Ok((attr, mask))
    }

    fn raw_params(p: &ConnParams) -> rdma_conn_param {
        rdma_conn_param {
            private_data: if p.private_data.is_empty() {
                null()
            } else {
                p.private_data.as_ptr().cast::<c_void>()
            },
            private_data_len: u8::try_from(p.private_data.len()).unwrap_or(u8::MAX),
            responder_resources: p.responder_resources,
            initiator_depth: p.initiator_depth,
            flow_control: 1,
            retry_count: 7,
            // 7: retry forever while the peer has no receive posted.
            rnr_retry_count: 7,
            srq: 0,
            qp_num: p.qp_num,
        }
    }

    /// Connects (the queue pair is ours, in INIT); waits for the response and returns its
    /// event (the caller moves the queue pair to RTR and RTS, then calls [`CmId::establish`]).
    pub async fn connect(&self, p: &ConnParams) -> Result<CmEvent, RdmaError> {
        {
            let mut raw = Self::raw_params(p);
            // SAFETY: the identifier is live; `raw` and the private data it points to
            // outlive the call (librdmacm copies them).
            if unsafe { rdma_connect(self.id.as_ptr(), &mut raw) } != 0 {
                return Err(os_err("rdma_connect"));
            }
        }
        self.expect(
            rdma_cm_event_type::RDMA_CM_EVENT_CONNECT_RESPONSE,
            "connecting",
        )
        .await
    }

    /// Completes an active connection after its queue pair reached RTS.
    pub fn establish(&self) -> Result<(), RdmaError> {
        // SAFETY: the identifier is live.
        if unsafe { rdma_establish(self.id.as_ptr()) } != 0 {
            return Err(os_err("rdma_establish"));
        }
        Ok(())
    }

    /// Accepts a connect request (the queue pair is ours, in RTS).
    pub fn accept(&self, p: &ConnParams) -> Result<(), RdmaError> {
        let mut raw = Self::raw_params(p);
        // SAFETY: as in `connect`.
        if unsafe { rdma_accept(self.id.as_ptr(), &mut raw) } != 0 {
            return Err(os_err("rdma_accept"));
        }
        Ok(())
    }

    /// Rejects a connect request.
    pub fn reject(&self, private_data: &[u8]) {
        let len = u8::try_from(private_data.len()).unwrap_or(u8::MAX);
        let ptr = if private_data.is_empty() {
            null()
        } else {
            private_data.as_ptr().cast::<c_void>()
        };
        // SAFETY: the identifier is live; the data outlives the call.
        unsafe { rdma_reject(self.id.as_ptr(), ptr, len) };
    }

    /// Starts a disconnect (the peer sees DISCONNECTED); errors are of no interest.
    pub fn disconnect(&self) {
        // SAFETY: the identifier is live.
        unsafe { rdma_disconnect(self.id.as_ptr()) };
    }
}
