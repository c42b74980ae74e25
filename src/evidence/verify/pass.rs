//! One pass over audit.jsonl for `keyrite verify`. Each line is read under safe_read's limits and
//! chain-checked on a reader thread, then parsed once here and handed to every check that reads the
//! log: the replay, the report rebuild, the signature checks' collector, the artifact list and the
//! progress facts (the two threads: pass/lines.rs). The log is never held: memory is a few batches
//! of lines, the engine, the report being rebuilt, and what the signature checks keep
//! (src/evidence/verify/signatures.rs).
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
use crate::evidence::log::{AuditEntry, EntryRef};
use crate::evidence::replay::Replay;
use crate::evidence::report::{
    parse_event, ArtifactRecord, Deferred, Parsed, Report, ReportBuilder,
};
use crate::evidence::safe_read::{BundleDir, ReadError};
use crate::script::Script;
pub(super) use lines::Batching;
use lines::{Entries, Lines};
use sha2::{Digest, Sha256};

mod lines;
#[cfg(test)]
mod tests;

/// What the pass found in an intact log.
pub(super) struct Pass {
    /// Bytes of an unterminated last line (a run that stopped while writing it).
    pub torn: Option<usize>,
    /// The last intact entry, and the report hash it records when it is `report_written`.
    pub last: AuditEntry,
    pub report_written: Option<String>,
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
        self.report_written.as_deref()
    }

    pub fn finished(&self) -> bool {
        self.report_sha256().is_some()
    }
}

/// Read and check audit.jsonl, the lines handed from the reader thread to this one `batching` at a
/// time; `None` when nothing more can be checked (the reason is in `v`).
pub(super) fn read(v: &mut Verification, bundle: &BundleDir, batching: Batching) -> Option<Pass> {
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
    let mut lines = Lines::new(lines);
    // script.toml is checked when the first entry names it, but its findings follow the chain's.
    let mut early = Verification::default();
    let streamed = match lines::pipelined(&mut lines, batching, |entries| {
        stream(entries, bundle, &mut early)
    }) {
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
        report_written,
        engine,
        artifacts,
    } = streamed;
    // The last intact line, parsed in full (it passed the chain check, so it parses).
    let last = match serde_json::from_slice::<AuditEntry>(lines.last_line()) {
        Ok(last) => last,
        Err(e) => {
            v.fail(LOG_FILE, format!("the last entry: {e}"));
            return None;
        }
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
        report_written,
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

/// What the streamed entries gave every check.
struct Streamed {
    script: Option<Script>,
    replayed: Option<Result<usize, String>>,
    signatures: Option<SignatureFacts>,
    report: Result<Report, String>,
    deferred: Option<Deferred>,
    /// The report hash, when the last entry is `report_written`.
    report_written: Option<String>,
    engine: EngineSeen,
    artifacts: Vec<ArtifactRecord>,
}

fn stream(entries: &mut Entries, bundle: &BundleDir, early: &mut Verification) -> Streamed {
    let first = entries.next();
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
        head: Kept::default(),
        report_written: None,
        engine: EngineSeen::default(),
        artifacts: Vec::new(),
    };
    if let Some((checked, parsed)) = first {
        each.entry(checked.view(), parsed);
        while let Some((checked, parsed)) = entries.next() {
            each.entry(checked.view(), parsed);
        }
    }
    let Each {
        replay,
        signatures,
        report,
        head,
        report_written,
        engine,
        artifacts,
        ..
    } = each;
    let replayed = replay.map(Replay::finish);
    let (report, deferred) = match report {
        Some(Ok(builder)) => {
            let (report, deferred) = builder.finish_deferred(head.view());
            (Ok(report), deferred)
        }
        Some(Err(e)) => (Err(e), None),
        None => (Err("the log is empty".to_string()), None),
    };
    Streamed {
        script,
        replayed,
        signatures,
        report,
        deferred,
        report_written,
        engine,
        artifacts,
    }
}

/// The checks fed one entry at a time.
struct Each<'s> {
    replay: Option<Replay<'s>>,
    signatures: Option<SignatureFacts>,
    report: Option<Result<ReportBuilder, String>>,
    /// The report covers every entry but the last, which should be `report_written`: such an
    /// entry waits here for the next, if any; every other entry is applied at once (when it is the
    /// last, the log is unfinished and the report is not compared).
    held: Option<(Kept, Result<Parsed, String>)>,
    /// The last entry applied to the report: its head.
    head: Kept,
    /// The report hash of the latest entry, when it is `report_written`.
    report_written: Option<String>,
    engine: EngineSeen,
    artifacts: Vec<ArtifactRecord>,
}

impl Each<'_> {
    fn entry(&mut self, entry: EntryRef, parsed: Result<Parsed, String>) {
        let ok = parsed.as_ref().ok();
        if let Some(replay) = self.replay.as_mut() {
            match &parsed {
                Ok(p) => replay.entry(entry, p),
                Err(e) => replay.unparsable(e.clone()),
            }
        }
        if let Some(signatures) = self.signatures.as_mut() {
            signatures.entry(entry, ok);
        }
        self.engine.entry(ok);
        if let Some(Parsed::Record(Record::ArtifactWritten(a))) = ok {
            self.artifacts.push(a.clone());
        }
        self.report_written = match ok {
            Some(Parsed::Record(Record::ReportWritten { report_sha256 })) => {
                Some(report_sha256.clone())
            }
            _ => None,
        };
        if let Some((held, held_parsed)) = self.held.take() {
            self.apply(held.view(), held_parsed);
        }
        if self.report_written.is_some() {
            let mut kept = Kept::default();
            kept.set(entry);
            self.held = Some((kept, parsed));
        } else {
            self.apply(entry, parsed);
        }
    }

    fn apply(&mut self, entry: EntryRef, parsed: Result<Parsed, String>) {
        // In place: the builder is large, and moving it out and back for every entry was a tenth
        // of the log pass (memmove).
        match &mut self.report {
            None => {
                self.report = Some(parsed.and_then(|p| ReportBuilder::start_deferred(entry, p)))
            }
            Some(Ok(builder)) => {
                if let Err(e) = parsed.and_then(|p| builder.apply(entry, p)) {
                    self.report = Some(Err(e));
                }
            }
            Some(Err(_)) => {}
        }
        self.head.set(entry);
    }
}

/// An entry's members kept past its line (the report's head), in buffers reused entry to entry.
#[derive(Default)]
struct Kept {
    seq: u64,
    time: String,
    step: Option<String>,
    hash: String,
    kind: String,
}

impl Kept {
    fn set(&mut self, entry: EntryRef) {
        self.seq = entry.seq;
        for (to, from) in [
            (&mut self.time, entry.time),
            (&mut self.hash, entry.hash),
            (&mut self.kind, entry.kind),
        ] {
            to.clear();
            to.push_str(from);
        }
        match (&mut self.step, entry.step) {
            (Some(to), Some(from)) => {
                to.clear();
                to.push_str(from);
            }
            (to, from) => *to = from.map(str::to_string),
        }
    }

    fn view(&self) -> EntryRef<'_> {
        EntryRef {
            seq: self.seq,
            time: &self.time,
            step: self.step.as_deref(),
            hash: &self.hash,
            kind: &self.kind,
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
