//! Certificate revocation lists (RFC 5280 section 5) with x509-cert's types: built from the script,
//! linted before the HSM sees them, signed through [`HsmKey`], verified with the issuer's certificate
//! afterwards. `keyrite verify` checks the written CRL with [`verify_crl`] offline.

use super::signer::{self, HsmKey};
use super::CertError;
use crate::hsm::Hsm;
use crate::script::RevocationReason;
use der::asn1::BitString;
use der::referenced::OwnedToRef;
use der::{Decode, DecodePem, Encode, EncodePem};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use spki::DynSignatureAlgorithmIdentifier;
use std::time::SystemTime;
use time::OffsetDateTime;
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::pkix::{AuthorityKeyIdentifier, CrlNumber, CrlReason, SubjectKeyIdentifier};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::Time;
use x509_cert::{Certificate, Version};

/// One revoked certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    /// Serial number, unsigned big-endian, no leading zeros.
    pub serial: Vec<u8>,
    pub date: OffsetDateTime,
    pub reason: RevocationReason,
}

/// What a CRL says, before it is signed.
#[derive(Debug, Clone)]
pub struct CrlContent {
    pub number: u64,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
    pub revoked: Vec<Revocation>,
}

/// A revoked entry as the log, report and screen show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedRecord {
    /// Lowercase hex, as `openssl crl -text` prints it (without colons).
    pub serial: String,
    pub date: String,
    pub reason: RevocationReason,
}

/// A signed CRL as the log's `crl_signed` entry and report.json record it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlRecord {
    pub name: String,
    /// Label of the signing key.
    pub key: String,
    pub issuer: String,
    pub number: u64,
    pub this_update: String,
    pub next_update: String,
    /// authorityKeyIdentifier keyIdentifier, colon hex as openssl prints it.
    pub authority_key_id: String,
    pub revoked: Vec<RevokedRecord>,
    pub signature_algorithm: String,
    pub sha256_fingerprint: String,
    pub file: String,
    /// The bundle's copy of the issuer certificate the CRL verifies with.
    pub issuer_certificate_file: String,
    /// The bundle's copy of the earlier CRL whose entries carried over, and its number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_crl_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_number: Option<u64>,
}

/// A signed CRL and its description (the record's file fields are the caller's).
#[derive(Debug, Clone)]
pub struct SignedCrl {
    pub der: Vec<u8>,
    pub pem: String,
    pub description: CrlDescription,
}

/// What a CRL says, read back from its DER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlDescription {
    pub issuer: String,
    pub number: Option<u64>,
    pub this_update: String,
    pub next_update: Option<String>,
    pub authority_key_id: Option<String>,
    pub revoked: Vec<RevokedRecord>,
    pub signature_algorithm: String,
    pub sha256_fingerprint: String,
}

/// Parse a PEM CRL (`-----BEGIN X509 CRL-----`).
pub fn parse_pem(pem: &[u8]) -> Result<CertificateList, String> {
    CertificateList::from_pem(pem).map_err(|e| format!("not a PEM X509 CRL: {e}"))
}

/// Parse a PEM certificate.
pub fn parse_certificate_pem(pem: &[u8]) -> Result<Certificate, String> {
    Certificate::from_pem(pem).map_err(|e| format!("not a PEM certificate: {e}"))
}

/// The CRL's cRLNumber, when present and no wider than 64 bits.
pub fn crl_number(crl: &CertificateList) -> Option<u64> {
    let ext = find_extension(
        &crl.tbs_cert_list,
        &const_oid::db::rfc5280::ID_CE_CRL_NUMBER,
    )?;
    let number = CrlNumber::from_der(ext.extn_value.as_bytes()).ok()?;
    let bytes = number.0.as_bytes();
    if bytes.len() > 8 {
        return None;
    }
    Some(bytes.iter().fold(0u64, |n, b| (n << 8) | u64::from(*b)))
}

fn find_extension<'a>(
    tbs: &'a TbsCertList,
    oid: &der::asn1::ObjectIdentifier,
) -> Option<&'a Extension> {
    tbs.crl_extensions
        .as_ref()?
        .iter()
        .find(|e| e.extn_id == *oid)
}

/// The entries of an earlier CRL, as revocations to carry over.
pub fn entries(crl: &CertificateList) -> Vec<Revocation> {
    let reason_oid = const_oid::db::rfc5280::ID_CE_CRL_REASONS;
    crl.tbs_cert_list
        .revoked_certificates
        .iter()
        .flatten()
        .map(|r| {
            let reason = r
                .crl_entry_extensions
                .iter()
                .flatten()
                .find(|e| e.extn_id == reason_oid)
                .and_then(|e| CrlReason::from_der(e.extn_value.as_bytes()).ok())
                .and_then(|c| RevocationReason::from_code(c as u32))
                .unwrap_or(RevocationReason::Unspecified);
            Revocation {
                serial: unsigned(r.serial_number.as_bytes()),
                date: to_offset(r.revocation_date),
                reason,
            }
        })
        .collect()
}

