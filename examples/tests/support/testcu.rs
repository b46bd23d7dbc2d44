//! Reading the output of libiscsi's `iscsi-test-cu` (CUnit 2.1 "basic" runner, verbose mode).
//!
//! What the tool prints, and what this parser relies on:
//! - `Suite: NAME` on its own line when a suite starts.
//! - `  Test: NAME ...` when a test starts, with no newline: the test's own messages follow on the
//!   same line or on the next lines (libiscsi's `logging()` indents them by four spaces), then
//!   CUnit's verdict: `passed`, or `FAILED` followed by one `    N. file.c:LINE  - ASSERTION` line
//!   per failed assertion. The verdict is never followed by a newline, so whatever the test's
//!   teardown prints lands after it (`...passed    [FAILED] PRIN command: ...`).
//! - `WARNING - Suite initialization failed for 'NAME'.` when a suite's setup fails: its tests
//!   do not run and print nothing.
//! - `Run Summary:` and a `tests TOTAL RAN PASSED FAILED INACTIVE` row at the end.
//!
//! A test is classified as FAIL if CUnit says `FAILED` or never printed a verdict (the tool
//! hung, crashed or exited in the middle of it), SKIP if it passed but printed `[SKIPPED]`
//! (libiscsi's way of saying "the target does not support this"), PASS otherwise. A passed test
//! that printed `[FAILED]` stays a PASS: libiscsi's command helpers log `[FAILED]` whenever a
//! status differs from the one asked for, and tests that probe for optional features tolerate
//! that; and the teardown (which clears persistent reservations) logs `[FAILED]` when it meets a
//! unit attention the test left behind. Such messages are kept as warnings and reported.

use std::fmt;
use std::time::Duration;

/// CUnit's verdict on one test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// `passed`: no assertion failed (the test may still have skipped itself).
    Passed,
    /// `FAILED`: at least one assertion failed.
    Failed,
}

/// One `  Test: NAME ...` block of the output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestRecord {
    /// The suite the test ran in (`Suite: NAME` before it).
    pub suite: String,
    /// The test's name within the suite.
    pub test: String,
    /// CUnit's verdict; `None` if the output ended before one was printed.
    pub verdict: Option<Verdict>,
    /// Messages the test printed before its verdict, trimmed, blank lines dropped.
    pub body: Vec<String>,
    /// CUnit's failed-assertion lines (`file.c:LINE  - ASSERTION`, number stripped).
    pub assertions: Vec<String>,
    /// What was printed after the verdict, before the next test: teardown messages.
    pub after: Vec<String>,
}

/// The final classification of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Ran and passed.
    Pass,
    /// Passed but printed `[SKIPPED]`: the target lacks the feature, or a flag is missing.
    Skip,
    /// Failed an assertion, or produced no verdict, or never ran although it was expected to.
    Fail,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pass => "PASS",
            Self::Skip => "SKIP",
            Self::Fail => "FAIL",
        })
    }
}

fn marker_text<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|i| line[i + marker.len()..].trim())
}

impl TestRecord {
    /// PASS, SKIP or FAIL (see the module documentation).
    pub fn outcome(&self) -> Outcome {
        match self.verdict {
            None | Some(Verdict::Failed) => Outcome::Fail,
            Some(Verdict::Passed) if self.body.iter().any(|l| l.contains("[SKIPPED]")) => {
                Outcome::Skip
            }
            Some(Verdict::Passed) => Outcome::Pass,
        }
    }

    /// The text of the first `[SKIPPED]` message, if any.
    pub fn skip_reason(&self) -> Option<&str> {
        self.body.iter().find_map(|l| marker_text(l, "[SKIPPED]"))
    }

    /// A one-line description of why the test failed: its first `[FAILED]` message, else its
    /// first failed assertion, with the number of further assertions.
    pub fn failure_summary(&self) -> String {
        let first_msg = self.body.iter().find(|l| l.contains("[FAILED]"));
        let mut s = match (first_msg, self.assertions.first()) {
            (Some(m), Some(a)) => format!("{m} ({a})"),
            (Some(m), None) => m.clone(),
            (None, Some(a)) => a.clone(),
            (None, None) => String::from("FAILED with no message"),
        };
        if self.assertions.len() > 1 {
            s.push_str(&format!(
                " [+{} more failed assertions]",
                self.assertions.len() - 1
            ));
        }
        s
    }

