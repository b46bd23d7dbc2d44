//! # iscsi-tcp
//!
//! The iSCSI/TCP datamover (RFC 7143 over TCP) for the [`iscsi_proto`] session cores: a
//! [`Datamover`] over a tokio [`TcpStream`].
//!
//! ## Design overview
//! - **Receive.** Bytes are read from the socket straight into the
//!   [`Deframer`]'s buffer, which cuts them into PDUs (checking digests and bounding the data
//!   segment by our MaxRecvDataSegmentLength before buffering it). Solicited Data-Out PDUs are
//!   checked against the R2T they answer (DataSN, offset, length, F bit) and copied into the
//!   task buffer; every other PDU goes up as [`Notify::Control`].
//! - **Send.** PDUs are queued as `Bytes` segments: the header (with its digest) is encoded
//!   into a reused scratch buffer, the data segment is a slice of the caller's buffer, and the
//!   padding and data digest follow. [`Datamover::recv`] writes the queue with vectored writes
//!   whenever the socket is writable, so reading and writing never block each other; an
//!   initiator's command is written at once by [`Datamover::send_command`] (as far as the
//!   socket takes it without waiting), so each command reaches the target as soon as it exists.
//!   `TCP_NODELAY` is set: a PDU is never held back waiting for an ACK.
//! - **PDUs.** What each datamover operation means in PDUs (Data-In cut at the initiator's
//!   MaxRecvDataSegmentLength with F per MaxBurstLength sequence, R2Ts and the checks of the
//!   Data-Out answering them, an initiator's immediate and unsolicited data, its Data-Out per
//!   R2T and Data-In placement) is [`iscsi_proto::pdu_mover::PduMover`]'s, without IO; this
//!   crate moves its PDUs to and from the socket.
//! - **Backpressure.** While more than 32 MiB of output waits for the peer, no input is read.
//!
//! ## Copies of a payload
//! - Data-In (target reads): **0** copies in this crate; the task buffer becomes a `Bytes`
//!   and its slices go to `writev`.
//! - Data-Out (target writes): **1** copy, from the receive buffer into the task buffer (the
//!   socket read itself lands in the receive buffer).
//! - Initiator writes: **0** copies (immediate data and Data-Out are slices of the task
//!   buffer).
//! - Initiator reads: Data-In PDUs of 16 KiB and more are read from the socket **straight
//!   into the task buffer** at their offset (the socket read is the only copy, as with
//!   `read(2)` into a user buffer; the data digest is computed over the placed bytes), apart
//!   from the part that arrived together with the header; smaller ones are copied once from
//!   the receive buffer (many of them share one read). [`TcpDatamover::direct_bytes`] counts
//!   the bytes placed directly.
#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use iscsi_proto::datamover::{Datamover, GetData, Notify, PutData, SendCommand};
use iscsi_proto::digest::{Crc32c, crc32c_from_wire};
use iscsi_proto::pdu::{DataIn, Digests, Opcode, Pdu, PduError, data_trailer};
use iscsi_proto::pdu_mover::PduMover;
use iscsi_proto::serial::Itt;
use iscsi_proto::text::{Digest, NegotiatedParams, Role};
use iscsi_proto::{Deframer, DeframerConfig};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Most segments handed to one vectored write.
const MAX_IOV: usize = 64;
/// Queued output above which no more input is read, until the peer has taken some: a peer
/// that sends commands but does not read the answers cannot make us buffer without bound.
const OUT_HIGH_WATER: usize = 32 << 20;
/// Room kept free in the receive buffer for one read in full feature phase.
const READ_CHUNK: usize = 64 << 10;
/// The same during login (texts are at most 8 KiB a PDU; idle logins stay small).
const LOGIN_READ_CHUNK: usize = 4 << 10;

/// An iSCSI connection over TCP.
#[derive(Debug)]
pub struct TcpDatamover {
    stream: TcpStream,
    role: Role,
    deframer: Deframer,
    mover: PduMover,
    send_digests: Digests,
    out: VecDeque<Bytes>,
    out_bytes: usize,
    scratch: BytesMut,
    eof: bool,
    read_chunk: usize,
    /// Output was written since [`Datamover::output_progress`] last looked.
    progressed: bool,
    /// A Data-In whose data segment is being read straight into its task buffer.
    direct: Option<Direct>,
    /// Read the next PDU's header alone (the last one was a large Data-In).
    header_reads: bool,
    /// Where the data of a direct Data-In goes if its task was cancelled meanwhile.
    scratch_in: Vec<u8>,
    /// Data-In bytes read straight into task buffers.
    direct_bytes: u64,
}

