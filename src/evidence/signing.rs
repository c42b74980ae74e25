//! Log and report records of signing with keys from earlier ceremonies (issue 11): which existing
//! key was found, by what lookup, with which hash, and what it signed.

use crate::hsm::KeyAttributes;
use serde::{Deserialize, Serialize};

/// `existing_key_found`: a key from an earlier ceremony, found on the token after activation and
/// matching its pinned hash. Everything it signs later in the run names it by `key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExistingKeyRecord {
    /// The script's name for the key (its `[[keys]]` label).
    pub key: String,
    /// The lookup, e.g. `label "root-2026"` or `CKA_ID 9f8e…`.
    pub found_by: String,
    /// CKA_LABEL and CKA_ID (hex) of the private key found.
    pub label: String,
    pub id: String,
    pub algorithm: String,
    /// SHA-256 of the DER SubjectPublicKeyInfo, lowercase hex: equal to the expected hash.
    pub key_hash: String,
    /// Where the expected hash came from: "script", or in a rehearsal "rehearsal folder" (the
    /// throw-away key a rehearsed ceremony generated in the same --env folder).
    pub expected_from: String,
    /// The ceremony that generated the key, as the script names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_by: Option<String>,
    pub attributes: KeyAttributes,
    /// The public key, PEM, in the bundle.
    pub public_key_file: String,
}

/// A test message signature as the report lists it (the signature itself stays in the log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestSignatureReport {
    pub step: String,
    pub key: String,
    pub key_hash: String,
    pub signature_algorithm: String,
    pub verified: bool,
    pub time: String,
}
