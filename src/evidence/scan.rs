//! The report at the end of a run, built in one pass over `audit.jsonl` that holds one line at a
//! time (`keyrite verify` makes its own pass: src/evidence/verify/pass.rs).

use super::log::{AuditEntry, ChainReader};
use super::report::{parse_event, Report, ReportBuilder};
use std::io::BufRead;

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
