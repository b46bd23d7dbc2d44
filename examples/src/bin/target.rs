//! An iSCSI target serving RAM disks and files.
//!
//! ```text
//! cargo run --release -p iscsi-examples --bin target -- \
//!     --listen 127.0.0.1:3260 --iqn iqn.2026-11.rs.iscsi:disk --lun ram:1GiB
//! ```
//!
//! It prints one `iscsi://` URL per portal and LUN (libiscsi syntax: `iscsi-ls`, `iscsi-inq`,
//! qemu's `-drive file=iscsi://...`), then serves until Ctrl-C or SIGTERM, when it asks the
//! initiators to log out and waits for in-flight commands. Logs go to stderr
//! (`RUST_LOG=debug` for more).
//!
//! `--transport iser` serves iSER (iSCSI over RDMA) instead, through RDMA-CM on the `--listen`
//! addresses (which must belong to RDMA-capable interfaces: an adapter or soft-RoCE), and
//! prints `iser://` URLs; `--transport both` serves TCP and iSER on the same addresses, as
//! Linux targets do (discovery over TCP, `iscsiadm ... -I iser` logs in over RDMA). iSER needs
//! a build with `--features rdma`.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use iscsi::scsi::backend::{
    BlockBackend, BlockState, BufResult, FileBackend, FileBackendOptions, IoBuf, Provisioning,
    RamBackend,
};
use iscsi::scsi::lu::{LogicalUnit, LuConfig};
use iscsi::target::{Target, TargetConfig, TargetNode};

#[derive(Parser, Debug)]
#[command(about = "An iSCSI target serving RAM disks and files")]
struct Args {
    /// Portal to listen on (repeat for more; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:3260")]
    listen: Vec<SocketAddr>,
    /// The target's iSCSI name.
    #[arg(long, default_value = "iqn.2026-11.rs.iscsi:target")]
    iqn: String,
    /// A LUN, numbered from 0 in order: `ram:SIZE` (e.g. ram:1GiB) or `file:PATH`, optionally
    /// followed by `,ro` (write-protected) and `,removable` (removable medium).
    #[arg(long, required = true)]
    lun: Vec<String>,
    /// Require CHAP with this initiator user and secret (`USER:SECRET`; repeat for more).
    #[arg(long)]
    chap: Vec<String>,
    /// Let a `--chap` user log in only as this initiator name (`USER=INITIATOR-NAME`; repeat
    /// to allow more names). Unbound users may use any name `--allow` admits.
    #[arg(long)]
    chap_initiator: Vec<String>,
    /// The target's name and secret for mutual CHAP (`USER:SECRET`).
    #[arg(long)]
    mutual_chap: Option<String>,
    /// Admit only this initiator name (repeat for more; default: everyone).
    #[arg(long)]
    allow: Vec<String>,
    /// Require CRC32C header digests.
    #[arg(long)]
    header_digest: bool,
    /// Require CRC32C data digests.
    #[arg(long)]
    data_digest: bool,
    /// Most sessions at once.
    #[arg(long, default_value_t = 1024)]
    max_sessions: usize,
    /// Commands each session may have in flight.
    #[arg(long, default_value_t = 128)]
    queue_depth: u32,
    /// Logical block size of every LUN.
    #[arg(long, default_value_t = 512)]
    block_size: u32,
    /// Worker threads (1: everything on one thread, the lowest latency per command).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// How initiators reach the `--listen` addresses: iSCSI over TCP, iSER over RDMA-CM, or
    /// both (iSER needs a build with `--features rdma`).
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    transport: TransportArg,
}

/// `--transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum TransportArg {
    Tcp,
    Iser,
    Both,
}

/// The backends this program serves, as one type.
enum AnyBackend {
    Ram(RamBackend),
    File(FileBackend),
}

impl BlockBackend for AnyBackend {
    fn len(&self) -> u64 {
        match self {
            AnyBackend::Ram(b) => b.len(),
            AnyBackend::File(b) => b.len(),
        }
    }

