//! An iSCSI initiator on the command line, built on [`iscsi::initiator`].
//!
//! ```text
//! cargo run --release -p iscsi-examples --bin initiator -- discover iscsi://127.0.0.1:3260
//! initiator inquiry  iscsi://127.0.0.1:3260/iqn.2026-11.rs.iscsi:target/0
//! initiator readcap  iscsi://127.0.0.1:3260/iqn.2026-11.rs.iscsi:target/0
//! initiator luns     iscsi://127.0.0.1:3260/iqn.2026-11.rs.iscsi:target/0
//! initiator read     URL --lba 0 --blocks 8 [--out FILE]     # hexdump without --out
//! initiator write    URL --lba 0 --in FILE                   # whole blocks
//! initiator copy     disk.img URL   |   initiator copy URL disk.img [--bytes 64MiB]
//! initiator bench    URL --rw randread --bs 4K --depth 32 --duration 10
//! ```
//!
//! CHAP credentials go in the URL (`iscsi://user%password@host/iqn/lun`); `--mutual-chap
//! USER%SECRET` names the credential the target must prove. Global options (`--initiator-name`,
//! `--header-digest`, `--data-digest`, `--timeout`, `--transport`) go before or after the
//! subcommand.
//!
//! iSER (iSCSI over RDMA): an `iser://` URL or `--transport iser` connects through RDMA-CM to
//! the address in the URL (an RDMA-capable interface: an adapter or soft-RoCE); it needs a
//! build with `--features rdma`.
//!
//! Exit status: 0 on success, 1 when something failed (login, SCSI error, file I/O), 2 for
//! usage errors. Errors are one line on stderr.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand, ValueEnum};
use iscsi::initiator::{
    DEFAULT_INITIATOR_NAME, Data, Error, InitiatorConfig, IscsiUrl, Request, Session,
};
use iscsi::proto::text::Digest;
use tokio::task::JoinSet;

/// An iSCSI initiator: discovery, SCSI commands, copies and benchmarks.
#[derive(Parser, Debug)]
#[command(
    name = "initiator",
    version,
    about = "An iSCSI initiator: discovery, SCSI commands, copies and benchmarks",
    after_help = concat!(
        "URLs: iscsi://[user%password@]host[:port]/target-iqn/lun (CHAP: user%password).\n",
        "Sizes: 4096, 4K, 1M, 1G, 4KiB, 1MiB, 1GiB (powers of 1024). MB/s: 10^6 bytes/s.\n",
        "Exit status: 0 success, 1 failure, 2 usage error."
    )
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Options of every subcommand.
#[derive(Args, Debug)]
#[command(next_help_heading = "Global options")]
struct Global {
    /// Our iSCSI name.
    #[arg(long, global = true, value_name = "IQN", default_value = DEFAULT_INITIATOR_NAME)]
    initiator_name: String,
    /// Ask for CRC32C header digests (a warning if the target refuses them).
    #[arg(long, global = true)]
    header_digest: bool,
    /// Ask for CRC32C data digests (a warning if the target refuses them).
    #[arg(long, global = true)]
    data_digest: bool,
    /// Deadline of a login and of each command, in seconds.
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    timeout: u64,
    /// Mutual CHAP: the name and secret the target must answer with (`USER%SECRET`); needs
    /// the initiator's credential in the URL (`iscsi://user%password@...`).
    #[arg(long, global = true, value_name = "USER%SECRET")]
    mutual_chap: Option<String>,
    /// iSCSI over TCP or iSER over RDMA (default: as the URL says, iscsi:// or iser://).
    #[arg(long, global = true, value_enum)]
    transport: Option<TransportArg>,
}

/// `--transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TransportArg {
    Tcp,
    Iser,
}

/// Whether to use iSER for `url`.
fn use_iser(g: &Global, url: &IscsiUrl) -> bool {
    match g.transport {
        Some(TransportArg::Iser) => true,
        Some(TransportArg::Tcp) => false,
        None => url.iser,
    }
}

/// Logs in over TCP or iSER.
async fn login(cfg: InitiatorConfig, iser: bool) -> Result<Session, Error> {
    if iser {
        #[cfg(feature = "rdma")]
        return Session::connect_with(cfg, iscsi::iser::RdmaIser::new()).await;
        #[cfg(not(feature = "rdma"))]
        return Err(Error::Config(NO_RDMA.into()));
    }
    Session::connect_with(cfg, iscsi::initiator::Tcp).await
}

/// The error of iSER in a build without RDMA.
#[cfg(not(feature = "rdma"))]
const NO_RDMA: &str = "iSER needs a build with RDMA support: \
     cargo run --release -p iscsi-examples --features rdma --bin initiator -- ...";

