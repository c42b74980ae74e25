//! The hash-chained audit log, `audit.jsonl`: one JSON object per line. [`AuditLog::append`] fsyncs
//! before it returns; [`AuditLog::append_unsynced`] leaves the fsync to the next [`AuditLog::sync`] or
//! synced append, for entries that announce no action (the driver syncs before every action).
//!
//! `hash` = SHA-256 (lowercase hex) over the canonical encoding of the entry without its `hash` field.
//! Canonical encoding: JSON with object keys sorted bytewise, no insignificant whitespace, UTF-8;
//! numbers are integers only. `prev` is the previous entry's hash; the first entry's `prev` is 64 zeros.
//! Each line is itself written canonically, so a reader can demand byte-exact re-encoding.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

pub mod canonical;

pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub seq: u64,
    /// UTC, RFC 3339 with a `Z` suffix.
    pub time: String,
    pub step: Option<String>,
    pub actors: Vec<String>,
    /// An object with a `kind` field; see docs/evidence-format.md for the kinds.
    pub event: Value,
    pub prev: String,
    pub hash: String,
}

impl AuditEntry {
    pub fn kind(&self) -> &str {
        self.event.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    /// The hash this entry must carry, computed over everything but `hash`.
    pub fn compute_hash(&self) -> String {
        self.encode().hash()
    }

    /// The exact line written to the file (without the newline).
    pub fn to_line(&self) -> String {
        String::from_utf8_lossy(&self.encode().line(&self.hash)).into_owned()
    }

    /// The canonical encoding, made once for both the line and the hash.
    fn encode(&self) -> Encoded {
        Encoded::new(self)
    }

    pub fn view(&self) -> EntryRef<'_> {
        EntryRef {
            seq: self.seq,
            time: &self.time,
            step: self.step.as_deref(),
            hash: &self.hash,
            kind: self.kind(),
        }
    }
}

/// What the checks that follow the chain (replay, report, signatures) read of an entry beside its
/// parsed event, borrowed from an [`AuditEntry`] or straight from a scanned line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    pub seq: u64,
    pub time: &'a str,
    pub step: Option<&'a str>,
    pub hash: &'a str,
    /// The event's `kind` ("" when it has none).
    pub kind: &'a str,
}

impl<'a> From<&'a AuditEntry> for EntryRef<'a> {
    fn from(entry: &'a AuditEntry) -> Self {
        entry.view()
    }
}

/// A line that passed the chain check: scanned in place (the usual case), or parsed into an entry
/// by the exact path.
#[derive(Debug)]
pub enum Checked<'a> {
    Scanned(canonical::Line<'a>),
    Parsed(Box<AuditEntry>),
}

impl Checked<'_> {
    pub fn view(&self) -> EntryRef<'_> {
        match self {
            Checked::Scanned(line) => EntryRef {
                seq: line.seq,
                time: line.time,
                step: line.step,
                hash: line.hash,
                kind: line.kind,
            },
            Checked::Parsed(entry) => entry.view(),
        }
    }

    /// The entry as an [`AuditEntry`] (its event as a `Value`).
    pub fn into_entry(self) -> Result<AuditEntry, serde_json::Error> {
        match self {
            Checked::Scanned(line) => serde_json::from_str(line.line),
            Checked::Parsed(entry) => Ok(*entry),
        }
    }
}

/// An entry's canonical encoding in two parts around the `hash` member, which sorts between `event`
/// and `prev`: `{"actors":…,"event":…,` and `"prev":…,"seq":…,"step":…,"time":…}`. The hash covers the
/// two parts joined; the line puts `"hash":"…",` between them. One serialisation of the event serves
/// both, where encoding the entry twice through a `Value` used to copy it each time.
struct Encoded {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Encoded {
    fn new(entry: &AuditEntry) -> Self {
        fn put(buf: &mut Vec<u8>, key: &str, value: &impl Serialize) {
            buf.extend_from_slice(key.as_bytes());
            // Serialising strings, integers, null and a Value into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *buf, value);
        }
        let mut head = Vec::with_capacity(256);
        put(&mut head, "{\"actors\":", &entry.actors);
        put(&mut head, ",\"event\":", &entry.event);
        head.push(b',');
        let mut tail = Vec::with_capacity(160);
        put(&mut tail, "\"prev\":", &entry.prev);
        put(&mut tail, ",\"seq\":", &entry.seq);
        put(&mut tail, ",\"step\":", &entry.step);
        put(&mut tail, ",\"time\":", &entry.time);
        tail.push(b'}');
        Encoded { head, tail }
    }

    fn hash(&self) -> String {
        let mut sha = Sha256::new();
        sha.update(&self.head);
        sha.update(&self.tail);
        hex::encode(sha.finalize())
    }