    async fn read_at<B: IoBuf>(&self, offset: u64, buf: B, range: Range<usize>) -> BufResult<B> {
        match self {
            AnyBackend::Ram(b) => b.read_at(offset, buf, range).await,
            AnyBackend::File(b) => b.read_at(offset, buf, range).await,
        }
    }

    async fn write_at<B: IoBuf>(
        &self,
        offset: u64,
        buf: B,
        range: Range<usize>,
        fua: bool,
    ) -> BufResult<B> {
        match self {
            AnyBackend::Ram(b) => b.write_at(offset, buf, range, fua).await,
            AnyBackend::File(b) => b.write_at(offset, buf, range, fua).await,
        }
    }

    async fn flush(&self) -> io::Result<()> {
        match self {
            AnyBackend::Ram(b) => b.flush().await,
            AnyBackend::File(b) => b.flush().await,
        }
    }

    async fn discard(&self, offset: u64, len: u64) -> io::Result<()> {
        match self {
            AnyBackend::Ram(b) => b.discard(offset, len).await,
            AnyBackend::File(b) => b.discard(offset, len).await,
        }
    }

    fn provisioning(&self) -> Provisioning {
        match self {
            AnyBackend::Ram(b) => b.provisioning(),
            AnyBackend::File(b) => b.provisioning(),
        }
    }

    async fn block_state(&self, offset: u64, len: u64) -> io::Result<(BlockState, u64)> {
        match self {
            AnyBackend::Ram(b) => b.block_state(offset, len).await,
            AnyBackend::File(b) => b.block_state(offset, len).await,
        }
    }
}

/// Parses `1GiB`, `64MiB`, `512M`, `4096`... into bytes.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let n: u64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        "t" | "tib" | "tb" => 1 << 40,
        _ => return Err(format!("bad size unit in {s:?} (use KiB, MiB, GiB or TiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// A `--lun` argument: the backend and the unit's options.
struct LunSpec {
    backend: AnyBackend,
    read_only: bool,
    removable: bool,
}

/// Parses `ram:SIZE[,ro][,removable]` or `file:PATH[,ro][,removable]`.
fn parse_lun(spec: &str) -> Result<LunSpec, String> {
    let mut rest = spec;
    let (mut read_only, mut removable) = (false, false);
    loop {
        if let Some(r) = rest.strip_suffix(",ro") {
            (rest, read_only) = (r, true);
        } else if let Some(r) = rest.strip_suffix(",removable") {
            (rest, removable) = (r, true);
        } else {
            break;
        }
    }
    let backend = if let Some(size) = rest.strip_prefix("ram:") {
        let len = parse_size(size)?;
        if len == 0 {
            return Err("a RAM LUN needs a size above 0".into());
        }
        AnyBackend::Ram(RamBackend::new(len))
    } else if let Some(path) = rest.strip_prefix("file:") {
        let opts = FileBackendOptions::new(PathBuf::from(path)).read_only(read_only);
        let b = opts
            .open()
            .map_err(|e| format!("cannot open {path}: {e}"))?;
        AnyBackend::File(b)
    } else {
        return Err(format!(
            "bad LUN {spec:?}: use ram:SIZE or file:PATH, optionally followed by ,ro and ,removable"
        ));
    };
    Ok(LunSpec {
        backend,
        read_only,
        removable,
    })
}

fn split_cred(s: &str) -> Result<(String, String), String> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() && !p.is_empty() => Ok((u.to_owned(), p.to_owned())),
        _ => Err("CHAP credentials must be USER:SECRET".into()),
    }
}