#[derive(Subcommand, Debug)]
enum Cmd {
    /// List the targets and portals of a portal (SendTargets discovery).
    Discover {
        /// iscsi://host[:port]
        url: String,
    },
    /// Standard INQUIRY (and the unit serial number).
    Inquiry {
        /// iscsi://[user%password@]host[:port]/target-iqn/lun
        url: String,
    },
    /// READ CAPACITY: blocks, block size, bytes.
    Readcap {
        /// iscsi://[user%password@]host[:port]/target-iqn/lun
        url: String,
    },
    /// REPORT LUNS: the logical units of the target.
    Luns {
        /// iscsi://[user%password@]host[:port]/target-iqn[/lun]
        url: String,
    },
    /// Read blocks: hexdump on stdout, or into a file with --out.
    Read {
        /// iscsi://[user%password@]host[:port]/target-iqn/lun
        url: String,
        /// First logical block.
        #[arg(long, value_name = "N", default_value_t = 0)]
        lba: u64,
        /// Number of blocks.
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u64).range(1..))]
        blocks: u64,
        /// Write the data to this file instead of a hexdump.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Write a file (a whole number of blocks) at a block address.
    Write {
        /// iscsi://[user%password@]host[:port]/target-iqn/lun
        url: String,
        /// First logical block.
        #[arg(long, value_name = "N", default_value_t = 0)]
        lba: u64,
        /// The file to write.
        #[arg(long = "in", value_name = "FILE")]
        input: PathBuf,
    },
    /// Copy a local file to a LUN (from LBA 0) or a LUN to a local file.
    #[command(
        after_help = concat!(
            "One of SRC and DST is an iscsi:// URL, the other a local file.\n",
            "Upload: from LBA 0; a last partial block is padded with zeros; SYNCHRONIZE CACHE\n",
            "at the end. Download: the whole LUN, or its first --bytes."
        )
    )]
    Copy {
        /// Source: a file or an iscsi:// URL.
        src: String,
        /// Destination: a file or an iscsi:// URL.
        dst: String,
        /// Bytes per command (a whole number of blocks).
        #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
        chunk: u64,
        /// Commands in flight.
        #[arg(long, value_name = "N", default_value_t = 8,
              value_parser = clap::value_parser!(u32).range(1..=1024))]
        depth: u32,
        /// Copy only the first SIZE bytes.
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        bytes: Option<u64>,
    },
    /// Measure IOPS and throughput (like libiscsi's iscsi-perf).
    #[command(
        after_help = "Prints a line a second, then the average. MB/s: 10^6 bytes/s.\n\
                            randwrite and seqwrite overwrite the LUN."
    )]
    Bench {
        /// iscsi://[user%password@]host[:port]/target-iqn/lun
        url: String,
        /// Workload.
        #[arg(long, value_enum, default_value_t = Rw::Randread)]
        rw: Rw,
        /// Bytes per command (a whole number of blocks).
        #[arg(long, value_name = "SIZE", default_value = "4K", value_parser = parse_size)]
        bs: u64,
        /// Commands in flight.
        #[arg(long, value_name = "N", default_value_t = 32,
              value_parser = clap::value_parser!(u32).range(1..=1024))]
        depth: u32,
        /// Seconds to run (Ctrl-C ends early).
        #[arg(long, value_name = "SECS", default_value_t = 10,
              value_parser = clap::value_parser!(u64).range(1..=86_400))]
        duration: u64,
        /// Use only the first N blocks of the LUN (default: all of it).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        blocks_range: Option<u64>,
    },
}

/// A benchmark workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Rw {
    Randread,
    Seqread,
    Randwrite,
    Seqwrite,
}

impl Rw {
    fn name(self) -> &'static str {
        match self {
            Rw::Randread => "randread",
            Rw::Seqread => "seqread",
            Rw::Randwrite => "randwrite",
            Rw::Seqwrite => "seqwrite",
        }
    }
    fn is_write(self) -> bool {
        matches!(self, Rw::Randwrite | Rw::Seqwrite)
    }
    fn is_random(self) -> bool {
        matches!(self, Rw::Randread | Rw::Randwrite)
    }
}

/// Why the program failed: a usage error (exit status 2) or anything else (1).
enum Fail {
    Usage(String),
    Run(String),
}

type Res<T> = Result<T, Fail>;

fn usage(msg: impl Into<String>) -> Fail {
    Fail::Usage(msg.into())
}

const SUBCOMMANDS: [&str; 8] = [
    "discover", "inquiry", "readcap", "luns", "read", "write", "copy", "bench",
];

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return clap_error(&e),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = match rt {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => Err(Fail::Run(format!("cannot start the runtime: {e}"))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(Fail::Run(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(1)
        }
    }
}

/// Help and version as clap prints them; parse errors on one line (exit status 2).
fn clap_error(e: &clap::Error) -> ExitCode {
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
    }
    let text = e.to_string();
    let mut parts = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    let sub = std::env::args()
        .skip(1)
        .find(|a| SUBCOMMANDS.contains(&a.as_str()));
    let hint = match sub {
        Some(s) => format!("initiator {s} --help"),
        None => "initiator --help".into(),
    };
    eprintln!("error: {} (see '{hint}')", parts.join(" "));
    ExitCode::from(2)
}

async fn run(cli: Cli) -> Res<()> {
    let g = &cli.global;
    match cli.cmd {
        Cmd::Discover { url } => discover(g, &url).await,
        Cmd::Inquiry { url } => with_session(g, &url, inquiry).await,
        Cmd::Readcap { url } => with_session(g, &url, readcap).await,
        Cmd::Luns { url } => with_session(g, &url, luns).await,
        Cmd::Read {
            url,
            lba,
            blocks,
            out,
        } => with_session(g, &url, |s| read(s, lba, blocks, out.as_deref())).await,
        Cmd::Write { url, lba, input } => with_session(g, &url, |s| write(s, lba, &input)).await,
        Cmd::Copy {
            src,
            dst,
            chunk,
            depth,
            bytes,
        } => {
            let job = |url: &str, file: &str, upload| CopyJob {
                url: url.to_owned(),
                file: PathBuf::from(file),
                upload,
                chunk,
                depth,
                bytes,
            };
            let job = match (is_url(&src), is_url(&dst)) {
                (false, true) => job(&dst, &src, true),
                (true, false) => job(&src, &dst, false),
                _ => {
                    return Err(usage(
                        "copy needs one local file and one iscsi:// or iser:// URL (copy FILE URL uploads, \
                         copy URL FILE downloads)",
                    ));
                }
            };
            let url = job.url.clone();
            with_session(g, &url, |s| copy(s, job)).await
        }
        Cmd::Bench {
            url,
            rw,
            bs,
            depth,
            duration,
            blocks_range,
        } => {
            let b = BenchJob {
                rw,
                bs,
                depth,
                duration: Duration::from_secs(duration),
                blocks_range,
            };
            with_session(g, &url, |s| bench(s, b)).await
        }
    }
}

