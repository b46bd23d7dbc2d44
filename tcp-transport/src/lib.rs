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
//!   whenever the socket is writable, so reading and writing never block each other.
//!   `TCP_NODELAY` is set: a PDU is never held back waiting for an ACK.
//! - **Put_Data** cuts the data-in into Data-In PDUs of at most the initiator's
//!   MaxRecvDataSegmentLength, ends each MaxBurstLength sequence with the F bit, and carries
//!   the status in the last one when the session allows it.
//! - **Get_Data** sends one R2T per requested transfer.
//! - **Backpressure.** While more than 32 MiB of output waits for the peer, no input is read.
//!
//! ## Copies of a payload
//! - Data-In (target reads): **0** copies in this crate; the task buffer becomes a `Bytes`
//!   and its slices go to `writev`.
//! - Data-Out (target writes): **1** copy, from the receive buffer into the task buffer (the
//!   socket read itself lands in the receive buffer).
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use iscsi_proto::datamover::{DataError, Datamover, GetData, Notify, PutData};
use iscsi_proto::pdu::{DataIn, DataOut, Digests, Pdu, R2t, data_trailer};
use iscsi_proto::serial::{DataSn, Itt, Ttt};
use iscsi_proto::text::{Digest, NegotiatedParams, Role};
use iscsi_proto::{Deframer, DeframerConfig};
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

/// Buffers kept for reuse per connection.
const POOL_BUFFERS: usize = 64;
/// Largest buffer kept for reuse.
const POOL_MAX_LEN: usize = 1 << 20;

/// Task buffers returned after their data-in went out, reused by [`Datamover::alloc`]: a
/// fresh large allocation costs an `mmap`, page faults and an `munmap` per command.
#[derive(Clone, Debug, Default)]
struct Pool(Arc<Mutex<Vec<Vec<u8>>>>);

impl Pool {
    fn take(&self, len: usize) -> Vec<u8> {
        let reused = {
            let mut free = self.0.lock().unwrap_or_else(|e| e.into_inner());
            // The smallest buffer that fits, so that small commands leave large buffers for
            // large ones.
            let i = free
                .iter()
                .enumerate()
                .filter(|(_, b)| b.capacity() >= len)
                .min_by_key(|(_, b)| b.capacity())
                .map(|(i, _)| i);
            i.map(|i| free.swap_remove(i))
        };
        match reused {
            Some(mut v) => {
                v.clear();
                v.resize(len, 0);
                v
            }
            // A fresh zeroed allocation: large ones come from the kernel's zero pages, touched
            // only where data lands (a hostile expected length costs no memset).
            None => vec![0; len],
        }
    }

    fn give(&self, v: Vec<u8>) {
        if v.capacity() > POOL_MAX_LEN {
            return;
        }
        let mut free = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < POOL_BUFFERS {
            free.push(v);
        }
    }
}