    /// `[FAILED]` messages of a test CUnit passed: from its body (a probe the test tolerated)
    /// and from its teardown (printed after the verdict).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if self.verdict == Some(Verdict::Passed) {
            for l in self.body.iter().filter(|l| l.contains("[FAILED]")) {
                w.push(format!("in test: {l}"));
            }
        }
        for l in self.after.iter().filter(|l| l.contains("[FAILED]")) {
            w.push(format!("after verdict (teardown): {l}"));
        }
        w
    }
}

/// CUnit's `tests` row of the run summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunSummary {
    /// Tests registered.
    pub total: u32,
    /// Tests run.
    pub ran: u32,
    /// Tests with no failed assertion.
    pub passed: u32,
    /// Tests with a failed assertion.
    pub failed: u32,
}

/// Everything read from one run's standard output.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParsedRun {
    /// Lines before the first suite (connection messages, multipath identity check), trimmed.
    pub preamble: Vec<String>,
    /// The tests, in output order.
    pub records: Vec<TestRecord>,
    /// Suites whose initialization failed (their tests did not run).
    pub suite_init_failures: Vec<String>,
    /// The run summary, if the run got that far.
    pub summary: Option<RunSummary>,
}

#[derive(PartialEq)]
enum Phase {
    Preamble,
    InTest,
    AfterVerdict,
    Summary,
}

/// Splits `passed...` / `FAILED...` into the verdict and the rest of the line.
fn verdict_prefix(s: &str) -> Option<(Verdict, &str)> {
    if let Some(rest) = s.strip_prefix("passed") {
        Some((Verdict::Passed, rest))
    } else {
        s.strip_prefix("FAILED").map(|rest| (Verdict::Failed, rest))
    }
}

/// `    12. file.c:34  - CU_ASSERT...` -> `file.c:34  - CU_ASSERT...`.
fn assertion_line(line: &str) -> Option<&str> {
    let t = line.trim_start();
    let dot = t.find(". ")?;
    if dot > 0 && t[..dot].bytes().all(|b| b.is_ascii_digit()) && line.starts_with("    ") {
        Some(t[dot + 2..].trim())
    } else {
        None
    }
}

/// Parses the standard output of one `iscsi-test-cu -v` run.
pub fn parse(output: &str) -> ParsedRun {
    let mut run = ParsedRun::default();
    let mut suite = String::new();
    let mut phase = Phase::Preamble;
    let mut cur: Option<TestRecord> = None;

    fn set_verdict(rec: &mut TestRecord, v: Verdict, rest: &str, phase: &mut Phase) {
        rec.verdict = Some(v);
        let rest = rest.trim();
        if !rest.is_empty() {
            rec.after.push(rest.to_owned());
        }
        *phase = Phase::AfterVerdict;
    }

    for raw in output.lines() {
        let line = raw.trim_end_matches('\r');
        if let Some(name) = line.strip_prefix("Suite: ") {
            run.records.extend(cur.take());
            suite = name.trim().to_owned();
            phase = Phase::AfterVerdict;
            continue;
        }
        if let Some(rest) = line.strip_prefix("  Test: ") {
            run.records.extend(cur.take());
            let (name, tail) = match rest.find(" ...") {
                Some(i) => (&rest[..i], &rest[i + 4..]),
                None => (rest.trim_end(), ""),
            };
            let mut rec = TestRecord {
                suite: suite.clone(),
                test: name.trim().to_owned(),
                ..TestRecord::default()
            };
            phase = Phase::InTest;
            if let Some((v, after)) = verdict_prefix(tail) {
                set_verdict(&mut rec, v, after, &mut phase);
            } else if !tail.trim().is_empty() {
                rec.body.push(tail.trim().to_owned());
            }
            cur = Some(rec);
            continue;
        }
        if let Some(rest) = line
            .trim_start()
            .strip_prefix("WARNING - Suite initialization failed for '")
        {
            run.records.extend(cur.take());
            let name = rest.split('\'').next().unwrap_or(rest);
            run.suite_init_failures.push(name.to_owned());
            phase = Phase::AfterVerdict;
            continue;
        }
        if line.starts_with("Run Summary:") {
            run.records.extend(cur.take());
            phase = Phase::Summary;
            continue;
        }
        match phase {
            Phase::Preamble => {
                if !line.trim().is_empty() {
                    run.preamble.push(line.trim().to_owned());
                }
            }
            Phase::InTest => {
                let rec = cur.as_mut().expect("in a test");
                if let Some((v, after)) = verdict_prefix(line) {
                    set_verdict(rec, v, after, &mut phase);
                } else if !line.trim().is_empty() {
                    rec.body.push(line.trim().to_owned());
                }
            }
            Phase::AfterVerdict => {
                if let Some(rec) = cur.as_mut() {
                    match assertion_line(line) {
                        Some(a) if rec.verdict == Some(Verdict::Failed) && rec.after.is_empty() => {
                            rec.assertions.push(a.to_owned());
                        }
                        _ if line.trim().is_empty() => {}
                        _ => rec.after.push(line.trim().to_owned()),
                    }
                }
            }
            Phase::Summary => {
                let cols: Vec<&str> = line.split_whitespace().collect();
                if cols.len() >= 5 && cols[0] == "tests" {
                    let n = |i: usize| cols[i].parse::<u32>().ok();
                    if let (Some(total), Some(ran), Some(passed), Some(failed)) =
                        (n(1), n(2), n(3), n(4))
                    {
                        run.summary = Some(RunSummary {
                            total,
                            ran,
                            passed,
                            failed,
                        });
                    }
                }
            }
        }
    }
    run.records.extend(cur.take());
    run
}