    fn line(&self, hash: &str) -> Vec<u8> {
        let mut line = Vec::with_capacity(self.head.len() + self.tail.len() + hash.len() + 12);
        line.extend_from_slice(&self.head);
        line.extend_from_slice(b"\"hash\":");
        let _ = serde_json::to_writer(&mut line, hash);
        line.push(b',');
        line.extend_from_slice(&self.tail);
        line
    }
}

/// Canonical JSON: serde_json's `Value` keeps object keys in a BTreeMap (no `preserve_order`
/// feature), so compact serialisation already sorts keys bytewise.
pub fn canonical_json(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// Appends entries to a new audit log. The file is created exclusively: an existing log is never
/// overwritten or continued by accident.
#[derive(Debug)]
pub struct AuditLog {
    file: File,
    path: PathBuf,
    next_seq: u64,
    head: String,
    /// Entries written since the last fsync.
    unsynced: bool,
}

impl AuditLog {
    pub fn create(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        super::bundle::sync_parent(path)?;
        Ok(AuditLog {
            file,
            path: path.to_path_buf(),
            next_seq: 0,
            head: GENESIS_PREV.to_string(),
            unsynced: false,
        })
    }

    /// Go on appending to an existing log whose chain was checked and whose last entry is `last`
    /// (`keyrite abort` and `keyrite resume`).
    pub fn continue_after(path: &Path, last: &AuditEntry) -> std::io::Result<Self> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(AuditLog {
            file,
            path: path.to_path_buf(),
            next_seq: last.seq + 1,
            head: last.hash.clone(),
            unsynced: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hash of the last entry written (the log head).
    pub fn head(&self) -> &str {
        &self.head
    }

    /// Sequence number of the last entry written, if any.
    pub fn head_seq(&self) -> Option<u64> {
        self.next_seq.checked_sub(1)
    }

    /// Append one entry and fsync before returning, so the entry (and every one before it) survives a
    /// crash that follows it.
    pub fn append(
        &mut self,
        time: String,
        step: Option<String>,
        actors: Vec<String>,
        event: Value,
    ) -> std::io::Result<AuditEntry> {
        let entry = self.append_unsynced(time, step, actors, event)?;
        self.sync()?;
        Ok(entry)
    }

    /// fsync the entries written since the last fsync, if any: call before any action they announce.
    pub fn sync(&mut self) -> std::io::Result<()> {
        if self.unsynced {
            self.file.sync_all()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Append one entry without waiting for the disk: for entries that announce no action by
    /// themselves (a step started, a confirmation). The next [`Self::sync`] or synced append makes it
    /// durable, as a crash before that can only lose entries nothing acted on.
    pub fn append_unsynced(
        &mut self,
        time: String,
        step: Option<String>,
        actors: Vec<String>,
        event: Value,
    ) -> std::io::Result<AuditEntry> {
        let mut entry = AuditEntry {
            seq: self.next_seq,
            time,
            step,
            actors,
            event,
            prev: self.head.clone(),
            hash: String::new(),
        };
        let encoded = entry.encode();
        entry.hash = encoded.hash();
        let mut line = encoded.line(&entry.hash);
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.unsynced = true;
        self.next_seq += 1;
        self.head = entry.hash.clone();
        Ok(entry)
    }
}

/// Records that report what was already done and announce no action of their own: the driver
/// writes them without an fsync, and the next synced entry (an intent, an authorisation, a card
/// record, `report_written`) or the sync before the next action makes them durable. A crash that
/// loses one leaves its intent on disk, which is how resume already finds an interrupted action.
/// Everything else (intents, quorum and card records that precede writes to cards, the start,
/// the end) is fsynced as written.
pub const RESULT_KINDS: &[&str] = &[
    "preflight",
    "hsm_activated",
    "hsm_deactivated",
    "key_generated",
    "key_uri",
    "fingerprint_presented",
    "certificate_signed",
    "certificate_stored",
    "certificate_presented",
    "ca_certificate_signed",
    "crl_signed",
    "artifact_written",
    "test_message_signed",
    "existing_key_found",
    "personal_card",
    "confirmation_signed",
];

/// A break in the chain, located by line number (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainError {
    pub line: usize,
    pub what: String,
}

/// Read `audit.jsonl` and check every link: canonical bytes, sequence, `prev`, and `hash`.
pub fn read_chain(bytes: &[u8]) -> Result<Vec<AuditEntry>, ChainError> {
    let entries = ChainReader::new(bytes).collect::<Result<Vec<_>, _>>()?;
    if entries.is_empty() {
        return Err(empty_log());
    }
    Ok(entries)
}

pub fn empty_log() -> ChainError {
    ChainError {
        line: 0,
        what: "the log is empty".into(),
    }
}

/// The link check of one line after another: canonical bytes, sequence, `prev` and `hash`. It
/// holds the previous hash and the line count, never the log.
pub struct ChainCheck {
    prev: String,
    read: usize,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck {
            prev: GENESIS_PREV.to_string(),
            read: 0,
        }
    }
}

impl ChainCheck {
    /// Lines checked so far (the failed one included).
    pub fn lines(&self) -> usize {
        self.read
    }

    /// Check `bytes`, the next line without its newline, and return its entry.
    pub fn next(&mut self, bytes: &[u8]) -> Result<AuditEntry, ChainError> {
        let line = self.read + 1;
        self.check(bytes)?.into_entry().map_err(|e| ChainError {
            line,
            what: format!("not a valid log entry: {e}"),
        })
    }

    /// [`Self::next`] without building the entry: a line in the scanned subset of canonical lines
    /// (log/canonical.rs) is checked in place, with the same findings; any other line takes the
    /// exact path (parse, re-encode, compare), which alone decides what the scan does not accept.
    pub fn check<'a>(&mut self, bytes: &'a [u8]) -> Result<Checked<'a>, ChainError> {
        self.read += 1;
        let Ok(line) = std::str::from_utf8(bytes) else {
            return Err(self.error("not UTF-8".into()));
        };
        match canonical::scan(line) {
            Some(scanned) => self.scanned(scanned).map(Checked::Scanned),
            None => self.exact(line).map(|e| Checked::Parsed(Box::new(e))),
        }
    }

    fn error(&self, what: String) -> ChainError {
        ChainError {
            line: self.read,
            what,
        }
    }

    /// The link checks of a line the scan proved canonical, in the exact path's order.
    fn scanned<'a>(
        &mut self,
        line: canonical::Line<'a>,
    ) -> Result<canonical::Line<'a>, ChainError> {
        let expected = self.read as u64 - 1;
        if line.seq != expected {
            return Err(self.error(format!("seq is {}, expected {expected}", line.seq)));
        }
        if line.prev != self.prev {
            return Err(self.error("prev does not match the previous entry's hash".into()));
        }
        let (head, tail) = line.unhashed();
        let mut sha = Sha256::new();
        sha.update(head);
        sha.update(tail);
        let mut hex = [0u8; 64];
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(sha.finalize(), &mut hex);
        if hex[..] != *line.hash.as_bytes() {
            return Err(self.error("hash does not match the entry's content".into()));
        }
        self.prev.clear();
        self.prev.push_str(line.hash);
        Ok(line)
    }

