//! The pipelined pass against itself at every hand-over: whatever the batch size, and wherever a
//! batch ends relative to a break, a torn line or a read error, the findings are those of one
//! batch holding the whole log (the one-thread order), and they say what the one-thread pass said.

use super::*;
use crate::evidence::log::AuditLog;
use crate::evidence::safe_read::LOG_LINE_LIMIT;
use crate::evidence::verify::Check;
use serde_json::json;
use std::ops::Range;

const ENTRIES: usize = 7;
const NOT_A_CEREMONY: &str = "the first entry is not ceremony_started";

/// A log of [`ENTRIES`] entries, one of which takes the chain check's exact path (a `\u` escape).
fn log_bytes() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(LOG_FILE);
    let mut log = AuditLog::create(&path).unwrap();
    for i in 0..ENTRIES {
        let event = if i == 3 {
            json!({"kind": "odd", "text": "\u{1}"})
        } else {
            json!({"kind": "note", "n": i})
        };
        log.append(format!("2026-01-01T00:00:0{i}Z"), None, vec![], event)
            .unwrap();
    }
    std::fs::read(&path).unwrap()
}

/// The byte ranges of the log's lines, newlines included.
fn lines_of(bytes: &[u8]) -> Vec<Range<usize>> {
    let mut at = 0;
    let mut out = Vec::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        out.push(at..at + line.len());
        at += line.len();
    }
    out
}

/// Break line `k` (1-based) by changing its time: still canonical, so the hash check finds it.
fn broken_at(bytes: &[u8], k: usize) -> Vec<u8> {
    let line = lines_of(bytes)[k - 1].clone();
    let mut out = bytes.to_vec();
    let at = line.start + find(&bytes[line], b"2026-").unwrap();
    out[at + 3] = b'7';
    out
}

/// Insert a line over the line limit before line `k` (1-based; past the end: at the end).
fn too_long_at(bytes: &[u8], k: usize) -> Vec<u8> {
    let at = lines_of(bytes).get(k - 1).map_or(bytes.len(), |l| l.start);
    let mut out = bytes[..at].to_vec();
    out.resize(at + LOG_LINE_LIMIT as usize + 1, b'x');
    out.push(b'\n');
    out.extend_from_slice(&bytes[at..]);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What the pass says of `log`: its findings and, when it goes on, what it hands on.
type Said = (Vec<Check>, Option<(Option<usize>, String, u64, bool)>);

fn said(log: &[u8], batching: Batching) -> Said {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(LOG_FILE), log).unwrap();
    let bundle = BundleDir::open(dir.path()).unwrap();
    let mut v = Verification::default();
    let pass = read(&mut v, &bundle, batching)
        .map(|p| (p.torn, p.log_sha256, p.last.seq, p.report.is_ok()));
    (v.checks, pass)
}

/// Every hand-over we care about: each line (0 lines means 1), a few lines, by bytes, and the
/// whole log at once.
fn batchings(log: &[u8]) -> Vec<Batching> {
    let line = lines_of(log).first().map_or(1, |l| l.len());
    let mut out: Vec<Batching> = (0..=ENTRIES + 1)
        .map(|lines| Batching {
            lines,
            bytes: usize::MAX,
        })
        .collect();
    for bytes in [1, line, line + 1, 2 * line + 1] {
        out.push(Batching {
            lines: usize::MAX,
            bytes,
        });
    }
    out.push(Batching::default());
    out
}

/// The findings at every batching, checked equal to one batch of everything; returns those.
fn same_at_every_batching(log: &[u8]) -> Said {
    let whole = said(
        log,
        Batching {
            lines: usize::MAX,
            bytes: usize::MAX,
        },
    );
    for batching in batchings(log) {
        assert_eq!(said(log, batching), whole, "{batching:?}");
    }
    whole
}

fn only_finding(said: &Said) -> &Check {
    assert!(said.1.is_none(), "the pass went on");
    assert_eq!(said.0.len(), 1, "{:?}", said.0);
    &said.0[0]
}

