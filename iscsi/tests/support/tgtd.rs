//! tgtd (the Linux SCSI target framework's user-space daemon) as a test peer: started on a
//! loopback port with its own control port, configured with `tgtadm`, and stopped (its
//! backing files and control sockets removed) on drop, also when a test fails.
//!
//! When tgtd is not installed the fixture says `SKIPPED ...` and returns `None`, unless
//! `ISCSI_REQUIRE_PEERS=1`, when it panics instead.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The target name of [`Tgtd::start`].
pub const TGT_IQN: &str = "iqn.2026-11.rs.iscsi:tgtd-login";

/// One target to create in tgtd.
#[derive(Clone, Debug)]
pub struct TgtdTarget {
    /// Its iSCSI name.
    pub iqn: String,
    /// Size of its disk, LUN 1 (LUN 0 is tgtd's controller), on a sparse file.
    pub lun_bytes: u64,
    /// CHAP user and secret the initiator must log in with.
    pub chap: Option<(String, String)>,
    /// The target's own CHAP user and secret (mutual CHAP: `--outgoing`).
    pub mutual: Option<(String, String)>,
    /// Login keys to set (`--op update --mode target -n KEY -v VALUE`).
    pub params: Vec<(String, String)>,
    /// Thin provisioning of the disk (UNMAP, WRITE SAME with UNMAP punch holes).
    pub thin: bool,
}

impl TgtdTarget {
    /// A target without authentication.
    pub fn new(iqn: &str, lun_bytes: u64) -> TgtdTarget {
        TgtdTarget {
            iqn: iqn.into(),
            lun_bytes,
            chap: None,
            mutual: None,
            params: Vec::new(),
            thin: false,
        }
    }

    /// A thin-provisioned disk (UNMAP works).
    pub fn thin(mut self) -> TgtdTarget {
        self.thin = true;
        self
    }

    /// Sets a login key (e.g. `HeaderDigest`, `CRC32C,None`).
    pub fn param(mut self, key: &str, value: &str) -> TgtdTarget {
        self.params.push((key.into(), value.into()));
        self
    }

    /// Requires CHAP with this user.
    pub fn chap(mut self, user: &str, secret: &str) -> TgtdTarget {
        self.chap = Some((user.into(), secret.into()));
        self
    }

    /// Proves itself with this user (mutual CHAP).
    pub fn mutual(mut self, user: &str, secret: &str) -> TgtdTarget {
        self.mutual = Some((user.into(), secret.into()));
        self
    }
}

/// A running tgtd; its targets have tids 1, 2, ... in the order given.
pub struct Tgtd {
    child: Child,
    ctl: u32,
    port: u16,
    tids: Vec<u32>,
    backing: Vec<PathBuf>,
}

/// Control ports handed out by this process (on top of the socket-file check).
static NEXT_CTL: AtomicU32 = AtomicU32::new(0);

fn installed() -> bool {
    Command::new("tgtd").arg("--help").output().is_ok()
        && Command::new("tgtadm").arg("--help").output().is_ok()
}

impl Tgtd {
    /// Runs `tgtadm -C <ctl> --lld iscsi <args>`.
    fn tgtadm_on(ctl: u32, args: &[&str]) -> Output {
        Command::new("tgtadm")
            .args(["-C", &ctl.to_string(), "--lld", "iscsi"])
            .args(args)
            .output()
            .expect("run tgtadm")
    }

    /// Runs `tgtadm` against this daemon.
    pub fn tgtadm(&self, args: &[&str]) -> Output {
        Self::tgtadm_on(self.ctl, args)
    }

