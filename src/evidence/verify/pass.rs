//! One pass over audit.jsonl for `keyrite verify`. Each line is read under safe_read's limits,
//! chain-checked and parsed once, then handed to every check that reads the log: the replay, the
//! report rebuild, the signature checks' collector, the artifact list and the progress facts. The
//! log is never held: memory is one line (two for the report's head), the engine, the report being
//! rebuilt, and what the signature checks keep (src/evidence/verify/signatures.rs).
//!
//! The findings come out in the order the old whole-file reader gave them: a read error (a line or
//! the file over its limit) wins over everything, then a complete entry that lost its newline, an
//! empty log, a break in the chain; only an intact chain lets the other checks speak.

use super::progress::{self, EngineSeen};
use super::script::{self, Checked};
use super::signatures::SignatureFacts;
use super::{short, Verification};
use crate::evidence::bundle::LOG_FILE;
use crate::evidence::events::Record;
use crate::evidence::log::{AuditEntry, ChainCheck, ChainError};
use crate::evidence::replay::Replay;
use crate::evidence::report::{
    parse_event, ArtifactRecord, Deferred, Parsed, Report, ReportBuilder,
};
use crate::evidence::safe_read::{BundleDir, LogLines, ReadError};
use crate::script::Script;
use sha2::{Digest, Sha256};

/// What the pass found in an intact log.
pub(super) struct Pass {
    /// Bytes of an unterminated last line (a run that stopped while writing it).
    pub torn: Option<usize>,
    /// The last intact entry and its event.
    pub last: AuditEntry,
    pub last_parsed: Result<Parsed, String>,
    /// script.toml and how the log replayed under it; `None` when it could not be checked.
    pub script: Option<Checked>,
    pub signatures: Option<SignatureFacts>,
    /// The report rebuilt from every entry but the last (which should be `report_written`), each
    /// step's confirmations deferred: counted here, read again from the log when the report is
    /// encoded or rendered (src/evidence/report/stream.rs).
    pub report: Result<Report, String>,
    pub deferred: Option<Deferred>,
    /// SHA-256 of every byte of audit.jsonl read, so a second read can tell it is the same file.
    pub log_sha256: String,
    pub engine: EngineSeen,
    /// The `artifact_written` records, in log order.
    pub artifacts: Vec<ArtifactRecord>,
}

impl Pass {
    /// The SHA-256 of report.json the last entry binds, when the log ends with `report_written`.
    pub fn report_sha256(&self) -> Option<&str> {
        match &self.last_parsed {
            Ok(Parsed::Record(Record::ReportWritten { report_sha256 })) => Some(report_sha256),
            _ => None,
        }
    }

    pub fn finished(&self) -> bool {
        self.report_sha256().is_some()
    }
}

