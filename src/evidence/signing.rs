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

/// `certificate_presented`: what a step that issues a certificate to another CA will sign, shown to
/// the room before its confirmations. The signed certificate's TBS hashes to `tbs_sha256`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresentedRecord {
    pub name: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub subject_key_hash: String,
    pub extensions: Vec<crate::x509::extensions::ExtensionRecord>,
    /// SHA-256 of the DER TBSCertificate the HSM will sign.
    pub tbs_sha256: String,
}

/// `ca_certificate_signed`: a certificate issued to another CA (a subordinate CA from its request,
/// or a cross-certificate), with everything an auditor needs to check it against its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuedCertificateRecord {
    pub name: String,
    /// "subordinate-ca" or "cross-certificate" (not `kind`: that names the log event).
    pub issued_as: String,
    /// The signing key (script label) and its hash.
    pub issuer_key: String,
    pub issuer_key_hash: String,
    /// SHA-256 of the issuer certificate's DER; the certificate is the chain file's last one.
    pub issuer_certificate_sha256: String,
    /// The certified key's hash (SHA-256 of its DER SubjectPublicKeyInfo).
    pub subject_key_hash: String,
    /// "certificate request", "certificate" or "public key".
    pub input_kind: String,
    /// SHA-256 of the input file exactly as read, and its PEM copy in the bundle.
    pub input_sha256: String,
    pub input_file: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub signature_algorithm: String,
    pub sha256_fingerprint: String,
    pub tbs_sha256: String,
    pub file: String,
    /// The certificate then the issuer certificate, PEM.
    pub chain_file: String,
    pub extensions: Vec<crate::x509::extensions::ExtensionRecord>,
}
