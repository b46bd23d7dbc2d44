//! The `target` example against libiscsi's command-line tools (Debian/Ubuntu package
//! `libiscsi-bin`): discovery with `iscsi-ls`, INQUIRY with `iscsi-inq`, READ CAPACITY(16) with
//! `iscsi-readcapacity16`, and the `iscsi-test-cu` conformance suite (families SCSI and iSCSI,
//! with the second portal as the multipath URL).
//!
//! Each test starts its own target (`--listen 127.0.0.1:0 --listen 127.0.0.2:0`, a 256 MiB RAM
//! LUN), reads the URLs it prints and stops it at the end, also when the test fails. The tests
//! run one at a time.
//!
//! ```sh
//! cargo test -p iscsi-examples --test libiscsi -- --nocapture        # prints the report
//! ISCSI_REQUIRE_PEERS=1 cargo test -p iscsi-examples --test libiscsi # missing tools fail (CI)
//! ```
//!
//! Environment:
//! - `ISCSI_REQUIRE_PEERS=1`: a missing libiscsi tool fails the test instead of skipping it.
//! - `ISCSI_TEST_URL=iscsi://HOST:PORT/IQN/LUN` (and optionally `ISCSI_TEST_URL2`, the same LUN
//!   through a second portal; `ISCSI_TEST_LUN_BYTES`, its size): test an already running target
//!   instead of starting one. The conformance run writes to, reserves and resets that LUN.
//! - `ISCSI_TESTCU_FILTER=PATTERN[,PATTERN...]`: run only the matching conformance tests; a
//!   pattern is `FAMILY[.SUITE[.TEST]]` and `*` matches a whole component (`SCSI.Read10`,
//!   `*.*.Simple`). The PASS floor is not checked then.
//! - `ISCSI_TESTCU_TIMEOUT` (seconds, default 120): deadline of one `iscsi-test-cu` run (one
//!   suite); a hung run is killed and its unfinished tests are FAIL. `ISCSI_TESTCU_BUDGET`
//!   (seconds, default 1200): total time; tests not started by then are FAIL.
//!
//! `iscsi-test-cu` logs in with two initiator names, `iqn.2007-10.com.github:sahlberg:libiscsi:
//! iscsi-test` and `...:iscsi-test-2`; the target must admit both.
#![cfg(target_os = "linux")]

mod support;

use std::collections::BTreeMap;
use std::env;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use support::peer::{self, IscsiUrl, Output, TargetProcess};
use support::testcu::{self, Classified, Outcome, RunEnd};

/// The target name the tests give the target.
const IQN: &str = "iqn.2026-11.rs.iscsi:test";
/// The LUN the tests give the target (libiscsi's suite needs well over 8000 blocks).
const LUN_SPEC: &str = "ram:256MiB";
const LUN_BYTES: u64 = 256 << 20;
/// At least this many conformance tests must PASS (a SKIP does not count).
const PASS_FLOOR: usize = 200;
/// The `iscsi-test-cu` families run.
const FAMILIES: [&str; 2] = ["SCSI", "iSCSI"];

/// Tests left out of the run, each with the reason printed in the report. Neither PASS nor
/// FAIL: they measure something a RAM disk cannot show.
const EXCLUDED: &[(&str, &str)] = &[(
    "SCSI.Sanitize.Reset",
    "expects a SANITIZE OVERWRITE still running 3 s after it was sent (then checks resets \
     do not stop it); a RAM LUN finishes it in milliseconds",
)];
/// `-d`: destructive tests (writes) allowed; `-S`: SANITIZE tests allowed (without it the 11
/// Sanitize tests skip); `-v`: one line per test. Note: Sanitize.Reset expects a SANITIZE
/// OVERWRITE to still be in progress 3 s after it was sent, which a fast RAM LUN cannot do.
const TESTCU_FLAGS: [&str; 3] = ["-d", "-S", "-v"];

/// The target binary of this package (built by cargo for its integration tests).
fn target_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_target"))
}

