//! The PDU half of a byte-stream datamover (iSCSI/TCP), sans-IO, for both roles.
//!
//! A [`PduMover`] turns the [`Datamover`](crate::datamover::Datamover) operations into PDUs
//! and incoming PDUs into [`Notify`] reports; a transport only frames bytes around it
//! (`iscsi-tcp` encodes [`PduMover::next_output`] onto its socket and feeds what the
//! [`Deframer`](crate::Deframer) cuts to [`PduMover::receive`]). Keeping it apart from IO lets
//! the session cores be tested against each other in memory with the exact PDU traffic a TCP
//! connection carries.
//!
//! Target role:
//! - Put_Data becomes Data-In PDUs of at most the initiator's MaxRecvDataSegmentLength, each
//!   MaxBurstLength sequence ending with the F bit, the status in the last one when allowed.
//! - Get_Data becomes one R2T per transfer; the answering Data-Out PDUs are checked (DataSN,
//!   offset, length, F bit, task) and copied into the task buffer.
//!
//! Initiator role:
//! - [`PduMover::send_command`] sends the SCSI Command with its immediate data, then the
//!   unsolicited Data-Out PDUs, and keeps the task's buffer: R2Ts are answered with Data-Out
//!   PDUs cut from it, and Data-In PDUs are checked (DataSN, offset, bounds) and copied into
//!   it at their buffer offset.
//! - When the status arrives (a SCSI Response, or a Data-In with the S bit, which is turned
//!   into the equivalent SCSI Response) the task's buffer goes back first in
//!   [`Notify::DataComplete`] or [`Notify::DataFailed`], then the response as
//!   [`Notify::Control`].
//! - Data PDUs it consumes report the CmdSN window they carry in [`Notify::Window`].
//!
//! Anything it cannot place (a Data-In or R2T for a task it does not hold, an R2T outside the
//! buffer) goes up as [`Notify::Control`] for the session core to judge.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::datamover::{DataError, GetData, Notify, PutData, SendCommand};
use crate::pdu::{Bhs, DataIn, DataOut, Lun, Opcode, Pdu, PduError, R2t, ScsiResponse};
use crate::serial::{CmdSn, DataSn, Itt, StatSn, TagMap, Ttt};
use crate::text::{NegotiatedParams, Role};

/// Buffers kept for reuse per connection.
const POOL_BUFFERS: usize = 64;
/// Largest buffer kept for reuse.
const POOL_MAX_LEN: usize = 1 << 20;

/// Task buffers given back after their data went out, reused by [`PduMover::alloc`]: a fresh
/// large allocation costs an `mmap`, page faults and an `munmap` per command.
#[derive(Clone, Debug, Default)]
pub struct Pool(Arc<Mutex<Vec<Vec<u8>>>>);

impl Pool {
    /// A zeroed buffer of `len` bytes, reused when one is free.
    pub fn take(&self, len: usize) -> Vec<u8> {
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

    /// Keeps `v` for reuse (if it is not too large and the pool not full).
    pub fn give(&self, v: Vec<u8>) {
        if v.capacity() > POOL_MAX_LEN {
            return;
        }
        let mut free = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if free.len() < POOL_BUFFERS {
            free.push(v);
        }
    }

    /// `v` as `Bytes` without a copy; it returns to the pool when the last slice is dropped.
    pub fn into_bytes(&self, v: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf: v,
            pool: self.clone(),
        })
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

/// Target role: a solicited transfer in progress.
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

/// Initiator role: a command whose data-in lands in `buf`.
#[derive(Debug)]
struct ReadTask {
    buf: Vec<u8>,
    next_data_sn: u32,
    error: Option<DataError>,
}

/// Initiator role: a command whose data-out comes from `data`, slices of `buf`.
#[derive(Debug)]
struct WriteTask {
    lun: Lun,
    data: Bytes,
    buf: Arc<Vec<u8>>,
}

impl WriteTask {
    /// The buffer back: without a copy once every PDU cut from it has been written (always
    /// the case when the status has arrived), copied otherwise (a task cancelled while its
    /// Data-Out still waits in the output queue).
    fn into_buffer(self) -> Vec<u8> {
        drop(self.data);
        Arc::try_unwrap(self.buf).unwrap_or_else(|shared| (*shared).clone())
    }
}

/// A write buffer lent to the PDUs that carry it.
struct Lent(Arc<Vec<u8>>);

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The PDU datamover core (see the module documentation).
#[derive(Debug)]
pub struct PduMover {
    role: Role,
    out: VecDeque<Pdu>,
    notes: VecDeque<Notify<Vec<u8>>>,
    pool: Pool,
    /// Largest data segment the peer accepts.
    send_segment: u32,
    max_burst: u32,
    // Target role.
    transfers: TagMap<Ttt, Transfer>,
    /// Task buffers held for Get_Data, with the number of transfers still running.
    buffers: TagMap<Itt, (Vec<u8>, u32)>,
    // Initiator role.
    reads: TagMap<Itt, ReadTask>,
    writes: TagMap<Itt, WriteTask>,
    /// ExpStatSN of the last PDU we sent (for the Data-Out PDUs we send on our own).
    exp_stat_sn: StatSn,
    /// The CmdSN window last seen on a PDU (reported again only when it changes).
    window: Option<(CmdSn, CmdSn)>,
}

impl PduMover {
    /// A mover for the side `role`, with the RFC's default lengths until
    /// [`PduMover::notice_key_values`].
    pub fn new(role: Role) -> Self {
        let params = NegotiatedParams::default();
        PduMover {
            role,
            out: VecDeque::new(),
            notes: VecDeque::new(),
            pool: Pool::default(),
            send_segment: params.max_send_data_segment_length(role),
            max_burst: params.max_burst_length,
            transfers: TagMap::default(),
            buffers: TagMap::default(),
            reads: TagMap::default(),
            writes: TagMap::default(),
            exp_stat_sn: StatSn(0),
            window: None,
        }
    }

