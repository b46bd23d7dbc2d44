//! The async initiator ([`Session`]) over real loopback TCP, against two peers: tgtd (the
//! Linux SCSI target framework's daemon, started by the test on a loopback port and stopped
//! on drop, also when the test fails; skipped with `SKIPPED ...` when it is not installed,
//! unless `ISCSI_REQUIRE_PEERS=1`) and this crate's target.
//!
//! Each scenario is one async function taking a [`Peer`] (portal, target names, LUN,
//! credentials); the `against_both!` table runs it against both peers (`<scenario>::tgtd`,
//! `<scenario>::ours`). A tiny loopback TCP proxy ([`Proxy`]) sits between the initiator and
//! the target where a scenario needs to count connections (no silent reconnection), hold the
//! target's answers (commands surely in flight at an abort or a reset) or cut the connection
//! (the reconnection scenarios, against our target only).
//!
//! Scenarios marked `iser` also run against our target over iSER on in-process loopback
//! verbs (`<scenario>::iser`) and, in a build with the `rdma` feature, over real RDMA
//! (`<scenario>::rdma`: ignored by default; it needs an RDMA device and the address of its
//! interface in `ISCSI_RDMA_ADDR`, e.g. soft-RoCE in the interop lab).

mod support;

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iscsi::initiator::{CompareResult, Data, Error, InitiatorConfig, Request, Session, Tcp};
use iscsi::iser::{LoopbackIser, LoopbackIserAcceptor};
use iscsi::iser_transport::loopback::{Fabric, LoopbackConfig};
use iscsi::proto::initiator::LoginFailure;
use iscsi::proto::pdu::LoginStatus;
use iscsi::proto::target::TargetRecord;
use iscsi::proto::text::Digest;
use iscsi::scsi::sense::SenseKey;
use iscsi::target::TargetConfig;
use support::tgtd::{Tgtd, TgtdTarget};
use support::{Rng, Running, disk, start_with, within};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const MIB: usize = 1 << 20;
/// Block size of both peers' disks.
const BS: usize = 512;
/// Size of the big disk (the open target's).
const DISK: u64 = 64 << 20;
/// CHAP credential of the initiator.
const ALICE: (&str, &str) = ("alice", "alice-secret-0123");
/// CHAP credential of the target (mutual CHAP).
const BOB: (&str, &str) = ("target-bob", "bob-secret-4567");
/// Our initiator name.
const INITIATOR: &str = "iqn.2026-11.rs.iscsi:initiator-tcp";

// ---------------------------------------------------------------------------------------------
// Peers

/// How the initiator reaches a peer.
enum Via {
    Tcp,
    /// iSER over the in-process loopback verbs; the fabric name is the TCP portal address
    /// (so SendTargets answers name it).
    Iser(Fabric),
    /// iSER over real RDMA (RDMA-CM).
    #[cfg(feature = "rdma")]
    Rdma,
}