/// The tests share the libiscsi tools' fixed initiator names (and, with `ISCSI_TEST_URL`, one
/// LUN), so they run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The target under test: started by the test, or given by `ISCSI_TEST_URL`.
struct Fixture {
    target: Option<TargetProcess>,
    /// The LUN through the first portal.
    url: IscsiUrl,
    /// The same LUN through the second portal.
    url2: Option<IscsiUrl>,
    /// The LUN's size, when known.
    lun_bytes: Option<u64>,
}

impl Fixture {
    fn start(test: &str) -> Self {
        if let Ok(u) = env::var("ISCSI_TEST_URL") {
            let parse = |u: &str| {
                IscsiUrl::parse(u)
                    .unwrap_or_else(|| panic!("not an iscsi://HOST:PORT/IQN/LUN URL: {u:?}"))
            };
            let url = parse(&u);
            let url2 = env::var("ISCSI_TEST_URL2")
                .ok()
                .filter(|u| !u.is_empty())
                .map(|u| parse(&u));
            let lun_bytes = env::var("ISCSI_TEST_LUN_BYTES").ok().map(|b| {
                b.parse()
                    .unwrap_or_else(|_| panic!("ISCSI_TEST_LUN_BYTES is not a number: {b:?}"))
            });
            println!(
                "{test}: using the running target at {} (second portal: {:?})",
                url.url,
                url2.as_ref().map(|u| &u.url)
            );
            return Self {
                target: None,
                url,
                url2,
                lun_bytes,
            };
        }
        let log =
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("libiscsi-{test}-target.log"));
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.2:0",
            "--iqn",
            IQN,
            "--lun",
            LUN_SPEC,
        ];
        let target = TargetProcess::start(&target_binary(), &args, 2, log);
        let pick = |host: &str| {
            target
                .urls
                .iter()
                .find(|u| u.host() == host)
                .cloned()
                .unwrap_or_else(|| {
                    panic!(
                        "the target printed no URL for portal {host}: {:?}",
                        target.urls
                    )
                })
        };
        let (url, url2) = (pick("127.0.0.1"), pick("127.0.0.2"));
        assert_eq!(
            (url.iqn.as_str(), url.lun),
            (url2.iqn.as_str(), url2.lun),
            "both portals must show the same LUN"
        );
        assert_eq!(url.iqn, IQN, "the printed URL must carry the --iqn name");
        println!(
            "{test}: started target pid {} ({}), log {}",
            target.pid(),
            target
                .urls
                .iter()
                .map(|u| u.url.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            target.log.display()
        );
        Self {
            target: Some(target),
            url,
            url2: Some(url2),
            lun_bytes: Some(LUN_BYTES),
        }
    }

    /// The target must still be running after the test.
    fn finish(mut self) {
        if let Some(t) = &mut self.target {
            t.assert_alive();
        }
    }

    /// Adds the target's log tail to a failure message.
    fn describe(&self, out: &Output) -> String {
        match &self.target {
            Some(t) => format!(
                "{}\n--- target stderr tail: {}",
                out.describe(),
                t.stderr_tail()
            ),
            None => out.describe(),
        }
    }
}

#[test]
fn iscsi_ls_discovers_target_and_lun() {
    let _serial = serial();
    if !peer::require_tools("iscsi_ls_discovers_target_and_lun", &["iscsi-ls"]) {
        return;
    }
    let fx = Fixture::start("iscsi-ls");
    let mut portals = vec![fx.url.clone()];
    portals.extend(fx.url2.clone());
    for u in &portals {
        let out = peer::run_tool("iscsi-ls", &["-s", &u.portal_url()]);
        assert!(
            out.success(),
            "iscsi-ls -s {} failed: {}",
            u.portal_url(),
            fx.describe(&out)
        );
        let target_line = format!("Target:{} Portal:", u.iqn);
        assert!(
            out.stdout.lines().any(|l| l.starts_with(&target_line)),
            "SendTargets at {} did not list {}: {}",
            u.portal,
            u.iqn,
            fx.describe(&out)
        );
        let lun_line = format!("Lun:{:<4} Type:DIRECT_ACCESS", u.lun);
        assert!(
            out.stdout.lines().any(|l| l.starts_with(&lun_line)),
            "iscsi-ls -s did not list LUN {} as a direct-access device: {}",
            u.lun,
            fx.describe(&out)
        );
        println!("iscsi-ls -s {}:\n{}", u.portal_url(), out.stdout.trim_end());
    }
    fx.finish();
}

