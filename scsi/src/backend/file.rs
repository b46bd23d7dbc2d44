//! [`FileBackend`]: a disk backed by a regular file or a block device.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Seek},
    ops::Range,
    os::unix::fs::{FileExt, FileTypeExt},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::runtime::Handle;

use super::{BlockBackend, BlockState, BufResult, IoBuf, Provisioning};

/// Zeros written by a discard that cannot punch a hole, a piece at a time.
static ZEROS: [u8; 256 << 10] = [0; 256 << 10];

/// How to open a [`FileBackend`]: builder-style, starting from [`FileBackendOptions::new`].
///
/// ```no_run
/// # use scsi_core::backend::{FileBackend, FileBackendOptions};
/// // A 10 GiB sparse image, created on first use.
/// let disk = FileBackend::open(FileBackendOptions::new("/var/lib/disk0.img").create(10 << 30))?;
/// // An existing block device, exported read-only.
/// let ro = FileBackend::open(FileBackendOptions::new("/dev/sdb").read_only(true))?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use = "options do nothing until opened"]
pub struct FileBackendOptions {
    path: PathBuf,
    create_len: Option<u64>,
    read_only: bool,
    sync_on_fua: bool,
}

impl FileBackendOptions {
    /// Options to open the existing file or block device at `path`, read-write, with FUA writes
    /// made durable.
    pub fn new(path: impl Into<PathBuf>) -> FileBackendOptions {
        FileBackendOptions {
            path: path.into(),
            create_len: None,
            read_only: false,
            sync_on_fua: true,
        }
    }

    /// Creates the file if it does not exist, as a sparse file of `len` bytes (no space is
    /// allocated until written). An existing file is opened as it is, its size unchanged.
    /// Cannot be combined with [`read_only`](Self::read_only).
    pub fn create(mut self, len: u64) -> FileBackendOptions {
        self.create_len = Some(len);
        self
    }

    /// Opens the file read-only: writes and discards then fail with
    /// [`io::ErrorKind::PermissionDenied`]. Default: `false`.
    pub fn read_only(mut self, read_only: bool) -> FileBackendOptions {
        self.read_only = read_only;
        self
    }

    /// Whether a FUA write is made durable before it completes (default: `true`, as SCSI
    /// requires). `false` turns FUA writes into plain writes, durable only at the next
    /// [`flush`](BlockBackend::flush): only for scratch disks whose contents may be lost.
    pub fn sync_on_fua(mut self, sync_on_fua: bool) -> FileBackendOptions {
        self.sync_on_fua = sync_on_fua;
        self
    }

    /// The path to open.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the backend: the same as [`FileBackend::open`].
    pub fn open(self) -> io::Result<FileBackend> {
        FileBackend::open(self)
    }
}

/// A disk backed by a regular file or a block device, opened once and shared by all I/O.
///
/// Reads and writes are positioned (`pread`/`pwrite`) and run on tokio's blocking thread pool
/// (`spawn_blocking`), the buffer moving there and back, so every async method must be called
/// from within a **tokio runtime**; outside one they fail with an error (they do not panic).
///
/// - FUA writes use `pwritev2(RWF_DSYNC)`, falling back to a write then `fdatasync`;
///   [`flush`](BlockBackend::flush) is `fdatasync`.
/// - [`discard`](BlockBackend::discard) punches a hole (`fallocate(PUNCH_HOLE | KEEP_SIZE)`);
///   where that is not supported it writes zeros, so discarded ranges always read as zeros.
///   A regular file on which hole punching works (probed at open) reports thin provisioning.
/// - [`block_state`](BlockBackend::block_state) finds holes with `lseek(SEEK_DATA/SEEK_HOLE)`,
///   reporting everything as mapped where that is not supported.
///
/// The size is read once at open; resizing the file underneath the backend is not supported.
#[derive(Clone, Debug)]
pub struct FileBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    file: File,
    path: PathBuf,
    len: u64,
    read_only: bool,
    sync_on_fua: bool,
    /// Thin provisioning reported to initiators: hole punching worked at open.
    thin: bool,
    /// Whether discard still tries to punch holes (cleared when the file system refuses).
    punch: AtomicBool,
}

