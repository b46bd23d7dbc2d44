//! The `initiator` example CLI against the `target` example: discovery, INQUIRY, READ
//! CAPACITY, REPORT LUNS, write then read back, copy up and down, a short bench, CHAP, and
//! the errors a user meets (bad URL, missing file, wrong secret, nothing listening...).
//!
//! Each test starts its own target on 127.0.0.1 (port 0, a 64 MiB RAM LUN) and stops it at
//! the end, also when the test fails. When libiscsi's tools (`iscsi-inq`,
//! `iscsi-readcapacity16`) are installed their answers are compared with the CLI's, and with
//! `qemu-io` (libiscsi's block driver in qemu) data written by one is read by the other; a
//! missing tool is a printed skip (`ISCSI_REQUIRE_PEERS=1` makes it an error).
//!
//! ```sh
//! cargo test -p iscsi-examples --test initiator_cli -- --nocapture
//! ```
#![cfg(target_os = "linux")]

#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::peer::{self, Output, TargetProcess};
use support::testcu::RunEnd;

/// The target name the tests give the target.
const IQN: &str = "iqn.2026-11.rs.iscsi:cli";
/// The LUN: 64 MiB of 512-byte blocks.
const LUN_BLOCKS: u64 = 131_072;

/// A target for one test, stopped when dropped.
struct Fixture {
    target: TargetProcess,
    /// `iscsi://127.0.0.1:PORT/IQN/0`
    url: String,
    /// `iscsi://127.0.0.1:PORT`
    portal: String,
    /// A scratch directory of this test.
    dir: PathBuf,
}

impl Fixture {
    /// Starts the target with these extra arguments.
    fn start(test: &str, extra: &[&str]) -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("initiator-cli-{test}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--iqn",
            IQN,
            "--lun",
            "ram:64MiB",
        ];
        args.extend_from_slice(extra);
        let target = TargetProcess::start(
            Path::new(env!("CARGO_BIN_EXE_target")),
            &args,
            1,
            dir.join("target.log"),
        );
        let u = target.urls[0].clone();
        Self {
            url: u.url.clone(),
            portal: u.portal_url(),
            target,
            dir,
        }
    }

    /// `url` with CHAP credentials.
    fn url_with(&self, userinfo: &str) -> String {
        self.url
            .replacen("iscsi://", &format!("iscsi://{userinfo}@"), 1)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Adds the target's log to a failure message.
    fn describe(&self, out: &Output) -> String {
        format!(
            "{}\n--- target stderr tail: {}",
            out.describe(),
            self.target.stderr_tail()
        )
    }

    /// Runs the CLI and requires exit status 0.
    fn ok(&self, args: &[&str]) -> Output {
        let out = initiator(args);
        assert!(
            out.success(),
            "initiator {args:?} failed: {}",
            self.describe(&out)
        );
        out
    }

    /// The target must still be running after the test.
    fn finish(mut self) {
        self.target.assert_alive();
    }
}

/// Runs the `initiator` binary (60 s deadline).
fn initiator(args: &[&str]) -> Output {
    peer::run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_initiator")).args(args),
        Duration::from_secs(60),
    )
}

/// Runs the CLI, which must fail with `status` and one line on stderr that contains `want`.
fn fails(args: &[&str], status: i32, want: &str) -> Output {
    let out = initiator(args);
    assert_eq!(
        out.end,
        RunEnd::Exited(status),
        "initiator {args:?}: wrong exit status: {}",
        out.describe()
    );
    let err = out.stderr.trim();
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1,
        "initiator {args:?}: not a one-line error: {}",
        out.describe()
    );
    assert!(
        err.contains(want),
        "initiator {args:?}: the error does not mention {want:?}: {}",
        out.describe()
    );
    assert!(!err.contains("panicked"), "{}", out.describe());
    out
}