/// A Data-In placed straight into its task buffer (initiator reads): the socket read
/// lands in the task buffer, so the payload is copied once (kernel to task buffer), as
/// with a plain `read(2)` into a user buffer.
#[derive(Debug)]
struct Direct {
    /// The PDU's header fields (no data).
    pdu: DataIn,
    raw_header: Bytes,
    /// Buffer offset of the data.
    start: usize,
    len: usize,
    /// Data bytes placed so far.
    got: usize,
    /// Padding and data digest.
    trailer: [u8; 8],
    trailer_len: usize,
    trailer_got: usize,
    /// The running data digest, when negotiated.
    crc: Option<Crc32c>,
}

/// Smallest Data-In data segment placed straight into its buffer; smaller ones are buffered
/// with their neighbours (one read for many PDUs beats one copy saved).
const DIRECT_MIN: usize = 16 << 10;
/// A header read: BHS plus header digest.
const HEADER_READ: usize = 48 + 4;

impl TcpDatamover {
    /// Wraps a connected stream (sets `TCP_NODELAY`). `role` is the side we play.
    pub fn new(stream: TcpStream, role: Role) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(TcpDatamover {
            stream,
            role,
            deframer: Deframer::new(DeframerConfig::default()),
            mover: PduMover::new(role),
            send_digests: Digests::NONE,
            out: VecDeque::new(),
            out_bytes: 0,
            scratch: BytesMut::with_capacity(16 << 10),
            eof: false,
            read_chunk: LOGIN_READ_CHUNK,
            progressed: false,
            direct: None,
            header_reads: false,
            scratch_in: Vec::new(),
            direct_bytes: 0,
        })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// Our address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }

    /// Data-In payload bytes that went from the socket straight into task buffers (initiator
    /// reads of large Data-In PDUs), without passing through the receive buffer.
    pub fn direct_bytes(&self) -> u64 {
        self.direct_bytes
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.out_bytes
    }

