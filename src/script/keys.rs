//! The keys a script names: where each lives, its algorithm (classical or ML-DSA) and hash.

use super::model::file_stem;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// CKA_LABEL of the key pair on the HSM. Must not exist yet, unless `existing` says the key comes
    /// from an earlier ceremony (then it is the script's name for the key, and its CKA_LABEL unless
    /// `existing` gives an id or URI).
    pub label: String,
    pub algorithm: KeyAlgorithm,
    /// A key from an earlier ceremony, found after activation and pinned by its hash (signing.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing: Option<super::signing::ExistingKey>,
    /// The token the key lives on (a `[[hsms]]` name); the primary when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hsm: Option<String>,
}

impl KeySpec {
    /// Where the evidence bundle stores the key's public key, relative to the bundle root.
    pub fn public_key_file(&self) -> String {
        format!("artifacts/{}.pub.pem", file_stem(&self.label))
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    #[serde(rename = "RSA-3072")]
    Rsa3072,
    #[serde(rename = "RSA-4096")]
    Rsa4096,
    #[serde(rename = "P-256")]
    P256,
    #[serde(rename = "P-384")]
    P384,
    /// FIPS 204 ML-DSA (pure, RFC 9881 in X.509): a post-quantum signature key.
    #[serde(rename = "ML-DSA-44")]
    MlDsa44,
    #[serde(rename = "ML-DSA-65")]
    MlDsa65,
    #[serde(rename = "ML-DSA-87")]
    MlDsa87,
}

impl KeyAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa3072 => "RSA-3072",
            KeyAlgorithm::Rsa4096 => "RSA-4096",
            KeyAlgorithm::P256 => "P-256",
            KeyAlgorithm::P384 => "P-384",
            KeyAlgorithm::MlDsa44 => "ML-DSA-44",
            KeyAlgorithm::MlDsa65 => "ML-DSA-65",
            KeyAlgorithm::MlDsa87 => "ML-DSA-87",
        }
    }

    /// Key size in bits (modulus for RSA, field size for EC, the public key's size for ML-DSA).
    pub fn bits(self) -> u32 {
        match self {
            KeyAlgorithm::Rsa3072 => 3072,
            KeyAlgorithm::Rsa4096 => 4096,
            KeyAlgorithm::P256 => 256,
            KeyAlgorithm::P384 => 384,
            KeyAlgorithm::MlDsa44 | KeyAlgorithm::MlDsa65 | KeyAlgorithm::MlDsa87 => {
                crate::hsm::spki::ml_dsa_sizes(self).map_or(0, |(public, _)| public as u32 * 8)
            }
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096)
    }

    pub fn is_ml_dsa(self) -> bool {
        matches!(
            self,
            KeyAlgorithm::MlDsa44 | KeyAlgorithm::MlDsa65 | KeyAlgorithm::MlDsa87
        )
    }

    /// The hash that matches the key's strength when the profile does not name one. Pure ML-DSA
    /// signs the whole message and uses none: the value is ignored for it.
    pub fn default_hash(self) -> HashAlgorithm {
        match self {
            KeyAlgorithm::Rsa3072 | KeyAlgorithm::P256 | KeyAlgorithm::MlDsa44 => {
                HashAlgorithm::Sha256
            }
            KeyAlgorithm::Rsa4096
            | KeyAlgorithm::P384
            | KeyAlgorithm::MlDsa65
            | KeyAlgorithm::MlDsa87 => HashAlgorithm::Sha384,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgorithm {
    Sha256,
    Sha384,
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlgorithm::Sha256 => "SHA-256",
            HashAlgorithm::Sha384 => "SHA-384",
        })
    }
}
