//! Running the libiscsi tools and the target under test: finding executables, running a
//! command with a deadline, and a target process that is always stopped.

use std::env;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::testcu::RunEnd;

/// `ISCSI_REQUIRE_PEERS=1`: a missing libiscsi tool is an error instead of a skip (CI sets it).
pub fn peers_required() -> bool {
    env::var("ISCSI_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// The full path of `tool` if it is an executable on `PATH`.
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|d| d.join(tool)).find(|p| {
        p.metadata().is_ok_and(|m| {
            m.is_file() && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
        })
    })
}

/// Checks that every tool is installed. If one is missing: with `ISCSI_REQUIRE_PEERS=1`
/// panics, otherwise prints why the test is skipped and returns false.
pub fn require_tools(test: &str, tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| find_tool(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let package = if missing.iter().any(|t| t.starts_with("qemu")) {
        "qemu-utils qemu-block-extra"
    } else {
        "libiscsi-bin"
    };
    let msg = format!(
        "{test}: {} not installed (Debian/Ubuntu: apt-get install {package})",
        missing.join(", ")
    );
    if peers_required() {
        panic!("{msg}; ISCSI_REQUIRE_PEERS=1 makes this an error");
    }
    println!("SKIPPED {msg}; set ISCSI_REQUIRE_PEERS=1 to make this an error");
    false
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// Exit status, signal, or timeout.
    pub end: RunEnd,
    /// Wall time.
    pub elapsed: Duration,
}

impl Output {
    /// True if the command exited with status 0.
    pub fn success(&self) -> bool {
        self.end == RunEnd::Exited(0)
    }

    /// Everything it printed, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "{}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.end, self.stdout, self.stderr
        )
    }
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` (stdin closed, stdout and stderr captured), killing it if it is still running
/// after `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let start = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let end = loop {
        match child.try_wait() {
            Ok(Some(st)) => {
                break match (st.code(), st.signal()) {
                    (Some(c), _) => RunEnd::Exited(c),
                    (None, Some(s)) => RunEnd::Signaled(s),
                    (None, None) => RunEnd::Exited(-1),
                };
            }
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break RunEnd::TimedOut(timeout);
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    Output {
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        end,
        elapsed: start.elapsed(),
    }
}

/// Runs a libiscsi tool with a 60 s deadline.
pub fn run_tool(tool: &str, args: &[&str]) -> Output {
    run_with_timeout(Command::new(tool).args(args), Duration::from_secs(60))
}

/// The last `n` lines of `s`, joined with " | " (for one-line messages).
pub fn tail_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// An `iscsi://HOST:PORT/IQN/LUN` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IscsiUrl {
    /// The whole URL as given.
    pub url: String,
    /// `HOST:PORT`.
    pub portal: String,
    /// The target name.
    pub iqn: String,
    /// The logical unit number.
    pub lun: u64,
}

impl IscsiUrl {
    /// Parses a URL without credentials (`iscsi://HOST:PORT/IQN/LUN`).
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.trim().strip_prefix("iscsi://")?;
        let (portal, rest) = rest.split_once('/')?;
        let (iqn, lun) = rest.rsplit_once('/')?;
        Some(Self {
            url: url.trim().to_owned(),
            portal: portal.to_owned(),
            iqn: iqn.to_owned(),
            lun: lun.parse().ok()?,
        })
    }

    /// `iscsi://HOST:PORT`, the discovery URL of the portal.
    pub fn portal_url(&self) -> String {
        format!("iscsi://{}", self.portal)
    }

    /// The host part of the portal (an IPv4 address here).
    pub fn host(&self) -> &str {
        self.portal
            .rsplit_once(':')
            .map_or(self.portal.as_str(), |(h, _)| h)
    }
}

