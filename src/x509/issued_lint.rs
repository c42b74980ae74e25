//! Built-in lints on the TBS of a certificate issued to another CA (issue 11), before it reaches the
//! HSM. pkilint checks the same certificates independently in CI.

use super::csr::CheckedInput;
use super::issued::key_id_of;
use super::signer::HsmKey;
use crate::script::signing::{eku_oid, CaCertificate};
use der::{Decode, Encode};
use spki::DynSignatureAlgorithmIdentifier;
use std::collections::BTreeSet;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, SubjectKeyIdentifier,
};
use x509_cert::Certificate;

/// Every finding; an empty list means the TBS may be signed.
pub fn lint_issued_tbs(
    tbs_der: &[u8],
    spec: &CaCertificate,
    input: &CheckedInput,
    issuer: &Certificate,
    key: &HsmKey,
) -> Result<(), Vec<String>> {
    let tbs = TbsCertificate::from_der(tbs_der)
        .map_err(|e| vec![format!("the TBS does not decode: {e}")])?;
    let itbs = issuer.tbs_certificate();
    let mut findings = Vec::new();
    let mut check = |ok: bool, finding: &str| {
        if !ok {
            findings.push(finding.to_string());
        }
    };
    check(tbs.version() == Version::V3, "version is not v3");
    let serial = tbs.serial_number().as_bytes();
    check(
        (9..=20).contains(&serial.len()) && serial.first().is_some_and(|b| b & 0x80 == 0),
        "serial must be positive, 9 to 20 bytes (at least 64 random bits)",
    );
    check(
        tbs.issuer() == itbs.subject(),
        "the issuer name must be the issuer certificate's subject",
    );
    check(
        tbs.subject().common_name().ok().flatten().is_some(),
        "the subject must have a commonName",
    );
    check(
        tbs.subject() != itbs.subject(),
        "the subject must differ from the issuer (this is not a self-signed certificate)",
    );
    let spki = tbs.subject_public_key_info().to_der().unwrap_or_default();
    check(
        spki == input.spki_der,
        "the certificate's key is not the request's (or the other CA's) key",
    );
    check(
        spki != key.as_ref().0,
        "the certificate would certify the issuer's own key",
    );
    // The whole AlgorithmIdentifier: NULL parameters for RSA, absent for ECDSA and ML-DSA (RFC 9881).
    check(
        key.signature_algorithm_identifier().ok().as_ref() == Some(tbs.signature()),
        "the TBS signature algorithm (OID and parameters) does not match the issuer key",
    );
    let (v, iv) = (tbs.validity(), itbs.validity());
    check(
        v.not_before.to_unix_duration() < v.not_after.to_unix_duration(),
        "notBefore must precede notAfter",
    );
    check(
        v.not_before.to_unix_duration() >= iv.not_before.to_unix_duration()
            && v.not_after.to_unix_duration() <= iv.not_after.to_unix_duration(),
        "the validity must lie within the issuer certificate's validity",
    );
    match itbs.get_extension::<BasicConstraints>() {
        Ok(Some((_, bc))) => {
            check(bc.ca, "the issuer certificate is not a CA certificate");
            check(
                bc.path_len_constraint != Some(0),
                "the issuer's pathLenConstraint is 0: it may not certify another CA",
            );
            if let (Some(mine), Some(theirs)) = (spec.path_len, bc.path_len_constraint) {
                check(
                    mine < theirs,
                    "pathLenConstraint must be smaller than the issuer's",
                );
            }
        }
        _ => check(false, "the issuer certificate has no basicConstraints"),
    }

    let exts = tbs.extensions().map(|e| e.as_slice()).unwrap_or_default();
    let mut seen = BTreeSet::new();
    check(
        exts.iter().all(|e| seen.insert(e.extn_id)),
        "an extension appears twice",
    );
    super::lint::ca_extensions(
        &tbs,
        spec.path_len,
        spec.digital_signature,
        "a CA",
        &mut check,
    );
    match tbs.get_extension::<SubjectKeyIdentifier>() {
        Ok(Some((critical, _))) => check(!critical, "subjectKeyIdentifier must not be critical"),
        _ => check(false, "subjectKeyIdentifier is missing"),
    }
    match tbs.get_extension::<AuthorityKeyIdentifier>() {
        Ok(Some((critical, aki))) => {
            check(!critical, "authorityKeyIdentifier must not be critical");
            let want = key_id_of(issuer).ok();
            check(
                aki.key_identifier.as_ref().map(|k| k.as_bytes().to_vec()) == want,
                "AKI keyIdentifier must be the issuer's key identifier",
            );
        }
        _ => check(false, "authorityKeyIdentifier is missing"),
    }
    let wanted: Vec<_> = spec
        .extended_key_usage
        .iter()
        .filter_map(|e| eku_oid(e).ok())
        .collect();
    match tbs.get_extension::<ExtendedKeyUsage>() {
        Ok(Some((critical, eku))) => {
            check(!critical, "extKeyUsage must not be critical");
            check(eku.0 == wanted, "extKeyUsage differs from the profile");
            check(
                !eku.0
                    .contains(&const_oid::db::rfc5280::ANY_EXTENDED_KEY_USAGE),
                "a CA certificate must not carry anyExtendedKeyUsage",
            );
        }
        _ => check(wanted.is_empty(), "extKeyUsage is missing"),
    }
    if findings.is_empty() {
        Ok(())
    } else {
        Err(findings)
    }
}