    fn push_out(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.out_bytes += b.len();
            self.out.push_back(b);
        }
    }

    /// Queues one PDU: header from the scratch buffer, data as given, then the trailer.
    fn queue(&mut self, pdu: &Pdu) -> io::Result<()> {
        pdu.encode_header(&mut self.scratch, self.send_digests)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let data = pdu.data();
        if !data.is_empty() {
            let (trailer, n) = data_trailer(data, self.send_digests.data);
            let head = self.scratch.split().freeze();
            self.push_out(head);
            self.push_out(data.clone());
            self.scratch.extend_from_slice(&trailer[..n]);
        }
        if !self.scratch.is_empty() {
            let rest = self.scratch.split().freeze();
            self.push_out(rest);
        }
        if self.scratch.capacity() < 1024 {
            self.scratch.reserve(16 << 10);
        }
        Ok(())
    }

    /// Writes as much of the queue as the socket takes without waiting.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.write_some() {
                Ok(true) => return Poll::Ready(Ok(())),
                // Not writable (as far as tokio knows, or the socket said so): wait for it.
                // Asking for readiness only now saves a readiness check per write.
                Ok(false) => {
                    ready!(self.stream.poll_write_ready(cx))?;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Writes the queue until it is empty (`true`) or the socket takes no more (`false`),
    /// without waiting and without asking to be woken.
    fn write_some(&mut self) -> io::Result<bool> {
        while !self.out.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (slot, b) in iov.iter_mut().zip(self.out.iter()) {
                *slot = IoSlice::new(b);
                n += 1;
            }
            match self.stream.try_write_vectored(&iov[..n]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut written) => {
                    self.out_bytes -= written;
                    // Progress through a backlog (output still waiting) is a sign of life; a
                    // write the socket took whole (a ping) says nothing about the peer.
                    if self.out_bytes > 0 {
                        self.progressed = true;
                    }
                    while written > 0 {
                        let Some(front) = self.out.front_mut() else {
                            break;
                        };
                        if front.len() <= written {
                            written -= front.len();
                            self.out.pop_front();
                        } else {
                            front.advance(written);
                            written = 0;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Encodes what the mover produced onto the output queue.
    fn drain(&mut self) -> io::Result<()> {
        while let Some(pdu) = self.mover.next_output() {
            self.queue(&pdu)?;
        }
        Ok(())
    }

    /// Handles one received frame.
    fn on_frame(&mut self, frame: iscsi_proto::Frame) {
        match Pdu::from_frame(&frame) {
            Ok(pdu) => self.mover.receive(pdu),
            Err(error) => self.mover.receive_malformed(frame.raw_header(), error),
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Notify<Vec<u8>>>>> {
        loop {
            if let Some(n) = self.mover.next_notify() {
                // Data-Out the mover sent on its own (answers to R2Ts).
                self.drain()?;
                return Poll::Ready(Ok(Some(n)));
            }
            // An initiator's commands leave before more input is handled (a target's answers
            // wait for the whole batch of input, below).
            if self.role == Role::Initiator
                && !self.out.is_empty()
                && let Poll::Ready(Err(e)) = self.poll_write_out(cx)
            {
                return Poll::Ready(Err(e));
            }
            // Whole PDUs already received go up before anything is written, so that the
            // answers to a batch of commands leave in one write.
            if self.direct.is_none() {
                match self.deframer.next_frame() {
                    Ok(Some(frame)) => {
                        self.on_frame(frame);
                        self.drain()?;
                        continue;
                    }
                    Ok(None) => {
                        if self.start_direct() {
                            continue;
                        }
                    }
                    Err(e) if e.is_fatal() => {
                        return Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            e.to_string(),
                        )));
                    }
                    Err(e) => {
                        let digest = matches!(e.error, PduError::DataDigest { .. });
                        match e.header {
                            Some(h) if digest => {
                                self.mover
                                    .receive_data_digest_error(e.raw_header, &h, e.error)
                            }
                            _ => self.mover.receive_malformed(e.raw_header, e.error),
                        }
                        continue;
                    }
                }
            }
            if let Poll::Ready(Err(e)) = self.poll_write_out(cx) {
                return Poll::Ready(Err(e));
            }
            if self.eof {
                return Poll::Ready(Ok(None));
            }
            if self.out_bytes >= OUT_HIGH_WATER {
                // poll_write_out registered for writability: woken when the peer reads.
                return Poll::Pending;
            }
            ready!(self.stream.poll_read_ready(cx))?;
            let read = if self.direct.is_some() {
                self.read_direct()
            } else if self.header_reads {
                // After a large Data-In the next PDU is likely another: read its header
                // alone so that its data can go straight to its buffer.
                let mut head = [0u8; HEADER_READ];
                let n = read_drained(&self.stream, HEADER_READ, || {
                    self.stream.try_read(&mut head)
                });
                if let Ok(n) = n {
                    self.deframer.feed(&head[..n]);
                    self.header_reads = false;
                }
                n
            } else {
                let chunk = self.read_chunk;
                let buf = self.deframer.read_buf();
                if buf.capacity() - buf.len() < chunk {
                    buf.reserve(chunk);
                }
                let spare = buf.capacity() - buf.len();
                read_drained(&self.stream, spare, || self.stream.try_read_buf(buf))
            };
            match read {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Starts placing the data segment of the Data-In at the front of the deframer straight
    /// into its read buffer, when it is large, still arriving, and the mover accepts it.
    fn start_direct(&mut self) -> bool {
        if self.role != Role::Initiator {
            return false;
        }
        let Some(p) = self.deframer.pending_data() else {
            return false;
        };
        let h = p.header;
        let len = h.data_segment_len as usize;
        if h.opcode != Opcode::DATA_IN || h.total_ahs_len != 0 || len < DIRECT_MIN {
            return false;
        }
        let Ok(Pdu::DataIn(d)) = Pdu::decode(&h, &Bytes::new(), Bytes::new()) else {
            return false;
        };
        if !self.mover.accept_data_in(&d, len) {
            return false;
        }
        let Some((p, raw_header, prefix)) = self.deframer.take_pending() else {
            return false;
        };
        let start = d.buffer_offset as usize;
        let mut crc = self.send_digests.data.then(Crc32c::new);
        if let Some(dst) = self
            .mover
            .read_buffer_mut(d.itt, start..start + prefix.len())
        {
            dst.copy_from_slice(&prefix);
        }
        if let Some(c) = crc.as_mut() {
            c.update(&prefix);
        }
        self.direct = Some(Direct {
            pdu: d,
            raw_header,
            start,
            len,
            got: prefix.len(),
            trailer: [0; 8],
            trailer_len: p.trailer,
            trailer_got: 0,
            crc,
        });
        true
    }

    /// Reads more of the direct Data-In: data into the task buffer (or, if the task went
    /// away, into a scratch buffer), then the padding and digest.
    fn read_direct(&mut self) -> io::Result<usize> {
        let Some(d) = self.direct.as_mut() else {
            return Ok(0);
        };
        let n = if d.got < d.len {
            let (from, to) = (d.start + d.got, d.start + d.len);
            let n = match self.mover.read_buffer_mut(d.pdu.itt, from..to) {
                Some(dst) => {
                    let want = dst.len();
                    let n = read_drained(&self.stream, want, || self.stream.try_read(dst))?;
                    if let Some(c) = d.crc.as_mut() {
                        c.update(&dst[..n]);
                    }
                    self.direct_bytes += n as u64;
                    n
                }
                None => {
                    self.scratch_in.resize(READ_CHUNK, 0);
                    let want = (to - from).min(READ_CHUNK);
                    let dst = &mut self.scratch_in[..want];
                    let n = read_drained(&self.stream, want, || self.stream.try_read(dst))?;
                    if let Some(c) = d.crc.as_mut() {
                        c.update(&dst[..n]);
                    }
                    n
                }
            };
            d.got += n;
            n
        } else {
            let n = self
                .stream
                .try_read(&mut d.trailer[d.trailer_got..d.trailer_len])?;
            d.trailer_got += n;
            n
        };
        if n > 0 && d.got == d.len && d.trailer_got == d.trailer_len {
            self.finish_direct();
        }
        Ok(n)
    }

    /// The direct Data-In is complete: check its data digest and report it.
    fn finish_direct(&mut self) {
        let Some(d) = self.direct.take() else {
            return;
        };
        self.header_reads = true;
        if let Some(mut c) = d.crc {
            let pad = d.trailer_len - 4;
            c.update(&d.trailer[..pad]);
            let computed = c.finish();
            let mut wire = [0u8; 4];
            wire.copy_from_slice(&d.trailer[pad..pad + 4]);
            let received = crc32c_from_wire(wire);
            if computed != received {
                return self
                    .mover
                    .receive_malformed(d.raw_header, PduError::DataDigest { computed, received });
            }
        }
        self.mover.receive_placed_data_in(d.pdu);
    }
}

/// Runs one socket read wanting `want` bytes. When it returns fewer (but some), the socket
/// was drained at that moment and its readiness is cleared right away: the read that would
/// only have said EAGAIN is saved (one syscall per wake-up). Readiness that arrives after the
/// read is kept (tokio clears only the readiness it had observed).
fn read_drained(
    stream: &TcpStream,
    want: usize,
    read: impl FnOnce() -> io::Result<usize>,
) -> io::Result<usize> {
    let mut got = None;
    let r = stream.try_io(Interest::READABLE, || {
        let n = read()?;
        got = Some(n);
        if n > 0 && n < want {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(n)
        }
    });
    match got {
        Some(n) => Ok(n),
        None => r,
    }
}

impl Datamover for TcpDatamover {
    type Buffer = Vec<u8>;
    type Error = io::Error;

    fn alloc(&mut self, len: usize) -> io::Result<Vec<u8>> {
        Ok(self.mover.alloc(len))
    }

    fn send_control(&mut self, pdu: Pdu) -> io::Result<()> {
        self.mover.send_control(pdu);
        self.drain()
    }

    fn put_data(&mut self, req: PutData, buf: Vec<u8>) -> io::Result<()> {
        self.mover.put_data(req, buf);
        self.drain()
    }

    fn get_data(&mut self, req: GetData, buf: Vec<u8>) -> io::Result<()> {
        self.mover.get_data(req, buf);
        self.drain()
    }

    fn send_command(&mut self, req: SendCommand, buf: Option<Vec<u8>>) -> io::Result<()> {
        self.mover.send_command(req, buf);
        self.drain()?;
        // The command leaves now, in its own write, whatever the caller does next (the
        // engine hands over every waiting command before it looks at input again). What the
        // socket does not take is written by `recv`.
        self.write_some()?;
        Ok(())
    }

    fn cancel_data(&mut self, itt: Itt) -> Option<Vec<u8>> {
        self.mover.cancel_data(itt)
    }

    fn output_progress(&mut self) -> bool {
        std::mem::take(&mut self.progressed)
    }

    fn notice_key_values(&mut self, params: &NegotiatedParams) {
        self.read_chunk = READ_CHUNK;
        self.mover.notice_key_values(params);
        self.send_digests = Digests {
            header: params.header_digest == Digest::Crc32c,
            data: params.data_digest == Digest::Crc32c,
        };
        self.deframer.set_config(DeframerConfig {
            digests: self.send_digests,
            max_data_segment_len: params.max_recv_data_segment_length(self.role),
        });
    }

    async fn recv(&mut self) -> io::Result<Option<Notify<Vec<u8>>>> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_out(cx)).await
    }
}