fn unsigned(bytes: &[u8]) -> Vec<u8> {
    let trimmed: Vec<u8> = bytes.iter().copied().skip_while(|b| *b == 0).collect();
    if trimmed.is_empty() {
        vec![0]
    } else {
        trimmed
    }
}

fn to_offset(t: Time) -> OffsetDateTime {
    OffsetDateTime::from(t.to_system_time())
}

fn to_time(t: OffsetDateTime) -> der::Result<Time> {
    // UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 5.1.2.4).
    Time::try_from(SystemTime::from(t))
}

/// Carry `previous`'s entries over and add the script's; a serial revoked twice must say the same.
pub fn merge(previous: Vec<Revocation>, added: Vec<Revocation>) -> Result<Vec<Revocation>, String> {
    let mut all = previous;
    for entry in added {
        match all.iter().find(|r| r.serial == entry.serial) {
            Some(old) if *old == entry => {}
            Some(old) => {
                return Err(format!(
                    "serial {} is already revoked by the earlier CRL ({}, {}); the script says ({}, {})",
                    hex::encode(&entry.serial),
                    rfc3339(old.date),
                    old.reason,
                    rfc3339(entry.date),
                    entry.reason
                ))
            }
            None => all.push(entry),
        }
    }
    Ok(all)
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The issuer's key identifier: its SKI, else RFC 5280 method 1 over its key.
fn issuer_key_id(issuer: &Certificate) -> Result<der::asn1::OctetString, String> {
    let tbs = issuer.tbs_certificate();
    if let Ok(Some((_, ski))) = tbs.get_extension::<SubjectKeyIdentifier>() {
        return Ok(ski.0);
    }
    SubjectKeyIdentifier::try_from(tbs.subject_public_key_info().owned_to_ref())
        .map(|s| s.0)
        .map_err(|e| e.to_string())
}

/// Build the TBSCertList: v2, the issuer's subject, cRLNumber and AKI, entries with reasonCode
/// (none for `unspecified`).
pub fn build_tbs(
    issuer: &Certificate,
    key: &HsmKey,
    content: &CrlContent,
) -> Result<TbsCertList, String> {
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let issuer_name = issuer.tbs_certificate().subject().clone();
    let mut extensions: Vec<Extension> = Vec::new();
    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(issuer_key_id(issuer)?),
        ..Default::default()
    };
    extensions.push(
        aki.to_extension(&issuer_name, &extensions)
            .map_err(|x| e(&x))?,
    );
    let number = CrlNumber::try_from(content.number).map_err(|x| e(&x))?;
    extensions.push(
        number
            .to_extension(&issuer_name, &extensions)
            .map_err(|x| e(&x))?,
    );
    let mut revoked = Vec::new();
    for r in &content.revoked {
        let entry_ext = match r.reason {
            RevocationReason::Unspecified => None,
            reason => {
                let code = crl_reason(reason);
                Some(vec![code
                    .to_extension(&issuer_name, &[])
                    .map_err(|x| e(&x))?])
            }
        };
        revoked.push(RevokedCert {
            serial_number: SerialNumber::new(&r.serial).map_err(|x| e(&x))?,
            revocation_date: to_time(r.date).map_err(|x| e(&x))?,
            crl_entry_extensions: entry_ext,
        });
    }
    Ok(TbsCertList {
        version: Version::V2,
        signature: key.signature_algorithm_identifier().map_err(|x| e(&x))?,
        issuer: issuer_name,
        this_update: to_time(content.this_update).map_err(|x| e(&x))?,
        next_update: Some(to_time(content.next_update).map_err(|x| e(&x))?),
        // RFC 5280: an empty list is left out, never written as an empty SEQUENCE.
        revoked_certificates: (!revoked.is_empty()).then_some(revoked),
        crl_extensions: Some(extensions),
    })
}

fn crl_reason(reason: RevocationReason) -> CrlReason {
    match reason {
        RevocationReason::Unspecified => CrlReason::Unspecified,
        RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
        RevocationReason::CaCompromise => CrlReason::CaCompromise,
        RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
        RevocationReason::Superseded => CrlReason::Superseded,
        RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
    }
}

