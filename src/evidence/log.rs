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
        self.read += 1;
        let n = self.read;
        let fail = |what: String| Err(ChainError { line: n, what });
        let Ok(line) = std::str::from_utf8(bytes) else {
            return fail("not UTF-8".into());
        };
        let entry: AuditEntry = match serde_json::from_str(line) {
            Ok(e) => e,
            Err(e) => return fail(format!("not a valid log entry: {e}")),
        };
        let encoded = entry.encode();
        if encoded.line(&entry.hash) != bytes {
            return fail("the line is not in canonical form (edited after writing?)".into());
        }
        if entry.seq != n as u64 - 1 {
            return fail(format!("seq is {}, expected {}", entry.seq, n - 1));
        }
        if entry.prev != self.prev {
            return fail("prev does not match the previous entry's hash".into());
        }
        if encoded.hash() != entry.hash {
            return fail("hash does not match the entry's content".into());
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
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(dir: &Path) -> PathBuf {
        let path = dir.join("audit.jsonl");
        let mut log = AuditLog::create(&path).unwrap();
        log.append(
            "2026-01-01T00:00:00Z".into(),
            None,
            vec![],
            json!({"kind": "a", "z": 1, "b": [2]}),
        )
        .unwrap();
        log.append(
            "2026-01-01T00:00:01Z".into(),
            Some("s".into()),
            vec!["Ann".into()],
            json!({"kind": "b"}),
        )
        .unwrap();
        path
    }

    #[test]
    fn chain_verifies_and_keys_are_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(sample(dir.path())).unwrap();
        let entries = read_chain(&bytes).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].prev, entries[0].hash);
        let first = String::from_utf8(bytes).unwrap();
        assert!(
            first.starts_with(r#"{"actors":[],"event":{"b":[2],"kind":"a","z":1},"hash":"#),
            "{first}"
        );
    }

    #[test]
    fn every_single_byte_change_breaks_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(sample(dir.path())).unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                read_chain(&bad).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn the_two_part_encoding_is_the_canonical_json_of_the_whole_entry() {
        let entry = AuditEntry {
            seq: 7,
            time: "2026-01-01T00:00:00Z".into(),
            step: None,
            actors: vec!["Zoë \"Z\" Ångström".into(), "a\\b\n".into()],
            event: json!({"kind": "k", "b": {"z": [1, "\u{1}"], "a": null}, "a": "é"}),
            prev: GENESIS_PREV.into(),
            hash: "x".into(),
        };
        let whole = serde_json::to_value(&entry).unwrap();
        assert_eq!(entry.to_line().as_bytes(), canonical_json(&whole));
        let mut unhashed = whole;
        unhashed.as_object_mut().unwrap().remove("hash");
        assert_eq!(
            entry.compute_hash(),
            hex::encode(Sha256::digest(canonical_json(&unhashed)))
        );
    }

    #[test]
    fn unsynced_entries_chain_like_synced_ones_and_stream_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut log = AuditLog::create(&path).unwrap();
        let t = || "2026-01-01T00:00:00Z".to_string();
        let a = log
            .append_unsynced(t(), None, vec![], json!({"kind": "a"}))
            .unwrap();
        let b = log.append(t(), None, vec![], json!({"kind": "b"})).unwrap();
        let c = log
            .append_unsynced(t(), Some("s".into()), vec![], json!({"kind": "c"}))
            .unwrap();
        log.sync().unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let streamed = ChainReader::new(&bytes[..])
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        assert_eq!(streamed, vec![a, b, c]);
        assert_eq!(read_chain(&bytes).unwrap(), streamed);
    }

    #[test]
    fn the_reader_names_the_broken_line_and_stops_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = std::fs::read(sample(dir.path())).unwrap();
        bytes.pop(); // the last newline
        let mut reader = ChainReader::new(&bytes[..]);
        assert!(reader.next().unwrap().is_ok());
        let err = reader.next().unwrap().unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.what.contains("not terminated"), "{}", err.what);
        assert!(reader.next().is_none());
        assert_eq!(read_chain(b"").unwrap_err(), empty_log());
    }

    #[test]
    fn an_existing_log_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        assert!(AuditLog::create(&path).is_err());
    }
}
