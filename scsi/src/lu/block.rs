//! Commands that move blocks: READ, WRITE, VERIFY, WRITE AND VERIFY, COMPARE AND WRITE,
//! ORWRITE, WRITE ATOMIC, WRITE SAME, UNMAP, SYNCHRONIZE CACHE, PRE-FETCH, GET LBA STATUS and
//! SANITIZE.
//!
//! Reads land in the task buffer and writes leave from it: the payload of READ and WRITE is never
//! copied here. VERIFY, COMPARE AND WRITE and ORWRITE read the medium into a scratch buffer
//! (bounded by the block limits the unit reports), and WRITE SAME writes from a pattern buffer of
//! at most [`PATTERN_BYTES`].

use std::sync::atomic::{AtomicBool, Ordering};

use super::{DeviceInfo, Failure, LogicalUnit};
use crate::{
    backend::{BlockBackend, BlockState, IoBuf},
    cdb::{Cdb, Rw},
    sense::{Asc, Sense, SenseKey, Status},
};

/// Largest buffer WRITE SAME and SANITIZE OVERWRITE fill with the pattern.
pub const PATTERN_BYTES: usize = 1 << 20;
/// Most descriptors GET LBA STATUS returns.
const MAX_LBA_STATUS_DESCRIPTORS: usize = 512;

type IoResult<B> = (Result<Status, Failure>, B, usize);

fn ok<B>(buf: B) -> IoResult<B> {
    (Ok(Status::GOOD), buf, 0)
}

fn err<B>(buf: B, f: impl Into<Failure>) -> IoResult<B> {
    (Err(f.into()), buf, 0)
}

fn read_error() -> Sense {
    Sense::new(SenseKey::MEDIUM_ERROR, Asc::UNRECOVERED_READ_ERROR)
}

fn write_error() -> Sense {
    Sense::new(SenseKey::MEDIUM_ERROR, Asc::WRITE_ERROR)
}

fn write_protected() -> Sense {
    Sense::new(SenseKey::DATA_PROTECT, Asc::WRITE_PROTECTED)
}

fn lba_out_of_range() -> Sense {
    Sense::illegal(Asc::LBA_OUT_OF_RANGE)
}

/// The data-out is shorter than the command needs (SAM-5: the transport's expected length
/// truncates the transfer): nothing is written.
fn short_data_out() -> Sense {
    Sense::illegal(Asc::INVALID_FIELD_IN_COMMAND_IU)
}

impl<S: BlockBackend> LogicalUnit<S> {
    /// Checks `lba .. lba + blocks` against the capacity.
    fn range(&self, dev: &DeviceInfo, lba: u64, blocks: u64) -> Result<(), Sense> {
        match lba.checked_add(blocks) {
            Some(end) if end <= dev.num_blocks => Ok(()),
            _ => Err(lba_out_of_range()),
        }
    }

    /// The checks every READ/WRITE-family command shares: protection field, write protect,
    /// range, and MAXIMUM TRANSFER LENGTH.
    fn check_rw(&self, dev: &DeviceInfo, rw: &Rw, write: bool, max: u64) -> Result<(), Sense> {
        if rw.protect != 0 {
            // No protection information: a nonzero xxPROTECT field is refused (SBC-3 §4.22).
            return Err(Sense::invalid_cdb_field(1, Some(7)));
        }
        if write && dev.read_only {
            return Err(write_protected());
        }
        self.range(dev, rw.lba, u64::from(rw.blocks))?;
        if u64::from(rw.blocks) > max {
            return Err(Sense::invalid_cdb_field(transfer_length_byte(rw), None));
        }
        Ok(())
    }

    fn bytes(&self, blocks: u64) -> u64 {
        blocks << self.shift
    }

