//! How far the run got: reading audit.jsonl (a torn last line included), and telling an
//! unfinished but intact bundle (INCOMPLETE, exit 6) from a tampered one (exit 5).
//!
//! keyrite appends and fsyncs one entry at a time and writes report.json, report.pdf and the
//! report signatures after the last engine entry, so a crash or a full disk leaves a bundle that is
//! a true prefix of a finished one: a chain that is intact but ends early, possibly a last line cut
//! short, and signatures not yet made. Anything else is tampering.

use super::Verification;
use crate::engine::Event;
use crate::evidence::bundle::{
    LOG_FILE, REPORT_FILE, REPORT_PDF_FILE, SCRIPT_FILE, SIGNATURES_DIR, SIGNERS_CA_FILE,
};
use crate::evidence::events::Record;
use crate::evidence::log::{read_chain, AuditEntry};
use crate::evidence::report::{parse_event, Parsed};
use crate::evidence::safe_read::{BundleDir, Kind, ReadError};

/// The log as read: its intact entries, and whether a torn last line followed them.
pub(super) struct Log {
    pub entries: Vec<AuditEntry>,
    /// Bytes of an unterminated last line.
    pub torn: Option<usize>,
}

/// Read and chain-check audit.jsonl; `None` when nothing more can be checked.
pub(super) fn read_log(v: &mut Verification, bundle: &BundleDir) -> Option<Log> {
    let bytes = match bundle.read_log(LOG_FILE) {
        Ok(bytes) => bytes,
        Err(ReadError::Missing) if only_the_script(bundle) => {
            not_started(v, bundle, "the bundle holds the script but no log yet");
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
    let body_len = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let (body, tail) = bytes.split_at(body_len);
    let torn = (!tail.is_empty()).then_some(tail.len());
    let lines = body.iter().filter(|b| **b == b'\n').count();
    if torn.is_some() && whole_entry_without_newline(tail) {
        v.fail(
            LOG_FILE,
            format!(
                "line {}: a complete entry whose newline is missing or replaced: the file was edited \
                 (keyrite writes each entry with its newline in one write)",
                lines + 1
            ),
        );
        return None;
    }
    if body.is_empty() {
        let why = match torn {
            Some(n) => {
                format!("the log's first line was cut short ({n} bytes) by a crash or a full disk")
            }
            None => "the log is empty".into(),
        };
        not_started(v, bundle, &why);
        return None;
    }
    let entries = match read_chain(body) {
        Ok(entries) => entries,
        Err(e) => {
            v.fail(
                LOG_FILE,
                format!("hash chain broken at line {}: {}", e.line, e.what),
            );
            return None;
        }
    };
    let head = &entries[entries.len() - 1];
    v.pass(
        LOG_FILE,
        format!(
            "hash chain of {} entries intact, last hash {}",
            entries.len(),
            super::short(&head.hash)
        ),
    );
    if let Some(n) = torn {
        v.incomplete(
            LOG_FILE,
            format!(
                "line {} is cut short ({n} bytes, no newline): the run stopped while writing it \
                 (a crash or a full disk); the {} entries before it are intact",
                lines + 1,
                entries.len()
            ),
        );
    }
    Some(Log { entries, torn })
}

/// A torn line is a prefix of an entry; a whole canonical entry that only lacks its newline (or
/// has another byte in its place) was not torn by a crash.
fn whole_entry_without_newline(tail: &[u8]) -> bool {
    let whole = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|line| {
                serde_json::from_str::<AuditEntry>(line)
                    .ok()
                    .map(|e| e.to_line() == line)
            })
            .unwrap_or(false)
    };
    whole(tail) || tail.split_last().is_some_and(|(_, rest)| whole(rest))
}

/// Nothing but script.toml (and the empty artifacts/ folder) was written: the run stopped at once.
fn only_the_script(bundle: &BundleDir) -> bool {
    bundle.list("").is_ok_and(|names| {
        names.iter().any(|(name, _)| name == SCRIPT_FILE)
            && names.iter().all(|(name, kind)| {
                (name == SCRIPT_FILE && *kind == Kind::File)
                    || (name == "artifacts"
                        && *kind == Kind::Folder
                        && bundle.list("artifacts").is_ok_and(|a| a.is_empty()))
            })
    })
}

fn not_started(v: &mut Verification, bundle: &BundleDir, why: &str) {
    v.incomplete(
        LOG_FILE,
        format!("not started: {why}; nothing was recorded, so nothing was done on the HSM"),
    );
    let out = bundle.root().display();
    v.next = vec![
        format!("close it on the record: keyrite abort {out} --reason \"…\""),
        "or start the ceremony again with a new --out folder".into(),
    ];
}