/// A running target started by a test. Dropping it (also while unwinding from a failed
/// assertion) stops it: SIGTERM, then SIGKILL after 5 s, then waits for it.
pub struct TargetProcess {
    child: Child,
    /// The URLs it printed, in order.
    pub urls: Vec<IscsiUrl>,
    /// Its standard error is written here.
    pub log: PathBuf,
}

impl TargetProcess {
    /// Starts `bin args` and waits (up to 30 s) until it has printed `expected_urls` lines
    /// starting with `iscsi://`. Standard error goes to `log`. Panics if the process exits or
    /// the URLs do not come.
    pub fn start(bin: &Path, args: &[&str], expected_urls: usize, log: PathBuf) -> Self {
        Self::start_with_env(bin, args, &[], expected_urls, log)
    }

    /// [`TargetProcess::start`] with environment variables added.
    pub fn start_with_env(
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        expected_urls: usize,
        log: PathBuf,
    ) -> Self {
        let log_file =
            File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let mut child = Command::new(bin)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} {args:?}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        // Reads the URLs, then keeps draining stdout so that the target never blocks on it.
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut target = Self {
            child,
            urls: Vec::new(),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut other = Vec::new();
        while target.urls.len() < expected_urls {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.trim().starts_with("iscsi://") => {
                    let url = IscsiUrl::parse(&line)
                        .unwrap_or_else(|| panic!("target printed a malformed URL: {line:?}"));
                    target.urls.push(url);
                }
                Ok(line) => other.push(line),
                Err(e) => {
                    let status = target.child.try_wait().ok().flatten();
                    panic!(
                        "target {} {args:?} printed {} of {expected_urls} URLs ({}; exit status \
                         {status:?}); other stdout: {other:?}; stderr tail: {}",
                        bin.display(),
                        target.urls.len(),
                        if e == mpsc::RecvTimeoutError::Timeout {
                            "timed out after 30 s"
                        } else {
                            "stdout closed"
                        },
                        target.stderr_tail(),
                    );
                }
            }
        }
        target
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of its standard error.
    pub fn stderr_tail(&self) -> String {
        tail_lines(&std::fs::read_to_string(&self.log).unwrap_or_default(), 15)
    }

    /// Panics if the target has exited (it must survive every test).
    pub fn assert_alive(&mut self) {
        if let Ok(Some(st)) = self.child.try_wait() {
            panic!(
                "the target (pid {}) died during the test: {st}; stderr ({}) tail: {}",
                self.pid(),
                self.log.display(),
                self.stderr_tail()
            );
        }
    }
}

impl Drop for TargetProcess {
    fn drop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        eprintln!("target pid {pid} ignored SIGTERM for 5 s; sending SIGKILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = IscsiUrl::parse("iscsi://127.0.0.2:3260/iqn.2026-11.rs.iscsi:test/0\n").unwrap();
        assert_eq!(u.portal, "127.0.0.2:3260");
        assert_eq!(u.host(), "127.0.0.2");
        assert_eq!(u.iqn, "iqn.2026-11.rs.iscsi:test");
        assert_eq!(u.lun, 0);
        assert_eq!(u.portal_url(), "iscsi://127.0.0.2:3260");
        assert_eq!(u.url, "iscsi://127.0.0.2:3260/iqn.2026-11.rs.iscsi:test/0");
        assert!(IscsiUrl::parse("iscsi://127.0.0.1:3260/iqn").is_none());
        assert!(IscsiUrl::parse("http://x/y/0").is_none());
    }

    #[test]
    fn timeout_kills() {
        let o = run_with_timeout(Command::new("sleep").arg("10"), Duration::from_millis(200));
        assert_eq!(o.end, RunEnd::TimedOut(Duration::from_millis(200)));
        assert!(o.elapsed < Duration::from_secs(5));
        let o = run_with_timeout(
            Command::new("sh").args(["-c", "echo hi; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        );
        assert_eq!(
            (o.stdout.as_str(), o.stderr.as_str(), o.end),
            ("hi\n", "err\n", RunEnd::Exited(3))
        );
    }
}
