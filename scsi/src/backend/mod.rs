//! Block storage behind a logical unit: the [`BlockBackend`] trait, the [`IoBuf`] buffers it
//! works on, and two backends, [`RamBackend`] and [`FileBackend`].
//!
//! # Buffers are owned while the I/O runs
//! A backend reads into, and writes from, memory the caller provides: the task buffer of the
//! command. Reads land in it directly and writes leave from it directly, so a payload is never
//! copied inside this crate. The caller hands the buffer over by value and gets it back with the
//! result ([`BufResult`]): that lets a backend move the I/O to another thread (a blocking pool, an
//! io_uring ring, a remote store) without borrowing across an `.await`, and lets a transport pass
//! memory it has registered with an RDMA adapter, since any type that implements [`IoBuf`] will do.
//!
//! # Writing a backend
//! Implement the five required methods; the rest have defaults. The example keeps blocks in a
//! `Mutex<Vec<u8>>`; a real one would call into its storage service instead.
//! ```
//! use std::{io, ops::Range, sync::Mutex};
//! use scsi_core::backend::{BlockBackend, BufResult, IoBuf};
//!
//! struct MyDisk(Mutex<Vec<u8>>);
//!
//! impl BlockBackend for MyDisk {
//!     fn len(&self) -> u64 {
//!         self.0.lock().unwrap().len() as u64
//!     }
//!     async fn read_at<B: IoBuf>(&self, offset: u64, mut buf: B, range: Range<usize>) -> BufResult<B> {
//!         let disk = self.0.lock().unwrap();
//!         let start = offset as usize; // the logical unit checked offset + len <= self.len()
//!         let len = range.len();
//!         buf.as_mut_bytes()[range].copy_from_slice(&disk[start..start + len]);
//!         (Ok(()), buf)
//!     }
//!     async fn write_at<B: IoBuf>(&self, offset: u64, buf: B, range: Range<usize>, _fua: bool) -> BufResult<B> {
//!         let mut disk = self.0.lock().unwrap();
//!         let start = offset as usize;
//!         disk[start..start + range.len()].copy_from_slice(&buf.as_bytes()[range]);
//!         (Ok(()), buf)
//!     }
//!     async fn flush(&self) -> io::Result<()> {
//!         Ok(())
//!     }
//!     async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
//!         let mut disk = self.0.lock().unwrap();
//!         disk[offset as usize..(offset + len) as usize].fill(0);
//!         Ok(())
//!     }
//! }
//! # let disk = MyDisk(Mutex::new(vec![0; 4096]));
//! # assert_eq!(disk.len(), 4096);
//! ```

use std::{future::Future, io, ops::Range};

mod file;
mod ram;

pub use file::{FileBackend, FileBackendOptions};
pub use ram::RamBackend;

/// Memory an I/O works on. It is moved into the backend for the duration of the I/O and handed
/// back with the result, so it must be `Send + 'static`.
///
/// Implemented for `Vec<u8>`, `Box<[u8]>` and `bytes::BytesMut`; a transport implements it for
/// its own (for example RDMA-registered) buffers.
pub trait IoBuf: Send + 'static {
    /// The initialised bytes.
    fn as_bytes(&self) -> &[u8];
    /// The initialised bytes, writable.
    fn as_mut_bytes(&mut self) -> &mut [u8];
}

impl IoBuf for Vec<u8> {
    fn as_bytes(&self) -> &[u8] {
        self
    }
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        self
    }
}

impl IoBuf for Box<[u8]> {
    fn as_bytes(&self) -> &[u8] {
        self
    }
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        self
    }
}

impl IoBuf for bytes::BytesMut {
    fn as_bytes(&self) -> &[u8] {
        self
    }
    fn as_mut_bytes(&mut self) -> &mut [u8] {
        self
    }
}

/// The result of an I/O together with the buffer it ran on.
pub type BufResult<B> = (io::Result<()>, B);

/// Whether a range of the device holds data or was deallocated (GET LBA STATUS, SBC-3 §5.7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockState {
    /// Mapped: reads return what was written.
    Mapped,
    /// Deallocated (thin-provisioned hole): reads return zeros.
    Deallocated,
}

/// What a backend can do with discards, reported to initiators in VPD page B2h and READ
/// CAPACITY (16).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Provisioning {
    /// Storage is allocated on write and freed by discard (thin provisioning).
    pub thin: bool,
    /// Reads of discarded ranges return zeros (LBPRZ).
    pub discard_zeroes: bool,
}

/// Block storage behind a logical unit.
///
/// Offsets and lengths are in bytes; the logical unit checks every range against [`len`] before
/// it calls the backend, and only passes block-aligned ranges for reads and writes of whole
/// blocks (a residual-truncated transfer may end inside a block).
///
/// Methods run concurrently from many tasks: the backend is shared (`&self`). A `write_at` with
/// `fua` set must be durable before it completes; [`flush`] makes every completed write durable.
///
/// [`len`]: BlockBackend::len
/// [`flush`]: BlockBackend::flush
pub trait BlockBackend: Send + Sync + 'static {
    /// Size of the device in bytes.
    fn len(&self) -> u64;

    /// `true` when the device has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads `range.len()` bytes at `offset` into `buf[range]`.
    fn read_at<B: IoBuf>(
        &self,
        offset: u64,
        buf: B,
        range: Range<usize>,
    ) -> impl Future<Output = BufResult<B>> + Send;

    /// Writes `buf[range]` at `offset`; durable before completion when `fua` is set.
    fn write_at<B: IoBuf>(
        &self,
        offset: u64,
        buf: B,
        range: Range<usize>,
        fua: bool,
    ) -> impl Future<Output = BufResult<B>> + Send;

    /// Makes every completed write durable (SYNCHRONIZE CACHE, FUA fallback).
    fn flush(&self) -> impl Future<Output = io::Result<()>> + Send;

    /// Deallocates `len` bytes at `offset` (UNMAP, WRITE SAME with UNMAP). Afterwards the range
    /// reads as zeros if [`Provisioning::discard_zeroes`] is reported. A backend that cannot free
    /// space writes zeros instead.
    fn discard(&self, offset: u64, len: u64) -> impl Future<Output = io::Result<()>> + Send;

    /// What discards do on this backend. Default: fully provisioned, discards zero the range.
    fn provisioning(&self) -> Provisioning {
        Provisioning {
            thin: false,
            discard_zeroes: true,
        }
    }

    /// The state of the range starting at `offset`: its state and how many bytes (at most `len`,
    /// at least 1 when `len > 0`) share it. Default: everything is mapped.
    fn block_state(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = io::Result<(BlockState, u64)>> + Send {
        let _ = offset;
        async move { Ok((BlockState::Mapped, len)) }
    }
}