/// The tests `iscsi-test-cu -l` lists for the given families, grouped by suite in listing
/// order: `(family, suite, tests)`.
pub fn parse_list(output: &str, families: &[&str]) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = Vec::new();
    for line in output.lines() {
        let parts: Vec<&str> = line.trim().split('.').collect();
        if parts.len() != 3 || !families.contains(&parts[0]) {
            continue;
        }
        let (fam, suite, test) = (parts[0], parts[1], parts[2]);
        match out.last_mut() {
            Some((f, s, tests)) if f == fam && s == suite => tests.push(test.to_owned()),
            _ => out.push((fam.to_owned(), suite.to_owned(), vec![test.to_owned()])),
        }
    }
    out
}

/// How one `iscsi-test-cu` process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// Exited by itself with this status (0: no failure, 1: some test failed, 255: setup
    /// failed before any test, e.g. login refused).
    Exited(i32),
    /// Killed by this signal (a crash of the test tool).
    Signaled(i32),
    /// Still running at the deadline; killed.
    TimedOut(Duration),
}

impl RunEnd {
    /// True if the tool stopped before its natural end (hung or crashed).
    pub fn aborted(&self) -> bool {
        !matches!(self, Self::Exited(_))
    }
}

impl fmt::Display for RunEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(c) => write!(f, "exited with status {c}"),
            Self::Signaled(s) => write!(f, "was killed by signal {s}"),
            Self::TimedOut(d) => write!(f, "hung: killed after {} s", d.as_secs()),
        }
    }
}

/// The classification of one test, with what to print about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// `FAMILY.Suite.Test`.
    pub name: String,
    /// PASS, SKIP or FAIL.
    pub outcome: Outcome,
    /// Skip reason or failure description (empty for a clean pass).
    pub detail: String,
    /// `[FAILED]` messages of a test that passed.
    pub warnings: Vec<String>,
    /// False if the test never started (it is then a FAIL).
    pub started: bool,
}

