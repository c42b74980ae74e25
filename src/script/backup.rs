//! Script tables for key backup and restore (issue 12): `[backup]` says which key a root ceremony
//! backs up and which custodians hold the key-encryption key (KEK); `[restore]` names the wrapped
//! blob, what its backup report pinned, and the cards that rebuild the KEK. Kept apart from
//! `model.rs` so the backup family grows in one visible place.

use super::quorum::{QuorumCard, QuorumSet};
use serde::{Deserialize, Serialize};

/// `[backup]`: the key named here is generated wrappable only by a trusted key
/// (CKA_EXTRACTABLE=true with CKA_WRAP_WITH_TRUSTED=true) and a `backup_key` step wraps it under a
/// KEK split M-of-N to `cards`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// The `[[keys]]` label of the key to back up.
    pub key: String,
    /// M: KEK shares needed to restore.
    pub threshold: u16,
    /// The custodians' cards that receive one KEK share each (data objects labelled
    /// `keyrite-share:<ceremony id>/kek`, so a card may also hold an activation share).
    pub cards: Vec<QuorumCard>,
}

impl BackupConfig {
    pub fn set(&self) -> QuorumSet {
        QuorumSet {
            threshold: self.threshold,
            cards: self.cards.clone(),
        }
    }
}

/// The KEK split's name: the backup ceremony's id with `/kek` (its cards' object labels).
pub fn kek_split_id(backup_ceremony_id: &str) -> String {
    format!("{backup_ceremony_id}/kek")
}

/// `[restore]`: unwrap a backup blob into this script's token as the `[[keys]]` entry `key`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RestoreConfig {
    /// The `[[keys]]` label the restored key gets on the target token.
    pub key: String,
    /// The id of the ceremony that made the backup (its KEK split is `<id>/kek`).
    pub backup_ceremony: String,
    /// The wrapped blob (from the backup bundle's artifacts/), relative to the script.
    pub blob: String,
    /// SHA-256 of the blob, from the backup report (`backups[].blob_sha256`). A rehearsal takes it
    /// from its --env folder's record of the backup instead.
    pub blob_sha256: String,
    /// The key hash from the backup report. A rehearsal takes it from its --env folder's record.
    pub key_hash: String,
    /// The key's original certificate (PEM), relative to the script: its public key becomes the
    /// restored public key object, and the test signature must verify under it.
    pub certificate: String,
    /// SHA-256 of the KEK split's commitments, from the backup report. A rehearsal takes it from
    /// its --env folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commitments_sha256: Option<String>,
    /// M of the KEK split.
    pub threshold: u16,
    /// The custodians' cards holding the KEK shares.
    pub cards: Vec<QuorumCard>,
}