    /// The side this mover plays.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The next PDU to put on the wire.
    pub fn next_output(&mut self) -> Option<Pdu> {
        self.out.pop_front()
    }

    /// The next report for the session core.
    pub fn next_notify(&mut self) -> Option<Notify<Vec<u8>>> {
        self.notes.pop_front()
    }

    /// Whether reports are waiting.
    pub fn has_notify(&self) -> bool {
        !self.notes.is_empty()
    }

    /// Allocate_Task_Resources: a zeroed buffer (from the pool when one is free).
    pub fn alloc(&mut self, len: usize) -> Vec<u8> {
        self.pool.take(len)
    }

    /// The buffer pool (shared with whoever turns buffers into `Bytes`).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Notice_Key_Values: the negotiated lengths.
    pub fn notice_key_values(&mut self, params: &NegotiatedParams) {
        self.send_segment = params.max_send_data_segment_length(self.role).max(512);
        self.max_burst = params.max_burst_length.max(512);
    }

    /// Send_Control: queue a PDU as it is.
    pub fn send_control(&mut self, pdu: Pdu) {
        self.note_exp_stat_sn(&pdu);
        self.out.push_back(pdu);
    }

    fn note_exp_stat_sn(&mut self, pdu: &Pdu) {
        let e = match pdu {
            Pdu::ScsiCommand(c) => c.exp_stat_sn,
            Pdu::NopOut(n) => n.exp_stat_sn,
            Pdu::TaskMgmtRequest(t) => t.exp_stat_sn,
            Pdu::TextRequest(t) => t.exp_stat_sn,
            Pdu::LogoutRequest(l) => l.exp_stat_sn,
            _ => return,
        };
        self.exp_stat_sn = e;
    }

    /// Target role, Put_Data: Data-In PDUs for the first `req.len` bytes of `buf`, then the
    /// status (in the last Data-In when allowed).
    pub fn put_data(&mut self, req: PutData, buf: Vec<u8>) {
        let len = (req.len as usize).min(buf.len());
        let data = self.pool.into_bytes(buf).slice(..len);
        // A sequence never exceeds MaxBurstLength, so neither does a PDU of it.
        let burst = req.max_burst_len.max(512) as usize;
        let seg = (req.max_segment_len.max(512) as usize).min(burst);
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
            self.out.push_back(Pdu::DataIn(pdu));
            data_sn += 1;
            offset = end;
        }
        if len == 0 || !req.status_in_data {
            resp.exp_data_sn = DataSn(data_sn);
            self.out.push_back(Pdu::ScsiResponse(resp));
        }
    }