fn is_url(s: &str) -> bool {
    ["iscsi://", "iser://"].iter().any(|scheme| {
        s.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
    })
}

// ---------------------------------------------------------------------------------------------
// Sessions

/// Parses a URL (a usage error if it is bad; the message never shows the password).
fn parse_url(s: &str) -> Res<IscsiUrl> {
    s.parse::<IscsiUrl>().map_err(|e| usage(e.to_string()))
}

/// Settings for `url` from the global options.
fn config(g: &Global, url: &IscsiUrl, discovery: bool) -> Res<InitiatorConfig> {
    let mut cfg = if discovery {
        let mut c = InitiatorConfig::new(url.portal(), String::new());
        if let (Some(u), Some(p)) = (&url.user, &url.password) {
            c = c
                .chap(u, p.clone().into_bytes())
                .map_err(|e| usage(e.to_string()))?;
        }
        c
    } else {
        if url.target.is_none() {
            return Err(usage(format!(
                "{url} names no target (expected iscsi://host[:port]/target-iqn/lun)"
            )));
        }
        InitiatorConfig::from_url(url).map_err(|e| usage(e.to_string()))?
    };
    if g.initiator_name.trim().is_empty() {
        return Err(usage("--initiator-name must not be empty"));
    }
    if url.user.is_some() && url.password.is_none() {
        return Err(usage(format!(
            "{url}: a CHAP user needs a password (iscsi://user%password@...)"
        )));
    }
    if let Some(m) = &g.mutual_chap {
        let Some((tu, ts)) = m
            .split_once('%')
            .filter(|(u, s)| !u.is_empty() && !s.is_empty())
        else {
            return Err(usage("--mutual-chap must be USER%SECRET"));
        };
        let (Some(u), Some(p)) = (&url.user, &url.password) else {
            return Err(usage(
                "--mutual-chap needs our CHAP credential in the URL (iscsi://user%password@...)",
            ));
        };
        cfg = cfg
            .mutual_chap(u, p.clone().into_bytes(), tu, ts.as_bytes().to_vec())
            .map_err(|e| usage(e.to_string()))?;
    }
    cfg.initiator_name = g.initiator_name.clone();
    let t = Duration::from_secs(g.timeout);
    cfg.command_timeout = Some(t);
    cfg.login_timeout = t;
    Ok(cfg.digests(g.header_digest, g.data_digest))
}

/// Logs in to `url`, runs `f`, logs out.
async fn with_session<F, Fut>(g: &Global, url: &str, f: F) -> Res<()>
where
    F: FnOnce(Session) -> Fut,
    Fut: Future<Output = Res<()>>,
{
    let parsed = parse_url(url)?;
    let cfg = config(g, &parsed, false)?;
    let session = login(cfg, use_iser(g, &parsed))
        .await
        .map_err(|e| Fail::Run(format!("cannot log in to {parsed}: {e}")))?;
    let p = session.params();
    if g.header_digest && p.header_digest == Digest::None {
        eprintln!("warning: the target refused header digests");
    }
    if g.data_digest && p.data_digest == Digest::None {
        eprintln!("warning: the target refused data digests");
    }
    let result = f(session.clone()).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
    result
}

/// `what` failed with `e`, as one line.
fn scsi_err(what: &str, e: &Error) -> Fail {
    Fail::Run(format!("{what}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Small commands

async fn discover(g: &Global, url: &str) -> Res<()> {
    let parsed = parse_url(url)?;
    let cfg = config(g, &parsed, true)?;
    let found = if use_iser(g, &parsed) {
        #[cfg(feature = "rdma")]
        {
            Session::discover_with(&cfg, &iscsi::iser::RdmaIser::new()).await
        }
        #[cfg(not(feature = "rdma"))]
        {
            Err(Error::Config(NO_RDMA.into()))
        }
    } else {
        Session::discover(&cfg).await
    };
    let records = found.map_err(|e| Fail::Run(format!("discovery at {}: {e}", parsed.portal())))?;
    if records.is_empty() {
        eprintln!("{} offers no targets", parsed.portal());
    }
    let mut out = io::stdout().lock();
    for r in records {
        let _ = writeln!(out, "{}", r.name);
        for (addr, tpgt) in &r.addresses {
            let _ = writeln!(out, "    portal {addr} (group {tpgt})");
        }
    }
    Ok(())
}

async fn inquiry(s: Session) -> Res<()> {
    let inq = s.inquiry().await.map_err(|e| scsi_err("INQUIRY", &e))?;
    if inq.qualifier == 3 {
        return Err(Fail::Run(format!(
            "the target has no logical unit {} (see the luns command)",
            s.lun()
        )));
    }
    let serial = vpd(&s, 0x80)
        .await
        .map(|p| String::from_utf8_lossy(&p[4..]).trim().to_owned())
        .filter(|s| !s.is_empty());
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "vendor:      {}", inq.vendor);
    let _ = writeln!(out, "product:     {}", inq.product);
    let _ = writeln!(out, "revision:    {}", inq.revision);
    let _ = writeln!(
        out,
        "device type: {:#04x} ({})",
        inq.device_type,
        device_type(inq.device_type)
    );
    let _ = writeln!(
        out,
        "removable:   {}",
        if inq.removable { "yes" } else { "no" }
    );
    if let Some(sn) = serial {
        let _ = writeln!(out, "serial:      {sn}");
    }
    Ok(())
}

fn device_type(t: u8) -> &'static str {
    match t {
        0x00 => "direct-access block device",
        0x01 => "sequential-access device",
        0x05 => "CD/DVD device",
        0x07 => "optical memory device",
        0x08 => "medium changer",
        0x0c => "storage array controller",
        0x0d => "enclosure services",
        0x1f => "unknown or no device",
        _ => "other",
    }
}

async fn readcap(s: Session) -> Res<()> {
    let cap = s
        .read_capacity()
        .await
        .map_err(|e| scsi_err("READ CAPACITY", &e))?;
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "blocks:      {}", cap.blocks);
    let _ = writeln!(out, "block size:  {}", cap.block_size);
    let _ = writeln!(
        out,
        "bytes:       {} ({})",
        cap.bytes(),
        human_bytes(cap.bytes())
    );
    Ok(())
}