/// `n` bytes of a seeded pseudo-random pattern.
fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn write_file(p: &Path, data: &[u8]) {
    std::fs::write(p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

fn read_file(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// Index of the first differing byte, for messages.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// The number after `key` in `text` (`"iops average 1234 (...)"`, key `"iops average "`).
fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[test]
fn discover_lists_the_target_and_its_portal() {
    let fx = Fixture::start("discover", &[]);
    let out = fx.ok(&["discover", &fx.portal]);
    let addr = fx.portal.trim_start_matches("iscsi://");
    assert!(
        out.stdout.lines().any(|l| l == IQN),
        "no target line: {}",
        out.describe()
    );
    assert!(
        out.stdout.contains(&format!("portal {addr} (group ")),
        "no portal line: {}",
        out.describe()
    );
    fx.finish();
}

#[test]
fn inquiry_readcap_and_luns() {
    let fx = Fixture::start("inquiry", &[]);
    let out = fx.ok(&["inquiry", &fx.url]);
    for want in [
        "product:     RAMDISK",
        "device type: 0x00",
        "removable:   no",
    ] {
        assert!(out.stdout.contains(want), "{want:?}: {}", out.describe());
    }
    let out = fx.ok(&["readcap", &fx.url]);
    for want in [
        format!("blocks:      {LUN_BLOCKS}"),
        "block size:  512".to_owned(),
        format!("bytes:       {} (64.0 MiB)", LUN_BLOCKS * 512),
    ] {
        assert!(out.stdout.contains(&want), "{want:?}: {}", out.describe());
    }
    let out = fx.ok(&["luns", &fx.url]);
    assert_eq!(out.stdout.trim(), "0", "{}", out.describe());
    // Digests asked for and granted: no warning.
    let out = fx.ok(&["readcap", &fx.url, "--header-digest", "--data-digest"]);
    assert!(!out.stderr.contains("warning"), "{}", out.describe());
    fx.finish();
}

#[test]
fn write_then_read_back() {
    let fx = Fixture::start("write-read", &[]);
    let data = pattern(8 * 512, 7);
    let (src, back) = (fx.path("in.bin"), fx.path("back.bin"));
    write_file(&src, &data);
    let out = fx.ok(&[
        "write",
        &fx.url,
        "--lba",
        "10",
        "--in",
        src.to_str().unwrap(),
    ]);
    assert!(
        out.stdout.contains("wrote 8 blocks (4096 bytes) at LBA 10"),
        "{}",
        out.describe()
    );
    let out = fx.ok(&[
        "read",
        &fx.url,
        "--lba",
        "10",
        "--blocks",
        "8",
        "--out",
        back.to_str().unwrap(),
    ]);
    assert!(out.stdout.contains("read 8 blocks"), "{}", out.describe());
    let got = read_file(&back);
    assert!(
        got == data,
        "read back differs at byte {:?}",
        first_difference(&got, &data)
    );
    // The hexdump: byte addresses on the LUN, hexdump -C layout.
    let out = fx.ok(&["read", &fx.url, "--lba", "10", "--blocks", "1"]);
    let first = out.stdout.lines().next().unwrap_or_default();
    let hex: Vec<String> = data[..8].iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        first.starts_with(&format!("00001400  {}", hex.join(" "))),
        "{}",
        out.describe()
    );
    assert_eq!(
        out.stdout.lines().last(),
        Some("00001600"),
        "{}",
        out.describe()
    );
    // With digests both ways.
    let out = fx.ok(&[
        "read",
        &fx.url,
        "--lba",
        "10",
        "--blocks",
        "8",
        "--out",
        back.to_str().unwrap(),
        "--header-digest",
        "--data-digest",
    ]);
    assert!(read_file(&back) == data, "{}", out.describe());
    fx.finish();
}

#[test]
fn copy_upload_and_download_byte_for_byte() {
    let fx = Fixture::start("copy", &[]);
    // Not a whole number of blocks: the last block is padded.
    let size = (3 << 20) + 1000;
    let data = pattern(size, 11);
    let (src, back) = (fx.path("up.bin"), fx.path("down.bin"));
    write_file(&src, &data);
    let out = fx.ok(&[
        "copy",
        src.to_str().unwrap(),
        &fx.url,
        "--chunk",
        "256KiB",
        "--depth",
        "4",
    ]);
    assert!(
        out.stdout.contains(&format!("copied {size} bytes")) && out.stdout.contains("MB/s"),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("padded with zeros") && out.stderr.contains("100%"),
        "{}",
        out.describe()
    );
    let size_arg = size.to_string();
    let out = fx.ok(&[
        "copy",
        &fx.url,
        back.to_str().unwrap(),
        "--bytes",
        &size_arg,
        "--chunk",
        "1M",
        "--depth",
        "8",
    ]);
    assert!(
        out.stdout.contains(&format!("copied {size} bytes")),
        "{}",
        out.describe()
    );
    let got = read_file(&back);
    assert!(
        got == data,
        "download differs at byte {:?}",
        first_difference(&got, &data)
    );
    // The padding: zeros after the file's end, in its last block.
    let pad = fx.path("pad.bin");
    let lba = (size / 512).to_string();
    fx.ok(&[
        "read",
        &fx.url,
        "--lba",
        &lba,
        "--out",
        pad.to_str().unwrap(),
    ]);
    let block = read_file(&pad);
    assert_eq!(&block[..size % 512], &data[size - size % 512..]);
    assert!(block[size % 512..].iter().all(|&b| b == 0));
    // A whole-LUN download is the LUN's size.
    let whole = fx.path("whole.bin");
    fx.ok(&["copy", &fx.url, whole.to_str().unwrap(), "--depth", "2"]);
    let len = std::fs::metadata(&whole).map(|m| m.len()).unwrap_or(0);
    assert_eq!(len, LUN_BLOCKS * 512);
    fx.finish();
}

#[test]
fn bench_prints_iops() {
    let fx = Fixture::start("bench", &[]);
    let out = fx.ok(&["bench", &fx.url, "--duration", "2", "--depth", "8"]);
    let per_second: Vec<f64> = out
        .stdout
        .lines()
        .filter_map(|l| number_after(l, "iops current "))
        .collect();
    assert!(
        !per_second.is_empty() && per_second.iter().all(|&i| i > 0.0),
        "no per-second lines with IOPS: {}",
        out.describe()
    );
    let last = out.stdout.lines().last().unwrap_or_default();
    let iops = number_after(last, "iops average ").unwrap_or(0.0);
    assert!(iops > 0.0, "no final average: {}", out.describe());
    println!("bench randread 4K QD8, 2 s (debug build): {last}");
    let out = fx.ok(&[
        "bench",
        &fx.url,
        "--rw",
        "seqwrite",
        "--bs",
        "64K",
        "--depth",
        "4",
        "--duration",
        "1",
        "--blocks-range",
        "4096",
    ]);
    let last = out.stdout.lines().last().unwrap_or_default();
    assert!(
        number_after(last, "iops average ").unwrap_or(0.0) > 0.0,
        "{}",
        out.describe()
    );
    fx.finish();
}

#[test]
fn usage_and_runtime_errors_are_one_line() {
    let fx = Fixture::start("errors", &[]);
    // Usage errors: status 2.
    fails(&["inquiry", "http://127.0.0.1/x/0"], 2, "invalid iSCSI URL");
    fails(&["inquiry", &fx.portal], 2, "names no target");
    fails(&["read", &fx.url, "--lba", "x"], 2, "--lba");
    fails(&["bench", &fx.url, "--bs", "4X"], 2, "size unit");
    fails(
        &["bench", &fx.url, "--bs", "1000"],
        2,
        "whole number of 512-byte blocks",
    );
    fails(&["read"], 2, "<URL>");
    fails(&["frobnicate"], 2, "frobnicate");
    fails(
        &["copy", "a.bin", "b.bin"],
        2,
        "one local file and one iscsi:// or iser:// URL",
    );
    let past = LUN_BLOCKS.to_string();
    fails(
        &["read", &fx.url, "--lba", &past],
        2,
        "past the end of the LUN",
    );
    fails(
        &["inquiry", &fx.url, "--mutual-chap", "nosecret"],
        2,
        "USER%SECRET",
    );
    // Runtime errors: status 1.
    let missing = fx.path("missing.bin");
    fails(
        &["write", &fx.url, "--in", missing.to_str().unwrap()],
        1,
        "cannot open",
    );
    fails(
        &["copy", missing.to_str().unwrap(), &fx.url],
        1,
        "cannot open",
    );
    let odd = fx.path("odd.bin");
    write_file(&odd, &[1, 2, 3]);
    fails(
        &["write", &fx.url, "--in", odd.to_str().unwrap()],
        1,
        "not a whole number of 512-byte blocks",
    );
    let no_lun = fx.url.trim_end_matches("/0").to_owned() + "/7";
    fails(&["inquiry", &no_lun], 1, "no logical unit 7");
    fails(&["readcap", &no_lun], 1, "logical unit not supported");
    let wrong_iqn = fx.url.replace(IQN, "iqn.2026-11.rs.iscsi:nobody");
    fails(&["readcap", &wrong_iqn], 1, "target not found");
    // Nothing listens on the port of a target that has stopped.
    let stopped = Fixture::start("errors-stopped", &[]);
    let dead_url = stopped.url.clone();
    drop(stopped);
    fails(&["readcap", &dead_url], 1, "cannot log in");
    // iSER in a build without RDMA support, or on a machine without an RDMA device: one
    // line naming what is missing (status 1), from both the URL scheme and --transport.
    let iser_url = fx.url.replacen("iscsi://", "iser://", 1);
    #[cfg(not(feature = "rdma"))]
    let why = "needs a build with RDMA support";
    #[cfg(feature = "rdma")]
    let why = "RDMA";
    fails(&["inquiry", &iser_url], 1, why);
    fails(&["--transport", "iser", "inquiry", &fx.url], 1, why);
    // --transport tcp overrides the scheme.
    let out = initiator(&["--transport", "tcp", "inquiry", &iser_url]);
    assert!(out.success(), "{}", out.describe());
    // The target says the same (without the feature: with it, a machine with an RDMA device
    // would really listen).
    #[cfg(not(feature = "rdma"))]
    {
        let out = peer::run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_target")).args([
                "--transport",
                "iser",
                "--listen",
                "127.0.0.1:0",
                "--lun",
                "ram:1MiB",
            ]),
            Duration::from_secs(60),
        );
        assert_eq!(out.end, RunEnd::Exited(1), "{}", out.describe());
        assert!(
            out.stderr.contains(why) && !out.stderr.contains("panicked"),
            "{}",
            out.describe()
        );
    }
    fx.finish();
}

