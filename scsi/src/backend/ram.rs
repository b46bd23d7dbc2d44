//! [`RamBackend`]: a sparse, thin-provisioned disk in memory.

use std::{
    fmt, io,
    ops::Range,
    sync::{
        PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
};

use super::{BlockBackend, BlockState, BufResult, IoBuf, Provisioning};

/// Chunk size of [`RamBackend::new`]: 64 KiB.
const DEFAULT_CHUNK_SHIFT: u32 = 16;
/// Smallest chunk [`RamBackend::with_chunk_size`] accepts: 512 bytes.
const MIN_CHUNK_SHIFT: u32 = 9;
/// Most chunks a disk has (1 Mi, about 32 MiB of chunk table); larger disks get larger chunks.
const MAX_CHUNKS: u64 = 1 << 20;
/// Chunks up to this size are allocated zeroed by the allocator (lazily by the kernel for large
/// ones); larger chunks are reserved fallibly so an absurd size is an error, not an abort.
const MAX_INFALLIBLE_CHUNK: usize = 64 << 20;

/// One chunk: `None` until first written (and again once discarded), reading as zeros.
type Chunk = RwLock<Option<Box<[u8]>>>;

/// An in-memory, thin-provisioned disk, for tests and example targets.
///
/// The disk is cut into fixed-size chunks (64 KiB by default), each behind its own
/// [`RwLock`], so I/O to different chunks runs in parallel and reads of one chunk share it.
/// Memory is allocated a chunk at a time on the first write to it; unwritten chunks read as
/// zeros. [`discard`](BlockBackend::discard) frees the chunks it covers entirely and zeroes the
/// parts of the others (freeing one that ends up all zeros), so [`provisioning`] reports thin
/// provisioning with zeroing discards, and [`block_state`] reports allocated chunks as mapped.
///
/// An unwritten disk costs only its chunk table (about 32 bytes per chunk: 512 KiB for 1 GiB).
/// The table never exceeds 1 Mi chunks: beyond 64 GiB the chunks grow with the disk.
///
/// Every method completes synchronously; none needs an async runtime. Ranges past the end of
/// the disk fail with [`io::ErrorKind::InvalidInput`].
///
/// ```
/// # use scsi_core::backend::{BlockBackend, RamBackend};
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let disk = RamBackend::new(1 << 30);
/// assert_eq!(disk.allocated_bytes(), 0);
/// let (res, _) = disk.write_at(4096, vec![7u8; 512], 0..512, false).await;
/// res.unwrap();
/// let (res, buf) = disk.read_at(4096, vec![0u8; 1024], 0..1024).await;
/// res.unwrap();
/// assert_eq!(&buf[..512], &[7u8; 512][..]);
/// assert_eq!(&buf[512..], &[0u8; 512][..]);
/// assert_eq!(disk.allocated_bytes(), disk.chunk_size());
/// # });
/// ```
///
/// [`provisioning`]: BlockBackend::provisioning
/// [`block_state`]: BlockBackend::block_state
pub struct RamBackend {
    len: u64,
    chunk_shift: u32,
    chunks: Box<[Chunk]>,
    allocated: AtomicU64,
}

impl RamBackend {
    /// A zeroed disk of `len_bytes` bytes with 64 KiB chunks; no chunk is allocated yet.
    pub fn new(len_bytes: u64) -> RamBackend {
        RamBackend::with_shift(len_bytes, DEFAULT_CHUNK_SHIFT)
    }

    /// A zeroed disk of `len_bytes` bytes allocated in chunks of `chunk_size` bytes.
    ///
    /// `chunk_size` is rounded up to a power of two of at least 512 bytes, and grown further if
    /// the disk would otherwise have more than 1 Mi chunks; [`chunk_size`](Self::chunk_size)
    /// tells the size chosen. Smaller chunks track discards more finely, larger ones keep the
    /// chunk table small.
    pub fn with_chunk_size(len_bytes: u64, chunk_size: u64) -> RamBackend {
        let shift = chunk_size
            .checked_next_power_of_two()
            .map_or(63, u64::trailing_zeros);
        RamBackend::with_shift(len_bytes, shift)
    }

    fn with_shift(len: u64, shift: u32) -> RamBackend {
        let mut chunk_shift = shift.clamp(MIN_CHUNK_SHIFT, 63);
        while chunk_shift < 63 && len.div_ceil(1 << chunk_shift) > MAX_CHUNKS {
            chunk_shift += 1;
        }
        // At most MAX_CHUNKS, so the count fits in usize.
        let count = len.div_ceil(1 << chunk_shift) as usize;
        RamBackend {
            len,
            chunk_shift,
            chunks: (0..count).map(|_| RwLock::new(None)).collect(),
            allocated: AtomicU64::new(0),
        }
    }

    /// Size of the allocation unit in bytes (a power of two).
    pub fn chunk_size(&self) -> u64 {
        1 << self.chunk_shift
    }

    /// Bytes of memory currently allocated for data: the sizes of the allocated chunks.
    pub fn allocated_bytes(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Length in bytes of chunk `idx` (the last one may be short).
    fn chunk_len(&self, idx: usize) -> u64 {
        let start = (idx as u64) << self.chunk_shift;
        self.chunk_size().min(self.len.saturating_sub(start))
    }

    fn chunk(&self, idx: usize) -> io::Result<&Chunk> {
        self.chunks
            .get(idx)
            .ok_or_else(|| invalid("chunk index past the end of the disk"))
    }

    fn check_range(&self, offset: u64, len: u64) -> io::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(invalid("range past the end of the RAM disk")),
        }
    }

    /// Calls `f(chunk index, offset in chunk, bytes done so far, segment length)` for each
    /// piece of `[offset, offset + len)` that lies in one chunk. The range must be checked.
    fn for_each_segment(
        &self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(usize, u64, u64, u64) -> io::Result<()>,
    ) -> io::Result<()> {
        let mask = self.chunk_size() - 1;
        let mut done = 0;
        while done < len {
            let pos = offset + done;
            let within = pos & mask;
            let seg = (self.chunk_size() - within).min(len - done);
            // pos < self.len, so the index is below the chunk count, which fits in usize.
            f((pos >> self.chunk_shift) as usize, within, done, seg)?;
            done += seg;
        }
        Ok(())
    }

    /// Allocates a zeroed chunk of `len` bytes.
    fn alloc_chunk(len: u64) -> io::Result<Box<[u8]>> {
        let len = usize::try_from(len).map_err(|_| out_of_memory())?;
        if len <= MAX_INFALLIBLE_CHUNK {
            return Ok(vec![0u8; len].into_boxed_slice());
        }
        let mut data = Vec::new();
        data.try_reserve_exact(len).map_err(|_| out_of_memory())?;
        data.resize(len, 0);
        Ok(data.into_boxed_slice())
    }

    fn read_into(&self, offset: u64, dst: &mut [u8]) -> io::Result<()> {
        self.check_range(offset, dst.len() as u64)?;
        self.for_each_segment(offset, dst.len() as u64, |idx, within, done, seg| {
            let out = slice_mut(dst, done, seg)?;
            let guard = self
                .chunk(idx)?
                .read()
                .unwrap_or_else(PoisonError::into_inner);
            match guard.as_deref() {
                Some(data) => out.copy_from_slice(slice(data, within, seg)?),
                None => out.fill(0),
            }
            Ok(())
        })
    }

    fn write_from(&self, offset: u64, src: &[u8]) -> io::Result<()> {
        self.check_range(offset, src.len() as u64)?;
        self.for_each_segment(offset, src.len() as u64, |idx, within, done, seg| {
            let input = slice(src, done, seg)?;
            let mut guard = self
                .chunk(idx)?
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let data = match &mut *guard {
                Some(data) => data,
                empty => {
                    let len = self.chunk_len(idx);
                    let data = empty.insert(Self::alloc_chunk(len)?);
                    self.allocated.fetch_add(len, Ordering::Relaxed);
                    data
                }
            };
            slice_mut(data, within, seg)?.copy_from_slice(input);
            Ok(())
        })
    }

    fn discard_range(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_range(offset, len)?;
        self.for_each_segment(offset, len, |idx, within, _, seg| {
            let chunk_len = self.chunk_len(idx);
            let mut guard = self
                .chunk(idx)?
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let Some(data) = guard.as_deref_mut() else {
                return Ok(());
            };
            if seg < chunk_len {
                slice_mut(data, within, seg)?.fill(0);
                if data.iter().any(|&b| b != 0) {
                    return Ok(());
                }
            }
            *guard = None;
            self.allocated.fetch_sub(chunk_len, Ordering::Relaxed);
            Ok(())
        })
    }

    fn state_of(&self, idx: usize) -> io::Result<BlockState> {
        let guard = self
            .chunk(idx)?
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(if guard.is_some() {
            BlockState::Mapped
        } else {
            BlockState::Deallocated
        })
    }

    fn state_run(&self, offset: u64, len: u64) -> io::Result<(BlockState, u64)> {
        self.check_range(offset, len)?;
        if offset >= self.len {
            return Ok((BlockState::Mapped, 0));
        }
        let state = self.state_of((offset >> self.chunk_shift) as usize)?;
        let mut run = 0;
        let mut stopped = false;
        self.for_each_segment(offset, len, |idx, _, _, seg| {
            if !stopped && self.state_of(idx)? == state {
                run += seg;
            } else {
                stopped = true;
            }
            Ok(())
        })?;
        Ok((state, run))
    }
}

