//! `keyrite verify DIR`: check an evidence bundle offline, item by item, and say what was checked.
//!
//! The verdict is one of three: verified (exit 0); INCOMPLETE, an intact bundle of a run that
//! stopped early (exit 6, with the command that finishes or closes it); or failed (exit 5), for
//! anything a crash cannot explain. The bundle is read through [`BundleDir`]: regular files
//! inside it only, each read bounded.

use super::bundle::{
    ARTIFACTS_DIR, LOG_FILE, REPORT_FILE, REPORT_PDF_FILE, SCRIPT_FILE, SIGNATURES_DIR,
};

mod artifacts;
mod backup;
mod compare;
mod crls;
mod issued;
mod pass;
mod progress;
mod report_signatures;
mod script;
mod signatures;
use super::report::shared::{self, Tap};
use super::report::{stream, Report};
use super::safe_read::{BundleDir, Kind, REPORT_LIMIT};
use sha2::{Digest, Sha256};
use std::path::Path;

/// One line of the verification table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    /// Not ok, but not tampering either: the run stopped before this was written (INCOMPLETE).
    pub incomplete: bool,
    /// Passed, but with something the reader must know (printed as WARN): e.g. a required signature
    /// missing for a reason the log records.
    pub warning: bool,
    /// The file the check is about, relative to the bundle.
    pub file: String,
    pub what: String,
}

#[derive(Debug, Default)]
pub struct Verification {
    pub checks: Vec<Check>,
    /// How the ceremony ended, as the verified report says ("completed", or "aborted: why").
    pub result: Option<String>,
    /// Full log head and report hash, to compare with what the witnesses wrote on paper.
    pub log_head: Option<String>,
    pub report_sha256: Option<String>,
    /// For an INCOMPLETE bundle: the commands that finish or close the ceremony.
    pub next: Vec<String>,
}

/// What `keyrite verify` concludes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every check holds.
    Verified,
    /// Intact so far, but the run stopped before its evidence was complete.
    Incomplete,
    /// Something a crash cannot explain: tampering, or a file that is not evidence.
    Failed,
}

impl Verification {
    pub fn passed(&self) -> bool {
        self.verdict() == Verdict::Verified
    }

    pub fn verdict(&self) -> Verdict {
        if self.checks.iter().any(|c| !c.ok && !c.incomplete) {
            Verdict::Failed
        } else if self.checks.is_empty() || self.checks.iter().any(|c| c.incomplete) {
            Verdict::Incomplete
        } else {
            Verdict::Verified
        }
    }

    fn pass(&mut self, file: &str, what: impl Into<String>) {
        self.push(true, false, false, file, what.into());
    }

    fn fail(&mut self, file: &str, what: impl Into<String>) {
        self.push(false, false, false, file, what.into());
    }

    /// A check that passes with a warning (WARN in the table).
    fn warn(&mut self, file: &str, what: impl Into<String>) {
        self.push(true, true, false, file, what.into());
    }

    /// Something not there yet because the run stopped early (INCOMPLETE in the table).
    fn incomplete(&mut self, file: &str, what: impl Into<String>) {
        self.push(false, false, true, file, what.into());
    }

    fn push(&mut self, ok: bool, warning: bool, incomplete: bool, file: &str, what: String) {
        self.checks.push(Check {
            ok,
            incomplete,
            warning,
            file: file.into(),
            what,
        });
    }

    fn check(
        &mut self,
        ok: bool,
        file: &str,
        good: impl Into<String>,
        bad: impl Into<String>,
    ) -> bool {
        if ok {
            self.pass(file, good)
        } else {
            self.fail(file, bad)
        }
        ok
    }

    /// The table printed by the CLI.
    pub fn table(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|c| c.file.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let label = |c: &Check| match (c.ok, c.warning, c.incomplete) {
            (false, _, true) => "INCOMPLETE",
            (false, _, false) => "FAIL",
            (true, true, _) => "WARN",
            (true, false, _) => "ok",
        };
        let labels = self
            .checks
            .iter()
            .map(|c| label(c).len())
            .max()
            .unwrap_or(4);
        self.checks
            .iter()
            .map(|c| format!("{:<labels$}  {:<width$}  {}\n", label(c), c.file, c.what))
            .collect()
    }
}

/// The first 16 hex digits, for the table; never panics on a short or crafted value.
fn short(hash: &str) -> &str {
    hash.get(..16).unwrap_or(hash)
}

/// Files the bundle may hold at its root; anything else was not produced by the ceremony.
const BUNDLE_ROOT: [&str; 6] = [
    SCRIPT_FILE,
    LOG_FILE,
    REPORT_FILE,
    REPORT_PDF_FILE,
    ARTIFACTS_DIR,
    SIGNATURES_DIR,
];

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn verify_bundle(dir: &Path) -> Verification {
    verify_bundle_with(dir, None)
}