/// Where an intact log that lacks `report_written` stopped, as an INCOMPLETE check, and what to
/// run next. `replay_ended` is the replay's "the log ends where …" message, if it gave one.
pub(super) fn unfinished(
    v: &mut Verification,
    bundle: &BundleDir,
    entries: &[AuditEntry],
    replay_ended: Option<&str>,
) {
    let last = &entries[entries.len() - 1];
    let engine: Vec<Event> = entries
        .iter()
        .filter_map(|e| match parse_event(e) {
            Ok(Parsed::Engine(event)) => Some(event),
            _ => None,
        })
        .collect();
    let ended = engine
        .iter()
        .any(|e| matches!(e, Event::CeremonyCompleted | Event::CeremonyAborted { .. }));
    let out = bundle.root().display();
    let resume = format!("finish it: keyrite resume {out}");
    let abort = format!("or close it on the record: keyrite abort {out} --reason \"…\"");
    let (what, next) = if engine.is_empty() {
        (
            "not started: the run stopped before the ceremony's first step".to_string(),
            vec![
                format!("close it on the record: keyrite abort {out} --reason \"…\""),
                "or start the ceremony again with a new --out folder".into(),
            ],
        )
    } else if ended {
        (
            "the ceremony ended, but the run stopped before report.json was bound by \
             report_written"
                .to_string(),
            vec![format!("write and sign the report: keyrite resume {out}")],
        )
    } else {
        let at = match &last.step {
            Some(step) => format!(" in step {step}"),
            None => String::new(),
        };
        let engine_says = replay_ended.map(|e| format!(" ({e})")).unwrap_or_default();
        (
            format!(
                "the log ends mid-ceremony after entry {} ({}){at}{engine_says}",
                last.seq,
                last.kind()
            ),
            vec![resume, abort],
        )
    };
    v.incomplete(
        LOG_FILE,
        format!(
            "intact so far: {what}; entries 0–{} verify (last hash {})",
            last.seq,
            super::short(&last.hash)
        ),
    );
    v.next = next;
    for file in [REPORT_FILE, REPORT_PDF_FILE] {
        if !matches!(bundle.kind(file), Ok(None)) {
            v.warn(
                file,
                "present, but the log ends before report_written: not checked",
            );
        }
    }
    if let Ok(names) = bundle.list(SIGNATURES_DIR) {
        for (name, kind) in names {
            let file = format!("{SIGNATURES_DIR}/{name}");
            if kind != Kind::File {
                v.fail(&file, not_a_file(kind).to_string());
            } else if file != SIGNERS_CA_FILE {
                v.warn(
                    &file,
                    "present, but the log ends before report_written: not checked",
                );
            }
        }
    }
}

/// Whether the log records that the run finished: its last entry is `report_written`.
pub(super) fn finished(entries: &[AuditEntry]) -> bool {
    entries.last().is_some_and(|e| {
        matches!(
            parse_event(e),
            Ok(Parsed::Record(Record::ReportWritten { .. }))
        )
    })
}

/// Whether any engine entry follows `ceremony_started`: the room had started the first step, so the
/// personal cards (registered before it) are all in the log.
pub(super) fn steps_began(entries: &[AuditEntry]) -> bool {
    entries
        .iter()
        .any(|e| matches!(parse_event(e), Ok(Parsed::Engine(_))))
}

/// Why an entry of this kind cannot be evidence.
pub(super) fn not_a_file(kind: Kind) -> ReadError {
    match kind {
        Kind::Other("a symbolic link") => ReadError::Symlink,
        Kind::Other(what) => ReadError::NotRegular(what),
        Kind::Folder | Kind::File => ReadError::NotRegular("a folder"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::log::AuditLog;

    #[test]
    fn a_torn_line_is_a_prefix_and_a_whole_entry_is_not_torn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::create(&path).unwrap();
        let entry = log
            .append(
                "2026-01-01T00:00:00Z".into(),
                None,
                vec![],
                serde_json::json!({"kind": "a"}),
            )
            .unwrap();
        let line = entry.to_line().into_bytes();
        assert!(whole_entry_without_newline(&line));
        let mut replaced = line.clone();
        replaced.push(0x0b);
        assert!(whole_entry_without_newline(&replaced));
        for cut in [1, line.len() / 2, line.len() - 1] {
            assert!(!whole_entry_without_newline(&line[..cut]), "{cut}");
        }
    }
}
