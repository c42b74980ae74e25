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
use crate::evidence::log::AuditEntry;
use crate::evidence::report::Parsed;
use crate::evidence::safe_read::{BundleDir, Kind, ReadError};

/// A torn line is a prefix of an entry; a whole canonical entry that only lacks its newline (or
/// has another byte in its place) was not torn by a crash.
pub(super) fn whole_entry_without_newline(tail: &[u8]) -> bool {
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
pub(super) fn only_the_script(bundle: &BundleDir) -> bool {
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

pub(super) fn not_started(v: &mut Verification, bundle: &BundleDir, why: &str) {
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

/// What the engine entries of a log showed, gathered as it streams past.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct EngineSeen {
    /// Any engine entry at all.
    pub any: bool,
    /// `ceremony_completed` or `ceremony_aborted`.
    pub ended: bool,
}

impl EngineSeen {
    pub fn entry(&mut self, parsed: Option<&Parsed>) {
        if let Some(Parsed::Engine(event)) = parsed {
            self.any = true;
            self.ended |= matches!(
                event,
                Event::CeremonyCompleted | Event::CeremonyAborted { .. }
            );
        }
    }
}

/// Where an intact log that lacks `report_written` stopped, as an INCOMPLETE check, and what to
/// run next. `last` is its last entry; `replay_ended` is the replay's "the log ends where …"
/// message, if it gave one.
pub(super) fn unfinished(
    v: &mut Verification,
    bundle: &BundleDir,
    last: &AuditEntry,
    engine: EngineSeen,
    replay_ended: Option<&str>,
) {
    let out = bundle.root().display();
    let resume = format!("finish it: keyrite resume {out}");
    let abort = format!("or close it on the record: keyrite abort {out} --reason \"…\"");
    let (what, next) = if !engine.any {
        (
            "not started: the run stopped before the ceremony's first step".to_string(),
            vec![
                format!("close it on the record: keyrite abort {out} --reason \"…\""),
                "or start the ceremony again with a new --out folder".into(),
            ],
        )
    } else if engine.ended {
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