#[test]
fn chap_one_way_and_mutual() {
    let fx = Fixture::start(
        "chap",
        &[
            "--chap",
            "alice:alice-secret-1",
            "--mutual-chap",
            "tgt:target-secret-2",
        ],
    );
    let good = fx.url_with("alice%alice-secret-1");
    fx.ok(&["readcap", &good]);
    fx.ok(&["readcap", &good, "--mutual-chap", "tgt%target-secret-2"]);
    let out = fails(
        &["readcap", &fx.url_with("alice%wrong-secret")],
        1,
        "authentication failed",
    );
    assert!(!out.stderr.contains("wrong-secret"), "{}", out.describe());
    fails(&["readcap", &fx.url], 1, "cannot log in");
    // The target proves a different secret than we expect.
    let out = fails(
        &["readcap", &good, "--mutual-chap", "tgt%not-the-target"],
        1,
        "cannot log in",
    );
    assert!(
        !out.stderr.contains("not-the-target") && !out.stderr.contains("alice-secret-1"),
        "{}",
        out.describe()
    );
    fails(
        &["readcap", &fx.url_with("alice"), "--mutual-chap", "tgt%x"],
        2,
        "password",
    );
    fx.finish();
}

#[test]
fn libiscsi_tools_agree() {
    if !peer::require_tools(
        "libiscsi_tools_agree",
        &["iscsi-inq", "iscsi-readcapacity16"],
    ) {
        return;
    }
    let fx = Fixture::start("libiscsi", &[]);
    let ours = fx.ok(&["inquiry", &fx.url]).stdout;
    let theirs = peer::run_tool("iscsi-inq", &[&fx.url]);
    assert!(theirs.success(), "iscsi-inq: {}", fx.describe(&theirs));
    // iscsi-inq: "Product:RAMDISK"
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
    };
    for (mine, libiscsi) in [
        ("vendor:", "Vendor:"),
        ("product:", "Product:"),
        ("revision:", "Revision:"),
    ] {
        assert_eq!(
            field(&ours, mine),
            field(&theirs.stdout, libiscsi),
            "{mine} differs from iscsi-inq's {libiscsi}\n--- ours:\n{ours}\n--- iscsi-inq:\n{}",
            theirs.stdout
        );
    }
    let ours = fx.ok(&["readcap", &fx.url]).stdout;
    let theirs = peer::run_tool("iscsi-readcapacity16", &[&fx.url]);
    assert!(
        theirs.success(),
        "iscsi-readcapacity16: {}",
        fx.describe(&theirs)
    );
    // iscsi-readcapacity16: "Total size:67108864"
    assert_eq!(
        field(&theirs.stdout, "Total size:"),
        Some((LUN_BLOCKS * 512).to_string()),
        "{}",
        theirs.stdout
    );
    assert!(
        ours.contains(&format!("bytes:       {}", LUN_BLOCKS * 512)),
        "{ours}"
    );
    fx.finish();
}