/// A buffer on its way out as `Bytes`; back to the pool when the last slice is written.
struct Pooled {
    buf: Vec<u8>,
    pool: Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

/// A solicited transfer in progress.
#[derive(Debug)]
struct Transfer {
    itt: Itt,
    offset: u32,
    len: u32,
    received: u32,
    next_data_sn: u32,
    /// A PDU of this transfer was lost to a data digest error.
    spoiled: bool,
}

/// An iSCSI connection over TCP.
#[derive(Debug)]
pub struct TcpDatamover {
    stream: TcpStream,
    role: Role,
    deframer: Deframer,
    send_digests: Digests,
    out: VecDeque<Bytes>,
    out_bytes: usize,
    scratch: BytesMut,
    transfers: HashMap<Ttt, Transfer>,
    /// Task buffers held for Get_Data, with the number of transfers still running.
    buffers: HashMap<Itt, (Vec<u8>, u32)>,
    notes: VecDeque<Notify<Vec<u8>>>,
    eof: bool,
    pool: Pool,
    read_chunk: usize,
    /// Output was written since [`Datamover::output_progress`] last looked.
    progressed: bool,
}

impl TcpDatamover {
    /// Wraps a connected stream (sets `TCP_NODELAY`). `role` is the side we play.
    pub fn new(stream: TcpStream, role: Role) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        Ok(TcpDatamover {
            stream,
            role,
            deframer: Deframer::new(DeframerConfig::default()),
            send_digests: Digests::NONE,
            out: VecDeque::new(),
            out_bytes: 0,
            scratch: BytesMut::with_capacity(16 << 10),
            transfers: HashMap::new(),
            buffers: HashMap::new(),
            notes: VecDeque::new(),
            eof: false,
            pool: Pool::default(),
            read_chunk: LOGIN_READ_CHUNK,
            progressed: false,
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
        while !self.out.is_empty() {
            ready!(self.stream.poll_write_ready(cx))?;
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (slot, b) in iov.iter_mut().zip(self.out.iter()) {
                *slot = IoSlice::new(b);
                n += 1;
            }
            match self.stream.try_write_vectored(&iov[..n]) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Handles one received frame: solicited Data-Out stays here, the rest goes up.
    fn on_frame(&mut self, frame: iscsi_proto::Frame) {
        let pdu = match Pdu::from_frame(&frame) {
            Ok(p) => p,
            Err(error) => {
                self.notes.push_back(Notify::Malformed {
                    header: frame.raw_header(),
                    error,
                });
                return;
            }
        };
        match pdu {
            Pdu::DataOut(d) if !d.ttt.is_reserved() && self.transfers.contains_key(&d.ttt) => {
                self.data_out(d)
            }
            other => self.notes.push_back(Notify::Control(other)),
        }
    }

    fn data_out(&mut self, d: DataOut) {
        let Some(t) = self.transfers.get_mut(&d.ttt) else {
            return;
        };
        let len = u32::try_from(d.data.len()).unwrap_or(u32::MAX);
        let err = if t.itt != d.itt {
            Some(DataError::Range {
                offset: d.buffer_offset,
                len,
            })
        } else if d.data_sn.0 != t.next_data_sn {
            Some(DataError::DataSn {
                expected: t.next_data_sn,
                got: d.data_sn.0,
            })
        } else if d.buffer_offset != t.offset.wrapping_add(t.received) || len > t.len - t.received {
            Some(DataError::Range {
                offset: d.buffer_offset,
                len,
            })
        } else if d.final_ != (t.received + len == t.len) {
            Some(DataError::FinalBit)
        } else {
            None
        };
        let itt = t.itt;
        if let Some(error) = err {
            return self.fail_task(itt, error);
        }
        t.next_data_sn = t.next_data_sn.wrapping_add(1);
        t.received += len;
        let complete = t.received == t.len;
        if let Some((buf, _)) = self.buffers.get_mut(&itt) {
            let start = d.buffer_offset as usize;
            if let Some(dst) = buf.get_mut(start..start + d.data.len()) {
                dst.copy_from_slice(&d.data);
            }
        }
        if complete && t.spoiled {
            return self.fail_task(itt, DataError::DataDigest);
        }
        if complete {
            self.transfers.remove(&d.ttt);
            let done = match self.buffers.get_mut(&itt) {
                Some((_, left)) => {
                    *left = left.saturating_sub(1);
                    *left == 0
                }
                None => false,
            };
            if done && let Some((buf, _)) = self.buffers.remove(&itt) {
                self.notes.push_back(Notify::DataComplete { itt, buf });
            }
        }
    }

    /// A solicited Data-Out whose data digest failed (RFC 7143 §7.8): it still takes its
    /// place in the sequence, and when the sequence ends the task fails with a digest error
    /// (the session answers CHECK CONDITION, PROTOCOL SERVICE CRC ERROR).
    fn spoiled_data_out(&mut self, h: &iscsi_proto::pdu::Bhs) {
        if h.opcode != iscsi_proto::pdu::Opcode::DATA_OUT {
            return;
        }
        let ttt = Ttt(h.w[0]);
        let Some(t) = self.transfers.get_mut(&ttt) else {
            return;
        };
        let (data_sn, offset, len) = (h.w[4], h.w[5], h.data_segment_len);
        if t.itt.0 != h.itt
            || data_sn != t.next_data_sn
            || offset != t.offset.wrapping_add(t.received)
            || len > t.len - t.received
        {
            let itt = t.itt;
            return self.fail_task(itt, DataError::DataDigest);
        }
        t.next_data_sn = t.next_data_sn.wrapping_add(1);
        t.received += len;
        t.spoiled = true;
        if h.final_bit() || t.received == t.len {
            let itt = t.itt;
            self.fail_task(itt, DataError::DataDigest);
        }
    }

    fn fail_task(&mut self, itt: Itt, error: DataError) {
        self.transfers.retain(|_, t| t.itt != itt);
        if let Some((buf, _)) = self.buffers.remove(&itt) {
            self.notes.push_back(Notify::DataFailed { itt, buf, error });
        }
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Notify<Vec<u8>>>>> {
        loop {
            if let Some(n) = self.notes.pop_front() {
                return Poll::Ready(Ok(Some(n)));
            }
            // Whole PDUs already received go up before anything is written, so that the
            // answers to a batch of commands leave in one write.
            match self.deframer.next_frame() {
                Ok(Some(frame)) => {
                    self.on_frame(frame);
                    continue;
                }
                Ok(None) => {}
                Err(e) if e.is_fatal() => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        e.to_string(),
                    )));
                }
                Err(e) => {
                    let digest = matches!(e.error, iscsi_proto::PduError::DataDigest { .. });
                    let header = e.header;
                    self.notes.push_back(Notify::Malformed {
                        header: e.raw_header,
                        error: e.error,
                    });
                    if digest && let Some(h) = header {
                        self.spoiled_data_out(&h);
                    }
                    continue;
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
            let chunk = self.read_chunk;
            let buf = self.deframer.read_buf();
            if buf.capacity() - buf.len() < chunk {
                buf.reserve(chunk);
            }
            match self.stream.try_read_buf(buf) {
                Ok(0) => self.eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Datamover for TcpDatamover {
    type Buffer = Vec<u8>;
    type Error = io::Error;

    fn alloc(&mut self, len: usize) -> Vec<u8> {
        self.pool.take(len)
    }

    fn send_control(&mut self, pdu: Pdu) -> io::Result<()> {
        self.queue(&pdu)
    }

    fn put_data(&mut self, req: PutData, buf: Vec<u8>) -> io::Result<()> {
        let len = (req.len as usize).min(buf.len());
        let data = Bytes::from_owner(Pooled {
            buf,
            pool: self.pool.clone(),
        })
        .slice(..len);
        let seg = req.max_segment_len.max(512) as usize;
        let burst = (req.max_burst_len.max(512) as usize).max(seg);
        let mut resp = req.response;
        let mut offset = 0usize;
        let mut data_sn = 0u32;
        while offset < len {
            let burst_end = ((offset / burst) + 1) * burst;
            let end = (offset + seg).min(len).min(burst_end);
            let last = end == len;
            let with_status = last && req.status_in_data;
            let pdu = DataIn {
                final_: last || end == burst_end,
                status: with_status.then_some(resp.status),
                overflow: with_status && resp.overflow,
                underflow: with_status && resp.underflow,
                residual_count: if with_status { resp.residual_count } else { 0 },
                lun: req.lun,
                itt: req.itt,
                ttt: Ttt::RESERVED,
                stat_sn: if with_status {
                    resp.stat_sn
                } else {
                    Default::default()
                },
                exp_cmd_sn: req.exp_cmd_sn,
                max_cmd_sn: req.max_cmd_sn,
                data_sn: DataSn(data_sn),
                buffer_offset: offset as u32,
                data: data.slice(offset..end),
                ..DataIn::default()
            };
            self.queue(&Pdu::DataIn(pdu))?;
            data_sn += 1;
            offset = end;
        }
        if len == 0 || !req.status_in_data {
            resp.exp_data_sn = DataSn(data_sn);
            self.queue(&Pdu::ScsiResponse(resp))?;
        }
        Ok(())
    }

    fn get_data(&mut self, req: GetData, buf: Vec<u8>) -> io::Result<()> {
        let n = req.r2ts.len() as u32;
        for r in &req.r2ts {
            let pdu = R2t {
                lun: req.lun,
                itt: req.itt,
                ttt: r.ttt,
                stat_sn: req.stat_sn,
                exp_cmd_sn: req.exp_cmd_sn,
                max_cmd_sn: req.max_cmd_sn,
                r2t_sn: r.r2t_sn,
                buffer_offset: r.offset,
                desired_len: r.len,
            };
            self.queue(&Pdu::R2t(pdu))?;
            self.transfers.insert(
                r.ttt,
                Transfer {
                    itt: req.itt,
                    offset: r.offset,
                    len: r.len,
                    received: 0,
                    next_data_sn: 0,
                    spoiled: false,
                },
            );
        }
        if n == 0 {
            self.notes
                .push_back(Notify::DataComplete { itt: req.itt, buf });
        } else {
            self.buffers.insert(req.itt, (buf, n));
        }
        Ok(())
    }

    fn cancel_data(&mut self, itt: Itt) -> Option<Vec<u8>> {
        self.transfers.retain(|_, t| t.itt != itt);
        self.buffers.remove(&itt).map(|(b, _)| b)
    }

    fn output_progress(&mut self) -> bool {
        std::mem::take(&mut self.progressed)
    }

    fn notice_key_values(&mut self, params: &NegotiatedParams) {
        self.read_chunk = READ_CHUNK;
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