/// [`verify_bundle`], checking signer certificates against `signers_ca` (PEM) instead of the
/// bundle's own copy of the signers CA.
pub fn verify_bundle_with(dir: &Path, signers_ca: Option<&str>) -> Verification {
    verify_batched(dir, signers_ca, pass::Batching::default())
}

/// [`verify_bundle`] with the log pass handing over `lines` lines at a time (tests of the hand-over).
#[cfg(test)]
pub(crate) fn verify_bundle_batched(dir: &Path, lines: usize) -> Verification {
    let batching = pass::Batching {
        lines,
        bytes: usize::MAX,
    };
    verify_batched(dir, None, batching)
}

fn verify_batched(dir: &Path, signers_ca: Option<&str>, batching: pass::Batching) -> Verification {
    let mut v = Verification::default();
    let bundle = match BundleDir::open(dir) {
        Ok(bundle) => bundle,
        Err(e) => {
            v.fail(
                &dir.display().to_string(),
                format!("the bundle folder: {e}"),
            );
            return v;
        }
    };
    check_bundle_root(&mut v, &bundle);
    let Some(pass) = pass::read(&mut v, &bundle, batching) else {
        return v;
    };
    if !pass.finished() {
        // Only a replay that ran out of log (or ended at a decision point) is a prefix of a run.
        if let Some(replay) = pass.script.as_ref().map(|s| &s.replay) {
            if replay.is_ok() || replay.ended.is_some() {
                progress::unfinished(
                    &mut v,
                    &bundle,
                    &pass.last,
                    pass.engine,
                    replay.ended.as_deref(),
                );
            }
        }
        artifacts::check_logged(&mut v, &bundle, &pass.artifacts);
        if let (Some(s), Some(facts)) = (&pass.script, pass.signatures) {
            signatures::check(&mut v, &bundle, &s.script, facts, signers_ca, false);
        }
        return v;
    }
    if pass.torn.is_some() {
        let out = dir.display();
        v.next = vec![format!("finish it: keyrite resume {out}")];
    }
    let recorded = pass.report_sha256().unwrap_or_default().to_string();
    let rebuilt = match (pass.report, pass.deferred) {
        // Confirmations out of plan order cannot be read back step by step: rebuild in full.
        (Ok(_), Some(d)) if !d.in_order => Rebuilt {
            report: pass::full_report(&bundle, &pass.log_sha256),
            deferred: None,
            log_sha256: pass.log_sha256,
        },
        (report, deferred) => Rebuilt {
            report,
            deferred,
            log_sha256: pass.log_sha256,
        },
    };
    // report.pdf is compared on a second thread while report.json is, on the guess that
    // report.json is the rebuilt report's encoding with the hash the log records: the rendering
    // prints that hash. When report.json turns out otherwise, the guess is dropped and report.pdf
    // compared afterwards, as before.
    // Both read the log's confirmations again through one shared read (report/shared.rs).
    let (json_tap, pdf_tap) = match rebuilt
        .report
        .as_ref()
        .ok()
        .and_then(|_| rebuilt.shared(&bundle))
    {
        Some((json_tap, pdf_tap)) => (Some(json_tap), Some(pdf_tap)),
        None => (None, None),
    };
    let (json, guessed) = std::thread::scope(|scope| {
        let guess = rebuilt.report.as_ref().ok().map(|report| {
            let (bundle, rebuilt, recorded) = (&bundle, &rebuilt, recorded.as_str());
            scope.spawn(move || compare_pdf(bundle, report, recorded, rebuilt, pdf_tap))
        });
        let json = check_report_json(&mut v, &bundle, &recorded, &rebuilt, json_tap);
        (json, guess.and_then(|g| g.join().ok()))
    });
    let Some((report, canonical)) = json else {
        return v;
    };
    let guessed = guessed.filter(|_| canonical.as_deref() == Some(recorded.as_str()));
    // The rebuilt report, if report.json was its bytes (its confirmations read back again for the
    // PDF); else report.json's parse, which holds them.
    let filling = if canonical.is_some() {
        &rebuilt
    } else {
        &Rebuilt::whole()
    };
    v.log_head = Some(report.log_head.hash.clone());
    v.result = Some(match &report.abort_reason {
        None if report.result == "completed" => "completed".into(),
        reason => format!(
            "ABORTED: {}",
            reason.as_deref().unwrap_or("no reason recorded")
        ),
    });
    if report.rehearsal {
        v.pass(REPORT_FILE, "marked REHEARSAL: the keys are throw-away");
    }

    let computed;
    let pdf = match guessed {
        Some(pdf) => pdf,
        None => {
            let sha256 = match canonical.as_deref() {
                Some(sha256) => sha256,
                None => {
                    computed = super::report::to_json(&report)
                        .map(|json| sha256_hex(&json))
                        .unwrap_or_default();
                    &computed
                }
            };
            compare_pdf(&bundle, &report, sha256, filling, None)
        }
    };
    check_report_pdf(&mut v, &bundle, pdf);
    artifacts::check_reported(&mut v, &bundle, &report);
    if let (Some(s), Some(facts)) = (&pass.script, pass.signatures) {
        signatures::check(&mut v, &bundle, &s.script, facts, signers_ca, true);
    }
    if v.verdict() == Verdict::Incomplete && v.next.is_empty() {
        v.next = vec![format!(
            "finish the report signatures: keyrite resume {}",
            dir.display()
        )];
    }
    v
}

