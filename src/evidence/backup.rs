//! Issue 12: what a backup and a restore put on the record (log entries and report sections).
//! `verify/backup.rs` checks them offline.

use super::quorum::SplitRecord;
use crate::hsm::KeyAttributes;
use serde::{Deserialize, Serialize};

/// What the report says of every backed-up key, because NEVER_EXTRACTABLE reads false.
pub const EXTRACTABLE_BY_DESIGN: &str =
    "CKA_NEVER_EXTRACTABLE is false by design: the key was generated with CKA_EXTRACTABLE=true and \
     CKA_WRAP_WITH_TRUSTED=true, so the token lets it leave only wrapped by a key the security \
     officer marked CKA_TRUSTED; it stays CKA_SENSITIVE (never readable in plaintext)";

/// How the KEK is made, held and destroyed (the same text in every backup record).
pub const KEK_HANDLING: &str =
    "a random P-256 scalar (HSM C_GenerateRandom mixed with the OS RNG) is split M-of-N with \
     Feldman commitments and written to the cards; the AES-256 KEK is HKDF-SHA256 of that scalar, \
     derived on the host in zeroizing memory (wiped after use; keyrite runs non-dumpable), imported by the security \
     officer as a session-only CKA_TRUSTED key (never a token object), used once, and destroyed";

/// `key_backed_up`: a key wrapped under a fresh trusted KEK whose shares the cards hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRecord {
    pub key: String,
    pub key_hash: String,
    /// CKA_ID of the key on its token, hex.
    pub key_id: String,
    pub algorithm: String,
    pub token_label: String,
    pub token_serial: String,
    /// The private key's attributes read back after the wrap.
    pub attributes: KeyAttributes,
    pub statement: String,
    /// e.g. "CKM_AES_KEY_WRAP_PAD".
    pub mechanism: String,
    /// The wrapped key in the bundle (artifacts/), its SHA-256 and size.
    pub blob_file: String,
    pub blob_sha256: String,
    pub blob_size: u64,
    /// The KEK's split: commitments (pin them in the restore script) and the cards.
    pub kek_split: SplitRecord,
    pub kek_handling: String,
    /// CKO_SECRET_KEY objects the session still saw after the KEK was destroyed (must be 0).
    pub secret_keys_left: u64,
}

/// `key_restored`: a backup blob unwrapped on this token, proven to be the backed-up key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRecord {
    pub key: String,
    pub backup_ceremony: String,
    /// The hash the backup report gave; the restored public key's hash, which must equal it.
    pub expected_key_hash: String,
    pub key_hash: String,
    pub key_id: String,
    pub algorithm: String,
    pub token_label: String,
    pub token_serial: String,
    /// The blob as copied into this bundle, with its SHA-256 (checked before the unwrap).
    pub blob_file: String,
    pub blob_sha256: String,
    /// The original certificate as copied into this bundle: the public key object is made from it.
    pub certificate_file: String,
    pub mechanism: String,
    pub kek_commitments_sha256: String,
    /// The restored private key's attributes read back (sensitive, non-extractable).
    pub attributes: KeyAttributes,
    /// A challenge signed by the restored private key and verified with the certificate's key.
    pub proof_message: String,
    pub proof_signature_algorithm: String,
    pub proof_signature: String,
    pub proof_verified: bool,
    pub secret_keys_left: u64,
}

/// A restore refused or interrupted after it had put objects on the target: what was destroyed,
/// and that nothing under the label is left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreUndone {
    pub key: String,
    pub reason: String,
    pub objects_destroyed: u64,
    pub objects_left: u64,
    pub secret_keys_left: u64,
}