/// Read and check audit.jsonl; `None` when nothing more can be checked (the reason is in `v`).
pub(super) fn read(v: &mut Verification, bundle: &BundleDir) -> Option<Pass> {
    let lines = match bundle.open_log(LOG_FILE) {
        Ok(lines) => lines,
        Err(ReadError::Missing) if progress::only_the_script(bundle) => {
            progress::not_started(v, bundle, "the bundle holds the script but no log yet");
            return None;
        }
        Err(ReadError::Missing) => {
            v.fail(LOG_FILE, "missing or unreadable");
            return None;
        }
        Err(e) => {
            v.fail(LOG_FILE, e.to_string());
            return None;
        }
    };
    let mut lines = Lines {
        lines,
        buf: Vec::with_capacity(4096),
        sha: Sha256::new(),
        chain: ChainCheck::default(),
        terminated: 0,
        broken: None,
        tail: None,
    };
    // script.toml is checked when the first entry names it, but its findings follow the chain's.
    let mut early = Verification::default();
    let streamed = match stream(&mut lines, bundle, &mut early) {
        Ok(streamed) => streamed,
        Err(e) => {
            v.fail(LOG_FILE, e.to_string());
            return None;
        }
    };
    if let Some(tail) = &lines.tail {
        if progress::whole_entry_without_newline(tail) {
            v.fail(
                LOG_FILE,
                format!(
                    "line {}: a complete entry whose newline is missing or replaced: the file was \
                     edited (keyrite writes each entry with its newline in one write)",
                    lines.terminated + 1
                ),
            );
            return None;
        }
    }
    let torn = lines.tail.as_ref().map(Vec::len);
    if lines.terminated == 0 {
        let why = match torn {
            Some(n) => {
                format!("the log's first line was cut short ({n} bytes) by a crash or a full disk")
            }
            None => "the log is empty".into(),
        };
        progress::not_started(v, bundle, &why);
        return None;
    }
    if let Some(e) = lines.broken {
        v.fail(
            LOG_FILE,
            format!("hash chain broken at line {}: {}", e.line, e.what),
        );
        return None;
    }
    let Streamed {
        script,
        replayed,
        signatures,
        report,
        deferred,
        last: Some((last, last_parsed)),
        engine,
        artifacts,
    } = streamed
    else {
        // Unreachable: an intact log with a terminated line has a last entry.
        v.fail(LOG_FILE, "the log is empty");
        return None;
    };
    let entries = lines.terminated;
    v.pass(
        LOG_FILE,
        format!(
            "hash chain of {entries} entries intact, last hash {}",
            short(&last.hash)
        ),
    );
    if let Some(n) = torn {
        v.incomplete(
            LOG_FILE,
            format!(
                "line {} is cut short ({n} bytes, no newline): the run stopped while writing it \
                 (a crash or a full disk); the {entries} entries before it are intact",
                entries + 1,
            ),
        );
    }
    v.checks.append(&mut early.checks);
    let mut pass = Pass {
        torn,
        last,
        last_parsed,
        script: None,
        signatures,
        report,
        deferred,
        log_sha256: hex::encode(lines.sha.finalize_reset()),
        engine,
        artifacts,
    };
    let finished = pass.finished();
    pass.script = script.zip(replayed).map(|(script, replayed)| Checked {
        script,
        replay: script::judge(v, replayed, finished),
    });
    Some(pass)
}

/// The lines of the log: the intact entries one by one; after a break in the chain, or the torn
/// last line, the rest of the file is still read (its limits still apply) and nothing is returned.
struct Lines {
    lines: LogLines,
    buf: Vec<u8>,
    /// Every byte read, in order.
    sha: Sha256,
    chain: ChainCheck,
    /// Lines read that end with a newline.
    terminated: usize,
    broken: Option<ChainError>,
    tail: Option<Vec<u8>>,
}

impl Lines {
    fn next(&mut self) -> Result<Option<AuditEntry>, ReadError> {
        while self.lines.next_line(&mut self.buf)? {
            self.sha.update(&self.buf);
            // Split on LF only: a CR left in a line fails the canonical-form check.
            let Some(line) = self.buf.strip_suffix(b"\n") else {
                self.tail = Some(std::mem::take(&mut self.buf));
                continue;
            };
            self.terminated += 1;
            if self.broken.is_none() {
                match self.chain.next(line) {
                    Ok(entry) => return Ok(Some(entry)),
                    Err(e) => self.broken = Some(e),
                }
            }
        }
        Ok(None)
    }
}

/// What the streamed entries gave every check.
struct Streamed {
    script: Option<Script>,
    replayed: Option<Result<usize, String>>,
    signatures: Option<SignatureFacts>,
    report: Result<Report, String>,
    deferred: Option<Deferred>,
    last: Option<(AuditEntry, Result<Parsed, String>)>,
    engine: EngineSeen,
    artifacts: Vec<ArtifactRecord>,
}