#[test]
fn iscsi_inq_reports_vendor_and_product() {
    let _serial = serial();
    if !peer::require_tools("iscsi_inq_reports_vendor_and_product", &["iscsi-inq"]) {
        return;
    }
    let fx = Fixture::start("iscsi-inq");
    let out = peer::run_tool("iscsi-inq", &[&fx.url.url]);
    assert!(
        out.success(),
        "iscsi-inq {} failed: {}",
        fx.url.url,
        fx.describe(&out)
    );
    let field = |name: &str| {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(
        field("Peripheral Device Type:"),
        "DIRECT_ACCESS",
        "{}",
        fx.describe(&out)
    );
    assert!(
        !field("Vendor:").is_empty(),
        "no vendor identification: {}",
        fx.describe(&out)
    );
    assert!(
        !field("Product:").is_empty(),
        "no product identification: {}",
        fx.describe(&out)
    );
    println!(
        "vendor {:?}, product {:?}, revision {:?}",
        field("Vendor:"),
        field("Product:"),
        field("Revision:")
    );

    // Both portals lead to the same logical unit: same unit serial number, if there is one.
    let pages = peer::run_tool("iscsi-inq", &["-e", "1", "-c", "0", &fx.url.url]);
    assert!(
        pages.success(),
        "iscsi-inq VPD 0x00 failed: {}",
        fx.describe(&pages)
    );
    if let Some(url2) = fx
        .url2
        .as_ref()
        .filter(|_| pages.stdout.contains("Page:0x80"))
    {
        let serial = |u: &IscsiUrl| {
            let o = peer::run_tool("iscsi-inq", &["-e", "1", "-c", "128", &u.url]);
            assert!(
                o.success(),
                "iscsi-inq VPD 0x80 at {} failed: {}",
                u.url,
                fx.describe(&o)
            );
            o.stdout
                .lines()
                .find(|l| l.starts_with("Unit Serial Number:"))
                .map(str::to_owned)
                .unwrap_or_default()
        };
        let (s1, s2) = (serial(&fx.url), serial(url2));
        assert!(
            !s1.is_empty(),
            "VPD 0x80 listed but no serial number printed"
        );
        assert_eq!(
            s1, s2,
            "the two portals must show the same unit serial number"
        );
    }
    fx.finish();
}

#[test]
fn iscsi_readcapacity16_matches_lun_size() {
    let _serial = serial();
    if !peer::require_tools(
        "iscsi_readcapacity16_matches_lun_size",
        &["iscsi-readcapacity16"],
    ) {
        return;
    }
    let fx = Fixture::start("iscsi-readcapacity16");
    let out = peer::run_tool("iscsi-readcapacity16", &[&fx.url.url]);
    assert!(
        out.success(),
        "iscsi-readcapacity16 {} failed: {}",
        fx.url.url,
        fx.describe(&out)
    );
    let num = |name: &str| -> u64 {
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the output: {}", fx.describe(&out)))
    };
    let (last_lba, block, total) = (
        num("RETURNED LOGICAL BLOCK ADDRESS:"),
        num("LOGICAL BLOCK LENGTH IN BYTES:"),
        num("Total size:"),
    );
    assert!(
        block == 512 || block == 4096,
        "unexpected block length {block}"
    );
    assert_eq!((last_lba + 1) * block, total, "{}", out.stdout);
    if let Some(bytes) = fx.lun_bytes {
        assert_eq!(
            total, bytes,
            "READ CAPACITY(16) size differs from the LUN's"
        );
    }
    println!("{} blocks of {block} bytes = {total} bytes", last_lba + 1);
    fx.finish();
}

/// `ISCSI_TESTCU_FILTER`: does `FAMILY.SUITE.TEST` match one of the comma-separated patterns?
fn filter_matches(filter: &str, name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    filter
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .any(|pat| {
            let pat: Vec<&str> = pat.split('.').collect();
            pat.len() <= parts.len() && pat.iter().zip(&parts).all(|(p, n)| *p == "*" || p == n)
        })
}

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// The conformance results.
struct Report {
    results: Vec<Classified>,
    /// Runs that hung or crashed: (what was run, how it ended).
    aborted: Vec<(String, RunEnd)>,
    runs: usize,
    elapsed: Duration,
    filtered: bool,
}

impl Report {
    fn count(&self, o: Outcome) -> usize {
        self.results.iter().filter(|r| r.outcome == o).count()
    }

    fn print(&self, command: &str) {
        let mut by_suite: BTreeMap<&str, [usize; 3]> = BTreeMap::new();
        for r in &self.results {
            let suite = r.name.rsplit_once('.').map_or(r.name.as_str(), |(s, _)| s);
            by_suite.entry(suite).or_default()[r.outcome as usize] += 1;
        }
        println!("\nlibiscsi conformance: {command}");
        println!(
            "{} tests, {} iscsi-test-cu runs, {:.1} s",
            self.results.len(),
            self.runs,
            self.elapsed.as_secs_f64()
        );
        println!(
            "\n{:<36} {:>5} {:>5} {:>5}",
            "suite", "PASS", "SKIP", "FAIL"
        );
        for (suite, [p, s, f]) in &by_suite {
            println!("{suite:<36} {p:>5} {s:>5} {f:>5}");
        }
        let (p, s, f) = (
            self.count(Outcome::Pass),
            self.count(Outcome::Skip),
            self.count(Outcome::Fail),
        );
        println!("{:<36} {p:>5} {s:>5} {f:>5}", "TOTAL");
        for (outcome, label) in [(Outcome::Fail, "FAIL"), (Outcome::Skip, "SKIP")] {
            let list: Vec<&Classified> = self
                .results
                .iter()
                .filter(|r| r.outcome == outcome)
                .collect();
            println!("\n{label} ({}):", list.len());
            for r in list {
                println!("  {}: {}", r.name, r.detail);
            }
        }
        let warned: Vec<&Classified> = self
            .results
            .iter()
            .filter(|r| !r.warnings.is_empty())
            .collect();
        if !warned.is_empty() {
            println!(
                "\nWARN: [FAILED] messages outside a failed test (a probe the test tolerated, or its teardown):"
            );
            for r in warned {
                for w in &r.warnings {
                    println!("  {} ({}): {w}", r.name, r.outcome);
                }
            }
        }
        for (what, end) in &self.aborted {
            println!("\naborted run: iscsi-test-cu -t {what}: {end}");
        }
        println!(
            "\nconformance: {p} PASS, {s} SKIP, {f} FAIL{}",
            if self.filtered {
                " (ISCSI_TESTCU_FILTER set)".to_owned()
            } else {
                format!(" (PASS floor {PASS_FLOOR})")
            }
        );
    }
}

/// Runs `iscsi-test-cu` once per suite (a hang or crash then costs one suite, not the rest),
/// re-running the unstarted tests of an aborted run one by one.
fn run_conformance(urls: &[&str], only: Option<&str>) -> Report {
    let start = Instant::now();
    let list = peer::run_tool("iscsi-test-cu", &["-l"]);
    assert!(
        list.success(),
        "iscsi-test-cu -l failed: {}",
        list.describe()
    );
    let mut suites = testcu::parse_list(&list.stdout, &FAMILIES);
    assert!(
        suites.len() > 10,
        "iscsi-test-cu -l listed too few suites: {}",
        list.stdout
    );
    let filter = only.map(str::to_owned).or_else(|| {
        env::var("ISCSI_TESTCU_FILTER")
            .ok()
            .filter(|f| !f.trim().is_empty())
    });
    if let Some(f) = &filter {
        for (fam, suite, tests) in &mut suites {
            tests.retain(|t| filter_matches(f, &format!("{fam}.{suite}.{t}")));
        }
        suites.retain(|(_, _, tests)| !tests.is_empty());
        assert!(
            !suites.is_empty(),
            "ISCSI_TESTCU_FILTER={f:?} matches no test"
        );
    }
    for (name, why) in EXCLUDED {
        println!("EXCLUDED {name}: {why}");
    }
    for (fam, suite, tests) in &mut suites {
        tests.retain(|t| {
            let name = format!("{fam}.{suite}.{t}");
            !EXCLUDED.iter().any(|(x, _)| *x == name)
        });
    }
    suites.retain(|(_, _, tests)| !tests.is_empty());
    let timeout = env_secs("ISCSI_TESTCU_TIMEOUT", 120);
    let deadline = start + env_secs("ISCSI_TESTCU_BUDGET", 1200);
    // Unbuffered output, so that a killed run still shows where it stopped.
    let stdbuf = peer::find_tool("stdbuf");
    let run = |selection: &str| -> Output {
        let mut cmd = match &stdbuf {
            Some(sb) => {
                let mut c = Command::new(sb);
                c.args(["-o0", "-e0", "iscsi-test-cu"]);
                c
            }
            None => Command::new("iscsi-test-cu"),
        };
        cmd.args(TESTCU_FLAGS).args(["-t", selection]).args(urls);
        let left = deadline.saturating_duration_since(Instant::now());
        peer::run_with_timeout(&mut cmd, timeout.min(left).max(Duration::from_secs(1)))
    };
    let context = |out: &Output, parsed: &testcu::ParsedRun| {
        let mut c = parsed
            .preamble
            .iter()
            .filter(|l| !l.starts_with("CUnit") && !l.starts_with("http"))
            .cloned()
            .collect::<Vec<_>>()
            .join(" | ");
        let err = peer::tail_lines(&out.stderr, 3);
        if !err.is_empty() {
            c = if c.is_empty() {
                err
            } else {
                format!("{c} | stderr: {err}")
            };
        }
        c
    };
    let mut report = Report {
        results: Vec::new(),
        aborted: Vec::new(),
        runs: 0,
        elapsed: Duration::ZERO,
        filtered: filter.is_some(),
    };
    // Set when a run hangs or crashes before its first test: the target no longer answers
    // logins, and every further run would only wait for its deadline.
    let mut unresponsive: Option<String> = None;
    for (fam, suite, tests) in &suites {
        let not_run = |t: &str, why: &str| Classified {
            name: format!("{fam}.{suite}.{t}"),
            outcome: Outcome::Fail,
            detail: format!("not run: {why}"),
            warnings: Vec::new(),
            started: false,
        };
        let stop = |unresponsive: &Option<String>| match unresponsive {
            Some(why) => Some(why.clone()),
            None if Instant::now() >= deadline => Some("ISCSI_TESTCU_BUDGET exhausted".to_owned()),
            None => None,
        };
        if let Some(why) = stop(&unresponsive) {
            report
                .results
                .extend(tests.iter().map(|t| not_run(t, &why)));
            continue;
        }
        let all = suites_full(&list.stdout, fam, suite, tests.len());
        let selection = if all {
            format!("{fam}.{suite}")
        } else {
            tests
                .iter()
                .map(|t| format!("{fam}.{suite}.{t}"))
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut results = Vec::new();
        let mut pending: Vec<(String, String)> = vec![(selection, String::new())];
        // The suite, then (if that run hung or crashed) each test it did not start, alone.
        while let Some((selection, single)) = pending.pop() {
            if let Some(why) = stop(&unresponsive) {
                results.push(not_run(&single, &why));
                continue;
            }
            let out = run(&selection);
            report.runs += 1;
            let parsed = testcu::parse(&out.stdout);
            let expected = if single.is_empty() {
                tests.clone()
            } else {
                vec![single.clone()]
            };
            let classified = testcu::classify(
                fam,
                suite,
                &expected,
                &parsed,
                &out.end,
                &context(&out, &parsed),
            );
            if out.end.aborted() {
                report.aborted.push((selection.clone(), out.end.clone()));
                if parsed.records.is_empty() {
                    unresponsive = Some(format!(
                        "giving up: iscsi-test-cu -t {selection} {} before its first test (is the target still answering?)",
                        out.end
                    ));
                }
            }
            for r in classified {
                if out.end.aborted() && !r.started && single.is_empty() && unresponsive.is_none() {
                    let test = r.name.rsplit('.').next().unwrap_or_default().to_owned();
                    pending.insert(0, (format!("{fam}.{suite}.{test}"), test));
                } else {
                    results.push(r);
                }
            }
        }
        report.results.extend(results);
    }
    report.elapsed = start.elapsed();
    report
}

/// True if `tests` (after filtering) is the whole suite as listed.
fn suites_full(listing: &str, fam: &str, suite: &str, n: usize) -> bool {
    testcu::parse_list(listing, &[fam])
        .iter()
        .any(|(_, s, t)| s == suite && t.len() == n)
}

#[test]
fn iscsi_test_cu_conformance() {
    let _serial = serial();
    if !peer::require_tools("iscsi_test_cu_conformance", &["iscsi-test-cu"]) {
        return;
    }
    let fx = Fixture::start("iscsi-test-cu");
    let mut urls = vec![fx.url.url.as_str()];
    match &fx.url2 {
        Some(u) => urls.push(u.url.as_str()),
        None => println!("no second portal URL: the MultipathIO tests will skip"),
    }
    let report = run_conformance(&urls, None);
    report.print(&format!(
        "iscsi-test-cu {} -t FAMILY.SUITE {}",
        TESTCU_FLAGS.join(" "),
        urls.join(" ")
    ));
    let failed: Vec<&str> = report
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::Fail)
        .map(|r| r.name.as_str())
        .collect();
    let pass = report.count(Outcome::Pass);
    fx.finish();
    assert!(
        failed.is_empty(),
        "{} conformance tests FAIL: {failed:?} (report above; run with --nocapture)",
        failed.len()
    );
    if !report.filtered {
        assert!(
            pass >= PASS_FLOOR,
            "{pass} conformance tests PASS, below the floor of {PASS_FLOOR}"
        );
    }
}

#[test]
fn conformance_filter_patterns() {
    assert!(filter_matches("SCSI.Read10", "SCSI.Read10.Simple"));
    assert!(filter_matches(
        "iSCSI,SCSI.Read6.BeyondEol",
        "SCSI.Read6.BeyondEol"
    ));
    assert!(filter_matches("*.*.Simple", "SCSI.Write16.Simple"));
    assert!(filter_matches("SCSI", "SCSI.Write16.Simple"));
    assert!(!filter_matches(
        "SCSI",
        "iSCSI.iSCSITMF.LUNResetSimpleAsync"
    ));
    assert!(!filter_matches("SCSI.Read1", "SCSI.Read10.Simple"));
    assert!(!filter_matches("", "SCSI.Read10.Simple"));
}

/// Starts the example target with extra arguments on one portal; returns it and its URL.
fn start_with(test: &str, extra: &[&str]) -> (TargetProcess, IscsiUrl) {
    let log =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("libiscsi-{test}-target.log"));
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--iqn",
        IQN,
        "--lun",
        "ram:16MiB",
    ];
    args.extend_from_slice(extra);
    let luns = args.iter().filter(|a| **a == "--lun").count();
    let target = TargetProcess::start(&target_binary(), &args, luns, log);
    let url = target.urls[0].clone();
    (target, url)
}