    /// Target role, Get_Data: one R2T per transfer; the buffer is kept until the Data-Out
    /// PDUs have filled it.
    pub fn get_data(&mut self, req: GetData, buf: Vec<u8>) {
        let n = req.r2ts.len() as u32;
        for r in &req.r2ts {
            self.out.push_back(Pdu::R2t(R2t {
                lun: req.lun,
                itt: req.itt,
                ttt: r.ttt,
                stat_sn: req.stat_sn,
                exp_cmd_sn: req.exp_cmd_sn,
                max_cmd_sn: req.max_cmd_sn,
                r2t_sn: r.r2t_sn,
                buffer_offset: r.offset,
                desired_len: r.len,
            }));
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
    }

    /// Initiator role: the SCSI Command with its immediate data, then its unsolicited
    /// Data-Out PDUs; `buf` (the data-out of a write, the room for the data-in of a read) is
    /// kept until the status arrives.
    pub fn send_command(&mut self, req: SendCommand, buf: Option<Vec<u8>>) {
        let mut cmd = req.command;
        let itt = cmd.itt;
        let lun = cmd.lun;
        self.exp_stat_sn = cmd.exp_stat_sn;
        let Some(buf) = buf else {
            cmd.data = Bytes::new();
            self.out.push_back(Pdu::ScsiCommand(cmd));
            return;
        };
        if cmd.read && !cmd.write {
            cmd.data = Bytes::new();
            self.reads.insert(
                itt,
                ReadTask {
                    buf,
                    next_data_sn: 0,
                    error: None,
                },
            );
            self.out.push_back(Pdu::ScsiCommand(cmd));
            return;
        }
        let len = (cmd.expected_data_len as usize).min(buf.len());
        let buf = Arc::new(buf);
        let data = Bytes::from_owner(Lent(buf.clone())).slice(..len);
        let imm = (req.immediate_len as usize).min(len);
        let unsol = (req.unsolicited_len as usize).clamp(imm, len);
        cmd.data = data.slice(..imm);
        let exp_stat_sn = cmd.exp_stat_sn;
        self.out.push_back(Pdu::ScsiCommand(cmd));
        if unsol > imm {
            self.data_out_sequence(itt, lun, Ttt::RESERVED, exp_stat_sn, &data, imm, unsol);
        }
        self.writes.insert(itt, WriteTask { lun, data, buf });
    }

    /// Data-Out PDUs for `data[start..end]`, DataSN from 0, F on the last.
    #[allow(clippy::too_many_arguments)]
    fn data_out_sequence(
        &mut self,
        itt: Itt,
        lun: Lun,
        ttt: Ttt,
        exp_stat_sn: StatSn,
        data: &Bytes,
        start: usize,
        end: usize,
    ) {
        let seg = self.send_segment as usize;
        let mut offset = start;
        let mut data_sn = 0u32;
        while offset < end {
            let stop = (offset + seg).min(end);
            self.out.push_back(Pdu::DataOut(DataOut {
                final_: stop == end,
                lun,
                itt,
                ttt,
                exp_stat_sn,
                data_sn: DataSn(data_sn),
                buffer_offset: offset as u32,
                data: data.slice(offset..stop),
            }));
            data_sn += 1;
            offset = stop;
        }
    }

    /// Deallocate_Task_Resources: forget a task's data transfers and give its buffer back.
    pub fn cancel_data(&mut self, itt: Itt) -> Option<Vec<u8>> {
        self.transfers.retain(|_, t| t.itt != itt);
        if let Some(w) = self.writes.remove(&itt) {
            return Some(w.into_buffer());
        }
        if let Some(r) = self.reads.remove(&itt) {
            return Some(r.buf);
        }
        self.buffers.remove(&itt).map(|(b, _)| b)
    }

    /// A PDU that did not decode: reported as [`Notify::Malformed`].
    pub fn receive_malformed(&mut self, header: Bytes, error: PduError) {
        self.notes.push_back(Notify::Malformed { header, error });
    }

    /// A PDU whose header was sound but whose data digest failed (RFC 7143 §7.8). Reported as
    /// [`Notify::Malformed`]; a solicited Data-Out still takes its place in its sequence, and
    /// the task fails with [`DataError::DataDigest`] when the sequence ends.
    pub fn receive_data_digest_error(&mut self, raw_header: Bytes, header: &Bhs, error: PduError) {
        self.notes.push_back(Notify::Malformed {
            header: raw_header,
            error,
        });
        if header.opcode != Opcode::DATA_OUT || self.role != Role::Target {
            return;
        }
        let ttt = Ttt(header.w[0]);
        let Some(t) = self.transfers.get_mut(&ttt) else {
            return;
        };
        let (data_sn, offset, len) = (header.w[4], header.w[5], header.data_segment_len);
        if t.itt.0 != header.itt
            || data_sn != t.next_data_sn
            || offset != t.offset.wrapping_add(t.received)
            || len > t.len - t.received
        {
            let itt = t.itt;
            return self.fail_transfer(itt, DataError::DataDigest);
        }
        t.next_data_sn = t.next_data_sn.wrapping_add(1);
        t.received += len;
        t.spoiled = true;
        if header.final_bit() || t.received == t.len {
            let itt = t.itt;
            self.fail_transfer(itt, DataError::DataDigest);
        }
    }

    /// A PDU from the peer.
    pub fn receive(&mut self, pdu: Pdu) {
        match (self.role, pdu) {
            (Role::Target, Pdu::DataOut(d))
                if !d.ttt.is_reserved() && self.transfers.contains_key(&d.ttt) =>
            {
                self.data_out(d)
            }
            (Role::Initiator, Pdu::DataIn(d)) if self.reads.contains_key(&d.itt) => self.data_in(d),
            (Role::Initiator, Pdu::R2t(r)) if self.r2t_fits(&r) => self.r2t(r),
            (Role::Initiator, Pdu::ScsiResponse(r)) => self.response(r),
            (_, other) => {
                if let Some(w) = window_of(&other) {
                    self.window = Some(w);
                }
                self.notes.push_back(Notify::Control(other))
            }
        }
    }

    fn note_window(&mut self, exp: CmdSn, max: CmdSn) {
        if self.window != Some((exp, max)) {
            self.window = Some((exp, max));
            self.notes.push_back(Notify::Window {
                exp_cmd_sn: exp,
                max_cmd_sn: max,
            });
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
            return self.fail_transfer(itt, error);
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
            return self.fail_transfer(itt, DataError::DataDigest);
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

    fn fail_transfer(&mut self, itt: Itt, error: DataError) {
        self.transfers.retain(|_, t| t.itt != itt);
        if let Some((buf, _)) = self.buffers.remove(&itt) {
            self.notes.push_back(Notify::DataFailed { itt, buf, error });
        }
    }

    /// Initiator role: whether a Data-In of `len` data bytes for a read we hold may be placed
    /// straight into the task's buffer by the transport (its DataSN is the next one and its
    /// range lies inside the buffer); then [`PduMover::read_buffer_mut`] gives the buffer and
    /// [`PduMover::receive_placed_data_in`] reports the PDU.
    pub fn accept_data_in(&self, d: &DataIn, len: usize) -> bool {
        self.role == Role::Initiator
            && self.reads.get(&d.itt).is_some_and(|t| {
                t.error.is_none()
                    && d.data_sn.0 == t.next_data_sn
                    && (d.buffer_offset as usize)
                        .checked_add(len)
                        .is_some_and(|end| end <= t.buf.len())
            })
    }

    /// Bytes `range` of the buffer of a read we hold (for a transport placing Data-In into
    /// it); `None` if the task is gone or the range is not inside its buffer.
    pub fn read_buffer_mut(&mut self, itt: Itt, range: Range<usize>) -> Option<&mut [u8]> {
        self.reads.get_mut(&itt)?.buf.get_mut(range)
    }

    /// A Data-In whose data the transport placed into the task buffer itself (`d.data` is
    /// empty), after [`PduMover::accept_data_in`]. If the task was cancelled meanwhile the PDU
    /// goes up as [`Notify::Control`] like any Data-In for a task we do not hold.
    pub fn receive_placed_data_in(&mut self, d: DataIn) {
        if self.reads.contains_key(&d.itt) {
            self.data_in_at(d, true);
        } else {
            self.note_window(d.exp_cmd_sn, d.max_cmd_sn);
            self.notes.push_back(Notify::Control(Pdu::DataIn(d)));
        }
    }

    /// Initiator role: a Data-In for a read we hold. Placed at its offset; a DataSN gap or
    /// data outside the buffer spoils the task (its status then comes with
    /// [`Notify::DataFailed`]).
    fn data_in(&mut self, d: DataIn) {
        self.data_in_at(d, false);
    }

    fn data_in_at(&mut self, d: DataIn, placed: bool) {
        self.note_window(d.exp_cmd_sn, d.max_cmd_sn);
        let Some(t) = self.reads.get_mut(&d.itt) else {
            return;
        };
        let len = d.data.len();
        if t.error.is_none() && !placed {
            let start = d.buffer_offset as usize;
            if d.data_sn.0 != t.next_data_sn {
                t.error = Some(DataError::DataSn {
                    expected: t.next_data_sn,
                    got: d.data_sn.0,
                });
            } else if let Some(dst) = start
                .checked_add(len)
                .and_then(|end| t.buf.get_mut(start..end))
            {
                dst.copy_from_slice(&d.data);
            } else {
                t.error = Some(DataError::Range {
                    offset: d.buffer_offset,
                    len: u32::try_from(len).unwrap_or(u32::MAX),
                });
            }
        }
        t.next_data_sn = t.next_data_sn.wrapping_add(1);
        if let Some(status) = d.status {
            let resp = ScsiResponse {
                overflow: d.overflow,
                underflow: d.underflow,
                status,
                itt: d.itt,
                stat_sn: d.stat_sn,
                exp_cmd_sn: d.exp_cmd_sn,
                max_cmd_sn: d.max_cmd_sn,
                exp_data_sn: DataSn(d.data_sn.0.wrapping_add(1)),
                residual_count: d.residual_count,
                ..ScsiResponse::default()
            };
            self.window = Some((d.exp_cmd_sn, d.max_cmd_sn));
            self.response(resp);
        }
    }

    /// Whether an R2T asks for data a write we hold can give, under a valid TTT.
    fn r2t_fits(&self, r: &R2t) -> bool {
        let Some(w) = self.writes.get(&r.itt) else {
            return false;
        };
        let end = u64::from(r.buffer_offset) + u64::from(r.desired_len);
        // The reserved TTT would make our answer look like unsolicited data.
        !r.ttt.is_reserved()
            && r.desired_len > 0
            && r.desired_len <= self.max_burst
            && end <= w.data.len() as u64
    }

    /// Initiator role: answer an R2T with Data-Out PDUs cut from the task's data.
    fn r2t(&mut self, r: R2t) {
        self.note_window(r.exp_cmd_sn, r.max_cmd_sn);
        let Some(w) = self.writes.get(&r.itt) else {
            return;
        };
        let (lun, data) = (w.lun, w.data.clone());
        let start = r.buffer_offset as usize;
        let end = start + r.desired_len as usize;
        let exp_stat_sn = self.exp_stat_sn;
        self.data_out_sequence(r.itt, lun, r.ttt, exp_stat_sn, &data, start, end);
    }

    /// Initiator role: a task's status. Its buffer goes back first.
    fn response(&mut self, r: ScsiResponse) {
        self.window = Some((r.exp_cmd_sn, r.max_cmd_sn));
        if let Some(w) = self.writes.remove(&r.itt) {
            let buf = w.into_buffer();
            self.notes
                .push_back(Notify::DataComplete { itt: r.itt, buf });
        }
        if let Some(t) = self.reads.remove(&r.itt) {
            let itt = r.itt;
            let error = t.error.or_else(|| {
                // Every Data-In the target sent must have arrived (ExpDataSN counts them; 0
                // from a target that does not count is accepted).
                let sent = r.exp_data_sn.0;
                (sent != 0 && sent != t.next_data_sn).then_some(DataError::DataSn {
                    expected: sent,
                    got: t.next_data_sn,
                })
            });
            self.notes.push_back(match error {
                None => Notify::DataComplete { itt, buf: t.buf },
                Some(error) => Notify::DataFailed {
                    itt,
                    buf: t.buf,
                    error,
                },
            });
        }
        self.notes.push_back(Notify::Control(Pdu::ScsiResponse(r)));
    }
}

/// The ExpCmdSN and MaxCmdSN a target PDU carries.
fn window_of(pdu: &Pdu) -> Option<(CmdSn, CmdSn)> {
    match pdu {
        Pdu::NopIn(p) => Some((p.exp_cmd_sn, p.max_cmd_sn)),
        Pdu::ScsiResponse(p) => Some((p.exp_cmd_sn, p.max_cmd_sn)),
        Pdu::TaskMgmtResponse(p) => Some((p.exp_cmd_sn, p.max_cmd_sn)),
        Pdu::TextResponse(p) => Some((p.exp_cmd_sn, p.max_cmd_sn)),
        Pdu::DataIn(p) => Some((p.exp_cmd_sn, p.max_cmd_sn)),
        Pdu::LogoutResponse(p) => Some((p.exp_cmd_sn, p.max_cmd_sn)),
        Pdu::R2t(p) => Some((p.exp_cmd_sn, p.max_cmd_sn)),
        Pdu::AsyncMessage(p) => Some((p.exp_cmd_sn, p.max_cmd_sn)),
        Pdu::Reject(p) => Some((p.exp_cmd_sn, p.max_cmd_sn)),
        _ => None,
    }
}