impl fmt::Debug for RamBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RamBackend")
            .field("len", &self.len)
            .field("chunk_size", &self.chunk_size())
            .field("allocated_bytes", &self.allocated_bytes())
            .finish()
    }
}

impl BlockBackend for RamBackend {
    fn len(&self) -> u64 {
        self.len
    }

    async fn read_at<B: IoBuf>(
        &self,
        offset: u64,
        mut buf: B,
        range: Range<usize>,
    ) -> BufResult<B> {
        let res = match buf.as_mut_bytes().get_mut(range) {
            Some(dst) => self.read_into(offset, dst),
            None => Err(invalid("buffer range out of bounds")),
        };
        (res, buf)
    }

    async fn write_at<B: IoBuf>(
        &self,
        offset: u64,
        buf: B,
        range: Range<usize>,
        _fua: bool,
    ) -> BufResult<B> {
        let res = match buf.as_bytes().get(range) {
            Some(src) => self.write_from(offset, src),
            None => Err(invalid("buffer range out of bounds")),
        };
        (res, buf)
    }

    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.discard_range(offset, len)
    }

    fn provisioning(&self) -> Provisioning {
        Provisioning {
            thin: true,
            discard_zeroes: true,
        }
    }

    async fn block_state(&self, offset: u64, len: u64) -> io::Result<(BlockState, u64)> {
        self.state_run(offset, len)
    }
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn out_of_memory() -> io::Error {
    io::Error::new(
        io::ErrorKind::OutOfMemory,
        "cannot allocate a RAM disk chunk",
    )
}