    /// Runs a block I/O command.
    pub(super) async fn block_io<B: IoBuf>(
        &self,
        cmd: &Cdb,
        dev: &DeviceInfo,
        buf: B,
    ) -> IoResult<B> {
        let max = u64::from(self.cfg.max_transfer_blocks);
        match *cmd {
            Cdb::Read(rw) => {
                if let Err(s) = self.check_rw(dev, &rw, false, max) {
                    return err(buf, s);
                }
                let want = self.bytes(u64::from(rw.blocks));
                let n = (want as usize).min(buf.as_bytes().len());
                if n == 0 {
                    return ok(buf);
                }
                let _g = self.atomic.read().await;
                let (r, buf) = self.backend.read_at(self.bytes(rw.lba), buf, 0..n).await;
                match r {
                    Ok(()) => (Ok(Status::GOOD), buf, n),
                    Err(_) => err(buf, read_error()),
                }
            }
            Cdb::Write(rw) => {
                if let Err(s) = self.check_rw(dev, &rw, true, max) {
                    return err(buf, s);
                }
                self.write(rw.lba, rw.blocks, rw.fua || !dev.write_cache, buf)
                    .await
            }
            Cdb::WriteAndVerify { rw, bytchk } => {
                if let Err(s) = self.check_rw(dev, &rw, true, max) {
                    return err(buf, s);
                }
                if bytchk == 2 || bytchk == 3 {
                    return err(buf, Sense::invalid_cdb_field(1, Some(2)));
                }
                // An expected length that holds fewer whole blocks than the CDB asks for writes
                // (and verifies) those blocks and reports the rest as residual overflow (SAM-5
                // option a; libiscsi's WriteVerify*Residuals require GOOD, even for EDTL 0). A
                // length ending inside a block is refused like a short WRITE.
                let have = buf.as_bytes().len() as u64;
                let blocks = if have < self.bytes(u64::from(rw.blocks))
                    && have & u64::from(self.block_size - 1) == 0
                {
                    (have >> self.shift) as u32
                } else {
                    rw.blocks
                };
                // The verify reads back what was just written: write it through so the medium
                // holds it; comparing the data with itself cannot fail.
                self.write(rw.lba, blocks, true, buf).await
            }
            Cdb::Verify { rw, bytchk } => self.verify(dev, rw, bytchk, buf).await,
            Cdb::CompareAndWrite { rw } => self.compare_and_write(dev, rw, buf).await,
            Cdb::OrWrite(rw) => self.orwrite(dev, rw, buf).await,
            Cdb::WriteAtomic { rw, boundary } => {
                let max = u64::from(self.cfg.max_atomic_blocks);
                if max == 0 {
                    return err(buf, Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE));
                }
                if let Err(s) = self.check_rw(dev, &rw, true, max) {
                    return err(buf, s);
                }
                if boundary != 0 {
                    return err(buf, Sense::invalid_cdb_field(10, None));
                }
                let _g = self.atomic.write().await;
                self.write_locked(rw.lba, rw.blocks, rw.fua || !dev.write_cache, buf)
                    .await
            }
            Cdb::WriteSame {
                rw,
                unmap,
                anchor,
                ndob,
            } => self.write_same(dev, rw, unmap, anchor, ndob, buf).await,
            Cdb::Unmap {
                anchor, param_len, ..
            } => {
                let r = self.unmap(dev, anchor, param_len, buf.as_bytes()).await;
                (r.map(|()| Status::GOOD), buf, 0)
            }
            Cdb::SynchronizeCache { lba, blocks, .. } => {
                if let Err(s) = self.range(dev, lba, u64::from(blocks)) {
                    return err(buf, s);
                }
                match self.backend.flush().await {
                    Ok(()) => ok(buf),
                    Err(_) => err(buf, write_error()),
                }
            }
            Cdb::PreFetch { lba, blocks, .. } => {
                // Nothing to prefetch into: the range is checked and the command succeeds (SBC-3
                // allows GOOD when the blocks are not cached).
                match self.range(dev, lba, u64::from(blocks)) {
                    Ok(()) => ok(buf),
                    Err(s) => err(buf, s),
                }
            }
            Cdb::Sanitize {
                service_action,
                param_len,
                ..
            } => {
                let r = self
                    .sanitize(dev, service_action, param_len, buf.as_bytes())
                    .await;
                (r.map(|()| Status::GOOD), buf, 0)
            }
            _ => err(buf, Sense::illegal(Asc::INVALID_COMMAND_OPERATION_CODE)),
        }
    }

    /// WRITE: writes the blocks the data-out holds, at most the transfer length; extra data is
    /// ignored (underflow), missing blocks are not written (overflow: the residual says so).
    /// `fua` already includes write-through for a disabled write cache.
    async fn write<B: IoBuf>(&self, lba: u64, blocks: u32, fua: bool, buf: B) -> IoResult<B> {
        let n = self.bytes(u64::from(blocks));
        let have = buf.as_bytes().len() as u64;
        if have < n && !have.is_multiple_of(u64::from(self.block_size)) {
            // A partial last block is a read-modify-write: exclusive, so that no other write
            // lands between the read and the write back.
            let _g = self.atomic.write().await;
            return self.write_locked(lba, blocks, fua, buf).await;
        }
        let _g = self.atomic.read().await;
        self.write_locked(lba, blocks, fua, buf).await
    }

    async fn write_locked<B: IoBuf>(
        &self,
        lba: u64,
        blocks: u32,
        fua: bool,
        buf: B,
    ) -> IoResult<B> {
        let n = self.bytes(u64::from(blocks)) as usize;
        if n == 0 {
            return ok(buf);
        }
        // A data-out shorter than the command (the transport's expected length cut it, an
        // iSCSI residual overflow): exactly the bytes received are written, nothing more.
        let have = buf.as_bytes().len();
        if have >= n {
            let (r, buf) = self.backend.write_at(self.bytes(lba), buf, 0..n, fua).await;
            return match r {
                Ok(()) => ok(buf),
                Err(_) => err(buf, write_error()),
            };
        }
        let bs = self.block_size as usize;
        let whole = have - have % bs;
        let mut buf = buf;
        if whole > 0 {
            let (r, b) = self
                .backend
                .write_at(self.bytes(lba), buf, 0..whole, fua)
                .await;
            buf = b;
            if r.is_err() {
                return err(buf, write_error());
            }
        }
        if whole < have {
            // The partial last block: read, overlay what was received, write back.
            let tail_lba = lba + (whole / bs) as u64;
            let mut block = match self.read_scratch(tail_lba, 1).await {
                Ok(b) => b,
                Err(s) => return err(buf, s),
            };
            block[..have - whole].copy_from_slice(&buf.as_bytes()[whole..have]);
            let (r, _) = self
                .backend
                .write_at(self.bytes(tail_lba), block, 0..bs, fua)
                .await;
            if r.is_err() {
                return err(buf, write_error());
            }
        }
        ok(buf)
    }

    /// Reads `blocks` at `lba` into a new scratch buffer.
    async fn read_scratch(&self, lba: u64, blocks: u32) -> Result<Vec<u8>, Sense> {
        let n = self.bytes(u64::from(blocks)) as usize;
        let (r, v) = self
            .backend
            .read_at(self.bytes(lba), vec![0u8; n], 0..n)
            .await;
        r.map(|()| v).map_err(|_| read_error())
    }

    async fn verify<B: IoBuf>(&self, dev: &DeviceInfo, rw: Rw, bytchk: u8, buf: B) -> IoResult<B> {
        if let Err(s) = self.check_rw(dev, &rw, false, u64::from(self.cfg.max_transfer_blocks)) {
            return err(buf, s);
        }
        if bytchk == 2 {
            return err(buf, Sense::invalid_cdb_field(1, Some(2)));
        }
        if rw.blocks == 0 {
            return ok(buf);
        }
        let bs = self.block_size as usize;
        let need = match bytchk {
            0 => 0,
            1 => self.bytes(u64::from(rw.blocks)) as usize,
            _ => bs,
        };
        if buf.as_bytes().len() < need {
            return err(buf, short_data_out());
        }
        let _g = self.atomic.read().await;
        let medium = match self.read_scratch(rw.lba, rw.blocks).await {
            Ok(m) => m,
            Err(s) => return err(buf, s),
        };
        let data = &buf.as_bytes()[..need];
        let mismatch = match bytchk {
            0 => None,
            1 => first_difference(data, &medium),
            _ => medium
                .chunks(bs)
                .enumerate()
                .find_map(|(i, block)| first_difference(data, block).map(|at| i * bs + at)),
        };
        match mismatch {
            Some(at) => err(buf, miscompare(at)),
            None => ok(buf),
        }
    }

    async fn compare_and_write<B: IoBuf>(&self, dev: &DeviceInfo, rw: Rw, buf: B) -> IoResult<B> {
        if let Err(s) = self.check_rw(
            dev,
            &rw,
            true,
            u64::from(self.cfg.max_compare_and_write_blocks),
        ) {
            return err(buf, s);
        }
        if rw.blocks == 0 {
            // No blocks but data offered (a block count that wrapped): refused.
            if !buf.as_bytes().is_empty() {
                return err(buf, Sense::invalid_cdb_field(13, None));
            }
            return ok(buf);
        }
        let n = self.bytes(u64::from(rw.blocks)) as usize;
        // The data-out holds the verify instance then the write instance; any other length is
        // refused before anything is compared (SBC-3 §5.2).
        if buf.as_bytes().len() != 2 * n {
            return err(buf, short_data_out());
        }
        let _g = self.atomic.write().await;
        let medium = match self.read_scratch(rw.lba, rw.blocks).await {
            Ok(m) => m,
            Err(s) => return err(buf, s),
        };
        if let Some(at) = first_difference(&buf.as_bytes()[..n], &medium) {
            return err(buf, miscompare(at));
        }
        let fua = rw.fua || !dev.write_cache;
        let (r, buf) = self
            .backend
            .write_at(self.bytes(rw.lba), buf, n..2 * n, fua)
            .await;
        match r {
            Ok(()) => ok(buf),
            Err(_) => err(buf, write_error()),
        }
    }

    async fn orwrite<B: IoBuf>(&self, dev: &DeviceInfo, rw: Rw, buf: B) -> IoResult<B> {
        if let Err(s) = self.check_rw(dev, &rw, true, u64::from(self.cfg.max_transfer_blocks)) {
            return err(buf, s);
        }
        if rw.blocks == 0 {
            return ok(buf);
        }
        let n = self.bytes(u64::from(rw.blocks)) as usize;
        if buf.as_bytes().len() < n {
            return err(buf, short_data_out());
        }
        let _g = self.atomic.write().await;
        let mut medium = match self.read_scratch(rw.lba, rw.blocks).await {
            Ok(m) => m,
            Err(s) => return err(buf, s),
        };
        for (m, d) in medium.iter_mut().zip(buf.as_bytes()) {
            *m |= d;
        }
        let fua = rw.fua || !dev.write_cache;
        let (r, _) = self
            .backend
            .write_at(self.bytes(rw.lba), medium, 0..n, fua)
            .await;
        match r {
            Ok(()) => ok(buf),
            Err(_) => err(buf, write_error()),
        }
    }

    async fn write_same<B: IoBuf>(
        &self,
        dev: &DeviceInfo,
        rw: Rw,
        unmap: bool,
        anchor: bool,
        ndob: bool,
        buf: B,
    ) -> IoResult<B> {
        if rw.protect != 0 {
            return err(buf, Sense::invalid_cdb_field(1, Some(7)));
        }
        if anchor {
            // ANCHOR needs anchored-LBA support (ANC_SUP = 0), and is invalid without UNMAP.
            return err(buf, Sense::invalid_cdb_field(1, Some(4)));
        }
        if dev.read_only {
            return err(buf, write_protected());
        }
        // NUMBER OF LOGICAL BLOCKS 0 means "to the end of the medium" (WSNZ = 0).
        let blocks = if rw.blocks == 0 {
            dev.num_blocks.saturating_sub(rw.lba)
        } else {
            u64::from(rw.blocks)
        };
        if let Err(s) = self.range(dev, rw.lba, u64::from(rw.blocks)) {
            return err(buf, s);
        }
        if blocks > self.cfg.max_write_same_blocks {
            return err(
                buf,
                Sense::invalid_cdb_field(transfer_length_byte(&rw), None),
            );
        }
        let bs = self.block_size as usize;
        if !ndob && buf.as_bytes().len() != bs {
            return err(buf, short_data_out());
        }
        if blocks == 0 {
            return ok(buf);
        }
        let _g = self.atomic.read().await;
        // With UNMAP the blocks are deallocated whatever the data (SBC-4 §5.50; LIO and tgt do
        // the same, and libiscsi's WriteSame*.UnmapUntilEnd expects zeros back).
        if unmap && dev.provisioning.discard_zeroes {
            return match self
                .backend
                .discard(self.bytes(rw.lba), self.bytes(blocks))
                .await
            {
                Ok(()) => ok(buf),
                Err(_) => err(buf, write_error()),
            };
        }
        let block = (!ndob).then(|| &buf.as_bytes()[..bs]);
        match self.fill(rw.lba, blocks, block, !dev.write_cache).await {
            Ok(()) => ok(buf),
            Err(s) => err(buf, s),
        }
    }

    async fn unmap(
        &self,
        dev: &DeviceInfo,
        anchor: bool,
        param_len: u16,
        data: &[u8],
    ) -> Result<(), Failure> {
        if anchor {
            return Err(Sense::invalid_cdb_field(1, Some(0)).into());
        }
        if dev.read_only {
            return Err(write_protected().into());
        }
        let len = usize::from(param_len);
        if len == 0 {
            return Ok(());
        }
        if len < 8 {
            return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR).into());
        }
        let Some(list) = data.get(..len) else {
            return Err(short_data_out().into());
        };
        let desc_len = usize::from(u16::from_be_bytes([list[2], list[3]]));
        let descs = list.get(8..8 + desc_len.min(len - 8)).unwrap_or_default();
        if descs.len() / 16 > self.cfg.max_unmap_descriptors as usize {
            return Err(Sense::invalid_param_field(2, None).into());
        }
        let mut ranges = Vec::with_capacity(descs.len() / 16);
        for (i, d) in descs.chunks_exact(16).enumerate() {
            let lba = u64::from_be_bytes(d[..8].try_into().unwrap_or_default());
            let blocks = u32::from_be_bytes(d[8..12].try_into().unwrap_or_default());
            self.range(dev, lba, u64::from(blocks))?;
            if blocks > self.cfg.max_unmap_blocks {
                return Err(Sense::invalid_param_field((8 + i * 16 + 8) as u16, None).into());
            }
            ranges.push((lba, blocks));
        }
        let _g = self.atomic.read().await;
        for (lba, blocks) in ranges {
            if blocks > 0 {
                self.backend
                    .discard(self.bytes(lba), self.bytes(u64::from(blocks)))
                    .await
                    .map_err(|_| write_error())?;
            }
        }
        Ok(())
    }

    /// SANITIZE: OVERWRITE fills the medium with the pattern, BLOCK ERASE deallocates it, EXIT
    /// FAILURE MODE has nothing to do (a sanitize here never fails half-way). CRYPTOGRAPHIC ERASE
    /// is not supported. The whole operation holds the unit's exclusive lock, so no command sees
    /// a half-sanitized medium; IMMED is honoured by finishing first (the status is then simply
    /// later).
    async fn sanitize(
        &self,
        dev: &DeviceInfo,
        service_action: u8,
        param_len: u16,
        data: &[u8],
    ) -> Result<(), Failure> {
        const OVERWRITE: u8 = 0x01;
        const BLOCK_ERASE: u8 = 0x02;
        const EXIT_FAILURE_MODE: u8 = 0x1F;
        let bs = self.block_size as usize;
        let len = usize::from(param_len);
        match service_action {
            OVERWRITE => {
                // Parameter list: 4-byte header + pattern of 1..=block size bytes.
                if len < 5 || len > bs + 4 {
                    return Err(Sense::invalid_cdb_field(7, None).into());
                }
                if dev.read_only {
                    return Err(write_protected().into());
                }
                let list = data.get(..len).ok_or_else(short_data_out)?;
                let count = list[0] & 0x1F;
                let invert = list[0] & 0x80 != 0;
                let plen = usize::from(u16::from_be_bytes([list[2], list[3]]));
                if count == 0 {
                    return Err(Sense::invalid_param_field(0, Some(4)).into());
                }
                if plen == 0 || plen > bs || plen + 4 != len {
                    return Err(Sense::invalid_param_field(2, None).into());
                }
                let pat = &list[4..4 + plen];
                let mut block = vec![0u8; bs];
                for (i, b) in block.iter_mut().enumerate() {
                    *b = pat[i % plen];
                }
                let _busy = self.start_sanitize()?;
                let _g = self.atomic.write().await;
                for pass in 0..count {
                    // With INVERT, passes alternate between the pattern and its complement and
                    // the last pass writes the pattern itself.
                    let flip = invert && (count - 1 - pass) % 2 == 1;
                    let this: Vec<u8> = block.iter().map(|&b| if flip { !b } else { b }).collect();
                    self.fill(0, dev.num_blocks, Some(&this), !dev.write_cache)
                        .await?;
                }
                self.backend.flush().await.map_err(|_| write_error())?;
                Ok(())
            }
            BLOCK_ERASE => {
                if len != 0 {
                    return Err(Sense::invalid_cdb_field(7, None).into());
                }
                if dev.read_only {
                    return Err(write_protected().into());
                }
                let _busy = self.start_sanitize()?;
                let _g = self.atomic.write().await;
                self.backend
                    .discard(0, self.bytes(dev.num_blocks))
                    .await
                    .map_err(|_| write_error())?;
                self.backend.flush().await.map_err(|_| write_error())?;
                Ok(())
            }
            EXIT_FAILURE_MODE => {
                if len != 0 {
                    return Err(Sense::invalid_cdb_field(7, None).into());
                }
                Ok(())
            }
            _ => Err(Sense::invalid_cdb_field(1, Some(4)).into()),
        }
    }

    /// Marks a sanitize as running until the returned guard drops (even if the command's future
    /// is dropped): other commands then get NOT READY, SANITIZE IN PROGRESS.
    fn start_sanitize(&self) -> Result<Sanitizing<'_>, Sense> {
        if self.sanitizing.swap(true, Ordering::AcqRel) {
            return Err(Sense::new(SenseKey::NOT_READY, Asc::SANITIZE_IN_PROGRESS));
        }
        Ok(Sanitizing(&self.sanitizing))
    }

    /// Writes `block` (or zeros) over `blocks` blocks from `lba`, from a pattern buffer of at
    /// most [`PATTERN_BYTES`]. The caller holds the lock it needs.
    async fn fill(
        &self,
        lba: u64,
        blocks: u64,
        block: Option<&[u8]>,
        fua: bool,
    ) -> Result<(), Sense> {
        let bs = self.block_size as usize;
        let per = (PATTERN_BYTES / bs).max(1) as u64;
        let chunk_blocks = blocks.min(per);
        let mut pattern = vec![0u8; (chunk_blocks as usize) * bs];
        if let Some(block) = block {
            for b in pattern.chunks_mut(bs) {
                b.copy_from_slice(block);
            }
        }
        let mut done = 0u64;
        while done < blocks {
            let now = (blocks - done).min(chunk_blocks);
            let len = (now as usize) * bs;
            let (r, p) = self
                .backend
                .write_at(self.bytes(lba + done), pattern, 0..len, fua)
                .await;
            pattern = p;
            r.map_err(|_| write_error())?;
            done += now;
        }
        Ok(())
    }

    /// GET LBA STATUS parameter data from `lba` on, at most as many descriptors as
    /// `alloc_len` holds.
    pub(super) async fn lba_status(
        &self,
        dev: &DeviceInfo,
        lba: u64,
        alloc_len: u32,
    ) -> Result<Vec<u8>, Failure> {
        if lba >= dev.num_blocks {
            return Err(lba_out_of_range().into());
        }
        let room = (alloc_len as usize).saturating_sub(8) / 16;
        let max = room.clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
        let mut out = vec![0u8; 8];
        let mut at = lba;
        while at < dev.num_blocks && (out.len() - 8) / 16 < max {
            let (state, run) = self
                .backend
                .block_state(self.bytes(at), self.bytes(dev.num_blocks - at))
                .await
                .map_err(|_| read_error())?;
            let blocks = (run >> self.shift).max(1).min(dev.num_blocks - at);
            let blocks32 = blocks.min(u64::from(u32::MAX));
            out.extend_from_slice(&at.to_be_bytes());
            out.extend_from_slice(&(blocks32 as u32).to_be_bytes());
            out.push(match state {
                BlockState::Mapped => 0,
                BlockState::Deallocated => 1,
            });
            out.extend_from_slice(&[0, 0, 0]);
            at += blocks32;
        }
        let len = (out.len() - 4) as u32;
        out[..4].copy_from_slice(&len.to_be_bytes());
        Ok(out)
    }
}

/// Clears the unit's sanitize-in-progress flag when dropped.
struct Sanitizing<'a>(&'a AtomicBool);

impl Drop for Sanitizing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Byte of the CDB where the TRANSFER LENGTH starts, for the sense field pointer.
fn transfer_length_byte(rw: &Rw) -> u16 {
    use crate::cdb::CdbSize::*;
    match rw.size {
        Six => 4,
        Ten => 7,
        Twelve => 6,
        Sixteen => 10,
    }
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// MISCOMPARE DURING VERIFY OPERATION with the offset of the first differing byte.
fn miscompare(at: usize) -> Sense {
    Sense::new(SenseKey::MISCOMPARE, Asc::MISCOMPARE_DURING_VERIFY).with_information(at as u64)
}