    /// Parse, re-encode and compare: decides every line the scan leaves to it.
    fn exact(&mut self, line: &str) -> Result<AuditEntry, ChainError> {
        let entry: AuditEntry = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(e) => return Err(self.error(format!("not a valid log entry: {e}"))),
        };
        let encoded = entry.encode();
        if encoded.line(&entry.hash) != line.as_bytes() {
            return Err(
                self.error("the line is not in canonical form (edited after writing?)".into())
            );
        }
        let expected = self.read as u64 - 1;
        if entry.seq != expected {
            return Err(self.error(format!("seq is {}, expected {expected}", entry.seq)));
        }
        if entry.prev != self.prev {
            return Err(self.error("prev does not match the previous entry's hash".into()));
        }
        if encoded.hash() != entry.hash {
            return Err(self.error("hash does not match the entry's content".into()));
        }
        self.prev.clone_from(&entry.hash);
        Ok(entry)
    }
}

/// The checked entries of a log, one line at a time: [`read_chain`] without holding the log.
/// It holds one line and the previous hash; after the first error it yields nothing more.
pub struct ChainReader<R> {
    input: R,
    line: Vec<u8>,
    chain: ChainCheck,
    failed: bool,
}

impl<R: BufRead> ChainReader<R> {
    pub fn new(input: R) -> Self {
        ChainReader {
            input,
            line: Vec::with_capacity(1024),
            chain: ChainCheck::default(),
            failed: false,
        }
    }

    /// Lines read so far.
    pub fn lines(&self) -> usize {
        self.chain.lines()
    }

    fn next_entry(&mut self) -> Option<Result<AuditEntry, ChainError>> {
        self.line.clear();
        match self.input.read_until(b'\n', &mut self.line) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                return Some(Err(ChainError {
                    line: self.chain.lines() + 1,
                    what: format!("cannot be read ({e})"),
                }))
            }
        }
        // Split on LF only: a CR left in a line fails the canonical-form check.
        let Some(bytes) = self.line.strip_suffix(b"\n") else {
            self.chain.read += 1;
            return Some(Err(ChainError {
                line: self.chain.read,
                what: "the last line is not terminated by a newline".into(),
            }));
        };
        Some(self.chain.next(bytes))
    }
}

impl<R: BufRead> Iterator for ChainReader<R> {
    type Item = Result<AuditEntry, ChainError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let next = self.next_entry();
        self.failed = matches!(next, Some(Err(_)));
        next
    }
}

#[cfg(test)]
mod tests;