fn stream(
    lines: &mut Lines,
    bundle: &BundleDir,
    early: &mut Verification,
) -> Result<Streamed, ReadError> {
    let first = lines.next()?.map(|entry| {
        let parsed = parse_event(&entry);
        (entry, parsed)
    });
    let script = first
        .as_ref()
        .and_then(|(_, parsed)| script::prepare(early, bundle, parsed.as_ref()));
    let mut each = Each {
        replay: script.as_ref().map(|s| {
            let mut replay = Replay::new(s);
            replay.forget_finished_steps();
            replay
        }),
        signatures: script.as_ref().map(SignatureFacts::new),
        report: None,
        held: None,
        head: None,
        engine: EngineSeen::default(),
        artifacts: Vec::new(),
    };
    if let Some((entry, parsed)) = first {
        each.entry(entry, parsed);
        while let Some(entry) = lines.next()? {
            let parsed = parse_event(&entry);
            each.entry(entry, parsed);
        }
    }
    let Each {
        replay,
        signatures,
        report,
        held,
        head,
        engine,
        artifacts,
    } = each;
    let replayed = replay.map(Replay::finish);
    let (report, deferred) = match (report, &head) {
        (Some(Ok(builder)), Some(head)) => {
            let (report, deferred) = builder.finish_deferred(head);
            (Ok(report), deferred)
        }
        (Some(Err(e)), _) => (Err(e), None),
        _ => (Err("the log is empty".to_string()), None),
    };
    Ok(Streamed {
        script,
        replayed,
        signatures,
        report,
        deferred,
        last: held,
        engine,
        artifacts,
    })
}

/// The checks fed one entry at a time.
struct Each<'s> {
    replay: Option<Replay<'s>>,
    signatures: Option<SignatureFacts>,
    report: Option<Result<ReportBuilder, String>>,
    /// The report covers every entry but the last, so each entry waits here for the next.
    held: Option<(AuditEntry, Result<Parsed, String>)>,
    /// The last entry applied to the report: its head.
    head: Option<AuditEntry>,
    engine: EngineSeen,
    artifacts: Vec<ArtifactRecord>,
}

impl Each<'_> {
    fn entry(&mut self, entry: AuditEntry, parsed: Result<Parsed, String>) {
        let ok = parsed.as_ref().ok();
        if let Some(replay) = self.replay.as_mut() {
            match &parsed {
                Ok(p) => replay.entry(&entry, p),
                Err(e) => replay.unparsable(e.clone()),
            }
        }
        if let Some(signatures) = self.signatures.as_mut() {
            signatures.entry(&entry, ok);
        }
        self.engine.entry(ok);
        if let Some(Parsed::Record(Record::ArtifactWritten(a))) = ok {
            self.artifacts.push(a.clone());
        }
        if let Some((prev, prev_parsed)) = self.held.replace((entry, parsed)) {
            self.report = Some(match self.report.take() {
                None => prev_parsed.and_then(|p| ReportBuilder::start_deferred(&prev, p)),
                Some(Ok(mut builder)) => prev_parsed
                    .and_then(|p| builder.apply(&prev, p))
                    .map(|()| builder),
                Some(Err(e)) => Err(e),
            });
            self.head = Some(prev);
        }
    }
}

/// The report rebuilt in full from a second read of the log, for a deferred rebuild whose
/// confirmations named steps out of plan order (one read cannot hand them out step by step) and
/// for the field-by-field comparison with a report.json that differs. Holds every confirmation.
pub(super) fn full_report(bundle: &BundleDir, log_sha256: &str) -> Result<Report, String> {
    let mut lines = bundle.open_log(LOG_FILE).map_err(|e| e.to_string())?;
    let (mut buf, mut sha) = (Vec::with_capacity(4096), Sha256::new());
    let mut builder: Option<ReportBuilder> = None;
    let mut held: Option<AuditEntry> = None;
    let mut head: Option<AuditEntry> = None;
    while lines.next_line(&mut buf).map_err(|e| e.to_string())? {
        sha.update(&buf);
        let Some(line) = buf.strip_suffix(b"\n") else {
            continue;
        };
        let entry: AuditEntry = serde_json::from_slice(line)
            .map_err(|e| format!("{LOG_FILE} changed while it was being verified: {e}"))?;
        // Every entry but the last: each waits for the next.
        if let Some(prev) = held.replace(entry) {
            let parsed = parse_event(&prev)?;
            builder = Some(match builder {
                None => ReportBuilder::start(&prev, parsed)?,
                Some(mut b) => {
                    b.apply(&prev, parsed)?;
                    b
                }
            });
            head = Some(prev);
        }
    }
    if hex::encode(sha.finalize()) != log_sha256 {
        return Err(format!("{LOG_FILE} changed while it was being verified"));
    }
    match (builder, head) {
        (Some(b), Some(head)) => Ok(b.finish(&head)),
        _ => Err("the log is empty".into()),
    }
}