/// report.json must hash to what the log's last entry records and equal the report rebuilt from
/// the log. The file is compared with the rebuilt report's encoding as both stream past, so
/// neither the file nor its parse is held; a file that differs (or a report that could not be
/// rebuilt) is read, parsed and compared field by field, as before, to say why.
fn check_report_json(
    v: &mut Verification,
    bundle: &BundleDir,
    recorded: &str,
    rebuilt: &Rebuilt,
    tap: Option<Tap>,
) -> Option<(Report, Option<String>)> {
    let mut second_read = Ok(());
    let encode = rebuilt.report.as_ref().ok().map(|report| {
        |w: &mut compare::Sink| {
            let encoded =
                rebuilt.filling(bundle, tap, || super::report::write_json(report, &mut *w));
            encoded.unwrap_or_else(|e| {
                second_read = Err(e);
                Err(std::io::Error::other("the log could not be read again"))
            })
        }
    });
    let compared = compare::file(bundle, REPORT_FILE, REPORT_LIMIT, encode);
    if let Err(e) = second_read {
        v.fail(LOG_FILE, e);
        return None;
    }
    let compared = match compared {
        Ok(compared) => compared,
        Err(e) => {
            v.fail(REPORT_FILE, e.to_string());
            return None;
        }
    };
    let actual = compared.sha256;
    v.report_sha256 = Some(actual.clone());
    if !v.check(
        actual == recorded,
        REPORT_FILE,
        format!(
            "SHA-256 {} matches the log's report_written entry",
            short(&actual)
        ),
        format!("SHA-256 {actual} differs from {recorded} recorded in the log"),
    ) {
        return None;
    }
    if compared.same {
        if let Ok(report) = &rebuilt.report {
            v.pass(
                REPORT_FILE,
                format!(
                    "matches the log up to its head (seq {}, {})",
                    report.log_head.seq,
                    short(&report.log_head.hash)
                ),
            );
            return Some((report.clone(), Some(actual)));
        }
    }
    let report_bytes = match bundle.read(REPORT_FILE, REPORT_LIMIT) {
        Ok(bytes) => bytes,
        Err(e) => {
            v.fail(REPORT_FILE, e.to_string());
            return None;
        }
    };
    if sha256_hex(&report_bytes) != actual {
        v.fail(REPORT_FILE, "changed while it was being verified");
        return None;
    }
    let report: Report = match serde_json::from_slice(&report_bytes) {
        Ok(r) => r,
        Err(e) => {
            v.fail(REPORT_FILE, format!("does not parse as a report: {e}"));
            return None;
        }
    };
    // A deferred rebuild lacks the confirmations a field-by-field comparison needs.
    let full;
    let rebuilt = match (&rebuilt.report, &rebuilt.deferred) {
        (Ok(_), Some(_)) => {
            full = pass::full_report(bundle, &rebuilt.log_sha256);
            &full
        }
        (report, _) => report,
    };
    match rebuilt {
        Ok(rebuilt) => {
            v.check(
                *rebuilt == report,
                REPORT_FILE,
                format!(
                    "matches the log up to its head (seq {}, {})",
                    report.log_head.seq,
                    short(&report.log_head.hash)
                ),
                "differs from the report rebuilt from the log",
            );
        }
        Err(e) => v.fail(LOG_FILE, format!("cannot rebuild the report: {e}")),
    }
    Some((report, None))
}

/// report.pdf compared with what this keyrite renders from `report` with report.json's SHA-256
/// `sha256` (which the rendering prints). The rendering is written page by page into the
/// comparison with the file as it is read: neither is held.
fn compare_pdf<'a>(
    bundle: &BundleDir,
    report: &'a Report,
    sha256: &'a str,
    rebuilt: &'a Rebuilt,
    tap: Option<Tap>,
) -> PdfCompared<'a> {
    let mut second_read = Ok(());
    let write = |w: &mut compare::Sink| {
        rebuilt
            .filling(bundle, tap, || super::pdf::render_to(report, sha256, w))
            .unwrap_or_else(|e| {
                second_read = Err(e);
                Err(std::io::Error::other("the log could not be read again"))
            })
    };
    let compared = compare::file(bundle, REPORT_PDF_FILE, REPORT_LIMIT, Some(write));
    PdfCompared {
        compared,
        second_read,
        report,
        sha256,
        rebuilt,
    }
}