/// `iscsi://USER%SECRET@HOST:PORT/IQN/LUN[?target_user=..&target_password=..]`.
fn chap_url(url: &IscsiUrl, user: &str, secret: &str, mutual: Option<(&str, &str)>) -> String {
    let mut u = format!(
        "iscsi://{user}%{secret}@{}/{}/{}",
        url.portal, url.iqn, url.lun
    );
    if let Some((tu, tp)) = mutual {
        u.push_str(&format!("?target_user={tu}&target_password={tp}"));
    }
    u
}

#[test]
fn libiscsi_chap_mutual_chap_and_header_digest() {
    let _serial = serial();
    if !peer::require_tools(
        "libiscsi_chap_mutual_chap_and_header_digest",
        &["iscsi-inq"],
    ) {
        return;
    }
    // CHAP required, mutual CHAP offered, CRC32C header digests required.
    let (mut target, url) = start_with(
        "chap",
        &[
            "--chap",
            "alice:alice-secret-0123",
            "--mutual-chap",
            "target-bob:bob-secret-4567",
            "--header-digest",
        ],
    );
    let inq = |u: &str| peer::run_tool("iscsi-inq", &[u]);
    // One-way CHAP with the right secret (libiscsi speaks CHAP_A=5, MD5).
    let ok = inq(&chap_url(&url, "alice", "alice-secret-0123", None));
    assert!(ok.success(), "one-way CHAP login failed: {}", ok.describe());
    assert!(ok.stdout.contains("Vendor:ISCSI-RS"), "{}", ok.describe());
    // Mutual CHAP: libiscsi checks the target's answer.
    let mutual = Some(("target-bob", "bob-secret-4567"));
    let ok = inq(&chap_url(&url, "alice", "alice-secret-0123", mutual));
    assert!(ok.success(), "mutual CHAP login failed: {}", ok.describe());
    // Refusals: a wrong secret, an unknown user, no credentials at all.
    for (what, u) in [
        (
            "wrong secret",
            chap_url(&url, "alice", "not-the-secret-99", None),
        ),
        (
            "unknown user",
            chap_url(&url, "mallory", "alice-secret-0123", None),
        ),
        ("no credentials", url.url.clone()),
    ] {
        let out = inq(&u);
        assert!(
            !out.success(),
            "login with {what} succeeded: {}",
            out.describe()
        );
    }
    // Mutual CHAP where the initiator expects another target secret: libiscsi refuses us.
    let wrong = Some(("target-bob", "some-other-secret-8"));
    let out = inq(&chap_url(&url, "alice", "alice-secret-0123", wrong));
    assert!(
        !out.success(),
        "libiscsi accepted a wrong target secret: {}",
        out.describe()
    );
    target.assert_alive();
    // Every session that logged in ran with CRC32C header digests.
    let log = std::fs::read_to_string(&target.log).unwrap_or_default();
    let logins: Vec<&str> = log.lines().filter(|l| l.contains("logged in")).collect();
    assert!(
        logins.len() >= 2,
        "two logins expected in the target log:\n{log}"
    );
    assert!(
        logins.iter().all(|l| l.contains("header_digest=Crc32c")),
        "a session ran without header digests:\n{log}"
    );
}

