//! A target over your own storage: implement [`BlockBackend`] and hand it to a LUN.
//!
//! This backend keeps the disk in one `Vec<u8>` behind a lock and counts the bytes moved;
//! replace the bodies with calls to your storage (an object store, a database, a network
//! block device...). The engine gives every call an owned buffer and takes it back with the
//! result, so a backend may hand it to another thread or to the kernel without copying.
//!
//! ```text
//! cargo run -p iscsi-examples --bin custom-target -- 127.0.0.1:3260
//! iscsi-inq iscsi://127.0.0.1:3260/iqn.2026-11.rs.iscsi:custom/0
//! ```

use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use iscsi::scsi::backend::{BlockBackend, BufResult, IoBuf};
use iscsi::scsi::lu::{LogicalUnit, LuConfig};
use iscsi::target::{Target, TargetConfig, TargetNode};

/// A disk in memory that counts what it reads and writes.
struct CountingDisk {
    data: Mutex<Vec<u8>>,
    read_bytes: Arc<AtomicU64>,
    written_bytes: Arc<AtomicU64>,
}

impl CountingDisk {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `offset .. offset + len` inside a disk of `size` bytes, or an error.
fn span(offset: u64, len: usize, size: usize) -> io::Result<Range<usize>> {
    let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
    match start.checked_add(len) {
        Some(end) if end <= size => Ok(start..end),
        _ => Err(io::ErrorKind::InvalidInput.into()),
    }
}

impl BlockBackend for CountingDisk {
    fn len(&self) -> u64 {
        self.lock().len() as u64
    }

    async fn read_at<B: IoBuf>(
        &self,
        offset: u64,
        mut buf: B,
        range: Range<usize>,
    ) -> BufResult<B> {
        let r = (|| {
            let disk = self.lock();
            let src = span(offset, range.len(), disk.len())?;
            let dst = buf
                .as_mut_bytes()
                .get_mut(range.clone())
                .ok_or(io::ErrorKind::InvalidInput)?;
            dst.copy_from_slice(&disk[src]);
            Ok(())
        })();
        self.read_bytes
            .fetch_add(range.len() as u64, Ordering::Relaxed);
        (r, buf)
    }

    async fn write_at<B: IoBuf>(
        &self,
        offset: u64,
        buf: B,
        range: Range<usize>,
        _fua: bool,
    ) -> BufResult<B> {
        let r = (|| {
            let mut disk = self.lock();
            let dst = span(offset, range.len(), disk.len())?;
            let src = buf
                .as_bytes()
                .get(range.clone())
                .ok_or(io::ErrorKind::InvalidInput)?;
            disk[dst].copy_from_slice(src);
            Ok(())
        })();
        self.written_bytes
            .fetch_add(range.len() as u64, Ordering::Relaxed);
        (r, buf)
    }

    async fn flush(&self) -> io::Result<()> {
        Ok(())
    }

    async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut disk = self.lock();
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        let r = span(offset, len, disk.len())?;
        disk[r].fill(0);
        Ok(())
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3260".into());
    let addr = listen
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{listen}: {e}")))?;
    let read_bytes = Arc::new(AtomicU64::new(0));
    let written_bytes = Arc::new(AtomicU64::new(0));
    let disk = CountingDisk {
        data: Mutex::new(vec![0; 64 << 20]),
        read_bytes: read_bytes.clone(),
        written_bytes: written_bytes.clone(),
    };
    let mut cfg = LuConfig::new("custom0001");
    cfg.product = "COUNTING DISK".into();
    let lu = LogicalUnit::new(cfg, disk)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let node = TargetNode::new("iqn.2026-11.rs.iscsi:custom").lun(0, lu);
    let target = Target::bind(TargetConfig::default(), &[addr], vec![node]).await?;
    for url in target.urls() {
        println!("{url}");
    }
    let stop = target.shutdown_handle();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.shutdown();
    });
    target.run().await?;
    println!(
        "read {} bytes, wrote {} bytes",
        read_bytes.load(Ordering::Relaxed),
        written_bytes.load(Ordering::Relaxed)
    );
    Ok(())
}