impl FileBackend {
    /// Opens (or creates) the file or block device `options` describe.
    ///
    /// Fails if the path is neither a regular file nor a block device, or if
    /// [`create`](FileBackendOptions::create) is combined with
    /// [`read_only`](FileBackendOptions::read_only).
    pub fn open(options: FileBackendOptions) -> io::Result<FileBackend> {
        let FileBackendOptions {
            path,
            create_len,
            read_only,
            sync_on_fua,
        } = options;
        let mut open = OpenOptions::new();
        open.read(true).write(!read_only);
        let file = match create_len {
            Some(_) if read_only => return Err(invalid("cannot create a file opened read-only")),
            Some(len) => match open.clone().create_new(true).open(&path) {
                Ok(file) => {
                    if let Err(e) = file.set_len(len) {
                        let _ = fs::remove_file(&path);
                        return Err(e);
                    }
                    file
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open.open(&path)?,
                Err(e) => return Err(e),
            },
            None => open.open(&path)?,
        };
        let meta = file.metadata()?;
        let file_type = meta.file_type();
        let (len, regular) = if file_type.is_file() {
            (meta.len(), true)
        } else if file_type.is_block_device() {
            ((&file).seek(io::SeekFrom::End(0))?, false)
        } else {
            return Err(invalid("not a regular file or a block device"));
        };
        // Punching a hole past the end of a regular file changes nothing, and fails if the file
        // system cannot punch holes at all.
        let thin = regular && !read_only && punch_hole(&file, len, 1).is_ok();
        Ok(FileBackend {
            inner: Arc::new(Inner {
                file,
                path,
                len,
                read_only,
                sync_on_fua,
                thin,
                punch: AtomicBool::new(!read_only),
            }),
        })
    }

    /// Opens the existing file or block device at `path` read-write with default options.
    pub fn open_path(path: impl Into<PathBuf>) -> io::Result<FileBackend> {
        FileBackend::open(FileBackendOptions::new(path))
    }

    /// The path the backend was opened from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// `true` when opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    fn check_range(&self, offset: u64, len: u64) -> io::Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.inner.len => Ok(()),
            _ => Err(invalid("range past the end of the device")),
        }
    }

    fn check_writable(&self) -> io::Result<()> {
        if self.inner.read_only {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "backend is read-only",
            ))
        } else {
            Ok(())
        }
    }

    /// Checks `offset` and `buf[range]` before an I/O.
    fn check_io(&self, offset: u64, buf: &impl IoBuf, range: &Range<usize>) -> io::Result<()> {
        if buf.as_bytes().get(range.clone()).is_none() {
            return Err(invalid("buffer range out of bounds"));
        }
        self.check_range(offset, range.len() as u64)
    }
}

impl Inner {
    fn write(&self, data: &[u8], offset: u64, fua: bool) -> io::Result<()> {
        if fua && self.sync_on_fua {
            write_durable(&self.file, data, offset)
        } else {
            self.file.write_all_at(data, offset)
        }
    }

    fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        if self.punch.load(Ordering::Relaxed) {
            match punch_hole(&self.file, offset, len) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Unsupported => {
                    self.punch.store(false, Ordering::Relaxed);
                }
                // Block devices refuse ranges not aligned to their logical blocks.
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {}
                Err(e) => return Err(e),
            }
        }
        self.write_zeros(offset, len)
    }

    /// Writes `len` zero bytes at `offset`, [`ZEROS`] at a time.
    fn write_zeros(&self, offset: u64, len: u64) -> io::Result<()> {
        let mut done = 0;
        while done < len {
            let piece = (len - done).min(ZEROS.len() as u64) as usize;
            let zeros = ZEROS.get(..piece).unwrap_or_default();
            self.file.write_all_at(zeros, offset + done)?;
            done += piece as u64;
        }
        Ok(())
    }

    fn block_state(&self, offset: u64, len: u64) -> io::Result<(BlockState, u64)> {
        let end = offset + len;
        let (state, until) = extent(&self.file, offset).unwrap_or((BlockState::Mapped, end));
        Ok((state, until.clamp(offset + 1, end) - offset))
    }
}