#[test]
fn qemu_img_writes_and_reads_back() {
    let _serial = serial();
    if !peer::require_tools("qemu_img_writes_and_reads_back", &["qemu-img"]) {
        return;
    }
    let (mut target, url) = start_with("qemu-img", &[]);
    let probe = peer::run_tool("qemu-img", &["info", &url.url]);
    if !probe.success() && probe.stderr.contains("Unable to load module iscsi") {
        // qemu-img without its iSCSI driver (Debian: qemu-block-extra) cannot speak to any
        // target: say so; with ISCSI_REQUIRE_PEERS=1 this is a failure.
        assert!(
            !peer::peers_required(),
            "qemu-img has no iSCSI driver (install qemu-block-extra): {}",
            probe.describe()
        );
        println!("SKIPPED qemu_img_writes_and_reads_back: qemu-img has no iSCSI driver");
        return;
    }
    assert!(
        probe.success(),
        "qemu-img info failed: {}",
        probe.describe()
    );
    assert!(probe.stdout.contains("16 MiB"), "{}", probe.describe());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let src = dir.join("qemu-src.img");
    let back = dir.join("qemu-back.img");
    // 4 MiB of a deterministic pattern that no block repeats.
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (i >> 12) as u8)
        .collect();
    std::fs::write(&src, &data).expect("write the source image");
    let src_s = src.to_string_lossy().into_owned();
    let back_s = back.to_string_lossy().into_owned();
    let w = peer::run_tool(
        "qemu-img",
        &["convert", "-n", "-f", "raw", "-O", "raw", &src_s, &url.url],
    );
    assert!(w.success(), "qemu-img write failed: {}", w.describe());
    let r = peer::run_tool(
        "qemu-img",
        &["convert", "-f", "raw", "-O", "raw", &url.url, &back_s],
    );
    assert!(r.success(), "qemu-img read failed: {}", r.describe());
    let got = std::fs::read(&back).expect("read the copy");
    assert_eq!(got.len(), 16 << 20, "the copy has the LUN's size");
    assert!(
        got[..data.len()] == data[..],
        "data read back differs from data written"
    );
    assert!(
        got[data.len()..].iter().all(|&b| b == 0),
        "the rest of the LUN is not zero"
    );
    target.assert_alive();
}