/// `data[start..start + len]`, or an error instead of a panic.
fn slice(data: &[u8], start: u64, len: u64) -> io::Result<&[u8]> {
    let range = to_range(start, len)?;
    data.get(range)
        .ok_or_else(|| invalid("slice out of bounds"))
}

/// `data[start..start + len]`, writable, or an error instead of a panic.
fn slice_mut(data: &mut [u8], start: u64, len: u64) -> io::Result<&mut [u8]> {
    let range = to_range(start, len)?;
    data.get_mut(range)
        .ok_or_else(|| invalid("slice out of bounds"))
}

fn to_range(start: u64, len: u64) -> io::Result<Range<usize>> {
    let start = usize::try_from(start).map_err(|_| invalid("offset too large"))?;
    let len = usize::try_from(len).map_err(|_| invalid("length too large"))?;
    let end = start
        .checked_add(len)
        .ok_or_else(|| invalid("length too large"))?;
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const CHUNK: u64 = 1 << DEFAULT_CHUNK_SHIFT;

    async fn write(disk: &RamBackend, offset: u64, data: Vec<u8>) {
        let len = data.len();
        let (res, _) = disk.write_at(offset, data, 0..len, false).await;
        res.unwrap();
    }

    async fn read(disk: &RamBackend, offset: u64, len: usize) -> Vec<u8> {
        let (res, buf) = disk.read_at(offset, vec![0xAA; len], 0..len).await;
        res.unwrap();
        buf
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[tokio::test]
    async fn new_disk_is_empty_and_reads_zeros() {
        let disk = RamBackend::new(1 << 30);
        assert_eq!(disk.len(), 1 << 30);
        assert_eq!(disk.chunk_size(), CHUNK);
        assert_eq!(disk.allocated_bytes(), 0);
        assert_eq!(read(&disk, 12345, 100_000).await, vec![0; 100_000]);
        assert_eq!(disk.allocated_bytes(), 0);
        assert_eq!(
            disk.provisioning(),
            Provisioning {
                thin: true,
                discard_zeroes: true
            }
        );
        disk.flush().await.unwrap();
    }

    #[tokio::test]
    async fn read_after_write_across_chunks() {
        let disk = RamBackend::new(8 * CHUNK);
        let data = pattern(3 * CHUNK as usize, 5);
        let offset = CHUNK - 1000;
        write(&disk, offset, data.clone()).await;
        assert_eq!(disk.allocated_bytes(), 4 * CHUNK);
        assert_eq!(read(&disk, offset, data.len()).await, data);
        // Unwritten neighbours stay zero.
        assert_eq!(read(&disk, offset - 10, 10).await, vec![0; 10]);
        let end = offset + data.len() as u64;
        assert_eq!(read(&disk, end, 10).await, vec![0; 10]);
        // A sub-range of the buffer is used, the rest is left alone.
        let (res, buf) = disk.read_at(offset, vec![0xEE; 300], 100..200).await;
        res.unwrap();
        assert_eq!(&buf[100..200], &data[..100]);
        assert!(buf[..100].iter().chain(&buf[200..]).all(|&b| b == 0xEE));
    }

    #[tokio::test]
    async fn short_last_chunk() {
        let len = 2 * CHUNK + 512;
        let disk = RamBackend::new(len);
        write(&disk, len - 1024, pattern(1024, 9)).await;
        assert_eq!(disk.allocated_bytes(), CHUNK + 512);
        assert_eq!(read(&disk, len - 1024, 1024).await, pattern(1024, 9));
        disk.discard(2 * CHUNK, 512).await.unwrap();
        assert_eq!(disk.allocated_bytes(), CHUNK);
    }

    #[tokio::test]
    async fn discard_frees_whole_chunks_and_zeroes_partial_ones() {
        let disk = RamBackend::new(8 * CHUNK);
        write(&disk, 0, pattern(4 * CHUNK as usize, 1)).await;
        assert_eq!(disk.allocated_bytes(), 4 * CHUNK);
        // Covers the end of chunk 0, all of chunks 1 and 2, the start of chunk 3.
        let (start, len) = (CHUNK - 100, 2 * CHUNK + 200);
        disk.discard(start, len).await.unwrap();
        assert_eq!(disk.allocated_bytes(), 2 * CHUNK);
        let all = read(&disk, 0, 4 * CHUNK as usize).await;
        let expect = pattern(4 * CHUNK as usize, 1);
        assert_eq!(&all[..start as usize], &expect[..start as usize]);
        assert!(
            all[start as usize..(start + len) as usize]
                .iter()
                .all(|&b| b == 0)
        );
        assert_eq!(
            &all[(start + len) as usize..],
            &expect[(start + len) as usize..]
        );
        // Discarding unwritten space is a no-op, and so is a zero length.
        disk.discard(6 * CHUNK, CHUNK).await.unwrap();
        disk.discard(0, 0).await.unwrap();
        assert_eq!(disk.allocated_bytes(), 2 * CHUNK);
    }

    #[tokio::test]
    async fn piecewise_discard_frees_the_chunk() {
        let disk = RamBackend::new(2 * CHUNK);
        write(&disk, 0, vec![0xFF; CHUNK as usize]).await;
        for off in (0..CHUNK).step_by(4096) {
            assert_eq!(disk.allocated_bytes(), CHUNK);
            disk.discard(off, 4096).await.unwrap();
        }
        assert_eq!(disk.allocated_bytes(), 0);
        assert_eq!(
            read(&disk, 0, CHUNK as usize).await,
            vec![0; CHUNK as usize]
        );
    }

    #[tokio::test]
    async fn block_state_runs() {
        let disk = RamBackend::new(8 * CHUNK);
        write(&disk, 2 * CHUNK + 10, vec![1; 10]).await;
        write(&disk, 3 * CHUNK, vec![1; 10]).await;
        let whole = disk.len();
        assert_eq!(
            disk.block_state(0, whole).await.unwrap(),
            (BlockState::Deallocated, 2 * CHUNK)
        );
        assert_eq!(
            disk.block_state(100, 50).await.unwrap(),
            (BlockState::Deallocated, 50)
        );
        assert_eq!(
            disk.block_state(2 * CHUNK + 5, whole - 2 * CHUNK - 5)
                .await
                .unwrap(),
            (BlockState::Mapped, 2 * CHUNK - 5)
        );
        assert_eq!(
            disk.block_state(4 * CHUNK, 4 * CHUNK).await.unwrap(),
            (BlockState::Deallocated, 4 * CHUNK)
        );
        disk.discard(2 * CHUNK, CHUNK).await.unwrap();
        assert_eq!(
            disk.block_state(0, whole).await.unwrap(),
            (BlockState::Deallocated, 3 * CHUNK)
        );
        assert_eq!(
            disk.block_state(whole, 0).await.unwrap(),
            (BlockState::Mapped, 0)
        );
    }

    #[tokio::test]
    async fn out_of_range_is_an_error() {
        let disk = RamBackend::new(4 * CHUNK);
        let len = disk.len();
        let (res, buf) = disk.read_at(len - 4, vec![0; 8], 0..8).await;
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(buf.len(), 8);
        let (res, _) = disk.write_at(u64::MAX - 2, vec![0; 8], 0..8, true).await;
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        let (res, _) = disk.write_at(0, vec![0; 8], 4..16, false).await;
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        #[allow(clippy::reversed_empty_ranges)]
        let (res, _) = disk.read_at(0, vec![0; 8], 6..2).await;
        assert_eq!(res.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert!(disk.discard(len, 1).await.is_err());
        assert!(disk.discard(1, u64::MAX).await.is_err());
        assert!(disk.block_state(len + 1, 0).await.is_err());
        assert!(disk.block_state(0, len + 1).await.is_err());
        assert_eq!(disk.allocated_bytes(), 0);
    }

    #[tokio::test]
    async fn odd_sizes_do_not_panic() {
        let disk = RamBackend::new(0);
        assert!(disk.is_empty());
        assert!(disk.read_at(0, vec![0; 1], 0..1).await.0.is_err());
        assert!(disk.read_at(0, Vec::new(), 0..0).await.0.is_ok());
        let huge = RamBackend::new(u64::MAX);
        assert!(huge.chunks.len() as u64 <= MAX_CHUNKS);
        assert_eq!(read(&huge, u64::MAX - 8, 8).await, vec![0; 8]);
        let odd = RamBackend::with_chunk_size(10_000, 3000);
        assert_eq!(odd.chunk_size(), 4096);
        assert_eq!(RamBackend::with_chunk_size(1 << 20, 0).chunk_size(), 512);
        assert_eq!(
            RamBackend::with_chunk_size(1 << 20, u64::MAX).chunk_size(),
            1 << 63
        );
        write(&odd, 4000, pattern(6000, 3)).await;
        assert_eq!(odd.allocated_bytes(), 10_000);
        assert_eq!(read(&odd, 4000, 6000).await, pattern(6000, 3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_on_different_chunks() {
        let disk = Arc::new(RamBackend::new(64 * CHUNK));
        let mut tasks = Vec::new();
        for t in 0..8u8 {
            let disk = Arc::clone(&disk);
            tasks.push(tokio::spawn(async move {
                for round in 0..50u64 {
                    // Task t owns chunks t, t + 8, t + 16, ...; blocks straddle no boundary.
                    let chunk = u64::from(t) + 8 * (round % 8);
                    let offset = chunk * CHUNK + (round * 4096) % CHUNK;
                    let data = pattern(4096, t.wrapping_add(round as u8));
                    let (res, _) = disk
                        .write_at(offset, data.clone(), 0..4096, round % 3 == 0)
                        .await;
                    res.unwrap();
                    let (res, back) = disk.read_at(offset, vec![0; 4096], 0..4096).await;
                    res.unwrap();
                    assert_eq!(back, data);
                    tokio::task::yield_now().await;
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(disk.allocated_bytes(), 64 * CHUNK);
    }

    #[test]
    fn poisoned_lock_is_recovered() {
        let disk = Arc::new(RamBackend::new(2 * CHUNK));
        let poisoner = Arc::clone(&disk);
        let _ = std::thread::spawn(move || {
            let _guard = poisoner.chunks[0].write().unwrap();
            panic!("poison the chunk lock");
        })
        .join();
        assert!(disk.chunks[0].is_poisoned());
        disk.write_from(0, &[1, 2, 3]).unwrap();
        let mut back = [0; 3];
        disk.read_into(0, &mut back).unwrap();
        assert_eq!(back, [1, 2, 3]);
    }
}
