//! The hash-chained audit log, `audit.jsonl`: one JSON object per line, each fsynced as written.
//!
//! `hash` = SHA-256 (lowercase hex) over the canonical encoding of the entry without its `hash` field.
//! Canonical encoding: JSON with object keys sorted bytewise, no insignificant whitespace, UTF-8;
//! numbers are integers only. `prev` is the previous entry's hash; the first entry's `prev` is 64 zeros.
//! Each line is itself written canonically, so a reader can demand byte-exact re-encoding.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::Write;
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
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(map) = &mut value {
            map.remove("hash");
        }
        hex::encode(Sha256::digest(canonical_json(&value)))
    }

    /// The exact line written to the file (without the newline).
    pub fn to_line(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        String::from_utf8_lossy(&canonical_json(&value)).into_owned()
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

    /// Append one entry and fsync before returning, so the entry survives a crash that follows it.
    pub fn append(
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
        entry.hash = entry.compute_hash();
        let mut line = entry.to_line();
        line.push('\n');
        self.file.write_all(line.as_bytes())?;
        self.file.sync_all()?;
        self.next_seq += 1;
        self.head = entry.hash.clone();
        Ok(entry)
    }
}

/// A break in the chain, located by line number (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainError {
    pub line: usize,
    pub what: String,
}

/// Read `audit.jsonl` and check every link: canonical bytes, sequence, `prev`, and `hash`.
pub fn read_chain(bytes: &[u8]) -> Result<Vec<AuditEntry>, ChainError> {
    let text = std::str::from_utf8(bytes).map_err(|e| ChainError {
        line: 0,
        what: format!("not UTF-8 ({e})"),
    })?;
    if !text.is_empty() && !text.ends_with('\n') {
        let line = text.lines().count();
        return Err(ChainError {
            line,
            what: "the last line is not terminated by a newline".into(),
        });
    }
    let mut entries: Vec<AuditEntry> = Vec::new();
    // Split on LF only: a CR left in a line fails the canonical-form check below.
    for (i, line) in text.split_terminator('\n').enumerate() {
        let n = i + 1;
        let entry: AuditEntry = serde_json::from_str(line).map_err(|e| ChainError {
            line: n,
            what: format!("not a valid log entry: {e}"),
        })?;
        if entry.to_line() != line {
            return Err(ChainError {
                line: n,
                what: "the line is not in canonical form (edited after writing?)".into(),
            });
        }
        let expected_prev = entries.last().map_or(GENESIS_PREV, |e| e.hash.as_str());
        if entry.seq != i as u64 {
            return Err(ChainError {
                line: n,
                what: format!("seq is {}, expected {i}", entry.seq),
            });
        }
        if entry.prev != expected_prev {
            return Err(ChainError {
                line: n,
                what: "prev does not match the previous entry's hash".into(),
            });
        }
        if entry.compute_hash() != entry.hash {
            return Err(ChainError {
                line: n,
                what: "hash does not match the entry's content".into(),
            });
        }
        entries.push(entry);
    }
    if entries.is_empty() {
        return Err(ChainError {
            line: 0,
            what: "the log is empty".into(),
        });
    }
    Ok(entries)
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
    fn an_existing_log_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        assert!(AuditLog::create(&path).is_err());
    }
}