fn build(args: &Args) -> Result<(TargetConfig, TargetNode<AnyBackend>), String> {
    let mut node = TargetNode::new(args.iqn.clone());
    for (i, spec) in args.lun.iter().enumerate() {
        let LunSpec {
            backend,
            read_only,
            removable,
        } = parse_lun(spec)?;
        let mut cfg = LuConfig::new(format!("{:08x}{:04}", fnv(&args.iqn), i));
        cfg.block_size = args.block_size;
        // As large as the engine's per-command limit (64 MiB).
        cfg.max_transfer_blocks = (64 << 20) / args.block_size.max(512);
        cfg.read_only = read_only;
        cfg.removable = removable;
        cfg.product = match backend {
            AnyBackend::Ram(_) => "RAMDISK".into(),
            AnyBackend::File(_) => "FILEIO".into(),
        };
        let lu = LogicalUnit::new(cfg, backend).map_err(|e| format!("LUN {i} ({spec}): {e}"))?;
        let n = u16::try_from(i).map_err(|_| "too many LUNs".to_string())?;
        node = node.lun(n, lu);
    }
    let mut users = Vec::new();
    for c in &args.chap {
        users.push(split_cred(c)?);
    }
    for b in &args.chap_initiator {
        let Some((user, initiator)) = b.split_once('=') else {
            return Err(format!("--chap-initiator {b:?}: use USER=INITIATOR-NAME"));
        };
        let Some((_, secret)) = users.iter().find(|(u, _)| u == user) else {
            return Err(format!("--chap-initiator {b:?}: no --chap user {user:?}"));
        };
        node = node.chap_for(initiator, user, secret.clone().into_bytes());
    }
    for (u, p) in users {
        node = node.chap(u, p.into_bytes());
    }
    if let Some(m) = &args.mutual_chap {
        if args.chap.is_empty() {
            return Err("--mutual-chap needs --chap".into());
        }
        let (u, p) = split_cred(m)?;
        node = node.mutual_chap(u, p.into_bytes());
    }
    for a in &args.allow {
        node = node.allow(a.clone());
    }
    let mut cfg = TargetConfig::default()
        .require_header_digest(args.header_digest)
        .require_data_digest(args.data_digest);
    cfg.max_sessions = args.max_sessions;
    cfg.session.queue_depth = args.queue_depth.clamp(1, 65536);
    Ok((cfg, node))
}

/// A short stable hash (for serial numbers derived from the target name).
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    };
    match rt {
        Ok(rt) => rt.block_on(serve(args)),
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            ExitCode::from(1)
        }
    }
}

async fn serve(args: Args) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .init();
    let (cfg, node) = match build(&args) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let made = match args.transport {
        TransportArg::Iser => Target::without_tcp(cfg, vec![node]),
        TransportArg::Tcp | TransportArg::Both => Target::bind(cfg, &args.listen, vec![node]).await,
    };
    let mut target = match made {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let mut urls = target.urls();
    if args.transport != TransportArg::Tcp {
        match add_iser(&mut target, &args) {
            Ok(mut more) => urls.append(&mut more),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(1);
            }
        }
    }
    {
        let mut out = io::stdout().lock();
        for url in urls {
            let _ = writeln!(out, "{url}");
        }
        let _ = out.flush();
    }
    let stop = target.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        stop.shutdown();
    });
    match target.run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

/// Listens for iSER on every `--listen` address; the `iser://` URLs.
#[cfg(feature = "rdma")]
fn add_iser(target: &mut Target<AnyBackend>, args: &Args) -> Result<Vec<String>, String> {
    use iscsi::iser::RdmaIserAcceptor;
    let mut urls = Vec::new();
    for addr in &args.listen {
        let acceptor = RdmaIserAcceptor::bind(*addr, Default::default())
            .map_err(|e| format!("cannot listen for iSER on {addr}: {e}"))?;
        for lun in 0..args.lun.len() {
            urls.push(format!(
                "iser://{}/{}/{lun}",
                acceptor.local_addr(),
                args.iqn
            ));
        }
        target.add_acceptor(acceptor);
    }
    Ok(urls)
}

/// Without RDMA support: say how to get it.
#[cfg(not(feature = "rdma"))]
fn add_iser(_: &mut Target<AnyBackend>, _: &Args) -> Result<Vec<String>, String> {
    Err("--transport iser needs a build with RDMA support: \
         cargo run --release -p iscsi-examples --features rdma --bin target -- ..."
        .into())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