/// The suites that need another kind of unit, each against a unit of that kind: a removable
/// medium (PREVENT ALLOW MEDIUM REMOVAL, START STOP UNIT) and a write-protected unit. In the
/// main run they SKIP; here every test must PASS.
#[test]
fn iscsi_test_cu_removable_and_read_only_units() {
    let _serial = serial();
    if !peer::require_tools(
        "iscsi_test_cu_removable_and_read_only_units",
        &["iscsi-test-cu"],
    ) {
        return;
    }
    if env::var("ISCSI_TEST_URL").is_ok() {
        println!("SKIPPED iscsi_test_cu_removable_and_read_only_units: needs its own target");
        return;
    }
    let (mut target, _) = start_with(
        "testcu-units",
        &["--lun", "ram:64MiB,removable", "--lun", "ram:64MiB,ro"],
    );
    let url_of = |lun: u64| {
        target
            .urls
            .iter()
            .find(|u| u.lun == lun)
            .map(|u| u.url.clone())
            .unwrap_or_else(|| panic!("no URL for LUN {lun}: {:?}", target.urls))
    };
    let (removable, read_only) = (url_of(1), url_of(2));
    let mut total = 0;
    for (url, suites) in [
        (&removable, "SCSI.PreventAllow,SCSI.StartStopUnit"),
        (&read_only, "SCSI.ReadOnly"),
    ] {
        let report = run_conformance(&[url.as_str()], Some(suites));
        report.print(&format!(
            "iscsi-test-cu {} -t {suites} {url}",
            TESTCU_FLAGS.join(" ")
        ));
        let not_passed: Vec<String> = report
            .results
            .iter()
            .filter(|r| r.outcome != Outcome::Pass)
            .map(|r| format!("{} ({:?}: {})", r.name, r.outcome, r.detail))
            .collect();
        assert!(not_passed.is_empty(), "{suites} on {url}: {not_passed:?}");
        total += report.count(Outcome::Pass);
    }
    assert!(total >= 10, "only {total} tests ran");
    target.assert_alive();
}

