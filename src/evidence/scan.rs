//! One pass over `audit.jsonl` for `keyrite verify`: every line is read, chain-checked and parsed
//! once, then handed to the replay, the report rebuild and the signature checks' collector. Nothing
//! holds the log: memory is one line, the report being rebuilt, the engine, and the few entries the
//! signature checks need (none in a ceremony without personal cards).

use super::events::Record;
use super::log::{empty_log, AuditEntry, ChainError, ChainReader};
use super::replay::Replay;
use super::report::{parse_event, Parsed, Report, ReportBuilder};
use crate::engine::Event;
use crate::script::Script;
use std::io::BufRead;

/// What one pass over the log found. The last entry is kept apart: it should be `report_written`,
/// which the report does not cover.
pub struct Scanned {
    /// Number of entries, all of them chain-checked.
    pub entries: usize,
    /// `script_sha256` of the first entry when it is `ceremony_started`.
    pub script_sha256: Option<String>,
    /// The last entry and its parsed event.
    pub last: AuditEntry,
    pub last_parsed: Result<Parsed, String>,
    /// The report rebuilt from every entry but the last.
    pub report: Result<Report, String>,
    /// The replay under the script, when a script was given.
    pub replay: Option<Result<usize, String>>,
    /// The entries the signature checks read, in log order (see [`SignatureEntries`]).
    pub signature_entries: Vec<AuditEntry>,
}

/// Read and check the whole log once. A broken chain is the only error: everything else is a finding
/// inside [`Scanned`].
pub fn scan(input: impl BufRead, script: Option<&Script>) -> Result<Scanned, ChainError> {
    let mut chain = ChainReader::new(input);
    let mut replay = script.map(Replay::new);
    let mut signatures = SignatureEntries::new(script);
    let mut report: Option<Result<ReportBuilder, String>> = None;
    let mut script_sha256 = None;
    // The report covers every entry but the last, so each entry waits for the next before it is
    // applied: one entry held.
    let mut held: Option<(AuditEntry, Result<Parsed, String>)> = None;
    // The last entry applied: the report's head.
    let mut head: Option<AuditEntry> = None;
    for entry in chain.by_ref() {
        let entry = entry?;
        let parsed = parse_event(&entry);
        if let Some(replay) = replay.as_mut() {
            match &parsed {
                Ok(p) => replay.entry(&entry, p),
                Err(e) => replay.unparsable(e.clone()),
            }
        }
        signatures.entry(&entry, parsed.as_ref().ok());
        if entry.seq == 0 {
            if let Ok(Parsed::Record(Record::CeremonyStarted {
                script_sha256: s, ..
            })) = &parsed
            {
                script_sha256 = Some(s.clone());
            }
        }
        if let Some((prev, prev_parsed)) = held.replace((entry, parsed)) {
            report = Some(match report {
                None => prev_parsed.and_then(|p| ReportBuilder::start(&prev, p)),
                Some(Ok(mut builder)) => prev_parsed
                    .and_then(|p| builder.apply(&prev, p))
                    .map(|()| builder),
                Some(Err(e)) => Err(e),
            });
            head = Some(prev);
        }
    }
    let Some((last, last_parsed)) = held else {
        return Err(empty_log());
    };
    let report = match (report, &head) {
        (Some(Ok(builder)), Some(head)) => Ok(builder.finish(head)),
        (Some(Err(e)), _) => Err(e),
        _ => Err("the log is empty".to_string()),
    };
    Ok(Scanned {
        entries: chain.lines(),
        script_sha256,
        report,
        last,
        last_parsed,
        replay: replay.map(Replay::finish),
        signature_entries: signatures.kept,
    })
}

/// The report of a log that has no `report_written` yet (the end of a run): every entry applied,
/// one line at a time.
pub fn report_of(input: impl BufRead) -> Result<Report, String> {
    let mut builder: Option<ReportBuilder> = None;
    let mut head: Option<AuditEntry> = None;
    for entry in ChainReader::new(input) {
        let entry = entry.map_err(|e| {
            format!(
                "the audit log failed its own check at line {}: {}",
                e.line, e.what
            )
        })?;
        let parsed = parse_event(&entry)?;
        builder = Some(match builder {
            None => ReportBuilder::start(&entry, parsed)?,
            Some(mut b) => {
                b.apply(&entry, parsed)?;
                b
            }
        });
        head = Some(entry);
    }
    match (builder, head) {
        (Some(b), Some(head)) => Ok(b.finish(&head)),
        _ => Err("the audit log failed its own check at line 0: the log is empty".into()),
    }
}

/// Collects, in order, the entries the signature checks read (verify/signatures.rs): the card,
/// signers-CA and (un)signed-confirmation records, the engine event right after each unsigned
/// confirmation (is it the abort?), and the `confirmed` entries, which a signed confirmation names
/// and whose signatures are demanded. The `confirmed` entries are kept only when personal cards are
/// in play (the script gives one, or the log recorded one): without cards there is nothing to sign.
struct SignatureEntries {
    cards: bool,
    after_unsigned: bool,
    kept: Vec<AuditEntry>,
}

impl SignatureEntries {
    fn new(script: Option<&Script>) -> Self {
        SignatureEntries {
            cards: script.is_some_and(|s| s.participants.iter().any(|p| p.card.is_some())),
            after_unsigned: false,
            kept: Vec::new(),
        }
    }

    fn entry(&mut self, entry: &AuditEntry, parsed: Option<&Parsed>) {
        let keep = match parsed {
            Some(Parsed::Engine(event)) => {
                let next_to_unsigned = std::mem::take(&mut self.after_unsigned);
                next_to_unsigned || (self.cards && matches!(event, Event::Confirmed { .. }))
            }
            Some(Parsed::Record(record)) => match record {
                Record::ConfirmationUnsigned(_) => {
                    self.after_unsigned = true;
                    true
                }
                Record::PersonalCard(_) | Record::ConfirmationSigned(_) => {
                    self.cards = true;
                    true
                }
                Record::SignersCa { .. } => true,
                _ => false,
            },
            None => false,
        };
        if keep {
            self.kept.push(entry.clone());
        }
    }
}