#[test]
fn an_intact_log_of_many_batches_passes_with_its_whole_file_digest() {
    let log = log_bytes();
    let (checks, pass) = same_at_every_batching(&log);
    // script.toml's finding (from the first entry, read early) comes after the chain's.
    assert_eq!(checks.len(), 2, "{checks:?}");
    assert_eq!(checks[1].what, NOT_A_CEREMONY);
    assert!(checks[0].ok);
    assert!(
        checks[0]
            .what
            .starts_with(&format!("hash chain of {ENTRIES} entries intact")),
        "{checks:?}"
    );
    let (torn, sha, last, _) = pass.unwrap();
    assert_eq!(torn, None);
    assert_eq!(sha, hex::encode(Sha256::digest(&log)));
    assert_eq!(last, ENTRIES as u64 - 1);
}

#[test]
fn a_break_at_any_line_is_found_there_whatever_the_batch_around_it() {
    let log = log_bytes();
    for k in 1..=ENTRIES {
        let said = same_at_every_batching(&broken_at(&log, k));
        let check = only_finding(&said);
        assert!(!check.ok);
        assert_eq!(
            check.what,
            format!("hash chain broken at line {k}: hash does not match the entry's content")
        );
    }
}

#[test]
fn a_torn_last_line_follows_the_intact_entries_or_yields_to_a_break() {
    let log = log_bytes();
    let lines = lines_of(&log);
    for (keep, next) in lines.iter().enumerate().take(ENTRIES).skip(1) {
        // `keep` whole lines and half of the next.
        let cut = next.start + next.len() / 2;
        let (checks, pass) = same_at_every_batching(&log[..cut]);
        assert_eq!(checks.len(), 3, "{checks:?}");
        assert_eq!(checks[2].what, NOT_A_CEREMONY);
        let intact = format!("hash chain of {keep} entries intact");
        assert!(checks[0].what.starts_with(&intact), "{checks:?}");
        assert!(checks[1].incomplete);
        let torn = format!("line {} is cut short", keep + 1);
        assert!(checks[1].what.starts_with(&torn), "{checks:?}");
        let (torn, sha, last, _) = pass.unwrap();
        assert_eq!(torn, Some(cut - next.start));
        assert_eq!(sha, hex::encode(Sha256::digest(&log[..cut])));
        assert_eq!(last, keep as u64 - 1);
        // A break in the line just before the torn one is what the log says.
        let said = same_at_every_batching(&broken_at(&log[..cut], keep));
        assert_eq!(
            only_finding(&said).what,
            format!("hash chain broken at line {keep}: hash does not match the entry's content")
        );
    }
}

#[test]
fn a_whole_last_entry_without_its_newline_is_an_edit() {
    let log = log_bytes();
    let said = same_at_every_batching(&log[..log.len() - 1]);
    assert_eq!(
        only_finding(&said).what,
        format!(
            "line {ENTRIES}: a complete entry whose newline is missing or replaced: the file was \
             edited (keyrite writes each entry with its newline in one write)"
        )
    );
}

#[test]
fn a_read_error_wins_wherever_it_is_even_after_a_break() {
    let log = log_bytes();
    let message = |k: usize| {
        format!("line {k} is longer than {LOG_LINE_LIMIT} bytes, the limit for one log entry")
    };
    for k in 1..=ENTRIES + 1 {
        let said = same_at_every_batching(&too_long_at(&log, k));
        assert!(!only_finding(&said).ok);
        assert!(only_finding(&said).what.ends_with(&message(k)), "{said:?}");
    }
    // Found by the drain that reads on after a break (at line 2).
    let said = same_at_every_batching(&too_long_at(&broken_at(&log, 2), 5));
    assert!(only_finding(&said).what.ends_with(&message(5)), "{said:?}");
}

#[test]
fn an_empty_log_is_not_started() {
    let said = same_at_every_batching(b"");
    assert!(only_finding(&said).incomplete);
    assert!(only_finding(&said).what.contains("the log is empty"));
}
