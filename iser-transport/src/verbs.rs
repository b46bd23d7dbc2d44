//! What iSER needs from an RDMA stack: one reliable-connected queue pair, registered memory,
//! and the connection manager's private data.
//!
//! Two kinds of memory: *message buffers* ([`Verbs::Msg`], from [`Verbs::msg_buf`]) carry
//! Sends and receives and are registered once, from a pool the backend keeps; *task buffers*
//! ([`Verbs::Buf`]) hold a command's data and are what RDMA Writes and Reads move, locally
//! or remotely ([`Verbs::expose`]). A backend may register task buffers per operation (the
//! engine hands over the caller's `Vec<u8>`) or hand out pre-registered ones.
//!
//! Ownership replaces the lifetime rules of the verbs API: a buffer handed to a work request
//! (a receive, a Send, the local side of an RDMA Write or Read) belongs to the backend until
//! that request's [`Completion`] hands it back, and a buffer [exposed](Verbs::expose) to the
//! peer belongs to the backend until it is [revoked](Verbs::revoke) (the STag is invalidated
//! then). Safe code can therefore never touch memory the adapter is reading or writing.
//!
//! Completions come back in the order their work requests were posted on each queue (sends,
//! writes and reads on the send queue; receives on the receive queue), as on an RC queue pair.
//! After an error completion the queue pair is in the error state: every request still
//! outstanding completes with [`WcStatus::Flushed`] and the connection is over.

use core::future::Future;
use core::ops::Range;

use iscsi_proto::datamover::DataBuffer;

use crate::header::Stag;

/// What a work request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkKind {
    /// A receive (a peer's Send arrived into it).
    Recv,
    /// A Send.
    Send,
    /// An RDMA Write into the peer's memory.
    Write,
    /// An RDMA Read from the peer's memory.
    Read,
}

/// How a work request ended (the subset of `ibv_wc_status` iSER tells apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WcStatus {
    /// Done.
    Success,
    /// The queue pair went to the error state before this request ran.
    Flushed,
    /// The peer had no receive posted for a Send (receiver not ready; retries exhausted).
    ReceiverNotReady,
    /// The peer refused an RDMA access: unknown or invalidated STag, out of bounds, or no
    /// permission for the operation.
    RemoteAccess,
    /// A received message did not fit the posted receive buffer.
    LocalLength,
    /// Any other failure (transport retries exhausted, peer gone...).
    Fatal,
}

/// The buffer a work request was given: a message buffer (receives, Sends) or a task buffer
/// (RDMA Writes and Reads).
#[derive(Debug)]
pub enum WorkBuf<M, B> {
    /// A message buffer.
    Msg(M),
    /// A task buffer.
    Task(B),
}

impl<T> WorkBuf<T, T> {
    /// The buffer, when both kinds are the same type.
    pub fn into_inner(self) -> T {
        match self {
            WorkBuf::Msg(b) | WorkBuf::Task(b) => b,
        }
    }
}

/// One finished work request, with the buffer it was given.
#[derive(Debug)]
pub struct Completion<M, B> {
    /// The caller's identifier of the request.
    pub wr_id: u64,
    /// Which kind of request.
    pub kind: WorkKind,
    /// How it ended.
    pub status: WcStatus,
    /// Bytes received (receives) or transferred (the others).
    pub len: usize,
    /// The buffer handed over with the request.
    pub buf: WorkBuf<M, B>,
}

/// What the peer may do with exposed memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// The peer RDMA-Reads it (the data-out of a write command).
    RemoteRead,
    /// The peer RDMA-Writes it (the data-in of a read command).
    RemoteWrite,
}

/// One connected RDMA endpoint (an RC queue pair with its completion queue).
pub trait Verbs: Send + 'static {
    /// Registered memory for Sends and receives.
    type Msg: DataBuffer;
    /// Task memory: what RDMA Writes and Reads move.
    type Buf: DataBuffer;
    /// A failure that ends the connection.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A message buffer of at least `len` bytes (from the backend's registered pool).
    fn msg_buf(&mut self, len: usize) -> Result<Self::Msg, Self::Error>;

    /// A zeroed task buffer of `len` bytes.
    fn alloc(&mut self, len: usize) -> Result<Self::Buf, Self::Error>;

    /// Lets the peer access `buf[..len]` as `access` says; returns the STag and base address
    /// to advertise. The buffer stays with the backend until [`Verbs::revoke`].
    fn expose(&mut self, buf: Self::Buf, len: usize, access: Access) -> Result<Stag, Self::Error>;

    /// Invalidates an STag from [`Verbs::expose`] and returns its buffer (`None` for an STag
    /// that is not exposed). Later peer accesses through it fail with
    /// [`WcStatus::RemoteAccess`].
    fn revoke(&mut self, stag: u32) -> Option<Self::Buf>;

    /// Posts a receive: the next Send of the peer lands in `buf`.
    fn post_recv(&mut self, wr_id: u64, buf: Self::Msg) -> Result<(), Self::Error>;

    /// Sends `buf[..len]` to the peer's next posted receive.
    fn post_send(&mut self, wr_id: u64, buf: Self::Msg, len: usize) -> Result<(), Self::Error>;

    /// RDMA Write of `buf[range]` to the peer's memory at `remote.base_offset` (an address
    /// inside memory the peer exposed as `remote.stag`).
    fn post_write(
        &mut self,
        wr_id: u64,
        buf: Self::Buf,
        range: Range<usize>,
        remote: Stag,
    ) -> Result<(), Self::Error>;

    /// RDMA Read into `buf[range]` from the peer's memory at `remote.base_offset`.
    fn post_read(
        &mut self,
        wr_id: u64,
        buf: Self::Buf,
        range: Range<usize>,
        remote: Stag,
    ) -> Result<(), Self::Error>;

    /// The next completion. Cancel-safe. `Ok(None)` once the connection is closed and every
    /// request has completed.
    #[allow(clippy::type_complexity)]
    fn poll(
        &mut self,
    ) -> impl Future<Output = Result<Option<Completion<Self::Msg, Self::Buf>>, Self::Error>> + Send;

    /// Disconnects: outstanding requests complete with [`WcStatus::Flushed`], the peer sees
    /// the connection end.
    fn disconnect(&mut self);
}