/// Built-in lints before signing: the key is the issuer certificate's, the issuer may sign CRLs,
/// the times are ordered, no serial is listed twice.
pub fn lint(issuer: &Certificate, key: &HsmKey, content: &CrlContent) -> Result<(), Vec<String>> {
    let mut findings = Vec::new();
    let tbs = issuer.tbs_certificate();
    let spki = tbs.subject_public_key_info().to_der().unwrap_or_default();
    if spki != key.as_ref().0 {
        findings.push(format!(
            "the HSM key \"{}\" is not the key of the issuer certificate ({}): the CRL would not verify",
            key.label,
            tbs.subject()
        ));
    }
    match tbs.get_extension::<x509_cert::ext::pkix::KeyUsage>() {
        Ok(Some((_, ku))) if !ku.crl_sign() => {
            findings.push("the issuer certificate's keyUsage lacks cRLSign".into())
        }
        Ok(_) => {}
        Err(e) => findings.push(format!(
            "the issuer certificate's keyUsage does not decode: {e}"
        )),
    }
    if content.next_update <= content.this_update {
        findings.push("nextUpdate must come after thisUpdate".into());
    }
    for (i, r) in content.revoked.iter().enumerate() {
        if content.revoked[..i].iter().any(|o| o.serial == r.serial) {
            findings.push(format!("serial {} is listed twice", hex::encode(&r.serial)));
        }
        if r.date > content.this_update {
            findings.push(format!(
                "serial {} is revoked on {}, after thisUpdate",
                hex::encode(&r.serial),
                rfc3339(r.date)
            ));
        }
    }
    if findings.is_empty() {
        Ok(())
    } else {
        Err(findings)
    }
}

/// Lint, build, sign in the HSM, and verify the CRL with the issuer certificate.
pub fn sign_crl(
    hsm: &mut dyn Hsm,
    issuer: &Certificate,
    key: &HsmKey,
    content: &CrlContent,
) -> Result<SignedCrl, CertError> {
    lint(issuer, key, content).map_err(|f| CertError::Lint(f.join("; ")))?;
    let tbs = build_tbs(issuer, key, content).map_err(CertError::Build)?;
    let build = |e: &dyn std::fmt::Display| CertError::Build(e.to_string());
    let tbs_der = tbs.to_der().map_err(|e| build(&e))?;
    let signature = key.sign(hsm, &tbs_der)?;
    let crl = CertificateList {
        signature_algorithm: tbs.signature.clone(),
        tbs_cert_list: tbs,
        signature: BitString::from_bytes(&signature).map_err(|e| build(&e))?,
    };
    let der = crl.to_der().map_err(|e| build(&e))?;
    // Check the bytes that are written out, decoded afresh.
    let crl = CertificateList::from_der(&der).map_err(|e| build(&e))?;
    verify_crl(&crl, issuer).map_err(CertError::Verify)?;
    let pem = crl
        .to_pem(der::pem::LineEnding::LF)
        .map_err(|e| build(&e))?;
    Ok(SignedCrl {
        description: describe(&crl, &der),
        der,
        pem,
    })
}

/// The CRL names `issuer` as its issuer and its signature verifies with `issuer`'s key.
pub fn verify_crl(crl: &CertificateList, issuer: &Certificate) -> Result<(), String> {
    let tbs = &crl.tbs_cert_list;
    if tbs.issuer != *issuer.tbs_certificate().subject() {
        return Err(format!(
            "the CRL's issuer ({}) is not the certificate's subject ({})",
            tbs.issuer,
            issuer.tbs_certificate().subject()
        ));
    }
    if tbs.signature != crl.signature_algorithm {
        return Err("the signed and the outer signature algorithms differ".into());
    }
    let tbs_der = tbs.to_der().map_err(|e| e.to_string())?;
    let spki = issuer
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| e.to_string())?;
    let signature = crl
        .signature
        .as_bytes()
        .ok_or("the signature BIT STRING has unused bits")?;
    signer::verify_signature(&spki, &crl.signature_algorithm.oid, &tbs_der, signature)
}

/// What the CRL says, for the log, the report and the room.
pub fn describe(crl: &CertificateList, der: &[u8]) -> CrlDescription {
    let tbs = &crl.tbs_cert_list;
    let aki = find_extension(tbs, &const_oid::db::rfc5280::ID_CE_AUTHORITY_KEY_IDENTIFIER)
        .and_then(|e| AuthorityKeyIdentifier::from_der(e.extn_value.as_bytes()).ok())
        .and_then(|a| a.key_identifier)
        .map(|id| colon_hex(id.as_bytes()));
    CrlDescription {
        issuer: tbs.issuer.to_string(),
        number: crl_number(crl),
        this_update: rfc3339(to_offset(tbs.this_update)),
        next_update: tbs.next_update.map(|t| rfc3339(to_offset(t))),
        authority_key_id: aki,
        revoked: entries(crl)
            .into_iter()
            .map(|r| RevokedRecord {
                serial: hex::encode(&r.serial),
                date: rfc3339(r.date),
                reason: r.reason,
            })
            .collect(),
        signature_algorithm: signer::algorithm_name(&crl.signature_algorithm.oid),
        sha256_fingerprint: hex::encode(Sha256::digest(der)),
    }
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
#[path = "crl_tests.rs"]
mod tests;