impl BlockBackend for FileBackend {
    fn len(&self) -> u64 {
        self.inner.len
    }

    async fn read_at<B: IoBuf>(&self, offset: u64, buf: B, range: Range<usize>) -> BufResult<B> {
        if let Err(e) = self.check_io(offset, &buf, &range) {
            return (Err(e), buf);
        }
        let inner = Arc::clone(&self.inner);
        blocking_io(buf, move |buf| match buf.as_mut_bytes().get_mut(range) {
            Some(dst) => inner.file.read_exact_at(dst, offset),
            None => Err(invalid("buffer range out of bounds")),
        })
        .await
    }

    async fn write_at<B: IoBuf>(
        &self,
        offset: u64,
        buf: B,
        range: Range<usize>,
        fua: bool,
    ) -> BufResult<B> {
        if let Err(e) = self
            .check_writable()
            .and_then(|()| self.check_io(offset, &buf, &range))
        {
            return (Err(e), buf);
        }
        let inner = Arc::clone(&self.inner);
        blocking_io(buf, move |buf| match buf.as_bytes().get(range) {
            Some(src) => inner.write(src, offset, fua),
            None => Err(invalid("buffer range out of bounds")),
        })
        .await
    }

    async fn flush(&self) -> io::Result<()> {
        if self.inner.read_only {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.file.sync_data()).await
    }

    async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        self.check_writable()?;
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok(());
        }
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.discard(offset, len)).await
    }

    fn provisioning(&self) -> Provisioning {
        Provisioning {
            thin: self.inner.thin,
            discard_zeroes: true,
        }
    }

    async fn block_state(&self, offset: u64, len: u64) -> io::Result<(BlockState, u64)> {
        self.check_range(offset, len)?;
        if len == 0 {
            return Ok((BlockState::Mapped, 0));
        }
        let inner = Arc::clone(&self.inner);
        blocking(move || inner.block_state(offset, len)).await
    }
}

/// Runs `op` on the buffer on tokio's blocking pool and hands the buffer back, whatever
/// happens: the buffer stays in a shared slot the closure only borrows it from, so even a
/// panic in `op` (say in a foreign [`IoBuf`]) or a cancelled task leaves it there.
async fn blocking_io<B: IoBuf>(
    buf: B,
    op: impl FnOnce(&mut B) -> io::Result<()> + Send + 'static,
) -> BufResult<B> {
    let Ok(handle) = Handle::try_current() else {
        return (Err(no_runtime()), buf);
    };
    let slot = Arc::new(Mutex::new(Some(buf)));
    let task_slot = Arc::clone(&slot);
    let joined = handle
        .spawn_blocking(move || {
            let mut guard = task_slot.lock().unwrap_or_else(PoisonError::into_inner);
            match guard.as_mut() {
                Some(buf) => op(buf),
                None => Err(io::Error::other("I/O buffer missing")),
            }
        })
        .await;
    let res = joined.unwrap_or_else(|e| Err(join_error(e)));
    let buf = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    match buf {
        Some(buf) => (res, buf),
        // Only this function takes the buffer out of the slot, and only here.
        None => unreachable!("the I/O buffer is taken back once"),
    }
}

/// Runs `op` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    op: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let handle = Handle::try_current().map_err(|_| no_runtime())?;
    handle
        .spawn_blocking(op)
        .await
        .unwrap_or_else(|e| Err(join_error(e)))
}

fn no_runtime() -> io::Error {
    io::Error::other("FileBackend I/O needs a tokio runtime")
}