async fn luns(s: Session) -> Res<()> {
    let luns = s
        .report_luns()
        .await
        .map_err(|e| scsi_err("REPORT LUNS", &e))?;
    let mut out = io::stdout().lock();
    for l in luns {
        let _ = writeln!(out, "{l}");
    }
    Ok(())
}

/// A VPD page (header included), or `None` if the unit does not give it.
async fn vpd(s: &Session, page: u8) -> Option<Vec<u8>> {
    const ALLOC: u16 = 1024;
    let [hi, lo] = ALLOC.to_be_bytes();
    let cdb = [0x12, 0x01, page, hi, lo, 0];
    for _ in 0..3 {
        let c = s
            .execute(Request::new(s.lun(), &cdb, Data::Read(ALLOC.into())))
            .await
            .ok()?;
        match c.into_good() {
            Ok(d) => {
                let d = d?;
                if d.len() < 4 || d[1] != page {
                    return None;
                }
                let len = 4 + usize::from(u16::from_be_bytes([d[2], d[3]]));
                return Some(d[..len.min(d.len())].to_vec());
            }
            Err(e) if e.is_unit_attention() => continue,
            Err(_) => return None,
        }
    }
    None
}

/// What one command may move: `want` rounded down to whole blocks, at least one block, at
/// most the unit's MAXIMUM TRANSFER LENGTH (Block Limits VPD page) if it gives one.
async fn transfer_limit(s: &Session, block_size: u32, want: u64) -> u64 {
    let bs = u64::from(block_size);
    let mut blocks = (want / bs).max(1);
    if let Some(p) = vpd(s, 0xb0).await
        && p.len() >= 12
    {
        let max = u64::from(u32::from_be_bytes([p[8], p[9], p[10], p[11]]));
        if max > 0 {
            blocks = blocks.min(max);
        }
    }
    // The READ/WRITE (16) transfer length is 32 bits.
    blocks.min(u64::from(u32::MAX)) * bs
}

/// READ CAPACITY with a one-line error.
async fn capacity(s: &Session) -> Res<iscsi::initiator::Capacity> {
    s.read_capacity()
        .await
        .map_err(|e| scsi_err("READ CAPACITY", &e))
}

/// Checks that `blocks` blocks at `lba` lie on a unit of `cap_blocks` blocks.
fn check_range(lba: u64, blocks: u64, cap_blocks: u64) -> Res<()> {
    match lba.checked_add(blocks) {
        Some(end) if end <= cap_blocks => Ok(()),
        _ => Err(usage(format!(
            "blocks {lba}..{} are past the end of the LUN ({cap_blocks} blocks)",
            u128::from(lba) + u128::from(blocks)
        ))),
    }
}

async fn read(s: Session, lba: u64, blocks: u64, out: Option<&Path>) -> Res<()> {
    let cap = capacity(&s).await?;
    check_range(lba, blocks, cap.blocks)?;
    let bs = u64::from(cap.block_size);
    let step = transfer_limit(&s, cap.block_size, 1 << 20).await / bs;
    let mut file = match out {
        Some(p) => Some(
            File::create(p)
                .map_err(|e| Fail::Run(format!("cannot create {}: {e}", p.display())))?,
        ),
        None => None,
    };
    let mut dump = HexDump::new(lba * bs);
    let stdout = io::stdout();
    let mut buf = Vec::new();
    let mut done = 0;
    while done < blocks {
        let n = step.min(blocks - done);
        buf.resize(usize_of(n * bs)?, 0);
        let at = lba + done;
        buf = read_blocks(&s, at, buf)
            .await
            .map_err(|e| scsi_err(&format!("READ at LBA {at}"), &e))?;
        match (&mut file, out) {
            (Some(f), Some(p)) => f
                .write_all(&buf)
                .map_err(|e| Fail::Run(format!("writing {}: {e}", p.display())))?,
            _ => dump.feed(&mut stdout.lock(), &buf).map_err(stdout_err)?,
        }
        done += n;
    }
    match (file, out) {
        (Some(f), Some(p)) => {
            f.sync_all()
                .map_err(|e| Fail::Run(format!("writing {}: {e}", p.display())))?;
            println!(
                "read {blocks} blocks ({} bytes) at LBA {lba} into {}",
                blocks * bs,
                p.display()
            );
        }
        _ => dump.finish(&mut stdout.lock()).map_err(stdout_err)?,
    }
    Ok(())
}

