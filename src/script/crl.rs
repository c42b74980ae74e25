//! `[[crls]]`: a certificate revocation list the ceremony signs with a CA key (`sign_crl` steps).
//!
//! Times are RFC 3339 strings in UTC ("2026-12-01T00:00:00Z"): the script fixes them, so the room
//! reads on paper exactly what will be signed. Input files (the issuer's certificate, an earlier
//! CRL) are paths relative to the script's folder; keyrite copies them into the bundle.

use super::model::{file_stem, HashAlgorithm};
use serde::{Deserialize, Serialize};
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CrlProfile {
    /// Artifact name: the CRL is written to `artifacts/<name>.crl.pem`.
    pub name: String,
    /// Label of the CA key on the token that signs the CRL.
    pub key: String,
    #[serde(default)]
    pub profile: CrlKind,
    /// The issuing CA's certificate (PEM), relative to the script's folder. Its subject becomes the
    /// CRL's issuer, its key identifier the CRL's AKI, and its public key must be the signing key's.
    pub issuer_certificate: String,
    /// An earlier CRL of the same issuer (PEM), relative to the script's folder: its entries carry
    /// over, its signature must verify with the issuer's key and its number must be lower.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_crl: Option<String>,
    /// cRLNumber: must increase from one CRL to the next.
    pub number: u64,
    pub this_update: String,
    pub next_update: String,
    /// Signature hash; defaults to the key's (SHA-256 for P-256/RSA-3072, SHA-384 for P-384/RSA-4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_hash: Option<HashAlgorithm>,
    /// Certificates revoked by this CRL (entries of `previous_crl` are added to them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<RevokedEntry>,
}

impl CrlProfile {
    pub fn file(&self) -> String {
        format!("artifacts/{}.crl.pem", file_stem(&self.name))
    }

    /// The bundle's copy of the issuer certificate.
    pub fn issuer_file(&self) -> String {
        format!("artifacts/{}.issuer.pem", file_stem(&self.name))
    }

    /// The bundle's copy of the earlier CRL.
    pub fn previous_file(&self) -> String {
        format!("artifacts/{}.previous.crl.pem", file_stem(&self.name))
    }
}

/// The CRL profile: how far nextUpdate may lie after thisUpdate.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CrlKind {
    /// A root CA's CRL over its subordinate CA certificates (CA/B Forum BR 4.9.7: nextUpdate at most
    /// 12 months after thisUpdate).
    #[default]
    RootCa,
}

impl CrlKind {
    /// The longest nextUpdate − thisUpdate the profile allows, in days.
    pub fn max_days(self) -> i64 {
        match self {
            CrlKind::RootCa => 365,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CrlKind::RootCa => "root-ca",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RevokedEntry {
    /// The revoked certificate's serial number in hex (colons and spaces allowed), as `openssl x509
    /// -serial` prints it.
    pub serial: String,
    /// Revocation date, RFC 3339 UTC.
    pub date: String,
    pub reason: RevocationReason,
}

/// RFC 5280 5.3.1 CRLReason, by name. `unspecified` is written without a reasonCode extension, as
/// RFC 5280 and the CA/B BR ask.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::CaCompromise => "ca-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
            RevocationReason::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    /// The RFC 5280 code.
    pub fn code(self) -> u32 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::CaCompromise => 2,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::PrivilegeWithdrawn => 9,
        }
    }

    pub fn from_code(code: u32) -> Option<Self> {
        [
            RevocationReason::Unspecified,
            RevocationReason::KeyCompromise,
            RevocationReason::CaCompromise,
            RevocationReason::AffiliationChanged,
            RevocationReason::Superseded,
            RevocationReason::CessationOfOperation,
            RevocationReason::PrivilegeWithdrawn,
        ]
        .into_iter()
        .find(|r| r.code() == code)
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 3339 time in UTC with whole seconds ("2026-12-01T00:00:00Z"), as X.509 times carry.
pub fn parse_utc(text: &str) -> Result<OffsetDateTime, String> {
    let t = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("\"{text}\" is not an RFC 3339 time ({e})"))?;
    if !t.offset().is_utc() || !text.ends_with('Z') {
        return Err(format!("\"{text}\" is not in UTC; write it with a final Z"));
    }
    if t.nanosecond() != 0 {
        return Err(format!(
            "\"{text}\" has fractions of a second, which X.509 times cannot carry"
        ));
    }
    Ok(t)
}

/// Serial number bytes from hex (colons, spaces allowed), minimal and positive as DER encodes them.
pub fn parse_serial(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text.chars().filter(|c| !matches!(c, ':' | ' ')).collect();
    let digits = if digits.len() % 2 == 1 {
        format!("0{digits}")
    } else {
        digits
    };
    let bytes =
        hex::decode(&digits).map_err(|_| format!("serial \"{text}\" is not hexadecimal"))?;
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    if trimmed.is_empty() {
        return Err(format!("serial \"{text}\" is zero"));
    }
    if trimmed.len() > 20 {
        return Err(format!(
            "serial \"{text}\" is {} bytes long; RFC 5280 serials have at most 20",
            trimmed.len()
        ));
    }
    Ok(trimmed)
}