/// Data through libiscsi: qemu's iSCSI block driver (`qemu-io`) reads what the CLI wrote,
/// and the CLI reads what qemu-io wrote. A missing `qemu-io` is a printed skip, or a failure
/// with `ISCSI_REQUIRE_PEERS=1`.
#[test]
fn qemu_io_reads_our_writes_and_we_read_its() {
    if !peer::require_tools("qemu_io_reads_our_writes_and_we_read_its", &["qemu-io"]) {
        return;
    }
    let fx = Fixture::start("qemu-io", &[]);
    let src = fx.path("5c.bin");
    write_file(&src, &[0x5c; 64 << 10]);
    // 64 KiB at byte 1 MiB.
    fx.ok(&[
        "write",
        &fx.url,
        "--lba",
        "2048",
        "--in",
        src.to_str().unwrap(),
    ]);
    let qemu = |cmd: &str, read_only: bool| {
        let mut args = vec!["-f", "raw"];
        if read_only {
            args.push("-r");
        }
        args.extend(["-c", cmd, &fx.url]);
        let out =
            peer::run_with_timeout(Command::new("qemu-io").args(&args), Duration::from_secs(60));
        assert!(
            out.success() && !out.stdout.contains("failed"),
            "qemu-io -c {cmd:?}: {}",
            fx.describe(&out)
        );
    };
    qemu("read -P 0x5c 1M 64K", true);
    qemu("write -P 0xc3 2M 64K", false);
    let back = fx.path("c3.bin");
    fx.ok(&[
        "read",
        &fx.url,
        "--lba",
        "4096",
        "--blocks",
        "128",
        "--out",
        back.to_str().unwrap(),
    ]);
    let got = read_file(&back);
    assert!(
        got.len() == 64 << 10 && got.iter().all(|&b| b == 0xc3),
        "qemu-io's write read back wrong (first difference at {:?})",
        got.iter().position(|&b| b != 0xc3)
    );
    fx.finish();
}