fn stdout_err(e: io::Error) -> Fail {
    Fail::Run(format!("writing to stdout: {e}"))
}

fn usize_of(n: u64) -> Res<usize> {
    usize::try_from(n).map_err(|_| Fail::Run(format!("{n} bytes do not fit in memory")))
}

async fn write(s: Session, lba: u64, input: &Path) -> Res<()> {
    let file = File::open(input)
        .map_err(|e| Fail::Run(format!("cannot open {}: {e}", input.display())))?;
    let len = file
        .metadata()
        .map_err(|e| Fail::Run(format!("cannot read {}: {e}", input.display())))?
        .len();
    let cap = capacity(&s).await?;
    let bs = u64::from(cap.block_size);
    if len == 0 {
        return Err(Fail::Run(format!("{} is empty", input.display())));
    }
    if !len.is_multiple_of(bs) {
        return Err(Fail::Run(format!(
            "{} is {len} bytes, not a whole number of {bs}-byte blocks (copy FILE URL pads \
             the last block)",
            input.display()
        )));
    }
    let blocks = len / bs;
    check_range(lba, blocks, cap.blocks)?;
    let step = transfer_limit(&s, cap.block_size, 1 << 20).await;
    let mut buf = Vec::new();
    let mut off = 0;
    while off < len {
        let n = step.min(len - off);
        buf.resize(usize_of(n)?, 0);
        pread(&file, &mut buf, off)
            .map_err(|e| Fail::Run(format!("reading {}: {e}", input.display())))?;
        let at = lba + off / bs;
        buf = write_blocks(&s, at, buf)
            .await
            .map_err(|e| scsi_err(&format!("WRITE at LBA {at}"), &e))?;
        off += n;
    }
    sync_cache(&s).await?;
    println!("wrote {blocks} blocks ({len} bytes) at LBA {lba}");
    Ok(())
}

/// SYNCHRONIZE CACHE; a unit that does not know the command is fine.
async fn sync_cache(s: &Session) -> Res<()> {
    match s.sync_cache().await {
        Ok(()) => Ok(()),
        Err(e)
            if e.sense()
                .is_some_and(|s| s.key == iscsi::scsi::sense::SenseKey::ILLEGAL_REQUEST) =>
        {
            Ok(())
        }
        Err(e) => Err(scsi_err("SYNCHRONIZE CACHE", &e)),
    }
}

// ---------------------------------------------------------------------------------------------
// Block I/O with reused buffers

/// Reads into `buf` (whole blocks) at `lba`, which comes back filled.
async fn read_blocks(s: &Session, lba: u64, buf: Vec<u8>) -> Result<Vec<u8>, Error> {
    block_io(s, false, lba, buf).await
}

/// Writes `buf` (whole blocks) at `lba`; the buffer comes back.
async fn write_blocks(s: &Session, lba: u64, buf: Vec<u8>) -> Result<Vec<u8>, Error> {
    block_io(s, true, lba, buf).await
}

/// One READ or WRITE of the whole buffer at `lba`; the buffer comes back (no copy either
/// way, UNIT ATTENTION retried).
async fn block_io(s: &Session, write: bool, lba: u64, buf: Vec<u8>) -> Result<Vec<u8>, Error> {
    if write {
        s.write_owned(lba, buf).await
    } else {
        s.read_into(lba, buf).await
    }
}

// ---------------------------------------------------------------------------------------------
// copy

/// A `copy` between a local file and a LUN.
struct CopyJob {
    url: String,
    file: PathBuf,
    /// File to LUN (otherwise LUN to file).
    upload: bool,
    chunk: u64,
    depth: u32,
    bytes: Option<u64>,
}

