//! Issue 12, key destruction: the `key_destroyed` record, and what `keyrite verify` demands of it.
//! The record names the key by its script name, CKA_LABEL, CKA_ID and key hash, lists the objects
//! this run destroyed, and lists what the read-back found afterwards (which must be nothing). The
//! replay checks the hash is the one the same bundle found and pinned (`existing_key_found`).

use super::events::Record;
use super::log::EntryRef;
use crate::hsm::TokenObject;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyDestroyedRecord {
    /// The script's name for the key (`[[keys]] label`).
    pub key: String,
    /// CKA_LABEL and CKA_ID (hex) of the key on the token.
    pub label: String,
    pub id: String,
    /// SHA-256 of the destroyed key's SubjectPublicKeyInfo, as found before the destruction.
    pub key_hash: String,
    /// The token's label and serial.
    pub token_label: String,
    pub token_serial: String,
    /// The objects this run destroyed (class, label, CKA_ID).
    pub destroyed: Vec<TokenObject>,
    /// The read-back after the destruction: every object still carrying the key's CKA_LABEL or
    /// CKA_ID. Must be empty.
    pub remaining: Vec<TokenObject>,
    /// `keyrite resume` finished a destruction an interruption cut off; objects destroyed before
    /// the interruption are not in `destroyed`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub finished_after_interruption: bool,
}

/// The replay's side: every `key_destroyed` names a key this bundle found and pinned by hash, with
/// that hash, and nothing of it remained.
#[derive(Default)]
pub(super) struct DestroyCheck {
    /// Key name → hash of its latest `existing_key_found`.
    found: BTreeMap<String, String>,
}

impl DestroyCheck {
    pub(super) fn record(&mut self, entry: EntryRef, record: &Record) -> Result<(), String> {
        let seq = entry.seq;
        match record {
            Record::ExistingKeyFound(k) => {
                self.found.insert(k.key.clone(), k.key_hash.clone());
            }
            Record::KeyDestroyed(d) => {
                match self.found.get(&d.key) {
                    Some(h) if *h == d.key_hash => {}
                    Some(h) => {
                        return Err(format!(
                            "log entry {seq}: key {} was destroyed with key hash {}, but the \
                             bundle found it with {h}",
                            d.key, d.key_hash
                        ))
                    }
                    None => {
                        return Err(format!(
                            "log entry {seq}: key {} was destroyed without being found and pinned \
                             by its hash first (existing_key_found)",
                            d.key
                        ))
                    }
                }
                if !d.remaining.is_empty() {
                    return Err(format!(
                        "log entry {seq}: key {} is recorded destroyed, but {} of its objects \
                         remained on the token",
                        d.key,
                        d.remaining.len()
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }
}
