//! Certificates: the self-signed root profile, built-in lints on the TBS before it reaches the HSM,
//! signing through [`crate::hsm::Hsm`], and verification of the result.

pub mod card;
pub mod cms;
pub mod crl;
pub mod csr;
pub mod extension_values;
pub mod extensions;
pub mod issued;
pub mod issued_lint;
pub mod lint;
pub mod ml_dsa;
mod profile;
pub mod signer;

use crate::hsm::{Hsm, HsmError};
use crate::script::{CertificateProfile, HashAlgorithm, KeyAlgorithm};
use der::asn1::BitString;
use der::{Decode, Encode, EncodePem};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

pub use signer::HsmKey;

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Hsm(#[from] HsmError),
    #[error("building the certificate failed: {0} — this is a keyrite defect; report it with the script")]
    Build(String),
    #[error("the certificate failed the built-in lints, so it was not sent to the HSM: {0} — fix the certificate profile in the script")]
    Lint(String),
    #[error("the HSM's signature does not verify: {0} — do not use this certificate; check the HSM and the key label")]
    Verify(String),
}

/// A signed certificate with what the log and report need.
#[derive(Debug, Clone)]
pub struct SignedCertificate {
    pub der: Vec<u8>,
    pub pem: String,
    pub sha256_fingerprint: String,
    pub serial_hex: String,
    pub subject: String,
    pub not_before: String,
    pub not_after: String,
    pub signature_algorithm: String,
    pub issuer: String,
    pub extensions: Vec<extensions::ExtensionRecord>,
}

/// Serial: 16 bytes from the HSM's RNG, top bit cleared so it is positive (≤ 20 bytes, ~127 random
/// bits — CA/B BR asks for ≥ 64).
pub fn serial_from_hsm(hsm: &mut dyn Hsm) -> Result<Vec<u8>, HsmError> {
    let mut bytes = hsm.random(16)?;
    if let Some(first) = bytes.first_mut() {
        *first &= 0x7f;
        if *first == 0 {
            // Keep the encoding at 16 bytes; a leading zero would be stripped by DER.
            *first = 0x01;
        }
    }
    Ok(bytes)
}

/// Build, lint, sign in the HSM, and verify a self-signed root certificate.
///
/// `not_before` comes from the caller (the driver's clock) so that this module reads no clock.
pub fn sign_root(
    hsm: &mut dyn Hsm,
    profile: &CertificateProfile,
    key: &HsmKey,
    serial: &[u8],
    not_before: SystemTime,
) -> Result<SignedCertificate, CertError> {
    let build = |e: &dyn std::fmt::Display| CertError::Build(e.to_string());
    let subject = profile::subject_name(&profile.subject).map_err(|e| build(&e))?;
    let (not_before, not_after) = validity_of(profile, not_before).map_err(CertError::Lint)?;
    let validity = Validity::new(
        Time::try_from(not_before).map_err(|e| build(&e))?,
        Time::try_from(not_after).map_err(|e| build(&e))?,
    );
    let serial = SerialNumber::new(serial).map_err(|e| build(&e))?;
    let mut policies = Vec::new();
    for oid in &profile.extensions.policies {
        let oid = der::asn1::ObjectIdentifier::new(oid)
            .map_err(|e| CertError::Lint(format!("policy OID \"{oid}\": {e}")))?;
        policies.push((oid, profile.extensions.cps_uri.clone()));
    }
    let root = profile::Root {
        subject,
        path_len: profile.extensions.path_len,
        digital_signature: profile.extensions.digital_signature,
        policies,
    };
    let mut builder =
        CertificateBuilder::new(root, serial, validity, key.spki()?).map_err(|e| build(&e))?;
    let tbs_der = builder.finalize(key).map_err(|e| build(&e))?;

    lint::lint_root_tbs(&tbs_der, profile, key)
        .map_err(|findings| CertError::Lint(findings.join("; ")))?;

    let signature = key.sign(hsm, &tbs_der)?;
    let bits = BitString::from_bytes(&signature).map_err(|e| build(&e))?;
    let cert = builder.assemble(bits, key).map_err(|e| build(&e))?;
    let der = cert.to_der().map_err(|e| build(&e))?;
    // Decode what we encoded so the checks below see exactly the bytes that are written out.
    let cert = Certificate::from_der(&der).map_err(|e| build(&e))?;
    signer::verify_self_signed(&cert).map_err(CertError::Verify)?;
    describe(&cert, &der)
}

/// notBefore and notAfter: the script's explicit times, else `now` and `validity_days` from it.
/// Times from 2050 on are written as GeneralizedTime (99991231235959Z for "9999-12-31T23:59:59Z").
pub fn validity_of(
    profile: &CertificateProfile,
    now: SystemTime,
) -> Result<(SystemTime, SystemTime), String> {
    let parse = |t: &str| crate::script::crl::parse_utc(t).map(SystemTime::from);
    let not_before = match &profile.not_before {
        Some(t) => parse(t)?,
        None => now,
    };
    let not_after = match (&profile.not_after, profile.validity_days) {
        (Some(t), _) => parse(t)?,
        (None, Some(days)) => not_before + Duration::from_secs(u64::from(days) * 86_400),
        (None, None) => return Err("the profile gives neither validity_days nor not_after".into()),
    };
    Ok((not_before, not_after))
}

pub(crate) fn describe(cert: &Certificate, der: &[u8]) -> Result<SignedCertificate, CertError> {
    let build = |e: &dyn std::fmt::Display| CertError::Build(e.to_string());
    let tbs = cert.tbs_certificate();
    let (issuer, extensions) = extensions::issuer_and_extensions(cert);
    let pem = cert
        .to_pem(der::pem::LineEnding::LF)
        .map_err(|e| build(&e))?;
    Ok(SignedCertificate {
        der: der.to_vec(),
        pem,
        sha256_fingerprint: hex::encode(Sha256::digest(der)),
        serial_hex: hex::encode(tbs.serial_number().as_bytes()),
        subject: tbs.subject().to_string(),
        not_before: rfc3339(tbs.validity().not_before),
        not_after: rfc3339(tbs.validity().not_after),
        signature_algorithm: signer::algorithm_name(&cert.signature_algorithm().oid),
        issuer,
        extensions,
    })
}

pub(crate) fn rfc3339(t: Time) -> String {
    let secs = t.to_unix_duration().as_secs() as i64;
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// The signature hash a profile uses for its key.
pub fn signature_hash(profile: &CertificateProfile, algorithm: KeyAlgorithm) -> HashAlgorithm {
    profile.signature_hash.unwrap_or(algorithm.default_hash())
}

#[cfg(test)]
mod tests;