fn join_error(e: tokio::task::JoinError) -> io::Error {
    io::Error::other(format!("blocking I/O task failed: {e}"))
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Writes all of `data` at `offset`, durable on return.
#[cfg(target_os = "linux")]
fn write_durable(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    use rustix::io::{Errno, ReadWriteFlags, pwritev2};
    let mut done = 0;
    while let Some(rest) = data.get(done..).filter(|rest| !rest.is_empty()) {
        let at = offset + done as u64;
        match pwritev2(file, &[io::IoSlice::new(rest)], at, ReadWriteFlags::DSYNC) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(Errno::INTR) => {}
            // Kernels before 4.7 know no RWF_DSYNC.
            Err(Errno::OPNOTSUPP | Errno::NOSYS) => {
                file.write_all_at(rest, at)?;
                return file.sync_data();
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Writes all of `data` at `offset`, durable on return.
#[cfg(not(target_os = "linux"))]
fn write_durable(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    file.write_all_at(data, offset)?;
    file.sync_data()
}

/// Deallocates `len` bytes at `offset`; [`io::ErrorKind::Unsupported`] when the file system
/// cannot.
#[cfg(target_os = "linux")]
fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use rustix::{
        fs::{FallocateFlags, fallocate},
        io::Errno,
    };
    loop {
        match fallocate(
            file,
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        ) {
            Err(Errno::INTR) => {}
            Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::NODEV) => {
                return Err(io::ErrorKind::Unsupported.into());
            }
            res => return res.map_err(Into::into),
        }
    }
}

/// Deallocates `len` bytes at `offset`; [`io::ErrorKind::Unsupported`] when the file system
/// cannot.
#[cfg(not(target_os = "linux"))]
fn punch_hole(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The state of the file at `offset` and where it changes (`u64::MAX`: not before the end), or
/// `None` if the file system cannot tell.
#[cfg(target_os = "linux")]
fn extent(file: &File, offset: u64) -> Option<(BlockState, u64)> {
    use rustix::{
        fs::{SeekFrom, seek},
        io::Errno,
    };
    match seek(file, SeekFrom::Data(offset)) {
        Ok(data) if data > offset => Some((BlockState::Deallocated, data)),
        Ok(_) => seek(file, SeekFrom::Hole(offset))
            .ok()
            .map(|hole| (BlockState::Mapped, hole)),
        // No data at or after offset.
        Err(Errno::NXIO) => Some((BlockState::Deallocated, u64::MAX)),
        Err(_) => None,
    }
}

/// `None`: this platform cannot tell data from holes.
#[cfg(not(target_os = "linux"))]
fn extent(_file: &File, _offset: u64) -> Option<(BlockState, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use std::{
        future::Future,
        os::unix::fs::MetadataExt,
        pin::pin,
        sync::atomic::AtomicUsize,
        task::{Context, Poll, Waker},
    };

    use super::*;
    use BlockState::{Deallocated, Mapped};

    const MIB: u64 = 1 << 20;

    /// A unique path under the temp directory, removed on drop.
    struct TempPath(PathBuf);

    impl TempPath {
        fn new(name: &str) -> TempPath {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let pid = std::process::id();
            TempPath(std::env::temp_dir().join(format!("scsi-core-file-{pid}-{name}-{n}.img")))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }

    fn create(name: &str, len: u64) -> (TempPath, FileBackend) {
        let tmp = TempPath::new(name);
        let disk = FileBackendOptions::new(&tmp.0).create(len).open().unwrap();
        (tmp, disk)
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(13) ^ seed)
            .collect()
    }

    fn kind<T: std::fmt::Debug>(res: io::Result<T>) -> io::ErrorKind {
        res.unwrap_err().kind()
    }

    fn all(bytes: &[u8], value: u8) -> bool {
        bytes.iter().all(|&b| b == value)
    }

    async fn write(disk: &FileBackend, offset: u64, data: Vec<u8>, fua: bool) {
        let len = data.len();
        disk.write_at(offset, data, 0..len, fua).await.0.unwrap();
    }

    async fn read(disk: &FileBackend, offset: u64, len: usize) -> Vec<u8> {
        let (res, buf) = disk.read_at(offset, vec![0xAA; len], 0..len).await;
        res.unwrap();
        buf
    }

    fn blocks(disk: &FileBackend) -> u64 {
        fs::metadata(disk.path()).unwrap().blocks()
    }

    #[tokio::test]
    async fn read_after_write_fua_flush_and_reopen() {
        let (tmp, disk) = create("rw", 4 * MIB);
        let data = pattern(300_000, 3);
        write(&disk, MIB - 4096, data.clone(), false).await;
        write(&disk, 3 * MIB, pattern(8192, 9), true).await;
        disk.flush().await.unwrap();
        assert_eq!(read(&disk, MIB - 4096, data.len()).await, data);
        let (res, buf) = disk.read_at(3 * MIB, vec![0xEE; 300], 100..200).await;
        res.unwrap();
        assert_eq!(&buf[100..200], &pattern(8192, 9)[..100]);
        assert!(all(&buf[..100], 0xEE) && all(&buf[200..], 0xEE));
        drop(disk);
        // Reopening keeps contents and size, even with `create`.
        let again = FileBackendOptions::new(&tmp.0).create(MIB).open().unwrap();
        assert_eq!(again.len(), 4 * MIB);
        assert_eq!(read(&again, 3 * MIB, 8192).await, pattern(8192, 9));
        let plain = FileBackend::open_path(&tmp.0).unwrap();
        let unsynced = FileBackendOptions::new(&tmp.0).sync_on_fua(false);
        write(&unsynced.open().unwrap(), 0, pattern(4096, 1), true).await;
        assert_eq!(read(&plain, 0, 4096).await, pattern(4096, 1));
    }

    #[tokio::test]
    async fn discard_punches_holes_and_reads_zeros() {
        let (_tmp, disk) = create("punch", 8 * MIB);
        assert_eq!(disk.len(), 8 * MIB);
        assert!(blocks(&disk) < 64, "created sparse");
        assert!(all(&read(&disk, 5 * MIB + 7, 10_000).await, 0));
        assert!(disk.provisioning().discard_zeroes);
        let expect = pattern(4 * MIB as usize, 7);
        write(&disk, 0, expect.clone(), false).await;
        disk.flush().await.unwrap();
        let before = blocks(&disk);
        disk.discard(MIB, 2 * MIB).await.unwrap();
        // A partial-block discard zeroes exactly its bytes.
        disk.discard(3 * MIB + 100, 50).await.unwrap();
        let got = read(&disk, 0, 4 * MIB as usize).await;
        let (m1, m3) = (MIB as usize, 3 * MIB as usize);
        assert_eq!(&got[..m1], &expect[..m1]);
        assert!(all(&got[m1..m3], 0) && all(&got[m3 + 100..m3 + 150], 0));
        assert_eq!(&got[m3..m3 + 100], &expect[m3..m3 + 100]);
        assert_eq!(&got[m3 + 150..], &expect[m3 + 150..]);
        if !disk.provisioning().thin {
            eprintln!("file system cannot punch holes: skipping allocation checks");
            return;
        }
        let after = blocks(&disk);
        assert!(
            after <= before - 2 * MIB / 512,
            "{before} -> {after} blocks"
        );
        for (offset, len, want) in [
            (0, 8 * MIB, (Mapped, MIB)),
            (7 * MIB, 100, (Deallocated, 100)),
            (MIB, 7 * MIB, (Deallocated, 2 * MIB)),
            (2 * MIB, 100, (Deallocated, 100)),
            (3 * MIB, 5 * MIB, (Mapped, MIB)),
            (4 * MIB, 4 * MIB, (Deallocated, 4 * MIB)),
        ] {
            assert_eq!(
                disk.block_state(offset, len).await.unwrap(),
                want,
                "at {offset}"
            );
        }
    }

    #[tokio::test]
    async fn discard_falls_back_to_writing_zeros() {
        let (_tmp, disk) = create("zeros", 2 * MIB);
        write(&disk, 0, vec![0xFF; 2 * MIB as usize], false).await;
        disk.inner.punch.store(false, Ordering::Relaxed);
        disk.discard(1000, MIB + 300_000).await.unwrap();
        let got = read(&disk, 0, 2 * MIB as usize).await;
        let end = (1000 + MIB + 300_000) as usize;
        assert!(all(&got[..1000], 0xFF) && all(&got[1000..end], 0) && all(&got[end..], 0xFF));
    }

    #[tokio::test]
    async fn read_only_refuses_writes() {
        let (tmp, disk) = create("ro", MIB);
        write(&disk, 0, pattern(4096, 5), true).await;
        let ro = FileBackendOptions::new(&tmp.0).read_only(true).open();
        let ro = ro.unwrap();
        assert!(ro.is_read_only());
        let (res, buf) = ro.write_at(0, vec![1; 512], 0..512, false).await;
        assert_eq!(kind(res), io::ErrorKind::PermissionDenied);
        assert_eq!(buf, vec![1; 512]);
        assert_eq!(
            kind(ro.discard(0, 512).await),
            io::ErrorKind::PermissionDenied
        );
        assert_eq!(read(&ro, 0, 4096).await, pattern(4096, 5));
        ro.flush().await.unwrap();
        assert!(!ro.provisioning().thin);
    }

    #[tokio::test]
    async fn bad_opens_and_ranges_are_errors() {
        let missing = TempPath::new("missing");
        assert_eq!(
            kind(FileBackend::open_path(&missing.0)),
            io::ErrorKind::NotFound
        );
        let both = FileBackendOptions::new(&missing.0)
            .create(MIB)
            .read_only(true);
        assert_eq!(kind(both.open()), io::ErrorKind::InvalidInput);
        assert!(!missing.0.exists());
        let dir = FileBackendOptions::new(std::env::temp_dir()).read_only(true);
        assert!(dir.open().is_err());

        let (_tmp, disk) = create("range", MIB);
        let invalid = io::ErrorKind::InvalidInput;
        assert_eq!(
            kind(disk.read_at(MIB - 4, vec![0; 8], 0..8).await.0),
            invalid
        );
        assert_eq!(
            kind(disk.write_at(u64::MAX - 2, vec![0; 8], 0..8, true).await.0),
            invalid
        );
        assert_eq!(
            kind(disk.write_at(0, vec![0; 8], 4..16, false).await.0),
            invalid
        );
        assert_eq!(kind(disk.discard(MIB, 1).await), invalid);
        assert_eq!(kind(disk.discard(1, u64::MAX).await), invalid);
        assert_eq!(kind(disk.block_state(0, MIB + 1).await), invalid);
        disk.discard(MIB, 0).await.unwrap();
        assert_eq!(disk.block_state(MIB, 0).await.unwrap(), (Mapped, 0));
    }

    #[test]
    fn outside_a_runtime_is_an_error() {
        let (_tmp, disk) = create("no-runtime", MIB);
        let mut cx = Context::from_waker(Waker::noop());
        let read = pin!(disk.read_at(0, vec![0; 16], 0..16)).poll(&mut cx);
        assert!(matches!(read, Poll::Ready((Err(_), buf)) if buf.len() == 16));
        assert!(matches!(
            pin!(disk.flush()).poll(&mut cx),
            Poll::Ready(Err(_))
        ));
    }

    /// A buffer whose `as_mut_bytes` panics, as a faulty foreign buffer might.
    struct Faulty(Vec<u8>);

    impl IoBuf for Faulty {
        fn as_bytes(&self) -> &[u8] {
            &self.0
        }
        fn as_mut_bytes(&mut self) -> &mut [u8] {
            panic!("faulty buffer")
        }
    }

    #[tokio::test]
    async fn panicking_buffer_is_an_error_and_comes_back() {
        let (_tmp, disk) = create("faulty", MIB);
        let (res, buf) = disk.read_at(0, Faulty(vec![3; 64]), 0..64).await;
        assert_eq!(kind(res), io::ErrorKind::Other);
        assert_eq!(buf.0, vec![3; 64]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers() {
        let (_tmp, disk) = create("concurrent", 8 * MIB);
        let tasks: Vec<_> = (0..8u8)
            .map(|t| {
                let disk = disk.clone();
                tokio::spawn(async move {
                    for round in 0..32u64 {
                        let offset = u64::from(t) * MIB + round * 8192;
                        let data = pattern(8192, t.wrapping_add(round as u8));
                        write(&disk, offset, data.clone(), round % 4 == 0).await;
                        assert_eq!(read(&disk, offset, 8192).await, data);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            read(&disk, 7 * MIB + 31 * 8192, 8192).await,
            pattern(8192, 7 + 31)
        );
    }
}