/// `--chap-initiator USER=NAME`: the CHAP user logs in only under that initiator name.
#[test]
fn libiscsi_chap_user_bound_to_an_initiator_name() {
    let _serial = serial();
    if !peer::require_tools(
        "libiscsi_chap_user_bound_to_an_initiator_name",
        &["iscsi-inq"],
    ) {
        return;
    }
    // iscsi-inq logs in as this name.
    let inq_name = "iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-inq";
    let (mut bound_here, url) = start_with(
        "chap-bound",
        &[
            "--chap",
            "erin:erin-secret-00123",
            "--chap-initiator",
            &format!("erin={inq_name}"),
        ],
    );
    let out = peer::run_tool(
        "iscsi-inq",
        &[&chap_url(&url, "erin", "erin-secret-00123", None)],
    );
    assert!(
        out.success(),
        "bound to iscsi-inq's name: {}",
        out.describe()
    );
    bound_here.assert_alive();
    drop(bound_here);
    let (mut bound_elsewhere, url) = start_with(
        "chap-bound-elsewhere",
        &[
            "--chap",
            "erin:erin-secret-00123",
            "--chap-initiator",
            "erin=iqn.2026-11.rs.iscsi:other",
        ],
    );
    let out = peer::run_tool(
        "iscsi-inq",
        &[&chap_url(&url, "erin", "erin-secret-00123", None)],
    );
    assert!(
        !out.success(),
        "bound to another name, yet logged in: {}",
        out.describe()
    );
    bound_elsewhere.assert_alive();
}