async fn copy(s: Session, job: CopyJob) -> Res<()> {
    let cap = capacity(&s).await?;
    let bs = u64::from(cap.block_size);
    if job.chunk == 0 || !job.chunk.is_multiple_of(bs) {
        return Err(usage(format!(
            "--chunk {} is not a whole number of {bs}-byte blocks",
            job.chunk
        )));
    }
    let chunk = transfer_limit(&s, cap.block_size, job.chunk).await;
    if chunk < job.chunk {
        eprintln!(
            "note: the target moves at most {} per command; --chunk lowered to that",
            human_bytes(chunk)
        );
    }
    let name = job.file.display().to_string();
    let file = if job.upload {
        File::open(&job.file).map_err(|e| Fail::Run(format!("cannot open {name}: {e}")))?
    } else {
        File::create(&job.file).map_err(|e| Fail::Run(format!("cannot create {name}: {e}")))?
    };
    let total = if job.upload {
        let len = file
            .metadata()
            .map_err(|e| Fail::Run(format!("cannot read {name}: {e}")))?
            .len();
        let total = job.bytes.map_or(len, |b| b.min(len));
        if total > cap.bytes() {
            return Err(Fail::Run(format!(
                "{name} is {total} bytes but the LUN holds {} bytes",
                cap.bytes()
            )));
        }
        if !total.is_multiple_of(bs) {
            eprintln!(
                "note: {total} bytes is not a whole number of {bs}-byte blocks; the last block \
                 is padded with zeros"
            );
        }
        total
    } else {
        match job.bytes {
            Some(b) if b > cap.bytes() => {
                return Err(usage(format!(
                    "--bytes {b} is more than the LUN holds ({} bytes)",
                    cap.bytes()
                )));
            }
            Some(b) => b,
            None => cap.bytes(),
        }
    };
    let file = Arc::new(file);
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (what, from, to) = if job.upload {
        ("upload", name.clone(), job.url.clone())
    } else {
        ("download", job.url.clone(), name.clone())
    };
    eprintln!(
        "{what}: {from} -> {to}, {} in {} commands, {} in flight",
        human_bytes(total),
        human_bytes(chunk),
        job.depth
    );
    let start = Instant::now();
    let progress = Progress {
        total,
        done: done.clone(),
        start,
        tty: io::stderr().is_terminal(),
    };
    let reporter = tokio::spawn(progress.clone().run());
    let mut set = JoinSet::new();
    for _ in 0..job.depth {
        let w = CopyWorker {
            s: s.clone(),
            file: file.clone(),
            name: name.clone(),
            upload: job.upload,
            total,
            chunk,
            bs,
            next: next.clone(),
            done: done.clone(),
            stop: stop.clone(),
        };
        set.spawn(w.run());
    }
    let mut first_err = None;
    while let Some(r) = set.join_next().await {
        let r = r.unwrap_or_else(|e| Err(format!("a copy task failed: {e}")));
        if let Err(e) = r {
            stop.store(true, Ordering::Relaxed);
            first_err.get_or_insert(e);
        }
    }
    reporter.abort();
    let _ = reporter.await;
    progress.draw(true);
    if let Some(e) = first_err {
        return Err(Fail::Run(e));
    }
    if job.upload {
        sync_cache(&s).await?;
    } else {
        file.sync_all()
            .map_err(|e| Fail::Run(format!("writing {name}: {e}")))?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "copied {total} bytes ({}) in {secs:.2} s: {:.1} MB/s",
        human_bytes(total),
        mbps(total, secs)
    );
    Ok(())
}