/// Classifies every test expected in one run of `family.suite` (`expected` lists its tests;
/// tests the run printed that are not listed are classified too). A listed test that did not
/// run, and a test with no verdict, is a FAIL: nothing is silently dropped. `context` is shown
/// with tests that did not run (e.g. the tail of the tool's standard error).
pub fn classify(
    family: &str,
    suite: &str,
    expected: &[String],
    run: &ParsedRun,
    end: &RunEnd,
    context: &str,
) -> Vec<Classified> {
    let name = |s: &str, t: &str| format!("{family}.{s}.{t}");
    let mut out = Vec::new();
    let classify_record = |rec: &TestRecord| {
        let outcome = rec.outcome();
        let detail = match (rec.verdict, outcome) {
            (None, _) => {
                let last = rec
                    .body
                    .last()
                    .map(|l| format!("; last output: {l}"))
                    .unwrap_or_default();
                format!("no verdict: iscsi-test-cu {end} during this test{last}")
            }
            (_, Outcome::Fail) => rec.failure_summary(),
            (_, Outcome::Skip) => rec.skip_reason().unwrap_or_default().to_owned(),
            (_, Outcome::Pass) => String::new(),
        };
        Classified {
            name: name(&rec.suite, &rec.test),
            outcome,
            detail,
            warnings: rec.warnings(),
            started: true,
        }
    };
    let ctx = if context.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", context.trim())
    };
    for test in expected {
        let rec = run
            .records
            .iter()
            .rev()
            .find(|r| r.suite == suite && &r.test == test);
        out.push(match rec {
            Some(rec) => classify_record(rec),
            None => {
                let why = if run.suite_init_failures.iter().any(|s| s == suite) {
                    String::from("suite initialization failed")
                } else {
                    format!("iscsi-test-cu {end} before it")
                };
                Classified {
                    name: name(suite, test),
                    outcome: Outcome::Fail,
                    detail: format!("not run: {why}{ctx}"),
                    warnings: Vec::new(),
                    started: false,
                }
            }
        });
    }
    for rec in &run.records {
        if !(rec.suite == suite && expected.contains(&rec.test)) {
            out.push(classify_record(rec));
        }
    }
    if let Some(sum) = run.summary {
        let passed = run
            .records
            .iter()
            .filter(|r| r.verdict == Some(Verdict::Passed))
            .count();
        let failed = run
            .records
            .iter()
            .filter(|r| r.verdict == Some(Verdict::Failed))
            .count();
        if (sum.passed as usize, sum.failed as usize) != (passed, failed) {
            out.push(Classified {
                name: name(suite, "(output parser)"),
                outcome: Outcome::Fail,
                detail: format!(
                    "CUnit's summary counts {} passed / {} failed but {passed} / {failed} verdicts \
                     were parsed",
                    sum.passed, sum.failed
                ),
                warnings: Vec::new(),
                started: true,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from iscsi-test-cu 1.19 against tgtd 1.0.85 (file LUN, two portals).
    const MODESENSE6: &str = "\
found matching LU device identifier for all (2) paths



     CUnit - A unit testing framework for C - Version 2.1-3
     http://cunit.sourceforge.net/


Suite: ModeSense6
  Test: AllPages ...passed
  Test: Control ...    [WARNING] BUSY_TIMEOUT_PERIOD is undefined.
passed
  Test: Control-D_SENSE ...passed
  Test: Control-SWP ...passed
  Test: Residuals ...passed    [FAILED] PRIN command: failed with sense. SENSE KEY:UNIT_ATTENTION(6) ASCQ:MODE PARAMETERS CHANGED(0x2a01)


Run Summary:    Type  Total    Ran Passed Failed Inactive
              suites      1      1    n/a      0        0
               tests      5      5      5      0        0
             asserts     36     36     36      0      n/a

Elapsed time =    0.001 seconds
Tests completed with return value: 0
";

    const RESERVE6: &str = "\
Suite: Reserve6
  Test: Simple ...passed
  Test: 2Initiators ...    Take out a RESERVE6 from the first initiator
    MODE SENSE should fail from the second initiator
    [FAILED] MODESENSE6 successful but should have failed with NO SENSE(0x00)/NO ASCQ(0x0000)
    RELEASE6 from the second initiator
FAILED
    1. test_reserve6_2initiators.c:70  - CU_ASSERT_EQUAL(_r,0)
  Test: TargetWarmReset ...    [SKIPPED] Task Management functionfor WarmReset is not working/implemented

passed
  Test: LUNReset ...passed    [FAILED] PRIN command: failed with sense. SENSE KEY:UNIT_ATTENTION(6) ASCQ:BUS_RESET(0x2900)
    [FAILED] PRIN command: failed with sense. SENSE KEY:UNIT_ATTENTION(6) ASCQ:BUS_RESET(0x2900)


Run Summary:    Type  Total    Ran Passed Failed Inactive
              suites      1      1    n/a      0        0
               tests      4      4      3      1        0
             asserts     31     31     30      1      n/a
";

    const DATASN: &str = "\
Suite: iSCSIdatasn
  Test: iSCSIDataSnInvalid ...FAILED
    1. test_iscsi_datasn_invalid.c:98  - CU_ASSERT_NOT_EQUAL(ret,0)
    2. test_iscsi_datasn_invalid.c:116  - CU_ASSERT_NOT_EQUAL(ret,0)
";

    const WRITESAME_UNMAPVPD: &str = "\
Suite: WriteSame10
  Test: UnmapVPD ...    [FAILED] WRITESAME10 command failed with status 2 / sense key ILLEGAL_REQUEST(0x05) / ASCQ INVALID_FIELD_IN_CDB(0x2400)
passed
  Test: Check ...passed
  Test: InvalidDataOutSize ...    [SKIPPED] Logical unit is fully provisioned. Skipping test
passed
";

    // A run cut short while Read10.BeyondEol was running (tool killed at a timeout).
    const HUNG: &str = "\
Suite: Read10
  Test: Simple ...passed
  Test: BeyondEol ...";

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn passes_teardown_warnings_and_summary() {
        let run = parse(MODESENSE6);
        assert_eq!(
            run.preamble[0],
            "found matching LU device identifier for all (2) paths"
        );
        assert_eq!(run.records.len(), 5);
        assert!(
            run.records
                .iter()
                .all(|r| r.suite == "ModeSense6" && r.outcome() == Outcome::Pass)
        );
        assert_eq!(run.records[1].test, "Control");
        assert_eq!(
            run.records[1].body,
            strs(&["[WARNING] BUSY_TIMEOUT_PERIOD is undefined."])
        );
        assert_eq!(run.records[2].test, "Control-D_SENSE");
        let res = &run.records[4];
        assert_eq!(res.test, "Residuals");
        assert!(res.body.is_empty());
        assert_eq!(res.warnings().len(), 1);
        assert!(res.warnings()[0].starts_with("after verdict (teardown): [FAILED] PRIN command"));
        assert_eq!(
            run.summary,
            Some(RunSummary {
                total: 5,
                ran: 5,
                passed: 5,
                failed: 0
            })
        );
    }

    #[test]
    fn failures_skips_and_blank_lines() {
        let run = parse(RESERVE6);
        let o: Vec<_> = run
            .records
            .iter()
            .map(|r| (r.test.as_str(), r.outcome()))
            .collect();
        assert_eq!(
            o,
            [
                ("Simple", Outcome::Pass),
                ("2Initiators", Outcome::Fail),
                ("TargetWarmReset", Outcome::Skip),
                ("LUNReset", Outcome::Pass),
            ]
        );
        let two = &run.records[1];
        assert_eq!(two.body.len(), 4);
        assert_eq!(
            two.assertions,
            strs(&["test_reserve6_2initiators.c:70  - CU_ASSERT_EQUAL(_r,0)"])
        );
        assert!(two.after.is_empty());
        assert_eq!(
            two.failure_summary(),
            "[FAILED] MODESENSE6 successful but should have failed with NO SENSE(0x00)/NO \
             ASCQ(0x0000) (test_reserve6_2initiators.c:70  - CU_ASSERT_EQUAL(_r,0))"
        );
        assert!(
            two.warnings().is_empty(),
            "a failed test's messages are its failure, not warnings"
        );
        assert_eq!(
            run.records[2].skip_reason(),
            Some("Task Management functionfor WarmReset is not working/implemented")
        );
        assert_eq!(run.records[3].after.len(), 2);
        assert_eq!(run.records[3].warnings().len(), 2);
        assert_eq!(run.summary.map(|s| (s.passed, s.failed)), Some((3, 1)));
    }

    #[test]
    fn assertion_lists() {
        let run = parse(DATASN);
        let r = &run.records[0];
        assert_eq!(
            (r.suite.as_str(), r.test.as_str()),
            ("iSCSIdatasn", "iSCSIDataSnInvalid")
        );
        assert_eq!(r.verdict, Some(Verdict::Failed));
        assert_eq!(r.assertions.len(), 2);
        assert_eq!(
            r.failure_summary(),
            "test_iscsi_datasn_invalid.c:98  - CU_ASSERT_NOT_EQUAL(ret,0) [+1 more failed assertions]"
        );
        assert_eq!(run.summary, None);
    }

    #[test]
    fn tolerated_probe_failure_is_a_pass_with_warning() {
        let run = parse(WRITESAME_UNMAPVPD);
        let o: Vec<_> = run.records.iter().map(|r| r.outcome()).collect();
        assert_eq!(o, [Outcome::Pass, Outcome::Pass, Outcome::Skip]);
        assert_eq!(run.records[0].warnings().len(), 1);
        assert!(run.records[0].warnings()[0].starts_with("in test: [FAILED] WRITESAME10"));
        assert_eq!(
            run.records[2].skip_reason(),
            Some("Logical unit is fully provisioned. Skipping test")
        );
    }

    #[test]
    fn cut_off_run_fails_the_running_test_and_the_rest() {
        let run = parse(HUNG);
        assert_eq!(run.records.len(), 2);
        assert_eq!(run.records[1].verdict, None);
        let expected = strs(&["Simple", "BeyondEol", "ZeroBlocks"]);
        let end = RunEnd::TimedOut(Duration::from_secs(120));
        let c = classify("SCSI", "Read10", &expected, &run, &end, "");
        let o: Vec<_> = c
            .iter()
            .map(|c| (c.name.as_str(), c.outcome, c.started))
            .collect();
        assert_eq!(
            o,
            [
                ("SCSI.Read10.Simple", Outcome::Pass, true),
                ("SCSI.Read10.BeyondEol", Outcome::Fail, true),
                ("SCSI.Read10.ZeroBlocks", Outcome::Fail, false),
            ]
        );
        assert_eq!(
            c[1].detail,
            "no verdict: iscsi-test-cu hung: killed after 120 s during this test"
        );
        assert_eq!(
            c[2].detail,
            "not run: iscsi-test-cu hung: killed after 120 s before it"
        );
    }

    #[test]
    fn setup_failure_fails_every_test() {
        let out = "Failed to connect to SCSI device 0\n";
        let run = parse(out);
        assert!(run.records.is_empty());
        assert_eq!(run.preamble, strs(&["Failed to connect to SCSI device 0"]));
        let c = classify(
            "iSCSI",
            "iSCSITMF",
            &strs(&["A", "B"]),
            &run,
            &RunEnd::Exited(255),
            "login refused",
        );
        assert!(c.iter().all(|c| c.outcome == Outcome::Fail && !c.started));
        assert_eq!(
            c[0].detail,
            "not run: iscsi-test-cu exited with status 255 before it: login refused"
        );
    }

    #[test]
    fn suite_init_failure_and_unlisted_tests() {
        let out = "\nWARNING - Suite initialization failed for 'Read6'.\nSuite: Read10\n  Test: New ...passed\n";
        let run = parse(out);
        assert_eq!(run.suite_init_failures, strs(&["Read6"]));
        let c = classify(
            "SCSI",
            "Read6",
            &strs(&["Simple"]),
            &run,
            &RunEnd::Exited(1),
            "",
        );
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].outcome, c[0].detail.as_str()),
            (Outcome::Fail, "not run: suite initialization failed")
        );
        assert_eq!(
            (c[1].name.as_str(), c[1].outcome),
            ("SCSI.Read10.New", Outcome::Pass)
        );
    }

    #[test]
    fn summary_mismatch_is_reported() {
        let out = "Suite: S\n  Test: T ...passed\nRun Summary: x\n  tests 2 2 1 1 0\n";
        let c = classify(
            "SCSI",
            "S",
            &strs(&["T"]),
            &parse(out),
            &RunEnd::Exited(1),
            "",
        );
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].outcome, Outcome::Fail);
        assert!(
            c[1].detail
                .starts_with("CUnit's summary counts 1 passed / 1 failed")
        );
    }

    #[test]
    fn listing() {
        let out = "ALL\nALL.Read6\nALL.Read6.Simple\nSCSI\nSCSI.Read6\nSCSI.Read6.Simple\n\
                   SCSI.Read6.BeyondEol\nSCSI.Read10.Simple\niSCSI.iSCSITMF.AbortTaskSimpleAsync\n\
                   LINUX.Read6.Simple\n";
        let l = parse_list(out, &["SCSI", "iSCSI"]);
        assert_eq!(
            l,
            vec![
                (
                    "SCSI".into(),
                    "Read6".into(),
                    strs(&["Simple", "BeyondEol"])
                ),
                ("SCSI".into(), "Read10".into(), strs(&["Simple"])),
                (
                    "iSCSI".into(),
                    "iSCSITMF".into(),
                    strs(&["AbortTaskSimpleAsync"])
                ),
            ]
        );
    }
}