/// What keeps a peer running (stopped on drop).
enum Guard {
    Tgtd(#[allow(dead_code)] Tgtd),
    Ours(#[allow(dead_code)] Running),
}

/// A target under test: one portal with three targets, an open one with a 64 MiB disk, one
/// that requires CHAP (user [`ALICE`]) and one that also proves itself (mutual CHAP,
/// [`BOB`]).
struct Peer {
    name: &'static str,
    portal: String,
    open: String,
    chap: String,
    mutual: String,
    /// The disk's LUN (tgtd: 1, its LUN 0 is the controller).
    lun: u16,
    /// Whether this is our target (TARGET WARM RESET is allowed there).
    ours: bool,
    via: Via,
    _guard: Guard,
}

/// Our target's three targets: open, CHAP, mutual CHAP.
const OURS: (&str, &str, &str) = (
    "iqn.2026-11.rs.iscsi:ours-open",
    "iqn.2026-11.rs.iscsi:ours-chap",
    "iqn.2026-11.rs.iscsi:ours-mutual",
);

/// The nodes of [`OURS`].
fn our_nodes() -> Vec<iscsi::target::TargetNode<iscsi::scsi::backend::RamBackend>> {
    let (open, chap, mutual) = OURS;
    vec![
        disk(open, DISK),
        disk(chap, 1 << 20).chap(ALICE.0, ALICE.1),
        disk(mutual, 1 << 20)
            .chap(ALICE.0, ALICE.1)
            .mutual_chap(BOB.0, BOB.1),
    ]
}

impl Peer {
    /// tgtd with the three targets, or `None` when it is not installed.
    fn tgtd() -> Option<Peer> {
        let open = "iqn.2026-11.rs.iscsi:tgtd-open";
        let chap = "iqn.2026-11.rs.iscsi:tgtd-chap";
        let mutual = "iqn.2026-11.rs.iscsi:tgtd-mutual";
        let t = Tgtd::start_targets(&[
            TgtdTarget::new(open, DISK)
                .thin()
                .param("HeaderDigest", "CRC32C,None")
                .param("DataDigest", "CRC32C,None"),
            TgtdTarget::new(chap, 1 << 20).chap(ALICE.0, ALICE.1),
            TgtdTarget::new(mutual, 1 << 20)
                .chap(ALICE.0, ALICE.1)
                .mutual(BOB.0, BOB.1),
        ])?;
        Some(Peer {
            name: "tgtd",
            portal: t.addr(),
            open: open.into(),
            chap: chap.into(),
            mutual: mutual.into(),
            lun: 1,
            ours: false,
            via: Via::Tcp,
            _guard: Guard::Tgtd(t),
        })
    }

    /// Our target with the three targets, over TCP.
    async fn ours() -> Peer {
        Self::ours_via(false).await
    }

    /// Our target with the three targets, over iSER on loopback verbs.
    async fn ours_iser() -> Peer {
        Self::ours_via(true).await
    }

    async fn ours_via(iser: bool) -> Peer {
        let (open, chap, mutual) = OURS;
        let fabric = Fabric::new(LoopbackConfig::default());
        let f = fabric.clone();
        let t = start_with(TargetConfig::default(), our_nodes(), move |target, addr| {
            if iser {
                let a = LoopbackIserAcceptor::listen(&f, &addr.to_string(), Default::default())
                    .expect("iSER listener");
                target.add_acceptor(a);
            }
        })
        .await;
        Peer {
            name: if iser { "ours over iSER" } else { "ours" },
            portal: t.addr.to_string(),
            open: open.into(),
            chap: chap.into(),
            mutual: mutual.into(),
            lun: 0,
            ours: true,
            via: if iser { Via::Iser(fabric) } else { Via::Tcp },
            _guard: Guard::Ours(t),
        }
    }

    /// Our target with the three targets, over iSER on real RDMA only (no TCP portal), on
    /// the address in `ISCSI_RDMA_ADDR` (a free port).
    #[cfg(feature = "rdma")]
    async fn ours_rdma() -> Peer {
        use iscsi::iser::RdmaIserAcceptor;
        use iscsi::target::Target;
        let ip: std::net::IpAddr = std::env::var("ISCSI_RDMA_ADDR")
            .expect("ISCSI_RDMA_ADDR: the address of an RDMA-capable interface (see the lab)")
            .parse()
            .expect("ISCSI_RDMA_ADDR is an IP address");
        let (open, chap, mutual) = OURS;
        let mut target = Target::without_tcp(TargetConfig::default(), our_nodes()).expect("target");
        let a = RdmaIserAcceptor::bind(SocketAddr::new(ip, 0), Default::default())
            .expect("iSER listener on ISCSI_RDMA_ADDR");
        let addr = a.local_addr();
        assert_ne!(addr.port(), 0, "RDMA-CM picked a port");
        target.add_acceptor(a);
        let stop = target.shutdown_handle();
        let task = tokio::spawn(target.run());
        Peer {
            name: "ours over RDMA",
            portal: addr.to_string(),
            open: open.into(),
            chap: chap.into(),
            mutual: mutual.into(),
            lun: 0,
            ours: true,
            via: Via::Rdma,
            _guard: Guard::Ours(Running { addr, stop, task }),
        }
    }

    /// Logs in with `cfg` over this peer's transport.
    async fn connect(&self, cfg: InitiatorConfig) -> Result<Session, Error> {
        match &self.via {
            Via::Tcp => Session::connect_with(cfg, Tcp).await,
            Via::Iser(f) => Session::connect_with(cfg, LoopbackIser::new(f.clone())).await,
            #[cfg(feature = "rdma")]
            Via::Rdma => Session::connect_with(cfg, iscsi::iser::RdmaIser::new()).await,
        }
    }

    /// SendTargets discovery over this peer's transport.
    async fn discover(&self, cfg: &InitiatorConfig) -> Result<Vec<TargetRecord>, Error> {
        match &self.via {
            Via::Tcp => Session::discover_with(cfg, &Tcp).await,
            Via::Iser(f) => Session::discover_with(cfg, &LoopbackIser::new(f.clone())).await,
            #[cfg(feature = "rdma")]
            Via::Rdma => Session::discover_with(cfg, &iscsi::iser::RdmaIser::new()).await,
        }
    }

    /// Settings for `target` on this peer's disk LUN.
    fn config(&self, target: &str) -> InitiatorConfig {
        let mut cfg = InitiatorConfig::new(&self.portal, target);
        cfg.initiator_name = INITIATOR.into();
        cfg.lun = self.lun;
        cfg.command_timeout = Some(Duration::from_secs(20));
        cfg
    }

    /// A session to the open target.
    async fn open_session(&self, cfg: InitiatorConfig) -> Session {
        match self.connect(cfg).await {
            Ok(s) => s,
            Err(e) => panic!("login to {} on {}: {e}", self.open, self.name),
        }
    }
}

/// Runs each scenario `name(&Peer)` as `name::tgtd` and `name::ours`, bounded by `secs`;
/// with `iser` also as `name::iser` (our target over iSER on loopback verbs) and, with the
/// `rdma` feature, `name::rdma` (over real RDMA; ignored unless asked for).
/// `tgtd_ignore = "BUG: ..."` ignores the tgtd run.
macro_rules! against_both {
    ($($name:ident: $secs:expr $(, $iser:ident)? $(, tgtd_ignore = $why:literal)?;)*) => {$(
        mod $name {
            use super::*;

            #[tokio::test]
            $(#[ignore = $why])?
            async fn tgtd() {
                let Some(peer) = Peer::tgtd() else { return };
                within(
                    Duration::from_secs($secs),
                    concat!(stringify!($name), " against tgtd"),
                    super::$name(&peer),
                )
                .await;
            }

            #[tokio::test]
            async fn ours() {
                let peer = Peer::ours().await;
                within(
                    Duration::from_secs($secs),
                    concat!(stringify!($name), " against our target"),
                    super::$name(&peer),
                )
                .await;
            }

            $(
                #[tokio::test]
                async fn $iser() {
                    let peer = Peer::ours_iser().await;
                    within(
                        Duration::from_secs($secs),
                        concat!(stringify!($name), " against our target over iSER"),
                        super::$name(&peer),
                    )
                    .await;
                }

                #[cfg(feature = "rdma")]
                #[tokio::test]
                #[ignore = "needs an RDMA device and ISCSI_RDMA_ADDR (the interop lab runs it)"]
                async fn rdma() {
                    let _ = stringify!($iser);
                    let peer = Peer::ours_rdma().await;
                    within(
                        Duration::from_secs($secs),
                        concat!(stringify!($name), " against our target over RDMA"),
                        super::$name(&peer),
                    )
                    .await;
                }
            )?
        }
    )*};
}

against_both! {
    discovery: 20, iser;
    login_and_chap: 30, iser;
    mutual_chap: 20, iser;
    url_form: 20;
    digests: 30;
    random_64mib: 60, iser;
    many_in_flight: 40, iser;
    aborts: 40;
    resets: 40;
    scsi_helpers: 30, iser;
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Panics unless `got` equals `want`, naming the first differing byte.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i} (got {:#04x}, want {:#04x})",
            got[i], want[i]
        );
    }
}

/// Writes `data` at `lba`, reads it back and compares.
async fn write_verified(s: &Session, lba: u64, data: &[u8], what: &str) {
    s.write(lba, data)
        .await
        .unwrap_or_else(|e| panic!("{what}: write of {} bytes at {lba}: {e}", data.len()));
    let back = s
        .read(lba, (data.len() / BS) as u32)
        .await
        .unwrap_or_else(|e| panic!("{what}: read of {} bytes at {lba}: {e}", data.len()));
    assert_same(&back, data, what);
}

/// Writes `data` at `lba` in pieces of at most 2 MiB.
async fn fill(s: &Session, lba: u64, data: &[u8]) {
    for (i, piece) in data.chunks(2 * MIB).enumerate() {
        let at = lba + (i * 2 * MIB / BS) as u64;
        s.write(at, piece)
            .await
            .unwrap_or_else(|e| panic!("fill at LBA {at}: {e}"));
    }
}

/// READ (10) CDB.
fn read10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = vec![0x28, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

/// WRITE (10) CDB.
fn write10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

/// The login refusal of `r`, panicking if it is anything else.
fn refusal(r: Result<Session, Error>, what: &str) -> (LoginStatus, String) {
    match r {
        Err(e @ Error::Login(LoginFailure::Refused(s))) => (s, e.to_string()),
        Err(e) => panic!("{what}: expected a login refusal, got {e:?}"),
        Ok(_) => panic!("{what}: the login succeeded"),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Discovery

/// `Session::discover` lists the three targets, the open one with the portal we asked (and
/// portal group tag 1).
async fn discovery(p: &Peer) {
    let mut cfg = InitiatorConfig::new(&p.portal, "");
    cfg.initiator_name = INITIATOR.into();
    let found = p.discover(&cfg).await.expect("discovery");
    let rec = found
        .iter()
        .find(|r| r.name == p.open)
        .unwrap_or_else(|| panic!("{} not in the SendTargets answer {found:?}", p.open));
    assert!(
        rec.addresses.contains(&(p.portal.clone(), 1)),
        "{}: the portal {},1 is not among {:?}",
        p.open,
        p.portal,
        rec.addresses
    );
    for name in [&p.chap, &p.mutual] {
        assert!(
            found.iter().any(|r| &r.name == name),
            "{name} not in the SendTargets answer {found:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Login without CHAP, with CHAP, with mutual CHAP; wrong secrets

async fn login_and_chap(p: &Peer) {
    // Without CHAP.
    let s = p.open_session(p.config(&p.open)).await;
    let inq = s.inquiry().await.expect("INQUIRY");
    assert_eq!(inq.device_type, 0, "a disk: {inq:?}");
    let cap = s.read_capacity().await.expect("READ CAPACITY");
    assert_eq!(cap.block_size as usize, BS);
    assert!(cap.bytes() >= DISK, "{cap:?}");
    write_verified(&s, 7, &Rng::new(1).bytes(4096), "open target").await;
    s.logout().await.expect("logout");
    assert!(
        matches!(s.test_unit_ready().await, Err(Error::Closed)),
        "a command after the logout fails with Closed"
    );

    // The CHAP target refuses a login without CHAP.
    let (st, _) = refusal(
        p.connect(p.config(&p.chap)).await,
        "CHAP target without CHAP",
    );
    assert_eq!(st, LoginStatus::AUTHENTICATION_FAILURE);

    // One-way CHAP.
    let cfg = p.config(&p.chap).chap(ALICE.0, ALICE.1).expect("CHAP");
    let s = p
        .connect(cfg)
        .await
        .unwrap_or_else(|e| panic!("CHAP login on {}: {e}", p.name));
    write_verified(&s, 1, &Rng::new(2).bytes(1024), "CHAP target").await;
    s.logout().await.expect("logout");

    // A wrong secret, then an unknown user: refused at once with "authentication failure",
    // and the error says so.
    for (user, secret) in [
        (ALICE.0, "wrong-secret-4567"),
        ("mallory", "mallory-secret-89"),
    ] {
        let t0 = Instant::now();
        let cfg = p.config(&p.chap).chap(user, secret).expect("CHAP");
        let (st, text) = refusal(p.connect(cfg).await, "a wrong CHAP secret");
        assert_eq!(
            st,
            LoginStatus::AUTHENTICATION_FAILURE,
            "{user}/{secret}: {text}"
        );
        assert!(
            text.contains("authentication"),
            "the error names the cause: {text:?}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "an authentication refusal ends the login at once ({:?})",
            t0.elapsed()
        );
    }
}

/// Mutual CHAP: the target proves itself with [`BOB`]'s secret; a target that does not know
/// the secret we expect is refused by us.
async fn mutual_chap(p: &Peer) {
    let cfg = p
        .config(&p.mutual)
        .mutual_chap(ALICE.0, ALICE.1, BOB.0, BOB.1)
        .expect("mutual CHAP");
    let s = p
        .connect(cfg)
        .await
        .unwrap_or_else(|e| panic!("mutual CHAP login on {}: {e}", p.name));
    write_verified(&s, 2, &Rng::new(3).bytes(512), "mutual CHAP target").await;
    s.logout().await.expect("logout");

    // Mutual CHAP where we expect another target secret: we refuse the target.
    let cfg = p
        .config(&p.mutual)
        .mutual_chap(ALICE.0, ALICE.1, BOB.0, "not-bobs-secret-1")
        .expect("mutual CHAP");
    match p.connect(cfg).await {
        Err(e @ Error::Login(LoginFailure::Auth(_))) => assert!(
            e.to_string().contains("authentication"),
            "the error names the cause: {e}"
        ),
        other => panic!("a target with the wrong secret must be refused: {other:?}"),
    }

    // A mutual CHAP secret equal to ours is refused by configuration.
    let r = p
        .config(&p.mutual)
        .mutual_chap(ALICE.0, ALICE.1, BOB.0, ALICE.1);
    assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// 8. The URL form

async fn url_form(p: &Peer) {
    // CHAP from the URL's user and password.
    let url = format!(
        "iscsi://{}%{}@{}/{}/{}",
        ALICE.0, ALICE.1, p.portal, p.chap, p.lun
    );
    let s = Session::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(s.lun(), p.lun);
    assert_eq!(s.config().target, p.chap);
    let cap = s.read_capacity().await.expect("READ CAPACITY");
    assert_eq!(cap.bytes(), 1 << 20);
    write_verified(&s, 3, &Rng::new(4).bytes(2048), "URL session").await;
    s.logout().await.expect("logout");

    // No credentials, the open target.
    let url = format!("iscsi://{}/{}/{}", p.portal, p.open, p.lun);
    let s = Session::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert!(s.read_capacity().await.expect("READ CAPACITY").bytes() >= DISK);
    s.logout().await.expect("logout");

    // A wrong password.
    let url = format!(
        "iscsi://{}%wrong-secret-4567@{}/{}/{}",
        ALICE.0, p.portal, p.chap, p.lun
    );
    let (st, _) = refusal(Session::connect(&url).await, "URL with a wrong password");
    assert_eq!(st, LoginStatus::AUTHENTICATION_FAILURE);

    // A user without a password and a URL without a target are configuration errors.
    let url = format!("iscsi://{}@{}/{}/{}", ALICE.0, p.portal, p.chap, p.lun);
    let r = Session::connect(&url).await;
    assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
    let r = Session::connect(&format!("iscsi://{}", p.portal)).await;
    assert!(matches!(r, Err(Error::Config(_))), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// 3. Digests

async fn digests(p: &Peer) {
    for (header, data) in [(true, true), (true, false), (false, true)] {
        let want = |on| if on { Digest::Crc32c } else { Digest::None };
        let s = p
            .open_session(p.config(&p.open).digests(header, data))
            .await;
        assert_eq!(s.params().header_digest, want(header), "HeaderDigest");
        assert_eq!(s.params().data_digest, want(data), "DataDigest");
        let mut rng = Rng::new(10 + u64::from(header) * 2 + u64::from(data));
        // One block, several PDUs, several bursts.
        let mut lba = 0;
        for len in [BS, 8192 + BS, 300 * 1024, 2 * MIB + 3 * BS] {
            let what = format!("digests {header}/{data}, {len} bytes");
            write_verified(&s, lba, &rng.bytes(len), &what).await;
            lba += (len / BS) as u64 + 1;
        }
        s.logout().await.expect("logout");
    }
}

// ---------------------------------------------------------------------------------------------
// 4. 64 MiB of random data, many commands in flight

async fn random_64mib(p: &Peer) {
    let mut cfg = p.config(&p.open);
    // Small bursts: a 1 MiB+ write needs several R2Ts, whatever the target offers.
    cfg.negotiation.first_burst_length = 64 << 10;
    cfg.negotiation.max_burst_length = 256 << 10;
    let s = p.open_session(cfg).await;
    let cap = s.read_capacity().await.expect("READ CAPACITY");
    assert!(cap.bytes() >= DISK, "{cap:?}");
    assert!(s.params().max_burst_length <= 256 << 10);

    let image = Arc::new(Rng::new(64).bytes(DISK as usize));
    // Write chunks of varied sizes: single blocks, odd block counts, 1 MiB and more.
    let mut rng = Rng::new(65);
    let mut chunks = VecDeque::new();
    let mut off = 0usize;
    while off < image.len() {
        let len = match rng.below(8) {
            0 => BS,
            1 => BS * (1 + rng.below(16) as usize),
            2 => 64 << 10,
            3 => (256 << 10) + BS,
            4 | 5 => MIB,
            6 => MIB + BS * (1 + rng.below(64) as usize),
            _ => 3 * MIB,
        };
        let len = len.min(image.len() - off);
        chunks.push_back((off, len));
        off += len;
    }
    let n_writes = chunks.len();
    let small = chunks.iter().filter(|c| c.1 <= 8 * BS).count();
    let big = chunks.iter().filter(|c| c.1 >= MIB).count();
    assert!(small > 5 && big > 20, "{small} small, {big} big chunks");
    let t0 = Instant::now();
    run_jobs(32, chunks, {
        let s = s.clone();
        let image = image.clone();
        move |(off, len): (usize, usize)| {
            let s = s.clone();
            let image = image.clone();
            async move {
                s.write((off / BS) as u64, &image[off..off + len])
                    .await
                    .unwrap_or_else(|e| panic!("write of {len} bytes at byte {off}: {e}"));
            }
        }
    })
    .await;
    let wrote = t0.elapsed();

    // Read back with other chunk boundaries.
    let mut chunks = VecDeque::new();
    let mut off = 0usize;
    while off < image.len() {
        let len = (BS * (1 + rng.below(4096) as usize)).min(image.len() - off);
        chunks.push_back((off, len));
        off += len;
    }
    let n_reads = chunks.len();
    let t1 = Instant::now();
    run_jobs(32, chunks, {
        let s = s.clone();
        let image = image.clone();
        move |(off, len): (usize, usize)| {
            let s = s.clone();
            let image = image.clone();
            async move {
                let got = s
                    .read((off / BS) as u64, (len / BS) as u32)
                    .await
                    .unwrap_or_else(|e| panic!("read of {len} bytes at byte {off}: {e}"));
                assert_same(
                    &got,
                    &image[off..off + len],
                    &format!("{len} bytes at byte {off}"),
                );
            }
        }
    })
    .await;
    println!(
        "{}: 64 MiB written in {n_writes} commands in {wrote:?}, read back in {n_reads} in {:?}",
        p.name,
        t1.elapsed()
    );
    s.sync_cache().await.expect("SYNCHRONIZE CACHE");
    s.logout().await.expect("logout");
}

/// Runs `job` on every item of `jobs` from `tasks` spawned tasks.
async fn run_jobs<J, F, Fut>(tasks: usize, jobs: VecDeque<J>, job: F)
where
    J: Send + 'static,
    F: Fn(J) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let jobs = Arc::new(Mutex::new(jobs));
    let handles: Vec<JoinHandle<()>> = (0..tasks)
        .map(|_| {
            let jobs = jobs.clone();
            let job = job.clone();
            tokio::spawn(async move {
                loop {
                    let next = jobs.lock().expect("jobs").pop_front();
                    match next {
                        Some(j) => job(j).await,
                        None => break,
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("a task panicked");
    }
}

// ---------------------------------------------------------------------------------------------
// 5. Many commands in flight

async fn many_in_flight(p: &Peer) {
    let s = p.open_session(p.config(&p.open)).await;
    let region = Arc::new(Rng::new(5).bytes(8 * MIB));
    fill(&s, 0, &region).await;
    let mut rng = Rng::new(6);
    let jobs: VecDeque<usize> = (0..2000)
        .map(|_| BS * rng.below(((region.len() - 4096) / BS) as u64) as usize)
        .collect();
    let done = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    run_jobs(64, jobs, {
        let s = s.clone();
        let region = region.clone();
        let done = done.clone();
        move |off: usize| {
            let s = s.clone();
            let region = region.clone();
            let done = done.clone();
            async move {
                let got = s
                    .read((off / BS) as u64, (4096 / BS) as u32)
                    .await
                    .unwrap_or_else(|e| panic!("4 KiB read at byte {off}: {e}"));
                assert_same(&got, &region[off..off + 4096], &format!("byte {off}"));
                done.fetch_add(1, Ordering::Relaxed);
            }
        }
    })
    .await;
    assert_eq!(done.load(Ordering::Relaxed), 2000);
    println!("{}: 2000 4 KiB reads in {:?}", p.name, t0.elapsed());
    s.logout().await.expect("logout");
}

// ---------------------------------------------------------------------------------------------
// 6. Abort (command timeouts) and LU reset

/// How a batch of raw commands ended.
#[derive(Debug, Default)]
struct Outcomes {
    good: usize,
    timed_out: usize,
    aborted: usize,
}

/// A session to the open target through `proxy`; with `r2t_only`, writes carry no
/// unsolicited data (InitialR2T=Yes, ImmediateData=No), so each waits for the target's R2T.
async fn proxied(p: &Peer, proxy: &Proxy, r2t_only: bool) -> Session {
    let mut cfg = p.config(&p.open);
    cfg.portal = proxy.addr.to_string();
    if r2t_only {
        cfg.negotiation.initial_r2t = true;
        cfg.negotiation.immediate_data = false;
    }
    let s = p.open_session(cfg).await;
    if r2t_only {
        assert!(s.params().initial_r2t && !s.params().immediate_data);
    }
    s
}

/// Length of an R2T, a SCSI Response without sense or a Task Management Response on the
/// wire (no digests).
const BHS: u64 = 48;

/// Sends 16 writes of 64 KiB at `lba` (each waiting for its R2T) with the target's answers
/// held by the proxy, so that they are all in flight at the target without their data.
/// Returns their handles once every R2T is held.
async fn held_writes(
    s: &Session,
    proxy: &Proxy,
    lba: u32,
    timeout: Option<Duration>,
) -> Vec<JoinHandle<Result<(), Error>>> {
    let held0 = proxy.holding();
    proxy.hold();
    let lun = s.lun();
    let handles: Vec<_> = (0..16u32)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                let at = lba + i * 128;
                let mut req = Request::new(lun, &write10(at, 128), Data::Write(vec![0xee; 65536]));
                req.timeout = timeout;
                let c = s.execute(req).await?;
                panic!("a write without its data completed: {:?}", c.status);
            })
        })
        .collect();
    while proxy.holding() < held0 + 16 * BHS {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    handles
}

/// Command deadlines: a command whose deadline passes ends with `TimedOut` (the engine
/// aborts it with ABORT TASK), and the session goes on working, on the same connection.
async fn aborts(p: &Peer) {
    let proxy = Proxy::start(&p.portal).await;
    let s = proxied(p, &proxy, false).await;
    let region = Arc::new(Rng::new(20).bytes(16 * MIB));
    fill(&s, 0, &region).await;

    // A deadline that is over before the command leaves.
    let r = s
        .execute(
            Request::new(p.lun, &read10(0, 8), Data::Read(4096)).timeout(Duration::from_micros(1)),
        )
        .await;
    assert!(matches!(r, Err(Error::TimedOut)), "{r:?}");

    // Deadlines from 0.25 ms to 0.6 s on 2 MiB reads and 1 MiB writes sent together: some
    // pass while the commands run; the reads that make it have their data.
    let mut handles = Vec::new();
    for i in 0..48u32 {
        let s = s.clone();
        let region = region.clone();
        let lun = p.lun;
        handles.push(tokio::spawn(async move {
            let timeout = Duration::from_micros(250 * u64::from((i + 1) * (i + 1)));
            if i % 3 == 2 {
                // A write to scratch space past the region.
                let lba = 100_000 + (i % 8) * 2048;
                let req = Request::new(lun, &write10(lba, 2048), Data::Write(vec![0x5a; MIB]));
                return s.execute(req.timeout(timeout)).await.map(|c| {
                    assert!(c.status.is_good(), "write: {:?}", c.status);
                });
            }
            let lba = (i % 8) * 4096;
            let req = Request::new(lun, &read10(lba, 4096), Data::Read(2 * MIB as u32));
            s.execute(req.timeout(timeout)).await.map(|c| {
                assert!(c.status.is_good(), "read: {:?}", c.status);
                let off = lba as usize * BS;
                let data = c.data.expect("read data");
                assert_same(
                    &data,
                    &region[off..off + 2 * MIB],
                    "a read that beat its deadline",
                );
            })
        }));
    }
    let mut o = Outcomes::default();
    for h in handles {
        match h.await.expect("task") {
            Ok(()) => o.good += 1,
            Err(Error::TimedOut) => o.timed_out += 1,
            Err(e) => panic!("a command with a deadline: {e:?}"),
        }
    }
    println!("{}: deadlines: {o:?}", p.name);
    assert!(o.timed_out > 0, "no deadline passed: {o:?}");

    // The session works afterwards, and reads get their own data (not an aborted one's).
    s.test_unit_ready()
        .await
        .expect("TEST UNIT READY after aborts");
    write_verified(&s, 50_000, &Rng::new(21).bytes(MIB), "after aborts").await;
    for i in 0..16u64 {
        let got = s.read(i * 64, 64).await.expect("read after aborts");
        let off = (i * 64) as usize * BS;
        assert_same(&got, &region[off..off + 64 * BS], "read after aborts");
    }
    s.logout().await.expect("logout");

    // Writes that are surely running at the target (waiting for their data; their R2Ts are
    // held here) when their deadline passes: TimedOut at once; ABORT TASK goes out.
    let s = proxied(p, &proxy, true).await;
    let old = Rng::new(24).bytes(16 * 128 * BS);
    fill(&s, 70_000, &old).await;
    let sent0 = proxy.to_target();
    let t0 = Instant::now();
    let writes = held_writes(&s, &proxy, 70_000, Some(Duration::from_millis(100))).await;
    for w in writes {
        let r = w.await.expect("task");
        assert!(matches!(r, Err(Error::TimedOut)), "{r:?}");
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // 16 commands (48 bytes each, no data), then 16 ABORT TASK requests.
    while proxy.to_target() < sent0 + 32 * BHS {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    proxy.release();
    write_verified(
        &s,
        75_000,
        &Rng::new(25).bytes(256 * 1024),
        "after ABORT TASK",
    )
    .await;
    let got = s.read(70_000, (old.len() / BS) as u32).await.expect("read");
    assert_same(&got, &old, "the aborted writes wrote nothing");
    assert_eq!(
        proxy.accepted(),
        2,
        "a session reconnected while aborting (instead of handling the answers)"
    );
    s.logout().await.expect("logout");
}

/// LOGICAL UNIT RESET (and, on our target, TARGET WARM RESET) with commands in flight: the
/// reset succeeds, each command completes with its data or ends with `Aborted`, and the
/// session goes on working (the typed helpers get past the UNIT ATTENTION).
async fn resets(p: &Peer) {
    let proxy = Proxy::start(&p.portal).await;
    let s = proxied(p, &proxy, false).await;
    let region = Arc::new(Rng::new(26).bytes(16 * MIB));
    fill(&s, 0, &region).await;

    let o = reset_under_reads(&s, &region, |s| async move { s.lu_reset().await }).await;
    println!("{}: LU reset under reads: {o:?}", p.name);
    write_verified(&s, 60_000, &Rng::new(22).bytes(64 * 1024), "after LU reset").await;
    assert_same(
        &s.read(0, 2048).await.expect("read after LU reset"),
        &region[..MIB],
        "read after LU reset",
    );
    if p.ours {
        let o = reset_under_reads(&s, &region, |s| async move { s.target_reset().await }).await;
        println!("{}: target reset under reads: {o:?}", p.name);
        write_verified(
            &s,
            61_000,
            &Rng::new(23).bytes(64 * 1024),
            "after target reset",
        )
        .await;
    }
    s.logout().await.expect("logout");

    // Writes that are surely in flight at the target (waiting for their data; their R2Ts are
    // held here) when the reset goes: all end with Aborted, and none wrote.
    let s = proxied(p, &proxy, true).await;
    let old = Rng::new(27).bytes(16 * 128 * BS);
    fill(&s, 80_000, &old).await;
    let mut resets: Vec<(&str, bool)> = vec![("LU reset", false)];
    if p.ours {
        resets.push(("target reset", true));
    }
    for (what, target_reset) in resets {
        let writes = held_writes(&s, &proxy, 80_000, None).await;
        let held = proxy.holding();
        let sent = proxy.to_target();
        let reset = tokio::spawn({
            let s = s.clone();
            async move {
                if target_reset {
                    s.target_reset().await
                } else {
                    s.lu_reset().await
                }
            }
        });
        // The reset reached the target and its answer is held here too.
        while proxy.to_target() < sent + BHS || proxy.holding() < held + BHS {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        proxy.release();
        reset
            .await
            .expect("task")
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        for w in writes {
            let r = w.await.expect("task");
            assert!(matches!(r, Err(Error::Aborted)), "{what}: {r:?}");
        }
        // tgtd answers the reset at once but does not abort writes that wait for their
        // data: they run when the data comes (the R2Ts we held reach the initiator before the
        // reset's answer, and it answers them).
        if p.ours {
            let got = s.read(80_000, (old.len() / BS) as u32).await.expect("read");
            assert_same(
                &got,
                &old,
                &format!("{what}: the aborted writes wrote nothing"),
            );
        }
        write_verified(&s, 90_000, &Rng::new(28).bytes(MIB), what).await;
    }
    assert_eq!(
        proxy.accepted(),
        2,
        "a session reconnected during the resets"
    );
    s.logout().await.expect("logout");
}

/// Starts 32 reads of 2 MiB, runs `reset` while they are in flight (it must succeed), and
/// checks that each read either returns its data or ends with `Aborted`.
async fn reset_under_reads<F, Fut>(s: &Session, region: &Arc<Vec<u8>>, reset: F) -> Outcomes
where
    F: FnOnce(Session) -> Fut,
    Fut: Future<Output = Result<(), Error>>,
{
    let mut handles = Vec::new();
    for i in 0..32u32 {
        let s = s.clone();
        let region = region.clone();
        handles.push(tokio::spawn(async move {
            let lba = (i % 8) * 4096;
            let req = Request::new(s.lun(), &read10(lba, 4096), Data::Read(2 * MIB as u32));
            let c = s.execute(req).await?;
            assert!(c.status.is_good(), "read {i}: {:?}", c.status);
            let off = lba as usize * BS;
            assert_same(
                &c.data.expect("data"),
                &region[off..off + 2 * MIB],
                "a read that completed despite the reset",
            );
            Ok::<(), Error>(())
        }));
    }
    // Let the driver send them.
    tokio::time::sleep(Duration::from_millis(2)).await;
    reset(s.clone()).await.expect("the reset");
    let mut o = Outcomes::default();
    for h in handles {
        match h.await.expect("task") {
            Ok(()) => o.good += 1,
            Err(Error::Aborted) => o.aborted += 1,
            Err(e) => panic!("a read in flight during a reset: {e:?}"),
        }
    }
    o
}

// ---------------------------------------------------------------------------------------------
// The typed helpers

/// INQUIRY, READ CAPACITY, REPORT LUNS, TEST UNIT READY, SYNCHRONIZE CACHE, the write and
/// read variants, WRITE SAME, UNMAP, COMPARE AND WRITE (tgtd lacks it) and their errors.
async fn scsi_helpers(p: &Peer) {
    let s = p.open_session(p.config(&p.open)).await;
    let inq = s.inquiry().await.expect("INQUIRY");
    assert_eq!(inq.device_type, 0);
    assert!(!inq.vendor.is_empty() && !inq.product.is_empty(), "{inq:?}");
    if p.ours {
        assert_eq!(inq.vendor, "ISCSI-RS");
    }
    let cap = s.read_capacity().await.expect("READ CAPACITY");
    assert_eq!(cap.block_size as usize, BS);
    assert_eq!(cap.bytes(), DISK, "{cap:?}");
    assert_eq!(s.block_size().await.expect("block size") as usize, BS);
    let luns = s.report_luns().await.expect("REPORT LUNS");
    assert!(luns.contains(&p.lun), "{luns:?}");
    s.test_unit_ready().await.expect("TEST UNIT READY");
    s.sync_cache().await.expect("SYNCHRONIZE CACHE");

    // write_owned / write_fua give the buffer back; read_into fills ours.
    let data = Rng::new(30).bytes(16 * BS);
    let back = s.write_owned(100, data.clone()).await.expect("write_owned");
    assert_eq!(back, data, "write_owned hands the buffer back");
    let filled = s.read_into(100, vec![0; 16 * BS]).await.expect("read_into");
    assert_same(&filled, &data, "read_into");
    let fua = Rng::new(31).bytes(4 * BS);
    s.write_fua(200, fua.clone()).await.expect("write_fua");
    assert_same(
        &s.read(200, 4).await.expect("read"),
        &fua,
        "after FUA write",
    );
    let r = s.write(0, &[0u8; 100]).await;
    assert!(matches!(r, Err(Error::Config(_))), "a partial block: {r:?}");

    // A read past the end: CHECK CONDITION, ILLEGAL REQUEST.
    let r = s.read(cap.blocks, 1).await;
    let sense = match &r {
        Err(e @ Error::CheckCondition { .. }) => e.sense().cloned(),
        other => panic!("a read past the end: {other:?}"),
    };
    assert_eq!(sense.map(|s| s.key.0), Some(0x5), "ILLEGAL REQUEST: {r:?}");

    // WRITE SAME, then UNMAP (both disks are thin and read zeros there).
    let block = Rng::new(34).bytes(BS);
    s.write_same(400, 64, &block, false)
        .await
        .expect("WRITE SAME");
    let got = s.read(399, 66).await.expect("read");
    for i in 1..65 {
        assert_same(&got[i * BS..(i + 1) * BS], &block, "a WRITE SAME block");
    }
    assert_ne!(&got[..BS], &block[..], "WRITE SAME starts at its LBA");
    assert_ne!(
        &got[65 * BS..],
        &block[..],
        "WRITE SAME ends after its blocks"
    );
    s.unmap(&[(410, 8), (430, 4)]).await.expect("UNMAP");
    let got = s.read(400, 64).await.expect("read");
    for i in 0..64 {
        let want_zero = (10..18).contains(&i) || (30..34).contains(&i);
        let blk = &got[i * BS..(i + 1) * BS];
        if want_zero {
            assert!(
                blk.iter().all(|&b| b == 0),
                "unmapped block {i} reads zeros"
            );
        } else {
            assert_same(blk, &block, "a block UNMAP left alone");
        }
    }
    s.write_same(400, 64, &[0u8; BS], true)
        .await
        .expect("WRITE SAME with UNMAP");
    let got = s.read(400, 64).await.expect("read");
    assert!(got.iter().all(|&b| b == 0), "WRITE SAME with UNMAP zeroes");

    // COMPARE AND WRITE: written when equal, miscompare (nothing written) otherwise.
    let a = Rng::new(32).bytes(2 * BS);
    let b = Rng::new(33).bytes(2 * BS);
    s.write(300, &a).await.expect("write");
    if !p.ours {
        // tgtd does not implement it: the refusal comes back as it is (ILLEGAL REQUEST,
        // INVALID COMMAND OPERATION CODE), not as a miscompare.
        let r = s.compare_and_write(300, &a, &b).await;
        let sense = r.as_ref().err().and_then(Error::sense);
        assert_eq!(
            sense.map(|s| (s.key.0, s.asc.0)),
            Some((5, 0x2000)),
            "{r:?}"
        );
        s.logout().await.expect("logout");
        return;
    }
    let r = s
        .compare_and_write(300, &a, &b)
        .await
        .expect("COMPARE AND WRITE");
    assert_eq!(r, CompareResult::Written);
    assert_same(
        &s.read(300, 2).await.expect("read"),
        &b,
        "after COMPARE AND WRITE",
    );
    let mut wrong = b.clone();
    wrong[700] ^= 0xff;
    let r = s
        .compare_and_write(300, &wrong, &a)
        .await
        .expect("COMPARE AND WRITE");
    assert_eq!(
        r,
        CompareResult::Miscompare { offset: Some(700) },
        "the first differing byte"
    );
    assert_same(
        &s.read(300, 2).await.expect("read"),
        &b,
        "after a miscompare",
    );
    let r = s.compare_and_write(300, &a, &b[..BS]).await;
    assert!(matches!(r, Err(Error::Config(_))), "{r:?}");

    s.logout().await.expect("logout");
}

// ---------------------------------------------------------------------------------------------
// The proxy

/// A loopback TCP proxy in front of a target: counts connections and bytes, can hold the
/// target's bytes (read, kept, not forwarded) and cut every connection.
struct Proxy {
    addr: SocketAddr,
    state: Arc<ProxyState>,
    held: watch::Sender<bool>,
    cut: watch::Sender<u64>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    accepted: AtomicUsize,
    /// Bytes forwarded from the initiator to the target.
    to_target: AtomicU64,
    /// Bytes from the target held back now.
    holding: AtomicU64,
    /// Bytes from the target thrown away at cuts.
    discarded: AtomicU64,
    /// Offset in the initiator's stream (as counted by `to_target`) of a byte to damage on
    /// the way, plus one (0: none).
    flip_at: AtomicU64,
}

impl Proxy {
    async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let target: SocketAddr = target.parse().expect("target address");
        let state = Arc::new(ProxyState::default());
        let (held, held_rx) = watch::channel(false);
        let (cut, cut_rx) = watch::channel(0u64);
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                let Ok(outbound) = TcpStream::connect(target).await else {
                    continue;
                };
                st.accepted.fetch_add(1, Ordering::SeqCst);
                let mut cut_rx = cut_rx.clone();
                cut_rx.borrow_and_update();
                tokio::spawn(pipe(inbound, outbound, st.clone(), held_rx.clone(), cut_rx));
            }
        });
        Proxy {
            addr,
            state,
            held,
            cut,
            task,
        }
    }

    fn accepted(&self) -> usize {
        self.state.accepted.load(Ordering::SeqCst)
    }

    fn to_target(&self) -> u64 {
        self.state.to_target.load(Ordering::SeqCst)
    }

    fn holding(&self) -> u64 {
        self.state.holding.load(Ordering::SeqCst)
    }

    /// Flips the lowest bit of the initiator's byte at `offset` (counted as `to_target`
    /// counts) on its way to the target.
    fn flip_at(&self, offset: u64) {
        self.state.flip_at.store(offset + 1, Ordering::SeqCst);
    }

    /// From now on the target's bytes are kept back.
    fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Forwards what was held and stops holding.
    fn release(&self) {
        self.held.send_replace(false);
    }

    /// Closes every connection (what was held is lost) and stops holding; returns the bytes
    /// thrown away so far.
    fn cut(&self) -> u64 {
        self.cut.send_modify(|g| *g += 1);
        self.held.send_replace(false);
        self.state.discarded.load(Ordering::SeqCst)
    }

    /// Waits until `n` connections were accepted.
    async fn wait_accepted(&self, n: usize) {
        while self.accepted() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards both ways until either side closes or a cut.
async fn pipe(
    inbound: TcpStream,
    outbound: TcpStream,
    st: Arc<ProxyState>,
    mut held: watch::Receiver<bool>,
    mut cut: watch::Receiver<u64>,
) {
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (mut ir, mut iw) = inbound.into_split();
    let (mut tr, mut tw) = outbound.into_split();
    let st2 = st.clone();
    let up = async move {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = ir.read(&mut buf).await.unwrap_or(0);
            let base = st2.to_target.load(Ordering::SeqCst);
            let flip = st2.flip_at.load(Ordering::SeqCst);
            if (base + 1..=base + n as u64).contains(&flip) {
                buf[(flip - 1 - base) as usize] ^= 1;
                st2.flip_at.store(0, Ordering::SeqCst);
            }
            if n == 0 || tw.write_all(&buf[..n]).await.is_err() {
                return;
            }
            st2.to_target.fetch_add(n as u64, Ordering::SeqCst);
        }
    };
    let pending = Arc::new(Mutex::new(Vec::<u8>::new()));
    let pend = pending.clone();
    let st3 = st.clone();
    let down = async move {
        let mut buf = vec![0u8; 256 << 10];
        loop {
            if !*held.borrow_and_update() {
                let out = std::mem::take(&mut *pend.lock().expect("pending"));
                if !out.is_empty() {
                    st3.holding.fetch_sub(out.len() as u64, Ordering::SeqCst);
                    if iw.write_all(&out).await.is_err() {
                        return;
                    }
                }
            }
            tokio::select! {
                n = tr.read(&mut buf) => {
                    let n = n.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    if *held.borrow() {
                        pend.lock().expect("pending").extend_from_slice(&buf[..n]);
                        st3.holding.fetch_add(n as u64, Ordering::SeqCst);
                        continue;
                    }
                    // Released meanwhile: what was held goes first.
                    let out = std::mem::take(&mut *pend.lock().expect("pending"));
                    st3.holding.fetch_sub(out.len() as u64, Ordering::SeqCst);
                    if iw.write_all(&out).await.is_err() || iw.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                r = held.changed() => if r.is_err() { return },
            }
        }
    };
    // A cut also releases the hold: it must be seen first, so that what was held is dropped,
    // not forwarded.
    tokio::select! {
        biased;
        _ = cut.changed() => {
            let lost = std::mem::take(&mut *pending.lock().expect("pending")).len() as u64;
            st.holding.fetch_sub(lost, Ordering::SeqCst);
            st.discarded.fetch_add(lost, Ordering::SeqCst);
        }
        _ = up => {}
        _ = down => {}
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Reconnection (our target, through the proxy, which cuts the connection)

/// A session to our open target through `proxy`, reconnecting quickly.
async fn via_proxy(p: &Peer, proxy: &Proxy) -> Session {
    let mut cfg = p.config(&p.open);
    cfg.portal = proxy.addr.to_string();
    cfg.negotiation.first_burst_length = 64 << 10;
    cfg.negotiation.max_burst_length = 256 << 10;
    cfg.reconnect.initial_backoff = Duration::from_millis(20);
    p.open_session(cfg).await
}

/// A write whose immediate data is damaged on the way, with CRC32C digests: the target
/// rejects the command (Data Digest Error) without running it, the session plugs the CmdSN
/// gap with an ABORT TASK and sends the write again on the same connection; it lands, and
/// the commands after it are not held up.
#[tokio::test]
async fn damaged_immediate_data_is_sent_again() {
    let p = Peer::ours().await;
    within(Duration::from_secs(20), "damaged immediate data", async {
        let proxy = Proxy::start(&p.portal).await;
        let mut cfg = p.config(&p.open).digests(true, true);
        cfg.portal = proxy.addr.to_string();
        let s = p.open_session(cfg).await;
        assert_eq!(s.params().data_digest, Digest::Crc32c);
        assert!(s.params().immediate_data);
        let a = Rng::new(60).bytes(BS);
        let b = Rng::new(61).bytes(BS);
        s.write(300, &[0u8; BS]).await.expect("write");

        // The next PDU out is the WRITE: 48 bytes of header, its digest, then the data.
        proxy.flip_at(proxy.to_target() + 48 + 4 + 100);
        s.write(300, &a).await.expect("the write, sent again");
        assert_eq!(
            proxy.state.flip_at.load(Ordering::SeqCst),
            0,
            "the byte was damaged"
        );
        s.write(301, &b).await.expect("the write after it");
        assert_same(&s.read(300, 1).await.expect("read"), &a, "block 300");
        assert_same(&s.read(301, 1).await.expect("read"), &b, "block 301");
        assert_eq!(proxy.accepted(), 1, "no reconnection");
        s.logout().await.expect("logout");
    })
    .await;
}

/// Writers and readers keep going while the connection is cut twice (with the target's
/// answers held back first, so commands are in flight without status): every command
/// succeeds, the data verifies.
#[tokio::test]
async fn reconnects_under_load_and_replays() {
    let p = Peer::ours().await;
    within(Duration::from_secs(40), "reconnect under load", async {
        let proxy = Proxy::start(&p.portal).await;
        let s = via_proxy(&p, &proxy).await;
        let fixed = Arc::new(Rng::new(40).bytes(8 * MIB));
        fill(&s, 0, &fixed).await;
        let stop = Arc::new(AtomicBool::new(false));
        let ops = Arc::new(AtomicUsize::new(0));

        // 16 writers, each on its own 2 MiB region; they return what the region holds.
        let writers: Vec<_> = (0..16u64)
            .map(|w| {
                let (s, stop, ops) = (s.clone(), stop.clone(), ops.clone());
                tokio::spawn(async move {
                    let base = (16 * MIB / BS) as u64 + w * (2 * MIB / BS) as u64;
                    let mut image = vec![0u8; 2 * MIB];
                    let mut rng = Rng::new(100 + w);
                    let mut n = 0;
                    while n < 4 || !stop.load(Ordering::Relaxed) {
                        let blocks = 1 + rng.below(1024) as usize;
                        let at = rng.below((image.len() / BS - blocks) as u64 + 1) as usize;
                        let data = rng.bytes(blocks * BS);
                        s.write(base + at as u64, &data)
                            .await
                            .unwrap_or_else(|e| panic!("writer {w}: write {n}: {e}"));
                        image[at * BS..at * BS + data.len()].copy_from_slice(&data);
                        n += 1;
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                    (base, image)
                })
            })
            .collect();
        // 8 readers of the fixed region.
        let readers: Vec<_> = (0..8u64)
            .map(|r| {
                let (s, stop, fixed, ops) = (s.clone(), stop.clone(), fixed.clone(), ops.clone());
                tokio::spawn(async move {
                    let mut rng = Rng::new(200 + r);
                    let mut n = 0;
                    while n < 4 || !stop.load(Ordering::Relaxed) {
                        let blocks = 1 + rng.below(2048) as usize;
                        let at = rng.below((fixed.len() / BS - blocks) as u64 + 1) as usize;
                        let got = s
                            .read(at as u64, blocks as u32)
                            .await
                            .unwrap_or_else(|e| panic!("reader {r}: read {n}: {e}"));
                        assert_same(
                            &got,
                            &fixed[at * BS..(at + blocks) * BS],
                            &format!("reader {r}, read {n}"),
                        );
                        n += 1;
                        ops.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();

        let mut discarded = 0;
        for cut in 0..2 {
            // IO goes on (after a reconnection: resumes).
            let o0 = ops.load(Ordering::Relaxed);
            let what = format!("10 commands done before cut {cut} (from {o0})");
            within(Duration::from_secs(10), &what, async {
                while ops.load(Ordering::Relaxed) < o0 + 10 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            // Commands go out, their answers stay here.
            proxy.hold();
            let what = format!("answers to hold before cut {cut}");
            within(Duration::from_secs(10), &what, async {
                while proxy.holding() == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
            discarded = proxy.cut();
            let what = format!("reconnection {}", cut + 1);
            within(Duration::from_secs(10), &what, proxy.wait_accepted(cut + 2)).await;
        }
        // IO resumes after the last reconnection.
        let o0 = ops.load(Ordering::Relaxed);
        within(
            Duration::from_secs(10),
            "IO after the reconnections",
            async {
                while ops.load(Ordering::Relaxed) < o0 + 10 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.await.expect("reader");
        }
        let mut images = Vec::new();
        for w in writers {
            images.push(w.await.expect("writer"));
        }
        assert!(discarded > 0, "answers were lost at the cuts");
        assert_eq!(proxy.accepted(), 3, "two reconnections");
        for (base, image) in images {
            let got = s
                .read(base, (image.len() / BS) as u32)
                .await
                .expect("read back");
            assert_same(&got, &image, &format!("writer region at LBA {base}"));
        }
        println!(
            "reconnect: {} commands, {discarded} bytes of answers lost",
            ops.load(Ordering::Relaxed)
        );
        s.logout().await.expect("logout");
    })
    .await;
}

/// PERSISTENT RESERVE IN READ KEYS: (PRgeneration, registered keys).
async fn read_keys(s: &Session) -> (u32, Vec<u64>) {
    // PERSISTENT RESERVE IN, READ KEYS, allocation length 1024.
    let cdb = [0x5e, 0x00, 0, 0, 0, 0, 0, 0x04, 0x00, 0];
    let mut attempts = 0;
    let d = loop {
        let c = s
            .execute(Request::new(s.lun(), &cdb, Data::Read(1024)))
            .await
            .expect("PERSISTENT RESERVE IN");
        attempts += 1;
        match c.into_good() {
            // A unit attention (power on, I_T nexus loss after a reconnect) is reported once.
            Err(Error::CheckCondition { sense: Some(k), .. })
                if k.key == SenseKey::UNIT_ATTENTION && attempts < 3 => {}
            r => break r.expect("READ KEYS").expect("parameter data"),
        }
    };
    assert!(d.len() >= 8, "READ KEYS answer of {} bytes", d.len());
    let generation = u32::from_be_bytes(d[0..4].try_into().unwrap());
    let len = u32::from_be_bytes(d[4..8].try_into().unwrap()) as usize;
    let keys = d[8..8 + len.min(d.len() - 8)]
        .chunks_exact(8)
        .map(|k| u64::from_be_bytes(k.try_into().unwrap()))
        .collect();
    (generation, keys)
}

/// A PERSISTENT RESERVE OUT sent and unanswered when the connection drops is not replayed:
/// REGISTER AND IGNORE EXISTING KEY run twice would count two registration changes.
#[tokio::test]
async fn persistent_reserve_out_in_flight_is_not_replayed() {
    let p = Peer::ours().await;
    within(
        Duration::from_secs(20),
        "PERSISTENT RESERVE OUT at a cut",
        async {
            let proxy = Proxy::start(&p.portal).await;
            let s = via_proxy(&p, &proxy).await;
            assert_eq!(read_keys(&s).await, (0, vec![]), "a new LU");

            const KEY: u64 = 0x0102_0304_0506_0708;
            // PERSISTENT RESERVE OUT, REGISTER AND IGNORE EXISTING KEY, 24 bytes of parameters.
            let cdb = [0x5f, 0x06, 0, 0, 0, 0, 0, 0, 24, 0];
            let mut params = vec![0u8; 24];
            params[8..16].copy_from_slice(&KEY.to_be_bytes());

            proxy.hold();
            let sent0 = proxy.to_target();
            let pr = tokio::spawn({
                let s = s.clone();
                async move {
                    s.execute(Request::new(s.lun(), &cdb, Data::Write(params)))
                        .await
                }
            });
            // The command with its immediate parameter data reached the target and its
            // 48-byte SCSI Response is held here: the target ran it.
            while proxy.to_target() < sent0 + 48 + 24 || proxy.holding() < 48 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            proxy.cut();
            let r = pr.await.expect("task");
            assert!(
                matches!(r, Err(Error::ConnectionLost { sent: true })),
                "PERSISTENT RESERVE OUT at the cut: {r:?}"
            );
            assert_eq!(
                read_keys(&s).await,
                (1, vec![KEY]),
                "registered once, on the first connection"
            );
            assert_eq!(proxy.accepted(), 2, "one reconnection");
            s.logout().await.expect("logout");
        },
    )
    .await;
}

/// A COMPARE AND WRITE sent and unanswered when the connection drops is not replayed (it
/// fails with `ConnectionLost { sent: true }`); a WRITE in the same situation is.
#[tokio::test]
async fn compare_and_write_in_flight_is_not_replayed() {
    let p = Peer::ours().await;
    within(
        Duration::from_secs(20),
        "COMPARE AND WRITE at a cut",
        async {
            let proxy = Proxy::start(&p.portal).await;
            let s = via_proxy(&p, &proxy).await;
            let a = Rng::new(50).bytes(BS);
            let b = Rng::new(51).bytes(BS);
            let c = Rng::new(52).bytes(BS);
            s.write(100, &a).await.expect("write");
            s.write(200, &[0u8; BS]).await.expect("write");

            proxy.hold();
            let sent0 = proxy.to_target();
            let caw = tokio::spawn({
                let (s, a, b) = (s.clone(), a.clone(), b.clone());
                async move { s.compare_and_write(100, &a, &b).await }
            });
            let write = tokio::spawn({
                let (s, c) = (s.clone(), c.clone());
                async move { s.write(200, &c).await }
            });
            // Both commands reached the target (immediate data), and both answers (a 48-byte
            // SCSI Response each) are held here: the target ran them.
            while proxy.to_target() < sent0 + (48 + 2 * BS as u64) + (48 + BS as u64)
                || proxy.holding() < 2 * 48
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            proxy.cut();
            let r = caw.await.expect("task");
            assert!(
                matches!(r, Err(Error::ConnectionLost { sent: true })),
                "COMPARE AND WRITE at the cut: {r:?}"
            );
            let r = write.await.expect("task");
            assert!(r.is_ok(), "the WRITE is replayed: {r:?}");
            assert_eq!(proxy.accepted(), 2, "one reconnection");

            // The target had run it: a replay would have found `b` and miscompared.
            assert_same(
                &s.read(100, 1).await.expect("read"),
                &b,
                "COMPARE AND WRITE ran once",
            );
            assert_same(
                &s.read(200, 1).await.expect("read"),
                &c,
                "the replayed WRITE",
            );
            let r = s
                .compare_and_write(100, &a, &b)
                .await
                .expect("COMPARE AND WRITE");
            let first = a.iter().zip(&b).position(|(x, y)| x != y).map(|i| i as u64);
            assert_eq!(r, CompareResult::Miscompare { offset: first });
            s.logout().await.expect("logout");
        },
    )
    .await;
}