    /// Runs `tgtadm` against this daemon and panics if it fails.
    pub fn tgtadm_ok(&self, args: &[&str]) {
        let out = self.tgtadm(args);
        assert!(
            out.status.success(),
            "tgtadm {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// One target ([`TGT_IQN`], 64 MiB disk at LUN 1), with CHAP if given.
    pub fn start(chap: Option<(&str, &str)>) -> Option<Tgtd> {
        let mut t = TgtdTarget::new(TGT_IQN, 64 << 20);
        if let Some((user, secret)) = chap {
            t = t.chap(user, secret);
        }
        Tgtd::start_targets(&[t])
    }

    /// Starts tgtd with these targets, or returns `None` (saying why) when it is not
    /// installed.
    pub fn start_targets(targets: &[TgtdTarget]) -> Option<Tgtd> {
        if !installed() {
            assert!(
                std::env::var("ISCSI_REQUIRE_PEERS").as_deref() != Ok("1"),
                "tgtd is not installed (Debian: apt-get install tgt) and ISCSI_REQUIRE_PEERS=1"
            );
            println!("SKIPPED: tgtd is not installed (Debian: apt-get install tgt)");
            return None;
        }
        // A port taken between our probe and tgtd's bind, or a control port another process
        // took: try again with others.
        let mut why = String::new();
        for _ in 0..5 {
            match Tgtd::try_start(targets) {
                Ok(t) => return Some(t),
                Err(e) => why = e,
            }
        }
        panic!("tgtd did not start: {why}");
    }

    fn try_start(targets: &[TgtdTarget]) -> Result<Tgtd, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("a free port: {e}"))?
            .port();
        // A control port no other tgtd uses (its socket is /var/run/tgtd/socket.N; tgtd
        // takes 0..=32767): 100 per process, from a base that depends on the process.
        let base = 1_000 + (std::process::id() % 310) * 100;
        let ctl = (0..100)
            .map(|_| base + NEXT_CTL.fetch_add(1, Ordering::Relaxed) % 100)
            .find(|c| !Path::new(&format!("/var/run/tgtd/socket.{c}")).exists())
            .ok_or("no free tgtd control port")?;
        let child = Command::new("tgtd")
            .args(["-f", "-C", &ctl.to_string(), "--iscsi"])
            .arg(format!("portal=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start tgtd: {e}"))?;
        let mut tgt = Tgtd {
            child,
            ctl,
            port,
            tids: Vec::new(),
            backing: Vec::new(),
        };
        let ready = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(30));
            matches!(tgt.child.try_wait(), Ok(None))
                && tgt
                    .tgtadm(&["--op", "show", "--mode", "system"])
                    .status
                    .success()
        });
        if !ready {
            return Err(format!("tgtd did not come up on control port {ctl}"));
        }
        // The portal is ours (and not another process's that got the port first).
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            || !matches!(tgt.child.try_wait(), Ok(None))
        {
            return Err(format!("tgtd does not listen on 127.0.0.1:{port}"));
        }
        for (i, t) in targets.iter().enumerate() {
            let tid = (i + 1) as u32;
            let tid_s = tid.to_string();
            let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("tgtd-{}-{port}-{tid}.img", std::process::id()));
            std::fs::File::create(&path)
                .and_then(|f| f.set_len(t.lun_bytes))
                .expect("backing file");
            tgt.backing.push(path.clone());
            let path = path.to_string_lossy().into_owned();
            tgt.tgtadm_ok(&[
                "--op", "new", "--mode", "target", "--tid", &tid_s, "-T", &t.iqn,
            ]);
            tgt.tids.push(tid);
            tgt.tgtadm_ok(&[
                "--op",
                "new",
                "--mode",
                "logicalunit",
                "--tid",
                &tid_s,
                "--lun",
                "1",
                "-b",
                &path,
            ]);
            tgt.tgtadm_ok(&[
                "--op", "bind", "--mode", "target", "--tid", &tid_s, "-I", "ALL",
            ]);
            if t.thin {
                tgt.tgtadm_ok(&[
                    "--op",
                    "update",
                    "--mode",
                    "logicalunit",
                    "--tid",
                    &tid_s,
                    "--lun",
                    "1",
                    "--params",
                    "thin_provisioning=1",
                ]);
            }
            for (k, v) in &t.params {
                tgt.tgtadm_ok(&[
                    "--op", "update", "--mode", "target", "--tid", &tid_s, "-n", k, "-v", v,
                ]);
            }
            for (cred, outgoing) in [(&t.chap, false), (&t.mutual, true)] {
                let Some((user, secret)) = cred else { continue };
                // Accounts are global: create each user once.
                let exists = String::from_utf8_lossy(
                    &tgt.tgtadm(&["--op", "show", "--mode", "account"]).stdout,
                )
                .lines()
                .any(|l| l.trim() == user);
                if !exists {
                    tgt.tgtadm_ok(&[
                        "--op",
                        "new",
                        "--mode",
                        "account",
                        "--user",
                        user,
                        "--password",
                        secret,
                    ]);
                }
                let mut bind = vec![
                    "--op", "bind", "--mode", "account", "--tid", &tid_s, "--user", user,
                ];
                if outgoing {
                    bind.push("--outgoing");
                }
                tgt.tgtadm_ok(&bind);
            }
        }
        Ok(tgt)
    }

    /// `127.0.0.1:port`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The iSCSI port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Tgtd {
    fn drop(&mut self) {
        // tgtd ignores SIGTERM while it has targets: remove them, then stop the daemon.
        for tid in &self.tids {
            let _ = self.tgtadm(&[
                "--op",
                "delete",
                "--mode",
                "target",
                "--tid",
                &tid.to_string(),
                "--force",
            ]);
        }
        let _ = self.tgtadm(&["--op", "delete", "--mode", "system"]);
        let gone = (0..40).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !gone {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for b in &self.backing {
            let _ = std::fs::remove_file(b);
        }
        for suffix in ["", ".lock"] {
            let _ = std::fs::remove_file(format!("/var/run/tgtd/socket.{}{suffix}", self.ctl));
        }
    }
}
