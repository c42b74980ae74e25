//! What rehearsed ceremonies record in their folder's rehearsal.toml for later rehearsals on the same
//! --env: the splits (their commitments and PIN-change stage), generated keys, signed CA
//! certificates and backups, each a script's stand-in for values a throw-away ceremony cannot know.

use super::{running, Durability, RehearsalEnv, RehearsalFile};
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// The newest record of one kind (`list`) that `pick` accepts, in the running rehearsal's folder
/// (none outside a rehearsal).
fn recorded<T: Clone>(
    list: impl FnOnce(&RehearsalFile) -> &Vec<T>,
    pick: impl Fn(&T) -> bool,
) -> Result<Option<T>> {
    let Some(dir) = running() else {
        return Ok(None);
    };
    let env = RehearsalEnv::open(&dir)?;
    Ok(list(&env.file).iter().rev().find(|r| pick(r)).cloned())
}

/// Change the running rehearsal folder's records with `edit` and save them (nothing outside a
/// rehearsal). The folder is re-read first: it is the record, not what this process loaded.
fn note(edit: impl FnOnce(&mut RehearsalFile), durability: Durability) -> Result<()> {
    let Some(dir) = running() else {
        return Ok(());
    };
    let mut env = RehearsalEnv::open(&dir)?;
    edit(&mut env.file);
    env.save(durability)
}

/// A backup a rehearsed ceremony made: a rehearsed restore takes the blob and key hashes from here
/// where its script has none (the script cannot know a throw-away key's hashes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RehearsalBackup {
    pub ceremony_id: String,
    pub key: String,
    pub key_hash: String,
    pub blob_sha256: String,
}

/// The newest backup made by ceremony `ceremony_id` in the running rehearsal's folder.
pub fn recorded_backup(ceremony_id: &str) -> Result<Option<RehearsalBackup>> {
    recorded(|f| &f.backups, |b| b.ceremony_id == ceremony_id)
}

/// Record a backup made in the running rehearsal's folder (nothing outside a rehearsal).
pub fn note_backup(backup: RehearsalBackup) -> Result<()> {
    note(|f| f.backups.push(backup), Durability::AtExit)
}

/// A CA certificate a rehearsed ceremony signed, by the hash of the key it certifies: a later
/// rehearsal that issues with that key takes it as the issuer certificate, as a `run` reads the
/// script's `issuer_certificate` file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RehearsalCertificate {
    pub ceremony_id: String,
    pub key_hash: String,
    pub pem: String,
}

/// The newest CA certificate for the key with `key_hash` signed in the running rehearsal's folder.
pub fn recorded_certificate(key_hash: &str) -> Result<Option<RehearsalCertificate>> {
    recorded(|f| &f.certificates, |c| c.key_hash == key_hash)
}

/// Record a CA certificate signed in the running rehearsal's folder (nothing outside a rehearsal).
pub fn note_certificate(cert: RehearsalCertificate) -> Result<()> {
    note(|f| f.certificates.push(cert), Durability::AtExit)
}

/// A key a rehearsed ceremony generated on a token of this folder. A later rehearsal that uses it as
/// an existing key checks it against this hash, as a `run` checks against the script's `key_hash`
/// (the script cannot know a throw-away key's hash).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RehearsalKey {
    pub ceremony_id: String,
    pub label: String,
    pub key_hash: String,
}

/// The newest record of a key labelled `label` generated in the running rehearsal's folder.
pub fn recorded_key(label: &str) -> Result<Option<RehearsalKey>> {
    recorded(|f| &f.keys, |k| k.label == label)
}

/// Record a key generated in the running rehearsal's folder (nothing outside a rehearsal).
pub fn note_key(key: RehearsalKey) -> Result<()> {
    let edit = |f: &mut RehearsalFile| {
        f.keys.retain(|k| k.label != key.label);
        f.keys.push(key);
    };
    note(edit, Durability::AtExit)
}

/// The rehearsal folder's record of one quorum split (or reshare). A rehearsed activation, health
/// check, reshare or retirement takes the split's commitments from here, as a `run` takes them from
/// the script's `quorum.commitments_sha256`; an interrupted split is finished from `stage`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RehearsalSplit {
    pub ceremony_id: String,
    pub commitments_sha256: String,
    /// As the log's `quorum_pins.stage`: "done" once both HSM PINs are the split's.
    pub stage: String,
    /// "old", "derived" or "old or derived", as in `quorum_pins`.
    pub so_pin: String,
    pub user_pin: String,
    /// A reshare replaced this split: its shares no longer activate anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
}

/// The newest record of a split made by `ceremony_id` in the running rehearsal's folder.
pub fn recorded_split(ceremony_id: &str) -> Result<Option<RehearsalSplit>> {
    recorded(|f| &f.splits, |s| s.ceremony_id == ceremony_id)
}

/// Record (or update, by commitments) a split in the running rehearsal's folder; with `replaces`,
/// mark that older split as replaced by this one. `durability`: [`Durability::Now`] for a stage that
/// announces a PIN change (on disk before the change), else a result.
pub fn note_split(
    split: &RehearsalSplit,
    replaces: Option<&str>,
    durability: Durability,
) -> Result<()> {
    let edit = |f: &mut RehearsalFile| {
        let splits = &mut f.splits;
        match splits
            .iter_mut()
            .find(|s| s.commitments_sha256 == split.commitments_sha256)
        {
            Some(s) => *s = split.clone(),
            None => splits.push(split.clone()),
        }
        if let Some(old) = replaces {
            for s in splits.iter_mut().filter(|s| s.commitments_sha256 == old) {
                s.replaced_by = Some(split.commitments_sha256.clone());
            }
        }
    };
    note(edit, durability)
}