/// [`compare_pdf`]'s result, with what it rendered from.
struct PdfCompared<'a> {
    compared: Result<compare::Compared, super::safe_read::ReadError>,
    second_read: Result<(), String>,
    report: &'a Report,
    sha256: &'a str,
    rebuilt: &'a Rebuilt,
}

/// report.pdf must be exactly what this keyrite renders from report.json.
fn check_report_pdf(v: &mut Verification, bundle: &BundleDir, pdf: PdfCompared) {
    let PdfCompared {
        compared,
        second_read,
        report,
        sha256,
        rebuilt,
    } = pdf;
    if let Err(e) = second_read {
        v.fail(LOG_FILE, e);
        return;
    }
    let pdf = match compared {
        Ok(pdf) => pdf,
        Err(e) => {
            v.fail(REPORT_PDF_FILE, e.to_string());
            return;
        }
    };
    if pdf.same {
        v.pass(
            REPORT_PDF_FILE,
            format!(
                "byte-identical to the rendering of report.json (SHA-256 {})",
                short(&pdf.sha256)
            ),
        );
        return;
    }
    // Only a failure names the rendering's hash: rendered once more, into a hash.
    let mut rendered = compare::Hashing(Sha256::new());
    let _ = rebuilt.filling(bundle, None, || {
        super::pdf::render_to(report, sha256, &mut rendered)
    });
    v.fail(
        REPORT_PDF_FILE,
        format!(
            "differs from the rendering of report.json (SHA-256 {} on disk, {} rendered): \
             the PDF was altered, or made by another keyrite version",
            pdf.sha256,
            hex::encode(rendered.0.finalize())
        ),
    );
}

/// The report rebuilt from the log. When its confirmations were deferred (pass.rs), they are read
/// from the log again, step by step, while it is encoded or rendered.
struct Rebuilt {
    report: Result<Report, String>,
    deferred: Option<super::report::Deferred>,
    log_sha256: String,
}

impl Rebuilt {
    /// For a report that holds its confirmations (report.json's parse).
    fn whole() -> Self {
        Rebuilt {
            report: Err(String::new()),
            deferred: None,
            log_sha256: String::new(),
        }
    }

    /// Run `f` with every step's confirmations at hand: from `tap` (a read shared with another
    /// thread), the first pass's spill, or a read of its own; `Err`: they could not be read back.
    fn filling<T>(
        &self,
        bundle: &BundleDir,
        tap: Option<Tap>,
        f: impl FnOnce() -> T,
    ) -> Result<T, String> {
        let Some(deferred) = &self.deferred else {
            return Ok(f());
        };
        let (out, read) = match (tap, stream::Filler::from_spill(deferred)) {
            (Some(tap), _) => stream::with_tap(tap, f),
            (None, Some(filler)) => stream::with_filler(filler, f),
            (None, None) => {
                let lines = bundle
                    .open_log(LOG_FILE)
                    .map_err(|e| format!("read again: {e}"))?;
                stream::with_filler(stream::Filler::new(lines, deferred, &self.log_sha256), f)
            }
        };
        read.map(|()| out)
    }

    /// Two taps of one later read of the log, when the report is deferred without a spill and
    /// the log opens (otherwise each reads on its own, and says why it cannot).
    fn shared(&self, bundle: &BundleDir) -> Option<(Tap, Tap)> {
        // With the first pass's spill each reads its own copy (cheaper than sharing a read).
        let deferred = self.deferred.as_ref().filter(|d| d.spill.is_none())?;
        let lines = bundle.open_log(LOG_FILE).ok()?;
        Some(shared::split(stream::Filler::new(
            lines,
            deferred,
            &self.log_sha256,
        )))
    }
}

/// Nothing but the ceremony's files at the bundle root, and each of the right kind: a link, a FIFO
/// or a device is never evidence.
fn check_bundle_root(v: &mut Verification, bundle: &BundleDir) {
    let entries = match bundle.list("") {
        Ok(entries) => entries,
        Err(e) => {
            v.fail(".", format!("the bundle folder cannot be listed: {e}"));
            return;
        }
    };
    for (name, kind) in entries {
        let folder = name == ARTIFACTS_DIR || name == SIGNATURES_DIR;
        if !BUNDLE_ROOT.contains(&name.as_str()) {
            v.fail(
                &name,
                "not part of the evidence: the ceremony did not write it",
            );
        } else if folder && kind != Kind::Folder {
            v.fail(
                &name,
                "is not a plain folder (a link, or a file): verify never follows it",
            );
        } else if !folder && kind != Kind::File {
            v.fail(&name, progress::not_a_file(kind).to_string());
        }
    }
}