/// One of `copy`'s `--depth` tasks: takes the next chunk until none is left.
struct CopyWorker {
    s: Session,
    file: Arc<File>,
    name: String,
    upload: bool,
    total: u64,
    chunk: u64,
    bs: u64,
    next: Arc<AtomicU64>,
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl CopyWorker {
    async fn run(self) -> Result<(), String> {
        let mut buf: Vec<u8> = Vec::new();
        while !self.stop.load(Ordering::Relaxed) {
            let off = self.next.fetch_add(1, Ordering::Relaxed) * self.chunk;
            if off >= self.total {
                break;
            }
            let len = self.chunk.min(self.total - off);
            let io_len = len.div_ceil(self.bs) * self.bs;
            let (len, io_len) = (len as usize, io_len as usize);
            let lba = off / self.bs;
            buf.resize(io_len, 0);
            if self.upload {
                let file = self.file.clone();
                let b = std::mem::take(&mut buf);
                let (b, r) = tokio::task::spawn_blocking(move || {
                    let mut b = b;
                    let r = pread(&file, &mut b[..len], off);
                    (b, r)
                })
                .await
                .map_err(|e| format!("file I/O task failed: {e}"))?;
                buf = b;
                r.map_err(|e| format!("reading {} at byte {off}: {e}", self.name))?;
                buf[len..].fill(0);
                buf = write_blocks(&self.s, lba, buf)
                    .await
                    .map_err(|e| format!("WRITE at LBA {lba}: {e}"))?;
            } else {
                buf = read_blocks(&self.s, lba, buf)
                    .await
                    .map_err(|e| format!("READ at LBA {lba}: {e}"))?;
                let file = self.file.clone();
                let b = std::mem::take(&mut buf);
                let (b, r) = tokio::task::spawn_blocking(move || {
                    let r = pwrite(&file, &b[..len], off);
                    (b, r)
                })
                .await
                .map_err(|e| format!("file I/O task failed: {e}"))?;
                buf = b;
                r.map_err(|e| format!("writing {} at byte {off}: {e}", self.name))?;
            }
            self.done.fetch_add(len as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// `copy`'s progress on stderr: a bar redrawn up to 10 times a second on a terminal, a line
/// a second otherwise.
#[derive(Clone)]
struct Progress {
    total: u64,
    done: Arc<AtomicU64>,
    start: Instant,
    tty: bool,
}

impl Progress {
    async fn run(self) {
        let every = Duration::from_millis(if self.tty { 100 } else { 1000 });
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            self.draw(false);
        }
    }

    fn draw(&self, last: bool) {
        let done = self.done.load(Ordering::Relaxed);
        let secs = self.start.elapsed().as_secs_f64();
        let pct = if self.total == 0 {
            100.0
        } else {
            100.0 * done as f64 / self.total as f64
        };
        let mut line = format!(
            "{} / {} ({pct:3.0}%) {:8.1} MB/s",
            human_bytes(done),
            human_bytes(self.total),
            mbps(done, secs)
        );
        if self.tty {
            const WIDTH: usize = 30;
            let filled = ((pct / 100.0) * WIDTH as f64).round() as usize;
            let bar = format!(
                "[{}{}] ",
                "#".repeat(filled.min(WIDTH)),
                ".".repeat(WIDTH - filled.min(WIDTH))
            );
            line.insert_str(0, &bar);
            if !last && done > 0 && done < self.total {
                let eta = secs * (self.total - done) as f64 / done as f64;
                let _ = write!(line, "  ETA {}", clock(eta));
            }
            // \r and "erase to the end of the line".
            eprint!("\r{line}\x1b[K{}", if last { "\n" } else { "" });
        } else {
            eprintln!("{line}");
        }
    }
}

/// `m:ss` or `h:mm:ss`.
fn clock(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

// ---------------------------------------------------------------------------------------------
// bench

/// A `bench` run.
struct BenchJob {
    rw: Rw,
    bs: u64,
    depth: u32,
    duration: Duration,
    blocks_range: Option<u64>,
}

/// Counters shared by the bench tasks.
#[derive(Default)]
struct BenchStats {
    ios: AtomicU64,
    lat_ns: AtomicU64,
    lat_max_ns: AtomicU64,
}

async fn bench(s: Session, job: BenchJob) -> Res<()> {
    let cap = capacity(&s).await?;
    let bs = u64::from(cap.block_size);
    if job.bs == 0 || !job.bs.is_multiple_of(bs) {
        return Err(usage(format!(
            "--bs {} is not a whole number of {bs}-byte blocks",
            job.bs
        )));
    }
    let limit = transfer_limit(&s, cap.block_size, job.bs).await;
    if limit < job.bs {
        return Err(usage(format!(
            "--bs {} is more than the target moves per command ({limit} bytes)",
            job.bs
        )));
    }
    let io_blocks = job.bs / bs;
    let range = match job.blocks_range {
        Some(r) if r > cap.blocks => {
            return Err(usage(format!(
                "--blocks-range {r} is more than the LUN's {} blocks",
                cap.blocks
            )));
        }
        Some(r) => r,
        None => cap.blocks,
    };
    let slots = range / io_blocks;
    if slots == 0 {
        return Err(usage(format!(
            "the range of {range} blocks holds no {io_blocks}-block command"
        )));
    }
    let buf_len = usize_of(job.bs)?;
    println!(
        "bench: {}, {} per command ({io_blocks} blocks of {bs}), {} in flight, {} s, blocks \
         0..{range} of {}",
        job.rw.name(),
        human_bytes(job.bs),
        job.depth,
        job.duration.as_secs(),
        human_bytes(cap.bytes()),
    );
    let stats = Arc::new(BenchStats::default());
    let seq = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
    let start = Instant::now();
    let mut set = JoinSet::new();
    for i in 0..job.depth {
        let w = BenchWorker {
            s: s.clone(),
            rw: job.rw,
            io_blocks,
            slots,
            seq: seq.clone(),
            stop: stop.clone(),
            stats: stats.clone(),
            rng: (seed ^ (u64::from(i) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1,
        };
        set.spawn(w.run(buf_len));
    }
    let reporter = tokio::spawn(bench_report(stats.clone(), start, job.bs));
    let deadline = tokio::time::sleep(job.duration);
    tokio::pin!(deadline);
    let mut first_err = None;
    loop {
        tokio::select! {
            _ = &mut deadline => break,
            _ = tokio::signal::ctrl_c() => break,
            r = set.join_next() => match r {
                None => break,
                Some(r) => {
                    if let Err(e) = r.unwrap_or_else(|e| Err(format!("a bench task failed: {e}"))) {
                        first_err = Some(e);
                        break;
                    }
                }
            },
        }
    }
    stop.store(true, Ordering::Relaxed);
    while let Some(r) = set.join_next().await {
        if let Err(e) = r.unwrap_or_else(|e| Err(format!("a bench task failed: {e}"))) {
            first_err.get_or_insert(e);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    reporter.abort();
    let _ = reporter.await;
    if let Some(e) = first_err {
        return Err(Fail::Run(e));
    }
    let ios = stats.ios.load(Ordering::Relaxed);
    let iops = ios as f64 / secs;
    let lat = if ios > 0 {
        stats.lat_ns.load(Ordering::Relaxed) as f64 / ios as f64 / 1e3
    } else {
        0.0
    };
    let max = stats.lat_max_ns.load(Ordering::Relaxed) as f64 / 1e3;
    println!(
        "iops average {iops:.0} ({:.1} MB/s), {ios} IOs in {secs:.2} s, latency average \
         {lat:.1} us, max {max:.0} us",
        iops * job.bs as f64 / 1e6
    );
    Ok(())
}

/// A line a second: IOPS and MB/s in the last second and since the start, average latency.
async fn bench_report(stats: Arc<BenchStats>, start: Instant, io_bytes: u64) {
    let second = Duration::from_secs(1);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + second, second);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut last_ios, mut last_lat, mut last_t) = (0u64, 0u64, 0.0f64);
    loop {
        tick.tick().await;
        let t = start.elapsed().as_secs_f64();
        let ios = stats.ios.load(Ordering::Relaxed);
        let lat = stats.lat_ns.load(Ordering::Relaxed);
        let (d_ios, dt) = (ios - last_ios, (t - last_t).max(1e-9));
        let cur = d_ios as f64 / dt;
        let avg = ios as f64 / t.max(1e-9);
        let lat_us = if d_ios > 0 {
            (lat - last_lat) as f64 / d_ios as f64 / 1e3
        } else {
            0.0
        };
        println!(
            "{}  iops current {cur:.0} ({:.1} MB/s), iops average {avg:.0} ({:.1} MB/s), \
             latency {lat_us:.1} us",
            clock_hms(t),
            cur * io_bytes as f64 / 1e6,
            avg * io_bytes as f64 / 1e6
        );
        (last_ios, last_lat, last_t) = (ios, lat, t);
    }
}

fn clock_hms(secs: f64) -> String {
    let s = secs.round() as u64;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// One of `bench`'s `--depth` tasks: one command at a time, into the same buffer.
struct BenchWorker {
    s: Session,
    rw: Rw,
    io_blocks: u64,
    slots: u64,
    seq: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    stats: Arc<BenchStats>,
    rng: u64,
}

impl BenchWorker {
    async fn run(mut self, buf_len: usize) -> Result<(), String> {
        // A pattern (not zeros) so that thin targets store the writes.
        let mut buf: Vec<u8> = (0..buf_len).map(|i| (i as u8) ^ 0x5a).collect();
        let write = self.rw.is_write();
        // One clock reading per IO: an IO's end is the next one's start.
        let mut t0 = Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            let slot = if self.rw.is_random() {
                // xorshift64*
                self.rng ^= self.rng >> 12;
                self.rng ^= self.rng << 25;
                self.rng ^= self.rng >> 27;
                self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) % self.slots
            } else {
                self.seq.fetch_add(1, Ordering::Relaxed) % self.slots
            };
            let lba = slot * self.io_blocks;
            buf = block_io(&self.s, write, lba, buf).await.map_err(|e| {
                format!(
                    "{} at LBA {lba}: {}",
                    if write { "WRITE" } else { "READ" },
                    e
                )
            })?;
            let t1 = Instant::now();
            let ns = u64::try_from((t1 - t0).as_nanos()).unwrap_or(u64::MAX);
            t0 = t1;
            self.stats.ios.fetch_add(1, Ordering::Relaxed);
            self.stats.lat_ns.fetch_add(ns, Ordering::Relaxed);
            self.stats.lat_max_ns.fetch_max(ns, Ordering::Relaxed);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Parses `4096`, `4K`, `1M`, `1GiB`... into bytes (K, M, G, T and KiB... are powers of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| "expected a size such as 4096, 4K, 1MiB or 2G".to_string())?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        "t" | "tib" | "tb" => 1 << 40,
        _ => return Err("unknown size unit (use K, M, G, T or KiB, MiB, GiB, TiB)".into()),
    };
    n.checked_mul(mult).ok_or_else(|| "size too large".into())
}

/// `1.5 GiB`, `512 B`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// 10^6 bytes per second.
fn mbps(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / secs / 1e6
    } else {
        0.0
    }
}

#[cfg(unix)]
fn pread(f: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, off)
}

#[cfg(unix)]
fn pwrite(f: &File, buf: &[u8], off: u64) -> io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(f, buf, off)
}

#[cfg(windows)]
fn pread(f: &File, mut buf: &mut [u8], mut off: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_read(f, buf, off) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => {
                buf = &mut buf[n..];
                off += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(windows)]
fn pwrite(f: &File, mut buf: &[u8], mut off: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match std::os::windows::fs::FileExt::seek_write(f, buf, off) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                off += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A `hexdump -C` of a stream of blocks: offset, 16 bytes in hex, ASCII; repeated lines
/// become one `*`.
struct HexDump {
    /// Byte address of the next byte.
    pos: u64,
    /// Bytes of an unfinished line.
    carry: Vec<u8>,
    last: Option<[u8; 16]>,
    starred: bool,
}

impl HexDump {
    fn new(pos: u64) -> Self {
        HexDump {
            pos,
            carry: Vec::with_capacity(16),
            last: None,
            starred: false,
        }
    }

    fn feed(&mut self, out: &mut impl Write, mut data: &[u8]) -> io::Result<()> {
        if !self.carry.is_empty() {
            let take = (16 - self.carry.len()).min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.carry.len() < 16 {
                return Ok(());
            }
            let line = std::mem::take(&mut self.carry);
            self.line(out, &line)?;
        }
        let mut chunks = data.chunks_exact(16);
        for c in &mut chunks {
            self.line(out, c)?;
        }
        self.carry.extend_from_slice(chunks.remainder());
        Ok(())
    }

    fn line(&mut self, out: &mut impl Write, l: &[u8]) -> io::Result<()> {
        let full: Option<[u8; 16]> = l.try_into().ok();
        if full.is_some() && full == self.last {
            if !self.starred {
                writeln!(out, "*")?;
                self.starred = true;
            }
            self.pos += 16;
            return Ok(());
        }
        self.starred = false;
        self.last = full;
        let mut s = format!("{:08x}  ", self.pos);
        for i in 0..16 {
            match l.get(i) {
                Some(b) => {
                    let _ = write!(s, "{b:02x} ");
                }
                None => s.push_str("   "),
            }
            if i == 7 {
                s.push(' ');
            }
        }
        s.push_str(" |");
        s.extend(l.iter().map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                b as char
            } else {
                '.'
            }
        }));
        s.push('|');
        writeln!(out, "{s}")?;
        self.pos += l.len() as u64;
        Ok(())
    }

    fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        if !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            self.line(out, &line)?;
        }
        writeln!(out, "{:08x}", self.pos)?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("").is_err());
        assert!(parse_size("1X").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn hexdump_collapses_repeats() {
        let mut out = Vec::new();
        let mut d = HexDump::new(0x200);
        let mut data = [0u8; 64];
        data[0] = b'A';
        d.feed(&mut out, &data[..20]).unwrap();
        d.feed(&mut out, &data[20..]).unwrap();
        d.finish(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[0].starts_with("00000200  41 00"), "{text}");
        assert!(lines[0].ends_with("|A...............|"), "{text}");
        assert!(lines[1].starts_with("00000210  00 00"), "{text}");
        assert_eq!(lines[2], "*");
        assert_eq!(lines[3], "00000240");
    }
}
